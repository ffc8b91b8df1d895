//! Telling the network who answers for an address: gratuitous ARP (RFC 5227 2.3 announcements)
//! and unsolicited neighbour advertisements (RFC 4861 7.2.6), sent as raw frames on AF_PACKET.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An RFC 5227 ARP announcement: an ARP request whose sender and target IP are both the
/// address, with an all-zero target MAC, broadcast.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]); // Ethernet destination: broadcast
    f.extend_from_slice(&mac); // Ethernet source
    f.extend_from_slice(&0x0806u16.to_be_bytes()); // EtherType ARP
    f.extend_from_slice(&1u16.to_be_bytes()); // HTYPE Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // PTYPE IPv4
    f.push(6); // HLEN
    f.push(4); // PLEN
    f.extend_from_slice(&1u16.to_be_bytes()); // OPER request (RFC 5227 2.3)
    f.extend_from_slice(&mac); // SHA
    f.extend_from_slice(&ip.octets()); // SPA == the address
    f.extend_from_slice(&[0; 6]); // THA zero
    f.extend_from_slice(&ip.octets()); // TPA == the address
    f
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An unsolicited neighbour advertisement for `ip` from `mac` to all nodes, with the Override
/// flag and a target link-layer address option (RFC 4861 4.4, 7.2.6).
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let dst: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut icmp = Vec::with_capacity(32);
    icmp.push(136); // type: neighbour advertisement
    icmp.push(0); // code
    icmp.extend_from_slice(&[0, 0]); // checksum, below
    icmp.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // R=0 S=0 O=1
    icmp.extend_from_slice(&ip.octets()); // target
    icmp.push(2); // option: target link-layer address
    icmp.push(1); // length in units of 8 bytes
    icmp.extend_from_slice(&mac);
    let mut pseudo = Vec::with_capacity(40 + icmp.len());
    pseudo.extend_from_slice(&ip.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let c = checksum(&pseudo);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]); // all-nodes multicast MAC
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&0x6000_0000u32.to_be_bytes()); // version 6
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.push(58); // next header ICMPv6
    f.push(255); // hop limit (RFC 4861 7.1.2)
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The announcement frame for any address.
pub fn announce_frame(mac: [u8; 6], ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => garp_frame(mac, v4),
        IpAddr::V6(v6) => unsolicited_na_frame(mac, v6),
    }
}

/// A raw AF_PACKET socket for sending frames on one interface.
pub struct RawSender {
    fd: OwnedFd,
    index: u32,
}

impl RawSender {
    /// Opens a sender for interface `index`.
    pub fn new(index: u32) -> io::Result<Self> {
        // SAFETY: socket(2); protocol 0 means we only send.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            index,
        })
    }

    /// Sends one Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll zeroed, then filled.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = self.index as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: valid buffer and address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = garp_frame(mac, "198.18.0.10".parse().unwrap());
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Arp(a)) = p.net else {
            panic!("not ARP")
        };
        assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
        assert_eq!(a.sender_protocol_addr(), a.target_protocol_addr());
        assert_eq!(a.sender_hw_addr(), &mac);
        assert_eq!(a.target_hw_addr(), &[0; 6]);
    }

    #[test]
    fn na_checksum_verifies() {
        let f = unsolicited_na_frame([2, 0, 0, 0, 0, 1], "2001:db8::10".parse().unwrap());
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = p.transport else {
            panic!("not ICMPv6")
        };
        let Some(etherparse::NetSlice::Ipv6(ip)) = p.net else {
            panic!("not IPv6")
        };
        let h = ip.header();
        let expect = icmp
            .icmp_type()
            .calc_checksum(h.source(), h.destination(), icmp.payload())
            .unwrap();
        assert_eq!(icmp.checksum(), expect);
        assert_eq!(h.hop_limit(), 255);
    }
}
