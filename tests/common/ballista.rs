//! A Ballista cluster for the tests: `tracevault ballista scheduler` and
//! executors on loopback, as separate processes killed on drop.
//!
//! With `TRACEVAULT_TEST_ENGINE=ballista` in the environment, every server
//! a test starts with [`super::Server::start`] runs its queries on such a
//! cluster (a scheduler and two executors reading the server's store, with
//! its masking policy and key): `scripts/test.sh` runs the query, masking
//! and adversarial SQL tests that way a second time, so that every query of
//! theirs must answer the same through Ballista as embedded.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

/// The environment variable that sends tests' queries to a cluster.
pub const ENGINE_ENV: &str = "TRACEVAULT_TEST_ENGINE";

/// Whether this test run sends queries to a Ballista cluster.
pub fn wanted() -> bool {
    std::env::var(ENGINE_ENV).is_ok_and(|e| e == "ballista")
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two consecutive free ports (an executor's Flight and gRPC services).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scheduler and its executors.
pub struct Cluster {
    pub scheduler_port: u16,
    _scheduler: Proc,
    pub executors: Vec<Proc>,
}

impl Cluster {
    /// Starts a scheduler.
    pub fn scheduler() -> Cluster {
        let scheduler_port = free_port();
        let p = spawn(&[
            "ballista",
            "scheduler",
            "--listen",
            &format!("127.0.0.1:{scheduler_port}"),
        ]);
        wait_port(scheduler_port);
        Cluster {
            scheduler_port,
            _scheduler: p,
            executors: Vec::new(),
        }
    }

    /// What a server's config says to use this cluster.
    pub fn query_config(&self) -> String {
        format!(
            "engine = \"ballista\"\nballista_scheduler = \"df://127.0.0.1:{}\"\n",
            self.scheduler_port
        )
    }

    /// Adds an executor reading the vault under `data` (its store, masking
    /// key and, with `config`, masking policy), with shuffle files in `work`.
    pub fn add_executor(&mut self, data: &Path, config: Option<&Path>, work: &Path) {
        let port = free_port_pair();
        let sched = format!("127.0.0.1:{}", self.scheduler_port);
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "ballista",
            "executor",
            "--scheduler",
            &sched,
            "--listen",
            &listen,
            "--data",
            data.to_str().unwrap(),
            "--work-dir",
            work.to_str().unwrap(),
            "--tasks",
            "2",
        ];
        if let Some(c) = config {
            args.extend(["--config", c.to_str().unwrap()]);
        }
        self.executors.push(spawn(&args));
        wait_port(port);
    }
}

/// For [`super::Server`] under [`ENGINE_ENV`]: a scheduler, and the
/// server's arguments with a config that sends its queries there (the
/// test's own config with `[query] engine` added).
pub fn engine_args(data: &Path, extra: &[&str]) -> (Cluster, Vec<String>, Option<PathBuf>) {
    let cluster = Cluster::scheduler();
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let at = args.iter().position(|a| a == "--config");
    let (text, path) = match at.and_then(|i| args.get(i + 1)) {
        Some(p) => (
            std::fs::read_to_string(p).unwrap(),
            PathBuf::from(format!("{p}.ballista.toml")),
        ),
        None => (
            String::new(),
            data.with_file_name(format!(
                "{}-ballista.toml",
                data.file_name().unwrap().to_string_lossy()
            )),
        ),
    };
    let header = text.lines().position(|l| l.trim() == "[query]");
    let text = match header {
        Some(i) => {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.insert(i + 1, cluster.query_config());
            lines.join("\n")
        }
        None => format!("{text}\n[query]\n{}", cluster.query_config()),
    };
    std::fs::write(&path, text).unwrap();
    match at {
        Some(i) => args[i + 1] = path.to_str().unwrap().to_string(),
        None => args.extend(["--config".to_string(), path.to_str().unwrap().to_string()]),
    }
    (cluster, args, Some(path))
}
