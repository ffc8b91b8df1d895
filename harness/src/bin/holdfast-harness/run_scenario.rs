//! `holdfast-harness run` and `demo`: a topology up, a scenario, down, the checks that read the
//! capture, `report.json`, and (for the demo) the timeline and what the capture shows.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use holdfast_harness::client;
use holdfast_harness::scenario::{self, Scenario};
use holdfast_harness::{Cluster, Options, Topology};

pub(crate) fn run_scenario(
    topo: Topology,
    file: Option<PathBuf>,
    sc: &Scenario,
    run_dir: Option<PathBuf>,
    label: &str,
    adapter: Option<holdfast_harness::adapter::Adapter>,
) -> Result<ExitCode> {
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
    match holdfast_harness::picture::write(
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
    if label == "demo" {
        demo_timeline(&summary)?;
        demo_story(&summary, &report);
    }
    println!(
        "\n{}: {} of {} checks held",
        if report.ok() { "OK" } else { "FAILED" },
        report.verdicts.iter().filter(|v| v.ok).count(),
        report.verdicts.len()
    );
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `report.json` in the run directory: the verdicts, the clients' reports, the captures and
/// the harness's events.
fn write_report(
    id: &str,
    label: &str,
    topology: String,
    report: &scenario::ScenarioReport,
    summary: &holdfast_harness::cluster::RunSummary,
) -> Result<PathBuf> {
    #[derive(Serialize)]
    struct Report<'a> {
        id: &'a str,
        kind: &'a str,
        topology: String,
        ok: bool,
        verdicts: &'a [scenario::Verdict],
        clients: &'a std::collections::BTreeMap<String, client::ClientReport>,
        captures: &'a [holdfast_harness::capture::CaptureStats],
        events: &'a [holdfast_harness::cluster::Event],
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

/// The demo's timeline, as the network saw it: the harness's events, and the first
/// announcement and reset of each kind per port, relative to the first event.
fn demo_timeline(summary: &holdfast_harness::cluster::RunSummary) -> Result<()> {
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

/// What the demo's capture shows, and how to look at it.
fn demo_story(summary: &holdfast_harness::cluster::RunSummary, report: &scenario::ScenarioReport) {
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
