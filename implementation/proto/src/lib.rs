//! holdfast-proto: Holdfast's cluster control protocol, without IO.
//!
//! Start with [`node::Node`], the sans-IO state machine (in the style of quinn-proto): it takes
//! `now` and inputs, and returns [`node::Action`]s. [`wire`] holds the message formats (in the
//! style of smoltcp), [`auth`] the HMAC-SHA256 tags and the replay window, [`policy`] the
//! ownership information a node announces. `PROTOCOL.md` documents every byte.
//!
//! This crate has no sockets, no clock and no async runtime: `clippy.toml` forbids
//! `Instant::now` and `SystemTime::now`, and CI checks that `cargo tree` shows no tokio, mio,
//! libc, nix or socket2.
#![warn(missing_docs)]

pub mod app;
pub mod auth;
pub mod flow;
pub mod handback;
pub mod node;
pub mod policy;
pub mod share;
pub mod sync;
pub mod time;
pub mod wire;

pub use node::{Action, Command, Config, Dest, Event, Node};
pub use policy::{ArpPolicy, Assignment, Epoch, FailbackMode, FailoverPolicy, NodeId, Ownership};
pub use time::Time;
