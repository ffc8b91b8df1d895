//! Benchmark (reports figures, never fails on time): power-off to first gratuitous ARP, and to
//! the first successful new client connection, for holdfastd and keepalived with equal
//! settings, at 10 ms and 100 ms heartbeat intervals, and at 0 and 10 ms of client round trip
//! (a delay line on the client's link), in one run.
//!
//! `cargo bench -p holdfastd --bench failover [-- CYCLES]` as root (default 20 cycles each).
//! Needs `holdfast-harness` and `holdfastd` built in the same profile (`cargo build --release
//! --workspace`) and keepalived installed; a missing one is reported and skipped.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use holdfast_harness::{Cluster, Fault};

const VIP: &str = "198.18.0.10";

fn cluster_toml(interval_ms: u32) -> String {
    format!(
        r#"cluster_id = 1
key = "bench key"
group = "239.255.72.70:5405"
interface = "eth0"
[defaults]
heartbeat_ms = {interval_ms}
miss_count = 3
failback = "none"
arp = "garp"
garp_count = 3
garp_interval_ms = 5
boot_wait_ms = {}
[[node]]
name = "a"
id = 1
backups = ["b"]
addresses = ["198.18.0.10/24"]
[[node]]
name = "b"
id = 2
backups = ["a"]
addresses = ["198.18.0.20/24"]
"#,
        interval_ms * 10
    )
}

fn keepalived_conf(node: &str, interval_ms: u32) -> String {
    let (pa, pb) = if node == "a" { (150, 100) } else { (100, 150) };
    let adv = interval_ms as f64 / 1000.0;
    format!(
        r#"global_defs {{
  router_id {node}
  vrrp_version 3
  vrrp_garp_master_delay 0
  vrrp_garp_master_repeat 3
  vrrp_garp_interval 0.005
  max_auto_priority -1
}}
vrrp_instance group_a {{
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 10
  priority {pa}
  advert_int {adv}
  virtual_ipaddress {{
    198.18.0.10/24
  }}
}}
vrrp_instance group_b {{
  state BACKUP
  nopreempt
  interface eth0
  virtual_router_id 20
  priority {pb}
  advert_int {adv}
  virtual_ipaddress {{
    198.18.0.20/24
  }}
}}
"#
    )
}

/// The shipped two-node topology with the bench's own configurations: holdfastd, or keepalived
/// and an echo service, on a and b (not the adapters: the bench varies the heartbeat and turns
/// keepalived's preemption off, so that both implementations fail over and never fail back).
fn topology(dir: &std::path::Path, implementation: &str) -> holdfast_harness::Topology {
    let mut t = two_node();
    let d = dir.display();
    for n in t
        .nodes
        .iter_mut()
        .filter(|n| n.name == "a" || n.name == "b")
    {
        let procs: Vec<(&str, Vec<String>)> = if implementation == "holdfastd" {
            vec![(
                "holdfastd",
                format!("{{bin_dir}}/holdfastd --config {d}/cluster.toml --node {{node}} --run-dir {{node_dir}}")
                    .split(' ')
                    .map(String::from)
                    .collect(),
            )]
        } else {
            vec![
                (
                    "keepalived",
                    vec![
                        "sh".into(),
                        "-c".into(),
                        format!(
                            "rm -f {{node_dir}}/keepalived.pid {{node_dir}}/vrrp.pid; exec keepalived --dont-fork --log-console --vrrp --use-file {d}/keepalived-{{node}}.conf --pid {{node_dir}}/keepalived.pid --vrrp_pid {{node_dir}}/vrrp.pid"
                        ),
                    ],
                ),
                (
                    "echo",
                    ["{harness}", "serve", "echo", "--listen", "0.0.0.0:7"]
                        .map(String::from)
                        .to_vec(),
                ),
            ]
        };
        for (name, command) in procs {
            n.processes.push(holdfast_harness::topology::Process {
                name: name.into(),
                command,
                restart: true,
            });
        }
    }
    t
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.99), v[v.len() - 1])
}

fn connects(c: &Cluster, timeout: Duration) -> bool {
    let to: SocketAddr = format!("{VIP}:7").parse().unwrap();
    c.in_node("client", move || {
        TcpStream::connect_timeout(&to, timeout).is_ok()
    })
    .unwrap_or(false)
}

struct Figures {
    garp: Vec<f64>,
    connect: Vec<f64>,
    missing: usize,
}

fn run(implementation: &str, interval_ms: u32, rtt_ms: u64, cycles: usize) -> Option<Figures> {
    let dir = run_dir(&format!(
        "bench-{implementation}-{interval_ms}ms-rtt{rtt_ms}"
    ));
    std::fs::write(dir.join("cluster.toml"), cluster_toml(interval_ms)).unwrap();
    for n in ["a", "b"] {
        std::fs::write(
            dir.join(format!("keepalived-{n}.conf")),
            keepalived_conf(n, interval_ms),
        )
        .unwrap();
    }
    let topo = topology(&dir, implementation);
    let mut c = Cluster::up(topo, options(&dir)).ok()?;
    client_rtt(&mut c, rtt_ms).ok()?;
    // A connection attempt must be able to complete its handshake.
    let attempt = Duration::from_millis(10 + 2 * rtt_ms);
    let settle = Duration::from_millis((interval_ms as u64 * 15).max(500));
    let ready_deadline = Instant::now() + Duration::from_secs(10);
    while !connects(&c, attempt.max(Duration::from_millis(50))) {
        if Instant::now() > ready_deadline {
            eprintln!("{implementation} {interval_ms} ms: the address never came up");
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(settle);
    let mut connect = Vec::new();
    let mut offs = Vec::new();
    for _ in 0..cycles {
        let victim = if has_address(&c, "a", VIP.parse().unwrap()) {
            "a"
        } else {
            "b"
        };
        let t0 = holdfast_harness::now_ns();
        // The client keeps trying from the moment of the power-off, beside it (the harness's
        // power-off returns only once the node's processes are reaped).
        let client_ns = std::fs::File::open(
            std::path::Path::new(holdfast_harness::netns::NETNS_DIR)
                .join(c.node_ns("client").expect("client namespace").name()),
        )
        .unwrap();
        let tries = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            holdfast_harness::netns::enter(client_ns.as_raw_fd()).ok()?;
            let to: SocketAddr = format!("{VIP}:7").parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&to, attempt).is_ok() {
                    return Some(ms(holdfast_harness::now_ns() - t0));
                }
            }
            None
        });
        c.fault(&Fault::PowerOff {
            node: victim.into(),
        })
        .unwrap();
        let connected = tries.join().ok().flatten();
        offs.push((t0, if victim == "a" { "sw0:b" } else { "sw0:a" }));
        connect.extend(connected);
        c.fault(&Fault::PowerOn {
            node: victim.into(),
        })
        .unwrap();
        std::thread::sleep(settle);
    }
    let s = c.down().unwrap();
    let frames = read_pcap(&s.captures[0].file);
    let vip: IpAddr = VIP.parse().unwrap();
    let mut garp = Vec::new();
    for (k, (t0, port)) in offs.iter().enumerate() {
        let end = offs.get(k + 1).map_or(u64::MAX, |x| x.0);
        if let Some(f) = frames.iter().find(|f| {
            f.ts_ns > *t0
                && f.ts_ns < end
                && f.inbound
                && f.iface == *port
                && f.arp().is_some_and(|(_, ip, ann, _)| ann && ip == vip)
        }) {
            garp.push(ms(f.ts_ns - t0));
        }
    }
    let missing = cycles - garp.len().min(connect.len());
    Some(Figures {
        garp,
        connect,
        missing,
    })
}

fn main() {
    let Some(cycles) = holdfast_harness::bench_arg::<usize>(20) else {
        return;
    };
    if !bin_dir().join("holdfast-harness").is_file() {
        println!(
            "skipped: build the workspace in this cargo profile first (holdfast-harness is needed for the keepalived echo service)"
        );
    }
    let have_keepalived = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok();
    println!("power-off to first GARP and to first new connection, {cycles} cycles each");
    println!(
        "| implementation | heartbeat | client round trip | GARP p50 | GARP p99 | GARP max | connect p50 | connect p99 | connect max | cycles missed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (interval, rtt) in [(10u32, 0u64), (10, 10), (100, 0)] {
        for implementation in ["holdfastd", "keepalived"] {
            if implementation == "keepalived" && !have_keepalived {
                println!(
                    "| keepalived | {interval} ms | {rtt} ms | skipped: keepalived is not installed | | | | | | |"
                );
                continue;
            }
            let Some(f) = run(implementation, interval, rtt, cycles) else {
                println!(
                    "| {implementation} | {interval} ms | {rtt} ms | failed to come up | | | | | | |"
                );
                continue;
            };
            let (g50, g99, gmax) = quantiles(f.garp);
            let (c50, c99, cmax) = quantiles(f.connect);
            println!(
                "| {implementation} | {interval} ms | {rtt} ms | {g50:.1} ms | {g99:.1} ms | {gmax:.1} ms | {c50:.1} ms | {c99:.1} ms | {cmax:.1} ms | {} |",
                f.missing
            );
        }
    }
}
