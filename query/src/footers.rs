//! Segment footers, and the file statistics derived from them, cached per
//! process, so that a query does not open every segment to learn that most
//! cannot hold what it looks for.
//!
//! A one-session lookup at 10M entries spans 240 segments; reading and
//! decoding their footers was most of its time. Two caches:
//! - [`footer_cache`]: decoded Parquet footers, used by every scan of this
//!   process (DataFusion's own cache type, consulted by its Parquet reader);
//! - file statistics ([`cached_statistics`], [`statistics`]): per segment,
//!   the min/max of every column over its row groups. A scan attaches them to
//!   its files, and DataFusion then skips a file whose statistics exclude the
//!   query's filter before opening it. A query worker process starts with
//!   empty caches: the server sends it the statistics of the segments of its
//!   read plans (taken from its own cache, or read once), encoded with
//!   DataFusion's protobuf ([`encoded_statistics`], [`decode`]). Each
//!   segment's encoding is kept with its statistics once made: encoding all
//!   240 segments' again for every query took about 8 ms of a lookup's 49.
//!
//! Why a cache may be trusted: a segment object is written once under its
//! own name (compaction and erasure write new generations under new names,
//! then delete the old), and entries are keyed by path and checked against
//! the listed size. A segment replaced in place behind the server's back (a
//! bucket attack) may be read with its old footer: the query then fails or
//! reads what the new object holds, and `verify`, which reads every footer
//! afresh and checks row-group statistics against the rows, finds the
//! replacement. Statistics only ever prune; they are never shown to a caller
//! (`MaskExec` reports none upwards, so no aggregate is answered from them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::common::Statistics;
use datafusion::datasource::physical_plan::parquet::metadata::{
    CachedParquetMetaData, DFParquetMetadata,
};
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::cache::default_cache::DefaultCache;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use prost::Message;
use tracevault_schemas::rows::segment_schema;

/// Bytes read from the end of a segment to find its footer: one read for
/// the footer of a segment of up to some hundred thousand entries (about
/// 11 KB for 50,000) instead of two (its length, then itself).
pub(crate) const FOOTER_READ_BYTES: usize = 64 << 10;

/// Memory for the decoded footers of [`footer_cache`] (least recently used
/// out first): some thousand segments' worth.
const FOOTER_CACHE_BYTES: usize = 64 << 20;

/// File statistics kept ([`cached_statistics`]); past it the map starts over.
const MAX_STATISTICS: usize = 100_000;

/// The decoded Parquet footers of the segments this process has read, by
/// object path, valid while the size matches (see the module docs).
pub(crate) fn footer_cache() -> Arc<FileMetadataCache> {
    static CACHE: OnceLock<Arc<FileMetadataCache>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            Arc::new(DefaultCache::new(FOOTER_CACHE_BYTES).with_name("tracevault segment footers"))
        })
        .clone()
}

/// A segment's statistics, for its size, and their protobuf encoding once
/// a worker needed it (servers running queries in threads never do).
struct Cached {
    size: u64,
    stats: Arc<Statistics>,
    encoded: Option<Arc<[u8]>>,
}

type StatisticsMap = Mutex<HashMap<Path, Cached>>;

fn statistics_map() -> &'static StatisticsMap {
    static MAP: OnceLock<StatisticsMap> = OnceLock::new();
    MAP.get_or_init(Default::default)
}

/// The object as the Parquet reader names it (`PartitionedFile::new`'s
/// fixed modification time: the cache compares size and that).
fn object_meta(path: &Path, size: u64) -> ObjectMeta {
    ObjectMeta {
        location: path.clone(),
        last_modified: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        size,
        e_tag: None,
        version: None,
    }
}

/// The statistics of the segment at `path` of `size` bytes, if this process
/// has them or has its footer (no I/O).
pub(crate) fn cached_statistics(path: &Path, size: u64) -> Option<Arc<Statistics>> {
    let map = statistics_map();
    if let Some(c) = map.lock().ok()?.get(path)
        && c.size == size
    {
        return Some(c.stats.clone());
    }
    let entry = footer_cache().get(path)?;
    if !entry.is_valid_for(&object_meta(path, size)) {
        return None;
    }
    // DataFusion 55 has two types of this name; its readers cache the one
    // of `metadata` (downcasting to the other found nothing, so a server
    // running queries in threads never skipped a segment unopened).
    let footer = entry
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()?
        .parquet_metadata()
        .clone();
    remember(path, size, &footer)
}

/// The statistics of the segment at `path` of `size` bytes: cached, or from
/// its footer (read once, then cached).
async fn statistics(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
) -> Option<Arc<Statistics>> {
    if let Some(s) = cached_statistics(path, size) {
        return Some(s);
    }
    let meta = object_meta(path, size);
    let footer = DFParquetMetadata::new(store.as_ref(), &meta)
        .with_file_metadata_cache(Some(footer_cache()))
        .with_metadata_size_hint(Some(FOOTER_READ_BYTES))
        .with_page_index_policy(Some(PageIndexPolicy::Skip))
        .fetch_metadata()
        .await
        // Without statistics the file is opened and pruned as before.
        .ok()?;
    remember(path, size, &footer)
}

/// [`statistics`] as DataFusion's protobuf, for a worker's request: encoded
/// once per segment, then kept beside them.
pub(crate) async fn encoded_statistics(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    size: u64,
) -> Option<Arc<[u8]>> {
    let kept = (statistics_map().lock().ok()?.get(path))
        .filter(|c| c.size == size)
        .and_then(|c| c.encoded.clone());
    if kept.is_some() {
        return kept;
    }
    let stats = statistics(store, path, size).await?;
    let encoded: Arc<[u8]> = encode(&stats).into();
    let mut map = statistics_map().lock().ok()?;
    if let Some(c) = map.get_mut(path).filter(|c| c.size == size) {
        c.encoded = Some(encoded.clone());
    }
    Some(encoded)
}

fn remember(path: &Path, size: u64, footer: &ParquetMetaData) -> Option<Arc<Statistics>> {
    let stats = Arc::new(
        DFParquetMetadata::statistics_from_parquet_metadata(footer, &segment_schema()).ok()?,
    );
    let mut map = statistics_map().lock().ok()?;
    if map.len() >= MAX_STATISTICS {
        map.clear();
    }
    map.insert(
        path.clone(),
        Cached {
            size,
            stats: stats.clone(),
            encoded: None,
        },
    );
    Some(stats)
}

/// `stats` as DataFusion's protobuf.
fn encode(stats: &Statistics) -> Vec<u8> {
    datafusion_proto_common::protobuf_common::Statistics::from(stats).encode_to_vec()
}

/// The inverse of [`encode`]; `None` for anything else (the file is then
/// opened and pruned as without statistics).
pub(crate) fn decode(bytes: &[u8]) -> Option<Arc<Statistics>> {
    let proto = datafusion_proto_common::protobuf_common::Statistics::decode(bytes).ok()?;
    let stats = Statistics::try_from(&proto).ok()?;
    // Statistics of another shape would not describe a segment.
    (stats.column_statistics.len() == segment_schema().fields().len()).then(|| Arc::new(stats))
}

#[cfg(test)]
mod tests {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::stats::Precision;
    use datafusion::common::{ColumnStatistics, ScalarValue};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::parquet::{
        CachedParquetFileReaderFactory, ParquetFileReaderFactory,
    };
    use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use parquet::arrow::ArrowWriter;

    use super::*;

    /// A footer the scans' readers loaded makes the segment's statistics
    /// known without I/O: what lets a server running queries in threads
    /// skip segments unopened from its second query on.
    #[tokio::test]
    async fn statistics_come_from_the_footers_the_scans_read() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "session_id",
            DataType::Utf8,
            false,
        )]));
        let sessions = StringArray::from(vec!["s1", "s9", "s5"]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(sessions)]).unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), schema, None).unwrap();
        w.write(&batch).unwrap();
        let bytes = w.into_inner().unwrap();
        let size = bytes.len() as u64;
        // The caches are the process's: a name no other test uses.
        let path = Path::from("footers-test/statistics-from-read-footers.parquet");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        store.put(&path, bytes.into()).await.unwrap();
        assert!(cached_statistics(&path, size).is_none(), "nothing read yet");

        // A scan's reader (as `scan.rs` makes it) loads the footer.
        CachedParquetFileReaderFactory::new(store, footer_cache())
            .create_reader(
                0,
                PartitionedFile::new(path.to_string(), size),
                Some(FOOTER_READ_BYTES),
                &ExecutionPlanMetricsSet::new(),
            )
            .unwrap()
            .get_metadata(None)
            .await
            .unwrap();
        let stats = cached_statistics(&path, size).expect("statistics from the cached footer");
        let col = &stats.column_statistics[segment_schema().index_of("session_id").unwrap()];
        assert_eq!(col.min_value, Precision::Exact(ScalarValue::from("s1")));
        assert_eq!(col.max_value, Precision::Exact(ScalarValue::from("s9")));
        // Another size is another object: not these statistics.
        assert!(cached_statistics(&path, size + 1).is_none());
    }

    #[test]
    fn statistics_travel_to_a_worker_unchanged_and_garbage_gives_none() {
        let mut stats = Statistics::new_unknown(&segment_schema());
        stats.num_rows = Precision::Exact(50_000);
        stats.column_statistics[2] = ColumnStatistics {
            min_value: Precision::Exact(ScalarValue::Utf8(Some("s00000001-0".into()))),
            max_value: Precision::Inexact(ScalarValue::Utf8(Some("s00000099-4".into()))),
            ..ColumnStatistics::new_unknown()
        };
        let back = decode(&encode(&stats)).expect("decodes");
        assert_eq!(*back, stats);
        for bad in [&b""[..], b"zz", &[0, 0xff, 0, 0xff]] {
            // Unreadable statistics only lose the skipping, never the file.
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }
}
