//! Adapters: every shipped adapter renders every shipped topology it can express, the rendered
//! configurations are accepted by the implementations' own checkers where one is installed, and
//! a broken adapter is rejected with the file and line of the mistake.

use std::path::{Path, PathBuf};

use holdfast_harness::Topology;
use holdfast_harness::adapter::{Adapter, AdapterError};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn adapters() -> Vec<Adapter> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("adapters"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("adapter.toml").is_file())
        .collect();
    dirs.sort();
    dirs.iter()
        .map(|d| Adapter::load(d).unwrap_or_else(|e| panic!("{}: {e}", d.display())))
        .collect()
}

fn topologies() -> Vec<Topology> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("topologies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Topology::load(f).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn scratch(name: &str) -> holdfast_harness::ScratchDir {
    holdfast_harness::ScratchDir::new(&format!("holdfast-adapters-{name}")).unwrap()
}

#[test]
fn every_adapter_renders_every_topology_it_can_express() {
    let adapters = adapters();
    assert!(
        ["holdfastd", "keepalived"]
            .iter()
            .all(|n| adapters.iter().any(|a| a.name == *n)),
        "the shipped adapters are missing one of holdfastd, keepalived"
    );
    let mut rendered = 0;
    for a in &adapters {
        for t in topologies() {
            if let Some(why) = a.cannot_express(&t) {
                eprintln!("{} on {}: not expressible: {why}", a.name, t.name);
                continue;
            }
            let dir = scratch(&format!("{}-{}", a.name, t.name));
            let out = a
                .render(&t, &dir)
                .unwrap_or_else(|e| panic!("{} on {}: {e}", a.name, t.name));
            for m in &t.cluster.as_ref().unwrap().members {
                let before = t.node(&m.node).unwrap().processes.len();
                let after = out.node(&m.node).unwrap().processes.len();
                assert!(
                    after > before,
                    "{} on {}: no process on {}",
                    a.name,
                    t.name,
                    m.node
                );
                for f in &a.files {
                    assert!(dir.join(&m.node).join(&f.name).is_file());
                }
            }
            // Nodes that are not members (clients) get nothing.
            for n in &t.nodes {
                if t.cluster.as_ref().unwrap().member(&n.name).is_none() {
                    assert_eq!(out.node(&n.name).unwrap().processes, n.processes);
                }
            }
            rendered += 1;
            if std::env::var_os("HOLDFAST_KEEP_RENDERED").is_none() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    assert!(rendered >= 10, "only {rendered} renderings");
}

#[test]
fn keepalived_accepts_every_rendered_configuration() {
    let a = Adapter::load(root().join("adapters/keepalived")).unwrap();
    if !a.missing_programs().is_empty() {
        eprintln!("skipped: keepalived is not installed (.ci/run installs it)");
        return;
    }
    for t in topologies() {
        if a.cannot_express(&t).is_some() {
            continue;
        }
        let dir = scratch(&format!("kt-{}", t.name));
        a.render(&t, &dir).unwrap();
        for m in &t.cluster.as_ref().unwrap().members {
            let conf = dir.join(&m.node).join("keepalived.conf");
            let out = std::process::Command::new("keepalived")
                .arg("--config-test")
                .arg("--use-file")
                .arg(&conf)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "{}: keepalived --config-test: {}\n{err}",
                conf.display(),
                out.status
            );
            let text = std::fs::read_to_string(&conf).unwrap();
            let instances = text.matches("vrrp_instance").count();
            let groups = holdfast_harness::adapter::groups_of(t.cluster.as_ref().unwrap(), &m.node);
            assert_eq!(instances, groups.len(), "{}", conf.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// An adapter directory with one file changed.
/// An adapter from these files, and the directory that holds them (templates are read at
/// render time: keep it until then).
fn broken(
    name: &str,
    adapter_toml: &str,
    template: &str,
) -> (Result<Adapter, AdapterError>, holdfast_harness::ScratchDir) {
    let d = scratch(name);
    std::fs::write(d.join("adapter.toml"), adapter_toml).unwrap();
    std::fs::write(d.join("conf.j2"), template).unwrap();
    (Adapter::load(&d), d)
}

const GOOD: &str = r#"name = "x"
[[file]]
name = "x.conf"
template = "conf.j2"
[[process]]
name = "x"
command = "x --config {{ config_dir }}/x.conf"
"#;

#[test]
fn broken_adapters_are_rejected_with_their_line() {
    let two = Topology::load(root().join("topologies/two-node.toml")).unwrap();
    // Each: (adapter.toml, template, what the error must say).
    let cases: &[(&str, &str, &str)] = &[
        (GOOD, "{{ cluster.heartbeat }}", "undefined"),
        (GOOD, "{% for m in cluster.members %}", "line 1"),
        (GOOD, "{{ node.gruops }}", "undefined"),
        (
            &GOOD.replace("{{ config_dir }}", "{{ confg_dir }}"),
            "",
            "undefined",
        ),
        (
            &GOOD.replace("{{ config_dir }}", "{nod_dir}"),
            "",
            "unknown placeholder",
        ),
        (
            &format!("{GOOD}[supports]\nfailbak = [\"none\"]\n"),
            "",
            "adapter.toml:9: supports.failbak",
        ),
        (
            &format!("{GOOD}[supports]\nfailback = [\"never\"]\n"),
            "",
            "adapter.toml:9: supports.failback",
        ),
        (
            &GOOD.replace("conf.j2", "missing.j2"),
            "",
            "adapter.toml:2: file.template: cannot read",
        ),
        (
            &GOOD.replace("name = \"x\"\n[[file]]", "nam = \"x\"\n[[file]]"),
            "",
            "adapter.toml:1",
        ),
        (
            &format!("{GOOD}[[process]]\nname = \"x\"\ncommand = \"y\"\n"),
            "",
            "already has a process named",
        ),
    ];
    for (i, (toml, tpl, want)) in cases.iter().enumerate() {
        let (adapter, _dir) = broken(&format!("b{i}"), toml, tpl);
        let err = match adapter {
            Err(e) => e.to_string(),
            Ok(a) => match a.render(&two, &scratch(&format!("r{i}"))) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("case {i}: the broken adapter was accepted:\n{toml}\n{tpl}"),
            },
        };
        assert!(
            err.contains(want),
            "case {i}: {err:?} does not say {want:?}"
        );
    }
    // And the good one works.
    let (a, _dir) = broken("good", GOOD, "{{ node.node }} {{ cluster.heartbeat_ms }}");
    let a = a.unwrap();
    let d = scratch("good-out");
    a.render(&two, &d).unwrap();
    assert_eq!(std::fs::read_to_string(d.join("a/x.conf")).unwrap(), "a 10");
}

#[test]
fn an_adapter_says_what_it_cannot_express() {
    let k = Adapter::load(root().join("adapters/keepalived")).unwrap();
    let spread = Topology::load(root().join("topologies/three-node-spread.toml")).unwrap();
    let why = k.cannot_express(&spread).expect("keepalived cannot spread");
    assert!(why.contains("assignment = \"spread\""), "{why}");
    let basic = Topology::load(root().join("harness/tests/topologies/basic.toml")).unwrap();
    assert!(k.cannot_express(&basic).unwrap().contains("no [cluster]"));
}

/// `holdfast-harness check --adapter DIR TOPOLOGIES`: what an adapter's author runs; every shipped
/// adapter renders every topology it can express (or says why not), a broken one is refused
/// with its line.
#[test]
fn check_renders_an_adapter_for_each_topology() {
    let bin = env!("CARGO_BIN_EXE_holdfast-harness");
    let files: Vec<PathBuf> = topologies()
        .iter()
        .map(|t| root().join("topologies").join(format!("{}.toml", t.name)))
        .collect();
    for a in adapters() {
        let out = std::process::Command::new(bin)
            .arg("check")
            .arg("--adapter")
            .arg(&a.dir)
            .args(&files)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}\n{text}",
            a.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let said = text.matches(&format!("  {}: ", a.name)).count();
        assert_eq!(
            said,
            files.len(),
            "{}: one line per topology\n{text}",
            a.name
        );
    }
    // Nothing of the scratch rendering is left; --out keeps the files.
    let left = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                let child_of_ours = n.starts_with("holdfast-check-")
                    && !n.starts_with(&format!("holdfast-check-{}-", std::process::id()));
                child_of_ours
                    && e.metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|d| d.as_secs() < 60))
            })
            .count()
    };
    assert_eq!(
        left(),
        0,
        "`check` left its scratch rendering in the temp directory"
    );
    let kept = scratch("check-out");
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg("--adapter")
        .arg(root().join("adapters/holdfastd"))
        .arg("--out")
        .arg(&kept)
        .arg(root().join("topologies/two-node.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        kept.join("two-node/a/cluster.toml").is_file(),
        "--out kept nothing: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let d = scratch("check-broken");
    std::fs::write(
        d.join("adapter.toml"),
        GOOD.replace("name = \"x\"\n[[file]]", "nam = \"x\"\n[[file]]"),
    )
    .unwrap();
    std::fs::write(d.join("conf.j2"), "").unwrap();
    let out = std::process::Command::new(bin)
        .arg("check")
        .arg("--adapter")
        .arg(&d)
        .arg(&files[0])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("adapter.toml:1"), "{err}");
}
