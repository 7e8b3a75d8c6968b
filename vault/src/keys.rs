//! Ed25519 key files: created once with 0600 permissions, loaded on start.
//!
//! A key file holds the base64 of the 32-byte Ed25519 seed and a newline.
//! The log key signs segment headers and checkpoints; the issuer key signs
//! JWTs. They are separate so that rotating one never touches the other.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file system refused.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file exists but does not hold a key.
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The file is readable by others: refuse rather than keep using a leaked key silently.
    #[error("key file {path} has permissions {mode:o}; it must be 0600 (chmod 600 {path})")]
    Permissions {
        /// The key file.
        path: String,
        /// The mode found.
        mode: u32,
    },
    /// The OS random generator failed.
    #[error("random generator: {0}")]
    Random(String),
}

/// Fills `buf` from the OS random generator.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

/// Loads the key at `path`, or creates it (0600, parent dirs 0700) when absent.
/// Returns the key and whether it was created now.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyError> {
    let p = path.display().to_string();
    let io = |source| KeyError::Io {
        path: p.clone(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions { path: p, mode });
            }
            Ok((parse_key(&p, &text)?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(io)?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
            }
            let mut seed = [0u8; 32];
            random_bytes(&mut seed)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            f.write_all(format!("{}\n", B64.encode(seed)).as_bytes())
                .map_err(io)?;
            f.sync_all().map_err(io)?;
            Ok((SigningKey::from_bytes(&seed), true))
        }
        Err(e) => Err(io(e)),
    }
}

fn parse_key(path: &str, text: &str) -> Result<SigningKey, KeyError> {
    let bad = |reason: &str| KeyError::Malformed {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let bytes = B64.decode(text.trim()).map_err(|_| bad("not base64"))?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("not a 32-byte Ed25519 seed"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `contents` to a new file with 0600 permissions, replacing an older one
/// atomically (write to a temporary name, fsync, rename).
pub fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let p = path.display().to_string();
    let io = |source| KeyError::Io {
        path: p.clone(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_with_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/log.key");
        let (k1, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let (k2, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
    }

    #[test]
    fn refuses_world_readable_and_malformed_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyError::Permissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "AAAA\n").unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyError::Malformed { .. })
        ));
    }

    #[test]
    fn secret_file_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.token");
        write_secret_file(&path, b"x").unwrap();
        write_secret_file(&path, b"y").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"y");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
