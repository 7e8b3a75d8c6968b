//! Operations: liveness (`/healthz`, no token), readiness (`/readyz`: the
//! store answers and every open log accepts writes) and Prometheus metrics
//! (`/metrics`, public or admin-only).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracevault_vault::token::Role;

use crate::{ApiError, AppState, auth};

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the object store answers within `ready_timeout_ms` and no open
/// log has failed or been fenced; 503 otherwise (take this server out of a
/// load balancer, it cannot acknowledge writes).
/// An object-store probe's answer (`None`: it answered) and when it was asked.
pub(crate) type Probe = (std::time::Instant, Option<ApiError>);

/// How long one probe of the store answers `/readyz`: callers within it
/// (anyone may ask) share it instead of each sending the store a request.
const PROBE_FOR: Duration = Duration::from_secs(1);

/// The store's readiness, probed at most once per [`PROBE_FOR`] (concurrent
/// callers wait for the one probe in flight).
async fn store_ready(st: &AppState) -> Result<(), ApiError> {
    let mut last = st.ready_probe.lock().await;
    if let Some((at, answer)) = last.as_ref()
        && at.elapsed() < PROBE_FOR
    {
        return answer.clone().map_or(Ok(()), Err);
    }
    let timeout = Duration::from_millis(st.limits.ready_timeout_ms);
    let answer = match tokio::time::timeout(timeout, st.vault.store().probe()).await {
        Err(_) => Some(ApiError::unavailable(
            "store_unreachable",
            format!(
                "the object store did not answer within {} ms",
                timeout.as_millis()
            ),
        )),
        Ok(Err(e)) => {
            // Details (endpoint, bucket) go to the log, not to unauthenticated callers.
            tracing::warn!("readiness: the object store failed: {e}");
            Some(ApiError::unavailable(
                "store_unreachable",
                "the object store failed (see the server log)",
            ))
        }
        Ok(Ok(())) => None,
    };
    *last = Some((std::time::Instant::now(), answer.clone()));
    answer.map_or(Ok(()), Err)
}

pub(crate) async fn readyz(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    store_ready(&st).await?;
    let failed: Vec<String> = st
        .vault
        .open_logs()
        .await
        .into_iter()
        .filter(|(_, l)| !l.is_healthy())
        .map(|(ns, _)| ns)
        .collect();
    if !failed.is_empty() {
        tracing::warn!(
            "readiness: namespaces not accepting writes: {}",
            failed.join(", ")
        );
        return Err(ApiError::unavailable(
            "log_unavailable",
            format!(
                "{} namespace(s) not accepting writes (see the server log)",
                failed.len()
            ),
        ));
    }
    Ok(Json(json!({"status": "ready"})))
}

pub(crate) async fn metrics_text(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if !st.metrics_public
        && let Err(e) = auth::authenticate(&st, &headers)
            .and_then(|c| auth::authorize(&c, &[Role::Admin], None))
    {
        return e.into_response();
    }
    let open = st.vault.open_logs().await;
    let held = open.iter().filter(|(_, l)| l.is_healthy()).count();
    let logs: Vec<_> = open.into_iter().map(|(ns, l)| (ns, l.stats())).collect();
    let in_flight = st
        .limits
        .max_inflight_writes
        .max(1)
        .saturating_sub(st.write_permits.available_permits()) as u64;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut text = st.metrics.render(&logs, in_flight, now_ms);
    crate::metrics::Metrics::render_node(&mut text, st.vault.instance_id(), held);
    if let Some(w) = &st.witnessing {
        let mut lags = Vec::with_capacity(logs.len());
        for (ns, s) in &logs {
            lags.push((ns.clone(), w.lag(ns, s.published).await));
        }
        crate::metrics::Metrics::render_witness_lag(&mut text, &lags);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
