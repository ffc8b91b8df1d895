//! `holdfast-demo`: the main job. Builds `holdfastd` (and the harness's supervisor), brings up
//! `topologies/two-node.toml` with `adapters/holdfastd`, runs `scenarios/demo.toml` (a client
//! stream through a power-off and power-on of its server), and tells what the capture shows.
//!
//! Everything the harness does here any project's runner could do: it knows nothing of
//! holdfastd; this binary is holdfastd's side of the demo.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use holdfast_harness::adapter::Adapter;
use holdfast_harness::cluster::RunSummary;
use holdfast_harness::scenario::{self, Scenario, ScenarioReport};
use holdfast_harness::{Topology, runner};

/// Runs the Holdfast demo: nodes a and b and a client on one switch, holdfastd on a and b;
/// the client streams to a's address 198.18.0.10 while a is powered off and on again. Prints
/// a timeline of what each switch port's node sent, writes one pcapng per switch (open it in
/// Wireshark) and RUN_DIR/report.html (a picture of the run), and exits 0 only if every byte
/// came back and the capture shows the connection served by a, then continued by b.
///
/// Needs root (or runs itself in a rootless user namespace where the kernel allows one).
#[derive(Parser)]
#[command(name = "holdfast-demo", version)]
struct Cli {
    /// Where logs and pcaps go (default pcaps/out/RUN, RUN the run id it prints).
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match demo(cli.run_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("holdfast-demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn demo(run_dir: Option<PathBuf>) -> Result<ExitCode> {
    holdfast_harness::rootless::root_or_sandbox("holdfast-demo")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    build_the_binaries()?;
    let file = root.join("topologies/two-node.toml");
    let topo = Topology::load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sc = Scenario::load(&root.join("scenarios/demo.toml"), &topo)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let adapter =
        Adapter::load(root.join("adapters/holdfastd")).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "Holdfast demo: topology two-node (nodes a, b and a client on switch sw0; a mirrored to b)."
    );
    println!("holdfastd runs on a and b; a owns 198.18.0.10, and b snoops a's connections.");
    println!("The client streams to 198.18.0.10 while a is powered off and on again.\n");
    let outcome = runner::run_scenario(topo, Some(file), &sc, run_dir, "demo", Some(adapter))?;
    timeline(&outcome.summary)?;
    story(&outcome.summary, &outcome.report);
    Ok(outcome.verdict())
}

/// When run through `cargo run`, builds `holdfastd` and `holdfast-harness` (the supervisor of
/// every node's processes) beside this binary, in its profile, so that one command is enough.
fn build_the_binaries() -> Result<()> {
    let Some(cargo) = std::env::var_os("CARGO") else {
        return Ok(());
    };
    let exe = std::env::current_exe()?;
    let release = exe.parent().is_some_and(|d| d.ends_with("release"));
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "-q", "-p", "holdfastd", "-p", "holdfast-harness"]);
    if release {
        cmd.arg("--release");
    }
    let st = cmd
        .status()
        .context("build holdfastd and holdfast-harness")?;
    if !st.success() {
        bail!("building holdfastd and holdfast-harness failed");
    }
    Ok(())
}

/// The timeline, as the network saw it: the harness's events, and the first announcement and
/// reset of each kind per port, relative to the first event.
fn timeline(summary: &RunSummary) -> Result<()> {
    let t0 = summary.events.first().map_or(0, |e| e.t_ns);
    let mut seen = std::collections::BTreeSet::new();
    let mut lines: Vec<(u64, String)> = Vec::new();
    for c in &summary.captures {
        for f in holdfast_harness::capture::read(&c.file)? {
            if let Some(what) = holdfast_harness::capture::notable(&f)
                && f.inbound
                && seen.insert((f.iface.clone(), what.clone()))
            {
                lines.push((f.ts_ns, format!("{} sent {what}", f.iface)));
            }
        }
    }
    for e in summary
        .events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "power-off" | "power-on" | "client-start"))
    {
        let who = e.node.as_deref().unwrap_or("");
        lines.push((e.t_ns, format!("harness: {} {who} {}", e.kind, e.detail)));
    }
    lines.sort();
    println!("\nTimeline (harness events, and what each port's node sent: first of each kind):");
    for (t, l) in lines {
        println!(
            "[{:7.3}s] {}",
            t.saturating_sub(t0) as f64 / 1e9,
            l.trim_end()
        );
    }
    Ok(())
}

/// What the capture shows, and how to look at it.
fn story(summary: &RunSummary, report: &ScenarioReport) {
    let Some(c) = summary.captures.first() else {
        return;
    };
    let taken_over = report
        .verdicts
        .iter()
        .any(|v| v.expect == scenario::Expect::TakenOver && v.ok);
    if taken_over {
        println!(
            "\nThe capture shows it: a served the client's connection until it was powered off; b, which\nhad snooped it, re-created it with TCP_REPAIR, announced 198.18.0.10 with gratuitous ARP and\ncontinued the echo in the same sequence space, without a reset."
        );
    } else {
        println!(
            "\nThe capture does NOT show the headline connection served by a and then continued by b\n(see the verify line above)."
        );
    }
    println!(
        "  tshark -r {f} -Y 'arp.isannouncement'\n  tshark -r {f} -Y 'tcp.port==7 && frame.interface_name==\"sw0:b\"'\nor open the file in Wireshark (one interface per switch port: sw0:a, sw0:b, sw0:client).",
        f = c.file.display()
    );
}
