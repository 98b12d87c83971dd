//! A replicated station (R3) in a cluster of three real `junction` processes:
//! - a JetStream stream created with `num_replicas: 3` (async-nats) has a copy on
//!   every node; STREAM.INFO on any node names its leader and its two other
//!   replicas, and `GET /v1/stations/{name}` shows `cluster.leader` and three
//!   replicas;
//! - publishes made on every node (the leader and its followers, each with a
//!   `Nats-Msg-Id`) are acknowledged with sequences 1, 2, … and every node's own
//!   copy (`GET /v1/stations/{name}/replica`) has exactly those messages, in
//!   that order, byte for byte;
//! - the leader is killed with SIGKILL: another replica takes over, publishes on
//!   the surviving nodes are acknowledged again, nothing acknowledged is lost,
//!   and after the old leader restarts it catches up to the same copy;
//! - a durable pull consumer that acknowledged (AckSync) the first 50 messages
//!   on the old leader goes on after the failover with every later message and
//!   none of those 50 (its position reached the other replicas through the
//!   station's log);
//! - a publish sent again with the same `Nats-Msg-Id` after the failover is
//!   answered as a duplicate (the de-duplication window is replicated state);
//! - while a replica is down the station shows as under-replicated (its HTTP
//!   view's `cluster.under_replicated`, `GET /v1/cluster` `under_replicated`),
//!   and no longer once the node is back and caught up;
//! - leadership is handed to another replica on request (HTTP
//!   `POST /v1/stations/{name}/stepdown` on any node, JetStream
//!   `$JS.API.STREAM.LEADER.STEPDOWN`), and publishes go on;
//! - `replicas: 5` on three nodes is refused (JetStream 10023 insufficient
//!   resources), and so is `flush_interval` (lazy fsync) on a replicated station.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, consumer, stream};
use cluster::{Cluster, get_json, http, until};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn js(c: &Cluster, i: usize) -> jetstream::Context {
    jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap())
}

/// Every message of node `i`'s own copy: seq → (msg id, payload base64).
async fn replica(c: &Cluster, i: usize, name: &str) -> BTreeMap<u64, (String, String)> {
    cluster::replica_messages(c.nodes[i].http, name)
        .await
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                (
                    m["msg_id"].as_str().unwrap_or("").to_string(),
                    m["payload_base64"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

async fn leader(c: &Cluster, i: usize, name: &str) -> Option<String> {
    let v = get_json(c.nodes[i].http, &format!("/v1/stations/{name}")).await;
    v["cluster"]["leader"].as_str().map(str::to_string)
}

async fn publish(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
) -> Result<jetstream::publish::PublishAck, String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    let ack = js
        .publish_with_headers(subject.to_string(), headers, id.to_string().into())
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r3_station_keeps_every_acknowledged_message_through_a_leader_kill() {
    let mut c = Cluster::start(3, &[]).await;
    let on1 = js(&c, 0).await;
    on1.create_stream(stream::Config {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();

    // Every node has a replica, and they agree on a leader.
    until("every node has a replica and knows the leader", || async {
        let mut leaders = Vec::new();
        for i in 0..3 {
            let v = get_json(c.nodes[i].http, "/v1/stations/orders").await;
            if v["cluster"]["replicas"].as_array().map_or(0, Vec::len) != 3 {
                return false;
            }
            leaders.push(v["cluster"]["leader"].clone());
        }
        !leaders[0].is_null() && leaders.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    let info = get_json(c.nodes[1].http, "/v1/stations/orders").await;
    assert_eq!(info["replicas"], 3, "{info}");

    // STREAM.INFO on a node names the leader and the two other replicas.
    let mut s = js(&c, 2).await.get_stream("orders").await.unwrap();
    let si = s.info().await.unwrap().clone();
    let cl = si.cluster.clone().expect("cluster info");
    let lead = cl.leader.clone().unwrap();
    assert_eq!(cl.replicas.len(), 2, "{cl:?}");
    assert!(cl.replicas.iter().all(|r| r.name != lead));

    // Publishes on every node, in turn.
    let ctxs = [js(&c, 0).await, js(&c, 1).await, js(&c, 2).await];
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for n in 0..90 {
        let id = format!("m{n}");
        let ack = publish(&ctxs[n % 3], "orders.new", &id).await.unwrap();
        assert!(!ack.duplicate);
        assert!(acked.insert(ack.sequence, id).is_none());
    }
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=90).collect::<Vec<_>>()
    );
    until("every replica has the 90 messages", || async {
        for i in 0..3 {
            if replica(&c, i, "orders").await.len() != 90 {
                return false;
            }
        }
        true
    })
    .await;
    let first = replica(&c, 0, "orders").await;
    for (seq, id) in &acked {
        assert_eq!(&first[seq].0, id);
    }
    for i in 1..3 {
        assert_eq!(replica(&c, i, "orders").await, first, "node {i} differs");
    }

    // A durable consumer reads and acknowledges the first 50 (AckSync).
    let consumer: consumer::PullConsumer = ctxs[1]
        .get_stream("orders")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    // CONSUMER.INFO names the stream's leader and its other replicas.
    let mut consumer = consumer;
    let ci = consumer.info().await.unwrap().clone();
    let ccl = ci.cluster.expect("consumer cluster info");
    assert_eq!(ccl.leader.as_deref(), Some(lead.as_str()));
    assert_eq!(ccl.replicas.len(), 2);
    let mut got = consumer.fetch().max_messages(50).messages().await.unwrap();
    let mut n = 0;
    while let Some(m) = got.next().await {
        let m = m.unwrap();
        assert_eq!(m.info().unwrap().stream_sequence, n + 1);
        m.double_ack().await.unwrap();
        n += 1;
    }
    assert_eq!(n, 50);
    // Positions reach the replicas in batches of about 50 ms: settle well past
    // that before the leader goes.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // Kill the leader; another replica takes over.
    let old = c.index_of(&lead);
    c.kill(old).await;
    let alive: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    until("a new leader is elected", || async {
        match leader(&c, alive[0], "orders").await {
            Some(l) => l != lead && leader(&c, alive[1], "orders").await == Some(l),
            None => false,
        }
    })
    .await;
    let survivors = [js(&c, alive[0]).await, js(&c, alive[1]).await];
    for n in 90..150 {
        let id = format!("m{n}");
        let ack = publish(&survivors[n % 2], "orders.new", &id).await.unwrap();
        assert!(!ack.duplicate, "{id}");
        assert!(acked.insert(ack.sequence, id).is_none());
    }
    // A message sent again after the failover is a duplicate.
    let again = publish(&survivors[0], "orders.new", "m10").await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, 11);
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=150).collect::<Vec<_>>()
    );

    // The consumer goes on from where it was acknowledged on the old leader:
    // every later message, none of the 50 acknowledged ones.
    let consumer: consumer::PullConsumer = survivors[1]
        .get_stream("orders")
        .await
        .unwrap()
        .get_consumer("workers")
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    // A hang guard only: each round waits at most a second for messages.
    for _ in 0..120 {
        if seen.range(51..=150).count() == 100 {
            break;
        }
        let mut msgs = consumer
            .fetch()
            .max_messages(100)
            .expires(std::time::Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = msgs.next().await {
            seen.insert(m.info().unwrap().stream_sequence);
            m.ack().await.unwrap();
        }
    }
    assert_eq!(seen.range(51..=150).count(), 100, "{seen:?}");
    assert!(
        seen.range(..=50).next().is_none(),
        "acknowledged messages delivered again: {:?}",
        seen.range(..=50).collect::<Vec<_>>()
    );

    // With a replica down the station is under-replicated, in its view and in
    // `/v1/cluster`, on every surviving node.
    for i in &alive {
        until("the station shows as under-replicated", || async {
            let v = get_json(c.nodes[*i].http, "/v1/stations/orders").await;
            let cl = get_json(c.nodes[*i].http, "/v1/cluster").await;
            v["cluster"]["under_replicated"] == true
                && cl["under_replicated"] == serde_json::json!(["orders"])
        })
        .await;
    }

    // The old leader comes back and catches up.
    c.restart(old).await;
    until("the restarted node catches up", || async {
        replica(&c, old, "orders").await.len() == 150
    })
    .await;
    until("the station is fully replicated again", || async {
        let mut ok = true;
        for i in 0..3 {
            let v = get_json(c.nodes[i].http, "/v1/stations/orders").await;
            let cl = get_json(c.nodes[i].http, "/v1/cluster").await;
            ok &= v["cluster"]["under_replicated"] == false
                && cl["under_replicated"] == serde_json::json!([]);
        }
        ok
    })
    .await;
    let copy = replica(&c, alive[0], "orders").await;
    for (seq, id) in &acked {
        assert_eq!(&copy[seq].0, id, "seq {seq}");
    }
    for i in 0..3 {
        assert_eq!(replica(&c, i, "orders").await, copy, "node {i} differs");
    }

    // Leadership handed over on request: over HTTP (asked of any node), then
    // with JetStream's STREAM.LEADER.STEPDOWN.
    let before = leader(&c, 0, "orders").await.unwrap();
    let follower = (0..3).find(|i| c.nodes[*i].name != before).unwrap();
    let resp = http()
        .post(format!(
            "http://127.0.0.1:{}/v1/stations/orders/stepdown",
            c.nodes[follower].http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let asked: Value = resp.json().await.unwrap();
    assert_ne!(asked["asked"], before.as_str());
    until("the leader changes after a step-down", || async {
        leader(&c, 0, "orders").await.is_some_and(|l| l != before)
    })
    .await;
    let before = leader(&c, 0, "orders").await.unwrap();
    let nc = async_nats::connect(c.nats_url(0)).await.unwrap();
    let answer = nc
        .request("$JS.API.STREAM.LEADER.STEPDOWN.orders", "".into())
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["success"], true, "{answer}");
    until(
        "the leader changes after STREAM.LEADER.STEPDOWN",
        || async { leader(&c, 0, "orders").await.is_some_and(|l| l != before) },
    )
    .await;
    // Publishes go on under the new leader.
    let ack = publish(&ctxs[0], "orders.new", "after-stepdown")
        .await
        .unwrap();
    assert_eq!(ack.sequence, 151);

    // What a replicated station refuses.
    let err = on1
        .create_stream(stream::Config {
            name: "five".into(),
            subjects: vec!["five.>".into()],
            num_replicas: 5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insufficient resources"), "{err}");
    let resp = http()
        .post(format!("http://127.0.0.1:{}/v1/stations", c.nodes[1].http))
        .json(&json!({"name": "lazy", "subjects": ["lazy.>"], "replicas": 3, "flush_interval_ms": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    assert!(body.to_string().contains("flush_interval"), "{body}");
}
