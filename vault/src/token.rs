//! Bearer tokens (SPEC section 2): EdDSA JWTs signed by the issuer key.
//!
//! Verification is strict and fails closed: only `EdDSA` is accepted (no
//! `none`, no algorithm confusion), the `kid` must be ours when present,
//! `aud` must be `tracevault`, `iss` must be this vault, and `exp`, `iat`,
//! `sub`, `jti`, `role` and `ns` are required.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{self, KeyError};

/// The `aud` of every token.
pub const AUDIENCE: &str = "tracevault";
/// Longest token id (`jti`), in bytes, accepted anywhere: by this issuer,
/// by external issuers and by revocation. One bound, so that every token
/// that is accepted can also be revoked.
pub const MAX_JTI_BYTES: usize = 128;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Appends events; reads checkpoints and proofs.
    Writer,
    /// Queries and reads entries within a window.
    Reader,
    /// Approves or denies exports.
    Approver,
    /// Issues and revokes tokens; reads the access log.
    Admin,
}

impl Role {
    /// The role's name, as tokens and the access log spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "writer" => Some(Role::Writer),
            "reader" => Some(Role::Reader),
            "approver" => Some(Role::Approver),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The claims of a tracevault token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (the vault origin).
    pub iss: String,
    /// Subject: who acts (recorded as `ingested_by`).
    pub sub: String,
    /// Audience (`tracevault`).
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Token id (for revocation).
    pub jti: String,
    /// Role.
    pub role: Role,
    /// Namespaces (`*` only for admins).
    pub ns: Vec<String>,
    /// Reader window start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_from: Option<String>,
    /// Reader window end (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_to: Option<String>,
    /// The person behind the token, the same whichever issuer minted it
    /// (e.g. a lowercased email): the export workflow compares it across
    /// issuers so nobody approves their own request through a second token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

/// Longest `sub` the vault issues a token for (bytes).
pub const MAX_SUB_BYTES: usize = 256;

/// Longest `person` value accepted (bytes).
pub const MAX_PERSON_BYTES: usize = 256;

/// The canonical form of a person identity: trimmed and lowercased (email
/// addresses compare case-insensitively in practice). `None` when empty or
/// longer than [`MAX_PERSON_BYTES`], or when it holds control characters.
pub fn normalize_person(p: &str) -> Option<String> {
    let p = p.trim().to_lowercase();
    (!p.is_empty() && p.len() <= MAX_PERSON_BYTES && !p.chars().any(crate::approval::is_invisible))
        .then_some(p)
}

impl Claims {
    /// Whether this token covers namespace `ns`.
    pub fn allows_ns(&self, ns: &str) -> bool {
        self.ns
            .iter()
            .any(|n| n == ns || (n == "*" && self.role == Role::Admin))
    }
}

/// Token failures. `Invalid` maps to 401; the message is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is missing, malformed, expired, or not ours.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Issuing failed (bad arguments).
    #[error("{0}")]
    Issue(String),
    /// See [`KeyError`].
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Issues and verifies tokens with the issuer key ring: one current key
/// signs, older keys kept by a rotation still verify until they are retired
/// (`tracevault keys rotate-issuer` / `retire-issuer`, [`rotate_issuer`]).
/// Every key's tokens carry the same `iss`, so a person's identity
/// (`iss`, `sub`) does not change with the key.
pub struct TokenIssuer {
    issuer: String,
    ring: RwLock<Arc<KeyRing>>,
    /// The data directory the ring is reloaded from (rotations made by the
    /// CLI while the server runs); `None` for a fixed in-memory key.
    source: Option<PathBuf>,
    last_load: Mutex<Instant>,
    validation: Validation,
}

/// The keys of the moment.
struct KeyRing {
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
}

/// The key id of a public key: hex of the first 8 bytes of its SHA-256.
pub fn key_id(pk: &[u8; 32]) -> String {
    hex::encode(&sha2_digest(pk)[..8])
}

/// How often a server re-reads its key files unasked: a retirement takes
/// effect within this time.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// How often a token with an unknown `kid` may make the server re-read its
/// key files (a key rotated in by the CLI is known within this time; a flood
/// of made-up ids costs at most one read of a few small files per interval).
const RELOAD_FORCED: Duration = Duration::from_secs(1);

/// PKCS#8 v1 DER prefix of an Ed25519 private key (RFC 8410), followed by the seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn ring(key: &SigningKey, older: &[[u8; 32]]) -> KeyRing {
    let mut der = PKCS8_ED25519_PREFIX.to_vec();
    der.extend_from_slice(&key.to_bytes());
    let pk = key.verifying_key().to_bytes();
    let kid = key_id(&pk);
    let mut decoding = HashMap::new();
    for old in older {
        decoding.insert(key_id(old), DecodingKey::from_ed_der(old));
    }
    decoding.insert(kid.clone(), DecodingKey::from_ed_der(&pk));
    KeyRing {
        kid,
        encoding: EncodingKey::from_ed_der(&der),
        decoding,
    }
}

/// Where the issuer's key files live under a data directory.
mod files {
    use std::path::{Path, PathBuf};

    /// The current signing key.
    pub fn current(data: &Path) -> PathBuf {
        data.join("keys/issuer.key")
    }
    /// The `iss` of the vault's tokens, fixed at the first rotation.
    pub fn iss(data: &Path) -> PathBuf {
        data.join("keys/issuer.iss")
    }
    /// Public keys that still verify: `<kid>.pub`, base64.
    pub fn older(data: &Path) -> PathBuf {
        data.join("keys/issuer.verify")
    }
}

/// The current key, the `iss`, and the older public keys of a data dir.
fn read_ring(data: &Path) -> Result<(SigningKey, String, Vec<[u8; 32]>), TokenError> {
    let (key, _) = keys::load_or_create(&files::current(data))?;
    let iss = match std::fs::read_to_string(files::iss(data)) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => format!("tracevault/{}", key_id(&key.verifying_key().to_bytes())),
    };
    let mut older = Vec::new();
    match std::fs::read_dir(files::older(data)) {
        Ok(dir) => {
            for e in dir {
                let e = e.map_err(|e| TokenError::Issue(format!("issuer keys: {e}")))?;
                let name = e.file_name().to_string_lossy().to_string();
                let Some(kid) = name.strip_suffix(".pub") else {
                    continue;
                };
                let text = std::fs::read_to_string(e.path())
                    .map_err(|e| TokenError::Issue(format!("issuer key {name}: {e}")))?;
                let pk: [u8; 32] = B64
                    .decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| TokenError::Issue(format!("issuer key {name} is malformed")))?;
                if key_id(&pk) != kid {
                    return Err(TokenError::Issue(format!(
                        "issuer key {name} does not hold key {kid}"
                    )));
                }
                older.push(pk);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(TokenError::Issue(format!("issuer keys: {e}"))),
    }
    Ok((key, iss, older))
}

/// Rotates the issuer key of data directory `data`: the current key keeps
/// verifying (its public half moves to `keys/issuer.verify/`), a new key
/// signs from now on, and the tokens of both carry the same `iss`. Returns
/// (old key id, new key id). A running server picks the new key up at its
/// first token or within [`RELOAD_EVERY`].
pub fn rotate_issuer(data: &Path) -> Result<(String, String), TokenError> {
    let (key, iss, _) = read_ring(data)?;
    let old_pk = key.verifying_key().to_bytes();
    let old = key_id(&old_pk);
    keys::write_secret_file(&files::iss(data), format!("{iss}\n").as_bytes())?;
    std::fs::create_dir_all(files::older(data))
        .map_err(|e| TokenError::Issue(format!("issuer keys: {e}")))?;
    keys::write_secret_file(
        &files::older(data).join(format!("{old}.pub")),
        format!("{}\n", B64.encode(old_pk)).as_bytes(),
    )?;
    let mut seed = [0u8; 32];
    keys::random_bytes(&mut seed)?;
    let new_key = SigningKey::from_bytes(&seed);
    keys::write_secret_file(
        &files::current(data),
        format!("{}\n", B64.encode(seed)).as_bytes(),
    )?;
    Ok((old, key_id(&new_key.verifying_key().to_bytes())))
}

/// Retires an older issuer key: its tokens stop verifying (on a running
/// server within [`RELOAD_EVERY`]). The current key cannot be retired:
/// rotate first.
pub fn retire_issuer(data: &Path, kid: &str) -> Result<(), TokenError> {
    let (key, _, _) = read_ring(data)?;
    if key_id(&key.verifying_key().to_bytes()) == kid {
        return Err(TokenError::Issue(format!(
            "{kid} is the current issuer key; rotate-issuer first"
        )));
    }
    if kid.is_empty() || !kid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(TokenError::Issue(format!("{kid:?} is not a key id")));
    }
    match std::fs::remove_file(files::older(data).join(format!("{kid}.pub"))) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(TokenError::Issue(format!(
            "no older issuer key {kid} (see keys/issuer.verify/)"
        ))),
        Err(e) => Err(TokenError::Issue(format!("retiring {kid}: {e}"))),
    }
}

impl TokenIssuer {
    /// Builds an issuer from a key; `issuer` is the `iss` value (the vault origin).
    pub fn new(key: &SigningKey, issuer: &str) -> TokenIssuer {
        TokenIssuer::with_ring(ring(key, &[]), issuer, None)
    }

    fn with_ring(ring: KeyRing, issuer: &str, source: Option<PathBuf>) -> TokenIssuer {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        // The same clock issues and checks these tokens: no leeway, a token
        // is refused from the second its `exp` names (checked again in
        // `verify`, since the JWT library accepts `now == exp`).
        validation.leeway = 0;
        validation.validate_nbf = true;
        TokenIssuer {
            issuer: issuer.to_string(),
            ring: RwLock::new(Arc::new(ring)),
            source,
            last_load: Mutex::new(Instant::now()),
            validation,
        }
    }

    /// Loads (or creates, 0600) `<data>/keys/issuer.key`, and the older keys
    /// a rotation kept. The `iss` of its tokens is `tracevault/<key id>` of
    /// the first key (kept in `keys/issuer.iss` from the first rotation on),
    /// so that the CLI can mint tokens offline from the key files alone,
    /// whatever store the server uses.
    pub fn load(data_dir: &Path) -> Result<TokenIssuer, TokenError> {
        let (key, iss, older) = read_ring(data_dir)?;
        Ok(TokenIssuer::with_ring(
            ring(&key, &older),
            &iss,
            Some(data_dir.to_path_buf()),
        ))
    }

    /// The key ring, re-read from the data directory when it is older than
    /// [`RELOAD_EVERY`], or [`RELOAD_FORCED`] when `force` (an unknown key
    /// id). A failed re-read keeps the ring in use.
    fn current(&self, force: bool) -> Arc<KeyRing> {
        let ring = self
            .ring
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let Some(data) = &self.source else {
            return ring;
        };
        let due = {
            let Ok(mut last) = self.last_load.lock() else {
                return ring;
            };
            let min = if force { RELOAD_FORCED } else { RELOAD_EVERY };
            if last.elapsed() < min {
                false
            } else {
                *last = Instant::now();
                true
            }
        };
        if !due {
            return ring;
        }
        match read_ring(data) {
            Ok((key, _, older)) => {
                let fresh = Arc::new(self::ring(&key, &older));
                if let Ok(mut r) = self.ring.write() {
                    *r = fresh.clone();
                }
                fresh
            }
            Err(e) => {
                tracing::warn!("re-reading the issuer keys: {e}; keeping the keys in use");
                ring
            }
        }
    }

    /// The `iss` of this issuer's tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues a token valid for `ttl_s` seconds from now.
    pub fn issue(
        &self,
        role: Role,
        ns: Vec<String>,
        sub: &str,
        ttl_s: i64,
        win: (Option<String>, Option<String>),
    ) -> Result<(String, Claims), TokenError> {
        self.issue_for(role, ns, sub, ttl_s, win, None)
    }

    /// [`TokenIssuer::issue`], naming the person behind the token
    /// ([`Claims::person`], normalized).
    pub fn issue_for(
        &self,
        role: Role,
        ns: Vec<String>,
        sub: &str,
        ttl_s: i64,
        win: (Option<String>, Option<String>),
        person: Option<&str>,
    ) -> Result<(String, Claims), TokenError> {
        let person = match person {
            None => None,
            Some(p) => Some(normalize_person(p).ok_or_else(|| {
                TokenError::Issue(format!(
                    "person must be 1-{MAX_PERSON_BYTES} bytes without control or invisible characters"
                ))
            })?),
        };
        if sub.is_empty()
            || sub.len() > MAX_SUB_BYTES
            || sub.trim() != sub
            || sub.chars().any(crate::approval::is_invisible)
        {
            return Err(TokenError::Issue(format!(
                "sub must be 1-{MAX_SUB_BYTES} bytes, without surrounding spaces, control or invisible characters"
            )));
        }
        if ttl_s <= 0 {
            return Err(TokenError::Issue("ttl must be positive".into()));
        }
        if ns.is_empty() {
            return Err(TokenError::Issue(
                "at least one namespace is required".into(),
            ));
        }
        if ns.iter().any(|n| n == "*") && role != Role::Admin {
            return Err(TokenError::Issue(
                "namespace * is for admin tokens only".into(),
            ));
        }
        // Readers always have a window: one that reads all of history must
        // say so (win_from = 1970-01-01T00:00:00Z), never get it by omission.
        if role == Role::Reader && win.0.is_none() {
            return Err(TokenError::Issue(
                "a reader token needs a window start (--from / win_from); for all of history say so: 1970-01-01T00:00:00Z".into(),
            ));
        }
        if role != Role::Reader && (win.0.is_some() || win.1.is_some()) {
            return Err(TokenError::Issue(
                "a window (--from/--to, win_from/win_to) is for reader tokens only".into(),
            ));
        }
        let now = chrono::Utc::now().timestamp();
        let mut jti = [0u8; 16];
        keys::random_bytes(&mut jti)?;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.to_string(),
            aud: AUDIENCE.to_string(),
            iat: now,
            exp: now + ttl_s,
            jti: hex::encode(jti),
            role,
            ns,
            win_from: win.0,
            win_to: win.1,
            person,
        };
        let ring = self.current(false);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ring.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &ring.encoding)
            .map_err(|e| TokenError::Issue(format!("signing: {e}")))?;
        Ok((jwt, claims))
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut ring = self.current(false);
        let kid = header.kid.clone().unwrap_or_else(|| ring.kid.clone());
        if !ring.decoding.contains_key(&kid) {
            // Perhaps a key rotated in by the CLI since the last read.
            ring = self.current(true);
        }
        let decoding = ring.decoding.get(&kid).ok_or_else(|| {
            // The caller's text, shown bounded (an error body is no echo).
            let shown: String = kid.chars().take(64).collect();
            TokenError::Invalid(format!("unknown key id {shown:?}"))
        })?;
        let data = jsonwebtoken::decode::<Claims>(token, decoding, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let c = data.claims;
        if chrono::Utc::now().timestamp() >= c.exp {
            return Err(TokenError::Invalid(
                "token expired (ExpiredSignature)".into(),
            ));
        }
        if c.jti.len() > MAX_JTI_BYTES {
            return Err(TokenError::Invalid(format!(
                "jti is longer than {MAX_JTI_BYTES} bytes"
            )));
        }
        if c.person
            .as_deref()
            .is_some_and(|p| normalize_person(p).as_deref() != Some(p))
        {
            return Err(TokenError::Invalid(
                "person is not in canonical form".into(),
            ));
        }
        if c.jti.is_empty() || c.sub.is_empty() || c.ns.is_empty() {
            return Err(TokenError::Invalid(
                "jti, sub and ns must not be empty".into(),
            ));
        }
        if c.ns.iter().any(|n| n == "*") && c.role != Role::Admin {
            return Err(TokenError::Invalid(
                "namespace * is for admin tokens only".into(),
            ));
        }
        Ok(c)
    }
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(&SigningKey::from_bytes(&[3; 32]), "tracevault.local/x")
    }

    #[test]
    fn issue_and_verify() {
        let i = issuer();
        let (jwt, claims) = i
            .issue(Role::Writer, vec!["a".into()], "pipe", 60, (None, None))
            .unwrap();
        assert_eq!(i.verify(&jwt).unwrap(), claims);
        assert!(claims.allows_ns("a") && !claims.allows_ns("b"));
    }

    #[test]
    fn rejects_bad_tokens() {
        let i = issuer();
        let (jwt, _) = i
            .issue(Role::Writer, vec!["a".into()], "pipe", 60, (None, None))
            .unwrap();
        // Another key.
        let other = TokenIssuer::new(&SigningKey::from_bytes(&[4; 32]), "tracevault.local/x");
        assert!(other.verify(&jwt).is_err());
        // Another issuer.
        let j2 = TokenIssuer::new(&SigningKey::from_bytes(&[3; 32]), "tracevault.local/y");
        assert!(j2.verify(&jwt).is_err());
        // Tampered payload.
        let parts: Vec<&str> = jwt.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload["role"] = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        assert!(i.verify(&forged).is_err());
        // alg: none.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(i.verify(&format!("{none_header}.{}.", parts[1])).is_err());
        // HS256 with the public key as secret (algorithm confusion).
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(&SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes()),
        )
        .unwrap();
        assert!(i.verify(&hs).is_err());
        // Expired (beyond leeway).
        let (old, _) = i
            .issue(Role::Writer, vec!["a".into()], "pipe", 1, (None, None))
            .unwrap();
        let mut p: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(old.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        p["exp"] = (chrono::Utc::now().timestamp() - 3600).into();
        let mut h = Header::new(Algorithm::EdDSA);
        let ring = i.current(false);
        h.kid = Some(ring.kid.clone());
        let expired = jsonwebtoken::encode(&h, &p, &ring.encoding).unwrap();
        assert!(
            i.verify(&expired)
                .unwrap_err()
                .to_string()
                .contains("xpired")
        );
        // Unknown kid.
        h.kid = Some("nope".into());
        let (ok, _) = i
            .issue(Role::Writer, vec!["a".into()], "p", 60, (None, None))
            .unwrap();
        let p2: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(ok.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            i.verify(&jsonwebtoken::encode(&h, &p2, &ring.encoding).unwrap())
                .is_err()
        );
        assert!(i.verify("garbage").is_err());
    }

    #[test]
    fn rotation_keeps_old_tokens_until_the_key_is_retired() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let before = TokenIssuer::load(data).unwrap();
        let (old_jwt, old_claims) = before
            .issue(Role::Writer, vec!["a".into()], "pipe", 600, (None, None))
            .unwrap();
        let (old_kid, new_kid) = rotate_issuer(data).unwrap();
        assert_ne!(old_kid, new_kid);
        let after = TokenIssuer::load(data).unwrap();
        // Same issuer name, new signing key, old tokens still good.
        assert_eq!(after.issuer(), before.issuer());
        assert_eq!(after.verify(&old_jwt).unwrap(), old_claims);
        let (new_jwt, _) = after
            .issue(Role::Writer, vec!["a".into()], "pipe", 600, (None, None))
            .unwrap();
        let header = jsonwebtoken::decode_header(&new_jwt).unwrap();
        assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
        // A server loaded before the rotation learns the new key on its
        // first token (an unknown kid), without a restart.
        *before.last_load.lock().unwrap() = Instant::now() - RELOAD_FORCED;
        assert!(before.verify(&new_jwt).is_ok());
        // The current key cannot be retired; the old one can, and then its
        // tokens are refused.
        assert!(retire_issuer(data, &new_kid).is_err());
        assert!(retire_issuer(data, "ffff0000ffff0000").is_err());
        retire_issuer(data, &old_kid).unwrap();
        let retired = TokenIssuer::load(data).unwrap();
        assert!(retired.verify(&old_jwt).is_err());
        assert!(retired.verify(&new_jwt).is_ok());
        // A second rotation keeps the first issuer name.
        rotate_issuer(data).unwrap();
        assert_eq!(TokenIssuer::load(data).unwrap().issuer(), before.issuer());
    }

    #[test]
    fn star_only_for_admin() {
        let i = issuer();
        assert!(
            i.issue(Role::Writer, vec!["*".into()], "p", 60, (None, None))
                .is_err()
        );
        let (t, c) = i
            .issue(Role::Admin, vec!["*".into()], "root", 60, (None, None))
            .unwrap();
        assert!(i.verify(&t).is_ok() && c.allows_ns("anything"));
    }
}
