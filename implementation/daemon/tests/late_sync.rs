//! A late backup (claim 8): b boots while a connection on a has more output unacknowledged
//! than one datagram holds (a client that stopped reading), learns it from a's CONN-STATE,
//! which comes in parts, and takes it over whole when a dies. The client is Python's own
//! sockets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use holdfast_harness::{Fault, need_root};

const VIP: &str = "198.18.0.10:7";

#[test]
fn a_backup_that_boots_late_takes_over_a_connection_with_much_unacknowledged_output() {
    need_root!();
    if !have_python() {
        return;
    }
    let _serial = serial();
    let dir = run_dir("late-sync-large");
    let mut c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    c.fault(&Fault::PowerOff { node: "b".into() }).unwrap();
    // 3 MB sent at once; the client reads nothing for 8 s, so a's echo piles up unacknowledged
    // (the client's receive window closes after about 128 kB).
    let json = dir.join("client.json");
    let args = strings(&[
        "stream",
        "--target",
        VIP,
        "--bytes",
        "3000000",
        "--pause-at",
        "0",
        "--pause-s",
        "8",
        "--timeout",
        "10",
        "--deadline",
        "30",
    ]);
    let child = py_start(&c, "client", &args, &json);
    std::thread::sleep(Duration::from_millis(1500));
    power_on_until_eligible(&mut c, "b");
    wait_until("b adopted the connection", Duration::from_secs(5), || {
        status(&c, "b").is_some_and(|s| s["connections"]["adopted"].as_u64() > Some(0))
    });
    let b = status(&c, "b").unwrap()["connections"].clone();
    eprintln!(
        "b adopted a state of {} bytes",
        b["adopted_bytes_max"].as_u64().unwrap_or(0)
    );
    assert!(
        b["adopted_bytes_max"].as_u64() > Some(200_000),
        "the state b adopted is not over 200 kB: {b}"
    );
    assert_eq!(b["sync_incomplete"], serde_json::json!({}), "{b}");
    // Let b's snooper settle on the connection, then a dies while the client still is not
    // reading.
    std::thread::sleep(Duration::from_millis(300));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    wait_until("b assumed the connection", Duration::from_secs(5), || {
        status(&c, "b").is_some_and(|s| s["connections"]["assumed"].as_u64() > Some(0))
    });
    let report = py_wait(child, &json);
    let b = status(&c, "b").unwrap()["connections"].clone();
    let s = c.down().unwrap();
    assert_eq!(report["ok"], true, "the client: {report}\nb: {b}");
    assert!(
        report["resumed_ns"].as_u64() > Some(event_ts(&s.events, "power-off", "a")),
        "the client read again before a died: {report}"
    );
    assert_eq!(b["lost"], serde_json::json!({}), "{b}");
    let frames = read_pcap(&s.captures[0].file);
    let client: SocketAddr = report["local"].as_str().unwrap().parse().unwrap();
    holdfast_harness::evidence::served(
        &frames,
        VIP.parse().unwrap(),
        client,
        "sw0:a",
        "sw0:b",
        event_ts(&s.events, "power-off", "a"),
    )
    .unwrap_or_else(|e| panic!("not taken over: {e}"));
}
