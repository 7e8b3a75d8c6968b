//! Page indexes as every reader reads them.
//!
//! A column chunk may have an offset index (where each data page is and its
//! first row) and a column index (each page's min, max and null count).
//! Engines use them to skip pages: stock DataFusion 55 reads them by default,
//! and an attacker review showed a re-sealed segment whose column index
//! lowered `session_id`'s page maximum making it count 0 rows of a session
//! that has 10, and an offset index pointing at other bytes making its
//! queries fail. So `verify` reads both strictly ([`crate::thrift_strict`])
//! and holds them to the chunk: the offset index must list exactly the data
//! pages that the walk of its page headers found ([`crate::page_headers`]),
//! at their offsets and sizes, with their first rows; the column index must
//! have one entry per page, and its bounds, null counts and level
//! histograms are checked against each page's rows by
//! [`crate::pruning::PruningCheck`] (which knows which rows each page holds
//! from this module).

use parquet::basic::Type as PhysicalType;
use parquet::file::metadata::ColumnChunkMetaData;

use crate::page_headers::DataPage;
use crate::thrift_strict::{Fields, Kind, Value, read_exact};

const PAGE_LOCATION: &[(i16, Kind)] = &[(1, Kind::I64), (2, Kind::I32), (3, Kind::I64)];
/// `OffsetIndex`: page locations, and the unencoded byte sizes of a byte
/// array column's pages.
const OFFSET_INDEX: &[(i16, Kind)] = &[
    (1, Kind::List(&Kind::Struct(PAGE_LOCATION))),
    (2, Kind::List(&Kind::I64)),
];
/// `ColumnIndex` without repetition level histograms (6): a segment's
/// columns are flat, and the writer writes none.
const COLUMN_INDEX: &[(i16, Kind)] = &[
    (1, Kind::List(&Kind::Bool)),
    (2, Kind::List(&Kind::Binary)),
    (3, Kind::List(&Kind::Binary)),
    (4, Kind::I32),
    (5, Kind::List(&Kind::I64)),
    (7, Kind::List(&Kind::I64)),
];

/// `BoundaryOrder`.
pub(crate) const UNORDERED: i32 = 0;
pub(crate) const ASCENDING: i32 = 1;
pub(crate) const DESCENDING: i32 = 2;

/// A chunk's page indexes, read and matched to its pages.
#[derive(Debug, Default)]
pub(crate) struct ChunkIndex {
    /// The first row of each data page within its row group, and one past
    /// the last row (pages.len() + 1 entries).
    pub bounds: Vec<u64>,
    /// Each data page's header.
    pub headers: Vec<DataPage>,
    /// Each page's unencoded byte size, when the offset index has them.
    pub unencoded: Option<Vec<i64>>,
    pub column: Option<ColumnIndex>,
}

/// A column index, one entry per page.
#[derive(Debug)]
pub(crate) struct ColumnIndex {
    pub null_pages: Vec<bool>,
    pub min: Vec<Vec<u8>>,
    pub max: Vec<Vec<u8>>,
    pub order: i32,
    pub null_counts: Option<Vec<i64>>,
    /// Per page, the count of values at each definition level (0 = null).
    pub def_levels: Option<Vec<i64>>,
}

/// Reads chunk `c`'s page indexes from `file` and matches them to its data
/// `pages`; `Err` says how they disagree.
pub(crate) fn read(
    file: &[u8],
    c: &ColumnChunkMetaData,
    pages: Vec<DataPage>,
) -> Result<ChunkIndex, String> {
    let mut out = ChunkIndex {
        bounds: Vec::with_capacity(pages.len() + 1),
        ..ChunkIndex::default()
    };
    let mut row = 0u64;
    for p in &pages {
        out.bounds.push(row);
        row = row.saturating_add(u64::try_from(p.rows).map_err(|_| "negative rows")?);
    }
    out.bounds.push(row);
    let n = pages.len();
    if let Some(f) = region(
        file,
        "offset index",
        c.offset_index_offset(),
        c.offset_index_length(),
    )? {
        let oi = read_exact(f, OFFSET_INDEX).map_err(|e| format!("offset index: {e}"))?;
        let locations = oi.list(1).ok_or("offset index without page locations")?;
        if locations.len() != n {
            return Err(format!(
                "offset index lists {} pages, the chunk has {n} data pages",
                locations.len()
            ));
        }
        for (k, (loc, p)) in locations.iter().zip(&pages).enumerate() {
            let Value::Struct(loc) = loc else {
                return Err("offset index: a page location is not a struct".into());
            };
            let listed = (loc.i64(1), loc.i32(2).map(i64::from), loc.i64(3));
            let actual = (Some(p.offset), Some(p.size), Some(out.bounds[k] as i64));
            if listed != actual {
                return Err(format!(
                    "offset index page {k} at {:?}, {:?} bytes, first row {:?}; the page is at {}, {} bytes, first row {}",
                    listed.0, listed.1, listed.2, p.offset, p.size, out.bounds[k]
                ));
            }
        }
        if let Some(sizes) = oi.list(2) {
            if c.column_type() != PhysicalType::BYTE_ARRAY || sizes.len() != n {
                return Err(format!(
                    "offset index: {} unencoded sizes for {n} pages of a {} column",
                    sizes.len(),
                    c.column_type()
                ));
            }
            out.unencoded = Some(i64s(sizes)?);
        }
    }
    if let Some(f) = region(
        file,
        "column index",
        c.column_index_offset(),
        c.column_index_length(),
    )? {
        let ci = read_exact(f, COLUMN_INDEX).map_err(|e| format!("column index: {e}"))?;
        out.column = Some(column_index(&ci, n, c)?);
    }
    out.headers = pages;
    Ok(out)
}

fn column_index(ci: &Fields, n: usize, c: &ColumnChunkMetaData) -> Result<ColumnIndex, String> {
    let (Some(null_pages), Some(min), Some(max), Some(order)) =
        (ci.list(1), ci.list(2), ci.list(3), ci.i32(4))
    else {
        return Err("column index: a required field is missing".into());
    };
    if [null_pages.len(), min.len(), max.len()] != [n; 3] {
        return Err(format!(
            "column index: {} null flags, {} minimums, {} maximums for {n} pages",
            null_pages.len(),
            min.len(),
            max.len()
        ));
    }
    if ![UNORDERED, ASCENDING, DESCENDING].contains(&order) {
        return Err(format!("column index: boundary order {order}"));
    }
    let null_counts = ci.list(5).map(i64s).transpose()?;
    if null_counts.as_ref().is_some_and(|v| v.len() != n) {
        return Err(format!("column index: null counts not one per page of {n}"));
    }
    let levels = usize::try_from(c.column_descr().max_def_level())
        .map_err(|_| "negative definition level")?
        + 1;
    let def_levels = ci.list(7).map(i64s).transpose()?;
    if def_levels
        .as_ref()
        .is_some_and(|v| levels != 2 || v.len() != n * levels)
    {
        return Err(format!(
            "column index: definition level histograms not {levels} per page of {n}"
        ));
    }
    Ok(ColumnIndex {
        null_pages: null_pages
            .iter()
            .map(|v| match v {
                Value::Bool(b) => Ok(*b),
                _ => Err("column index: a null flag is not a bool".to_string()),
            })
            .collect::<Result<_, _>>()?,
        min: binaries(min)?,
        max: binaries(max)?,
        order,
        null_counts,
        def_levels,
    })
}

/// The bytes an index's offset and length name, if the footer names any.
fn region<'a>(
    file: &'a [u8],
    what: &str,
    offset: Option<i64>,
    len: Option<i32>,
) -> Result<Option<&'a [u8]>, String> {
    match (offset, len) {
        (None, None) => Ok(None),
        (Some(o), Some(l)) => {
            let (o, l) = (usize::try_from(o), usize::try_from(l));
            let (Ok(o), Ok(l)) = (o, l) else {
                return Err(format!("{what}: a negative offset or length"));
            };
            o.checked_add(l)
                .and_then(|end| file.get(o..end))
                .map(Some)
                .ok_or_else(|| format!("{what} outside the file"))
        }
        _ => Err(format!(
            "{what}: an offset without its length, or a length without its offset"
        )),
    }
}

fn i64s(v: &[Value]) -> Result<Vec<i64>, String> {
    v.iter()
        .map(|v| match v {
            Value::I64(x) => Ok(*x),
            _ => Err("not an i64".to_string()),
        })
        .collect()
}

fn binaries(v: &[Value]) -> Result<Vec<Vec<u8>>, String> {
    v.iter()
        .map(|v| match v {
            Value::Binary(x) => Ok(x.to_vec()),
            _ => Err("not bytes".to_string()),
        })
        .collect()
}
