//! Addresses, virtual MACs and link state, over rtnetlink.
//!
//! Read [`Net`] first. The daemon runs inside its node's namespace, so a plain rtnetlink
//! connection sees exactly that node's interfaces. Link state is watched on a second connection
//! bound to `RTMGRP_LINK` and reported as "carrier up/down" for the cluster interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result, anyhow};
use futures_util::stream::{StreamExt, TryStreamExt};
use holdfast_proto::policy::OwnedAddress;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage, MacVlanMode};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, IpVersion, LinkMacVlan, LinkUnspec, RouteMessageBuilder};
use tokio::sync::mpsc;

/// An rtnetlink handle for the daemon's namespace.
#[derive(Clone)]
pub struct Net {
    handle: Handle,
}

/// The cluster interface's index, MAC and first IPv4 address.
#[derive(Debug, Clone, Copy)]
pub struct IfInfo {
    /// Interface index.
    pub index: u32,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its first IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// Whether it has carrier (`IFF_RUNNING`).
    pub running: bool,
}

fn running(l: &LinkMessage) -> bool {
    l.header.flags.contains(LinkFlags::Up) && l.header.flags.contains(LinkFlags::Running)
}

fn mac_of(l: &LinkMessage) -> [u8; 6] {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(m) if m.len() == 6 => m.as_slice().try_into().ok(),
            _ => None,
        })
        .unwrap_or([0; 6])
}

fn addr_of(m: &AddressMessage) -> Option<IpAddr> {
    m.attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        })
}

impl Net {
    /// Opens the connection (spawned on the current runtime).
    pub fn new() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("open rtnetlink")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match s.try_next().await {
            Ok(l) => Ok(l),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The interface's index, MAC, IPv4 address and carrier.
    pub async fn interface(&self, name: &str) -> Result<IfInfo> {
        let l = self
            .link(name)
            .await?
            .ok_or_else(|| anyhow!("no interface {name:?} in this namespace"))?;
        let index = l.header.index;
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut ipv4 = None;
        while let Some(a) = addrs.try_next().await? {
            if let Some(IpAddr::V4(v4)) = addr_of(&a)
                && ipv4.is_none()
            {
                ipv4 = Some(v4);
            }
        }
        Ok(IfInfo {
            index,
            mac: mac_of(&l),
            ipv4,
            running: running(&l),
        })
    }

    /// The link-layer address the kernel's neighbour table has for `ip` on interface `index`
    /// (ARP or neighbour discovery resolved it), if any.
    pub async fn neighbour_mac(&self, index: u32, ip: IpAddr) -> Result<Option<[u8; 6]>> {
        use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
        let mut s = self.handle.neighbours().get().execute();
        while let Some(n) = s.try_next().await? {
            if n.header.ifindex != index {
                continue;
            }
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    Some(IpAddr::V6(*v6))
                }
                _ => None,
            });
            if dst != Some(ip) {
                continue;
            }
            let mac = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(&l[..]).ok(),
                _ => None,
            });
            if mac.is_some_and(|m| m != [0; 6]) {
                return Ok(mac);
            }
        }
        Ok(None)
    }

    /// Tells the kernel's neighbour table that `ip` is at `mac` on interface `index` (state
    /// STALE: usable at once, confirmed by the kernel's own unicast probe when next used), so
    /// that the first unicast to a peer does not wait for ARP: a lost ARP reply costs a second.
    pub async fn prime_neighbour(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        use rtnetlink::packet_route::neighbour::NeighbourState;
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Stale)
            .replace()
            .execute()
            .await
            .with_context(|| format!("neighbour {ip}"))
    }

    /// Adds an address to an interface; already present is fine.
    pub async fn add_addr(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<()> {
        match self
            .handle
            .address()
            .add(index, addr, prefix)
            .execute()
            .await
        {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(()),
            r => r.with_context(|| format!("add {addr}/{prefix}")),
        }
    }

    /// Removes an address from whichever interface has it, except the loopback (see
    /// [`Net::add_local`]); absent is fine.
    pub async fn del_addr(&self, addr: IpAddr) -> Result<()> {
        self.del_addr_where(addr, |index| index != LOOPBACK).await
    }

    /// Makes `addr` local without announcing it anywhere: a host address on the loopback. The
    /// node then accepts the packets of connections to `addr` that another node forwards to
    /// it, while that node holds (and answers ARP for) the address. Needs `arp_ignore = 1` and
    /// `arp_announce = 2` on the cluster interface ([`quiet_arp`]).
    pub async fn add_local(&self, addr: IpAddr) -> Result<()> {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        self.add_addr(LOOPBACK, addr, prefix).await
    }

    /// Undoes [`Net::add_local`]; absent is fine.
    pub async fn del_local(&self, addr: IpAddr) -> Result<()> {
        self.del_addr_where(addr, |index| index == LOOPBACK).await
    }

    async fn del_addr_where(&self, addr: IpAddr, on: impl Fn(u32) -> bool) -> Result<()> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_address_filter(addr)
            .execute();
        let mut found = Vec::new();
        while let Some(m) = s.try_next().await? {
            if addr_of(&m) == Some(addr) && on(m.header.index) {
                found.push(m);
            }
        }
        for m in found {
            match self.handle.address().del(m).execute().await {
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EADDRNOTAVAIL => {}
                r => r.with_context(|| format!("delete {addr}"))?,
            }
        }
        Ok(())
    }

    /// Creates (if needed) a macvlan `name` on `parent` with a virtual MAC, and brings it up.
    pub async fn ensure_vmac(&self, name: &str, parent: u32, mac: [u8; 6]) -> Result<u32> {
        if let Some(l) = self.link(name).await? {
            return Ok(l.header.index);
        }
        let msg = LinkMacVlan::new(name, parent, MacVlanMode::Bridge)
            .address(mac.to_vec())
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("create macvlan {name}"))?;
        let l = self
            .link(name)
            .await?
            .ok_or_else(|| anyhow!("macvlan {name} vanished"))?;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(l.header.index).up().build())
            .execute()
            .await?;
        Ok(l.header.index)
    }

    /// Deletes a link by name; absent is fine.
    pub async fn del_link(&self, name: &str) -> Result<()> {
        if let Some(l) = self.link(name).await? {
            self.handle.link().del(l.header.index).execute().await?;
        }
        Ok(())
    }

    /// Routes what is sent *from* each of `addrs` out of interface `index` (a `vmac`
    /// macvlan), so that every frame from a service address leaves with the virtual MAC
    /// (RFC 5798 7.3: the master sends from the virtual router's MAC), while the node's own
    /// traffic keeps its physical one: a rule `from ADDR lookup TABLE` and, in `TABLE`, the
    /// address's subnet on `index` with the address as source. Sockets that routed before (a
    /// takeover's repaired connections) follow at once: a rule change invalidates every
    /// cached route (`fib_rules` flushes the route cache).
    pub async fn route_from(&self, index: u32, addrs: &[OwnedAddress], table: u32) -> Result<()> {
        for a in addrs {
            let route = match a.addr {
                IpAddr::V4(v4) => {
                    let bits =
                        u32::from(v4) & u32::MAX.checked_shl(32 - a.prefix as u32).unwrap_or(0);
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(Ipv4Addr::from(bits), a.prefix)
                        .pref_source(v4)
                        .output_interface(index)
                        .scope(RouteScope::Link)
                        .table_id(table)
                        .build()
                }
                IpAddr::V6(v6) => {
                    let bits =
                        u128::from(v6) & u128::MAX.checked_shl(128 - a.prefix as u32).unwrap_or(0);
                    RouteMessageBuilder::<Ipv6Addr>::new()
                        .destination_prefix(Ipv6Addr::from(bits), a.prefix)
                        .pref_source(v6)
                        .output_interface(index)
                        .table_id(table)
                        .build()
                }
            };
            match self.handle.route().add(route).execute().await {
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                r => r.with_context(|| format!("route from {} in table {table}", a.addr))?,
            }
            let rule = self.handle.rule().add();
            let r = match a.addr {
                IpAddr::V4(v4) => {
                    rule.v4()
                        .source_prefix(v4, 32)
                        .table_id(table)
                        .priority(table)
                        .action(RuleAction::ToTable)
                        .execute()
                        .await
                }
                IpAddr::V6(v6) => {
                    rule.v6()
                        .source_prefix(v6, 128)
                        .table_id(table)
                        .priority(table)
                        .action(RuleAction::ToTable)
                        .execute()
                        .await
                }
            };
            match r {
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                r => r.with_context(|| format!("rule from {} lookup {table}", a.addr))?,
            }
        }
        Ok(())
    }

    /// Undoes [`Net::route_from`]: removes the rules that look up `table` (its routes go with
    /// the macvlan).
    pub async fn unroute_from(&self, table: u32) -> Result<()> {
        for v in [IpVersion::V4, IpVersion::V6] {
            let mut rules = self.handle.rule().get(v).execute();
            let mut found = Vec::new();
            while let Some(m) = rules.try_next().await? {
                let t = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RuleAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(m.header.table as u32);
                if t == table {
                    found.push(m);
                }
            }
            for m in found {
                match self.handle.rule().del(m).execute().await {
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => {}
                    r => r.with_context(|| format!("delete the rule to table {table}"))?,
                }
            }
        }
        Ok(())
    }

    /// Adds the addresses of a claim to `index`.
    pub async fn add_all(
        &self,
        index: u32,
        addrs: &[OwnedAddress],
        host_routes: bool,
    ) -> Result<()> {
        for a in addrs {
            let prefix = if host_routes {
                if a.addr.is_ipv4() { 32 } else { 128 }
            } else {
                a.prefix
            };
            self.add_addr(index, a.addr, prefix).await?;
        }
        Ok(())
    }
}

/// The loopback's interface index, the same in every namespace.
const LOOPBACK: u32 = 1;

/// Keeps the cluster interface from answering ARP for, or sourcing ARP from, addresses that are
/// not its own (those on the loopback: [`Net::add_local`]), so that a node serving forwarded
/// connections never draws their address's traffic to itself.
pub fn quiet_arp(iface: &str) -> Result<()> {
    sysctl(&format!("net.ipv4.conf.{iface}.arp_ignore"), "1")?;
    sysctl(&format!("net.ipv4.conf.{iface}.arp_announce"), "2")
}

/// Watches the carrier of interface `index`, which was `initial` at start; sends `true`/`false`
/// on every change.
pub fn watch_link(index: u32, initial: bool, tx: mpsc::UnboundedSender<bool>) -> Result<()> {
    let (mut conn, _, mut msgs) = rtnetlink::new_connection().context("open rtnetlink monitor")?;
    let addr = rtnetlink::sys::SocketAddr::new(0, rtnetlink::constants::RTMGRP_LINK);
    conn.socket_mut()
        .socket_mut()
        .bind(&addr)
        .context("bind RTMGRP_LINK")?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        let mut last = Some(initial);
        while let Some((m, _)) = msgs.next().await {
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = m.payload
                && l.header.index == index
            {
                let up = running(&l);
                tracing::debug!(flags = ?l.header.flags, family = ?l.header.interface_family, "link message");
                if last != Some(up) {
                    last = Some(up);
                    if tx.send(up).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(())
}

/// Writes a sysctl of this namespace.
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).with_context(|| path)
}
