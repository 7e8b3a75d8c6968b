//! Query-time masking end to end: seeded PII and secrets of every built-in
//! detector type are never returned raw to a reader, not in SQL JSON rows,
//! not in Arrow IPC output, not in entry reads; equal values hash equally
//! across rows; and the raw values are still in the Parquet files.

mod common;

use common::*;
use serde_json::{Value, json};

/// (detector label, seeded text, the raw secret that must never leave).
const SEEDS: [(&str, &str, &str); 11] = [
    (
        "email",
        "write to alice@example.com today",
        "alice@example.com",
    ),
    ("phone", "call +44 20 7946 0958 now", "7946 0958"),
    ("card", "card 4111 1111 1111 1111 ok", "4111 1111 1111 1111"),
    (
        "iban",
        "pay DE89 3704 0044 0532 0130 00 now",
        "DE89 3704 0044 0532 0130 00",
    ),
    ("ipv4", "from 203.0.113.77 port 22", "203.0.113.77"),
    (
        "ipv6",
        "from 2001:db8::8a2e:370:7334 ok",
        "2001:db8::8a2e:370:7334",
    ),
    ("ssn", "SSN 219-09-9999 on file", "219-09-9999"),
    (
        "api_key",
        "key AKIAIOSFODNN7EXAMPLE used",
        "AKIAIOSFODNN7EXAMPLE",
    ),
    (
        "api_key",
        "Authorization: Bearer abc123def456ghi789jkl",
        "abc123def456ghi789jkl",
    ),
    (
        "jwt",
        "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c end",
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0\nabc=\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA0",
    ),
];

const POLICY: &str = r#"
[[profile]]
name = "joinable"
roles = ["reader"]

[[profile.rule]]
detector = "email"
action = "hash"

[[profile.rule]]
detector = "all"
action = "redact"

[[profile.rule]]
detector = "email"
action = "redact"
columns = ["name", "actor"]
"#;

fn assert_no_raw(what: &str, text: &str) {
    for (label, _, raw) in SEEDS {
        assert!(
            !text.contains(raw),
            "{what}: the raw {label} value {raw:?} left the server: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_seeded_secret_leaves_raw_by_any_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "masking_policy = {:?}\n[log]\nflush_interval_ms = 50\n",
            policy.to_str().unwrap()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    let w = token(&data, "writer", "pii", "agent");
    let mut events: Vec<Value> = SEEDS
        .iter()
        .map(|(_, text, _)| json!({"session_id": "s", "kind": "tool_result", "content": text}))
        .collect();
    // Nested JSON attributes and JSON content carry them too.
    events.push(
        json!({"session_id": "s", "kind": "tool_call", "name": "lookup",
        "content": {"args": {"ip": "203.0.113.77", "cards": ["4111 1111 1111 1111"]}},
        "attributes": {"user": {"email": "alice@example.com", "ssn": "219-09-9999"}}}),
    );
    // A column the policy names outside content/attributes: masked in the
    // event and in the committed record (the leaf) alike.
    events.push(json!({"session_id": "s", "kind": "annotation",
        "name": "mail alice@example.com", "actor": "alice@example.com", "content": "x"}));
    let (s, r) = post_events(&c, url, "pii", &w, json!({"events": events}), "").await;
    assert_eq!(s, 200, "{r}");
    let n = events.len() as u64;
    assert_eq!(wait_size(&c, url, "pii", &w, n).await, n);
    let reader = token(&data, "reader", "pii", "auditor");

    // SQL, JSON rows: nothing raw; every detector's label is there.
    let r = c
        .post(format!("{url}/v1/query"))
        .bearer_auth(&reader)
        .json(&json!({"sql": "SELECT idx, content, attributes, name, actor FROM traces ORDER BY idx"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let text = body.to_string();
    assert_no_raw("SQL JSON", &text);
    for (label, _, _) in SEEDS.iter().filter(|(l, ..)| *l != "email") {
        assert!(
            text.contains(&format!("[REDACTED:{label}]")),
            "no {label} mask in {text}"
        );
    }
    // Equal emails hash to equal tags, in text content and nested attributes.
    let tags: Vec<String> = regex_tags(&text, "[HASH:email:");
    assert_eq!(tags.len(), 2, "{text}");
    assert!(text.contains("[REDACTED:email]"), "{text}");
    assert_eq!(tags[0], tags[1], "equal values hash equally");
    // Expressions see masked values only.
    let (_, b) = sql(
        &c,
        url,
        &reader,
        "SELECT count(*) FROM traces WHERE content LIKE '%4111%' OR attributes LIKE '%alice%'",
    )
    .await;
    assert_eq!(b["rows"][0][0], 0, "{b}");

    // Arrow IPC output: the raw strings are not in the stream's bytes.
    let r = c
        .post(format!("{url}/v1/query"))
        .bearer_auth(&reader)
        .header("accept", "application/vnd.apache.arrow.stream")
        .json(&json!({"sql": "SELECT * FROM traces"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.len() > 1000);
    assert_no_raw("Arrow IPC", &String::from_utf8_lossy(&bytes));

    // Entry reads.
    for i in 0..n {
        let (s, text) = get(&c, &format!("{url}/v1/logs/pii/entries/{i}"), Some(&reader)).await;
        assert_eq!(s, 200, "{text}");
        assert_no_raw(&format!("entry {i}"), &text);
        let e: Value = serde_json::from_str(&text).unwrap();
        if i == n - 1 {
            // A verbatim column masked: the record and its hash would let a
            // reader confirm guesses of it, so both are withheld.
            assert_eq!(e["leaf_masked"], json!(["name", "actor"]), "{text}");
            assert!(e["leaf"].is_null() && e["leaf_hash"].is_null(), "{text}");
        } else {
            assert_eq!(e["leaf_masked"], json!([]), "{text}");
            assert!(
                e["leaf"].is_object() && e["leaf_hash"].is_string(),
                "{text}"
            );
        }
    }
    // SQL withholds the same rows' leaf hashes, whether or not the masked
    // column is selected, and only those rows'.
    let (s, b) = sql(
        &c,
        url,
        &reader,
        "SELECT idx, leaf_hash FROM traces WHERE ns = 'pii' ORDER BY idx",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), n as usize, "{b}");
    for r in rows {
        let i = r[0].as_u64().unwrap();
        assert_eq!(r[1].is_null(), i == n - 1, "row {i}: {b}");
    }
    assert_eq!(srv.terminate(), Some(0));

    // The vault still holds every raw value (read by pyarrow).
    let stored = serde_json::to_string(&stored_rows(&data, "pii")).unwrap();
    for (label, _, raw) in SEEDS {
        let raw_json = serde_json::to_string(raw).unwrap();
        assert!(
            stored.contains(raw_json.trim_matches('"')),
            "raw {label} value missing from the Parquet files"
        );
    }
}

/// Every `[HASH:email:...]` tag in `text`.
fn regex_tags(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at..];
            rest[..rest.find(']').map_or(rest.len(), |e| e + 1)].to_string()
        })
        .collect()
}

/// A filter on a column the caller's profile masks is evaluated on what
/// the caller sees, never below the mask (where it could prune by, or count,
/// the raw values): the raw session id matches nothing, its pseudonym
/// matches its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_a_masked_session_id_sees_the_masked_values() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[profile]]\nname = \"pseudonymous\"\nroles = [\"reader\"]\n\n\
         [[profile.rule]]\ndetector = \"custom\"\npattern = '[a-z-]+-session'\nlabel = \"sid\"\n\
         action = \"hash\"\ncolumns = [\"session_id\"]\n",
    )
    .unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "masking_policy = {:?}\n[log]\nflush_interval_ms = 50\n",
            policy.to_str().unwrap()
        ),
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let url = &srv.url;
    let w = token(&data, "writer", "pii", "agent");
    let events: Vec<Value> = (0..5)
        .map(|i| {
            let session = if i < 3 {
                "alice-private-session"
            } else {
                "other"
            };
            json!({"session_id": session, "kind": "output", "content": format!("{i}")})
        })
        .collect();
    let (s, r) = post_events(
        &c,
        url,
        "pii",
        &w,
        json!({"events": events}),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let reader = token(&data, "reader", "pii", "auditor");
    let count = |q: String| {
        let (c, url, reader) = (c.clone(), url.clone(), reader.clone());
        async move {
            let (s, b) = sql(&c, &url, &reader, &q).await;
            assert_eq!(s, 200, "{q}: {b}");
            b
        }
    };
    let b = count("SELECT count(*) FROM traces WHERE session_id = 'alice-private-session'".into())
        .await;
    assert_eq!(b["rows"], json!([[0]]), "the raw value matched: {b}");
    let b =
        count("SELECT session_id, count(*) FROM traces GROUP BY session_id ORDER BY 2 DESC".into())
            .await;
    let shown = b["rows"][0][0].as_str().unwrap().to_string();
    assert!(!shown.contains("alice"), "{b}");
    assert_eq!(b["rows"][0][1], 3, "{b}");
    let b = count(format!(
        "SELECT count(*) FROM traces WHERE session_id = '{shown}'"
    ))
    .await;
    assert_eq!(b["rows"], json!([[3]]), "{b}");
}
