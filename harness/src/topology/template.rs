//! Process templates: the placeholders of a `command` (`{node}`, `{ip}`, `{b.ip:eth1}`, ...)
//! and their expansion.

use std::path::Path;

use super::*;

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
pub(super) const PLACEHOLDERS: &str = "{node} {run} {run_dir} {node_dir} {harness} {bin_dir} {topology_dir} {ip} {ip6} {mac}, \
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
