//! Helpers for holdfastd's tests on the harness: clusters with the daemon, and reading its
//! control messages, ARP and neighbour advertisements back out of the pcaps.
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use holdfast_harness::cluster::Event;
use holdfast_harness::{Cluster, Fault, Options, Topology};
use holdfast_proto::wire::{Message, Packet};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory holding `holdfastd` (and, in a workspace build, `holdfast-harness`).
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfastd"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn run_dir(test: &str) -> PathBuf {
    let d = root().join("pcaps/out/holdfastd-tests").join(test);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn options(dir: &Path) -> Options {
    Options {
        run_dir: Some(dir.join("run")),
        harness_bin: Some(bin_dir().join("holdfast-harness")),
        ..Options::default()
    }
}

/// An implementation's adapter (`adapters/NAME`).
pub fn adapter(name: &str) -> holdfast_harness::adapter::Adapter {
    holdfast_harness::adapter::Adapter::load(root().join("adapters").join(name))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The shipped two-node topology (run with holdfastd by [`up`]).
pub fn two_node() -> Topology {
    shipped("two-node.toml")
}

/// A shipped topology by file name (run with holdfastd by [`up`]).
pub fn shipped(name: &str) -> Topology {
    Topology::load(root().join("topologies").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// The Python client's arguments for a 20 MB echo stream to 198.18.0.10:7, 64 kB every 3 ms,
/// given 30 s, failing after 5 s without progress, printing its progress.
pub const PY_STREAM_20MB: &[&str] = &[
    "stream",
    "--target",
    "198.18.0.10:7",
    "--bytes",
    "20000000",
    "--pace-us",
    "3000",
    "--deadline",
    "30",
    "--timeout",
    "5",
    "--progress",
];

/// A topology and a holdfastd cluster configuration written into `dir` (so that
/// `{topology_dir}/cluster.toml` names the configuration).
pub fn custom(dir: &Path, topology: &str, cluster: &str) -> Topology {
    std::fs::write(dir.join("cluster.toml"), cluster).unwrap();
    let p = dir.join("topology.toml");
    std::fs::write(&p, topology).unwrap();
    Topology::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// Brings a topology up; a shipped topology's `[cluster]` runs holdfastd (its adapter), a
/// test's own topology runs the processes it lists.
pub fn up(dir: &Path, topo: Topology) -> Cluster {
    up_with(dir, topo, true)
}

/// The same, capturing the switch ports or not (a long benchmark's stream would write
/// gigabytes of pcap, and the writing would load the machine it measures).
pub fn up_with(dir: &Path, topo: Topology, capture: bool) -> Cluster {
    let me = std::thread::current().id();
    assert!(
        *SERIAL_HOLDER.lock().unwrap_or_else(|e| e.into_inner()) == Some(me),
        "take `let _serial = serial();` before bringing a cluster up: cluster tests run one at a time"
    );
    RUNS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((std::thread::current().id(), dir.to_owned()));
    let opts = Options {
        adapter: topo.cluster.is_some().then(|| adapter("holdfastd")),
        capture,
        ..options(dir)
    };
    Cluster::up(topo, opts).unwrap_or_else(|e| panic!("up: {e}"))
}

/// The run directories of clusters brought up by [`up`], by test thread: when the test's
/// [`Serial`] guard goes without a panic (the test passed), their captures are shrunk
/// (`holdfast_harness::shrink`); a failing test keeps them whole.
static RUNS: std::sync::Mutex<Vec<(std::thread::ThreadId, PathBuf)>> =
    std::sync::Mutex::new(Vec::new());

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// holdfastd's status for a node, from its socket.
pub fn status(c: &Cluster, node: &str) -> Option<serde_json::Value> {
    use std::io::Read;
    let p = c.run_dir().join(node).join("holdfastd.sock");
    let mut s = std::os::unix::net::UnixStream::connect(p).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    serde_json::from_str(&out).ok()
}

/// Puts `rtt_ms` of round trip on the client's link: a delay line in the switch, half each
/// way (`fault impair client delay=...`). Zero changes nothing.
pub fn client_rtt(c: &mut Cluster, rtt_ms: u64) -> std::io::Result<()> {
    if rtt_ms == 0 {
        return Ok(());
    }
    let impairment =
        holdfast_harness::impair::Impairment::parse(&format!("delay={}us", rtt_ms * 500))
            .map_err(std::io::Error::other)?;
    c.fault(&Fault::Impair {
        node: "client".into(),
        impairment,
    })
}

/// Waits until every listed node's daemon is eligible and holds its own group.
pub fn wait_ready(c: &Cluster, nodes: &[&str]) {
    for n in nodes {
        wait_until(&format!("{n} ready"), Duration::from_secs(10), || {
            status(c, n).is_some_and(|s| {
                s["eligible"] == true
                    && s["groups"].as_array().is_some_and(|g| {
                        g.iter()
                            .any(|x| x["owner"] == s["id"] && x["held_here"] == true)
                    })
            })
        });
    }
}

/// One captured frame: the harness's own type, read back with `pcap-file`.
pub use holdfast_harness::capture::Frame;

pub fn read_pcap(path: &Path) -> Vec<Frame> {
    // The harness's reader (pcap-file underneath), not our writer.
    holdfast_harness::capture::read(path).unwrap_or_else(|e| panic!("{e}"))
}

/// What these tests read out of a captured frame.
pub trait FrameExt {
    /// The Ethernet frame.
    fn bytes(&self) -> &[u8];

    /// A control-protocol message in this frame (UDP port 5405), decoded with holdfast-proto.
    fn control(&self) -> Option<Message> {
        let p = etherparse::SlicedPacket::from_ethernet(self.bytes()).ok()?;
        match p.transport? {
            etherparse::TransportSlice::Udp(u) if u.destination_port() == 5405 => {
                let pk = Packet::new_checked(u.payload()).ok()?;
                Message::parse(&pk).ok()
            }
            _ => None,
        }
    }

    /// (sender MAC, sender IP, is announcement) of an ARP packet.
    fn arp(&self) -> Option<([u8; 6], IpAddr, bool, bool)> {
        let p = etherparse::SlicedPacket::from_ethernet(self.bytes()).ok()?;
        let Some(etherparse::NetSlice::Arp(a)) = p.net else {
            return None;
        };
        let spa: [u8; 4] = a.sender_protocol_addr().try_into().ok()?;
        let mac: [u8; 6] = a.sender_hw_addr().try_into().ok()?;
        let announce = a.sender_protocol_addr() == a.target_protocol_addr();
        let reply = a.operation() == etherparse::ArpOperation::REPLY;
        Some((mac, IpAddr::from(spa), announce, reply))
    }

    /// The target of an unsolicited neighbour advertisement.
    fn unsolicited_na(&self) -> Option<IpAddr> {
        let p = etherparse::SlicedPacket::from_ethernet(self.bytes()).ok()?;
        let Some(etherparse::TransportSlice::Icmpv6(i)) = p.transport else {
            return None;
        };
        // etherparse's header is the first 8 bytes (type, code, checksum, flags): the payload
        // starts with the target address.
        let pl = i.payload();
        if i.icmp_type().type_u8() != 136 || pl.len() < 16 {
            return None;
        }
        let target: [u8; 16] = pl[0..16].try_into().ok()?;
        Some(IpAddr::from(target))
    }

    fn tcp_from(&self, src: SocketAddr) -> bool {
        let Ok(p) = etherparse::SlicedPacket::from_ethernet(self.bytes()) else {
            return false;
        };
        let ip = match p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => IpAddr::from(ip.header().source_addr()),
            Some(etherparse::NetSlice::Ipv6(ip)) => IpAddr::from(ip.header().source_addr()),
            _ => return false,
        };
        matches!(p.transport, Some(etherparse::TransportSlice::Tcp(t)) if ip == src.ip() && t.source_port() == src.port())
    }
}

impl FrameExt for Frame {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
}

pub fn event_ts(events: &[Event], kind: &str, node: &str) -> u64 {
    events
        .iter()
        .find(|e| e.kind == kind && e.node.as_deref() == Some(node))
        .unwrap_or_else(|| panic!("no event {kind} {node}"))
        .t_ns
}

pub fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The two-node topology (a mirrored to b) with holdfastd serving `application` on `port`.
pub fn takeover_cluster(dir: &Path, application: &str, port: u16) -> Topology {
    takeover_cluster_on(dir, application, port, false)
}

/// The same, on a hub (every node sees all traffic, so each backs the other up) when `hub`.
pub fn takeover_cluster_on(dir: &Path, application: &str, port: u16, hub: bool) -> Topology {
    takeover_cluster_with(dir, application, port, hub, "none")
}

/// The same, with the given failback mode.
pub fn takeover_cluster_with(
    dir: &Path,
    application: &str,
    port: u16,
    hub: bool,
    failback: &str,
) -> Topology {
    let switch = if hub { Switch::Hub } else { Switch::Mirror };
    takeover_cluster_full(dir, application, port, switch, failback)
}

/// How b gets to see a's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// a's port mirrored to b's (`snoop = "mirror"`).
    Mirror,
    /// Every port sees everything (`snoop = "mirror"`).
    Hub,
    /// A plain switch, no mirror: a copies its service frames to b (`snoop = "forward"`).
    Forward,
}

/// The two-node cluster with every choice spelled out (10 ms heartbeats).
pub fn takeover_cluster_full(
    dir: &Path,
    application: &str,
    port: u16,
    switch: Switch,
    failback: &str,
) -> Topology {
    takeover_cluster_heartbeat(dir, application, port, switch, failback, 10)
}

/// The same, with `heartbeat_ms` heartbeats (miss count 3; the boot wait is ten intervals).
pub fn takeover_cluster_heartbeat(
    dir: &Path,
    application: &str,
    port: u16,
    switch: Switch,
    failback: &str,
    heartbeat_ms: u32,
) -> Topology {
    let snoop = if switch == Switch::Forward {
        "forward"
    } else {
        "mirror"
    };
    let cluster = format!(
        r#"cluster_id = 5
key = "takeover test key"
group = "239.255.72.70:5405"
interface = "eth0"
[defaults]
heartbeat_ms = {heartbeat_ms}
miss_count = 3
failback = "{failback}"
snoop = "{snoop}"
application = "{application}"
ports = [{port}, {port}]
[[node]]
name = "a"
id = 1
backups = ["b"]
addresses = ["198.18.0.10/24"]
[[node]]
name = "b"
id = 2
backups = ["a"]
addresses = ["198.18.0.20/24"]
"#
    );
    let switch = match switch {
        Switch::Hub => "hub = true",
        Switch::Mirror => r#"mirror = [{ from = "a", to = ["b"] }]"#,
        Switch::Forward => "",
    };
    let topology = r#"
[[switch]]
name = "sw0"
SWITCH
[[node]]
name = "a"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24"] }]
process = [{ name = "holdfastd", command = "{bin_dir}/holdfastd --config {topology_dir}/cluster.toml --node {node} --run-dir {node_dir}" }]
[[node]]
name = "b"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.2/24"] }]
process = [{ name = "holdfastd", command = "{bin_dir}/holdfastd --config {topology_dir}/cluster.toml --node {node} --run-dir {node_dir}" }]
[[node]]
name = "client"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.100/24"] }]
"#
    .replace("SWITCH", switch);
    custom(dir, &topology, &cluster)
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs heavy cluster tests one at a time: on a 2-core machine, several 10 MB streams through
/// several clusters at once starve the daemons' timers and make timing-sensitive takeovers
/// flaky for reasons that have nothing to do with the code under test.
pub fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    *SERIAL_HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
    Serial(guard)
}

/// The test thread that holds [`SERIAL`]: [`up`] refuses any other, so a test that forgot
/// [`serial`] fails at once instead of running beside another cluster.
static SERIAL_HOLDER: std::sync::Mutex<Option<std::thread::ThreadId>> = std::sync::Mutex::new(None);

/// Held for a cluster test's whole run ([`serial`]); when it goes, the test is over.
pub struct Serial(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Drop for Serial {
    fn drop(&mut self) {
        let me = std::thread::current().id();
        *SERIAL_HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mine: Vec<PathBuf> = {
            let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
            let (mine, rest) = runs.drain(..).partition(|(t, _)| *t == me);
            *runs = rest;
            mine.into_iter().map(|(_, d)| d).collect()
        };
        if std::thread::panicking() {
            return;
        }
        for d in mine {
            let _ = holdfast_harness::shrink::shrink_dir(&d);
        }
    }
}

/// Whether `node` holds `owner`'s group now (its status says so).
pub fn holds_group(c: &Cluster, node: &str, owner: u32) -> bool {
    status(c, node).is_some_and(|s| {
        s["groups"].as_array().is_some_and(|g| {
            g.iter()
                .any(|x| x["owner"] == owner && x["held_here"] == true)
        })
    })
}

/// Which of `nodes` holds `owner`'s group now, if any.
pub fn holder_of(c: &Cluster, nodes: &[&'static str], owner: u32) -> Option<&'static str> {
    nodes.iter().copied().find(|n| holds_group(c, n, owner))
}

/// A network namespace of the test's own, removed however the test ends.
pub struct ScratchNs {
    /// The namespace.
    pub ns: holdfast_harness::netns::NetNs,
    name: String,
}

impl ScratchNs {
    /// Creates `hf-PREFIX-PID`.
    pub fn new(prefix: &str) -> Self {
        let name = format!("hf-{prefix}-{}", std::process::id());
        let ns = holdfast_harness::netns::NetNs::create(&name).expect("create namespace");
        Self { ns, name }
    }
}

impl Drop for ScratchNs {
    fn drop(&mut self) {
        let _ = holdfast_harness::netns::remove(&self.name);
    }
}

/// Whether `node` has the IPv4 address `ip` configured on any interface (whatever
/// implementation put it there).
pub fn has_address(c: &Cluster, node: &str, ip: std::net::Ipv4Addr) -> bool {
    c.in_node(node, move || {
        let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs/freeifaddrs pair; we only read the list in between.
        unsafe {
            if libc::getifaddrs(&mut ifa) != 0 {
                return false;
            }
            let mut found = false;
            let mut p = ifa;
            while !p.is_null() {
                let a = (*p).ifa_addr;
                if !a.is_null() && (*a).sa_family as i32 == libc::AF_INET {
                    let sin = &*(a as *const libc::sockaddr_in);
                    if u32::from_be(sin.sin_addr.s_addr) == u32::from(ip) {
                        found = true;
                    }
                }
                p = (*p).ifa_next;
            }
            libc::freeifaddrs(ifa);
            found
        }
    })
    .unwrap_or(false)
}

/// The Python test client (`harness/clients/tcpclient.py`): Python's own sockets, a TCP client
/// this project did not write.
pub fn tcpclient() -> PathBuf {
    root().join("harness/clients/tcpclient.py")
}

/// Whether `python3` runs here; if not, the test says it skipped.
pub fn have_python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 is not installed (the real-client tests run Python's sockets)");
    }
    ok
}

/// Starts the Python client with `args` in `node`'s namespace, its JSON report going to
/// `json`; [`py_wait`] collects it.
/// Owned strings, for a client's arguments.
pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub fn py_start(c: &Cluster, node: &str, args: &[String], json: &Path) -> std::process::Child {
    let (script, json) = (tcpclient(), json.to_owned());
    let args = args.to_vec();
    c.in_node(node, move || {
        std::process::Command::new("python3")
            .arg(script)
            .args(&args)
            .arg("--json")
            .arg(json)
            .stdout(std::process::Stdio::piped())
            .spawn()
    })
    .expect("enter the client's namespace")
    .expect("start python3")
}

/// Waits until the Python client (run with `--progress`) prints a progress line for which
/// `enough` holds (`progress N` for a stream, `progress closed` for kv-quit), or it ends. Its
/// output goes on being read (and dropped) on a thread, so the client never blocks on it.
pub fn py_progress(
    child: &mut std::process::Child,
    enough: impl Fn(&str) -> bool + Send + 'static,
) {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut told = false;
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if !told && l.strip_prefix("progress ").is_some_and(&enough) {
                told = true;
                let _ = tx.send(());
            }
        }
    });
    let _ = rx.recv();
}

/// Waits for the Python client and reads its report.
pub fn py_wait(mut child: std::process::Child, json: &Path) -> serde_json::Value {
    let st = child.wait().expect("wait for python3");
    let text = std::fs::read_to_string(json)
        .unwrap_or_else(|e| panic!("no report from the client ({st}): {e}"));
    serde_json::from_str(&text).expect("the client's JSON report")
}

/// Sets a sysctl in `node`'s namespace (`net.ipv4.tcp_ecn`, ...).
pub fn node_sysctl(c: &Cluster, node: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let value = value.to_owned();
    c.in_node(node, move || std::fs::write(&path, value))
        .expect("enter the namespace")
        .unwrap_or_else(|e| panic!("sysctl {key}: {e}"));
}

/// Starts watching, from `node`'s namespace, for an ARP announcement of `ip` from `mac`; the
/// moment one arrives (within `timeout` of the call) `then` runs, on the watching thread, and
/// the receiver gets `()`. The socket is open when this returns, so nothing sent afterwards is
/// missed.
pub fn watch_announcement(
    c: &Cluster,
    node: &str,
    ip: std::net::Ipv4Addr,
    mac: [u8; 6],
    timeout: Duration,
    then: impl FnOnce() + Send + 'static,
) -> std::sync::mpsc::Receiver<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let fd = c
        .in_node(node, || {
            let proto = (libc::ETH_P_ARP as u16).to_be() as libc::c_int;
            // SAFETY: socket(2), checked.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
            assert!(raw >= 0, "AF_PACKET: {}", std::io::Error::last_os_error());
            // SAFETY: a fresh descriptor.
            unsafe { OwnedFd::from_raw_fd(raw) }
        })
        .expect("enter the namespace");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll one descriptor we own.
            if unsafe { libc::poll(&mut pfd, 1, 10) } <= 0 {
                continue;
            }
            // SAFETY: recv into a live buffer.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            // ARP over Ethernet: sender MAC at 22..28, sender IP at 28..32, target IP 38..42.
            if n >= 42
                && buf[22..28] == mac
                && buf[28..32] == ip.octets()
                && buf[38..42] == ip.octets()
            {
                then();
                let _ = tx.send(());
                return;
            }
        }
    });
    rx
}

/// The Python client's progress (run with `--progress`), as bytes received, on a channel fed by
/// a thread that reads (and drops) everything it prints.
pub fn py_progress_stream(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<u64> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if let Some(n) = l.strip_prefix("progress ").and_then(|p| p.parse().ok()) {
                let _ = tx.send(n);
            }
        }
    });
    rx
}

/// Powers `node` on and waits until it is eligible to assume again.
pub fn power_on_until_eligible(c: &mut Cluster, node: &str) {
    c.fault(&Fault::PowerOn { node: node.into() }).unwrap();
    wait_until(
        "the restored node is eligible",
        Duration::from_secs(10),
        || status(c, node).is_some_and(|s| s["eligible"] == true),
    );
}

/// (p50, p99, max) of `v` (NaN each when empty).
pub fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// `cycles` power-off cycles on the two-node cluster: each opens a 2 MB echo stream to
/// 198.18.0.10:7 paced at 16 MB/s, powers off whichever of a and b holds group 1 60 ms in, and
/// powers it on again once the stream ended. Returns the client's longest stall of each intact
/// cycle, and how many broke.
pub fn power_off_stalls(c: &mut Cluster, cycles: usize) -> (Vec<f64>, usize) {
    use holdfast_harness::client::{ClientSpec, Workload};
    let mut stall = Vec::new();
    let mut broken = 0;
    for _ in 0..cycles {
        let Some(victim) = holder_of(c, &["a", "b"], 1) else {
            break;
        };
        let mut spec = ClientSpec::new(Workload::Stream, "198.18.0.10:7".parse().unwrap());
        spec.bytes = 2_000_000;
        spec.pace_us = 1000;
        spec.stall_timeout_ms = 5000;
        let h = c.start_client("client", spec).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        c.fault(&Fault::PowerOff {
            node: victim.into(),
        })
        .unwrap();
        let rep = h.wait().unwrap();
        if rep.intact() {
            stall.push(rep.max_stall_ms());
        } else {
            broken += 1;
        }
        c.fault(&Fault::PowerOn {
            node: victim.into(),
        })
        .unwrap();
        wait_until("eligible", Duration::from_secs(10), || {
            status(c, victim).is_some_and(|s| s["eligible"] == true)
        });
        std::thread::sleep(Duration::from_millis(30));
    }
    (stall, broken)
}
