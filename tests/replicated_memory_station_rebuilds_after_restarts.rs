//! A replicated station with memory storage (`storage: memory`,
//! `num_replicas: 3`) on three real `junction` processes, with a snapshot every
//! 20 log entries (`JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES`), so that logs
//! are purged under it:
//! - every replica holds every acknowledged message in memory;
//! - a replica killed -9 and started again rebuilds its copy from its own
//!   snapshot and the log after it (on disk), byte for byte;
//! - all three nodes killed -9 at once and started again: every acknowledged
//!   message is back (an ack means the publish is fsynced in the Raft log of a
//!   quorum, also for memory storage), the sequence goes on without a gap or a
//!   reuse, and a consumer's acknowledged position is kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, consumer, stream};
use cluster::{Cluster, get_json, until};
use futures::StreamExt;
use serde_json::Value;

async fn js(c: &Cluster, i: usize) -> jetstream::Context {
    jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap())
}

/// (sequence, msg id, payload) of every message in node `i`'s own copy of
/// `mem` (`None` while it has none).
async fn copy_of(c: &Cluster, i: usize) -> Option<Vec<(u64, String, String)>> {
    let resp = cluster::http()
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/mem/replica?limit=1000",
            c.nodes[i].http
        ))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: Value = resp.json().await.ok()?;
    Some(
        v["messages"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["seq"].as_u64().unwrap_or(0),
                    m["msg_id"].as_str().unwrap_or("").to_string(),
                    m["payload_base64"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

/// Publishes `m<from>`…`m<to - 1>` (each retried until acknowledged); each
/// must be stored at sequence n + 1.
async fn publish_n(js: &jetstream::Context, from: usize, to: usize) {
    let seqs = cluster::publish_ids(js, "mem.x", from, to).await;
    let want: Vec<u64> = (from as u64 + 1..=to as u64).collect();
    assert_eq!(seqs, want, "stored once, in order");
}

fn ids(copy: &[(u64, String, String)]) -> Vec<String> {
    copy.iter().map(|m| m.1.clone()).collect()
}

fn want(to: usize) -> Vec<String> {
    (0..to).map(|n| format!("m{n}")).collect()
}

/// Whether node `i` shows the station with 3 replicas online and current.
async fn healthy(c: &Cluster, i: usize) -> bool {
    let v = get_json(c.nodes[i].http, "/v1/stations/mem").await;
    let reps = v["cluster"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    reps.len() == 3
        && reps
            .iter()
            .all(|r| r["online"] == true && r["current"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_memory_station_is_rebuilt_from_its_snapshot_and_log_after_restarts() {
    let mut c = Cluster::start(3, &[("JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES", "20")]).await;
    let js0 = js(&c, 0).await;
    let mut created = js0
        .create_stream(stream::Config {
            name: "mem".into(),
            subjects: vec!["mem.>".into()],
            num_replicas: 3,
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    until("3 current replicas", || async { healthy(&c, 0).await }).await;
    let info = created.info().await.unwrap();
    assert_eq!(info.config.storage, stream::StorageType::Memory);
    assert_eq!(info.config.num_replicas, 3);
    publish_n(&js0, 0, 100).await;
    let mut reference = None;
    for i in 0..3 {
        until("every replica has the 100 messages", || async {
            copy_of(&c, i).await.is_some_and(|m| ids(&m) == want(100))
        })
        .await;
        let copy = copy_of(&c, i).await.unwrap();
        assert_eq!(*reference.get_or_insert(copy.clone()), copy, "node {i}");
    }
    // A consumer that acknowledged the first 30.
    let consumer: consumer::PullConsumer = js0
        .get_stream("mem")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("c".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(30).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }

    // One replica killed and started again: rebuilt from its snapshot and log.
    let v = get_json(c.nodes[0].http, "/v1/stations/mem").await;
    let leader = v["cluster"]["leader"].as_str().unwrap().to_string();
    let follower = (0..3).find(|i| c.nodes[*i].name != leader).unwrap();
    let snap = get_json(c.nodes[follower].http, "/v1/stations/mem/replica?limit=1").await;
    assert!(
        snap["purged_index"].as_u64().is_some(),
        "the follower's log was purged under a snapshot before the restart: {snap}"
    );
    c.kill(follower).await;
    let other = (0..3).find(|i| *i != follower).unwrap();
    let js_other = js(&c, other).await;
    publish_n(&js_other, 100, 110).await;
    c.restart(follower).await;
    until("the restarted replica has all 110 messages", || async {
        copy_of(&c, follower)
            .await
            .is_some_and(|m| ids(&m) == want(110))
    })
    .await;

    // All three killed -9 at once, and started again.
    for i in 0..3 {
        c.kill(i).await;
    }
    for i in 0..3 {
        c.restart(i).await;
    }
    until("3 current replicas after the restart", || async {
        healthy(&c, 1).await
    })
    .await;
    let mut reference = None;
    for i in 0..3 {
        until("every replica has the 110 messages again", || async {
            copy_of(&c, i).await.is_some_and(|m| ids(&m) == want(110))
        })
        .await;
        let copy = copy_of(&c, i).await.unwrap();
        assert_eq!(*reference.get_or_insert(copy.clone()), copy, "node {i}");
    }
    let js1 = js(&c, 1).await;
    publish_n(&js1, 110, 120).await;
    let nc = async_nats::connect(c.nats_url(2)).await.unwrap();
    let answer = nc
        .request("$JS.API.CONSUMER.INFO.mem.c", "".into())
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(v["ack_floor"]["stream_seq"], 30, "{v}");
    let info = js1
        .get_stream("mem")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.state.messages, 120);
    assert_eq!(info.state.first_sequence, 1);
    assert_eq!(info.state.last_sequence, 120);
}
