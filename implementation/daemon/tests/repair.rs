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
                client_fin: false,
                server_fin: false,
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

/// `tcp_info`'s first bytes: state, and the window-scale nibbles (send low, receive high).
fn tcp_info(fd: std::os::fd::BorrowedFd<'_>) -> (u8, u8, u8, u8) {
    let mut info = [0u8; 104];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt(TCP_INFO) into a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    (info[0], info[5], info[6] & 0x0f, info[6] >> 4)
}

const TCP_ESTABLISHED: u8 = 1;
const TCP_FIN_WAIT1: u8 = 4;
const TCP_CLOSE_WAIT: u8 = 8;
const TCP_CLOSING: u8 = 11;
const TCPI_OPT_WSCALE: u8 = 4;

/// Each half-closed state is re-created as the old owner had it (CRIU's way: the server's FIN
/// through `shutdown` in repair mode, the client's put into our own stack), over IPv4 and IPv6,
/// and a connection that negotiated no window scaling gets none, whatever this node's sysctls
/// would choose.
#[test]
fn fins_and_window_scaling_are_restored_as_negotiated() {
    need_root!();
    let scratch = ScratchNs::new("repairfin");
    let ns = &scratch.ns;
    let fd = ns.raw_fd();
    let got = ns
        .run(move || {
            let nl = holdfast_harness::netlink::Netlink::open().expect("netlink");
            nl.add_veth("h0", None, "h1", None, fd).expect("veth");
            for (k, v) in [
                ("net.ipv6.conf.h0.disable_ipv6", "0"),
                ("net.ipv6.conf.h0.accept_dad", "0"),
            ] {
                holdfast_harness::netns::sysctl(k, v).expect("sysctl");
            }
            nl.set_up("h0", true).unwrap();
            nl.set_up("h1", true).unwrap();
            nl.add_addr("h0", "198.18.0.1".parse().unwrap(), 16)
                .unwrap();
            nl.add_addr("h0", "2001:db8::1".parse().unwrap(), 64)
                .unwrap();
            let inject = holdfastd::inject::Injector::new().expect("raw socket");
            let mut out = Vec::new();
            for (local, remote, vip) in [
                ("198.18.0.10:7", "198.18.5.5", "198.18.0.10"),
                ("[2001:db8::10]:7", "[2001:db8::5]", "2001:db8::10"),
            ] {
                for (i, (client_fin, server_fin, wscale)) in [
                    (false, false, true),
                    (true, false, true),
                    (false, true, false),
                    (true, true, false),
                ]
                .into_iter()
                .enumerate()
                {
                    let snap = Snapshot {
                        tuple: FourTuple {
                            local: local.parse().unwrap(),
                            remote: format!("{remote}:{}", 40000 + i).parse().unwrap(),
                        },
                        snd_una: 5000,
                        rcv_nxt: 1000,
                        mss: 1460,
                        snd_wscale: 7,
                        rcv_wscale: 7,
                        wscale,
                        sack: true,
                        timestamps: true,
                        ts_val: 100,
                        ts_ecr: 100,
                        snd_wnd: 1 << 16,
                        rcv_wnd: 1 << 16,
                        sent: b"owed".to_vec(),
                        unsent: vec![],
                        received: b"unacked".to_vec(),
                        client_fin,
                        server_fin,
                        checkpoint: vec![],
                    };
                    let r = holdfastd::repair::restore(&snap).expect("restore");
                    if i == 0 {
                        let prefix = if vip.contains(':') { 128 } else { 32 };
                        nl.add_addr("h0", vip.parse().unwrap(), prefix).unwrap();
                    }
                    let (stream, _) = r.go_live(&inject).expect("go live");
                    // The injected FIN is processed in softirq context: give it a moment.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let mut n: libc::c_int = 0;
                    // SAFETY: FIONREAD into an int.
                    unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
                    out.push((tcp_info(stream.as_fd()), n, wscale));
                }
            }
            out
        })
        .expect("run in namespace");
    drop(scratch);
    let states: Vec<u8> = got.iter().map(|((s, ..), ..)| *s).collect();
    let each = [TCP_ESTABLISHED, TCP_CLOSE_WAIT, TCP_FIN_WAIT1, TCP_CLOSING];
    assert_eq!(
        states,
        [each, each].concat(),
        "ESTABLISHED, CLOSE_WAIT, FIN_WAIT1, CLOSING; IPv4 then IPv6"
    );
    for ((_, opts, snd, rcv), queued, wscale) in got {
        assert_eq!(queued, 7, "the client's unacknowledged bytes are readable");
        assert_ne!(opts & TCPI_OPT_WSCALE, 0, "the window scale is always set");
        let want = if wscale { (7, 7) } else { (0, 0) };
        assert_eq!((snd, rcv), want, "window scale as negotiated");
    }
}
