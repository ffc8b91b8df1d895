//! A small synchronous rtnetlink client: links, addresses, routes, qdiscs and filters, built
//! with `netlink-packet-route` (the message layer `rtnetlink`, and so holdfastd, uses too;
//! `msg.rs`) and sent on a `netlink-sys` socket.
//!
//! Read [`Netlink`] first. A netlink socket stays in the network namespace it was created in, so
//! the builder creates one socket per namespace (on a thread that has entered it) and then uses
//! it from any thread. This lets the harness build a whole cluster without spawning `ip` or `tc`
//! and without calling `setns` on an async worker. Two things no crate has stay here: classic
//! BPF carried in a `bpf` filter (`msg.rs`) and the kernel's extended-ack text (below).
//! `golden.rs` checks every request against the bytes `ip` or `tc` send for the same change.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::LinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

#[cfg(test)]
mod golden;
mod msg;

pub use msg::Hook;
use msg::Request;

/// `NLMSGERR_ATTR_MSG`: the extended ack's text (`include/uapi/linux/netlink.h`).
const NLMSGERR_ATTR_MSG: u16 = 1;

static SEQ: AtomicU32 = AtomicU32::new(1);

/// An rtnetlink socket bound to the namespace it was created in.
pub struct Netlink {
    sock: Socket,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
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
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Failure is harmless (older kernels): we just lose the kernel's error text.
        let _ = sock.set_ext_ack(true);
        Ok(Self { sock })
    }

    /// Sends one request and waits for its acknowledgement; returns any data replies.
    fn request(&self, what: &str, req: Request) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let buf = msg::encode(req, seq);
        self.sock.send(&buf, 0).map_err(|e| io_err(what, e))?;
        let mut replies = Vec::new();
        let mut rbuf = vec![0u8; 65536];
        loop {
            let n = match self.sock.recv(&mut &mut rbuf[..], 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(what, e)),
            };
            let mut off = 0usize;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(rbuf[off..off + 4].try_into().expect("4")) as usize;
                if len < 16 || off + len > n {
                    break;
                }
                let raw = &rbuf[off..off + len];
                off += (len + 3) & !3;
                if u32::from_ne_bytes(raw[8..12].try_into().expect("4")) != seq {
                    continue;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw)
                    .map_err(|e| io_err(what, io::Error::other(e.to_string())))?;
                match m.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(NetlinkError {
                                what: what.to_owned(),
                                source: io::Error::from_raw_os_error(-code.get()),
                                ext: ext_ack_message(&raw[16..]),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }

    /// The link named `name`, as the kernel reports it; `None` if it does not exist.
    fn get_link(&self, name: &str) -> Result<Option<LinkMessage>> {
        match self.request(&format!("get link {name}"), msg::get_link(name)) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks up an interface's index by name; `None` if it does not exist.
    pub fn link_index(&self, name: &str) -> Result<Option<i32>> {
        Ok(self.get_link(name)?.map(|l| l.header.index as i32))
    }

    /// A link's `ifi_flags` (`IFF_UP`, `IFF_RUNNING`, ...); `None` if it does not exist.
    pub fn link_flags(&self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name)?.map(|l| l.header.flags.bits()))
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
        let what = format!("create bridge {name}");
        self.request(&what, msg::new_bridge(name, hub)).map(drop)
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
        let what = format!("create veth {name} <-> {peer}");
        let req = msg::new_veth(name, mac, peer, peer_mac, peer_ns);
        self.request(&what, req).map(drop)
    }

    /// Enslaves `name` to the bridge `master`.
    pub fn set_master(&self, name: &str, master: &str) -> Result<()> {
        let (idx, midx) = (self.index(name)?, self.index(master)?);
        let what = format!("attach {name} to {master}");
        self.request(&what, msg::set_master(idx as u32, midx as u32))
            .map(drop)
    }

    /// Takes `name` out of its bridge.
    pub fn set_nomaster(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        let what = format!("detach {name} from its bridge");
        self.request(&what, msg::set_master(idx as u32, 0))
            .map(drop)
    }

    /// Sets a link administratively up or down.
    pub fn set_up(&self, name: &str, up: bool) -> Result<()> {
        let idx = self.index(name)?;
        let what = format!("set {name} {}", if up { "up" } else { "down" });
        self.request(&what, msg::set_up(idx as u32, up)).map(drop)
    }

    /// Deletes a link (and so its veth peer, wherever that is).
    pub fn del_link(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        self.request(&format!("delete {name}"), msg::del_link(idx as u32))
            .map(drop)
    }

    /// Adds an address. IPv6 addresses skip duplicate address detection, so they are usable at
    /// once and no DAD probes appear in captures.
    pub fn add_addr(&self, name: &str, addr: IpAddr, prefix: u8) -> Result<()> {
        let idx = self.index(name)?;
        let what = format!("add {addr}/{prefix} to {name}");
        self.request(&what, msg::new_addr(idx as u32, addr, prefix))
            .map(drop)
    }

    /// Adds a route to `dst` (`None`: the default route of the gateway's family) via a
    /// gateway on a connected subnet.
    pub fn add_route(&self, dst: Option<(IpAddr, u8)>, via: IpAddr) -> Result<()> {
        let what = match dst {
            Some((d, l)) => format!("add route {d}/{l} via {via}"),
            None => format!("add default route via {via}"),
        };
        self.request(&what, msg::new_route(dst, via)).map(drop)
    }

    /// Adds a clsact qdisc (ingress and egress hooks for filters) to a link.
    pub fn add_clsact(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        let what = format!("add clsact qdisc to {name}");
        self.request(&what, msg::clsact(idx, true)).map(drop)
    }

    /// Removes a link's clsact qdisc and with it every filter on it. Missing is fine.
    pub fn del_clsact(&self, name: &str) -> Result<()> {
        let Some(idx) = self.link_index(name)? else {
            return Ok(());
        };
        let what = format!("delete clsact qdisc of {name}");
        match self.request(&what, msg::clsact(idx, false)) {
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
        let to_idx = to
            .iter()
            .map(|d| self.index(d).map(|i| i as u32))
            .collect::<Result<Vec<u32>>>()?;
        let what = format!("mirror {name} {hook:?} to {}", to.join(" "));
        self.request(&what, msg::new_mirror(idx, hook, prio, &to_idx))
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
        let what = format!("attach bpf filter to {name} {hook:?}");
        self.request(&what, msg::new_bpf(idx, hook, prio, prog, Some(label)))
            .map(drop)
    }
}

/// Extracts NLMSGERR_ATTR_MSG from an error body (errno, echoed header, then TLVs):
/// `netlink-packet-core` does not decode the extended ack.
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
