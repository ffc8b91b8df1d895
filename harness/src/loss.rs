//! Random frame loss on a link, without netem.
//!
//! netem and the `gact` random action are not built into this kernel, but `cls_bpf` is. So loss
//! is a seven-instruction eBPF classifier in direct-action mode, attached to both hooks of the
//! switch-side port: it draws `bpf_get_prandom_u32()` and returns `TC_ACT_SHOT` for the chosen
//! fraction of frames and `TC_ACT_UNSPEC` (continue to the next filter, such as a mirror)
//! otherwise.

use std::io;
use std::os::fd::OwnedFd;

use crate::bpf::{Insn, TC_ACT_SHOT, TC_ACT_UNSPEC, insn};

const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;

/// The loss threshold out of 65536 for a percentage in 0..=100.
pub fn threshold(pct: f64) -> i32 {
    (pct.clamp(0.0, 100.0) / 100.0 * 65536.0).round() as i32
}

fn program(pct: f64) -> [Insn; 7] {
    [
        // call bpf_get_prandom_u32          (BPF_JMP | BPF_CALL)
        insn(0x85, 0, BPF_FUNC_GET_PRANDOM_U32),
        // r0 &= 0xffff                      (BPF_ALU64 | BPF_AND | BPF_K)
        insn(0x57, 0, 0xffff),
        // if r0 >= threshold goto pass      (BPF_JMP | BPF_JGE | BPF_K)
        insn(0x35, 2, threshold(pct)),
        // r0 = TC_ACT_SHOT; exit            (BPF_ALU64 | BPF_MOV | BPF_K), (BPF_JMP | BPF_EXIT)
        insn(0xb7, 0, TC_ACT_SHOT),
        insn(0x95, 0, 0),
        // pass: r0 = TC_ACT_UNSPEC; exit
        insn(0xb7, 0, TC_ACT_UNSPEC),
        insn(0x95, 0, 0),
    ]
}

/// Loads the loss classifier for `pct` percent loss and returns its program fd.
pub fn load(pct: f64) -> io::Result<OwnedFd> {
    crate::bpf::load(&program(pct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(50.0), 32768);
        assert_eq!(threshold(100.0), 65536);
        assert_eq!(threshold(250.0), 65536);
    }
}
