//! Decoding request bodies: gzip with a limit on the *decompressed* size,
//! JSON `{"events": [...]}` or NDJSON, per-event size limits, and precise
//! errors naming the event that failed. Nothing is appended unless every
//! event of the request is valid.

use std::io::Read;

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracevault_schemas::Event;

use crate::Limits;
use crate::error::ApiError;

/// Returns the body, decompressed if `Content-Encoding: gzip` or `deflate`,
/// enforcing `max` bytes after decompression. Bytes a decoder would leave
/// unread are refused, never ignored.
pub fn decode_body(headers: &HeaderMap, body: Bytes, max: usize) -> Result<Bytes, ApiError> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match enc.as_str() {
        "identity" | "" => {
            if body.len() > max {
                return Err(too_big(max));
            }
            Ok(body)
        }
        // A gzip body may hold several members (RFC 1952 section 2.2), as
        // concatenating compressed parts makes one: every member is read.
        // (Reading only the first silently dropped the events after it.)
        "gzip" | "x-gzip" => {
            let mut dec = flate2::bufread::MultiGzDecoder::new(&body[..]);
            inflate(&mut dec, "gzip", max)
        }
        // HTTP's "deflate" is the zlib format (RFC 9110 section 8.4.1.2):
        // one stream, and nothing may follow it.
        "deflate" => {
            let mut dec = flate2::bufread::ZlibDecoder::new(&body[..]);
            let out = inflate(&mut dec, "deflate", max)?;
            match dec.get_ref().len() {
                0 => Ok(out),
                n => Err(ApiError::bad_request(
                    "invalid_encoding",
                    format!("{n} bytes follow the end of the deflate stream"),
                )),
            }
        }
        other => Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            format!("Content-Encoding {other:?} is not supported (use gzip, deflate or none)"),
        )),
    }
}

/// Decompresses with a cap: reads at most `max + 1` bytes, so a
/// decompression bomb costs no more than the limit before it is refused.
fn inflate(dec: impl Read, what: &str, max: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    dec.take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            ApiError::bad_request(
                "invalid_encoding",
                format!("{what} body could not be decompressed: {e}"),
            )
        })?;
    if out.len() > max {
        return Err(too_big(max));
    }
    Ok(Bytes::from(out))
}

fn too_big(max: usize) -> ApiError {
    ApiError::too_large(
        "body_too_large",
        format!("request body exceeds {max} bytes (after decompression)"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

fn parse_one(raw: &str, i: usize, limits: &Limits) -> Result<Event, ApiError> {
    if raw.len() > limits.max_event_bytes {
        return Err(ApiError::too_large(
            "event_too_large",
            format!(
                "events[{i}] is {} bytes; at most {} allowed",
                raw.len(),
                limits.max_event_bytes
            ),
        ));
    }
    Event::from_json(raw).map_err(|e| {
        ApiError::bad_request("invalid_event", e.at(&format!("events[{i}]")).to_string())
    })
}

fn check_count(n: usize, limits: &Limits) -> Result<(), ApiError> {
    if n > limits.max_events_per_request {
        return Err(ApiError::too_large(
            "too_many_events",
            format!(
                "{n} events in one request; at most {} allowed",
                limits.max_events_per_request
            ),
        ));
    }
    Ok(())
}

/// Parses the events of a request according to its content type.
pub fn parse_events(
    headers: &HeaderMap,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<Event>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_json", "body is not UTF-8"))?;
    match mime.as_str() {
        "application/json" => {
            let batch: Batch = serde_json::from_str(text).map_err(|e| {
                ApiError::bad_request(
                    "invalid_json",
                    format!("expected {{\"events\": [...]}}: {e}"),
                )
            })?;
            check_count(batch.events.len(), limits)?;
            batch
                .events
                .iter()
                .enumerate()
                .map(|(i, r)| parse_one(r.get(), i, limits))
                .collect()
        }
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            check_count(lines.len(), limits)?;
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| parse_one(l, i, limits))
                .collect()
        }
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {ct:?} is not supported (use application/json or application/x-ndjson)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
        h
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// What a client that compresses its lines part by part sends: every
    /// part's lines are read, none dropped after the first member.
    #[test]
    fn every_gzip_member_is_read() {
        let mut body = gzip(b"{\"kind\":\"output\"}\n");
        body.extend(gzip(b"{\"kind\":\"prompt\"}\n"));
        let out = decode_body(&headers("gzip"), Bytes::from(body), 1 << 20).unwrap();
        assert_eq!(&out[..], b"{\"kind\":\"output\"}\n{\"kind\":\"prompt\"}\n");
    }

    /// Bytes after the compressed data are refused, not ignored.
    #[test]
    fn bytes_after_the_compressed_data_are_refused() {
        let mut body = gzip(b"{\"kind\":\"output\"}\n");
        body.extend_from_slice(b"{\"kind\":\"prompt\"}\n");
        let err = decode_body(&headers("gzip"), Bytes::from(body), 1 << 20).unwrap_err();
        assert_eq!(err.code, "invalid_encoding", "{}", err.message);

        let ok = decode_body(&headers("deflate"), Bytes::from(zlib(b"abc")), 1 << 20).unwrap();
        assert_eq!(&ok[..], b"abc");
        for extra in [&b"{\"kind\":\"prompt\"}\n"[..], &zlib(b"def")[..]] {
            let mut body = zlib(b"abc");
            body.extend_from_slice(extra);
            let err = decode_body(&headers("deflate"), Bytes::from(body), 1 << 20).unwrap_err();
            assert_eq!(err.code, "invalid_encoding", "{}", err.message);
        }
    }
}
