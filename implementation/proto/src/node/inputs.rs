//! The inputs: datagrams, timeouts, link events and commands, each with the time.

use std::collections::BTreeSet;

use crate::auth::{self, DropReason};
use crate::policy::NodeId;
use crate::sync::{Assembled, Incomplete};
use crate::time::Time;
use crate::wire::{Announce, Body, FLAG_LEAVING, Heard, Holding, MsgType, Scope};

use super::*;

impl Node {
    /// A datagram arrived from `from`. Anything malformed, forged, replayed or foreign is
    /// dropped and counted; nothing here panics on input. The source of an accepted datagram is
    /// where its sender is answered ([`Node::peer_address`]); a rejected one teaches nothing.
    pub fn handle_datagram(&mut self, now: Time, from: std::net::SocketAddr, data: &[u8]) {
        let msg = match auth::open(data, &self.cfg.key, self.cfg.cluster_id) {
            Ok(m) => m,
            Err(r) => return self.drop_msg(r),
        };
        if msg.sender == self.id() {
            return self.drop_msg(DropReason::Own);
        }
        if msg.body == Body::Alive {
            // Sealed in advance, in a sequence space of its own: ordered among themselves only.
            if let Err(r) = self
                .alive_replay
                .accept(msg.sender, msg.boot_epoch, msg.seq, false)
            {
                return self.drop_msg(r);
            }
            *self.stats.received.entry(MsgType::Alive).or_default() += 1;
            return self.on_alive(now, msg.sender, msg.boot_epoch);
        }
        let order_free = matches!(
            msg.body,
            Body::ConnState(_) | Body::Fetch(_) | Body::Fetched(_) | Body::Handback(_)
        );
        let newest = match self
            .replay
            .accept(msg.sender, msg.boot_epoch, msg.seq, order_free)
        {
            Ok(n) => n,
            Err(r) => return self.drop_msg(r),
        };
        *self.stats.received.entry(msg.body.msg_type()).or_default() += 1;
        self.addresses.insert(msg.sender, from);
        if !newest {
            // Overtaken by later datagrams: its flags are old news; only its body counts.
            return self.order_free(now, msg.sender, msg.body);
        }
        if !self.link_up {
            // We cannot hear while our link is down; a datagram now means it is back.
            self.handle_link_event(now, true);
        }
        self.heard(now, &msg);
        let from = msg.sender;
        let boot = msg.boot_epoch;
        match msg.body {
            Body::Announce(a) => self.on_announce(now, from, a),
            Body::Solicit { target } => {
                if target.is_none_or(|t| t == self.id()) {
                    // claim 4: answer a solicitation with our ownership information.
                    self.send_announce(Dest::All);
                }
            }
            Body::Heartbeat { holdings, heard } => {
                self.on_heartbeat(now, from, boot, holdings, &heard)
            }
            Body::AssumeRequest(r) => self.on_assume_request(now, from, r),
            Body::AssumeGrant(r) => self.on_assume_reply(now, from, r, true),
            Body::AssumeDeny(r) => self.on_assume_reply(now, from, r, false),
            Body::TakeoverNotice(t) => {
                if !t.addresses.is_empty() || t.scope == Scope::All {
                    let prev = self.view(t.owner).map(|g| g.epoch);
                    self.observe(t.owner, t.epoch, boot);
                    // The sender assumed a group whose holder failed: if we wanted it too, we
                    // ask the assumer (claim 10).
                    if let Some(prev) = prev
                        && prev.holder != from
                        && !self.alive(prev.holder)
                    {
                        self.want(now, t.owner, prev);
                    }
                }
            }
            Body::Reclaim(r) => self.on_reclaim(from, r),
            body @ (Body::ConnState(_) | Body::Fetch(_) | Body::Fetched(_) | Body::Handback(_)) => {
                self.order_free(now, from, body)
            }
            Body::Alive => {}
        }
        // A peer whose ANNOUNCE we missed: ask it again (claim 4).
        if self
            .members
            .get(&from)
            .is_some_and(|m| m.alive && m.ownership.is_none())
            && self.may_prod(now, from)
        {
            self.send(Dest::Node(from), Body::Solicit { target: Some(from) });
        }
        if msg.flags & FLAG_LEAVING != 0 {
            if let Some(m) = self.members.get_mut(&from) {
                m.alive = false;
            }
            self.actions
                .push_back(Action::Event(Event::PeerLeft { node: from }));
            self.evaluate_all(now);
            self.ask_late(now, from);
        }
    }

    /// ANNOUNCE: the sender's ownership record, those it relays for failed owners, and its view
    /// of every group.
    fn on_announce(&mut self, now: Time, from: NodeId, a: Announce) {
        if let Some(m) = self.members.get_mut(&from) {
            m.ownership = Some(a.ownership);
        }
        for o in a.relayed {
            let id = o.node_id;
            if id == self.id() || id == from {
                continue;
            }
            let m = self.members.entry(id).or_insert(Member {
                ownership: None,
                boot_epoch: 0,
                last_heard: now,
                vouched: Time::default(),
                cut_off: false,
                alive: false,
                eligible: false,
            });
            if m.ownership.is_none() {
                m.ownership = Some(o);
            }
        }
        for h in a.holdings {
            self.observe(h.owner, h.epoch, h.holder_boot);
        }
        self.check_eligible(now);
    }

    /// HEARTBEAT: whom the sender hears, and the groups it holds (one it no longer lists, it
    /// let go; one at an epoch older than we know, we tell it about).
    fn on_heartbeat(
        &mut self,
        now: Time,
        from: NodeId,
        boot: u32,
        holdings: Vec<Holding>,
        heard: &[Heard],
    ) {
        self.vouch(now, from, heard);
        let held_now: BTreeSet<NodeId> = holdings
            .iter()
            .filter(|h| h.epoch.holder == from)
            .map(|h| h.owner)
            .collect();
        let mut behind = false;
        for h in holdings {
            behind |=
                h.epoch.holder == from && self.view(h.owner).is_some_and(|g| g.epoch > h.epoch);
            self.observe(h.owner, h.epoch, h.holder_boot);
        }
        // Groups we think the sender holds but its heartbeat omits: it let them go.
        let listed: BTreeSet<NodeId> = self
            .groups()
            .into_iter()
            .filter(|(_, g)| g.epoch.holder == from && g.holder_boot == boot)
            .map(|(o, _)| o)
            .collect();
        for o in listed {
            if !held_now.contains(&o)
                && let Some(g) = self.groups.get_mut(&o).and_then(|g| g.view.as_mut())
            {
                g.released = true;
            }
        }
        // The sender holds a group at an epoch older than one we know: tell it.
        if behind && self.may_prod(now, from) {
            self.send_announce(Dest::Node(from));
        }
    }

    /// The bodies whose order does not matter: the parts of a CONN-STATE or of a HANDBACK
    /// (each set is made whole first, and an older one never replaces a newer), FETCH and
    /// FETCHED.
    pub(super) fn order_free(&mut self, now: Time, from: NodeId, body: Body) {
        match body {
            Body::Handback(h) => {
                if let Some(whole) = self.handback_parts.part(from, h) {
                    self.on_handback(from, whole);
                }
            }
            Body::ConnState(part) => {
                let (owner, tuple) = (part.head.owner, part.head.tuple);
                match self.assembler.part(now, from, *part) {
                    Assembled::Whole(state) => {
                        self.actions.push_back(Action::ConnState { from, state })
                    }
                    Assembled::Pending => {}
                    Assembled::Dropped(why) => {
                        self.actions.push_back(Action::Event(Event::SyncIncomplete {
                            from,
                            owner,
                            tuple,
                            why,
                        }))
                    }
                }
            }
            // Only the holder has the bytes; an asker with a stale view gets no answer and
            // asks the holder it learns of next.
            Body::Fetch(fetch) if self.held_at(fetch.owner).is_some() => {
                self.actions.push_back(Action::FetchRequest { from, fetch })
            }
            Body::Fetch(_) => {}
            Body::Fetched(fetched) => self.actions.push_back(Action::Fetched { from, fetched }),
            _ => {}
        }
    }

    /// Rate-limits unsolicited corrections to a peer: at most one per interval.
    pub(super) fn may_prod(&mut self, now: Time, peer: NodeId) -> bool {
        let iv = self.cfg.interval();
        if self.prodded.get(&peer).is_some_and(|t| now < *t + iv) {
            return false;
        }
        self.prodded.insert(peer, now);
        true
    }

    pub(super) fn drop_msg(&mut self, r: DropReason) {
        *self.stats.dropped.entry(r).or_default() += 1;
    }

    /// Call when the deadline from [`Node::poll_timeout`] passes.
    pub fn handle_timeout(&mut self, now: Time) {
        for (from, owner, tuple) in self.assembler.expire(now) {
            self.actions.push_back(Action::Event(Event::SyncIncomplete {
                from,
                owner,
                tuple,
                why: Incomplete::Timeout,
            }));
        }
        if let Some(due) = self.timers[Timer::Heartbeat as usize].filter(|t| *t <= now) {
            // Served more than an interval late: this node was paused, not its peers silent.
            if now - due > self.cfg.interval() {
                self.resumed = now;
                self.actions
                    .push_back(Action::Event(Event::Resumed { late: now - due }));
            }
            self.timers[Timer::Heartbeat as usize] = Some(now + self.cfg.interval());
            if self.link_up && !self.leaving {
                let holdings = self.holdings();
                let heard = self.heard_list(now);
                self.send(Dest::All, Body::Heartbeat { holdings, heard });
                self.send_spares(now);
            }
            // Periodic re-evaluation makes every decision robust to a lost message.
            self.evaluate_all(now);
            self.maybe_reclaim(now);
        }
        if self.timers[Timer::BootWait as usize].is_some_and(|t| t <= now) {
            self.timers[Timer::BootWait as usize] = None;
            self.become_eligible(now);
        }
        let dead: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(id, m)| m.alive && self.dead_at(**id, m).is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in &dead {
            if let Some(m) = self.members.get_mut(id) {
                m.alive = false;
                m.cut_off = false;
            }
            self.actions
                .push_back(Action::Event(Event::PeerDead { node: *id }));
        }
        if !dead.is_empty() {
            self.check_quorum();
            self.evaluate_all(now);
            for d in &dead {
                self.ask_late(now, *d);
            }
        }
        let expired: Vec<NodeId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.pending.as_ref().is_some_and(|p| p.deadline <= now))
            .map(|(o, _)| *o)
            .collect();
        for owner in expired {
            // Unanswered or denied a while ago: we may ask again about this failure.
            let not_yet = self
                .group_mut(owner)
                .pending
                .take()
                .is_some_and(|p| p.not_yet);
            self.group_mut(owner).asked.clear();
            self.evaluate(now, owner);
            // If the replier has assumed the group meanwhile, ask it now (a final "assumed"
            // answer is not asked again).
            if not_yet {
                self.ask_late(now, owner);
            }
        }
        for g in self.groups.values_mut() {
            if g.granted.as_ref().is_some_and(|x| x.2 <= now) {
                g.granted = None;
            }
        }
    }

    /// The cluster link went down or came up.
    pub fn handle_link_event(&mut self, now: Time, up: bool) {
        if up == self.link_up {
            return;
        }
        self.link_up = up;
        if !up && !self.held_owners().is_empty() {
            self.withdrawn = true;
            let held: Vec<NodeId> = self.held_owners();
            for owner in held {
                let addresses = self.addresses_of(owner);
                self.actions
                    .push_back(Action::WithdrawAddress { owner, addresses });
            }
        }
        if up {
            // Re-synchronise before assuming anything: solicit, and wait as at boot.
            self.eligible = false;
            self.send(Dest::All, Body::Solicit { target: None });
            self.timers[Timer::BootWait as usize] = Some(now + self.cfg.boot_wait);
        }
    }

    /// A command from the IO layer, with the time.
    pub fn command(&mut self, now: Time, cmd: Command) {
        match cmd {
            Command::Shutdown => {
                self.leaving = true;
                for (owner, epoch) in self.take_held() {
                    let addresses = self.addresses_of(owner);
                    self.actions.push_back(Action::ReleaseAddress {
                        owner,
                        epoch,
                        addresses,
                    });
                }
                self.send(
                    Dest::All,
                    Body::Heartbeat {
                        holdings: Vec::new(),
                        heard: Vec::new(),
                    },
                );
                self.timers = [None; TIMERS];
                // Gone: no ALIVE may follow.
                self.actions.push_back(Action::SpareHeartbeats {
                    first: now,
                    interval: self.cfg.interval(),
                    data: Vec::new(),
                });
            }
            Command::Solicit => self.send(Dest::All, Body::Solicit { target: None }),
        }
    }
}
