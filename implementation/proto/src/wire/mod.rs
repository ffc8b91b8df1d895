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
//!
//! The module's files: `header.rs` ([`Packet`], the zero-copy header view and its byte ranges),
//! `body.rs` (the message representations), `cursor.rs` (the bounds-checked reader and writer),
//! `codec.rs` (parsing and emitting every body, and whole messages).

mod body;
mod codec;
mod cursor;
mod header;
#[cfg(test)]
pub(crate) mod tests;

pub use body::*;
pub use header::{Packet, field};

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
    /// Liveness only, sealed in advance and sent while the sender's protocol loop is held.
    Alive = 13,
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
            13 => Self::Alive,
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
            Self::Alive => "ALIVE",
        }
    }
}
