//! The witness door: C2SP `tlog-witness` `POST /witness/add-checkpoint`
//! over a [`Witness`] (`tracevault witness serve`). Statuses are the ones
//! the protocol prescribes; a stale client's 409 carries the size to
//! continue from as `text/x.tlog.size`, other errors the API's JSON shape.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tracevault_vault::witness::{MAX_REQUEST_BYTES, Witness, WitnessError};

use crate::error::ApiError;

/// The submission prefix.
pub const PREFIX: &str = "/witness";

/// How long one request may take, body included: a client sending its
/// body byte by byte cannot hold a connection slot for long.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The witness's routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(&format!("{PREFIX}/add-checkpoint"), post(add_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn(
            |req: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        "the request took too long",
                    )
                    .into_response(),
                }
            },
        ))
        .with_state(witness)
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return ApiError::bad_request("bad_witness_request", "the body is not UTF-8")
            .into_response();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Check, persist and sign off the async threads: the state is fsynced.
    let (w2, text) = (w.clone(), text.to_string());
    let outcome = tokio::task::spawn_blocking(move || w2.add_checkpoint(&text, now)).await;
    match outcome {
        Ok(Ok(lines)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response()
        }
        Ok(Err(e)) => witness_error(e),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "witness_state",
            e.to_string(),
        )
        .into_response(),
    }
}

fn witness_error(e: WitnessError) -> Response {
    let msg = e.to_string();
    match e {
        WitnessError::Conflict { size, fork } => {
            if fork {
                tracing::warn!("refused a checkpoint that forks the one cosigned: {msg}");
            }
            (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, "text/x.tlog.size")],
                format!("{size}\n"),
            )
                .into_response()
        }
        WitnessError::BadRequest(_) => {
            ApiError::bad_request("bad_witness_request", msg).into_response()
        }
        WitnessError::UnknownLog(_) => ApiError::not_found("unknown_log", msg).into_response(),
        WitnessError::Forbidden(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "not_signed_by_log", msg).into_response()
        }
        WitnessError::Unprocessable(_) => {
            // A checkpoint signed by the log whose proof does not reach what
            // we cosigned: a fork, or only a bad proof from whoever sent it
            // (anyone holding a genuine newer checkpoint can send one). Worth
            // a line in the log, at most one a minute.
            static REFUSED: crate::throttle::AtMostEvery =
                crate::throttle::AtMostEvery::new(std::time::Duration::from_secs(60));
            if REFUSED.due() {
                tracing::warn!(
                    "refused a checkpoint whose consistency proof does not verify (a fork, or a bad proof from the submitter; further ones this minute are not logged): {msg}"
                );
            }
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "inconsistent_checkpoint",
                msg,
            )
            .into_response()
        }
        WitnessError::State(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "witness_state", msg).into_response()
        }
    }
}
