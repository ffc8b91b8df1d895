//! Conformance cases: one TOML file per claimed behaviour, packetdrill-style.
//!
//! Read [`Case::load`] first. A case opens with one sentence, `# Verify that ...`, lists the
//! claims it covers, names a topology, gives the steps (the harness's scenario language, as
//! `[[step]]` tables) and the expectations over the captured packets and the client results
//! (`[[expect]]`, see [`crate::expect`]). Variants (`[[variant]]`) substitute `${NAME}` in the
//! file's text. Problems are reported as `FILE:LINE: field: what is wrong`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::expect::Expect;

/// A problem in a case file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct CaseError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// The field.
    pub field: String,
    /// What is wrong.
    pub message: String,
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
    // The steps are parsed by the harness (`Scenario::parse_embedded`).
    #[serde(default)]
    #[allow(dead_code)]
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

impl Case {
    /// Reads a case file and returns one [`Case`] per variant (one if it has none).
    pub fn load(cases_dir: &Path, file: &Path) -> Result<Vec<Self>, CaseError> {
        let text = std::fs::read_to_string(file).map_err(|e| CaseError {
            file: file.to_owned(),
            line: 0,
            field: "file".into(),
            message: e.to_string(),
        })?;
        let err = |line: usize, field: &str, message: String| CaseError {
            file: file.to_owned(),
            line,
            field: field.to_owned(),
            message,
        };
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
            let line = e.span().map_or(0, |s| line_of(&text, s.start));
            let m = e.message().trim().to_owned();
            let field = m.split('`').nth(1).unwrap_or("syntax").to_owned();
            err(line, &field, m)
        })?;
        let variants = if raw.variant.is_empty() {
            vec![Variant {
                name: "default".into(),
                vars: BTreeMap::new(),
            }]
        } else {
            raw.variant.clone()
        };
        let mut out = Vec::new();
        for v in variants {
            let mut t = text.clone();
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
            let expects = raw
                .expect
                .into_iter()
                .map(|e| (line_of(&t, e.span().start), e.into_inner()))
                .collect();
            out.push(Self {
                id: id.clone(),
                file: file.to_owned(),
                summary: summary.clone(),
                claims: raw.claims.into_inner(),
                topology: raw.topology.get_ref().clone(),
                settle_ms,
                variant: v,
                text: t,
                expects,
            });
        }
        Ok(out)
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
