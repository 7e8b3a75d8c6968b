//! `tracevault serve`: the flags over the config file, then
//! [`Server::start`]; on SIGINT/SIGTERM the server stops accepting,
//! flushes, checkpoints and the process exits 0.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tracevault_server::Server;
use tracevault_server::config::ServerConfig;

use crate::ServeArgs;

/// SIGINT or SIGTERM. The handlers are installed when this is called (not
/// when the future is first polled), so call it before announcing the
/// address: a signal sent right after "listening on" then shuts down
/// gracefully instead of killing the process.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(term) => {},
            _ = wait(int) => {},
        }
        tracing::info!("shutdown requested: no new requests; flushing");
    }
}

pub(crate) fn init_logs() {
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
}

/// The config file with the flags applied over it.
fn config(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut cfg = match &args.config {
        Some(p) => ServerConfig::load(p)?,
        None => ServerConfig::default(),
    };
    cfg.data = args.data.or(cfg.data);
    cfg.listen = args.listen.or(cfg.listen);
    cfg.store = args.store.or(cfg.store);
    // The flags replace the file's TLS pair (clap makes them go together).
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        cfg.server.tls_cert = Some(cert);
        cfg.server.tls_key = Some(key);
    }
    cfg.server.insecure_http |= args.insecure_http;
    Ok(cfg)
}

/// Runs the server until a shutdown signal.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logs();
    let cfg = config(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = Server::start(cfg).await?;
        let stop = shutdown_signal();
        let vault = server.vault();
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
        println!("admin token: {}", server.admin_token_path().display());
        println!("listening on {}", server.url());
        server.serve(stop).await;
        Ok(())
    })
}
