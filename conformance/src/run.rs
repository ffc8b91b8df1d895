//! Running one case against one implementation, and the expected results per implementation.
//!
//! Read [`run_case`] first: render the case's topology with the implementation's adapter
//! (`adapters/IMP`), bring it up, let it boot, run the steps, tear it down, then judge every expectation on the capture, the event
//! log and the client results. Captures stay in `pcaps/out/CASE/VARIANT/` for Wireshark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use holdfast_harness::adapter::Adapter;
use holdfast_harness::scenario::{self, Scenario};
use holdfast_harness::{Cluster, Options, Topology};

use crate::case::Case;
use crate::decode::Pkt;
use crate::expect::{Ctx, slack};

/// The repository root (where `topologies/` and `conformance/` are).
pub fn root() -> PathBuf {
    let r = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    r.canonicalize().unwrap_or(r)
}

/// The implementation under test: `HOLDFAST_IMPL`, default `holdfastd`.
pub fn implementation() -> String {
    std::env::var("HOLDFAST_IMPL").unwrap_or_else(|_| "holdfastd".into())
}

/// One expectation's verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its line in the case file.
    pub line: usize,
    /// What it checks.
    pub what: String,
    /// `Err` says why it failed.
    pub result: Result<(), String>,
}

/// A case's verdict: every expectation's, and where the capture is.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Per expectation.
    pub outcomes: Vec<Outcome>,
    /// The run directory (pcaps, logs, events).
    pub run_dir: PathBuf,
}

impl Verdict {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.result.is_ok())
    }

    /// A readable report of the failures.
    pub fn report(&self, case: &Case) -> String {
        let mut s = String::new();
        for o in self.outcomes.iter().filter(|o| o.result.is_err()) {
            s.push_str(&format!(
                "{}:{}: expectation failed: {}\n  {}\n",
                case.file.display(),
                o.line,
                o.what,
                o.result
                    .as_ref()
                    .err()
                    .map(|e| e.replace('\n', "\n  "))
                    .unwrap_or_default()
            ));
        }
        s.push_str(&format!("pcaps: {}/*.pcapng\n", self.run_dir.display()));
        s
    }
}

/// How a case ended for an implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Every expectation held.
    Pass,
    /// An expectation did not hold (the report says which, with the evidence).
    Fail,
    /// The implementation cannot express the case (its adapter declares it, cannot render the
    /// topology's `[cluster]`, or the case crashes a process it does not run): never run, never
    /// counted as a failure.
    Unsupported,
    /// The run itself broke (the cluster did not come up, a step failed).
    Error,
}

impl Kind {
    /// `pass`, `fail`, `unsupported`, `error`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Unsupported => "unsupported",
            Self::Error => "error",
        }
    }
}

/// Why a case did not give a verdict.
#[derive(Debug, Clone)]
pub enum NotRun {
    /// See [`Kind::Unsupported`].
    Unsupported(String),
    /// See [`Kind::Error`].
    Error(String),
}

impl std::fmt::Display for NotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported(s) => write!(f, "unsupported: {s}"),
            Self::Error(s) => write!(f, "error: {s}"),
        }
    }
}

/// The kind of a run's result.
pub fn kind_of(r: &Result<Verdict, NotRun>) -> Kind {
    match r {
        Ok(v) if v.passed() => Kind::Pass,
        Ok(_) => Kind::Fail,
        Err(NotRun::Unsupported(_)) => Kind::Unsupported,
        Err(NotRun::Error(_)) => Kind::Error,
    }
}

/// The shipped adapters' names (`adapters/NAME/adapter.toml`), holdfastd first.
pub fn implementations() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("adapters"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().join("adapter.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| (n != "holdfastd", n.clone()));
    names
}

/// An implementation's adapter, `adapters/IMP`.
pub fn adapter(imp: &str) -> Result<Adapter, String> {
    let dir = root().join("adapters").join(imp);
    if !dir.join("adapter.toml").is_file() {
        return Err(format!(
            "no adapter for {imp:?}: {} does not exist (adapters: {})",
            dir.join("adapter.toml").display(),
            implementations().join(", ")
        ));
    }
    Adapter::load(&dir).map_err(|e| e.to_string())
}

/// Runs a case against an implementation, through its adapter.
pub fn run_case(case: &Case, imp: &str, bin_dir: &Path) -> Result<Verdict, NotRun> {
    let adapter = adapter(imp).map_err(NotRun::Error)?;
    if let Some(why) = adapter.declared_unsupported(&case.id, Some(&case.variant.name)) {
        return Err(NotRun::Unsupported(format!(
            "declared by the adapter: {why}"
        )));
    }
    let topo_file = root()
        .join("topologies")
        .join(format!("{}.toml", case.topology));
    let topo = Topology::load(&topo_file).map_err(|e| NotRun::Error(e.to_string()))?;
    if let Some(why) = adapter.cannot_express(&topo) {
        return Err(NotRun::Unsupported(why));
    }
    let sc = Scenario::parse_embedded(&case.file, &case.text, &topo)
        .map_err(|e| NotRun::Error(e.to_string()))?;
    let run_dir = root()
        .join("pcaps/out")
        .join(&case.id)
        .join(format!("{}-{imp}", case.variant.name));
    let _ = std::fs::remove_dir_all(&run_dir);
    // The implementation's configuration, kept beside the pcaps for the reader.
    let topo = adapter
        .render(&topo, &run_dir.join("config"))
        .map_err(|e| NotRun::Error(e.to_string()))?;
    // A step that crashes a process the implementation does not run cannot be expressed.
    for step in &sc.steps {
        if let scenario::Step::Fault(holdfast_harness::Fault::Crash { node, process }) = step {
            let runs = topo
                .node(node)
                .is_some_and(|n| n.processes.iter().any(|p| &p.name == process));
            if !runs {
                return Err(NotRun::Unsupported(format!(
                    "the case crashes process {process:?} on {node}, which {imp} does not run there"
                )));
            }
        }
    }
    let macs: BTreeMap<String, [u8; 6]> = topo
        .nodes
        .iter()
        .filter_map(|n| n.interfaces.first().map(|i| (n.name.clone(), i.mac)))
        .collect();
    let opts = Options {
        run_dir: Some(run_dir.clone()),
        harness_bin: Some(bin_dir.join("holdfast-harness")),
        topology_file: Some(topo_file),
        ..Options::default()
    };
    let mut cluster = Cluster::up(topo, opts).map_err(|e| NotRun::Error(format!("up: {e}")))?;
    if let Some(cmd) = adapter.cleanup_command(cluster.id(), &run_dir) {
        cluster.after_teardown(cmd);
    }
    std::thread::sleep(Duration::from_millis(case.settle_ms.max(adapter.settle_ms)));
    cluster.event("steps", None, "");
    let report = scenario::run(&mut cluster, &sc, &mut |_| {});
    let summary = cluster
        .down()
        .map_err(|e| NotRun::Error(format!("down: {e}")))?;
    let report = report.map_err(|e| NotRun::Error(format!("steps: {e}")))?;
    let mut pkts = Vec::new();
    for c in &summary.captures {
        let frames =
            holdfast_harness::capture::read(&c.file).map_err(|e| NotRun::Error(e.to_string()))?;
        pkts.extend(
            frames
                .iter()
                .map(|f| (f.ts_ns, f))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|(_, f)| f.clone()),
        );
    }
    pkts.sort_by_key(|f| f.ts_ns);
    let pkts: Vec<Pkt> = pkts
        .iter()
        .enumerate()
        .map(|(i, f)| Pkt::decode(i, f))
        .collect();
    let ctx = Ctx {
        pkts,
        events: summary.events,
        clients: report.clients,
        macs,
        slack: slack(),
    };
    let outcomes = case
        .expects
        .iter()
        .map(|(line, e)| Outcome {
            line: *line,
            what: e.what().to_owned(),
            result: ctx.check(e),
        })
        .collect();
    Ok(Verdict { outcomes, run_dir })
}

/// An implementation's expected results, from `adapters/IMP/expected.toml`: the cases (by id,
/// or `id::variant`) it is expected to `fail` and those it cannot run (`unsupported`: listed
/// there, or declared in its `adapter.toml`), each with the reason; every other case is
/// expected to pass.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Expected to fail, and why.
    #[serde(default)]
    pub fail: BTreeMap<String, String>,
    /// Cannot be run by this implementation, and why.
    #[serde(default)]
    pub unsupported: BTreeMap<String, String>,
    /// Expected to pass although its case is listed under `fail` (a variant), and why.
    #[serde(default)]
    pub pass: BTreeMap<String, String>,
}

impl Expected {
    /// Every case or `case::variant` named, with the table it is in (for checking the names).
    pub fn names(&self) -> impl Iterator<Item = (&'static str, &String)> {
        self.fail
            .keys()
            .map(|k| ("fail", k))
            .chain(self.unsupported.keys().map(|k| ("unsupported", k)))
            .chain(self.pass.keys().map(|k| ("pass", k)))
    }

    /// Reads `adapters/IMP/expected.toml` (none: everything is expected to pass) and adds the
    /// cases the adapter declares unsupported.
    pub fn load(imp: &str) -> Result<Self, String> {
        let a = adapter(imp)?;
        let p = a.dir.join("expected.toml");
        let mut e: Self = match std::fs::read_to_string(&p) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?,
            Err(_) => Self::default(),
        };
        for (case, why) in a.unsupported {
            e.unsupported
                .entry(case)
                .or_insert(format!("declared by the adapter: {why}"));
        }
        Ok(e)
    }

    /// The expected kind for a case, and why (empty for a pass). A variant's own entry wins
    /// over its case's.
    pub fn of(&self, case: &Case) -> (Kind, String) {
        for key in [case.name(), case.id.clone()] {
            if let Some(w) = self.pass.get(&key) {
                return (Kind::Pass, w.clone());
            }
            if let Some(w) = self.unsupported.get(&key) {
                return (Kind::Unsupported, w.clone());
            }
            if let Some(w) = self.fail.get(&key) {
                return (Kind::Fail, w.clone());
            }
        }
        (Kind::Pass, String::new())
    }
}
