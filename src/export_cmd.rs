//! `tracevault export request|list|status|approve|deny|download`: a client
//! of the export workflow (`docs/exports.md`). Prints the server's JSON;
//! `download` writes the bundle to a file. Exit 0 on success, 1 when the
//! server refused (its error printed), 2 on other errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// Where and as whom.
#[derive(Args)]
pub struct Conn {
    /// Server base URL.
    #[arg(
        long,
        env = "TRACEVAULT_SERVER",
        default_value = "http://127.0.0.1:8470"
    )]
    server: String,
    /// Reader (request, download) or approver (approve, deny) token.
    #[arg(long, env = "TRACEVAULT_TOKEN", hide_env_values = true)]
    token: String,
}

/// The export subcommands.
#[derive(Subcommand)]
pub enum ExportCmd {
    /// Ask for an export of a session or a SQL selection (returning `idx`).
    Request {
        #[command(flatten)]
        conn: Conn,
        /// Namespace.
        #[arg(long)]
        namespace: String,
        /// Export this session.
        #[arg(long, conflicts_with = "sql", required_unless_present = "sql")]
        session: Option<String>,
        /// Export the rows whose `idx` this SQL returns.
        #[arg(long)]
        sql: Option<String>,
        /// Why (mandatory).
        #[arg(long)]
        reason: String,
    },
    /// List exports (`--state pending` is an approver's inbox).
    List {
        #[command(flatten)]
        conn: Conn,
        /// pending, approved, denied, expired or downloaded.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one export and its history.
    Status {
        #[command(flatten)]
        conn: Conn,
        /// Export id.
        id: String,
    },
    /// Approve an export (approver; never one's own).
    Approve {
        #[command(flatten)]
        conn: Conn,
        /// Export id.
        id: String,
        /// Comment recorded with the approval.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny an export (approver); a single deny ends it.
    Deny {
        #[command(flatten)]
        conn: Conn,
        /// Export id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Download an approved export's bundle (the requester; once by default).
    Download {
        #[command(flatten)]
        conn: Conn,
        /// Export id.
        id: String,
        /// Where to write the bundle (refuses to overwrite).
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Runs a subcommand.
pub fn run(cmd: ExportCmd) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let base = |c: &Conn| format!("{}/v1/exports", c.server.trim_end_matches('/'));
    let (conn, req, output) = match &cmd {
        ExportCmd::Request {
            conn,
            namespace,
            session,
            sql,
            reason,
        } => {
            let mut body = json!({"namespace": namespace, "reason": reason});
            match (session, sql) {
                (Some(s), _) => body["session_id"] = json!(s),
                (None, Some(q)) => body["sql"] = json!(q),
                (None, None) => anyhow::bail!("give --session or --sql"),
            }
            (conn, client.post(base(conn)).json(&body), None)
        }
        ExportCmd::List { conn, state } => {
            let mut r = client.get(base(conn));
            if let Some(s) = state {
                r = r.query(&[("state", s)]);
            }
            (conn, r, None)
        }
        ExportCmd::Status { conn, id } => (conn, client.get(format!("{}/{id}", base(conn))), None),
        ExportCmd::Approve { conn, id, comment } => (
            conn,
            client
                .post(format!("{}/{id}/approve", base(conn)))
                .json(&json!({ "comment": comment })),
            None,
        ),
        ExportCmd::Deny { conn, id, comment } => (
            conn,
            client
                .post(format!("{}/{id}/deny", base(conn)))
                .json(&json!({ "comment": comment })),
            None,
        ),
        ExportCmd::Download { conn, id, output } => {
            anyhow::ensure!(
                !output.exists(),
                "{} exists; not overwriting it",
                output.display()
            );
            (
                conn,
                client.get(format!("{}/{id}/bundle", base(conn))),
                Some(output),
            )
        }
    };
    let (status, bytes) = rt.block_on(async {
        let resp = req
            .bearer_auth(&conn.token)
            .send()
            .await
            .context("sending")?;
        let status = resp.status();
        let bytes = resp.bytes().await.context("reading the answer")?;
        anyhow::Ok((status, bytes))
    })?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .map(|v| {
                format!(
                    "{} ({})",
                    v["error"]["message"].as_str().unwrap_or(""),
                    v["error"]["code"].as_str().unwrap_or("")
                )
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).to_string());
        eprintln!("error: the server answered {status}: {msg}");
        return Ok(ExitCode::from(1));
    }
    match output {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            eprintln!(
                "wrote {} ({} bytes); check it with: tracevault verify-bundle {} --key <verifier key>",
                path.display(),
                bytes.len(),
                path.display()
            );
        }
        None => println!("{}", String::from_utf8_lossy(&bytes)),
    }
    Ok(ExitCode::SUCCESS)
}
