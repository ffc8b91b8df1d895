//! Authentication and anti-replay.
//!
//! Read [`seal`] and [`open`] first. Every message ends with an HMAC-SHA256 tag over its header
//! and body, made with the cluster key and checked in constant time. [`ReplayWindow`] accepts a
//! (sender, boot epoch, sequence) only if it is newer than anything accepted before: a higher
//! boot epoch (a reboot) resets the sequence, a lower one is stale.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::policy::NodeId;
use crate::wire::{self, Message, Packet};

type HmacSha256 = Hmac<Sha256>;

/// Why a received datagram was dropped. Each is counted, none is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Not a well-formed message (truncated, bad magic, unknown type, bad body...).
    Malformed,
    /// A version we do not speak.
    BadVersion,
    /// For another cluster.
    WrongCluster,
    /// The tag does not verify with our key.
    BadTag,
    /// Not newer than what we accepted from that sender (replayed or stale).
    Replay,
    /// Our own message, looped back.
    Own,
}

impl DropReason {
    /// A short name for counters.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadVersion => "bad_version",
            Self::WrongCluster => "wrong_cluster",
            Self::BadTag => "bad_tag",
            Self::Replay => "replay",
            Self::Own => "own",
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Encodes a message and appends its tag.
pub fn seal(msg: &Message, key: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; msg.buffer_len()];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    msg.emit(&mut p);
    let mut m = mac(key);
    m.update(p.signed());
    let tag = m.finalize().into_bytes();
    p.tag_mut().copy_from_slice(&tag);
    buf
}

/// Checks a datagram's shape, cluster and tag, and parses it. The replay check is separate
/// ([`ReplayWindow`]), because it needs the receiver's state.
pub fn open(data: &[u8], key: &[u8], cluster: u32) -> Result<Message, DropReason> {
    let p = Packet::new_checked(data).map_err(|_| DropReason::Malformed)?;
    if p.magic() != wire::MAGIC {
        return Err(DropReason::Malformed);
    }
    if p.version() != wire::VERSION {
        return Err(DropReason::BadVersion);
    }
    if p.cluster() != cluster {
        return Err(DropReason::WrongCluster);
    }
    let mut m = mac(key);
    m.update(p.signed());
    // Constant-time comparison.
    m.verify_slice(p.tag()).map_err(|_| DropReason::BadTag)?;
    Message::parse(&p).map_err(|e| match e {
        wire::Error::BadVersion => DropReason::BadVersion,
        _ => DropReason::Malformed,
    })
}

/// The newest (boot epoch, sequence) accepted from each sender.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    latest: std::collections::HashMap<NodeId, (u32, u64)>,
}

impl ReplayWindow {
    /// Accepts and records `(epoch, seq)` from `sender` if it is newer than anything before.
    pub fn accept(&mut self, sender: NodeId, epoch: u32, seq: u64) -> Result<(), DropReason> {
        match self.latest.get(&sender) {
            Some(&(e, s)) if (epoch, seq) <= (e, s) => Err(DropReason::Replay),
            _ => {
                self.latest.insert(sender, (epoch, seq));
                Ok(())
            }
        }
    }

    /// The newest boot epoch seen from a sender.
    pub fn epoch_of(&self, sender: NodeId) -> Option<u32> {
        self.latest.get(&sender).map(|(e, _)| *e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        let n = NodeId(1);
        assert!(w.accept(n, 1, 1).is_ok());
        assert!(w.accept(n, 1, 2).is_ok());
        assert_eq!(w.accept(n, 1, 2), Err(DropReason::Replay));
        assert_eq!(w.accept(n, 1, 1), Err(DropReason::Replay));
        // A reboot: higher epoch, sequence starts again.
        assert!(w.accept(n, 2, 1).is_ok());
        // The old epoch is stale now.
        assert_eq!(w.accept(n, 1, 99), Err(DropReason::Replay));
        // Other senders are independent.
        assert!(w.accept(NodeId(2), 1, 1).is_ok());
    }
}
