//! Faults: power-off and power-on, isolate and heal, freeze and thaw, crash, loss, partitions and
//! impairments.

use std::io;
use std::time::Duration;

use super::*;

impl Cluster {
    /// Sets a node's switch-side ports (and the far ends of its point-to-point links) up or
    /// down.
    pub(super) fn set_links(&self, node: &str, up: bool) -> io::Result<()> {
        let n = self
            .topology
            .node(node)
            .ok_or_else(|| io::Error::other(format!("unknown node {node:?}")))?;
        for iface in &n.interfaces {
            match &iface.attach {
                Attachment::Switch(sw) => {
                    if let Some(s) = self.switches.get(sw) {
                        ctx(s.ns.nl.set_up(&port_name(node, &iface.name), up), || {
                            format!("node {node}")
                        })?;
                    }
                }
                Attachment::Peer {
                    node: pn,
                    iface: pi,
                } => {
                    if let Some(pns) = self.node_ns(pn) {
                        ctx(pns.nl.set_up(pi, up), || format!("node {node}"))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies a fault, recording it (and its completion) in the event log.
    pub fn fault(&mut self, fault: &Fault) -> io::Result<()> {
        let node = fault.node().to_owned();
        let node_name = node.split(':').next_back().unwrap_or(&node).to_owned();
        if self.topology.node(&node_name).is_none() {
            return Err(io::Error::other(format!(
                "unknown node {node_name:?}; nodes: {}",
                self.topology
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )));
        }
        if let Fault::Partition { from, to, .. } = fault
            && let Some(n) = from
                .iter()
                .chain(to)
                .find(|n| self.topology.node(n).is_none())
        {
            return Err(io::Error::other(format!("partition: unknown node {n:?}")));
        }
        let kind = fault.kind();
        let detail = match fault {
            Fault::Crash { process, .. } => process.clone(),
            Fault::Loss { pct, .. } => format!("{pct}%"),
            Fault::Partition { from, to, .. } => format!("{} | {}", from.join(","), to.join(",")),
            Fault::Impair { impairment, .. } => format!("{impairment:?}"),
            _ => String::new(),
        };
        self.event(kind, Some(&node_name), &detail);
        match fault {
            Fault::PowerOff { .. } => self.power_off(&node)?,
            Fault::PowerOn { .. } => {
                if self.powered(&node) {
                    return Err(io::Error::other(format!(
                        "node {node} is already powered on"
                    )));
                }
                self.boot(&node, true, true)?;
            }
            Fault::Isolate { .. } => {
                self.node_inode(&node)?;
                self.set_links(&node, false)?;
            }
            Fault::Heal { .. } => {
                self.node_inode(&node)?;
                self.set_links(&node, true)?;
            }
            Fault::Freeze { .. } => {
                netns::signal_all(&[self.node_inode(&node)?], libc::SIGSTOP);
            }
            Fault::Thaw { .. } => {
                netns::signal_all(&[self.node_inode(&node)?], libc::SIGCONT);
            }
            Fault::Crash { process, .. } => self.crash(&node, process)?,
            Fault::Loss { pct, .. } => self.set_loss(&node, *pct)?,
            Fault::Partition {
                from, to, one_way, ..
            } => {
                self.partitions.push(Partition {
                    from: from.clone(),
                    to: to.clone(),
                    one_way: *one_way,
                });
                self.apply_all_filters()?;
            }
            Fault::HealPartition { .. } => {
                self.partitions.clear();
                self.apply_all_filters()?;
            }
            Fault::Impair { impairment, .. } => self.set_impairment(&node, *impairment)?,
        }
        self.event(&format!("{kind}:done"), Some(&node_name), "");
        Ok(())
    }

    pub(super) fn power_off(&mut self, node: &str) -> io::Result<()> {
        let inode = self.node_inode(node)?;
        // 1. The plug: no frame leaves the node after this (its delay lines stop too).
        self.set_links(node, false)?;
        self.stop_lines(node);
        self.event("power-off:links-down", Some(node), "");
        // 2. Every process in the namespace, ours or not.
        netns::kill_all(&[inode], Duration::from_secs(5))?;
        let state = self.nodes.get_mut(node).expect("powered node has state");
        for (_, c) in &mut state.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        state.procs.clear();
        // 3. The namespace and all its kernel state. Deleting the switch-side ports first cuts
        //    the veths at once, even if orphaned sockets keep the namespace alive a little.
        let ns = state.ns.take().expect("checked powered");
        let n = self.topology.node(node).cloned().expect("known node");
        for iface in &n.interfaces {
            if let Attachment::Switch(sw) = &iface.attach
                && let Some(s) = self.switches.get(sw)
            {
                let port = port_name(node, &iface.name);
                if ctx(s.ns.nl.link_index(&port), || format!("node {node}"))?.is_some() {
                    ctx(s.ns.nl.del_link(&port), || format!("node {node}"))?;
                }
            }
        }
        let name = ns.name().to_owned();
        drop(ns);
        netns::remove(&name)?;
        Ok(())
    }

    pub(super) fn crash(&mut self, node: &str, process: &str) -> io::Result<()> {
        let state = self
            .nodes
            .get_mut(node)
            .filter(|s| s.ns.is_some())
            .ok_or_else(|| io::Error::other(format!("node {node:?} is powered off")))?;
        let mut found = false;
        for (name, c) in &mut state.procs {
            if name == process && matches!(c.try_wait(), Ok(None)) {
                // The process leads its own session and group: kill the group.
                // SAFETY: kill(2) on a process group we created.
                unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
                let _ = c.wait();
                found = true;
            }
        }
        if found {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "node {node} has no running process {process:?}"
            )))
        }
    }

    /// The node and the switches of its ports that `target` (`node` or `switch:node`) names.
    pub(super) fn ports_of(&self, target: &str) -> io::Result<(String, Vec<String>)> {
        let (sw, node) = match target.split_once(':') {
            Some((s, n)) => (Some(s), n),
            None => (None, target),
        };
        let n = self
            .topology
            .node(node)
            .ok_or_else(|| io::Error::other(format!("unknown node {node:?}")))?;
        let switches: Vec<String> = n
            .interfaces
            .iter()
            .filter_map(|i| match &i.attach {
                Attachment::Switch(s) if sw.is_none_or(|x| x == s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        if switches.is_empty() {
            return Err(io::Error::other(format!("{target}: no such switch port")));
        }
        Ok((node.to_owned(), switches))
    }

    pub(super) fn set_loss(&mut self, target: &str, pct: f64) -> io::Result<()> {
        let (node, switches) = self.ports_of(target)?;
        for s in switches {
            self.loss.insert((s.clone(), node.clone()), pct);
            self.apply_filters(&s)?;
        }
        Ok(())
    }
}
