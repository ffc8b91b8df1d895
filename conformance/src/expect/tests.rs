//! Self-tests of the expectation engine: every kind passes on a good capture and fails on a
//! doctored one.

use super::*;
use crate::decode::{Arp, Control, Tcp};
use std::net::Ipv4Addr;

const A: [u8; 6] = [2, 0x68, 0x66, 0, 1, 1];
const B: [u8; 6] = [2, 0x68, 0x66, 0, 2, 1];

fn pkt(i: usize, t_ms: u64, iface: &str, sent: bool) -> Pkt {
    Pkt {
        index: i,
        t_ns: 1_000_000_000 + t_ms * 1_000_000,
        iface: iface.into(),
        sent,
        src_mac: [0; 6],
        dst_mac: [0xff; 6],
        arp: None,
        ip: None,
        tcp: None,
        udp: None,
        na_target: None,
        control: None,
    }
}

fn control(i: usize, t: u64, iface: &str, kind: &str, sender: u32) -> Pkt {
    let mut p = pkt(i, t, iface, true);
    p.control = Some(Control {
        kind: kind.into(),
        sender,
        flags: 1,
        fields: [("owner".to_string(), "1".to_string())].into(),
    });
    p
}

fn garp(i: usize, t: u64, iface: &str, mac: [u8; 6]) -> Pkt {
    let mut p = pkt(i, t, iface, true);
    p.src_mac = mac;
    p.arp = Some(Arp {
        op: 1,
        sha: mac,
        spa: Ipv4Addr::new(198, 18, 0, 10),
        tpa: Ipv4Addr::new(198, 18, 0, 10),
    });
    p
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    i: usize,
    t: u64,
    iface: &str,
    src: &str,
    dst: &str,
    seq: u32,
    ack: u32,
    flags: u8,
    len: usize,
) -> Pkt {
    let mut p = pkt(i, t, iface, true);
    let (s, d): (std::net::SocketAddr, std::net::SocketAddr) =
        (src.parse().unwrap(), dst.parse().unwrap());
    p.ip = Some((s.ip(), d.ip()));
    p.tcp = Some(Tcp {
        sport: s.port(),
        dport: d.port(),
        seq,
        ack,
        flags,
        len,
    });
    p
}

fn ev(kind: &str, node: &str, t_ms: u64) -> Event {
    Event {
        t_ns: 1_000_000_000 + t_ms * 1_000_000,
        kind: kind.into(),
        node: Some(node.into()),
        detail: String::new(),
    }
}

/// A good capture: a announces at boot, a fails at 100 ms, b announces the address at 130 ms,
/// c asks b and b denies; a TCP flow continues from b after the fault.
fn good() -> Ctx {
    const S: &str = "198.18.0.10:7";
    const C: &str = "198.18.0.100:40000";
    let pkts = vec![
        control(0, 0, "sw0:a", "ANNOUNCE", 1),
        control(1, 5, "sw0:a", "HEARTBEAT", 1),
        tcp(2, 50, "sw0:a", S, C, 1000, 5000, 0x18, 100),
        tcp(3, 60, "sw0:client", C, S, 5000, 1100, 0x10, 0),
        garp(4, 130, "sw0:b", B),
        control(5, 131, "sw0:c", "ASSUME-REQUEST", 3),
        control(6, 132, "sw0:b", "ASSUME-DENY", 2),
        tcp(7, 135, "sw0:b", S, C, 1099, 5000, 0x10, 0),
    ];
    Ctx {
        pkts,
        events: vec![
            ev("up", "x", 0),
            ev("power-off", "a", 100),
            ev("power-on", "a", 300),
        ],
        clients: BTreeMap::new(),
        macs: [("a".to_string(), A), ("b".to_string(), B)].into(),
        slack: 1.0,
    }
}

fn parse(s: &str) -> Expect {
    toml::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Checks `e` passes on the good capture and fails on the capture `doctor` produces.
fn check(e: &str, doctor: impl Fn(&mut Ctx)) {
    let e = parse(e);
    let good = good();
    assert_eq!(good.check(&e), Ok(()), "{e:?} fails on the good capture");
    let mut bad = good;
    doctor(&mut bad);
    assert!(
        bad.check(&e).is_err(),
        "{e:?} passes on the doctored capture"
    );
}

#[test]
fn exists_and_within() {
    check(
        r#"kind = "exists"
what = "b announces within 50 ms of a's power-off"
after = "power-off:a"
within = "50ms"
match = { port = "sw0:b", sent = true, arp_announce = "198.18.0.10", arp_mac = "b" }"#,
        // Doctored: the announcement comes too late.
        |c| c.pkts[4].t_ns += 100_000_000,
    );
    check(
        r#"kind = "exists"
what = "the announcement uses b's MAC"
match = { arp_announce = "198.18.0.10", arp_mac = "b" }"#,
        |c| c.pkts[4].arp.as_mut().unwrap().sha = A,
    );
}

#[test]
fn none() {
    check(
        r#"kind = "none"
what = "no reset from the service after the fault"
after = "power-off:a"
match = { tcp_src = "198.18.0.10:7", tcp_flags = "R" }"#,
        |c| c.pkts[7].tcp.as_mut().unwrap().flags = 0x14,
    );
}

#[test]
fn count() {
    check(
        r#"kind = "count"
what = "one ANNOUNCE from a"
match = { control = "ANNOUNCE", sender = 1 }
min = 1
max = 1"#,
        |c| {
            let p = c.pkts[0].clone();
            c.pkts.push(p);
        },
    );
}

#[test]
fn order() {
    check(
        r#"kind = "order"
what = "ANNOUNCE before HEARTBEAT"
first = { port = "sw0:a", control = "ANNOUNCE" }
then = { port = "sw0:a", control = "HEARTBEAT" }"#,
        |c| {
            c.pkts[0].index = 9;
        },
    );
}

#[test]
fn distinct() {
    check(
        r#"kind = "distinct"
what = "exactly one node announces after the fault"
after = "power-off:a"
before = "power-on:a"
match = { sent = true, arp_announce = "198.18.0.10" }
min = 1
max = 1"#,
        |c| c.pkts.push(garp(8, 140, "sw0:a", A)),
    );
}

#[test]
fn split() {
    const S: &str = "198.18.0.10:7";
    let e = r#"kind = "split"
what = "each flow served by one node, two nodes, evenly"
after = "power-off:a"
match = { sent = true, tcp_src = "198.18.0.10:7" }
min = 2
max = 2
low_pct = 40.0
high_pct = 60.0"#;
    let flows = |c: &mut Ctx, on_c: usize| {
        c.pkts.retain(|p| p.t_ns < 1_000_000_000 + 100_000_000);
        for i in 0..10u16 {
            let port = if (i as usize) < on_c {
                "sw0:c"
            } else {
                "sw0:b"
            };
            let dst = format!("198.18.0.100:{}", 41000 + i);
            c.pkts
                .push(tcp(10 + i as usize, 150, port, S, &dst, 1, 1, 0x10, 10));
        }
    };
    let parsed = parse(e);
    let mut good = good();
    flows(&mut good, 5);
    assert_eq!(good.check(&parsed), Ok(()));
    // Uneven: 8 of 10 on one node.
    let mut bad = good_with(|c| flows(c, 8));
    assert!(bad.check(&parsed).is_err());
    // One flow answered by both.
    bad = good_with(|c| {
        flows(c, 5);
        c.pkts.push(tcp(
            30,
            160,
            "sw0:b",
            S,
            "198.18.0.100:41000",
            1,
            1,
            0x10,
            10,
        ));
    });
    assert!(bad.check(&parsed).is_err());
    // A single node.
    bad = good_with(|c| flows(c, 0));
    assert!(bad.check(&parsed).is_err());
}

fn good_with(f: impl Fn(&mut Ctx)) -> Ctx {
    let mut c = good();
    f(&mut c);
    c
}

#[test]
fn control_fields() {
    check(
        r#"kind = "exists"
what = "c asks about a's group"
match = { port = "sw0:c", control = "ASSUME-REQUEST", sender = 3, fields = { owner = "1" } }"#,
        |c| {
            c.pkts[5]
                .control
                .as_mut()
                .unwrap()
                .fields
                .insert("owner".into(), "2".into());
        },
    );
}

#[test]
fn continuity() {
    check(
        r#"kind = "continuity"
what = "b continues the sequence space"
service = "198.18.0.10:7"
after = "power-off:a""#,
        // Doctored: b starts over from a fresh sequence number, as a new connection would.
        |c| c.pkts[7].tcp.as_mut().unwrap().seq = 777_777,
    );
    check(
        r#"kind = "continuity"
what = "b does not reset"
service = "198.18.0.10:7"
after = "power-off:a""#,
        |c| c.pkts[7].tcp.as_mut().unwrap().flags = 0x04,
    );
}

#[test]
fn client() {
    use holdfast_harness::client::{ClientReport, ClientSpec, ConnReport, Workload};
    let rep = |resets| ClientReport {
        spec: ClientSpec::new(Workload::Stream, "198.18.0.10:7".parse().unwrap()),
        connections: vec![ConnReport {
            bytes_expected: 10,
            bytes_verified: 10,
            resets,
            ..Default::default()
        }],
        started_ns: 0,
        finished_ns: 0,
    };
    let e = parse("kind = \"client\"\nwhat = \"intact\"\nid = \"s\"\nresult = \"intact\"");
    let mut c = good();
    c.clients.insert("s".into(), rep(0));
    assert_eq!(c.check(&e), Ok(()));
    c.clients.insert("s".into(), rep(1));
    assert!(c.check(&e).is_err());
}

#[test]
fn unknown_events_and_fields_are_errors() {
    let e = parse(
        "kind = \"exists\"\nwhat = \"x\"\nafter = \"explode:a\"\nmatch = { port = \"sw0:a\" }",
    );
    assert!(good().check(&e).unwrap_err().contains("no event"));
    assert!(
        toml::from_str::<Expect>("kind = \"exists\"\nwhat = \"x\"\nmatch = { colour = 1 }")
            .is_err()
    );
    assert!(toml::from_str::<Expect>("kind = \"sometimes\"\nwhat = \"x\"").is_err());
}
