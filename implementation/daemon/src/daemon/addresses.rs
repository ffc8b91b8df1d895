//! Claiming and releasing a group's addresses: on the cluster interface (`garp`) or on a
//! macvlan with the virtual MAC (`vmac`), announced as the ARP policy says, and the guardian
//! told which addresses to drop should holdfastd die.

use anyhow::{Context, Result};
use holdfast_proto::policy::{ArpPolicy, NodeId, OwnedAddress};
use tracing::warn;

use super::Daemon;
use crate::arp::{RawSender, announce_frame};
use crate::netio;

impl Daemon {
    pub(super) fn vmac_name(owner: NodeId) -> String {
        format!("vmac{}", owner.0)
    }

    /// The routing table (and rule priority) that sends `owner`'s addresses' traffic out of
    /// its `vmac` macvlan.
    pub(super) fn vmac_table(owner: NodeId) -> u32 {
        10_000 + owner.0
    }

    /// The announcement socket for interface `index`, opened once and kept: closing an
    /// AF_PACKET socket waits for an RCU grace period (`synchronize_net` in `packet_release`),
    /// 10 to 25 ms here, which held up the protocol loop in every takeover.
    pub(super) fn sender(&mut self, index: u32) -> std::io::Result<std::sync::Arc<RawSender>> {
        if let Some(s) = self.senders.get(&index) {
            return Ok(s.clone());
        }
        let s = std::sync::Arc::new(RawSender::new(index)?);
        self.senders.insert(index, s.clone());
        Ok(s)
    }

    pub(super) async fn claim(
        &mut self,
        owner: NodeId,
        addresses: &[OwnedAddress],
        arp: ArpPolicy,
    ) -> Result<()> {
        let (index, mac) = if arp == ArpPolicy::Vmac {
            let vmac = addresses
                .first()
                .map(|a| a.mac)
                .unwrap_or(crate::config::virtual_mac(owner));
            let idx = self
                .net
                .ensure_vmac(&Self::vmac_name(owner), self.iface.index, vmac)
                .await?;
            // Only the macvlan answers ARP for the address; the parent keeps quiet about it.
            let _ = netio::sysctl(
                &format!("net.ipv4.conf.{}.arp_ignore", self.me_iface()),
                "1",
            );
            (idx, vmac)
        } else {
            (self.iface.index, self.iface.mac)
        };
        if addresses.iter().any(|a| a.addr.is_ipv6()) {
            let name = if arp == ArpPolicy::Vmac {
                Self::vmac_name(owner)
            } else {
                self.me_iface()
            };
            let _ = netio::sysctl(&format!("net.ipv6.conf.{name}.disable_ipv6"), "0");
        }
        // Under vmac the macvlan carries host routes only (the node's own traffic keeps the
        // parent's routes), and what the addresses send is routed out of the macvlan by source.
        self.net
            .add_all(index, addresses, arp == ArpPolicy::Vmac)
            .await?;
        if arp == ArpPolicy::Vmac {
            self.net
                .route_from(index, addresses, Self::vmac_table(owner))
                .await?;
        }
        if arp != ArpPolicy::None {
            let frames: Vec<Vec<u8>> = addresses
                .iter()
                .map(|a| announce_frame(mac, a.addr))
                .collect();
            let sender = self.sender(index).context("AF_PACKET socket")?;
            let (count, gap) = (self.me.garp_count, self.me.garp_interval);
            tokio::spawn(async move {
                for i in 0..count {
                    for f in &frames {
                        if let Err(e) = sender.send(f) {
                            warn!("announcement: {e}");
                        }
                    }
                    if i + 1 < count {
                        tokio::time::sleep(gap).await;
                    }
                }
            });
        }
        Ok(())
    }

    pub(super) fn me_iface(&self) -> String {
        self.me_iface_name.clone()
    }

    pub(super) async fn release(
        &self,
        owner: NodeId,
        addresses: &[OwnedAddress],
        arp: ArpPolicy,
    ) -> Result<()> {
        for a in addresses {
            self.net.del_addr(a.addr).await?;
        }
        if arp == ArpPolicy::Vmac {
            self.net.unroute_from(Self::vmac_table(owner)).await?;
            self.net.del_link(&Self::vmac_name(owner)).await?;
        }
        Ok(())
    }
}
