//! A C2SP `tlog-witness`: for each log it trusts (origin and log key) it
//! keeps the size and root of the latest checkpoint it cosigned, and
//! cosigns a new checkpoint only if it is signed by the log's key and
//! proven consistent with that one (RFC 6962). So no log, its key holder
//! included, can show this witness two different histories, or a history
//! rolled back, and get both cosigned.
//!
//! Check and update are one step under one lock, and the new state is on
//! disk (temporary file, fsync, rename, fsync of the directory) before the
//! cosignature leaves: a crash can lose a cosignature, never make the
//! witness cosign a fork of what it already cosigned. The data directory
//! is locked so that two witness processes never share a state.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::note::{self, NoteError};
use crate::record::Hash;

/// Most consistency proof lines a request may carry (C2SP: 63).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Why a checkpoint was not cosigned; each maps to the status C2SP
/// `tlog-witness` prescribes.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// 400: the request is malformed, or its old size exceeds the new one.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404: the checkpoint's origin is not a log this witness trusts.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 403: no signature of the log's trusted key verifies.
    #[error("the checkpoint is not signed by the trusted key of {0:?}")]
    Forbidden(String),
    /// 409: the old size is not the size last cosigned (which is given,
    /// for the client to retry from), or the same size with another root.
    #[error("conflict: the latest cosigned size is {size}{}", if *.fork { " with another root (fork)" } else { "" })]
    Conflict {
        /// The size of the latest checkpoint cosigned for this origin.
        size: u64,
        /// Same size, different root: a fork, not a stale client.
        fork: bool,
    },
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify: {0}")]
    Unprocessable(String),
    /// 500: the state could not be read or written (nothing cosigned).
    #[error("witness state: {0}")]
    State(String),
}

/// What a witness trusts and holds.
pub struct Witness {
    name: String,
    key: SigningKey,
    state_dir: PathBuf,
    logs: HashMap<String, VerifyingKey>,
    /// Serialises check-and-update for every origin.
    lock: Mutex<()>,
    _dir_lock: File,
}

/// The latest checkpoint cosigned for one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    /// Tree size.
    pub size: u64,
    /// Root at that size.
    pub root: Hash,
}

impl Witness {
    /// Opens the witness in `dir` (created 0700): takes the directory's
    /// lock, loads or creates its key (`witness.key`) and its name
    /// (`name`: `name` if given the first time, else a default; a
    /// different name later is refused, since the key ID commits to it).
    /// `logs` are the trusted logs' C2SP verifier keys (type 0x01), whose
    /// key names are their origins.
    pub fn open(dir: &Path, name: Option<&str>, logs: &[String]) -> Result<Witness, WitnessError> {
        let st = |e: std::io::Error| WitnessError::State(format!("{}: {e}", dir.display()));
        crate::wal::ensure_private_dir(dir).map_err(st)?;
        let lock_path = dir.join("lock");
        let dir_lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(st)?;
        dir_lock.try_lock().map_err(|_| {
            WitnessError::State(format!(
                "{} is in use by another witness (lock {} is held)",
                dir.display(),
                lock_path.display()
            ))
        })?;
        let (key, _) = crate::keys::load_or_create(&dir.join("witness.key"))
            .map_err(|e| WitnessError::State(e.to_string()))?;
        let name = witness_name(dir, name, &key)?;
        let mut trusted = HashMap::new();
        for vkey in logs {
            let (origin, pubkey) = note::parse_verifier_key(vkey)
                .map_err(|e| WitnessError::BadRequest(format!("--trust {vkey}: {e}")))?;
            let vk = VerifyingKey::from_bytes(&pubkey)
                .map_err(|_| WitnessError::BadRequest(format!("--trust {vkey}: bad key")))?;
            if trusted.insert(origin.clone(), vk).is_some() {
                return Err(WitnessError::BadRequest(format!(
                    "--trust: log {origin} is given twice"
                )));
            }
        }
        let state_dir = dir.join("state");
        crate::wal::ensure_private_dir(&state_dir).map_err(st)?;
        Ok(Witness {
            name,
            key,
            state_dir,
            logs: trusted,
            lock: Mutex::new(()),
            _dir_lock: dir_lock,
        })
    }

    /// This witness's public identity.
    pub fn cosigner(&self) -> crate::cosignature::Cosigner {
        crate::cosignature::Cosigner::of(&self.name, &self.key)
    }

    /// The origins this witness trusts.
    pub fn logs(&self) -> impl Iterator<Item = &str> {
        self.logs.keys().map(String::as_str)
    }

    /// Handles one `add-checkpoint` request body; on success the
    /// cosignature line(s), each ending in `\n`, made at `now` (POSIX s).
    pub fn add_checkpoint(&self, body: &str, now: u64) -> Result<String, WitnessError> {
        let req = parse_request(body)?;
        let origin = req.note.split('\n').next().unwrap_or_default().to_string();
        let vk = self
            .logs
            .get(&origin)
            .ok_or_else(|| WitnessError::UnknownLog(origin.clone()))?;
        let cp = note::open_checkpoint(req.note, &origin, vk).map_err(|e| match e {
            NoteError::NoSignature { .. } | NoteError::BadSignature { .. } => {
                WitnessError::Forbidden(origin.clone())
            }
            other => WitnessError::BadRequest(format!("checkpoint: {other}")),
        })?;
        if cp.size == 0 && cp.root != crate::merkle::empty_root() {
            return Err(WitnessError::BadRequest(
                "a checkpoint of size 0 must carry the empty tree's root".into(),
            ));
        }
        if req.old > cp.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is larger than the checkpoint's {}",
                req.old, cp.size
            )));
        }
        let _guard = self
            .lock
            .lock()
            .map_err(|_| WitnessError::State("lock poisoned".into()))?;
        let latest = self.latest(&origin)?;
        let latest_size = latest.map_or(0, |c| c.size);
        if req.old != latest_size {
            return Err(WitnessError::Conflict {
                size: latest_size,
                fork: false,
            });
        }
        match latest {
            Some(l) if l.size == cp.size => {
                if l.root != cp.root {
                    return Err(WitnessError::Conflict {
                        size: l.size,
                        fork: true,
                    });
                }
                if !req.proof.is_empty() {
                    return Err(WitnessError::Unprocessable(
                        "a proof between equal sizes must be empty".into(),
                    ));
                }
            }
            Some(l) => {
                crate::merkle::verify_consistency(l.size, cp.size, &req.proof, &l.root, &cp.root)
                    .map_err(|e| WitnessError::Unprocessable(e.to_string()))?
            }
            None if !req.proof.is_empty() => {
                return Err(WitnessError::BadRequest(
                    "the proof must be empty when the old size is 0".into(),
                ));
            }
            None => {}
        }
        // Nothing to write when it is the one already cosigned (a replay of
        // the public checkpoint costs no disk write).
        let new = Cosigned {
            size: cp.size,
            root: cp.root,
        };
        if latest != Some(new) {
            self.save(&origin, new)?;
        }
        let body = cp.body();
        Ok(crate::cosignature::cosign(
            &self.name, &self.key, now, &body,
        ))
    }

    /// The latest checkpoint cosigned for `origin`, if any.
    pub fn latest(&self, origin: &str) -> Result<Option<Cosigned>, WitnessError> {
        let path = self.state_path(origin);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WitnessError::State(format!("{}: {e}", path.display()))),
        };
        let bad = || WitnessError::State(format!("{} is damaged", path.display()));
        let mut lines = text.lines();
        if lines.next() != Some(origin) {
            return Err(bad());
        }
        let size = lines.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let root = lines
            .next()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(bad)?;
        Ok(Some(Cosigned { size, root }))
    }

    fn state_path(&self, origin: &str) -> PathBuf {
        self.state_dir
            .join(hex::encode(Sha256::digest(origin.as_bytes())))
    }

    /// Writes the state of `origin` durably before anything is cosigned.
    fn save(&self, origin: &str, c: Cosigned) -> Result<(), WitnessError> {
        let path = self.state_path(origin);
        let tmp = path.with_extension("tmp");
        let st = |e: std::io::Error| WitnessError::State(format!("{}: {e}", path.display()));
        let mut f = File::create(&tmp).map_err(st)?;
        f.write_all(format!("{origin}\n{}\n{}\n", c.size, B64.encode(c.root)).as_bytes())
            .map_err(st)?;
        f.sync_all().map_err(st)?;
        std::fs::rename(&tmp, &path).map_err(st)?;
        File::open(&self.state_dir)
            .and_then(|d| d.sync_all())
            .map_err(st)
    }
}

/// The name of the witness in `dir`: kept in `dir/name` once chosen.
fn witness_name(dir: &Path, given: Option<&str>, key: &SigningKey) -> Result<String, WitnessError> {
    let path = dir.join("name");
    let st = |e: std::io::Error| WitnessError::State(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(stored) => {
            let stored = stored.trim().to_string();
            if !note::is_valid_key_name(&stored) {
                return Err(WitnessError::State(format!(
                    "{} holds no valid name",
                    path.display()
                )));
            }
            if let Some(g) = given
                && g != stored
            {
                return Err(WitnessError::BadRequest(format!(
                    "this witness is named {stored:?}, not {g:?} (its key ID commits to the name)"
                )));
            }
            Ok(stored)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = match given {
                Some(g) => g.to_string(),
                None => format!(
                    "tracevault-witness/{}",
                    hex::encode(&key.verifying_key().as_bytes()[..8])
                ),
            };
            if !note::is_valid_key_name(&name) {
                return Err(WitnessError::BadRequest(format!(
                    "invalid witness name {name:?}"
                )));
            }
            // Temporary file, fsync, rename: a crash never leaves a half name.
            let tmp = path.with_extension("tmp");
            let mut f = File::create(&tmp).map_err(st)?;
            f.write_all(format!("{name}\n").as_bytes()).map_err(st)?;
            f.sync_all().map_err(st)?;
            std::fs::rename(&tmp, &path).map_err(st)?;
            Ok(name)
        }
        Err(e) => Err(st(e)),
    }
}

struct Request<'a> {
    old: u64,
    proof: Vec<Hash>,
    note: &'a str,
}

/// `old <N>\n`, up to 63 base64 hash lines, an empty line, the note.
fn parse_request(body: &str) -> Result<Request<'_>, WitnessError> {
    let bad = |m: &str| WitnessError::BadRequest(m.to_string());
    if body.len() > MAX_REQUEST_BYTES {
        return Err(bad("request too large"));
    }
    let (first, mut rest) = body
        .split_once('\n')
        .ok_or_else(|| bad("no old size line"))?;
    let n = first
        .strip_prefix("old ")
        .ok_or_else(|| bad("the first line must be `old <size>`"))?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad("old size must be a decimal without leading zeroes"));
    }
    let old: u64 = n.parse().map_err(|_| bad("old size out of range"))?;
    let mut proof = Vec::new();
    loop {
        let (line, after) = rest
            .split_once('\n')
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let h = B64
            .decode(line)
            .ok()
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad("a proof line is not a base64 32-byte hash"))?;
        proof.push(h);
    }
    Ok(Request {
        old,
        proof,
        note: rest,
    })
}

/// A request body for `add-checkpoint` (the client side).
pub fn request_body(old: u64, proof: &[Hash], signed_checkpoint: &str) -> String {
    let mut s = format!("old {old}\n");
    for h in proof {
        s.push_str(&B64.encode(h));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(signed_checkpoint);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MerkleTree;
    use crate::note::{Checkpoint, sign_checkpoint, verifier_key};

    const ORIGIN: &str = "tracevault.local/test/ns";

    fn signed(tree: &MerkleTree, size: u64, key: &SigningKey) -> String {
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: tree.root_at(size).unwrap(),
        };
        sign_checkpoint(&cp, ORIGIN, key)
    }

    #[test]
    fn cosigns_only_consistent_growth_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = SigningKey::from_bytes(&[1; 32]);
        let trust = vec![verifier_key(ORIGIN, log.verifying_key().as_bytes())];
        let mut tree = MerkleTree::new();
        for i in 0..20u8 {
            tree.push([i; 32]);
        }
        let w = Witness::open(dir.path(), Some("w.example/1"), &trust).unwrap();
        let c = w.cosigner();
        // First contact: old 0, empty proof.
        let cp10 = signed(&tree, 10, &log);
        let line = w
            .add_checkpoint(&request_body(0, &[], &cp10), 1000)
            .unwrap();
        let body10 = note::open_checkpoint(&cp10, ORIGIN, &log.verifying_key())
            .unwrap()
            .body();
        assert_eq!(c.verify(&line, &body10).unwrap(), Some(1000));
        // A stale client learns the size to continue from.
        let cp15 = signed(&tree, 15, &log);
        match w.add_checkpoint(&request_body(0, &[], &cp15), 1001) {
            Err(WitnessError::Conflict {
                size: 10,
                fork: false,
            }) => {}
            other => panic!("{other:?}"),
        }
        let proof = tree.consistency_proof(10, 15).unwrap();
        w.add_checkpoint(&request_body(10, &proof, &cp15), 1002)
            .unwrap();
        // A fork at a larger size: signed by the log key, not consistent.
        let mut fork = MerkleTree::new();
        for i in 0..20u8 {
            fork.push([if i == 3 { 99 } else { i }; 32]);
        }
        let fork_proof = fork.consistency_proof(15, 20).unwrap();
        let fork20 = signed(&fork, 20, &log);
        assert!(matches!(
            w.add_checkpoint(&request_body(15, &fork_proof, &fork20), 1003),
            Err(WitnessError::Unprocessable(_))
        ));
        // The same size with another root.
        let fork15 = signed(&fork, 15, &log);
        assert!(matches!(
            w.add_checkpoint(&request_body(15, &[], &fork15), 1004),
            Err(WitnessError::Conflict {
                size: 15,
                fork: true
            })
        ));
        // Another key, an unknown origin, a malformed body.
        let other = SigningKey::from_bytes(&[2; 32]);
        assert!(matches!(
            w.add_checkpoint(&request_body(15, &[], &signed(&tree, 15, &other)), 1005),
            Err(WitnessError::Forbidden(_))
        ));
        let cp_other = sign_checkpoint(
            &Checkpoint {
                origin: "elsewhere/log".into(),
                size: 1,
                root: [0; 32],
            },
            "elsewhere/log",
            &log,
        );
        assert!(matches!(
            w.add_checkpoint(&request_body(0, &[], &cp_other), 1006),
            Err(WitnessError::UnknownLog(_))
        ));
        assert!(matches!(
            w.add_checkpoint("old 01\n\n", 1007),
            Err(WitnessError::BadRequest(_))
        ));
        assert!(matches!(
            w.add_checkpoint(&request_body(16, &[], &cp15), 1008),
            Err(WitnessError::BadRequest(_))
        ));
        // Restarted, it remembers size 15: the fork is still refused, and
        // the name is kept (another one is refused).
        drop(w);
        assert!(Witness::open(dir.path(), Some("w.example/2"), &trust).is_err());
        let w = Witness::open(dir.path(), None, &trust).unwrap();
        assert_eq!(w.cosigner(), c);
        assert_eq!(w.latest(ORIGIN).unwrap().unwrap().size, 15);
        assert!(matches!(
            w.add_checkpoint(&request_body(15, &fork_proof, &fork20), 1009),
            Err(WitnessError::Unprocessable(_))
        ));
        // Two witnesses on one directory never share the state.
        assert!(Witness::open(dir.path(), None, &trust).is_err());
        // A log given twice, and an empty tree with a root that is not the
        // empty tree's (it would wedge every later proof), are refused.
        let other_dir = tempfile::tempdir().unwrap();
        let twice = vec![trust[0].clone(), trust[0].clone()];
        assert!(Witness::open(other_dir.path(), None, &twice).is_err());
        let w2 = Witness::open(other_dir.path(), None, &trust).unwrap();
        let empty = sign_checkpoint(
            &Checkpoint {
                origin: ORIGIN.into(),
                size: 0,
                root: [1; 32],
            },
            ORIGIN,
            &log,
        );
        assert!(matches!(
            w2.add_checkpoint(&request_body(0, &[], &empty), 1010),
            Err(WitnessError::BadRequest(_))
        ));
    }
}
