//! Which segment objects make up a namespace's log: the one rule every
//! reader, `verify` and compaction apply to a listing of `ns/{ns}/segments/`.
//!
//! Segments are named by their inclusive index range. After an interrupted
//! merge, small segments may still sit under the merged one that covers
//! them: at each position the largest segment counts, the ones it covers are
//! leftovers (the compactor deletes them). The log is the covering chain,
//! which must start at index 0 and leave no gap below the floor (the size
//! of the latest signed checkpoint): a gap is a removed segment, and a read
//! must fail rather than answer without it.
//!
//! A range may be listed in several generations (a segment rewritten by an
//! erasure is written as the next generation before the older one is
//! deleted): the highest counts, the older ones are superseded leftovers.

use std::collections::BTreeMap;

use crate::segment::{parse_segment_name, segment_file_name};

/// An inclusive index range `(first, last)` of a segment.
pub type Range = (u64, u64);

/// A listing sorted out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tiling {
    /// The covering chain, in index order.
    pub cover: Vec<Range>,
    /// Segments inside an earlier one (leftovers of a merge).
    pub covered: Vec<Range>,
    /// Names that are not segment names.
    pub unexpected: Vec<String>,
    /// The file name of each listed range's highest generation, where
    /// that is not generation 0.
    pub names: BTreeMap<Range, String>,
    /// Older generations of a listed range: `(range, file name)`.
    pub superseded: Vec<(Range, String)>,
}

impl Tiling {
    /// Every listed segment, at each start the largest first (the order
    /// `verify` checks them in).
    pub fn all(&self) -> Vec<Range> {
        let mut all: Vec<Range> = self.cover.iter().chain(&self.covered).copied().collect();
        cover_order(&mut all);
        all
    }

    /// The file name of range `r`'s current (highest) generation.
    pub fn name(&self, r: Range) -> String {
        self.names
            .get(&r)
            .cloned()
            .unwrap_or_else(|| segment_file_name(r.0, r.1))
    }

    /// Every listed segment as `(range, file name)`: the cover and covered
    /// ranges as [`Tiling::all`] orders them, each followed by its
    /// superseded generations.
    pub fn all_named(&self) -> Vec<(Range, String)> {
        let mut out = Vec::new();
        for r in self.all() {
            out.push((r, self.name(r)));
            out.extend(self.superseded.iter().filter(|(s, _)| *s == r).cloned());
        }
        out
    }

    /// The first index range no segment of the cover holds: a gap between
    /// two segments (whatever the floor), or entries below `floor` after the
    /// last one.
    pub fn hole_below(&self, floor: u64) -> Option<Range> {
        let mut next = 0u64;
        for &(first, last) in &self.cover {
            if first > next {
                return Some((next, first - 1));
            }
            next = next.max(last.saturating_add(1));
        }
        (next < floor).then(|| (next, floor - 1))
    }

    /// The covering segment holding `index`, if any.
    pub fn holding(&self, index: u64) -> Option<Range> {
        self.cover
            .iter()
            .copied()
            .find(|&(a, b)| a <= index && index <= b)
    }
}

/// Sorts out a listing of segment object names (file names).
pub fn tile<'a>(names: impl IntoIterator<Item = &'a str>) -> Tiling {
    let mut generations: BTreeMap<Range, Vec<(u32, String)>> = BTreeMap::new();
    let mut unexpected = Vec::new();
    for name in names {
        match parse_segment_name(name) {
            Some((a, b, g)) if a <= b => generations
                .entry((a, b))
                .or_default()
                .push((g, name.to_string())),
            _ => unexpected.push(name.to_string()),
        }
    }
    let mut ranges: Vec<Range> = generations.keys().copied().collect();
    let mut names = BTreeMap::new();
    let mut superseded = Vec::new();
    for (r, mut gens) in generations {
        gens.sort();
        if let Some((g, newest)) = gens.pop()
            && g > 0
        {
            names.insert(r, newest);
        }
        superseded.extend(gens.into_iter().rev().map(|(_, n)| (r, n)));
    }
    cover_order(&mut ranges);
    let (cover, covered) = split_covered(&ranges);
    Tiling {
        cover,
        covered,
        unexpected,
        names,
        superseded,
    }
}

/// Orders segment ranges so that, at each start, the largest comes first;
/// covered ranges then follow the range that covers them.
pub fn cover_order(ranges: &mut [Range]) {
    ranges.sort_by_key(|&(a, b)| (a, std::cmp::Reverse(b)));
}

/// Splits sorted ranges into the covering chain and the ranges fully inside
/// an earlier one. Partial overlaps are returned as covering (callers report them).
pub fn split_covered(ranges: &[Range]) -> (Vec<Range>, Vec<Range>) {
    let mut cover = Vec::new();
    let mut covered = Vec::new();
    let mut end: Option<u64> = None;
    for &(a, b) in ranges {
        match end {
            Some(e) if b <= e => covered.push((a, b)),
            _ => {
                cover.push((a, b));
                end = Some(end.map_or(b, |e| e.max(b)));
            }
        }
    }
    (cover, covered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::segment_file_name;

    #[test]
    fn leftovers_holes_and_strays() {
        let names: Vec<String> = [(0, 4), (5, 9), (0, 9), (10, 14), (20, 24)]
            .iter()
            .map(|&(a, b)| segment_file_name(a, b))
            .chain(["notes.txt".to_string()])
            .collect();
        let t = tile(names.iter().map(String::as_str));
        assert_eq!(t.cover, [(0, 9), (10, 14), (20, 24)]);
        assert_eq!(t.covered, [(0, 4), (5, 9)]);
        assert_eq!(t.unexpected, ["notes.txt"]);
        // The gap 15-19 is a hole whatever the floor.
        assert_eq!(t.hole_below(12), Some((15, 19)));
        let contiguous = tile(names[..4].iter().map(String::as_str));
        assert_eq!(contiguous.hole_below(15), None);
        assert_eq!(contiguous.hole_below(18), Some((15, 17)));
        assert_eq!(t.holding(7), Some((0, 9)));
        assert_eq!(t.holding(17), None);
        assert_eq!(t.all().len(), 5);
        // Nothing listed: a hole exactly when the floor says entries exist.
        let empty = tile([]);
        assert_eq!(empty.hole_below(0), None);
        assert_eq!(empty.hole_below(3), Some((0, 2)));
        // A first segment that does not start at 0.
        let late = tile([segment_file_name(5, 9).as_str()]);
        assert_eq!(late.hole_below(0), Some((0, 4)));
    }

    #[test]
    fn the_highest_generation_of_a_range_counts() {
        use crate::segment::segment_file_name_gen;
        let names = [
            segment_file_name(0, 9),
            segment_file_name_gen(0, 9, 2),
            segment_file_name_gen(0, 9, 1),
            segment_file_name(10, 19),
        ];
        let t = tile(names.iter().map(String::as_str));
        assert_eq!(t.cover, [(0, 9), (10, 19)]);
        assert!(t.covered.is_empty());
        assert_eq!(t.name((0, 9)), segment_file_name_gen(0, 9, 2));
        assert_eq!(t.name((10, 19)), segment_file_name(10, 19));
        assert_eq!(
            t.superseded,
            [
                ((0, 9), segment_file_name_gen(0, 9, 1)),
                ((0, 9), segment_file_name(0, 9))
            ]
        );
        assert_eq!(t.all_named().len(), 4);
    }
}
