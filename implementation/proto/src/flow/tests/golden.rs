//! Captures of real kernels' connections (files in `golden/`, each saying where it came from)
//! replayed through the table frame by frame: the states the table shows must be the ones the
//! server's kernel went through, and a connection leaves the table only when it ended. A
//! decoder bug our own frame builder shares would not hide here.

use crate::app::{Echo, Kv};
use crate::flow::{FlowTable, TcpState};

use TcpState::*;

fn frames(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}

/// Replays `text` into `table` and returns the states the one connection went through, a
/// state listed once however many frames kept it, and `None` once it left the table.
fn replay(mut table: FlowTable, text: &str) -> (Vec<Option<TcpState>>, FlowTable) {
    let mut seen = Vec::new();
    for f in frames(text) {
        table.observe(&f);
        let s = table.states().into_keys().next();
        if seen.last() != Some(&s) {
            seen.push(s);
        }
    }
    (seen, table)
}

fn echo() -> FlowTable {
    FlowTable::new(vec![("198.18.0.10".parse().unwrap(), (7, 7))], || {
        Box::new(Echo)
    })
}

/// The server's kernel acknowledged the client's FIN only with its own FIN (a delayed ACK
/// riding on it), so CLOSE_WAIT never showed on the wire: the table goes straight to LAST_ACK.
#[test]
fn the_client_closes_first() {
    let (states, t) = replay(echo(), include_str!("golden/client-first.hex"));
    assert_eq!(
        states,
        [Some(SynReceived), Some(Established), Some(LastAck), None]
    );
    assert_eq!(t.ended.get(&TimeWait), Some(&1));
}

#[test]
fn the_server_closes_first() {
    let kv = FlowTable::new(
        vec![("198.18.0.10".parse().unwrap(), (11211, 11211))],
        || Box::new(Kv::default()),
    );
    let (states, t) = replay(kv, include_str!("golden/server-first.hex"));
    assert_eq!(
        states,
        [
            Some(SynReceived),
            Some(Established),
            Some(FinWait1),
            Some(FinWait2),
            None
        ]
    );
    assert_eq!(t.ended.get(&TimeWait), Some(&1));
}

#[test]
fn the_client_resets() {
    let (states, t) = replay(echo(), include_str!("golden/reset.hex"));
    assert_eq!(states, [Some(SynReceived), Some(Established), None]);
    assert_eq!(t.ended.get(&Reset), Some(&1));
}

/// Every prefix of every capture can be taken over without a panic, and each live prefix
/// gives exactly one snapshot (never a silent loss).
#[test]
fn every_prefix_is_carried_or_ended() {
    for (text, kv) in [
        (include_str!("golden/client-first.hex"), false),
        (include_str!("golden/server-first.hex"), true),
        (include_str!("golden/reset.hex"), false),
    ] {
        let all = frames(text);
        for n in 0..=all.len() {
            let mut t = if kv {
                FlowTable::new(
                    vec![("198.18.0.10".parse().unwrap(), (11211, 11211))],
                    || Box::new(Kv::default()),
                )
            } else {
                echo()
            };
            for f in &all[..n] {
                t.observe(f);
            }
            let live = t.states().into_keys().next();
            let tk = t.take_over(&["198.18.0.10".parse().unwrap()]);
            match live {
                None => assert!(tk.snapshots.is_empty() && tk.lost.is_empty()),
                Some(SynReceived) => assert_eq!(tk.syns.len(), 1, "prefix {n}"),
                Some(s) => assert_eq!(tk.snapshots.len(), 1, "prefix {n} in {s:?}: {tk:?}"),
            }
        }
    }
}
