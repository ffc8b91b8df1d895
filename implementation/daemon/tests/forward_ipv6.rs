//! Kernel forwarding of IPv6 connections (claims 5, 10): under `new-connections` failback the
//! returning owner forwards the connections still draining on the assumer to it, and under
//! `spread` the address holder forwards the other survivor's share, both for connections to
//! IPv6 service addresses, as for IPv4. The clients are Python's own sockets; judged by their
//! bytes and by the capture.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use holdfast_harness::{Fault, Topology, need_root};
use holdfast_proto::flow::parse_tcp;

const VIP: &str = "[2001:db8::10]:7";

/// `nodes` holdfastd nodes on a hub (each sees everything), owning 2001:db8::10, ::20, ::30,
/// each node backed up by the others in order; the client has 2001:db8::100.
fn cluster(dir: &Path, nodes: &[&str], assignment: &str, failback: &str) -> Topology {
    // Five misses under `spread` (60 connections through a hub on two cores), as in
    // topologies/three-node-spread.toml: the split is under test here, not detection.
    let miss = if assignment == "spread" { 5 } else { 3 };
    let mut cluster = format!(
        "cluster_id = 7\nkey = \"ipv6 forwarding test key\"\ngroup = \"239.255.72.70:5405\"\n\
         interface = \"eth0\"\n[defaults]\nheartbeat_ms = 10\nmiss_count = {miss}\n\
         assignment = \"{assignment}\"\nfailback = \"{failback}\"\napplication = \"echo\"\n\
         ports = [7, 7]\n"
    );
    let mut topology = String::from("[[switch]]\nname = \"sw0\"\nhub = true\n");
    for (i, n) in nodes.iter().enumerate() {
        let backups: Vec<String> = (1..nodes.len())
            .map(|k| format!("\"{}\"", nodes[(i + k) % nodes.len()]))
            .collect();
        cluster.push_str(&format!(
            "[[node]]\nname = \"{n}\"\nid = {}\nbackups = [{}]\naddresses = [\"2001:db8::{}0/64\"]\n",
            i + 1,
            backups.join(", "),
            i + 1
        ));
        topology.push_str(&format!(
            "[[node]]\nname = \"{n}\"\ninterface = [{{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.{}/24\", \"2001:db8::{}/64\"] }}]\nprocess = [{{ name = \"holdfastd\", command = \"{{bin_dir}}/holdfastd --config {{topology_dir}}/cluster.toml --node {{node}} --run-dir {{node_dir}}\" }}]\n",
            i + 1,
            i + 1
        ));
    }
    topology.push_str(
        "[[node]]\nname = \"client\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.100/24\", \"2001:db8::100/64\"] }]\n",
    );
    custom(dir, &topology, &cluster)
}

/// The switch ports that sent TCP segments from the service address after `after`, by client
/// port; and the client's segments to it that a node put back on the wire (forwarded).
fn served_by(
    frames: &[Frame],
    after: u64,
) -> (BTreeMap<u16, BTreeSet<String>>, BTreeMap<String, usize>) {
    let vip: SocketAddr = VIP.parse().unwrap();
    let mut by_conn: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    let mut forwarded: BTreeMap<String, usize> = BTreeMap::new();
    for f in frames.iter().filter(|f| f.inbound && f.ts_ns > after) {
        let Some(t) = parse_tcp(&f.data) else {
            continue;
        };
        if t.src == vip {
            by_conn
                .entry(t.dst.port())
                .or_default()
                .insert(f.iface.clone());
        } else if t.dst == vip && f.iface != "sw0:client" {
            *forwarded.entry(f.iface.clone()).or_default() += 1;
        }
    }
    (by_conn, forwarded)
}

/// `new-connections` failback over IPv6: a 12 MB stream to a's address, a powered off, b
/// serves it; a returns, takes its address back and forwards the stream's packets to b in the
/// kernel; the stream ends byte for byte, served by b alone after a's return.
#[test]
fn new_connections_failback_drains_an_ipv6_connection_through_forwarding() {
    need_root!();
    if !have_python() {
        return;
    }
    let _serial = serial();
    let dir = run_dir("ipv6-new-connections");
    let mut c = up(
        &dir,
        cluster(&dir, &["a", "b"], "ordered", "new-connections"),
    );
    wait_ready(&c, &["a", "b"]);
    let json = dir.join("client.json");
    let child = py_start(
        &c,
        "client",
        &strings(&[
            "stream",
            "--target",
            VIP,
            "--bytes",
            "12000000",
            "--chunk",
            "16384",
            "--pace-us",
            "5000",
            "--timeout",
            "5",
            "--deadline",
            "40",
        ]),
        &json,
    );
    // The power-off comes once b tracks the stream (it saw the handshake): a fixed wait
    // raced the Python client's start on a busy machine (it connected after the power-off).
    wait_until(
        "b tracks the client's connection",
        Duration::from_secs(10),
        || status(&c, "b").is_some_and(|s| s["connections"]["tracked"].as_u64() > Some(0)),
    );
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until("b assumed the connection", Duration::from_secs(5), || {
        status(&c, "b").is_some_and(|s| s["connections"]["assumed"].as_u64() > Some(0))
    });
    power_on_until_eligible(&mut c, "a");
    wait_until(
        "a holds its address again and forwards the old connection to b",
        Duration::from_secs(10),
        || {
            holds_group(&c, "a", 1)
                && status(&c, "a").is_some_and(|s| s["connections"]["forwarded"] == 1)
        },
    );
    let report = py_wait(child, &json);
    let a = status(&c, "a").unwrap()["connections"].clone();
    let s = c.down().unwrap();
    assert_eq!(report["ok"], true, "the client: {report}");
    assert_eq!(a["unforwarded"], 0, "{a}");
    let on = event_ts(&s.events, "power-on", "a");
    let frames = read_pcap(&s.captures[0].file);
    let (by_conn, forwarded) = served_by(&frames, on + 300_000_000);
    // "2001:db8::100:PORT", as the client prints it.
    let port: u16 = report["local"]
        .as_str()
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the client's port");
    assert_eq!(
        by_conn
            .get(&port)
            .map(|p| p.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["sw0:b".to_string()]),
        "after a's return only b answers for the old connection: {by_conn:?}"
    );
    assert!(
        forwarded.get("sw0:a").copied().unwrap_or(0) > 10,
        "a forwarded the client's segments to b: {forwarded:?}"
    );
}

/// `spread` over IPv6: 60 request/response connections to a's address; a is powered off; b
/// takes the address and half of them, c asks for and gets the other half, which b forwards
/// to it in the kernel. Every request is answered exactly, and after the failure each
/// connection is served by one node, both b and c serving some.
#[test]
fn spread_forwards_a_share_of_ipv6_connections() {
    need_root!();
    if !have_python() {
        return;
    }
    let _serial = serial();
    let dir = run_dir("ipv6-spread");
    let mut c = up(&dir, cluster(&dir, &["a", "b", "c"], "spread", "none"));
    wait_ready(&c, &["a", "b", "c"]);
    let json = dir.join("client.json");
    let child = py_start(
        &c,
        "client",
        &strings(&[
            "requests",
            "--target",
            VIP,
            "--connections",
            "60",
            "--interval-ms",
            "50",
            "--seconds",
            "4",
            "--timeout",
            "5",
        ]),
        &json,
    );
    std::thread::sleep(Duration::from_millis(1500));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    let report = py_wait(child, &json);
    let st: Vec<_> = ["b", "c"]
        .iter()
        .map(|n| status(&c, n).map(|s| s["connections"].clone()))
        .collect();
    let s = c.down().unwrap();
    assert_eq!(
        (
            report["error_count"].as_u64(),
            report["mismatches"].as_u64()
        ),
        (Some(0), Some(0)),
        "the client: {report}\nb and c: {st:?}"
    );
    assert_eq!(report["requests"], report["answered"], "{report}");
    for n in st.iter().flatten() {
        assert_eq!(
            (&n["lost"], &n["unforwarded"]),
            (&serde_json::json!({}), &serde_json::json!(0)),
            "{n}"
        );
    }
    let off = event_ts(&s.events, "power-off:done", "a");
    let frames = read_pcap(&s.captures[0].file);
    let (by_conn, forwarded) = served_by(&frames, off + 200_000_000);
    let shared: Vec<_> = by_conn.iter().filter(|(_, p)| p.len() != 1).collect();
    assert!(shared.is_empty(), "served by two nodes: {shared:?}");
    let on = |n: &str| by_conn.values().filter(|p| p.contains(n)).count();
    eprintln!(
        "spread over IPv6: {} connections on b, {} on c; forwarded by {forwarded:?}",
        on("sw0:b"),
        on("sw0:c")
    );
    assert_eq!(on("sw0:b") + on("sw0:c"), 60, "{by_conn:?}");
    assert!(on("sw0:b") >= 20 && on("sw0:c") >= 20, "{by_conn:?}");
    assert!(
        forwarded.get("sw0:b").copied().unwrap_or(0) > 0,
        "b forwarded c's share: {forwarded:?}"
    );
}
