//! The nats-server style monitoring endpoints: `/healthz`, `/varz` counters that
//! move with traffic, and `/connz?subs=1` describing a named connection.

use crate::support::{connect, get_json, next, sync, varz_until, within};
use async_nats::ConnectOptions;
use bytes::Bytes;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn healthz_reports_ok() {
    let broker = junction_conformance::broker().await;
    assert_eq!(get_json(&broker, "/healthz").await, json!({"status": "ok"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn varz_counts_connections_and_messages() {
    let broker = junction_conformance::broker().await;
    let before = get_json(&broker, "/varz").await;
    let server_id = before["server_id"].as_str().expect("server_id");
    assert!(!server_id.is_empty(), "{before}");
    assert!(
        !before["version"].as_str().expect("version").is_empty(),
        "{before}"
    );
    assert_eq!(before["connections"], 0, "{before}");
    let in_before = before["in_msgs"].as_u64().expect("in_msgs");
    let out_before = before["out_msgs"].as_u64().expect("out_msgs");

    let a = connect(&broker).await;
    let b = connect(&broker).await;
    let mut sub = b.subscribe("varz.traffic").await.unwrap();
    sync(&b).await;
    for i in 0..5 {
        a.publish("varz.traffic", Bytes::from(format!("m{i}")))
            .await
            .unwrap();
    }
    a.flush().await.unwrap();
    for _ in 0..5 {
        next(&mut sub, "traffic").await;
    }

    let after = get_json(&broker, "/varz").await;
    assert_eq!(after["server_id"], server_id, "server id is stable");
    assert_eq!(after["connections"], 2, "{after}");
    assert!(after["total_connections"].as_u64().unwrap() >= 2, "{after}");
    assert!(
        after["in_msgs"].as_u64().unwrap() >= in_before + 5,
        "in_msgs {in_before} -> {after}"
    );
    assert!(
        after["out_msgs"].as_u64().unwrap() >= out_before + 5,
        "out_msgs {out_before} -> {after}"
    );
    assert!(after["in_bytes"].as_u64().unwrap() >= 10, "{after}");
    assert!(after["out_bytes"].as_u64().unwrap() >= 10, "{after}");
    assert!(after["subscriptions"].as_u64().unwrap() >= 1, "{after}");

    // A connection closes once its client and all its subscribers are dropped.
    drop(sub);
    drop(a);
    drop(b);
    varz_until(&broker, "connections == 0 after the clients left", |v| {
        v["connections"] == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connz_lists_a_named_connection_with_subscriptions_and_counters() {
    let broker = junction_conformance::broker().await;
    let named = within(
        "named connect",
        ConnectOptions::new()
            .name("conformance-x")
            .connect(broker.nats_url()),
    )
    .await
    .unwrap();
    let mut sub_a = named.subscribe("connz.a").await.unwrap();
    let _sub_b = named.subscribe("connz.b.>").await.unwrap();
    named.flush().await.unwrap();

    for i in 0..3 {
        named
            .publish("connz.a", Bytes::from(format!("m{i}")))
            .await
            .unwrap();
    }
    named.flush().await.unwrap();
    for _ in 0..3 {
        next(&mut sub_a, "own message").await;
    }

    let connz = get_json(&broker, "/connz?subs=1").await;
    let conns = connz["connections"].as_array().expect("connections");
    let conn = conns
        .iter()
        .find(|c| c["name"] == "conformance-x")
        .unwrap_or_else(|| panic!("named connection not listed: {connz}"));
    let mut subjects: Vec<&str> = conn["subscriptions_list"]
        .as_array()
        .unwrap_or_else(|| panic!("no subscriptions_list: {conn}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["connz.a", "connz.b.>"], "{conn}");
    assert_eq!(conn["subscriptions"], 2, "{conn}");
    assert!(conn["in_msgs"].as_u64().unwrap() >= 3, "{conn}");
    assert!(conn["out_msgs"].as_u64().unwrap() >= 3, "{conn}");
    assert_eq!(conn["lang"], "rust", "{conn}");
    assert!(conn["cid"].as_u64().is_some(), "{conn}");

    // Without subs=1 the list is left out.
    let plain = get_json(&broker, "/connz").await;
    let conn = plain["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "conformance-x")
        .unwrap_or_else(|| panic!("named connection not listed: {plain}"));
    assert!(conn.get("subscriptions_list").is_none(), "{conn}");
}
