//! Sending: the header flags, what every message carries, and the IO layer's requests to send
//! connection state.

use crate::auth::{self};
use crate::policy::NodeId;
use crate::sync::PART_CHUNK;
use crate::wire::{
    Announce, Body, ConnState, ConnStatePart, FLAG_ELIGIBLE, FLAG_LEAVING, Fetch, Fetched, Holding,
    Message,
};

use super::*;

impl Node {
    pub(super) fn flags(&self) -> u16 {
        let mut f = 0;
        if self.eligible {
            f |= FLAG_ELIGIBLE;
        }
        if self.leaving {
            f |= FLAG_LEAVING;
        }
        f
    }

    pub(super) fn send(&mut self, to: Dest, body: Body) {
        let ty = body.msg_type();
        let data = self.seal_next(body);
        *self.stats.sent.entry(ty).or_default() += 1;
        self.actions.push_back(Action::Send { to, data });
    }

    /// Seals `body` with the next sequence number.
    fn seal_next(&mut self, body: Body) -> Vec<u8> {
        self.seq += 1;
        self.seal(self.seq, body)
    }

    fn seal(&self, seq: u64, body: Body) -> Vec<u8> {
        let msg = Message {
            flags: self.flags(),
            cluster: self.cfg.cluster_id,
            sender: self.id(),
            boot_epoch: self.cfg.boot_epoch,
            seq,
            body,
        };
        auth::seal(&msg, &self.cfg.key)
    }

    /// Seals the ALIVE datagrams that follow the HEARTBEAT just sent at `now` (see
    /// [`Action::SpareHeartbeats`]), as many as the reserve covers.
    pub(super) fn send_spares(&mut self, now: Time) {
        let iv = self.cfg.interval();
        let n = if iv.is_zero() {
            0
        } else {
            (self.cfg.reserve.as_nanos() / iv.as_nanos()).min(u128::from(MAX_SPARES)) as u32
        };
        if n == 0 {
            return;
        }
        let data = (0..n)
            .map(|_| {
                self.alive_seq += 1;
                self.seal(self.alive_seq, Body::Alive)
            })
            .collect();
        self.actions.push_back(Action::SpareHeartbeats {
            first: now + iv + iv / 2,
            interval: iv,
            data,
        });
    }

    pub(super) fn holdings(&self) -> Vec<Holding> {
        self.held()
            .into_iter()
            .map(|(owner, epoch)| Holding {
                owner,
                epoch,
                holder_boot: self.cfg.boot_epoch,
            })
            .collect()
    }

    pub(super) fn send_announce(&mut self, to: Dest) {
        // An ANNOUNCE carries the sender's whole view of the groups, so that a booting node
        // learns the newest epochs before it claims anything.
        let holdings = self
            .groups()
            .into_iter()
            .map(|(owner, g)| Holding {
                owner,
                epoch: g.epoch,
                holder_boot: g.holder_boot,
            })
            .collect();
        let relayed = self
            .members
            .values()
            .filter(|m| !m.alive)
            .filter_map(|m| m.ownership.clone())
            .collect();
        self.send(
            to,
            Body::Announce(Announce {
                ownership: self.cfg.ownership.clone(),
                holdings,
                relayed,
            }),
        );
    }

    /// Sends one connection's state to a node (migrate failback, or syncing a late backup),
    /// whatever its size: in parts of one datagram each. `false` (nothing sent) only for a
    /// state over 4 GB.
    pub fn conn_state(&mut self, to: NodeId, state: ConnState) -> bool {
        let Some(parts) = ConnStatePart::split(&state, PART_CHUNK) else {
            return false;
        };
        for p in parts {
            self.send(Dest::Node(to), Body::ConnState(Box::new(p)));
        }
        true
    }

    /// Asks the holder of `f.owner`'s group for client bytes this node's snooped copy lacks
    /// (claim 8: the backup's copy must be whole). Returns the node asked, or `None` when no
    /// live peer holds the group (the hole stays open: if the group has to be taken over
    /// before it is repaired, that connection cannot be made whole).
    pub fn fetch(&mut self, f: Fetch) -> Option<NodeId> {
        let holder = self.view(f.owner)?.epoch.holder;
        if holder == self.id() || !self.members.get(&holder).is_some_and(|m| m.alive) {
            return None;
        }
        self.send(Dest::Node(holder), Body::Fetch(f));
        Some(holder)
    }

    /// Answers a [`Action::FetchRequest`].
    pub fn fetched(&mut self, to: NodeId, f: Fetched) {
        self.send(Dest::Node(to), Body::Fetched(f));
    }
}
