//! The engine against real captures and against holdfast-proto: the suite's own decoder must
//! agree with the daemon's on every control message, and MATRIX.md must be current.

use std::path::Path;

use holdfast_conformance::decode::{Pkt, control};
use holdfast_conformance::run::root;

fn golden() -> Vec<Pkt> {
    let f =
        holdfast_harness::capture::read(&root().join("pcaps/golden/two-node-boot.pcapng")).unwrap();
    f.iter()
        .enumerate()
        .map(|(i, f)| Pkt::decode(i, f))
        .collect()
}

#[test]
fn the_golden_boot_capture_decodes_to_the_configured_ownership() {
    let pkts = golden();
    let first_a = pkts
        .iter()
        .find(|p| p.sent && p.iface == "sw0:a" && p.control.is_some())
        .expect("a control message from a");
    let c = first_a.control.as_ref().unwrap();
    assert_eq!(c.kind, "ANNOUNCE");
    assert_eq!(c.sender, 1);
    for (k, v) in [
        ("node_id", "1"),
        ("failback", "none"),
        ("backups", "2"),
        ("heartbeat_ms", "10"),
        ("miss_count", "3"),
        ("addresses", "198.18.0.10/24"),
        ("macs", "02:68:66:00:01:01"),
        ("ports", "7-7"),
        ("application", "echo"),
        ("arp", "garp"),
        ("protocol", "6"),
        ("snoop", "mirror"),
    ] {
        assert_eq!(c.fields.get(k).map(String::as_str), Some(v), "field {k}");
    }
    assert!(
        pkts.iter().any(|p| p.sent
            && p.iface == "sw0:a"
            && p.arp
                .as_ref()
                .is_some_and(|a| a.announcement() && a.spa.to_string() == "198.18.0.10")),
        "a's gratuitous ARP for its address"
    );
}

/// The UDP payload of a frame, if it is control-protocol traffic.
fn payload(data: &[u8]) -> Option<&[u8]> {
    let ihl = ((data.get(14)? & 0x0f) as usize) * 4;
    let udp = data.get(14 + ihl..)?;
    (u16::from_be_bytes([udp[2], udp[3]]) == 5405).then(|| &udp[8..])
}

#[test]
fn the_suite_decoder_agrees_with_holdfast_proto_on_real_traffic() {
    let frames =
        holdfast_harness::capture::read(&root().join("pcaps/golden/two-node-boot.pcapng")).unwrap();
    let mut n = 0;
    for f in &frames {
        let Some(p) = payload(&f.data) else { continue };
        let ours = control(p).expect("the suite decodes it");
        let pk = holdfast_proto::wire::Packet::new_checked(p).expect("proto checks it");
        let theirs = holdfast_proto::wire::Message::parse(&pk).expect("proto parses it");
        assert_eq!(ours.kind, theirs.body.msg_type().name());
        assert_eq!(ours.sender, theirs.sender.0);
        assert_eq!(ours.flags, theirs.flags);
        if let holdfast_proto::wire::Body::Announce(a) = &theirs.body {
            let o = &a.ownership;
            assert_eq!(ours.fields["node_id"], o.node_id.0.to_string());
            assert_eq!(ours.fields["application"], o.application);
            assert_eq!(
                ours.fields["heartbeat_ms"],
                o.policy.heartbeat_ms.to_string()
            );
            assert_eq!(ours.fields["failback"], o.policy.failback.name());
            assert_eq!(ours.fields["arp"], o.arp.name());
            assert_eq!(
                ours.fields["addresses"],
                o.addresses
                    .iter()
                    .map(|x| format!("{}/{}", x.addr, x.prefix))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        n += 1;
    }
    assert!(n >= 5, "only {n} control messages in the golden capture");
}

#[test]
fn the_suite_decoder_agrees_with_holdfast_proto_on_every_message_type() {
    use holdfast_proto::policy::{NodeId, Ownership};
    use holdfast_proto::wire::*;
    let mut o = Ownership::new(NodeId(7));
    o.application = "kv".into();
    o.policy.backups = vec![NodeId(8), NodeId(9)];
    let h = Holding {
        owner: NodeId(7),
        epoch: holdfast_proto::policy::Epoch {
            counter: 2,
            holder: NodeId(8),
        },
        holder_boot: 3,
    };
    let bodies = vec![
        Body::Announce(Announce {
            ownership: o,
            holdings: vec![h],
            relayed: vec![],
        }),
        Body::Solicit { target: None },
        Body::Heartbeat { holdings: vec![h] },
        Body::AssumeRequest(AssumeRequest {
            owner: NodeId(7),
            request_id: 1,
            scope: Scope::All,
            known: h,
        }),
        Body::AssumeGrant(AssumeReply {
            owner: NodeId(7),
            request_id: 1,
            scope: Scope::All,
            reason: DenyReason::None,
        }),
        Body::AssumeDeny(AssumeReply {
            owner: NodeId(7),
            request_id: 1,
            scope: Scope::All,
            reason: DenyReason::Assumed,
        }),
        Body::TakeoverNotice(TakeoverNotice {
            owner: NodeId(7),
            epoch: h.epoch,
            scope: Scope::All,
            addresses: vec![],
        }),
        Body::Handback(Handback {
            owner: NodeId(7),
            epoch: h.epoch,
            mode: holdfast_proto::policy::FailbackMode::Migrate,
            generation: 0,
            part: 0,
            parts: 1,
            draining: Vec::new(),
        }),
        Body::Reclaim(Reclaim {
            owner: NodeId(7),
            held: h.epoch,
        }),
        Body::ConnState(Box::default()),
    ];
    for body in bodies {
        let m = Message {
            flags: FLAG_LEAVING,
            cluster: 1,
            sender: NodeId(8),
            boot_epoch: 1,
            seq: 1,
            body,
        };
        let bytes = holdfast_proto::auth::seal(&m, b"k");
        let ours = control(&bytes).expect("decodes");
        assert_eq!(ours.kind, m.body.msg_type().name());
        assert_eq!((ours.sender, ours.flags), (8, FLAG_LEAVING));
        if matches!(m.body, Body::Announce(_)) {
            assert_eq!(ours.fields["node_id"], "7");
            assert_eq!(ours.fields["backups"], "8,9");
            assert_eq!(ours.fields["application"], "kv");
        } else if !matches!(
            m.body,
            Body::Solicit { .. } | Body::Heartbeat { .. } | Body::ConnState(_)
        ) {
            assert_eq!(ours.fields["owner"], "7", "{:?}", m.body.msg_type());
        }
    }
}

#[test]
fn matrix_md_is_current() {
    let want = holdfast_conformance::matrix::generate().unwrap();
    let have = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("MATRIX.md"))
        .unwrap_or_default();
    assert!(
        have == want,
        "conformance/MATRIX.md is stale: run `cargo run -p holdfast-conformance --bin matrix`"
    );
}

#[test]
fn every_claim_is_covered() {
    let m = holdfast_conformance::matrix::generate().unwrap();
    assert!(!m.contains("**none**"), "a claim has no case:\n{m}");
}
