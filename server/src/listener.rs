//! The HTTP listener: an accept loop over hyper's HTTP/1.1 server that holds
//! up against hostile connections, with optional TLS (rustls).
//!
//! `axum::serve` accepts every connection and waits for request headers for
//! as long as the client likes, so a few thousand slow-header (slowloris)
//! connections exhaust file descriptors and memory without ever sending a
//! token. This listener bounds what an unauthenticated peer can hold:
//!
//! - **A connection cap** (`max_connections`). At the cap the loop stops
//!   calling `accept`: further connections wait in the kernel's accept queue
//!   (the listen backlog, [`BACKLOG`]) until a slot frees, and are served then; past
//!   the backlog the kernel drops them. Nothing is closed at once, so honest
//!   clients only see latency while the cap is reached. Every slot is bounded
//!   in time for a peer that sends no valid request (the timeouts below), so
//!   a flood of idle connections cannot hold the cap for long.
//! - **A header read timeout** (`header_read_timeout_s`): a connection whose
//!   request head (request line and headers) is not complete that long after
//!   the server started reading it is closed. That includes an idle
//!   keep-alive connection waiting for its next request.
//! - **A TLS handshake timeout** (`tls_handshake_timeout_s`), so that a
//!   stalled handshake cannot hold a slot either.
//! - **No plain HTTP beyond loopback** unless `insecure_http` says a
//!   TLS-terminating proxy is in front: bearer tokens must not cross a
//!   network in clear.
//!
//! Bodies are not bounded here: the routes bound their own body reads
//! (`write_timeout_s` and the body limits of [`crate::Limits`]).
//!
//! HTTP/1.1 only (TLS advertises `http/1.1` in ALPN): every client the
//! vault documents speaks it, and HTTP/2 would need its own set of bounds
//! (streams per connection, flow control windows, a settings timeout).
//!
//! Graceful shutdown keeps `axum::serve`'s semantics: when the shutdown
//! future completes the loop stops accepting (and closes the listening
//! socket), idle connections close, requests in flight finish, and
//! [`BoundListener::serve`] returns once every connection has ended.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::Service;

/// Largest accepted `max_connections`: beyond it the process would run out
/// of file descriptors long before the cap mattered.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// The `[server]` section of the config file (docs/configuration.md); the
/// `serve` flags `--tls-cert`, `--tls-key` and `--insecure-http` override it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// PEM certificate chain (leaf first); TLS is on when this and `tls_key`
    /// are set. Both or neither.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (for a TLS-terminating
    /// proxy in front). Without it, such a start is refused.
    pub insecure_http: bool,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Longest time to receive a request's head (line and headers), and
    /// longest idle time of a keep-alive connection between requests.
    pub header_read_timeout_s: u64,
    /// Longest time a TLS handshake may take.
    pub tls_handshake_timeout_s: u64,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            tls_cert: None,
            tls_key: None,
            insecure_http: false,
            max_connections: 1024,
            header_read_timeout_s: 10,
            tls_handshake_timeout_s: 10,
        }
    }
}

/// Why the listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Only one of the certificate and the key was given.
    #[error(
        "TLS needs both a certificate and a key: give --tls-cert and --tls-key (or [server] tls_cert and tls_key) together"
    )]
    HalfTls,
    /// A setting is out of range.
    #[error("[server] {0}")]
    Config(String),
    /// A PEM file could not be read or holds nothing usable.
    #[error("TLS {what} {path}: {reason}")]
    Pem {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("TLS certificate {cert} with key {key}: {source}")]
    Tls {
        /// Certificate file.
        cert: String,
        /// Key file.
        key: String,
        /// Cause.
        source: rustls::Error,
    },
    /// Binding the socket failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The listen address as given.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Plain HTTP on an address other hosts can reach.
    #[error(
        "refusing to serve plain HTTP on {addr}, which is not a loopback address: bearer tokens would cross the network in clear. Give --tls-cert FILE --tls-key FILE (or [server] tls_cert and tls_key), or --insecure-http ([server] insecure_http = true) if a TLS-terminating proxy is in front"
    )]
    PlainHttpNotLoopback {
        /// The bound address.
        addr: SocketAddr,
    },
}

impl ListenerConfig {
    /// Refuses settings that cannot work: half a TLS pair, a zero cap or
    /// timeout (which would refuse every connection or disable the bound).
    pub fn check(&self) -> Result<(), ListenerError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ListenerError::HalfTls);
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return Err(ListenerError::Config(format!(
                "max_connections = {} must be between 1 and {MAX_CONNECTIONS_LIMIT}",
                self.max_connections
            )));
        }
        for (name, v) in [
            ("header_read_timeout_s", self.header_read_timeout_s),
            ("tls_handshake_timeout_s", self.tls_handshake_timeout_s),
        ] {
            if !(1..=3600).contains(&v) {
                return Err(ListenerError::Config(format!(
                    "{name} = {v} must be between 1 and 3600"
                )));
            }
        }
        Ok(())
    }
}

/// Reads the certificate chain and key and builds the TLS acceptor
/// (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
fn load_tls(cert: &Path, key: &Path) -> Result<TlsAcceptor, ListenerError> {
    let pem_err = |what, path: &Path, reason: String| ListenerError::Pem {
        what,
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err("certificate", cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err("certificate", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(
            "certificate",
            cert,
            "no CERTIFICATE block found".into(),
        ));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("key", key, e.to_string()))?;
    let tls_err = |source| ListenerError::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A checked configuration with its TLS material loaded; no socket yet.
pub struct Listener {
    config: ListenerConfig,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    /// Checks `config` and loads the certificate and key, so that a bad file
    /// stops the start before anything else happens.
    pub fn new(config: ListenerConfig) -> Result<Listener, ListenerError> {
        config.check()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
            _ => None,
        };
        Ok(Listener { config, tls })
    }

    /// Whether connections are served over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Binds `addr` (`host:port`). Plain HTTP on an address that is not
    /// loopback is refused unless `insecure_http`: the check is made on the
    /// address actually bound, so `localhost` and names resolving to
    /// loopback are fine and `0.0.0.0` or `[::]` are not.
    pub async fn bind(self, addr: &str) -> Result<BoundListener, ListenerError> {
        let tcp = bind_tcp(addr).await.map_err(|source| ListenerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let local = tcp.local_addr().map_err(|source| ListenerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        if self.tls.is_none()
            && !self.config.insecure_http
            && !local.ip().to_canonical().is_loopback()
        {
            return Err(ListenerError::PlainHttpNotLoopback { addr: local });
        }
        Ok(BoundListener {
            tcp,
            local,
            listener: self,
        })
    }
}

/// A bound socket, ready to serve.
pub struct BoundListener {
    tcp: TcpListener,
    local: SocketAddr,
    listener: Listener,
}

/// Accept errors that concern one connection only (the peer gave up before
/// we took it); anything else (e.g. out of file descriptors) pauses the loop.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// How often, at most, reaching the connection cap is logged.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

impl BoundListener {
    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `https://ADDR` or `http://ADDR`: the base URL printed at start-up.
    pub fn url(&self) -> String {
        let scheme = if self.listener.is_tls() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.local)
    }

    /// Serves `app` until `shutdown` completes, then stops accepting, lets
    /// requests in flight finish and returns when every connection has
    /// closed. Handlers can read the peer address as
    /// `ConnectInfo<SocketAddr>`.
    pub async fn serve(self, app: Router, shutdown: impl Future<Output = ()> + Send) {
        let cap = self.listener.config.max_connections;
        let slots = Arc::new(Semaphore::new(cap));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(
                self.listener.config.header_read_timeout_s,
            ));
        let http = Arc::new(http);
        let handshake_timeout = Duration::from_secs(self.listener.config.tls_handshake_timeout_s);
        // Dropping the sender tells every connection to finish gracefully.
        let (stop_tx, stop_rx) = watch::channel(());
        let mut shutdown = std::pin::pin!(shutdown);
        let cap_logged = crate::throttle::AtMostEvery::new(CAP_LOG_EVERY);
        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if cap_logged.due() {
                        tracing::warn!(
                            max_connections = cap,
                            "connection cap reached: new connections wait until one closes"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    }
                }
            };
            let (tcp, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = self.tcp.accept() => match r {
                    Ok(c) => c,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "accept failed; pausing for 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            tokio::spawn(connection(
                Conn {
                    tcp,
                    peer,
                    permit,
                    tls: self.listener.tls.clone(),
                    handshake_timeout,
                    http: http.clone(),
                    app: app.clone(),
                },
                stop_rx.clone(),
            ));
        }
        // Stop accepting: connections still queued in the kernel are refused.
        drop(self.tcp);
        drop(stop_tx);
        // Every connection task holds a slot until it ends.
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
    }
}

/// One accepted connection and what serving it needs.
struct Conn {
    tcp: TcpStream,
    peer: SocketAddr,
    /// The connection's slot under `max_connections`, freed when it ends.
    permit: OwnedSemaphorePermit,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    http: Arc<http1::Builder>,
    app: Router,
}

/// Runs one connection: the TLS handshake (bounded), then HTTP/1.1 until the
/// peer closes, a timeout fires or the server stops.
async fn connection(c: Conn, mut stop: watch::Receiver<()>) {
    let _permit = c.permit;
    // Responses are written whole; Nagle would only delay their last segment.
    let _ = c.tcp.set_nodelay(true);
    match c.tls {
        None => serve_http(TokioIo::new(c.tcp), &c.http, c.app, c.peer, stop).await,
        Some(tls) => {
            let handshake = tokio::select! {
                r = tokio::time::timeout(c.handshake_timeout, tls.accept(c.tcp)) => r,
                _ = stop.changed() => return,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    serve_http(TokioIo::new(stream), &c.http, c.app, c.peer, stop).await
                }
                Ok(Err(e)) => tracing::debug!(peer = %c.peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(peer = %c.peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Serves HTTP/1.1 on an established (plain or TLS) stream.
async fn serve_http<I>(
    io: I,
    http: &http1::Builder,
    app: Router,
    peer: SocketAddr,
    mut stop: watch::Receiver<()>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let abort = ConnectionAbort(Arc::new(tokio::sync::Notify::new()));
    let handle = abort.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(handle.clone());
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    let conn = http.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = abort.0.notified() => {
                tracing::debug!(%peer, "connection closed by its request");
                return;
            }
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets and malformed requests: the peer's problem.
        tracing::debug!(%peer, error = %e, "connection closed with an error");
    }
}

/// Closes the connection a request came on (a request extension set by
/// the listener): for an answer its client stopped reading, which would
/// otherwise hold the connection, and the kernel's buffers, until the client
/// closes it.
#[derive(Clone)]
pub struct ConnectionAbort(Arc<tokio::sync::Notify>);

impl ConnectionAbort {
    /// Closes the connection (its socket is dropped, unsent bytes with it).
    pub fn close(&self) {
        self.0.notify_one();
    }
}

/// Connections the kernel queues while the accept loop is busy or at its
/// cap. `TcpListener::bind` (tokio, mio and std alike) asks for 128: a burst
/// of a few hundred clients, such as 256 session streams opening at once,
/// overflowed it, and each dropped connection waited a second for its SYN
/// to be sent again (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 1024;

/// Binds the first address `addr` resolves to that can be bound, listening
/// with [`BACKLOG`].
async fn bind_tcp(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = match a {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As `TcpListener::bind`: a restarted server rebinds at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(a) {
            Ok(()) => return socket.listen(BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_checks() {
        let c: ListenerConfig = toml::from_str("").unwrap();
        assert_eq!(c, ListenerConfig::default());
        assert!(c.check().is_ok());
        let c: ListenerConfig =
            toml::from_str("tls_cert = \"c.pem\"\nmax_connections = 4\nheader_read_timeout_s = 2")
                .unwrap();
        assert!(matches!(c.check(), Err(ListenerError::HalfTls)));
        assert!(toml::from_str::<ListenerConfig>("tls = 1").is_err());
        for bad in [
            "max_connections = 0",
            "header_read_timeout_s = 0",
            "tls_handshake_timeout_s = 0",
        ] {
            let c: ListenerConfig = toml::from_str(bad).unwrap();
            assert!(matches!(c.check(), Err(ListenerError::Config(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn plain_http_is_refused_beyond_loopback() {
        let l = Listener::new(ListenerConfig::default()).unwrap();
        let err = l.bind("0.0.0.0:0").await.err().unwrap();
        assert!(err.to_string().contains("--insecure-http"), "{err}");
        for addr in ["127.0.0.1:0", "localhost:0"] {
            let l = Listener::new(ListenerConfig::default()).unwrap();
            let b = l.bind(addr).await.unwrap();
            assert!(b.url().starts_with("http://"));
        }
        let l = Listener::new(ListenerConfig {
            insecure_http: true,
            ..ListenerConfig::default()
        })
        .unwrap();
        assert!(l.bind("0.0.0.0:0").await.is_ok());
    }

    /// A burst of connections while nothing accepts them waits in the
    /// kernel's queue, up to the backlog, instead of being dropped (a dropped
    /// SYN is retried a second later): 300 clients connect at once to a
    /// listener that accepts none of them yet.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog() {
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(BACKLOG);
        let tcp = bind_tcp("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let want = 300.min(somaxconn as usize);
        let connected = tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for _ in 0..want {
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                    Ok(s) => held.push(s),
                    Err(_) => break,
                }
            }
            held.len()
        })
        .await
        .unwrap();
        assert_eq!(
            connected, want,
            "only {connected} queued before one was dropped"
        );
        drop(tcp);
    }

    #[test]
    fn unreadable_pem_is_an_error() {
        let err = Listener::new(ListenerConfig {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            ..ListenerConfig::default()
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
