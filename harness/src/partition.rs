//! Network partitions in the switch: frames from one group of nodes never reach another.
//!
//! A partition is a direct-action eBPF classifier on the egress hook of each switch port of the
//! cut-off side: it reads the port the frame came in on (`__sk_buff.ingress_ifindex`) and drops
//! the frame when that is a port of the other side. Both directions are two such sets; a one-way
//! partition is one. Mirror copies carry the ingress port of the frame they copy, so a
//! partitioned backup stops snooping too. The nodes themselves are untouched.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::OwnedFd;

use crate::bpf::{Insn, TC_ACT_SHOT, TC_ACT_UNSPEC, insn, insn_regs};

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

/// Loads the classifier that drops frames from the given ingress ports.
pub fn load(ifindexes: &[i32]) -> io::Result<OwnedFd> {
    crate::bpf::load(&program(ifindexes))
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
    fn jumps_land_on_drop() {
        let p = program(&[4, 5, 6]);
        // ldx, 3 jeqs, 2 pass, 2 drop
        assert_eq!(p.len(), 8);
        for (i, jump) in p.iter().enumerate().skip(1).take(3) {
            assert_eq!(i as i16 + 1 + jump.off(), 6, "jump {i}");
        }
    }
}
