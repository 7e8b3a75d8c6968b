//! Run-encoded page contents as every reader reads them: definition levels
//! and dictionary indexes, both in Parquet's RLE / bit-packed hybrid.
//!
//! Readers decode sloppy runs differently. An attacker review gave runs
//! length headers that do not fit in 32 bits: parquet-rs (`verify`,
//! DataFusion) cuts the count to 32 bits and reads one run to the page's end,
//! DuckDB drops the high bits, reads a short run and then runs parquet-rs
//! never reads; Arrow C++ refuses them. DuckDB then showed 531 of 600 rows
//! of a re-sealed segment under another session id. So `verify` decodes
//! these streams itself, as the writer writes them: run headers within 32
//! bits, no empty runs, exactly the page's values (a last bit-packed group
//! padded to 8), no bytes left over, every level 0 or 1, every index inside
//! a dictionary whose entry count is the one its header declares.

use bytes::Bytes;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::serialized_reader::SerializedPageReader;

use crate::delta_encoding;

/// Why `b` is not exactly `n` values of `bit_width` bits, each at most
/// `max`, in the RLE / bit-packed hybrid, if it is not.
pub(crate) fn runs_problem(b: &[u8], bit_width: u8, n: usize, max: u64) -> Result<(), String> {
    decode_runs(b, bit_width, n, max, &mut |_| Ok(()))
}

/// [`runs_problem`], showing `each` every value in order (a repeated
/// run's value once).
fn decode_runs(
    b: &[u8],
    bit_width: u8,
    n: usize,
    max: u64,
    each: &mut dyn FnMut(u64) -> Result<(), String>,
) -> Result<(), String> {
    if bit_width > 32 {
        return Err(format!("a bit width of {bit_width}"));
    }
    let width = usize::from(bit_width);
    let value_bytes = width.div_ceil(8);
    let (mut at, mut count, mut padded) = (0usize, 0usize, false);
    while at < b.len() {
        if count >= n {
            return Err(format!("runs after the {n} values"));
        }
        let mut header = 0u32;
        for k in 0..5 {
            let byte = *b.get(at).ok_or("cut short")?;
            at += 1;
            if k == 4 && byte > 0x0f {
                return Err("a run header beyond 32 bits".into());
            }
            header |= u32::from(byte & 0x7f) << (7 * k);
            if byte & 0x80 == 0 {
                break;
            }
            if k == 4 {
                return Err("a run header beyond 32 bits".into());
            }
        }
        let run = (header >> 1) as usize;
        if run == 0 {
            return Err("an empty run".into());
        }
        if header & 1 == 1 {
            // `run` groups of 8 values, `width` bytes each.
            let len = run.checked_mul(width).ok_or("run too long")?;
            let group = b.get(at..at.checked_add(len).ok_or("run too long")?);
            let group = group.ok_or("cut short")?;
            let values = (run * 8).min(n - count);
            for i in 0..values {
                let v = bits(group, i * width, width);
                if v > max {
                    return Err(format!("a value of {v}, above {max}"));
                }
                each(v)?;
            }
            padded = run * 8 > n - count;
            at += len;
            count += run * 8;
        } else {
            let v = b.get(at..at + value_bytes).ok_or("cut short")?;
            let v = v
                .iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
            if v > max {
                return Err(format!("a repeated value of {v}, above {max}"));
            }
            each(v)?;
            if run > n - count {
                return Err(format!("runs holding more than the {n} values"));
            }
            at += value_bytes;
            count += run;
        }
    }
    if count < n || (count > n && !padded) {
        return Err(format!("{count} values where the page has {n}"));
    }
    Ok(())
}

/// Value `width` bits wide starting at bit `from` of `b` (least significant
/// bit first, as Parquet packs them).
fn bits(b: &[u8], from: usize, width: usize) -> u64 {
    (0..width).fold(0u64, |acc, k| {
        let bit = from + k;
        acc | (u64::from((b[bit / 8] >> (bit % 8)) & 1) << k)
    })
}

/// Why column chunk `c` (of a row group of `rows` rows) of `file` holds
/// encoded values that not every reader reads alike, if it does: its
/// dictionary's entry count against its header's, every index run of its
/// dictionary-encoded pages, and every delta-encoded page
/// ([`crate::delta_encoding`]). Runs after the page headers were walked
/// strictly ([`crate::page_headers`]); `delta` says whether the walk found
/// delta-encoded pages. A chunk of plain pages only has nothing to unpack
/// here: its values' sizes are checked against the rows
/// ([`crate::pruning`]).
pub(crate) fn values_problem(
    file: &Bytes,
    c: &ColumnChunkMetaData,
    rows: usize,
    delta: bool,
) -> Option<String> {
    if c.dictionary_page_offset().is_none() && !delta {
        return None;
    }
    let pages = match SerializedPageReader::new(std::sync::Arc::new(file.clone()), c, rows, None) {
        Ok(p) => p,
        Err(e) => return Some(format!("pages unreadable: {e}")),
    };
    check_pages(pages, c, rows.min(crate::segment::ROW_GROUP_ROWS)).err()
}

/// `rows`: the rows of the chunk's group, which bound its dictionary (every
/// entry is some row's value).
fn check_pages(
    mut pages: SerializedPageReader<Bytes>,
    c: &ColumnChunkMetaData,
    rows: usize,
) -> Result<(), String> {
    let mut entries = None;
    // The highest dictionary index the pages so far use.
    let mut used: Option<u64> = None;
    while let Some(page) = pages
        .get_next_page()
        .map_err(|e| format!("pages unreadable: {e}"))?
    {
        match page {
            Page::DictionaryPage {
                buf, num_values, ..
            } => {
                let ty = c.column_type();
                let n = dictionary_entries(&buf, ty, c.column_descr().type_length(), rows)?;
                if n != num_values as usize {
                    return Err(format!(
                        "a dictionary of {n} entries declaring {num_values}"
                    ));
                }
                entries = Some(n);
            }
            Page::DataPageV2 {
                buf,
                num_values,
                num_nulls,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let at = (def_levels_byte_len + rep_levels_byte_len) as usize;
                let values = buf.get(at..).ok_or("levels past the page")?;
                let present = num_values.saturating_sub(num_nulls) as usize;
                match encoding {
                    Encoding::RLE_DICTIONARY => {
                        let n = entries.ok_or("dictionary indexes before the dictionary")?;
                        let (&width, runs) = values.split_first().ok_or("no bit width")?;
                        // The writer adds an entry when a row first uses its
                        // value: a new index is one past the highest so far.
                        let mut first_use = |v: u64| match used.map_or(0, |u| u + 1) {
                            next if v == next => {
                                used = Some(v);
                                Ok(())
                            }
                            next if v < next => Ok(()),
                            next => Err(format!(
                                "index {v} used before index {next} (not the writer's order of first use)"
                            )),
                        };
                        decode_runs(
                            runs,
                            width,
                            present,
                            n.saturating_sub(1) as u64,
                            &mut first_use,
                        )
                        .map_err(|e| format!("dictionary indexes: {e}"))?;
                        if n == 0 && present > 0 {
                            return Err("dictionary indexes into an empty dictionary".into());
                        }
                        // As narrow as the entries so far allow.
                        let narrowest = used.map_or(0, |u| 64 - u.leading_zeros());
                        if u32::from(width) != narrowest {
                            return Err(format!(
                                "dictionary indexes {width} bits wide where {narrowest} hold them"
                            ));
                        }
                    }
                    Encoding::DELTA_BINARY_PACKED => match c.column_type() {
                        PhysicalType::INT64 => {
                            delta_encoding::binary_packed_problem(values, present)
                                .map_err(|e| format!("delta-packed values: {e}"))?
                        }
                        other => {
                            return Err(format!(
                                "delta-packed {other} values, which the writer never writes"
                            ));
                        }
                    },
                    Encoding::DELTA_BYTE_ARRAY => {
                        let fixed = match c.column_type() {
                            PhysicalType::BYTE_ARRAY => None,
                            PhysicalType::FIXED_LEN_BYTE_ARRAY => {
                                usize::try_from(c.column_descr().type_length()).ok()
                            }
                            other => {
                                return Err(format!(
                                    "delta-encoded {other} byte arrays, which the writer never writes"
                                ));
                            }
                        };
                        delta_encoding::byte_array_problem(values, present, fixed)
                            .map_err(|e| format!("delta-encoded byte arrays: {e}"))?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // Every entry is used: the writer's dictionary holds the values of the
    // rows that were dictionary-encoded, nothing else.
    if let Some(n) = entries
        && used.map_or(0, |u| u + 1) != n as u64
    {
        return Err(format!(
            "a dictionary of {n} entries whose pages use {}",
            used.map_or(0, |u| u + 1)
        ));
    }
    Ok(())
}

/// The entries of a plain-encoded dictionary page of `ty`, each a distinct
/// value (the writer adds a value once), at most `max` of them (counted
/// before any is kept: a few bytes of zstd can unpack to millions of empty
/// entries).
fn dictionary_entries(
    buf: &[u8],
    ty: PhysicalType,
    type_length: i32,
    max: usize,
) -> Result<usize, String> {
    let too_many = || format!("a dictionary of more than {max} entries, the rows of its group");
    let size = match ty {
        PhysicalType::INT64 | PhysicalType::DOUBLE => 8,
        PhysicalType::INT32 | PhysicalType::FLOAT => 4,
        PhysicalType::FIXED_LEN_BYTE_ARRAY => usize::try_from(type_length).unwrap_or(0),
        PhysicalType::BYTE_ARRAY => 0,
        other => {
            return Err(format!(
                "a dictionary of {other} values, which the writer never writes"
            ));
        }
    };
    let mut entries: Vec<&[u8]> = Vec::new();
    if ty == PhysicalType::BYTE_ARRAY {
        let mut at = 0usize;
        while at < buf.len() {
            let len = buf.get(at..at + 4).ok_or("a dictionary cut short")?;
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let end = at
                .checked_add(4 + len)
                .filter(|&e| e <= buf.len())
                .ok_or("a dictionary cut short")?;
            if entries.len() == max {
                return Err(too_many());
            }
            entries.push(&buf[at + 4..end]);
            at = end;
        }
    } else if size > 0 && buf.len().is_multiple_of(size) {
        if buf.len() / size > max {
            return Err(too_many());
        }
        entries.extend(buf.chunks(size));
    } else {
        return Err(format!(
            "a dictionary of {} bytes, not whole values",
            buf.len()
        ));
    }
    let distinct: std::collections::HashSet<&[u8]> = entries.iter().copied().collect();
    if distinct.len() != entries.len() {
        return Err(format!(
            "a dictionary of {} entries holding {} distinct values",
            entries.len(),
            distinct.len()
        ));
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::runs_problem;

    #[test]
    fn runs_hold_exactly_the_pages_values_within_32_bit_headers() {
        // Levels: a run of 3 ones; 8 bit-packed; a run then a group.
        assert_eq!(runs_problem(&[0x06, 0x01], 1, 3, 1), Ok(()));
        assert_eq!(runs_problem(&[0x03, 0xa5], 1, 8, 1), Ok(()));
        assert_eq!(runs_problem(&[0x06, 0x00, 0x03, 0xff], 1, 11, 1), Ok(()));
        // A last group padded past the values.
        assert_eq!(runs_problem(&[0x03, 0x07], 1, 3, 1), Ok(()));
        // parquet-rs reads a repeated 2 as "present"; pyarrow and DuckDB refuse.
        let e = runs_problem(&[0x06, 0x02], 1, 3, 1).unwrap_err();
        assert!(e.contains("repeated value of 2"), "{e}");
        // Fewer values, runs past the values, bytes missing, empty runs.
        assert!(
            runs_problem(&[0x04, 0x01], 1, 3, 1)
                .unwrap_err()
                .contains("2 values where")
        );
        assert!(runs_problem(&[0x08, 0x01], 1, 3, 1).is_err());
        assert!(runs_problem(&[0x06, 0x01, 0x02, 0x01], 1, 3, 1).is_err());
        assert!(
            runs_problem(&[0x05, 0xff], 1, 8, 1)
                .unwrap_err()
                .contains("cut short")
        );
        assert!(
            runs_problem(&[0x00, 0x01, 0x06, 0x01], 1, 3, 1)
                .unwrap_err()
                .contains("empty run")
        );
        // The review's header 2^32 + 2c: parquet-rs cuts it to 2^31 + c,
        // DuckDB to c.
        let beyond = [0x86, 0x80, 0x80, 0x80, 0x20, 0x01];
        let e = runs_problem(&beyond, 1, 3, 1).unwrap_err();
        assert!(e.contains("beyond 32 bits"), "{e}");
        // Dictionary indexes of width 2 into 3 entries: 0, 1, 2 fit, 3 not.
        assert_eq!(runs_problem(&[0x03, 0b10_01_00, 0x00], 2, 3, 2), Ok(()));
        let e = runs_problem(&[0x03, 0b11_01_00, 0x00], 2, 3, 2).unwrap_err();
        assert!(e.contains("value of 3, above 2"), "{e}");
        assert!(runs_problem(&[0x06, 0x03], 2, 3, 2).is_err());
    }
}
