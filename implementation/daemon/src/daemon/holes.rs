//! Holes in the snooped copy, repaired while the holder lives (claims 8, 11): a backup asks the
//! group's holder for the client bytes it missed (FETCH), and the holder answers from the
//! connection's history (FETCHED). The flow table finds the holes and keeps the history; the
//! core decides whom to ask; this module turns both into datagrams and counts what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use holdfast_proto::flow::HistoryMiss;
use holdfast_proto::node::Node;
use holdfast_proto::policy::NodeId;
use holdfast_proto::wire::{Fetch, Fetched, FourTuple};
use tracing::{info, warn};

use super::Daemon;

/// How long to wait for an answer before asking again.
const RETRY: Duration = Duration::from_millis(10);
/// The most bytes one FETCHED datagram carries: it fits one 1500-byte frame with its headers
/// (IPv6 included), so that a lossy link loses a piece rather than a whole 40-fragment datagram
/// (at 20 % loss, a 60 kB datagram arrives whole once in ten thousand tries).
const CHUNK: usize = 1_200;
/// The most bytes one FETCH asks for (the rest of a longer hole is asked for next).
const ASK: u32 = 64 * 1024;

/// Open holes and when each was last asked for.
#[derive(Default)]
pub(super) struct Holes {
    asked: HashMap<(FourTuple, u32), Instant>,
}

impl Daemon {
    /// Asks the holders for every open hole not asked for in the last [`RETRY`] (called every
    /// few milliseconds from the event loop).
    pub(super) fn fetch_holes(&mut self, node: &mut Node) {
        let Some(sn) = &self.snooper else {
            return;
        };
        // Never wait for the table here: this runs every 5 ms on the real-time protocol
        // loop, and the snooper's thread (normal priority) may hold the lock while it is
        // preempted; the loop would wait for it, heartbeats late (a priority inversion).
        // A busy table is looked at on the next tick.
        let open = match sn.table.try_lock() {
            Ok(t) => t.open_holes(),
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().open_holes(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let now = Instant::now();
        self.holes
            .asked
            .retain(|k, _| open.iter().any(|(t, s, _)| (t, s) == (&k.0, &k.1)));
        for (tuple, seq, len) in open {
            let last = self.holes.asked.get(&(tuple, seq)).copied();
            if last.is_some_and(|t| now < t + RETRY) {
                continue;
            }
            let Some(owner) = self.owner_of.get(&tuple.local.ip()).copied() else {
                continue;
            };
            if last.is_none() {
                info!(local = %tuple.local, remote = %tuple.remote, seq, len, "hole in the snooped copy: fetching it from the holder");
            }
            let f = Fetch {
                owner,
                tuple,
                seq,
                len: len.min(ASK),
            };
            if node.fetch(f).is_some() {
                self.conns.fetches_sent += 1;
            }
            self.holes.asked.insert((tuple, seq), now);
        }
    }

    /// A backup asks for client bytes of a connection we hold.
    pub(super) fn answer_fetch(&mut self, node: &mut Node, from: NodeId, f: Fetch) {
        let Some(sn) = &self.snooper else {
            return;
        };
        let found = sn
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .history(&f.tuple, f.seq, f.len);
        match found {
            Ok(bytes) => {
                for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
                    node.fetched(
                        from,
                        Fetched {
                            owner: f.owner,
                            tuple: f.tuple,
                            seq: f.seq.wrapping_add((i * CHUNK) as u32),
                            gone: false,
                            data: chunk.to_vec(),
                        },
                    );
                }
                self.conns.fetches_answered += 1;
            }
            // Our own snooper has not fed them yet: the backup asks again.
            Err(HistoryMiss::NotYet) => self.conns.fetches_not_yet += 1,
            Err(why) => {
                warn!(%from, local = %f.tuple.local, remote = %f.tuple.remote, seq = f.seq, len = f.len, ?why, "FETCH for bytes no longer kept: the backup's copy of this connection cannot be repaired");
                self.conns.fetches_gone += 1;
                node.fetched(
                    from,
                    Fetched {
                        owner: f.owner,
                        tuple: f.tuple,
                        seq: f.seq,
                        gone: true,
                        data: Vec::new(),
                    },
                );
            }
        }
    }

    /// The holder's answer: the bytes fill the hole, or it no longer has them.
    pub(super) fn fetched(&mut self, from: NodeId, f: Fetched) {
        let Some(sn) = &self.snooper else {
            return;
        };
        let mut t = sn.table.lock().unwrap_or_else(|e| e.into_inner());
        if f.gone {
            warn!(%from, local = %f.tuple.local, remote = %f.tuple.remote, seq = f.seq, "the holder no longer has the bytes of a hole: this connection cannot be taken over whole");
            t.hole_gone(&f.tuple);
        } else {
            t.fill(&f.tuple, f.seq, &f.data);
        }
    }
}
