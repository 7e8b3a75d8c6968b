//! `tracevault witness serve|key`: a C2SP `tlog-witness` of its own, so that
//! two organisations can witness each other's vaults with nothing else
//! installed (docs/witness.md).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use tracevault_server::listener::{Listener, ListenerConfig};
use tracevault_vault::witness::Witness;

/// `witness` subcommands.
#[derive(Subcommand)]
pub enum WitnessCmd {
    /// Run the witness: cosign the trusted logs' checkpoints that are
    /// consistent with what it cosigned before (`POST /witness/add-checkpoint`).
    Serve(ServeArgs),
    /// Print the witness's verifier key (creating its key and name if new).
    Key(KeyArgs),
}

/// `witness serve` options.
#[derive(Args)]
pub struct ServeArgs {
    /// Witness directory (key, name, state of every log; locked while serving).
    #[arg(long)]
    pub data: PathBuf,
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8471")]
    pub listen: String,
    /// A log to witness: its C2SP verifier key (`<origin>+<id>+<base64>`,
    /// as `GET /v1/vault` lists per namespace). Repeatable.
    #[arg(long = "trust", value_name = "VKEY", required = true)]
    pub trust: Vec<String>,
    /// The witness's name (key name in its cosignatures), fixed on first use.
    #[arg(long)]
    pub name: Option<String>,
    /// Allow plain HTTP on a non-loopback address (a TLS-terminating proxy is in front).
    #[arg(long)]
    pub insecure_http: bool,
}

/// `witness key` options.
#[derive(Args)]
pub struct KeyArgs {
    /// Witness directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The witness's name, fixed on first use.
    #[arg(long)]
    pub name: Option<String>,
}

/// The policy of `--witness VKEY... [--witness-threshold K]` (none
/// without `--witness`), as `verify`, `verify-bundle` and `replay` take it.
pub fn policy(
    vkeys: &[String],
    threshold: Option<usize>,
) -> anyhow::Result<Option<tracevault_vault::cosignature::WitnessPolicy>> {
    if vkeys.is_empty() {
        return Ok(None);
    }
    tracevault_vault::cosignature::WitnessPolicy::from_vkeys(vkeys, threshold)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--witness: {e}"))
}

/// Runs a `witness` subcommand.
pub fn run(cmd: WitnessCmd) -> anyhow::Result<()> {
    match cmd {
        WitnessCmd::Key(a) => {
            let w = Witness::open(&a.data, a.name.as_deref(), &[])?;
            println!("{}", w.cosigner().verifier_key());
            Ok(())
        }
        WitnessCmd::Serve(a) => serve(a),
    }
}

fn serve(a: ServeArgs) -> anyhow::Result<()> {
    crate::serve::init_logs();
    let w = Arc::new(Witness::open(&a.data, a.name.as_deref(), &a.trust)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let config = ListenerConfig {
            insecure_http: a.insecure_http,
            ..ListenerConfig::default()
        };
        let bound = Listener::new(config)?.bind(&a.listen).await?;
        let stop = crate::serve::shutdown_signal();
        println!("witness key: {}", w.cosigner().verifier_key());
        for origin in w.logs() {
            println!("witnessing {origin}");
        }
        println!("listening on {}", bound.url());
        bound
            .serve(tracevault_server::witness::router(w), stop)
            .await;
        Ok(())
    })
}
