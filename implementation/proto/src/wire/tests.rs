//! Round trips, truncation at every length, and a golden HEARTBEAT checked against Python's hmac.

use super::*;
use crate::policy::{
    ArpPolicy, Assignment, Epoch, FailbackMode, FailoverPolicy, NodeId, OwnedAddress, Ownership,
    SnoopMode,
};

fn ownership() -> Ownership {
    Ownership {
        node_id: NodeId(1),
        policy: FailoverPolicy {
            backups: vec![NodeId(2), NodeId(3)],
            failback: FailbackMode::Migrate,
            heartbeat_ms: 10,
            miss_count: 3,
            snoop: SnoopMode::Mirror,
            assignment: Assignment::Spread,
        },
        addresses: vec![
            OwnedAddress {
                addr: "198.18.0.10".parse().unwrap(),
                prefix: 24,
                mac: [0x02, 0x68, 0x66, 0, 1, 1],
            },
            OwnedAddress {
                addr: "2001:db8::10".parse().unwrap(),
                prefix: 64,
                mac: [0x00, 0x00, 0x5e, 0, 1, 7],
            },
        ],
        ports: (7, 19),
        application: "echo".into(),
        arp: ArpPolicy::Vmac,
        protocol: 6,
    }
}

fn tuple() -> FourTuple {
    FourTuple {
        local: "198.18.0.10:7".parse().unwrap(),
        remote: "198.18.0.100:40000".parse().unwrap(),
    }
}

fn tuple_v6() -> FourTuple {
    FourTuple {
        local: "[2001:db8::10]:7".parse().unwrap(),
        remote: "[2001:db8::100]:40000".parse().unwrap(),
    }
}

const EPOCH: Epoch = Epoch {
    counter: 7,
    holder: NodeId(2),
};

const HOLDING: Holding = Holding {
    owner: NodeId(1),
    epoch: EPOCH,
    holder_boot: 42,
};

/// One message of every type, with every optional part present.
pub(crate) fn samples() -> Vec<Message> {
    membership_bodies()
        .into_iter()
        .chain(arbitration_bodies())
        .chain(transfer_bodies())
        .enumerate()
        .map(|(i, body)| Message {
            flags: FLAG_ELIGIBLE,
            cluster: 0x4846_0001,
            sender: NodeId(2),
            boot_epoch: 42,
            seq: 100 + i as u64,
            body,
        })
        .collect()
}

/// ANNOUNCE, SOLICIT and HEARTBEAT.
fn membership_bodies() -> Vec<Body> {
    let h = HOLDING;
    vec![
        Body::Announce(Announce {
            ownership: ownership(),
            holdings: vec![h],
            relayed: vec![{
                let mut o = ownership();
                o.node_id = NodeId(9);
                o.application = String::new();
                o.addresses.clear();
                o
            }],
        }),
        Body::Solicit { target: None },
        Body::Alive,
        Body::Solicit {
            target: Some(NodeId(3)),
        },
        Body::Heartbeat {
            holdings: vec![h, h],
            heard: vec![],
        },
        Body::Heartbeat {
            holdings: vec![],
            heard: vec![Heard {
                node: NodeId(3),
                boot_epoch: 7,
                age_ms: 12,
            }],
        },
    ]
}

/// ASSUME-REQUEST, -GRANT and -DENY, TAKEOVER-NOTICE, HANDBACK and RECLAIM.
fn arbitration_bodies() -> Vec<Body> {
    let (e, h) = (EPOCH, HOLDING);
    vec![
        Body::AssumeRequest(AssumeRequest {
            owner: NodeId(1),
            request_id: 0xdead_beef,
            scope: Scope::Share { index: 1, of: 2 },
            known: h,
        }),
        Body::AssumeGrant(AssumeReply {
            owner: NodeId(1),
            request_id: 5,
            scope: Scope::Connections(vec![tuple()]),
            reason: DenyReason::None,
        }),
        Body::AssumeDeny(AssumeReply {
            owner: NodeId(1),
            request_id: 5,
            scope: Scope::All,
            reason: DenyReason::Assumed,
        }),
        Body::TakeoverNotice(TakeoverNotice {
            owner: NodeId(1),
            epoch: e,
            scope: Scope::All,
            addresses: vec![
                "198.18.0.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
        }),
        Body::Handback(Handback {
            owner: NodeId(1),
            epoch: e,
            mode: FailbackMode::NewConnections,
            generation: 3,
            part: 1,
            parts: 2,
            draining: vec![tuple()],
        }),
        Body::Reclaim(Reclaim {
            owner: NodeId(1),
            held: e,
        }),
    ]
}

/// FETCH, FETCHED and CONN-STATE.
fn transfer_bodies() -> Vec<Body> {
    let e = EPOCH;
    vec![
        Body::Fetch(Fetch {
            owner: NodeId(1),
            tuple: tuple(),
            seq: 0xfffffff0,
            len: 4096,
        }),
        Body::Fetched(Fetched {
            owner: NodeId(1),
            tuple: tuple_v6(),
            seq: 77,
            gone: false,
            data: b"missing bytes".to_vec(),
        }),
        Body::ConnState(Box::new(ConnStatePart {
            head: ConnState {
                owner: NodeId(1),
                epoch: e,
                tuple: Some(tuple_v6()),
                snd_una: 1000,
                snd_nxt: 1010,
                rcv_nxt: 5000,
                snd_wnd: 65535,
                rcv_wnd: 64240,
                mss: 1460,
                snd_wscale: 7,
                rcv_wscale: 9,
                sack: true,
                timestamps: true,
                ts_val: 111,
                ts_ecr: 222,
                fin_received: true,
                fin_sent: false,
                unacked: Vec::new(),
                checkpoint: Vec::new(),
            },
            unacked_len: 10,
            checkpoint_len: 3,
            offset: 8,
            chunk: b"89\x01\x02".to_vec(),
        })),
    ]
}

#[test]
fn every_type_round_trips_and_writes_every_byte() {
    let mut types = std::collections::BTreeSet::new();
    for m in samples() {
        types.insert(m.body.msg_type());
        let n = m.buffer_len();
        // Emit into a 0xa5-filled buffer and into a zeroed one: equal header and body
        // bytes mean emit wrote every byte.
        let mut a = vec![0xa5u8; n];
        let mut z = vec![0u8; n];
        m.emit(&mut Packet::new_unchecked(&mut a[..]));
        m.emit(&mut Packet::new_unchecked(&mut z[..]));
        assert_eq!(
            a[..n - TAG_LEN],
            z[..n - TAG_LEN],
            "{:?}",
            m.body.msg_type()
        );
        let p = Packet::new_checked(&a[..]).unwrap();
        assert_eq!(Message::parse(&p).unwrap(), m);
        // And sealed, then opened with the key.
        let sealed = crate::auth::seal(&m, b"key");
        assert_eq!(crate::auth::open(&sealed, b"key", m.cluster).unwrap(), m);
    }
    assert_eq!(types.len(), 13, "every message type has a sample");
}

#[test]
fn truncation_at_every_length_is_an_error_never_a_panic() {
    for m in samples() {
        let full = crate::auth::seal(&m, b"key");
        for cut in 0..full.len() {
            assert!(Packet::new_checked(&full[..cut]).is_err());
            assert!(crate::auth::open(&full[..cut], b"key", m.cluster).is_err());
        }
        // A body cut short but with a consistent length field is malformed, not a panic.
        let mut body = Vec::new();
        m.body.emit(&mut body);
        for cut in 0..body.len() {
            assert!(
                Body::parse(m.body.msg_type(), &body[..cut]).is_err(),
                "{:?} cut {cut}",
                m.body.msg_type()
            );
        }
        // Trailing garbage is rejected too.
        body.push(0);
        assert!(Body::parse(m.body.msg_type(), &body).is_err());
    }
}

/// A HEARTBEAT from node 2 holding node 1's group and hearing node 1, field by field.
// captured from: this crate's encoder (seal with key b"key"), then checked by hand against
// PROTOCOL.md; the tag was recomputed independently with Python's hmac module.
#[rustfmt::skip]
const GOLDEN_HEARTBEAT: [u8; 32 + 32 + 32] = [
    0x48, 0x46, 0x53, 0x54,             // magic "HFST"
    0x01,                               // version 1
    0x03,                               // type HEARTBEAT
    0x00, 0x01,                         // flags: ELIGIBLE
    0x48, 0x46, 0x00, 0x01,             // cluster 0x48460001
    0x00, 0x00, 0x00, 0x02,             // sender node 2
    0x00, 0x00, 0x00, 0x2a,             // boot epoch 42
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // seq 9
    0x00, 0x00, 0x00, 0x20,             // body length 32
    // body
    0x00, 0x01,                         // 1 holding
    0x00, 0x00, 0x00, 0x01,             //   owner node 1
    0x00, 0x00, 0x00, 0x07,             //   epoch counter 7
    0x00, 0x00, 0x00, 0x02,             //   epoch holder node 2
    0x00, 0x00, 0x00, 0x2a,             //   holder boot epoch 42
    0x00, 0x01,                         // 1 peer heard
    0x00, 0x00, 0x00, 0x01,             //   node 1
    0x00, 0x00, 0x00, 0x2a,             //   its boot epoch 42
    0x00, 0x00, 0x00, 0x07,             //   last heard 7 ms ago
    // HMAC-SHA256(key = "key", header || body)
    0x55, 0x43, 0x38, 0x49, 0x4c, 0xf9, 0x41, 0x05, 0x4b, 0x6e, 0xa0, 0x27, 0x04, 0x66, 0x60, 0xbd,
    0xff, 0x8f, 0x7a, 0x9a, 0x1d, 0x47, 0x8d, 0x8c, 0x4b, 0x83, 0xb2, 0x30, 0xd8, 0xd9, 0x49, 0x00,
];

fn golden_repr() -> Message {
    Message {
        flags: FLAG_ELIGIBLE,
        cluster: 0x4846_0001,
        sender: NodeId(2),
        boot_epoch: 42,
        seq: 9,
        body: Body::Heartbeat {
            holdings: vec![Holding {
                owner: NodeId(1),
                epoch: Epoch {
                    counter: 7,
                    holder: NodeId(2),
                },
                holder_boot: 42,
            }],
            heard: vec![Heard {
                node: NodeId(1),
                boot_epoch: 42,
                age_ms: 7,
            }],
        },
    }
}

#[test]
fn deconstruct_golden() {
    let p = Packet::new_checked(&GOLDEN_HEARTBEAT[..]).unwrap();
    assert_eq!(p.magic(), MAGIC);
    assert_eq!(p.version(), 1);
    assert_eq!(p.msg_type(), MsgType::Heartbeat as u8);
    assert_eq!(p.flags(), FLAG_ELIGIBLE);
    assert_eq!(p.cluster(), 0x4846_0001);
    assert_eq!(p.sender(), NodeId(2));
    assert_eq!(p.boot_epoch(), 42);
    assert_eq!(p.seq(), 9);
    assert_eq!(p.length(), 32);
    assert_eq!(Message::parse(&p).unwrap(), golden_repr());
}

#[test]
fn construct_golden() {
    let sealed = crate::auth::seal(&golden_repr(), b"key");
    assert_eq!(sealed[..], GOLDEN_HEARTBEAT[..]);
}
