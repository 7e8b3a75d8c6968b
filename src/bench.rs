//! `tracevault bench ingest`: the load generator of the write API
//! ([`tracevault_client::load`]) with its options and its report.

use clap::Args;
use tracevault_client::Client;
use tracevault_client::load::{self, LoadFormat, LoadPlan};

/// Options of `bench ingest`.
#[derive(Args, Clone)]
pub struct IngestArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8470")]
    url: String,
    /// Writer token.
    #[arg(long, env = "TRACEVAULT_TOKEN")]
    token: String,
    /// Namespace.
    #[arg(long)]
    ns: String,
    /// Total events.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Events per request.
    #[arg(long, default_value_t = 500)]
    batch: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: u64,
    /// Content bytes per event.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Target events per second (open loop); default: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// What to send: the native JSON API, or OTLP/HTTP spans (protobuf or
    /// JSON), each span a GenAI chat call whose one input message carries
    /// `--size` bytes (2 log events per span: the span and the prompt).
    #[arg(long, value_enum, default_value = "api")]
    format: Format,
    /// Native API only: give each run of this many consecutive events its
    /// own session (ids `s<request>-<n>`), with kinds cycling through prompt,
    /// reasoning, tool_call, tool_result, response and output, as agents
    /// write them (sessions local in time). 0: 64 sessions interleaved in
    /// every request, all `output`.
    #[arg(long, default_value_t = 0)]
    session_events: u64,
    /// Streams only (`--format stream`): session streams open at once. The
    /// events are shared out evenly, `--rate` is the total over all of them
    /// (256 streams at 20 lines/s: `--sessions 256 --rate 5120`), and
    /// `--batch` and `--concurrency` do not apply.
    #[arg(long, default_value_t = 1)]
    sessions: u64,
}

/// Request encodings `bench ingest` can drive.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `POST /v1/logs/{ns}/events`, JSON batches.
    Api,
    /// `POST /otlp/v1/traces`, `application/x-protobuf`.
    OtlpProto,
    /// `POST /otlp/v1/traces`, `application/json`.
    OtlpJson,
    /// `POST /v1/logs/{ns}/sessions/{id}/stream`: live session streams, one
    /// line per write; latency is per line, to its receipt.
    Stream,
}

/// Runs the load and prints the result.
pub fn run(a: IngestArgs) -> anyhow::Result<()> {
    let plan = LoadPlan {
        ns: a.ns.clone(),
        events: a.events,
        batch: a.batch,
        concurrency: a.concurrency,
        size: a.size,
        rate: a.rate,
        format: match a.format {
            Format::Api => LoadFormat::Api,
            Format::OtlpProto => LoadFormat::OtlpProto,
            Format::OtlpJson => LoadFormat::OtlpJson,
            Format::Stream => LoadFormat::Stream,
        },
        session_events: a.session_events,
        sessions: a.sessions,
    };
    plan.check()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let client = Client::builder()
            .pool_max_idle_per_host(a.concurrency.max(a.sessions) as usize)
            .build(&a.url, &a.token)?;
        anyhow::Ok(load::run(&client, &plan).await?)
    })?;
    if a.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(())
}
