//! Starting the daemon: the boot epoch, the sockets, the core, the snooper, the serving
//! runtime, the guardian, and clearing what a previous run in this namespace left.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use holdfast_proto::app::App;
use holdfast_proto::node::{Config, Node};
use holdfast_proto::policy::NodeId;
use holdfast_proto::time::Time;
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::Daemon;
use crate::config::{ClusterConfig, NodeConfig};
use crate::netio::{self, IfInfo, Net};
use crate::snoop::Snooper;
use crate::steer::Steer;

/// Reads, increments and stores the boot epoch; never lower than seconds since 2024, so a lost
/// state file still gives an epoch above any earlier boot's.
pub(super) fn next_boot_epoch(run_dir: &Path) -> Result<u32> {
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

/// Datagrams the kernel dropped on the control socket (its buffer was full): `SO_MEMINFO`'s
/// drop count.
pub(super) fn udp_drops(sock: &UdpSocket) -> u64 {
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

pub(super) fn multicast_socket(
    group: SocketAddrV4,
    local: Ipv4Addr,
) -> Result<std::net::UdpSocket> {
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
    crate::repair::setopt(
        &sock,
        libc::IPPROTO_IP,
        libc::IP_MULTICAST_IF,
        &ifaddr,
        "IP_MULTICAST_IF",
    )?;
    sock.set_nonblocking(true)?;
    Ok(sock)
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
/// How long spare heartbeats keep this node heard while its protocol loop is held
/// (`beacon.rs`): the longest a slow action may hold the loop without a false failure, and how
/// much later than `miss_count` intervals a node whose loop is wedged for good is declared dead.
pub(super) const HEARTBEAT_RESERVE: Duration = Duration::from_millis(100);

/// The raw sockets that put a client's packets into this node's stack, and the replay thread
/// that uses them for the packets held during a takeover (each `None`, logged, if it cannot
/// start).
pub(super) fn injector_and_replayer() -> (
    Option<std::sync::Arc<crate::inject::Injector>>,
    Option<crate::replay::Replayer>,
) {
    let injector = match crate::inject::Injector::new() {
        Ok(i) => Some(std::sync::Arc::new(i)),
        Err(e) => {
            warn!(
                "no raw socket ({e}): half-closed connections cannot be re-created, and packets that arrive during a takeover are not put back"
            );
            None
        }
    };
    let replayer = injector.clone().and_then(|i| {
        crate::replay::Replayer::spawn(i)
            .inspect_err(|e| {
                warn!(
                    "no replay thread ({e}): packets that arrive during a takeover are not put back"
                )
            })
            .ok()
    });
    (injector, replayer)
}

/// The beacon threads, sending to the cluster's group from the loop's socket (`None`, logged,
/// if they cannot start: a held loop then sends no spare heartbeats).
pub(super) fn beacon(udp: &UdpSocket, group: SocketAddrV4) -> Option<crate::beacon::Beacon> {
    crate::beacon::Beacon::spawn(udp, group.into())
        .inspect_err(|e| {
            warn!("no beacon thread ({e}): a held protocol loop sends no spare heartbeats")
        })
        .ok()
}

pub(super) fn realtime_priority() {
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

/// The core for this boot: a boot epoch above every earlier one, a seed of its own.
pub(super) fn start_node(
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
            reserve: HEARTBEAT_RESERVE,
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
pub(super) fn start_snooper(
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
pub(super) fn owners(cfg: &ClusterConfig) -> HashMap<IpAddr, NodeId> {
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
pub(super) fn guardian() -> Option<crate::guardian::Guardian> {
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
pub(super) fn serving_runtime() -> Result<tokio::runtime::Handle> {
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
pub(super) async fn clear_previous_run(cfg: &ClusterConfig, net: &Net, iface: &IfInfo) -> Steer {
    let mut steer = Steer::new(&cfg.interface, iface.index, iface.mac);
    if let Err(e) = steer.reset() {
        warn!("kernel forwarding unavailable (nf_tables netdev): {e}");
    }
    for n in cfg.nodes.values() {
        for a in &n.ownership.addresses {
            let _ = net.del_local(a.addr).await;
        }
        let _ = net
            .unroute_from(Daemon::vmac_table(n.ownership.node_id))
            .await;
    }
    if let Err(e) = netio::quiet_arp(&cfg.interface) {
        warn!("{e:#}");
    }
    steer
}
