//! The one logical node a distributed query sends: the server's finished
//! physical plan, encoded ([`PlannedNode`]), and the planner that turns it
//! back into that plan on the scheduler ([`QueryPlanner`]). The scheduler
//! never plans the caller's SQL itself, so nothing it does can drop the
//! access rule or the mask.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner as DfQueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use prost::Message;

use super::{PhysicalCodec, plan_err};

/// A physical plan made by a server, as a logical node: its encoding
/// (DataFusion's protobuf with [`PhysicalCodec`]) and its output schema.
#[derive(Clone)]
pub struct PlannedNode {
    pub(crate) bytes: Arc<Vec<u8>>,
    schema: DFSchemaRef,
    /// The decoded plan (on the scheduler).
    plan: Option<Arc<dyn ExecutionPlan>>,
}

impl PlannedNode {
    /// Encodes `plan`, naming `masking_id` as what its masks were made with.
    pub fn from_plan(plan: Arc<dyn ExecutionPlan>, masking_id: &str) -> DfResult<PlannedNode> {
        let codec = PhysicalCodec::for_server(masking_id);
        let schema = Arc::new(DFSchema::try_from(plan.schema().as_ref().clone())?);
        let node = PhysicalPlanNode::try_from_physical_plan(plan, &codec)?;
        Ok(PlannedNode {
            bytes: Arc::new(node.encode_to_vec()),
            schema,
            plan: None,
        })
    }

    /// Decodes an encoded plan (on the scheduler: its masks are stubs).
    pub(crate) fn decode(bytes: Vec<u8>, ctx: &TaskContext) -> DfResult<PlannedNode> {
        let node = PhysicalPlanNode::decode(bytes.as_slice())
            .map_err(|e| plan_err(format!("a planned query that does not decode: {e}")))?;
        let plan = node.try_into_physical_plan(ctx, &PhysicalCodec::default())?;
        let schema = Arc::new(DFSchema::try_from(plan.schema().as_ref().clone())?);
        Ok(PlannedNode {
            bytes: Arc::new(bytes),
            schema,
            plan: Some(plan),
        })
    }
}

impl fmt::Debug for PlannedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlannedNode({} bytes)", self.bytes.len())
    }
}

impl PartialEq for PlannedNode {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for PlannedNode {}

impl Hash for PlannedNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl PartialOrd for PlannedNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        self.bytes.partial_cmp(&other.bytes)
    }
}

impl UserDefinedLogicalNodeCore for PlannedNode {
    fn name(&self) -> &str {
        "TracevaultPlanned"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "TracevaultPlanned: {} bytes", self.bytes.len())
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        _inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        Ok(self.clone())
    }
}

/// Plans [`PlannedNode`] as the plan it carries.
#[derive(Debug, Default)]
struct PlannedNodePlanner;

#[async_trait]
impl ExtensionPlanner for PlannedNodePlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(n) = node.as_any().downcast_ref::<PlannedNode>() else {
            return Ok(None);
        };
        match &n.plan {
            Some(p) => Ok(Some(p.clone())),
            None => {
                let ctx = session_state.task_ctx();
                Ok(PlannedNode::decode(n.bytes.as_ref().clone(), &ctx)?.plan)
            }
        }
    }
}

/// The scheduler's query planner: DataFusion's, plus [`PlannedNode`].
#[derive(Debug, Default)]
pub struct QueryPlanner;

#[async_trait]
impl DfQueryPlanner for QueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(PlannedNodePlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
