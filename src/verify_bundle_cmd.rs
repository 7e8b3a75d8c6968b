//! `tracevault verify-bundle FILE --key VERIFIER_KEY`: checks an export
//! bundle offline (no network): exit 0 intact, 1 integrity failure (one
//! line per finding), 2 usage or I/O error, as `verify`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tracevault_query::export::verify_bundle_with;

use crate::terminal_text::line;

/// `verify-bundle` options.
#[derive(Args)]
pub struct VerifyBundleArgs {
    /// The bundle (a tar file from `GET /v1/exports/{id}/bundle`).
    pub file: PathBuf,
    /// The log key: the C2SP verifier key of the bundle's namespace log
    /// (`<origin>/<ns>+<key id>+<base64 key>`, from `GET /v1/vault`) or the
    /// bare base64 log public key.
    #[arg(long)]
    pub key: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// A witness whose cosignature of the bundle's checkpoint counts (C2SP
    /// verifier key of type 0x04). Repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witness: Vec<String>,
    /// How many of the --witness keys must have cosigned it (default: all).
    #[arg(long, requires = "witness")]
    pub witness_threshold: Option<usize>,
}

fn run_inner(a: VerifyBundleArgs) -> anyhow::Result<bool> {
    let file =
        std::fs::read(&a.file).map_err(|e| anyhow::anyhow!("reading {}: {e}", a.file.display()))?;
    let bar = if std::io::stderr().is_terminal() && !a.json {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let witnesses = crate::witness_cmd::policy(&a.witness, a.witness_threshold)?;
    let report = verify_bundle_with(&file, &a.key, witnesses.as_ref(), &mut |done, total| {
        if done == 1 {
            bar.set_length(total);
        }
        if done % 1024 == 0 || done == total {
            bar.set_position(done);
        }
    })?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            println!("FAIL {}", line(f));
        }
        let withheld: Vec<String> = report
            .withheld
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect();
        eprintln!(
            "export {} of {}: {} rows against checkpoint size {}; {} bound to their records, {} proven by leaf only (record withheld); {} erased (values and salt removed under an erasure order); withheld (masked, not verified): {}; history: {} steps proven in _audit, {} bound; {} findings",
            line(&report.export_id),
            line(&report.ns),
            report.rows,
            report.size,
            report.bound,
            report.unbound,
            report.erased,
            if withheld.is_empty() {
                "none".to_string()
            } else {
                withheld.join(", ")
            },
            report.history_steps,
            report.history_bound,
            report.findings.len()
        );
    }
    Ok(report.findings.is_empty())
}

/// Runs `verify-bundle` and maps the outcome to the exit code.
pub fn run(a: VerifyBundleArgs) -> ExitCode {
    match run_inner(a) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {}", line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}
