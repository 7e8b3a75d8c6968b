//! C2SP `tlog-cosignature` (Ed25519, `cosignature/v1`): a witness's
//! statement that, as of a time, the checkpoint is the largest consistent
//! tree it has seen for that log.
//!
//! A cosignature is a signed-note signature line `— <name> base64(key ID ||
//! u64 BE timestamp || Ed25519 signature)`, the key ID being
//! `SHA-256(name || "\n" || 0x04 || pubkey)[:4]` and the signed message
//! `"cosignature/v1\ntime <ts>\n" || checkpoint body`. Verifier keys are
//! C2SP vkeys with type byte 0x04.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::note::is_valid_key_name;

/// The vkey type byte of an Ed25519 `cosignature/v1` key.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Why a cosigner key or cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    /// Not a `cosignature/v1` verifier key.
    #[error("invalid witness verifier key: {0}")]
    InvalidKey(&'static str),
    /// Not a signature line of this witness, or not a valid one.
    #[error("invalid cosignature: {0}")]
    Invalid(&'static str),
}

/// A witness's public identity: its name and Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosigner {
    /// Key name (a schema-less URL, e.g. `witness.example/w1`).
    pub name: String,
    /// Ed25519 public key.
    pub key: VerifyingKey,
}

/// `SHA-256(name || "\n" || 0x04 || pubkey)[:4]`.
pub fn key_id(name: &str, pubkey: &[u8; 32]) -> [u8; 4] {
    crate::note::key_id_of_type(name, ALG_COSIGNATURE_V1, pubkey)
}

/// The message a `cosignature/v1` signs.
pub fn signed_message(timestamp: u64, checkpoint_body: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_body}")
}

impl Cosigner {
    /// The cosigner of a signing key.
    pub fn of(name: &str, key: &SigningKey) -> Cosigner {
        Cosigner {
            name: name.to_string(),
            key: key.verifying_key(),
        }
    }

    /// The C2SP vkey `<name>+<key ID>+base64(0x04 || pubkey)`.
    pub fn verifier_key(&self) -> String {
        let mut raw = [0u8; 33];
        raw[0] = ALG_COSIGNATURE_V1;
        raw[1..].copy_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, self.key.as_bytes())),
            B64.encode(raw)
        )
    }

    /// Parses a vkey of type 0x04, checking the key ID and the point.
    pub fn parse(vkey: &str) -> Result<Cosigner, CosignatureError> {
        let bad = CosignatureError::InvalidKey;
        let vkey = vkey.trim();
        let (name, rest) = vkey.split_once('+').ok_or(bad("missing '+' separators"))?;
        let (id_hex, b64) = rest.split_once('+').ok_or(bad("missing '+' separators"))?;
        if !is_valid_key_name(name) {
            return Err(bad("invalid key name"));
        }
        let id = hex::decode(id_hex).map_err(|_| bad("key ID is not 8 hex digits"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("key is not valid base64"))?;
        let (&alg, key) = raw.split_first().ok_or(bad("empty key"))?;
        if alg != ALG_COSIGNATURE_V1 {
            return Err(bad("not a cosignature/v1 (type 0x04) key"));
        }
        let key: [u8; 32] = key.try_into().map_err(|_| bad("key is not 32 bytes"))?;
        let vk = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 point"))?;
        if id.len() != 4 || id != key_id(name, &key) {
            return Err(bad("key ID does not match name and key"));
        }
        Ok(Cosigner {
            name: name.to_string(),
            key: vk,
        })
    }

    /// Verifies `line` (a note signature line, with or without its final
    /// newline) as this cosigner's cosignature of `checkpoint_body`, and
    /// returns its timestamp. `Ok(None)`: the line is another key's.
    pub fn verify(
        &self,
        line: &str,
        checkpoint_body: &str,
    ) -> Result<Option<u64>, CosignatureError> {
        let bad = CosignatureError::Invalid;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or(bad("not a signature line"))?;
        let (name, b64) = rest.split_once(' ').ok_or(bad("no signature"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| bad("signature is not base64"))?;
        if name != self.name || raw.len() < 4 || raw[..4] != key_id(name, self.key.as_bytes()) {
            return Ok(None);
        }
        if raw.len() != 4 + 8 + 64 {
            return Err(bad("a cosignature/v1 is 76 bytes"));
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&raw[4..12]);
        let timestamp = u64::from_be_bytes(ts);
        if timestamp > i64::MAX as u64 {
            return Err(bad("timestamp beyond 2^63 - 1"));
        }
        let sig = Signature::from_slice(&raw[12..]).map_err(|_| bad("malformed signature"))?;
        self.key
            .verify(signed_message(timestamp, checkpoint_body).as_bytes(), &sig)
            .map_err(|_| bad("signature does not verify"))?;
        Ok(Some(timestamp))
    }
}

/// Which witnesses a checkpoint must carry cosignatures of: `threshold`
/// of `witnesses` (k of n).
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    /// The witnesses' public identities.
    pub witnesses: Vec<Cosigner>,
    /// How many distinct witnesses must have cosigned.
    pub threshold: usize,
}

impl WitnessPolicy {
    /// The policy of `threshold` (default: all) of the witnesses `vkeys`
    /// (C2SP verifier keys of type 0x04), or why it could never be met.
    pub fn from_vkeys<S: AsRef<str>>(
        vkeys: &[S],
        threshold: Option<usize>,
    ) -> Result<WitnessPolicy, String> {
        let witnesses = vkeys
            .iter()
            .map(|v| Cosigner::parse(v.as_ref()).map_err(|e| format!("{}: {e}", v.as_ref())))
            .collect::<Result<Vec<_>, _>>()?;
        // One witness is one vote, however often (or under whatever names)
        // it is listed.
        for (i, w) in witnesses.iter().enumerate() {
            if witnesses[..i].iter().any(|o| o.key == w.key) {
                return Err(format!("witness key {} is given twice", w.verifier_key()));
            }
        }
        let threshold = threshold.unwrap_or(witnesses.len());
        if threshold == 0 || threshold > witnesses.len() {
            return Err(format!(
                "the witness threshold must be between 1 and the number of witnesses ({})",
                witnesses.len()
            ));
        }
        Ok(WitnessPolicy {
            witnesses,
            threshold,
        })
    }

    /// A finding when `note` lacks cosignatures, else `None`.
    pub fn shortfall(&self, note: &str) -> Option<String> {
        let n = self.cosigned_by(note);
        (n < self.threshold).then(|| {
            format!(
                "checkpoint carries valid cosignatures of {n} of the {} witnesses given, {} required",
                self.witnesses.len(),
                self.threshold
            )
        })
    }

    /// How many distinct witnesses of the policy validly cosigned `note` (a
    /// signed checkpoint note with its signature lines); lines of other
    /// keys are ignored, and a witness's line that does not verify does
    /// not count.
    pub fn cosigned_by(&self, note: &str) -> usize {
        let Some(split) = note.find("\n\n") else {
            return 0;
        };
        let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
        self.witnesses
            .iter()
            .filter(|w| {
                sigs.lines()
                    .any(|line| matches!(w.verify(line, body), Ok(Some(_))))
            })
            .count()
    }
}

/// Cosigns `checkpoint_body` (the note text, ending in `\n`) at
/// `timestamp` (POSIX seconds): the signature line, ending in `\n`.
pub fn cosign(name: &str, key: &SigningKey, timestamp: u64, checkpoint_body: &str) -> String {
    let sig = key.sign(signed_message(timestamp, checkpoint_body).as_bytes());
    let mut raw = Vec::with_capacity(76);
    raw.extend_from_slice(&key_id(name, key.verifying_key().as_bytes()));
    raw.extend_from_slice(&timestamp.to_be_bytes());
    raw.extend_from_slice(&sig.to_bytes());
    format!("\u{2014} {name} {}\n", B64.encode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared C2SP vector (`../shared/vectors/c2sp-v1.json`).
    #[test]
    fn matches_the_shared_vector() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/c2sp-v1.json")).unwrap();
        let c = &v["cosignature_v1"];
        let seed: [u8; 32] = hex::decode(c["witness_seed_hex"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_bytes(&seed);
        let name = c["witness_name"].as_str().unwrap();
        let body = c["checkpoint_body"].as_str().unwrap();
        let ts = c["timestamp"].as_u64().unwrap();
        let w = Cosigner::of(name, &key);
        assert_eq!(
            w.verifier_key(),
            c["witness_verifier_key"].as_str().unwrap()
        );
        assert_eq!(Cosigner::parse(&w.verifier_key()).unwrap(), w);
        assert_eq!(
            signed_message(ts, body),
            c["signed_message"].as_str().unwrap()
        );
        let line = cosign(name, &key, ts, body);
        assert_eq!(line.trim_end(), c["signature_line"].as_str().unwrap());
        assert_eq!(w.verify(&line, body), Ok(Some(ts)));
        // Another body, another key, another name.
        assert!(w.verify(&line, &body.replace("300", "301")).is_err());
        let other = Cosigner::of(name, &SigningKey::from_bytes(&[9; 32]));
        assert_eq!(other.verify(&line, body), Ok(None));
        // A policy counts distinct witnesses with a valid line.
        let note = format!("{body}\n\u{2014} log {}\n{line}", "AAAA");
        let policy = WitnessPolicy {
            witnesses: vec![w.clone(), other.clone()],
            threshold: 2,
        };
        assert_eq!(policy.cosigned_by(&note), 1);
        assert_eq!(policy.cosigned_by(&format!("{note}{line}")), 1);
        assert_eq!(policy.cosigned_by(body), 0);
        // The same witness twice (even under another name) is one vote.
        let renamed = Cosigner::of("witness.example/again", &key).verifier_key();
        assert!(WitnessPolicy::from_vkeys(&[w.verifier_key(), w.verifier_key()], None).is_err());
        assert!(WitnessPolicy::from_vkeys(&[w.verifier_key(), renamed], None).is_err());
        // A log key (type 0x01) is not a witness key.
        let log_vkey = crate::note::verifier_key(name, key.verifying_key().as_bytes());
        assert!(Cosigner::parse(&log_vkey).is_err());
    }
}
