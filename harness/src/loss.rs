//! Random frame loss on a link, without netem.
//!
//! netem and the `gact` random action are not built into this kernel, but `cls_bpf` is. So loss
//! is a five-instruction classic BPF classifier in direct-action mode (so it needs no `bpf(2)`
//! and works rootless too), attached to both hooks of the switch-side port: it draws the
//! kernel's per-packet random number (`SKF_AD_RANDOM`) and returns `TC_ACT_SHOT` for the chosen
//! fraction of frames and `TC_ACT_UNSPEC` (continue to the next filter, such as a mirror)
//! otherwise.

use crate::bpf::{Program, SockFilter, TC_ACT_SHOT, TC_ACT_UNSPEC, jump, stmt};

/// `SKF_AD_OFF + SKF_AD_RANDOM`: classic BPF's load of a random `u32`.
const AD_RANDOM: u32 = 0xffff_f000 + 56;

/// The loss threshold out of 65536 for a percentage in 0..=100.
pub fn threshold(pct: f64) -> i32 {
    (pct.clamp(0.0, 100.0) / 100.0 * 65536.0).round() as i32
}

fn program(pct: f64) -> [SockFilter; 5] {
    [
        // A = random u32                    (BPF_LD | BPF_W | BPF_ABS, ancillary)
        stmt(0x20, AD_RANDOM),
        // A &= 0xffff                       (BPF_ALU | BPF_AND | BPF_K)
        stmt(0x54, 0xffff),
        // if A >= threshold goto pass       (BPF_JMP | BPF_JGE | BPF_K)
        jump(0x35, threshold(pct) as u32, 1, 0),
        // return TC_ACT_SHOT                (BPF_RET | BPF_K)
        stmt(0x06, TC_ACT_SHOT as u32),
        // pass: return TC_ACT_UNSPEC
        stmt(0x06, TC_ACT_UNSPEC as u32),
    ]
}

/// The loss classifier for `pct` percent loss.
pub fn load(pct: f64) -> Program {
    Program::Classic(program(pct).to_vec())
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
