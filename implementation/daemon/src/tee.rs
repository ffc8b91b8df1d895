//! `snoop = "forward"` (claim 11 without a switch port mirror): the node that holds a group
//! copies every TCP frame to and from the group's addresses to each live backup, in the
//! kernel, so that the backups snoop the connections as a mirror would show them.
//!
//! nf_tables `netdev` chains on the cluster interface, one at ingress (the clients' frames)
//! and one at egress (ours): a rule saves the frame's MACs, writes a backup's MAC as the
//! destination and ours as the source (a copy of a client's frame must not teach the switch
//! that the client sits behind our port), `dup`s the frame out of the interface, and puts the
//! MACs back, once per backup; the original goes on unchanged. Chosen over tc mirred into a tunnel because the copy stays an
//! ordinary Ethernet frame on the same link (the backup's snooper reads it as it reads a
//! mirrored one; no tunnel endpoint, no encapsulation, no MTU loss), and because `steer`
//! already speaks nf_tables. An egress rule never copies a copy: it skips frames already
//! addressed to a backup.
//!
//! The rule set lives in its own table (`holdfast_tee`), replaced atomically on every change.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;

use crate::nft::{
    Batch, Msg, NFT_MSG_DELRULE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWTABLE, NLM_F_APPEND,
    NLM_F_CREATE, cmp, expr, immediate, payload,
};

const TABLE: &str = "holdfast_tee";
/// (chain, netdev hook number: 0 ingress, 1 egress).
const CHAINS: [(&str, u32); 2] = [("in", 0), ("out", 1)];

/// What to copy: for each address held here, the MACs of the backups that get the copies.
pub type Copies = BTreeMap<IpAddr, BTreeSet<[u8; 6]>>;

/// The copying rules of one interface.
pub struct Tee {
    ifname: String,
    ifindex: u32,
    mac: [u8; 6],
    installed: Copies,
}

impl Tee {
    /// For the cluster interface (its name, index and MAC). Installs nothing yet.
    pub fn new(ifname: &str, ifindex: u32, mac: [u8; 6]) -> Self {
        Self {
            ifname: ifname.to_owned(),
            ifindex,
            mac,
            installed: Copies::new(),
        }
    }

    /// What is copied now.
    pub fn installed(&self) -> &Copies {
        &self.installed
    }

    /// Removes whatever a previous run of the daemon in this namespace left.
    pub fn reset(&mut self) -> io::Result<()> {
        self.installed.clear();
        crate::nft::delete_table(TABLE)
    }

    /// Makes the rules copy exactly `copies` (addresses without backups are left out), in one
    /// atomic batch; nothing is sent to the kernel when that is what is installed already.
    pub fn replace(&mut self, copies: &Copies) -> io::Result<()> {
        let copies: Copies = copies
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(a, m)| (*a, m.clone()))
            .collect();
        if copies == self.installed {
            return Ok(());
        }
        if copies.is_empty() {
            return self.reset();
        }
        let all: BTreeSet<[u8; 6]> = copies.values().flatten().copied().collect();
        let mut b = Batch::default();
        b.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE, |m| m.str(1, TABLE));
        for (chain, hook) in CHAINS {
            b.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, |m| {
                m.str(1, TABLE);
                m.str(3, chain);
                m.nest(4, |h| {
                    h.u32be(1, hook); // NFTA_HOOK_HOOKNUM
                    h.u32be(2, (-300i32) as u32); // NFTA_HOOK_PRIORITY: before `steer`
                    h.str(3, &self.ifname); // NFTA_HOOK_DEV
                });
                m.u32be(5, 1); // NFTA_CHAIN_POLICY: accept
                m.str(7, "filter");
            });
            b.msg(NFT_MSG_DELRULE, 0, |m| {
                m.str(1, TABLE);
                m.str(2, chain);
            });
            for (addr, macs) in &copies {
                b.msg(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, |m| {
                    m.str(1, TABLE);
                    m.str(2, chain);
                    m.nest(4, |l| {
                        rule(l, *addr, hook == 0, macs, &all, self.mac, self.ifindex)
                    });
                });
            }
        }
        b.commit()?;
        self.installed = copies;
        Ok(())
    }
}

/// One rule: TCP frames to `addr` (`inbound`) or from it, copied to each of `macs`; an
/// outbound frame already addressed to any backup (`all`) is a copy and is left alone.
fn rule(
    l: &mut Msg,
    addr: IpAddr,
    inbound: bool,
    macs: &BTreeSet<[u8; 6]>,
    all: &BTreeSet<[u8; 6]>,
    own: [u8; 6],
    ifindex: u32,
) {
    let (ethertype, bytes, off) = match addr {
        IpAddr::V4(a) => (
            0x0800u16,
            a.octets().to_vec(),
            if inbound { 16 } else { 12 },
        ),
        IpAddr::V6(a) => (0x86ddu16, a.octets().to_vec(), if inbound { 24 } else { 8 }),
    };
    expr(l, "meta", |d| {
        d.u32be(1, 1); // DREG 1
        d.u32be(2, 1); // NFT_META_PROTOCOL
    });
    cmp(l, &ethertype.to_be_bytes());
    expr(l, "meta", |d| {
        d.u32be(1, 1);
        d.u32be(2, 16); // NFT_META_L4PROTO
    });
    cmp(l, &[6]);
    payload(l, 1, off, bytes.len() as u32);
    cmp(l, &bytes);
    if !inbound {
        for m in all {
            payload(l, 0, 0, 6);
            expr(l, "cmp", |d| {
                d.u32be(1, 1); // SREG
                d.u32be(2, 1); // NFT_CMP_NEQ
                d.nest(3, |v| v.bytes(1, m));
            });
        }
    }
    // reg 3 = both MACs as they came; reg 2 = the interface.
    expr(l, "payload", |d| {
        d.u32be(1, 3); // DREG 3
        d.u32be(2, 0); // link layer
        d.u32be(3, 0);
        d.u32be(4, 12);
    });
    immediate(l, 2, &ifindex.to_ne_bytes());
    for m in macs {
        let mut both = m.to_vec();
        both.extend_from_slice(&own);
        immediate(l, 1, &both);
        write_macs(l, 1);
        expr(l, "dup", |d| {
            d.u32be(2, 2); // NFTA_DUP_SREG_DEV
        });
    }
    write_macs(l, 3);
}

/// ether daddr . ether saddr = register `reg` (12 bytes).
fn write_macs(l: &mut Msg, reg: u32) {
    expr(l, "payload", |d| {
        d.u32be(5, reg); // NFTA_PAYLOAD_SREG
        d.u32be(2, 0); // NFTA_PAYLOAD_BASE: link layer
        d.u32be(3, 0); // NFTA_PAYLOAD_OFFSET
        d.u32be(4, 12); // NFTA_PAYLOAD_LEN
        d.u32be(6, 0); // NFTA_PAYLOAD_CSUM_TYPE: none
    });
}
