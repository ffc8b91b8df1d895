//! Partitions in the switch, judged by datagrams at the receiving end and by the capture: after
//! `partition a b`, a and b exchange no frame while both still reach the client; after
//! `partition-one-way a b` only b's frames reach a; after `heal-partition` everything passes.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use holdfast_harness::{Cluster, Fault, need_root};

/// Whether a datagram sent from `from` to `to` (port `port`) arrives.
fn reaches(c: &Cluster, from: &str, to: &str, port: u16) -> bool {
    let addr: IpAddr = c.topology().node(to).unwrap().address(None, false).unwrap();
    let sa = SocketAddr::new(addr, port);
    let rx = c.in_node(to, move || UdpSocket::bind(sa)).unwrap().unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = c
        .in_node(from, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        let _ = tx.send_to(b"holdfast", sa);
    }
    let mut buf = [0u8; 16];
    rx.recv_from(&mut buf).is_ok()
}

fn check(c: &Cluster, port: &mut u16, want: &[(&str, &str, bool)], when: &str) {
    for (from, to, ok) in want {
        *port += 1;
        assert_eq!(
            reaches(c, from, to, *port),
            *ok,
            "{when}: {from} -> {to} should {}",
            if *ok { "pass" } else { "be cut" }
        );
    }
}

fn fault(c: &mut Cluster, kind: &str, node: &str, arg: Option<&str>) {
    c.fault(&Fault::parse(kind, node, arg).unwrap()).unwrap();
}

#[test]
fn partitions_cut_the_switch_between_groups_both_ways_or_one() {
    need_root!();
    let mut topo = basic();
    for n in &mut topo.nodes {
        n.processes.clear();
    }
    let mut c = up("partition", topo);
    let mut port = 7000;
    let all = [
        ("a", "b", true),
        ("b", "a", true),
        ("a", "client", true),
        ("client", "a", true),
        ("b", "client", true),
        ("client", "b", true),
    ];
    check(&c, &mut port, &all, "before");

    fault(&mut c, "partition", "a", Some("b"));
    check(
        &c,
        &mut port,
        &[
            ("a", "b", false),
            ("b", "a", false),
            ("a", "client", true),
            ("client", "a", true),
            ("b", "client", true),
            ("client", "b", true),
        ],
        "partition a | b",
    );
    fault(&mut c, "heal-partition", "a", None);
    check(&c, &mut port, &all, "after heal-partition");

    fault(&mut c, "partition-one-way", "a", Some("b"));
    check(
        &c,
        &mut port,
        &[("a", "b", false), ("b", "a", true), ("a", "client", true)],
        "partition-one-way a -> b",
    );
    fault(&mut c, "heal-partition", "a", None);
    check(&c, &mut port, &all, "after the second heal");

    // The capture: while a and b were cut (both ways), b's port carried no frame from a, not
    // even the mirror's copies of a's traffic with the client.
    let s = c.down().unwrap();
    let a_mac = basic().node("a").unwrap().interfaces[0].mac;
    let cut = event_ts(&s.events, "partition:done", "a");
    let healed = event_ts(&s.events, "heal-partition", "a");
    let frames = read_pcap(&s.captures[0].file);
    let leaked: Vec<_> = frames
        .iter()
        .filter(|f| f.iface == "sw0:b" && f.ts_ns > cut && f.ts_ns < healed)
        .filter(|f| f.src_mac() == a_mac)
        .collect();
    assert!(
        leaked.is_empty(),
        "{} frames from a reached b's port during the partition",
        leaked.len()
    );
    let from_a_before = frames
        .iter()
        .filter(|f| f.iface == "sw0:b" && f.ts_ns < cut && f.src_mac() == a_mac)
        .count();
    assert!(
        from_a_before > 0,
        "no frame from a on b's port before the partition: the check above proves nothing"
    );
}

#[test]
fn a_partition_names_known_nodes_and_two_sides() {
    assert!(Fault::parse("partition", "a", None).is_err());
    assert!(Fault::parse("partition", "a,b", Some("b")).is_err());
    assert!(Fault::parse("partition", ",", Some("b")).is_err());
    let f = Fault::parse("partition-one-way", "a,b", Some("c")).unwrap();
    assert_eq!(f.kind(), "partition-one-way");
    assert_eq!(f.restore().unwrap().kind(), "heal-partition");
}
