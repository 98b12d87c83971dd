//! A replicated station (R3) whose copy on one follower is corrupt: three real
//! `junction` processes; the follower is killed, one byte of the newest entry of
//! the station's Raft log in its data directory is flipped (its CRC-32C no
//! longer holds), and it is started again:
//! - that node does not run the station's group (its log fails verification): it
//!   has no replica to show (`/replica` 404), never becomes the leader, even when
//!   the leader steps down twice, and refuses publishes into the station rather
//!   than acknowledging them;
//! - the two other replicas go on: every message acknowledged before and after
//!   is on both, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, stream};
use cluster::{Cluster, get_json, http, until};
use junction_storage::{Durability, LogOp, RaftOp, Store};
use serde_json::Value;

async fn js(c: &Cluster, i: usize) -> jetstream::Context {
    jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap())
}

async fn leader(c: &Cluster, i: usize) -> Option<String> {
    get_json(c.nodes[i].http, "/v1/stations/cor").await["cluster"]["leader"]
        .as_str()
        .map(str::to_string)
}

async fn ids(c: &Cluster, i: usize) -> (u16, Vec<String>) {
    let resp = http()
        .get(format!(
            "http://127.0.0.1:{}/v1/stations/cor/replica?limit=1000",
            c.nodes[i].http
        ))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let ids = v["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    (status, ids)
}

async fn publish(js: &jetstream::Context, id: &str) -> Result<u64, String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    match js
        .publish_with_headers("cor.x", headers, id.to_string().into())
        .await
    {
        Ok(f) => f.await.map(|a| a.sequence).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// [`publish`] again (same `Nats-Msg-Id`) while it is refused: right after the
/// station is made, or after a restart, an election may still be settling, and
/// a refused publish is not an acknowledged one.
async fn publish_until_acked(js: &jetstream::Context, id: &str) {
    let mut tries = 0;
    while let Err(e) = publish(js, id).await {
        tries += 1;
        assert!(tries < 50, "{id} never acknowledged: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Flips one byte of the newest Raft log entry of a station group (not the
/// meta group, id 0) in the store at `dir`.
fn corrupt_newest_station_entry(dir: &std::path::Path) {
    let store = Store::open(dir).unwrap();
    let rows = store.raft_range(&[], &[0xff; 18]).unwrap();
    let (key, mut value) = rows
        .into_iter()
        .filter(|(k, _)| k.len() == 17 && k[8] == 1 && k[..8] != [0u8; 8])
        .max_by_key(|(k, _)| k[9..].to_vec())
        .expect("a station group's log entry");
    let at = value.len() / 2;
    value[at] ^= 0x40;
    let (tx, rx) = std::sync::mpsc::channel();
    store.append(
        u64::MAX,
        vec![LogOp::Raft(RaftOp::Put(key, value))],
        Durability::Sync,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_log_fails_its_checksum_never_leads_and_nothing_is_lost() {
    let mut c = Cluster::start(3, &[]).await;
    js(&c, 0)
        .await
        .create_stream(stream::Config {
            name: "cor".into(),
            subjects: vec!["cor.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    until("a leader", || async { leader(&c, 0).await.is_some() }).await;
    let lead = leader(&c, 0).await.unwrap();
    let li = c.index_of(&lead);
    let on_leader = js(&c, li).await;
    let mut acked = Vec::new();
    for n in 0..30 {
        let id = format!("a{n}");
        publish_until_acked(&on_leader, &id).await;
        acked.push(id);
    }
    let bad = (0..3).find(|i| *i != li).unwrap();
    let good = (0..3).find(|i| *i != li && *i != bad).unwrap();
    until("the follower has every message", || async {
        ids(&c, bad).await.1 == acked
    })
    .await;
    c.kill(bad).await;
    corrupt_newest_station_entry(&c.dir.path().join(&c.nodes[bad].name));
    c.restart(bad).await;
    // The node is back in the cluster (the meta group), without the station's
    // group: it shows no replica.
    until("the corrupt node is back, without a replica", || async {
        get_json(c.nodes[bad].http, "/v1/stations/cor").await["name"] == "cor"
            && ids(&c, bad).await.0 == 404
    })
    .await;
    for n in 0..30 {
        let id = format!("b{n}");
        publish_until_acked(&on_leader, &id).await;
        acked.push(id);
    }
    // A publish on the corrupt node is refused, never acknowledged.
    assert!(publish(&js(&c, bad).await, "refused").await.is_err());

    // Leadership moves twice; never to the corrupt node.
    let bad_name = c.nodes[bad].name.clone();
    for _ in 0..2 {
        let before = leader(&c, good).await.unwrap();
        let resp = http()
            .post(format!(
                "http://127.0.0.1:{}/v1/stations/cor/stepdown",
                c.nodes[good].http
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        until("another leader", || async {
            leader(&c, good)
                .await
                .is_some_and(|l| l != before && l != bad_name)
        })
        .await;
        assert_ne!(leader(&c, li).await.as_deref(), Some(bad_name.as_str()));
    }
    let now = leader(&c, good).await.unwrap();
    let on_now = js(&c, c.index_of(&now)).await;
    let id = "c0".to_string();
    publish_until_acked(&on_now, &id).await;
    acked.push(id);
    for i in [li, good] {
        until(
            "both healthy replicas have every acknowledged message",
            || async { ids(&c, i).await.1 == acked },
        )
        .await;
    }
}
