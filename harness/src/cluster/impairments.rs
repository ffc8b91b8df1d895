//! Impaired switch ports: where the cluster keeps each port's [`Impairment`] and runs its delay
//! line (`crate::impair`), across power cycles of the node.

use std::io;

use super::{BRIDGE, Cluster, ctx};
use crate::impair::{DelayLine, Impairment};
use crate::topology::{Attachment, port_name};

impl Cluster {
    /// The names of the veth pair that joins an impaired node's port to the bridge: the end the
    /// delay line writes to, and the node's bridge port.
    pub(super) fn line_names(node: &str) -> (String, String) {
        (format!("{node}-dl"), format!("{node}-dm"))
    }

    /// The node's bridge port on a switch: its own port, or the delay line's when impaired.
    pub(super) fn bridge_port(&self, sw: &str, node: &str, port: &str) -> String {
        if self.lines.contains_key(&(sw.to_owned(), node.to_owned())) {
            Self::line_names(node).1
        } else {
            port.to_owned()
        }
    }

    /// Sets (or, with an empty impairment, removes) the impairment of `target` (`node` or
    /// `switch:node`).
    pub(super) fn set_impairment(&mut self, target: &str, imp: Impairment) -> io::Result<()> {
        let (node, switches) = self.ports_of(target)?;
        let node = node.as_str();
        for s in switches {
            let key = (s.clone(), node.to_owned());
            if imp.is_none() {
                self.impairments.remove(&key);
            } else {
                self.impairments.insert(key, imp);
            }
            if self.powered(node) {
                self.apply_impairment(&s, node)?;
                self.apply_filters(&s)?;
            }
        }
        Ok(())
    }

    /// Makes the port of `node` on `sw` what its impairment says: in the bridge, or behind a
    /// running delay line.
    pub(super) fn apply_impairment(&mut self, sw: &str, node: &str) -> io::Result<()> {
        let key = (sw.to_owned(), node.to_owned());
        self.lines.remove(&key);
        let iface = self
            .topology
            .node(node)
            .and_then(|n| {
                n.interfaces
                    .iter()
                    .find(|i| matches!(&i.attach, Attachment::Switch(s) if s == sw))
            })
            .map(|i| i.name.clone())
            .ok_or_else(|| io::Error::other(format!("node {node} has no port on {sw}")))?;
        let port = port_name(node, &iface);
        let (line, bport) = Self::line_names(node);
        let Some(s) = self.switches.get(sw) else {
            return Ok(());
        };
        let nl = &s.ns.nl;
        let what = || format!("switch {sw}: impairment of {node}");
        if ctx(nl.link_index(&line), what)?.is_some() {
            ctx(nl.del_link(&line), what)?;
        }
        let Some(imp) = self.impairments.get(&key).copied() else {
            // Back into the bridge (it may already be there).
            return ctx(nl.set_master(&port, BRIDGE), what);
        };
        ctx(nl.add_veth(&line, None, &bport, None, s.ns.raw_fd()), what)?;
        ctx(nl.set_master(&bport, BRIDGE), what)?;
        ctx(nl.set_up(&bport, true), what)?;
        ctx(nl.set_up(&line, true), what)?;
        ctx(nl.set_nomaster(&port), what)?;
        let (pi, li) = (
            ctx(nl.link_index(&port), what)?.ok_or_else(|| io::Error::other("no port"))?,
            ctx(nl.link_index(&line), what)?.ok_or_else(|| io::Error::other("no line"))?,
        );
        let seed = crate::now_ns();
        let dl = s.ns.run(move || DelayLine::start(pi, li, imp, seed))??;
        self.lines.insert(key, dl);
        Ok(())
    }

    /// Stops the delay lines of a node (before its ports go away at a power-off).
    pub(super) fn stop_lines(&mut self, node: &str) {
        self.lines.retain(|(_, n), _| n != node);
    }
}
