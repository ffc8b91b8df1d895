//! The guardian: a tiny process that keeps the service connections silent if holdfastd dies.
//!
//! Read [`Guardian::spawn`] and [`run`] first. When a process dies, the kernel closes its sockets
//! and sends FIN (or RST) to every client: exactly what Holdfast must prevent. So holdfastd hands
//! a duplicate of every service socket to a guardian (over a unix socket pair, SCM_RIGHTS), and
//! tells it which addresses it holds. The guardian leaves its own session, so a signal to
//! holdfastd's process group does not reach it. When its end of the pair reports EOF (holdfastd
//! is gone), it puts every socket into repair mode (from then on closing it sends nothing),
//! removes the addresses (so the node stops answering ARP for them while a backup takes over),
//! holds the sockets a while, and closes them silently.
//!
//! Messages (one per SEQPACKET datagram): `op u8`, then a payload; `HOLD` carries up to 250
//! connection ids (8 bytes each) and their sockets as SCM_RIGHTS descriptors, in the same order.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

const HOLD: u8 = 1;
const DROP: u8 = 2;
const ADDR_ADD: u8 = 3;
const ADDR_DEL: u8 = 4;
const TCP_REPAIR: libc::c_int = 19;

/// holdfastd's side of the pair.
pub struct Guardian {
    fd: OwnedFd,
}

/// Descriptors per HOLD message (the kernel's SCM_MAX_FD is 253).
const HOLD_BATCH: usize = 250;

fn send(fd: RawFd, payload: &[u8], pass: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut cmsg = [0u64; 2 + HOLD_BATCH / 2];
    // SAFETY: a zeroed msghdr pointing at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !pass.is_empty() {
        let pass = &pass[..pass.len().min(HOLD_BATCH)];
        let bytes = size_of_val(pass) as u32;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        // SAFETY: CMSG macros over our own control buffer, sized for HOLD_BATCH fds.
        unsafe {
            msg.msg_controllen = libc::CMSG_SPACE(bytes) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(bytes) as usize;
            let data = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, f) in pass.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), *f);
            }
        }
    }
    // SAFETY: sendmsg with the header built above.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Guardian {
    /// Starts the guardian (`holdfastd guardian`, from this executable).
    pub fn spawn() -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: socketpair into a two-element array.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are fresh descriptors we own.
        let (mine, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let exe = std::env::current_exe()?;
        let child_fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("guardian").stdin(std::process::Stdio::null());
        // SAFETY: between fork and exec: dup2 the pair's end to fd 3 (without CLOEXEC) and
        // leave holdfastd's session and process group.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::dup2(child_fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::setsid();
                Ok(())
            });
        }
        cmd.spawn()?;
        drop(theirs);
        Ok(Self { fd: mine })
    }

    /// Hands the guardian a duplicate of a service socket.
    pub fn hold(&self, id: u64, sock: RawFd) -> io::Result<()> {
        self.hold_many(&[(id, sock)])
    }

    /// Hands the guardian duplicates of many service sockets, up to 250 per message (a
    /// takeover of 10,000 connections is 40 messages, not 10,000).
    pub fn hold_many(&self, socks: &[(u64, RawFd)]) -> io::Result<()> {
        for chunk in socks.chunks(HOLD_BATCH) {
            let mut p = vec![HOLD];
            let mut fds = Vec::with_capacity(chunk.len());
            for (id, fd) in chunk {
                p.extend_from_slice(&id.to_be_bytes());
                fds.push(*fd);
            }
            send(self.fd.as_raw_fd(), &p, &fds)?;
        }
        Ok(())
    }

    /// The connection is over: the guardian closes its duplicate.
    pub fn drop_conn(&self, id: u64) -> io::Result<()> {
        let mut p = vec![DROP];
        p.extend_from_slice(&id.to_be_bytes());
        send(self.fd.as_raw_fd(), &p, &[])
    }

    /// An address this node now holds or no longer holds.
    pub fn address(&self, addr: IpAddr, held: bool) -> io::Result<()> {
        let mut p = vec![if held { ADDR_ADD } else { ADDR_DEL }];
        p.extend_from_slice(addr.to_string().as_bytes());
        send(self.fd.as_raw_fd(), &p, &[])
    }
}

fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cmsg = [0u64; 4 + HOLD_BATCH / 2];
    // SAFETY: a zeroed msghdr pointing at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&cmsg);
    // SAFETY: recvmsg into the header above.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut passed = Vec::new();
    // SAFETY: walking the control messages the kernel wrote; each SCM_RIGHTS one holds
    // (cmsg_len - CMSG_LEN(0)) / 4 descriptors, now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..n {
                    passed.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, passed))
}

/// Puts a socket into repair mode: from now on it sends nothing, and closing it is silent.
pub fn freeze(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with an int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_REPAIR,
            (&one as *const libc::c_int).cast(),
            4,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether a TCP socket is in repair mode (frozen).
pub fn in_repair(fd: RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = 4 as libc::socklen_t;
    // SAFETY: getsockopt into an int of the given length.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_REPAIR,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r == 0 && v != 0
}

/// The guardian process: fd 3 is its end of the pair.
pub fn run(hold_for: Duration) -> anyhow::Result<()> {
    let fd: RawFd = 3;
    let mut socks: HashMap<u64, OwnedFd> = HashMap::new();
    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match recv(fd, &mut buf) {
            Ok((0, _)) => break,
            Ok((n, passed)) => {
                let p = &buf[..n];
                let id = p
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                match (p[0], id) {
                    (HOLD, Some(_)) => {
                        let ids = p[1..]
                            .chunks_exact(8)
                            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
                        for (id, f) in ids.zip(passed) {
                            socks.insert(id, f);
                        }
                    }
                    (DROP, Some(id)) => {
                        socks.remove(&id);
                    }
                    (ADDR_ADD | ADDR_DEL, _) => {
                        if let Some(a) = std::str::from_utf8(&p[1..])
                            .ok()
                            .and_then(|s| s.parse().ok())
                        {
                            addrs.retain(|x| *x != a);
                            if p[0] == ADDR_ADD {
                                addrs.push(a);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    // holdfastd is gone. Silence every connection first, then stop answering for the addresses.
    let mut frozen = 0;
    for f in socks.values() {
        if freeze(f.as_raw_fd()).is_ok() {
            frozen += 1;
        }
    }
    eprintln!(
        "holdfastd guardian: holdfastd is gone; froze {frozen} connections, removing {} addresses",
        addrs.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if let Ok(net) = crate::netio::Net::new() {
            for a in &addrs {
                let _ = net.del_addr(*a).await;
            }
        }
    });
    // Hold them while a backup takes over, then close them: in repair mode, silently.
    std::thread::sleep(hold_for);
    drop(socks);
    Ok(())
}
