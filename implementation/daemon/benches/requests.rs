//! Request/response clients through power-off cycles (figures, never pass/fail): N Python
//! asyncio connections (the standard library's, not ours), each sending a 64-byte request
//! every 100 ms and waiting for its echo, while CYCLES power-off/power-on cycles alternate
//! between the two nodes of a hub topology (each powers off whichever node holds the service
//! address, waits, and powers it on again). For every connection and every failover, the
//! longest wait for an answer to a request sent around the power-off (from 200 ms before to
//! 1 s after); the same around each power-on of the failed node; reported as p50/p99/max over
//! connections x cycles, with each takeover's phases from the new holder's status.
//!
//! `cargo build --release --workspace && cargo bench -p holdfastd --bench requests
//! [-- CYCLES [CONNECTIONS]]` as root (default 20 cycles, 1000 connections; about 2 s a
//! cycle). Needs python3.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use holdfast_harness::Fault;

/// Requests slower than this are recorded by the client (the rest count as "under it").
const SLOW_MS: f64 = 5.0;
/// How long after a power-off (or power-on) its window runs, and how long before.
const AFTER_NS: u64 = 1_000_000_000;
const BEFORE_NS: u64 = 200_000_000;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The longest wait per connection per event window, `SLOW_MS` for connections with no
/// slow request in it.
fn gaps(slow: &[(usize, u64, f64)], events: &[u64], conns: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for &at in events {
        let mut worst: HashMap<usize, f64> = HashMap::new();
        for &(c, t, ms) in slow {
            if t + BEFORE_NS >= at && t < at + AFTER_NS {
                let w = worst.entry(c).or_insert(0.0);
                *w = w.max(ms);
            }
        }
        for c in 0..conns {
            out.push(worst.get(&c).copied().unwrap_or(SLOW_MS));
        }
    }
    out
}

fn main() {
    let Some(cycles) = holdfast_harness::bench_arg::<usize>(20) else {
        return;
    };
    let conns: usize = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .nth(1)
        .unwrap_or(1000);
    if !have_python() {
        return;
    }
    let dir = run_dir("bench-requests");
    // No capture: at 10,000 requests a second on a hub, writing every port's frames would
    // take a core of its own.
    let opts = holdfast_harness::Options {
        capture: false,
        ..options(&dir)
    };
    let mut c = holdfast_harness::Cluster::up(takeover_cluster_on(&dir, "echo", 7, true), opts)
        .expect("up");
    wait_ready(&c, &["a", "b"]);
    let seconds = 4.0 + cycles as f64 * 2.2;
    let json = dir.join("requests.json");
    let args: Vec<String> = [
        "requests",
        "--target",
        "198.18.0.10:7",
        "--connections",
        &conns.to_string(),
        "--interval-ms",
        "100",
        "--size",
        "64",
        "--seconds",
        &seconds.to_string(),
        "--slow-ms",
        &SLOW_MS.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let child = py_start(&c, "client", &args, &json);
    // Every connection open and ticking.
    std::thread::sleep(Duration::from_secs(3));
    // A quiet window before the first power-off: what the clients see with no fault at all.
    let quiet = vec![holdfast_harness::now_ns() - AFTER_NS - BEFORE_NS];
    std::thread::sleep(Duration::from_millis(200));
    let mut offs = Vec::new();
    let mut ons = Vec::new();
    let mut phases = Vec::new();
    for cycle in 0..cycles {
        let Some(victim) = holder_of(&c, &["a", "b"], 1) else {
            eprintln!("cycle {cycle}: nobody holds the address");
            break;
        };
        let other = if victim == "a" { "b" } else { "a" };
        offs.push(holdfast_harness::now_ns());
        c.fault(&Fault::PowerOff {
            node: victim.into(),
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(1000));
        if let Some(s) = status(&c, other) {
            let k = &s["connections"];
            phases.push(format!(
                "{other} took over: {}; assumed {} lost {} replayed {} segments and {} SYNs (skipped {}); adopted {} udp_drops {} snoop_drops {}",
                k["takeovers"]["1"],
                k["assumed"],
                k["lost"],
                k["replayed_segments"],
                k["replayed_syns"],
                k["replay_skipped"],
                k["adopted"],
                k["udp_drops"],
                k["snoop_drops"],
            ));
        }
        ons.push(holdfast_harness::now_ns());
        c.fault(&Fault::PowerOn {
            node: victim.into(),
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(1100));
    }
    let rep = py_wait(child, &json);
    let s = c.down().unwrap();
    // Failures declared, against the power-offs: any more were false (a live peer declared
    // dead, a returning node missing heartbeats).
    let declared: usize = ["a", "b"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(s.run_dir.join(n).join("holdfastd.log"))
                .map(|l| l.lines().filter(|l| l.contains("PeerDead")).count())
                .unwrap_or(0)
        })
        .sum();
    let slow: Vec<(usize, u64, f64)> = rep["slow"]
        .as_array()
        .expect("slow requests")
        .iter()
        .map(|x| {
            (
                x[0].as_u64().unwrap() as usize,
                x[1].as_u64().unwrap(),
                x[2].as_f64().unwrap(),
            )
        })
        .collect();
    println!(
        "{conns} connections, {} cycles: {} requests, {} answered, {} mismatches, {} errors {:?}",
        offs.len(),
        rep["requests"],
        rep["answered"],
        rep["mismatches"],
        rep["error_count"],
        rep["errors"]
            .as_array()
            .map(|e| e.iter().take(3).collect::<Vec<_>>())
    );
    for (name, events) in [
        ("quiet window", &quiet),
        ("power-off", &offs),
        ("power-on", &ons),
    ] {
        let mut g = gaps(&slow, events, conns);
        let over50 = g.iter().filter(|x| **x > 50.0).count();
        let n = g.len();
        println!(
            "longest wait per connection per {name} (ms, {n} = connections x cycles; {SLOW_MS} = under {SLOW_MS} ms): p50 {:.1} p99 {:.1} max {:.1}; over 50 ms: {over50}",
            percentile(&mut g, 0.5),
            percentile(&mut g, 0.99),
            percentile(&mut g, 1.0),
        );
    }
    println!(
        "failures declared: {declared} for {} power-offs ({} false)",
        offs.len(),
        declared.saturating_sub(offs.len())
    );
    for (i, p) in phases.iter().enumerate() {
        println!("cycle {i}: {p}");
    }
}
