//! What a connection's new owner needs: [`Snapshot`], taken from a [`Flow`], and carried between
//! nodes as a CONN-STATE.

use std::collections::{BTreeMap, VecDeque};

use super::{Flow, TcpState, Unrestorable, contiguous};
use crate::app::{App, Replica};
use crate::policy::{Epoch, NodeId};
use crate::wire::{ConnState, FourTuple};

/// One connection's state for TCP_REPAIR, taken from a [`Flow`].
///
/// Sequence numbers exclude the FINs: `rcv_nxt` is the next client *byte* expected and
/// `snd_una + sent.len()` is where the server's next byte (or its FIN) goes. The FINs are the
/// two flags, so that the new owner restores them as CRIU does (`libsoccr_restore`: the
/// server's FIN through `shutdown` in repair mode, the client's injected after the queues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The connection (local = service address).
    pub tuple: FourTuple,
    /// The first byte the client has not acknowledged: the send queue starts here.
    pub snd_una: u32,
    /// The next byte expected from the client.
    pub rcv_nxt: u32,
    /// The client's MSS.
    pub mss: u16,
    /// The client's window scale.
    pub snd_wscale: u8,
    /// The server's window scale.
    pub rcv_wscale: u8,
    /// Whether window scaling was negotiated.
    pub wscale: bool,
    /// SACK permitted.
    pub sack: bool,
    /// Timestamps.
    pub timestamps: bool,
    /// The server's last TSval: the new owner's must not go below it (the client's PAWS).
    pub ts_val: u32,
    /// The client's last TSval.
    pub ts_ecr: u32,
    /// The client's window in bytes.
    pub snd_wnd: u32,
    /// The server's window in bytes.
    pub rcv_wnd: u32,
    /// Output the old owner sent and the client has not acknowledged: the repaired send queue.
    pub sent: Vec<u8>,
    /// Output the application produced that the old owner had not sent yet.
    pub unsent: Vec<u8>,
    /// Client bytes sent to the old owner that it had not acknowledged (snooped): they go into
    /// the new socket's receive queue, from `rcv_nxt`.
    pub received: Vec<u8>,
    /// The client's FIN follows `received` (it was seen on the wire, whether or not the old
    /// owner acknowledged it): the new owner's socket is put into CLOSE_WAIT (or CLOSING).
    pub client_fin: bool,
    /// The old owner sent its FIN after `sent` (`unsent` is then empty): the new owner's
    /// socket is in FIN_WAIT1 (or LAST_ACK, CLOSING) with the FIN counted as sent.
    pub server_fin: bool,
    /// The replica's checkpoint, for the application to continue from.
    pub checkpoint: Vec<u8>,
}

impl Flow {
    /// Everything TCP_REPAIR needs, plus the output the new owner must (re)send; or why the
    /// connection cannot be made whole.
    pub fn snapshot(&self) -> Result<Snapshot, Unrestorable> {
        if !self.complete {
            return Err(Unrestorable::UnseenHandshake);
        }
        if self.hole() {
            return Err(Unrestorable::CaptureHole);
        }
        let out_base = self.server_base();
        // What the client acknowledged of the output, not counting our FIN.
        let snd_una = match self.server_fin {
            Some(fin) if super::seq_after(self.client_ack, fin) => fin,
            _ => self.client_ack,
        };
        let acked_out = snd_una.wrapping_sub(out_base) as u64;
        if acked_out > self.replica.produced() {
            return Err(Unrestorable::CopyBehindClient);
        }
        let sent_out = self.server_nxt.wrapping_sub(out_base) as u64;
        let output = self
            .replica
            .output_from(acked_out)
            .ok_or(Unrestorable::ReplicaBehind)?;
        if let Some(fin) = self.server_fin
            && fin.wrapping_sub(out_base) as u64 != self.replica.produced()
        {
            // The old owner closed where our replica's output does not end.
            return Err(Unrestorable::ReplicaDiverged);
        }
        let sent = (sent_out.saturating_sub(acked_out) as usize).min(output.len());
        // Client bytes the old owner had not acknowledged, contiguous from `rcv_nxt` up to the
        // client's FIN: the new owner takes them straight into its receive queue, so the client
        // need not wait for its retransmission timer.
        let rcv_nxt = match self.client_fin {
            Some(fin) if super::seq_after(self.server_ack, fin) => fin,
            _ => self.server_ack,
        };
        let base = self.client_isn.wrapping_add(1);
        let until = self
            .client_fin
            .map_or(u32::MAX, |fin| fin.wrapping_sub(base));
        let received = contiguous(&self.pending, rcv_nxt.wrapping_sub(base), until);
        let client_fin = self
            .client_fin
            .is_some_and(|fin| rcv_nxt.wrapping_add(received.len() as u32) == fin);
        Ok(Snapshot {
            tuple: self.tuple,
            snd_una,
            rcv_nxt,
            mss: self.client_mss,
            snd_wscale: self.client_wscale.unwrap_or(0),
            rcv_wscale: self.server_wscale.unwrap_or(0),
            wscale: self.client_wscale.is_some() && self.server_wscale.is_some(),
            sack: self.sack,
            timestamps: self.timestamps,
            ts_val: self.server_tsval,
            ts_ecr: self.client_tsval,
            snd_wnd: (self.client_window as u32) << self.client_wscale.unwrap_or(0),
            rcv_wnd: (self.server_window as u32) << self.server_wscale.unwrap_or(0),
            sent: output[..sent].to_vec(),
            unsent: output[sent..].to_vec(),
            received,
            client_fin,
            server_fin: self.server_fin.is_some(),
            checkpoint: self.replica.checkpoint(),
        })
    }

    /// A flow joined mid-stream from a transferred [`Snapshot`] (a late backup's CONN-STATE,
    /// or a connection this node just re-created): stream offsets start at `snd_una` for the
    /// output and at `rcv_nxt` for the client's bytes.
    pub fn from_snapshot(snap: &Snapshot, app: Box<dyn App>) -> Self {
        let mut output = snap.sent.clone();
        output.extend_from_slice(&snap.unsent);
        let mut pending = BTreeMap::new();
        if !snap.received.is_empty() {
            pending.insert(0, snap.received.clone());
        }
        let client_nxt = snap.rcv_nxt.wrapping_add(snap.received.len() as u32);
        let server_nxt = snap.snd_una.wrapping_add(snap.sent.len() as u32);
        // A FIN right at `rcv_nxt` was received by the holder (CONN-STATE's `fin_received`):
        // count it as acknowledged, as the holder's kernel did.
        let server_ack = if snap.client_fin && snap.received.is_empty() {
            snap.rcv_nxt.wrapping_add(1)
        } else {
            snap.rcv_nxt
        };
        Self {
            tuple: snap.tuple,
            complete: true,
            reset: false,
            client_isn: snap.rcv_nxt.wrapping_sub(1),
            server_isn: snap.snd_una.wrapping_sub(1),
            client_mss: snap.mss,
            client_wscale: snap.wscale.then_some(snap.snd_wscale),
            server_wscale: snap.wscale.then_some(snap.rcv_wscale),
            sack: snap.sack,
            timestamps: snap.timestamps,
            server_nxt,
            server_ack,
            client_ack: snap.snd_una,
            client_nxt,
            client_window: (snap.snd_wnd >> snap.snd_wscale).min(u16::MAX as u32) as u16,
            server_window: (snap.rcv_wnd >> snap.rcv_wscale).min(u16::MAX as u32) as u16,
            server_tsval: snap.ts_val,
            client_tsval: snap.ts_ecr,
            client_fin: snap.client_fin.then_some(client_nxt),
            server_fin: snap.server_fin.then_some(server_nxt),
            server_closed_first: snap.server_fin && !snap.client_fin,
            syn: None,
            pending,
            replica: Replica::resume(app, &snap.checkpoint, output),
            fed: snap.rcv_nxt,
            history: VecDeque::new(),
            missing: None,
            hole_gone: false,
        }
    }
}

impl Snapshot {
    /// The state the connection is restored in (LAST_ACK and CLOSING restore alike; this says
    /// LAST_ACK for both).
    pub fn state(&self) -> TcpState {
        match (self.client_fin, self.server_fin) {
            (false, false) => TcpState::Established,
            (true, false) => TcpState::CloseWait,
            (false, true) => TcpState::FinWait1,
            (true, true) => TcpState::LastAck,
        }
    }

    /// The CONN-STATE that carries this snapshot to a peer (for group `owner`, held at
    /// `epoch`). Output not yet sent follows the sent output in `unacked`; `snd_nxt` marks the
    /// boundary. Client bytes not yet acknowledged do not travel: the receiver has snooped them
    /// (and so the client's FIN, unless it directly follows `rcv_nxt`).
    pub fn to_conn_state(&self, owner: NodeId, epoch: Epoch) -> ConnState {
        let mut unacked = self.sent.clone();
        unacked.extend_from_slice(&self.unsent);
        ConnState {
            owner,
            epoch,
            tuple: Some(self.tuple),
            snd_una: self.snd_una,
            snd_nxt: self.snd_una.wrapping_add(self.sent.len() as u32),
            rcv_nxt: self.rcv_nxt,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_wnd,
            mss: self.mss,
            snd_wscale: if self.wscale { self.snd_wscale } else { 0 },
            rcv_wscale: if self.wscale { self.rcv_wscale } else { 0 },
            sack: self.sack,
            timestamps: self.timestamps,
            ts_val: self.ts_val,
            ts_ecr: self.ts_ecr,
            fin_received: self.client_fin && self.received.is_empty(),
            fin_sent: self.server_fin,
            unacked,
            checkpoint: self.checkpoint.clone(),
        }
    }

    /// The snapshot a CONN-STATE carries, or `None` without a tuple, with `snd_nxt` outside
    /// `unacked`, or with a FIN sent before bytes that were never sent. Window scaling counts
    /// as negotiated when either shift is non-zero (with both at zero the two are the same on
    /// the wire).
    pub fn from_conn_state(c: &ConnState) -> Option<Self> {
        let tuple = c.tuple?;
        let sent = c.snd_nxt.wrapping_sub(c.snd_una) as usize;
        if sent > c.unacked.len() || (c.fin_sent && sent != c.unacked.len()) {
            return None;
        }
        Some(Self {
            tuple,
            snd_una: c.snd_una,
            rcv_nxt: c.rcv_nxt,
            mss: c.mss,
            snd_wscale: c.snd_wscale.min(14),
            rcv_wscale: c.rcv_wscale.min(14),
            wscale: c.snd_wscale != 0 || c.rcv_wscale != 0,
            sack: c.sack,
            timestamps: c.timestamps,
            ts_val: c.ts_val,
            ts_ecr: c.ts_ecr,
            snd_wnd: c.snd_wnd,
            rcv_wnd: c.rcv_wnd,
            sent: c.unacked[..sent].to_vec(),
            unsent: c.unacked[sent..].to_vec(),
            received: Vec::new(),
            client_fin: c.fin_received,
            server_fin: c.fin_sent,
            checkpoint: c.checkpoint.clone(),
        })
    }
}
