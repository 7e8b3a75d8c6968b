//! C2SP signed notes, checkpoints and tlog-proofs.
//!
//! A namespace's tree head is published as a C2SP `tlog-checkpoint`
//! (<https://c2sp.org/tlog-checkpoint>), which is a C2SP `signed-note`
//! (<https://c2sp.org/signed-note>) signed with the vault's Ed25519 log key
//! under the key name `<vault origin>/<ns>` (SPEC section 4). Receipts carry
//! C2SP `tlog-proof` text (<https://c2sp.org/tlog-proof>). Using these formats
//! unchanged lets standard tooling (`golang.org/x/mod/sumdb/note`,
//! `transparency-dev/formats`, witnesses) check our logs, so this module
//! follows the specs and the Go reference implementation's parsing rules:
//!
//! * a note is valid UTF-8 with no control character other than `\n`; its
//!   text ends with `\n`, is separated from the signatures by the *last*
//!   blank line, and is signed byte for byte including its final newline;
//! * a signature line is `— <key name> <base64(4-byte key ID || sig)>\n`;
//!   key names are non-empty and contain no Unicode space and no `+`;
//! * Ed25519 key ID = `SHA-256(name || 0x0A || 0x01 || pubkey)[:4]`;
//! * signatures from unknown keys (name or key ID differ) are ignored; a
//!   signature whose name *and* key ID match the expected key must verify, or
//!   the whole note is rejected; at least one must verify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signed-note signature type byte for Ed25519 (C2SP signed-note,
/// "Signature types"); part of the key ID and of the verifier key encoding.
pub const ALG_ED25519: u8 = 0x01;

/// Largest note (or tlog-proof) accepted, in bytes. The spec asks verifiers
/// to bound note size but to accept at least 16 signatures of up to ~5 kB
/// (post-quantum); 1 MiB leaves ample room while keeping hostile input cheap.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Largest number of signature lines examined, as in the Go reference
/// implementation (`golang.org/x/mod/sumdb/note`), to bound verification work.
pub const MAX_SIGNATURES: usize = 100;

/// Largest number of hashes in an inclusion proof: a tree of at most
/// 2^64 - 1 leaves is at most 64 levels deep.
pub const MAX_PROOF_HASHES: usize = 64;

/// The first line of every C2SP tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, checkpoint, verifier key or tlog-proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text does not follow the signed-note / checkpoint / tlog-proof
    /// grammar (the string says which rule was broken).
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The input exceeds [`MAX_NOTE_SIZE`].
    #[error("input larger than {MAX_NOTE_SIZE} bytes")]
    TooLarge,
    /// A verifier key string that is not `<name>+<8 hex>+<base64(0x01||key)>`
    /// or whose key ID does not match its name and key.
    #[error("invalid verifier key: {0}")]
    InvalidVerifierKey(&'static str),
    /// No signature line carries the expected key name and key ID.
    #[error("note has no signature by key {name}+{key_id}")]
    NoSignature {
        /// The expected key name.
        name: String,
        /// The expected key ID, as 8 lowercase hex digits.
        key_id: String,
    },
    /// A signature line with the expected key name and key ID failed to verify.
    #[error("invalid signature by key {name}+{key_id}")]
    BadSignature {
        /// The expected key name.
        name: String,
        /// The expected key ID, as 8 lowercase hex digits.
        key_id: String,
    },
    /// The checkpoint verified but its origin is not the key name (SPEC
    /// section 4 requires the key name to be the origin).
    #[error("checkpoint origin {origin:?} differs from key name {key_name:?}")]
    OriginMismatch {
        /// The origin line of the checkpoint.
        origin: String,
        /// The key name it was expected to equal.
        key_name: String,
    },
}

/// The signed-note key ID of an Ed25519 key: the first four bytes of
/// `SHA-256(name || 0x0A || 0x01 || pubkey)`. Lets verifiers pick the right
/// key for a signature line without trying them all.
pub fn key_id(name: &str, pubkey: &[u8; 32]) -> [u8; 4] {
    key_id_of_type(name, ALG_ED25519, pubkey)
}

/// The C2SP key ID of a key of signature type `alg` (0x01 note
/// signatures, 0x04 `cosignature/v1`): `SHA-256(name || 0x0A || alg ||
/// pubkey)[:4]`.
pub fn key_id_of_type(name: &str, alg: u8, pubkey: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(pubkey);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key string `<name>+<8 hex key ID>+<base64(0x01 || pubkey)>`,
/// the format `golang.org/x/mod/sumdb/note` and witnesses are configured with.
pub fn verifier_key(name: &str, pubkey: &[u8; 32]) -> String {
    let mut raw = [0u8; 33];
    raw[0] = ALG_ED25519;
    raw[1..].copy_from_slice(pubkey);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, pubkey)),
        B64.encode(raw)
    )
}

/// Parses a log key as an operator gives it on the command line: a C2SP
/// verifier key (`name+id+base64`, checked as [`parse_verifier_key`] does)
/// or the bare base64 Ed25519 public key. Every `--key` flag takes both;
/// the name, when given, is returned so callers can check it.
pub fn parse_log_key(s: &str) -> Result<(Option<String>, [u8; 32]), NoteError> {
    let s = s.trim();
    if s.contains('+')
        && let Ok((name, key)) = parse_verifier_key(s)
    {
        return Ok((Some(name), key));
    }
    if let Ok(raw) = B64.decode(s)
        && let Ok(key) = <[u8; 32]>::try_from(raw.as_slice())
    {
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::InvalidVerifierKey("not a valid Ed25519 public key"))?;
        return Ok((None, key));
    }
    // Neither: report why the verifier-key form failed when it looked like one.
    if s.contains('+') {
        parse_verifier_key(s).map(|(n, k)| (Some(n), k))
    } else {
        Err(NoteError::InvalidVerifierKey(
            "neither a verifier key (name+id+base64) nor a base64 Ed25519 public key",
        ))
    }
}

/// The verifier key of log `name` for a key given in either form of
/// [`parse_log_key`]; a verifier key naming another log is refused.
pub fn verifier_key_for(name: &str, given: &str) -> Result<String, NoteError> {
    match parse_log_key(given)? {
        (Some(n), _) if n != name => Err(NoteError::InvalidVerifierKey(
            "the verifier key names another log",
        )),
        (_, key) => Ok(verifier_key(name, &key)),
    }
}

/// Parses a verifier key string (see [`verifier_key`]) into its key name and
/// Ed25519 public key, checking the algorithm byte, that the key is a valid
/// Ed25519 point, and that the key ID matches, as `note.NewVerifier` does.
pub fn parse_verifier_key(s: &str) -> Result<(String, [u8; 32]), NoteError> {
    // The name cannot contain '+', but the base64 part can.
    let (name, rest) = s
        .split_once('+')
        .ok_or(NoteError::InvalidVerifierKey("missing '+' separators"))?;
    let (id_hex, key_b64) = rest
        .split_once('+')
        .ok_or(NoteError::InvalidVerifierKey("missing '+' separators"))?;
    if !is_valid_key_name(name) {
        return Err(NoteError::InvalidVerifierKey("invalid key name"));
    }
    if id_hex.len() != 8 {
        return Err(NoteError::InvalidVerifierKey("key ID is not 8 hex digits"));
    }
    let id = hex::decode(id_hex)
        .map_err(|_| NoteError::InvalidVerifierKey("key ID is not 8 hex digits"))?;
    let raw = B64
        .decode(key_b64)
        .map_err(|_| NoteError::InvalidVerifierKey("key is not valid base64"))?;
    let (&alg, key) = raw
        .split_first()
        .ok_or(NoteError::InvalidVerifierKey("empty key"))?;
    if alg != ALG_ED25519 {
        return Err(NoteError::InvalidVerifierKey("not an Ed25519 key"));
    }
    let pubkey: [u8; 32] = key
        .try_into()
        .map_err(|_| NoteError::InvalidVerifierKey("Ed25519 key is not 32 bytes"))?;
    if VerifyingKey::from_bytes(&pubkey).is_err() {
        return Err(NoteError::InvalidVerifierKey("not a valid Ed25519 point"));
    }
    if id != key_id(name, &pubkey) {
        return Err(NoteError::InvalidVerifierKey(
            "key ID does not match name and key",
        ));
    }
    Ok((name.to_owned(), pubkey))
}

/// Whether `name` may be used as a signed-note key name: non-empty, without
/// Unicode white space (Go's `unicode.IsSpace` set) and without `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A tree head: what a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, `<vault origin>/<ns>`; also the signing key's name.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root hash of the tree at `size`.
    pub root: [u8; 32],
}

impl Checkpoint {
    /// The checkpoint note text `origin\nsize\nbase64(root)\n`, i.e. the exact
    /// bytes the log signs (no extension lines).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }
}

/// Signs `cp` and returns the complete note: body, blank line, and the line
/// `— <key_name> <base64(key ID || Ed25519 signature over the body)>`.
///
/// Ed25519 is deterministic, so equal inputs give byte-identical notes. The
/// caller must pass a valid key name (see [`is_valid_key_name`]) and an origin
/// without control characters; per SPEC section 4 `key_name` is the origin.
/// Otherwise the note produced will not open.
pub fn sign_checkpoint(cp: &Checkpoint, key_name: &str, key: &SigningKey) -> String {
    sign_note(&cp.body(), key_name, key)
}

/// Signs an arbitrary note text (which must end in `\n`) with one key.
fn sign_note(text: &str, key_name: &str, key: &SigningKey) -> String {
    let pubkey = key.verifying_key().to_bytes();
    let sig = key.sign(text.as_bytes()).to_bytes();
    let mut raw = Vec::with_capacity(4 + sig.len());
    raw.extend_from_slice(&key_id(key_name, &pubkey));
    raw.extend_from_slice(&sig);
    let mut out = String::with_capacity(text.len() + key_name.len() + 100);
    out.push_str(text);
    out.push('\n');
    out.push_str(SIG_PREFIX);
    out.push_str(key_name);
    out.push(' ');
    out.push_str(&B64.encode(raw));
    out.push('\n');
    out
}

/// Verifies a signed note against one trusted Ed25519 key and returns its
/// text (ending in `\n`, without the blank separator line).
///
/// Follows `golang.org/x/mod/sumdb/note.Open`: other keys' signatures (e.g.
/// witness cosignatures) are ignored, but every signature carrying this key's
/// name and key ID must verify, and at least one must be present. One
/// stricter point: every such signature is checked, where Go skips repeats.
pub fn open_note<'a>(
    note: &'a str,
    key_name: &str,
    pubkey: &VerifyingKey,
) -> Result<&'a str, NoteError> {
    if note.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge);
    }
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character in note"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block must end in a newline",
        ));
    }
    let want_id = key_id(key_name, pubkey.as_bytes());
    let id_hex = || hex::encode(want_id);
    let mut verified = 0usize;
    for (n, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(NoteError::Malformed("too many signatures"));
        }
        let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line must start with an em dash",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line has no signature"))?;
        if !is_valid_key_name(name) || b64.is_empty() {
            return Err(NoteError::Malformed("invalid signature line"));
        }
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not valid base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        if name != key_name || raw[..4] != want_id {
            continue; // Someone else's signature: ignore it.
        }
        let bad = || NoteError::BadSignature {
            name: key_name.to_owned(),
            key_id: id_hex(),
        };
        let sig = Signature::from_slice(&raw[4..]).map_err(|_| bad())?;
        pubkey
            .verify_strict(text.as_bytes(), &sig)
            .map_err(|_| bad())?;
        verified += 1;
    }
    if verified == 0 {
        return Err(NoteError::NoSignature {
            name: key_name.to_owned(),
            key_id: id_hex(),
        });
    }
    Ok(text)
}

/// Verifies a checkpoint note signed by `pubkey` under `key_name` and parses
/// it strictly: exactly three body lines (non-empty origin equal to
/// `key_name`; tree size in decimal without leading zeros; base64 of exactly
/// 32 bytes). Extension lines are rejected because tracevault never writes
/// them and [`Checkpoint`] could not carry them.
pub fn open_checkpoint(
    note: &str,
    key_name: &str,
    pubkey: &VerifyingKey,
) -> Result<Checkpoint, NoteError> {
    let text = open_note(note, key_name, pubkey)?;
    let cp = parse_checkpoint_body(text)?;
    if cp.origin != key_name {
        return Err(NoteError::OriginMismatch {
            origin: cp.origin,
            key_name: key_name.to_owned(),
        });
    }
    Ok(cp)
}

fn parse_checkpoint_body(text: &str) -> Result<Checkpoint, NoteError> {
    let body = text
        .strip_suffix('\n')
        .ok_or(NoteError::Malformed("checkpoint must end in a newline"))?;
    let mut lines = body.split('\n');
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(NoteError::Malformed(
            "checkpoint needs origin, size and root lines",
        ));
    };
    if lines.next().is_some() {
        return Err(NoteError::Malformed(
            "checkpoint extension lines are not supported",
        ));
    }
    if origin.is_empty() {
        return Err(NoteError::Malformed("empty checkpoint origin"));
    }
    let size = parse_decimal(size).ok_or(NoteError::Malformed("invalid tree size"))?;
    let root = decode_hash(root).ok_or(NoteError::Malformed("root is not base64 of 32 bytes"))?;
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
    })
}

/// ASCII decimal u64 with no sign and no leading zeros (except "0").
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Standard padded base64 of exactly 32 bytes.
fn decode_hash(s: &str) -> Option<[u8; 32]> {
    B64.decode(s).ok()?.try_into().ok()
}

/// Builds C2SP tlog-proof text: header, `index N`, the inclusion proof hashes
/// (leaf sibling first) in base64, a blank line, then the signed checkpoint
/// verbatim. It lets a receipt be verified offline against the log's key.
pub fn format_tlog_proof(index: u64, proof: &[[u8; 32]], signed_checkpoint: &str) -> String {
    let mut out = String::with_capacity(64 + proof.len() * 45 + signed_checkpoint.len());
    out.push_str(TLOG_PROOF_HEADER);
    out.push_str("\nindex ");
    out.push_str(&index.to_string());
    out.push('\n');
    for h in proof {
        out.push_str(&B64.encode(h));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_checkpoint);
    out
}

/// Parses C2SP tlog-proof text into (index, inclusion proof, checkpoint note).
///
/// The optional `extra` line is checked to be base64 and then dropped: the
/// spec says it is unauthenticated, and tracevault does not use it. The
/// checkpoint is returned verbatim and is *not* verified here; pass it to
/// [`open_checkpoint`] and then check the proof with
/// `merkle::verify_inclusion`.
pub fn parse_tlog_proof(text: &str) -> Result<(u64, Vec<[u8; 32]>, String), NoteError> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge);
    }
    let mut rest = text;
    let mut next_line = || -> Result<&str, NoteError> {
        let (line, tail) = rest
            .split_once('\n')
            .ok_or(NoteError::Malformed("tlog-proof truncated"))?;
        rest = tail;
        Ok(line)
    };
    if next_line()? != TLOG_PROOF_HEADER {
        return Err(NoteError::Malformed(
            "missing c2sp.org/tlog-proof@v1 header",
        ));
    }
    let mut line = next_line()?;
    if let Some(extra) = line.strip_prefix("extra ") {
        B64.decode(extra)
            .map_err(|_| NoteError::Malformed("tlog-proof extra data is not base64"))?;
        line = next_line()?;
    }
    let index = line
        .strip_prefix("index ")
        .and_then(parse_decimal)
        .ok_or(NoteError::Malformed("tlog-proof index line invalid"))?;
    let mut proof = Vec::new();
    loop {
        let line = next_line()?;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_HASHES {
            return Err(NoteError::Malformed("tlog-proof has too many hashes"));
        }
        proof.push(decode_hash(line).ok_or(NoteError::Malformed(
            "tlog-proof hash is not base64 of 32 bytes",
        ))?);
    }
    if rest.is_empty() {
        return Err(NoteError::Malformed("tlog-proof has no checkpoint"));
    }
    Ok((index, proof, rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_log_key_in_either_form() {
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        let vkey = verifier_key("example.org/log/ns", &key);
        assert_eq!(
            parse_log_key(&vkey).unwrap(),
            (Some("example.org/log/ns".to_string()), key)
        );
        assert_eq!(parse_log_key(&B64.encode(key)).unwrap(), (None, key));
        assert_eq!(
            verifier_key_for("example.org/log/ns", &B64.encode(key)).unwrap(),
            vkey
        );
        assert_eq!(verifier_key_for("example.org/log/ns", &vkey).unwrap(), vkey);
        assert!(verifier_key_for("example.org/log/other", &vkey).is_err());
        // Garbage, a short key, a verifier key with a wrong id.
        assert!(parse_log_key("nope").is_err());
        assert!(parse_log_key(&B64.encode([1u8; 31])).is_err());
        let bad_id = format!(
            "example.org/log/ns+00000000+{}",
            vkey.rsplit('+').next().unwrap()
        );
        assert!(parse_log_key(&bad_id).is_err());
    }

    struct Vectors {
        seed: [u8; 32],
        public_key_b64: String,
        origin: String,
        verifier_key: String,
        note: String,
        root3: [u8; 32],
    }

    fn vectors() -> Vectors {
        let v: Value =
            serde_json::from_str(include_str!("../tests/fixtures/spec-v1.json")).unwrap();
        let c = &v["checkpoint"];
        let root3 = v["merkle_roots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["leaves"] == 3)
            .unwrap()["root_b64"]
            .as_str()
            .unwrap()
            .to_owned();
        Vectors {
            seed: hex::decode(c["ed25519_seed_hex"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            public_key_b64: c["public_key_b64"].as_str().unwrap().to_owned(),
            origin: c["origin"].as_str().unwrap().to_owned(),
            verifier_key: c["verifier_key"].as_str().unwrap().to_owned(),
            note: c["note"].as_str().unwrap().to_owned(),
            root3: decode_hash(&root3).unwrap(),
        }
    }

    fn test_key() -> SigningKey {
        SigningKey::from_bytes(&[0x07; 32])
    }

    fn vector_checkpoint() -> (Vectors, Checkpoint, SigningKey) {
        let v = vectors();
        let cp = Checkpoint {
            origin: v.origin.clone(),
            size: 3,
            root: v.root3,
        };
        let key = SigningKey::from_bytes(&v.seed);
        (v, cp, key)
    }

    #[test]
    fn spec_vector_checkpoint_reproduced_exactly() {
        let (v, cp, key) = vector_checkpoint();
        assert_eq!(v.seed, [0x07; 32]);
        let pk = key.verifying_key();
        assert_eq!(B64.encode(pk.as_bytes()), v.public_key_b64);
        assert_eq!(verifier_key(&v.origin, pk.as_bytes()), v.verifier_key);
        assert_eq!(hex::encode(key_id(&v.origin, pk.as_bytes())), "f072c294");
        let note = sign_checkpoint(&cp, &v.origin, &key);
        assert_eq!(note, v.note);
        assert!(note.starts_with(&cp.body()));
        assert_eq!(open_checkpoint(&v.note, &v.origin, &pk).unwrap(), cp);
        let (name, parsed) = parse_verifier_key(&v.verifier_key).unwrap();
        assert_eq!(name, v.origin);
        assert_eq!(&parsed, pk.as_bytes());
    }

    /// golang.org/x/mod/sumdb/note package documentation / note_test.go:
    /// the PeterNeumann key and its published signed note.
    #[test]
    fn go_sumdb_note_reference_vector() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let skey_b64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"; // from PRIVATE+KEY+...
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let want = format!(
            "{text}\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        let raw = B64.decode(skey_b64).unwrap();
        assert_eq!(raw[0], ALG_ED25519);
        let key = SigningKey::from_bytes(&raw[1..].try_into().unwrap());
        let (name, pk) = parse_verifier_key(vkey).unwrap();
        assert_eq!(name, "PeterNeumann");
        assert_eq!(&pk, key.verifying_key().as_bytes());
        assert_eq!(verifier_key("PeterNeumann", &pk), vkey);
        assert_eq!(sign_note(text, "PeterNeumann", &key), want);
        let vk = VerifyingKey::from_bytes(&pk).unwrap();
        assert_eq!(open_note(&want, "PeterNeumann", &vk).unwrap(), text);
        // Not a checkpoint, though.
        assert!(matches!(
            open_checkpoint(&want, "PeterNeumann", &vk),
            Err(NoteError::Malformed(_))
        ));
    }

    #[test]
    fn verifier_key_rejections() {
        let v = vectors();
        let good = v.verifier_key.as_str();
        assert!(parse_verifier_key(good).is_ok());
        // Every proper substring and every single-byte mangling fails
        // (after Go's TestNewVerifier).
        let b = good.as_bytes();
        for i in 0..=b.len() {
            for j in (i + 1)..=b.len() {
                if (i, j) != (0, b.len())
                    && let Ok(s) = std::str::from_utf8(&b[i..j])
                {
                    assert!(parse_verifier_key(s).is_err(), "{s}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(parse_verifier_key(s).is_err(), "{s}");
            }
        }
        // Wrong algorithm byte with a recomputed key ID.
        let pk = test_key().verifying_key().to_bytes();
        let mut raw = vec![0x02];
        raw.extend_from_slice(&pk);
        let id = hex::encode(key_id("n", &pk));
        assert_eq!(
            parse_verifier_key(&format!("n+{id}+{}", B64.encode(&raw))),
            Err(NoteError::InvalidVerifierKey("not an Ed25519 key"))
        );
        // Name with a space; empty name.
        let k = verifier_key("a b", &pk);
        assert!(parse_verifier_key(&k).is_err());
        let k = verifier_key("", &pk);
        assert!(parse_verifier_key(&k).is_err());
        // Upper-case hex key ID accepted, like Go's strconv.ParseUint.
        let k = verifier_key("n", &pk);
        let upper = k.replacen(&id, &id.to_uppercase(), 1);
        assert_eq!(parse_verifier_key(&upper).unwrap().1, pk);
    }

    #[test]
    fn rejects_tampered_checkpoints() {
        let (v, _, key) = vector_checkpoint();
        let pk = key.verifying_key();
        let note = v.note.as_str();
        let bad_sig = |r: Result<Checkpoint, NoteError>| {
            assert!(matches!(r, Err(NoteError::BadSignature { .. })), "{r:?}");
        };
        // Altered size / root / origin in the body: signature no longer valid.
        bad_sig(open_checkpoint(
            &note.replacen("\n3\n", "\n4\n", 1),
            &v.origin,
            &pk,
        ));
        bad_sig(open_checkpoint(
            &note.replacen("NWGL", "NWGM", 1),
            &v.origin,
            &pk,
        ));
        let altered = note.replacen("test-vault/alpha\n", "test-vault/beta\n", 1);
        bad_sig(open_checkpoint(&altered, &v.origin, &pk));
        // Opening with a different origin: no signature by that key name.
        let other = "tracevault.local/test-vault/beta";
        assert!(matches!(
            open_checkpoint(note, other, &pk),
            Err(NoteError::NoSignature { .. })
        ));
        // Signed by another key: ignored, so there is no signature.
        let other_key = SigningKey::from_bytes(&[0x08; 32]);
        let cp = parse_checkpoint_body(&v.note[..v.note.find("\n\n").unwrap() + 1]).unwrap();
        let forged = sign_checkpoint(&cp, &v.origin, &other_key);
        assert!(matches!(
            open_checkpoint(&forged, &v.origin, &pk),
            Err(NoteError::NoSignature { .. })
        ));
        // Signature bytes altered (same name and key ID): bad signature.
        let sig_start = note.rfind(' ').unwrap() + 1;
        let mut raw = B64.decode(note[sig_start..].trim_end()).unwrap();
        raw[10] ^= 1;
        let tampered = format!("{}{}\n", &note[..sig_start], B64.encode(&raw));
        bad_sig(open_checkpoint(&tampered, &v.origin, &pk));
        // Truncated signature (still >= 5 bytes, right key ID): bad signature.
        let short = format!("{}{}\n", &note[..sig_start], B64.encode(&raw[..20]));
        bad_sig(open_checkpoint(&short, &v.origin, &pk));
        // Bad base64 in the signature line.
        let garbled = format!("{}{}\n", &note[..sig_start], "!!!notbase64");
        assert!(matches!(
            open_checkpoint(&garbled, &v.origin, &pk),
            Err(NoteError::Malformed(_))
        ));
        let unpadded = note.replacen("=\n", "\n", 1);
        assert!(open_checkpoint(&unpadded, &v.origin, &pk).is_err());
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let (v, _, key) = vector_checkpoint();
        let pk = key.verifying_key();
        for (i, _) in v.note.char_indices() {
            assert!(
                open_checkpoint(&v.note[..i], &v.origin, &pk).is_err(),
                "prefix {i}"
            );
        }
        // Missing final newline.
        assert!(open_checkpoint(v.note.trim_end(), &v.origin, &pk).is_err());
        // Garbage appended after the signatures.
        assert!(open_checkpoint(&format!("{}x", v.note), &v.origin, &pk).is_err());
        assert!(open_checkpoint(&format!("{}\n", v.note), &v.origin, &pk).is_err());
    }

    #[test]
    fn other_signatures_are_ignored_and_all_matching_ones_checked() {
        let (v, cp, key) = vector_checkpoint();
        let pk = key.verifying_key();
        // A witness cosignature-like line from another key is ignored.
        let witness = SigningKey::from_bytes(&[0x09; 32]);
        let w_note = sign_checkpoint(&cp, "witness.example/w1", &witness);
        let w_line = &w_note[w_note.find("\n\n").unwrap() + 2..];
        let both = format!("{}{}", v.note, w_line);
        assert_eq!(open_checkpoint(&both, &v.origin, &pk).unwrap(), cp);
        // Same name, different key (different key ID): ignored.
        let impostor = sign_checkpoint(&cp, &v.origin, &SigningKey::from_bytes(&[0x0a; 32]));
        let imp_line = &impostor[impostor.find("\n\n").unwrap() + 2..];
        let with_imp = format!("{}{}", v.note, imp_line);
        assert_eq!(open_checkpoint(&with_imp, &v.origin, &pk).unwrap(), cp);
        // A second, bad signature by the right key spoils the note.
        let sig_start = v.note.rfind(' ').unwrap() + 1;
        let mut raw = B64.decode(v.note[sig_start..].trim_end()).unwrap();
        raw[40] ^= 0x80;
        let bad_line = format!("\u{2014} {} {}\n", v.origin, B64.encode(&raw));
        let spoiled = format!("{}{}", v.note, bad_line);
        assert!(matches!(
            open_checkpoint(&spoiled, &v.origin, &pk),
            Err(NoteError::BadSignature { .. })
        ));
    }

    fn signed(body: &str) -> String {
        sign_note(body, "example.com/log", &test_key())
    }

    fn open_body(body: &str) -> Result<Checkpoint, NoteError> {
        open_checkpoint(
            &signed(body),
            "example.com/log",
            &test_key().verifying_key(),
        )
    }

    #[test]
    fn strict_checkpoint_body_parsing() {
        let root = B64.encode([0xab; 32]);
        let ok = open_body(&format!("example.com/log\n0\n{root}\n")).unwrap();
        assert_eq!(ok.size, 0);
        assert_eq!(ok.root, [0xab; 32]);
        assert_eq!(
            open_body(&format!("example.com/log\n18446744073709551615\n{root}\n"))
                .unwrap()
                .size,
            u64::MAX
        );
        let malformed = [
            format!("example.com/log\n007\n{root}\n"),
            format!("example.com/log\n+7\n{root}\n"),
            format!("example.com/log\n-1\n{root}\n"),
            format!("example.com/log\n 7\n{root}\n"),
            format!("example.com/log\n\n{root}\n"),
            format!("example.com/log\n18446744073709551616\n{root}\n"),
            format!("example.com/log\n1\n{}\n", B64.encode([0xab; 31])),
            format!("example.com/log\n1\n{}\n", B64.encode([0xab; 33])),
            format!("example.com/log\n1\n{}\n", root.trim_end_matches('=')),
            "example.com/log\n1\nnot base64!\n".to_owned(),
            "example.com/log\n1\n".to_owned(),
            format!("example.com/log\n1\n{root}\nextension\n"),
            format!("\n1\n{root}\n"),
        ];
        for body in &malformed {
            let r = open_body(body);
            assert!(matches!(r, Err(NoteError::Malformed(_))), "{body:?}: {r:?}");
        }
        // Origin must equal the key name.
        let r = open_checkpoint(
            &sign_note(
                &format!("other.example/log\n1\n{root}\n"),
                "example.com/log",
                &test_key(),
            ),
            "example.com/log",
            &test_key().verifying_key(),
        );
        assert!(matches!(r, Err(NoteError::OriginMismatch { .. })), "{r:?}");
    }

    #[test]
    fn note_envelope_rules() {
        let pk = test_key().verifying_key();
        let root = B64.encode([1; 32]);
        let good = signed(&format!("example.com/log\n1\n{root}\n"));
        // Control characters anywhere are rejected, even in the body.
        let with_cr = good.replacen("example.com/log\n1", "example.com/log\r\n1", 1);
        assert!(matches!(
            open_checkpoint(&with_cr, "example.com/log", &pk),
            Err(NoteError::Malformed("control character in note"))
        ));
        let with_tab = good.replacen("\u{2014} ", "\u{2014}\t", 1);
        assert!(open_checkpoint(&with_tab, "example.com/log", &pk).is_err());
        // Hyphen instead of em dash.
        let hyphen = good.replacen('\u{2014}', "-", 1);
        assert!(matches!(
            open_checkpoint(&hyphen, "example.com/log", &pk),
            Err(NoteError::Malformed(_))
        ));
        // No signatures at all.
        let bare = format!("example.com/log\n1\n{root}\n\n");
        assert!(open_checkpoint(&bare, "example.com/log", &pk).is_err());
        assert!(open_checkpoint("", "example.com/log", &pk).is_err());
        // Oversized input.
        let huge = format!("{}{good}", "x".repeat(MAX_NOTE_SIZE));
        assert_eq!(
            open_checkpoint(&huge, "example.com/log", &pk),
            Err(NoteError::TooLarge)
        );
        // Too many (ignored) signatures.
        let other = SigningKey::from_bytes(&[3; 32]);
        let o = sign_note(&format!("example.com/log\n1\n{root}\n"), "w", &other);
        let line = &o[o.find("\n\n").unwrap() + 2..];
        let many = format!("{good}{}", line.repeat(MAX_SIGNATURES));
        assert!(matches!(
            open_checkpoint(&many, "example.com/log", &pk),
            Err(NoteError::Malformed("too many signatures"))
        ));
        let fifteen_more = format!("{good}{}", line.repeat(15));
        assert!(open_checkpoint(&fifteen_more, "example.com/log", &pk).is_ok());
    }

    #[test]
    fn tlog_proof_round_trip() {
        let (v, _, _) = vector_checkpoint();
        let proof = vec![[1u8; 32], [2u8; 32], [0xfe; 32]];
        let text = format_tlog_proof(2, &proof, &v.note);
        let want = format!(
            "c2sp.org/tlog-proof@v1\nindex 2\n{}\n{}\n{}\n\n{}",
            B64.encode([1u8; 32]),
            B64.encode([2u8; 32]),
            B64.encode([0xfe; 32]),
            v.note
        );
        assert_eq!(text, want);
        assert_eq!(parse_tlog_proof(&text).unwrap(), (2, proof, v.note.clone()));
        // Empty proof (single-leaf tree).
        let text = format_tlog_proof(0, &[], &v.note);
        assert_eq!(
            text,
            format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{}", v.note)
        );
        assert_eq!(
            parse_tlog_proof(&text).unwrap(),
            (0, vec![], v.note.clone())
        );
        // Optional extra line is accepted (and dropped).
        let with_extra = format!(
            "c2sp.org/tlog-proof@v1\nextra aGVsbG8=\nindex 0\n\n{}",
            v.note
        );
        assert_eq!(parse_tlog_proof(&with_extra).unwrap().0, 0);
        let empty_extra = format!("c2sp.org/tlog-proof@v1\nextra \nindex 0\n\n{}", v.note);
        assert!(parse_tlog_proof(&empty_extra).is_ok());
    }

    #[test]
    fn tlog_proof_end_to_end_with_merkle_verification_shape() {
        // The checkpoint inside a parsed proof opens with the vector key.
        let (v, cp, key) = vector_checkpoint();
        let text = format_tlog_proof(1, &[[9; 32], [8; 32]], &v.note);
        let (index, proof, note) = parse_tlog_proof(&text).unwrap();
        assert_eq!((index, proof.len()), (1, 2));
        assert_eq!(
            open_checkpoint(&note, &v.origin, &key.verifying_key()).unwrap(),
            cp
        );
    }

    #[test]
    fn tlog_proof_rejections() {
        let (v, _, _) = vector_checkpoint();
        let h = B64.encode([5u8; 32]);
        let n = &v.note;
        let bad = [
            format!("c2sp.org/tlog-proof@v2\nindex 0\n\n{n}"),
            format!("index 0\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex 01\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex -1\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n{n}"),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{}\n\n{n}", &h[1..]),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{h}x\n\n{n}"),
            format!(
                "c2sp.org/tlog-proof@v1\nindex 0\n{}\n\n{n}",
                B64.encode([1u8; 31])
            ),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{h}\n"),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n{h}\n\n"),
            format!("c2sp.org/tlog-proof@v1\r\nindex 0\n\n{n}"),
            format!(
                "c2sp.org/tlog-proof@v1\nindex 0\n{}\n{n}",
                format!("{h}\n").repeat(65)
            ),
            String::new(),
        ];
        for t in &bad {
            assert!(parse_tlog_proof(t).is_err(), "{t:?}");
        }
        let text = format_tlog_proof(7, &[[1; 32]; 3], n);
        for (i, _) in text.char_indices() {
            if let Ok((_, _, cp)) = parse_tlog_proof(&text[..i]) {
                // Only a truncated checkpoint can remain; it must not open.
                let pk = SigningKey::from_bytes(&vectors().seed).verifying_key();
                assert!(open_checkpoint(&cp, &v.origin, &pk).is_err());
            }
        }
        let huge = format!("{}{}", text, "x".repeat(MAX_NOTE_SIZE));
        assert_eq!(parse_tlog_proof(&huge), Err(NoteError::TooLarge));
    }
}
