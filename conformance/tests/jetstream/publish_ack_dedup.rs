//! Publishing into a stream: the PubAck names the stream and sequence; a repeated
//! `Nats-Msg-Id` (or `msg-id`) within the duplicate window is acknowledged as a
//! duplicate with the original sequence and not stored again; the expected-stream,
//! expected-last-sequence, expected-last-msg-id and expected-last-subject-sequence
//! headers guard a publish.

use crate::support::{connect, create_stream, publish, simple_stream, stream_state, within};
use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{Context, stream};
use junction_conformance::broker;
use std::time::Duration;

async fn send(
    js: &Context,
    subject: &str,
    message: PublishMessage,
) -> Result<PublishAck, PublishError> {
    let ack = within("publish", js.send_publish(subject.to_string(), message))
        .await
        .expect("publish sent");
    within("pub ack", ack.into_future()).await
}

/// The JetStream API error a refused publish carries: (err_code, its text, which
/// async-nats renders as "<description> (code <code>, error code <err_code>)").
fn jetstream_code(err: &PublishError) -> (u64, String) {
    let source = std::error::Error::source(err).expect("the JetStream error as source");
    let js = source
        .downcast_ref::<async_nats::jetstream::Error>()
        .unwrap_or_else(|| panic!("source is not a JetStream error: {source:?}"));
    (js.error_code().0, js.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn pub_ack_names_stream_and_sequence() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    simple_stream(&js, "EVENTS", &["events.>"]).await;
    for i in 1..=5u64 {
        let ack = publish(&js, &format!("events.{i}"), "x").await;
        assert_eq!(ack.stream, "EVENTS");
        assert_eq!(ack.sequence, i);
        assert!(!ack.duplicate);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn msg_id_dedup_within_window() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    simple_stream(&js, "EVENTS", &["events.>"]).await;

    let first = send(
        &js,
        "events.a",
        PublishMessage::build()
            .payload("one".into())
            .message_id("id-1"),
    )
    .await
    .unwrap();
    assert_eq!((first.sequence, first.duplicate), (1, false));
    let other = send(
        &js,
        "events.a",
        PublishMessage::build()
            .payload("two".into())
            .message_id("id-2"),
    )
    .await
    .unwrap();
    assert_eq!((other.sequence, other.duplicate), (2, false));

    // The same id again, even with another payload and subject: duplicate, original seq.
    let dup = send(
        &js,
        "events.b",
        PublishMessage::build()
            .payload("one again".into())
            .message_id("id-1"),
    )
    .await
    .unwrap();
    assert_eq!(dup.stream, "EVENTS");
    assert_eq!((dup.sequence, dup.duplicate), (1, true));

    // The lower-case `msg-id` header de-duplicates too.
    let mut h = HeaderMap::new();
    h.insert("msg-id", "lower-1");
    let a = within(
        "publish",
        js.publish_with_headers("events.c", h.clone(), "l1".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert_eq!((a.sequence, a.duplicate), (3, false));
    let b2 = within(
        "publish",
        js.publish_with_headers("events.c", h, "l1".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    assert_eq!((b2.sequence, b2.duplicate), (3, true));

    let state = stream_state(&js, "EVENTS").await;
    assert_eq!(state.messages, 3);
    assert_eq!(state.last_sequence, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn msg_id_accepted_again_after_window() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    create_stream(
        &js,
        stream::Config {
            name: "EVENTS".into(),
            subjects: vec!["events.>".into()],
            duplicate_window: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let first = send(
        &js,
        "events.a",
        PublishMessage::build().payload("1".into()).message_id("w"),
    )
    .await
    .unwrap();
    assert_eq!(first.sequence, 1);
    // Once the window has passed, the id is new again. Poll: each attempt within the
    // window is a duplicate and stores nothing.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ack = send(
            &js,
            "events.a",
            PublishMessage::build().payload("1".into()).message_id("w"),
        )
        .await
        .unwrap();
        if !ack.duplicate {
            assert_eq!(ack.sequence, 2);
            break;
        }
        assert_eq!(ack.sequence, 1);
        assert!(
            tokio::time::Instant::now() < deadline,
            "id never left the window"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stream_state(&js, "EVENTS").await.messages, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn expected_headers() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    simple_stream(&js, "EVENTS", &["events.>"]).await;
    publish(&js, "events.a", "a1").await; // 1
    publish(&js, "events.b", "b1").await; // 2
    send(
        &js,
        "events.a",
        PublishMessage::build()
            .payload("a2".into())
            .message_id("m3"),
    )
    .await
    .unwrap(); // 3

    // Expected stream.
    let ok = send(
        &js,
        "events.c",
        PublishMessage::build()
            .payload("c".into())
            .expected_stream("EVENTS"),
    )
    .await
    .unwrap();
    assert_eq!(ok.sequence, 4);
    let err = send(
        &js,
        "events.c",
        PublishMessage::build()
            .payload("c".into())
            .expected_stream("OTHER"),
    )
    .await
    .expect_err("wrong expected stream");
    assert_eq!(
        jetstream_code(&err),
        (
            10060,
            "expected stream does not match (code 400, error code 10060)".into()
        )
    );

    // Expected last sequence.
    let ok = send(
        &js,
        "events.c",
        PublishMessage::build()
            .payload("c".into())
            .expected_last_sequence(4),
    )
    .await
    .unwrap();
    assert_eq!(ok.sequence, 5);
    let err = send(
        &js,
        "events.c",
        PublishMessage::build()
            .payload("c".into())
            .expected_last_sequence(4),
    )
    .await
    .expect_err("stale expected last sequence");
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
    assert_eq!(
        jetstream_code(&err),
        (
            10071,
            "wrong last sequence: 5 (code 400, error code 10071)".into()
        )
    );

    // Expected last msg id: the last message carrying an id was seq 3 ("m3").
    let ok = send(
        &js,
        "events.d",
        PublishMessage::build()
            .payload("d".into())
            .expected_last_message_id("m3")
            .message_id("m6"),
    )
    .await
    .unwrap();
    assert_eq!(ok.sequence, 6);
    let err = send(
        &js,
        "events.d",
        PublishMessage::build()
            .payload("d".into())
            .expected_last_message_id("m3"),
    )
    .await
    .expect_err("stale expected last msg id");
    assert_eq!(err.kind(), PublishErrorKind::WrongLastMessageId);
    assert_eq!(
        jetstream_code(&err),
        (
            10070,
            "wrong last msg ID: m6 (code 400, error code 10070)".into()
        )
    );

    // Expected last subject sequence: events.a was last stored at seq 3; events.new
    // never (0).
    let ok = send(
        &js,
        "events.a",
        PublishMessage::build()
            .payload("a3".into())
            .expected_last_subject_sequence(3),
    )
    .await
    .unwrap();
    assert_eq!(ok.sequence, 7);
    let err = send(
        &js,
        "events.a",
        PublishMessage::build()
            .payload("a4".into())
            .expected_last_subject_sequence(3),
    )
    .await
    .expect_err("stale expected last subject sequence");
    assert_eq!(
        jetstream_code(&err),
        (
            10071,
            "wrong last sequence: 7 (code 400, error code 10071)".into()
        )
    );
    let ok = send(
        &js,
        "events.new",
        PublishMessage::build()
            .payload("n".into())
            .expected_last_subject_sequence(0),
    )
    .await
    .unwrap();
    assert_eq!(ok.sequence, 8);

    // Refused publishes stored nothing.
    let state = stream_state(&js, "EVENTS").await;
    assert_eq!(state.messages, 8);
    assert_eq!(state.last_sequence, 8);
}

/// The raw PubAck JSON a request with `headers` gets back on `subject`.
async fn raw_pub_ack(
    client: &async_nats::Client,
    subject: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let mut h = HeaderMap::new();
    for (n, v) in headers {
        h.insert(*n, *v);
    }
    let reply = within(
        "publish request",
        client.request_with_headers(subject.to_string(), h, "x".into()),
    )
    .await
    .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

/// nats-server reads a sequence header that is not a number as -1, which never
/// matches: the answer names the actual last sequence. An empty expected stream or
/// last msg id is no expectation at all. Nothing refused is stored.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_expectations_answer_as_nats_server() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "EVENTS", &["events.>"]).await;
    for _ in 0..3 {
        publish(&js, "events.a", "x").await;
    }
    for (name, value) in [
        ("Nats-Expected-Last-Sequence", "three"),
        ("Nats-Expected-Last-Sequence", "-1"),
        ("Nats-Expected-Last-Sequence", "+3"),
    ] {
        let r = raw_pub_ack(&client, "events.a", &[(name, value)]).await;
        assert_eq!(
            r,
            serde_json::json!({"error": {"code": 400, "err_code": 10071,
                "description": "wrong last sequence: 3"}}),
            "{name}: {value}"
        );
    }
    let r = raw_pub_ack(
        &client,
        "events.a",
        &[("Nats-Expected-Last-Subject-Sequence", "x")],
    )
    .await;
    assert_eq!(
        r,
        serde_json::json!({"error": {"code": 400, "err_code": 10071,
            "description": "wrong last sequence: 3"}})
    );
    assert_eq!(stream_state(&js, "EVENTS").await.messages, 3);
    // Empty values ask nothing.
    let r = raw_pub_ack(
        &client,
        "events.a",
        &[
            ("Nats-Expected-Stream", ""),
            ("Nats-Expected-Last-Msg-Id", ""),
        ],
    )
    .await;
    assert_eq!(r, serde_json::json!({"stream": "EVENTS", "seq": 4}));
}

/// A rollup is refused as nats-server refuses it on a stream that does not allow
/// rollups (this one does not), whatever the value; nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn rollup_is_not_permitted() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "EVENTS", &["events.>"]).await;
    for value in ["sub", "ALL", "everything"] {
        let r = raw_pub_ack(&client, "events.a", &[("Nats-Rollup", value)]).await;
        assert_eq!(
            r,
            serde_json::json!({"error": {"code": 500, "err_code": 10111,
                "description": "rollup not permitted"}}),
            "{value}"
        );
    }
    assert_eq!(stream_state(&js, "EVENTS").await.messages, 0);
}
