//! `holdfast-harness graph`: a topology as a Graphviz DOT graph (and SVG where `dot` is
//! installed): switches as boxes, nodes with their addresses, links with their interface and
//! impairment, mirrors as dashed arrows, routers and the failover cluster's owned addresses.

use std::fmt::Write as _;

use crate::topology::{Attachment, Topology};

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The DOT text of a topology.
pub fn dot(t: &Topology) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "graph {} {{", q(&t.name));
    let _ = writeln!(
        s,
        "  graph [rankdir=TB, fontname=\"sans-serif\", label={}, labelloc=t];\n  node [fontname=\"sans-serif\", fontsize=10];\n  edge [fontname=\"sans-serif\", fontsize=9];",
        q(&t.name)
    );
    for sw in &t.switches {
        let kind = if sw.hub { "hub" } else { "bridge" };
        let _ = writeln!(
            s,
            "  {} [shape=box, style=filled, fillcolor=\"#eeeeee\", label={}];",
            q(&format!("switch:{}", sw.name)),
            q(&format!("{} ({kind})", sw.name))
        );
    }
    for n in &t.nodes {
        let mut label = n.name.clone();
        for i in &n.interfaces {
            for a in &i.addresses {
                label.push_str(&format!("\\n{} {a}", i.name));
            }
        }
        if let Some(m) = t.cluster.as_ref().and_then(|c| c.member(&n.name)) {
            label.push_str(&format!(
                "\\nowns {}\\nbackups: {}",
                m.owns.join(", "),
                m.backups.join(", ")
            ));
        }
        for r in &n.routes {
            label.push_str(&format!("\\nroute {r}"));
        }
        let shape = if n.forward { "diamond" } else { "ellipse" };
        let fill = if t
            .cluster
            .as_ref()
            .is_some_and(|c| c.member(&n.name).is_some())
        {
            "#d6eaf8"
        } else {
            "#ffffff"
        };
        let _ = writeln!(
            s,
            "  {} [shape={shape}, style=filled, fillcolor=\"{fill}\", label={}];",
            q(&n.name),
            q(&label).replace("\\\\n", "\\n")
        );
    }
    let mut peers_done = std::collections::BTreeSet::new();
    for n in &t.nodes {
        for i in &n.interfaces {
            let mut label = i.name.clone();
            if let Some(imp) = &i.impair {
                label.push_str(&format!("\\n{imp}"));
            }
            match &i.attach {
                Attachment::Switch(sw) => {
                    let _ = writeln!(
                        s,
                        "  {} -- {} [label={}{}];",
                        q(&n.name),
                        q(&format!("switch:{sw}")),
                        q(&label).replace("\\\\n", "\\n"),
                        if i.impair.is_some() {
                            ", color=\"#c0392b\""
                        } else {
                            ""
                        }
                    );
                }
                Attachment::Peer { node, iface } => {
                    let key = if n.name < *node {
                        (n.name.clone(), node.clone())
                    } else {
                        (node.clone(), n.name.clone())
                    };
                    if peers_done.insert(key) {
                        let _ = writeln!(
                            s,
                            "  {} -- {} [label={}];",
                            q(&n.name),
                            q(node),
                            q(&format!("{} - {iface}", i.name))
                        );
                    }
                }
            }
        }
    }
    for sw in &t.switches {
        for m in &sw.mirrors {
            for to in &m.to {
                let _ = writeln!(
                    s,
                    "  {} -- {} [style=dashed, dir=forward, color=\"#2471a3\", label=\"mirror\", constraint=false];",
                    q(&m.from),
                    q(to)
                );
            }
        }
    }
    s.push_str("}\n");
    s
}
