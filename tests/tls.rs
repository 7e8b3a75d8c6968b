//! The listener against standard clients and hostile connections (issue 12,
//! item 8 and the listener part of item 4): HTTPS with a self-signed
//! certificate for curl and Python `requests`; plain HTTP beyond loopback
//! only with `--insecure-http`; slow-header connections closed within
//! `header_read_timeout_s`; connections past `max_connections` waiting for a
//! slot; the data directory, WAL and local store private to their owner.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A self-signed P-256 certificate for `localhost` and `127.0.0.1`, made by
/// the `openssl` CLI; returns (certificate, key).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl not found; scripts/test.sh installs it");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Runs curl; returns (exit code, stdout).
fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl not found; scripts/test.sh installs it");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn https_with_a_self_signed_certificate_serves_curl_and_python_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[server]\ntls_handshake_timeout_s = 2\n");
    let s = Server::start(
        &data,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let ca = cert.to_str().unwrap();

    // curl, verifying the certificate.
    let (code, body) = curl(&["--cacert", ca, &format!("{}/healthz", s.url)]);
    assert_eq!((code, body.trim()), (0, r#"{"status":"ok"}"#));
    // An authenticated write over TLS, with its checkpoint.
    let writer = token(&data, "writer", "alpha", "pipeline-a");
    let (code, body) = curl(&[
        "--cacert",
        ca,
        "-H",
        &format!("Authorization: Bearer {writer}"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"events":[{"session_id":"s1","kind":"prompt","content":"over TLS"}]}"#,
        "-w",
        "\n%{http_code}",
        &format!("{}/v1/logs/alpha/events?wait=checkpoint", s.url),
    ]);
    assert_eq!(code, 0);
    assert!(body.ends_with("\n200"), "{body}");
    assert!(body.contains("\"receipts\""), "{body}");
    // The certificate is really checked: without the CA, curl refuses (60).
    let (code, _) = curl(&[&format!("{}/healthz", s.url)]);
    assert_eq!(code, 60, "curl without --cacert must fail verification");
    // Plain HTTP on the TLS port gets no answer.
    let plain = s.url.replacen("https://", "http://", 1);
    let (code, body) = curl(&["-w", "%{http_code}", &format!("{plain}/healthz")]);
    assert!(
        code != 0 || !body.contains("200"),
        "plain HTTP answered: {body}"
    );

    // A connection that never starts its handshake is closed at the timeout.
    let addr: SocketAddr = s.url.trim_start_matches("https://").parse().unwrap();
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let opened = Instant::now();
    let mut b = [0u8; 16];
    assert!(matches!(idle.read(&mut b), Ok(0)), "still open");
    let waited = opened.elapsed();
    eprintln!("silent TLS connection closed after {waited:?} (tls_handshake_timeout_s = 2)");
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    // Python requests, verifying against the same certificate.
    let script = r#"
import json, sys, requests
base, ca, tok = sys.argv[1:4]
h = requests.get(base + "/healthz", verify=ca, timeout=30)
auth = requests.get(base + "/v1/logs/alpha/checkpoint", verify=ca, timeout=30,
                    headers={"Authorization": "Bearer " + tok})
anon = requests.get(base + "/v1/logs/alpha/checkpoint", verify=ca, timeout=30)
print(json.dumps([h.status_code, h.text, auth.status_code, auth.text, anon.status_code]))
"#;
    let out = Command::new(python())
        .args(["-c", script, &s.url, ca, &writer])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python requests failed (is requests installed? scripts/test.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0], 200);
    assert_eq!(v[1].as_str().unwrap().trim(), r#"{"status":"ok"}"#);
    assert_eq!(v[2], 200, "authenticated checkpoint: {}", v[3]);
    assert_eq!(v[3].as_str().unwrap().lines().nth(1), Some("1"), "{}", v[3]);
    assert_eq!(v[4], 401);

    // Private to the owner: the data directory, the WAL and the local store.
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("wal")), 0o700);
    let wal = data.join("wal/alpha");
    assert_eq!(mode(&wal), 0o700);
    let files: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&data.join("store")), 0o700);
    assert_eq!(s.terminate(), Some(0), "graceful stop over TLS");

    // A data directory left open by an older version is tightened on start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start(&data, &[]);
    assert_eq!(mode(&data), 0o700);
    drop(s);
}

/// A raw HTTP/1.1 GET of `/healthz` on a new connection: (status line,
/// when the answer arrived).
fn healthz_raw(addr: SocketAddr) -> (String, Instant) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    let at = Instant::now();
    (answer.lines().next().unwrap_or("").to_string(), at)
}

/// Sends a request head one byte per second, never finishing it, and
/// returns how long the server took to close the connection (None: still
/// open after 30 s).
fn slow_header_closed_after(addr: SocketAddr) -> Option<Duration> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let start = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: slow.example\r\nX-Slowloris: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut buf = [0u8; 512];
    for b in head {
        if c.write_all(&[*b]).is_err() {
            return Some(start.elapsed());
        }
        // The read timeout paces the bytes: one per second.
        match c.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            // An error response before the close: keep reading to the end.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
        if start.elapsed() > Duration::from_secs(30) {
            return None;
        }
    }
    None
}

#[test]
fn plain_http_beyond_loopback_needs_insecure_http_and_hostile_connections_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Plain HTTP on 0.0.0.0 is refused, naming the way out, before the
    // vault is created.
    let out = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap()])
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--insecure-http"), "{err}");
    assert!(!data.exists(), "refused before creating the data directory");
    // Half a TLS pair is refused, on the command line and in the file.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--tls-cert",
            "c.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    let half = config(dir.path(), "[server]\ntls_key = \"k.pem\"\n");
    let out = Command::new(BIN)
        .args(["serve", "--data", data.to_str().unwrap(), "--config"])
        .arg(&half)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("both a certificate and a key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With --insecure-http it starts; small limits to exercise them.
    let cfg = config(
        dir.path(),
        "[server]\nmax_connections = 4\nheader_read_timeout_s = 2\n",
    );
    let s = try_start_listen(
        &data,
        "0.0.0.0:0",
        &["--insecure-http", "--config", cfg.to_str().unwrap()],
    )
    .unwrap();
    assert!(s.url.starts_with("http://0.0.0.0:"), "{}", s.url);
    let port: u16 = s.url.rsplit(':').next().unwrap().parse().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(healthz_raw(addr).0, "HTTP/1.1 200 OK");

    // Slowloris: one header byte per second is closed at the header timeout.
    let closed = slow_header_closed_after(addr).expect("slow-header connection still open");
    eprintln!("slow-header connection closed after {closed:?} (header_read_timeout_s = 2)");
    assert!(closed < Duration::from_secs(10), "{closed:?}");

    // The cap: four connections that send nothing hold every slot; a fifth
    // waits in the accept queue and is answered once a slot frees (here when
    // the idle four are closed at the header timeout).
    let holds: Vec<_> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            std::thread::spawn(move || {
                let mut b = [0u8; 64];
                let opened = Instant::now();
                loop {
                    match c.read(&mut b) {
                        Ok(0) => return Some(opened.elapsed()),
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            })
        })
        .collect();
    let sent = Instant::now();
    let (status, answered) = healthz_raw(addr);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let waited = answered - sent;
    let idle: Vec<_> = holds.into_iter().map(|h| h.join().unwrap()).collect();
    eprintln!("fifth connection answered after {waited:?}; idle connections closed after {idle:?}");
    for i in &idle {
        let i = i.expect("an idle connection was not closed by the server");
        assert!(i < Duration::from_secs(10), "{i:?}");
    }
    assert!(
        waited >= Duration::from_secs(1),
        "the fifth connection was served while four held every slot ({waited:?})"
    );
    // Slots free again: a new connection answers at once.
    assert_eq!(healthz_raw(addr).0, "HTTP/1.1 200 OK");
    assert_eq!(s.terminate(), Some(0));
}
