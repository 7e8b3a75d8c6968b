//! Keeps `schemas/event.schema.json` identical to the schema generated from the
//! Rust type. Run with `UPDATE_SCHEMA=1` to rewrite the file after a change.

use std::path::PathBuf;

#[test]
fn checked_in_schema_matches_rust_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("event.schema.json");
    let generated =
        serde_json::to_string_pretty(&tracevault_schemas::event_json_schema()).unwrap() + "\n";
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path)
        .expect("schemas/event.schema.json is missing; run with UPDATE_SCHEMA=1");
    assert_eq!(
        on_disk, generated,
        "schemas/event.schema.json is stale; rerun with UPDATE_SCHEMA=1"
    );
}

#[test]
fn schema_names_every_field_and_kind() {
    let s = tracevault_schemas::event_json_schema();
    let text = s.to_string();
    for f in [
        "session_id",
        "kind",
        "ts",
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "name",
        "actor",
        "model",
        "content",
        "attributes",
    ] {
        assert!(s["properties"].get(f).is_some(), "schema lacks {f}");
    }
    for k in tracevault_schemas::Kind::ALL {
        assert!(
            text.contains(&format!("\"{}\"", k.as_str())),
            "schema lacks kind {}",
            k.as_str()
        );
    }
    assert_eq!(s["additionalProperties"], serde_json::Value::Bool(false));
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["session_id", "kind"]);
}
