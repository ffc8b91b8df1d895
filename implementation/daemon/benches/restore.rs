//! The TCP_REPAIR restore path alone, in a namespace of its own: N connections re-created in
//! repair mode, the address added, and every one taken live, each phase timed, against the
//! floor (`floor/mod.rs`: the same syscalls in a bare loop) measured in the same process, in the
//! same namespace, in alternate rounds (floor, then holdfastd, three times after one floor
//! round to warm up; medians).
//!
//! `cargo bench -p holdfastd --bench restore -- [N]` (as root; default 10000). The last two
//! lines are `restore/floor ratio: X` (the repair-mode restore alone) and `live/floor ratio:
//! Y` (from the first restore to the last connection live: restore, address, go live).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "floor/mod.rs"]
mod floor;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::ScratchNs;
use holdfast_harness::netlink::Netlink;
use holdfast_proto::flow::Snapshot;
use holdfast_proto::wire::FourTuple;

/// The client of connection `i`: 198.18.{1+}.100, port 1024 and up.
fn remote(i: u32) -> ([u8; 4], u16) {
    (
        [198, 18, 1 + (i / 60000) as u8, 100],
        1024 + (i % 60000) as u16,
    )
}

fn snapshot(local: [u8; 4], i: u32) -> Snapshot {
    let (ip, port) = remote(i);
    Snapshot {
        tuple: FourTuple {
            local: (local, 7).into(),
            remote: (ip, port).into(),
        },
        snd_una: 5000 + i,
        rcv_nxt: 1000 + i,
        mss: 1460,
        snd_wscale: 7,
        rcv_wscale: 7,
        wscale: true,
        sack: true,
        timestamps: true,
        ts_val: 100,
        ts_ecr: 100,
        snd_wnd: 1 << 16,
        rcv_wnd: 1 << 16,
        sent: vec![],
        unsent: vec![],
        received: vec![],
        client_fin: false,
        server_fin: false,
        checkpoint: vec![],
    }
}

/// One round of holdfastd's own path: restore, add the address, go live. The sockets are
/// put back into repair mode and closed silently, as the floor's are. Returns (restore,
/// address, live).
fn holdfastd_round(nl: &Netlink, local: [u8; 4], n: u32) -> (Duration, Duration, Duration) {
    let snaps: Vec<Snapshot> = (0..n).map(|i| snapshot(local, i)).collect();
    let inject = holdfastd::inject::Injector::new().expect("raw socket");
    let t0 = Instant::now();
    let repaired: Vec<_> = snaps
        .iter()
        .map(|s| holdfastd::repair::restore(s).expect("restore"))
        .collect();
    let t1 = Instant::now();
    nl.add_addr("h0", local.into(), 32).unwrap();
    let t2 = Instant::now();
    let live: Vec<_> = repaired
        .into_iter()
        .map(|r| r.go_live(&inject).expect("go live"))
        .collect();
    let t3 = Instant::now();
    for (s, _) in live {
        let one: libc::c_int = 1;
        // SAFETY: TCP_REPAIR (19) on our own socket, so that the close sends nothing.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                19,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
    }
    (t1 - t0, t2 - t1, t3 - t2)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let Some(n) = holdfast_harness::bench_arg::<u32>(10_000) else {
        return;
    };
    holdfastd::daemon::raise_fd_limit();
    // Removed however the bench ends, a panic included.
    let scratch = ScratchNs::new("restore");
    let ns = &scratch.ns;
    let fd = ns.raw_fd();
    let rounds = ns
        .run(move || {
            let nl = Netlink::open().expect("netlink");
            nl.add_veth("h0", None, "h1", None, fd).expect("veth");
            nl.set_up("h0", true).unwrap();
            nl.set_up("h1", true).unwrap();
            nl.add_addr("h0", "198.18.0.1".parse().unwrap(), 16)
                .unwrap();
            let remotes: Vec<_> = (0..n).map(remote).collect();
            // The first round of a fresh namespace runs 1.5-4x slower (whichever path goes
            // first): a round of the floor to warm up, not counted.
            let warm = [198, 18, 0, 19];
            floor::run((warm, 7), &remotes, || {
                nl.add_addr("h0", warm.into(), 32).unwrap()
            });
            (0..3u8)
                .map(|r| {
                    // A fresh address per run, added between restore and live as in a takeover.
                    let (f_ip, h_ip) = ([198, 18, 0, 20 + 2 * r], [198, 18, 0, 21 + 2 * r]);
                    let floor = floor::run((f_ip, 7), &remotes, || {
                        nl.add_addr("h0", f_ip.into(), 32).unwrap()
                    });
                    (floor, holdfastd_round(&nl, h_ip, n))
                })
                .collect::<Vec<_>>()
        })
        .expect("run in namespace");
    drop(scratch);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("| round | floor restore | address | live | holdfastd restore | address | live |");
    println!("|---|---|---|---|---|---|---|");
    for (i, ((fr, fa, fl), (hr, ha, hl))) in rounds.iter().enumerate() {
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms |",
            i + 1,
            ms(*fr),
            ms(*fa),
            ms(*fl),
            ms(*hr),
            ms(*ha),
            ms(*hl)
        );
    }
    type Round = (
        (Duration, Duration, Duration),
        (Duration, Duration, Duration),
    );
    let m = |f: fn(&Round) -> Duration| median(rounds.iter().map(f).collect());
    let (fr, hr) = (m(|r| r.0.0), m(|r| r.1.0));
    let (ft, ht) = (m(|r| r.0.0 + r.0.1 + r.0.2), m(|r| r.1.0 + r.1.1 + r.1.2));
    println!(
        "{n} connections, medians: restore {:.1} ms against a floor of {:.1} ms; all live {:.1} ms against {:.1} ms",
        ms(hr),
        ms(fr),
        ms(ht),
        ms(ft)
    );
    println!(
        "restore/floor ratio: {:.2}",
        hr.as_secs_f64() / fr.as_secs_f64()
    );
    println!(
        "live/floor ratio: {:.2}",
        ht.as_secs_f64() / ft.as_secs_f64()
    );
}
