//! What tracevault adds to Ballista's plan encodings: the logical node
//! carrying a server's finished plan ([`LogicalCodec`]) and the masking
//! operator inside it ([`PhysicalCodec`]). Everything else (DataFusion's
//! operators, Ballista's shuffles) goes to Ballista's own codecs.
//!
//! Each of ours is a tag followed by its body, a tag no protobuf message of
//! the others starts with.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::SchemaRef;
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use datafusion::catalog::TableProvider;
use datafusion::common::{Result as DfResult, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use object_store::ObjectStore;

use super::{PlannedNode, node_masking, plan_err};
use crate::guard::{Bounded, GuardLimits};
use crate::scan::{MaskExec, MaskSpec};

/// Tag of an encoded [`PlannedNode`].
const PLANNED: &[u8] = b"\xfftracevault/planned/1\n";
/// Tag of an encoded `MaskExec`.
const MASK: &[u8] = b"\xfftracevault/mask/1\n";
/// Tag of an encoded bounded scalar function (`crate::guard::Bounded`).
const BOUNDED: &[u8] = b"\xfftracevault/bounded/1\n";

/// Ballista's logical codec, plus [`PlannedNode`].
#[derive(Debug, Default)]
pub struct LogicalCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        match buf.strip_prefix(PLANNED) {
            Some(body) => Ok(Extension {
                node: Arc::new(PlannedNode::decode(body.to_vec(), ctx)?),
            }),
            None => self.inner.try_decode(buf, inputs, ctx),
        }
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        match node.node.as_any().downcast_ref::<PlannedNode>() {
            Some(n) => {
                buf.extend_from_slice(PLANNED);
                buf.extend_from_slice(&n.bytes);
                Ok(())
            }
            None => self.inner.try_encode(node, buf),
        }
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.inner.try_encode_file_format(buf, node)
    }
}

/// Ballista's physical codec, plus `MaskExec`: encoded as its spec (the
/// caller's access, its profile's name, the masking id), decoded with this
/// node's masking (an executor) or as a stub that never runs (a scheduler).
#[derive(Debug, Default)]
pub struct PhysicalCodec {
    inner: BallistaPhysicalExtensionCodec,
    /// The masking id a server's plans are made with (a scheduler re-encodes
    /// the specs it decoded, which carry their own).
    masking_id: Option<String>,
    /// An executor's store: the scans under a decoded masking operator read
    /// it through checked readers ([`crate::checked_parquet`]).
    store: Option<Arc<dyn ObjectStore>>,
}

impl PhysicalCodec {
    /// The codec of a server whose masking has id `masking_id`.
    pub fn for_server(masking_id: &str) -> PhysicalCodec {
        PhysicalCodec {
            inner: BallistaPhysicalExtensionCodec::default(),
            masking_id: Some(masking_id.to_string()),
            store: None,
        }
    }

    /// The codec of an executor reading segments from `store`.
    pub fn for_executor(store: Arc<dyn ObjectStore>) -> PhysicalCodec {
        PhysicalCodec {
            store: Some(store),
            ..PhysicalCodec::default()
        }
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let Some(body) = buf.strip_prefix(MASK) else {
            return self.inner.try_decode(buf, inputs, ctx, proto_converter);
        };
        let spec: MaskSpec = serde_json::from_slice(body)
            .map_err(|e| plan_err(format!("a masking operator that does not decode: {e}")))?;
        let [input] = inputs else {
            return Err(plan_err("a masking operator has one input"));
        };
        // The scans under the mask: decoded without the server's readers.
        let input = match &self.store {
            Some(store) => crate::checked_parquet::check_scans(input.clone(), store)?,
            None => input.clone(),
        };
        Ok(Arc::new(MaskExec::from_spec(input, spec, node_masking())?))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(mask) = node.downcast_ref::<MaskExec>() else {
            return self.inner.try_encode(node, buf, proto_converter);
        };
        let spec = mask.spec(self.masking_id.as_deref()).ok_or_else(|| {
            plan_err("a masking operator with no masking id cannot leave the server")
        })?;
        buf.extend_from_slice(MASK);
        serde_json::to_writer(&mut *buf, &spec).map_err(|e| plan_err(e.to_string()))?;
        Ok(())
    }

    /// A scalar call travels with its bounds: the function guard runs where
    /// the call does. (By name alone, an executor would run DataFusion's
    /// own, unbounded function: `repeat(x, 1e11)` would take it down.)
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> DfResult<()> {
        let Some(b) = (node.inner().as_ref() as &dyn Any).downcast_ref::<Bounded>() else {
            return Err(plan_err(format!(
                "function {} is not bounded: it cannot leave the server",
                node.name()
            )));
        };
        buf.extend_from_slice(BOUNDED);
        serde_json::to_writer(&mut *buf, &b.limits()).map_err(|e| plan_err(e.to_string()))?;
        Ok(())
    }

    /// Only bounded calls are decoded, by the same allowlist as the SQL's
    /// (`crate::guard::bounded`); anything else fails the plan.
    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        let Some(body) = buf.strip_prefix(BOUNDED) else {
            return Err(plan_err(format!(
                "function {name} arrived without its bounds; refusing the plan"
            )));
        };
        let limits: GuardLimits = serde_json::from_slice(body)
            .map_err(|e| plan_err(format!("the bounds of {name} do not decode: {e}")))?;
        let inner = default_scalar_functions()
            .get(name)
            .cloned()
            .ok_or_else(|| plan_err(format!("no function {name} here")))?;
        Ok(Arc::new(crate::guard::bounded(inner, limits)?))
    }
}

/// DataFusion's scalar functions by name: what a bounded call wraps.
fn default_scalar_functions() -> &'static HashMap<String, Arc<ScalarUDF>> {
    static FUNCTIONS: OnceLock<HashMap<String, Arc<ScalarUDF>>> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        SessionStateBuilder::new()
            .with_default_features()
            .build()
            .scalar_functions()
            .clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::{Masker, Policy};
    use crate::scan::ScanShared;
    use crate::sql::Access;
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion_proto::physical_plan::DefaultPhysicalProtoConverter;
    use std::sync::atomic::AtomicUsize;
    use tracevault_schemas::rows::segment_schema;

    fn mask(key: &[u8; 32]) -> Arc<dyn ExecutionPlan> {
        let policy = Policy::default_policy();
        let profile = policy.profile_for("reader", &Default::default()).clone();
        let read: Vec<usize> = (0..segment_schema().fields().len()).collect();
        let input = Arc::new(EmptyExec::new(Arc::new(
            segment_schema().project(&read).unwrap(),
        )));
        let shared = Arc::new(ScanShared {
            access: Access {
                namespaces: vec!["alpha".into()],
                from_us: Some(5),
                to_us: None,
                diagnostics: false,
            },
            masker: Arc::new(Masker::new(&profile, key)),
            scanned: AtomicUsize::new(0),
            files: AtomicUsize::new(0),
            max_scan_rows: 10,
            fault: std::sync::Mutex::new(None),
        });
        Arc::new(MaskExec::new(input, vec![0, 1, 15], &read, shared).unwrap())
    }

    #[test]
    fn the_mask_travels_without_its_key_and_runs_only_where_the_masking_matches() {
        let key = [7u8; 32];
        let plan = mask(&key);
        let conv = DefaultPhysicalProtoConverter {};
        // A server without a masking id never lets the mask leave.
        assert!(
            PhysicalCodec::default()
                .try_encode(plan.clone(), &mut Vec::new(), &conv)
                .is_err()
        );
        let id = super::super::masking_id(None, &key);
        let mut buf = Vec::new();
        PhysicalCodec::for_server(&id)
            .try_encode(plan.clone(), &mut buf, &conv)
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("alpha") && text.contains(&id), "{text}");
        assert!(!text.contains(&hex::encode(key)), "the key never travels");
        let ctx = TaskContext::default();
        let input = plan.children()[0].clone();
        // Without masking (a scheduler): a stub that re-encodes as it came
        // and refuses to run.
        let stub = PhysicalCodec::default()
            .try_decode(&buf, std::slice::from_ref(&input), &ctx, &conv)
            .unwrap();
        let mut again = Vec::new();
        PhysicalCodec::default()
            .try_encode(stub.clone(), &mut again, &conv)
            .unwrap();
        assert_eq!(again, buf);
        assert!(stub.execute(0, Arc::new(TaskContext::default())).is_err());
        // With other masking (another key): refused.
        let policy = Arc::new(Policy::default_policy());
        let other = crate::distributed::NodeMasking {
            policy: policy.clone(),
            key: [8u8; 32],
            id: super::super::masking_id(None, &[8u8; 32]),
        };
        let spec: MaskSpec = serde_json::from_slice(buf.strip_prefix(MASK).unwrap()).unwrap();
        assert!(MaskExec::from_spec(input.clone(), spec.clone(), Some(&other)).is_err());
        // With the same masking: it runs.
        let same = crate::distributed::NodeMasking { policy, key, id };
        let exec = MaskExec::from_spec(input, spec, Some(&same)).unwrap();
        assert!(exec.execute(0, Arc::new(TaskContext::default())).is_ok());
    }

    /// A scan reaches an executor without the server's readers (DataFusion's
    /// encoding carries none): decoded under a mask by an executor, it reads
    /// through checked readers and refuses a forged file.
    #[tokio::test]
    async fn an_executor_scans_through_checked_readers() {
        use crate::checked_parquet::tests::{run, scan, store_with_forged_strings};
        let store = store_with_forged_strings().await;
        let key = [7u8; 32];
        let id = super::super::masking_id(None, &key);
        let conv = DefaultPhysicalProtoConverter {};
        let mut buf = Vec::new();
        PhysicalCodec::for_server(&id)
            .try_encode(mask(&key), &mut buf, &conv)
            .unwrap();
        let ctx = TaskContext::default();
        for (name, want) in [("bad.parquet", None), ("good.parquet", Some(2))] {
            let input = scan(&store, name).await;
            let decoded = PhysicalCodec::for_executor(store.clone())
                .try_decode(&buf, &[input], &ctx, &conv)
                .unwrap();
            let got = run(&store, decoded.children()[0].clone()).await;
            match want {
                Some(rows) => assert_eq!(got, Ok(rows), "{name}"),
                None => assert!(
                    got.as_ref()
                        .is_err_and(|e| e.contains("column b is declared a string")),
                    "{name}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_scalar_call_travels_with_its_bounds_and_only_so() {
        let limits = GuardLimits {
            max_call_bytes: 1234,
        };
        let repeat = default_scalar_functions()["repeat"].clone();
        let codec = PhysicalCodec::default();
        // DataFusion's own function never leaves the server unbounded.
        assert!(codec.try_encode_udf(&repeat, &mut Vec::new()).is_err());
        let bounded = crate::guard::bounded(repeat, limits).unwrap();
        let mut buf = Vec::new();
        codec.try_encode_udf(&bounded, &mut buf).unwrap();
        let back = codec.try_decode_udf("repeat", &buf).unwrap();
        let b = (back.inner().as_ref() as &dyn Any)
            .downcast_ref::<Bounded>()
            .expect("decoded bounded");
        assert_eq!(b.limits(), limits);
        assert_eq!(back.name(), "repeat");
        // A call without its bounds, or of a function off the allowlist, is
        // refused where the plan is decoded.
        assert!(codec.try_decode_udf("repeat", &[]).is_err());
        let mut other = BOUNDED.to_vec();
        other.extend_from_slice(br#"{"max_call_bytes":1}"#);
        let allowed: Vec<&str> = crate::guard::allowed_functions().collect();
        let off = default_scalar_functions()
            .values()
            .map(|f| f.name())
            .find(|n| !allowed.contains(n))
            .expect("a function off the allowlist");
        assert!(codec.try_decode_udf(off, &other).is_err(), "{off}");
    }
}
