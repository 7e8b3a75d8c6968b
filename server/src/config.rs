//! The server's configuration: the TOML config file (`--config`), one
//! struct per section. Every key is documented in docs/configuration.md.
//! The binary's flags override the top-level keys before the start.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracevault_vault::LogConfig;

use crate::{Limits, StartError};

/// Where a server keeps its data when neither the flag nor the file says.
pub const DEFAULT_DATA_DIR: &str = "tracevault-data";
/// Where a server listens when neither the flag nor the file says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Data directory (default [`DEFAULT_DATA_DIR`]).
    pub data: Option<PathBuf>,
    /// Listen address (default [`DEFAULT_LISTEN`]).
    pub listen: Option<String>,
    /// Store URL (default: the local store in the data directory).
    pub store: Option<String>,
    /// Origin of a new vault (default `tracevault.local/<vault id>`).
    pub origin: Option<String>,
    /// Lifetime of the bootstrap admin token written to `<data>/admin.token` (seconds).
    pub admin_token_ttl_s: Option<i64>,
    /// Serve `/metrics` without a token (default true); false requires an
    /// admin token (the metrics name every namespace this server writes).
    pub metrics_public: Option<bool>,
    /// Serve checkpoints and hash tiles (`GET /v1/logs/{ns}/checkpoint`,
    /// `/tile/...`) without a token (default false), so that witnesses and
    /// monitors can follow the log. They reveal namespace names, sizes and
    /// growth over time, and salted leaf hashes (docs/configuration.md).
    pub public_log: Option<bool>,
    /// Masking policy file (docs/masking.md); default: the built-in strict policy.
    pub masking_policy: Option<PathBuf>,
    /// SQL query bounds.
    pub query: crate::read::QueryConfig,
    /// The export approval workflow.
    pub exports: tracevault_query::export::workflow::ExportPolicy,
    /// The erasure approval workflow (`[erasure]`, docs/erasure.md).
    pub erasure: tracevault_vault::erasure::ErasurePolicy,
    /// Payload retention per namespace (`[retention]`, docs/erasure.md).
    pub retention: crate::erasures::retention::RetentionConfig,
    /// Log tunables.
    pub log: LogConfig,
    /// Request limits.
    pub limits: Limits,
    /// External token issuers (`[[issuers]]`, docs/auth.md).
    pub issuers: Vec<crate::external::IssuerConfig>,
    /// The listener: TLS, connection cap and timeouts (`[server]`).
    pub server: crate::listener::ListenerConfig,
    /// Several nodes on one store (`[cluster]`, docs/configuration.md).
    pub cluster: ClusterConfig,
    /// Witnesses that cosign every namespace's checkpoints (`[witnesses]`,
    /// docs/witness.md).
    pub witnesses: crate::witnessing::WitnessesConfig,
}

impl ServerConfig {
    /// Reads and parses a config file and checks it ([`ServerConfig::check`]);
    /// unknown keys are errors.
    pub fn load(path: &Path) -> Result<ServerConfig, StartError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartError(format!("reading config {}: {e}", path.display())))?;
        let cfg: ServerConfig = toml::from_str(&text)
            .map_err(|e| StartError(format!("parsing config {}: {e}", path.display())))?;
        cfg.check()
            .map_err(|e| StartError(format!("config {}: {}", path.display(), e.0)))?;
        Ok(cfg)
    }

    /// Refuses combinations that could never work (limits against log
    /// tunables, external issuers without a subject prefix, ...).
    pub fn check(&self) -> Result<(), StartError> {
        self.limits.check(&self.log).map_err(StartError)?;
        // A query or export names its SQL in a body the body guard bounds.
        if self.limits.max_request_body_bytes < self.query.max_sql_bytes.saturating_add(16 << 10) {
            return Err(StartError(format!(
                "[limits] max_request_body_bytes = {} must leave room for [query] max_sql_bytes = {} (and 16 KiB more)",
                self.limits.max_request_body_bytes, self.query.max_sql_bytes
            )));
        }
        self.witnesses.policy().map_err(StartError)?;
        self.erasure.check().map_err(StartError)?;
        self.retention.check().map_err(StartError)?;
        crate::external::validate_all(&self.issuers, "").map_err(|e| StartError(e.to_string()))
    }

    /// The data directory to use.
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The address to listen on.
    pub fn listen_addr(&self) -> String {
        self.listen.clone().unwrap_or_else(|| DEFAULT_LISTEN.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracevault_vault::segment::SegmentCompression;

    #[test]
    fn parses_every_section_and_rejects_unknown_keys() {
        let c: ServerConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[log]\nflush_interval_ms = 100\n[limits]\nmax_events_per_request = 5\n",
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(c.log.flush_interval_ms, 100);
        assert_eq!(c.limits.max_events_per_request, 5);
        assert!(toml::from_str::<ServerConfig>("lisen = 1").is_err());
        assert!(toml::from_str::<ServerConfig>("[log]\nflush = 1").is_err());
        // The segment codec: the three names, nothing else.
        for (text, want) in [
            ("zstd", SegmentCompression::Zstd),
            ("lz4", SegmentCompression::Lz4),
            ("none", SegmentCompression::None),
        ] {
            let c: ServerConfig =
                toml::from_str(&format!("[log]\nsegment_compression = \"{text}\"\n")).unwrap();
            assert_eq!(c.log.segment_compression, want);
        }
        assert_eq!(
            ServerConfig::default().log.segment_compression,
            SegmentCompression::Zstd
        );
        for bad in ["\"snappy\"", "\"LZ4\"", "\"uncompressed\"", "1"] {
            let e =
                toml::from_str::<ServerConfig>(&format!("[log]\nsegment_compression = {bad}\n"))
                    .unwrap_err()
                    .to_string();
            assert!(e.contains("segment_compression"), "{bad}: {e}");
        }
        // Combinations that could never work are refused.
        let bad: ServerConfig = toml::from_str(
            "[log]\nmax_unpublished_events = 100\n[limits]\nmax_events_per_request = 500\n",
        )
        .unwrap();
        assert!(
            bad.limits
                .check(&bad.log)
                .unwrap_err()
                .contains("max_events_per_request")
        );
        // The write deadline bounds uploads only, so it may be shorter than
        // a checkpoint wait.
        let short: ServerConfig = toml::from_str("[limits]\nwrite_timeout_s = 5\n").unwrap();
        assert!(short.limits.check(&short.log).is_ok());
        let ok = ServerConfig::default();
        assert!(ok.limits.check(&ok.log).is_ok());
    }

    #[test]
    fn a_witness_policy_that_could_never_be_met_is_refused() {
        let key = tracevault_vault::cosignature::Cosigner::of(
            "w.example/1",
            &ed25519_dalek::SigningKey::from_bytes(&[5; 32]),
        )
        .verifier_key();
        let with = |extra: &str| {
            toml::from_str::<ServerConfig>(&format!(
                "[witnesses]\n{extra}\n[[witnesses.witness]]\nurl = \"http://127.0.0.1:1/witness\"\nkey = \"{key}\"\n"
            ))
            .unwrap()
        };
        assert!(with("").check().is_ok());
        assert!(with("threshold = 1").check().is_ok());
        assert!(with("threshold = 2").check().is_err());
        assert!(with("threshold = 0").check().is_err());
        let none: ServerConfig = toml::from_str("[witnesses]\nthreshold = 1\n").unwrap();
        assert!(none.check().is_err());
        // A log key is not a witness key.
        let log_key = tracevault_vault::note::verifier_key("w.example/1", &[7; 32]);
        let bad: ServerConfig = toml::from_str(&format!(
            "[[witnesses.witness]]\nurl = \"http://x/witness\"\nkey = \"{log_key}\"\n"
        ))
        .unwrap();
        assert!(bad.check().is_err());
        assert!(toml::from_str::<ServerConfig>("[witnesses]\nthreshhold = 1\n").is_err());
    }

    #[test]
    fn parses_external_issuers() {
        let c: ServerConfig = toml::from_str(
            r#"
[[issuers]]
issuer = "https://idp.example.com/"
audience = "tracevault"
jwks_url = "https://idp.example.com/jwks.json"
role_claim = "groups"
subject_prefix = "idp:"
map = [
  { value = "auditors", role = "reader", ns = ["prod", "staging"], window_s = 604800 },
  { value = "approvers", role = "approver", ns = ["prod"] },
]

[[issuers]]
issuer = "https://login.example.org"
audience = "api://tracevault"
jwks_file = "/etc/tracevault/idp-jwks.json"
algorithms = ["EdDSA"]
role_claim = "realm_access.roles"
subject_claim = "email"
subject_prefix = "corp:"
[[issuers.map]]
value = "ingest"
role = "writer"
ns = ["prod"]
"#,
        )
        .unwrap();
        assert_eq!(c.issuers.len(), 2);
        assert_eq!(c.issuers[0].map.len(), 2);
        assert_eq!(c.issuers[1].map[0].value, "ingest");
        assert!(crate::external::validate_all(&c.issuers, "own").is_ok());
        // An issuer without a subject prefix is refused.
        let mut no_prefix = c.issuers.clone();
        no_prefix[0].subject_prefix.clear();
        assert!(crate::external::validate_all(&no_prefix, "own").is_err());
        assert!(
            toml::from_str::<ServerConfig>("[[issuers]]\nissuer = \"x\"\nbogus = 1\n").is_err()
        );
    }
}

/// `[cluster]`: servers sharing one store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Several nodes on one store: acknowledge an append only once it is in
    /// the store (sets `[log] ack_after_publish`), so that losing a node,
    /// disk included, loses no acknowledged event.
    pub enabled: bool,
    /// How often (ms) a server applies what other servers recorded in the
    /// store's `_audit`: token revocations, export and erasure steps (0:
    /// never; a single server needs none, it applies its own at once).
    pub follow_audit_ms: u64,
    /// The URL other nodes and clients reach this server at, shown in
    /// `GET /v1/cluster`.
    pub advertise: Option<String>,
    /// How often (ms) the server rewrites its registration in the store
    /// (`cluster/nodes/{instance}`); 0: it does not register.
    pub heartbeat_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            follow_audit_ms: 2000,
            advertise: None,
            heartbeat_ms: 2000,
        }
    }
}
