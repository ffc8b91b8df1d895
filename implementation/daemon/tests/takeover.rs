//! Connection takeover, judged from the client's results and the pcap: live TCP connections
//! survive a power-off of the node that held them (claims 1, 7, 8, 9).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use holdfast_harness::client::{ClientReport, ClientSpec, Workload};
use holdfast_harness::{Fault, need_root};
use holdfast_proto::flow::{parse_tcp, seq_after};

const VIP: &str = "198.18.0.10:7";

fn stream(bytes: u64, pace_us: u64, connections: usize) -> ClientSpec {
    let mut s = ClientSpec::new(Workload::Stream, VIP.parse().unwrap());
    s.bytes = bytes;
    s.pace_us = pace_us;
    s.connections = connections;
    s.stall_timeout_ms = 5000;
    s
}

/// Runs `spec` from the client, powers off `a` after `after`, waits for the client; returns its
/// report and the frames and power-off time.
fn through_power_off(
    test: &str,
    spec: ClientSpec,
    after: Duration,
) -> (ClientReport, Vec<Frame>, u64) {
    let dir = run_dir(test);
    let mut c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    let h = c.start_client("client", spec).unwrap();
    std::thread::sleep(after);
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    let rep = h.wait().unwrap();
    let s = c.down().unwrap();
    let off = event_ts(&s.events, "power-off", "a");
    (rep, read_pcap(&s.captures[0].file), off)
}

/// No TCP reset from the service address after the fault, on any port.
fn assert_no_reset_after(frames: &[Frame], off: u64) {
    let vip: SocketAddr = VIP.parse().unwrap();
    let resets: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.ts_ns > off)
        .filter(|f| parse_tcp(&f.data).is_some_and(|s| s.rst && s.src == vip))
        .collect();
    assert!(
        resets.is_empty(),
        "{} resets from {vip} after the power-off, first on {}",
        resets.len(),
        resets[0].iface
    );
}

#[test]
fn a_10mb_echo_stream_survives_power_off_byte_for_byte() {
    need_root!();
    let _serial = serial();
    let (rep, frames, off) = through_power_off(
        "stream-10mb",
        stream(10_000_000, 500, 1),
        Duration::from_millis(250),
    );
    assert!(rep.intact(), "{}", rep.summary());
    assert_eq!(rep.connections[0].bytes_verified, 10_000_000);
    assert_eq!((rep.resets(), rep.eofs()), (0, 0));
    eprintln!("{}", rep.summary());
    assert_no_reset_after(&frames, off);

    // The new owner's first segment continues the old sequence space exactly: its sequence
    // number lies between what the client had acknowledged (less one, for the window probe)
    // and what a had sent, and it acknowledges at least what a had acknowledged and at most
    // what the client had sent (b takes the client bytes a never acknowledged).
    let vip: SocketAddr = VIP.parse().unwrap();
    let client: SocketAddr = rep.connections[0].local.as_ref().unwrap().parse().unwrap();
    let from_a: Vec<_> = frames
        .iter()
        // Every frame a sent: none can leave it after its links went down.
        .filter(|f| f.inbound && f.iface == "sw0:a")
        .filter_map(|f| parse_tcp(&f.data))
        .filter(|s| s.src == vip && s.dst == client)
        .collect();
    let a_nxt = from_a
        .iter()
        .map(|s| s.seq.wrapping_add(s.payload.len() as u32))
        .reduce(|x, y| if seq_after(y, x) { y } else { x })
        .expect("a sent on the connection");
    let a_ack = from_a
        .iter()
        .map(|s| s.ack)
        .reduce(|x, y| if seq_after(y, x) { y } else { x })
        .unwrap();
    let first_b_at = frames
        .iter()
        .filter(|f| f.inbound && f.iface == "sw0:b" && f.ts_ns > off)
        .find(|f| parse_tcp(&f.data).is_some_and(|s| s.src == vip && s.dst == client))
        .expect("b sends on the connection")
        .ts_ns;
    let client_ack = frames
        .iter()
        .filter(|f| f.inbound && f.iface == "sw0:client" && f.ts_ns < first_b_at)
        .filter_map(|f| parse_tcp(&f.data))
        .filter(|s| s.src == client && s.dst == vip && s.ack_flag)
        .map(|s| s.ack)
        .reduce(|x, y| if seq_after(y, x) { y } else { x })
        .unwrap();
    let first_b = frames
        .iter()
        .filter(|f| f.inbound && f.iface == "sw0:b" && f.ts_ns > off)
        .filter_map(|f| parse_tcp(&f.data))
        .find(|s| s.src == vip && s.dst == client)
        .expect("b sends on the connection");
    let lo = client_ack.wrapping_sub(1);
    assert!(
        !seq_after(lo, first_b.seq) && !seq_after(first_b.seq, a_nxt),
        "b's first seq {} is outside [{lo}, {a_nxt}]",
        first_b.seq
    );
    let first_b_ts = frames
        .iter()
        .filter(|f| f.inbound && f.iface == "sw0:b" && f.ts_ns > off)
        .find(|f| parse_tcp(&f.data).is_some_and(|s| s.src == vip && s.dst == client))
        .unwrap()
        .ts_ns;
    let client_nxt = frames
        .iter()
        .filter(|f| f.inbound && f.iface == "sw0:client" && f.ts_ns < first_b_ts)
        .filter_map(|f| parse_tcp(&f.data))
        .filter(|s| s.src == client && s.dst == vip)
        .map(|s| s.seq.wrapping_add(s.payload.len() as u32))
        .reduce(|x, y| if seq_after(y, x) { y } else { x })
        .unwrap();
    assert!(
        !seq_after(a_ack, first_b.ack) && !seq_after(first_b.ack, client_nxt),
        "b's first ack {} is outside [{a_ack}, {client_nxt}]",
        first_b.ack
    );
    assert!(
        !first_b.syn && !first_b.rst,
        "a continued connection, not a new one"
    );
}

#[test]
fn a_hundred_connections_survive_one_power_off() {
    need_root!();
    let _serial = serial();
    let (rep, frames, off) = through_power_off(
        "hundred",
        stream(300_000, 20_000, 100),
        Duration::from_millis(150),
    );
    let broken: Vec<String> = rep
        .connections
        .iter()
        .filter(|c| !c.intact())
        .map(|c| {
            format!(
                "{}: {}/{} resets {} eofs {} {:?}",
                c.id, c.bytes_verified, c.bytes_expected, c.resets, c.eofs, c.errors
            )
        })
        .collect();
    assert!(
        broken.is_empty(),
        "{} of 100 broke: {:?}",
        broken.len(),
        &broken[..broken.len().min(5)]
    );
    assert_eq!(rep.connections.len(), 100);
    assert_no_reset_after(&frames, off);
}

/// One failure kind applied to `a` (and undone, where it can be) while a workload runs.
#[derive(Clone, Copy, Debug)]
enum Kind {
    PowerOff,
    Isolate,
    Freeze,
    Crash,
}

fn survive(kind: Kind, workload: Workload) {
    survive_on(kind, workload, Switch::Mirror)
}

fn survive_on(kind: Kind, workload: Workload, switch: Switch) {
    let (app, port) = match workload {
        Workload::Stream => ("echo", 7),
        Workload::Download => ("stream", 19),
        Workload::Kv => ("kv", 11211),
        Workload::Request => ("echo", 7),
    };
    let dir = run_dir(&format!("survive-{kind:?}-{workload:?}-{switch:?}").to_lowercase());
    let mut c = up(&dir, takeover_cluster_full(&dir, app, port, switch, "none"));
    wait_ready(&c, &["a", "b"]);
    let target: SocketAddr = format!("198.18.0.10:{port}").parse().unwrap();
    let mut spec = ClientSpec::new(workload, target);
    spec.stall_timeout_ms = 5000;
    match workload {
        Workload::Stream => {
            spec.bytes = 10_000_000;
            spec.pace_us = 500;
        }
        Workload::Download => {
            spec.bytes = 10_000_000;
            spec.pace_us = 500;
        }
        Workload::Kv => {
            spec.count = 1500;
            spec.rate = 2000.0;
        }
        Workload::Request => {}
    }
    let h = c.start_client("client", spec).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let a = || "a".to_string();
    match kind {
        Kind::PowerOff => c.fault(&Fault::PowerOff { node: a() }).unwrap(),
        Kind::Isolate => {
            c.fault(&Fault::Isolate { node: a() }).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            c.fault(&Fault::Heal { node: a() }).unwrap();
        }
        Kind::Freeze => {
            c.fault(&Fault::Freeze { node: a() }).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            c.fault(&Fault::Thaw { node: a() }).unwrap();
        }
        Kind::Crash => c
            .fault(&Fault::Crash {
                node: a(),
                process: "holdfastd".into(),
            })
            .unwrap(),
    }
    let rep = h.wait().unwrap();
    let s = c.down().unwrap();
    assert!(
        rep.intact(),
        "{kind:?} / {workload:?} / {switch:?}: {}",
        rep.summary()
    );
    let first_fault = s
        .events
        .iter()
        .find(|e| {
            matches!(
                e.kind.as_str(),
                "power-off" | "isolate" | "freeze" | "crash"
            )
        })
        .unwrap()
        .t_ns;
    let frames = read_pcap(&s.captures[0].file);
    // While the connection lives: a node that returns may still say something stale about a
    // connection the client has already finished, which is no longer the client's business.
    let resets = frames
        .iter()
        .filter(|f| f.ts_ns > first_fault && f.ts_ns < rep.finished_ns)
        .filter(|f| parse_tcp(&f.data).is_some_and(|x| x.rst && x.src == target))
        .count();
    assert_eq!(
        resets, 0,
        "{kind:?} / {workload:?}: RST from the service address after the fault"
    );
    eprintln!("{kind:?} / {workload:?} / {switch:?}: {}", rep.summary());
}

/// `snoop = "forward"` on a switch without any mirror: a copies its service frames to b
/// itself, and every failure kind is survived as with a mirror (claim 11).
#[test]
fn every_failure_kind_is_survived_without_a_mirror_by_forward_snooping() {
    need_root!();
    let _serial = serial();
    for kind in [Kind::PowerOff, Kind::Isolate, Kind::Freeze, Kind::Crash] {
        for w in [Workload::Stream, Workload::Kv] {
            survive_on(kind, w, Switch::Forward);
        }
    }
}

#[test]
fn power_off_is_survived_by_stream_download_and_kv() {
    need_root!();
    let _serial = serial();
    for w in [Workload::Stream, Workload::Download, Workload::Kv] {
        survive(Kind::PowerOff, w);
    }
}

#[test]
fn isolate_and_heal_is_survived_by_stream_download_and_kv() {
    need_root!();
    let _serial = serial();
    for w in [Workload::Stream, Workload::Download, Workload::Kv] {
        survive(Kind::Isolate, w);
    }
}

#[test]
fn freeze_and_thaw_is_survived_by_stream_download_and_kv() {
    need_root!();
    let _serial = serial();
    for w in [Workload::Stream, Workload::Download, Workload::Kv] {
        survive(Kind::Freeze, w);
    }
}

#[test]
fn a_crash_of_holdfastd_is_survived_by_stream_download_and_kv() {
    need_root!();
    let _serial = serial();
    for w in [Workload::Stream, Workload::Download, Workload::Kv] {
        survive(Kind::Crash, w);
    }
}

/// The download application and the harness's download workload agree on the stream.
#[test]
fn the_stream_application_and_the_download_workload_agree() {
    let mut a = vec![0u8; 4099];
    let mut b = vec![0u8; 4099];
    for seed in [0u64, 1, 42, u64::MAX] {
        holdfast_proto::app::pattern(seed, 13, &mut a);
        holdfast_harness::client::pattern::fill(seed, 13, &mut b);
        assert_eq!(a, b);
    }
}

/// The node that holds 198.18.0.10 now.
/// No TCP reset from the service address after the fault on a connection the client had not
/// closed yet (a reset answering a stray ACK after the close is ordinary TCP).
fn assert_no_reset_of_open_connections(frames: &[Frame], off: u64) {
    let vip: SocketAddr = VIP.parse().unwrap();
    let mut closed = std::collections::BTreeSet::new();
    for f in frames.iter().filter(|f| f.inbound) {
        let Some(t) = parse_tcp(&f.data) else {
            continue;
        };
        if t.dst == vip && (t.fin || t.rst) {
            closed.insert(t.src.port());
        }
        if t.src == vip && t.rst && f.ts_ns > off {
            assert!(
                closed.contains(&t.dst.port()),
                "reset from {vip} on the open connection from port {} on {}",
                t.dst.port(),
                f.iface
            );
        }
    }
}

fn holder_of_vip(c: &holdfast_harness::Cluster) -> &'static str {
    holder_of(c, &["a", "b"], 1).expect("someone holds 198.18.0.10")
}

/// Five kill/restore cycles, alternating which node dies: each time, a stream open on the
/// holder survives the power-off, and the node that died comes back as the other's backup.
#[test]
fn five_kill_restore_cycles_alternating_nodes() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("five-cycles");
    let mut c = up(&dir, takeover_cluster_on(&dir, "echo", 7, true));
    wait_ready(&c, &["a", "b"]);
    let mut victims = Vec::new();
    for cycle in 0..5 {
        // Whoever holds the address now is the one to kill.
        let holder = holder_of_vip(&c);
        victims.push(holder);
        let h = c
            .start_client("client", stream(3_000_000, 1000, 1))
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        c.fault(&Fault::PowerOff {
            node: holder.into(),
        })
        .unwrap();
        let rep = h.wait().unwrap();
        assert!(
            rep.intact(),
            "cycle {cycle} (killed {holder}): {}",
            rep.summary()
        );
        power_on_until_eligible(&mut c, holder);
        // Let the restored node see the next connection's handshake.
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        victims,
        ["a", "b", "a", "b", "a"],
        "the node that dies alternates"
    );
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let first = event_ts(&s.events, "power-off", "a");
    assert_no_reset_after(&frames, first);
}

/// One connection lives through five kill/restore cycles, alternating which node dies: the
/// node that comes back never saw the connection's handshake, and learns it from the holder's
/// CONN-STATE (then snoops it from there), so it can assume it at the next failure.
#[test]
fn one_connection_survives_five_alternating_cycles() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("five-cycles-one-connection");
    let mut c = up(&dir, takeover_cluster_on(&dir, "echo", 7, true));
    wait_ready(&c, &["a", "b"]);
    // About 3 MB/s for 8 s: long enough for every cycle, small enough in flight to sync.
    let h = c.start_client("client", stream(24 << 20, 5000, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut victims = Vec::new();
    for cycle in 0..5 {
        let holder = holder_of_vip(&c);
        let other = if holder == "a" { "b" } else { "a" };
        if cycle > 0 {
            // The restored node got the connection's state from the holder.
            wait_until(
                "the restored node tracks the connection",
                Duration::from_secs(5),
                || {
                    status(&c, other)
                        .is_some_and(|s| s["connections"]["adopted"].as_u64() > Some(0))
                },
            );
        }
        victims.push(holder);
        c.fault(&Fault::PowerOff {
            node: holder.into(),
        })
        .unwrap();
        wait_until(
            "the other node assumed the connection",
            Duration::from_secs(5),
            || status(&c, other).is_some_and(|s| s["connections"]["assumed"].as_u64() > Some(0)),
        );
        std::thread::sleep(Duration::from_millis(300));
        power_on_until_eligible(&mut c, holder);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        victims,
        ["a", "b", "a", "b", "a"],
        "the node that dies alternates"
    );
    let rep = h.wait().unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let first = event_ts(&s.events, "power-off", "a");
    assert_no_reset_after(&frames, first);
}

/// A two-node hub cluster with `failback`: an echo stream of `bytes` to a's address, a powered
/// off, b has assumed the connection, 300 ms later. The returning a is the caller's business.
fn stream_then_power_off_a(
    test: &str,
    failback: &str,
    bytes: u64,
) -> (
    holdfast_harness::Cluster,
    holdfast_harness::cluster::ClientHandle,
) {
    let dir = run_dir(test);
    let mut c = up(&dir, takeover_cluster_with(&dir, "echo", 7, true, failback));
    wait_ready(&c, &["a", "b"]);
    let h = c.start_client("client", stream(bytes, 5000, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until("b assumed the connection", Duration::from_secs(5), || {
        status(&c, "b").is_some_and(|s| s["connections"]["assumed"].as_u64() > Some(0))
    });
    std::thread::sleep(Duration::from_millis(300));
    (c, h)
}

/// Takes the cluster down; the capture, and when a was powered off and on. Checks that the
/// service address sent no reset from the power-off on.
fn down_after_a_returned(c: holdfast_harness::Cluster) -> (Vec<Frame>, u64, u64) {
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let off = event_ts(&s.events, "power-off", "a");
    let on = event_ts(&s.events, "power-on", "a");
    assert_no_reset_after(&frames, off);
    (frames, off, on)
}

/// `migrate` failback: the owner comes back, the holder freezes the live connection and hands
/// the address back, and the owner re-creates the connection; the client's stream is unbroken
/// and, after the return, the connection's segments leave the owner again (claims 5, 14, 19).
#[test]
fn migrate_failback_moves_a_live_connection_back_to_its_owner() {
    need_root!();
    let _serial = serial();
    let (mut c, h) = stream_then_power_off_a("migrate-failback", "migrate", 8 << 20);
    c.fault(&Fault::PowerOn { node: "a".into() }).unwrap();
    wait_until(
        "a took its connection back",
        Duration::from_secs(10),
        || status(&c, "a").is_some_and(|s| s["connections"]["assumed"].as_u64() > Some(0)),
    );
    let rep = h.wait().unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    let (frames, off, on) = down_after_a_returned(c);
    let vip: SocketAddr = VIP.parse().unwrap();
    // Data segments from the service address, by the port they entered the switch on.
    let senders: Vec<(&str, u64)> = frames
        .iter()
        .filter(|f| f.inbound)
        .filter(|f| parse_tcp(&f.data).is_some_and(|t| t.src == vip && !t.payload.is_empty()))
        .map(|f| (f.iface.as_str(), f.ts_ns))
        .collect();
    assert!(
        senders
            .iter()
            .any(|(p, t)| *p == "sw0:b" && *t > off && *t < on),
        "b served the connection while a was off"
    );
    let last = senders.last().expect("segments from the service address");
    assert_eq!(
        last.0, "sw0:a",
        "after its return, a serves the connection again"
    );
    // Once a sends again, b never does.
    let a_back = senders
        .iter()
        .find(|(p, t)| *p == "sw0:a" && *t > on)
        .expect("a sends after its return")
        .1;
    assert!(
        !senders.iter().any(|(p, t)| *p == "sw0:b" && *t > a_back),
        "b sent after a had taken the connection back"
    );
}

/// `new-connections` failback: the returning owner takes its address back and answers new
/// connections from its own MAC, while the connection the assumer holds keeps running there
/// (the owner forwards its packets in the kernel) until the client closes it; then the
/// forwarding goes away.
#[test]
fn new_connections_failback_keeps_old_connections_on_the_assumer() {
    need_root!();
    let _serial = serial();
    let (mut c, old) =
        stream_then_power_off_a("new-connections-failback", "new-connections", 6 << 20);
    power_on_until_eligible(&mut c, "a");
    wait_until(
        "a holds its address again and forwards the old connection to b",
        Duration::from_secs(10),
        || {
            holds_group(&c, "a", 1)
                && status(&c, "a").is_some_and(|s| s["connections"]["forwarded"] == 1)
        },
    );
    let mut fresh = ClientSpec::new(Workload::Request, VIP.parse().unwrap());
    fresh.count = 20;
    fresh.stall_timeout_ms = 3000;
    let new = c.start_client("client", fresh).unwrap();
    let rep_new = new.wait().unwrap();
    assert!(rep_new.intact(), "new connection: {}", rep_new.summary());
    let rep_old = old.wait().unwrap();
    assert!(rep_old.intact(), "old connection: {}", rep_old.summary());
    wait_until(
        "the drained connection is gone from b, and a forwards nothing",
        Duration::from_secs(10),
        || {
            status(&c, "b").is_some_and(|s| s["connections"]["served_without_address"] == 0)
                && status(&c, "a").is_some_and(|s| s["connections"]["forwarded"] == 0)
        },
    );
    let (frames, _, on) = down_after_a_returned(c);
    let vip: SocketAddr = VIP.parse().unwrap();
    // Segments from the service address after a's return, by connection (client port) and by
    // the port they entered the switch on.
    let mut by_conn: std::collections::BTreeMap<u16, std::collections::BTreeSet<&str>> =
        Default::default();
    let mut syn_acks = Vec::new();
    for f in frames.iter().filter(|f| f.inbound && f.ts_ns > on) {
        if let Some(t) = parse_tcp(&f.data).filter(|t| t.src == vip) {
            by_conn
                .entry(t.dst.port())
                .or_default()
                .insert(f.iface.as_str());
            if t.syn {
                syn_acks.push(f.iface.as_str());
            }
        }
    }
    assert!(!syn_acks.is_empty(), "new connections after a's return");
    assert!(
        syn_acks.iter().all(|p| *p == "sw0:a"),
        "every new connection is answered by a: {syn_acks:?}"
    );
    let old_port = by_conn
        .iter()
        .find(|(_, ports)| ports.contains("sw0:b"))
        .map(|(p, _)| *p)
        .expect("b kept sending on the old connection after a's return");
    assert_eq!(
        by_conn[&old_port].iter().copied().collect::<Vec<_>>(),
        ["sw0:b"],
        "only b answers for the old connection after a's return"
    );
    for (port, senders) in &by_conn {
        if *port != old_port {
            assert_eq!(
                senders.iter().copied().collect::<Vec<_>>(),
                ["sw0:a"],
                "new connection from port {port} served by a alone"
            );
        }
    }
}

/// After a `new-connections` failback, b serves the old connection while a holds the address;
/// a freezes long enough to be declared dead, and b takes its group again. The connection b
/// serves itself is kept as it is: not re-created (which the kernel would refuse: the four-
/// tuple is in use), not lost, and the stream goes on byte for byte.
#[test]
fn a_takeover_keeps_a_connection_the_node_already_serves() {
    need_root!();
    let _serial = serial();
    let (mut c, old) = stream_then_power_off_a("takeover-already-here", "new-connections", 8 << 20);
    power_on_until_eligible(&mut c, "a");
    wait_until(
        "a holds its address again and forwards the old connection to b",
        Duration::from_secs(10),
        || {
            holds_group(&c, "a", 1)
                && status(&c, "a").is_some_and(|s| s["connections"]["forwarded"] == 1)
        },
    );
    c.fault(&Fault::Freeze { node: "a".into() }).unwrap();
    wait_until("b holds a's group again", Duration::from_secs(5), || {
        holds_group(&c, "b", 1)
    });
    c.fault(&Fault::Thaw { node: "a".into() }).unwrap();
    let rep = old.wait().unwrap();
    assert!(rep.intact(), "old connection: {}", rep.summary());
    let b = status(&c, "b").expect("b's status");
    let k = &b["connections"];
    // At least once: a node that boots under load can be declared dead once more by a false
    // failure (10 ms heartbeats on two busy cores: one CI run of 5 today), and each takeover
    // that finds the connection here counts it again. What is under test is that it is kept.
    assert!(
        k["already_here"].as_u64().is_some_and(|n| n >= 1),
        "b's connections: {k}"
    );
    assert_eq!(k["lost"], serde_json::json!({}), "b lost connections: {k}");
    c.down().unwrap();
}

/// Three nodes, a's port mirrored to b and c: a dies, and b dies a few milliseconds after it
/// began to take a's connection over (the moment its first announcement for a's address is on
/// the wire). c, which snooped a's port too, takes both groups and the stream goes on, byte
/// for byte: served by a, then by c, in one sequence space.
#[test]
fn a_third_node_takes_over_when_the_assumer_dies_mid_takeover() {
    need_root!();
    if !have_python() {
        return;
    }
    let _serial = serial();
    let dir = run_dir("assumer-dies");
    let topo = shipped("three-node.toml");
    let b_mac = topo.node("b").expect("b").interfaces[0].mac;
    let mut c = up(&dir, topo);
    wait_ready(&c, &["a", "b", "c"]);
    let json = dir.join("client.json");
    let args = strings(&[
        "stream",
        "--target",
        VIP,
        "--bytes",
        "20000000",
        "--pace-us",
        "3000",
        "--deadline",
        "30",
        "--progress",
    ]);
    let mut child = py_start(&c, "client1", &args, &json);
    py_progress(&mut child, |p| {
        p.parse::<u64>().is_ok_and(|n| n >= 6_000_000)
    });
    // b's switch port goes down the moment b announces a's address, before its takeover is
    // done (a power-off takes the ports down first too; the harness's own power-off of a is
    // still reaping a's processes then). The rest of b's power-off follows.
    let switch = c
        .switch_ns("sw0")
        .expect("sw0")
        .run(holdfast_harness::netlink::Netlink::open)
        .expect("enter the switch")
        .expect("netlink in the switch");
    let b_starts = watch_announcement(
        &c,
        "client1",
        "198.18.0.10".parse().unwrap(),
        b_mac,
        Duration::from_secs(5),
        move || switch.set_up("b-eth0", false).expect("b's port down"),
    );
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    b_starts
        .recv()
        .expect("b announced a's address (began to take over)");
    c.fault(&Fault::PowerOff { node: "b".into() }).unwrap();
    let report = py_wait(child, &json);
    wait_until("c holds both groups", Duration::from_secs(5), || {
        holds_group(&c, "c", 1) && holds_group(&c, "c", 2)
    });
    let s = c.down().unwrap();
    assert_eq!(report["ok"], true, "the client: {}", report["error"]);
    let frames = read_pcap(&s.captures[0].file);
    let off = event_ts(&s.events, "power-off", "a");
    let client: SocketAddr = report["local"].as_str().unwrap().parse().unwrap();
    let served = holdfast_harness::evidence::served(
        &frames,
        VIP.parse().unwrap(),
        client,
        "sw0:a",
        "sw0:c",
        off,
    )
    .unwrap_or_else(|e| panic!("not taken over by c: {e}"));
    eprintln!(
        "served by a ({} segments), then by c ({}); b announced at {:.1} ms and sent its last frame at {:.1} ms",
        served.before,
        served.after,
        (frames
            .iter()
            .find(|f| f.ts_ns > off && f.inbound && f.iface == "sw0:b" && f.arp().is_some())
            .map_or(0, |f| f.ts_ns)
            .saturating_sub(off)) as f64
            / 1e6,
        (frames
            .iter()
            .filter(|f| f.inbound && f.iface == "sw0:b")
            .map(|f| f.ts_ns)
            .max()
            .unwrap_or(0)
            .saturating_sub(off)) as f64
            / 1e6
    );
    // b never served the connection: it died in the middle of taking it over.
    let vip: SocketAddr = VIP.parse().unwrap();
    assert!(
        !frames.iter().any(|f| f.inbound
            && f.iface == "sw0:b"
            && holdfast_harness::evidence::tcp(f).is_some_and(|t| t.src == vip)),
        "b sent on the connection before it died: the test did not test a mid-takeover death"
    );
}

/// The same three nodes, but b dies after it has served a's connection for a while: what b
/// sent and acknowledged, c never saw (nothing mirrors b's port), so c's copy is behind what the
/// client has seen. c must not continue it (it would send other bytes at the sequence numbers
/// the client already has): it reports the connection lost (`copy_behind_client`) and lets it
/// be reset. The client sees a reset, never a wrong byte.
#[test]
fn a_copy_behind_what_the_client_saw_is_reset_not_corrupted() {
    need_root!();
    if !have_python() {
        return;
    }
    let _serial = serial();
    let dir = run_dir("copy-behind");
    let topo = shipped("three-node.toml");
    let mut c = up(&dir, topo);
    wait_ready(&c, &["a", "b", "c"]);
    let json = dir.join("client.json");
    let args = strings(PY_STREAM_20MB);
    let mut child = py_start(&c, "client1", &args, &json);
    py_progress(&mut child, |p| {
        p.parse::<u64>().is_ok_and(|n| n >= 6_000_000)
    });
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until("b serves a's connection", Duration::from_secs(5), || {
        status(&c, "b").is_some_and(|s| s["connections"]["assumed"] == 1)
    });
    std::thread::sleep(Duration::from_millis(100));
    c.fault(&Fault::PowerOff { node: "b".into() }).unwrap();
    let report = py_wait(child, &json);
    wait_until("c holds a's group", Duration::from_secs(5), || {
        holds_group(&c, "c", 1)
    });
    let lost = status(&c, "c").map(|s| s["connections"]["lost"].clone());
    c.down().unwrap();
    let error = report["error"].as_str().unwrap_or("");
    eprintln!("the client: {error}; c lost {lost:?}");
    assert!(
        !error.contains("mismatch"),
        "a wrong byte reached the client: {error}"
    );
    assert_eq!(
        report["ok"], false,
        "the stream cannot survive: c's copy is behind"
    );
    assert_eq!(
        lost,
        Some(serde_json::json!({"copy_behind_client": 1})),
        "c reports why it did not continue the connection"
    );
}

/// Three nodes on a hub (each sees all traffic, so each backs the others up), serving
/// `application` on `port`, with the given assignment and failback.
fn three_node_cluster(
    dir: &std::path::Path,
    application: &str,
    port: u16,
    assignment: &str,
    failback: &str,
) -> holdfast_harness::topology::Topology {
    // Under `spread` the tests run 100 streams through a hub: on two cores the heartbeats go
    // out up to 35 ms late, and 3 x 10 ms declared a live node dead in 1 of 4 runs (the
    // split is under test here, not detection; see topologies/three-node-spread.toml).
    let miss = if assignment == "spread" { 5 } else { 3 };
    let cluster = format!(
        r#"cluster_id = 6
key = "three-node test key"
group = "239.255.72.70:5405"
interface = "eth0"
[defaults]
heartbeat_ms = 10
miss_count = {miss}
assignment = "{assignment}"
failback = "{failback}"
application = "{application}"
ports = [{port}, {port}]
[[node]]
name = "a"
id = 1
backups = ["b", "c"]
addresses = ["198.18.0.10/24"]
[[node]]
name = "b"
id = 2
backups = ["c", "a"]
addresses = ["198.18.0.20/24"]
[[node]]
name = "c"
id = 3
backups = ["a", "b"]
addresses = ["198.18.0.30/24"]
"#
    );
    let mut topology = String::from("[[switch]]\nname = \"sw0\"\nhub = true\n");
    for (n, ip) in [("a", 1), ("b", 2), ("c", 3)] {
        topology.push_str(&format!(
            "[[node]]\nname = \"{n}\"\ninterface = [{{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.{ip}/24\"] }}]\nprocess = [{{ name = \"holdfastd\", command = \"{{bin_dir}}/holdfastd --config {{topology_dir}}/cluster.toml --node {{node}} --run-dir {{node_dir}}\" }}]\n"
        ));
    }
    topology.push_str("[[node]]\nname = \"client\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.100/24\"] }]\n");
    custom(dir, &topology, &cluster)
}

/// `spread`: when a dies, b (first in a's order) takes the address and its share, c asks b for
/// the other share and gets it; b forwards c's share to c in the kernel. 100 connections split
/// within 40..60 each, every one survives, and after the failure each is served by exactly one
/// node's MAC.
#[test]
fn spread_splits_a_hundred_connections_across_two_survivors() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("spread");
    let mut c = up(&dir, three_node_cluster(&dir, "echo", 7, "spread", "none"));
    wait_ready(&c, &["a", "b", "c"]);
    // Ten 16 kB writes per connection, 400 ms apart: every connection lives across the failure.
    let h = c
        .start_client("client", stream(163_840, 400_000, 100))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    let rep = h.wait().unwrap();
    let st: Vec<_> = ["b", "c"]
        .iter()
        .map(|n| status(&c, n).map(|s| s["connections"].clone()))
        .collect();
    let s = c.down().unwrap();
    assert!(rep.intact(), "{}\nstatus of b and c: {st:?}", rep.summary());
    let frames = read_pcap(&s.captures[0].file);
    let off = event_ts(&s.events, "power-off:done", "a");
    assert_no_reset_of_open_connections(&frames, off);
    let vip: SocketAddr = VIP.parse().unwrap();
    // After a is gone: which switch ports send segments from the service address, per
    // connection (client port).
    let mut by_conn: std::collections::BTreeMap<u16, std::collections::BTreeSet<&str>> =
        Default::default();
    for f in frames.iter().filter(|f| f.inbound && f.ts_ns > off) {
        if let Some(t) = parse_tcp(&f.data).filter(|t| t.src == vip) {
            by_conn
                .entry(t.dst.port())
                .or_default()
                .insert(f.iface.as_str());
        }
    }
    let shared: Vec<_> = by_conn.iter().filter(|(_, p)| p.len() != 1).collect();
    assert!(
        shared.is_empty(),
        "connections served by more than one node after the failure: {shared:?}"
    );
    let on_b = by_conn.values().filter(|p| p.contains("sw0:b")).count();
    let on_c = by_conn.values().filter(|p| p.contains("sw0:c")).count();
    eprintln!("spread: {on_b} connections on b, {on_c} on c");
    assert_eq!(
        on_b + on_c,
        100,
        "every connection is served after the failure"
    );
    assert!(
        (40..=60).contains(&on_b) && (40..=60).contains(&on_c),
        "split within ±20%: b {on_b}, c {on_c}"
    );
}

/// Who holds `owner`'s group in `node`'s view (its status), if anyone.
fn holder_in_view_of(c: &holdfast_harness::Cluster, node: &str, owner: u32) -> Option<u64> {
    status(c, node).and_then(|s| {
        s["groups"].as_array().and_then(|g| {
            g.iter()
                .find(|x| x["owner"] == owner)
                .and_then(|x| x["holder"].as_u64())
        })
    })
}

/// Rolling failures on three nodes with `migrate` failback: a dies and b assumes a's
/// connection; b dies and c assumes the connections that were a's and b's; a and b return and
/// take their connections back. One client session on a's address and one on b's live through
/// all of it, byte for byte, with no reset from either address while they run.
fn rolling(app: &str, port: u16, workload: Workload) {
    let dir = run_dir(&format!("rolling-{app}"));
    let mut c = up(
        &dir,
        three_node_cluster(&dir, app, port, "ordered", "migrate"),
    );
    wait_ready(&c, &["a", "b", "c"]);
    let spec = |vip: &str| {
        let mut s = ClientSpec::new(workload, format!("{vip}:{port}").parse().unwrap());
        s.stall_timeout_ms = 5000;
        match workload {
            Workload::Kv => {
                s.count = 6000;
                s.rate = 1000.0;
            }
            _ => {
                s.bytes = 6 << 20;
                s.pace_us = 5000;
            }
        }
        s
    };
    let on_a = c.start_client("client", spec("198.18.0.10")).unwrap();
    let on_b = c.start_client("client", spec("198.18.0.20")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let off = |c: &mut holdfast_harness::Cluster, n: &str| {
        c.fault(&Fault::PowerOff { node: n.into() }).unwrap()
    };
    off(&mut c, "a");
    wait_until("b holds a's group", Duration::from_secs(5), || {
        holder_in_view_of(&c, "c", 1) == Some(2)
    });
    std::thread::sleep(Duration::from_millis(300));
    off(&mut c, "b");
    wait_until("c holds a's and b's groups", Duration::from_secs(5), || {
        holder_in_view_of(&c, "c", 1) == Some(3) && holder_in_view_of(&c, "c", 2) == Some(3)
    });
    std::thread::sleep(Duration::from_millis(300));
    power_on_until_eligible(&mut c, "a");
    power_on_until_eligible(&mut c, "b");
    wait_until(
        "a and b hold their own groups again",
        Duration::from_secs(10),
        || holder_in_view_of(&c, "c", 1) == Some(1) && holder_in_view_of(&c, "c", 2) == Some(2),
    );
    let rep_a = on_a.wait().unwrap();
    let rep_b = on_b.wait().unwrap();
    let s = c.down().unwrap();
    assert!(
        rep_a.intact(),
        "{app}, session on a's address: {}",
        rep_a.summary()
    );
    assert!(
        rep_b.intact(),
        "{app}, session on b's address: {}",
        rep_b.summary()
    );
    let frames = read_pcap(&s.captures[0].file);
    let first = event_ts(&s.events, "power-off", "a");
    for (vip, rep) in [("198.18.0.10", &rep_a), ("198.18.0.20", &rep_b)] {
        let target: SocketAddr = format!("{vip}:{port}").parse().unwrap();
        let resets = frames
            .iter()
            .filter(|f| f.ts_ns > first && f.ts_ns < rep.finished_ns)
            .filter(|f| parse_tcp(&f.data).is_some_and(|x| x.rst && x.src == target))
            .count();
        assert_eq!(resets, 0, "{app}: RST from {target} while the session ran");
    }
    // Who served each session, in order, by the switch port its data left from.
    for (vip, owner) in [("198.18.0.10", "sw0:a"), ("198.18.0.20", "sw0:b")] {
        let target: SocketAddr = format!("{vip}:{port}").parse().unwrap();
        let mut servers: Vec<&str> = Vec::new();
        for f in frames.iter().filter(|f| f.inbound && f.ts_ns > first) {
            if parse_tcp(&f.data).is_some_and(|t| t.src == target && !t.payload.is_empty())
                && servers.last() != Some(&f.iface.as_str())
            {
                servers.push(f.iface.as_str());
            }
        }
        assert!(
            servers.contains(&"sw0:c") && servers.last() == Some(&owner),
            "{app}: {vip} served by c during the failures and by its owner at the end: {servers:?}"
        );
    }
    eprintln!("rolling {app}: {} / {}", rep_a.summary(), rep_b.summary());
}

#[test]
fn rolling_failures_and_failback_are_survived_by_stream_and_kv() {
    need_root!();
    let _serial = serial();
    rolling("echo", 7, Workload::Stream);
    rolling("kv", 11211, Workload::Kv);
}
