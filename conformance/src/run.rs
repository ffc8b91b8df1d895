//! Running one case against one implementation, and the expected results per implementation.
//!
//! Read [`run_case`] first: bring the case's topology up with the implementation's profile, let
//! it boot, run the steps, tear it down, then judge every expectation on the capture, the event
//! log and the client results. Captures stay in `pcaps/out/CASE/VARIANT/` for Wireshark.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Runs a case with the implementation's profile.
pub fn run_case(case: &Case, imp: &str, bin_dir: &Path) -> Result<Verdict, String> {
    let topo_file = root()
        .join("topologies")
        .join(format!("{}.toml", case.topology));
    let topo = Topology::load(&topo_file).map_err(|e| e.to_string())?;
    if !topo.profiles.iter().any(|p| p == imp) {
        return Err(format!(
            "topology {} has no profile {imp:?}: this implementation cannot run the case",
            case.topology
        ));
    }
    let sc = Scenario::parse_embedded(&case.file, &case.text, &topo).map_err(|e| e.to_string())?;
    let run_dir = root()
        .join("pcaps/out")
        .join(&case.id)
        .join(format!("{}-{imp}", case.variant.name));
    let _ = std::fs::remove_dir_all(&run_dir);
    let macs: BTreeMap<String, [u8; 6]> = topo
        .nodes
        .iter()
        .filter_map(|n| n.interfaces.first().map(|i| (n.name.clone(), i.mac)))
        .collect();
    let opts = Options {
        run_dir: Some(run_dir.clone()),
        harness_bin: Some(bin_dir.join("holdfast-harness")),
        profile: Some(imp.to_owned()),
        topology_file: Some(topo_file),
        ..Options::default()
    };
    let mut cluster = Cluster::up(topo, opts).map_err(|e| format!("up: {e}"))?;
    std::thread::sleep(Duration::from_millis(case.settle_ms));
    cluster.event("steps", None, "");
    let report = scenario::run(&mut cluster, &sc, &mut |_| {});
    let summary = cluster.down().map_err(|e| format!("down: {e}"))?;
    let report = report.map_err(|e| format!("steps: {e}"))?;
    let mut pkts = Vec::new();
    for c in &summary.captures {
        let frames = holdfast_harness::capture::read(&c.file).map_err(|e| e.to_string())?;
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
    let v = Verdict { outcomes, run_dir };
    if v.passed() {
        // A passed case keeps its captures small (TCP frames cut to their headers).
        let _ = holdfast_harness::shrink::shrink_dir(&v.run_dir);
    }
    Ok(v)
}

/// The cases an implementation is expected to fail, with the reason, from
/// `conformance/expected/IMPL.toml` (`[fail]` table keyed by case id, or `id::variant`).
pub fn expected_failures(imp: &str) -> BTreeMap<String, String> {
    let p = root()
        .join("conformance/expected")
        .join(format!("{imp}.toml"));
    let Ok(text) = std::fs::read_to_string(&p) else {
        return BTreeMap::new();
    };
    #[derive(serde::Deserialize)]
    struct F {
        #[serde(default)]
        fail: BTreeMap<String, String>,
    }
    toml::from_str::<F>(&text)
        .map(|f| f.fail)
        .unwrap_or_default()
}

/// Why `case` is expected to fail for `imp`, if it is.
pub fn expected_to_fail(case: &Case, failures: &BTreeMap<String, String>) -> Option<String> {
    failures
        .get(&case.name())
        .or_else(|| failures.get(&case.id))
        .cloned()
}
