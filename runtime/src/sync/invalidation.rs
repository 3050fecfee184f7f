//! Subscription matching: given the keys a commit wrote, which subscriptions read any of them?
//!
//! Each subscription's read set is a list of half-open key intervals per space. They are
//! grouped by space and by the 4-byte index id every index key starts with, and each group
//! is a centered interval tree, so a written key finds the intervals that contain it in
//! O(log n + matches) plus a short tail of intervals added since the tree was built. Adding
//! or removing a subscription costs time in its own intervals; a group's tree is rebuilt
//! (lazily, at the next match) only once the group has changed by a fraction of its size, so
//! a commit that re-runs one query among many does not pay for the others.

use crate::store::engine::Space;
use crate::store::read_set::NormalizedReadSet;
use std::collections::{HashMap, HashSet};

pub type SubscriptionId = u64;

/// One interval of one subscription: `[start, end)`, `end: None` unbounded.
#[derive(Clone, Debug)]
struct Interval {
    space: Space,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    subscription: SubscriptionId,
}

impl Interval {
    fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// Which group an interval or key belongs to: its space and the 4 bytes that open it (the
/// index id for index keys). An interval spanning several groups goes into `wide`.
type GroupKey = (Space, [u8; 4]);

fn group_of_key(space: Space, key: &[u8]) -> Option<GroupKey> {
    Some((space, key.get(..4)?.try_into().ok()?))
}

fn group_of_interval(space: Space, start: &[u8], end: Option<&[u8]>) -> Option<GroupKey> {
    let group = group_of_key(space, start)?;
    // The interval stays in one group when its end is within the same 4-byte prefix, or is
    // the first key of the next prefix (the usual "whole index" range ends there).
    let end = end?;
    let same_prefix = end.len() >= 4 && end[..4] == group.1;
    let next_prefix =
        ferrovex_model::key::prefix_successor(&group.1).is_some_and(|next| end == next.as_slice());
    (same_prefix || next_prefix).then_some(group)
}

/// Appended intervals a group scans linearly before its tree is rebuilt to include them:
/// at least this many, or a quarter of the tree's, so rebuilding costs O(log n) amortized
/// per insert. (Small in unit tests, so they exercise the tree and the tail together.)
const MIN_UNINDEXED: usize = if cfg!(test) { 2 } else { 32 };

#[derive(Default)]
pub struct SubscriptionIndex {
    groups: HashMap<GroupKey, Group>,
    /// Intervals spanning several groups (rare: unbounded or cross-index ranges).
    wide: Vec<Interval>,
    /// Where each subscription's intervals are (group and position in it), for removal.
    membership: HashMap<SubscriptionId, Vec<(Option<GroupKey>, usize)>>,
}

/// The intervals of one index. `tree` covers `intervals[..indexed]`; later ones are scanned
/// one by one; removed ones stay in place, marked dead, until the next rebuild compacts them.
/// So adding or removing a subscription costs time in its own intervals, and the tree is
/// rebuilt only after the group has changed by a fraction of its size.
#[derive(Default)]
struct Group {
    intervals: Vec<Interval>,
    dead: Vec<bool>,
    dead_count: usize,
    tree: Option<Node>,
    indexed: usize,
}

impl Group {
    fn push(&mut self, interval: Interval) -> usize {
        self.intervals.push(interval);
        self.dead.push(false);
        let unindexed = self.intervals.len() - self.indexed;
        if unindexed > MIN_UNINDEXED.max(self.indexed / 4) {
            self.tree = None;
        }
        self.intervals.len() - 1
    }

    fn kill(&mut self, position: usize) {
        if !std::mem::replace(&mut self.dead[position], true) {
            self.dead_count += 1;
        }
        if self.dead_count > MIN_UNINDEXED.max(self.intervals.len() / 2) {
            self.tree = None;
        }
    }

    fn live(&self) -> usize {
        self.intervals.len() - self.dead_count
    }
}

impl SubscriptionIndex {
    pub fn len(&self) -> usize {
        self.membership.len()
    }

    pub fn is_empty(&self) -> bool {
        self.membership.is_empty()
    }

    /// Adds (or replaces) a subscription's read set.
    pub fn insert(&mut self, subscription: SubscriptionId, reads: &NormalizedReadSet) {
        self.remove(subscription);
        let mut places = Vec::new();
        for (space, start, end) in reads.intervals() {
            let interval = Interval {
                space,
                start: start.to_vec(),
                end: end.map(<[u8]>::to_vec),
                subscription,
            };
            match group_of_interval(space, start, end) {
                Some(key) => {
                    let position = self.groups.entry(key).or_default().push(interval);
                    places.push((Some(key), position));
                }
                None => {
                    self.wide.push(interval);
                    places.push((None, 0));
                }
            }
        }
        self.membership.insert(subscription, places);
    }

    pub fn remove(&mut self, subscription: SubscriptionId) {
        let Some(places) = self.membership.remove(&subscription) else {
            return;
        };
        let mut wide = false;
        for (key, position) in places {
            match key {
                Some(key) => {
                    let group = self.groups.get_mut(&key).expect("a member's group exists");
                    group.kill(position);
                    if group.live() == 0 {
                        self.groups.remove(&key);
                    }
                }
                None => wide = true,
            }
        }
        if wide {
            self.wide.retain(|i| i.subscription != subscription);
        }
    }

    /// Every subscription that read at least one of `keys`.
    pub fn affected<'k>(
        &mut self,
        keys: impl IntoIterator<Item = (Space, &'k [u8])>,
    ) -> HashSet<SubscriptionId> {
        let mut out = HashSet::new();
        for (space, key) in keys {
            if let Some(group_key) = group_of_key(space, key) {
                if self.groups.contains_key(&group_key) {
                    self.ensure_tree(group_key);
                    let group = &self.groups[&group_key];
                    let tree = group.tree.as_ref().expect("built above");
                    tree.stab(key, &group.intervals, &group.dead, &mut out);
                    for (i, interval) in group.intervals.iter().enumerate().skip(group.indexed) {
                        if !group.dead[i] && interval.contains(key) {
                            out.insert(interval.subscription);
                        }
                    }
                }
            }
            for interval in &self.wide {
                if interval.space == space && interval.contains(key) {
                    out.insert(interval.subscription);
                }
            }
        }
        out
    }

    /// Rebuilds a group's tree if it was dropped: compacts away dead intervals (moving the
    /// survivors' recorded positions) and indexes them all.
    fn ensure_tree(&mut self, key: GroupKey) {
        let group = self.groups.get_mut(&key).expect("checked by the caller");
        if group.tree.is_some() {
            return;
        }
        if group.dead_count > 0 {
            let old = std::mem::take(&mut group.intervals);
            let dead = std::mem::take(&mut group.dead);
            for (old_position, interval) in old.into_iter().enumerate() {
                if dead[old_position] {
                    continue;
                }
                let new_position = group.intervals.len();
                if new_position != old_position {
                    let places = self
                        .membership
                        .get_mut(&interval.subscription)
                        .expect("a live interval's subscription is a member");
                    let place = places
                        .iter_mut()
                        .find(|(k, p)| *k == Some(key) && *p == old_position)
                        .expect("the member records this interval");
                    place.1 = new_position;
                }
                group.intervals.push(interval);
            }
            group.dead = vec![false; group.intervals.len()];
            group.dead_count = 0;
        }
        group.indexed = group.intervals.len();
        group.tree = Some(Node::build(
            (0..group.intervals.len()).collect(),
            &group.intervals,
        ));
    }
}

/// A centered interval tree over indices into a group's interval list.
struct Node {
    center: Vec<u8>,
    /// Intervals containing `center`, by start ascending and by end descending.
    by_start: Vec<usize>,
    by_end: Vec<usize>,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

impl Node {
    fn build(members: Vec<usize>, intervals: &[Interval]) -> Node {
        // The median start is the center: at least half the intervals start at or before it.
        let mut starts: Vec<&[u8]> = members
            .iter()
            .map(|&i| intervals[i].start.as_slice())
            .collect();
        starts.sort_unstable();
        let center = starts[starts.len() / 2].to_vec();
        let (mut here, mut left, mut right) = (Vec::new(), Vec::new(), Vec::new());
        for i in members {
            let iv = &intervals[i];
            if iv.contains(&center) {
                here.push(i);
            } else if iv.end.as_deref().is_some_and(|e| e <= center.as_slice()) {
                left.push(i);
            } else {
                right.push(i);
            }
        }
        let mut by_start = here.clone();
        by_start.sort_by(|&a, &b| intervals[a].start.cmp(&intervals[b].start));
        let mut by_end = here;
        by_end.sort_by(|&a, &b| end_order(&intervals[b].end, &intervals[a].end));
        let child = |members: Vec<usize>| {
            (!members.is_empty()).then(|| Box::new(Node::build(members, intervals)))
        };
        Node {
            center,
            by_start,
            by_end,
            left: child(left),
            right: child(right),
        }
    }

    fn stab(
        &self,
        key: &[u8],
        intervals: &[Interval],
        dead: &[bool],
        out: &mut HashSet<SubscriptionId>,
    ) {
        if key < self.center.as_slice() {
            // Every interval here ends after the center, so it contains `key` iff it starts
            // at or before it.
            for &i in &self.by_start {
                if intervals[i].start.as_slice() > key {
                    break;
                }
                if !dead[i] {
                    out.insert(intervals[i].subscription);
                }
            }
            if let Some(left) = &self.left {
                left.stab(key, intervals, dead, out);
            }
        } else {
            // Every interval here starts at or before the center, so it contains `key` iff
            // it ends after it.
            for &i in &self.by_end {
                if intervals[i].end.as_deref().is_some_and(|e| e <= key) {
                    break;
                }
                if !dead[i] {
                    out.insert(intervals[i].subscription);
                }
            }
            if let Some(right) = &self.right {
                right.stab(key, intervals, dead, out);
            }
        }
    }
}

/// Orders interval ends with unbounded last.
fn end_order(a: &Option<Vec<u8>>, b: &Option<Vec<u8>>) -> std::cmp::Ordering {
    match (a, b) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::KeyRange;
    use crate::store::read_set::ReadSet;
    use proptest::prelude::*;
    use std::ops::Bound;

    /// Keys of a few indexes (4-byte ids) with short suffixes, so intervals overlap a lot.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        (0u8..3, prop::collection::vec(0u8..4, 0..3)).prop_map(|(index, suffix)| {
            let mut k = vec![0, 0, 0, index];
            k.extend(suffix);
            k
        })
    }

    fn range() -> impl Strategy<Value = KeyRange> {
        (key(), prop::option::of(key()), any::<bool>(), any::<bool>()).prop_map(
            |(a, b, incl_start, incl_end)| {
                let start = if incl_start {
                    Bound::Included(a.clone())
                } else {
                    Bound::Excluded(a)
                };
                let end = match b {
                    Some(b) if incl_end => Bound::Included(b),
                    Some(b) => Bound::Excluded(b),
                    None => Bound::Unbounded,
                };
                KeyRange { start, end }
            },
        )
    }

    /// One step of a random history: subscribe (or re-subscribe) `id` with a read set,
    /// unsubscribe it, or match a key.
    #[derive(Clone, Debug)]
    enum Step {
        Insert(u64, Vec<KeyRange>),
        Remove(u64),
        Probe(Vec<u8>),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..40, prop::collection::vec(range(), 1..4)).prop_map(|(id, r)| Step::Insert(id, r)),
            2 => (0u64..40).prop_map(Step::Remove),
            3 => key().prop_map(Step::Probe),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_brute_force_scan(steps in prop::collection::vec(step(), 1..200)) {
            let mut index = SubscriptionIndex::default();
            let mut live: HashMap<SubscriptionId, ReadSet> = HashMap::new();
            for step in steps {
                match step {
                    Step::Insert(id, ranges) => {
                        let mut reads = ReadSet::default();
                        for r in ranges {
                            reads.add(Space::Indexes, r);
                        }
                        index.insert(id, &reads.normalize());
                        live.insert(id, reads);
                    }
                    Step::Remove(id) => {
                        index.remove(id);
                        live.remove(&id);
                    }
                    Step::Probe(probe) => {
                        let expected: HashSet<SubscriptionId> = live
                            .iter()
                            .filter(|(_, reads)| reads.normalize().contains(Space::Indexes, &probe))
                            .map(|(id, _)| *id)
                            .collect();
                        let got = index.affected([(Space::Indexes, probe.as_slice())]);
                        prop_assert_eq!(got, expected, "probe {:?}", probe);
                        // Other spaces never match index intervals.
                        prop_assert!(index.affected([(Space::Catalog, probe.as_slice())]).is_empty());
                    }
                }
            }
            prop_assert_eq!(index.len(), live.len());
        }
    }
}
