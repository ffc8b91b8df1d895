//! Spare heartbeats: a node whose protocol loop is held (a slow syscall, a long restore) is
//! still alive, its kernel and serving threads at work; the ALIVE datagrams its core sealed in
//! advance, sent by the daemon's beacon thread, keep its peers from assuming its groups for up
//! to the reserve. A process that is frozen or dead sends none, and a loop held longer than the
//! reserve is declared dead. An ALIVE never makes another peer look fresher than it is, and
//! never revives a peer declared dead.

mod sim;

use std::time::Duration;

use holdfast_proto::node::Event;
use holdfast_proto::policy::{Assignment, FailbackMode};
use holdfast_proto::time::Time;
use sim::{Cluster, Trace, id, policy};

const MS: Duration = Duration::from_millis(1);
const RESERVE: Duration = Duration::from_millis(100);
/// Detection bound for a 10 ms heartbeat and a miss count of 3.
const DETECT: Duration = Duration::from_millis(40);

fn cluster(n: usize, seed: u64, reserve: Duration) -> Cluster {
    let mut c = Cluster::with_reserve(
        n,
        policy(10, FailbackMode::None, Assignment::Ordered),
        seed,
        reserve,
    );
    c.drive(200 * MS);
    for i in 0..n {
        let h: Vec<_> = c.holders(id(i)).iter().map(|h| h.0).collect();
        assert_eq!(h, [id(i)], "seed {seed}: group {i}\n{}", c.story());
    }
    c
}

/// When `by` first declared `dead` dead after `t`.
fn declared_dead(c: &Cluster, t: Time, by: usize, dead: usize) -> Option<Time> {
    c.trace
        .iter()
        .filter(|(at, _)| *at >= t)
        .find(|(_, x)| {
            matches!(x, Trace::Event { node, event: Event::PeerDead { node: d } }
                if *node == id(by) && *d == id(dead))
        })
        .map(|(at, _)| *at)
}

fn spares_sent(c: &Cluster, t: Time, from: usize) -> usize {
    c.since(t)
        .filter(|x| matches!(x, Trace::Spare { from: f } if *f == id(from)))
        .count()
}

#[test]
fn a_held_loop_is_heard_through_its_spares() {
    for seed in 0..20 {
        let mut c = cluster(2, seed, RESERVE);
        let t = c.time;
        c.hold(0);
        c.drive(80 * MS);
        c.thaw(0);
        c.drive(200 * MS);
        assert_eq!(
            declared_dead(&c, t, 1, 0),
            None,
            "seed {seed}: b declared a dead while only its loop was held\n{}",
            c.story()
        );
        let n = spares_sent(&c, t, 0);
        assert!(
            (6..=8).contains(&n),
            "seed {seed}: {n} spares sent in an 80 ms hold\n{}",
            c.story()
        );
        for g in 0..2 {
            let h: Vec<_> = c.holders(id(g)).iter().map(|h| h.0).collect();
            assert_eq!(h, [id(g)], "seed {seed}: group {g}\n{}", c.story());
        }
        assert!(c.double_claims().is_empty());
    }
}

#[test]
fn without_a_reserve_the_same_hold_is_taken_for_a_failure() {
    for seed in 0..20 {
        let mut c = cluster(2, seed, Duration::ZERO);
        let t = c.time;
        c.hold(0);
        c.drive(80 * MS);
        assert_eq!(spares_sent(&c, t, 0), 0);
        assert!(
            declared_dead(&c, t, 1, 0).is_some_and(|d| d - t <= DETECT),
            "seed {seed}: b did not declare a dead within {DETECT:?}\n{}",
            c.story()
        );
    }
}

#[test]
fn a_loop_held_for_good_is_declared_dead_once_the_reserve_is_spent() {
    for seed in 0..20 {
        let mut c = cluster(2, seed, RESERVE);
        let t = c.time;
        c.hold(0);
        c.drive(400 * MS);
        let at = declared_dead(&c, t, 1, 0).map(|d| d - t);
        assert!(
            at.is_some_and(|d| d >= RESERVE && d <= RESERVE + DETECT + 10 * MS),
            "seed {seed}: b declared a dead {at:?} after its loop was held\n{}",
            c.story()
        );
        // b took a's group (a, held, has not seen that yet: it releases once its loop runs).
        let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
        assert!(
            h.contains(&id(1)),
            "seed {seed}: a's group: {h:?}\n{}",
            c.story()
        );
    }
}

#[test]
fn a_frozen_process_sends_no_spares() {
    for seed in 0..20 {
        let mut c = cluster(2, seed, RESERVE);
        let t = c.time;
        c.freeze(0);
        c.drive(100 * MS);
        assert_eq!(spares_sent(&c, t, 0), 0, "seed {seed}\n{}", c.story());
        assert!(
            declared_dead(&c, t, 1, 0).is_some_and(|d| d - t <= DETECT),
            "seed {seed}: b did not declare a frozen a dead within {DETECT:?}\n{}",
            c.story()
        );
    }
}

#[test]
fn spares_never_vouch_for_a_peer_that_died() {
    for seed in 0..20 {
        let mut c = cluster(3, seed, RESERVE);
        let t = c.time;
        // a's loop is held with c in its last heartbeat's list; c dies at once.
        c.hold(0);
        c.crash(2);
        c.drive(100 * MS);
        assert!(spares_sent(&c, t, 0) >= 5, "seed {seed}\n{}", c.story());
        assert!(
            declared_dead(&c, t, 1, 2).is_some_and(|d| d - t <= DETECT),
            "seed {seed}: b did not declare c dead within {DETECT:?}: a's spares kept it \
             alive\n{}",
            c.story()
        );
        assert_eq!(
            declared_dead(&c, t, 1, 0),
            None,
            "seed {seed}\n{}",
            c.story()
        );
    }
}

#[test]
fn an_alive_never_revives_a_peer_declared_dead() {
    for seed in 0..20 {
        let mut c = cluster(2, seed, RESERVE);
        let t = c.time;
        // a's loop is held and its link cut: b declares it dead, then a's spares reach b.
        c.hold(0);
        c.set_cut(0, true);
        c.drive(50 * MS);
        assert!(
            declared_dead(&c, t, 1, 0).is_some(),
            "seed {seed}: b did not declare a dead\n{}",
            c.story()
        );
        let t1 = c.time;
        c.set_cut(0, false);
        c.drive(40 * MS);
        assert!(spares_sent(&c, t1, 0) >= 3, "seed {seed}\n{}", c.story());
        let revived = c.since(t1).any(|x| {
            matches!(x, Trace::Event { node, event: Event::PeerUp { node: p, .. } | Event::Reachable { node: p } }
                if *node == id(1) && *p == id(0))
        });
        assert!(!revived, "seed {seed}: an ALIVE revived a\n{}", c.story());
        let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
        assert!(
            h.contains(&id(1)),
            "seed {seed}: a's group: {h:?}\n{}",
            c.story()
        );
        // Its loop runs again: a real message brings it back, and it lets the group go.
        c.thaw(0);
        c.drive(200 * MS);
        let h: Vec<_> = c.holders(id(0)).iter().map(|h| h.0).collect();
        assert_eq!(
            h,
            [id(1)],
            "seed {seed}: a's group after the thaw\n{}",
            c.story()
        );
        assert!(c.double_claims().is_empty(), "seed {seed}\n{}", c.story());
    }
}
