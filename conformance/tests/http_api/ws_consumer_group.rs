//! Consumer-group attach on the WebSocket: at-least-once delivery of a group's
//! messages with at most `max_inflight` unacknowledged, redelivery of what is left
//! unacknowledged after the group's `ack_wait`, and acknowledgements that count for
//! a JetStream pull consumer of the same group.

use crate::support::{Api, LONG_GUARD, within, within_for};
use async_nats::jetstream;
use futures::{SinkExt, StreamExt};
use junction_conformance::{TestBroker, broker};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(b: &TestBroker) -> Ws {
    let addr = b.running.http_addr().unwrap();
    let (ws, response) = within(
        "websocket connect",
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws")),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    ws
}

async fn send(ws: &mut Ws, frame: Value) {
    within(
        "websocket send",
        ws.send(WsMessage::Text(frame.to_string().into())),
    )
    .await
    .unwrap();
}

/// The next JSON text frame (any error frame fails the test).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let frame = within_for(LONG_GUARD, "websocket frame", ws.next())
            .await
            .expect("the socket stays open")
            .unwrap();
        if let WsMessage::Text(t) = frame {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_ne!(v["op"], "error", "refused: {v}");
            return v;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_attach_delivers_at_least_once_within_max_inflight() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("WSG", &["wsg.>"]).await;
    api.group("WSG", "workers", json!({"ack_wait_ms": 1000}))
        .await;
    let items: Vec<_> = (0..20)
        .map(|i| json!({"subject": "wsg.job", "payload": format!("job{i}")}))
        .collect();
    api.post("/v1/stations/WSG/messages/batch", &json!(items))
        .await
        .expect(200);

    let mut ws = ws_connect(&b).await;
    send(
        &mut ws,
        json!({"op": "attach", "id": "a1", "station": "WSG", "group": "workers", "max_inflight": 5}),
    )
    .await;
    assert_eq!(next(&mut ws).await, json!({"op": "attached", "id": "a1"}));

    // Receive in rounds: take deliveries until five are unacknowledged (or all
    // twenty were seen), then acknowledge all of them but the first message ever
    // delivered, which is held back.
    let mut held: Option<(u64, Instant)> = None;
    let mut acked = BTreeSet::new();
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut redelivered = None;
    while redelivered.is_none() {
        let mut round = Vec::new();
        loop {
            let m = next(&mut ws).await;
            assert_eq!(m["op"], "message");
            assert_eq!(m["attach"], "a1");
            assert_eq!(m["subject"], "wsg.job");
            let seq = m["seq"].as_u64().unwrap();
            let count = m["delivery_count"].as_u64().unwrap();
            *counts.entry(seq).or_default() += 1;
            assert!(!acked.contains(&seq), "acked seq {seq} came again");
            match held {
                None => held = Some((seq, Instant::now())),
                Some((h, _)) if h == seq => {
                    assert_eq!(count, 2, "{m}");
                    redelivered = Some(m);
                    break;
                }
                Some(_) => round.push(m),
            }
            let unacked = round.len() + 1;
            // The held message stops counting once its ack_wait has passed; only
            // check the bound while it surely has not.
            if held.is_some_and(|(_, at)| at.elapsed() < Duration::from_millis(500)) {
                assert!(unacked <= 5, "{unacked} unacknowledged deliveries");
            }
            if unacked >= 5 || acked.len() + unacked >= 20 {
                break;
            }
        }
        for m in &round {
            let token = m["ack_token"].as_str().unwrap();
            send(&mut ws, json!({"op": "ack", "token": token})).await;
            acked.insert(m["seq"].as_u64().unwrap());
        }
    }
    // The held one came back after ack_wait; acknowledge it too.
    let again = redelivered.unwrap();
    send(
        &mut ws,
        json!({"op": "ack", "token": again["ack_token"], "ref": 1}),
    )
    .await;
    acked.insert(again["seq"].as_u64().unwrap());
    assert_eq!(acked.len(), 20);
    assert!(
        counts.values().filter(|c| **c > 1).count() <= 1,
        "{counts:?}"
    );

    send(&mut ws, json!({"op": "detach", "id": "a1"})).await;
    assert_eq!(next(&mut ws).await, json!({"op": "detached", "id": "a1"}));

    // A JetStream pull consumer on the same group sees only what comes next, never
    // a message acknowledged over the WebSocket.
    for i in 0..3 {
        api.publish_stored("wsg.job", &format!("later{i}")).await;
    }
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    let consumer: jetstream::consumer::PullConsumer = within("get consumer", async {
        js.get_stream("WSG")
            .await
            .unwrap()
            .get_consumer("workers")
            .await
            .unwrap()
    })
    .await;
    let mut seen = Vec::new();
    within_for(LONG_GUARD, "NATS pulls", async {
        while seen.len() < 3 {
            let mut batch = consumer
                .batch()
                .max_messages(10)
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .unwrap();
            while let Some(m) = batch.next().await {
                let m = m.unwrap();
                let seq = m.info().unwrap().stream_sequence;
                assert!(!acked.contains(&seq), "acked seq {seq} delivered to NATS");
                seen.push(seq);
                m.double_ack().await.unwrap();
            }
        }
    })
    .await;
    assert_eq!(seen, vec![21, 22, 23]);
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_attach_refuses_unknown_group_and_foreign_tokens() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("WSX", &["wsx.>"]).await;
    let mut ws = ws_connect(&b).await;
    for (frame, code) in [
        (
            json!({"op": "attach", "id": "a", "station": "WSX", "group": "nope", "ref": 1}),
            "group_not_found",
        ),
        (
            json!({"op": "ack", "token": "bm90LWEtdG9rZW4", "ref": 2}),
            "invalid_ack_token",
        ),
        (
            json!({"op": "detach", "id": "a", "ref": 3}),
            "attachment_not_found",
        ),
    ] {
        let reference = frame["ref"].clone();
        send(&mut ws, frame).await;
        let reply = within_for(LONG_GUARD, "websocket frame", ws.next())
            .await
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(v["op"], "error", "{v}");
        assert_eq!(v["ref"], reference);
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}
