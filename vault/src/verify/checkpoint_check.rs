//! A namespace's checkpoints. Read before its segments: each one's
//! signature, each object's name against the size it signs, the witness
//! policy on the checkpoint presented as current, and whether the
//! latest-checkpoint pointer lags. Once the segments are folded
//! (`verify/mod.rs`): their roots, and the pinned checkpoint's, against the
//! tree rebuilt from the entries.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use futures::StreamExt;

use super::{Finding, Report, VerifyError, VerifyOptions};
use crate::note;
use crate::record::Hash;
use crate::store::{Store, StoreError, layout};

/// The checkpoints of a namespace that verify.
pub(super) struct Checkpoints {
    /// By size; several objects may hold the same size (`checkpoints/{size}`,
    /// the latest-checkpoint pointer, the cosigned copy).
    pub(super) by_size: BTreeMap<u64, Vec<(String, note::Checkpoint)>>,
    /// Checkpoint objects read, whether they verify or not.
    pub(super) objects: usize,
}

/// Reads and checks the checkpoints of `ns` at sizes from `from` on (all
/// when 0); what is wrong with them goes to `report`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_checkpoints(
    store: &Store,
    ns: &str,
    origin: &str,
    key: &VerifyingKey,
    from: u64,
    pinned: Option<&note::Checkpoint>,
    opts: &VerifyOptions,
    report: &mut Report,
) -> Result<Checkpoints, VerifyError> {
    let cp_prefix = layout::checkpoints(ns);
    let mut by_size: BTreeMap<u64, Vec<(String, note::Checkpoint)>> = BTreeMap::new();
    // A checkpoint's object is named for its size; anything else is
    // reported by name, never read (it may be anything, of any size).
    let (names, stray): (Vec<String>, Vec<String>) = store
        .list_names(&cp_prefix)
        .await?
        .into_iter()
        .partition(|n| n.len() == 20 && n.parse::<u64>().is_ok());
    for name in stray {
        report.findings.push(Finding {
            ns: ns.into(),
            object: format!("{cp_prefix}/{name}"),
            index: None,
            message: "unexpected object among checkpoints".into(),
        });
    }
    let names = names
        .into_iter()
        .filter(|n| from == 0 || n.parse::<u64>().is_ok_and(|size| size >= from));
    let fetched: Vec<(String, Result<Option<bytes::Bytes>, StoreError>)> =
        futures::stream::iter(names)
            .map(|name| {
                let p = object_store::path::Path::from(format!("{cp_prefix}/{name}"));
                async move {
                    let r = store.get(&p).await;
                    (name, r)
                }
            })
            .buffered(16)
            .collect()
            .await;
    let mut cp_objects: Vec<(String, String)> = Vec::new();
    for (name, r) in fetched {
        let object = format!("{cp_prefix}/{name}");
        let Some(bytes) = r? else { continue };
        cp_objects.push((object, String::from_utf8_lossy(&bytes).to_string()));
    }
    // The latest-checkpoint pointer, and the newest checkpoint witnesses
    // cosigned (with a witness policy).
    let text = |path: object_store::path::Path| async move {
        let bytes = store.get(&path).await?;
        Ok::<_, StoreError>((
            path.to_string(),
            bytes.map(|b| String::from_utf8_lossy(&b).to_string()),
        ))
    };
    let (latest_obj, latest_text) = text(layout::latest_checkpoint(ns)).await?;
    let (cosigned_obj, cosigned_text) = text(layout::cosigned_checkpoint(ns)).await?;
    for (object, text) in [(&latest_obj, &latest_text), (&cosigned_obj, &cosigned_text)] {
        if let Some(t) = text {
            cp_objects.push((object.clone(), t.clone()));
        }
    }
    let named_for_size = |o: &String| o != &latest_obj && o != &cosigned_obj;
    for (object, text) in &cp_objects {
        match note::open_checkpoint(text, origin, key) {
            Ok(cp) => {
                if named_for_size(object) && !object.ends_with(&format!("{:020}", cp.size)) {
                    report.findings.push(Finding {
                        ns: ns.into(),
                        object: object.clone(),
                        index: None,
                        message: format!(
                            "object name does not match the checkpoint's size {}",
                            cp.size
                        ),
                    });
                }
                by_size
                    .entry(cp.size)
                    .or_default()
                    .push((object.clone(), cp));
            }
            Err(e) => report.findings.push(Finding {
                ns: ns.into(),
                object: object.clone(),
                index: None,
                message: format!("checkpoint does not verify (forged or altered): {e}"),
            }),
        }
    }
    if let Some(policy) = &opts.witnesses {
        let (object, text) = match (pinned, &opts.pinned_checkpoint, &cosigned_text) {
            (Some(_), Some(t), _) => (format!("pinned checkpoint {origin}"), Some(t.clone())),
            (_, _, Some(t)) => (cosigned_obj.clone(), Some(t.clone())),
            _ => (latest_obj.clone(), latest_text.clone()),
        };
        // Say how far the witnessed history reaches, in every mode: the
        // newest size a checkpoint meeting the policy covers (the store's
        // cosigned copy, or the pinned one), against the newest checkpoint
        // the store holds. The entries past it are signed by the log key
        // alone, and the key holder can also put back an older cosigned
        // copy: so the lag is a finding when the auditor requires it.
        let size = |t: &str| t.lines().nth(1).and_then(|n| n.parse::<u64>().ok());
        let witnessed = [cosigned_text.as_deref(), opts.pinned_checkpoint.as_deref()]
            .into_iter()
            .flatten()
            .filter(|t| policy.shortfall(t).is_none())
            .filter_map(size)
            .max()
            .unwrap_or(0);
        if let Some(&newest) = by_size.keys().next_back()
            && witnessed < newest
        {
            let message = format!(
                "witnessed up to size {witnessed} of {newest}: the newest {} entries are not cosigned (signed by the log key alone)",
                newest - witnessed
            );
            if opts.require_witnessed {
                report.findings.push(Finding {
                    ns: ns.into(),
                    object: cosigned_obj.clone(),
                    index: None,
                    message,
                });
            } else {
                report.warnings.push(format!("{ns}: {message}"));
            }
        }
        if let Some(message) = text.and_then(|t| policy.shortfall(&t)) {
            report.findings.push(Finding {
                ns: ns.into(),
                object,
                index: None,
                message,
            });
        }
    }
    let pointer_size = by_size
        .iter()
        .find(|(_, v)| v.iter().any(|(o, _)| o == &latest_obj))
        .map(|(s, _)| *s);
    let newest_immutable = by_size
        .iter()
        .rev()
        .find(|(_, v)| v.iter().any(|(o, _)| named_for_size(o)))
        .map(|(s, _)| *s);
    if let (Some(p), Some(n)) = (pointer_size, newest_immutable)
        && p < n
    {
        report.warnings.push(format!(
            "{ns}: the latest-checkpoint pointer ({p}) lags the newest checkpoint ({n})"
        ));
    }
    Ok(Checkpoints {
        by_size,
        objects: cp_objects.len(),
    })
}

/// What the fold rebuilt from the entries.
pub(super) struct Rebuilt<'a> {
    /// The tree's root at each checkpointed (and the pinned) size it reached.
    pub(super) roots: &'a BTreeMap<u64, Hash>,
    /// How many entries the tree holds.
    pub(super) size: u64,
    /// Why the tree could not be rebuilt further, if it stopped short of
    /// the entries listed.
    pub(super) stopped: Option<&'a str>,
}

impl Rebuilt<'_> {
    /// Why `what`, covering `size` entries (more than were rebuilt), could
    /// not be checked.
    fn unchecked(&self, size: u64, what: &str) -> String {
        match self.stopped {
            Some(why) => format!(
                "{what} covers {size} entries and could not be checked: the tree could only be rebuilt up to {} ({why})",
                self.size
            ),
            None => format!(
                "{what} covers {size} entries but the store holds only {} (tail truncated or segments dropped)",
                self.size
            ),
        }
    }
}

/// Every stored checkpoint's root against the rebuilt tree at its size.
pub(super) fn check_stored_roots(
    ns: &str,
    checkpoints: &BTreeMap<u64, Vec<(String, note::Checkpoint)>>,
    from: u64,
    rebuilt: &Rebuilt<'_>,
    report: &mut Report,
) {
    // Incremental (`from` > 0): a copy below the pinned size (the latest
    // pointer or the cosigned copy lagging an auditor's newer pin) is under
    // the pin, like the rows there, and the fold has no root for it: not a
    // truncation.
    for (size, objects) in checkpoints.range(from..) {
        for (object, cp) in objects {
            match rebuilt.roots.get(size) {
                Some(root) if *root == cp.root => {}
                Some(_) => report.findings.push(Finding {
                    ns: ns.into(),
                    object: object.clone(),
                    index: None,
                    message: format!("checkpoint root does not match the data at size {size}"),
                }),
                None => report.findings.push(Finding {
                    ns: ns.into(),
                    object: object.clone(),
                    index: Some(rebuilt.size),
                    message: rebuilt.unchecked(*size, "checkpoint"),
                }),
            }
        }
    }
}

/// The pinned checkpoint against the rebuilt tree: a different root at its
/// size is a fork, a tree smaller than it a rollback.
pub(super) fn check_pinned_root(
    ns: &str,
    origin: &str,
    p: &note::Checkpoint,
    rebuilt: &Rebuilt<'_>,
    report: &mut Report,
) {
    let object = format!("pinned checkpoint {origin} size {}", p.size);
    match rebuilt.roots.get(&p.size) {
        Some(root) if *root == p.root => {}
        Some(_) => report.findings.push(Finding {
            ns: ns.into(),
            object,
            index: None,
            message: format!(
                "fork: the store's tree at size {} differs from the pinned checkpoint",
                p.size
            ),
        }),
        None if rebuilt.stopped.is_some() => report.findings.push(Finding {
            ns: ns.into(),
            object,
            index: Some(rebuilt.size),
            message: rebuilt.unchecked(p.size, "the pinned checkpoint"),
        }),
        None => report.findings.push(Finding {
            ns: ns.into(),
            object,
            index: Some(rebuilt.size),
            message: format!(
                "rollback: the pinned checkpoint covers {} entries, the store only {}",
                p.size, rebuilt.size
            ),
        }),
    }
}
