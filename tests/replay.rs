//! `tracevault replay` in a real terminal: tmux runs it against a server
//! with a seeded session, keys are sent with `send-keys` and the screen is
//! read with `capture-pane`. Play, pause, seek, search, help and quit behave
//! as documented; masked values never reach the screen; the integrity badge
//! says verified with the pinned key, and names the index of an event
//! altered in the store.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A tmux server of its own (its own socket, no user config).
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(dir: &Path, cols: u16, rows: u16) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock").to_string_lossy().into_owned(),
        };
        let out = t.run(&[
            "new-session",
            "-d",
            "-s",
            "r",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            "sh",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-S", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux is installed (Debian package tmux)")
    }

    /// Types `keys` (tmux key names, e.g. `Enter`, `Space`, or literal text).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "r"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// Runs `tracevault replay {args}` in the shell, then echoes its exit code.
    fn replay(&self, args: &str) {
        self.text(&format!("{BIN} replay {args}; echo EXIT=$?"));
        self.keys(&["Enter"]);
    }

    /// Quits the replayer with `q` and waits for its exit code 0.
    fn quit(&self) {
        self.keys(&["q"]);
        self.wait("the exit code", |s| s.contains("EXIT=0"));
    }

    /// Types `text` literally.
    fn text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "r", "-l", text])
                .status
                .success()
        );
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "r"]).stdout).into_owned()
    }

    /// Waits until the screen satisfies `ok`; panics with the screen if not.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn seeded_session() -> Value {
    let at = |s: i64| {
        (chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap()
            + chrono::Duration::seconds(s))
        .to_rfc3339()
    };
    json!({"events": [
        {"session_id": "s1", "kind": "prompt", "actor": "user", "ts": at(0),
         "content": "What is the weather in Paris?"},
        {"session_id": "s1", "kind": "reasoning", "model": "m1", "ts": at(1),
         "content": "I should call the weather tool."},
        {"session_id": "s1", "kind": "tool_call", "name": "get_weather", "span_id": "sp1", "ts": at(2),
         "content": {"city": "Paris", "units": "metric"}},
        {"session_id": "s1", "kind": "tool_result", "name": "get_weather", "parent_span_id": "sp1", "ts": at(3),
         "content": {"temp_c": 21}},
        {"session_id": "s1", "kind": "error", "ts": at(4), "content": "rate limited by upstream"},
        {"session_id": "s1", "kind": "response", "ts": at(64),
         "content": "It is 21 C in Paris. Write to jane.doe@example.com"},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_in_a_real_terminal_plays_seeks_searches_and_shows_integrity() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A server that answers at most 4 rows a query: the replayer reads the
    // 6-event session in smaller queries instead of failing.
    let cfg = config(
        dir.path(),
        "[log]\nflush_interval_ms = 50\n[query]\nmax_result_rows = 4\n",
    );
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "prod", "agent");
    let (s, r) = post_events(
        &c,
        &srv.url,
        "prod",
        &w,
        seeded_session(),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let reader = token(&data, "reader", "prod", "responder");
    let (_, vault) = get(&c, &format!("{}/v1/vault", srv.url), Some(&reader)).await;
    let vault: Value = serde_json::from_str(&vault).unwrap();
    let vk = vault["namespaces"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();

    let t = Tmux::start(dir.path(), 120, 40);
    t.replay(&format!(
        "--server {} --token {reader} --session s1 --key '{vk}' --export-dir {}",
        srv.url,
        dir.path().display()
    ));
    // The header: session, namespace and the verdict with the pinned key.
    let s = t.wait("the in-the-log badge", |s| {
        s.contains("in the log: 6 events")
    });
    assert!(s.contains("s1") && s.contains("prod"), "{s}");
    assert!(s.contains("get_weather"), "{s}");
    // The strict profile masks the email: it never reaches the screen.
    t.keys(&["G"]);
    let s = t.wait("the last event", |s| s.contains("idx 5"));
    assert!(!s.contains("jane.doe@example.com"), "{s}");
    // Who wrote it, as the vault recorded it (not what the writer says).
    assert!(s.contains("written by agent"), "{s}");

    // Search: `/` text Enter selects the error; `n` wraps to it again.
    t.keys(&["g"]);
    t.wait("the first event", |s| s.contains("idx 0"));
    t.keys(&["/"]);
    t.text("rate limited");
    t.keys(&["Enter"]);
    t.wait("the error found", |s| {
        s.contains("idx 4") && s.contains("rate limited by upstream")
    });

    // Kind jumps and the paired tool call.
    t.keys(&["g", "t"]);
    let s = t.wait("the tool call", |s| s.contains("idx 2"));
    assert!(
        s.contains("\"city\": \"Paris\""),
        "pretty-printed arguments: {s}"
    );

    // Seek to a time offset: 1:04 is the response, after the idle gap.
    t.keys(&[":"]);
    t.text("64");
    t.keys(&["Enter"]);
    t.wait("the response at 1:04", |s| s.contains("idx 5"));

    // Play from the start at 16x: it moves; pause: it stays.
    t.keys(&["g"]);
    t.wait("the first event", |s| s.contains("idx 0"));
    for _ in 0..5 {
        t.keys(&["+"]);
    }
    t.keys(&["Space"]);
    t.wait("playback reaching the error", |s| {
        s.contains("idx 4") || s.contains("idx 5")
    });
    t.keys(&["Space"]);
    std::thread::sleep(Duration::from_millis(300));
    let paused = t.screen();
    std::thread::sleep(Duration::from_millis(1200));
    let later = t.screen();
    let at = |s: &str| {
        (0..6)
            .find(|i| s.contains(&format!("idx {i}  seq")))
            .unwrap_or(99)
    };
    assert_eq!(
        at(&paused),
        at(&later),
        "paused:\n{paused}\nlater:\n{later}"
    );

    // Copy the event as JSON to a file.
    t.keys(&["y"]);
    t.wait("the copy's status line", |s| {
        s.contains("tracevault-event-")
    });
    let copied: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("tracevault-event-")
        })
        .collect();
    assert_eq!(copied.len(), 1);
    let ev: Value = serde_json::from_slice(&std::fs::read(copied[0].path()).unwrap()).unwrap();
    assert_eq!(ev["idx"], at(&later) as u64, "{ev}");

    // Help, then quit: the shell gets the terminal back.
    t.keys(&["?"]);
    t.wait("the help", |s| s.contains("faster / slower"));
    t.keys(&["Escape"]);
    t.wait("the help closed", |s| !s.contains("faster / slower"));
    t.quit();
    assert_eq!(srv.terminate(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_altered_in_the_store_fails_the_badge_naming_its_index() {
    use base64::Engine;
    use tracevault_vault::segment::{self, SegmentSeal};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "prod", "agent");
    let (s, r) = post_events(
        &c,
        &srv.url,
        "prod",
        &w,
        seeded_session(),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let key_b64 = srv.public_key();
    assert_eq!(srv.terminate(), Some(0));

    // Intact: verified with the pinned key.
    let t = Tmux::start(dir.path(), 100, 30);
    let args = format!("--data {} --session s1 --key {key_b64}", data.display());
    t.replay(&args);
    t.wait("the verified badge", |s| s.contains("verified: 6 events"));
    t.quit();
    t.keys(&["C-l"]);
    t.text("clear");
    t.keys(&["Enter"]);

    // The tool call's arguments rewritten in the segment, re-signed with the
    // real key (an operator with the key and the bucket).
    let segs = data.join("store/ns/prod/segments");
    let file = std::fs::read_dir(&segs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let seg = segment::decode(bytes::Bytes::from(std::fs::read(&file).unwrap())).unwrap();
    let mut rows = seg.entries;
    let row = rows.iter_mut().find(|e| e.idx == 2).unwrap();
    row.content = Some(r#"{"city":"Lyon","units":"metric"}"#.into());
    let (key, _) = tracevault_vault::keys::load_or_create(&data.join("keys/log.key")).unwrap();
    let origin = format!(
        "{}/prod",
        serde_json::from_slice::<Value>(&std::fs::read(data.join("store/vault.json")).unwrap())
            .unwrap()["origin"]
            .as_str()
            .unwrap()
    );
    let hex32 = |s: &str| -> [u8; 32] { hex::decode(s).unwrap().try_into().unwrap() };
    let seal = SegmentSeal {
        chain_in: hex32(&seg.header.chain_in),
        root: base64::engine::general_purpose::STANDARD
            .decode(&seg.header.root)
            .unwrap()
            .try_into()
            .unwrap(),
        key_id: tracevault_vault::note::key_id(&origin, &key.verifying_key().to_bytes()),
        key: &key,
    };
    let (_, bytes) = segment::encode(&rows, &seal).unwrap();
    std::fs::write(&file, bytes).unwrap();

    t.replay(&args);
    let s = t.wait("the failed badge", |s| s.contains("FAILED at index 2"));
    assert!(s.contains("Lyon") || s.contains("get_weather"), "{s}");
    t.quit();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_tails_new_events_and_a_bundle_replays_offline() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), "[log]\nflush_interval_ms = 50\n");
    let srv = Server::start(&data, &["--config", cfg.to_str().unwrap()]);
    let c = client();
    let w = token(&data, "writer", "prod", "agent");
    let (s, r) = post_events(
        &c,
        &srv.url,
        "prod",
        &w,
        seeded_session(),
        "?wait=checkpoint",
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let reader = token(&data, "reader", "prod", "responder");
    let (_, vault) = get(&c, &format!("{}/v1/vault", srv.url), Some(&reader)).await;
    let vault: Value = serde_json::from_str(&vault).unwrap();
    let vk = vault["namespaces"][0]["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();

    // --follow: events posted while it runs appear, and get checked too.
    let t = Tmux::start(dir.path(), 120, 40);
    t.replay(&format!(
        "--server {} --token {reader} --session s1 --key '{vk}' --follow",
        srv.url
    ));
    t.wait("the in-the-log badge", |s| {
        s.contains("in the log: 6 events")
    });
    let more = json!({"events": [
        {"session_id": "s1", "kind": "message", "content": "late arrival one"},
        {"session_id": "s1", "kind": "message", "content": "late arrival two"},
    ]});
    let (s, r) = post_events(&c, &srv.url, "prod", &w, more, "").await;
    assert_eq!(s, 200, "{r}");
    t.wait("the new events, checked", |s| {
        s.contains("late arrival two") && s.contains("in the log: 8 events")
    });
    t.quit();
    t.text("clear");
    t.keys(&["Enter"]);

    // An approved export of the session, replayed offline from its bundle.
    let approver = token(&data, "approver", "prod", "boss");
    let r: Value = c
        .post(format!("{}/v1/exports", srv.url))
        .bearer_auth(&reader)
        .json(&json!({"namespace": "prod", "session_id": "s1", "reason": "incident 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["id"].as_str().expect("an export id").to_string();
    let ok = c
        .post(format!("{}/v1/exports/{id}/approve", srv.url))
        .bearer_auth(&approver)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let bundle = c
        .get(format!("{}/v1/exports/{id}/bundle", srv.url))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(srv.terminate(), Some(0));
    let file = dir.path().join("export.tar");
    std::fs::write(&file, &bundle).unwrap();
    t.replay(&format!("--bundle {} --key '{vk}'", file.display()));
    let s = t.wait("the bundle verified", |s| s.contains("verified: 8 events"));
    assert!(!s.contains("jane.doe@example.com"), "{s}");
    t.quit();
    t.text("clear");
    t.keys(&["Enter"]);

    // One proof hash changed in the bundle: the badge names that entry.
    let mut bent = bundle.to_vec();
    let at = bent
        .windows(10)
        .position(|w| w == b"\"proof\":[\"")
        .unwrap()
        + 10;
    bent[at] = if bent[at] == b'A' { b'B' } else { b'A' };
    // The index of that proof's line (`{"index":N,...,"proof":[...`).
    let key = b"{\"index\":";
    let from = bent[..at]
        .windows(key.len())
        .rposition(|w| w == key)
        .unwrap()
        + key.len();
    let digits: String = bent[from..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    let bad = dir.path().join("bent.tar");
    std::fs::write(&bad, &bent).unwrap();
    t.replay(&format!("--bundle {} --key '{vk}'", bad.display()));
    let want = format!("FAILED at index {digits}");
    t.wait("the failed badge", |s| s.contains(&want));
    t.quit();
}
