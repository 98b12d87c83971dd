//! Stream and consumer action advisories on `$JS.EVENT.ADVISORY.>`, in
//! nats-server's JSON: `STREAM.CREATED|UPDATED|DELETED.<stream>`
//! (`io.nats.jetstream.advisory.v1.stream_action`, `action` create, modify,
//! delete) and `CONSUMER.CREATED|DELETED.<stream>.<consumer>`
//! (`…consumer_action`), also for an ephemeral consumer removed when idle.

use crate::support::{api, connect, within};
use futures::StreamExt;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_and_consumer_actions_publish_advisories() {
    let b = broker().await;
    let (client, _js) = connect(&b).await;
    let mut advisories = client.subscribe("$JS.EVENT.ADVISORY.>").await.unwrap();
    client.flush().await.unwrap();
    for (subject, body) in [
        (
            "$JS.API.STREAM.CREATE.AV",
            r#"{"name":"AV","subjects":["av.>"]}"#,
        ),
        (
            "$JS.API.STREAM.UPDATE.AV",
            r#"{"name":"AV","subjects":["av.>"],"description":"changed"}"#,
        ),
        (
            "$JS.API.CONSUMER.CREATE.AV.c",
            r#"{"stream_name":"AV","config":{"durable_name":"c","ack_policy":"explicit"}}"#,
        ),
        ("$JS.API.CONSUMER.DELETE.AV.c", ""),
        (
            "$JS.API.CONSUMER.CREATE.AV",
            r#"{"stream_name":"AV","config":{"name":"eph","ack_policy":"explicit","inactive_threshold":200000000}}"#,
        ),
    ] {
        let v = api(&client, subject, body).await;
        assert!(v.get("error").is_none(), "{subject}: {v}");
    }
    let mut seen = Vec::new();
    // Five so far, then the ephemeral's removal when idle.
    for _ in 0..6 {
        let m = within("an advisory", advisories.next()).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["id"].as_str().map(str::len), Some(22), "{v}");
        assert!(v["timestamp"].is_string(), "{v}");
        assert_eq!(v["stream"], "AV", "{v}");
        seen.push((
            m.subject.to_string(),
            v["type"].as_str().unwrap_or_default().to_string(),
            v["action"].as_str().unwrap_or_default().to_string(),
            v["consumer"].as_str().unwrap_or_default().to_string(),
        ));
    }
    let want = [
        (
            "$JS.EVENT.ADVISORY.STREAM.CREATED.AV",
            "stream_action",
            "create",
            "",
        ),
        (
            "$JS.EVENT.ADVISORY.STREAM.UPDATED.AV",
            "stream_action",
            "modify",
            "",
        ),
        (
            "$JS.EVENT.ADVISORY.CONSUMER.CREATED.AV.c",
            "consumer_action",
            "create",
            "c",
        ),
        (
            "$JS.EVENT.ADVISORY.CONSUMER.DELETED.AV.c",
            "consumer_action",
            "delete",
            "c",
        ),
        (
            "$JS.EVENT.ADVISORY.CONSUMER.CREATED.AV.eph",
            "consumer_action",
            "create",
            "eph",
        ),
        (
            "$JS.EVENT.ADVISORY.CONSUMER.DELETED.AV.eph",
            "consumer_action",
            "delete",
            "eph",
        ),
    ];
    let want: Vec<(String, String, String, String)> = want
        .iter()
        .map(|(s, t, a, c)| {
            (
                s.to_string(),
                format!("io.nats.jetstream.advisory.v1.{t}"),
                a.to_string(),
                c.to_string(),
            )
        })
        .collect();
    assert_eq!(seen, want);

    // A create repeated with the same definition changes nothing: no advisory.
    let v = api(
        &client,
        "$JS.API.STREAM.CREATE.AV",
        r#"{"name":"AV","subjects":["av.>"],"description":"changed"}"#,
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    let v = api(&client, "$JS.API.STREAM.DELETE.AV", "").await;
    assert!(v.get("error").is_none(), "{v}");
    let m = within("stream deleted", advisories.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "$JS.EVENT.ADVISORY.STREAM.DELETED.AV");
    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(v["action"], "delete");
}
