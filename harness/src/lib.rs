//! holdfast-harness: builds multi-node test clusters from TOML topologies and proves what
//! happened in them, packet by packet.
//!
//! Start with [`topology::Topology::load`] and [`cluster::Cluster::up`]; then
//! [`cluster::Cluster::fault`], [`cluster::Cluster::start_client`] and [`scenario::run`].
//!
//! - [`topology`]: the TOML model and its validation (`FILE:LINE: field: problem`).
//! - [`cluster`]: namespaces, bridges and veths over netlink; faults; guaranteed teardown.
//! - [`capture`], [`pcapng`]: every switch port to pcapng, in-process with `AF_PACKET`.
//! - [`evidence`]: what the packets prove of a connection (who served it, in which sequence
//!   space).
//! - [`client`]: kernel-TCP workloads that verify every byte, and the services they talk to.
//! - [`scenario`]: the step language (`wait`, `fault`, `client-start`, `repeat`, ...).
//! - [`registry`]: run records, `clean`, and the signal handler.
//! - [`netlink`], [`netns`], [`process`], [`loss`]: the thin kernel layer.
//!
//! The harness knows nothing of the daemon: a topology names the commands each node runs.
#![warn(missing_docs)]

pub mod adapter;
pub mod bpf;
pub mod capture;
pub mod client;
pub mod cluster;
pub mod evidence;
pub mod fault;
pub mod graph;
pub mod impair;
pub mod loss;
pub mod netlink;
pub mod netns;
pub mod partition;
pub mod pcapng;
pub mod picture;
pub mod process;
pub mod registry;
pub mod rootless;
pub mod route;
pub mod runner;
pub mod scenario;
pub mod shrink;
pub mod spec;
pub mod topology;

pub use cluster::{Cluster, Options};
pub use fault::Fault;
pub use topology::Topology;

/// Nanoseconds since the Unix epoch on `CLOCK_REALTIME`, the clock of capture timestamps.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The start of a benchmark's `main`: `None` (after printing that it skipped) without the
/// privileges, else the first numeric command-line argument, or `default`.
pub fn bench_arg<T: std::str::FromStr>(default: T) -> Option<T> {
    if !privileged() {
        println!("{SKIP_UNPRIVILEGED}");
        return None;
    }
    Some(
        std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(default),
    )
}

/// Whether this process may build clusters (it has CAP_NET_ADMIN and CAP_SYS_ADMIN, in
/// practice: runs as root).
pub fn privileged() -> bool {
    // SAFETY: geteuid never fails.
    if unsafe { libc::geteuid() } != 0 {
        return false;
    }
    // Root in a user namespace without CAP_SYS_ADMIN cannot mount; check the effective set.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 12) != 0 && caps & (1 << 21) != 0)
}

/// A directory under the system's temp directory that is this process's alone (its pid and a
/// counter; never one another user or an earlier run left there), removed with everything in it
/// when dropped, also when a panic unwinds. For tests and scratch rendering.
#[derive(Debug)]
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// Creates `TMP/PREFIX-PID-N` for the first free N.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let base = std::env::temp_dir();
        for n in 0..10_000 {
            let p = base.join(format!("{prefix}-{}-{n}", std::process::id()));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", p.display()),
                    ));
                }
            }
        }
        Err(std::io::Error::other(format!(
            "no free {prefix}-{}-N in {}",
            std::process::id(),
            base.display()
        )))
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for ScratchDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ScratchDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The message tests print when they cannot run unprivileged.
pub const SKIP_UNPRIVILEGED: &str = "skipped: needs CAP_NET_ADMIN (run with sudo)";

/// Says that the current test skipped and why, on the real stderr: the test harness's output
/// capture only intercepts the print macros, so this shows even for a passing test.
pub fn report_skip(why: &str) {
    use std::io::Write;
    let name = std::thread::current().name().unwrap_or("test").to_owned();
    let _ = writeln!(std::io::stderr(), "{name}: {why}");
}

/// A page as headless Chromium renders it (`--dump-dom`), or `None` when Chromium is not
/// installed (tests then say they skipped). For the reports' tests.
pub fn headless_dom(page: &std::path::Path) -> Option<String> {
    let out = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// When this process may not build clusters (see [`privileged`]), runs the calling test again in
/// a rootless sandbox of its own ([`rootless`]) and returns with its verdict (a failure there
/// fails the test here); where no sandbox can be made, returns early saying on stderr that it
/// skipped and why. For tests of anything built on the harness:
///
/// ```no_run
/// #[test]
/// fn a_cluster_test() {
///     holdfast_harness::need_root!();
///     // ... build a cluster ...
/// }
/// ```
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::privileged() {
            // Not root: run this test again in a user namespace where it is (or skip, saying
            // why, where the machine forbids that).
            match $crate::rootless::rerun_this_test() {
                Some(Ok(out)) => {
                    print!("{out}");
                    return;
                }
                Some(Err(e)) => panic!("{e}"),
                None => {
                    $crate::report_skip($crate::SKIP_UNPRIVILEGED);
                    return;
                }
            }
        }
    };
}
