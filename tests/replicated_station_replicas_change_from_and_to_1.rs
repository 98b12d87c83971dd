//! A station's `num_replicas` changed from 1 to 3 and back, in place, on a
//! cluster of three real `junction` processes, with async-nats as the client
//! (`STREAM.UPDATE`, as `nats stream edit --replicas` sends it):
//! - 1 → 3: the node that held the station's one copy seeds the new group
//!   from it; the two others catch up from its snapshot, so every replica has
//!   every message published before the change, and the consumer's position
//!   (delivered and acknowledged) is kept;
//! - the station then survives the loss of the node that held it: publishes
//!   go on through the others, and the consumer's position is still there;
//! - 3 → 1: the station keeps one copy, on its leader, with every message;
//!   publishes through the other nodes still reach it;
//! - 1 → 3 again: the copies come back and catch up;
//! - a station with a group, even of one copy, refuses lazy fsync
//!   (`flush_interval_ms`, 422).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process;

use crate::support::cluster;

use async_nats::jetstream::{self, consumer, stream};
use cluster::{Cluster, get_json, until};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;

async fn js(c: &Cluster, i: usize) -> jetstream::Context {
    jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap())
}

/// Message ids in node `i`'s own copy of `grow` (`None` when it has none).
async fn copy_of(c: &Cluster, i: usize) -> Option<Vec<String>> {
    cluster::replica_ids(c.nodes[i].http, "grow").await
}

/// (replica names, how many online and current, leader) as node `i` shows
/// the station.
async fn replicas_on(c: &Cluster, i: usize) -> (BTreeSet<String>, usize, String) {
    let v = get_json(c.nodes[i].http, "/v1/stations/grow").await;
    let reps = v["cluster"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names = reps
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    let good = reps
        .iter()
        .filter(|r| r["online"] == true && r["current"] == true)
        .count();
    let leader = v["cluster"]["leader"].as_str().unwrap_or("").to_string();
    (names, good, leader)
}

/// Publishes `m<from>`…`m<to - 1>` (each retried until acknowledged), each
/// stored once, in order, at sequence n + 1.
async fn publish_n(js: &jetstream::Context, from: usize, to: usize) {
    let seqs = cluster::publish_ids(js, "grow.x", from, to).await;
    let want: Vec<u64> = (from as u64 + 1..=to as u64).collect();
    assert_eq!(seqs, want, "stored once, in order");
}

fn ids(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|n| format!("m{n}")).collect()
}

/// (delivered stream sequence, ack floor stream sequence) of consumer `c`, as
/// node `i` answers `CONSUMER.INFO`.
async fn position(c: &Cluster, i: usize) -> Option<(u64, u64)> {
    let nc = async_nats::connect(c.nats_url(i)).await.ok()?;
    let answer = nc
        .request("$JS.API.CONSUMER.INFO.grow.c", "".into())
        .await
        .ok()?;
    let v: Value = serde_json::from_slice(&answer.payload).ok()?;
    Some((
        v["delivered"]["stream_seq"].as_u64()?,
        v["ack_floor"]["stream_seq"].as_u64()?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_change_from_1_to_3_and_back_in_place() {
    let mut c = Cluster::start(3, &[]).await;
    let js0 = js(&c, 0).await;
    let mut config = stream::Config {
        name: "grow".into(),
        subjects: vec!["grow.>".into()],
        num_replicas: 1,
        ..Default::default()
    };
    js0.create_stream(config.clone()).await.unwrap();
    publish_n(&js0, 0, 50).await;
    // A consumer that took 20 messages and acknowledged the first 10.
    let stream = js0.get_stream("grow").await.unwrap();
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(20).messages().await.unwrap();
    let mut taken = 0;
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        taken += 1;
        if taken <= 10 {
            m.double_ack().await.unwrap();
        }
    }
    assert_eq!(taken, 20);
    assert_eq!(position(&c, 0).await, Some((20, 10)));
    // One copy, not a replica of a group (404 `not_a_replica` everywhere).
    assert_eq!(copy_of(&c, 0).await, None);
    assert_eq!(copy_of(&c, 1).await, None);
    assert_eq!(
        js0.get_stream("grow")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        50
    );

    // 1 → 3, asked on another node than the one holding it.
    config.num_replicas = 3;
    let js1 = js(&c, 1).await;
    let info = js1.update_stream(config.clone()).await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    until("3 current replicas", || async {
        let (names, good, _) = replicas_on(&c, 0).await;
        names.len() == 3 && good == 3
    })
    .await;
    for i in 0..3 {
        until("every node has the 50 messages", || async {
            copy_of(&c, i).await == Some(ids(0, 50))
        })
        .await;
    }
    publish_n(&js1, 50, 60).await;
    assert_eq!(position(&c, 1).await, Some((20, 10)));

    // The node that held the one copy is lost: the station goes on.
    c.kill(0).await;
    let js2 = js(&c, 2).await;
    publish_n(&js2, 60, 70).await;
    until("the consumer's position on a surviving node", || async {
        position(&c, 2).await == Some((20, 10))
    })
    .await;
    for i in 1..3 {
        until("the surviving replicas have the 70 messages", || async {
            copy_of(&c, i).await == Some(ids(0, 70))
        })
        .await;
    }
    c.restart(0).await;
    until("3 current replicas again", || async {
        let (names, good, _) = replicas_on(&c, 1).await;
        names.len() == 3 && good == 3
    })
    .await;

    // 3 → 1: one copy stays, on the leader, with every message.
    config.num_replicas = 1;
    let info = js2.update_stream(config.clone()).await.unwrap();
    assert_eq!(info.config.num_replicas, 1);
    // (A node whose copy is retiring may show its old group for a while:
    // the keeper is the node that shows one replica, itself, leading.)
    let one = || async {
        for i in 0..3 {
            let (names, good, leader) = replicas_on(&c, i).await;
            if names.len() == 1 && good == 1 && names.contains(&leader) && c.nodes[i].name == leader
            {
                return Some(leader);
            }
        }
        None
    };
    until("one replica", || async { one().await.is_some() }).await;
    let keeper = one().await.unwrap();
    let k = c.index_of(&keeper);
    let other = (k + 1) % 3;
    assert_eq!(copy_of(&c, k).await, Some(ids(0, 70)));
    // Publishes through another node reach the one copy.
    let js_other = js(&c, other).await;
    publish_n(&js_other, 70, 80).await;
    assert_eq!(copy_of(&c, k).await, Some(ids(0, 80)));
    assert_eq!(position(&c, other).await, Some((20, 10)));

    // A station with a group refuses lazy fsync, even with one copy.
    let refused = cluster::http()
        .put(format!(
            "http://127.0.0.1:{}/v1/stations/grow",
            c.nodes[k].http
        ))
        .json(&serde_json::json!({
            "subjects": ["grow.>"],
            "replicas": 1,
            "flush_interval_ms": 100
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body.to_string().contains("flush_interval"),
        "a clear refusal: {body}"
    );

    // 1 → 3 again: the copies come back and catch up.
    config.num_replicas = 3;
    js_other.update_stream(config.clone()).await.unwrap();
    until("3 current replicas after growing again", || async {
        let (names, good, _) = replicas_on(&c, k).await;
        names.len() == 3 && good == 3
    })
    .await;
    publish_n(&js_other, 80, 90).await;
    for i in 0..3 {
        until("every node has the 90 messages", || async {
            copy_of(&c, i).await == Some(ids(0, 90))
        })
        .await;
    }
    // The consumer takes up where it was: the 10 unacknowledged ones come
    // again (after their ack wait), then the rest.
    let consumer: consumer::PullConsumer = js_other
        .get_stream("grow")
        .await
        .unwrap()
        .get_consumer("c")
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + process::GUARD;
    while seen.len() < 80 {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer got {} of 80 messages",
            seen.len()
        );
        if let Ok(mut batch) = consumer
            .fetch()
            .max_messages(100)
            .expires(std::time::Duration::from_secs(1))
            .messages()
            .await
        {
            while let Some(Ok(m)) = batch.next().await {
                seen.insert(String::from_utf8_lossy(&m.payload).to_string());
                let _ = m.ack().await;
            }
        }
    }
    let want: BTreeSet<String> = ids(10, 90).into_iter().collect();
    assert_eq!(seen, want);
}
