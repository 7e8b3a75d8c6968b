//! The TOML config file (`--config`). Every key is documented in
//! docs/configuration.md. Flags and environment variables override it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use tracevault_server::Limits;
use tracevault_vault::LogConfig;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data: Option<PathBuf>,
    /// Listen address.
    pub listen: Option<String>,
    /// Store URL.
    pub store: Option<String>,
    /// Origin of a new vault (default `tracevault.local/<vault id>`).
    pub origin: Option<String>,
    /// Lifetime of the bootstrap admin token written to `<data>/admin.token` (seconds).
    pub admin_token_ttl_s: Option<i64>,
    /// Serve `/metrics` without a token (default true); false requires an
    /// admin token (the metrics name every namespace this server writes).
    pub metrics_public: Option<bool>,
    /// Masking policy file (docs/masking.md); default: the built-in strict policy.
    pub masking_policy: Option<PathBuf>,
    /// SQL query bounds.
    pub query: tracevault_server::read::QueryConfig,
    /// The export approval workflow.
    pub exports: tracevault_query::export::workflow::ExportPolicy,
    /// Log tunables.
    pub log: LogConfig,
    /// Request limits.
    pub limits: Limits,
    /// External token issuers (`[[issuers]]`, docs/auth.md).
    pub issuers: Vec<tracevault_server::external::IssuerConfig>,
    /// The listener: TLS, connection cap and timeouts (`[server]`).
    pub server: tracevault_server::listener::ListenerConfig,
}

impl FileConfig {
    /// Reads and parses a config file; unknown keys are errors.
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_section_and_rejects_unknown_keys() {
        let c: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\n[log]\nflush_interval_ms = 100\n[limits]\nmax_events_per_request = 5\n",
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(c.log.flush_interval_ms, 100);
        assert_eq!(c.limits.max_events_per_request, 5);
        assert!(toml::from_str::<FileConfig>("lisen = 1").is_err());
        assert!(toml::from_str::<FileConfig>("[log]\nflush = 1").is_err());
        // Combinations that could never work are refused.
        let bad: FileConfig = toml::from_str(
            "[log]\nmax_unpublished_events = 100\n[limits]\nmax_events_per_request = 500\n",
        )
        .unwrap();
        assert!(
            bad.limits
                .check(&bad.log)
                .unwrap_err()
                .contains("max_events_per_request")
        );
        let bad: FileConfig = toml::from_str("[limits]\nwrite_timeout_s = 5\n").unwrap();
        assert!(
            bad.limits
                .check(&bad.log)
                .unwrap_err()
                .contains("write_timeout_s")
        );
        let ok = FileConfig::default();
        assert!(ok.limits.check(&ok.log).is_ok());
    }

    #[test]
    fn parses_external_issuers() {
        let c: FileConfig = toml::from_str(
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
        assert!(tracevault_server::external::validate_all(&c.issuers, "own").is_ok());
        // An issuer without a subject prefix is refused.
        let mut no_prefix = c.issuers.clone();
        no_prefix[0].subject_prefix.clear();
        assert!(tracevault_server::external::validate_all(&no_prefix, "own").is_err());
        assert!(toml::from_str::<FileConfig>("[[issuers]]\nissuer = \"x\"\nbogus = 1\n").is_err());
    }
}
