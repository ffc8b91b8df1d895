//! The beacon: a thread that sends the core's spare heartbeats
//! ([`holdfast_proto::node::Action::SpareHeartbeats`]) while the protocol loop is held.
//!
//! The loop runs at a real-time priority, yet one slow action (an address added while another
//! namespace holds the kernel's routing lock, a chunk of a restore) held it 10-25 ms in the
//! conformance runs, long enough on a busy machine for a peer to miss three 10 ms heartbeats and
//! take over a node that was alive and serving. The core seals the spares with each HEARTBEAT
//! (their sequence numbers reserved, the peers' ages grown by each one's delay); this thread,
//! at a real-time priority above the loop's, sends each when it is due. The loop voids them
//! ([`Beacon::void`]) before it sends anything itself, so a spare never follows a newer
//! datagram: the receiver would drop it as a replay. A frozen or dead process sends none, and
//! the core seals only as many as the reserve covers: a loop wedged for good is declared dead
//! once they are spent.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use tracing::warn;

/// The beacon's real-time priority (`SCHED_FIFO`): above the protocol loop's (10), so that a
/// loop busy on the CPU (a restore) does not starve it.
const PRIORITY: i32 = 20;

/// Counts, for the status socket.
#[derive(Debug, Default)]
pub struct BeaconCounts {
    /// Spare heartbeats sent (each one stood in for a heartbeat the held loop could not send).
    pub sent: AtomicU64,
    /// Spares skipped because a later one was due already (the beacon itself was late).
    pub skipped: AtomicU64,
    /// Spares the kernel refused to send (each logged).
    pub failed: AtomicU64,
}

#[derive(Default)]
struct Plan {
    spares: VecDeque<(Instant, Vec<u8>)>,
    stop: bool,
}

struct Shared {
    plan: Mutex<Plan>,
    wake: Condvar,
    counts: BeaconCounts,
}

/// The beacon thread and what it shares with the loop.
pub struct Beacon {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Beacon {
    /// Starts the thread, sending to `dest` on a duplicate of the loop's control socket (the
    /// same socket: same source address and port, same namespace).
    pub fn spawn(sock: &impl AsFd, dest: SocketAddr) -> std::io::Result<Self> {
        let sock = UdpSocket::from(sock.as_fd().try_clone_to_owned()?);
        let shared = Arc::new(Shared {
            plan: Mutex::new(Plan::default()),
            wake: Condvar::new(),
            counts: BeaconCounts::default(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("beacon".into())
            .spawn(move || run(&s, &sock, dest))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.shared.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the spares: `(when due, datagram)`, in order.
    pub fn set(&self, spares: impl IntoIterator<Item = (Instant, Vec<u8>)>) {
        self.plan().spares = spares.into_iter().collect();
        self.shared.wake.notify_one();
    }

    /// Voids the spares: call before the loop sends any datagram (theirs are older sequence
    /// numbers). A spare being sent now is on the wire before this returns.
    pub fn void(&self) {
        self.plan().spares.clear();
    }

    /// What the beacon did so far.
    pub fn counts(&self) -> &BeaconCounts {
        &self.shared.counts
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        self.plan().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, sock: &UdpSocket, dest: SocketAddr) {
    let param = libc::sched_param {
        sched_priority: PRIORITY,
    };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid parameter.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc != 0 {
        warn!(
            "no real-time priority for the beacon ({}): spare heartbeats may be late under load",
            std::io::Error::last_os_error()
        );
    }
    let mut plan = shared.plan.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if plan.stop {
            return;
        }
        let now = Instant::now();
        let Some(due) = plan.spares.front().map(|s| s.0) else {
            plan = shared.wake.wait(plan).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        if due > now {
            plan = shared
                .wake
                .wait_timeout(plan, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        let (_, data) = plan.spares.pop_front().expect("a front exists");
        if plan.spares.front().is_some_and(|next| next.0 <= now) {
            // Late ourselves: only the newest due one goes out.
            shared.counts.skipped.fetch_add(1, Relaxed);
            continue;
        }
        // Sent with the plan locked: `void` waits for it, so the loop's next datagram follows.
        match sock.send_to(&data, dest) {
            Ok(_) => shared.counts.sent.fetch_add(1, Relaxed),
            Err(e) => {
                warn!("spare heartbeat to {dest}: {e}");
                shared.counts.failed.fetch_add(1, Relaxed)
            }
        };
    }
}
