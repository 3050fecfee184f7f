//! Subscription matching: given the keys a commit wrote, which subscriptions read any of them?
//!
//! Each subscription's read set is a list of half-open key intervals per space. They are
//! grouped by space and by the 4-byte index id every index key starts with, and each group
//! is a centered interval tree, so a written key finds the intervals that contain it in
//! O(log n + matches) without looking at any other subscription. A group's tree is rebuilt,
//! lazily, only when subscriptions reading that index were added or removed since it was
//! last queried.

use crate::store::engine::Space;
use crate::store::read_set::NormalizedReadSet;
use std::collections::{BTreeSet, HashMap, HashSet};

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
        model::key::prefix_successor(&group.1).is_some_and(|next| end == next.as_slice());
    (same_prefix || next_prefix).then_some(group)
}

#[derive(Default)]
pub struct SubscriptionIndex {
    groups: HashMap<GroupKey, Group>,
    /// Intervals spanning several groups (rare: unbounded or cross-index ranges).
    wide: Vec<Interval>,
    /// The groups each subscription has intervals in, for removal.
    membership: HashMap<SubscriptionId, Vec<Option<GroupKey>>>,
}

#[derive(Default)]
struct Group {
    intervals: Vec<Interval>,
    tree: Option<Node>,
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
        let mut groups = Vec::new();
        for (space, start, end) in reads.intervals() {
            let interval = Interval {
                space,
                start: start.to_vec(),
                end: end.map(<[u8]>::to_vec),
                subscription,
            };
            match group_of_interval(space, start, end) {
                Some(key) => {
                    let group = self.groups.entry(key).or_default();
                    group.intervals.push(interval);
                    group.tree = None;
                    groups.push(Some(key));
                }
                None => {
                    self.wide.push(interval);
                    groups.push(None);
                }
            }
        }
        self.membership.insert(subscription, groups);
    }

    pub fn remove(&mut self, subscription: SubscriptionId) {
        let Some(groups) = self.membership.remove(&subscription) else {
            return;
        };
        let unique: BTreeSet<_> = groups.into_iter().collect();
        for key in unique {
            match key {
                Some(key) => {
                    if let Some(group) = self.groups.get_mut(&key) {
                        group.intervals.retain(|i| i.subscription != subscription);
                        group.tree = None;
                        if group.intervals.is_empty() {
                            self.groups.remove(&key);
                        }
                    }
                }
                None => self.wide.retain(|i| i.subscription != subscription),
            }
        }
    }

    /// Every subscription that read at least one of `keys`.
    pub fn affected<'k>(
        &mut self,
        keys: impl IntoIterator<Item = (Space, &'k [u8])>,
    ) -> HashSet<SubscriptionId> {
        let mut out = HashSet::new();
        for (space, key) in keys {
            if let Some(group) = group_of_key(space, key).and_then(|g| self.groups.get_mut(&g)) {
                let intervals = &group.intervals;
                let tree = group
                    .tree
                    .get_or_insert_with(|| Node::build((0..intervals.len()).collect(), intervals));
                tree.stab(key, intervals, &mut out);
            }
            for interval in &self.wide {
                if interval.space == space && interval.contains(key) {
                    out.insert(interval.subscription);
                }
            }
        }
        out
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

    fn stab(&self, key: &[u8], intervals: &[Interval], out: &mut HashSet<SubscriptionId>) {
        if key < self.center.as_slice() {
            // Every interval here ends after the center, so it contains `key` iff it starts
            // at or before it.
            for &i in &self.by_start {
                if intervals[i].start.as_slice() > key {
                    break;
                }
                out.insert(intervals[i].subscription);
            }
            if let Some(left) = &self.left {
                left.stab(key, intervals, out);
            }
        } else {
            // Every interval here starts at or before the center, so it contains `key` iff
            // it ends after it.
            for &i in &self.by_end {
                if intervals[i].end.as_deref().is_some_and(|e| e <= key) {
                    break;
                }
                out.insert(intervals[i].subscription);
            }
            if let Some(right) = &self.right {
                right.stab(key, intervals, out);
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

    proptest! {
        #[test]
        fn matches_a_brute_force_scan(
            subs in prop::collection::vec(prop::collection::vec(range(), 1..4), 1..30),
            removed in prop::collection::vec(any::<usize>(), 0..5),
            probes in prop::collection::vec(key(), 1..20),
        ) {
            let mut index = SubscriptionIndex::default();
            let mut live: HashMap<SubscriptionId, ReadSet> = HashMap::new();
            for (id, ranges) in subs.iter().enumerate() {
                let mut reads = ReadSet::default();
                for r in ranges {
                    reads.add(Space::Indexes, r.clone());
                }
                index.insert(id as u64, &reads.normalize());
                live.insert(id as u64, reads);
            }
            for r in removed {
                let id = (r % subs.len()) as u64;
                index.remove(id);
                live.remove(&id);
            }
            for probe in &probes {
                let expected: HashSet<SubscriptionId> = live
                    .iter()
                    .filter(|(_, reads)| reads.normalize().contains(Space::Indexes, probe))
                    .map(|(id, _)| *id)
                    .collect();
                let got = index.affected([(Space::Indexes, probe.as_slice())]);
                prop_assert_eq!(got, expected, "probe {:?}", probe);
                // Other spaces never match index intervals.
                prop_assert!(index.affected([(Space::Catalog, probe.as_slice())]).is_empty());
            }
        }
    }
}
