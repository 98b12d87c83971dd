//! Consumer pause (nats-server 2.11): `$JS.API.CONSUMER.PAUSE.<stream>.<consumer>`
//! with `pause_until` holds a consumer's deliveries (pull requests wait, a push
//! consumer's deliveries wait) until that time or until a resume (a pause
//! request without it); `CONSUMER.INFO` reports `paused`, `pause_remaining` and
//! `config.pause_until`; `pause_until` in a create request starts it paused; an
//! advisory goes to `$JS.EVENT.ADVISORY.CONSUMER.PAUSE.<stream>.<consumer>`.
//! A pull request to a push consumer is answered `409 Consumer is push based`.

use crate::support::{api, connect, expect_api_error, publish_n, raw_pull, simple_stream, within};
use futures::StreamExt;
use junction_conformance::broker;
use std::time::{Duration, SystemTime};

fn rfc3339_in(d: Duration) -> String {
    humantime::format_rfc3339_nanos(SystemTime::now() + d).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pull_consumer_delivers_nothing_until_resumed() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "PS", &["ps.>"]).await;
    publish_n(&js, "ps.x", 5).await;
    let created = api(
        &client,
        "$JS.API.CONSUMER.CREATE.PS.c",
        r#"{"stream_name":"PS","config":{"durable_name":"c","ack_policy":"explicit"}}"#,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.PS.c")
        .await
        .unwrap();

    // Paused for a minute.
    let until = rfc3339_in(Duration::from_secs(60));
    let v = api(
        &client,
        "$JS.API.CONSUMER.PAUSE.PS.c",
        &serde_json::json!({ "pause_until": until }).to_string(),
    )
    .await;
    assert_eq!(
        v["type"],
        "io.nats.jetstream.api.v1.consumer_pause_response"
    );
    assert_eq!(v["paused"], true, "{v}");
    assert!(v["pause_remaining"].as_i64().unwrap_or(0) > 0, "{v}");
    let info = api(&client, "$JS.API.CONSUMER.INFO.PS.c", "").await;
    assert_eq!(info["paused"], true, "{info}");
    assert!(info["pause_remaining"].as_i64().unwrap_or(0) > 0, "{info}");
    assert!(info["config"]["pause_until"].is_string(), "{info}");
    let adv = within("pause advisory", advisories.next()).await.unwrap();
    let adv: serde_json::Value = serde_json::from_slice(&adv.payload).unwrap();
    assert_eq!(adv["type"], "io.nats.jetstream.advisory.v1.consumer_pause");
    assert_eq!(adv["paused"], true);
    assert_eq!(
        (adv["stream"].as_str(), adv["consumer"].as_str()),
        (Some("PS"), Some("c"))
    );

    // Nothing comes while paused: a pull request runs out.
    let pull = raw_pull(&client, "PS", "c", r#"{"batch":5,"expires":500000000}"#).await;
    assert!(pull.messages.is_empty());
    let status = pull.status.expect("the request ends with a status");
    assert_eq!(status.status.map(|s| s.as_u16()), Some(408));
    // A no_wait request ends at once.
    let pull = raw_pull(&client, "PS", "c", r#"{"batch":5,"no_wait":true}"#).await;
    assert!(pull.messages.is_empty());

    // A request waiting when the consumer is resumed gets the messages.
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.PS.c",
            inbox,
            r#"{"batch":5,"expires":10000000000}"#.into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    let v = api(&client, "$JS.API.CONSUMER.PAUSE.PS.c", "").await;
    assert_eq!(v["paused"], false, "{v}");
    let mut got = 0;
    while got < 5 {
        let m = within("a delivery after the resume", sub.next())
            .await
            .unwrap();
        if m.status.is_none() {
            got += 1;
        }
    }
    let info = api(&client, "$JS.API.CONSUMER.INFO.PS.c", "").await;
    assert!(info.get("paused").is_none_or(|p| p == false), "{info}");
    let adv = within("resume advisory", advisories.next()).await.unwrap();
    let adv: serde_json::Value = serde_json::from_slice(&adv.payload).unwrap();
    assert_eq!(adv["paused"], false, "{adv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_ends_by_itself_at_pause_until() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "PE", &["pe.>"]).await;
    publish_n(&js, "pe.x", 3).await;
    let mut advisories = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.PE.c")
        .await
        .unwrap();
    client.flush().await.unwrap();
    // Created paused for a second (`pause_until` in the create request).
    let created = api(
        &client,
        "$JS.API.CONSUMER.CREATE.PE.c",
        &serde_json::json!({"stream_name":"PE","config":{
            "durable_name":"c","ack_policy":"explicit",
            "pause_until": rfc3339_in(Duration::from_secs(1))}})
        .to_string(),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    assert_eq!(created["paused"], true, "{created}");
    // A request made while paused that waits long enough gets all three.
    let pull = raw_pull(&client, "PE", "c", r#"{"batch":3,"expires":8000000000}"#).await;
    assert_eq!(pull.messages.len(), 3);
    let info = api(&client, "$JS.API.CONSUMER.INFO.PE.c", "").await;
    assert!(info.get("paused").is_none_or(|p| p == false), "{info}");
    // Advisories: paused by the create, then the pause ran out (as nats-server
    // announces it).
    for want in [true, false] {
        let adv = within("pause advisory", advisories.next()).await.unwrap();
        let adv: serde_json::Value = serde_json::from_slice(&adv.payload).unwrap();
        assert_eq!(adv["paused"], want, "{adv}");
        assert!(adv["pause_until"].is_string(), "{adv}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_push_consumer_delivers_after_the_resume() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "PP", &["pp.>"]).await;
    let mut sub = client.subscribe("deliver.pp").await.unwrap();
    client.flush().await.unwrap();
    let created = api(
        &client,
        "$JS.API.CONSUMER.CREATE.PP.p",
        &serde_json::json!({"stream_name":"PP","config":{
            "durable_name":"p","ack_policy":"none","deliver_subject":"deliver.pp",
            "pause_until": rfc3339_in(Duration::from_secs(60))}})
        .to_string(),
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    publish_n(&js, "pp.x", 4).await;
    // Nothing within half a second while paused.
    let early = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
    assert!(early.is_err(), "delivered while paused: {early:?}");
    let v = api(&client, "$JS.API.CONSUMER.PAUSE.PP.p", "{}").await;
    assert_eq!(v["paused"], false, "{v}");
    for _ in 0..4 {
        let m = within("a push delivery after the resume", sub.next())
            .await
            .unwrap();
        assert!(m.subject.as_str().starts_with("pp."));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_errors_and_a_pull_request_to_a_push_consumer() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "PX", &["px.>"]).await;
    let v = api(&client, "$JS.API.CONSUMER.PAUSE.PX.nobody", "").await;
    expect_api_error(&v, 404, 10014);
    let v = api(&client, "$JS.API.CONSUMER.PAUSE.NOPE.c", "").await;
    expect_api_error(&v, 404, 10059);
    let v = api(&client, "$JS.API.CONSUMER.PAUSE.PX.c", "{not json").await;
    expect_api_error(&v, 400, 10025);

    // A pull request to a push consumer: nats-server's 409.
    let _sub = client.subscribe("deliver.px").await.unwrap();
    let created = api(
        &client,
        "$JS.API.CONSUMER.CREATE.PX.push",
        r#"{"stream_name":"PX","config":{"durable_name":"push","ack_policy":"explicit","deliver_subject":"deliver.px"}}"#,
    )
    .await;
    assert!(created.get("error").is_none(), "{created}");
    let pull = raw_pull(&client, "PX", "push", r#"{"batch":1,"expires":1000000000}"#).await;
    let status = pull.status.expect("a status");
    assert_eq!(status.status.map(|s| s.as_u16()), Some(409));
    assert_eq!(
        status.description.as_deref(),
        Some("Consumer is push based")
    );
}
