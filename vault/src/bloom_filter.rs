//! Bloom filter headers as every reader reads them.
//!
//! A column chunk's bloom filter is a Thrift `BloomFilterHeader` and its
//! bitset, at the offset and length the footer gives. parquet-rs (`verify`,
//! DataFusion) reads the header loosely (a field by its id whatever its type
//! tag) and takes the bitset as the rest of that length, ignoring the
//! header's `numBytes`; DuckDB skips a field tagged with another type and
//! takes `numBytes` bytes after the header as it reads it. An attacker
//! review re-sealed a segment whose `session_id` filter header was one
//! header to parquet-rs and a longer one to DuckDB: `verify` checked every
//! id against the first bitset and passed, while DuckDB probed a shifted
//! one and answered 0 rows for every session. So the header must read the
//! same for both: the writer's fields only, each once with its own type
//! ([`crate::thrift_strict`]), and `numBytes` exactly the rest of the
//! length, a whole number of 32-byte blocks.

use parquet::file::metadata::ColumnChunkMetaData;

use crate::thrift_strict::{Kind, read_struct};

const EMPTY: &[(i16, Kind)] = &[];
/// The unions `BloomFilterAlgorithm` (`BLOCK`), `BloomFilterHash`
/// (`XXHASH`) and `BloomFilterCompression` (`UNCOMPRESSED`): each the one
/// member the format defines, an empty struct.
const ONLY_MEMBER: &[(i16, Kind)] = &[(1, Kind::Struct(EMPTY))];
const HEADER: &[(i16, Kind)] = &[
    (1, Kind::I32),
    (2, Kind::Struct(ONLY_MEMBER)),
    (3, Kind::Struct(ONLY_MEMBER)),
    (4, Kind::Struct(ONLY_MEMBER)),
];

/// Why column chunk `c`'s bloom filter in `file` would not read the same
/// for every reader, if it would not. A chunk without one has none.
pub(crate) fn header_problem(file: &[u8], c: &ColumnChunkMetaData) -> Option<String> {
    let (Some(offset), Some(len)) = (c.bloom_filter_offset(), c.bloom_filter_length()) else {
        return None;
    };
    let region = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(o, l)| file.get(o..o.checked_add(l)?));
    let Some(region) = region else {
        return Some("bloom filter outside the file".into());
    };
    let (h, end) = match read_struct(region, 0, HEADER) {
        Ok(read) => read,
        Err(e) => return Some(format!("bloom filter header: {e}")),
    };
    let members = [2, 3, 4].iter().all(|&id| {
        h.strukt(id)
            .is_some_and(|u| u.strukt(1).is_some_and(|m| m.0.is_empty()))
    });
    let bitset = region.len() - end;
    match h.i32(1) {
        _ if !members => {
            Some("bloom filter header: an algorithm, hash or compression missing".into())
        }
        Some(n) if usize::try_from(n) == Ok(bitset) && n > 0 && n % 32 == 0 => None,
        n => Some(format!(
            "bloom filter header declares {n:?} bytes of bitset, its length leaves {bitset}"
        )),
    }
}
