//! The replay thread puts packets back into the node's own stack, in order, off the protocol
//! loop, and counts what it did: a SYN it puts back reaches the namespace's TCP (its `InSegs`
//! counter), a packet that is not whole TCP is refused and counted.

mod common;

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::ScratchNs;
use holdfast_harness::need_root;
use holdfast_harness::netlink::Netlink;
use holdfastd::replay::{Packet, Replayer};

/// A client's SYN from 198.18.0.100:40000 to 198.18.0.10:7777.
fn syn() -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4([198, 18, 0, 100], [198, 18, 0, 10], 64)
        .tcp(40000, 7777, 1000, 64240)
        .syn();
    let mut out = Vec::with_capacity(b.size(0));
    b.write(&mut out, &[]).unwrap();
    out
}

/// The calling thread's namespace's TCP counters `InSegs` (segments received) and `OutSegs`,
/// from /proc/thread-self/net/snmp (/proc/net is the process's, its first thread's).
fn tcp_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap_or_default();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("Tcp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let get = |k: &str| {
        rows.first()
            .and_then(|h| h.iter().position(|x| *x == k))
            .and_then(|i| rows.get(1)?.get(i)?.parse().ok())
            .unwrap_or(0)
    };
    (get("InSegs"), get("OutSegs"))
}

#[test]
fn replayed_packets_reach_the_stack_and_are_counted() {
    need_root!();
    let scratch = ScratchNs::new("replay");
    let out = scratch
        .ns
        .run(|| {
            let nl = Netlink::open().expect("netlink");
            nl.set_up("lo", true).unwrap();
            // The service address, with a listener behind it.
            nl.add_addr("lo", "198.18.0.10".parse().unwrap(), 24)
                .unwrap();
            let listener = std::net::TcpListener::bind("198.18.0.10:7777").unwrap();
            let before = tcp_counters();
            let r = Replayer::spawn(std::sync::Arc::new(
                holdfastd::inject::Injector::new().expect("raw socket"),
            ))
            .expect("replay thread");
            r.send(vec![
                Packet {
                    bytes: syn(),
                    syn: true,
                },
                Packet {
                    bytes: vec![0x45, 0, 0, 20],
                    syn: false,
                },
            ]);
            let deadline = Instant::now() + Duration::from_secs(2);
            while r.counts.queued.load(Relaxed) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let counts = (
                r.counts.syns.load(Relaxed),
                r.counts.segments.load(Relaxed),
                r.counts.failed.load(Relaxed),
                r.counts.queued.load(Relaxed),
            );
            let after = tcp_counters();
            drop(listener);
            (before, after, counts)
        })
        .expect("run in namespace");
    drop(scratch);
    let (before, after, counts) = out;
    assert_eq!(counts, (1, 0, 1, 0), "(SYNs, segments, refused, pending)");
    assert!(
        after.0 > before.0,
        "the replayed SYN never reached the namespace's TCP (InSegs {} then {})",
        before.0,
        after.0
    );
}
