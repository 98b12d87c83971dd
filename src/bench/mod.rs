//! `junction bench`: a load generator in the style of `nats bench` and `emqtt-bench`.
//!
//! It drives any server by URL with real clients: NATS (Junction or nats-server)
//! with async-nats, MQTT (Junction or mosquitto) with rumqttc, and Junction's HTTP
//! API with reqwest; one connection per publisher and per subscriber. It reports
//! throughput per client and in aggregate, latency percentiles from an HDR histogram,
//! and the CPU time the benchmark client itself used, so a report can tell whether the
//! client or the server was the bottleneck. The idle-connection scenarios (`conn`,
//! `mqtt-conn`) report the connect rate and, given the server's PID, its resident
//! memory per connection.
//!
//! The library entry point is [`run`]; the binary calls [`main`], which adds the text
//! or JSON output and a progress bar.

mod conn;
mod core_nats;
mod failover;
mod http;
mod js;
mod kv_geo;
mod mqtt;
mod progress;
mod ready;
mod report;
mod stats;
mod xproto;

pub use report::{
    ClientStats, ConnStats, FailoverStats, GroupStats, HttpInfo, JsInfo, ReadyStats, Report,
};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The long help of `junction bench`.
pub const LONG_ABOUT: &str = "\
Benchmark a NATS server (Junction or nats-server), an MQTT broker (Junction or
mosquitto) or Junction's HTTP API by URL, like `nats bench` and `emqtt-bench`.

Scenarios (the default --url of each in brackets):
  NATS core [nats://127.0.0.1:4222], async-nats:
    pub          publish only, nobody subscribed (publish rate)
    pubsub       --pubs N publishers -> --subs M subscribers, each gets every message
    fanout       1 publisher -> --subs N (default 10) subscribers
    queue        --pubs N publishers -> one queue group of --subs M members
    reqrep       request/reply round trips, one request in flight per requester
    conn         --count N idle connections: connect rate, then hold them
  Stations through the JetStream API [nats://127.0.0.1:4222]:
    js-pub       --sync (await each PubAck) or --window N (N PubAcks in flight)
    js-fetch     durable pull consumer, --batch N per pull, explicit acks
    js-push      durable push consumer delivering a preloaded stream to one
                 subscriber that acks each message (explicit acks)
    js-ready     poll until --stream answers with --msgs messages (after a restart):
                 reports when (Unix time) and, with --server-pid, the server's RSS
    js-failover  a replicated --stream (--replicas 3): --msgs sync publishes through
                 a follower (--pub-url lists the nodes), then SIGKILL of the
                 stream leader's process (--node-pids NAME=PID,...): the time from
                 the kill to the first PubAck of a publish sent after it (p50_us)
  MQTT [mqtt://127.0.0.1:1883; ws://HOST:PORT/mqtt also works], rumqttc, MQTT 3.1.1:
    mqtt-pubsub  --qos 0|1|2, --pubs N publishers -> --subs M subscribers of one topic
    mqtt-conn    --count N idle MQTT connections: connect rate, then hold them
  HTTP [http://127.0.0.1:8080], reqwest:
    http-produce --concurrency N requests in flight, --batch B messages per request:
                 B = 1 POSTs /v1/subjects/<stream>.bench, B > 1 POSTs
                 /v1/stations/<stream>/messages/batch (station --stream, created if
                 missing, durable before each answer); --subject S publishes live to S
  Key-Value, ordered consumers and geo-replication [nats://127.0.0.1:4222]:
    kv-put       --pubs N clients put --size byte values into bucket --stream
                 (made afresh), each put awaited (durable before its ack)
    kv-get       10,000 keys put first (untimed), then --pubs N clients get them,
                 each get awaited
    js-ordered   an ordered consumer replays a preloaded stream of --msgs messages
    geo-source   --msgs published on --url's stream --stream while a stream on
                 --sub-url's broker (<stream>_GEO) sources it over NATS; copies read
                 on the destination per second, and publish->copy latency (the lag)
  Across protocols:
    xproto       MQTT publish (--mqtt-url, --qos) -> NATS subscribers (--url) of the
                 mapped subject; publish->receive latency and rate

Every publisher and subscriber gets its own connection and its own task. Throughput
is reported per client and in aggregate (MB = 2^20 bytes); latency percentiles come
from an HDR histogram:
  pubsub, fanout, queue,   publish->receive (send time in the first 8 payload bytes,
  mqtt-pubsub, xproto      payloads >= 8 B); at an unlimited --rate this is mostly
                           queueing, use --rate for meaningful latency
  reqrep, js-pub --sync    round trip
  js-pub --window N        publish->PubAck
  js-fetch                 round trip of each pull request (batch)
  js-failover              leader killed -> first new PubAck (one sample)
  http-produce             round trip of each HTTP request (one batch)
  conn, mqtt-conn          connect handshake (TCP + CONNECT until CONNACK / PONG)
The report includes the CPU time the benchmark client used, to tell whether the client
was the bottleneck. --json prints one JSON object on stdout with at least
msgs_per_sec, mb_per_sec and p50_us, p90_us, p99_us, p999_us (for conn and mqtt-conn,
msgs_per_sec is connections per second and `connections` has the memory figures).

Idle connections: with --server-pid PID (a server on this machine), conn and
mqtt-conn read the server's VmRSS from /proc before connecting and after holding the
connections for --hold seconds, and report the difference per connection. The
benchmark raises its own open-file limit (RLIMIT_NOFILE) to --count + 1024 if it can;
the server needs as many descriptors (ulimit -n before starting it).

Examples:
  junction bench pubsub --url nats://127.0.0.1:4222 --msgs 1000000
  junction bench fanout --subs 10
  junction bench reqrep --msgs 20000
  junction bench js-pub --window 1000 --stream BENCH --flush-interval 50ms
  junction bench js-pub --stream ORDERS --payload '{\"id\":\"A-1\",\"amount\":12.5}'
  junction bench js-fetch --batch 500 --json
  junction bench js-ready --stream BENCH --msgs 1000000 --server-pid $(pidof junction)
  junction bench js-failover --replicas 3 --stream R3 --msgs 300 --url nats://127.0.0.1:4222 \\
    --pub-url nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224 \\
    --node-pids n1=1201,n2=1202,n3=1203
  junction bench mqtt-pubsub --qos 1 --size 64 --msgs 200000
  junction bench mqtt-pubsub --qos 0 --url mqtt://127.0.0.1:1884 --rate 10000 --duration 10
  junction bench mqtt-conn --count 10000 --server-pid $(pidof mosquitto)
  junction bench conn --count 10000 --server-pid $(pidof nats-server)
  junction bench http-produce --concurrency 16 --batch 100 --msgs 200000
  junction bench kv-put --pubs 16 --msgs 50000 --stream KVB
  junction bench js-ordered --msgs 1000000 --stream ORD
  junction bench geo-source --url nats://127.0.0.1:4222 --sub-url nats://127.0.0.1:4223 --msgs 200000
  junction bench xproto --mqtt-url mqtt://127.0.0.1:1883 --url nats://127.0.0.1:4222";

/// Flags of `junction bench`; see [`LONG_ABOUT`].
#[derive(Debug, Clone, Parser)]
#[command(name = "junction bench")]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server URL [default: nats://127.0.0.1:4222; mqtt-pubsub and mqtt-conn:
    /// mqtt://127.0.0.1:1883; http-produce: http://127.0.0.1:8080]. For xproto, the
    /// NATS side (the MQTT side is --mqtt-url).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// xproto: the MQTT broker the publishers use.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883", value_name = "URL")]
    pub mqtt_url: String,
    /// pubsub, fanout and queue: the server the subscribers connect to [default:
    /// --url]. Another node of the same cluster measures messages that cross a
    /// cluster link; the run starts once a probe shows the subscribers' interest
    /// has reached --url's node.
    #[arg(long, value_name = "URL")]
    pub sub_url: Option<String>,
    /// js-pub: the server the publishers connect to [default: --url]. Another node
    /// of the same cluster measures publishes into a station that --url's node
    /// holds (each is stored there and acknowledged from there).
    #[arg(long, value_name = "URL")]
    pub pub_url: Option<String>,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 16, value_name = "BYTES")]
    pub size: usize,
    /// Messages to publish in total, split among the publishers (requests for
    /// `reqrep`, messages to preload and fetch for `js-fetch`, messages (not requests)
    /// for `http-produce`).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub msgs: u64,
    /// Publish for this many seconds instead of a message count.
    #[arg(long, value_name = "SECS", conflicts_with = "msgs")]
    pub duration: Option<f64>,
    /// Publishers (requesters for `reqrep`) [default: 1].
    #[arg(long, value_name = "N")]
    pub pubs: Option<usize>,
    /// Subscribers: pubsub 1, fanout 10, queue group members 4, reqrep responders 1,
    /// js-fetch consumers (members of one durable) 1, mqtt-pubsub 1, xproto (NATS
    /// subscribers) 1.
    #[arg(long, value_name = "N")]
    pub subs: Option<usize>,
    /// Total publish rate limit in messages per second, split among the publishers
    /// (0 = unlimited).
    #[arg(long, default_value_t = 0, value_name = "MSGS_PER_SEC")]
    pub rate: u64,
    /// Print one JSON object on stdout instead of the text report (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// NATS scenarios: connect over TLS, trusting the authorities in this PEM
    /// file (the server must require TLS: nats-server's or Junction's `[tls]`).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Subject for core scenarios [default: junction.bench.<random>]; the topic for
    /// mqtt-pubsub and xproto [default: junction/bench/<random>]; for http-produce, a
    /// subject to publish to live (no station is created).
    #[arg(long, value_name = "SUBJECT")]
    pub subject: Option<String>,
    /// JetStream stream (a Junction station) for js-* scenarios, and the station for
    /// http-produce; created if missing with subjects `<stream>.>`.
    #[arg(long, default_value = "BENCH", value_name = "NAME")]
    pub stream: String,
    /// Storage of a stream (station) this run creates.
    #[arg(long, value_enum, default_value_t = Storage::File)]
    pub storage: Storage,
    /// Sets the stream metadata `junction.flush_interval` (e.g. `50ms`; for
    /// http-produce the station's `flush_interval_ms`): Junction then acks once written
    /// to the OS and fsyncs at most this long after, instead of fsync before every ack.
    /// Other servers ignore it.
    #[arg(long, value_name = "DURATION")]
    pub flush_interval: Option<String>,
    /// Replicas of a stream (station) this run creates (`num_replicas`; more
    /// than 1 needs a cluster).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: usize,
    /// js-pub: await each PubAck before the next publish (round trip latency).
    #[arg(long, conflicts_with = "window")]
    pub sync: bool,
    /// js-pub on a replicated stream: publish through its leader, or through a
    /// follower. --pub-url then lists the cluster's nodes (comma-separated), and
    /// the one the stream's leader is (or is not) is picked.
    #[arg(long, value_name = "ROLE", requires = "pub_url")]
    pub pub_to: Option<PubTo>,
    /// js-pub: PubAcks in flight per publisher [default: 100]. mqtt-pubsub and xproto
    /// at QoS 1/2: unacknowledged publishes per publisher (rumqttc's inflight)
    /// [default: 1000, at most 65535].
    #[arg(long, value_name = "N")]
    pub window: Option<usize>,
    /// js-fetch: messages per pull request [default: 100]. http-produce: messages per
    /// request [default: 1].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// mqtt-pubsub and xproto: the MQTT QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2), value_name = "0|1|2")]
    pub qos: u8,
    /// conn and mqtt-conn: idle connections to open and hold.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub count: usize,
    /// http-produce: requests in flight (one connection each) [default: 16]. conn and
    /// mqtt-conn: handshakes in flight while connecting [default: 64].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// conn and mqtt-conn: seconds to hold the connections once all are open (the
    /// server's memory is read at the end).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub hold: f64,
    /// conn and mqtt-conn: PID of the server (on this machine), to report its resident
    /// memory per connection; js-ready: to report its resident memory once ready.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// js-pub: publish this payload (e.g. a JSON document, to measure a station's
    /// schema validation) instead of `--size` zero bytes.
    #[arg(long, value_name = "TEXT")]
    pub payload: Option<String>,
    /// js-pub and http-produce: purge the stream (station) before publishing (js-fetch
    /// always purges).
    #[arg(long)]
    pub purge: bool,
    /// js-fetch: name of the durable pull consumer (deleted and recreated).
    #[arg(long, default_value = "bench", value_name = "NAME")]
    pub consumer: String,
    /// js-fetch (and js-pub) on Junction with `[tier]`: create the stream tiered, with
    /// segments of this many bytes (`junction.tier.segment_bytes`); after the
    /// preload the bench waits (untimed) until everything is uploaded and all
    /// but `--tier-local-max-bytes` left local disk, so the fetch replays from S3.
    #[arg(long, value_name = "BYTES", requires = "tier_local_max_bytes")]
    pub tier_segment_bytes: Option<u64>,
    /// js-fetch with `--tier-segment-bytes`: bytes kept on local disk.
    #[arg(long, value_name = "BYTES", requires = "tier_segment_bytes")]
    pub tier_local_max_bytes: Option<u64>,
    /// js-pub: first preload this many messages (untimed; with
    /// `--tier-segment-bytes`, until all but the local share is in S3), then
    /// keep one consumer replaying the stream from sequence 1, over and over,
    /// while the measured publishes run: publish latency under a full replay.
    #[arg(long, value_name = "N")]
    pub replay_preload: Option<u64>,
    /// js-fetch with `--tier-segment-bytes`: replay everything once (untimed)
    /// before the measured replay, so the read cache is warm.
    #[arg(long, requires = "tier_segment_bytes")]
    pub tier_warm: bool,
    /// js-failover: every node's server name and PID (on this machine),
    /// `NAME=PID,...`; the stream leader's process is killed (SIGKILL).
    #[arg(long, value_name = "NAME=PID,...")]
    pub node_pids: Option<String>,
}

/// Which replica of a replicated stream publishers connect to (`--pub-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PubTo {
    /// The node that leads the stream.
    Leader,
    /// A node with a replica that does not lead it.
    Follower,
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
    /// Stations via JetStream: a durable push consumer delivers a preloaded
    /// stream to one subscriber, which acks each message.
    JsPush,
    /// Stations via JetStream: poll until `--stream` answers with `--msgs` messages
    /// (how soon a restarted server serves its stored data).
    JsReady,
    /// Stations via JetStream: a replicated stream's leader killed while a
    /// publisher on a follower publishes; the time to the first new PubAck.
    JsFailover,
    /// NATS: open --count idle connections (connect rate), hold them, and with
    /// --server-pid report the server's memory per connection.
    Conn,
    /// MQTT: --pubs publishers to --subs subscribers of one topic at --qos.
    MqttPubsub,
    /// MQTT: open --count idle connections (connect rate), hold them, and with
    /// --server-pid report the server's memory per connection.
    MqttConn,
    /// HTTP: publish through Junction's REST API with --concurrency requests in flight
    /// and --batch messages per request.
    HttpProduce,
    /// MQTT publish to NATS subscribers of the same data: cross-protocol latency and
    /// rate.
    Xproto,
    /// Key-Value: --pubs clients putting --size byte values, each put awaited.
    KvPut,
    /// Key-Value: 10,000 keys put (untimed), then --pubs clients getting them.
    KvGet,
    /// Stations via JetStream: an ordered consumer replays a preloaded stream.
    JsOrdered,
    /// Geo-replication: a stream on --sub-url's broker sources --stream from
    /// --url's broker while --msgs are published there; copy rate and lag.
    GeoSource,
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
            Scenario::JsPush => "js-push",
            Scenario::JsReady => "js-ready",
            Scenario::JsFailover => "js-failover",
            Scenario::Conn => "conn",
            Scenario::MqttPubsub => "mqtt-pubsub",
            Scenario::MqttConn => "mqtt-conn",
            Scenario::HttpProduce => "http-produce",
            Scenario::Xproto => "xproto",
            Scenario::KvPut => "kv-put",
            Scenario::KvGet => "kv-get",
            Scenario::JsOrdered => "js-ordered",
            Scenario::GeoSource => "geo-source",
        }
    }

    /// Whether the scenario opens idle connections rather than moving messages.
    fn is_conn(self) -> bool {
        matches!(self, Scenario::Conn | Scenario::MqttConn)
    }

    /// The server URL when --url is not given.
    fn default_url(self) -> &'static str {
        match self {
            Scenario::MqttPubsub | Scenario::MqttConn => "mqtt://127.0.0.1:1883",
            Scenario::HttpProduce => "http://127.0.0.1:8080",
            _ => "nats://127.0.0.1:4222",
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
    /// The server URL (`--url` or the scenario's default).
    pub(crate) url: String,
    /// `--batch` with the scenario's default.
    pub(crate) batch: usize,
    /// `--concurrency` with the scenario's default.
    pub(crate) concurrency: usize,
    pub(crate) pubs: usize,
    pub(crate) subs: usize,
    pub(crate) duration: Option<Duration>,
    pub(crate) progress: bool,
    /// Slow-consumer events of this run's clients (messages async-nats dropped).
    pub(crate) client_drops: Arc<AtomicU64>,
}

impl Plan {
    fn new(args: BenchArgs, progress: bool) -> anyhow::Result<Plan> {
        let scenario = args.scenario;
        let concurrency = args.concurrency.unwrap_or(match scenario {
            Scenario::HttpProduce => 16,
            _ => 64,
        });
        if concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        let (default_pubs, default_subs) = match scenario {
            Scenario::Pub
            | Scenario::JsPub
            | Scenario::JsFailover
            | Scenario::KvPut
            | Scenario::KvGet => (1, 0),
            Scenario::JsOrdered => (0, 1),
            Scenario::GeoSource => (1, 1),
            Scenario::Pubsub
            | Scenario::Reqrep
            | Scenario::JsFetch
            | Scenario::JsPush
            | Scenario::MqttPubsub
            | Scenario::Xproto => (1, 1),
            Scenario::Fanout => (1, 10),
            Scenario::Queue => (1, 4),
            Scenario::Conn | Scenario::MqttConn | Scenario::JsReady => (0, 0),
            Scenario::HttpProduce => (concurrency, 0),
        };
        if scenario == Scenario::HttpProduce && args.pubs.is_some() {
            bail!("http-produce: use --concurrency, not --pubs");
        }
        let pubs = args.pubs.unwrap_or(default_pubs);
        let subs = args.subs.unwrap_or(default_subs);
        if scenario.is_conn() {
            if args.count == 0 {
                bail!("--count must be at least 1");
            }
            if !(args.hold.is_finite() && args.hold >= 0.0) {
                bail!("--hold must be zero or more seconds");
            }
            if args.duration.is_some() {
                bail!(
                    "{}: use --count and --hold, not --duration",
                    scenario.name()
                );
            }
        }
        let batch = args.batch.unwrap_or(match scenario {
            Scenario::HttpProduce => 1,
            _ => 100,
        });
        if scenario == Scenario::HttpProduce && args.subject.is_some() && batch > 1 {
            bail!("http-produce: --batch > 1 publishes into a station; drop --subject");
        }
        if args.window.is_some_and(|w| w > usize::from(u16::MAX))
            && matches!(scenario, Scenario::MqttPubsub | Scenario::Xproto)
        {
            bail!("--window: MQTT allows at most 65535 publishes in flight");
        }
        if args.scenario == Scenario::Fanout && pubs != 1 {
            bail!("fanout has one publisher; use pubsub for several");
        }
        let needs_pubs = !matches!(
            args.scenario,
            Scenario::JsFetch
                | Scenario::JsPush
                | Scenario::JsOrdered
                | Scenario::Conn
                | Scenario::MqttConn
                | Scenario::JsReady
        );
        if needs_pubs && pubs == 0 {
            bail!("--pubs must be at least 1");
        }
        let needs_subs = !matches!(
            args.scenario,
            Scenario::Pub
                | Scenario::JsPub
                | Scenario::JsFailover
                | Scenario::KvPut
                | Scenario::KvGet
                | Scenario::JsReady
                | Scenario::Conn
                | Scenario::MqttConn
                | Scenario::HttpProduce
        );
        if needs_subs && subs == 0 {
            bail!("--subs must be at least 1 for {}", args.scenario.name());
        }
        let duration = match args.duration {
            Some(d) if !(d.is_finite() && d > 0.0) => bail!("--duration must be positive"),
            Some(d) => Some(Duration::from_secs_f64(d)),
            None => None,
        };
        if matches!(
            args.scenario,
            Scenario::JsFetch
                | Scenario::JsPush
                | Scenario::JsOrdered
                | Scenario::KvPut
                | Scenario::KvGet
                | Scenario::GeoSource
        ) && duration.is_some()
        {
            bail!(
                "{} drains a preloaded stream: use --msgs, not --duration",
                args.scenario.name()
            );
        }
        if duration.is_none() && args.msgs == 0 {
            bail!("--msgs must be at least 1");
        }
        if args.window == Some(0) || batch == 0 {
            bail!("--window and --batch must be at least 1");
        }
        if let Some(f) = &args.flush_interval {
            humantime::parse_duration(f)
                .with_context(|| format!("--flush-interval: '{f}' is not a duration"))?;
        }
        let url = args
            .url
            .clone()
            .unwrap_or_else(|| scenario.default_url().to_string());
        Ok(Plan {
            url,
            batch,
            concurrency,
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
    if let Some(ca) = &plan.args.tls_ca {
        let _ = stats::TLS_CA.set(ca.clone());
    }
    let mut report = match plan.args.scenario {
        Scenario::Pub => core_nats::publish_only(&plan).await,
        Scenario::Pubsub | Scenario::Fanout | Scenario::Queue => core_nats::pubsub(&plan).await,
        Scenario::Reqrep => core_nats::reqrep(&plan).await,
        Scenario::JsPub => js::publish(&plan).await,
        Scenario::JsFetch => js::fetch(&plan).await,
        Scenario::JsPush => js::push(&plan).await,
        Scenario::JsReady => ready::wait(&plan).await,
        Scenario::JsFailover => failover::run(&plan).await,
        Scenario::Conn | Scenario::MqttConn => conn::idle(&plan).await,
        Scenario::MqttPubsub => mqtt::pubsub(&plan).await,
        Scenario::HttpProduce => http::produce(&plan).await,
        Scenario::Xproto => xproto::run(&plan).await,
        Scenario::KvPut => kv_geo::put(&plan).await,
        Scenario::KvGet => kv_geo::get(&plan).await,
        Scenario::JsOrdered => kv_geo::ordered(&plan).await,
        Scenario::GeoSource => kv_geo::geo(&plan).await,
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
