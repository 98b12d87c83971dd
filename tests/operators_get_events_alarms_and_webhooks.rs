//! The operators' events (docs/operations.md), against the real binary:
//!
//! - events are kept in each tenant's `$sys_events` station: they survive a
//!   restart, `/v1/events` filters them, JetStream reads the station like any
//!   other, live NATS subscribers of `$sys.events.>` get them as they happen,
//!   and connects are mirrored to nats-server's `$SYS.ACCOUNT.<tenant>.CONNECT`;
//! - a schema violation over HTTP, JetStream and MQTT 5 each reaches a webhook
//!   with its kind, tenant and station, 20 times out of 20 (counted, not timed);
//! - a webhook that answers 500, 500, 500, 200 gets one event in four attempts
//!   with one event id and growing gaps, signed with the webhook's secret; a 429
//!   with `Retry-After: 2` is honoured; a 404 is not retried: the event goes to
//!   `$dls_$sys_events` and `webhook_failing:<name>` is raised, then cleared by
//!   the next delivery;
//! - events recorded while the receiver is down are delivered after a restart;
//! - a consumer group past `limits.consumer_lag_alarm` raises an alarm, heard
//!   on MQTT `$SYS/broker/alarms/activate`, cleared once consumed;
//! - near `limits.memory_max` the broker raises `memory_high` and refuses new
//!   NATS and MQTT connections while HTTP goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::notify;
use crate::support::process;
use notify::{Broker, Receiver, http};
use process::GUARD;

use futures::StreamExt;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

fn write_config(dir: &Path, webhooks: &str) {
    std::fs::write(dir.join("junction.toml"), webhooks).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_restart_and_every_protocol_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let broker = Broker::start(dir.path()).await;

    // Live: the events as they happen, and nats-server's connect advisory.
    let watcher = async_nats::connect(broker.nats.to_string()).await.unwrap();
    let mut live = watcher.subscribe("$sys.events.>").await.unwrap();
    let mut advisories = watcher.subscribe("$SYS.ACCOUNT.*.CONNECT").await.unwrap();
    watcher.flush().await.unwrap();

    let alpha = async_nats::ConnectOptions::new()
        .name("alpha")
        .connect(broker.nats.to_string())
        .await
        .unwrap();
    alpha.flush().await.unwrap();

    let advisory = tokio::time::timeout(GUARD, advisories.next())
        .await
        .unwrap()
        .unwrap();
    let advisory: Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(
        advisory["type"], "io.nats.server.advisory.v1.client_connect",
        "{advisory}"
    );
    assert_eq!(advisory["client"]["acc"], "$G");
    let connected = tokio::time::timeout(GUARD, async {
        loop {
            let m = live.next().await.unwrap();
            let e: Value = serde_json::from_slice(&m.payload).unwrap();
            if m.subject.as_str() == "$sys.events.client_connected"
                && e["client"]["name"] == "alpha"
            {
                return e;
            }
        }
    })
    .await
    .expect("a live client_connected event for alpha");
    assert_eq!(connected["tenant"], "$G");
    assert_eq!(connected["severity"], "info");
    assert_eq!(connected["client"]["protocol"], "nats");

    // A schema violation, kept with its station.
    assert_eq!(
        broker
            .post(
                "/v1/schemas",
                json!({"name": "order", "definition": {"type": "object", "required": ["id"]}})
            )
            .await,
        201
    );
    assert_eq!(
        broker
            .post(
                "/v1/stations",
                json!({"name": "orders", "subjects": ["orders.>"], "schema": "order"})
            )
            .await,
        201
    );
    assert_eq!(
        broker
            .post("/v1/subjects/orders.eu", json!({"no": 1}))
            .await,
        422
    );
    drop(alpha);
    watcher.flush().await.unwrap();
    let deadline = Instant::now() + GUARD;
    while broker.events("kind=schema_violation").await.is_empty() {
        assert!(Instant::now() < deadline, "no schema_violation event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(watcher);
    broker.stop().await;

    // After a restart, everything from before is still there.
    let broker = Broker::start(dir.path()).await;
    let all = broker.events("").await;
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "server_started",
        "client_connected",
        "schema_violation",
        "client_disconnected",
        "server_stopping",
    ] {
        assert!(
            kinds.contains(&kind),
            "{kind} kept across a restart: {kinds:?}"
        );
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "server_started").count(),
        2,
        "{kinds:?}"
    );
    // Newest first, ids increasing with time.
    let ids: Vec<u64> = all.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    // Filters.
    let violations = broker.events("kind=schema_violation&station=orders").await;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0]["severity"], "warning");
    assert_eq!(violations[0]["station"], "orders");
    assert!(
        broker
            .events("kind=schema_violation&station=other")
            .await
            .is_empty()
    );
    let named = broker.events("client=alpha").await;
    assert!(
        named.len() >= 2 && named.iter().all(|e| e["client"]["name"] == "alpha"),
        "{named:?}"
    );
    let warnings = broker.events("severity=warning").await;
    assert!(
        warnings.iter().all(|e| e["severity"] != "info"),
        "{warnings:?}"
    );
    let page = broker.events(&format!("before={}", ids[0])).await;
    assert_eq!(page.len(), all.len() - 1);
    let bad = http()
        .get(broker.url("/v1/events?severity=loud"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // JetStream reads the station like any other, and nobody writes into it.
    let client = async_nats::connect(broker.nats.to_string()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream("$sys_events").await.unwrap();
    let info = stream.info().await.unwrap();
    assert!(info.state.messages as usize >= all.len(), "{info:?}");
    let last = stream
        .get_last_raw_message_by_subject("$sys.events.schema_violation")
        .await
        .unwrap();
    let last: Value = serde_json::from_slice(&last.payload).unwrap();
    assert_eq!(last["station"], "orders");
    let refused = js
        .publish("$sys.events.forged", "x".into())
        .await
        .unwrap()
        .await;
    assert!(refused.is_err(), "a client cannot write system events");
    drop(client);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_violations_reach_a_webhook_from_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0).await;
    write_config(
        dir.path(),
        &format!(
            "[[notifications.webhooks]]\nname = \"ops\"\nurl = \"{}\"\nkinds = [\"schema_violation\"]\nsecret = \"s3cret\"\n",
            receiver.url()
        ),
    );
    let broker = Broker::start(dir.path()).await;
    assert_eq!(
        broker
            .post(
                "/v1/schemas",
                json!({"name": "order", "definition": {"type": "object", "required": ["id"]}})
            )
            .await,
        201
    );
    assert_eq!(
        broker
            .post(
                "/v1/stations",
                json!({"name": "orders", "subjects": ["orders.>"], "schema": "order"})
            )
            .await,
        201
    );
    // The webhook's group starts with new events: let it exist first.
    receiver.until("nothing yet", |h| h.is_empty()).await;
    let nats = async_nats::connect(broker.nats.to_string()).await.unwrap();
    let js = async_nats::jetstream::new(nats.clone());
    let (mqtt, mut events) = {
        let mut o = rumqttc::v5::MqttOptions::new("violator", "127.0.0.1", broker.mqtt.port());
        o.set_keep_alive(Duration::from_secs(30));
        rumqttc::v5::AsyncClient::new(o, 64)
    };
    let mqtt_loop = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    for round in 0..20 {
        match round % 3 {
            0 => assert_eq!(
                broker
                    .post("/v1/subjects/orders.http", json!({"n": round}))
                    .await,
                422
            ),
            1 => {
                let ack = js
                    .publish("orders.js", format!("{{\"n\": {round}}}").into())
                    .await
                    .unwrap()
                    .await;
                assert!(ack.is_err(), "JetStream publish refused by the schema");
            }
            _ => mqtt
                .publish(
                    "orders/mqtt",
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    format!("{{\"n\": {round}}}"),
                )
                .await
                .unwrap(),
        }
    }
    let hits = receiver
        .until("20 schema violations", |h| h.len() >= 20)
        .await;
    assert_eq!(hits.len(), 20, "one POST per violation");
    let mut subjects = std::collections::BTreeMap::<String, usize>::new();
    for h in &hits {
        assert_eq!(h.body["kind"], "schema_violation", "{}", h.body);
        assert_eq!(h.body["tenant"], "$G");
        assert_eq!(h.body["station"], "orders");
        assert!(h.header("Junction-Event-Id").is_some());
        assert!(h.signed_with("s3cret"), "signed: {:?}", h.headers);
        *subjects
            .entry(h.body["subject"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        subjects.values().sum::<usize>(),
        20,
        "every protocol's violation: {subjects:?}"
    );
    mqtt_loop.abort();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_then_dead_lettered_and_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0).await;
    let port = receiver.addr.port();
    write_config(
        dir.path(),
        &format!(
            "[[notifications.webhooks]]\nname = \"ops\"\nurl = \"{}\"\nkinds = [\"config_reloaded\", \"config_reload_failed\", \"server_stopping\"]\nretry_base = \"200ms\"\nmax_attempts = 8\n",
            receiver.url()
        ),
    );
    let broker = Broker::start(dir.path()).await;
    let reload = || async {
        let r = http()
            .post(broker.url("/v1/server/reload"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert_eq!(status, 200, "reload: {body}");
        status
    };

    // 500, 500, 500, 200: one event, four attempts, one id, growing gaps.
    receiver
        .script
        .lock()
        .unwrap()
        .extend([(500, None), (500, None), (500, None)]);
    assert_eq!(reload().await, 200);
    let hits = receiver.until("four attempts", |h| h.len() >= 4).await;
    assert_eq!(hits.len(), 4);
    let ids: Vec<_> = hits.iter().map(|h| h.header("Junction-Event-Id")).collect();
    assert!(ids.iter().all(|i| i.is_some() && *i == ids[0]), "{ids:?}");
    let attempts: Vec<_> = hits
        .iter()
        .map(|h| h.header("Junction-Delivery-Attempt").unwrap().to_string())
        .collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    // Backoff from 200 ms, doubling, jitter at most halves it.
    for (i, w) in hits.windows(2).enumerate() {
        let least = Duration::from_millis(100 << i);
        assert!(w[1].at - w[0].at >= least, "gap {i} at least {least:?}");
    }
    assert_eq!(hits[3].body["kind"], "config_reloaded");

    // 429 with Retry-After: 2 is waited out.
    receiver.script.lock().unwrap().push_back((429, Some("2")));
    assert_eq!(reload().await, 200);
    let hits = receiver.until("a retry after 429", |h| h.len() >= 6).await;
    assert!(hits[5].at - hits[4].at >= Duration::from_secs(2));

    // 404: not retried; dead-lettered; the alarm is raised, then cleared.
    receiver.script.lock().unwrap().push_back((404, None));
    assert_eq!(reload().await, 200);
    receiver.until("the 404", |h| h.len() >= 7).await;
    let deadline = Instant::now() + GUARD;
    loop {
        let dls = broker.get("/v1/stations/$dls_$sys_events").await;
        if dls["state"]["messages"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "dead letter: {dls}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = http()
        .get(broker.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("junction_alarm_active{name=\"webhook_failing:ops\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("alarm"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(reload().await, 200);
    receiver.until("the next one", |h| h.len() >= 8).await;
    assert!(
        receiver.hits().len() == 8,
        "a 404 is never retried: {:?}",
        receiver.hits().len()
    );
    let deadline = Instant::now() + GUARD;
    while broker
        .events("kind=alarm_cleared")
        .await
        .iter()
        .all(|e| e["alarm"]["name"] != "webhook_failing:ops")
    {
        assert!(Instant::now() < deadline, "webhook_failing cleared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The receiver goes away; events recorded meanwhile are delivered after a
    // broker restart, once it is back.
    drop(receiver);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(reload().await, 200);
    broker.stop().await;
    let receiver = Receiver::start(port).await;
    let broker = Broker::start(dir.path()).await;
    let hits = receiver
        .until("the events of before the restart", |h| {
            let kinds: Vec<_> = h.iter().map(|h| h.body["kind"].clone()).collect();
            kinds.contains(&json!("config_reloaded")) && kinds.contains(&json!("server_stopping"))
        })
        .await;
    let first = hits
        .iter()
        .find(|h| h.body["kind"] == "config_reloaded")
        .unwrap();
    assert!(first.header("Junction-Event-Id").is_some());
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_group_raises_an_alarm_mqtt_hears_it_and_it_clears_when_consumed() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[limits]\nconsumer_lag_alarm = 10\n");
    let broker = Broker::start(dir.path()).await;

    // An MQTT operator's console listens to the alarm topics.
    let (mqtt, mut events) = {
        let mut o = rumqttc::v5::MqttOptions::new("ops-console", "127.0.0.1", broker.mqtt.port());
        o.set_keep_alive(Duration::from_secs(30));
        rumqttc::v5::AsyncClient::new(o, 64)
    };
    mqtt.subscribe(
        "$SYS/broker/alarms/#",
        rumqttc::v5::mqttbytes::QoS::AtMostOnce,
    )
    .await
    .unwrap();
    let (tx, mut alarms) = tokio::sync::mpsc::unbounded_channel::<(String, Value)>();
    let (sub_tx, sub_rx) = tokio::sync::oneshot::channel::<()>();
    let mqtt_loop = tokio::spawn(async move {
        let mut sub_tx = Some(sub_tx);
        while let Ok(event) = events.poll().await {
            use rumqttc::v5::{Event, mqttbytes::v5::Packet};
            match event {
                Event::Incoming(Packet::SubAck(_)) => {
                    if let Some(t) = sub_tx.take() {
                        let _ = t.send(());
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let body = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                    let _ = tx.send((topic, body));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(GUARD, sub_rx).await.unwrap().unwrap();

    assert_eq!(
        broker
            .post(
                "/v1/stations",
                json!({"name": "orders", "subjects": ["orders.>"]})
            )
            .await,
        201
    );
    assert_eq!(
        broker
            .post("/v1/stations/orders/groups", json!({"name": "billing"}))
            .await,
        201
    );
    for i in 0..11 {
        assert_eq!(
            broker.post("/v1/subjects/orders.eu", json!({"n": i})).await,
            201
        );
    }
    let name = "consumer_lag:$G/orders/billing";
    broker.until_alarm(name, 1).await;
    let (topic, body) = tokio::time::timeout(GUARD, alarms.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(topic, "$SYS/broker/alarms/activate");
    assert_eq!(body["name"], name, "{body}");

    // Consumed and acked: the alarm clears, once.
    let fetched: Value = http()
        .post(broker.url("/v1/stations/orders/groups/billing/fetch"))
        .json(&json!({"batch": 100, "max_wait_ms": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens: Vec<Value> = fetched["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ack_token"].clone())
        .collect();
    assert_eq!(tokens.len(), 11);
    assert_eq!(
        broker
            .post(
                "/v1/stations/orders/groups/billing/ack",
                json!({ "ack": tokens })
            )
            .await,
        200
    );
    broker.until_alarm(name, 0).await;
    let (topic, body) = tokio::time::timeout(GUARD, alarms.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(topic, "$SYS/broker/alarms/deactivate");
    assert_eq!(body["name"], name);
    let kinds: Vec<Value> = broker
        .events(&format!("kind={name}"))
        .await
        .iter()
        .map(|e| json!([e["kind"], e["alarm"]["active"]]))
        .collect();
    assert_eq!(
        kinds,
        [
            json!(["alarm_cleared", false]),
            json!(["alarm_raised", true])
        ],
        "raised once, cleared once"
    );
    mqtt_loop.abort();
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_its_memory_limit_the_broker_refuses_new_connections_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    // Any broker uses more than 90% of 1 MB.
    write_config(dir.path(), "[limits]\nmemory_max = \"1MB\"\n");
    let broker = Broker::start(dir.path()).await;
    broker.until_alarm("memory_high", 1).await;

    // A new NATS client is told, as nats-server tells it at its connection cap.
    let mut sock = tokio::net::TcpStream::connect(broker.nats).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(GUARD, sock.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.contains("-ERR 'maximum connections exceeded'"),
        "{answer:?}"
    );
    // MQTT: CONNACK refused.
    let mut o = rumqttc::MqttOptions::new("late", "127.0.0.1", broker.mqtt.port());
    o.set_keep_alive(Duration::from_secs(30));
    let (_client, mut events) = rumqttc::AsyncClient::new(o, 8);
    let refused = tokio::time::timeout(GUARD, events.poll()).await.unwrap();
    assert!(refused.is_err(), "MQTT CONNACK refused: {refused:?}");

    // HTTP still answers; the alarm is an event with its figures.
    assert_eq!(
        broker
            .post("/v1/stations", json!({"name": "s", "subjects": ["s.>"]}))
            .await,
        201
    );
    let raised = broker.events("kind=memory_high").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(
        raised[0]["alarm"],
        json!({"name": "memory_high", "active": true})
    );
    broker.stop().await;
}
