//! Run records: what each run made, so that nothing leaks even when the harness dies.
//!
//! Read [`RunRecord`] first. Before a run creates its first namespace it writes a record to
//! `/run/holdfast/runs/ID.json` naming every namespace it will make and the process that owns
//! the run. Teardown removes the namespaces first and the record last, so a namespace with our
//! prefix and no record is always an orphan. [`clean`] tears down every run whose owner is gone;
//! a SIGINT/SIGTERM handler ([`install_signal_handler`]) tears down this process's live runs.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::netns;
use crate::process;

/// Where run records live.
pub const REGISTRY_DIR: &str = "/run/holdfast/runs";

/// Every namespace the harness makes starts with this.
pub const NS_PREFIX: &str = "hf";

/// What one run made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (six hex digits).
    pub id: String,
    /// The process that owns the run.
    pub owner_pid: i32,
    /// Its start time, to tell it from a reused PID.
    pub owner_start: u64,
    /// The run directory (logs, pcaps, report).
    pub run_dir: PathBuf,
    /// The topology file, if the run came from one.
    pub topology: Option<PathBuf>,
    /// Every namespace the run may create.
    pub namespaces: Vec<String>,
    /// The supervisor's control socket, for runs started with `up`.
    pub control: Option<PathBuf>,
}

impl RunRecord {
    fn path(id: &str) -> PathBuf {
        Path::new(REGISTRY_DIR).join(format!("{id}.json"))
    }

    /// Writes (or rewrites) the record.
    pub fn save(&self) -> io::Result<()> {
        let at = |e: io::Error, what: &Path| {
            io::Error::new(e.kind(), format!("run record {}: {e}", what.display()))
        };
        std::fs::create_dir_all(REGISTRY_DIR).map_err(|e| at(e, Path::new(REGISTRY_DIR)))?;
        let tmp = Path::new(REGISTRY_DIR).join(format!(".{}.tmp", self.id));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?).map_err(|e| at(e, &tmp))?;
        std::fs::rename(&tmp, Self::path(&self.id)).map_err(|e| at(e, &tmp))
    }

    /// Loads the record of a run.
    pub fn load(id: &str) -> io::Result<Self> {
        let p = Self::path(id);
        let bytes = std::fs::read(&p).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "no run {id:?} ({}: {e}); `holdfast-harness list` shows the runs",
                    p.display()
                ),
            )
        })?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    }

    /// Whether the owning process is still alive.
    pub fn owner_alive(&self) -> bool {
        process::alive(self.owner_pid, self.owner_start)
    }

    /// The namespace name for a node or switch of this run.
    pub fn ns_name(id: &str, name: &str) -> String {
        format!("{NS_PREFIX}{id}-{name}")
    }
}

/// Every recorded run.
pub fn list() -> Vec<RunRecord> {
    let Ok(rd) = std::fs::read_dir(REGISTRY_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<RunRecord> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

/// Kills every process in the run's namespaces, removes the namespaces, then the record.
pub fn teardown(rec: &RunRecord) -> io::Result<()> {
    let inodes: Vec<u64> = rec
        .namespaces
        .iter()
        .filter_map(|n| netns::inode_of(n))
        .collect();
    let killed = netns::kill_all(&inodes, Duration::from_secs(5));
    let mut first_err = killed.err();
    for n in &rec.namespaces {
        if let Err(e) = netns::remove(n) {
            first_err.get_or_insert(e);
        }
    }
    if let Some(c) = &rec.control {
        let _ = std::fs::remove_file(c);
    }
    match std::fs::remove_file(RunRecord::path(&rec.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            first_err.get_or_insert(e);
        }
        _ => {}
    }
    first_err.map_or(Ok(()), Err)
}

/// What [`clean`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleaned {
    /// Runs torn down.
    pub runs: Vec<String>,
    /// Orphan namespaces (no record) removed.
    pub orphans: Vec<String>,
}

/// Tears down every run whose owner is dead (or only `only`, if given, even if its owner lives
/// when `force` is set), and removes orphan namespaces that no record names.
pub fn clean(only: Option<&str>, force: bool) -> io::Result<Cleaned> {
    let mut out = Cleaned::default();
    let records = list();
    for rec in &records {
        if only.is_some_and(|o| o != rec.id) {
            continue;
        }
        if rec.owner_alive() && !force {
            continue;
        }
        teardown(rec)?;
        out.runs.push(rec.id.clone());
    }
    if only.is_none() {
        // Records may have been written after we listed them; list again before judging.
        let known: Vec<String> = list().into_iter().flat_map(|r| r.namespaces).collect();
        let orphans: Vec<String> = netns::list(NS_PREFIX)
            .into_iter()
            .filter(|n| is_ours(n) && !known.contains(n))
            .collect();
        let inodes: Vec<u64> = orphans.iter().filter_map(|n| netns::inode_of(n)).collect();
        netns::kill_all(&inodes, Duration::from_secs(5))?;
        for n in orphans {
            netns::remove(&n)?;
            out.orphans.push(n);
        }
    }
    Ok(out)
}

/// Whether a namespace name has the shape of ours: `hf` + six hex digits + `-`.
fn is_ours(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(NS_PREFIX) else {
        return false;
    };
    rest.len() > 7 && rest.as_bytes()[6] == b'-' && rest[..6].bytes().all(|b| b.is_ascii_hexdigit())
}

static LIVE: Mutex<Vec<RunRecord>> = Mutex::new(Vec::new());
static HANDLER: Once = Once::new();

/// Registers a live run of this process, for the signal handler.
pub fn register_live(rec: &RunRecord) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(rec.clone());
}

/// Forgets a live run (after its teardown).
pub fn unregister_live(id: &str) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|r| r.id != id);
}

/// Installs (once per process) a SIGINT/SIGTERM/SIGHUP handler that tears down every live run
/// of this process and exits with 128 + the signal.
pub fn install_signal_handler() {
    HANDLER.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("teardown-on-signal".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
                    for rec in &live {
                        eprintln!(
                            "holdfast-harness: signal {sig}: tearing down run {}",
                            rec.id
                        );
                        let _ = teardown(rec);
                    }
                    std::process::exit(128 + sig);
                }
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_names() {
        assert!(is_ours("hf0a1b2c-a"));
        assert!(is_ours("hf0a1b2c-sw0"));
        assert!(!is_ours("hf0a1b2c"));
        assert!(!is_ours("hfzzzzzz-a"));
        assert!(!is_ours("other"));
        assert_eq!(RunRecord::ns_name("0a1b2c", "a"), "hf0a1b2c-a");
    }
}
