//! The tier's on-disk cache (`tier.disk_cache_bytes`) against moto's server
//! mode: remote blocks read once are kept on disk, so a restarted broker
//! replays the remote range without S3.
//!
//! - a cold replay fills the cache; after a restart, with moto hung
//!   (SIGSTOP), a durable pull consumer from sequence 1 gets every message in
//!   order with its payload, and the station counts no cache miss;
//! - with a tiny bound, a full replay is complete and the cache directory
//!   stays within the bound (plus one block);
//! - deleting the station removes its cached files;
//! - a cached block with a flipped byte (broker stopped) is caught by its
//!   checksum after the restart: the reader gets the right data from S3 and
//!   `junction_tier_disk_cache_corrupt_total` counts it; the files of a
//!   station the broker does not have, and a half-written `.tmp`, are removed
//!   at start.
//!
//! The server is found as tests/support/s3.rs says. Without one the test says
//! so and passes, unless `REQUIRE_MOTO` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;
use crate::support::s3;

use s3::S3;

const MESSAGES: u64 = 2000;
const PAYLOAD: usize = 1024;
const SEGMENT_BYTES: u64 = 128 * 1024;
const LOCAL_MAX_BYTES: u64 = 256 * 1024;
/// A segment of [`SEGMENT_BYTES`] is one block: its bytes plus headers.
const ONE_BLOCK: u64 = SEGMENT_BYTES + 8 * 1024;

fn payload(seq: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(PAYLOAD);
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    while p.len() < PAYLOAD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.extend_from_slice(&x.to_le_bytes());
    }
    p.truncate(PAYLOAD);
    p
}

struct Broker {
    child: Child,
    dir: tempfile::TempDir,
    nats_port: u16,
    http_port: u16,
    extra: Vec<(&'static str, String)>,
}

impl Broker {
    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("tier-cache")
    }
}

async fn start(moto: &S3, prefix: &str, extra: Vec<(&'static str, String)>) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, http_port) = (process::free_port(), process::free_port());
    start_in(moto, prefix, dir, nats_port, http_port, extra).await
}

async fn start_in(
    moto: &S3,
    prefix: &str,
    dir: tempfile::TempDir,
    nats_port: u16,
    http_port: u16,
    extra: Vec<(&'static str, String)>,
) -> Broker {
    let mut env = vec![
        ("JUNCTION_TIER_CACHE_BYTES", "4MiB".to_string()),
        ("RUST_LOG", "error".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let child = moto
        .junction(
            prefix,
            &env,
            dir.path(),
            &dir.path().join("data"),
            (nats_port, http_port),
        )
        .await;
    Broker {
        child,
        dir,
        nats_port,
        http_port,
        extra,
    }
}

/// Stops the broker (SIGKILL) and leaves its data directory.
async fn stop(broker: Broker) -> (tempfile::TempDir, u16, u16, Vec<(&'static str, String)>) {
    let Broker {
        mut child,
        dir,
        nats_port,
        http_port,
        extra,
    } = broker;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    (dir, nats_port, http_port, extra)
}

async fn connect(broker: &Broker) -> (async_nats::Client, jetstream::Context) {
    let nc = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let js = jetstream::new(nc.clone());
    (nc, js)
}

/// Makes the tiered stream `TIERED`, publishes every message (acked) and waits
/// until they are uploaded and most have left local disk.
async fn fill(broker: &Broker, js: &jetstream::Context) {
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", SEGMENT_BYTES.to_string()),
        ("junction.tier.local_max_bytes", LOCAL_MAX_BYTES.to_string()),
        ("junction.tier.segment_max_age_ms", "1000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    js.create_stream(stream::Config {
        name: "TIERED".into(),
        subjects: vec!["tiered.>".into()],
        metadata,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut seq = 1;
    while seq <= MESSAGES {
        let mut acks = Vec::new();
        for s in seq..(seq + 200).min(MESSAGES + 1) {
            acks.push(
                js.publish(format!("tiered.k{}", s % 10), payload(s).into())
                    .await
                    .unwrap(),
            );
        }
        for (i, ack) in acks.into_iter().enumerate() {
            assert_eq!(ack.await.unwrap().sequence, seq + i as u64);
        }
        seq += 200;
    }
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tier = tier_state(&http, broker).await;
        if tier["upload_lag_messages"] == 0
            && tier["remote_messages"].as_u64().unwrap_or(0) > MESSAGES * 3 / 4
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "uploads did not catch up: {tier}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn tier_state(http: &reqwest::Client, broker: &Broker) -> serde_json::Value {
    let info: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/TIERED",
            broker.http_port
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["state"]["tier"].clone()
}

/// A durable pull consumer `name` from sequence 1 reads every message, in
/// order, with its payload (acking each).
async fn replay(js: &jetstream::Context, name: &str) {
    let stream = js.get_stream("TIERED").await.unwrap();
    let c = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut want = 1;
    // A hang guard, not a timed assertion.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while want <= MESSAGES {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}: stuck before seq {want}"
        );
        let mut batch = tokio::time::timeout(
            Duration::from_secs(60),
            c.fetch()
                .max_messages(250)
                .expires(Duration::from_secs(5))
                .messages(),
        )
        .await
        .expect("fetch answers")
        .unwrap();
        while let Some(m) = tokio::time::timeout(Duration::from_secs(60), batch.next())
            .await
            .expect("a message or the end of the batch")
        {
            let m = m.unwrap();
            assert_eq!(m.info().unwrap().stream_sequence, want, "in order");
            assert_eq!(m.payload.as_ref(), payload(want).as_slice(), "seq {want}");
            m.ack().await.unwrap();
            want += 1;
        }
    }
}

/// The broker's `/metrics` value of the unlabelled `name` (0 when absent).
async fn metric(http: &reqwest::Client, broker: &Broker, name: &str) -> u64 {
    let text = http
        .get(format!("http://127.0.0.1:{}/metrics", broker.http_port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Waits until every block read from S3 is written to the disk cache.
async fn cache_written(http: &reqwest::Client, broker: &Broker) {
    for _ in 0..600 {
        if metric(http, broker, "junction_tier_disk_cache_queued_bytes").await == 0
            && metric(http, broker, "junction_tier_disk_cache_files").await > 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the disk cache writes did not drain");
}

/// Bytes of the cache files under `dir`.
fn dir_bytes(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    for station in std::fs::read_dir(dir).unwrap() {
        let station = station.unwrap();
        if station.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(station.path()).unwrap() {
                bytes += f.unwrap().metadata().unwrap().len();
                files += 1;
            }
        }
    }
    (bytes, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_replays_the_remote_range_from_disk_with_s3_hung() {
    let Some(moto) = s3::moto().await else { return };
    let broker = start(&moto, "warm", Vec::new()).await;
    let http = reqwest::Client::new();
    let (_nc, js) = connect(&broker).await;
    fill(&broker, &js).await;
    replay(&js, "cold").await;
    let cold = tier_state(&http, &broker).await;
    assert!(cold["cache_misses"].as_u64().unwrap() > 0, "{cold}");
    cache_written(&http, &broker).await;
    assert!(dir_bytes(&broker.cache_dir()).1 > 0);
    drop((_nc, js));

    let (dir, nats_port, http_port, extra) = stop(broker).await;
    moto.hang();
    let broker = start_in(&moto, "warm", dir, nats_port, http_port, extra).await;
    let (nc, js) = connect(&broker).await;
    replay(&js, "warm").await;
    let warm = tier_state(&http, &broker).await;
    // NATS STREAM.INFO says the same as the HTTP station.
    let info: serde_json::Value = serde_json::from_slice(
        &nc.request("$JS.API.STREAM.INFO.TIERED", "".into())
            .await
            .unwrap()
            .payload,
    )
    .unwrap();
    moto.unhang();
    assert_eq!(warm["cache_misses"], 0, "{warm}");
    assert!(warm["disk_cache_hits"].as_u64().unwrap() > 0, "{warm}");
    assert!(
        warm["cache_hits"].as_u64().unwrap() >= warm["disk_cache_hits"].as_u64().unwrap(),
        "{warm}"
    );
    let nats_tier = &info["state"]["junction_tier"];
    assert_eq!(nats_tier["cache_misses"], 0, "{info}");
    assert!(
        nats_tier["disk_cache_hits"].as_u64().unwrap() >= warm["disk_cache_hits"].as_u64().unwrap(),
        "{info}"
    );
    assert!(metric(&http, &broker, "junction_tier_disk_cache_hits_total").await > 0);
    assert_eq!(
        metric(&http, &broker, "junction_tier_disk_cache_corrupt_total").await,
        0
    );
}

/// A memory cache smaller than the remote range: a second replay in the same
/// process finds the segments' footers in memory and most blocks only on the
/// disk cache. Those are read from the disk (S3 hung: nothing else could serve
/// them), not waited for. (A read-ahead that counted a block on the disk as
/// cached and never loaded it stalled this replay.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replay_reads_blocks_evicted_from_memory_off_the_disk_with_s3_hung() {
    let Some(moto) = s3::moto().await else { return };
    let broker = start(
        &moto,
        "evicted",
        vec![("JUNCTION_TIER_CACHE_BYTES", "1MiB".to_string())],
    )
    .await;
    let http = reqwest::Client::new();
    let (_nc, js) = connect(&broker).await;
    fill(&broker, &js).await;
    replay(&js, "first").await;
    let first = tier_state(&http, &broker).await;
    cache_written(&http, &broker).await;
    moto.hang();
    replay(&js, "second").await;
    let second = tier_state(&http, &broker).await;
    moto.unhang();
    assert_eq!(second["cache_misses"], first["cache_misses"], "{second}");
    assert!(
        second["disk_cache_hits"].as_u64().unwrap() > first["disk_cache_hits"].as_u64().unwrap(),
        "{first} then {second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_disk_cache_stays_within_its_bound_and_the_replay_is_complete() {
    let Some(moto) = s3::moto().await else { return };
    const BOUND: u64 = 512 * 1024;
    let broker = start(
        &moto,
        "tiny",
        vec![("JUNCTION_TIER_DISK_CACHE_BYTES", BOUND.to_string())],
    )
    .await;
    let http = reqwest::Client::new();
    let (_nc, js) = connect(&broker).await;
    fill(&broker, &js).await;
    replay(&js, "all").await;
    cache_written(&http, &broker).await;
    let (bytes, files) = dir_bytes(&broker.cache_dir());
    assert!(bytes <= BOUND + ONE_BLOCK, "{bytes} bytes in {files} files");
    assert!(files > 0);
    assert_eq!(
        metric(&http, &broker, "junction_tier_disk_cache_bytes").await,
        bytes
    );
    assert_eq!(
        metric(&http, &broker, "junction_tier_disk_cache_capacity_bytes").await,
        BOUND
    );
    // More than the bound went through it.
    assert!(metric(&http, &broker, "junction_tier_disk_cache_evictions_total").await > 0);
    // A second replay is complete too (from disk where it can, else S3).
    replay(&js, "again").await;
    cache_written(&http, &broker).await;
    let (bytes, files) = dir_bytes(&broker.cache_dir());
    assert!(bytes <= BOUND + ONE_BLOCK, "{bytes} bytes in {files} files");

    // Deleting the station removes its cached files.
    js.delete_stream("TIERED").await.unwrap();
    for _ in 0..600 {
        if metric(&http, &broker, "junction_tier_disk_cache_files").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&http, &broker, "junction_tier_disk_cache_files").await,
        0
    );
    assert_eq!(dir_bytes(&broker.cache_dir()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cached_block_is_deleted_counted_and_read_from_s3() {
    let Some(moto) = s3::moto().await else { return };
    let broker = start(&moto, "flip", Vec::new()).await;
    let http = reqwest::Client::new();
    let (_nc, js) = connect(&broker).await;
    fill(&broker, &js).await;
    replay(&js, "cold").await;
    cache_written(&http, &broker).await;
    let cache = broker.cache_dir();
    drop((_nc, js));
    let (dir, nats_port, http_port, extra) = stop(broker).await;

    // The first block of the oldest segment gets one flipped byte.
    let mut blocks: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .flat_map(|s| std::fs::read_dir(s.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "blk"))
        .collect();
    blocks.sort();
    let victim = blocks.first().expect("a cached block").clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    // A station this broker does not have, and a write cut short.
    let stale = cache.join("999-1");
    std::fs::create_dir_all(&stale).unwrap();
    let stale_file = stale
        .join("00000000000000000001-00000000000000000009-0000000000000001.0000000000000000.blk");
    std::fs::write(&stale_file, b"stale").unwrap();
    let half = victim.with_extension("blk.tmp");
    std::fs::write(&half, b"half").unwrap();

    let broker = start_in(&moto, "flip", dir, nats_port, http_port, extra).await;
    let (_nc, js) = connect(&broker).await;
    replay(&js, "after").await;
    assert_eq!(
        metric(&http, &broker, "junction_tier_disk_cache_corrupt_total").await,
        1
    );
    let tier = tier_state(&http, &broker).await;
    // The damaged block came from S3 again (two readers of it may both have
    // gone there); the others from disk.
    let misses = tier["cache_misses"].as_u64().unwrap();
    assert!((1..=2).contains(&misses), "{tier}");
    assert!(tier["disk_cache_hits"].as_u64().unwrap() > 0, "{tier}");
    // It is written again, whole.
    cache_written(&http, &broker).await;
    assert_ne!(std::fs::read(&victim).unwrap(), bytes);
    assert!(!stale_file.exists() && !stale.exists(), "stale files stay");
    assert!(!half.exists(), "a .tmp stays");
}
