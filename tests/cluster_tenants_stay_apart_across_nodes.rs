//! Tenants in a cluster of three real `junction` processes: two tenants each
//! own a station `orders` made through one node; each tenant's core messages
//! cross the cluster links to its own subscribers on other nodes and never to
//! the other tenant's; stations, listings and stored messages stay per tenant
//! on every node.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream;
use cluster::{Cluster, until};
use futures::StreamExt;
use std::time::Duration;

const CONFIG: &str = r#"
[auth]
token = "operator-token"

[[tenants]]
name = "acme"
users = [{ user = "alice", password = "pw" }]

[[tenants]]
name = "globex"
users = [{ user = "bob", password = "pw" }]
"#;

async fn as_user(c: &Cluster, node: usize, user: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), "pw".into())
        .connect(c.nats_url(node))
        .await
        .unwrap_or_else(|e| panic!("{user} on node {node}: {e}"))
}

/// Publishes probes from `publisher` until `sub` gets one (interest crossed).
async fn until_interest(publisher: &async_nats::Client, sub: &mut async_nats::Subscriber) {
    loop {
        publisher
            .publish("orders.probe", "probe".into())
            .await
            .unwrap();
        publisher.flush().await.unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            return;
        }
    }
}

/// Messages until `last`, probes left out.
async fn until_payload(sub: &mut async_nats::Subscriber, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("a message in time")
            .unwrap();
        let p = String::from_utf8_lossy(&m.payload).into_owned();
        if p != "probe" {
            seen.push(p.clone());
        }
        if p == last {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_sees_only_its_own_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let path = file.display().to_string();
    let _ = cluster::TOKEN.set("operator-token".into());
    let c = Cluster::start(3, &[("--config", &path)]).await;

    // Core messages: publishers on node 1, subscribers on node 3.
    let (alice1, bob1) = (as_user(&c, 0, "alice").await, as_user(&c, 0, "bob").await);
    let (alice3, bob3) = (as_user(&c, 2, "alice").await, as_user(&c, 2, "bob").await);
    let mut a_sub = alice3.subscribe("orders.>").await.unwrap();
    let mut b_sub = bob3.subscribe("orders.>").await.unwrap();
    alice3.flush().await.unwrap();
    bob3.flush().await.unwrap();
    until_interest(&alice1, &mut a_sub).await;
    until_interest(&bob1, &mut b_sub).await;
    bob1.publish("orders.b", "from globex".into())
        .await
        .unwrap();
    bob1.flush().await.unwrap();
    alice1
        .publish("orders.a", "from acme".into())
        .await
        .unwrap();
    alice1.flush().await.unwrap();
    assert_eq!(until_payload(&mut a_sub, "from acme").await, ["from acme"]);
    alice1
        .publish("orders.a", "acme again".into())
        .await
        .unwrap();
    bob1.publish("orders.b", "globex again".into())
        .await
        .unwrap();
    bob1.flush().await.unwrap();
    let seen = until_payload(&mut b_sub, "globex again").await;
    assert!(
        !seen.iter().any(|p| p.contains("acme")),
        "globex saw {seen:?}"
    );

    // Stations: both make `orders` through node 2.
    let js_a = jetstream::new(as_user(&c, 1, "alice").await);
    let js_b = jetstream::new(as_user(&c, 1, "bob").await);
    for js in [&js_a, &js_b] {
        js.create_stream(jetstream::stream::Config {
            name: "orders".into(),
            subjects: vec!["stored.>".into()],
            ..Default::default()
        })
        .await
        .expect("each tenant makes its own orders");
    }
    js_a.create_stream(jetstream::stream::Config {
        name: "acme_only".into(),
        subjects: vec!["acme.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // Publishes through node 1 land in each tenant's own station.
    let pub_a = jetstream::new(alice1.clone());
    let pub_b = jetstream::new(bob1.clone());
    for i in 0..3 {
        pub_a
            .publish(format!("stored.{i}"), "a".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    pub_b
        .publish("stored.x", "b".into())
        .await
        .unwrap()
        .await
        .unwrap();
    // Every node lists and counts each tenant's own.
    for node in 0..3 {
        let a = jetstream::new(as_user(&c, node, "alice").await);
        let b = jetstream::new(as_user(&c, node, "bob").await);
        until("each node lists each tenant's own stations", || {
            let (a, b) = (a.clone(), b.clone());
            async move {
                let names = |js: jetstream::Context| async move {
                    let mut n: Vec<String> = js
                        .stream_names()
                        .filter_map(|n| std::future::ready(n.ok()))
                        .filter(|n| std::future::ready(!n.starts_with('$')))
                        .collect()
                        .await;
                    n.sort();
                    n
                };
                names(a).await == ["acme_only", "orders"] && names(b).await == ["orders"]
            }
        })
        .await;
        let count = |js: jetstream::Context| async move {
            js.get_stream("orders")
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .state
                .messages
        };
        assert_eq!((count(a).await, count(b).await), (3, 1), "node {node}");
    }
}
