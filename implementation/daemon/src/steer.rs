//! Kernel forwarding of single connections to another node: nf_tables `netdev` ingress rules
//! with `fwd ... to ADDR device DEV` (the kernel resolves the next hop's MAC, rewrites the
//! frame and transmits it), spoken over raw nfnetlink, without the `nft` tool.
//!
//! Used where a node holds a group's addresses while some of its connections live elsewhere:
//! a returning owner under `new-connections` failback forwards the connections still draining
//! on the assumer to it, and the address holder under the `spread` policy forwards the other
//! survivors' shares to them. The packets never reach this node's IP stack, so it never answers
//! them with a reset.
//!
//! IPv4 packets go by `fwd ip to PEER device DEV`. IPv6 packets cannot: `fwd ip6` needs an
//! IPv6 next hop on the cluster link, and nodes only have IPv4 ones there; so an IPv6 rule
//! writes the peer's MAC (from the neighbour table) and ours into the Ethernet header and
//! sends the frame out of the same interface as it is (`fwd to DEV`).
//!
//! The whole rule set lives in one table (`holdfast`, family netdev, chain `steer` on the
//! cluster interface's ingress) and is replaced atomically in one batch on every change.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use holdfast_proto::wire::FourTuple;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
const NFPROTO_NETDEV: u8 = 5;
const NFPROTO_IPV4: u32 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;

const TABLE: &str = "holdfast";
const CHAIN: &str = "steer";

/// A node the connections go to: its IPv4 address on the cluster link, and its MAC there
/// (needed for IPv6 connections; `None` when the neighbour table has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Hop {
    /// The node's address.
    pub ip: IpAddr,
    /// The node's MAC.
    pub mac: Option<[u8; 6]>,
}

/// The forwarding rules of one node, by next hop: which connections go to which node.
pub type Rules = BTreeMap<Hop, Vec<FourTuple>>;

/// The netdev ingress forwarding of one interface.
pub struct Steer {
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    installed: usize,
}

impl Steer {
    /// For the cluster interface (its name, index and MAC). Installs nothing yet.
    pub fn new(ifname: &str, ifindex: u32, mac: [u8; 6]) -> Self {
        Self {
            ifname: ifname.to_owned(),
            ifindex,
            mac,
            installed: 0,
        }
    }

    /// Connections forwarded now.
    pub fn installed(&self) -> usize {
        self.installed
    }

    /// Removes whatever a previous run of the daemon in this namespace left (a powered-off
    /// node's kernel kept its rules).
    pub fn reset(&mut self) -> io::Result<()> {
        let mut b = Batch::default();
        b.msg(NFT_MSG_DELTABLE, 0, |m| m.str(1, TABLE));
        self.installed = 0;
        match b.commit() {
            Err(e)
                if e.raw_os_error() == Some(libc::ENOENT)
                    || e.kind() == io::ErrorKind::NotFound =>
            {
                Ok(())
            }
            r => r,
        }
    }

    /// Replaces every forwarding rule with `rules`, atomically (one nfnetlink batch). An empty
    /// set removes the table. Returns the connections that cannot be forwarded (IPv6 ones to a
    /// node whose MAC is unknown; an IPv4 or IPv6 connection to a node without an IPv4 address),
    /// which the caller reports.
    pub fn replace(&mut self, rules: &Rules) -> io::Result<Vec<FourTuple>> {
        let (rules, unforwardable) = forwardable(rules);
        let n: usize = rules.values().map(Vec::len).sum();
        if n == 0 {
            if self.installed > 0 {
                let mut b = Batch::default();
                b.msg(NFT_MSG_DELTABLE, 0, |m| m.str(1, TABLE));
                self.installed = 0;
                b.commit()?;
            }
            return Ok(unforwardable);
        }
        let mut b = Batch::default();
        b.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, |m| m.str(1, TABLE));
        b.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, |m| {
            m.str(1, TABLE);
            m.str(3, CHAIN);
            m.nest(4, |h| {
                h.u32be(1, 0); // NFTA_HOOK_HOOKNUM: NF_NETDEV_INGRESS
                h.u32be(2, (-100i32) as u32); // NFTA_HOOK_PRIORITY
                h.str(3, &self.ifname); // NFTA_HOOK_DEV
            });
            m.u32be(5, 1); // NFTA_CHAIN_POLICY: accept
            m.str(7, "filter"); // NFTA_CHAIN_TYPE
        });
        // Flush the chain: a DELRULE naming only the table and chain.
        b.msg(NFT_MSG_DELRULE, 0, |m| {
            m.str(1, TABLE);
            m.str(2, CHAIN);
        });
        for (hop, tuples) in &rules {
            for t in tuples {
                b.msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, |m| {
                    m.str(1, TABLE);
                    m.str(2, CHAIN);
                    m.nest(4, |l| rule(l, t, hop, self.mac, self.ifindex));
                });
            }
        }
        b.commit()?;
        self.installed = n;
        Ok(unforwardable)
    }
}

/// Splits `rules` into what can be forwarded and the connections that cannot.
fn forwardable(rules: &Rules) -> (Rules, Vec<FourTuple>) {
    let mut ok = Rules::new();
    let mut not = Vec::new();
    for (hop, tuples) in rules {
        for t in tuples {
            let v4 = t.local.is_ipv4() && t.remote.is_ipv4();
            let v6 = !t.local.is_ipv4() && !t.remote.is_ipv4();
            if hop.ip.is_ipv4() && (v4 || (v6 && hop.mac.is_some())) {
                ok.entry(*hop).or_default().push(*t);
            } else {
                not.push(*t);
            }
        }
    }
    (ok, not)
}

/// The expressions of one rule: match the client-to-service direction of `t`, forward to
/// `hop` (`mac` and `ifindex`: our interface).
fn rule(l: &mut Msg, t: &FourTuple, hop: &Hop, mac: [u8; 6], ifindex: u32) {
    let v4 = t.local.is_ipv4();
    let (ethertype, src_off, dst_off) = if v4 {
        (0x0800u16, 12, 16)
    } else {
        (0x86ddu16, 8, 24)
    };
    let ip_bytes = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    // meta protocol == ethertype
    expr(l, "meta", |d| {
        d.u32be(1, 1); // NFTA_META_DREG: NFT_REG_1
        d.u32be(2, 1); // NFTA_META_KEY: NFT_META_PROTOCOL
    });
    cmp(l, &ethertype.to_be_bytes());
    // meta l4proto == tcp
    expr(l, "meta", |d| {
        d.u32be(1, 1);
        d.u32be(2, 16); // NFT_META_L4PROTO
    });
    cmp(l, &[6]);
    let len = if v4 { 4 } else { 16 };
    payload(l, 1, src_off, len);
    cmp(l, &ip_bytes(t.remote.ip()));
    payload(l, 1, dst_off, len);
    cmp(l, &ip_bytes(t.local.ip()));
    payload(l, 2, 0, 2);
    cmp(l, &t.remote.port().to_be_bytes());
    payload(l, 2, 2, 2);
    cmp(l, &t.local.port().to_be_bytes());
    immediate(l, 2, &ifindex.to_ne_bytes());
    if v4 {
        // reg1 = next hop, reg2 = output interface; fwd ip (the kernel resolves the MAC)
        immediate(l, 1, &ip_bytes(hop.ip));
        expr(l, "fwd", |d| {
            d.u32be(1, 2); // NFTA_FWD_SREG_DEV
            d.u32be(2, 1); // NFTA_FWD_SREG_ADDR
            d.u32be(3, NFPROTO_IPV4);
        });
        return;
    }
    // ether daddr . ether saddr = the peer's MAC . ours, then out of the interface as is.
    let mut macs = hop.mac.unwrap_or_default().to_vec();
    macs.extend_from_slice(&mac);
    immediate(l, 1, &macs);
    expr(l, "payload", |d| {
        d.u32be(5, 1); // NFTA_PAYLOAD_SREG
        d.u32be(2, 0); // NFTA_PAYLOAD_BASE: link layer
        d.u32be(3, 0); // NFTA_PAYLOAD_OFFSET
        d.u32be(4, 12); // NFTA_PAYLOAD_LEN
        d.u32be(6, 0); // NFTA_PAYLOAD_CSUM_TYPE: none
    });
    expr(l, "fwd", |d| {
        d.u32be(1, 2); // NFTA_FWD_SREG_DEV
    });
}

fn expr(l: &mut Msg, name: &str, data: impl FnOnce(&mut Msg)) {
    l.nest(1, |e| {
        e.str(1, name);
        e.nest(2, data);
    });
}

fn payload(l: &mut Msg, base: u32, offset: u32, len: u32) {
    expr(l, "payload", |d| {
        d.u32be(1, 1); // DREG
        d.u32be(2, base); // 1 network header, 2 transport header
        d.u32be(3, offset);
        d.u32be(4, len);
    });
}

fn cmp(l: &mut Msg, value: &[u8]) {
    expr(l, "cmp", |d| {
        d.u32be(1, 1); // SREG
        d.u32be(2, 0); // NFT_CMP_EQ
        d.nest(3, |v| v.bytes(1, value));
    });
}

fn immediate(l: &mut Msg, reg: u32, value: &[u8]) {
    expr(l, "immediate", |d| {
        d.u32be(1, reg);
        d.nest(2, |v| v.bytes(1, value));
    });
}

/// A netlink message body under construction (attributes appended to `b`).
struct Msg<'a> {
    b: &'a mut Vec<u8>,
}

impl Msg<'_> {
    fn attr(&mut self, ty: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.b.extend_from_slice(&(len as u16).to_ne_bytes());
        self.b.extend_from_slice(&ty.to_ne_bytes());
        self.b.extend_from_slice(payload);
        self.pad();
    }
    fn pad(&mut self) {
        while self.b.len() % 4 != 0 {
            self.b.push(0);
        }
    }
    fn str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v);
    }
    fn u32be(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }
    fn bytes(&mut self, ty: u16, v: &[u8]) {
        self.attr(ty, v);
    }
    fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Msg)) {
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
struct Batch {
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
    fn msg(&mut self, ty: u16, flags: u16, body: impl FnOnce(&mut Msg)) {
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
    fn commit(mut self) -> io::Result<()> {
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

struct Socket(std::os::fd::OwnedFd);

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
        for opt in [libc::SO_SNDBUFFORCE, libc::SO_RCVBUFFORCE] {
            // SAFETY: setsockopt with an int.
            unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&size as *const i32).cast(), 4);
            }
        }
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
