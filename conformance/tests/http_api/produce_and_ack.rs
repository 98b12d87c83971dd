//! Producing over HTTP (to a subject, into a station, in batches), browsing what
//! was stored, and consuming through a group with ack, nak, term and in-progress.

use crate::support::{Api, deliveries, payload, poll_until, seq, token, within};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn publish_fetch_ack_round_trip() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("ORDERS", &["orders.>"]).await;
    api.group("ORDERS", "workers", json!({})).await;

    let r = api
        .post_raw(
            "/v1/subjects/orders.eu",
            "first",
            &[
                ("x-junction-header-trace-id", "t-1"),
                ("content-type", "text/plain"),
            ],
        )
        .await
        .expect(201);
    assert_eq!(
        r,
        json!({"station": "ORDERS", "seq": 1, "duplicate": false})
    );
    assert_eq!(api.publish_stored("orders.us", "second").await, 2);
    assert_eq!(api.publish_stored("orders.eu", "third").await, 3);

    let got = api.fetch("ORDERS", "workers", 10, 2000).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(payload(&got[0]), "first");
    assert_eq!(got[0]["subject"], "orders.eu");
    assert_eq!(got[0]["headers"]["Trace-Id"], "t-1");
    assert!(got.iter().all(|m| deliveries(m) == 1));
    assert!(got[0]["time"].as_str().is_some_and(|t| t.ends_with('Z')));

    let state = api.group_state("ORDERS", "workers").await;
    assert_eq!(state["pending_acks"], 3, "{state}");
    assert_eq!(state["lag"], 0, "{state}");

    let acked = api.ack("ORDERS", "workers", &got).await;
    assert_eq!(acked["acked"], 3);
    let state = api.group_state("ORDERS", "workers").await;
    assert_eq!(state["pending_acks"], 0, "{state}");
    assert_eq!(state["ack_floor"]["station_seq"], 3, "{state}");

    // Nothing left: an immediate fetch answers with no messages.
    assert!(api.fetch("ORDERS", "workers", 10, 0).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn nak_redelivers_term_does_not_in_progress_keeps_pending() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("JOBS", &["jobs.*"]).await;
    api.group("JOBS", "g", json!({"ack_wait_ms": 60000})).await;
    for i in 0..3 {
        api.publish_stored("jobs.a", &format!("j{i}")).await;
    }
    let got = api.fetch("JOBS", "g", 3, 2000).await;
    assert_eq!(got.len(), 3);
    let r = api
        .post(
            "/v1/stations/JOBS/groups/g/ack",
            &json!({
                "nak": [{"token": token(&got[0])}],
                "term": [{"token": token(&got[1]), "reason": "poison"}],
                "in_progress": [token(&got[2])],
            }),
        )
        .await
        .expect(200);
    assert_eq!(
        r,
        json!({"acked": 0, "naked": 1, "termed": 1, "in_progress": 1})
    );

    // Only the NAKed message comes back, delivered a second time.
    let again = api.fetch("JOBS", "g", 3, 1000).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(seq(&again[0]), 1);
    assert_eq!(deliveries(&again[0]), 2);
    let state = api.group_state("JOBS", "g").await;
    // seq 1 (redelivered) and seq 3 (in progress) are pending.
    assert_eq!(state["pending_acks"], 2, "{state}");
    assert_eq!(state["redelivered"], 1, "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_into_station_defaults_and_checks_the_subject() {
    let b = broker().await;
    let api = Api::new(&b);
    // No subjects: the station captures its own name.
    api.station("events", &[]).await;
    let r = api
        .post_raw("/v1/stations/events/messages", "e1", &[])
        .await
        .expect(201);
    assert_eq!(r["seq"], 1);
    let m = api.get("/v1/stations/events/messages/1").await.expect(200);
    assert_eq!(m["subject"], "events");

    api.station("metrics", &["metrics.*"]).await;
    let r = api
        .post_raw(
            "/v1/stations/metrics/messages?subject=metrics.cpu",
            "0.5",
            &[],
        )
        .await
        .expect(201);
    assert_eq!(r["station"], "metrics");
    let m = api.get("/v1/stations/metrics/messages/1").await.expect(200);
    assert_eq!(m["subject"], "metrics.cpu");
    assert_eq!(m["payload"], "0.5");
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_as_json_and_ndjson_with_per_item_results() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("B", &["b.*"]).await;
    let r = api
        .post(
            "/v1/stations/B/messages/batch",
            &json!([
                {"subject": "b.one", "payload": "1", "headers": {"K": "v", "Multi": ["x", "y"]}},
                {"subject": "not.captured", "payload": "x"},
                {"subject": "b.two", "payload_base64": "/wAB"},
                {"subject": "b.three", "payload": "a", "payload_base64": "YQ=="},
            ]),
        )
        .await
        .expect(200);
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{r}");
    assert_eq!(results[0], json!({"seq": 1, "duplicate": false}));
    assert_eq!(results[1]["error"]["code"], "subject_not_in_station", "{r}");
    assert_eq!(results[2], json!({"seq": 2, "duplicate": false}));
    assert_eq!(results[3]["error"]["code"], "invalid_payload", "{r}");

    let ndjson = "{\"subject\":\"b.four\",\"payload\":\"4\"}\n\n{\"subject\":\"b.five\",\"payload\":\"5\"}\n";
    let r = api
        .post_raw(
            "/v1/stations/B/messages/batch",
            ndjson,
            &[("content-type", "application/x-ndjson")],
        )
        .await
        .expect(200);
    assert_eq!(
        r["results"],
        json!([{"seq": 3, "duplicate": false}, {"seq": 4, "duplicate": false}])
    );

    let page = api.get("/v1/stations/B/messages").await.expect(200);
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{page}");
    assert_eq!(
        crate::support::producer_headers(&messages[0]),
        json!({"K": "v", "Multi": ["x", "y"]})
    );
    // A binary payload comes back as base64 only.
    assert_eq!(messages[1]["payload_base64"], "/wAB");
    assert!(messages[1].get("payload").is_none(), "{}", messages[1]);
    assert_eq!(payload(&messages[3]), "5");
    assert_eq!(page["next_seq"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn browse_by_sequence_time_and_limit_then_delete() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("LOG", &["log.>"]).await;
    for i in 1..=5 {
        api.publish_stored(
            &format!("log.{}", if i % 2 == 0 { "even" } else { "odd" }),
            &format!("m{i}"),
        )
        .await;
    }
    let page = api
        .get("/v1/stations/LOG/messages?from_seq=2&limit=2")
        .await
        .expect(200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq)
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    assert_eq!(page["next_seq"], 4);

    let page = api
        .get("/v1/stations/LOG/messages?subject=log.even")
        .await
        .expect(200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq)
        .collect();
    assert_eq!(seqs, vec![2, 4]);

    // From the time of message 3: messages 3.. (stored in order, so their times are
    // at or after it).
    let m3 = api.get("/v1/stations/LOG/messages/3").await.expect(200);
    let t3 = m3["time"].as_str().unwrap();
    let page = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations/LOG/messages")
                .query(&[("from_time", t3)]),
        )
        .await
        .expect(200);
    let first = page["messages"].as_array().unwrap().first().map(seq);
    assert_eq!(first, Some(3), "{page}");
    // The same instant written with an offset.
    let page = api
        .send(
            api.request(reqwest::Method::GET, "/v1/stations/LOG/messages")
                .query(&[("from_time", "2000-01-01T02:00:00+02:00")]),
        )
        .await
        .expect(200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 5);
    // A time after everything: an empty page that continues after the last.
    let page = api
        .get("/v1/stations/LOG/messages?from_time=2999-01-01T00:00:00Z")
        .await
        .expect(200);
    assert!(page["messages"].as_array().unwrap().is_empty());
    assert_eq!(page["next_seq"], 6);

    assert_eq!(api.delete("/v1/stations/LOG/messages/3").await.status, 204);
    api.get("/v1/stations/LOG/messages/3")
        .await
        .expect_error(404, "message_not_found");
    let page = api.get("/v1/stations/LOG/messages").await.expect(200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 4, 5]);
}

#[tokio::test(flavor = "multi_thread")]
async fn uncaptured_subject_is_delivered_live_with_headers_to_nats() {
    let b = broker().await;
    let api = Api::new(&b);
    assert_eq!(
        api.publish("live.x", "nobody").await.expect(200),
        json!({"delivered": 0})
    );

    let nats = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut sub = nats.subscribe("live.>").await.unwrap();
    nats.flush().await.unwrap();
    poll_until("the NATS subscription to be visible", || {
        let api = api.clone();
        async move {
            api.get("/v1/connections").await.expect(200)["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| {
                    c["protocol"] == "nats" && !c["subscriptions"].as_array().unwrap().is_empty()
                })
        }
    })
    .await;
    let r = api
        .post_raw(
            "/v1/subjects/live.y",
            Bytes::from_static(b"hi"),
            &[("x-junction-header-origin", "http")],
        )
        .await
        .expect(200);
    assert_eq!(r, json!({"delivered": 1}));
    let m = within("NATS delivery", sub.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "live.y");
    assert_eq!(m.payload, "hi");
    let origin = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Origin"))
        .map(|v| v.as_str().to_string());
    assert_eq!(origin.as_deref(), Some("http"));
}
