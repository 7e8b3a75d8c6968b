//! `tracevault replay` (SPEC section 6): the terminal replayer of one
//! session, over one of three sources: a server (reader token; masked as the
//! token dictates), an export bundle (offline), or a data directory (an
//! operator on the box, unmasked). Each source also works out the integrity
//! verdict shown in the header, in the background.

mod bundle;
mod data;
mod server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use tracevault_replay::{
    Integrity, ReplayEvent, ReplayOptions, SessionInfo, Source, SourceError, TimelineIndex,
    VecSource,
};
use tracevault_vault::record::Entry;

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
    let source: Box<dyn Source> = match (&a.server, &a.bundle, &a.data) {
        (Some(url), None, None) => Box::new(server::ServerSource::open(
            url,
            a.token.as_deref().unwrap_or_default(),
            a.session.as_deref().unwrap_or_default(),
            a.ns.as_deref(),
            a.key.clone(),
        )?),
        (None, Some(file), None) => {
            Box::new(bundle::open(file, a.session.as_deref(), a.key.clone())?)
        }
        (None, None, Some(dir)) => Box::new(data::open(
            dir,
            a.ns.as_deref(),
            a.session
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("--data needs --session"))?,
            a.key.as_deref(),
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

/// The verdict a background check updates.
type Verdict = Arc<Mutex<Integrity>>;

fn set(v: &Verdict, i: Integrity) {
    if let Ok(mut g) = v.lock() {
        *g = i;
    }
}

/// The background check of a source, started after the first page so that
/// it does not compete with the first frame for the CPU.
type Check = Box<dyn FnOnce() + Send>;

/// A session whose verdict a background check works out.
struct Checked<S = VecSource> {
    inner: S,
    verdict: Verdict,
    check: Option<Check>,
}

impl<S: Source> Checked<S> {
    fn new(inner: S, verdict: Verdict, check: Check) -> Checked<S> {
        Checked {
            inner,
            verdict,
            check: Some(check),
        }
    }
}

impl<S: Source> Source for Checked<S> {
    fn info(&self) -> SessionInfo {
        self.inner.info()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn page(&mut self, start: u64, count: usize) -> Result<Vec<ReplayEvent>, SourceError> {
        let page = self.inner.page(start, count);
        if let Some(check) = self.check.take() {
            std::thread::spawn(check);
        }
        page
    }
    fn index(&mut self) -> Result<TimelineIndex, SourceError> {
        self.inner.index()
    }
    fn search(
        &mut self,
        query: &str,
        from: u64,
        forward: bool,
    ) -> Result<Option<u64>, SourceError> {
        self.inner.search(query, from, forward)
    }
    fn integrity(&mut self) -> Integrity {
        self.verdict
            .lock()
            .map(|g| g.clone())
            .unwrap_or(Integrity::Unverified {
                reason: "the check stopped".into(),
            })
    }
}

/// A stored entry as the replayer shows it (nothing masked).
fn from_entry(e: &Entry) -> ReplayEvent {
    ReplayEvent {
        idx: e.idx,
        session_seq: e.session_seq,
        kind: e.kind.as_str().to_string(),
        ts: e.ts,
        received_at: e.received_at,
        name: e.name.clone(),
        actor: e.actor.clone(),
        model: e.model.clone(),
        event_id: e.event_id.clone().unwrap_or_default(),
        span_id: e.span_id.clone(),
        parent_span_id: e.parent_span_id.clone(),
        content: e.content.clone(),
        content_type: e.content_type.map_or("text", |c| c.as_str()).to_string(),
        attributes: e.attributes.clone(),
        masked: Vec::new(),
        leaf_hash: hex::encode(e.leaf_hash),
    }
}
