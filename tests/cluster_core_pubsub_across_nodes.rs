//! Three real `junction` processes form a cluster from the nats-server style flags
//! (`--cluster`, `--routes` naming every node, itself included, `--cluster_name`),
//! and a client on any node reaches subscribers on every node:
//! - a NATS subscriber on node 3 gets what is published on node 1, each message once;
//! - a queue group spread over the three nodes gets 1,000 messages, each delivered
//!   to exactly one member;
//! - a request on node 1 is answered by a responder on node 2;
//! - an MQTT publish on node 2 reaches a NATS subscriber on node 1 and an MQTT
//!   subscriber on node 3, at QoS 0, 1 and 2;
//! - a server-sent events stream on node 3 gets a NATS publish from node 1, once.
//!
//! Interest crosses the links asynchronously, as on nats-server: each scenario
//! first waits until a probe published on the publishing node reaches the new
//! subscriber's node (the probe's subscription was made after the one under test,
//! on the same connection, and a link keeps order). Timeouts are hang guards only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;

const GUARD: Duration = Duration::from_secs(30);

struct Node {
    nats: u16,
    mqtt: u16,
    http: u16,
    ports: (u16, u16, u16, u16),
    child: Child,
}

struct Cluster {
    nodes: Vec<Node>,
    routes: String,
    dir: tempfile::TempDir,
}

fn spawn(dir: &Path, name: &str, ports: (u16, u16, u16, u16), routes: &str) -> Child {
    let (nats, mqtt, http, cluster) = ports;
    let data = dir.join(name).display().to_string();
    let nats = format!("127.0.0.1:{nats}");
    let mqtt = format!("127.0.0.1:{mqtt}");
    let http = format!("127.0.0.1:{http}");
    let cluster = format!("nats://127.0.0.1:{cluster}");
    let mut args = vec![
        "serve",
        "-n",
        name,
        "--nats-listen",
        &nats,
        "--mqtt-listen",
        &mqtt,
        "--http-listen",
        &http,
        "--data-dir",
        &data,
        "--cluster",
        &cluster,
        "--cluster_name",
        "test-cluster",
    ];
    if !routes.is_empty() {
        args.extend(["--routes", routes]);
    }
    process::junction(dir, &args, &[("RUST_LOG", "warn")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("junction starts")
}

/// Free (NATS, MQTT, HTTP, cluster) ports for `n` nodes.
fn node_ports(n: usize) -> Vec<(u16, u16, u16, u16)> {
    (0..n)
        .map(|_| {
            (
                process::free_port(),
                process::free_port(),
                process::free_port(),
                process::free_port(),
            )
        })
        .collect()
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports = node_ports(3);
        let routes = ports
            .iter()
            .map(|(_, _, _, c)| format!("nats://127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let child = spawn(dir.path(), &format!("n{}", i + 1), *p, &routes);
            nodes.push(Node {
                nats: p.0,
                mqtt: p.1,
                http: p.2,
                ports: *p,
                child,
            });
        }
        for n in &nodes {
            process::wait_listening(n.nats).await;
            process::wait_listening(n.mqtt).await;
            process::wait_listening(n.http).await;
        }
        Cluster { nodes, routes, dir }
    }

    /// Kills node `i` with SIGKILL.
    async fn kill(&mut self, i: usize) {
        self.nodes[i].child.kill().await.unwrap();
    }

    /// Starts node `i` again on its ports and data.
    async fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.child = spawn(
            self.dir.path(),
            &format!("n{}", i + 1),
            n.ports,
            &self.routes,
        );
        process::wait_listening(n.nats).await;
        process::wait_listening(n.http).await;
    }

    async fn nats(&self, i: usize) -> async_nats::Client {
        async_nats::connect(format!("nats://127.0.0.1:{}", self.nodes[i].nats))
            .await
            .unwrap()
    }
}

/// Waits until node `from` forwards `subject` to `sub` (a subscription on another
/// node, made after the interest under test): publishes probes until one arrives.
async fn until_seen(from: &async_nats::Client, subject: &str, sub: &mut async_nats::Subscriber) {
    tokio::time::timeout(GUARD, async {
        loop {
            from.publish(subject.to_string(), Bytes::from_static(b"probe"))
                .await
                .unwrap();
            from.flush().await.unwrap();
            if tokio::time::timeout(Duration::from_millis(100), sub.next())
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await
    .expect("the peers learn of the subscription");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_node_3_gets_each_publish_from_node_1_once() {
    let c = Cluster::start().await;
    let publisher = c.nats(0).await;
    let subscriber = c.nats(2).await;
    let mut data = subscriber.subscribe("orders.>").await.unwrap();
    let mut probe = subscriber.subscribe("probe.orders").await.unwrap();
    subscriber.flush().await.unwrap();
    until_seen(&publisher, "probe.orders", &mut probe).await;
    for i in 0..500u32 {
        publisher
            .publish(format!("orders.{}", i % 5), Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 500 {
        let m = tokio::time::timeout(GUARD, data.next())
            .await
            .expect("every message arrives")
            .unwrap();
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    let want: Vec<String> = (0..500u32).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "each message once, in publish order");
    // Nothing more: a message crosses once, however many filters match there.
    publisher
        .publish("orders.end", Bytes::from_static(b"end"))
        .await
        .unwrap();
    let m = tokio::time::timeout(GUARD, data.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_over_three_nodes_gets_each_message_once() {
    let c = Cluster::start().await;
    let mut members = Vec::new();
    let publisher = c.nats(0).await;
    for i in 0..3 {
        let client = c.nats(i).await;
        let q = client
            .queue_subscribe("jobs", "workers".to_string())
            .await
            .unwrap();
        let mut probe = client.subscribe(format!("probe.jobs.{i}")).await.unwrap();
        client.flush().await.unwrap();
        if i != 0 {
            until_seen(&publisher, &format!("probe.jobs.{i}"), &mut probe).await;
        }
        members.push((client, q));
    }
    for i in 0..1000u32 {
        publisher
            .publish("jobs", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let mut clients = Vec::new();
    for (i, (client, mut q)) in members.into_iter().enumerate() {
        let tx = tx.clone();
        clients.push(client);
        tokio::spawn(async move {
            while let Some(m) = q.next().await {
                let _ = tx.send((i, String::from_utf8(m.payload.to_vec()).unwrap()));
            }
        });
    }
    drop(tx);
    let mut seen = HashSet::new();
    let mut per_node = [0usize; 3];
    while seen.len() < 1000 {
        let (node, payload) = tokio::time::timeout(GUARD, rx.recv())
            .await
            .expect("every job arrives")
            .unwrap();
        assert!(
            seen.insert(payload.clone()),
            "job {payload} delivered twice"
        );
        per_node[node] += 1;
    }
    // A late duplicate would show up now: one more message, then silence.
    publisher
        .publish("jobs", Bytes::from_static(b"last"))
        .await
        .unwrap();
    let (_, payload) = tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload, "last", "no job was delivered twice");
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node's member got some jobs: {per_node:?}"
    );
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_node_1_is_answered_on_node_2() {
    let c = Cluster::start().await;
    let responder = c.nats(1).await;
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    let mut probe = responder.subscribe("probe.svc").await.unwrap();
    responder.flush().await.unwrap();
    let answering = responder.clone();
    tokio::spawn(async move {
        while let Some(m) = service.next().await {
            if let Some(reply) = m.reply {
                let mut body = b"echo: ".to_vec();
                body.extend_from_slice(&m.payload);
                answering.publish(reply, body.into()).await.unwrap();
            }
        }
    });
    let requester = c.nats(0).await;
    until_seen(&requester, "probe.svc", &mut probe).await;
    for i in 0..20 {
        let answer = tokio::time::timeout(
            GUARD,
            requester.request("svc.echo", Bytes::from(format!("hi {i}"))),
        )
        .await
        .expect("answered")
        .expect("no error");
        assert_eq!(answer.payload, Bytes::from(format!("echo: hi {i}")));
    }
    // With no responder anywhere, the request fails at once (no responders).
    let err = requester
        .request("svc.nobody", Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

async fn mqtt(port: u16, id: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    rumqttc::AsyncClient::new(o, 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_publish_on_node_2_reaches_nats_on_node_1_and_mqtt_on_node_3() {
    use rumqttc::{Event, Packet, QoS};
    let c = Cluster::start().await;
    let nats = c.nats(0).await;
    let mut on_nats = nats.subscribe("sensors.>").await.unwrap();
    nats.flush().await.unwrap();

    let (sub, mut sub_loop) = mqtt(c.nodes[2].mqtt, "sub-on-3").await;
    sub.subscribe("sensors/#", QoS::ExactlyOnce).await.unwrap();
    let (tx, mut from_mqtt) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    tokio::spawn(async move {
        while let Ok(ev) = sub_loop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
            }
        }
    });

    let (publisher, mut pub_loop) = mqtt(c.nodes[1].mqtt, "pub-on-2").await;
    tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });

    // Until both subscriptions are known on node 2.
    tokio::time::timeout(GUARD, async {
        let (mut nats_ok, mut mqtt_ok) = (false, false);
        while !(nats_ok && mqtt_ok) {
            publisher
                .publish("sensors/probe", QoS::AtMostOnce, false, "probe")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(1), on_nats.next()).await
            {
                nats_ok = true;
            }
            while from_mqtt.try_recv().is_ok() {
                mqtt_ok = true;
            }
        }
    })
    .await
    .expect("node 2 learns of both subscriptions");

    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("sensors/q{i}");
        publisher
            .publish(&topic, qos, false, format!("reading {i}"))
            .await
            .unwrap();
        let m = tokio::time::timeout(GUARD, async {
            loop {
                let m = on_nats.next().await.unwrap();
                if m.subject.as_str() != "sensors.probe" {
                    return m;
                }
            }
        })
        .await
        .expect("NATS on node 1 gets it");
        assert_eq!(m.subject.as_str(), format!("sensors.q{i}"));
        assert_eq!(m.payload, Bytes::from(format!("reading {i}")));
        let (t, payload) = tokio::time::timeout(GUARD, async {
            loop {
                let (t, p) = from_mqtt.recv().await.unwrap();
                if t != "sensors/probe" {
                    return (t, p);
                }
            }
        })
        .await
        .expect("MQTT on node 3 gets it");
        assert_eq!(t, topic);
        assert_eq!(payload, format!("reading {i}").into_bytes());
    }
}

async fn get_json(port: u16, path: &str) -> serde_json::Value {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_lists_the_cluster_and_clients_learn_every_url() {
    let c = Cluster::start().await;
    // Until node 1 has a link to both others (the mesh forms from the seed list).
    let view = tokio::time::timeout(GUARD, async {
        loop {
            let v = get_json(c.nodes[0].http, "/v1/cluster").await;
            let nodes = v["nodes"].as_array().unwrap();
            if nodes.len() == 3 && nodes.iter().all(|n| n["online"] == true) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the mesh forms");
    assert_eq!(view["name"], "test-cluster");
    let names: Vec<&str> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["n1", "n2", "n3"],
        "this node first, then the others"
    );
    assert_eq!(view["nodes"][0]["this"], true);
    assert!(view["meta_leader"].is_null(), "no meta group yet");

    let varz = get_json(c.nodes[1].http, "/varz").await;
    assert_eq!(varz["cluster"]["name"], "test-cluster");
    assert_eq!(varz["cluster"]["urls"].as_array().unwrap().len(), 2);

    // A client connecting now is told every node's client URL.
    let client = c.nats(2).await;
    let mut urls = client.server_info().connect_urls;
    urls.sort();
    let mut want: Vec<String> = c
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.nats))
        .collect();
    want.sort();
    assert_eq!(urls, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_the_others_working_and_rejoins_on_restart() {
    let mut c = Cluster::start().await;
    let n1 = c.nats(0).await;
    let n3 = c.nats(2).await;
    let mut on3 = n3.subscribe("alive.>").await.unwrap();
    n3.flush().await.unwrap();
    until_seen(&n1, "alive.before", &mut on3).await;
    // Node 1 has linked to node 2 (the mesh forms asynchronously).
    tokio::time::timeout(GUARD, async {
        loop {
            let v = get_json(c.nodes[0].http, "/v1/cluster").await;
            if v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == "n2" && n["online"] == true)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("node 1 links to node 2");

    c.kill(1).await;
    // Node 1 still reaches node 3 while node 2 is gone, and sees node 2 offline.
    until_seen(&n1, "alive.during", &mut on3).await;
    let last = std::sync::Mutex::new(serde_json::Value::Null);
    let seen = tokio::time::timeout(GUARD, async {
        loop {
            let v = get_json(c.nodes[0].http, "/v1/cluster").await;
            let n2 = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == "n2")
                .cloned();
            if n2.is_some_and(|n| n["online"] == false) {
                return;
            }
            *last.lock().unwrap() = v;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "node 1 sees node 2 go offline; the last view was {}",
        last.lock().unwrap()
    );

    c.restart(1).await;
    let n2 = c.nats(1).await;
    let mut on2 = n2.subscribe("alive.>").await.unwrap();
    n2.flush().await.unwrap();
    // The restarted node links again, both ways: its subscriber gets node 1's
    // publishes, and node 3's subscriber gets node 2's.
    until_seen(&n1, "alive.after", &mut on2).await;
    until_seen(&n2, "alive.from2", &mut on3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_joining_through_one_seed_form_a_full_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let ports = node_ports(5);
    let seed = format!("127.0.0.1:{}", ports[0].3);
    let mut children = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let routes = if i == 0 { "" } else { seed.as_str() };
        children.push(spawn(dir.path(), &format!("n{}", i + 1), *p, routes));
    }
    for p in &ports {
        process::wait_listening(p.2).await;
    }
    // Every node, the last ones included (they were told only of node 1), links
    // to all four others.
    for p in &ports {
        let last = std::sync::Mutex::new(serde_json::Value::Null);
        let formed = tokio::time::timeout(GUARD, async {
            loop {
                let v = get_json(p.2, "/v1/cluster").await;
                let nodes = v["nodes"].as_array().unwrap();
                if nodes.len() == 5 && nodes.iter().all(|n| n["online"] == true) {
                    return;
                }
                *last.lock().unwrap() = v;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            formed.is_ok(),
            "a full mesh of five; the last view was {}",
            last.lock().unwrap()
        );
    }
    // And a message from node 5 reaches a subscriber on node 4.
    let n4 = async_nats::connect(format!("nats://127.0.0.1:{}", ports[3].0))
        .await
        .unwrap();
    let n5 = async_nats::connect(format!("nats://127.0.0.1:{}", ports[4].0))
        .await
        .unwrap();
    let mut sub = n4.subscribe("mesh.>").await.unwrap();
    n4.flush().await.unwrap();
    until_seen(&n5, "mesh.probe", &mut sub).await;
    drop(children);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_and_publishers_reach_other_nodes() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message as Ws;
    let c = Cluster::start().await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/v1/ws", c.nodes[1].http))
            .await
            .unwrap();
    let next_json = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| loop {
        match tokio::time::timeout(GUARD, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Ws::Text(t) => return serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            _ => continue,
        }
    };
    ws.send(Ws::text(
        r#"{"op":"subscribe","sub":"s1","subject":"web.>"}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["op"], "subscribed");

    // NATS on node 1 → WebSocket on node 2 (probes until the interest crossed).
    let n1 = c.nats(0).await;
    let got = tokio::time::timeout(GUARD, async {
        loop {
            n1.publish("web.from-nats", Bytes::from_static(b"hello ws"))
                .await
                .unwrap();
            n1.flush().await.unwrap();
            if let Ok(Some(Ok(Ws::Text(t)))) =
                tokio::time::timeout(Duration::from_millis(100), ws.next()).await
            {
                return serde_json::from_str::<serde_json::Value>(&t).unwrap();
            }
        }
    })
    .await
    .expect("the WebSocket subscriber on node 2 gets node 1's publish");
    assert_eq!(got["op"], "message");
    assert_eq!(got["subject"], "web.from-nats");
    assert_eq!(got["payload"], "hello ws");

    // WebSocket publish on node 2 → NATS on node 3.
    let n3 = c.nats(2).await;
    let mut sub = n3.subscribe("fromweb.>").await.unwrap();
    let mut probe = n3.subscribe("probe.web").await.unwrap();
    n3.flush().await.unwrap();
    let n2 = c.nats(1).await;
    until_seen(&n2, "probe.web", &mut probe).await;
    ws.send(Ws::text(
        r#"{"op":"publish","subject":"fromweb.x","payload":"from the browser","ref":1}"#,
    ))
    .await
    .unwrap();
    let m = tokio::time::timeout(GUARD, sub.next())
        .await
        .expect("NATS on node 3 gets the WebSocket publish")
        .unwrap();
    assert_eq!(m.payload, Bytes::from_static(b"from the browser"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_sent_events_stream_on_node_3_gets_publishes_from_node_1() {
    let c = Cluster::start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut stream = http
        .get(format!(
            "http://127.0.0.1:{}/v1/subjects/sse.%3E/events",
            c.nodes[2].http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let n1 = c.nats(0).await;
    // Probes until the stream's interest has crossed to node 1, then one message
    // that must arrive as it was published.
    let mut buffer = String::new();
    let mut events: Vec<serde_json::Value> = Vec::new();
    tokio::time::timeout(GUARD, async {
        let mut sent_real = false;
        loop {
            if events.iter().any(|e| e["subject"] == "sse.real") {
                return;
            }
            if !sent_real && events.iter().any(|e| e["subject"] == "sse.probe") {
                n1.publish("sse.real", Bytes::from_static(b"across nodes"))
                    .await
                    .unwrap();
                n1.flush().await.unwrap();
                sent_real = true;
            } else if !sent_real {
                n1.publish("sse.probe", Bytes::from_static(b"probe"))
                    .await
                    .unwrap();
                n1.flush().await.unwrap();
            }
            let Ok(chunk) = tokio::time::timeout(Duration::from_millis(100), stream.chunk()).await
            else {
                continue;
            };
            let chunk = chunk.unwrap().expect("the stream stays open");
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let is_message = block.lines().any(|l| {
                    l.strip_prefix("event:")
                        .is_some_and(|v| v.trim() == "message")
                });
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if is_message {
                    events.push(serde_json::from_str(&data).unwrap());
                }
            }
        }
    })
    .await
    .expect("the SSE stream on node 3 gets node 1's publish");
    let real: Vec<_> = events
        .iter()
        .filter(|e| e["subject"] == "sse.real")
        .collect();
    assert_eq!(real.len(), 1, "delivered once: {events:?}");
    assert_eq!(real[0]["payload"], "across nodes");
}
