//! Shared helpers for the harness's privileged tests: skipping, run directories, and reading
//! captures back with `pcap-file` and `etherparse` (independent of the harness's own writer).
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use holdfast_harness::{Cluster, Options, Topology};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn harness_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_holdfast-harness"))
}

/// `pcaps/out/harness-tests/TEST`, or `$HOLDFAST_TEST_OUT/TEST` (for a user who cannot write
/// the checkout, as in the test that runs as nobody).
pub fn run_dir(test: &str) -> PathBuf {
    let base = std::env::var_os("HOLDFAST_TEST_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("pcaps/out/harness-tests"));
    let d = base.join(test);
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn options(test: &str) -> Options {
    Options {
        run_dir: Some(run_dir(test)),
        harness_bin: Some(harness_bin()),
        ..Options::default()
    }
}

pub fn topology(name: &str, text: &str) -> Topology {
    Topology::parse(Path::new(name), text).unwrap_or_else(|e| panic!("{e}"))
}

/// The harness tests' own two-node topology (harness services, no daemon).
pub fn basic() -> Topology {
    Topology::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/topologies/basic.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub fn shipped(name: &str) -> Topology {
    Topology::load(root().join("topologies").join(name)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn up(test: &str, topo: Topology) -> Cluster {
    Cluster::up(topo, options(test)).unwrap_or_else(|e| panic!("up: {e}"))
}

/// One captured frame: the harness's own type, read back with `pcap-file`.
pub use holdfast_harness::capture::Frame;

/// What these tests read out of a captured frame.
pub trait FrameExt {
    /// The Ethernet frame.
    fn bytes(&self) -> &[u8];

    fn src_mac(&self) -> [u8; 6] {
        self.bytes()[6..12].try_into().unwrap()
    }

    /// (src, dst, flags) of a TCP segment over IPv4/IPv6.
    fn tcp(&self) -> Option<TcpSeg> {
        let p = etherparse::SlicedPacket::from_ethernet(self.bytes()).ok()?;
        let (src, dst) = match p.net? {
            etherparse::NetSlice::Ipv4(ip) => (
                std::net::IpAddr::from(ip.header().source_addr()),
                std::net::IpAddr::from(ip.header().destination_addr()),
            ),
            etherparse::NetSlice::Ipv6(ip) => (
                std::net::IpAddr::from(ip.header().source_addr()),
                std::net::IpAddr::from(ip.header().destination_addr()),
            ),
            _ => return None,
        };
        match p.transport? {
            etherparse::TransportSlice::Tcp(t) => Some(TcpSeg {
                src: (src, t.source_port()).into(),
                dst: (dst, t.destination_port()).into(),
                syn: t.syn(),
                ack: t.ack(),
                rst: t.rst(),
                fin: t.fin(),
                payload: t.payload().len(),
            }),
            _ => None,
        }
    }

    fn is_udp_to_port(&self, port: u16) -> bool {
        matches!(
            etherparse::SlicedPacket::from_ethernet(self.bytes()).ok().and_then(|p| p.transport),
            Some(etherparse::TransportSlice::Udp(u)) if u.destination_port() == port
        )
    }
}

impl FrameExt for Frame {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TcpSeg {
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    pub syn: bool,
    pub ack: bool,
    pub rst: bool,
    pub fin: bool,
    pub payload: usize,
}

/// Reads a pcapng file: every frame with its interface name.
pub fn read_pcap(path: &Path) -> Vec<Frame> {
    // The harness's reader (pcap-file underneath), not our writer.
    holdfast_harness::capture::read(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The time of the first event of a kind (and node).
pub fn event_ts(events: &[holdfast_harness::cluster::Event], kind: &str, node: &str) -> u64 {
    events
        .iter()
        .find(|e| e.kind == kind && e.node.as_deref() == Some(node))
        .unwrap_or_else(|| panic!("no event {kind} {node}: {events:?}"))
        .t_ns
}
