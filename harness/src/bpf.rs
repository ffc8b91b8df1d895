//! Hand-assembled classifiers for the switch ports (`cls_bpf`, direct action): random loss
//! ([`crate::loss`]) and partitions ([`crate::partition`]).
//!
//! Two kinds: eBPF, loaded with the `bpf(2)` syscall (which needs `CAP_BPF` in the initial user
//! namespace, so root), and classic BPF, which `cls_bpf` takes inside the netlink request itself
//! and which therefore works in a rootless sandbox too ([`crate::rootless`]). The programs are a
//! few instructions each, written out with their meaning beside them, so no compiler, object
//! file or BPF library is needed.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// Drop the frame.
pub const TC_ACT_SHOT: i32 = 2;
/// No verdict: the next filter (a mirror, say) decides.
pub const TC_ACT_UNSPEC: i32 = -1;

/// A classifier to attach to a port.
#[derive(Debug)]
pub enum Program {
    /// An eBPF program loaded with `bpf(2)` (its fd).
    Loaded(OwnedFd),
    /// A classic BPF program, handed to `cls_bpf` in the request (return values are the same
    /// `TC_ACT_*` verdicts as eBPF's in direct-action mode).
    Classic(Vec<SockFilter>),
}

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

/// A classic statement.
pub const fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// A classic conditional jump.
pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// The bytes of a classic program as `TCA_BPF_OPS` carries them.
pub fn classic_bytes(p: &[SockFilter]) -> Vec<u8> {
    p.iter()
        .flat_map(|f| {
            let mut b = [0u8; 8];
            b[0..2].copy_from_slice(&f.code.to_ne_bytes());
            b[2] = f.jt;
            b[3] = f.jf;
            b[4..8].copy_from_slice(&f.k.to_ne_bytes());
            b
        })
        .collect()
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    /// The jump offset (instructions after the next one).
    pub fn off(&self) -> i16 {
        self.off
    }
}

/// An instruction on r0 only.
pub const fn insn(code: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: 0,
        off,
        imm,
    }
}

/// An instruction with explicit registers (`dst`, `src`).
pub const fn insn_regs(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// Loads a classifier and returns its program fd (the kernel's verifier log is not asked for:
/// these programs are tiny and tested).
pub fn load(prog: &[Insn]) -> io::Result<OwnedFd> {
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
