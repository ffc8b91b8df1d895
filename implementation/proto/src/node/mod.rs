//! The sans-IO node state machine.
//!
//! Read [`Node`] first: feed it datagrams with their source ([`Node::handle_datagram`]), timeouts
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
//!
//! The module's files, one concern each: `inputs.rs` (datagrams, timeouts, link events,
//! commands), `membership.rs` (who is alive, eligibility, stepping down), `epochs.rs` (who
//! holds what, fencing), `arbitration.rs` (who assumes an orphaned group), `failback.rs`
//! (reclaim and handback), `send.rs` (what goes out), `group.rs` (one struct per owner group:
//! its newest epoch and everything this node has under way for it).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::auth::{DropReason, ReplayWindow};
use crate::handback::HandbackParts;
use crate::policy::{ArpPolicy, Epoch, FailbackMode, NodeId, OwnedAddress, Ownership};
use crate::sync::{Assembler, Incomplete};
use crate::time::Time;
use crate::wire::{Body, ConnState, Fetch, Fetched, FourTuple, MsgType, Scope};

use group::Group;

mod arbitration;
mod epochs;
mod failback;
mod group;
mod inputs;
mod membership;
mod send;

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
    /// How long after each HEARTBEAT the IO layer may keep this node heard while its loop is
    /// held (a slow syscall, a long restore): the core seals that many intervals' worth of
    /// spare heartbeats with it ([`Action::SpareHeartbeats`], at most [`MAX_SPARES`]). Zero:
    /// none, and a loop held for `miss_count` intervals is declared dead by its peers.
    pub reserve: Duration,
}

/// The most spare heartbeats sealed with one HEARTBEAT (each costs an HMAC).
pub const MAX_SPARES: u32 = 20;

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
    /// The cluster link went down: take the addresses off the interface at once, so that
    /// nothing stale (a window probe, an ARP request from the address) leaves this node when
    /// the link returns while another node may have taken them over. The group stays held:
    /// [`Action::ReinstateAddress`] follows once this node is eligible again, unless a higher
    /// epoch fenced it meanwhile ([`Action::ReleaseAddress`] then).
    WithdrawAddress {
        /// Whose group.
        owner: NodeId,
        /// The addresses.
        addresses: Vec<OwnedAddress>,
    },
    /// Back on the link and re-synchronised, still holding a withdrawn group: put its
    /// addresses back and announce them.
    ReinstateAddress {
        /// Whose group.
        owner: NodeId,
        /// The addresses and their MACs.
        addresses: Vec<OwnedAddress>,
        /// How to announce.
        arp: ArpPolicy,
    },
    /// ALIVE datagrams sealed in advance (liveness only, in a sequence space of their own): send
    /// `data[k]` to every node at `first + k * interval`, from a thread that does not wait for
    /// the protocol loop. Replaces the previous set (an empty set cancels it). Each HEARTBEAT
    /// comes with a new set whose first is due half an interval after the next HEARTBEAT, so an
    /// ALIVE goes out only while the loop is held: the node is alive (its kernel and serving
    /// threads work on), only its protocol loop is late, and its peers need not assume its
    /// groups. A frozen or dead process sends none; a loop held for good is failed once the
    /// set is spent.
    SpareHeartbeats {
        /// When the first is due.
        first: Time,
        /// The spacing.
        interval: Duration,
        /// The sealed datagrams, in order.
        data: Vec<Vec<u8>>,
    },
    /// `peer` booted (first heard, or with a new boot epoch) and lacks the connections of the
    /// groups this node holds: send it each live connection's state ([`Node::conn_state`]), so
    /// that it can back them up although it never saw their handshakes. A peer that was only
    /// out of touch kept snooping them and is not synced again.
    SyncPeer {
        /// The peer.
        peer: NodeId,
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
    /// The link went down while we held groups: their addresses were withdrawn
    /// ([`Action::WithdrawAddress`]) and come back once we are eligible again.
    withdrawn: bool,
    /// It heard nobody while the cluster has a witness, and let go of what it held: a minority
    /// of one assumes nothing until it hears a peer again.
    stepped_down: bool,
    leaving: bool,
    /// When this node last woke from a pause of its own (its heartbeat timer served more than
    /// an interval late: frozen, or starved of CPU). Until its peers have had a full detection
    /// window since then, their silence proves nothing: what they sent may still be unread.
    resumed: Time,
    members: BTreeMap<NodeId, Member>,
    /// Where each peer's authenticated datagrams come from (the address to answer it at).
    addresses: BTreeMap<NodeId, std::net::SocketAddr>,
    /// Each peer's boot epoch when it was last sent our connections ([`Action::SyncPeer`]).
    synced: BTreeMap<NodeId, u32>,
    /// Every group this node knows of, by owner: who holds it, and what this node has under
    /// way for it.
    groups: BTreeMap<NodeId, Group>,
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
    /// The last sequence number sealed into an ALIVE ([`Action::SpareHeartbeats`]).
    alive_seq: u64,
    /// The peers' ALIVE sequence numbers (a space of their own).
    alive_replay: ReplayWindow,
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
            withdrawn: false,
            stepped_down: false,
            leaving: false,
            resumed: Time::default(),
            members: BTreeMap::new(),
            addresses: BTreeMap::new(),
            synced: BTreeMap::new(),
            groups: BTreeMap::new(),
            prodded: BTreeMap::new(),
            assembler: Assembler::default(),
            handback_parts: HandbackParts::default(),
            reclaimed_at: None,
            timers: [None; TIMERS],
            actions: VecDeque::new(),
            replay: ReplayWindow::default(),
            alive_seq: 0,
            alive_replay: ReplayWindow::default(),
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

    /// The membership table.
    pub fn members(&self) -> &BTreeMap<NodeId, Member> {
        &self.members
    }

    /// Where peer `id`'s authenticated datagrams last came from: the address for a
    /// [`Dest::Node`] send (`None` until one arrived).
    pub fn peer_address(&self, id: NodeId) -> Option<std::net::SocketAddr> {
        self.addresses.get(&id).copied()
    }

    /// Every peer's address, as [`Node::peer_address`] gives them.
    pub fn peer_addresses(&self) -> &BTreeMap<NodeId, std::net::SocketAddr> {
        &self.addresses
    }

    /// Whether this node's addresses are withdrawn because its link went down
    /// ([`Action::WithdrawAddress`]), until it is eligible again.
    pub fn withdrawn(&self) -> bool {
        self.withdrawn
    }

    /// The ownership record of `owner`'s group: ours, or the one its latest ANNOUNCE carried.
    pub fn ownership_of(&self, owner: NodeId) -> Option<&Ownership> {
        if owner == self.id() {
            Some(&self.cfg.ownership)
        } else {
            self.members.get(&owner).and_then(|m| m.ownership.as_ref())
        }
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
        let pending = self
            .groups
            .values()
            .filter_map(|g| g.pending.as_ref())
            .map(|p| p.deadline);
        let grants = self
            .groups
            .values()
            .filter_map(|g| g.granted.as_ref())
            .map(|g| g.2);
        self.timers
            .iter()
            .flatten()
            .copied()
            .chain(member_deadlines)
            .chain(pending)
            .chain(grants)
            .min()
    }
}
