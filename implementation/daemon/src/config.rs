//! The cluster configuration file: every node's ownership information in one TOML file, from
//! which each daemon picks its own (`--node NAME`).
//!
//! Read [`ClusterConfig::load`] first; `implementation/daemon/cluster.example.toml` is a commented
//! example. Every problem is reported as `FILE:LINE: field: what is wrong`.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use holdfast_proto::policy::{
    ArpPolicy, Assignment, FailbackMode, FailoverPolicy, NodeId, OwnedAddress, Ownership, SnoopMode,
};
use serde::Deserialize;
use toml::Spanned;

pub use holdfast_tomlcheck::Problem;

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The file has problems.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A `[[node]]` table, or the `[defaults]` table (which may not name a node): policy and
/// service settings are given once under `[defaults]` and overridable per node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    name: Option<Spanned<String>>,
    id: Option<Spanned<u32>>,
    backups: Option<Spanned<Vec<String>>>,
    addresses: Option<Vec<Spanned<String>>>,
    heartbeat_ms: Option<Spanned<u32>>,
    miss_count: Option<Spanned<u8>>,
    failback: Option<Spanned<String>>,
    snoop: Option<Spanned<String>>,
    assignment: Option<Spanned<String>>,
    boot_wait_ms: Option<u64>,
    arp: Option<Spanned<String>>,
    garp_count: Option<u32>,
    garp_interval_ms: Option<u64>,
    settle_ms: Option<u64>,
    fetch_window_kb: Option<u32>,
    application: Option<Spanned<String>>,
    ports: Option<Spanned<(u16, u16)>>,
    protocol: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster_id: Spanned<u32>,
    key: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    group: Spanned<String>,
    interface: Spanned<String>,
    #[serde(default)]
    defaults: RawSettings,
    #[serde(default)]
    node: Vec<RawSettings>,
}

/// One node's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's name (as in the topology).
    pub name: String,
    /// Its ownership information (MACs under `garp` are filled in at start from the interface).
    pub ownership: Ownership,
    /// Boot wait.
    pub boot_wait: Duration,
    /// Gratuitous ARP / unsolicited NA repetitions per claim.
    pub garp_count: u32,
    /// Gap between repetitions.
    pub garp_interval: Duration,
    /// After announcing a taken-over address, how long to let the clients and the old owner's
    /// last segments settle before the re-created connections go live.
    pub settle: Duration,
    /// How many of each connection's latest client bytes this node keeps to answer a backup's
    /// FETCH (a hole in its snooped copy); older ones are gone (`fetches_gone`).
    pub fetch_window: usize,
}

/// A whole cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The cluster id.
    pub cluster_id: u32,
    /// The HMAC key.
    pub key: Vec<u8>,
    /// Multicast group and port.
    pub group: SocketAddrV4,
    /// The cluster interface.
    pub interface: String,
    /// Every node, by name.
    pub nodes: BTreeMap<String, NodeConfig>,
}

/// The virtual MAC of a node's addresses under the `vmac` policy (VRRP's range, RFC 5798 7.3).
pub fn virtual_mac(id: NodeId) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, id.0 as u8]
}

type Cx<'a> = holdfast_tomlcheck::Checker<'a>;

/// Configuration checks beyond [`holdfast_tomlcheck::Checker`]'s.
trait Pick {
    fn pick<T: Copy>(
        &mut self,
        field: &str,
        v: Option<&Spanned<String>>,
        parse: fn(&str) -> Option<T>,
        default: T,
        known: &str,
    ) -> T;
}

impl Pick for Cx<'_> {
    fn pick<T: Copy>(
        &mut self,
        field: &str,
        v: Option<&Spanned<String>>,
        parse: fn(&str) -> Option<T>,
        default: T,
        known: &str,
    ) -> T {
        match v {
            None => default,
            Some(s) => match parse(s.get_ref()) {
                Some(x) => x,
                None => {
                    self.err(
                        &s.span(),
                        field,
                        format!("unknown value {:?}; use one of: {known}", s.get_ref()),
                    );
                    default
                }
            },
        }
    }
}

fn parse_addr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    (prefix <= if addr.is_ipv4() { 32 } else { 128 }).then_some((addr, prefix))
}

impl ClusterConfig {
    /// Reads and validates a cluster configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Io(path.to_owned(), e))?;
        Self::parse(path, &text)
    }

    /// Validates configuration text (`path` is for messages and relative `key_file`s).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let mut cx = Cx::new(path, text);
        let raw: RawConfig = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                cx.serde_error(&e);
                return Err(ConfigError::Invalid(cx.problems));
            }
        };
        let key = read_key(&mut cx, &raw, path);
        let group = check_group(&mut cx, &raw);
        let iface = raw.interface.get_ref().clone();
        if iface.is_empty() || iface.len() > 15 {
            cx.err(
                &raw.interface.span(),
                "interface",
                "an interface name has 1 to 15 characters",
            );
        }
        if raw.node.is_empty() {
            cx.err(&(0..0), "node", "the cluster needs at least one [[node]]");
        }
        let d = &raw.defaults;
        no_node_fields_in_defaults(&mut cx, d);
        let named = named_nodes(&mut cx, &raw.node);
        let ids: BTreeMap<String, u32> = named
            .iter()
            .map(|(n, i, _)| (n.get_ref().clone(), *i.get_ref()))
            .collect();
        let mut seen_names = HashSet::new();
        let mut seen_ids = HashSet::new();
        let mut seen_addrs = HashSet::new();
        let mut nodes = BTreeMap::new();
        for (n_name, n_id, n) in &named {
            let name = n_name.get_ref().clone();
            let f = |x: &str| format!("node[{name}].{x}");
            if !seen_names.insert(name.clone()) {
                cx.err(
                    &n_name.span(),
                    f("name"),
                    format!("duplicate node {name:?}"),
                );
            }
            let id = *n_id.get_ref();
            if id == 0 || id > 255 {
                cx.err(&n_id.span(), f("id"), "a node id is 1 to 255");
            }
            if !seen_ids.insert(id) {
                cx.err(&n_id.span(), f("id"), format!("duplicate node id {id}"));
            }
            let node = node_config(&mut cx, &name, id, n, d, &ids, &mut seen_addrs);
            nodes.insert(name.clone(), node);
        }
        if !cx.problems.is_empty() {
            cx.problems.sort_by_key(|p| p.line);
            return Err(ConfigError::Invalid(cx.problems));
        }
        Ok(Self {
            cluster_id: *raw.cluster_id.get_ref(),
            key,
            group,
            interface: iface,
            nodes,
        })
    }

    /// The node ids of everyone but `name`.
    pub fn peers_of(&self, name: &str) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.name != name)
            .map(|n| n.ownership.node_id)
            .collect()
    }
}

/// The cluster key, given inline or in a file (relative to the configuration's directory).
fn read_key(cx: &mut Cx<'_>, raw: &RawConfig, path: &Path) -> Vec<u8> {
    let key = match (&raw.key, &raw.key_file) {
        (Some(k), None) => k.get_ref().as_bytes().to_vec(),
        (None, Some(f)) => {
            let p = path.parent().unwrap_or(Path::new(".")).join(f.get_ref());
            match std::fs::read(&p) {
                Ok(k) => k,
                Err(e) => {
                    cx.err(&f.span(), "key_file", format!("{}: {e}", p.display()));
                    Vec::new()
                }
            }
        }
        (Some(k), Some(_)) => {
            cx.err(&k.span(), "key", "give `key` or `key_file`, not both");
            Vec::new()
        }
        (None, None) => {
            cx.err(
                &(0..0),
                "key",
                "a cluster key is needed: `key = \"...\"` or `key_file = \"...\"`",
            );
            Vec::new()
        }
    };
    if key.is_empty() && cx.problems.is_empty() {
        cx.err(&(0..0), "key", "the cluster key is empty");
    }
    key
}

/// The multicast group and port the control protocol uses.
fn check_group(cx: &mut Cx<'_>, raw: &RawConfig) -> SocketAddrV4 {
    match raw.group.get_ref().parse::<SocketAddrV4>() {
        Ok(g) if g.ip().is_multicast() => g,
        _ => {
            cx.err(
                &raw.group.span(),
                "group",
                format!(
                    "{:?} is not an IPv4 multicast group with a port (239.255.72.70:5405)",
                    raw.group.get_ref()
                ),
            );
            SocketAddrV4::new([239, 255, 72, 70].into(), 5405)
        }
    }
}

/// `name`, `id`, `backups` and `addresses` name one node: never in `[defaults]`.
fn no_node_fields_in_defaults(cx: &mut Cx<'_>, d: &RawSettings) {
    let spans = [
        ("defaults.name", d.name.as_ref().map(Spanned::span)),
        ("defaults.id", d.id.as_ref().map(Spanned::span)),
        ("defaults.backups", d.backups.as_ref().map(Spanned::span)),
        (
            "defaults.addresses",
            d.addresses
                .as_ref()
                .and_then(|a| a.first())
                .map(Spanned::span),
        ),
    ];
    for (field, span) in spans {
        if let Some(span) = span {
            cx.err(
                &span,
                field,
                "`name`, `id`, `backups` and `addresses` belong in a [[node]]",
            );
        }
    }
}

/// The nodes with a name and an id; one without either is reported once and skipped.
fn named_nodes<'r>(
    cx: &mut Cx<'_>,
    nodes: &'r [RawSettings],
) -> Vec<(Spanned<String>, Spanned<u32>, &'r RawSettings)> {
    let mut named = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        match (&n.name, &n.id) {
            (Some(name), Some(id)) => named.push((name.clone(), id.clone(), n)),
            (Some(name), None) => cx.err(
                &name.span(),
                format!("node[{}].id", name.get_ref()),
                "missing field `id`",
            ),
            (None, _) => {
                let span = n.id.as_ref().map(|x| x.span()).unwrap_or_default();
                cx.err(
                    &span,
                    format!("node #{}.name", i + 1),
                    "missing field `name`",
                );
            }
        }
    }
    named
}

/// The enumerated settings of one node, each its own or `[defaults]`'s, checked by name.
struct Choices {
    failback: FailbackMode,
    snoop: SnoopMode,
    assignment: Assignment,
    arp: ArpPolicy,
    protocol: u8,
}

fn choices(
    cx: &mut Cx<'_>,
    f: &dyn Fn(&str) -> String,
    s: &RawSettings,
    d: &RawSettings,
) -> Choices {
    let get =
        |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| a.clone().or_else(|| b.clone());
    let failback = cx.pick(
        &f("failback"),
        get(&s.failback, &d.failback).as_ref(),
        FailbackMode::from_name,
        FailbackMode::None,
        "none, new-connections, migrate",
    );
    let snoop = cx.pick(
        &f("snoop"),
        get(&s.snoop, &d.snoop).as_ref(),
        SnoopMode::from_name,
        SnoopMode::Mirror,
        "none, mirror, forward",
    );
    let assignment = cx.pick(
        &f("assignment"),
        get(&s.assignment, &d.assignment).as_ref(),
        Assignment::from_name,
        Assignment::Ordered,
        "ordered, spread",
    );
    let arp = cx.pick(
        &f("arp"),
        get(&s.arp, &d.arp).as_ref(),
        ArpPolicy::from_name,
        ArpPolicy::Garp,
        "garp, vmac, none",
    );
    let protocol = cx.pick(
        &f("protocol"),
        get(&s.protocol, &d.protocol).as_ref(),
        |p| (p == "tcp").then_some(6u8),
        6,
        "tcp",
    );
    Choices {
        failback,
        snoop,
        assignment,
        arp,
        protocol,
    }
}

/// The addresses a node owns, each owned once; under `vmac` each gets the node's virtual MAC.
fn owned_addresses(
    cx: &mut Cx<'_>,
    f: &dyn Fn(&str) -> String,
    s: &RawSettings,
    arp: ArpPolicy,
    id: u32,
    seen_addrs: &mut HashSet<IpAddr>,
) -> Vec<OwnedAddress> {
    let mut addresses = Vec::new();
    for a in s.addresses.iter().flatten() {
        match parse_addr(a.get_ref()) {
            Some((addr, prefix)) => {
                if !seen_addrs.insert(addr) {
                    cx.err(
                        &a.span(),
                        f("addresses"),
                        format!("{addr} is owned by two nodes"),
                    );
                }
                let mac = if arp == ArpPolicy::Vmac {
                    virtual_mac(NodeId(id))
                } else {
                    [0; 6]
                };
                addresses.push(OwnedAddress { addr, prefix, mac });
            }
            None => cx.err(
                &a.span(),
                f("addresses"),
                format!("{:?} is not ADDRESS/PREFIX", a.get_ref()),
            ),
        }
    }
    addresses
}

/// One node's settings: its own, else `[defaults]`, else the built-in default.
fn node_config(
    cx: &mut Cx<'_>,
    name: &str,
    id: u32,
    s: &RawSettings,
    d: &RawSettings,
    ids: &BTreeMap<String, u32>,
    seen_addrs: &mut HashSet<IpAddr>,
) -> NodeConfig {
    let f = |x: &str| format!("node[{name}].{x}");
    let get =
        |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>| a.clone().or_else(|| b.clone());
    let Choices {
        failback,
        snoop,
        assignment,
        arp,
        protocol,
    } = choices(cx, &f, s, d);
    let heartbeat = s.heartbeat_ms.clone().or_else(|| d.heartbeat_ms.clone());
    let heartbeat_ms = heartbeat.as_ref().map_or(100, |h| *h.get_ref());
    if heartbeat_ms == 0 {
        cx.err(
            &(heartbeat.map(|h| h.span()).unwrap_or_default()),
            f("heartbeat_ms"),
            "must be at least 1",
        );
    }
    let miss = s.miss_count.clone().or_else(|| d.miss_count.clone());
    let miss_count = miss.as_ref().map_or(3, |m| *m.get_ref());
    if miss_count == 0 {
        cx.err(
            &(miss.map(|m| m.span()).unwrap_or_default()),
            f("miss_count"),
            "must be at least 1",
        );
    }
    let application = get(&s.application, &d.application)
        .map(|a| a.into_inner())
        .unwrap_or_else(|| "echo".into());
    if holdfast_proto::app::by_name(&application).is_none() {
        let span = get(&s.application, &d.application)
            .map(|a| a.span())
            .unwrap_or_default();
        cx.err(
            &span,
            f("application"),
            format!("unknown application {application:?}; built in: echo, stream, kv"),
        );
    }
    let ports_sp = s.ports.clone().or_else(|| d.ports.clone());
    let ports = ports_sp.as_ref().map_or((7, 7), |p| *p.get_ref());
    if ports.0 == 0 || ports.0 > ports.1 {
        cx.err(
            &(ports_sp.map(|p| p.span()).unwrap_or_default()),
            f("ports"),
            "a port range is [first, last] with 1 <= first <= last",
        );
    }
    let mut backups = Vec::new();
    if let Some(bs) = &s.backups {
        for b in bs.get_ref() {
            match ids.get(b) {
                Some(bid) if b != name => backups.push(NodeId(*bid)),
                Some(_) => cx.err(&bs.span(), f("backups"), "a node cannot back itself up"),
                None => cx.err(&bs.span(), f("backups"), format!("unknown node {b:?}")),
            }
        }
    }
    let addresses = owned_addresses(cx, &f, s, arp, id, seen_addrs);
    NodeConfig {
        name: name.to_owned(),
        ownership: Ownership {
            node_id: NodeId(id),
            policy: FailoverPolicy {
                backups,
                failback,
                heartbeat_ms,
                miss_count,
                snoop,
                assignment,
            },
            addresses,
            ports,
            application,
            arp,
            protocol,
        },
        boot_wait: Duration::from_millis(
            s.boot_wait_ms
                .or(d.boot_wait_ms)
                .unwrap_or(heartbeat_ms as u64 * 10),
        ),
        garp_count: s.garp_count.or(d.garp_count).unwrap_or(3),
        settle: Duration::from_millis(s.settle_ms.or(d.settle_ms).unwrap_or(5)),
        fetch_window: s.fetch_window_kb.or(d.fetch_window_kb).unwrap_or(4096) as usize * 1024,
        garp_interval: Duration::from_millis(
            s.garp_interval_ms.or(d.garp_interval_ms).unwrap_or(10),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster_id = 1
key = "k"
group = "239.255.72.70:5405"
interface = "eth0"

[defaults]
heartbeat_ms = 10
failback = "new-connections"

[[node]]
name = "a"
id = 1
backups = ["b"]
addresses = ["198.18.0.10/24"]

[[node]]
name = "b"
id = 2
backups = ["a"]
addresses = ["198.18.0.20/24", "2001:db8::20/64"]
failback = "none"
arp = "vmac"
"#;

    #[test]
    fn good_config() {
        let c = ClusterConfig::parse(Path::new("c.toml"), GOOD).unwrap();
        let a = &c.nodes["a"].ownership;
        assert_eq!(a.policy.backups, vec![NodeId(2)]);
        assert_eq!(a.policy.failback, FailbackMode::NewConnections);
        assert_eq!(a.policy.heartbeat_ms, 10);
        let b = &c.nodes["b"].ownership;
        assert_eq!(b.policy.failback, FailbackMode::None);
        assert_eq!(b.arp, ArpPolicy::Vmac);
        assert_eq!(b.addresses[1].mac, virtual_mac(NodeId(2)));
        assert_eq!(c.peers_of("a"), vec![NodeId(2)]);
    }

    /// The commented example is a valid configuration, with the values its comments give.
    #[test]
    fn the_example_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster.example.toml");
        let c = ClusterConfig::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let a = &c.nodes["a"];
        assert_eq!(a.garp_interval, Duration::from_millis(5));
        assert_eq!(a.garp_count, 3);
        assert_eq!(a.ownership.policy.snoop, SnoopMode::Mirror);
    }

    #[test]
    fn problems_name_file_line_and_field() {
        // (replace, with, the line the problem is on, field, message)
        let cases = [
            (
                "failback = \"new-connections\"",
                "failback = \"sometimes\"",
                "failback = \"sometimes\"",
                "failback",
                "unknown value",
            ),
            (
                "backups = [\"b\"]",
                "backups = [\"zz\"]",
                "backups = [\"zz\"]",
                "node[a].backups",
                "unknown node",
            ),
            (
                "addresses = [\"198.18.0.10/24\"]",
                "addresses = [\"198.18.0.10\"]",
                "addresses = [\"198.18.0.10\"]",
                "node[a].addresses",
                "ADDRESS/PREFIX",
            ),
            (
                "group = \"239.255.72.70:5405\"",
                "group = \"198.18.0.1:5405\"",
                "group = \"198.18.0.1:5405\"",
                "group",
                "multicast",
            ),
            ("id = 2", "id = 1", "id = 1", "node[b].id", "duplicate"),
            (
                "heartbeat_ms = 10",
                "heartbeat_ms = 10\ncolour = 3",
                "colour = 3",
                "colour",
                "unknown field",
            ),
            (
                "heartbeat_ms = 10",
                "heartbeat_ms = 10\nid = 3",
                "id = 3",
                "defaults.id",
                "belong in a [[node]]",
            ),
            (
                "key = \"k\"",
                "key_file = \"no-such-key\"",
                "key_file = \"no-such-key\"",
                "key_file",
                "no-such-key",
            ),
            (
                "arp = \"vmac\"",
                "arp = \"loud\"",
                "arp = \"loud\"",
                "node[b].arp",
                "unknown value",
            ),
        ];
        for (from, to, on, field, msg) in cases {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from}");
            let line = text
                .lines()
                .collect::<Vec<_>>()
                .iter()
                .rposition(|l| *l == on)
                .unwrap()
                + 1;
            let e = ClusterConfig::parse(Path::new("c.toml"), &text).unwrap_err();
            let s = e.to_string();
            assert!(
                s.contains(&format!("c.toml:{line}: ")),
                "{to}: expected line {line}: {s}"
            );
            assert!(s.contains(field) && s.contains(msg), "{to}: {s}");
        }
    }
}
