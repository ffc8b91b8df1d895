//! Snapshots: what a takeover re-creates, for open and half-closed connections, and the
//! CONN-STATE that carries them to a late backup.

use std::net::SocketAddr;

use super::frames::*;
use crate::flow::{Snapshot, TcpState, Unrestorable, parse_tcp};
use crate::policy::{Epoch, NodeId};
use crate::wire::FourTuple;

#[test]
fn parses_options() {
    let f = frame(C, S, 1000, 0, SYN, 64240, &syn_opts(1460, 7, 55), b"");
    let s = parse_tcp(&f).unwrap();
    assert!(s.syn && !s.ack_flag);
    assert_eq!(s.mss, Some(1460));
    assert_eq!(s.wscale, Some(7));
    assert!(s.sack_perm);
    assert_eq!(s.ts, Some((55, 0)));
    // Truncated anywhere: no panic, no segment.
    for cut in 0..f.len() {
        let _ = parse_tcp(&f[..cut]);
    }
}

#[test]
fn tracks_a_connection_and_snapshots_exactly() {
    let mut t = table();
    let (cisn, sisn) = (1000u32, 5000u32);
    t.observe(&frame(
        C,
        S,
        cisn,
        0,
        SYN,
        64240,
        &syn_opts(1460, 7, 100),
        b"",
    ));
    t.observe(&frame(
        S,
        C,
        sisn,
        cisn + 1,
        SYN | ACK,
        65160,
        &syn_opts(1400, 9, 200),
        b"",
    ));
    t.observe(&frame(
        C,
        S,
        cisn + 1,
        sisn + 1,
        ACK,
        502,
        &ts(101, 200),
        b"",
    ));
    // The client sends 10 bytes; the server acknowledges them and echoes 6 so far.
    t.observe(&frame(
        C,
        S,
        cisn + 1,
        sisn + 1,
        ACK | PSH,
        502,
        &ts(102, 200),
        b"0123456789",
    ));
    t.observe(&frame(
        S,
        C,
        sisn + 1,
        cisn + 11,
        ACK | PSH,
        510,
        &ts(205, 102),
        b"012345",
    ));
    // The client acknowledges 4 of them, and sends 3 more the server never acknowledges.
    t.observe(&frame(
        C,
        S,
        cisn + 11,
        sisn + 5,
        ACK | PSH,
        500,
        &ts(103, 205),
        b"abc",
    ));
    let tuple = FourTuple {
        local: S.parse().unwrap(),
        remote: C.parse().unwrap(),
    };
    let f = t.get(&tuple).unwrap();
    assert!(f.restorable());
    let s = f.snapshot().unwrap();
    assert_eq!(
        s.snd_una,
        sisn + 5,
        "the first output byte the client has not acknowledged"
    );
    assert_eq!(s.rcv_nxt, cisn + 11, "the next byte the server expects");
    assert_eq!(s.sent, b"45", "sent by the server, not acknowledged");
    assert_eq!(
        s.unsent, b"6789",
        "produced by the application, not yet sent"
    );
    assert_eq!((s.mss, s.snd_wscale, s.rcv_wscale), (1460, 7, 9));
    assert!(s.wscale && s.sack && s.timestamps);
    assert_eq!(s.ts_val, 205);
    assert_eq!(s.ts_ecr, 103);
    assert_eq!(s.snd_wnd, 500 << 7);
    assert_eq!(s.rcv_wnd, 510 << 9);
    let tk = t.take_over(&["198.18.0.10".parse().unwrap()]);
    assert_eq!((tk.snapshots.len(), tk.lost.len()), (1, 0));
    assert!(!s.client_fin && !s.server_fin);
    assert!(t.is_empty());
}

/// A backup that starts snooping mid-stream adopts the holder's CONN-STATE and ends up
/// with exactly the holder's snapshot, although frames crossed the state on the wire.
#[test]
fn a_late_backup_adopts_conn_state_and_catches_up() {
    let mut holder = table();
    let mut late = table();
    let (cisn, sisn) = (1000u32, 5000u32);
    let mut frames = vec![
        frame(C, S, cisn, 0, SYN, 64240, &syn_opts(1460, 7, 100), b""),
        frame(
            S,
            C,
            sisn,
            cisn + 1,
            SYN | ACK,
            65160,
            &syn_opts(1400, 9, 200),
            b"",
        ),
        frame(C, S, cisn + 1, sisn + 1, ACK, 502, &ts(101, 200), b""),
        frame(
            C,
            S,
            cisn + 1,
            sisn + 1,
            ACK | PSH,
            502,
            &ts(102, 200),
            b"hello ",
        ),
        frame(
            S,
            C,
            sisn + 1,
            cisn + 7,
            ACK | PSH,
            509,
            &ts(201, 102),
            b"hello ",
        ),
    ];
    // The late backup starts here: it sees the rest, but not the handshake.
    let late_from = frames.len();
    frames.push(frame(
        C,
        S,
        cisn + 7,
        sisn + 7,
        ACK | PSH,
        502,
        &ts(103, 201),
        b"world",
    ));
    // The holder snapshots here; these frames cross the CONN-STATE on the wire.
    let snap_at = frames.len();
    frames.push(frame(
        S,
        C,
        sisn + 7,
        cisn + 12,
        ACK | PSH,
        509,
        &ts(202, 103),
        b"wor",
    ));
    frames.push(frame(
        C,
        S,
        cisn + 12,
        sisn + 10,
        ACK | PSH,
        502,
        &ts(104, 202),
        b"!!",
    ));
    for (i, f) in frames.iter().enumerate() {
        if i == snap_at {
            let snaps = holder.snapshots(&[S.parse::<SocketAddr>().unwrap().ip()]);
            assert_eq!(snaps.len(), 1);
            let wire = snaps[0].to_conn_state(NodeId(1), Epoch::default());
            let back = Snapshot::from_conn_state(&wire).unwrap();
            assert_eq!((back.sent.len(), back.unsent.len()), (0, 0), "{back:?}");
            late.adopt(&back);
        }
        holder.observe(f);
        if i >= late_from {
            late.observe(f);
        }
    }
    let ip = S.parse::<SocketAddr>().unwrap().ip();
    let want = holder.take_over(&[ip]).snapshots;
    let tk = late.take_over(&[ip]);
    let (got, lost) = (tk.snapshots, tk.lost);
    assert!(lost.is_empty());
    assert_eq!(got.len(), 1);
    let (w, g) = (&want[0], &got[0]);
    assert_eq!((g.snd_una, g.rcv_nxt), (w.snd_una, w.rcv_nxt));
    assert_eq!(
        (g.sent.as_slice(), g.unsent.as_slice()),
        (&b""[..], &b"ld"[..])
    );
    assert_eq!(
        (&g.sent, &g.unsent, &g.received),
        (&w.sent, &w.unsent, &w.received)
    );
    assert_eq!(g.received, b"!!");
    assert_eq!((g.ts_val, g.ts_ecr, g.mss), (w.ts_val, w.ts_ecr, w.mss));
    assert_eq!(
        (g.snd_wscale, g.rcv_wscale, g.sack),
        (w.snd_wscale, w.rcv_wscale, w.sack)
    );
}

#[test]
fn a_capture_hole_makes_the_connection_unrestorable() {
    let mut t = table();
    t.observe(&frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1), b""));
    t.observe(&frame(
        S,
        C,
        9,
        2,
        SYN | ACK,
        65160,
        &syn_opts(1460, 7, 1),
        b"",
    ));
    // The server acknowledges 5 client bytes we never saw.
    t.observe(&frame(S, C, 10, 7, ACK, 510, &ts(2, 1), b""));
    let tk = t.take_over(&["198.18.0.10".parse().unwrap()]);
    assert_eq!((tk.snapshots.len(), tk.lost.len()), (0, 1));
    assert_eq!(tk.lost[0].reason, Unrestorable::CaptureHole);
    assert_eq!(tk.lost[0].state, TcpState::Established);
}

/// A connection seen only mid-stream is reported lost (its options are unknown), never
/// dropped silently; one that ended is not reported.
#[test]
fn unseen_handshakes_are_reported_and_ended_connections_are_not() {
    let mut t = table();
    t.observe(&frame(C, S, 1, 0, SYN, 64240, &syn_opts(1460, 7, 1), b""));
    t.observe(&frame(
        S,
        C,
        9,
        2,
        SYN | ACK,
        65160,
        &syn_opts(1460, 7, 1),
        b"",
    ));
    t.observe(&frame(C, S, 2, 10, RST, 0, &[], b""));
    // Mid-stream traffic of a connection whose handshake we did not see.
    let other = "198.18.0.100:40001";
    t.observe(&frame(other, S, 77, 88, ACK, 502, &[], b"zz"));
    let tk = t.take_over(&["198.18.0.10".parse().unwrap()]);
    assert!(tk.snapshots.is_empty());
    assert_eq!(tk.lost.len(), 1, "{:?}", tk.lost);
    assert_eq!(tk.lost[0].tuple.remote, other.parse().unwrap());
    assert_eq!(
        (tk.lost[0].state, tk.lost[0].reason),
        (TcpState::Unknown, Unrestorable::UnseenHandshake)
    );
    assert_eq!(t.ended.get(&TcpState::Reset), Some(&1));
}

/// A half-closed connection travels in a CONN-STATE with its FINs, and a late backup that
/// adopts it ends up with the holder's own snapshot.
#[test]
fn a_half_closed_connection_syncs_with_its_fins() {
    let ip = ["198.18.0.10".parse().unwrap()];
    let mut holder = Conv::open();
    holder.client(PSH, b"hello");
    holder.client(FIN, b"");
    holder.server(0, b"hel");
    assert_eq!(holder.state(), Some(TcpState::CloseWait));
    let snaps = holder.t.snapshots(&ip);
    assert_eq!(snaps.len(), 1);
    let wire = snaps[0].to_conn_state(NodeId(1), Epoch::default());
    assert!(wire.fin_received && !wire.fin_sent);
    let back = Snapshot::from_conn_state(&wire).unwrap();
    assert_eq!(back, snaps[0]);
    let mut late = table();
    late.adopt(&back);
    assert_eq!(
        late.get(&tuple()).map(|f| f.state()),
        Some(TcpState::CloseWait)
    );
    // The rest of the echo and the server's FIN, seen by both.
    let mut later = Vec::new();
    let before = holder.t.len();
    holder.server(PSH | FIN, b"lo");
    assert_eq!(holder.t.len(), before);
    later.push(frame(
        S,
        C,
        SISN + 4,
        CISN + 7,
        ACK | PSH | FIN,
        509,
        &[],
        b"lo",
    ));
    for f in &later {
        late.observe(f);
    }
    let want = holder.t.take_over(&ip).snapshots;
    let got = late.take_over(&ip).snapshots;
    assert_eq!((got[0].client_fin, got[0].server_fin), (true, true));
    assert_eq!(
        (&got[0].sent, &got[0].unsent, got[0].snd_una, got[0].rcv_nxt),
        (
            &want[0].sent,
            &want[0].unsent,
            want[0].snd_una,
            want[0].rcv_nxt
        )
    );
    // A FIN sent before bytes that were never sent is malformed.
    let mut bad = wire.clone();
    bad.fin_sent = true;
    bad.snd_nxt = bad.snd_una;
    bad.unacked = b"x".to_vec();
    assert!(Snapshot::from_conn_state(&bad).is_none());
}
