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
use std::net::IpAddr;

use holdfast_harness::client::ClientReport;
use holdfast_harness::cluster::Event;
use serde::Deserialize;

use crate::decode::Pkt;

#[cfg(test)]
mod tests;

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

fn parse_sock(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    s.parse::<IpAddr>().ok().map(|ip| (ip, None))
}

impl Ctx {
    fn mac_of(&self, s: &str) -> Option<[u8; 6]> {
        self.macs.get(s).copied().or_else(|| {
            let v: Vec<u8> = s
                .split(':')
                .filter_map(|p| u8::from_str_radix(p, 16).ok())
                .collect();
            v.try_into().ok()
        })
    }

    /// How many of the predicate's fields hold (for showing the nearest packets), and whether
    /// all do.
    fn score(&self, m: &Match, p: &Pkt) -> (usize, bool) {
        let mut tests: Vec<bool> = Vec::new();
        if let Some(port) = &m.port {
            tests.push(&p.iface == port);
        }
        if let Some(n) = &m.node {
            tests.push(p.iface.rsplit(':').next() == Some(n.as_str()));
        }
        if let Some(s) = m.sent {
            tests.push(p.sent == s);
        }
        if let Some(k) = &m.control {
            tests.push(p.control.as_ref().is_some_and(|c| &c.kind == k));
        }
        if let Some(id) = m.sender {
            tests.push(p.control.as_ref().is_some_and(|c| c.sender == id));
        }
        if let Some(f) = &m.fields {
            tests.push(
                p.control
                    .as_ref()
                    .is_some_and(|c| f.iter().all(|(k, v)| c.fields.get(k) == Some(v))),
            );
        }
        if let Some(l) = m.leaving {
            tests.push(p.control.as_ref().is_some_and(|c| (c.flags & 2 != 0) == l));
        }
        if let Some(ip) = &m.arp_announce {
            tests.push(
                p.arp
                    .as_ref()
                    .is_some_and(|a| a.announcement() && a.spa.to_string() == *ip),
            );
        }
        if let Some(ip) = &m.arp_reply {
            tests.push(
                p.arp
                    .as_ref()
                    .is_some_and(|a| a.op == 2 && a.spa.to_string() == *ip),
            );
        }
        if let Some(x) = &m.arp_mac {
            tests.push(
                p.arp
                    .as_ref()
                    .is_some_and(|a| Some(a.sha) == self.mac_of(x)),
            );
        }
        if let Some(ip) = &m.na {
            tests.push(p.na_target.is_some_and(|t| t.to_string() == *ip));
        }
        if let Some(s) = &m.tcp_src {
            let want = parse_sock(s);
            tests.push(p.tcp.as_ref().zip(p.ip).is_some_and(|(t, (src, _))| {
                want.is_some_and(|(ip, port)| ip == src && port.is_none_or(|x| x == t.sport))
            }));
        }
        if let Some(s) = &m.tcp_dst {
            let want = parse_sock(s);
            tests.push(p.tcp.as_ref().zip(p.ip).is_some_and(|(t, (_, dst))| {
                want.is_some_and(|(ip, port)| ip == dst && port.is_none_or(|x| x == t.dport))
            }));
        }
        if let Some(fl) = &m.tcp_flags {
            // Case files are checked at load (`validate`); should an unknown letter come
            // through anyway, nothing matches it, and an empty set matches nothing either.
            let need: Option<u8> = fl.chars().try_fold(0u8, |acc, c| {
                let bit = match c {
                    'F' => 0x01,
                    'S' => 0x02,
                    'R' => 0x04,
                    'P' => 0x08,
                    'A' => 0x10,
                    'U' => 0x20,
                    'E' => 0x40,
                    'C' => 0x80,
                    _ => return None,
                };
                Some(acc | bit)
            });
            tests.push(match need {
                Some(n) if n != 0 => p.tcp.as_ref().is_some_and(|t| t.flags & n == n),
                _ => false,
            });
        }
        if let Some(d) = m.tcp_data {
            tests.push(p.tcp.as_ref().is_some_and(|t| (t.len > 0) == d));
        }
        if let Some(x) = &m.eth_src {
            tests.push(Some(p.src_mac) == self.mac_of(x));
        }
        (
            tests.iter().filter(|t| **t).count(),
            tests.iter().all(|t| *t),
        )
    }

    fn matches(&self, m: &Match, p: &Pkt) -> bool {
        self.score(m, p).1
    }

    /// The time of an event `KIND` or `KIND:NODE`, or `client-start:ID` / `client-end:ID` (when a client started / its last
    /// connection finished).
    pub fn event(&self, spec: &str) -> Result<u64, String> {
        // `client-start:ID` names a client by its id (else the event `client-start` of a node).
        if let Some(c) = spec
            .strip_prefix("client-start:")
            .and_then(|id| self.clients.get(id))
        {
            return Ok(c.started_ns);
        }
        if let Some(id) = spec.strip_prefix("client-end:") {
            return self
                .clients
                .get(id)
                .map(|c| c.finished_ns)
                .ok_or_else(|| format!("no client {id:?} ran"));
        }
        // `KIND` alone (kinds may hold ':', as `power-off:done`), else `KIND:NODE`.
        let find = |kind: &str, node: Option<&str>| {
            self.events
                .iter()
                .find(|e| e.kind == kind && node.is_none_or(|n| e.node.as_deref() == Some(n)))
                .map(|e| e.t_ns)
        };
        find(spec, None)
            .or_else(|| {
                spec.rsplit_once(':')
                    .and_then(|(kind, node)| find(kind, Some(node)))
            })
            .ok_or_else(|| format!("no event {spec:?} in the run"))
    }

    fn window(
        &self,
        after: &Option<String>,
        within: &Option<String>,
        before: &Option<String>,
    ) -> Result<(u64, u64), String> {
        let lo = after
            .as_deref()
            .map(|a| self.event(a))
            .transpose()?
            .unwrap_or(0);
        let mut hi = before
            .as_deref()
            .map(|b| self.event(b))
            .transpose()?
            .unwrap_or(u64::MAX);
        if let Some(w) = within {
            let d = holdfast_harness::scenario::parse_duration(w)
                .ok_or_else(|| format!("{w:?} is not a duration"))?;
            hi = hi.min(lo + (d.as_nanos() as f64 * self.slack) as u64);
        }
        Ok((lo, hi))
    }

    fn t0(&self) -> u64 {
        self.events.first().map_or(0, |e| e.t_ns)
    }

    /// The packets that best match a predicate (for a failure message).
    fn nearest(&self, m: &Match, lo: u64, hi: u64) -> String {
        let mut scored: Vec<(usize, &Pkt)> = self
            .pkts
            .iter()
            .map(|p| (self.score(m, p).0, p))
            .filter(|(s, _)| *s > 0)
            .collect();
        scored.sort_by_key(|(s, p)| {
            let dist = if p.t_ns < lo {
                lo - p.t_ns
            } else {
                p.t_ns.saturating_sub(hi)
            };
            (std::cmp::Reverse(*s), dist)
        });
        let t0 = self.t0();
        let lines: Vec<String> = scored
            .iter()
            .take(6)
            .map(|(_, p)| format!("    {}", p.line(t0)))
            .collect();
        if lines.is_empty() {
            "    (no packet matches any part of it)".into()
        } else {
            lines.join("\n")
        }
    }

    fn in_window<'a>(
        &'a self,
        m: &'a Match,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = &'a Pkt> + 'a {
        self.pkts
            .iter()
            .filter(move |p| p.t_ns >= lo && p.t_ns <= hi && self.matches(m, p))
    }

    /// Judges one expectation.
    pub fn check(&self, e: &Expect) -> Result<(), String> {
        let t0 = self.t0();
        match e {
            Expect::Exists {
                m,
                after,
                within,
                before,
                ..
            } => {
                let (lo, hi) = self.window(after, within, before)?;
                match self.in_window(m, lo, hi).next() {
                    Some(_) => Ok(()),
                    None => Err(format!(
                        "no packet matched {m} between {:.4}s and {}; nearest:\n{}",
                        lo.saturating_sub(t0) as f64 / 1e9,
                        if hi == u64::MAX {
                            "the end".into()
                        } else {
                            format!("{:.4}s", hi.saturating_sub(t0) as f64 / 1e9)
                        },
                        self.nearest(m, lo, hi)
                    )),
                }
            }
            Expect::None {
                m, after, before, ..
            } => {
                let (lo, hi) = self.window(after, &None, before)?;
                let bad: Vec<String> = self
                    .in_window(m, lo, hi)
                    .take(6)
                    .map(|p| format!("    {}", p.line(t0)))
                    .collect();
                if bad.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} packet(s) matched {m}, e.g.:\n{}",
                        self.in_window(m, lo, hi).count(),
                        bad.join("\n")
                    ))
                }
            }
            Expect::Count {
                m,
                after,
                before,
                min,
                max,
                ..
            } => {
                let (lo, hi) = self.window(after, &None, before)?;
                let n = self.in_window(m, lo, hi).count();
                if min.is_some_and(|x| n < x) || max.is_some_and(|x| n > x) {
                    Err(format!(
                        "{n} packets matched {m}, wanted {min:?}..={max:?}; nearest:\n{}",
                        self.nearest(m, lo, hi)
                    ))
                } else {
                    Ok(())
                }
            }
            Expect::Order {
                first, then, after, ..
            } => {
                let (lo, hi) = self.window(after, &None, &None)?;
                let a = self.in_window(first, lo, hi).next();
                let b = self.in_window(then, lo, hi).next();
                match (a, b) {
                    (Some(a), Some(b)) if a.index < b.index => Ok(()),
                    (Some(a), Some(b)) => Err(format!(
                        "wrong order:\n    then:  {}\n    first: {}",
                        b.line(t0),
                        a.line(t0)
                    )),
                    (None, _) => Err(format!(
                        "nothing matched `first` {first}; nearest:\n{}",
                        self.nearest(first, lo, hi)
                    )),
                    (_, None) => Err(format!(
                        "nothing matched `then` {then}; nearest:\n{}",
                        self.nearest(then, lo, hi)
                    )),
                }
            }
            Expect::Distinct {
                m,
                after,
                before,
                min,
                max,
                ..
            } => {
                let (lo, hi) = self.window(after, &None, before)?;
                let mut ports: Vec<&str> = self
                    .in_window(m, lo, hi)
                    .map(|p| p.iface.as_str())
                    .collect();
                ports.sort();
                ports.dedup();
                let n = ports.len();
                if min.is_some_and(|x| n < x) || max.is_some_and(|x| n > x) {
                    Err(format!(
                        "{n} ports sent packets matching {m} ({ports:?}), wanted {min:?}..={max:?}"
                    ))
                } else {
                    Ok(())
                }
            }
            Expect::Split {
                m,
                after,
                before,
                min,
                max,
                low_pct,
                high_pct,
                ..
            } => {
                let (lo, hi) = self.window(after, &None, before)?;
                let mut flows: BTreeMap<(IpAddr, u16), Vec<&str>> = BTreeMap::new();
                for p in self.in_window(m, lo, hi) {
                    if let (Some(t), Some((_, dst))) = (&p.tcp, p.ip) {
                        let ports = flows.entry((dst, t.dport)).or_default();
                        if !ports.contains(&p.iface.as_str()) {
                            ports.push(p.iface.as_str());
                        }
                    }
                }
                if flows.is_empty() {
                    return Err(format!("no flow has a packet matching {m}"));
                }
                let shared: Vec<String> = flows
                    .iter()
                    .filter(|(_, ports)| ports.len() > 1)
                    .map(|((ip, port), ports)| format!("{ip}:{port} from {ports:?}"))
                    .collect();
                if let Some(first) = shared.first() {
                    return Err(format!(
                        "{} flows answered from more than one port, first {first}",
                        shared.len()
                    ));
                }
                let mut per_port: BTreeMap<&str, usize> = BTreeMap::new();
                for ports in flows.values() {
                    *per_port.entry(ports[0]).or_default() += 1;
                }
                let n = per_port.len();
                let total = flows.len() as f64;
                let shares: Vec<String> =
                    per_port.iter().map(|(p, k)| format!("{p} {k}")).collect();
                if min.is_some_and(|x| n < x) || max.is_some_and(|x| n > x) {
                    return Err(format!(
                        "{} flows served from {n} ports ({}), wanted {min:?}..={max:?}",
                        flows.len(),
                        shares.join(", ")
                    ));
                }
                let off = per_port.values().any(|k| {
                    let pct = *k as f64 * 100.0 / total;
                    low_pct.is_some_and(|x| pct < x) || high_pct.is_some_and(|x| pct > x)
                });
                if off {
                    return Err(format!(
                        "{} flows split {} , wanted each port within {low_pct:?}..={high_pct:?} percent",
                        flows.len(),
                        shares.join(", ")
                    ));
                }
                Ok(())
            }
            Expect::Client { id, result, .. } => {
                let rep = self
                    .clients
                    .get(id)
                    .ok_or_else(|| format!("no client {id:?} ran"))?;
                let ok = match result.as_str() {
                    "intact" => rep.intact(),
                    "broken" => !rep.intact(),
                    // Intact, or ended by the server (a reset or an EOF); never given up on
                    // because nothing came (a hung connection).
                    "not-hung" => rep.connections.iter().all(|c| {
                        let reset = c.resets > 0 || c.errors.iter().any(|e| e.contains("reset"));
                        (c.intact() || reset || c.eofs > 0)
                            && !c.errors.iter().any(|e| e.contains("no progress"))
                    }),
                    other => {
                        return Err(format!("result {other:?}: use intact, broken or not-hung"));
                    }
                };
                if ok {
                    Ok(())
                } else {
                    Err(format!("client {id}: {}", rep.summary()))
                }
            }
            Expect::Continuity { service, after, .. } => self.continuity(service, after),
        }
    }

    fn continuity(&self, service: &str, after: &str) -> Result<(), String> {
        let t0 = self.t0();
        let (sip, sport) =
            parse_sock(service).ok_or_else(|| format!("{service:?} is not ip:port"))?;
        let sport = sport.ok_or("continuity needs a port")?;
        let at = self.event(after)?;
        let seg = |p: &Pkt| p.tcp.as_ref().zip(p.ip).map(|(t, ip)| (t.clone(), ip));
        let after_pos = |a: u32, b: u32| (a.wrapping_sub(b) as i32) > 0;
        // Client flows of the service that carried data before the event.
        let mut flows: BTreeMap<(IpAddr, u16), (u32, u32, u32)> = BTreeMap::new();
        for p in self.pkts.iter().filter(|p| p.sent && p.t_ns < at) {
            let Some((t, (src, dst))) = seg(p) else {
                continue;
            };
            if src == sip && t.sport == sport {
                // (server next seq, server max ack, client max ack)
                let e = flows.entry((dst, t.dport)).or_insert((t.seq, t.ack, t.seq));
                let end = t.seq.wrapping_add(t.len as u32);
                if after_pos(end, e.0) {
                    e.0 = end;
                }
                if after_pos(t.ack, e.1) {
                    e.1 = t.ack;
                }
            }
        }
        for p in self.pkts.iter().filter(|p| p.sent && p.t_ns < at) {
            let Some((t, (src, dst))) = seg(p) else {
                continue;
            };
            if dst == sip
                && t.dport == sport
                && let Some(e) = flows.get_mut(&(src, t.sport))
                && t.flags & 0x10 != 0
                && after_pos(t.ack, e.2)
            {
                e.2 = t.ack;
            }
        }
        if flows.is_empty() {
            return Err(format!("no flow of {service} carried data before {after}"));
        }
        for ((cip, cport), (nxt, ack, client_ack)) in &flows {
            let first = self
                .pkts
                .iter()
                .filter(|p| p.sent && p.t_ns > at)
                .find(|p| {
                    seg(p).is_some_and(|(t, (src, dst))| {
                        src == sip && t.sport == sport && dst == *cip && t.dport == *cport
                    })
                });
            let Some(p) = first else {
                return Err(format!(
                    "no segment from {service} to {cip}:{cport} after {after}"
                ));
            };
            let t = p.tcp.as_ref().expect("segment");
            if t.flags & 0x06 != 0 {
                return Err(format!(
                    "the first segment after {after} is a SYN or RST:\n    {}",
                    p.line(t0)
                ));
            }
            // Its sequence number lies between what the client had acknowledged (less one, for a
            // window probe) and what was sent before; its acknowledgement does not go back.
            let lo = client_ack.wrapping_sub(1);
            if after_pos(t.seq, *nxt) || after_pos(lo, t.seq) || after_pos(*ack, t.ack) {
                return Err(format!(
                    "the first segment after {after} does not continue the sequence space (sent up to {nxt}, acknowledged {ack}):\n    {}",
                    p.line(t0)
                ));
            }
        }
        Ok(())
    }
}

/// The slack multiplier for `within`, from `HOLDFAST_SLACK` (default 1; CI may raise it).
pub fn slack() -> f64 {
    std::env::var("HOLDFAST_SLACK")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|x: &f64| *x >= 1.0)
        .unwrap_or(1.0)
}
