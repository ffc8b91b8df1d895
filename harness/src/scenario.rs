//! Scenarios: a small step language that drives a cluster through faults and client workloads.
//!
//! Read [`Scenario::parse`] and [`run`] first. A scenario file is a list of `[[step]]` tables,
//! each with a `do` key:
//!
//! | `do`            | fields                                                      |
//! |-----------------|-------------------------------------------------------------|
//! | `wait`          | `for = "300ms"`                                             |
//! | `fault`         | `kind`, `node`, and `process` (crash) or `pct` (loss)       |
//! | `restore`       | `node`: undo the node's last fault (power-on, heal, thaw)   |
//! | `client-start`  | `id`, `node`, `client = { workload, target, ... }`          |
//! | `client-wait`   | `id`                                                        |
//! | `client-verify` | `id`, `expect = "intact"` (default) or `"broken"`           |
//! | `wait-connect`  | `node`, `target`, `timeout` (default `"5s"`): until a TCP   |
//! |                 | connection from `node` to `target` is accepted              |
//! | `verify-takeover` | `id`, `from`, `to`: in the capture, client `id`'s         |
//! |                 | connections were served by `from` until its last fault and  |
//! |                 | by `to` after it, in one sequence space, without a reset    |
//! | `repeat`        | `count`, and nested `[[step.step]]` tables                  |
//!
//! String values in `client` may use the topology's placeholders (`"{a.ip}:7"`). Problems are
//! reported as `FILE:LINE: field: what is wrong`, like topology errors.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::client::{ClientReport, ClientSpec};
use crate::cluster::{ClientHandle, Cluster, Fault};
use crate::topology::{Problem, TemplateEnv, Topology, TopologyError};

/// What a client's results must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Every byte verified; no reset, EOF or error.
    Intact,
    /// At least one connection was not intact (for baselines that are expected to break).
    Broken,
    /// Served by one node before a fault and by another after it, in one sequence space
    /// (`verify-takeover`, judged in the capture).
    TakenOver,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Sleep.
    Wait(Duration),
    /// Apply a fault.
    Fault(Fault),
    /// Undo the last fault applied to a node.
    Restore(String),
    /// Start a client workload on a node.
    ClientStart {
        /// The client's id in this scenario.
        id: String,
        /// The node it runs on.
        node: String,
        /// The workload.
        spec: ClientSpec,
    },
    /// Wait for a client to finish.
    ClientWait(String),
    /// Wait for a client and check its results.
    ClientVerify {
        /// The client's id.
        id: String,
        /// What is expected.
        expect: Expect,
    },
    /// Wait until `node` can open a TCP connection to `target` (the service is served).
    WaitConnect {
        /// The node that connects.
        node: String,
        /// The service.
        target: SocketAddr,
        /// How long to keep trying.
        timeout: Duration,
    },
    /// Check in the capture that client `id`'s connections moved from `from` to `to`.
    VerifyTakeover {
        /// The client's id.
        id: String,
        /// The node that served them until its last fault.
        from: String,
        /// The node that served them after it.
        to: String,
    },
    /// Run steps several times.
    Repeat {
        /// How many times.
        count: u32,
        /// The steps.
        steps: Vec<Self>,
    },
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    step: Vec<RawStep>,
}

/// The `[[step]]` tables of a file that has other top-level keys of its own (a conformance
/// case), which are left to its own parser.
#[derive(Deserialize)]
struct EmbeddedScenario {
    #[serde(default)]
    step: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(rename = "do")]
    action: Spanned<String>,
    #[serde(rename = "for")]
    duration: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    node: Option<Spanned<String>>,
    process: Option<String>,
    pct: Option<f64>,
    id: Option<Spanned<String>>,
    client: Option<Spanned<toml::Table>>,
    expect: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    from: Option<Spanned<String>>,
    to: Option<Spanned<String>>,
    count: Option<u32>,
    #[serde(default)]
    step: Vec<Self>,
}

/// Parses `"300ms"`, `"2s"`, `"1.5s"`, `"250us"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.trim().parse().ok()?;
    let secs = match unit {
        "us" => v / 1e6,
        "ms" => v / 1e3,
        "s" => v,
        "m" | "min" => v * 60.0,
        _ => return None,
    };
    (v >= 0.0).then(|| Duration::from_secs_f64(secs))
}

struct Cx<'a> {
    file: PathBuf,
    text: &'a str,
    topology: &'a Topology,
    problems: Vec<Problem>,
    clients: Vec<String>,
}

impl Cx<'_> {
    fn err(&mut self, span: Range<usize>, field: &str, msg: impl Into<String>) {
        let line = self.text[..span.start.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1;
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            field: field.to_owned(),
            message: msg.into(),
        });
    }

    fn need<'s>(
        &mut self,
        v: &'s Option<Spanned<String>>,
        at: &Spanned<String>,
        field: &str,
    ) -> Option<&'s Spanned<String>> {
        if v.is_none() {
            self.err(
                at.span(),
                field,
                format!("step `{}` needs `{field}`", at.get_ref()),
            );
        }
        v.as_ref()
    }

    fn node(&mut self, v: &Option<Spanned<String>>, at: &Spanned<String>) -> Option<String> {
        let n = self.need(v, at, "node")?;
        let name = n.get_ref().split(':').next_back().unwrap_or_default();
        if self.topology.node(name).is_none() {
            let span = n.span();
            let msg = format!("unknown node {:?}", n.get_ref());
            self.err(span, "node", msg);
            return None;
        }
        Some(n.get_ref().clone())
    }

    /// A node named in field `field` (not `node`).
    fn named_node(
        &mut self,
        v: &Option<Spanned<String>>,
        at: &Spanned<String>,
        field: &str,
    ) -> Option<String> {
        let n = self.need(v, at, field)?;
        if self.topology.node(n.get_ref()).is_none() {
            let (span, msg) = (n.span(), format!("unknown node {:?}", n.get_ref()));
            self.err(span, field, msg);
            return None;
        }
        Some(n.get_ref().clone())
    }

    fn steps(&mut self, raw: &[RawStep]) -> Vec<Step> {
        raw.iter().filter_map(|r| self.step(r)).collect()
    }

    fn step(&mut self, r: &RawStep) -> Option<Step> {
        let at = &r.action;
        match at.get_ref().as_str() {
            "wait" => {
                let d = self.need(&r.duration, at, "for")?;
                match parse_duration(d.get_ref()) {
                    Some(x) => Some(Step::Wait(x)),
                    None => {
                        let (span, msg) = (
                            d.span(),
                            format!("{:?} is not a duration (\"300ms\", \"2s\")", d.get_ref()),
                        );
                        self.err(span, "for", msg);
                        None
                    }
                }
            }
            "fault" => {
                let kind = self.need(&r.kind, at, "kind")?.clone();
                let node = self.node(&r.node, at)?;
                let arg = r.process.clone().or_else(|| r.pct.map(|p| p.to_string()));
                match Fault::parse(kind.get_ref(), &node, arg.as_deref()) {
                    Ok(f) => Some(Step::Fault(f)),
                    Err(e) => {
                        self.err(kind.span(), "kind", e);
                        None
                    }
                }
            }
            "restore" => Some(Step::Restore(self.node(&r.node, at)?)),
            "client-start" => {
                let id = self.need(&r.id, at, "id")?.get_ref().clone();
                let node = self.node(&r.node, at)?;
                let Some(table) = &r.client else {
                    self.err(
                        at.span(),
                        "client",
                        "step `client-start` needs `client = { workload = ..., target = ... }`",
                    );
                    return None;
                };
                let env = TemplateEnv {
                    topology: self.topology,
                    node: &node,
                    run: "run",
                    run_dir: Path::new("/run"),
                    harness: Path::new("/run"),
                };
                let mut t = table.get_ref().clone();
                for (_, v) in t.iter_mut() {
                    if let toml::Value::String(s) = v {
                        match crate::topology::expand(s, &env) {
                            Ok(x) => *s = x,
                            Err(e) => {
                                self.err(table.span(), "client", e);
                                return None;
                            }
                        }
                    }
                }
                match toml::Value::Table(t).try_into::<ClientSpec>() {
                    Ok(spec) => {
                        self.clients.push(id.clone());
                        Some(Step::ClientStart { id, node, spec })
                    }
                    Err(e) => {
                        self.err(table.span(), "client", e.message().to_owned());
                        None
                    }
                }
            }
            "client-wait" | "client-verify" => {
                let id = self.need(&r.id, at, "id")?;
                if !self.clients.contains(id.get_ref()) {
                    let (span, msg) = (
                        id.span(),
                        format!("no earlier client-start with id {:?}", id.get_ref()),
                    );
                    self.err(span, "id", msg);
                    return None;
                }
                let id = id.get_ref().clone();
                if at.get_ref() == "client-wait" {
                    return Some(Step::ClientWait(id));
                }
                let expect = match r.expect.as_ref().map(|e| e.get_ref().as_str()) {
                    None | Some("intact") => Expect::Intact,
                    Some("broken") => Expect::Broken,
                    Some(other) => {
                        let span = r.expect.as_ref().map(Spanned::span).unwrap_or_default();
                        self.err(
                            span,
                            "expect",
                            format!("{other:?}: expected \"intact\" or \"broken\""),
                        );
                        return None;
                    }
                };
                Some(Step::ClientVerify { id, expect })
            }
            "wait-connect" => {
                let node = self.node(&r.node, at)?;
                let t = self.need(&r.target, at, "target")?;
                let env = TemplateEnv {
                    topology: self.topology,
                    node: &node,
                    run: "run",
                    run_dir: Path::new("/run"),
                    harness: Path::new("/run"),
                };
                let expanded = crate::topology::expand(t.get_ref(), &env);
                let Some(target) = expanded.ok().and_then(|x| x.parse::<SocketAddr>().ok()) else {
                    let (span, msg) = (
                        t.span(),
                        format!("{:?} is not an address and port", t.get_ref()),
                    );
                    self.err(span, "target", msg);
                    return None;
                };
                let timeout = match &r.timeout {
                    None => Duration::from_secs(5),
                    Some(d) => match parse_duration(d.get_ref()) {
                        Some(x) => x,
                        None => {
                            let (span, msg) = (
                                d.span(),
                                format!("{:?} is not a duration (\"5s\")", d.get_ref()),
                            );
                            self.err(span, "timeout", msg);
                            return None;
                        }
                    },
                };
                Some(Step::WaitConnect {
                    node,
                    target,
                    timeout,
                })
            }
            "verify-takeover" => {
                let id = self.need(&r.id, at, "id")?;
                if !self.clients.contains(id.get_ref()) {
                    let (span, msg) = (
                        id.span(),
                        format!("no earlier client-start with id {:?}", id.get_ref()),
                    );
                    self.err(span, "id", msg);
                    return None;
                }
                let id = id.get_ref().clone();
                let from = self.named_node(&r.from, at, "from")?;
                let to = self.named_node(&r.to, at, "to")?;
                Some(Step::VerifyTakeover { id, from, to })
            }
            "repeat" => {
                let Some(count) = r.count else {
                    self.err(at.span(), "count", "step `repeat` needs `count`");
                    return None;
                };
                if r.step.is_empty() {
                    self.err(
                        at.span(),
                        "step",
                        "step `repeat` needs nested [[step.step]] tables",
                    );
                }
                Some(Step::Repeat {
                    count,
                    steps: self.steps(&r.step),
                })
            }
            other => {
                self.err(
                    at.span(),
                    "do",
                    format!("unknown step {other:?}; known: wait fault restore client-start client-wait client-verify wait-connect verify-takeover repeat"),
                );
                None
            }
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario against a topology.
    pub fn load(path: &Path, topology: &Topology) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Io {
            file: path.to_owned(),
            source: std::sync::Arc::new(e),
        })?;
        Self::parse(path, &text, topology)
    }

    /// Checks the `[[step]]` tables of a file that has other top-level keys too (a conformance
    /// case); errors keep the file's own line numbers.
    pub fn parse_embedded(
        path: &Path,
        text: &str,
        topology: &Topology,
    ) -> Result<Self, TopologyError> {
        Self::parse_with(path, text, topology, |t| {
            toml::from_str::<EmbeddedScenario>(t).map(|r| r.step)
        })
    }

    /// Checks scenario text against a topology; `path` is for messages.
    pub fn parse(path: &Path, text: &str, topology: &Topology) -> Result<Self, TopologyError> {
        Self::parse_with(path, text, topology, |t| {
            toml::from_str::<RawScenario>(t).map(|r| r.step)
        })
    }

    fn parse_with(
        path: &Path,
        text: &str,
        topology: &Topology,
        steps_of: impl FnOnce(&str) -> Result<Vec<RawStep>, toml::de::Error>,
    ) -> Result<Self, TopologyError> {
        let mut cx = Cx {
            file: path.to_owned(),
            text,
            topology,
            problems: Vec::new(),
            clients: Vec::new(),
        };
        let raw = match steps_of(text) {
            Ok(r) => r,
            Err(e) => {
                cx.err(e.span().unwrap_or(0..0), "syntax", e.message().trim());
                return Err(TopologyError::Invalid(cx.problems));
            }
        };
        let steps = cx.steps(&raw);
        if cx.problems.is_empty() {
            Ok(Self { steps })
        } else {
            Err(TopologyError::Invalid(cx.problems))
        }
    }
}

/// The verdict on one `client-verify`.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The client id (with `#N` for repeat iterations after the first).
    pub id: String,
    /// What was expected.
    pub expect: Expect,
    /// Whether it held.
    pub ok: bool,
    /// The client's summary line.
    pub summary: String,
}

/// What a scenario run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScenarioReport {
    /// Every verdict, in order.
    pub verdicts: Vec<Verdict>,
    /// Every client's results, by id (`#N` suffix for repeats).
    pub clients: BTreeMap<String, ClientReport>,
    /// `verify-takeover` checks, judged once the captures are complete
    /// ([`ScenarioReport::verify_captures`]).
    #[serde(skip)]
    pub pending: Vec<PendingTakeover>,
}

/// A `verify-takeover` waiting for the finished capture.
#[derive(Debug, Clone)]
pub struct PendingTakeover {
    /// The client's id (with `#N` in repeats).
    pub id: String,
    /// The service it connected to.
    pub target: SocketAddr,
    /// Its connections' local addresses.
    pub clients: Vec<SocketAddr>,
    /// The old and new serving nodes.
    pub from: String,
    /// The new serving node.
    pub to: String,
    /// When the fault on `from` was applied (`CLOCK_REALTIME` ns), if one was.
    pub fault_ns: Option<u64>,
}

impl ScenarioReport {
    /// Whether every verdict held (and no capture check is left unjudged).
    pub fn ok(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok) && self.pending.is_empty()
    }

    /// Judges the `verify-takeover` steps in the finished captures (after `Cluster::down`):
    /// each becomes a verdict, in the order the steps ran.
    pub fn verify_captures(
        &mut self,
        topology: &Topology,
        captures: &[crate::capture::CaptureStats],
    ) -> io::Result<()> {
        for p in std::mem::take(&mut self.pending) {
            let (ok, summary) = match judge_takeover(&p, topology, captures) {
                Ok(lines) => (true, lines),
                Err(e) => (false, e),
            };
            self.verdicts.push(Verdict {
                id: p.id,
                expect: Expect::TakenOver,
                ok,
                summary,
            });
        }
        Ok(())
    }
}

/// Finds the switch both nodes are on, reads its capture, and checks every connection.
fn judge_takeover(
    p: &PendingTakeover,
    topology: &Topology,
    captures: &[crate::capture::CaptureStats],
) -> Result<String, String> {
    let fault = p
        .fault_ns
        .ok_or_else(|| format!("no fault was applied to {} before this check", p.from))?;
    let on = |node: &str| -> Vec<String> {
        topology
            .node(node)
            .map(|n| {
                n.interfaces
                    .iter()
                    .filter_map(|i| match &i.attach {
                        crate::topology::Attachment::Switch(s) => Some(s.clone()),
                        crate::topology::Attachment::Peer { .. } => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let switch = on(&p.from)
        .into_iter()
        .find(|s| on(&p.to).contains(s))
        .ok_or_else(|| format!("{} and {} share no switch", p.from, p.to))?;
    let cap = captures
        .iter()
        .find(|c| c.file.file_stem().and_then(|s| s.to_str()) == Some(switch.as_str()))
        .ok_or_else(|| format!("no capture of switch {switch}"))?;
    let frames = crate::capture::read(&cap.file).map_err(|e| e.to_string())?;
    if p.clients.is_empty() {
        return Err("the client opened no connection".into());
    }
    let (old, new) = (format!("{switch}:{}", p.from), format!("{switch}:{}", p.to));
    let mut lines = Vec::new();
    for c in &p.clients {
        let s = crate::evidence::served(&frames, p.target, *c, &old, &new, fault)
            .map_err(|e| format!("{c} -> {}: {e}", p.target))?;
        lines.push(format!(
            "{c} -> {}: {} segments from {old} before the fault, {} from {new} after it; {new}'s first sequence number {} continues {old}'s [{}, {}]",
            p.target, s.before, s.after, s.first_after_seq, s.range_lo, s.range_hi
        ));
    }
    Ok(lines.join("; "))
}

struct Exec<'a> {
    cluster: &'a mut Cluster,
    running: HashMap<String, ClientHandle>,
    done: HashMap<String, ClientReport>,
    last_fault: HashMap<String, Fault>,
    /// When the last fault on each node was applied.
    fault_ns: HashMap<String, u64>,
    report: ScenarioReport,
    iteration: u32,
    log: &'a mut dyn FnMut(&str),
}

impl Exec<'_> {
    fn key(&self, id: &str) -> String {
        if self.iteration == 0 {
            id.to_owned()
        } else {
            format!("{id}#{}", self.iteration)
        }
    }

    fn wait(&mut self, id: &str) -> io::Result<ClientReport> {
        if let Some(h) = self.running.remove(id) {
            let rep = h.wait()?;
            self.cluster
                .event("client-done", None, &format!("{id}: {}", rep.summary()));
            (self.log)(&format!("client {id}: {}", rep.summary()));
            let key = self.key(id);
            self.report.clients.insert(key, rep.clone());
            self.done.insert(id.to_owned(), rep);
        }
        self.done
            .get(id)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("client {id:?} was never started")))
    }

    fn steps(&mut self, steps: &[Step]) -> io::Result<()> {
        for s in steps {
            match s {
                Step::Wait(d) => std::thread::sleep(*d),
                Step::Fault(f) => {
                    (self.log)(&format!("fault {} {}", f.kind(), f.node()));
                    self.fault_ns.insert(f.node().to_owned(), crate::now_ns());
                    self.cluster.fault(f)?;
                    self.last_fault.insert(f.node().to_owned(), f.clone());
                }
                Step::Restore(node) => {
                    let f = self
                        .last_fault
                        .remove(node)
                        .and_then(|f| f.restore())
                        .ok_or_else(|| {
                            io::Error::other(format!("restore {node}: no fault to undo"))
                        })?;
                    (self.log)(&format!("restore: {} {}", f.kind(), f.node()));
                    self.cluster.fault(&f)?;
                }
                Step::ClientStart { id, node, spec } => {
                    (self.log)(&format!(
                        "client {id}: {:?} from {node} to {}",
                        spec.workload, spec.target
                    ));
                    self.done.remove(id);
                    let h = self.cluster.start_client(node, spec.clone())?;
                    self.running.insert(id.clone(), h);
                }
                Step::ClientWait(id) => {
                    self.wait(id)?;
                }
                Step::ClientVerify { id, expect } => {
                    let rep = self.wait(id)?;
                    let ok = match expect {
                        // `taken-over` is not a client-verify expectation (the parser refuses
                        // it); were it one, the client would have to be intact too.
                        Expect::Intact | Expect::TakenOver => rep.intact(),
                        Expect::Broken => !rep.intact(),
                    };
                    (self.log)(&format!(
                        "verify {id}: expected {expect:?}: {}",
                        if ok { "ok" } else { "FAILED" }
                    ));
                    let key = self.key(id);
                    self.report.verdicts.push(Verdict {
                        id: key,
                        expect: *expect,
                        ok,
                        summary: rep.summary(),
                    });
                }
                Step::WaitConnect {
                    node,
                    target,
                    timeout,
                } => {
                    let (target, timeout) = (*target, *timeout);
                    let took = self
                        .cluster
                        .in_node(node, move || connect_until(target, timeout))??;
                    (self.log)(&format!(
                        "wait-connect: {node} reached {target} after {:.1} ms",
                        took.as_secs_f64() * 1e3
                    ));
                }
                Step::VerifyTakeover { id, from, to } => {
                    let rep = self.wait(id)?;
                    let clients = rep
                        .connections
                        .iter()
                        .filter_map(|c| c.local.as_deref()?.parse().ok())
                        .collect();
                    (self.log)(&format!(
                        "verify-takeover {id}: {from} -> {to} (judged in the capture at the end)"
                    ));
                    self.report.pending.push(PendingTakeover {
                        id: self.key(id),
                        target: rep.spec.target,
                        clients,
                        from: from.clone(),
                        to: to.clone(),
                        fault_ns: self.fault_ns.get(from).copied(),
                    });
                }
                Step::Repeat { count, steps } => {
                    let outer = self.iteration;
                    for i in 0..*count {
                        self.iteration = outer * count + i;
                        self.steps(steps)?;
                    }
                    self.iteration = outer;
                }
            }
        }
        Ok(())
    }
}

/// Opens TCP connections to `target` until one is accepted (then closes it), for at most
/// `timeout`; returns how long that took. One attempt at a time, each allowed the time left,
/// so that no abandoned SYN of ours is answered later.
fn connect_until(target: SocketAddr, timeout: Duration) -> io::Result<Duration> {
    let t0 = std::time::Instant::now();
    loop {
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("wait-connect: {target} not served within {timeout:?}"),
            ));
        }
        match std::net::TcpStream::connect_timeout(&target, left) {
            Ok(_) => return Ok(t0.elapsed()),
            Err(_) => std::thread::sleep(Duration::from_millis(20).min(left)),
        }
    }
}

/// Runs a scenario on a cluster. `log` receives one line per step, for a human timeline.
/// Clients still running at the end are waited for.
pub fn run(
    cluster: &mut Cluster,
    scenario: &Scenario,
    log: &mut dyn FnMut(&str),
) -> io::Result<ScenarioReport> {
    let mut ex = Exec {
        cluster,
        running: HashMap::new(),
        done: HashMap::new(),
        last_fault: HashMap::new(),
        fault_ns: HashMap::new(),
        report: ScenarioReport::default(),
        iteration: 0,
        log,
    };
    let res = ex.steps(&scenario.steps);
    let ids: Vec<String> = ex.running.keys().cloned().collect();
    for id in ids {
        let _ = ex.wait(&id);
    }
    res.map(|()| ex.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
