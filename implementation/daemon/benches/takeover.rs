//! Benchmarks of connection takeover (figures, never pass/fail):
//! 1. the client's stall per failover: p50/p99/max over CYCLES power-off cycles (10 ms heartbeat),
//!    at 0 and 10 ms of client round trip;
//! 2. the time to assume 1, 100, 1,000 and 10,000 connections, phase by phase;
//! 3. client throughput with a snooping backup (`mirror` and `forward`), against none, in the
//!    same run.
//!
//! `cargo build --release --workspace && cargo bench -p holdfastd --bench takeover [-- CYCLES]`
//! as root (default 50 cycles); `-- 0 throughput` runs only the third (`-- 0 throughput
//! pinned` with the backup on a CPU of its own), `-- N stall` only the first. The stall is measured at 0 and at 10 ms of client round trip (a delay line on the
//! client's link), side by side.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use holdfast_harness::Fault;
use holdfast_harness::client::{ClientSpec, Workload};

const VIP: &str = "198.18.0.10:7";

/// The client's stall per power-off over `cycles` cycles, with `rtt_ms` of round trip added on
/// the client's link (a delay line in the switch, half each way). Returns (intact, broken,
/// p50, p99, max).
fn stalls(cycles: usize, rtt_ms: u64) -> (usize, usize, f64, f64, f64) {
    let dir = run_dir(&format!("bench-stall-rtt{rtt_ms}"));
    let mut c = up(&dir, takeover_cluster_on(&dir, "echo", 7, true));
    wait_ready(&c, &["a", "b"]);
    client_rtt(&mut c, rtt_ms).unwrap();
    let (stall, broken) = power_off_stalls(&mut c, cycles);
    c.down().unwrap();
    let (p50, p99, max) = quantiles(stall.clone());
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
    let conns = status(&c, "b")?["connections"].clone();
    let t = conns["last_takeover"].clone();
    eprintln!(
        "assume {n}: put back after the takeover: {} segments and {} SYNs ({} skipped)",
        conns["replayed_segments"], conns["replayed_syns"], conns["replay_skipped"]
    );
    let intact = rep.connections.iter().filter(|x| x.intact()).count();
    c.down().unwrap();
    Some((t, intact, rep.connections.len()))
}

/// One 200 MB echo stream through a, with b snooping as `mode` says (`none`: a mirror
/// that nobody reads; `mirror`; `forward`: no mirror, a copies its frames to b). With `pinned`,
/// every thread of b's daemon runs on CPU 1 and everything else of the run (a's daemon, this
/// process with the client) on CPU 0, as if b were another machine (but for the kernel's
/// receive work for b, which a veth does in the sender's context, on CPU 0; steering it to
/// CPU 1 with RPS measured lower: 0.669 against 0.796). Returns MB/s and a's and b's CPU
/// seconds (user + system, the daemons' threads only: the kernel's delivery of the mirrored
/// frames runs in the sender's context and is not counted).
fn throughput(mode: &str, pinned: bool) -> (f64, f64, f64) {
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
    let mut c = up(&dir, topo);
    wait_ready(&c, &["a", "b"]);
    let daemon = |c: &mut holdfast_harness::Cluster, n: &str| {
        c.pids(n)
            .into_iter()
            .find(|(name, _)| name == "holdfastd")
            .map(|(_, pid)| pid)
            .expect("a running holdfastd")
    };
    let (a, b) = (daemon(&mut c, "a"), daemon(&mut c, "b"));
    if pinned {
        pin(std::process::id() as i32, 0);
        pin(a, 0);
        pin(b, 1);
    }
    let mut spec = ClientSpec::new(Workload::Stream, VIP.parse::<SocketAddr>().unwrap());
    spec.bytes = 200_000_000;
    let (a0, b0) = (cpu_seconds(a), cpu_seconds(b));
    let t0 = Instant::now();
    let rep = c.start_client("client", spec).unwrap().wait().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(a) - a0, cpu_seconds(b) - b0);
    if pinned {
        pin(std::process::id() as i32, -1);
    }
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
    (200.0 / secs, cpu.0, cpu.1)
}

/// Pins every thread of process `pid` to CPU `cpu` (-1: any CPU again).
fn pin(pid: i32, cpu: i32) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity on it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    for i in 0..cpus {
        if cpu < 0 || i == cpu as usize {
            unsafe { libc::CPU_SET(i, &mut set) };
        }
    }
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: i32 = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        // SAFETY: a valid set of its own size.
        unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), &set) };
    }
}

/// User plus system CPU seconds of process `pid` so far (all its threads).
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    f.iter().sum::<f64>() / hz
}

/// `-- throughput [pinned]`: RUNS interleaved runs of each mode; medians, ratios, b's CPU.
fn throughput_table(pinned: bool) {
    const RUNS: usize = 5;
    println!(
        "\n## Throughput with a snooping backup (200 MB echo stream, {RUNS} runs each, interleaved, {})\n",
        if pinned {
            "b pinned to CPU 1, the rest to CPU 0"
        } else {
            "all sharing both CPUs"
        }
    );
    let modes = ["none", "mirror", "forward"];
    let mut runs: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); modes.len()];
    for _ in 0..RUNS {
        for (i, m) in modes.iter().enumerate() {
            runs[i].push(throughput(m, pinned));
        }
    }
    // Per GB snooped: the stream's bytes both ways (the requests and their echoes).
    let medians: Vec<(f64, f64, f64)> = runs
        .into_iter()
        .map(|r| {
            let m = |f: fn(&(f64, f64, f64)) -> f64| quantiles(r.iter().map(f).collect()).0;
            (m(|x| x.0), m(|x| x.1 / 0.4), m(|x| x.2 / 0.4))
        })
        .collect();
    println!(
        "| backup | median MB/s | ratio to none | CPU s per GB snooped: b (backup) | a (holder, its own snooper included) |"
    );
    println!("|---|---|---|---|---|");
    for (m, (v, cpu_a, cpu_b)) in modes.iter().zip(&medians) {
        println!(
            "| snoop = \"{m}\" | {v:.1} | {:.3} | {cpu_b:.2} | {cpu_a:.2} |",
            v / medians[0].0
        );
    }
    // The figure: the default mode, `mirror`.
    println!(
        "throughput ratio: {:.3} (snoop = \"mirror\"; \"forward\": {:.3}; {})",
        medians[1].0 / medians[0].0,
        medians[2].0 / medians[0].0,
        if pinned { "pinned" } else { "shared" }
    );
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
    throughput_table(std::env::args().any(|a| a == "pinned"));
}
