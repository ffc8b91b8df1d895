//! holdfastd on the harness, judged from the pcaps: boot announcements, solicitation, address
//! takeover with each ARP policy, hostile datagrams, and graceful shutdown.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use holdfast_harness::client::{ClientSpec, Workload};
use holdfast_harness::{Fault, evidence, need_root};
use holdfast_proto::policy::{ArpPolicy, FailbackMode, NodeId, SnoopMode};
use holdfast_proto::wire::{Body, FLAG_LEAVING, Message};

const VIP: &str = "198.18.0.10";

fn connect_ok(c: &holdfast_harness::Cluster, target: &str) -> bool {
    let mut spec = ClientSpec::new(Workload::Request, target.parse().unwrap());
    spec.count = 3;
    spec.stall_timeout_ms = 500;
    c.start_client("client", spec)
        .and_then(|h| h.wait())
        .is_ok_and(|r| r.intact())
}

/// claims 2, 12, 17 (announce at boot) and 3, 13, 18 (every ownership field), decoded from the
/// capture with holdfast-proto's decoder.
#[test]
fn boot_announce_carries_every_ownership_field() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("boot-announce");
    let c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    // a's port is mirrored to b, so a's backup snoops the wire; b's is not, so b forwards
    // copies itself (the adapter renders that from the topology).
    for (port, id, vip, mac, backup, snoop) in [
        (
            "sw0:a",
            1,
            "198.18.0.10",
            [2, 0x68, 0x66, 0, 1, 1],
            2,
            SnoopMode::Mirror,
        ),
        (
            "sw0:b",
            2,
            "198.18.0.20",
            [2, 0x68, 0x66, 0, 2, 1],
            1,
            SnoopMode::Forward,
        ),
    ] {
        let sent: Vec<Message> = frames
            .iter()
            .filter(|f| f.inbound && f.iface == port)
            .filter_map(Frame::control)
            .collect();
        let first = sent
            .first()
            .unwrap_or_else(|| panic!("{port}: no control message"));
        let Body::Announce(a) = &first.body else {
            panic!(
                "{port}: the first message at boot is {:?}, not ANNOUNCE",
                first.body.msg_type()
            );
        };
        assert_eq!(first.sender, NodeId(id));
        let o = &a.ownership;
        assert_eq!(o.node_id, NodeId(id), "cluster node ID");
        assert_eq!(
            o.policy.backups,
            vec![NodeId(backup)],
            "fail-over policy: backups"
        );
        assert_eq!(o.policy.heartbeat_ms, 10, "fail-over policy: interval");
        assert_eq!(o.policy.miss_count, 3, "fail-over policy: miss count");
        assert_eq!(
            o.policy.failback,
            FailbackMode::None,
            "fail-over policy: failback"
        );
        assert_eq!(o.policy.snoop, snoop, "fail-over policy: snooping");
        assert_eq!(o.addresses.len(), 1, "owned IP addresses");
        assert_eq!(o.addresses[0].addr, vip.parse::<IpAddr>().unwrap());
        assert_eq!(o.addresses[0].prefix, 24);
        assert_eq!(o.addresses[0].mac, mac, "MAC tied to the address");
        assert_eq!(o.ports, (7, 7), "port range");
        assert_eq!(o.application, "echo", "application");
        assert_eq!(o.arp, ArpPolicy::Garp, "ARP ownership policy");
        assert_eq!(o.protocol, 6, "current protocol (TCP)");
        // And it solicits its peers right after (claim 4).
        assert!(
            matches!(sent.get(1).map(|m| &m.body), Some(Body::Solicit { .. })),
            "{port}: SOLICIT follows"
        );
    }
}

/// claim 4: a node that starts late solicits, and the others answer with ANNOUNCE.
#[test]
fn a_late_node_solicits_and_is_answered() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("late-solicit");
    let mut c = up(&dir, two_node());
    wait_ready(&c, &["a"]);
    c.fault(&Fault::PowerOff { node: "b".into() }).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::PowerOn { node: "b".into() }).unwrap();
    // b's group is a's now (failback "none"): wait until b is eligible again.
    wait_until("b eligible", Duration::from_secs(10), || {
        status(&c, "b").is_some_and(|s| s["eligible"] == true)
    });
    let s = c.down().unwrap();
    let on = event_ts(&s.events, "power-on", "b");
    let frames = read_pcap(&s.captures[0].file);
    let solicit = frames
        .iter()
        .find(|f| {
            f.ts_ns > on
                && f.inbound
                && f.iface == "sw0:b"
                && matches!(f.control().map(|m| m.body), Some(Body::Solicit { .. }))
        })
        .expect("SOLICIT from the late node");
    let answer = frames
        .iter()
        .find(|f| {
            f.ts_ns > solicit.ts_ns
                && f.inbound
                && f.iface == "sw0:a"
                && matches!(f.control().map(|m| m.body), Some(Body::Announce(_)))
        })
        .expect("ANNOUNCE from a after the SOLICIT");
    assert!(answer.ts_ns - solicit.ts_ns < 1_000_000_000);
}

/// claims 1, 6: after the owner is powered off, the backup announces the address (gratuitous
/// ARP) within (miss_count + 1) x interval plus generous slack, and new connections succeed.
#[test]
fn power_off_moves_the_address_with_gratuitous_arp() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("takeover-garp");
    let mut c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    assert!(connect_ok(&c, "198.18.0.10:7"));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until(
        "the backup serves the address",
        Duration::from_secs(5),
        || connect_ok(&c, "198.18.0.10:7"),
    );
    let s = c.down().unwrap();
    let off = event_ts(&s.events, "power-off", "a");
    let frames = read_pcap(&s.captures[0].file);
    let vip: IpAddr = VIP.parse().unwrap();
    let garp = frames
        .iter()
        .find(|f| {
            f.ts_ns > off
                && f.inbound
                && f.iface == "sw0:b"
                && f.arp().is_some_and(|(mac, ip, ann, _)| {
                    ann && ip == vip && mac == [2, 0x68, 0x66, 0, 2, 1]
                })
        })
        .expect("gratuitous ARP for the address from b");
    let delay = ms(garp.ts_ns - off);
    // (3 + 1) x 10 ms, plus slack for a shared machine.
    assert!(
        delay < 40.0 + 460.0,
        "first GARP {delay:.1} ms after power-off"
    );
    eprintln!("first GARP {delay:.1} ms after power-off");
}

fn vmac_cluster(arp: &str, vip: &str, v6: bool) -> String {
    format!(
        r#"
cluster_id = 9
key = "test key"
group = "239.255.72.70:5405"
interface = "eth0"
[defaults]
heartbeat_ms = 10
arp = "{arp}"
[[node]]
name = "a"
id = 1
backups = ["b"]
addresses = ["{vip}"]
[[node]]
name = "b"
id = 2
backups = ["a"]
addresses = ["{}"]
"#,
        if v6 {
            "2001:db8::20/64"
        } else {
            "198.18.0.20/24"
        }
    )
}

fn vmac_topology(v6: bool) -> String {
    let (a6, b6, c6) = if v6 {
        (
            r#", "2001:db8::1/64""#,
            r#", "2001:db8::2/64""#,
            r#", "2001:db8::100/64""#,
        )
    } else {
        ("", "", "")
    };
    format!(
        r#"
[[switch]]
name = "sw0"
[[node]]
name = "a"
interface = [{{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24"{a6}] }}]
process = [{{ name = "holdfastd", command = "{{bin_dir}}/holdfastd --config {{topology_dir}}/cluster.toml --node {{node}} --run-dir {{node_dir}}" }}]
[[node]]
name = "b"
interface = [{{ name = "eth0", switch = "sw0", addresses = ["198.18.0.2/24"{b6}] }}]
process = [{{ name = "holdfastd", command = "{{bin_dir}}/holdfastd --config {{topology_dir}}/cluster.toml --node {{node}} --run-dir {{node_dir}}" }}]
[[node]]
name = "client"
interface = [{{ name = "eth0", switch = "sw0", addresses = ["198.18.0.100/24"{c6}] }}]
"#
    )
}

/// Brings up the two-node `vmac_topology` cluster, checks that `target` answers, powers `a` off,
/// waits until `target` answers again, and returns the capture of `sw0` and the power-off time.
fn power_off_a(name: &str, arp: &str, vip: &str, v6: bool, target: &str) -> (Vec<Frame>, u64) {
    let dir = run_dir(name);
    let topo = custom(&dir, &vmac_topology(v6), &vmac_cluster(arp, vip, v6));
    let mut c = up(&dir, topo);
    wait_ready(&c, &["a", "b"]);
    assert!(connect_ok(&c, target));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until(
        "the backup serves the address",
        Duration::from_secs(5),
        || connect_ok(&c, target),
    );
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    (frames, event_ts(&s.events, "power-off", "a"))
}

/// With the `vmac` policy, the MAC that answers for the address is the virtual one before and
/// after the takeover.
#[test]
fn vmac_keeps_the_mac_that_answers_for_the_address() {
    need_root!();
    let _serial = serial();
    let (frames, off) = power_off_a(
        "takeover-vmac",
        "vmac",
        "198.18.0.10/24",
        false,
        "198.18.0.10:7",
    );
    let vip: IpAddr = VIP.parse().unwrap();
    let vmac = [0, 0, 0x5e, 0, 1, 1];
    let answers: Vec<(&str, [u8; 6], u64)> = frames
        .iter()
        .filter(|f| f.inbound)
        .filter_map(|f| {
            f.arp()
                .filter(|(_, ip, ann, reply)| *ip == vip && (*ann || *reply))
                .map(|(m, ..)| (f.iface.as_str(), m, f.ts_ns))
        })
        .collect();
    assert!(
        answers.iter().any(|(p, _, t)| *p == "sw0:a" && *t < off),
        "a answered before: {answers:?}"
    );
    assert!(
        answers.iter().any(|(p, _, t)| *p == "sw0:b" && *t > off),
        "b answered after: {answers:?}"
    );
    assert!(
        answers.iter().all(|(_, m, _)| *m == vmac),
        "every answer uses the virtual MAC: {answers:?}"
    );
}

/// With an IPv6 address, the new holder sends an unsolicited neighbour advertisement.
#[test]
fn an_ipv6_address_is_announced_with_an_unsolicited_na() {
    need_root!();
    let _serial = serial();
    let (frames, off) = power_off_a(
        "takeover-ipv6",
        "garp",
        "2001:db8::10/64",
        true,
        "[2001:db8::10]:7",
    );
    let vip: IpAddr = "2001:db8::10".parse().unwrap();
    assert!(
        frames.iter().any(|f| f.ts_ns > off
            && f.inbound
            && f.iface == "sw0:b"
            && f.unsolicited_na() == Some(vip)),
        "no unsolicited NA for {vip} from b"
    );
}

/// A forged ANNOUNCE (wrong key) and a replayed one change nothing, and are counted.
#[test]
fn forged_and_replayed_datagrams_are_counted_and_ignored() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("forged");
    let c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    let before = status(&c, "a").unwrap();
    let b_epoch = status(&c, "b").unwrap()["boot_epoch"].as_u64().unwrap() as u32;
    let mut evil = holdfast_proto::policy::Ownership::new(NodeId(2));
    evil.application = "evil".into();
    let msg = |seq: u64, epoch: u32| Message {
        flags: holdfast_proto::wire::FLAG_ELIGIBLE,
        cluster: 1,
        sender: NodeId(2),
        boot_epoch: epoch,
        seq,
        body: Body::Announce(holdfast_proto::wire::Announce {
            ownership: evil.clone(),
            holdings: vec![],
            relayed: vec![],
        }),
    };
    let forged = holdfast_proto::auth::seal(&msg(u64::MAX - 1, b_epoch + 1), b"not the key");
    // Signed with the real key, but older than what b has sent: a replay.
    // The key adapters/holdfastd/cluster.toml.j2 writes for topology two-node.
    let replayed = holdfast_proto::auth::seal(&msg(1, b_epoch), b"holdfast two-node key");
    c.in_node("client", || {
        let s = UdpSocket::bind("198.18.0.100:0").unwrap();
        let to: SocketAddr = "198.18.0.1:5405".parse().unwrap();
        s.send_to(&forged, to).unwrap();
        s.send_to(&replayed, to).unwrap();
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let after = status(&c, "a").unwrap();
    let dropped =
        |s: &serde_json::Value, k: &str| s["counters"]["dropped"][k].as_u64().unwrap_or(0);
    assert_eq!(
        dropped(&after, "bad_tag"),
        dropped(&before, "bad_tag") + 1,
        "{after}"
    );
    assert_eq!(
        dropped(&after, "replay"),
        dropped(&before, "replay") + 1,
        "{after}"
    );
    let app = after["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 2)
        .unwrap()["application"]
        .clone();
    assert_eq!(app, "echo", "the forged record must not be taken");
    assert_eq!(after["groups"], before["groups"]);
    c.down().unwrap();
}

/// A SIGTERM hands over within about one interval: with a 100 ms heartbeat and a miss count of
/// 3, failure detection would take 300 ms or more; a graceful leave takes one message.
#[test]
fn sigterm_hands_over_at_once() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("sigterm");
    let cluster = vmac_cluster("garp", "198.18.0.10/24", false)
        .replace("heartbeat_ms = 10", "heartbeat_ms = 100");
    let topo = custom(&dir, &vmac_topology(false), &cluster);
    let mut c = up(&dir, topo);
    wait_ready(&c, &["a", "b"]);
    let pid = c
        .pids("a")
        .into_iter()
        .find(|(n, _)| n == "holdfastd")
        .unwrap()
        .1;
    let t0 = holdfast_harness::now_ns();
    // SAFETY: kill(2) on the daemon we started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The backup, not a still shutting down: a connection right after the signal may well
    // reach a.
    let vip4: std::net::Ipv4Addr = VIP.parse().unwrap();
    wait_until(
        "the backup serves the address",
        Duration::from_secs(5),
        || {
            !has_address(&c, "a", vip4)
                && has_address(&c, "b", vip4)
                && connect_ok(&c, "198.18.0.10:7")
        },
    );
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let leave = frames
        .iter()
        .find(|f| {
            f.ts_ns > t0
                && f.inbound
                && f.iface == "sw0:a"
                && f.control().is_some_and(|m| m.flags & FLAG_LEAVING != 0)
        })
        .expect("a LEAVING heartbeat from a");
    let vip: IpAddr = VIP.parse().unwrap();
    let garp = frames
        .iter()
        .find(|f| {
            f.ts_ns > t0
                && f.inbound
                && f.iface == "sw0:b"
                && f.arp().is_some_and(|(_, ip, ann, _)| ann && ip == vip)
        })
        .expect("gratuitous ARP from b");
    let handover = ms(garp.ts_ns - leave.ts_ns);
    eprintln!("handover {handover:.1} ms after the LEAVING heartbeat");
    assert!(
        handover < 150.0,
        "handover took {handover:.1} ms; detection alone would be >= 300 ms"
    );
}

/// The baseline: keepalived, run on the same topology by its adapter, also moves the address (gratuitous
/// ARP from b), so both implementations are measured on equal terms.
#[test]
fn keepalived_baseline_moves_the_address() {
    need_root!();
    let _serial = serial();
    if std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_err()
    {
        holdfast_harness::report_skip("skipped: keepalived is not installed (.ci/run installs it)");
        return;
    }
    if !bin_dir().join("holdfast-harness").is_file() {
        holdfast_harness::report_skip(
            "skipped: holdfast-harness is not built (run the workspace's tests)",
        );
        return;
    }
    let dir = run_dir("keepalived-baseline");
    let opts = holdfast_harness::Options {
        adapter: Some(adapter("keepalived")),
        ..options(&dir)
    };
    let mut c = holdfast_harness::Cluster::up(two_node(), opts).unwrap();
    // Settled: a alone holds the address (two VRRP instances that start together can both be
    // master for a moment, and then b's announcement would come before the power-off).
    let vip4: std::net::Ipv4Addr = VIP.parse().unwrap();
    wait_until(
        "keepalived on a alone serves the address",
        Duration::from_secs(10),
        || {
            has_address(&c, "a", vip4)
                && !has_address(&c, "b", vip4)
                && connect_ok(&c, "198.18.0.10:7")
        },
    );
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until(
        "the backup serves the address",
        Duration::from_secs(10),
        || connect_ok(&c, "198.18.0.10:7"),
    );
    let s = c.down().unwrap();
    let off = event_ts(&s.events, "power-off", "a");
    let frames = read_pcap(&s.captures[0].file);
    let vip: IpAddr = VIP.parse().unwrap();
    assert!(
        frames.iter().any(|f| f.ts_ns > off
            && f.inbound
            && f.iface == "sw0:b"
            && f.arp().is_some_and(|(_, ip, ann, _)| ann && ip == vip)),
        "keepalived on b sent no gratuitous ARP for {vip}"
    );
}

/// A client that is already waiting when the owner boots (its ARP request for the address
/// unanswered, its SYN queued behind it) sends the SYN the moment the owner's first
/// announcement arrives; the owner must have the address by then and answer at once, not
/// leave the client to its one-second SYN timer. (Announcing before the address existed made
/// the demo's headline connection a new connection to b, a second later.)
#[test]
fn a_syn_sent_right_after_the_first_announcement_is_answered() {
    need_root!();
    let _serial = serial();
    let vip: IpAddr = VIP.parse().unwrap();
    let target: SocketAddr = format!("{VIP}:7").parse().unwrap();
    for attempt in 0..3 {
        let dir = run_dir(&format!("syn-at-boot-{attempt}"));
        let c = up(&dir, two_node());
        let took = c
            .in_node("client", move || {
                let t0 = std::time::Instant::now();
                std::net::TcpStream::connect_timeout(&target, Duration::from_secs(5))
                    .map(|_| t0.elapsed())
            })
            .unwrap()
            .expect("connect");
        let s = c.down().unwrap();
        let frames = read_pcap(&s.captures[0].file);
        let on_client = |f: &&Frame| f.inbound && f.iface == "sw0:client";
        let asked = frames
            .iter()
            .filter(on_client)
            .find(|f| f.arp().is_some_and(|(_, _, announce, _)| !announce))
            .map(|f| f.ts_ns);
        let announced = frames
            .iter()
            .find(|f| {
                f.inbound
                    && f.iface == "sw0:a"
                    && f.arp()
                        .is_some_and(|(_, ip, announce, _)| ip == vip && announce)
            })
            .expect("a announced its address")
            .ts_ns;
        if asked.is_none_or(|t| t > announced) {
            eprintln!(
                "attempt {attempt}: the client asked for the address only after it was announced; again"
            );
            continue;
        }
        let syns: Vec<&Frame> = frames
            .iter()
            .filter(on_client)
            .filter(|f| evidence::tcp(f).is_some_and(|t| t.syn && !t.ack_flag && t.dst == target))
            .collect();
        let synack = frames
            .iter()
            .filter(|f| f.inbound && f.iface == "sw0:a")
            .find(|f| evidence::tcp(f).is_some_and(|t| t.syn && t.ack_flag && t.src == target))
            .expect("a answered the SYN");
        eprintln!(
            "SYN {:.2} ms after a's first announcement, answered {:.3} ms later; connected in {:.1} ms",
            (syns[0].ts_ns - announced) as f64 / 1e6,
            (synack.ts_ns - syns[0].ts_ns) as f64 / 1e6,
            took.as_secs_f64() * 1e3
        );
        assert_eq!(syns.len(), 1, "the client had to send its SYN again");
        assert!(
            took < Duration::from_millis(900),
            "the connection took {took:?}: the first SYN went unanswered"
        );
        return;
    }
    panic!("in three attempts the client never waited for the announcement: nothing was tested");
}

/// Under `vmac`, every frame whose source is the service address leaves from the virtual MAC
/// (RFC 5798 7.3), the TCP segments of a live connection included, before and after that
/// connection is taken over; ARP for the address too. The nodes' own traffic keeps their MACs.
#[test]
fn vmac_every_frame_from_the_address_leaves_from_the_virtual_mac() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("vmac-data");
    let topo = shipped("two-node-vmac.toml");
    let mut c = up(&dir, topo);
    wait_ready(&c, &["a", "b"]);
    let target: SocketAddr = format!("{VIP}:7").parse().unwrap();
    let mut spec = ClientSpec::new(Workload::Stream, target);
    spec.bytes = 4_000_000;
    spec.pace_us = 1000;
    spec.stall_timeout_ms = 5000;
    let h = c.start_client("client", spec).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    let rep = h.wait().unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    assert!(
        connect_ok(&c, &target.to_string()),
        "a new connection after the takeover"
    );
    let s = c.down().unwrap();
    let off = event_ts(&s.events, "power-off", "a");
    let frames = read_pcap(&s.captures[0].file);
    let vip: IpAddr = VIP.parse().unwrap();
    let vmac = [0, 0, 0x5e, 0, 1, 1];
    // (port, source MAC, time) of every frame a node sent with the service address as source.
    let from_vip: Vec<(&str, [u8; 6], u64)> = frames
        .iter()
        .filter(|f| f.inbound && f.iface != "sw0:client")
        .filter_map(|f| {
            let mac = match (evidence::tcp(f), f.arp()) {
                (Some(t), _) if t.src.ip() == vip => t.src_mac,
                (_, Some((m, ip, _, _))) if ip == vip => m,
                _ => return None,
            };
            Some((f.iface.as_str(), mac, f.ts_ns))
        })
        .collect();
    let count = |port: &str, before: bool| {
        from_vip
            .iter()
            .filter(|(p, _, t)| *p == port && (*t < off) == before)
            .count()
    };
    let (a, b) = (count("sw0:a", true), count("sw0:b", false));
    eprintln!("frames from {vip}: {a} from a before the power-off, {b} from b after it");
    assert!(a > 20 && b > 20, "too few frames to judge: a {a}, b {b}");
    let wrong: Vec<&(&str, [u8; 6], u64)> =
        from_vip.iter().filter(|(_, m, _)| *m != vmac).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} frames from {vip} left with another MAC, first: {:?}",
        wrong.len(),
        from_vip.len(),
        wrong[0]
    );
}
