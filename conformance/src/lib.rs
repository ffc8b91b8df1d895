//! holdfast-conformance: one case per claimed behaviour, judged only on what can be observed:
//! the packets in the pcaps, the clients' results and exit codes.
//!
//! Start with [`case::Case::load`], [`run::run_case`] and [`expect::Ctx::check`]. [`decode`] is
//! the suite's own packet decoder (including the control protocol, from PROTOCOL.md), so it can
//! judge any implementation, keepalived included: the implementation (`HOLDFAST_IMPL`) is an
//! adapter in `adapters/IMP/` that renders each topology's `[cluster]`, and
//! `adapters/IMP/expected.toml` says which cases it is expected to fail.
#![warn(missing_docs)]

pub mod case;
pub mod decode;
pub mod expect;
pub mod matrix;
pub mod report;
pub mod run;
pub mod validate;
