//! Running without root, as patchbay does: a process that is not root re-runs itself (one test,
//! the conformance suite, the CLI's `run`, or `holdfast-demo`) inside new user, mount, network and PID namespaces, where it
//! is root over everything it creates.
//!
//! Read [`run`] first. The sandbox is made between `fork` and `exec` of the re-run:
//! - a user namespace mapping root to the caller's uid and gid (nothing else is mapped);
//! - a mount namespace, with a private tmpfs on `/run` for the harness's named namespaces
//!   (`/run/netns`) and run records (`/run/holdfast`), and `/proc` mounted afresh so that
//!   `/proc/PID` names the sandbox's processes;
//! - a network namespace of its own, so nothing can touch the host's interfaces even by mistake;
//! - a PID namespace whose init is the re-run: when it exits, however it exits, the kernel kills
//!   every process left in it, and with them go the network namespaces, links and mounts.
//!   Nothing is left behind, even after a panic or Ctrl-C.
//!
//! What still needs root, and why: eBPF programs (the harness's partition classifier reads the
//! port a frame came in on) need `CAP_BPF` in the initial namespace, so in the sandbox a
//! partition matches frames by source MAC instead ([`crate::partition`]); and a daemon's
//! real-time priority (`SCHED_RR`) needs `CAP_SYS_NICE` there, so heartbeats run at normal
//! priority (holdfastd says so in its log).

use std::io;
use std::process::{Command, Output};

/// Set in the environment of a re-run inside the sandbox.
pub const INSIDE: &str = "HOLDFAST_ROOTLESS";

/// Whether this process runs inside the sandbox.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// Why this machine cannot make the sandbox, if it cannot (from its sysctls; the attempt itself
/// may still fail, and then says why).
pub fn unavailable() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
                .into(),
        );
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some(
            "AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns = 1)"
                .into(),
        );
    }
    None
}

/// Runs `cmd` inside a fresh sandbox and returns its output.
pub fn run(mut cmd: Command) -> io::Result<Output> {
    // Everything the child needs is prepared here: between fork and exec only async-signal-safe
    // calls are made.
    // SAFETY: getuid/getgid never fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_map = format!("0 {uid} 1");
    let gid_map = format!("0 {gid} 1");
    cmd.env(INSIDE, "1");
    // SAFETY: `enter` makes only raw system calls on memory prepared before the fork.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || enter(&uid_map, &gid_map));
    }
    cmd.output()
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `data` to the file at `path` with raw calls.
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open/write/close on a valid C string and buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if n != data.len() as isize {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In the forked child: the namespaces, then a second fork whose child (the PID namespace's
/// init) goes on to `exec`, while this process waits for it and exits with its status.
fn enter(uid_map: &str, gid_map: &str) -> io::Result<()> {
    // SAFETY: raw system calls in a single-threaded child between fork and exec.
    unsafe {
        // Die with the test (or CLI) that started us.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        check(libc::unshare(
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID,
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("unshare: {e}")))?;
        write_file(c"/proc/self/setgroups", b"deny")?;
        write_file(c"/proc/self/uid_map", uid_map.as_bytes())?;
        write_file(c"/proc/self/gid_map", gid_map.as_bytes())?;
        let pid = libc::fork();
        check(pid)?;
        if pid > 0 {
            // The outer process: pass the init's fate on, never return into Rust.
            let mut st = 0;
            while libc::waitpid(pid, &mut st, 0) < 0 {
                if *libc::__errno_location() != libc::EINTR {
                    libc::_exit(127);
                }
            }
            if libc::WIFEXITED(st) {
                libc::_exit(libc::WEXITSTATUS(st));
            }
            libc::_exit(128 + libc::WTERMSIG(st));
        }
        // The init of the new PID namespace.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("make / private: {e}")))?;
        // A private /run: the harness keeps its named namespaces (/run/netns) and its run records
        // (/run/holdfast) there, and the host's are not ours to write.
        let tmpfs = c"tmpfs";
        check(libc::mount(
            tmpfs.as_ptr(),
            c"/run".as_ptr(),
            tmpfs.as_ptr(),
            0,
            c"mode=0755".as_ptr().cast(),
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("mount a tmpfs on /run: {e}")))?;
        // A /proc of this PID namespace (the harness reads /proc/PID/stat of what it started).
        check(libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ))
        .map_err(|e| io::Error::new(e.kind(), format!("mount /proc: {e}")))?;
    }
    Ok(())
}

/// Re-runs the calling test (named by its thread, as libtest names it) inside a sandbox, and
/// says how it went: `None` when there is no sandbox to be had (already inside one, or the
/// machine forbids it: the test then skips, saying why), else `Ok` with the re-run's output, or
/// `Err` with why it failed or did not run exactly one test.
pub fn rerun_this_test() -> Option<Result<String, String>> {
    if inside() {
        return None;
    }
    if let Some(why) = unavailable() {
        crate::report_skip(&format!("skipped: not root, and {why}"));
        return None;
    }
    let name = std::thread::current().name()?.to_owned();
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Some(Err(format!("cannot find this test binary: {e}"))),
    };
    let mut cmd = Command::new(exe);
    cmd.args([
        name.as_str(),
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ]);
    let out = match run(cmd) {
        Ok(o) => o,
        Err(e) => return Some(Err(format!("cannot make the rootless sandbox: {e}"))),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Some(Err(format!(
            "{name} failed in the rootless sandbox ({}):\n{text}",
            out.status
        )));
    }
    if !text.contains("test result: ok. 1 passed") {
        return Some(Err(format!(
            "{name} did not run exactly once in the rootless sandbox:\n{text}"
        )));
    }
    Some(Ok(text))
}

/// For a one-shot command: returns at once as root; otherwise runs this very command again in
/// a rootless sandbox, saying so on stderr as `program`, and exits with its status. Fails (with
/// why) where no sandbox can be made.
pub fn root_or_sandbox(program: &str) -> io::Result<()> {
    if crate::privileged() {
        return Ok(());
    }
    if inside() {
        return Err(io::Error::other(
            "not root even inside the rootless sandbox: the kernel withheld capabilities",
        ));
    }
    if let Some(why) = unavailable() {
        return Err(io::Error::other(format!(
            "this needs root (run it with sudo): not root, and {why}"
        )));
    }
    eprintln!("{program}: not root: running in a user namespace of its own (rootless)");
    let code = rerun_self()?;
    std::process::exit(code);
}

/// A whole program's re-run of itself (the CLI's `run`, `holdfast-demo`, the conformance suite): the
/// same arguments inside a sandbox, output passed through as it comes. Returns the exit code to
/// leave with.
pub fn rerun_self() -> io::Result<i32> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit());
    let out = run(cmd)?;
    Ok(out.status.code().unwrap_or(1))
}
