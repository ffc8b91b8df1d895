//! The daemon's event loop: sockets, timers, link events and signals in; the core's actions out.
//!
//! Read [`run`] first. Everything that decides lives in `holdfast_proto::Node`; this module only
//! turns its actions into syscalls (UDP sends, addresses, announcements) and feeds it what the
//! kernel reports, each with `now` from one monotonic clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use holdfast_proto::node::{Action, Command, Config, Dest, Node};
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
mod status;
mod takeover;

use actions::apply;
pub use status::*;

/// Reads, increments and stores the boot epoch; never lower than seconds since 2024, so a lost
/// state file still gives an epoch above any earlier boot's.
fn next_boot_epoch(run_dir: &Path) -> Result<u32> {
    let path = run_dir.join("boot_epoch");
    let stored: u32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().saturating_sub(1_704_067_200) as u32)
        .unwrap_or(0);
    let e = (stored + 1).max(secs);
    std::fs::write(&path, e.to_string()).with_context(|| path.display().to_string())?;
    Ok(e)
}

/// `setsockopt` with a value of type `T`.
fn setopt<T>(
    sock: &impl AsRawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: &T,
) -> std::io::Result<()> {
    // SAFETY: setsockopt with a pointer to a live value and its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Datagrams the kernel dropped on the control socket (its buffer was full): `SO_MEMINFO`'s
/// drop count.
fn udp_drops(sock: &UdpSocket) -> u64 {
    const SO_MEMINFO: libc::c_int = 55;
    const SK_MEMINFO_DROPS: usize = 8;
    let mut info = [0u32; 9];
    let mut len = size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt into a buffer of `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r == 0 {
        info[SK_MEMINFO_DROPS] as u64
    } else {
        0
    }
}

fn multicast_socket(group: SocketAddrV4, local: Ipv4Addr) -> Result<std::net::UdpSocket> {
    let sock = std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, group.port()))
        .with_context(|| format!("bind UDP port {}", group.port()))?;
    sock.join_multicast_v4(group.ip(), &local)
        .with_context(|| format!("join {} on {local}", group.ip()))?;
    sock.set_multicast_loop_v4(false)?;
    sock.set_multicast_ttl_v4(1)?;
    // A peer that comes up is sent one CONN-STATE per live connection at once (a thousand and
    // more): the default receive buffer (about 200 kB) would drop most of them.
    // Drops are counted in status.
    crate::sockbuf::receive(sock.as_raw_fd(), 16 << 20, "control socket");
    let ifaddr = libc::in_addr {
        s_addr: u32::from_ne_bytes(local.octets()),
    };
    // Send multicast out of the cluster interface (there is no default route in a node).
    setopt(&sock, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &ifaddr).context("IP_MULTICAST_IF")?;
    sock.set_nonblocking(true)?;
    Ok(sock)
}

struct Io {
    /// The core's clock: `Time` is nanoseconds since this instant.
    base: Instant,
    net: Net,
    iface: IfInfo,
    udp: UdpSocket,
    group: SocketAddrV4,
    me: NodeConfig,
    me_iface_name: String,
    app: fn() -> Box<dyn App>,
    registry: std::sync::Arc<crate::app::Registry>,
    snooper: Option<Snooper>,
    /// Connections re-created in repair mode, waiting for their owner's address.
    repaired: Vec<(NodeId, Repaired)>,
    /// Handshakes the old owner never answered, to replay once we have the owner's address.
    syns: Vec<(NodeId, Vec<u8>)>,
    /// Groups being taken over: their addresses, and whether we take those (announce).
    assuming: BTreeMap<NodeId, (Vec<IpAddr>, bool)>,
    /// Raw sockets that put a client's packets (a FIN, a SYN) into our own stack.
    injector: Option<crate::inject::Injector>,
    /// Every owned address in the cluster, and its owner.
    owner_of: HashMap<IpAddr, NodeId>,
    /// Holes in the snooped copy being fetched.
    holes: holes::Holes,
    /// The takeover under way: when its snapshots were taken, and its phases so far.
    timing: Option<(Instant, TakeoverTiming)>,
    /// Groups being migrated back to their owner: their frozen connections are dropped once
    /// the addresses are released.
    migrating: std::collections::BTreeSet<NodeId>,
    /// Announcement sockets by interface index, kept open (see [`Io::sender`]).
    senders: BTreeMap<u32, std::sync::Arc<RawSender>>,
    /// Kernel forwarding of connections served elsewhere, for groups we hold.
    steer: Steer,
    /// What we forward: (group, serving node) -> connections.
    forwards: BTreeMap<(NodeId, NodeId), Vec<FourTuple>>,
    /// Groups whose connections we serve without holding their addresses (on the loopback):
    /// the addresses, the connections last reported, and whether the owner wants reports
    /// (a `new-connections` handback).
    serving: BTreeMap<NodeId, (Vec<IpAddr>, Vec<FourTuple>, bool)>,
    conns: ConnCounters,
    /// `snoop = "forward"`: the kernel's copies for the backups (`None` in other modes).
    tee: Option<crate::tee::Tee>,
    /// The copies may need updating (see `copies.rs`).
    tee_dirty: bool,
    /// Backups already reported as having no known MAC.
    tee_unknown: std::collections::BTreeSet<NodeId>,
    /// Peers whose MAC is in the kernel's neighbour table (`copies.rs`), and which MAC.
    primed: BTreeMap<Ipv4Addr, [u8; 6]>,
}

impl Io {
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
        c.forwarded = self.steer.installed();
        c.copied_to = self
            .tee
            .as_ref()
            .map(|t| t.installed().values().map(|m| m.len()).sum())
            .unwrap_or(0);
        c.udp_drops = udp_drops(&self.udp);
        c.served_without_address = self.serving.values().map(|s| s.1.len()).sum();
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
                other => deferred.push_back(other),
            }
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
        let conns = self.registry.connections(owner);
        self.serving.insert(owner, (addrs, conns, report));
    }

    /// Now and then: report closed connections of groups served without their addresses, and
    /// once none is left, take the addresses off the loopback.
    async fn housekeeping(&mut self, node: &mut Node) {
        self.update_tee(node);
        self.prime_neighbours(node).await;
        let owners: Vec<NodeId> = self.serving.keys().copied().collect();
        for owner in owners {
            let now_live = self.registry.connections(owner);
            let Some((addrs, last, report)) = self.serving.get_mut(&owner) else {
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
                self.serving.remove(&owner);
                info!(%owner, "no connection left to serve without the address");
                for a in addrs {
                    let _ = self.net.del_local(a).await;
                }
            }
        }
    }
}

/// Raises the open-file limit to its hard maximum: every connection is a descriptor (twice,
/// with the guardian's duplicate).
pub fn raise_fd_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Gives the calling thread (the protocol loop) a low real-time priority (`SCHED_RR` 10, not
/// inherited by children), as keepalived can for VRRP (`vrrp_rt_priority`): heartbeats must go
/// out and be read on time even when the machine is saturated, or a live node is declared dead
/// (seen with 10,000 connections opening at once on two cores). The loop mostly sleeps; the
/// kernel's real-time throttling keeps a runaway from taking more than 95% of a CPU.
fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sched_setscheduler on the calling thread (0) with a valid parameter.
    let r =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if r != 0 {
        warn!(
            "no real-time priority for the protocol loop ({}): heartbeats may be late under load",
            std::io::Error::last_os_error()
        );
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
    let registry = crate::app::Registry::new(serving_runtime()?, guardian(), owner_of.clone(), app);
    let steer = clear_previous_run(&cfg, &net, &iface).await;
    let tee = (ownership.policy.snoop == holdfast_proto::policy::SnoopMode::Forward).then(|| {
        let mut t = crate::tee::Tee::new(&cfg.interface, iface.index, iface.mac);
        if let Err(e) = t.reset() {
            warn!("snoop = forward unavailable (nf_tables netdev dup): {e}");
        }
        t
    });
    let mut io = Io {
        base,
        registry: registry.clone(),
        net,
        iface,
        udp,
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
        injector: match crate::inject::Injector::new() {
            Ok(i) => Some(i),
            Err(e) => {
                warn!("no raw socket ({e}): half-closed connections cannot be re-created");
                None
            }
        },
        timing: None,
        migrating: Default::default(),
        senders: BTreeMap::new(),
        steer,
        forwards: BTreeMap::new(),
        serving: BTreeMap::new(),
        conns: ConnCounters::default(),
        tee,
        tee_dirty: true,
        tee_unknown: Default::default(),
        primed: BTreeMap::new(),
    };
    let sock_path = run_dir.join(STATUS_SOCKET);
    let _ = std::fs::remove_file(&sock_path);
    let status_listener =
        UnixListener::bind(&sock_path).with_context(|| sock_path.display().to_string())?;
    crate::app::spawn_listeners(ownership.ports, registry)?;
    event_loop(&mut node, &mut io, name, status_listener).await?;
    info!("shutting down: releasing and telling the peers");
    let now = io.now();
    node.command(now, Command::Shutdown);
    apply(&mut node, &mut io, name, now).await;
    // Nothing of ours stays in the kernel: no forwarding, no address on the loopback.
    if let Err(e) = io.steer.reset() {
        warn!("removing the kernel forwarding: {e}");
    }
    for (addrs, _, _) in std::mem::take(&mut io.serving).into_values() {
        for a in addrs {
            let _ = io.net.del_local(a).await;
        }
    }
    let _ = std::fs::remove_file(&sock_path);
    Ok(())
}

/// The core for this boot: a boot epoch above every earlier one, a seed of its own.
fn start_node(
    cfg: &ClusterConfig,
    name: &str,
    ownership: &holdfast_proto::policy::Ownership,
    run_dir: &Path,
    base: Instant,
) -> Result<Node> {
    let boot_epoch = next_boot_epoch(run_dir)?;
    let seed =
        base.elapsed().as_nanos() as u64 ^ (std::process::id() as u64) << 32 ^ boot_epoch as u64;
    let me = &cfg.nodes[name];
    let node = Node::new(
        Config {
            cluster_id: cfg.cluster_id,
            key: cfg.key.clone(),
            ownership: ownership.clone(),
            boot_epoch,
            boot_wait: me.boot_wait,
            expected_peers: cfg.peers_of(name),
        },
        Time(base.elapsed().as_nanos() as u64),
        seed,
    );
    info!(
        node = name,
        id = ownership.node_id.0,
        boot_epoch,
        "holdfastd started; announcing"
    );
    Ok(node)
}

/// claim 8: snoop the connections of every group this node may assume: every owned address
/// in the cluster, ours included (after a takeover and our return, another node may hold our
/// group, and we back it up). `None` when the policy says not to snoop.
fn start_snooper(
    cfg: &ClusterConfig,
    me: &NodeConfig,
    iface: &IfInfo,
    app: fn() -> Box<dyn App>,
) -> Result<Option<Snooper>> {
    if me.ownership.policy.snoop == holdfast_proto::policy::SnoopMode::None {
        return Ok(None);
    }
    let services: Vec<(IpAddr, (u16, u16))> = cfg
        .nodes
        .values()
        .flat_map(|n| {
            n.ownership
                .addresses
                .iter()
                .map(|a| (a.addr, n.ownership.ports))
        })
        .collect();
    let sn =
        Snooper::start(iface.index, services, app, cfg.group.port()).context("start snooping")?;
    sn.table
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_fetch_window(me.fetch_window);
    Ok(Some(sn))
}

/// Every owned address in the cluster, and its owner.
fn owners(cfg: &ClusterConfig) -> HashMap<IpAddr, NodeId> {
    cfg.nodes
        .values()
        .flat_map(|n| {
            n.ownership
                .addresses
                .iter()
                .map(|a| (a.addr, n.ownership.node_id))
        })
        .collect()
}

/// The guardian keeps the connections silent if this process dies (a crash).
fn guardian() -> Option<crate::guardian::Guardian> {
    match crate::guardian::Guardian::spawn() {
        Ok(g) => Some(g),
        Err(e) => {
            warn!("no guardian: a crash of holdfastd will close the connections: {e}");
            None
        }
    }
}

/// The connections are served on a runtime of their own, on its own thread: however many
/// there are, they never hold up the protocol loop (and so our heartbeats).
fn serving_runtime() -> Result<tokio::runtime::Handle> {
    let serving = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the serving runtime")?;
    let handle = serving.handle().clone();
    std::thread::Builder::new()
        .name("holdfastd-serve".into())
        .spawn(move || serving.block_on(std::future::pending::<()>()))
        .context("the serving thread")?;
    Ok(handle)
}

/// Removes whatever a previous run in this namespace left (forwarding rules, loopback
/// addresses, `vmac` routing tables) and keeps the interface quiet about addresses it does not
/// hold. Returns the forwarding, empty.
async fn clear_previous_run(cfg: &ClusterConfig, net: &Net, iface: &IfInfo) -> Steer {
    let mut steer = Steer::new(&cfg.interface, iface.index, iface.mac);
    if let Err(e) = steer.reset() {
        warn!("kernel forwarding unavailable (nf_tables netdev): {e}");
    }
    for n in cfg.nodes.values() {
        for a in &n.ownership.addresses {
            let _ = net.del_local(a.addr).await;
        }
        let _ = net.unroute_from(Io::vmac_table(n.ownership.node_id)).await;
    }
    if let Err(e) = netio::quiet_arp(&cfg.interface) {
        warn!("{e:#}");
    }
    steer
}

/// The protocol loop, until SIGTERM or SIGINT: datagrams, timers, link events, status
/// requests and the periodic chores in; the core's actions out after each.
async fn event_loop(
    node: &mut Node,
    io: &mut Io,
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
        apply(node, io, name, now).await;
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
                io.datagram(node, &buf[..n], from);
            }
            _ = tokio::time::sleep_until(deadline.into()) => node.handle_timeout(io.now()),
            Some(up) = link_rx.recv() => {
                info!(up, "cluster link {}", if up { "up" } else { "down" });
                node.handle_link_event(io.now(), up);
            }
            Ok((mut s, _)) = status_listener.accept() => {
                let st = status(name, node, io.now(), io.conn_counters());
                let mut text = serde_json::to_string_pretty(&st).unwrap_or_default();
                text.push('\n');
                tokio::spawn(async move { let _ = s.write_all(text.as_bytes()).await; });
            }
            _ = chores.tick() => io.housekeeping(node).await,
            _ = hole_check.tick() => {
                io.fetch_holes(node);
                if io.tee_dirty {
                    io.update_tee(node);
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}
