//! The expectation language: small, declarative, judged only on what can be observed.
//!
//! Read [`Expect`] and [`Ctx::check`] first. Every expectation is an `[[expect]]` table with a
//! `kind` and a one-line `what`:
//!
//! | kind | meaning |
//! |---|---|
//! | `exists` | at least one packet matches (optionally `after` an event, `within` a time) |
//! | `none` | no packet matches |
//! | `count` | between `min` and `max` packets match |
//! | `order` | the first packet matching `first` comes before the first matching `then` |
//! | `distinct` | the packets that match come from at most `max` (and at least `min`) ports |
//! | `split` | the matching TCP packets, grouped by flow (their destination), each flow's from one port only; the flows spread over `min`..=`max` ports, each with `low_pct`..=`high_pct` percent of them |
//! | `client` | a client's result is `intact` (every byte verified, no reset or EOF) or `broken` |
//! | `continuity` | after the event, the first segment from the service on every client flow continues its sequence space exactly |
//!
//! Packets are matched by [`Match`]: which port and direction, and what the packet is. Events
//! are named `KIND` or `KIND:NODE` (`power-off:a`, `power-off:done:a`) from the harness's event
//! log, or `client-start:ID` and `client-end:ID` (when a client started and finished), on the
//! capture clock. `within` is multiplied by one global slack factor (`HOLDFAST_SLACK`, default 1).

use std::collections::BTreeMap;

use holdfast_harness::client::ClientReport;
use holdfast_harness::cluster::Event;
use serde::Deserialize;

use crate::decode::Pkt;

#[cfg(test)]
mod tests;

mod check;
mod matching;

/// A packet predicate; every field given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The port, `SWITCH:NODE`.
    pub port: Option<String>,
    /// The node whose port it is (any switch).
    pub node: Option<String>,
    /// true: the node sent it; false: the switch delivered it to the node.
    pub sent: Option<bool>,
    /// A control-protocol message of this type (`ANNOUNCE`, `SOLICIT`, ...).
    pub control: Option<String>,
    /// Control-protocol sender node id.
    pub sender: Option<u32>,
    /// Control-protocol body fields that must have these values.
    pub fields: Option<BTreeMap<String, String>>,
    /// Control-protocol header flag LEAVING set (true) or clear (false).
    pub leaving: Option<bool>,
    /// An ARP announcement (gratuitous ARP) for this address.
    pub arp_announce: Option<String>,
    /// An ARP reply for this address.
    pub arp_reply: Option<String>,
    /// The ARP sender MAC is this node's (`a`) or this MAC.
    pub arp_mac: Option<String>,
    /// An unsolicited or solicited neighbour advertisement for this address.
    pub na: Option<String>,
    /// TCP from this address (`ip` or `ip:port`).
    pub tcp_src: Option<String>,
    /// TCP to this address (`ip` or `ip:port`).
    pub tcp_dst: Option<String>,
    /// TCP flags that must all be set: letters S (SYN), A (ACK), F (FIN), R (RST), P (PSH), U
    /// (URG), E (ECE), C (CWR).
    pub tcp_flags: Option<String>,
    /// TCP with payload (true) or without (false).
    pub tcp_data: Option<bool>,
    /// The Ethernet source is this node's MAC.
    pub eth_src: Option<String>,
}

impl std::fmt::Display for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        macro_rules! show {
            ($($field:ident),*) => {
                $(if let Some(v) = &self.$field { parts.push(format!("{} = {:?}", stringify!($field), v)); })*
            };
        }
        show!(
            port,
            node,
            sent,
            control,
            sender,
            fields,
            leaving,
            arp_announce,
            arp_reply,
            arp_mac,
            na,
            tcp_src,
            tcp_dst,
            tcp_flags,
            tcp_data,
            eth_src
        );
        write!(f, "{{ {} }}", parts.join(", "))
    }
}

/// One expectation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
#[allow(clippy::large_enum_variant)] // a handful per case: size does not matter
pub enum Expect {
    /// At least one packet matches.
    Exists {
        /// What it checks, in one line.
        what: String,
        /// The predicate.
        #[serde(rename = "match")]
        m: Match,
        /// Only packets after this event.
        after: Option<String>,
        /// ... and no later than this after it (times the slack).
        within: Option<String>,
        /// Only packets before this event.
        before: Option<String>,
    },
    /// No packet matches.
    None {
        /// What it checks.
        what: String,
        /// The predicate.
        #[serde(rename = "match")]
        m: Match,
        /// Only packets after this event.
        after: Option<String>,
        /// Only packets before this event.
        before: Option<String>,
    },
    /// Between `min` and `max` packets match.
    Count {
        /// What it checks.
        what: String,
        /// The predicate.
        #[serde(rename = "match")]
        m: Match,
        /// Only packets after this event.
        after: Option<String>,
        /// Only packets before this event.
        before: Option<String>,
        /// At least.
        min: Option<usize>,
        /// At most.
        max: Option<usize>,
    },
    /// The first packet matching `first` comes before the first matching `then`.
    Order {
        /// What it checks.
        what: String,
        /// The earlier one.
        first: Match,
        /// The later one.
        then: Match,
        /// Only packets after this event.
        after: Option<String>,
    },
    /// The matching packets come from between `min` and `max` distinct ports.
    Distinct {
        /// What it checks.
        what: String,
        /// The predicate.
        #[serde(rename = "match")]
        m: Match,
        /// Only packets after this event.
        after: Option<String>,
        /// Only packets before this event.
        before: Option<String>,
        /// At least this many ports.
        min: Option<usize>,
        /// At most this many ports.
        max: Option<usize>,
    },
    /// The matching TCP packets, by flow (destination address and port): each flow's come
    /// from exactly one port (one node answers for it), and the flows are spread over between
    /// `min` and `max` ports, each with between `low_pct` and `high_pct` percent of them.
    Split {
        /// What it checks.
        what: String,
        /// The predicate (usually the service's segments).
        #[serde(rename = "match")]
        m: Match,
        /// Only packets after this event.
        after: Option<String>,
        /// Only packets before this event.
        before: Option<String>,
        /// At least this many ports serve flows.
        min: Option<usize>,
        /// At most this many ports serve flows.
        max: Option<usize>,
        /// Each serving port has at least this percentage of the flows.
        low_pct: Option<f64>,
        /// Each serving port has at most this percentage of the flows.
        high_pct: Option<f64>,
    },
    /// A client's result.
    Client {
        /// What it checks.
        what: String,
        /// The client id in the steps.
        id: String,
        /// `intact` or `broken`.
        result: String,
    },
    /// After the event, the service's first segment on each client flow continues its
    /// sequence space exactly.
    Continuity {
        /// What it checks.
        what: String,
        /// The service address and port (`ip:port`).
        service: String,
        /// The event (a fault).
        after: String,
    },
}

impl Expect {
    /// The one-line description.
    pub fn what(&self) -> &str {
        match self {
            Self::Exists { what, .. }
            | Self::None { what, .. }
            | Self::Count { what, .. }
            | Self::Order { what, .. }
            | Self::Distinct { what, .. }
            | Self::Split { what, .. }
            | Self::Client { what, .. }
            | Self::Continuity { what, .. } => what,
        }
    }
}

/// What a run left to judge.
#[derive(Debug)]
pub struct Ctx {
    /// Every packet of the capture.
    pub pkts: Vec<Pkt>,
    /// The harness's events.
    pub events: Vec<Event>,
    /// Client results by id.
    pub clients: BTreeMap<String, ClientReport>,
    /// Node name -> MAC of its first interface.
    pub macs: BTreeMap<String, [u8; 6]>,
    /// Multiplier for `within`.
    pub slack: f64,
}

impl Ctx {}

/// The slack multiplier for `within`, from `HOLDFAST_SLACK` (default 1; CI may raise it).
pub fn slack() -> f64 {
    std::env::var("HOLDFAST_SLACK")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|x: &f64| *x >= 1.0)
        .unwrap_or(1.0)
}
