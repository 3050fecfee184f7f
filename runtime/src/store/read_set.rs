//! Read sets: the key intervals a transaction consumed, and a normalized form that answers
//! "does this written key fall in what was read?" in logarithmic time.

use super::engine::{KeyRange, Space, ALL_SPACES};
use std::ops::Bound;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadSet {
    intervals: Vec<(Space, KeyRange)>,
}

impl ReadSet {
    pub fn add(&mut self, space: Space, range: KeyRange) {
        self.intervals.push((space, range));
    }

    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Space, KeyRange)> {
        self.intervals.iter()
    }

    /// Sorted, merged, half-open intervals per space.
    pub fn normalize(&self) -> NormalizedReadSet {
        let mut by_space = BySpace::default();
        for (space, range) in &self.intervals {
            let start = match &range.start {
                Bound::Included(s) => s.clone(),
                Bound::Excluded(s) => successor(s),
                Bound::Unbounded => Vec::new(),
            };
            let end = match &range.end {
                Bound::Included(e) => Some(successor(e)),
                Bound::Excluded(e) => Some(e.clone()),
                Bound::Unbounded => None,
            };
            if end.as_ref().is_some_and(|e| *e <= start) {
                continue;
            }
            by_space[space.code() as usize].push(HalfOpen { start, end });
        }
        for intervals in &mut by_space {
            intervals.sort_by(|a, b| a.start.cmp(&b.start));
            let mut merged: Vec<HalfOpen> = Vec::with_capacity(intervals.len());
            for next in intervals.drain(..) {
                match merged.last_mut() {
                    Some(last) if last.end.as_ref().is_none_or(|e| next.start <= *e) => {
                        last.end = match (&last.end, next.end) {
                            (None, _) | (_, None) => None,
                            (Some(a), Some(b)) => Some(if *a >= b { a.clone() } else { b }),
                        };
                    }
                    _ => merged.push(next),
                }
            }
            *intervals = merged;
        }
        NormalizedReadSet::new(by_space)
    }
}

/// The smallest key greater than `key` in byte order.
fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HalfOpen {
    start: Vec<u8>,
    /// Exclusive; `None` is unbounded.
    end: Option<Vec<u8>>,
}

/// Intervals per space, at the index of its code: the committer asks `contains` of every
/// key each newer commit wrote, so the space is found without hashing (`contains` was 3.7%
/// of the server's samples in `bench --only chat-send` with a hash map here, 1.7% without).
type BySpace = [Vec<HalfOpen>; ALL_SPACES.len()];

#[derive(Clone, Debug, Default)]
pub struct NormalizedReadSet {
    by_space: BySpace,
    /// `key_bits` of each interval when every one is a single key (what a mutation that
    /// reads by id reads); `None` when any is a range.
    point_bits: Option<Vec<u128>>,
}

/// Two bits of 128 for `key` in `space`. A set of keys is summed up by OR-ing its keys' bits,
/// and a key can be in the set only if both its bits are (a Bloom filter): the committer
/// asks this of each newer commit for a transaction's point reads before it looks key by
/// key (`NormalizedReadSet::may_meet`).
pub fn key_bits(space: Space, key: &[u8]) -> u128 {
    // FNV-1a (keys are short, and this runs for a few keys per commit), then a finalizer
    // that spreads every input bit over the bits taken: keys that differ only in their last
    // bytes (ids, sequence numbers) would otherwise share low bits.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(space.code());
    for &byte in key {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (1u128 << (hash & 127)) | (1u128 << ((hash >> 32) & 127))
}

/// `key_bits` of every interval, if each holds one key (`[k, k + 0x00)`), else `None`.
fn point_bits(by_space: &BySpace) -> Option<Vec<u128>> {
    let mut bits = Vec::new();
    for space in ALL_SPACES {
        for iv in &by_space[space.code() as usize] {
            let end = iv.end.as_deref()?;
            let point = end.len() == iv.start.len() + 1
                && end.last() == Some(&0)
                && end[..iv.start.len()] == iv.start[..];
            if !point {
                return None;
            }
            bits.push(key_bits(space, &iv.start));
        }
    }
    Some(bits)
}

impl NormalizedReadSet {
    /// Every interval as `(space, start, end)`: `start` inclusive, `end` exclusive, `None`
    /// unbounded.
    pub fn intervals(&self) -> impl Iterator<Item = (Space, &[u8], Option<&[u8]>)> {
        ALL_SPACES.iter().flat_map(|space| {
            self.by_space[space.code() as usize]
                .iter()
                .map(move |iv| (*space, iv.start.as_slice(), iv.end.as_deref()))
        })
    }

    /// The set of `intervals` as [`NormalizedReadSet::intervals`] gave them (a forwarded
    /// commit's): per space, sorted by start, disjoint and non-empty, or refused.
    pub fn from_normalized(
        intervals: Vec<(Space, Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<NormalizedReadSet, String> {
        let mut by_space = BySpace::default();
        for (space, start, end) in intervals {
            let list = &mut by_space[space.code() as usize];
            if end.as_ref().is_some_and(|e| *e <= start) {
                return Err(format!("an empty read interval in {space:?}"));
            }
            if let Some(last) = list.last() {
                if last.end.as_ref().is_none_or(|e| start < *e) {
                    return Err(format!(
                        "read intervals in {space:?} out of order or overlapping"
                    ));
                }
            }
            list.push(HalfOpen { start, end });
        }
        Ok(NormalizedReadSet::new(by_space))
    }

    fn new(by_space: BySpace) -> Self {
        let point_bits = point_bits(&by_space);
        NormalizedReadSet {
            by_space,
            point_bits,
        }
    }

    /// Whether a commit whose keys' `key_bits` OR to `written` may have written a key this
    /// set holds. `false` is certain; `true` means ask `contains` of each key.
    pub fn may_meet(&self, written: u128) -> bool {
        match &self.point_bits {
            Some(points) => points.iter().any(|bits| written & bits == *bits),
            None => true,
        }
    }

    pub fn contains(&self, space: Space, key: &[u8]) -> bool {
        let intervals = &self.by_space[space.code() as usize];
        let after = intervals.partition_point(|iv| iv.start.as_slice() <= key);
        after > 0
            && intervals[after - 1]
                .end
                .as_ref()
                .is_none_or(|e| key < e.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_intervals_answer_membership() {
        let mut reads = ReadSet::default();
        let range = |s: &[u8], e: &[u8]| KeyRange {
            start: Bound::Included(s.to_vec()),
            end: Bound::Excluded(e.to_vec()),
        };
        reads.add(Space::Indexes, range(b"b", b"d"));
        reads.add(Space::Indexes, range(b"c", b"f"));
        reads.add(Space::Indexes, KeyRange::point(b"x".to_vec()));
        reads.add(Space::Catalog, range(b"a", b"z"));
        let n = reads.normalize();
        for (key, expected) in [
            (&b"a"[..], false),
            (b"b", true),
            (b"e", true),
            (b"f", false),
            (b"x", true),
            (b"x\0", false),
            (b"w", false),
        ] {
            assert_eq!(n.contains(Space::Indexes, key), expected, "{key:?}");
        }
        assert!(!n.contains(Space::Documents, b"c"));
    }

    /// The filter never hides a conflict: a commit that wrote a key the set holds always
    /// may meet it. It passes over most commits that did not, when every read is a key; with
    /// a range read, every commit is looked at key by key.
    #[test]
    fn the_filter_passes_every_commit_that_wrote_a_read_key_and_few_others() {
        let key = |n: u32| {
            let mut k = vec![7u8; 24];
            k.extend_from_slice(&n.to_be_bytes());
            k
        };
        let mut reads = ReadSet::default();
        for n in [3, 500, 9_000] {
            reads.add(Space::Indexes, KeyRange::point(key(n)));
        }
        reads.add(Space::Receipts, KeyRange::point(key(3)));
        let points = reads.normalize();
        let mut ranged = reads.clone();
        ranged.add(
            Space::Catalog,
            KeyRange {
                start: Bound::Included(b"a".to_vec()),
                end: Bound::Excluded(b"b".to_vec()),
            },
        );
        let ranged = ranged.normalize();
        let (mut passed, mut conflicting) = (0, 0);
        for first in 0..2_000u32 {
            // A commit of six keys, as a chat message writes.
            let keys: Vec<(Space, Vec<u8>)> = (0..6)
                .map(|i| {
                    let space = if i == 5 {
                        Space::Receipts
                    } else {
                        Space::Indexes
                    };
                    (space, key(first * 6 + i))
                })
                .collect();
            let written = keys.iter().fold(0, |b, (s, k)| b | key_bits(*s, k));
            let conflicts = keys.iter().any(|(s, k)| points.contains(*s, k));
            if conflicts {
                conflicting += 1;
                assert!(points.may_meet(written), "commit {first} hid a conflict");
            }
            passed += points.may_meet(written) as usize;
            assert!(ranged.may_meet(written));
        }
        // Three commits hold a read key (3 and 500 and 9,000 fall in them).
        assert_eq!(conflicting, 3);
        assert!(passed < 200, "{passed} of 2,000 commits passed the filter");
    }
}
