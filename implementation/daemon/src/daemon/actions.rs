//! Turning the core's actions into syscalls: sends, addresses, takeovers, hand-backs and
//! forwarding, in the order the core emitted them.

use std::collections::VecDeque;
use std::net::IpAddr;

use holdfast_proto::node::{Action, Event, Node};
use holdfast_proto::policy::{ArpPolicy, Epoch, FailbackMode, NodeId, OwnedAddress};
use holdfast_proto::share::Selection;
use holdfast_proto::time::Time;
use holdfast_proto::wire::Scope;
use tracing::{debug, info, warn};

use super::Daemon;

/// How long a run of actions holds the protocol loop before it lets the protocol turn.
const TURN: std::time::Duration = std::time::Duration::from_millis(2);

/// Carries out every action the core has queued (and those a takeover deferred), then brings
/// the `forward` copies in line if anything they depend on changed.
pub(super) async fn apply(node: &mut Node, io: &mut Daemon, name: &str, now: Time) {
    // Actions the core emitted while a takeover kept the protocol running (`keep_alive`):
    // they come before anything still queued in the core.
    let mut deferred = VecDeque::new();
    let started = std::time::Instant::now();
    let mut slowest = Slowest::default();
    while let Some(a) = deferred.pop_front().or_else(|| node.poll_action()) {
        // A run of slow actions (addresses, kernel rules) lets the protocol turn between them,
        // so that its heartbeats never wait for the whole run.
        if started.max(io.last_keep_alive).elapsed() > TURN {
            io.keep_alive(node, &mut deferred).await;
        }
        // Who holds what, or who is alive, may have changed: the copies for the backups too.
        if matches!(
            a,
            Action::ClaimAddress { .. }
                | Action::ReleaseAddress { .. }
                | Action::WithdrawAddress { .. }
                | Action::ReinstateAddress { .. }
                | Action::Event(_)
        ) {
            io.tee_dirty = true;
        }
        let kind = kind(&a);
        let (t0, c0) = (std::time::Instant::now(), super::thread_cpu());
        apply_one(node, io, name, now, &mut deferred, a).await;
        slowest.time(kind, t0, c0);
    }
    if io.tee_dirty {
        let (t0, c0) = (std::time::Instant::now(), super::thread_cpu());
        io.update_tee(node);
        slowest.time("update copies", t0, c0);
    }
    slowest.report();
}

/// Carries out one action.
async fn apply_one(
    node: &mut Node,
    io: &mut Daemon,
    name: &str,
    now: Time,
    deferred: &mut VecDeque<Action>,
    a: Action,
) {
    match a {
        Action::Send { to, data } => io.send(node, to, &data).await,
        Action::SpareHeartbeats {
            first,
            interval,
            data,
        } => io.spares(first, interval, data),
        Action::ClaimAddress {
            owner,
            epoch,
            addresses,
            arp,
        } => {
            info!(node = name, %owner, %epoch, addrs = ?addresses.iter().map(|a| a.addr).collect::<Vec<IpAddr>>(), ?arp, "claim");
            io.on_claim(node, deferred, owner, &addresses, arp).await;
        }
        Action::ReleaseAddress {
            owner,
            epoch,
            addresses,
        } => {
            info!(node = name, %owner, %epoch, "release");
            io.on_release(node, owner, &addresses).await;
        }
        Action::AssumeConnections {
            owner,
            epoch,
            scope,
            shares,
        } => {
            io.on_assume(node, deferred, name, (owner, epoch), scope, &shares)
                .await
        }
        Action::Forward {
            owner,
            to,
            connections,
        } => {
            info!(node = name, %owner, %to, connections = connections.len(), "forward");
            if connections.is_empty() {
                io.forwards.remove(&(owner, to));
            } else {
                io.forwards.insert((owner, to), connections);
            }
            io.apply_forwards(node).await;
        }
        Action::HandBack { owner, mode } => {
            info!(node = name, %owner, ?mode, "hand back");
            io.on_handback(node, name, now, owner, mode).await;
        }
        Action::DiscardStale { owner, epoch } => {
            info!(node = name, %owner, %epoch, "fenced: discarding stale connections");
            io.served.discard(owner);
        }
        Action::ConnState { from, state } => io.adopt(from, &state),
        Action::FetchRequest { from, fetch } => io.answer_fetch(node, from, fetch),
        Action::Fetched { from, fetched } => io.fetched(from, fetched),
        Action::WithdrawAddress { owner, addresses } => {
            info!(node = name, %owner, "link down: addresses withdrawn until this node is eligible again");
            for a in &addresses {
                if let Err(e) = io.net.del_addr(a.addr).await {
                    debug!("withdraw {}: {e:#}", a.addr);
                }
            }
        }
        Action::ReinstateAddress {
            owner,
            addresses,
            arp,
        } => {
            info!(node = name, %owner, "still ours after the link returned: re-claiming");
            if let Err(e) = io.claim(owner, &addresses, arp).await {
                warn!("re-claim {owner}: {e:#}");
            }
        }
        Action::SyncPeer { peer } => io.sync_peer(node, peer),
        Action::Event(e) => io.on_event(name, e),
    }
}

/// The slowest action of a turn: its name, wall time and this thread's CPU time within it.
#[derive(Default)]
struct Slowest(Option<(&'static str, std::time::Duration, std::time::Duration)>);

impl Slowest {
    /// Records an action that started at `t0` with this thread's CPU time at `c0`.
    fn time(&mut self, kind: &'static str, t0: std::time::Instant, c0: std::time::Duration) {
        let wall = t0.elapsed();
        if self.0.is_none_or(|s| s.1 < wall) {
            self.0 = Some((kind, wall, super::thread_cpu().saturating_sub(c0)));
        }
    }

    /// Logs the slowest if it held the loop longer than [`super::HELD_WARN`]: wall time well
    /// above the CPU time means the thread waited (a syscall) or was not run.
    fn report(self) {
        if let Some((kind, wall, cpu)) = self.0.filter(|s| s.1 > super::HELD_WARN) {
            warn!(
                action = kind,
                wall_ms = wall.as_secs_f64() * 1e3,
                cpu_ms = cpu.as_secs_f64() * 1e3,
                "a slow action (wall time, and this thread's CPU time within it)"
            );
        }
    }
}

/// An action's name, for the logs.
fn kind(a: &Action) -> &'static str {
    match a {
        Action::Send { .. } => "send",
        Action::SpareHeartbeats { .. } => "spares",
        Action::ClaimAddress { .. } => "claim",
        Action::ReleaseAddress { .. } => "release",
        Action::AssumeConnections { .. } => "assume",
        Action::Forward { .. } => "forward",
        Action::HandBack { .. } => "hand back",
        Action::DiscardStale { .. } => "discard stale",
        Action::ConnState { .. } => "conn-state",
        Action::FetchRequest { .. } => "fetch request",
        Action::Fetched { .. } => "fetched",
        Action::WithdrawAddress { .. } => "withdraw",
        Action::ReinstateAddress { .. } => "reinstate",
        Action::SyncPeer { .. } => "sync peer",
        Action::Event(_) => "event",
    }
}

impl Daemon {
    /// Takes the addresses, and takes live whatever a takeover re-created for them.
    async fn on_claim(
        &mut self,
        node: &mut Node,
        deferred: &mut VecDeque<Action>,
        owner: NodeId,
        addresses: &[OwnedAddress],
        arp: ArpPolicy,
    ) {
        self.copies_before_claim(node, deferred).await;
        if let Err(e) = self.claim(owner, addresses, arp).await {
            warn!("claim {owner}: {e:#}");
        }
        for a in addresses {
            self.served.address(a.addr, true);
        }
        self.snooper_caught_up(node, deferred).await;
        self.go_live(owner);
    }

    /// `snoop = "forward"`: the copies for the backups are in the kernel before the address
    /// exists, so that no connection opens with its handshake uncopied (a backup that never
    /// saw it cannot take the connection over). Waited for in 2 ms steps with the protocol
    /// kept running (the copying thread commits in 5-25 ms), at most 100 ms.
    async fn copies_before_claim(&mut self, node: &mut Node, deferred: &mut VecDeque<Action>) {
        if self.tee.is_none() {
            return;
        }
        self.update_tee(node);
        let Some(want) = self.tee_sent.clone() else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while self.tee.as_ref().is_some_and(|t| !t.has(&want)) {
            if std::time::Instant::now() > deadline {
                warn!(
                    "snoop = forward: the copies for the backups are not in place yet; claiming anyway"
                );
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            self.keep_alive(node, deferred).await;
        }
    }

    /// Lets the addresses go: a migrating group's frozen connections go with them, and so
    /// does the forwarding for the group (forwarding is for addresses we hold).
    async fn on_release(&mut self, node: &Node, owner: NodeId, addresses: &[OwnedAddress]) {
        let arp = node.ownership_of(owner).map_or(ArpPolicy::Garp, |o| o.arp);
        for a in addresses {
            self.served.address(a.addr, false);
        }
        if let Err(e) = self.release(owner, addresses, arp).await {
            warn!("release {owner}: {e:#}");
        }
        if self.migrating.remove(&owner) {
            self.served.discard(owner);
        }
        let before = self.forwards.len();
        self.forwards.retain(|(o, _), _| *o != owner);
        if self.forwards.len() != before {
            self.apply_forwards(node).await;
        }
    }

    /// Re-creates this node's part of a failed owner's connections. A part without the
    /// addresses (a `spread` share) goes live at once: the holder forwards its packets here.
    async fn on_assume(
        &mut self,
        node: &mut Node,
        deferred: &mut VecDeque<Action>,
        name: &str,
        (owner, epoch): (NodeId, Epoch),
        scope: Scope,
        shares: &[NodeId],
    ) {
        let what = match &scope {
            Scope::Connections(l) => format!("{} listed connections", l.len()),
            other => format!("{other:?}"),
        };
        info!(node = name, %owner, %epoch, scope = %what, ?shares, "assume connections");
        let (addrs, arp) = node
            .ownership_of(owner)
            .map(|r| (r.addresses.clone(), r.arp))
            .unwrap_or_default();
        let part = Selection::from(scope);
        let with_addresses = part.with_addresses();
        self.assume(node, deferred, owner, &addrs, arp, part, shares)
            .await;
        if !with_addresses {
            let ips = addrs.iter().map(|a| a.addr).collect();
            self.serve_without_address(owner, ips, false).await;
            self.snooper_caught_up(node, deferred).await;
            self.go_live(owner);
        }
    }

    /// Gives a group back to its returning owner, per its failback mode.
    async fn on_handback(
        &mut self,
        node: &mut Node,
        name: &str,
        now: Time,
        owner: NodeId,
        mode: FailbackMode,
    ) {
        match mode {
            FailbackMode::NewConnections => {
                // The group's connections stay here until they close: make their address
                // local on the loopback before it goes (the owner forwards their packets
                // here from the moment it takes the address back).
                let conns = self.served.connections(owner);
                if !conns.is_empty() {
                    let ips = node
                        .ownership_of(owner)
                        .map(|r| r.addresses.iter().map(|a| a.addr).collect())
                        .unwrap_or_default();
                    self.serve_without_address(owner, ips, true).await;
                }
                info!(node = name, %owner, connections = conns.len(), "new-connections: draining here");
                node.handback_ready(now, owner, conns);
            }
            FailbackMode::Migrate => {
                // Freeze the group's connections (nothing more leaves here), then hand the
                // addresses back; the owner has tracked the connections since it came up
                // (CONN-STATE sync and snooping) and re-creates them once we are quiet.
                // The frozen sockets are dropped once the address is gone, so nothing that
                // arrives meanwhile meets a kernel without the socket.
                let n = self.served.freeze(owner);
                info!(node = name, %owner, connections = n, "migrate: frozen");
                self.migrating.insert(owner);
                node.handback_ready(now, owner, Vec::new());
            }
            FailbackMode::None => {}
        }
    }

    /// Logs an event (and counts the connections a sync could not bring whole).
    fn on_event(&mut self, name: &str, e: Event) {
        match e {
            Event::SyncIncomplete {
                from,
                owner,
                tuple,
                why,
            } => {
                warn!(node = name, %from, %owner, ?tuple, why = why.name(), "a connection's CONN-STATE did not arrive whole: this node cannot take it over");
                *self
                    .conns
                    .sync_incomplete
                    .entry(why.name().to_owned())
                    .or_default() += 1;
            }
            Event::PeerDead { .. }
            | Event::PeerLeft { .. }
            | Event::Fenced { .. }
            | Event::CutOff { .. }
            | Event::Reachable { .. } => {
                info!(node = name, ?e)
            }
            Event::SteppedDown { ref released } => warn!(
                node = name,
                ?released,
                "this node hears no peer and no witness: it let its groups go and assumes nothing until it hears one"
            ),
            Event::Resumed { late } => warn!(
                node = name,
                ?late,
                "this node was paused (frozen or starved of CPU): its peers get a fresh detection window"
            ),
            _ => debug!(node = name, ?e),
        }
    }
}
