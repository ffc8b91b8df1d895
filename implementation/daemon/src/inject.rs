//! Putting packets from a client into this node's own stack: a raw IP socket (`IPPROTO_RAW`,
//! the header included) whose packets to a local address are delivered locally, as CRIU's
//! soccr does for a half-closed connection's FIN (`send_fin` in soccr/soccr.c).
//!
//! Two uses, both once the service address exists here: the client's FIN of a connection
//! re-created in CLOSE_WAIT or CLOSING ([`client_fin`]), and the SYNs the old owner never
//! answered, replayed as they were snooped so that the new owner answers them at once instead
//! of after the client's SYN timer (a second).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use etherparse::{PacketBuilder, TcpOptionElement};
use holdfast_proto::flow::Snapshot;

/// Raw sockets for both families (IPv6 only where the kernel has it).
pub struct Injector {
    v4: OwnedFd,
    v6: Option<OwnedFd>,
}

fn raw(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); the result is checked and owned. IPPROTO_RAW implies the header is
    // ours (IP_HDRINCL; for IPv6 since Linux 4.5), and a header-included packet may have any
    // source (`inet_sk_flowi_flags`: FLOWI_FLAG_ANYSRC).
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Injector {
    /// Opens the sockets (in the calling thread's namespace).
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            v4: raw(libc::AF_INET)?,
            v6: raw(libc::AF_INET6).ok(),
        })
    }

    /// Sends a packet snooped off the wire into our own stack, with its checksums made whole
    /// first: a sender with checksum offload (every veth, most NICs) leaves the TCP checksum
    /// for the hardware, so what the snooper saw carries only the pseudo-header's part, and a
    /// packet that comes back through a raw socket is checked (and would be dropped).
    pub fn replay(&self, packet: &[u8]) -> io::Result<()> {
        let mut p = packet.to_vec();
        fix_checksums(&mut p).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not a whole IPv4 or IPv6 TCP packet",
            )
        })?;
        self.send(&p)
    }

    /// Sends one IP packet (IPv4 or IPv6, by its version) to its destination.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let version = packet.first().map(|b| b >> 4);
        let (fd, ss, len) = match version {
            Some(4) if packet.len() >= 20 => {
                let dst: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
                // SAFETY: a zeroed sockaddr_storage, filled as sockaddr_in below.
                let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(dst),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_in fits in sockaddr_storage.
                unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
                (&self.v4, ss, size_of::<libc::sockaddr_in>())
            }
            Some(6) if packet.len() >= 40 => {
                let Some(v6) = &self.v6 else {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "no IPv6 raw socket",
                    ));
                };
                let dst: [u8; 16] = packet[24..40].try_into().expect("16 bytes");
                // SAFETY: as above, for sockaddr_in6.
                let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr { s6_addr: dst },
                    sin6_scope_id: 0,
                };
                // SAFETY: sockaddr_in6 fits in sockaddr_storage.
                unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
                (v6, ss, size_of::<libc::sockaddr_in6>())
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an IP packet",
                ));
            }
        };
        // SAFETY: sendto from a live buffer to a filled sockaddr of length `len`.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&ss as *const libc::sockaddr_storage).cast(),
                len as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The client's FIN of a snapshot, as the client sent it: from the client to the service,
/// right after the bytes the new owner's receive queue holds, acknowledging what the client
/// had acknowledged, with the timestamps the new socket expects (TSval the client's last, so
/// PAWS passes; TSecr ours, which the new socket's clock is above).
pub fn client_fin(s: &Snapshot) -> Vec<u8> {
    let seq = s.rcv_nxt.wrapping_add(s.received.len() as u32);
    let window = (s.snd_wnd >> if s.wscale { s.snd_wscale } else { 0 }).min(0xffff) as u16;
    let (src, dst) = (s.tuple.remote, s.tuple.local);
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => PacketBuilder::ipv4(a.octets(), b.octets(), 64),
        (a, b) => PacketBuilder::ipv6(v6(a), v6(b), 64),
    };
    let tcp = ip
        .tcp(src.port(), dst.port(), seq, window)
        .ack(s.snd_una)
        .fin();
    let tcp = if s.timestamps {
        tcp.options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(s.ts_ecr, s.ts_val),
        ])
        .expect("12 bytes of options fit")
    } else {
        tcp
    };
    let mut out = Vec::with_capacity(tcp.size(0));
    tcp.write(&mut out, &[]).expect("writing to a Vec");
    out
}

/// RFC 1071: the one's complement sum of 16-bit words, not yet complemented.
fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Recomputes the IPv4 header checksum and the TCP checksum (RFC 9293 3.1: over the
/// pseudo-header, RFC 8200 8.1 for IPv6) of an IP packet holding TCP, in place. `None` if it is
/// not one (IPv6 extension headers are not followed).
pub fn fix_checksums(p: &mut [u8]) -> Option<()> {
    let (l4, pseudo) = match p.first()? >> 4 {
        4 => {
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]) as usize;
            if ihl < 20 || total < ihl + 20 || total > p.len() || p[9] != 6 {
                return None;
            }
            p[10] = 0;
            p[11] = 0;
            let c = fold(sum(0, &p[..ihl]));
            p[10..12].copy_from_slice(&c.to_be_bytes());
            let tcp_len = (total - ihl) as u32;
            let mut ps = sum(0, &p[12..20]);
            ps += 6 + tcp_len;
            (ihl..total, ps)
        }
        6 => {
            let plen = u16::from_be_bytes([*p.get(4)?, *p.get(5)?]) as usize;
            if p.len() < 40 + plen || plen < 20 || p[6] != 6 {
                return None;
            }
            let mut ps = sum(0, &p[8..40]);
            ps += 6 + plen as u32;
            (40..40 + plen, ps)
        }
        _ => return None,
    };
    let start = l4.start;
    p[start + 16] = 0;
    p[start + 17] = 0;
    let c = fold(sum(pseudo, &p[l4]));
    p[start + 16..start + 18].copy_from_slice(&c.to_be_bytes());
    Some(())
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets whose checksums etherparse computed (an independent implementation) come out
    /// the same after their checksums are zeroed or garbled and fixed.
    #[test]
    fn fixed_checksums_match_etherparse() {
        for (src, dst) in [
            ("198.18.0.100", "198.18.0.10"),
            ("2001:db8::100", "2001:db8::10"),
        ] {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            for payload in [&b""[..], b"x", b"hello, holdfast!"] {
                let b = match (src, dst) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => {
                        PacketBuilder::ipv4(a.octets(), b.octets(), 64)
                    }
                    (a, b) => PacketBuilder::ipv6(v6(a), v6(b), 64),
                }
                .tcp(40000, 7, 12345, 502)
                .ack(999)
                .psh();
                let mut good = Vec::new();
                b.write(&mut good, payload).unwrap();
                let mut bad = good.clone();
                let tcp = if src.is_ipv4() { 20 } else { 40 };
                bad[tcp + 16] ^= 0x5a;
                bad[tcp + 17] = 0xa5;
                if src.is_ipv4() {
                    bad[10] = 0;
                }
                assert_ne!(bad, good);
                fix_checksums(&mut bad).unwrap();
                assert_eq!(bad, good, "{src} {payload:?}");
            }
        }
        assert!(fix_checksums(&mut [0x45, 0, 0]).is_none());
        assert!(fix_checksums(&mut []).is_none());
    }
}
