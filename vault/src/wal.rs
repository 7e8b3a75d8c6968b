//! The write-ahead log: where an entry becomes durable before it is acked.
//!
//! One directory per namespace holds files named `{first_index:020}.wal`. Each
//! file starts with a header holding a random 16-byte secret; a record is
//! `"TVW1" | pos: u32 LE | len: u32 LE | crc32: u32 LE | payload`
//! (`pos` = position within its group commit, the CRC covering the file's
//! secret, `pos` and the payload, so that a writer cannot plant bytes that pass
//! for a record) where the payload
//! is the entry in the binary encoding of [`crate::codec`]. A group of records is written with one `write` and made
//! durable with one `fdatasync` (group commit); receipts are sent only after
//! that returns.
//!
//! Writes bypass the page cache where the file system allows it (`O_DIRECT`,
//! Linux): copying every group into the page cache was a fifth of the
//! server's CPU under load, all of it on the serial sequencer thread
//! (docs/benchmarks.md, issue 19). A direct write covers whole 4 KiB blocks,
//! so each group is written from the start of the block holding the end of
//! the previous one (those bytes, kept in memory, are written again, unchanged)
//! and padded with zeros. A file closed cleanly, or sealed by rotation, is cut
//! back to its last record; after a crash, fewer than 4 KiB of zeros after the
//! last record of the last file is that padding: the clean end, not a torn
//! write. Where `O_DIRECT` is refused (tmpfs), writes are buffered as before.
//!
//! Recovery: a bad or short record in the *last* file marks the end of the
//! log unless an intact record *starting a later group* follows it. Records of
//! the damaged record's own group are an unacknowledged torn write (the disk may
//! persist its pages in any order before the fsync returns); the file is
//! truncated there. A later group is only written after the earlier one's
//! fsync returned, so finding one means the damage is in acknowledged data:
//! corruption, and recovery refuses rather than drop it. A bad record in
//! an older file (which was fsynced before the next one began) is corruption,
//! and recovery refuses to continue rather than guess.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::record::Entry;

/// Start a new file once the current one is this large.
pub const ROTATE_BYTES: u64 = 64 << 20;
/// Largest record accepted when reading (guards against a corrupt length).
const MAX_RECORD: usize = 64 << 20;
/// Marks the start of every record, so intact records after a damaged one can be found.
const MAGIC: &[u8; 4] = b"TVW1";
/// Magic, position in the group, length and checksum.
const HEADER: usize = 16;
use crate::direct_write::BLOCK;
/// Starts every WAL file.
const FILE_MAGIC: &[u8; 4] = b"TVWF";
/// File format version.
const FILE_VERSION: u32 = 1;
/// File magic, version, 16-byte random secret, CRC of the preceding 24 bytes.
pub(crate) const FILE_HEADER: usize = 28;

/// The per-file secret keys every record checksum, so that bytes a writer
/// places inside an event (which may look like a record) can never pass for
/// an intact record during recovery.
type Secret = [u8; 16];

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system refused.
    #[error("wal {path}: {source}")]
    Io {
        /// File or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A record in a sealed file is damaged.
    #[error("wal {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// File.
        path: String,
        /// Offset of the bad record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// An open write-ahead log for one namespace.
pub struct Wal {
    dir: PathBuf,
    /// `(first index, path)` of every file, oldest first; the last is open.
    files: Vec<(u64, PathBuf)>,
    current: Appending,
    current_len: u64,
    /// Keys the record checksums of the current file.
    secret: Secret,
    buf: Vec<u8>,
}

/// The open last file, and what direct writes to it need.
struct Appending {
    file: File,
    /// Opened with `O_DIRECT`.
    direct: bool,
    /// With `direct`: the bytes of the file's last, partial block (the file's
    /// length modulo [`BLOCK`]), written again in front of the next group.
    tail: Vec<u8>,
    /// With `direct`: room for an aligned copy of one write.
    staging: Vec<u8>,
}

impl Appending {
    /// Opens `path`, whose first `len` bytes are its records (`last_block`
    /// holds the bytes of its last partial block), for appends: directly if
    /// the file system allows it.
    fn open(path: &Path, len: u64, last_block: &[u8]) -> Result<Appending, WalError> {
        debug_assert_eq!(last_block.len() as u64, len % BLOCK as u64);
        #[cfg(target_os = "linux")]
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(file) => {
                return Ok(Appending {
                    file,
                    direct: true,
                    tail: last_block.to_vec(),
                    staging: Vec::new(),
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(path = %path.display(), "O_DIRECT refused; buffered WAL writes");
            }
            Err(e) => return Err(io_err(path)(e)),
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok(Appending {
            file,
            direct: false,
            tail: Vec::new(),
            staging: Vec::new(),
        })
    }

    /// Writes `bytes` at `at` (the file's length) and makes them durable.
    fn write(&mut self, at: u64, bytes: &[u8]) -> std::io::Result<()> {
        if !self.direct {
            self.file.write_all_at(bytes, at)?;
            return self.file.sync_data();
        }
        let start = at - self.tail.len() as u64;
        crate::direct_write::write_blocks(&self.file, start, &self.tail, bytes, &mut self.staging)?;
        self.file.sync_data()?;
        // The new last partial block: the last bytes of tail + bytes.
        let keep = (self.tail.len() + bytes.len()) % BLOCK;
        let from_body = keep.min(bytes.len());
        self.tail.drain(..self.tail.len() - (keep - from_body));
        self.tail
            .extend_from_slice(&bytes[bytes.len() - from_body..]);
        Ok(())
    }

    /// Cuts the file back to `len` (its records), dropping the padding of
    /// direct writes, durably.
    fn seal(&self, len: u64) -> std::io::Result<()> {
        if self.direct {
            self.file.set_len(len)?;
            self.file.sync_all()?;
        }
        Ok(())
    }
}

/// True when `rest` (what follows the last record of a file) is the zero
/// padding of a direct write: fewer than [`BLOCK`] bytes, all zero.
fn is_padding(rest: &[u8]) -> bool {
    !rest.is_empty() && rest.len() < BLOCK && rest.iter().all(|b| *b == 0)
}

/// What recovery found.
pub struct Recovered {
    /// Every intact entry, in file order.
    pub entries: Vec<Entry>,
    /// Bytes cut off the end of the last file (an unacknowledged torn write).
    pub truncated_bytes: u64,
}

fn file_name(first: u64) -> String {
    format!("{first:020}.wal")
}

/// Creates `dir` and its missing parents with mode 0700: the data directory,
/// the WAL and the local store hold trace content before masking (and the
/// keys), which no other local user may list or read. A directory that already
/// exists with group or other access is tightened to 0700 when this user may
/// (owns it), with a warning either way, so that an old install or a
/// permissive umask does not leave the vault readable. Used for the data
/// directory, every WAL directory and the local store root.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                match fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
                    Ok(()) => tracing::warn!(
                        dir = %dir.display(),
                        old_mode = format!("{mode:o}"),
                        "directory was open to other users; tightened to 0700"
                    ),
                    Err(e) => tracing::warn!(
                        dir = %dir.display(),
                        mode = format!("{mode:o}"),
                        error = %e,
                        "directory is open to other users and cannot be tightened to 0700; restrict it yourself"
                    ),
                }
            }
            Ok(())
        }
        // Not a directory: let the caller's next step report it.
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            DirBuilder::new().recursive(true).mode(0o700).create(dir)
        }
        Err(e) => Err(e),
    }
}

/// Tightens a WAL file that an older version left readable by others to 0600
/// (new files are created 0600), or warns when this user may not.
fn tighten_file(path: &Path) -> Result<(), WalError> {
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        match fs::set_permissions(path, fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::warn!(path = %path.display(), old_mode = format!("{mode:o}"),
                "WAL file was open to other users; tightened to 0600"),
            Err(e) => {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), error = %e,
                "WAL file is open to other users and cannot be tightened to 0600")
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// CRC-32 of a record's position in its group and its payload.
fn record_crc(secret: &Secret, pos: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(secret);
    h.update(&pos.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Parses the record at `off`: `Ok((entry, position in its group, next offset))`
/// or why it is bad.
fn parse_at(data: &[u8], off: usize, secret: &Secret) -> Result<(Entry, u32, usize), String> {
    let head = data.get(off..off + HEADER).ok_or("short record header")?;
    if &head[..4] != MAGIC {
        return Err("bad record marker".into());
    }
    let pos = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let crc = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
    if len > MAX_RECORD {
        return Err(format!("record length {len} too large"));
    }
    let payload = data
        .get(off + HEADER..off + HEADER + len)
        .ok_or("short record")?;
    if record_crc(secret, pos, payload) != crc {
        return Err("checksum mismatch".into());
    }
    let e = crate::codec::decode_entry(payload).map_err(|e| format!("undecodable record: {e}"))?;
    Ok((e, pos, off + HEADER + len))
}

/// Parses records from `data`; returns entries and the offset where parsing stopped
/// with the reason, if it stopped early.
fn parse_records(data: &[u8], secret: &Secret, out: &mut Vec<Entry>) -> (usize, Option<String>) {
    let mut off = FILE_HEADER;
    while off < data.len() {
        match parse_at(data, off, secret) {
            Ok((e, _, next)) => {
                out.push(e);
                off = next;
            }
            Err(why) => return (off, Some(why)),
        }
    }
    (off, None)
}

/// Where an intact record that *starts a group* lies after `from`, if any.
/// A group is written with one write and one fdatasync, and the next group
/// only after that returns; so a later group's first record, intact after a
/// damaged one, proves the damage is in fsynced (acknowledged) data. Intact
/// records of the damaged record's own group are an unacknowledged torn write.
fn later_group_after(data: &[u8], from: usize, secret: &Secret) -> Option<usize> {
    let mut at = from + 1;
    while at + HEADER <= data.len() {
        let found = data[at..].windows(4).position(|w| w == MAGIC)? + at;
        if let Ok((_, 0, _)) = parse_at(data, found, secret) {
            return Some(found);
        }
        at = found + 1;
    }
    None
}

/// Reads a file's header: `Ok(None)` when the file is too short to hold one
/// (its creation was cut short: it holds no records).
fn read_file_header(data: &[u8]) -> Result<Option<Secret>, String> {
    let Some(head) = data.get(..FILE_HEADER) else {
        return Ok(None);
    };
    if &head[..4] != FILE_MAGIC {
        return Err("not a WAL file (bad magic)".into());
    }
    if u32::from_le_bytes([head[4], head[5], head[6], head[7]]) != FILE_VERSION {
        return Err("unknown WAL file version".into());
    }
    let crc = u32::from_le_bytes([head[24], head[25], head[26], head[27]]);
    if crc32fast::hash(&head[..24]) != crc {
        return Err("damaged WAL file header".into());
    }
    let mut secret = [0u8; 16];
    secret.copy_from_slice(&head[8..24]);
    Ok(Some(secret))
}

/// Creates a WAL file with a fresh secret, durably (file and directory).
/// Returns the secret and the file's bytes (its header).
fn new_file(dir: &Path, path: &Path) -> Result<(Secret, Vec<u8>), WalError> {
    let mut secret = [0u8; 16];
    crate::keys::random_bytes(&mut secret).map_err(|e| WalError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut head = Vec::with_capacity(FILE_HEADER);
    head.extend_from_slice(FILE_MAGIC);
    head.extend_from_slice(&FILE_VERSION.to_le_bytes());
    head.extend_from_slice(&secret);
    let crc = crc32fast::hash(&head);
    head.extend_from_slice(&crc.to_le_bytes());
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(&head).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))?;
    sync_dir(dir)?;
    Ok((secret, head))
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir` and recovers its entries.
    /// `next_index` names the first file when the directory is empty.
    pub fn open(dir: &Path, next_index: u64) -> Result<(Wal, Recovered), WalError> {
        let existed = dir.exists();
        ensure_private_dir(dir).map_err(io_err(dir))?;
        if !existed {
            // Make the new directory entries themselves durable.
            for d in dir.ancestors().skip(1).take(2) {
                sync_dir(d)?;
            }
        }
        let mut files: Vec<(u64, PathBuf)> = Vec::new();
        for ent in fs::read_dir(dir).map_err(io_err(dir))? {
            let ent = ent.map_err(io_err(dir))?;
            let name = ent.file_name().to_string_lossy().to_string();
            if let Some(first) = name
                .strip_suffix(".wal")
                .and_then(|s| s.parse::<u64>().ok())
            {
                files.push((first, ent.path()));
            }
        }
        files.sort();
        let mut entries = Vec::new();
        let mut truncated_bytes = 0;
        let mut last_secret: Option<Secret> = None;
        let mut last_block: Vec<u8> = Vec::new();
        let n = files.len();
        for (i, (_, path)) in files.iter().enumerate() {
            tighten_file(path)?;
            let mut data = Vec::new();
            File::open(path)
                .and_then(|mut f| f.read_to_end(&mut data))
                .map_err(io_err(path))?;
            let corrupt = |offset: usize, reason: String| WalError::Corrupt {
                path: path.display().to_string(),
                offset: offset as u64,
                reason,
            };
            let secret = match read_file_header(&data) {
                Ok(Some(secret)) => secret,
                // Creation cut short: no record was ever written to it.
                Ok(None) if i + 1 == n => {
                    fs::remove_file(path).map_err(io_err(path))?;
                    continue;
                }
                Ok(None) => return Err(corrupt(0, "truncated WAL file header".into())),
                Err(reason) => return Err(corrupt(0, reason)),
            };
            last_secret = Some(secret);
            let (end, problem) = parse_records(&data, &secret, &mut entries);
            let is_last = i + 1 == n;
            // The last partial block of the file appends will go to.
            last_block = data[end - end % BLOCK..end].to_vec();
            if problem.is_some() && is_last && is_padding(&data[end..]) {
                // A crash after a direct write: its padding, not a torn write.
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(end as u64).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
            } else if let Some(reason) = problem {
                if let Some(pos) = later_group_after(&data, end, &secret) {
                    return Err(WalError::Corrupt {
                        path: path.display().to_string(),
                        offset: end as u64,
                        reason: format!(
                            "{reason}, followed by an intact later group at byte {pos}"
                        ),
                    });
                }
                if i + 1 < n {
                    return Err(WalError::Corrupt {
                        path: path.display().to_string(),
                        offset: end as u64,
                        reason,
                    });
                }
                truncated_bytes = (data.len() - end) as u64;
                tracing::warn!(path = %path.display(), offset = end, bytes = truncated_bytes, %reason,
                    "discarding an unacknowledged torn write at the end of the WAL");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path))?;
                f.set_len(end as u64).map_err(io_err(path))?;
                f.sync_all().map_err(io_err(path))?;
            }
        }
        // A last file whose creation was cut short was removed above.
        files.retain(|(_, p)| p.exists());
        let (secret, header) = match (files.last(), last_secret) {
            (Some(_), Some(secret)) => (secret, None),
            _ => {
                let first = files.last().map_or(next_index, |(f, _)| *f).max(next_index);
                let path = dir.join(file_name(first));
                let (secret, header) = new_file(dir, &path)?;
                files.push((first, path));
                (secret, Some(header))
            }
        };
        let last = &files[files.len() - 1].1;
        let current_len = fs::metadata(last).map_err(io_err(last))?.len();
        let last_block = header.unwrap_or(last_block);
        let current = Appending::open(last, current_len, &last_block)?;
        let wal = Wal {
            dir: dir.to_path_buf(),
            files,
            current,
            current_len,
            secret,
            buf: Vec::new(),
        };
        Ok((
            wal,
            Recovered {
                entries,
                truncated_bytes,
            },
        ))
    }

    /// Appends a group of entries and makes them durable (one write, one fdatasync).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if self.current_len >= ROTATE_BYTES {
            self.rotate(first.idx)?;
        }
        self.buf.clear();
        for (pos, e) in entries.iter().enumerate() {
            let pos = pos as u32;
            let start = self.buf.len();
            self.buf.extend_from_slice(MAGIC);
            self.buf.extend_from_slice(&pos.to_le_bytes());
            self.buf.extend_from_slice(&[0u8; 8]);
            crate::codec::encode_entry(e, &mut self.buf);
            let payload = &self.buf[start + HEADER..];
            let len = payload.len() as u32;
            let crc = record_crc(&self.secret, pos, payload);
            self.buf[start + 8..start + 12].copy_from_slice(&len.to_le_bytes());
            self.buf[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
        }
        let path = &self.files[self.files.len() - 1].1;
        self.current
            .write(self.current_len, &self.buf)
            .map_err(io_err(path))?;
        self.current_len += self.buf.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, first: u64) -> Result<(), WalError> {
        // A sealed file ends at its last record: recovery reads anything
        // after it in a file that is not the last as corruption.
        let old = &self.files[self.files.len() - 1].1;
        self.current.seal(self.current_len).map_err(io_err(old))?;
        let path = self.dir.join(file_name(first));
        let (secret, header) = new_file(&self.dir, &path)?;
        self.current = Appending::open(&path, header.len() as u64, &header)?;
        self.secret = secret;
        self.current_len = header.len() as u64;
        self.files.push((first, path));
        Ok(())
    }

    /// Starts a new file at `next` (the next index to be written), unless
    /// the current file holds nothing yet: the files before it can then be
    /// released once `next` is published. An erasure uses this so that no
    /// WAL file keeps the payloads it removed from the store.
    pub fn rotate_at(&mut self, next: u64) -> Result<(), WalError> {
        if self.files.last().is_some_and(|(first, _)| *first < next) {
            self.rotate(next)?;
        }
        Ok(())
    }

    /// The first index of the oldest file: no entry below it is in the WAL.
    pub fn oldest(&self) -> u64 {
        self.files.first().map_or(0, |(first, _)| *first)
    }

    /// Deletes files whose entries all lie below `published` (they are in the
    /// object store, covered by a checkpoint). The open file is kept.
    pub fn release_below(&mut self, published: u64) -> Result<(), WalError> {
        while self.files.len() > 1 && self.files[1].0 <= published {
            let (_, path) = self.files.remove(0);
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Whether writes bypass the page cache (for tests).
    #[cfg(test)]
    fn is_direct(&self) -> bool {
        self.current.direct
    }

    /// Number of files (for tests).
    #[cfg(test)]
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

impl Drop for Wal {
    /// A clean close leaves the file ending at its last record. Best effort:
    /// recovery reads the padding of a direct write as the clean end anyway.
    fn drop(&mut self) {
        if let Err(e) = self.current.seal(self.current_len) {
            tracing::debug!("WAL close: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Sequence;
    use tracevault_schemas::Event;

    fn entry(i: u64) -> Entry {
        let ev = Event::from_value(
            serde_json::json!({"session_id": "s", "kind": "input", "content": format!("x{i}")}),
        )
        .unwrap();
        Entry::seal(
            ev,
            Sequence {
                ns: "n",
                idx: i,
                session_seq: i,
                received_at: 5,
                ingested_by: "w",
                salt: [1; 32],
                prev_chain: [0; 32],
            },
        )
        .unwrap()
    }

    #[test]
    fn appended_entries_are_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, r) = Wal::open(dir.path(), 0).unwrap();
        assert!(r.entries.is_empty());
        w.append(&[entry(0), entry(1)]).unwrap();
        w.append(&[entry(2)]).unwrap();
        drop(w);
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(
            r.entries.iter().map(|e| e.idx).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(r.truncated_bytes, 0);
    }

    #[test]
    fn torn_tail_is_truncated_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0), entry(1)]).unwrap();
        drop(w);
        let path = dir.path().join(file_name(0));
        let len = fs::metadata(&path).unwrap().len();
        // A torn write: half of a third record.
        append_raw(&path, &[40, 0, 0, 0, 1, 2, 3, 4, b'{']);
        let (mut w, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.truncated_bytes, 9);
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        w.append(&[entry(2)]).unwrap();
        drop(w);
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.entries.len(), 3);
    }

    /// Appends raw bytes to a WAL file, as damage or a torn write would.
    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    /// A crash (no clean close) after direct writes leaves zero padding after
    /// the last record: recovery reads it as the clean end, recovers every
    /// entry and takes appends again; zeros after the last record of a
    /// sealed (rotated) file stay corruption.
    #[test]
    fn the_padding_of_direct_writes_is_the_clean_end_of_the_last_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0), entry(1)]).unwrap();
        w.append(&[entry(2)]).unwrap();
        let len = w.current_len;
        let direct = w.is_direct();
        std::mem::forget(w);
        let on_disk = fs::metadata(&path).unwrap().len();
        if direct {
            assert_eq!(on_disk % BLOCK as u64, 0, "whole blocks were written");
            assert!(on_disk > len);
        } else {
            // tmpfs and the like: buffered writes, no padding.
            assert_eq!(on_disk, len);
        }
        let (mut w, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(
            r.entries.iter().map(|e| e.idx).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(r.truncated_bytes, 0, "padding is not a torn write");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            len,
            "cut to the last record"
        );
        // Appends go on after the last record, over the old padding.
        w.append(&[entry(3)]).unwrap();
        w.rotate(4).unwrap();
        w.append(&[entry(4)]).unwrap();
        drop(w);
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(
            r.entries.iter().map(|e| e.idx).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // The rotated file was sealed at its last record; zeros after it now
        // can only be damage.
        append_raw(&path, &[0u8; 100]);
        assert!(matches!(
            Wal::open(dir.path(), 0),
            Err(WalError::Corrupt { .. })
        ));
    }

    /// Zeros at the end of the last file that are not all padding (a block's
    /// worth or more, or followed by other bytes) are a torn write, as before.
    #[test]
    fn zeros_that_cannot_be_padding_are_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        drop(w);
        let len = fs::metadata(&path).unwrap().len();
        append_raw(&path, &[0u8; BLOCK]);
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.truncated_bytes, BLOCK as u64);
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
        append_raw(&path, &[0, 0, 0, 7]);
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.truncated_bytes, 4);
    }

    #[test]
    fn flipped_bit_in_a_sealed_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        w.rotate(1).unwrap();
        w.append(&[entry(1)]).unwrap();
        drop(w);
        let path = dir.path().join(file_name(0));
        let mut data = fs::read(&path).unwrap();
        data[20] ^= 0x10;
        fs::write(&path, data).unwrap();
        assert!(matches!(
            Wal::open(dir.path(), 0),
            Err(WalError::Corrupt { .. })
        ));
    }

    #[test]
    fn damage_before_intact_records_in_the_last_file_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        w.append(&[entry(1)]).unwrap();
        drop(w);
        let path = dir.path().join(file_name(0));
        let mut data = fs::read(&path).unwrap();
        data[30] ^= 0x10;
        fs::write(&path, &data).unwrap();
        let err = Wal::open(dir.path(), 0)
            .err()
            .expect("acknowledged entries must not be dropped silently");
        assert!(
            err.to_string()
                .contains("followed by an intact later group"),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), data, "nothing truncated");
    }

    #[test]
    fn a_torn_group_with_later_pages_on_disk_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        // One group of three records; the disk kept the third but not the second.
        w.append(&[entry(1), entry(2), entry(3)]).unwrap();
        drop(w);
        let path = dir.path().join(file_name(0));
        let mut data = fs::read(&path).unwrap();
        let secret = read_file_header(&data).unwrap().unwrap();
        let (_, _, second) = parse_at(&data, FILE_HEADER, &secret).unwrap();
        let (_, _, third) = parse_at(&data, second, &secret).unwrap();
        for b in &mut data[third + 4..third + 40] {
            *b = 0;
        }
        fs::write(&path, &data).unwrap();
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.entries.iter().map(|e| e.idx).collect::<Vec<_>>(), [0, 1]);
        assert!(r.truncated_bytes > 0);
    }

    /// A fake record, all ASCII (so a writer could send it as event content),
    /// that starts a group (position 0) and is checksummed with `secret`.
    fn ascii_fake_record(secret: &Secret) -> String {
        for n in 0..100_000u32 {
            let mut e = entry(9);
            // Vary the length too: every byte, the length's included, must be ASCII.
            e.content = Some(format!("n{n}{}", "x".repeat((n % 128) as usize)));
            e.content_digest = Some([0x41; 32]);
            e.leaf_hash = [0x41; 32];
            e.chain_hash = [0x41; 32];
            let mut payload = Vec::new();
            crate::codec::encode_entry(&e, &mut payload);
            let mut rec = Vec::new();
            rec.extend_from_slice(MAGIC);
            rec.extend_from_slice(&0u32.to_le_bytes());
            rec.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            rec.extend_from_slice(&record_crc(secret, 0, &payload).to_le_bytes());
            rec.extend_from_slice(&payload);
            if rec.iter().all(|b| *b < 0x80) {
                return String::from_utf8(rec).unwrap();
            }
        }
        panic!("no ASCII-only fake record found")
    }

    /// A torn group whose second event carries `fake` as content.
    fn torn_group_carrying(fake: impl Fn(&Secret) -> String) -> Result<(Wal, Recovered), WalError> {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        let mut carrier = entry(1);
        carrier.content = Some(fake(&w.secret));
        w.append(&[entry(2), carrier]).unwrap();
        drop(w);
        let path = dir.path().join(file_name(0));
        let mut data = fs::read(&path).unwrap();
        let secret = read_file_header(&data).unwrap().unwrap();
        let (_, _, second) = parse_at(&data, FILE_HEADER, &secret).unwrap();
        data[second + 20] ^= 0xff;
        fs::write(&path, &data).unwrap();
        Wal::open(dir.path(), 0)
    }

    #[test]
    fn a_record_forged_inside_content_does_not_pass_for_a_later_group() {
        // Keyed with a guessed secret, the fake is not an intact record: the
        // torn group is truncated as it should be.
        let (_, r) = torn_group_carrying(|_| ascii_fake_record(&[0; 16]))
            .expect("a torn group is truncated");
        assert_eq!(r.entries.len(), 1);
        // Only a writer who knew the file's secret could make it count (which
        // shows the scan would otherwise have been fooled).
        assert!(matches!(
            torn_group_carrying(ascii_fake_record),
            Err(WalError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_damaged_file_header_is_corruption_and_a_cut_one_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        drop(w);
        let path = dir.path().join(file_name(0));
        let mut data = fs::read(&path).unwrap();
        data[10] ^= 1;
        fs::write(&path, &data).unwrap();
        assert!(matches!(
            Wal::open(dir.path(), 0),
            Err(WalError::Corrupt { .. })
        ));
        fs::write(&path, &data[..10]).unwrap();
        let (mut w, r) = Wal::open(dir.path(), 0).unwrap();
        assert!(r.entries.is_empty());
        w.append(&[entry(0)]).unwrap();
        drop(w);
        assert_eq!(Wal::open(dir.path(), 0).unwrap().1.entries.len(), 1);
    }

    #[test]
    fn released_files_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        w.rotate(1).unwrap();
        w.append(&[entry(1)]).unwrap();
        w.rotate(2).unwrap();
        w.release_below(1).unwrap();
        assert_eq!(w.file_count(), 2);
        w.release_below(5).unwrap();
        assert_eq!(w.file_count(), 1);
        drop(w);
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert!(r.entries.is_empty());
    }

    #[test]
    fn wal_directory_and_files_are_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("wal/ns");
        let (mut w, _) = Wal::open(&dir, 0).unwrap();
        w.append(&[entry(0)]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("wal")), 0o700);
        let file = dir.join(file_name(0));
        assert_eq!(mode(&file), 0o600);
        // Loose modes left by an older version are tightened on open.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        drop(w);
        let (_, r) = Wal::open(&dir, 0).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
    }
}
