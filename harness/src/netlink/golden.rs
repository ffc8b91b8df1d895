//! Every request checked against the bytes iproute2 sends for the same change.
//!
//! Provenance: iproute2 6.1 (`ip`, `tc`) on Debian 12, Linux 6.18, in a fresh network namespace
//! (`unshare -n`), each request's bytes dumped with `strace -e trace=sendmsg -e write=3 COMMAND`
//! (the command is above each one). Only the sequence number (bytes 8-11) differs by run: it is
//! compared as ours. A request `msg.rs` builds differently from iproute2 fails here.

use super::msg::{self, Hook};

/// The captured bytes, with the sequence number set to `seq`.
fn captured(hex: &[&str], seq: u32) -> Vec<u8> {
    let hex: String = hex.concat();
    let mut b: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    b[8..12].copy_from_slice(&seq.to_ne_bytes());
    b
}

fn same(ours: Vec<u8>, theirs: Vec<u8>) {
    let h = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(h(&ours), h(&theirs), "ours, then iproute2's");
}

/// `ip link set lo up`
#[test]
fn set_up() {
    let theirs = captured(
        &["20000000100005003573116b0000000000000000010000000100000001000000"],
        7,
    );
    same(msg::encode(msg::set_up(1, true), 7), theirs);
}

/// `ip addr add 198.18.0.1/24 dev lo`
#[test]
fn new_addr_v4() {
    let theirs = captured(
        &[
            "28000000140005063573116b00000000021800000100000008000200c6120001",
            "08000100c6120001",
        ],
        7,
    );
    same(
        msg::encode(msg::new_addr(1, "198.18.0.1".parse().unwrap(), 24), 7),
        theirs,
    );
}

/// `ip addr add 2001:db8::1/64 dev v0 nodad   (v0: index 3)`
#[test]
fn new_addr_v6() {
    let theirs = captured(
        &[
            "40000000140005063e73116b000000000a400200030000001400020020010db8",
            "0000000000000000000000011400010020010db8000000000000000000000001",
        ],
        7,
    );
    same(
        msg::encode(msg::new_addr(3, "2001:db8::1".parse().unwrap(), 64), 7),
        theirs,
    );
}

/// `tc qdisc add dev lo clsact`
#[test]
fn add_clsact() {
    let theirs = captured(
        &[
            "30000000240005063673116b0000000000000000010000000000fffff1ffffff",
            "000000000b000100636c736163740000",
        ],
        7,
    );
    same(msg::encode(msg::clsact(1, true), 7), theirs);
}

/// `ip link add br0 type bridge mcast_snooping 0 ageing_time 0`
#[test]
fn new_bridge() {
    let theirs = captured(
        &[
            "4c000000100005063d73116b0000000000000000000000000000000000000000",
            "0800030062723000240012000a00010062726964676500001400020005001700",
            "000000000800040000000000",
        ],
        7,
    );
    // The one difference, on purpose: iproute2 writes IFLA_INFO_KIND without its NUL (length
    // 10), netlink-packet-route with it (11); the kernel's nla_strcmp accepts both.
    let mut theirs = theirs;
    assert_eq!(&theirs[44..46], &[0x0a, 0x00]);
    theirs[44] = 0x0b;
    same(msg::encode(msg::new_bridge("br0", true), 7), theirs);
}

/// `ip route add 198.19.0.0/16 via 198.18.0.2`
#[test]
fn new_route() {
    let theirs = captured(
        &[
            "2c000000180005063d73116b0000000002100000fe0300010000000008000100",
            "c613000008000500c6120002",
        ],
        7,
    );
    same(
        msg::encode(
            msg::new_route(
                Some(("198.19.0.0".parse().unwrap(), 16)),
                "198.18.0.2".parse().unwrap(),
            ),
            7,
        ),
        theirs,
    );
}

/// `ip link set v0 master br0   (v0: index 3, br0: 4)`
#[test]
fn set_master() {
    let theirs = captured(
        &[
            "28000000100005003e73116b0000000000000000030000000000000000000000",
            "08000a0004000000",
        ],
        7,
    );
    same(msg::encode(msg::set_master(3, 4), 7), theirs);
}

/// `ip link del v1   (v1: index 2)`
#[test]
fn del_link() {
    let theirs = captured(
        &["20000000110005003e73116b0000000000000000020000000000000000000000"],
        7,
    );
    same(msg::encode(msg::del_link(2), 7), theirs);
}

/// `tc filter add dev v0 ingress prio 1 protocol all u32 match u32 0 0 action mirred egress mirror dev v1 pipe   (v0: 3, v1: 2)`
#[test]
fn new_mirror() {
    let theirs = captured(
        &[
            "8c0000002c0005063f73116b00000000000000000300000000000000f2ffffff",
            "0003010008000100753332006000020038000700340001000b0001006d697272",
            "6564000024000280200002000000000000000000030000000000000000000000",
            "0200000002000000240005000100010000000000000000000000000000000000",
            "000000000000000000000000",
        ],
        7,
    );
    same(
        msg::encode(msg::new_mirror(3, Hook::Ingress, 1, &[2]), 7),
        theirs,
    );
}

/// `tc filter replace dev v0 egress prio 3 handle 1 bpf bytecode "1,6 0 0 4294967295," direct-action   (v0: 3)`
#[test]
fn new_bpf_classic() {
    let theirs = captured(
        &[
            "4c0000002c000504c273116b00000000000000000300000001000000f3ffffff",
            "0003030008000100627066002000020006000400010000000c00050006000000",
            "ffffffff0800080001000000",
        ],
        7,
    );
    same(
        msg::encode(
            msg::new_bpf(
                3,
                Hook::Egress,
                3,
                &crate::bpf::Program::Classic(vec![crate::bpf::SockFilter {
                    code: 6,
                    jt: 0,
                    jf: 0,
                    k: 0xffff_ffff,
                }]),
                None,
            ),
            7,
        ),
        theirs,
    );
}

/// `ip netns add hfgold; ip link add v0 address 02:00:00:00:00:01 type veth peer name v1 address
/// 02:00:00:00:00:02 netns hfgold` (the namespace open at fd 4). iproute2 writes the kinds
/// without their NUL, so the lengths differ: here both are decoded with `netlink-packet-route`
/// and compared as messages, attribute by attribute, in order.
#[test]
fn new_veth() {
    use netlink_packet_core::NetlinkMessage;
    use netlink_packet_route::RouteNetlinkMessage;
    let theirs = captured(
        &[
            "74000000100005063e7d116b0000000000000000000000000000000000000000",
            "0a00010002000000000100000700030076300000400012000800010076657468",
            "3400020030000100000000000000000000000000000000000a00010002000000",
            "0002000008001c00040000000700030076310000",
        ],
        7,
    );
    let ours = msg::encode(
        msg::new_veth(
            "v0",
            Some([2, 0, 0, 0, 0, 1]),
            "v1",
            Some([2, 0, 0, 0, 0, 2]),
            4,
        ),
        7,
    );
    let decode = |b: &[u8]| NetlinkMessage::<RouteNetlinkMessage>::deserialize(b).unwrap();
    let (ours, theirs) = (decode(&ours), decode(&theirs));
    assert_eq!(ours.header.flags, theirs.header.flags);
    assert_eq!(ours.payload, theirs.payload, "ours, then iproute2's");
}
