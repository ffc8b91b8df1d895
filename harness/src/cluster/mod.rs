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

mod boot;
mod faults;
mod filters;
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
