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

pub(super) fn validate(cx: &mut Cx<'_>, raw: RawTopology, default_name: String) -> Topology {
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
