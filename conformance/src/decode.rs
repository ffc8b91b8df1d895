//! The conformance suite's packet decoder: Ethernet, ARP, IPv4/IPv6, TCP, UDP and ICMPv6
//! neighbour advertisements through `etherparse`, and the Holdfast control protocol written
//! here from `implementation/proto/PROTOCOL.md`, not from holdfast-proto, so that a bug the
//! daemon's encoder and decoder share cannot hide (a test cross-checks the two).
//!
//! Read [`Pkt::decode`] first. Every read is bounds-checked; whatever does not decode is simply
//! absent from the [`Pkt`].

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use holdfast_harness::capture::Frame;

/// UDP port of the control protocol.
pub const CONTROL_PORT: u16 = 5405;

/// An ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arp {
    /// 1 request, 2 reply.
    pub op: u16,
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

impl Arp {
    /// An RFC 5227 announcement (gratuitous ARP): a request with sender == target address.
    pub fn announcement(&self) -> bool {
        self.op == 1 && self.spa == self.tpa
    }
}

/// A TCP segment's header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    /// Payload length.
    pub len: usize,
}

/// A decoded control-protocol message: the header, and the body fields the cases look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Message type name (`ANNOUNCE`, `SOLICIT`, ...).
    pub kind: String,
    /// Sender node id.
    pub sender: u32,
    /// Header flags.
    pub flags: u16,
    /// Body fields by name (see PROTOCOL.md): for ANNOUNCE the ownership record
    /// (`node_id`, `failback`, `snoop`, `assignment`, `miss_count`, `heartbeat_ms`, `backups`,
    /// `arp`, `protocol`, `ports`, `application`, `addresses`, `macs`); `owner` for the others.
    pub fields: BTreeMap<String, String>,
}

/// One captured frame, decoded.
#[derive(Debug, Clone)]
pub struct Pkt {
    /// Position in the capture.
    pub index: usize,
    /// Capture timestamp, ns since the epoch.
    pub t_ns: u64,
    /// The port, `SWITCH:NODE`.
    pub iface: String,
    /// True if the port's node sent it; false if it was delivered to the node.
    pub sent: bool,
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// ARP.
    pub arp: Option<Arp>,
    /// IP source and destination.
    pub ip: Option<(IpAddr, IpAddr)>,
    /// TCP.
    pub tcp: Option<Tcp>,
    /// UDP ports.
    pub udp: Option<(u16, u16)>,
    /// The target of an ICMPv6 neighbour advertisement.
    pub na_target: Option<IpAddr>,
    /// A control-protocol message.
    pub control: Option<Control>,
}

fn b16(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}
fn b32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// An ARP packet for IPv4 over Ethernet (anything else is not one the suite looks at).
fn arp(a: &etherparse::ArpPacketSlice<'_>) -> Option<Arp> {
    let v4 = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from);
    Some(Arp {
        op: a.operation().0,
        sha: a.sender_hw_addr().try_into().ok()?,
        spa: v4(a.sender_protocol_addr())?,
        tpa: v4(a.target_protocol_addr())?,
    })
}

/// A TCP segment's fields; its payload is what the IP length says (never Ethernet padding),
/// cut to what was captured.
fn tcp(t: &etherparse::TcpSlice<'_>) -> Tcp {
    let flags = [
        (t.fin(), 0x01),
        (t.syn(), 0x02),
        (t.rst(), 0x04),
        (t.psh(), 0x08),
        (t.ack(), 0x10),
        (t.urg(), 0x20),
        (t.ece(), 0x40),
        (t.cwr(), 0x80),
    ]
    .iter()
    .filter(|(set, _)| *set)
    .fold(0u8, |f, (_, bit)| f | bit);
    Tcp {
        sport: t.source_port(),
        dport: t.destination_port(),
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags,
        len: t.payload().len(),
    }
}

/// Formats a MAC.
pub fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Pkt {
    /// Decodes a captured frame: Ethernet, ARP, IP, TCP, UDP and ICMPv6 with `etherparse`
    /// (lax: a frame cut short by the capture still gives its headers), the control protocol
    /// with [`control`].
    pub fn decode(index: usize, f: &Frame) -> Self {
        let mut p = Self {
            index,
            t_ns: f.ts_ns,
            iface: f.iface.clone(),
            sent: f.inbound,
            src_mac: [0; 6],
            dst_mac: [0; 6],
            arp: None,
            ip: None,
            tcp: None,
            udp: None,
            na_target: None,
            control: None,
        };
        let Ok(s) = etherparse::LaxSlicedPacket::from_ethernet(&f.data) else {
            return p;
        };
        if let Some(etherparse::LinkSlice::Ethernet2(e)) = &s.link {
            p.src_mac = e.source();
            p.dst_mac = e.destination();
        }
        match &s.net {
            Some(etherparse::LaxNetSlice::Arp(a)) => p.arp = arp(a),
            Some(etherparse::LaxNetSlice::Ipv4(ip)) => {
                let h = ip.header();
                p.ip = Some((h.source_addr().into(), h.destination_addr().into()));
            }
            Some(etherparse::LaxNetSlice::Ipv6(ip)) => {
                let h = ip.header();
                p.ip = Some((h.source_addr().into(), h.destination_addr().into()));
            }
            None => {}
        }
        match &s.transport {
            Some(etherparse::TransportSlice::Tcp(t)) => p.tcp = Some(tcp(t)),
            Some(etherparse::TransportSlice::Udp(u)) => {
                p.udp = Some((u.source_port(), u.destination_port()));
                if u.destination_port() == CONTROL_PORT {
                    p.control = control(u.payload());
                }
            }
            // RFC 4861 4.4: after type, code, checksum and flags, the target address.
            Some(etherparse::TransportSlice::Icmpv6(i))
                if matches!(
                    i.icmp_type(),
                    etherparse::Icmpv6Type::NeighborAdvertisement(_)
                ) =>
            {
                let t: Option<[u8; 16]> = i.payload().get(..16).and_then(|t| t.try_into().ok());
                p.na_target = t.map(|t| Ipv6Addr::from(t).into());
            }
            _ => {}
        }
        p
    }

    /// A tshark-like one-line summary.
    pub fn line(&self, t0: u64) -> String {
        let t = self.t_ns.saturating_sub(t0) as f64 / 1e9;
        let dir = if self.sent { "sent" } else { "recv" };
        let what = if let Some(c) = &self.control {
            format!(
                "HOLDFAST {} from n{} flags {:#x} {:?}",
                c.kind, c.sender, c.flags, c.fields
            )
        } else if let Some(a) = &self.arp {
            if a.announcement() {
                format!("ARP announcement {} is at {}", a.spa, mac(&a.sha))
            } else if a.op == 1 {
                format!("ARP who has {}? tell {}", a.tpa, a.spa)
            } else {
                format!("ARP {} is at {}", a.spa, mac(&a.sha))
            }
        } else if let (Some((s, d)), Some(tc)) = (self.ip, &self.tcp) {
            let fl: String = [
                (0x02, 'S'),
                (0x10, '.'),
                (0x08, 'P'),
                (0x01, 'F'),
                (0x04, 'R'),
            ]
            .iter()
            .filter(|(b, _)| tc.flags & b != 0)
            .map(|(_, c)| *c)
            .collect();
            format!(
                "TCP {s}:{} > {d}:{} [{fl}] seq {} ack {} len {}",
                tc.sport, tc.dport, tc.seq, tc.ack, tc.len
            )
        } else if let Some(t) = self.na_target {
            format!("ICMPv6 NA {t} is at {}", mac(&self.src_mac))
        } else if let (Some((s, d)), Some((sp, dp))) = (self.ip, self.udp) {
            format!("UDP {s}:{sp} > {d}:{dp}")
        } else {
            format!("ETH {} > {}", mac(&self.src_mac), mac(&self.dst_mac))
        };
        format!(
            "#{:<5} {t:8.4} {:<12} {dir}  {what}",
            self.index, self.iface
        )
    }
}

/// The control-protocol message names, by type number - 1 (PROTOCOL.md).
pub const TYPES: [&str; 13] = [
    "ANNOUNCE",
    "SOLICIT",
    "HEARTBEAT",
    "ASSUME-REQUEST",
    "ASSUME-GRANT",
    "ASSUME-DENY",
    "TAKEOVER-NOTICE",
    "HANDBACK",
    "RECLAIM",
    "CONN-STATE",
    "FETCH",
    "FETCHED",
    "ALIVE",
];

/// The body fields [`control`] decodes for a message type (what an expectation's `fields` may
/// name).
pub fn field_names(kind: &str) -> &'static [&'static str] {
    match kind {
        "ANNOUNCE" => &[
            "node_id",
            "failback",
            "backups",
            "heartbeat_ms",
            "miss_count",
            "snoop",
            "assignment",
            "addresses",
            "macs",
            "ports",
            "application",
            "arp",
            "protocol",
        ],
        "ASSUME-REQUEST" | "ASSUME-GRANT" | "ASSUME-DENY" | "TAKEOVER-NOTICE" | "HANDBACK"
        | "RECLAIM" | "CONN-STATE" | "FETCH" | "FETCHED" => &["owner"],
        _ => &[],
    }
}

/// Decodes a control-protocol datagram per PROTOCOL.md (the tag is not checked: the suite has
/// no key; it judges what was sent).
pub fn control(d: &[u8]) -> Option<Control> {
    if d.len() < 64 || b32(d, 0)? != 0x4846_5354 || d[4] != 1 {
        return None;
    }
    let kind = TYPES.get((d[5] as usize).checked_sub(1)?)?.to_string();
    let len = b32(d, 28)? as usize;
    if d.len() != 32 + len + 32 {
        return None;
    }
    let body = &d[32..32 + len];
    let mut fields = BTreeMap::new();
    match kind.as_str() {
        "ANNOUNCE" => ownership(body, &mut fields)?,
        "ASSUME-REQUEST" | "ASSUME-GRANT" | "ASSUME-DENY" | "TAKEOVER-NOTICE" | "HANDBACK"
        | "RECLAIM" | "CONN-STATE" | "FETCH" | "FETCHED" => {
            fields.insert("owner".into(), b32(body, 0)?.to_string());
        }
        _ => {}
    }
    Some(Control {
        kind,
        sender: b32(d, 12)?,
        flags: b16(d, 6)?,
        fields,
    })
}

fn ownership(b: &[u8], f: &mut BTreeMap<String, String>) -> Option<()> {
    let mut i = 0;
    let mut put = |k: &str, v: String| {
        f.insert(k.to_owned(), v);
    };
    put("node_id", b32(b, i)?.to_string());
    i += 4;
    put(
        "failback",
        ["none", "new-connections", "migrate"]
            .get(*b.get(i)? as usize)?
            .to_string(),
    );
    put(
        "snoop",
        ["none", "mirror", "forward"]
            .get(*b.get(i + 1)? as usize)?
            .to_string(),
    );
    put(
        "assignment",
        ["ordered", "spread"]
            .get(*b.get(i + 2)? as usize)?
            .to_string(),
    );
    put("miss_count", b.get(i + 3)?.to_string());
    put("heartbeat_ms", b32(b, i + 4)?.to_string());
    i += 8;
    let n = b16(b, i)? as usize;
    i += 2;
    let mut backups = Vec::new();
    for _ in 0..n {
        backups.push(b32(b, i)?.to_string());
        i += 4;
    }
    put("backups", backups.join(","));
    put(
        "arp",
        ["none", "garp", "vmac"]
            .get(*b.get(i)? as usize)?
            .to_string(),
    );
    put("protocol", b.get(i + 1)?.to_string());
    put("ports", format!("{}-{}", b16(b, i + 2)?, b16(b, i + 4)?));
    i += 6;
    let alen = *b.get(i)? as usize;
    put(
        "application",
        String::from_utf8_lossy(b.get(i + 1..i + 1 + alen)?).into_owned(),
    );
    i += 1 + alen;
    let n = b16(b, i)? as usize;
    i += 2;
    let (mut addrs, mut macs) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (ip, len): (IpAddr, usize) = match *b.get(i)? {
            4 => (
                Ipv4Addr::from(<[u8; 4]>::try_from(b.get(i + 1..i + 5)?).ok()?).into(),
                5,
            ),
            6 => (
                Ipv6Addr::from(<[u8; 16]>::try_from(b.get(i + 1..i + 17)?).ok()?).into(),
                17,
            ),
            _ => return None,
        };
        i += len;
        let prefix = *b.get(i)?;
        let m: [u8; 6] = b.get(i + 1..i + 7)?.try_into().ok()?;
        i += 7;
        addrs.push(format!("{ip}/{prefix}"));
        macs.push(mac(&m));
    }
    put("addresses", addrs.join(","));
    put("macs", macs.join(","));
    Some(())
}
