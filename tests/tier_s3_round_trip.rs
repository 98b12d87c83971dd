//! Tiered storage against a real S3 server (moto's server mode): a station
//! with small segments and a small local limit uploads its log to the bucket,
//! keeps its local share bounded, and reads everything back transparently.
//!
//! - every published (acked) message is read back, in order, by a consumer
//!   from sequence 1, with the same SHA-256 over the payloads;
//! - segment objects appear in the bucket, one per remote index entry;
//! - `MSG.GET` of remote sequences, a `by_start_time` consumer and HTTP
//!   browse from sequence 1 answer exactly what was published;
//! - STREAM.INFO shows local and remote bytes, segments and upload lag.
//!
//! moto is found through `MOTO_SERVER`, then `target/tier-venv/bin/moto_server`
//! (what `scripts/test` installs), then `PATH`. Without one the test says so and
//! passes, unless `REQUIRE_MOTO` is set (as `scripts/test` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[path = "support/process.rs"]
#[allow(dead_code)] // each test binary uses part of it
mod process;

const MESSAGES: u64 = 4000;
const PAYLOAD: usize = 1024;
const SEGMENT_BYTES: u64 = 128 * 1024;
const LOCAL_MAX_BYTES: u64 = 256 * 1024;
const BUCKET: &str = "junction-tier-test";

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

/// moto's server, or None when none is installed (and none is required).
fn moto_server() -> Option<String> {
    let candidates = [
        std::env::var("MOTO_SERVER").ok(),
        Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/tier-venv/bin/moto_server"
            )
            .to_string(),
        ),
        Some("moto_server".to_string()),
    ];
    for c in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&c)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(c);
        }
    }
    assert!(
        std::env::var_os("REQUIRE_MOTO").is_none(),
        "moto_server not found: set MOTO_SERVER or run scripts/test (it installs moto[server])"
    );
    eprintln!("tier_s3_round_trip: skipped, no moto_server (pip install 'moto[server]')");
    None
}

struct Moto {
    _child: Child,
    endpoint: String,
}

async fn start_moto(bin: &str) -> Moto {
    let port = process::free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server starts");
    process::wait_listening(port).await;
    let endpoint = format!("http://127.0.0.1:{port}");
    // moto takes unsigned requests: make the bucket.
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{BUCKET}"))
        .send()
        .await
        .expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    Moto {
        _child: child,
        endpoint,
    }
}

/// Keys of the objects in the bucket under `prefix`.
async fn list_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let body = reqwest::get(format!(
        "{endpoint}/{BUCKET}?list-type=2&prefix={prefix}&max-keys=1000"
    ))
    .await
    .expect("list")
    .text()
    .await
    .expect("list body");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_station_round_trips_through_s3() {
    let Some(bin) = moto_server() else { return };
    let moto = start_moto(&bin).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let nats_port = process::free_port();
    let http_port = process::free_port();
    let mut junction = process::junction(
        dir.path(),
        &[
            "serve",
            "--nats-listen",
            &format!("127.0.0.1:{nats_port}"),
            "--http-listen",
            &format!("127.0.0.1:{http_port}"),
            "--mqtt-listen",
            "off",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[
            ("JUNCTION_TIER_ENDPOINT", moto.endpoint.as_str()),
            ("JUNCTION_TIER_BUCKET", BUCKET),
            ("JUNCTION_TIER_PREFIX", "t1"),
            ("JUNCTION_TIER_ALLOW_HTTP", "true"),
            ("JUNCTION_TIER_ACCESS_KEY_ID", "testing"),
            ("JUNCTION_TIER_SECRET_ACCESS_KEY", "testing"),
            ("JUNCTION_TIER_CACHE_BYTES", "4MiB"),
            ("RUST_LOG", "warn"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("junction starts");
    process::wait_listening(nats_port).await;
    process::wait_listening(http_port).await;

    let client = async_nats::connect(format!("127.0.0.1:{nats_port}"))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", SEGMENT_BYTES.to_string()),
        ("junction.tier.local_max_bytes", LOCAL_MAX_BYTES.to_string()),
        ("junction.tier.segment_max_age_ms", "1000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut s = js
        .create_stream(stream::Config {
            name: "TIERED".into(),
            subjects: vec!["tiered.>".into()],
            metadata,
            ..Default::default()
        })
        .await
        .unwrap();

    // Publish, every message acked, in windows of 200 in flight.
    let started = std::time::Instant::now();
    let mut published = Sha256::new();
    let mut seq = 1u64;
    while seq <= MESSAGES {
        let mut acks = Vec::new();
        for s in seq..(seq + 200).min(MESSAGES + 1) {
            let p = payload(s);
            published.update(&p);
            acks.push(
                js.publish(format!("tiered.k{}", s % 10), p.into())
                    .await
                    .unwrap(),
            );
        }
        for (i, ack) in acks.into_iter().enumerate() {
            assert_eq!(ack.await.unwrap().sequence, seq + i as u64);
        }
        seq += 200;
    }
    let published = published.finalize();
    eprintln!(
        "published {MESSAGES} x {PAYLOAD} B in {:?}",
        started.elapsed()
    );

    // Uploads catch up: nothing left to upload, the local share bounded.
    let http = reqwest::Client::new();
    let info_url = format!("http://127.0.0.1:{http_port}/v1/stations/TIERED");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let tier = loop {
        let info: serde_json::Value = http
            .get(&info_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tier = info["state"]["tier"].clone();
        if tier["upload_lag_messages"] == 0 && tier["segments"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(info["state"]["messages"], MESSAGES, "{info}");
            assert_eq!(info["state"]["first_seq"], 1, "{info}");
            assert_eq!(info["tier"]["segment_bytes"], SEGMENT_BYTES, "{info}");
            break tier;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "uploads did not catch up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("tier state after {:?}: {tier}", started.elapsed());
    let local_bytes = tier["local_bytes"].as_u64().unwrap();
    assert!(
        local_bytes <= LOCAL_MAX_BYTES + SEGMENT_BYTES + 2 * PAYLOAD as u64,
        "local share not bounded: {tier}"
    );
    assert!(tier["local_first_seq"].as_u64().unwrap() > 1, "{tier}");
    assert!(
        tier["remote_messages"].as_u64().unwrap() > MESSAGES / 2,
        "{tier}"
    );
    let segments = tier["segments"].as_u64().unwrap();
    let keys = list_keys(&moto.endpoint, "t1/stations/").await;
    assert_eq!(
        keys.len() as u64,
        segments,
        "objects in the bucket: {keys:?}"
    );
    assert!(keys.iter().all(|k| k.ends_with(".seg")), "{keys:?}");

    // STREAM.INFO says the same.
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.state.messages, MESSAGES);
    assert_eq!(info.state.first_sequence, 1);

    // A consumer from sequence 1 gets every message, in order.
    let started = std::time::Instant::now();
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
    for want in 1..=MESSAGES {
        let m = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .unwrap_or_else(|_| panic!("no message {want} within 20 s"))
            .unwrap()
            .unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        replayed.update(&m.payload);
    }
    assert_eq!(replayed.finalize(), published, "SHA-256 over the payloads");
    eprintln!("replayed {MESSAGES} from seq 1 in {:?}", started.elapsed());

    // MSG.GET of remote sequences.
    let local_first = tier["local_first_seq"].as_u64().unwrap();
    for seq in [
        1,
        2,
        local_first / 3,
        local_first / 2,
        local_first - 1,
        local_first,
        MESSAGES,
    ] {
        let m = s.get_raw_message(seq).await.unwrap();
        assert_eq!(m.sequence, seq);
        assert_eq!(&m.payload[..], &payload(seq)[..], "MSG.GET {seq}");
        assert_eq!(m.subject.as_str(), format!("tiered.k{}", seq % 10));
    }

    // A consumer by start time, at a remote message's time, starts there.
    let target = local_first / 2;
    let at = s.get_raw_message(target).await.unwrap().time;
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("by_time".into()),
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: at },
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = c.fetch().max_messages(3).messages().await.unwrap();
    let first = batch.next().await.unwrap().unwrap();
    let first_seq = first.info().unwrap().stream_sequence;
    // Times are stored in ns; messages stored in the same ns share one.
    assert!(
        first_seq <= target,
        "started at {first_seq}, target {target}"
    );
    let first_time = s.get_raw_message(first_seq).await.unwrap().time;
    assert_eq!(first_time, at, "started at a message of another time");
    assert_eq!(&first.payload[..], &payload(first_seq)[..]);

    // HTTP browse from sequence 1 and by time, and one message by sequence.
    let page: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{http_port}/v1/stations/TIERED/messages?from_seq=1&limit=50"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "{page}");
    let filtered: serde_json::Value = http
        .get(format!(
            "http://127.0.0.1:{http_port}/v1/stations/TIERED/messages?from_seq=1&limit=5&subject=tiered.k3"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let seqs: Vec<u64> = filtered["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 13, 23, 33, 43], "{filtered}");
    let one = http
        .get(format!(
            "http://127.0.0.1:{http_port}/v1/stations/TIERED/messages/7"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    let one: serde_json::Value = one.json().await.unwrap();
    assert_eq!(one["seq"], 7);

    // The metrics show the tier.
    let metrics = http
        .get(format!("http://127.0.0.1:{http_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("junction_station_tier_segments{") && l.contains("TIERED"))
        .unwrap_or_else(|| panic!("no tier segments metric in:\n{metrics}"));
    assert!(line.ends_with(&format!(" {segments}")), "{line}");
    assert!(metrics.contains("junction_tier_uploads_total"), "{metrics}");

    junction.start_kill().unwrap();
    let _ = junction.wait().await;
}
