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

/// One message of every type, with lists, scopes, IPv4 and IPv6 filled in.
fn every_message() -> Vec<holdfast_proto::wire::Body> {
    use holdfast_proto::policy::{ArpPolicy, Epoch, FailbackMode, NodeId, OwnedAddress, Ownership};
    use holdfast_proto::wire::*;
    let mut o = Ownership::new(NodeId(7));
    o.application = "kv".into();
    o.policy.backups = vec![NodeId(8), NodeId(9)];
    o.ports = (11211, 11211);
    o.arp = ArpPolicy::Vmac;
    o.addresses = vec![
        OwnedAddress {
            addr: "198.18.0.10".parse().unwrap(),
            prefix: 24,
            mac: [0, 0, 0x5e, 0, 1, 10],
        },
        OwnedAddress {
            addr: "2001:db8::10".parse().unwrap(),
            prefix: 64,
            mac: [0, 0, 0x5e, 0, 2, 10],
        },
    ];
    let h = Holding {
        owner: NodeId(7),
        epoch: Epoch {
            counter: 2,
            holder: NodeId(8),
        },
        holder_boot: 3,
    };
    let t4 = FourTuple {
        local: "198.18.0.10:7".parse().unwrap(),
        remote: "198.18.0.100:40000".parse().unwrap(),
    };
    let t6 = FourTuple {
        local: "[2001:db8::10]:7".parse().unwrap(),
        remote: "[2001:db8::100]:40001".parse().unwrap(),
    };
    let mut relayed = Ownership::new(NodeId(9));
    relayed.application = "echo".into();
    vec![
        Body::Announce(Announce {
            ownership: o,
            holdings: vec![h],
            relayed: vec![relayed],
        }),
        Body::Solicit { target: None },
        Body::Heartbeat {
            holdings: vec![h],
            heard: vec![Heard {
                node: NodeId(3),
                boot_epoch: 2,
                age_ms: 9,
            }],
        },
        Body::AssumeRequest(AssumeRequest {
            owner: NodeId(7),
            request_id: 1,
            scope: Scope::Share { index: 1, of: 2 },
            known: h,
        }),
        Body::AssumeGrant(AssumeReply {
            owner: NodeId(7),
            request_id: 1,
            scope: Scope::Connections(vec![t4, t6]),
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
            addresses: vec![
                "198.18.0.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ],
        }),
        Body::Handback(Handback {
            owner: NodeId(7),
            epoch: h.epoch,
            mode: FailbackMode::NewConnections,
            generation: 3,
            part: 1,
            parts: 2,
            draining: vec![t4],
        }),
        Body::Reclaim(Reclaim {
            owner: NodeId(7),
            held: h.epoch,
        }),
        Body::ConnState(Box::new(ConnStatePart {
            head: ConnState {
                owner: NodeId(7),
                epoch: h.epoch,
                tuple: Some(t4),
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
                fin_received: false,
                fin_sent: false,
                ..ConnState::default()
            },
            unacked_len: 10,
            checkpoint_len: 3,
            offset: 0,
            chunk: b"0123456789\x01\x02\x03".to_vec(),
        })),
        Body::Fetch(Fetch {
            owner: NodeId(7),
            tuple: t6,
            seq: 4_000_000_000,
            len: 1200,
        }),
        Body::Fetched(Fetched {
            owner: NodeId(7),
            tuple: t4,
            seq: 77,
            gone: false,
            data: b"missing bytes".to_vec(),
        }),
        Body::Alive,
    ]
}

#[test]
fn the_suite_decoder_agrees_with_holdfast_proto_on_every_message_type() {
    use holdfast_proto::policy::NodeId;
    use holdfast_proto::wire::*;
    let bodies = every_message();
    assert_eq!(bodies.len(), 13, "one of every message type");
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
            Body::Solicit { .. } | Body::Heartbeat { .. } | Body::Alive
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

/// Every case an adapter's expected results or `[unsupported]` table names exists (a typo there
/// would silently expect nothing), and every adapter the matrix shows has been checked.
#[test]
fn expected_results_name_real_cases() {
    use holdfast_conformance::case::{Case, files};
    let dir = root().join("conformance/cases");
    let mut names = std::collections::BTreeSet::new();
    for f in files(&dir) {
        for c in Case::load(&dir, &f).unwrap() {
            names.insert(c.id.clone());
            names.insert(c.name());
        }
    }
    let imps = holdfast_conformance::run::implementations();
    for want in ["holdfastd", "keepalived", "ucarp", "frr"] {
        assert!(
            imps.iter().any(|i| i == want),
            "no adapter {want}: {imps:?}"
        );
    }
    let mut bad = Vec::new();
    for imp in &imps {
        let e = holdfast_conformance::run::Expected::load(imp).unwrap();
        for (table, name) in e.names() {
            if !names.contains(name) {
                bad.push(format!("adapters/{imp}: [{table}] names no case: {name:?}"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_claim_is_covered() {
    let m = holdfast_conformance::matrix::generate().unwrap();
    assert!(!m.contains("**none**"), "a claim has no case:\n{m}");
}

/// An Ethernet/IPv4/UDP frame from a's control socket to the cluster group carrying `payload`
/// (the UDP checksum left 0, which IPv4 allows).
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0x01, 0x00, 0x5e, 0x7f, 0x48, 0x46]); // 239.255.72.70's MAC
    f.extend_from_slice(&[0x02, 0x68, 0x66, 0x00, 0x01, 0x01]);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 1, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[198, 18, 0, 1, 239, 255, 72, 70]);
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&5405u16.to_be_bytes());
    f.extend_from_slice(&5405u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// One frame per message type (sealed with the key `golden`), 1 ms apart, as pcapng.
fn control_messages_capture() -> Vec<u8> {
    use holdfast_proto::policy::NodeId;
    use holdfast_proto::wire::{FLAG_ELIGIBLE, Message};
    let mut w = holdfast_harness::pcapng::Writer::new(Vec::new(), "holdfast conformance golden")
        .expect("writer");
    let id = w.add_interface("sw0:a", "a's port").expect("idb");
    for (i, body) in every_message().into_iter().enumerate() {
        let m = Message {
            flags: FLAG_ELIGIBLE,
            cluster: 1,
            sender: NodeId(1),
            boot_epoch: 5,
            seq: i as u64 + 1,
            body,
        };
        let frame = udp_frame(&holdfast_proto::auth::seal(&m, b"golden"));
        let ts = 1_796_000_000_000_000_000 + i as u64 * 1_000_000;
        w.packet(
            id,
            ts,
            &frame,
            frame.len() as u32,
            Some(holdfast_harness::pcapng::Direction::Inbound),
            None,
        )
        .expect("packet");
    }
    w.into_inner()
}

/// The golden capture of every control message is what holdfast-proto encodes today
/// (`HOLDFAST_BLESS=1` rewrites it), and Wireshark, with `pcaps/wireshark/holdfast.lua`,
/// decodes every message in it, field by field, exactly as in the golden text, with nothing
/// malformed.
#[test]
fn the_wireshark_dissector_decodes_every_message_type() {
    let dir = root().join("pcaps/golden");
    let pcap = dir.join("control-messages.pcapng");
    let text = dir.join("control-messages.tshark.txt");
    let bytes = control_messages_capture();
    let bless = std::env::var_os("HOLDFAST_BLESS").is_some();
    if bless {
        std::fs::write(&pcap, &bytes).unwrap();
    }
    assert!(
        std::fs::read(&pcap).ok() == Some(bytes),
        "{} is not what holdfast-proto encodes now: run with HOLDFAST_BLESS=1 and review the diff",
        pcap.display()
    );
    let out = std::process::Command::new("tshark")
        .arg("-X")
        .arg(format!(
            "lua_script:{}",
            root().join("pcaps/wireshark/holdfast.lua").display()
        ))
        .arg("-r")
        .arg(&pcap)
        .args(["-n", "-O", "holdfast", "-V"])
        .output();
    let Ok(out) = out else {
        holdfast_harness::report_skip("skipped: tshark is not installed (.ci/run installs it)");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout).into_owned();
    for name in holdfast_conformance::decode::TYPES {
        assert!(
            got.contains(&format!("Type: {name} (")),
            "{name} not decoded:\n{got}"
        );
    }
    assert!(!got.contains("Malformed"), "{got}");
    if bless {
        std::fs::write(&text, &got).unwrap();
    }
    let want = std::fs::read_to_string(&text).unwrap_or_default();
    assert!(
        got == want,
        "tshark's decoding differs from {} (HOLDFAST_BLESS=1 rewrites it):\n{got}",
        text.display()
    );
}

/// ARCHITECTURE.md's table of claims names files that exist and cases that exist, and covers
/// claims 1 to 19: a newcomer following it never lands on a stale name.
#[test]
fn the_claims_table_names_real_files_and_cases() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("## Where each claim lives")
        .expect("ARCHITECTURE.md has the claims table");
    let section = &text[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut claims = std::collections::BTreeSet::new();
    let (mut files, mut cases) = (0, 0);
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| claim"))
    {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for c in cells[1].split(',') {
            claims.insert(c.trim().parse::<u32>().expect("a claim number"));
        }
        for (i, tick) in row.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if tick.contains("/src/") {
                let path = root()
                    .join("implementation")
                    .join(tick.trim_end_matches('/'));
                assert!(path.exists(), "{tick} (in the claims table) does not exist");
                files += 1;
            } else if cells[4].contains(&format!("`{tick}`")) {
                let case = root().join(format!("conformance/cases/{tick}.toml"));
                assert!(
                    case.is_file(),
                    "case {tick} (in the claims table) does not exist"
                );
                cases += 1;
            }
        }
    }
    assert_eq!(claims, (1..=19).collect(), "claims covered by the table");
    assert!(files >= 10 && cases >= 10, "{files} files, {cases} cases");
}
