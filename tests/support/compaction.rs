//! Shared by the compaction tests: a real `junction` with NATS and HTTP on
//! 127.0.0.1, and reading a stream back through a JetStream consumer, raw
//! `STREAM.INFO` and HTTP.

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

pub use super::process;

/// A broker with NATS on `nats` and HTTP on `http`, its data in `data`.
pub async fn start(data: &Path, nats: u16, http: u16) -> Child {
    let child = process::junction(
        data,
        &[
            "serve",
            "--nats-listen",
            &format!("127.0.0.1:{nats}"),
            "--http-listen",
            &format!("127.0.0.1:{http}"),
            "--mqtt-listen",
            "off",
            "--data-dir",
        ],
        &[("RUST_LOG", "info")],
    )
    .arg(data)
    .stdout(Stdio::null())
    .stderr(log_to())
    .spawn()
    .expect("junction starts");
    process::wait_listening(nats).await;
    process::wait_listening(http).await;
    child
}

/// Where the broker's log goes: the file `COMPACTION_TEST_LOG` names (for
/// looking into a failure), else nowhere.
fn log_to() -> Stdio {
    match std::env::var_os("COMPACTION_TEST_LOG") {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_or_else(|_| Stdio::null(), Stdio::from),
        None => Stdio::null(),
    }
}

pub async fn client(nats: u16) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .connect(format!("nats://127.0.0.1:{nats}"))
        .await
        .expect("connect")
}

/// `$JS.API.STREAM.INFO.<name>` as JSON (with Junction's own fields).
pub async fn raw_info(nc: &async_nats::Client, name: &str) -> serde_json::Value {
    let r = nc
        .request(format!("$JS.API.STREAM.INFO.{name}"), "".into())
        .await
        .expect("stream info");
    serde_json::from_slice(&r.payload).expect("json")
}

/// Waits (up to `guard`) until the stream's state satisfies `ok`; returns it.
pub async fn wait_state(
    nc: &async_nats::Client,
    name: &str,
    guard: Duration,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + guard;
    loop {
        let info = raw_info(nc, name).await;
        if ok(&info["state"]) {
            return info["state"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the stream's state stayed {}",
            info["state"]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every message from sequence `from` on, through a pull consumer:
/// (stream sequence, subject, headers' `KV-Operation`, payload).
pub async fn read_all(
    js: &jetstream::Context,
    name: &str,
    from: u64,
) -> Vec<(u64, String, Option<String>, String)> {
    let stream = js.get_stream(name).await.expect("stream");
    let c = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: if from <= 1 {
                consumer::DeliverPolicy::All
            } else {
                consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from,
                }
            },
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut c = c;
    let pending = c.info().await.expect("consumer info").num_pending;
    let mut out = Vec::new();
    let mut messages = c.messages().await.expect("messages");
    while (out.len() as u64) < pending {
        let m = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .expect("the consumer delivers")
            .expect("a message")
            .expect("not an error");
        let seq = m.info().expect("info").stream_sequence;
        let op = m
            .headers
            .as_ref()
            .and_then(|h| h.get("KV-Operation"))
            .map(|v| v.as_str().to_string());
        out.push((
            seq,
            m.subject.to_string(),
            op,
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    out
}

/// Every message through HTTP browsing, page by page from sequence 1:
/// (sequence, subject, payload).
pub async fn browse_all(http: u16, name: &str) -> Vec<(u64, String, String)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut from = 1u64;
    loop {
        let page: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{http}/v1/stations/{name}/messages?from_seq={from}&limit=1000"
            ))
            .send()
            .await
            .expect("browse")
            .json()
            .await
            .expect("json");
        let messages = page["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            out.push((
                m["seq"].as_u64().unwrap(),
                m["subject"].as_str().unwrap().to_string(),
                m["payload"].as_str().unwrap_or_default().to_string(),
            ));
        }
        from = page["next_seq"].as_u64().unwrap();
    }
}

/// A gauge or counter from `/metrics` (the first sample whose line starts
/// with `prefix`).
pub async fn metric(http: u16, prefix: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{http}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every message through an HTTP consumer group (created here, from the
/// first message, no acks), fetched until a fetch comes back empty:
/// (sequence, subject, payload).
pub async fn fetch_all(http: u16, name: &str, group: &str) -> Vec<(u64, String, String)> {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("http://127.0.0.1:{http}/v1/stations/{name}/groups"))
        .json(&serde_json::json!({"name": group, "deliver_policy": "all", "ack_policy": "none"}))
        .send()
        .await
        .expect("create group");
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut out = Vec::new();
    loop {
        let page: serde_json::Value = client
            .post(format!(
                "http://127.0.0.1:{http}/v1/stations/{name}/groups/{group}/fetch"
            ))
            .json(&serde_json::json!({"batch": 1000, "max_wait_ms": 1000}))
            .send()
            .await
            .expect("fetch")
            .json()
            .await
            .expect("json");
        let messages = page["messages"].as_array().expect("messages").clone();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            out.push((
                m["seq"].as_u64().unwrap(),
                m["subject"].as_str().unwrap().to_string(),
                m["payload"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
}
