//! Scenarios: a small step language that drives a cluster through faults and client workloads.
//!
//! Read [`Scenario::parse`] and [`run`] first. A scenario file is a list of `[[step]]` tables,
//! each with a `do` key:
//!
//! | `do`            | fields                                                      |
//! |-----------------|-------------------------------------------------------------|
//! | `wait`          | `for = "300ms"`                                             |
//! | `fault`         | `kind`, `node`, and `process` (crash) or `pct` (loss)       |
//! | `restore`       | `node`: undo the node's last fault (power-on, heal, thaw)   |
//! | `client-start`  | `id`, `node`, `client = { workload, target, ... }`          |
//! | `client-wait`   | `id`                                                        |
//! | `client-verify` | `id`, `expect = "intact"` (default) or `"broken"`           |
//! | `wait-connect`  | `node`, `target`, `timeout` (default `"5s"`): until a TCP   |
//! |                 | connection from `node` to `target` is accepted              |
//! | `verify-takeover` | `id`, `from`, `to`: in the capture, client `id`'s         |
//! |                 | connections were served by `from` until its last fault and  |
//! |                 | by `to` after it, in one sequence space, without a reset    |
//! | `repeat`        | `count`, and nested `[[step.step]]` tables                  |
//!
//! String values in `client` may use the topology's placeholders (`"{a.ip}:7"`). Problems are
//! reported as `FILE:LINE: field: what is wrong`, like topology errors.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::ClientSpec;
use crate::cluster::Fault;

/// What a client's results must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Every byte verified; no reset, EOF or error.
    Intact,
    /// At least one connection was not intact (for baselines that are expected to break).
    Broken,
    /// Served by one node before a fault and by another after it, in one sequence space
    /// (`verify-takeover`, judged in the capture).
    TakenOver,
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Sleep.
    Wait(Duration),
    /// Apply a fault.
    Fault(Fault),
    /// Undo the last fault applied to a node.
    Restore(String),
    /// Start a client workload on a node.
    ClientStart {
        /// The client's id in this scenario.
        id: String,
        /// The node it runs on.
        node: String,
        /// The workload.
        spec: ClientSpec,
    },
    /// Wait for a client to finish.
    ClientWait(String),
    /// Wait for a client and check its results.
    ClientVerify {
        /// The client's id.
        id: String,
        /// What is expected.
        expect: Expect,
    },
    /// Wait until `node` can open a TCP connection to `target` (the service is served).
    WaitConnect {
        /// The node that connects.
        node: String,
        /// The service.
        target: SocketAddr,
        /// How long to keep trying.
        timeout: Duration,
    },
    /// Check in the capture that client `id`'s connections moved from `from` to `to`.
    VerifyTakeover {
        /// The client's id.
        id: String,
        /// The node that served them until its last fault.
        from: String,
        /// The node that served them after it.
        to: String,
    },
    /// Run steps several times.
    Repeat {
        /// How many times.
        count: u32,
        /// The steps.
        steps: Vec<Self>,
    },
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The steps, in order.
    pub steps: Vec<Step>,
}

mod exec;
mod parse;

pub use exec::{PendingTakeover, ScenarioReport, Verdict, run};
pub use parse::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
    }
}
