//! Log compaction (`compact` station policy), against the real `junction`
//! binary with async-nats and reqwest:
//! - 100 K messages over 1,000 subjects compact to exactly the newest 1,000,
//!   with their sequences unchanged, read back through a JetStream consumer,
//!   `MSG.GET`, HTTP browsing and an HTTP consumer group; the store gives the
//!   space back;
//! - a consumer reading messages younger than `min_lag_ms` sees every update;
//! - tombstones (`KV-Operation: DEL|PURGE`) remove their keys, and go
//!   themselves after `tombstone_retention_ms`;
//! - policies that make no sense are refused over HTTP (422) and JetStream
//!   (10052).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::support::compaction as support;
use support::process;

const GUARD: Duration = Duration::from_secs(180);

async fn put_station(http: u16, create: bool, body: serde_json::Value) -> reqwest::Response {
    let client = reqwest::Client::new();
    let name = body["name"].as_str().unwrap().to_string();
    let req = if create {
        client.post(format!("http://127.0.0.1:{http}/v1/stations"))
    } else {
        client.put(format!("http://127.0.0.1:{http}/v1/stations/{name}"))
    };
    req.json(&body).send().await.expect("http")
}

/// A payload of about 400 bytes that does not compress much.
fn payload(i: u64) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = format!("{i}:");
    while s.len() < 400 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(&format!("{x:016x}"));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_messages_compact_to_the_newest_per_subject() {
    let dir = tempfile::tempdir().unwrap();
    let (nats, http) = (process::free_port(), process::free_port());
    let mut child = support::start(dir.path(), nats, http).await;
    let nc = support::client(nats).await;
    let js = jetstream::new(nc.clone());

    // Compacted, but with a min_lag of an hour: nothing may go yet.
    let hour = 3_600_000;
    let r = put_station(
        http,
        true,
        serde_json::json!({"name": "kv", "subjects": ["kv.>"],
            "compact": {"min_lag_ms": hour, "max_lag_ms": hour, "tombstone_retention_ms": hour}}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    const N: u64 = 100_000;
    const KEYS: u64 = 1_000;
    // subject -> (sequence, i) of its newest message.
    let mut newest: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut in_flight = VecDeque::new();
    for i in 0..N {
        let subject = format!("kv.k{}", i % KEYS);
        let ack = js
            .publish(subject.clone(), Bytes::from(payload(i)))
            .await
            .expect("publish");
        in_flight.push_back((subject, i, ack));
        if in_flight.len() >= 256 || i == N - 1 {
            while let Some((subject, i, ack)) = in_flight.pop_front() {
                let ack = ack.await.expect("acked");
                newest.insert(subject, (ack.sequence, i));
                if in_flight.len() < 128 && i != N - 1 {
                    break;
                }
            }
        }
    }
    while let Some((subject, i, ack)) = in_flight.pop_front() {
        newest.insert(subject, (ack.await.expect("acked").sequence, i));
    }
    assert_eq!(newest.len() as u64, KEYS);
    let state = support::raw_info(&nc, "kv").await["state"].clone();
    assert_eq!(state["messages"], N, "nothing is compacted within min_lag");
    assert_eq!(state["last_seq"], N);
    let disk_before = support::metric(http, "junction_storage_disk_bytes")
        .await
        .expect("disk bytes metric");
    let log_before = support::metric(http, "junction_storage_log_table_bytes")
        .await
        .expect("log table bytes metric");

    // min_lag 0: everything superseded goes within max_lag.
    let r = put_station(
        http,
        false,
        serde_json::json!({"name": "kv", "subjects": ["kv.>"],
            "compact": {"min_lag_ms": 0, "max_lag_ms": 1000, "tombstone_retention_ms": 1000}}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["compact"]["max_lag_ms"],
        1000
    );
    // (The removal count is added after each chunk's deletes: wait for both.)
    let state = support::wait_state(&nc, "kv", GUARD, "compaction to 1,000", |s| {
        s["messages"] == KEYS && s["junction_compacted"] == N - KEYS
    })
    .await;
    let first = newest.values().map(|(s, _)| *s).min().unwrap();
    assert_eq!(state["last_seq"], N, "sequences never change");
    assert_eq!(state["first_seq"], first);
    assert_eq!(state["num_subjects"], KEYS);
    // (omitted when 0, as nats-server does: round-robin keys leave the newest
    // 1,000 contiguous)
    assert_eq!(
        state["num_deleted"].as_u64().unwrap_or(0),
        N - first + 1 - KEYS
    );
    assert_eq!(state["junction_compacted"], N - KEYS);

    // The JetStream consumer: exactly the newest per subject, at their sequences.
    let want: BTreeMap<u64, (String, u64)> = newest
        .iter()
        .map(|(subject, (seq, i))| (*seq, (subject.clone(), *i)))
        .collect();
    let got = support::read_all(&js, "kv", 1).await;
    assert_eq!(got.len() as u64, KEYS);
    for (seq, subject, _, body) in &got {
        let (want_subject, i) = &want[seq];
        assert_eq!(subject, want_subject, "seq {seq}");
        assert_eq!(body, &payload(*i), "seq {seq}");
    }
    let seqs: Vec<u64> = got.iter().map(|m| m.0).collect();
    assert_eq!(seqs, want.keys().copied().collect::<Vec<_>>());

    // HTTP browsing skips the gaps the same way.
    let browsed = support::browse_all(http, "kv").await;
    assert_eq!(
        browsed.iter().map(|m| m.0).collect::<Vec<_>>(),
        seqs,
        "HTTP browse"
    );
    for (seq, subject, body) in &browsed {
        assert_eq!(subject, &want[seq].0);
        assert_eq!(body, &payload(want[seq].1));
    }

    // So does an HTTP consumer group.
    let fetched = support::fetch_all(http, "kv", "reader").await;
    assert_eq!(
        fetched.iter().map(|m| m.0).collect::<Vec<_>>(),
        seqs,
        "HTTP consumer group"
    );
    for (seq, subject, body) in &fetched {
        assert_eq!(subject, &want[seq].0);
        assert_eq!(body, &payload(want[seq].1));
    }

    // MSG.GET: a compacted sequence is not found; a kept one is there.
    let stream = js.get_stream("kv").await.unwrap();
    let gone = (1..N).find(|s| !want.contains_key(s)).unwrap();
    assert!(stream.get_raw_message(gone).await.is_err());
    let kept = *want.keys().next().unwrap();
    assert_eq!(stream.get_raw_message(kept).await.unwrap().sequence, kept);
    let last = stream
        .get_last_raw_message_by_subject("kv.k7")
        .await
        .unwrap();
    assert_eq!(last.sequence, newest["kv.k7"].0);

    // /metrics counts what compaction removed, and the log's bytes on disk
    // come down once the space is given back (the journal, up to 64 MB, goes
    // only when fjall rotates it: not counted here).
    assert_eq!(
        support::metric(http, "junction_station_compacted_messages_total{")
            .await
            .unwrap(),
        (N - KEYS) as f64
    );
    let deadline = tokio::time::Instant::now() + GUARD;
    let log_after = loop {
        let now = support::metric(http, "junction_storage_log_table_bytes")
            .await
            .unwrap();
        // 1,000 of 100,000 messages are left: well under a tenth of the bytes.
        if now < log_before / 10.0 {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log kept {now} bytes on disk (before compaction: {log_before})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let disk_after = support::metric(http, "junction_storage_disk_bytes")
        .await
        .unwrap();
    assert!(disk_after < disk_before, "{disk_after} < {disk_before}");
    eprintln!(
        "log tables on disk: {log_before} bytes before compaction, {log_after} after; \
         whole store {disk_before} before, {disk_after} after"
    );

    // The count survives a restart.
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let _child = support::start(dir.path(), nats, http).await;
    let nc = support::client(nats).await;
    let state = support::raw_info(&nc, "kv").await["state"].clone();
    assert_eq!(state["messages"], KEYS);
    assert_eq!(state["last_seq"], N);
    assert_eq!(state["junction_compacted"], N - KEYS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_within_min_lag_sees_every_update() {
    let dir = tempfile::tempdir().unwrap();
    let (nats, http) = (process::free_port(), process::free_port());
    let _child = support::start(dir.path(), nats, http).await;
    let nc = support::client(nats).await;
    let js = jetstream::new(nc.clone());
    // Over JetStream: the policy is stream metadata.
    js.create_stream(jetstream::stream::Config {
        name: "upd".into(),
        subjects: vec!["upd.>".into()],
        metadata: [
            ("junction.compact.min_lag_ms", "15000"),
            ("junction.compact.max_lag_ms", "15000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    })
    .await
    .expect("compacted stream");
    let info = support::raw_info(&nc, "upd").await;
    assert_eq!(
        info["config"]["metadata"]["junction.compact.min_lag_ms"],
        "15000"
    );
    assert_eq!(
        info["config"]["metadata"]["junction.compact.tombstone_retention_ms"],
        "86400000"
    );

    // Round 1: 5 updates of 200 subjects; once min_lag passes, 800 go.
    for round in 0..5 {
        for k in 0..200 {
            js.publish(format!("upd.k{k}"), format!("r1.{round}.{k}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    support::wait_state(&nc, "upd", GUARD, "round 1 compacted", |s| {
        s["junction_compacted"] == 800
    })
    .await;

    // Round 2: a consumer reading right behind the publisher (well within
    // min_lag) gets every update, in order, with no gap.
    let mut first = 0;
    for round in 0..5 {
        for k in 0..200 {
            let ack = js
                .publish(format!("upd.k{k}"), format!("r2.{round}.{k}").into())
                .await
                .unwrap()
                .await
                .unwrap();
            if first == 0 {
                first = ack.sequence;
            }
        }
    }
    let got = support::read_all(&js, "upd", first).await;
    assert_eq!(got.len(), 1000);
    for (n, (seq, subject, _, body)) in got.iter().enumerate() {
        let (round, k) = (n / 200, n % 200);
        assert_eq!(*seq, first + n as u64);
        assert_eq!(subject, &format!("upd.k{k}"));
        assert_eq!(body, &format!("r2.{round}.{k}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_remove_their_keys_and_then_go_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let (nats, http) = (process::free_port(), process::free_port());
    let _child = support::start(dir.path(), nats, http).await;
    let nc = support::client(nats).await;
    let js = jetstream::new(nc.clone());
    let r = put_station(
        http,
        true,
        serde_json::json!({"name": "tomb", "subjects": ["t.>"],
            "compact": {"min_lag_ms": 0, "max_lag_ms": 500, "tombstone_retention_ms": 10000}}),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    // 10 keys, 3 versions each; then keys 0-4 are deleted (DEL, and PURGE
    // for key 4), and key 0 is written again after its delete.
    for v in 0..3 {
        for k in 0..10 {
            js.publish(format!("t.k{k}"), format!("v{v}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    for k in 0..5 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("KV-Operation", if k == 4 { "PURGE" } else { "DEL" });
        js.publish_with_headers(format!("t.k{k}"), h, Bytes::new())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    js.publish("t.k0", "again".into())
        .await
        .unwrap()
        .await
        .unwrap();

    // The deleted keys' values go at once; their tombstones stay for now
    // (keys 1-4), key 0's tombstone is just an older message.
    support::wait_state(&nc, "tomb", GUARD, "values compacted", |s| {
        s["messages"] == 10
    })
    .await;
    let got = support::read_all(&js, "tomb", 1).await;
    let mut seen: BTreeMap<String, (Option<String>, String)> = BTreeMap::new();
    for (_, subject, op, body) in &got {
        assert!(
            seen.insert(subject.clone(), (op.clone(), body.clone()))
                .is_none(),
            "one message per subject: {got:?}"
        );
    }
    assert_eq!(seen["t.k0"], (None, "again".to_string()));
    for k in 1..4 {
        assert_eq!(
            seen[&format!("t.k{k}")],
            (Some("DEL".into()), String::new())
        );
    }
    assert_eq!(seen["t.k4"], (Some("PURGE".into()), String::new()));
    for k in 5..10 {
        assert_eq!(seen[&format!("t.k{k}")], (None, "v2".to_string()));
    }

    // After tombstone_retention_ms the tombstones go too: the deleted keys
    // have nothing left, the others keep their newest value.
    let state = support::wait_state(&nc, "tomb", GUARD, "tombstones removed", |s| {
        s["messages"] == 6
    })
    .await;
    assert_eq!(state["junction_compacted"], 36 - 6);
    assert_eq!(state["last_seq"], 36);
    let got = support::read_all(&js, "tomb", 1).await;
    let subjects: Vec<&str> = got.iter().map(|m| m.1.as_str()).collect();
    assert_eq!(
        subjects,
        ["t.k5", "t.k6", "t.k7", "t.k8", "t.k9", "t.k0"],
        "{got:?}"
    );
    let stream = js.get_stream("tomb").await.unwrap();
    for k in 1..5 {
        assert!(
            stream
                .get_last_raw_message_by_subject(&format!("t.k{k}"))
                .await
                .is_err(),
            "key {k} stays deleted"
        );
    }
    // A new message takes the next sequence: none is reused.
    let ack = js
        .publish("t.k1", "back".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 37);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_that_make_no_sense_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (nats, http) = (process::free_port(), process::free_port());
    let _child = support::start(dir.path(), nats, http).await;
    let nc = support::client(nats).await;

    for (compact, text) in [
        (
            serde_json::json!({"min_lag_ms": 5000, "max_lag_ms": 1000}),
            "must not be above",
        ),
        (
            serde_json::json!({"min_lag_ms": -1}),
            "must not be negative",
        ),
        (
            serde_json::json!({"tombstone_retention_ms": -5}),
            "must not be negative",
        ),
        (serde_json::json!({"max_lag_ms": 0}), "above 0"),
    ] {
        let r = put_station(
            http,
            true,
            serde_json::json!({"name": "bad", "compact": compact}),
        )
        .await;
        assert_eq!(r.status(), 422, "{compact}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(
            body.to_string().contains(text),
            "{compact}: {body} should say {text}"
        );
    }
    let r = put_station(
        http,
        true,
        serde_json::json!({"name": "bad", "compact": {"min_lag": 1}}),
    )
    .await;
    assert!(r.status().is_client_error(), "an unknown field is refused");
    let r = put_station(
        http,
        true,
        serde_json::json!({"name": "bad", "retention": {"policy": "interest"}, "compact": {}}),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("limits retention"));

    // JetStream: 10052 with the key named.
    for (key, value, text) in [
        ("junction.compact.min_lag_ms", "-1", "must not be negative"),
        ("junction.compact.min_lag_ms", "soon", "not a whole number"),
        ("junction.compact.minlag", "1", "unknown compact setting"),
        ("junction.compact.max_lag_ms", "0", "above 0"),
    ] {
        let body = serde_json::json!({"name": "bad", "subjects": ["bad.>"],
            "metadata": {key: value}});
        let r = nc
            .request(
                "$JS.API.STREAM.CREATE.bad",
                serde_json::to_vec(&body).unwrap().into(),
            )
            .await
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(r["error"]["err_code"], 10052, "{key}={value}: {r}");
        assert!(
            r["error"]["description"].as_str().unwrap().contains(text),
            "{key}={value}: {r}"
        );
    }
    let body = serde_json::json!({"name": "bad", "subjects": ["bad.>"], "retention": "workqueue",
        "metadata": {"junction.compact.min_lag_ms": "0"}});
    let r = nc
        .request(
            "$JS.API.STREAM.CREATE.bad",
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(r["error"]["err_code"], 10052, "{r}");
    // Nothing was created.
    let r = reqwest::get(format!("http://127.0.0.1:{http}/v1/stations/bad"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
