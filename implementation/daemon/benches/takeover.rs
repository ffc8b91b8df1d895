//! Benchmarks of connection takeover (figures, never pass/fail):
//! 1. the client's stall per failover: p50/p99/max over CYCLES power-off cycles (10 ms heartbeat);
//! 2. the time to assume 1, 100, 1,000 and 10,000 connections, phase by phase;
//! 3. client throughput with a snooping backup, against none, in the same run.
//!
//! `cargo build --release --workspace && cargo bench -p holdfastd --bench takeover [-- CYCLES]`
//! as root (default 50 cycles).

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

fn stalls(cycles: usize) {
    let dir = run_dir("bench-stall");
    let mut c = up(&dir, takeover_cluster_on(&dir, "echo", 7, true));
    wait_ready(&c, &["a", "b"]);
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
    println!(
        "\n## Client stall per power-off (10 ms heartbeat, miss count 3, echo stream paced at 16 MB/s)\n"
    );
    println!("| cycles | intact | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| {} | {} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms |",
        stall.len() + broken,
        stall.len()
    );
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

fn throughput(snoop: bool) -> f64 {
    let dir = run_dir(&format!("bench-throughput-{snoop}"));
    let topo = takeover_cluster(&dir, "echo", 7);
    if !snoop {
        let p = dir.join("cluster.toml");
        let t = std::fs::read_to_string(&p)
            .unwrap()
            .replace("miss_count = 3", "miss_count = 3\nsnoop = \"none\"");
        std::fs::write(&p, t).unwrap();
    }
    let c = up(&dir, topo);
    wait_ready(&c, &["a", "b"]);
    let mut spec = ClientSpec::new(Workload::Stream, VIP.parse::<SocketAddr>().unwrap());
    spec.bytes = 200_000_000;
    let t0 = Instant::now();
    let rep = c.start_client("client", spec).unwrap().wait().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert!(rep.intact(), "{}", rep.summary());
    c.down().unwrap();
    200.0 / secs
}

fn main() {
    let Some(cycles) = holdfast_harness::bench_arg::<usize>(50) else {
        return;
    };
    // `-- assume N...`: only the time to assume these numbers of connections.
    let only: Vec<usize> = std::env::args()
        .skip_while(|a| a != "assume")
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if only.is_empty() {
        stalls(cycles);
        vec![1usize, 100, 1000, 10_000]
    } else {
        only.clone()
    };

    println!(
        "\n## Time to assume N connections (phases, from holdfastd status on the new owner)\n"
    );
    println!(
        "| connections | intact after | quiesce | snapshot | TCP_REPAIR restore | snapshot to all live | restore per connection |"
    );
    println!("|---|---|---|---|---|---|---|");
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
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        without.push(throughput(false));
        with.push(throughput(true));
    }
    let (w, _, _) = q(with);
    let (wo, _, _) = q(without);
    println!("| backup | median MB/s |");
    println!("|---|---|");
    println!("| none (snoop = \"none\") | {wo:.1} |");
    println!("| snooping (mirror) | {w:.1} |");
    println!("\nratio {:.3}", w / wo);
}
