//! The TCP_REPAIR restore path alone, in a namespace of its own: N connections re-created in
//! repair mode, the address added, and every one taken live, each phase timed. Compare with the
//! bare syscall floor (a C loop restores 10,000 sockets in about 50 ms on this machine).
//!
//! `cargo bench -p holdfastd --bench restore -- [N]` (as root; default 10000).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::ScratchNs;
use holdfast_harness::netlink::Netlink;
use holdfast_proto::flow::Snapshot;
use holdfast_proto::wire::FourTuple;

fn snapshot(i: u32) -> Snapshot {
    Snapshot {
        tuple: FourTuple {
            local: "198.18.0.10:7".parse().unwrap(),
            remote: format!("198.18.{}.{}:{}", 1 + i / 60000, 100, 1024 + i % 60000)
                .parse()
                .unwrap(),
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

fn main() {
    let Some(n) = holdfast_harness::bench_arg::<u32>(10_000) else {
        return;
    };
    holdfastd::daemon::raise_fd_limit();
    // Removed however the bench ends, a panic included.
    let scratch = ScratchNs::new("restore");
    let ns = &scratch.ns;
    let fd = ns.raw_fd();
    let out = ns
        .run(move || {
            let nl = Netlink::open().expect("netlink");
            nl.add_veth("h0", None, "h1", None, fd).expect("veth");
            nl.set_up("h0", true).unwrap();
            nl.set_up("h1", true).unwrap();
            nl.add_addr("h0", "198.18.0.1".parse().unwrap(), 16)
                .unwrap();
            let snaps: Vec<Snapshot> = (0..n).map(snapshot).collect();
            let t0 = Instant::now();
            let repaired: Vec<_> = snaps
                .iter()
                .map(|s| holdfastd::repair::restore(s).expect("restore"))
                .collect();
            let t1 = Instant::now();
            nl.add_addr("h0", "198.18.0.10".parse().unwrap(), 32)
                .unwrap();
            let t2 = Instant::now();
            let inject = holdfastd::inject::Injector::new().expect("raw socket");
            let live: Vec<_> = repaired
                .into_iter()
                .map(|r| r.go_live(&inject).expect("go live"))
                .collect();
            let t3 = Instant::now();
            drop(live);
            (t1 - t0, t2 - t1, t3 - t2)
        })
        .expect("run in namespace");
    drop(scratch);
    let (restore, addr, live) = out;
    println!(
        "{n} connections: restore {:.1} ms ({:.1} us each), address {:.1} ms, go live {:.1} ms ({:.1} us each)",
        restore.as_secs_f64() * 1e3,
        restore.as_secs_f64() * 1e6 / n as f64,
        addr.as_secs_f64() * 1e3,
        live.as_secs_f64() * 1e3,
        live.as_secs_f64() * 1e6 / n as f64,
    );
}
