//! The kernel accepts the forwarding and copying rule sets, replaces them, and removes them, in
//! a namespace of its own (forwarding and copying themselves are exercised end to end by the
//! failback, IPv6 and `snoop = "forward"` tests).

mod common;

use common::ScratchNs;
use holdfast_harness::need_root;
use holdfast_proto::wire::FourTuple;
use holdfastd::steer::{Hop, Rules, Steer};

#[test]
fn rules_are_installed_replaced_and_removed() {
    need_root!();
    let scratch = ScratchNs::new("steer");
    let ns = &scratch.ns;
    let out = ns
        .run(|| {
            let mut s = Steer::new("lo", 1, [2, 0, 0, 0, 0, 1]);
            s.reset().expect("reset with nothing installed");
            let tuple = |l: &str, r: &str| FourTuple {
                local: l.parse().unwrap(),
                remote: r.parse().unwrap(),
            };
            let hop = |mac| Hop {
                ip: "198.18.0.2".parse().unwrap(),
                mac,
            };
            let v6 = tuple("[2001:db8::10]:7", "[2001:db8::100]:40000");
            let mut rules = Rules::new();
            rules.insert(
                hop(None),
                (0..100)
                    .map(|i| tuple("198.18.0.10:7", &format!("198.18.0.100:{}", 40000 + i)))
                    .collect(),
            );
            // IPv6 goes by the node's MAC; without one it cannot be forwarded (and is said).
            rules.insert(hop(Some([2, 0, 0, 0, 0, 2])), vec![v6]);
            let v6_other = tuple("[2001:db8::10]:7", "[2001:db8::100]:40001");
            rules.insert(
                Hop {
                    ip: "198.18.0.3".parse().unwrap(),
                    mac: None,
                },
                vec![v6_other],
            );
            let not = s.replace(&rules).map_err(|e| format!("install: {e}"))?;
            if not != vec![v6_other] {
                return Err(format!("unforwardable: {not:?}"));
            }
            let first = s.installed();
            rules.remove(&hop(Some([2, 0, 0, 0, 0, 2])));
            s.replace(&rules).map_err(|e| format!("replace: {e}"))?;
            let second = s.installed();
            s.replace(&Rules::new())
                .map_err(|e| format!("remove: {e}"))?;
            // Gone: removing again must find nothing (reset tolerates that).
            s.reset().map_err(|e| format!("reset: {e}"))?;
            Ok::<_, String>((first, second, s.installed()))
        })
        .expect("run in namespace");
    drop(scratch);
    assert_eq!(out, Ok((101, 100, 0)));
}

/// `snoop = "forward"`'s copying rules: the kernel accepts them (ingress and egress, IPv4 and
/// IPv6, two backups), an unchanged set is not sent again, and removal leaves nothing.
#[test]
fn copying_rules_are_installed_replaced_and_removed() {
    need_root!();
    let scratch = ScratchNs::new("tee");
    let out = scratch
        .ns
        .run(|| {
            use holdfastd::tee::{Copies, Tee};
            let mut t = Tee::new("lo", 1, [2, 0, 0, 0, 0, 1]);
            t.reset().map_err(|e| format!("reset: {e}"))?;
            let b = [2, 0, 0, 0, 0, 2];
            let c = [2, 0, 0, 0, 0, 3];
            let mut copies = Copies::new();
            copies.insert("198.18.0.10".parse().unwrap(), [b, c].into());
            copies.insert("2001:db8::10".parse().unwrap(), [b].into());
            // An address without backups is left out.
            copies.insert("198.18.0.11".parse().unwrap(), Default::default());
            t.replace(&copies).map_err(|e| format!("install: {e}"))?;
            let first = t.installed().len();
            copies.remove(&"2001:db8::10".parse().unwrap());
            t.replace(&copies).map_err(|e| format!("replace: {e}"))?;
            t.replace(&copies).map_err(|e| format!("again: {e}"))?;
            let second = t.installed().len();
            t.replace(&Copies::new())
                .map_err(|e| format!("remove: {e}"))?;
            t.reset().map_err(|e| format!("reset after: {e}"))?;
            Ok::<_, String>((first, second, t.installed().len()))
        })
        .expect("run in namespace");
    drop(scratch);
    assert_eq!(out, Ok((2, 1, 0)));
}

/// The rule sets mean what the code says: installed in a namespace of their own, then listed by
/// `nft` (nftables' own decoder of the kernel's expressions), each rule reads back as the
/// statement written here by hand. The bytes are Holdfast's (`nft.rs`, built from the uapi
/// header); this is the check that they say what was meant, e.g. that a port is compared at the
/// right offset and that a copy goes to the right MAC.
#[test]
fn nft_lists_the_rules_as_meant() {
    need_root!();
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        holdfast_harness::report_skip("skipped: `nft` (Debian's nftables) is not installed");
        return;
    }
    let scratch = ScratchNs::new("nftlist");
    let listing = scratch
        .ns
        .run(|| {
            use holdfastd::tee::{Copies, Tee};
            let me = [2, 0x68, 0x66, 0, 1, 1];
            let (b, c) = ([2, 0x68, 0x66, 0, 1, 2], [2, 0x68, 0x66, 0, 1, 3]);
            let mut rules = Rules::new();
            let tuple = |l: &str, r: &str| FourTuple {
                local: l.parse().unwrap(),
                remote: r.parse().unwrap(),
            };
            rules.insert(
                Hop {
                    ip: "198.18.0.2".parse().unwrap(),
                    mac: Some(b),
                },
                vec![
                    tuple("198.18.0.10:7", "198.18.0.100:40000"),
                    tuple("[2001:db8::10]:7", "[2001:db8::100]:40001"),
                ],
            );
            let mut s = Steer::new("lo", 1, me);
            s.replace(&rules).map_err(|e| format!("steer: {e}"))?;
            let mut copies = Copies::new();
            copies.insert("198.18.0.10".parse().unwrap(), [b, c].into());
            copies.insert("2001:db8::10".parse().unwrap(), [b].into());
            let mut t = Tee::new("lo", 1, me);
            t.replace(&copies).map_err(|e| format!("tee: {e}"))?;
            let out = std::process::Command::new("nft")
                .args(["list", "ruleset"])
                .output()
                .map_err(|e| format!("nft: {e}"))?;
            s.reset().map_err(|e| format!("reset: {e}"))?;
            t.reset().map_err(|e| format!("reset: {e}"))?;
            Ok::<_, String>(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .expect("run in namespace")
        .expect("install the rules");
    drop(scratch);
    let rules: Vec<&str> = listing
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("table") && !l.starts_with("chain"))
        .filter(|l| !l.starts_with("type ") && *l != "}")
        .collect();
    // Read as nft prints them: `meta protocol` is implied by `ip`/`ip6`; `@ll,0,96` is the
    // Ethernet destination and source MACs (12 bytes at the link layer), so `set 0x0268..0102
    // 0268..0101` rewrites them to (backup b, this node) before the copy, and the last
    // `@ll,0,96 set @ll,0,96` puts back the MACs loaded at the start of the rule.
    let want = [
        // Forwarding: the client-to-service direction of each connection, to node b.
        r#"ip saddr 198.18.0.100 ip daddr 198.18.0.10 tcp sport 40000 tcp dport 7 fwd ip to 198.18.0.2 device "lo""#,
        r#"ip6 saddr 2001:db8::100 ip6 daddr 2001:db8::10 tcp sport 40001 tcp dport 7 @ll,0,96 set 0x26866000102026866000101 fwd to "lo""#,
        // Copies of what comes in for an address: one to b, one to c (IPv4), one to b (IPv6).
        r#"meta l4proto tcp ip daddr 198.18.0.10 @ll,0,96 set 0x26866000102026866000101 dup to "lo" @ll,0,96 set 0x26866000103026866000101 dup to "lo" @ll,0,96 set @ll,0,96"#,
        r#"meta l4proto tcp ip6 daddr 2001:db8::10 @ll,0,96 set 0x26866000102026866000101 dup to "lo" @ll,0,96 set @ll,0,96"#,
        // Copies of what goes out from it, except frames already addressed to a backup (copies).
        r#"meta l4proto tcp ip saddr 198.18.0.10 @ll,0,48 != 0x26866000102 @ll,0,48 != 0x26866000103 @ll,0,96 set 0x26866000102026866000101 dup to "lo" @ll,0,96 set 0x26866000103026866000101 dup to "lo" @ll,0,96 set @ll,0,96"#,
        r#"meta l4proto tcp ip6 saddr 2001:db8::10 @ll,0,48 != 0x26866000102 @ll,0,48 != 0x26866000103 @ll,0,96 set 0x26866000102026866000101 dup to "lo" @ll,0,96 set @ll,0,96"#,
    ];
    assert_eq!(rules, want, "nft's listing:\n{listing}");
}
