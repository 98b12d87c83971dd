//! A NATS KV bucket on a tiered station: a key written long ago, whose only
//! message was uploaded to S3 (moto's server mode) and removed from local
//! disk, is still read and counted, through the subject summaries of the
//! uploaded segments (docs/tiering.md, "The subject index of the remote
//! range"):
//!
//! - an async-nats KV get of it answers its value (a direct get), and so does
//!   `STREAM.MSG.GET` with `last_by_subj`; a key rewritten later answers its
//!   newest value, a key never written is not found, and a KV create of it is
//!   refused (`Nats-Expected-Last-Subject-Sequence` sees its last sequence);
//! - STREAM.INFO `num_subjects` (JetStream and HTTP) counts it, and the KV's
//!   `keys()` (a consumer delivering the last message per subject) and a
//!   batched direct get with `multi_last` list it;
//! - after a SIGKILL and a restart the same (the index is rebuilt from the
//!   summaries kept in the local store); with S3 hung, the get is an
//!   "unavailable" error (JetStream 10008), never "not found";
//! - after a purge up to a sequence past it, it is not found and not counted,
//!   although the segment holding it is still in the bucket; a KV update of
//!   another key only in the bucket, with its revision, is accepted.
//!
//! The server is found as tests/support/s3.rs says. Without one the test says
//! so and passes, unless `REQUIRE_MOTO` is set (as `scripts/test` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, kv};
use std::collections::HashMap;
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;
use crate::support::s3;

use s3::S3;

const BUCKET: &str = "CONFIG";
const STREAM: &str = "KV_CONFIG";
/// Keys written after A and B, once each.
const OTHER_KEYS: u64 = 400;
const VALUE_BYTES: usize = 512;

struct Broker {
    child: Child,
    dir: tempfile::TempDir,
    nats_port: u16,
    http_port: u16,
}

/// `junction serve` on `dir` with `[tier]` on moto under `prefix`, no disk
/// cache (so that a read after a restart goes to S3).
async fn start_in(s3: &S3, prefix: &str, dir: tempfile::TempDir, ports: (u16, u16)) -> Broker {
    let (nats_port, http_port) = ports;
    let env = [
        ("JUNCTION_TIER_DISK_CACHE_BYTES", "0".to_string()),
        ("RUST_LOG", "error".to_string()),
    ];
    let child = s3
        .junction(prefix, &env, dir.path(), &dir.path().join("data"), ports)
        .await;
    Broker {
        child,
        dir,
        nats_port,
        http_port,
    }
}

/// SIGKILL, then the same data directory and ports again.
async fn crash_and_restart(broker: Broker, s3: &S3, prefix: &str) -> Broker {
    let Broker {
        mut child,
        dir,
        nats_port,
        http_port,
    } = broker;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    start_in(s3, prefix, dir, (nats_port, http_port)).await
}

fn value(key: &str) -> Vec<u8> {
    let mut v = format!("{key}=").into_bytes();
    v.resize(VALUE_BYTES, b'v');
    v
}

async fn station_state(http: &reqwest::Client, port: u16) -> serde_json::Value {
    http.get(format!("http://127.0.0.1:{port}/v1/stations/{STREAM}"))
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
    port: u16,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = station_state(http, port).await;
        if pred(&state) {
            return state;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect(broker: &Broker) -> jetstream::Context {
    let client = async_nats::connect(format!("127.0.0.1:{}", broker.nats_port))
        .await
        .unwrap();
    let mut js = jetstream::new(client);
    // Longer than the broker's 5 s wait for S3, so that its answer arrives.
    js.set_timeout(Duration::from_secs(10));
    js
}

/// Every key of the bucket, as async-nats lists them (a hang guard of 30 s).
async fn all_keys(store: &kv::Store) -> Vec<String> {
    use futures::TryStreamExt;
    let keys = store.keys().await.unwrap();
    let mut keys: Vec<String> = tokio::time::timeout(Duration::from_secs(30), keys.try_collect())
        .await
        .expect("the keys are listed")
        .unwrap();
    keys.sort();
    keys
}

/// The sequences a batched direct get with `multi_last` answers for
/// `subjects`, up to its `204 EOB` (a hang guard of 10 s a message).
async fn multi_last(js: &jetstream::Context, subjects: &[&str]) -> Vec<u64> {
    use futures::StreamExt;
    let client = js.client();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    let body = serde_json::json!({ "multi_last": subjects });
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{STREAM}"),
            inbox,
            body.to_string().into(),
        )
        .await
        .unwrap();
    let mut seqs = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .expect("an answer")
            .unwrap();
        if m.status.is_some_and(|s| s.as_u16() == 204) {
            return seqs;
        }
        let seq = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Sequence"))
            .unwrap_or_else(|| panic!("a message, not {:?} {:?}", m.status, m.headers));
        seqs.push(seq.as_str().parse().unwrap());
    }
}

/// STREAM.INFO's `num_subjects`.
async fn num_subjects(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream(STREAM).await.unwrap();
    stream.info().await.unwrap().state.subjects_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_only_in_s3_is_read_counted_and_purged() {
    let Some(moto) = s3::moto().await else { return };
    let prefix = "kv";
    let broker = start_in(
        &moto,
        prefix,
        tempfile::tempdir().unwrap(),
        (process::free_port(), process::free_port()),
    )
    .await;
    let js = connect(&broker).await;
    let store = js
        .create_key_value(kv::Config {
            bucket: BUCKET.into(),
            history: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    // The bucket's stream tiered (16 KiB segments, 32 KiB kept locally), as
    // its metadata says.
    let mut config = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    config.metadata = [
        ("junction.tier.segment_bytes", "16384"),
        ("junction.tier.local_max_bytes", "32768"),
        ("junction.tier.segment_max_age_ms", "1000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect::<HashMap<_, _>>();
    js.update_stream(config).await.unwrap();

    // A first (sequence 1), B (2), then other keys, then B again.
    assert_eq!(store.put("A", value("A").into()).await.unwrap(), 1);
    assert_eq!(store.put("B", value("B-old").into()).await.unwrap(), 2);
    for i in 0..OTHER_KEYS {
        let key = format!("k{i:03}");
        store.put(&key, value(&key).into()).await.unwrap();
    }
    let b_new = store.put("B", value("B-new").into()).await.unwrap();
    assert_eq!(b_new, OTHER_KEYS + 3);
    let subjects = OTHER_KEYS + 2;

    // Everything uploaded, and the first ten messages (A's, B's first,
    // k000 .. k007) gone from local disk.
    let http = reqwest::Client::new();
    let state = until_state(&http, broker.http_port, "A uploaded and trimmed", |st| {
        st["tier"]["upload_lag_messages"] == 0
            && st["tier"]["local_first_seq"].as_u64().unwrap_or(0) > 10
    })
    .await;
    eprintln!("tiered: {state}");
    let segments = state["tier"]["segments"].as_u64().unwrap();

    let check_found = |js: jetstream::Context| async move {
        let store = js.get_key_value(BUCKET).await.unwrap();
        // A KV get (a direct get, the bucket allows it).
        let a = store.entry("A").await.unwrap().expect("A is found");
        assert_eq!(&a.value[..], &value("A")[..]);
        assert_eq!(a.revision, 1);
        assert_eq!(
            store.get("B").await.unwrap().as_deref(),
            Some(&value("B-new")[..]),
            "the newest value, the local one"
        );
        assert_eq!(store.get("never-written").await.unwrap(), None);
        // A KV create of it is refused: the key exists (its last sequence,
        // from the bucket, is not 0).
        assert!(store.create("A", "again".into()).await.is_err(), "A exists");
        // STREAM.MSG.GET with last_by_subj.
        let stream = js.get_stream(STREAM).await.unwrap();
        let m = stream
            .get_last_raw_message_by_subject("$KV.CONFIG.A")
            .await
            .unwrap();
        assert_eq!(m.sequence, 1);
        assert_eq!(&m.payload[..], &value("A")[..]);
        assert_eq!(num_subjects(&js).await, subjects);
        // KV keys (a consumer delivering the last message per subject).
        let keys = all_keys(&store).await;
        assert_eq!(keys.len() as u64, subjects, "{keys:?}");
        assert!(keys.contains(&"A".to_string()), "{keys:?}");
        // A batched direct get of the last messages of A and B.
        assert_eq!(
            multi_last(&js, &["$KV.CONFIG.A", "$KV.CONFIG.B"]).await,
            [1, b_new]
        );
    };
    check_found(js.clone()).await;
    assert_eq!(
        station_state(&http, broker.http_port).await["num_subjects"],
        subjects
    );

    // After a SIGKILL the index comes back from the local store.
    drop(js);
    let broker = crash_and_restart(broker, &moto, prefix).await;
    let js = connect(&broker).await;
    assert_eq!(num_subjects(&js).await, subjects);
    // S3 hung: the get cannot be answered now, and says so.
    moto.hang();
    let stream = js.get_stream(STREAM).await.unwrap();
    let e = stream
        .get_last_raw_message_by_subject("$KV.CONFIG.A")
        .await
        .expect_err("A cannot be read with S3 hung");
    moto.unhang();
    assert!(e.to_string().contains("error code 10008"), "{e}");
    check_found(js.clone()).await;

    // A purge up to sequence 2: A's message is below the station's remote
    // floor. Its segment (sequences 1 to about 28) stays in the bucket, and A
    // is still never answered.
    stream.purge().sequence(2).await.unwrap();
    let state = station_state(&http, broker.http_port).await;
    assert_eq!(state["first_seq"], 2, "{state}");
    assert_eq!(state["tier"]["segments"], segments, "{state}");
    let store = js.get_key_value(BUCKET).await.unwrap();
    assert_eq!(store.get("A").await.unwrap(), None, "purged");
    assert!(
        stream
            .get_last_raw_message_by_subject("$KV.CONFIG.A")
            .await
            .is_err(),
        "purged"
    );
    assert_eq!(num_subjects(&js).await, subjects - 1);
    assert_eq!(state["num_subjects"], subjects - 1, "{state}");
    let keys = all_keys(&store).await;
    assert_eq!(keys.len() as u64, subjects - 1, "{keys:?}");
    assert!(!keys.contains(&"A".to_string()), "{keys:?}");
    assert_eq!(
        multi_last(&js, &["$KV.CONFIG.A", "$KV.CONFIG.B"]).await,
        [b_new]
    );
    // The other keys written long ago are still there, and a KV update of
    // one with its revision (its sequence, in the bucket) is accepted.
    assert_eq!(
        store.get("k000").await.unwrap().as_deref(),
        Some(&value("k000")[..])
    );
    let k005 = store.entry("k005").await.unwrap().expect("k005");
    assert_eq!(k005.revision, 8);
    let rev = store
        .update("k005", "updated".into(), k005.revision)
        .await
        .unwrap();
    assert_eq!(rev, OTHER_KEYS + 4);
    assert_eq!(
        store.get("k005").await.unwrap().as_deref(),
        Some(&b"updated"[..])
    );
    assert_eq!(num_subjects(&js).await, subjects - 1);
    drop(broker);
}
