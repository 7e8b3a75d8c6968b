//! Parquet files opened for reading when their writer is not trusted: every
//! stored segment (an operator with the bucket can replace one) and every
//! export bundle (`verify-bundle` checks files from anywhere). Every reader
//! of such a file loads its metadata here, so the rule below exists once.
//!
//! The rule: a column the file's embedded Arrow schema (`ARROW:schema`)
//! calls a string must be a string in the Parquet schema too (a
//! `BYTE_ARRAY` annotated UTF-8). The Parquet reader checks UTF-8 only for
//! columns so annotated, yet builds Arrow strings unchecked for any byte
//! column the embedded schema calls a string. A file declaring bare bytes a
//! string would hand its readers `&str` values that are not UTF-8 (undefined
//! behaviour), before any signature or digest of the file has been checked.

use arrow_schema::{DataType, Fields};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaData;

/// Why a file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Not a readable Parquet file.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A footer that could make a parser recurse or reserve without bound.
    #[error("unsafe footer: {0}")]
    Footer(String),
    /// A column's embedded Arrow type disagrees with its Parquet type.
    #[error("column {0} is declared a string but stored as bytes not annotated UTF-8")]
    UncheckedStrings(String),
}

/// The reader metadata of `bytes`, once [`check`] has passed it.
pub fn load(bytes: &Bytes) -> Result<ArrowReaderMetadata, InputError> {
    if let Some(p) = crate::footer_shape::problem(bytes) {
        return Err(InputError::Footer(p));
    }
    let meta = ArrowReaderMetadata::load(bytes, ArrowReaderOptions::new())?;
    check(meta.metadata())?;
    Ok(meta)
}

/// Whether every column the embedded Arrow schema of a file with metadata
/// `meta` calls a string is checked as UTF-8 when decoded: the rule, for
/// readers that load metadata their own way (DataFusion's).
pub fn check(meta: &ParquetMetaData) -> Result<(), InputError> {
    let file = meta.file_metadata();
    let declared = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())?;
    // The same Parquet schema read without the embedded Arrow schema: here a
    // byte column is a string only if the file annotates it so.
    let bare = parquet_to_arrow_schema(file.schema_descr(), None)?;
    match unchecked_string(declared.fields(), bare.fields()) {
        Some(name) => Err(InputError::UncheckedStrings(name)),
        None => Ok(()),
    }
}

/// The first column (dotted path) that `declared` calls a string where
/// `stored` does not.
fn unchecked_string(declared: &Fields, stored: &Fields) -> Option<String> {
    let (mut want, mut have) = (Vec::new(), Vec::new());
    string_paths(declared, "", &mut want);
    string_paths(stored, "", &mut have);
    want.into_iter().find(|p| !have.contains(p))
}

/// The paths of the string columns among `fields`, nested ones included
/// (a list's values take the list's path, whatever its item is named).
fn string_paths(fields: &Fields, prefix: &str, out: &mut Vec<String>) {
    for f in fields {
        let path = match prefix {
            "" => f.name().clone(),
            p => format!("{p}.{}", f.name()),
        };
        type_paths(f.data_type(), path, out);
    }
}

fn type_paths(t: &DataType, path: String, out: &mut Vec<String>) {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => out.push(path),
        DataType::Struct(fields) => string_paths(fields, &path, out),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => type_paths(f.data_type(), path, out),
        DataType::Dictionary(_, values) => type_paths(values, path, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
    use arrow_schema::{Field, Schema};
    use parquet::arrow::arrow_writer::ArrowWriterOptions;
    use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, encode_arrow_schema};
    use parquet::file::metadata::KeyValue;

    use super::*;

    /// A file whose `b` column holds `values` as bare bytes while its
    /// embedded Arrow schema calls `b` a string, as an attacker would write it.
    pub(crate) fn bytes_declared_strings(values: &[&[u8]]) -> Bytes {
        let stored = Arc::new(Schema::new(vec![Field::new("b", DataType::Binary, false)]));
        let declared = Schema::new(vec![Field::new("b", DataType::Utf8, false)]);
        let batch = RecordBatch::try_new(
            stored.clone(),
            vec![Arc::new(BinaryArray::from(values.to_vec())) as ArrayRef],
        )
        .unwrap();
        let options = ArrowWriterOptions::new().with_skip_arrow_metadata(true);
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new_with_options(&mut out, stored, options).unwrap();
        w.write(&batch).unwrap();
        w.append_key_value_metadata(KeyValue::new(
            "ARROW:schema".into(),
            encode_arrow_schema(&declared),
        ));
        w.close().unwrap();
        Bytes::from(out)
    }

    #[test]
    fn bytes_declared_strings_are_refused_before_any_row_is_decoded() {
        let file = bytes_declared_strings(&[b"fine", b"\xff\xfe not UTF-8"]);
        // The attack is real: the Parquet reader takes the declaration.
        let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).unwrap();
        assert_eq!(meta.schema().field(0).data_type(), &DataType::Utf8);
        let err = load(&file).unwrap_err();
        assert!(
            matches!(&err, InputError::UncheckedStrings(c) if c == "b"),
            "{err}"
        );
    }

    #[test]
    fn annotated_strings_and_other_columns_are_accepted() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Binary, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
                Arc::new(BinaryArray::from(vec![Some(&b"\xff"[..]), None])) as ArrayRef,
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut w = ArrowWriter::try_new(&mut out, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let meta = load(&Bytes::from(out)).unwrap();
        assert_eq!(meta.schema().fields(), schema.fields());
        // And the converter agrees that a string is stored annotated.
        let pq = ArrowSchemaConverter::new().convert(&schema).unwrap();
        assert_eq!(
            pq.column(0).converted_type(),
            parquet::basic::ConvertedType::UTF8
        );
    }
}
