//! Live (unstored) streams: Server-Sent Events on a subject filter, and the
//! WebSocket's subscribe/publish frames — with messages from HTTP, NATS and the
//! WebSocket itself.

use crate::support::{Api, LONG_GUARD, poll_until, within, within_for};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use junction_conformance::{broker, broker_with};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Reads server-sent events from `response` until `n` `message` events arrived;
/// returns their JSON data.
async fn read_events(response: &mut reqwest::Response, n: usize) -> Vec<Value> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    within("server-sent events", async {
        while events.len() < n {
            let chunk = response
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut name = "";
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = if v.trim() == "message" {
                            "message"
                        } else {
                            "other"
                        };
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if name == "message" {
                    events.push(serde_json::from_str(&data).unwrap());
                }
            }
        }
    })
    .await;
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_carry_http_and_nats_publishes() {
    let b = broker().await;
    let api = Api::new(&b);
    let mut stream = within(
        "event stream",
        api.request(reqwest::Method::GET, "/v1/subjects/feed.%3E/events")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    assert!(
        stream
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    // The subscription exists once the response has started.
    api.post_raw(
        "/v1/subjects/feed.a",
        "text",
        &[("x-junction-header-k", "v")],
    )
    .await
    .expect(200);
    api.post_raw("/v1/subjects/feed.b", vec![0xffu8, 0x00], &[])
        .await
        .expect(200);
    let nats = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    nats.publish("feed.c", Bytes::from_static(b"from nats"))
        .await
        .unwrap();
    nats.flush().await.unwrap();

    let events = read_events(&mut stream, 3).await;
    assert_eq!(
        events[0],
        json!({"subject": "feed.a", "headers": {"K": "v"}, "payload": "text"})
    );
    assert_eq!(events[1]["payload_base64"], "/wA=");
    assert_eq!(events[2]["subject"], "feed.c");
    assert_eq!(events[2]["payload"], "from nats");

    // Closing the stream removes its client and subscription.
    drop(stream);
    poll_until("the SSE client to go", || {
        let api = api.clone();
        async move {
            !api.get("/v1/connections").await.expect(200)["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "sse")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_queue_group_shares_messages() {
    let b = broker().await;
    let api = Api::new(&b);
    let mut streams = Vec::new();
    for _ in 0..2 {
        let s = within(
            "event stream",
            api.request(
                reqwest::Method::GET,
                "/v1/subjects/jobs.*/events?queue=workers",
            )
            .send(),
        )
        .await
        .unwrap();
        assert_eq!(s.status().as_u16(), 200);
        streams.push(s);
    }
    for i in 0..10 {
        api.publish("jobs.x", &format!("{i}")).await.expect(200);
    }
    // Each message went to one member: the members' deliveries add up to 10.
    poll_until("10 deliveries across the queue group", || {
        let api = api.clone();
        async move {
            let list = api.get("/v1/connections").await.expect(200);
            let subs: Vec<Value> = list["connections"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["name"] == "sse")
                .flat_map(|c| c["subscriptions"].as_array().unwrap().clone())
                .collect();
            subs.len() == 2
                && subs.iter().all(|s| s["queue"] == "workers")
                && subs
                    .iter()
                    .map(|s| s["delivered"].as_u64().unwrap())
                    .sum::<u64>()
                    == 10
        }
    })
    .await;
    drop(streams);
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(b: &junction_conformance::TestBroker, auth: Option<&str>) -> Ws {
    let addr = b.running.http_addr().unwrap();
    let mut request = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    if let Some(a) = auth {
        request
            .headers_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let (ws, response) = within(
        "websocket connect",
        tokio_tungstenite::connect_async(request),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    ws
}

async fn send(ws: &mut Ws, frame: Value) {
    within(
        "websocket send",
        ws.send(WsMessage::text(frame.to_string())),
    )
    .await
    .unwrap();
}

/// The next JSON text frame.
async fn recv(ws: &mut Ws) -> Value {
    within("websocket frame", async {
        loop {
            match ws.next().await.expect("socket open").unwrap() {
                WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                WsMessage::Close(c) => panic!("closed: {c:?}"),
                _ => continue,
            }
        }
    })
    .await
}

/// The next `n` frames, in any order, sorted by their `op` for comparison.
async fn recv_n(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    for _ in 0..n {
        frames.push(recv(ws).await);
    }
    frames.sort_by_key(|f| f["op"].as_str().unwrap_or("").to_string());
    frames
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_subscribes_and_publishes() {
    let b = broker().await;
    let api = Api::new(&b);
    let mut ws = ws_connect(&b, None).await;

    send(&mut ws, json!({"op": "ping", "ref": 1})).await;
    assert_eq!(recv(&mut ws).await, json!({"op": "pong", "ref": 1}));

    send(
        &mut ws,
        json!({"op": "subscribe", "sub": "s1", "subject": "chat.>"}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"op": "subscribed", "sub": "s1"})
    );

    // From HTTP.
    api.post_raw(
        "/v1/subjects/chat.room",
        "hi",
        &[("x-junction-header-from", "http")],
    )
    .await
    .expect(200);
    assert_eq!(
        recv(&mut ws).await,
        json!({"op": "message", "sub": "s1", "subject": "chat.room",
               "headers": {"From": "http"}, "payload": "hi"})
    );
    // From NATS.
    let nats = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    nats.publish("chat.nats", Bytes::from_static(b"yo"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let m = recv(&mut ws).await;
    assert_eq!(
        (m["subject"].as_str(), m["payload"].as_str()),
        (Some("chat.nats"), Some("yo"))
    );

    // From the socket itself: its own subscription gets it, and the publish is
    // answered with how many received it live.
    send(
        &mut ws,
        json!({"op": "publish", "subject": "chat.self", "payload_base64": "/wA=", "ref": "p1"}),
    )
    .await;
    let frames = recv_n(&mut ws, 2).await;
    assert_eq!(frames[0]["op"], "message");
    assert_eq!(frames[0]["payload_base64"], "/wA=");
    assert_eq!(
        frames[1],
        json!({"op": "published", "ref": "p1", "delivered": 1})
    );

    // Into a station: answered once durable, de-duplicated by idempotency key. The
    // duplicate needs no fsync and may be answered first: replies match by `ref`.
    api.station("WSS", &["stored.*"]).await;
    for reference in [9, 10] {
        send(
            &mut ws,
            json!({"op": "publish", "subject": "stored.x", "payload": "keep",
                   "headers": {"H": "1"}, "idempotency_key": "once", "ref": reference}),
        )
        .await;
    }
    let mut replies = vec![recv(&mut ws).await, recv(&mut ws).await];
    replies.sort_by_key(|r| r["duplicate"].as_bool());
    assert_eq!(
        replies,
        vec![
            json!({"op": "published", "ref": 9, "station": "WSS", "seq": 1, "duplicate": false}),
            json!({"op": "published", "ref": 10, "station": "WSS", "seq": 1, "duplicate": true}),
        ]
    );
    let stored = api.get("/v1/stations/WSS/messages/1").await.expect(200);
    assert_eq!(
        crate::support::producer_headers(&stored),
        json!({"H": "1", "Nats-Msg-Id": "once"})
    );

    // Errors come back as error frames; the socket stays usable.
    send(
        &mut ws,
        json!({"op": "publish", "subject": "bad.*", "payload": "x", "ref": 3}),
    )
    .await;
    let e = recv(&mut ws).await;
    assert_eq!(
        (e["op"].as_str(), e["ref"].as_i64()),
        (Some("error"), Some(3))
    );
    assert_eq!(e["error"]["code"], "invalid_subject");
    within("send", ws.send(WsMessage::text("not json")))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["error"]["code"], "invalid_json");
    send(
        &mut ws,
        json!({"op": "subscribe", "sub": "s1", "subject": "x"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["error"]["code"], "subscription_exists");

    send(&mut ws, json!({"op": "unsubscribe", "sub": "s1"})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"op": "unsubscribed", "sub": "s1"})
    );
    let list = api.get("/v1/connections").await.expect(200);
    let me = list["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["protocol"] == "websocket")
        .cloned()
        .unwrap();
    assert_eq!(me["subscriptions"], json!([]));
    assert!(me["in_msgs"].as_u64().unwrap() >= 3, "{me}");

    // Closing the socket removes the client.
    within("close", ws.close(None)).await.unwrap();
    poll_until("the websocket client to go", || {
        let api = api.clone();
        async move {
            !api.get("/v1/connections").await.expect(200)["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["protocol"] == "websocket")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_needs_credentials_when_the_broker_does() {
    let b = broker_with(|c| c.auth.token = Some("t0k".into())).await;
    let addr = b.running.http_addr().unwrap();
    let refused = within(
        "websocket connect",
        tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws")),
    )
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let mut ws = ws_connect(&b, Some("Bearer t0k")).await;
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await, json!({"op": "pong"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn server_sent_events_close_a_slow_consumer() {
    let b = broker().await;
    let api = Api::new(&b);
    let mut stream = within(
        "event stream",
        api.request(reqwest::Method::GET, "/v1/subjects/flood/events")
            .send(),
    )
    .await
    .unwrap();
    // Publish, without reading the stream, until the server gives up on it: far
    // more than it queues plus what the sockets buffer.
    let nats = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let payload = Bytes::from(vec![b'x'; 8 * 1024]);
    let dropped = || {
        let api = api.clone();
        async move {
            api.get("/v1/connections").await.expect(200)["connections"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "sse" && c["subscriptions"] == json!([]))
        }
    };
    within_for(LONG_GUARD, "the slow consumer to be dropped", async {
        for _ in 0..100 {
            for _ in 0..1000 {
                nats.publish("flood", payload.clone()).await.unwrap();
            }
            nats.flush().await.unwrap();
            if dropped().await {
                return;
            }
        }
        panic!("100k messages did not make the stream a slow consumer");
    })
    .await;
    // Reading on: what was queued, then an error event, then the end.
    let mut tail = String::new();
    within_for(LONG_GUARD, "the stream to end", async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            tail.push_str(&String::from_utf8_lossy(&chunk));
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 4096);
            }
        }
    })
    .await;
    assert!(tail.contains("event: error"), "{tail}");
    assert!(tail.contains("slow_consumer"), "{tail}");
    let server = api.get("/v1/server").await.expect(200);
    assert!(server["slow_consumers"].as_u64().unwrap() >= 1, "{server}");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_live_subscribe_receives_mqtt_publishes() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let b = junction_conformance::mqtt_broker().await;
    let mut ws = ws_connect(&b, None).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "sub": "m", "subject": "sensors.*.temp"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await, json!({"op": "subscribed", "sub": "m"}));

    let mut options = MqttOptions::new("ws-feed", "127.0.0.1", b.mqtt_port());
    options.set_keep_alive(std::time::Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 10);
    client
        .publish("sensors/room1/temp", QoS::AtLeastOnce, false, "21.5")
        .await
        .unwrap();
    // The PUBACK means the broker routed it.
    within("puback", async {
        loop {
            if let Event::Incoming(Packet::PubAck(_)) = events.poll().await.unwrap() {
                break;
            }
        }
    })
    .await;
    let m = recv(&mut ws).await;
    assert_eq!(
        (
            m["op"].as_str(),
            m["subject"].as_str(),
            m["payload"].as_str()
        ),
        (Some("message"), Some("sensors.room1.temp"), Some("21.5"))
    );
    // The MQTT front-end's own markers stay with MQTT: a WebSocket subscriber
    // gets no `Junction-*` header (lineage is in `/v1/lineage`, for stored messages).
    let junction: Vec<&String> = m["headers"]
        .as_object()
        .map(|h| {
            h.keys()
                .filter(|k| k.to_ascii_lowercase().starts_with("junction-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(junction.is_empty(), "{m}");
}
