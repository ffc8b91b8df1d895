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
use holdfast_proto::flow::FlowTable;

/// A running snooper.
pub struct Snooper {
    /// The flow table it keeps.
    pub table: Arc<Mutex<FlowTable>>,
    /// Frames the kernel dropped because the socket was full.
    pub drops: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
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
        let big: libc::c_int = 64 << 20;
        // SAFETY: setsockopt with an int; failure only means a smaller buffer.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const libc::c_int).cast(),
                4,
            );
        }
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
        let drops = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t2, d2, s2) = (table.clone(), drops.clone(), stop.clone());
        std::thread::Builder::new()
            .name("snoop".into())
            .spawn(move || run(fd, t2, d2, s2))?;
        Ok(Self { table, drops, stop })
    }
}

fn run(fd: OwnedFd, table: Arc<Mutex<FlowTable>>, drops: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut since_stats = 0u32;
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: recv into a live buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(&buf[..n as usize]);
        since_stats += 1;
        if since_stats > 10_000 {
            since_stats = 0;
            let mut st = [0u32; 2];
            let mut len = 8 as libc::socklen_t;
            // SAFETY: getsockopt(PACKET_STATISTICS) into a tpacket_stats-sized buffer.
            if unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    6,
                    st.as_mut_ptr().cast(),
                    &mut len,
                )
            } == 0
            {
                drops.fetch_add(st[1] as u64, Ordering::Relaxed);
            }
        }
    }
}
