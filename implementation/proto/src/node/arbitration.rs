//! Arbitration: who assumes an orphaned group (claims 1 and 10): the candidates in policy order,
//! ASSUME-REQUEST to the first, grants and shares under `spread`.

use std::collections::BTreeSet;

use crate::policy::{Assignment, Epoch, NodeId};
use crate::time::Time;
use crate::wire::{
    AssumeReply, AssumeRequest, Body, DenyReason, FourTuple, Holding, Scope, TakeoverNotice,
};

use super::*;

impl Node {
    /// The IO layer, as the node with share 0 and the addresses under `spread`, has taken
    /// `owner`'s connections (`connections`, those it can re-create): the core splits them into
    /// `of` shares ([`crate::share::split`]) and grants every other share its list. Share `k`
    /// goes to the `k`-th node of [`Action::AssumeConnections`]'s `shares`; the IO layer
    /// re-creates share 0, forwards the others, and reports as lost whatever share 0 cannot
    /// keep ([`crate::share::Split::share_of`]).
    pub fn assign(
        &mut self,
        owner: NodeId,
        of: u16,
        connections: &[FourTuple],
    ) -> crate::share::Split {
        let split = crate::share::split(connections, of);
        if self.held_at(owner).is_none() {
            return split;
        }
        self.group_mut(owner).assignment = Some(split.lists.clone());
        let waiting = std::mem::take(&mut self.group_mut(owner).awaiting);
        for (from, request_id, index) in waiting {
            self.grant_share(owner, from, request_id, index);
        }
        split
    }

    pub(super) fn grant_share(&mut self, owner: NodeId, from: NodeId, request_id: u32, index: u16) {
        let of = self.candidates(owner).len() as u16;
        let scope = match self.group(owner).and_then(|g| g.assignment.as_ref()) {
            Some(Some(lists)) => match lists.get(index as usize) {
                Some(l) => Scope::Connections(l.clone()),
                None => {
                    let reply = AssumeReply {
                        owner,
                        request_id,
                        scope: Scope::Share { index, of },
                        reason: DenyReason::ShareMismatch,
                    };
                    self.send(Dest::Node(from), Body::AssumeDeny(reply));
                    return;
                }
            },
            _ => Scope::Share { index, of },
        };
        self.send(
            Dest::Node(from),
            Body::AssumeGrant(AssumeReply {
                owner,
                request_id,
                scope,
                reason: DenyReason::None,
            }),
        );
    }

    /// The group's candidates in policy order that are alive and eligible: the owner, then its
    /// backups.
    pub(super) fn candidates(&self, owner: NodeId) -> Vec<NodeId> {
        let Some(rec) = self.ownership_of(owner) else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        std::iter::once(owner)
            .chain(rec.policy.backups.iter().copied())
            .filter(|n| seen.insert(*n))
            .filter(|n| {
                if *n == self.id() {
                    self.can_assume()
                } else {
                    self.members.get(n).is_some_and(|m| m.alive && m.eligible)
                }
            })
            .collect()
    }

    pub(super) fn evaluate_all(&mut self, now: Time) {
        let mut owners: BTreeSet<NodeId> = self.groups().keys().copied().collect();
        owners.insert(self.id());
        owners.extend(
            self.members
                .iter()
                .filter(|(_, m)| m.ownership.is_some())
                .map(|(id, _)| *id),
        );
        for o in owners {
            self.evaluate(now, o);
        }
    }

    /// Decides what to do about one group.
    pub(super) fn evaluate(&mut self, now: Time, owner: NodeId) {
        if !self.can_assume() || self.held_at(owner).is_some() || !self.orphaned(owner) {
            return;
        }
        // Only groups we have the record of can be assumed (we need their addresses).
        if self.ownership_of(owner).is_none() {
            return;
        }
        let cands = self.candidates(owner);
        let Some(pos) = cands.iter().position(|c| *c == self.id()) else {
            return;
        };
        let spread = self
            .ownership_of(owner)
            .is_some_and(|o| o.policy.assignment == Assignment::Spread)
            && owner != self.id();
        if pos == 0 {
            let scope = if spread && cands.len() > 1 {
                Scope::Share {
                    index: 0,
                    of: cands.len() as u16,
                }
            } else {
                Scope::All
            };
            // A grant we gave away for this group stands until it expires.
            if self
                .group(owner)
                .and_then(|g| g.granted.as_ref())
                .is_some_and(|g| g.1 == Scope::All)
            {
                return;
            }
            self.assume(owner, scope);
        } else {
            let prev = self.view(owner).map(|g| g.epoch).unwrap_or_default();
            self.want(now, owner, prev);
        }
    }

    /// When we declare `owner` dead after another candidate has already assumed its group (its
    /// TAKEOVER-NOTICE came first), we still ask that assumer, once for this failure (claim
    /// 10): for our share under `spread`; otherwise we are denied, and exactly one node holds
    /// the group.
    pub(super) fn ask_late(&mut self, now: Time, owner: NodeId) {
        if owner == self.id() || self.orphaned(owner) {
            return;
        }
        if let Some(g) = self.view(owner)
            && g.epoch.holder != owner
        {
            self.want(now, owner, g.epoch);
        }
    }

    /// A lower-ranked candidate that wants a group whose holder (at `prev`) failed asks the
    /// highest-ranked live candidate, once per failure (claim 10: "sending from the third system
    /// to the second system a request to assume the connection").
    pub(super) fn want(&mut self, now: Time, owner: NodeId, prev: Epoch) {
        if !self.can_assume()
            || prev.holder == self.id()
            || self.held_at(owner).is_some()
            || self.group(owner).is_some_and(|g| g.share.is_some())
            || self.group(owner).is_some_and(|g| g.pending.is_some())
            || self.group(owner).is_some_and(|g| g.asked.contains(&prev))
        {
            return;
        }
        let cands = self.candidates(owner);
        let Some(pos) = cands.iter().position(|c| *c == self.id()) else {
            return;
        };
        if pos == 0 {
            return;
        }
        let spread = self
            .ownership_of(owner)
            .is_some_and(|o| o.policy.assignment == Assignment::Spread);
        let top = cands[0];
        let scope = if spread {
            Scope::Share {
                index: pos as u16,
                of: cands.len() as u16,
            }
        } else {
            Scope::All
        };
        self.group_mut(owner).asked.insert(prev);
        let request_id = self.rng.next_u64() as u32;
        let (iv, miss) = self.peer_interval(top);
        self.group_mut(owner).pending = Some(Pending {
            to: top,
            request_id,
            scope: scope.clone(),
            deadline: now + iv * miss,
            tries: 1,
            not_yet: true,
        });
        self.actions
            .push_back(Action::Event(Event::Requested { owner, to: top }));
        let known = self.view(owner).map_or(
            Holding {
                owner,
                epoch: prev,
                holder_boot: 0,
            },
            |g| Holding {
                owner,
                epoch: g.epoch,
                holder_boot: g.holder_boot,
            },
        );
        self.send(
            Dest::Node(top),
            Body::AssumeRequest(AssumeRequest {
                owner,
                request_id,
                scope,
                known,
            }),
        );
    }

    pub(super) fn assume(&mut self, owner: NodeId, scope: Scope) {
        let counter = self.view(owner).map_or(0, |g| g.epoch.counter) + 1;
        let epoch = Epoch {
            counter,
            holder: self.id(),
        };
        let with_addresses = matches!(scope, Scope::All | Scope::Share { index: 0, .. });
        let Some(rec) = self.ownership_of(owner).cloned() else {
            return;
        };
        self.group_mut(owner).pending.take();
        // claim 1: assume the connection(s) for the failed system. The connections come first:
        // the IO layer re-creates them before the address exists, so that no packet for them
        // ever meets a kernel without their sockets.
        let shares = if matches!(scope, Scope::Share { index: 0, .. }) {
            self.candidates(owner)
        } else {
            Vec::new()
        };
        self.actions.push_back(Action::AssumeConnections {
            owner,
            epoch,
            scope: scope.clone(),
            shares,
        });
        if with_addresses {
            self.hold(owner, epoch);
            self.group_mut(owner).assignment.take();
            self.actions.push_back(Action::ClaimAddress {
                owner,
                epoch,
                addresses: rec.addresses.clone(),
                arp: rec.arp,
            });
        } else {
            let e = self.view(owner).map(|g| g.epoch).unwrap_or(epoch);
            self.group_mut(owner).share = Some((e, scope.clone()));
        }
        let addresses = if with_addresses {
            rec.addresses.iter().map(|a| a.addr).collect()
        } else {
            Vec::new()
        };
        self.send(
            Dest::All,
            Body::TakeoverNotice(TakeoverNotice {
                owner,
                epoch,
                scope,
                addresses,
            }),
        );
    }

    pub(super) fn on_assume_request(&mut self, now: Time, from: NodeId, r: AssumeRequest) {
        let owner = r.owner;
        if r.known.owner == owner {
            self.observe(owner, r.known.epoch, r.known.holder_boot);
        }
        // We may hold it below an epoch whose holder the requester says is gone.
        self.reassert(owner);
        // Perhaps we are the rightful assumer and have not noticed yet.
        self.evaluate(now, owner);
        let reply = |reason: DenyReason| AssumeReply {
            owner,
            request_id: r.request_id,
            scope: r.scope.clone(),
            reason,
        };
        let cands = self.candidates(owner);
        let grant = if self.held_at(owner).is_some() {
            match r.scope {
                Scope::Share { index, of } if index != 0 && of as usize == cands.len() => Ok(()),
                Scope::Share { .. } => Err(DenyReason::ShareMismatch),
                _ => Err(DenyReason::Assumed),
            }
        } else if !self.orphaned(owner) {
            Err(DenyReason::HolderAlive)
        } else if self
            .group(owner)
            .and_then(|g| g.granted.as_ref())
            .is_some_and(|g| g.0 != from)
        {
            // Exactly one: leave was already given to another node.
            Err(DenyReason::Assumed)
        } else {
            match cands.first() {
                // We cannot assume it ourselves, and in our view the requester ranks first.
                Some(top) if *top == from => Ok(()),
                Some(_) => Err(DenyReason::Assumed),
                None => Ok(()),
            }
        };
        if grant.is_ok()
            && self.held_at(owner).is_some()
            && let Scope::Share { index, .. } = r.scope
        {
            if self.group(owner).is_some_and(|g| g.assignment.is_some()) {
                self.grant_share(owner, from, r.request_id, index);
            } else if !self.group(owner).is_some_and(|g| {
                g.awaiting
                    .iter()
                    .any(|w| w.0 == from && w.1 == r.request_id)
            }) {
                // Granted once the IO layer has split the connections.
                self.group_mut(owner)
                    .awaiting
                    .push((from, r.request_id, index));
            }
            return;
        }
        match grant {
            Ok(()) => {
                let (iv, miss) = self.peer_interval(from);
                if r.scope == Scope::All {
                    self.group_mut(owner).granted =
                        Some((from, r.scope.clone(), now + iv * (miss + 1)));
                }
                self.send(Dest::Node(from), Body::AssumeGrant(reply(DenyReason::None)));
            }
            Err(reason) => self.send(Dest::Node(from), Body::AssumeDeny(reply(reason))),
        }
    }

    pub(super) fn on_assume_reply(
        &mut self,
        now: Time,
        from: NodeId,
        r: AssumeReply,
        granted: bool,
    ) {
        let Some(p) = self.group(r.owner).and_then(|g| g.pending.as_ref()) else {
            return;
        };
        if p.to != from || p.request_id != r.request_id {
            return;
        }
        let p = self.group_mut(r.owner).pending.take().expect("checked");
        self.actions.push_back(Action::Event(Event::Answered {
            owner: r.owner,
            from,
            granted,
        }));
        if granted {
            // A share may be granted as the holder's explicit list of connections.
            let scope = match (&p.scope, &r.scope) {
                (Scope::Share { .. }, Scope::Connections(_)) => r.scope.clone(),
                _ => p.scope.clone(),
            };
            if self.can_assume()
                && (self.orphaned(r.owner) || matches!(p.scope, Scope::Share { .. }))
            {
                self.assume(r.owner, scope);
            }
        } else {
            // Denied: do not ask again before the replier would have noticed a failure.
            let (iv, miss) = self.peer_interval(from);
            self.group_mut(r.owner).pending = Some(Pending {
                deadline: now + iv * miss,
                tries: p.tries + 1,
                not_yet: r.reason == DenyReason::HolderAlive,
                ..p
            });
        }
    }
}
