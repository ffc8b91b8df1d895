//! Judging each kind of expectation over a run: the event windows, and one method per kind.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::decode::Pkt;

use super::matching::parse_sock;
use super::*;

impl Ctx {
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

    pub(super) fn window(
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

    pub(super) fn t0(&self) -> u64 {
        self.events.first().map_or(0, |e| e.t_ns)
    }

    /// Judges one expectation.
    pub fn check(&self, e: &Expect) -> Result<(), String> {
        match e {
            Expect::Exists {
                m,
                after,
                within,
                before,
                ..
            } => self.exists(m, after, within, before),
            Expect::None {
                m, after, before, ..
            } => self.none(m, after, before),
            Expect::Count {
                m,
                after,
                before,
                min,
                max,
                ..
            } => self.count(m, after, before, min, max),
            Expect::Order {
                first, then, after, ..
            } => self.order(first, then, after),
            Expect::Distinct {
                m,
                after,
                before,
                min,
                max,
                ..
            } => self.distinct(m, after, before, min, max),
            Expect::Split {
                m,
                after,
                before,
                min,
                max,
                low_pct,
                high_pct,
                ..
            } => self.split(m, after, before, (min, max), (low_pct, high_pct)),
            Expect::Client { id, result, .. } => self.client(id, result),
            Expect::Continuity { service, after, .. } => self.continuity(service, after),
        }
    }

    pub(super) fn exists(
        &self,
        m: &Match,
        after: &Option<String>,
        within: &Option<String>,
        before: &Option<String>,
    ) -> Result<(), String> {
        let t0 = self.t0();

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

    pub(super) fn none(
        &self,
        m: &Match,
        after: &Option<String>,
        before: &Option<String>,
    ) -> Result<(), String> {
        let t0 = self.t0();

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

    pub(super) fn count(
        &self,
        m: &Match,
        after: &Option<String>,
        before: &Option<String>,
        min: &Option<usize>,
        max: &Option<usize>,
    ) -> Result<(), String> {
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

    pub(super) fn order(
        &self,
        first: &Match,
        then: &Match,
        after: &Option<String>,
    ) -> Result<(), String> {
        let t0 = self.t0();

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

    pub(super) fn distinct(
        &self,
        m: &Match,
        after: &Option<String>,
        before: &Option<String>,
        min: &Option<usize>,
        max: &Option<usize>,
    ) -> Result<(), String> {
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

    pub(super) fn split(
        &self,
        m: &Match,
        after: &Option<String>,
        before: &Option<String>,
        (min, max): (&Option<usize>, &Option<usize>),
        (low_pct, high_pct): (&Option<f64>, &Option<f64>),
    ) -> Result<(), String> {
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
        let shares: Vec<String> = per_port.iter().map(|(p, k)| format!("{p} {k}")).collect();
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

    pub(super) fn client(&self, id: &str, result: &str) -> Result<(), String> {
        let rep = self
            .clients
            .get(id)
            .ok_or_else(|| format!("no client {id:?} ran"))?;
        let ok = match result {
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

    pub(super) fn continuity(&self, service: &str, after: &str) -> Result<(), String> {
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
