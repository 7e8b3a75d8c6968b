//! Fencing: one writer per namespace log, even when two servers share a store.
//!
//! Two mechanisms, both built on create-only and conditional object writes:
//!
//! * The **lease** (`ns/{ns}/lease`) says which server instance may append. A
//!   server checks it before accepting any event for the namespace, so a second
//!   server refuses appends up front instead of acknowledging events it could
//!   never publish. It is renewed while held and deleted on clean shutdown. A
//!   lease whose holder stopped renewing may be taken over after its TTL, with
//!   a conditional update so exactly one contender wins; stores without
//!   conditional updates (the local file system) never hand over a live-looking
//!   lease: the same instance (same data directory) reclaims it on restart.
//! * **Position claims** (`ns/{ns}/claims/{first:020}`) close the remaining
//!   race (a paused holder whose lease was taken over): before writing the
//!   segment that starts at `first`, a writer creates the claim create-only.
//!   Two writers can never both claim the same position, so they can never both
//!   extend the log from the same point; the loser is fenced.
//!
//!   A claim carries a deadline (`until_ms`, the claim time plus the lease
//!   TTL): its writer issues the segment's write before it, or renews the
//!   claim first (a conditional update, which fails once superseded). A
//!   writer killed between claim and segment would otherwise wedge the
//!   namespace for good; instead, once the deadline plus one more TTL has
//!   passed and no segment starts at that position, the next leaseholder
//!   supersedes the claim with a conditional update (stores with them only;
//!   SlateDB's writer epochs fence a dead writer's WAL slot the same way).
//!   What stays open is a write issued before the deadline that reaches the
//!   store more than a TTL later (docs/cluster.md).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, layout};

/// The lease object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Instance id of the holder (stable per data directory).
    pub owner: String,
    /// Unix milliseconds of the last renewal.
    pub renewed_at_ms: i64,
    /// How long the lease is valid without renewal.
    pub ttl_ms: i64,
}

/// The claim object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClaimRecord {
    owner: String,
    first: u64,
    last: u64,
    /// The deadline (Unix ms) before which the owner issues the segment's
    /// write or renews the claim; 0 in claims written before deadlines
    /// existed (never superseded).
    #[serde(default)]
    until_ms: i64,
}

/// Outcome of trying to hold a namespace.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another instance holds it.
    #[error(
        "namespace is held by another server (instance {owner}); this server will not append to it"
    )]
    Fenced {
        /// The other holder.
        owner: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lease object is unreadable.
    #[error("lease object is malformed: {0}")]
    Malformed(String),
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The lease of one namespace, as held by this instance.
pub struct Lease {
    store: Store,
    ns: String,
    owner: String,
    ttl_ms: i64,
}

impl Lease {
    /// Takes (or retakes) the lease for `owner`.
    pub async fn acquire(
        store: &Store,
        ns: &str,
        owner: &str,
        ttl_ms: i64,
    ) -> Result<Lease, LeaseError> {
        let lease = Lease {
            store: store.clone(),
            ns: ns.to_string(),
            owner: owner.to_string(),
            ttl_ms,
        };
        lease.renew_inner(true).await?;
        Ok(lease)
    }

    fn record(&self) -> Result<Bytes, LeaseError> {
        let r = LeaseRecord {
            owner: self.owner.clone(),
            renewed_at_ms: now_ms(),
            ttl_ms: self.ttl_ms,
        };
        serde_json::to_vec(&r)
            .map(Bytes::from)
            .map_err(|e| LeaseError::Malformed(e.to_string()))
    }

    /// Confirms this instance still holds the lease and extends it.
    pub async fn renew(&self) -> Result<(), LeaseError> {
        self.renew_inner(false).await
    }

    async fn renew_inner(&self, acquiring: bool) -> Result<(), LeaseError> {
        let path = layout::lease(&self.ns);
        for _ in 0..5 {
            let Some(cur) = self.store.get_versioned(&path).await? else {
                if !acquiring {
                    // Someone deleted our lease: do not silently re-take it mid-flight.
                    return Err(LeaseError::Fenced {
                        owner: "<lease deleted>".into(),
                    });
                }
                match self.store.put_create(&path, self.record()?).await {
                    Ok(()) => return Ok(()),
                    Err(StoreError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            let rec: LeaseRecord = serde_json::from_slice(&cur.bytes)
                .map_err(|e| LeaseError::Malformed(e.to_string()))?;
            let expired = now_ms() > rec.renewed_at_ms.saturating_add(rec.ttl_ms);
            if rec.owner != self.owner && !(acquiring && expired) {
                return Err(LeaseError::Fenced { owner: rec.owner });
            }
            match self
                .store
                .put_update(&path, self.record()?, cur.version)
                .await
            {
                Ok(()) => return Ok(()),
                Err(StoreError::Precondition(_)) | Err(StoreError::AlreadyExists(_)) => continue,
                Err(StoreError::NotSupported(_)) if rec.owner == self.owner => {
                    // Local file system: no conditional update. Only the owner ever
                    // rewrites its own lease there, so an overwrite is safe.
                    self.store.put_overwrite(&path, self.record()?).await?;
                    return Ok(());
                }
                Err(StoreError::NotSupported(_)) => {
                    return Err(LeaseError::Fenced { owner: rec.owner });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Store(StoreError::Other(
            "lease contended; giving up after 5 attempts".into(),
        )))
    }

    /// Claims the log position `first` for a segment ending at `last`, or
    /// renews this instance's claim of it; returns the claim's deadline
    /// (Unix ms), before which the segment's write must be issued (else
    /// claim again). A claim of another owner is superseded only when it is
    /// abandoned: its deadline is more than a lease TTL past and no segment
    /// starts at `first`.
    pub async fn claim(&self, first: u64, last: u64) -> Result<i64, LeaseError> {
        let path = layout::claim(&self.ns, first);
        let record = |until_ms: i64| {
            serde_json::to_vec(&ClaimRecord {
                owner: self.owner.clone(),
                first,
                last,
                until_ms,
            })
            .map(Bytes::from)
            .map_err(|e| LeaseError::Malformed(e.to_string()))
        };
        let until = now_ms().saturating_add(self.ttl_ms);
        match self.store.put_create(&path, record(until)?).await {
            Ok(()) => return Ok(until),
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for _ in 0..5 {
            let Some(cur) = self.store.get_versioned(&path).await? else {
                return Err(LeaseError::Fenced {
                    owner: "<claim deleted>".into(),
                });
            };
            let rec: ClaimRecord = serde_json::from_slice(&cur.bytes)
                .map_err(|e| LeaseError::Malformed(e.to_string()))?;
            let ours = rec.owner == self.owner;
            if !ours && !self.abandoned(&rec).await? {
                return Err(LeaseError::Fenced { owner: rec.owner });
            }
            let until = now_ms().saturating_add(self.ttl_ms);
            match self
                .store
                .put_update(&path, record(until)?, cur.version)
                .await
            {
                Ok(()) => {
                    if !ours {
                        tracing::warn!(
                            ns = self.ns,
                            first,
                            owner = rec.owner,
                            "superseded an abandoned position claim (its writer stopped between claim and segment)"
                        );
                    }
                    return Ok(until);
                }
                Err(StoreError::Precondition(_)) => continue,
                Err(StoreError::NotSupported(_)) if ours => {
                    // Local file system: only this instance writes here.
                    self.store.put_overwrite(&path, record(until)?).await?;
                    return Ok(until);
                }
                Err(StoreError::NotSupported(_)) => {
                    return Err(LeaseError::Fenced { owner: rec.owner });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Store(StoreError::Other(
            "position claim contended; giving up after 5 attempts".into(),
        )))
    }

    /// Whether a claim of this instance with deadline `until_ms` still has
    /// half a lease TTL to go: time enough to issue a write under it.
    pub fn claim_is_fresh(&self, until_ms: i64) -> bool {
        now_ms() < until_ms.saturating_sub(self.ttl_ms / 2)
    }

    /// Whether another owner's claim is abandoned: past its deadline by more
    /// than a lease TTL (its writer issues nothing after the deadline, and a
    /// write issued before it has had a TTL to land), with no segment at its
    /// position.
    async fn abandoned(&self, rec: &ClaimRecord) -> Result<bool, LeaseError> {
        if rec.until_ms <= 0 || now_ms() <= rec.until_ms.saturating_add(self.ttl_ms) {
            return Ok(false);
        }
        let after = format!("{:020}", rec.first);
        let later = self
            .store
            .list_names_after(&layout::segments(&self.ns), &after)
            .await?;
        Ok(!later.iter().any(|n| n.starts_with(&format!("{after}-"))))
    }

    /// Gives the lease up (clean shutdown), if still ours. Where the store
    /// has conditional updates the lease is replaced by an expired tombstone
    /// only if nobody took it over meanwhile; elsewhere (the local file
    /// system, where only its owner ever writes it) it is deleted.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let path = layout::lease(&self.ns);
        let Some(cur) = self.store.get_versioned(&path).await? else {
            return Ok(());
        };
        let rec: LeaseRecord =
            serde_json::from_slice(&cur.bytes).map_err(|e| LeaseError::Malformed(e.to_string()))?;
        if rec.owner != self.owner {
            return Ok(());
        }
        let tombstone = serde_json::to_vec(&LeaseRecord {
            owner: String::new(),
            renewed_at_ms: 0,
            ttl_ms: 0,
        })
        .map_err(|e| LeaseError::Malformed(e.to_string()))?;
        match self
            .store
            .put_update(&path, Bytes::from(tombstone), cur.version)
            .await
        {
            Ok(()) | Err(StoreError::Precondition(_)) => Ok(()),
            Err(StoreError::NotSupported(_)) => Ok(self.store.delete(&path).await?),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn second_owner_is_fenced_until_release() {
        let dir = tempfile::tempdir().unwrap();
        for store in [Store::memory(), Store::local(dir.path()).unwrap()] {
            let a = Lease::acquire(&store, "n", "A", 60_000).await.unwrap();
            assert!(matches!(
                Lease::acquire(&store, "n", "B", 60_000).await,
                Err(LeaseError::Fenced { .. })
            ));
            // The same owner re-acquires (restart after a crash).
            Lease::acquire(&store, "n", "A", 60_000).await.unwrap();
            a.renew().await.unwrap();
            a.claim(0, 9).await.unwrap();
            a.claim(0, 12).await.unwrap();
            a.release().await.unwrap();
            let b = Lease::acquire(&store, "n", "B", 60_000).await.unwrap();
            assert!(matches!(
                b.claim(0, 5).await,
                Err(LeaseError::Fenced { .. })
            ));
            b.claim(10, 12).await.unwrap();
            assert!(matches!(a.renew().await, Err(LeaseError::Fenced { .. })));
        }
    }

    #[tokio::test]
    async fn a_claim_abandoned_past_its_deadline_is_superseded_unless_its_segment_exists() {
        let store = Store::memory();
        let ttl = 100;
        let a = Lease::acquire(&store, "n", "A", ttl).await.unwrap();
        let until = a.claim(0, 9).await.unwrap();
        assert!(until > now_ms());
        a.claim(10, 19).await.unwrap();
        // A stops (killed between claim and segment); B takes the lease.
        tokio::time::sleep(std::time::Duration::from_millis(2 * ttl as u64 + 50)).await;
        let b = Lease::acquire(&store, "n", "B", ttl).await.unwrap();
        // Position 0 has no segment: B supersedes A's claim.
        b.claim(0, 4).await.unwrap();
        // A, back from the dead, cannot renew or reuse it.
        assert!(matches!(a.claim(0, 9).await, Err(LeaseError::Fenced { owner }) if owner == "B"));
        // Position 10's segment was written: that claim is never superseded.
        store
            .put_create(&layout::segment("n", 10, 19), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert!(matches!(b.claim(10, 12).await, Err(LeaseError::Fenced { owner }) if owner == "A"));
        // A fresh claim (deadline not past) fences a second writer.
        let c = Lease::acquire(&store, "m", "C", 60_000).await.unwrap();
        c.claim(0, 1).await.unwrap();
        let d = Lease {
            store: store.clone(),
            ns: "m".into(),
            owner: "D".into(),
            ttl_ms: 1,
        };
        assert!(matches!(
            d.claim(0, 1).await,
            Err(LeaseError::Fenced { .. })
        ));
    }

    #[tokio::test]
    async fn expired_lease_is_taken_over_where_updates_are_conditional() {
        let store = Store::memory();
        let a = Lease::acquire(&store, "n", "A", 1).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        Lease::acquire(&store, "n", "B", 60_000).await.unwrap();
        assert!(matches!(a.renew().await, Err(LeaseError::Fenced { .. })));
    }
}
