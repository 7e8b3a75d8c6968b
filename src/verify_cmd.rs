//! `tracevault verify`: exit 0 intact, 1 integrity failure (one line per
//! finding), 2 usage or I/O error.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use indicatif::{ProgressBar, ProgressStyle};
use tracevault_vault::verify::VerifyOptions;
use tracevault_vault::{LogReader, Store};

use crate::VerifyArgs;

/// `--key`: the base64 log public key or a C2SP verifier key of the log.
fn parse_key(s: &str) -> anyhow::Result<VerifyingKey> {
    let (_, b) =
        tracevault_vault::note::parse_log_key(s).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
    Ok(VerifyingKey::from_bytes(&b)?)
}

fn run_inner(a: VerifyArgs) -> anyhow::Result<bool> {
    let store = match (&a.data, &a.store) {
        (Some(d), None) => {
            let root = d.join("store");
            anyhow::ensure!(root.is_dir(), "{} has no store directory", d.display());
            Store::local(&root)?
        }
        (None, Some(u)) => Store::from_url(u)?,
        _ => anyhow::bail!("give exactly one of --data or --store"),
    };
    let pinned_key = a.key.as_deref().map(parse_key).transpose()?;
    let pinned_checkpoint = match a.checkpoint.as_ref().or(a.since.as_ref()) {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new_spinner();
        b.set_style(ProgressStyle::with_template(
            "{spinner} verified {bytes} ({bytes_per_sec}) {msg}",
        )?);
        b
    } else {
        ProgressBar::hidden()
    };
    let b2 = bar.clone();
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            * 2
    });
    let witnesses = crate::witness_cmd::policy(&a.witness, a.witness_threshold)?;
    let opts = VerifyOptions {
        witnesses,
        require_witnessed: a.require_witnessed,
        pinned_key,
        pinned_checkpoint,
        namespace: a.namespace.clone(),
        incremental: a.since.is_some(),
        concurrency: jobs,
        progress: Some(Arc::new(move |n| b2.inc(n))),
    };
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(LogReader::new(store).verify(&opts))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for f in &report.findings {
        println!("FAIL {f}");
    }
    let entries: u64 = report.namespaces.iter().map(|n| n.entries).sum();
    let bytes: u64 = report.namespaces.iter().map(|n| n.bytes).sum();
    let hashed: u64 = report.namespaces.iter().map(|n| n.hashed).sum();
    let segments: usize = report.namespaces.iter().map(|n| n.segments).sum();
    let checkpoints: usize = report.namespaces.iter().map(|n| n.checkpoints).sum();
    let verdict = if report.findings.is_empty() {
        "OK"
    } else {
        "TAMPERED"
    };
    println!(
        "{verdict}: {} namespaces, {entries} entries, {segments} segments, {checkpoints} checkpoints, {:.1} MB in {secs:.2}s ({:.1} MB/s; {:.1} MB hashed, {:.1} MB/s), {} findings",
        report.namespaces.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs.max(1e-9),
        hashed as f64 / 1e6,
        hashed as f64 / 1e6 / secs.max(1e-9),
        report.findings.len()
    );
    Ok(report.findings.is_empty())
}

/// Runs `verify` and maps the outcome to the exit code.
pub fn run(a: VerifyArgs) -> ExitCode {
    match run_inner(a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
