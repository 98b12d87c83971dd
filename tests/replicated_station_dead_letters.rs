//! Dead letters of a replicated station (R3), three real `junction` processes:
//! a message a consumer terminates (async-nats `AckKind::Term`) is kept in the
//! station's dead-letter station on every replica (it goes through the
//! station's log), so it is still there after the leader is killed; re-sent
//! into the station (HTTP `POST /v1/stations/{s}/dls/resend` with `"target":
//! "station"`) through the new leader it goes through the station's group like
//! any publish, so it lands on every replica with the next sequence, and the
//! dead-letter station is empty afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, AckKind, consumer};
use cluster::{Cluster, get_json, http, until};
use futures::StreamExt;
use serde_json::{Value, json};

/// (seq, payload base64) of node `i`'s own copy.
async fn copy(c: &Cluster, i: usize, name: &str) -> Vec<(u64, String)> {
    let page = get_json(
        c.nodes[i].http,
        &format!("/v1/stations/{name}/replica?limit=1000"),
    )
    .await;
    page["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["payload_base64"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_resent_into_a_replicated_station_reaches_every_replica() {
    let mut c = Cluster::start(3, &[]).await;
    let base = format!("http://127.0.0.1:{}", c.nodes[0].http);
    let made = http()
        .post(format!("{base}/v1/stations"))
        .json(&json!({
            "name": "payments",
            "subjects": ["payments.>"],
            "replicas": 3,
            "dead_letter": {"terminated": true}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        made.status().as_u16(),
        201,
        "{}",
        made.text().await.unwrap()
    );
    until("the station has a leader", || async {
        get_json(c.nodes[0].http, "/v1/stations/payments").await["cluster"]["leader"].is_string()
    })
    .await;

    let js = jetstream::new(async_nats::connect(c.nats_url(1)).await.unwrap());
    let ack = js
        .publish("payments.card", "declined".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    let consumer: consumer::PullConsumer = js
        .get_stream("payments")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("billing".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = consumer.fetch().max_messages(1).messages().await.unwrap();
    let m = got.next().await.unwrap().unwrap();
    m.ack_with(AckKind::Term).await.unwrap();

    until("the terminated message is a dead letter", || async {
        let v = get_json(c.nodes[2].http, "/v1/stations/payments/dls/messages").await;
        v["messages"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;

    // The leader dies: the dead letter is on the other replicas too.
    let leader = get_json(c.nodes[0].http, "/v1/stations/payments").await["cluster"]["leader"]
        .as_str()
        .unwrap()
        .to_string();
    let old = c.index_of(&leader);
    c.kill(old).await;
    let on = (0..3).find(|i| *i != old).unwrap();
    until("a new leader has the dead letter", || async {
        let v = get_json(c.nodes[on].http, "/v1/stations/payments").await;
        let led = v["cluster"]["leader"].as_str().is_some_and(|l| l != leader);
        let dls = get_json(c.nodes[on].http, "/v1/stations/payments/dls/messages").await;
        led && dls["messages"].as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    let base = format!("http://127.0.0.1:{}", c.nodes[on].http);

    let task: Value = http()
        .post(format!("{base}/v1/stations/payments/dls/resend"))
        .json(&json!({"ids": "all", "target": "station"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = task["id"].as_u64().expect("a resend task");
    let path = format!("/v1/stations/payments/dls/resend/{id}");
    until("the resend task is done", || async {
        get_json(c.nodes[on].http, &path).await["state"] == "done"
    })
    .await;
    let done = get_json(c.nodes[on].http, &path).await;
    assert_eq!(done["republished"], 1, "{done}");
    assert_eq!(done["failed"], 0, "{done}");

    // Stored through the group: sequence 2 on every replica, same bytes (the
    // old leader, back, catches up).
    c.restart(old).await;
    until("every replica has the re-sent message", || async {
        let mut all = true;
        for i in 0..3 {
            all &= copy(&c, i, "payments").await.len() == 2;
        }
        all
    })
    .await;
    let first = copy(&c, on, "payments").await;
    assert_eq!(first[1].0, 2);
    assert_eq!(first[1].1, first[0].1, "the same payload");
    for i in 0..3 {
        assert_eq!(copy(&c, i, "payments").await, first, "node {i} differs");
    }
    let dls = get_json(c.nodes[on].http, "/v1/stations/payments/dls/messages").await;
    assert_eq!(dls["messages"], json!([]), "{dls}");

    // Another dead letter, purged (through the log, on every replica).
    let js = jetstream::new(async_nats::connect(c.nats_url(on)).await.unwrap());
    js.publish("payments.card", "declined again".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let consumer: consumer::PullConsumer = js
        .get_stream("payments")
        .await
        .unwrap()
        .get_consumer("billing")
        .await
        .unwrap();
    let mut got = consumer
        .fetch()
        .max_messages(10)
        .expires(std::time::Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = got.next().await {
        m.ack_with(AckKind::Term).await.unwrap();
    }
    until("the second dead letter is kept", || async {
        let v = get_json(c.nodes[on].http, "/v1/stations/payments/dls/messages").await;
        v["messages"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let purged: Value = http()
        .delete(format!("{base}/v1/stations/payments/dls/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(purged["purged"].as_u64().unwrap_or(0) >= 1, "{purged}");
    let dls = get_json(c.nodes[on].http, "/v1/stations/payments/dls/messages").await;
    assert_eq!(dls["messages"], json!([]), "{dls}");
}
