//! A small synchronous rtnetlink client: links, addresses, qdiscs and filters.
//!
//! Read [`Netlink`] first. A netlink socket stays in the network namespace it was created in, so
//! the builder creates one socket per namespace (on a thread that has entered it) and then uses
//! it from any thread. This lets the harness build a whole cluster without spawning `ip` or `tc`
//! and without calling `setns` on an async worker.
//!
//! Message layouts follow `include/uapi/linux/{netlink,rtnetlink,if_link,pkt_sched,pkt_cls}.h`
//! and `tc_act/tc_mirred.h`.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_NEWTFILTER: u16 = 44;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_BR_AGEING_TIME: u16 = 4;
const IFLA_BR_MCAST_SNOOPING: u16 = 23;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;

const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_U32_SEL: u16 = 5;
const TCA_U32_ACT: u16 = 7;
const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_MIRRED_PARMS: u16 = 2;
const TCA_BPF_OPS_LEN: u16 = 4;
const TCA_BPF_OPS: u16 = 5;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;

const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const TC_H_MIN_INGRESS: u32 = 0xFFF2;
const TC_H_MIN_EGRESS: u32 = 0xFFF3;
const TC_ACT_PIPE: i32 = 3;
const TCA_EGRESS_MIRROR: i32 = 2;
const TC_U32_TERMINAL: u8 = 1;
const ETH_P_ALL: u16 = 0x0003;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// A tc hook on a clsact qdisc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// Frames the interface receives.
    Ingress,
    /// Frames the interface transmits.
    Egress,
}

impl Hook {
    fn parent(self) -> u32 {
        (TC_H_CLSACT & 0xFFFF_0000)
            | match self {
                Self::Ingress => TC_H_MIN_INGRESS,
                Self::Egress => TC_H_MIN_EGRESS,
            }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(1);

/// An rtnetlink socket bound to the namespace it was created in.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
}

/// A netlink message under construction: header, fixed part, then attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(ty: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(fixed);
        pad(&mut buf);
        Self {
            buf,
            nests: Vec::new(),
        }
    }

    fn seq(&self) -> u32 {
        u32::from_ne_bytes(self.buf[8..12].try_into().expect("4 bytes"))
    }

    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v)
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn begin(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        // Like iproute2's addattr_nest, without NLA_F_NESTED: some kernel policies reject it.
        self.attr(ty, &[])
    }

    /// Appends raw bytes inside the current nest (for a nested fixed header such as a peer's
    /// `ifinfomsg`).
    fn raw(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        pad(&mut self.buf);
        self
    }

    fn end(&mut self) -> &mut Self {
        let start = self.nests.pop().expect("balanced nests");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self) -> Vec<u8> {
        assert!(self.nests.is_empty(), "unbalanced nests");
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

fn pad(buf: &mut Vec<u8>) {
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn tcmsg(ifindex: i32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    m[8..12].copy_from_slice(&handle.to_ne_bytes());
    m[12..16].copy_from_slice(&parent.to_ne_bytes());
    m[16..20].copy_from_slice(&info.to_ne_bytes());
    m
}

/// A netlink request the kernel refused, with its extended-ack text when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}{}", ext.as_deref().map(|e| format!(" ({e})")).unwrap_or_default())]
pub struct NetlinkError {
    /// What was being done.
    pub what: String,
    /// The errno the kernel answered.
    pub source: io::Error,
    /// The kernel's extended-ack message.
    pub ext: Option<String>,
}

impl NetlinkError {
    /// The errno.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

fn io_err(what: &str, e: io::Error) -> NetlinkError {
    NetlinkError {
        what: what.to_owned(),
        source: e,
        ext: None,
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's current network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is checked and owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int pointer and length. Failure is harmless (older
        // kernels): we just lose the kernel's error text.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                SOL_NETLINK,
                NETLINK_EXT_ACK,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as u32,
            );
        }
        Ok(Self { fd })
    }

    /// Sends one request and waits for its acknowledgement; returns any data replies.
    fn request(&self, what: &str, msg: Msg) -> Result<Vec<Vec<u8>>> {
        let seq = msg.seq();
        let buf = msg.finish();
        // SAFETY: sockaddr_nl zeroed is the kernel's address (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: buf and addr are valid for the given lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io_err(what, io::Error::last_os_error()));
        }
        let mut replies = Vec::new();
        let mut rbuf = vec![0u8; 65536];
        loop {
            // SAFETY: rbuf is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), rbuf.as_mut_ptr().cast(), rbuf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io_err(what, e));
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(rbuf[off..off + 4].try_into().expect("4")) as usize;
                if len < 16 || off + len > n {
                    break;
                }
                let ty = u16::from_ne_bytes(rbuf[off + 4..off + 6].try_into().expect("2"));
                let rseq = u32::from_ne_bytes(rbuf[off + 8..off + 12].try_into().expect("4"));
                let body = &rbuf[off + 16..off + len];
                off += (len + 3) & !3;
                if rseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        if body.len() < 4 {
                            return Err(io_err(what, io::Error::other("short NLMSG_ERROR")));
                        }
                        let code = i32::from_ne_bytes(body[0..4].try_into().expect("4"));
                        if code == 0 {
                            return Ok(replies);
                        }
                        return Err(NetlinkError {
                            what: what.to_owned(),
                            source: io::Error::from_raw_os_error(-code),
                            ext: ext_ack_message(body),
                        });
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => replies.push(body.to_vec()),
                }
            }
        }
    }

    /// Looks up an interface's index by name; `None` if it does not exist.
    pub fn link_index(&self, name: &str) -> Result<Option<i32>> {
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        match self.request(&format!("get link {name}"), m) {
            Ok(replies) => Ok(replies
                .first()
                .filter(|r| r.len() >= 8)
                .map(|r| i32::from_ne_bytes(r[4..8].try_into().expect("4")))),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A link's `ifi_flags` (`IFF_UP`, `IFF_RUNNING`, ...); `None` if it does not exist.
    pub fn link_flags(&self, name: &str) -> Result<Option<u32>> {
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        match self.request(&format!("get link {name}"), m) {
            Ok(replies) => Ok(replies
                .first()
                .filter(|r| r.len() >= 12)
                .map(|r| u32::from_ne_bytes(r[8..12].try_into().expect("4")))),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn index(&self, name: &str) -> Result<i32> {
        self.link_index(name)?.ok_or_else(|| {
            io_err(
                &format!("find link {name}"),
                io::Error::from_raw_os_error(libc::ENODEV),
            )
        })
    }

    /// Creates a bridge with multicast snooping off (so that cluster multicast floods like a
    /// plain hub) and STP off (the kernel default), so that ports forward at once. With `hub`,
    /// the ageing time is 0: the bridge keeps no learned address and floods every frame.
    pub fn add_bridge(&self, name: &str, hub: bool) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, name)
            .begin(IFLA_LINKINFO)
            .str(IFLA_INFO_KIND, "bridge")
            .begin(IFLA_INFO_DATA)
            .attr(IFLA_BR_MCAST_SNOOPING, &[0]);
        if hub {
            m.u32(IFLA_BR_AGEING_TIME, 0);
        }
        m.end().end();
        self.request(&format!("create bridge {name}"), m).map(drop)
    }

    /// Creates a veth pair: `name` here, and `peer` in the namespace `peer_ns` (already in its
    /// final namespace, so it never appears anywhere else), with optional MACs.
    pub fn add_veth(
        &self,
        name: &str,
        mac: Option<[u8; 6]>,
        peer: &str,
        peer_mac: Option<[u8; 6]>,
        peer_ns: RawFd,
    ) -> Result<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, name);
        if let Some(mac) = mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        m.begin(IFLA_LINKINFO)
            .str(IFLA_INFO_KIND, "veth")
            .begin(IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER)
            .raw(&ifinfomsg(0, 0, 0))
            .str(IFLA_IFNAME, peer)
            .u32(IFLA_NET_NS_FD, peer_ns as u32);
        if let Some(mac) = peer_mac {
            m.attr(IFLA_ADDRESS, &mac);
        }
        m.end().end().end();
        self.request(&format!("create veth {name} <-> {peer}"), m)
            .map(drop)
    }

    /// Enslaves `name` to the bridge `master`.
    pub fn set_master(&self, name: &str, master: &str) -> Result<()> {
        let (idx, midx) = (self.index(name)?, self.index(master)?);
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(idx, 0, 0));
        m.u32(IFLA_MASTER, midx as u32);
        self.request(&format!("attach {name} to {master}"), m)
            .map(drop)
    }

    /// Takes `name` out of its bridge.
    pub fn set_nomaster(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(idx, 0, 0));
        m.u32(IFLA_MASTER, 0);
        self.request(&format!("detach {name} from its bridge"), m)
            .map(drop)
    }

    /// Sets a link administratively up or down.
    pub fn set_up(&self, name: &str, up: bool) -> Result<()> {
        let idx = self.index(name)?;
        let flags = if up { libc::IFF_UP as u32 } else { 0 };
        let m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(idx, flags, libc::IFF_UP as u32));
        self.request(&format!("set {name} {}", if up { "up" } else { "down" }), m)
            .map(drop)
    }

    /// Deletes a link (and so its veth peer, wherever that is).
    pub fn del_link(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        let m = Msg::new(RTM_DELLINK, 0, &ifinfomsg(idx, 0, 0));
        self.request(&format!("delete {name}"), m).map(drop)
    }

    /// Adds an address. IPv6 addresses skip duplicate address detection, so they are usable at
    /// once and no DAD probes appear in captures.
    pub fn add_addr(&self, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let idx = self.index(name)?;
        let (family, bytes): (u8, Vec<u8>) = match addr {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut fixed = [0u8; 8];
        fixed[0] = family;
        fixed[1] = prefix;
        fixed[4..8].copy_from_slice(&(idx as u32).to_ne_bytes());
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        m.attr(IFA_LOCAL, &bytes).attr(IFA_ADDRESS, &bytes);
        if addr.is_ipv6() {
            m.u32(IFA_FLAGS, IFA_F_NODAD);
        }
        self.request(&format!("add {addr}/{prefix} to {name}"), m)
            .map(drop)
    }

    /// Adds a route to `dst` (`None`: the default route of the gateway's family) via a
    /// gateway on a connected subnet.
    pub fn add_route(&self, dst: Option<(IpAddr, u8)>, via: IpAddr) -> Result<()> {
        let bytes = |a: IpAddr| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let family = if via.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        } as u8;
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
        let mut fixed = [0u8; 12];
        fixed[0] = family;
        fixed[1] = dst.map_or(0, |(_, len)| len);
        fixed[4] = RT_TABLE_MAIN;
        fixed[5] = RTPROT_STATIC;
        fixed[6] = RT_SCOPE_UNIVERSE;
        fixed[7] = RTN_UNICAST;
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        if let Some((d, _)) = dst {
            m.attr(RTA_DST, &bytes(d));
        }
        m.attr(RTA_GATEWAY, &bytes(via));
        let what = match dst {
            Some((d, l)) => format!("add route {d}/{l} via {via}"),
            None => format!("add default route via {via}"),
        };
        self.request(&what, m).map(drop)
    }

    /// Adds a clsact qdisc (ingress and egress hooks for filters) to a link.
    pub fn add_clsact(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        let mut m = Msg::new(
            RTM_NEWQDISC,
            NLM_F_CREATE | NLM_F_EXCL,
            &tcmsg(idx, TC_H_CLSACT & 0xFFFF_0000, TC_H_CLSACT, 0),
        );
        m.str(TCA_KIND, "clsact");
        self.request(&format!("add clsact qdisc to {name}"), m)
            .map(drop)
    }

    /// Removes a link's clsact qdisc and with it every filter on it. Missing is fine.
    pub fn del_clsact(&self, name: &str) -> Result<()> {
        let Some(idx) = self.link_index(name)? else {
            return Ok(());
        };
        let m = Msg::new(
            RTM_DELQDISC,
            0,
            &tcmsg(idx, TC_H_CLSACT & 0xFFFF_0000, TC_H_CLSACT, 0),
        );
        match self.request(&format!("delete clsact qdisc of {name}"), m) {
            Err(e) if matches!(e.errno(), Some(libc::ENOENT | libc::EINVAL)) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Adds a u32 match-all filter whose actions mirror every frame to each port of `to` (a
    /// SPAN session with several destinations), like `tc filter add dev X <hook> prio P
    /// protocol all u32 match u32 0 0 action mirred egress mirror dev TO1 pipe action mirred
    /// egress mirror dev TO2 ...`. One filter with the actions chained by `pipe`: a second
    /// match-all filter would never run (the first one's verdict ends classification).
    pub fn add_mirror(&self, name: &str, hook: Hook, prio: u16, to: &[String]) -> Result<()> {
        let idx = self.index(name)?;
        let info = ((prio as u32) << 16) | (ETH_P_ALL.to_be() as u32);
        let mut m = Msg::new(
            RTM_NEWTFILTER,
            NLM_F_CREATE,
            &tcmsg(idx, 0, hook.parent(), info),
        );
        // struct tc_u32_sel with one key: mask 0, value 0 at offset 0, so every frame matches.
        let mut sel = [0u8; 16 + 16];
        sel[0] = TC_U32_TERMINAL;
        sel[2] = 1; // nkeys
        m.str(TCA_KIND, "u32")
            .begin(TCA_OPTIONS)
            .attr(TCA_U32_SEL, &sel)
            .begin(TCA_U32_ACT);
        for (n, dest) in to.iter().enumerate() {
            let to_idx = self.index(dest)?;
            // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction,
            // ifindex. `action` is what follows the mirror: the next action (pipe).
            let mut parms = [0u8; 28];
            parms[8..12].copy_from_slice(&TC_ACT_PIPE.to_ne_bytes());
            parms[20..24].copy_from_slice(&TCA_EGRESS_MIRROR.to_ne_bytes());
            parms[24..28].copy_from_slice(&(to_idx as u32).to_ne_bytes());
            m.begin(n as u16 + 1)
                .str(TCA_ACT_KIND, "mirred")
                .begin(TCA_ACT_OPTIONS)
                .attr(TCA_MIRRED_PARMS, &parms)
                .end()
                .end();
        }
        m.end().end();
        self.request(&format!("mirror {name} {hook:?} to {}", to.join(" ")), m)
            .map(drop)
    }

    /// Attaches a direct-action BPF classifier (a loaded eBPF program, or classic BPF carried in
    /// the request) at the given priority, replacing whatever filter was there.
    pub fn add_bpf(
        &self,
        name: &str,
        hook: Hook,
        prio: u16,
        prog: &crate::bpf::Program,
        label: &str,
    ) -> Result<()> {
        let idx = self.index(name)?;
        let info = ((prio as u32) << 16) | (ETH_P_ALL.to_be() as u32);
        let mut m = Msg::new(
            RTM_NEWTFILTER,
            NLM_F_CREATE | NLM_F_REPLACE,
            &tcmsg(idx, 1, hook.parent(), info),
        );
        m.str(TCA_KIND, "bpf").begin(TCA_OPTIONS);
        match prog {
            crate::bpf::Program::Loaded(fd) => {
                use std::os::fd::AsRawFd;
                m.u32(TCA_BPF_FD, fd.as_raw_fd() as u32);
            }
            crate::bpf::Program::Classic(ops) => {
                m.attr(TCA_BPF_OPS_LEN, &(ops.len() as u16).to_ne_bytes())
                    .attr(TCA_BPF_OPS, &crate::bpf::classic_bytes(ops));
            }
        }
        m.str(TCA_BPF_NAME, label)
            .u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT)
            .end();
        self.request(&format!("attach bpf filter to {name} {hook:?}"), m)
            .map(drop)
    }
}

/// Extracts NLMSGERR_ATTR_MSG from an error body (errno, echoed header, then TLVs).
fn ext_ack_message(body: &[u8]) -> Option<String> {
    // errno (4) + the original nlmsghdr (16); with NETLINK_CAP_ACK unset the request payload
    // follows, whose length is in that header.
    let orig_len = u32::from_ne_bytes(body.get(4..8)?.try_into().ok()?) as usize;
    let mut off = 4 + orig_len.max(16);
    while off + 4 <= body.len() {
        let len = u16::from_ne_bytes(body[off..off + 2].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(body[off + 2..off + 4].try_into().ok()?) & 0x3fff;
        if len < 4 || off + len > body.len() {
            break;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let s = &body[off + 4..off + len];
            let s = s.split(|b| *b == 0).next().unwrap_or(s);
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        off += (len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_sized_and_padded() {
        let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(0, 0, 0));
        m.begin(IFLA_LINKINFO).str(IFLA_INFO_KIND, "veth").end();
        let b = m.finish();
        // header 16 + ifinfomsg 16 + nest hdr 4 + kind attr (4 + "veth\0" = 9, padded 12)
        assert_eq!(b.len(), 16 + 16 + 4 + 12);
        assert_eq!(
            u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize,
            b.len()
        );
        let nest_len = u16::from_ne_bytes(b[32..34].try_into().unwrap());
        assert_eq!(nest_len, 16);
        let nest_ty = u16::from_ne_bytes(b[34..36].try_into().unwrap());
        assert_eq!(nest_ty, IFLA_LINKINFO);
        let kind_len = u16::from_ne_bytes(b[36..38].try_into().unwrap());
        assert_eq!(kind_len, 9);
        assert_eq!(&b[40..45], b"veth\0");
    }

    #[test]
    fn clsact_hooks() {
        assert_eq!(Hook::Ingress.parent(), 0xFFFF_FFF2);
        assert_eq!(Hook::Egress.parent(), 0xFFFF_FFF3);
    }
}
