//! Page headers as every reader reads them.
//!
//! A column chunk is a run of pages, each a Thrift (compact protocol)
//! `PageHeader` and its body. Readers do not decode those headers alike:
//! parquet-rs (our readers, `verify` included) takes a header field by its
//! id whatever type it is tagged with, and the last copy of a repeated
//! field; Arrow C++ (pyarrow) and DuckDB skip a field whose tag is not the
//! declared type. An attacker review re-sealed a segment whose first
//! `content` header said "data page of 600 forged values" to the C++
//! readers and, through repeated fields tagged i64, "index page spanning
//! the forged one" to parquet-rs, which skipped it and decoded the real
//! pages: pyarrow and DuckDB showed forged content for every row while
//! `verify` said OK. So `verify` walks every chunk's headers here, strictly:
//! fields in increasing order, each once, each with its declared type, no
//! field the writer does not know, only dictionary and version 2 data pages
//! (the dictionary first, where the footer says), pages ending exactly where
//! the chunk does and holding the values the footer declares. A later review
//! showed DuckDB forged `content` through a version 1 page whose levels were
//! declared `BIT_PACKED` (parquet-rs and pyarrow read bare level bits, DuckDB
//! a length-prefixed run, then other dictionary indexes): the writer writes
//! version 2 pages only, with the encodings of [`DATA_ENCODINGS`], and their
//! definition levels are decoded here too ([`crate::encoded_runs`]), each 0
//! or 1. Headers that pass mean the same to every reader.

use parquet::file::metadata::ColumnChunkMetaData;

use crate::thrift_strict::{Fields, Kind, Value, read_struct};

// `PageType`.
const DICTIONARY_PAGE: i32 = 2;
const DATA_PAGE_V2: i32 = 3;

// `Encoding`.
pub(crate) const PLAIN: i32 = 0;
pub(crate) const RLE_DICTIONARY: i32 = 8;
pub(crate) const DELTA_BINARY_PACKED: i32 = 5;
pub(crate) const DELTA_BYTE_ARRAY: i32 = 7;
/// The encodings a data page of the writer's may have: dictionary indexes,
/// plain values, and the fallbacks of a version 2 writer whose dictionary
/// grew too large (deltas of integers; of byte arrays' prefixes and
/// suffixes). `DELTA_LENGTH_BYTE_ARRAY` (6) is never written.
pub(crate) const DATA_ENCODINGS: [i32; 4] =
    [PLAIN, DELTA_BINARY_PACKED, DELTA_BYTE_ARRAY, RLE_DICTIONARY];

const STATISTICS: &[(i16, Kind)] = &[
    (1, Kind::Binary),
    (2, Kind::Binary),
    (3, Kind::I64),
    (4, Kind::I64),
    (5, Kind::Binary),
    (6, Kind::Binary),
    (7, Kind::Bool),
    (8, Kind::Bool),
];
const DICTIONARY_PAGE_HEADER: &[(i16, Kind)] = &[(1, Kind::I32), (2, Kind::I32), (3, Kind::Bool)];
const DATA_PAGE_HEADER_V2: &[(i16, Kind)] = &[
    (1, Kind::I32),
    (2, Kind::I32),
    (3, Kind::I32),
    (4, Kind::I32),
    (5, Kind::I32),
    (6, Kind::I32),
    (7, Kind::Bool),
    (8, Kind::Struct(STATISTICS)),
];
/// `PageHeader` without `crc` (4), `data_page_header` (5, version 1) or
/// `index_page_header` (6): the writer writes none of them (a checksum some
/// readers check and others ignore; version 1 pages declare their level
/// encodings, which readers honour differently), and sequential readers skip
/// index pages, bodies and all.
const PAGE_HEADER: &[(i16, Kind)] = &[
    (1, Kind::I32),
    (2, Kind::I32),
    (3, Kind::I32),
    (7, Kind::Struct(DICTIONARY_PAGE_HEADER)),
    (8, Kind::Struct(DATA_PAGE_HEADER_V2)),
];

/// The statistics a data page header may carry (the writer writes none;
/// segments of other writers or versions may), raw as the header holds them.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PageStatistics {
    /// Lower bounds: `min_value`, and the deprecated `min`.
    pub lower: Vec<Vec<u8>>,
    /// Upper bounds: `max_value`, and the deprecated `max`.
    pub upper: Vec<Vec<u8>>,
    pub null_count: Option<i64>,
    /// Whether it declares a distinct count (planners would believe it).
    pub distinct_count: bool,
    /// `min_value` and `max_value` when marked exact.
    pub exact_min: Option<Vec<u8>>,
    pub exact_max: Option<Vec<u8>>,
}

impl PageStatistics {
    fn read(f: &Fields) -> Self {
        let bytes = |id| match f.get(id) {
            Some(Value::Binary(b)) => Some(b.to_vec()),
            _ => None,
        };
        let flag = |id| f.get(id) == Some(&Value::Bool(true));
        PageStatistics {
            lower: [bytes(6), bytes(2)].into_iter().flatten().collect(),
            upper: [bytes(5), bytes(1)].into_iter().flatten().collect(),
            null_count: f.i64(3),
            distinct_count: f.get(4).is_some(),
            exact_min: bytes(6).filter(|_| flag(8)),
            exact_max: bytes(5).filter(|_| flag(7)),
        }
    }
}

/// One data page of a chunk, as its header says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DataPage {
    /// Where its header starts in the file.
    pub offset: i64,
    /// Its header and body together.
    pub size: i64,
    /// Its values, which are its rows: a segment's schema is flat.
    pub rows: i64,
    /// The nulls its header declares.
    pub nulls: i64,
    /// How its values are encoded (one of [`DATA_ENCODINGS`]).
    pub encoding: i32,
    /// The bytes of its values once unpacked: its declared unpacked size
    /// less its level bytes, which a version 2 page stores as they are.
    pub value_bytes: i64,
    pub statistics: Option<PageStatistics>,
}

/// What the walk of a chunk's pages found.
#[derive(Debug, Default)]
pub(crate) struct ChunkPages {
    pub data: Vec<DataPage>,
    /// Every page's header and declared unpacked body, summed: the footer's
    /// `total_uncompressed_size` of the chunk.
    pub unpacked: i64,
    /// (page type, encoding) of every page, in order: the footer's
    /// `encoding_stats`.
    pub encodings: Vec<(i32, i32)>,
}

/// Why column chunk `c` of `file` would not read the same for every reader,
/// if it would not (see the module docs).
#[cfg(test)]
pub(crate) fn chunk_problem(file: &[u8], c: &ColumnChunkMetaData) -> Option<String> {
    walk(file, c).err()
}

/// The pages of column chunk `c` of `file`, if their headers read the same
/// for every reader (see the module docs).
pub(crate) fn walk(file: &[u8], c: &ColumnChunkMetaData) -> Result<ChunkPages, String> {
    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
    let start = usize::try_from(start).map_err(|_| "negative chunk offset")?;
    let len = usize::try_from(c.compressed_size()).map_err(|_| "negative chunk size")?;
    let end = start
        .checked_add(len)
        .filter(|&e| start >= 4 && e <= file.len())
        .ok_or("chunk outside the file")?;
    if let Some(p) = crate::compressed_pages::codec_problem(c.compression()) {
        return Err(p);
    }
    let (mut at, mut values, mut out) = (start, 0i64, ChunkPages::default());
    while at < end {
        let (h, body_at) = read_struct(&file[..end], at, PAGE_HEADER)
            .map_err(|e| format!("page header at {at}: {e}"))?;
        let (Some(ty), Some(unpacked), Some(size)) = (h.i32(1), h.i32(2), h.i32(3)) else {
            return Err(format!("page header at {at}: a required field is missing"));
        };
        let body = usize::try_from(size).map_err(|_| format!("page at {at}: negative size"))?;
        let next = body_at.checked_add(body).filter(|&n| n <= end);
        let next = next.ok_or_else(|| format!("page at {at} runs past its chunk"))?;
        // A chunk without a codec: no reader unpacks its pages, so each
        // must be as long as it says it is unpacked (parquet-rs checks the
        // size only of what it decompresses, DuckDB of every page).
        let uncompressed = c.compression() == parquet::basic::Compression::UNCOMPRESSED;
        if uncompressed && unpacked != size {
            return Err(format!(
                "page at {at}: {size} bytes stored as they are, {unpacked} declared unpacked"
            ));
        }
        out.unpacked += (body_at - at) as i64 + i64::from(unpacked);
        let (dict, v2) = (h.strukt(7), h.strukt(8));
        let page = match (ty, dict, v2) {
            (DICTIONARY_PAGE, Some(d), None)
                if at == start && c.dictionary_page_offset().is_some() =>
            {
                if d.i32(2) != Some(PLAIN) {
                    return Err(format!(
                        "page at {at}: a dictionary encoded {:?}, not plain",
                        d.i32(2)
                    ));
                }
                if let Some(p) = crate::compressed_pages::body_problem(
                    c.compression(),
                    &file[body_at..next],
                    usize::try_from(unpacked).unwrap_or(0),
                ) {
                    return Err(format!("page at {at}: {p}"));
                }
                out.encodings.push((ty, PLAIN));
                None
            }
            (DATA_PAGE_V2, None, Some(d)) => {
                let encoding = d.i32(4).unwrap_or(-1);
                if !DATA_ENCODINGS.contains(&encoding)
                    || (encoding == RLE_DICTIONARY && c.dictionary_page_offset().is_none())
                {
                    return Err(format!(
                        "page at {at}: values encoded {encoding}, which the writer does not write there"
                    ));
                }
                out.encodings.push((ty, encoding));
                // No more values than a row group of the writer's holds: a
                // few bytes of runs or deltas can declare billions, which
                // every reader (`verify` first) would then decode.
                if d.i32(1)
                    .is_some_and(|n| n < 0 || n as usize > crate::segment::ROW_GROUP_ROWS)
                {
                    return Err(format!(
                        "page at {at}: {:?} values, more than the writer puts in a row group",
                        d.i32(1)
                    ));
                }
                // num_values, num_nulls, num_rows: in a flat schema every
                // value is a row (readers skip rows by the one or the other).
                if d.i32(1) != d.i32(3) {
                    return Err(format!(
                        "page at {at}: declares {:?} values in {:?} rows",
                        d.i32(1),
                        d.i32(3)
                    ));
                }
                // Level bytes: none for repetition (flat), none for
                // definition in a required column.
                let (def, rep) = (d.i32(5).unwrap_or(-1), d.i32(6).unwrap_or(-1));
                let max_def = c.column_descr().max_def_level();
                if rep != 0 || (max_def == 0 && def != 0) || def < 0 {
                    return Err(format!(
                        "page at {at}: {def} definition and {rep} repetition level bytes where the column has none"
                    ));
                }
                let levels = body_at..body_at + def as usize;
                if def > 0
                    && let Some(p) = file
                        .get(levels)
                        .ok_or("levels past the chunk".to_string())
                        .and_then(|b| match max_def {
                            1 => crate::encoded_runs::runs_problem(
                                b,
                                1,
                                usize::try_from(d.i32(1).unwrap_or(0)).unwrap_or(0),
                                1,
                            ),
                            m => Err(format!("a maximum level of {m}, where the writer's is 1")),
                        })
                        .err()
                {
                    return Err(format!("page at {at}: definition levels: {p}"));
                }
                // Nor does any unpack a version 2 body flagged stored as it
                // is. (A body of levels only that is flagged compressed is
                // not unpacked by parquet-rs and unpacks to nothing for the
                // others: earlier builds wrote LZ4's one-byte empty frame
                // there.)
                let stored = uncompressed || d.get(7) == Some(&Value::Bool(false));
                if stored && unpacked != size {
                    return Err(format!(
                        "page at {at}: {size} bytes stored as they are, {unpacked} declared unpacked"
                    ));
                }
                // The levels are stored as they are, ahead of the values,
                // inside both sizes.
                if def > unpacked || def > size {
                    return Err(format!(
                        "page at {at}: {def} level bytes in a page of {size} bytes, {unpacked} unpacked"
                    ));
                }
                // The values, compressed: as every reader unpacks them.
                let packed = &file[body_at + def as usize..next];
                if !stored
                    && !packed.is_empty()
                    && let Some(p) = crate::compressed_pages::body_problem(
                        c.compression(),
                        packed,
                        usize::try_from(unpacked - def).unwrap_or(0),
                    )
                {
                    return Err(format!("page at {at}: {p}"));
                }
                Some((d.i32(1), d.i32(2), d.strukt(8), encoding, unpacked - def))
            }
            (DATA_PAGE_V2, ..) => {
                return Err(format!("page at {at}: not one data page header"));
            }
            _ => {
                return Err(format!(
                    "page at {at}: type {ty} where the writer puts none"
                ));
            }
        };
        if let Some((n, nulls, statistics, encoding, value_bytes)) = page {
            let (Some(n), Some(nulls)) = (n, nulls) else {
                return Err(format!("page at {at}: a required field is missing"));
            };
            values += i64::from(n);
            out.data.push(DataPage {
                offset: at as i64,
                size: (next - at) as i64,
                rows: i64::from(n),
                nulls: i64::from(nulls),
                encoding,
                value_bytes: i64::from(value_bytes),
                statistics: statistics.map(PageStatistics::read),
            });
        }
        at = next;
    }
    if c.dictionary_page_offset().is_some()
        && out.data.first().map(|p| p.offset) == Some(start as i64)
    {
        return Err("a dictionary page offset where there is no dictionary page".into());
    }
    if out.data.first().map(|p| p.offset) != Some(c.data_page_offset()) {
        return Err(format!(
            "the data page offset {} is not where the first data page is",
            c.data_page_offset()
        ));
    }
    if values != c.num_values() {
        return Err(format!(
            "its pages hold {values} values, the footer declares {}",
            c.num_values()
        ));
    }
    Ok(out)
}
