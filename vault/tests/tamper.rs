//! Tampering with a real store, one change per case on a fresh copy: the
//! verifier must report each one, naming the object, index and what changed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use common::*;
use ed25519_dalek::{SigningKey, VerifyingKey};
use tempfile::TempDir;
use tracevault_vault::merkle::MerkleTree;
use tracevault_vault::note::{self, Checkpoint};
use tracevault_vault::record::{Entry, Sequence};
use tracevault_vault::segment::{self, SegmentSeal};
use tracevault_vault::verify::{Finding, Report, VerifyOptions};

/// Rows per append round; every round becomes one segment and one checkpoint.
const ROWS: u64 = 5;
/// Rounds per namespace.
const NAMESPACES: [(&str, u64); 3] = [("alpha", 5), ("beta", 2), ("gamma", 1)];

struct Fixture {
    _dir: TempDir,
    data: PathBuf,
    key: SigningKey,
    origin: String,
    /// Checkpoint note of alpha after each round (sizes 5, 10, ...).
    alpha_checkpoints: Vec<String>,
}

static FIXTURE: tokio::sync::OnceCell<Fixture> = tokio::sync::OnceCell::const_new();

async fn fixture() -> &'static Fixture {
    FIXTURE
        .get_or_init(|| async {
            // A static is never dropped: clear fixtures left by earlier runs.
            if let Ok(rd) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) {
                for e in rd.flatten() {
                    let old = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if e.file_name()
                        .to_string_lossy()
                        .starts_with("tamper-fixture")
                        && old.is_some_and(|age| age > Duration::from_secs(600))
                    {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
            let dir = tempfile::Builder::new()
                .prefix("tamper-fixture")
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap();
            let data = dir.path().to_path_buf();
            let vault = open(&data, 20).await;
            let mut alpha_checkpoints = Vec::new();
            for (ns, rounds) in NAMESPACES {
                for r in 0..rounds {
                    let evs = (0..ROWS)
                        .map(|i| {
                            ev(
                                &format!("sess-{}", i % 2),
                                r * ROWS + i,
                                Some(&format!("{ns}-{r}-{i}")),
                            )
                        })
                        .collect();
                    vault.append(ns, evs, "writer@test").await.unwrap();
                    let (size, text) = vault
                        .log(ns)
                        .await
                        .unwrap()
                        .wait_published((r + 1) * ROWS, WAIT)
                        .await
                        .unwrap();
                    assert_eq!(size, (r + 1) * ROWS, "one segment per round");
                    if ns == "alpha" {
                        alpha_checkpoints.push(text);
                    }
                }
            }
            vault.shutdown(Duration::from_secs(10)).await;
            let origin = vault.meta().origin.clone();
            drop(vault);
            let key = tracevault_vault::keys::load_or_create(&data.join("keys/log.key"))
                .unwrap()
                .0;
            Fixture {
                _dir: dir,
                data,
                key,
                origin,
                alpha_checkpoints,
            }
        })
        .await
}

impl Fixture {
    fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
    /// A fresh copy of the store.
    fn copy(&self) -> TempDir {
        let d = tempfile::tempdir().unwrap();
        copy_dir(&store_dir(&self.data), d.path());
        d
    }
    fn origin_of(&self, ns: &str) -> String {
        format!("{}/{ns}", self.origin)
    }
}

fn seg_object(ns: &str, round: u64) -> String {
    format!(
        "ns/{ns}/segments/{}",
        segment::segment_file_name(round * ROWS, round * ROWS + ROWS - 1)
    )
}
fn cp_object(ns: &str, size: u64) -> String {
    format!("ns/{ns}/checkpoints/{size:020}")
}

/// Decodes the segment at `object`, lets `edit` change its rows, and writes it
/// back under the same name, signed by `key` with the original header's
/// chain_in and root (so only what `edit` did differs).
fn rewrite_segment(
    root: &Path,
    object: &str,
    key: &SigningKey,
    key_id: [u8; 4],
    edit: impl FnOnce(&mut Vec<Entry>),
) {
    resign_segment(root, object, object, key, key_id, edit, |_, _| {});
}

/// As [`rewrite_segment`], written to `to`, and `seal` may change the
/// header's chain_in and root (the key holder signing what it likes).
fn resign_segment(
    root: &Path,
    object: &str,
    to: &str,
    key: &SigningKey,
    key_id: [u8; 4],
    edit: impl FnOnce(&mut Vec<Entry>),
    seal: impl FnOnce(&mut [u8; 32], &mut [u8; 32]),
) {
    let seg = segment::decode(Bytes::from(std::fs::read(root.join(object)).unwrap())).unwrap();
    let mut entries = seg.entries;
    edit(&mut entries);
    let mut root_hash: [u8; 32] = B64.decode(&seg.header.root).unwrap().try_into().unwrap();
    let mut chain_in = hex32(&seg.header.chain_in);
    seal(&mut chain_in, &mut root_hash);
    let seal = SegmentSeal {
        chain_in,
        root: root_hash,
        key_id,
        key,
    };
    let (_, bytes) = segment::encode(&entries, &seal).unwrap();
    std::fs::write(root.join(to), bytes).unwrap();
}

fn real_key_id(f: &Fixture, ns: &str) -> [u8; 4] {
    note::key_id(&f.origin_of(ns), &f.public().to_bytes())
}

/// Asserts that `report` has exactly the `expected` findings, each given as
/// (ns, object, index, message substring), in any order.
#[track_caller]
fn assert_findings(report: &Report, expected: &[(&str, &str, Option<u64>, &str)]) {
    let all = describe(report);
    let matches = |f: &Finding, e: &(&str, &str, Option<u64>, &str)| {
        f.ns == e.0 && f.object == e.1 && f.index == e.2 && f.message.contains(e.3)
    };
    for e in expected {
        assert!(
            report.findings.iter().any(|f| matches(f, e)),
            "missing finding {e:?}; report:\n{all}"
        );
    }
    for f in &report.findings {
        assert!(
            expected.iter().any(|e| matches(f, e)),
            "unexpected finding {f}; report:\n{all}"
        );
    }
    // One line per finding, naming namespace and object.
    for f in &report.findings {
        let line = f.to_string();
        assert!(
            !line.contains('\n') && line.contains(&format!("object={}", f.object)),
            "{line}"
        );
    }
}

async fn check(root: &Path, f: &Fixture) -> Report {
    verify(root, pinned(f.public())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untouched_store_verifies_clean() {
    let f = fixture().await;
    let d = f.copy();
    let r = check(d.path(), f).await;
    assert_clean(&r);
    let mut got: Vec<_> = r
        .namespaces
        .iter()
        .map(|s| (s.ns.as_str(), s.entries, s.segments))
        .collect();
    got.sort();
    assert_eq!(got, [("alpha", 25, 5), ("beta", 10, 2), ("gamma", 5, 1)]);
    // Every stored alpha checkpoint, pinned, is consistent with the store.
    for t in &f.alpha_checkpoints {
        assert_clean(
            &verify(
                d.path(),
                VerifyOptions {
                    pinned_checkpoint: Some(t.clone()),
                    ..pinned(f.public())
                },
            )
            .await,
        );
    }
    // Without a pinned key: one warning, no findings.
    let r = verify(d.path(), VerifyOptions::default()).await;
    assert!(r.findings.is_empty(), "{}", describe(&r));
    assert_eq!(r.warnings.len(), 1, "{}", describe(&r));
    assert!(r.warnings[0].contains("no --key given"), "{}", describe(&r));
    // One namespace only.
    let r = verify(
        d.path(),
        VerifyOptions {
            namespace: Some("beta".into()),
            ..pinned(f.public())
        },
    )
    .await;
    assert_clean(&r);
    assert_eq!(r.namespaces.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_edited_content_value() {
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 1);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "alpha"), |rows| {
        assert_eq!(rows[2].idx, 7);
        rows[2].content = Some("I never said that".into());
    });
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            Some(7),
            "content does not match its digest (value edited)",
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_edited_attributes_value() {
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("beta", 0);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "beta"), |rows| {
        rows[4].attributes = Some(r#"{"i":4,"tag":"forged"}"#.into());
    });
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "beta",
            &obj,
            Some(4),
            "attributes does not match its digest (value edited)",
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_edited_metadata_fields() {
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 2);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "alpha"), |rows| {
        assert_eq!((rows[1].idx, rows[3].idx), (11, 13));
        rows[1].name = Some("harmless-step".into());
        rows[3].ingested_by = "someone-else".into();
    });
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[
            (
                "alpha",
                &obj,
                Some(11),
                "committed record does not match its leaf hash (metadata edited)",
            ),
            (
                "alpha",
                &obj,
                Some(13),
                "committed record does not match its leaf hash (metadata edited)",
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_dropped_row() {
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 1);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "alpha"), |rows| {
        let gone = rows.remove(2);
        assert_eq!(gone.idx, 7);
    });
    let r = check(d.path(), f).await;
    println!("{}", describe(&r));
    assert_findings(
        &r,
        &[
            ("alpha", &obj, None, "segment holds 4 rows, expected 5"),
            (
                "alpha",
                &obj,
                Some(7),
                "entry 7 is missing from the segment (row dropped)",
            ),
            // The checkpoints past the damage cannot be checked; they say why.
            (
                "alpha",
                &cp_object("alpha", 10),
                Some(5),
                "could not be checked",
            ),
            (
                "alpha",
                &cp_object("alpha", 15),
                Some(5),
                "could not be checked",
            ),
            (
                "alpha",
                &cp_object("alpha", 20),
                Some(5),
                "could not be checked",
            ),
            (
                "alpha",
                &cp_object("alpha", 25),
                Some(5),
                "could not be checked",
            ),
            (
                "alpha",
                "ns/alpha/checkpoint",
                Some(5),
                "could not be checked",
            ),
        ],
    );
    // A pinned checkpoint past the damage is "not checkable", not a rollback.
    let r = verify(
        d.path(),
        VerifyOptions {
            pinned_checkpoint: Some(f.alpha_checkpoints[4].clone()),
            ..pinned(f.public())
        },
    )
    .await;
    let object = format!("pinned checkpoint {} size 25", f.origin_of("alpha"));
    assert!(
        r.findings.iter().any(|x| x.object == object
            && x.index == Some(5)
            && x.message
                .starts_with("the pinned checkpoint covers 25 entries and could not be checked")),
        "{}",
        describe(&r)
    );
    assert!(
        !r.findings.iter().any(|x| x.message.contains("rollback")),
        "{}",
        describe(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_dropped_middle_segment() {
    let f = fixture().await;
    let d = f.copy();
    std::fs::remove_file(d.path().join(seg_object("alpha", 2))).unwrap();
    let r = check(d.path(), f).await;
    println!("{}", describe(&r));
    assert_findings(
        &r,
        &[
            (
                "alpha",
                "ns/alpha/segments",
                Some(10),
                "entries 10-14 are missing (segment dropped; the next segment is 00000000000000000015-00000000000000000019.parquet)",
            ),
            (
                "alpha",
                &cp_object("alpha", 15),
                Some(10),
                "could not be checked",
            ),
            (
                "alpha",
                &cp_object("alpha", 20),
                Some(10),
                "could not be checked",
            ),
            (
                "alpha",
                &cp_object("alpha", 25),
                Some(10),
                "could not be checked",
            ),
            (
                "alpha",
                "ns/alpha/checkpoint",
                Some(10),
                "could not be checked",
            ),
        ],
    );
    assert!(
        r.findings.iter().any(|x| x
            .message
            .contains("could only be rebuilt up to 10 (entries 10-14 are missing)")),
        "{}",
        describe(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_truncated_tail() {
    let f = fixture().await;
    let d = f.copy();
    std::fs::remove_file(d.path().join(seg_object("alpha", 4))).unwrap();
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[
            (
                "alpha",
                &cp_object("alpha", 25),
                Some(20),
                "checkpoint covers 25 entries but the store holds only 20 (tail truncated",
            ),
            (
                "alpha",
                "ns/alpha/checkpoint",
                Some(20),
                "checkpoint covers 25 entries but the store holds only 20 (tail truncated",
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f_reordered_rows() {
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 3);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "alpha"), |rows| {
        rows.swap(1, 3)
    });
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[
            (
                "alpha",
                &obj,
                Some(18),
                "row 1 holds entry 18, expected 16 (rows reordered)",
            ),
            (
                "alpha",
                &obj,
                Some(16),
                "row 3 holds entry 16, expected 18 (rows reordered)",
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g_segment_resigned_with_another_key() {
    let f = fixture().await;
    let other = SigningKey::from_bytes(&[42; 32]);
    // Honest key id of the other key: named precisely.
    let d = f.copy();
    let obj = seg_object("alpha", 2);
    let other_id = note::key_id(&f.origin_of("alpha"), &other.verifying_key().to_bytes());
    rewrite_segment(d.path(), &obj, &other, other_id, |_| {});
    let r = check(d.path(), f).await;
    let msg = format!(
        "segment header is signed by another key (key id {}, expected {})",
        hex::encode(other_id),
        hex::encode(real_key_id(f, "alpha"))
    );
    assert_findings(&r, &[("alpha", &obj, None, &msg)]);
    // Claiming the real key id does not help.
    let d = f.copy();
    rewrite_segment(d.path(), &obj, &other, real_key_id(f, "alpha"), |_| {});
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            None,
            "segment header signature is invalid (header edited or re-signed)",
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h_forged_checkpoints() {
    let f = fixture().await;
    let origin = f.origin_of("alpha");
    let obj = cp_object("alpha", 15);
    let cp = note::open_checkpoint(&f.alpha_checkpoints[2], &origin, &f.public()).unwrap();
    assert_eq!(cp.size, 15);

    // Signed by another key.
    let d = f.copy();
    let other = SigningKey::from_bytes(&[9; 32]);
    let forged = note::sign_checkpoint(
        &Checkpoint {
            root: [7; 32],
            ..cp.clone()
        },
        &origin,
        &other,
    );
    std::fs::write(d.path().join(&obj), &forged).unwrap();
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            None,
            "checkpoint does not verify (forged or altered)",
        )],
    );
    assert!(
        r.findings[0].message.contains("no signature")
            || r.findings[0].message.to_lowercase().contains("signature"),
        "{}",
        describe(&r)
    );

    // Root changed, text otherwise intact (the old signature line kept).
    let d = f.copy();
    let text = &f.alpha_checkpoints[2];
    let altered = text.replacen(&B64.encode(cp.root), &B64.encode([7u8; 32]), 1);
    assert_ne!(&altered, text);
    std::fs::write(d.path().join(&obj), &altered).unwrap();
    // The latest pointer too, with a changed size.
    let latest = &f.alpha_checkpoints[4];
    std::fs::write(
        d.path().join("ns/alpha/checkpoint"),
        latest.replacen("\n25\n", "\n26\n", 1),
    )
    .unwrap();
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[
            (
                "alpha",
                &obj,
                None,
                "checkpoint does not verify (forged or altered)",
            ),
            (
                "alpha",
                "ns/alpha/checkpoint",
                None,
                "checkpoint does not verify (forged or altered)",
            ),
        ],
    );

    // Signed with the real key but committing to another tree (a fork).
    let d = f.copy();
    let forked = note::sign_checkpoint(
        &Checkpoint {
            root: [7; 32],
            ..cp.clone()
        },
        &origin,
        &f.key,
    );
    std::fs::write(d.path().join(&obj), &forked).unwrap();
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            None,
            "checkpoint root does not match the data at size 15",
        )],
    );

    // A valid checkpoint stored under the wrong size.
    let d = f.copy();
    std::fs::write(d.path().join(&obj), &f.alpha_checkpoints[1]).unwrap();
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            None,
            "object name does not match the checkpoint's size 10",
        )],
    );

    // A stray object among the checkpoints, even one holding a valid
    // checkpoint, is reported and never counted as one.
    let d = f.copy();
    let stray = "ns/alpha/checkpoints/latest-good-one";
    std::fs::write(d.path().join(stray), &f.alpha_checkpoints[4]).unwrap();
    let clean = check(f.copy().path(), f).await;
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[("alpha", stray, None, "unexpected object among checkpoints")],
    );
    let counted = |r: &Report| {
        r.namespaces
            .iter()
            .find(|s| s.ns == "alpha")
            .map(|s| s.checkpoints)
    };
    assert_eq!(counted(&r), counted(&clean), "{}", describe(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i_rollback_against_a_pinned_checkpoint() {
    let f = fixture().await;
    let pinned_text = f.alpha_checkpoints[4].clone();
    let d = f.copy();
    // Roll back two rounds cleanly: segments, checkpoints and the pointer.
    for round in [3, 4] {
        std::fs::remove_file(d.path().join(seg_object("alpha", round))).unwrap();
        std::fs::remove_file(d.path().join(cp_object("alpha", (round + 1) * ROWS))).unwrap();
    }
    std::fs::write(
        d.path().join("ns/alpha/checkpoint"),
        &f.alpha_checkpoints[2],
    )
    .unwrap();
    // The tiles of the removed sizes give the rollback away...
    let tiles = ["ns/alpha/tile/0/000.p/20", "ns/alpha/tile/0/000.p/25"];
    assert_findings(
        &check(d.path(), f).await,
        &[
            ("alpha", tiles[0], None, "beyond the log's data"),
            ("alpha", tiles[1], None, "beyond the log's data"),
        ],
    );
    for t in tiles {
        std::fs::remove_file(d.path().join(t)).unwrap();
    }
    // ...but once they are gone too, the rolled-back store is self-consistent...
    assert_clean(&check(d.path(), f).await);
    // ...but not with the checkpoint a client kept.
    let r = verify(
        d.path(),
        VerifyOptions {
            pinned_checkpoint: Some(pinned_text.clone()),
            ..pinned(f.public())
        },
    )
    .await;
    let object = format!("pinned checkpoint {} size 25", f.origin_of("alpha"));
    assert_findings(
        &r,
        &[(
            "alpha",
            &object,
            Some(15),
            "rollback: the pinned checkpoint covers 25 entries, the store only 15",
        )],
    );

    // A whole namespace deleted.
    let d = f.copy();
    std::fs::remove_dir_all(d.path().join("ns/alpha")).unwrap();
    let r = verify(
        d.path(),
        VerifyOptions {
            pinned_checkpoint: Some(pinned_text.clone()),
            ..pinned(f.public())
        },
    )
    .await;
    assert_findings(
        &r,
        &[(
            "alpha",
            "ns/alpha",
            None,
            "the pinned checkpoint's namespace is missing from the store (rollback)",
        )],
    );
    // The same when only that namespace is asked for (a finding, not a
    // usage error)...
    let r = verify(
        d.path(),
        VerifyOptions {
            pinned_checkpoint: Some(pinned_text.clone()),
            namespace: Some("alpha".into()),
            ..pinned(f.public())
        },
    )
    .await;
    assert_eq!(r.findings.len(), 1, "{}", describe(&r));
    // ...while a checkpoint of another namespace than the one asked for is
    // a usage error.
    let store = tracevault_vault::Store::local(d.path()).unwrap();
    let e = tracevault_vault::verify::verify_store(
        &store,
        &VerifyOptions {
            pinned_checkpoint: Some(pinned_text.clone()),
            namespace: Some("beta".into()),
            ..pinned(f.public())
        },
    )
    .await
    .map(|_| ())
    .expect_err("a usage error");
    assert!(e.to_string().contains("not of --namespace beta"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i2_fork_rewritten_history_with_the_real_key() {
    // An attacker holding the log key rewrites the last round and re-signs
    // everything consistently: the store verifies alone, the pin catches it.
    let f = fixture().await;
    let d = f.copy();
    let ns = "alpha";
    let mut tree = MerkleTree::new();
    for round in 0..4 {
        let seg = segment::decode(Bytes::from(
            std::fs::read(d.path().join(seg_object(ns, round))).unwrap(),
        ))
        .unwrap();
        for e in &seg.entries {
            tree.push(e.leaf_hash);
        }
    }
    let last = segment::decode(Bytes::from(
        std::fs::read(d.path().join(seg_object(ns, 4))).unwrap(),
    ))
    .unwrap();
    let chain_in = hex32(&last.header.chain_in);
    let mut prev = chain_in;
    let forged: Vec<Entry> = last
        .entries
        .iter()
        .map(|orig| {
            let e = Entry::seal(
                ev(&orig.session_id, 1000 + orig.idx, None),
                Sequence {
                    ns,
                    idx: orig.idx,
                    session_seq: orig.session_seq,
                    received_at: orig.received_at,
                    ingested_by: &orig.ingested_by,
                    salt: orig.salt.expect("a stored salt"),
                    prev_chain: prev,
                },
            )
            .unwrap();
            prev = e.chain_hash;
            tree.push(e.leaf_hash);
            e
        })
        .collect();
    let root = tree.root();
    let seal = SegmentSeal {
        chain_in,
        root,
        key_id: real_key_id(f, ns),
        key: &f.key,
    };
    std::fs::write(
        d.path().join(seg_object(ns, 4)),
        segment::encode(&forged, &seal).unwrap().1,
    )
    .unwrap();
    let cp = note::sign_checkpoint(
        &Checkpoint {
            origin: f.origin_of(ns),
            size: 25,
            root,
        },
        &f.origin_of(ns),
        &f.key,
    );
    std::fs::write(d.path().join(cp_object(ns, 25)), &cp).unwrap();
    std::fs::write(d.path().join("ns/alpha/checkpoint"), &cp).unwrap();
    // The old tile of size 25 gives the rewrite away; rewritten too, it
    // does not.
    let tile = tracevault_vault::tiles::TileId {
        level: 0,
        index: 0,
        width: 25,
    };
    let tile_obj = format!("ns/{ns}/{}", tile.path());
    assert_findings(
        &check(d.path(), f).await,
        &[(ns, &tile_obj, Some(0), "tile does not hold the hashes")],
    );
    let bytes = tracevault_vault::tiles::tile_bytes(&tree, tile).unwrap();
    std::fs::write(d.path().join(&tile_obj), bytes).unwrap();
    assert_clean(&check(d.path(), f).await);
    let r = verify(
        d.path(),
        VerifyOptions {
            pinned_checkpoint: Some(f.alpha_checkpoints[4].clone()),
            ..pinned(f.public())
        },
    )
    .await;
    let object = format!("pinned checkpoint {} size 25", f.origin_of(ns));
    assert_findings(
        &r,
        &[(
            "alpha",
            &object,
            None,
            "fork: the store's tree at size 25 differs from the pinned checkpoint",
        )],
    );
    // An older pin is still consistent (the fork is after it).
    assert_clean(
        &verify(
            d.path(),
            VerifyOptions {
                pinned_checkpoint: Some(f.alpha_checkpoints[3].clone()),
                ..pinned(f.public())
            },
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j_flipped_bit_in_a_parquet_file() {
    let f = fixture().await;
    let obj = seg_object("beta", 1);
    let d = f.copy();
    let path = d.path().join(&obj);
    let mut bytes = std::fs::read(&path).unwrap();
    let header = segment::decode(Bytes::from(bytes.clone())).unwrap().header;
    // The middle of the data pages (everything before the footer).
    let at = (header.data_len / 2) as usize;
    bytes[at] ^= 0x08;
    std::fs::write(&path, &bytes).unwrap();
    let r = check(d.path(), f).await;
    println!("{}", describe(&r));
    let digest = "file bytes differ from the signed file digest (Parquet file changed)";
    assert!(
        r.findings.iter().any(|x| x.ns == "beta"
            && x.object == obj
            && x.index.is_none()
            && x.message.contains(digest)),
        "{}",
        describe(&r)
    );
    // Whatever else is reported concerns that object, or beta's checkpoints at
    // size 10 and its tile, which it no longer matches (when the flip changed a
    // decoded hash), or the checkpoints it leaves unchecked (when it made the
    // file unreadable).
    for x in &r.findings {
        let cp = x.object == cp_object("beta", 10) || x.object == "ns/beta/checkpoint";
        let tile = x.object == "ns/beta/tile/0/000.p/10";
        assert!(
            x.ns == "beta"
                && (x.object == obj
                    || tile && x.message.contains("tile does not hold the hashes")
                    || cp
                        && (x.message.contains("could not be checked")
                            || x.message
                                .contains("root does not match the data at size 10"))),
            "{x}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn j2_flipped_bit_in_every_data_byte_position_sampled() {
    // Flip bits at several positions across the data region: never silent.
    let f = fixture().await;
    let obj = seg_object("gamma", 0);
    let orig = std::fs::read(store_dir(&f.data).join(&obj)).unwrap();
    let header = segment::decode(Bytes::from(orig.clone())).unwrap().header;
    for k in 1..8u64 {
        let at = (header.data_len * k / 8) as usize;
        let d = f.copy();
        let mut bytes = orig.clone();
        bytes[at] ^= 0x01;
        std::fs::write(d.path().join(&obj), &bytes).unwrap();
        let r = check(d.path(), f).await;
        assert!(
            r.findings
                .iter()
                .any(|x| x.object == obj && x.message.contains("signed file digest")),
            "flip at byte {at}:\n{}",
            describe(&r)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_duplicated_row() {
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 4);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "alpha"), |rows| {
        let copy = rows[1].clone();
        assert_eq!(copy.idx, 21);
        rows.insert(2, copy);
    });
    let r = check(d.path(), f).await;
    println!("{}", describe(&r));
    assert_findings(
        &r,
        &[
            ("alpha", &obj, None, "segment holds 6 rows, expected 5"),
            (
                "alpha",
                &obj,
                Some(21),
                "entry 21 appears 2 times (row duplicated)",
            ),
            (
                "alpha",
                &cp_object("alpha", 25),
                Some(20),
                "could not be checked",
            ),
            (
                "alpha",
                "ns/alpha/checkpoint",
                Some(20),
                "could not be checked",
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_swapped_vault_key() {
    let f = fixture().await;
    let d = f.copy();
    let other = SigningKey::from_bytes(&[5; 32]);
    let vj = d.path().join("vault.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&vj).unwrap()).unwrap();
    let real_b64 = B64.encode(f.public().to_bytes());
    assert_eq!(meta["log_public_key"], real_b64.as_str());
    let other_b64 = B64.encode(other.verifying_key().to_bytes());
    meta["log_public_key"] = other_b64.clone().into();
    std::fs::write(&vj, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();

    // Pinned: the swap itself is the finding; the data still verifies with the real key.
    let r = check(d.path(), f).await;
    let msg =
        format!("vault key swapped: vault.json names {other_b64}, the pinned key is {real_b64}");
    assert_findings(&r, &[("", "vault.json", None, &msg)]);
    assert!(
        r.findings[0]
            .to_string()
            .starts_with("ns=- object=vault.json: vault key swapped"),
        "{}",
        r.findings[0]
    );

    // Not pinned: the swapped key is trusted (with a warning) and nothing it
    // did not sign verifies: every segment and every checkpoint is named.
    let r = verify(d.path(), VerifyOptions::default()).await;
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("no --key given") && w.contains(&other_b64)),
        "{}",
        describe(&r)
    );
    let mut expected: Vec<(String, String, Option<u64>, String)> = Vec::new();
    for (ns, rounds) in NAMESPACES {
        let other_id = hex::encode(note::key_id(
            &f.origin_of(ns),
            &other.verifying_key().to_bytes(),
        ));
        let real_id = hex::encode(real_key_id(f, ns));
        for round in 0..rounds {
            expected.push((
                ns.into(),
                seg_object(ns, round),
                None,
                format!("segment header is signed by another key (key id {real_id}, expected {other_id})"),
            ));
            expected.push((
                ns.into(),
                cp_object(ns, (round + 1) * ROWS),
                None,
                "checkpoint does not verify (forged or altered)".into(),
            ));
        }
        expected.push((
            ns.into(),
            format!("ns/{ns}/checkpoint"),
            None,
            "checkpoint does not verify (forged or altered)".into(),
        ));
    }
    let expected: Vec<(&str, &str, Option<u64>, &str)> = expected
        .iter()
        .map(|(a, b, c, d)| (a.as_str(), b.as_str(), *c, d.as_str()))
        .collect();
    assert_findings(&r, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m_segment_moved_to_another_position_or_namespace() {
    let f = fixture().await;
    // gamma's only segment copied over beta's first: same range, other namespace.
    let d = f.copy();
    std::fs::copy(
        d.path().join(seg_object("gamma", 0)),
        d.path().join(seg_object("beta", 0)),
    )
    .unwrap();
    let r = check(d.path(), f).await;
    println!("{}", describe(&r));
    let obj = seg_object("beta", 0);
    assert!(
        r.findings.iter().any(|x| x.ns == "beta"
            && x.object == obj
            && x.message.contains("header says ns gamma")),
        "{}",
        describe(&r)
    );
    assert!(
        r.findings.iter().all(|x| x.ns == "beta"),
        "{}",
        describe(&r)
    );
}

/// Re-seals segment file `bytes` in place after an edit outside its rows:
/// recomputes the file digest and signs the header with `key`, as the key
/// holder could.
fn reseal(bytes: &mut [u8], key: &SigningKey) {
    use sha2::Digest;
    let (mut header, sig) = segment::decode_header(&Bytes::from(bytes.to_vec())).unwrap();
    let text = |h: &segment::SegmentHeader| {
        tracevault_vault::jcs::to_canonical_string(&serde_json::to_value(h).unwrap()).unwrap()
    };
    let find = |needle: &[u8]| {
        let from = header.data_len as usize;
        from + bytes[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap()
    };
    let (old_text, old_sig) = (text(&header), B64.encode(&sig));
    let (h_at, s_at) = (find(old_text.as_bytes()), find(old_sig.as_bytes()));
    let mut zeroed = bytes.to_vec();
    zeroed[h_at..h_at + old_text.len()].fill(0);
    zeroed[s_at..s_at + old_sig.len()].fill(0);
    header.file_sha256 = hex::encode(sha2::Sha256::digest(&zeroed));
    let new_text = text(&header);
    let mut signed = b"tracevault/segment-header/v1\n".to_vec();
    signed.extend_from_slice(new_text.as_bytes());
    let new_sig = B64.encode(ed25519_dalek::Signer::sign(key, &signed).to_bytes());
    bytes[h_at..h_at + new_text.len()].copy_from_slice(new_text.as_bytes());
    bytes[s_at..s_at + new_sig.len()].copy_from_slice(new_sig.as_bytes());
}

/// Sets byte `at` of every occurrence of `needle` in the footer of segment
/// file `bytes` (after its data pages) to `to`, lengths unchanged; returns
/// how many were edited.
fn edit_footer(bytes: &mut [u8], needle: &[u8], at: usize, to: u8) -> usize {
    let (header, _) = segment::decode_header(&Bytes::from(bytes.to_vec())).unwrap();
    let mut from = header.data_len as usize;
    let mut edited = 0;
    while let Some(p) = bytes[from..]
        .windows(needle.len())
        .position(|w| w == needle)
    {
        bytes[from + p + at] = to;
        from += p + needle.len();
        edited += 1;
    }
    edited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_forged_statistics_that_would_hide_rows_from_queries() {
    // The key holder keeps every row and the log intact but lowers the
    // footer's max `session_id` (and the page index's) to "sess-0", then
    // re-seals the file with the real key: a query engine would skip this
    // row group when asked for sess-1.
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 2);
    let path = d.path().join(&obj);
    let mut bytes = std::fs::read(&path).unwrap();
    let forged = edit_footer(&mut bytes, b"sess-1", 5, b'0');
    assert!(forged >= 1, "the footer holds the max session id");
    reseal(&mut bytes, &f.key);
    std::fs::write(&path, &bytes).unwrap();
    // The file is a valid, correctly signed segment whose rows are intact.
    let seg = segment::decode(Bytes::from(bytes)).unwrap();
    assert!(seg.entries.iter().any(|e| e.session_id == "sess-1"));
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[
            (
                "alpha",
                &obj,
                None,
                "min/max statistics of column session_id disagree with its rows",
            ),
            (
                "alpha",
                &obj,
                None,
                "the column index's bounds of page 0 of column session_id disagree with its rows",
            ),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s_footer_declares_another_sort_order() {
    // The key holder edits the sort order every row group declares from
    // `idx` (column 1) to `session_id` (column 2), in place, rows and
    // statistics untouched, and re-seals the file. The footer re-encodes to
    // itself; an engine trusting the order would skip sorting by session.
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 2);
    let path = d.path().join(&obj);
    let mut bytes = std::fs::read(&path).unwrap();
    // SortingColumn {column_idx: 1, descending: false, nulls_first: false}
    // in Thrift's compact protocol; column 2 is zigzag 4.
    let written = [0x15, 0x02, 0x12, 0x12, 0x00];
    let forged = edit_footer(&mut bytes, &written, 1, 0x04);
    assert!(forged >= 1, "the footer declares the writer's order");
    reseal(&mut bytes, &f.key);
    std::fs::write(&path, &bytes).unwrap();
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::from(bytes))
        .unwrap();
    let declared = meta.row_group(0).sorting_columns().unwrap();
    assert_eq!(declared[0].column_idx, 2, "the edit is the sort order");
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[("alpha", &obj, None, "row group 0: declares the sort order")],
    );
}

/// The tiles are checked against the leaves: a changed tile, a dropped one,
/// one copied from another namespace, one beyond the data and a stray
/// object are each a finding naming the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_tiles_changed_dropped_foreign_extra() {
    let f = fixture().await;
    let tile = |ns: &str, rel: &str| format!("ns/{ns}/tile/{rel}");
    // Alpha has 25 entries: its newest tile is tile/0/000.p/25.
    let d = f.copy();
    let obj = tile("alpha", "0/000.p/25");
    let path = d.path().join(&obj);
    let mut b = std::fs::read(&path).unwrap();
    b[100] ^= 0x20;
    std::fs::write(&path, &b).unwrap();
    assert_findings(
        &check(d.path(), f).await,
        &[("alpha", &obj, Some(0), "tile does not hold the hashes")],
    );

    let d = f.copy();
    std::fs::remove_file(d.path().join(&obj)).unwrap();
    assert_findings(
        &check(d.path(), f).await,
        &[(
            "alpha",
            &obj,
            None,
            "tile is missing (checkpoint 25 needs it)",
        )],
    );

    // Beta's tile of 10 entries over alpha's of 10: right name, other log.
    let d = f.copy();
    let obj = tile("alpha", "0/000.p/10");
    std::fs::copy(
        d.path().join(tile("beta", "0/000.p/10")),
        d.path().join(&obj),
    )
    .unwrap();
    assert_findings(
        &check(d.path(), f).await,
        &[("alpha", &obj, Some(0), "tile does not hold the hashes")],
    );

    // A tile for 30 entries (the 25 real hashes and 5 made up), and a stray.
    let d = f.copy();
    let mut b = std::fs::read(d.path().join(tile("alpha", "0/000.p/25"))).unwrap();
    b.extend([9u8; 5 * 32]);
    let extra = tile("alpha", "0/000.p/30");
    std::fs::write(d.path().join(&extra), &b).unwrap();
    let stray = tile("alpha", "0/notes.txt");
    std::fs::write(d.path().join(&stray), b"hello").unwrap();
    assert_findings(
        &check(d.path(), f).await,
        &[
            ("alpha", &extra, None, "beyond the log's data"),
            ("alpha", &stray, None, "unexpected object among tiles"),
        ],
    );
}

/// `verify --since`: with a checkpoint kept from an earlier run, the store is
/// proven consistent with it through the tiles and only the entries after it
/// are read; what changed after the pin is found, a tile under the pin that
/// the proof reads, or a rollback, is a finding about the pin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u_incremental_verify_since_a_checkpoint() {
    let f = fixture().await;
    let since = |cp: &str| VerifyOptions {
        pinned_checkpoint: Some(cp.to_string()),
        namespace: Some("alpha".into()),
        incremental: true,
        ..pinned(f.public())
    };
    let d = f.copy();
    let full = verify(d.path(), pinned(f.public())).await;
    let r = verify(d.path(), since(&f.alpha_checkpoints[2])).await;
    assert_clean(&r);
    // From 15 of 25: the segment holding entry 14 and the two after it.
    assert_eq!((r.namespaces[0].entries, r.namespaces[0].segments), (25, 3));
    let all_alpha = full.namespaces.iter().find(|n| n.ns == "alpha").unwrap();
    assert!(r.namespaces[0].bytes < all_alpha.bytes);
    // What was hashed: each segment file whole, and per row more than its
    // record's chain link and Merkle node.
    assert!(all_alpha.hashed > all_alpha.bytes + all_alpha.entries * 129);
    assert!(r.namespaces[0].hashed < all_alpha.hashed);
    // From the newest checkpoint: only the last segment is read.
    assert_clean(&verify(d.path(), since(&f.alpha_checkpoints[4])).await);

    // The store's latest pointer below the auditor's pin (it lags, or a
    // witness is down for the cosigned copy): under the pin, not a finding.
    let lagging = f.copy();
    std::fs::write(
        lagging.path().join("ns/alpha/checkpoint"),
        &f.alpha_checkpoints[1],
    )
    .unwrap();
    let r = verify(lagging.path(), since(&f.alpha_checkpoints[3])).await;
    assert!(
        r.findings.is_empty(),
        "{:?}",
        r.findings.iter().map(|f| &f.message).collect::<Vec<_>>()
    );

    // A value changed after the pin is found.
    let obj = seg_object("alpha", 4);
    rewrite_segment(d.path(), &obj, &f.key, real_key_id(f, "alpha"), |rows| {
        rows[1].content = Some("edited later".into());
    });
    assert_findings(
        &verify(d.path(), since(&f.alpha_checkpoints[2])).await,
        &[("alpha", &obj, Some(21), "content does not match its digest")],
    );

    // A segment removed under the pin: not read, but the listing shows it.
    let d = f.copy();
    std::fs::remove_file(d.path().join(seg_object("alpha", 1))).unwrap();
    assert_findings(
        &verify(d.path(), since(&f.alpha_checkpoints[2])).await,
        &[(
            "alpha",
            "ns/alpha/segments",
            Some(5),
            "segment dropped under the pinned checkpoint",
        )],
    );

    // A tile the consistency proof reads, changed: the pin is not proven.
    let d = f.copy();
    let tile = d.path().join("ns/alpha/tile/0/000.p/25");
    let mut b = std::fs::read(&tile).unwrap();
    b[0] ^= 1;
    std::fs::write(&tile, &b).unwrap();
    let pin = format!("pinned checkpoint {} size 15", f.origin_of("alpha"));
    assert_findings(
        &verify(d.path(), since(&f.alpha_checkpoints[2])).await,
        &[("alpha", &pin, None, "fork")],
    );

    // Rolled back below the pin.
    let d = f.copy();
    for round in [3, 4] {
        std::fs::remove_file(d.path().join(seg_object("alpha", round))).unwrap();
        std::fs::remove_file(d.path().join(cp_object("alpha", (round + 1) * ROWS))).unwrap();
    }
    std::fs::write(
        d.path().join("ns/alpha/checkpoint"),
        &f.alpha_checkpoints[2],
    )
    .unwrap();
    let pin = format!("pinned checkpoint {} size 25", f.origin_of("alpha"));
    assert_findings(
        &verify(d.path(), since(&f.alpha_checkpoints[4])).await,
        &[("alpha", &pin, None, "rollback")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn o_chain_restarted_by_the_key_holder() {
    // The key holder re-seals alpha's last segment on another chain: its
    // rows' chain hashes are recomputed from the new chain_in, so the file
    // is consistent in itself, and its leaves (and so every root) are
    // unchanged. Only the link to the previous segment's chain shows it.
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 4);
    let id = real_key_id(f, "alpha");
    let rechain = |rows: &mut Vec<Entry>| {
        let mut prev = [0x42; 32];
        for row in rows {
            row.chain_hash = tracevault_vault::record::chain_next(&prev, &row.leaf_hash);
            prev = row.chain_hash;
        }
    };
    resign_segment(d.path(), &obj, &obj, &f.key, id, rechain, |chain_in, _| {
        *chain_in = [0x42; 32]
    });
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            None,
            "chain_in does not continue the previous segment's chain",
        )],
    );
    // Incrementally, from the newest checkpoint: the re-chained segment is
    // the one verify resumes from. The chain is in no checkpoint, so its
    // chain_in is held to the previous segment's signed chain_out.
    let since = VerifyOptions {
        pinned_checkpoint: Some(f.alpha_checkpoints[4].clone()),
        namespace: Some("alpha".into()),
        incremental: true,
        ..pinned(f.public())
    };
    assert_findings(
        &verify(d.path(), since).await,
        &[(
            "alpha",
            &obj,
            None,
            "signed chain_out of the segment before it",
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p_header_root_resigned() {
    // The key holder signs a segment header with a root other than the
    // tree's after it: rows, chain and checkpoints are untouched.
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 2);
    let id = real_key_id(f, "alpha");
    resign_segment(
        d.path(),
        &obj,
        &obj,
        &f.key,
        id,
        |_| {},
        |_, root| *root = [0x42; 32],
    );
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &obj,
            None,
            "signed header root does not match the tree at size 15",
        )],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_overlapping_segment_with_other_entries() {
    // Beside alpha's second segment (entries 5-9), a key-signed segment for
    // entries 5-7 with one content changed, named as a merge interrupted
    // halfway would leave one. A leftover is fine only when it holds exactly
    // the entries already covered.
    let f = fixture().await;
    let d = f.copy();
    let from = seg_object("alpha", 1);
    let to = format!("ns/alpha/segments/{}", segment::segment_file_name(5, 7));
    let id = real_key_id(f, "alpha");
    // Entries 6 and 7 re-sealed as other events, consistently (digests,
    // leaves and chain), as the key holder can.
    let edit = |rows: &mut Vec<Entry>| {
        rows.truncate(3);
        let mut prev = rows[0].chain_hash;
        for row in rows.iter_mut().skip(1) {
            let o = row.clone();
            let sequence = Sequence {
                ns: "alpha",
                idx: o.idx,
                session_seq: o.session_seq,
                received_at: o.received_at,
                ingested_by: &o.ingested_by,
                salt: o.salt.expect("a stored salt"),
                prev_chain: prev,
            };
            *row = Entry::seal(ev(&o.session_id, 1000 + o.idx, None), sequence).unwrap();
            prev = row.chain_hash;
        }
    };
    resign_segment(d.path(), &from, &to, &f.key, id, edit, |_, _| {});
    let r = check(d.path(), f).await;
    assert_findings(
        &r,
        &[(
            "alpha",
            &to,
            None,
            "overlaps entries already covered up to 9 with different entries",
        )],
    );
    // The same entries, unchanged: an interrupted merge's leftover, no finding.
    let d = f.copy();
    resign_segment(
        d.path(),
        &from,
        &to,
        &f.key,
        id,
        |rows| rows.truncate(3),
        |_, _| {},
    );
    assert_clean(&check(d.path(), f).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_latest_pointer_behind_the_newest_checkpoint_is_warned() {
    // The latest-checkpoint pointer put back to an older checkpoint (a
    // rollback of what readers are shown): every checkpoint is intact, so
    // it is a warning, naming both sizes.
    let f = fixture().await;
    let d = f.copy();
    std::fs::copy(
        d.path().join(cp_object("alpha", 20)),
        d.path().join("ns/alpha/checkpoint"),
    )
    .unwrap();
    let r = check(d.path(), f).await;
    assert!(
        r.warnings.iter().any(|w| w.contains("alpha")
            && w.contains("latest-checkpoint pointer (20) lags the newest checkpoint (25)")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v_pages_that_other_readers_would_unpack_otherwise_are_not_decoded() {
    // The key holder declares `session_id`'s chunk GZIP (zigzag 2) instead
    // of zstd (6) in the footer and re-seals: a review showed DuckDB and
    // zlib inflating different streams from one gzip body. `verify` names
    // the codec and checks no row of the file rather than decode it.
    let f = fixture().await;
    let d = f.copy();
    let obj = seg_object("alpha", 2);
    let path = d.path().join(&obj);
    let mut bytes = std::fs::read(&path).unwrap();
    // path_in_schema ["session_id"], then codec (field 4, i32).
    assert_eq!(edit_footer(&mut bytes, b"session_id\x15\x0c", 11, 0x04), 1);
    reseal(&mut bytes, &f.key);
    std::fs::write(&path, &bytes).unwrap();
    let r = check(d.path(), f).await;
    let all = describe(&r);
    for want in [
        "column session_id: compressed with GZIP",
        "rows not checked: its pages would not read the same for every reader",
    ] {
        assert!(
            r.findings
                .iter()
                .any(|x| x.object == obj && x.message.contains(want)),
            "missing {want:?}:\n{all}"
        );
    }
    // Everything else is that object's, or the checkpoints and tiles its
    // unchecked entries leave unchecked.
    for x in &r.findings {
        assert!(
            x.ns == "alpha"
                && (x.object == obj
                    || x.message.contains("could not be checked")
                    || x.object.starts_with("ns/alpha/tile/")),
            "{x}\n{all}"
        );
    }
}
