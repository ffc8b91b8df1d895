//! The faults a running cluster can be given, and how a fault is named on the command line and
//! in scenarios (`Fault::parse`).

use serde::{Deserialize, Serialize};

/// A fault (or its repair) on a running cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// Pull the plug: links down, every process SIGKILLed, the namespace destroyed.
    PowerOff {
        /// The node, by its name in the topology.
        node: String,
    },
    /// Re-create a powered-off node from the topology and start its restartable processes.
    PowerOn {
        /// The node, by its name in the topology.
        node: String,
    },
    /// Take the node's links down; its processes keep running.
    Isolate {
        /// The node, by its name in the topology.
        node: String,
    },
    /// Bring an isolated node's links up again.
    Heal {
        /// The node, by its name in the topology.
        node: String,
    },
    /// SIGSTOP every process of the node.
    Freeze {
        /// The node, by its name in the topology.
        node: String,
    },
    /// SIGCONT every process of the node.
    Thaw {
        /// The node, by its name in the topology.
        node: String,
    },
    /// SIGKILL one named process of the node; its kernel stays up.
    Crash {
        /// The node, by its name in the topology.
        node: String,
        /// The process name from the topology.
        process: String,
    },
    /// Drop a percentage of frames in both directions on a node's switch ports
    /// (`node`, or `switch:node` for one port); 0 removes the loss.
    Loss {
        /// `node` or `switch:node`.
        node: String,
        /// Percentage, 0 to 100.
        pct: f64,
    },
    /// Cut the switch between two groups of nodes: frames from one never reach the other (both
    /// ways, or only from `from` to `to`), while each keeps reaching every other node.
    Partition {
        /// The first node of `from`, for the event log and `restore`.
        node: String,
        /// One side (the senders that are cut off, if `one_way`).
        from: Vec<String>,
        /// The other side.
        to: Vec<String>,
        /// Only frames from `from` to `to` are dropped.
        #[serde(default)]
        one_way: bool,
    },
    /// Impair a node's switch ports (`node`, or `switch:node` for one port): delay, jitter,
    /// loss, duplication, reordering, a rate limit, both ways (`crate::impair`); an empty
    /// impairment removes it.
    Impair {
        /// `node` or `switch:node`.
        node: String,
        /// What happens to the frames.
        impairment: crate::impair::Impairment,
    },
    /// Remove every partition.
    HealPartition {
        /// The node named when the partition was made (for the event log).
        node: String,
    },
}

impl Fault {
    /// The node the fault is about.
    pub fn node(&self) -> &str {
        match self {
            Self::PowerOff { node }
            | Self::PowerOn { node }
            | Self::Isolate { node }
            | Self::Heal { node }
            | Self::Freeze { node }
            | Self::Thaw { node }
            | Self::Crash { node, .. }
            | Self::Loss { node, .. }
            | Self::Partition { node, .. }
            | Self::Impair { node, .. }
            | Self::HealPartition { node } => node,
        }
    }

    /// The kebab-case name of the fault kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PowerOff { .. } => "power-off",
            Self::PowerOn { .. } => "power-on",
            Self::Isolate { .. } => "isolate",
            Self::Heal { .. } => "heal",
            Self::Freeze { .. } => "freeze",
            Self::Thaw { .. } => "thaw",
            Self::Crash { .. } => "crash",
            Self::Loss { .. } => "loss",
            Self::Partition { one_way: false, .. } => "partition",
            Self::Partition { one_way: true, .. } => "partition-one-way",
            Self::HealPartition { .. } => "heal-partition",
            Self::Impair { .. } => "impair",
        }
    }

    /// The fault that undoes this one, if there is one.
    pub fn restore(&self) -> Option<Self> {
        let node = self.node().to_owned();
        Some(match self {
            Self::PowerOff { .. } => Self::PowerOn { node },
            Self::Isolate { .. } => Self::Heal { node },
            Self::Freeze { .. } => Self::Thaw { node },
            Self::Loss { .. } => Self::Loss { node, pct: 0.0 },
            Self::Partition { .. } => Self::HealPartition { node },
            Self::Impair { .. } => Self::Impair {
                node,
                impairment: Default::default(),
            },
            _ => return None,
        })
    }

    /// Builds a fault from a kind name, a node and an optional argument (the process for
    /// `crash`, the percentage for `loss`; for `partition` and `partition-one-way`, `node` and
    /// `arg` are the two sides, comma-separated node lists).
    pub fn parse(kind: &str, node: &str, arg: Option<&str>) -> Result<Self, String> {
        if let Some(one_way) = match kind {
            "partition" => Some(false),
            "partition-one-way" => Some(true),
            _ => None,
        } {
            let side = |s: &str| -> Vec<String> {
                s.split(',')
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            let from = side(node);
            let to = side(arg.ok_or(format!("{kind} needs two sides: A,B C,D"))?);
            if from.is_empty() || to.is_empty() {
                return Err(format!("{kind} needs two non-empty sides: A,B C,D"));
            }
            if let Some(n) = from.iter().find(|n| to.contains(n)) {
                return Err(format!("{kind}: node {n:?} is on both sides"));
            }
            return Ok(Self::Partition {
                node: from[0].clone(),
                from,
                to,
                one_way,
            });
        }
        let node = node.to_owned();
        Ok(match kind {
            "power-off" => Self::PowerOff { node },
            "power-on" => Self::PowerOn { node },
            "isolate" => Self::Isolate { node },
            "heal" => Self::Heal { node },
            "freeze" => Self::Freeze { node },
            "thaw" => Self::Thaw { node },
            "heal-partition" => Self::HealPartition { node },
            "impair" => Self::Impair {
                node,
                impairment: crate::impair::Impairment::parse(arg.ok_or(
                    "impair needs a specification such as \"delay=20ms rate=100mbit\" (or none)",
                )?)?,
            },
            "crash" => Self::Crash {
                node,
                process: arg.ok_or("crash needs the process name")?.to_owned(),
            },
            "loss" => {
                let a = arg.ok_or("loss needs a percentage")?;
                let pct: f64 = a
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("loss: {a:?} is not a percentage"))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(format!("loss: {pct} is not within 0..=100"));
                }
                Self::Loss { node, pct }
            }
            _ => {
                return Err(format!(
                    "unknown fault {kind:?}; known: power-off power-on isolate heal freeze thaw crash loss partition partition-one-way heal-partition impair"
                ));
            }
        })
    }
}
