//! The floor for the restore bench: the same syscalls `holdfastd::repair::restore` and
//! `Repaired::go_live` make for the bench's connections (no queued bytes, no FIN, timestamps
//! on), in a bare loop with every argument built beforehand: no allocation, no error text, no
//! struct per connection. What `restore` costs beyond this is ours to remove.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

const TCP_REPAIR: libc::c_int = 19;
const TCP_REPAIR_QUEUE: libc::c_int = 20;
const TCP_QUEUE_SEQ: libc::c_int = 21;
const TCP_REPAIR_OPTIONS: libc::c_int = 22;
const TCP_TIMESTAMP: libc::c_int = 24;
const TCP_REPAIR_WINDOW: libc::c_int = 29;
const IP_TRANSPARENT: libc::c_int = 19;

fn set<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: &T) {
    // SAFETY: setsockopt with a live value and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(
        r,
        0,
        "floor: setsockopt {opt}: {}",
        std::io::Error::last_os_error()
    );
}

fn sin(ip: [u8; 4], port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip),
        },
        sin_zero: [0; 8],
    }
}

/// Restores `remotes.len()` connections to `local` in repair mode, calls `between` (which adds
/// the address), takes them all out of repair mode, and closes them (silently: repair mode).
/// Returns the time of each of the three steps.
pub(crate) fn run(
    local: ([u8; 4], u16),
    remotes: &[([u8; 4], u16)],
    between: impl FnOnce(),
) -> (Duration, Duration, Duration) {
    let local = sin(local.0, local.1);
    let remotes: Vec<libc::sockaddr_in> = remotes.iter().map(|r| sin(r.0, r.1)).collect();
    let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let one: libc::c_int = 1;
    let opts: [[u32; 2]; 4] = [[2, 1460], [3, 7 | (7 << 16)], [4, 0], [8, 0]];
    let mut fds = Vec::with_capacity(remotes.len());
    let t0 = Instant::now();
    for (i, r) in remotes.iter().enumerate() {
        let i = i as u32;
        // SAFETY: socket(2), checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                libc::IPPROTO_TCP,
            )
        };
        assert!(fd >= 0, "floor: socket");
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR, &one);
        set(fd, libc::IPPROTO_IP, IP_TRANSPARENT, &one);
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &2i32);
        set(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, &(5000 + i));
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &1i32);
        set(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ, &(1000 + i));
        // SAFETY: bind and connect with a filled sockaddr_in.
        unsafe {
            assert_eq!(
                libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len),
                0
            );
            assert_eq!(
                libc::connect(fd, (r as *const libc::sockaddr_in).cast(), len),
                0
            );
        }
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR_OPTIONS, &opts);
        set(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP, &101u32);
        let win: [u32; 5] = [1000 + i, 1 << 16, 1 << 16, 1 << 16, 1000 + i];
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, &win);
        fds.push(fd);
    }
    let restore = t0.elapsed();
    let t_addr = Instant::now();
    between();
    let address = t_addr.elapsed();
    let t1 = Instant::now();
    for &fd in &fds {
        // TCP_REPAIR_OFF_NO_WP, as go_live for a connection with nothing in flight.
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR, &-1i32);
    }
    let live = t1.elapsed();
    for fd in fds {
        // Back into repair mode, so that the close sends nothing and frees the socket at
        // once (nothing lingers to slow the next round's lookups).
        set(fd, libc::IPPROTO_TCP, TCP_REPAIR, &one);
        // SAFETY: our descriptor, closed once.
        unsafe { libc::close(fd) };
    }
    (restore, address, live)
}
