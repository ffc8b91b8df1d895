//! Serving: the applications on the addresses (through `holdfast_proto::app::App`), and
//! [`ServedConnections`], every connection being served, by group owner.
//!
//! The listener binds the wildcard address (dual-stack when IPv6 is available), so it serves
//! whichever owned addresses this node currently holds. A connection taken over from a failed
//! owner is served by the same loop ([`serve`]), continuing the application from the replica's
//! checkpoint.

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use holdfast_proto::app::App;
use holdfast_proto::policy::NodeId;
use holdfast_proto::wire::FourTuple;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::guardian::{self, Guardian};

struct Entry {
    owner: NodeId,
    tuple: Option<FourTuple>,
    fd: RawFd,
    abort: Option<tokio::task::AbortHandle>,
}

/// Every live service connection, by group owner, so that a fenced node can drop a group's
/// connections silently, and so that the guardian holds a duplicate of each.
pub struct ServedConnections {
    /// The runtime the connections are served on: a thread of its own, so that thousands of
    /// connections never delay the cluster protocol's heartbeats on the daemon's loop.
    rt: tokio::runtime::Handle,
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Entry>>,
    guardian: Option<Guardian>,
    owner_of: HashMap<IpAddr, NodeId>,
    app: fn() -> Box<dyn App>,
}

impl ServedConnections {
    /// Served connections on `rt`; `owner_of` maps every owned address in the cluster to its
    /// owner.
    pub fn new(
        rt: tokio::runtime::Handle,
        guardian: Option<Guardian>,
        owner_of: HashMap<IpAddr, NodeId>,
        app: fn() -> Box<dyn App>,
    ) -> Arc<Self> {
        Arc::new(Self {
            rt,
            next: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            guardian,
            owner_of,
            app,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves a connection with `app`, registered under `owner` (or the owner of its local
    /// address).
    pub fn start(self: &Arc<Self>, c: Start) {
        self.start_many(vec![c]);
    }

    /// Serves many connections (a takeover's): registered at once, handed to the guardian in
    /// batches, each then served by a task on its runtime.
    pub fn start_many(self: &Arc<Self>, conns: Vec<Start>) {
        let mut ids = Vec::with_capacity(conns.len());
        {
            let mut m = self.lock();
            for c in &conns {
                let owner = c
                    .owner
                    .or_else(|| {
                        c.stream
                            .local_addr()
                            .ok()
                            .and_then(|a| self.owner_of.get(&canonical(a.ip())).copied())
                    })
                    .unwrap_or_default();
                let tuple =
                    c.tuple
                        .or_else(|| match (c.stream.local_addr(), c.stream.peer_addr()) {
                            (Ok(l), Ok(r)) => Some(FourTuple {
                                local: std::net::SocketAddr::new(canonical(l.ip()), l.port()),
                                remote: std::net::SocketAddr::new(canonical(r.ip()), r.port()),
                            }),
                            _ => None,
                        });
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                m.insert(
                    id,
                    Entry {
                        owner,
                        tuple,
                        fd: c.stream.as_raw_fd(),
                        abort: None,
                    },
                );
                ids.push(id);
            }
        }
        if let Some(g) = &self.guardian {
            let held: Vec<(u64, RawFd)> = ids
                .iter()
                .zip(&conns)
                .map(|(id, c)| (*id, c.stream.as_raw_fd()))
                .collect();
            if let Err(e) = g.hold_many(&held) {
                warn!("guardian: {e}");
            }
        }
        let mut handles = Vec::with_capacity(conns.len());
        for (id, c) in ids.iter().copied().zip(conns) {
            let me = self.clone();
            let h = self.rt.spawn(async move {
                let Start {
                    stream, app, first, ..
                } = c;
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(s) => serve(s, app, first).await,
                    Err(e) => warn!("serving a connection: {e}"),
                }
                me.finished(id);
            });
            handles.push((id, h.abort_handle()));
        }
        let mut m = self.lock();
        for (id, h) in handles {
            if let Some(e) = m.get_mut(&id) {
                e.abort = Some(h);
            }
        }
    }

    fn finished(&self, id: u64) {
        self.lock().remove(&id);
        if let Some(g) = &self.guardian {
            let _ = g.drop_conn(id);
        }
    }

    /// Puts every connection of `owner`'s group into repair mode, so that nothing more of it
    /// leaves this node, and keeps the sockets (they still exist, so nothing that arrives for
    /// them is answered with a reset) until [`ServedConnections::discard`].
    pub fn freeze(&self, owner: NodeId) -> usize {
        let m = self.lock();
        let mut n = 0;
        for e in m.values().filter(|e| e.owner == owner) {
            let _ = guardian::freeze(e.fd);
            n += 1;
        }
        n
    }

    /// Drops every connection of `owner`'s group without a FIN or RST: each socket goes into
    /// repair mode, then its task (and so the socket) is dropped.
    pub fn discard(&self, owner: NodeId) {
        let gone: Vec<(u64, Entry)> = {
            let mut m = self.lock();
            let ids: Vec<u64> = m
                .iter()
                .filter(|(_, e)| e.owner == owner)
                .map(|(i, _)| *i)
                .collect();
            ids.into_iter()
                .filter_map(|i| m.remove(&i).map(|e| (i, e)))
                .collect()
        };
        for (id, e) in &gone {
            let _ = guardian::freeze(e.fd);
            if let Some(a) = &e.abort {
                a.abort();
            }
            if let Some(g) = &self.guardian {
                let _ = g.drop_conn(*id);
            }
        }
        if !gone.is_empty() {
            info!(%owner, connections = gone.len(), "dropped silently (repair mode)");
        }
    }

    /// The live connections of `owner`'s group, sorted.
    pub fn connections(&self, owner: NodeId) -> Vec<FourTuple> {
        let mut v: Vec<FourTuple> = self
            .lock()
            .values()
            .filter(|e| e.owner == owner)
            .filter_map(|e| e.tuple)
            .collect();
        v.sort();
        v
    }

    /// Tells the guardian about an address this node holds or no longer holds.
    pub fn address(&self, addr: IpAddr, held: bool) {
        if let Some(g) = &self.guardian {
            let _ = g.address(addr, held);
        }
    }

    /// A fresh application instance.
    pub fn app(&self) -> Box<dyn App> {
        (self.app)()
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A connection to serve ([`ServedConnections::start`]).
pub struct Start {
    /// The socket.
    pub stream: std::net::TcpStream,
    /// The application, fresh or restored from a checkpoint.
    pub app: Box<dyn App>,
    /// The group it belongs to (default: the owner of its local address).
    pub owner: Option<NodeId>,
    /// Its addresses, when known (saves two syscalls).
    pub tuple: Option<FourTuple>,
    /// Output owed from before a takeover, sent first.
    pub first: Vec<u8>,
}

/// Starts the application on every port of the range, on its runtime.
pub fn spawn_listeners(ports: (u16, u16), registry: Arc<ServedConnections>) -> Result<()> {
    for port in ports.0..=ports.1 {
        let std = std::net::TcpListener::bind(("::", port))
            .or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))
            .with_context(|| format!("listen on port {port}"))?;
        // A long accept queue: a takeover can meet thousands of clients at once.
        // SAFETY: listen(2) again on a listening socket only changes its backlog.
        unsafe { libc::listen(std.as_raw_fd(), 4096) };
        std.set_nonblocking(true)?;
        let reg = registry.clone();
        registry.rt.spawn(async move {
            let l = match TcpListener::from_std(std) {
                Ok(l) => l,
                Err(e) => {
                    warn!(port, "listen: {e}");
                    return;
                }
            };
            loop {
                match l
                    .accept()
                    .await
                    .and_then(|(s, peer)| Ok((s.into_std()?, peer)))
                {
                    Ok((stream, peer)) => {
                        debug!(%peer, port, "connection");
                        reg.start(Start {
                            stream,
                            app: reg.app(),
                            owner: None,
                            tuple: None,
                            first: Vec::new(),
                        });
                    }
                    Err(e) => warn!("accept: {e}"),
                }
            }
        });
    }
    Ok(())
}

/// Serves one connection: `first` (output owed from before a takeover), then client bytes into
/// the application and its output back. The server's side closes (FIN) after the output, once
/// the client has closed its side or the application has finished; a finished application's
/// connection is still read, and the bytes dropped, until the client closes, so that nothing
/// the client sends meets a closed socket (which would answer with a reset).
pub async fn serve(mut s: TcpStream, mut app: Box<dyn App>, first: Vec<u8>) {
    let _ = s.set_nodelay(true);
    if !first.is_empty() && s.write_all(&first).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    let mut closed = false;
    loop {
        if app.finished() && !closed {
            closed = true;
            if !close_output(&mut s).await {
                return;
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) if closed => {}
            Ok(n) => {
                out.clear();
                app.input(&buf[..n], &mut out);
                if !out.is_empty() && s.write_all(&out).await.is_err() {
                    break;
                }
            }
        }
    }
    if !closed {
        close_output(&mut s).await;
    }
}

/// Sends our FIN after the output, unless the connection is frozen (repair mode: fenced,
/// migrating, or handed to the guardian), which must end without a FIN. Returns whether the
/// connection is still ours to serve.
async fn close_output(s: &mut TcpStream) -> bool {
    if guardian::in_repair(s.as_raw_fd()) {
        return false;
    }
    let _ = s.shutdown().await;
    true
}
