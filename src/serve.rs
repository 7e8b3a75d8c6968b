//! `tracevault serve`: open the vault, mint the bootstrap admin token, serve
//! HTTP, and on SIGINT/SIGTERM stop accepting, flush, checkpoint and exit 0.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tracevault_server::external::ExternalIssuers;
use tracevault_server::{AppState, router_with};
use tracevault_vault::token::{Role, TokenIssuer};
use tracevault_vault::{Store, Vault, VaultOptions};

use crate::ServeArgs;
use crate::config::FileConfig;
use tracevault_server::{exports, read};

/// Default lifetime of the bootstrap admin token: 30 days.
const ADMIN_TTL_S: i64 = 30 * 24 * 3600;

/// Writes `<data>/admin.token` unless a valid one is already there: one that
/// verifies, is an admin's and has not been revoked (a revoked bootstrap token
/// is replaced, so the operator is never locked out by revoking it).
fn ensure_admin_token(
    tokens: &TokenIssuer,
    data: &std::path::Path,
    ttl: i64,
    revoked: impl Fn(&str) -> bool,
) -> anyhow::Result<PathBuf> {
    let path = data.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && tokens
            .verify(existing.trim())
            .is_ok_and(|c| c.role == Role::Admin && !revoked(&c.jti))
    {
        return Ok(path);
    }
    let (jwt, _) = tokens.issue(
        Role::Admin,
        vec!["*".into()],
        "bootstrap-admin",
        ttl,
        (None, None),
    )?;
    tracevault_vault::keys::write_secret_file(&path, format!("{jwt}\n").as_bytes())?;
    Ok(path)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: no new requests; flushing");
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // One JSON object per line (with the request span and its id) for log
    // shippers; human-readable text otherwise.
    if std::env::var("TRACEVAULT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    let file = match &args.config {
        Some(p) => {
            let f = FileConfig::load(p)?;
            f.limits
                .check(&f.log)
                .map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))?;
            tracevault_server::external::validate_all(&f.issuers, "")
                .map_err(|e| anyhow::anyhow!("config {}: {e}", p.display()))?;
            f
        }
        None => FileConfig::default(),
    };
    let data = args
        .data
        .or(file.data.clone())
        .unwrap_or_else(|| PathBuf::from("tracevault-data"));
    let listen = args
        .listen
        .or(file.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8470".into());
    let store_url = args.store.or(file.store.clone());
    // The flags replace the file's TLS pair (clap makes them go together).
    let mut server = file.server.clone();
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        server.tls_cert = Some(cert);
        server.tls_key = Some(key);
    }
    server.insecure_http |= args.insecure_http;
    // A bad certificate or key stops the start before the vault is opened.
    let listener = tracevault_server::listener::Listener::new(server)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Bound first, so that an address in use or plain HTTP beyond
        // loopback (refused unless --insecure-http) stops the start before
        // the vault is opened or created.
        let listener = listener.bind(&listen).await?;
        let store = match &store_url {
            Some(u) => Some(Store::from_url(u)?),
            None => None,
        };
        let vault = Vault::open(VaultOptions {
            data_dir: data.clone(),
            store,
            origin: file.origin.clone(),
            log: file.log.clone(),
        })
        .await
        .with_context(|| format!("opening the vault in {}", data.display()))?;
        let tokens = Arc::new(TokenIssuer::load(&data)?);
        // Everything that can refuse to start happens before "listening on".
        let mut state = AppState::new(vault.clone(), tokens.clone(), file.limits.clone());
        state.metrics_public = file.metrics_public.unwrap_or(true);
        // Fail closed: a server that cannot read its revocations does not start.
        let revoked = state
            .load_revocations()
            .await
            .map_err(|e| anyhow::anyhow!("reading token revocations from _audit: {e}"))?;
        tracing::info!(revoked, "token revocations loaded from _audit");
        let admin = ensure_admin_token(
            &tokens,
            &data,
            file.admin_token_ttl_s.unwrap_or(ADMIN_TTL_S),
            |jti| state.is_revoked(jti),
        )?;
        // External issuers: invalid entries or an unreadable jwks_file stop
        // the start; an unreachable jwks_url only refuses that issuer's tokens.
        if !file.issuers.is_empty() {
            // The `iss` of the vault's own tokens, which no external issuer may take.
            let (_, own) =
                state
                    .tokens
                    .issue(Role::Admin, vec!["*".into()], "probe", 1, (None, None))?;
            let external = ExternalIssuers::start(&file.issuers, &own.iss)
                .await
                .map_err(|e| anyhow::anyhow!("external token issuers: {e}"))?;
            state.set_external_issuers(Arc::new(external));
        }
        let stopping = state.clone();
        let read_ctx = Arc::new(read::ReadContext::load(
            &data,
            file.masking_policy.as_deref(),
            file.query.clone(),
            vault.store().describe(),
        )?);
        let (log_key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/log.key"))?;
        let exports = Arc::new(exports::ExportContext::load(&vault, file.exports, log_key).await?);
        println!(
            "tracevault {} serving {}",
            env!("CARGO_PKG_VERSION"),
            vault.store().describe()
        );
        println!(
            "log public key: {}",
            B64.encode(vault.public_key().to_bytes())
        );
        println!("vault origin: {}", vault.meta().origin);
        println!("admin token: {}", admin.display());
        println!("listening on {}", listener.url());
        // Expiries are recorded within a quarter of the shortest window
        // (between 1 s and 60 s after they happen).
        let p = file.exports;
        let every = (p.request_ttl_s.min(p.download_window_s) / 4).clamp(1, 60) as u64;
        exports::spawn_expiry_recorder(state.clone(), exports.clone(), Duration::from_secs(every));
        let app = router_with(state, read::routes().merge(exports::routes()))
            .layer(axum::Extension(read_ctx))
            .layer(axum::Extension(exports));
        // On SIGINT/SIGTERM: stop accepting, end session streams, let
        // requests in flight finish, then flush below.
        listener
            .serve(app, async move {
                shutdown_signal().await;
                stopping.begin_shutdown();
            })
            .await;
        vault.shutdown(Duration::from_secs(60)).await;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}
