//! Putting packets back into this node's own stack after a takeover, on a thread of its own.
//!
//! Each replayed packet runs the kernel's whole receive path in the sending thread: a client's
//! request reaches the re-created socket, wakes its application, and the answer goes out
//! through the interface. After a takeover of 10,000 connections with a request pending on
//! each, that was 20,936 packets and 230-290 ms on the protocol loop, with no heartbeat sent
//! meanwhile (a third node would have declared this one dead). The loop now hands the packets
//! over and goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use tracing::warn;

use crate::inject::Injector;

/// One packet to put back: an IP packet from a client, and whether it is a SYN.
pub struct Packet {
    /// The packet, from its IP header on.
    pub bytes: Vec<u8>,
    /// A handshake (counted apart).
    pub syn: bool,
}

/// What the replay thread has done, for the status.
#[derive(Default)]
pub struct ReplayCounts {
    /// SYNs put back.
    pub syns: AtomicU64,
    /// Other segments put back.
    pub segments: AtomicU64,
    /// Packets handed over and not yet put back.
    pub queued: AtomicU64,
    /// Packets the kernel refused (each logged).
    pub failed: AtomicU64,
}

/// The replay thread: packets go in with [`Replayer::send`], in order.
pub struct Replayer {
    tx: mpsc::Sender<Vec<Packet>>,
    /// Its counters.
    pub counts: Arc<ReplayCounts>,
}

impl Replayer {
    /// Starts the thread, sending through `inject` (the daemon's raw sockets, shared).
    pub fn spawn(inject: Arc<Injector>) -> std::io::Result<Self> {
        let counts = Arc::new(ReplayCounts::default());
        let (tx, rx) = mpsc::channel::<Vec<Packet>>();
        let c = counts.clone();
        std::thread::Builder::new()
            .name("replay".into())
            .spawn(move || {
                for batch in rx {
                    for p in batch {
                        match inject.replay(&p.bytes) {
                            Ok(()) if p.syn => c.syns.fetch_add(1, Ordering::Relaxed),
                            Ok(()) => c.segments.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                warn!("putting back a packet of a takeover: {e}");
                                c.failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        c.queued.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(Self { tx, counts })
    }

    /// Hands `packets` to the thread, which puts them back in this order.
    pub fn send(&self, packets: Vec<Packet>) {
        let n = packets.len() as u64;
        if n == 0 {
            return;
        }
        self.counts.queued.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(packets).is_err() {
            self.counts.queued.fetch_sub(n, Ordering::Relaxed);
            self.counts.failed.fetch_add(n, Ordering::Relaxed);
            warn!(
                packets = n,
                "the replay thread is gone: packets of a takeover not put back"
            );
        }
    }
}
