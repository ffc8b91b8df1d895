//! Which node re-creates which of a failed owner's connections under `spread` (claim 10): the
//! split of the connections into shares, and the part of them a takeover re-creates.
//!
//! The node that takes share 0 (with the addresses) splits what it snooped with [`split`] and
//! grants every other share its exact list; lists too long for one datagram fall back to
//! [`FourTuple::share`], a hash every node computes alike.

use std::collections::BTreeSet;

use crate::node::DRAIN_MAX;
use crate::wire::{FourTuple, Scope};

/// A failed owner's connections split into `of` shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Share `k`'s connections, sorted; `None` when a list would not fit one datagram
    /// ([`DRAIN_MAX`]): shares then go by hash.
    pub lists: Option<Vec<Vec<FourTuple>>>,
    of: u16,
}

/// Splits `connections` evenly into `of` shares: every `of`-th connection in sorted order goes
/// to the same share, so that no two shares differ by more than one connection, whatever the
/// addresses (a hash gave 63/37 of 100 in one run of three). Deterministic: the same set gives
/// the same split in any order.
pub fn split(connections: &[FourTuple], of: u16) -> Split {
    let of = of.max(1);
    let mut all = connections.to_vec();
    all.sort();
    all.dedup();
    let mut lists = vec![Vec::new(); of as usize];
    for (rank, t) in all.into_iter().enumerate() {
        lists[rank % of as usize].push(t);
    }
    let listed = lists.iter().all(|l| l.len() <= DRAIN_MAX);
    Split {
        lists: listed.then_some(lists),
        of,
    }
}

impl Split {
    /// The share `t` belongs to. A connection in no list (one that cannot be re-created, so it
    /// was not split) belongs to share 0: the node with the addresses counts it as lost, so
    /// that no loss goes unreported.
    pub fn share_of(&self, t: &FourTuple) -> u16 {
        match &self.lists {
            Some(lists) => lists
                .iter()
                .position(|l| l.binary_search(t).is_ok())
                .unwrap_or(0) as u16,
            None => t.share(self.of),
        }
    }

    /// The number of shares.
    pub fn of(&self) -> u16 {
        self.of
    }
}

/// The connections of a group that one takeover re-creates, from the scope the core gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// All of them.
    All,
    /// The hash share `index` of `of`.
    Share {
        /// This share.
        index: u16,
        /// Number of shares.
        of: u16,
    },
    /// Exactly these (a share granted as a list).
    Listed(BTreeSet<FourTuple>),
}

impl From<Scope> for Selection {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::All => Self::All,
            Scope::Share { index, of } => Self::Share { index, of },
            Scope::Connections(l) => Self::Listed(l.into_iter().collect()),
        }
    }
}

impl Selection {
    /// Whether the takeover re-creates (or, if it cannot, reports as lost) connection `t`.
    pub fn includes(&self, t: &FourTuple) -> bool {
        match self {
            Self::All => true,
            Self::Share { index, of } => t.share(*of) == *index,
            Self::Listed(l) => l.contains(t),
        }
    }

    /// Whether this part comes with the group's addresses (and so, under `spread`, splits the
    /// connections and forwards the other shares).
    pub fn with_addresses(&self) -> bool {
        matches!(self, Self::All | Self::Share { index: 0, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(i: u32) -> FourTuple {
        FourTuple {
            local: "198.18.0.10:7000".parse().unwrap(),
            remote: std::net::SocketAddr::new(
                std::net::Ipv4Addr::from(0xC612_0000 + i).into(),
                (40000 + i % 20000) as u16,
            ),
        }
    }

    #[test]
    fn an_unlisted_connection_belongs_to_the_address_holder() {
        let s = split(&[tuple(1), tuple(2), tuple(3)], 3);
        assert_eq!(s.share_of(&tuple(99)), 0);
        let shares: BTreeSet<u16> = (1..=3).map(|i| s.share_of(&tuple(i))).collect();
        assert_eq!(shares, BTreeSet::from([0, 1, 2]));
    }

    #[test]
    fn too_many_to_list_goes_by_hash() {
        let all: Vec<FourTuple> = (0..(DRAIN_MAX as u32 * 2 + 2)).map(tuple).collect();
        let s = split(&all, 2);
        assert!(s.lists.is_none());
        for t in &all {
            assert_eq!(s.share_of(t), t.share(2));
        }
    }

    #[test]
    fn parts_select_their_connections() {
        let t = tuple(7);
        assert!(Selection::from(Scope::All).includes(&t));
        let mine = t.share(3);
        assert!(Selection::from(Scope::Share { index: mine, of: 3 }).includes(&t));
        assert!(
            !Selection::from(Scope::Share {
                index: (mine + 1) % 3,
                of: 3
            })
            .includes(&t)
        );
        assert!(Selection::from(Scope::Connections(vec![t])).includes(&t));
        assert!(!Selection::from(Scope::Connections(vec![tuple(8)])).includes(&t));
        assert!(Selection::Share { index: 0, of: 2 }.with_addresses());
        assert!(!Selection::Share { index: 1, of: 2 }.with_addresses());
        assert!(!Selection::Listed(BTreeSet::new()).with_addresses());
    }
}
