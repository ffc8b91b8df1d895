//! `snoop = "forward"`: which frames this node copies to which backups (`crate::tee` does it in
//! the kernel). For every group held here whose owner asked for `forward`, the frames of its
//! addresses go to each live node that backs the group up (its backups, and the owner itself
//! when another node holds its group), at the MAC its control datagrams come from.

use std::net::IpAddr;

use holdfast_proto::node::Node;
use holdfast_proto::policy::SnoopMode;
use tracing::warn;

use super::Daemon;
use crate::tee::Copies;

impl Daemon {
    /// Puts each peer's MAC (as its control datagrams showed it) into the kernel's neighbour
    /// table once, so that this node's first unicast to it (a FETCH, a CONN-STATE, a RECLAIM)
    /// leaves at once: on a lossy link a lost ARP reply would hold it back a full second.
    pub(super) async fn prime_neighbours(&mut self, node: &Node) {
        let Some(sn) = &self.snooper else {
            return;
        };
        let todo: Vec<(std::net::Ipv4Addr, [u8; 6])> = node
            .peer_addresses()
            .values()
            .filter_map(|p| match p.ip() {
                IpAddr::V4(ip) => sn.mac_of(ip).map(|m| (ip, m)),
                IpAddr::V6(_) => None,
            })
            .filter(|(ip, m)| self.primed.get(ip) != Some(m))
            .collect();
        for (ip, mac) in todo {
            match self
                .net
                .prime_neighbour(self.iface.index, ip.into(), mac)
                .await
            {
                Ok(()) => {
                    self.primed.insert(ip, mac);
                }
                Err(e) => warn!("{e:#}"),
            }
        }
    }

    /// Brings the copying rules in line with what this node holds and who is alive. A backup
    /// whose MAC is not known yet is retried on the next tick (`tee_dirty` stays set); until
    /// then its copy has a gap, which it finds and fetches (FETCH) like any hole.
    pub(super) fn update_tee(&mut self, node: &Node) {
        self.tee_dirty = false;
        let Some(tee) = self.tee.as_ref() else {
            return;
        };
        let me = node.id();
        let mut copies = Copies::new();
        if !node.withdrawn() {
            for owner in node.held().keys() {
                let Some(rec) = node.ownership_of(*owner) else {
                    continue;
                };
                if rec.policy.snoop != SnoopMode::Forward {
                    continue;
                }
                let mut to = rec.policy.backups.clone();
                to.push(*owner);
                to.retain(|n| *n != me && node.members().get(n).is_some_and(|m| m.alive));
                to.dedup();
                let mut macs = std::collections::BTreeSet::new();
                for n in to {
                    let mac = match node.peer_address(n).map(|p| p.ip()) {
                        Some(IpAddr::V4(ip)) => self.snooper.as_ref().and_then(|s| s.mac_of(ip)),
                        _ => None,
                    };
                    match mac {
                        Some(m) => {
                            macs.insert(m);
                        }
                        None => {
                            if self.tee_unknown.insert(n) {
                                warn!(peer = %n, "snoop = forward: no MAC known for this backup yet; its copies wait for it");
                            }
                            self.tee_dirty = true;
                        }
                    }
                }
                for a in &rec.addresses {
                    copies
                        .entry(a.addr)
                        .or_default()
                        .extend(macs.iter().copied());
                }
            }
        }
        if self.tee_sent.as_ref() == Some(&copies) {
            return;
        }
        self.tee_unknown.clear();
        tee.request(copies.clone());
        self.tee_sent = Some(copies);
    }
}
