//! A deterministic cluster simulator for holdfast-proto: `Cluster { nodes, time, links }` with
//! `step` and `drive`. Messages are real sealed datagrams; loss, delay, partitions, crashes and
//! reboots come from a seeded generator, so every run replays exactly from its seed.
#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use holdfast_proto::node::{Action, Config, Dest, Event, Node, Rng};
use holdfast_proto::policy::{
    Assignment, Epoch, FailbackMode, FailoverPolicy, NodeId, OwnedAddress, Ownership,
};
use holdfast_proto::time::Time;
use holdfast_proto::wire::Scope;

pub const KEY: &[u8] = b"simulated cluster key";
pub const CLUSTER: u32 = 0x4846_0001;

/// What happened, for the property checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    Claim {
        node: NodeId,
        owner: NodeId,
        epoch: Epoch,
    },
    Release {
        node: NodeId,
        owner: NodeId,
        epoch: Epoch,
    },
    Assume {
        node: NodeId,
        owner: NodeId,
        epoch: Epoch,
        scope: Scope,
    },
    Discard {
        node: NodeId,
        owner: NodeId,
    },
    HandBack {
        node: NodeId,
        owner: NodeId,
        mode: FailbackMode,
    },
    Forward {
        node: NodeId,
        owner: NodeId,
        to: NodeId,
        connections: Vec<holdfast_proto::wire::FourTuple>,
    },
    Event {
        node: NodeId,
        event: Event,
    },
    Crash {
        node: NodeId,
    },
    Boot {
        node: NodeId,
    },
    Sent {
        from: NodeId,
        to: Dest,
        len: usize,
    },
    /// The node's beacon sent an ALIVE (its loop was held).
    Spare {
        from: NodeId,
    },
    /// The node's link went down while it held `owner`'s group: addresses off.
    Withdraw {
        node: NodeId,
        owner: NodeId,
    },
    /// Back and still holding: addresses on again.
    Reinstate {
        node: NodeId,
        owner: NodeId,
    },
    /// The node sent `peer` the state of its connections.
    Sync {
        node: NodeId,
        peer: NodeId,
    },
    /// The node with share 0 had the core split `owner`'s connections.
    Split {
        node: NodeId,
        owner: NodeId,
        split: holdfast_proto::share::Split,
    },
}

pub struct SimNode {
    pub cfg: Config,
    pub node: Option<Node>,
    /// Silently cut off: nothing in or out, and the node is not told.
    pub cut: bool,
    /// Link down: nothing in or out, and the node is told.
    pub link_down: bool,
    /// Frozen (SIGSTOP): its timers are not served and what reaches it waits here, as in a
    /// socket buffer, until it is thawed.
    pub frozen: Option<Vec<(usize, Vec<u8>)>>,
    /// While frozen: only its protocol loop is held (a slow syscall), so its daemon's beacon
    /// still sends the spare heartbeats it was given.
    pub held: bool,
    /// The ALIVE datagrams its beacon would send, and when ([`Action::SpareHeartbeats`]).
    pub spares: std::collections::VecDeque<(Time, Vec<u8>)>,
    /// Groups this node holds, from its Claim/Release actions.
    pub holding: BTreeMap<NodeId, Epoch>,
    /// Client bytes this node keeps per connection, from sequence number 0, as a daemon keeps
    /// them to answer FETCH (the test fills it in).
    pub history: BTreeMap<holdfast_proto::wire::FourTuple, Vec<u8>>,
    /// FETCHED answers this node received: (when, from, answer).
    pub fetched: Vec<(Time, NodeId, holdfast_proto::wire::Fetched)>,
    /// Whole CONN-STATEs this node received: (when, from, state).
    pub states: Vec<(Time, NodeId, holdfast_proto::wire::ConnState)>,
}

#[derive(Debug, Clone)]
pub struct Links {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Delivery delay range.
    pub delay: (Duration, Duration),
}

/// A datagram in flight: delivery time, tie-breaking sequence, destination index, source
/// index, bytes.
type InFlight = (Time, u64, usize, usize, Vec<u8>);

pub struct Cluster {
    pub nodes: Vec<SimNode>,
    pub time: Time,
    pub links: Links,
    queue: BinaryHeap<Reverse<InFlight>>,
    qseq: u64,
    rng: Rng,
    pub trace: Vec<(Time, Trace)>,
    /// Answer `HandBack` at once, as a daemon would after freezing and sending (migrate) or
    /// making its connections receivable (new-connections).
    pub auto_handback: bool,
    /// The connections a `new-connections` handback reports as draining.
    pub draining: Vec<holdfast_proto::wire::FourTuple>,
    /// The connections the node with share 0 of a `spread` group has snooped and hands the
    /// core to split ([`Node::assign`]).
    pub connections: Vec<holdfast_proto::wire::FourTuple>,
    /// (sender, type) of every datagram sent, decoded from its bytes.
    pub sent: Vec<(NodeId, holdfast_proto::wire::MsgType)>,
    /// Directed cuts between two nodes (from, to): a partition between them, each still
    /// reaching everyone else, and neither told.
    pub cuts: BTreeSet<(usize, usize)>,
}

pub fn id(i: usize) -> NodeId {
    NodeId(i as u32 + 1)
}

pub fn idx(n: NodeId) -> usize {
    n.0 as usize - 1
}

/// Node `i`'s control address: where its datagrams come from.
pub fn addr(i: usize) -> std::net::SocketAddr {
    std::net::SocketAddr::new(
        std::net::Ipv4Addr::new(198, 18, 1, i as u8 + 1).into(),
        7946,
    )
}

/// Node `i`'s ownership: one address, backups in rotated order.
pub fn ownership(i: usize, n: usize, policy: &FailoverPolicy) -> Ownership {
    let mut o = Ownership::new(id(i));
    o.policy = policy.clone();
    o.policy.backups = (1..n).map(|k| id((i + k) % n)).collect();
    o.addresses = vec![OwnedAddress {
        addr: format!("198.18.0.{}", i + 1).parse().unwrap(),
        prefix: 24,
        mac: [0x02, 0x68, 0x66, 0, i as u8 + 1, 1],
    }];
    o.ports = (7, 7);
    o.application = "echo".into();
    o
}

impl Cluster {
    pub fn new(n: usize, policy: FailoverPolicy, seed: u64) -> Self {
        Self::with_reserve(n, policy, seed, Duration::ZERO)
    }

    /// A cluster whose nodes seal spare heartbeats covering `reserve` ([`Config::reserve`]).
    pub fn with_reserve(n: usize, policy: FailoverPolicy, seed: u64, reserve: Duration) -> Self {
        let iv = Duration::from_millis(policy.heartbeat_ms as u64);
        let nodes = (0..n)
            .map(|i| SimNode {
                cfg: Config {
                    cluster_id: CLUSTER,
                    key: KEY.to_vec(),
                    ownership: ownership(i, n, &policy),
                    boot_epoch: 1,
                    boot_wait: iv * 5,
                    expected_peers: (0..n).filter(|k| *k != i).map(id).collect(),
                    reserve,
                },
                node: None,
                cut: false,
                link_down: false,
                frozen: None,
                held: false,
                spares: Default::default(),
                holding: BTreeMap::new(),
                history: BTreeMap::new(),
                fetched: Vec::new(),
                states: Vec::new(),
            })
            .collect();
        let mut c = Self {
            nodes,
            time: Time(1_000_000_000),
            links: Links {
                loss: 0.0,
                delay: (Duration::from_micros(100), Duration::from_micros(500)),
            },
            queue: BinaryHeap::new(),
            qseq: 0,
            rng: Rng::new(seed),
            trace: Vec::new(),
            auto_handback: true,
            draining: Vec::new(),
            connections: Vec::new(),
            sent: Vec::new(),
            cuts: BTreeSet::new(),
        };
        for i in 0..n {
            c.boot(i);
        }
        c
    }

    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes[i].node.as_ref()
    }

    /// Calls an input of node `i` (as its daemon would), then applies what it emits.
    pub fn with_node<T>(&mut self, i: usize, f: impl FnOnce(&mut Node) -> T) -> Option<T> {
        let out = self.nodes[i].node.as_mut().map(f);
        self.drain(i);
        out
    }

    fn rand_f64(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn boot(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let sn = &mut self.nodes[i];
        sn.holding.clear();
        sn.spares.clear();
        sn.node = Some(Node::new(sn.cfg.clone(), self.time, seed));
        self.trace.push((self.time, Trace::Boot { node: id(i) }));
        self.drain(i);
    }

    /// Power off: the node and everything it knew are gone; its boot epoch goes up next time.
    pub fn crash(&mut self, i: usize) {
        if self.nodes[i].node.take().is_some() {
            self.nodes[i].holding.clear();
            self.nodes[i].spares.clear();
            self.nodes[i].cfg.boot_epoch += 1;
            self.trace.push((self.time, Trace::Crash { node: id(i) }));
        }
    }

    pub fn alive(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    /// A cluster of `n - 1` serving nodes and a witness, the last: it owns nothing and backs
    /// nobody up, it only hears and is heard.
    pub fn with_witness(n: usize, policy: FailoverPolicy, seed: u64) -> Self {
        let mut c = Self::new(n, policy, seed);
        let w = n - 1;
        for i in 0..n {
            c.crash(i);
            let o = &mut c.nodes[i].cfg.ownership;
            if i == w {
                o.addresses.clear();
                o.policy.backups.clear();
            } else {
                o.policy.backups.retain(|b| *b != id(w));
            }
        }
        for i in 0..n {
            c.boot(i);
        }
        c
    }

    /// Partitions `a` from `b` (both ways, or only `a` to `b`), or heals it.
    pub fn set_partition(&mut self, a: usize, b: usize, both_ways: bool, cut: bool) {
        for pair in [(a, b), (b, a)]
            .into_iter()
            .take(if both_ways { 2 } else { 1 })
        {
            if cut {
                self.cuts.insert(pair);
            } else {
                self.cuts.remove(&pair);
            }
        }
    }

    pub fn set_cut(&mut self, i: usize, cut: bool) {
        self.nodes[i].cut = cut;
    }

    pub fn set_link(&mut self, i: usize, up: bool) {
        self.nodes[i].link_down = !up;
        let now = self.time;
        if let Some(n) = self.nodes[i].node.as_mut() {
            n.handle_link_event(now, up);
        }
        self.drain(i);
    }

    /// Freezes node `i` (as SIGSTOP would): nothing it would do happens until [`Self::thaw`].
    pub fn freeze(&mut self, i: usize) {
        self.nodes[i].frozen.get_or_insert_with(Vec::new);
    }

    /// Holds node `i`'s protocol loop (a slow action): like [`Self::freeze`], but its daemon's
    /// beacon thread goes on sending the spare heartbeats the core gave it.
    pub fn hold(&mut self, i: usize) {
        self.freeze(i);
        self.nodes[i].held = true;
    }

    /// Thaws node `i` the way a daemon wakes up at worst: its overdue timer is served first,
    /// then the datagrams that waited in its socket buffer.
    pub fn thaw(&mut self, i: usize) {
        let Some(queued) = self.nodes[i].frozen.take() else {
            return;
        };
        self.nodes[i].held = false;
        let now = self.time;
        if let Some(n) = self.nodes[i].node.as_mut() {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
        }
        self.drain(i);
        for (from, data) in queued {
            if let Some(n) = self.nodes[i].node.as_mut() {
                n.handle_datagram(now, addr(from), &data);
            }
            self.drain(i);
        }
    }

    fn connected(&self, i: usize) -> bool {
        !self.nodes[i].cut && !self.nodes[i].link_down
    }

    /// Puts node `i`'s datagram on the wire (as its daemon sends it), with the links' loss,
    /// delay and cuts.
    fn transmit(&mut self, i: usize, to: Dest, data: Vec<u8>) {
        let now = self.time;
        let me = id(i);
        self.trace.push((
            now,
            Trace::Sent {
                from: me,
                to,
                len: data.len(),
            },
        ));
        let m = holdfast_proto::auth::open(&data, KEY, CLUSTER).expect("we send valid messages");
        self.sent.push((me, m.body.msg_type()));
        if !self.connected(i) {
            return;
        }
        let targets: Vec<usize> = match to {
            Dest::All => (0..self.nodes.len()).filter(|k| *k != i).collect(),
            Dest::Node(n) if idx(n) < self.nodes.len() => vec![idx(n)],
            Dest::Node(_) => vec![],
        };
        for t in targets {
            if self.cuts.contains(&(i, t)) {
                continue;
            }
            if self.rand_f64() < self.links.loss {
                continue;
            }
            let (lo, hi) = self.links.delay;
            let span = (hi - lo).as_nanos() as u64;
            let d = lo
                + Duration::from_nanos(if span == 0 {
                    0
                } else {
                    self.rng.next_u64() % span
                });
            self.qseq += 1;
            self.queue
                .push(Reverse((now + d, self.qseq, t, i, data.clone())));
        }
    }

    /// When node `i`'s beacon sends its next spare heartbeat (a live node whose loop runs or
    /// is held; a frozen process sends none).
    fn spare_due(&self, i: usize) -> Option<Time> {
        let s = &self.nodes[i];
        if s.node.is_none() || (s.frozen.is_some() && !s.held) {
            return None;
        }
        s.spares.front().map(|(t, _)| *t)
    }

    /// Applies a node's pending actions.
    pub fn drain(&mut self, i: usize) {
        loop {
            let now = self.time;
            let Some(a) = self.nodes[i].node.as_mut().and_then(Node::poll_action) else {
                return;
            };
            let me = id(i);
            match a {
                Action::Send { to, data } => self.transmit(i, to, data),
                Action::SpareHeartbeats {
                    first,
                    interval,
                    data,
                } => {
                    self.nodes[i].spares = data
                        .into_iter()
                        .enumerate()
                        .map(|(k, d)| (first + interval * k as u32, d))
                        .collect();
                }
                Action::ClaimAddress { owner, epoch, .. } => {
                    self.nodes[i].holding.insert(owner, epoch);
                    self.trace.push((
                        now,
                        Trace::Claim {
                            node: me,
                            owner,
                            epoch,
                        },
                    ));
                }
                Action::ReleaseAddress { owner, epoch, .. } => {
                    if self.nodes[i].holding.get(&owner) == Some(&epoch) {
                        self.nodes[i].holding.remove(&owner);
                    }
                    self.trace.push((
                        now,
                        Trace::Release {
                            node: me,
                            owner,
                            epoch,
                        },
                    ));
                }
                Action::AssumeConnections {
                    owner,
                    epoch,
                    scope,
                    ..
                } => {
                    if let Scope::Share { index: 0, of } = scope
                        && let Some(n) = self.nodes[i].node.as_mut()
                    {
                        let split = n.assign(owner, of, &self.connections);
                        self.trace.push((
                            now,
                            Trace::Split {
                                node: me,
                                owner,
                                split,
                            },
                        ));
                    }
                    self.trace.push((
                        now,
                        Trace::Assume {
                            node: me,
                            owner,
                            epoch,
                            scope,
                        },
                    ));
                }
                Action::DiscardStale { owner, .. } => {
                    self.trace.push((now, Trace::Discard { node: me, owner }));
                }
                Action::HandBack { owner, mode } => {
                    self.trace.push((
                        now,
                        Trace::HandBack {
                            node: me,
                            owner,
                            mode,
                        },
                    ));
                    if self.auto_handback
                        && let Some(n) = self.nodes[i].node.as_mut()
                    {
                        let drain = if mode == FailbackMode::NewConnections {
                            self.draining.clone()
                        } else {
                            Vec::new()
                        };
                        n.handback_ready(now, owner, drain);
                    }
                }
                Action::ConnState { from, state } => {
                    self.nodes[i].states.push((now, from, *state));
                }
                // As a daemon does: the bytes from its history, or `gone`.
                Action::FetchRequest { from, fetch } => {
                    let have = self.nodes[i].history.get(&fetch.tuple).and_then(|h| {
                        h.get(fetch.seq as usize..(fetch.seq + fetch.len) as usize)
                            .map(<[u8]>::to_vec)
                    });
                    let answer = holdfast_proto::wire::Fetched {
                        owner: fetch.owner,
                        tuple: fetch.tuple,
                        seq: fetch.seq,
                        gone: have.is_none(),
                        data: have.unwrap_or_default(),
                    };
                    if let Some(n) = self.nodes[i].node.as_mut() {
                        n.fetched(from, answer);
                    }
                }
                Action::Fetched { from, fetched } => {
                    self.nodes[i].fetched.push((now, from, fetched));
                }
                Action::Forward {
                    owner,
                    to,
                    connections,
                } => {
                    self.trace.push((
                        now,
                        Trace::Forward {
                            node: me,
                            owner,
                            to,
                            connections,
                        },
                    ));
                }
                Action::WithdrawAddress { owner, .. } => {
                    self.trace.push((now, Trace::Withdraw { node: me, owner }));
                }
                Action::ReinstateAddress { owner, .. } => {
                    self.trace.push((now, Trace::Reinstate { node: me, owner }));
                }
                Action::SyncPeer { peer } => {
                    self.trace.push((now, Trace::Sync { node: me, peer }));
                }
                Action::Event(event) => {
                    self.trace.push((now, Trace::Event { node: me, event }));
                }
            }
        }
    }

    /// The next time anything happens.
    fn next_time(&self) -> Option<Time> {
        let q = self.queue.peek().map(|Reverse((t, ..))| *t);
        let n = self
            .nodes
            .iter()
            .filter(|s| s.frozen.is_none())
            .filter_map(|s| s.node.as_ref().and_then(Node::poll_timeout))
            .min();
        let spare = (0..self.nodes.len())
            .filter_map(|i| self.spare_due(i))
            .min();
        [q, n, spare].into_iter().flatten().min()
    }

    /// Advances to the next event and processes everything due then. False if idle.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        self.time = self.time.max(t);
        let now = self.time;
        while let Some(Reverse((t, ..))) = self.queue.peek() {
            if *t > now {
                break;
            }
            let Reverse((_, _, to, from, data)) = self.queue.pop().expect("peeked");
            if !self.connected(to) {
                continue;
            }
            if let Some(q) = self.nodes[to].frozen.as_mut() {
                q.push((from, data));
                continue;
            }
            if let Some(n) = self.nodes[to].node.as_mut() {
                n.handle_datagram(now, addr(from), &data);
                self.drain(to);
            }
        }
        for i in 0..self.nodes.len() {
            if self.spare_due(i).is_some_and(|t| t <= now) {
                let (_, data) = self.nodes[i].spares.pop_front().expect("due");
                self.trace.push((now, Trace::Spare { from: id(i) }));
                self.transmit(i, Dest::All, data);
            }
        }
        for i in 0..self.nodes.len() {
            let due = self.nodes[i].frozen.is_none()
                && self.nodes[i]
                    .node
                    .as_ref()
                    .and_then(Node::poll_timeout)
                    .is_some_and(|d| d <= now);
            if due {
                self.nodes[i]
                    .node
                    .as_mut()
                    .expect("checked")
                    .handle_timeout(now);
                self.drain(i);
            }
        }
        true
    }

    /// Runs until `until` (events at `until` included).
    pub fn drive_until(&mut self, until: Time) {
        while self.next_time().is_some_and(|t| t <= until) {
            self.step();
        }
        self.time = self.time.max(until);
    }

    /// Runs for `d` of simulated time.
    pub fn drive(&mut self, d: Duration) {
        let until = self.time + d;
        self.drive_until(until);
    }

    /// Live nodes that hold `owner`'s group, per their Claim/Release actions.
    pub fn holders(&self, owner: NodeId) -> Vec<(NodeId, Epoch)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, s)| s.node.is_some())
            .filter_map(|(i, s)| s.holding.get(&owner).map(|e| (id(i), *e)))
            .collect()
    }

    /// Every (owner, epoch) claimed by more than one node over the whole run.
    pub fn double_claims(&self) -> Vec<(NodeId, Epoch, BTreeSet<NodeId>)> {
        let mut by: BTreeMap<(NodeId, Epoch), BTreeSet<NodeId>> = BTreeMap::new();
        for (_, t) in &self.trace {
            if let Trace::Claim { node, owner, epoch } = t {
                by.entry((*owner, *epoch)).or_default().insert(*node);
            }
        }
        by.into_iter()
            .filter(|(_, s)| s.len() > 1)
            .map(|((o, e), s)| (o, e, s))
            .collect()
    }

    /// Trace entries since `t`.
    pub fn since(&self, t: Time) -> impl Iterator<Item = &Trace> {
        self.trace
            .iter()
            .filter(move |(at, _)| *at >= t)
            .map(|(_, x)| x)
    }

    /// Nodes that assumed `owner`'s whole set since `t`.
    pub fn assumers_since(&self, owner: NodeId, t: Time) -> BTreeSet<NodeId> {
        self.since(t)
            .filter_map(|x| match x {
                Trace::Assume {
                    node,
                    owner: o,
                    scope: Scope::All,
                    ..
                } if *o == owner => Some(*node),
                _ => None,
            })
            .collect()
    }

    /// A readable dump of the trace's decisions, for failure messages.
    pub fn story(&self) -> String {
        self.trace
            .iter()
            .filter(|(_, t)| !matches!(t, Trace::Sent { .. }))
            .map(|(at, t)| format!("{:>10.3} ms  {t:?}", (at.0 - 1_000_000_000) as f64 / 1e6))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub fn policy(heartbeat_ms: u32, failback: FailbackMode, assignment: Assignment) -> FailoverPolicy {
    FailoverPolicy {
        backups: Vec::new(),
        failback,
        heartbeat_ms,
        miss_count: 3,
        snoop: Default::default(),
        assignment,
    }
}

impl Cluster {
    /// The message types a node sent, in order (decoded from the datagrams it sent).
    pub fn stats_sent_order(&self, node: NodeId) -> Vec<holdfast_proto::wire::MsgType> {
        self.sent
            .iter()
            .filter(|(from, _)| *from == node)
            .map(|(_, t)| *t)
            .collect()
    }
}
