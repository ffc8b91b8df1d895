//! Benchmarks of connection takeover (figures, never pass/fail):
//! 1. the client's stall per failover: p50/p99/max over CYCLES power-off cycles (10 ms heartbeat),
//!    at 0 and 10 ms of client round trip;
//! 2. the time to assume 1, 100, 1,000 and 10,000 connections, phase by phase;
//! 3. client throughput with a snooping backup (`mirror` and `forward`), against none, in the
//!    same run.
//!
//! `cargo build --release --workspace && cargo bench -p holdfastd --bench takeover [-- CYCLES]`
//! as root (default 50 cycles); `-- 0 throughput` runs only the third, `-- N stall` only the
//! first. The stall is measured at 0 and at 10 ms of client round trip (a delay line on the
//! client's link), side by side.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use holdfast_harness::Fault;
use holdfast_harness::client::{ClientSpec, Workload};

const VIP: &str = "198.18.0.10:7";

fn holder(c: &holdfast_harness::Cluster) -> Option<&'static str> {
    holder_of(c, &["a", "b"], 1)
}

fn q(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// The client's stall per power-off over `cycles` cycles, with `rtt_ms` of round trip added on
/// the client's link (a delay line in the switch, half each way). Returns (intact, broken,
/// p50, p99, max).
fn stalls(cycles: usize, rtt_ms: u64) -> (usize, usize, f64, f64, f64) {
    let dir = run_dir(&format!("bench-stall-rtt{rtt_ms}"));
    let mut c = up(&dir, takeover_cluster_on(&dir, "echo", 7, true));
    wait_ready(&c, &["a", "b"]);
    client_rtt(&mut c, rtt_ms).unwrap();
    let mut stall = Vec::new();
    let mut broken = 0;
    for _ in 0..cycles {
        let Some(victim) = holder(&c) else { break };
        let mut spec = ClientSpec::new(Workload::Stream, VIP.parse().unwrap());
        spec.bytes = 2_000_000;
        spec.pace_us = 1000;
        spec.stall_timeout_ms = 5000;
        let h = c.start_client("client", spec).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        c.fault(&Fault::PowerOff {
            node: victim.into(),
        })
        .unwrap();
        let rep = h.wait().unwrap();
        if rep.intact() {
            stall.push(rep.max_stall_ms());
        } else {
            broken += 1;
        }
        c.fault(&Fault::PowerOn {
            node: victim.into(),
        })
        .unwrap();
        wait_until("eligible", Duration::from_secs(10), || {
            status(&c, victim).is_some_and(|s| s["eligible"] == true)
        });
        std::thread::sleep(Duration::from_millis(30));
    }
    c.down().unwrap();
    let (p50, p99, max) = q(stall.clone());
    (stall.len(), broken, p50, p99, max)
}

fn stall_table(cycles: usize) {
    println!(
        "\n## Client stall per power-off (10 ms heartbeat, miss count 3, echo stream paced at 16 MB/s)\n"
    );
    println!("| client round trip | cycles | intact | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|");
    for rtt in [0, 10] {
        let (ok, broken, p50, p99, max) = stalls(cycles, rtt);
        println!(
            "| {rtt} ms | {} | {ok} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms |",
            ok + broken
        );
    }
}

fn assume(n: usize) -> Option<(serde_json::Value, usize, usize)> {
    let dir = run_dir(&format!("bench-assume-{n}"));
    let mut c = up(&dir, takeover_cluster(&dir, "echo", 7));
    wait_ready(&c, &["a", "b"]);
    let mut spec = ClientSpec::new(Workload::Request, VIP.parse().unwrap());
    spec.connections = n;
    spec.count = 2;
    spec.rate = 1.0 / 3.0; // the second request 3 s after the first, across the failover
    spec.stall_timeout_ms = 20_000;
    let h = c.start_client("client", spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&c, "b")
        .and_then(|s| s["connections"]["tracked"].as_u64())
        .unwrap_or(0)
        < n as u64
    {
        if Instant::now() > deadline {
            eprintln!("assume {n}: connections did not all come up");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    let rep = h.wait().ok()?;
    let t = status(&c, "b")?["connections"]["last_takeover"].clone();
    let intact = rep.connections.iter().filter(|x| x.intact()).count();
    c.down().unwrap();
    Some((t, intact, rep.connections.len()))
}

/// MB/s of a 200 MB echo stream through a, with b snooping as `mode` says (`none`: a mirror
/// that nobody reads; `mirror`; `forward`: no mirror, a copies its frames to b).
fn throughput(mode: &str) -> f64 {
    let dir = run_dir(&format!("bench-throughput-{mode}"));
    let switch = if mode == "forward" {
        Switch::Forward
    } else {
        Switch::Mirror
    };
    let topo = takeover_cluster_full(&dir, "echo", 7, switch, "none");
    // An unpaced stream saturates both cores; with 30 ms to declare a node dead, the backup's
    // heartbeats sometimes wait longer than that for the kernel's receive processing (most
    // under `forward`, which adds the copies to the holder's own softirq work), and a false
    // failover ends the run. 100 ms for every mode, so the modes stay comparable.
    let p = dir.join("cluster.toml");
    let mut t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("miss_count = 3", "miss_count = 10");
    if mode == "none" {
        t = t.replace("snoop = \"mirror\"", "snoop = \"none\"");
    }
    std::fs::write(&p, t).unwrap();
    let c = up(&dir, topo);
    wait_ready(&c, &["a", "b"]);
    let mut spec = ClientSpec::new(Workload::Stream, VIP.parse::<SocketAddr>().unwrap());
    spec.bytes = 200_000_000;
    let t0 = Instant::now();
    let rep = c.start_client("client", spec).unwrap().wait().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    if !rep.intact() {
        let st = |n| status(&c, n).map(|s| s["connections"].clone());
        panic!(
            "snoop = {mode}: {}\na: {:?}\nb: {:?}\nrun: {}",
            rep.summary(),
            st("a"),
            st("b"),
            dir.display()
        );
    }
    c.down().unwrap();
    200.0 / secs
}

fn main() {
    // One cluster at a time, as the tests (`up` checks it).
    let _serial = serial();
    let Some(cycles) = holdfast_harness::bench_arg::<usize>(50) else {
        return;
    };
    // `-- assume N...`: only the time to assume these numbers of connections.
    let only: Vec<usize> = std::env::args()
        .skip_while(|a| a != "assume")
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let only_throughput = std::env::args().any(|a| a == "throughput");
    if std::env::args().any(|a| a == "stall") {
        stall_table(cycles);
        return;
    }
    let sizes = if only_throughput {
        Vec::new()
    } else if only.is_empty() {
        stall_table(cycles);
        vec![1usize, 100, 1000, 10_000]
    } else {
        only.clone()
    };

    if !only_throughput {
        println!(
            "\n## Time to assume N connections (phases, from holdfastd status on the new owner)\n"
        );
        println!(
            "| connections | intact after | quiesce | snapshot | TCP_REPAIR restore | snapshot to all live | restore per connection |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    for n in sizes {
        match assume(n) {
            Some((t, intact, total)) => {
                let us = |k: &str| t[k].as_u64().unwrap_or(0) as f64;
                println!(
                    "| {n} | {intact}/{total} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} us |",
                    us("quiesce_us") / 1e3,
                    us("snapshot_us") / 1e3,
                    us("restore_us") / 1e3,
                    us("to_live_us") / 1e3,
                    us("restore_us") / n as f64
                );
            }
            None => println!("| {n} | failed | | | | | |"),
        }
    }

    if !only.is_empty() {
        return;
    }
    println!(
        "\n## Throughput with a snooping backup (200 MB echo stream, 3 runs each, interleaved)\n"
    );
    let modes = ["none", "mirror", "forward"];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..3 {
        for (i, m) in modes.iter().enumerate() {
            runs[i].push(throughput(m));
        }
    }
    let medians: Vec<f64> = runs.into_iter().map(|r| q(r).0).collect();
    println!("| backup | median MB/s | ratio to none |");
    println!("|---|---|---|");
    for (m, v) in modes.iter().zip(&medians) {
        println!("| snoop = \"{m}\" | {v:.1} | {:.3} |", v / medians[0]);
    }
}
