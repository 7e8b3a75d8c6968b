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
//! field the writer does not know, only dictionary and data pages (the
//! dictionary first, where the footer says), pages ending exactly where the
//! chunk does and holding the values the footer declares. Headers that pass
//! mean the same to every reader.

use parquet::file::metadata::ColumnChunkMetaData;

// Compact protocol field types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const I32: u8 = 5;
const I64: u8 = 6;
const BINARY: u8 = 8;
const STRUCT: u8 = 12;

// `PageType`.
const DATA_PAGE: i32 = 0;
const DICTIONARY_PAGE: i32 = 2;
const DATA_PAGE_V2: i32 = 3;

/// What a field may be.
#[derive(Clone, Copy)]
enum Kind {
    I32,
    I64,
    Bool,
    Binary,
    Struct(&'static [(i16, Kind)]),
}

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
const DATA_PAGE_HEADER: &[(i16, Kind)] = &[
    (1, Kind::I32),
    (2, Kind::I32),
    (3, Kind::I32),
    (4, Kind::I32),
    (5, Kind::Struct(STATISTICS)),
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
/// `PageHeader` without `index_page_header` (6): the writer writes no index
/// pages, and sequential readers skip them, bodies and all.
const PAGE_HEADER: &[(i16, Kind)] = &[
    (1, Kind::I32),
    (2, Kind::I32),
    (3, Kind::I32),
    (4, Kind::I32),
    (5, Kind::Struct(DATA_PAGE_HEADER)),
    (7, Kind::Struct(DICTIONARY_PAGE_HEADER)),
    (8, Kind::Struct(DATA_PAGE_HEADER_V2)),
];

/// A strict reader of compact-protocol bytes.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self.b.get(self.at).ok_or("cut short")?;
        self.at += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err("varint too long".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn i64(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, String> {
        i32::try_from(self.i64()?).map_err(|_| "i32 out of range".into())
    }

    /// Reads a struct laid out as `spec` says; returns its i32 fields and
    /// its nested structs' by id (`(id, value)`, nested ones as `(id*100 +
    /// inner id, value)`, enough for the two levels used here).
    fn strukt(&mut self, spec: &[(i16, Kind)], depth: u8) -> Result<Vec<(i32, i32)>, String> {
        if depth > 3 {
            return Err("nested too deep".into());
        }
        let (mut last, mut out) = (0i16, Vec::new());
        loop {
            let h = self.byte()?;
            if h == 0 {
                return Ok(out);
            }
            let (delta, ty) = (h >> 4, h & 0x0f);
            let id = match delta {
                0 => i16::try_from(self.i64()?).map_err(|_| "field id out of range")?,
                d => last
                    .checked_add(i16::from(d))
                    .ok_or("field id out of range")?,
            };
            if id <= last {
                return Err(format!("field {id} out of order or repeated"));
            }
            last = id;
            let Some(&(_, kind)) = spec.iter().find(|(i, _)| *i == id) else {
                return Err(format!("field {id} is not one the writer writes"));
            };
            match (kind, ty) {
                (Kind::I32, I32) => out.push((i32::from(id), self.i32()?)),
                (Kind::I64, I64) => {
                    self.i64()?;
                }
                (Kind::Bool, BOOL_TRUE | BOOL_FALSE) => {}
                (Kind::Binary, BINARY) => {
                    let len = usize::try_from(self.varint()?).map_err(|_| "length")?;
                    let end = self.at.checked_add(len).ok_or("length")?;
                    if end > self.b.len() {
                        return Err("cut short".into());
                    }
                    self.at = end;
                }
                (Kind::Struct(inner), STRUCT) => {
                    for (i, v) in self.strukt(inner, depth + 1)? {
                        out.push((i32::from(id) * 100 + i, v));
                    }
                }
                _ => return Err(format!("field {id} tagged with type {ty}, not its own")),
            }
        }
    }
}

/// Why column chunk `c` of `file` would not read the same for every reader,
/// if it would not (see the module docs).
pub(crate) fn chunk_problem(file: &[u8], c: &ColumnChunkMetaData) -> Option<String> {
    walk(file, c).err()
}

fn walk(file: &[u8], c: &ColumnChunkMetaData) -> Result<(), String> {
    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
    let start = usize::try_from(start).map_err(|_| "negative chunk offset")?;
    let len = usize::try_from(c.compressed_size()).map_err(|_| "negative chunk size")?;
    let end = start
        .checked_add(len)
        .filter(|&e| start >= 4 && e <= file.len())
        .ok_or("chunk outside the file")?;
    let (mut at, mut values, mut first_data) = (start, 0i64, None);
    while at < end {
        let mut r = Reader {
            b: &file[..end],
            at,
        };
        let fields = r
            .strukt(PAGE_HEADER, 0)
            .map_err(|e| format!("page header at {at}: {e}"))?;
        let get = |id: i32| fields.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
        let (Some(ty), Some(_), Some(size)) = (get(1), get(2), get(3)) else {
            return Err(format!("page header at {at}: a required field is missing"));
        };
        let body = usize::try_from(size).map_err(|_| format!("page at {at}: negative size"))?;
        let next = r.at.checked_add(body).filter(|&n| n <= end);
        let next = next.ok_or_else(|| format!("page at {at} runs past its chunk"))?;
        let sub = |id: i32| fields.iter().any(|(i, _)| i / 100 == id);
        match ty {
            DICTIONARY_PAGE if at == start && c.dictionary_page_offset().is_some() && sub(7) => {
                if sub(5) || sub(8) {
                    return Err(format!("page at {at}: headers of two page types"));
                }
            }
            DATA_PAGE | DATA_PAGE_V2 => {
                let (own, other) = if ty == DATA_PAGE { (5, 8) } else { (8, 5) };
                let n = get(own * 100 + 1);
                if sub(other) || sub(7) || n.is_none() {
                    return Err(format!("page at {at}: not one data page header"));
                }
                values += i64::from(n.unwrap_or(0));
                first_data.get_or_insert(at);
            }
            _ => {
                return Err(format!(
                    "page at {at}: type {ty} where the writer puts none"
                ));
            }
        }
        at = next;
    }
    if c.dictionary_page_offset().is_some() && first_data == Some(start) {
        return Err("a dictionary page offset where there is no dictionary page".into());
    }
    if first_data != Some(c.data_page_offset() as usize) {
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
    Ok(())
}
