//! Helpers shared by the JetStream scenarios: hang guards, connecting, publishing,
//! pulling, polling and raw `$JS.API` requests.
//!
//! Timeouts here only guard against hangs; no scenario asserts how long anything
//! takes (time-based behaviour is polled for until it holds, with a deadline).

#![allow(dead_code)]

use async_nats::Client;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, Context, Message, stream};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::TestBroker;
use std::future::Future;
use std::time::Duration;

/// How long any single step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(10);

/// A longer guard for steps that involve a restart, a flood of data or waiting for
/// a time-based behaviour (ack wait, max age).
pub const LONG_GUARD: Duration = Duration::from_secs(20);

/// Runs `f`, failing the test if it does not finish within [`GUARD`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(GUARD, what, f).await
}

/// Runs `f`, failing the test if it does not finish within `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A plain client and a JetStream context on it.
pub async fn connect(broker: &TestBroker) -> (Client, Context) {
    let client = within("connect", async_nats::connect(broker.nats_url()))
        .await
        .expect("client connects");
    let js = jetstream::new(client.clone());
    (client, js)
}

/// Creates a stream, failing the test on error.
pub async fn create_stream(js: &Context, config: stream::Config) -> stream::Stream {
    let name = config.name.clone();
    within("create stream", js.create_stream(config))
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e:?}"))
}

/// A stream with `name` capturing `subjects`, everything else default.
pub async fn simple_stream(js: &Context, name: &str, subjects: &[&str]) -> stream::Stream {
    create_stream(
        js,
        stream::Config {
            name: name.into(),
            subjects: subjects.iter().map(|s| (*s).to_string()).collect(),
            ..Default::default()
        },
    )
    .await
}

/// Creates a pull consumer, failing the test on error.
pub async fn create_consumer(stream: &stream::Stream, config: pull::Config) -> PullConsumer {
    within("create consumer", stream.create_consumer(config))
        .await
        .unwrap_or_else(|e| panic!("create consumer: {e:?}"))
}

/// A durable pull consumer with default settings.
pub async fn durable(stream: &stream::Stream, name: &str) -> PullConsumer {
    create_consumer(
        stream,
        pull::Config {
            durable_name: Some(name.into()),
            ..Default::default()
        },
    )
    .await
}

/// Publishes and waits for the PubAck, failing the test on error.
pub async fn publish(js: &Context, subject: &str, payload: impl Into<Bytes>) -> PublishAck {
    let payload = payload.into();
    let ack = within("publish", js.publish(subject.to_string(), payload))
        .await
        .unwrap_or_else(|e| panic!("publish to {subject}: {e:?}"));
    within("pub ack", ack.into_future())
        .await
        .unwrap_or_else(|e| panic!("pub ack for {subject}: {e:?}"))
}

/// Publishes `n` messages `"{prefix}{i}"` (i from 0) to `subject`, each acked.
pub async fn publish_n(js: &Context, subject: &str, n: usize) {
    for i in 0..n {
        publish(js, subject, format!("m{i}")).await;
    }
}

/// Pulls exactly `n` messages with repeated waiting pull requests; fails if they do
/// not all arrive within [`LONG_GUARD`].
pub async fn pull_n(consumer: &PullConsumer, n: usize) -> Vec<Message> {
    let mut got = Vec::with_capacity(n);
    within_for(LONG_GUARD, &format!("{n} messages"), async {
        while got.len() < n {
            let mut batch = consumer
                .batch()
                .max_messages(n - got.len())
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .expect("pull request");
            while let Some(m) = batch.next().await {
                got.push(m.expect("pulled message"));
            }
        }
    })
    .await;
    got
}

/// One waiting pull request for up to `batch` messages that expires after `expires`;
/// returns what arrived before the request ended.
pub async fn pull_once(consumer: &PullConsumer, batch: usize, expires: Duration) -> Vec<Message> {
    within("pull request", async {
        let mut messages = consumer
            .batch()
            .max_messages(batch)
            .expires(expires)
            .messages()
            .await
            .expect("pull request");
        let mut got = Vec::new();
        while let Some(m) = messages.next().await {
            got.push(m.expect("pulled message"));
        }
        got
    })
    .await
}

/// The stream sequence of a pulled message.
pub fn seq(m: &Message) -> u64 {
    m.info().expect("JetStream message info").stream_sequence
}

/// How many times a pulled message has been delivered.
pub fn delivered(m: &Message) -> i64 {
    m.info().expect("JetStream message info").delivered
}

/// The payload as text.
pub fn text(m: &Message) -> String {
    String::from_utf8(m.payload.to_vec()).expect("UTF-8 payload")
}

/// Acks and waits for the broker to confirm it applied the ack (a round trip), so
/// what a test checks next sees it.
pub async fn ack_sync(m: &Message) {
    within("double ack", m.double_ack())
        .await
        .unwrap_or_else(|e| panic!("ack: {e:?}"));
}

/// Polls `check` until it returns true; fails after [`LONG_GUARD`].
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within_for(LONG_GUARD, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// The current state of a stream.
pub async fn stream_state(js: &Context, name: &str) -> stream::State {
    let mut s = within("get stream", js.get_stream(name))
        .await
        .unwrap_or_else(|e| panic!("get stream {name}: {e:?}"));
    within("stream info", s.info())
        .await
        .unwrap_or_else(|e| panic!("stream info {name}: {e:?}"))
        .state
        .clone()
}

/// A raw `$JS.API` request; returns the JSON response.
pub async fn api(client: &Client, subject: &str, body: &str) -> serde_json::Value {
    let response = within(
        subject,
        client.request(subject.to_string(), Bytes::from(body.to_string())),
    )
    .await
    .unwrap_or_else(|e| panic!("request {subject}: {e:?}"));
    serde_json::from_slice(&response.payload).unwrap_or_else(|e| {
        panic!(
            "{subject}: response is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&response.payload)
        )
    })
}

/// Asserts `response` is a JetStream error with `code` / `err_code`; returns its
/// description.
pub fn expect_api_error(response: &serde_json::Value, code: u64, err_code: u64) -> String {
    let error = &response["error"];
    assert_eq!(error["code"].as_u64(), Some(code), "code in {response}");
    assert_eq!(
        error["err_code"].as_u64(),
        Some(err_code),
        "err_code in {response}"
    );
    error["description"]
        .as_str()
        .unwrap_or_else(|| panic!("no description in {response}"))
        .to_string()
}

/// A raw pull request: what a `$JS.API.CONSUMER.MSG.NEXT` request with `body`
/// brought to its inbox up to and including the status message that ended it.
pub struct RawPull {
    /// Delivered messages.
    pub messages: Vec<async_nats::Message>,
    /// The status message that ended the request (none when its batch was filled).
    pub status: Option<async_nats::Message>,
}

/// Sends a raw pull request and reads until it ends: with a status message, or
/// without one once its batch is filled.
pub async fn raw_pull(client: &Client, stream: &str, consumer: &str, body: &str) -> RawPull {
    let batch =
        serde_json::from_str::<serde_json::Value>(body).expect("JSON pull request")["batch"]
            .as_u64()
            .map_or(1, |b| b as usize);
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
    read_pull(&mut sub, batch).await
}

/// Reads deliveries from a pull request's inbox until a status message ends it, or
/// `batch` messages arrived (a filled request ends without a status).
pub async fn read_pull(sub: &mut async_nats::Subscriber, batch: usize) -> RawPull {
    let mut messages = Vec::new();
    within_for(LONG_GUARD, "pull request to end", async {
        loop {
            let m = sub.next().await.expect("inbox subscription open");
            match m.status {
                None | Some(async_nats::StatusCode::OK) => {
                    messages.push(m);
                    if messages.len() == batch {
                        return RawPull {
                            messages,
                            status: None,
                        };
                    }
                }
                Some(async_nats::StatusCode::IDLE_HEARTBEAT) => {}
                Some(_) => {
                    return RawPull {
                        messages,
                        status: Some(m),
                    };
                }
            }
        }
    })
    .await
}

/// The status code of the status message that ended a pull request.
pub fn status_code(p: &RawPull) -> u16 {
    p.status
        .as_ref()
        .and_then(|s| s.status)
        .expect("the pull request ended with a status")
        .as_u16()
}

/// Consumer info, fetched fresh.
pub async fn consumer_info(
    stream: &stream::Stream,
    name: &str,
) -> async_nats::jetstream::consumer::Info {
    within("consumer info", stream.consumer_info(name))
        .await
        .unwrap_or_else(|e| panic!("consumer info {name}: {e:?}"))
}

/// A python with nats-py (`NATS_PY_PYTHON`, which `scripts/test` sets); None
/// outside CI without one (the test says it is skipped).
pub fn python_with_nats() -> Option<String> {
    let python = std::env::var("NATS_PY_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import nats"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var("CI").is_err(),
        "nats-py is required under CI: scripts/test sets NATS_PY_PYTHON"
    );
    eprintln!("skipped: no python with nats-py (NATS_PY_PYTHON)");
    None
}
