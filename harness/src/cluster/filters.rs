//! The switch ports' filters, re-applied whole whenever a fault changes them: partitions, random
//! loss, then mirrors.

use std::io;

use super::*;

impl Cluster {
    /// Re-applies every port filter (loss, then mirrors) on one switch.
    pub(super) fn apply_all_filters(&self) -> io::Result<()> {
        for sw in self.switches.keys() {
            self.apply_filters(sw)?;
        }
        Ok(())
    }

    pub(super) fn apply_filters(&self, sw: &str) -> io::Result<()> {
        let Some(s) = self.switches.get(sw) else {
            return Ok(());
        };
        let nl = &s.ns.nl;
        let ports: Vec<(String, String)> = self
            .topology
            .ports()
            .filter(|(x, n, _)| *x == sw && self.powered(&n.name))
            .map(|(_, n, i)| (n.name.clone(), port_name(&n.name, &i.name)))
            .collect();
        let port_of = |node: &str| {
            ports
                .iter()
                .find(|(n, _)| n == node)
                .map(|(_, p)| p.clone())
        };
        let mirrors = self
            .topology
            .switches
            .iter()
            .find(|x| x.name == sw)
            .map(|x| x.mirrors.clone())
            .unwrap_or_default();
        for (node, port) in &ports {
            ctx(nl.del_clsact(port), || format!("switch {sw}"))?;
            let loss = self
                .loss
                .get(&(sw.to_owned(), node.clone()))
                .copied()
                .unwrap_or(0.0);
            let mirror_to: Vec<String> = mirrors
                .iter()
                .filter(|m| &m.from == node)
                .flat_map(|m| m.to.iter().filter_map(|t| port_of(t)))
                .collect();
            // Frames from an impaired node enter the bridge on its delay line's port.
            let blocked_nodes = partition::blocked(&self.partitions, node);
            let blocked: Vec<i32> = blocked_nodes
                .iter()
                .filter_map(|n| port_of(n).map(|p| self.bridge_port(sw, n, &p)))
                .map(|p| nl.link_index(&p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io::Error::other(format!("switch {sw}: {e}")))?
                .into_iter()
                .flatten()
                .collect();
            let bport = self.bridge_port(sw, node, port);
            if bport != *port {
                ctx(nl.del_clsact(&bport), || format!("switch {sw}"))?;
            }
            if loss == 0.0 && mirror_to.is_empty() && blocked.is_empty() {
                continue;
            }
            ctx(nl.add_clsact(port), || format!("switch {sw}"))?;
            if !blocked.is_empty() {
                let macs: Vec<[u8; 6]> = self
                    .topology
                    .ports()
                    .filter(|(x, n, _)| *x == sw && blocked_nodes.contains(&n.name))
                    .map(|(_, _, i)| i.mac)
                    .collect();
                let prog = partition::load(&blocked, &macs)
                    .map_err(|e| io::Error::other(format!("load partition program: {e}")))?;
                // On the way to the node: out of the bridge, on its (delay line's) port.
                if bport != *port {
                    ctx(nl.add_clsact(&bport), || format!("switch {sw}"))?;
                }
                ctx(
                    nl.add_bpf(
                        &bport,
                        Hook::Egress,
                        PRIO_PARTITION,
                        &prog,
                        "holdfast-partition",
                    ),
                    || format!("switch {sw} port {port}"),
                )?;
            }
            if loss > 0.0 {
                let prog = loss::load(loss);
                for hook in [Hook::Ingress, Hook::Egress] {
                    ctx(
                        nl.add_bpf(port, hook, PRIO_LOSS, &prog, "holdfast-loss"),
                        || format!("switch {sw} port {port}"),
                    )?;
                }
            }
            if !mirror_to.is_empty() {
                for hook in [Hook::Ingress, Hook::Egress] {
                    ctx(nl.add_mirror(port, hook, PRIO_MIRROR, &mirror_to), || {
                        format!("switch {sw}: mirror {port} to {}", mirror_to.join(" "))
                    })?;
                }
            }
        }
        Ok(())
    }
}
