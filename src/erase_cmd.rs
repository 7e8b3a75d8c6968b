//! `tracevault erase request|list|status|approve|deny|verify-receipt`: a
//! client of the erasure workflow (`docs/erasure.md`). Prints the server's
//! JSON; `status --receipt FILE` saves the receipt of a performed order,
//! which `verify-receipt` checks offline with the log key. Exit 0 on
//! success, 1 when the server refused or a receipt does not verify, 2 on
//! other errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::Value;
use tracevault_client::erasures::ErasureRequest;

use crate::remote::{Remote, report_refusal, runtime};

/// Where and as whom.
#[derive(Args)]
#[command(mut_arg("token", |a| a.help("Admin (request) or approver (approve, deny) token")))]
pub struct Conn {
    #[command(flatten)]
    remote: Remote,
}

/// What to erase: exactly one selection.
#[derive(Args)]
#[group(id = "selection", required = true, multiple = false)]
pub struct Pick {
    /// Every entry of this session.
    #[arg(long, group = "selection")]
    session: Option<String>,
    /// Every entry of this actor.
    #[arg(long, group = "selection")]
    actor: Option<String>,
    /// The entries with this event_id.
    #[arg(long, group = "selection")]
    event_id: Option<String>,
    /// The entries whose idx this SQL (over `traces`) returns.
    #[arg(long, group = "selection")]
    sql: Option<String>,
    /// Entries received from this time (RFC 3339, inclusive; with --to).
    #[arg(long, group = "selection", requires = "to")]
    from: Option<String>,
    /// ... to this time (exclusive).
    #[arg(long, requires = "from")]
    to: Option<String>,
}

/// The erase subcommands.
#[derive(Subcommand)]
pub enum EraseCmd {
    /// Ask for the payloads of some entries to be erased (admin).
    Request {
        #[command(flatten)]
        conn: Conn,
        /// Namespace.
        #[arg(long, alias = "ns")]
        namespace: String,
        #[command(flatten)]
        pick: Pick,
        /// Why (mandatory; e.g. the data subject's request).
        #[arg(long)]
        reason: String,
        /// Erase entries younger than min_retention too (recorded with the order).
        #[arg(long)]
        override_min_retention: bool,
    },
    /// List erasure orders (`--state pending` is an approver's inbox).
    List {
        #[command(flatten)]
        conn: Conn,
        /// pending, approved, performed, denied or expired.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one order; once performed, with its receipt.
    Status {
        #[command(flatten)]
        conn: Conn,
        /// Order id.
        id: String,
        /// Write the receipt (of a performed order) to this file.
        #[arg(long)]
        receipt: Option<PathBuf>,
    },
    /// Approve an order (approver; never one's own).
    Approve {
        #[command(flatten)]
        conn: Conn,
        /// Order id.
        id: String,
        /// Comment recorded with the approval.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny an order (approver); a single deny ends it.
    Deny {
        #[command(flatten)]
        conn: Conn,
        /// Order id.
        id: String,
        /// Why (mandatory).
        #[arg(long)]
        comment: String,
    },
    /// Check a receipt offline with the log key (exit 0 proven, 1 not).
    VerifyReceipt {
        /// The receipt file (`erase status ID --receipt FILE`).
        file: PathBuf,
        /// The log's key: base64 Ed25519 public key or a C2SP verifier key.
        #[arg(long)]
        key: String,
    },
}

fn verify_receipt(file: &PathBuf, key: &str) -> anyhow::Result<ExitCode> {
    let (_, b) =
        tracevault_vault::note::parse_log_key(key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&b)?;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let receipt: Value = serde_json::from_slice(&text).context("the receipt is not JSON")?;
    match tracevault_vault::erasure::receipt::verify(&receipt, &key) {
        Ok(c) => {
            println!("{}", serde_json::to_string_pretty(&c)?);
            eprintln!(
                "erasure {} of {}: {} entries erased; ordered, approved and performed, proven by {} _audit steps against the signed _audit checkpoint of size {}",
                c.id, c.namespace, c.entries, c.steps, c.audit_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAIL {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs a subcommand.
pub fn run(cmd: EraseCmd) -> anyhow::Result<ExitCode> {
    let conn = match &cmd {
        EraseCmd::VerifyReceipt { file, key } => return verify_receipt(file, key),
        EraseCmd::Request { conn, .. }
        | EraseCmd::List { conn, .. }
        | EraseCmd::Status { conn, .. }
        | EraseCmd::Approve { conn, .. }
        | EraseCmd::Deny { conn, .. } => conn,
    };
    if let EraseCmd::Status {
        receipt: Some(path),
        ..
    } = &cmd
    {
        anyhow::ensure!(
            !path.exists(),
            "{} exists; not overwriting it",
            path.display()
        );
    }
    let rt = runtime()?;
    let client = conn.remote.client()?;
    let answer = rt.block_on(async {
        match &cmd {
            EraseCmd::Request {
                namespace,
                pick,
                reason,
                override_min_retention,
                ..
            } => {
                let req = ErasureRequest {
                    namespace: namespace.clone(),
                    reason: reason.clone(),
                    session_id: pick.session.clone(),
                    actor: pick.actor.clone(),
                    event_id: pick.event_id.clone(),
                    sql: pick.sql.clone(),
                    from: pick.from.clone(),
                    to: pick.to.clone(),
                    override_min_retention: *override_min_retention,
                };
                client.request_erasure(&req).await
            }
            EraseCmd::List { state, .. } => client.list_erasures(state.as_deref()).await,
            EraseCmd::Status { id, .. } => client.erasure_status(id).await,
            EraseCmd::Approve { id, comment, .. } => client.decide_erasure(id, true, comment).await,
            EraseCmd::Deny { id, comment, .. } => client.decide_erasure(id, false, comment).await,
            EraseCmd::VerifyReceipt { .. } => unreachable!("handled above"),
        }
    });
    let bytes = match answer {
        Ok(b) => b,
        Err(tracevault_client::Error::Status(e)) => return Ok(report_refusal(&e)),
        Err(e) => return Err(anyhow::Error::new(e).context("sending")),
    };
    if let EraseCmd::Status {
        receipt: Some(path),
        id,
        ..
    } = &cmd
    {
        let v: Value = serde_json::from_slice(&bytes).context("the answer is not JSON")?;
        let r = v
            .get("receipt")
            .filter(|r| !r.is_null())
            .with_context(|| format!("erasure {id} is not performed yet: no receipt"))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        std::io::Write::write_all(&mut f, serde_json::to_string_pretty(r)?.as_bytes())?;
        f.sync_all()?;
        eprintln!(
            "wrote {}; check it with: tracevault erase verify-receipt {} --key <log key>",
            path.display(),
            path.display()
        );
    }
    println!("{}", String::from_utf8_lossy(&bytes));
    Ok(ExitCode::SUCCESS)
}
