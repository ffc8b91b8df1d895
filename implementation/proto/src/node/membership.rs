//! Membership and failure detection: who is alive (heard directly, or reported by a live peer),
//! eligibility, and stepping down when cut off from everyone while a witness exists.

use std::time::Duration;

use crate::policy::NodeId;
use crate::time::Time;
use crate::wire::{Body, FLAG_ELIGIBLE, FLAG_LEAVING, Heard, Message};

use super::*;

impl Node {
    pub(super) fn peer_interval(&self, id: NodeId) -> (Duration, u32) {
        let pol = self
            .members
            .get(&id)
            .and_then(|m| m.ownership.as_ref())
            .map(|o| &o.policy)
            .unwrap_or(&self.cfg.ownership.policy);
        (
            Duration::from_millis(pol.heartbeat_ms as u64),
            pol.miss_count as u32,
        )
    }

    /// When a member is declared dead if nothing more is heard: `miss_count` of *its* intervals
    /// after it was last heard, by us or by a live peer that reported hearing it.
    pub(super) fn dead_at(&self, id: NodeId, m: &Member) -> Option<Time> {
        let (iv, miss) = self.peer_interval(id);
        Some(m.last_heard.max(m.vouched).max(self.resumed) + iv * miss)
    }

    /// The live peers this node heard itself, for its HEARTBEAT.
    pub(super) fn heard_list(&self, now: Time) -> Vec<Heard> {
        self.members
            .iter()
            .filter(|(_, m)| m.alive)
            .map(|(id, m)| Heard {
                node: *id,
                boot_epoch: m.boot_epoch,
                // Rounded up: a report never makes a peer look fresher than it is.
                age_ms: u32::try_from((now - m.last_heard).as_micros().div_ceil(1000))
                    .unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// A live peer's HEARTBEAT says whom it hears: each report (of the boot we know) moves that
    /// member's `vouched` instant, so it is not declared dead while someone still hears it. Only
    /// direct hearing is reported, so a dead node's name cannot circulate forever.
    pub(super) fn vouch(&mut self, now: Time, from: NodeId, heard: &[Heard]) {
        let me = self.id();
        for h in heard {
            if h.node == me || h.node == from {
                continue;
            }
            let at = Time(
                now.as_nanos()
                    .saturating_sub(u64::from(h.age_ms) * 1_000_000),
            );
            let (iv, miss) = self.peer_interval(h.node);
            // A report about the same datagram we heard last is no news (and the transit time
            // would stretch a dead node's window): only a report at least half an interval
            // fresher than our own hearing counts.
            if let Some(m) = self.members.get_mut(&h.node)
                && m.alive
                && m.boot_epoch == h.boot_epoch
                && at > m.vouched
                && at > m.last_heard + iv / 2
            {
                m.vouched = at;
                // Our own window has passed: the peer is alive but we cannot hear it.
                let m = &self.members[&h.node];
                if !m.cut_off && m.last_heard.max(self.resumed) + iv * miss <= now {
                    self.members.get_mut(&h.node).expect("present").cut_off = true;
                    self.actions.push_back(Action::Event(Event::CutOff {
                        node: h.node,
                        heard_by: from,
                    }));
                }
            }
        }
    }

    /// ALIVE: the sender's loop is held, but it lives. Only a live member of the same boot is
    /// refreshed; nothing else in it is news (its flags and holdings are as of its sealing).
    pub(super) fn on_alive(&mut self, now: Time, from: NodeId, boot_epoch: u32) {
        let Some(m) = self.members.get_mut(&from) else {
            return;
        };
        if !m.alive || m.boot_epoch != boot_epoch {
            return;
        }
        m.last_heard = now;
        if m.cut_off {
            m.cut_off = false;
            self.actions
                .push_back(Action::Event(Event::Reachable { node: from }));
        }
    }

    pub(super) fn heard(&mut self, now: Time, msg: &Message) {
        let from = msg.sender;
        let m = self.members.entry(from).or_insert(Member {
            ownership: None,
            boot_epoch: msg.boot_epoch,
            last_heard: now,
            vouched: Time::default(),
            cut_off: false,
            alive: false,
            eligible: false,
        });
        let rebooted = msg.boot_epoch > m.boot_epoch;
        let was_alive = m.alive;
        m.boot_epoch = msg.boot_epoch;
        m.last_heard = now;
        if m.cut_off {
            m.cut_off = false;
            self.actions
                .push_back(Action::Event(Event::Reachable { node: from }));
        }
        let m = self.members.get_mut(&from).expect("inserted above");
        m.eligible = msg.flags & FLAG_ELIGIBLE != 0;
        m.alive = msg.flags & FLAG_LEAVING == 0;
        if rebooted {
            // Its old ownership record may be stale until it announces again.
            m.ownership = m.ownership.take().filter(|o| o.node_id == from);
        }
        if (!was_alive || rebooted) && m.alive {
            self.actions.push_back(Action::Event(Event::PeerUp {
                node: from,
                boot_epoch: msg.boot_epoch,
            }));
            // Only a peer that (re)booted lacks our connections: one that was merely out of
            // touch (declared dead, then heard again) kept snooping them.
            if self.synced.insert(from, msg.boot_epoch) != Some(msg.boot_epoch)
                && !self.held_owners().is_empty()
            {
                self.actions.push_back(Action::SyncPeer { peer: from });
            }
            if self.stepped_down {
                // Back in touch: re-synchronise as at boot before assuming anything.
                self.stepped_down = false;
                self.send(Dest::All, Body::Solicit { target: None });
                self.timers[Timer::BootWait as usize] = Some(now + self.cfg.boot_wait);
            }
            // A higher epoch we knew of may have a live holder now.
            let owners: Vec<NodeId> = self.held_owners();
            for o in owners {
                self.check_fence(o);
            }
            if rebooted {
                // Whatever it held in its previous life is orphaned now.
                self.evaluate_all(now);
            }
        }
    }

    pub(super) fn check_eligible(&mut self, now: Time) {
        if self.eligible || self.cfg.expected_peers.is_empty() {
            return;
        }
        let all = self.cfg.expected_peers.iter().all(|p| {
            self.members
                .get(p)
                .is_some_and(|m| m.alive && m.ownership.is_some())
        });
        if all {
            self.become_eligible(now);
        }
    }

    pub(super) fn become_eligible(&mut self, now: Time) {
        if self.eligible || !self.link_up || self.leaving || self.stepped_down {
            return;
        }
        self.eligible = true;
        self.timers[Timer::BootWait as usize] = None;
        self.actions.push_back(Action::Event(Event::Eligible));
        if std::mem::take(&mut self.withdrawn) {
            // Back on the link and re-synchronised: whatever we still hold (nobody fenced us),
            // we answer for again.
            let held: Vec<NodeId> = self.held_owners();
            for owner in held {
                if let Some(o) = self.ownership_of(owner) {
                    let (addresses, arp) = (o.addresses.clone(), o.arp);
                    self.actions.push_back(Action::ReinstateAddress {
                        owner,
                        addresses,
                        arp,
                    });
                }
            }
        }
        self.evaluate_all(now);
        self.maybe_reclaim(now);
    }

    pub(super) fn can_assume(&self) -> bool {
        self.eligible && self.link_up && !self.leaving && !self.stepped_down
    }

    /// With a witness in the cluster (a member that owns nothing and backs nobody up), a node
    /// that hears nobody, directly or through a peer's report, is a minority of one: the others
    /// may well be assuming its groups right now. It lets them go (silently, as when fenced)
    /// and assumes nothing until it hears a peer again. Without a witness, a lone node keeps
    /// what it holds: it cannot tell that it is the one cut off.
    pub(super) fn check_quorum(&mut self) {
        if self.stepped_down
            || !self.link_up
            || self.leaving
            || self.cfg.ownership.addresses.is_empty()
            || self.members.values().any(|m| m.alive)
        {
            return;
        }
        let witness = self.members.values().any(|m| {
            m.ownership
                .as_ref()
                .is_some_and(|o| o.addresses.is_empty() && o.policy.backups.is_empty())
        });
        if !witness {
            return;
        }
        self.stepped_down = true;
        self.eligible = false;
        for g in self.groups.values_mut() {
            g.pending = None;
        }
        let mut released = Vec::new();
        for (owner, epoch) in self.take_held() {
            self.group_mut(owner).assignment.take();
            self.group_mut(owner).handing_back.take();
            let addresses = self.addresses_of(owner);
            self.actions.push_back(Action::ReleaseAddress {
                owner,
                epoch,
                addresses,
            });
            self.actions
                .push_back(Action::DiscardStale { owner, epoch });
            released.push(owner);
        }
        self.actions
            .push_back(Action::Event(Event::SteppedDown { released }));
    }

    pub(super) fn alive(&self, id: NodeId) -> bool {
        id == self.id() || self.members.get(&id).is_some_and(|m| m.alive)
    }
}
