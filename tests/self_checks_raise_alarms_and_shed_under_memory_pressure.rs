//! The self-checks that are not about the disk (docs/operations.md), against the
//! real binary, with their thresholds changed by a live reload:
//!
//! - a consumer group whose ack floor does not move while a message it got
//!   stays unacknowledged raises `stuck_acks:<tenant>/<station>/<group>`; the
//!   ack clears it;
//! - fsyncs slower than `limits.fsync_p99_alarm` raise `fsync_slow`; a reload
//!   that raises the mark clears it at the next window of fsyncs, while a
//!   reload that changes a wire limit is refused and changes nothing;
//! - under memory pressure the connection with the most bytes queued for it
//!   (a NATS subscriber that stopped reading) is shed as a slow consumer, with
//!   an event that says why, while a subscriber that keeps up stays connected
//!   and served;
//! - `log_level` and `http.cors_origins` change on a reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::notify;
use crate::support::process;
use notify::{Broker, http};
use process::GUARD;

use futures::StreamExt;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("junction.toml"), text).unwrap();
}

/// `POST /v1/server/reload`: its status and body.
async fn reload(broker: &Broker) -> (u16, Value) {
    let r = http()
        .post(broker.url("/v1/server/reload"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The alarm events (raised and cleared) about `name`, oldest first.
async fn alarm_events(broker: &Broker, name: &str) -> Vec<Value> {
    let mut all = broker.events("").await;
    all.retain(|e| e["alarm"]["name"] == name);
    all.reverse();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_ack_floor_does_not_move_raises_stuck_acks_until_acked() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[limits]\nstuck_ack_alarm = \"2s\"\n");
    let broker = Broker::start(dir.path()).await;
    let nc = async_nats::connect(broker.nats.to_string()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "jobs".into(),
            subjects: vec!["jobs.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("worker".into()),
            ack_wait: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..3 {
        js.publish(format!("jobs.{i}"), "work".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A worker takes one job and never acks it.
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let taken = batch.next().await.unwrap().unwrap();
    assert_eq!(taken.subject.as_str(), "jobs.0");

    let name = "stuck_acks:$G/jobs/worker";
    broker.until_alarm(name, 1).await;
    let raised = alarm_events(&broker, name).await;
    assert_eq!(raised.len(), 1, "raised once: {raised:?}");
    assert_eq!(raised[0]["kind"], "alarm_raised");
    let why = raised[0]["message"].as_str().unwrap();
    assert!(
        why.contains("1 messages delivered and not acknowledged") && why.contains("'worker'"),
        "{why}"
    );
    let listed = broker.get("/v1/alarms").await;
    assert!(
        listed.to_string().contains(name),
        "/v1/alarms lists it: {listed}"
    );

    // The ack moves the floor: the alarm clears, once.
    taken.double_ack().await.unwrap();
    broker.until_alarm(name, 0).await;
    let all = alarm_events(&broker, name).await;
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["alarm_raised", "alarm_cleared"], "{all:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_fsyncs_raise_fsync_slow_and_a_reload_of_the_mark_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    // Every real fsync is slower than a microsecond.
    write_config(dir.path(), "[limits]\nfsync_p99_alarm = \"1us\"\n");
    let broker = Broker::start(dir.path()).await;
    let nc = async_nats::connect(broker.nats.to_string()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // Acknowledged one by one: each is fsynced before its ack.
    let publish = |n: usize| {
        let js = js.clone();
        async move {
            for i in 0..n {
                js.publish(format!("orders.{i}"), "o".into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }
    };
    publish(40).await;
    broker.until_alarm("fsync_slow", 1).await;
    let raised = alarm_events(&broker, "fsync_slow").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let why = raised[0]["message"].as_str().unwrap();
    assert!(
        why.contains("99th percentile") && why.contains("limits.fsync_p99_alarm = 0.001 ms"),
        "{why}"
    );

    // A reload that changes a wire limit is refused as a whole: the mark stays.
    write_config(
        dir.path(),
        "[limits]\nfsync_p99_alarm = \"10s\"\nmax_payload = 2048\n",
    );
    let (status, body) = reload(&broker).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("config reload not supported for limits.max_payload"),
        "{body}"
    );
    publish(40).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(broker.alarm("fsync_slow").await, Some(1), "still raised");

    // The mark alone reloads; the next window of fsyncs is under it.
    write_config(dir.path(), "[limits]\nfsync_p99_alarm = \"10s\"\n");
    let (status, body) = reload(&broker).await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + GUARD;
    while broker.alarm("fsync_slow").await.unwrap_or(0) != 0 {
        assert!(Instant::now() < deadline, "fsync_slow never cleared");
        publish(20).await;
    }
    // The alarm's state changes first; its event is recorded just after (through
    // the events writer), so it is waited for, not expected at once.
    let kinds = loop {
        let kinds: Vec<String> = alarm_events(&broker, "fsync_slow")
            .await
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        if kinds.len() >= 2 || Instant::now() >= deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(kinds, ["alarm_raised", "alarm_cleared"]);
    broker.stop().await;
}

/// A NATS subscriber on `subject` that reads its `PONG` and then never reads
/// again, with a small receive buffer: what is published to it queues in the
/// broker.
async fn stalled_subscriber(broker: &Broker, subject: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sock = socket.connect(broker.nats).await.unwrap();
    sock.write_all(
        format!(
            "CONNECT {{\"verbose\":false,\"name\":\"stalled\"}}\r\nSUB {subject} 1\r\nPING\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("PONG") {
        let n = tokio::time::timeout(GUARD, sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before PONG");
        seen.extend_from_slice(&buf[..n]);
    }
    sock
}

/// The connection named `name` in `/connz`, if it is there.
async fn connz_entry(broker: &Broker, name: &str) -> Option<Value> {
    let connz = broker.get("/connz?limit=1000").await;
    connz["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_memory_pressure_the_slowest_consumer_is_shed_and_the_others_stay() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let broker = Broker::start(dir.path()).await;

    let mut stalled = stalled_subscriber(&broker, "feed").await;
    let healthy = async_nats::ConnectOptions::new()
        .name("healthy")
        .connect(broker.nats.to_string())
        .await
        .unwrap();
    let mut sub = healthy.subscribe("feed").await.unwrap();
    healthy.flush().await.unwrap();
    let publisher = async_nats::connect(broker.nats.to_string()).await.unwrap();

    // 8 MiB to both: the healthy one reads it all, the stalled one cannot.
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let count = 128;
    let reader = tokio::spawn(async move {
        for _ in 0..count {
            tokio::time::timeout(GUARD, sub.next())
                .await
                .unwrap()
                .unwrap();
        }
        sub
    });
    for _ in 0..count {
        publisher.publish("feed", chunk.clone()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    let mut sub = reader.await.unwrap();
    let deadline = Instant::now() + GUARD;
    let pending = loop {
        let p = connz_entry(&broker, "stalled").await.unwrap()["pending_bytes"]
            .as_u64()
            .unwrap();
        if p >= 64 * 1024 {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "nothing queued for the stalled client"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(connz_entry(&broker, "healthy").await.is_some());

    // The memory limit drops under what the broker uses: new connections are
    // refused, then the slowest consumer goes.
    write_config(dir.path(), "[limits]\nmemory_max = \"1MB\"\n");
    let (status, body) = reload(&broker).await;
    assert_eq!(status, 200, "{body}");
    broker.until_alarm("memory_high", 1).await;
    let deadline = Instant::now() + GUARD;
    while connz_entry(&broker, "stalled").await.is_some() {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never shed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shed = broker.events("kind=slow_consumer").await;
    assert_eq!(shed.len(), 1, "{shed:?}");
    assert_eq!(shed[0]["details"]["reason"], "memory_high");
    assert!(shed[0]["details"]["pending_bytes"].as_u64().unwrap() >= 64 * 1024);
    assert!(
        shed[0]["message"]
            .as_str()
            .unwrap()
            .contains("shed as the slowest consumer under memory pressure"),
        "{shed:?}"
    );
    assert!(pending > 0);
    // The stalled socket ends: what was queued for it is dropped with it (as
    // nats-server drops a slow consumer's), so it need not read it all.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(GUARD, stalled.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the stalled connection was closed");
    assert!(
        (rest.len() as u64) < pending + 8 * 1024 * 1024,
        "no more than was queued and in flight"
    );

    // The healthy subscriber stays, and is still served.
    assert!(connz_entry(&broker, "healthy").await.is_some());
    publisher.publish("feed", "after".into()).await.unwrap();
    let m = tokio::time::timeout(GUARD, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"after");

    // The limit is lifted: the alarm clears and connections are taken again.
    write_config(dir.path(), "");
    let (status, body) = reload(&broker).await;
    assert_eq!(status, 200, "{body}");
    broker.until_alarm("memory_high", 0).await;
    let again = async_nats::connect(broker.nats.to_string()).await.unwrap();
    again.flush().await.unwrap();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_and_cors_origins_change_on_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "log_level = \"info\"\n");
    let broker = Broker::start(dir.path()).await;
    let origin = |o: &'static str| {
        let url = broker.url("/v1/stations");
        async move {
            let r = http().get(url).header("Origin", o).send().await.unwrap();
            r.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    assert_eq!(origin("https://b.example").await.as_deref(), Some("*"));
    let debug_lines = |b: &Broker| {
        b.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("DEBUG"))
            .count()
    };
    assert_eq!(debug_lines(&broker), 0);

    write_config(
        dir.path(),
        "log_level = \"debug\"\n[http]\ncors_origins = [\"https://a.example\"]\n",
    );
    let (status, body) = reload(&broker).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("log level debug"), "{body}");
    assert_eq!(
        origin("https://a.example").await.as_deref(),
        Some("https://a.example")
    );
    assert_eq!(origin("https://b.example").await, None);
    // Something is logged at debug now.
    let nc = async_nats::connect(broker.nats.to_string()).await.unwrap();
    nc.flush().await.unwrap();
    let deadline = Instant::now() + GUARD;
    while debug_lines(&broker) == 0 {
        assert!(Instant::now() < deadline, "no DEBUG line after the reload");
        let _ = origin("https://a.example").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.stop().await;
}
