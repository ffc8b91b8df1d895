//! Wire formats of the cluster control protocol, in the style of smoltcp.
//!
//! Read [`Packet`] (the fixed header, a zero-copy view with a [`field`] module of byte ranges) and
//! [`Message`] (the representation: header fields plus a typed [`Body`], with `parse`, `emit` and
//! `buffer_len`) first. `PROTOCOL.md` beside this crate documents every byte for people writing
//! other implementations or a dissector.
//!
//! Every message is `header (32 bytes) | body (length bytes) | HMAC-SHA256 tag (32 bytes)`, all
//! integers big-endian. [`Packet::check_len`] is the contract: once it returns `Ok`, no accessor
//! panics. Body parsing is bounds-checked throughout: malformed input is an `Err`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::policy::{
    ArpPolicy, Assignment, Epoch, FailbackMode, FailoverPolicy, NodeId, OwnedAddress, Ownership,
    SnoopMode,
};

/// `"HFST"`.
pub const MAGIC: u32 = 0x4846_5354;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Length of the HMAC-SHA256 tag that ends every message.
pub const TAG_LEN: usize = 32;
/// The largest body accepted (a CONN-STATE with its queues and checkpoint).
pub const MAX_BODY: usize = 1 << 20;

/// Byte ranges of the fixed header.
pub mod field {
    /// A byte range within a message.
    pub type Field = core::ops::Range<usize>;
    /// Magic, `"HFST"`.
    pub const MAGIC: Field = 0..4;
    /// Protocol version.
    pub const VERSION: usize = 4;
    /// Message type.
    pub const TYPE: usize = 5;
    /// Flags (type-specific; see PROTOCOL.md).
    pub const FLAGS: Field = 6..8;
    /// Cluster id.
    pub const CLUSTER: Field = 8..12;
    /// Sender's node id.
    pub const SENDER: Field = 12..16;
    /// Sender's boot epoch.
    pub const BOOT_EPOCH: Field = 16..20;
    /// Sequence number within the boot epoch.
    pub const SEQ: Field = 20..28;
    /// Body length.
    pub const LENGTH: Field = 28..32;
    /// Start of the body.
    pub const BODY: usize = 32;
}

/// Why a buffer is not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than its header and tag, or than its length field says.
    #[error("truncated")]
    Truncated,
    /// The magic is not `HFST`.
    #[error("bad magic")]
    BadMagic,
    /// A version this implementation does not speak.
    #[error("unsupported version")]
    BadVersion,
    /// An unknown message type.
    #[error("unknown message type")]
    UnknownType,
    /// A field holds a value it may not (an unknown enum value, bad UTF-8, trailing bytes...).
    #[error("malformed body")]
    Malformed,
    /// Longer than its length field says, or the body is over [`MAX_BODY`].
    #[error("bad length")]
    BadLength,
}

/// Message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MsgType {
    /// A node's ownership information and holdings.
    Announce = 1,
    /// Asks peers to announce.
    Solicit = 2,
    /// Liveness, with holdings.
    Heartbeat = 3,
    /// Asks the higher-ranked candidate for leave to assume.
    AssumeRequest = 4,
    /// Leave to assume.
    AssumeGrant = 5,
    /// Refusal to let the requester assume.
    AssumeDeny = 6,
    /// "I assumed X's addresses or connections at epoch E".
    TakeoverNotice = 7,
    /// The assumer hands a group back to its returning owner.
    Handback = 8,
    /// A returning owner asks for its group back.
    Reclaim = 9,
    /// One TCP connection's transferable state.
    ConnState = 10,
    /// A backup asks the holder for client bytes its snooped copy lacks.
    Fetch = 11,
    /// The holder's answer to a FETCH.
    Fetched = 12,
}

impl MsgType {
    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Announce,
            2 => Self::Solicit,
            3 => Self::Heartbeat,
            4 => Self::AssumeRequest,
            5 => Self::AssumeGrant,
            6 => Self::AssumeDeny,
            7 => Self::TakeoverNotice,
            8 => Self::Handback,
            9 => Self::Reclaim,
            10 => Self::ConnState,
            11 => Self::Fetch,
            12 => Self::Fetched,
            _ => return None,
        })
    }

    /// Upper-case name as in PROTOCOL.md.
    pub fn name(self) -> &'static str {
        match self {
            Self::Announce => "ANNOUNCE",
            Self::Solicit => "SOLICIT",
            Self::Heartbeat => "HEARTBEAT",
            Self::AssumeRequest => "ASSUME-REQUEST",
            Self::AssumeGrant => "ASSUME-GRANT",
            Self::AssumeDeny => "ASSUME-DENY",
            Self::TakeoverNotice => "TAKEOVER-NOTICE",
            Self::Handback => "HANDBACK",
            Self::Reclaim => "RECLAIM",
            Self::ConnState => "CONN-STATE",
            Self::Fetch => "FETCH",
            Self::Fetched => "FETCHED",
        }
    }
}

/// A read/write view of a message's fixed header, body and tag.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer and checks its length ([`Packet::check_len`]).
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the buffer holds a header, exactly `length` body bytes and a tag. After
    /// `Ok`, no accessor panics.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN + TAG_LEN {
            return Err(Error::Truncated);
        }
        let len = be32(&b[field::LENGTH]) as usize;
        if len > MAX_BODY {
            return Err(Error::BadLength);
        }
        match b.len().cmp(&(HEADER_LEN + len + TAG_LEN)) {
            std::cmp::Ordering::Less => Err(Error::Truncated),
            std::cmp::Ordering::Greater => Err(Error::BadLength),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// The magic field.
    pub fn magic(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::MAGIC])
    }
    /// The version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }
    /// The raw message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    /// The flags field.
    pub fn flags(&self) -> u16 {
        be16(&self.buffer.as_ref()[field::FLAGS])
    }
    /// The cluster id.
    pub fn cluster(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::CLUSTER])
    }
    /// The sender's node id.
    pub fn sender(&self) -> NodeId {
        NodeId(be32(&self.buffer.as_ref()[field::SENDER]))
    }
    /// The sender's boot epoch.
    pub fn boot_epoch(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::BOOT_EPOCH])
    }
    /// The sequence number.
    pub fn seq(&self) -> u64 {
        be64(&self.buffer.as_ref()[field::SEQ])
    }
    /// The body length.
    pub fn length(&self) -> u32 {
        be32(&self.buffer.as_ref()[field::LENGTH])
    }
    /// The body.
    pub fn body(&self) -> &[u8] {
        let len = self.length() as usize;
        &self.buffer.as_ref()[field::BODY..field::BODY + len]
    }
    /// Everything the tag covers: header and body.
    pub fn signed(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..b.len() - TAG_LEN]
    }
    /// The tag.
    pub fn tag(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[b.len() - TAG_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn put(&mut self, r: core::ops::Range<usize>, v: &[u8]) {
        self.buffer.as_mut()[r].copy_from_slice(v);
    }
    /// Sets the magic field.
    pub fn set_magic(&mut self, v: u32) {
        self.put(field::MAGIC, &v.to_be_bytes());
    }
    /// Sets the version.
    pub fn set_version(&mut self, v: u8) {
        self.buffer.as_mut()[field::VERSION] = v;
    }
    /// Sets the message type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    /// Sets the flags.
    pub fn set_flags(&mut self, v: u16) {
        self.put(field::FLAGS, &v.to_be_bytes());
    }
    /// Sets the cluster id.
    pub fn set_cluster(&mut self, v: u32) {
        self.put(field::CLUSTER, &v.to_be_bytes());
    }
    /// Sets the sender.
    pub fn set_sender(&mut self, v: NodeId) {
        self.put(field::SENDER, &v.0.to_be_bytes());
    }
    /// Sets the boot epoch.
    pub fn set_boot_epoch(&mut self, v: u32) {
        self.put(field::BOOT_EPOCH, &v.to_be_bytes());
    }
    /// Sets the sequence number.
    pub fn set_seq(&mut self, v: u64) {
        self.put(field::SEQ, &v.to_be_bytes());
    }
    /// Sets the body length.
    pub fn set_length(&mut self, v: u32) {
        self.put(field::LENGTH, &v.to_be_bytes());
    }
    /// The body, mutably (per the length field).
    pub fn body_mut(&mut self) -> &mut [u8] {
        let len = self.length() as usize;
        &mut self.buffer.as_mut()[field::BODY..field::BODY + len]
    }
    /// The tag, mutably.
    pub fn tag_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let n = b.len();
        &mut b[n - TAG_LEN..]
    }
}

// ---------------------------------------------------------------------------------------------
// Body representations

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
    fn from_u8(v: u8) -> Option<Self> {
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

// ---------------------------------------------------------------------------------------------
// Cursor helpers: every read is bounds-checked.

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.b.len() < n {
            return Err(Error::Malformed);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(be16(self.take(2)?))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(be32(self.take(4)?))
    }
    fn bool(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Malformed),
        }
    }
    fn node(&mut self) -> Result<NodeId, Error> {
        Ok(NodeId(self.u32()?))
    }
    fn epoch(&mut self) -> Result<Epoch, Error> {
        Ok(Epoch {
            counter: self.u32()?,
            holder: self.node()?,
        })
    }
    fn ip(&mut self) -> Result<IpAddr, Error> {
        match self.u8()? {
            4 => {
                let o: [u8; 4] = self.take(4)?.try_into().map_err(|_| Error::Malformed)?;
                Ok(IpAddr::V4(Ipv4Addr::from(o)))
            }
            6 => {
                let o: [u8; 16] = self.take(16)?.try_into().map_err(|_| Error::Malformed)?;
                Ok(IpAddr::V6(Ipv6Addr::from(o)))
            }
            _ => Err(Error::Malformed),
        }
    }
    fn sock(&mut self) -> Result<SocketAddr, Error> {
        let ip = self.ip()?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    fn bytes32(&mut self) -> Result<Vec<u8>, Error> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn str8(&mut self) -> Result<String, Error> {
        let n = self.u8()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Error::Malformed)
    }
    /// A count followed by that many items; the count is checked against the bytes left so a
    /// hostile count cannot make us allocate.
    fn list<T>(
        &mut self,
        min_item: usize,
        mut f: impl FnMut(&mut Self) -> Result<T, Error>,
    ) -> Result<Vec<T>, Error> {
        let n = self.u16()? as usize;
        if n * min_item > self.b.len() {
            return Err(Error::Malformed);
        }
        (0..n).map(|_| f(self)).collect()
    }
    fn end(&self) -> Result<(), Error> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed)
        }
    }
}

struct Writer<'a> {
    b: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.b.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }
    fn node(&mut self, v: NodeId) {
        self.u32(v.0);
    }
    fn epoch(&mut self, e: Epoch) {
        self.u32(e.counter);
        self.node(e.holder);
    }
    fn ip(&mut self, ip: &IpAddr) {
        match ip {
            IpAddr::V4(a) => {
                self.u8(4);
                self.b.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.b.extend_from_slice(&a.octets());
            }
        }
    }
    fn sock(&mut self, s: &SocketAddr) {
        self.ip(&s.ip());
        self.u16(s.port());
    }
    fn bytes32(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.b.extend_from_slice(v);
    }
    fn str8(&mut self, s: &str) {
        let s = &s.as_bytes()[..s.len().min(255)];
        self.u8(s.len() as u8);
        self.b.extend_from_slice(s);
    }
    fn count(&mut self, n: usize) {
        self.u16(n.min(u16::MAX as usize) as u16);
    }
}

fn read_tuple(r: &mut Reader<'_>) -> Result<FourTuple, Error> {
    Ok(FourTuple {
        local: r.sock()?,
        remote: r.sock()?,
    })
}

fn write_tuple(w: &mut Writer<'_>, t: &FourTuple) {
    w.sock(&t.local);
    w.sock(&t.remote);
}

fn read_scope(r: &mut Reader<'_>) -> Result<Scope, Error> {
    match r.u8()? {
        0 => Ok(Scope::All),
        1 => {
            let index = r.u16()?;
            let of = r.u16()?;
            if of == 0 || index >= of {
                return Err(Error::Malformed);
            }
            Ok(Scope::Share { index, of })
        }
        2 => Ok(Scope::Connections(r.list(6, read_tuple)?)),
        _ => Err(Error::Malformed),
    }
}

fn write_scope(w: &mut Writer<'_>, s: &Scope) {
    match s {
        Scope::All => w.u8(0),
        Scope::Share { index, of } => {
            w.u8(1);
            w.u16(*index);
            w.u16(*of);
        }
        Scope::Connections(c) => {
            w.u8(2);
            w.count(c.len());
            for t in c.iter().take(u16::MAX as usize) {
                write_tuple(w, t);
            }
        }
    }
}

fn read_holdings(r: &mut Reader<'_>) -> Result<Vec<Holding>, Error> {
    r.list(16, |r| {
        Ok(Holding {
            owner: r.node()?,
            epoch: r.epoch()?,
            holder_boot: r.u32()?,
        })
    })
}

fn write_holdings(w: &mut Writer<'_>, h: &[Holding]) {
    w.count(h.len());
    for x in h.iter().take(u16::MAX as usize) {
        w.node(x.owner);
        w.epoch(x.epoch);
        w.u32(x.holder_boot);
    }
}

fn read_ownership(r: &mut Reader<'_>) -> Result<Ownership, Error> {
    let node_id = r.node()?;
    let failback = FailbackMode::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let snoop = SnoopMode::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let assignment = Assignment::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let miss_count = r.u8()?;
    let heartbeat_ms = r.u32()?;
    if miss_count == 0 || heartbeat_ms == 0 {
        return Err(Error::Malformed);
    }
    let backups = r.list(4, Reader::node)?;
    let arp = ArpPolicy::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let protocol = r.u8()?;
    let port_lo = r.u16()?;
    let port_hi = r.u16()?;
    if port_lo > port_hi {
        return Err(Error::Malformed);
    }
    let application = r.str8()?;
    let addresses = r.list(12, |r| {
        let addr = r.ip()?;
        let prefix = r.u8()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Error::Malformed);
        }
        let mac: [u8; 6] = r.take(6)?.try_into().map_err(|_| Error::Malformed)?;
        Ok(OwnedAddress { addr, prefix, mac })
    })?;
    Ok(Ownership {
        node_id,
        policy: FailoverPolicy {
            backups,
            failback,
            heartbeat_ms,
            miss_count,
            snoop,
            assignment,
        },
        addresses,
        ports: (port_lo, port_hi),
        application,
        arp,
        protocol,
    })
}

fn write_ownership(w: &mut Writer<'_>, o: &Ownership) {
    w.node(o.node_id);
    w.u8(o.policy.failback as u8);
    w.u8(o.policy.snoop as u8);
    w.u8(o.policy.assignment as u8);
    w.u8(o.policy.miss_count);
    w.u32(o.policy.heartbeat_ms);
    w.count(o.policy.backups.len());
    for b in &o.policy.backups {
        w.node(*b);
    }
    w.u8(o.arp as u8);
    w.u8(o.protocol);
    w.u16(o.ports.0);
    w.u16(o.ports.1);
    w.str8(&o.application);
    w.count(o.addresses.len());
    for a in &o.addresses {
        w.ip(&a.addr);
        w.u8(a.prefix);
        w.b.extend_from_slice(&a.mac);
    }
}

fn read_reply(r: &mut Reader<'_>) -> Result<AssumeReply, Error> {
    let owner = r.node()?;
    let request_id = r.u32()?;
    let reason = DenyReason::from_u8(r.u8()?).ok_or(Error::Malformed)?;
    let scope = read_scope(r)?;
    Ok(AssumeReply {
        owner,
        request_id,
        scope,
        reason,
    })
}

fn write_reply(w: &mut Writer<'_>, a: &AssumeReply) {
    w.node(a.owner);
    w.u32(a.request_id);
    w.u8(a.reason as u8);
    write_scope(w, &a.scope);
}

impl Body {
    /// Parses a body of the given type; the whole slice must be consumed.
    pub fn parse(ty: MsgType, body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader { b: body };
        let out = match ty {
            MsgType::Announce => {
                let ownership = read_ownership(&mut r)?;
                let holdings = read_holdings(&mut r)?;
                let relayed = r.list(20, read_ownership)?;
                Self::Announce(Announce {
                    ownership,
                    holdings,
                    relayed,
                })
            }
            MsgType::Solicit => {
                let t = r.u32()?;
                Self::Solicit {
                    target: (t != 0).then_some(NodeId(t)),
                }
            }
            MsgType::Heartbeat => {
                let holdings = read_holdings(&mut r)?;
                let heard = r.list(12, |r| {
                    Ok(Heard {
                        node: r.node()?,
                        boot_epoch: r.u32()?,
                        age_ms: r.u32()?,
                    })
                })?;
                Self::Heartbeat { holdings, heard }
            }
            MsgType::AssumeRequest => {
                let owner = r.node()?;
                let request_id = r.u32()?;
                let known = Holding {
                    owner,
                    epoch: r.epoch()?,
                    holder_boot: r.u32()?,
                };
                let scope = read_scope(&mut r)?;
                Self::AssumeRequest(AssumeRequest {
                    owner,
                    request_id,
                    scope,
                    known,
                })
            }
            MsgType::AssumeGrant => Self::AssumeGrant(read_reply(&mut r)?),
            MsgType::AssumeDeny => Self::AssumeDeny(read_reply(&mut r)?),
            MsgType::TakeoverNotice => {
                let owner = r.node()?;
                let epoch = r.epoch()?;
                let scope = read_scope(&mut r)?;
                let addresses = r.list(5, Reader::ip)?;
                Self::TakeoverNotice(TakeoverNotice {
                    owner,
                    epoch,
                    scope,
                    addresses,
                })
            }
            MsgType::Handback => {
                let owner = r.node()?;
                let epoch = r.epoch()?;
                let mode = FailbackMode::from_u8(r.u8()?).ok_or(Error::Malformed)?;
                let generation = r.u32()?;
                let part = r.u16()?;
                let parts = r.u16()?;
                if part >= parts {
                    return Err(Error::Malformed);
                }
                let draining = r.list(6, read_tuple)?;
                Self::Handback(Handback {
                    owner,
                    epoch,
                    mode,
                    generation,
                    part,
                    parts,
                    draining,
                })
            }
            MsgType::Reclaim => {
                let owner = r.node()?;
                let held = r.epoch()?;
                Self::Reclaim(Reclaim { owner, held })
            }
            MsgType::Fetch => Self::Fetch(Fetch {
                owner: r.node()?,
                tuple: read_tuple(&mut r)?,
                seq: r.u32()?,
                len: r.u32()?,
            }),
            MsgType::Fetched => Self::Fetched(Fetched {
                owner: r.node()?,
                tuple: read_tuple(&mut r)?,
                seq: r.u32()?,
                gone: r.bool()?,
                data: r.bytes32()?,
            }),
            MsgType::ConnState => {
                let owner = r.node()?;
                let epoch = r.epoch()?;
                let has_tuple = r.bool()?;
                let tuple = if has_tuple {
                    Some(FourTuple {
                        local: r.sock()?,
                        remote: r.sock()?,
                    })
                } else {
                    None
                };
                let c = ConnState {
                    owner,
                    epoch,
                    tuple,
                    snd_una: r.u32()?,
                    snd_nxt: r.u32()?,
                    rcv_nxt: r.u32()?,
                    snd_wnd: r.u32()?,
                    rcv_wnd: r.u32()?,
                    mss: r.u16()?,
                    snd_wscale: r.u8()?,
                    rcv_wscale: r.u8()?,
                    sack: r.bool()?,
                    timestamps: r.bool()?,
                    ts_val: r.u32()?,
                    ts_ecr: r.u32()?,
                    fin_received: r.bool()?,
                    fin_sent: r.bool()?,
                    unacked: Vec::new(),
                    checkpoint: Vec::new(),
                };
                let part = ConnStatePart {
                    head: c,
                    unacked_len: r.u32()?,
                    checkpoint_len: r.u32()?,
                    offset: r.u32()?,
                    chunk: r.bytes32()?,
                };
                let total = part.unacked_len as u64 + part.checkpoint_len as u64;
                if part.head.snd_wscale > 14
                    || part.head.rcv_wscale > 14
                    || part.offset as u64 + part.chunk.len() as u64 > total
                {
                    return Err(Error::Malformed);
                }
                Self::ConnState(Box::new(part))
            }
        };
        r.end()?;
        Ok(out)
    }

    /// Appends the body's encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer { b: out };
        match self {
            Self::Announce(a) => {
                write_ownership(&mut w, &a.ownership);
                write_holdings(&mut w, &a.holdings);
                w.count(a.relayed.len());
                for o in a.relayed.iter().take(u16::MAX as usize) {
                    write_ownership(&mut w, o);
                }
            }
            Self::Solicit { target } => w.u32(target.map_or(0, |t| t.0)),
            Self::Heartbeat { holdings, heard } => {
                write_holdings(&mut w, holdings);
                w.count(heard.len());
                for h in heard.iter().take(u16::MAX as usize) {
                    w.node(h.node);
                    w.u32(h.boot_epoch);
                    w.u32(h.age_ms);
                }
            }
            Self::AssumeRequest(a) => {
                w.node(a.owner);
                w.u32(a.request_id);
                w.epoch(a.known.epoch);
                w.u32(a.known.holder_boot);
                write_scope(&mut w, &a.scope);
            }
            Self::AssumeGrant(a) | Self::AssumeDeny(a) => write_reply(&mut w, a),
            Self::TakeoverNotice(t) => {
                w.node(t.owner);
                w.epoch(t.epoch);
                write_scope(&mut w, &t.scope);
                w.count(t.addresses.len());
                for a in &t.addresses {
                    w.ip(a);
                }
            }
            Self::Handback(h) => {
                w.node(h.owner);
                w.epoch(h.epoch);
                w.u8(h.mode as u8);
                w.u32(h.generation);
                w.u16(h.part);
                w.u16(h.parts);
                w.count(h.draining.len());
                for t in h.draining.iter().take(u16::MAX as usize) {
                    write_tuple(&mut w, t);
                }
            }
            Self::Reclaim(r) => {
                w.node(r.owner);
                w.epoch(r.held);
            }
            Self::Fetch(f) => {
                w.node(f.owner);
                write_tuple(&mut w, &f.tuple);
                w.u32(f.seq);
                w.u32(f.len);
            }
            Self::Fetched(f) => {
                w.node(f.owner);
                write_tuple(&mut w, &f.tuple);
                w.u32(f.seq);
                w.u8(f.gone as u8);
                w.bytes32(&f.data);
            }
            Self::ConnState(p) => {
                let c = &p.head;
                w.node(c.owner);
                w.epoch(c.epoch);
                match &c.tuple {
                    Some(t) => {
                        w.u8(1);
                        w.sock(&t.local);
                        w.sock(&t.remote);
                    }
                    None => w.u8(0),
                }
                w.u32(c.snd_una);
                w.u32(c.snd_nxt);
                w.u32(c.rcv_nxt);
                w.u32(c.snd_wnd);
                w.u32(c.rcv_wnd);
                w.u16(c.mss);
                w.u8(c.snd_wscale);
                w.u8(c.rcv_wscale);
                w.u8(c.sack as u8);
                w.u8(c.timestamps as u8);
                w.u32(c.ts_val);
                w.u32(c.ts_ecr);
                w.u8(c.fin_received as u8);
                w.u8(c.fin_sent as u8);
                w.u32(p.unacked_len);
                w.u32(p.checkpoint_len);
                w.u32(p.offset);
                w.bytes32(&p.chunk);
            }
        }
    }

    /// The encoded length of the body.
    pub fn buffer_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit(&mut v);
        v.len()
    }
}

impl Message {
    /// Parses a message whose length was checked. The tag is *not* checked here; see
    /// [`crate::auth::open`].
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Self, Error> {
        p.check_len()?;
        if p.magic() != MAGIC {
            return Err(Error::BadMagic);
        }
        if p.version() != VERSION {
            return Err(Error::BadVersion);
        }
        let ty = MsgType::from_u8(p.msg_type()).ok_or(Error::UnknownType)?;
        Ok(Self {
            flags: p.flags(),
            cluster: p.cluster(),
            sender: p.sender(),
            boot_epoch: p.boot_epoch(),
            seq: p.seq(),
            body: Body::parse(ty, p.body())?,
        })
    }

    /// The full encoded length: header, body and tag.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.buffer_len() + TAG_LEN
    }

    /// Writes header and body into a buffer of exactly [`Message::buffer_len`] bytes; the tag
    /// bytes are left for [`crate::auth::seal`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let mut body = Vec::new();
        self.body.emit(&mut body);
        p.set_magic(MAGIC);
        p.set_version(VERSION);
        p.set_msg_type(self.body.msg_type() as u8);
        p.set_flags(self.flags);
        p.set_cluster(self.cluster);
        p.set_sender(self.sender);
        p.set_boot_epoch(self.boot_epoch);
        p.set_seq(self.seq);
        p.set_length(body.len() as u32);
        p.body_mut().copy_from_slice(&body);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy::FailoverPolicy;

    fn ownership() -> Ownership {
        Ownership {
            node_id: NodeId(1),
            policy: FailoverPolicy {
                backups: vec![NodeId(2), NodeId(3)],
                failback: FailbackMode::Migrate,
                heartbeat_ms: 10,
                miss_count: 3,
                snoop: SnoopMode::Mirror,
                assignment: Assignment::Spread,
            },
            addresses: vec![
                OwnedAddress {
                    addr: "198.18.0.10".parse().unwrap(),
                    prefix: 24,
                    mac: [0x02, 0x68, 0x66, 0, 1, 1],
                },
                OwnedAddress {
                    addr: "2001:db8::10".parse().unwrap(),
                    prefix: 64,
                    mac: [0x00, 0x00, 0x5e, 0, 1, 7],
                },
            ],
            ports: (7, 19),
            application: "echo".into(),
            arp: ArpPolicy::Vmac,
            protocol: 6,
        }
    }

    fn tuple() -> FourTuple {
        FourTuple {
            local: "198.18.0.10:7".parse().unwrap(),
            remote: "198.18.0.100:40000".parse().unwrap(),
        }
    }

    /// One message of every type, with every optional part present.
    pub(crate) fn samples() -> Vec<Message> {
        let e = Epoch {
            counter: 7,
            holder: NodeId(2),
        };
        let h = Holding {
            owner: NodeId(1),
            epoch: e,
            holder_boot: 42,
        };
        let bodies = vec![
            Body::Announce(Announce {
                ownership: ownership(),
                holdings: vec![h],
                relayed: vec![{
                    let mut o = ownership();
                    o.node_id = NodeId(9);
                    o.application = String::new();
                    o.addresses.clear();
                    o
                }],
            }),
            Body::Solicit { target: None },
            Body::Solicit {
                target: Some(NodeId(3)),
            },
            Body::Heartbeat {
                holdings: vec![h, h],
                heard: vec![],
            },
            Body::Heartbeat {
                holdings: vec![],
                heard: vec![Heard {
                    node: NodeId(3),
                    boot_epoch: 7,
                    age_ms: 12,
                }],
            },
            Body::AssumeRequest(AssumeRequest {
                owner: NodeId(1),
                request_id: 0xdead_beef,
                scope: Scope::Share { index: 1, of: 2 },
                known: h,
            }),
            Body::AssumeGrant(AssumeReply {
                owner: NodeId(1),
                request_id: 5,
                scope: Scope::Connections(vec![tuple()]),
                reason: DenyReason::None,
            }),
            Body::AssumeDeny(AssumeReply {
                owner: NodeId(1),
                request_id: 5,
                scope: Scope::All,
                reason: DenyReason::Assumed,
            }),
            Body::TakeoverNotice(TakeoverNotice {
                owner: NodeId(1),
                epoch: e,
                scope: Scope::All,
                addresses: vec![
                    "198.18.0.10".parse().unwrap(),
                    "2001:db8::10".parse().unwrap(),
                ],
            }),
            Body::Handback(Handback {
                owner: NodeId(1),
                epoch: e,
                mode: FailbackMode::NewConnections,
                generation: 3,
                part: 1,
                parts: 2,
                draining: vec![FourTuple {
                    local: "198.18.0.10:7".parse().unwrap(),
                    remote: "198.18.0.100:40000".parse().unwrap(),
                }],
            }),
            Body::Reclaim(Reclaim {
                owner: NodeId(1),
                held: e,
            }),
            Body::Fetch(Fetch {
                owner: NodeId(1),
                tuple: FourTuple {
                    local: "198.18.0.10:7".parse().unwrap(),
                    remote: "198.18.0.100:40000".parse().unwrap(),
                },
                seq: 0xfffffff0,
                len: 4096,
            }),
            Body::Fetched(Fetched {
                owner: NodeId(1),
                tuple: FourTuple {
                    local: "[2001:db8::10]:7".parse().unwrap(),
                    remote: "[2001:db8::100]:40000".parse().unwrap(),
                },
                seq: 77,
                gone: false,
                data: b"missing bytes".to_vec(),
            }),
            Body::ConnState(Box::new(ConnStatePart {
                head: ConnState {
                    owner: NodeId(1),
                    epoch: e,
                    tuple: Some(FourTuple {
                        local: "[2001:db8::10]:7".parse().unwrap(),
                        remote: "[2001:db8::100]:40000".parse().unwrap(),
                    }),
                    snd_una: 1000,
                    snd_nxt: 1010,
                    rcv_nxt: 5000,
                    snd_wnd: 65535,
                    rcv_wnd: 64240,
                    mss: 1460,
                    snd_wscale: 7,
                    rcv_wscale: 9,
                    sack: true,
                    timestamps: true,
                    ts_val: 111,
                    ts_ecr: 222,
                    fin_received: true,
                    fin_sent: false,
                    unacked: Vec::new(),
                    checkpoint: Vec::new(),
                },
                unacked_len: 10,
                checkpoint_len: 3,
                offset: 8,
                chunk: b"89\x01\x02".to_vec(),
            })),
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Message {
                flags: FLAG_ELIGIBLE,
                cluster: 0x4846_0001,
                sender: NodeId(2),
                boot_epoch: 42,
                seq: 100 + i as u64,
                body,
            })
            .collect()
    }

    #[test]
    fn every_type_round_trips_and_writes_every_byte() {
        let mut types = std::collections::BTreeSet::new();
        for m in samples() {
            types.insert(m.body.msg_type());
            let n = m.buffer_len();
            // Emit into a 0xa5-filled buffer and into a zeroed one: equal header and body
            // bytes mean emit wrote every byte.
            let mut a = vec![0xa5u8; n];
            let mut z = vec![0u8; n];
            m.emit(&mut Packet::new_unchecked(&mut a[..]));
            m.emit(&mut Packet::new_unchecked(&mut z[..]));
            assert_eq!(
                a[..n - TAG_LEN],
                z[..n - TAG_LEN],
                "{:?}",
                m.body.msg_type()
            );
            let p = Packet::new_checked(&a[..]).unwrap();
            assert_eq!(Message::parse(&p).unwrap(), m);
            // And sealed, then opened with the key.
            let sealed = crate::auth::seal(&m, b"key");
            assert_eq!(crate::auth::open(&sealed, b"key", m.cluster).unwrap(), m);
        }
        assert_eq!(types.len(), 12, "every message type has a sample");
    }

    #[test]
    fn truncation_at_every_length_is_an_error_never_a_panic() {
        for m in samples() {
            let full = crate::auth::seal(&m, b"key");
            for cut in 0..full.len() {
                assert!(Packet::new_checked(&full[..cut]).is_err());
                assert!(crate::auth::open(&full[..cut], b"key", m.cluster).is_err());
            }
            // A body cut short but with a consistent length field is malformed, not a panic.
            let mut body = Vec::new();
            m.body.emit(&mut body);
            for cut in 0..body.len() {
                assert!(
                    Body::parse(m.body.msg_type(), &body[..cut]).is_err(),
                    "{:?} cut {cut}",
                    m.body.msg_type()
                );
            }
            // Trailing garbage is rejected too.
            body.push(0);
            assert!(Body::parse(m.body.msg_type(), &body).is_err());
        }
    }

    /// A HEARTBEAT from node 2 holding node 1's group and hearing node 1, field by field.
    // captured from: this crate's encoder (seal with key b"key"), then checked by hand against
    // PROTOCOL.md; the tag was recomputed independently with Python's hmac module.
    #[rustfmt::skip]
    const GOLDEN_HEARTBEAT: [u8; 32 + 32 + 32] = [
        0x48, 0x46, 0x53, 0x54,             // magic "HFST"
        0x01,                               // version 1
        0x03,                               // type HEARTBEAT
        0x00, 0x01,                         // flags: ELIGIBLE
        0x48, 0x46, 0x00, 0x01,             // cluster 0x48460001
        0x00, 0x00, 0x00, 0x02,             // sender node 2
        0x00, 0x00, 0x00, 0x2a,             // boot epoch 42
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // seq 9
        0x00, 0x00, 0x00, 0x20,             // body length 32
        // body
        0x00, 0x01,                         // 1 holding
        0x00, 0x00, 0x00, 0x01,             //   owner node 1
        0x00, 0x00, 0x00, 0x07,             //   epoch counter 7
        0x00, 0x00, 0x00, 0x02,             //   epoch holder node 2
        0x00, 0x00, 0x00, 0x2a,             //   holder boot epoch 42
        0x00, 0x01,                         // 1 peer heard
        0x00, 0x00, 0x00, 0x01,             //   node 1
        0x00, 0x00, 0x00, 0x2a,             //   its boot epoch 42
        0x00, 0x00, 0x00, 0x07,             //   last heard 7 ms ago
        // HMAC-SHA256(key = "key", header || body)
        0x55, 0x43, 0x38, 0x49, 0x4c, 0xf9, 0x41, 0x05, 0x4b, 0x6e, 0xa0, 0x27, 0x04, 0x66, 0x60, 0xbd,
        0xff, 0x8f, 0x7a, 0x9a, 0x1d, 0x47, 0x8d, 0x8c, 0x4b, 0x83, 0xb2, 0x30, 0xd8, 0xd9, 0x49, 0x00,
    ];

    fn golden_repr() -> Message {
        Message {
            flags: FLAG_ELIGIBLE,
            cluster: 0x4846_0001,
            sender: NodeId(2),
            boot_epoch: 42,
            seq: 9,
            body: Body::Heartbeat {
                holdings: vec![Holding {
                    owner: NodeId(1),
                    epoch: Epoch {
                        counter: 7,
                        holder: NodeId(2),
                    },
                    holder_boot: 42,
                }],
                heard: vec![Heard {
                    node: NodeId(1),
                    boot_epoch: 42,
                    age_ms: 7,
                }],
            },
        }
    }

    #[test]
    fn deconstruct_golden() {
        let p = Packet::new_checked(&GOLDEN_HEARTBEAT[..]).unwrap();
        assert_eq!(p.magic(), MAGIC);
        assert_eq!(p.version(), 1);
        assert_eq!(p.msg_type(), MsgType::Heartbeat as u8);
        assert_eq!(p.flags(), FLAG_ELIGIBLE);
        assert_eq!(p.cluster(), 0x4846_0001);
        assert_eq!(p.sender(), NodeId(2));
        assert_eq!(p.boot_epoch(), 42);
        assert_eq!(p.seq(), 9);
        assert_eq!(p.length(), 32);
        assert_eq!(Message::parse(&p).unwrap(), golden_repr());
    }

    #[test]
    fn construct_golden() {
        let sealed = crate::auth::seal(&golden_repr(), b"key");
        assert_eq!(sealed[..], GOLDEN_HEARTBEAT[..]);
    }
}
