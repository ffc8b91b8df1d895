//! The picture of a run (`RUN_DIR/report.html`), for a real takeover: rendered from the
//! capture, opened in headless Chromium, and checked to show the fault, the backup's
//! announcement and the client that lived through it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use holdfast_harness::client::{ClientSpec, Workload};
use holdfast_harness::{Fault, need_root};

#[test]
fn the_picture_of_a_takeover_shows_the_fault_the_announcement_and_the_client() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("picture");
    let mut c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    let mut spec = ClientSpec::new(Workload::Stream, "198.18.0.10:7".parse().unwrap());
    spec.bytes = 2_000_000;
    spec.pace_us = 1000;
    spec.stall_timeout_ms = 5000;
    let h = c.start_client("client", spec).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.fault(&Fault::PowerOff { node: "a".into() }).unwrap();
    let rep = h.wait().unwrap();
    assert!(rep.intact(), "{}", rep.summary());
    let s = c.down().unwrap();
    let clients = BTreeMap::from([("stream".to_string(), rep)]);
    let page = holdfast_harness::picture::write(&s, &clients, "takeover").unwrap();
    let Some(dom) = holdfast_harness::headless_dom(&page) else {
        holdfast_harness::report_skip(
            "skipped: chromium is not installed (.ci/run installs it): the picture was not opened",
        );
        return;
    };
    let svg = &dom[dom.find("<svg id=\"timeline\"").expect("an SVG timeline")..];
    for want in [
        // The fault, as a line across the lanes.
        ">power-off a</text>",
        // The takeover: b announces the address from its own MAC.
        "sw0:b sent gratuitous ARP: 198.18.0.10 is at 02:68:66:00:02:01",
        // The client, green: every byte verified.
        "class=\"client intact\"",
        // Its longest stall, marked.
        "class=\"stall\"",
        // Connections on a's port (before) and on b's (after).
        "198.18.0.10:7 &gt; 198.18.0.100:",
    ] {
        assert!(svg.contains(want), "{want:?} is not in the picture:\n{svg}");
    }
    // b's lane has the connection too: it served it after the power-off.
    let b_lane = svg
        .split("<text x=\"5\"")
        .find(|l| l.contains(">sw0:b</text>"))
        .expect("a lane for sw0:b");
    assert!(
        b_lane.contains("198.18.0.10:7 &gt; 198.18.0.100:"),
        "b's lane shows no segment of the service"
    );
}
