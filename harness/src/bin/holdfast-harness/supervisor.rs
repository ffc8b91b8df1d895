//! `up`, `down` and the supervisor that holds a run between them: a background process that
//! owns the cluster and answers `fault`, `exec` and `down` over a Unix socket.

use anyhow::{Context, Result, bail};
use holdfast_harness::registry::{self, RunRecord};
use holdfast_harness::{Cluster, Options};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Starts the supervisor in the background and waits for its "ready" line.
pub(super) fn up(
    file: &Path,
    run_dir: Option<PathBuf>,
    no_capture: bool,
    adapter: Option<PathBuf>,
) -> Result<ExitCode> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("supervise").arg(file);
    if let Some(d) = &run_dir {
        cmd.arg("--run-dir").arg(d);
    }
    if no_capture {
        cmd.arg("--no-capture");
    }
    if let Some(a) = &adapter {
        cmd.arg("--adapter").arg(a.canonicalize()?);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: setsid between fork and exec, so the terminal's Ctrl-C does not reach the run.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the supervisor")?;
    let out = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line)?;
    match line.trim().strip_prefix("ready ") {
        Some(rest) => {
            let (id, dir) = rest.split_once(' ').unwrap_or((rest, ""));
            println!("{id}");
            eprintln!(
                "run {id} is up; pcaps and logs in {dir}; `holdfast-harness down {id}` ends it"
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let status = child.wait()?;
            bail!("the topology did not come up ({status}); see the messages above")
        }
    }
}

pub(super) fn supervise(
    file: &Path,
    run_dir: Option<PathBuf>,
    no_capture: bool,
    adapter: Option<PathBuf>,
) -> Result<ExitCode> {
    let topo = load_topology(file)?;
    let opts = Options {
        run_dir,
        adapter: adapter.as_deref().map(load_adapter).transpose()?,
        capture: !no_capture,
        topology_file: Some(file.canonicalize()?),
        ..Options::default()
    };
    let mut cluster = Cluster::up(topo, opts)?;
    let sock = cluster.run_dir().join("control.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    cluster.set_control(sock)?;
    // From now on, log to the run directory: the `up` process is about to exit.
    let log = std::fs::File::create(cluster.run_dir().join("supervisor.log"))?;
    println!("ready {} {}", cluster.id(), cluster.run_dir().display());
    std::io::stdout().flush()?;
    // SAFETY: dup2 onto our own stdout/stderr.
    unsafe {
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 1);
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&log), 2);
    }
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let req: Request = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply(&mut conn, false, format!("bad request: {e}"));
                continue;
            }
        };
        match req {
            Request::Fault { fault } => {
                let r = cluster.fault(&fault);
                eprintln!("fault {fault:?}: {r:?}");
                let _ = match r {
                    Ok(()) => reply(&mut conn, true, String::new()),
                    Err(e) => reply(&mut conn, false, e.to_string()),
                };
            }
            Request::Down => {
                let r = cluster.down();
                let _ = match r {
                    Ok(s) => reply(&mut conn, true, format!("run {} down", s.id)),
                    Err(e) => reply(&mut conn, false, e.to_string()),
                };
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn reply(conn: &mut UnixStream, ok: bool, message: String) -> std::io::Result<()> {
    let mut s = serde_json::to_string(&Reply { ok, message })?;
    s.push('\n');
    conn.write_all(s.as_bytes())
}

pub(super) fn call(run: &str, req: &Request) -> Result<Reply> {
    let rec = RunRecord::load(run)?;
    let sock = rec
        .control
        .as_ref()
        .filter(|_| rec.owner_alive())
        .with_context(|| format!("run {run} has no live supervisor (was it started with `up`?)"))?;
    let mut conn = UnixStream::connect(sock).with_context(|| sock.display().to_string())?;
    let mut s = serde_json::to_string(req)?;
    s.push('\n');
    conn.write_all(s.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    serde_json::from_str(&line).context("supervisor reply")
}

pub(super) fn down(run: &str) -> Result<()> {
    let rec = RunRecord::load(run)?;
    if rec.owner_alive() && rec.control.is_some() {
        let reply = call(run, &Request::Down)?;
        if !reply.ok {
            bail!("{}", reply.message);
        }
        // Wait for the supervisor to exit, so that `down` returning means everything is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while rec.owner_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    } else {
        registry::teardown(&rec)?;
    }
    eprintln!("run {run} down");
    Ok(())
}
