//! Sealed streams and republish, as nats-server 2.10:
//! - a stream is sealed by an update (`sealed: true`); a create with it is
//!   10052. Sealed, it takes no publishes, deletes or purges (10109 "invalid
//!   operation on sealed stream"), reports `deny_delete`/`deny_purge`, cannot
//!   be unsealed (10052), and its consumers still read what it holds;
//! - `republish {src, dest, headers_only}` publishes each stored message
//!   again on `dest` with `Nats-Stream`, `Nats-Subject`, `Nats-Sequence`,
//!   `Nats-Time-Stamp` and `Nats-Last-Sequence` (the previous sequence on the
//!   same subject); headers only sends `Nats-Msg-Size` and no payload; a
//!   destination inside the stream's subjects is 10052 (a cycle).

use crate::support::{
    api, connect, create_consumer, expect_api_error, publish_n, pull_n, simple_stream, within,
};
use async_nats::jetstream::consumer::pull;
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_stream_refuses_writes_deletes_and_purges() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "SE", &["se.>"]).await;
    publish_n(&js, "se.x", 3).await;

    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.SE2",
        r#"{"name":"SE2","subjects":["se2.>"],"sealed":true}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&v, 500, 10052),
        "stream configuration for create can not be sealed"
    );

    let v = api(
        &client,
        "$JS.API.STREAM.UPDATE.SE",
        r#"{"name":"SE","subjects":["se.>"],"sealed":true}"#,
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["config"]["sealed"], true, "{v}");
    assert_eq!(v["config"]["deny_delete"], true, "{v}");
    assert_eq!(v["config"]["deny_purge"], true, "{v}");

    // A publish is refused with nats-server's PubAck error.
    let ack = within(
        "publish",
        client.request("se.x", Bytes::from_static(b"late")),
    )
    .await
    .unwrap();
    let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
    expect_api_error(&ack, 400, 10109);
    let v = api(&client, "$JS.API.STREAM.PURGE.SE", "").await;
    assert_eq!(
        expect_api_error(&v, 400, 10109),
        "invalid operation on sealed stream"
    );
    let v = api(&client, "$JS.API.STREAM.MSG.DELETE.SE", r#"{"seq":1}"#).await;
    expect_api_error(&v, 400, 10109);
    let v = api(
        &client,
        "$JS.API.STREAM.UPDATE.SE",
        r#"{"name":"SE","subjects":["se.>"],"sealed":false}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&v, 500, 10052),
        "stream configuration update can not unseal a sealed stream"
    );

    // What it holds is still read.
    let info = api(&client, "$JS.API.STREAM.INFO.SE", "").await;
    assert_eq!(info["state"]["messages"], 3, "{info}");
    let c = create_consumer(
        &stream,
        pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pull_n(&c, 3).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_copies_stored_messages_with_their_position() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.RP",
        r#"{"name":"RP","subjects":["rp.>"],"republish":{"src":"rp.*","dest":"copy.{{wildcard(1)}}"}}"#,
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(
        v["config"]["republish"]["dest"], "copy.{{wildcard(1)}}",
        "{v}"
    );
    let mut copies = client.subscribe("copy.>").await.unwrap();
    client.flush().await.unwrap();
    for (subject, body) in [
        ("rp.a", "1"),
        ("rp.a", "2"),
        ("rp.b", "3"),
        ("rp.a.deep", "4"),
    ] {
        within("publish", js.publish(subject, Bytes::from(body)))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // rp.a.deep does not match rp.*: three copies.
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = within("a republished message", copies.next())
            .await
            .unwrap();
        let h = m.headers.clone().expect("headers");
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string()).unwrap_or_default();
        assert_eq!(get("Nats-Stream"), "RP");
        assert!(!get("Nats-Time-Stamp").is_empty());
        got.push((
            m.subject.to_string(),
            get("Nats-Subject"),
            get("Nats-Sequence"),
            get("Nats-Last-Sequence"),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
    }
    let want = [
        ("copy.a", "rp.a", "1", "0", "1"),
        ("copy.a", "rp.a", "2", "1", "2"),
        ("copy.b", "rp.b", "3", "0", "3"),
    ];
    let want: Vec<(String, String, String, String, String)> = want
        .iter()
        .map(|(a, b, c, d, e)| {
            (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.to_string(),
                e.to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);

    // Headers only.
    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.RH",
        r#"{"name":"RH","subjects":["rh.>"],"republish":{"src":">","dest":"rhcopy.>","headers_only":true}}"#,
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let mut copies = client.subscribe("rhcopy.>").await.unwrap();
    client.flush().await.unwrap();
    within("publish", js.publish("rh.x", Bytes::from_static(b"hello")))
        .await
        .unwrap()
        .await
        .unwrap();
    let m = within("headers-only copy", copies.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "rhcopy.rh.x");
    assert!(m.payload.is_empty());
    let h = m.headers.expect("headers");
    assert_eq!(h.get("Nats-Msg-Size").map(|v| v.as_str()), Some("5"));

    // A destination inside the stream's own subjects: a cycle.
    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.RC",
        r#"{"name":"RC","subjects":["rc.>"],"republish":{"src":">","dest":"rc.copy.>"}}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&v, 500, 10052),
        "stream configuration for republish destination forms a cycle"
    );
}
