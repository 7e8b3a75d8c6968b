//! SQL that outgrows one machine: a caller's query planned and secured by
//! the server as always ([`crate::sql`]), then run by an Apache DataFusion
//! Ballista cluster: the project's own scheduler and executors
//! ([`processes`], `tracevault ballista scheduler|executor`).
//!
//! Enforcement stays below SQL, and where the data is read. The server
//! sends its finished physical plan, access rule and masking operator
//! ([`crate::scan`]'s `MaskExec`) included, wrapped in one logical node
//! ([`PlannedNode`]); the scheduler cuts it into stages without being able
//! to run any of it; the executors read the segments straight from the
//! object store and mask every row before it leaves the operator. What
//! travels is the caller's access (namespaces, window), its profile's name
//! and the id of the masking policy and key the plan was made with, never
//! the key: each executor loads the policy and key itself, and refuses a
//! plan made with others ([`NodeMasking`]).

mod codec;
mod plan_node;
pub mod processes;

use std::sync::{Arc, OnceLock};

use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::prelude::{SessionConfig, SessionContext};

pub use codec::{LogicalCodec, PhysicalCodec};
pub use plan_node::{PlannedNode, QueryPlanner};

use crate::masking::Policy;

/// A node's masking policy and key, and their id: what an executor masks
/// with.
pub struct NodeMasking {
    /// The masking policy (the same file as the servers').
    pub policy: Arc<Policy>,
    /// The `hash` action's key (the servers' `keys/masking.key`).
    pub key: [u8; 32],
    /// [`masking_id`] of the two.
    pub id: String,
}

static NODE_MASKING: OnceLock<NodeMasking> = OnceLock::new();

/// Installs this process's masking (an executor, at start); `false` if one
/// was installed already.
pub fn install_node_masking(m: NodeMasking) -> bool {
    NODE_MASKING.set(m).is_ok()
}

/// This process's masking, if it is an executor.
pub(crate) fn node_masking() -> Option<&'static NodeMasking> {
    NODE_MASKING.get()
}

/// The id of a masking policy (its TOML text; `None`: the built-in one)
/// together with its key: a digest, so that a plan can name what it was
/// made with and an executor can check it has the same, without the key
/// travelling.
pub fn masking_id(policy_toml: Option<&str>, key: &[u8; 32]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"tracevault/masking-id/v1\n");
    match policy_toml {
        Some(t) => {
            h.update(b"policy\n");
            h.update(t.as_bytes());
        }
        None => h.update(b"builtin\n"),
    }
    h.update(b"\nkey\n");
    h.update(key);
    hex::encode(&h.finalize()[..16])
}

/// A query running on the Ballista cluster: its result stream, and what
/// the scheduler knows of it once it is done (the metrics of every stage's
/// operators, the executors' scan and masking counts among them). Dropped
/// before [`Job::finish`], the job is cancelled on the cluster: a query
/// the server gave up on (timeout, limit, client gone) stops running there.
pub struct Job {
    exec: Arc<dyn ExecutionPlan>,
    scheduler: String,
    finished: bool,
}

/// What one stage of a finished job ran: its operators, indented by depth,
/// each with its metrics summed over the stage's tasks.
pub struct StagePlan {
    /// The scheduler's stage id.
    pub stage_id: u32,
    /// Partitions (tasks) of the stage.
    pub partitions: u32,
    /// One line per operator.
    pub operators: Vec<String>,
}

type DistributedExec = ballista_core::execution_plans::DistributedQueryExec<
    datafusion_proto::protobuf::LogicalPlanNode,
>;

impl Job {
    /// Submits `plan` (planned and secured by this server for one caller) to
    /// the Ballista cluster at `scheduler` (`df://HOST:PORT`); `masking_id`
    /// names the masking the plan was made with. Returns the job and its
    /// results as the executors produce them.
    pub async fn submit(
        plan: Arc<dyn ExecutionPlan>,
        scheduler: &str,
        masking_id: &str,
    ) -> DfResult<(Job, SendableRecordBatchStream)> {
        use ballista::extension::SessionConfigExt;
        use ballista::prelude::SessionContextExt;
        let node = PlannedNode::from_plan(plan, masking_id)?;
        let config = SessionConfig::new_with_ballista()
            .with_ballista_logical_extension_codec(Arc::new(LogicalCodec::default()))
            .with_ballista_physical_extension_codec(Arc::new(PhysicalCodec::default()));
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .build();
        let ctx = SessionContext::remote_with_state(scheduler, state).await?;
        let df = ctx
            .execute_logical_plan(LogicalPlan::Extension(Extension {
                node: Arc::new(node),
            }))
            .await?;
        let task = Arc::new(df.task_ctx());
        let exec = df.create_physical_plan().await?;
        if find_distributed(&exec).is_none() {
            return Err(plan_err(
                "the Ballista planner did not make a distributed query",
            ));
        }
        let stream = datafusion::physical_plan::execute_stream(exec.clone(), task)?;
        let job = Job {
            exec,
            scheduler: scheduler.to_string(),
            finished: false,
        };
        Ok((job, stream))
    }

    fn job_id(&self) -> Option<String> {
        find_distributed(&self.exec)
            .and_then(|d| d.job_id())
            .map(|j| j.to_string())
    }

    /// The job ran to its end (its stream is drained): it is not cancelled
    /// on drop. Returns what each of its stages ran, with the metrics of
    /// each operator (for [`crate::sql`]'s scan statistics and bounds).
    pub async fn finish(mut self) -> DfResult<Finished> {
        self.finished = true;
        let job_id = self
            .job_id()
            .ok_or_else(|| plan_err("a finished distributed query without a job id"))?;
        let result = job_metrics(&self.scheduler, job_id).await?;
        let mut stages = Vec::with_capacity(result.stages.len());
        let mut metrics = Vec::new();
        for s in result.stages {
            let mut operators = Vec::with_capacity(s.operators.len());
            for op in s.operators {
                let set: MetricsSet = ballista_core::serde::protobuf::OperatorMetricsSet {
                    metrics: op.metrics,
                }
                .try_into()
                .map_err(|e| DataFusionError::Execution(format!("the job's metrics: {e:?}")))?;
                let shown = set
                    .aggregate_by_name()
                    .sorted_for_display()
                    .timestamps_removed();
                operators.push(format!(
                    "{}{}, metrics=[{shown}]",
                    "  ".repeat(op.depth as usize),
                    op.operator_desc
                ));
                metrics.push(set);
            }
            stages.push(StagePlan {
                stage_id: s.stage_id,
                partitions: s.partitions,
                operators,
            });
        }
        stages.sort_by_key(|s| s.stage_id);
        Ok(Finished { stages, metrics })
    }
}

/// What a finished [`Job`] ran.
pub struct Finished {
    /// Its stages, in id order.
    pub stages: Vec<StagePlan>,
    /// The metrics of every operator of every stage.
    pub metrics: Vec<MetricsSet>,
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (Some(job_id), Ok(rt)) = (self.job_id(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let scheduler = self.scheduler.clone();
        rt.spawn(async move {
            let cancelled = cancel(&scheduler, job_id.clone());
            match cancelled.await {
                Ok(_) => tracing::debug!(job_id, "distributed query cancelled"),
                Err(e) => tracing::warn!(job_id, "a distributed query could not be cancelled: {e}"),
            }
        });
    }
}

/// The [`DistributedExec`] at or under `plan`.
fn find_distributed(plan: &Arc<dyn ExecutionPlan>) -> Option<&DistributedExec> {
    if let Some(d) = plan.downcast_ref::<DistributedExec>() {
        return Some(d);
    }
    plan.children().into_iter().find_map(find_distributed)
}

macro_rules! scheduler {
    ($scheduler:expr) => {{
        let addr = $scheduler.strip_prefix("df://").unwrap_or($scheduler);
        ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient::connect(
            format!("http://{addr}"),
        )
        .await
        .map_err(|e| DataFusionError::Execution(format!("the Ballista scheduler {addr}: {e}")))?
    }};
}

/// What the scheduler kept of a job: its successful stages and their
/// operators' metrics.
async fn job_metrics(
    scheduler: &str,
    job_id: String,
) -> DfResult<ballista_core::serde::protobuf::GetJobMetricsResult> {
    Ok(scheduler!(scheduler)
        .get_job_metrics(ballista_core::serde::protobuf::GetJobMetricsParams { job_id })
        .await
        .map_err(|e| DataFusionError::Execution(format!("the job's metrics: {e}")))?
        .into_inner())
}

/// Cancels a job on the cluster.
async fn cancel(scheduler: &str, job_id: String) -> DfResult<()> {
    scheduler!(scheduler)
        .cancel_job(ballista_core::serde::protobuf::CancelJobParams { job_id })
        .await
        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
    Ok(())
}

fn plan_err(m: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(m.into())
}
