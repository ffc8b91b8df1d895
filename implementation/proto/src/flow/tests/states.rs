//! Every TCP state transition the table models (RFC 9293 3.3.2, seen from the server), and a
//! reset in every state. Each case is a script: who sends what, and the state the table must
//! show after it (`None`: the connection has left the table, having ended).

use super::frames::*;
use crate::flow::{HistoryMiss, TcpState, Unrestorable};

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

/// A hole (the server acknowledged client bytes this copy never saw) holds the replica back;
/// filled from the holder's history (FETCH), the replica goes on exactly; the counters say so.
#[test]
fn a_hole_is_found_at_once_and_filled_from_the_holder() {
    let ip = ["198.18.0.10".parse().unwrap()];
    // The holder saw everything; the backup misses the client's second segment.
    let mut holder = Conv::open();
    let mut backup = Conv::open();
    let segments: [&[u8]; 3] = [b"first ", b"second ", b"third"];
    for (i, seg) in segments.iter().enumerate() {
        holder.client(PSH, seg);
        if i == 1 {
            // Lost on the way to the backup: only the sequence numbers move on.
            backup.c = backup.c.wrapping_add(seg.len() as u32);
            backup.s_rcv = backup.c;
        } else {
            backup.client(PSH, seg);
        }
    }
    holder.server(0, b"");
    backup.server(0, b"");
    let t = tuple();
    assert_eq!(backup.t.holes.opened, 1);
    assert_eq!(backup.t.holes_open(), 1);
    let holes = backup.t.open_holes();
    assert_eq!(
        holes,
        vec![(t, CISN + 1 + 6, 7)],
        "the second segment is missing"
    );
    // The replica stopped before the hole: it echoed only the first segment.
    assert_eq!(backup.t.get(&t).unwrap().replica.produced(), 6);
    let (_, seq, len) = holes[0];
    let bytes = holder
        .t
        .history(&t, seq, len)
        .expect("the holder keeps them");
    assert_eq!(bytes, b"second ");
    assert_eq!(
        holder.t.history(&t, seq.wrapping_sub(100), 10),
        Err(HistoryMiss::Gone)
    );
    assert_eq!(holder.t.history(&t, seq, 100), Err(HistoryMiss::NotYet));
    backup.t.fill(&t, seq, &bytes);
    assert_eq!((backup.t.holes_open(), backup.t.holes.repaired), (0, 1));
    assert_eq!(backup.t.get(&t).unwrap().replica.produced(), 18);
    let (w, g) = (
        holder.t.take_over(&ip).snapshots.remove(0),
        backup.t.take_over(&ip).snapshots.remove(0),
    );
    assert_eq!(
        (g.snd_una, g.rcv_nxt, &g.sent, &g.unsent, &g.received),
        (w.snd_una, w.rcv_nxt, &w.sent, &w.unsent, &w.received),
        "the repaired copy is the holder's"
    );
}

/// A hole still open at the takeover costs its connection (reported, never continued); one
/// the holder could not fill (`gone`) is counted lost at once.
#[test]
fn an_open_hole_at_a_takeover_is_a_lost_connection() {
    let ip = ["198.18.0.10".parse().unwrap()];
    let mut backup = Conv::open();
    backup.c = backup.c.wrapping_add(5);
    backup.s_rcv = backup.c;
    backup.server(0, b"");
    assert_eq!(backup.t.holes_open(), 1);
    backup.t.hole_gone(&tuple());
    assert_eq!(backup.t.holes.lost, 1);
    assert!(backup.t.open_holes().is_empty(), "nothing left to ask for");
    let tk = backup.t.take_over(&ip);
    assert_eq!(tk.lost[0].reason, Unrestorable::CaptureHole);
    assert_eq!(backup.t.holes.lost, 1, "counted once");
    // Still open (not gone) at the takeover: counted then.
    let mut other = Conv::open();
    other.c = other.c.wrapping_add(5);
    other.s_rcv = other.c;
    other.server(0, b"");
    other.t.take_over(&ip);
    assert_eq!(other.t.holes.lost, 1);
}

/// The client's retransmission, seen later, fills a hole as well as a FETCH would.
#[test]
fn a_retransmission_fills_a_hole() {
    let mut c = Conv::open();
    let start = c.c;
    c.c = c.c.wrapping_add(4);
    c.s_rcv = c.c;
    c.server(0, b"");
    assert_eq!(c.t.holes_open(), 1);
    c.feed(frame(C, S, start, c.c_rcv, ACK | PSH, 502, &[], b"late"));
    assert_eq!((c.t.holes_open(), c.t.holes.repaired), (0, 1));
    assert_eq!(c.t.get(&tuple()).unwrap().replica.produced(), 4);
}

/// A long hole filled piece by piece, out of order, with pieces missing at first: the replica
/// goes on as far as the pieces are contiguous, the hole shrinks to the first missing piece,
/// and closes once every piece came.
#[test]
fn a_long_hole_fills_piece_by_piece() {
    let mut c = Conv::open();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let start = c.c;
    c.c = c.c.wrapping_add(data.len() as u32);
    c.s_rcv = c.c;
    c.server(0, b"");
    let t = tuple();
    assert_eq!(c.t.open_holes(), vec![(t, start, 10_000)]);
    let pieces: Vec<(u32, &[u8])> = data
        .chunks(1200)
        .enumerate()
        .map(|(i, p)| (start.wrapping_add(i as u32 * 1200), p))
        .collect();
    // Every piece but the first and the fourth.
    for (i, (seq, p)) in pieces.iter().enumerate() {
        if i != 0 && i != 3 {
            c.t.fill(&t, *seq, p);
        }
    }
    assert_eq!(
        c.t.open_holes(),
        vec![(t, start, 1200), (t, pieces[3].0, 1200)],
        "both gaps are asked for at once"
    );
    c.t.fill(&t, pieces[0].0, pieces[0].1);
    assert_eq!(c.t.open_holes(), vec![(t, pieces[3].0, 1200)]);
    assert_eq!(c.t.get(&t).unwrap().replica.produced(), 3600);
    c.t.fill(&t, pieces[3].0, pieces[3].1);
    assert!(c.t.open_holes().is_empty());
    assert_eq!(c.t.get(&t).unwrap().replica.produced(), 10_000);
    assert_eq!((c.t.holes.opened, c.t.holes.repaired), (2, 2));
}
