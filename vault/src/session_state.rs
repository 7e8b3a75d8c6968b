//! Session-state snapshots: what a namespace's sequencer must know to
//! continue the log that the tree and the chain do not say, written to the
//! store now and then so that opening a namespace need not read every
//! segment (`ns/{ns}/state/{size:020}`).
//!
//! A snapshot at size `S` holds, for the entries `0..S`: the tree root and
//! the chain hash after entry `S-1`, the largest `received_at`, and every
//! session's next `session_seq`. It is signed with the log key (Ed25519 over
//! a context line and the exact body bytes), so nobody without the key can
//! plant counters that would make the writer reuse a `session_seq`; and
//! `tracevault verify` recomputes every stored snapshot from the data, so a
//! key holder cannot either without it being found.
//!
//! The body is one line of JSON (sessions sorted by id, so the same state
//! always gives the same bytes), then a line with the base64 signature.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::record::Hash;

/// What the signature covers, before the body.
const CONTEXT: &[u8] = b"tracevault-session-state/v1\n";

/// Snapshots larger than this are refused unread (a planted object must not
/// exhaust memory): about 10 million sessions.
pub const MAX_STATE_BYTES: usize = 1 << 30;

/// The sequencer's state after the first `size` entries of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionState {
    /// The checkpoint origin of the namespace (binds the snapshot to it).
    pub origin: String,
    /// Entries covered.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    #[serde(with = "hex_hash")]
    pub root: Hash,
    /// Chain hash after entry `size - 1` (zeros when `size` is 0).
    #[serde(with = "hex_hash")]
    pub chain: Hash,
    /// The largest `received_at` (microseconds) of the entries covered.
    pub last_received: i64,
    /// Every session of the entries covered, with its next `session_seq`,
    /// sorted by session id.
    pub sessions: Vec<(String, u64)>,
}

/// Why a snapshot object was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not a snapshot: wrong shape, or too large.
    #[error("malformed session-state snapshot: {0}")]
    Malformed(String),
    /// The signature does not verify with the log key.
    #[error("the session-state snapshot's signature does not verify with the log key")]
    Signature,
    /// Signed, but for another namespace or size than its name says.
    #[error("the session-state snapshot is for {0}, not for this object name")]
    Misplaced(String),
}

impl SessionState {
    /// The signed object.
    pub fn encode(&self, key: &SigningKey) -> Result<Vec<u8>, StateError> {
        let mut body =
            serde_json::to_vec(self).map_err(|e| StateError::Malformed(e.to_string()))?;
        let mut msg = CONTEXT.to_vec();
        msg.extend_from_slice(&body);
        let sig = key.sign(&msg);
        use base64::Engine;
        body.push(b'\n');
        body.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(sig.to_bytes())
                .as_bytes(),
        );
        body.push(b'\n');
        Ok(body)
    }

    /// Opens a snapshot object named for `size` in the namespace of
    /// `origin`: its signature must verify with `vk`, and it must say the
    /// same origin and size.
    pub fn open(
        bytes: &[u8],
        origin: &str,
        size: u64,
        vk: &VerifyingKey,
    ) -> Result<SessionState, StateError> {
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateError::Malformed(format!(
                "{} bytes (at most {MAX_STATE_BYTES})",
                bytes.len()
            )));
        }
        let text = bytes
            .strip_suffix(b"\n")
            .ok_or_else(|| StateError::Malformed("no final newline".into()))?;
        let cut = text
            .iter()
            .rposition(|b| *b == b'\n')
            .ok_or_else(|| StateError::Malformed("no signature line".into()))?;
        let (body, sig_line) = (&text[..cut], &text[cut + 1..]);
        use base64::Engine;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig_line)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(StateError::Signature)?;
        let mut msg = CONTEXT.to_vec();
        msg.extend_from_slice(body);
        vk.verify(&msg, &sig).map_err(|_| StateError::Signature)?;
        let st: SessionState =
            serde_json::from_slice(body).map_err(|e| StateError::Malformed(e.to_string()))?;
        if st.origin != origin || st.size != size {
            return Err(StateError::Misplaced(format!(
                "{} at size {}",
                st.origin, st.size
            )));
        }
        Ok(st)
    }
}

/// The size a snapshot object's name gives (`{size:020}`).
pub fn parse_state_name(name: &str) -> Option<u64> {
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionState {
        SessionState {
            origin: "tracevault.local/x/ns".into(),
            size: 7,
            root: [1; 32],
            chain: [2; 32],
            last_received: 42,
            sessions: vec![("a".into(), 3), ("b".into(), 4)],
        }
    }

    #[test]
    fn a_snapshot_opens_only_with_its_key_name_and_bytes() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let st = sample();
        let bytes = st.encode(&key).unwrap();
        let vk = key.verifying_key();
        assert_eq!(SessionState::open(&bytes, &st.origin, 7, &vk).unwrap(), st);
        assert!(matches!(
            SessionState::open(&bytes, &st.origin, 7, &other.verifying_key()),
            Err(StateError::Signature)
        ));
        assert!(matches!(
            SessionState::open(&bytes, &st.origin, 8, &vk),
            Err(StateError::Misplaced(_))
        ));
        assert!(matches!(
            SessionState::open(&bytes, "tracevault.local/x/other", 7, &vk),
            Err(StateError::Misplaced(_))
        ));
        // One counter lowered (to make the writer reuse a session_seq).
        let forged = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("[\"a\",3]", "[\"a\",1]");
        assert!(matches!(
            SessionState::open(forged.as_bytes(), &st.origin, 7, &vk),
            Err(StateError::Signature)
        ));
        assert!(SessionState::open(b"{}", &st.origin, 7, &vk).is_err());
        assert_eq!(parse_state_name("00000000000000000007"), Some(7));
        assert_eq!(parse_state_name("7"), None);
    }
}
