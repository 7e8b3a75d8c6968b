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

/// Runs `plan` (planned and secured by this server for one caller) on the
/// Ballista cluster at `scheduler` (`df://HOST:PORT`); `masking_id` names
/// the masking the plan was made with. Returns its result stream.
pub async fn execute(
    plan: Arc<dyn ExecutionPlan>,
    scheduler: &str,
    masking_id: &str,
) -> DfResult<SendableRecordBatchStream> {
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
    df.execute_stream().await
}

fn plan_err(m: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(m.into())
}
