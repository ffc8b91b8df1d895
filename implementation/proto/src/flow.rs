//! The TCP flow model: snooped frames in, each connection's transferable state out.
//!
//! Read [`FlowTable::observe`] first. A backup sees both directions of its primary's service
//! traffic (a mirrored switch port). For every connection to a service address and port it
//! tracks what TCP_REPAIR needs to re-create the connection exactly (claims 7, 8):
//! the handshake options (MSS, window scale, SACK, timestamps), sequence and acknowledgement
//! numbers both ways, windows, the last timestamps; and it feeds the client's bytes, once the
//! server has acknowledged them, to a shadow replica of the application ([`crate::app`]), so
//! that at takeover the backup holds the application's exact state and output (claim 9).
//!
//! Pure code: no sockets, no clock. Frames are parsed with bounds checks; anything malformed or
//! uninteresting is ignored.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::app::{App, Replica};
use crate::policy::{Epoch, NodeId};
use crate::wire::{ConnState, FourTuple};

/// A parsed TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (valid if `ack_flag`).
    pub ack: u32,
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack_flag: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// Raw (unscaled) window.
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window-scale option.
    pub wscale: Option<u8>,
    /// SACK-permitted option.
    pub sack_perm: bool,
    /// Timestamps option (TSval, TSecr).
    pub ts: Option<(u32, u32)>,
    /// Payload.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses an Ethernet frame (optionally 802.1Q tagged) holding IPv4 or IPv6 and TCP.
pub fn parse_tcp(frame: &[u8]) -> Option<Segment<'_>> {
    let mut off = 12;
    let mut ethertype = be16(frame, off)?;
    off += 2;
    if ethertype == 0x8100 {
        ethertype = be16(frame, off + 2)?;
        off += 4;
    }
    let (src_ip, dst_ip, l4, l4_len) = match ethertype {
        0x0800 => {
            let ip = frame.get(off..)?;
            if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
                return None;
            }
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            let total = be16(ip, 2)? as usize;
            // Fragments other than the first carry no TCP header.
            if be16(ip, 6)? & 0x1fff != 0 || ihl < 20 {
                return None;
            }
            // A GSO frame captured before segmentation has total length 0 or larger than the
            // buffer; trust the buffer.
            let end = if total >= ihl && total <= ip.len() {
                total
            } else {
                ip.len()
            };
            let s = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let d = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            (
                IpAddr::V4(s),
                IpAddr::V4(d),
                off + ihl,
                end.checked_sub(ihl)?,
            )
        }
        0x86dd => {
            let ip = frame.get(off..)?;
            if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != 6 {
                return None;
            }
            let plen = be16(ip, 4)? as usize;
            let s: [u8; 16] = ip[8..24].try_into().ok()?;
            let d: [u8; 16] = ip[24..40].try_into().ok()?;
            let avail = ip.len() - 40;
            let len = if plen > 0 && plen <= avail {
                plen
            } else {
                avail
            };
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                off + 40,
                len,
            )
        }
        _ => return None,
    };
    let t = frame.get(l4..l4 + l4_len)?;
    if t.len() < 20 {
        return None;
    }
    let doff = ((t[12] >> 4) as usize) * 4;
    if doff < 20 || doff > t.len() {
        return None;
    }
    let flags = t[13];
    let mut seg = Segment {
        src: SocketAddr::new(src_ip, be16(t, 0)?),
        dst: SocketAddr::new(dst_ip, be16(t, 2)?),
        seq: be32(t, 4)?,
        ack: be32(t, 8)?,
        syn: flags & 0x02 != 0,
        ack_flag: flags & 0x10 != 0,
        fin: flags & 0x01 != 0,
        rst: flags & 0x04 != 0,
        window: be16(t, 14)?,
        mss: None,
        wscale: None,
        sack_perm: false,
        ts: None,
        payload: &t[doff..],
    };
    // RFC 9293 3.2: options.
    let mut o = &t[20..doff];
    while let Some(&kind) = o.first() {
        match kind {
            0 => break,
            1 => o = &o[1..],
            _ => {
                let len = *o.get(1)? as usize;
                if len < 2 || len > o.len() {
                    break;
                }
                let v = &o[2..len];
                match (kind, v.len()) {
                    (2, 2) => seg.mss = Some(u16::from_be_bytes([v[0], v[1]])),
                    (3, 1) => seg.wscale = Some(v[0].min(14)),
                    (4, 0) => seg.sack_perm = true,
                    (8, 8) => seg.ts = Some((be32(v, 0)?, be32(v, 4)?)),
                    _ => {}
                }
                o = &o[len..];
            }
        }
    }
    Some(seg)
}

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

/// `a` is after `b` in sequence space (RFC 9293 3.4).
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// SYN seen, no SYN-ACK yet.
    SynSent,
    /// The handshake completed (or the flow was joined mid-stream; see `complete`).
    Established,
    /// A FIN or RST was seen: nothing to take over.
    Closed,
}

/// One connection, seen from the server (the service address).
#[derive(Debug)]
pub struct Flow {
    /// The connection.
    pub tuple: FourTuple,
    /// State.
    pub state: FlowState,
    /// Whether the handshake was seen (otherwise options are unknown: not restorable).
    pub complete: bool,
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
    /// The server's next sequence number (highest seq + len seen from the server).
    pub server_nxt: u32,
    /// The server's highest acknowledgement (what it received: the repaired `rcv_nxt`).
    pub server_ack: u32,
    /// The client's highest acknowledgement (the repaired `snd_una`).
    pub client_ack: u32,
    /// The client's next sequence number.
    pub client_nxt: u32,
    /// The client's last window, unscaled.
    pub client_window: u16,
    /// The server's last window, unscaled.
    pub server_window: u16,
    /// The server's last TSval.
    pub server_tsval: u32,
    /// The client's last TSval.
    pub client_tsval: u32,
    /// Client bytes seen but not yet acknowledged by the server, by stream offset (sequence
    /// number minus the client's ISN + 1, so the map orders like sequence space).
    pending: BTreeMap<u32, Vec<u8>>,
    /// The replica, fed with the client bytes the server acknowledged.
    pub replica: Replica,
    /// Bytes the server acknowledged that we never saw (capture loss): the replica is behind.
    pub hole: bool,
}

impl Flow {
    /// The server's send-sequence number at output offset 0.
    fn server_base(&self) -> u32 {
        self.server_isn.wrapping_add(1)
    }

    /// Whether the connection can be re-created exactly.
    pub fn restorable(&self) -> bool {
        self.state == FlowState::Established && self.complete && !self.hole
    }

    /// Everything TCP_REPAIR needs, plus the output the new owner must (re)send.
    pub fn snapshot(&self) -> Option<Snapshot> {
        if !self.restorable() {
            return None;
        }
        let out_base = self.server_base();
        let acked_out = self.client_ack.wrapping_sub(out_base) as u64;
        let sent_out = self.server_nxt.wrapping_sub(out_base) as u64;
        let output = self.replica.output_from(acked_out)?;
        let sent = (sent_out.saturating_sub(acked_out) as usize).min(output.len());
        // Client bytes the old owner had not acknowledged, contiguous from `server_ack`: the
        // new owner takes them straight into its receive queue, so the client need not wait for
        // its retransmission timer.
        let from = self
            .server_ack
            .wrapping_sub(self.client_isn.wrapping_add(1));
        let received = contiguous(&self.pending, from, u32::MAX);
        Some(Snapshot {
            tuple: self.tuple,
            snd_una: self.client_ack,
            rcv_nxt: self.server_ack,
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
            checkpoint: self.replica.checkpoint(),
        })
    }
}

impl Flow {
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
        Self {
            tuple: snap.tuple,
            state: FlowState::Established,
            complete: true,
            client_isn: snap.rcv_nxt.wrapping_sub(1),
            server_isn: snap.snd_una.wrapping_sub(1),
            client_mss: snap.mss,
            client_wscale: snap.wscale.then_some(snap.snd_wscale),
            server_wscale: snap.wscale.then_some(snap.rcv_wscale),
            sack: snap.sack,
            timestamps: snap.timestamps,
            server_nxt: snap.snd_una.wrapping_add(snap.sent.len() as u32),
            server_ack: snap.rcv_nxt,
            client_ack: snap.snd_una,
            client_nxt: snap.rcv_nxt.wrapping_add(snap.received.len() as u32),
            client_window: (snap.snd_wnd >> snap.snd_wscale).min(u16::MAX as u32) as u16,
            server_window: (snap.rcv_wnd >> snap.rcv_wscale).min(u16::MAX as u32) as u16,
            server_tsval: snap.ts_val,
            client_tsval: snap.ts_ecr,
            pending,
            replica: Replica::resume(app, &snap.checkpoint, output),
            hole: false,
        }
    }
}

impl Snapshot {
    /// The CONN-STATE that carries this snapshot to a peer (for group `owner`, held at
    /// `epoch`). Output not yet sent follows the sent output in `unacked`; `snd_nxt` marks the
    /// boundary. Client bytes not yet acknowledged do not travel: the receiver has snooped them.
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
            unacked,
            checkpoint: self.checkpoint.clone(),
        }
    }

    /// The snapshot a CONN-STATE carries, or `None` without a tuple or with `snd_nxt` outside
    /// `unacked`. Window scaling counts as negotiated when either shift is non-zero (with both
    /// at zero the two are the same on the wire).
    pub fn from_conn_state(c: &ConnState) -> Option<Self> {
        let tuple = c.tuple?;
        let sent = c.snd_nxt.wrapping_sub(c.snd_una) as usize;
        if sent > c.unacked.len() {
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
            checkpoint: c.checkpoint.clone(),
        })
    }
}

/// One connection's state for TCP_REPAIR, taken from a [`Flow`].
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
    /// The replica's checkpoint, for the application to continue from.
    pub checkpoint: Vec<u8>,
}

/// Every connection to a set of services.
pub struct FlowTable {
    services: Vec<(IpAddr, (u16, u16))>,
    flows: HashMap<FourTuple, Flow>,
    app: fn() -> Box<dyn App>,
    /// Segments of service flows seen.
    pub segments: u64,
    /// Segments sent by the services (the owner's side) seen.
    pub server_segments: u64,
    /// Recent frames of service connections joined mid-stream (no SYN seen), kept so that a
    /// CONN-STATE adopted later can be brought up to date ([`FlowTable::adopt`]).
    unknown: HashMap<FourTuple, VecDeque<Vec<u8>>>,
    unknown_bytes: usize,
}

/// The most bytes of frames kept for connections not yet known ([`FlowTable::adopt`]).
pub const UNKNOWN_CAP: usize = 32 << 20;

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("flows", &self.flows.len())
            .field("segments", &self.segments)
            .finish()
    }
}

impl FlowTable {
    /// A table for the given services (address and port range), replicating each connection's
    /// application with `app`.
    pub fn new(services: Vec<(IpAddr, (u16, u16))>, app: fn() -> Box<dyn App>) -> Self {
        Self {
            services,
            flows: HashMap::new(),
            app,
            segments: 0,
            server_segments: 0,
            unknown: HashMap::new(),
            unknown_bytes: 0,
        }
    }

    fn is_service(&self, a: &SocketAddr) -> bool {
        self.services
            .iter()
            .any(|(ip, (lo, hi))| *ip == a.ip() && (*lo..=*hi).contains(&a.port()))
    }

    /// Feeds one captured frame.
    pub fn observe(&mut self, frame: &[u8]) {
        let Some(s) = parse_tcp(frame) else {
            return;
        };
        let tuple = if self.is_service(&s.dst) {
            self.segments += 1;
            self.client_segment(&s);
            FourTuple {
                local: s.dst,
                remote: s.src,
            }
        } else if self.is_service(&s.src) {
            self.segments += 1;
            self.server_segments += 1;
            self.server_segment(&s);
            FourTuple {
                local: s.src,
                remote: s.dst,
            }
        } else {
            return;
        };
        if s.syn || self.flows.contains_key(&tuple) {
            return;
        }
        // Mid-stream, and not (yet) known: keep the frame for a CONN-STATE to come.
        if s.rst || s.fin {
            if let Some(q) = self.unknown.remove(&tuple) {
                self.unknown_bytes -= q.iter().map(Vec::len).sum::<usize>();
            }
            return;
        }
        self.unknown
            .entry(tuple)
            .or_default()
            .push_back(frame.to_vec());
        self.unknown_bytes += frame.len();
        while self.unknown_bytes > UNKNOWN_CAP {
            // Drop the oldest frame of the biggest backlog.
            let Some(k) = self
                .unknown
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(k, _)| *k)
            else {
                break;
            };
            let q = self.unknown.get_mut(&k).expect("listed");
            match q.pop_front() {
                Some(f) => self.unknown_bytes -= f.len(),
                None => {
                    self.unknown.remove(&k);
                }
            }
        }
    }

    /// Starts tracking a connection from a snapshot (a late backup's CONN-STATE, or one this
    /// node re-created), then replays the frames kept for it since it was first seen, so the
    /// flow is as current as if it had been tracked all along. A connection already tracked
    /// with its handshake is left alone.
    pub fn adopt(&mut self, snap: &Snapshot) {
        if self.flows.get(&snap.tuple).is_some_and(|f| f.complete) {
            return;
        }
        self.flows
            .insert(snap.tuple, Flow::from_snapshot(snap, (self.app)()));
        if let Some(q) = self.unknown.remove(&snap.tuple) {
            self.unknown_bytes -= q.iter().map(Vec::len).sum::<usize>();
            for f in q {
                self.observe(&f);
            }
        }
    }

    /// Whether any live connection to the given addresses is tracked (if none, a takeover has
    /// nothing to wait for).
    pub fn tracks(&self, addrs: &[IpAddr]) -> bool {
        self.flows
            .values()
            .any(|f| f.state != FlowState::Closed && addrs.contains(&f.tuple.local.ip()))
    }

    /// Snapshots of every restorable connection to the given addresses, which stay tracked:
    /// what a holder sends a late backup.
    pub fn snapshots(&self, addrs: &[IpAddr]) -> Vec<Snapshot> {
        self.flows
            .values()
            .filter(|f| addrs.contains(&f.tuple.local.ip()))
            .filter_map(Flow::snapshot)
            .collect()
    }

    fn client_segment(&mut self, s: &Segment<'_>) {
        let tuple = FourTuple {
            local: s.dst,
            remote: s.src,
        };
        if s.syn && !s.ack_flag {
            // A new connection (or a retransmitted SYN).
            let app = (self.app)();
            self.flows.insert(
                tuple,
                Flow {
                    tuple,
                    state: FlowState::SynSent,
                    complete: false,
                    client_isn: s.seq,
                    server_isn: 0,
                    client_mss: s.mss.unwrap_or(536),
                    client_wscale: s.wscale,
                    server_wscale: None,
                    sack: s.sack_perm,
                    timestamps: s.ts.is_some(),
                    server_nxt: 0,
                    server_ack: s.seq.wrapping_add(1),
                    client_ack: 0,
                    client_nxt: s.seq.wrapping_add(1),
                    client_window: s.window,
                    server_window: 0,
                    server_tsval: 0,
                    client_tsval: s.ts.map_or(0, |t| t.0),
                    pending: BTreeMap::new(),
                    replica: Replica::new(app),
                    hole: false,
                },
            );
            return;
        }
        let Some(f) = self.flows.get_mut(&tuple) else {
            return;
        };
        if s.rst || s.fin {
            f.state = FlowState::Closed;
            return;
        }
        if let Some((tsval, _)) = s.ts {
            f.client_tsval = tsval;
        }
        if s.ack_flag
            && f.state != FlowState::SynSent
            && (seq_after(s.ack, f.client_ack) || s.ack == f.client_ack)
        {
            f.client_ack = s.ack;
            f.client_window = s.window;
            f.replica.trim(s.ack.wrapping_sub(f.server_base()) as u64);
        }
        if !s.payload.is_empty() {
            let end = s.seq.wrapping_add(s.payload.len() as u32);
            if seq_after(end, f.client_nxt) {
                f.client_nxt = end;
            }
            // Keep only what the server has not acknowledged yet (a segment that straddles
            // `server_ack` keeps its tail).
            if seq_after(end, f.server_ack) {
                let (seq, payload) = if seq_after(f.server_ack, s.seq) {
                    let skip = f.server_ack.wrapping_sub(s.seq) as usize;
                    (f.server_ack, &s.payload[skip..])
                } else {
                    (s.seq, s.payload)
                };
                let off = seq.wrapping_sub(f.client_isn.wrapping_add(1));
                f.pending.entry(off).or_insert_with(|| payload.to_vec());
            }
        }
    }

    fn server_segment(&mut self, s: &Segment<'_>) {
        let tuple = FourTuple {
            local: s.src,
            remote: s.dst,
        };
        let Some(f) = self.flows.get_mut(&tuple) else {
            return;
        };
        if s.rst || s.fin {
            f.state = FlowState::Closed;
            return;
        }
        if s.syn && s.ack_flag {
            f.server_isn = s.seq;
            f.server_nxt = s.seq.wrapping_add(1);
            f.client_ack = s.seq.wrapping_add(1);
            f.server_wscale = s.wscale;
            if s.wscale.is_none() {
                f.client_wscale = None;
            }
            f.sack &= s.sack_perm;
            f.timestamps &= s.ts.is_some();
            f.server_window = s.window;
            if let Some((tsval, _)) = s.ts {
                f.server_tsval = tsval;
            }
            f.state = FlowState::Established;
            f.complete = true;
            return;
        }
        if f.state == FlowState::SynSent {
            return;
        }
        if let Some((tsval, _)) = s.ts
            && (seq_after(tsval, f.server_tsval) || tsval == f.server_tsval)
        {
            f.server_tsval = tsval;
        }
        let end = s.seq.wrapping_add(s.payload.len() as u32);
        if seq_after(end, f.server_nxt) {
            f.server_nxt = end;
        }
        if s.ack_flag && seq_after(s.ack, f.server_ack) {
            f.server_window = s.window;
            // The server received client bytes [server_ack, s.ack): the application consumed
            // them (or will): feed them to the replica, in order.
            let base = f.client_isn.wrapping_add(1);
            let from = f.server_ack.wrapping_sub(base);
            let until = s.ack.wrapping_sub(base);
            let got = contiguous(&f.pending, from, until);
            let at = from + got.len() as u32;
            if at < until {
                // We missed bytes the server has: the replica cannot be exact any more.
                f.hole = true;
            } else {
                f.replica.input(&got);
            }
            f.server_ack = s.ack;
            f.pending.retain(|k, v| *k + v.len() as u32 > until);
        } else if s.ack_flag && s.ack == f.server_ack {
            f.server_window = s.window;
        }
    }

    /// Snapshots of every restorable connection to the given addresses (a group's), which stop
    /// being tracked; and the connections that cannot be made whole.
    pub fn take_over(&mut self, addrs: &[IpAddr]) -> (Vec<Snapshot>, Vec<FourTuple>) {
        let mut ok = Vec::new();
        let mut lost = Vec::new();
        let keys: Vec<FourTuple> = self
            .flows
            .keys()
            .filter(|t| addrs.contains(&t.local.ip()))
            .copied()
            .collect();
        self.unknown.retain(|t, q| {
            let drop = addrs.contains(&t.local.ip());
            if drop {
                self.unknown_bytes -= q.iter().map(Vec::len).sum::<usize>();
            }
            !drop
        });
        for k in keys {
            let f = self.flows.remove(&k).expect("listed");
            match f.state {
                FlowState::Closed | FlowState::SynSent => {}
                FlowState::Established => match f.snapshot() {
                    Some(s) => ok.push(s),
                    None => lost.push(k),
                },
            }
        }
        (ok, lost)
    }

    /// Forgets closed connections (call now and then).
    pub fn sweep(&mut self) {
        self.flows.retain(|_, f| f.state != FlowState::Closed);
    }

    /// Number of tracked connections.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no connection is tracked.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// A tracked connection.
    pub fn get(&self, t: &FourTuple) -> Option<&Flow> {
        self.flows.get(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Echo;

    const C: &str = "198.18.0.100:40000";
    const S: &str = "198.18.0.10:7";

    /// Builds an Ethernet/IPv4/TCP frame with the options a Linux SYN carries.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        src: &str,
        dst: &str,
        seq: u32,
        ack: u32,
        flags: u8,
        win: u16,
        opts: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            panic!()
        };
        let mut o = opts.to_vec();
        while o.len() % 4 != 0 {
            o.push(1);
        }
        let tcp_len = 20 + o.len() + payload.len();
        let mut f = vec![0xa5u8; 14];
        f[12] = 0x08;
        f[13] = 0x00;
        let total = (20 + tcp_len) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&d.octets());
        f.extend_from_slice(&src.port().to_be_bytes());
        f.extend_from_slice(&dst.port().to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.push((((20 + o.len()) / 4) as u8) << 4);
        f.push(flags);
        f.extend_from_slice(&win.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&o);
        f.extend_from_slice(payload);
        f
    }

    fn syn_opts(mss: u16, ws: u8, ts: u32) -> Vec<u8> {
        let mut o = vec![2, 4, (mss >> 8) as u8, mss as u8, 4, 2, 8, 10];
        o.extend_from_slice(&ts.to_be_bytes());
        o.extend_from_slice(&0u32.to_be_bytes());
        o.extend_from_slice(&[1, 3, 3, ws]);
        o
    }

    fn ts(val: u32, ecr: u32) -> Vec<u8> {
        let mut o = vec![1, 1, 8, 10];
        o.extend_from_slice(&val.to_be_bytes());
        o.extend_from_slice(&ecr.to_be_bytes());
        o
    }

    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    const PSH: u8 = 0x08;

    fn table() -> FlowTable {
        FlowTable::new(vec![("198.18.0.10".parse().unwrap(), (7, 7))], || {
            Box::new(Echo)
        })
    }

    #[test]
    fn parses_options() {
        let f = frame(C, S, 1000, 0, SYN, 64240, &syn_opts(1460, 7, 55), b"");
        let s = parse_tcp(&f).unwrap();
        assert!(s.syn && !s.ack_flag);
        assert_eq!(s.mss, Some(1460));
        assert_eq!(s.wscale, Some(7));
        assert!(s.sack_perm);
        assert_eq!(s.ts, Some((55, 0)));
        // Truncated anywhere: no panic, no segment.
        for cut in 0..f.len() {
            let _ = parse_tcp(&f[..cut]);
        }
    }

    #[test]
    fn tracks_a_connection_and_snapshots_exactly() {
        let mut t = table();
        let (cisn, sisn) = (1000u32, 5000u32);
        t.observe(&frame(
            C,
            S,
            cisn,
            0,
            SYN,
            64240,
            &syn_opts(1460, 7, 100),
            b"",
        ));
        t.observe(&frame(
            S,
            C,
            sisn,
            cisn + 1,
            SYN | ACK,
            65160,
            &syn_opts(1400, 9, 200),
            b"",
        ));
        t.observe(&frame(
            C,
            S,
            cisn + 1,
            sisn + 1,
            ACK,
            502,
            &ts(101, 200),
            b"",
        ));
        // The client sends 10 bytes; the server acknowledges them and echoes 6 so far.
        t.observe(&frame(
            C,
            S,
            cisn + 1,
            sisn + 1,
            ACK | PSH,
            502,
            &ts(102, 200),
            b"0123456789",
        ));
        t.observe(&frame(
            S,
            C,
            sisn + 1,
            cisn + 11,
            ACK | PSH,
            510,
            &ts(205, 102),
            b"012345",
        ));
        // The client acknowledges 4 of them, and sends 3 more the server never acknowledges.
        t.observe(&frame(
            C,
            S,
            cisn + 11,
            sisn + 5,
            ACK | PSH,
            500,
            &ts(103, 205),
            b"abc",
        ));
        let tuple = FourTuple {
            local: S.parse().unwrap(),
            remote: C.parse().unwrap(),
        };
        let f = t.get(&tuple).unwrap();
        assert!(f.restorable());
        let s = f.snapshot().unwrap();
        assert_eq!(
            s.snd_una,
            sisn + 5,
            "the first output byte the client has not acknowledged"
        );
        assert_eq!(s.rcv_nxt, cisn + 11, "the next byte the server expects");
        assert_eq!(s.sent, b"45", "sent by the server, not acknowledged");
        assert_eq!(
            s.unsent, b"6789",
            "produced by the application, not yet sent"
        );
        assert_eq!((s.mss, s.snd_wscale, s.rcv_wscale), (1460, 7, 9));
        assert!(s.wscale && s.sack && s.timestamps);
        assert_eq!(s.ts_val, 205);
        assert_eq!(s.ts_ecr, 103);
        assert_eq!(s.snd_wnd, 500 << 7);
        assert_eq!(s.rcv_wnd, 510 << 9);
        let (ok, lost) = t.take_over(&["198.18.0.10".parse().unwrap()]);
        assert_eq!((ok.len(), lost.len()), (1, 0));
        assert!(t.is_empty());
    }

    /// A backup that starts snooping mid-stream adopts the holder's CONN-STATE and ends up
    /// with exactly the holder's snapshot, although frames crossed the state on the wire.
    #[test]
    fn a_late_backup_adopts_conn_state_and_catches_up() {
        let mut holder = table();
        let mut late = table();
        let (cisn, sisn) = (1000u32, 5000u32);
        let mut frames = vec![
            frame(C, S, cisn, 0, SYN, 64240, &syn_opts(1460, 7, 100), b""),
            frame(
                S,
                C,
                sisn,
                cisn + 1,
                SYN | ACK,
                65160,
                &syn_opts(1400, 9, 200),
                b"",
            ),
            frame(C, S, cisn + 1, sisn + 1, ACK, 502, &ts(101, 200), b""),
            frame(
                C,
                S,
                cisn + 1,
                sisn + 1,
                ACK | PSH,
                502,
                &ts(102, 200),
                b"hello ",
            ),
            frame(
                S,
                C,
                sisn + 1,
                cisn + 7,
                ACK | PSH,
                509,
                &ts(201, 102),
                b"hello ",
            ),
        ];
        // The late backup starts here: it sees the rest, but not the handshake.
        let late_from = frames.len();
        frames.push(frame(
            C,
            S,
            cisn + 7,
            sisn + 7,
            ACK | PSH,
            502,
            &ts(103, 201),
            b"world",
        ));
        // The holder snapshots here; these frames cross the CONN-STATE on the wire.
        let snap_at = frames.len();
        frames.push(frame(
            S,
            C,
            sisn + 7,
            cisn + 12,
            ACK | PSH,
            509,
            &ts(202, 103),
            b"wor",
        ));
        frames.push(frame(
            C,
            S,
            cisn + 12,
            sisn + 10,
            ACK | PSH,
            502,
            &ts(104, 202),
            b"!!",
        ));
        for (i, f) in frames.iter().enumerate() {
            if i == snap_at {
                let snaps = holder.snapshots(&[S.parse::<SocketAddr>().unwrap().ip()]);
                assert_eq!(snaps.len(), 1);
                let wire = snaps[0].to_conn_state(NodeId(1), Epoch::default());
                let back = Snapshot::from_conn_state(&wire).unwrap();
                assert_eq!((back.sent.len(), back.unsent.len()), (0, 0), "{back:?}");
                late.adopt(&back);
            }
            holder.observe(f);
            if i >= late_from {
                late.observe(f);
            }
        }
        let ip = S.parse::<SocketAddr>().unwrap().ip();
        let (want, _) = holder.take_over(&[ip]);
        let (got, lost) = late.take_over(&[ip]);
        assert!(lost.is_empty());
        assert_eq!(got.len(), 1);
        let (w, g) = (&want[0], &got[0]);
        assert_eq!((g.snd_una, g.rcv_nxt), (w.snd_una, w.rcv_nxt));
        assert_eq!(
            (g.sent.as_slice(), g.unsent.as_slice()),
            (&b""[..], &b"ld"[..])
        );
        assert_eq!(
            (&g.sent, &g.unsent, &g.received),
            (&w.sent, &w.unsent, &w.received)
        );
        assert_eq!(g.received, b"!!");
        assert_eq!((g.ts_val, g.ts_ecr, g.mss), (w.ts_val, w.ts_ecr, w.mss));
        assert_eq!(
            (g.snd_wscale, g.rcv_wscale, g.sack),
            (w.snd_wscale, w.rcv_wscale, w.sack)
        );
    }

    #[test]
    fn a_capture_hole_makes_the_connection_unrestorable() {
        let mut t = table();
        t.observe(&frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1), b""));
        t.observe(&frame(
            S,
            C,
            9,
            2,
            SYN | ACK,
            65160,
            &syn_opts(1460, 7, 1),
            b"",
        ));
        // The server acknowledges 5 client bytes we never saw.
        t.observe(&frame(S, C, 10, 7, ACK, 510, &ts(2, 1), b""));
        let (ok, lost) = t.take_over(&["198.18.0.10".parse().unwrap()]);
        assert_eq!((ok.len(), lost.len()), (0, 1));
    }

    #[test]
    fn closed_and_unseen_handshakes_are_not_taken_over() {
        let mut t = table();
        t.observe(&frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1), b""));
        t.observe(&frame(
            S,
            C,
            9,
            2,
            SYN | ACK,
            65160,
            &syn_opts(1460, 7, 1),
            b"",
        ));
        t.observe(&frame(C, S, 2, 10, ACK | 0x01, 502, &ts(2, 1), b""));
        // Mid-stream traffic of a connection whose handshake we did not see is ignored.
        t.observe(&frame(
            "198.18.0.100:40001",
            S,
            77,
            88,
            ACK,
            502,
            &[],
            b"zz",
        ));
        let (ok, lost) = t.take_over(&["198.18.0.10".parse().unwrap()]);
        assert_eq!((ok.len(), lost.len()), (0, 0));
    }
}
