//! A partition between the primary and its backup while both still reach the client (a split
//! brain), without a witness: the backup takes over from a copy that stops at the cut while
//! the primary goes on serving. It must notice that its copy is behind what the client saw,
//! and reset the connection and report it, never continue it from stale bytes or leave it
//! hanging.

mod common;

use std::time::Duration;

use common::*;
use holdfast_harness::client::{ClientSpec, Workload};
use holdfast_harness::{Fault, need_root};

#[test]
fn a_split_brain_resets_and_reports_a_connection_it_cannot_keep() {
    need_root!();
    let _serial = serial();
    let dir = run_dir("split-brain");
    let mut c = up(&dir, two_node());
    wait_ready(&c, &["a", "b"]);
    let mut spec = ClientSpec::new(Workload::Stream, "198.18.0.10:7".parse().unwrap());
    spec.bytes = 4_000_000;
    spec.pace_us = 2000;
    spec.stall_timeout_ms = 5000;
    let h = c.start_client("client", spec).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    c.fault(&Fault::parse("partition", "a", Some("b")).unwrap())
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    c.fault(&Fault::parse("heal-partition", "a", None).unwrap())
        .unwrap();
    let rep = h.wait().unwrap();
    eprintln!("{}", rep.summary());
    let hung = rep
        .connections
        .iter()
        .any(|x| x.errors.iter().any(|e| e.contains("no progress")));
    assert!(!hung, "the connection hung: {}", rep.summary());
    let b = status(&c, "b").expect("b's status");
    // Cut off from a, b's copy ends at the partition: either a acknowledged client bytes b
    // never saw (copy_behind_client), or b saw later client bytes than it holds and could not
    // fetch the gap from a (capture_hole). Either way the loss is counted, with its reason.
    let by_reason = |r: &str| b["connections"]["lost"][r].as_u64().unwrap_or(0);
    let lost = by_reason("copy_behind_client") + by_reason("capture_hole");
    if rep.intact() {
        eprintln!("kept whole (b never took it over)");
    } else {
        assert!(
            rep.connections.iter().any(|x| x.resets > 0),
            "ended without a reset: {}",
            rep.summary()
        );
        assert_eq!(
            lost, 1,
            "b reset the connection without reporting it as copy_behind_client or capture_hole: {b}"
        );
    }
    c.down().unwrap();
}
