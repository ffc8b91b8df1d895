//! What a conformance run leaves for people and CI: each case's result as JSON
//! (`pcaps/out/results/IMPL/CASE::VARIANT.json`, written as the case ends), and from all of
//! them together `pcaps/out/report.json`, `report.junit.xml`, `report.md` (a GitHub step
//! summary) and `report.html`: the matrix of implementations by cases, each cell linking to what
//! failed, with the evidence, the pcaps, the logs and the timeline.
//!
//! Read [`CaseResult::of`] and [`write_reports`] first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use holdfast_harness::shrink::files_under;

use crate::case::Case;
use crate::run::{Kind, NotRun, Verdict, kind_of, root};

/// One expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its line in the case file.
    pub line: usize,
    /// What it checks.
    pub what: String,
    /// What was seen instead (the nearest packets, the client's report).
    pub evidence: String,
}

/// One event of the run, for the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    /// Seconds since the run came up.
    pub t: f64,
    /// `power-off a`, `client-done (...)`.
    pub what: String,
}

/// One case (one variant) run against one implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The implementation.
    pub implementation: String,
    /// `area/behaviour::variant`.
    pub name: String,
    /// The claims it covers.
    pub claims: Vec<u32>,
    /// Its one-sentence summary.
    pub summary: String,
    /// `pass`, `fail`, `unsupported` or `error`.
    pub verdict: String,
    /// What the implementation's expected results say.
    pub expected: String,
    /// Why (for an expected fail or unsupported).
    pub why: String,
    /// Whether the verdict is the expected one (the CI check).
    pub as_expected: bool,
    /// The expectations that did not hold.
    pub failures: Vec<Failure>,
    /// Why it did not run, or how it broke.
    pub note: Option<String>,
    /// The run directory, relative to `pcaps/out/`.
    pub run_dir: Option<String>,
    /// Its captures, logs and event log, relative to `pcaps/out/`.
    pub files: Vec<String>,
    /// The harness's events.
    pub timeline: Vec<Moment>,
}

/// `pcaps/out/`.
pub fn out_dir() -> PathBuf {
    root().join("pcaps/out")
}

fn rel(p: &Path) -> String {
    p.strip_prefix(out_dir()).unwrap_or(p).display().to_string()
}

impl CaseResult {
    /// The result of `case` run against `imp` (`want`, `why`: its expected results).
    pub fn of(
        case: &Case,
        imp: &str,
        result: &Result<Verdict, NotRun>,
        want: Kind,
        why: &str,
    ) -> Self {
        let got = kind_of(result);
        let (failures, note, run_dir) = match result {
            Ok(v) => (
                v.outcomes
                    .iter()
                    .filter_map(|o| {
                        o.result.as_ref().err().map(|e| Failure {
                            line: o.line,
                            what: o.what.clone(),
                            evidence: e.clone(),
                        })
                    })
                    .collect(),
                None,
                Some(v.run_dir.clone()),
            ),
            Err(e) => (Vec::new(), Some(e.to_string()), None),
        };
        let mut files = Vec::new();
        let mut timeline = Vec::new();
        if let Some(d) = &run_dir {
            files = files_under(d, &["pcapng", "log", "jsonl"]);
            timeline = read_timeline(&d.join("events.jsonl"));
        }
        Self {
            implementation: imp.to_owned(),
            name: case.name(),
            claims: case.claims.clone(),
            summary: case.summary.clone(),
            verdict: got.name().to_owned(),
            expected: want.name().to_owned(),
            why: why.to_owned(),
            as_expected: got == want,
            failures,
            note,
            run_dir: run_dir.as_deref().map(rel),
            files: files.iter().map(|f| rel(f)).collect(),
            timeline,
        }
    }

    /// Where it is saved.
    pub fn path(&self) -> PathBuf {
        out_dir()
            .join("results")
            .join(&self.implementation)
            .join(format!("{}.json", self.name.replace('/', "__")))
    }

    /// Saves it (for [`write_reports`]).
    pub fn save(&self) -> io::Result<()> {
        let p = self.path();
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        std::fs::write(p, text)
    }
}

fn read_timeline(p: &Path) -> Vec<Moment> {
    let Ok(text) = std::fs::read_to_string(p) else {
        return Vec::new();
    };
    let events: Vec<holdfast_harness::cluster::Event> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let t0 = events.first().map_or(0, |e| e.t_ns);
    events
        .iter()
        .map(|e| Moment {
            t: e.t_ns.saturating_sub(t0) as f64 / 1e9,
            what: [
                Some(e.kind.clone()),
                e.node.clone(),
                (!e.detail.is_empty()).then(|| format!("({})", e.detail)),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        })
        .collect()
}

/// Every saved result, sorted by case then implementation.
pub fn load_all() -> Vec<CaseResult> {
    let mut out: Vec<CaseResult> = files_under(&out_dir().join("results"), &["json"])
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    out.sort_by(|a, b| (&a.name, &a.implementation).cmp(&(&b.name, &b.implementation)));
    out
}

/// The whole run, as `report.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The implementations, in column order.
    pub implementations: Vec<String>,
    /// Per implementation: verdict -> count, and how many were not as expected.
    pub totals: BTreeMap<String, BTreeMap<String, usize>>,
    /// Every result.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// From the results.
    pub fn new(results: Vec<CaseResult>) -> Self {
        let implementations: Vec<String> = results
            .iter()
            .map(|r| r.implementation.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut totals: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for r in &results {
            let t = totals.entry(r.implementation.clone()).or_default();
            *t.entry(r.verdict.clone()).or_default() += 1;
            if !r.as_expected {
                *t.entry("not as expected".into()).or_default() += 1;
            }
        }
        Self {
            implementations,
            totals,
            results,
        }
    }

    fn cases(&self) -> Vec<(&str, &str)> {
        let mut seen = BTreeMap::new();
        for r in &self.results {
            seen.entry(r.name.as_str()).or_insert(r.summary.as_str());
        }
        seen.into_iter().collect()
    }

    fn cell(&self, case: &str, imp: &str) -> Option<&CaseResult> {
        self.results
            .iter()
            .find(|r| r.name == case && r.implementation == imp)
    }
}

fn anchor(r: &CaseResult) -> String {
    format!("{}--{}", r.implementation, r.name)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The matrix as Markdown (a GitHub step summary).
pub fn markdown(rep: &Report) -> String {
    let mut s = String::from("# Conformance\n\n");
    for imp in &rep.implementations {
        let t = &rep.totals[imp];
        let parts: Vec<String> = t.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(s, "- **{imp}**: {}", parts.join(", "));
    }
    let _ = write!(s, "\n| case |");
    for imp in &rep.implementations {
        let _ = write!(s, " {imp} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in &rep.implementations {
        s.push_str("---|");
    }
    s.push('\n');
    for (case, _) in rep.cases() {
        let _ = write!(s, "| `{case}` |");
        for imp in &rep.implementations {
            let c = match rep.cell(case, imp) {
                Some(r) if r.as_expected => r.verdict.clone(),
                Some(r) => format!("**{}** (expected {})", r.verdict, r.expected),
                None => "not run".into(),
            };
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    s
}

/// JUnit XML: one suite per implementation; a verdict other than the expected one is a
/// failure (an `error` verdict an error), `unsupported` is skipped.
pub fn junit(rep: &Report) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"holdfast-conformance\">\n",
    );
    for imp in &rep.implementations {
        let mine: Vec<&CaseResult> = rep
            .results
            .iter()
            .filter(|r| &r.implementation == imp)
            .collect();
        let failures = mine
            .iter()
            .filter(|r| !r.as_expected && r.verdict != "error")
            .count();
        let errors = mine
            .iter()
            .filter(|r| !r.as_expected && r.verdict == "error")
            .count();
        let skipped = mine.iter().filter(|r| r.verdict == "unsupported").count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">",
            esc(imp),
            mine.len()
        );
        for r in mine {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\">",
                esc(imp),
                esc(&r.name)
            );
            let detail: String = r
                .failures
                .iter()
                .map(|f| format!("line {}: {}\n{}\n", f.line, f.what, f.evidence))
                .chain(r.note.clone())
                .collect();
            if !r.as_expected {
                let tag = if r.verdict == "error" {
                    "error"
                } else {
                    "failure"
                };
                let _ = write!(
                    s,
                    "<{tag} message=\"{} (expected {})\">{}</{tag}>",
                    esc(&r.verdict),
                    esc(&r.expected),
                    esc(&detail)
                );
            } else if r.verdict == "unsupported" {
                let _ = write!(s, "<skipped message=\"{}\"/>", esc(&r.why));
            }
            s.push_str("</testcase>\n");
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

/// The HTML report: the matrix, then one section per cell.
pub fn html(rep: &Report) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Holdfast conformance</title>\n<style>\nbody{font-family:system-ui,sans-serif;margin:2em;color:#222}\ntable{border-collapse:collapse}\nth,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\ntd.pass{background:#d9f2d9}td.fail{background:#f9d6d5}td.unsupported{background:#e8e8e8}td.error{background:#fde4b8}\ntd.surprise{outline:3px solid #c00}\npre{white-space:pre-wrap;background:#f6f6f6;padding:.5em;font-size:90%}\nsection{margin-top:2em;border-top:1px solid #ccc}\n.why{color:#555}\n</style></head><body>\n<h1>Holdfast conformance</h1>\n",
    );
    s.push_str("<p>Each cell: the verdict of one case against one implementation. A red outline marks a verdict other than the expected one (what fails CI). Follow a cell for what failed, with the evidence, the pcaps, the logs and the timeline.</p>\n<ul>\n");
    for imp in &rep.implementations {
        let parts: Vec<String> = rep.totals[imp]
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let _ = writeln!(
            s,
            "<li><b>{}</b>: {}</li>",
            esc(imp),
            esc(&parts.join(", "))
        );
    }
    s.push_str("</ul>\n<table id=\"matrix\"><thead><tr><th>case</th>");
    for imp in &rep.implementations {
        let _ = write!(s, "<th>{}</th>", esc(imp));
    }
    s.push_str("</tr></thead><tbody>\n");
    for (case, summary) in rep.cases() {
        let _ = write!(
            s,
            "<tr><td><code>{}</code><br><span class=\"why\">{}</span></td>",
            esc(case),
            esc(summary)
        );
        for imp in &rep.implementations {
            match rep.cell(case, imp) {
                Some(r) => {
                    let class = if r.as_expected {
                        r.verdict.clone()
                    } else {
                        format!("{} surprise", r.verdict)
                    };
                    let extra = if r.as_expected {
                        String::new()
                    } else {
                        format!(" (expected {})", r.expected)
                    };
                    let _ = write!(
                        s,
                        "<td class=\"{class}\"><a href=\"#{}\">{}</a>{}</td>",
                        anchor(r),
                        esc(&r.verdict),
                        esc(&extra)
                    );
                }
                None => s.push_str("<td>not run</td>"),
            }
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    for r in &rep.results {
        let _ = writeln!(
            s,
            "<section id=\"{}\"><h2>{} &mdash; <code>{}</code>: {}</h2>\n<p>{}</p>",
            anchor(r),
            esc(&r.implementation),
            esc(&r.name),
            esc(&r.verdict),
            esc(&r.summary)
        );
        let claims: Vec<String> = r.claims.iter().map(u32::to_string).collect();
        let _ = writeln!(
            s,
            "<p>Claims {}. Expected: {}{}.</p>",
            claims.join(", "),
            esc(&r.expected),
            if r.why.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&r.why))
            }
        );
        if let Some(n) = &r.note {
            let _ = writeln!(s, "<pre>{}</pre>", esc(n));
        }
        for f in &r.failures {
            let _ = writeln!(
                s,
                "<h3>line {}: {}</h3><pre>{}</pre>",
                f.line,
                esc(&f.what),
                esc(&f.evidence)
            );
        }
        if !r.files.is_empty() {
            s.push_str("<p>Files: ");
            let links: Vec<String> = r
                .files
                .iter()
                .map(|f| format!("<a href=\"{}\">{}</a>", esc(f), esc(f)))
                .collect();
            s.push_str(&links.join(" &middot; "));
            s.push_str("</p>\n");
        }
        if !r.timeline.is_empty() {
            s.push_str("<details><summary>timeline</summary><pre>");
            for m in &r.timeline {
                let _ = writeln!(s, "{:8.4} s  {}", m.t, esc(&m.what));
            }
            s.push_str("</pre></details>\n");
        }
        s.push_str("</section>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// Writes `report.json`, `report.junit.xml`, `report.md` and `report.html` into `dir`, and
/// returns their paths.
pub fn write_reports(rep: &Report, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        (
            "report.json",
            serde_json::to_string_pretty(rep).map_err(io::Error::other)?,
        ),
        ("report.junit.xml", junit(rep)),
        ("report.md", markdown(rep)),
        ("report.html", html(rep)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::write(&p, text)?;
        out.push(p);
    }
    Ok(out)
}
