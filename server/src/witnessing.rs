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
    /// Per witness, the size it last cosigned for us (as far as we know).
    sizes: Vec<Option<u64>>,
}

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
                for (ns, log) in vault.open_logs().await {
                    me.witness(&vault, &ns, &log).await;
                }
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
    /// cosigned, ask every witness.
    async fn witness(&self, vault: &Vault, ns: &str, log: &Arc<Appender>) {
        let Some((size, note)) = log.latest_checkpoint() else {
            return;
        };
        let sizes = {
            let mut by_ns = self.by_ns.lock().await;
            let st = by_ns.entry(ns.to_string()).or_default();
            if st.cosigned.as_ref().is_some_and(|(s, _)| *s >= size) {
                return;
            }
            st.sizes.resize(self.urls.len(), None);
            st.sizes.clone()
        };
        let asks = self
            .urls
            .iter()
            .zip(&self.policy.witnesses)
            .zip(sizes)
            .map(|((url, w), known)| self.submit(url, w, log, known, size, &note));
        let answers = futures::future::join_all(asks).await;
        let mut lines = String::new();
        let mut cosigners = 0;
        let mut sizes = Vec::with_capacity(answers.len());
        for (i, (line, learnt)) in answers.into_iter().enumerate() {
            sizes.push(learnt);
            if let Some(line) = line {
                tracing::debug!(ns, size, witness = %self.urls[i], "cosigned");
                lines.push_str(&line);
                cosigners += 1;
            }
        }
        let mut by_ns = self.by_ns.lock().await;
        let st = by_ns.entry(ns.to_string()).or_default();
        st.sizes = sizes;
        if cosigners < self.policy.threshold {
            return;
        }
        let text = format!("{note}{lines}");
        if let Err(e) = vault
            .store()
            .put_overwrite(&layout::cosigned_checkpoint(ns), Bytes::from(text.clone()))
            .await
        {
            tracing::warn!(ns, "storing the cosigned checkpoint: {e}");
            return;
        }
        st.cosigned = Some((size, text));
    }

    /// Asks one witness to cosign `note` (of `size`); returns its verified
    /// cosignature line, if any, and the size it is known to hold after.
    async fn submit(
        &self,
        url: &str,
        w: &Cosigner,
        log: &Arc<Appender>,
        known: Option<u64>,
        size: u64,
        note: &str,
    ) -> (Option<String>, Option<u64>) {
        let checkpoint_body = note.split("\n\n").next().unwrap_or_default().to_string() + "\n";
        let mut old = known.unwrap_or(0);
        // At most one retry: from the size a 409 tells.
        for _ in 0..2 {
            if old > size {
                tracing::error!(
                    witness = url,
                    old,
                    size,
                    "the witness holds a larger tree of this log than its writer (fork?)"
                );
                return (None, Some(old));
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                match log.consistency_proof(old, size).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(witness = url, "consistency proof {old}..{size}: {e}");
                        return (None, known);
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
                    return (None, known);
                }
            };
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            match status {
                200 => {
                    let line = text
                        .lines()
                        .map(|l| format!("{l}\n"))
                        .find(|l| matches!(w.verify(l, &checkpoint_body), Ok(Some(_))));
                    if line.is_none() {
                        tracing::warn!(
                            witness = url,
                            "answered without a valid cosignature of its key"
                        );
                    }
                    return (line, Some(size));
                }
                409 => match text.trim().parse::<u64>() {
                    Ok(n) if n != old => old = n,
                    _ => {
                        tracing::warn!(
                            witness = url,
                            size,
                            "the witness refuses this checkpoint as a fork (409)"
                        );
                        return (None, known);
                    }
                },
                _ => {
                    tracing::warn!(
                        witness = url,
                        status,
                        "witness refused the checkpoint: {}",
                        text.trim()
                    );
                    return (None, known);
                }
            }
        }
        (None, Some(old))
    }
}
