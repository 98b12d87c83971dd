//! Station scenarios through the JetStream API: `js-pub` and `js-fetch`.

use super::core_nats::{Limit, Tally, join_all};
use super::progress::Progress;
use super::report::{JsInfo, Report, group};
use super::stats::{
    Counted, connect, histogram, pace, payload, process_cpu_secs, record, round_trip,
};
use super::{Plan, Storage};
use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};
use async_nats::jetstream::{self, Context};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use junction_nats::jetstream::FLUSH_INTERVAL_METADATA;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The default number of PubAcks in flight per publisher.
const DEFAULT_WINDOW: usize = 100;

fn subject(plan: &Plan) -> String {
    format!("{}.bench", plan.args.stream)
}

pub(crate) fn context(client: async_nats::Client, window: usize) -> Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_ack_inflight(window + 16)
        .backpressure_on_inflight(true)
        .build(client)
}

/// Gets the stream, or creates it with subjects `<stream>.>`; makes its
/// `junction.flush_interval` metadata match `--flush-interval`.
pub(crate) async fn ensure_stream(js: &Context, plan: &Plan) -> anyhow::Result<Stream> {
    let name = &plan.args.stream;
    let storage = match plan.args.storage {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    };
    match js.get_stream(name).await {
        Ok(mut stream) => {
            let info = stream.info().await.context("stream info")?.clone();
            if info.config.storage != storage {
                bail!(
                    "stream {name} exists with {:?} storage, not {:?}: delete it or pick another --stream",
                    info.config.storage,
                    storage
                );
            }
            let current = info.config.metadata.get(FLUSH_INTERVAL_METADATA);
            if current != plan.args.flush_interval.as_ref() {
                let mut config = info.config.clone();
                match &plan.args.flush_interval {
                    Some(f) => {
                        config
                            .metadata
                            .insert(FLUSH_INTERVAL_METADATA.to_string(), f.clone());
                    }
                    None => {
                        config.metadata.remove(FLUSH_INTERVAL_METADATA);
                    }
                }
                js.update_stream(config)
                    .await
                    .with_context(|| format!("updating the flush interval of stream {name}"))?;
            }
            Ok(stream)
        }
        Err(get_error) => {
            let mut config = StreamConfig {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                storage,
                num_replicas: plan.args.replicas,
                ..Default::default()
            };
            if let Some(f) = &plan.args.flush_interval {
                config
                    .metadata
                    .insert(FLUSH_INTERVAL_METADATA.to_string(), f.clone());
            }
            if let (Some(segment), Some(local)) =
                (plan.args.tier_segment_bytes, plan.args.tier_local_max_bytes)
            {
                for (k, v) in [
                    ("junction.tier.segment_bytes", segment),
                    ("junction.tier.local_max_bytes", local),
                    ("junction.tier.segment_max_age_ms", 1000),
                ] {
                    config.metadata.insert(k.to_string(), v.to_string());
                }
            }
            let mut stream = js.create_stream(config).await.with_context(|| {
                format!("stream {name} could not be read ({get_error}) nor created")
            })?;
            // A replicated stream takes publishes once its replicas elected a
            // leader (untimed).
            if plan.args.replicas > 1 {
                // (No leader yet: STREAM.INFO itself may be refused, 10008.)
                for _ in 0..100 {
                    if let Ok(info) = stream.info().await
                        && info
                            .cluster
                            .as_ref()
                            .and_then(|c| c.leader.as_ref())
                            .is_some()
                    {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            Ok(stream)
        }
    }
}

fn js_info(plan: &Plan, mode: &str, window: Option<usize>, batch: Option<usize>) -> JsInfo {
    JsInfo {
        stream: plan.args.stream.clone(),
        storage: match plan.args.storage {
            Storage::File => "file",
            Storage::Memory => "memory",
        }
        .to_string(),
        flush_interval: plan.args.flush_interval.clone(),
        mode: mode.to_string(),
        window,
        batch,
        pub_to: plan.args.pub_to,
        replay: None,
    }
}

/// Publishes with PubAcks: `window == None` awaits each one (round trip latency),
/// otherwise up to `window` are in flight (publish→ack latency).
#[allow(clippy::too_many_arguments)]
async fn publish_acked(
    js: Context,
    subject: String,
    body: bytes::Bytes,
    window: Option<usize>,
    limit: Limit,
    rate: f64,
    start: Instant,
    mut tally: Tally,
) -> anyhow::Result<(Counted, Histogram<u64>)> {
    let mut hist = histogram()?;
    let size = body.len();
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut last = start;
    match window {
        None => {
            while limit.more(sent) {
                pace(start, sent, rate).await;
                let t0 = Instant::now();
                js.publish(subject.clone(), body.clone())
                    .await
                    .context("publish")?
                    .await
                    .context("PubAck")?;
                last = Instant::now();
                record(&mut hist, last - t0);
                sent += 1;
                acked += 1;
                tally.add(1);
            }
        }
        Some(window) => {
            let mut in_flight = FuturesUnordered::new();
            loop {
                let more = limit.more(sent);
                if in_flight.len() >= window || (!more && !in_flight.is_empty()) {
                    if let Some((t0, ack)) = in_flight.next().await {
                        let ack: Result<PublishAck, _> = ack;
                        ack.context("PubAck")?;
                        last = Instant::now();
                        record(&mut hist, last.saturating_duration_since(t0));
                        acked += 1;
                        tally.add(1);
                    }
                    continue;
                }
                if !more {
                    break;
                }
                pace(start, sent, rate).await;
                let t0 = Instant::now();
                let ack = js
                    .publish(subject.clone(), body.clone())
                    .await
                    .context("publish")?;
                in_flight.push(async move { (t0, ack.await) });
                sent += 1;
            }
        }
    }
    tally.flush();
    Ok((
        Counted {
            msgs: acked,
            bytes: acked * size as u64,
            elapsed: last.saturating_duration_since(start),
        },
        hist,
    ))
}

/// `js-pub`: publishers append to a station and wait for PubAcks. The headline is
/// acknowledged messages per second.
pub(crate) async fn publish(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let admin = connect(&plan.url, "junction-bench-admin", &plan.client_drops).await?;
    let admin_js = context(admin.clone(), DEFAULT_WINDOW);
    let stream = ensure_stream(&admin_js, plan).await?;
    if args.purge {
        stream.purge().await.context("purging the stream")?;
    }
    let window = if args.sync {
        None
    } else {
        Some(args.window.unwrap_or(DEFAULT_WINDOW))
    };
    let replay = match args.replay_preload {
        Some(n) => {
            let loaded = preload_n(plan, context(admin.clone(), 1000), n).await?;
            if args.tier_segment_bytes.is_some() {
                until_tiered(&admin, &args.stream, loaded).await?;
                if args.tier_warm {
                    warm_up(&stream, loaded).await?;
                }
            }
            Some((
                loaded,
                Replayer::start(&plan.url, &stream, &plan.client_drops).await?,
            ))
        }
        None => None,
    };
    let mut publishers = Vec::with_capacity(plan.pubs);
    let chosen = match args.pub_to {
        Some(role) => Some(node_by_role(plan, &stream, role).await?),
        None => None,
    };
    let pub_url = chosen
        .as_deref()
        .or(args.pub_url.as_deref())
        .unwrap_or(&plan.url);
    if pub_url != plan.url {
        // Another node of a cluster learns of the stream one heartbeat later.
        let c = connect(pub_url, "junction-bench-probe", &plan.client_drops).await?;
        let js = context(c, DEFAULT_WINDOW);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while js.get_stream(&args.stream).await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "stream {} not known on {pub_url} after 10 s",
                args.stream
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    for i in 0..plan.pubs {
        let c = connect(
            pub_url,
            &format!("junction-bench-js-pub-{}", i + 1),
            &plan.client_drops,
        )
        .await?;
        round_trip(&c).await?;
        publishers.push(context(c, window.unwrap_or(1)));
    }
    let body = match &args.payload {
        Some(text) => bytes::Bytes::from(text.clone()),
        None => payload(args.size, false),
    };
    let counter = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(
        plan.progress,
        "publishing",
        counter.clone(),
        args.msgs,
        plan.duration,
    );
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let n = publishers.len();
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(i, js)| {
            tokio::spawn(publish_acked(
                js,
                subject(plan),
                body.clone(),
                window,
                Limit::of(plan, start, i, n),
                plan.rate_per_pub(),
                start,
                Tally::new(counter.clone()),
            ))
        })
        .collect();
    let results = join_all(tasks).await;
    let cpu1 = process_cpu_secs();
    bar.finish();
    let replayed = match replay {
        Some((loaded, r)) => Some(r.stop(loaded).await?),
        None => None,
    };
    // A tiered stream filled for a restart row: stopped only once all but
    // its local share is in S3 (untimed).
    if args.tier_segment_bytes.is_some() && args.replay_preload.is_none() {
        until_tiered(&admin, &args.stream, args.msgs).await?;
    }
    let mut hist = histogram()?;
    let mut counted = Vec::new();
    for (c, h) in results? {
        hist.add(&h).context("merging latency histograms")?;
        counted.push(c);
    }
    let publishers = group(&counted);
    let expected = match plan.duration {
        Some(_) => publishers.msgs,
        None => args.msgs,
    };
    let mut report = Report::new(plan, &publishers, expected);
    report.publishers = Some(publishers);
    report.set_latency(
        if window.is_some() {
            "publish_to_ack"
        } else {
            "round_trip"
        },
        &hist,
    );
    report.set_cpu(cpu0, cpu1);
    let mut info = if window.is_some() {
        js_info(plan, "window", window, None)
    } else {
        js_info(plan, "sync", None, None)
    };
    info.replay = replayed;
    report.jetstream = Some(info);
    Ok(report)
}

/// One consumer replaying a stream from sequence 1 (no acks, batches of
/// 500), starting over each time it has read everything, until stopped.
struct Replayer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    read: Arc<AtomicU64>,
    passes: Arc<AtomicU64>,
    start: Instant,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replayer {
    async fn start(url: &str, stream: &Stream, drops: &Arc<AtomicU64>) -> anyhow::Result<Replayer> {
        let c = connect(url, "junction-bench-replayer", drops).await?;
        let js = context(c, 1);
        let name = stream.cached_info().config.name.clone();
        let mut stream = js.get_stream(&name).await.context("getting the stream")?;
        let end_seq = stream
            .info()
            .await
            .context("STREAM.INFO")?
            .state
            .last_sequence;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (read, passes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = {
            let (stop, read, passes) = (stop.clone(), read.clone(), passes.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = stream.delete_consumer("bench-replay").await;
                    let consumer = stream
                        .create_consumer(pull::Config {
                            durable_name: Some("bench-replay".into()),
                            ack_policy: AckPolicy::None,
                            deliver_policy: DeliverPolicy::All,
                            ..Default::default()
                        })
                        .await
                        .context("creating the replaying consumer")?;
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let mut batch = consumer
                            .batch()
                            .max_messages(500)
                            .expires(Duration::from_millis(500))
                            .messages()
                            .await
                            .context("replay pull request")?;
                        let mut got = 0u64;
                        let mut at_end = false;
                        while let Some(m) = batch.next().await {
                            let m = m.map_err(|e| anyhow!("replay fetch: {e}"))?;
                            got += 1;
                            at_end |= m.info().is_ok_and(|i| i.stream_sequence >= end_seq);
                        }
                        read.fetch_add(got, Ordering::Relaxed);
                        // A pass ends at the last preloaded message (the
                        // measured publishes come after it).
                        if got == 0 || at_end {
                            break;
                        }
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        };
        Ok(Replayer {
            stop,
            read,
            passes,
            start: Instant::now(),
            task,
        })
    }

    async fn stop(self, preloaded: u64) -> anyhow::Result<super::report::ReplayInfo> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.start.elapsed().as_secs_f64();
        self.task.await.context("the replayer")??;
        let replayed = self.read.load(Ordering::Relaxed);
        Ok(super::report::ReplayInfo {
            preloaded,
            replayed,
            passes: self.passes.load(Ordering::Relaxed),
            msgs_per_sec: if elapsed > 0.0 {
                replayed as f64 / elapsed
            } else {
                0.0
            },
        })
    }
}

/// The URL among --pub-url's (comma-separated) of the node that leads the
/// stream (or of one that does not), by the server name each node gives in INFO.
pub(crate) async fn node_by_role(
    plan: &Plan,
    stream: &async_nats::jetstream::stream::Stream,
    role: super::PubTo,
) -> anyhow::Result<String> {
    let urls: Vec<&str> = plan
        .args
        .pub_url
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let mut stream = stream.clone();
    let leader = stream
        .info()
        .await
        .context("reading the stream's leader")?
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .context("the stream has no leader (is it replicated?)")?;
    for url in urls {
        let c = connect(url, "junction-bench-role-probe", &plan.client_drops).await?;
        let name = c.server_info().server_name;
        let leads = name == leader;
        if leads == (role == super::PubTo::Leader) {
            return Ok(url.to_string());
        }
    }
    anyhow::bail!("no node of --pub-url is the stream's {role:?} (leader: {leader})")
}

/// Takes up to `batch` of the messages still to fetch.
fn claim(remaining: &AtomicU64, batch: u64) -> u64 {
    let mut current = remaining.load(Ordering::SeqCst);
    loop {
        if current == 0 {
            return 0;
        }
        let take = current.min(batch);
        match remaining.compare_exchange(
            current,
            current - take,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => return take,
            Err(now) => current = now,
        }
    }
}

/// `js-fetch`: the stream is purged and preloaded (untimed), then `--subs` members
/// of one durable pull consumer fetch `--batch` messages per request and ack each
/// one explicitly. The headline is fetched messages per second.
pub(crate) async fn fetch(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let admin = connect(&plan.url, "junction-bench-admin", &plan.client_drops).await?;
    let admin_js = context(admin.clone(), 1000);
    let stream = ensure_stream(&admin_js, plan).await?;
    stream.purge().await.context("purging the stream")?;
    let _ = stream.delete_consumer(&args.consumer).await;
    let max_ack_pending = (plan.batch * plan.subs * 2).max(1000);
    stream
        .create_consumer(pull::Config {
            durable_name: Some(args.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: i64::try_from(max_ack_pending).unwrap_or(i64::MAX),
            ..Default::default()
        })
        .await
        .context("creating the durable pull consumer")?;

    let loaded = preload(plan, admin_js).await?;
    if args.tier_segment_bytes.is_some() {
        until_tiered(&admin, &args.stream, loaded).await?;
        if args.tier_warm {
            warm_up(&stream, loaded).await?;
        }
    }

    let mut consumers = Vec::with_capacity(plan.subs);
    for i in 0..plan.subs {
        let c = connect(
            &plan.url,
            &format!("junction-bench-fetch-{}", i + 1),
            &plan.client_drops,
        )
        .await?;
        round_trip(&c).await?;
        let js = context(c.clone(), 1);
        let stream = js
            .get_stream(&args.stream)
            .await
            .context("getting the stream")?;
        let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
            .get_consumer(&args.consumer)
            .await
            .map_err(|e| anyhow!("getting the consumer: {e}"))?;
        consumers.push((c, consumer));
    }

    let remaining = Arc::new(AtomicU64::new(loaded));
    let fetched = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(plan.progress, "fetching", fetched.clone(), loaded, None);
    let batch = plan.batch as u64;
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|(client, consumer)| {
            let remaining = remaining.clone();
            let mut tally = Tally::new(fetched.clone());
            tokio::spawn(async move {
                let mut hist = histogram()?;
                let mut counted = Counted::default();
                let mut last = start;
                let mut empty = 0;
                loop {
                    let want = claim(&remaining, batch);
                    if want == 0 {
                        break;
                    }
                    let t0 = Instant::now();
                    let mut messages = consumer
                        .batch()
                        .max_messages(usize::try_from(want).unwrap_or(usize::MAX))
                        .expires(Duration::from_secs(5))
                        .messages()
                        .await
                        .context("pull request")?;
                    let mut got = 0u64;
                    while let Some(m) = messages.next().await {
                        let m = m.map_err(|e| anyhow!("fetch: {e}"))?;
                        m.ack().await.map_err(|e| anyhow!("ack: {e}"))?;
                        last = Instant::now();
                        got += 1;
                        counted.bytes += m.payload.len() as u64;
                        tally.add(1);
                    }
                    record(&mut hist, t0.elapsed());
                    counted.msgs += got;
                    if got < want {
                        remaining.fetch_add(want - got, Ordering::SeqCst);
                        if got == 0 {
                            empty += 1;
                            if empty >= 3 {
                                break;
                            }
                        }
                    } else {
                        empty = 0;
                    }
                }
                client.flush().await.context("flushing acks")?;
                tally.flush();
                counted.elapsed = last.saturating_duration_since(start);
                anyhow::Ok((counted, hist))
            })
        })
        .collect();
    let results = join_all(tasks).await;
    let cpu1 = process_cpu_secs();
    bar.finish();
    let mut hist = histogram()?;
    let mut counted = Vec::new();
    for (c, h) in results? {
        hist.add(&h).context("merging latency histograms")?;
        counted.push(c);
    }
    let consumers = group(&counted);
    let mut report = Report::new(plan, &consumers, args.msgs);
    report.subscribers = Some(consumers);
    report.set_latency("fetch_round_trip", &hist);
    report.set_cpu(cpu0, cpu1);
    report.jetstream = Some(js_info(plan, "fetch", None, Some(plan.batch)));
    Ok(report)
}

/// Waits (untimed, at most 5 minutes) until a tiered stream has uploaded
/// everything and most of it is only in S3, as STREAM.INFO's `junction_tier`
/// says.
async fn until_tiered(
    client: &async_nats::Client,
    stream: &str,
    loaded: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let reply = client
            .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
            .await
            .context("STREAM.INFO")?;
        let info: serde_json::Value =
            serde_json::from_slice(&reply.payload).context("STREAM.INFO's JSON")?;
        let tier = &info["state"]["junction_tier"];
        if tier.is_null() {
            bail!("stream {stream} is not tiered: does the server have [tier]? ({info})");
        }
        let lag = tier["upload_lag_messages"].as_u64().unwrap_or(u64::MAX);
        let remote = tier["remote_messages"].as_u64().unwrap_or(0);
        if lag == 0 && remote * 10 >= loaded * 9 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("stream {stream} did not tier its {loaded} messages within 5 minutes: {tier}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Reads the whole stream once with a throwaway consumer (untimed), so that
/// the measured replay finds the remote blocks in the read cache.
async fn warm_up(stream: &Stream, loaded: u64) -> anyhow::Result<()> {
    let c = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench-warm-up".into()),
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("creating the warm-up consumer")?;
    let mut read = 0u64;
    while read < loaded {
        let mut batch = c
            .batch()
            .max_messages(1000)
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .context("warm-up pull")?;
        let before = read;
        while let Some(m) = batch.next().await {
            m.map_err(|e| anyhow!("warm-up fetch: {e}"))?;
            read += 1;
        }
        if read == before {
            bail!("the warm-up replay stopped at {read} of {loaded}");
        }
    }
    let _ = stream.delete_consumer("bench-warm-up").await;
    Ok(())
}

/// Fills the stream with `--msgs` messages of `--size` bytes, 1000 PubAcks in
/// flight (untimed); how many were stored.
pub(crate) async fn preload(plan: &Plan, js: Context) -> anyhow::Result<u64> {
    preload_n(plan, js, plan.args.msgs).await
}

/// Fills the stream with `msgs` messages of `--size` bytes, as [`preload`].
async fn preload_n(plan: &Plan, js: Context, msgs: u64) -> anyhow::Result<u64> {
    let args = &plan.args;
    let preloaded = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(plan.progress, "preloading", preloaded.clone(), msgs, None);
    let (loaded, _) = publish_acked(
        js,
        subject(plan),
        payload(args.size, false),
        Some(1000),
        Limit::Count(msgs),
        0.0,
        Instant::now(),
        Tally::new(preloaded),
    )
    .await
    .context("preloading the stream")?;
    bar.finish();
    Ok(loaded.msgs)
}

/// `js-push`: a durable push consumer (explicit acks, the server's default
/// `max_ack_pending` of 1000) delivers a preloaded stream to one subscriber,
/// which acks every message; the headline is messages delivered per second,
/// from the consumer's creation to the last one.
pub(crate) async fn push(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let admin = connect(&plan.url, "junction-bench-admin", &plan.client_drops).await?;
    let admin_js = context(admin.clone(), 1000);
    let stream = ensure_stream(&admin_js, plan).await?;
    stream.purge().await.context("purging the stream")?;
    let _ = stream.delete_consumer(&args.consumer).await;
    let loaded = preload(plan, admin_js).await?;

    let client = connect(&plan.url, "junction-bench-push", &plan.client_drops).await?;
    let deliver = format!("junction.bench.push.{:016x}", rand::random::<u64>());
    let mut sub = client
        .subscribe(deliver.clone())
        .await
        .context("subscribing to the deliver subject")?;
    round_trip(&client).await?;
    let received = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(plan.progress, "receiving", received.clone(), loaded, None);
    let mut tally = Tally::new(received);
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    stream
        .create_consumer(async_nats::jetstream::consumer::push::Config {
            durable_name: Some(args.consumer.clone()),
            deliver_subject: deliver,
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("creating the durable push consumer")?;
    let mut counted = Counted::default();
    let mut last = start;
    while counted.msgs < loaded {
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .map_err(|_| {
                anyhow!(
                    "no push delivery for 10 s after {} of {} messages",
                    counted.msgs,
                    loaded
                )
            })?
            .context("the subscription ended")?;
        if m.status.is_some() {
            continue;
        }
        if let Some(reply) = m.reply {
            client
                .publish(reply, bytes::Bytes::new())
                .await
                .context("ack")?;
        }
        last = Instant::now();
        counted.msgs += 1;
        counted.bytes += m.payload.len() as u64;
        tally.add(1);
    }
    client.flush().await.context("flushing acks")?;
    tally.flush();
    let cpu1 = process_cpu_secs();
    bar.finish();
    counted.elapsed = last.saturating_duration_since(start);
    let consumers = group(&[counted]);
    let mut report = Report::new(plan, &consumers, args.msgs);
    report.subscribers = Some(consumers);
    report.set_cpu(cpu0, cpu1);
    report.jetstream = Some(js_info(plan, "push", None, None));
    Ok(report)
}
