//! The sans-IO node state machine.
//!
//! Read [`Node`] first: feed it datagrams ([`Node::handle_datagram`]), timeouts
//! ([`Node::handle_timeout`]), link events and commands, each with `now`; then drain
//! [`Node::poll_action`] and arm a timer for [`Node::poll_timeout`]. It never reads a clock,
//! opens a socket or draws an unseeded random number.
//!
//! The model, in brief (PROTOCOL.md has the full story):
//! - Each node *owns* a group: its addresses and the connections on them. Someone *holds* each
//!   group at an [`Epoch`] `(counter, holder)`; the highest epoch seen is the truth, and a node
//!   that holds a group at a lower epoch releases it (fencing).
//! - A group is *orphaned* when its holder is dead, left, or rebooted since it took the group.
//!   The candidates for an orphaned group are its owner, then the owner's backups in policy
//!   order, that are alive and eligible. The first assumes; the others ask it with
//!   ASSUME-REQUEST and assume only on GRANT (claim 10), or once it is dead.
//! - A returning owner gets its group back per its failback mode (claims 5, 14, 19).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::auth::{self, DropReason, ReplayWindow};
use crate::handback::HandbackParts;
use crate::policy::{ArpPolicy, Assignment, Epoch, FailbackMode, NodeId, OwnedAddress, Ownership};
use crate::sync::{Assembled, Assembler, Incomplete, PART_CHUNK};
use crate::time::Time;
use crate::wire::{
    Announce, AssumeReply, AssumeRequest, Body, ConnState, ConnStatePart, DenyReason,
    FLAG_ELIGIBLE, FLAG_LEAVING, Fetch, Fetched, FourTuple, Handback, Heard, Holding, Message,
    MsgType, Reclaim, Scope, TakeoverNotice,
};

/// A node's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster id; messages for other clusters are dropped.
    pub cluster_id: u32,
    /// The cluster key for HMAC-SHA256.
    pub key: Vec<u8>,
    /// This node's ownership information (its node id inside).
    pub ownership: Ownership,
    /// This boot's epoch; must be higher than any earlier boot's.
    pub boot_epoch: u32,
    /// How long after boot the node becomes eligible to assume even if not every expected peer
    /// has answered its SOLICIT.
    pub boot_wait: Duration,
    /// Peers to hear before becoming eligible early.
    pub expected_peers: Vec<NodeId>,
}

impl Config {
    /// The node id.
    pub fn id(&self) -> NodeId {
        self.ownership.node_id
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.ownership.policy.heartbeat_ms as u64)
    }
}

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Every node (multicast).
    All,
    /// One node (unicast).
    Node(NodeId),
}

/// Status events, for logs and the status socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A peer was heard for the first time, or again after being declared dead.
    PeerUp {
        /// The peer.
        node: NodeId,
        /// Its boot epoch.
        boot_epoch: u32,
    },
    /// This node's heartbeat timer was served late by `late` (it was frozen, or starved of
    /// CPU): its peers get a fresh detection window before their silence counts.
    Resumed {
        /// How late.
        late: Duration,
    },
    /// A peer missed `miss_count` of its heartbeats here, but another live peer still hears
    /// it: it is cut off from this node (a partition), not dead, and nothing of it is assumed.
    CutOff {
        /// The peer.
        node: NodeId,
        /// A peer that reported hearing it.
        heard_by: NodeId,
    },
    /// This node hears no peer at all while the cluster has a witness: it is cut off from the
    /// majority, which may assume its groups, so it released them (and assumes nothing until
    /// it hears a peer again).
    SteppedDown {
        /// The groups it let go.
        released: Vec<NodeId>,
    },
    /// A peer that was cut off is heard directly again.
    Reachable {
        /// The peer.
        node: NodeId,
    },
    /// A peer missed `miss_count` heartbeats, and no live peer reported hearing it since.
    PeerDead {
        /// The peer.
        node: NodeId,
    },
    /// A peer announced it is leaving.
    PeerLeft {
        /// The peer.
        node: NodeId,
    },
    /// This node may now assume.
    Eligible,
    /// A group was lost to a higher epoch.
    Fenced {
        /// The group's owner.
        owner: NodeId,
        /// The epoch that won.
        by: Epoch,
    },
    /// This node asked another for leave to assume.
    Requested {
        /// The group's owner.
        owner: NodeId,
        /// Asked of.
        to: NodeId,
    },
    /// The answer.
    Answered {
        /// The group's owner.
        owner: NodeId,
        /// Who answered.
        from: NodeId,
        /// Whether it granted the request (else it denied it).
        granted: bool,
    },
    /// A CONN-STATE sent in parts was not adopted: this node cannot take that connection over
    /// (unless its snooper sees the handshake of a new one).
    SyncIncomplete {
        /// The sender.
        from: NodeId,
        /// The group.
        owner: NodeId,
        /// The connection.
        tuple: Option<FourTuple>,
        /// Why.
        why: Incomplete,
    },
}

/// What the IO layer must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a sealed datagram.
    Send {
        /// Destination.
        to: Dest,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Take over addresses and announce them per the ARP policy.
    ClaimAddress {
        /// Whose group.
        owner: NodeId,
        /// At which epoch.
        epoch: Epoch,
        /// The addresses and their MACs.
        addresses: Vec<OwnedAddress>,
        /// How to announce.
        arp: ArpPolicy,
    },
    /// Stop answering for addresses.
    ReleaseAddress {
        /// Whose group.
        owner: NodeId,
        /// The epoch that was held.
        epoch: Epoch,
        /// The addresses.
        addresses: Vec<OwnedAddress>,
    },
    /// Re-create the owner's connections (those in `scope`) and continue their applications.
    /// Always comes before the `ClaimAddress` of the same takeover: re-create the sockets first
    /// (in repair mode), then the address.
    ///
    /// A `Share { index: 0, .. }` comes with the addresses: its node forwards the connections
    /// of every other share `k` to `shares[k]` (in the kernel, before the address exists). A
    /// share without the addresses goes live at once; its packets arrive forwarded.
    AssumeConnections {
        /// Whose connections.
        owner: NodeId,
        /// At which epoch.
        epoch: Epoch,
        /// Which ones.
        scope: Scope,
        /// Under `Share`, the node assuming each share, by index (empty otherwise).
        shares: Vec<NodeId>,
    },
    /// Forward the packets of `connections` (to `owner`'s addresses, which this node holds) to
    /// node `to`, which still serves them; replaces the set forwarded to `to` for this group.
    /// Comes before the `ClaimAddress` it belongs to.
    Forward {
        /// The group.
        owner: NodeId,
        /// The node serving the connections.
        to: NodeId,
        /// The connections (empty: stop forwarding to `to`).
        connections: Vec<FourTuple>,
    },
    /// Give a group back to its returning owner. For `Migrate`, freeze each connection, send
    /// its CONN-STATE ([`Node::conn_state`]) and then call [`Node::handback_ready`]. For
    /// `NewConnections`, make the group's live connections receivable without the addresses,
    /// then call [`Node::handback_ready`] with them: they keep being served here until they
    /// close (report each change with [`Node::draining`]).
    HandBack {
        /// The group's owner.
        owner: NodeId,
        /// Mode.
        mode: FailbackMode,
    },
    /// Drop the group's connections silently (no FIN, no RST): a higher epoch holds them.
    DiscardStale {
        /// Whose group.
        owner: NodeId,
        /// The epoch that was lost.
        epoch: Epoch,
    },
    /// A CONN-STATE arrived for the IO layer (a migrating connection, or a late backup's sync).
    ConnState {
        /// From whom.
        from: NodeId,
        /// The state.
        state: Box<ConnState>,
    },
    /// A backup asks for client bytes of a connection of a group this node holds: answer with
    /// [`Node::fetched`] (the bytes, or `gone`).
    FetchRequest {
        /// The backup.
        from: NodeId,
        /// What it lacks.
        fetch: Fetch,
    },
    /// The holder sent client bytes this node asked for ([`Node::fetch`]).
    Fetched {
        /// The holder.
        from: NodeId,
        /// The bytes.
        fetched: Fetched,
    },
    /// Something worth logging.
    Event(Event),
}

/// Commands from the IO layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Graceful shutdown: release everything and tell peers at once.
    Shutdown,
    /// Send SOLICIT now (ANNOUNCE answers come back).
    Solicit,
}

/// Counters, for `holdfastd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent, by type.
    pub sent: BTreeMap<MsgType, u64>,
    /// Messages accepted, by type.
    pub received: BTreeMap<MsgType, u64>,
    /// Datagrams dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
}

/// One peer as this node sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its ownership record (from its latest ANNOUNCE).
    pub ownership: Option<Ownership>,
    /// Its boot epoch.
    pub boot_epoch: u32,
    /// When it was last heard.
    pub last_heard: Time,
    /// The latest instant another live peer reported hearing it directly (its HEARTBEAT's
    /// list of peers heard): a peer we cannot hear but others can is cut off from us, not dead.
    pub vouched: Time,
    /// Our own detection window for it has passed while others still hear it (reported once
    /// per episode, as [`Event::CutOff`]).
    pub cut_off: bool,
    /// Whether it is considered alive.
    pub alive: bool,
    /// Whether it said it is eligible to assume.
    pub eligible: bool,
}

/// The newest known epoch of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupView {
    /// The epoch (its holder holds the group).
    pub epoch: Epoch,
    /// The holder's boot epoch when it took the group.
    pub holder_boot: u32,
    /// The holder's own heartbeat, sent after it took the group, no longer lists it.
    pub released: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    to: NodeId,
    request_id: u32,
    scope: Scope,
    deadline: Time,
    tries: u32,
    /// Not answered yet, or answered "the holder is alive" (the replier had not noticed the
    /// failure): ask again when the deadline passes, should the group be held by then.
    not_yet: bool,
}

/// Timers in a fixed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Timer {
    Heartbeat = 0,
    BootWait = 1,
}
const TIMERS: usize = 2;

/// At most this many connections are listed in one datagram (IPv6 included): a HANDBACK part
/// (a longer draining set comes in several, `crate::handback`), or a `spread` share's list in
/// ASSUME-GRANT (longer lists go by hash instead).
pub const DRAIN_MAX: usize = 1500;

/// A seeded xorshift generator: randomness is an input, not a source.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }
    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A cluster node's protocol state.
#[derive(Debug)]
pub struct Node {
    cfg: Config,
    seq: u64,
    booted: Time,
    eligible: bool,
    link_up: bool,
    /// It heard nobody while the cluster has a witness, and let go of what it held: a minority
    /// of one assumes nothing until it hears a peer again.
    stepped_down: bool,
    leaving: bool,
    /// When this node last woke from a pause of its own (its heartbeat timer served more than
    /// an interval late: frozen, or starved of CPU). Until its peers have had a full detection
    /// window since then, their silence proves nothing: what they sent may still be unread.
    resumed: Time,
    members: BTreeMap<NodeId, Member>,
    groups: BTreeMap<NodeId, GroupView>,
    held: BTreeMap<NodeId, Epoch>,
    shares: BTreeMap<NodeId, (Epoch, Scope)>,
    pending: BTreeMap<NodeId, Pending>,
    /// Grants given, per group: to whom, until when.
    granted: BTreeMap<NodeId, (NodeId, Scope, Time)>,
    /// Under `spread`, per group we hold: the connections of each share as the IO layer split
    /// them (`None`: too many to list; shares go by hash), once it has ([`Node::assigned`]).
    assignments: BTreeMap<NodeId, Option<Vec<Vec<FourTuple>>>>,
    /// Share requests that arrived before the split: (group, requester, request id, index).
    awaiting: Vec<(NodeId, NodeId, u32, u16)>,
    /// Failures we already asked about: (owner, the failed holding's epoch).
    asked: BTreeSet<(NodeId, Epoch)>,
    /// Handbacks waiting for the IO layer, per owner.
    handing_back: BTreeMap<NodeId, (Epoch, FailbackMode)>,
    /// The last HANDBACK sent per owner, to repeat if the owner asks again.
    handed_back: BTreeMap<NodeId, Handback>,
    /// When we last sent a peer an unsolicited correction (ANNOUNCE or SOLICIT).
    prodded: BTreeMap<NodeId, Time>,
    /// CONN-STATEs whose parts are still arriving.
    assembler: Assembler,
    /// HANDBACK draining sets whose parts are still arriving.
    handback_parts: HandbackParts,
    /// When we last sent RECLAIM for our group.
    reclaimed_at: Option<Time>,
    timers: [Option<Time>; TIMERS],
    actions: VecDeque<Action>,
    replay: ReplayWindow,
    rng: Rng,
    stats: Stats,
}

impl Node {
    /// Boots a node at `now`: it announces itself and solicits its peers (claims 2, 4, 12).
    pub fn new(cfg: Config, now: Time, seed: u64) -> Self {
        let mut n = Self {
            seq: 0,
            booted: now,
            eligible: false,
            link_up: true,
            stepped_down: false,
            leaving: false,
            resumed: Time::default(),
            members: BTreeMap::new(),
            groups: BTreeMap::new(),
            held: BTreeMap::new(),
            shares: BTreeMap::new(),
            pending: BTreeMap::new(),
            granted: BTreeMap::new(),
            assignments: BTreeMap::new(),
            awaiting: Vec::new(),
            asked: BTreeSet::new(),
            handing_back: BTreeMap::new(),
            handed_back: BTreeMap::new(),
            prodded: BTreeMap::new(),
            assembler: Assembler::default(),
            handback_parts: HandbackParts::default(),
            reclaimed_at: None,
            timers: [None; TIMERS],
            actions: VecDeque::new(),
            replay: ReplayWindow::default(),
            rng: Rng::new(seed),
            stats: Stats::default(),
            cfg,
        };
        n.boot(now);
        n
    }

    fn boot(&mut self, now: Time) {
        self.booted = now;
        self.eligible = false;
        // claim 2/12/17: broadcast ownership information at boot; claim 4: solicit the peers'.
        self.send_announce(Dest::All);
        self.send(Dest::All, Body::Solicit { target: None });
        // The first heartbeat comes after a random part of an interval, so that nodes booted
        // together do not beat in lockstep.
        let iv = self.cfg.interval();
        let phase = Duration::from_nanos(self.rng.next_u64() % (iv.as_nanos() as u64).max(1));
        self.timers[Timer::Heartbeat as usize] = Some(now + phase);
        self.timers[Timer::BootWait as usize] = Some(now + self.cfg.boot_wait);
        self.check_eligible(now);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Whether this node may assume groups now.
    pub fn eligible(&self) -> bool {
        self.eligible
    }

    /// Groups held as address holder, by owner.
    pub fn held(&self) -> &BTreeMap<NodeId, Epoch> {
        &self.held
    }

    /// Connection shares held without the addresses (the `spread` policy), by owner.
    pub fn shares(&self) -> &BTreeMap<NodeId, (Epoch, Scope)> {
        &self.shares
    }

    /// The membership table.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    /// The newest epoch known for each group.
    pub fn groups(&self) -> &BTreeMap<NodeId, GroupView> {
        &self.groups
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The next action for the IO layer.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let member_deadlines = self
            .members
            .iter()
            .filter(|(_, m)| m.alive)
            .filter_map(|(id, m)| self.dead_at(*id, m));
        let pending = self.pending.values().map(|p| p.deadline);
        let grants = self.granted.values().map(|g| g.2);
        self.timers
            .iter()
            .flatten()
            .copied()
            .chain(member_deadlines)
            .chain(pending)
            .chain(grants)
            .min()
    }

    fn peer_interval(&self, id: NodeId) -> (Duration, u32) {
        let pol = self
            .members
            .get(&id)
            .and_then(|m| m.ownership.as_ref())
            .map(|o| &o.policy)
            .unwrap_or(&self.cfg.ownership.policy);
        (
            Duration::from_millis(pol.heartbeat_ms as u64),
            pol.miss_count as u32,
        )
    }

    /// When a member is declared dead if nothing more is heard: `miss_count` of *its* intervals
    /// after it was last heard, by us or by a live peer that reported hearing it.
    fn dead_at(&self, id: NodeId, m: &Member) -> Option<Time> {
        let (iv, miss) = self.peer_interval(id);
        Some(m.last_heard.max(m.vouched).max(self.resumed) + iv * miss)
    }

    /// The live peers this node heard itself, for its HEARTBEAT.
    fn heard_list(&self, now: Time) -> Vec<Heard> {
        self.members
            .iter()
            .filter(|(_, m)| m.alive)
            .map(|(id, m)| Heard {
                node: *id,
                boot_epoch: m.boot_epoch,
                // Rounded up: a report never makes a peer look fresher than it is.
                age_ms: u32::try_from((now - m.last_heard).as_micros().div_ceil(1000))
                    .unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// A live peer's HEARTBEAT says whom it hears: each report (of the boot we know) moves that
    /// member's `vouched` instant, so it is not declared dead while someone still hears it. Only
    /// direct hearing is reported, so a dead node's name cannot circulate forever.
    fn vouch(&mut self, now: Time, from: NodeId, heard: &[Heard]) {
        let me = self.id();
        for h in heard {
            if h.node == me || h.node == from {
                continue;
            }
            let at = Time(
                now.as_nanos()
                    .saturating_sub(u64::from(h.age_ms) * 1_000_000),
            );
            let (iv, miss) = self.peer_interval(h.node);
            // A report about the same datagram we heard last is no news (and the transit time
            // would stretch a dead node's window): only a report at least half an interval
            // fresher than our own hearing counts.
            if let Some(m) = self.members.get_mut(&h.node)
                && m.alive
                && m.boot_epoch == h.boot_epoch
                && at > m.vouched
                && at > m.last_heard + iv / 2
            {
                m.vouched = at;
                // Our own window has passed: the peer is alive but we cannot hear it.
                let m = &self.members[&h.node];
                if !m.cut_off && m.last_heard.max(self.resumed) + iv * miss <= now {
                    self.members.get_mut(&h.node).expect("present").cut_off = true;
                    self.actions.push_back(Action::Event(Event::CutOff {
                        node: h.node,
                        heard_by: from,
                    }));
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sending

    fn flags(&self) -> u16 {
        let mut f = 0;
        if self.eligible {
            f |= FLAG_ELIGIBLE;
        }
        if self.leaving {
            f |= FLAG_LEAVING;
        }
        f
    }

    fn send(&mut self, to: Dest, body: Body) {
        self.seq += 1;
        let ty = body.msg_type();
        let msg = Message {
            flags: self.flags(),
            cluster: self.cfg.cluster_id,
            sender: self.id(),
            boot_epoch: self.cfg.boot_epoch,
            seq: self.seq,
            body,
        };
        let data = auth::seal(&msg, &self.cfg.key);
        *self.stats.sent.entry(ty).or_default() += 1;
        self.actions.push_back(Action::Send { to, data });
    }

    fn holdings(&self) -> Vec<Holding> {
        self.held
            .iter()
            .map(|(o, e)| Holding {
                owner: *o,
                epoch: *e,
                holder_boot: self.cfg.boot_epoch,
            })
            .collect()
    }

    fn send_announce(&mut self, to: Dest) {
        // An ANNOUNCE carries the sender's whole view of the groups, so that a booting node
        // learns the newest epochs before it claims anything.
        let holdings = self
            .groups
            .iter()
            .map(|(o, g)| Holding {
                owner: *o,
                epoch: g.epoch,
                holder_boot: g.holder_boot,
            })
            .collect();
        let relayed = self
            .members
            .values()
            .filter(|m| !m.alive)
            .filter_map(|m| m.ownership.clone())
            .collect();
        self.send(
            to,
            Body::Announce(Announce {
                ownership: self.cfg.ownership.clone(),
                holdings,
                relayed,
            }),
        );
    }

    /// Sends one connection's state to a node (migrate failback, or syncing a late backup),
    /// whatever its size: in parts of one datagram each. `false` (nothing sent) only for a
    /// state over 4 GB.
    pub fn conn_state(&mut self, to: NodeId, state: ConnState) -> bool {
        let Some(parts) = ConnStatePart::split(&state, PART_CHUNK) else {
            return false;
        };
        for p in parts {
            self.send(Dest::Node(to), Body::ConnState(Box::new(p)));
        }
        true
    }

    /// Asks the holder of `f.owner`'s group for client bytes this node's snooped copy lacks
    /// (claim 8: the backup's copy must be whole). Returns the node asked, or `None` when no
    /// live peer holds the group (the hole stays open: if the group has to be taken over
    /// before it is repaired, that connection cannot be made whole).
    pub fn fetch(&mut self, f: Fetch) -> Option<NodeId> {
        let holder = self.groups.get(&f.owner)?.epoch.holder;
        if holder == self.id() || !self.members.get(&holder).is_some_and(|m| m.alive) {
            return None;
        }
        self.send(Dest::Node(holder), Body::Fetch(f));
        Some(holder)
    }

    /// Answers a [`Action::FetchRequest`].
    pub fn fetched(&mut self, to: NodeId, f: Fetched) {
        self.send(Dest::Node(to), Body::Fetched(f));
    }

    // -----------------------------------------------------------------------------------------
    // Inputs

    /// A datagram arrived. Anything malformed, forged, replayed or foreign is dropped and
    /// counted; nothing here panics on input.
    pub fn handle_datagram(&mut self, now: Time, data: &[u8]) {
        let msg = match auth::open(data, &self.cfg.key, self.cfg.cluster_id) {
            Ok(m) => m,
            Err(r) => return self.drop_msg(r),
        };
        if msg.sender == self.id() {
            return self.drop_msg(DropReason::Own);
        }
        let order_free = matches!(
            msg.body,
            Body::ConnState(_) | Body::Fetch(_) | Body::Fetched(_) | Body::Handback(_)
        );
        let newest = match self
            .replay
            .accept(msg.sender, msg.boot_epoch, msg.seq, order_free)
        {
            Ok(n) => n,
            Err(r) => return self.drop_msg(r),
        };
        *self.stats.received.entry(msg.body.msg_type()).or_default() += 1;
        if !newest {
            // Overtaken by later datagrams: its flags are old news; only its body counts.
            return self.order_free(now, msg.sender, msg.body);
        }
        if !self.link_up {
            // We cannot hear while our link is down; a datagram now means it is back.
            self.handle_link_event(now, true);
        }
        self.heard(now, &msg);
        let from = msg.sender;
        let boot = msg.boot_epoch;
        match msg.body {
            Body::Announce(a) => {
                if let Some(m) = self.members.get_mut(&from) {
                    m.ownership = Some(a.ownership);
                }
                for o in a.relayed {
                    let id = o.node_id;
                    if id == self.id() || id == from {
                        continue;
                    }
                    let m = self.members.entry(id).or_insert(Member {
                        ownership: None,
                        boot_epoch: 0,
                        last_heard: now,
                        vouched: Time::default(),
                        cut_off: false,
                        alive: false,
                        eligible: false,
                    });
                    if m.ownership.is_none() {
                        m.ownership = Some(o);
                    }
                }
                for h in a.holdings {
                    self.observe(h.owner, h.epoch, h.holder_boot);
                }
                self.check_eligible(now);
            }
            Body::Solicit { target } => {
                if target.is_none_or(|t| t == self.id()) {
                    // claim 4: answer a solicitation with our ownership information.
                    self.send_announce(Dest::All);
                }
            }
            Body::Heartbeat { holdings, heard } => {
                self.vouch(now, from, &heard);
                let held_now: BTreeSet<NodeId> = holdings
                    .iter()
                    .filter(|h| h.epoch.holder == from)
                    .map(|h| h.owner)
                    .collect();
                let mut behind = false;
                for h in holdings {
                    behind |= h.epoch.holder == from
                        && self.groups.get(&h.owner).is_some_and(|g| g.epoch > h.epoch);
                    self.observe(h.owner, h.epoch, h.holder_boot);
                }
                // Groups we think the sender holds but its heartbeat omits: it let them go.
                let listed: BTreeSet<NodeId> = self
                    .groups
                    .iter()
                    .filter(|(_, g)| g.epoch.holder == from && g.holder_boot == boot)
                    .map(|(o, _)| *o)
                    .collect();
                for o in listed {
                    if !held_now.contains(&o)
                        && let Some(g) = self.groups.get_mut(&o)
                    {
                        g.released = true;
                    }
                }
                // The sender holds a group at an epoch older than one we know: tell it.
                if behind && self.may_prod(now, from) {
                    self.send_announce(Dest::Node(from));
                }
            }
            Body::AssumeRequest(r) => self.on_assume_request(now, from, r),
            Body::AssumeGrant(r) => self.on_assume_reply(now, from, r, true),
            Body::AssumeDeny(r) => self.on_assume_reply(now, from, r, false),
            Body::TakeoverNotice(t) => {
                if !t.addresses.is_empty() || t.scope == Scope::All {
                    let prev = self.groups.get(&t.owner).map(|g| g.epoch);
                    self.observe(t.owner, t.epoch, boot);
                    // The sender assumed a group whose holder failed: if we wanted it too, we
                    // ask the assumer (claim 10).
                    if let Some(prev) = prev
                        && prev.holder != from
                        && !self.alive(prev.holder)
                    {
                        self.want(now, t.owner, prev);
                    }
                }
            }
            Body::Reclaim(r) => self.on_reclaim(from, r),
            body @ (Body::ConnState(_) | Body::Fetch(_) | Body::Fetched(_) | Body::Handback(_)) => {
                self.order_free(now, from, body)
            }
        }
        // A peer whose ANNOUNCE we missed: ask it again (claim 4).
        if self
            .members
            .get(&from)
            .is_some_and(|m| m.alive && m.ownership.is_none())
            && self.may_prod(now, from)
        {
            self.send(Dest::Node(from), Body::Solicit { target: Some(from) });
        }
        if msg.flags & FLAG_LEAVING != 0 {
            if let Some(m) = self.members.get_mut(&from) {
                m.alive = false;
            }
            self.actions
                .push_back(Action::Event(Event::PeerLeft { node: from }));
            self.evaluate_all(now);
            self.ask_late(now, from);
        }
    }

    /// The bodies whose order does not matter: the parts of a CONN-STATE or of a HANDBACK
    /// (each set is made whole first, and an older one never replaces a newer), FETCH and
    /// FETCHED.
    fn order_free(&mut self, now: Time, from: NodeId, body: Body) {
        match body {
            Body::Handback(h) => {
                if let Some(whole) = self.handback_parts.part(from, h) {
                    self.on_handback(from, whole);
                }
            }
            Body::ConnState(part) => {
                let (owner, tuple) = (part.head.owner, part.head.tuple);
                match self.assembler.part(now, from, *part) {
                    Assembled::Whole(state) => {
                        self.actions.push_back(Action::ConnState { from, state })
                    }
                    Assembled::Pending => {}
                    Assembled::Dropped(why) => {
                        self.actions.push_back(Action::Event(Event::SyncIncomplete {
                            from,
                            owner,
                            tuple,
                            why,
                        }))
                    }
                }
            }
            // Only the holder has the bytes; an asker with a stale view gets no answer and
            // asks the holder it learns of next.
            Body::Fetch(fetch) if self.held.contains_key(&fetch.owner) => {
                self.actions.push_back(Action::FetchRequest { from, fetch })
            }
            Body::Fetch(_) => {}
            Body::Fetched(fetched) => self.actions.push_back(Action::Fetched { from, fetched }),
            _ => {}
        }
    }

    /// Rate-limits unsolicited corrections to a peer: at most one per interval.
    fn may_prod(&mut self, now: Time, peer: NodeId) -> bool {
        let iv = self.cfg.interval();
        if self.prodded.get(&peer).is_some_and(|t| now < *t + iv) {
            return false;
        }
        self.prodded.insert(peer, now);
        true
    }

    fn drop_msg(&mut self, r: DropReason) {
        *self.stats.dropped.entry(r).or_default() += 1;
    }

    fn heard(&mut self, now: Time, msg: &Message) {
        let from = msg.sender;
        let m = self.members.entry(from).or_insert(Member {
            ownership: None,
            boot_epoch: msg.boot_epoch,
            last_heard: now,
            vouched: Time::default(),
            cut_off: false,
            alive: false,
            eligible: false,
        });
        let rebooted = msg.boot_epoch > m.boot_epoch;
        let was_alive = m.alive;
        m.boot_epoch = msg.boot_epoch;
        m.last_heard = now;
        if m.cut_off {
            m.cut_off = false;
            self.actions
                .push_back(Action::Event(Event::Reachable { node: from }));
        }
        let m = self.members.get_mut(&from).expect("inserted above");
        m.eligible = msg.flags & FLAG_ELIGIBLE != 0;
        m.alive = msg.flags & FLAG_LEAVING == 0;
        if rebooted {
            // Its old ownership record may be stale until it announces again.
            m.ownership = m.ownership.take().filter(|o| o.node_id == from);
        }
        if (!was_alive || rebooted) && m.alive {
            self.actions.push_back(Action::Event(Event::PeerUp {
                node: from,
                boot_epoch: msg.boot_epoch,
            }));
            if self.stepped_down {
                // Back in touch: re-synchronise as at boot before assuming anything.
                self.stepped_down = false;
                self.send(Dest::All, Body::Solicit { target: None });
                self.timers[Timer::BootWait as usize] = Some(now + self.cfg.boot_wait);
            }
            // A higher epoch we knew of may have a live holder now.
            let owners: Vec<NodeId> = self.held.keys().copied().collect();
            for o in owners {
                self.check_fence(o);
            }
            if rebooted {
                // Whatever it held in its previous life is orphaned now.
                self.evaluate_all(now);
            }
        }
    }

    /// A new epoch for a group was seen. Higher epochs win; if we hold the group at a lower
    /// one, we are fenced: release and discard.
    fn observe(&mut self, owner: NodeId, epoch: Epoch, holder_boot: u32) {
        let cur = self.groups.get(&owner).copied();
        if cur.is_some_and(|g| g.epoch > epoch) {
            return;
        }
        if cur.is_some_and(|g| g.epoch == epoch && g.holder_boot >= holder_boot) {
            return;
        }
        self.groups.insert(
            owner,
            GroupView {
                epoch,
                holder_boot,
                released: false,
            },
        );
        self.check_fence(owner);
        // A share is void once its owner holds the group again.
        if let Some((e, _)) = self.shares.get(&owner)
            && epoch.counter > e.counter
            && epoch.holder == owner
        {
            self.shares.remove(&owner);
        }
    }

    /// Whether `holder` is alive and has not rebooted since it took a group.
    fn live(&self, holder: NodeId, holder_boot: u32) -> bool {
        if holder == self.id() {
            return holder_boot == self.cfg.boot_epoch;
        }
        self.members
            .get(&holder)
            .is_some_and(|m| m.alive && m.boot_epoch == holder_boot)
    }

    /// If we hold a group at an epoch below the newest known one, and that one's holder is
    /// live, we are fenced: release the addresses and drop the connections silently.
    fn check_fence(&mut self, owner: NodeId) {
        let (Some(mine), Some(g)) = (
            self.held.get(&owner).copied(),
            self.groups.get(&owner).copied(),
        ) else {
            return;
        };
        if mine >= g.epoch
            || g.epoch.holder == self.id()
            || !self.live(g.epoch.holder, g.holder_boot)
        {
            return;
        }
        self.held.remove(&owner);
        self.assignments.remove(&owner);
        self.handing_back.remove(&owner);
        let addresses = self.addresses_of(owner);
        self.actions.push_back(Action::ReleaseAddress {
            owner,
            epoch: mine,
            addresses,
        });
        self.actions
            .push_back(Action::DiscardStale { owner, epoch: mine });
        self.actions
            .push_back(Action::Event(Event::Fenced { owner, by: g.epoch }));
    }

    /// We hold a group at an epoch below one whose holder is gone: keep serving it, under an
    /// epoch above that one, and tell everyone.
    fn reassert(&mut self, owner: NodeId) {
        let (Some(mine), Some(g)) = (
            self.held.get(&owner).copied(),
            self.groups.get(&owner).copied(),
        ) else {
            return;
        };
        if mine >= g.epoch || self.live(g.epoch.holder, g.holder_boot) {
            return;
        }
        let e = Epoch {
            counter: g.epoch.counter + 1,
            holder: self.id(),
        };
        self.held.insert(owner, e);
        self.groups.insert(
            owner,
            GroupView {
                epoch: e,
                holder_boot: self.cfg.boot_epoch,
                released: false,
            },
        );
        let owned = self.addresses_of(owner);
        let arp = self.ownership_of(owner).map_or(ArpPolicy::Garp, |o| o.arp);
        // Same holder, new epoch: the IO layer re-asserts the addresses (idempotent).
        self.actions.push_back(Action::ClaimAddress {
            owner,
            epoch: e,
            addresses: owned.clone(),
            arp,
        });
        let addresses = owned.iter().map(|a| a.addr).collect();
        self.send(
            Dest::All,
            Body::TakeoverNotice(TakeoverNotice {
                owner,
                epoch: e,
                scope: Scope::All,
                addresses,
            }),
        );
    }

    /// Call when the deadline from [`Node::poll_timeout`] passes.
    pub fn handle_timeout(&mut self, now: Time) {
        for (from, owner, tuple) in self.assembler.expire(now) {
            self.actions.push_back(Action::Event(Event::SyncIncomplete {
                from,
                owner,
                tuple,
                why: Incomplete::Timeout,
            }));
        }
        if let Some(due) = self.timers[Timer::Heartbeat as usize].filter(|t| *t <= now) {
            // Served more than an interval late: this node was paused, not its peers silent.
            if now - due > self.cfg.interval() {
                self.resumed = now;
                self.actions
                    .push_back(Action::Event(Event::Resumed { late: now - due }));
            }
            self.timers[Timer::Heartbeat as usize] = Some(now + self.cfg.interval());
            if self.link_up && !self.leaving {
                let holdings = self.holdings();
                let heard = self.heard_list(now);
                self.send(Dest::All, Body::Heartbeat { holdings, heard });
            }
            // Periodic re-evaluation makes every decision robust to a lost message.
            self.evaluate_all(now);
            self.maybe_reclaim(now);
        }
        if self.timers[Timer::BootWait as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::BootWait as usize] = None;
            self.become_eligible(now);
        }
        let dead: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(id, m)| m.alive && self.dead_at(**id, m).is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            if let Some(m) = self.members.get_mut(id) {
                m.alive = false;
                m.cut_off = false;
            }
            self.actions
                .push_back(Action::Event(Event::PeerDead { node: *id }));
        }
        if !dead.is_empty() {
            self.check_quorum();
            self.evaluate_all(now);
            for d in &dead {
                self.ask_late(now, *d);
            }
        }
        let expired: Vec<NodeId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(o, _)| *o)
            .collect();
        for owner in expired {
            // Unanswered or denied a while ago: we may ask again about this failure.
            let not_yet = self.pending.remove(&owner).is_some_and(|p| p.not_yet);
            self.asked.retain(|(o, _)| *o != owner);
            self.evaluate(now, owner);
            // If the replier has assumed the group meanwhile, ask it now (a final "assumed"
            // answer is not asked again).
            if not_yet {
                self.ask_late(now, owner);
            }
        }
        self.granted.retain(|_, g| g.2 > now);
    }

    /// The cluster link went down or came up.
    pub fn handle_link_event(&mut self, now: Time, up: bool) {
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        if up {
            // Re-synchronise before assuming anything: solicit, and wait as at boot.
            self.eligible = false;
            self.send(Dest::All, Body::Solicit { target: None });
            self.timers[Timer::BootWait as usize] = Some(now + self.cfg.boot_wait);
        }
    }

    /// A command from the IO layer. Like every input it carries the time, which no command
    /// needs today.
    pub fn command(&mut self, _now: Time, cmd: Command) {
        match cmd {
            Command::Shutdown => {
                self.leaving = true;
                for (owner, epoch) in std::mem::take(&mut self.held) {
                    let addresses = self.addresses_of(owner);
                    self.actions.push_back(Action::ReleaseAddress {
                        owner,
                        epoch,
                        addresses,
                    });
                }
                self.send(
                    Dest::All,
                    Body::Heartbeat {
                        holdings: Vec::new(),
                        heard: Vec::new(),
                    },
                );
                self.timers = [None; TIMERS];
            }
            Command::Solicit => self.send(Dest::All, Body::Solicit { target: None }),
        }
    }

    /// The IO layer is ready to hand `owner`'s group back: under `Migrate` it has frozen and
    /// sent every connection; under `NewConnections`, `draining` are the connections it keeps
    /// serving (the owner forwards their packets here).
    pub fn handback_ready(&mut self, _now: Time, owner: NodeId, draining: Vec<FourTuple>) {
        let Some((new_epoch, mode)) = self.handing_back.remove(&owner) else {
            return;
        };
        self.finish_handback(owner, new_epoch, mode, draining);
    }

    /// The IO layer has split `owner`'s connections into shares (`spread`, as the node with
    /// share 0 and the addresses): share `k` goes to the `k`-th node of
    /// [`Action::AssumeConnections`]'s `shares`, which is granted exactly that list. `None`
    /// when the lists do not fit a datagram: shares then go by [`FourTuple::share`].
    pub fn assigned(&mut self, owner: NodeId, shares: Option<Vec<Vec<FourTuple>>>) {
        if !self.held.contains_key(&owner) {
            return;
        }
        self.assignments.insert(owner, shares);
        let waiting: Vec<_> = self
            .awaiting
            .iter()
            .filter(|w| w.0 == owner)
            .copied()
            .collect();
        self.awaiting.retain(|w| w.0 != owner);
        for (owner, from, request_id, index) in waiting {
            self.grant_share(owner, from, request_id, index);
        }
    }

    fn grant_share(&mut self, owner: NodeId, from: NodeId, request_id: u32, index: u16) {
        let of = self.candidates(owner).len() as u16;
        let scope = match self.assignments.get(&owner) {
            Some(Some(lists)) => match lists.get(index as usize) {
                Some(l) => Scope::Connections(l.clone()),
                None => {
                    let reply = AssumeReply {
                        owner,
                        request_id,
                        scope: Scope::Share { index, of },
                        reason: DenyReason::ShareMismatch,
                    };
                    self.send(Dest::Node(from), Body::AssumeDeny(reply));
                    return;
                }
            },
            _ => Scope::Share { index, of },
        };
        self.send(
            Dest::Node(from),
            Body::AssumeGrant(AssumeReply {
                owner,
                request_id,
                scope,
                reason: DenyReason::None,
            }),
        );
    }

    /// The connections of `owner`'s handed-back group still draining here changed (some
    /// closed): the owner is told the new set (it stops forwarding the others).
    pub fn draining(&mut self, owner: NodeId, connections: Vec<FourTuple>) {
        let Some(h) = self.handed_back.get_mut(&owner) else {
            return;
        };
        if h.mode != FailbackMode::NewConnections
            || self.groups.get(&owner).is_none_or(|g| g.epoch != h.epoch)
        {
            return;
        }
        h.draining = connections;
        h.generation += 1;
        let h = h.clone();
        self.send_handback(&h);
    }

    /// Sends a HANDBACK to its owner, in as many parts as its draining set needs.
    fn send_handback(&mut self, h: &Handback) {
        for part in crate::handback::split(h) {
            self.send(Dest::Node(h.owner), Body::Handback(part));
        }
    }

    // -----------------------------------------------------------------------------------------
    // Decisions

    fn check_eligible(&mut self, now: Time) {
        if self.eligible || self.cfg.expected_peers.is_empty() {
            return;
        }
        let all = self.cfg.expected_peers.iter().all(|p| {
            self.members
                .get(p)
                .is_some_and(|m| m.alive && m.ownership.is_some())
        });
        if all {
            self.become_eligible(now);
        }
    }

    fn become_eligible(&mut self, now: Time) {
        if self.eligible || !self.link_up || self.leaving || self.stepped_down {
            return;
        }
        self.eligible = true;
        self.timers[Timer::BootWait as usize] = None;
        self.actions.push_back(Action::Event(Event::Eligible));
        self.evaluate_all(now);
        self.maybe_reclaim(now);
    }

    fn can_assume(&self) -> bool {
        self.eligible && self.link_up && !self.leaving && !self.stepped_down
    }

    /// With a witness in the cluster (a member that owns nothing and backs nobody up), a node
    /// that hears nobody, directly or through a peer's report, is a minority of one: the others
    /// may well be assuming its groups right now. It lets them go (silently, as when fenced)
    /// and assumes nothing until it hears a peer again. Without a witness, a lone node keeps
    /// what it holds: it cannot tell that it is the one cut off.
    fn check_quorum(&mut self) {
        if self.stepped_down
            || !self.link_up
            || self.leaving
            || self.cfg.ownership.addresses.is_empty()
            || self.members.values().any(|m| m.alive)
        {
            return;
        }
        let witness = self.members.values().any(|m| {
            m.ownership
                .as_ref()
                .is_some_and(|o| o.addresses.is_empty() && o.policy.backups.is_empty())
        });
        if !witness {
            return;
        }
        self.stepped_down = true;
        self.eligible = false;
        self.pending.clear();
        let mut released = Vec::new();
        for (owner, epoch) in std::mem::take(&mut self.held) {
            self.assignments.remove(&owner);
            self.handing_back.remove(&owner);
            let addresses = self.addresses_of(owner);
            self.actions.push_back(Action::ReleaseAddress {
                owner,
                epoch,
                addresses,
            });
            self.actions
                .push_back(Action::DiscardStale { owner, epoch });
            released.push(owner);
        }
        self.actions
            .push_back(Action::Event(Event::SteppedDown { released }));
    }

    fn ownership_of(&self, owner: NodeId) -> Option<&Ownership> {
        if owner == self.id() {
            Some(&self.cfg.ownership)
        } else {
            self.members.get(&owner).and_then(|m| m.ownership.as_ref())
        }
    }

    fn addresses_of(&self, owner: NodeId) -> Vec<OwnedAddress> {
        self.ownership_of(owner)
            .map(|o| o.addresses.clone())
            .unwrap_or_default()
    }

    fn alive(&self, id: NodeId) -> bool {
        id == self.id() || self.members.get(&id).is_some_and(|m| m.alive)
    }

    /// Whether nobody live holds the group.
    fn orphaned(&self, owner: NodeId) -> bool {
        let Some(g) = self.groups.get(&owner) else {
            // Never held: the owner claims it itself once it is eligible; nobody else may while
            // it is alive.
            return owner == self.id() || !self.alive(owner);
        };
        let h = g.epoch.holder;
        if h == self.id() {
            return !self.held.contains_key(&owner);
        }
        if g.released {
            return true;
        }
        !self
            .members
            .get(&h)
            .is_some_and(|m| m.alive && m.boot_epoch == g.holder_boot)
    }

    /// The group's candidates in policy order that are alive and eligible: the owner, then its
    /// backups.
    fn candidates(&self, owner: NodeId) -> Vec<NodeId> {
        let Some(rec) = self.ownership_of(owner) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        std::iter::once(owner)
            .chain(rec.policy.backups.iter().copied())
            .filter(|n| seen.insert(*n))
            .filter(|n| {
                if *n == self.id() {
                    self.can_assume()
                } else {
                    self.members.get(n).is_some_and(|m| m.alive && m.eligible)
                }
            })
            .collect()
    }

    fn evaluate_all(&mut self, now: Time) {
        let mut owners: BTreeSet<NodeId> = self.groups.keys().copied().collect();
        owners.insert(self.id());
        owners.extend(
            self.members
                .iter()
                .filter(|(_, m)| m.ownership.is_some())
                .map(|(id, _)| *id),
        );
        for o in owners {
            self.evaluate(now, o);
        }
    }

    /// Decides what to do about one group.
    fn evaluate(&mut self, now: Time, owner: NodeId) {
        if !self.can_assume() || self.held.contains_key(&owner) || !self.orphaned(owner) {
            return;
        }
        // Only groups we have the record of can be assumed (we need their addresses).
        if self.ownership_of(owner).is_none() {
            return;
        }
        let cands = self.candidates(owner);
        let Some(pos) = cands.iter().position(|c| *c == self.id()) else {
            return;
        };
        let spread = self
            .ownership_of(owner)
            .is_some_and(|o| o.policy.assignment == Assignment::Spread)
            && owner != self.id();
        if pos == 0 {
            let scope = if spread && cands.len() > 1 {
                Scope::Share {
                    index: 0,
                    of: cands.len() as u16,
                }
            } else {
                Scope::All
            };
            // A grant we gave away for this group stands until it expires.
            if self.granted.get(&owner).is_some_and(|g| g.1 == Scope::All) {
                return;
            }
            self.assume(owner, scope);
        } else {
            let prev = self.groups.get(&owner).map(|g| g.epoch).unwrap_or_default();
            self.want(now, owner, prev);
        }
    }

    /// When we declare `owner` dead after another candidate has already assumed its group (its
    /// TAKEOVER-NOTICE came first), we still ask that assumer, once for this failure (claim
    /// 10): for our share under `spread`; otherwise we are denied, and exactly one node holds
    /// the group.
    fn ask_late(&mut self, now: Time, owner: NodeId) {
        if owner == self.id() || self.orphaned(owner) {
            return;
        }
        if let Some(g) = self.groups.get(&owner).copied()
            && g.epoch.holder != owner
        {
            self.want(now, owner, g.epoch);
        }
    }

    /// A lower-ranked candidate that wants a group whose holder (at `prev`) failed asks the
    /// highest-ranked live candidate, once per failure (claim 10: "sending from the third system
    /// to the second system a request to assume the connection").
    fn want(&mut self, now: Time, owner: NodeId, prev: Epoch) {
        if !self.can_assume()
            || prev.holder == self.id()
            || self.held.contains_key(&owner)
            || self.shares.contains_key(&owner)
            || self.pending.contains_key(&owner)
            || self.asked.contains(&(owner, prev))
        {
            return;
        }
        let cands = self.candidates(owner);
        let Some(pos) = cands.iter().position(|c| *c == self.id()) else {
            return;
        };
        if pos == 0 {
            return;
        }
        let spread = self
            .ownership_of(owner)
            .is_some_and(|o| o.policy.assignment == Assignment::Spread);
        let top = cands[0];
        let scope = if spread {
            Scope::Share {
                index: pos as u16,
                of: cands.len() as u16,
            }
        } else {
            Scope::All
        };
        self.asked.insert((owner, prev));
        let request_id = self.rng.next_u64() as u32;
        let (iv, miss) = self.peer_interval(top);
        self.pending.insert(
            owner,
            Pending {
                to: top,
                request_id,
                scope: scope.clone(),
                deadline: now + iv * miss,
                tries: 1,
                not_yet: true,
            },
        );
        self.actions
            .push_back(Action::Event(Event::Requested { owner, to: top }));
        let known = self.groups.get(&owner).map_or(
            Holding {
                owner,
                epoch: prev,
                holder_boot: 0,
            },
            |g| Holding {
                owner,
                epoch: g.epoch,
                holder_boot: g.holder_boot,
            },
        );
        self.send(
            Dest::Node(top),
            Body::AssumeRequest(AssumeRequest {
                owner,
                request_id,
                scope,
                known,
            }),
        );
    }

    fn assume(&mut self, owner: NodeId, scope: Scope) {
        let counter = self.groups.get(&owner).map_or(0, |g| g.epoch.counter) + 1;
        let epoch = Epoch {
            counter,
            holder: self.id(),
        };
        let with_addresses = matches!(scope, Scope::All | Scope::Share { index: 0, .. });
        let Some(rec) = self.ownership_of(owner).cloned() else {
            return;
        };
        self.pending.remove(&owner);
        // claim 1: assume the connection(s) for the failed system. The connections come first:
        // the IO layer re-creates them before the address exists, so that no packet for them
        // ever meets a kernel without their sockets.
        let shares = if matches!(scope, Scope::Share { index: 0, .. }) {
            self.candidates(owner)
        } else {
            Vec::new()
        };
        self.actions.push_back(Action::AssumeConnections {
            owner,
            epoch,
            scope: scope.clone(),
            shares,
        });
        if with_addresses {
            self.held.insert(owner, epoch);
            self.assignments.remove(&owner);
            self.groups.insert(
                owner,
                GroupView {
                    epoch,
                    holder_boot: self.cfg.boot_epoch,
                    released: false,
                },
            );
            self.actions.push_back(Action::ClaimAddress {
                owner,
                epoch,
                addresses: rec.addresses.clone(),
                arp: rec.arp,
            });
        } else {
            let e = self.groups.get(&owner).map(|g| g.epoch).unwrap_or(epoch);
            self.shares.insert(owner, (e, scope.clone()));
        }
        let addresses = if with_addresses {
            rec.addresses.iter().map(|a| a.addr).collect()
        } else {
            Vec::new()
        };
        self.send(
            Dest::All,
            Body::TakeoverNotice(TakeoverNotice {
                owner,
                epoch,
                scope,
                addresses,
            }),
        );
    }

    fn on_assume_request(&mut self, now: Time, from: NodeId, r: AssumeRequest) {
        let owner = r.owner;
        if r.known.owner == owner {
            self.observe(owner, r.known.epoch, r.known.holder_boot);
        }
        // We may hold it below an epoch whose holder the requester says is gone.
        self.reassert(owner);
        // Perhaps we are the rightful assumer and have not noticed yet.
        self.evaluate(now, owner);
        let reply = |reason: DenyReason| AssumeReply {
            owner,
            request_id: r.request_id,
            scope: r.scope.clone(),
            reason,
        };
        let cands = self.candidates(owner);
        let grant = if self.held.contains_key(&owner) {
            match r.scope {
                Scope::Share { index, of } if index != 0 && of as usize == cands.len() => Ok(()),
                Scope::Share { .. } => Err(DenyReason::ShareMismatch),
                _ => Err(DenyReason::Assumed),
            }
        } else if !self.orphaned(owner) {
            Err(DenyReason::HolderAlive)
        } else if self.granted.get(&owner).is_some_and(|g| g.0 != from) {
            // Exactly one: leave was already given to another node.
            Err(DenyReason::Assumed)
        } else {
            match cands.first() {
                // We cannot assume it ourselves, and in our view the requester ranks first.
                Some(top) if *top == from => Ok(()),
                Some(_) => Err(DenyReason::Assumed),
                None => Ok(()),
            }
        };
        if grant.is_ok()
            && self.held.contains_key(&owner)
            && let Scope::Share { index, .. } = r.scope
        {
            if self.assignments.contains_key(&owner) {
                self.grant_share(owner, from, r.request_id, index);
            } else if !self
                .awaiting
                .iter()
                .any(|w| w.0 == owner && w.1 == from && w.2 == r.request_id)
            {
                // Granted once the IO layer has split the connections.
                self.awaiting.push((owner, from, r.request_id, index));
            }
            return;
        }
        match grant {
            Ok(()) => {
                let (iv, miss) = self.peer_interval(from);
                if r.scope == Scope::All {
                    self.granted
                        .insert(owner, (from, r.scope.clone(), now + iv * (miss + 1)));
                }
                self.send(Dest::Node(from), Body::AssumeGrant(reply(DenyReason::None)));
            }
            Err(reason) => self.send(Dest::Node(from), Body::AssumeDeny(reply(reason))),
        }
    }

    fn on_assume_reply(&mut self, now: Time, from: NodeId, r: AssumeReply, granted: bool) {
        let Some(p) = self.pending.get(&r.owner) else {
            return;
        };
        if p.to != from || p.request_id != r.request_id {
            return;
        }
        let p = self.pending.remove(&r.owner).expect("checked");
        self.actions.push_back(Action::Event(Event::Answered {
            owner: r.owner,
            from,
            granted,
        }));
        if granted {
            // A share may be granted as the holder's explicit list of connections.
            let scope = match (&p.scope, &r.scope) {
                (Scope::Share { .. }, Scope::Connections(_)) => r.scope.clone(),
                _ => p.scope.clone(),
            };
            if self.can_assume()
                && (self.orphaned(r.owner) || matches!(p.scope, Scope::Share { .. }))
            {
                self.assume(r.owner, scope);
            }
        } else {
            // Denied: do not ask again before the replier would have noticed a failure.
            let (iv, miss) = self.peer_interval(from);
            self.pending.insert(
                r.owner,
                Pending {
                    deadline: now + iv * miss,
                    tries: p.tries + 1,
                    not_yet: r.reason == DenyReason::HolderAlive,
                    ..p
                },
            );
        }
    }

    /// A returning owner with a non-`none` failback asks its group's holder for it.
    fn maybe_reclaim(&mut self, now: Time) {
        let me = self.id();
        if !self.can_assume() || self.held.contains_key(&me) {
            return;
        }
        if self.cfg.ownership.policy.failback == FailbackMode::None {
            return;
        }
        let Some(g) = self.groups.get(&me).copied() else {
            return;
        };
        if g.epoch.holder == me || self.orphaned(me) {
            return;
        }
        let iv = self.cfg.interval();
        if self.reclaimed_at.is_some_and(|t| now < t + iv * 2) {
            return;
        }
        self.reclaimed_at = Some(now);
        self.send(
            Dest::Node(g.epoch.holder),
            Body::Reclaim(Reclaim {
                owner: me,
                held: g.epoch,
            }),
        );
    }

    fn on_reclaim(&mut self, from: NodeId, r: Reclaim) {
        if r.owner != from {
            return;
        }
        let Some(epoch) = self.held.get(&from).copied() else {
            // We handed it back already and the HANDBACK was lost: send it again.
            if let Some(h) = self.handed_back.get(&from).cloned()
                && self.groups.get(&from).is_some_and(|g| g.epoch == h.epoch)
            {
                self.send_handback(&h);
            }
            return;
        };
        let mode = self
            .ownership_of(from)
            .map(|o| o.policy.failback)
            .unwrap_or_default();
        let new_epoch = Epoch {
            counter: epoch.counter + 1,
            holder: from,
        };
        match mode {
            FailbackMode::None => {}
            FailbackMode::NewConnections | FailbackMode::Migrate => {
                if self.handing_back.insert(from, (new_epoch, mode)).is_none() {
                    self.actions
                        .push_back(Action::HandBack { owner: from, mode });
                }
            }
        }
    }

    fn finish_handback(
        &mut self,
        owner: NodeId,
        epoch: Epoch,
        mode: FailbackMode,
        draining: Vec<FourTuple>,
    ) {
        let Some(mine) = self.held.remove(&owner) else {
            return;
        };
        self.assignments.remove(&owner);
        let addresses = self.addresses_of(owner);
        self.actions.push_back(Action::ReleaseAddress {
            owner,
            epoch: mine,
            addresses,
        });
        let holder_boot = self.members.get(&owner).map_or(0, |m| m.boot_epoch);
        self.groups.insert(
            owner,
            GroupView {
                epoch,
                holder_boot,
                released: false,
            },
        );
        let h = Handback {
            owner,
            epoch,
            mode,
            generation: 0,
            part: 0,
            parts: 1,
            draining,
        };
        self.handed_back.insert(owner, h.clone());
        self.send_handback(&h);
    }

    fn on_handback(&mut self, from: NodeId, h: Handback) {
        let me = self.id();
        if h.owner != me || h.epoch.holder != me {
            return;
        }
        // A repeat for the epoch we hold: the assumer's draining set changed.
        if self.held.get(&me) == Some(&h.epoch) {
            if h.mode == FailbackMode::NewConnections {
                self.actions.push_back(Action::Forward {
                    owner: me,
                    to: from,
                    connections: h.draining,
                });
            }
            return;
        }
        // Highest epoch wins, whoever sends it: everyone else adopts it from our notice.
        if self.groups.get(&me).is_some_and(|g| g.epoch >= h.epoch) {
            return;
        }
        self.held.insert(me, h.epoch);
        self.groups.insert(
            me,
            GroupView {
                epoch: h.epoch,
                holder_boot: self.cfg.boot_epoch,
                released: false,
            },
        );
        let rec = self.cfg.ownership.clone();
        // claims 5/14/19: responsibility returns to the first system.
        match h.mode {
            FailbackMode::Migrate => self.actions.push_back(Action::AssumeConnections {
                owner: me,
                epoch: h.epoch,
                scope: Scope::All,
                shares: Vec::new(),
            }),
            // Before the address: the draining connections' packets must never meet our
            // kernel, which has no socket for them and would reset them.
            FailbackMode::NewConnections if !h.draining.is_empty() => {
                self.actions.push_back(Action::Forward {
                    owner: me,
                    to: from,
                    connections: h.draining,
                })
            }
            _ => {}
        }
        self.actions.push_back(Action::ClaimAddress {
            owner: me,
            epoch: h.epoch,
            addresses: rec.addresses.clone(),
            arp: rec.arp,
        });
        self.send(
            Dest::All,
            Body::TakeoverNotice(TakeoverNotice {
                owner: me,
                epoch: h.epoch,
                scope: Scope::All,
                addresses: rec.addresses.iter().map(|a| a.addr).collect(),
            }),
        );
    }
}
