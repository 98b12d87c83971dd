//! MQTT scenarios over rumqttc (MQTT 3.1.1): `mqtt-pubsub`, and the publisher and
//! connection set-up that `xproto` and `mqtt-conn` share.
//!
//! Each client is one task that owns its rumqttc `EventLoop`: the publisher hands
//! messages to its own `AsyncClient` and polls the event loop in the same task, so no
//! message waits for another task to be scheduled. rumqttc writes (and flushes) one
//! request per poll, so the publisher keeps only a short queue ahead of the socket:
//! long enough that the event loop never waits for it, short enough that the send
//! timestamps in the payloads are not aged by the client's own queue.

use super::Plan;
use super::core_nats::{Limit, Run, Tally, finish_run};
use super::report::{Report, group};
use super::stats::{Counted, histogram, now_ns, process_cpu_secs, stamp_of};
use anyhow::{Context as _, anyhow, bail};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing,
    Packet, QoS, SubscribeReasonCode, Transport,
};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Capacity of each client's request channel (rumqttc's "event loop capacity").
const CHANNEL_CAPACITY: usize = 16_384;
/// Publishes a publisher keeps queued in its channel ahead of the socket.
const AHEAD: u64 = 256;
/// How long a publisher waits for its connection to make progress before giving up
/// (a broker that stops acknowledging).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default QoS 1/2 publishes in flight per publisher.
pub(crate) const DEFAULT_INFLIGHT: u16 = 1000;

/// Where an MQTT broker listens: `mqtt://host:port`, `tcp://host:port`, `host:port`
/// or `ws://host:port/path` (MQTT over WebSocket).
#[derive(Debug, Clone)]
pub(crate) struct MqttTarget {
    host: String,
    port: u16,
    /// The whole URL for WebSocket transport.
    ws: Option<String>,
}

impl MqttTarget {
    pub(crate) fn parse(url: &str) -> anyhow::Result<MqttTarget> {
        if url.starts_with("ws://") {
            return Ok(MqttTarget {
                host: String::new(),
                port: 0,
                ws: Some(url.to_string()),
            });
        }
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .unwrap_or(url);
        if rest.contains("://") {
            bail!("'{url}' is not an MQTT URL (mqtt://HOST:PORT or ws://HOST:PORT/PATH)");
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .with_context(|| format!("'{url}': bad port '{p}'"))?,
            ),
            None => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            bail!("'{url}' has no host");
        }
        Ok(MqttTarget {
            host: host.to_string(),
            port,
            ws: None,
        })
    }

    /// Client options: clean session, keep-alive `keep_alive`, packets up to
    /// `max_packet` bytes, `inflight` QoS 1/2 publishes unacknowledged.
    pub(crate) fn options(
        &self,
        client_id: &str,
        keep_alive: Duration,
        max_packet: usize,
        inflight: u16,
    ) -> MqttOptions {
        let mut o = match &self.ws {
            Some(url) => {
                let mut o = MqttOptions::new(client_id, url.as_str(), 0);
                o.set_transport(Transport::Ws);
                o
            }
            None => MqttOptions::new(client_id, self.host.as_str(), self.port),
        };
        o.set_keep_alive(keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(max_packet, max_packet)
            .set_inflight(inflight.max(1));
        o
    }
}

/// A connected client: the handle, its event loop, and how long CONNECT took.
pub(crate) struct MqttClient {
    pub(crate) client: AsyncClient,
    pub(crate) events: EventLoop,
}

/// Connects: TCP (or WebSocket), CONNECT, and waits for a successful CONNACK.
pub(crate) async fn connect(
    target: &MqttTarget,
    options: MqttOptions,
    capacity: usize,
) -> anyhow::Result<MqttClient> {
    let id = options.client_id();
    let (client, mut events) = AsyncClient::new(options, capacity);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(30);
    events.set_network_options(net);
    let ack = tokio::time::timeout(Duration::from_secs(30), events.poll())
        .await
        .map_err(|_| anyhow!("no CONNACK within 30 s"))?
        .with_context(|| format!("MQTT client {id} cannot connect to {target:?}"))?;
    match ack {
        Event::Incoming(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => {
            Ok(MqttClient { client, events })
        }
        Event::Incoming(Packet::ConnAck(a)) => bail!("MQTT CONNACK refused: {:?}", a.code),
        other => bail!("expected CONNACK, got {other:?}"),
    }
}

/// The MQTT QoS of `--qos`.
pub(crate) fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The largest packet a run sends or receives.
pub(crate) fn max_packet(size: usize) -> usize {
    (size + 4096).max(1 << 20)
}

/// Subscribes and waits for the SUBACK.
async fn subscribe(c: &mut MqttClient, topic: &str, qos: QoS) -> anyhow::Result<()> {
    c.client
        .subscribe(topic, qos)
        .await
        .context("MQTT subscribe")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), c.events.poll())
            .await
            .map_err(|_| anyhow!("no SUBACK within 30 s"))?
            .context("MQTT subscribe")?;
        if let Event::Incoming(Packet::SubAck(ack)) = event {
            return match ack.return_codes.first() {
                Some(SubscribeReasonCode::Success(_)) => Ok(()),
                other => bail!("MQTT SUBACK refused the subscription to {topic}: {other:?}"),
            };
        }
    }
}

/// One MQTT publisher of a run.
pub(crate) struct Publisher {
    pub(crate) conn: MqttClient,
    pub(crate) topic: String,
    pub(crate) qos: QoS,
    pub(crate) size: usize,
    pub(crate) stamp: bool,
    pub(crate) limit: Limit,
    pub(crate) rate: f64,
    pub(crate) start: Instant,
    pub(crate) progress: Arc<AtomicU64>,
}

/// Connects `n` publishers (client ids `junction-bench-<role>-<run>-<i>`).
pub(crate) async fn connect_publishers(
    plan: &Plan,
    url: &str,
    n: usize,
    run_id: u32,
) -> anyhow::Result<Vec<MqttClient>> {
    let target = MqttTarget::parse(url)?;
    let inflight = plan
        .args
        .window
        .map_or(DEFAULT_INFLIGHT, |w| u16::try_from(w).unwrap_or(u16::MAX));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let options = target.options(
            &format!("junction-bench-pub-{run_id:08x}-{}", i + 1),
            Duration::from_secs(60),
            max_packet(plan.args.size),
            inflight,
        );
        out.push(connect(&target, options, CHANNEL_CAPACITY).await?);
    }
    Ok(out)
}

/// Publishes until `limit` (paced at `rate` when it is not 0), then waits until every
/// publish has been written (QoS 0) or acknowledged (PUBACK for QoS 1, PUBCOMP for
/// QoS 2).
pub(crate) async fn publish_loop(p: Publisher) -> anyhow::Result<Counted> {
    let Publisher {
        mut conn,
        topic,
        qos,
        size,
        stamp,
        limit,
        rate,
        start,
        progress,
    } = p;
    let template = Bytes::from(vec![0u8; size]);
    let mut tally = Tally::new(progress);
    // Handed to rumqttc, written to the socket, and acknowledged by the broker.
    let (mut queued, mut written, mut acked) = (0u64, 0u64, 0u64);
    loop {
        let mut next_due = None;
        while queued - written < AHEAD && limit.more(queued) {
            if rate > 0.0 {
                let due = start + Duration::from_secs_f64(queued as f64 / rate);
                if due > Instant::now() {
                    next_due = Some(due);
                    break;
                }
            }
            let body = if stamp && size >= 8 {
                let mut b = BytesMut::from(&template[..]);
                b[..8].copy_from_slice(&now_ns().to_le_bytes());
                b.freeze()
            } else {
                template.clone()
            };
            // Never waits: at most AHEAD requests are queued in a channel of
            // CHANNEL_CAPACITY.
            conn.client
                .publish_bytes(topic.as_str(), qos, false, body)
                .await
                .context("MQTT publish")?;
            queued += 1;
        }
        let all_handed = next_due.is_none() && !limit.more(queued);
        let all_done = written == queued && (qos == QoS::AtMostOnce || acked == queued);
        if all_handed && all_done {
            break;
        }
        let event = match next_due {
            Some(due) if queued == written => {
                tokio::select! {
                    biased;
                    e = conn.events.poll() => Some(e),
                    () = tokio::time::sleep_until(due.into()) => None,
                }
            }
            _ => Some(
                tokio::time::timeout(STALL_TIMEOUT, conn.events.poll())
                    .await
                    .map_err(|_| {
                        anyhow!(
                            "MQTT publisher stalled: nothing happened for {STALL_TIMEOUT:?} \
                             ({written} of {queued} written, {acked} acknowledged)"
                        )
                    })?,
            ),
        };
        match event {
            None => {}
            Some(Ok(Event::Outgoing(Outgoing::Publish(_)))) => {
                written += 1;
                tally.add(1);
            }
            Some(Ok(Event::Incoming(Packet::PubAck(_)))) if qos == QoS::AtLeastOnce => acked += 1,
            Some(Ok(Event::Incoming(Packet::PubComp(_)))) if qos == QoS::ExactlyOnce => {
                acked += 1;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                return Err(anyhow!(e).context(format!(
                    "MQTT publisher lost its connection after {written} publishes"
                )));
            }
        }
    }
    tally.flush();
    Ok(Counted {
        msgs: written,
        bytes: written * size as u64,
        elapsed: start.elapsed(),
    })
}

/// What an MQTT subscriber waits for (as the NATS subscribers do).
struct SubContext {
    expected: watch::Receiver<u64>,
    stop: CancellationToken,
    start: Instant,
    stamp: bool,
    progress: Arc<AtomicU64>,
}

async fn subscribe_loop(
    mut conn: MqttClient,
    mut ctx: SubContext,
) -> anyhow::Result<(Counted, Histogram<u64>)> {
    let mut hist = histogram()?;
    let mut counted = Counted::default();
    let mut tally = Tally::new(ctx.progress.clone());
    let mut expected = *ctx.expected.borrow_and_update();
    let mut last = ctx.start;
    while counted.msgs < expected {
        tokio::select! {
            biased;
            () = ctx.stop.cancelled() => break,
            changed = ctx.expected.changed() => {
                if changed.is_err() {
                    break;
                }
                expected = *ctx.expected.borrow_and_update();
            }
            event = conn.events.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(msg))) => {
                    last = Instant::now();
                    if ctx.stamp
                        && let Some(sent) = stamp_of(&msg.payload)
                    {
                        hist.saturating_record(now_ns().saturating_sub(sent));
                    }
                    counted.msgs += 1;
                    counted.bytes += msg.payload.len() as u64;
                    tally.add(1);
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(anyhow!(e).context(format!(
                        "MQTT subscriber lost its connection after {} messages",
                        counted.msgs
                    )));
                }
            },
        }
    }
    tally.flush();
    counted.elapsed = last.saturating_duration_since(ctx.start);
    Ok((counted, hist))
}

/// The MQTT topic of a run: `--subject`, or `junction/bench/<random>`.
pub(crate) fn bench_topic(plan: &Plan, run_id: u32) -> anyhow::Result<String> {
    let t = match &plan.args.subject {
        Some(s) => s.clone(),
        None => format!("junction/bench/{run_id:08x}"),
    };
    if t.is_empty() || t.contains(['+', '#']) {
        bail!("--subject: '{t}' is not a topic one can publish to");
    }
    Ok(t)
}

/// Spawns one task per publisher.
pub(crate) fn spawn_publishers(
    plan: &Plan,
    conns: Vec<MqttClient>,
    topic: &str,
    stamp: bool,
    start: Instant,
    progress: &Arc<AtomicU64>,
) -> Vec<JoinHandle<anyhow::Result<Counted>>> {
    let n = conns.len();
    conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(publish_loop(Publisher {
                conn,
                topic: topic.to_string(),
                qos: qos(plan.args.qos),
                size: plan.args.size,
                stamp,
                limit: Limit::of(plan, start, i, n),
                rate: plan.rate_per_pub(),
                start,
                progress: progress.clone(),
            }))
        })
        .collect()
}

/// `mqtt-pubsub`: --pubs publishers to --subs subscribers of one topic at --qos; the
/// headline is what the subscribers received.
pub(crate) async fn pubsub(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let run_id = rand::random::<u32>();
    let topic = bench_topic(plan, run_id)?;
    let target = MqttTarget::parse(&plan.url)?;
    let level = qos(args.qos);
    let stamp = args.size >= 8;

    let mut subscribers = Vec::with_capacity(plan.subs);
    for i in 0..plan.subs {
        let options = target.options(
            &format!("junction-bench-sub-{run_id:08x}-{}", i + 1),
            Duration::from_secs(60),
            max_packet(args.size),
            DEFAULT_INFLIGHT,
        );
        let mut c = connect(&target, options, CHANNEL_CAPACITY).await?;
        subscribe(&mut c, &topic, level).await?;
        subscribers.push(c);
    }
    let publishers = connect_publishers(plan, &plan.url, plan.pubs, run_id).await?;

    let Run {
        expected_tx,
        expected_rx,
        stop,
        received,
        published: published_counter,
        bar,
    } = Run::start(plan, args.msgs.saturating_mul(plan.subs as u64));

    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let sub_tasks: Vec<_> = subscribers
        .into_iter()
        .map(|c| {
            tokio::spawn(subscribe_loop(
                c,
                SubContext {
                    expected: expected_rx.clone(),
                    stop: stop.clone(),
                    start,
                    stamp,
                    progress: received.clone(),
                },
            ))
        })
        .collect();
    let pub_tasks = spawn_publishers(plan, publishers, &topic, stamp, start, &published_counter);
    let (published, total_published, results, cpu1) =
        finish_run(pub_tasks, sub_tasks, &expected_tx, &stop, start).await?;
    bar.finish();
    let results = results?;

    let mut hist = histogram()?;
    let mut got = Vec::with_capacity(results.len());
    for (c, h) in results {
        hist.add(&h).context("merging latency histograms")?;
        got.push(c);
    }
    let subscribers = group(&got);
    let expected = total_published.saturating_mul(plan.subs as u64);
    let mut report = Report::new(plan, &subscribers, expected);
    report.publishers = Some(group(&published));
    report.subscribers = Some(subscribers);
    report.mqtt_qos = Some(args.qos);
    report.set_latency("publish_to_receive", &hist);
    report.set_cpu(cpu0, cpu1);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = MqttTarget::parse("mqtt://127.0.0.1:1884").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 1884));
        let t = MqttTarget::parse("localhost").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.host.as_str(), t.port), ("localhost", 1883));
        let t = MqttTarget::parse("tcp://[::1]:1883").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.host, "::1");
        assert!(MqttTarget::parse("ws://127.0.0.1:8080/mqtt").is_ok_and(|t| t.ws.is_some()));
        assert!(MqttTarget::parse("nats://127.0.0.1:4222").is_err());
        assert!(MqttTarget::parse("mqtt://h:notaport").is_err());
    }
}
