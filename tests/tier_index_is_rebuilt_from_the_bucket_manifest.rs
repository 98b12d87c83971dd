//! A station's remote index comes back from its manifest in the bucket when
//! the local store lost it: the data directory is restored from a copy taken
//! before any upload (the station defined, no message, no index entry), while
//! the bucket holds every segment uploaded since.
//!
//! - after the restore and a start, a consumer from sequence 1 gets every
//!   published message, in order, with its payload (SHA-256 over all);
//! - a new publish gets the sequence after the restored range;
//! - the manifest object sits next to the station's segments.
//! - a segment the manifest lists whose footer is damaged is skipped by the
//!   rebuild: the rest come back, and none of its messages is served.
//!
//! Runs on moto's server mode (tests/support/s3.rs); without it the test says
//! so and passes, unless `REQUIRE_MOTO` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

use crate::support::process;
use crate::support::s3;

const MESSAGES: u64 = 1500;
const PAYLOAD: usize = 1024;
const SEGMENT_BYTES: u64 = 128 * 1024;
const LOCAL_MAX_BYTES: u64 = 256 * 1024;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

async fn tier_state(http: &reqwest::Client, port: u16) -> serde_json::Value {
    http.get(format!("http://127.0.0.1:{port}/v1/stations/TIERED"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["state"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_is_rebuilt_from_the_bucket_manifest_after_a_restore() {
    let Some(moto) = s3::moto().await else { return };
    restore_and_rebuild(&moto, false).await;
}

/// A segment the manifest lists whose footer is damaged is skipped: the
/// others come back, and no message of it is served (never wrong data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_segment_is_skipped_by_the_rebuild_never_served() {
    let Some(moto) = s3::moto().await else { return };
    restore_and_rebuild(&moto, true).await;
}

async fn restore_and_rebuild(moto: &s3::S3, damage: bool) {
    let prefix = if damage { "rebuild-damaged" } else { "rebuild" };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backup = dir.path().join("backup");
    let ports = (process::free_port(), process::free_port());

    // The station is defined, then the broker stops and the data directory
    // is copied: the backup holds the station and nothing uploaded.
    let broker = moto.junction_at(prefix, dir.path(), &data, ports).await;
    let client = async_nats::connect(format!("127.0.0.1:{}", ports.0))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", SEGMENT_BYTES.to_string()),
        ("junction.tier.local_max_bytes", LOCAL_MAX_BYTES.to_string()),
        ("junction.tier.segment_max_age_ms", "500".to_string()),
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
    drop(js);
    s3::kill(broker).await;
    copy_dir(&data, &backup);

    // Publish; every message is uploaded and most leave local disk.
    let broker = moto.junction_at(prefix, dir.path(), &data, ports).await;
    let client = async_nats::connect(format!("127.0.0.1:{}", ports.0))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let mut published = Sha256::new();
    for seq in 1..=MESSAGES {
        let p = s3::payload(seq, PAYLOAD);
        published.update(&p);
        let ack = js
            .publish(format!("tiered.k{}", seq % 10), p.into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, seq);
    }
    let published = published.finalize();
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut segments;
    loop {
        let state = tier_state(&http, ports.1).await;
        let tier = &state["tier"];
        segments = tier["segments"].as_u64().unwrap_or(0);
        if tier["upload_lag_messages"] == 0
            && segments >= 3
            && tier["local_first_seq"].as_u64().unwrap_or(0) > 1
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no catch-up: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let keys = moto.list_keys(&format!("{prefix}/stations/")).await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".seg")).count() as u64,
        segments,
        "{keys:?}"
    );
    // The manifest is written on the uploader's tick after the last change.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !moto
        .list_keys(&format!("{prefix}/stations/"))
        .await
        .iter()
        .any(|k| k.ends_with("/manifest"))
    {
        assert!(std::time::Instant::now() < deadline, "no manifest");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the uploader write the manifest of the last change (a tick is 250 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(js);
    s3::kill(broker).await;

    // Optionally, one segment in the middle gets a damaged footer.
    let mut skipped = 0..=0;
    if damage {
        let mut segs = moto.list_segments(&format!("{prefix}/stations/")).await;
        segs.sort();
        let key = segs[segs.len() / 2].clone();
        let name = key.rsplit('/').next().unwrap();
        let mut parts = name.split('-');
        let first: u64 = parts.next().unwrap().parse().unwrap();
        let last: u64 = parts.next().unwrap().parse().unwrap();
        skipped = first..=last;
        moto.rewrite(&key, |object| {
            let n = object.len();
            object[n - 3] ^= 0x20;
        })
        .await;
    }
    let kept: Vec<u64> = (1..=MESSAGES).filter(|s| !skipped.contains(s)).collect();
    let restored = if damage { segments - 1 } else { segments };

    // The data directory is restored from the backup: no message, no index.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let broker = moto.junction_at(prefix, dir.path(), &data, ports).await;

    // The index comes back from the manifest.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = tier_state(&http, ports.1).await;
        if state["tier"]["segments"].as_u64() == Some(restored)
            && state["messages"] == kept.len() as u64
        {
            assert_eq!(state["first_seq"], 1, "{state}");
            assert_eq!(state["last_seq"], MESSAGES, "{state}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rebuild: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // /metrics counts the restored segments (the damaged one is not).
    let metrics = http
        .get(format!("http://127.0.0.1:{}/metrics", ports.1))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("junction_tier_segments_restored_total {restored}")),
        "{metrics}"
    );

    // A consumer from sequence 1 gets every message, in order.
    let client = async_nats::connect(format!("127.0.0.1:{}", ports.0))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let s = js.get_stream("TIERED").await.unwrap();
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("replay".into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = c.messages().await.unwrap();
    let mut replayed = Sha256::new();
    for &want in &kept {
        let m = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .unwrap_or_else(|_| panic!("no message {want} within 20 s"))
            .unwrap()
            .unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        assert_eq!(
            &m.payload[..],
            &s3::payload(want, PAYLOAD)[..],
            "payload of {want}"
        );
        replayed.update(&m.payload);
    }
    if !damage {
        assert_eq!(replayed.finalize(), published, "SHA-256 over the payloads");
    } else {
        // No message of the skipped segment is served.
        let e = s
            .get_raw_message(*skipped.start())
            .await
            .expect_err("a skipped message is not served");
        eprintln!("MSG.GET of a skipped sequence: {e}");
    }

    // New messages get sequences above the restored range.
    let ack = js
        .publish("tiered.new", "after".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, MESSAGES + 1);
    drop(messages);
    drop(js);
    s3::kill(broker).await;

    // And again after another start: the rebuilt index is on disk.
    let broker = moto.junction_at(prefix, dir.path(), &data, ports).await;
    let state = tier_state(&http, ports.1).await;
    assert_eq!(
        state["tier"]["segments"].as_u64(),
        Some(restored),
        "{state}"
    );
    assert_eq!(state["last_seq"], MESSAGES + 1, "{state}");
    assert_eq!(state["first_seq"], 1, "{state}");
    s3::kill(broker).await;
}
