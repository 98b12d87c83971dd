//! A replicated station (R3) in a cluster of four real `junction` processes
//! (re-placement time 3 s, `JUNCTION_CLUSTER_REPLICA_REPLACE_AFTER`):
//! - JetStream `STREAM.PEER.REMOVE` of a live replica moves it to the spare node,
//!   which catches up to the same messages; the station keeps 3 replicas;
//! - a replica's node killed for longer than the re-placement time is replaced
//!   by the spare with no operator action: the station is back to 3 reachable,
//!   current replicas, with every acknowledged message (including those
//!   published while the node was down) on each;
//! - with no spare left, `STREAM.PEER.REMOVE` is refused (10023 insufficient
//!   resources): the station never drops below its replica count;
//! - the node that was replaced comes back: its old copy is retired and it shows
//!   the station as held elsewhere.
//!
//! And with three nodes, no spare: a replica's node wiped (killed, data
//! directory deleted, started again under the same name) rejoins the cluster
//! under a new id and never answers for its old replica; its replica is placed
//! on it again under the new id, it catches up, and every replica ends with
//! every acknowledged message while publishing goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, stream};
use cluster::{Cluster, get_json, until};
use serde_json::Value;
use std::collections::BTreeSet;

async fn js(c: &Cluster, i: usize) -> jetstream::Context {
    jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap())
}

/// Message ids in node `i`'s own copy, in sequence order.
async fn copy_of(c: &Cluster, i: usize) -> Option<Vec<String>> {
    let resp = cluster::http()
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/heal/replica?limit=1000",
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
            .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
            .collect(),
    )
}

/// (replica names, all online and current) as node `i` shows the station.
async fn replicas_on(c: &Cluster, i: usize) -> (BTreeSet<String>, bool) {
    let v = get_json(c.nodes[i].http, "/v1/stations/heal").await;
    let reps = v["cluster"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names = reps
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    let healthy = reps.len() == 3
        && reps
            .iter()
            .all(|r| r["online"] == true && r["current"] == true);
    (names, healthy)
}

/// Publishes `m<from>`…`m<to - 1>`, each sent again (same `Nats-Msg-Id`) until
/// acknowledged, as a client does while a leader is being replaced.
async fn publish_n(js: &jetstream::Context, from: usize, to: usize) {
    for n in from..to {
        let id = format!("m{n}");
        let mut tries = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = match js
                .publish_with_headers("heal.x", headers, id.clone().into())
                .await
            {
                Ok(f) => f.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match ack {
                Ok(_) => break,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "{id} never acknowledged: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }
}

async fn peer_remove(c: &Cluster, i: usize, peer: &str) -> Value {
    let nc = async_nats::connect(c.nats_url(i)).await.unwrap();
    let answer = nc
        .request(
            "$JS.API.STREAM.PEER.REMOVE.heal",
            serde_json::to_vec(&serde_json::json!({ "peer": peer }))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    serde_json::from_slice(&answer.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_removed_or_lost_is_re_placed_on_a_spare_node() {
    let mut c = Cluster::start(4, &[("JUNCTION_CLUSTER_REPLICA_REPLACE_AFTER", "3s")]).await;
    js(&c, 0)
        .await
        .create_stream(stream::Config {
            name: "heal".into(),
            subjects: vec!["heal.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    until("three healthy replicas", || async {
        replicas_on(&c, 0).await.1
    })
    .await;
    let on1 = js(&c, 0).await;
    publish_n(&on1, 0, 50).await;

    // PEER.REMOVE of a replica that is not node 1 (where the test publishes).
    let (first, _) = replicas_on(&c, 0).await;
    let removed = first.iter().find(|n| *n != "n1").unwrap().clone();
    let spare = c
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .find(|n| !first.contains(n))
        .unwrap();
    let answer = peer_remove(&c, 0, &removed).await;
    assert_eq!(answer["success"], true, "{answer}");
    until("the replica moved to the spare node", || async {
        let (names, healthy) = replicas_on(&c, 0).await;
        healthy && names.contains(&spare) && !names.contains(&removed)
    })
    .await;
    let expected: Vec<String> = (0..50).map(|n| format!("m{n}")).collect();
    let spare_i = c.index_of(&spare);
    until("the spare caught up", || async {
        copy_of(&c, spare_i).await.as_deref() == Some(&expected[..])
    })
    .await;

    // A replica's node (not node 1) goes down for longer than 3 s.
    let (now, _) = replicas_on(&c, 0).await;
    let lost = now.iter().find(|n| *n != "n1").unwrap().clone();
    let lost_i = c.index_of(&lost);
    c.kill(lost_i).await;
    publish_n(&on1, 50, 80).await;
    until("the lost replica is re-placed", || async {
        let (names, healthy) = replicas_on(&c, 0).await;
        healthy && !names.contains(&lost) && names.contains(&removed)
    })
    .await;
    let expected: Vec<String> = (0..80).map(|n| format!("m{n}")).collect();
    let (names, _) = replicas_on(&c, 0).await;
    for n in &names {
        let i = c.index_of(n);
        until("every replica has all 80", || async {
            copy_of(&c, i).await.as_deref() == Some(&expected[..])
        })
        .await;
    }

    // No spare left (the fourth node is down): the station keeps 3 replicas.
    let answer = peer_remove(&c, 0, names.iter().next().unwrap()).await;
    assert_eq!(answer["error"]["err_code"], 10023, "{answer}");

    // The replaced node comes back: its copy is retired, it sees the station
    // held elsewhere.
    c.restart(lost_i).await;
    until("the returning node retired its copy", || async {
        copy_of(&c, lost_i).await.is_none()
            && get_json(c.nodes[lost_i].http, "/v1/stations/heal").await["name"] == "heal"
    })
    .await;
    publish_n(&js(&c, lost_i).await, 80, 85).await;
}

/// (name → meta id) of every node, as node `i` has them.
async fn meta_ids(c: &Cluster, i: usize) -> std::collections::BTreeMap<String, u64> {
    let v = get_json(c.nodes[i].http, "/v1/cluster").await;
    v["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|n| Some((n["name"].as_str()?.to_string(), n["id"].as_u64()?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_replica_comes_back_under_a_new_id_and_catches_up() {
    let mut c = Cluster::start(3, &[]).await;
    let js0 = js(&c, 0).await;
    js0.create_stream(stream::Config {
        name: "heal".into(),
        subjects: vec!["heal.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    until("the station is fully replicated", || async {
        replicas_on(&c, 0).await.1
    })
    .await;
    publish_n(&js0, 0, 50).await;

    // Wipe a follower of the station (not node 1, which the client uses).
    let leader = get_json(c.nodes[0].http, "/v1/stations/heal").await["cluster"]["leader"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = (1..3).find(|i| c.nodes[*i].name != leader).unwrap();
    let name = c.nodes[victim].name.clone();
    let old_id = meta_ids(&c, 0).await[&name];
    c.kill(victim).await;
    std::fs::remove_dir_all(c.dir.path().join(&name)).unwrap();
    publish_n(&js0, 50, 80).await;
    c.restart(victim).await;
    until("the wiped node rejoins under a new id", || async {
        meta_ids(&c, 0)
            .await
            .get(&name)
            .is_some_and(|id| *id != old_id)
    })
    .await;
    publish_n(&js0, 80, 100).await;

    // Placed on it again, under its new id: it catches up from the leader.
    let want: Vec<String> = (0..100).map(|n| format!("m{n}")).collect();
    until("the wiped node has every message again", || async {
        copy_of(&c, victim).await.as_ref() == Some(&want)
    })
    .await;
    until("the station is fully replicated again", || async {
        let mut ok = true;
        for i in 0..3 {
            ok &= replicas_on(&c, i).await.1;
        }
        ok
    })
    .await;
    for i in 0..3 {
        assert_eq!(copy_of(&c, i).await.as_ref(), Some(&want), "node {i}");
    }
    // It takes publishes as a replica again.
    publish_n(&js(&c, victim).await, 100, 110).await;
    let want: Vec<String> = (0..110).map(|n| format!("m{n}")).collect();
    for i in 0..3 {
        until("every replica has the later messages", || async {
            copy_of(&c, i).await.as_ref() == Some(&want)
        })
        .await;
    }
    // The leader's event says what happened.
    let mut said = false;
    for i in 0..3 {
        let events = get_json(c.nodes[i].http, "/v1/events?limit=200").await;
        said |= events.to_string().contains("came back without its data");
    }
    assert!(said, "a replica_down event names the wiped node");
}

/// (replica names, how many online and current) of station `name` on node `i`.
async fn replicas_of(c: &Cluster, i: usize, name: &str) -> (BTreeSet<String>, usize) {
    let v = get_json(c.nodes[i].http, &format!("/v1/stations/{name}")).await;
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
    (names, good)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_change_from_3_to_5_and_back_in_place() {
    let c = Cluster::start(5, &[]).await;
    let js0 = js(&c, 0).await;
    let mut config = stream::Config {
        name: "heal".into(),
        subjects: vec!["heal.>".into()],
        num_replicas: 3,
        ..Default::default()
    };
    js0.create_stream(config.clone()).await.unwrap();
    until("3 current replicas", || async {
        replicas_of(&c, 0, "heal").await.1 == 3
    })
    .await;
    publish_n(&js0, 0, 50).await;

    // STREAM.UPDATE with num_replicas 5: two more nodes get a replica and
    // catch up; the station keeps every message.
    config.num_replicas = 5;
    let info = js0.update_stream(config.clone()).await.unwrap();
    assert_eq!(info.config.num_replicas, 5);
    until("5 current replicas", || async {
        replicas_of(&c, 0, "heal").await.1 == 5
    })
    .await;
    let want: Vec<String> = (0..50).map(|n| format!("m{n}")).collect();
    for i in 0..5 {
        until("every node has the 50 messages", || async {
            copy_of(&c, i).await.as_ref() == Some(&want)
        })
        .await;
    }
    publish_n(&js0, 50, 60).await;

    // Back to 3: two followers leave; publishes go on.
    config.num_replicas = 3;
    js0.update_stream(config.clone()).await.unwrap();
    until("3 replicas again", || async {
        let (names, good) = replicas_of(&c, 0, "heal").await;
        names.len() == 3 && good == 3
    })
    .await;
    publish_n(&js0, 60, 70).await;
    let (names, _) = replicas_of(&c, 0, "heal").await;
    let want: Vec<String> = (0..70).map(|n| format!("m{n}")).collect();
    for n in &names {
        let i = c.index_of(n);
        until("every replica has the 70 messages", || async {
            copy_of(&c, i).await.as_ref() == Some(&want)
        })
        .await;
    }

    // More than 5 is refused with a clear error; the station is unchanged
    // (from and to 1: replicated_station_replicas_change_from_and_to_1.rs).
    config.num_replicas = 7;
    let refused = js0.update_stream(config.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("at most 5"), "{refused}");
    assert_eq!(replicas_of(&c, 0, "heal").await.0, names);
}
