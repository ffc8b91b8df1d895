//! Named network namespaces, compatible with `ip netns` (`/run/netns/NAME` bind mounts, made
//! by `netns-rs`), and what `netns-rs` does not do: processes found by namespace, killed.
//!
//! Read [`NetNs::create`] first. `setns` changes only the calling thread, so everything that must
//! happen *inside* a namespace runs on a short-lived thread of its own ([`NetNs::run`]); nothing
//! here ever calls `setns` on a thread it does not own. Sockets made there (netlink, AF_PACKET,
//! TCP) stay in that namespace when used from any other thread.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::netlink::Netlink;

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// `netns-rs`'s environment for our namespaces: `/run/netns`, where `ip netns` looks.
struct RunNetns;

impl netns_rs::Env for RunNetns {
    fn persist_dir(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR)
    }
}

/// A named network namespace that this process holds open.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    fd: OwnedFd,
    inode: u64,
    /// The rtnetlink socket inside the namespace.
    pub nl: Netlink,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(io::Error::other)
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes a sysctl of the calling thread's network namespace.
pub fn sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    fs::write(&path, value).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

/// Enters the namespace open at `fd` on the calling thread.
///
/// Only call this on a thread that the caller owns and that runs no async executor.
pub fn enter(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns(2) on a valid fd; affects only this thread.
    check(unsafe { libc::setns(fd, libc::CLONE_NEWNET) })
}

impl NetNs {
    /// Creates `/run/netns/NAME` holding a fresh namespace (through `netns-rs`, as `ip netns
    /// add` does: `/run/netns` becomes a shared mount point), with `lo` up and IPv6 disabled by
    /// default on every interface created in it later (so captures stay quiet). Fails if the
    /// name exists.
    pub fn create(name: &str) -> io::Result<Self> {
        // netns-rs makes /run/netns a mount point on first use; two threads doing that at
        // once could stack two mounts, the second hiding what was made under the first.
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let path = Path::new(NETNS_DIR).join(name);
        let made = {
            let _one = CREATING.lock().unwrap_or_else(|e| e.into_inner());
            if path.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: exists", path.display()),
                ));
            }
            netns_rs::NetNs::new_with_env(name, RunNetns)
                .map_err(|e| io::Error::other(format!("{}: {e}", path.display())))?
        };
        // Inside, on a thread of its own (netns-rs's `run` enters on the calling thread).
        let res = std::thread::scope(|s| {
            s.spawn(|| {
                made.run(|_| -> io::Result<Netlink> {
                    quiet_ipv6()?;
                    let nl = Netlink::open()?;
                    nl.set_up("lo", true).map_err(io::Error::other)?;
                    Ok(nl)
                })
                .map_err(io::Error::other)?
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        });
        match res {
            Ok(nl) => Self::finish_open(name, nl),
            Err(e) => {
                let _ = made.remove();
                let _ = remove_path(&path);
                Err(e)
            }
        }
    }

    fn finish_open(name: &str, nl: Netlink) -> io::Result<Self> {
        let path = Path::new(NETNS_DIR).join(name);
        let file = fs::File::open(&path)?;
        let inode = file.metadata()?.ino();
        Ok(Self {
            name: name.to_owned(),
            fd: OwnedFd::from(file),
            inode,
            nl,
        })
    }

    /// The namespace's name (its file in `/run/netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's inode, as in `/proc/PID/ns/net`.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// A raw fd for `setns` or `IFLA_NET_NS_FD`; valid while `self` lives.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Runs `f` on a fresh thread inside the namespace, and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let fd = self.raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                enter(fd)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        })
    }
}

/// Disables IPv6 on interfaces created later in the calling thread's namespace, and turns off
/// DAD, router solicitations and router advertisements for the ones that enable it again.
fn quiet_ipv6() -> io::Result<()> {
    sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
    sysctl("net.ipv6.conf.default.accept_dad", "0")?;
    sysctl("net.ipv6.conf.default.accept_ra", "0")?;
    sysctl("net.ipv6.conf.default.router_solicitations", "0")?;
    Ok(())
}

/// Unmounts and removes `/run/netns/NAME`. The kernel frees the namespace once no process,
/// thread or socket holds it any more. Missing is fine.
pub fn remove(name: &str) -> io::Result<()> {
    remove_path(&Path::new(NETNS_DIR).join(name))
}

fn remove_path(path: &Path) -> io::Result<()> {
    let c = cstr(path)?;
    // SAFETY: umount2 on a valid C string; errors (not mounted) are ignored on purpose.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `/run/netns/NAME` exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// The inode of a named namespace, if it exists.
pub fn inode_of(name: &str) -> Option<u64> {
    fs::metadata(Path::new(NETNS_DIR).join(name))
        .ok()
        .map(|m| m.ino())
        .filter(|i| *i != 0)
}

/// Every named namespace whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// PIDs of every process (other than this one) with a thread in one of the given namespaces.
pub fn pids_in(inodes: &[u64]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let in_ns = |p: PathBuf| {
            fs::metadata(p)
                .map(|m| inodes.contains(&m.ino()))
                .unwrap_or(false)
        };
        if in_ns(e.path().join("ns/net")) {
            out.push(pid);
            continue;
        }
        // A thread that called setns differs from its process leader.
        if let Ok(tasks) = fs::read_dir(e.path().join("task"))
            && tasks
                .filter_map(|t| t.ok())
                .any(|t| in_ns(t.path().join("ns/net")))
        {
            out.push(pid);
        }
    }
    out
}

/// Sends `sig` to every process in the given namespaces; returns the PIDs signalled.
pub fn signal_all(inodes: &[u64], sig: libc::c_int) -> Vec<i32> {
    let pids = pids_in(inodes);
    for &p in &pids {
        // SAFETY: kill(2) with a PID read from /proc; a vanished PID yields ESRCH, ignored.
        unsafe { libc::kill(p, sig) };
    }
    pids
}

/// SIGKILLs every process in the namespaces and waits (up to `timeout`) until none is left.
pub fn kill_all(inodes: &[u64], timeout: std::time::Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let pids = signal_all(inodes, libc::SIGKILL);
        if pids.is_empty() {
            return Ok(());
        }
        // Reap any that are our children, so they do not linger as zombies.
        for &p in &pids {
            // SAFETY: non-blocking waitpid on a PID; ECHILD for non-children is ignored.
            unsafe { libc::waitpid(p, std::ptr::null_mut(), libc::WNOHANG) };
        }
        if std::time::Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "processes still alive after SIGKILL: {pids:?}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Creates an owned fd from a raw one (for fds received from the kernel).
///
/// # Safety
/// `fd` must be a valid, open descriptor that nothing else owns.
pub unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
