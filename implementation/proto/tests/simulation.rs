//! The protocol in a deterministic simulator: one named scenario per claim, then properties
//! over 10,000 seeded random schedules. A failing schedule prints its seed; replay it with
//! `HOLDFAST_SIM_SEED=N cargo test -p holdfast-proto --test simulation replay -- --nocapture`.

mod sim;

use std::collections::BTreeSet;
use std::time::Duration;

use holdfast_proto::node::Event;
use holdfast_proto::policy::{Assignment, FailbackMode};
use holdfast_proto::time::Time;
use holdfast_proto::wire::{MsgType, Scope};
use sim::{Cluster, Trace, id, policy};

const MS: Duration = Duration::from_millis(1);

fn ordered(n: usize, failback: FailbackMode, seed: u64) -> Cluster {
    Cluster::new(n, policy(10, failback, Assignment::Ordered), seed)
}

/// Detection bound for a 10 ms heartbeat and a miss count of 3.
const DETECT: Duration = Duration::from_millis(40);

fn settled(c: &mut Cluster) {
    c.drive(200 * MS);
    for i in 0..c.nodes.len() {
        assert!(
            c.node(i).unwrap().eligible(),
            "node {i} not eligible\n{}",
            c.story()
        );
        let h: Vec<_> = c.holders(id(i)).iter().map(|h| h.0).collect();
        assert_eq!(
            h,
            [id(i)],
            "node {i} should hold its own group\n{}",
            c.story()
        );
    }
}

#[test]
fn claims_2_3_12_13_17_18_boot_announces_every_ownership_field() {
    let mut c = ordered(3, FailbackMode::Migrate, 1);
    c.drive(50 * MS);
    for i in 0..3 {
        // The first thing a node sends is its ANNOUNCE, then its SOLICIT.
        let sent: Vec<MsgType> = c.stats_sent_order(id(i)).into_iter().take(2).collect();
        assert_eq!(sent, [MsgType::Announce, MsgType::Solicit]);
        for k in 0..3 {
            if k == i {
                continue;
            }
            let m = &c.node(k).unwrap().members()[&id(i)];
            let o = m.ownership.as_ref().expect("ownership received");
            // All eight fields, exactly as configured.
            assert_eq!(o, &c.nodes[i].cfg.ownership);
            assert_eq!(o.node_id, id(i));
            assert!(!o.policy.backups.is_empty());
            assert_eq!(o.addresses.len(), 1);
            assert_eq!(o.ports, (7, 7));
            assert_eq!(o.application, "echo");
            assert_eq!(o.protocol, 6);
        }
    }
}

#[test]
fn claim_4_a_late_node_solicits_and_the_others_announce() {
    let mut c = ordered(3, FailbackMode::None, 2);
    c.crash(2);
    c.drive(300 * MS);
    let t = c.time;
    c.boot(2);
    c.drive(5 * MS);
    // Within a few ms (no heartbeat carries records), node 3 knows both peers' records.
    let n = c.node(2).unwrap();
    assert!(n.members()[&id(0)].ownership.is_some());
    assert!(n.members()[&id(1)].ownership.is_some());
    let announces_after: usize = c
        .trace
        .iter()
        .filter(|(at, x)| *at >= t && matches!(x, Trace::Sent { from, .. } if *from != id(2)))
        .count();
    assert!(announces_after >= 2);
}

#[test]
fn claims_1_6_7_a_backup_detects_the_failure_and_assumes() {
    let mut c = ordered(3, FailbackMode::None, 3);
    settled(&mut c);
    let t = c.time;
    c.crash(0);
    c.drive(DETECT + 10 * MS);
    let holders = c.holders(id(0));
    assert_eq!(holders.len(), 1, "{}", c.story());
    assert_eq!(holders[0].0, id(1), "the first backup assumes");
    assert_eq!(c.assumers_since(id(0), t), BTreeSet::from([id(1)]));
    // Detected within (miss_count + 1) x interval.
    let dead_at = c
        .trace
        .iter()
        .find(|(at, x)| *at >= t && matches!(x, Trace::Event { node, event: Event::PeerDead { node: d } } if *node == id(1) && *d == id(0)))
        .map(|(at, _)| *at)
        .expect("PeerDead");
    assert!(dead_at - t <= DETECT, "detected after {:?}", dead_at - t);
}

/// Over many seeds: whether node 3 notices the failure before or after node 2's
/// TAKEOVER-NOTICE reaches it, it asks node 2, once, and node 2 alone assumes.
#[test]
fn claim_10_the_third_node_asks_the_assumer_and_exactly_one_wins() {
    for seed in 0..40 {
        let mut c = ordered(3, FailbackMode::None, seed);
        settled(&mut c);
        let t = c.time;
        c.crash(0);
        c.drive(DETECT + 20 * MS);
        let requests = c
            .since(t)
            .filter(|x| {
                matches!(x, Trace::Event { node, event: Event::Requested { owner, to } } if *node == id(2) && *owner == id(0) && *to == id(1))
            })
            .count();
        assert_eq!(
            requests,
            1,
            "seed {seed}: node 3 must ask node 2 once\n{}",
            c.story()
        );
        let answered = c.since(t).any(|x| {
            matches!(x, Trace::Event { node, event: Event::Answered { owner, from, granted: false } } if *node == id(2) && *owner == id(0) && *from == id(1))
        });
        assert!(
            answered,
            "seed {seed}: node 2 must answer (deny: it assumes)\n{}",
            c.story()
        );
        assert_eq!(
            c.assumers_since(id(0), t),
            BTreeSet::from([id(1)]),
            "seed {seed}"
        );
    }
}

#[test]
fn claim_10_if_the_assumer_dies_during_the_exchange_the_next_wins() {
    let mut c = ordered(3, FailbackMode::None, 5);
    settled(&mut c);
    c.crash(0);
    c.crash(1);
    let t = c.time;
    c.drive(DETECT * 2 + 20 * MS);
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(2)]
    );
    assert_eq!(
        c.holders(id(1)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(2)]
    );
    assert!(c.time - t <= DETECT * 2 + 20 * MS);
}

#[test]
fn claims_5_14_19_failback_new_connections_returns_the_group() {
    let mut c = ordered(3, FailbackMode::NewConnections, 6);
    settled(&mut c);
    c.crash(0);
    c.drive(100 * MS);
    assert_eq!(c.holders(id(0))[0].0, id(1));
    let t = c.time;
    c.boot(0);
    c.drive(200 * MS);
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(0)],
        "{}",
        c.story()
    );
    // The assumer was told to hand back (and keep draining its connections).
    assert!(c.since(t).any(|x| matches!(x, Trace::HandBack { node, mode: FailbackMode::NewConnections, .. } if *node == id(1))));
    // No connection is discarded: they drain.
    assert!(!c.since(t).any(|x| matches!(x, Trace::Discard { .. })));
}

#[test]
fn new_connections_failback_forwards_the_draining_connections_before_the_claim() {
    let t1 = holdfast_proto::wire::FourTuple {
        local: "198.18.0.10:7".parse().unwrap(),
        remote: "198.18.0.100:40000".parse().unwrap(),
    };
    let t2 = holdfast_proto::wire::FourTuple {
        remote: "198.18.0.100:40001".parse().unwrap(),
        ..t1
    };
    forwards_before_the_claim(vec![t1, t2]);
    // 12,000 IPv6 connections: the set comes in eight HANDBACK parts, and the owner forwards
    // all of them, not the first 1,500.
    let many = (0..12_000u32)
        .map(|i| holdfast_proto::wire::FourTuple {
            local: "[2001:db8::10]:7".parse().unwrap(),
            remote: std::net::SocketAddr::new(
                format!("2001:db8::1:{:x}", i / 50_000).parse().unwrap(),
                (10_000 + i % 50_000) as u16,
            ),
        })
        .collect();
    forwards_before_the_claim(many);
}

fn forwards_before_the_claim(draining: Vec<holdfast_proto::wire::FourTuple>) {
    let mut c = ordered(2, FailbackMode::NewConnections, 16);
    c.draining = draining.clone();
    settled(&mut c);
    c.crash(0);
    c.drive(100 * MS);
    let t = c.time;
    c.boot(0);
    c.drive(200 * MS);
    assert_eq!(c.holders(id(0))[0].0, id(0), "{}", c.story());
    let story: Vec<_> = c
        .since(t)
        .filter(|x| match x {
            Trace::Forward { node, .. } | Trace::Claim { node, .. } => *node == id(0),
            _ => false,
        })
        .collect();
    let forward = story
        .iter()
        .position(|x| matches!(x, Trace::Forward { to, connections, .. } if *to == id(1) && *connections == draining));
    let claim = story
        .iter()
        .position(|x| matches!(x, Trace::Claim { owner, .. } if *owner == id(0)));
    assert!(
        matches!((forward, claim), (Some(f), Some(c)) if f < c),
        "the owner forwards all {} draining connections before it claims: {}",
        draining.len(),
        c.story()
    );
    // All but one close on the assumer: the owner is told, and forwards only that one.
    let last = *draining.last().unwrap();
    let t = c.time;
    c.nodes[1]
        .node
        .as_mut()
        .unwrap()
        .draining(id(0), vec![last]);
    c.drain(1);
    c.drive(20 * MS);
    assert!(
        c.since(t).any(|x| matches!(x, Trace::Forward { node, connections, .. } if *node == id(0) && connections == &vec![last])),
        "{}",
        c.story()
    );
}

#[test]
fn claims_5_14_19_failback_migrate_moves_connections_back() {
    let mut c = ordered(3, FailbackMode::Migrate, 7);
    settled(&mut c);
    c.crash(0);
    c.drive(100 * MS);
    let t = c.time;
    c.boot(0);
    c.drive(200 * MS);
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(0)]
    );
    assert!(c.since(t).any(
        |x| matches!(x, Trace::HandBack { node, mode: FailbackMode::Migrate, .. } if *node == id(1))
    ));
    // The owner re-creates the connections it got back.
    assert!(c.since(t).any(
        |x| matches!(x, Trace::Assume { node, owner, .. } if *node == id(0) && *owner == id(0))
    ));
}

#[test]
fn failback_none_the_assumer_keeps_the_group() {
    let mut c = ordered(3, FailbackMode::None, 8);
    settled(&mut c);
    c.crash(0);
    c.drive(100 * MS);
    c.boot(0);
    c.drive(300 * MS);
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(1)]
    );
    // And if the assumer then fails, the returned owner is first in line again.
    c.crash(1);
    c.drive(100 * MS);
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(0)]
    );
}

/// Who assumed `owner`'s connections since `t`, and which of them, in order.
fn assumed_since(c: &Cluster, t: Time, owner: holdfast_proto::policy::NodeId) -> Vec<(u32, Scope)> {
    c.since(t)
        .filter_map(|x| match x {
            Trace::Assume {
                node,
                owner: o,
                scope,
                ..
            } if *o == owner => Some((node.0, scope.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn spread_splits_the_connections_and_the_top_keeps_the_addresses() {
    // Over many seeds: node 3 may notice the failure before node 2 (and be told "the holder is
    // alive"), or after node 2's TAKEOVER-NOTICE; either way it ends up with its share.
    for seed in 0..40 {
        let mut c = Cluster::new(3, policy(10, FailbackMode::None, Assignment::Spread), seed);
        c.connections = (0..5)
            .map(|k| holdfast_proto::wire::FourTuple {
                local: "198.18.0.1:7".parse().unwrap(),
                remote: format!("198.18.0.100:{}", 40000 + k * 7 + seed as u16)
                    .parse()
                    .unwrap(),
            })
            .collect();
        let lists = holdfast_proto::share::split(&c.connections, 2)
            .lists
            .unwrap();
        settled(&mut c);
        let t = c.time;
        c.crash(0);
        c.drive(100 * MS);
        assert_eq!(
            c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
            [id(1)],
            "seed {seed}"
        );
        let shares: BTreeSet<(u32, Scope)> = assumed_since(&c, t, id(0)).into_iter().collect();
        assert_eq!(
            shares,
            BTreeSet::from([
                (2, Scope::Share { index: 0, of: 2 }),
                (3, Scope::Connections(lists[1].clone()))
            ]),
            "seed {seed}\n{}",
            c.story()
        );
    }
}

#[test]
fn spread_grants_the_holders_explicit_split() {
    let mut c = Cluster::new(3, policy(10, FailbackMode::None, Assignment::Spread), 19);
    let t = |port: u16| holdfast_proto::wire::FourTuple {
        local: "198.18.0.1:7".parse().unwrap(),
        remote: format!("198.18.0.100:{port}").parse().unwrap(),
    };
    // The core splits every second connection in sorted order to each share.
    c.connections = vec![t(40003), t(40001), t(40002), t(40000)];
    let lists = [vec![t(40000), t(40002)], vec![t(40001), t(40003)]];
    settled(&mut c);
    let t0 = c.time;
    c.crash(0);
    c.drive(100 * MS);
    let scopes = assumed_since(&c, t0, id(0));
    assert_eq!(
        scopes,
        [
            (2, Scope::Share { index: 0, of: 2 }),
            (3, Scope::Connections(lists[1].clone()))
        ],
        "{}",
        c.story()
    );
}

/// A node frozen for 200 ms (SIGSTOP) wakes up with its heartbeat timer long overdue and its
/// peers' heartbeats still unread: it must not declare them dead for that. Its backup rightly
/// took its group over meanwhile; after the thaw exactly one node holds each group.
#[test]
fn a_thawed_node_does_not_declare_its_live_peers_dead() {
    for seed in 0..20 {
        let mut c = ordered(2, FailbackMode::None, seed);
        settled(&mut c);
        c.freeze(0);
        c.drive(200 * MS);
        let t = c.time;
        c.thaw(0);
        c.drive(200 * MS);
        let woke = c.since(t).any(
            |x| matches!(x, Trace::Event { node, event: Event::Resumed { .. } } if *node == id(0)),
        );
        assert!(woke, "seed {seed}: no Resumed event\n{}", c.story());
        let false_death = c.since(t).any(|x| {
            matches!(x, Trace::Event { node, event: Event::PeerDead { node: d } } if *node == id(0) && *d == id(1))
        });
        assert!(
            !false_death,
            "seed {seed}: a declared b dead on waking\n{}",
            c.story()
        );
        for g in 0..2 {
            let h = c.holders(id(g));
            assert_eq!(
                h.len(),
                1,
                "seed {seed}: group {g} held by {h:?}\n{}",
                c.story()
            );
        }
        assert!(c.double_claims().is_empty());
    }
}

#[test]
fn a_partitioned_then_healed_primary_yields_to_the_higher_epoch() {
    let mut c = ordered(3, FailbackMode::None, 10);
    settled(&mut c);
    c.set_cut(0, true);
    c.drive(100 * MS);
    // Both hold it for now: the primary at its old epoch, the backup at a higher one.
    let h = c.holders(id(0));
    assert_eq!(h.len(), 2);
    let t = c.time;
    c.set_cut(0, false);
    c.drive(100 * MS);
    let h = c.holders(id(0));
    assert_eq!(
        h.iter().map(|x| x.0).collect::<Vec<_>>(),
        [id(1)],
        "{}",
        c.story()
    );
    // The primary released silently.
    assert!(
        c.since(t).any(
            |x| matches!(x, Trace::Discard { node, owner } if *node == id(0) && *owner == id(0))
        )
    );
}

#[test]
fn a_node_whose_link_is_down_assumes_nothing() {
    let mut c = ordered(3, FailbackMode::None, 11);
    settled(&mut c);
    c.set_link(2, false);
    c.drive(200 * MS);
    // Node 3 sees everyone as dead but takes nothing over.
    assert!(c.holders(id(0)).iter().all(|h| h.0 != id(2)));
    assert!(c.holders(id(1)).iter().all(|h| h.0 != id(2)));
    // Meanwhile its own group moved to its first backup (node 1), at a higher epoch.
    assert_eq!(
        c.holders(id(2)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(0), id(2)]
    );
    c.set_link(2, true);
    c.drive(200 * MS);
    // Back on the link, node 3 yields (failback is `none`) and everyone agrees.
    assert_eq!(
        c.holders(id(2)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(0)],
        "{}",
        c.story()
    );
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(0)]
    );
    assert_eq!(
        c.holders(id(1)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(1)]
    );
}

#[test]
fn a_graceful_shutdown_hands_over_within_an_interval() {
    let mut c = ordered(3, FailbackMode::None, 12);
    settled(&mut c);
    let t = c.time;
    c.nodes[0]
        .node
        .as_mut()
        .unwrap()
        .command(t, holdfast_proto::node::Command::Shutdown);
    c.drain(0);
    c.drive(10 * MS);
    let claim = c
        .trace
        .iter()
        .find(|(at, x)| *at >= t && matches!(x, Trace::Claim { node, owner, .. } if *node == id(1) && *owner == id(0)))
        .map(|(at, _)| *at)
        .expect("claimed");
    assert!(claim - t <= 10 * MS, "{:?}", claim - t);
}

#[test]
fn rolling_failures_a_then_b_then_c_assumes_both() {
    let mut c = ordered(3, FailbackMode::NewConnections, 13);
    settled(&mut c);
    c.crash(0);
    c.drive(100 * MS);
    assert_eq!(c.holders(id(0))[0].0, id(1));
    c.crash(1);
    c.drive(100 * MS);
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(2)]
    );
    assert_eq!(
        c.holders(id(1)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(2)]
    );
    c.boot(0);
    c.boot(1);
    c.drive(300 * MS);
    for i in 0..3 {
        assert_eq!(
            c.holders(id(i)).iter().map(|h| h.0).collect::<Vec<_>>(),
            [id(i)],
            "{}",
            c.story()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Random schedules

/// Runs one random schedule and checks every property; returns a description of the first
/// violation.
fn schedule(seed: u64) -> Result<(), String> {
    let mut r = holdfast_proto::node::Rng::new(seed);
    let mut pick = |n: u64| r.next_u64() % n;
    let n = 2 + pick(3) as usize; // 2..=4 nodes
    let failback = [
        FailbackMode::None,
        FailbackMode::NewConnections,
        FailbackMode::Migrate,
    ][pick(3) as usize];
    let clean = pick(2) == 0; // clean: only crashes and reboots, no loss or partitions
    let iv = 10u32;
    let mut c = Cluster::new(n, policy(iv, failback, Assignment::Ordered), seed);
    if !clean {
        c.links.loss = pick(20) as f64 / 100.0;
        c.links.delay = (
            Duration::from_micros(50),
            Duration::from_micros(50 + pick(3000)),
        );
    }
    let bound = Duration::from_millis(iv as u64 * 4);
    c.drive(150 * MS);
    // (deadline, observer, crashed node)
    let mut checks: Vec<(Time, usize, usize, Time)> = Vec::new();
    let faults = 2 + pick(4);
    for _ in 0..faults {
        let i = pick(n as u64) as usize;
        let kind = if clean { pick(2) } else { pick(4) };
        match kind {
            0 if c.alive(i) => {
                let t = c.time;
                c.crash(i);
                for p in 0..n {
                    if p != i && c.alive(p) && !c.nodes[p].cut && !c.nodes[i].cut {
                        checks.push((t + bound, p, i, t));
                    }
                }
            }
            0 | 1 if !c.alive(i) => c.boot(i),
            1 => {}
            2 => {
                let cut = !c.nodes[i].cut;
                c.set_cut(i, cut);
            }
            _ => {
                let up = c.nodes[i].link_down;
                c.set_link(i, up);
            }
        }
        let gap = Duration::from_millis(60 + pick(200));
        let until = c.time + gap;
        // Step, checking the invariants that hold at every instant.
        while c.time < until {
            if !c.step() {
                break;
            }
            if clean {
                for o in 0..n {
                    let h = c.holders(id(o));
                    if h.len() > 1 {
                        return fail(
                            &c,
                            format!("clean schedule: two holders of group {o} at once: {h:?}"),
                        );
                    }
                }
            }
            checks.retain(|(deadline, p, x, crashed_at)| {
                if c.time < *deadline {
                    return true;
                }
                // Only judge observers that stayed up and connected, for a node still down.
                let rebooted = c.trace.iter().any(|(at, t)| at > crashed_at && matches!(t, Trace::Boot { node } if *node == id(*x)));
                let observer_ok = c.alive(*p) && !c.nodes[*p].cut && !c.nodes[*p].link_down;
                if !rebooted && observer_ok && c.node(*p).unwrap().members().get(&id(*x)).is_some_and(|m| m.alive) {
                    panic!("detection: node {p} still sees crashed node {x} alive {:?} after the crash", c.time - *crashed_at);
                }
                false
            });
        }
    }
    // Heal everything and let it settle.
    c.links.loss = 0.0;
    for i in 0..n {
        c.set_cut(i, false);
        if c.nodes[i].link_down {
            c.set_link(i, true);
        }
    }
    c.drive(400 * MS);
    if let Some(d) = c.double_claims().first() {
        return fail(
            &c,
            format!("two nodes claimed the same group at the same epoch: {d:?}"),
        );
    }
    let alive: Vec<usize> = (0..n).filter(|i| c.alive(*i)).collect();
    for o in 0..n {
        let h = c.holders(id(o));
        if h.len() > 1 {
            return fail(
                &c,
                format!("after healing, group {o} has two holders: {h:?}"),
            );
        }
        // Every group whose record survives on a live node is held, if anyone can.
        let known = alive.iter().any(|i| {
            *i == o
                || c.node(*i)
                    .unwrap()
                    .members()
                    .get(&id(o))
                    .is_some_and(|m| m.ownership.is_some())
        });
        if known && !alive.is_empty() && h.is_empty() {
            return fail(
                &c,
                format!("after healing, group {o} is held by nobody (alive: {alive:?})"),
            );
        }
        // The holder's epoch is the newest any live node knows.
        if let Some((_, e)) = h.first() {
            for i in &alive {
                if let Some(g) = c.node(*i).unwrap().groups().get(&id(o))
                    && g.epoch > *e
                {
                    return fail(
                        &c,
                        format!("group {o} held at {e} but node {i} knows {}", g.epoch),
                    );
                }
            }
        }
        // Failback: a live owner with a failback mode holds its own group again.
        if c.alive(o) && failback != FailbackMode::None && h.first().is_some_and(|x| x.0 != id(o)) {
            return fail(
                &c,
                format!(
                    "failback {failback:?}: owner {o} alive but group held by {:?}",
                    h[0]
                ),
            );
        }
    }
    if clean {
        // Exactly one assumer per failure: each Assume(All) is by a distinct epoch holder.
        let mut per_epoch = std::collections::BTreeMap::new();
        for (_, t) in &c.trace {
            if let Trace::Assume {
                node,
                owner,
                epoch,
                scope: Scope::All,
            } = t
            {
                per_epoch
                    .entry((*owner, epoch.counter))
                    .or_insert_with(BTreeSet::new)
                    .insert(*node);
            }
        }
        if let Some((k, v)) = per_epoch.iter().find(|(_, v)| v.len() > 1) {
            return fail(&c, format!("group {} epoch {} assumed by {v:?}", k.0, k.1));
        }
    }
    STORY.with(|s| *s.borrow_mut() = c.story());
    Ok(())
}

fn fail(c: &Cluster, msg: String) -> Result<(), String> {
    STORY.with(|s| *s.borrow_mut() = c.story());
    Err(msg)
}

thread_local! {
    static STORY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn run_schedule(seed: u64) -> Result<(), String> {
    std::panic::catch_unwind(|| schedule(seed)).unwrap_or_else(|e| {
        Err(e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default())
    })
}

#[test]
fn properties_hold_over_10000_seeded_schedules() {
    let total: u64 = std::env::var("HOLDFAST_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8) as u64;
    std::panic::set_hook(Box::new(|_| {}));
    let failures: Vec<(u64, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (0..total)
                        .filter(|seed| seed % threads == t)
                        .filter_map(|seed| run_schedule(seed).err().map(|e| (seed, e)))
                        .take(3)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let _ = std::panic::take_hook();
    assert!(
        failures.is_empty(),
        "{} failing schedules, e.g.:\n{}\nreplay: HOLDFAST_SIM_SEED={} cargo test -p holdfast-proto --test simulation replay -- --nocapture",
        failures.len(),
        failures
            .iter()
            .map(|(s, e)| format!("  seed {s}: {e}"))
            .collect::<Vec<_>>()
            .join("\n"),
        failures[0].0
    );
}

/// Replays one schedule by seed (from a failure message) and prints its story.
#[test]
fn replay() {
    let Some(seed) = std::env::var("HOLDFAST_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    else {
        return;
    };
    let r = schedule(seed);
    println!("seed {seed}: {r:?}");
    STORY.with(|s| println!("{}", s.borrow()));
    assert!(r.is_ok());
}

/// claims 8, 11: a backup whose snooped copy has a hole asks the group's holder for the
/// missing client bytes (FETCH) and gets them (FETCHED), authenticated like every message;
/// over a lossy network it asks again until answered. The holder answers `gone` for bytes it
/// no longer keeps; a group nobody alive holds gets no FETCH at all.
#[test]
fn claim_8_a_backup_fetches_a_hole_from_the_holder() {
    use holdfast_proto::wire::{Fetch, FourTuple};
    let tuple = FourTuple {
        local: "198.18.0.1:7".parse().unwrap(),
        remote: "198.18.0.100:40000".parse().unwrap(),
    };
    for seed in 0..40 {
        let mut c = ordered(3, FailbackMode::None, 100 + seed);
        settled(&mut c);
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        c.nodes[0].history.insert(tuple, bytes.clone());
        c.links.loss = 0.3;
        let ask = Fetch {
            owner: id(0),
            tuple,
            seq: 1000,
            len: 1460,
        };
        // The backup asks every 20 ms until it has an answer, as the daemon does.
        let mut tries = 0;
        while c.nodes[1].fetched.is_empty() && tries < 20 {
            tries += 1;
            let asked = c.with_node(1, |n| n.fetch(ask.clone())).unwrap();
            assert_eq!(asked, Some(id(0)), "the holder of group 1 is node 1");
            c.drive(20 * MS);
        }
        let (_, from, got) = c.nodes[1]
            .fetched
            .first()
            .unwrap_or_else(|| panic!("seed {seed}: no answer in {tries} tries\n{}", c.story()))
            .clone();
        assert_eq!(from, id(0));
        assert_eq!((got.seq, got.gone), (1000, false));
        assert_eq!(got.data, bytes[1000..2460]);
        // Gone: the holder no longer has bytes that old (or never had them).
        c.links.loss = 0.0;
        c.nodes[1].fetched.clear();
        let mut old = ask.clone();
        old.seq = 300_000;
        c.with_node(1, |n| n.fetch(old));
        c.drive(5 * MS);
        assert!(
            c.nodes[1]
                .fetched
                .iter()
                .all(|(_, _, f)| f.gone && f.data.is_empty())
        );
        assert_eq!(c.nodes[1].fetched.len(), 1);
    }
    // Nobody alive holds the group: nothing is asked.
    let mut c = ordered(2, FailbackMode::None, 7);
    settled(&mut c);
    c.crash(0);
    c.drive(5 * MS);
    let mut f = Fetch {
        owner: id(1),
        tuple,
        seq: 0,
        len: 1,
    };
    // Asking for one's own group is asking no one.
    assert_eq!(c.with_node(1, |n| n.fetch(f.clone())).unwrap(), None);
    c.drive(DETECT);
    f.owner = id(0);
    // Group 1 is node 2's now (it took it over): no FETCH to itself.
    assert_eq!(c.with_node(1, |n| n.fetch(f)).unwrap(), None);
}

/// Claim 8, a late backup: a connection's state of any size reaches the backup whole, in
/// parts of one datagram each, also over a lossy network; a state some of whose parts were
/// lost is reported (`SyncIncomplete`), never handed on half-made.
#[test]
fn claim_8_a_large_conn_state_arrives_whole_or_is_reported() {
    use holdfast_proto::node::Event;
    use holdfast_proto::sync::{ASSEMBLY_TIMEOUT, Incomplete};
    use holdfast_proto::wire::{ConnState, FourTuple};
    let state = ConnState {
        owner: id(0),
        tuple: Some(FourTuple {
            local: "198.18.0.1:7".parse().unwrap(),
            remote: "198.18.0.100:40000".parse().unwrap(),
        }),
        snd_una: 12345,
        snd_nxt: 12345 + 300_000,
        unacked: (0..700_000u32).map(|i| (i % 253) as u8).collect(),
        checkpoint: vec![9; 1000],
        ..ConnState::default()
    };
    let (mut whole, mut reported) = (0, 0);
    for seed in 0..30 {
        let mut c = ordered(2, FailbackMode::None, 300 + seed);
        settled(&mut c);
        c.links.loss = if seed % 3 == 0 { 0.0 } else { 0.05 };
        let start = c.time;
        assert_eq!(
            c.with_node(0, |n| n.conn_state(id(1), state.clone())),
            Some(true)
        );
        c.drive(ASSEMBLY_TIMEOUT + 100 * MS);
        let got = &c.nodes[1].states;
        let incomplete: Vec<_> = c
            .since(start)
            .filter(|t| {
                matches!(t, Trace::Event { node, event: Event::SyncIncomplete { why: Incomplete::Timeout, .. } } if *node == id(1))
            })
            .collect();
        match (got.len(), incomplete.len()) {
            (1, 0) => {
                assert_eq!(got[0].2, state, "seed {seed}: the state arrived changed");
                whole += 1;
            }
            (0, 1) => reported += 1,
            other => panic!("seed {seed}: whole and reported {other:?}\n{}", c.story()),
        }
        if c.links.loss == 0.0 {
            assert_eq!(got.len(), 1, "seed {seed}: lost without loss");
        }
    }
    // 15 parts at 5 % loss: about half arrive whole.
    assert!(
        whole >= 10 && reported >= 3,
        "whole {whole}, reported {reported}"
    );
}
