//! Key-Value, ordered-consumer and geo-replication scenarios: `kv-put`,
//! `kv-get`, `js-ordered` and `geo-source`.

use super::Plan;
use super::js::{context, ensure_stream, preload};
use super::progress::Progress;
use super::report::{JsInfo, Report, group};
use super::stats::{
    Counted, connect, histogram, now_ns, payload, process_cpu_secs, record, stamp_of,
};
use anyhow::{Context as _, anyhow, bail};
use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{Config as StreamConfig, Source, StorageType};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Distinct keys each `kv-put` client writes in turn, and `kv-get` reads.
const KEYS: u64 = 10_000;

fn info(plan: &Plan, mode: &str) -> JsInfo {
    JsInfo {
        stream: plan.args.stream.clone(),
        storage: match plan.args.storage {
            super::Storage::File => "file",
            super::Storage::Memory => "memory",
        }
        .to_string(),
        flush_interval: plan.args.flush_interval.clone(),
        mode: mode.to_string(),
        window: None,
        batch: None,
        pub_to: None,
        replay: None,
    }
}

/// The bucket `--stream` made afresh (history 1, `--storage`), so every run
/// starts empty. Its stream is made with the settings nats.go and async-nats
/// give a bucket's stream (`create_key_value` itself first reads the account
/// info, which async-nats cannot parse from nats-server 2.9).
async fn fresh_bucket(plan: &Plan) -> anyhow::Result<kv::Store> {
    let admin = connect(&plan.url, "junction-bench-admin", &plan.client_drops).await?;
    let js = context(admin, 1000);
    let bucket = &plan.args.stream;
    let _ = js.delete_stream(format!("KV_{bucket}")).await;
    js.create_stream(StreamConfig {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        duplicate_window: Duration::from_secs(120),
        storage: match plan.args.storage {
            super::Storage::File => StorageType::File,
            super::Storage::Memory => StorageType::Memory,
        },
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow!("creating bucket {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| anyhow!("bucket {bucket}: {e}"))
}

/// `--pubs` clients, each on its own connection, doing its share of `--msgs`
/// operations one after the other (each awaited: a put waits for its PubAck,
/// so for the fsync); `op(store, client, i)` is one operation.
async fn kv_clients<F, Fut>(plan: &Plan, what: &'static str, op: F) -> anyhow::Result<Report>
where
    F: Fn(kv::Store, usize, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<usize>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(plan.progress, what, done.clone(), plan.args.msgs, None);
    let mut stores = Vec::with_capacity(plan.pubs);
    for i in 0..plan.pubs {
        let c = connect(
            &plan.url,
            &format!("junction-bench-kv-{}", i + 1),
            &plan.client_drops,
        )
        .await?;
        let js = context(c, 1);
        stores.push(
            js.get_key_value(&plan.args.stream)
                .await
                .map_err(|e| anyhow!("bucket {}: {e}", plan.args.stream))?,
        );
    }
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(plan.pubs);
    for (i, store) in stores.into_iter().enumerate() {
        let n = plan.share(i, plan.pubs);
        let op = op.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram()?;
            let mut counted = Counted::default();
            for k in 0..n {
                let t = Instant::now();
                counted.bytes += op(store.clone(), i, k).await? as u64;
                record(&mut h, t.elapsed());
                counted.msgs += 1;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            counted.elapsed = start.elapsed();
            anyhow::Ok((counted, h))
        }));
    }
    let mut all = histogram()?;
    let mut clients = Vec::new();
    for t in tasks {
        let (c, h) = t.await.context("a kv client panicked")??;
        all.add(&h).context("merging histograms")?;
        clients.push(c);
    }
    let cpu1 = process_cpu_secs();
    bar.finish();
    let g = group(&clients);
    let mut report = Report::new(plan, &g, plan.args.msgs);
    report.publishers = Some(g);
    report.set_latency(what, &all);
    report.set_cpu(cpu0, cpu1);
    report.jetstream = Some(info(plan, what));
    Ok(report)
}

/// `kv-put`: puts of `--size` bytes, each awaited (durable before its ack on
/// Junction, fsync by default), by `--pubs` clients over [`KEYS`] keys each.
pub(crate) async fn put(plan: &Plan) -> anyhow::Result<Report> {
    fresh_bucket(plan).await?;
    let value = payload(plan.args.size, false);
    kv_clients(plan, "put round trip", move |store, i, k| {
        let value = value.clone();
        async move {
            let n = value.len();
            store
                .put(format!("c{i}.k{}", k % KEYS), value)
                .await
                .map_err(|e| anyhow!("put: {e}"))?;
            Ok(n)
        }
    })
    .await
}

/// `kv-get`: [`KEYS`] keys put first (untimed), then gets of them, each
/// awaited, by `--pubs` clients.
pub(crate) async fn get(plan: &Plan) -> anyhow::Result<Report> {
    let store = fresh_bucket(plan).await?;
    let keys = KEYS.min(plan.args.msgs);
    let value = payload(plan.args.size, false);
    let mut pending = futures::stream::FuturesUnordered::new();
    for k in 0..keys {
        pending.push(store.put(format!("k{k}"), value.clone()));
        if pending.len() >= 256 {
            pending
                .next()
                .await
                .transpose()
                .map_err(|e| anyhow!("preloading keys: {e}"))?;
        }
    }
    while let Some(r) = pending.next().await {
        r.map_err(|e| anyhow!("preloading keys: {e}"))?;
    }
    drop(pending);
    kv_clients(plan, "get round trip", move |store, i, k| async move {
        let v = store
            .get(format!("k{}", (k + i as u64 * 7919) % keys))
            .await
            .map_err(|e| anyhow!("get: {e}"))?
            .ok_or_else(|| anyhow!("get: a preloaded key is missing"))?;
        Ok(v.len())
    })
    .await
}

/// `js-ordered`: an ordered consumer (async-nats' pull-based one: ephemeral,
/// no acks, flow control by its pulls) replays a preloaded stream of `--msgs`
/// messages from the start; messages per second from its creation to the last.
pub(crate) async fn ordered(plan: &Plan) -> anyhow::Result<Report> {
    let admin = connect(&plan.url, "junction-bench-admin", &plan.client_drops).await?;
    let js = context(admin, 1000);
    let stream = ensure_stream(&js, plan).await?;
    stream.purge().await.context("purging the stream")?;
    let loaded = preload(plan, js).await?;
    let c = connect(&plan.url, "junction-bench-ordered", &plan.client_drops).await?;
    let stream = context(c, 1)
        .get_stream(&plan.args.stream)
        .await
        .context("getting the stream")?;
    let received = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(plan.progress, "replaying", received.clone(), loaded, None);
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .context("creating the ordered consumer")?;
    let mut messages = consumer.messages().await.context("consuming")?;
    let mut counted = Counted::default();
    while counted.msgs < loaded {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .map_err(|_| anyhow!("nothing for 30 s after {} of {loaded}", counted.msgs))?
            .context("the consumer ended")?
            .map_err(|e| anyhow!("ordered consumer: {e}"))?;
        counted.msgs += 1;
        counted.bytes += m.payload.len() as u64;
        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    counted.elapsed = start.elapsed();
    let cpu1 = process_cpu_secs();
    bar.finish();
    let g = group(&[counted]);
    let mut report = Report::new(plan, &g, loaded);
    report.subscribers = Some(g);
    report.set_cpu(cpu0, cpu1);
    report.jetstream = Some(info(plan, "ordered"));
    Ok(report)
}

/// `geo-source`: `--msgs` messages published on the origin (`--url`, stream
/// `--stream`, 1000 PubAcks in flight, send time in the payload) while a
/// stream on another broker (`--sub-url`, stream `<stream>_GEO`, made afresh)
/// sources it over NATS (`junction.remote.<stream>` = `--url`); an ordered
/// consumer on the destination reads the copies. Throughput: copies readable
/// on the destination per second; latency: publish on the origin -> copy read
/// on the destination (the replication lag, in time; with `--rate`, published
/// at that rate, so the lag is not the queue of an unlimited publisher).
pub(crate) async fn geo(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    if args.size < 8 {
        bail!("geo-source: --size must be at least 8 (the send time)");
    }
    let Some(dest_url) = args.sub_url.clone() else {
        bail!("geo-source: --sub-url names the destination broker");
    };
    let origin = connect(&plan.url, "junction-bench-origin", &plan.client_drops).await?;
    let origin_js = context(origin, 1000);
    let stream = ensure_stream(&origin_js, plan).await?;
    stream.purge().await.context("purging the origin stream")?;
    let dest = connect(&dest_url, "junction-bench-destination", &plan.client_drops).await?;
    let dest_js = context(dest, 1);
    let copy = format!("{}_GEO", args.stream);
    let _ = dest_js.delete_stream(&copy).await;
    let dest_stream = dest_js
        .create_stream(StreamConfig {
            name: copy.clone(),
            sources: Some(vec![Source {
                name: args.stream.clone(),
                ..Default::default()
            }]),
            metadata: HashMap::from([(
                format!("junction.remote.{}", args.stream),
                plan.url.clone(),
            )]),
            storage: match args.storage {
                super::Storage::File => StorageType::File,
                super::Storage::Memory => StorageType::Memory,
            },
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating the sourced stream {copy} on {dest_url}"))?;
    let consumer = dest_stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .context("the ordered consumer on the destination")?;
    let mut messages = consumer.messages().await.context("consuming")?;
    // The link connects to the origin and makes its consumer there after the
    // stream is created: one message through it first, so that its start is
    // not counted as replication lag (it was the p99 of 207 ms measured before).
    let subject = format!("{}.bench", args.stream);
    origin_js
        .publish(subject.clone(), payload(args.size, true))
        .await
        .map_err(|e| anyhow!("publish: {e}"))?
        .await
        .map_err(|e| anyhow!("publish ack: {e}"))?;
    tokio::time::timeout(Duration::from_secs(30), messages.next())
        .await
        .map_err(|_| anyhow!("the link copied nothing for 30 s"))?
        .context("the consumer ended")?
        .map_err(|e| anyhow!("ordered consumer: {e}"))?;
    let received = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(
        plan.progress,
        "replicating",
        received.clone(),
        args.msgs,
        None,
    );
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let size = args.size;
    let total = args.msgs;
    // At --rate, batches of a hundredth of a second's worth, each sent on time.
    let rate = args.rate;
    let batch = if rate > 0 {
        (rate / 100).clamp(1, 1000)
    } else {
        1000
    };
    let publisher = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            if rate > 0 {
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            let n = (total - sent).min(batch);
            let mut acks = Vec::with_capacity(n as usize);
            for _ in 0..n {
                acks.push(
                    origin_js
                        .publish(subject.clone(), payload(size, true))
                        .await
                        .map_err(|e| anyhow!("publish: {e}"))?,
                );
            }
            for a in acks {
                a.await.map_err(|e| anyhow!("publish ack: {e}"))?;
            }
            sent += n;
        }
        anyhow::Ok(())
    });
    let mut h = histogram()?;
    let mut counted = Counted::default();
    while counted.msgs < total {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .map_err(|_| anyhow!("no copy for 30 s after {} of {total}", counted.msgs))?
            .context("the consumer ended")?
            .map_err(|e| anyhow!("ordered consumer: {e}"))?;
        if let Some(t) = stamp_of(&m.payload) {
            record(&mut h, Duration::from_nanos(now_ns().saturating_sub(t)));
        }
        counted.msgs += 1;
        counted.bytes += m.payload.len() as u64;
        received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    counted.elapsed = start.elapsed();
    publisher.await.context("the publisher panicked")??;
    let cpu1 = process_cpu_secs();
    bar.finish();
    let g = group(&[counted]);
    let mut report = Report::new(plan, &g, total);
    report.subscribers = Some(g);
    report.set_latency("publish on the origin -> copy read on the destination", &h);
    report.set_cpu(cpu0, cpu1);
    report.jetstream = Some(info(plan, "geo-source"));
    Ok(report)
}
