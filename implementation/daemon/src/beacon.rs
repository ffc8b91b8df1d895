//! The beacon: a thread that sends the core's spare heartbeats (ALIVE datagrams,
//! [`holdfast_proto::node::Action::SpareHeartbeats`]) while the protocol loop is held.
//!
//! The loop runs at a real-time priority, yet one slow action (an address added while another
//! namespace holds the kernel's routing lock, a chunk of a restore) held it 10-25 ms in the
//! conformance runs, long enough on a busy machine for a peer to miss three 10 ms heartbeats and
//! take over a node that was alive and serving; once, a single `sendto` of a heartbeat took
//! 22 ms. The core seals the spares with each HEARTBEAT (liveness only, in a sequence space of
//! their own, so they need not wait for anything the loop sends); this thread, at a real-time
//! priority above the loop's, sends each when it is due, and the loop's next HEARTBEAT replaces
//! them before the first is due. A frozen or dead process sends none, and the core seals only
//! as many as the reserve covers: a loop wedged for good is declared dead once they are spent.
//!
//! One thread per CPU the daemon may run on (at most [`MAX_THREADS`]), each pinned to its CPU,
//! all sharing one plan: whichever wakes first sends the spare that is due. A virtual machine's
//! CPU can be taken away by its host for tens of milliseconds (20 % of the time in one
//! conformance run here); a thread on it, and its timer, stop with it, while the node's other
//! CPUs run on. The node is alive while any of its CPUs runs, and so are its spares.

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

/// The most beacon threads (one per CPU).
pub const MAX_THREADS: usize = 4;

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
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Beacon {
    /// Starts the threads, one per CPU this process may use, sending to `dest` on duplicates
    /// of the loop's control socket (the same socket: same source address and port, same
    /// namespace).
    pub fn spawn(sock: &impl AsFd, dest: SocketAddr) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            plan: Mutex::new(Plan::default()),
            wake: Condvar::new(),
            counts: BeaconCounts::default(),
        });
        let mut beacon = Self {
            shared,
            threads: Vec::new(),
        };
        let cpus = allowed_cpus();
        let targets: Vec<Option<usize>> = if cpus.is_empty() {
            vec![None]
        } else {
            cpus.into_iter().map(Some).collect()
        };
        for cpu in targets {
            let sock = UdpSocket::from(sock.as_fd().try_clone_to_owned()?);
            let s = beacon.shared.clone();
            let t = std::thread::Builder::new()
                .name(format!(
                    "beacon-{}",
                    cpu.map_or("any".into(), |c| c.to_string())
                ))
                .spawn(move || {
                    pin(cpu);
                    run(&s, &sock, dest)
                })?;
            beacon.threads.push(t);
        }
        Ok(beacon)
    }

    /// How many threads send the spares.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.shared.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the spares: `(when due, datagram)`, in order (none: cancels them).
    pub fn set(&self, spares: impl IntoIterator<Item = (Instant, Vec<u8>)>) {
        self.plan().spares = spares.into_iter().collect();
        self.shared.wake.notify_all();
    }

    /// What the beacon did so far.
    pub fn counts(&self) -> &BeaconCounts {
        &self.shared.counts
    }
}

impl Drop for Beacon {
    fn drop(&mut self) {
        self.plan().stop = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The CPUs this process may run on, at most [`MAX_THREADS`] (none if the kernel will not
/// say: then one unpinned thread).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the size passed is the set's own.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .take(MAX_THREADS)
        .collect()
}

/// Pins the calling thread to `cpu` (if any; a failure leaves it unpinned, logged).
fn pin(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET with cpu < CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the size passed is the set's own.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        warn!(
            cpu,
            "beacon thread not pinned: {}",
            std::io::Error::last_os_error()
        );
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
        // Sent unlocked: the loop's `set` never waits for a slow send.
        drop(plan);
        let sent = sock.send_to(&data, dest);
        plan = shared.plan.lock().unwrap_or_else(|e| e.into_inner());
        match sent {
            Ok(_) => shared.counts.sent.fetch_add(1, Relaxed),
            Err(e) => {
                warn!("spare heartbeat to {dest}: {e}");
                shared.counts.failed.fetch_add(1, Relaxed)
            }
        };
    }
}
