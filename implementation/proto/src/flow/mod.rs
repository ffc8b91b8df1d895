//! The TCP flow model: snooped frames in, each connection's transferable state out.
//!
//! Read [`FlowTable::observe`] first. A backup sees both directions of its primary's service
//! traffic (a mirrored switch port). For every connection to a service address and port it
//! tracks what TCP_REPAIR needs to re-create the connection exactly (claims 7, 8):
//! the handshake options (MSS, window scale, SACK, timestamps), sequence and acknowledgement
//! numbers both ways, windows, the last timestamps, and where each side's FIN is; and it feeds
//! the client's bytes, once the server has acknowledged them, to a shadow replica of the
//! application ([`crate::app`]), so that at takeover the backup holds the application's exact
//! state and output (claim 9).
//!
//! A connection leaves the table only when it has ended: both FINs acknowledged (TIME_WAIT),
//! or a reset. Every other state (SYN seen, established, and all the half-closed states of
//! RFC 9293 3.3.2) is tracked and, at takeover, either carried ([`Snapshot`]) or reported with
//! its reason ([`Lost`]); a connection is never dropped silently.
//!
//! Pure code: no sockets, no clock. Frames are parsed with bounds checks ([`parse`]); anything
//! malformed or uninteresting is ignored.

pub mod parse;
mod snapshot;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

pub use parse::{Segment, parse_tcp, seq_after, seq_at_or_after};
pub use snapshot::Snapshot;
pub use table::{FlowTable, HELD_CAP, HoleCounts, UNKNOWN_CAP};

use crate::app::Replica;
use crate::wire::FourTuple;

/// The bytes stored in `pending` (keyed by stream offset) from offset `from` on, contiguous, up
/// to `until`.
fn contiguous(pending: &BTreeMap<u32, Vec<u8>>, from: u32, until: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < until {
        let Some((k, v)) = pending
            .range(..=at)
            .next_back()
            .filter(|(k, v)| **k + v.len() as u32 > at)
        else {
            break;
        };
        let skip = (at - k) as usize;
        let take = (v.len() - skip).min((until - at) as usize);
        out.extend_from_slice(&v[skip..skip + take]);
        at += take as u32;
    }
    out
}

/// Where a connection stands, seen from the server (the service address): RFC 9293 3.3.2's
/// states, as far as the wire shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// The client's SYN was seen, the server's SYN-ACK not yet.
    SynReceived,
    /// The handshake completed (or the flow was joined from a CONN-STATE); no FIN either way.
    Established,
    /// The server sent its FIN, which the client has not acknowledged; no FIN from the client
    /// acknowledged yet.
    FinWait1,
    /// The client acknowledged the server's FIN; the client still sends.
    FinWait2,
    /// The server acknowledged the client's FIN and has not sent its own.
    CloseWait,
    /// The server sent its FIN first, then acknowledged the client's before its own was
    /// acknowledged (a simultaneous close).
    Closing,
    /// The client closed first; the server sent its FIN too, not yet acknowledged.
    LastAck,
    /// Both FINs acknowledged: the connection is over.
    TimeWait,
    /// A reset ended it.
    Reset,
    /// Seen only mid-stream (no handshake, no CONN-STATE).
    Unknown,
}

impl TcpState {
    /// The name used in status and logs (`CLOSE_WAIT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::SynReceived => "SYN_RECEIVED",
            Self::Established => "ESTABLISHED",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::CloseWait => "CLOSE_WAIT",
            Self::Closing => "CLOSING",
            Self::LastAck => "LAST_ACK",
            Self::TimeWait => "TIME_WAIT",
            Self::Reset => "RESET",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether the connection is over (nothing left to carry).
    pub fn ended(self) -> bool {
        matches!(self, Self::TimeWait | Self::Reset)
    }
}

/// Why a live connection cannot be carried to a new owner exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unrestorable {
    /// The server acknowledged client bytes the snooper never saw: the replica is behind.
    CaptureHole,
    /// Seen only mid-stream: neither the handshake nor a CONN-STATE told its options.
    UnseenHandshake,
    /// The client has not acknowledged output the replica no longer holds.
    ReplicaBehind,
    /// The old owner's FIN is where the replica's output does not end.
    ReplicaDiverged,
    /// The client acknowledged output the replica never produced: another node served the
    /// connection meanwhile (it took over, then died) and this copy is behind what the client
    /// has seen. Continuing would send the wrong bytes at those sequence numbers.
    CopyBehindClient,
}

impl Unrestorable {
    /// The counter name in status (`capture_hole`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::CaptureHole => "capture_hole",
            Self::UnseenHandshake => "unseen_handshake",
            Self::ReplicaBehind => "replica_behind",
            Self::ReplicaDiverged => "replica_diverged",
            Self::CopyBehindClient => "copy_behind_client",
        }
    }
}

/// A connection a takeover cannot carry: which, in which state, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The connection.
    pub tuple: FourTuple,
    /// Its state when it was given up.
    pub state: TcpState,
    /// Why.
    pub reason: Unrestorable,
}

/// What a takeover of a group's addresses finds in the table.
#[derive(Debug, Default)]
pub struct Takeover {
    /// The connections to re-create.
    pub snapshots: Vec<Snapshot>,
    /// The live connections that cannot be made whole (reported, and left to be reset).
    pub lost: Vec<Lost>,
    /// The last SYN (an IP packet) of every connection whose handshake the old owner had not
    /// answered: put back into the new owner's stack once it has the address, it is answered at
    /// once instead of after the client's SYN timer (a second).
    pub syns: Vec<Vec<u8>>,
}

/// One connection, seen from the server (the service address).
#[derive(Debug)]
pub struct Flow {
    /// The connection.
    pub tuple: FourTuple,
    /// Whether the handshake was seen, or its options came in a CONN-STATE (otherwise they are
    /// unknown: not restorable).
    pub complete: bool,
    /// A reset ended it.
    pub reset: bool,
    /// The client's ISN.
    pub client_isn: u32,
    /// The server's ISN.
    pub server_isn: u32,
    /// The client's MSS (what the server may send).
    pub client_mss: u16,
    /// The client's window scale (shift of the client's advertised windows), if negotiated.
    pub client_wscale: Option<u8>,
    /// The server's window scale, if negotiated.
    pub server_wscale: Option<u8>,
    /// SACK permitted both ways.
    pub sack: bool,
    /// Timestamps in use both ways.
    pub timestamps: bool,
    /// The server's next sequence number (highest seq + len seen from the server; its FIN not
    /// counted).
    pub server_nxt: u32,
    /// The server's highest acknowledgement (what it received).
    pub server_ack: u32,
    /// The client's highest acknowledgement.
    pub client_ack: u32,
    /// The client's next sequence number (its FIN not counted).
    pub client_nxt: u32,
    /// The client's last window, unscaled.
    pub client_window: u16,
    /// The server's last window, unscaled.
    pub server_window: u16,
    /// The server's last TSval.
    pub server_tsval: u32,
    /// The client's last TSval.
    pub client_tsval: u32,
    /// The sequence number of the client's FIN, once seen.
    pub client_fin: Option<u32>,
    /// The sequence number of the server's FIN, once seen.
    pub server_fin: Option<u32>,
    /// The server sent its FIN before it had acknowledged one from the client (FIN_WAIT1,
    /// FIN_WAIT2, CLOSING, rather than LAST_ACK).
    server_closed_first: bool,
    /// The client's last SYN, as an IP packet, while the handshake is unanswered.
    syn: Option<Vec<u8>>,
    /// Client bytes seen but not yet acknowledged by the server, by stream offset (sequence
    /// number minus the client's ISN + 1, so the map orders like sequence space).
    pending: BTreeMap<u32, Vec<u8>>,
    /// The replica, fed with the client bytes the server acknowledged.
    pub replica: Replica,
    /// The client's sequence number up to which the replica has its input: `server_ack`,
    /// unless a hole holds it back.
    pub fed: u32,
    /// The last client bytes fed to the replica (up to the table's fetch window), ending at
    /// `fed`: what this node, holding the group, answers a backup's FETCH with.
    history: VecDeque<u8>,
    /// An open hole: the server acknowledged client bytes this copy never saw, `(seq, len)` of
    /// the first missing range. The replica waits at `fed` until it is filled (FETCH).
    pub missing: Option<(u32, u32)>,
    /// The holder no longer has the missing bytes: the hole cannot be repaired.
    pub hole_gone: bool,
}

/// How many of each connection's latest client bytes a node keeps to answer FETCH, unless
/// [`FlowTable::set_fetch_window`] says otherwise.
pub const FETCH_WINDOW: usize = 4 << 20;

/// Why a FETCH cannot be answered from a connection's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryMiss {
    /// Not tracked here.
    Unknown,
    /// Older than what is kept: the hole cannot be repaired.
    Gone,
    /// Not fed yet (this node's own snooper is behind): ask again.
    NotYet,
}

impl Flow {
    /// The server's send-sequence number at output offset 0.
    fn server_base(&self) -> u32 {
        self.server_isn.wrapping_add(1)
    }

    /// The client's send-sequence number at input offset 0.
    fn client_base(&self) -> u32 {
        self.client_isn.wrapping_add(1)
    }

    /// Where the connection stands (see [`TcpState`]).
    pub fn state(&self) -> TcpState {
        if self.reset {
            return TcpState::Reset;
        }
        if !self.complete {
            return TcpState::SynReceived;
        }
        let client_fin_acked = self
            .client_fin
            .is_some_and(|f| seq_after(self.server_ack, f));
        let server_fin_acked = self
            .server_fin
            .is_some_and(|f| seq_after(self.client_ack, f));
        match (
            self.server_fin.is_some(),
            client_fin_acked,
            server_fin_acked,
        ) {
            (false, false, _) => TcpState::Established,
            (false, true, _) => TcpState::CloseWait,
            (true, false, false) => TcpState::FinWait1,
            (true, false, true) => TcpState::FinWait2,
            (true, true, true) => TcpState::TimeWait,
            (true, true, false) if self.server_closed_first => TcpState::Closing,
            (true, true, false) => TcpState::LastAck,
        }
    }

    /// Whether a hole is open (the replica is held back).
    pub fn hole(&self) -> bool {
        self.missing.is_some()
    }

    /// Feeds the replica the client bytes the server has acknowledged, from `fed` on, as far as
    /// this copy has them; keeps them in the history; and records the hole, if the server
    /// acknowledged bytes this copy lacks.
    fn feed(&mut self, window: usize) {
        let data_end = match self.client_fin {
            Some(fin) if seq_after(self.server_ack, fin) => fin,
            _ => self.server_ack,
        };
        let base = self.client_base();
        let until = data_end.wrapping_sub(base);
        let from = self.fed.wrapping_sub(base);
        if from < until {
            let got = contiguous(&self.pending, from, until);
            if !got.is_empty() {
                self.replica.input(&got);
                self.history.extend(&got);
                let over = self.history.len().saturating_sub(window);
                self.history.drain(..over);
                self.fed = self.fed.wrapping_add(got.len() as u32);
            }
        }
        let fed_off = self.fed.wrapping_sub(base);
        self.pending.retain(|k, v| *k + v.len() as u32 > fed_off);
        self.missing = seq_after(data_end, self.fed).then(|| {
            let next = self
                .pending
                .range(fed_off..)
                .next()
                .map_or(until, |(k, _)| *k)
                .min(until);
            (self.fed, next - fed_off)
        });
    }

    /// Every range `(seq, len)` the replica still needs that this copy lacks, first to last (at
    /// most `limit`): the holes to fetch.
    pub fn gaps(&self, limit: usize) -> Vec<(u32, u32)> {
        let Some(first) = self.missing else {
            return Vec::new();
        };
        let base = self.client_base();
        let data_end = match self.client_fin {
            Some(fin) if seq_after(self.server_ack, fin) => fin,
            _ => self.server_ack,
        };
        let until = data_end.wrapping_sub(base);
        let mut out = vec![first];
        let mut at = first.0.wrapping_sub(base) + first.1;
        for (k, v) in self.pending.range(at..) {
            if out.len() >= limit || *k >= until {
                break;
            }
            if *k > at {
                out.push((base.wrapping_add(at), k - at));
            }
            at = at.max(k + v.len() as u32);
        }
        if at < until && out.len() < limit {
            out.push((base.wrapping_add(at), until - at));
        }
        out
    }

    /// The client bytes `[seq, seq + len)` from the history.
    pub fn history(&self, seq: u32, len: u32) -> Result<Vec<u8>, HistoryMiss> {
        let start = self.fed.wrapping_sub(self.history.len() as u32);
        if seq_after(start, seq) {
            return Err(HistoryMiss::Gone);
        }
        if seq_after(seq.wrapping_add(len), self.fed) {
            return Err(HistoryMiss::NotYet);
        }
        let at = seq.wrapping_sub(start) as usize;
        Ok(self.history.range(at..at + len as usize).copied().collect())
    }

    /// Whether the connection can be re-created exactly.
    pub fn restorable(&self) -> bool {
        !self.state().ended() && self.snapshot().is_ok()
    }

    /// Whether a RST with sequence number `seq` from the client (`from_client`) would be
    /// accepted by the other side: within what it may receive (RFC 5961 3.2 makes an exact
    /// match reset and an in-window one draw a challenge ACK; either way the sender is gone).
    fn rst_in_window(&self, seq: u32, from_client: bool) -> bool {
        let (lo, hi, window) = if from_client {
            (
                self.server_ack,
                self.client_nxt.wrapping_add(1),
                (self.server_window as u32) << self.server_wscale.unwrap_or(0),
            )
        } else {
            (
                self.client_ack,
                self.server_nxt.wrapping_add(1),
                (self.client_window as u32) << self.client_wscale.unwrap_or(0),
            )
        };
        let hi = if seq_after(lo.wrapping_add(window), hi) {
            lo.wrapping_add(window)
        } else {
            hi
        };
        seq_at_or_after(seq, lo) && seq_at_or_after(hi, seq)
    }
}

/// A client's packet that arrived during a takeover, after the snapshot and before the new
/// socket was live: the new owner's kernel dropped it (the address was not there yet), so it is
/// put back into the stack once the socket is live, and the client need not wait for its
/// retransmission timer (two hundred milliseconds and more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The connection.
    pub tuple: FourTuple,
    /// A SYN (a new connection), rather than a segment of a known one.
    pub syn: bool,
    /// The IP packet.
    pub packet: Vec<u8>,
}
