//! Ownership information and fail-over policy: what a node announces about itself.
//!
//! Read [`Ownership`] first: it holds the eight fields of the claims' ownership information
//! (claims 3, 13, 18): fail-over policy, owned IP addresses, port range, application, ARP
//! ownership policy, protocol, the MACs tied to the addresses, and the cluster node ID.

use std::fmt;
use std::net::IpAddr;

/// A cluster node ID (claim 3: "a cluster node ID"). Zero is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A takeover epoch: who holds a group, and how many times it has changed hands.
///
/// Epochs order by `(counter, holder)`: every change of holder increments the counter, and
/// including the holder makes two concurrent takeovers (in a partition) distinct, so that at
/// most one node holds a group at any epoch and everyone agrees which epoch is higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Epoch {
    /// Changes of holder so far.
    pub counter: u32,
    /// The node that holds the group at this epoch.
    pub holder: NodeId,
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.counter, self.holder)
    }
}

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $n:expr => $s:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[repr(u8)]
        pub enum $name {
            $($(#[$vm])* $v = $n,)*
        }
        impl $name {
            /// From the wire value.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v {
                    $($n => Some(Self::$v),)*
                    _ => None,
                }
            }
            /// The configuration name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$v => $s,)*
                }
            }
            /// From the configuration name.
            pub fn from_name(s: &str) -> Option<Self> {
                match s {
                    $($s => Some(Self::$v),)*
                    _ => None,
                }
            }
        }
    };
}

wire_enum! {
    /// What happens when an owner returns (claims 5, 14, 19).
    FailbackMode {
        /// The assumer keeps everything; the owner becomes a backup.
        #[default]
        None = 0 => "none",
        /// The owner takes its addresses back; existing connections drain on the assumer.
        NewConnections = 1 => "new-connections",
        /// Existing connections move back to the owner too.
        Migrate = 2 => "migrate",
    }
}

wire_enum! {
    /// How a backup learns the owner's connections (claims 8, 11).
    SnoopMode {
        /// No snooping: only addresses move.
        None = 0 => "none",
        /// The owner's switch port is mirrored to the backup.
        #[default]
        Mirror = 1 => "mirror",
        /// The holder copies its service frames to the backups itself (no switch mirror).
        Forward = 2 => "forward",
    }
}

wire_enum! {
    /// How a failed owner's connections are split among survivors.
    Assignment {
        /// The highest-ranked surviving backup takes everything.
        #[default]
        Ordered = 0 => "ordered",
        /// Survivors split the connections by hash; the highest-ranked takes the addresses.
        Spread = 1 => "spread",
    }
}

wire_enum! {
    /// How an address's new holder tells the network (claim 3: "ARP ownership policy").
    ArpPolicy {
        /// Gratuitous ARP / unsolicited neighbour advertisement from the holder's own MAC.
        #[default]
        Garp = 1 => "garp",
        /// A virtual MAC moves with the address (VRRP-style).
        Vmac = 2 => "vmac",
        /// Nothing is announced.
        None = 0 => "none",
    }
}

/// The fail-over policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Backups in order of preference.
    pub backups: Vec<NodeId>,
    /// What happens when the owner returns.
    pub failback: FailbackMode,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_ms: u32,
    /// Heartbeats missed before the node is declared failed.
    pub miss_count: u8,
    /// How backups learn connections.
    pub snoop: SnoopMode,
    /// How connections are split among survivors.
    pub assignment: Assignment,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            backups: Vec::new(),
            failback: FailbackMode::None,
            heartbeat_ms: 100,
            miss_count: 3,
            snoop: SnoopMode::Mirror,
            assignment: Assignment::Ordered,
        }
    }
}

/// An owned address and the MAC tied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnedAddress {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The MAC that answers for it (the node's own, or the virtual one under `vmac`).
    pub mac: [u8; 6],
}

/// A node's ownership information, as broadcast in ANNOUNCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The cluster node ID.
    pub node_id: NodeId,
    /// The fail-over policy.
    pub policy: FailoverPolicy,
    /// Owned addresses with their MACs.
    pub addresses: Vec<OwnedAddress>,
    /// The range of service ports, inclusive.
    pub ports: (u16, u16),
    /// The application running on the node.
    pub application: String,
    /// The ARP ownership policy.
    pub arp: ArpPolicy,
    /// The current protocol (IP protocol number; 6 is TCP, claim 7).
    pub protocol: u8,
}

impl Ownership {
    /// A minimal record for a node: no addresses, the default policy, TCP.
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            policy: FailoverPolicy::default(),
            addresses: Vec::new(),
            ports: (0, 0),
            application: String::new(),
            arp: ArpPolicy::Garp,
            protocol: 6,
        }
    }
}
