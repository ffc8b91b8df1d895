//! Failback: a returning owner's RECLAIM, and HANDBACK under `migrate` and `new-connections`
//! (claims 5, 14, 19).

use crate::policy::{Epoch, FailbackMode, NodeId};
use crate::time::Time;
use crate::wire::{Body, FourTuple, Handback, Reclaim, Scope, TakeoverNotice};

use super::*;

impl Node {
    /// The IO layer is ready to hand `owner`'s group back: under `Migrate` it has frozen and
    /// sent every connection; under `NewConnections`, `draining` are the connections it keeps
    /// serving (the owner forwards their packets here).
    pub fn handback_ready(&mut self, _now: Time, owner: NodeId, draining: Vec<FourTuple>) {
        let Some((new_epoch, mode)) = self.group_mut(owner).handing_back.take() else {
            return;
        };
        self.finish_handback(owner, new_epoch, mode, draining);
    }

    /// The connections of `owner`'s handed-back group still draining here changed (some
    /// closed): the owner is told the new set (it stops forwarding the others).
    pub fn draining(&mut self, owner: NodeId, connections: Vec<FourTuple>) {
        let current = self.view(owner).map(|g| g.epoch);
        let Some(h) = self
            .groups
            .get_mut(&owner)
            .and_then(|g| g.handed_back.as_mut())
        else {
            return;
        };
        if h.mode != FailbackMode::NewConnections || current != Some(h.epoch) {
            return;
        }
        h.draining = connections;
        h.generation += 1;
        let h = h.clone();
        self.send_handback(&h);
    }

    /// Sends a HANDBACK to its owner, in as many parts as its draining set needs.
    pub(super) fn send_handback(&mut self, h: &Handback) {
        for part in crate::handback::split(h) {
            self.send(Dest::Node(h.owner), Body::Handback(part));
        }
    }

    /// A returning owner with a non-`none` failback asks its group's holder for it.
    pub(super) fn maybe_reclaim(&mut self, now: Time) {
        let me = self.id();
        if !self.can_assume() || self.held_at(me).is_some() {
            return;
        }
        if self.cfg.ownership.policy.failback == FailbackMode::None {
            return;
        }
        let Some(g) = self.view(me) else {
            return;
        };
        if g.epoch.holder == me || self.orphaned(me) {
            return;
        }
        let iv = self.cfg.interval();
        if self.reclaimed_at.is_some_and(|t| now < t + iv * 2) {
            return;
        }
        self.reclaimed_at = Some(now);
        self.send(
            Dest::Node(g.epoch.holder),
            Body::Reclaim(Reclaim {
                owner: me,
                held: g.epoch,
            }),
        );
    }

    pub(super) fn on_reclaim(&mut self, from: NodeId, r: Reclaim) {
        if r.owner != from {
            return;
        }
        let Some(epoch) = self.held_at(from) else {
            // We handed it back already and the HANDBACK was lost: send it again.
            if let Some(h) = self
                .group(from)
                .and_then(|g| g.handed_back.as_ref())
                .cloned()
                && self.view(from).is_some_and(|g| g.epoch == h.epoch)
            {
                self.send_handback(&h);
            }
            return;
        };
        let mode = self
            .ownership_of(from)
            .map(|o| o.policy.failback)
            .unwrap_or_default();
        let new_epoch = Epoch {
            counter: epoch.counter + 1,
            holder: from,
        };
        match mode {
            FailbackMode::None => {}
            FailbackMode::NewConnections | FailbackMode::Migrate => {
                if self
                    .group_mut(from)
                    .handing_back
                    .replace((new_epoch, mode))
                    .is_none()
                {
                    self.actions
                        .push_back(Action::HandBack { owner: from, mode });
                }
            }
        }
    }

    pub(super) fn finish_handback(
        &mut self,
        owner: NodeId,
        epoch: Epoch,
        mode: FailbackMode,
        draining: Vec<FourTuple>,
    ) {
        let Some(mine) = self.group_mut(owner).held.take() else {
            return;
        };
        self.group_mut(owner).assignment.take();
        let addresses = self.addresses_of(owner);
        self.actions.push_back(Action::ReleaseAddress {
            owner,
            epoch: mine,
            addresses,
        });
        let holder_boot = self.members.get(&owner).map_or(0, |m| m.boot_epoch);
        self.set_view(
            owner,
            GroupView {
                epoch,
                holder_boot,
                released: false,
            },
        );
        let h = Handback {
            owner,
            epoch,
            mode,
            generation: 0,
            part: 0,
            parts: 1,
            draining,
        };
        self.group_mut(owner).handed_back = Some(h.clone());
        self.send_handback(&h);
    }

    pub(super) fn on_handback(&mut self, from: NodeId, h: Handback) {
        let me = self.id();
        if h.owner != me || h.epoch.holder != me {
            return;
        }
        // A repeat for the epoch we hold: the assumer's draining set changed.
        if self.held_at(me) == Some(h.epoch) {
            if h.mode == FailbackMode::NewConnections {
                self.actions.push_back(Action::Forward {
                    owner: me,
                    to: from,
                    connections: h.draining,
                });
            }
            return;
        }
        // Highest epoch wins, whoever sends it: everyone else adopts it from our notice.
        if self.view(me).is_some_and(|g| g.epoch >= h.epoch) {
            return;
        }
        self.hold(me, h.epoch);
        let rec = self.cfg.ownership.clone();
        // claims 5/14/19: responsibility returns to the first system.
        match h.mode {
            FailbackMode::Migrate => self.actions.push_back(Action::AssumeConnections {
                owner: me,
                epoch: h.epoch,
                scope: Scope::All,
                shares: Vec::new(),
            }),
            // Before the address: the draining connections' packets must never meet our
            // kernel, which has no socket for them and would reset them.
            FailbackMode::NewConnections if !h.draining.is_empty() => {
                self.actions.push_back(Action::Forward {
                    owner: me,
                    to: from,
                    connections: h.draining,
                })
            }
            _ => {}
        }
        self.actions.push_back(Action::ClaimAddress {
            owner: me,
            epoch: h.epoch,
            addresses: rec.addresses.clone(),
            arp: rec.arp,
        });
        self.send(
            Dest::All,
            Body::TakeoverNotice(TakeoverNotice {
                owner: me,
                epoch: h.epoch,
                scope: Scope::All,
                addresses: rec.addresses.iter().map(|a| a.addr).collect(),
            }),
        );
    }
}
