//! `tracevault stream`: pipes stdin into a live session stream
//! (`POST /v1/logs/{ns}/sessions/{id}/stream`) and prints the receipts as
//! they come back, so a shell session can be recorded while it happens:
//!
//! ```text
//! script -qf >(tracevault stream --server http://127.0.0.1:8470 --token "$T" --session s1)
//! ```
//!
//! Each stdin line is sent as soon as it is read. A line that is a JSON object
//! is sent as an Event (its `session_id` may be omitted); any other line
//! becomes an event of `--kind` (default `output`) whose content is the line.

use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tracevault_client::{Client, UrlError};

use crate::remote::Remote;

/// How stdin lines are read.
#[derive(Clone, Copy, ValueEnum)]
pub enum LineFormat {
    /// JSON objects are events; other lines are plain text.
    Auto,
    /// Every line must be a JSON event.
    Ndjson,
    /// Every line is plain text, even if it looks like JSON.
    Lines,
}

/// `--server` and `--token`, the token's role in its help. (Set here, on a
/// struct of its own: `mut_arg` moves the argument last, which would move
/// `--token` after the command's other required arguments in the usage line.)
#[derive(Args)]
#[command(mut_arg("token", |a| a.help("Writer token")))]
pub struct WriterRemote {
    #[command(flatten)]
    remote: Remote,
}

/// `stream` options.
#[derive(Args)]
pub struct StreamArgs {
    #[command(flatten)]
    remote: WriterRemote,
    /// Namespace (default: the token's only namespace).
    #[arg(long)]
    namespace: Option<String>,
    /// Session id of every event.
    #[arg(long)]
    session: String,
    /// Kind of the events made from plain lines.
    #[arg(long, default_value = "output")]
    kind: String,
    /// How stdin lines are read.
    #[arg(long, value_enum, default_value = "auto")]
    format: LineFormat,
    /// Print only the final summary, not one receipt per line.
    #[arg(long)]
    quiet: bool,
}

/// The namespace named in a JWT's `ns` claim, when it names exactly one.
/// (The server checks the token; this only reads it to pick a default.)
fn token_namespace(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    match claims.get("ns")?.as_array()?.as_slice() {
        [Value::String(ns)] if ns != "*" => Some(ns.clone()),
        _ => None,
    }
}

/// Turns one stdin line into the NDJSON line to send.
fn to_event_line(line: &str, format: LineFormat, kind: &str) -> anyhow::Result<Option<String>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let as_json = || match serde_json::from_str::<Value>(line) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    };
    let v = match format {
        LineFormat::Ndjson => {
            if line.trim().is_empty() {
                return Ok(None);
            }
            as_json().with_context(|| format!("not a JSON event: {line:?}"))?
        }
        LineFormat::Auto => as_json().unwrap_or_else(|| json!({"kind": kind, "content": line})),
        LineFormat::Lines => json!({"kind": kind, "content": line}),
    };
    Ok(Some(v.to_string()))
}

/// Runs the client; exit 0 when every line was committed and the stream ended
/// cleanly, 1 when some line was refused or the stream ended early, 2 on errors.
pub fn run(a: StreamArgs) -> anyhow::Result<ExitCode> {
    let ns = match a
        .namespace
        .clone()
        .or_else(|| token_namespace(&a.remote.remote.token))
    {
        Some(ns) => ns,
        None => bail!("--namespace is required: the token does not name exactly one namespace"),
    };
    tracevault_schemas::validate_session_id(&a.session)?;
    let client = a.remote.remote.client()?;
    // Checked now, before stdin is read; the client builds the same URL.
    let url = match client.url_of(&["v1", "logs", &ns, "sessions", &a.session, "stream"]) {
        Ok(url) => url.to_string(),
        Err(UrlError::Parse(e)) => {
            return Err(
                anyhow::Error::new(e).context(format!("--server {:?}", a.remote.remote.server))
            );
        }
        Err(UrlError::CannotBeABase) => bail!("--server must be an http(s) URL"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(stream(a, client, ns, url));
    // A blocking read of stdin may still be pending: do not wait for it.
    rt.shutdown_background();
    result
}

async fn stream(
    a: StreamArgs,
    client: Client,
    ns: String,
    url: String,
) -> anyhow::Result<ExitCode> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let (format, kind) = (a.format, a.kind.clone());
    let reader = tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let mut raw = Vec::new();
        loop {
            raw.clear();
            if stdin.read_until(b'\n', &mut raw).await? == 0 {
                break;
            }
            // Terminal output is not always UTF-8: keep the line, replace
            // the undecodable bytes, never stop recording over them.
            let text = String::from_utf8_lossy(&raw);
            let line = text.strip_suffix('\n').unwrap_or(&text);
            if let Some(mut out) = to_event_line(line, format, &kind)? {
                out.push('\n');
                if tx.send(Ok(Bytes::from(out))).await.is_err() {
                    break; // the request ended (server closed it)
                }
            }
        }
        anyhow::Ok(())
    });
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut receipts = match client.stream_session(&ns, &a.session, lines).await {
        Ok(r) => r,
        Err(tracevault_client::Error::Status(e)) => {
            bail!(
                "server answered {}: {}",
                e.status,
                String::from_utf8_lossy(&e.body)
            );
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("POST {url}"))),
    };
    let mut out = tokio::io::stdout();
    let mut summary: Option<Value> = None;
    let mut errors = 0u64;
    while let Some(line) = receipts.next_line().await {
        let line = line.context("reading the receipts")?;
        let v: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
        if let Some(s) = v.get("summary") {
            summary = Some(s.clone());
        } else if v.get("error").is_some() {
            errors += 1;
            eprintln!("{}", String::from_utf8_lossy(&line).trim_end());
        } else if !a.quiet {
            out.write_all(&line).await?;
            out.flush().await?;
        }
    }
    // The response has ended: the server closed the stream (end of stdin,
    // or its own reasons). Stop reading stdin either way.
    if reader.is_finished() {
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context("reading stdin")),
            Err(e) => bail!("stdin reader failed: {e}"),
        }
    } else {
        reader.abort();
    }
    let Some(summary) = summary else {
        bail!("the stream ended without a summary (connection lost?)");
    };
    eprintln!("summary: {summary}");
    let clean = summary.get("end").and_then(Value::as_str) == Some("eof") && errors == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_events() {
        let plain = to_event_line("$ ls -l", LineFormat::Auto, "output")
            .unwrap()
            .unwrap();
        assert_eq!(plain, r#"{"content":"$ ls -l","kind":"output"}"#);
        let ev = r#"{"kind":"input","content":"ls"}"#;
        let got = to_event_line(ev, LineFormat::Auto, "output")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&got).unwrap()["kind"],
            "input"
        );
        let forced = to_event_line(ev, LineFormat::Lines, "output")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&forced).unwrap()["content"],
            ev
        );
        assert!(to_event_line("not json", LineFormat::Ndjson, "output").is_err());
        assert!(
            to_event_line("", LineFormat::Ndjson, "output")
                .unwrap()
                .is_none()
        );
        // A JSON array or number is not an event: sent as text in auto mode.
        let arr = to_event_line("[1,2]", LineFormat::Auto, "output")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&arr).unwrap()["content"],
            "[1,2]"
        );
    }

    #[test]
    fn namespace_from_token() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"ns":["agents"]}"#);
        assert_eq!(
            token_namespace(&format!("h.{claims}.s")).as_deref(),
            Some("agents")
        );
        let two = URL_SAFE_NO_PAD.encode(br#"{"ns":["a","b"]}"#);
        assert_eq!(token_namespace(&format!("h.{two}.s")), None);
        assert_eq!(token_namespace("garbage"), None);
    }
}
