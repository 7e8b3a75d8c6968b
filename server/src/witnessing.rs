//! The vault as a witness client (`[witnesses]`, docs/witness.md): each
//! new checkpoint of a namespace this server writes is submitted to every
//! configured witness per C2SP `tlog-witness`, with a consistency proof
//! from the size that witness last cosigned (learnt from its `409`). Once
//! `threshold` witnesses cosigned it, the note with their lines appended is
//! the namespace's checkpoint: stored (`ns/{ns}/checkpoint.cosigned`) and
//! served by `GET /v1/logs/{ns}/checkpoint`; until then the previous
//! cosigned one stays current. This runs beside the write path: a slow or
//! dead witness delays cosigning, never an acknowledgement (durability is
//! the WAL's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::Mutex;
use tracevault_vault::cosignature::{Cosigner, WitnessPolicy};
use tracevault_vault::store::layout;
use tracevault_vault::witness::request_body;
use tracevault_vault::{Appender, Vault};

/// How often the namespaces' newest checkpoints are looked at.
const ROUND: Duration = Duration::from_millis(250);
/// One submission's time limit.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[witnesses]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WitnessesConfig {
    /// How many witnesses must cosign (default: all of them).
    pub threshold: Option<usize>,
    /// `[[witnesses.witness]]`.
    pub witness: Vec<WitnessEntry>,
}

/// One witness.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEntry {
    /// Submission prefix (`POST <url>/add-checkpoint`).
    pub url: String,
    /// Its verifier key (C2SP vkey of type 0x04).
    pub key: String,
}

impl WitnessesConfig {
    /// The policy, or why it could never be met.
    pub fn policy(&self) -> Result<Option<WitnessPolicy>, String> {
        if self.witness.is_empty() {
            return match self.threshold {
                Some(t) if t > 0 => Err("[witnesses] threshold without any witness".into()),
                _ => Ok(None),
            };
        }
        let keys: Vec<&str> = self.witness.iter().map(|w| w.key.as_str()).collect();
        WitnessPolicy::from_vkeys(&keys, self.threshold)
            .map(Some)
            .map_err(|e| format!("[witnesses]: {e}"))
    }
}

/// What is known of one namespace.
#[derive(Default)]
struct NsState {
    /// The newest cosigned checkpoint (size, note with cosignatures).
    cosigned: Option<(u64, String)>,
    /// Per witness (in configuration order).
    witnesses: Vec<WitnessView>,
}

/// What the client knows of one witness for one namespace.
#[derive(Clone, Default)]
struct WitnessView {
    /// The size it last cosigned for us (as far as we know).
    size: Option<u64>,
    /// Its valid cosignature line of the checkpoint of that size, kept
    /// until a threshold is met (lines gathered over several rounds count).
    line: Option<(u64, String)>,
    /// Failed asks in a row, and when to ask again.
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
}

/// How one ask ended.
enum Answer {
    /// A valid cosignature of the checkpoint asked about.
    Cosigned(String),
    /// Refused, unreachable or garbled (logged): back off. The size the
    /// witness is known to hold, if it said.
    Failed(Option<u64>),
}

/// Largest answer body read from a witness (a cosignature line is ~140 bytes).
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The witness client of a server.
pub struct Witnessing {
    policy: WitnessPolicy,
    urls: Vec<String>,
    http: reqwest::Client,
    by_ns: Mutex<HashMap<String, NsState>>,
}

impl Witnessing {
    /// The client of `cfg`'s policy (`None`: no witnesses configured).
    pub fn new(cfg: &WitnessesConfig) -> Result<Option<Arc<Witnessing>>, String> {
        let Some(policy) = cfg.policy()? else {
            return Ok(None);
        };
        let http = reqwest::Client::builder()
            .timeout(SUBMIT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(Witnessing {
            policy,
            urls: cfg
                .witness
                .iter()
                .map(|w| w.url.trim_end_matches('/').to_string())
                .collect(),
            http,
            by_ns: Mutex::new(HashMap::new()),
        })))
    }

    /// The policy (for `GET /v1/vault`).
    pub fn policy(&self) -> &WitnessPolicy {
        &self.policy
    }

    /// Submits new checkpoints until `stop` says so.
    pub fn spawn(self: &Arc<Self>, vault: Vault, mut stop: tokio::sync::watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                // Namespaces are independent: one waiting on a slow witness
                // never holds up another.
                let logs: Vec<_> = vault
                    .open_logs()
                    .await
                    .into_iter()
                    .filter(|(_, l)| l.is_healthy())
                    .collect();
                futures::future::join_all(logs.iter().map(|(ns, log)| me.witness(&vault, ns, log)))
                    .await;
                tokio::select! {
                    _ = tokio::time::sleep(ROUND) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// The newest cosigned checkpoint of `ns`: from memory, else from the
    /// store (written by this or an earlier server), checked against the
    /// policy before it is served.
    pub async fn cosigned(&self, vault: &Vault, ns: &str) -> Option<(u64, String)> {
        if let Some(c) = self
            .by_ns
            .lock()
            .await
            .get(ns)
            .and_then(|s| s.cosigned.clone())
        {
            return Some(c);
        }
        self.stored(vault, ns).await
    }

    /// Entries of a namespace published (`published`) but not yet covered
    /// by a cosigned checkpoint this server knows of.
    pub async fn lag(&self, ns: &str, published: u64) -> u64 {
        let cosigned = self
            .by_ns
            .lock()
            .await
            .get(ns)
            .and_then(|s| s.cosigned.as_ref().map(|(size, _)| *size))
            .unwrap_or(0);
        published.saturating_sub(cosigned)
    }

    /// Waits until a cosigned checkpoint covers `need` entries (polling
    /// what the background rounds store), or `deadline` passes.
    pub async fn wait_cosigned(
        &self,
        vault: &Vault,
        ns: &str,
        need: u64,
        deadline: tokio::time::Instant,
    ) -> Option<(u64, String)> {
        loop {
            if let Some(c) = self.cosigned(vault, ns).await.filter(|(s, _)| *s >= need) {
                return Some(c);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One round for one namespace: if its newest checkpoint is not yet
    /// cosigned, ask the witnesses that have not cosigned it (and are not
    /// backing off), concurrently, until the threshold is met.
    async fn witness(&self, vault: &Vault, ns: &str, log: &Arc<Appender>) {
        use futures::StreamExt;
        let Some((size, note)) = log.latest_checkpoint() else {
            return;
        };
        let now = tokio::time::Instant::now();
        let mut views = {
            let mut by_ns = self.by_ns.lock().await;
            let st = by_ns.entry(ns.to_string()).or_default();
            if st.cosigned.as_ref().is_some_and(|(s, _)| *s >= size) {
                return;
            }
            st.witnesses.resize(self.urls.len(), WitnessView::default());
            st.witnesses.clone()
        };
        let held = |v: &WitnessView| v.line.as_ref().is_some_and(|(s, _)| *s == size);
        let mut have = views.iter().filter(|v| held(v)).count();
        let mut asks: futures::stream::FuturesUnordered<_> = views
            .iter()
            .enumerate()
            .filter(|(_, v)| !held(v) && v.retry_at.is_none_or(|t| t <= now))
            .map(|(i, v)| {
                let ask = self.submit(
                    &self.urls[i],
                    &self.policy.witnesses[i],
                    log,
                    v.size,
                    size,
                    &note,
                );
                async move { (i, ask.await) }
            })
            .collect();
        while have < self.policy.threshold {
            let Some((i, answer)) = asks.next().await else {
                break;
            };
            let v = &mut views[i];
            match answer {
                Answer::Cosigned(line) => {
                    *v = WitnessView {
                        size: Some(size),
                        line: Some((size, line)),
                        ..WitnessView::default()
                    };
                    have += 1;
                }
                Answer::Failed(known) => {
                    v.size = known.or(v.size);
                    v.failures = v.failures.saturating_add(1);
                    let wait = ROUND * 2u32.pow(v.failures.min(7));
                    v.retry_at = Some(tokio::time::Instant::now() + wait);
                }
            }
        }
        // Asks still running when the threshold was met are dropped: those
        // witnesses get the next checkpoint with a longer proof.
        drop(asks);
        let text = (have >= self.policy.threshold).then(|| {
            let lines: String = views
                .iter()
                .filter(|v| held(v))
                .filter_map(|v| v.line.as_ref().map(|(_, l)| l.as_str()))
                .collect();
            format!("{note}{lines}")
        });
        if let Some(text) = &text {
            // Never replace a newer cosigned checkpoint (another server's).
            let stored = self.stored(vault, ns).await.map_or(0, |(s, _)| s);
            if stored < size
                && let Err(e) = vault
                    .store()
                    .put_overwrite(&layout::cosigned_checkpoint(ns), Bytes::from(text.clone()))
                    .await
            {
                tracing::warn!(ns, "storing the cosigned checkpoint: {e}");
                return;
            }
        }
        let mut by_ns = self.by_ns.lock().await;
        let st = by_ns.entry(ns.to_string()).or_default();
        st.witnesses = views;
        if let Some(text) = text
            && st.cosigned.as_ref().is_none_or(|(s, _)| *s < size)
        {
            st.cosigned = Some((size, text));
        }
    }

    /// The cosigned checkpoint in the store, if it meets the policy.
    async fn stored(&self, vault: &Vault, ns: &str) -> Option<(u64, String)> {
        let bytes = vault
            .store()
            .get(&layout::cosigned_checkpoint(ns))
            .await
            .ok()??;
        let text = String::from_utf8(bytes.to_vec()).ok()?;
        let origin = format!("{}/{ns}", vault.meta().origin);
        let cp =
            tracevault_vault::note::open_checkpoint(&text, &origin, &vault.public_key()).ok()?;
        (self.policy.cosigned_by(&text) >= self.policy.threshold).then_some((cp.size, text))
    }

    /// Asks one witness to cosign `note` (of `size`), from the size it is
    /// known to hold (`known`; unknown: 0, and once more from the size its
    /// 409 gives).
    async fn submit(
        &self,
        url: &str,
        w: &Cosigner,
        log: &Arc<Appender>,
        known: Option<u64>,
        size: u64,
        note: &str,
    ) -> Answer {
        let checkpoint_body = note.split("\n\n").next().unwrap_or_default().to_string() + "\n";
        let mut old = known.unwrap_or(0);
        for _ in 0..2 {
            if old > size {
                tracing::error!(
                    witness = url,
                    old,
                    size,
                    "the witness holds a larger tree of this log than its writer (fork?)"
                );
                return Answer::Failed(Some(old));
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                match log.consistency_proof(old, size).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(witness = url, "consistency proof {old}..{size}: {e}");
                        return Answer::Failed(known);
                    }
                }
            };
            let resp = self
                .http
                .post(format!("{url}/add-checkpoint"))
                .body(request_body(old, &proof, note))
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(witness = url, "witness unreachable: {e}");
                    return Answer::Failed(known);
                }
            };
            let status = resp.status().as_u16();
            let text = match read_capped(resp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(witness = url, status, "witness answer unreadable: {e}");
                    return Answer::Failed(known);
                }
            };
            match status {
                200 => {
                    return match text
                        .lines()
                        .map(|l| format!("{l}\n"))
                        .find(|l| matches!(w.verify(l, &checkpoint_body), Ok(Some(_))))
                    {
                        Some(line) => Answer::Cosigned(line),
                        None => {
                            tracing::warn!(
                                witness = url,
                                "answered without a valid cosignature of its key"
                            );
                            Answer::Failed(known)
                        }
                    };
                }
                409 => match text.trim().parse::<u64>() {
                    Ok(n) if n != old => old = n,
                    _ => {
                        tracing::warn!(
                            witness = url,
                            size,
                            "the witness refuses this checkpoint as a fork (409)"
                        );
                        return Answer::Failed(known);
                    }
                },
                _ => {
                    let shown: String = text.trim().chars().take(200).collect();
                    tracing::warn!(
                        witness = url,
                        status,
                        "witness refused the checkpoint: {shown}"
                    );
                    return Answer::Failed(known);
                }
            }
        }
        Answer::Failed(Some(old))
    }
}

/// The body of a witness's answer, at most [`MAX_ANSWER_BYTES`].
async fn read_capped(mut resp: reqwest::Response) -> Result<String, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("more than {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "not UTF-8".to_string())
}
