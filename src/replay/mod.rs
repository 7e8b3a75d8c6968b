//! `tracevault replay` (SPEC section 6): the terminal replayer of one
//! session, over one of three sources: a server (reader token; masked as the
//! token dictates), an export bundle (offline), or a data directory (an
//! operator on the box, unmasked). Each source also works out the integrity
//! verdict shown in the header, in the background. The server and bundle
//! sources live in the replayer's crate (`tracevault_replay::sources`); this
//! module parses the arguments and picks one.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracevault_replay::sources::{bundle, data, server};
use tracevault_replay::{ReplayOptions, Source};

/// `replay` options.
#[derive(Args)]
pub struct ReplayArgs {
    /// Server URL (with --token and --session).
    #[arg(long, conflicts_with_all = ["bundle", "data"], requires_all = ["token", "session"])]
    server: Option<String>,
    /// Reader token (or TRACEVAULT_TOKEN).
    #[arg(long, env = "TRACEVAULT_TOKEN")]
    token: Option<String>,
    /// Session id (optional with --bundle when it holds one session).
    #[arg(long)]
    session: Option<String>,
    /// Namespace (default: the only one that holds the session).
    #[arg(long)]
    ns: Option<String>,
    /// An export bundle (offline; --key checks it).
    #[arg(long, conflicts_with = "data")]
    bundle: Option<PathBuf>,
    /// A data directory (operator on the box: reads its store directly, unmasked).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The pinned log key: a C2SP verifier key (`name+id+base64`, from `GET
    /// /v1/vault`) or the base64 log public key, with any source. Without
    /// it the verdict is at most "unverified".
    #[arg(long)]
    key: Option<String>,
    /// A witness whose cosignature of the checkpoint counts (C2SP verifier
    /// key of type 0x04). Repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    witness: Vec<String>,
    /// How many of the --witness keys must have cosigned it (default: all).
    #[arg(long, requires = "witness")]
    witness_threshold: Option<usize>,
    /// With --server: a checkpoint kept from an earlier run (a file with the
    /// signed note, from a receipt, a bundle or `verify`); every checkpoint
    /// the server shows must be consistent with it, so a server holding the
    /// log key cannot show you another history than the one you saw.
    #[arg(long, requires = "server")]
    checkpoint: Option<PathBuf>,
    /// Tail the session as new events arrive.
    #[arg(long)]
    follow: bool,
    /// Start playing at once.
    #[arg(long)]
    play: bool,
    /// Idle gaps longer than this many seconds play as this long (0: real gaps).
    #[arg(long, default_value_t = 2.0)]
    max_gap: f64,
    /// Where `y` writes an event as JSON.
    #[arg(long, default_value = ".")]
    export_dir: PathBuf,
}

/// Runs the replayer until the user quits.
pub fn run(a: ReplayArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.max_gap >= 0.0 && a.max_gap.is_finite(),
        "--max-gap must be a non-negative number of seconds"
    );
    let witnesses = crate::witness_cmd::policy(&a.witness, a.witness_threshold)?;
    let since = match &a.checkpoint {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("--checkpoint {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let source: Box<dyn Source> = match (&a.server, &a.bundle, &a.data) {
        (Some(url), None, None) => Box::new(
            server::ServerSource::open(
                url,
                a.token.as_deref().unwrap_or_default(),
                a.session.as_deref().unwrap_or_default(),
                a.ns.as_deref(),
                a.key.clone(),
                witnesses,
            )?
            .since(since),
        ),
        (None, Some(file), None) => Box::new(bundle::open(
            file,
            a.session.as_deref(),
            a.key.clone(),
            witnesses,
        )?),
        (None, None, Some(dir)) => Box::new(data::open(
            dir,
            a.ns.as_deref(),
            a.session
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("--data needs --session"))?,
            a.key.as_deref(),
            witnesses,
        )?),
        _ => anyhow::bail!("give one of --server (with --token and --session), --bundle or --data"),
    };
    let opts = ReplayOptions {
        max_gap: (a.max_gap > 0.0).then(|| Duration::from_secs_f64(a.max_gap)),
        follow: a.follow,
        autoplay: a.play,
        export_dir: a.export_dir,
        ..ReplayOptions::default()
    };
    tracevault_replay::run(source, opts)?;
    Ok(())
}
