//! Checking a case file before anything runs: every name an expectation uses must exist, so
//! that a typo is an error at load, never a predicate that silently holds (`kind = "none"`
//! with a misspelt flag letter would otherwise pass forever).
//!
//! Read [`check`] first. Problems go through `holdfast-tomlcheck`, as `FILE:LINE: field: what
//! is wrong`, the line being where the field is written in the expectation.

use std::collections::BTreeSet;
use std::ops::Range;

use holdfast_harness::Topology;
use holdfast_tomlcheck::Checker;

use crate::decode::{TYPES, field_names};
use crate::expect::{Expect, Match};

/// TCP flag letters an expectation may name.
pub const TCP_FLAGS: &str = "FSRPAUEC";

/// Harness event kinds (a fault's kind may carry `:done`; `power-off` also `:links-down`).
const FAULTS: [&str; 12] = [
    "power-off",
    "power-on",
    "isolate",
    "heal",
    "freeze",
    "thaw",
    "crash",
    "loss",
    "partition",
    "partition-one-way",
    "heal-partition",
    "impair",
];
const PLAIN_EVENTS: [&str; 4] = ["up", "steps", "down", "client-done"];

/// What a case's names are checked against.
pub struct Names<'a> {
    /// The case's topology.
    pub topology: &'a Topology,
    /// The ids of its clients (`client-start` steps).
    pub clients: BTreeSet<String>,
}

/// Checks every expectation of a case (`expects`: each with the byte span of its table in
/// `text`).
pub fn check(checker: &mut Checker<'_>, expects: &[(Range<usize>, Expect)], names: &Names<'_>) {
    for (i, (span, e)) in expects.iter().enumerate() {
        let mut v = V {
            c: checker,
            span: span.clone(),
            at: format!("expect[{i}]"),
            names,
        };
        v.expect(e);
    }
}

struct V<'c, 'a, 'n> {
    c: &'c mut Checker<'a>,
    span: Range<usize>,
    at: String,
    names: &'n Names<'n>,
}

impl V<'_, '_, '_> {
    /// Reports a problem with `key`, at the line where `key` is written in this expectation.
    fn err(&mut self, key: &str, message: String) {
        let text = self.c.text;
        let start = self.span.start.min(text.len());
        // The table runs from its header to the next header (toml's span may cover the
        // header only).
        let end = text[start..]
            .match_indices("\n[")
            .map(|(i, _)| start + i)
            .find(|i| *i > start + 1)
            .unwrap_or(text.len())
            .max(self.span.end.min(text.len()));
        let at = find_key(&text[start..end], key).map_or(start, |o| start + o);
        let field = format!("{}.{key}", self.at);
        self.c.err(&(at..at), field, message);
    }

    fn expect(&mut self, e: &Expect) {
        match e {
            Expect::Exists {
                m,
                after,
                within,
                before,
                ..
            } => {
                self.matcher("match", m);
                self.event("after", after.as_deref());
                self.event("before", before.as_deref());
                if let Some(w) = within
                    && holdfast_harness::scenario::parse_duration(w).is_none()
                {
                    self.err(
                        "within",
                        format!("{w:?} is not a duration (like 500ms or 2s)"),
                    );
                }
            }
            Expect::None {
                m, after, before, ..
            }
            | Expect::Count {
                m, after, before, ..
            }
            | Expect::Distinct {
                m, after, before, ..
            }
            | Expect::Split {
                m, after, before, ..
            } => {
                self.matcher("match", m);
                self.event("after", after.as_deref());
                self.event("before", before.as_deref());
            }
            Expect::Order {
                first, then, after, ..
            } => {
                self.matcher("first", first);
                self.matcher("then", then);
                self.event("after", after.as_deref());
            }
            Expect::Client { id, result, .. } => {
                if !self.names.clients.contains(id) {
                    self.err(
                        "id",
                        format!(
                            "no client-start step has the id {id:?}{}",
                            known(&self.names.clients)
                        ),
                    );
                }
                if !["intact", "broken", "not-hung"].contains(&result.as_str()) {
                    self.err(
                        "result",
                        format!("{result:?}: `intact`, `broken` or `not-hung`"),
                    );
                }
            }
            Expect::Continuity { service, after, .. } => {
                if service.parse::<std::net::SocketAddr>().is_err() {
                    self.err("service", format!("{service:?} is not ADDRESS:PORT"));
                }
                self.event("after", Some(after));
            }
        }
    }

    fn node_known(&self, n: &str) -> bool {
        self.names.topology.node(n).is_some()
    }

    fn nodes(&self) -> String {
        let v: Vec<&str> = self
            .names
            .topology
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        format!(" (nodes: {})", v.join(", "))
    }

    fn matcher(&mut self, _what: &str, m: &Match) {
        if let Some(p) = &m.port {
            let ok = p.split_once(':').is_some_and(|(sw, n)| {
                self.names.topology.switches.iter().any(|s| s.name == sw) && self.node_known(n)
            });
            if !ok {
                let ports: Vec<String> = self
                    .names
                    .topology
                    .nodes
                    .iter()
                    .flat_map(|n| {
                        n.interfaces.iter().filter_map(move |i| match &i.attach {
                            holdfast_harness::topology::Attachment::Switch(sw) => {
                                Some(format!("{sw}:{}", n.name))
                            }
                            _ => None,
                        })
                    })
                    .collect();
                self.err(
                    "port",
                    format!("no port {p:?} (ports: {})", ports.join(", ")),
                );
            }
        }
        if let Some(n) = &m.node
            && !self.node_known(n)
        {
            let msg = format!("no node {n:?}{}", self.nodes());
            self.err("node", msg);
        }
        if let Some(k) = &m.control
            && !TYPES.contains(&k.as_str())
        {
            self.err(
                "control",
                format!(
                    "no control message {k:?} (PROTOCOL.md: {})",
                    TYPES.join(", ")
                ),
            );
        }
        if let Some(f) = &m.fields {
            let kind = m.control.as_deref().unwrap_or("");
            let allowed = field_names(kind);
            if m.control.is_none() {
                self.err(
                    "fields",
                    "`fields` needs `control` (the message whose body it names)".into(),
                );
            }
            for k in f.keys() {
                if !allowed.contains(&k.as_str()) && m.control.is_some() {
                    self.err(
                        "fields",
                        format!("{kind} has no field {k:?} (it has: {})", allowed.join(", ")),
                    );
                }
            }
        }
        for (key, v) in [
            ("arp_announce", &m.arp_announce),
            ("arp_reply", &m.arp_reply),
            ("na", &m.na),
        ] {
            if let Some(ip) = v
                && ip.parse::<std::net::IpAddr>().is_err()
            {
                self.err(key, format!("{ip:?} is not an IP address"));
            }
        }
        for (key, v) in [("tcp_src", &m.tcp_src), ("tcp_dst", &m.tcp_dst)] {
            if let Some(s) = v
                && s.parse::<std::net::SocketAddr>().is_err()
                && s.parse::<std::net::IpAddr>().is_err()
            {
                self.err(key, format!("{s:?} is not ADDRESS or ADDRESS:PORT"));
            }
        }
        for (key, v) in [("arp_mac", &m.arp_mac), ("eth_src", &m.eth_src)] {
            if let Some(x) = v
                && !self.node_known(x)
                && !is_mac(x)
            {
                let msg = format!("{x:?} is neither a node{} nor a MAC", self.nodes());
                self.err(key, msg);
            }
        }
        if let Some(fl) = &m.tcp_flags {
            if fl.is_empty() {
                self.err("tcp_flags", "empty: name at least one flag".into());
            }
            for c in fl.chars().filter(|c| !TCP_FLAGS.contains(*c)) {
                self.err(
                    "tcp_flags",
                    format!("{c:?} is not a TCP flag letter (F S R P A U E C)"),
                );
            }
        }
    }

    /// `KIND`, `KIND:NODE` (a harness event), `client-start:ID` or `client-end:ID`.
    fn event(&mut self, key: &str, spec: Option<&str>) {
        let Some(spec) = spec else {
            return;
        };
        if let Some(id) = spec.strip_prefix("client-end:") {
            if !self.names.clients.contains(id) {
                let msg = format!(
                    "no client-start step has the id {id:?}{}",
                    known(&self.names.clients)
                );
                self.err(key, msg);
            }
            return;
        }
        if let Some(x) = spec.strip_prefix("client-start:")
            && (self.names.clients.contains(x) || self.node_known(x))
        {
            return;
        }
        let kind_ok = |k: &str| {
            PLAIN_EVENTS.contains(&k)
                || k == "client-start"
                || FAULTS.iter().any(|f| {
                    k == *f
                        || k.strip_prefix(f) == Some(":done")
                        || (*f == "power-off" && k == "power-off:links-down")
                })
        };
        if kind_ok(spec) {
            return;
        }
        match spec.rsplit_once(':') {
            Some((kind, node)) if kind_ok(kind) && self.node_known(node) => {}
            Some((kind, node)) if kind_ok(kind) => {
                let msg = format!("no node {node:?}{}", self.nodes());
                self.err(key, msg);
            }
            _ => self.err(
                key,
                format!(
                    "{spec:?} is no event: KIND or KIND:NODE with KIND one of {}, {} (each also KIND:done), or client-start:ID, client-end:ID",
                    PLAIN_EVENTS.join(", "),
                    FAULTS.join(", ")
                ),
            ),
        }
    }
}

fn known(ids: &BTreeSet<String>) -> String {
    if ids.is_empty() {
        " (the case starts no client)".into()
    } else {
        let v: Vec<&str> = ids.iter().map(String::as_str).collect();
        format!(" (ids: {})", v.join(", "))
    }
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok())
}

/// Where `key = ` (or `key=`) is written in `body`, as a whole word.
pub fn find_key(body: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = body[from..].find(key) {
        let at = from + i;
        let before = body[..at].chars().next_back();
        let after = body[at + key.len()..].trim_start();
        let word = before.is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if word && after.starts_with('=') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}
