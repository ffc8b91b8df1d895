//! Topology and scenario validation: every malformed input gets an error naming the file, the
//! line and the field. Needs no privileges.

use std::path::Path;

use holdfast_harness::Topology;
use holdfast_harness::scenario::Scenario;

const GOOD: &str = r#"
[[switch]]
name = "sw0"

[[node]]
name = "a"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.1/24"] }]

[[node]]
name = "b"
interface = [{ name = "eth0", switch = "sw0", addresses = ["198.18.0.2/24"] }]
"#;

/// Checks that `text` fails with a problem on `line` whose field contains `field` and whose
/// message contains `msg`, and that the rendered error starts with `t.toml:LINE: `.
fn check(name: &str, text: &str, line: usize, field: &str, msg: &str) {
    let Err(err) = Topology::parse(Path::new("t.toml"), text) else {
        panic!("{name}: accepted a malformed topology");
    };
    let rendered = err.to_string();
    let hit = err
        .problems()
        .iter()
        .find(|p| p.line == line && p.field.contains(field) && p.message.contains(msg));
    assert!(
        hit.is_some(),
        "{name}: expected line {line}, field ~{field:?}, message ~{msg:?}; got:\n{rendered}"
    );
    assert!(
        rendered.contains(&format!("t.toml:{line}: ")),
        "{name}: rendering lacks file:line: {rendered}"
    );
}

#[test]
fn good_topology_parses() {
    let t = Topology::parse(Path::new("t.toml"), GOOD).unwrap();
    assert_eq!(t.nodes.len(), 2);
    assert_eq!(t.switches.len(), 1);
}

#[test]
fn shipped_topologies_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            Topology::load(&p).unwrap_or_else(|e| panic!("{e}"));
            let head = std::fs::read_to_string(&p).unwrap();
            assert!(
                head.starts_with('#'),
                "{}: needs a header comment with ASCII art",
                p.display()
            );
            n += 1;
        }
    }
    assert!(n >= 2);
}

/// GOOD with a two-member `[cluster]` on line 11: `extra` goes on line 12; the first member
/// (lines 13-16) is `node`, owning `owns`, backed up by `backups`.
fn cluster(extra: &str, node: &str, owns: &str, backups: &str) -> String {
    let pad = if extra.is_empty() { "\n" } else { "" };
    format!(
        "{}[cluster]\n{extra}{pad}[[cluster.member]]\nnode = \"{node}\"\nowns = [\"{owns}\"]\nbackups = [{backups}]\n[[cluster.member]]\nnode = \"b\"\nowns = [\"198.18.0.20/24\"]\nbackups = [\"a\"]\n",
        GOOD.trim_start()
    )
}

#[test]
fn malformed_topologies_name_file_line_and_field() {
    let cases: &[(&str, &str, usize, &str, &str)] = &[
        (
            "syntax error",
            "[[node]]\nname = \"a\"\ninterface = [\n",
            3,
            "interface",
            "unclosed array",
        ),
        (
            "unknown top-level field",
            "colour = \"red\"\n[[node]]\nname = \"a\"\n",
            1,
            "colour",
            "unknown field",
        ),
        (
            "unknown interface field",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\n[[node.interface]]\nname = \"eth0\"\nswitch = \"sw0\"\nspeed = 10\n",
            8,
            "speed",
            "unknown field",
        ),
        (
            "missing node name",
            "[[node]]\ninterface = []\n",
            1,
            "name",
            "missing field",
        ),
        (
            "wrong type",
            "[[node]]\nname = 5\n",
            2,
            "name",
            "invalid type",
        ),
        (
            "duplicate node",
            "[[node]]\nname = \"a\"\n[[node]]\nname = \"a\"\n",
            4,
            "node.name",
            "duplicate",
        ),
        (
            "node and switch share a name",
            "[[switch]]\nname = \"a\"\n[[node]]\nname = \"a\"\n",
            4,
            "node.name",
            "already a switch",
        ),
        (
            "bad node name",
            "[[node]]\nname = \"a-b\"\n",
            2,
            "node.name",
            "not a valid name",
        ),
        (
            "unknown switch",
            "[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw9\" }]\n",
            3,
            "node[a].interface[eth0].switch",
            "unknown switch",
        ),
        (
            "interface name too long",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"averyveryverylongname\", switch = \"sw0\" }]\n",
            5,
            "interface[averyveryverylongname].name",
            "not a valid interface name",
        ),
        (
            "switch port name too long",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"abcdefghijk\"\ninterface = [{ name = \"eth0\", switch = \"sw0\" }]\n",
            5,
            "interface[eth0].name",
            "longer than 15",
        ),
        (
            "duplicate interface",
            "[[switch]]\nname = \"sw0\"\n[[switch]]\nname = \"sw1\"\n[[node]]\nname = \"a\"\ninterface = [\n  { name = \"eth0\", switch = \"sw0\" },\n  { name = \"eth0\", switch = \"sw1\" },\n]\n",
            9,
            "interface[eth0].name",
            "duplicate interface",
        ),
        (
            "neither switch nor peer",
            "[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\" }]\n",
            3,
            "interface[eth0].switch",
            "needs `switch",
        ),
        (
            "both switch and peer",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", peer = \"b:eth0\" }]\n[[node]]\nname = \"b\"\ninterface = [{ name = \"eth0\", switch = \"sw0\" }]\n",
            5,
            "switch",
            "not both",
        ),
        (
            "peer on unknown node",
            "[[node]]\nname = \"a\"\ninterface = [{ name = \"p0\", peer = \"zz:p0\" }]\n",
            3,
            "interface[p0].peer",
            "unknown node",
        ),
        (
            "peer on unknown interface",
            "[[node]]\nname = \"a\"\ninterface = [{ name = \"p0\", peer = \"b:p9\" }]\n[[node]]\nname = \"b\"\ninterface = [{ name = \"p0\", peer = \"a:p0\" }]\n",
            3,
            "interface[p0].peer",
            "no interface",
        ),
        (
            "IPv4 address outside 198.18.0.0/15",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"10.0.0.1/24\"] }]\n",
            5,
            "addresses",
            "outside the allowed ranges",
        ),
        (
            "IPv4 prefix reaching outside",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.1/8\"] }]\n",
            5,
            "addresses",
            "outside the allowed ranges",
        ),
        (
            "IPv6 address outside 2001:db8::/32",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\n[[node.interface]]\nname = \"eth0\"\nswitch = \"sw0\"\naddresses = [\n  \"198.18.0.1/24\",\n  \"fd00::1/64\",\n]\n",
            10,
            "addresses",
            "outside the allowed ranges",
        ),
        (
            "address without prefix",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.1\"] }]\n",
            5,
            "addresses",
            "prefix length",
        ),
        (
            "duplicate address",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.1/24\"] }]\n[[node]]\nname = \"b\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", addresses = [\"198.18.0.1/24\"] }]\n",
            8,
            "node[b].interface[eth0].addresses",
            "already used by a:eth0",
        ),
        (
            "malformed MAC",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", mac = \"02:00:00\" }]\n",
            5,
            "mac",
            "not a MAC",
        ),
        (
            "multicast MAC",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", mac = \"01:00:5e:00:00:01\" }]\n",
            5,
            "mac",
            "multicast",
        ),
        (
            "duplicate MAC",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", mac = \"02:00:00:00:00:01\" }]\n[[node]]\nname = \"b\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", mac = \"02:00:00:00:00:01\" }]\n",
            8,
            "node[b].interface[eth0].mac",
            "already used",
        ),
        (
            "mirror of a node not on the switch",
            "[[switch]]\nname = \"sw0\"\nmirror = [{ from = \"c\", to = [\"b\"] }]\n[[switch]]\nname = \"sw1\"\n[[node]]\nname = \"b\"\ninterface = [{ name = \"eth0\", switch = \"sw0\" }]\n[[node]]\nname = \"c\"\ninterface = [{ name = \"eth0\", switch = \"sw1\" }]\n",
            3,
            "switch[sw0].mirror.from",
            "no port on switch",
        ),
        (
            "mirror to a node not on the switch",
            "[[switch]]\nname = \"sw0\"\nmirror = [{ from = \"b\", to = [\"zz\"] }]\n[[node]]\nname = \"b\"\ninterface = [{ name = \"eth0\", switch = \"sw0\" }]\n",
            3,
            "switch[sw0].mirror.to",
            "no port on switch",
        ),
        (
            "mirror to itself",
            "[[switch]]\nname = \"sw0\"\nmirror = [{ from = \"b\", to = [\"b\"] }]\n[[node]]\nname = \"b\"\ninterface = [{ name = \"eth0\", switch = \"sw0\" }]\n",
            3,
            "mirror.to",
            "itself",
        ),
        (
            "unknown placeholder",
            "[[node]]\nname = \"a\"\nprocess = [{ name = \"p\", command = \"echo {colour}\" }]\n",
            3,
            "node[a].process[p].command",
            "unknown placeholder",
        ),
        (
            "placeholder names an unknown node",
            "[[node]]\nname = \"a\"\nprocess = [{ name = \"p\", command = \"echo {zz.ip}\" }]\n",
            3,
            "node[a].process[p].command",
            "unknown node",
        ),
        (
            "empty command",
            "[[node]]\nname = \"a\"\nprocess = [{ name = \"p\", command = \"  \" }]\n",
            3,
            "command",
            "empty",
        ),
        (
            "duplicate process",
            "[[node]]\nname = \"a\"\nprocess = [\n  { name = \"p\", command = \"true\" },\n  { name = \"p\", command = \"true\" },\n]\n",
            5,
            "process[p].name",
            "duplicate process",
        ),
        ("no nodes", "name = \"empty\"\n", 1, "node", "at least one"),
        (
            "a route whose gateway is on none of the node's subnets",
            &format!(
                "{}routes = [\"default via 198.19.0.1\"]\n",
                GOOD.trim_start()
            ),
            11,
            "node[b].routes",
            "on none of the node's subnets",
        ),
        (
            "a bad impairment on an interface",
            "[[switch]]\nname = \"sw0\"\n[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"sw0\", impair = \"delay=20\" }]\n",
            5,
            "node[a].interface[eth0].impair",
            "not a duration",
        ),
        // [cluster]: GOOD has nodes a and b on sw0 (lines 1-10), so the cluster starts at 11.
        (
            "cluster: unknown failback",
            &cluster("failback = \"always\"\n", "a", "198.18.0.10/24", "\"b\""),
            12,
            "cluster.failback",
            "not one of: none, new-connections, migrate",
        ),
        (
            "cluster: member is no node",
            &cluster("", "z", "198.18.0.10/24", "\"b\""),
            14,
            "cluster.member[z].node",
            "no node \"z\"",
        ),
        (
            "cluster: backup is no member",
            &cluster("", "a", "198.18.0.10/24", "\"c\""),
            16,
            "cluster.member[a].backups",
            "not a member",
        ),
        (
            "cluster: owned address outside the test ranges",
            &cluster("", "a", "10.0.0.10/24", "\"b\""),
            15,
            "cluster.member[a].owns",
            "outside 198.18.0.0/15",
        ),
        (
            "cluster: owned address is a node's own",
            &cluster("", "a", "198.18.0.2/24", "\"b\""),
            15,
            "cluster.member[a].owns",
            "a node's own interface address",
        ),
        (
            "cluster: unknown field",
            &cluster("heartbeat = 10\n", "a", "198.18.0.10/24", "\"b\""),
            12,
            "heartbeat",
            "unknown field",
        ),
    ];
    assert!(cases.len() >= 15);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|(name, text, line, field, msg)| {
            std::panic::catch_unwind(|| check(name, text, *line, field, msg))
                .err()
                .map(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| name.to_string())
                })
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[[node]]\nname = \"a\"\ninterface = [{ name = \"eth0\", switch = \"nope\", addresses = [\"10.0.0.1/24\"] }]\n[[node]]\nname = \"a\"\n";
    let err = Topology::parse(Path::new("t.toml"), text).unwrap_err();
    assert!(err.problems().len() >= 3, "{err}");
}

#[test]
fn malformed_scenarios_name_file_line_and_field() {
    let topo = Topology::parse(Path::new("t.toml"), GOOD).unwrap();
    let cases: &[(&str, usize, &str, &str)] = &[
        ("[[step]]\ndo = \"dance\"\n", 2, "do", "unknown step"),
        (
            "[[step]]\ndo = \"wait\"\nfor = \"soon\"\n",
            3,
            "for",
            "not a duration",
        ),
        (
            "[[step]]\ndo = \"fault\"\nkind = \"power-off\"\nnode = \"zz\"\n",
            4,
            "node",
            "unknown node",
        ),
        (
            "[[step]]\ndo = \"fault\"\nkind = \"explode\"\nnode = \"a\"\n",
            3,
            "kind",
            "unknown fault",
        ),
        (
            "[[step]]\ndo = \"client-verify\"\nid = \"x\"\n",
            3,
            "id",
            "no earlier client-start",
        ),
        (
            "[[step]]\ndo = \"client-start\"\nid = \"x\"\nnode = \"a\"\nclient = { workload = \"stream\", target = \"{b.ip}:7\", colour = 1 }\n",
            5,
            "client",
            "unknown field",
        ),
        ("[[step]]\ndo = \"repeat\"\n", 2, "count", "needs `count`"),
        (
            "[[step]]\ndo = \"wait-connect\"\nnode = \"a\"\ntarget = \"b:7\"\n",
            4,
            "target",
            "not an address",
        ),
        (
            "[[step]]\ndo = \"wait-connect\"\nnode = \"a\"\ntarget = \"{b.ip}:7\"\ntimeout = \"later\"\n",
            5,
            "timeout",
            "not a duration",
        ),
        (
            "[[step]]\ndo = \"client-start\"\nid = \"x\"\nnode = \"a\"\nclient = { workload = \"stream\", target = \"{b.ip}:7\" }\n[[step]]\ndo = \"verify-takeover\"\nid = \"x\"\nfrom = \"a\"\nto = \"bb\"\n",
            10,
            "to",
            "unknown node",
        ),
        (
            "[[step]]\ndo = \"verify-takeover\"\nid = \"y\"\nfrom = \"a\"\nto = \"b\"\n",
            3,
            "id",
            "no earlier client-start",
        ),
    ];
    for (text, line, field, msg) in cases {
        let err = Scenario::parse(Path::new("s.toml"), text, &topo).unwrap_err();
        let hit = err
            .problems()
            .iter()
            .any(|p| p.line == *line && p.field.contains(field) && p.message.contains(msg));
        assert!(
            hit,
            "{text:?}: expected line {line} {field} ~{msg}; got {err}"
        );
    }
    // And a good one, with placeholders in the client table.
    let sc = Scenario::parse(
        Path::new("s.toml"),
        "[[step]]\ndo = \"client-start\"\nid = \"x\"\nnode = \"a\"\nclient = { workload = \"stream\", target = \"{b.ip}:7\" }\n[[step]]\ndo = \"repeat\"\ncount = 2\n[[step.step]]\ndo = \"wait\"\nfor = \"1ms\"\n",
        &topo,
    )
    .unwrap();
    assert_eq!(sc.steps.len(), 2);
}

#[test]
fn demo_scenario_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topo = Topology::load(root.join("topologies/two-node.toml")).unwrap();
    Scenario::load(&root.join("scenarios/demo.toml"), &topo).unwrap_or_else(|e| panic!("{e}"));
}

/// `holdfast-harness graph`: every shipped topology draws, with a node per node, an edge per
/// link and per mirror; with Graphviz installed, the SVG names them all.
#[test]
fn every_shipped_topology_draws() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies");
    let have_dot = std::process::Command::new("dot").arg("-V").output().is_ok();
    // This run's own directory: another user's run may have left its drawings in /tmp.
    let out_dir = std::env::temp_dir().join(format!("holdfast-graphs-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let t = Topology::load(&p).unwrap();
        let dot = holdfast_harness::graph::dot(&t);
        for n in &t.nodes {
            assert!(
                dot.contains(&format!("  \"{}\" [", n.name)),
                "{}: {}",
                p.display(),
                n.name
            );
        }
        let links: usize = t.nodes.iter().map(|n| n.interfaces.len()).sum();
        let mirrors: usize = t
            .switches
            .iter()
            .flat_map(|s| s.mirrors.iter())
            .map(|m| m.to.len())
            .sum();
        assert_eq!(
            dot.matches(" -- ").count(),
            links + mirrors,
            "{}",
            p.display()
        );
        if have_dot {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_holdfast-harness"))
                .arg("graph")
                .arg(&p)
                .arg("--svg")
                .arg(out_dir.join(format!("{}.svg", t.name)))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let svg = std::fs::read_to_string(out_dir.join(format!("{}.svg", t.name))).unwrap();
            for n in &t.nodes {
                assert!(
                    svg.contains(&format!(">{}</text>", n.name)),
                    "{}: {} not drawn",
                    p.display(),
                    n.name
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    if !have_dot {
        holdfast_harness::report_skip(
            "graph: Graphviz's dot is not installed: DOT checked, no SVG drawn",
        );
    }
}
