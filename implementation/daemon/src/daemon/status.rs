//! What `holdfastd status` prints: members, groups, message and connection counters.

use std::collections::BTreeMap;

use holdfast_proto::node::Node;
use holdfast_proto::time::Time;
use serde::Serialize;

/// The status socket's file name in the run directory.
pub const STATUS_SOCKET: &str = "holdfastd.sock";

/// What `holdfastd status` prints.
#[derive(Debug, Serialize)]
pub struct Status {
    /// This node's name.
    pub node: String,
    /// Its id.
    pub id: u32,
    /// Its boot epoch.
    pub boot_epoch: u32,
    /// Whether it may assume.
    pub eligible: bool,
    /// Peers.
    pub members: Vec<MemberStatus>,
    /// Groups: who holds whose addresses, at which epoch.
    pub groups: Vec<GroupStatus>,
    /// Message counters.
    pub counters: Counters,
    /// Connection takeover counters.
    pub connections: ConnCounters,
}

/// Connection takeover counters in the status.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ConnCounters {
    /// Connections tracked by the snooper now.
    pub tracked: usize,
    /// Connections re-created with TCP_REPAIR.
    pub assumed: u64,
    /// Connections a takeover found this node already serving (draining after a
    /// `new-connections` failback): kept as they are, not re-created.
    pub already_here: u64,
    /// Connections that could not be made whole (reported, and left to reset).
    pub unrestorable: u64,
    /// The same, by reason: `capture_hole`, `unseen_handshake`, `replica_behind`,
    /// `replica_diverged`, `never_seen`, `restore_failed`.
    pub lost: BTreeMap<String, u64>,
    /// Tracked connections by state (`ESTABLISHED`, `CLOSE_WAIT`, `FIN_WAIT2`, ...; `UNKNOWN`:
    /// seen only mid-stream).
    pub states: BTreeMap<String, usize>,
    /// Connections that ended while tracked, by how (`TIME_WAIT`: both FINs acknowledged;
    /// `RESET`).
    pub ended: BTreeMap<String, u64>,
    /// Handshakes put back into this node's stack at a takeover: those the old owner never
    /// answered, and those that arrived while this node took over.
    pub replayed_syns: u64,
    /// Segments of taken-over connections that arrived after the snapshot and before the
    /// socket was live (the kernel dropped them), put back once it was.
    pub replayed_segments: u64,
    /// Packets that arrived during a takeover for connections not re-created here (left to
    /// the client's retransmission, or to the node that serves them).
    pub replay_skipped: u64,
    /// Packets handed to the replay thread and not put back yet.
    pub replay_pending: u64,
    /// Packets the kernel refused to take back (each logged).
    pub replay_failed: u64,
    /// Packets the snooper could not hold during a takeover (its hold was full).
    pub held_dropped: u64,
    /// Holes open now in the snooped copy (the holder acknowledged client bytes this node
    /// never saw), being fetched from the holder.
    pub holes_open: usize,
    /// Holes opened so far.
    pub holes_opened: u64,
    /// Holes filled (FETCHED, or a retransmission seen later).
    pub holes_repaired: u64,
    /// Holes that cost their connection (still open at a takeover, or the holder no longer
    /// had the bytes).
    pub holes_lost: u64,
    /// FETCH requests sent to holders.
    pub fetches_sent: u64,
    /// FETCH requests this node answered with bytes (as a holder).
    pub fetches_answered: u64,
    /// FETCH requests this node could not answer: the bytes were no longer kept.
    pub fetches_gone: u64,
    /// FETCH requests for bytes this node's own copy had not reached yet (asked again).
    pub fetches_not_yet: u64,
    /// Frames the snooper's socket dropped.
    pub snoop_drops: u64,
    /// Control datagrams the kernel dropped (the socket's buffer was full).
    pub udp_drops: u64,
    /// Spare heartbeats the beacon sent while the protocol loop was held (each stood in for a
    /// heartbeat the loop was late with).
    pub spares_sent: u64,
    /// Spares skipped because a later one was due already (the beacon was late itself).
    pub spares_skipped: u64,
    /// Spares the kernel refused to send (logged each).
    pub spares_failed: u64,
    /// CONN-STATEs sent to peers that came up (late backups).
    pub synced: u64,
    /// CONN-STATEs sent in parts of which some never arrived here (or that were too large or
    /// superseded), by reason: those connections cannot be taken over by this node.
    pub sync_incomplete: BTreeMap<String, u64>,
    /// Connections this node should have forwarded to another node but could not (logged
    /// each): the forwarding rules failed, or the node's address or MAC was unknown.
    pub unforwarded: u64,
    /// `snoop = "forward"`: (address, backup) pairs whose frames this node copies now.
    pub copied_to: usize,
    /// `snoop = "forward"`: times the kernel refused the copying rules (logged each).
    pub tee_failures: u64,
    /// Times one piece of the protocol loop's work held it longer than 5 ms (heartbeats wait
    /// meanwhile), by what held it (logged each). Late heartbeats without such a count were
    /// the machine's: the loop was runnable but not run.
    pub loop_held: BTreeMap<String, u64>,
    /// CONN-STATEs received and adopted.
    pub adopted: u64,
    /// The largest state adopted: its unacknowledged output and checkpoint, in bytes.
    pub adopted_bytes_max: u64,
    /// Connections this node forwards in the kernel to the node serving them.
    pub forwarded: usize,
    /// Connections served here while another node holds their address (draining after a
    /// `new-connections` failback, or a `spread` share).
    pub served_without_address: usize,
    /// The phases of the last takeover.
    pub last_takeover: Option<TakeoverTiming>,
    /// The phases of the last takeover of each group, by owner id.
    pub takeovers: BTreeMap<u32, TakeoverTiming>,
}

/// How long each phase of a takeover took, in microseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TakeoverTiming {
    /// Connections re-created.
    pub connections: usize,
    /// Announcing the address early and waiting for the old owner to go quiet.
    pub quiesce_us: u64,
    /// Taking the snapshots from the flow table.
    pub snapshot_us: u64,
    /// The TCP_REPAIR syscalls for every connection (the part a bare C loop does).
    pub restore_us: u64,
    /// From the snapshots to every connection live, address and announcement included.
    pub to_live_us: u64,
}

/// One peer in the status.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: u32,
    /// Boot epoch.
    pub boot_epoch: u32,
    /// Whether it is alive: heard within its detection window, by this node or by a live peer
    /// that reported hearing it.
    pub alive: bool,
    /// Whether it says it may assume groups (it has heard its peers, or its boot wait passed).
    pub eligible: bool,
    /// Milliseconds since this node last heard it.
    pub last_heard_ms_ago: f64,
    /// This node cannot hear it but another live peer can (a partition between the two): it
    /// is kept alive on that peer's word, and nothing of it is assumed.
    pub cut_off: bool,
    /// Its application, from its ANNOUNCE.
    pub application: Option<String>,
}

/// One group in the status.
#[derive(Debug, Serialize)]
pub struct GroupStatus {
    /// The owner.
    pub owner: u32,
    /// The epoch counter.
    pub epoch: u32,
    /// The holder.
    pub holder: u32,
    /// Whether this node holds it.
    pub held_here: bool,
    /// The owner's addresses.
    pub addresses: Vec<String>,
}

/// Counters in the status.
#[derive(Debug, Serialize)]
pub struct Counters {
    /// Sent, by message type.
    pub sent: BTreeMap<String, u64>,
    /// Accepted, by message type.
    pub received: BTreeMap<String, u64>,
    /// Dropped, by reason (`bad_tag`, `replay`, `malformed`, ...).
    pub dropped: BTreeMap<String, u64>,
}

pub(super) fn status(name: &str, node: &Node, now: Time, conns: ConnCounters) -> Status {
    let s = node.stats();
    Status {
        node: name.to_owned(),
        id: node.id().0,
        boot_epoch: node.config().boot_epoch,
        eligible: node.eligible(),
        members: node
            .members()
            .iter()
            .map(|(id, m)| MemberStatus {
                id: id.0,
                boot_epoch: m.boot_epoch,
                alive: m.alive,
                eligible: m.eligible,
                last_heard_ms_ago: (now - m.last_heard).as_secs_f64() * 1000.0,
                cut_off: m.cut_off,
                application: m.ownership.as_ref().map(|o| o.application.clone()),
            })
            .collect(),
        groups: node
            .groups()
            .iter()
            .map(|(o, g)| GroupStatus {
                owner: o.0,
                epoch: g.epoch.counter,
                holder: g.epoch.holder.0,
                held_here: node.held().contains_key(o),
                addresses: node
                    .ownership_of(*o)
                    .map(|r| {
                        r.addresses
                            .iter()
                            .map(|a| format!("{}/{}", a.addr, a.prefix))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect(),
        counters: Counters {
            sent: s
                .sent
                .iter()
                .map(|(k, v)| (k.name().to_owned(), *v))
                .collect(),
            received: s
                .received
                .iter()
                .map(|(k, v)| (k.name().to_owned(), *v))
                .collect(),
            dropped: s
                .dropped
                .iter()
                .map(|(k, v)| (k.name().to_owned(), *v))
                .collect(),
        },
        connections: conns,
    }
}
