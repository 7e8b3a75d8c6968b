//! Delta-encoded page values as the writer writes them.
//!
//! The writer delta-encodes `idx` and `received_at` (`DELTA_BINARY_PACKED`),
//! and a version 2 writer falls back to `DELTA_BINARY_PACKED` for integers
//! and `DELTA_BYTE_ARRAY` for byte arrays when a column's dictionary grows
//! too large. Readers decode these streams with their own code; what one
//! reader ignores (a header count past the page's values, bytes after the
//! last block, widths of unused miniblocks, padding bits) another may act
//! on, as runs of dictionary indexes showed ([`crate::encoded_runs`]). So
//! `verify` decodes them itself and accepts only the writer's own form, in
//! which the bytes are a function of the values: the header's count is the
//! page's, every block's minimum delta is the least of its deltas, every
//! miniblock is packed as narrow as its deltas allow and padded with zeros,
//! unused miniblocks have width 0 and no bytes, and nothing follows the last
//! block. For byte arrays, each value shares with the one before it exactly
//! their longest common prefix, and the suffixes fill the rest of the page.
//!
//! (`DELTA_LENGTH_BYTE_ARRAY` is never written by this writer and is refused
//! by [`crate::page_headers`] before any value is read.)

/// Writes `v` as the unsigned LEB128 varint [`varint`] reads back (Thrift's
/// and the delta encodings' form): for tests that build pages and footers
/// by hand.
#[cfg(test)]
pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads an unsigned LEB128 varint of at most 64 bits at `*at`, refusing
/// overlong forms (a trailing zero byte), which the writer never writes.
fn varint(b: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for k in 0..10 {
        let byte = *b.get(*at).ok_or("cut short")?;
        *at += 1;
        if k == 9 && byte > 1 {
            return Err("a varint beyond 64 bits".into());
        }
        v |= u64::from(byte & 0x7f) << (7 * k);
        if byte & 0x80 == 0 {
            if k > 0 && byte == 0 {
                return Err("an overlong varint".into());
            }
            return Ok(v);
        }
    }
    Err("a varint beyond 64 bits".into())
}

/// A zigzag-encoded varint.
fn zigzag(b: &[u8], at: &mut usize) -> Result<i64, String> {
    let v = varint(b, at)?;
    Ok((v >> 1) as i64 ^ -((v & 1) as i64))
}

/// Value `width` bits wide starting at bit `from` of `b`, least significant
/// bit first; `b` holds at least `from + width` bits.
fn bits(b: &[u8], from: usize, width: usize) -> u64 {
    let mut v = 0u64;
    let mut done = 0;
    while done < width {
        let bit = from + done;
        let take = (8 - bit % 8).min(width - done);
        let chunk = (u64::from(b[bit / 8]) >> (bit % 8)) & ((1u64 << take) - 1);
        v |= chunk << done;
        done += take;
    }
    v
}

/// Decodes exactly `n` values of `DELTA_BINARY_PACKED` from `b` at `*at`
/// in the writer's form (see the module docs), leaving `*at` after them.
/// `int32`: the values are 32-bit (the lengths of delta-encoded byte
/// arrays), so the first value, every minimum delta and every value must
/// fit in 32 bits and no miniblock may be wider: a 32-bit reader would
/// otherwise cut them.
pub(crate) fn binary_packed(
    b: &[u8],
    at: &mut usize,
    n: usize,
    int32: bool,
) -> Result<Vec<i64>, String> {
    let fits = |v: i64| !int32 || i32::try_from(v).is_ok();
    let block = varint(b, at)?;
    let miniblocks = varint(b, at)?;
    let count = varint(b, at)?;
    let first = zigzag(b, at)?;
    if !fits(first) {
        return Err(format!("a first value of {first} in 32-bit values"));
    }
    // Both are 32-bit ints for other readers (pyarrow fails on a block
    // size past them, where the others read on).
    if block == 0
        || block > i32::MAX as u64
        || !block.is_multiple_of(128)
        || miniblocks == 0
        || !block.is_multiple_of(miniblocks)
    {
        return Err(format!(
            "blocks of {block} values in {miniblocks} miniblocks"
        ));
    }
    let per_mini = block / miniblocks;
    if !per_mini.is_multiple_of(32) {
        return Err(format!("miniblocks of {per_mini} values"));
    }
    if count != n as u64 {
        return Err(format!("a header of {count} values where the page has {n}"));
    }
    let (per_mini, miniblocks) = (per_mini as usize, miniblocks as usize);
    let mut values = Vec::with_capacity(n.min(b.len().saturating_mul(8)));
    if n == 0 {
        return Ok(values);
    }
    values.push(first);
    let mut last = first;
    while values.len() < n {
        let min_delta = zigzag(b, at)?;
        if !fits(min_delta) {
            return Err(format!("a minimum delta of {min_delta} in 32-bit values"));
        }
        let widths = b
            .get(*at..at.checked_add(miniblocks).ok_or("cut short")?)
            .ok_or("cut short")?;
        *at += miniblocks;
        let mut least = u64::MAX;
        for &w in widths {
            let used = (n - values.len()).min(per_mini);
            if used == 0 {
                if w != 0 {
                    return Err(format!("an unused miniblock of width {w}"));
                }
                continue;
            }
            if w > if int32 { 32 } else { 64 } {
                return Err(format!("a miniblock of width {w}"));
            }
            let width = usize::from(w);
            // Within the bytes there are (so `per_mini` is bounded by them
            // whenever a miniblock is not empty).
            let len = per_mini.checked_mul(width).ok_or("cut short")? / 8;
            let data = b
                .get(*at..at.checked_add(len).ok_or("cut short")?)
                .ok_or("cut short")?;
            *at += len;
            let mut widest = 0u64;
            // A miniblock 0 bits wide has no padding to look at (and may
            // declare any number of values per miniblock).
            let padded = if width == 0 { used } else { per_mini };
            for i in 0..padded {
                let packed = bits(data, i * width, width);
                if i >= used {
                    if packed != 0 {
                        return Err("padding that is not zero".into());
                    }
                    continue;
                }
                widest = widest.max(packed);
                least = least.min(packed);
                last = last.wrapping_add(min_delta.wrapping_add(packed as i64));
                if !fits(last) {
                    return Err(format!("a value of {last} in 32-bit values"));
                }
                values.push(last);
            }
            if u32::from(w) != 64 - widest.leading_zeros() {
                return Err(format!(
                    "a miniblock of width {w} for deltas of {} bits",
                    64 - widest.leading_zeros()
                ));
            }
        }
        if least != 0 {
            return Err("a block's minimum delta below its least delta".into());
        }
    }
    Ok(values)
}

/// Why `b` is not exactly `n` values of `DELTA_BINARY_PACKED` in the
/// writer's form, if it is not.
pub(crate) fn binary_packed_problem(b: &[u8], n: usize) -> Result<(), String> {
    let mut at = 0;
    binary_packed(b, &mut at, n, false)?;
    match at == b.len() {
        true => Ok(()),
        false => Err(format!("{} bytes after the values", b.len() - at)),
    }
}

/// Why `b` is not exactly `n` values of `DELTA_BYTE_ARRAY` in the writer's
/// form, if it is not: prefix lengths, suffix lengths, then the suffixes;
/// each value `fixed` bytes long when that is given.
pub(crate) fn byte_array_problem(b: &[u8], n: usize, fixed: Option<usize>) -> Result<(), String> {
    let mut at = 0;
    let prefixes =
        binary_packed(b, &mut at, n, true).map_err(|e| format!("prefix lengths: {e}"))?;
    let suffixes =
        binary_packed(b, &mut at, n, true).map_err(|e| format!("suffix lengths: {e}"))?;
    // The value before, as pieces of the page: (its position in the value,
    // where it is in `b`, its length). Values are never copied out: a
    // page of long shared prefixes would make that quadratic (an attacker
    // review kept `verify` busy for minutes with one 4 MB page).
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
    let mut previous_len = 0usize;
    for (i, (&p, &s)) in prefixes.iter().zip(&suffixes).enumerate() {
        let (Ok(p), Ok(s)) = (usize::try_from(p), usize::try_from(s)) else {
            return Err(format!("value {i}: a negative length"));
        };
        if p > previous_len {
            return Err(format!(
                "value {i}: a prefix of {p} bytes of a value of {previous_len}"
            ));
        }
        let suffix_at = at;
        let suffix = b
            .get(at..at.checked_add(s).ok_or("cut short")?)
            .ok_or("suffixes cut short")?;
        at += s;
        // The longest common prefix: the suffix must not begin with the
        // byte that follows the shared prefix in the value before.
        if let Some(&first) = suffix.first()
            && p < previous_len
        {
            let k = pieces.partition_point(|&(from, _, _)| from <= p) - 1;
            let (from, start, _) = pieces[k];
            if b[start + (p - from)] == first {
                return Err(format!("value {i}: a prefix shorter than the one shared"));
            }
        }
        // This value: the pieces of the one before, cut at `p`, and its suffix.
        while pieces.last().is_some_and(|&(from, _, _)| from >= p) {
            pieces.pop();
        }
        if let Some(last) = pieces.last_mut() {
            last.2 = last.2.min(p - last.0);
        }
        if s > 0 {
            pieces.push((p, suffix_at, s));
        }
        previous_len = p + s;
        if fixed.is_some_and(|f| f != previous_len) {
            return Err(format!(
                "value {i}: {previous_len} bytes in a column of fixed width"
            ));
        }
    }
    match at == b.len() {
        true => Ok(()),
        false => Err(format!("{} bytes after the values", b.len() - at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's encoding of `values`: blocks of 128 in 4 miniblocks.
    fn encode(values: &[i64]) -> Vec<u8> {
        let zz = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        write_varint(&mut out, 128);
        write_varint(&mut out, 4);
        write_varint(&mut out, values.len() as u64);
        write_varint(&mut out, zz(values.first().copied().unwrap_or(0)));
        let deltas: Vec<i64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        for block in deltas.chunks(128) {
            let min = *block.iter().min().unwrap();
            write_varint(&mut out, zz(min));
            let widths_at = out.len();
            out.extend_from_slice(&[0; 4]);
            for (m, mini) in block.chunks(32).enumerate() {
                let packed: Vec<u64> = mini.iter().map(|d| d.wrapping_sub(min) as u64).collect();
                let width = packed.iter().map(|p| 64 - p.leading_zeros()).max().unwrap() as usize;
                out[widths_at + m] = width as u8;
                let mut bitbuf = vec![0u8; 32 * width / 8];
                for (i, p) in packed.iter().enumerate() {
                    for k in 0..width {
                        if p >> k & 1 == 1 {
                            let bit = i * width + k;
                            bitbuf[bit / 8] |= 1 << (bit % 8);
                        }
                    }
                }
                out.extend_from_slice(&bitbuf);
            }
        }
        out
    }

    fn decode(b: &[u8], n: usize) -> Result<Vec<i64>, String> {
        let mut at = 0;
        let v = binary_packed(b, &mut at, n, false)?;
        assert_eq!(at, b.len());
        Ok(v)
    }

    #[test]
    fn the_writers_delta_packing_decodes_and_nothing_else_does() {
        // Rising indexes, receive times with jumps, wrapping extremes, and
        // the edges of blocks and miniblocks.
        let cases: Vec<Vec<i64>> = vec![
            vec![],
            vec![42],
            (0..129).collect(),
            (0..300)
                .map(|i| 1_700_000_000_000_000 + i * i * 7 - (i % 5) * 1000)
                .collect(),
            vec![i64::MIN, i64::MAX, 0, -1, i64::MAX, i64::MIN],
            (0..161).map(|i| if i % 2 == 0 { 5 } else { -5 }).collect(),
        ];
        for values in &cases {
            let b = encode(values);
            assert_eq!(decode(&b, values.len()).as_ref(), Ok(values), "{values:?}");
            assert_eq!(binary_packed_problem(&b, values.len()), Ok(()));
        }
        let values: Vec<i64> = (0..40).map(|i| 1000 + 3 * i).collect();
        let good = encode(&values);
        // Header: 80 01 (128), 04, 28 (40 values), d0 0f (first 1000);
        // block: 06 (min delta 3), widths 00 00 00 00, then no bytes: all
        // deltas equal, so every miniblock is 0 bits wide.
        assert_eq!(good, [0x80, 0x01, 0x04, 0x28, 0xd0, 0x0f, 0x06, 0, 0, 0, 0]);
        let problem = |b: &[u8], n| binary_packed_problem(b, n).unwrap_err();
        // Another count in the header than the page's.
        assert!(problem(&good, 41).contains("header of 40 values"));
        let mut more = good.clone();
        more[3] = 0x29;
        assert!(problem(&more, 40).contains("header of 41 values"));
        // A byte after the values.
        let mut tail = good.clone();
        tail.push(0);
        assert!(problem(&tail, 40).contains("1 bytes after"));
        // An unused miniblock's width set (readers must skip such widths;
        // one that read its bytes would shift).
        let mut unused = good.clone();
        unused[10] = 3;
        assert!(problem(&unused, 40).contains("unused miniblock of width 3"));
        // A wider miniblock than its deltas need, padded with zero bits.
        let mut wide = good[..7].to_vec();
        wide.extend_from_slice(&[1, 1, 0, 0]);
        wide.extend_from_slice(&[0; 8]);
        assert!(problem(&wide, 40).contains("width 1 for deltas of 0 bits"));
        // A lower minimum delta with every delta raised to match.
        let mut low = good[..6].to_vec();
        low.extend_from_slice(&[0x04, 1, 1, 0, 0]);
        low.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0]);
        assert!(problem(&low, 40).contains("minimum delta below"));
        // Block sizes the spec forbids, and an overlong varint.
        let mut block = good.clone();
        block[0] = 0x81;
        assert!(problem(&block, 40).contains("blocks of 129"));
        let mut huge = vec![0x80, 0x80, 0x80, 0x80, 0x10];
        huge.extend_from_slice(&good[2..]);
        assert!(problem(&huge, 40).contains("blocks of 4294967296"));
        let overlong = [0x80, 0x81, 0x00, 0x04, 0x28, 0xd0, 0x0f];
        assert!(problem(&overlong, 40).contains("overlong"));
        // Cut short.
        assert!(problem(&good[..8], 40).contains("cut short"));
        // Non-zero padding in the last miniblock.
        let values: Vec<i64> = vec![0, 1, 3, 4];
        let mut b = encode(&values);
        let last = b.len() - 1;
        b[last] |= 0x80;
        assert!(problem(&b, 4).contains("padding"));
    }

    /// The writer's `DELTA_BYTE_ARRAY` encoding of `values`.
    fn encode_bytes(values: &[&[u8]]) -> Vec<u8> {
        let mut prefixes = Vec::new();
        let mut suffixes = Vec::new();
        let mut tail = Vec::new();
        let mut previous: &[u8] = &[];
        for v in values {
            let p = previous.iter().zip(*v).take_while(|(a, b)| a == b).count();
            prefixes.push(p as i64);
            suffixes.push((v.len() - p) as i64);
            tail.extend_from_slice(&v[p..]);
            previous = v;
        }
        let mut out = encode(&prefixes);
        out.extend(encode(&suffixes));
        out.extend(tail);
        out
    }

    #[test]
    fn byte_arrays_share_exactly_their_common_prefix() {
        let values: [&[u8]; 5] = [b"s1", b"s10", b"s10", b"t", b""];
        let good = encode_bytes(&values);
        assert_eq!(byte_array_problem(&good, 5, None), Ok(()));
        assert!(byte_array_problem(&good, 4, None).is_err());
        let mut tail = good.clone();
        tail.push(b'x');
        assert!(
            byte_array_problem(&tail, 5, None)
                .unwrap_err()
                .contains("after the values")
        );
        // "s10" after "s1" written as prefix 1 and suffix "10": the same value
        // for every reader, but not the writer's form.
        let short = {
            let mut out = encode(&[0, 1, 3, 0, 0]);
            out.extend(encode(&[2, 2, 0, 1, 0]));
            out.extend_from_slice(b"s110t");
            out
        };
        assert!(
            byte_array_problem(&short, 5, None)
                .unwrap_err()
                .contains("value 1: a prefix shorter")
        );
        // A prefix longer than the value before it.
        let long = {
            let mut out = encode(&[0, 3]);
            out.extend(encode(&[2, 0]));
            out.extend_from_slice(b"s1");
            out
        };
        assert!(
            byte_array_problem(&long, 2, None)
                .unwrap_err()
                .contains("prefix of 3 bytes")
        );
        // Negative lengths; suffixes past the page.
        let negative = {
            let mut out = encode(&[0, 0]);
            out.extend(encode(&[2, -1]));
            out.extend_from_slice(b"s1");
            out
        };
        assert!(
            byte_array_problem(&negative, 2, None)
                .unwrap_err()
                .contains("negative")
        );
        // Prefixes reaching into older values' bytes, and a prefix one
        // short of the shared one whose next byte lies in an older suffix.
        let values: [&[u8]; 7] = [b"abcdef", b"abcxyz", b"abq", b"abqrs", b"b", b"bb", b""];
        assert_eq!(byte_array_problem(&encode_bytes(&values), 7, None), Ok(()));
        let short = {
            // "abcxyz" then "abcxq" written as prefix 3 and suffix "xq".
            let mut out = encode(&[0, 3, 3]);
            out.extend(encode(&[6, 3, 2]));
            out.extend_from_slice(b"abcdefxyzxq");
            out
        };
        assert!(
            byte_array_problem(&short, 3, None)
                .unwrap_err()
                .contains("value 2: a prefix shorter")
        );
        // One long first value shared by every other (checked without
        // copying it for each).
        let long = vec![b'x'; 4096];
        let many: Vec<&[u8]> = std::iter::repeat_n(&long[..], 2_000).collect();
        let many = encode_bytes(&many);
        assert_eq!(byte_array_problem(&many, 2_000, None), Ok(()));
        assert!(
            byte_array_problem(&many, 2_000, Some(5))
                .unwrap_err()
                .contains("value 0: 4096 bytes in a column of fixed width")
        );
        // Lengths past 32 bits, which a 32-bit reader would cut.
        let mut at = 0;
        let wide = encode(&[0, 1 << 33]);
        assert!(
            binary_packed(&wide, &mut at, 2, true)
                .unwrap_err()
                .contains("32-bit")
        );
        assert!(
            byte_array_problem(&good[..good.len() - 1], 5, None)
                .unwrap_err()
                .contains("cut short")
        );
    }
}
