//! The project's own Ballista scheduler and executor processes
//! (`tracevault ballista scheduler|executor`): Ballista's, with
//! tracevault's codecs, the scheduler's planner for [`super::PlannedNode`],
//! and, on executors, the vault's object store and the masking policy and
//! key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::RuntimeProducer;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use super::{LogicalCodec, NodeMasking, PhysicalCodec, QueryPlanner, install_node_masking};
use crate::scan::STORE_URL;

/// Runs a scheduler listening on `listen` until the process ends.
pub async fn run_scheduler(listen: SocketAddr) -> Result<(), String> {
    let config = SchedulerConfig {
        bind_host: listen.ip().to_string(),
        bind_port: listen.port(),
        external_host: listen.ip().to_string(),
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::default())),
        override_session_builder: Some(Arc::new(|config: SessionConfig| {
            // The plans name the vault's store; the scheduler reads nothing
            // from it, so it gets an empty one (a read would find nothing).
            let rt = RuntimeEnvBuilder::new().build_arc()?;
            let url = url::Url::parse(STORE_URL)
                .map_err(|e| datafusion::error::DataFusionError::Configuration(e.to_string()))?;
            rt.register_object_store(&url, Arc::new(object_store::memory::InMemory::new()));
            Ok(SessionStateBuilder::new()
                .with_config(config)
                .with_runtime_env(rt)
                .with_default_features()
                .with_query_planner(Arc::new(QueryPlanner))
                .build())
        })),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    start_server(cluster, listen, Arc::new(config))
        .await
        .map_err(|e| e.to_string())
}

/// How an executor runs.
pub struct ExecutorOptions {
    /// Address of its Arrow Flight service (results and shuffles); its
    /// gRPC service takes the next port.
    pub listen: SocketAddr,
    /// The scheduler (host, port).
    pub scheduler: (String, u16),
    /// The vault's object store (segments are read from it).
    pub store: Arc<dyn object_store::ObjectStore>,
    /// The masking policy and key.
    pub masking: NodeMasking,
    /// Where shuffle files go.
    pub work_dir: PathBuf,
    /// Tasks run at once.
    pub concurrent_tasks: usize,
    /// Memory each task's joins, sorts and aggregates may hold (the
    /// servers' `[query] memory_mb`): past it the task, and its query, fail.
    pub task_memory_bytes: usize,
}

/// Runs an executor until the process ends.
pub async fn run_executor(o: ExecutorOptions) -> Result<(), String> {
    if !install_node_masking(o.masking) {
        return Err("an executor's masking was installed twice".into());
    }
    let url = url::Url::parse(STORE_URL).map_err(|e| e.to_string())?;
    let store = o.store;
    let codec_store = store.clone();
    let memory = o.task_memory_bytes;
    let runtime: RuntimeProducer = Arc::new(move |_config: &SessionConfig| {
        let rt = crate::sql::bounded_runtime(memory).build_arc()?;
        rt.register_object_store(&url, store.clone());
        Ok(rt)
    });
    std::fs::create_dir_all(&o.work_dir).map_err(|e| format!("{}: {e}", o.work_dir.display()))?;
    // Tasks spill beside the shuffle files, not into the OS temporary
    // directory: both hold rows, and the operator cleans one place.
    crate::sql::spill_into(o.work_dir.join("spill"));
    let config = ExecutorProcessConfig {
        bind_host: o.listen.ip().to_string(),
        external_host: Some(o.listen.ip().to_string()),
        port: o.listen.port(),
        grpc_port: o
            .listen
            .port()
            .checked_add(1)
            .ok_or("--listen port too high")?,
        scheduler_host: o.scheduler.0,
        scheduler_port: o.scheduler.1,
        vcores: o.concurrent_tasks.max(1),
        work_dir: Some(o.work_dir.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: 5,
        override_logical_codec: Some(Arc::new(LogicalCodec::default())),
        override_physical_codec: Some(Arc::new(PhysicalCodec::for_executor(codec_store))),
        override_runtime_producer: Some(runtime),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| e.to_string())
}
