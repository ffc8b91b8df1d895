//! [`FlowTable`]: every connection to a set of services, fed frame by frame.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::{
    Flow, Held, HistoryMiss, Lost, Segment, Snapshot, Takeover, TcpState, Unrestorable, parse_tcp,
    seq_after, seq_at_or_after,
};
use crate::app::{App, Replica};
use crate::wire::FourTuple;

/// Every connection to a set of services.
pub struct FlowTable {
    services: Vec<(IpAddr, (u16, u16))>,
    flows: HashMap<FourTuple, Flow>,
    app: fn() -> Box<dyn App>,
    /// Segments of service flows seen.
    pub segments: u64,
    /// Segments sent by the services (the owner's side) seen.
    pub server_segments: u64,
    /// Connections that ended (both FINs acknowledged, or a reset), by final state.
    pub ended: BTreeMap<TcpState, u64>,
    /// Recent frames of service connections joined mid-stream (no SYN seen), kept so that a
    /// CONN-STATE adopted later can be brought up to date ([`FlowTable::adopt`]).
    unknown: HashMap<FourTuple, Unknown>,
    unknown_bytes: usize,
    /// Connections that ended recently: their stragglers (a last ACK, a retransmitted FIN) are
    /// not mistaken for a connection joined mid-stream.
    recently_ended: (HashSet<FourTuple>, VecDeque<FourTuple>),
    /// Addresses under takeover: the clients' packets to them are kept from the snapshot until
    /// the new sockets are live ([`FlowTable::release_held`]).
    holding: HashSet<IpAddr>,
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Held packets dropped because the hold was full.
    pub held_dropped: u64,
    /// Holes in the snooped copy, counted.
    pub holes: HoleCounts,
    fetch_window: usize,
}

/// Holes in a backup's snooped copy, counted: each is a range of client bytes the server
/// acknowledged that this copy never saw, where the replica stops until it is filled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoleCounts {
    /// Opened.
    pub opened: u64,
    /// Filled (by FETCH, or a retransmission seen later): the replica went past it.
    pub repaired: u64,
    /// That cost their connection (still open at a takeover, or the holder no longer had the
    /// bytes).
    pub lost: u64,
}

impl HoleCounts {
    /// Counts what a feed did to a flow's first hole: one the replica got past was repaired;
    /// one it stopped at is open.
    fn count(&mut self, was: Option<(u32, u32)>, now: Option<(u32, u32)>) {
        match (was, now) {
            (None, Some(_)) => self.opened += 1,
            (Some(_), None) => self.repaired += 1,
            // Past the old hole's end: that one is repaired and this is another (within it,
            // it is the same hole, partly filled).
            (Some((a, la)), Some((b, _))) if seq_at_or_after(b, a.wrapping_add(la)) => {
                self.repaired += 1;
                self.opened += 1;
            }
            _ => {}
        }
    }
}

/// The most bytes of held packets (beyond it the oldest go, and are counted).
pub const HELD_CAP: usize = 64 << 20;

/// The frames of a connection seen only mid-stream, and whether each side has sent its FIN.
#[derive(Default)]
struct Unknown {
    frames: VecDeque<Vec<u8>>,
    client_fin: bool,
    server_fin: bool,
}

impl Unknown {
    fn bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).sum()
    }
}

/// The most bytes of frames kept for connections not yet known ([`FlowTable::adopt`]).
pub const UNKNOWN_CAP: usize = 32 << 20;

/// How many ended connections are remembered to ignore their stragglers.
const RECENTLY_ENDED: usize = 4096;

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
            ended: BTreeMap::new(),
            unknown: HashMap::new(),
            unknown_bytes: 0,
            recently_ended: Default::default(),
            holding: HashSet::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            held_dropped: 0,
            holes: HoleCounts::default(),
            fetch_window: super::FETCH_WINDOW,
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
        let (tuple, from_client) = if self.is_service(&s.dst) {
            self.segments += 1;
            let t = FourTuple {
                local: s.dst,
                remote: s.src,
            };
            if self.holding.contains(&s.dst.ip()) {
                self.hold(t, &s);
            }
            self.client_segment(t, &s);
            (t, true)
        } else if self.is_service(&s.src) {
            self.segments += 1;
            self.server_segments += 1;
            let t = FourTuple {
                local: s.src,
                remote: s.dst,
            };
            self.server_segment(t, &s);
            (t, false)
        } else {
            return;
        };
        if let Some(f) = self.flows.get(&tuple) {
            let st = f.state();
            if st.ended() {
                self.flows.remove(&tuple);
                *self.ended.entry(st).or_default() += 1;
                self.remember_ended(tuple);
            }
            return;
        }
        if s.syn || self.recently_ended.0.contains(&tuple) {
            return;
        }
        // Mid-stream, and not (yet) known: keep the frame for a CONN-STATE to come, until the
        // connection ends (a reset, or FINs both ways).
        let u = self.unknown.entry(tuple).or_default();
        u.client_fin |= s.fin && from_client;
        u.server_fin |= s.fin && !from_client;
        if s.rst || (u.client_fin && u.server_fin) {
            if let Some(u) = self.unknown.remove(&tuple) {
                self.unknown_bytes -= u.bytes();
            }
            self.remember_ended(tuple);
            return;
        }
        u.frames.push_back(frame.to_vec());
        self.unknown_bytes += frame.len();
        while self.unknown_bytes > UNKNOWN_CAP {
            // Drop the oldest frame of the biggest backlog.
            let Some(k) = self
                .unknown
                .iter()
                .max_by_key(|(_, u)| u.frames.len())
                .map(|(k, _)| *k)
            else {
                break;
            };
            let u = self.unknown.get_mut(&k).expect("listed");
            match u.frames.pop_front() {
                Some(f) => self.unknown_bytes -= f.len(),
                None => {
                    self.unknown.remove(&k);
                }
            }
        }
    }

    fn hold(&mut self, tuple: FourTuple, s: &Segment<'_>) {
        self.held_bytes += s.ip_packet.len();
        self.held.push_back(Held {
            tuple,
            syn: s.syn && !s.ack_flag,
            packet: s.ip_packet.to_vec(),
        });
        while self.held_bytes > HELD_CAP {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= h.packet.len();
            self.held_dropped += 1;
        }
    }

    /// Ends the hold on `addrs` (begun by [`FlowTable::take_over`]) and returns, in arrival
    /// order, the clients' packets to them that arrived meanwhile.
    pub fn release_held(&mut self, addrs: &[IpAddr]) -> Vec<Held> {
        for a in addrs {
            self.holding.remove(a);
        }
        let (mine, rest): (VecDeque<Held>, VecDeque<Held>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|h| addrs.contains(&h.tuple.local.ip()));
        self.held = rest;
        self.held_bytes = self.held.iter().map(|h| h.packet.len()).sum();
        mine.into()
    }

    fn remember_ended(&mut self, t: FourTuple) {
        let (set, order) = &mut self.recently_ended;
        if set.insert(t) {
            order.push_back(t);
            if order.len() > RECENTLY_ENDED
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
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
        self.recently_ended.0.remove(&snap.tuple);
        self.flows
            .insert(snap.tuple, Flow::from_snapshot(snap, (self.app)()));
        if let Some(u) = self.unknown.remove(&snap.tuple) {
            self.unknown_bytes -= u.bytes();
            for f in u.frames {
                self.observe(&f);
            }
        }
    }

    /// Whether any live connection to the given addresses is tracked (if none, a takeover has
    /// nothing to wait for).
    pub fn tracks(&self, addrs: &[IpAddr]) -> bool {
        self.flows
            .values()
            .any(|f| addrs.contains(&f.tuple.local.ip()))
            || self.unknown.keys().any(|t| addrs.contains(&t.local.ip()))
    }

    /// Snapshots of every restorable connection to the given addresses, which stay tracked:
    /// what a holder sends a late backup.
    pub fn snapshots(&self, addrs: &[IpAddr]) -> Vec<Snapshot> {
        self.flows
            .values()
            .filter(|f| addrs.contains(&f.tuple.local.ip()))
            .filter_map(|f| f.snapshot().ok())
            .collect()
    }

    fn client_segment(&mut self, tuple: FourTuple, s: &Segment<'_>) {
        if s.syn && !s.ack_flag {
            match self.flows.get_mut(&tuple) {
                // A SYN on an open connection the server answered: the server sends a
                // challenge ACK (RFC 5961 4) and nothing changes (if the client had forgotten
                // the connection, its reset to that ACK ends it here too).
                Some(f) if f.complete && f.client_fin.is_none() && f.server_fin.is_none() => {}
                // A retransmitted SYN: the latest is the one to put back at a takeover.
                Some(f) if f.client_isn == s.seq => f.syn = Some(s.ip_packet.to_vec()),
                _ => {
                    self.recently_ended.0.remove(&tuple);
                    self.flows.insert(tuple, self.new_flow(tuple, s));
                }
            }
            return;
        }
        let Some(f) = self.flows.get_mut(&tuple) else {
            return;
        };
        if s.rst {
            if f.rst_in_window(s.seq, true) {
                f.reset = true;
            }
            return;
        }
        if let Some((tsval, _)) = s.ts {
            f.client_tsval = tsval;
        }
        if s.ack_flag && f.complete && seq_at_or_after(s.ack, f.client_ack) {
            f.client_ack = s.ack;
            f.client_window = s.window;
            // An acknowledgement of the server's FIN covers one number that is not a byte.
            let acked = s.ack.wrapping_sub(f.server_base()) as u64;
            f.replica.trim(acked.min(f.replica.produced()));
        }
        if !s.payload.is_empty() {
            let end = s.end();
            if seq_after(end, f.client_nxt) {
                f.client_nxt = end;
            }
            // Keep only what the replica has not had yet (a segment that straddles `fed` keeps
            // its tail): a retransmission can fill a hole.
            if seq_after(end, f.fed) {
                let (seq, payload) = if seq_after(f.fed, s.seq) {
                    let skip = f.fed.wrapping_sub(s.seq) as usize;
                    (f.fed, &s.payload[skip..])
                } else {
                    (s.seq, s.payload)
                };
                let off = seq.wrapping_sub(f.client_base());
                f.pending.entry(off).or_insert_with(|| payload.to_vec());
                if f.hole() {
                    let was = f.missing;
                    f.feed(self.fetch_window);
                    self.holes.count(was, f.missing);
                }
            }
        }
        if s.fin && f.client_fin.is_none() {
            f.client_fin = Some(s.end());
        }
    }

    fn new_flow(&self, tuple: FourTuple, s: &Segment<'_>) -> Flow {
        Flow {
            tuple,
            complete: false,
            reset: false,
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
            client_fin: None,
            server_fin: None,
            server_closed_first: false,
            syn: Some(s.ip_packet.to_vec()),
            pending: BTreeMap::new(),
            replica: Replica::new((self.app)()),
            fed: s.seq.wrapping_add(1),
            history: VecDeque::new(),
            missing: None,
            hole_gone: false,
        }
    }

    fn server_segment(&mut self, tuple: FourTuple, s: &Segment<'_>) {
        let Some(f) = self.flows.get_mut(&tuple) else {
            return;
        };
        if s.rst {
            if f.complete && f.rst_in_window(s.seq, false) {
                f.reset = true;
            } else if !f.complete && s.ack_flag && s.ack == f.client_isn.wrapping_add(1) {
                // The server refused the connection (RFC 9293 3.5: a reset acknowledging the
                // SYN).
                f.reset = true;
            }
            return;
        }
        if s.syn && s.ack_flag {
            if f.complete || s.ack != f.client_isn.wrapping_add(1) {
                return;
            }
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
            f.complete = true;
            f.syn = None;
            return;
        }
        if !f.complete {
            return;
        }
        if let Some((tsval, _)) = s.ts
            && seq_at_or_after(tsval, f.server_tsval)
        {
            f.server_tsval = tsval;
        }
        let end = s.end();
        if seq_after(end, f.server_nxt) {
            f.server_nxt = end;
        }
        if s.ack_flag && seq_after(s.ack, f.server_ack) {
            f.server_window = s.window;
            // The server received client bytes [server_ack, s.ack): the application consumed
            // them (or will): feed them to the replica, in order. Bytes this copy never saw
            // open a hole, which holds the replica back until they are fetched.
            f.server_ack = s.ack;
            let was = f.missing;
            f.feed(self.fetch_window);
            self.holes.count(was, f.missing);
        } else if s.ack_flag && s.ack == f.server_ack {
            f.server_window = s.window;
        }
        if s.fin && f.server_fin.is_none() {
            let client_fin_acked = f.client_fin.is_some_and(|c| seq_after(f.server_ack, c));
            f.server_closed_first = !client_fin_acked;
            f.server_fin = Some(end);
        }
    }

    /// Takes every connection to the given addresses (a group's) out of the table: those that
    /// can be re-created as snapshots, the live ones that cannot with their reasons, and the
    /// unanswered SYNs. From now on the clients' packets to these addresses are held until
    /// [`FlowTable::release_held`].
    pub fn take_over(&mut self, addrs: &[IpAddr]) -> Takeover {
        self.holding.extend(addrs.iter().copied());
        let mut out = Takeover::default();
        let keys: Vec<FourTuple> = self
            .flows
            .keys()
            .filter(|t| addrs.contains(&t.local.ip()))
            .copied()
            .collect();
        let unknown: Vec<FourTuple> = self
            .unknown
            .keys()
            .filter(|t| addrs.contains(&t.local.ip()))
            .copied()
            .collect();
        for t in unknown {
            if let Some(u) = self.unknown.remove(&t) {
                self.unknown_bytes -= u.bytes();
            }
            out.lost.push(Lost {
                tuple: t,
                state: TcpState::Unknown,
                reason: Unrestorable::UnseenHandshake,
            });
        }
        for k in keys {
            let f = self.flows.remove(&k).expect("listed");
            let state = f.state();
            match state {
                TcpState::TimeWait | TcpState::Reset => {}
                TcpState::SynReceived => out.syns.extend(f.syn),
                _ => match f.snapshot() {
                    Ok(s) => out.snapshots.push(s),
                    Err(reason) => {
                        if f.hole() && !f.hole_gone {
                            self.holes.lost += 1;
                        }
                        out.lost.push(Lost {
                            tuple: k,
                            state,
                            reason,
                        })
                    }
                },
            }
        }
        out.lost.sort_by_key(|l| l.tuple);
        out
    }

    /// How many of each connection's latest client bytes to keep for FETCH.
    pub fn set_fetch_window(&mut self, bytes: usize) {
        self.fetch_window = bytes;
    }

    /// Every open hole, `(connection, seq, len)`: what to FETCH from the holder (at most 64 per
    /// connection at a time).
    pub fn open_holes(&self) -> Vec<(FourTuple, u32, u32)> {
        self.flows
            .iter()
            .filter(|(_, f)| !f.hole_gone)
            .flat_map(|(t, f)| f.gaps(64).into_iter().map(|(seq, len)| (*t, seq, len)))
            .collect()
    }

    /// Client bytes the holder sent for a hole (FETCHED); the replica goes on if they close it.
    pub fn fill(&mut self, tuple: &FourTuple, seq: u32, data: &[u8]) {
        let Some(f) = self.flows.get_mut(tuple) else {
            return;
        };
        let end = seq.wrapping_add(data.len() as u32);
        if data.is_empty() || !seq_after(end, f.fed) {
            return;
        }
        let (seq, data) = if seq_after(f.fed, seq) {
            (f.fed, &data[f.fed.wrapping_sub(seq) as usize..])
        } else {
            (seq, data)
        };
        let off = seq.wrapping_sub(f.client_base());
        f.pending.entry(off).or_insert_with(|| data.to_vec());
        let was = f.missing;
        f.feed(self.fetch_window);
        self.holes.count(was, f.missing);
    }

    /// The holder no longer has a hole's bytes: the connection cannot be made whole.
    pub fn hole_gone(&mut self, tuple: &FourTuple) {
        if let Some(f) = self.flows.get_mut(tuple)
            && f.hole()
            && !f.hole_gone
        {
            f.hole_gone = true;
            self.holes.lost += 1;
        }
    }

    /// Client bytes of a connection, from its history: what a FETCH asks of the holder.
    pub fn history(&self, tuple: &FourTuple, seq: u32, len: u32) -> Result<Vec<u8>, HistoryMiss> {
        self.flows
            .get(tuple)
            .ok_or(HistoryMiss::Unknown)?
            .history(seq, len)
    }

    /// Holes open now.
    pub fn holes_open(&self) -> usize {
        self.flows.values().filter(|f| f.hole()).count()
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

    /// How many tracked connections are in each state.
    pub fn states(&self) -> BTreeMap<TcpState, usize> {
        let mut m = BTreeMap::new();
        for f in self.flows.values() {
            *m.entry(f.state()).or_default() += 1;
        }
        if !self.unknown.is_empty() {
            m.insert(TcpState::Unknown, self.unknown.len());
        }
        m
    }
}
