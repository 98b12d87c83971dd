//! An operator disconnects a client with `DELETE /v1/connections/{cid}`: a NATS
//! client reads `-ERR 'Kicked by operator'` and the socket closes (async-nats sees
//! the server error and the disconnect); an MQTT 5 client gets DISCONNECT 0x98
//! (Administrative action); an MQTT 3.1.1 client's socket closes and its will goes
//! out, as after any abnormal close. Unknown ids answer 404, HTTP's shared client
//! 403.
//!
//! Timeouts only guard against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt/support.rs"]
mod support;

use async_nats::{ConnectOptions, Event};
use junction_conformance::TestBroker;
use rumqttc::QoS;
use serde_json::Value;
use std::time::Duration;
use support::{Raw, V4, connect_v5, v4_options, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET /v1/connections`.
async fn connections(b: &TestBroker) -> Vec<Value> {
    let list: Value = within("GET /v1/connections", async {
        reqwest::get(format!("{}/v1/connections", b.http_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await;
    list["connections"].as_array().cloned().unwrap_or_default()
}

/// The id of the connected client named `name`, waiting for it to be listed.
async fn cid_of(b: &TestBroker, name: &str) -> u64 {
    within("the client to be listed", async {
        loop {
            if let Some(c) = connections(b).await.into_iter().find(|c| c["name"] == name) {
                return c["id"].as_u64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Waits until no client has id `cid`.
async fn gone(b: &TestBroker, cid: u64) {
    within("the client to leave /v1/connections", async {
        while connections(b).await.iter().any(|c| c["id"] == cid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// `DELETE /v1/connections/{cid}`: the status and the JSON body (`Null` if none).
async fn kick(b: &TestBroker, cid: &str) -> (u16, Value) {
    within("DELETE /v1/connections", async {
        let r = reqwest::Client::new()
            .delete(format!("{}/v1/connections/{cid}", b.http_url()))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.bytes().await.unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, json)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_client_reads_err_then_the_socket_closes() {
    let b = junction_conformance::broker().await;
    let mut s = within("TCP connect", TcpStream::connect(b.nats_addr()))
        .await
        .unwrap();
    s.write_all(b"CONNECT {\"verbose\":false,\"name\":\"kick-raw\"}\r\nPING\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    within("PONG", async {
        let mut chunk = [0u8; 4096];
        while !seen.windows(6).any(|w| w == b"PONG\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before PONG");
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let cid = cid_of(&b, "kick-raw").await;

    let (status, body) = kick(&b, &cid.to_string()).await;
    assert_eq!(status, 204, "{body}");

    let mut rest = Vec::new();
    within("the socket to close", s.read_to_end(&mut rest))
        .await
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.ends_with("-ERR 'Kicked by operator'\r\n"),
        "last thing read: {rest:?}"
    );
    gone(&b, cid).await;

    // Once gone, the id is unknown.
    let (status, body) = kick(&b, &cid.to_string()).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "connection_not_found", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_client_sees_the_server_error_and_the_disconnect() {
    let b = junction_conformance::broker().await;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = within(
        "connect",
        ConnectOptions::new()
            .name("kick-async-nats")
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    client.flush().await.unwrap();
    let cid = cid_of(&b, "kick-async-nats").await;

    let (status, body) = kick(&b, &cid.to_string()).await;
    assert_eq!(status, 204, "{body}");

    let (mut server_error, mut disconnected) = (None, false);
    within("the server error and the disconnect", async {
        while server_error.is_none() || !disconnected {
            match events.recv().await.expect("event stream open") {
                Event::ServerError(e) => server_error = Some(e.to_string()),
                Event::Disconnected => disconnected = true,
                _ => {}
            }
        }
    })
    .await;
    let error = server_error.unwrap().to_lowercase();
    assert!(error.contains("kicked by operator"), "{error}");
    // The kicked connection is gone (the client may reconnect as a new one).
    gone(&b, cid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_client_gets_disconnect_administrative_action() {
    let b = junction_conformance::mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("kick-v5", true, 60, &[])).await;
    let cid = cid_of(&b, "kick-v5").await;

    let (status, body) = kick(&b, &cid.to_string()).await;
    assert_eq!(status, 204, "{body}");

    let seen = raw.until_closed().await;
    let disconnect = seen
        .iter()
        .find(|p| p.kind() == 14)
        .unwrap_or_else(|| panic!("DISCONNECT before the close: {seen:?}"));
    assert_eq!(disconnect.disconnect_reason(), 0x98);
    gone(&b, cid).await;
}

/// MQTT-4.13.1 / 4.13.2: a server-initiated DISCONNECT with a reason code
/// reaches a client that is still writing. A publisher kicked in the middle of a
/// stream goes on writing for a while; the broker half-closes and drains what it
/// still sends, so the client reads DISCONNECT 0x98 rather than a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_client_still_writing_when_kicked_reads_disconnect_0x98() {
    let b = junction_conformance::mqtt_broker().await;
    let mut s = TcpStream::connect(b.mqtt_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&connect_v5("kick-writer", true, 60, &[]))
        .await
        .unwrap();
    let cid = cid_of(&b, "kick-writer").await;
    let mut kicked = None;
    let mut writes_failed = 0;
    for i in 0..60u16 {
        // QoS 0 publishes: nothing for the client to read but the CONNACK.
        let p = support::publish_raw(b"kick/w", 0, 0, false, false, &[b'x'; 256], Some(&[]));
        if s.write_all(&p).await.is_err() {
            writes_failed += 1;
        }
        if i == 10 {
            let b_url = b.http_url();
            kicked = Some(tokio::spawn(async move {
                reqwest::Client::new()
                    .delete(format!("{b_url}/v1/connections/{cid}"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let status = kicked.unwrap().await.unwrap().unwrap();
    assert_eq!(status, 204);
    let mut got = Vec::new();
    let read = within("the broker to close", async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    assert_eq!(writes_failed, 0, "the client's writes failed (reset)");
    assert!(read.is_ok(), "the connection was reset: {read:?}");
    assert!(
        got.windows(3).any(|w| w[0] == 0xE0 && w[2] == 0x98),
        "a DISCONNECT with reason 0x98 in {got:?}"
    );
    gone(&b, cid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt311_client_is_closed_and_its_will_goes_out() {
    let b = junction_conformance::mqtt_broker().await;
    let mut watcher = V4::new(&b, "kick-watch").await;
    watcher.subscribe("kick/#", QoS::AtLeastOnce).await;

    let mut o = v4_options(&b, "kick-v4");
    o.set_last_will(rumqttc::LastWill::new(
        "kick/will",
        "kicked",
        QoS::AtLeastOnce,
        false,
    ));
    let (mut kicked, _) = V4::connect(o).await;
    let cid = cid_of(&b, "kick-v4").await;

    let (status, body) = kick(&b, &cid.to_string()).await;
    assert_eq!(status, 204, "{body}");

    // MQTT 3.1.1 has no server DISCONNECT: the socket just closes.
    let (why, _) = kicked.closed().await;
    assert!(!why.is_empty());
    let will = watcher.recv().await;
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("kick/will", &b"kicked"[..])
    );
    gone(&b, cid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_and_http_clients_are_refused() {
    let b = junction_conformance::broker().await;
    let (status, body) = kick(&b, "999999").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "connection_not_found", "{body}");

    let (status, body) = kick(&b, "not-a-number").await;
    assert_eq!(status, 400, "{body}");

    // HTTP requests share one client (made by the first publish): it is listed
    // but is not a connection.
    let published = within("an HTTP publish", async {
        reqwest::Client::new()
            .post(format!("{}/v1/subjects/kick.http", b.http_url()))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
    })
    .await;
    assert!(published.is_success(), "{published}");
    let http = within("the HTTP client to be listed", async {
        loop {
            if let Some(c) = connections(&b)
                .await
                .into_iter()
                .find(|c| c["protocol"] == "http")
            {
                return c["id"].as_u64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (status, body) = kick(&b, &http.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "denied", "{body}");
}

/// `GET /v1/events?limit=N`.
async fn events(b: &TestBroker, limit: usize) -> Vec<Value> {
    let list: Value = within("GET /v1/events", async {
        reqwest::get(format!("{}/v1/events?limit={limit}", b.http_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await;
    list["events"].as_array().cloned().unwrap_or_default()
}

/// POSTs JSON to the HTTP API, expecting `status`.
async fn post(b: &TestBroker, path: &str, body: Value, status: u16) {
    let got = within("POST", async {
        reqwest::Client::new()
            .post(format!("{}{path}", b.http_url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
    .await;
    assert_eq!(got, status, "POST {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_log_shows_connects_kicks_and_schema_violations_newest_first() {
    let b = junction_conformance::broker().await;
    post(
        &b,
        "/v1/schemas",
        serde_json::json!({"name": "num", "definition": {"type": "object", "required": ["n"]}}),
        201,
    )
    .await;
    post(
        &b,
        "/v1/stations",
        serde_json::json!({"name": "checked", "subjects": ["checked.>"], "schema": "num",
                           "dead_letter": {"schema_violation": true}}),
        201,
    )
    .await;

    let client = within(
        "connect",
        ConnectOptions::new()
            .name("events-producer")
            .retry_on_initial_connect()
            .connect(b.nats_url()),
    )
    .await
    .unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let refused = within("a refused publish", async {
        js.publish("checked.x", r#"{"m":1}"#.into())
            .await
            .unwrap()
            .await
    })
    .await;
    assert!(refused.is_err(), "the schema refuses it: {refused:?}");
    let cid = cid_of(&b, "events-producer").await;
    let (status, _) = kick(&b, &cid.to_string()).await;
    assert_eq!(status, 204);
    gone(&b, cid).await;

    // The disconnect is recorded as the connection ends: poll for it.
    let all = within("the disconnect event", async {
        loop {
            let all = events(&b, 1000).await;
            if all
                .iter()
                .any(|e| e["kind"] == "client_disconnected" && e["client_id"] == cid)
            {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let find = |kind: &str| {
        all.iter()
            .position(|e| e["kind"] == kind && e["client_id"] == cid)
            .unwrap_or_else(|| panic!("no {kind} event for client {cid}: {all:#?}"))
    };
    let (connected, violation, kicked, disconnected) = (
        find("client_connected"),
        find("schema_violation"),
        find("client_kicked"),
        find("client_disconnected"),
    );
    // Newest first.
    assert!(disconnected < kicked && kicked < violation && violation < connected);
    let v = &all[violation];
    assert_eq!(v["station"], "checked");
    assert_eq!(v["protocol"], "nats");
    assert_eq!(v["client_name"], "events-producer");
    assert!(
        v["message"].as_str().unwrap().contains("schema 'num'"),
        "{v}"
    );
    assert_eq!(all[kicked]["client_name"], "events-producer");
    assert!(
        all.windows(2)
            .all(|w| w[0]["id"].as_u64() > w[1]["id"].as_u64())
    );

    // The limit holds; a limit of 0 is refused.
    assert_eq!(events(&b, 2).await.len(), 2);
    let status = within("GET /v1/events?limit=0", async {
        reqwest::get(format!("{}/v1/events?limit=0", b.http_url()))
            .await
            .unwrap()
            .status()
            .as_u16()
    })
    .await;
    assert_eq!(status, 400);
}
