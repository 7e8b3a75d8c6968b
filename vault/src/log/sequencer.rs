//! The sequencer: one thread per namespace that seals queued batches, writes
//! them to the WAL with one fsync, and answers each batch with its receipts.

use super::*;

/// Where a batch's receipts (or its error) are sent.
pub(super) type Reply = oneshot::Sender<Result<Vec<Receipt>, AppendError>>;

pub(super) struct AppendReq {
    pub(super) events: Vec<Prepared>,
    pub(super) ingested_by: String,
    pub(super) reply: Reply,
}

/// What the sequencer thread owns.
pub(super) struct Sequencer {
    pub(super) ns: String,
    pub(super) wal: Wal,
    pub(super) next: u64,
    pub(super) chain: Hash,
    pub(super) last_received: i64,
    pub(super) sessions: HashMap<String, u64>,
    pub(super) dedup: Dedup,
}

pub(super) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(super) fn sequencer_loop(
    mut s: Sequencer,
    mut rx: mpsc::Receiver<AppendReq>,
    shared: Arc<Shared>,
    group_max: usize,
) {
    let mut entries: Vec<Entry> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut reqs = vec![first];
        let mut n = reqs[0].events.len();
        while n < group_max {
            match rx.try_recv() {
                Ok(r) => {
                    n += r.events.len();
                    reqs.push(r);
                }
                Err(_) => break,
            }
        }
        // Re-check here, not only at enqueue: a request may have waited in the
        // queue past the lease deadline. Sealing and the WAL write follow at once.
        let valid_until = *shared
            .lease_valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let refused = match shared.check() {
            Err(e) => Some(e),
            Ok(()) if Instant::now() > valid_until => Some(AppendError::LeaseLapsed),
            Ok(()) => None,
        };
        if let Some(e) = refused {
            for r in reqs {
                let _ = r.reply.send(Err(clone_err(&e)));
            }
            continue;
        }
        // An erasure happened: the window forgets the salts of its entries.
        let erased = std::mem::take(
            &mut *shared
                .erased_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for e in &erased {
            s.dedup.forget_payloads(e);
        }
        // An erasure asked for a fresh WAL file (see `Appender::erase`).
        // A failed rotation keeps the current file (the erasure then reports
        // that the WAL still holds its entries, and is retried).
        if shared.wal_rotate.swap(false, Ordering::SeqCst)
            && let Err(e) = s.wal.rotate_at(s.next)
        {
            tracing::warn!(ns = %s.ns, "WAL rotation for an erasure failed: {e}");
        }
        entries.clear();
        let mut answers: Vec<(Reply, Result<Vec<Receipt>, AppendError>)> = Vec::new();
        let mut failed = None;
        let mut pending = reqs.into_iter();
        for req in pending.by_ref() {
            // All or nothing: a request with an `event_id` conflict is refused
            // before any of its events is sealed.
            let keys = match keys_unless_conflict(&s.dedup, &s.ns, &req, s.next) {
                Ok(keys) => keys,
                Err(msg) => {
                    answers.push((req.reply, Err(AppendError::Conflict(msg))));
                    continue;
                }
            };
            let mut receipts = Vec::with_capacity(req.events.len());
            for (ev, key) in req.events.into_iter().zip(keys) {
                if let Some(key) = &key
                    && let Seen::Duplicate(r) =
                        s.dedup.seen(key, &ev, &s.ns, &req.ingested_by, s.next)
                {
                    receipts.push(r);
                    continue;
                }
                s.last_received = s.last_received.max(now_micros());
                let session_seq = *s.sessions.get(ev.session_id()).unwrap_or(&0);
                // A counter at the end of u64 (only a forged snapshot can
                // put it there): refuse rather than wrap and reuse numbers.
                if session_seq == u64::MAX {
                    failed = Some(format!(
                        "session {:?} has no session_seq left",
                        ev.session_id()
                    ));
                    break;
                }
                let sealed = ev.seal(Position {
                    ns: &s.ns,
                    idx: s.next,
                    session_seq,
                    received_at: s.last_received,
                    ingested_by: &req.ingested_by,
                    prev_chain: s.chain,
                });
                match sealed {
                    Ok(e) => {
                        s.next += 1;
                        s.chain = e.chain_hash;
                        // A known session's counter is bumped in place: no
                        // copy of its id per event on this thread.
                        match s.sessions.get_mut(e.session_id.as_str()) {
                            Some(next) => *next = session_seq + 1,
                            None => {
                                s.sessions.insert(e.session_id.clone(), session_seq + 1);
                            }
                        }
                        if let Some(key) = key {
                            s.dedup.insert(key, &e);
                        }
                        receipts.push(receipt(&e));
                        entries.push(e);
                    }
                    Err(e) => {
                        failed = Some(format!("sealing failed: {e}"));
                        break;
                    }
                }
            }
            answers.push((req.reply, Ok(receipts)));
            if failed.is_some() {
                break;
            }
        }
        // Requests after a failure get the failure too, not a dropped channel.
        answers.extend(pending.map(|r| (r.reply, Ok(Vec::new()))));
        if failed.is_none()
            && let Err(e) = s.wal.append(&entries)
        {
            failed = Some(format!("WAL write failed: {e}"));
        }
        if let Some(msg) = failed {
            // Fail closed: after a failed write or fsync we cannot know what is on
            // disk, so nothing more is acknowledged until a restart recovers.
            shared.fail(STATUS_FAILED, msg.clone());
            for (reply, _) in answers {
                let _ = reply.send(Err(AppendError::Failed(msg.clone())));
            }
            // Entries sealed before the failure are not in the tree: their
            // dedupe keys must not answer later retries as duplicates. The
            // log is failed (nothing more is acknowledged) until a restart
            // rebuilds the window from what is really stored.
            continue;
        }
        // The entries are in the WAL; they must also be in the tree before a
        // receipt says so. A poisoned state lock (a panic elsewhere) means
        // they cannot be: fail as a failed write does (no receipt; a restart
        // recovers them from the WAL), never acknowledge entries left out.
        let added = match shared.state.write() {
            Ok(mut st) => {
                for e in entries.drain(..) {
                    st.tail_bytes += e.approx_size();
                    st.tail.push_back(Arc::new(e));
                }
                true
            }
            Err(_) => false,
        };
        if !added {
            let msg =
                "the log's state lock is poisoned; restart to recover from the WAL".to_string();
            shared.fail(STATUS_FAILED, msg.clone());
            for (reply, _) in answers {
                let _ = reply.send(Err(AppendError::Failed(msg.clone())));
            }
            continue;
        }
        shared.durable_tx.send_replace(s.next);
        for (reply, outcome) in answers {
            let _ = reply.send(outcome);
        }
        if let Err(e) = s.wal.release_below(shared.published.load(Ordering::SeqCst)) {
            tracing::warn!(ns = %s.ns, "WAL cleanup: {e}");
        }
        shared.wal_oldest.store(s.wal.oldest(), Ordering::SeqCst);
    }
}

pub(super) fn clone_err(e: &AppendError) -> AppendError {
    match e {
        AppendError::Overloaded(m) => AppendError::Overloaded(m),
        AppendError::Fenced(m) => AppendError::Fenced(m.clone()),
        AppendError::Failed(m) => AppendError::Failed(m.clone()),
        AppendError::Closed => AppendError::Closed,
        AppendError::LeaseLapsed => AppendError::LeaseLapsed,
        AppendError::Conflict(m) => AppendError::Conflict(m.clone()),
    }
}

/// The dedupe keys of `req`'s events, in order (`None` for an event without
/// an `event_id`), computed once for the check here and the appends after
/// it; or the first `event_id` conflict: an event whose key the window (or
/// an earlier event of the same request) holds for a different event.
pub(super) fn keys_unless_conflict(
    dedup: &Dedup,
    ns: &str,
    req: &AppendReq,
    next: u64,
) -> Result<Vec<Option<Hash>>, String> {
    let mut keys = Vec::with_capacity(req.events.len());
    let mut own: HashMap<Hash, &Prepared> = HashMap::with_capacity(req.events.len());
    for ev in &req.events {
        let Some(id) = ev.event_id() else {
            keys.push(None);
            continue;
        };
        let key = dedup_key(&req.ingested_by, ev.session_id(), id);
        keys.push(Some(key));
        let clash = match dedup.seen(&key, ev, ns, &req.ingested_by, next) {
            Seen::Conflict => true,
            Seen::Duplicate(_) => false,
            Seen::New => own.insert(key, ev).is_some_and(|f| !f.same_event(ev)),
        };
        if clash {
            let shown: String = id.chars().take(128).collect();
            return Err(format!(
                "event_id {shown:?} of session {:?} was already used by this writer for a different event; nothing of this request was appended",
                ev.session_id()
            ));
        }
    }
    Ok(keys)
}
