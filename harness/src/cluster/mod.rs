//! A running cluster: building a topology into namespaces, faults, and guaranteed teardown.
//!
//! Read [`Cluster::up`] first, then [`Cluster::fault`]. The cluster owns every namespace,
//! capture and child process of its run. Dropping it (also on panic) tears everything down; a
//! signal handler does the same on SIGINT/SIGTERM, and the run record lets `holdfast-harness
//! clean` finish the job after a SIGKILL.
//!
//! Layout of a run:
//! - switch `S`: namespace `hfID-S` holding bridge `br0`; node `N`'s port on it is `N-IF`.
//! - node `N`: namespace `hfID-N`; its interfaces keep their topology names.
//! - run directory: `N/PROC.log` per process, `S.pcapng` per switch, `events.jsonl`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::capture::{Capture, CaptureStats};
use crate::client::{ClientReport, ClientSpec};
pub use crate::fault::Fault;
use crate::loss;
use crate::netlink::Hook;
use crate::netns::{self, NetNs};
use crate::partition::{self, Partition};

mod impairments;
use crate::process::{SpawnSpec, Spawner};
use crate::registry::{self, RunRecord};
use crate::topology::{self, Attachment, Node, TemplateEnv, Topology, port_name};

/// The bridge inside each switch namespace.
pub const BRIDGE: &str = "br0";
const PRIO_PARTITION: u16 = 1;
const PRIO_LOSS: u16 = 2;
const PRIO_MIRROR: u16 = 3;

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run directory; default `pcaps/out/ID` under the current directory.
    pub run_dir: Option<PathBuf>,
    /// The harness binary, for the `{harness}` placeholder; default: this executable, or
    /// `holdfast-harness` beside it or one directory up (as in `target/debug/deps/..`).
    pub harness_bin: Option<PathBuf>,
    /// Capture every switch port to pcapng.
    pub capture: bool,
    /// Start the node processes.
    pub start_processes: bool,
    /// The topology file, for the run record.
    pub topology_file: Option<PathBuf>,
    /// The implementation to run on the topology's `[cluster]`: its configuration is rendered
    /// into `RUN_DIR/config/NODE/` and its processes join the topology's own.
    pub adapter: Option<crate::adapter::Adapter>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            run_dir: None,
            harness_bin: None,
            capture: true,
            start_processes: true,
            topology_file: None,
            adapter: None,
        }
    }
}

/// Finds the `holdfast-harness` binary for the `{harness}` placeholder.
pub fn default_harness_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| "holdfast-harness".into());
    if exe.file_name().is_some_and(|n| n == "holdfast-harness") {
        return exe;
    }
    for dir in exe
        .parent()
        .into_iter()
        .flat_map(|d| [d.to_owned(), d.join("..")])
    {
        let cand = dir.join("holdfast-harness");
        if cand.is_file() {
            return cand;
        }
    }
    "holdfast-harness".into()
}

/// One entry of the event log, on the capture clock (`CLOCK_REALTIME`, ns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    pub t_ns: u64,
    /// What happened: `up`, `power-off`, `power-off:links-down`, `client-start`, ...
    pub kind: String,
    /// The node concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

struct Events {
    file: BufWriter<File>,
    all: Vec<Event>,
}

/// What a torn-down run leaves: its directory, captures and events.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// The run directory.
    pub run_dir: PathBuf,
    /// One entry per switch.
    pub captures: Vec<CaptureStats>,
    /// Every event, in order.
    pub events: Vec<Event>,
}

struct SwitchState {
    ns: NetNs,
    capture: Option<Capture>,
}

struct NodeState {
    ns: Option<NetNs>,
    procs: Vec<(String, Child)>,
}

/// A running client workload.
#[derive(Debug)]
pub struct ClientHandle {
    thread: std::thread::JoinHandle<io::Result<ClientReport>>,
}

impl ClientHandle {
    /// Waits for the workload to finish.
    pub fn wait(self) -> io::Result<ClientReport> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("client thread panicked")))
    }

    /// Whether the workload has finished.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// A topology built into namespaces.
pub struct Cluster {
    topology: Topology,
    record: RunRecord,
    harness_bin: PathBuf,
    switches: BTreeMap<String, SwitchState>,
    nodes: BTreeMap<String, NodeState>,
    /// Loss per (switch, node) port, in percent.
    loss: HashMap<(String, String), f64>,
    /// Partitions in force, applied on every switch.
    partitions: Vec<Partition>,
    /// Impairments per (switch, node) port, kept across power cycles.
    impairments: HashMap<(String, String), crate::impair::Impairment>,
    /// The running delay lines of impaired ports.
    lines: HashMap<(String, String), crate::impair::DelayLine>,
    events: Mutex<Events>,
    spawner: Option<Spawner>,
    /// Commands run in the root namespace after teardown (an adapter's `cleanup`).
    after_teardown: Vec<Vec<String>>,
    down: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.record.id)
            .field("run_dir", &self.record.run_dir)
            .finish_non_exhaustive()
    }
}

/// A fresh six-hex-digit run id that no recorded run or namespace uses.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    loop {
        let h = RandomState::new().hash_one((std::process::id(), crate::now_ns()));
        let id = format!("{:06x}", h & 0xff_ffff);
        let taken = Path::new(registry::REGISTRY_DIR)
            .join(format!("{id}.json"))
            .exists()
            || !netns::list(&format!("{}{id}-", registry::NS_PREFIX)).is_empty();
        if !taken {
            return id;
        }
    }
}

fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: impl FnOnce() -> String) -> io::Result<T> {
    r.map_err(|e| io::Error::other(format!("{}: {e}", what())))
}

impl Cluster {
    /// Builds the topology: namespaces, bridges, veths, addresses, mirrors, captures, and the
    /// node processes. On any error, what was built is torn down again.
    pub fn up(topology: Topology, opts: Options) -> io::Result<Self> {
        registry::install_signal_handler();
        let id = new_run_id();
        let run_dir = opts
            .run_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("pcaps/out").join(&id));
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", run_dir.display())))?;
        let run_dir = run_dir.canonicalize()?;
        let me = std::process::id() as i32;
        let record = RunRecord {
            id: id.clone(),
            owner_pid: me,
            owner_start: crate::process::start_time(me).unwrap_or(0),
            run_dir: run_dir.clone(),
            topology: opts.topology_file.clone(),
            namespaces: topology
                .switches
                .iter()
                .map(|s| &s.name)
                .chain(topology.nodes.iter().map(|n| &n.name))
                .map(|n| RunRecord::ns_name(&id, n))
                .collect(),
            control: None,
        };
        // The record exists before the first namespace, so `clean` can always find it.
        record.save()?;
        registry::register_live(&record);
        let events = File::create(run_dir.join("events.jsonl"))?;
        let mut c = Self {
            topology,
            record,
            harness_bin: opts.harness_bin.clone().unwrap_or_else(default_harness_bin),
            switches: BTreeMap::new(),
            nodes: BTreeMap::new(),
            loss: HashMap::new(),
            partitions: Vec::new(),
            impairments: HashMap::new(),
            lines: HashMap::new(),
            events: Mutex::new(Events {
                file: BufWriter::new(events),
                all: Vec::new(),
            }),
            spawner: Some(Spawner::new()?),
            after_teardown: Vec::new(),
            down: false,
        };
        // Impairments the topology gives its ports from the start (checked at load).
        for n in &c.topology.nodes {
            for i in &n.interfaces {
                if let (Attachment::Switch(sw), Some(spec)) = (&i.attach, &i.impair)
                    && let Ok(imp) = crate::impair::Impairment::parse(spec)
                    && !imp.is_none()
                {
                    c.impairments.insert((sw.clone(), n.name.clone()), imp);
                }
            }
        }
        if let Some(a) = &opts.adapter {
            if let Some(cmd) = a.cleanup_command(&c.record.id, &c.record.run_dir) {
                c.after_teardown.push(cmd);
            }
            match a.render(&c.topology, &c.record.run_dir.join("config")) {
                Ok(t) => c.topology = t,
                Err(e) => {
                    let _ = c.teardown();
                    return Err(io::Error::other(format!("adapter {}: {e}", a.name)));
                }
            }
        }
        match c.build(&opts) {
            Ok(()) => {
                c.event("up", None, &c.topology.name.clone());
                Ok(c)
            }
            Err(e) => {
                let _ = c.teardown();
                Err(e)
            }
        }
    }

    fn build(&mut self, opts: &Options) -> io::Result<()> {
        for sw in self.topology.switches.clone() {
            let ns_name = RunRecord::ns_name(&self.record.id, &sw.name);
            let ns = ctx(NetNs::create(&ns_name), || format!("switch {}", sw.name))?;
            ctx(ns.nl.add_bridge(BRIDGE, sw.hub), || {
                format!("switch {}", sw.name)
            })?;
            ctx(ns.nl.set_up(BRIDGE, true), || format!("switch {}", sw.name))?;
            let capture = if opts.capture {
                let ifaces: Vec<(String, String)> = self
                    .topology
                    .ports()
                    .filter(|(s, _, _)| *s == sw.name)
                    .map(|(s, n, i)| {
                        (
                            Self::idb_name(s, &n.name),
                            format!("port of node {} interface {} on switch {s}", n.name, i.name),
                        )
                    })
                    .collect();
                let path = self.record.run_dir.join(format!("{}.pcapng", sw.name));
                Some(Capture::start(&ns, &path, &ifaces)?)
            } else {
                None
            };
            self.switches
                .insert(sw.name.clone(), SwitchState { ns, capture });
        }
        for node in self.topology.nodes.clone() {
            self.boot(&node.name, opts.start_processes, false)?;
        }
        Ok(())
    }

    /// The capture's name for a port: `switch:node` (a node has at most one interface on a
    /// switch, so that names it).
    fn idb_name(switch: &str, node: &str) -> String {
        format!("{switch}:{node}")
    }

    /// Creates a node's namespace, links and addresses, and starts its processes.
    fn boot(&mut self, name: &str, start: bool, only_restartable: bool) -> io::Result<()> {
        let node = self
            .topology
            .node(name)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("unknown node {name:?}")))?;
        let ns_name = RunRecord::ns_name(&self.record.id, name);
        let ns = ctx(NetNs::create(&ns_name), || format!("node {name}"))?;
        std::fs::create_dir_all(self.record.run_dir.join(name))?;
        for iface in &node.interfaces {
            match &iface.attach {
                Attachment::Switch(sw) => {
                    let port = port_name(name, &iface.name);
                    let s = self
                        .switches
                        .get(sw)
                        .ok_or_else(|| io::Error::other(format!("unknown switch {sw}")))?;
                    let what = || format!("node {name} interface {}", iface.name);
                    ctx(
                        s.ns.nl
                            .add_veth(&port, None, &iface.name, Some(iface.mac), ns.raw_fd()),
                        what,
                    )?;
                    ctx(s.ns.nl.set_master(&port, BRIDGE), what)?;
                    ctx(s.ns.nl.set_up(&port, true), what)?;
                    if let Some(cap) = &s.capture
                        && let Some(idx) = ctx(s.ns.nl.link_index(&port), what)?
                    {
                        cap.bind(idx, &Self::idb_name(sw, name));
                    }
                    configure_iface(&ns, iface)?;
                }
                Attachment::Peer {
                    node: pn,
                    iface: pi,
                } => {
                    let Some(peer_ns) = self.nodes.get(pn).and_then(|p| p.ns.as_ref()) else {
                        // The peer is not up; it creates the link when it boots.
                        continue;
                    };
                    let peer_if = self
                        .topology
                        .node(pn)
                        .and_then(|n| n.interface(pi))
                        .cloned()
                        .ok_or_else(|| io::Error::other(format!("unknown peer {pn}:{pi}")))?;
                    ctx(
                        ns.nl.add_veth(
                            &iface.name,
                            Some(iface.mac),
                            pi,
                            Some(peer_if.mac),
                            peer_ns.raw_fd(),
                        ),
                        || format!("link {name}:{} <-> {pn}:{pi}", iface.name),
                    )?;
                    configure_iface(&ns, iface)?;
                    configure_iface(peer_ns, &peer_if)?;
                }
            }
        }
        if node.forward {
            ns.run(|| {
                netns::sysctl("net.ipv4.ip_forward", "1")?;
                netns::sysctl("net.ipv6.conf.all.forwarding", "1")
            })??;
        }
        for r in &node.routes {
            ctx(
                ns.nl.add_route(r.dst.map(|d| (d.addr, d.prefix)), r.via),
                || format!("node {name}: route {r}"),
            )?;
        }
        self.nodes.insert(
            name.to_owned(),
            NodeState {
                ns: Some(ns),
                procs: Vec::new(),
            },
        );
        // Port filters (mirrors, loss) refer to ports by ifindex, so a re-created port needs
        // them again, on every switch the node is on.
        let switches: Vec<String> = node
            .interfaces
            .iter()
            .filter_map(|i| match &i.attach {
                Attachment::Switch(s) => Some(s.clone()),
                Attachment::Peer { .. } => None,
            })
            .collect();
        for sw in switches {
            if self
                .impairments
                .contains_key(&(sw.clone(), name.to_owned()))
            {
                self.apply_impairment(&sw, name)?;
            }
            self.apply_filters(&sw)?;
        }
        // Ready means carrier: wait until every switch-side link of the node is running, so its
        // processes never start on a link that is still coming up.
        self.wait_running(name, &node)?;
        if start {
            for p in &node.processes {
                if only_restartable && !p.restart {
                    continue;
                }
                self.start_process(&node, &p.name)?;
            }
        }
        Ok(())
    }

    fn wait_running(&self, name: &str, node: &Node) -> io::Result<()> {
        let Some(ns) = self.node_ns(name) else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for iface in &node.interfaces {
            if let Attachment::Peer { node: pn, .. } = &iface.attach
                && !self.powered(pn)
            {
                continue;
            }
            loop {
                let flags = ctx(ns.nl.link_flags(&iface.name), || format!("node {name}"))?;
                if flags.is_some_and(|f| f & libc::IFF_RUNNING as u32 != 0) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "node {name} interface {}: no carrier after 3 s",
                        iface.name
                    )));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    }

    fn start_process(&mut self, node: &Node, pname: &str) -> io::Result<()> {
        let p = node
            .processes
            .iter()
            .find(|p| p.name == pname)
            .ok_or_else(|| {
                io::Error::other(format!("node {} has no process {pname}", node.name))
            })?;
        let env = TemplateEnv {
            topology: &self.topology,
            node: &node.name,
            run: &self.record.id,
            run_dir: &self.record.run_dir,
            harness: &self.harness_bin,
        };
        let argv = p
            .command
            .iter()
            .map(|a| topology::expand(a, &env))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let state = self
            .nodes
            .get_mut(&node.name)
            .ok_or_else(|| io::Error::other("node not booted"))?;
        let ns = state
            .ns
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("node {} is powered off", node.name)))?;
        let spec = SpawnSpec {
            argv,
            netns: std::os::fd::OwnedFd::from(File::open(
                Path::new(netns::NETNS_DIR).join(ns.name()),
            )?),
            log: self
                .record
                .run_dir
                .join(&node.name)
                .join(format!("{pname}.log")),
            env: vec![
                ("HOLDFAST_NODE".into(), node.name.clone()),
                ("HOLDFAST_RUN".into(), self.record.id.clone()),
                (
                    "HOLDFAST_RUN_DIR".into(),
                    self.record.run_dir.display().to_string(),
                ),
            ],
            die_with_parent: true,
        };
        let child = self
            .spawner
            .as_ref()
            .ok_or_else(|| io::Error::other("cluster is down"))?
            .spawn(spec)?;
        state.procs.push((pname.to_owned(), child));
        Ok(())
    }

    /// Re-applies every port filter (loss, then mirrors) on one switch.
    fn apply_all_filters(&self) -> io::Result<()> {
        for sw in self.switches.keys() {
            self.apply_filters(sw)?;
        }
        Ok(())
    }

    fn apply_filters(&self, sw: &str) -> io::Result<()> {
        let Some(s) = self.switches.get(sw) else {
            return Ok(());
        };
        let nl = &s.ns.nl;
        let ports: Vec<(String, String)> = self
            .topology
            .ports()
            .filter(|(x, n, _)| *x == sw && self.powered(&n.name))
            .map(|(_, n, i)| (n.name.clone(), port_name(&n.name, &i.name)))
            .collect();
        let port_of = |node: &str| {
            ports
                .iter()
                .find(|(n, _)| n == node)
                .map(|(_, p)| p.clone())
        };
        let mirrors = self
            .topology
            .switches
            .iter()
            .find(|x| x.name == sw)
            .map(|x| x.mirrors.clone())
            .unwrap_or_default();
        for (node, port) in &ports {
            ctx(nl.del_clsact(port), || format!("switch {sw}"))?;
            let loss = self
                .loss
                .get(&(sw.to_owned(), node.clone()))
                .copied()
                .unwrap_or(0.0);
            let mirror_to: Vec<String> = mirrors
                .iter()
                .filter(|m| &m.from == node)
                .flat_map(|m| m.to.iter().filter_map(|t| port_of(t)))
                .collect();
            // Frames from an impaired node enter the bridge on its delay line's port.
            let blocked_nodes = partition::blocked(&self.partitions, node);
            let blocked: Vec<i32> = blocked_nodes
                .iter()
                .filter_map(|n| port_of(n).map(|p| self.bridge_port(sw, n, &p)))
                .map(|p| nl.link_index(&p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io::Error::other(format!("switch {sw}: {e}")))?
                .into_iter()
                .flatten()
                .collect();
            let bport = self.bridge_port(sw, node, port);
            if bport != *port {
                ctx(nl.del_clsact(&bport), || format!("switch {sw}"))?;
            }
            if loss == 0.0 && mirror_to.is_empty() && blocked.is_empty() {
                continue;
            }
            ctx(nl.add_clsact(port), || format!("switch {sw}"))?;
            if !blocked.is_empty() {
                let macs: Vec<[u8; 6]> = self
                    .topology
                    .ports()
                    .filter(|(x, n, _)| *x == sw && blocked_nodes.contains(&n.name))
                    .map(|(_, _, i)| i.mac)
                    .collect();
                let prog = partition::load(&blocked, &macs)
                    .map_err(|e| io::Error::other(format!("load partition program: {e}")))?;
                // On the way to the node: out of the bridge, on its (delay line's) port.
                if bport != *port {
                    ctx(nl.add_clsact(&bport), || format!("switch {sw}"))?;
                }
                ctx(
                    nl.add_bpf(
                        &bport,
                        Hook::Egress,
                        PRIO_PARTITION,
                        &prog,
                        "holdfast-partition",
                    ),
                    || format!("switch {sw} port {port}"),
                )?;
            }
            if loss > 0.0 {
                let prog = loss::load(loss);
                for hook in [Hook::Ingress, Hook::Egress] {
                    ctx(
                        nl.add_bpf(port, hook, PRIO_LOSS, &prog, "holdfast-loss"),
                        || format!("switch {sw} port {port}"),
                    )?;
                }
            }
            if !mirror_to.is_empty() {
                for hook in [Hook::Ingress, Hook::Egress] {
                    ctx(nl.add_mirror(port, hook, PRIO_MIRROR, &mirror_to), || {
                        format!("switch {sw}: mirror {port} to {}", mirror_to.join(" "))
                    })?;
                }
            }
        }
        Ok(())
    }

    fn powered(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.ns.is_some())
    }

    /// Records a harness event on the capture clock.
    pub fn event(&self, kind: &str, node: Option<&str>, detail: &str) -> Event {
        let e = Event {
            t_ns: crate::now_ns(),
            kind: kind.to_owned(),
            node: node.map(str::to_owned),
            detail: detail.to_owned(),
        };
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(line) = serde_json::to_string(&e) {
            let _ = writeln!(ev.file, "{line}");
            let _ = ev.file.flush();
        }
        ev.all.push(e.clone());
        drop(ev);
        let text = match (&e.node, e.detail.is_empty()) {
            (Some(n), true) => format!("{} {n}", e.kind),
            (Some(n), false) => format!("{} {n} ({})", e.kind, e.detail),
            (None, true) => e.kind.clone(),
            (None, false) => format!("{} ({})", e.kind, e.detail),
        };
        for s in self.switches.values() {
            if let Some(c) = &s.capture {
                c.note(e.t_ns, &text);
            }
        }
        e
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all
            .clone()
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.record.run_dir
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Runs `argv` in the root namespace once the run is torn down (after its processes are
    /// gone): for what an implementation leaves outside the run directory.
    pub fn after_teardown(&mut self, argv: Vec<String>) {
        if !argv.is_empty() {
            self.after_teardown.push(argv);
        }
    }

    /// The run record.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// Sets the control socket in the run record (for `up`).
    pub fn set_control(&mut self, path: PathBuf) -> io::Result<()> {
        self.record.control = Some(path);
        self.record.save()
    }

    /// A node's namespace, if it is powered.
    pub fn node_ns(&self, node: &str) -> Option<&NetNs> {
        self.nodes.get(node).and_then(|n| n.ns.as_ref())
    }

    /// A switch's namespace.
    pub fn switch_ns(&self, switch: &str) -> Option<&NetNs> {
        self.switches.get(switch).map(|s| &s.ns)
    }

    /// The PIDs of a node's started processes that are still running, by process name.
    pub fn pids(&mut self, node: &str) -> Vec<(String, i32)> {
        let Some(n) = self.nodes.get_mut(node) else {
            return Vec::new();
        };
        n.procs
            .iter_mut()
            .filter_map(|(name, c)| {
                matches!(c.try_wait(), Ok(None)).then(|| (name.clone(), c.id() as i32))
            })
            .collect()
    }

    fn node_inode(&self, node: &str) -> io::Result<u64> {
        self.node_ns(node)
            .map(NetNs::inode)
            .ok_or_else(|| io::Error::other(format!("node {node:?} is powered off or unknown")))
    }

    /// Sets a node's switch-side ports (and the far ends of its point-to-point links) up or
    /// down.
    fn set_links(&self, node: &str, up: bool) -> io::Result<()> {
        let n = self
            .topology
            .node(node)
            .ok_or_else(|| io::Error::other(format!("unknown node {node:?}")))?;
        for iface in &n.interfaces {
            match &iface.attach {
                Attachment::Switch(sw) => {
                    if let Some(s) = self.switches.get(sw) {
                        ctx(s.ns.nl.set_up(&port_name(node, &iface.name), up), || {
                            format!("node {node}")
                        })?;
                    }
                }
                Attachment::Peer {
                    node: pn,
                    iface: pi,
                } => {
                    if let Some(pns) = self.node_ns(pn) {
                        ctx(pns.nl.set_up(pi, up), || format!("node {node}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a fault, recording it (and its completion) in the event log.
    pub fn fault(&mut self, fault: &Fault) -> io::Result<()> {
        let node = fault.node().to_owned();
        let node_name = node.split(':').next_back().unwrap_or(&node).to_owned();
        if self.topology.node(&node_name).is_none() {
            return Err(io::Error::other(format!(
                "unknown node {node_name:?}; nodes: {}",
                self.topology
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        if let Fault::Partition { from, to, .. } = fault
            && let Some(n) = from
                .iter()
                .chain(to)
                .find(|n| self.topology.node(n).is_none())
        {
            return Err(io::Error::other(format!("partition: unknown node {n:?}")));
        }
        let kind = fault.kind();
        let detail = match fault {
            Fault::Crash { process, .. } => process.clone(),
            Fault::Loss { pct, .. } => format!("{pct}%"),
            Fault::Partition { from, to, .. } => format!("{} | {}", from.join(","), to.join(",")),
            Fault::Impair { impairment, .. } => format!("{impairment:?}"),
            _ => String::new(),
        };
        self.event(kind, Some(&node_name), &detail);
        match fault {
            Fault::PowerOff { .. } => self.power_off(&node)?,
            Fault::PowerOn { .. } => {
                if self.powered(&node) {
                    return Err(io::Error::other(format!(
                        "node {node} is already powered on"
                    )));
                }
                self.boot(&node, true, true)?;
            }
            Fault::Isolate { .. } => {
                self.node_inode(&node)?;
                self.set_links(&node, false)?;
            }
            Fault::Heal { .. } => {
                self.node_inode(&node)?;
                self.set_links(&node, true)?;
            }
            Fault::Freeze { .. } => {
                netns::signal_all(&[self.node_inode(&node)?], libc::SIGSTOP);
            }
            Fault::Thaw { .. } => {
                netns::signal_all(&[self.node_inode(&node)?], libc::SIGCONT);
            }
            Fault::Crash { process, .. } => self.crash(&node, process)?,
            Fault::Loss { pct, .. } => self.set_loss(&node, *pct)?,
            Fault::Partition {
                from, to, one_way, ..
            } => {
                self.partitions.push(Partition {
                    from: from.clone(),
                    to: to.clone(),
                    one_way: *one_way,
                });
                self.apply_all_filters()?;
            }
            Fault::HealPartition { .. } => {
                self.partitions.clear();
                self.apply_all_filters()?;
            }
            Fault::Impair { impairment, .. } => self.set_impairment(&node, *impairment)?,
        }
        self.event(&format!("{kind}:done"), Some(&node_name), "");
        Ok(())
    }

    fn power_off(&mut self, node: &str) -> io::Result<()> {
        let inode = self.node_inode(node)?;
        // 1. The plug: no frame leaves the node after this (its delay lines stop too).
        self.set_links(node, false)?;
        self.stop_lines(node);
        self.event("power-off:links-down", Some(node), "");
        // 2. Every process in the namespace, ours or not.
        netns::kill_all(&[inode], Duration::from_secs(5))?;
        let state = self.nodes.get_mut(node).expect("powered node has state");
        for (_, c) in &mut state.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        state.procs.clear();
        // 3. The namespace and all its kernel state. Deleting the switch-side ports first cuts
        //    the veths at once, even if orphaned sockets keep the namespace alive a little.
        let ns = state.ns.take().expect("checked powered");
        let n = self.topology.node(node).cloned().expect("known node");
        for iface in &n.interfaces {
            if let Attachment::Switch(sw) = &iface.attach
                && let Some(s) = self.switches.get(sw)
            {
                let port = port_name(node, &iface.name);
                if ctx(s.ns.nl.link_index(&port), || format!("node {node}"))?.is_some() {
                    ctx(s.ns.nl.del_link(&port), || format!("node {node}"))?;
                }
            }
        }
        let name = ns.name().to_owned();
        drop(ns);
        netns::remove(&name)?;
        Ok(())
    }

    fn crash(&mut self, node: &str, process: &str) -> io::Result<()> {
        let state = self
            .nodes
            .get_mut(node)
            .filter(|s| s.ns.is_some())
            .ok_or_else(|| io::Error::other(format!("node {node:?} is powered off")))?;
        let mut found = false;
        for (name, c) in &mut state.procs {
            if name == process && matches!(c.try_wait(), Ok(None)) {
                // The process leads its own session and group: kill the group.
                // SAFETY: kill(2) on a process group we created.
                unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
                let _ = c.wait();
                found = true;
            }
        }
        if found {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "node {node} has no running process {process:?}"
            )))
        }
    }

    /// The node and the switches of its ports that `target` (`node` or `switch:node`) names.
    fn ports_of(&self, target: &str) -> io::Result<(String, Vec<String>)> {
        let (sw, node) = match target.split_once(':') {
            Some((s, n)) => (Some(s), n),
            None => (None, target),
        };
        let n = self
            .topology
            .node(node)
            .ok_or_else(|| io::Error::other(format!("unknown node {node:?}")))?;
        let switches: Vec<String> = n
            .interfaces
            .iter()
            .filter_map(|i| match &i.attach {
                Attachment::Switch(s) if sw.is_none_or(|x| x == s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if switches.is_empty() {
            return Err(io::Error::other(format!("{target}: no such switch port")));
        }
        Ok((node.to_owned(), switches))
    }

    fn set_loss(&mut self, target: &str, pct: f64) -> io::Result<()> {
        let (node, switches) = self.ports_of(target)?;
        for s in switches {
            self.loss.insert((s.clone(), node.clone()), pct);
            self.apply_filters(&s)?;
        }
        Ok(())
    }

    /// Starts a client workload on a thread inside `node`'s namespace.
    pub fn start_client(&self, node: &str, spec: ClientSpec) -> io::Result<ClientHandle> {
        let ns = self
            .node_ns(node)
            .ok_or_else(|| io::Error::other(format!("node {node:?} is powered off or unknown")))?;
        let fd =
            std::os::fd::OwnedFd::from(File::open(Path::new(netns::NETNS_DIR).join(ns.name()))?);
        self.event(
            "client-start",
            Some(node),
            &format!("{:?} to {}", spec.workload, spec.target),
        );
        let thread = std::thread::Builder::new()
            .name(format!("client-{node}"))
            .spawn(move || {
                use std::os::fd::AsRawFd;
                netns::enter(fd.as_raw_fd())?;
                drop(fd);
                crate::client::run_blocking(spec)
            })?;
        Ok(ClientHandle { thread })
    }

    /// Runs `f` on a thread inside `node`'s namespace (for tests and one-off probes).
    pub fn in_node<T: Send>(&self, node: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        self.node_ns(node)
            .ok_or_else(|| io::Error::other(format!("node {node:?} is powered off or unknown")))?
            .run(f)
    }

    /// Tears the run down and returns what it left on disk.
    pub fn down(mut self) -> io::Result<RunSummary> {
        self.teardown()
    }

    fn teardown(&mut self) -> io::Result<RunSummary> {
        self.down = true;
        // Delay lines hold sockets in the switch namespaces: gone before the namespaces.
        self.lines.clear();
        self.event("down", None, "");
        let inodes: Vec<u64> = self
            .nodes
            .values()
            .filter_map(|n| n.ns.as_ref().map(NetNs::inode))
            .chain(self.switches.values().map(|s| s.ns.inode()))
            .collect();
        let mut first_err = netns::kill_all(&inodes, Duration::from_secs(5)).err();
        for n in self.nodes.values_mut() {
            for (_, c) in &mut n.procs {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.spawner.take();
        let mut captures = Vec::new();
        for s in self.switches.values_mut() {
            if let Some(c) = s.capture.take() {
                match c.stop() {
                    Ok(st) => captures.push(st),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        self.nodes.clear();
        self.switches.clear();
        if let Err(e) = registry::teardown(&self.record) {
            first_err.get_or_insert(e);
        }
        registry::unregister_live(&self.record.id);
        for cmd in std::mem::take(&mut self.after_teardown) {
            match std::process::Command::new(&cmd[0]).args(&cmd[1..]).status() {
                Ok(s) if s.success() => {}
                Ok(s) => eprintln!("holdfast-harness: cleanup {cmd:?}: {s}"),
                Err(e) => eprintln!("holdfast-harness: cleanup {cmd:?}: {e}"),
            }
        }
        let summary = RunSummary {
            id: self.record.id.clone(),
            run_dir: self.record.run_dir.clone(),
            captures,
            events: self.events(),
        };
        if let Ok(f) = File::create(self.record.run_dir.join("run.json")) {
            let _ = serde_json::to_writer_pretty(f, &summary);
        }
        first_err.map_or(Ok(summary), Err)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.down
            && let Err(e) = self.teardown()
        {
            eprintln!("holdfast-harness: teardown of run {}: {e}", self.record.id);
        }
    }
}

/// Brings an interface up with its addresses, enabling IPv6 on it only if it has an IPv6
/// address.
fn configure_iface(ns: &NetNs, iface: &topology::Interface) -> io::Result<()> {
    let what = || format!("{} interface {}", ns.name(), iface.name);
    if iface.has_ipv6() {
        let name = iface.name.clone();
        ns.run(move || netns::sysctl(&format!("net.ipv6.conf.{name}.disable_ipv6"), "0"))??;
    }
    for a in &iface.addresses {
        ctx(ns.nl.add_addr(&iface.name, a.addr, a.prefix), what)?;
    }
    ctx(ns.nl.set_up(&iface.name, true), what)
}
