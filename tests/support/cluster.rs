//! A cluster of real `junction` processes on 127.0.0.1 ports, for the cluster
//! tests: start, wait until the meta group formed, kill and restart nodes.
//! Each node logs to `<dir>/<name>.log` (kept when a test fails: set
//! `CLUSTER_TEST_KEEP=1` to keep it anyway).
#![allow(dead_code)] // each test binary uses part of it

use super::process;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// One node: its name, client ports and process.
pub struct Node {
    pub name: String,
    pub nats: u16,
    pub mqtt: u16,
    pub http: u16,
    pub cluster: u16,
    pub child: Child,
}

fn spawn(dir: &Path, n: &Node, join: &str, env: &[(&str, &str)]) -> Child {
    let data = dir.join(&n.name).display().to_string();
    let nats = format!("127.0.0.1:{}", n.nats);
    let mqtt = format!("127.0.0.1:{}", n.mqtt);
    let http = format!("127.0.0.1:{}", n.http);
    let listen = format!("127.0.0.1:{}", n.cluster);
    let mut args = vec![
        "serve",
        "-n",
        &n.name,
        "--nats-listen",
        &nats,
        "--mqtt-listen",
        &mqtt,
        "--http-listen",
        &http,
        "--data-dir",
        &data,
        "--cluster-listen",
        &listen,
    ];
    // A node started with no routes is a cluster of one.
    if !join.is_empty() {
        args.extend(["--join", join]);
    }
    // `("--config", FILE)` in `env` is a flag, not a variable.
    for (k, v) in env.iter().filter(|(k, _)| k.starts_with("--")) {
        args.extend([*k, *v]);
    }
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.log", n.name)))
        .expect("node log");
    let err = log.try_clone().expect("node log");
    let mut env: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("--"))
        .copied()
        .collect();
    if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
        env.push(("RUST_LOG", "warn"));
    }
    process::junction(dir, &args, &env)
        .stdout(log)
        .stderr(err)
        .spawn()
        .expect("junction starts")
}

/// A bearer token the HTTP helpers send, for clusters that require
/// credentials (set once per test binary).
pub static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = TOKEN.get()
        && let Ok(v) = format!("Bearer {t}").parse()
    {
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs `body` as JSON; the status and the JSON answer (`null` when none).
pub async fn post_json(port: u16, path: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub async fn get_json(port: u16, path: &str) -> Value {
    http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every message of the node at `port`'s own copy of replicated station
/// `station` (`GET /v1/stations/{station}/replica`, page by page), as JSON.
#[allow(dead_code)] // each test binary uses part of this file
pub async fn replica_messages(port: u16, station: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let page = get_json(
            port,
            &format!("/v1/stations/{station}/replica?from_seq={from}&limit=1000"),
        )
        .await;
        let msgs = page["messages"].as_array().cloned().unwrap_or_default();
        let Some(last) = msgs.last().and_then(|m| m["seq"].as_u64()) else {
            return out;
        };
        from = last + 1;
        out.extend(msgs);
    }
}

/// Polls `check` until it holds (a hang guard, not a timing claim).
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + process::GUARD;
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Running nodes sharing one temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub join: String,
    env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` nodes (`n1`…) that all join each other, and waits until the
    /// meta group has formed with `n` voters.
    pub async fn start(n: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut nodes: Vec<Node> = Vec::new();
        let ports: Vec<[u16; 4]> = (0..n)
            .map(|_| std::array::from_fn(|_| process::free_port()))
            .collect();
        let join = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p[3]))
            .collect::<Vec<_>>()
            .join(",");
        for (i, [nats, mqtt, http, cluster]) in ports.into_iter().enumerate() {
            let mut node = Node {
                name: format!("n{}", i + 1),
                nats,
                mqtt,
                http,
                cluster,
                child: tokio::process::Command::new("true").spawn().unwrap(),
            };
            node.child = spawn(dir.path(), &node, &join, env);
            nodes.push(node);
        }
        for node in &nodes {
            process::wait_listening(node.http).await;
        }
        let c = Cluster {
            dir,
            nodes,
            join,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.until_formed(n).await;
        c
    }

    /// Waits until every node reports the same meta leader and `voters` voters.
    pub async fn until_formed(&self, voters: usize) {
        until("the meta group forms", || async {
            let mut leaders = Vec::new();
            for n in &self.nodes {
                let v = get_json(n.http, "/v1/cluster").await;
                let count = v["nodes"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|n| n["voter"] == true).count());
                if count != voters || v["meta_leader"].is_null() {
                    return false;
                }
                leaders.push(v["meta_leader"].clone());
            }
            leaders.windows(2).all(|w| w[0] == w[1])
        })
        .await;
    }

    /// Starts one more node (`n<k>`, on new ports, the same environment) that
    /// joins the running ones through their cluster addresses, and waits until
    /// it listens; its index. Whether it became a member is the caller's to
    /// wait for.
    pub async fn add_node(&mut self) -> usize {
        let join = self.join.clone();
        self.spawn_node(&join).await
    }

    /// Starts one more node (`n<k>`) with no routes: a cluster of one, which
    /// may be told to join later (`junction cluster join`); its index.
    pub async fn add_lone_node(&mut self) -> usize {
        self.spawn_node("").await
    }

    async fn spawn_node(&mut self, join: &str) -> usize {
        let [nats, mqtt, http, cluster] = std::array::from_fn(|_| process::free_port());
        let mut node = Node {
            name: format!("n{}", self.nodes.len() + 1),
            nats,
            mqtt,
            http,
            cluster,
            child: tokio::process::Command::new("true").spawn().unwrap(),
        };
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        node.child = spawn(self.dir.path(), &node, join, &env);
        self.nodes.push(node);
        process::wait_listening(http).await;
        self.nodes.len() - 1
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }

    /// `kill -9` of node `i`.
    pub async fn kill(&mut self, i: usize) {
        self.nodes[i].child.kill().await.unwrap();
    }

    /// Starts node `i` again on its ports and data.
    pub async fn restart(&mut self, i: usize) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let child = spawn(self.dir.path(), &self.nodes[i], &self.join, &env);
        self.nodes[i].child = child;
        process::wait_listening(self.nodes[i].http).await;
    }

    pub fn nats_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].nats)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed || std::env::var_os("CLUSTER_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("node logs in {}", kept.display());
            if failed {
                for n in &self.nodes {
                    let log = kept.join(format!("{}.log", n.name));
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("--- last lines of {}:", log.display());
                    for line in &lines[lines.len().saturating_sub(20)..] {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// An MQTT 3.1.1 client (rumqttc) of `port` with client id `id`.
pub fn mqtt(port: u16, id: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    rumqttc::AsyncClient::new(o, 100)
}

/// Polls `events` until a packet `wanted` picks arrives (a hang guard of
/// [`process::GUARD`]); panics on a connection error.
pub async fn until_packet(
    events: &mut rumqttc::EventLoop,
    what: &str,
    wanted: impl Fn(&rumqttc::Packet) -> bool,
) {
    tokio::time::timeout(process::GUARD, async {
        loop {
            if let rumqttc::Event::Incoming(p) = events.poll().await.unwrap()
                && wanted(&p)
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never came: {what}"));
}

/// Publishes `m<from>`…`m<to - 1>` to `subject`, each with its text as
/// `Nats-Msg-Id`, sent again until acknowledged (as a client does while a
/// leader is being replaced); the sequence each was acknowledged at.
pub async fn publish_ids(
    js: &async_nats::jetstream::Context,
    subject: &str,
    from: usize,
    to: usize,
) -> Vec<u64> {
    let mut seqs = Vec::with_capacity(to.saturating_sub(from));
    for n in from..to {
        let id = format!("m{n}");
        let mut tries = 0;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = match js
                .publish_with_headers(subject.to_string(), headers, id.clone().into())
                .await
            {
                Ok(f) => f.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match ack {
                Ok(ack) => {
                    seqs.push(ack.sequence);
                    break;
                }
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "{id} never acknowledged: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    seqs
}

/// The message ids in the own copy of station `station` of the node whose HTTP
/// port is `port`, in sequence order (first page of 1000); `None` when it has
/// no replica of it.
pub async fn replica_ids(port: u16, station: &str) -> Option<Vec<String>> {
    let resp = http()
        .get(format!(
            "http://127.0.0.1:{port}/v1/stations/{station}/replica?limit=1000"
        ))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: Value = resp.json().await.ok()?;
    Some(
        v["messages"]
            .as_array()?
            .iter()
            .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
            .collect(),
    )
}

/// The current, online replicas of replicated station `station` and its
/// leader, as the node at HTTP `port` sees them.
#[allow(dead_code)] // each test binary uses part of this file
pub async fn station_placement(
    port: u16,
    station: &str,
) -> (std::collections::BTreeSet<String>, Option<String>) {
    let v = get_json(port, &format!("/v1/stations/{station}")).await;
    let names = v["cluster"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|r| r["current"] == true && r["online"] == true)
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect();
    (names, v["cluster"]["leader"].as_str().map(str::to_string))
}
