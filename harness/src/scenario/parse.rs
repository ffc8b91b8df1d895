//! Scenario files to [`Step`]s: every problem reported as `FILE:LINE: field: what is wrong`.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Expect, Scenario, Step};
use crate::client::ClientSpec;
use crate::cluster::Fault;
use crate::topology::{Problem, TemplateEnv, Topology, TopologyError};

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
    impair: Option<String>,
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

    /// The `id` of a client started by an earlier step.
    fn client_id(&mut self, v: &Option<Spanned<String>>, at: &Spanned<String>) -> Option<String> {
        let id = self.need(v, at, "id")?;
        if !self.clients.contains(id.get_ref()) {
            let (span, msg) = (
                id.span(),
                format!("no earlier client-start with id {:?}", id.get_ref()),
            );
            self.err(span, "id", msg);
            return None;
        }
        Some(id.get_ref().clone())
    }

    /// `text` with the topology's placeholders filled in, as seen from `node`.
    fn expand(&self, node: &str, text: &str) -> Result<String, String> {
        let env = TemplateEnv {
            topology: self.topology,
            node,
            run: "run",
            run_dir: Path::new("/run"),
            harness: Path::new("/run"),
        };
        crate::topology::expand(text, &env)
    }

    /// A comma-separated list of nodes in field `field`, each checked.
    fn node_list(
        &mut self,
        v: &Option<Spanned<String>>,
        at: &Spanned<String>,
        field: &str,
    ) -> Option<String> {
        let n = self.need(v, at, field)?.clone();
        let unknown: Vec<&str> = n
            .get_ref()
            .split(',')
            .map(str::trim)
            .filter(|x| self.topology.node(x).is_none())
            .collect();
        if !unknown.is_empty() {
            let msg = format!("unknown node(s) {unknown:?} in {:?}", n.get_ref());
            self.err(n.span(), field, msg);
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
                Some(Step::Wait(self.duration(d, "for", "\"300ms\", \"2s\"")?))
            }
            "fault" => self.fault_step(r),
            "restore" => Some(Step::Restore(self.node(&r.node, at)?)),
            "client-start" => self.client_start_step(r),
            "client-wait" => Some(Step::ClientWait(self.client_id(&r.id, at)?)),
            "client-verify" => self.client_verify_step(r),
            "wait-connect" => self.wait_connect_step(r),
            "verify-takeover" => {
                let id = self.client_id(&r.id, at)?;
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

    /// A duration field (`field`), or an error at its span naming the examples.
    fn duration(&mut self, d: &Spanned<String>, field: &str, examples: &str) -> Option<Duration> {
        let x = parse_duration(d.get_ref());
        if x.is_none() {
            let msg = format!("{:?} is not a duration ({examples})", d.get_ref());
            self.err(d.span(), field, msg);
        }
        x
    }

    /// `fault`: one node and its argument, or (`partition...`) two sides, `from` and `to`,
    /// each a comma-separated list of nodes.
    fn fault_step(&mut self, r: &RawStep) -> Option<Step> {
        let at = &r.action;
        let kind = self.need(&r.kind, at, "kind")?.clone();
        let parsed = if kind.get_ref().starts_with("partition") {
            let from = self.node_list(&r.from, at, "from")?;
            let to = self.node_list(&r.to, at, "to")?;
            Fault::parse(kind.get_ref(), &from, Some(&to))
        } else {
            let node = self.node(&r.node, at)?;
            let arg = r
                .process
                .clone()
                .or_else(|| r.pct.map(|p| p.to_string()))
                .or_else(|| r.impair.clone());
            Fault::parse(kind.get_ref(), &node, arg.as_deref())
        };
        match parsed {
            Ok(f) => Some(Step::Fault(f)),
            Err(e) => {
                self.err(kind.span(), "kind", e);
                None
            }
        }
    }

    /// `client-start`: the client's table, its strings expanded for the node it runs on.
    fn client_start_step(&mut self, r: &RawStep) -> Option<Step> {
        let at = &r.action;
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
        let mut t = table.get_ref().clone();
        for (_, v) in t.iter_mut() {
            if let toml::Value::String(s) = v {
                match self.expand(&node, s) {
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

    /// `client-verify`: the client and whether it must be intact (the default) or broken.
    fn client_verify_step(&mut self, r: &RawStep) -> Option<Step> {
        let id = self.client_id(&r.id, &r.action)?;
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

    /// `wait-connect`: a node, the address and port it connects to, and a timeout (5 s).
    fn wait_connect_step(&mut self, r: &RawStep) -> Option<Step> {
        let at = &r.action;
        let node = self.node(&r.node, at)?;
        let t = self.need(&r.target, at, "target")?;
        let expanded = self.expand(&node, t.get_ref());
        let Some(target) = expanded.ok().and_then(|x| x.parse::<SocketAddr>().ok()) else {
            let msg = format!("{:?} is not an address and port", t.get_ref());
            self.err(t.span(), "target", msg);
            return None;
        };
        let timeout = match &r.timeout {
            None => Duration::from_secs(5),
            Some(d) => self.duration(d, "timeout", "\"5s\"")?,
        };
        Some(Step::WaitConnect {
            node,
            target,
            timeout,
        })
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
