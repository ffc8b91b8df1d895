//! The topology model: what a TOML topology file says, checked.
//!
//! Read [`Topology::load`] first. A file is parsed into a *raw* model that keeps the byte span of
//! every field, then validated into the plain [`Topology`] that the builder uses. Every problem is
//! reported as `FILE:LINE: field: what is wrong`, and all problems are reported at once.
//!
//! The format is documented for users in `topologies/README.md`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

mod template;
mod validate;

pub use holdfast_tomlcheck::Problem;
pub use template::{TemplateEnv, expand};
use validate::{Cx, RawTopology, validate};

/// Every problem found in one topology file.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The path that was read.
        file: PathBuf,
        /// The underlying error.
        source: std::sync::Arc<std::io::Error>,
    },
    /// The file was read but is not a valid topology.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl TopologyError {
    /// The problems, empty for an IO error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Io { .. } => &[],
            Self::Invalid(p) => p,
        }
    }
}

/// A validated topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The topology's name (defaults to the file stem).
    pub name: String,
    /// The directory of the topology file (for `{topology_dir}`).
    pub dir: PathBuf,
    /// The failover cluster the topology describes (`[cluster]`), for adapters to render.
    pub cluster: Option<crate::spec::ClusterSpec>,
    /// Switches: bridges, each in a namespace of its own.
    pub switches: Vec<Switch>,
    /// Nodes: each is a network namespace.
    pub nodes: Vec<Node>,
}

/// A switch: a Linux bridge in a namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// Unique name.
    pub name: String,
    /// Flood every frame to every port, like a hub (the bridge learns no addresses): every node
    /// sees all traffic, so every node can snoop every other.
    pub hub: bool,
    /// Port mirrors (SPAN sessions) on this switch.
    pub mirrors: Vec<Mirror>,
}

/// A SPAN session: both directions of `from`'s port are copied to the ports of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// The node whose port is mirrored.
    pub from: String,
    /// The nodes whose ports receive the copies.
    pub to: Vec<String>,
}

/// A node: a network namespace with interfaces and processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique name.
    pub name: String,
    /// Interfaces, in file order.
    pub interfaces: Vec<Interface>,
    /// Processes started at boot, in file order.
    pub processes: Vec<Process>,
    /// Routes, added once the interfaces are up.
    pub routes: Vec<crate::route::Route>,
    /// Forwards between its interfaces (a router).
    pub forward: bool,
}

/// What the other end of an interface's veth is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// A port on the named switch.
    Switch(String),
    /// An interface of another node (a point-to-point link).
    Peer {
        /// The other node.
        node: String,
        /// Its interface.
        iface: String,
    },
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A node interface: one end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Interface name inside the node.
    pub name: String,
    /// The other end.
    pub attach: Attachment,
    /// The MAC address (explicit, or derived deterministically from the node and interface index).
    pub mac: [u8; 6],
    /// Addresses, IPv4 and IPv6.
    pub addresses: Vec<IfAddr>,
    /// The impairment of its switch port from the start (`crate::impair::Impairment::parse`
    /// accepted it), such as `delay=5ms rate=100mbit`.
    pub impair: Option<String>,
}

impl Interface {
    /// Whether the interface has an IPv6 address (otherwise IPv6 stays disabled on it).
    pub fn has_ipv6(&self) -> bool {
        self.addresses.iter().any(|a| a.addr.is_ipv6())
    }
}

/// A process template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Unique name within the node; names its log files.
    pub name: String,
    /// The argument vector, with `{placeholders}` still in it.
    pub command: Vec<String>,
    /// Whether the process is started again when the node is powered on after a power-off.
    pub restart: bool,
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Whether an address lies in the ranges Holdfast may use: 198.18.0.0/15 or 2001:db8::/32.
pub fn address_allowed(addr: &IfAddr) -> bool {
    match addr.addr {
        // RFC 2544: 198.18.0.0/15 is reserved for benchmarking.
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18 && addr.prefix >= 15 && addr.prefix <= 32
        }
        // RFC 3849: 2001:db8::/32 is reserved for documentation.
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8 && addr.prefix >= 32 && addr.prefix <= 128
        }
    }
}

/// The name of a node's port on a switch, as seen inside the switch namespace.
pub fn port_name(node: &str, iface: &str) -> String {
    format!("{node}-{iface}")
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError::Io {
            file: path.to_owned(),
            source: std::sync::Arc::new(e),
        })?;
        Self::parse(path, &text)
    }

    /// Validates topology text; `path` is used in error messages and for the default name.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TopologyError> {
        let mut cx = Cx::new(path, text);
        let raw: RawTopology = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                cx.serde_error(&e);
                return Err(TopologyError::Invalid(cx.problems));
            }
        };
        let default_name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "topology".into());
        let dir = path
            .parent()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                }
            })
            .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_owned()))
            .unwrap_or_else(|| PathBuf::from("."));
        let mut topo = validate(&mut cx, raw, default_name);
        topo.dir = dir;
        if cx.problems.is_empty() {
            Ok(topo)
        } else {
            cx.problems.sort_by_key(|p| p.line);
            Err(TopologyError::Invalid(cx.problems))
        }
    }

    /// Looks a node up by name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The switch ports: (switch, node, interface) for each interface attached to a switch.
    pub fn ports(&self) -> impl Iterator<Item = (&str, &Node, &Interface)> {
        self.nodes.iter().flat_map(|n| {
            n.interfaces.iter().filter_map(move |i| match &i.attach {
                Attachment::Switch(s) => Some((s.as_str(), n, i)),
                Attachment::Peer { .. } => None,
            })
        })
    }
}

impl Node {
    /// The first address of the given family, on the named interface or on any interface.
    pub fn address(&self, iface: Option<&str>, v6: bool) -> Option<IpAddr> {
        self.interfaces
            .iter()
            .filter(|i| iface.is_none_or(|n| n == i.name))
            .flat_map(|i| i.addresses.iter())
            .map(|a| a.addr)
            .find(|a| a.is_ipv6() == v6)
    }

    /// Looks an interface up by name.
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

// ---------------------------------------------------------------------------------------------
// Placeholders

/// Parses `ADDR/PREFIX`.
pub fn parse_ifaddr(s: &str) -> Option<IfAddr> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(IfAddr { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("02:68:66:00:01:0a").unwrap();
        assert_eq!(fmt_mac(&m), "02:68:66:00:01:0a");
        assert!(parse_mac("02:68:66:00:01").is_none());
        assert!(parse_mac("02:68:66:00:01:0a:00").is_none());
        assert!(parse_mac("zz:68:66:00:01:0a").is_none());
    }

    #[test]
    fn allowed_ranges() {
        let ok = |s: &str| address_allowed(&parse_ifaddr(s).unwrap());
        assert!(ok("198.18.0.1/24"));
        assert!(ok("198.19.255.1/16"));
        assert!(ok("198.18.0.1/15"));
        assert!(!ok("198.18.0.1/8"));
        assert!(!ok("198.20.0.1/24"));
        assert!(!ok("10.0.0.1/24"));
        assert!(ok("2001:db8::1/64"));
        assert!(!ok("2001:db8::1/16"));
        assert!(!ok("2001:db9::1/64"));
    }
}
