//! MQTT state across a cluster of three real `junction` processes (rumqttc):
//! - a retained message set on node 1 is given to a subscriber that subscribes
//!   later on node 3; cleared on node 2, it is given to nobody on node 3 any more;
//! - a node that was down while retained messages were set and cleared gets them
//!   from its peers when it comes back: the one set meanwhile is given by it, the
//!   one cleared meanwhile is not (it does not bring it back to the others either);
//! - a client that connects on node 2 with a client id connected on node 1 takes
//!   it over: node 1 closes the older connection, as one broker would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process;

use crate::support::cluster;

use cluster::{Cluster, mqtt, until, until_packet};
use rumqttc::{Event, Packet, QoS};
use std::collections::BTreeMap;
use std::time::Duration;

/// Sets (or, with an empty payload, clears) a retained message on `port`, and
/// waits for its PUBACK.
async fn retain(port: u16, topic: &str, payload: &str) {
    let (client, mut events) = mqtt(port, &format!("setter-{}", rand_id()));
    client
        .publish(topic, QoS::AtLeastOnce, true, payload.to_string())
        .await
        .unwrap();
    until_packet(&mut events, "PUBACK", |p| matches!(p, Packet::PubAck(_))).await;
    let _ = client.disconnect().await;
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    u64::from(std::process::id()) * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

/// The retained messages a new subscription to `filter` on `port` is given
/// (topic → payload): those that arrive within a second of the SUBACK.
async fn retained_on(port: u16, filter: &str) -> BTreeMap<String, String> {
    let (client, mut events) = mqtt(port, &format!("reader-{}", rand_id()));
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let mut got = BTreeMap::new();
    let mut subacked = false;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let wait = if subacked {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(10)
            };
            match tokio::time::timeout(wait, events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => subacked = true,
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) if p.retain => {
                    got.insert(
                        p.topic.clone(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    })
    .await;
    let _ = client.disconnect().await;
    got
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_cluster_wide_and_a_returning_node_catches_up() {
    let mut c = Cluster::start(3, &[]).await;
    let (m1, m2) = (c.nodes[0].mqtt, c.nodes[1].mqtt);

    // Set on node 1, given on node 3.
    retain(m1, "r/a", "first").await;
    retain(m1, "r/keep", "kept").await;
    let m3 = c.nodes[2].mqtt;
    until("node 3 gives r/a and r/keep", || async {
        retained_on(m3, "r/#").await == map(&[("r/a", "first"), ("r/keep", "kept")])
    })
    .await;
    // Cleared on node 2: node 3 gives it no more.
    retain(m2, "r/a", "").await;
    until("node 3 no longer gives r/a", || async {
        retained_on(m3, "r/#").await == map(&[("r/keep", "kept")])
    })
    .await;

    // Node 3 is down while r/b is set and r/keep cleared.
    c.kill(2).await;
    retain(m1, "r/b", "while away").await;
    retain(m2, "r/keep", "").await;
    c.restart(2).await;
    let m3 = c.nodes[2].mqtt;
    until("the returning node gives r/b and not r/keep", || async {
        retained_on(m3, "r/#").await == map(&[("r/b", "while away")])
    })
    .await;
    // Its stale r/keep did not come back to the others.
    assert_eq!(retained_on(m1, "r/#").await, map(&[("r/b", "while away")]));
    assert_eq!(retained_on(m2, "r/#").await, map(&[("r/b", "while away")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_connecting_on_another_node_takes_over_the_older_connection() {
    let c = Cluster::start(3, &[]).await;
    let (first, mut first_events) = mqtt(c.nodes[0].mqtt, "device-7");
    first.subscribe("x/y", QoS::AtMostOnce).await.unwrap();
    until_packet(&mut first_events, "first SUBACK", |p| {
        matches!(p, Packet::SubAck(_))
    })
    .await;

    let (_second, mut second_events) = mqtt(c.nodes[1].mqtt, "device-7");
    until_packet(&mut second_events, "second CONNACK", |p| {
        matches!(p, Packet::ConnAck(_))
    })
    .await;
    // Node 1 closes the older connection.
    let closed = tokio::time::timeout(process::GUARD, async {
        loop {
            if first_events.poll().await.is_err() {
                return true;
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
    // The newer one stays.
    let (probe, mut probe_events) = mqtt(c.nodes[1].mqtt, "probe");
    probe
        .publish("x/z", QoS::AtLeastOnce, false, "ping")
        .await
        .unwrap();
    until_packet(&mut probe_events, "probe PUBACK", |p| {
        matches!(p, Packet::PubAck(_))
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second_events.poll())
            .await
            .map_or(true, |r| r.is_ok()),
        "the newer connection stays up"
    );
}
