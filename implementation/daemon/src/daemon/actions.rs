//! Turning the core's actions into syscalls: sends, addresses, takeovers, hand-backs and
//! forwarding, in the order the core emitted them.

use std::collections::VecDeque;
use std::net::IpAddr;

use holdfast_proto::node::{Action, Event, Node};
use holdfast_proto::policy::{ArpPolicy, FailbackMode, NodeId};
use holdfast_proto::time::Time;
use holdfast_proto::wire::Scope;
use tracing::{debug, info, warn};

use super::Io;
use super::takeover::Part;

pub(super) async fn apply(node: &mut Node, io: &mut Io, name: &str, now: Time) {
    // Actions the core emitted while a takeover kept the protocol running (`keep_alive`):
    // they come before anything still queued in the core.
    let mut deferred = VecDeque::new();
    while let Some(a) = deferred.pop_front().or_else(|| node.poll_action()) {
        // Who holds what, or who is alive, may have changed: the copies for the backups too.
        if matches!(
            a,
            Action::ClaimAddress { .. } | Action::ReleaseAddress { .. } | Action::Event(_)
        ) {
            io.tee_dirty = true;
        }
        match a {
            Action::Send { to, data } => io.send(to, &data).await,
            Action::ClaimAddress {
                owner,
                epoch,
                addresses,
                arp,
            } => {
                info!(node = name, %owner, %epoch, addrs = ?addresses.iter().map(|a| a.addr).collect::<Vec<IpAddr>>(), ?arp, "claim");
                if let Err(e) = io.claim(owner, &addresses, arp).await {
                    warn!("claim {owner}: {e:#}");
                }
                for a in &addresses {
                    io.registry.address(a.addr, true);
                }
                io.snooper_caught_up(node, &mut deferred).await;
                io.go_live(owner);
            }
            Action::ReleaseAddress {
                owner,
                epoch,
                addresses,
            } => {
                info!(node = name, %owner, %epoch, "release");
                let arp = node_arp(node, owner);
                for a in &addresses {
                    io.registry.address(a.addr, false);
                }
                if let Err(e) = io.release(owner, &addresses, arp).await {
                    warn!("release {owner}: {e:#}");
                }
                if io.migrating.remove(&owner) {
                    io.registry.discard(owner);
                }
                // Forwarding is for addresses we hold.
                let before = io.forwards.len();
                io.forwards.retain(|(o, _), _| *o != owner);
                if io.forwards.len() != before {
                    io.apply_forwards().await;
                }
            }
            Action::AssumeConnections {
                owner,
                epoch,
                scope,
                shares,
            } => {
                let what = match &scope {
                    Scope::Connections(l) => format!("{} listed connections", l.len()),
                    other => format!("{other:?}"),
                };
                info!(node = name, %owner, %epoch, scope = %what, ?shares, "assume connections");
                let (addrs, arp) = record(node, owner)
                    .map(|r| (r.addresses.clone(), r.arp))
                    .unwrap_or_default();
                match scope {
                    Scope::All => {
                        io.assume(node, &mut deferred, owner, &addrs, arp, Part::All, &[])
                            .await
                    }
                    Scope::Share { index: 0, of } => {
                        let part = Part::Share(0, of);
                        io.assume(node, &mut deferred, owner, &addrs, arp, part, &shares)
                            .await
                    }
                    // Our share, without the addresses: the holder forwards its packets.
                    Scope::Share { .. } | Scope::Connections(_) => {
                        let part = match scope {
                            Scope::Share { index, of } => Part::Share(index, of),
                            Scope::Connections(list) => Part::Listed(list.into_iter().collect()),
                            Scope::All => Part::All,
                        };
                        io.assume(node, &mut deferred, owner, &addrs, arp, part, &[])
                            .await;
                        let ips = addrs.iter().map(|a| a.addr).collect();
                        io.serve_without_address(owner, ips, false).await;
                        io.snooper_caught_up(node, &mut deferred).await;
                        io.go_live(owner);
                    }
                }
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
                io.apply_forwards().await;
            }
            Action::HandBack { owner, mode } => {
                info!(node = name, %owner, ?mode, "hand back");
                if mode == FailbackMode::NewConnections {
                    // The group's connections stay here until they close: make their address
                    // local on the loopback before it goes (the owner forwards their packets
                    // here from the moment it takes the address back).
                    let conns = io.registry.connections(owner);
                    if !conns.is_empty() {
                        let ips = record(node, owner)
                            .map(|r| r.addresses.iter().map(|a| a.addr).collect())
                            .unwrap_or_default();
                        io.serve_without_address(owner, ips, true).await;
                    }
                    info!(node = name, %owner, connections = conns.len(), "new-connections: draining here");
                    node.handback_ready(now, owner, conns);
                }
                if mode == FailbackMode::Migrate {
                    // Freeze the group's connections (nothing more leaves here), then hand the
                    // addresses back; the owner has tracked the connections since it came up
                    // (CONN-STATE sync and snooping) and re-creates them once we are quiet.
                    // The frozen sockets are dropped once the address is gone, so nothing that
                    // arrives meanwhile meets a kernel without the socket.
                    let n = io.registry.freeze(owner);
                    info!(node = name, %owner, connections = n, "migrate: frozen");
                    io.migrating.insert(owner);
                    node.handback_ready(now, owner, Vec::new());
                }
            }
            Action::DiscardStale { owner, epoch } => {
                info!(node = name, %owner, %epoch, "fenced: discarding stale connections");
                io.registry.discard(owner);
            }
            Action::ConnState { from, state } => io.adopt(from, &state),
            Action::FetchRequest { from, fetch } => io.answer_fetch(node, from, fetch),
            Action::Fetched { from, fetched } => io.fetched(from, fetched),
            Action::Event(Event::PeerUp {
                node: peer,
                boot_epoch,
            }) => {
                debug!(node = name, %peer, boot_epoch, "peer up");
                // Only a peer that (re)booted lacks our connections: one that was merely out
                // of touch (declared dead, then heard again) kept snooping them.
                if io.peer_boots.insert(peer, boot_epoch) != Some(boot_epoch) {
                    io.sync_peer(node, peer);
                }
            }
            Action::Event(Event::Eligible) if io.isolated => {
                // Back on the link and re-synchronised: whatever we still hold (nobody fenced
                // us), we answer for again.
                io.isolated = false;
                let held: Vec<NodeId> = node.held().keys().copied().collect();
                for owner in held {
                    if let Some(r) = record(node, owner).cloned() {
                        info!(node = name, %owner, "still ours after the link returned: re-claiming");
                        if let Err(e) = io.claim(owner, &r.addresses, r.arp).await {
                            warn!("re-claim {owner}: {e:#}");
                        }
                    }
                }
            }
            Action::Event(Event::SyncIncomplete {
                from,
                owner,
                tuple,
                why,
            }) => {
                warn!(node = name, %from, %owner, ?tuple, why = why.name(), "a connection's CONN-STATE did not arrive whole: this node cannot take it over");
                *io.conns
                    .sync_incomplete
                    .entry(why.name().to_owned())
                    .or_default() += 1;
            }
            Action::Event(e) => match e {
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
            },
        }
    }
    if io.tee_dirty {
        io.update_tee(node);
    }
}

pub(super) fn record(node: &Node, owner: NodeId) -> Option<&holdfast_proto::policy::Ownership> {
    if owner == node.id() {
        return Some(&node.config().ownership);
    }
    node.members()
        .get(&owner)
        .and_then(|m| m.ownership.as_ref())
}

fn node_arp(node: &Node, owner: NodeId) -> ArpPolicy {
    record(node, owner).map_or(ArpPolicy::Garp, |o| o.arp)
}
