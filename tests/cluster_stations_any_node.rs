//! Stations in a cluster of three real `junction` processes: a station is defined
//! through the meta group and held by the node it was created on; every node
//! shows it and takes publishes, reads and consumers for it:
//! - a JetStream stream created on node 1 (async-nats) is listed and answered by
//!   STREAM.INFO on nodes 2 and 3, with `cluster.leader` naming node 1, and by
//!   `GET /v1/stations/{name}` on node 3 (`"node": "n1"`); HTTP on node 3 reads
//!   its messages and fetches through a group made there (passed to node 1);
//! - JetStream publishes on node 2, an MQTT QoS 1 publish on node 3 (rumqttc) and
//!   an HTTP produce on node 2 are acknowledged with the station's sequences
//!   (1, 2, … in the order each publisher sent them) and stored on node 1;
//! - a durable pull consumer created and read on node 3 gets every message once,
//!   and its acks (made on node 3) reach node 1: CONSUMER.INFO on node 2 shows
//!   nothing pending;
//! - creating the same name with other subjects on node 2 is refused (stream name
//!   in use), overlapping subjects too; deleting it on node 3 removes it everywhere;
//! - with the holder killed, a publish on another node is not acknowledged (a
//!   JetStream error, HTTP 503 `node_unreachable`, no PUBACK for MQTT 3.1.1);
//!   an HTTP read of its messages answers 503 `node_unreachable` naming it;
//!   after a restart every acknowledged message is there and publishes are taken
//!   again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process;

use crate::support::cluster;

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use cluster::{Cluster, get_json, http, mqtt, until, until_packet};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

async fn js(c: &Cluster, i: usize) -> jetstream::Context {
    jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap())
}

async fn station_on(c: &Cluster, i: usize, name: &str) -> (u16, Value) {
    let resp = http()
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/{name}",
            c.nodes[i].http
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_made_on_one_node_is_seen_written_and_consumed_on_every_node() {
    let c = Cluster::start(3, &[]).await;
    let on1 = js(&c, 0).await;
    on1.create_stream(stream::Config {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();

    // Seen on every node (the definition reaches the other nodes within a meta
    // heartbeat): listed, STREAM.INFO with the holder as leader, HTTP.
    for i in [1, 2] {
        let on = js(&c, i).await;
        until("the other node knows the stream", || async {
            on.get_stream("orders").await.is_ok()
        })
        .await;
        let mut stream = on.get_stream("orders").await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.config.subjects, ["orders.>"]);
        assert_eq!(
            info.cluster
                .as_ref()
                .and_then(|c| c.leader.clone())
                .as_deref(),
            Some("n1"),
            "{:?}",
            info.cluster
        );
        let names: Vec<String> = on.stream_names().map(|n| n.unwrap()).collect().await;
        assert_eq!(names, ["orders"]);
    }
    let (status, body) = station_on(&c, 2, "orders").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["node"], "n1", "{body}");

    // JetStream publishes on node 2: acknowledged in order, by the stream on n1.
    let on2 = js(&c, 1).await;
    for i in 1..=50u64 {
        let ack = on2
            .publish(format!("orders.js.{i}"), Bytes::from(format!("js {i}")))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!((ack.stream.as_str(), ack.sequence), ("orders", i));
    }
    // Many in flight at once keep their order too.
    let mut acks = Vec::new();
    for i in 51..=150u64 {
        acks.push(
            on2.publish(format!("orders.js.{i}"), Bytes::from(format!("js {i}")))
                .await
                .unwrap(),
        );
    }
    for (i, ack) in (51..=150u64).zip(acks) {
        assert_eq!(ack.await.unwrap().sequence, i);
    }

    // MQTT QoS 1 on node 3: PUBACK once stored on n1.
    {
        let (client, mut events) = mqtt(c.nodes[2].mqtt, "pub-on-3");
        client
            .publish("orders/mqtt", rumqttc::QoS::AtLeastOnce, false, "from mqtt")
            .await
            .unwrap();
        until_packet(&mut events, "PUBACK", |p| {
            matches!(p, rumqttc::Packet::PubAck(_))
        })
        .await;
    }

    // HTTP produce on node 2: 201 with the station's sequence.
    let resp = http()
        .post(format!(
            "http://127.0.0.1:{}/v1/stations/orders/messages?subject=orders.http",
            c.nodes[1].http
        ))
        .body("from http")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let stored: Value = resp.json().await.unwrap();
    assert_eq!(stored["seq"], 152, "{stored}");

    // HTTP on node 3 reads the station's messages and consumes it through a
    // group, served by n1.
    let base3 = format!("http://127.0.0.1:{}/v1/stations/orders", c.nodes[2].http);
    let m: Value = http()
        .get(format!("{base3}/messages/152"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["seq"], 152, "{m}");
    assert_eq!(m["subject"], "orders.http", "{m}");
    let resp = http()
        .post(format!("{base3}/groups"))
        .json(&json!({"name": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    let got: Value = http()
        .post(format!("{base3}/groups/web/fetch"))
        .json(&json!({"batch": 10, "max_wait_ms": 2000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let msgs = got["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 10, "{got}");
    assert_eq!(msgs[0]["seq"], 1, "{got}");

    // Stored on n1: 152 messages.
    let mut held = on1.get_stream("orders").await.unwrap();
    let info = held.info().await.unwrap();
    assert_eq!(info.state.messages, 152);
    // Node 3 shows the count its holder reports (about once a second).
    until("node 3 shows 152 messages", || async {
        station_on(&c, 2, "orders").await.1["state"]["messages"] == 152
    })
    .await;

    // A durable pull consumer made and read on node 3, acked there.
    let on3 = js(&c, 2).await;
    let stream = on3.get_stream("orders").await.unwrap();
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("audit".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 152 {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let seq = m.info().unwrap().stream_sequence;
            assert!(seen.insert(seq), "message {seq} delivered twice");
            m.ack().await.unwrap();
        }
    }
    assert_eq!(seen.first(), Some(&1));
    assert_eq!(seen.last(), Some(&152));
    // The acks reached n1: nothing pending, seen from node 2.
    until("every ack applied on the holder", || async {
        let mut c2 = js(&c, 1)
            .await
            .get_stream("orders")
            .await
            .unwrap()
            .get_consumer::<consumer::pull::Config>("audit")
            .await
            .unwrap();
        let info = c2.info().await.unwrap();
        info.num_ack_pending == 0 && info.ack_floor.stream_sequence == 152
    })
    .await;

    // The name is taken cluster-wide; overlapping subjects are refused too.
    let err = on2
        .create_stream(stream::Config {
            name: "orders".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10058"), "{err}");
    let resp = http()
        .post(format!("http://127.0.0.1:{}/v1/stations", c.nodes[1].http))
        .json(&json!({"name": "overlap", "subjects": ["orders.eu.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);

    // Deleted on node 3: gone everywhere.
    assert!(on3.delete_stream("orders").await.unwrap().success);
    for i in 0..3 {
        until("the station is gone on every node", || async {
            station_on(&c, i, "orders").await.0 == 404
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_holder_is_down_publishes_are_refused_and_acknowledged_ones_survive() {
    let mut c = Cluster::start(3, &[]).await;
    let resp = http()
        .post(format!("http://127.0.0.1:{}/v1/stations", c.nodes[0].http))
        .json(&json!({"name": "events", "subjects": ["events.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    until("node 2 knows the station", || async {
        station_on(&c, 1, "events").await.0 == 200
    })
    .await;
    let on2 = js(&c, 1).await;
    for i in 1..=20u64 {
        let ack = on2
            .publish("events.a", Bytes::from(format!("{i}")))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, i);
    }

    c.kill(0).await;
    // Not acknowledged while the holder is down.
    let refused = on2
        .publish("events.a", Bytes::from_static(b"lost?"))
        .await
        .unwrap()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let resp = http()
        .post(format!(
            "http://127.0.0.1:{}/v1/stations/events/messages?subject=events.b",
            c.nodes[2].http
        ))
        .body("lost?")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "node_unreachable", "{body}");
    // MQTT 3.1.1 cannot refuse a publish: no PUBACK, the connection closes and
    // the device resends later.
    {
        use rumqttc::{Event, Packet, QoS};
        let (client, mut events) = mqtt(c.nodes[2].mqtt, "pub-while-down");
        client
            .publish("events/mqtt", QoS::AtLeastOnce, false, "lost?")
            .await
            .unwrap();
        let outcome = tokio::time::timeout(process::GUARD, async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => return "acknowledged",
                    Ok(_) => {}
                    Err(_) => return "closed",
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(outcome, "closed");
    }
    // A read of the station's data names its node; its definition is still
    // shown.
    let resp = http()
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/events/messages/1",
            c.nodes[2].http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "node_unreachable", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("n1"),
        "{body}"
    );
    assert_eq!(station_on(&c, 2, "events").await.0, 200);

    // Back: every acknowledged message is there, and publishes are taken again.
    c.restart(0).await;
    until("node 2 is linked to n1 again", || async {
        let v = get_json(c.nodes[1].http, "/v1/cluster").await;
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "n1" && n["online"] == true)
    })
    .await;
    let on1 = js(&c, 0).await;
    let mut held = on1.get_stream("events").await.unwrap();
    let info = held.info().await.unwrap();
    assert_eq!(info.state.messages, 20);
    assert_eq!(info.state.last_sequence, 20);
    let ack = on2
        .publish("events.a", Bytes::from_static(b"21"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_refusal_by_a_station_on_another_node_stores_and_delivers_nothing() {
    let c = Cluster::start(3, &[]).await;
    let resp = http()
        .post(format!("http://127.0.0.1:{}/v1/schemas", c.nodes[1].http))
        .json(&json!({"name": "order", "definition": {"type": "object", "required": ["id"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    until("node 1 knows the schema", || async {
        http()
            .get(format!(
                "http://127.0.0.1:{}/v1/schemas/order",
                c.nodes[0].http
            ))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200)
    })
    .await;
    let resp = http()
        .post(format!("http://127.0.0.1:{}/v1/stations", c.nodes[0].http))
        .json(&json!({"name": "checked", "subjects": ["checked.>"], "schema": "order"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    until("node 3 knows the station", || async {
        station_on(&c, 2, "checked").await.0 == 200
    })
    .await;

    // A core subscriber on node 3, where the publisher is too.
    let nats3 = async_nats::connect(c.nats_url(2)).await.unwrap();
    let mut live = nats3.subscribe("checked.>").await.unwrap();
    nats3.flush().await.unwrap();
    let on3 = jetstream::new(nats3.clone());
    let err = on3
        .publish("checked.a", Bytes::from_static(b"{\"no\":1}"))
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("schema"), "{err}");
    let ack = on3
        .publish("checked.a", Bytes::from_static(b"{\"id\":1}"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 1);
    // Only the valid one was delivered live.
    let first = tokio::time::timeout(process::GUARD, live.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first.payload[..], b"{\"id\":1}");
    let mut held = js(&c, 0).await.get_stream("checked").await.unwrap();
    assert_eq!(held.info().await.unwrap().state.messages, 1);
}
