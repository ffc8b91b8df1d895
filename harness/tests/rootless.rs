//! Rootless: run by an unprivileged user, a privileged harness test builds its cluster for real
//! in a user namespace of its own (`holdfast_harness::rootless`), and leaves nothing behind.
//! Checked here by running a partition test as `nobody` (uid 65534) from a root test run; a user
//! who runs `cargo test` without root gets the same for every privileged test.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use holdfast_harness::{Fault, need_root};

const NOBODY: u32 = 65534;

/// The test run as nobody: a partition between a and b cuts them apart and the heal joins them,
/// judged by datagrams (it needs the cluster to exist for real). Ignored in a plain run; the
/// test below runs it.
#[test]
#[ignore = "run as nobody by a_privileged_test_runs_for_real_as_nobody_and_leaves_nothing"]
fn rootless_inner_partition_then_heal() {
    need_root!();
    assert!(
        holdfast_harness::rootless::inside() || std::env::var_os("HOLDFAST_TEST_OUT").is_none(),
        "run as nobody, this must be the re-run inside the sandbox"
    );
    let mut topo = basic();
    for n in &mut topo.nodes {
        n.processes.clear();
    }
    let mut c = up("rootless", topo);
    let reach = |c: &holdfast_harness::Cluster, from: &str, to: &str, port: u16| {
        let addr = c.topology().node(to).unwrap().address(None, false).unwrap();
        let sa = std::net::SocketAddr::new(addr, port);
        let rx = c
            .in_node(to, move || std::net::UdpSocket::bind(sa))
            .unwrap()
            .unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let tx = c
            .in_node(from, || std::net::UdpSocket::bind("0.0.0.0:0"))
            .unwrap()
            .unwrap();
        for _ in 0..3 {
            let _ = tx.send_to(b"holdfast", sa);
        }
        rx.recv_from(&mut [0u8; 16]).is_ok()
    };
    assert!(reach(&c, "a", "b", 7101), "a -> b before");
    c.fault(&Fault::parse("partition", "a", Some("b")).unwrap())
        .unwrap();
    assert!(!reach(&c, "a", "b", 7102), "a -> b must be cut");
    assert!(!reach(&c, "b", "a", 7103), "b -> a must be cut");
    assert!(reach(&c, "a", "client", 7104), "a -> client must pass");
    c.fault(&Fault::parse("heal-partition", "a", None).unwrap())
        .unwrap();
    assert!(reach(&c, "a", "b", 7105), "a -> b after the heal");
    c.down().unwrap();
    println!("rootless partition: checked");
}

fn processes_of(uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        if owner == Some(uid) {
            let name = status.lines().next().unwrap_or("").to_owned();
            out.push(format!("{} {name}", e.file_name().to_string_lossy()));
        }
    }
    out
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_privileged_test_runs_for_real_as_nobody_and_leaves_nothing() {
    // SAFETY: geteuid never fails.
    if unsafe { libc::geteuid() } != 0 {
        holdfast_harness::report_skip(
            "skipped: not root, so it cannot become nobody; every privileged test here ran \
             rootless already",
        );
        return;
    }
    if let Some(why) = holdfast_harness::rootless::unavailable() {
        holdfast_harness::report_skip(&format!("skipped: {why}"));
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("holdfast-rootless-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    std::os::unix::fs::chown(&out_dir, Some(NOBODY), Some(NOBODY)).unwrap();
    let netns_before = count("/run/netns");
    let links_before = count("/sys/class/net");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "rootless_inner_partition_then_heal",
        "--exact",
        "--nocapture",
        "--include-ignored",
    ])
    .env("HOLDFAST_TEST_OUT", &out_dir)
    .env("HOME", &out_dir)
    .current_dir(&out_dir);
    // SAFETY: setgroups/setgid/setuid in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(out.status.success(), "as nobody:\n{text}");
    assert!(
        text.contains("rootless partition: checked"),
        "the cluster test did not run for real as nobody:\n{text}"
    );
    assert!(!text.contains("skipped"), "{text}");
    assert_eq!(
        processes_of(NOBODY),
        Vec::<String>::new(),
        "processes of nobody left behind"
    );
    assert_eq!(
        count("/run/netns"),
        netns_before,
        "named namespaces left behind"
    );
    assert_eq!(
        count("/sys/class/net"),
        links_before,
        "links left in the root namespace"
    );
}
