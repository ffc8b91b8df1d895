//! Large socket buffers: `SO_RCVBUFFORCE` / `SO_SNDBUFFORCE` go beyond `net.core.rmem_max` but
//! need `CAP_NET_ADMIN` in the initial user namespace, which a daemon in a rootless sandbox (or a
//! container) lacks. Then the plain option gets as much as the system allows, and the log says
//! how much that is: a snooper's buffer smaller than a burst shows up as capture holes.

use std::os::fd::RawFd;

use tracing::warn;

fn set(fd: RawFd, opt: libc::c_int, bytes: libc::c_int) -> bool {
    // SAFETY: setsockopt with an int on a descriptor the caller owns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            4,
        ) == 0
    }
}

fn get(fd: RawFd, opt: libc::c_int) -> libc::c_int {
    let mut v: libc::c_int = 0;
    let mut len: libc::socklen_t = 4;
    // SAFETY: getsockopt into an int of the size given.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        );
    }
    v
}

/// Asks for a receive buffer of `bytes` on `fd` (for `what`, in the log): forced where allowed,
/// else as large as `net.core.rmem_max` permits, with a warning saying what it got.
pub fn receive(fd: RawFd, bytes: libc::c_int, what: &str) {
    grow(fd, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, bytes, what);
}

/// The same for a send buffer (`net.core.wmem_max`).
pub fn send(fd: RawFd, bytes: libc::c_int, what: &str) {
    grow(fd, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, bytes, what);
}

fn grow(fd: RawFd, force: libc::c_int, plain: libc::c_int, bytes: libc::c_int, what: &str) {
    if set(fd, force, bytes) {
        return;
    }
    set(fd, plain, bytes);
    // The kernel doubles what it grants (for its bookkeeping); compare like with like.
    let got = get(fd, plain) / 2;
    if got < bytes {
        warn!(
            what,
            wanted = bytes,
            got,
            "socket buffer limited by the system's maximum (no CAP_NET_ADMIN in the initial namespace for the forced size): bursts beyond it are dropped and counted"
        );
    }
}
