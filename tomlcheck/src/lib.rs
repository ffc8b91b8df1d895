//! Problems in Holdfast's TOML files, located for the reader as `FILE:LINE: field: what is
//! wrong`: what `holdfast-harness check` (topologies) and `holdfastd check` (cluster
//! configurations) print.
//!
//! Read [`Checker`] first: a validator walks the parsed file and reports each problem with the
//! byte span `toml::Spanned` gave the value; the checker turns spans into lines.
#![warn(missing_docs)]

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in a file, located at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The field, as a path such as `node[a].interface[eth0].switch`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.field,
            self.message
        )
    }
}

/// Collects the problems of one file's text.
#[derive(Debug)]
pub struct Checker<'a> {
    /// The file, for the messages.
    pub file: PathBuf,
    /// Its text, to turn byte spans into lines.
    pub text: &'a str,
    /// The problems so far.
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker for `text`, read from `file`.
    pub fn new(file: impl Into<PathBuf>, text: &'a str) -> Self {
        Self {
            file: file.into(),
            text,
            problems: Vec::new(),
        }
    }

    /// The 1-based line a byte span starts on.
    pub fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    /// Reports a problem with the value at `span`.
    pub fn err(
        &mut self,
        span: &Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = self.line(span);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    /// Reports a TOML or serde error (syntax, unknown or missing field, wrong type); the field
    /// is the one the error names, else the key on the error's line, else `syntax`.
    pub fn serde_error(&mut self, e: &toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        let line = self.line(&span);
        let msg = e.message().trim().to_owned();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("unknown field") || msg.starts_with("missing field"))
            .map(str::to_owned)
            .or_else(|| {
                let l = self.text.lines().nth(line - 1)?;
                let (k, _) = l.split_once('=')?;
                Some(k.trim().to_owned())
            })
            .unwrap_or_else(|| "syntax".into());
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            field,
            message: msg,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_become_lines_and_serde_errors_name_their_key() {
        let text = "a = 1\nb = 2\n";
        let mut c = Checker::new("f.toml", text);
        c.err(&(6..7), "b", "too big");
        assert_eq!(c.problems[0].to_string(), "f.toml:2: b: too big");
        let bad = "a = 1\nb = = 2\n";
        let e = toml::from_str::<toml::Table>(bad).unwrap_err();
        let mut c = Checker::new("g.toml", bad);
        c.serde_error(&e);
        assert_eq!((c.problems[0].line, c.problems[0].field.as_str()), (2, "b"));
    }
}
