//! The sources the replayer reads sessions from, beside the replayer that
//! uses them: a server ([`server`]: through the query API, with a reader
//! token), an export bundle ([`bundle`]: offline), or a data directory
//! ([`data`]: an operator on the box, reading the store through
//! `vault::LogReader`).
//!
//! Each source works out the integrity verdict shown in the header in the
//! background; [`Checked`] holds that verdict beside a source that serves
//! the events. Every source must keep the [`Source`] contract that
//! [`crate::conformance::check`] states.

pub mod bundle;
pub mod data;
pub mod server;

use std::sync::{Arc, Mutex};

use tracevault_vault::record::Entry;

use crate::{Integrity, ReplayEvent, SessionInfo, Source, SourceError, TimelineIndex, VecSource};

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The arguments do not name something that can be replayed (no such
    /// session, a session in several namespaces, an unreadable file); the
    /// message says what to give instead.
    #[error("{0}")]
    Refused(String),
    /// The source failed while reading the session.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The server could not be set up as a client.
    #[error(transparent)]
    Client(#[from] tracevault_client::Error),
    /// The bundle does not read.
    #[error(transparent)]
    Bundle(#[from] tracevault_query::export::ExportError),
    /// The namespace is not a namespace name.
    #[error(transparent)]
    Namespace(#[from] tracevault_vault::VaultError),
    /// The background runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The verdict a background check updates.
pub type Verdict = Arc<Mutex<Integrity>>;

/// Sets the verdict. A poisoned lock is left alone: [`Checked`] then shows
/// "unverified", never a stale "verified".
/// Sets the verdict, unless a failure is already shown: once a check has
/// failed, nothing a later check finds hides it.
pub fn set(v: &Verdict, i: Integrity) {
    if let Ok(mut g) = v.lock()
        && !matches!(*g, Integrity::Failed { .. })
    {
        *g = i;
    }
}

/// The background check of a source, started after the first page so that
/// it does not compete with the first frame for the CPU.
pub type Check = Box<dyn FnOnce() + Send>;

/// A session whose verdict a background check works out.
pub struct Checked<S = VecSource> {
    inner: S,
    verdict: Verdict,
    check: Option<Check>,
}

impl<S: Source> Checked<S> {
    /// `inner`, whose verdict `check` sets in `verdict` once started.
    pub fn new(inner: S, verdict: Verdict, check: Check) -> Checked<S> {
        Checked {
            inner,
            verdict,
            check: Some(check),
        }
    }
}

impl<S: Source> Source for Checked<S> {
    fn info(&self) -> SessionInfo {
        self.inner.info()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        let page = self.inner.page(start, count);
        if let Some(check) = self.check.take() {
            std::thread::spawn(check);
        }
        page
    }
    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        self.inner.index()
    }
    fn search(
        &mut self,
        query: &str,
        from: u64,
        forward: bool,
    ) -> Result<Option<u64>, SourceError> {
        self.inner.search(query, from, forward)
    }
    fn integrity(&mut self) -> Integrity {
        self.verdict
            .lock()
            .map(|g| g.clone())
            .unwrap_or(Integrity::Unverified {
                reason: "the check stopped".into(),
            })
    }
}

/// What an erased payload shows as (the same marker as in SQL results).
pub const ERASED: &str = "[ERASED]";

/// A stored entry as the replayer shows it (nothing masked; an erased
/// payload as [`ERASED`]).
pub fn from_entry(e: &Entry) -> ReplayEvent {
    let erased = e.is_erased().then(|| ERASED.to_string());
    ReplayEvent {
        idx: e.idx,
        session_seq: e.session_seq,
        kind: e.kind.as_str().to_string(),
        ts: e.ts,
        received_at: e.received_at,
        name: e.name.clone(),
        actor: e.actor.clone(),
        model: e.model.clone(),
        ingested_by: Some(e.ingested_by.clone()),
        event_id: e.event_id.clone().unwrap_or_default(),
        span_id: e.span_id.clone(),
        parent_span_id: e.parent_span_id.clone(),
        content: erased.clone().or_else(|| e.content.clone()),
        content_type: match e.is_erased() {
            true => "text".to_string(),
            false => e.content_type.map_or("text", |c| c.as_str()).to_string(),
        },
        attributes: erased.or_else(|| e.attributes.clone()),
        masked: Vec::new(),
        leaf_hash: hex::encode(e.leaf_hash),
    }
}
