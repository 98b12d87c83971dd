//! The result of a run: what `--json` prints, and the text report.

use super::stats::Counted;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// Bytes in the "MB" of MB/s: 2^20, as `nats bench` counts.
const MB: f64 = 1024.0 * 1024.0;

/// Throughput of one client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientStats {
    /// Messages it sent or received.
    pub msgs: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Seconds from the common start to its last message.
    pub elapsed_secs: f64,
    /// `msgs / elapsed_secs`.
    pub msgs_per_sec: f64,
    /// Payload MiB per second.
    pub mb_per_sec: f64,
}

/// Throughput of one side (publishers or subscribers), in aggregate and per client.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStats {
    /// Messages of all clients.
    pub msgs: u64,
    /// Payload bytes of all clients.
    pub bytes: u64,
    /// Seconds from the common start until the last client finished.
    pub elapsed_secs: f64,
    /// Aggregate `msgs / elapsed_secs`.
    pub msgs_per_sec: f64,
    /// Aggregate payload MiB per second.
    pub mb_per_sec: f64,
    /// Each client.
    pub clients: Vec<ClientStats>,
}

/// The JetStream settings of a `js-*` run.
#[derive(Debug, Clone, Serialize)]
pub struct JsInfo {
    /// Stream name.
    pub stream: String,
    /// `file` or `memory`.
    pub storage: String,
    /// The `junction.flush_interval` metadata this run asked for; `None` means the
    /// server's default durability (fsync before ack on Junction).
    pub flush_interval: Option<String>,
    /// `sync`, `window` or `fetch`.
    pub mode: String,
    /// PubAcks in flight per publisher (`window` mode).
    pub window: Option<usize>,
    /// Messages per pull request (`fetch` mode).
    pub batch: Option<usize>,
    /// Publishers went to the stream's leader or to a follower (`--pub-to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pub_to: Option<super::PubTo>,
    /// `--replay-preload`: the replay that ran beside the publishes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayInfo>,
}

/// A replay from sequence 1 that ran beside a `js-pub` (`--replay-preload`).
#[derive(Debug, Clone, Serialize)]
pub struct ReplayInfo {
    /// Messages preloaded before the publishes.
    pub preloaded: u64,
    /// Messages the replaying consumer read while the publishes ran.
    pub replayed: u64,
    /// Times it started again from sequence 1 (after reading everything).
    pub passes: u64,
    /// Messages per second it read.
    pub msgs_per_sec: f64,
}

/// The settings of an `http-produce` run.
#[derive(Debug, Clone, Serialize)]
pub struct HttpInfo {
    /// Requests in flight (one keep-alive connection each).
    pub concurrency: usize,
    /// Messages per request.
    pub batch: usize,
    /// `station` (durable: the answer comes once stored) or `subject` (live only).
    pub target: String,
    /// The station or subject published to.
    pub name: String,
    /// HTTP requests made.
    pub requests: u64,
}

/// What a `js-failover` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverStats {
    /// The stream leader killed (its server name).
    pub killed: String,
    /// Its PID.
    pub killed_pid: u32,
    /// The stream's leader after the failover.
    pub new_leader: String,
    /// From the kill (the process gone) to the first PubAck of a publish sent
    /// after it, ms.
    pub failover_ms: f64,
    /// How long one try waited for its PubAck before it was sent again (the
    /// measurement's resolution), ms.
    pub try_ms: u64,
    /// Publishes acknowledged.
    pub acked: u64,
    /// Messages the stream holds at the end (as many: every acknowledged one,
    /// once).
    pub stored: u64,
}

/// What a `js-ready` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyStats {
    /// The stream polled.
    pub stream: String,
    /// Its messages when it was ready.
    pub messages: u64,
    /// Its bytes when it was ready.
    pub bytes: u64,
    /// Connects and stream-info requests made.
    pub polls: u64,
    /// When the stream first answered (Unix time, ns).
    pub first_answer_unix_ns: Option<u64>,
    /// When it first answered with at least `--msgs` messages (Unix time, ns).
    pub ready_unix_ns: u64,
    /// Seconds from the benchmark's start to ready.
    pub waited_secs: f64,
    /// The server's PID (`--server-pid`), if given.
    pub server_pid: Option<u32>,
    /// The server's VmRSS once ready, KiB.
    pub server_rss_kb: Option<u64>,
}

/// What an idle-connection run (`conn`, `mqtt-conn`) measured.
#[derive(Debug, Clone, Serialize)]
pub struct ConnStats {
    /// `nats` or `mqtt`.
    pub protocol: String,
    /// Connections asked for.
    pub count: usize,
    /// Connections open when the memory was read.
    pub connected: usize,
    /// Seconds from the first connect to the last CONNACK / PONG.
    pub connect_secs: f64,
    /// `connected / connect_secs`.
    pub connects_per_sec: f64,
    /// Seconds the connections were held once all were open.
    pub held_secs: f64,
    /// The server's PID (`--server-pid`), if given.
    pub server_pid: Option<u32>,
    /// The server's VmRSS before the first connect, KiB.
    pub server_rss_before_kb: Option<u64>,
    /// The server's VmRSS at the end of the hold, KiB.
    pub server_rss_after_kb: Option<u64>,
    /// `(after - before) / connected`, bytes.
    pub server_rss_per_conn_bytes: Option<f64>,
    /// This benchmark process's own VmRSS growth per connection, bytes.
    pub client_rss_per_conn_bytes: Option<f64>,
    /// The benchmark's open-file limit (RLIMIT_NOFILE, soft) during the run.
    pub fd_limit: Option<u64>,
}

/// The result of one benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name (`pubsub`, `js-pub`, ...).
    pub scenario: String,
    /// The server URL.
    pub url: String,
    /// Payload size in bytes.
    pub size: usize,
    /// Publishers (requesters for `reqrep`).
    pub pubs: usize,
    /// Subscribers, queue members, responders or pull consumers.
    pub subs: usize,
    /// The headline count: messages received by all subscribers (pubsub, fanout,
    /// queue, mqtt-pubsub, xproto), published (pub, js-pub, http-produce), round trips
    /// (reqrep), fetched (js-fetch) or connections opened (conn, mqtt-conn).
    pub msgs: u64,
    /// How many the headline count should have reached.
    pub expected: u64,
    /// `expected - msgs` when the run gave up waiting (never negative).
    pub lost: u64,
    /// Aggregate rate of the headline count: what subscribers received, or the
    /// publish rate for publish-only scenarios (connects per second for conn and
    /// mqtt-conn).
    pub msgs_per_sec: f64,
    /// Aggregate payload MiB per second of the headline count.
    pub mb_per_sec: f64,
    /// Seconds from the start until the headline count was reached.
    pub elapsed_secs: f64,
    /// What the latency percentiles measure: `publish_to_receive`, `round_trip`,
    /// `publish_to_ack`, `fetch_round_trip`, `request_round_trip`, `connect`; `None`
    /// when not measured.
    pub latency: Option<String>,
    /// Latency samples recorded.
    pub latency_samples: u64,
    /// Median latency in microseconds.
    pub p50_us: Option<f64>,
    /// 90th percentile latency in microseconds.
    pub p90_us: Option<f64>,
    /// 99th percentile latency in microseconds.
    pub p99_us: Option<f64>,
    /// 99.9th percentile latency in microseconds.
    pub p999_us: Option<f64>,
    /// Largest latency in microseconds.
    pub max_us: Option<f64>,
    /// CPU seconds (user + system) the benchmark process used while measuring.
    pub client_cpu_secs: Option<f64>,
    /// CPU seconds the whole benchmark process used, set-up included (for tools
    /// that account for everything running on the machine).
    pub client_process_cpu_secs: Option<f64>,
    /// Slow-consumer events of the benchmark's own clients: messages async-nats
    /// dropped because a subscriber task fell behind (a lower bound; 0 means none).
    pub client_drop_events: u64,
    /// Publishers (requesters).
    pub publishers: Option<GroupStats>,
    /// Subscribers (responders, pull consumers).
    pub subscribers: Option<GroupStats>,
    /// JetStream settings of `js-*` runs.
    pub jetstream: Option<JsInfo>,
    /// MQTT QoS of `mqtt-pubsub` and `xproto` runs.
    pub mqtt_qos: Option<u8>,
    /// Settings of `http-produce` runs.
    pub http: Option<HttpInfo>,
    /// Idle connections and server memory (`conn`, `mqtt-conn`).
    pub connections: Option<ConnStats>,
    /// Readiness after a (re)start (`js-ready`).
    pub ready: Option<ReadyStats>,
    /// A leader killed (`js-failover`).
    pub failover: Option<FailoverStats>,
}

fn rate(count: f64, elapsed: f64) -> f64 {
    if elapsed > 0.0 { count / elapsed } else { 0.0 }
}

/// Aggregates clients: totals, and the slowest client's elapsed time.
pub(crate) fn group(clients: &[Counted]) -> GroupStats {
    let msgs = clients.iter().map(|c| c.msgs).sum::<u64>();
    let bytes = clients.iter().map(|c| c.bytes).sum::<u64>();
    let elapsed = clients
        .iter()
        .map(|c| c.elapsed)
        .max()
        .unwrap_or_default()
        .as_secs_f64();
    GroupStats {
        msgs,
        bytes,
        elapsed_secs: elapsed,
        msgs_per_sec: rate(msgs as f64, elapsed),
        mb_per_sec: rate(bytes as f64 / MB, elapsed),
        clients: clients
            .iter()
            .map(|c| {
                let e = c.elapsed.as_secs_f64();
                ClientStats {
                    msgs: c.msgs,
                    bytes: c.bytes,
                    elapsed_secs: e,
                    msgs_per_sec: rate(c.msgs as f64, e),
                    mb_per_sec: rate(c.bytes as f64 / MB, e),
                }
            })
            .collect(),
    }
}

impl Report {
    /// A report whose headline numbers are `headline`'s.
    pub(crate) fn new(plan: &super::Plan, headline: &GroupStats, expected: u64) -> Report {
        Report {
            scenario: plan.args.scenario.name().to_string(),
            url: plan.url.clone(),
            size: plan
                .args
                .payload
                .as_ref()
                .map_or(plan.args.size, String::len),
            pubs: plan.pubs,
            subs: plan.subs,
            msgs: headline.msgs,
            expected,
            lost: expected.saturating_sub(headline.msgs),
            msgs_per_sec: headline.msgs_per_sec,
            mb_per_sec: headline.mb_per_sec,
            elapsed_secs: headline.elapsed_secs,
            latency: None,
            latency_samples: 0,
            p50_us: None,
            p90_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            client_cpu_secs: None,
            client_process_cpu_secs: None,
            client_drop_events: 0,
            publishers: None,
            subscribers: None,
            jetstream: None,
            mqtt_qos: None,
            http: None,
            connections: None,
            ready: None,
            failover: None,
        }
    }

    /// Fills the latency percentiles from a histogram in nanoseconds.
    pub(crate) fn set_latency(&mut self, kind: &str, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        let us = |ns: u64| Some(ns as f64 / 1000.0);
        self.latency = Some(kind.to_string());
        self.latency_samples = h.len();
        self.p50_us = us(h.value_at_quantile(0.50));
        self.p90_us = us(h.value_at_quantile(0.90));
        self.p99_us = us(h.value_at_quantile(0.99));
        self.p999_us = us(h.value_at_quantile(0.999));
        self.max_us = us(h.max());
    }

    /// Sets the client CPU time from two `/proc/self/stat` readings.
    pub(crate) fn set_cpu(&mut self, before: Option<f64>, after: Option<f64>) {
        self.client_cpu_secs = match (before, after) {
            (Some(b), Some(a)) => Some(((a - b).max(0.0) * 100.0).round() / 100.0),
            _ => None,
        };
    }

    /// The text report, in the style of `nats bench`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let clients = match self.scenario.as_str() {
            "pub" | "js-pub" => format!("{} pubs", self.pubs),
            "js-fetch" => format!("{} consumers", self.subs),
            "reqrep" => format!("{} requesters, {} responders", self.pubs, self.subs),
            "http-produce" => format!("{} requests in flight", self.pubs),
            "xproto" => format!("{} MQTT pubs, {} NATS subs", self.pubs, self.subs),
            _ => format!("{} pubs, {} subs", self.pubs, self.subs),
        };
        if let Some(r) = &self.ready {
            let _ = writeln!(out, "junction bench {} on {}", self.scenario, self.url);
            let _ = writeln!(
                out,
                "stream {} ready with {} messages ({} bytes) after {:.3} s ({} polls){}",
                r.stream,
                thousands(r.messages as f64),
                thousands(r.bytes as f64),
                r.waited_secs,
                r.polls,
                r.server_rss_kb
                    .map(|kb| format!("; server RSS {:.1} MiB", kb as f64 / 1024.0))
                    .unwrap_or_default()
            );
            return out;
        }
        if let Some(f) = &self.failover {
            let _ = writeln!(out, "junction bench {} on {}", self.scenario, self.url);
            let _ = writeln!(
                out,
                "leader {} (pid {}) killed: first new PubAck after {:.0} ms (tries of {} ms); new leader {}; {} acknowledged, {} stored",
                f.killed, f.killed_pid, f.failover_ms, f.try_ms, f.new_leader, f.acked, f.stored
            );
            return out;
        }
        if self.connections.is_some() {
            let _ = writeln!(out, "junction bench {} on {}", self.scenario, self.url);
        } else {
            let _ = writeln!(
                out,
                "junction bench {} on {}: {} B payloads, {}",
                self.scenario, self.url, self.size, clients
            );
        }
        if let Some(js) = &self.jetstream {
            let durability = match &js.flush_interval {
                Some(f) => format!("flush interval {f}"),
                None => "server default durability".to_string(),
            };
            let mode = match (js.mode.as_str(), js.window, js.batch) {
                ("window", Some(w), _) => format!("{w} PubAcks in flight per publisher"),
                ("fetch", _, Some(b)) => format!("fetch batch {b}, explicit acks"),
                _ => "each PubAck awaited".to_string(),
            };
            let _ = writeln!(
                out,
                "stream {} ({}, {durability}), {mode}",
                js.stream, js.storage
            );
        }
        if let Some(q) = self.mqtt_qos {
            let _ = writeln!(out, "MQTT 3.1.1, QoS {q}");
        }
        if let Some(h) = &self.http {
            let _ = writeln!(
                out,
                "{} {}: {} messages per request, {} requests",
                h.target,
                h.name,
                h.batch,
                thousands(h.requests as f64)
            );
        }
        if let Some(c) = &self.connections {
            let _ = writeln!(
                out,
                "{} of {} {} connections open in {:.3} s: {} connects/sec; held {:.1} s",
                thousands(c.connected as f64),
                thousands(c.count as f64),
                c.protocol.to_uppercase(),
                c.connect_secs,
                thousands(c.connects_per_sec),
                c.held_secs
            );
            match (
                c.server_pid,
                c.server_rss_before_kb,
                c.server_rss_after_kb,
                c.server_rss_per_conn_bytes,
            ) {
                (Some(pid), Some(b), Some(a), Some(per)) => {
                    let _ = writeln!(
                        out,
                        "Server {pid} RSS: {:.1} MiB before, {:.1} MiB after: {} bytes per connection",
                        b as f64 / 1024.0,
                        a as f64 / 1024.0,
                        thousands(per)
                    );
                }
                _ => {
                    let _ = writeln!(out, "Server RSS: not measured (give --server-pid)");
                }
            }
            if let Some(per) = c.client_rss_per_conn_bytes {
                let _ = writeln!(out, "Client RSS: {} bytes per connection", thousands(per));
            }
        }
        let side = |out: &mut String, name: &str, g: &GroupStats| {
            let _ = writeln!(
                out,
                "{name} stats: {} msgs/sec ~ {:.2} MB/sec ({} msgs in {:.3} s)",
                thousands(g.msgs_per_sec),
                g.mb_per_sec,
                thousands(g.msgs as f64),
                g.elapsed_secs
            );
            if g.clients.len() > 1 {
                for (i, c) in g.clients.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        " [{}] {} msgs/sec ~ {:.2} MB/sec ({} msgs)",
                        i + 1,
                        thousands(c.msgs_per_sec),
                        c.mb_per_sec,
                        thousands(c.msgs as f64)
                    );
                }
                let rates: Vec<f64> = g.clients.iter().map(|c| c.msgs_per_sec).collect();
                let n = rates.len() as f64;
                let avg = rates.iter().sum::<f64>() / n;
                let var = rates.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / n;
                let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
                let max = rates.iter().copied().fold(0.0, f64::max);
                let _ = writeln!(
                    out,
                    " min {} | avg {} | max {} | stddev {} msgs/sec",
                    thousands(min),
                    thousands(avg),
                    thousands(max),
                    thousands(var.sqrt())
                );
            }
        };
        let (pub_name, sub_name) = match self.scenario.as_str() {
            "reqrep" => ("Requester", "Responder"),
            "js-fetch" => ("Pub", "Consumer"),
            _ => ("Pub", "Sub"),
        };
        if let Some(p) = &self.publishers {
            side(&mut out, pub_name, p);
        }
        if let Some(s) = &self.subscribers {
            side(&mut out, sub_name, s);
        }
        if self.connections.is_none() {
            let _ = writeln!(
                out,
                "Aggregate: {} msgs/sec ~ {:.2} MB/sec ({} msgs in {:.3} s)",
                thousands(self.msgs_per_sec),
                self.mb_per_sec,
                thousands(self.msgs as f64),
                self.elapsed_secs
            );
        }
        if let (Some(kind), Some(p50), Some(p90), Some(p99), Some(p999), Some(max)) = (
            &self.latency,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
        ) {
            let _ = writeln!(
                out,
                "Latency ({}, {} samples): p50 {} | p90 {} | p99 {} | p99.9 {} | max {}",
                kind.replace('_', " "),
                thousands(self.latency_samples as f64),
                micros(p50),
                micros(p90),
                micros(p99),
                micros(p999),
                micros(max)
            );
        }
        if let Some(cpu) = self.client_cpu_secs {
            let share = if self.elapsed_secs > 0.0 {
                cpu / self.elapsed_secs * 100.0
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "Client CPU: {cpu:.2} s ({share:.0}% of one core over the run; the client may be the bottleneck near {}%)",
                std::thread::available_parallelism().map_or(100, |n| n.get() * 100)
            );
        }
        if self.lost > 0 {
            let _ = writeln!(
                out,
                "LOST: {} of {} expected messages never arrived ({} dropped by this client)",
                thousands(self.lost as f64),
                thousands(self.expected as f64),
                if self.client_drop_events > 0 {
                    "some"
                } else {
                    "none"
                }
            );
        }
        out
    }
}

/// `1234567.8` as `1,234,568`.
fn thousands(v: f64) -> String {
    let n = v.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Microseconds, switching to milliseconds or seconds when large.
fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(micros(12.34), "12.3 µs");
        assert_eq!(micros(1500.0), "1.50 ms");
    }
}
