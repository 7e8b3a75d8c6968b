//! Writing a large new file without the page cache (`O_DIRECT`, Linux).
//!
//! On the virtual machines this runs on, every page the kernel takes from its
//! free lists to cache a write costs a fault on the host's side, and copying a
//! segment into the page cache was an eighth of the server's CPU under load
//! (the WAL, which writes the same way, was a fifth: see [`crate::wal`] and
//! docs/benchmarks.md, issue 19). Direct writes go from an aligned buffer,
//! reused across writes, straight to the disk.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Mutex;

/// Direct writes cover whole blocks of this size, from memory aligned to it.
pub(crate) const BLOCK: usize = 4096;

/// The aligned copy of the file being written; kept between writes, since a
/// fresh buffer of many megabytes is itself a run of first touches.
static STAGING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Creates `path` (which must not exist) with `bytes`, durably (data and
/// length), bypassing the page cache. `Ok(false)` when the file system
/// refuses `O_DIRECT` (tmpfs): nothing is left behind, and the caller writes
/// the usual way.
pub(crate) fn create_durable(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let Some(file) = open_direct(path)? else {
        return Ok(false);
    };
    let written = write_padded(&file, bytes)
        .and_then(|()| file.set_len(bytes.len() as u64))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(true)
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> std::io::Result<Option<File>> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Some file systems create the file before refusing the flag.
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> std::io::Result<Option<File>> {
    Ok(None)
}

/// Writes `bytes` from offset 0 in whole blocks, the last one padded with
/// zeros (the caller then cuts the file to its length).
fn write_padded(file: &File, bytes: &[u8]) -> std::io::Result<()> {
    let mut staging = STAGING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    write_blocks(file, 0, &[], bytes, &mut staging)
}

/// Writes `head` then `body` at `at` (a multiple of [`BLOCK`]) in whole
/// blocks, the last one padded with zeros, through `staging` (grown as
/// needed; the aligned part is found in it, so any `Vec` will do).
pub(crate) fn write_blocks(
    file: &File,
    at: u64,
    head: &[u8],
    body: &[u8],
    staging: &mut Vec<u8>,
) -> std::io::Result<()> {
    let total = head.len() + body.len();
    let padded = total.div_ceil(BLOCK) * BLOCK;
    if staging.len() < padded + BLOCK {
        *staging = vec![0u8; (padded + BLOCK).next_power_of_two()];
    }
    let skew = staging.as_ptr().align_offset(BLOCK);
    let out = &mut staging[skew..skew + padded];
    out[..head.len()].copy_from_slice(head);
    out[head.len()..total].copy_from_slice(body);
    out[total..].fill(0);
    file.write_all_at(out, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_any_length_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for (i, len) in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17]
            .into_iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
            let path = dir.path().join(format!("f{i}"));
            create_durable(&path, &bytes).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "length {len}");
            // Create-only: an existing file is an error, and is left alone.
            let again = create_durable(&path, b"other");
            assert!(again.is_err());
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
    }
}
