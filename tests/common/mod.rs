//! Shared helpers of the end-to-end tests: a real `tracevault serve` process
//! on a bound loopback socket, tokens minted with the real CLI, and a real
//! HTTP client.

#![allow(dead_code)]

pub mod ballista;
pub mod moto;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tracevault");

/// A running server.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub data: PathBuf,
    pub stdout: Vec<String>,
    /// The Ballista cluster its queries run on (`TRACEVAULT_TEST_ENGINE`).
    pub cluster: Option<ballista::Cluster>,
}

impl Server {
    /// Starts `tracevault serve --data DATA --listen 127.0.0.1:0 EXTRA..` and
    /// waits for its "listening on" line.
    pub fn start(data: &Path, extra: &[&str]) -> Server {
        Self::try_start(data, extra).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    pub fn try_start(data: &Path, extra: &[&str]) -> Result<Server, String> {
        Self::try_start_env(data, extra, &[])
    }

    /// Starts a server with extra environment variables.
    pub fn try_start_env(
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        if ballista::wanted() {
            return Self::start_on_cluster(data, extra, env);
        }
        Self::spawn(&serve_args(data, extra.iter().copied()), env, data)
    }

    /// A server whose queries run on a Ballista cluster of its own: a
    /// scheduler and two executors reading its store with its masking.
    fn start_on_cluster(
        data: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, String> {
        let (mut cluster, extra, config) = ballista::engine_args(data, extra);
        let args = serve_args(data, extra.iter().map(String::as_str));
        let mut srv = Self::spawn(&args, env, data)?;
        // After the server: it made the masking key the executors load.
        for i in 0..2 {
            let work = data.with_file_name(format!("ballista-work-{i}"));
            cluster.add_executor(data, config.as_deref(), &work);
        }
        eprintln!(
            "queries of {} run on the Ballista scheduler at 127.0.0.1:{}",
            srv.url, cluster.scheduler_port
        );
        srv.cluster = Some(cluster);
        Ok(srv)
    }

    /// Starts `tracevault witness serve --data DIR --listen 127.0.0.1:0
    /// --trust VKEY..` and waits for its "listening on" line.
    pub fn start_witness(dir: &Path, name: &str, trust: &[&str]) -> Server {
        Self::start_witness_at(dir, name, trust, "127.0.0.1:0")
    }

    /// The same on a given address (a witness coming back where it was).
    pub fn start_witness_at(dir: &Path, name: &str, trust: &[&str], listen: &str) -> Server {
        let mut args = vec![
            "witness",
            "serve",
            "--data",
            dir.to_str().unwrap(),
            "--listen",
            listen,
            "--name",
            name,
        ];
        for t in trust {
            args.extend(["--trust", t]);
        }
        Self::spawn(&args, &[], dir).unwrap_or_else(|e| panic!("witness did not start: {e}"))
    }

    /// Runs the binary with `args` and waits for its "listening on" line.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], data: &Path) -> Result<Server, String> {
        Self::spawn_exe(Path::new(BIN), args, env, data)
    }

    /// [`Server::spawn`] of another copy of the binary.
    pub fn spawn_exe(
        exe: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        data: &Path,
    ) -> Result<Server, String> {
        let mut child = Command::new(exe)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        let url = addr.trim().to_string();
                        lines.push(line);
                        // Keep draining stdout so the child never blocks on a full pipe.
                        std::thread::spawn(move || for _ in rx.iter() {});
                        return Ok(Server {
                            child,
                            url,
                            data: data.to_path_buf(),
                            stdout: lines,
                            cluster: None,
                        });
                    }
                    lines.push(line);
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let mut err = String::new();
                        if let Some(mut e) = child.stderr.take() {
                            use std::io::Read;
                            let _ = e.read_to_string(&mut err);
                        }
                        return Err(format!("exited with {status}: {err}"));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err("timed out waiting for the listening line".into());
                    }
                }
            }
        }
    }

    /// The printed log public key (base64).
    pub fn public_key(&self) -> String {
        self.stdout
            .iter()
            .find_map(|l| l.strip_prefix("log public key: "))
            .unwrap()
            .to_string()
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `serve --data DATA --listen 127.0.0.1:0`, then `extra`.
pub fn serve_args<'a>(data: &'a Path, extra: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut args = vec![
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(extra);
    args
}

/// The standard output of a command that must have succeeded; `what`
/// names it in the failure, with its standard error.
pub fn stdout_of(what: &str, out: std::io::Result<std::process::Output>) -> Vec<u8> {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `tracevault bench ingest --url URL --token TOKEN ARGS --json` (the
/// load generator) to its end; its report.
pub fn bench_ingest(url: &str, token: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["bench", "ingest", "--url", url, "--token", token])
        .args(args)
        .arg("--json")
        .output();
    serde_json::from_slice(&stdout_of("bench ingest", out)).unwrap()
}

/// Mints a token with `tracevault token issue`, plus `extra` arguments.
pub fn issue(data: &Path, role: &str, ns: &str, sub: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "issue", "--data", data.to_str().unwrap()])
        .args(["--role", role, "--namespace", ns, "--sub", sub])
        .args(extra)
        .output();
    String::from_utf8(stdout_of("token issue", out))
        .unwrap()
        .trim()
        .to_string()
}

/// Mints a token with `tracevault token issue` (a reader's window is all
/// of history, said explicitly as readers must).
pub fn token(data: &Path, role: &str, ns: &str, sub: &str) -> String {
    let all = ["--from", "1970-01-01T00:00:00Z"];
    issue(
        data,
        role,
        ns,
        sub,
        if role == "reader" { &all } else { &[] },
    )
}

/// Mints a reader token whose window is `[from, to]` (RFC 3339).
pub fn reader_token_window(data: &Path, ns: &str, sub: &str, from: &str, to: &str) -> String {
    issue(data, "reader", ns, sub, &["--from", from, "--to", to])
}

/// Runs `tracevault verify ARGS`; returns (exit code, stdout, stderr).
pub fn verify(args: &[&str]) -> (i32, String, String) {
    verify_env(args, &[])
}

/// Runs `tracevault verify ARGS` with extra environment variables.
pub fn verify_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("verify")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Writes a config file in `dir` and returns its path.
pub fn config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Posts a JSON batch; returns (status, body).
pub async fn post_events(
    c: &reqwest::Client,
    url: &str,
    ns: &str,
    tok: &str,
    body: serde_json::Value,
    query: &str,
) -> (u16, serde_json::Value) {
    let r = c
        .post(format!("{url}/v1/logs/{ns}/events{query}"))
        .bearer_auth(tok)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

pub async fn get(c: &reqwest::Client, url: &str, tok: Option<&str>) -> (u16, String) {
    let mut r = c.get(url);
    if let Some(t) = tok {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Finds an executable: `$NAME_ENV`, then `.venv/bin/NAME` of the repo, then PATH.
pub fn find_tool(name: &str, env: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name);
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    })
}

/// The Python with pyarrow, duckdb and cryptography installed (see .ci/run).
pub fn python() -> PathBuf {
    find_tool("python3", "TRACEVAULT_TEST_PYTHON")
        .expect("python3 not found; run scripts/test.sh, which creates .venv with the test tools")
}

/// Starts `tests/independent/stand_in_server.py` (a hostile server for the
/// clients' tests, which prints the port it listens on) with `args`;
/// returns it, to kill, and its base URL.
pub fn stand_in_server(args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent/stand_in_server.py");
    let mut child = std::process::Command::new(python())
        .arg(path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    (child, format!("http://127.0.0.1:{}", port.trim()))
}

/// The size of the namespace's latest checkpoint (0 when it has none).
pub async fn checkpoint_size(c: &reqwest::Client, url: &str, ns: &str, tok: &str) -> u64 {
    let (s, text) = get(c, &format!("{url}/v1/logs/{ns}/checkpoint"), Some(tok)).await;
    if s != 200 {
        return 0;
    }
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

/// Polls the namespace's checkpoint until it covers `size` entries; returns
/// the size it saw last (so a test can assert on it either way).
pub async fn wait_size(c: &reqwest::Client, url: &str, ns: &str, tok: &str, size: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = checkpoint_size(c, url, ns, tok).await;
        if last >= size || Instant::now() > deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The stored rows of a namespace on a local store, read back with pyarrow
/// (tests/independent/dump_rows.py), ordered by index.
pub fn stored_rows(data: &Path, ns: &str) -> Vec<serde_json::Value> {
    let dir = data.join("store/ns").join(ns).join("segments");
    if !dir.exists() {
        return Vec::new();
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/independent/dump_rows.py"
    );
    let out = Command::new(python()).arg(script).arg(&dir).output();
    serde_json::from_slice(&stdout_of("dump_rows.py", out)).unwrap()
}

/// Builds `tests/independent/tlogcheck` (Go, with `golang.org/x/mod`'s
/// `sumdb/note` and `sumdb/tlog`: an implementation of signed notes and
/// RFC 6962 proofs that is not ours) into `dir` and returns the binary.
/// `scripts/test.sh` installs Go and the module (Debian's `golang-go` and
/// `golang-golang-x-mod-dev`); `TRACEVAULT_TEST_GO` and
/// `TRACEVAULT_TEST_GOPATH` point elsewhere.
pub fn go_tlogcheck(dir: &Path) -> PathBuf {
    let go = find_tool("go", "TRACEVAULT_TEST_GO")
        .expect("go not found; run scripts/test.sh, which installs golang-go");
    let gopath =
        std::env::var("TRACEVAULT_TEST_GOPATH").unwrap_or_else(|_| "/usr/share/gocode".into());
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent/tlogcheck");
    let out = dir.join("tlogcheck");
    let built = std::process::Command::new(go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(src.join("main.go"))
        .arg(src.join("tiles.go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .expect("running go build");
    assert!(
        built.status.success(),
        "go build of tlogcheck failed (is golang.org/x/mod under {gopath}?): {}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// Starts `tracevault serve --data DATA --listen LISTEN EXTRA..` on an address
/// of the test's choosing (`Server::start` always listens on loopback) and
/// waits for its "listening on" line; `Err` holds stderr if it exits first.
pub fn try_start_listen(data: &Path, listen: &str, extra: &[&str]) -> Result<Server, String> {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            listen,
        ])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut lines = Vec::new();
    // Lines until "listening on" or the end of stdout (the server exited).
    while let Some(Ok(line)) = out.next() {
        lines.push(line.clone());
        if let Some(url) = line.strip_prefix("listening on ") {
            let url = url.trim().to_string();
            std::thread::spawn(move || for _ in out {});
            return Ok(Server {
                child,
                url,
                data: data.to_path_buf(),
                stdout: lines,
                cluster: None,
            });
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    Err(format!("exited with {status}: {err}"))
}

/// Posts a JSON body with a bearer token; returns (status, JSON body or null).
pub async fn post_json(
    c: &reqwest::Client,
    url: &str,
    tok: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = c
        .post(url)
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// Reads NDJSON lines off a response body as they arrive.
pub struct Lines {
    pub body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    pub buf: Vec<u8>,
}

/// What a session stream answered: the line numbers that got receipts, the
/// error lines, and the summary.
pub struct StreamAnswer {
    pub receipts: Vec<u64>,
    pub errors: Vec<serde_json::Value>,
    pub summary: serde_json::Value,
}

impl Lines {
    /// Reads a stream's answer up to its summary.
    pub async fn until_summary(&mut self) -> StreamAnswer {
        let (mut receipts, mut errors) = (Vec::new(), Vec::new());
        loop {
            let l = self.next().await.expect("a summary");
            if l.get("summary").is_some() {
                return StreamAnswer {
                    receipts,
                    errors,
                    summary: l,
                };
            }
            if l.get("error").is_some() {
                errors.push(l);
            } else {
                receipts.push(l["line"].as_u64().expect("a receipt names its line"));
            }
        }
    }

    /// The lines of `resp`'s body.
    pub fn of(resp: reqwest::Response) -> Lines {
        Lines {
            body: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }

    /// The next line (`None` at the end of the body); panics after 20 s
    /// without one.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        use futures::StreamExt;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("nothing within 20 s")?;
            self.buf.extend_from_slice(&chunk.ok()?);
        }
    }
}

/// Runs `q` through `POST /v1/query`; returns (status, JSON body or null).
/// [`sql`] on a task of its own: a query left running while the test goes on.
pub fn spawn_sql(
    c: &reqwest::Client,
    url: &str,
    tok: &str,
    q: &str,
) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    let (c, url, tok, q) = (c.clone(), url.to_string(), tok.to_string(), q.to_string());
    tokio::spawn(async move { sql(&c, &url, &tok, &q).await })
}

/// Appends `n` events of session `s` to `ns`, the i-th with `content(i)`.
pub async fn append_numbered(
    c: &reqwest::Client,
    url: &str,
    ns: &str,
    writer: &str,
    n: usize,
    content: impl Fn(usize) -> String,
) {
    let events: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"session_id": "s", "kind": "output", "content": content(i)}))
        .collect();
    let (s, b) = post_events(
        c,
        url,
        ns,
        writer,
        serde_json::json!({"events": events}),
        "",
    )
    .await;
    assert_eq!(s, 200, "{b}");
}

/// `n` NDJSON lines for a session stream, the i-th with content `i`.
pub fn numbered_lines(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"kind\":\"output\",\"content\":\"{i}\"}}\n"))
        .collect()
}

pub async fn sql(c: &reqwest::Client, url: &str, tok: &str, q: &str) -> (u16, serde_json::Value) {
    let r = c
        .post(format!("{url}/v1/query"))
        .bearer_auth(tok)
        .json(&serde_json::json!({"sql": q}))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(serde_json::Value::Null))
}
