//! Starting processes inside a node's namespace.
//!
//! Read [`Spawner`] first. Every child enters its namespace between `fork` and `exec`, becomes a
//! session leader (so a signal reaches all of its descendants as a group), and gets
//! `PR_SET_PDEATHSIG(SIGKILL)`. The death signal fires when the *thread* that forked the child
//! exits, so all children are forked by one long-lived spawner thread that lives exactly as long
//! as the cluster that owns it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// What to start.
#[derive(Debug)]
pub struct SpawnSpec {
    /// The argument vector, already expanded.
    pub argv: Vec<String>,
    /// The namespace to enter (a dup the spawner closes after the fork).
    pub netns: OwnedFd,
    /// Where stdout and stderr go (appended).
    pub log: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Whether the child dies with the spawner thread (false for processes that must outlive
    /// the harness, which nothing here uses yet).
    pub die_with_parent: bool,
}

type Request = (SpawnSpec, mpsc::Sender<io::Result<Child>>);

/// A thread that forks all children of one cluster.
#[derive(Debug)]
pub struct Spawner {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spawner {
    /// Starts the spawner thread.
    pub fn new() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(spawn(spec));
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Starts a process; returns once it is forked (not once it is ready).
    pub fn spawn(&self, spec: SpawnSpec) -> io::Result<Child> {
        let (rtx, rrx) = mpsc::channel();
        self.tx
            .as_ref()
            .ok_or_else(|| io::Error::other("spawner stopped"))?
            .send((spec, rtx))
            .map_err(|_| io::Error::other("spawner thread is gone"))?;
        rrx.recv()
            .map_err(|_| io::Error::other("spawner thread is gone"))?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spawn(spec: SpawnSpec) -> io::Result<Child> {
    let Some((prog, args)) = spec.argv.split_first() else {
        return Err(io::Error::other("empty command"));
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", spec.log.display())))?;
    writeln!(
        log,
        "--- {} start: {}",
        crate::now_ns(),
        shell_words::join(&spec.argv)
    )?;
    let err: File = log.try_clone()?;
    let nsfd = spec.netns.as_raw_fd();
    let die = spec.die_with_parent;
    // SAFETY: getpid is always safe.
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // syscalls (setns, setsid, prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(nsfd, libc::CLONE_NEWNET) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::setsid();
            if die {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{prog}: {e}")))?;
    drop(spec.netns);
    Ok(child)
}

/// The state letter of a process from `/proc/PID/stat` (`R`, `S`, `T`, `Z`, ...).
pub fn state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// The start time of a process (clock ticks since boot), to tell a PID from a reused one.
pub fn start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive and is still the process that started at `start`.
pub fn alive(pid: i32, start: u64) -> bool {
    start_time(pid) == Some(start) && state(pid) != Some('Z')
}
