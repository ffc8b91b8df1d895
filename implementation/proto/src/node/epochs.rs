//! Ownership and epochs: who holds each group, fencing a lower epoch, re-asserting over a gone
//! holder, and whether a group is orphaned.

use crate::policy::{ArpPolicy, Epoch, NodeId, OwnedAddress};
use crate::wire::{Body, Scope, TakeoverNotice};

use super::*;

impl Node {
    /// A new epoch for a group was seen. Higher epochs win; if we hold the group at a lower
    /// one, we are fenced: release and discard.
    pub(super) fn observe(&mut self, owner: NodeId, epoch: Epoch, holder_boot: u32) {
        let cur = self.view(owner);
        if cur.is_some_and(|g| g.epoch > epoch) {
            return;
        }
        if cur.is_some_and(|g| g.epoch == epoch && g.holder_boot >= holder_boot) {
            return;
        }
        self.set_view(
            owner,
            GroupView {
                epoch,
                holder_boot,
                released: false,
            },
        );
        self.check_fence(owner);
        // A share is void once its owner holds the group again.
        if epoch.holder == owner
            && self
                .group(owner)
                .and_then(|g| g.share.as_ref())
                .is_some_and(|(e, _)| epoch.counter > e.counter)
        {
            self.group_mut(owner).share.take();
        }
    }

    /// Whether `holder` is alive and has not rebooted since it took a group.
    pub(super) fn live(&self, holder: NodeId, holder_boot: u32) -> bool {
        if holder == self.id() {
            return holder_boot == self.cfg.boot_epoch;
        }
        self.members
            .get(&holder)
            .is_some_and(|m| m.alive && m.boot_epoch == holder_boot)
    }

    /// If we hold a group at an epoch below the newest known one, and that one's holder is
    /// live, we are fenced: release the addresses and drop the connections silently.
    pub(super) fn check_fence(&mut self, owner: NodeId) {
        let (Some(mine), Some(g)) = (self.held_at(owner), self.view(owner)) else {
            return;
        };
        if mine >= g.epoch
            || g.epoch.holder == self.id()
            || !self.live(g.epoch.holder, g.holder_boot)
        {
            return;
        }
        self.group_mut(owner).held.take();
        self.group_mut(owner).assignment.take();
        self.group_mut(owner).handing_back.take();
        let addresses = self.addresses_of(owner);
        self.actions.push_back(Action::ReleaseAddress {
            owner,
            epoch: mine,
            addresses,
        });
        self.actions
            .push_back(Action::DiscardStale { owner, epoch: mine });
        self.actions
            .push_back(Action::Event(Event::Fenced { owner, by: g.epoch }));
    }

    /// We hold a group at an epoch below one whose holder is gone: keep serving it, under an
    /// epoch above that one, and tell everyone.
    pub(super) fn reassert(&mut self, owner: NodeId) {
        let (Some(mine), Some(g)) = (self.held_at(owner), self.view(owner)) else {
            return;
        };
        if mine >= g.epoch || self.live(g.epoch.holder, g.holder_boot) {
            return;
        }
        let e = Epoch {
            counter: g.epoch.counter + 1,
            holder: self.id(),
        };
        self.hold(owner, e);
        let owned = self.addresses_of(owner);
        let arp = self.ownership_of(owner).map_or(ArpPolicy::Garp, |o| o.arp);
        // Same holder, new epoch: the IO layer re-asserts the addresses (idempotent).
        self.actions.push_back(Action::ClaimAddress {
            owner,
            epoch: e,
            addresses: owned.clone(),
            arp,
        });
        let addresses = owned.iter().map(|a| a.addr).collect();
        self.send(
            Dest::All,
            Body::TakeoverNotice(TakeoverNotice {
                owner,
                epoch: e,
                scope: Scope::All,
                addresses,
            }),
        );
    }

    pub(super) fn addresses_of(&self, owner: NodeId) -> Vec<OwnedAddress> {
        self.ownership_of(owner)
            .map(|o| o.addresses.clone())
            .unwrap_or_default()
    }

    /// Whether nobody live holds the group.
    pub(super) fn orphaned(&self, owner: NodeId) -> bool {
        let Some(g) = self.view(owner) else {
            // Never held: the owner claims it itself once it is eligible; nobody else may while
            // it is alive.
            return owner == self.id() || !self.alive(owner);
        };
        let h = g.epoch.holder;
        if h == self.id() {
            return self.held_at(owner).is_none();
        }
        if g.released {
            return true;
        }
        !self
            .members
            .get(&h)
            .is_some_and(|m| m.alive && m.boot_epoch == g.holder_boot)
    }
}
