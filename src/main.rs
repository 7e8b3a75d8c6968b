//! `tracevault`: the one binary. Subcommands wire the crates together:
//! `serve` (the HTTP service), `token issue`, `verify`, `stream` (pipe a
//! session into the vault), `query` (SQL), and `bench ingest`.

/// mimalloc instead of the system allocator: ingest allocates and frees
/// many small objects per event (JSON trees of OTLP mapping, receipts), and
/// glibc's malloc was a fifth of the server's CPU under OTLP load
/// (docs/benchmarks.md, issue 19).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process (and the query workers
/// it starts, which inherit the flag). mimalloc asks for huge pages on its
/// arenas and returns idle memory to the kernel; every later touch of such a
/// region then had the kernel zero a whole 2 MiB page. Under OTLP load that
/// zeroing was 38% of the server's CPU, and 19-21% of `verify`'s
/// (docs/benchmarks.md, issue 19). A failure (an old kernel) changes nothing
/// but speed, so it is ignored.
fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

mod ballista_cmd;
mod bench;
mod erase_cmd;
mod export_cmd;
mod query_cmd;
mod remote;
mod replay;
mod serve;
mod stream_cmd;
mod terminal_text;
mod verify_bundle_cmd;
mod verify_cmd;
mod witness_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Tamper-evident vault for AI reasoning traces and agent session streams.
#[derive(Parser)]
#[command(name = "tracevault", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the service (local store under ./tracevault-data by default).
    Serve(ServeArgs),
    /// Token operations (offline, with the issuer key on this machine).
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Key operations (offline, on the data directory): rotate and retire the token issuer key.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Prove a store intact, or say exactly what changed (exit 0 intact, 1 tampered, 2 error).
    Verify(VerifyArgs),
    /// Check an export bundle offline with the log's verifier key (exit codes as `verify`).
    VerifyBundle(verify_bundle_cmd::VerifyBundleArgs),
    /// Pipe stdin into a live session stream, printing receipts as events become durable.
    Stream(stream_cmd::StreamArgs),
    /// Run SQL against the vault (reader or admin token) and print the result.
    Query(query_cmd::QueryArgs),
    /// Exports under approval: request, list, status, approve, deny, download.
    Export {
        #[command(subcommand)]
        cmd: export_cmd::ExportCmd,
    },
    /// Erasure orders under approval: request, list, status, approve, deny, verify-receipt.
    Erase {
        #[command(subcommand)]
        cmd: erase_cmd::EraseCmd,
    },
    /// Replay a session in the terminal (from a server, a bundle or a data directory).
    Replay(replay::ReplayArgs),
    /// Runs one query for a server (internal: spoken to on stdin/stdout by
    /// `serve` with `[query] isolation = "process"`).
    #[command(hide = true)]
    QueryWorker {
        /// RLIMIT_DATA of the worker (bytes).
        #[arg(long)]
        memory_bytes: u64,
        /// RLIMIT_CPU of the worker (seconds).
        #[arg(long)]
        cpu_seconds: u64,
        /// Nice value of the worker.
        #[arg(long, default_value_t = 10)]
        nice: i32,
        /// Directory under which the worker spills (into `w-{pid}`).
        #[arg(long)]
        spill_dir: std::path::PathBuf,
    },
    /// Distributed SQL: the Ballista scheduler and executors of `[query] engine = "ballista"`.
    Ballista {
        #[command(subcommand)]
        cmd: ballista_cmd::BallistaCmd,
    },
    /// A C2SP tlog-witness of your own: cosign other vaults' checkpoints.
    Witness {
        #[command(subcommand)]
        cmd: witness_cmd::WitnessCmd,
    },
    /// Load generators.
    Bench {
        #[command(subcommand)]
        cmd: BenchCmd,
    },
}

/// `serve` options; each also has an environment variable and a config key.
#[derive(Args)]
pub struct ServeArgs {
    /// Data directory (keys, WAL, local store).
    #[arg(long, env = "TRACEVAULT_DATA")]
    pub data: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "TRACEVAULT_LISTEN")]
    pub listen: Option<String>,
    /// Object store URL (s3://bucket/prefix or file:///path); default <data>/store.
    #[arg(long, env = "TRACEVAULT_STORE")]
    pub store: Option<String>,
    /// TOML config file (docs/configuration.md).
    #[arg(long, env = "TRACEVAULT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key; overrides [server] tls_cert).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (overrides [server] tls_key).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (a TLS-terminating proxy is in front).
    #[arg(long)]
    pub insecure_http: bool,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a JWT signed by the issuer key.
    Issue(TokenIssueArgs),
}

#[derive(Subcommand)]
enum KeysCmd {
    /// A new issuer key signs tokens from now on; the current one keeps
    /// verifying the tokens it signed until it is retired.
    RotateIssuer {
        /// Data directory holding keys/issuer.key.
        #[arg(long, env = "TRACEVAULT_DATA", default_value = "tracevault-data")]
        data: PathBuf,
    },
    /// Stop accepting the tokens of an older issuer key (its id as printed
    /// by rotate-issuer; a running server follows within 30 s).
    RetireIssuer {
        /// The key id.
        kid: String,
        /// Data directory holding keys/issuer.key.
        #[arg(long, env = "TRACEVAULT_DATA", default_value = "tracevault-data")]
        data: PathBuf,
    },
}

fn keys_cmd(cmd: KeysCmd) -> anyhow::Result<()> {
    use tracevault_vault::token::{retire_issuer, rotate_issuer};
    match cmd {
        KeysCmd::RotateIssuer { data } => {
            let (old, new) = rotate_issuer(&data)?;
            println!(
                "issuer key {new} signs new tokens; {old} still verifies until `tracevault keys retire-issuer {old}`"
            );
        }
        KeysCmd::RetireIssuer { kid, data } => {
            retire_issuer(&data, &kid)?;
            println!(
                "issuer key {kid} retired: its tokens are refused (a running server follows within 30 s)"
            );
        }
    }
    Ok(())
}

#[derive(Args)]
struct TokenIssueArgs {
    /// Data directory holding keys/issuer.key.
    #[arg(long, env = "TRACEVAULT_DATA", default_value = "tracevault-data")]
    data: PathBuf,
    /// writer, reader, approver or admin.
    #[arg(long)]
    role: String,
    /// Namespaces, comma-separated (`*` for admin).
    #[arg(long, value_delimiter = ',', required = true)]
    namespace: Vec<String>,
    /// Lifetime: 90s, 30m, 1h, 7d, or seconds.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Reader window start (RFC 3339); required for readers (use
    /// 1970-01-01T00:00:00Z to read all of history).
    #[arg(long)]
    from: Option<String>,
    /// Reader window end (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// Subject (who acts; recorded as ingested_by).
    #[arg(long, default_value = "operator")]
    sub: String,
    /// The person behind the token (e.g. an email), compared across issuers
    /// by the export workflow.
    #[arg(long)]
    person: Option<String>,
}

/// `verify` options.
#[derive(Args)]
pub struct VerifyArgs {
    /// Data directory (its local store is verified).
    #[arg(long, conflicts_with = "store", required_unless_present = "store")]
    pub data: Option<PathBuf>,
    /// Store URL (s3://bucket/prefix or file:///path).
    #[arg(long)]
    pub store: Option<String>,
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Expected log key: base64 Ed25519 public key or C2SP verifier key.
    #[arg(long)]
    pub key: Option<String>,
    /// A checkpoint obtained earlier (file with the signed note).
    #[arg(long, conflicts_with = "since")]
    pub checkpoint: Option<PathBuf>,
    /// Incremental: a checkpoint saved by an earlier run (file with the
    /// signed note). The store is proven consistent with it through the
    /// tiles, and only the entries added after it are read and checked.
    #[arg(long)]
    pub since: Option<PathBuf>,
    /// Segments checked in parallel (default: number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// A witness whose cosignature counts (C2SP verifier key of type 0x04,
    /// as `tracevault witness key` prints it). Repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witness: Vec<String>,
    /// How many of the --witness keys must have cosigned the checkpoint
    /// presented as current (the --checkpoint/--since one, else the
    /// store's latest); default: all of them.
    #[arg(long, requires = "witness")]
    pub witness_threshold: Option<usize>,
    /// Fail (not only warn) when the store holds entries past the newest
    /// checkpoint the witnesses cosigned: they are signed by the log key
    /// alone, and a key holder could have rewritten them.
    #[arg(long, requires = "witness")]
    pub require_witnessed: bool,
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Drive POST /v1/logs/{ns}/events and report throughput and ack latency.
    Ingest(bench::IngestArgs),
}

fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86400),
        _ => (s, 1),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid ttl {s:?} (use 90s, 30m, 1h, 7d)"))?;
    anyhow::ensure!(n > 0, "ttl must be positive");
    n.checked_mul(mult)
        .filter(|t| *t <= 100 * 365 * 86400)
        .ok_or_else(|| anyhow::anyhow!("ttl {s:?} is too long (at most 100 years)"))
}

fn token_issue(a: TokenIssueArgs) -> anyhow::Result<()> {
    use tracevault_vault::token::{Role, TokenIssuer};
    let role = Role::parse(&a.role)
        .ok_or_else(|| anyhow::anyhow!("--role must be writer, reader, approver or admin"))?;
    for ns in &a.namespace {
        if !(ns == "*" && role == Role::Admin) {
            tracevault_vault::validate_namespace(ns, role == Role::Admin)?;
        }
    }
    for (name, t) in [("--from", &a.from), ("--to", &a.to)] {
        if let Some(t) = t {
            tracevault_schemas::parse_timestamp(name, t)?;
        }
    }
    let issuer = TokenIssuer::load(&a.data)?;
    let (jwt, _) = issuer.issue_for(
        role,
        a.namespace,
        &a.sub,
        parse_ttl(&a.ttl)?,
        (a.from, a.to),
        a.person.as_deref(),
    )?;
    println!("{jwt}");
    Ok(())
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(a) => serve::run(a).map(|_| ExitCode::SUCCESS),
        Cmd::Token {
            cmd: TokenCmd::Issue(a),
        } => token_issue(a).map(|_| ExitCode::SUCCESS),
        Cmd::Keys { cmd } => keys_cmd(cmd).map(|_| ExitCode::SUCCESS),
        Cmd::Verify(a) => return verify_cmd::run(a),
        Cmd::VerifyBundle(a) => return verify_bundle_cmd::run(a),
        Cmd::Stream(a) => stream_cmd::run(a),
        Cmd::Query(a) => query_cmd::run(a),
        Cmd::Export { cmd } => export_cmd::run(cmd),
        Cmd::Erase { cmd } => erase_cmd::run(cmd),
        Cmd::Replay(a) => replay::run(a).map(|_| ExitCode::SUCCESS),
        Cmd::Witness { cmd } => witness_cmd::run(cmd).map(|_| ExitCode::SUCCESS),
        Cmd::Ballista { cmd } => ballista_cmd::run(cmd).map(|_| ExitCode::SUCCESS),
        Cmd::QueryWorker {
            memory_bytes,
            cpu_seconds,
            nice,
            spill_dir,
        } => {
            let limits = tracevault_query::worker::SelfLimits {
                memory_bytes,
                cpu_seconds,
                nice,
            };
            return ExitCode::from(
                tracevault_query::worker::worker_main(limits, &spill_dir).clamp(0, 255) as u8,
            );
        }
        Cmd::Bench {
            cmd: BenchCmd::Ingest(a),
        } => bench::run(a).map(|_| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", terminal_text::block(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90s").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("7d").unwrap(), 604800);
        assert_eq!(parse_ttl("42").unwrap(), 42);
        assert!(parse_ttl("0").is_err() && parse_ttl("1y").is_err() && parse_ttl("-5s").is_err());
        assert!(parse_ttl("9223372036854775807d").is_err() && parse_ttl("36501d").is_err());
    }
}
