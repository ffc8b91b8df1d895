//! Conformance cases: one TOML file per claimed behaviour, packetdrill-style.
//!
//! Read [`Case::load`] first. A case opens with one sentence, `# Verify that ...`, lists the
//! claims it covers, names a topology, gives the steps (the harness's scenario language, as
//! `[[step]]` tables) and the expectations over the captured packets and the client results
//! (`[[expect]]`, see [`crate::expect`]). Variants (`[[variant]]`) substitute `${NAME}` in the
//! file's text. Everything is checked at load, before anything runs: the steps by the
//! harness's scenario parser, every name an expectation uses by [`crate::validate`], all
//! against the case's topology. Problems are reported through `holdfast-tomlcheck` as
//! `FILE:LINE: field: what is wrong`, every one of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use holdfast_harness::Topology;
use holdfast_harness::scenario::Scenario;
use holdfast_tomlcheck::{Checker, Problem};
use serde::Deserialize;
use toml::Spanned;

use crate::expect::Expect;

/// The problems of a case file (at least one), each `FILE:LINE: field: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct CaseError {
    /// Every problem found.
    pub problems: Vec<Problem>,
}

impl CaseError {
    fn one(file: &Path, line: usize, field: &str, message: String) -> Self {
        Self {
            problems: vec![Problem {
                file: file.to_owned(),
                line,
                field: field.to_owned(),
                message,
            }],
        }
    }
}

/// One variant of a case: a name and the values it substitutes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// The variant's name (part of the test name and the pcap directory).
    pub name: String,
    /// `${KEY}` -> value.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawCase {
    claims: Spanned<Vec<u32>>,
    topology: Spanned<String>,
    #[serde(default)]
    settle: Option<String>,
    #[serde(default)]
    variant: Vec<Variant>,
    #[serde(default)]
    expect: Vec<Spanned<Expect>>,
    // Checked by the harness (`Scenario::parse_embedded`); read here for the clients' ids.
    #[serde(default)]
    step: Vec<toml::Value>,
}

/// A case, with one variant applied.
#[derive(Debug, Clone)]
pub struct Case {
    /// `area/behaviour`, from the path under `cases/`.
    pub id: String,
    /// The file.
    pub file: PathBuf,
    /// The one-sentence summary (`Verify that ...`).
    pub summary: String,
    /// The claims it covers.
    pub claims: Vec<u32>,
    /// The topology name (`topologies/NAME.toml`).
    pub topology: String,
    /// How long to let the cluster boot before the steps.
    pub settle_ms: u64,
    /// The variant applied.
    pub variant: Variant,
    /// The file's text with the variant applied (for the harness's step parser).
    pub text: String,
    /// The expectations, with their lines.
    pub expects: Vec<(usize, Expect)>,
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// What every variant of one case file shares.
struct Head<'a> {
    file: &'a Path,
    id: &'a str,
    summary: &'a str,
}

impl Case {
    /// Reads a case file and returns one [`Case`] per variant (one if it has none).
    pub fn load(cases_dir: &Path, file: &Path) -> Result<Vec<Self>, CaseError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| CaseError::one(file, 0, "file", e.to_string()))?;
        let err =
            |line: usize, field: &str, message: String| CaseError::one(file, line, field, message);
        let summary = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with("Verify that "))
            .ok_or_else(|| {
                err(
                    1,
                    "summary",
                    "a case opens with one sentence: `# Verify that ...`".into(),
                )
            })?
            .to_owned();
        let id = file
            .strip_prefix(cases_dir)
            .unwrap_or(file)
            .with_extension("")
            .display()
            .to_string();
        // Variants first (they do not use substitution themselves).
        let raw: RawCase = toml::from_str(&text).map_err(|e| {
            let m = e.message().trim().to_owned();
            let field = m.split('`').nth(1).unwrap_or("syntax").to_owned();
            // An unknown field: the line where it is written, not where its table starts.
            let at = e.span().map_or(0, |s| {
                let from = s.start.min(text.len());
                crate::validate::find_key(&text[from..], &field).map_or(from, |o| from + o)
            });
            err(line_of(&text, at), &field, m)
        })?;
        let variants = if raw.variant.is_empty() {
            vec![Variant {
                name: "default".into(),
                vars: BTreeMap::new(),
            }]
        } else {
            raw.variant.clone()
        };
        let head = Head {
            file,
            id: &id,
            summary: &summary,
        };
        variants
            .into_iter()
            .map(|v| Self::load_variant(&head, &text, v))
            .collect()
    }

    /// One variant of a case file: its substitutions made, then every field checked.
    fn load_variant(head: &Head<'_>, text: &str, v: Variant) -> Result<Self, CaseError> {
        let file = head.file;
        let err =
            |line: usize, field: &str, message: String| CaseError::one(file, line, field, message);
        let mut t = text.to_owned();
        for (k, val) in &v.vars {
            t = t.replace(&format!("${{{k}}}"), val);
        }
        let raw: RawCase = toml::from_str(&t).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(&t, s.start));
            err(
                line,
                "syntax",
                format!("variant {}: {}", v.name, e.message().trim()),
            )
        })?;
        if raw.claims.get_ref().is_empty()
            || raw.claims.get_ref().iter().any(|c| !(1..=19).contains(c))
        {
            return Err(err(
                line_of(&t, raw.claims.span().start),
                "claims",
                "list the claims the case covers, each 1 to 19".into(),
            ));
        }
        if raw.expect.is_empty() {
            return Err(err(
                1,
                "expect",
                "a case needs at least one [[expect]]".into(),
            ));
        }
        let settle_ms = match &raw.settle {
            Some(s) => holdfast_harness::scenario::parse_duration(s)
                .ok_or_else(|| err(1, "settle", format!("{s:?} is not a duration")))?
                .as_millis() as u64,
            None => 400,
        };
        let topo_file = crate::run::root()
            .join("topologies")
            .join(format!("{}.toml", raw.topology.get_ref()));
        let topology = Topology::load(&topo_file).map_err(|e| {
            err(
                line_of(&t, raw.topology.span().start),
                "topology",
                format!("topologies/{}.toml: {e}", raw.topology.get_ref()),
            )
        })?;
        let (problems, expects) = Self::check_steps_and_expects(file, &t, &topology, &raw);
        if !problems.is_empty() {
            let mut problems = problems;
            if v.name != "default" {
                for p in &mut problems {
                    p.message = format!("variant {}: {}", v.name, p.message);
                }
            }
            return Err(CaseError { problems });
        }
        Ok(Self {
            id: head.id.to_owned(),
            file: file.to_owned(),
            summary: head.summary.to_owned(),
            claims: raw.claims.into_inner(),
            topology: raw.topology.get_ref().clone(),
            settle_ms,
            variant: v,
            text: t,
            expects,
        })
    }

    /// The steps (as the harness parses them) and the expectations (every name they use must
    /// exist), each problem with its line; and the expectations with their lines.
    fn check_steps_and_expects(
        file: &Path,
        t: &str,
        topology: &Topology,
        raw: &RawCase,
    ) -> (Vec<Problem>, Vec<(usize, Expect)>) {
        let mut problems = Vec::new();
        if let Err(e) = Scenario::parse_embedded(file, t, topology) {
            match e {
                holdfast_harness::topology::TopologyError::Invalid(p) => problems.extend(p),
                other => problems.push(Problem {
                    file: file.to_owned(),
                    line: 0,
                    field: "step".into(),
                    message: other.to_string(),
                }),
            }
        }
        let clients = raw
            .step
            .iter()
            .filter(|s| s.get("do").and_then(|d| d.as_str()) == Some("client-start"))
            .filter_map(|s| s.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .collect();
        let spanned: Vec<(std::ops::Range<usize>, Expect)> = raw
            .expect
            .iter()
            .map(|e| (e.span(), e.get_ref().clone()))
            .collect();
        let mut checker = Checker::new(file, t);
        let names = crate::validate::Names { topology, clients };
        crate::validate::check(&mut checker, &spanned, &names);
        problems.extend(checker.problems);
        let expects = spanned
            .into_iter()
            .map(|(span, e)| (line_of(t, span.start), e))
            .collect();
        (problems, expects)
    }

    /// The test name: `area/behaviour::variant`.
    pub fn name(&self) -> String {
        format!("{}::{}", self.id, self.variant.name)
    }
}

/// Every case file under `dir`, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    out.push(p);
                }
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, &mut v);
    v.sort();
    v
}
