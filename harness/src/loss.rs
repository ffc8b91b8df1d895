//! Random frame loss on a link, without netem.
//!
//! netem and the `gact` random action are not built into this kernel, but `cls_bpf` is. So loss
//! is a seven-instruction eBPF classifier in direct-action mode, attached to both hooks of the
//! switch-side port: it draws `bpf_get_prandom_u32()` and returns `TC_ACT_SHOT` for the chosen
//! fraction of frames and `TC_ACT_UNSPEC` (continue to the next filter, such as a mirror)
//! otherwise.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_FUNC_GET_PRANDOM_U32: i32 = 7;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_UNSPEC: i32 = -1;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: 0,
        off,
        imm,
    }
}

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
    let prog = program(pct);
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, log_level,
    // log_size, log_buf, kern_version, ... (zero beyond what we set).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(prog.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // SAFETY: bpf(2) reads `attr` and the instruction array and license it points to, all of
    // which outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_ptr(),
            attr.len() as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
