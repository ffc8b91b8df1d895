//! Raw nfnetlink for nf_tables: a batch of messages built attribute by attribute and committed
//! atomically, and the few expressions Holdfast's rules use. Shared by `steer` (forwarding)
//! and `tee` (copies for the backups). No crate covers nf_tables' netlink messages for the
//! `netdev` family's `fwd` and `dup` (rustables and nftnl need libnftnl, a C library the core
//! must not depend on), so the messages are built here, as the kernel's uapi header defines
//! them.

use std::io;

pub(crate) const NETLINK_NETFILTER: i32 = 12;
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 16;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 17;
pub(crate) const NFT_MSG_NEWTABLE: u16 = 0;
pub(crate) const NFT_MSG_DELTABLE: u16 = 2;
pub(crate) const NFT_MSG_NEWCHAIN: u16 = 3;
pub(crate) const NFT_MSG_NEWRULE: u16 = 6;
pub(crate) const NFT_MSG_DELRULE: u16 = 8;
pub(crate) const NFPROTO_NETDEV: u8 = 5;
pub(crate) const NFPROTO_IPV4: u32 = 2;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;

pub(crate) const NLM_F_REQUEST: u16 = 1;
pub(crate) const NLM_F_ACK: u16 = 4;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLM_F_APPEND: u16 = 0x800;
pub(crate) const NLMSG_ERROR: u16 = 2;

pub(crate) fn expr(l: &mut Msg, name: &str, data: impl FnOnce(&mut Msg)) {
    l.nest(1, |e| {
        e.str(1, name);
        e.nest(2, data);
    });
}

pub(crate) fn payload(l: &mut Msg, base: u32, offset: u32, len: u32) {
    expr(l, "payload", |d| {
        d.u32be(1, 1); // DREG
        d.u32be(2, base); // 1 network header, 2 transport header
        d.u32be(3, offset);
        d.u32be(4, len);
    });
}

pub(crate) fn cmp(l: &mut Msg, value: &[u8]) {
    expr(l, "cmp", |d| {
        d.u32be(1, 1); // SREG
        d.u32be(2, 0); // NFT_CMP_EQ
        d.nest(3, |v| v.bytes(1, value));
    });
}

pub(crate) fn immediate(l: &mut Msg, reg: u32, value: &[u8]) {
    expr(l, "immediate", |d| {
        d.u32be(1, reg);
        d.nest(2, |v| v.bytes(1, value));
    });
}

/// A netlink message body under construction (attributes appended to `b`).
pub(crate) struct Msg<'a> {
    b: &'a mut Vec<u8>,
}

impl Msg<'_> {
    pub(crate) fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.b.extend_from_slice(&(len as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(payload);
        self.pad();
    }
    pub(crate) fn pad(&mut self) {
        while self.b.len() % 4 != 0 {
            self.b.push(0);
        }
    }
    pub(crate) fn str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v);
    }
    pub(crate) fn u32be(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, ty: u16, v: &[u8]) {
        self.attr(ty, v);
    }
    pub(crate) fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Msg)) {
        let start = self.b.len();
        self.b.extend_from_slice(&[0, 0]);
        self.b.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        f(&mut Msg { b: self.b });
        let len = (self.b.len() - start) as u16;
        self.b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }
}

/// One nfnetlink batch: BEGIN, the messages (each acknowledged), END.
#[derive(Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    seq: u32,
    acked: Vec<u32>,
}

impl Batch {
    fn header(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.seq += 1;
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // nfgenmsg
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }
    fn finish(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }
    pub(crate) fn msg(&mut self, ty: u16, flags: u16, body: impl FnOnce(&mut Msg)) {
        if self.buf.is_empty() {
            let s = self.header(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
            self.finish(s);
        }
        let s = self.header(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            NFPROTO_NETDEV,
            0,
        );
        self.acked.push(self.seq);
        body(&mut Msg { b: &mut self.buf });
        self.finish(s);
    }

    /// Sends the batch and waits for every acknowledgement; the first error fails it (and the
    /// kernel has then applied none of it).
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let s = self.header(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        self.finish(s);
        let sock = Socket::open(self.buf.len())?;
        sock.send(&self.buf)?;
        let mut pending: std::collections::BTreeSet<u32> = self.acked.iter().copied().collect();
        let mut buf = vec![0u8; 65536];
        while !pending.is_empty() {
            let n = sock.recv(&mut buf)?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4")) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2"));
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4"));
                if len < 16 || off + len > n {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4"));
                    if code != 0 {
                        return Err(io::Error::new(
                            io::Error::from_raw_os_error(-code).kind(),
                            format!(
                                "nf_tables: {} (message {seq})",
                                io::Error::from_raw_os_error(-code)
                            ),
                        ));
                    }
                    pending.remove(&seq);
                }
                off += (len + 3) & !3;
            }
        }
        Ok(())
    }
}

pub(crate) struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn open(sndbuf: usize) -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the descriptor is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let s = Self(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let size = (sndbuf + 65536).min(i32::MAX as usize) as i32;
        crate::sockbuf::send(fd, size, "nf_tables socket");
        crate::sockbuf::receive(fd, size, "nf_tables socket");
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            );
        }
        Ok(s)
    }

    fn send(&self, b: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a zeroed sockaddr_nl addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address.
        let r = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self, b: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        // SAFETY: valid buffer.
        let r = unsafe { libc::recv(self.0.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// Deletes table `name` (family netdev) with everything in it; a table that is not there is
/// fine.
pub(crate) fn delete_table(name: &str) -> io::Result<()> {
    let mut b = Batch::default();
    b.msg(NFT_MSG_DELTABLE, 0, |m| m.str(1, name));
    match b.commit() {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) || e.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nests_sized() {
        let mut b = Vec::new();
        let mut m = Msg { b: &mut b };
        m.nest(4, |n| {
            n.str(1, "ab");
            n.u32be(2, 7);
        });
        // nest header 4 + "ab\0" (4+3, padded to 8) + u32 (8) = 20
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 20);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 4 | NLA_F_NESTED);
        assert_eq!(b.len(), 20);
    }
}
