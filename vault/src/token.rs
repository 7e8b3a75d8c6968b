//! Bearer tokens (SPEC section 2): EdDSA JWTs signed by the issuer key.
//!
//! Verification is strict and fails closed: only `EdDSA` is accepted (no
//! `none`, no algorithm confusion), the `kid` must be ours when present,
//! `aud` must be `tracevault`, `iss` must be this vault, and `exp`, `iat`,
//! `sub`, `jti`, `role` and `ns` are required.

use std::path::Path;

use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{self, KeyError};

/// The `aud` of every token.
pub const AUDIENCE: &str = "tracevault";
/// Clock skew tolerated on `exp`/`nbf`, in seconds.
const LEEWAY_S: u64 = 30;

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

/// Issues and verifies tokens with the issuer key.
pub struct TokenIssuer {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// PKCS#8 v1 DER prefix of an Ed25519 private key (RFC 8410), followed by the seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl TokenIssuer {
    /// Builds an issuer from a key; `issuer` is the `iss` value (the vault origin).
    pub fn new(key: &SigningKey, issuer: &str) -> TokenIssuer {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&key.to_bytes());
        let pk = key.verifying_key().to_bytes();
        let kid = hex::encode(&sha2_digest(&pk)[..8]);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = LEEWAY_S;
        validation.validate_nbf = true;
        TokenIssuer {
            issuer: issuer.to_string(),
            kid,
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(&pk),
            validation,
        }
    }

    /// Loads (or creates, 0600) `<data>/keys/issuer.key`. The `iss` of its
    /// tokens is `tracevault/<key id>`, so that the CLI can mint tokens offline
    /// from the key file alone, whatever store the server uses.
    pub fn load(data_dir: &Path) -> Result<TokenIssuer, TokenError> {
        let (key, _) = keys::load_or_create(&data_dir.join("keys/issuer.key"))?;
        let kid = hex::encode(&sha2_digest(&key.verifying_key().to_bytes())[..8]);
        Ok(TokenIssuer::new(&key, &format!("tracevault/{kid}")))
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
        if sub.is_empty() {
            return Err(TokenError::Issue("sub must not be empty".into()));
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
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &self.encoding)
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
        if let Some(kid) = &header.kid
            && kid != &self.kid
        {
            return Err(TokenError::Invalid(format!("unknown key id {kid:?}")));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let c = data.claims;
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
        h.kid = Some(i.kid.clone());
        let expired = jsonwebtoken::encode(&h, &p, &i.encoding).unwrap();
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
            i.verify(&jsonwebtoken::encode(&h, &p2, &i.encoding).unwrap())
                .is_err()
        );
        assert!(i.verify("garbage").is_err());
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
