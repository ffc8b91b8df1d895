//! Client workloads on real kernel TCP, and the small servers they talk to.
//!
//! Read [`ClientSpec`] and [`run`] first. A workload opens one or more connections and verifies
//! every byte it gets back against a seeded pattern ([`pattern`]), recording per connection the
//! resets, unexpected EOFs, bytes verified and the longest gap between successive progress
//! (the *stall*). Workloads run on a tokio current-thread runtime; the cluster runs each on a
//! thread of its own that has entered the client node's namespace
//! ([`crate::Cluster::start_client`]).
//!
//! Workloads:
//! - `stream`: send N bytes to an echo service and verify every byte that comes back, in order.
//! - `request`: fixed-size request/response exchanges at a set rate against an echo service.
//! - `download`: ask a `stream` service for N bytes of a seeded stream and verify them.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

mod services;
mod workloads;

pub use services::{Service, serve};
pub use workloads::kv_script;
use workloads::*;

/// A deterministic byte stream: byte `i` of stream `seed`, computable at any offset so that a
/// reader or a resumed writer can start anywhere.
pub mod pattern {
    fn mix(mut z: u64) -> u64 {
        // splitmix64
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `buf` with bytes `offset..offset + buf.len()` of stream `seed`.
    pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < buf.len() {
            let word = mix(seed ^ (pos / 8).wrapping_mul(0xD6E8_FEB8_6659_FD93)).to_le_bytes();
            let start = (pos % 8) as usize;
            let take = (8 - start).min(buf.len() - i);
            buf[i..i + take].copy_from_slice(&word[start..start + take]);
            i += take;
            pos += take as u64;
        }
    }

    /// The first offset at which `data` differs from the stream, if any.
    pub fn mismatch(seed: u64, offset: u64, data: &[u8]) -> Option<u64> {
        let mut expect = vec![0u8; data.len()];
        fill(seed, offset, &mut expect);
        data.iter()
            .zip(&expect)
            .position(|(a, b)| a != b)
            .map(|p| offset + p as u64)
    }
}

/// Which workload a client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Send bytes to an echo service and verify the echo.
    Stream,
    /// Request/response exchanges against an echo service.
    Request,
    /// Download a seeded stream from a `stream` service.
    Download,
    /// A key-value session (SET/GET lines) against a `kv` service, checking every answer.
    Kv,
}

/// A client workload, as given in a scenario or on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// The workload.
    pub workload: Workload,
    /// The service address.
    pub target: SocketAddr,
    /// Concurrent connections.
    #[serde(default = "one")]
    pub connections: usize,
    /// Bytes per connection (stream, download).
    #[serde(default = "default_bytes")]
    pub bytes: u64,
    /// Pattern seed; connection `i` uses `seed + i`.
    #[serde(default)]
    pub seed: u64,
    /// Request size in bytes (request).
    #[serde(default = "default_size")]
    pub size: usize,
    /// Requests per connection (request).
    #[serde(default = "default_count")]
    pub count: u64,
    /// Requests per second per connection (request); 0 means as fast as possible.
    #[serde(default)]
    pub rate: f64,
    /// Give up on a connection that makes no progress for this long.
    #[serde(default = "default_stall_ms")]
    pub stall_timeout_ms: u64,
    /// Pause between writes in a stream, to spread it over time (0: none).
    #[serde(default)]
    pub pace_us: u64,
    /// Stream: pause between 16 KiB reads (a slow reader, whose echo queues at the server).
    #[serde(default)]
    pub read_pace_us: u64,
    /// Stream: half-close (FIN) as soon as everything is written, then read the rest of the
    /// echo, and require the server's FIN (EOF) right after the last byte.
    #[serde(default)]
    pub half_close: bool,
}

fn one() -> usize {
    1
}
fn default_bytes() -> u64 {
    1 << 20
}
fn default_size() -> usize {
    64
}
fn default_count() -> u64 {
    100
}
fn default_stall_ms() -> u64 {
    10_000
}

impl ClientSpec {
    /// A spec with defaults for everything but the workload and target.
    pub fn new(workload: Workload, target: SocketAddr) -> Self {
        Self {
            workload,
            target,
            connections: 1,
            bytes: default_bytes(),
            seed: 0,
            size: default_size(),
            count: default_count(),
            rate: 0.0,
            stall_timeout_ms: default_stall_ms(),
            pace_us: 0,
            read_pace_us: 0,
            half_close: false,
        }
    }
}

/// What one connection saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnReport {
    /// Connection index.
    pub id: usize,
    /// The client's local address, to find the flow in a capture.
    pub local: Option<String>,
    /// Bytes the connection should have verified.
    pub bytes_expected: u64,
    /// Bytes verified, in order.
    pub bytes_verified: u64,
    /// Connection resets seen (ECONNRESET, EPIPE).
    pub resets: u32,
    /// EOFs before all bytes were verified.
    pub eofs: u32,
    /// The longest gap between successive progress, in milliseconds.
    pub max_stall_ms: f64,
    /// Wall time of the connection, in milliseconds.
    pub duration_ms: f64,
    /// Other failures: connect errors, stalls, mismatches.
    pub errors: Vec<String>,
}

impl ConnReport {
    /// Whether every byte was verified with no reset, EOF or other error.
    pub fn intact(&self) -> bool {
        self.resets == 0
            && self.eofs == 0
            && self.errors.is_empty()
            && self.bytes_verified == self.bytes_expected
    }

    fn fail(&mut self, e: &io::Error) {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => self.resets += 1,
            io::ErrorKind::UnexpectedEof => self.eofs += 1,
            _ => self.errors.push(e.to_string()),
        }
    }
}

/// What a client run saw, over all its connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientReport {
    /// The spec that ran.
    pub spec: ClientSpec,
    /// One report per connection.
    pub connections: Vec<ConnReport>,
    /// When the client started, in ns since the epoch (the capture clock).
    #[serde(default)]
    pub started_ns: u64,
    /// When the last connection finished, in ns since the epoch (the capture clock).
    #[serde(default)]
    pub finished_ns: u64,
}

impl ClientReport {
    /// Whether every connection is intact.
    pub fn intact(&self) -> bool {
        self.connections.iter().all(ConnReport::intact)
    }

    /// Total resets.
    pub fn resets(&self) -> u32 {
        self.connections.iter().map(|c| c.resets).sum()
    }

    /// Total unexpected EOFs.
    pub fn eofs(&self) -> u32 {
        self.connections.iter().map(|c| c.eofs).sum()
    }

    /// The longest stall of any connection, in ms.
    pub fn max_stall_ms(&self) -> f64 {
        self.connections
            .iter()
            .map(|c| c.max_stall_ms)
            .fold(0.0, f64::max)
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let verified: u64 = self.connections.iter().map(|c| c.bytes_verified).sum();
        let expected: u64 = self.connections.iter().map(|c| c.bytes_expected).sum();
        let errors: Vec<&str> = self
            .connections
            .iter()
            .flat_map(|c| c.errors.iter().map(String::as_str))
            .take(3)
            .collect();
        format!(
            "{:?} x{} to {}: {verified}/{expected} bytes verified, {} resets, {} EOFs, max stall {:.1} ms{}",
            self.spec.workload,
            self.connections.len(),
            self.spec.target,
            self.resets(),
            self.eofs(),
            self.max_stall_ms(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(", errors: {}", errors.join("; "))
            }
        )
    }
}

/// Tracks progress times for the stall figure.
struct Progress {
    last: Instant,
    max: Duration,
}

impl Progress {
    fn new() -> Self {
        Self {
            last: Instant::now(),
            max: Duration::ZERO,
        }
    }
    fn tick(&mut self) {
        let now = Instant::now();
        self.max = self.max.max(now - self.last);
        self.last = now;
    }
}

/// Runs a workload to completion on the current tokio runtime.
pub async fn run(spec: ClientSpec) -> ClientReport {
    let started_ns = crate::now_ns();
    let mut tasks = Vec::new();
    for id in 0..spec.connections.max(1) {
        let s = spec.clone();
        tasks.push(tokio::task::spawn_local(
            async move { one_conn(id, s).await },
        ));
    }
    let mut connections = Vec::new();
    for t in tasks {
        connections.push(t.await.unwrap_or_else(|e| ConnReport {
            errors: vec![format!("task failed: {e}")],
            ..Default::default()
        }));
    }
    ClientReport {
        spec,
        connections,
        started_ns,
        finished_ns: crate::now_ns(),
    }
}

/// Runs a workload on a fresh current-thread runtime on the calling thread.
pub fn run_blocking(spec: ClientSpec) -> io::Result<ClientReport> {
    if spec.connections > 256 {
        // Thousands of connections need thousands of descriptors.
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
                r.rlim_cur = r.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &r);
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&rt, run(spec)))
}

async fn one_conn(id: usize, spec: ClientSpec) -> ConnReport {
    let start = Instant::now();
    let seed = spec.seed.wrapping_add(id as u64);
    let mut rep = ConnReport {
        id,
        bytes_expected: match spec.workload {
            Workload::Stream | Workload::Download => spec.bytes,
            Workload::Request => spec.count * spec.size as u64,
            Workload::Kv => kv_script(seed, spec.count)
                .iter()
                .map(|(_, a)| a.len() as u64)
                .sum(),
        },
        ..Default::default()
    };
    let stall = Duration::from_millis(spec.stall_timeout_ms);
    let sock = match tokio::time::timeout(stall, TcpStream::connect(spec.target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            rep.errors.push(format!("connect {}: {e}", spec.target));
            return rep;
        }
        Err(_) => {
            rep.errors
                .push(format!("connect {}: timed out", spec.target));
            return rep;
        }
    };
    let _ = sock.set_nodelay(true);
    rep.local = sock.local_addr().ok().map(|a| a.to_string());
    let mut progress = Progress::new();
    let res = match spec.workload {
        Workload::Stream => stream(sock, &spec, seed, stall, &mut rep, &mut progress).await,
        Workload::Download => download(sock, &spec, seed, stall, &mut rep, &mut progress).await,
        Workload::Request => request(sock, &spec, seed, stall, &mut rep, &mut progress).await,
        Workload::Kv => kv(sock, &spec, seed, stall, &mut rep, &mut progress).await,
    };
    if let Err(e) = res {
        // The gap from the last progress to the failure is a stall too.
        progress.tick();
        rep.fail(&e);
    }
    rep.max_stall_ms = progress.max.as_secs_f64() * 1000.0;
    rep.duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_seekable() {
        let mut whole = vec![0u8; 1000];
        pattern::fill(7, 0, &mut whole);
        for start in [0usize, 1, 7, 8, 9, 333, 999] {
            let mut part = vec![0u8; 1000 - start];
            pattern::fill(7, start as u64, &mut part);
            assert_eq!(part, whole[start..]);
        }
        let mut other = vec![0u8; 1000];
        pattern::fill(8, 0, &mut other);
        assert_ne!(other, whole);
        assert_eq!(pattern::mismatch(7, 5, &whole[5..50]), None);
        let mut bad = whole.clone();
        bad[40] ^= 1;
        assert_eq!(pattern::mismatch(7, 0, &bad), Some(40));
    }

    /// The workloads against the services, over loopback (no privileges needed).
    #[test]
    fn workloads_against_services_on_loopback() {
        let echo_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stream_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let kv_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (echo_addr, stream_addr, kv_addr) = (
            echo_l.local_addr().unwrap(),
            stream_l.local_addr().unwrap(),
            kv_l.local_addr().unwrap(),
        );
        drop((echo_l, stream_l, kv_l));
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = tokio::join!(
                    serve(Service::Echo, echo_addr, None, Duration::ZERO),
                    serve(Service::Stream, stream_addr, None, Duration::ZERO),
                    serve(Service::Kv, kv_addr, None, Duration::ZERO)
                );
            });
        });
        std::thread::sleep(Duration::from_millis(50));
        for (w, addr) in [
            (Workload::Stream, echo_addr),
            (Workload::Request, echo_addr),
            (Workload::Download, stream_addr),
            (Workload::Kv, kv_addr),
        ] {
            let mut spec = ClientSpec::new(w, addr);
            spec.connections = 3;
            spec.bytes = 300_000;
            let rep = run_blocking(spec).unwrap();
            assert!(rep.intact(), "{}", rep.summary());
            assert_eq!(rep.connections.len(), 3);
        }
        // A workload against a closed port fails, and says so.
        let mut spec = ClientSpec::new(Workload::Stream, "127.0.0.1:1".parse().unwrap());
        spec.stall_timeout_ms = 500;
        let rep = run_blocking(spec).unwrap();
        assert!(!rep.intact());
        assert!(rep.connections[0].errors[0].contains("connect"), "{rep:?}");
        // A download from an echo service never matches the stream.
        let mut spec = ClientSpec::new(Workload::Download, echo_addr);
        spec.stall_timeout_ms = 500;
        let rep = run_blocking(spec).unwrap();
        assert!(!rep.intact(), "{}", rep.summary());
    }
}
