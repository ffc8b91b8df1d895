//! Authentication and anti-replay.
//!
//! Read [`seal`] and [`open`] first. Every message ends with an HMAC-SHA256 tag over its header
//! and body, made with the cluster key and checked in constant time. [`ReplayWindow`] accepts a
//! (sender, boot epoch, sequence) only if it is newer than anything accepted before: a higher
//! boot epoch (a reboot) resets the sequence, a lower one is stale. Messages whose order does
//! not matter (the parts of a CONN-STATE, FETCHED pieces) may also arrive up to
//! [`REORDER_WINDOW`] behind the newest, each once.

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

/// How far behind the newest sequence number an order-free message may arrive.
pub const REORDER_WINDOW: u64 = 128;

/// The newest (boot epoch, sequence) accepted from each sender, and which of the
/// [`REORDER_WINDOW`] sequence numbers below it were accepted too.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    latest: std::collections::HashMap<NodeId, (u32, u64, u128)>,
}

impl ReplayWindow {
    /// Accepts and records `(epoch, seq)` from `sender` if it is newer than anything before,
    /// or, when `order_free`, if it is of the same boot epoch, at most [`REORDER_WINDOW`]
    /// behind the newest and not accepted before (a datagram overtaken by later ones, as
    /// the parts of one large CONN-STATE may be). Anything else is a replay. `Ok(true)`: the
    /// newest from that sender; `Ok(false)`: an overtaken order-free one.
    pub fn accept(
        &mut self,
        sender: NodeId,
        epoch: u32,
        seq: u64,
        order_free: bool,
    ) -> Result<bool, DropReason> {
        match self.latest.get_mut(&sender) {
            Some((e, s, seen)) if (epoch, seq) <= (*e, *s) => {
                // Bit k: sequence number s - 1 - k was accepted.
                let behind = s.saturating_sub(seq);
                if !order_free || epoch != *e || behind == 0 || behind > REORDER_WINDOW {
                    return Err(DropReason::Replay);
                }
                let bit = 1u128 << (behind - 1);
                if *seen & bit != 0 {
                    return Err(DropReason::Replay);
                }
                *seen |= bit;
                Ok(false)
            }
            Some((e, s, seen)) if epoch == *e => {
                let ahead = seq - *s;
                // The old newest becomes bit ahead - 1.
                *seen = if ahead > REORDER_WINDOW {
                    0
                } else {
                    seen.checked_shl(ahead as u32).unwrap_or(0) | (1u128 << (ahead - 1))
                };
                *s = seq;
                Ok(true)
            }
            _ => {
                self.latest.insert(sender, (epoch, seq, 0));
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        let n = NodeId(1);
        for order_free in [false, true] {
            let mut w = ReplayWindow::default();
            assert!(w.accept(n, 1, 1, order_free).is_ok());
            assert!(w.accept(n, 1, 2, order_free).is_ok());
            assert_eq!(w.accept(n, 1, 2, order_free), Err(DropReason::Replay));
            assert_eq!(w.accept(n, 1, 1, order_free), Err(DropReason::Replay));
        }
        assert!(w.accept(n, 1, 1, false).is_ok());
        assert!(w.accept(n, 1, 2, false).is_ok());
        // A reboot: higher epoch, sequence starts again.
        assert!(w.accept(n, 2, 1, false).is_ok());
        // The old epoch is stale now, order-free or not.
        assert_eq!(w.accept(n, 1, 99, false), Err(DropReason::Replay));
        assert_eq!(w.accept(n, 1, 99, true), Err(DropReason::Replay));
        // Other senders are independent.
        assert!(w.accept(NodeId(2), 1, 1, false).is_ok());
    }

    #[test]
    fn order_free_messages_may_be_overtaken_but_come_once() {
        let mut w = ReplayWindow::default();
        let n = NodeId(1);
        assert!(w.accept(n, 1, 10, false).is_ok());
        assert!(w.accept(n, 1, 15, false).is_ok());
        // 11..14 overtaken: an ordered one is stale, order-free ones each come once.
        assert_eq!(w.accept(n, 1, 12, false), Err(DropReason::Replay));
        assert_eq!(w.accept(n, 1, 12, true), Ok(false));
        assert_eq!(w.accept(n, 1, 12, true), Err(DropReason::Replay));
        assert_eq!(
            w.accept(n, 1, 10, true),
            Err(DropReason::Replay),
            "accepted in order"
        );
        assert!(w.accept(n, 1, 11, true).is_ok());
        // Newer ones keep the record of older ones.
        assert_eq!(w.accept(n, 1, 20, true), Ok(true));
        assert_eq!(w.accept(n, 1, 12, true), Err(DropReason::Replay));
        assert_eq!(w.accept(n, 1, 15, true), Err(DropReason::Replay));
        assert!(w.accept(n, 1, 14, true).is_ok());
        // Exactly the window ahead, then beyond it: stale.
        assert_eq!(w.accept(n, 1, 21 + REORDER_WINDOW, false), Ok(true));
        assert_eq!(w.accept(n, 1, 21, true), Ok(false));
        assert_eq!(w.accept(n, 1, 20, true), Err(DropReason::Replay));
        assert!(w.accept(n, 1, 20 + REORDER_WINDOW + 5, true).is_ok());
        assert_eq!(w.accept(n, 1, 16, true), Err(DropReason::Replay));
        let last = 20 + REORDER_WINDOW + 5;
        assert!(w.accept(n, 1, last - REORDER_WINDOW, true).is_ok());
        assert_eq!(
            w.accept(n, 1, last - REORDER_WINDOW - 1, true),
            Err(DropReason::Replay)
        );
    }
}
