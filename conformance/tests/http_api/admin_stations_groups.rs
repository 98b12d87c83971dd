//! Station and group admin over HTTP, and the server routes: connections, server
//! figures, health and readiness.

use crate::support::{Api, poll_until, seq, within};
use async_nats::jetstream;
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn station_lifecycle() {
    let b = broker().await;
    let api = Api::new(&b);
    let definition = json!({
        "name": "ORDERS",
        "description": "all orders",
        "subjects": ["orders.*"],
        "retention": {"policy": "limits", "max_msgs": 100, "max_bytes": 1048576,
                      "max_age_ms": 3600000, "max_msgs_per_subject": 10, "discard": "old"},
        "storage": "memory",
        "duplicate_window_ms": 60000,
        "max_msg_size": 4096,
        "metadata": {"team": "shop"},
    });
    let created = api.post("/v1/stations", &definition).await.expect(201);
    assert_eq!(created["name"], "ORDERS");
    assert_eq!(created["description"], "all orders");
    assert_eq!(created["subjects"], json!(["orders.*"]));
    assert_eq!(created["retention"], definition["retention"]);
    assert_eq!(created["storage"], "memory");
    assert_eq!(created["duplicate_window_ms"], 60000);
    assert_eq!(created["max_msg_size"], 4096);
    assert_eq!(created["metadata"], json!({"team": "shop"}));
    assert_eq!(created["state"]["messages"], 0);
    assert!(created["created"].as_str().is_some());

    // The same definition again: 200, nothing changes. A different one: 409.
    api.post("/v1/stations", &definition).await.expect(200);
    let mut other = definition.clone();
    other["description"] = json!("changed");
    api.post("/v1/stations", &other)
        .await
        .expect_error(409, "station_exists");

    // It is a JetStream stream too.
    let nats = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let js = jetstream::new(nats);
    let mut stream = within("get stream", js.get_stream("ORDERS")).await.unwrap();
    let info = within("stream info", stream.info()).await.unwrap();
    assert_eq!(info.config.subjects, vec!["orders.*".to_string()]);

    for i in 0..5 {
        api.publish_stored(if i % 2 == 0 { "orders.a" } else { "orders.b" }, "x")
            .await;
    }
    let got = api.get("/v1/stations/ORDERS").await.expect(200);
    assert_eq!(got["state"]["messages"], 5);
    assert_eq!(got["state"]["last_seq"], 5);
    assert_eq!(got["state"]["num_subjects"], 2);

    let list = api.get("/v1/stations").await.expect(200);
    let names: Vec<&str> = list["stations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["ORDERS"]);

    // Update: a whole definition; the name may be omitted.
    let mut updated = definition.clone();
    updated.as_object_mut().unwrap().remove("name");
    updated["description"] = json!("orders, updated");
    updated["subjects"] = json!(["orders.*", "returns.*"]);
    let after = api.put("/v1/stations/ORDERS", &updated).await.expect(200);
    assert_eq!(after["description"], "orders, updated");
    assert_eq!(after["subjects"], json!(["orders.*", "returns.*"]));
    assert_eq!(after["state"]["messages"], 5);

    // Purge by filter, then keeping the newest.
    let r = api
        .post("/v1/stations/ORDERS/purge", &json!({"filter": "orders.b"}))
        .await
        .expect(200);
    assert_eq!(r, json!({"purged": 2}));
    let r = api
        .post("/v1/stations/ORDERS/purge", &json!({"keep": 1}))
        .await
        .expect(200);
    assert_eq!(r, json!({"purged": 2}));
    let page = api.get("/v1/stations/ORDERS/messages").await.expect(200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq)
        .collect();
    assert_eq!(seqs, vec![5]);
    // An empty body purges everything.
    let r = api
        .post_raw("/v1/stations/ORDERS/purge", "", &[])
        .await
        .expect(200);
    assert_eq!(r, json!({"purged": 1}));

    let r = api.delete("/v1/stations/ORDERS").await;
    assert_eq!(r.status.as_u16(), 204, "{r:?}");
    api.get("/v1/stations/ORDERS")
        .await
        .expect_error(404, "station_not_found");
    assert!(
        api.get("/v1/stations").await.expect(200)["stations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn group_lifecycle_and_start_positions() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("S", &["s.>"]).await;
    for i in 1..=4 {
        api.publish_stored("s.x", &format!("m{i}")).await;
    }
    let definition = json!({
        "name": "g",
        "description": "workers",
        "ack_policy": "explicit",
        "ack_wait_ms": 5000,
        "max_deliver": 3,
        "max_ack_pending": 50,
        "filter_subjects": ["s.>"],
        "backoff_ms": [1000, 2000],
    });
    let g = api
        .post("/v1/stations/S/groups", &definition)
        .await
        .expect(201);
    assert_eq!(g["station"], "S");
    assert_eq!(g["name"], "g");
    assert_eq!(g["durable"], true);
    assert_eq!(g["deliver_policy"], "all");
    assert_eq!(g["ack_wait_ms"], 5000);
    assert_eq!(g["max_deliver"], 3);
    assert_eq!(g["max_ack_pending"], 50);
    assert_eq!(g["filter_subjects"], json!(["s.>"]));
    assert_eq!(g["backoff_ms"], json!([1000, 2000]));
    assert_eq!(g["state"]["lag"], 4);

    api.post("/v1/stations/S/groups", &definition)
        .await
        .expect(200);
    let mut other = definition.clone();
    other["max_deliver"] = json!(9);
    api.post("/v1/stations/S/groups", &other)
        .await
        .expect_error(409, "group_exists");

    let by_seq = api
        .group(
            "S",
            "from3",
            json!({"deliver_policy": "by_start_sequence", "start_seq": 3}),
        )
        .await;
    assert_eq!(by_seq["start_seq"], 3);
    let got = api.fetch("S", "from3", 10, 0).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![3, 4]);

    let m2 = api.get("/v1/stations/S/messages/2").await.expect(200);
    let by_time = api
        .group(
            "S",
            "fromtime",
            json!({"deliver_policy": "by_start_time", "start_time": m2["time"]}),
        )
        .await;
    assert!(by_time["start_time"].as_str().is_some());
    let got = api.fetch("S", "fromtime", 10, 0).await;
    assert_eq!(got.first().map(seq), Some(2), "{got:?}");

    let newest = api
        .group("S", "new", json!({"deliver_policy": "new"}))
        .await;
    assert_eq!(newest["state"]["lag"], 0);

    // Lag and pending acks as a group works.
    api.fetch("S", "g", 1, 0).await;
    let state = api.group_state("S", "g").await;
    assert_eq!(state["lag"], 3, "{state}");
    assert_eq!(state["pending_acks"], 1, "{state}");
    assert_eq!(state["delivered"]["station_seq"], 1, "{state}");

    let list = api.get("/v1/stations/S/groups").await.expect(200);
    let names: Vec<&str> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, vec!["from3", "fromtime", "g", "new"]);
    let station = api.get("/v1/stations/S").await.expect(200);
    assert_eq!(station["state"]["groups"], 4);

    assert_eq!(
        api.delete("/v1/stations/S/groups/g").await.status.as_u16(),
        204
    );
    api.get("/v1/stations/S/groups/g")
        .await
        .expect_error(404, "group_not_found");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_server_health_and_readiness() {
    let b = broker().await;
    let api = Api::new(&b);
    let nats = within(
        "connect",
        async_nats::ConnectOptions::new()
            .name("reporter")
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    let _sub = nats.subscribe("watch.>").await.unwrap();
    nats.flush().await.unwrap();
    api.publish("watch.it", "hello").await.expect(200);

    poll_until("both clients to be listed", || {
        let api = api.clone();
        async move {
            let list = api.get("/v1/connections").await.expect(200);
            let conns = list["connections"].as_array().unwrap().clone();
            let nats_ok = conns.iter().any(|c| {
                c["protocol"] == "nats"
                    && c["name"] == "reporter"
                    && c["subscriptions"][0]["subject"] == "watch.>"
            });
            let http_ok = conns.iter().any(|c| {
                c["protocol"] == "http" && c["name"] == "junction-http" && c["in_msgs"] == 1
            });
            nats_ok && http_ok
        }
    })
    .await;

    let server = api.get("/v1/server").await.expect(200);
    assert!(server["server_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(server["version"].as_str().is_some());
    assert!(server["connections"].as_u64().unwrap() >= 1);
    assert!(server["in_msgs"].as_u64().unwrap() >= 1);
    assert_eq!(server["stations"], 0);
    assert_eq!(server["auth_required"], false);
    assert_eq!(
        server["max_payload"].as_u64(),
        Some(b.config.limits.max_payload as u64)
    );

    assert_eq!(api.get("/healthz").await.expect(200)["status"], "ok");
    assert_eq!(api.get("/readyz").await.expect(200)["status"], "ready");
}
