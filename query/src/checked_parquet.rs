//! Segment scans that refuse a file before decoding it when its strings
//! would be decoded unchecked: DataFusion's Parquet readers, each wrapped so
//! that the metadata it loads passes the vault's rule for untrusted Parquet
//! files ([`tracevault_vault::parquet_input`]) first. An operator with the
//! bucket could otherwise swap in a segment whose bytes, declared strings,
//! reach SQL functions and the answer's JSON without being UTF-8.
//!
//! Every scan of the `traces` table goes through [`CheckedReaderFactory`]:
//! the server's and a query worker's from `scan.rs`, a Ballista executor's
//! through [`check_scans`] when it decodes the masking operator above them.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::Result as DfResult;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::ObjectStore;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

/// A [`ParquetFileReaderFactory`] whose readers check the metadata they
/// load ([`tracevault_vault::parquet_input::check`]) before any page is read.
#[derive(Debug)]
pub(crate) struct CheckedReaderFactory(pub(crate) Arc<dyn ParquetFileReaderFactory>);

impl ParquetFileReaderFactory for CheckedReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .0
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(CheckedReader(inner)))
    }
}

struct CheckedReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for CheckedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let meta = self.0.get_metadata(options).await?;
            tracevault_vault::parquet_input::check(&meta)
                .map_err(|e| ParquetError::General(e.to_string()))?;
            Ok(meta)
        }
        .boxed()
    }
}

/// `plan` with every Parquet scan in it reading through a
/// [`CheckedReaderFactory`] (over its own factory, or DataFusion's default
/// one on `store` where it has none, as on a Ballista executor, where a
/// decoded scan never carries one).
pub(crate) fn check_scans(
    plan: Arc<dyn ExecutionPlan>,
    store: &Arc<dyn ObjectStore>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some((config, source)) = exec.downcast_to_file_source::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        // (A factory already checked is checked twice: harmless, and cheap.)
        let inner = match source.parquet_file_reader_factory() {
            Some(f) => f.clone(),
            None => Arc::new(DefaultParquetFileReaderFactory::new(store.clone())),
        };
        let source = source
            .clone()
            .with_parquet_file_reader_factory(Arc::new(CheckedReaderFactory(inner)));
        let mut config = config.clone();
        config.file_source = Arc::new(source);
        Ok(Transformed::yes(Arc::new(
            exec.clone().with_data_source(Arc::new(config)),
        )))
    })
    .map(|t| t.data)
}

#[cfg(test)]
pub(crate) mod tests {
    use arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::physical_plan::FileScanConfigBuilder;
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::prelude::SessionContext;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::file::metadata::KeyValue;

    use super::*;

    const URL: &str = "memory://";

    /// A store holding `good.parquet` (a string column `b`, annotated) and
    /// `bad.parquet`: the same values as bare bytes, one not UTF-8, which the
    /// embedded Arrow schema calls a string (an attacker's file).
    pub(crate) async fn store_with_forged_strings() -> Arc<dyn ObjectStore> {
        let values: [&[u8]; 2] = [b"fine", b"\xff\xfe not UTF-8"];
        let declared = Arc::new(Schema::new(vec![Field::new("b", DataType::Utf8, false)]));
        let stored = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, false)]));
        let file = |schema: Arc<Schema>, column: ArrayRef, options: ArrowWriterOptions| {
            let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
            let mut w = ArrowWriter::try_new_with_options(Vec::new(), schema, options).unwrap();
            w.write(&batch).unwrap();
            w
        };
        let good = file(
            declared.clone(),
            Arc::new(StringArray::from(vec!["fine", "also fine"])),
            ArrowWriterOptions::new(),
        );
        let mut bad = file(
            stored,
            Arc::new(BinaryArray::from(values.to_vec())),
            ArrowWriterOptions::new().with_skip_arrow_metadata(true),
        );
        bad.append_key_value_metadata(KeyValue::new(
            "ARROW:schema".into(),
            parquet::arrow::encode_arrow_schema(&declared),
        ));
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (name, w) in [("good.parquet", good), ("bad.parquet", bad)] {
            let bytes = w.into_inner().unwrap();
            store
                .put(&Path::from(name), PutPayload::from(bytes))
                .await
                .unwrap();
        }
        store
    }

    /// A scan of `name` in that store as a string column `b`, as a decoded
    /// plan carries it (no reader factory of its own).
    pub(crate) async fn scan(store: &Arc<dyn ObjectStore>, name: &str) -> Arc<dyn ExecutionPlan> {
        let size = store.head(&Path::from(name)).await.unwrap().size;
        let schema = Arc::new(Schema::new(vec![Field::new("b", DataType::Utf8, false)]));
        let config = FileScanConfigBuilder::new(
            ObjectStoreUrl::parse(URL).unwrap(),
            Arc::new(ParquetSource::new(schema)),
        )
        .with_file(PartitionedFile::new(name, size))
        .build();
        DataSourceExec::from_data_source(config)
    }

    /// The rows of `plan`, or its error's text.
    pub(crate) async fn run(
        store: &Arc<dyn ObjectStore>,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<usize, String> {
        let ctx = SessionContext::new();
        ctx.register_object_store(&url::Url::parse(URL).unwrap(), store.clone());
        datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .map(|batches| batches.iter().map(|b| b.column(0).len()).sum())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn scans_refuse_files_whose_strings_would_go_unchecked() {
        let store = store_with_forged_strings().await;
        // The attack is real: DataFusion's own reader hands on both rows
        // (release builds) or panics in the Parquet reader's debug check;
        // it never refuses the file with an error.
        let plain = scan(&store, "bad.parquet").await;
        let s = store.clone();
        let plain = tokio::spawn(async move { run(&s, plain).await }).await;
        assert!(
            matches!(plain, Ok(Ok(2))) || plain.as_ref().is_err_and(|e| e.is_panic()),
            "{plain:?}"
        );
        let checked = check_scans(scan(&store, "bad.parquet").await, &store).unwrap();
        let err = run(&store, checked).await.unwrap_err();
        assert!(err.contains("column b is declared a string"), "{err}");
        // An honest file reads as before.
        let checked = check_scans(scan(&store, "good.parquet").await, &store).unwrap();
        assert_eq!(run(&store, checked).await, Ok(2));
    }
}
