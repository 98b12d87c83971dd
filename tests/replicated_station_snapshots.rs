//! Snapshots of replicated stations (R3), four real `junction` processes with
//! a snapshot every 20 log entries (`JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES`):
//! - every replica takes snapshots (streamed from its store to a file under
//!   `replica-snapshots/`) and purges its log before them;
//! - a replica moved to the fourth node, whose log no longer starts at 1
//!   anywhere, catches up from the leader's snapshot plus the log after it: the
//!   same messages, byte for byte, and the consumer group with its position
//!   (a consumer that acknowledged 100 messages goes on at 101 when the new
//!   node leads);
//! - a replica killed and restarted after its log was purged comes back with
//!   its copy and catches up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, consumer, stream};
use cluster::{Cluster, get_json, http, until};
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// (seq, msg id, payload base64) of node `i`'s own copy.
async fn copy(c: &Cluster, i: usize) -> Vec<(u64, String, String)> {
    cluster::replica_messages(c.nodes[i].http, "snap")
        .await
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["msg_id"].as_str().unwrap_or("").to_string(),
                m["payload_base64"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn replica_page(c: &Cluster, i: usize) -> Value {
    get_json(c.nodes[i].http, "/v1/stations/snap/replica?limit=1").await
}

async fn publish_range(js: &jetstream::Context, range: std::ops::Range<u32>) {
    for n in range {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("m{n}").as_str());
        headers.insert("Order", n.to_string().as_str());
        let mut tries = 0;
        loop {
            let sent = js
                .publish_with_headers("snap.x", headers.clone(), format!("payload {n}").into())
                .await;
            let acked = match sent {
                Ok(wait) => wait.await.is_ok(),
                Err(_) => false,
            };
            match acked {
                true => break,
                false => {
                    tries += 1;
                    assert!(tries < 100, "m{n} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_catches_up_from_a_snapshot_after_the_log_was_purged() {
    let mut c = Cluster::start(
        4,
        &[
            ("JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES", "20"),
            ("RUST_LOG", "warn,junction=info,junction_cluster=info"),
        ],
    )
    .await;
    let js0 = jetstream::new(async_nats::connect(c.nats_url(0)).await.unwrap());
    // Placed on node 1 (where it is made) and two others.
    js0.create_stream(stream::Config {
        name: "snap".into(),
        subjects: vec!["snap.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    until("the station has 3 current replicas", || async {
        cluster::station_placement(c.nodes[0].http, "snap")
            .await
            .0
            .len()
            == 3
    })
    .await;
    let first: BTreeSet<String> = cluster::station_placement(c.nodes[0].http, "snap").await.0;
    let spare = (0..4).find(|i| !first.contains(&c.nodes[*i].name)).unwrap();

    // One publish (and so one log entry) at a time: 300 entries, 15 snapshots.
    publish_range(&js0, 0..300).await;
    let consumer: consumer::PullConsumer = js0
        .get_stream("snap")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = consumer.fetch().max_messages(100).messages().await.unwrap();
    let mut n = 0;
    while let Some(m) = got.next().await {
        m.unwrap().double_ack().await.unwrap();
        n += 1;
    }
    assert_eq!(n, 100);
    publish_range(&js0, 300..340).await;

    // Every replica snapshotted and purged the log before its snapshot.
    let holders: Vec<usize> = (0..4).filter(|i| *i != spare).collect();
    for i in &holders {
        until("the replica took a snapshot and purged its log", || async {
            let p = replica_page(&c, *i).await;
            p["snapshot_index"].as_u64().is_some_and(|s| s >= 200)
                && p["purged_index"].as_u64().is_some_and(|p| p > 1)
        })
        .await;
        let dir = c
            .dir
            .path()
            .join(&c.nodes[*i].name)
            .join("store/replica-snapshots");
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(!files.is_empty(), "no snapshot file in {}", dir.display());
    }

    // Move a follower's replica to the spare node: it can only catch up from
    // a snapshot (no replica's log starts at 1 any more).
    let (_, leader) = cluster::station_placement(c.nodes[0].http, "snap").await;
    let leader = leader.unwrap();
    let moved = first.iter().find(|n| **n != leader).unwrap().clone();
    let base = format!("http://127.0.0.1:{}", c.nodes[0].http);
    let resp = http()
        .post(format!("{base}/v1/stations/snap/peer-remove"))
        .json(&serde_json::json!({"peer": moved}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        204,
        "{}",
        resp.text().await.unwrap()
    );
    let spare_name = c.nodes[spare].name.clone();
    until("the spare node is a current replica", || async {
        cluster::station_placement(c.nodes[0].http, "snap")
            .await
            .0
            .contains(&spare_name)
    })
    .await;
    let leader_at = c.index_of(&leader);
    let want = copy(&c, leader_at).await;
    assert_eq!(want.len(), 340);
    until("the spare node has every message", || async {
        copy(&c, spare).await.len() == 340
    })
    .await;
    assert_eq!(
        copy(&c, spare).await,
        want,
        "the new replica's copy differs"
    );
    let p = replica_page(&c, spare).await;
    assert!(
        p["snapshot_index"].as_u64().is_some(),
        "the new replica was sent a snapshot: {p}"
    );

    // Publishing goes on; every replica keeps up.
    publish_range(&js0, 340..360).await;

    // The new replica leads: the consumer goes on from its position (101).
    for _ in 0..30 {
        if cluster::station_placement(c.nodes[0].http, "snap")
            .await
            .1
            .as_deref()
            == Some(spare_name.as_str())
        {
            break;
        }
        let _ = http()
            .post(format!("{base}/v1/stations/snap/stepdown"))
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(
        cluster::station_placement(c.nodes[0].http, "snap")
            .await
            .1
            .as_deref(),
        Some(spare_name.as_str()),
        "the new replica never led"
    );
    let consumer: consumer::PullConsumer = js0
        .get_stream("snap")
        .await
        .unwrap()
        .get_consumer("workers")
        .await
        .unwrap();
    let mut got = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let first_again = got.next().await.unwrap().unwrap();
    assert_eq!(first_again.info().unwrap().stream_sequence, 101);

    // A replica restarted after its log was purged comes back and catches up.
    let restarted = holders
        .iter()
        .copied()
        .find(|i| c.nodes[*i].name != moved && c.nodes[*i].name != spare_name)
        .unwrap();
    c.kill(restarted).await;
    publish_range(&js0, 360..380).await;
    c.restart(restarted).await;
    until("the restarted replica catches up", || async {
        copy(&c, restarted).await.len() == 380
    })
    .await;
    let want = copy(&c, spare).await;
    assert_eq!(copy(&c, restarted).await, want);
}
