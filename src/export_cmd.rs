//! `tracevault export request|list|status|approve|deny|download`: a client
//! of the export workflow (`docs/exports.md`). Prints the server's JSON;
//! `download` writes the bundle to a file. Exit 0 on success, 1 when the
//! server refused (its error printed), 2 on other errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use tracevault_client::exports::ExportRequest;

use crate::remote::{Remote, report_refusal, runtime};

/// Where and as whom: `--server` and `--token`, the token's role as the
/// subcommand needs it.
#[derive(Args)]
#[command(mut_arg("token", |a| a.help("Reader (request, download) or approver (approve, deny) token")))]
pub struct Conn {
    #[command(flatten)]
    remote: Remote,
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
    let rt = runtime()?;
    if let ExportCmd::Download { conn, id, output } = &cmd {
        return download(&rt, conn, id, output);
    }
    let conn = match &cmd {
        ExportCmd::Request { conn, .. }
        | ExportCmd::List { conn, .. }
        | ExportCmd::Status { conn, .. }
        | ExportCmd::Approve { conn, .. }
        | ExportCmd::Deny { conn, .. }
        | ExportCmd::Download { conn, .. } => conn,
    };
    let client = conn.remote.client()?;
    let answer = rt.block_on(async {
        match &cmd {
            ExportCmd::Request {
                namespace,
                session,
                sql,
                reason,
                ..
            } => {
                if session.is_none() && sql.is_none() {
                    return Ok(None);
                }
                let req = ExportRequest {
                    namespace: namespace.clone(),
                    reason: reason.clone(),
                    session: session.clone(),
                    // A session wins, as clap lets only one through.
                    sql: sql.clone().filter(|_| session.is_none()),
                };
                client.request_export(&req).await
            }
            ExportCmd::List { state, .. } => client.list_exports(state.as_deref()).await,
            ExportCmd::Status { id, .. } => client.export_status(id).await,
            ExportCmd::Approve { id, comment, .. } => client.approve_export(id, comment).await,
            ExportCmd::Deny { id, comment, .. } => client.deny_export(id, comment).await,
            ExportCmd::Download { .. } => unreachable!("downloads are streamed above"),
        }
        .map(Some)
    });
    let bytes = match answer {
        Ok(Some(b)) => b,
        Ok(None) => anyhow::bail!("give --session or --sql"),
        Err(tracevault_client::Error::Status(e)) => return Ok(report_refusal(&e)),
        Err(e) => return Err(anyhow::Error::new(e).context("sending")),
    };
    println!(
        "{}",
        crate::terminal_text::block(&String::from_utf8_lossy(&bytes))
    );
    Ok(ExitCode::SUCCESS)
}

/// `export download`: the bundle streamed into a new file (never one that
/// exists; a bundle can be larger than memory). A refused or failed download
/// leaves no file behind.
fn download(
    rt: &tokio::runtime::Runtime,
    conn: &Conn,
    id: &str,
    output: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let client = conn.remote.client()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .with_context(|| format!("creating {} (refusing to overwrite)", output.display()))?;
    match rt.block_on(client.download_export_to(id, &mut f)) {
        Ok(n) => {
            f.sync_all()?;
            eprintln!(
                "wrote {} ({n} bytes); check it with: tracevault verify-bundle {} --key <verifier key>",
                output.display(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            drop(f);
            let _ = std::fs::remove_file(output);
            match e {
                tracevault_client::Error::Status(e) => Ok(report_refusal(&e)),
                e => Err(anyhow::Error::new(e).context("downloading")),
            }
        }
    }
}
