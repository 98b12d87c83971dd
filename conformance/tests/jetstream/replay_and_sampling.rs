//! `replay_policy: original` delivers a consumer's messages at the pace they
//! were stored (pull and push alike), where `instant` delivers them at once;
//! the policy is reported and cannot change. `sample_freq` is kept and
//! reported, and the share of acks it names is published as ack metrics on
//! `$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>`; one that is not a
//! percentage is 10095.
//!
//! Pace is checked loosely: messages stored over at least 1.2 s take at
//! least 0.8 s to replay (nothing is asserted about how fast anything is).

use crate::support::{
    ack_sync, api, connect, create_consumer, expect_api_error, publish, pull_n, simple_stream,
    within,
};
use async_nats::jetstream::consumer::{ReplayPolicy, pull};
use futures::StreamExt;
use junction_conformance::broker;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_original_keeps_the_pace_messages_were_stored_at() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "RO", &["ro.>"]).await;
    // Six messages over about 1.25 s.
    let started = Instant::now();
    for n in 0..6 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        publish(&js, "ro.x", format!("{n}")).await;
    }
    let span = started.elapsed();
    assert!(span >= Duration::from_millis(1200));

    let original = create_consumer(
        &stream,
        pull::Config {
            durable_name: Some("orig".into()),
            replay_policy: ReplayPolicy::Original,
            ..Default::default()
        },
    )
    .await;
    let instant = create_consumer(
        &stream,
        pull::Config {
            durable_name: Some("inst".into()),
            ..Default::default()
        },
    )
    .await;
    let info = api(&client, "$JS.API.CONSUMER.INFO.RO.orig", "").await;
    assert_eq!(info["config"]["replay_policy"], "original", "{info}");

    let t0 = Instant::now();
    let got = pull_n(&original, 6).await;
    let replayed = t0.elapsed();
    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["0", "1", "2", "3", "4", "5"]);
    assert!(
        replayed >= Duration::from_millis(800),
        "6 messages stored over {span:?} replayed in {replayed:?}"
    );
    // The same messages, instant: all six (no pace to keep; not timed).
    assert_eq!(pull_n(&instant, 6).await.len(), 6);

    // The policy cannot change (as nats-server).
    let v = api(
        &client,
        "$JS.API.CONSUMER.CREATE.RO.orig",
        r#"{"stream_name":"RO","config":{"durable_name":"orig","ack_policy":"explicit"}}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&v, 500, 10012),
        "replay policy can not be updated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_freq_is_reported_and_sampled_acks_publish_metrics() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "SF", &["sf.>"]).await;
    for n in 0..3 {
        publish(&js, "sf.x", format!("{n}")).await;
    }
    let mut metrics = client
        .subscribe("$JS.EVENT.METRIC.CONSUMER.ACK.SF.>")
        .await
        .unwrap();
    client.flush().await.unwrap();
    let c = create_consumer(
        &stream,
        pull::Config {
            durable_name: Some("all".into()),
            sample_frequency: 100,
            ..Default::default()
        },
    )
    .await;
    let info = api(&client, "$JS.API.CONSUMER.INFO.SF.all", "").await;
    assert_eq!(info["config"]["sample_freq"], "100", "{info}");
    for m in pull_n(&c, 3).await {
        ack_sync(&m).await;
    }
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let m = within("an ack metric", metrics.next()).await.unwrap();
        assert_eq!(m.subject.as_str(), "$JS.EVENT.METRIC.CONSUMER.ACK.SF.all");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], "io.nats.jetstream.metric.v1.consumer_ack", "{v}");
        assert_eq!(v["deliveries"], 1, "{v}");
        assert!(v["ack_time"].as_u64().is_some(), "{v}");
        seqs.push(v["stream_seq"].as_u64().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3]);

    // "50%" is taken and shown back as sent; anything else is refused.
    let v = api(
        &client,
        "$JS.API.CONSUMER.CREATE.SF.half",
        r#"{"stream_name":"SF","config":{"durable_name":"half","ack_policy":"explicit","sample_freq":"50%"}}"#,
    )
    .await;
    assert_eq!(v["config"]["sample_freq"], "50%", "{v}");
    let v = api(
        &client,
        "$JS.API.CONSUMER.CREATE.SF.bad",
        r#"{"stream_name":"SF","config":{"durable_name":"bad","ack_policy":"explicit","sample_freq":"often"}}"#,
    )
    .await;
    expect_api_error(&v, 400, 10095);
}
