//! Case files with one mistake each are rejected at load, with the line and the field of the
//! mistake: no typo can make an expectation hold by matching nothing.

use holdfast_conformance::case::Case;

/// A valid case on `two-node` to break: `EXPECT` is replaced by the expectation under test.
const BASE: &str = r#"# Verify that a broken case is caught.
claims = [1]
topology = "two-node"

[[step]]
do = "client-start"
id = "s"
node = "client"
client = { workload = "stream", target = "198.18.0.10:7", bytes = 1000 }

[[step]]
do = "fault"
kind = "power-off"
node = "a"

[[step]]
do = "client-wait"
id = "s"

EXPECT"#;

/// (name, the text that replaces EXPECT, the line of the mistake, the field it names).
const BROKEN: &[(&str, &str, usize, &str)] = &[
    (
        "flag-letter",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { tcp_flags = \"RX\" }\n",
        23,
        "tcp_flags",
    ),
    (
        "flag-lowercase",
        "[[expect]]\nkind = \"exists\"\nwhat = \"x\"\nmatch = { tcp_flags = \"s\" }\n",
        23,
        "tcp_flags",
    ),
    (
        "flag-empty",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { tcp_flags = \"\" }\n",
        23,
        "tcp_flags",
    ),
    (
        "control-name",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { control = \"ANOUNCE\" }\n",
        23,
        "control",
    ),
    (
        "field-key",
        "[[expect]]\nkind = \"exists\"\nwhat = \"x\"\nmatch = { control = \"ANNOUNCE\", fields = { nodeid = \"1\" } }\n",
        23,
        "fields",
    ),
    (
        "fields-without-control",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { fields = { owner = \"1\" } }\n",
        23,
        "fields",
    ),
    (
        "node-name",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { node = \"c\", tcp_flags = \"R\" }\n",
        23,
        "node",
    ),
    (
        "port-switch",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { port = \"sw1:a\" }\n",
        23,
        "port",
    ),
    (
        "port-node",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { port = \"sw0:z\" }\n",
        23,
        "port",
    ),
    (
        "tcp-address",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { tcp_src = \"198.18.0.300:7\" }\n",
        23,
        "tcp_src",
    ),
    (
        "arp-address",
        "[[expect]]\nkind = \"exists\"\nwhat = \"x\"\nmatch = { arp_announce = \"a\" }\n",
        23,
        "arp_announce",
    ),
    (
        "eth-src",
        "[[expect]]\nkind = \"exists\"\nwhat = \"x\"\nmatch = { eth_src = \"bb\" }\n",
        23,
        "eth_src",
    ),
    (
        "event-kind",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nafter = \"poweroff:a\"\nmatch = { tcp_flags = \"R\" }\n",
        23,
        "after",
    ),
    (
        "event-node",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nbefore = \"power-off:q\"\nmatch = { tcp_flags = \"R\" }\n",
        23,
        "before",
    ),
    (
        "client-end-id",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nbefore = \"client-end:stream\"\nmatch = { tcp_flags = \"R\" }\n",
        23,
        "before",
    ),
    (
        "client-id",
        "[[expect]]\nkind = \"client\"\nwhat = \"x\"\nid = \"t\"\nresult = \"intact\"\n",
        23,
        "id",
    ),
    (
        "client-result",
        "[[expect]]\nkind = \"client\"\nwhat = \"x\"\nid = \"s\"\nresult = \"ok\"\n",
        24,
        "result",
    ),
    (
        "within",
        "[[expect]]\nkind = \"exists\"\nwhat = \"x\"\nafter = \"power-off:a\"\nwithin = \"soon\"\nmatch = { tcp_flags = \"S\" }\n",
        24,
        "within",
    ),
    (
        "continuity-service",
        "[[expect]]\nkind = \"continuity\"\nwhat = \"x\"\nservice = \"198.18.0.10\"\nafter = \"power-off:a\"\n",
        23,
        "service",
    ),
    (
        "order-then",
        "[[expect]]\nkind = \"order\"\nwhat = \"x\"\nfirst = { tcp_flags = \"S\" }\nthen = { control = \"HEARTBEET\" }\n",
        24,
        "control",
    ),
    (
        "unknown-key",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { tcp_flag = \"R\" }\n",
        23,
        "tcp_flag",
    ),
    (
        "step-node",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nmatch = { tcp_flags = \"R\" }\n\n[[step]]\ndo = \"fault\"\nkind = \"freeze\"\nnode = \"d\"\n",
        28,
        "node",
    ),
];

fn dir() -> holdfast_harness::ScratchDir {
    holdfast_harness::ScratchDir::new("holdfast-broken-cases").unwrap()
}

#[test]
fn the_base_case_loads() {
    let d = dir();
    let f = d.join("ok.toml");
    let text = BASE.replace(
        "EXPECT",
        "[[expect]]\nkind = \"none\"\nwhat = \"x\"\nafter = \"power-off:a\"\nbefore = \"client-end:s\"\nmatch = { port = \"sw0:b\", tcp_flags = \"RA\", control = \"HEARTBEAT\", eth_src = \"a\" }\n",
    );
    std::fs::write(&f, text).unwrap();
    Case::load(&d, &f).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn every_broken_case_is_rejected_with_its_line_and_field() {
    assert!(BROKEN.len() >= 15);
    let d = dir();
    let mut wrong = Vec::new();
    for (name, expect, line, field) in BROKEN {
        let f = d.join(format!("{name}.toml"));
        std::fs::write(&f, BASE.replace("EXPECT", expect)).unwrap();
        match Case::load(&d, &f) {
            Ok(_) => wrong.push(format!("{name}: loaded")),
            Err(e) => {
                let text = e.to_string();
                let hit = e
                    .problems
                    .iter()
                    .any(|p| p.line == *line && p.field.ends_with(field) && p.file == f);
                if !hit {
                    wrong.push(format!(
                        "{name}: wanted line {line}, field {field}; got:\n{text}"
                    ));
                }
                eprintln!("{name}: {text}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
