//! Network partitions in the switch: frames from one group of nodes never reach another.
//!
//! A partition is a direct-action eBPF classifier on the egress hook of each switch port of the
//! cut-off side: it reads the port the frame came in on (`__sk_buff.ingress_ifindex`) and drops
//! the frame when that is a port of the other side. Both directions are two such sets; a one-way
//! partition is one. Mirror copies carry the ingress port of the frame they copy, so a
//! partitioned backup stops snooping too. The nodes themselves are untouched.
//!
//! Without root (in a rootless sandbox, where `bpf(2)` is refused) the classifier is classic
//! BPF, which cannot read the ingress port: it drops frames by their source MAC instead, the
//! MACs of the cut-off nodes' interfaces on that switch. A frame a node sends from another MAC
//! (a virtual MAC under `arp = "vmac"`) then still passes.

use std::collections::BTreeSet;
use std::io;

use crate::bpf::{
    Insn, Program, SockFilter, TC_ACT_SHOT, TC_ACT_UNSPEC, insn, insn_regs, jump, stmt,
};

/// `offsetof(struct __sk_buff, ingress_ifindex)`.
const SKB_INGRESS_IFINDEX: i16 = 36;

/// One partition: frames from `from` are dropped on their way to `to`, and the other way too
/// unless `one_way`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// One side (for a one-way partition, the senders that are cut off).
    pub from: Vec<String>,
    /// The other side.
    pub to: Vec<String>,
    /// Only frames from `from` to `to` are dropped.
    pub one_way: bool,
}

impl Partition {
    /// The nodes whose frames must not reach `node`.
    pub fn blocked_senders(&self, node: &str) -> impl Iterator<Item = &String> {
        let into_to = self.to.iter().any(|n| n == node);
        let into_from = !self.one_way && self.from.iter().any(|n| n == node);
        self.from
            .iter()
            .filter(move |_| into_to)
            .chain(self.to.iter().filter(move |_| into_from))
    }
}

/// The nodes whose frames must not reach `node` under all the partitions in force.
pub fn blocked(partitions: &[Partition], node: &str) -> BTreeSet<String> {
    partitions
        .iter()
        .flat_map(|p| p.blocked_senders(node))
        .cloned()
        .collect()
}

/// The classifier: drop a frame that came in on one of `ifindexes`, leave the rest to the next
/// filter.
fn program(ifindexes: &[i32]) -> Vec<Insn> {
    let n = ifindexes.len();
    let mut p = Vec::with_capacity(n + 5);
    // r0 = *(u32 *)(r1 + ingress_ifindex)       (BPF_LDX | BPF_MEM | BPF_W; r1 is the skb)
    p.push(insn_regs(0x61, 0, 1, SKB_INGRESS_IFINDEX, 0));
    for (i, ix) in ifindexes.iter().enumerate() {
        // if r0 == ix goto drop                  (BPF_JMP | BPF_JEQ | BPF_K)
        let to_drop = (n - i - 1) as i16 + 2;
        p.push(insn(0x15, to_drop, *ix));
    }
    // r0 = TC_ACT_UNSPEC; exit
    p.push(insn(0xb7, 0, TC_ACT_UNSPEC));
    p.push(insn(0x95, 0, 0));
    // drop: r0 = TC_ACT_SHOT; exit
    p.push(insn(0xb7, 0, TC_ACT_SHOT));
    p.push(insn(0x95, 0, 0));
    p
}

/// The classic classifier: drop a frame whose source MAC is one of `macs`.
fn by_mac(macs: &[[u8; 6]]) -> Vec<SockFilter> {
    let n = macs.len();
    let mut p = Vec::with_capacity(4 * n + 2);
    for (i, m) in macs.iter().enumerate() {
        let hi = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
        let lo = u32::from(u16::from_be_bytes([m[4], m[5]]));
        // A = bytes 6..10 of the frame (source MAC, high part)   (BPF_LD | BPF_W | BPF_ABS)
        p.push(stmt(0x20, 6));
        // if A != hi skip this MAC's last two                    (BPF_JMP | BPF_JEQ | BPF_K)
        p.push(jump(0x15, hi, 0, 2));
        // A = bytes 10..12 (source MAC, low part)                (BPF_LD | BPF_H | BPF_ABS)
        p.push(stmt(0x28, 10));
        // if A == lo goto drop
        let to_drop = (4 * (n - i - 1) + 1) as u8;
        p.push(jump(0x15, lo, to_drop, 0));
    }
    // return TC_ACT_UNSPEC                                       (BPF_RET | BPF_K)
    p.push(stmt(0x06, TC_ACT_UNSPEC as u32));
    // drop: return TC_ACT_SHOT
    p.push(stmt(0x06, TC_ACT_SHOT as u32));
    p
}

/// The classifier that drops frames from the given ingress ports: eBPF where `bpf(2)` is
/// allowed; else (no `CAP_BPF`, as in a rootless sandbox) classic BPF on the senders' source
/// MACs.
pub fn load(ifindexes: &[i32], macs: &[[u8; 6]]) -> io::Result<Program> {
    match crate::bpf::load(&program(ifindexes)) {
        Ok(fd) => Ok(Program::Loaded(fd)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
            if macs.len() > 60 {
                return Err(io::Error::other(format!(
                    "{} source MACs on one side of a partition: a classic classifier holds 60",
                    macs.len()
                )));
            }
            Ok(Program::Classic(by_mac(macs)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_and_one_way() {
        let p = Partition {
            from: vec!["a".into()],
            to: vec!["b".into(), "c".into()],
            one_way: false,
        };
        assert_eq!(
            blocked(std::slice::from_ref(&p), "b"),
            ["a".to_string()].into()
        );
        assert_eq!(
            blocked(std::slice::from_ref(&p), "a"),
            ["b".to_string(), "c".to_string()].into()
        );
        assert!(blocked(std::slice::from_ref(&p), "client").is_empty());
        let one = Partition { one_way: true, ..p };
        assert_eq!(
            blocked(std::slice::from_ref(&one), "b"),
            ["a".to_string()].into()
        );
        assert!(blocked(&[one], "a").is_empty());
    }

    #[test]
    fn mac_jumps_land_on_drop() {
        let macs = [[2, 0x68, 0x66, 0, 1, 1], [2, 0x68, 0x66, 0, 2, 1]];
        let p = by_mac(&macs);
        assert_eq!(p.len(), 10);
        let drop = p.len() - 1;
        for i in 0..2 {
            let last = 4 * i + 3;
            assert_eq!(last + 1 + p[last].jt as usize, drop, "mac {i}");
            // A mismatch on the high part skips to the next MAC (or to pass).
            let first = 4 * i + 1;
            assert_eq!(first + 1 + p[first].jf as usize, 4 * (i + 1));
        }
        assert_eq!(p[drop].k, TC_ACT_SHOT as u32);
        assert_eq!(p[drop - 1].k, TC_ACT_UNSPEC as u32);
    }

    #[test]
    fn jumps_land_on_drop() {
        let p = program(&[4, 5, 6]);
        // ldx, 3 jeqs, 2 pass, 2 drop
        assert_eq!(p.len(), 8);
        for (i, jump) in p.iter().enumerate().skip(1).take(3) {
            assert_eq!(i as i16 + 1 + jump.off(), 6, "jump {i}");
        }
    }
}
