//! What the packets prove about one TCP connection: which switch port's node served it, when,
//! and whether a new server continued the old one's sequence space.
//!
//! Read [`served`] first. It is how the demo and the tests show that a connection was *taken
//! over* (served by one node before a fault and by another after it, in one sequence space)
//! rather than merely "intact" (which a client that reconnected would also be). Frames are
//! decoded with `etherparse`; the harness still knows nothing of any implementation.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use crate::capture::Frame;

/// One TCP segment of a capture, as far as the evidence needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// Capture time (`CLOCK_REALTIME`, ns).
    pub ts_ns: u64,
    /// The switch port's interface name (`SWITCH:NODE`).
    pub iface: String,
    /// Sent by that port's node (rather than delivered to it).
    pub inbound: bool,
    /// The source MAC.
    pub src_mac: [u8; 6],
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// SYN, ACK, FIN, RST.
    pub syn: bool,
    /// ACK flag.
    pub ack_flag: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// The IP header's ECN field (0: not ECT).
    pub ecn: u8,
    /// Payload length.
    pub len: u32,
}

impl Tcp {
    /// The sequence number after this segment (its payload, and its SYN or FIN).
    pub fn end(&self) -> u32 {
        self.seq
            .wrapping_add(self.len)
            .wrapping_add(self.syn as u32 + self.fin as u32)
    }
}

/// The TCP segment in a captured frame, if it holds one.
pub fn tcp(f: &Frame) -> Option<Tcp> {
    let p = SlicedPacket::from_ethernet(&f.data).ok()?;
    let src_mac = p
        .link
        .as_ref()
        .and_then(|l| l.to_header())
        .and_then(|h| h.ethernet2())
        .map(|e| e.source)?;
    let (src_ip, dst_ip, ecn) = match p.net? {
        NetSlice::Ipv4(ip) => (
            IpAddr::from(ip.header().source_addr()),
            IpAddr::from(ip.header().destination_addr()),
            ip.header().ecn().value(),
        ),
        NetSlice::Ipv6(ip) => (
            IpAddr::from(ip.header().source_addr()),
            IpAddr::from(ip.header().destination_addr()),
            (ip.header().traffic_class() & 3),
        ),
        _ => return None,
    };
    let TransportSlice::Tcp(t) = p.transport? else {
        return None;
    };
    Some(Tcp {
        ts_ns: f.ts_ns,
        iface: f.iface.clone(),
        inbound: f.inbound,
        src_mac,
        src: SocketAddr::new(src_ip, t.source_port()),
        dst: SocketAddr::new(dst_ip, t.destination_port()),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        syn: t.syn(),
        ack_flag: t.ack(),
        fin: t.fin(),
        rst: t.rst(),
        ecn,
        len: t.payload().len() as u32,
    })
}

/// `a` is after `b` in sequence space.
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// How a connection was served around a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Segments the old server's node sent on the connection before the fault.
    pub before: usize,
    /// Segments the new server's node sent on it after the fault.
    pub after: usize,
    /// The new server's first segment: its sequence number, and the range it had to fall in
    /// to continue the old sequence space (what the client had acknowledged less one for a
    /// window probe, up to what the old server had sent).
    pub first_after_seq: u32,
    /// The low end of that range.
    pub range_lo: u32,
    /// The high end of that range.
    pub range_hi: u32,
    /// Resets the service address sent on the connection, from any port.
    pub resets: usize,
}

/// Shows, from the frames, that the connection between `client` and `service` was served by
/// the node on port `old` before `fault_ns` and by the node on port `new` after it, the new one
/// continuing the old one's sequence space (no new handshake), with no reset from the service
/// address. Ports are capture interface names (`sw0:a`). The error says what is missing.
pub fn served(
    frames: &[Frame],
    service: SocketAddr,
    client: SocketAddr,
    old: &str,
    new: &str,
    fault_ns: u64,
) -> Result<Served, String> {
    let segs: Vec<Tcp> = frames.iter().filter_map(tcp).collect();
    let from_service = |s: &&Tcp| s.inbound && s.src == service && s.dst == client;
    let from_client = |s: &&Tcp| s.inbound && s.src == client && s.dst == service;
    let before: Vec<&Tcp> = segs
        .iter()
        .filter(from_service)
        .filter(|s| s.iface == old && s.ts_ns < fault_ns)
        .collect();
    let after: Vec<&Tcp> = segs
        .iter()
        .filter(from_service)
        .filter(|s| s.iface == new && s.ts_ns >= fault_ns)
        .collect();
    let resets = segs.iter().filter(from_service).filter(|s| s.rst).count();
    let Some(first) = after.first() else {
        return Err(format!(
            "{new} sent nothing on {client} -> {service} after the fault ({} segments from {old} before it)",
            before.len()
        ));
    };
    let Some(old_next) = before
        .iter()
        .map(|s| s.end())
        .reduce(|x, y| if seq_after(y, x) { y } else { x })
    else {
        return Err(format!(
            "{old} sent nothing on {client} -> {service} before the fault: the connection was not served by it"
        ));
    };
    if first.syn {
        return Err(format!(
            "{new}'s first segment is a SYN-ACK: a new connection, not the old one continued"
        ));
    }
    let client_ack = segs
        .iter()
        .filter(from_client)
        .filter(|s| s.ack_flag && s.ts_ns < first.ts_ns)
        .map(|s| s.ack)
        .reduce(|x, y| if seq_after(y, x) { y } else { x })
        .ok_or("the client acknowledged nothing before the new server's first segment")?;
    let lo = client_ack.wrapping_sub(1);
    // What the client acknowledged before the new node sent anything, the old one sent: a
    // frame the capture missed (a drop under load) must not make a continued stream look new.
    let old_next = if seq_after(client_ack, old_next) {
        client_ack
    } else {
        old_next
    };
    let out = Served {
        before: before.len(),
        after: after.len(),
        first_after_seq: first.seq,
        range_lo: lo,
        range_hi: old_next,
        resets,
    };
    if seq_after(lo, first.seq) || seq_after(first.seq, old_next) {
        return Err(format!(
            "{new}'s first sequence number {} is outside [{lo}, {old_next}]: not the old sequence space",
            first.seq
        ));
    }
    if resets > 0 {
        return Err(format!("{resets} resets from {service} on the connection"));
    }
    Ok(out)
}

/// Every reset the service address sent, on any connection and port, after `from_ns`.
pub fn resets_from(frames: &[Frame], service: IpAddr, from_ns: u64) -> Vec<Tcp> {
    frames
        .iter()
        .filter_map(tcp)
        .filter(|s| s.inbound && s.rst && s.src.ip() == service && s.ts_ns >= from_ns)
        .collect()
}

/// Finds the switch both nodes are on, reads its capture, and checks every connection.
pub(crate) fn judge(
    p: &crate::scenario::PendingTakeover,
    topology: &crate::topology::Topology,
    captures: &[crate::capture::CaptureStats],
) -> Result<String, String> {
    let fault = p
        .fault_ns
        .ok_or_else(|| format!("no fault was applied to {} before this check", p.from))?;
    let on = |node: &str| -> Vec<String> {
        topology
            .node(node)
            .map(|n| {
                n.interfaces
                    .iter()
                    .filter_map(|i| match &i.attach {
                        crate::topology::Attachment::Switch(s) => Some(s.clone()),
                        crate::topology::Attachment::Peer { .. } => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let switch = on(&p.from)
        .into_iter()
        .find(|s| on(&p.to).contains(s))
        .ok_or_else(|| format!("{} and {} share no switch", p.from, p.to))?;
    let cap = captures
        .iter()
        .find(|c| c.file.file_stem().and_then(|s| s.to_str()) == Some(switch.as_str()))
        .ok_or_else(|| format!("no capture of switch {switch}"))?;
    let frames = crate::capture::read(&cap.file).map_err(|e| e.to_string())?;
    if p.clients.is_empty() {
        return Err("the client opened no connection".into());
    }
    let (old, new) = (format!("{switch}:{}", p.from), format!("{switch}:{}", p.to));
    let mut lines = Vec::new();
    for c in &p.clients {
        let s = served(&frames, p.target, *c, &old, &new, fault)
            .map_err(|e| format!("{c} -> {}: {e}", p.target))?;
        lines.push(format!(
            "{c} -> {}: {} segments from {old} before the fault, {} from {new} after it; {new}'s first sequence number {} continues {old}'s [{}, {}]",
            p.target, s.before, s.after, s.first_after_seq, s.range_lo, s.range_hi
        ));
    }
    Ok(lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP segment on `iface`: `from` to `to`, `seq`, `len` payload bytes, `ack` (if any).
    fn seg(
        iface: &str,
        ts_ns: u64,
        from: &str,
        to: &str,
        seq: u32,
        len: usize,
        ack: Option<u32>,
    ) -> Frame {
        let (f, t): (SocketAddr, SocketAddr) = (from.parse().unwrap(), to.parse().unwrap());
        let (IpAddr::V4(fi), IpAddr::V4(ti)) = (f.ip(), t.ip()) else {
            unreachable!("IPv4 in these tests")
        };
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(fi.octets(), ti.octets(), 64)
            .tcp(f.port(), t.port(), seq, 65535);
        let b = match ack {
            Some(a) => b.ack(a),
            None => b,
        };
        let payload = vec![0u8; len];
        let mut data = Vec::new();
        b.write(&mut data, &payload).unwrap();
        Frame {
            iface: iface.into(),
            ts_ns,
            inbound: true,
            data,
            comment: None,
        }
    }

    const SVC: &str = "198.18.0.10:7";
    const CLI: &str = "198.18.0.100:40000";

    /// a's last 100 bytes were not captured, but the client acknowledged them before b spoke:
    /// b continuing at that acknowledgement is the old connection, not a new one.
    #[test]
    fn an_acknowledgement_proves_bytes_the_capture_missed() {
        let frames = vec![
            seg("sw0:a", 10, SVC, CLI, 1000, 100, Some(1)),
            seg("sw0:client", 20, CLI, SVC, 1, 0, Some(1200)),
            seg("sw0:b", 40, SVC, CLI, 1200, 100, Some(1)),
        ];
        let s = served(
            &frames,
            SVC.parse().unwrap(),
            CLI.parse().unwrap(),
            "sw0:a",
            "sw0:b",
            30,
        )
        .unwrap();
        assert_eq!(
            (s.range_lo, s.range_hi, s.first_after_seq),
            (1199, 1200, 1200)
        );
        // A segment from elsewhere in the sequence space is still refused.
        let mut far = frames.clone();
        far[2] = seg("sw0:b", 40, SVC, CLI, 9000, 100, Some(1));
        let e = served(
            &far,
            SVC.parse().unwrap(),
            CLI.parse().unwrap(),
            "sw0:a",
            "sw0:b",
            30,
        );
        assert!(e.unwrap_err().contains("not the old sequence space"));
    }
}
