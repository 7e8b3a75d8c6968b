//! `tracevault ballista scheduler|executor`: the project's own Apache
//! DataFusion Ballista processes, for `[query] engine = "ballista"`
//! (docs/distributed-sql.md). Wiring only: the processes are
//! `tracevault_query::distributed::processes`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use tracevault_query::distributed::{NodeMasking, masking_id, processes};
use tracevault_query::masking::Policy;
use tracevault_vault::Store;

/// `ballista` subcommands.
#[derive(Subcommand)]
pub enum BallistaCmd {
    /// Run a scheduler: it cuts the plans servers send into stages and hands
    /// them to executors (it reads no data and holds no key).
    Scheduler(SchedulerArgs),
    /// Run an executor: it reads segments from the store and masks rows with
    /// the servers' masking policy and key.
    Executor(ExecutorArgs),
}

/// `ballista scheduler` options.
#[derive(Args)]
pub struct SchedulerArgs {
    /// gRPC address (servers use `ballista_scheduler = "df://HOST:PORT"`).
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub listen: SocketAddr,
}

/// `ballista executor` options.
#[derive(Args)]
pub struct ExecutorArgs {
    /// The scheduler, `HOST:PORT` (or `df://HOST:PORT`).
    #[arg(long)]
    pub scheduler: String,
    /// Arrow Flight address of this executor; its gRPC service takes the next port.
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// A data directory of the vault: its `keys/masking.key`, and its store
    /// unless `--store` is given.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The vault's object store (`file:///…` or `s3://bucket/prefix`).
    #[arg(long)]
    pub store: Option<String>,
    /// The servers' config file (its `masking_policy`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Tasks run at once (default: the machine's cores).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Directory for shuffle files (default: a `ballista` directory under
    /// `--data`, else the system's temporary directory).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Runs a `ballista` subcommand until it is stopped.
pub fn run(cmd: BallistaCmd) -> anyhow::Result<()> {
    crate::serve::init_logs();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cmd {
        BallistaCmd::Scheduler(a) => rt.block_on(async move {
            println!("ballista scheduler listening on {}", a.listen);
            tokio::select! {
                r = processes::run_scheduler(a.listen) => r.map_err(anyhow::Error::msg),
                _ = crate::serve::shutdown_signal() => Ok(()),
            }
        }),
        BallistaCmd::Executor(a) => {
            let opts = executor_options(a)?;
            rt.block_on(async move {
                println!("ballista executor listening on {}", opts.listen);
                tokio::select! {
                    r = processes::run_executor(opts) => r.map_err(anyhow::Error::msg),
                    _ = crate::serve::shutdown_signal() => Ok(()),
                }
            })
        }
    }
}

fn executor_options(a: ExecutorArgs) -> anyhow::Result<processes::ExecutorOptions> {
    let data = a.data.as_ref().context(
        "--data is needed: an executor masks rows with the servers' keys/masking.key (its data directory)",
    )?;
    let key_path = data.join("keys/masking.key");
    anyhow::ensure!(
        key_path.is_file(),
        "{} is missing: copy the servers' masking key there",
        key_path.display()
    );
    let (key, _) = tracevault_vault::keys::load_or_create(&key_path)?;
    let key = key.to_bytes();
    let config = match &a.config {
        Some(c) => tracevault_server::config::ServerConfig::load(c)
            .map_err(|e| anyhow::anyhow!("{}", e.0))?,
        None => tracevault_server::config::ServerConfig::default(),
    };
    let policy_file = config.masking_policy.clone();
    let (policy, toml) = match &policy_file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading masking policy {}", p.display()))?;
            let policy = Policy::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("masking policy {}: {e}", p.display()))?;
            (policy, Some(text))
        }
        None => (Policy::default_policy(), None),
    };
    let store = match &a.store {
        Some(u) => Store::from_url(u)?,
        None => Store::local(&data.join("store"))?,
    };
    let scheduler = a.scheduler.trim_start_matches("df://");
    let (host, port) = scheduler
        .rsplit_once(':')
        .context("--scheduler is HOST:PORT")?;
    let port: u16 = port.parse().context("--scheduler port")?;
    Ok(processes::ExecutorOptions {
        listen: a.listen,
        scheduler: (host.to_string(), port),
        store: store.object_store(),
        masking: NodeMasking {
            id: masking_id(toml.as_deref(), &key),
            policy: Arc::new(policy),
            key,
        },
        work_dir: a.work_dir.unwrap_or_else(|| data.join("ballista")),
        task_memory_bytes: config.query.memory_mb << 20,
        concurrent_tasks: a
            .tasks
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    })
}
