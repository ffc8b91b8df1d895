//! The topology model: what a TOML topology file says, checked.
//!
//! Read [`Topology::load`] first. A file is parsed into a *raw* model that keeps the byte span of
//! every field, then validated into the plain [`Topology`] that the builder uses. Every problem is
//! reported as `FILE:LINE: field: what is wrong`, and all problems are reported at once.
//!
//! The format is documented for users in `topologies/README.md`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

pub use holdfast_tomlcheck::Problem;

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

/// Values that fill a process template's placeholders.
#[derive(Debug, Clone)]
pub struct TemplateEnv<'a> {
    /// The topology (for node addresses).
    pub topology: &'a Topology,
    /// The node the process runs on.
    pub node: &'a str,
    /// The run id.
    pub run: &'a str,
    /// The run directory.
    pub run_dir: &'a Path,
    /// The harness binary (its directory is `{bin_dir}`).
    pub harness: &'a Path,
}

/// The placeholders a template may use; see `topologies/README.md`.
pub const PLACEHOLDERS: &str = "{node} {run} {run_dir} {node_dir} {harness} {bin_dir} {topology_dir} {ip} {ip6} {mac}, \
     with an optional interface ({ip:eth0}) and an optional other node ({b.ip}, {b.ip:eth0})";

/// Expands the placeholders in one template argument.
pub fn expand(arg: &str, env: &TemplateEnv<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed '{{' in {arg:?}"));
        };
        out.push_str(&expand_one(&after[..end], env)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn expand_one(key: &str, env: &TemplateEnv<'_>) -> Result<String, String> {
    let node_dir = || env.run_dir.join(env.node).display().to_string();
    match key {
        "node" => return Ok(env.node.to_owned()),
        "run" => return Ok(env.run.to_owned()),
        "run_dir" => return Ok(env.run_dir.display().to_string()),
        "node_dir" => return Ok(node_dir()),
        "harness" => return Ok(env.harness.display().to_string()),
        "bin_dir" => {
            return Ok(env
                .harness
                .parent()
                .unwrap_or(Path::new("."))
                .display()
                .to_string());
        }
        "topology_dir" => return Ok(env.topology.dir.display().to_string()),
        _ => {}
    }
    // [NODE.]KIND[:IFACE]
    let (node_name, rest) = match key.split_once('.') {
        Some((n, r)) => (n, r),
        None => (env.node, key),
    };
    let (kind, iface) = match rest.split_once(':') {
        Some((k, i)) => (k, Some(i)),
        None => (rest, None),
    };
    let node = env
        .topology
        .node(node_name)
        .ok_or_else(|| format!("placeholder {{{key}}}: unknown node {node_name:?}"))?;
    if let Some(i) = iface
        && node.interface(i).is_none()
    {
        return Err(format!(
            "placeholder {{{key}}}: node {node_name:?} has no interface {i:?}"
        ));
    }
    let missing = || format!("placeholder {{{key}}}: node {node_name:?} has no such address");
    match kind {
        "ip" => node
            .address(iface, false)
            .map(|a| a.to_string())
            .ok_or_else(missing),
        "ip6" => node
            .address(iface, true)
            .map(|a| a.to_string())
            .ok_or_else(missing),
        "mac" => {
            let i = match iface {
                Some(i) => node.interface(i),
                None => node.interfaces.first(),
            };
            i.map(|i| fmt_mac(&i.mac)).ok_or_else(missing)
        }
        _ => Err(format!(
            "unknown placeholder {{{key}}}; known: {PLACEHOLDERS}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw model and validation

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    name: Option<Spanned<String>>,
    cluster: Option<crate::spec::RawCluster>,
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    switch: Vec<RawSwitch>,
    #[serde(default)]
    node: Vec<RawNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwitch {
    name: Spanned<String>,
    #[serde(default)]
    hub: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    from: Spanned<String>,
    to: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    #[serde(default)]
    interface: Vec<RawIface>,
    #[serde(default)]
    process: Vec<RawProcess>,
    #[serde(default)]
    routes: Vec<Spanned<String>>,
    #[serde(default)]
    forward: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIface {
    name: Spanned<String>,
    switch: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    impair: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    name: Spanned<String>,
    command: Spanned<String>,
    #[serde(default = "yes")]
    restart: bool,
}

fn yes() -> bool {
    true
}

type Cx<'a> = holdfast_tomlcheck::Checker<'a>;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 12
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.as_bytes()[0].is_ascii_alphabetic()
}

fn validate(cx: &mut Cx<'_>, raw: RawTopology, default_name: String) -> Topology {
    let name = raw.name.map(Spanned::into_inner).unwrap_or(default_name);
    if raw.node.is_empty() {
        cx.err(&(0..0), "node", "a topology needs at least one [[node]]");
    }
    // Names: nodes and switches share one namespace of names (both become netns names).
    let mut names: HashMap<String, &'static str> = HashMap::new();
    for (kind, n) in raw
        .switch
        .iter()
        .map(|s| ("switch", &s.name))
        .chain(raw.node.iter().map(|n| ("node", &n.name)))
    {
        if !valid_name(n.get_ref()) {
            cx.err(
                &n.span(),
                format!("{kind}.name"),
                format!(
                    "{:?} is not a valid name: use 1-12 letters, digits or '_', starting with a letter",
                    n.get_ref()
                ),
            );
        }
        if let Some(prev) = names.insert(n.get_ref().clone(), kind) {
            cx.err(
                &n.span(),
                format!("{kind}.name"),
                format!("duplicate name {:?} (already a {prev})", n.get_ref()),
            );
        }
    }
    let switch_names: HashSet<&str> = raw
        .switch
        .iter()
        .map(|s| s.name.get_ref().as_str())
        .collect();
    let node_ifaces: HashMap<&str, Vec<&RawIface>> = raw
        .node
        .iter()
        .map(|n| (n.name.get_ref().as_str(), n.interface.iter().collect()))
        .collect();

    let mut seen_addr: HashMap<IpAddr, String> = HashMap::new();
    let mut seen_mac: HashMap<[u8; 6], String> = HashMap::new();
    let mut nodes = Vec::new();
    // (switch, node) pairs, for checking mirrors.
    let mut on_switch: HashSet<(String, String)> = HashSet::new();

    for (ni, rn) in raw.node.iter().enumerate() {
        let nname = rn.name.get_ref().clone();
        let mut interfaces = Vec::new();
        let mut if_seen = HashSet::new();
        for (ii, ri) in rn.interface.iter().enumerate() {
            let iname = ri.name.get_ref().clone();
            let f = |field: &str| format!("node[{nname}].interface[{iname}].{field}");
            if iname.is_empty() || iname.len() > MAX_IFNAME || iname.contains(['/', ' ', ':', '.'])
            {
                cx.err(
                    &ri.name.span(),
                    f("name"),
                    format!("{iname:?} is not a valid interface name (1-{MAX_IFNAME} characters, no '/', ':', '.' or spaces)"),
                );
            }
            if !if_seen.insert(iname.clone()) {
                cx.err(
                    &ri.name.span(),
                    f("name"),
                    format!("duplicate interface {iname:?}"),
                );
            }
            let attach = match (&ri.switch, &ri.peer) {
                (Some(s), None) => {
                    if !switch_names.contains(s.get_ref().as_str()) {
                        cx.err(
                            &s.span(),
                            f("switch"),
                            format!("unknown switch {:?}", s.get_ref()),
                        );
                    }
                    let port = port_name(&nname, &iname);
                    if port.len() > MAX_IFNAME {
                        cx.err(
                            &ri.name.span(),
                            f("name"),
                            format!(
                                "switch port name {port:?} (node-interface) is longer than {MAX_IFNAME} characters; shorten the node or interface name"
                            ),
                        );
                    }
                    if !on_switch.insert((s.get_ref().clone(), nname.clone())) {
                        cx.err(
                            &s.span(),
                            f("switch"),
                            format!(
                                "node {nname:?} already has an interface on switch {:?}",
                                s.get_ref()
                            ),
                        );
                    }
                    Attachment::Switch(s.get_ref().clone())
                }
                (None, Some(p)) => {
                    let (pn, pi) = p.get_ref().split_once(':').unwrap_or((p.get_ref(), ""));
                    match node_ifaces.get(pn) {
                        None => cx.err(
                            &p.span(),
                            f("peer"),
                            format!("unknown node {pn:?} (write \"node:interface\")"),
                        ),
                        Some(_) if pn == nname => {
                            cx.err(&p.span(), f("peer"), "a node cannot link to itself")
                        }
                        Some(ifs) => match ifs.iter().find(|i| i.name.get_ref() == pi) {
                            None => cx.err(
                                &p.span(),
                                f("peer"),
                                format!(
                                    "node {pn:?} has no interface {pi:?} (write \"node:interface\")"
                                ),
                            ),
                            Some(other) => {
                                let back = other.peer.as_ref().map(|s| s.get_ref().as_str());
                                let me = format!("{nname}:{iname}");
                                if other.switch.is_some() || back.is_some_and(|b| b != me) {
                                    cx.err(
                                        &p.span(),
                                        f("peer"),
                                        format!("{pn}:{pi} is already attached elsewhere"),
                                    );
                                }
                            }
                        },
                    }
                    Attachment::Peer {
                        node: pn.to_owned(),
                        iface: pi.to_owned(),
                    }
                }
                (Some(s), Some(_)) => {
                    cx.err(
                        &s.span(),
                        f("switch"),
                        "an interface has either `switch` or `peer`, not both",
                    );
                    Attachment::Switch(s.get_ref().clone())
                }
                (None, None) => {
                    // A peer may be declared from the other side only.
                    let back = raw
                        .node
                        .iter()
                        .flat_map(|n| n.interface.iter().map(move |i| (n, i)))
                        .find(|(_, i)| {
                            i.peer
                                .as_ref()
                                .is_some_and(|p| *p.get_ref() == format!("{nname}:{iname}"))
                        });
                    match back {
                        Some((n, i)) => Attachment::Peer {
                            node: n.name.get_ref().clone(),
                            iface: i.name.get_ref().clone(),
                        },
                        None => {
                            cx.err(&ri.name.span(), f("switch"), "an interface needs `switch = \"...\"` or `peer = \"node:interface\"`");
                            Attachment::Switch(String::new())
                        }
                    }
                }
            };
            let mac = match &ri.mac {
                Some(m) => match parse_mac(m.get_ref()) {
                    None => {
                        cx.err(
                            &m.span(),
                            f("mac"),
                            format!("{:?} is not a MAC address (aa:bb:cc:dd:ee:ff)", m.get_ref()),
                        );
                        [0; 6]
                    }
                    Some(mac) if mac[0] & 1 == 1 => {
                        cx.err(
                            &m.span(),
                            f("mac"),
                            format!(
                                "{} is a multicast MAC; an interface needs a unicast one",
                                m.get_ref()
                            ),
                        );
                        mac
                    }
                    Some(mac) if mac == [0; 6] => {
                        cx.err(&m.span(), f("mac"), "the all-zero MAC is not usable");
                        mac
                    }
                    Some(mac) => mac,
                },
                // Locally administered, deterministic: 02:68:66 ("hf"), node index, interface index.
                None => [0x02, 0x68, 0x66, 0x00, (ni + 1) as u8, (ii + 1) as u8],
            };
            if let Some(prev) = seen_mac.insert(mac, format!("{nname}:{iname}"))
                && mac != [0; 6]
            {
                let span = ri
                    .mac
                    .as_ref()
                    .map(|m| m.span())
                    .unwrap_or_else(|| ri.name.span());
                cx.err(
                    &span,
                    f("mac"),
                    format!("MAC {} is already used by {prev}", fmt_mac(&mac)),
                );
            }
            let mut addresses = Vec::new();
            for a in &ri.addresses {
                let Some(parsed) = parse_ifaddr(a.get_ref()) else {
                    cx.err(&a.span(), f("addresses"), format!("{:?} is not an address with a prefix length (198.18.0.1/24 or 2001:db8::1/64)", a.get_ref()));
                    continue;
                };
                if !address_allowed(&parsed) {
                    cx.err(
                        &a.span(),
                        f("addresses"),
                        format!("{parsed} is outside the allowed ranges: use 198.18.0.0/15 (prefix >= 15) or 2001:db8::/32 (prefix >= 32)"),
                    );
                }
                if let Some(prev) = seen_addr.insert(parsed.addr, format!("{nname}:{iname}")) {
                    cx.err(
                        &a.span(),
                        f("addresses"),
                        format!("address {} is already used by {prev}", parsed.addr),
                    );
                }
                addresses.push(parsed);
            }
            let impair = ri.impair.as_ref().and_then(|imp| {
                if ri.switch.is_none() {
                    cx.err(
                        &imp.span(),
                        f("impair"),
                        "only a switch port can be impaired (a point-to-point link cannot)",
                    );
                    return None;
                }
                match crate::impair::Impairment::parse(imp.get_ref()) {
                    Ok(_) => Some(imp.get_ref().clone()),
                    Err(e) => {
                        cx.err(&imp.span(), f("impair"), e);
                        None
                    }
                }
            });
            interfaces.push(Interface {
                name: iname,
                attach,
                mac,
                addresses,
                impair,
            });
        }
        let mut processes = Vec::new();
        let mut p_seen = HashSet::new();
        for rp in &rn.process {
            let pname = rp.name.get_ref().clone();
            let f = |field: &str| format!("node[{nname}].process[{pname}].{field}");
            if !valid_name(&pname) {
                cx.err(
                    &rp.name.span(),
                    f("name"),
                    format!("{pname:?} is not a valid name: use 1-12 letters, digits or '_'"),
                );
            }
            if !p_seen.insert(pname.clone()) {
                cx.err(
                    &rp.name.span(),
                    f("name"),
                    format!("duplicate process {pname:?}"),
                );
            }
            let command = match shell_words::split(rp.command.get_ref()) {
                Ok(c) if !c.is_empty() => c,
                Ok(_) => {
                    cx.err(&rp.command.span(), f("command"), "the command is empty");
                    Vec::new()
                }
                Err(e) => {
                    cx.err(
                        &rp.command.span(),
                        f("command"),
                        format!("cannot split into words: {e}"),
                    );
                    Vec::new()
                }
            };
            processes.push((
                rp.command.span(),
                Process {
                    name: pname,
                    command,
                    restart: rp.restart,
                },
            ));
        }
        let routes = crate::route::validate(cx, &nname, &rn.routes, &interfaces);
        nodes.push((
            rn,
            Node {
                name: nname,
                interfaces,
                processes: Vec::new(),
                routes,
                forward: rn.forward,
            },
            processes,
        ));
    }

    // Mirrors.
    let mut switches = Vec::new();
    for rs in &raw.switch {
        let sname = rs.name.get_ref().clone();
        let mut mirrors = Vec::new();
        for m in &rs.mirror {
            let f = |field: &str| format!("switch[{sname}].mirror.{field}");
            let from = m.from.get_ref().clone();
            if !on_switch.contains(&(sname.clone(), from.clone())) {
                cx.err(
                    &m.from.span(),
                    f("from"),
                    format!("node {from:?} has no port on switch {sname:?}"),
                );
            }
            if m.to.get_ref().is_empty() {
                cx.err(
                    &m.to.span(),
                    f("to"),
                    "a mirror needs at least one destination",
                );
            }
            let mut to = Vec::new();
            for t in m.to.get_ref() {
                if *t.get_ref() == from {
                    cx.err(
                        &t.span(),
                        f("to"),
                        format!("node {from:?} cannot mirror to itself"),
                    );
                } else if !on_switch.contains(&(sname.clone(), t.get_ref().clone())) {
                    cx.err(
                        &t.span(),
                        f("to"),
                        format!("node {:?} has no port on switch {sname:?}", t.get_ref()),
                    );
                }
                to.push(t.get_ref().clone());
            }
            mirrors.push(Mirror { from, to });
        }
        switches.push(Switch {
            name: sname,
            hub: rs.hub,
            mirrors,
        });
    }

    let mut topo = Topology {
        name,
        dir: PathBuf::new(),
        cluster: None,
        switches,
        nodes: nodes.iter().map(|(_, n, _)| n.clone()).collect(),
    };
    if let Some(rc) = raw.cluster {
        topo.cluster = Some(crate::spec::validate(cx, rc, &topo.nodes, &topo.switches));
    }
    // Templates are checked against the finished topology, so they can name any node.
    let dummy = PathBuf::from("/run");
    let mut all_procs = BTreeMap::new();
    for (rn, node, procs) in &nodes {
        for (span, p) in procs {
            let env = TemplateEnv {
                topology: &topo,
                node: &node.name,
                run: "check",
                run_dir: &dummy,
                harness: &dummy,
            };
            for arg in &p.command {
                if let Err(e) = expand(arg, &env) {
                    cx.err(
                        span,
                        format!("node[{}].process[{}].command", rn.name.get_ref(), p.name),
                        e,
                    );
                }
            }
            all_procs
                .entry(node.name.clone())
                .or_insert_with(Vec::new)
                .push(p.clone());
        }
    }
    for n in &mut topo.nodes {
        n.processes = all_procs.remove(&n.name).unwrap_or_default();
    }
    topo
}

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
