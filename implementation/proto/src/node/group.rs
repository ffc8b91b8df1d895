//! One owner's group as this node knows it: who holds it, and everything this node has under
//! way for it (a holding, a share, a request, a grant, a split, a handback), in one struct.

use std::collections::{BTreeMap, BTreeSet};

use crate::policy::{Epoch, FailbackMode, NodeId};
use crate::time::Time;
use crate::wire::{FourTuple, Handback, Scope};

use super::{GroupView, Node, Pending};

/// Everything about one owner's group, as this node sees it.
#[derive(Debug, Clone, Default)]
pub(super) struct Group {
    /// The newest epoch known (`None`: no holding heard of yet).
    pub(super) view: Option<GroupView>,
    /// Held here with the addresses, at this epoch.
    pub(super) held: Option<Epoch>,
    /// A share of its connections held here without the addresses (`spread`).
    pub(super) share: Option<(Epoch, Scope)>,
    /// Our ASSUME-REQUEST for it, not answered or answered "not yet".
    pub(super) pending: Option<Pending>,
    /// A grant this node gave: to whom, which connections, until when.
    pub(super) granted: Option<(NodeId, Scope, Time)>,
    /// Under `spread`, as its holder: each share's connections as split ([`Node::assign`];
    /// `None` inside: too many to list, shares go by hash).
    pub(super) assignment: Option<Option<Vec<Vec<FourTuple>>>>,
    /// Share requests that arrived before the split: (requester, request id, share index).
    pub(super) awaiting: Vec<(NodeId, u32, u16)>,
    /// The failed holdings (their epochs) this node already asked about.
    pub(super) asked: BTreeSet<Epoch>,
    /// A handback waiting for the IO layer: the owner's new epoch and the mode.
    pub(super) handing_back: Option<(Epoch, FailbackMode)>,
    /// The last HANDBACK sent, to repeat if the owner asks again.
    pub(super) handed_back: Option<Handback>,
}

impl Node {
    /// The group of `owner`, if this node knows anything of it.
    pub(super) fn group(&self, owner: NodeId) -> Option<&Group> {
        self.groups.get(&owner)
    }

    /// The group of `owner`, made if new.
    pub(super) fn group_mut(&mut self, owner: NodeId) -> &mut Group {
        self.groups.entry(owner).or_default()
    }

    /// The newest epoch known for `owner`'s group.
    pub(super) fn view(&self, owner: NodeId) -> Option<GroupView> {
        self.group(owner).and_then(|g| g.view)
    }

    /// The epoch at which this node holds `owner`'s group with its addresses.
    pub(super) fn held_at(&self, owner: NodeId) -> Option<Epoch> {
        self.group(owner).and_then(|g| g.held)
    }

    /// The owners of the groups held here with their addresses.
    pub(super) fn held_owners(&self) -> Vec<NodeId> {
        self.groups
            .iter()
            .filter(|(_, g)| g.held.is_some())
            .map(|(o, _)| *o)
            .collect()
    }

    /// Lets go of every group held here: (owner, epoch) of each.
    pub(super) fn take_held(&mut self) -> Vec<(NodeId, Epoch)> {
        self.groups
            .iter_mut()
            .filter_map(|(o, g)| g.held.take().map(|e| (*o, e)))
            .collect()
    }

    /// Groups held as address holder, by owner.
    pub fn held(&self) -> BTreeMap<NodeId, Epoch> {
        self.groups
            .iter()
            .filter_map(|(o, g)| g.held.map(|e| (*o, e)))
            .collect()
    }

    /// Connection shares held without the addresses (the `spread` policy), by owner.
    pub fn shares(&self) -> BTreeMap<NodeId, (Epoch, Scope)> {
        self.groups
            .iter()
            .filter_map(|(o, g)| g.share.clone().map(|s| (*o, s)))
            .collect()
    }

    /// The newest epoch known for each group.
    pub fn groups(&self) -> BTreeMap<NodeId, GroupView> {
        self.groups
            .iter()
            .filter_map(|(o, g)| g.view.map(|v| (*o, v)))
            .collect()
    }
}

impl Node {
    /// This node holds `owner`'s group at `epoch` from now on: the holding and the newest view
    /// (held by this boot, not released) in one step.
    pub(super) fn hold(&mut self, owner: NodeId, epoch: Epoch) {
        let holder_boot = self.cfg.boot_epoch;
        let g = self.group_mut(owner);
        g.held = Some(epoch);
        g.view = Some(GroupView {
            epoch,
            holder_boot,
            released: false,
        });
    }

    /// Records `view` as the newest epoch of `owner`'s group.
    pub(super) fn set_view(&mut self, owner: NodeId, view: GroupView) {
        self.group_mut(owner).view = Some(view);
    }
}
