//! Matching packets against a [`Match`]: how well each field fits (for the nearest misses in a
//! failure message) and whether all do.

use std::net::IpAddr;

use crate::decode::Pkt;

use super::*;

impl Ctx {
    pub(super) fn mac_of(&self, s: &str) -> Option<[u8; 6]> {
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
    pub(super) fn score(&self, m: &Match, p: &Pkt) -> (usize, bool) {
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

    pub(super) fn matches(&self, m: &Match, p: &Pkt) -> bool {
        self.score(m, p).1
    }

    /// The packets that best match a predicate (for a failure message).
    pub(super) fn nearest(&self, m: &Match, lo: u64, hi: u64) -> String {
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

    pub(super) fn in_window<'a>(
        &'a self,
        m: &'a Match,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = &'a Pkt> + 'a {
        self.pkts
            .iter()
            .filter(move |p| p.t_ns >= lo && p.t_ns <= hi && self.matches(m, p))
    }
}

pub(super) fn parse_sock(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    s.parse::<IpAddr>().ok().map(|ip| (ip, None))
}
