//! The raw model (every field with its byte span) and its validation into a [`Topology`]:
//! every problem reported at once, as `FILE:LINE: field: what is wrong`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTopology {
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

pub(super) type Cx<'a> = holdfast_tomlcheck::Checker<'a>;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 12
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.as_bytes()[0].is_ascii_alphabetic()
}

/// What the checks of one topology share: the names known, and what is already taken.
struct Seen<'r> {
    nodes: &'r [RawNode],
    switch_names: HashSet<&'r str>,
    node_ifaces: HashMap<&'r str, Vec<&'r RawIface>>,
    addr: HashMap<IpAddr, String>,
    mac: HashMap<[u8; 6], String>,
    /// (switch, node) pairs, for checking mirrors.
    on_switch: HashSet<(String, String)>,
}

/// A node's raw model, the node checked, and its processes with their spans (templates are
/// checked once the whole topology is known).
type Checked<'r> = (&'r RawNode, Node, Vec<(std::ops::Range<usize>, Process)>);

pub(super) fn validate(cx: &mut Cx<'_>, raw: RawTopology, default_name: String) -> Topology {
    let name = raw.name.map(Spanned::into_inner).unwrap_or(default_name);
    if raw.node.is_empty() {
        cx.err(&(0..0), "node", "a topology needs at least one [[node]]");
    }
    check_names(cx, &raw.switch, &raw.node);
    let mut seen = Seen {
        nodes: &raw.node,
        switch_names: raw
            .switch
            .iter()
            .map(|s| s.name.get_ref().as_str())
            .collect(),
        node_ifaces: raw
            .node
            .iter()
            .map(|n| (n.name.get_ref().as_str(), n.interface.iter().collect()))
            .collect(),
        addr: HashMap::new(),
        mac: HashMap::new(),
        on_switch: HashSet::new(),
    };
    let mut nodes: Vec<Checked<'_>> = Vec::new();
    for (ni, rn) in raw.node.iter().enumerate() {
        let nname = rn.name.get_ref().clone();
        let mut if_seen = HashSet::new();
        let interfaces: Vec<Interface> = rn
            .interface
            .iter()
            .enumerate()
            .map(|(ii, ri)| interface(cx, &mut seen, &mut if_seen, &nname, (ni, ii), ri))
            .collect();
        let processes = processes(cx, &nname, rn);
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
    let switches = switches(cx, &raw.switch, &seen.on_switch);
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
    check_templates(cx, &mut topo, &nodes);
    topo
}

/// Nodes and switches share one namespace of names (both become netns names).
fn check_names(cx: &mut Cx<'_>, switches: &[RawSwitch], nodes: &[RawNode]) {
    let mut names: HashMap<String, &'static str> = HashMap::new();
    for (kind, n) in switches
        .iter()
        .map(|s| ("switch", &s.name))
        .chain(nodes.iter().map(|n| ("node", &n.name)))
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
}

/// One interface of node `nname`: its name, what it is attached to, its MAC and addresses, and
/// its impairment. `at` is (node index, interface index), for the default MAC.
fn interface(
    cx: &mut Cx<'_>,
    seen: &mut Seen<'_>,
    if_seen: &mut HashSet<String>,
    nname: &str,
    at: (usize, usize),
    ri: &RawIface,
) -> Interface {
    let iname = ri.name.get_ref().clone();
    let f = |field: &str| format!("node[{nname}].interface[{iname}].{field}");
    if iname.is_empty() || iname.len() > MAX_IFNAME || iname.contains(['/', ' ', ':', '.']) {
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
    let attach = attachment(cx, seen, nname, &iname, ri);
    let mac = interface_mac(cx, seen, nname, &iname, at, ri);
    let mut addresses = Vec::new();
    for a in &ri.addresses {
        let Some(parsed) = parse_ifaddr(a.get_ref()) else {
            cx.err(
                &a.span(),
                f("addresses"),
                format!(
                    "{:?} is not an address with a prefix length (198.18.0.1/24 or 2001:db8::1/64)",
                    a.get_ref()
                ),
            );
            continue;
        };
        if !address_allowed(&parsed) {
            cx.err(
                &a.span(),
                f("addresses"),
                format!("{parsed} is outside the allowed ranges: use 198.18.0.0/15 (prefix >= 15) or 2001:db8::/32 (prefix >= 32)"),
            );
        }
        if let Some(prev) = seen.addr.insert(parsed.addr, format!("{nname}:{iname}")) {
            cx.err(
                &a.span(),
                f("addresses"),
                format!("address {} is already used by {prev}", parsed.addr),
            );
        }
        addresses.push(parsed);
    }
    let impair = impairment(cx, ri, &f);
    Interface {
        name: iname,
        attach,
        mac,
        addresses,
        impair,
    }
}

/// What an interface is attached to: a switch, or a peer interface (declared from either side).
fn attachment(
    cx: &mut Cx<'_>,
    seen: &mut Seen<'_>,
    nname: &str,
    iname: &str,
    ri: &RawIface,
) -> Attachment {
    let f = |field: &str| format!("node[{nname}].interface[{iname}].{field}");
    match (&ri.switch, &ri.peer) {
        (Some(s), None) => {
            if !seen.switch_names.contains(s.get_ref().as_str()) {
                cx.err(
                    &s.span(),
                    f("switch"),
                    format!("unknown switch {:?}", s.get_ref()),
                );
            }
            let port = port_name(nname, iname);
            if port.len() > MAX_IFNAME {
                cx.err(
                    &ri.name.span(),
                    f("name"),
                    format!(
                        "switch port name {port:?} (node-interface) is longer than {MAX_IFNAME} characters; shorten the node or interface name"
                    ),
                );
            }
            if !seen
                .on_switch
                .insert((s.get_ref().clone(), nname.to_owned()))
            {
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
            match seen.node_ifaces.get(pn) {
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
                        format!("node {pn:?} has no interface {pi:?} (write \"node:interface\")"),
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
            let back = seen
                .nodes
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
                    cx.err(
                        &ri.name.span(),
                        f("switch"),
                        "an interface needs `switch = \"...\"` or `peer = \"node:interface\"`",
                    );
                    Attachment::Switch(String::new())
                }
            }
        }
    }
}

/// An interface's MAC: the one given (unicast, not zero, not taken) or a deterministic default.
fn interface_mac(
    cx: &mut Cx<'_>,
    seen: &mut Seen<'_>,
    nname: &str,
    iname: &str,
    (ni, ii): (usize, usize),
    ri: &RawIface,
) -> [u8; 6] {
    let f = |field: &str| format!("node[{nname}].interface[{iname}].{field}");
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
    if let Some(prev) = seen.mac.insert(mac, format!("{nname}:{iname}"))
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
    mac
}

/// A switch port's impairment, parsed to check it (kept as written).
fn impairment(cx: &mut Cx<'_>, ri: &RawIface, f: &dyn Fn(&str) -> String) -> Option<String> {
    ri.impair.as_ref().and_then(|imp| {
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
    })
}

/// A node's processes: valid, unique names and commands that split into words.
fn processes(cx: &mut Cx<'_>, nname: &str, rn: &RawNode) -> Vec<(std::ops::Range<usize>, Process)> {
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
    processes
}

/// The switches and their mirrors (each end a node with a port on that switch).
fn switches(
    cx: &mut Cx<'_>,
    raw: &[RawSwitch],
    on_switch: &HashSet<(String, String)>,
) -> Vec<Switch> {
    let mut switches = Vec::new();
    for rs in raw {
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
    switches
}

/// Process templates, checked against the finished topology (so they can name any node), then
/// given to their nodes.
fn check_templates(cx: &mut Cx<'_>, topo: &mut Topology, nodes: &[Checked<'_>]) {
    let dummy = PathBuf::from("/run");
    let mut all_procs = BTreeMap::new();
    for (rn, node, procs) in nodes {
        for (span, p) in procs {
            let env = TemplateEnv {
                topology: topo,
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
}
