//! The message representations: what each body holds, typed.

use std::net::{IpAddr, SocketAddr};

use super::MsgType;
use crate::policy::{Epoch, FailbackMode, NodeId, Ownership};

/// One group a node holds: the owner whose addresses it serves, and at which epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Holding {
    /// The group's owner.
    pub owner: NodeId,
    /// The takeover epoch (which names the holder).
    pub epoch: Epoch,
    /// The holder's boot epoch when it took the group: a holder that rebooted since holds
    /// nothing.
    pub holder_boot: u32,
}

/// One peer the sender of a HEARTBEAT heard itself: how long ago, by the sender's clock. A peer
/// that hears nobody directly can learn from it that a silent peer is cut off from it, not dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Heard {
    /// The peer.
    pub node: NodeId,
    /// Its boot epoch, as the sender knows it.
    pub boot_epoch: u32,
    /// Milliseconds since the sender last received a datagram from it (saturating).
    pub age_ms: u32,
}

/// Flag: the sender is eligible to assume (it has heard its peers or its boot wait passed).
pub const FLAG_ELIGIBLE: u16 = 0x0001;
/// Flag: the sender is leaving (graceful shutdown); treat it as failed at once.
pub const FLAG_LEAVING: u16 = 0x0002;

/// ANNOUNCE: the sender's ownership information and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The ownership record (claims 3, 13, 18).
    pub ownership: Ownership,
    /// The sender's view of every group: the newest epoch it knows for each.
    pub holdings: Vec<Holding>,
    /// Ownership records of owners the sender believes failed, relayed so that a node that
    /// booted after an owner died can still assume its group.
    pub relayed: Vec<Ownership>,
}

/// What an assume request or reply covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The owner's whole set: addresses and connections.
    All,
    /// Connections whose hash modulo `of` is `index` (the `spread` policy).
    Share {
        /// This share.
        index: u16,
        /// Number of shares.
        of: u16,
    },
    /// Single connections.
    Connections(Vec<FourTuple>),
}

/// A TCP connection's addresses, seen from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FourTuple {
    /// The service address (an owned address).
    pub local: SocketAddr,
    /// The client.
    pub remote: SocketAddr,
}

impl FourTuple {
    /// Which of `of` shares this connection belongs to under the `spread` policy: FNV-1a over
    /// the four addresses and ports, the same on every node.
    pub fn share(&self, of: u16) -> u16 {
        if of <= 1 {
            return 0;
        }
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for x in b {
                h ^= *x as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for s in [self.local, self.remote] {
            match s.ip() {
                IpAddr::V4(a) => eat(&a.octets()),
                IpAddr::V6(a) => eat(&a.octets()),
            }
            eat(&s.port().to_be_bytes());
        }
        (h % of as u64) as u16
    }
}

/// ASSUME-REQUEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRequest {
    /// The failed owner.
    pub owner: NodeId,
    /// Echoed in the reply.
    pub request_id: u32,
    /// What the sender wants to assume.
    pub scope: Scope,
    /// The newest holding of the group the sender knows (its holder is, to the sender, gone).
    pub known: Holding,
}

/// Why an assume request was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DenyReason {
    /// Granted (used in ASSUME-GRANT).
    None = 0,
    /// The replier assumes it itself.
    Assumed = 1,
    /// The replier still sees the holder alive.
    HolderAlive = 2,
    /// The request's share does not match the replier's view of the survivors.
    ShareMismatch = 3,
}

impl DenyReason {
    pub(super) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::None,
            1 => Self::Assumed,
            2 => Self::HolderAlive,
            3 => Self::ShareMismatch,
            _ => return None,
        })
    }
}

/// ASSUME-GRANT and ASSUME-DENY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeReply {
    /// The failed owner.
    pub owner: NodeId,
    /// From the request.
    pub request_id: u32,
    /// What is granted or denied.
    pub scope: Scope,
    /// Why (DENY), or [`DenyReason::None`] (GRANT).
    pub reason: DenyReason,
}

/// TAKEOVER-NOTICE: "I assumed `owner`'s addresses or connections at `epoch`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeoverNotice {
    /// Whose group.
    pub owner: NodeId,
    /// The new epoch (its holder is the sender).
    pub epoch: Epoch,
    /// What was assumed.
    pub scope: Scope,
    /// The addresses now answered for by the sender (empty for a share without addresses).
    pub addresses: Vec<IpAddr>,
}

/// HANDBACK: the assumer gives `owner`'s group back; the owner holds it from `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handback {
    /// The group's owner (the receiver).
    pub owner: NodeId,
    /// The epoch the owner holds it at from now on.
    pub epoch: Epoch,
    /// How existing connections are handled.
    pub mode: FailbackMode,
    /// Which draining set this is: the sender counts up each time the set changes.
    pub generation: u32,
    /// This part's index, and how many parts the set comes in (a long list is split over
    /// several datagrams; see `crate::handback`).
    pub part: u16,
    /// How many parts (at least 1).
    pub parts: u16,
    /// Connections that stay on the assumer to drain (`new-connections` mode): the owner
    /// forwards their packets to the sender. Every HANDBACK for the same epoch replaces the
    /// set (the sender repeats it as connections close; empty when all have); here, this
    /// part's share of it.
    pub draining: Vec<FourTuple>,
}

/// RECLAIM: a returning owner asks the holder for its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclaim {
    /// The returning owner (the sender).
    pub owner: NodeId,
    /// The epoch the owner saw the holder hold it at.
    pub held: Epoch,
}

/// FETCH: a backup asks the group's holder for the client bytes `[seq, seq + len)` of a
/// connection, which its snooped copy lacks (a hole: the holder acknowledged bytes the backup
/// never saw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The group the connection belongs to.
    pub owner: NodeId,
    /// The connection.
    pub tuple: FourTuple,
    /// The first missing sequence number (the client's).
    pub seq: u32,
    /// How many bytes.
    pub len: u32,
}

/// FETCHED: the holder's answer to a FETCH: the bytes from `seq` on (a longer range comes in
/// several datagrams, each small enough for one frame), or `gone` when it no longer has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The group the connection belongs to.
    pub owner: NodeId,
    /// The connection.
    pub tuple: FourTuple,
    /// The sequence number of the first byte.
    pub seq: u32,
    /// The holder no longer keeps these bytes: the hole cannot be repaired.
    pub gone: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

/// CONN-STATE: one TCP connection's transferable state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnState {
    /// The group the connection belongs to.
    pub owner: NodeId,
    /// The epoch of the sender's holding.
    pub epoch: Epoch,
    /// The connection.
    pub tuple: Option<FourTuple>,
    /// Oldest unacknowledged sequence number we sent.
    pub snd_una: u32,
    /// Next sequence number we send.
    pub snd_nxt: u32,
    /// Next sequence number we expect.
    pub rcv_nxt: u32,
    /// The peer's advertised window (unscaled bytes).
    pub snd_wnd: u32,
    /// Our advertised window (unscaled bytes).
    pub rcv_wnd: u32,
    /// MSS.
    pub mss: u16,
    /// Window scale we apply to the peer's windows.
    pub snd_wscale: u8,
    /// Window scale the peer applies to ours.
    pub rcv_wscale: u8,
    /// SACK permitted.
    pub sack: bool,
    /// Timestamps in use.
    pub timestamps: bool,
    /// Our last TSval.
    pub ts_val: u32,
    /// Our last TSecr (the peer's last TSval).
    pub ts_ecr: u32,
    /// The peer's FIN was received: it follows `rcv_nxt` (which counts bytes only).
    pub fin_received: bool,
    /// Our FIN was sent: it follows `unacked`, all of which was sent (`snd_nxt` counts bytes
    /// only).
    pub fin_sent: bool,
    /// Bytes sent and not yet acknowledged (starting at `snd_una`).
    pub unacked: Vec<u8>,
    /// The application's checkpoint.
    pub checkpoint: Vec<u8>,
}

/// CONN-STATE on the wire: one part of a connection's state. A state of any size travels as
/// parts that each fit one datagram ([`ConnStatePart::split`]); every part repeats the fixed
/// fields and carries a piece of `unacked` followed by `checkpoint` (`crate::sync` puts them
/// back together).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnStatePart {
    /// Every field of the state; its `unacked` and `checkpoint` are empty here.
    pub head: ConnState,
    /// The length of the whole `unacked`.
    pub unacked_len: u32,
    /// The length of the whole checkpoint.
    pub checkpoint_len: u32,
    /// Where `chunk` starts in `unacked` followed by the checkpoint.
    pub offset: u32,
    /// The bytes of this part.
    pub chunk: Vec<u8>,
}

impl ConnStatePart {
    /// Splits a state into parts whose pieces are at most `chunk` bytes (at least one part,
    /// even when there is nothing to carry). `None` when a byte string is over 4 GB.
    pub fn split(state: &ConnState, chunk: usize) -> Option<Vec<Self>> {
        let unacked_len = u32::try_from(state.unacked.len()).ok()?;
        let checkpoint_len = u32::try_from(state.checkpoint.len()).ok()?;
        let total = state.unacked.len() + state.checkpoint.len();
        u32::try_from(total).ok()?;
        let head = ConnState {
            unacked: Vec::new(),
            checkpoint: Vec::new(),
            ..state.clone()
        };
        let bytes = |from: usize, to: usize| {
            let mut v = Vec::with_capacity(to - from);
            let u = state.unacked.len();
            if from < u {
                v.extend_from_slice(&state.unacked[from..to.min(u)]);
            }
            if to > u {
                v.extend_from_slice(&state.checkpoint[from.max(u) - u..to - u]);
            }
            v
        };
        let chunk = chunk.max(1);
        let mut parts = Vec::new();
        let mut at = 0;
        loop {
            let end = (at + chunk).min(total);
            parts.push(Self {
                head: head.clone(),
                unacked_len,
                checkpoint_len,
                offset: at as u32,
                chunk: bytes(at, end),
            });
            at = end;
            if at >= total {
                return Some(parts);
            }
        }
    }
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// ANNOUNCE.
    Announce(Announce),
    /// SOLICIT: `None` asks every peer.
    Solicit {
        /// The node asked, or every node.
        target: Option<NodeId>,
    },
    /// HEARTBEAT, with the sender's holdings and the peers it hears.
    Heartbeat {
        /// Groups the sender holds.
        holdings: Vec<Holding>,
        /// The live peers the sender heard itself, and how long ago.
        heard: Vec<Heard>,
    },
    /// ASSUME-REQUEST.
    AssumeRequest(AssumeRequest),
    /// ASSUME-GRANT.
    AssumeGrant(AssumeReply),
    /// ASSUME-DENY.
    AssumeDeny(AssumeReply),
    /// TAKEOVER-NOTICE.
    TakeoverNotice(TakeoverNotice),
    /// HANDBACK.
    Handback(Handback),
    /// RECLAIM.
    Reclaim(Reclaim),
    /// CONN-STATE (one part of a connection's state).
    ConnState(Box<ConnStatePart>),
    /// FETCH.
    Fetch(Fetch),
    /// FETCHED.
    Fetched(Fetched),
    /// ALIVE: no body.
    Alive,
}

impl Body {
    /// The message type of this body.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Self::Announce(_) => MsgType::Announce,
            Self::Solicit { .. } => MsgType::Solicit,
            Self::Heartbeat { .. } => MsgType::Heartbeat,
            Self::AssumeRequest(_) => MsgType::AssumeRequest,
            Self::AssumeGrant(_) => MsgType::AssumeGrant,
            Self::AssumeDeny(_) => MsgType::AssumeDeny,
            Self::TakeoverNotice(_) => MsgType::TakeoverNotice,
            Self::Handback(_) => MsgType::Handback,
            Self::Reclaim(_) => MsgType::Reclaim,
            Self::ConnState(_) => MsgType::ConnState,
            Self::Fetch(_) => MsgType::Fetch,
            Self::Fetched(_) => MsgType::Fetched,
            Self::Alive => MsgType::Alive,
        }
    }
}

/// A whole message: header fields and body (the tag is computed on emit, checked in `auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Header flags ([`FLAG_ELIGIBLE`], [`FLAG_LEAVING`]).
    pub flags: u16,
    /// Cluster id.
    pub cluster: u32,
    /// Sender.
    pub sender: NodeId,
    /// Sender's boot epoch.
    pub boot_epoch: u32,
    /// Sequence number within the boot epoch.
    pub seq: u64,
    /// The body.
    pub body: Body,
}
