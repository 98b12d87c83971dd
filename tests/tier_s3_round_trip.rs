//! Tiered storage against real S3 servers (moto's server mode and Ceph RGW): a station
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
//! The round trip, the outage and the cap on un-uploaded bytes also run on
//! Ceph RGW (`scripts/rgw`), with radosgw killed rather than hung.
//!
//! The servers are found as tests/support/s3.rs says. Without one the test
//! says so and passes, unless `REQUIRE_MOTO` / `REQUIRE_RGW` is set (as
//! `scripts/test` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;
use crate::support::s3;

use s3::S3;

const MESSAGES: u64 = 4000;
const PAYLOAD: usize = 1024;
const SEGMENT_BYTES: u64 = 128 * 1024;
const LOCAL_MAX_BYTES: u64 = 256 * 1024;

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
    _dir: tempfile::TempDir,
    nats_port: u16,
    http_port: u16,
}

/// A broker with `[tier]` on moto's bucket under `prefix`.
async fn start_broker(moto: &S3, prefix: &str) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, http_port) = (process::free_port(), process::free_port());
    start_in(moto, prefix, dir, nats_port, http_port).await
}

/// Kills the broker (SIGKILL: no clean shutdown) and starts it again on the
/// same data directory and ports.
async fn crash_and_restart(broker: Broker, moto: &S3, prefix: &str) -> Broker {
    let Broker {
        mut child,
        _dir: dir,
        nats_port,
        http_port,
    } = broker;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    start_in(moto, prefix, dir, nats_port, http_port).await
}

/// `junction serve` on `dir`, NATS and HTTP on these ports (no MQTT), with `env`.
fn serve(
    dir: &std::path::Path,
    nats_port: u16,
    http_port: u16,
    env: &[(&'static str, String)],
) -> tokio::process::Command {
    let data = dir.join("data");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    process::junction(
        dir,
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
        &env,
    )
}

async fn start_in(
    moto: &S3,
    prefix: &str,
    dir: tempfile::TempDir,
    nats_port: u16,
    http_port: u16,
) -> Broker {
    let mut env = moto.tier_env(prefix);
    env.push(("JUNCTION_TIER_CACHE_BYTES", "4MiB".into()));
    env.push(("RUST_LOG", "error".into()));
    let child = serve(dir.path(), nats_port, http_port, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("junction starts");
    process::wait_listening(nats_port).await;
    process::wait_listening(http_port).await;
    Broker {
        child,
        _dir: dir,
        nats_port,
        http_port,
    }
}

/// The tiered stream `TIERED` on `tiered.>`.
async fn create_tiered_stream(js: &jetstream::Context) -> stream::Stream {
    create_tiered_stream_with(js, SEGMENT_BYTES, LOCAL_MAX_BYTES).await
}

/// [`create_tiered_stream`] with other segment and local sizes.
async fn create_tiered_stream_with(
    js: &jetstream::Context,
    segment_bytes: u64,
    local_max_bytes: u64,
) -> stream::Stream {
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", segment_bytes.to_string()),
        ("junction.tier.local_max_bytes", local_max_bytes.to_string()),
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
    .unwrap()
}

/// Publishes `from..=to` (every one acked, 200 in flight), adding the payloads
/// to `digest`.
async fn publish(js: &jetstream::Context, from: u64, to: u64, digest: &mut Sha256) {
    let mut seq = from;
    while seq <= to {
        let mut acks = Vec::new();
        for s in seq..(seq + 200).min(to + 1) {
            let p = payload(s);
            digest.update(&p);
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
}

/// The station's `state.tier` once nothing is left to upload (a hang guard of
/// 30 s).
async fn caught_up(http: &reqwest::Client, http_port: u16, messages: u64) -> serde_json::Value {
    caught_up_with(http, http_port, messages, SEGMENT_BYTES).await
}

/// [`caught_up`] for a station with segments of `segment_bytes` (a hang guard
/// of 30 s plus 1 s per 10,000 messages).
async fn caught_up_with(
    http: &reqwest::Client,
    http_port: u16,
    messages: u64,
    segment_bytes: u64,
) -> serde_json::Value {
    let info_url = format!("http://127.0.0.1:{http_port}/v1/stations/TIERED");
    let deadline = std::time::Instant::now() + Duration::from_secs(30 + messages / 10_000);
    loop {
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
            assert_eq!(info["state"]["messages"], messages, "{info}");
            assert_eq!(info["state"]["first_seq"], 1, "{info}");
            assert_eq!(info["tier"]["segment_bytes"], segment_bytes, "{info}");
            return tier;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "uploads did not catch up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_station_round_trips_through_s3() {
    let Some(moto) = s3::moto().await else { return };
    round_trip(&moto).await;
}

/// The same round trip on Ceph RGW, which checks signatures and answers a
/// conditional write on an existing key with 412: uploads start only after the
/// start-up probe saw that, so objects in the bucket prove RGW passed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_station_round_trips_through_ceph_rgw() {
    let Some(rgw) = s3::rgw().await else { return };
    round_trip(&rgw).await;
}

async fn round_trip(moto: &S3) {
    // TIER_ROUND_TRIP_MESSAGES (by hand: the 1 M) scales the run, with
    // segments and the local limit grown so that about 250 segments are
    // uploaded; CI runs 4,000.
    let count: u64 = std::env::var("TIER_ROUND_TRIP_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES);
    let segment_bytes = SEGMENT_BYTES.max(count * PAYLOAD as u64 / 250);
    let local_max_bytes = 2 * segment_bytes;
    let broker = start_broker(moto, "t1").await;
    let (nats_port, http_port) = (broker.nats_port, broker.http_port);
    let client = async_nats::connect(format!("127.0.0.1:{nats_port}"))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let mut s = create_tiered_stream_with(&js, segment_bytes, local_max_bytes).await;

    // Publish, every message acked.
    let started = std::time::Instant::now();
    let mut published = Sha256::new();
    publish(&js, 1, count, &mut published).await;
    let published = published.finalize();
    eprintln!("published {count} x {PAYLOAD} B in {:?}", started.elapsed());

    // Uploads catch up: nothing left to upload, the local share bounded.
    let http = reqwest::Client::new();
    let tier = caught_up_with(&http, http_port, count, segment_bytes).await;
    eprintln!("tier state after {:?}: {tier}", started.elapsed());
    let local_bytes = tier["local_bytes"].as_u64().unwrap();
    assert!(
        local_bytes <= local_max_bytes + segment_bytes + 2 * PAYLOAD as u64,
        "local share not bounded: {tier}"
    );
    assert!(tier["local_first_seq"].as_u64().unwrap() > 1, "{tier}");
    assert!(
        tier["remote_messages"].as_u64().unwrap() > count / 2,
        "{tier}"
    );
    let segments = tier["segments"].as_u64().unwrap();
    let keys = moto.list_segments("t1/stations/").await;
    assert_eq!(
        keys.len() as u64,
        segments,
        "objects in the bucket: {keys:?}"
    );
    assert!(keys.iter().all(|k| k.ends_with(".seg")), "{keys:?}");

    // STREAM.INFO says the same.
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.state.messages, count);
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
    for want in 1..=count {
        let m = tokio::time::timeout(Duration::from_secs(20), messages.next())
            .await
            .unwrap_or_else(|_| panic!("no message {want} within 20 s"))
            .unwrap()
            .unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        replayed.update(&m.payload);
    }
    assert_eq!(replayed.finalize(), published, "SHA-256 over the payloads");
    eprintln!("replayed {count} from seq 1 in {:?}", started.elapsed());
    // The replay read every remote block from S3 once (misses), and most
    // reads of them from the read cache (hits): counted per station.
    let after = station_state(&http, http_port, "TIERED").await["tier"].clone();
    let (hits, misses) = (
        after["cache_hits"].as_u64().unwrap(),
        after["cache_misses"].as_u64().unwrap(),
    );
    assert!(misses >= 1 && hits >= misses, "{after}");
    let metrics = http
        .get(format!("http://127.0.0.1:{http_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("junction_station_tier_cache_misses_total{")
                && l.contains("station=\"TIERED\"")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // The station's manifest was written (after the uploads), never refused.
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(counter("junction_tier_manifest_writes_total") >= 1);
    assert_eq!(counter("junction_tier_manifest_conflicts_total"), 0);
    assert_eq!(counter("junction_tier_manifest_errors_total"), 0);

    // MSG.GET of remote sequences.
    let local_first = tier["local_first_seq"].as_u64().unwrap();
    for seq in [
        1,
        2,
        local_first / 3,
        local_first / 2,
        local_first - 1,
        local_first,
        count,
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

    // After a crash, the remote index is read back from the store: the same
    // totals, and remote messages still read.
    let broker = crash_and_restart(broker, moto, "t1").await;
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let mut s = js.get_stream("TIERED").await.unwrap();
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.state.messages, count);
    assert_eq!(info.state.first_sequence, 1);
    for seq in [1, local_first / 2, count] {
        let m = s.get_raw_message(seq).await.unwrap();
        assert_eq!(
            &m.payload[..],
            &payload(seq)[..],
            "MSG.GET {seq} after a restart"
        );
    }
    let mut child = broker.child;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// With the S3 server hung: publishes are acked as before and nothing that was
/// not uploaded leaves local disk; reads of remote messages fail as
/// unavailable (HTTP 503, JetStream 503) instead of "not found"; a consumer
/// from sequence 1 waits rather than skipping to the local log. Once S3
/// answers again, the consumer gets every message in order and the upload lag
/// drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_never_skips_or_drops_and_recovers() {
    let Some(moto) = s3::moto().await else { return };
    outage(&moto, Outage::Hang).await;
}

/// The outage on Ceph RGW: radosgw is killed (connections refused) for
/// 60 s while a publisher goes on with acks; then it is started again. Every
/// acked message replays, in order, and the upload lag drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rgw_down_for_60_s_while_publishing_loses_and_skips_nothing() {
    let Some(rgw) = s3::rgw().await else { return };
    outage(&rgw, Outage::GatewayDown(Duration::from_secs(60))).await;
}

/// How the S3 server goes away.
#[derive(Clone, Copy)]
enum Outage {
    /// It takes connections and answers nothing (SIGSTOP), while 400 messages
    /// are published.
    Hang,
    /// RGW's gateway is killed, and messages are published for this long.
    GatewayDown(Duration),
}

async fn outage(moto: &S3, how: Outage) {
    const FIRST: u64 = 1000;
    let broker = start_broker(moto, "t2").await;
    let http_port = broker.http_port;
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let s = create_tiered_stream(&js).await;
    let mut published = Sha256::new();
    publish(&js, 1, FIRST, &mut published).await;
    let http = reqwest::Client::new();
    let before = caught_up(&http, http_port, FIRST).await;
    assert!(before["local_first_seq"].as_u64().unwrap() > 1, "{before}");

    // Publishing goes on, acked, and nothing is removed locally meanwhile.
    let during = match how {
        Outage::Hang => {
            moto.hang();
            publish(&js, FIRST + 1, FIRST + 400, &mut published).await;
            400
        }
        Outage::GatewayDown(long) => {
            moto.kill_gateway().await;
            // 50 messages a second (20 per 400 ms) for as long as it is down.
            let until = std::time::Instant::now() + long;
            let mut next = FIRST + 1;
            while std::time::Instant::now() < until {
                publish(&js, next, next + 19, &mut published).await;
                next += 20;
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            next - FIRST - 1
        }
    };
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("replay".into()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let msg_get = s.get_raw_message(1);
    let http_get = http
        .get(format!(
            "http://127.0.0.1:{http_port}/v1/stations/TIERED/messages/2"
        ))
        .send();
    let fetch = async {
        let mut batch = c
            .fetch()
            .max_messages(10)
            .expires(Duration::from_secs(3))
            .messages()
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(m) = batch.next().await {
            got.push(m.unwrap().info().unwrap().stream_sequence);
        }
        got
    };
    let (msg_get, http_get, got) = tokio::join!(msg_get, http_get, fetch);
    let e = msg_get.expect_err("a remote MSG.GET with S3 down");
    // nats-server's 503 for a JetStream that cannot answer now, not 404.
    assert!(e.to_string().contains("error code 10008"), "{e}");
    let http_get = http_get.unwrap();
    assert_eq!(http_get.status(), 503);
    let body: serde_json::Value = http_get.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tier_unavailable", "{body}");
    assert!(
        got.is_empty(),
        "delivered {got:?} while its first message could not be read"
    );
    let info: serde_json::Value = http
        .get(format!("http://127.0.0.1:{http_port}/v1/stations/TIERED"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tier = &info["state"]["tier"];
    assert_eq!(info["state"]["messages"], FIRST + during, "{info}");
    assert!(
        tier["upload_lag_messages"].as_u64().unwrap() >= during,
        "{info}"
    );
    assert_eq!(
        tier["local_first_seq"], before["local_first_seq"],
        "trimmed while S3 was down: {info}"
    );

    match how {
        Outage::Hang => moto.unhang(),
        Outage::GatewayDown(_) => moto.restart_gateway().await,
    }
    let mut replayed = Sha256::new();
    let mut messages = c.messages().await.unwrap();
    for want in 1..=FIRST + during {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap_or_else(|_| panic!("no message {want} within 30 s of S3 being back"))
            .unwrap()
            .unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        replayed.update(&m.payload);
    }
    assert_eq!(replayed.finalize(), published.finalize());
    caught_up(&http, http_port, FIRST + during).await;
    let mut child = broker.child;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// A flipped byte in a segment object is a clear error and a metric, never a
/// message with other bytes; the other segments still read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segment_is_an_error_and_a_metric_never_data() {
    const N: u64 = 1000;
    let Some(moto) = s3::moto().await else { return };
    let broker = start_broker(&moto, "t3").await;
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let js = jetstream::new(client);
    create_tiered_stream(&js).await;
    publish(&js, 1, N, &mut Sha256::new()).await;
    let http = reqwest::Client::new();
    caught_up(&http, broker.http_port, N).await;
    let mut keys = moto.list_segments("t3/stations/").await;
    keys.sort();
    assert!(keys.len() >= 2, "{keys:?}");
    // The first segment (sequence 1 on): one byte flipped inside its first block.
    moto.rewrite(&keys[0], |object| object[200] ^= 0x01).await;
    // A fresh cache: the next reads go to the bucket.
    let broker = crash_and_restart(broker, &moto, "t3").await;
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let s = jetstream::new(client).get_stream("TIERED").await.unwrap();
    let e = s
        .get_raw_message(1)
        .await
        .expect_err("a corrupt remote block");
    assert!(e.to_string().contains("error code 10077"), "{e}");
    let r = http
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/TIERED/messages/1",
            broker.http_port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "corrupt_record", "{body}");
    // The second segment is intact.
    let second: u64 = keys[1]
        .rsplit('/')
        .next()
        .and_then(|name| name.split('-').next())
        .and_then(|first| first.parse().ok())
        .unwrap_or_else(|| panic!("first sequence in {}", keys[1]));
    let m = s.get_raw_message(second).await.unwrap();
    assert_eq!(&m.payload[..], &payload(second)[..]);
    let metrics = http
        .get(format!("http://127.0.0.1:{}/metrics", broker.http_port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let corrupt: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("junction_tier_corrupt_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no junction_tier_corrupt_total in:\n{metrics}"));
    assert!(corrupt >= 1, "junction_tier_corrupt_total {corrupt}");
    let mut child = broker.child;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// Over HTTP: a station's `tier` policy is checked and shown back, and an HTTP
/// consumer group (with a subject filter) and a browse by time read the remote
/// range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tier_policy_and_group_fetch_read_the_remote_range() {
    const N: u64 = 1000;
    let Some(moto) = s3::moto().await else { return };
    let broker = start_broker(&moto, "t4").await;
    let base = format!("http://127.0.0.1:{}/v1", broker.http_port);
    let http = reqwest::Client::new();
    let post = |url: String, body: serde_json::Value| {
        let http = http.clone();
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // A policy that cannot be used is refused, naming the field.
    let (status, body) = post(
        format!("{base}/stations"),
        serde_json::json!({"name": "TIERED", "subjects": ["tiered.>"],
                           "tier": {"segment_bytes": 10}}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tier.segment_bytes"),
        "{body}"
    );
    let (status, body) = post(
        format!("{base}/stations"),
        serde_json::json!({"name": "TIERED", "subjects": ["tiered.>"],
                           "tier": {"segment_bytes": SEGMENT_BYTES, "local_max_bytes": LOCAL_MAX_BYTES,
                                    "segment_max_age_ms": 1000}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tier"]["segment_bytes"], SEGMENT_BYTES, "{body}");
    assert_eq!(body["tier"]["local_max_age_ms"], 0, "{body}");

    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let js = jetstream::new(client);
    publish(&js, 1, N, &mut Sha256::new()).await;
    let tier = caught_up(&http, broker.http_port, N).await;
    let local_first = tier["local_first_seq"].as_u64().unwrap();
    assert!(local_first > 100, "{tier}");

    // An HTTP group on one subject, from the start: every 10th message.
    let (status, body) = post(
        format!("{base}/stations/TIERED/groups"),
        serde_json::json!({"name": "k7", "deliver_policy": "all", "ack_policy": "none",
                           "filter_subjects": ["tiered.k7"]}),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let mut seqs = Vec::new();
    while seqs.len() < (N / 10) as usize {
        let (status, body) = post(
            format!("{base}/stations/TIERED/groups/k7/fetch"),
            serde_json::json!({"batch": 50, "max_wait_ms": 5000}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let got = body["messages"].as_array().unwrap();
        assert!(
            !got.is_empty(),
            "nothing fetched after {} messages",
            seqs.len()
        );
        for m in got {
            seqs.push(m["seq"].as_u64().unwrap());
        }
    }
    let want: Vec<u64> = (1..=N).filter(|s| s % 10 == 7).collect();
    assert_eq!(seqs, want);

    // A browse from a remote message's time starts at that message.
    let target = local_first / 2;
    let one: serde_json::Value = http
        .get(format!("{base}/stations/TIERED/messages/{target}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let time = one["time"].as_str().unwrap().replace('+', "%2B");
    let page: serde_json::Value = http
        .get(format!(
            "{base}/stations/TIERED/messages?from_time={time}&limit=3"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = page["messages"][0]["seq"].as_u64().unwrap();
    assert!(first <= target, "{page}");
    assert_eq!(page["messages"][0]["time"], one["time"], "{page}");
    let mut child = broker.child;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// The station's state from HTTP.
async fn station_state(http: &reqwest::Client, http_port: u16, name: &str) -> serde_json::Value {
    http.get(format!("http://127.0.0.1:{http_port}/v1/stations/{name}"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["state"]
        .clone()
}

/// Waits until `pred` holds for the station's state (a hang guard of 60 s).
async fn until_state(
    http: &reqwest::Client,
    http_port: u16,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = station_state(http, http_port, name).await;
        if pred(&state) {
            return state;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the bucket holds `want(n)` segment objects under `prefix`.
async fn until_objects(s3: &S3, prefix: &str, what: &str, want: impl Fn(usize) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let keys = s3.list_segments(prefix).await;
        if want(keys.len()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {} objects",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Remote segments obey the station's own limits (counted over local and
/// remote messages), purges and deletes: the bucket keeps only what the
/// station still holds, and nothing purged is read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_segments_follow_the_station_limits_purges_and_delete() {
    const N: u64 = 3000;
    const MAX_MSGS: u64 = 1500;
    let Some(moto) = s3::moto().await else { return };
    let broker = start_broker(&moto, "t5").await;
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
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
            max_messages: MAX_MSGS as i64,
            metadata,
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, 1, N, &mut Sha256::new()).await;
    let http = reqwest::Client::new();
    let port = broker.http_port;

    // max_msgs over local and remote: whole remote segments go, so the
    // station keeps at least MAX_MSGS and at most one segment more.
    let per_segment = SEGMENT_BYTES / PAYLOAD as u64 + 1;
    let state = until_state(
        &http,
        port,
        "TIERED",
        "remote segments past max_msgs dropped",
        |st| {
            st["tier"]["upload_lag_messages"] == 0
                && st["messages"].as_u64().unwrap() <= MAX_MSGS + per_segment
        },
    )
    .await;
    let messages = state["messages"].as_u64().unwrap();
    let first = state["first_seq"].as_u64().unwrap();
    eprintln!("after max_msgs = {MAX_MSGS}: {state}");
    assert!(messages >= MAX_MSGS, "{state}");
    assert_eq!(
        first + messages - 1,
        N,
        "contiguous up to the last: {state}"
    );
    assert!(
        state["tier"]["remote_messages"].as_u64().unwrap() > 0,
        "some still remote: {state}"
    );
    let segments = state["tier"]["segments"].as_u64().unwrap() as usize;
    until_objects(
        &moto,
        "t5/stations/",
        "dropped segments' objects deleted",
        |n| n == segments,
    )
    .await;
    // A consumer from the start gets exactly what is kept, from `first`.
    let consumer = s
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < messages {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .expect("every kept message is delivered")
            .unwrap()
            .unwrap();
        seqs.push(m.info().unwrap().stream_sequence);
    }
    assert_eq!(seqs.first(), Some(&first));
    assert_eq!(seqs.last(), Some(&N));
    drop(msgs);

    // A purge up to a sequence inside the remote range: nothing below it is
    // read back, what is above still is.
    let local_first = state["tier"]["local_first_seq"].as_u64().unwrap();
    let cut = first + (local_first - first) / 2;
    s.purge().sequence(cut).await.unwrap();
    assert!(s.get_raw_message(cut - 1).await.is_err(), "purged");
    assert_eq!(
        s.get_raw_message(cut).await.unwrap().sequence,
        cut,
        "kept, from the bucket"
    );
    let state = station_state(&http, port, "TIERED").await;
    assert_eq!(state["first_seq"], cut, "{state}");
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.state.first_sequence, cut);

    // A purge by subject cannot reach the remote range: refused, nothing lost.
    let refused = s.purge().filter("tiered.k1").await;
    assert!(refused.is_err(), "refused: {refused:?}");
    assert_eq!(station_state(&http, port, "TIERED").await["first_seq"], cut);

    // Purge everything: the bucket empties.
    s.purge().await.unwrap();
    let state = station_state(&http, port, "TIERED").await;
    assert_eq!(state["messages"], 0, "{state}");
    until_objects(
        &moto,
        "t5/stations/",
        "purged segments' objects deleted",
        |n| n == 0,
    )
    .await;

    // New messages tier again; deleting the station deletes them.
    publish(&js, N + 1, N + 600, &mut Sha256::new()).await;
    until_objects(&moto, "t5/stations/", "new segments uploaded", |n| n > 0).await;
    js.delete_stream("TIERED").await.unwrap();
    until_objects(
        &moto,
        "t5/stations/",
        "a deleted station's objects deleted",
        |n| n == 0,
    )
    .await;
    drop(broker);
}

/// With S3 down and `tier.max_pending_bytes` small, publishes are refused with
/// the documented error (JetStream 10047, HTTP 507 `storage_full`) once that
/// much waits to be uploaded; nothing acked is lost, and publishing resumes on
/// its own once S3 is back and the uploads catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_on_unuploaded_bytes_refuses_publishes_while_s3_is_down_and_recovers() {
    let Some(moto) = s3::moto().await else { return };
    capped(&moto).await;
}

/// The watermark test on Ceph RGW: with radosgw down (connections
/// refused) and a small cap, publishes are refused with the documented error,
/// and publishing recovers on its own once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rgw_down_with_a_small_cap_refuses_publishes_then_recovers() {
    let Some(rgw) = s3::rgw().await else { return };
    capped(&rgw).await;
}

async fn capped(moto: &S3) {
    const CAP: u64 = 256 * 1024;
    let rgw = moto.is_rgw();
    let broker = start_broker(moto, "t6").await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}/v1", broker.http_port);
    let r = http
        .post(format!("{base}/stations"))
        .json(
            &serde_json::json!({"name": "TIERED", "subjects": ["tiered.>"],
            "tier": {"segment_bytes": SEGMENT_BYTES, "local_max_bytes": LOCAL_MAX_BYTES,
                     "segment_max_age_ms": 1000, "max_pending_bytes": CAP}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tier"]["max_pending_bytes"], CAP, "{body}");
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let s = js.get_stream("TIERED").await.unwrap();
    let config = s.cached_info().config.clone();
    assert_eq!(
        config.metadata["junction.tier.max_pending_bytes"],
        CAP.to_string(),
        "STREAM.INFO shows the cap"
    );

    if rgw {
        moto.kill_gateway().await;
    } else {
        moto.hang();
    }
    // Publish one by one until refused: acked ones are kept, the refusal says why.
    let mut acked = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let refusal = loop {
        match js
            .publish(format!("tiered.k{}", acked % 10), payload(acked + 1).into())
            .await
            .unwrap()
            .await
        {
            Ok(ack) => {
                acked += 1;
                assert_eq!(ack.sequence, acked);
            }
            Err(e) => break e.to_string(),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never refused after {acked} acked"
        );
    };
    assert!(refusal.contains("10047"), "{refusal}");
    assert!(
        acked * PAYLOAD as u64 >= CAP,
        "refused only past the cap: {acked} acked"
    );
    let r = http
        .post(format!("{base}/subjects/tiered.http"))
        .body("refused")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 507);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not yet uploaded to S3 (tier.max_pending_bytes = 262144)"),
        "{body}"
    );

    // S3 is back: the uploads catch up and publishing resumes by itself (an
    // upload caught mid-request by the outage waits out its 30 s timeout, and
    // retries back off up to 30 s).
    if rgw {
        moto.restart_gateway().await;
    } else {
        moto.unhang();
    }
    let back = std::time::Instant::now();
    let deadline = back + Duration::from_secs(150);
    let resumed = loop {
        match js
            .publish("tiered.after", "after".into())
            .await
            .unwrap()
            .await
        {
            Ok(ack) => break ack.sequence,
            Err(_) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "publishing never resumed"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(resumed, acked + 1, "nothing refused was stored");
    eprintln!(
        "{acked} acked before the cap; publishing resumed {:?} after S3 came back",
        back.elapsed()
    );
    // Every acked message reads back, in order.
    let c = s
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut msgs = c.messages().await.unwrap();
    for want in 1..=acked {
        let m = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .expect("every acked message replays")
            .unwrap()
            .unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        assert_eq!(&m.payload[..], &payload(want)[..]);
    }
    drop(broker);
}

/// An S3 endpoint in front of `upstream` that drops every request's
/// `If-None-Match` header, as Garage ignores it: a conditional write then
/// overwrites. (moto checks no signatures, so the edited requests still pass.)
async fn strip_if_none_match(upstream: String) -> String {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut requests = BufReader::new(client_read);
                loop {
                    // One request: its head, less If-None-Match, then its body.
                    let mut head = String::new();
                    let mut length = 0u64;
                    loop {
                        let mut line = String::new();
                        if requests.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        assert!(
                            !lower.starts_with("transfer-encoding:"),
                            "the proxy handles sized bodies only"
                        );
                        if !lower.starts_with("if-none-match:") {
                            head.push_str(&line);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    if server_write.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut body = (&mut requests).take(length);
                    if tokio::io::copy(&mut body, &mut server_write).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    endpoint
}

/// Pointed at a server that overwrites an object written with
/// `If-None-Match: *`, the broker says so in its log and uploads nothing, so a
/// retried upload can never replace a segment; every message stays local and
/// readable, and publishing goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_overwrites_conditional_writes_gets_no_uploads() {
    const N: u64 = 1000;
    let Some(moto) = s3::moto().await else { return };
    let endpoint = strip_if_none_match(moto.endpoint.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let (nats_port, http_port) = (process::free_port(), process::free_port());
    let mut env = moto.tier_env("t7");
    env[0].1 = endpoint;
    env.push(("RUST_LOG", "warn".into()));
    let mut child = serve(dir.path(), nats_port, http_port, &env)
        .stdout(Stdio::null())
        .spawn()
        .expect("junction starts");
    let mut log = tokio::io::BufReader::new(child.stderr.take().unwrap());
    process::wait_listening(nats_port).await;
    process::wait_listening(http_port).await;
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{nats_port}"))
            .await
            .unwrap(),
    );
    let s = create_tiered_stream(&js).await;
    let mut published = Sha256::new();
    publish(&js, 1, N, &mut published).await;

    // The probe's verdict, in the log.
    let said = tokio::time::timeout(Duration::from_secs(60), async {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        loop {
            line.clear();
            if log.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            if line.contains("overwrote an object written with If-None-Match") {
                return true;
            }
        }
    })
    .await
    .expect("the probe's error within 60 s");
    assert!(said, "the broker's log ended without the probe's error");
    // Nothing was uploaded, and nothing left the local log.
    let http = reqwest::Client::new();
    let state = station_state(&http, http_port, "TIERED").await;
    assert_eq!(state["tier"]["upload_lag_messages"], N, "{state}");
    assert_eq!(state["tier"]["local_first_seq"], 1, "{state}");
    assert_eq!(state["tier"]["segments"], 0, "{state}");
    // Only the probe's object was ever written, and it was deleted.
    assert_eq!(moto.list_keys("t7").await, Vec::<String>::new());
    // Everything reads back from the local log.
    let c = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("all".into()),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = c.messages().await.unwrap();
    let mut replayed = Sha256::new();
    for want in 1..=N {
        let m = messages.next().await.unwrap().unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        replayed.update(&m.payload);
    }
    assert_eq!(replayed.finalize(), published.finalize());
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// SIGKILL at random points while segments upload, local copies are trimmed
/// and remote segments are dropped by the station's `max_messages`, 20
/// times: every acked message the limit keeps is there exactly once, with its
/// payload, and after the last start (whose reconciler pass knows no upload
/// of its own is under way) the bucket holds exactly the indexed segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_uploads_and_deletes_loses_nothing_and_leaves_no_orphans() {
    const CYCLES: u64 = 20;
    const PER_CYCLE: u64 = 300;
    const KEEP: u64 = 3000;
    let Some(moto) = s3::moto().await else { return };
    let mut broker = start_broker(&moto, "t8").await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://127.0.0.1:{}/v1/stations", broker.http_port))
        .json(
            &serde_json::json!({"name": "TIERED", "subjects": ["tiered.>"],
            "retention": {"max_msgs": KEEP},
            "tier": {"segment_bytes": SEGMENT_BYTES, "local_max_bytes": LOCAL_MAX_BYTES,
                     "segment_max_age_ms": 200}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    let mut published = 0u64;
    for cycle in 0..CYCLES {
        let js = jetstream::new(
            async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
                .await
                .unwrap(),
        );
        publish(
            &js,
            published + 1,
            published + PER_CYCLE,
            &mut Sha256::new(),
        )
        .await;
        published += PER_CYCLE;
        // Somewhere in the uploads, trims and drops this batch set off.
        tokio::time::sleep(Duration::from_millis(50 + (cycle * 137) % 700)).await;
        broker = crash_and_restart(broker, &moto, "t8").await;
    }

    // Everything kept, once, in order, with its payload.
    let state = until_state(
        &http,
        broker.http_port,
        "TIERED",
        "uploads caught up",
        |st| st["tier"]["upload_lag_messages"] == 0,
    )
    .await;
    assert_eq!(state["last_seq"], published, "{state}");
    let first = state["first_seq"].as_u64().unwrap();
    let kept = published - first + 1;
    assert_eq!(state["messages"], kept, "{state}");
    assert!(
        (KEEP..=KEEP + 2 * SEGMENT_BYTES / PAYLOAD as u64).contains(&kept),
        "max_messages = {KEEP} keeps at most a segment more: {state}"
    );
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
            .await
            .unwrap(),
    );
    let c = js
        .get_stream("TIERED")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("all".into()),
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = c.messages().await.unwrap();
    for want in first..=published {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap_or_else(|_| panic!("message {want} never came"))
            .unwrap()
            .unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, want);
        assert_eq!(
            m.payload.as_ref(),
            payload(want).as_slice(),
            "payload of {want}"
        );
    }
    let (tier, keys) = {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let tier = station_state(&http, broker.http_port, "TIERED").await["tier"].clone();
            let keys: Vec<String> = moto
                .list_keys("t8/stations/")
                .await
                .into_iter()
                .filter(|k| k.ends_with(".seg"))
                .collect();
            if tier["segments"].as_u64() == Some(keys.len() as u64) {
                break (tier, keys);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the bucket's {} segment objects never matched the index: {tier}",
                keys.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    assert!(!keys.is_empty(), "{tier}");
    let mut child = broker.child;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
