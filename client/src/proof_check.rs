//! Checks the inclusion proof of every event a reader was shown against a
//! signed checkpoint, as the list of events grows, and every new checkpoint
//! against the one before ([`CheckpointTracker`]). This is what turns "the
//! server says so" into "the log's signer committed to these events".
//!
//! Proofs are asked for in batches of [`PROOF_BATCH`] (`POST`, a few at
//! once). A server without that endpoint (404, 405) or with a smaller body
//! limit (413) is asked one event at a time (`GET`) from then on. Progress
//! survives retries: a proof checked against an earlier checkpoint holds for
//! every later one, since each checkpoint is checked to extend the one
//! before.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tracevault_vault::merkle;
use tracevault_vault::note::Checkpoint;

use crate::checkpoints::{CheckError, CheckpointTracker, namespace_key};
use crate::proofs::{InclusionProof, decode_hashes};
use crate::{Client, Error, StatusCode};

/// Inclusion proofs asked for at once, one per request (servers without
/// the batch endpoint).
pub const PROOF_CONCURRENCY: usize = 16;
/// Indices per batch request (`POST .../proof/inclusion`; the server takes
/// up to 1000).
pub const PROOF_BATCH: usize = 500;
/// Batch requests in flight at once.
pub const BATCH_CONCURRENCY: usize = 4;

/// The events to check, `(log index, leaf hash in hex)` in log order, shared
/// with whoever reads them: the checker picks up what is appended.
pub type Leaves = Arc<Mutex<Vec<(u64, String)>>>;

/// What the checker reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// New events are being checked.
    Checking,
    /// Every event listed so far checks out against a checkpoint of
    /// `checkpoint_size` entries. `pinned`: under the key the reader pinned;
    /// otherwise only under the key the server gave, which proves nothing
    /// against that server.
    Checked {
        /// Size of the checkpoint the last proofs lead to.
        checkpoint_size: u64,
        /// Events checked.
        events_checked: u64,
        /// Whether the key was pinned by the reader.
        pinned: bool,
    },
    /// A check failed; the checker has stopped.
    Failed {
        /// The log index of the event concerned, if the failure is about one.
        index: Option<u64>,
        /// What failed.
        reason: String,
    },
    /// The server could not be reached; the checker tries again later.
    Retrying {
        /// Why.
        why: String,
    },
}

/// How a batch of proofs went.
enum Batch {
    /// Every proof of the batch (this many) checks out.
    Checked(usize),
    /// The server has no batch endpoint (404 or 405: an older server) or
    /// takes no body that large (413).
    Unsupported,
}

/// The inclusion-proof checker of one namespace.
pub struct ProofChecker {
    client: Client,
    ns: String,
    pinned: Option<String>,
    /// Once the key is known.
    tracker: Option<CheckpointTracker>,
    /// How many of the listed events are checked (a prefix).
    checked: usize,
    /// Until the server shows it has no batch endpoint.
    batches: bool,
    /// Cosignatures every checkpoint must carry, if any.
    witnesses: Option<tracevault_vault::cosignature::WitnessPolicy>,
    /// A checkpoint from an earlier run every served one must extend.
    since: Option<String>,
}

impl ProofChecker {
    /// A checker of namespace `ns` through `client`, with the pinned key
    /// `pinned` (a C2SP verifier key or a bare base64 key); without one,
    /// the server's own key (then nothing is proven against that server).
    pub fn new(client: Client, ns: &str, pinned: Option<String>) -> ProofChecker {
        ProofChecker {
            client,
            ns: ns.to_string(),
            pinned,
            tracker: None,
            checked: 0,
            batches: true,
            witnesses: None,
            since: None,
        }
    }

    /// The same, and every checkpoint the server shows must be consistent
    /// with `checkpoint` (a signed note kept from an earlier run), so that
    /// a server holding the key cannot show another history than before.
    pub fn since(mut self, checkpoint: Option<String>) -> ProofChecker {
        self.since = checkpoint;
        self
    }

    /// The same, and every checkpoint must carry the cosignatures
    /// `witnesses` asks for.
    pub fn with_witnesses(
        mut self,
        witnesses: Option<tracevault_vault::cosignature::WitnessPolicy>,
    ) -> ProofChecker {
        self.witnesses = witnesses;
        self
    }

    /// Checks `leaves` as they grow, until a check fails, reporting to
    /// `report`. Never returns otherwise: spawn it, abort it when done. An
    /// unreachable server is retried with a backoff of 1 s doubling up to
    /// 15 s.
    pub async fn run(mut self, leaves: Leaves, mut report: impl FnMut(Progress)) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.step(&leaves, &mut report).await {
                Ok(more) => {
                    backoff = Duration::from_secs(1);
                    // Events newer than the checkpoint: one is signed within seconds.
                    let pause = if more { 500 } else { 1000 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(CheckError::Bad { index, reason }) => {
                    return report(Progress::Failed { index, reason });
                }
                Err(CheckError::Unreachable(why)) => {
                    report(Progress::Retrying { why });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
        }
    }

    /// One round: the events not yet checked that the latest checkpoint
    /// covers. Returns whether listed events remain for a later checkpoint.
    async fn step(
        &mut self,
        leaves: &Leaves,
        report: &mut impl FnMut(Progress),
    ) -> Result<bool, CheckError> {
        if self.tracker.is_none() {
            let (name, key) = namespace_key(&self.client, &self.ns, self.pinned.as_deref()).await?;
            let tracker =
                CheckpointTracker::new(&self.ns, name, key).with_witnesses(self.witnesses.clone());
            self.tracker = Some(match &self.since {
                Some(text) => tracker.starting_from(text)?,
                None => tracker,
            });
        }
        let pending = unchecked(leaves, self.checked)?;
        if pending.is_empty() {
            return Ok(false);
        }
        report(Progress::Checking);
        let Some(tracker) = self.tracker.as_mut() else {
            return Ok(false);
        };
        let cp = tracker.next(&self.client).await?;
        let covered = pending.iter().take_while(|(i, _)| *i < cp.size).count();
        self.check(&cp, &pending[..covered]).await?;
        // A poisoned list is never "nothing left to check": fail closed.
        let waiting = unchecked(leaves, self.checked)?.len();
        if waiting == 0 {
            report(Progress::Checked {
                checkpoint_size: cp.size,
                events_checked: self.checked as u64,
                pinned: self.pinned.is_some(),
            });
        }
        Ok(waiting > 0)
    }

    /// Checks `ready` (all below `cp.size`) against `cp`: in batches while
    /// the server takes them, then one by one. `self.checked` counts each
    /// success at once, so a retry resumes where this stopped.
    async fn check(&mut self, cp: &Checkpoint, ready: &[(u64, String)]) -> Result<(), CheckError> {
        let ProofChecker {
            client,
            ns,
            checked,
            batches,
            ..
        } = self;
        let (client, ns) = (&*client, ns.as_str());
        let mut rest = ready;
        if *batches {
            // Collected first: a lazy map here makes the future not `Send`
            // (rustc's higher-ranked closure inference, rust-lang/rust#64552).
            let asks: Vec<_> = ready
                .chunks(PROOF_BATCH)
                .map(|c| check_batch(client, ns, cp, c))
                .collect();
            let mut results = futures::stream::iter(asks).buffered(BATCH_CONCURRENCY);
            while let Some(r) = results.next().await {
                match r? {
                    Batch::Checked(n) => {
                        *checked += n;
                        rest = &rest[n..];
                    }
                    Batch::Unsupported => {
                        *batches = false;
                        break;
                    }
                }
            }
        }
        let asks: Vec<_> = rest
            .iter()
            .map(|(i, leaf)| check_one(client, ns, cp, *i, leaf))
            .collect();
        let mut results = futures::stream::iter(asks).buffered(PROOF_CONCURRENCY);
        while let Some(r) = results.next().await {
            r?;
            *checked += 1;
        }
        Ok(())
    }
}

/// The listed events from position `checked` on.
fn unchecked(leaves: &Leaves, checked: usize) -> Result<Vec<(u64, String)>, CheckError> {
    let l = leaves
        .lock()
        .map_err(|_| CheckError::bad("the event list is unreadable"))?;
    Ok(l[checked.min(l.len())..].to_vec())
}

/// Checks `proof`, served for event `i` whose leaf hash is `leaf` (hex): the
/// log's leaf hash is the event's, and the audit path leads from it to the
/// root of `cp`.
fn verify_proof(
    cp: &Checkpoint,
    i: u64,
    leaf: &str,
    proof: &InclusionProof,
) -> Result<(), CheckError> {
    if proof.leaf_hash != leaf {
        return Err(CheckError::bad_at(
            i,
            "the log's leaf hash differs from the event's (event changed)",
        ));
    }
    let unreached = || {
        CheckError::bad_at(
            i,
            format!(
                "inclusion proof does not reach the checkpoint root at size {}",
                cp.size
            ),
        )
    };
    let leaf: [u8; 32] = hex::decode(leaf)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(unreached)?;
    let hashes = decode_hashes(&proof.hashes).ok_or_else(unreached)?;
    merkle::verify_inclusion(&leaf, i, cp.size, &hashes, &cp.root).map_err(|_| unreached())
}

/// Checks event `i`'s inclusion proof against `cp` (`GET`, one event).
async fn check_one(
    client: &Client,
    ns: &str,
    cp: &Checkpoint,
    i: u64,
    leaf: &str,
) -> Result<(), CheckError> {
    let unreached = || {
        CheckError::bad_at(
            i,
            format!(
                "inclusion proof does not reach the checkpoint root at size {}",
                cp.size
            ),
        )
    };
    let proof = client
        .inclusion_proof(ns, i, cp.size)
        .await
        .map_err(|e| CheckError::from_client(e, unreached))?;
    verify_proof(cp, i, leaf, &proof)
}

/// Checks the inclusion proofs of `batch` (at most [`PROOF_BATCH`]) against
/// `cp` with one `POST`. The answer must hold exactly the proofs asked for,
/// in order, at the checkpoint's size: anything else fails, naming the
/// first event concerned when the fault is about one.
async fn check_batch(
    client: &Client,
    ns: &str,
    cp: &Checkpoint,
    batch: &[(u64, String)],
) -> Result<Batch, CheckError> {
    let indices: Vec<u64> = batch.iter().map(|(i, _)| *i).collect();
    let answer = match client.inclusion_proofs(ns, cp.size, &indices).await {
        Ok(a) => a,
        // An older server without the endpoint, or one whose body limit is
        // below a batch: one proof per request works.
        Err(Error::Status(e))
            if matches!(
                e.status,
                StatusCode::NOT_FOUND
                    | StatusCode::METHOD_NOT_ALLOWED
                    | StatusCode::PAYLOAD_TOO_LARGE
            ) =>
        {
            return Ok(Batch::Unsupported);
        }
        // Not JSON at all (cut short, a proxy's page): try again later. JSON
        // that is not the documented answer: the server's answer is wrong.
        Err(Error::Json { source, .. }) => {
            return Err(match source.classify() {
                serde_json::error::Category::Data => CheckError::bad(format!(
                    "the server's batch of inclusion proofs is malformed: {source}"
                )),
                _ => CheckError::Unreachable(format!("batch of inclusion proofs: {source}")),
            });
        }
        Err(e) => return Err(CheckError::Unreachable(e.to_string())),
    };
    if answer.size != cp.size {
        return Err(CheckError::bad(format!(
            "asked for proofs at size {}, the server answered size {}",
            cp.size, answer.size
        )));
    }
    for ((i, leaf), p) in batch.iter().zip(&answer.proofs) {
        if p.index != *i {
            return Err(CheckError::bad_at(
                *i,
                format!(
                    "the server answered the proof of index {} where {i} was asked (proofs missing or reordered)",
                    p.index
                ),
            ));
        }
        verify_proof(cp, *i, leaf, p)?;
    }
    if answer.proofs.len() != batch.len() {
        return Err(CheckError::Bad {
            index: batch.get(answer.proofs.len()).map(|(i, _)| *i),
            reason: format!(
                "asked for {} inclusion proofs, the server answered {}",
                batch.len(),
                answer.proofs.len()
            ),
        });
    }
    Ok(Batch::Checked(batch.len()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Query, State};
    use axum::routing::get;
    use tracevault_vault::merkle::MerkleTree;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde_json::{Value, json};
    use tracevault_vault::note;

    use super::*;

    /// How the mock server answers batch requests.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        /// As the real server does.
        Batch,
        /// No batch endpoint (an older server): POST → 405.
        NoBatch,
        /// Two proofs of the second batch swapped.
        Reordered,
        /// The last proof of the second batch left out.
        Missing,
        /// The answer claims another size.
        WrongSize,
        /// One hash of one proof changed.
        BadHash,
        /// The batch endpoint answers 503.
        Down,
        /// The server's body limit is below a batch: 413.
        TooLarge,
    }

    struct Mock {
        mode: Mode,
        tree: MerkleTree,
        note: String,
        gets: AtomicUsize,
        posts: AtomicUsize,
    }

    fn proof(m: &Mock, index: u64, size: u64) -> Value {
        let hashes = m.tree.inclusion_proof(index, size).unwrap();
        json!({
            "index": index,
            "leaf_hash": hex::encode(m.tree.leaf(index).unwrap()),
            "hashes": hashes.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        })
    }

    async fn one(
        State(m): State<Arc<Mock>>,
        Query(q): Query<std::collections::HashMap<String, u64>>,
    ) -> axum::Json<Value> {
        m.gets.fetch_add(1, Ordering::SeqCst);
        let mut p = proof(&m, q["index"], q["size"]);
        p["size"] = json!(q["size"]);
        axum::Json(p)
    }

    async fn many(
        State(m): State<Arc<Mock>>,
        axum::Json(req): axum::Json<Value>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        m.posts.fetch_add(1, Ordering::SeqCst);
        match m.mode {
            Mode::Down => return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
            Mode::TooLarge => return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response(),
            _ => {}
        }
        let size = req["size"].as_u64().unwrap();
        let mut proofs: Vec<Value> = req["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| proof(&m, i.as_u64().unwrap(), size))
            .collect();
        let second = req["indices"][0].as_u64() == Some(2 * PROOF_BATCH as u64);
        match m.mode {
            Mode::Reordered if second => proofs.swap(3, 4),
            Mode::Missing if second => {
                proofs.pop();
            }
            Mode::BadHash if second => proofs[7]["hashes"][2] = json!(B64.encode([0u8; 32])),
            _ => {}
        }
        let size = if m.mode == Mode::WrongSize {
            size - 1
        } else {
            size
        };
        axum::Json(json!({"size": size, "proofs": proofs})).into_response()
    }

    /// Events at even indices 0, 2, … of a log of 2 × 1200 entries (three
    /// batches), checked by a [`ProofChecker`] against a mock server.
    async fn run(mode: Mode, done: impl Fn(&Progress) -> bool) -> (Progress, Arc<Mock>) {
        let mut tree = MerkleTree::new();
        for i in 0..2400u32 {
            tree.push(merkle::leaf_hash(&i.to_be_bytes()));
        }
        let origin = "vault.test/prod";
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let cp = note::Checkpoint {
            origin: origin.into(),
            size: tree.len(),
            root: tree.root(),
        };
        let note_text = note::sign_checkpoint(&cp, origin, &key);
        let vkey = note::verifier_key(origin, &key.verifying_key().to_bytes());
        let leaves: Vec<(u64, String)> = (0..1200u64)
            .map(|k| (2 * k, hex::encode(tree.leaf(2 * k).unwrap())))
            .collect();
        let mock = Arc::new(Mock {
            mode,
            tree,
            note: note_text,
            gets: AtomicUsize::new(0),
            posts: AtomicUsize::new(0),
        });
        let mut proofs = get(one);
        if mode != Mode::NoBatch {
            proofs = proofs.post(many);
        }
        let app = axum::Router::new()
            .route(
                "/v1/logs/{ns}/checkpoint",
                get(|State(m): State<Arc<Mock>>| async move { m.note.clone() }),
            )
            .route("/v1/logs/{ns}/proof/inclusion", proofs)
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let client = Client::new(&format!("http://{addr}"), "t").unwrap();
        let verdict = Arc::new(Mutex::new(Progress::Checking));
        let v = verdict.clone();
        let checker = tokio::spawn(
            ProofChecker::new(client, "prod", Some(vkey))
                .run(Arc::new(Mutex::new(leaves)), move |p| {
                    *v.lock().unwrap() = p
                }),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let last = loop {
            let v = verdict.lock().unwrap().clone();
            if done(&v) || std::time::Instant::now() > deadline {
                break v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        checker.abort();
        server.abort();
        (last, mock)
    }

    fn verified(v: &Progress) -> bool {
        matches!(v, Progress::Checked { .. })
    }

    fn failed(v: &Progress) -> bool {
        matches!(v, Progress::Failed { .. })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proofs_are_checked_in_batches() {
        let (v, m) = run(Mode::Batch, |v| verified(v) || failed(v)).await;
        assert!(
            matches!(
                v,
                Progress::Checked {
                    checkpoint_size: 2400,
                    events_checked: 1200,
                    pinned: true
                }
            ),
            "{v:?}"
        );
        assert_eq!(m.posts.load(Ordering::SeqCst), 3);
        assert_eq!(m.gets.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_without_batches_is_asked_one_proof_at_a_time() {
        for mode in [Mode::NoBatch, Mode::TooLarge] {
            let (v, m) = run(mode, |v| verified(v) || failed(v)).await;
            assert!(
                matches!(
                    v,
                    Progress::Checked {
                        events_checked: 1200,
                        ..
                    }
                ),
                "{v:?}"
            );
            assert_eq!(m.gets.load(Ordering::SeqCst), 1200);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_batch_answer_fails_naming_the_first_event_concerned() {
        // The second batch starts at event 500, log index 1000.
        for (mode, index, why) in [
            (Mode::Reordered, Some(1006), "reordered"),
            (Mode::Missing, Some(1998), "asked for 500"),
            (Mode::BadHash, Some(1014), "does not reach"),
            (Mode::WrongSize, None, "answered size 2399"),
        ] {
            let (v, _) = run(mode, |v| verified(v) || failed(v)).await;
            match &v {
                Progress::Failed { index: i, reason } => {
                    assert_eq!(*i, index, "{reason}");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("expected a failure, got {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unavailable_batch_endpoint_is_retried_not_failed() {
        let (v, m) = run(Mode::Down, |v| matches!(v, Progress::Retrying { .. })).await;
        assert!(
            matches!(&v, Progress::Retrying { why } if why.contains("503")),
            "{v:?}"
        );
        assert_eq!(m.gets.load(Ordering::SeqCst), 0, "no fallback on 503");
    }
}
