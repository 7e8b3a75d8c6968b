//! A footer that parquet-rs can parse without running out of stack or
//! memory, checked before it parses one.
//!
//! parquet-rs builds a file's schema tree recursively with no limit on its
//! depth, and reserves room for a list by the count its header declares. An
//! attacker review planted segments (no key needed) whose footer chained
//! 5,000 nested groups in about 40 KB, which overflowed the stack of
//! `verify`'s worker thread and aborted it without a report, and whose row
//! group list declared 2^31 entries, which aborted it under a memory limit.
//! So the footer's Thrift is walked first without keeping anything
//! ([`crate::thrift_strict::skim_struct`]: bounded nesting, no list longer
//! than the bytes left) and its schema tree may be at most [`MAX_DEPTH`]
//! deep (a segment's is 2: the root and its columns).

use crate::thrift_strict::skim_struct;

/// How deep a file's schema tree may be.
pub(crate) const MAX_DEPTH: usize = 8;

/// Why the footer of the Parquet file `file` could make a parser recurse or
/// reserve without bound, if it could.
pub(crate) fn problem(file: &[u8]) -> Option<String> {
    let n = file.len();
    if n < 12 || &file[n - 4..] != b"PAR1" {
        return Some("not a Parquet file (no PAR1 at its end)".into());
    }
    let len = u32::from_le_bytes([file[n - 8], file[n - 7], file[n - 6], file[n - 5]]) as usize;
    let Some(start) = (n - 8).checked_sub(len).filter(|&s| s >= 4) else {
        return Some(format!("a footer of {len} bytes in a file of {n}"));
    };
    let footer = &file[start..n - 8];
    if let Err(e) = skim_struct(footer, 0, -1) {
        return Some(format!("the footer's Thrift: {e}"));
    }
    schema_problem(footer).err()
}

/// The schema elements of the file metadata `footer` (field 2: a list of
/// structs, whose field 5 is the number of children), checked for depth
/// without recursion.
fn schema_problem(footer: &[u8]) -> Result<(), String> {
    // Field 1 (version, i32), then field 2 (schema, a list of structs): the
    // order every writer uses.
    let mut at = 0;
    if footer.first() != Some(&0x15) {
        return Err("the footer does not begin with its version".into());
    }
    at += 1;
    while footer.get(at).ok_or("the footer is cut short")? & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    if footer.get(at) != Some(&0x19) {
        return Err("the footer's schema does not follow its version".into());
    }
    let h = *footer.get(at + 1).ok_or("the footer is cut short")?;
    at += 2;
    if h & 0x0f != 12 {
        return Err("the footer's schema is not a list of structs".into());
    }
    let mut count = u64::from(h >> 4);
    if count == 15 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = *footer.get(at).ok_or("the footer is cut short")?;
            at += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 || shift > 63 {
                break;
            }
        }
        count = v;
    }
    // Children still owed by each open group, outermost first.
    let mut open: Vec<i64> = Vec::new();
    for k in 0..count {
        let (end, children) =
            skim_struct(footer, at, 5).map_err(|e| format!("schema element {k}: {e}"))?;
        at = end;
        if let Some(last) = open.last_mut() {
            *last -= 1;
        }
        let children = children.unwrap_or(0);
        if children < 0 {
            return Err(format!("schema element {k} declares {children} children"));
        }
        if children > 0 {
            open.push(children);
            if open.len() > MAX_DEPTH {
                return Err(format!(
                    "a schema more than {MAX_DEPTH} levels deep (parsers recurse through it)"
                ));
            }
        }
        while open.last() == Some(&0) {
            open.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `footer` (no pages): magic, footer, its length, magic.
    fn file(footer: &[u8]) -> Vec<u8> {
        let mut f = b"PAR1".to_vec();
        f.extend_from_slice(footer);
        f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        f.extend_from_slice(b"PAR1");
        f
    }

    /// Version 2, then a schema list of `elements` (each a struct holding
    /// its name and, for groups, field 5), then the stop.
    fn footer(children: &[Option<u8>]) -> Vec<u8> {
        let mut f = vec![0x15, 0x04, 0x19];
        if children.len() < 15 {
            f.push((children.len() as u8) << 4 | 12);
        } else {
            f.push(0xfc);
            crate::delta_encoding::write_varint(&mut f, children.len() as u64);
        }
        for c in children {
            // field 4 (name, binary "g"), then field 5 (i32) when a group.
            f.extend_from_slice(&[0x48, 0x01, b'g']);
            if let Some(c) = c {
                f.extend_from_slice(&[0x15, c * 2]);
            }
            f.push(0x00);
        }
        f.push(0x00);
        f
    }

    #[test]
    fn deep_schemas_and_oversized_lists_are_refused_before_parsing() {
        // A root of three leaves (real segments pass in every segment test:
        // each reads its footer through this check).
        assert_eq!(problem(&file(&footer(&[Some(3), None, None, None]))), None);
        // The review's chain of nested groups, each with one child.
        let mut chain: Vec<Option<u8>> = vec![Some(1); 5_000];
        chain.push(None);
        let e = problem(&file(&footer(&chain))).unwrap();
        assert!(e.contains("more than 8 levels deep"), "{e}");
        let eight: Vec<Option<u8>> = [Some(1); 8].into_iter().chain([None]).collect();
        assert_eq!(problem(&file(&footer(&eight))), None);
        // A list declaring more elements than there are bytes.
        let mut big = vec![0x15, 0x04, 0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07];
        big.push(0x00);
        let e = problem(&file(&big)).unwrap();
        assert!(e.contains("elements in"), "{e}");
        // Structs nested past the walk's bound.
        let mut nested = vec![0x15, 0x04];
        nested.extend(std::iter::repeat_n(0x1c, 40));
        nested.extend(std::iter::repeat_n(0x00, 41));
        let e = problem(&file(&nested)).unwrap();
        assert!(e.contains("nested too deep"), "{e}");
    }
}
