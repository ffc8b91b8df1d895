//! Telling a partition from a death: every HEARTBEAT lists the peers its sender hears itself,
//! so a node that stops hearing a peer which others still hear knows it is cut off from it,
//! not that it died. A witness (a member that owns nothing and backs nobody up) is the third
//! opinion a two-node cluster lacks. Without one, a two-node cluster cannot tell the two apart,
//! and both sides assume (the daemon then resets what it cannot continue, and reports it).

mod sim;

use std::time::Duration;

use holdfast_proto::node::Event;
use holdfast_proto::policy::{Assignment, FailbackMode};
use holdfast_proto::time::Time;
use sim::{Cluster, Trace, id, policy};

const MS: Duration = Duration::from_millis(1);

fn with_witness(seed: u64) -> Cluster {
    let mut c = Cluster::with_witness(3, policy(10, FailbackMode::None, Assignment::Ordered), seed);
    c.drive(200 * MS);
    for i in 0..2 {
        let h: Vec<_> = c.holders(id(i)).iter().map(|h| h.0).collect();
        assert_eq!(h, [id(i)], "seed {seed}: group {i}\n{}", c.story());
    }
    c
}

fn events_since(c: &Cluster, t: Time, at: usize) -> Vec<Event> {
    c.since(t)
        .filter_map(|x| match x {
            Trace::Event { node, event } if *node == id(at) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn declared_dead(c: &Cluster, t: Time, at: usize, who: usize) -> bool {
    events_since(c, t, at)
        .iter()
        .any(|e| matches!(e, Event::PeerDead { node } if *node == id(who)))
}

#[test]
fn a_partition_between_primary_and_backup_moves_nothing_while_the_witness_hears_both() {
    for seed in 0..20 {
        for both_ways in [true, false] {
            let mut c = with_witness(seed);
            let t = c.time;
            c.set_partition(0, 1, both_ways, true);
            c.drive(1000 * MS);
            for (i, other) in [(0, 1), (1, 0)] {
                assert!(
                    !declared_dead(&c, t, i, other),
                    "seed {seed} both_ways {both_ways}: {i} declared {other} dead\n{}",
                    c.story()
                );
                let h: Vec<_> = c.holders(id(i)).iter().map(|h| h.0).collect();
                assert_eq!(h, [id(i)], "seed {seed}: group {i}\n{}", c.story());
            }
            // Node 1 cannot hear node 0 (either cut), and says why it does nothing.
            assert!(
                events_since(&c, t, 1).iter().any(
                    |e| matches!(e, Event::CutOff { node, heard_by } if *node == id(0) && *heard_by == id(2))
                ),
                "seed {seed}: no CutOff at node 1\n{}",
                c.story()
            );
            let healed = c.time;
            c.set_partition(0, 1, both_ways, false);
            c.drive(200 * MS);
            assert!(
                events_since(&c, healed, 1)
                    .iter()
                    .any(|e| matches!(e, Event::Reachable { node } if *node == id(0))),
                "seed {seed}: no Reachable after the heal\n{}",
                c.story()
            );
            assert!(c.double_claims().is_empty(), "seed {seed}\n{}", c.story());
        }
    }
}

#[test]
fn a_dead_primary_is_taken_over_as_fast_with_a_witness_as_without() {
    for seed in 0..20 {
        let mut c = with_witness(seed);
        let t = c.time;
        c.crash(0);
        c.drive(300 * MS);
        let took = c
            .trace
            .iter()
            .find(|(at, x)| {
                *at >= t
                    && matches!(x, Trace::Claim { node, owner, .. } if *node == id(1) && *owner == id(0))
            })
            .map(|(at, _)| *at - t)
            .unwrap_or_else(|| panic!("seed {seed}: never taken over\n{}", c.story()));
        // Three missed 10 ms heartbeats, plus at most one interval of phase and delivery: the
        // witness's reports (ages of what it heard itself) never extend a dead node's window.
        assert!(took <= 41 * MS, "seed {seed}: took {took:?}\n{}", c.story());
        assert!(declared_dead(&c, t, 2, 0), "the witness saw it die too");
    }
}

#[test]
fn a_dead_node_is_not_kept_alive_by_reports_of_others() {
    // Four nodes with lossy links: reports of what others heard never make a dead node live
    // again or keep it live past its window.
    for seed in 0..20 {
        let mut c = Cluster::new(4, policy(10, FailbackMode::None, Assignment::Ordered), seed);
        c.links.loss = 0.2;
        c.drive(300 * MS);
        let t = c.time;
        c.crash(0);
        c.drive(300 * MS);
        for i in 1..4 {
            assert!(
                declared_dead(&c, t, i, 0),
                "seed {seed}: node {i} never declared 0 dead\n{}",
                c.story()
            );
        }
        assert_eq!(c.holders(id(0)).len(), 1, "seed {seed}\n{}", c.story());
    }
}

#[test]
fn without_a_witness_both_sides_of_a_two_node_partition_assume_and_the_heal_keeps_one() {
    let mut c = Cluster::new(2, policy(10, FailbackMode::None, Assignment::Ordered), 3);
    c.drive(200 * MS);
    c.set_partition(0, 1, true, true);
    c.drive(200 * MS);
    let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
    assert_eq!(h, [id(0), id(1)], "{}", c.story());
    c.set_partition(0, 1, true, false);
    c.drive(200 * MS);
    let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
    assert_eq!(h, [id(1)], "the higher epoch wins\n{}", c.story());
}

#[test]
fn a_primary_cut_off_from_its_backup_and_the_witness_steps_down_and_the_backup_alone_serves() {
    for seed in 0..20 {
        let mut c = with_witness(seed);
        let t = c.time;
        // Node 0 hears neither node 1 nor the witness (nor they it).
        c.set_partition(0, 1, true, true);
        c.set_partition(0, 2, true, true);
        c.drive(300 * MS);
        assert!(
            events_since(&c, t, 0)
                .iter()
                .any(|e| matches!(e, Event::SteppedDown { released } if released.contains(&id(0)))),
            "seed {seed}: node 0 did not step down\n{}",
            c.story()
        );
        let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
        assert_eq!(h, [id(1)], "seed {seed}: group 0\n{}", c.story());
        // Healed, the returning node re-synchronises and takes nothing back (failback none).
        c.set_partition(0, 1, true, false);
        c.set_partition(0, 2, true, false);
        c.drive(300 * MS);
        let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
        assert_eq!(h, [id(1)], "seed {seed}: after the heal\n{}", c.story());
        assert_eq!(c.holders(id(1)).len(), 1, "seed {seed}\n{}", c.story());
    }
}

#[test]
fn without_a_witness_a_lone_survivor_keeps_serving() {
    // Three serving nodes, two of them dead: the last one cannot tell it is not the one cut
    // off, and with no witness it keeps every group.
    let mut c = Cluster::new(3, policy(10, FailbackMode::None, Assignment::Ordered), 5);
    c.drive(200 * MS);
    c.crash(1);
    c.crash(2);
    c.drive(300 * MS);
    for g in 0..3 {
        let h: Vec<_> = c.holders(id(g)).iter().map(|h| h.0).collect();
        assert_eq!(h, [id(0)], "group {g}\n{}", c.story());
    }
}
