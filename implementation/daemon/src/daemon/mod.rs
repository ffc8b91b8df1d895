//! The daemon's event loop: sockets, timers, link events and signals in; the core's actions out.
//!
//! Read [`run`] first. Everything that decides lives in `holdfast_proto::Node`; this module only
//! turns its actions into syscalls (UDP sends, addresses, announcements) and feeds it what the
//! kernel reports, each with `now` from one monotonic clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use holdfast_proto::node::{Action, Command, Dest, Node};
use holdfast_proto::policy::{ArpPolicy, NodeId};
use holdfast_proto::time::Time;
use holdfast_proto::wire::FourTuple;
use tokio::io::AsyncWriteExt;
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use holdfast_proto::app::App;

use crate::arp::RawSender;
use crate::config::{ClusterConfig, NodeConfig};
use crate::netio::{self, IfInfo, Net};
use crate::repair::Repaired;
use crate::snoop::Snooper;
use crate::steer::{Rules, Steer};

mod actions;
mod addresses;
mod copies;
mod holes;
mod start;
mod status;
mod takeover;

use actions::apply;
pub use start::raise_fd_limit;
use start::*;
pub use status::*;

/// Work that holds the protocol loop longer than this is logged and counted
/// ([`ConnCounters::loop_held`]).
const HELD_WARN: Duration = Duration::from_millis(5);

/// The CPU time this thread has used so far (a loop held longer than it computed was not
/// running: blocked in a syscall, or not scheduled).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which outlives the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The daemon's half of the sans-IO split: its sockets, the kernel state it made (addresses,
/// forwarding, copies), the snooper and the served connections. The core decides; this turns
/// its actions into syscalls ([`apply`]) and feeds it what the kernel reports.
struct Daemon {
    /// The core's clock: `Time` is nanoseconds since this instant.
    base: Instant,
    net: Net,
    iface: IfInfo,
    udp: UdpSocket,
    /// Sends the core's spare heartbeats while this loop is held (`None`: it could not start,
    /// logged).
    beacon: Option<crate::beacon::Beacon>,
    group: SocketAddrV4,
    me: NodeConfig,
    me_iface_name: String,
    app: fn() -> Box<dyn App>,
    served: std::sync::Arc<crate::serving::ServedConnections>,
    snooper: Option<Snooper>,
    /// Connections re-created in repair mode, waiting for their owner's address.
    repaired: Vec<(NodeId, Repaired)>,
    /// Handshakes the old owner never answered, to replay once we have the owner's address.
    syns: Vec<(NodeId, Vec<u8>)>,
    /// Groups being taken over: their addresses, and whether we take those (announce).
    assuming: BTreeMap<NodeId, (Vec<IpAddr>, bool)>,
    /// Raw sockets that put a client's packets (a FIN, a SYN) into our own stack.
    injector: Option<std::sync::Arc<crate::inject::Injector>>,
    /// Puts the packets that arrived during a takeover back into our stack, off the loop.
    replayer: Option<crate::replay::Replayer>,
    /// Every owned address in the cluster, and its owner.
    owner_of: HashMap<IpAddr, NodeId>,
    /// Holes in the snooped copy being fetched.
    holes: holes::Holes,
    /// The takeover under way: when its snapshots were taken, and its phases so far.
    timing: Option<(Instant, TakeoverTiming)>,
    /// Groups being migrated back to their owner: their frozen connections are dropped once
    /// the addresses are released.
    migrating: std::collections::BTreeSet<NodeId>,
    /// Announcement sockets by interface index, kept open (see [`Daemon::sender`]).
    senders: BTreeMap<u32, std::sync::Arc<RawSender>>,
    /// Kernel forwarding of connections served elsewhere, for groups we hold.
    steer: Steer,
    /// What we forward: (group, serving node) -> connections.
    forwards: BTreeMap<(NodeId, NodeId), Vec<FourTuple>>,
    /// Groups whose connections we serve without holding their addresses (on the loopback):
    /// the addresses, the connections last reported, and whether the owner wants reports
    /// (a `new-connections` handback).
    without_address: BTreeMap<NodeId, (Vec<IpAddr>, Vec<FourTuple>, bool)>,
    conns: ConnCounters,
    /// `snoop = "forward"`: the kernel's copies for the backups (`None` in other modes).
    tee: Option<crate::tee::TeeWorker>,
    /// The copies last asked of `tee`.
    tee_sent: Option<crate::tee::Copies>,
    /// The copies may need updating (see `copies.rs`).
    tee_dirty: bool,
    /// Backups already reported as having no known MAC.
    tee_unknown: std::collections::BTreeSet<NodeId>,
    /// Peers whose MAC is in the kernel's neighbour table (`copies.rs`), and which MAC.
    primed: BTreeMap<Ipv4Addr, [u8; 6]>,
    /// When a long action last let the protocol run (`keep_alive`).
    last_keep_alive: Instant,
}

impl Daemon {
    fn conn_counters(&self) -> ConnCounters {
        let mut c = self.conns.clone();
        if let Some(sn) = &self.snooper {
            let t = sn.table.lock().unwrap_or_else(|e| e.into_inner());
            c.tracked = t.len();
            c.held_dropped = t.held_dropped;
            c.holes_open = t.holes_open();
            c.holes_opened = t.holes.opened;
            c.holes_repaired = t.holes.repaired;
            c.holes_lost = t.holes.lost;
            c.states = t
                .states()
                .into_iter()
                .map(|(s, n)| (s.name().to_owned(), n))
                .collect();
            c.ended = t
                .ended
                .iter()
                .map(|(s, n)| (s.name().to_owned(), *n))
                .collect();
            drop(t);
            c.snoop_drops = sn.drops();
        }
        if let Some(r) = &self.replayer {
            use std::sync::atomic::Ordering::Relaxed;
            c.replayed_syns = r.counts.syns.load(Relaxed);
            c.replayed_segments = r.counts.segments.load(Relaxed);
            c.replay_pending = r.counts.queued.load(Relaxed);
            c.replay_failed = r.counts.failed.load(Relaxed);
        }
        c.forwarded = self.steer.installed();
        if let Some(t) = &self.tee {
            let st = t.state();
            c.copied_to = st.installed.values().map(|m| m.len()).sum();
            c.tee_failures = st.failures;
        }
        c.udp_drops = udp_drops(&self.udp);
        if let Some(b) = &self.beacon {
            use std::sync::atomic::Ordering::Relaxed;
            let n = b.counts();
            c.spares_sent = n.sent.load(Relaxed);
            c.spares_skipped = n.skipped.load(Relaxed);
            c.spares_failed = n.failed.load(Relaxed);
        }
        c.served_without_address = self.without_address.values().map(|s| s.1.len()).sum();
        c
    }

    /// Keeps the cluster protocol running while a long action (a takeover) holds the event
    /// loop: the datagrams that arrived are handled, due timers fire, and what the core sends
    /// (heartbeats above all) goes out now; its other actions wait in `deferred`, in order.
    /// Without this, a takeover longer than the failure-detection time made the peers declare
    /// this node dead.
    async fn keep_alive(&mut self, node: &mut Node, deferred: &mut VecDeque<Action>) {
        {
            // Scoped: not held across the awaits below (it would sit in every future that
            // awaits this one).
            let mut buf = [0u8; 65536];
            loop {
                match self.udp.try_recv_from(&mut buf) {
                    Ok((n, from)) => self.datagram(node, &buf[..n], from),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn!("recv: {e}");
                        break;
                    }
                }
            }
        }
        let now = self.now();
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle_timeout(now);
        }
        while let Some(a) = node.poll_action() {
            match a {
                Action::Send { to, data } => self.send(node, to, &data).await,
                Action::SpareHeartbeats {
                    first,
                    interval,
                    data,
                } => self.spares(first, interval, data),
                other => deferred.push_back(other),
            }
        }
        self.last_keep_alive = Instant::now();
    }

    /// Counts and logs a piece of work that held the protocol loop longer than
    /// [`HELD_WARN`] since `from` (or since the last `keep_alive` within it): the heartbeats
    /// waited that long.
    fn held(&mut self, from: Instant, what: &str) {
        let d = from.max(self.last_keep_alive).elapsed();
        if d > HELD_WARN {
            warn!(
                held_ms = d.as_secs_f64() * 1e3,
                cpu_s = thread_cpu().as_secs_f64(),
                what,
                "the protocol loop was held: heartbeats were late meanwhile"
            );
            *self.conns.loop_held.entry(what.to_owned()).or_default() += 1;
        }
    }

    /// Hands a datagram to the core, with where it came from (the core learns its peers'
    /// addresses from the datagrams it accepts).
    fn datagram(&mut self, node: &mut Node, data: &[u8], from: SocketAddr) {
        node.handle_datagram(self.now(), from, data);
    }

    async fn send(&self, node: &Node, to: Dest, data: &[u8]) {
        let dest = match to {
            Dest::All => Some(SocketAddr::V4(self.group)),
            Dest::Node(id) => node.peer_address(id),
        };
        match dest {
            Some(d) => {
                if let Err(e) = self.udp.send_to(data, d).await {
                    debug!("send to {d}: {e}");
                }
            }
            None => warn!(?to, "no address known for peer; message dropped"),
        }
    }

    /// Hands the core's spare heartbeats to the beacon, each with its due instant.
    fn spares(&self, first: Time, interval: Duration, data: Vec<Vec<u8>>) {
        if let Some(b) = &self.beacon {
            let first = self.base + Duration::from_nanos(first.0);
            b.set(
                data.into_iter()
                    .enumerate()
                    .map(|(k, d)| (first + interval * k as u32, d)),
            );
        }
    }

    fn now(&self) -> Time {
        Time(self.base.elapsed().as_nanos() as u64)
    }

    /// Installs the forwarding rules for `self.forwards`, replacing the previous ones. A
    /// connection that cannot be forwarded is counted and logged (its packets will meet this
    /// node's stack and be reset).
    async fn apply_forwards(&mut self, node: &Node) {
        let mut rules = Rules::new();
        for ((owner, to), tuples) in &self.forwards {
            let Some(p) = node.peer_address(*to) else {
                warn!(%owner, %to, connections = tuples.len(), "no address known for the node serving these connections: not forwarded");
                self.conns.unforwarded += tuples.len() as u64;
                continue;
            };
            // IPv6 connections go by the node's MAC (steer.rs says why).
            let mac = if tuples.iter().any(|t| !t.local.is_ipv4()) {
                self.net
                    .neighbour_mac(self.iface.index, p.ip())
                    .await
                    .unwrap_or_else(|e| {
                        warn!(%to, "neighbour table: {e:#}");
                        None
                    })
            } else {
                None
            };
            rules
                .entry(crate::steer::Hop { ip: p.ip(), mac })
                .or_default()
                .extend(tuples.iter().copied());
        }
        let n: usize = rules.values().map(Vec::len).sum();
        match self.steer.replace(&rules) {
            Ok(not) if not.is_empty() => info!(connections = n, "kernel forwarding updated"),
            Ok(not) => {
                for t in &not {
                    warn!(local = %t.local, remote = %t.remote, "cannot forward this connection (no MAC known for its node, or no IPv4 address): it will be reset");
                }
                self.conns.unforwarded += not.len() as u64;
                info!(connections = n - not.len(), "kernel forwarding updated");
            }
            Err(e) => {
                warn!(connections = n, "kernel forwarding: {e}");
                self.conns.unforwarded += n as u64;
            }
        }
    }

    /// Serves `owner`'s connections here without its addresses: they become local on the
    /// loopback (never announced), and another node forwards their packets here.
    async fn serve_without_address(&mut self, owner: NodeId, addrs: Vec<IpAddr>, report: bool) {
        for a in &addrs {
            if let Err(e) = self.net.add_local(*a).await {
                warn!("{a} on the loopback: {e:#}");
            }
        }
        let conns = self.served.connections(owner);
        self.without_address.insert(owner, (addrs, conns, report));
    }

    /// Now and then: report closed connections of groups served without their addresses, and
    /// once none is left, take the addresses off the loopback.
    async fn housekeeping(&mut self, node: &mut Node) {
        self.update_tee(node);
        self.prime_neighbours(node).await;
        let owners: Vec<NodeId> = self.without_address.keys().copied().collect();
        for owner in owners {
            let now_live = self.served.connections(owner);
            let Some((addrs, last, report)) = self.without_address.get_mut(&owner) else {
                continue;
            };
            if *last == now_live && !now_live.is_empty() {
                continue;
            }
            *last = now_live.clone();
            if *report {
                node.draining(owner, now_live.clone());
            }
            if now_live.is_empty() {
                let addrs = std::mem::take(addrs);
                self.without_address.remove(&owner);
                info!(%owner, "no connection left to serve without the address");
                for a in addrs {
                    let _ = self.net.del_local(a).await;
                }
            }
        }
    }
}

/// Runs the daemon for node `name` until SIGTERM or SIGINT.
pub async fn run(cfg: ClusterConfig, name: &str, run_dir: PathBuf) -> Result<()> {
    let Some(me) = cfg.nodes.get(name).cloned() else {
        bail!(
            "node {name:?} is not in the configuration (it has: {})",
            cfg.nodes.keys().cloned().collect::<Vec<_>>().join(" ")
        );
    };
    std::fs::create_dir_all(&run_dir).with_context(|| run_dir.display().to_string())?;
    raise_fd_limit();
    let base = Instant::now();
    let net = Net::new()?;
    let iface = net.interface(&cfg.interface).await?;
    let Some(local) = iface.ipv4 else {
        bail!(
            "the cluster interface {} has no IPv4 address",
            cfg.interface
        );
    };
    let udp = UdpSocket::from_std(multicast_socket(cfg.group, local)?)?;
    let beacon = beacon(&udp, cfg.group);
    let mut ownership = me.ownership.clone();
    if ownership.arp != ArpPolicy::Vmac {
        // The MAC tied to the addresses is ours (claim 3).
        for a in &mut ownership.addresses {
            a.mac = iface.mac;
        }
    }
    let mut node = start_node(&cfg, name, &ownership, &run_dir, base)?;
    let app = holdfast_proto::app::by_name(&ownership.application)
        .with_context(|| format!("unknown application {:?}", ownership.application))?;
    let snooper = start_snooper(&cfg, &me, &iface, app)?;
    let owner_of = owners(&cfg);
    let served = crate::serving::ServedConnections::new(
        serving_runtime()?,
        guardian(),
        owner_of.clone(),
        app,
    );
    let steer = clear_previous_run(&cfg, &net, &iface).await;
    let tee = if ownership.policy.snoop == holdfast_proto::policy::SnoopMode::Forward {
        let mut t = crate::tee::Tee::new(&cfg.interface, iface.index, iface.mac);
        if let Err(e) = t.reset() {
            warn!("snoop = forward unavailable (nf_tables netdev dup): {e}");
        }
        Some(crate::tee::TeeWorker::spawn(t).context("the copying thread")?)
    } else {
        None
    };
    // One pair of raw sockets, shared by the loop (a restored connection's FIN) and the
    // replay thread (the packets held during a takeover).
    let (injector, replayer) = injector_and_replayer();
    let mut io = Daemon {
        base,
        served: served.clone(),
        net,
        iface,
        udp,
        beacon,
        group: cfg.group,
        me: me.clone(),
        me_iface_name: cfg.interface.clone(),
        app,
        snooper,
        repaired: Vec::new(),
        syns: Vec::new(),
        assuming: BTreeMap::new(),
        owner_of,
        holes: Default::default(),
        replayer,
        injector,
        timing: None,
        migrating: Default::default(),
        senders: BTreeMap::new(),
        steer,
        forwards: BTreeMap::new(),
        without_address: BTreeMap::new(),
        conns: ConnCounters::default(),
        tee,
        tee_sent: None,
        tee_dirty: true,
        tee_unknown: Default::default(),
        primed: BTreeMap::new(),
        last_keep_alive: Instant::now(),
    };
    let sock_path = run_dir.join(STATUS_SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let status_listener =
        UnixListener::bind(&sock_path).with_context(|| sock_path.display().to_string())?;
    crate::serving::spawn_listeners(ownership.ports, served)?;
    event_loop(&mut node, &mut io, name, status_listener).await?;
    info!("shutting down: releasing and telling the peers");
    let now = io.now();
    node.command(now, Command::Shutdown);
    apply(&mut node, &mut io, name, now).await;
    // Nothing of ours stays in the kernel: no forwarding, no address on the loopback.
    if let Err(e) = io.steer.reset() {
        warn!("removing the kernel forwarding: {e}");
    }
    for (addrs, _, _) in std::mem::take(&mut io.without_address).into_values() {
        for a in addrs {
            let _ = io.net.del_local(a).await;
        }
    }
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

/// The protocol loop, until SIGTERM or SIGINT: datagrams, timers, link events, status
/// requests and the periodic chores in; the core's actions out after each.
async fn event_loop(
    node: &mut Node,
    io: &mut Daemon,
    name: &str,
    status_listener: UnixListener,
) -> Result<()> {
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    netio::watch_link(io.iface.index, io.iface.running, link_tx)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Every other thread exists by now (they keep the normal policy).
    realtime_priority();
    let mut buf = vec![0u8; 65536];
    let mut chores = tokio::time::interval(Duration::from_millis(250));
    chores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Holes in the snooped copy are asked for within milliseconds: the holder keeps only the
    // latest bytes of each connection.
    let mut hole_check = tokio::time::interval(Duration::from_millis(5));
    hole_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = io.now();
        let t = Instant::now();
        apply(node, io, name, now).await;
        io.held(t, "actions");
        let deadline = node
            .poll_timeout()
            .map(|t| io.base + Duration::from_nanos(t.0))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            // Datagrams first: after a freeze, the peers' queued heartbeats must be seen before
            // our own expired timers declare them dead.
            biased;
            r = io.udp.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => { warn!("recv: {e}"); continue; }
                };
                let t = Instant::now();
                io.datagram(node, &buf[..n], from);
                io.held(t, "a datagram");
            }
            _ = tokio::time::sleep_until(deadline.into()) => node.handle_timeout(io.now()),
            Some(up) = link_rx.recv() => {
                info!(up, "cluster link {}", if up { "up" } else { "down" });
                node.handle_link_event(io.now(), up);
            }
            Ok((mut s, _)) = status_listener.accept() => {
                let t = Instant::now();
                let st = status(name, node, io.now(), io.conn_counters());
                let mut text = serde_json::to_string_pretty(&st).unwrap_or_default();
                text.push('\n');
                tokio::spawn(async move { let _ = s.write_all(text.as_bytes()).await; });
                io.held(t, "status");
            }
            _ = chores.tick() => {
                let t = Instant::now();
                io.housekeeping(node).await;
                io.held(t, "housekeeping");
            }
            _ = hole_check.tick() => {
                let t = Instant::now();
                io.fetch_holes(node);
                if io.tee_dirty {
                    io.update_tee(node);
                }
                io.held(t, "holes and copies");
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}
