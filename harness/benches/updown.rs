//! Benchmark (reports figures, never fails on time): median up+down of `three-node.toml`.
//!
//! `cargo bench -p holdfast-harness --bench updown [-- RUNS]` (root). Reports up, down and the
//! total, with and without capture and processes, over RUNS runs (default 20).

use std::path::{Path, PathBuf};
use std::time::Instant;

use holdfast_harness::{Cluster, Options, Topology};

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!(
        "median {:6.1} ms  p90 {:6.1}  min {:6.1}  max {:6.1}",
        q(0.5),
        q(0.9),
        v[0],
        v[v.len() - 1]
    )
}

fn main() {
    let Some(runs) = holdfast_harness::bench_arg::<usize>(20) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topo = Topology::load(root.join("topologies/three-node.toml")).expect("topology");
    let out: PathBuf = root.join("pcaps/out/bench-updown");
    println!(
        "up+down of three-node.toml ({} nodes, {} switch), {runs} runs each",
        topo.nodes.len(),
        topo.switches.len()
    );
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_holdfast-harness"));
    let daemon = bin.with_file_name("holdfastd");
    let procs_label = if daemon.is_file() {
        "full (capture + holdfastd on a, b, c)"
    } else {
        println!(
            "(no {} yet: `cargo build --release -p holdfastd` to include the daemon)",
            daemon.display()
        );
        "capture, no processes"
    };
    for (label, capture, procs) in [
        (procs_label, true, daemon.is_file()),
        ("bare (no capture, no processes)", false, false),
    ] {
        let (mut ups, mut downs, mut totals) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs {
            let opts = Options {
                run_dir: Some(out.join(format!("{i}"))),
                harness_bin: Some(bin.clone()),
                capture,
                start_processes: procs,
                topology_file: None,
                adapter: None,
            };
            let t0 = Instant::now();
            let c = Cluster::up(topo.clone(), opts).expect("up");
            let t1 = Instant::now();
            c.down().expect("down");
            let t2 = Instant::now();
            ups.push((t1 - t0).as_secs_f64() * 1e3);
            downs.push((t2 - t1).as_secs_f64() * 1e3);
            totals.push((t2 - t0).as_secs_f64() * 1e3);
        }
        println!("{label}:");
        println!("  up      {}", stats(ups));
        println!("  down    {}", stats(downs));
        println!("  up+down {}", stats(totals));
    }
    let _ = std::fs::remove_dir_all(&out);
}
