//! TCP_REPAIR: re-creating a live TCP connection with its exact sequence numbers and options.
//!
//! Read [`restore`] first. The steps follow the kernel's order, as in CRIU's soccr
//! (`soccr/soccr.c`, `libsoccr_restore`) and the kernel's
//! `tools/testing/selftests/net/tcp_ao/lib/repair.c` (`test_sock_restore`):
//! 1. repair mode on (`TCP_REPAIR`), and `IP_TRANSPARENT` so that the socket can bind the
//!    service address before it exists on this node (with `IP_FREEBIND` alone, the repair-mode
//!    `connect` fails with ENETUNREACH);
//! 2. the sequence numbers of both queues (`TCP_REPAIR_QUEUE` + `TCP_QUEUE_SEQ`), while closed;
//! 3. `bind` and `connect` (no SYN is sent in repair mode); never `SO_REUSEADDR`, which would undo
//!    the address reuse TCP_REPAIR forces;
//! 4. `TCP_REPAIR_OPTIONS`: MSS, window scale, SACK, timestamps. The window scale is always
//!    set, to zero both ways when the handshake did not negotiate it: the repair-mode
//!    `connect` has already chosen a receive shift from this node's sysctls
//!    (`tcp_connect_init` -> `tcp_select_initial_window`), and `__tcp_select_window` applies
//!    it whether or not `wscale_ok` is set, so a client without scaling would read our window
//!    unshifted (63 bytes instead of 65,535). ECN cannot be carried: `tcp_repair_options_est`
//!    (net/ipv4/tcp.c, 6.18) knows only these four options, and a repair-mode `connect` skips
//!    the SYN where ECN is negotiated (`tcp_connect`: `if (unlikely(tp->repair))` ...
//!    `tcp_finish_connect`); see docs/applications.md;
//! 5. `TCP_TIMESTAMP`, so that TSval continues above the old owner's (the client's PAWS);
//! 6. the send queue: bytes written in repair mode count as sent and unacknowledged; and the
//!    receive queue: the client bytes the old owner never acknowledged;
//! 7. `TCP_REPAIR_WINDOW`;
//! 8. the FINs, as CRIU's `libsoccr_restore` does (soccr/soccr.c): the server's FIN, if the
//!    old owner had sent it, by `shutdown(SHUT_WR)` with the send queue selected, so that the
//!    kernel counts it as sent (`restore_fin_in_snd_queue`); the client's, once the address
//!    exists, by putting a FIN from the client into this node's own stack through a raw
//!    socket (`send_fin`), which moves the socket to CLOSE_WAIT (or CLOSING) as the old one
//!    was;
//! 9. after the address exists: repair mode off, which makes the kernel send a window probe
//!    (our tickle ACK: it tells the client which of its bytes we have, and draws its ACK of
//!    ours), then the output the old owner had not sent yet. A connection with nothing in
//!    flight either way leaves repair mode without the probe (`TCP_REPAIR_OFF_NO_WP`): there is
//!    nothing to tell the client, and each probe costs a trip through the whole network path
//!    in the calling thread (a sixth of the time to take 10,000 connections live).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use holdfast_proto::flow::Snapshot;

const TCP_REPAIR: libc::c_int = 19;
const TCP_REPAIR_QUEUE: libc::c_int = 20;
const TCP_QUEUE_SEQ: libc::c_int = 21;
const TCP_REPAIR_OPTIONS: libc::c_int = 22;
const TCP_TIMESTAMP: libc::c_int = 24;
const TCP_REPAIR_WINDOW: libc::c_int = 29;
const TCP_NO_QUEUE: libc::c_int = 0;
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
const TCPOPT_MSS: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
const IP_TRANSPARENT: libc::c_int = 19;
const IPV6_TRANSPARENT: libc::c_int = 75;

/// `setsockopt` with a value of type `T`; the error says `what` was being set.
pub(crate) fn setopt<T>(
    fd: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: &T,
    what: &str,
) -> io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live value and its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// Selects the queue (`TCP_SEND_QUEUE` or `TCP_RECV_QUEUE`) that the next repair-mode
/// `TCP_QUEUE_SEQ` or `send` applies to.
fn select_queue(fd: &OwnedFd, queue: libc::c_int) -> io::Result<()> {
    let what = match queue {
        TCP_SEND_QUEUE => "TCP_REPAIR_QUEUE send",
        TCP_RECV_QUEUE => "TCP_REPAIR_QUEUE recv",
        _ => "TCP_REPAIR_QUEUE none",
    };
    setopt(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, what)
}

fn sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: a zeroed sockaddr_storage is valid; we fill the family's view of it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Calls `bind` or `connect` on `fd` with `addr`.
fn with_sockaddr(
    fd: &OwnedFd,
    addr: &SocketAddr,
    call: unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int,
    what: &str,
) -> io::Result<()> {
    let (sa, len) = sockaddr(addr);
    // SAFETY: `sa` is a filled sockaddr of length `len`, alive for the call.
    check(
        unsafe {
            call(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        },
        what,
    )
}

fn check(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// `TCP_REPAIR` off without the window probe.
const TCP_REPAIR_OFF_NO_WP: libc::c_int = -1;

/// A connection re-created in repair mode, not yet live.
pub struct Repaired {
    fd: OwnedFd,
    unsent: Vec<u8>,
    /// Bytes are in flight (ours unacknowledged, or the client's we hold but never
    /// acknowledged): leave repair mode with the window probe.
    probe: bool,
    /// The connection.
    pub tuple: holdfast_proto::wire::FourTuple,
    /// Its state (`ESTABLISHED`, `CLOSE_WAIT`, ...), for reports.
    pub state: &'static str,
    /// The application's checkpoint.
    pub checkpoint: Vec<u8>,
    /// The client's FIN, as an IP packet from the client, to put into our own stack once the
    /// address exists (step 8).
    client_fin: Option<Vec<u8>>,
}

impl std::os::fd::AsFd for Repaired {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Re-creates a connection in repair mode (steps 1-8). Nothing reaches the wire.
pub fn restore(s: &Snapshot) -> io::Result<Repaired> {
    let fd = repair_socket(&s.tuple.local)?;
    // Step 2: queue sequence numbers, while the socket is closed.
    select_queue(&fd, TCP_SEND_QUEUE)?;
    setopt(
        &fd,
        libc::IPPROTO_TCP,
        TCP_QUEUE_SEQ,
        &s.snd_una,
        "TCP_QUEUE_SEQ send",
    )?;
    select_queue(&fd, TCP_RECV_QUEUE)?;
    setopt(
        &fd,
        libc::IPPROTO_TCP,
        TCP_QUEUE_SEQ,
        &s.rcv_nxt,
        "TCP_QUEUE_SEQ recv",
    )?;
    // Step 3: bind, then connect (in repair mode no SYN is sent).
    with_sockaddr(&fd, &s.tuple.local, libc::bind, "bind")?;
    with_sockaddr(&fd, &s.tuple.remote, libc::connect, "connect (repair)")?;
    set_options(&fd, s)?;
    // Step 5: TSval continues just above the old owner's last one.
    if s.timestamps {
        let ts = s.ts_val.wrapping_add(1);
        setopt(&fd, libc::IPPROTO_TCP, TCP_TIMESTAMP, &ts, "TCP_TIMESTAMP")?;
    }
    // Step 6: the sent-but-unacknowledged output; and the client bytes the old owner never
    // acknowledged, into the receive queue: our first ACK then covers them and the client
    // carries on at once.
    queue_bytes(&fd, TCP_SEND_QUEUE, &s.sent, "send queue")?;
    queue_bytes(&fd, TCP_RECV_QUEUE, &s.received, "receive queue")?;
    // Step 7: struct tcp_repair_window { snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup }.
    let win: [u32; 5] = [s.rcv_nxt, s.snd_wnd, s.snd_wnd, s.rcv_wnd.max(1), s.rcv_nxt];
    setopt(
        &fd,
        libc::IPPROTO_TCP,
        TCP_REPAIR_WINDOW,
        &win,
        "TCP_REPAIR_WINDOW",
    )?;
    // Step 8: the server's FIN, counted as sent (soccr's `restore_fin_in_snd_queue`): with
    // the send queue selected, the kernel's transmit path marks the FIN sent without sending
    // it (`tcp_write_xmit`, "Skip network transmission" in repair mode).
    if s.server_fin {
        select_queue(&fd, TCP_SEND_QUEUE)?;
        // SAFETY: shutdown(2) on our socket.
        check(
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) },
            "shutdown (FIN in the send queue)",
        )?;
        select_queue(&fd, TCP_NO_QUEUE)?;
    }
    Ok(Repaired {
        fd,
        probe: !s.sent.is_empty() || !s.received.is_empty() || s.server_fin || s.client_fin,
        unsent: s.unsent.clone(),
        tuple: s.tuple,
        state: s.state().name(),
        checkpoint: s.checkpoint.clone(),
        client_fin: s.client_fin.then(|| crate::inject::client_fin(s)),
    })
}

/// Step 1: a TCP socket in repair mode, free to bind an address this node does not have yet
/// (IP_TRANSPARENT; IP_FREEBIND alone gives ENETUNREACH on the repair-mode `connect`).
fn repair_socket(local: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2); the result is checked and owned.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            libc::IPPROTO_TCP,
        )
    };
    check(raw, "socket")?;
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    setopt(&fd, libc::IPPROTO_TCP, TCP_REPAIR, &one, "TCP_REPAIR on")?;
    if local.is_ipv4() {
        setopt(
            &fd,
            libc::IPPROTO_IP,
            IP_TRANSPARENT,
            &one,
            "IP_TRANSPARENT",
        )?;
    } else {
        setopt(
            &fd,
            libc::IPPROTO_IPV6,
            IPV6_TRANSPARENT,
            &one,
            "IPV6_TRANSPARENT",
        )?;
    }
    Ok(fd)
}

/// Step 4: struct tcp_repair_opt { u32 opt_code; u32 opt_val; }. The window scale always,
/// zero both ways if it was not negotiated (see the module's step 4).
fn set_options(fd: &OwnedFd, s: &Snapshot) -> io::Result<()> {
    let (snd_shift, rcv_shift) = if s.wscale {
        (s.snd_wscale as u32, s.rcv_wscale as u32)
    } else {
        (0, 0)
    };
    let mut opts: Vec<[u32; 2]> = vec![
        [TCPOPT_MSS, s.mss as u32],
        [TCPOPT_WINDOW, snd_shift | (rcv_shift << 16)],
    ];
    if s.sack {
        opts.push([TCPOPT_SACK_PERM, 0]);
    }
    if s.timestamps {
        opts.push([TCPOPT_TIMESTAMP, 0]);
    }
    // SAFETY: setsockopt with the array and its byte length.
    check(
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                TCP_REPAIR_OPTIONS,
                opts.as_ptr().cast(),
                (opts.len() * 8) as libc::socklen_t,
            )
        },
        "TCP_REPAIR_OPTIONS",
    )
}

/// Queues `bytes` in repair mode on `queue` (the send queue: as sent and unacknowledged; the
/// receive queue: as received). The kernel takes at most MAX_SKB_FRAGS (17) pages per call
/// (`tcp_send_rcvq`) and says how much it took: send until all of it is queued.
fn queue_bytes(fd: &OwnedFd, queue: libc::c_int, bytes: &[u8], what: &str) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    select_queue(fd, queue)?;
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        // SAFETY: send from a live buffer; in repair mode the bytes are queued, not sent.
        let n = unsafe { libc::send(fd.as_raw_fd(), rest.as_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
        }
        if n == 0 {
            return Err(io::Error::other(format!(
                "{what}: the kernel took no bytes"
            )));
        }
        at += n as usize;
    }
    Ok(())
}

impl Repaired {
    /// Steps 8 and 9, once the address exists: the client's FIN into our stack (through
    /// `inject`), then repair mode off (with bytes or a FIN in flight, the kernel sends a
    /// window probe: the client answers with an ACK and retransmits what the old owner never
    /// acknowledged; with none, no probe). Returns the live socket and the output the old
    /// owner had not sent, for the application to send first (never blocking the daemon's loop
    /// on it).
    pub fn go_live(
        self,
        inject: &crate::inject::Injector,
    ) -> io::Result<(std::net::TcpStream, Vec<u8>)> {
        if let Some(fin) = &self.client_fin {
            inject
                .send(fin)
                .map_err(|e| io::Error::new(e.kind(), format!("the client's FIN: {e}")))?;
        }
        let off: libc::c_int = if self.probe { 0 } else { TCP_REPAIR_OFF_NO_WP };
        setopt(
            &self.fd,
            libc::IPPROTO_TCP,
            TCP_REPAIR,
            &off,
            "TCP_REPAIR off",
        )?;
        Ok((std::net::TcpStream::from(self.fd), self.unsent))
    }

    /// Closes the socket silently: in repair mode, close sends neither FIN nor RST.
    pub fn discard(self) {
        drop(self.fd);
    }
}
