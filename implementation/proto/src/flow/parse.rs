//! Snooped frames to TCP segments: Ethernet (optionally 802.1Q tagged), IPv4 or IPv6, TCP and
//! the options TCP_REPAIR needs. Bounds-checked throughout: a truncated or malformed frame gives
//! `None`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A parsed TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (valid if `ack_flag`).
    pub ack: u32,
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack_flag: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// Raw (unscaled) window.
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window-scale option.
    pub wscale: Option<u8>,
    /// SACK-permitted option.
    pub sack_perm: bool,
    /// Timestamps option (TSval, TSecr).
    pub ts: Option<(u32, u32)>,
    /// ECN-Echo (with SYN: the sender asks for ECN, RFC 3168 6.1.1).
    pub ece: bool,
    /// Congestion Window Reduced (with SYN and ECE: the sender asks for ECN).
    pub cwr: bool,
    /// Payload.
    pub payload: &'a [u8],
    /// The whole IP packet (header through payload), for putting it back into a stack.
    pub ip_packet: &'a [u8],
}

impl Segment<'_> {
    /// The sequence number after this segment's payload (a FIN, if any, sits there).
    pub fn end(&self) -> u32 {
        self.seq.wrapping_add(self.payload.len() as u32)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses an Ethernet frame (optionally 802.1Q tagged) holding IPv4 or IPv6 and TCP.
pub fn parse_tcp(frame: &[u8]) -> Option<Segment<'_>> {
    let mut off = 12;
    let mut ethertype = be16(frame, off)?;
    off += 2;
    if ethertype == 0x8100 {
        ethertype = be16(frame, off + 2)?;
        off += 4;
    }
    let (src_ip, dst_ip, l4, l4_len) = match ethertype {
        0x0800 => {
            let ip = frame.get(off..)?;
            if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
                return None;
            }
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let total = be16(ip, 2)? as usize;
            // Fragments other than the first carry no TCP header.
            if be16(ip, 6)? & 0x1fff != 0 || ihl < 20 {
                return None;
            }
            // A GSO frame captured before segmentation has total length 0 or larger than the
            // buffer; trust the buffer.
            let end = if total >= ihl && total <= ip.len() {
                total
            } else {
                ip.len()
            };
            let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (
                IpAddr::V4(s),
                IpAddr::V4(d),
                off + ihl,
                end.checked_sub(ihl)?,
            )
        }
        0x86dd => {
            let ip = frame.get(off..)?;
            if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != 6 {
                return None;
            }
            let plen = be16(ip, 4)? as usize;
            let s: [u8; 16] = ip[8..24].try_into().ok()?;
            let d: [u8; 16] = ip[24..40].try_into().ok()?;
            let avail = ip.len() - 40;
            let len = if plen > 0 && plen <= avail {
                plen
            } else {
                avail
            };
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                off + 40,
                len,
            )
        }
        _ => return None,
    };
    let t = frame.get(l4..l4 + l4_len)?;
    if t.len() < 20 {
        return None;
    }
    let doff = ((t[12] >> 4) as usize) * 4;
    if doff < 20 || doff > t.len() {
        return None;
    }
    let flags = t[13];
    let mut seg = Segment {
        src: SocketAddr::new(src_ip, be16(t, 0)?),
        dst: SocketAddr::new(dst_ip, be16(t, 2)?),
        seq: be32(t, 4)?,
        ack: be32(t, 8)?,
        syn: flags & 0x02 != 0,
        ack_flag: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        window: be16(t, 14)?,
        mss: None,
        wscale: None,
        sack_perm: false,
        ts: None,
        ece: flags & 0x40 != 0,
        cwr: flags & 0x80 != 0,
        payload: &t[doff..],
        ip_packet: frame.get(off..l4 + l4_len)?,
    };
    // RFC 9293 3.2: options.
    let mut o = &t[20..doff];
    while let Some(&kind) = o.first() {
        match kind {
            0 => break,
            1 => o = &o[1..],
            _ => {
                let len = *o.get(1)? as usize;
                if len < 2 || len > o.len() {
                    break;
                }
                let v = &o[2..len];
                match (kind, v.len()) {
                    (2, 2) => seg.mss = Some(u16::from_be_bytes([v[0], v[1]])),
                    (3, 1) => seg.wscale = Some(v[0].min(14)),
                    (4, 0) => seg.sack_perm = true,
                    (8, 8) => seg.ts = Some((be32(v, 0)?, be32(v, 4)?)),
                    _ => {}
                }
                o = &o[len..];
            }
        }
    }
    Some(seg)
}

/// `a` is after `b` in sequence space (RFC 9293 3.4).
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a` is `b` or after it.
pub fn seq_at_or_after(a: u32, b: u32) -> bool {
    a == b || seq_after(a, b)
}
