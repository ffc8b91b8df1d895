//! Every TCP state transition the table models (RFC 9293 3.3.2, seen from the server), and a
//! reset in every state. Each case is a script: who sends what, and the state the table must
//! show after it (`None`: the connection has left the table, having ended).

use super::frames::*;
use crate::flow::{TcpState, Unrestorable};

use TcpState::*;

/// One step of a script.
#[derive(Clone, Copy)]
enum Do {
    /// The client sends (flags, data), acknowledging all it received.
    C(u8, &'static [u8]),
    /// The server sends (flags, data), acknowledging all it received.
    S(u8, &'static [u8]),
    /// The server sends (flags, data) acknowledging only what it had received before the
    /// client's last FIN (the segments crossed: a simultaneous close).
    SCrossed(u8, &'static [u8]),
    /// An in-window reset from the client.
    CRst,
    /// An in-window reset from the server.
    SRst,
    /// A reset from the client far outside the window: ignored.
    CRstStale,
}

fn run(name: &str, script: &[(Do, Option<TcpState>)]) -> Conv {
    let mut c = Conv::open();
    assert_eq!(c.state(), Some(Established), "{name}: after the handshake");
    for (i, (step, want)) in script.iter().enumerate() {
        match *step {
            Do::C(f, d) => c.client(f, d),
            Do::S(f, d) => c.server(f, d),
            Do::SCrossed(f, d) => {
                let before_fin = c.s_rcv.wrapping_sub(1);
                c.server_acking(f, d, before_fin);
            }
            Do::CRst => {
                let seq = c.c;
                c.feed(frame(C, S, seq, 0, RST, 0, &[], b""));
            }
            Do::SRst => {
                let seq = c.s;
                c.feed(frame(S, C, seq, 0, RST, 0, &[], b""));
            }
            Do::CRstStale => {
                let seq = c.c.wrapping_add(1 << 30);
                c.feed(frame(C, S, seq, 0, RST, 0, &[], b""));
            }
        }
        assert_eq!(c.state(), *want, "{name}: after step {i}");
    }
    c
}

/// The client closes first; the server finishes its output, then closes.
const CLIENT_FIRST: &[(Do, Option<TcpState>)] = &[
    (Do::C(PSH, b"hello"), Some(Established)),
    (Do::S(0, b""), Some(Established)),
    // The FIN is on the wire; until the server acknowledges it the server has not received it.
    (Do::C(FIN, b""), Some(Established)),
    (Do::S(0, b"hel"), Some(CloseWait)),
    (Do::S(PSH, b"lo"), Some(CloseWait)),
    (Do::S(FIN, b""), Some(LastAck)),
    (Do::C(0, b""), None),
];

/// The server closes first (kv's QUIT); the client goes on sending, then closes.
const SERVER_FIRST: &[(Do, Option<TcpState>)] = &[
    (Do::C(PSH, b"QUIT\n"), Some(Established)),
    (Do::S(PSH | FIN, b"BYE\n"), Some(FinWait1)),
    (Do::C(PSH, b"more"), Some(FinWait2)),
    (Do::S(0, b""), Some(FinWait2)),
    (Do::C(FIN, b""), Some(FinWait2)),
    (Do::S(0, b""), None),
];

/// Both close at once: the FINs cross on the wire.
const SIMULTANEOUS: &[(Do, Option<TcpState>)] = &[
    (Do::C(FIN, b""), Some(Established)),
    (Do::SCrossed(FIN, b""), Some(FinWait1)),
    (Do::S(0, b""), Some(Closing)),
    (Do::C(0, b""), None),
];

/// The server's FIN acknowledges the client's in the same segment.
const FIN_WITH_ACK: &[(Do, Option<TcpState>)] = &[
    (Do::C(FIN, b""), Some(Established)),
    (Do::S(FIN, b""), Some(LastAck)),
    (Do::C(0, b""), None),
];

#[test]
fn every_close_sequence_reaches_time_wait_and_only_then_leaves_the_table() {
    for (name, script) in [
        ("client first", CLIENT_FIRST),
        ("server first", SERVER_FIRST),
        ("simultaneous", SIMULTANEOUS),
        ("FIN with ACK", FIN_WITH_ACK),
    ] {
        let c = run(name, script);
        assert_eq!(c.t.ended.get(&TimeWait), Some(&1), "{name}");
        assert!(c.t.is_empty(), "{name}");
    }
}

/// A reset ends the connection in every state it can reach, from either side; a reset outside
/// the window (RFC 5961 3.2) changes nothing.
#[test]
fn a_reset_ends_the_connection_in_every_state() {
    for (name, script) in [
        ("client first", CLIENT_FIRST),
        ("server first", SERVER_FIRST),
        ("simultaneous", SIMULTANEOUS),
    ] {
        // Every prefix that leaves the connection live, then each kind of reset.
        for n in 0..script.len() {
            let Some(state) = script[n].1 else { continue };
            let prefix = &script[..=n];
            let mut stale = prefix.to_vec();
            stale.push((Do::CRstStale, Some(state)));
            run(name, &stale);
            for rst in [Do::CRst, Do::SRst] {
                let mut s = prefix.to_vec();
                s.push((rst, None));
                let c = run(name, &s);
                assert_eq!(c.t.ended.get(&Reset), Some(&1), "{name} {state:?}");
            }
        }
    }
}

#[test]
fn a_refused_syn_ends_and_an_unanswered_one_is_handed_over() {
    let mut t = table();
    t.observe(&frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1), b""));
    assert_eq!(t.get(&tuple()).map(|f| f.state()), Some(SynReceived));
    // Refused: a reset acknowledging the SYN.
    t.observe(&frame(S, C, 0, 2, RST | ACK, 0, &[], b""));
    assert!(t.is_empty());
    // Unanswered (retransmitted once): its latest SYN comes out of a takeover, as an IP packet.
    let first = frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1), b"");
    let again = frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1001), b"");
    t.observe(&first);
    t.observe(&again);
    let tk = t.take_over(&["198.18.0.10".parse().unwrap()]);
    assert!(tk.snapshots.is_empty() && tk.lost.is_empty());
    assert_eq!(tk.syns, vec![again[14..].to_vec()]);
}

/// Half-closed connections are carried, each with its FINs where the old owner had them.
#[test]
fn half_closed_connections_are_snapshotted_with_their_fins() {
    let ip = ["198.18.0.10".parse().unwrap()];
    // CLOSE_WAIT with output still owed: the client's FIN is restored, the rest is unsent.
    let mut c = run("close wait", &CLIENT_FIRST[..4]);
    let tk = c.t.take_over(&ip);
    let s = &tk.snapshots[0];
    assert_eq!((s.client_fin, s.server_fin), (true, false));
    assert_eq!(
        s.rcv_nxt,
        c.c.wrapping_sub(1),
        "rcv_nxt counts bytes, not the FIN"
    );
    assert_eq!(
        (s.sent.as_slice(), s.unsent.as_slice()),
        (&b"hel"[..], &b"lo"[..])
    );
    assert!(s.received.is_empty());

    // The client's FIN seen but not yet acknowledged, after bytes the server has not
    // acknowledged either: both go to the new owner.
    let mut c = run(
        "fin in flight",
        &[(Do::C(PSH | FIN, b"abc"), Some(Established))],
    );
    let s = &c.t.take_over(&ip).snapshots[0];
    assert_eq!((s.received.as_slice(), s.client_fin), (&b"abc"[..], true));

    // FIN_WAIT2 (kv's QUIT): the server's FIN was sent and acknowledged; nothing is owed.
    let mut c = Conv::open_kv();
    c.client(PSH, b"QUIT\n");
    c.server(PSH | FIN, b"BYE\n");
    c.client(PSH, b"ignored\n");
    assert_eq!(c.state(), Some(FinWait2));
    let s = &c.t.take_over(&ip).snapshots[0];
    assert_eq!((s.client_fin, s.server_fin), (false, true));
    assert!(s.sent.is_empty() && s.unsent.is_empty());
    assert_eq!(
        s.snd_una,
        c.s.wrapping_sub(1),
        "snd_una counts bytes, not the FIN"
    );

    // LAST_ACK: both FINs, the server's unacknowledged.
    let mut c = run("last ack", &CLIENT_FIRST[..6]);
    let s = &c.t.take_over(&ip).snapshots[0];
    assert_eq!((s.client_fin, s.server_fin), (true, true));
}

/// A FIN from the old owner where the replica's output does not end means the replica is not
/// the application: reported, never continued.
#[test]
fn a_fin_where_the_replica_disagrees_is_reported() {
    let mut c = Conv::open();
    c.client(PSH, b"hello");
    // The echo owes "hello", but the server closes after "he".
    c.server(PSH | FIN, b"he");
    let tk = c.t.take_over(&["198.18.0.10".parse().unwrap()]);
    assert_eq!(tk.lost.len(), 1);
    assert_eq!(tk.lost[0].reason, Unrestorable::ReplicaDiverged);
    assert_eq!(tk.lost[0].state, FinWait1);
}

/// A client that reuses its port after a close whose last ACK the snooper missed starts a new
/// connection (the old one was closing); a SYN on an open connection changes nothing.
#[test]
fn a_new_syn_replaces_a_closing_connection_only() {
    let mut c = run("closing", &CLIENT_FIRST[..6]);
    assert_eq!(c.state(), Some(LastAck));
    c.feed(frame(
        C,
        S,
        90_000,
        0,
        SYN,
        64240,
        &syn_opts(1460, 7, 900),
        b"",
    ));
    assert_eq!(c.state(), Some(SynReceived));
    let mut c = run("open", &CLIENT_FIRST[..2]);
    c.feed(frame(
        C,
        S,
        90_000,
        0,
        SYN,
        64240,
        &syn_opts(1460, 7, 900),
        b"",
    ));
    assert_eq!(c.state(), Some(Established));
}

/// Another node served the connection for a while (this backup saw none of it) and died: the
/// client acknowledges output this copy's replica never produced. Continuing would put other
/// bytes at those sequence numbers; the connection is reported instead.
#[test]
fn a_copy_behind_what_the_client_saw_is_reported_not_continued() {
    let mut c = Conv::open();
    c.client(PSH, b"hello");
    c.server(PSH, b"hello");
    // Meanwhile (unseen here) another owner took more input and echoed it; the client
    // acknowledges 10 more bytes than this copy knows of.
    let ahead = c.s.wrapping_add(10);
    let seq = c.c.wrapping_add(10);
    c.feed(frame(C, S, seq, ahead, ACK, 502, &[], b""));
    let tk = c.t.take_over(&["198.18.0.10".parse().unwrap()]);
    assert!(tk.snapshots.is_empty());
    assert_eq!(tk.lost.len(), 1);
    assert_eq!(tk.lost[0].reason, Unrestorable::CopyBehindClient);
}
