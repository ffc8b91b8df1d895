//! Privileged tests of the harness: building, TCP, capture, every fault kind, and cleanup.
//! Without root each prints `skipped: needs CAP_NET_ADMIN (run with sudo)`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use holdfast_harness::client::{ClientSpec, Workload};
use holdfast_harness::registry::RunRecord;
use holdfast_harness::{Fault, need_root, netns, process};

/// A node `a` that sends a UDP broadcast beacon every 5 ms and runs an echo service, a bystander
/// `b`, and a client, on one switch with a mirrored to b.
const BEACON: &str = r#"
[[switch]]
name = "sw0"
mirror = [{ from = "a", to = ["b"] }]

[[node]]
name = "a"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24"] }]
process = [
  { name = "beacon", command = "{harness} serve beacon --listen {ip}:9000 --to 198.18.0.255:9 --interval-ms 5" },
  { name = "echo", command = "{harness} serve echo --listen {ip}:7" },
  { name = "once", command = "{harness} serve echo --listen {ip}:8", restart = false },
]

[[node]]
name = "b"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.2/24"] }]

[[node]]
name = "client"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.100/24"] }]
"#;

/// IPv4 and IPv6 on a switch, plus a point-to-point link.
const MIXED: &str = r#"
[[switch]]
name = "sw0"

[[node]]
name = "a"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24", "2001:db8::1/64"] }]

[[node]]
name = "b"
interface = [
  { name = "eth0", switch = "sw0", addresses = ["198.18.0.2/24", "2001:db8::2/64"] },
  { name = "p0", peer = "c:p0", addresses = ["198.19.0.1/30"] },
]

[[node]]
name = "c"
interface = [{ name = "p0", addresses = ["198.19.0.2/30"] }]
"#;

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until a TCP service answers inside a node.
fn wait_for_service(c: &holdfast_harness::Cluster, node: &str, addr: SocketAddr) {
    wait_until(
        &format!("{addr} from {node}"),
        Duration::from_secs(5),
        || {
            c.in_node(node, || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })
            .unwrap_or(false)
        },
    );
}

#[test]
fn shipped_topologies_build_and_tear_down() {
    need_root!();
    // The shipped topologies run holdfastd, which is not the harness's business: build them
    // without processes, and the harness's own topology with its processes.
    for name in ["two-node.toml", "three-node.toml"] {
        let mut opts = options(&format!("build-{name}"));
        opts.start_processes = false;
        let c = holdfast_harness::Cluster::up(shipped(name), opts).unwrap();
        let rec = c.record().clone();
        for ns in &rec.namespaces {
            assert!(netns::exists(ns), "{name}: namespace {ns} missing");
        }
        c.down().unwrap();
        for ns in &rec.namespaces {
            assert!(!netns::exists(ns), "{name}: namespace {ns} left behind");
        }
    }
    for name in ["basic.toml"] {
        let topo = basic();
        let mut c = up(&format!("build-{name}"), topo.clone());
        let rec = c.record().clone();
        for ns in &rec.namespaces {
            assert!(netns::exists(ns), "{name}: namespace {ns} missing");
        }
        let mut pids = Vec::new();
        for n in &topo.nodes {
            let p = c.pids(&n.name);
            assert_eq!(
                p.len(),
                n.processes.len(),
                "{name}: node {} processes",
                n.name
            );
            pids.extend(p.into_iter().map(|(_, p)| p));
        }
        // The services are really running in their nodes.
        let client = topo.nodes.iter().find(|n| n.processes.is_empty()).unwrap();
        wait_for_service(&c, &client.name, "198.18.0.1:7".parse().unwrap());
        let inodes: Vec<u64> = rec
            .namespaces
            .iter()
            .filter_map(|n| netns::inode_of(n))
            .collect();
        c.down().unwrap();
        for ns in &rec.namespaces {
            assert!(!netns::exists(ns), "{name}: namespace {ns} left behind");
        }
        for p in pids {
            assert!(
                process::state(p).is_none(),
                "{name}: process {p} left behind"
            );
        }
        assert!(netns::pids_in(&inodes).is_empty());
        assert!(
            RunRecord::load(&rec.id).is_err(),
            "{name}: run record left behind"
        );
    }
}

#[test]
fn tcp_between_every_pair_of_nodes() {
    need_root!();
    let mut topo = shipped("three-node.toml");
    for n in &mut topo.nodes {
        n.processes.clear();
    }
    let c = up("tcp-pairs", topo.clone());
    let mut port = 6000;
    let mut pairs = Vec::new();
    for x in &topo.nodes {
        for y in &topo.nodes {
            if x.name != y.name {
                pairs.push((
                    x.name.clone(),
                    y.name.clone(),
                    y.address(None, false).unwrap(),
                ));
            }
        }
    }
    // And IPv6 plus a point-to-point link, on another topology.
    let m = up("tcp-mixed", topology("mixed.toml", MIXED));
    let mixed_pairs = [
        ("a", "b", "2001:db8::2".parse().unwrap()),
        ("b", "a", "2001:db8::1".parse().unwrap()),
        ("b", "c", "198.19.0.2".parse().unwrap()),
        ("c", "b", "198.19.0.1".parse().unwrap()),
        ("a", "b", "198.18.0.2".parse().unwrap()),
    ];
    let all = pairs
        .iter()
        .map(|(x, y, a)| (&c, x.as_str(), y.as_str(), *a))
        .chain(mixed_pairs.iter().map(|(x, y, a)| (&m, *x, *y, *a)));
    let mut checked = 0;
    for (cl, x, y, addr) in all {
        port += 1;
        let sa = SocketAddr::new(addr, port);
        let listener = cl.in_node(y, || TcpListener::bind(sa)).unwrap().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        });
        let got = cl
            .in_node(x, move || -> std::io::Result<[u8; 5]> {
                let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(3))?;
                s.write_all(b"hello")?;
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf)?;
                Ok(buf)
            })
            .unwrap()
            .unwrap_or_else(|e| panic!("{x} -> {y} ({sa}): {e}"));
        assert_eq!(&got, b"hello");
        server.join().unwrap();
        checked += 1;
    }
    assert_eq!(checked, 5 * 4 + 5);
    // A node cannot reach what it is not linked to: a is not on c's point-to-point link.
    let unreachable = m
        .in_node("a", || {
            TcpStream::connect_timeout(&"198.19.0.2:1".parse().unwrap(), Duration::from_millis(300))
        })
        .unwrap();
    assert!(unreachable.is_err());
    c.down().unwrap();
    m.down().unwrap();
}

#[test]
fn capture_holds_the_handshake_on_named_interfaces() {
    need_root!();
    let c = up("capture", basic());
    let target: SocketAddr = "198.18.0.1:7".parse().unwrap();
    wait_for_service(&c, "client", target);
    let mut spec = ClientSpec::new(Workload::Stream, target);
    spec.bytes = 10_000;
    let rep = c.start_client("client", spec).unwrap().wait().unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    let local: SocketAddr = rep.connections[0].local.as_ref().unwrap().parse().unwrap();
    let summary = c.down().unwrap();
    assert_eq!(summary.captures.len(), 1);
    let frames = read_pcap(&summary.captures[0].file);
    let flow = |f: &Frame| {
        f.tcp()
            .filter(|t| (t.src == local && t.dst == target) || (t.src == target && t.dst == local))
    };
    // The SYN leaves the client, the SYN-ACK leaves a, then the client's ACK: each captured
    // where it entered the switch.
    let syn = frames
        .iter()
        .position(|f| {
            f.inbound && f.iface == "sw0:client" && flow(f).is_some_and(|t| t.syn && !t.ack)
        })
        .expect("SYN inbound on sw0:client");
    let synack = frames
        .iter()
        .position(|f| {
            f.inbound
                && f.iface == "sw0:a"
                && flow(f).is_some_and(|t| t.syn && t.ack && t.src == target)
        })
        .expect("SYN-ACK inbound on sw0:a");
    let ack = frames
        .iter()
        .enumerate()
        .skip(synack)
        .find(|(_, f)| {
            f.inbound
                && f.iface == "sw0:client"
                && flow(f).is_some_and(|t| !t.syn && t.ack && t.src == local)
        })
        .map(|(i, _)| i)
        .expect("ACK inbound on sw0:client");
    assert!(syn < synack && synack < ack);
    assert!(frames[syn].ts_ns <= frames[synack].ts_ns && frames[synack].ts_ns <= frames[ack].ts_ns);
    // The SYN also went out of a's port, and a's port is mirrored to b: b's port carries a copy
    // of the SYN-ACK too.
    assert!(
        frames
            .iter()
            .any(|f| !f.inbound && f.iface == "sw0:a" && flow(f).is_some_and(|t| t.syn && !t.ack))
    );
    assert!(
        frames
            .iter()
            .any(|f| !f.inbound && f.iface == "sw0:b" && flow(f).is_some_and(|t| t.syn && t.ack))
    );
    // No mirror from b: client traffic does not reach b's port except through a's mirror.
    let names: std::collections::BTreeSet<&str> = frames.iter().map(|f| f.iface.as_str()).collect();
    assert!(
        names.is_subset(&["sw0:a", "sw0:b", "sw0:client"].into()),
        "{names:?}"
    );
}

/// Beacon frames a node sent into the switch in [from, to).
fn beacons(frames: &[Frame], iface: &str, from: u64, to: u64) -> usize {
    frames
        .iter()
        .filter(|f| {
            f.inbound && f.iface == iface && f.ts_ns >= from && f.ts_ns < to && f.is_udp_to_port(9)
        })
        .count()
}

fn sent_by(frames: &[Frame], iface: &str, from: u64, to: u64) -> usize {
    frames
        .iter()
        .filter(|f| f.inbound && f.iface == iface && f.ts_ns >= from && f.ts_ns < to)
        .count()
}

#[test]
fn power_off_silences_the_node_and_power_on_recreates_it() {
    need_root!();
    let mut c = up("power", topology("beacon.toml", BEACON));
    let target: SocketAddr = "198.18.0.1:7".parse().unwrap();
    wait_for_service(&c, "client", target);
    let old_inode = c.node_ns("a").unwrap().inode();
    let old_pids = c.pids("a");
    assert_eq!(old_pids.len(), 3);
    // A paced stream is mid-flight when the plug is pulled: a must not send a FIN or RST.
    let mut spec = ClientSpec::new(Workload::Stream, target);
    spec.bytes = 2_000_000;
    spec.pace_us = 2000;
    spec.stall_timeout_ms = 3000;
    let client = c.start_client("client", spec).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    for (_, p) in &old_pids {
        assert!(
            process::state(*p).is_none_or(|s| s == 'Z'),
            "process {p} survived power-off"
        );
    }
    assert!(c.node_ns("a").is_none());
    assert!(!netns::exists(&RunRecord::ns_name(c.id(), "a")));
    std::thread::sleep(Duration::from_millis(300));
    c.fault(&Fault::PowerOn { node: "a".into() }).unwrap();
    let new_inode = c.node_ns("a").unwrap().inode();
    assert_ne!(old_inode, new_inode, "power-on must make a fresh namespace");
    // Only restartable processes come back.
    let names: Vec<String> = c.pids("a").into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["beacon", "echo"]);
    wait_for_service(&c, "client", target);
    std::thread::sleep(Duration::from_millis(100));
    let rep = client.wait().unwrap();
    assert!(
        !rep.intact(),
        "a connection cannot survive a power-off without holdfastd"
    );
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let down = event_ts(&s.events, "power-off:links-down", "a");
    let on = event_ts(&s.events, "power-on", "a");
    let on_done = event_ts(&s.events, "power-on:done", "a");
    let start = event_ts(&s.events, "power-off", "a");
    // The events are in the capture too, as comments on each port's next frame.
    let noted = |text: &str, port: &str| {
        frames
            .iter()
            .find(|f| f.iface == port && f.comment.as_deref().is_some_and(|c| c.contains(text)))
    };
    let f =
        noted("harness: power-off a", "sw0:client").expect("power-off noted on the client's port");
    assert!(
        f.ts_ns >= start,
        "a note comes on a frame at or after its event"
    );
    assert!(
        frames
            .iter()
            .filter(|x| x.iface == "sw0:client" && x.ts_ns >= start && x.ts_ns < f.ts_ns)
            .count()
            == 0,
        "the note is on the first frame after the event"
    );
    assert!(
        noted("harness: power-on a", "sw0:a").is_some(),
        "power-on noted on a's port"
    );
    assert!(
        beacons(&frames, "sw0:a", 0, start) > 10,
        "beacons before power-off"
    );
    assert_eq!(
        sent_by(&frames, "sw0:a", down, on),
        0,
        "a frame left a after its links went down"
    );
    assert!(
        beacons(&frames, "sw0:a", on_done, u64::MAX) > 5,
        "beacons after power-on"
    );
    // Same MAC after power-on.
    let macs: std::collections::BTreeSet<[u8; 6]> = frames
        .iter()
        .filter(|f| f.inbound && f.iface == "sw0:a" && f.is_udp_to_port(9))
        .map(Frame::src_mac)
        .collect();
    assert_eq!(macs.len(), 1, "{macs:?}");
}

#[test]
fn isolate_and_heal_keep_the_processes() {
    need_root!();
    let mut c = up("isolate", topology("beacon.toml", BEACON));
    wait_for_service(&c, "client", "198.18.0.1:7".parse().unwrap());
    let before = c.pids("a");
    c.fault(&Fault::Isolate { node: "a".into() }).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let unreachable = c
        .in_node("client", || {
            TcpStream::connect_timeout(&"198.18.0.1:7".parse().unwrap(), Duration::from_millis(200))
        })
        .unwrap();
    assert!(unreachable.is_err(), "an isolated node answered");
    c.fault(&Fault::Heal { node: "a".into() }).unwrap();
    wait_for_service(&c, "client", "198.18.0.1:7".parse().unwrap());
    assert_eq!(before, c.pids("a"), "isolate/heal changed the processes");
    std::thread::sleep(Duration::from_millis(100));
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let iso = event_ts(&s.events, "isolate:done", "a");
    let heal = event_ts(&s.events, "heal", "a");
    let healed = event_ts(&s.events, "heal:done", "a");
    assert_eq!(sent_by(&frames, "sw0:a", iso, heal), 0);
    assert!(
        beacons(&frames, "sw0:a", healed, u64::MAX) > 5,
        "beacons after heal"
    );
}

#[test]
fn freeze_stops_and_thaw_resumes_the_processes() {
    need_root!();
    let mut c = up("freeze", topology("beacon.toml", BEACON));
    wait_for_service(&c, "client", "198.18.0.1:7".parse().unwrap());
    let pids = c.pids("a");
    c.fault(&Fault::Freeze { node: "a".into() }).unwrap();
    for (n, p) in &pids {
        wait_until(&format!("{n} stopped"), Duration::from_secs(2), || {
            process::state(*p) == Some('T')
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::Thaw { node: "a".into() }).unwrap();
    for (n, p) in &pids {
        wait_until(&format!("{n} running"), Duration::from_secs(2), || {
            process::state(*p) != Some('T')
        });
    }
    assert_eq!(pids, c.pids("a"));
    std::thread::sleep(Duration::from_millis(100));
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let frozen = event_ts(&s.events, "freeze:done", "a");
    let thaw = event_ts(&s.events, "thaw", "a");
    let thawed = event_ts(&s.events, "thaw:done", "a");
    // Allow the one beacon that may already have been on its way.
    assert!(
        beacons(&frames, "sw0:a", frozen + 10_000_000, thaw) == 0,
        "a frozen beacon sent"
    );
    assert!(
        beacons(&frames, "sw0:a", thawed, u64::MAX) > 5,
        "beacons after thaw"
    );
}

#[test]
fn crash_kills_one_process_and_keeps_the_kernel() {
    need_root!();
    let mut c = up("crash", topology("beacon.toml", BEACON));
    wait_for_service(&c, "client", "198.18.0.1:7".parse().unwrap());
    let inode = c.node_ns("a").unwrap().inode();
    let before = c.pids("a");
    c.fault(&Fault::Crash {
        node: "a".into(),
        process: "beacon".into(),
    })
    .unwrap();
    let after = c.pids("a");
    let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["echo", "once"]);
    let beacon_pid = before.iter().find(|(n, _)| n == "beacon").unwrap().1;
    assert!(process::state(beacon_pid).is_none());
    assert_eq!(
        c.node_ns("a").unwrap().inode(),
        inode,
        "the kernel must stay up"
    );
    // The node still answers.
    wait_for_service(&c, "client", "198.18.0.1:7".parse().unwrap());
    assert!(
        c.fault(&Fault::Crash {
            node: "a".into(),
            process: "beacon".into()
        })
        .is_err()
    );
    c.down().unwrap();
}

/// Counts beacon datagrams a client receives in `window`.
fn received(c: &holdfast_harness::Cluster, window: Duration) -> usize {
    let sock = c
        .in_node("client", || {
            let s = UdpSocket::bind("0.0.0.0:9")?;
            s.set_read_timeout(Some(Duration::from_millis(20)))?;
            Ok::<_, std::io::Error>(s)
        })
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + window;
    let mut n = 0;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        if sock.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

#[test]
fn loss_drops_the_given_fraction() {
    need_root!();
    let mut c = up("loss", topology("beacon.toml", BEACON));
    wait_for_service(&c, "client", "198.18.0.1:7".parse().unwrap());
    let window = Duration::from_millis(1000);
    let clean = received(&c, window);
    assert!(clean > 100, "only {clean} beacons without loss");
    c.fault(&Fault::Loss {
        node: "a".into(),
        pct: 100.0,
    })
    .unwrap();
    assert_eq!(received(&c, window), 0, "100% loss let beacons through");
    c.fault(&Fault::Loss {
        node: "sw0:a".into(),
        pct: 50.0,
    })
    .unwrap();
    let half = received(&c, window);
    let ratio = half as f64 / clean as f64;
    assert!(
        (0.25..=0.75).contains(&ratio),
        "50% loss delivered {half}/{clean}"
    );
    c.fault(&Fault::Loss {
        node: "a".into(),
        pct: 0.0,
    })
    .unwrap();
    let again = received(&c, window);
    assert!(
        again as f64 > clean as f64 * 0.8,
        "loss 0 delivered {again}/{clean}"
    );
    // The mirror survives loss changes: b's port still gets copies of a's frames.
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let last = event_ts(&s.events, "loss:done", "a");
    assert!(
        frames
            .iter()
            .any(|f| !f.inbound && f.iface == "sw0:b" && f.ts_ns > last && f.is_udp_to_port(9))
    );
}

/// `holdfast-harness up basic.toml --run-dir DIR` in a child process: the run's id and record.
fn cli_up(dir: &std::path::Path) -> (String, RunRecord) {
    let out = std::process::Command::new(harness_bin())
        .args(["up", "harness/tests/topologies/basic.toml", "--run-dir"])
        .arg(dir)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let rec = RunRecord::load(&id).unwrap();
    (id, rec)
}

#[test]
fn a_node_on_a_killed_run_is_cleaned() {
    need_root!();
    let dir = run_dir("killed");
    let (id, rec) = cli_up(&dir);
    let inodes: Vec<u64> = rec
        .namespaces
        .iter()
        .filter_map(|n| netns::inode_of(n))
        .collect();
    assert_eq!(inodes.len(), rec.namespaces.len());
    assert!(
        !netns::pids_in(&inodes).is_empty(),
        "the node processes should be running"
    );
    // SIGKILL the harness: no handler runs.
    // SAFETY: kill(2) on the supervisor we started.
    unsafe { libc::kill(rec.owner_pid, libc::SIGKILL) };
    wait_until("supervisor death", Duration::from_secs(5), || {
        !rec.owner_alive()
    });
    // Its namespaces are left behind...
    assert!(rec.namespaces.iter().all(|n| netns::exists(n)));
    // ...until clean.
    let out = std::process::Command::new(harness_bin())
        .args(["clean", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("removed run {id}")));
    for n in &rec.namespaces {
        assert!(!netns::exists(n), "namespace {n} left behind");
    }
    assert!(netns::pids_in(&inodes).is_empty(), "processes left behind");
    assert!(RunRecord::load(&id).is_err());
    // Nothing was ever made in the root namespace.
    for port in ["a-eth0", "b-eth0", "client-eth0", "br0"] {
        assert!(!std::path::Path::new("/sys/class/net").join(port).exists());
    }
}

#[test]
fn cli_up_exec_fault_down() {
    need_root!();
    let bin = harness_bin();
    let dir = run_dir("cli");
    let run = |args: &[&str]| {
        std::process::Command::new(&bin)
            .args(args)
            .current_dir(root())
            .output()
            .unwrap()
    };
    let (id, rec) = cli_up(&dir);
    let bin_s = bin.to_str().unwrap();
    let stream = |expect_ok: bool| {
        let mut last = None;
        // The services may need a moment after `up`.
        for _ in 0..50 {
            let o = run(&[
                "exec",
                &id,
                "client",
                "--",
                bin_s,
                "client",
                "stream",
                "--target",
                "198.18.0.1:7",
                "--bytes",
                "100000",
            ]);
            if o.status.success() == expect_ok {
                return o;
            }
            last = Some(o);
            std::thread::sleep(Duration::from_millis(100));
        }
        let o = last.unwrap();
        panic!(
            "exec stream: {:?} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let o = stream(true);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"bytes_verified\": 100000"));
    // exec really runs in the node: the client has its address.
    let o = run(&["exec", &id, "client", "--", "cat", "/proc/net/fib_trie"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("198.18.0.100"));
    let o = run(&["fault", &id, "power-off", "a"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stream(false);
    let o = run(&["fault", &id, "power-on", "a"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    stream(true);
    let o = run(&["fault", &id, "explode", "a"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown fault"));
    let o = run(&["down", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let left = netns::list(&format!("hf{id}"));
    assert!(left.is_empty(), "left after down: {left:?}");
    for n in &rec.namespaces {
        assert!(!netns::exists(n));
    }
    assert!(dir.join("sw0.pcapng").exists());
}

#[test]
fn tshark_reads_the_capture() {
    need_root!();
    if std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_err()
    {
        holdfast_harness::report_skip("skipped: tshark is not installed (.ci/run installs it)");
        return;
    }
    let c = up("tshark", basic());
    let target: SocketAddr = "198.18.0.1:7".parse().unwrap();
    wait_for_service(&c, "client", target);
    c.event("mark", None, "before the requests");
    let rep = c
        .start_client("client", ClientSpec::new(Workload::Request, target))
        .unwrap()
        .wait()
        .unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    let s = c.down().unwrap();
    // The harness's events are frame comments Wireshark filters on.
    let noted = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&s.captures[0].file)
        .args([
            "-Y",
            "frame.comment contains \"mark\"",
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ])
        .output()
        .unwrap();
    let noted = String::from_utf8_lossy(&noted.stdout);
    assert!(
        noted.contains("harness: mark (before the requests)"),
        "no frame comment for the event: {noted:?}"
    );
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&s.captures[0].file)
        .args([
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.src",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags.syn",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("sw0:client\t198.18.0.100\t7\t1")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("sw0:a\t198.18.0.1\t")),
        "{text}"
    );
    let ifaces = std::process::Command::new("capinfos")
        .arg("-I")
        .arg(&s.captures[0].file)
        .output();
    if let Ok(o) = ifaces {
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(
            t.contains("sw0:a") && t.contains("sw0:b") && t.contains("sw0:client"),
            "{t}"
        );
    }
}

#[test]
fn a_panic_tears_the_run_down() {
    need_root!();
    let mut namespaces = Vec::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let c = up("panic", basic());
        namespaces = c.record().namespaces.clone();
        panic!("boom");
    }));
    assert!(r.is_err());
    assert!(!namespaces.is_empty());
    for n in &namespaces {
        assert!(!netns::exists(n), "namespace {n} survived a panic");
    }
}

#[test]
fn sigint_tears_the_run_down() {
    need_root!();
    let dir = run_dir("sigint");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("long.toml");
    std::fs::write(&scenario, "[[step]]\ndo = \"wait\"\nfor = \"60s\"\n").unwrap();
    let before: Vec<String> = holdfast_harness::registry::list()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let mut child = std::process::Command::new(harness_bin())
        .args(["run", "harness/tests/topologies/basic.toml", "--scenario"])
        .arg(&scenario)
        .arg("--run-dir")
        .arg(dir.join("run"))
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut rec = None;
    wait_until("the run to come up", Duration::from_secs(10), || {
        rec = holdfast_harness::registry::list().into_iter().find(|r| {
            r.owner_pid == pid
                && !before.contains(&r.id)
                && r.namespaces.iter().all(|n| netns::exists(n))
        });
        rec.is_some()
    });
    let rec = rec.unwrap();
    // Let it finish booting its processes, then Ctrl-C.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    for n in &rec.namespaces {
        assert!(!netns::exists(n), "namespace {n} survived SIGINT");
    }
    assert!(RunRecord::load(&rec.id).is_err());
}

/// A mirror with two destinations copies every frame of the mirrored port, both directions,
/// to each of them (one u32 filter with its mirred actions chained: a second match-all filter
/// would never run). Counted per destination in the capture.
#[test]
fn a_mirror_copies_every_frame_to_every_destination() {
    need_root!();
    let topo = topology(
        "mirror-two",
        r#"
[[switch]]
name = "sw0"
mirror = [{ from = "a", to = ["b", "c"] }]

[[node]]
name = "a"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24"] }]
process = [{ name = "echo", command = "{harness} serve echo --listen {ip}:7" }]

[[node]]
name = "b"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.2/24"] }]

[[node]]
name = "c"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.3/24"] }]

[[node]]
name = "client"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.100/24"] }]
"#,
    );
    let c = up("mirror-two", topo);
    let mut spec = ClientSpec::new(Workload::Stream, "198.18.0.1:7".parse().unwrap());
    spec.bytes = 1_000_000;
    let rep = c
        .start_client("client", spec)
        .and_then(|h| h.wait())
        .unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    let s = c.down().unwrap();
    assert_eq!(s.captures[0].kernel_drops, 0, "the capture dropped frames");
    let frames = read_pcap(&s.captures[0].file);
    let echo: SocketAddr = "198.18.0.1:7".parse().unwrap();
    // The echo connection's frames, by port and direction. Unicast between the client and a:
    // b and c see them only through the mirror.
    let count = |iface: &str, inbound: bool| {
        frames
            .iter()
            .filter(|f| f.iface == iface && f.inbound == inbound)
            .filter(|f| f.tcp().is_some_and(|t| t.src == echo || t.dst == echo))
            .count()
    };
    let at_a = count("sw0:a", true) + count("sw0:a", false);
    let (at_b, at_c) = (count("sw0:b", false), count("sw0:c", false));
    eprintln!("echo frames: {at_a} through a's port, copies: {at_b} to b, {at_c} to c");
    assert!(at_a > 50, "too few frames to judge: {at_a}");
    assert_eq!(at_b, at_a, "b got a copy of every frame of a's port");
    assert_eq!(at_c, at_a, "c got a copy of every frame of a's port");
}
