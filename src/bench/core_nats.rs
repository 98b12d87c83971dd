//! NATS core scenarios: `pub`, `pubsub`, `fanout`, `queue` and `reqrep`.

use super::progress::Progress;
use super::report::{Report, group};
use super::stats::{
    Counted, connect, histogram, now_ns, pace, payload, process_cpu_secs, round_trip, stamp_of,
};
use super::{Plan, Scenario};
use anyhow::Context as _;
use async_nats::{Client, Subject, Subscriber};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a publisher runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// This many messages.
    Count(u64),
    /// Until this instant.
    Until(Instant),
}

impl Limit {
    /// Whether message number `sent` (0-based) is still to be sent.
    pub(crate) fn more(self, sent: u64) -> bool {
        match self {
            Limit::Count(n) => sent < n,
            Limit::Until(end) => Instant::now() < end,
        }
    }

    /// The limit of publisher `i` of `n`.
    pub(crate) fn of(plan: &Plan, start: Instant, i: usize, n: usize) -> Limit {
        match plan.duration {
            Some(d) => Limit::Until(start + d),
            None => Limit::Count(plan.share(i, n)),
        }
    }
}

/// Adds to the progress counter in steps, not per message.
pub(crate) struct Tally {
    counter: Arc<AtomicU64>,
    pending: u64,
}

impl Tally {
    pub(crate) fn new(counter: Arc<AtomicU64>) -> Tally {
        Tally {
            counter,
            pending: 0,
        }
    }

    pub(crate) fn add(&mut self, n: u64) {
        self.pending += n;
        if self.pending >= 1024 {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        self.counter.fetch_add(self.pending, Ordering::Relaxed);
        self.pending = 0;
    }
}

fn bench_subject(plan: &Plan) -> anyhow::Result<Subject> {
    let s = match &plan.args.subject {
        Some(s) => s.clone(),
        None => format!("junction.bench.{:08x}", rand::random::<u32>()),
    };
    if s.is_empty() || s.contains(char::is_whitespace) {
        anyhow::bail!("--subject: '{s}' is not a valid subject");
    }
    Ok(Subject::from(s))
}

pub(crate) async fn connect_all(plan: &Plan, role: &str, n: usize) -> anyhow::Result<Vec<Client>> {
    connect_all_to(plan, &plan.url, role, n).await
}

/// [`connect_all`] to another server.
async fn connect_all_to(
    plan: &Plan,
    url: &str,
    role: &str,
    n: usize,
) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(
            connect(
                url,
                &format!("junction-bench-{role}-{}", i + 1),
                &plan.client_drops,
            )
            .await?,
        );
    }
    Ok(clients)
}

/// Waits until the publishers' server knows of every subscriber on another node
/// (of a cluster): each subscriber client subscribes to a probe subject after its
/// real subscription, and a link keeps order, so once a probe published on the
/// publishers' server reaches a subscriber client, its interest has crossed too.
async fn interest_crossed(
    subscribers: &[Client],
    publisher: &Client,
    subject: &str,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    for (i, c) in subscribers.iter().enumerate() {
        let probe = format!("{subject}.probe.{i}");
        let mut s = c.subscribe(probe.clone()).await?;
        round_trip(c).await?;
        let crossed = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                publisher
                    .publish(probe.clone(), bytes::Bytes::new())
                    .await?;
                publisher.flush().await?;
                if tokio::time::timeout(Duration::from_millis(50), s.next())
                    .await
                    .is_ok()
                {
                    return anyhow::Ok(());
                }
            }
        })
        .await;
        match crossed {
            Ok(r) => r?,
            Err(_) => anyhow::bail!(
                "the subscribers' interest did not reach the publishers' server within 30 s"
            ),
        }
        s.unsubscribe().await?;
    }
    Ok(())
}

/// Publishes as fast as allowed (or at `rate`) until `limit`, then flushes.
#[allow(clippy::too_many_arguments)]
async fn publish_loop(
    client: Client,
    subject: Subject,
    size: usize,
    stamp: bool,
    limit: Limit,
    rate: f64,
    start: Instant,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Counted> {
    let template = payload(size, false);
    let mut tally = Tally::new(progress);
    let mut sent = 0u64;
    while limit.more(sent) {
        pace(start, sent, rate).await;
        let body = if stamp {
            payload(size, true)
        } else {
            template.clone()
        };
        client
            .publish(subject.clone(), body)
            .await
            .context("publish")?;
        sent += 1;
        tally.add(1);
    }
    client.flush().await.context("flush")?;
    tally.flush();
    Ok(Counted {
        msgs: sent,
        bytes: sent * size as u64,
        elapsed: start.elapsed(),
    })
}

fn spawn_publishers(
    plan: &Plan,
    clients: Vec<Client>,
    subject: &Subject,
    stamp: bool,
    start: Instant,
    progress: &Arc<AtomicU64>,
) -> Vec<JoinHandle<anyhow::Result<Counted>>> {
    let n = clients.len();
    clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(publish_loop(
                client,
                subject.clone(),
                plan.args.size,
                stamp,
                Limit::of(plan, start, i, n),
                plan.rate_per_pub(),
                start,
                progress.clone(),
            ))
        })
        .collect()
}

/// What the tasks of one publish → subscribe run share: how many messages the
/// subscribers should expect (known once the publishers are done), the stop signal,
/// the receive and publish counters, and the progress bar over `deliveries`.
pub(crate) struct Run {
    pub expected_tx: watch::Sender<u64>,
    pub expected_rx: watch::Receiver<u64>,
    pub stop: CancellationToken,
    pub received: Arc<AtomicU64>,
    pub published: Arc<AtomicU64>,
    pub bar: Progress,
}

impl Run {
    pub(crate) fn start(plan: &Plan, deliveries: u64) -> Run {
        let initial = match plan.duration {
            Some(_) => u64::MAX,
            None => plan.args.msgs,
        };
        let (expected_tx, expected_rx) = watch::channel(initial);
        let received = Arc::new(AtomicU64::new(0));
        let bar = Progress::start(
            plan.progress,
            "receiving",
            received.clone(),
            deliveries,
            plan.duration,
        );
        Run {
            expected_tx,
            expected_rx,
            stop: CancellationToken::new(),
            received,
            published: Arc::new(AtomicU64::new(0)),
            bar,
        }
    }
}

/// The end of a publish → subscribe run: waits for the publishers, tells the
/// subscribers how many messages to expect, gives them a grace period (then stops
/// them), and collects them. Returns the publishers' counts, their total, the
/// subscribers' results and the client's CPU seconds at the end.
#[allow(clippy::type_complexity)]
pub(crate) async fn finish_run<R>(
    pub_tasks: Vec<JoinHandle<anyhow::Result<Counted>>>,
    sub_tasks: Vec<JoinHandle<anyhow::Result<R>>>,
    expected_tx: &watch::Sender<u64>,
    stop: &CancellationToken,
    start: Instant,
) -> anyhow::Result<(Vec<Counted>, u64, anyhow::Result<Vec<R>>, Option<f64>)> {
    let published = match join_all(pub_tasks).await {
        Ok(p) => p,
        Err(e) => {
            stop.cancel();
            return Err(e);
        }
    };
    let total_published = published.iter().map(|c| c.msgs).sum::<u64>();
    let _ = expected_tx.send(total_published);
    let deadline = {
        let stop = stop.clone();
        let wait = grace(start.elapsed());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            stop.cancel();
        })
    };
    let results = join_all(sub_tasks).await;
    let cpu1 = process_cpu_secs();
    deadline.abort();
    Ok((published, total_published, results, cpu1))
}

/// Awaits every task and returns their results in order.
pub(crate) async fn join_all<T>(
    tasks: Vec<JoinHandle<anyhow::Result<T>>>,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(v)) => out.push(v),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(anyhow::anyhow!("benchmark task failed: {e}"));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// `pub`: publishers only; the headline is the publish rate.
pub(crate) async fn publish_only(plan: &Plan) -> anyhow::Result<Report> {
    let subject = bench_subject(plan)?;
    let pubs = connect_all(plan, "pub", plan.pubs).await?;
    for p in &pubs {
        round_trip(p).await?;
    }
    let counter = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(
        plan.progress,
        "publishing",
        counter.clone(),
        plan.args.msgs,
        plan.duration,
    );
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let tasks = spawn_publishers(plan, pubs, &subject, false, start, &counter);
    let published = join_all(tasks).await;
    let cpu1 = process_cpu_secs();
    bar.finish();
    let published = group(&published?);
    let expected = match plan.duration {
        Some(_) => published.msgs,
        None => plan.args.msgs,
    };
    let mut report = Report::new(plan, &published, expected);
    report.publishers = Some(published);
    report.set_cpu(cpu0, cpu1);
    Ok(report)
}

/// What a subscriber waits for.
pub(crate) struct SubContext {
    /// Messages expected (per subscriber, or for the whole queue group); `u64::MAX`
    /// until the publishers finish in `--duration` mode.
    pub(crate) expected: watch::Receiver<u64>,
    /// Messages received by the whole queue group.
    pub(crate) group_total: Option<Arc<AtomicU64>>,
    /// Cancelled at the deadline, or when the queue group has everything.
    pub(crate) stop: CancellationToken,
    pub(crate) start: Instant,
    pub(crate) stamp: bool,
    pub(crate) progress: Arc<AtomicU64>,
}

pub(crate) async fn subscribe_loop(
    mut sub: Subscriber,
    mut ctx: SubContext,
) -> anyhow::Result<(Counted, Histogram<u64>)> {
    let mut hist = histogram()?;
    let mut counted = Counted::default();
    let mut tally = Tally::new(ctx.progress.clone());
    let mut expected = *ctx.expected.borrow_and_update();
    let mut last = ctx.start;
    loop {
        let have = match &ctx.group_total {
            Some(t) => t.load(Ordering::SeqCst),
            None => counted.msgs,
        };
        if have >= expected {
            if ctx.group_total.is_some() {
                ctx.stop.cancel();
            }
            break;
        }
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            changed = ctx.expected.changed() => {
                if changed.is_err() {
                    break;
                }
                expected = *ctx.expected.borrow_and_update();
            }
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                last = Instant::now();
                if ctx.stamp
                    && let Some(sent) = stamp_of(&msg.payload) {
                        hist.saturating_record(now_ns().saturating_sub(sent));
                    }
                counted.msgs += 1;
                counted.bytes += msg.payload.len() as u64;
                if let Some(t) = &ctx.group_total {
                    t.fetch_add(1, Ordering::SeqCst);
                }
                tally.add(1);
            }
        }
    }
    tally.flush();
    counted.elapsed = last.saturating_duration_since(ctx.start);
    Ok((counted, hist))
}

/// How long subscribers may still wait once publishing is done.
pub(crate) fn grace(published_in: Duration) -> Duration {
    published_in.max(Duration::from_secs(5))
}

/// `pubsub`, `fanout` and `queue`: the headline is what subscribers received.
pub(crate) async fn pubsub(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let subject = bench_subject(plan)?;
    let queue = args.scenario == Scenario::Queue;
    let stamp = args.size >= 8;

    let sub_url = args.sub_url.as_deref().unwrap_or(&plan.url);
    let sub_clients = connect_all_to(plan, sub_url, "sub", plan.subs).await?;
    let mut subscriptions = Vec::with_capacity(plan.subs);
    for c in &sub_clients {
        let s = if queue {
            c.queue_subscribe(subject.clone(), "junction-bench".into())
                .await?
        } else {
            c.subscribe(subject.clone()).await?
        };
        // The subscription is registered once this round trip returns.
        round_trip(c).await?;
        subscriptions.push(s);
    }
    let pubs = connect_all(plan, "pub", plan.pubs).await?;
    for p in &pubs {
        round_trip(p).await?;
    }
    if args.sub_url.is_some() {
        interest_crossed(&sub_clients, &pubs[0], &subject).await?;
    }

    let group_total = queue.then(|| Arc::new(AtomicU64::new(0)));
    let deliveries = if queue {
        args.msgs
    } else {
        args.msgs.saturating_mul(plan.subs as u64)
    };
    let Run {
        expected_tx,
        expected_rx,
        stop,
        received,
        published: published_counter,
        bar,
    } = Run::start(plan, deliveries);

    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let sub_tasks: Vec<_> = subscriptions
        .into_iter()
        .map(|s| {
            tokio::spawn(subscribe_loop(
                s,
                SubContext {
                    expected: expected_rx.clone(),
                    group_total: group_total.clone(),
                    stop: stop.clone(),
                    start,
                    stamp,
                    progress: received.clone(),
                },
            ))
        })
        .collect();
    let pub_tasks = spawn_publishers(plan, pubs, &subject, stamp, start, &published_counter);
    let (published, total_published, results, cpu1) =
        finish_run(pub_tasks, sub_tasks, &expected_tx, &stop, start).await?;
    bar.finish();
    drop(sub_clients);
    let results = results?;

    let mut hist = histogram()?;
    let mut received = Vec::with_capacity(results.len());
    for (c, h) in results {
        hist.add(&h).context("merging latency histograms")?;
        received.push(c);
    }
    let subscribers = group(&received);
    let expected = if queue {
        total_published
    } else {
        total_published.saturating_mul(plan.subs as u64)
    };
    let mut report = Report::new(plan, &subscribers, expected);
    report.publishers = Some(group(&published));
    report.subscribers = Some(subscribers);
    report.set_latency("publish_to_receive", &hist);
    report.set_cpu(cpu0, cpu1);
    Ok(report)
}

/// `reqrep`: requesters each keep one request in flight; responders (one queue
/// group) echo the payload. The headline is completed round trips.
pub(crate) async fn reqrep(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let subject = bench_subject(plan)?;
    let responders = connect_all(plan, "responder", plan.subs).await?;
    let stop = CancellationToken::new();
    let mut responder_tasks = Vec::with_capacity(plan.subs);
    for c in responders {
        let mut sub = c
            .queue_subscribe(subject.clone(), "junction-bench".into())
            .await?;
        round_trip(&c).await?;
        let stop = stop.clone();
        responder_tasks.push(tokio::spawn(async move {
            let mut counted = Counted::default();
            let mut last = None;
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    msg = sub.next() => {
                        let Some(msg) = msg else { break };
                        if let Some(reply) = msg.reply {
                            c.publish(reply, msg.payload.clone()).await.context("reply")?;
                        }
                        last = Some(Instant::now());
                        counted.msgs += 1;
                        counted.bytes += msg.payload.len() as u64;
                    }
                }
            }
            anyhow::Ok((counted, last))
        }));
    }
    let requesters = connect_all(plan, "requester", plan.pubs).await?;
    for r in &requesters {
        round_trip(r).await?;
    }
    let counter = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(
        plan.progress,
        "round trips",
        counter.clone(),
        args.msgs,
        plan.duration,
    );
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let n = requesters.len();
    let tasks: Vec<_> = requesters
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let limit = Limit::of(plan, start, i, n);
            let subject = subject.clone();
            let size = args.size;
            let rate = plan.rate_per_pub();
            let mut tally = Tally::new(counter.clone());
            tokio::spawn(async move {
                let mut hist = histogram()?;
                let body = payload(size, false);
                let mut sent = 0u64;
                while limit.more(sent) {
                    pace(start, sent, rate).await;
                    let t0 = Instant::now();
                    client
                        .request(subject.clone(), body.clone())
                        .await
                        .context("request")?;
                    super::stats::record(&mut hist, t0.elapsed());
                    sent += 1;
                    tally.add(1);
                }
                tally.flush();
                let counted = Counted {
                    msgs: sent,
                    bytes: sent * size as u64,
                    elapsed: start.elapsed(),
                };
                anyhow::Ok((counted, hist))
            })
        })
        .collect();
    let results = join_all(tasks).await;
    let cpu1 = process_cpu_secs();
    bar.finish();
    stop.cancel();
    let responded = join_all(responder_tasks).await;
    let results = results?;
    let mut hist = histogram()?;
    let mut done = Vec::with_capacity(results.len());
    for (c, h) in results {
        hist.add(&h).context("merging latency histograms")?;
        done.push(c);
    }
    let requesters = group(&done);
    let expected = match plan.duration {
        Some(_) => requesters.msgs,
        None => args.msgs,
    };
    let mut report = Report::new(plan, &requesters, expected);
    report.publishers = Some(requesters);
    let responded: Vec<Counted> = responded?
        .into_iter()
        .map(|(mut c, last)| {
            c.elapsed = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
            c
        })
        .collect();
    report.subscribers = Some(group(&responded));
    report.set_latency("round_trip", &hist);
    report.set_cpu(cpu0, cpu1);
    Ok(report)
}
