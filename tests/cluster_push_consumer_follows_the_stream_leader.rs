//! A durable JetStream push consumer on an R3 stream, in a cluster of three real
//! `junction` processes, with async-nats: the consumer is made through one node,
//! its subscriber is on another, and publishes come through a third; every
//! message reaches the subscriber. When the stream's leader is killed -9, the
//! new leader's node takes over the delivery (within its scan), and every
//! message published after the kill reaches the subscriber too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process;

use crate::support::cluster;

use async_nats::jetstream::{self, stream};
use cluster::{Cluster, get_json, until};
use futures::StreamExt;
use std::collections::BTreeSet;
use std::time::Duration;

async fn leader(c: &Cluster, i: usize) -> Option<String> {
    let v = get_json(c.nodes[i].http, "/v1/stations/pc").await;
    let reps = v["cluster"]["replicas"].as_array()?.clone();
    let healthy = reps.len() == 3
        && reps
            .iter()
            .all(|r| r["online"] == true && r["current"] == true);
    healthy
        .then(|| v["cluster"]["leader"].as_str().map(str::to_string))
        .flatten()
}

async fn publish_n(js: &jetstream::Context, from: usize, to: usize) {
    cluster::publish_ids(js, "pc.x", from, to).await;
}

/// Reads (and acks) deliveries until every one of `want` was seen.
async fn receive_all(
    sub: &mut async_nats::Subscriber,
    nc: &async_nats::Client,
    want: &BTreeSet<String>,
) {
    let mut seen = BTreeSet::new();
    let deadline = std::time::Instant::now() + process::GUARD;
    while !want.is_subset(&seen) {
        assert!(
            std::time::Instant::now() < deadline,
            "missing {:?}",
            want.difference(&seen).collect::<Vec<_>>()
        );
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await else {
            continue;
        };
        if m.status.is_some() {
            continue;
        }
        if let Some(reply) = m.reply.clone() {
            assert!(reply.starts_with("$JS.ACK.pc.pd."), "{reply}");
            nc.publish(reply, "".into()).await.unwrap();
        }
        seen.insert(String::from_utf8_lossy(&m.payload).into_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_on_an_r3_stream_delivers_through_a_leader_kill() {
    let mut c = Cluster::start(3, &[]).await;
    let js0 = jetstream::new(async_nats::connect(c.nats_url(0)).await.unwrap());
    js0.create_stream(stream::Config {
        name: "pc".into(),
        subjects: vec!["pc.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    until("3 current replicas", || async {
        leader(&c, 0).await.is_some()
    })
    .await;
    let lead = leader(&c, 0).await.unwrap();
    let l = c.index_of(&lead);
    // The subscriber and the publisher on the two followers.
    let (sub_node, pub_node) = ((l + 1) % 3, (l + 2) % 3);
    let nc = async_nats::connect(c.nats_url(sub_node)).await.unwrap();
    let mut sub = nc.subscribe("deliver.pc").await.unwrap();
    nc.flush().await.unwrap();
    let js_pub = jetstream::new(async_nats::connect(c.nats_url(pub_node)).await.unwrap());
    js_pub
        .get_stream("pc")
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::push::Config {
            durable_name: Some("pd".into()),
            deliver_subject: "deliver.pc".into(),
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        })
        .await
        .unwrap();
    publish_n(&js_pub, 0, 50).await;
    let want: BTreeSet<String> = (0..50).map(|n| format!("m{n}")).collect();
    receive_all(&mut sub, &nc, &want).await;

    c.kill(l).await;
    publish_n(&js_pub, 50, 100).await;
    let want: BTreeSet<String> = (50..100).map(|n| format!("m{n}")).collect();
    receive_all(&mut sub, &nc, &want).await;
}
