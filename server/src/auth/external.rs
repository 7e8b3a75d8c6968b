//! External token issuers (SPEC section 2): JWTs minted by an OIDC identity
//! provider, verified against its published key set (JWKS), and mapped onto
//! tracevault roles and namespaces by a configured claim-to-role table.
//!
//! A token is routed here only by its (unverified) `iss`: when it names a
//! configured issuer, that issuer alone decides; every other token goes to the
//! vault's own [`TokenIssuer`](tracevault_vault::token::TokenIssuer).
//! Verification fails closed:
//! - the key is picked by `kid` from the issuer's JWKS, and the algorithm is
//!   the key's (from `kty`/`crv`/`alg`), never the token header's: `none`,
//!   every HMAC algorithm (confusion with a public key) and a header `alg` that
//!   does not match the key are refused;
//! - only RS256 (RSA of 2048 bits or more), ES256 (P-256) and EdDSA (Ed25519);
//! - `iss` exact, `aud` must contain the configured audience, `exp`, `iat` and
//!   the subject claim are required, `exp`/`nbf` checked with 30 s of leeway;
//! - the role comes from the first `[[issuers.map]]` entry (in file order)
//!   whose `value` is one of the token's role-claim values; none → 403;
//! - a reader needs a window (the mapping's `window_s` lookback or the token's
//!   `win_from` claim), otherwise 403.
//!
//! Key sets come from a file or an HTTPS URL, are re-read periodically and on
//! an unknown `kid` (at most once per `min_refresh_interval_s`); a failed load
//! keeps the last good set, and an issuer without a good set refuses all of
//! its tokens (401).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Digest;
use tracevault_vault::token::{Claims, MAX_JTI_BYTES, Role};

use crate::error::ApiError;

/// Largest key set accepted (file or HTTP body), in bytes.
pub const MAX_JWKS_BYTES: usize = 1 << 20;
/// Most keys in one key set.
pub const MAX_JWKS_KEYS: usize = 100;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (as for the
/// vault's own tokens).
pub const LEEWAY_S: i64 = 30;
/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Longest `sub` (after the prefix) taken from a token (`jti`: [`MAX_JTI_BYTES`]).
const MAX_CLAIM_CHARS: usize = 256;
/// Longest `window_s` (20 years).
const MAX_WINDOW_S: u64 = 20 * 365 * 24 * 3600;
/// Time limit of one key set download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The algorithms an external issuer may use, by name.
const SUPPORTED: [(&str, Algorithm); 3] = [
    ("RS256", Algorithm::RS256),
    ("ES256", Algorithm::ES256),
    ("EdDSA", Algorithm::EdDSA),
];

fn default_algorithms() -> Vec<String> {
    SUPPORTED.iter().map(|(n, _)| n.to_string()).collect()
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_refresh_s() -> u64 {
    300
}
fn default_min_refresh_interval_s() -> u64 {
    60
}

/// One `[[issuers]]` entry of the config file (docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of this issuer's tokens.
    pub issuer: String,
    /// The audience its tokens must carry in `aud` (a string or a list).
    pub audience: String,
    /// Key set (JWKS) file; exactly one of `jwks_file` and `jwks_url`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Key set URL (`https://`, or `http://` on a loopback host only).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Algorithms accepted (default: RS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The claim holding the values mapped to roles (a string or an array of
    /// strings); a top-level claim of that exact name, else a dotted path
    /// into nested objects (`realm_access.roles`).
    pub role_claim: String,
    /// The claim holding the subject (default `sub`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Prepended to the subject (what `ingested_by` records), e.g. `idp:`.
    /// Required and non-empty, so an external subject can never pass for a
    /// name used in the vault's own tokens or in a masking profile match.
    #[serde(default)]
    pub subject_prefix: String,
    /// The claim naming the person behind the token, compared across
    /// issuers by the export workflow (e.g. `email`); unset: this issuer's
    /// tokens name no person. When set, a token without it is refused.
    #[serde(default)]
    pub identity_claim: Option<String>,
    /// Period of key set reloads, in seconds (default 300).
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u64,
    /// Least time between two key set loads (periodic or on an unknown
    /// `kid`), in seconds (default 60).
    #[serde(default = "default_min_refresh_interval_s")]
    pub min_refresh_interval_s: u64,
    /// Claim value → role table; the first matching entry wins.
    pub map: Vec<RoleMapping>,
}

/// One `[[issuers.map]]` entry: tokens whose role claim holds `value` get
/// `role` on `ns`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// The claim value (exact, case-sensitive).
    pub value: String,
    /// The role granted.
    pub role: Role,
    /// The namespaces granted (`*` only for admin).
    pub ns: Vec<String>,
    /// Reader window: events received in the last `window_s` seconds
    /// (readers only).
    #[serde(default)]
    pub window_s: Option<u64>,
}

/// Configuration and key set failures (start-up errors).
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// An `[[issuers]]` entry is invalid.
    #[error("[[issuers]] {issuer:?}: {message}")]
    Config {
        /// The entry's `issuer`.
        issuer: String,
        /// What is wrong.
        message: String,
    },
    /// A key set could not be loaded.
    #[error("key set of issuer {issuer:?} ({from}): {message}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// The file or URL.
        from: String,
        /// What went wrong.
        message: String,
    },
}

/// Why a token of an external issuer is refused. The message is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Not a valid token of this issuer (401).
    #[error("{message}")]
    Unauthorized {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
    /// A valid token that grants nothing here (403).
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// Human text.
        message: String,
    },
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        match r {
            Rejection::Unauthorized { code, message } => {
                ApiError::new(StatusCode::UNAUTHORIZED, code, message)
            }
            Rejection::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> Rejection {
    Rejection::Unauthorized {
        code: "invalid_token",
        message: message.into(),
    }
}

fn config_error(issuer: &str, message: impl Into<String>) -> ExternalError {
    ExternalError::Config {
        issuer: issuer.to_string(),
        message: message.into(),
    }
}

impl IssuerConfig {
    /// Checks one entry; `own_issuer` is the `iss` of the vault's own tokens,
    /// which no external issuer may take.
    pub fn validate(&self, own_issuer: &str) -> Result<(), ExternalError> {
        let err = |m: String| config_error(&self.issuer, m);
        if self.issuer.is_empty() {
            return Err(err("issuer must not be empty".into()));
        }
        if self.issuer == own_issuer {
            return Err(err(format!(
                "{own_issuer} is the vault's own issuer; its tokens are verified with the issuer key"
            )));
        }
        if self.audience.is_empty() {
            return Err(err("audience must not be empty".into()));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), None) => {}
            (None, Some(u)) => {
                check_jwks_url(u).map_err(err)?;
            }
            _ => {
                return Err(err(
                    "exactly one of jwks_file and jwks_url must be given".into()
                ));
            }
        }
        self.algorithms().map_err(err)?;
        if self.role_claim.is_empty() || self.subject_claim.is_empty() {
            return Err(err("role_claim and subject_claim must not be empty".into()));
        }
        if self.subject_prefix.is_empty() {
            return Err(err(
                "subject_prefix must not be empty (e.g. \"okta:\"): it keeps this issuer's subjects \
                 apart from the names in the vault's own tokens and in masking profile matches"
                    .into(),
            ));
        }
        if self.identity_claim.as_deref().is_some_and(str::is_empty) {
            return Err(err(
                "identity_claim must not be empty (omit it instead)".into()
            ));
        }
        if self.min_refresh_interval_s == 0 {
            return Err(err("min_refresh_interval_s must be at least 1".into()));
        }
        if self.refresh_s < self.min_refresh_interval_s {
            return Err(err(format!(
                "refresh_s = {} must be at least min_refresh_interval_s = {}",
                self.refresh_s, self.min_refresh_interval_s
            )));
        }
        if self.map.is_empty() {
            return Err(err(
                "at least one [[issuers.map]] entry is required (nothing would be granted)".into(),
            ));
        }
        let mut seen = HashSet::new();
        for m in &self.map {
            let err = |msg: String| err(format!("map value {:?}: {msg}", m.value));
            if m.value.is_empty() {
                return Err(err("value must not be empty".into()));
            }
            if !seen.insert(m.value.as_str()) {
                return Err(err("mapped twice (the first entry would always win)".into()));
            }
            if m.ns.is_empty() {
                return Err(err("at least one namespace is required".into()));
            }
            for ns in &m.ns {
                if ns == "*" {
                    if m.role != Role::Admin {
                        return Err(err("namespace * is for the admin role only".into()));
                    }
                } else if tracevault_vault::validate_namespace(ns, m.role == Role::Admin).is_err() {
                    return Err(err(format!("{ns:?} is not a valid namespace")));
                }
            }
            match (m.role, m.window_s) {
                (Role::Reader, Some(w)) if w == 0 || w > MAX_WINDOW_S => {
                    return Err(err(format!(
                        "window_s must be between 1 and {MAX_WINDOW_S}"
                    )));
                }
                (Role::Reader, _) => {}
                (_, Some(_)) => return Err(err("window_s is for the reader role only".into())),
                (_, None) => {}
            }
        }
        Ok(())
    }

    /// The allowed algorithms, parsed.
    fn algorithms(&self) -> Result<Vec<Algorithm>, String> {
        if self.algorithms.is_empty() {
            return Err("algorithms must not be empty".into());
        }
        self.algorithms
            .iter()
            .map(|a| {
                SUPPORTED
                    .iter()
                    .find(|(n, _)| n == a)
                    .map(|(_, alg)| *alg)
                    .ok_or_else(|| {
                        format!("algorithm {a:?} is not supported (only RS256, ES256 and EdDSA)")
                    })
            })
            .collect()
    }
}

/// A JWKS URL must be `https://`, or `http://` to a loopback address.
fn check_jwks_url(u: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("jwks_url {u:?}: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "jwks_url {u:?} must be https:// (http:// only on a loopback address)"
        )),
    }
}

/// Checks every entry, and that no two share an `issuer`.
pub fn validate_all(configs: &[IssuerConfig], own_issuer: &str) -> Result<(), ExternalError> {
    let mut seen = HashSet::new();
    for c in configs {
        c.validate(own_issuer)?;
        if !seen.insert(c.issuer.as_str()) {
            return Err(config_error(&c.issuer, "configured twice"));
        }
    }
    Ok(())
}

/// A verification key of a key set, with the one algorithm it may verify.
struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// A loaded key set.
struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
}

enum Pick {
    Found(Arc<VerifyKey>),
    UnknownKid,
    Refused(String),
}

impl KeySet {
    /// The key for a token with header `kid` and `alg`. A token without a
    /// `kid` is accepted only when the set holds a single key.
    fn pick(&self, kid: Option<&str>, alg: Algorithm) -> Pick {
        let candidates: Vec<&Arc<VerifyKey>> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None if self.keys.len() == 1 => self.keys.iter().collect(),
            None => {
                return Pick::Refused(format!(
                    "the token has no kid and the issuer's key set holds {} keys",
                    self.keys.len()
                ));
            }
        };
        if candidates.is_empty() {
            return Pick::UnknownKid;
        }
        match candidates.iter().find(|k| k.alg == alg) {
            Some(k) => Pick::Found(Arc::clone(k)),
            None => Pick::Refused(format!(
                "the token's alg {alg:?} does not match its key ({:?})",
                candidates[0].alg
            )),
        }
    }
}

/// Parses a key set, keeping the keys usable with `allowed`; returns the
/// set and why the other keys were skipped.
fn parse_jwks(bytes: &[u8], allowed: &[Algorithm]) -> Result<(KeySet, Vec<String>), String> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
    }
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS document: {e}"))?;
    if raw.keys.len() > MAX_JWKS_KEYS {
        return Err(format!("{} keys (at most {MAX_JWKS_KEYS})", raw.keys.len()));
    }
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, v) in raw.keys.iter().enumerate() {
        match key_from_jwk(v, allowed) {
            Ok(k) => keys.push(Arc::new(k)),
            Err(why) => {
                let kid = v.get("kid").and_then(Value::as_str).unwrap_or("-");
                skipped.push(format!("key {i} (kid {kid}): {why}"));
            }
        }
    }
    if keys.is_empty() {
        return Err(format!("no usable key [{}]", skipped.join("; ")));
    }
    Ok((KeySet { keys }, skipped))
}

/// The byte length of a base64url (no padding) JWK member.
fn b64_len(name: &str, s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("{name} is not base64url: {e}"))
}

/// One JWK → a verification key. The algorithm comes from the key type and
/// curve; an `alg` member, when present, must agree with it.
fn key_from_jwk(v: &Value, allowed: &[Algorithm]) -> Result<VerifyKey, String> {
    let raw_alg = v.get("alg").map(|a| a.as_str().unwrap_or("?"));
    let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    if let Some(u) = &jwk.common.public_key_use
        && *u != PublicKeyUse::Signature
    {
        return Err("not a signature key (use)".into());
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("not a verification key (key_ops)".into());
    }
    let agree = |names: &[&str]| match raw_alg {
        None => Ok(()),
        Some(a) if names.contains(&a) => Ok(()),
        Some(a) => Err(format!(
            "alg {a} does not fit this key type or is not supported"
        )),
    };
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            agree(&["RS256"])?;
            let n = b64_len("n", &p.n)?;
            let bits = n
                .iter()
                .position(|b| *b != 0)
                .map_or(0, |i| (n.len() - i) * 8 - n[i].leading_zeros() as usize);
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA key of {bits} bits (at least {MIN_RSA_BITS})"));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(p) => {
            if p.curve != EllipticCurve::P256 {
                return Err(format!("curve {:?} is not supported (P-256 only)", p.curve));
            }
            agree(&["ES256"])?;
            if b64_len("x", &p.x)?.len() != 32 || b64_len("y", &p.y)?.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(format!(
                    "curve {:?} is not supported (Ed25519 only)",
                    p.curve
                ));
            }
            agree(&["EdDSA", "Ed25519"])?;
            if b64_len("x", &p.x)?.len() != 32 {
                return Err("an Ed25519 key must be 32 bytes".into());
            }
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys are never accepted".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    if !allowed.contains(&alg) {
        return Err(format!("{alg:?} is not among this issuer's algorithms"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

enum Source {
    File(PathBuf),
    Url {
        url: reqwest::Url,
        client: reqwest::Client,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Url { url, .. } => url.to_string(),
        }
    }
}

/// A configured issuer with its current key set.
struct Issuer {
    name: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    role_claim: String,
    subject_claim: String,
    subject_prefix: String,
    identity_claim: Option<String>,
    map: Vec<RoleMapping>,
    source: Source,
    refresh: Duration,
    min_interval: Duration,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// When the last load started (loads are at most one per `min_interval`).
    last_load: Mutex<Option<Instant>>,
}

impl Issuer {
    fn new(c: &IssuerConfig) -> Result<Issuer, ExternalError> {
        let source = match (&c.jwks_file, &c.jwks_url) {
            (Some(p), _) => Source::File(p.clone()),
            (None, Some(u)) => {
                let url = check_jwks_url(u).map_err(|m| config_error(&c.issuer, m))?;
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .connect_timeout(Duration::from_secs(5))
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("tracevault/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| config_error(&c.issuer, format!("HTTP client: {e}")))?;
                Source::Url { url, client }
            }
            (None, None) => return Err(config_error(&c.issuer, "no key set")),
        };
        Ok(Issuer {
            name: c.issuer.clone(),
            audience: c.audience.clone(),
            algorithms: c.algorithms().map_err(|m| config_error(&c.issuer, m))?,
            role_claim: c.role_claim.clone(),
            subject_claim: c.subject_claim.clone(),
            subject_prefix: c.subject_prefix.clone(),
            identity_claim: c.identity_claim.clone(),
            map: c.map.clone(),
            source,
            refresh: Duration::from_secs(c.refresh_s),
            min_interval: Duration::from_secs(c.min_refresh_interval_s),
            keys: RwLock::new(None),
            last_load: Mutex::new(None),
        })
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes the load slot unless a load started less than `min_interval` ago.
    fn claim_load(&self) -> bool {
        let mut last = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn jwks_error(&self, message: impl Into<String>) -> ExternalError {
        ExternalError::Jwks {
            issuer: self.name.clone(),
            from: self.source.describe(),
            message: message.into(),
        }
    }

    fn read_file(&self, path: &std::path::Path) -> Result<Vec<u8>, ExternalError> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(|e| self.jwks_error(e.to_string()))?;
        let mut bytes = Vec::new();
        f.take(MAX_JWKS_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.jwks_error(e.to_string()))?;
        Ok(bytes)
    }

    async fn fetch(
        &self,
        url: &reqwest::Url,
        client: &reqwest::Client,
    ) -> Result<Vec<u8>, ExternalError> {
        let mut resp = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.jwks_error(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(self.jwks_error(format!("HTTP status {}", resp.status())));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(self.jwks_error(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.jwks_error(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(self.jwks_error(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Installs a freshly read key set, or keeps the last good one.
    fn install(&self, bytes: Result<Vec<u8>, ExternalError>) -> Result<usize, ExternalError> {
        let result =
            bytes.and_then(|b| parse_jwks(&b, &self.algorithms).map_err(|m| self.jwks_error(m)));
        match result {
            Ok((set, skipped)) => {
                let n = set.keys.len();
                for s in &skipped {
                    tracing::debug!(issuer = %self.name, "key set: skipped {s}");
                }
                tracing::debug!(
                    issuer = %self.name,
                    keys = n,
                    skipped = skipped.len(),
                    "key set loaded"
                );
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(set));
                Ok(n)
            }
            Err(e) => {
                match self.current() {
                    Some(set) => tracing::warn!(
                        "{e}; keeping the last good key set ({} keys)",
                        set.keys.len()
                    ),
                    None => tracing::warn!(
                        "{e}; no key set: this issuer's tokens are refused until one loads"
                    ),
                }
                Err(e)
            }
        }
    }

    /// Loads the key set now (the caller holds the load slot).
    async fn load(&self) -> Result<usize, ExternalError> {
        let bytes = match &self.source {
            Source::File(p) => self.read_file(p),
            Source::Url { url, client } => self.fetch(url, client).await,
        };
        self.install(bytes)
    }

    /// Reloads the key set from a synchronous caller (an unknown `kid`), at
    /// most once per `min_interval`. A URL is fetched on this thread when the
    /// runtime allows blocking it (multi-threaded), else in the background.
    /// Returns whether a new set was installed.
    fn reload_now(self: &Arc<Self>) -> bool {
        match &self.source {
            Source::File(p) => self.claim_load() && self.install(self.read_file(p)).is_ok(),
            Source::Url { .. } => {
                let Ok(handle) = tokio::runtime::Handle::try_current() else {
                    return false;
                };
                if !self.claim_load() {
                    return false;
                }
                let me = Arc::clone(self);
                if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                    tokio::task::block_in_place(move || handle.block_on(me.load()).is_ok())
                } else {
                    handle.spawn(async move { me.load().await });
                    false
                }
            }
        }
    }

    /// Reloads the key set every `refresh` (every `min_interval` while it has
    /// none), until the issuer is dropped.
    async fn refresher(me: Weak<Issuer>) {
        loop {
            let wait = match me.upgrade() {
                Some(i) if i.current().is_some() => i.refresh,
                Some(i) => i.min_interval,
                None => return,
            };
            tokio::time::sleep(wait).await;
            let Some(i) = me.upgrade() else { return };
            if i.claim_load() {
                let _ = i.load().await;
            }
        }
    }

    /// Verifies a token that names this issuer and maps it to [`Claims`].
    fn verify(self: &Arc<Self>, token: &str) -> Result<Claims, Rejection> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed token header: {e}")))?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err(invalid(format!(
                "algorithm {:?} is never accepted from external issuers",
                header.alg
            )));
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted for issuer {}",
                header.alg, self.name
            )));
        }
        let key = self.key_for(header.kid.as_deref(), header.alg)?;
        let mut v = Validation::new(key.alg);
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.name]);
        let mut required = vec!["exp", "iss", "aud"];
        if self.subject_claim == "sub" {
            required.push("sub");
        }
        v.set_required_spec_claims(&required);
        v.leeway = LEEWAY_S as u64;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
            .map_err(|e| invalid(format!("token of issuer {}: {e}", self.name)))?;
        self.map_claims(token, &data.claims, Utc::now())
    }

    /// The key for `kid`/`alg`, reloading the set once on an unknown `kid`.
    fn key_for(
        self: &Arc<Self>,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyKey>, Rejection> {
        let unavailable = || Rejection::Unauthorized {
            code: "issuer_keys_unavailable",
            message: format!(
                "the key set of issuer {} could not be loaded; its tokens are refused",
                self.name
            ),
        };
        let mut set = match self.current() {
            Some(s) => s,
            None if self.reload_now() => self.current().ok_or_else(unavailable)?,
            None => return Err(unavailable()),
        };
        for attempt in 0..2 {
            match set.pick(kid, alg) {
                Pick::Found(k) => return Ok(k),
                Pick::Refused(m) => return Err(invalid(m)),
                Pick::UnknownKid if attempt == 0 && self.reload_now() => {
                    set = self.current().ok_or_else(unavailable)?;
                }
                Pick::UnknownKid => break,
            }
        }
        // The caller's text, shown bounded (an error body is no echo).
        let shown: String = kid.unwrap_or_default().chars().take(64).collect();
        Err(invalid(format!(
            "key id {shown:?} is not in the key set of issuer {}",
            self.name
        )))
    }

    /// Maps verified claims to tracevault [`Claims`] (role, namespaces,
    /// window). `now` is the verification time.
    fn map_claims(
        &self,
        token: &str,
        claims: &Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Result<Claims, Rejection> {
        let secs = now.timestamp();
        let number = |name: &str| -> Result<Option<i64>, Rejection> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                    .map(Some)
                    .ok_or_else(|| invalid(format!("claim {name} must be a number"))),
            }
        };
        let exp = number("exp")?.ok_or_else(|| invalid("claim exp is required"))?;
        let iat = number("iat")?.ok_or_else(|| invalid("claim iat is required"))?;
        if iat > secs + LEEWAY_S {
            return Err(invalid("claim iat is in the future"));
        }
        let sub = match claims.get(&self.subject_claim) {
            Some(Value::String(s)) if !s.is_empty() && !s.chars().any(char::is_control) => {
                format!("{}{s}", self.subject_prefix)
            }
            _ => {
                return Err(invalid(format!(
                    "claim {} (the subject) must be a non-empty string without control characters",
                    self.subject_claim
                )));
            }
        };
        if sub.chars().count() > MAX_CLAIM_CHARS {
            return Err(invalid(format!(
                "the subject is longer than {MAX_CLAIM_CHARS} characters"
            )));
        }
        let jti = match claims.get("jti") {
            // Derived from the signed part only (header and payload): an
            // ECDSA signature can be re-encoded (high/low S) into a different
            // token string that still verifies, which must not escape a
            // revocation.
            None | Some(Value::Null) => {
                let signed = token.rsplit_once('.').map_or(token, |(s, _)| s);
                format!(
                    "ext:{}",
                    hex::encode(sha2::Sha256::digest(signed.as_bytes()))
                )
            }
            // The revocation bound: a token whose id could not be revoked is
            // not accepted.
            Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_JTI_BYTES => s.clone(),
            Some(_) => {
                return Err(invalid(format!(
                    "claim jti must be a string of 1 to {MAX_JTI_BYTES} bytes"
                )));
            }
        };
        let person = match &self.identity_claim {
            None => None,
            Some(name) => {
                let found = claims.get(name).and_then(Value::as_str);
                Some(
                    found
                        .and_then(tracevault_vault::token::normalize_person)
                        .ok_or_else(|| {
                            invalid(format!(
                                "claim {name} (the identity) must be a non-empty string"
                            ))
                        })?,
                )
            }
        };
        let values = claim_values(claims, &self.role_claim);
        let Some(m) = self.map.iter().find(|m| values.contains(&m.value.as_str())) else {
            let shown: Vec<String> = values
                .iter()
                .take(10)
                .map(|v| v.chars().take(64).collect())
                .collect();
            return Err(Rejection::Forbidden {
                code: "no_role_mapping",
                message: format!(
                    "no role is mapped for claim {} = {:?} of issuer {}",
                    self.role_claim, shown, self.name
                ),
            });
        };
        let (win_from, win_to) = if m.role == Role::Reader {
            let token_from = window_claim(claims, "win_from")?;
            let token_to = window_claim(claims, "win_to")?;
            let lookback = m
                .window_s
                .and_then(|w| now.checked_sub_signed(chrono::Duration::seconds(w as i64)));
            let from = match (token_from, lookback) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let Some(from) = from else {
                return Err(Rejection::Forbidden {
                    code: "no_window",
                    message: format!(
                        "reader mapping {:?} of issuer {} has no window_s and the token has no win_from claim",
                        m.value, self.name
                    ),
                });
            };
            (
                Some(tracevault_schemas::format_timestamp(&from)),
                token_to.map(|t| tracevault_schemas::format_timestamp(&t)),
            )
        } else {
            (None, None)
        };
        Ok(Claims {
            iss: self.name.clone(),
            sub,
            aud: self.audience.clone(),
            iat,
            exp,
            jti,
            role: m.role,
            ns: m.ns.clone(),
            win_from,
            win_to,
            person,
        })
    }
}

/// The strings of the role claim: a string is one value, an array gives its
/// string elements; anything else gives none. The claim is looked up by its
/// exact name first, then as a dotted path into nested objects.
fn claim_values<'a>(claims: &'a Map<String, Value>, name: &str) -> Vec<&'a str> {
    let found = claims.get(name).or_else(|| {
        let mut parts = name.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |v, p| v.as_object()?.get(p))
    });
    match found {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A reader window claim: RFC 3339 text or Unix seconds.
fn window_claim(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, Rejection> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => tracevault_schemas::parse_timestamp(name, s)
            .map(Some)
            .map_err(|e| invalid(e.to_string())),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|s| *s >= 0)
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .map(Some)
            .ok_or_else(|| invalid(format!("claim {name} is not a valid time"))),
        Some(_) => Err(invalid(format!(
            "claim {name} must be RFC 3339 text or Unix seconds"
        ))),
    }
}

/// The configured external issuers. Empty by default: every token then goes
/// to the vault's own issuer.
#[derive(Default)]
pub struct ExternalIssuers {
    issuers: Vec<Arc<Issuer>>,
}

impl ExternalIssuers {
    /// Validates `configs`, loads every key set and starts their periodic
    /// reloads. An unreadable or invalid `jwks_file` is an error; a
    /// `jwks_url` that cannot be fetched now is only logged (its tokens are
    /// refused until a fetch succeeds). Call within a Tokio runtime.
    pub async fn start(
        configs: &[IssuerConfig],
        own_issuer: &str,
    ) -> Result<ExternalIssuers, ExternalError> {
        validate_all(configs, own_issuer)?;
        let mut issuers = Vec::new();
        for c in configs {
            let issuer = Arc::new(Issuer::new(c)?);
            issuer.claim_load();
            match (issuer.load().await, &issuer.source) {
                (Ok(n), _) => tracing::info!(
                    issuer = %issuer.name,
                    from = %issuer.source.describe(),
                    keys = n,
                    "external token issuer ready"
                ),
                (Err(e), Source::File(_)) => return Err(e),
                (Err(_), Source::Url { .. }) => {}
            }
            tokio::spawn(Issuer::refresher(Arc::downgrade(&issuer)));
            issuers.push(issuer);
        }
        Ok(ExternalIssuers { issuers })
    }

    /// Whether no external issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The issuer whose subjects start like `sub` (its `subject_prefix`),
    /// if any: the vault's own tokens must not take such names, or they
    /// would pass for that issuer's people (in `ingested_by`, in masking
    /// profile matches, in duplicate detection).
    pub fn prefix_of(&self, sub: &str) -> Option<&str> {
        self.issuers
            .iter()
            .find(|i| sub.starts_with(&i.subject_prefix))
            .map(|i| i.subject_prefix.as_str())
    }

    /// How many keys each issuer holds now (`None`: no key set yet).
    pub fn key_counts(&self) -> Vec<(String, Option<usize>)> {
        self.issuers
            .iter()
            .map(|i| (i.name.clone(), i.current().map(|s| s.keys.len())))
            .collect()
    }

    /// Verifies `token` when its (unverified) `iss` names a configured
    /// issuer; `None` when it does not (the vault's own issuer decides).
    pub fn verify(&self, token: &str) -> Option<Result<Claims, Rejection>> {
        if self.issuers.is_empty() {
            return None;
        }
        let iss = unverified_iss(token)?;
        let issuer = self.issuers.iter().find(|i| i.name == iss)?;
        Some(issuer.verify(token))
    }
}

/// The `iss` of a token, read without verification, for routing only.
fn unverified_iss(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<Value>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice::<Iss>(&bytes).ok()?.iss? {
        Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// Fixed test keys (PKCS#1 DER for RSA, PKCS#8 DER for P-256), made with
    /// Python's `cryptography` once.
    const RSA_2048: &str = concat!(
        "MIIEpAIBAAKCAQEAkBrrGNP8QBho8NngSilyHdBNQIYfp3a4/PMQfXYtpGEb2gJTGitOxVSpCJn6eEZL3WyQn45t",
        "kWpwUwl+m+DtdReOfGQAo1Kuow9M7WSc4SexPnykkct4wpU2kuyZLdenEOHXIBYvBZwiht+ZUQ4LfCQijD6x4GUa",
        "6WJ7UBUW+UGeZTXew882g3/jaERbMuKKK+nNn7qpo1JA1IiMWdPKG1lZ2ILyHr/LHX8h+FV6Iu8q3dK0Lm826Kl+",
        "16LdWhjQUpC/Gpf72IayVCPa1JufgnJswrgziHFSsLyiIPaL1be7llfxpxmI8YiXX7DWKB3v/C9Knk0DP5fQbGDQ",
        "CCCR7QIDAQABAoIBABaWsZ19tT/S07hVXswhPQshWMqxe4rDmHHGJCKWgMcQlc4RqTcj7MAP6kM358QsuL2nw+/O",
        "4qv1tE+/4EHM+0vsemBTSKpRTqCuyE86A0Fj+GukHCPicjaGLzzOq6A8+qoxzIfyEkLd26eqqxzCh9hYzbWQKk/T",
        "aWmGD3BZLfW6MEPPVm/PLxy2QeCl9sSdv3tezy9omyxhzKy3Mr8LsqNlndo+pX/PwhDOJUvg2Zm+a5OEQCRzAann",
        "TydWG7AzsKnxDRZvxQvM+fhC+NM4vGaEgqa+sNtCIxYUjMkU4Lwg9wQqpUJSFwOQyShkWIpf8kSQ0cIOu2axYy5N",
        "pk6C5YECgYEAwMsGpzy+7jgfP3M7LIVFCzBiZRa2ypA81LBvgVR9T6WNzU8QWZ4eK3sRKTbnuCKllkP4/LAc7NpO",
        "WlTKiRxS1oYAQgo9rwyaA2VZvjGlpuFVVlkclYajKeS8O6LfHJd1GAhY5wcl5xETDO87v6PeJuz0vSPr/h6XJWgb",
        "gNef4SECgYEAv1mNe2FYOj4JSEFLSK4NCLxTSZRb2Ss7RiaLCgSapD+Df/sYCz8JSuS8URID79arx+/nCEpilX1/",
        "n6Xs6YCl+3P1A4sV9UoRRWq3ceHLV9D2LwbeFoUbegE21Ax3VIET1gnnx+QGCiY9QQveczmNfm/qOnk+0Zv8jzbJ",
        "hJz/e00CgYEAsUE5McOhC+bfm/e3HRy+uSXYIXc7wovQ0gAR1Qe4WuUsteoOb0b4GCQDSDBp5Zs9QSXno3PMdFvW",
        "lCjHOj6nTwNO82j1A5+DbsHdPAfrdL5SNpyhsjxigZ8DDZWWqnP6PYlXK7ofuA2zxT2jYnQoSQOtlMSVMkQv1T2d",
        "o90b6uECgYBsy3AD7I8LXmZMrMMvKbbDdsAsH6wxR8FF23hGU+PQ60PLKmq7SjXwXSktNv8CCJ5W6XIEZraypE5B",
        "6UdQZBL7ayytvRDZDCnRvCFdILJK1caDanYve7LppXMVEZlvdIxgr/UW0/ETKDa/mw35mYl3kA4u/OzYpMXub4oY",
        "WmNwKQKBgQCNhWbXHAhRg1YHTNQPWwom/UJNJErX78eW4zUH+Ii4LPrCK4a5jFViZ/KERyE0AlwR71drMbM8cfV1",
        "gYelD8no0rYWcJ0R5y0PSkbZQp5zuGx5OCZEVXtWCqHmoYAMoKtxUXtlH/s9kWqUymiPbRFa9PnQwjUdqcay2Uyq",
        "96L5BA==",
    );
    const P256: &str = concat!(
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgo7ma/iqDyICAjPNFXyYNCmBrU06fiHARGsYU4ycq",
        "3kehRANCAASn7vD6DTy80ihO+sYBcJdPaV0QfYO3wTGF8+P4vHtIiEWbQ4uDubA7Tu+bLCxSnVaGD9fBvWaomTUI",
        "LdHKIDIU",
    );
    const RSA_1024: &str = concat!(
        "MIICXQIBAAKBgQDfbkNccMq1IamxMAFOqSNGTaNLxUGS8UIcJgE/B+o5jO2o6en1yZkt/vi1Z5xdZse18A8CVdBU",
        "HWp+yjuUc9WslKuSg0oOprsfBRz4Ohj38qwh61gtP1WrN1RPRJ8Xj1C0UR68hEM8PZ3eaCecueUFUBOwJtUs3wDF",
        "oYtGuVs8GwIDAQABAoGAUCJK1I+7lCVDqEIQZfbxqNhVlepkb2BKFrBmyAV9szBhWLC0cavhXYbSCrXjdfhT7mPv",
        "7iV694ApXtoHbmHxIy4NFn20smduD7aVjr6N34mZ0dSCp+FUj53WmrhcQc7AzkTuOFDraeTScSbb9DLS/XnVC6pC",
        "gw3/yp2UFu2/yjECQQDv2dKNYWPOGcvWujh4WPTbSNPEwflrrLG9FefPc4mspHqTJuSs4pEzq0JhX1bcroyz9Q3i",
        "8mWIgZbLAGpqW6YTAkEA7nlqXjwMylBeS09heDof1A3TXphrhmoF/L2sfLUIhXgfD64jlrrUDYyO68VPUfcoIAS9",
        "ZF9nhYQnUav5uk1y2QJBAM51hJ14cK3vXJw4bfWCNTsxBEEA6884t0JZQdI71Q2MA4r5VqxO1shQKfKhW6bYhXs+",
        "fLaXCrknO4MAl5l3zIsCQB1ce5kwoY6DSKjTFDgeR+7u6Nhbwdlh0mzk2YjdLThpqsFeemlDhXpJlQs4VuTLnnga",
        "vUrPaEqLE+A9YVjr0jkCQQDvhRP6i88lilGDLJVDktDMRyYcTOrthwMErV2nz9In+RyVz83epqcUL99ApvougFPE",
        "7/jlfxXbg63cFON5VJEE",
    );

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_der(&STANDARD.decode(RSA_2048).unwrap())
    }
    fn ec() -> EncodingKey {
        EncodingKey::from_ec_der(&STANDARD.decode(P256).unwrap())
    }
    fn ed(seed: u8) -> EncodingKey {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&[seed; 32]);
        EncodingKey::from_ed_der(&der)
    }

    /// The public JWK of `key` with `kid`, as a JSON value.
    fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
        let mut j = Jwk::from_encoding_key(key, alg).unwrap();
        j.common.key_id = Some(kid.into());
        serde_json::to_value(j).unwrap()
    }

    fn jwks() -> Vec<u8> {
        json!({"keys": [
            jwk(&rsa(), Algorithm::RS256, "rsa-1"),
            jwk(&ec(), Algorithm::ES256, "ec-1"),
            jwk(&ed(7), Algorithm::EdDSA, "ed-1"),
        ]})
        .to_string()
        .into_bytes()
    }

    const ISS: &str = "https://idp.example.com/";

    fn config(extra: &str) -> IssuerConfig {
        let prefix = if extra.contains("subject_prefix") {
            ""
        } else {
            "subject_prefix = \"ext:\"\n"
        };
        toml::from_str(&format!(
            r#"
issuer = "{ISS}"
audience = "tracevault"
jwks_file = "/nonexistent/jwks.json"
role_claim = "groups"
{prefix}{extra}
[[map]]
value = "auditors"
role = "reader"
ns = ["prod", "staging"]
window_s = 3600
[[map]]
value = "pipelines"
role = "writer"
ns = ["prod"]
[[map]]
value = "analysts"
role = "reader"
ns = ["prod"]
[[map]]
value = "ops"
role = "admin"
ns = ["*"]
"#
        ))
        .unwrap()
    }

    fn issuer_with(cfg: &IssuerConfig) -> Arc<Issuer> {
        let i = Arc::new(Issuer::new(cfg).unwrap());
        i.install(Ok(jwks())).unwrap();
        i
    }

    fn issuer() -> Arc<Issuer> {
        issuer_with(&config(""))
    }

    fn now() -> i64 {
        Utc::now().timestamp()
    }

    fn claims(groups: Value) -> Value {
        json!({"iss": ISS, "aud": "tracevault", "sub": "alice", "iat": now(),
               "exp": now() + 600, "groups": groups})
    }

    fn mint(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    fn code(r: Result<Claims, Rejection>) -> (u16, &'static str, String) {
        match r.unwrap_err() {
            Rejection::Unauthorized { code, message } => (401, code, message),
            Rejection::Forbidden { code, message } => (403, code, message),
        }
    }

    #[test]
    fn config_validation_refuses_what_could_grant_too_much() {
        assert!(config("").validate("tracevault/abc").is_ok());
        assert_eq!(config("").algorithms, ["RS256", "ES256", "EdDSA"]);
        assert_eq!(config("").subject_claim, "sub");
        let mut unprefixed = config("");
        unprefixed.subject_prefix.clear();
        let e = unprefixed
            .validate("tracevault/abc")
            .unwrap_err()
            .to_string();
        assert!(e.contains("subject_prefix"), "{e}");
        let bad = |extra: &str, map: &str, needle: &str| {
            let text = format!(
                "issuer = \"{ISS}\"\naudience = \"tracevault\"\nrole_claim = \"groups\"\nsubject_prefix = \"x:\"\n{extra}\n[[map]]\n{map}\n"
            );
            let c: IssuerConfig = toml::from_str(&text).unwrap();
            let e = c.validate("tracevault/abc").unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        };
        let file = "jwks_file = \"/x\"";
        let writer = "value = \"a\"\nrole = \"writer\"\nns = [\"prod\"]";
        bad("", writer, "exactly one of jwks_file and jwks_url");
        bad(
            "jwks_file = \"/x\"\njwks_url = \"https://idp/jwks\"",
            writer,
            "exactly one",
        );
        bad(
            "jwks_url = \"http://idp.example.com/jwks\"",
            writer,
            "https://",
        );
        bad("jwks_url = \"ftp://127.0.0.1/jwks\"", writer, "https://");
        bad("jwks_url = \"not a url\"", writer, "jwks_url");
        for alg in ["HS256", "none", "PS256", "RS512"] {
            bad(
                &format!("{file}\nalgorithms = [\"{alg}\"]"),
                writer,
                "not supported",
            );
        }
        bad(
            &format!("{file}\nalgorithms = []"),
            writer,
            "must not be empty",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"writer\"\nns = [\"*\"]",
            "admin role only",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"reader\"\nns = [\"*\"]\nwindow_s = 60",
            "admin role only",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"reader\"\nns = [\"prod\"]\nwindow_s = 0",
            "window_s must be between",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"writer\"\nns = [\"prod\"]\nwindow_s = 60",
            "reader role only",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"writer\"\nns = []",
            "at least one namespace",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"writer\"\nns = [\"Prod!\"]",
            "not a valid namespace",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"writer\"\nns = [\"_audit\"]",
            "not a valid namespace",
        );
        bad(
            file,
            "value = \"\"\nrole = \"writer\"\nns = [\"prod\"]",
            "must not be empty",
        );
        bad(
            file,
            "value = \"a\"\nrole = \"writer\"\nns = [\"prod\"]\n[[map]]\nvalue = \"a\"\nrole = \"admin\"\nns = [\"*\"]",
            "mapped twice",
        );
        bad(&format!("{file}\nrefresh_s = 10"), writer, "refresh_s");
        bad(
            &format!("{file}\nmin_refresh_interval_s = 0"),
            writer,
            "at least 1",
        );
        // Admins may have `*` and system namespaces.
        let ok: IssuerConfig = toml::from_str(&format!(
            "issuer = \"{ISS}\"\naudience = \"a\"\nrole_claim = \"r\"\nsubject_prefix = \"x:\"\n{file}\n[[map]]\nvalue = \"x\"\nrole = \"admin\"\nns = [\"*\", \"_audit\"]\n"
        ))
        .unwrap();
        assert!(ok.validate("own").is_ok());
        // No map at all, the vault's own issuer, twice the same issuer.
        let no_map: Result<IssuerConfig, _> = toml::from_str(&format!(
            "issuer = \"{ISS}\"\naudience = \"a\"\nrole_claim = \"r\"\n{file}\n"
        ));
        assert!(no_map.is_err());
        let mut empty = ok.clone();
        empty.map.clear();
        assert!(
            empty
                .validate("own")
                .unwrap_err()
                .to_string()
                .contains("[[issuers.map]]")
        );
        assert!(
            ok.validate(ISS)
                .unwrap_err()
                .to_string()
                .contains("vault's own issuer")
        );
        assert!(
            validate_all(&[ok.clone(), ok.clone()], "own")
                .unwrap_err()
                .to_string()
                .contains("configured twice")
        );
        // Unknown keys and roles are refused, at both levels.
        for text in [
            format!(
                "issuer = \"{ISS}\"\naudience = \"a\"\nrole_claim = \"r\"\n{file}\nbogus = 1\n[[map]]\nvalue = \"x\"\nrole = \"admin\"\nns = [\"*\"]\n"
            ),
            format!(
                "issuer = \"{ISS}\"\naudience = \"a\"\nrole_claim = \"r\"\n{file}\n[[map]]\nvalue = \"x\"\nrole = \"admin\"\nns = [\"*\"]\nwindow = 5\n"
            ),
            format!(
                "issuer = \"{ISS}\"\naudience = \"a\"\nrole_claim = \"r\"\n{file}\n[[map]]\nvalue = \"x\"\nrole = \"root\"\nns = [\"*\"]\n"
            ),
        ] {
            assert!(toml::from_str::<IssuerConfig>(&text).is_err(), "{text}");
        }
        // Loopback http is fine (local IdPs, tests).
        for u in [
            "http://127.0.0.1:9/jwks",
            "http://localhost/jwks",
            "http://[::1]:8/k",
            "https://idp/k",
        ] {
            assert!(check_jwks_url(u).is_ok(), "{u}");
        }
    }

    #[test]
    fn key_sets_take_the_algorithm_from_the_key_and_skip_unusable_keys() {
        let all = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];
        let (set, skipped) = parse_jwks(&jwks(), &all).unwrap();
        let algs: Vec<(Option<&str>, Algorithm)> =
            set.keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            algs,
            [
                (Some("rsa-1"), Algorithm::RS256),
                (Some("ec-1"), Algorithm::ES256),
                (Some("ed-1"), Algorithm::EdDSA)
            ]
        );
        assert!(skipped.is_empty());
        // Keys without `alg` get it from kty/crv; RFC 9864's "Ed25519" is EdDSA.
        let mut bare = jwk(&ec(), Algorithm::ES256, "e");
        bare.as_object_mut().unwrap().remove("alg");
        let mut ed25519 = jwk(&ed(1), Algorithm::EdDSA, "x");
        ed25519["alg"] = json!("Ed25519");
        let (set, _) = parse_jwks(
            json!({"keys": [bare, ed25519]}).to_string().as_bytes(),
            &all,
        )
        .unwrap();
        assert_eq!(set.keys[0].alg, Algorithm::ES256);
        assert_eq!(set.keys[1].alg, Algorithm::EdDSA);
        // Unusable keys are skipped, each with its reason.
        let small = EncodingKey::from_rsa_der(&STANDARD.decode(RSA_1024).unwrap());
        let mut liar = jwk(&ec(), Algorithm::ES256, "liar");
        liar["alg"] = json!("RS256");
        let mut enc = jwk(&rsa(), Algorithm::RS256, "enc");
        enc["use"] = json!("enc");
        let mut ops = jwk(&rsa(), Algorithm::RS256, "ops");
        ops["key_ops"] = json!(["encrypt"]);
        let mut p384 = jwk(&ec(), Algorithm::ES256, "p384");
        p384["crv"] = json!("P-384");
        let mut short = jwk(&ed(2), Algorithm::EdDSA, "short");
        short["x"] = json!("AAAA");
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            jwk(&small, Algorithm::RS256, "small"),
            liar, enc, ops, p384, short,
            {"kty": "RSA", "kid": "rs384", "alg": "RS384", "n": jwk(&rsa(), Algorithm::RS256, "")["n"], "e": "AQAB"},
            {"kty": "weird", "kid": "w"},
            jwk(&ed(3), Algorithm::EdDSA, "good"),
        ]});
        let (set, skipped) = parse_jwks(doc.to_string().as_bytes(), &all).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
        let text = skipped.join("\n");
        for needle in [
            "hmac): symmetric",
            "small): RSA key of 1024 bits",
            "liar): alg RS256 does not fit",
            "enc): not a signature key",
            "ops): not a verification key",
            "p384): curve P384 is not supported",
            "short): an Ed25519 key must be 32 bytes",
            "rs384): alg RS384",
            "(kid w)",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        // A key of an algorithm the issuer does not allow is skipped too.
        let (set, skipped) = parse_jwks(&jwks(), &[Algorithm::EdDSA]).unwrap();
        assert_eq!((set.keys.len(), skipped.len()), (1, 2));
        // Whole-set refusals: nothing usable, too many keys, too large, not JWKS.
        assert!(
            parse_jwks(br#"{"keys": []}"#, &all)
                .err()
                .unwrap()
                .contains("no usable key")
        );
        let many = json!({"keys": vec![jwk(&ed(4), Algorithm::EdDSA, "k"); 101]});
        assert!(
            parse_jwks(many.to_string().as_bytes(), &all)
                .err()
                .unwrap()
                .contains("101 keys")
        );
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert!(
            parse_jwks(&huge, &all)
                .err()
                .unwrap()
                .contains("larger than")
        );
        assert!(
            parse_jwks(b"[1]", &all)
                .err()
                .unwrap()
                .contains("not a JWKS")
        );
    }

    #[test]
    fn rs256_es256_and_eddsa_tokens_map_onto_claims() {
        let i = issuer();
        let c = claims(json!(["pipelines"]));
        for (key, alg, kid) in [
            (rsa(), Algorithm::RS256, "rsa-1"),
            (ec(), Algorithm::ES256, "ec-1"),
            (ed(7), Algorithm::EdDSA, "ed-1"),
        ] {
            let t = mint(&key, alg, Some(kid), &c);
            let got = i.verify(&t).unwrap();
            assert_eq!(got.iss, ISS);
            assert_eq!(got.aud, "tracevault");
            assert_eq!(got.sub, "ext:alice");
            assert_eq!(got.role, Role::Writer);
            assert_eq!(got.ns, ["prod"]);
            assert_eq!(
                (got.iat, got.exp),
                (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap())
            );
            assert_eq!((got.win_from, got.win_to), (None, None));
            // No jti in the token: derived from the token itself.
            let signed = t.rsplit_once('.').unwrap().0;
            let digest = hex::encode(sha2::Sha256::digest(signed.as_bytes()));
            assert_eq!(got.jti, format!("ext:{digest}"));
        }
        // The token's own jti is kept; `aud` may be a list; the prefix applies.
        let mut c2 = claims(json!("ops"));
        c2["jti"] = json!("abc-123");
        c2["aud"] = json!(["other", "tracevault"]);
        let i2 = issuer_with(&config("subject_prefix = \"idp:\""));
        let got = i2
            .verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c2))
            .unwrap();
        assert_eq!(
            (got.jti.as_str(), got.sub.as_str()),
            ("abc-123", "idp:alice")
        );
        assert_eq!((got.role, got.ns), (Role::Admin, vec!["*".to_string()]));
        // Another subject claim.
        let i3 = issuer_with(&config("subject_claim = \"email\""));
        let mut c3 = claims(json!("pipelines"));
        c3["email"] = json!("alice@example.com");
        c3.as_object_mut().unwrap().remove("sub");
        let got = i3
            .verify(&mint(&rsa(), Algorithm::RS256, Some("rsa-1"), &c3))
            .unwrap();
        assert_eq!(got.sub, "ext:alice@example.com");
        let mut c4 = c3.clone();
        c4.as_object_mut().unwrap().remove("email");
        let (s, _, m) = code(i3.verify(&mint(&rsa(), Algorithm::RS256, Some("rsa-1"), &c4)));
        assert_eq!(s, 401);
        assert!(m.contains("claim email"), "{m}");
    }

    /// An ECDSA signature (r, s) has a twin (r, n - s) that also verifies;
    /// re-encoding a revoked token that way must not give it a new jti.
    #[test]
    fn a_re_encoded_ecdsa_signature_keeps_the_derived_jti() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
        // Order of the P-256 group.
        const N: [u8; 32] = [
            0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2,
            0xfc, 0x63, 0x25, 0x51,
        ];
        let i = issuer();
        let t = mint(
            &ec(),
            Algorithm::ES256,
            Some("ec-1"),
            &claims(json!("pipelines")),
        );
        let (signed, sig) = t.rsplit_once('.').unwrap();
        let sig = B64URL.decode(sig).unwrap();
        let (r, s_bytes) = sig.split_at(32);
        // n - s, big-endian with borrow.
        let mut twin = [0u8; 32];
        let mut borrow = 0i16;
        for k in (0..32).rev() {
            let mut d = N[k] as i16 - s_bytes[k] as i16 - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            twin[k] = d as u8;
        }
        let t2 = format!("{signed}.{}", B64URL.encode([r, &twin[..]].concat()));
        assert_ne!(t, t2);
        let a = i.verify(&t).unwrap();
        // Whether or not the library accepts the twin, it never gets a fresh jti.
        if let Ok(b) = i.verify(&t2) {
            assert_eq!(a.jti, b.jti);
        }
    }

    #[test]
    fn forged_confused_and_out_of_date_tokens_are_refused() {
        let i = issuer();
        let good = claims(json!("pipelines"));
        let ok = mint(&rsa(), Algorithm::RS256, Some("rsa-1"), &good);
        assert!(i.verify(&ok).is_ok());
        let parts: Vec<&str> = ok.split('.').collect();
        let refuse = |t: &str, needle: &str| {
            let (s, c, m) = code(i.verify(t));
            assert_eq!((s, c), (401, "invalid_token"), "{m}");
            assert!(m.contains(needle), "{m} should mention {needle}");
        };
        // alg none (with and without a signature).
        let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-1"}"#);
        refuse(&format!("{none}.{}.", parts[1]), "malformed token header");
        refuse(
            &format!("{none}.{}.{}", parts[1], parts[2]),
            "malformed token header",
        );
        // HS256 keyed with the RSA public key (algorithm confusion).
        let n = jwk(&rsa(), Algorithm::RS256, "")["n"]
            .as_str()
            .unwrap()
            .to_string();
        let hs = mint(
            &EncodingKey::from_secret(n.as_bytes()),
            Algorithm::HS256,
            Some("rsa-1"),
            &good,
        );
        refuse(&hs, "never accepted");
        // The header's alg does not match the key of its kid.
        refuse(
            &mint(&ec(), Algorithm::ES256, Some("rsa-1"), &good),
            "does not match its key",
        );
        // Tampered payload, signature of another key under a known kid.
        let mut forged = good.clone();
        forged["groups"] = json!("ops");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged.to_string()),
            parts[2]
        );
        refuse(&tampered, "InvalidSignature");
        refuse(
            &mint(&ed(8), Algorithm::EdDSA, Some("ed-1"), &good),
            "InvalidSignature",
        );
        // Unknown kid; no kid with several keys.
        refuse(
            &mint(&ed(8), Algorithm::EdDSA, Some("ed-9"), &good),
            "not in the key set",
        );
        refuse(&mint(&ed(7), Algorithm::EdDSA, None, &good), "has no kid");
        // Wrong audience, wrong issuer (under the routed name), expiry, nbf.
        let with = |k: &str, v: Value| {
            let mut c = good.clone();
            c[k] = v;
            mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c)
        };
        refuse(&with("aud", json!("someone-else")), "InvalidAudience");
        refuse(&with("aud", json!(["a", "b"])), "InvalidAudience");
        refuse(
            &with("iss", json!("https://evil.example.com/")),
            "InvalidIssuer",
        );
        refuse(&with("exp", json!(now() - 120)), "ExpiredSignature");
        assert!(i.verify(&with("exp", json!(now() - 10))).is_ok(), "leeway");
        refuse(&with("nbf", json!(now() + 120)), "ImmatureSignature");
        assert!(i.verify(&with("nbf", json!(now() + 10))).is_ok(), "leeway");
        refuse(&with("iat", json!(now() + 120)), "iat is in the future");
        refuse(&with("jti", json!(42)), "claim jti");
        // One jti bound for accept and revoke: 128 bytes is accepted, 129 not.
        assert!(i.verify(&with("jti", json!("j".repeat(128)))).is_ok());
        refuse(&with("jti", json!("j".repeat(129))), "claim jti");
        refuse(&with("sub", json!("")), "claim sub");
        refuse(&with("sub", json!("x".repeat(300))), "longer than");
        for claim in ["exp", "sub", "aud", "iat"] {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove(claim);
            refuse(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c), claim);
        }
        // An issuer restricted to EdDSA refuses RS256 even with a listed key.
        let only_ed = issuer_with(&config("algorithms = [\"EdDSA\"]"));
        let (s, _, m) = code(only_ed.verify(&ok));
        assert_eq!(s, 401);
        assert!(m.contains("not accepted for issuer"), "{m}");
        // Without a key set, every token of the issuer is refused.
        let empty = Arc::new(Issuer::new(&config("")).unwrap());
        let (s, c, _) = code(empty.verify(&ok));
        assert_eq!((s, c), (401, "issuer_keys_unavailable"));
        // A set with one key accepts a token without kid.
        let single = Arc::new(Issuer::new(&config("")).unwrap());
        single
            .install(Ok(json!({"keys": [jwk(&ed(7), Algorithm::EdDSA, "only")]})
                .to_string()
                .into_bytes()))
            .unwrap();
        assert!(
            single
                .verify(&mint(&ed(7), Algorithm::EdDSA, None, &good))
                .is_ok()
        );
    }

    #[test]
    fn role_claim_forms_and_the_first_matching_entry() {
        let i = issuer();
        let role = |claims: Value| {
            i.verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &claims))
                .map(|c| (c.role, c.ns))
        };
        assert_eq!(role(claims(json!("pipelines"))).unwrap().0, Role::Writer);
        // Arrays: non-strings ignored; the first entry in file order wins,
        // whatever the order in the token.
        let (r, ns) = role(claims(json!([1, "ops", {"x": 1}, "auditors"]))).unwrap();
        assert_eq!(
            (r, ns),
            (Role::Reader, vec!["prod".into(), "staging".into()])
        );
        assert_eq!(
            role(claims(json!(["ops", "pipelines"]))).unwrap().0,
            Role::Writer
        );
        // Unmapped values, a missing claim, or another type: 403.
        for groups in [
            json!(["nobody", "Auditors"]),
            Value::Null,
            json!(5),
            json!({"a": "ops"}),
        ] {
            let r = role(claims(groups.clone()));
            let (s, c, m) = match r.unwrap_err() {
                Rejection::Forbidden { code, message } => (403, code, message),
                other => panic!("{other:?}"),
            };
            assert_eq!((s, c), (403, "no_role_mapping"), "{groups} {m}");
        }
        // A claim named by a URL (dots in its name) and a nested path.
        let by_url = issuer_with(&IssuerConfig {
            role_claim: "https://tracevault.example/roles".into(),
            ..config("")
        });
        let mut c = claims(Value::Null);
        c["https://tracevault.example/roles"] = json!(["ops"]);
        assert!(
            by_url
                .verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c))
                .is_ok()
        );
        let nested = issuer_with(&IssuerConfig {
            role_claim: "realm_access.roles".into(),
            ..config("")
        });
        let mut c = claims(Value::Null);
        c["realm_access"] = json!({"roles": ["offline", "pipelines"]});
        let got = nested
            .verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c))
            .unwrap();
        assert_eq!(got.role, Role::Writer);
        assert_eq!(got.person, None);
        // An identity claim: normalized, and required once configured.
        let with_id = issuer_with(&IssuerConfig {
            identity_claim: Some("email".into()),
            ..config("")
        });
        let mut c = claims(json!(["pipelines"]));
        c["email"] = json!(" Alice@Example.COM ");
        let got = with_id
            .verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c))
            .unwrap();
        assert_eq!(got.person.as_deref(), Some("alice@example.com"));
        let c = claims(json!(["pipelines"]));
        assert!(
            with_id
                .verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c))
                .is_err()
        );
    }

    #[test]
    fn readers_always_get_a_window() {
        let i = issuer();
        let at = Utc::now();
        let map = |groups: &str, extra: Value| {
            let mut c = claims(json!(groups));
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            let t = mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &c);
            i.map_claims(&t, c.as_object().unwrap(), at)
        };
        let ts =
            |s: i64| tracevault_schemas::format_timestamp(&(at - chrono::Duration::seconds(s)));
        // window_s: the last hour.
        let c = map("auditors", json!({})).unwrap();
        assert_eq!((c.win_from, c.win_to), (Some(ts(3600)), None));
        // The token's window narrows it, never widens it.
        let c = map("auditors", json!({"win_from": ts(7200), "win_to": ts(60)})).unwrap();
        assert_eq!((c.win_from, c.win_to), (Some(ts(3600)), Some(ts(60))));
        let c = map("auditors", json!({"win_from": ts(600)})).unwrap();
        assert_eq!(c.win_from, Some(ts(600)));
        // No window_s: the token must carry win_from (text or Unix seconds).
        let c = map("analysts", json!({"win_from": "2026-01-02T03:04:05Z"})).unwrap();
        assert_eq!(c.win_from.as_deref(), Some("2026-01-02T03:04:05.000000Z"));
        let c = map(
            "analysts",
            json!({"win_from": 1767225600, "win_to": 1767312000}),
        )
        .unwrap();
        assert_eq!(
            (c.win_from.as_deref(), c.win_to.as_deref()),
            (
                Some("2026-01-01T00:00:00.000000Z"),
                Some("2026-01-02T00:00:00.000000Z")
            )
        );
        for extra in [json!({}), json!({"win_to": ts(0)})] {
            match map("analysts", extra).unwrap_err() {
                Rejection::Forbidden { code, .. } => assert_eq!(code, "no_window"),
                other => panic!("{other:?}"),
            }
        }
        for bad in [json!("yesterday"), json!(-5), json!(true)] {
            assert!(matches!(
                map("analysts", json!({"win_from": bad})),
                Err(Rejection::Unauthorized {
                    code: "invalid_token",
                    ..
                })
            ));
        }
        // Other roles get no window, whatever the token says.
        let c = map("pipelines", json!({"win_from": ts(5)})).unwrap();
        assert_eq!((c.win_from, c.win_to), (None, None));
    }

    #[tokio::test]
    async fn routing_is_by_iss_only_and_files_reload_on_unknown_kid() {
        let dir = std::env::temp_dir().join(format!("tv-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks()).unwrap();
        let mut cfg = config("min_refresh_interval_s = 1\nrefresh_s = 3600");
        cfg.jwks_file = Some(path.clone());
        let ext = ExternalIssuers::start(std::slice::from_ref(&cfg), "own")
            .await
            .unwrap();
        assert_eq!(ext.key_counts(), [(ISS.to_string(), Some(3))]);
        let good = claims(json!("pipelines"));
        assert!(
            ext.verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &good))
                .unwrap()
                .is_ok()
        );
        // Other issuers, or no readable iss: not ours to judge.
        let mut other = good.clone();
        other["iss"] = json!("tracevault/0123");
        assert!(
            ext.verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &other))
                .is_none()
        );
        other["iss"] = json!([ISS]);
        assert!(
            ext.verify(&mint(&ed(7), Algorithm::EdDSA, Some("ed-1"), &other))
                .is_none()
        );
        assert!(ext.verify("garbage").is_none());
        assert!(ExternalIssuers::default().verify("a.b.c").is_none());
        // A new key appears in the file: the unknown kid reloads it.
        let rotated = ed(9);
        let mut doc: Value = serde_json::from_slice(&jwks()).unwrap();
        doc["keys"]
            .as_array_mut()
            .unwrap()
            .push(jwk(&rotated, Algorithm::EdDSA, "ed-2"));
        std::fs::write(&path, doc.to_string()).unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t = mint(&rotated, Algorithm::EdDSA, Some("ed-2"), &good);
        assert!(ext.verify(&t).unwrap().is_ok());
        // A broken file keeps the last good set; reloads are rate limited.
        std::fs::write(&path, "{").unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let unknown = mint(&ed(10), Algorithm::EdDSA, Some("ed-3"), &good);
        assert!(ext.verify(&unknown).unwrap().is_err());
        assert_eq!(ext.key_counts()[0].1, Some(4));
        assert!(ext.verify(&t).unwrap().is_ok());
        // At start-up, a broken file is an error.
        assert!(
            ExternalIssuers::start(std::slice::from_ref(&cfg), "own")
                .await
                .err()
                .unwrap()
                .to_string()
                .contains("not a JWKS")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
