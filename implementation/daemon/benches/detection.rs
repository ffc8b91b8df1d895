//! Benchmark (figures, never pass/fail): failure detection at the limit. For each heartbeat
//! interval (default 1, 2, 5 and 10 ms; miss count 3), on the two-node hub cluster:
//! 1. false failures while nothing is wrong: SECONDS with the cluster idle, then SECONDS with
//!    an echo stream running through a (paced at 8 MB/s); every `PeerDead` either daemon
//!    logs meanwhile is a false failure (no fault is injected), and so is every group that
//!    changed hands;
//! 2. the client's stall per power-off: p50/p99/max over CYCLES cycles of an echo stream.
//!
//! Nothing is captured (the figures come from the daemons' logs and status). Also printed: the
//! spare heartbeats each run needed (`spares_sent`, the protocol loop held)
//! and the times the loop was held longer than 5 ms. Last line: `detection: ` and one
//! `INTERVALms=p99/idle/loaded` per interval, machine-readable.
//!
//! `cargo build --release --workspace && cargo bench -p holdfastd --bench detection -- CYCLES
//! SECONDS [INTERVAL_MS...]` as root (default 30 cycles, 600 s each phase: 80 minutes for the
//! four intervals).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use holdfast_harness::client::{ClientSpec, Workload};

const VIP: &str = "198.18.0.10:7";

fn holder(c: &holdfast_harness::Cluster) -> Option<&'static str> {
    holder_of(c, &["a", "b"], 1)
}

/// `PeerDead` lines in both daemons' logs so far.
fn deaths(c: &holdfast_harness::Cluster) -> usize {
    ["a", "b"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(c.run_dir().join(n).join("holdfastd.log"))
                .unwrap_or_default()
                .matches("PeerDead")
                .count()
        })
        .sum()
}

/// (spares sent, times the loop was held > 5 ms), summed over both daemons.
fn loop_counts(c: &holdfast_harness::Cluster) -> (u64, u64) {
    let mut out = (0, 0);
    for n in ["a", "b"] {
        if let Some(s) = status(c, n) {
            let conns = &s["connections"];
            out.0 += conns["spares_sent"].as_u64().unwrap_or(0);
            out.1 += conns["loop_held"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum());
        }
    }
    out
}

struct Figures {
    interval: u32,
    idle: usize,
    loaded: usize,
    spares: u64,
    held: u64,
    intact: usize,
    cycles: usize,
    stall: (f64, f64, f64),
}

/// False failures idle and loaded over `seconds` each, then the stall over `cycles`.
fn measure(interval: u32, cycles: usize, seconds: u64) -> Figures {
    let dir = run_dir(&format!("bench-detection-{interval}ms"));
    // No capture: it is not read, and a 10-minute stream wrote 21 GB of it.
    let mut c = up_with(
        &dir,
        takeover_cluster_heartbeat(&dir, "echo", 7, Switch::Hub, "none", interval),
        false,
    );
    wait_ready(&c, &["a", "b"]);
    let (before, held_by) = (deaths(&c), holder(&c));
    std::thread::sleep(Duration::from_secs(seconds));
    let idle = (deaths(&c) - before).max(usize::from(holder(&c) != held_by));

    // 16 kB every 2 ms (8 MB/s) for about `seconds`.
    let mut spec = ClientSpec::new(Workload::Stream, VIP.parse().unwrap());
    spec.pace_us = 2000;
    spec.bytes = seconds * 8_000_000;
    spec.stall_timeout_ms = 5000;
    let (before, held_by) = (deaths(&c), holder(&c));
    let rep = c.start_client("client", spec).unwrap().wait().unwrap();
    let loaded = (deaths(&c) - before).max(usize::from(holder(&c) != held_by));
    if !rep.intact() {
        eprintln!(
            "{interval} ms: the loaded phase's stream broke: {}",
            rep.summary()
        );
    }
    let (spares, held) = loop_counts(&c);

    let (stall, broken) = power_off_stalls(&mut c, cycles);
    c.down().unwrap();
    Figures {
        interval,
        idle,
        loaded,
        spares,
        held,
        intact: stall.len(),
        cycles: stall.len() + broken,
        stall: quantiles(stall),
    }
}

fn main() {
    // One cluster at a time, as the tests (`up` checks it).
    let _serial = serial();
    let Some(cycles) = holdfast_harness::bench_arg::<usize>(30) else {
        return;
    };
    let rest: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .skip(1)
        .collect();
    let seconds = rest.first().copied().unwrap_or(600);
    let intervals: Vec<u32> = if rest.len() > 1 {
        rest[1..].iter().map(|&i| i as u32).collect()
    } else {
        vec![1, 2, 5, 10]
    };
    println!(
        "\n## Failure detection at the limit (miss count 3; {seconds} s idle and {seconds} s loaded per interval; {cycles} power-off cycles)\n"
    );
    println!(
        "| heartbeat | false failures idle | false failures loaded | spares sent | loop held > 5 ms | cycles intact | stall p50 | stall p99 | stall max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut line = Vec::new();
    for iv in intervals {
        let f = measure(iv, cycles, seconds);
        println!(
            "| {} ms | {} | {} | {} | {} | {}/{} | {:.1} ms | {:.1} ms | {:.1} ms |",
            f.interval,
            f.idle,
            f.loaded,
            f.spares,
            f.held,
            f.intact,
            f.cycles,
            f.stall.0,
            f.stall.1,
            f.stall.2
        );
        line.push(format!(
            "{}ms={:.1}/{}/{}",
            f.interval, f.stall.1, f.idle, f.loaded
        ));
    }
    println!("detection: {}", line.join(" "));
}
