//! MQTT persistent sessions are cluster-wide (real `junction` processes,
//! rumqttc as the device and the publisher):
//! - a session made on node 1, with QoS 1 messages published for it on node 3
//!   while it is offline (each PUBACKed), resumes on node 2 after node 1 is
//!   killed: CONNACK says session present, and every queued message comes, in
//!   order, without subscribing again;
//! - a device that moves from node 1 to node 2 while connected takes its
//!   session along (node 1's connection is closed), gets there what is
//!   published on node 3, and after it leaves node 2 resumes on node 3 with
//!   what was queued meanwhile; a clean start then drops the session on every
//!   node;
//! - a shared subscription with members on two nodes gets each message once;
//! - an offline session whose node is killed still expires on time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use crate::support::mqtt_client;

use cluster::{Cluster, get_json, until};
use mqtt_client::Client;
use std::time::Duration;

async fn payloads(c: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let p = c.recv().await;
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
    }
    got
}

/// The replicated session store has a leader seen from node `i`.
async fn store_ready(c: &Cluster, i: usize) {
    until("the MQTT session store has a leader", || async {
        get_json(c.nodes[i].http, "/v1/stations/$MQTT_msgs").await["cluster"]["leader"].is_string()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_on_node_1_resumes_on_node_2_after_node_1_is_killed() {
    let mut c = Cluster::start(3, &[]).await;
    let (mut dev, ack) = Client::connect(c.nodes[0].mqtt, "truck-7", false).await;
    assert!(!ack.session_present);
    dev.subscribe("fleet/+/cmd").await;
    dev.disconnect().await;
    store_ready(&c, 2).await;
    let v = get_json(c.nodes[2].http, "/v1/stations/$MQTT_msgs").await;
    assert_eq!(v["replicas"], 3, "the session queues are replicated: {v}");

    let (mut publisher, _) = Client::connect(c.nodes[2].mqtt, "ops", true).await;
    for i in 0..20 {
        publisher
            .publish_acked("fleet/truck-7/cmd", false, &format!("cmd{i}"))
            .await;
    }
    // Every publish was PUBACKed: node 1, where the session was made, dies.
    c.kill(0).await;

    let killed = std::time::Instant::now();
    let (mut dev, ack) = Client::connect(c.nodes[1].mqtt, "truck-7", false).await;
    // Printed, not asserted: the session store's replicas elect a new leader.
    eprintln!(
        "CONNACK on node 2 {:?} after node 1 was killed",
        killed.elapsed()
    );
    assert!(ack.session_present, "the session resumed on node 2");
    let want: Vec<String> = (0..20).map(|i| format!("cmd{i}")).collect();
    assert_eq!(payloads(&mut dev, 20).await, want);
    // The subscription came with the session: a new publish arrives too.
    publisher
        .publish_acked("fleet/truck-7/cmd", false, "live")
        .await;
    assert_eq!(payloads(&mut dev, 1).await, ["live"]);
    // Nothing is delivered twice: the queue is empty once acknowledged.
    let extra = tokio::time::timeout(Duration::from_secs(2), dev.recv()).await;
    assert!(extra.is_err(), "nothing more: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_moves_between_nodes_with_its_session() {
    let c = Cluster::start(3, &[]).await;
    let (mut on1, _) = Client::connect(c.nodes[0].mqtt, "meter-1", false).await;
    on1.subscribe("grid/#").await;
    store_ready(&c, 1).await;

    // The same client id on node 2: node 1 closes its connection, and node 2
    // has the session.
    let (mut on2, ack) = Client::connect(c.nodes[1].mqtt, "meter-1", false).await;
    assert!(ack.session_present, "the session moved to node 2");
    let closed = tokio::time::timeout(mqtt_client::GUARD, async {
        loop {
            if on1.eventloop.poll().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "node 1 closed the taken-over connection");

    let (mut publisher, _) = Client::connect(c.nodes[2].mqtt, "grid-ops", true).await;
    publisher.publish_acked("grid/a", false, "p0").await;
    assert_eq!(payloads(&mut on2, 1).await, ["p0"]);
    on2.disconnect().await;

    for i in 1..=5 {
        publisher
            .publish_acked("grid/b", false, &format!("p{i}"))
            .await;
    }
    let (mut on3, ack) = Client::connect(c.nodes[2].mqtt, "meter-1", false).await;
    assert!(ack.session_present, "the session resumed on node 3");
    assert_eq!(payloads(&mut on3, 5).await, ["p1", "p2", "p3", "p4", "p5"]);
    on3.disconnect().await;

    // A clean start ends the session wherever it was: no session on any node,
    // and no queue left for it.
    let (clean, ack) = Client::connect(c.nodes[0].mqtt, "meter-1", true).await;
    assert!(!ack.session_present);
    clean.disconnect().await;
    until("the session's queue is gone", || async {
        let v = get_json(c.nodes[1].http, "/v1/stations/$MQTT_msgs/groups").await;
        v["groups"].as_array().is_some_and(|g| g.is_empty())
    })
    .await;
    let (back, ack) = Client::connect(c.nodes[1].mqtt, "meter-1", false).await;
    assert!(!ack.session_present, "no session after a clean start");
    back.disconnect().await;
}

/// An MQTT shared subscription (`$share/g/…`) with members on two nodes gets
/// every QoS 1 message published on a third node exactly once, spread over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscription_spans_nodes_and_delivers_each_message_once() {
    let c = Cluster::start(3, &[]).await;
    let (mut a, _) = Client::connect(c.nodes[0].mqtt, "worker-a", true).await;
    let (mut b, _) = Client::connect(c.nodes[1].mqtt, "worker-b", true).await;
    a.subscribe("$share/workers/jobs/#").await;
    b.subscribe("$share/workers/jobs/#").await;
    // Both members' interest has reached node 3 once probes published there
    // reach each of them; probes are not counted below.
    let (mut publisher, _) = Client::connect(c.nodes[2].mqtt, "dispatcher", true).await;
    let (mut probed_a, mut probed_b) = (false, false);
    let mut k = 0;
    while !(probed_a && probed_b) {
        k += 1;
        assert!(k < 500, "members on both nodes never both got a probe");
        publisher
            .publish_acked("jobs/probe", false, &format!("probe{k}"))
            .await;
        tokio::select! {
            _ = a.recv() => probed_a = true,
            _ = b.recv() => probed_b = true,
        }
    }
    for i in 0..200 {
        publisher
            .publish_acked("jobs/build", false, &format!("job{i}"))
            .await;
    }
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    while got_a.len() + got_b.len() < 200 {
        let (from_a, p) = tokio::select! {
            p = a.recv() => (true, p),
            p = b.recv() => (false, p),
        };
        let text = String::from_utf8(p.payload.to_vec()).unwrap();
        if text.starts_with("probe") {
            continue;
        }
        if from_a {
            got_a.push(text);
        } else {
            got_b.push(text);
        }
    }
    let mut all: Vec<String> = got_a.iter().chain(&got_b).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        200,
        "each message once: {} + {}",
        got_a.len(),
        got_b.len()
    );
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "spread over both nodes: {} on node 1, {} on node 2",
        got_a.len(),
        got_b.len()
    );
    eprintln!(
        "200 shared-subscription messages: {} on node 1, {} on node 2",
        got_a.len(),
        got_b.len()
    );
    // Nothing more comes to either.
    let extra = tokio::time::timeout(Duration::from_secs(2), async {
        tokio::select! { p = a.recv() => p, p = b.recv() => p }
    })
    .await;
    assert!(extra.is_err(), "no second copy: {extra:?}");
}

/// An offline session whose node is killed still expires on time: the session
/// store's leader discards it (its record and its queue's group) once its
/// expiry has passed (`[mqtt] max_session_expiry` = 2 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_session_of_a_killed_node_expires_on_time() {
    let mut c = Cluster::start(3, &[("JUNCTION_MQTT__MAX_SESSION_EXPIRY", "2")]).await;
    let (mut dev, _) = Client::connect(c.nodes[0].mqtt, "sensor-9", false).await;
    dev.subscribe("plant/#").await;
    dev.disconnect().await;
    store_ready(&c, 1).await;
    let port2 = c.nodes[1].http;
    let groups = || async move {
        get_json(port2, "/v1/stations/$MQTT_msgs/groups").await["groups"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(groups().await, 1, "the session's queue exists");
    c.kill(0).await;
    until("the session's queue and record are gone", || async {
        let records = get_json(port2, "/v1/stations/$MQTT_sess/messages").await;
        groups().await == 0 && records["messages"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    // The device comes back elsewhere to a new session.
    let (back, ack) = Client::connect(c.nodes[2].mqtt, "sensor-9", false).await;
    assert!(!ack.session_present, "the session expired");
    back.disconnect().await;
}
