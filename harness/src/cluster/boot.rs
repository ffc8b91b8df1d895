//! Booting a node: its namespace, links, addresses and routes, then its processes, and waiting
//! until they run.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use super::*;

impl Cluster {
    /// Creates a node's namespace, links and addresses, and starts its processes.
    pub(super) fn boot(
        &mut self,
        name: &str,
        start: bool,
        only_restartable: bool,
    ) -> io::Result<()> {
        let node = self
            .topology
            .node(name)
            .cloned()
            .ok_or_else(|| io::Error::other(format!("unknown node {name:?}")))?;
        let ns_name = RunRecord::ns_name(&self.record.id, name);
        let ns = ctx(NetNs::create(&ns_name), || format!("node {name}"))?;
        std::fs::create_dir_all(self.record.run_dir.join(name))?;
        for iface in &node.interfaces {
            match &iface.attach {
                Attachment::Switch(sw) => {
                    let port = port_name(name, &iface.name);
                    let s = self
                        .switches
                        .get(sw)
                        .ok_or_else(|| io::Error::other(format!("unknown switch {sw}")))?;
                    let what = || format!("node {name} interface {}", iface.name);
                    ctx(
                        s.ns.nl
                            .add_veth(&port, None, &iface.name, Some(iface.mac), ns.raw_fd()),
                        what,
                    )?;
                    ctx(s.ns.nl.set_master(&port, BRIDGE), what)?;
                    ctx(s.ns.nl.set_up(&port, true), what)?;
                    if let Some(cap) = &s.capture
                        && let Some(idx) = ctx(s.ns.nl.link_index(&port), what)?
                    {
                        cap.bind(idx, &Self::idb_name(sw, name));
                    }
                    configure_iface(&ns, iface)?;
                }
                Attachment::Peer {
                    node: pn,
                    iface: pi,
                } => {
                    let Some(peer_ns) = self.nodes.get(pn).and_then(|p| p.ns.as_ref()) else {
                        // The peer is not up; it creates the link when it boots.
                        continue;
                    };
                    let peer_if = self
                        .topology
                        .node(pn)
                        .and_then(|n| n.interface(pi))
                        .cloned()
                        .ok_or_else(|| io::Error::other(format!("unknown peer {pn}:{pi}")))?;
                    ctx(
                        ns.nl.add_veth(
                            &iface.name,
                            Some(iface.mac),
                            pi,
                            Some(peer_if.mac),
                            peer_ns.raw_fd(),
                        ),
                        || format!("link {name}:{} <-> {pn}:{pi}", iface.name),
                    )?;
                    configure_iface(&ns, iface)?;
                    configure_iface(peer_ns, &peer_if)?;
                }
            }
        }
        if node.forward {
            ns.run(|| {
                netns::sysctl("net.ipv4.ip_forward", "1")?;
                netns::sysctl("net.ipv6.conf.all.forwarding", "1")
            })??;
        }
        for r in &node.routes {
            ctx(
                ns.nl.add_route(r.dst.map(|d| (d.addr, d.prefix)), r.via),
                || format!("node {name}: route {r}"),
            )?;
        }
        self.nodes.insert(
            name.to_owned(),
            NodeState {
                ns: Some(ns),
                procs: Vec::new(),
            },
        );
        // Port filters (mirrors, loss) refer to ports by ifindex, so a re-created port needs
        // them again, on every switch the node is on.
        let switches: Vec<String> = node
            .interfaces
            .iter()
            .filter_map(|i| match &i.attach {
                Attachment::Switch(s) => Some(s.clone()),
                Attachment::Peer { .. } => None,
            })
            .collect();
        for sw in switches {
            if self
                .impairments
                .contains_key(&(sw.clone(), name.to_owned()))
            {
                self.apply_impairment(&sw, name)?;
            }
            self.apply_filters(&sw)?;
        }
        // Ready means carrier: wait until every switch-side link of the node is running, so its
        // processes never start on a link that is still coming up.
        self.wait_running(name, &node)?;
        if start {
            for p in &node.processes {
                if only_restartable && !p.restart {
                    continue;
                }
                self.start_process(&node, &p.name)?;
            }
        }
        Ok(())
    }

    pub(super) fn wait_running(&self, name: &str, node: &Node) -> io::Result<()> {
        let Some(ns) = self.node_ns(name) else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        for iface in &node.interfaces {
            if let Attachment::Peer { node: pn, .. } = &iface.attach
                && !self.powered(pn)
            {
                continue;
            }
            loop {
                let flags = ctx(ns.nl.link_flags(&iface.name), || format!("node {name}"))?;
                if flags.is_some_and(|f| f & libc::IFF_RUNNING as u32 != 0) {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(io::Error::other(format!(
                        "node {name} interface {}: no carrier after 3 s",
                        iface.name
                    )));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    }

    pub(super) fn start_process(&mut self, node: &Node, pname: &str) -> io::Result<()> {
        let p = node
            .processes
            .iter()
            .find(|p| p.name == pname)
            .ok_or_else(|| {
                io::Error::other(format!("node {} has no process {pname}", node.name))
            })?;
        let env = TemplateEnv {
            topology: &self.topology,
            node: &node.name,
            run: &self.record.id,
            run_dir: &self.record.run_dir,
            harness: &self.harness_bin,
        };
        let argv = p
            .command
            .iter()
            .map(|a| topology::expand(a, &env))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let state = self
            .nodes
            .get_mut(&node.name)
            .ok_or_else(|| io::Error::other("node not booted"))?;
        let ns = state
            .ns
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("node {} is powered off", node.name)))?;
        let spec = SpawnSpec {
            argv,
            netns: std::os::fd::OwnedFd::from(File::open(
                Path::new(netns::NETNS_DIR).join(ns.name()),
            )?),
            log: self
                .record
                .run_dir
                .join(&node.name)
                .join(format!("{pname}.log")),
            env: vec![
                ("HOLDFAST_NODE".into(), node.name.clone()),
                ("HOLDFAST_RUN".into(), self.record.id.clone()),
                (
                    "HOLDFAST_RUN_DIR".into(),
                    self.record.run_dir.display().to_string(),
                ),
            ],
            die_with_parent: true,
        };
        let child = self
            .spawner
            .as_ref()
            .ok_or_else(|| io::Error::other("cluster is down"))?
            .spawn(spec)?;
        state.procs.push((pname.to_owned(), child));
        Ok(())
    }
}

/// Brings an interface up with its addresses, enabling IPv6 on it only if it has an IPv6
/// address.
pub(super) fn configure_iface(ns: &NetNs, iface: &topology::Interface) -> io::Result<()> {
    let what = || format!("{} interface {}", ns.name(), iface.name);
    if iface.has_ipv6() {
        let name = iface.name.clone();
        ns.run(move || netns::sysctl(&format!("net.ipv6.conf.{name}.disable_ipv6"), "0"))??;
    }
    for a in &iface.addresses {
        ctx(ns.nl.add_addr(&iface.name, a.addr, a.prefix), what)?;
    }
    ctx(ns.nl.set_up(&iface.name, true), what)
}
