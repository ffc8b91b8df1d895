//! Running a scenario on a cluster, and the verdicts it gives.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::{Expect, Scenario, Step};
use crate::client::ClientReport;
use crate::cluster::{ClientHandle, Cluster, Fault};
use crate::topology::Topology;

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
            let (ok, summary) = match crate::evidence::judge(&p, topology, captures) {
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
