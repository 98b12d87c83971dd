//! `http-produce`: publishing through Junction's REST API with reqwest.
//!
//! `--concurrency` workers, each with one request in flight on its own keep-alive
//! connection. `--batch 1` POSTs each message to `/v1/subjects/<stream>.bench`;
//! `--batch B` POSTs B messages at a time to `/v1/stations/<stream>/messages/batch`.
//! The station `--stream` (subjects `<stream>.>`) is created first if missing, so every
//! answer means "stored" under the station's durability (fsync before the answer by
//! default, or `--flush-interval`). With `--subject S` (batch 1 only) messages go to
//! `/v1/subjects/S` and no station is created: a live-only publish unless a station
//! captures S.

use super::core_nats::{Limit, Tally, join_all};
use super::progress::Progress;
use super::report::{HttpInfo, Report, group};
use super::stats::{Counted, histogram, pace, process_cpu_secs, record};
use super::{Plan, Storage};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the messages go.
#[derive(Debug, Clone)]
enum Target {
    /// `POST /v1/subjects/{subject}`, one message per request.
    Single,
    /// `POST /v1/stations/{station}/messages/batch` of messages on `subject`.
    Batch { subject: String },
}

fn base(plan: &Plan) -> anyhow::Result<String> {
    let url = plan.url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("http-produce needs an http:// URL, not '{url}'");
    }
    Ok(url.to_string())
}

/// Fails with the answer's body when the status is not a success.
async fn check(resp: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    bail!("{what}: HTTP {status}: {body}")
}

/// Creates the station, or makes an existing one match `--storage` and
/// `--flush-interval`; purges it with `--purge`.
async fn ensure_station(http: &reqwest::Client, base: &str, plan: &Plan) -> anyhow::Result<()> {
    let name = &plan.args.stream;
    let flush_ms = match &plan.args.flush_interval {
        Some(f) => {
            Some(u64::try_from(humantime::parse_duration(f)?.as_millis()).unwrap_or(u64::MAX))
        }
        None => None,
    };
    let definition = json!({
        "name": name,
        "subjects": [format!("{name}.>")],
        "storage": match plan.args.storage { Storage::File => "file", Storage::Memory => "memory" },
        "flush_interval_ms": flush_ms,
    });
    let resp = http
        .post(format!("{base}/v1/stations"))
        .json(&definition)
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    if resp.status() == reqwest::StatusCode::CONFLICT {
        // It exists with another definition: make it this one.
        let resp = http
            .put(format!("{base}/v1/stations/{name}"))
            .json(&definition)
            .send()
            .await?;
        check(resp, &format!("updating station {name}")).await?;
    } else {
        check(resp, &format!("creating station {name}")).await?;
    }
    if plan.args.purge {
        let resp = http
            .post(format!("{base}/v1/stations/{name}/purge"))
            .json(&json!({}))
            .send()
            .await?;
        check(resp, &format!("purging station {name}")).await?;
    }
    Ok(())
}

/// The body of one batch request: `n` messages of `size` bytes as a JSON array.
fn batch_body(subject: &str, size: usize, n: u64) -> anyhow::Result<Bytes> {
    let payload = "x".repeat(size);
    let one = serde_json::to_string(&json!({ "subject": subject, "payload": payload }))?;
    let mut body = String::with_capacity((one.len() + 1) * n as usize + 2);
    body.push('[');
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&one);
    }
    body.push(']');
    Ok(Bytes::from(body))
}

/// Checks a batch answer: every result must have a sequence, none an error.
fn check_batch_answer(body: &[u8], n: u64) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(body).context("batch answer")?;
    let results = v
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or_else(|| anyhow!("batch answer without results"))?;
    if results.len() as u64 != n {
        bail!("batch of {n} answered {} results", results.len());
    }
    if let Some(err) = results.iter().find_map(|r| r.get("error")) {
        bail!("batch message refused: {err}");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    http: reqwest::Client,
    url: String,
    target: Target,
    size: usize,
    batch: u64,
    limit: Limit,
    rate: f64,
    start: Instant,
    progress: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
) -> anyhow::Result<(Counted, Histogram<u64>)> {
    let mut hist = histogram()?;
    let mut tally = Tally::new(progress);
    let single = Bytes::from(vec![b'x'; size]);
    let full_batch = match &target {
        Target::Batch { subject, .. } => Some(batch_body(subject, size, batch)?),
        Target::Single => None,
    };
    let mut sent = 0u64;
    while limit.more(sent) {
        pace(start, sent, rate).await;
        // In count mode the last batch may be short.
        let n = match limit {
            Limit::Count(total) => batch.min(total - sent),
            Limit::Until(_) => batch,
        };
        let t0 = Instant::now();
        match &target {
            Target::Single => {
                let resp = http.post(&url).body(single.clone()).send().await?;
                check(resp, "publish").await?.bytes().await?;
            }
            Target::Batch { subject, .. } => {
                let body = match &full_batch {
                    Some(b) if n == batch => b.clone(),
                    _ => batch_body(subject, size, n)?,
                };
                let resp = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await?;
                let answer = check(resp, "batch publish").await?.bytes().await?;
                check_batch_answer(&answer, n)?;
            }
        }
        record(&mut hist, t0.elapsed());
        requests.fetch_add(1, Ordering::Relaxed);
        sent += n;
        tally.add(n);
    }
    tally.flush();
    Ok((
        Counted {
            msgs: sent,
            bytes: sent * size as u64,
            elapsed: start.elapsed(),
        },
        hist,
    ))
}

/// `http-produce`: the headline is messages stored (or published live) per second.
pub(crate) async fn produce(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let base = base(plan)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(plan.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(90))
        .build()
        .context("HTTP client")?;
    let (target, url, info_target, name) = match &args.subject {
        Some(s) => (
            Target::Single,
            format!("{base}/v1/subjects/{s}"),
            "subject",
            s.clone(),
        ),
        None => {
            ensure_station(&http, &base, plan).await?;
            let station = args.stream.clone();
            let subject = format!("{station}.bench");
            if plan.batch == 1 {
                (
                    Target::Single,
                    format!("{base}/v1/subjects/{subject}"),
                    "station",
                    station,
                )
            } else {
                (
                    Target::Batch { subject },
                    format!("{base}/v1/stations/{station}/messages/batch"),
                    "station",
                    station,
                )
            }
        }
    };

    let counter = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(
        plan.progress,
        "publishing",
        counter.clone(),
        args.msgs,
        plan.duration,
    );
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let n = plan.concurrency;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(worker(
                http.clone(),
                url.clone(),
                target.clone(),
                args.size,
                plan.batch as u64,
                Limit::of(plan, start, i, n),
                plan.rate_per_pub() / plan.batch as f64,
                start,
                counter.clone(),
                requests.clone(),
            ))
        })
        .collect();
    let results = join_all(tasks).await;
    let cpu1 = process_cpu_secs();
    bar.finish();
    let results = results?;
    let mut hist = histogram()?;
    let mut done = Vec::with_capacity(results.len());
    for (c, h) in results {
        hist.add(&h).context("merging latency histograms")?;
        done.push(c);
    }
    let publishers = group(&done);
    let expected = match plan.duration {
        Some(_) => publishers.msgs,
        None => args.msgs,
    };
    let mut report = Report::new(plan, &publishers, expected);
    report.publishers = Some(publishers);
    report.set_latency("request_round_trip", &hist);
    report.set_cpu(cpu0, cpu1);
    report.http = Some(HttpInfo {
        concurrency: plan.concurrency,
        batch: plan.batch,
        target: info_target.to_string(),
        name,
        requests: requests.load(Ordering::Relaxed),
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_are_json_arrays() {
        let b = batch_body("S.bench", 4, 3).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        assert_eq!(v[2]["payload"], "xxxx");
        assert!(check_batch_answer(br#"{"results":[{"seq":1},{"seq":2}]}"#, 2).is_ok());
        assert!(check_batch_answer(br#"{"results":[{"seq":1},{"error":{}}]}"#, 2).is_err());
    }
}
