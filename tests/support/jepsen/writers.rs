//! The writers of the Jepsen-style harness: paced publishes through real
//! JetStream clients (async-nats) that know every node, each try recorded as an
//! [`Attempt`] with its start, end and outcome.

use super::checker::{Attempt, Outcome};
use super::{Nodes, env_or, process};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The offered load.
#[derive(Clone, Debug)]
pub struct Load {
    pub writers: usize,
    /// Publishes a second across all writers (`JEPSEN_RATE`, 1500).
    pub rate: f64,
    /// Publishes in flight per writer at most.
    pub window: usize,
    /// How long an id is tried again while its outcome is unknown.
    pub retry_for: Duration,
    /// How long a try waits for its PubAck.
    pub ack_timeout: Duration,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            writers: 4,
            rate: env_or("JEPSEN_RATE", 1500.0),
            window: 128,
            retry_for: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(2),
        }
    }
}

/// A client that knows every node, `urls[0]` first, reconnecting quickly and
/// noticing a silent (stopped) server within a few seconds.
pub async fn connect_all(urls: &[String], ack_timeout: Duration) -> jetstream::Context {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().expect("server address"))
        .collect();
    let deadline = Instant::now() + process::GUARD;
    loop {
        let connect = async_nats::ConnectOptions::new()
            .retain_servers_order()
            .ping_interval(Duration::from_secs(1))
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None)
            .reconnect_delay_callback(|n| Duration::from_millis((n as u64 * 100).min(1000)))
            .connect(addrs.clone())
            .await;
        match connect {
            Ok(client) => {
                return jetstream::ContextBuilder::new()
                    .timeout(ack_timeout)
                    .max_ack_inflight(4096)
                    .build(client);
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {urls:?}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One publish try of `id` (payload: the id), timed from `epoch`.
pub async fn publish_once(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    expected_last_seq: Option<u64>,
    epoch: Instant,
) -> Attempt {
    let mut msg = PublishMessage::build()
        .payload(bytes::Bytes::from(id.to_string()))
        .message_id(id);
    if let Some(e) = expected_last_seq {
        msg = msg.expected_last_sequence(e);
    }
    let start = epoch.elapsed();
    let result = async { js.send_publish(subject.to_string(), msg).await?.await }.await;
    let end = epoch.elapsed();
    let outcome = match result {
        Ok(ack) => Outcome::Acked {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        },
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
            Outcome::Rejected(e.to_string())
        }
        Err(e) => Outcome::Indeterminate(e.to_string()),
    };
    Attempt {
        msg_id: id.to_string(),
        subject: subject.to_string(),
        expected_last_seq,
        start,
        end,
        outcome,
    }
}

/// Publishes `id` until acknowledged or refused, trying again (same id, every
/// 250 ms) while the outcome is unknown and `retry_for` has not passed since
/// the first try.
async fn publish_with_retries(
    js: jetstream::Context,
    subject: String,
    id: String,
    epoch: Instant,
    retry_for: Duration,
) -> Vec<Attempt> {
    let first = Instant::now();
    let mut out = Vec::new();
    loop {
        let a = publish_once(&js, &subject, &id, None, epoch).await;
        let settled = !matches!(a.outcome, Outcome::Indeterminate(_));
        out.push(a);
        if settled || first.elapsed() >= retry_for {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writers running in the background until [`Writers::stop`].
pub struct Writers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<Vec<Attempt>>,
}

impl Writers {
    /// Stops offering new publishes, lets those in flight finish, and returns
    /// every try.
    pub async fn stop(mut self) -> Vec<Attempt> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            all.extend(done.expect("writer task"));
        }
        all.sort_by_key(|a| a.start);
        all
    }
}

/// Starts `load.writers` paced writers on `station` (subjects
/// `<station>.w<k>`), writer `k` a client of the `k`-th member (modulo their
/// number) first. A client learns nodes added later from the INFO
/// `connect_urls` the nodes send it.
pub fn start_writers(nodes: &Nodes, station: &str, load: &Load, epoch: Instant) -> Writers {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let period = Duration::from_secs_f64(load.writers as f64 / load.rate.max(1.0));
    let members = nodes.members();
    for k in 0..load.writers {
        let urls = nodes.nats_urls_from(members[k % members.len()]);
        let (subject, name) = (format!("{station}.w{k}"), format!("w{k}"));
        let (load, mut stopped) = (load.clone(), stopped.clone());
        tasks.spawn(async move {
            let js = connect_all(&urls, load.ack_timeout).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut inflight: JoinSet<Vec<Attempt>> = JoinSet::new();
            let mut history = Vec::new();
            let mut n = 0u64;
            loop {
                let stopping = *stopped.borrow();
                if stopping && inflight.is_empty() {
                    break;
                }
                tokio::select! {
                    _ = tick.tick(), if !stopping && inflight.len() < load.window => {
                        n += 1;
                        inflight.spawn(publish_with_retries(
                            js.clone(),
                            subject.clone(),
                            format!("{name}-{n}"),
                            epoch,
                            load.retry_for,
                        ));
                    }
                    Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                        history.extend(done.expect("publish task"));
                    }
                    _ = stopped.changed(), if !stopping => {}
                }
            }
            history
        });
    }
    Writers { stop, tasks }
}

/// The number after the last "wrong last sequence: " in an error, if any.
pub fn last_seq_in_error(text: &str) -> Option<u64> {
    let rest = &text[text.rfind("wrong last sequence: ")? + "wrong last sequence: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Starts `count` writers that each publish with `Nats-Expected-Last-Sequence`
/// set to the last sequence they know (from their own acks, the refusals, or
/// STREAM.INFO), one publish at a time; every id is tried once.
pub fn start_cas_writers(nodes: &Nodes, station: &str, count: usize, epoch: Instant) -> Writers {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let members = nodes.members();
    for k in 0..count {
        let urls = nodes.nats_urls_from(members[k % members.len()]);
        let (subject, name, station) = (
            format!("{station}.c{k}"),
            format!("c{k}"),
            station.to_string(),
        );
        let stopped = stopped.clone();
        tasks.spawn(async move {
            let js = connect_all(&urls, Duration::from_secs(5)).await;
            let info_last = |js: jetstream::Context, station: String| async move {
                let s = js.get_stream(station).await.ok()?;
                Some(s.cached_info().state.last_sequence)
            };
            let mut last = info_last(js.clone(), station.clone()).await.unwrap_or(0);
            let mut history = Vec::new();
            let mut n = 0u64;
            while !*stopped.borrow() {
                n += 1;
                let a =
                    publish_once(&js, &subject, &format!("{name}-{n}"), Some(last), epoch).await;
                match &a.outcome {
                    Outcome::Acked { seq, .. } => last = *seq,
                    Outcome::Rejected(e) => {
                        last = match last_seq_in_error(e) {
                            Some(l) => l,
                            None => info_last(js.clone(), station.clone()).await.unwrap_or(last),
                        }
                    }
                    Outcome::Indeterminate(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        last = info_last(js.clone(), station.clone()).await.unwrap_or(last);
                    }
                }
                history.push(a);
            }
            history
        });
    }
    Writers { stop, tasks }
}

/// After the faults: one publish through each node (but those removed from
/// the cluster), tried until acknowledged (a hang guard): the station takes
/// writes again everywhere.
pub async fn probe_every_node(nodes: &Nodes, station: &str, epoch: Instant) -> Vec<Attempt> {
    let mut out = Vec::new();
    for i in nodes.members() {
        let js = connect_all(&[nodes.nats_url(i)], Duration::from_secs(5)).await;
        let (subject, id) = (
            format!("{station}.probe"),
            format!("probe-{}", nodes.names[i]),
        );
        let deadline = Instant::now() + process::GUARD;
        loop {
            let a = publish_once(&js, &subject, &id, None, epoch).await;
            let acked = matches!(a.outcome, Outcome::Acked { .. });
            let why = format!("{:?}", a.outcome);
            out.push(a);
            if acked {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not take publishes after the faults: {why}",
                nodes.names[i]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    out
}
