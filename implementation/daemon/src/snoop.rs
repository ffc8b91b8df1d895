//! Snooping: a backup watches its primary's service traffic (a mirrored switch port) on
//! AF_PACKET and keeps the flow table current (claims 8, 11).
//!
//! Read [`Snooper::start`] first. One thread reads every frame on the cluster interface into
//! `holdfast_proto::flow::FlowTable`, which is pure; at takeover the daemon locks the table and
//! takes the connections of the failed owner's addresses. Kernel drops are counted: a dropped
//! frame can open a hole that makes a connection unrestorable (it is then reported, never
//! silently corrupted).

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use holdfast_proto::app::App;
use holdfast_proto::flow::{FlowTable, Snapshot};

/// A running snooper.
pub struct Snooper {
    /// The flow table it keeps.
    pub table: Arc<Mutex<FlowTable>>,
    /// The socket and its counters, shared with the reading thread.
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    /// Snapshots to adopt, on a thread of their own ([`Snooper::adopt`]).
    adopt_tx: std::sync::mpsc::Sender<Snapshot>,
    /// Snapshots sent to that thread and not adopted yet.
    adopting: Arc<AtomicU64>,
}

/// The snooping socket and what it has queued, dropped and read.
struct Shared {
    fd: OwnedFd,
    /// Frames the kernel queued to the socket and dropped, summed over every
    /// `PACKET_STATISTICS` read (each read resets the kernel's counters).
    counts: Mutex<(u64, u64)>,
    /// Frames the thread has read and observed.
    read: AtomicU64,
    /// The control protocol's UDP port, and the MAC each peer's control datagrams came from
    /// (by its IPv4 address): where `snoop = "forward"` sends a backup its copies.
    control_port: u16,
    macs: Mutex<std::collections::HashMap<std::net::Ipv4Addr, [u8; 6]>>,
}

impl Shared {
    /// Adds the kernel's counts since the last call; returns (queued, dropped) so far.
    fn poll(&self) -> (u64, u64) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = [0u32; 2];
        let mut len = 8 as libc::socklen_t;
        // SAFETY: getsockopt(PACKET_STATISTICS) into a tpacket_stats-sized buffer.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                6,
                st.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if r == 0 {
            // tp_packets counts the dropped frames too.
            c.0 += (st[0] - st[1].min(st[0])) as u64;
            c.1 += st[1] as u64;
        }
        *c
    }
}

impl Drop for Snooper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Snooper {
    /// Starts snooping on interface `index` for the given services.
    pub fn start(
        index: u32,
        services: Vec<(IpAddr, (u16, u16))>,
        app: fn() -> Box<dyn App>,
        control_port: u16,
    ) -> io::Result<Self> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: socket(2), checked.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll zeroed then filled; bind to the interface.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = proto as u16;
        sa.sll_ifindex = index as i32;
        // SAFETY: bind with a valid sockaddr_ll.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        crate::sockbuf::receive(fd.as_raw_fd(), 64 << 20, "snooper");
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: setsockopt with a timeval, so the thread notices `stop`.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        let table = Arc::new(Mutex::new(FlowTable::new(services, app)));
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            fd,
            counts: Mutex::new((0, 0)),
            read: AtomicU64::new(0),
            control_port,
            macs: Mutex::new(Default::default()),
        });
        let (t2, s2, sh2) = (table.clone(), stop.clone(), shared.clone());
        std::thread::Builder::new()
            .name("snoop".into())
            .spawn(move || run(&sh2, t2, s2))?;
        let (adopt_tx, rx) = std::sync::mpsc::channel::<Snapshot>();
        let adopting = Arc::new(AtomicU64::new(0));
        let (t3, a3) = (table.clone(), adopting.clone());
        std::thread::Builder::new()
            .name("adopt".into())
            .spawn(move || {
                for snap in rx {
                    t3.lock().unwrap_or_else(|e| e.into_inner()).adopt(&snap);
                    a3.fetch_sub(1, Ordering::Release);
                }
            })?;
        Ok(Self {
            table,
            shared,
            stop,
            adopt_tx,
            adopting,
        })
    }

    /// The MAC the control datagrams from `ip` came from (learned from the frames).
    pub fn mac_of(&self, ip: std::net::Ipv4Addr) -> Option<[u8; 6]> {
        self.shared
            .macs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ip)
            .copied()
    }

    /// Starts tracking a connection from a holder's CONN-STATE, on a thread of its own:
    /// adopting replays every frame kept for the connection since it was first seen (up to
    /// 32 MB for a fast stream), which must not hold up the protocol loop and its heartbeats.
    pub fn adopt(&self, snap: Snapshot) {
        self.adopting.fetch_add(1, Ordering::Acquire);
        if self.adopt_tx.send(snap).is_err() {
            self.adopting.fetch_sub(1, Ordering::Release);
        }
    }

    /// Waits (at most `limit`) until every snapshot handed to [`Snooper::adopt`] is in the
    /// table. Returns whether they all are.
    pub fn adoptions_done(&self, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while self.adopting.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        true
    }

    /// Frames the kernel dropped because the socket was full.
    pub fn drops(&self) -> u64 {
        self.shared.poll().1
    }

    /// Waits (at most `limit`) until the snooper has observed every frame the kernel had
    /// queued for it when this was called, so that the table reflects them: a takeover's last
    /// look at the table must not miss what a busy machine left in the socket. Returns whether
    /// it caught up.
    pub fn catch_up(&self, limit: std::time::Duration) -> bool {
        let (queued, _) = self.shared.poll();
        let deadline = std::time::Instant::now() + limit;
        while self.shared.read.load(Ordering::Acquire) < queued {
            if std::time::Instant::now() > deadline {
                return false;
            }
            // Sleep, not spin: the caller runs at a real-time priority and would starve the
            // snooper's thread on its core.
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        true
    }
}

/// The sender (IPv4 address and MAC) of a control-protocol datagram: an untagged IPv4 UDP
/// frame to `port`. Anything else (or too short) is `None`.
fn control_sender(f: &[u8], port: u16) -> Option<(std::net::Ipv4Addr, [u8; 6])> {
    if f.get(12..14)? != [0x08, 0x00] || *f.get(23)? != 17 {
        return None;
    }
    let ihl = ((*f.get(14)? & 0x0f) as usize) * 4;
    let dport = f.get(14 + ihl + 2..14 + ihl + 4)?;
    if dport != port.to_be_bytes() {
        return None;
    }
    let ip: [u8; 4] = f.get(26..30)?.try_into().ok()?;
    let mac: [u8; 6] = f.get(6..12)?.try_into().ok()?;
    Some((ip.into(), mac))
}

fn run(shared: &Shared, table: Arc<Mutex<FlowTable>>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut since_stats = 0u32;
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: recv into a live buffer.
        let n = unsafe { libc::recv(shared.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let frame = &buf[..n as usize];
        if let Some((ip, mac)) = control_sender(frame, shared.control_port) {
            let mut m = shared.macs.lock().unwrap_or_else(|e| e.into_inner());
            if m.len() < 1024 || m.contains_key(&ip) {
                m.insert(ip, mac);
            }
        }
        table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(frame);
        shared.read.fetch_add(1, Ordering::Release);
        since_stats += 1;
        if since_stats > 10_000 {
            since_stats = 0;
            // Keeps the kernel's 32-bit counters from wrapping unseen.
            shared.poll();
        }
    }
}
