//! HANDBACK with any number of draining connections: the set is split over parts of at most
//! [`DRAIN_MAX`] connections each (one datagram, IPv6 included), and [`HandbackParts`] puts a
//! set back together on the owner before anything acts on it: the owner must forward every
//! draining connection before it claims the address, or the ones it missed are reset.

use std::collections::BTreeMap;

use crate::node::DRAIN_MAX;
use crate::policy::{Epoch, NodeId};
use crate::wire::Handback;

/// `h` (its whole draining set) as the parts that go on the wire.
pub fn split(h: &Handback) -> Vec<Handback> {
    let chunks: Vec<_> = h.draining.chunks(DRAIN_MAX).collect();
    if chunks.len() <= 1 {
        return vec![Handback {
            part: 0,
            parts: 1,
            ..h.clone()
        }];
    }
    // More than 65,535 parts (98 million connections) cannot be said; they are not.
    let parts = chunks.len().min(u16::MAX as usize) as u16;
    chunks
        .into_iter()
        .take(parts as usize)
        .enumerate()
        .map(|(i, c)| Handback {
            part: i as u16,
            parts,
            draining: c.to_vec(),
            ..h.clone()
        })
        .collect()
}

#[derive(Debug)]
struct Partial {
    at: (Epoch, u32),
    parts: u16,
    got: BTreeMap<u16, Handback>,
}

/// The parts of the newest draining set each sender is handing back, until it is whole.
#[derive(Debug, Default)]
pub struct HandbackParts {
    partial: BTreeMap<(NodeId, NodeId), Partial>,
    /// The newest (epoch, generation) made whole, per sender and group: an older set that
    /// completes later is stale.
    whole: BTreeMap<(NodeId, NodeId), (Epoch, u32)>,
}

impl HandbackParts {
    /// Takes one part from `from`; returns the whole set once its last part is here. A part
    /// of an older set than one already whole or in progress is dropped.
    pub fn part(&mut self, from: NodeId, h: Handback) -> Option<Handback> {
        let key = (from, h.owner);
        let at = (h.epoch, h.generation);
        if self.whole.get(&key).is_some_and(|w| at < *w) {
            return None;
        }
        if h.parts <= 1 {
            self.partial.remove(&key);
            self.whole.insert(key, at);
            return Some(h);
        }
        let p = self.partial.entry(key).or_insert_with(|| Partial {
            at,
            parts: h.parts,
            got: BTreeMap::new(),
        });
        if at < p.at {
            return None;
        }
        if at > p.at || h.parts != p.parts {
            *p = Partial {
                at,
                parts: h.parts,
                got: BTreeMap::new(),
            };
        }
        p.got.insert(h.part, h);
        if p.got.len() < p.parts as usize {
            return None;
        }
        let p = self.partial.remove(&key)?;
        self.whole.insert(key, at);
        let mut parts = p.got.into_values();
        let mut whole = parts.next()?;
        for more in parts {
            whole.draining.extend(more.draining);
        }
        whole.part = 0;
        whole.parts = 1;
        Some(whole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::FailbackMode;
    use crate::wire::FourTuple;

    fn set(n: usize, generation: u32) -> Handback {
        Handback {
            owner: NodeId(1),
            epoch: Epoch {
                counter: 3,
                holder: NodeId(1),
            },
            mode: FailbackMode::NewConnections,
            generation,
            part: 0,
            parts: 1,
            draining: (0..n)
                .map(|i| FourTuple {
                    local: "[2001:db8::10]:7".parse().unwrap(),
                    remote: std::net::SocketAddr::new(
                        format!("2001:db8::{:x}", 0x100 + i / 60_000)
                            .parse()
                            .unwrap(),
                        (1024 + i % 60_000) as u16,
                    ),
                })
                .collect(),
        }
    }

    #[test]
    fn twenty_thousand_draining_connections_fit_in_parts_and_come_back_whole() {
        let h = set(20_000, 0);
        let mut parts = split(&h);
        assert_eq!(parts.len(), 20_000usize.div_ceil(DRAIN_MAX));
        for p in &parts {
            // Every part fits one datagram.
            let msg = crate::wire::Message {
                flags: 0,
                cluster: 1,
                sender: NodeId(2),
                boot_epoch: 1,
                seq: 1,
                body: crate::wire::Body::Handback(p.clone()),
            };
            assert!(crate::auth::seal(&msg, b"k").len() < 65_507);
        }
        parts.swap(0, 5);
        let mut r = HandbackParts::default();
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            let got = r.part(NodeId(2), p);
            if i + 1 < n {
                assert!(got.is_none(), "whole before the last part");
            } else {
                assert_eq!(got, Some(h.clone()));
            }
        }
    }

    #[test]
    fn an_older_set_never_replaces_a_newer_one() {
        let old = split(&set(4000, 1));
        let new = split(&set(10, 2));
        let mut r = HandbackParts::default();
        assert!(r.part(NodeId(2), old[0].clone()).is_none());
        assert_eq!(
            r.part(NodeId(2), new[0].clone()).map(|h| h.draining.len()),
            Some(10)
        );
        for p in old {
            assert!(r.part(NodeId(2), p).is_none(), "a stale set was made whole");
        }
    }
}
