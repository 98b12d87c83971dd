//! `junction bench`: a load generator in the style of `nats bench`.
//!
//! It drives any NATS server (Junction or nats-server) by URL with real clients
//! (async-nats, one connection per publisher and per subscriber) and reports
//! throughput per client and in aggregate, latency percentiles from an HDR histogram,
//! and the CPU time the benchmark client itself used, so a report can tell whether the
//! client or the server was the bottleneck.
//!
//! The library entry point is [`run`]; the binary calls [`main`], which adds the text
//! or JSON output and a progress bar.

mod core_nats;
mod js;
mod progress;
mod report;
mod stats;

pub use report::{ClientStats, GroupStats, JsInfo, Report};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The long help of `junction bench`.
pub const LONG_ABOUT: &str = "\
Benchmark any NATS server (Junction or nats-server) by URL, like `nats bench`.

Every publisher and subscriber gets its own connection (async-nats). Throughput is
reported per client and in aggregate (MB = 2^20 bytes); latency percentiles come from
an HDR histogram:
  pubsub, fanout, queue  publish->receive (send time in the first 8 payload bytes,
                         payloads >= 8 B); at an unlimited --rate this is mostly
                         queueing, use --rate for meaningful latency
  reqrep, js-pub --sync  round trip
  js-pub --window N      publish->PubAck
  js-fetch               round trip of each pull request (batch)
The report includes the CPU time the benchmark client used, to tell whether the client
was the bottleneck. --json prints one JSON object on stdout.

Examples:
  junction bench pubsub --url nats://127.0.0.1:4222 --msgs 1000000
  junction bench fanout --subs 10
  junction bench reqrep --msgs 20000
  junction bench js-pub --window 1000 --stream BENCH --flush-interval 50ms
  junction bench js-pub --stream ORDERS --payload '{\"id\":\"A-1\",\"amount\":12.5}'
  junction bench js-fetch --batch 500 --json";

/// Flags of `junction bench`; see [`LONG_ABOUT`].
#[derive(Debug, Clone, Parser)]
#[command(name = "junction bench")]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server URL (any NATS server: Junction, nats-server, ...).
    #[arg(long, default_value = "nats://127.0.0.1:4222", value_name = "URL")]
    pub url: String,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 16, value_name = "BYTES")]
    pub size: usize,
    /// Messages to publish in total, split among the publishers (requests for
    /// `reqrep`, messages to preload and fetch for `js-fetch`).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub msgs: u64,
    /// Publish for this many seconds instead of a message count.
    #[arg(long, value_name = "SECS", conflicts_with = "msgs")]
    pub duration: Option<f64>,
    /// Publishers (requesters for `reqrep`) [default: 1].
    #[arg(long, value_name = "N")]
    pub pubs: Option<usize>,
    /// Subscribers: pubsub 1, fanout 10, queue group members 4, reqrep responders 1,
    /// js-fetch consumers (members of one durable) 1.
    #[arg(long, value_name = "N")]
    pub subs: Option<usize>,
    /// Total publish rate limit in messages per second, split among the publishers
    /// (0 = unlimited).
    #[arg(long, default_value_t = 0, value_name = "MSGS_PER_SEC")]
    pub rate: u64,
    /// Print one JSON object on stdout instead of the text report (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Subject for core scenarios [default: junction.bench.<random>].
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,
    /// JetStream stream (a Junction station) for js-* scenarios; created if missing
    /// with subjects `<stream>.>`.
    #[arg(long, default_value = "BENCH", value_name = "NAME")]
    pub stream: String,
    /// Storage of a stream this run creates.
    #[arg(long, value_enum, default_value_t = Storage::File)]
    pub storage: Storage,
    /// Sets the stream metadata `junction.flush_interval` (e.g. `50ms`): Junction then
    /// acks once written to the OS and fsyncs at most this long after, instead of fsync
    /// before every ack. Other servers ignore it.
    #[arg(long, value_name = "DURATION")]
    pub flush_interval: Option<String>,
    /// js-pub: await each PubAck before the next publish (round trip latency).
    #[arg(long, conflicts_with = "window")]
    pub sync: bool,
    /// js-pub: PubAcks in flight per publisher [default: 100].
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,
    /// js-fetch: messages per pull request.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub batch: usize,
    /// js-pub: publish this payload (e.g. a JSON document, to measure a station's
    /// schema validation) instead of `--size` zero bytes.
    #[arg(long, value_name = "TEXT")]
    pub payload: Option<String>,
    /// js-pub: purge the stream before publishing (js-fetch always purges).
    #[arg(long)]
    pub purge: bool,
    /// js-fetch: name of the durable pull consumer (deleted and recreated).
    #[arg(long, default_value = "bench", value_name = "NAME")]
    pub consumer: String,
}

/// What to benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// NATS core: publish only, nobody subscribed (publish rate).
    Pub,
    /// NATS core: --pubs publishers to --subs subscribers, each gets every message.
    Pubsub,
    /// NATS core: one publisher to --subs (default 10) subscribers.
    Fanout,
    /// NATS core: --pubs publishers to one queue group of --subs members; each
    /// message reaches one member.
    Queue,
    /// NATS core: request/reply round trips from --pubs requesters to --subs
    /// responders (a queue group), one request in flight per requester.
    Reqrep,
    /// Stations via JetStream: publish with PubAcks, `--sync` (await each) or
    /// `--window N` (N in flight per publisher).
    JsPub,
    /// Stations via JetStream: a durable pull consumer with explicit acks fetching
    /// `--batch N` per request; the stream is purged and preloaded first (untimed).
    JsFetch,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Pub => "pub",
            Scenario::Pubsub => "pubsub",
            Scenario::Fanout => "fanout",
            Scenario::Queue => "queue",
            Scenario::Reqrep => "reqrep",
            Scenario::JsPub => "js-pub",
            Scenario::JsFetch => "js-fetch",
        }
    }
}

/// Storage type of a benchmark stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Storage {
    /// On disk.
    File,
    /// In memory.
    Memory,
}

/// The settings of a run, with per-scenario defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) args: BenchArgs,
    pub(crate) pubs: usize,
    pub(crate) subs: usize,
    pub(crate) duration: Option<Duration>,
    pub(crate) progress: bool,
    /// Slow-consumer events of this run's clients (messages async-nats dropped).
    pub(crate) client_drops: Arc<AtomicU64>,
}

impl Plan {
    fn new(args: BenchArgs, progress: bool) -> anyhow::Result<Plan> {
        let (default_pubs, default_subs) = match args.scenario {
            Scenario::Pub | Scenario::JsPub => (1, 0),
            Scenario::Pubsub | Scenario::Reqrep | Scenario::JsFetch => (1, 1),
            Scenario::Fanout => (1, 10),
            Scenario::Queue => (1, 4),
        };
        let pubs = args.pubs.unwrap_or(default_pubs);
        let subs = args.subs.unwrap_or(default_subs);
        if args.scenario == Scenario::Fanout && pubs != 1 {
            bail!("fanout has one publisher; use pubsub for several");
        }
        let needs_pubs = !matches!(args.scenario, Scenario::JsFetch);
        if needs_pubs && pubs == 0 {
            bail!("--pubs must be at least 1");
        }
        let needs_subs = !matches!(args.scenario, Scenario::Pub | Scenario::JsPub);
        if needs_subs && subs == 0 {
            bail!("--subs must be at least 1 for {}", args.scenario.name());
        }
        let duration = match args.duration {
            Some(d) if !(d.is_finite() && d > 0.0) => bail!("--duration must be positive"),
            Some(d) => Some(Duration::from_secs_f64(d)),
            None => None,
        };
        if args.scenario == Scenario::JsFetch && duration.is_some() {
            bail!("js-fetch drains a preloaded stream: use --msgs, not --duration");
        }
        if duration.is_none() && args.msgs == 0 {
            bail!("--msgs must be at least 1");
        }
        if args.window == Some(0) || args.batch == 0 {
            bail!("--window and --batch must be at least 1");
        }
        if let Some(f) = &args.flush_interval {
            humantime::parse_duration(f)
                .with_context(|| format!("--flush-interval: '{f}' is not a duration"))?;
        }
        Ok(Plan {
            pubs,
            subs,
            duration,
            progress,
            args,
            client_drops: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many messages publisher `i` sends in count mode.
    pub(crate) fn share(&self, i: usize, clients: usize) -> u64 {
        let clients = clients.max(1) as u64;
        let i = i as u64;
        self.args.msgs / clients + u64::from(i < self.args.msgs % clients)
    }

    /// The publish rate of one publisher (0 = unlimited).
    pub(crate) fn rate_per_pub(&self) -> f64 {
        if self.args.rate == 0 {
            0.0
        } else {
            self.args.rate as f64 / self.pubs.max(1) as f64
        }
    }
}

/// Runs one benchmark and returns its report. No progress bar is drawn; [`main`]
/// adds one.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    run_plan(Plan::new(args, false)?).await
}

async fn run_plan(plan: Plan) -> anyhow::Result<Report> {
    let mut report = match plan.args.scenario {
        Scenario::Pub => core_nats::publish_only(&plan).await,
        Scenario::Pubsub | Scenario::Fanout | Scenario::Queue => core_nats::pubsub(&plan).await,
        Scenario::Reqrep => core_nats::reqrep(&plan).await,
        Scenario::JsPub => js::publish(&plan).await,
        Scenario::JsFetch => js::fetch(&plan).await,
    }?;
    report.client_drop_events = plan.client_drops.load(Ordering::Relaxed);
    report.client_process_cpu_secs = stats::process_cpu_secs();
    Ok(report)
}

/// `junction bench`: runs the benchmark on its own runtime and prints the report
/// (text, or one JSON object with `--json`).
pub fn main(args: &BenchArgs) -> ExitCode {
    use std::io::IsTerminal;
    let progress = !args.json && std::io::stderr().is_terminal();
    let plan = match Plan::new(args.clone(), progress) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("junction bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("junction bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run_plan(plan));
    // Connections and background client tasks end with the runtime.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("junction bench: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                print!("{}", report.to_text());
            }
            if report.lost > 0 {
                eprintln!(
                    "junction bench: warning: {} of {} expected messages were not received{}",
                    report.lost,
                    report.expected,
                    if report.client_drop_events > 0 {
                        " (the client dropped some: its subscription buffer was full)"
                    } else {
                        ""
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("junction bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
