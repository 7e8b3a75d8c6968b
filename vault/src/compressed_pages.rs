//! Compressed page bodies as every reader reads them.
//!
//! Readers unpack page bodies with their own codec libraries, and those
//! differ at the edges of a format. An attacker review re-sealed a segment
//! whose `session_id` chunk was GZIP-compressed with the gzip header's
//! file-name flag set: zlib (pyarrow) and flate2 (parquet-rs: `verify`,
//! DataFusion) skip the name and inflate the true page after it, while
//! DuckDB inflates from right after the fixed header, reading a deflate
//! stream hidden in the "name" that holds forged dictionary indexes. DuckDB
//! showed rows under other session ids while `verify` said OK. So only the
//! writer's codecs are accepted (zstd, LZ4 raw blocks, or none), and a zstd
//! body must be exactly one frame: no skippable frames, no second frame, no
//! bytes after it, no dictionary, a declared content size (when there is
//! one) equal to the page's, no reserved bits. Within one frame every zstd
//! decoder produces the same bytes or fails. An LZ4 raw block has no framing
//! to disagree on: its sequences decode alike wherever they decode.

use parquet::basic::Compression;

/// Why a chunk compressed with `codec` is not one the writer writes, if it
/// is not.
pub(crate) fn codec_problem(codec: Compression) -> Option<String> {
    match codec {
        Compression::UNCOMPRESSED | Compression::ZSTD(_) | Compression::LZ4_RAW => None,
        other => Some(format!(
            "compressed with {other}, which the writer never uses (readers' libraries unpack it differently)"
        )),
    }
}

/// Why `body`, the compressed part of a page of `codec` that unpacks to
/// `unpacked` bytes, would not unpack alike for every reader, if it would
/// not.
pub(crate) fn body_problem(codec: Compression, body: &[u8], unpacked: usize) -> Option<String> {
    match codec {
        Compression::ZSTD(_) => zstd_frame_problem(body, unpacked).err(),
        Compression::LZ4_RAW => lz4_block_problem(body, unpacked).err(),
        _ => None,
    }
}

/// Why `b` is not one LZ4 block of `unpacked` bytes that every LZ4 library
/// decodes, if it is not. The sequences are walked, not decoded. The block
/// format's end rules (the last sequence is literals only, no match starts
/// in the last 12 bytes, the last 5 are literals) are kept by every
/// compressor; lz4_flex (parquet-rs) decodes blocks that break them, the
/// LZ4 library (pyarrow, DuckDB) refuses them: a review's file that
/// `verify` passed was unreadable there.
fn lz4_block_problem(b: &[u8], unpacked: usize) -> Result<(), String> {
    const MFLIMIT: usize = 12;
    const LAST_LITERALS: usize = 5;
    const CUT: &str = "an LZ4 block cut short";
    // One pass over the sequences, as tight as a decoder's parse: this runs
    // over every LZ4 page `verify` reads (on text, one sequence per ten
    // bytes or so).
    let n = b.len();
    let (mut at, mut out) = (0usize, 0usize);
    loop {
        let Some(&token) = b.get(at) else {
            return Err(CUT.into());
        };
        at += 1;
        let literals = lz4_length(b, &mut at, token >> 4).ok_or(CUT)?;
        at += literals;
        out += literals;
        if at >= n {
            if at == n {
                break;
            }
            return Err(CUT.into());
        }
        let Some(&[lo, hi]) = b.get(at..at + 2) else {
            return Err(CUT.into());
        };
        at += 2;
        let offset = usize::from(u16::from_le_bytes([lo, hi]));
        if offset == 0 || offset > out {
            return Err("an LZ4 match reaching before the block's start".into());
        }
        let matched = lz4_length(b, &mut at, token & 15).ok_or(CUT)? + 4;
        if out + MFLIMIT > unpacked || out + matched + LAST_LITERALS > unpacked {
            return Err(
                "an LZ4 match in the block's last bytes, which the LZ4 library refuses".into(),
            );
        }
        out += matched;
    }
    match out == unpacked {
        true => Ok(()),
        false => Err(format!(
            "an LZ4 block of {out} bytes where the page has {unpacked}"
        )),
    }
}

/// A sequence's literal or match length: the token's 4 bits, and when they
/// are 15, the bytes after `*at` up to one below 255 added on.
#[inline]
fn lz4_length(b: &[u8], at: &mut usize, nibble: u8) -> Option<usize> {
    let mut n = usize::from(nibble);
    if n == 15 {
        loop {
            let x = *b.get(*at)?;
            *at += 1;
            n += usize::from(x);
            if x != 255 {
                break;
            }
        }
    }
    Some(n)
}

/// Why `b` is not exactly one zstd frame (RFC 8878) of `unpacked` bytes
/// as the writer writes it, if it is not. The blocks are walked, not
/// decoded: the frame's extent is what readers could disagree on.
fn zstd_frame_problem(b: &[u8], unpacked: usize) -> Result<(), String> {
    const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    let byte = |at: usize| b.get(at).copied().ok_or("a zstd frame cut short");
    if b.get(..4) != Some(&MAGIC[..]) {
        return Err("not a zstd frame (a skippable frame, or another format)".into());
    }
    let descriptor = byte(4)?;
    let (fcs_flag, single_segment) = (descriptor >> 6, descriptor & 0x20 != 0);
    let (unused, reserved, checksum) = (descriptor & 0x10, descriptor & 0x08, descriptor & 0x04);
    if unused != 0 || reserved != 0 {
        return Err("a zstd frame header with reserved bits set".into());
    }
    if descriptor & 0x03 != 0 {
        return Err("a zstd frame that needs a dictionary".into());
    }
    let mut at = 5 + usize::from(!single_segment);
    let fcs_len = match (fcs_flag, single_segment) {
        (0, false) => 0,
        (0, true) => 1,
        (1, _) => 2,
        (2, _) => 4,
        _ => 8,
    };
    if fcs_len > 0 {
        let field = b.get(at..at + fcs_len).ok_or("a zstd frame cut short")?;
        let mut size = field
            .iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
        if fcs_len == 2 {
            size += 256;
        }
        if size != unpacked as u64 {
            return Err(format!(
                "a zstd frame declaring {size} bytes where the page has {unpacked}"
            ));
        }
        at += fcs_len;
    }
    loop {
        let header = b.get(at..at + 3).ok_or("a zstd frame cut short")?;
        let header = u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
        at += 3;
        let (last, kind, size) = (header & 1 == 1, (header >> 1) & 3, (header >> 3) as usize);
        at += match kind {
            0 | 2 => size,
            1 => 1,
            _ => return Err("a zstd block of the reserved type".into()),
        };
        if at > b.len() {
            return Err("a zstd frame cut short".into());
        }
        if last {
            break;
        }
    }
    if checksum != 0 {
        at += 4;
    }
    match at.cmp(&b.len()) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(format!(
            "{} bytes after the zstd frame (another frame, or anything)",
            b.len() - at
        )),
        std::cmp::Ordering::Greater => Err("a zstd frame cut short".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One zstd frame holding `data` in one raw block (the writer's
    /// frames are checked by every segment test and real store).
    fn zstd(data: &[u8]) -> Vec<u8> {
        // Magic, a single-segment header with a 1-byte content size, then
        // the last block: raw, `data.len()` bytes.
        let mut out = vec![0x28, 0xb5, 0x2f, 0xfd, 0x20, data.len() as u8];
        let header = (data.len() as u32) << 3 | 1;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn a_zstd_body_is_one_frame_of_the_pages_size() {
        let codec = Compression::ZSTD(Default::default());
        let data: Vec<u8> = (0..200u8).collect();
        let frame = zstd(&data);
        assert_eq!(body_problem(codec, &frame, data.len()), None);
        let empty = zstd(&[]);
        assert_eq!(body_problem(codec, &empty, 0), None);
        // Another size than the page's.
        let e = body_problem(codec, &frame, data.len() + 1).unwrap();
        assert!(
            e.contains("declaring 200 bytes where the page has 201"),
            "{e}"
        );
        // Two frames: readers that stop after the first see other bytes.
        let mut two = frame.clone();
        two.extend_from_slice(&zstd(b"forged"));
        let e = body_problem(codec, &two, data.len()).unwrap();
        assert!(e.contains("after the zstd frame"), "{e}");
        // A skippable frame first (magic 0x184D2A50, 4 bytes of length).
        let mut skip = vec![0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 0xaa, 0xbb];
        skip.extend_from_slice(&frame);
        assert!(
            body_problem(codec, &skip, data.len())
                .unwrap()
                .contains("skippable")
        );
        // Cut short, and reserved bits.
        assert!(body_problem(codec, &frame[..frame.len() - 1], data.len()).is_some());
        let mut reserved = frame.clone();
        reserved[4] |= 0x08;
        assert!(
            body_problem(codec, &reserved, data.len())
                .unwrap()
                .contains("reserved")
        );
        // LZ4 blocks: literals only; a match then literals; a block ending
        // with a match, or with a match too close to its end.
        let lz4 = Compression::LZ4_RAW;
        assert_eq!(body_problem(lz4, &[0x30, b'a', b'b', b'c'], 3), None);
        let mut m = vec![0x1f, b'a', 0x01, 0x00, 0x0f];
        m.extend_from_slice(&[0x50, b'1', b'2', b'3', b'4', b'5']);
        // 'a', then 34 more by a match of offset 1 (15 + 15 + 4), then 5
        assert_eq!(body_problem(lz4, &m, 1 + 34 + 5), None);
        assert!(
            body_problem(lz4, &m, 41)
                .unwrap()
                .contains("40 bytes where")
        );
        let e = body_problem(lz4, &[0x1f, b'a', 0x01, 0x00, 0x0f], 35).unwrap();
        assert!(e.contains("last bytes"), "{e}");
        let e = body_problem(lz4, &[0x1f, b'a', 0x01, 0x00, 0x0f], 400).unwrap();
        assert!(e.contains("cut short"), "{e}");
        let late = [0x10, b'a', 0x01, 0x00, 0x20, b'1', b'2'];
        let e = body_problem(lz4, &late, 1 + 4 + 2).unwrap();
        assert!(e.contains("last bytes"), "{e}");
        let before = [0x10, b'a', 0x02, 0x00, 0x50, b'1', b'2', b'3', b'4', b'5'];
        assert!(
            body_problem(lz4, &before, 30)
                .unwrap()
                .contains("before the block")
        );
        // Other codecs are refused outright; LZ4 raw blocks and none pass.
        for c in [
            Compression::GZIP(Default::default()),
            Compression::SNAPPY,
            Compression::LZ4,
        ] {
            assert!(codec_problem(c).is_some(), "{c}");
        }
        for c in [codec, Compression::LZ4_RAW, Compression::UNCOMPRESSED] {
            assert_eq!(codec_problem(c), None);
        }
    }
}
