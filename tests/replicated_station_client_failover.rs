//! Client failover onto a replicated station (R3), three real `junction`
//! processes: an async-nats client given only node 1's URL (it learns the others
//! from INFO `connect_urls`, as from nats-server) publishes with `Nats-Msg-Id`;
//! node 1 is killed; the client reconnects to another node by itself and keeps
//! publishing (each unacknowledged message sent again with its id until
//! acknowledged). Every message ends up stored exactly once, in the order
//! published, on both surviving replicas.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/process.rs"]
#[allow(dead_code)] // each test binary uses part of it
mod process;

#[path = "support/cluster.rs"]
mod cluster;

use async_nats::jetstream::{self, stream};
use cluster::{Cluster, get_json, until};
use std::time::Duration;

async fn publish_until_acked(js: &jetstream::Context, id: &str) -> u64 {
    for _ in 0..200 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let ack = match js
            .publish_with_headers("fo.x", headers, id.to_string().into())
            .await
        {
            Ok(f) => f.await.ok(),
            Err(_) => None,
        };
        if let Some(a) = ack {
            return a.sequence;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_one_seed_url_keeps_publishing_after_its_node_is_killed() {
    let mut c = Cluster::start(3, &[]).await;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(c.nats_url(0))
        .await
        .unwrap();
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));
    js.create_stream(stream::Config {
        name: "fo".into(),
        subjects: vec!["fo.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = format!("m{n}");
        publish_until_acked(&js, &id).await;
        ids.push(id);
    }
    c.kill(0).await;
    for n in 20..40 {
        let id = format!("m{n}");
        publish_until_acked(&js, &id).await;
        ids.push(id);
    }
    // The client is connected to another node now.
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    for i in [1, 2] {
        until(
            "the survivor has the 40 messages once each, in order",
            || async {
                let page = get_json(c.nodes[i].http, "/v1/stations/fo/replica?limit=1000").await;
                let got: Vec<String> = page["messages"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                got == ids
            },
        )
        .await;
    }
}
