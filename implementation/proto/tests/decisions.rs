//! Decisions the daemon used to make on its own, now the core's and checked here: the `spread`
//! split and its balance, withdrawing and re-instating addresses on link events, the sync of a
//! peer that booted, and where a peer is answered.

mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use holdfast_proto::node::Rng;
use holdfast_proto::policy::{Assignment, FailbackMode, NodeId};
use holdfast_proto::time::Time;
use holdfast_proto::wire::{FourTuple, Scope};
use sim::{Cluster, Trace, addr, id, policy};

const MS: Duration = Duration::from_millis(1);

fn settled(c: &mut Cluster) {
    c.drive(200 * MS);
    for i in 0..c.nodes.len() {
        let h: Vec<_> = c.holders(id(i)).iter().map(|h| h.0).collect();
        assert_eq!(
            h,
            [id(i)],
            "node {i} should hold its own group\n{}",
            c.story()
        );
    }
}

fn random_connections(rng: &mut Rng, n: usize) -> Vec<FourTuple> {
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            FourTuple {
                local: "198.18.0.1:7".parse().unwrap(),
                remote: std::net::SocketAddr::new(
                    std::net::Ipv4Addr::new(198, 19, (r >> 8) as u8, r as u8).into(),
                    1024 + (r >> 16) as u16 % 60000,
                ),
            }
        })
        .collect()
}

/// Which connections each node re-creates after the takeover, from what it was told: the
/// holder's share of its split, a granted list, or a hash share.
fn shares_taken(c: &Cluster, since: Time, owner: NodeId) -> BTreeMap<NodeId, BTreeSet<FourTuple>> {
    let all: BTreeSet<FourTuple> = c.connections.iter().copied().collect();
    let mut out = BTreeMap::new();
    for t in c.since(since) {
        match t {
            Trace::Split {
                node,
                owner: o,
                split,
            } if *o == owner => {
                let mine = all.iter().filter(|t| split.share_of(t) == 0).copied();
                out.insert(*node, mine.collect());
            }
            Trace::Assume {
                node,
                owner: o,
                scope,
                ..
            } if *o == owner => match scope {
                Scope::Connections(l) => {
                    out.insert(*node, l.iter().copied().collect());
                }
                Scope::Share { index, of } if *index != 0 => {
                    let mine = all.iter().filter(|t| t.share(*of) == *index).copied();
                    out.insert(*node, mine.collect());
                }
                _ => {}
            },
            _ => {}
        }
    }
    out
}

/// The balance property of `spread`: over many seeds and set sizes (a list per share up to
/// the datagram's limit, then by hash), the three survivors of a four-node cluster re-create
/// every connection of the failed node exactly once, and, when the shares go by list, no two
/// shares differ by more than one connection.
#[test]
fn spread_shares_cover_every_connection_once_and_are_balanced() {
    let sizes = [0, 1, 2, 3, 7, 100, 1001, 4500, 4503, 6000];
    for seed in 0..40u64 {
        let mut c = Cluster::new(4, policy(10, FailbackMode::None, Assignment::Spread), seed);
        let mut rng = Rng::new(seed);
        let n = sizes[seed as usize % sizes.len()];
        let mut conns = random_connections(&mut rng, n);
        conns.sort();
        conns.dedup();
        c.connections = conns.clone();
        settled(&mut c);
        let t = c.time;
        c.crash(0);
        c.drive(150 * MS);
        let taken = shares_taken(&c, t, id(0));
        assert_eq!(
            taken.keys().copied().collect::<Vec<_>>(),
            [id(1), id(2), id(3)],
            "seed {seed}: every survivor takes a share\n{}",
            c.story()
        );
        let mut seen = BTreeSet::new();
        for (node, set) in &taken {
            for t in set {
                assert!(
                    seen.insert(*t),
                    "seed {seed}: {t:?} re-created twice (again by {node})"
                );
            }
        }
        assert_eq!(
            seen.len(),
            conns.len(),
            "seed {seed}: some connection was not re-created"
        );
        let listed = c
            .since(t)
            .any(|x| matches!(x, Trace::Split { split, .. } if split.lists.is_some()));
        assert_eq!(
            listed,
            conns.len() <= 3 * holdfast_proto::node::DRAIN_MAX,
            "seed {seed}"
        );
        if listed {
            let sizes: Vec<usize> = taken.values().map(BTreeSet::len).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "seed {seed}: shares of {sizes:?}");
        }
    }
}

/// The split itself: the same set in any order gives the same shares.
#[test]
fn the_split_does_not_depend_on_the_order_of_the_connections() {
    let mut rng = Rng::new(5);
    let conns = random_connections(&mut rng, 500);
    let a = holdfast_proto::share::split(&conns, 3);
    let mut reversed = conns.clone();
    reversed.reverse();
    assert_eq!(a, holdfast_proto::share::split(&reversed, 3));
}

fn withdrawn_then(c: &Cluster, since: Time, node: NodeId) -> Vec<&'static str> {
    c.since(since)
        .filter_map(|t| match t {
            Trace::Withdraw { node: n, owner } if *n == node && *owner == node => Some("withdraw"),
            Trace::Reinstate { node: n, owner } if *n == node && *owner == node => {
                Some("reinstate")
            }
            Trace::Release { node: n, owner, .. } if *n == node && *owner == node => {
                Some("release")
            }
            _ => None,
        })
        .collect()
}

/// A link that flaps for less than the detection time: the node takes its addresses off at
/// once, and puts them back once it is eligible again (nobody took them meanwhile).
#[test]
fn a_short_link_loss_withdraws_the_addresses_and_reinstates_them() {
    for seed in 0..10 {
        let mut c = Cluster::new(2, policy(10, FailbackMode::None, Assignment::Ordered), seed);
        settled(&mut c);
        let t = c.time;
        c.set_link(0, false);
        c.drive(15 * MS);
        assert!(c.node(0).unwrap().withdrawn(), "seed {seed}");
        c.set_link(0, true);
        c.drive(200 * MS);
        assert_eq!(
            withdrawn_then(&c, t, id(0)),
            ["withdraw", "reinstate"],
            "seed {seed}\n{}",
            c.story()
        );
        assert!(!c.node(0).unwrap().withdrawn());
        assert_eq!(
            c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
            [id(0)]
        );
    }
}

/// A link lost for longer: the backup assumed the group at a higher epoch, so the node that
/// comes back is fenced and releases it; it never re-instates the addresses.
#[test]
fn a_long_link_loss_withdraws_and_the_fenced_node_never_reinstates() {
    let mut c = Cluster::new(2, policy(10, FailbackMode::None, Assignment::Ordered), 3);
    settled(&mut c);
    let t = c.time;
    c.set_link(0, false);
    c.drive(200 * MS);
    c.set_link(0, true);
    c.drive(200 * MS);
    assert_eq!(
        withdrawn_then(&c, t, id(0)),
        ["withdraw", "release"],
        "{}",
        c.story()
    );
    assert_eq!(
        c.holders(id(0)).iter().map(|h| h.0).collect::<Vec<_>>(),
        [id(1)]
    );
}

fn syncs(c: &Cluster, since: Time) -> Vec<(NodeId, NodeId)> {
    c.since(since)
        .filter_map(|t| match t {
            Trace::Sync { node, peer } => Some((*node, *peer)),
            _ => None,
        })
        .collect()
}

/// A peer that booted while this node held groups is sent their connections once; a peer that
/// was only cut off (same boot) kept snooping them and is not.
#[test]
fn a_rebooted_peer_is_synced_once_and_a_reachable_again_one_is_not() {
    let mut c = Cluster::new(2, policy(10, FailbackMode::None, Assignment::Ordered), 7);
    settled(&mut c);
    let t = c.time;
    c.crash(1);
    c.drive(100 * MS);
    c.boot(1);
    c.drive(100 * MS);
    assert_eq!(syncs(&c, t), [(id(0), id(1))], "{}", c.story());
    let t = c.time;
    c.set_partition(0, 1, true, true);
    c.drive(100 * MS);
    c.set_partition(0, 1, true, false);
    c.drive(200 * MS);
    assert_eq!(syncs(&c, t), [], "{}", c.story());
}

/// Every node answers each peer at the address its datagrams come from.
#[test]
fn each_peer_is_answered_where_its_datagrams_come_from() {
    let mut c = Cluster::new(3, policy(10, FailbackMode::None, Assignment::Ordered), 1);
    settled(&mut c);
    for i in 0..3 {
        let known = c.node(i).unwrap().peer_addresses().clone();
        let want: BTreeMap<NodeId, std::net::SocketAddr> = (0..3)
            .filter(|k| *k != i)
            .map(|k| (id(k), addr(k)))
            .collect();
        assert_eq!(known, want, "node {i}");
    }
}
