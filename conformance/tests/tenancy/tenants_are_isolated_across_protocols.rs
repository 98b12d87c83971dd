//! Two tenants each own a station called `orders`. What one tenant publishes
//! over NATS, JetStream, MQTT, HTTP and WebSocket never reaches the other's
//! readers (core subscription, pull consumer, MQTT subscription, WebSocket,
//! station reads), and each tenant lists only its own stations, over
//! JetStream and HTTP, also after a restart.

use crate::common::{get_as, nats_as, post_as, two_tenants, ws_as, ws_call, ws_next};
use crate::support::{V4, text, v4_options, within};
use async_nats::jetstream;
use futures::StreamExt;
use junction_conformance::{mqtt_broker_with, start_in};
use rumqttc::QoS;
use serde_json::json;

async fn stream_names(js: &jetstream::Context) -> Vec<String> {
    // The MQTT front-end's state streams are listed as nats-server lists them;
    // they are each tenant's own.
    let mut names: Vec<String> = js
        .stream_names()
        .map(|n| n.unwrap())
        .filter(|n| std::future::ready(!n.starts_with("$MQTT_")))
        .collect()
        .await;
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_tenant_publishes_the_other_never_sees() {
    let b = mqtt_broker_with(two_tenants).await;

    // Both tenants make a station called `orders` (orders.>), and acme one
    // more, over JetStream.
    let alice = nats_as(&b, "alice", "alice-pw").await;
    let bob = nats_as(&b, "bob", "bob-pw").await;
    let js_a = jetstream::new(alice.clone());
    let js_b = jetstream::new(bob.clone());
    for js in [&js_a, &js_b] {
        js.create_stream(jetstream::stream::Config {
            name: "orders".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .expect("orders in each tenant");
    }
    js_a.create_stream(jetstream::stream::Config {
        name: "acme_only".into(),
        subjects: vec!["acme.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(stream_names(&js_a).await, ["acme_only", "orders"]);
    assert_eq!(stream_names(&js_b).await, ["orders"]);

    // acme's readers: a core subscription, an MQTT subscription and a
    // WebSocket subscription, all on orders.
    let mut core = alice.subscribe("orders.>").await.unwrap();
    alice.flush().await.unwrap();
    let mut o = v4_options(&b, "acme-reader");
    o.set_credentials("alice", "alice-pw");
    let (mut mqtt_reader, _) = V4::connect(o).await;
    mqtt_reader.subscribe("orders/#", QoS::AtLeastOnce).await;
    let mut ws_reader = ws_as(&b, "alice", "alice-pw").await;
    let sub = ws_call(
        &mut ws_reader,
        json!({"op": "subscribe", "sub": "s1", "subject": "orders.>"}),
        &["subscribed", "error"],
    )
    .await;
    assert_eq!(sub["op"], "subscribed", "{sub}");

    // globex publishes over every protocol.
    bob.publish("orders.core", "globex-core".into())
        .await
        .unwrap();
    bob.flush().await.unwrap();
    js_b.publish("orders.js", "globex-js".into())
        .await
        .unwrap()
        .await
        .expect("globex's own station acks");
    let mut o = v4_options(&b, "globex-writer");
    o.set_credentials("bob", "bob-pw");
    let (mut mqtt_writer, _) = V4::connect(o).await;
    mqtt_writer
        .publish("orders/mqtt", QoS::AtLeastOnce, false, "globex-mqtt")
        .await;
    let (status, body) = post_as(
        &b,
        "bob",
        "bob-pw",
        "/v1/subjects/orders.http",
        "globex-http",
    )
    .await;
    assert_eq!(status, 201, "globex's HTTP publish is stored: {body}");
    let mut ws_writer = ws_as(&b, "bob", "bob-pw").await;
    let published = ws_call(
        &mut ws_writer,
        json!({"op": "publish", "subject": "orders.ws", "payload": "globex-ws"}),
        &["published", "error"],
    )
    .await;
    assert_eq!(published["op"], "published", "{published}");

    // Then acme publishes one message; each acme reader's first message is
    // acme's.
    js_a.publish("orders.mark", "acme-mark".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let m = within("core message", core.next()).await.unwrap();
    assert_eq!(&m.payload[..], b"acme-mark", "core reader saw {m:?}");
    let got = mqtt_reader.recv_until(b"acme-mark").await;
    let payloads: Vec<String> = got.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(payloads, ["acme-mark"], "MQTT reader");
    let frame = ws_next(&mut ws_reader, &["message"]).await;
    assert_eq!(frame["payload"], "acme-mark", "WebSocket reader: {frame}");

    // Each tenant's `orders` holds only its own messages (`orders.>` captures
    // every protocol's publishes).
    let acme = js_a
        .get_stream("orders")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    let mut s = js_b.get_stream("orders").await.unwrap();
    let globex = s.info().await.unwrap().state.messages;
    assert_eq!(acme, 1, "acme's orders");
    assert_eq!(globex, 5, "globex's orders: core, js, mqtt, http, ws");

    // A pull consumer on acme's orders gets acme's message only.
    let stream = js_a.get_stream("orders").await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(std::time::Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    let mut pulled = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        pulled.push(text(&m.payload));
        m.ack().await.unwrap();
    }
    assert_eq!(pulled, ["acme-mark"]);

    // HTTP lists and reads each tenant's own stations.
    let names = |v: &serde_json::Value| {
        let mut n: Vec<String> = v["stations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap_or_default().to_string())
                    // The MQTT front-end's own state of each tenant.
                    .filter(|n| !n.starts_with("$MQTT_"))
                    .collect()
            })
            .unwrap_or_default();
        n.sort();
        n
    };
    let (status, list) = get_as(&b, "alice", "alice-pw", "/v1/stations").await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["acme_only", "orders"], "{list}");
    let (_, list) = get_as(&b, "bob", "bob-pw", "/v1/stations").await;
    assert_eq!(names(&list), ["orders"], "{list}");
    let (status, _) = get_as(&b, "bob", "bob-pw", "/v1/stations/acme_only").await;
    assert_eq!(status, 404, "globex cannot see acme's station");
    // The default tenant sees neither tenant's stations.
    let (_, list) = get_as(&b, "admin", "admin-pw", "/v1/stations").await;
    assert_eq!(names(&list), Vec::<String>::new(), "{list}");

    // Connections: a tenant's users see their tenant's; the operators (the
    // default tenant's users) see every tenant's; server-wide figures are the
    // operators'.
    let tenants_of = |v: &serde_json::Value| {
        let mut t: Vec<String> = v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["internal"] == false)
            .map(|c| c["tenant"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let (_, conns) = get_as(&b, "alice", "alice-pw", "/v1/connections").await;
    assert_eq!(tenants_of(&conns), ["acme"], "{conns}");
    let (_, conns) = get_as(&b, "admin", "admin-pw", "/v1/connections").await;
    assert_eq!(tenants_of(&conns), ["acme", "globex"], "{conns}");
    let (status, connz) = get_as(&b, "bob", "bob-pw", "/connz").await;
    assert_eq!(status, 200);
    let ids = |v: &serde_json::Value| {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cid"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let (_, all) = get_as(&b, "admin", "admin-pw", "/connz").await;
    assert!(
        ids(&connz).len() < ids(&all).len() && ids(&connz).iter().all(|c| ids(&all).contains(c)),
        "globex's /connz {connz} is a part of the operators' {all}"
    );
    // /metrics: a tenant's own figures; everything for the operators.
    let metrics = |user: &'static str| {
        let b = &b;
        async move {
            let r = crate::common::http()
                .get(format!("{}/metrics", b.http_url()))
                .basic_auth(user, Some(format!("{user}-pw")))
                .send()
                .await
                .expect("GET /metrics");
            assert_eq!(r.status().as_u16(), 200, "{user}");
            r.text().await.expect("text")
        }
    };
    let bobs = metrics("bob").await;
    assert!(
        bobs.contains(r#"junction_station_messages{station="orders",tenant="globex"}"#),
        "{bobs}"
    );
    assert!(
        !bobs.contains("acme"),
        "acme's figures leaked to globex: {bobs}"
    );
    for server_wide in [
        "junction_total_connections",
        "junction_storage_disk_bytes",
        "junction_resident_memory_bytes",
    ] {
        assert!(
            !bobs.contains(server_wide),
            "{server_wide} shown to a tenant"
        );
    }
    let all = metrics("admin").await;
    for needle in [
        r#"junction_station_messages{station="orders",tenant="globex"}"#,
        r#"junction_station_messages{station="orders",tenant="acme"}"#,
        "junction_total_connections",
    ] {
        assert!(
            all.contains(needle),
            "{needle} missing for the operators: {all}"
        );
    }
    // /v1/server: a tenant's user gets its tenant's figures.
    let (_, server) = get_as(&b, "bob", "bob-pw", "/v1/server").await;
    assert_eq!(server["scope"], "tenant", "{server}");
    assert!(server.get("total_connections").is_none(), "{server}");
    let (_, all_server) = get_as(&b, "admin", "admin-pw", "/v1/server").await;
    assert_eq!(all_server["scope"], "server", "{all_server}");
    assert!(
        server["connections"].as_u64() < all_server["connections"].as_u64(),
        "globex's {server} is a part of {all_server}"
    );
    let (status, _) = get_as(&b, "bob", "bob-pw", "/varz").await;
    assert_eq!(status, 403);
    let (status, _) = get_as(&b, "admin", "admin-pw", "/varz").await;
    assert_eq!(status, 200);

    drop((
        alice,
        bob,
        mqtt_reader,
        mqtt_writer,
        ws_reader,
        ws_writer,
        core,
    ));
    // After a restart, each tenant still owns its own stations and messages.
    let (config, dir) = b.stop().await;
    let b = start_in(config, dir).await;
    let js_a = jetstream::new(nats_as(&b, "alice", "alice-pw").await);
    let js_b = jetstream::new(nats_as(&b, "bob", "bob-pw").await);
    assert_eq!(stream_names(&js_a).await, ["acme_only", "orders"]);
    assert_eq!(stream_names(&js_b).await, ["orders"]);
    let acme = js_a
        .get_stream("orders")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    let globex = js_b
        .get_stream("orders")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!((acme, globex), (1, 5), "after the restart");
}
