//! The flow model's tests: frames built field by field ([`frames`]), every TCP state transition
//! and reset ([`states`]), snapshots and CONN-STATE ([`snapshots`]), and captures of real
//! kernels ([`golden`]).

mod frames;
mod golden;
mod snapshots;
mod states;
