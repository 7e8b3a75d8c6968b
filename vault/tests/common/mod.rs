//! Helpers shared by the vault integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracevault_schemas::Event;
use tracevault_vault::verify::{Report, VerifyOptions, verify_store};
use tracevault_vault::{LogConfig, Store, Vault, VaultOptions};

/// Options for a vault in `data` with its local default store.
pub fn opts(data: &Path, flush_interval_ms: u64) -> VaultOptions {
    VaultOptions {
        data_dir: data.to_path_buf(),
        store: None,
        origin: None,
        log: LogConfig {
            flush_interval_ms,
            ..Default::default()
        },
    }
}

/// Options with an explicit store.
pub fn opts_with_store(data: &Path, store: Store, flush_interval_ms: u64) -> VaultOptions {
    VaultOptions {
        store: Some(store),
        ..opts(data, flush_interval_ms)
    }
}

pub async fn open(data: &Path, flush_interval_ms: u64) -> Vault {
    Vault::open(opts(data, flush_interval_ms))
        .await
        .expect("open vault")
}

/// An event of `session`; `i` varies content, name and attributes.
pub fn ev(session: &str, i: u64, event_id: Option<&str>) -> Event {
    let mut v = serde_json::json!({
        "session_id": session,
        "kind": if i.is_multiple_of(2) { "reasoning" } else { "tool_call" },
        "name": format!("step-{i}"),
        "actor": "agent-7",
        "attributes": {"i": i, "tag": "t"},
    });
    // Alternate text and JSON content.
    v["content"] = if i.is_multiple_of(3) {
        serde_json::json!({"args": [i, "x"], "ok": true})
    } else {
        serde_json::json!(format!("thinking about {i}"))
    };
    if let Some(id) = event_id {
        v["event_id"] = serde_json::json!(id);
    }
    Event::from_value(v).expect("valid event")
}

/// `<data>/store`.
pub fn store_dir(data: &Path) -> PathBuf {
    data.join("store")
}

pub async fn verify(root: &Path, opts: VerifyOptions) -> Report {
    let store = Store::local(root).expect("store");
    verify_store(
        &store,
        &VerifyOptions {
            concurrency: 4,
            ..opts
        },
    )
    .await
    .expect("verify runs")
}

pub fn pinned(vault_key: ed25519_dalek::VerifyingKey) -> VerifyOptions {
    VerifyOptions {
        pinned_key: Some(vault_key),
        ..Default::default()
    }
}

pub fn describe(r: &Report) -> String {
    let mut s = String::new();
    for f in &r.findings {
        s.push_str(&format!("  finding: {f}\n"));
    }
    for w in &r.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}

pub fn assert_clean(r: &Report) {
    assert!(
        r.findings.is_empty() && r.warnings.is_empty(),
        "expected a clean report:\n{}",
        describe(r)
    );
}

/// Relative file names of every file under `root`, sorted.
pub fn list_files(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let target = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

pub const WAIT: Duration = Duration::from_secs(20);

pub fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).expect("hex hash");
    out
}
