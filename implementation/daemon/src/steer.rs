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

use crate::nft::{
    Batch, Msg, NFPROTO_IPV4, NFT_MSG_DELRULE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWTABLE,
    NLM_F_APPEND, NLM_F_CREATE, cmp, expr, immediate, payload,
};

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
        self.installed = 0;
        crate::nft::delete_table(TABLE)
    }

    /// Replaces every forwarding rule with `rules`, atomically (one nfnetlink batch). An empty
    /// set flushes the chain (the table stays until `reset`). Returns the connections that cannot be forwarded (IPv6 ones to a
    /// node whose MAC is unknown; an IPv4 or IPv6 connection to a node without an IPv4 address),
    /// which the caller reports.
    pub fn replace(&mut self, rules: &Rules) -> io::Result<Vec<FourTuple>> {
        let (rules, unforwardable) = forwardable(rules);
        let n: usize = rules.values().map(Vec::len).sum();
        if n == 0 {
            if self.installed > 0 {
                // Flush the chain, keep it: deleting a netdev chain unregisters its hook, and
                // the commit waits for an RCU grace period (10-25 ms on the protocol loop).
                let mut b = Batch::default();
                b.msg(NFT_MSG_DELRULE, 0, |m| {
                    m.str(1, TABLE);
                    m.str(2, CHAIN);
                });
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
