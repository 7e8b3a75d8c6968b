//! Starting a server: everything that can refuse to start (a bad
//! certificate, an address in use, a vault whose key does not match, an
//! unreadable revocation list, a bad masking policy) happens in
//! [`Server::start`], before the first request is accepted; then
//! [`Server::serve`] runs until the shutdown future completes, and flushes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracevault_vault::token::{Role, TokenIssuer};
use tracevault_vault::{Store, Vault, VaultOptions};

use crate::config::ServerConfig;
use crate::external::ExternalIssuers;
use crate::listener::{BoundListener, Listener};
use crate::{AppState, StartError, exports, read, router_with};

/// Default lifetime of the bootstrap admin token: 30 days.
const ADMIN_TTL_S: i64 = 30 * 24 * 3600;

/// How long a graceful shutdown waits for the logs to publish.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(60);

/// A started server: bound, its vault open, its router built.
pub struct Server {
    bound: BoundListener,
    vault: Vault,
    state: AppState,
    app: axum::Router,
    admin_token: PathBuf,
}

fn failed(what: &str) -> impl FnOnce(String) -> StartError + '_ {
    move |e| StartError(format!("{what}: {e}"))
}

impl Server {
    /// Binds the listener, opens (or creates) the vault, loads tokens,
    /// revocations, issuers, the masking policy and the export history,
    /// writes the bootstrap admin token, and builds the router.
    pub async fn start(cfg: ServerConfig) -> Result<Server, StartError> {
        let data = cfg.data_dir();
        // A bad certificate or key, an address in use, or plain HTTP beyond
        // loopback (refused unless insecure_http) stops the start before
        // the vault is opened or created.
        let listener = Listener::new(cfg.server.clone()).map_err(|e| StartError(e.to_string()))?;
        let bound = listener
            .bind(&cfg.listen_addr())
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let store = match &cfg.store {
            Some(u) => Some(Store::from_url(u).map_err(|e| StartError(e.to_string()))?),
            None => None,
        };
        let vault = Vault::open(VaultOptions {
            data_dir: data.clone(),
            store,
            origin: cfg.origin.clone(),
            log: tracevault_vault::LogConfig {
                ack_after_publish: cfg.log.ack_after_publish || cfg.cluster.enabled,
                ..cfg.log.clone()
            },
        })
        .await
        .map_err(|e| StartError(format!("opening the vault in {}: {e}", data.display())))?;
        let tokens = Arc::new(
            TokenIssuer::load(&data)
                .map_err(|e| failed("loading the token keys")(e.to_string()))?,
        );
        let mut state = AppState::new(vault.clone(), tokens.clone(), cfg.limits.clone());
        state.metrics_public = cfg.metrics_public.unwrap_or(true);
        state.public_log = cfg.public_log.unwrap_or(false);
        // Fail closed: a server that cannot read its revocations does not start.
        let revoked = state
            .load_revocations()
            .await
            .map_err(|e| failed("reading token revocations from _audit")(e.to_string()))?;
        tracing::info!(revoked, "token revocations loaded from _audit");
        let admin_token = ensure_admin_token(
            &tokens,
            &data,
            cfg.admin_token_ttl_s.unwrap_or(ADMIN_TTL_S),
            |jti| state.is_revoked(jti),
        )?;
        // External issuers: invalid entries or an unreadable jwks_file stop
        // the start; an unreachable jwks_url only refuses that issuer's tokens.
        if !cfg.issuers.is_empty() {
            let external = ExternalIssuers::start(&cfg.issuers, tokens.issuer())
                .await
                .map_err(|e| failed("external token issuers")(e.to_string()))?;
            state.set_external_issuers(Arc::new(external));
        }
        state.witnessing = crate::witnessing::Witnessing::new(&cfg.witnesses)
            .map_err(|e| failed("[witnesses]")(e))?;
        if let Some(w) = &state.witnessing {
            w.spawn(vault.clone(), state.stopping());
        }
        let read_ctx = Arc::new(read::ReadContext::load(
            &data,
            cfg.masking_policy.as_deref(),
            cfg.query.clone(),
            vault.store().describe(),
        )?);
        let (log_key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/log.key"))
            .map_err(|e| failed("loading the log key")(e.to_string()))?;
        let exports =
            Arc::new(exports::ExportContext::load(&vault, cfg.exports, log_key.clone()).await?);
        // Expiries are recorded within a quarter of the shortest window
        // (between 1 s and 60 s after they happen).
        let p = cfg.exports;
        let every = (p.request_ttl_s.min(p.download_window_s) / 4).clamp(1, 60) as u64;
        exports::spawn_expiry_recorder(state.clone(), exports.clone(), Duration::from_secs(every));
        let erasures = Arc::new(
            crate::erasures::ErasureContext::load(&vault, cfg.erasure, cfg.retention.clone())
                .await?,
        );
        // Approved orders not yet performed (a restart mid-way) are resumed
        // at once; due orders and retention are looked at every 30 s (or
        // every retention interval, if shorter).
        let every = cfg.retention.check_interval_s.clamp(1, 30);
        crate::erasures::spawn_runner(state.clone(), erasures.clone(), Duration::from_secs(every));
        if cfg.cluster.follow_audit_ms > 0 {
            crate::follow::spawn(
                state.clone(),
                exports.clone(),
                erasures.clone(),
                Duration::from_millis(cfg.cluster.follow_audit_ms),
            );
        }
        if cfg.cluster.heartbeat_ms > 0 {
            crate::cluster::spawn_heartbeat(
                state.clone(),
                log_key.clone(),
                cfg.cluster.advertise.clone(),
                Duration::from_millis(cfg.cluster.heartbeat_ms),
            );
        }
        crate::cluster::peer::mark_started();
        let app = router_with(
            state.clone(),
            read::routes()
                .merge(exports::routes())
                .merge(crate::erasures::routes())
                .merge(crate::cluster::routes())
                .merge(crate::audit::routes()),
        )
        .layer(axum::Extension(read_ctx))
        .layer(axum::Extension(exports))
        .layer(axum::Extension(erasures));
        Ok(Server {
            bound,
            vault,
            state,
            app,
            admin_token,
        })
    }

    /// The base URL (`http://ADDR` or `https://ADDR`).
    pub fn url(&self) -> String {
        self.bound.url()
    }

    /// The vault served.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Where the bootstrap admin token was written.
    pub fn admin_token_path(&self) -> &Path {
        &self.admin_token
    }

    /// The router, for driving handlers in-process (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> axum::Router {
        self.app.clone()
    }

    /// Serves until `shutdown` completes: then stops accepting, ends session
    /// streams, lets requests in flight finish, and publishes every log
    /// (releasing the leases).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stopping = self.state.clone();
        self.bound
            .serve(self.app, async move {
                shutdown.await;
                stopping.begin_shutdown();
            })
            .await;
        // Requests are done; what the server records about itself at
        // shutdown goes into `_audit` before its logs close.
        self.state.begin_shutdown();
        self.state.finish_recording(Duration::from_secs(5)).await;
        self.vault.shutdown(SHUTDOWN_FLUSH).await;
        tracing::info!("stopped cleanly");
    }
}

/// Writes `<data>/admin.token` unless a valid one is already there: one that
/// verifies, is an admin's and has not been revoked (a revoked bootstrap token
/// is replaced, so the operator is never locked out by revoking it).
fn ensure_admin_token(
    tokens: &TokenIssuer,
    data: &Path,
    ttl: i64,
    revoked: impl Fn(&str) -> bool,
) -> Result<PathBuf, StartError> {
    let path = data.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && tokens
            .verify(existing.trim())
            .is_ok_and(|c| c.role == Role::Admin && !revoked(&c.jti))
    {
        return Ok(path);
    }
    let (jwt, _) = tokens
        .issue(
            Role::Admin,
            vec!["*".into()],
            "bootstrap-admin",
            ttl,
            (None, None),
        )
        .map_err(|e| failed("issuing the bootstrap admin token")(e.to_string()))?;
    tracevault_vault::keys::write_secret_file(&path, format!("{jwt}\n").as_bytes())
        .map_err(|e| failed("writing the bootstrap admin token")(e.to_string()))?;
    Ok(path)
}
