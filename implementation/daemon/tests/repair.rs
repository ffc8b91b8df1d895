//! TCP_REPAIR restore, on its own, in a namespace of its own.

use std::os::fd::{AsFd, AsRawFd};

mod common;

use common::ScratchNs;
use holdfast_harness::need_root;
use holdfast_proto::flow::Snapshot;
use holdfast_proto::wire::FourTuple;

/// More client bytes than the kernel queues in one repair-mode send (17 pages): all of them
/// end up in the re-created socket's receive queue, none silently dropped.
#[test]
fn a_large_receive_queue_is_restored_whole() {
    need_root!();
    let scratch = ScratchNs::new("repair");
    let ns = &scratch.ns;
    let queued = ns
        .run(|| {
            let received: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
            let snap = Snapshot {
                tuple: FourTuple {
                    local: "127.0.0.1:7777".parse().unwrap(),
                    remote: "127.0.0.1:40000".parse().unwrap(),
                },
                snd_una: 5000,
                rcv_nxt: 1000,
                mss: 1460,
                snd_wscale: 7,
                rcv_wscale: 7,
                wscale: true,
                sack: true,
                timestamps: true,
                ts_val: 100,
                ts_ecr: 100,
                snd_wnd: 1 << 20,
                rcv_wnd: 1 << 20,
                sent: vec![],
                unsent: vec![],
                received,
                checkpoint: vec![],
            };
            let r = holdfastd::repair::restore(&snap).expect("restore");
            let mut n: libc::c_int = 0;
            // SAFETY: FIONREAD into an int.
            let rc = unsafe { libc::ioctl(r.as_fd().as_raw_fd(), libc::FIONREAD, &mut n) };
            assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
            n
        })
        .expect("run in namespace");
    drop(scratch);
    assert_eq!(queued, 200_000, "bytes in the receive queue");
}
