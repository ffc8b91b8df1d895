//! Many kill/restore cycles under one live connection (a figure, never pass/fail): one echo
//! stream runs through CYCLES power-off/power-on cycles that alternate between the two nodes
//! of a hub topology (each cycle powers off whichever node holds the service address, waits
//! until the other has assumed the connection, and powers the first on again); then reports the
//! cycles done, the bytes verified, the resets the client saw, its longest stall, and the TCP
//! resets from the service address in the capture.
//!
//! `cargo build --release --workspace && cargo bench -p holdfastd --bench cycles [-- CYCLES]`
//! as root (default 1000; about half a second per cycle).

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use holdfast_harness::Fault;
use holdfast_harness::client::{ClientSpec, Workload};
use holdfast_proto::flow::parse_tcp;

const VIP: &str = "198.18.0.10:7";

fn holder(c: &holdfast_harness::Cluster) -> Option<&'static str> {
    holder_of(c, &["a", "b"], 1)
}

fn main() {
    // One cluster at a time, as the tests (`up` checks it).
    let _serial = serial();
    let Some(cycles) = holdfast_harness::bench_arg::<usize>(1000) else {
        return;
    };
    let dir = run_dir("bench-cycles");
    let mut c = up(&dir, takeover_cluster_on(&dir, "echo", 7, true));
    wait_ready(&c, &["a", "b"]);
    // 16 kB every 50 ms (320 kB/s), for longer than the cycles take (about 0.3 s each).
    let mut spec = ClientSpec::new(Workload::Stream, VIP.parse().unwrap());
    spec.pace_us = 50_000;
    spec.bytes = (cycles as u64 * 10 + 100) * 16 * 1024;
    spec.stall_timeout_ms = 5000;
    let h = c.start_client("client", spec).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let mut done = 0;
    for cycle in 0..cycles {
        let Some(victim) = holder(&c) else {
            eprintln!("cycle {cycle}: nobody holds the address");
            break;
        };
        let other = if victim == "a" { "b" } else { "a" };
        let before = status(&c, other)
            .and_then(|s| s["connections"]["assumed"].as_u64())
            .unwrap_or(0);
        if cycle > 0 {
            // The restored node has the connection's state (CONN-STATE sync) before it dies.
            let deadline = Instant::now() + Duration::from_secs(5);
            while status(&c, other)
                .and_then(|s| s["connections"]["tracked"].as_u64())
                .unwrap_or(0)
                == 0
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        c.fault(&Fault::PowerOff {
            node: victim.into(),
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while status(&c, other)
            .and_then(|s| s["connections"]["assumed"].as_u64())
            .unwrap_or(0)
            <= before
        {
            if Instant::now() > deadline {
                eprintln!("cycle {cycle}: {other} did not assume the connection");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        c.fault(&Fault::PowerOn {
            node: victim.into(),
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !status(&c, victim).is_some_and(|s| s["eligible"] == true) {
            if Instant::now() > deadline {
                eprintln!("cycle {cycle}: {victim} did not become eligible");
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        done += 1;
        if h.is_finished() {
            eprintln!("cycle {cycle}: the client stopped");
            break;
        }
        if done % 100 == 0 {
            eprintln!("{done} cycles, {:.0} s", t0.elapsed().as_secs_f64());
        }
    }
    let elapsed = t0.elapsed();
    let rep = h.wait().unwrap();
    let s = c.down().unwrap();
    let vip: SocketAddr = VIP.parse().unwrap();
    let first = event_ts(&s.events, "power-off", "a");
    let resets = read_pcap(&s.captures[0].file)
        .iter()
        .filter(|f| f.ts_ns > first && f.ts_ns < rep.finished_ns)
        .filter(|f| parse_tcp(&f.data).is_some_and(|t| t.rst && t.src == vip))
        .count();
    let conn = &rep.connections[0];
    println!("\n## Kill/restore cycles under one live connection\n");
    println!(
        "| cycles | time | bytes verified | of | client resets | client EOFs | longest stall | RSTs from {vip} in the pcap |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {done} | {:.0} s | {} | {} | {} | {} | {:.1} ms | {resets} |",
        elapsed.as_secs_f64(),
        conn.bytes_verified,
        conn.bytes_expected,
        rep.resets(),
        rep.eofs(),
        rep.max_stall_ms()
    );
    println!("\n{}", rep.summary());
}
