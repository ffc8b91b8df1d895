//! Hostile input: tampered, forged, replayed, truncated, foreign and garbage datagrams are
//! dropped, counted by reason, change nothing, and never panic.

use holdfast_proto::auth::{self, DropReason};
use holdfast_proto::node::{Action, Config, Node};
use holdfast_proto::policy::{NodeId, Ownership};
use holdfast_proto::time::Time;
use holdfast_proto::wire::{Body, FLAG_ELIGIBLE, Message};

const KEY: &[u8] = b"cluster key";
const CLUSTER: u32 = 7;
/// Where node 2's datagrams come from, and later (it moved) from.
const FROM: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(198, 18, 0, 2),
    7946,
));
const MOVED: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(198, 18, 0, 22),
    7946,
));
/// Where the bad datagrams come from: a rejected datagram must not teach it.
const EVIL: std::net::SocketAddr = std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(198, 18, 0, 66),
    7946,
));

fn node(id: u32) -> Node {
    Node::new(
        Config {
            cluster_id: CLUSTER,
            key: KEY.to_vec(),
            ownership: Ownership::new(NodeId(id)),
            boot_epoch: 1,
            boot_wait: std::time::Duration::from_millis(100),
            expected_peers: vec![],
            reserve: std::time::Duration::ZERO,
        },
        Time(0),
        id as u64,
    )
}

fn heartbeat(sender: u32, boot_epoch: u32, seq: u64) -> Message {
    Message {
        flags: FLAG_ELIGIBLE,
        cluster: CLUSTER,
        sender: NodeId(sender),
        boot_epoch,
        seq,
        body: Body::Heartbeat {
            holdings: vec![],
            heard: vec![],
        },
    }
}

fn dropped(n: &Node, r: DropReason) -> u64 {
    n.stats().dropped.get(&r).copied().unwrap_or(0)
}

fn drain(n: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| n.poll_action()).collect()
}

#[test]
fn each_kind_of_bad_datagram_is_dropped_and_counted() {
    let mut n = node(1);
    drain(&mut n);
    let good = auth::seal(&heartbeat(2, 1, 1), KEY);
    n.handle_datagram(Time(1), FROM, &good);
    assert!(n.members().contains_key(&NodeId(2)));
    assert_eq!(n.peer_address(NodeId(2)), Some(FROM));
    let heard = n.members()[&NodeId(2)].last_heard;

    // Tampered: one bit flipped anywhere (header, body or tag).
    let mut fresh = auth::seal(&heartbeat(2, 1, 2), KEY);
    for i in 0..fresh.len() {
        let mut t = fresh.clone();
        t[i] ^= 0x01;
        n.handle_datagram(Time(2), EVIL, &t);
    }
    // Forged: the right shape, the wrong key.
    n.handle_datagram(
        Time(3),
        EVIL,
        &auth::seal(&heartbeat(2, 1, 3), b"wrong key"),
    );
    // Wrong cluster, with the right key.
    let mut other = heartbeat(2, 1, 4);
    other.cluster = CLUSTER + 1;
    n.handle_datagram(Time(4), EVIL, &auth::seal(&other, KEY));
    // Replayed: the same datagram again, and an older sequence.
    n.handle_datagram(Time(5), EVIL, &good);
    // Stale boot epoch after a newer one.
    n.handle_datagram(Time(6), MOVED, &auth::seal(&heartbeat(2, 5, 1), KEY));
    n.handle_datagram(Time(7), EVIL, &auth::seal(&heartbeat(2, 4, 99), KEY));
    // Truncated at every length.
    for cut in 0..fresh.len() {
        n.handle_datagram(Time(8), EVIL, &fresh[..cut]);
    }
    // Garbage.
    n.handle_datagram(Time(9), EVIL, b"");
    n.handle_datagram(Time(9), EVIL, &[0xff; 3000]);

    // Counted by reason. Flipping a header byte can turn the datagram into a wrong-cluster,
    // bad-version or malformed one, so only totals are exact for that part.
    assert!(
        dropped(&n, DropReason::BadTag) >= 32,
        "{:?}",
        n.stats().dropped
    );
    assert_eq!(
        dropped(&n, DropReason::Replay),
        2,
        "{:?}",
        n.stats().dropped
    );
    assert!(dropped(&n, DropReason::WrongCluster) >= 1);
    assert!(dropped(&n, DropReason::Malformed) >= fresh.len() as u64);
    let total: u64 = n.stats().dropped.values().sum();
    assert_eq!(
        total,
        fresh.len() as u64 + 1 + 1 + 2 + fresh.len() as u64 + 2
    );
    // Nothing but the two good heartbeats was accepted.
    assert_eq!(n.stats().received.values().sum::<u64>(), 2);
    // The forged and replayed ones did not refresh the member.
    assert_eq!(n.members()[&NodeId(2)].boot_epoch, 5);
    assert!(n.members()[&NodeId(2)].last_heard >= heard);
    // Its address is where its last accepted datagram came from, never a rejected one's.
    assert_eq!(n.peer_address(NodeId(2)), Some(MOVED));
    assert_eq!(n.peer_addresses().len(), 1);
    // Our own datagrams looped back are dropped too.
    let mine = auth::seal(&heartbeat(1, 1, 100), KEY);
    n.handle_datagram(Time(10), FROM, &mine);
    assert_eq!(dropped(&n, DropReason::Own), 1);
    fresh.clear();
}

#[test]
fn a_forged_announce_changes_nothing() {
    let mut n = node(1);
    drain(&mut n);
    let mut o = Ownership::new(NodeId(3));
    o.application = "evil".into();
    let forged = Message {
        flags: FLAG_ELIGIBLE,
        cluster: CLUSTER,
        sender: NodeId(3),
        boot_epoch: 1,
        seq: 1,
        body: Body::Announce(holdfast_proto::wire::Announce {
            ownership: o,
            holdings: vec![],
            relayed: vec![],
        }),
    };
    n.handle_datagram(Time(1), EVIL, &auth::seal(&forged, b"not the key"));
    assert!(n.members().is_empty());
    assert!(
        drain(&mut n).is_empty(),
        "a forged message must cause no action"
    );
    assert_eq!(dropped(&n, DropReason::BadTag), 1);
}

#[test]
fn random_bytes_never_panic() {
    let mut n = node(1);
    let mut x: u64 = 0x1234_5678;
    let good = auth::seal(&heartbeat(2, 1, 1), KEY);
    for i in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 200) as usize;
        let mut buf: Vec<u8> = (0..len).map(|k| (x >> (k % 56)) as u8).collect();
        // Half of them start with a valid header so parsing goes deep.
        if i % 2 == 0 && buf.len() >= 32 {
            buf[..32].copy_from_slice(&good[..32]);
        }
        n.handle_datagram(Time(i), FROM, &buf);
        // And body parsing directly, for every type, without a tag in the way.
        for ty in 1..=10u8 {
            let _ = holdfast_proto::wire::MsgType::from_u8(ty).map(|t| Body::parse(t, &buf));
        }
    }
}
