//! Exact JetStream error codes (`code`, `err_code`, description), as nats-server
//! sends them, both as raw `$JS.API` JSON and through async-nats's error types.

use crate::support::{
    api, connect, create_stream, expect_api_error, publish, simple_stream, within,
};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{
    ConsumerInfoErrorKind, CreateStreamErrorKind, GetStreamErrorKind, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread")]
async fn stream_not_found_10059() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    for subject in [
        "$JS.API.STREAM.INFO.nope",
        "$JS.API.STREAM.DELETE.nope",
        "$JS.API.STREAM.PURGE.nope",
        "$JS.API.CONSUMER.NAMES.nope",
    ] {
        let r = api(&client, subject, "").await;
        assert_eq!(
            expect_api_error(&r, 404, 10059),
            "stream not found",
            "{subject}"
        );
    }
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.nope.C",
        r#"{"stream_name":"nope","config":{"name":"C","ack_policy":"explicit"}}"#,
    )
    .await;
    assert_eq!(expect_api_error(&r, 404, 10059), "stream not found");
    let r = api(&client, "$JS.API.STREAM.INFO.nope", "").await;
    assert_eq!(r["type"], "io.nats.jetstream.api.v1.stream_info_response");

    let err = within("get stream", js.get_stream("nope"))
        .await
        .expect_err("no such stream");
    match err.kind() {
        GetStreamErrorKind::JetStream(e) => {
            assert_eq!(e.error_code(), ErrorCode::STREAM_NOT_FOUND);
            assert_eq!(e.code(), 404);
        }
        other => panic!("unexpected error kind {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_not_found_10014() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    for subject in [
        "$JS.API.CONSUMER.INFO.S.nope",
        "$JS.API.CONSUMER.DELETE.S.nope",
    ] {
        let r = api(&client, subject, "").await;
        assert_eq!(
            expect_api_error(&r, 404, 10014),
            "consumer not found",
            "{subject}"
        );
    }
    // async-nats recognises 10014 as its own error kind.
    let err = within("consumer info", s.consumer_info("nope"))
        .await
        .expect_err("no such consumer");
    assert_eq!(err.kind(), ConsumerInfoErrorKind::NotFound, "{err:?}");
    // ... and a missing stream (10059) as another.
    let r = api(&client, "$JS.API.CONSUMER.INFO.nope.C", "").await;
    assert_eq!(expect_api_error(&r, 404, 10059), "stream not found");
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_name_in_use_10058() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "S", &["s.>"]).await;
    let r = api(
        &client,
        "$JS.API.STREAM.CREATE.S",
        r#"{"name":"S","subjects":["s.>"],"max_msgs":5}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&r, 400, 10058),
        "stream name already in use with a different configuration"
    );
    let err = within(
        "create",
        js.create_stream(stream::Config {
            name: "S".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        }),
    )
    .await
    .expect_err("name in use");
    match err.kind() {
        CreateStreamErrorKind::JetStream(e) => {
            assert_eq!(e.error_code(), ErrorCode::STREAM_NAME_EXIST);
            assert_eq!(e.code(), 400);
        }
        other => panic!("unexpected error kind {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subjects_overlap_10065() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "S", &["orders.*"]).await;
    for subjects in [
        r#"["orders.new"]"#,
        r#"["orders.>"]"#,
        r#"["*.new"]"#,
        r#"["*.*"]"#,
    ] {
        let r = api(
            &client,
            "$JS.API.STREAM.CREATE.T",
            &format!(r#"{{"name":"T","subjects":{subjects}}}"#),
        )
        .await;
        assert_eq!(
            expect_api_error(&r, 400, 10065),
            "subjects overlap with an existing stream",
            "{subjects}"
        );
    }
    let err = within(
        "create",
        js.create_stream(stream::Config {
            name: "T".into(),
            subjects: vec!["orders.x".into()],
            ..Default::default()
        }),
    )
    .await
    .expect_err("subjects overlap");
    match err.kind() {
        CreateStreamErrorKind::JetStream(e) => {
            assert_eq!(e.error_code(), ErrorCode::STREAM_SUBJECT_OVERLAP)
        }
        other => panic!("unexpected error kind {other:?}"),
    }
    // Updating another stream onto the same subjects overlaps as well.
    simple_stream(&js, "U", &["u.>"]).await;
    let r = api(
        &client,
        "$JS.API.STREAM.UPDATE.U",
        r#"{"name":"U","subjects":["u.>","orders.x"]}"#,
    )
    .await;
    expect_api_error(&r, 400, 10065);
    // `>` also overlaps the JetStream API: refused before any overlap check, as
    // nats-server does (hostile_nats/internal_state.rs has the reserved spaces).
    let r = api(
        &client,
        "$JS.API.STREAM.CREATE.T",
        r#"{"name":"T","subjects":[">"]}"#,
    )
    .await;
    expect_api_error(&r, 500, 10052);
    // Disjoint subjects are fine.
    simple_stream(&js, "V", &["orders.new.deep"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_last_sequence_10071() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "S", &["s.>"]).await;
    for _ in 0..3 {
        publish(&js, "s.x", "x").await;
    }
    // Raw: the PubAck JSON carries the error.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Expected-Last-Sequence", "1");
    let reply = within(
        "publish request",
        client.request_with_headers("s.x", headers, "y".into()),
    )
    .await
    .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(expect_api_error(&r, 400, 10071), "wrong last sequence: 3");

    // async-nats.
    let ack = within(
        "publish",
        js.send_publish(
            "s.x",
            PublishMessage::build()
                .payload("z".into())
                .expected_last_sequence(2),
        ),
    )
    .await
    .unwrap();
    let err = within("pub ack", ack.into_future())
        .await
        .expect_err("wrong last sequence");
    assert_eq!(err.kind(), PublishErrorKind::WrongLastSequence);
    assert!(err.to_string().contains("wrong last sequence"), "{err}");
    let source = std::error::Error::source(&err).unwrap();
    let e = source
        .downcast_ref::<async_nats::jetstream::Error>()
        .unwrap();
    assert_eq!(e.error_code(), ErrorCode::STREAM_WRONG_LAST_SEQUENCE);
    assert_eq!(
        e.to_string(),
        "wrong last sequence: 3 (code 400, error code 10071)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_codes() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = create_stream(
        &js,
        stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            max_message_size: 10,
            ..Default::default()
        },
    )
    .await;
    publish(&js, "s.x", "small").await;

    // No such message: 10037.
    let r = api(&client, "$JS.API.STREAM.MSG.GET.S", r#"{"seq":99}"#).await;
    assert_eq!(expect_api_error(&r, 404, 10037), "no message found");
    within("get", s.get_raw_message(99))
        .await
        .expect_err("no message 99");

    // Message too large for the stream: 10054.
    let reply = within(
        "publish request",
        client.request("s.x", "this is longer than ten bytes".into()),
    )
    .await
    .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(
        expect_api_error(&r, 400, 10054),
        "message size exceeds maximum allowed"
    );

    // Consumer with a durable name that differs from the one in the subject.
    let r = api(
        &client,
        "$JS.API.CONSUMER.DURABLE.CREATE.S.A",
        r#"{"stream_name":"S","config":{"durable_name":"B","ack_policy":"explicit"}}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&r, 400, 10017),
        "consumer name in subject does not match durable name in request"
    );

    // A consumer name taken with a different configuration.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit"},"action":"create"}"#,
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.S.C",
        r#"{"stream_name":"S","config":{"durable_name":"C","ack_policy":"explicit","max_deliver":3},"action":"create"}"#,
    )
    .await;
    assert_eq!(expect_api_error(&r, 400, 10148), "consumer already exists");
    // Updating a consumer that does not exist.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.S.D",
        r#"{"stream_name":"S","config":{"durable_name":"D","ack_policy":"explicit"},"action":"update"}"#,
    )
    .await;
    assert_eq!(expect_api_error(&r, 400, 10149), "consumer does not exist");
}

/// What Junction does not serve is refused with nats-server's bad-request
/// answer, never left unanswered: snapshots and restores, templates,
/// `CONSUMER.LEADER.STEPDOWN` and unknown requests (docs/nats.md, JetStream
/// compatibility). A stream asking for `compression: s2` is made and stored
/// uncompressed, and says so.
#[tokio::test(flavor = "multi_thread")]
async fn unsupported_requests_are_bad_requests_10003() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "UNSUP", &["unsup.>"]).await;
    for subject in [
        "$JS.API.STREAM.SNAPSHOT.UNSUP",
        "$JS.API.STREAM.RESTORE.UNSUP",
        "$JS.API.STREAM.TEMPLATE.NAMES",
        "$JS.API.CONSUMER.LEADER.STEPDOWN.UNSUP.c",
        "$JS.API.NO.SUCH.THING",
    ] {
        let r = api(&client, subject, "{}").await;
        assert_eq!(expect_api_error(&r, 400, 10003), "bad request", "{subject}");
    }
    let r = api(
        &client,
        "$JS.API.STREAM.CREATE.S2",
        r#"{"name":"S2","subjects":["s2.>"],"compression":"s2"}"#,
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["config"]["compression"], "none", "{r}");
}
