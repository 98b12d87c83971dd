//! A broker's disk is lost, and with it every station definition and remote
//! index; its segments and manifests are still in the bucket. An operator
//! starts a new broker on an empty data directory with the same `[tier]`,
//! finds the old station's manifest in `GET /v1/tier/manifests`, defines the
//! station again and adopts the manifest with `POST
//! /v1/stations/{station}/tier/adopt`:
//!
//! - a consumer from sequence 1 gets every message, in order, with its payload
//!   (SHA-256 over all), and the next publish gets the sequence after them;
//! - the old manifest leaves the bucket and the station's own lists the
//!   segments, so nobody adopts the same objects twice;
//! - what cannot be adopted is refused with the documented status: a station
//!   that has held messages (409), an unknown or already adopted id (404), a
//!   malformed id or the station's own (400), no such station (404);
//! - the adopted index survives a kill -9 and a restart.
//!
//! Runs on moto's server mode (tests/support/s3.rs); without it the test says
//! so and passes, unless `REQUIRE_MOTO` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

use crate::support::process;
use crate::support::s3;

const MESSAGES: u64 = 1200;
const PAYLOAD: usize = 1024;
const PREFIX: &str = "adopt";

/// A tiered station `name` on subjects `<name lowercase>.>`: small segments
/// sealed after half a second, little kept locally.
async fn define(js: &jetstream::Context, name: &str) {
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", (128 * 1024).to_string()),
        ("junction.tier.local_max_bytes", (256 * 1024).to_string()),
        ("junction.tier.segment_max_age_ms", "500".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        metadata,
        ..Default::default()
    })
    .await
    .unwrap();
}

async fn get(http: &reqwest::Client, port: u16, path: &str) -> (u16, Value) {
    let r = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn adopt(http: &reqwest::Client, port: u16, station: &str, uid: &str) -> (u16, Value) {
    let r = http
        .post(format!(
            "http://127.0.0.1:{port}/v1/stations/{station}/tier/adopt"
        ))
        .json(&json!({ "uid": uid }))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The manifests the broker lists, until `done` holds for them.
async fn manifests_until(
    http: &reqwest::Client,
    port: u16,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, v) = get(http, port, "/v1/tier/manifests").await;
        assert_eq!(status, 200, "{v}");
        let list = v["manifests"].as_array().cloned().unwrap();
        if done(&list) {
            return list;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_is_adopted_from_the_bucket_after_the_disk_was_lost() {
    let Some(moto) = s3::moto().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let lost = dir.path().join("lost");
    let fresh = dir.path().join("fresh");
    let ports = (process::free_port(), process::free_port());
    let http = reqwest::Client::new();

    // The first broker: 1,200 messages, every one uploaded, and the manifest
    // listing them all.
    let broker = moto.junction_at(PREFIX, dir.path(), &lost, ports).await;
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{}", ports.0))
            .await
            .unwrap(),
    );
    define(&js, "ARCHIVE").await;
    let mut published = Sha256::new();
    for seq in 1..=MESSAGES {
        let p = s3::payload(seq, PAYLOAD);
        published.update(&p);
        let ack = js
            .publish(format!("archive.k{}", seq % 10), p.into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, seq);
    }
    let published = published.finalize();
    let listed = manifests_until(
        &http,
        ports.1,
        "the manifest never listed every message",
        |l| l.len() == 1 && l[0]["last_seq"] == MESSAGES && l[0]["messages"] == MESSAGES,
    )
    .await;
    let old = listed[0]["uid"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["station"], "ARCHIVE", "{listed:?}");
    assert_eq!(listed[0]["tenant"], "$G", "{listed:?}");
    drop(js);
    s3::kill(broker).await;

    // The disk is lost.
    std::fs::remove_dir_all(&lost).unwrap();

    // A new broker on an empty data directory sees the old manifest, used by
    // no station of its own.
    let broker = moto.junction_at(PREFIX, dir.path(), &fresh, ports).await;
    let listed = manifests_until(&http, ports.1, "the old manifest is not listed", |l| {
        !l.is_empty()
    })
    .await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let m = &listed[0];
    assert_eq!(m["uid"], old.as_str());
    assert_eq!(m["station"], Value::Null, "{m}");
    assert_eq!(m["first_seq"], 1, "{m}");
    assert_eq!(m["last_seq"], MESSAGES, "{m}");
    assert!(m["segments"].as_u64().unwrap() >= 3, "{m}");
    assert!(
        m["first_time"].is_string() && m["last_time"].is_string(),
        "{m}"
    );
    let subjects: Vec<&str> = m["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"archive.k1"), "{m}");
    let segments = m["segments"].as_u64().unwrap();

    // What cannot be adopted.
    let (status, body) = adopt(&http, ports.1, "ARCHIVE", &old).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("station_not_found")),
        "{body}"
    );
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{}", ports.0))
            .await
            .unwrap(),
    );
    define(&js, "ARCHIVE").await;
    define(&js, "BUSY").await;
    js.publish("busy.x", "one".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let (status, body) = adopt(&http, ports.1, "BUSY", &old).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("adopt_conflict")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has held messages"),
        "{body}"
    );
    let (status, body) = adopt(&http, ports.1, "ARCHIVE", "0123456789abcdef").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("manifest_not_found")),
        "{body}"
    );
    let (status, body) = adopt(&http, ports.1, "ARCHIVE", "../other").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );

    // The adoption.
    let (status, body) = adopt(&http, ports.1, "ARCHIVE", &old).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["segments"], segments, "{body}");
    assert_eq!(body["skipped"], 0, "{body}");
    assert_eq!(body["messages"], MESSAGES, "{body}");
    assert_eq!(body["first_seq"], 1, "{body}");
    assert_eq!(body["last_seq"], MESSAGES, "{body}");
    assert_eq!(body["old_manifest_removed"], true, "{body}");
    // Once: the old manifest is gone, so no other station takes the objects.
    let (status, body) = adopt(&http, ports.1, "BUSY", &old).await;
    assert_eq!(status, 404, "{body}");
    let (_, station) = get(&http, ports.1, "/v1/stations/ARCHIVE").await;
    assert_eq!(station["state"]["first_seq"], 1, "{station}");
    assert_eq!(station["state"]["last_seq"], MESSAGES, "{station}");
    assert_eq!(station["state"]["messages"], MESSAGES, "{station}");
    assert_eq!(station["state"]["tier"]["segments"], segments, "{station}");

    // The next publish follows the adopted range.
    let ack = js
        .publish("archive.new", "after".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, MESSAGES + 1);

    // A consumer from sequence 1 gets everything, in order.
    let replay = |js: jetstream::Context, name: &'static str| async move {
        let s = js.get_stream("ARCHIVE").await.unwrap();
        let c = s
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.to_string()),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = c
            .stream()
            .max_messages_per_batch(200)
            .messages()
            .await
            .unwrap();
        let mut got = Sha256::new();
        for seq in 1..=MESSAGES + 1 {
            let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .unwrap_or_else(|_| panic!("no message {seq}"))
                .unwrap()
                .unwrap();
            assert_eq!(m.info().unwrap().stream_sequence, seq);
            if seq <= MESSAGES {
                assert_eq!(m.subject.as_str(), format!("archive.k{}", seq % 10));
                got.update(&m.payload);
            } else {
                assert_eq!(m.payload.as_ref(), b"after");
            }
        }
        drop(messages);
        s.delete_consumer(name).await.unwrap();
        got.finalize()
    };
    assert_eq!(
        replay(js.clone(), "replay1").await,
        published,
        "payloads after the adoption"
    );

    // The bucket lists the station's own manifest now, not the old one.
    let listed = manifests_until(&http, ports.1, "the station's own manifest", |l| {
        l.len() == 2 && l.iter().any(|m| m["station"] == "ARCHIVE")
    })
    .await;
    assert!(
        listed.iter().all(|m| m["uid"] != old.as_str()),
        "{listed:?}"
    );
    let own = listed.iter().find(|m| m["station"] == "ARCHIVE").unwrap();
    assert_eq!(own["first_seq"], 1, "{own}");
    assert!(own["segments"].as_u64().unwrap() >= segments, "{own}");
    let (status, body) = adopt(&http, ports.1, "ARCHIVE", own["uid"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );

    // kill -9 and a restart: the adopted index is on disk.
    drop(js);
    s3::kill(broker).await;
    let broker = moto.junction_at(PREFIX, dir.path(), &fresh, ports).await;
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{}", ports.0))
            .await
            .unwrap(),
    );
    assert_eq!(
        replay(js.clone(), "replay2").await,
        published,
        "payloads after a restart"
    );
    let ack = js
        .publish("archive.new", "later".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, MESSAGES + 2);
    drop(js);
    s3::kill(broker).await;
}
