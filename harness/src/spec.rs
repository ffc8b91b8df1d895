//! The failover cluster a topology describes, independent of any implementation.
//!
//! A topology's `[cluster]` table says what the cluster *is*: which node owns which service
//! addresses, who backs up whom and in which order, how fast failures are detected, what happens
//! when an owner returns, and which service the addresses carry. It says nothing about how an
//! implementation is configured: an adapter ([`crate::adapter`]) renders this description into
//! holdfastd's, keepalived's or ucarp's own configuration. The format is documented in
//! `topologies/README.md`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::topology::{Attachment, IfAddr, Node, Switch, address_allowed, parse_ifaddr};

/// The implementation-neutral description of a failover cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterSpec {
    /// A number that tells this cluster from others on the same network (VRRP's router ids and
    /// holdfastd's cluster id are derived from it).
    pub id: u32,
    /// The member interface that carries the service addresses and the cluster's own traffic.
    pub interface: String,
    /// Failure detection: the heartbeat (advertisement) interval.
    pub heartbeat_ms: u32,
    /// Failure detection: heartbeats missed before a member is failed.
    pub miss_count: u32,
    /// What a returning owner gets back: `none` (nothing), `new-connections` (its addresses, for
    /// new connections; live ones stay where they are), `migrate` (its addresses and its live
    /// connections).
    pub failback: String,
    /// How a failed member's connections are shared: `ordered` (all to its first live backup) or
    /// `spread` (across its live backups).
    pub assignment: String,
    /// How a new holder of an address tells the network: `garp` (gratuitous ARP and unsolicited
    /// neighbour advertisements with its own MAC) or `vmac` (a virtual MAC that moves with the
    /// address).
    pub arp: String,
    /// The service the addresses carry: `echo`, `stream` or `kv` (see `docs/applications.md`).
    pub application: String,
    /// The service's first and last TCP port.
    pub ports: [u16; 2],
    /// The members, in file order; a member's `index` is its position plus one.
    pub members: Vec<Member>,
}

/// One member of the cluster: a node that owns addresses and backs others up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// The node's name in the topology.
    pub node: String,
    /// Its position in `members`, from 1: its node id, and the id of its address group (a VRRP
    /// or CARP virtual router id, so its virtual MAC is 00:00:5e:00:01:INDEX).
    pub index: u32,
    /// The service addresses it owns (with prefix, as `ADDR/LEN`).
    pub owns: Vec<String>,
    /// Who takes its addresses over when it fails, in order of preference.
    pub backups: Vec<String>,
    /// The node's own first IPv4 (or, without one, IPv6) address on the cluster interface.
    pub address: String,
    /// Whether every backup sees this member's traffic on the wire (a hub, or a switch port
    /// mirrored to each backup); without it, a snooping backup needs the holder to forward.
    pub snooped: bool,
    /// A witness: it owns nothing and backs nobody up; it tells the others whom it hears, so
    /// that two members cut off from each other know it is a partition, not a death.
    pub witness: bool,
}

/// Raw `[cluster]` table, with spans for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    #[serde(default = "one")]
    id: u32,
    #[serde(default = "eth0")]
    interface: Spanned<String>,
    #[serde(default = "ten")]
    heartbeat_ms: Spanned<u32>,
    #[serde(default = "three")]
    miss_count: Spanned<u32>,
    #[serde(default = "none")]
    failback: Spanned<String>,
    #[serde(default = "ordered")]
    assignment: Spanned<String>,
    #[serde(default = "garp")]
    arp: Spanned<String>,
    #[serde(default = "echo")]
    application: Spanned<String>,
    #[serde(default = "seven")]
    ports: Spanned<Vec<u16>>,
    #[serde(default)]
    member: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMember {
    node: Spanned<String>,
    #[serde(default)]
    owns: Vec<Spanned<String>>,
    #[serde(default)]
    backups: Vec<Spanned<String>>,
    #[serde(default)]
    witness: bool,
}

fn one() -> u32 {
    1
}
fn eth0() -> Spanned<String> {
    Spanned::new(0..0, "eth0".into())
}
fn ten() -> Spanned<u32> {
    Spanned::new(0..0, 10)
}
fn three() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn none() -> Spanned<String> {
    Spanned::new(0..0, "none".into())
}
fn ordered() -> Spanned<String> {
    Spanned::new(0..0, "ordered".into())
}
fn garp() -> Spanned<String> {
    Spanned::new(0..0, "garp".into())
}
fn echo() -> Spanned<String> {
    Spanned::new(0..0, "echo".into())
}
fn seven() -> Spanned<Vec<u16>> {
    Spanned::new(0..0, vec![7, 7])
}

/// The values each enumerated field accepts.
pub const CHOICES: &[(&str, &[&str])] = &[
    ("failback", &["none", "new-connections", "migrate"]),
    ("assignment", &["ordered", "spread"]),
    ("arp", &["garp", "vmac"]),
    ("application", &["echo", "stream", "kv"]),
];

/// What an adapter's `[supports]` may restrict: the enumerated fields, and `family` (the
/// service addresses' IP version, derived).
pub const SUPPORTS: &[(&str, &[&str])] = &[
    ("failback", &["none", "new-connections", "migrate"]),
    ("assignment", &["ordered", "spread"]),
    ("arp", &["garp", "vmac"]),
    ("application", &["echo", "stream", "kv"]),
    ("family", &["ipv4", "ipv6", "dual"]),
    ("witness", &["no", "yes"]),
];

type Cx<'a> = holdfast_tomlcheck::Checker<'a>;

/// Checks the `[cluster]` table against the topology's nodes and switches.
pub(crate) fn validate(
    cx: &mut Cx<'_>,
    raw: RawCluster,
    nodes: &[Node],
    switches: &[Switch],
) -> ClusterSpec {
    let ports = check_scalars(cx, &raw);
    if raw.member.len() < 2 {
        cx.err(
            &(0..0),
            "cluster.member",
            "a cluster needs at least two [[cluster.member]] tables",
        );
    }
    let iface = raw.interface.get_ref().clone();
    let names: Vec<&str> = raw
        .member
        .iter()
        .map(|m| m.node.get_ref().as_str())
        .collect();
    let mut seen = HashSet::new();
    let mut owned = HashSet::new();
    let mut members = Vec::new();
    for (i, rm) in raw.member.iter().enumerate() {
        let name = rm.node.get_ref().clone();
        let f = |field: &str| format!("cluster.member[{name}].{field}");
        if !seen.insert(name.clone()) {
            cx.err(
                &rm.node.span(),
                f("node"),
                format!("{name:?} is a member twice"),
            );
        }
        let addr = member_address(cx, rm, nodes, &iface, &f);
        if rm.witness {
            if let Some(o) = rm.owns.first() {
                cx.err(&o.span(), f("owns"), "a witness owns no service address");
            }
            if let Some(b) = rm.backups.first() {
                cx.err(&b.span(), f("backups"), "a witness backs nobody up");
            }
        } else if rm.owns.is_empty() {
            cx.err(
                &rm.node.span(),
                f("owns"),
                "a member owns at least one service address (or is a `witness = true`)",
            );
        }
        let owns = owned_addresses(cx, rm, nodes, &mut owned, &f);
        let backups = member_backups(cx, rm, &raw.member, &names, &f);
        let snooped = backups
            .iter()
            .all(|b| sees(nodes, switches, b, &name, &iface));
        members.push(Member {
            node: name.clone(),
            index: i as u32 + 1,
            owns,
            backups,
            address: addr.map(|a| a.addr.to_string()).unwrap_or_default(),
            snooped,
            witness: rm.witness,
        });
    }
    ClusterSpec {
        id: raw.id,
        interface: iface,
        heartbeat_ms: *raw.heartbeat_ms.get_ref(),
        miss_count: *raw.miss_count.get_ref(),
        failback: raw.failback.into_inner(),
        assignment: raw.assignment.into_inner(),
        arp: raw.arp.into_inner(),
        application: raw.application.into_inner(),
        ports,
        members,
    }
}

/// The enumerated fields, the heartbeat, the miss count; returns the port range.
fn check_scalars(cx: &mut Cx<'_>, raw: &RawCluster) -> [u16; 2] {
    for (field, value) in [
        ("failback", &raw.failback),
        ("assignment", &raw.assignment),
        ("arp", &raw.arp),
        ("application", &raw.application),
    ] {
        let allowed = CHOICES.iter().find(|(f, _)| *f == field).map(|(_, a)| *a);
        if let Some(allowed) = allowed
            && !allowed.contains(&value.get_ref().as_str())
        {
            cx.err(
                &value.span(),
                format!("cluster.{field}"),
                format!(
                    "{:?} is not one of: {}",
                    value.get_ref(),
                    allowed.join(", ")
                ),
            );
        }
    }
    if *raw.heartbeat_ms.get_ref() == 0 {
        cx.err(
            &raw.heartbeat_ms.span(),
            "cluster.heartbeat_ms",
            "must be at least 1",
        );
    }
    if *raw.miss_count.get_ref() == 0 {
        cx.err(
            &raw.miss_count.span(),
            "cluster.miss_count",
            "must be at least 1",
        );
    }
    match raw.ports.get_ref().as_slice() {
        [lo, hi] if lo <= hi && *lo > 0 => [*lo, *hi],
        _ => {
            cx.err(
                &raw.ports.span(),
                "cluster.ports",
                "give [FIRST, LAST] with 0 < FIRST <= LAST",
            );
            [7, 7]
        }
    }
}

/// A member's own address on the cluster interface (its first IPv4, else its first), if the
/// node and interface exist.
fn member_address(
    cx: &mut Cx<'_>,
    rm: &RawMember,
    nodes: &[Node],
    iface: &str,
    f: &dyn Fn(&str) -> String,
) -> Option<IfAddr> {
    let name = rm.node.get_ref();
    let node = nodes.iter().find(|n| n.name == *name);
    match node {
        None => {
            cx.err(
                &rm.node.span(),
                f("node"),
                format!("no node {name:?} in the topology"),
            );
            None
        }
        Some(n) => match n.interface(iface) {
            None => {
                cx.err(
                    &rm.node.span(),
                    f("node"),
                    format!("node {name:?} has no interface {iface:?} (cluster.interface)"),
                );
                None
            }
            Some(i) => {
                let a = i
                    .addresses
                    .iter()
                    .find(|a| a.addr.is_ipv4())
                    .or(i.addresses.first());
                if a.is_none() {
                    cx.err(
                        &rm.node.span(),
                        f("node"),
                        format!("node {name:?} has no address on {iface:?}"),
                    );
                }
                a.copied()
            }
        },
    }
}

/// The service addresses a member owns: valid, in range, owned once, nobody's own address.
fn owned_addresses(
    cx: &mut Cx<'_>,
    rm: &RawMember,
    nodes: &[Node],
    owned: &mut HashSet<std::net::IpAddr>,
    f: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut owns = Vec::new();
    for o in &rm.owns {
        match parse_ifaddr(o.get_ref()) {
            Some(a) if address_allowed(&a) => {
                if !owned.insert(a.addr) {
                    cx.err(
                        &o.span(),
                        f("owns"),
                        format!("{} is owned by another member too", a.addr),
                    );
                }
                if nodes
                    .iter()
                    .flat_map(|n| n.interfaces.iter())
                    .any(|i| i.addresses.iter().any(|x| x.addr == a.addr))
                {
                    cx.err(
                        &o.span(),
                        f("owns"),
                        format!(
                            "{} is a node's own interface address; a service address must be free",
                            a.addr
                        ),
                    );
                }
                owns.push(IfAddr::to_string(&a));
            }
            Some(_) => cx.err(
                &o.span(),
                f("owns"),
                format!(
                    "{:?} is outside 198.18.0.0/15 and 2001:db8::/32",
                    o.get_ref()
                ),
            ),
            None => cx.err(
                &o.span(),
                f("owns"),
                format!("{:?} is not ADDRESS/PREFIX", o.get_ref()),
            ),
        }
    }
    owns
}

/// A member's backups: members, not itself, not twice, not a witness.
fn member_backups(
    cx: &mut Cx<'_>,
    rm: &RawMember,
    all: &[RawMember],
    names: &[&str],
    f: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let name = rm.node.get_ref();
    let mut backups = Vec::new();
    for b in &rm.backups {
        let bn = b.get_ref();
        if bn == name {
            cx.err(&b.span(), f("backups"), "a member cannot back itself up");
        } else if !names.contains(&bn.as_str()) {
            cx.err(
                &b.span(),
                f("backups"),
                format!("{bn:?} is not a member (members: {})", names.join(", ")),
            );
        } else if backups.contains(bn) {
            cx.err(&b.span(), f("backups"), format!("{bn:?} is listed twice"));
        } else if all.iter().any(|m| m.witness && m.node.get_ref() == bn) {
            cx.err(
                &b.span(),
                f("backups"),
                format!("{bn:?} is a witness: it takes nothing over"),
            );
        }
        backups.push(bn.clone());
    }
    if rm.backups.is_empty() && !rm.witness {
        cx.err(
            &rm.node.span(),
            f("backups"),
            "a member needs at least one backup",
        );
    }
    backups
}

/// Whether `watcher` sees the frames of `owner`'s port on the cluster interface's switch.
fn sees(nodes: &[Node], switches: &[Switch], watcher: &str, owner: &str, iface: &str) -> bool {
    let switch_of = |n: &str| {
        nodes
            .iter()
            .find(|x| x.name == n)
            .and_then(|x| x.interface(iface))
            .and_then(|i| match &i.attach {
                Attachment::Switch(s) => Some(s.clone()),
                Attachment::Peer { .. } => None,
            })
    };
    let (Some(sw), Some(sw2)) = (switch_of(owner), switch_of(watcher)) else {
        return false;
    };
    sw == sw2
        && switches.iter().any(|s| {
            s.name == sw
                && (s.hub
                    || s.mirrors
                        .iter()
                        .any(|m| m.from == owner && m.to.iter().any(|t| t == watcher)))
        })
}

impl ClusterSpec {
    /// The member on `node`, if it is one.
    pub fn member(&self, node: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.node == node)
    }

    /// The value of an enumerated field (see [`CHOICES`]) by name, or of `family`: `ipv4`,
    /// `ipv6` or `dual`, from the service addresses.
    pub fn choice(&self, field: &str) -> Option<String> {
        match field {
            "failback" => Some(self.failback.clone()),
            "assignment" => Some(self.assignment.clone()),
            "arp" => Some(self.arp.clone()),
            "application" => Some(self.application.clone()),
            "witness" => Some(
                if self.members.iter().any(|m| m.witness) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ),
            "family" => {
                let all = || self.members.iter().flat_map(|m| m.owns.iter());
                let v6 = all().any(|a| a.contains(':'));
                let v4 = all().any(|a| !a.contains(':'));
                Some(
                    match (v4, v6) {
                        (true, true) => "dual",
                        (false, true) => "ipv6",
                        _ => "ipv4",
                    }
                    .into(),
                )
            }
            _ => None,
        }
    }
}
