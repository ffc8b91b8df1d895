//! Running a scenario end to end, as `holdfast-harness run` does and as any project's own
//! runner can: the topology up, the scenario, down, the checks that read the captures,
//! `RUN_DIR/report.json` and `RUN_DIR/report.html`, with a human timeline on stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::client;
use crate::cluster::RunSummary;
use crate::scenario::{self, Scenario, ScenarioReport};
use crate::{Cluster, Options, Topology};

/// What a run left: its id, topology, captures and events, and the scenario's verdicts.
#[derive(Debug)]
pub struct Outcome {
    /// The run id.
    pub id: String,
    /// The topology it ran.
    pub topology: Topology,
    /// Captures, events and the run directory.
    pub summary: RunSummary,
    /// The clients' reports and the verdicts.
    pub report: ScenarioReport,
}

impl Outcome {
    /// Prints `OK: N of M checks held` (or `FAILED: ...`) and gives the matching exit code.
    pub fn verdict(&self) -> ExitCode {
        let ok = self.report.ok();
        println!(
            "\n{}: {} of {} checks held",
            if ok { "OK" } else { "FAILED" },
            self.report.verdicts.iter().filter(|v| v.ok).count(),
            self.report.verdicts.len()
        );
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

/// Brings `topo` up (with `adapter`'s processes, if any), runs `sc`, tears it down, checks the
/// captures, and writes the report and the picture. `label` names the kind of run in
/// `report.json` and the picture's title.
pub fn run_scenario(
    topo: Topology,
    file: Option<PathBuf>,
    sc: &Scenario,
    run_dir: Option<PathBuf>,
    label: &str,
    adapter: Option<crate::adapter::Adapter>,
) -> Result<Outcome> {
    let name = topo.name.clone();
    let start = Instant::now();
    let opts = Options {
        run_dir,
        topology_file: file.clone(),
        adapter,
        ..Options::default()
    };
    let t0 = Instant::now();
    let mut cluster = Cluster::up(topo, opts).context("bring the topology up")?;
    let id = cluster.id().to_owned();
    println!(
        "[{:7.3}s] up: run {id} ({name}) in {:.1} ms",
        0.0,
        t0.elapsed().as_secs_f64() * 1000.0
    );
    let mut log = |s: &str| println!("[{:7.3}s] {s}", start.elapsed().as_secs_f64());
    let res = scenario::run(&mut cluster, sc, &mut log);
    let topology = cluster.topology().clone();
    let summary = cluster.down().context("tear down")?;
    println!(
        "[{:7.3}s] down: namespaces, links and processes removed",
        start.elapsed().as_secs_f64()
    );
    let mut report = res.context("scenario")?;
    // Checks that read the finished captures (`verify-takeover`).
    report.verify_captures(&topology, &summary.captures)?;
    for v in report
        .verdicts
        .iter()
        .filter(|v| v.expect == scenario::Expect::TakenOver)
    {
        println!(
            "[{:7.3}s] verify {} in the capture: {}: {}",
            start.elapsed().as_secs_f64(),
            v.id,
            if v.ok { "taken over" } else { "FAILED" },
            v.summary
        );
    }
    let path = write_report(
        &id,
        label,
        file.map_or(name, |f| f.display().to_string()),
        &report,
        &summary,
    )?;
    println!();
    for c in &summary.captures {
        println!(
            "pcap: {} ({} frames, {} dropped by the kernel)",
            c.file.display(),
            c.written,
            c.kernel_drops
        );
    }
    println!("report: {}", path.display());
    match crate::picture::write(
        &summary,
        &report.clients,
        &format!("{label} {id}: {}", topology.name),
    ) {
        Ok(p) => println!(
            "picture: {} (a timeline; open it in a browser)",
            p.display()
        ),
        Err(e) => eprintln!("picture: not written: {e}"),
    }
    Ok(Outcome {
        id,
        topology,
        summary,
        report,
    })
}

/// `report.json` in the run directory: the verdicts, the clients' reports, the captures and
/// the harness's events.
fn write_report(
    id: &str,
    label: &str,
    topology: String,
    report: &ScenarioReport,
    summary: &RunSummary,
) -> Result<PathBuf> {
    #[derive(Serialize)]
    struct Report<'a> {
        id: &'a str,
        kind: &'a str,
        topology: String,
        ok: bool,
        verdicts: &'a [scenario::Verdict],
        clients: &'a std::collections::BTreeMap<String, client::ClientReport>,
        captures: &'a [crate::capture::CaptureStats],
        events: &'a [crate::cluster::Event],
    }
    let rep = Report {
        id,
        kind: label,
        topology,
        ok: report.ok(),
        verdicts: &report.verdicts,
        clients: &report.clients,
        captures: &summary.captures,
        events: &summary.events,
    };
    let path = summary.run_dir.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&rep)?)?;
    Ok(path)
}
