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
            // Flush the rules, keep the table and its chains: deleting a netdev chain
            // unregisters its hook, and the commit waits for an RCU grace period (10-25 ms
            // measured on the protocol loop, heartbeats late meanwhile).
            let mut b = Batch::default();
            for (chain, _) in CHAINS {
                b.msg(NFT_MSG_DELRULE, 0, |m| {
                    m.str(1, TABLE);
                    m.str(2, chain);
                });
            }
            b.commit()?;
            self.installed = copies;
            return Ok(());
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

/// What the copying thread has done: the copies installed, and the commits the kernel refused.
#[derive(Debug, Clone, Default)]
pub struct TeeState {
    /// What is copied now.
    pub installed: Copies,
    /// Commits the kernel refused (each logged; retried after 250 ms).
    pub failures: u64,
}

/// The copying rules kept in line on a thread of their own: an nf_tables commit takes 5-25 ms
/// on this kind of machine (measured on the protocol loop, heartbeats late meanwhile), so the
/// loop only says what it wants and never waits for the kernel.
pub struct TeeWorker {
    tx: std::sync::mpsc::Sender<Copies>,
    shared: std::sync::Arc<std::sync::Mutex<TeeState>>,
}

impl TeeWorker {
    /// Starts the thread that owns `tee`.
    pub fn spawn(mut tee: Tee) -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Copies>();
        let shared = std::sync::Arc::new(std::sync::Mutex::new(TeeState::default()));
        let state = shared.clone();
        std::thread::Builder::new()
            .name("holdfastd-tee".into())
            .spawn(move || {
                let mut failed: Option<Copies> = None;
                loop {
                    // The next request; or, after a refusal, the same again in 250 ms.
                    let next = match failed.take() {
                        None => rx.recv().ok(),
                        Some(c) => match rx.recv_timeout(std::time::Duration::from_millis(250)) {
                            Ok(newer) => Some(newer),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Some(c),
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
                        },
                    };
                    let Some(mut want) = next else {
                        return;
                    };
                    // Only the newest request matters.
                    while let Ok(newer) = rx.try_recv() {
                        want = newer;
                    }
                    let before = tee.installed().clone();
                    let result = tee.replace(&want);
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(()) => {
                            if *tee.installed() != before {
                                tracing::info!(addresses = tee.installed().len(), copies = ?tee.installed(), "snoop = forward: copies for the backups updated");
                            }
                            s.installed = tee.installed().clone();
                        }
                        Err(e) => {
                            tracing::warn!("snoop = forward: the copying rules: {e}");
                            s.failures += 1;
                            failed = Some(want);
                        }
                    }
                }
            })?;
        Ok(Self { tx, shared })
    }

    /// Asks for exactly `copies` (the thread makes it so, soon).
    pub fn request(&self, copies: Copies) {
        let _ = self.tx.send(copies);
    }

    /// Whether exactly `copies` is installed (addresses without backups left out, as
    /// [`Tee::replace`] leaves them).
    pub fn has(&self, copies: &Copies) -> bool {
        let want: Copies = copies
            .iter()
            .filter(|(_, m)| !m.is_empty())
            .map(|(a, m)| (*a, m.clone()))
            .collect();
        self.state().installed == want
    }

    /// What the thread has done so far.
    pub fn state(&self) -> TeeState {
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
