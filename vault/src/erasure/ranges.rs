//! Sets of log indices as sorted, disjoint, inclusive ranges: how erasure
//! orders name the entries they erase (a time range or a retention run is a
//! handful of ranges however many entries it holds) and how `verify` checks
//! an erased entry against them.

use serde::{Deserialize, Serialize};

/// Sorted, disjoint, non-adjacent inclusive ranges `[first, last]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct IndexRanges(Vec<(u64, u64)>);

impl<'de> Deserialize<'de> for IndexRanges {
    /// Refuses a list that is not sorted, disjoint and non-adjacent: one
    /// set has exactly one spelling, so a recorded order means one thing.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<(u64, u64)>::deserialize(d)?;
        IndexRanges::from_ranges(v).map_err(serde::de::Error::custom)
    }
}

impl IndexRanges {
    /// The empty set.
    pub fn new() -> IndexRanges {
        IndexRanges(Vec::new())
    }

    /// From ranges already in canonical form (sorted, disjoint, not adjacent).
    pub fn from_ranges(v: Vec<(u64, u64)>) -> Result<IndexRanges, String> {
        for (i, &(a, b)) in v.iter().enumerate() {
            if a > b {
                return Err(format!("range {a}-{b} is reversed"));
            }
            if i > 0 && a <= v[i - 1].1.saturating_add(1) {
                return Err(format!(
                    "range {a}-{b} is not after {}-{} with a gap",
                    v[i - 1].0,
                    v[i - 1].1
                ));
            }
        }
        Ok(IndexRanges(v))
    }

    /// The indices `first..=last` (empty when `first > last`).
    pub fn span(first: u64, last: u64) -> IndexRanges {
        IndexRanges(if first <= last {
            vec![(first, last)]
        } else {
            Vec::new()
        })
    }

    /// From indices in increasing order (duplicates allowed).
    pub fn from_sorted(indices: impl IntoIterator<Item = u64>) -> IndexRanges {
        let mut r = IndexRanges::new();
        for i in indices {
            r.push(i);
        }
        r
    }

    /// Adds `i`, which must not be below the largest index held (indices
    /// streamed in log order); a smaller one is merged in properly.
    pub fn push(&mut self, i: u64) {
        match self.0.last_mut() {
            Some((_, b)) if i <= *b => {
                if !self.contains(i) {
                    self.union(&IndexRanges(vec![(i, i)]));
                }
            }
            Some((_, b)) if i == *b + 1 => *b = i,
            _ => self.0.push((i, i)),
        }
    }

    /// Adds every index of `other`.
    pub fn union(&mut self, other: &IndexRanges) {
        let mut all: Vec<(u64, u64)> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
        for (a, b) in all {
            match out.last_mut() {
                Some((_, lb)) if a <= lb.saturating_add(1) => *lb = (*lb).max(b),
                _ => out.push((a, b)),
            }
        }
        self.0 = out;
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: u64) -> bool {
        let k = self.0.partition_point(|&(_, b)| b < i);
        self.0.get(k).is_some_and(|&(a, _)| a <= i)
    }

    /// Whether any index of `first..=last` is in the set.
    pub fn intersects(&self, first: u64, last: u64) -> bool {
        let k = self.0.partition_point(|&(_, b)| b < first);
        self.0.get(k).is_some_and(|&(a, _)| a <= last)
    }

    /// The indices of the set not in `other`, as ranges.
    pub fn minus(&self, other: &IndexRanges) -> IndexRanges {
        let mut out = Vec::new();
        for &(a, b) in &self.0 {
            // The first index of `a..=b` not yet known to be in `other`.
            let mut start = Some(a);
            let k = other.0.partition_point(|&(_, ob)| ob < a);
            for &(oa, ob) in &other.0[k..] {
                let Some(s) = start else { break };
                if oa > b {
                    break;
                }
                if oa > s {
                    out.push((s, oa - 1));
                }
                start = (ob < b).then(|| ob + 1);
            }
            if let Some(s) = start {
                out.push((s, b));
            }
        }
        IndexRanges(out)
    }

    /// Number of indices held.
    pub fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |n, &(a, b)| {
            n.saturating_add((b - a).saturating_add(1))
        })
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The largest index held.
    pub fn max(&self) -> Option<u64> {
        self.0.last().map(|&(_, b)| b)
    }

    /// The smallest index held.
    pub fn min(&self) -> Option<u64> {
        self.0.first().map(|&(a, _)| a)
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Every index, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(a, b)| a..=b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_merge_query_and_subtract() {
        let mut r = IndexRanges::from_sorted([1, 2, 3, 7, 8, 10]);
        assert_eq!(r.ranges(), [(1, 3), (7, 8), (10, 10)]);
        assert_eq!(r.count(), 6);
        assert!(r.contains(2) && r.contains(10) && !r.contains(4) && !r.contains(0));
        assert!(r.intersects(4, 7) && !r.intersects(4, 6) && !r.intersects(11, 99));
        r.push(5);
        assert_eq!(r.ranges(), [(1, 3), (5, 5), (7, 8), (10, 10)]);
        r.push(11);
        assert_eq!(r.ranges(), [(1, 3), (5, 5), (7, 8), (10, 11)]);
        r.union(&IndexRanges::from_sorted([4, 6, 9]));
        assert_eq!(r.ranges(), [(1, 11)]);
        let m = r.minus(&IndexRanges::from_sorted([1, 5, 6, 11]));
        assert_eq!(m.ranges(), [(2, 4), (7, 10)]);
        assert_eq!(r.minus(&r).count(), 0);
        assert_eq!(r.minus(&IndexRanges::new()), r);
        assert_eq!(r.iter().count(), 11);
    }

    #[test]
    fn only_the_canonical_spelling_is_accepted() {
        let ok: IndexRanges = serde_json::from_str("[[0,4],[6,6]]").unwrap();
        assert_eq!(ok.count(), 6);
        for bad in ["[[4,0]]", "[[0,4],[5,6]]", "[[6,7],[0,1]]", "[[0,4],[3,9]]"] {
            assert!(serde_json::from_str::<IndexRanges>(bad).is_err(), "{bad}");
        }
    }
}
