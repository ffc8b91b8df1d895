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
