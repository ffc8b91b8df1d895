//! Connection takeover: re-creating a failed owner's snooped connections with TCP_REPAIR,
//! taking them live once the address exists, and the CONN-STATE sync of a late backup.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use holdfast_proto::flow::{Lost, Snapshot};
use holdfast_proto::node::{Action, Node};
use holdfast_proto::policy::{ArpPolicy, NodeId, OwnedAddress};
use holdfast_proto::share::Selection;
use holdfast_proto::wire::FourTuple;
use tracing::{debug, info, warn};

use super::{Daemon, TakeoverTiming};
use crate::arp::announce_frame;
use crate::repair::{self, Repaired};
use crate::replay::Packet;

/// The snooper's flow table, shared with its thread.
type Table = std::sync::Arc<std::sync::Mutex<holdfast_proto::flow::FlowTable>>;

/// Connections restored between two turns of the protocol during a takeover (about 5 ms).
const RESTORE_CHUNK: usize = 512;

/// Applies `f` to every item, the second half on a helper thread (the kernel work for distinct
/// sockets runs in parallel). The results come in the items' order; if the helper panicked,
/// its half is missing from the end.
fn in_two_halves<T: Send, R: Send>(mut items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() < 64 {
        return items.into_iter().map(f).collect();
    }
    let second = items.split_off(items.len() / 2);
    std::thread::scope(|sc| {
        let f = &f;
        let other = sc.spawn(move || second.into_iter().map(f).collect::<Vec<_>>());
        let mut out: Vec<R> = items.into_iter().map(f).collect();
        if let Ok(rest) = other.join() {
            out.extend(rest);
        }
        out
    })
}

/// What going live gave for one connection: its addresses, its application checkpoint, and the
/// live socket with the output still owed.
type Live = (
    FourTuple,
    Vec<u8>,
    &'static str,
    std::io::Result<(std::net::TcpStream, Vec<u8>)>,
);

impl Daemon {
    /// Counts and logs a connection this node gives up on: it will be reset by whoever meets
    /// it next. Never silent.
    pub(super) fn lose(&mut self, t: &FourTuple, state: &str, reason: &str, why: &str) {
        warn!(local = %t.local, remote = %t.remote, state, reason, "connection lost: {why}; it will be reset");
        self.conns.unrestorable += 1;
        *self.conns.lost.entry(reason.to_owned()).or_default() += 1;
    }

    /// Sends `peer` (just up: booted, or back) the CONN-STATE of every live connection of
    /// every group this node holds, so that it can back them up although it never saw their
    /// handshakes. A large state goes in parts (the core splits it).
    pub(super) fn sync_peer(&mut self, node: &mut Node, peer: NodeId) {
        let Some(sn) = &self.snooper else {
            return;
        };
        let held: Vec<(NodeId, holdfast_proto::policy::Epoch)> =
            node.held().iter().map(|(o, e)| (*o, *e)).collect();
        for (owner, epoch) in held {
            let Some(rec) = node.ownership_of(owner) else {
                continue;
            };
            let addrs: Vec<IpAddr> = rec.addresses.iter().map(|a| a.addr).collect();
            let snaps = sn
                .table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .snapshots(&addrs);
            for snap in snaps {
                let state = snap.to_conn_state(owner, epoch);
                let bytes = state.unacked.len() + state.checkpoint.len();
                debug!(%peer, %owner, local = %snap.tuple.local, remote = %snap.tuple.remote, bytes, "CONN-STATE sent");
                if node.conn_state(peer, state) {
                    self.conns.synced += 1;
                }
            }
        }
    }

    /// A holder sent us a connection's state: track it from there on.
    pub(super) fn adopt(&mut self, from: NodeId, state: &holdfast_proto::wire::ConnState) {
        let Some(sn) = &self.snooper else {
            return;
        };
        match Snapshot::from_conn_state(state) {
            Some(snap) => {
                let bytes = (state.unacked.len() + state.checkpoint.len()) as u64;
                debug!(%from, local = %snap.tuple.local, remote = %snap.tuple.remote, bytes, "CONN-STATE adopted");
                self.conns.adopted_bytes_max = self.conns.adopted_bytes_max.max(bytes);
                sn.adopt(snap);
                self.conns.adopted += 1;
            }
            None => warn!(%from, "malformed CONN-STATE ignored"),
        }
    }

    /// Re-creates the owner's snooped connections in repair mode (before its address exists).
    ///
    /// First the address is announced (without adding it yet), so that the clients' segments
    /// come here, where the snooper sees them and the kernel drops them; then we wait until the
    /// old owner's side has gone quiet (a frozen node's kernel keeps sending and acknowledging
    /// until then); only then is the snapshot taken. Nothing reaches the new sockets before the
    /// address exists, so the snapshot is final.
    ///
    /// Under `spread`, only this node's part is re-created. The node with share 0 also holds
    /// the addresses, has the core split the connections, and forwards every other share `k`
    /// to `shares[k]`; the others announce nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn assume(
        &mut self,
        node: &mut Node,
        deferred: &mut VecDeque<Action>,
        owner: NodeId,
        addrs: &[OwnedAddress],
        arp: ArpPolicy,
        part: Selection,
        shares: &[NodeId],
    ) {
        let Some(table) = self.snooper.as_ref().map(|sn| sn.table.clone()) else {
            return;
        };
        let t0 = Instant::now();
        let announce = part.with_addresses();
        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.addr).collect();
        // Nothing to quiesce (at boot, or a group without connections): no early announcement
        // and no wait. Announcing an address before it exists only pays when there are
        // connections to draw here and snapshot; otherwise it makes the clients' SYNs arrive
        // before the address and be dropped (a new client then waits a second for its SYN
        // timer), and the wait holds up the event loop, and our heartbeats, for nothing.
        let idle = !table.lock().unwrap_or_else(|e| e.into_inner()).tracks(&ips);
        if !idle {
            if announce && arp != ArpPolicy::None {
                self.announce_early(addrs, arp);
            }
            self.quiesce(node, deferred, &table).await;
        }
        self.wait_for_table(node, deferred).await;
        let quiesced = Instant::now();
        let (snaps, lost) = self.take_snapshots(&table, owner, &ips, announce);
        let (snaps, lost) = self
            .select_part(node, owner, part, shares, snaps, lost)
            .await;
        for l in &lost {
            // Deliberately not re-created: the client's next segment meets no socket and is
            // reset. Never corrupted silently.
            let (state, reason) = (l.state.name(), l.reason.name());
            self.lose(&l.tuple, state, reason, "cannot be made whole");
        }
        let snapped = Instant::now();
        self.restore_all(node, deferred, &table, owner, &snaps)
            .await;
        let restored = Instant::now();
        info!(%owner, restored = snaps.len(), lost = lost.len(), elapsed_us = t0.elapsed().as_micros() as u64, "connections re-created in repair mode");
        self.timing = Some((
            snapped,
            TakeoverTiming {
                connections: snaps.len(),
                quiesce_us: (quiesced - t0).as_micros() as u64,
                snapshot_us: (snapped - quiesced).as_micros() as u64,
                restore_us: (restored - snapped).as_micros() as u64,
                to_live_us: 0,
            },
        ));
    }

    /// Announces the addresses before they exist, so that the clients' segments come here.
    fn announce_early(&mut self, addrs: &[OwnedAddress], arp: ArpPolicy) {
        let mac = if arp == ArpPolicy::Vmac {
            addrs.first().map_or(self.iface.mac, |a| a.mac)
        } else {
            self.iface.mac
        };
        if let Ok(sender) = self.sender(self.iface.index) {
            for a in addrs {
                let _ = sender.send(&announce_frame(mac, a.addr));
            }
        }
    }

    /// Waits, in `settle` steps with the protocol kept running, until the old owner's side has
    /// sent nothing for a step (at most four steps, and never longer than a heartbeat).
    async fn quiesce(&mut self, node: &mut Node, deferred: &mut VecDeque<Action>, table: &Table) {
        let step = self.me.settle;
        let cap = Duration::from_millis(self.me.ownership.policy.heartbeat_ms as u64).min(step * 4);
        let server_segments = || table.lock().map(|t| t.server_segments).unwrap_or(0);
        let mut waited = Duration::ZERO;
        loop {
            let before = server_segments();
            tokio::time::sleep(step).await;
            self.keep_alive(node, deferred).await;
            waited += step;
            if server_segments() == before || waited >= cap {
                break;
            }
        }
    }

    /// The table must hold everything that reached us: the frames the snooper has not read
    /// yet, and the holders' CONN-STATEs still being adopted. Waited for in short steps with
    /// the protocol kept running between them, so that a busy machine never makes the peers
    /// declare this node dead meanwhile.
    async fn wait_for_table(&mut self, node: &mut Node, deferred: &mut VecDeque<Action>) {
        let mut waited = Duration::ZERO;
        while let Some(sn) = self.snooper.as_ref() {
            let step = Duration::from_millis(5);
            if sn.adoptions_done(step) && sn.catch_up(step) {
                break;
            }
            waited += step;
            if waited >= Duration::from_millis(50) {
                warn!(
                    "the snooper is behind at the snapshot (frames or CONN-STATEs not yet in the table)"
                );
                break;
            }
            self.keep_alive(node, deferred).await;
        }
    }

    /// Takes the group's connections out of the snooped table: the snapshots to re-create and
    /// the connections that cannot be, leaving out those this node serves already. The SYNs
    /// the old owner never answered wait to be replayed once the address exists (only by the
    /// node that takes the address: the others' sockets would answer for it).
    fn take_snapshots(
        &mut self,
        table: &Table,
        owner: NodeId,
        ips: &[IpAddr],
        announce: bool,
    ) -> (Vec<Snapshot>, Vec<Lost>) {
        let taken = table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_over(ips);
        // A connection this node serves already (it drains here after a `new-connections`
        // failback, or a peer was declared dead twice) needs no restore: its socket is here
        // and live, and a second one for the same four-tuple cannot exist.
        let here: std::collections::HashSet<FourTuple> =
            self.served.connections(owner).into_iter().collect();
        let (snaps, served): (Vec<_>, Vec<_>) = taken
            .snapshots
            .into_iter()
            .partition(|s| !here.contains(&s.tuple));
        if !served.is_empty() {
            info!(%owner, connections = served.len(), "already served here: not re-created");
            self.conns.already_here += served.len() as u64;
            // Still tracked, for the next late backup.
            let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
            for s in &served {
                t.adopt(s);
            }
        }
        let lost: Vec<Lost> = taken
            .lost
            .into_iter()
            .filter(|l| !here.contains(&l.tuple))
            .collect();
        if announce {
            self.syns.extend(taken.syns.into_iter().map(|p| (owner, p)));
        }
        self.assuming.insert(owner, (ips.to_vec(), announce));
        (snaps, lost)
    }

    /// This node's part of the connections. As the `spread` holder (share 0 of several), the
    /// core splits them; we keep share 0, forward the others, and count as lost whatever
    /// share 0 cannot keep (connections in no list belong to it).
    async fn select_part(
        &mut self,
        node: &mut Node,
        owner: NodeId,
        part: Selection,
        shares: &[NodeId],
        snaps: Vec<Snapshot>,
        lost: Vec<Lost>,
    ) -> (Vec<Snapshot>, Vec<Lost>) {
        if let Selection::Share { index: 0, of } = part
            && of > 1
        {
            let tuples: Vec<FourTuple> = snaps.iter().map(|s| s.tuple).collect();
            let split = node.assign(owner, of, &tuples);
            let (mine, others): (Vec<_>, Vec<_>) = snaps
                .into_iter()
                .partition(|s| split.share_of(&s.tuple) == 0);
            for s in &others {
                if let Some(to) = shares.get(split.share_of(&s.tuple) as usize) {
                    self.forwards.entry((owner, *to)).or_default().push(s.tuple);
                }
            }
            info!(%owner, mine = mine.len(), forwarded = others.len(), listed = split.lists.is_some(), "spread: forwarding the other shares");
            self.apply_forwards(node).await;
            let lost = lost
                .into_iter()
                .filter(|l| split.share_of(&l.tuple) == 0)
                .collect();
            return (mine, lost);
        }
        let lost: Vec<Lost> = lost
            .into_iter()
            .filter(|l| part.includes(&l.tuple))
            .collect();
        let mine: Vec<Snapshot> = snaps
            .into_iter()
            .filter(|s| part.includes(&s.tuple))
            .collect();
        if let Selection::Listed(list) = &part {
            // Granted connections we never saw at all cannot be made whole either.
            let known: std::collections::HashSet<FourTuple> = mine
                .iter()
                .map(|s| s.tuple)
                .chain(lost.iter().map(|l| l.tuple))
                .collect();
            for t in list.iter().filter(|t| !known.contains(t)) {
                self.lose(
                    t,
                    "UNKNOWN",
                    "never_seen",
                    "granted, but never snooped here",
                );
            }
        }
        (mine, lost)
    }

    /// Restores the snapshots in chunks, each split over two threads (the kernel work for
    /// distinct sockets runs in parallel), with the protocol kept running between chunks.
    async fn restore_all(
        &mut self,
        node: &mut Node,
        deferred: &mut VecDeque<Action>,
        table: &Table,
        owner: NodeId,
        snaps: &[Snapshot],
    ) {
        for chunk in snaps.chunks(RESTORE_CHUNK) {
            let mut results = in_two_halves(chunk.iter().collect(), repair::restore);
            results.resize_with(chunk.len(), || {
                Err(std::io::Error::other("restore thread panicked"))
            });
            {
                let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                for (snap, r) in chunk.iter().zip(results) {
                    match r {
                        Ok(r) => {
                            // Keep tracking it (we snoop our own traffic too), so that a backup
                            // that joins later can be given its state.
                            t.adopt(snap);
                            self.repaired.push((owner, r))
                        }
                        Err(e) => {
                            let why = format!("TCP_REPAIR restore: {e}");
                            self.lose(&snap.tuple, snap.state().name(), "restore_failed", &why);
                        }
                    }
                }
            }
            if chunk.len() == RESTORE_CHUNK {
                self.keep_alive(node, deferred).await;
            }
        }
    }

    /// Waits until the snooper has read every frame queued so far (at most 50 ms), so that
    /// [`Self::go_live`] finds the packets that arrived during the takeover; in 5 ms steps with
    /// the protocol kept running between them, because a busy snooper must never stop this
    /// node's heartbeats long enough for a peer to declare it dead (seen: a 72 ms gap, then a
    /// false failover, when this wait blocked the event loop).
    pub(super) async fn snooper_caught_up(
        &mut self,
        node: &mut Node,
        deferred: &mut VecDeque<Action>,
    ) {
        let step = Duration::from_millis(5);
        let mut waited = Duration::ZERO;
        while let Some(sn) = self.snooper.as_ref() {
            if sn.catch_up(step) || waited >= Duration::from_millis(50) {
                break;
            }
            waited += step;
            self.keep_alive(node, deferred).await;
        }
    }

    /// The owner's address exists now: the repaired connections go live and their
    /// applications continue.
    pub(super) fn go_live(&mut self, owner: NodeId) {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.repaired)
            .into_iter()
            .partition(|(o, _)| *o == owner);
        self.repaired = rest;
        let n = mine.len();
        let mut live = Vec::with_capacity(n);
        // Leaving repair mode sends each connection's window probe through the whole path to
        // the client at once, in this thread: split over two threads.
        let inject = self.injector.as_deref();
        let go_live = |(_, r): (NodeId, Repaired)| -> Live {
            let (tuple, checkpoint, state) = (r.tuple, r.checkpoint.clone(), r.state);
            let live = match inject {
                Some(i) => r.go_live(i),
                None => Err(std::io::Error::other("no raw socket to restore a FIN with")),
            };
            (tuple, checkpoint, state, live)
        };
        let mut live_tuples = std::collections::HashSet::with_capacity(n);
        for (tuple, checkpoint, state, r) in in_two_halves(mine, go_live) {
            match r {
                Ok((stream, unsent)) => {
                    live_tuples.insert(tuple);
                    let mut app = (self.app)();
                    app.restore(&checkpoint);
                    self.conns.assumed += 1;
                    live.push(crate::serving::Start {
                        stream,
                        app,
                        owner: Some(owner),
                        tuple: Some(tuple),
                        first: unsent,
                    });
                }
                Err(e) => {
                    self.lose(&tuple, state, "restore_failed", &format!("going live: {e}"));
                }
            }
        }
        self.served.start_many(live);
        if n > 0 {
            info!(%owner, connections = n, "assumed connections are live");
        }
        if let Some((snapped, mut t)) = self.timing.take() {
            t.to_live_us = snapped.elapsed().as_micros() as u64;
            info!(?t, "takeover timing");
            self.conns.takeovers.insert(owner.0, t.clone());
            self.conns.last_takeover = Some(t);
        }
        // After the timing: putting back what arrived meanwhile is serving the clients, on the
        // replay thread (`replay.rs`), not going live.
        self.replay(owner, live_tuples);
    }

    /// Puts back into our stack, now that the owner's connections are live, what the clients
    /// sent that our kernel dropped while we took over: the handshakes the old owner never
    /// answered, then every packet that arrived after the snapshot (held by the snooper), in
    /// order. Without it a request sent during the takeover waits for the client's
    /// retransmission timer (two hundred milliseconds and more). Only packets of connections
    /// now live here, and new connections' SYNs where we hold the address, go in: anything else
    /// would meet no socket and draw a reset.
    fn replay(&mut self, owner: NodeId, live: std::collections::HashSet<FourTuple>) {
        let (syns, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.syns)
            .into_iter()
            .partition(|(o, _)| *o == owner);
        self.syns = rest;
        let (addrs, announce) = self.assuming.remove(&owner).unwrap_or_default();
        let held = match &self.snooper {
            Some(sn) => {
                // Waited for already (`snooper_caught_up`); only a last look here.
                if !sn.catch_up(Duration::from_millis(1)) {
                    warn!(
                        "the snooper is behind: some packets of the takeover may not be put back"
                    );
                }
                sn.table
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .release_held(&addrs)
            }
            None => Vec::new(),
        };
        let Some(replayer) = self.replayer.as_ref() else {
            if !syns.is_empty() || !held.is_empty() {
                warn!(
                    syns = syns.len(),
                    held = held.len(),
                    "no raw socket: packets dropped during the takeover are not put back"
                );
            }
            return;
        };
        let mut packets: Vec<Packet> = syns
            .into_iter()
            .map(|(_, bytes)| Packet { bytes, syn: true })
            .collect();
        for h in held {
            if !(live.contains(&h.tuple) || (h.syn && announce)) {
                self.conns.replay_skipped += 1;
                continue;
            }
            packets.push(Packet {
                bytes: h.packet,
                syn: h.syn,
            });
        }
        replayer.send(packets);
    }
}
