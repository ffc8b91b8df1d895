//! The beacon thread sends the spare heartbeats it is given when they are due, in order, from
//! the loop's own socket; a new set replaces them, an empty one cancels them; a late beacon
//! sends only the newest due one.
//! Loopback UDP in this namespace, no privileges needed.

use std::net::UdpSocket;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use holdfastd::beacon::Beacon;

fn pair() -> (UdpSocket, UdpSocket) {
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    (tx, rx)
}

fn recv_all(rx: &UdpSocket) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok((n, _)) = rx.recv_from(&mut buf) {
        out.push((Instant::now(), buf[..n].to_vec()));
    }
    out
}

#[test]
fn spares_go_out_when_due_in_order_from_the_loops_socket() {
    let (tx, rx) = pair();
    let b = Beacon::spawn(&tx, rx.local_addr().unwrap()).unwrap();
    let t0 = Instant::now();
    let due: Vec<Instant> = (0..3)
        .map(|k| t0 + Duration::from_millis(20 + 10 * k))
        .collect();
    b.set(due.iter().enumerate().map(|(k, d)| (*d, vec![k as u8])));
    let got = recv_all(&rx);
    assert_eq!(
        got.iter().map(|g| g.1.clone()).collect::<Vec<_>>(),
        [vec![0u8], vec![1], vec![2]]
    );
    for ((at, _), d) in got.iter().zip(&due) {
        assert!(at >= d, "a spare went out before it was due");
    }
    let mut buf = [0u8; 8];
    let (_, from) = {
        // The source is the loop's socket.
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        rx.recv_from(&mut buf).unwrap()
    };
    assert_eq!(from, tx.local_addr().unwrap());
    assert_eq!(b.counts().sent.load(Relaxed), 3);
}

#[test]
fn an_empty_set_cancels_the_spares_and_a_new_set_replaces_them() {
    let (tx, rx) = pair();
    let b = Beacon::spawn(&tx, rx.local_addr().unwrap()).unwrap();
    let t0 = Instant::now();
    b.set((0..3).map(|k| (t0 + Duration::from_millis(50 + 10 * k), vec![k as u8])));
    b.set([]);
    assert!(recv_all(&rx).is_empty(), "a cancelled spare was sent");
    let t1 = Instant::now();
    b.set([(t1 + Duration::from_millis(30), vec![7u8])]);
    b.set([(t1 + Duration::from_millis(40), vec![9u8])]);
    let got: Vec<Vec<u8>> = recv_all(&rx).into_iter().map(|g| g.1).collect();
    assert_eq!(got, [vec![9u8]]);
    assert_eq!(b.counts().sent.load(Relaxed), 1);
}

#[test]
fn a_late_beacon_sends_only_the_newest_due_spare() {
    let (tx, rx) = pair();
    let b = Beacon::spawn(&tx, rx.local_addr().unwrap()).unwrap();
    let past = Instant::now() - Duration::from_millis(100);
    b.set((0..4).map(|k| (past + Duration::from_millis(10 * k), vec![k as u8])));
    let got: Vec<Vec<u8>> = recv_all(&rx).into_iter().map(|g| g.1).collect();
    assert_eq!(got, [vec![3u8]]);
    assert_eq!(b.counts().skipped.load(Relaxed), 3);
}

#[test]
fn one_thread_per_cpu_the_daemon_may_use() {
    let (tx, rx) = pair();
    let b = Beacon::spawn(&tx, rx.local_addr().unwrap()).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(b.threads(), cpus.min(holdfastd::beacon::MAX_THREADS));
    // However many there are, a spare goes out once.
    b.set([(Instant::now() + Duration::from_millis(10), vec![5u8])]);
    let got: Vec<Vec<u8>> = recv_all(&rx).into_iter().map(|g| g.1).collect();
    assert_eq!(got, [vec![5u8]]);
}
