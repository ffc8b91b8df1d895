//! CONN-STATE of any size: a connection's state travels as parts that each fit one datagram
//! ([`ConnStatePart::split`]), and [`Assembler`] puts them back together on the receiving
//! node. A state whose parts do not all arrive within [`ASSEMBLY_TIMEOUT`] is given up and
//! reported, never adopted half-made.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::policy::NodeId;
use crate::time::Time;
use crate::wire::{ConnState, ConnStatePart, FourTuple};

/// The bytes of `unacked` and the checkpoint one part carries: with the fixed fields and the
/// header, one datagram of under 48.2 kB (the largest the control socket sends is 64 kB).
pub const PART_CHUNK: usize = 48_000;

/// The largest state accepted (`unacked` plus checkpoint): far above any send buffer Linux
/// gives a socket by default (`tcp_wmem` max 4 MB).
pub const STATE_MAX: u64 = 64 << 20;

/// All partial states together hold at most this many bytes; a part that would need more is
/// refused (and its state reported incomplete).
pub const ASSEMBLY_BYTES: usize = 256 << 20;

/// How long the parts of one state may take to arrive.
pub const ASSEMBLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a state was not assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// Not every part arrived in time (a lost datagram).
    Timeout,
    /// Larger than [`STATE_MAX`], or the partial states already hold [`ASSEMBLY_BYTES`].
    TooLarge,
    /// A newer state of the same connection arrived before this one was whole.
    Superseded,
}

impl Incomplete {
    /// A name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::Superseded => "superseded",
        }
    }
}

type Key = (NodeId, NodeId, Option<FourTuple>);

#[derive(Debug)]
struct Partial {
    head: ConnState,
    unacked_len: u32,
    checkpoint_len: u32,
    buf: Vec<u8>,
    have: BTreeSet<u32>,
    got: usize,
    started: Time,
}

impl Partial {
    fn same_state(&self, p: &ConnStatePart) -> bool {
        self.head == p.head
            && self.unacked_len == p.unacked_len
            && self.checkpoint_len == p.checkpoint_len
    }
}

/// What a part completed, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// The state is whole.
    Whole(Box<ConnState>),
    /// More parts are to come.
    Pending,
    /// The state this part belongs to (or an older one of the same connection) will not be
    /// adopted.
    Dropped(Incomplete),
}

/// Partial CONN-STATEs, by sender, group and connection.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: BTreeMap<Key, Partial>,
    bytes: usize,
}

impl Assembler {
    /// Takes one part from `from`. A part of a state not seen before starts it (a different
    /// state of the same connection replaces it: the newer one wins); a duplicate part is
    /// ignored.
    pub fn part(&mut self, now: Time, from: NodeId, p: ConnStatePart) -> Assembled {
        let total = p.unacked_len as u64 + p.checkpoint_len as u64;
        let key = (from, p.head.owner, p.head.tuple);
        if p.offset == 0 && p.chunk.len() as u64 == total {
            // A part of an older state of the connection is superseded by this whole one.
            self.remove(&key);
            return Assembled::Whole(whole(p.head, p.chunk, p.unacked_len));
        }
        let mut verdict = Assembled::Pending;
        if self.partial.get(&key).is_some_and(|q| !q.same_state(&p)) {
            self.remove(&key);
            verdict = Assembled::Dropped(Incomplete::Superseded);
        }
        if !self.partial.contains_key(&key) {
            if total > STATE_MAX || self.bytes + total as usize > ASSEMBLY_BYTES {
                return Assembled::Dropped(Incomplete::TooLarge);
            }
            self.bytes += total as usize;
            self.partial.insert(
                key,
                Partial {
                    head: p.head.clone(),
                    unacked_len: p.unacked_len,
                    checkpoint_len: p.checkpoint_len,
                    buf: vec![0; total as usize],
                    have: BTreeSet::new(),
                    got: 0,
                    started: now,
                },
            );
        }
        let Some(q) = self.partial.get_mut(&key) else {
            return verdict;
        };
        let at = p.offset as usize;
        if q.have.insert(p.offset) {
            // The wire decoder checked that the chunk lies within the state.
            q.buf[at..at + p.chunk.len()].copy_from_slice(&p.chunk);
            q.got += p.chunk.len();
        }
        if q.got < q.buf.len() {
            return verdict;
        }
        let Some(q) = self.remove(&key) else {
            return verdict;
        };
        Assembled::Whole(whole(q.head, q.buf, q.unacked_len))
    }

    /// Gives up the states whose parts did not all arrive within [`ASSEMBLY_TIMEOUT`]: their
    /// senders, groups and connections.
    pub fn expire(&mut self, now: Time) -> Vec<(NodeId, NodeId, Option<FourTuple>)> {
        let old: Vec<Key> = self
            .partial
            .iter()
            .filter(|(_, q)| now.saturating_since(q.started) >= ASSEMBLY_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for k in &old {
            self.remove(k);
        }
        old
    }

    /// How many states are partly here.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    fn remove(&mut self, key: &Key) -> Option<Partial> {
        let q = self.partial.remove(key)?;
        self.bytes -= q.buf.len();
        Some(q)
    }
}

/// The state with its byte strings: `all` is `unacked` followed by the checkpoint.
fn whole(mut state: ConnState, mut all: Vec<u8>, unacked_len: u32) -> Box<ConnState> {
    state.checkpoint = all.split_off(unacked_len as usize);
    state.unacked = all;
    Box::new(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(unacked: usize, checkpoint: usize) -> ConnState {
        ConnState {
            owner: NodeId(1),
            tuple: Some(FourTuple {
                local: "198.18.0.10:7".parse().unwrap(),
                remote: "198.18.0.100:40000".parse().unwrap(),
            }),
            snd_una: 7,
            unacked: (0..unacked).map(|i| (i * 7 % 251) as u8).collect(),
            checkpoint: (0..checkpoint).map(|i| (i % 13) as u8).collect(),
            ..ConnState::default()
        }
    }

    #[test]
    fn a_large_state_is_split_and_put_back_in_any_order() {
        let s = state(300_000, 70_000);
        let mut parts = ConnStatePart::split(&s, PART_CHUNK).unwrap();
        assert_eq!(parts.len(), 370_000usize.div_ceil(PART_CHUNK));
        parts.reverse();
        let dup = parts[3].clone();
        parts.insert(5, dup);
        let mut a = Assembler::default();
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            match a.part(Time(0), NodeId(2), p) {
                Assembled::Whole(got) => {
                    assert_eq!(i, n - 1, "whole only with the last part");
                    assert_eq!(*got, s);
                }
                other => assert_eq!(other, Assembled::Pending, "part {i}"),
            }
        }
        assert_eq!((a.pending(), a.bytes), (0, 0));
    }

    #[test]
    fn a_small_state_is_one_part() {
        for (u, c) in [(0, 0), (10, 3), (PART_CHUNK - 3, 3)] {
            let s = state(u, c);
            let parts = ConnStatePart::split(&s, PART_CHUNK).unwrap();
            assert_eq!(parts.len(), 1);
            let got = Assembler::default().part(Time(0), NodeId(2), parts[0].clone());
            assert_eq!(got, Assembled::Whole(Box::new(s)));
        }
    }

    #[test]
    fn a_missing_part_times_out_and_a_newer_state_supersedes() {
        let s = state(100_000, 5);
        let parts = ConnStatePart::split(&s, PART_CHUNK).unwrap();
        let mut a = Assembler::default();
        assert_eq!(
            a.part(Time(0), NodeId(2), parts[0].clone()),
            Assembled::Pending
        );
        assert!(a.expire(Time(0) + Duration::from_secs(4)).is_empty());
        let gone = a.expire(Time(0) + ASSEMBLY_TIMEOUT);
        assert_eq!(gone, vec![(NodeId(2), NodeId(1), s.tuple)]);
        assert_eq!(a.bytes, 0);
        // A part of the old state, then one of a newer state of the same connection.
        assert_eq!(
            a.part(Time(0), NodeId(2), parts[1].clone()),
            Assembled::Pending
        );
        let mut newer = s.clone();
        newer.snd_una += 1;
        let newer_parts = ConnStatePart::split(&newer, PART_CHUNK).unwrap();
        assert_eq!(
            a.part(Time(0), NodeId(2), newer_parts[0].clone()),
            Assembled::Dropped(Incomplete::Superseded)
        );
        for p in &newer_parts[1..] {
            let _ = a.part(Time(0), NodeId(2), p.clone());
        }
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn a_state_over_the_bound_is_refused() {
        let p = ConnStatePart {
            head: state(0, 0),
            unacked_len: STATE_MAX as u32 + 1,
            checkpoint_len: 0,
            offset: 0,
            chunk: vec![1; 10],
        };
        let mut a = Assembler::default();
        assert_eq!(
            a.part(Time(0), NodeId(2), p),
            Assembled::Dropped(Incomplete::TooLarge)
        );
        assert_eq!(a.bytes, 0);
    }
}
