//! Real `junction` processes form the cluster's meta Raft group (openraft) and share
//! definitions through it:
//! - three nodes started with `--cluster-listen` and `--join` form one group: one
//!   leader, three voters with distinct ids, every node agreeing;
//! - a schema created on node 2 and a routing rule put on node 3 are seen on every
//!   node over HTTP, and a second create of the same schema on another node is
//!   refused (409) as on one node;
//! - after `kill -9` of the meta leader, an admin call on a survivor succeeds (it
//!   waits for the new leader; the time it took is printed, not asserted);
//! - a node wiped and started again gets a new id, never its old one, and gets
//!   every definition back;
//! - a fourth node started later with `--join` sees every definition and becomes
//!   a voter; `junction cluster peer-remove` takes it out and `/v1/cluster` on the
//!   others no longer lists it;
//! - a node that was down while the log moved on past snapshots (every 10 entries
//!   here) catches up from a snapshot: a schema deleted meanwhile is gone from it,
//!   the ones created meanwhile are there;
//! - bad input: removing a node that does not exist answers 400 with a JSON body;
//! - a node cut off from the meta quorum (the two others killed) closes its NATS
//!   client's connection, refuses new ones with `-ERR 'cluster meta quorum lost'`,
//!   answers schema changes with 503 `no_quorum`, and takes clients again once a
//!   node is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Child;

use crate::support::process;

struct Node {
    name: String,
    http: u16,
    nats: u16,
    cluster: u16,
    child: Child,
}

fn spawn(dir: &Path, name: &str, nats: u16, http: u16, cluster: u16, join: &str) -> Child {
    let data = dir.join(name).display().to_string();
    let nats = format!("127.0.0.1:{nats}");
    let http = format!("127.0.0.1:{http}");
    let listen = format!("127.0.0.1:{cluster}");
    let args = vec![
        "serve",
        "-n",
        name,
        "--nats-listen",
        &nats,
        "--mqtt-listen",
        "127.0.0.1:0",
        "--http-listen",
        &http,
        "--data-dir",
        &data,
        "--cluster-listen",
        &listen,
        "--join",
        join,
    ];
    // Snapshots every 10 meta log entries (the default is 1000), so that these
    // tests go through snapshots and purged logs too.
    process::junction(
        dir,
        &args,
        &[
            ("RUST_LOG", "warn"),
            ("JUNCTION_CLUSTER_META_SNAPSHOT_EVERY", "10"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("junction starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

async fn get(port: u16, path: &str) -> reqwest::Response {
    http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap()
}

async fn get_json(port: u16, path: &str) -> Value {
    get(port, path).await.json().await.unwrap()
}

async fn delete(port: u16, path: &str) -> reqwest::Response {
    http()
        .delete(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .unwrap()
}

async fn cluster_view(port: u16) -> Value {
    get_json(port, "/v1/cluster").await
}

/// Polls `check` until it holds (a hang guard of 30 s, not a timing claim).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Node names with an id, and the voters, as `port` reports them.
async fn members(port: u16) -> (Vec<(String, u64)>, Vec<String>, Option<String>) {
    let v = cluster_view(port).await;
    let mut ids = Vec::new();
    let mut voters = Vec::new();
    for n in v["nodes"].as_array().unwrap() {
        let name = n["name"].as_str().unwrap().to_string();
        if let Some(id) = n["id"].as_u64() {
            ids.push((name.clone(), id));
        }
        if n["voter"] == true {
            voters.push(name);
        }
    }
    ids.sort();
    voters.sort();
    (ids, voters, v["meta_leader"].as_str().map(str::to_string))
}

struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    join: String,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16, u16)> = (0..n)
            .map(|_| {
                (
                    process::free_port(),
                    process::free_port(),
                    process::free_port(),
                )
            })
            .collect();
        let join = ports
            .iter()
            .map(|(_, _, c)| format!("127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, (nats, http, cluster)) in ports.into_iter().enumerate() {
            let name = format!("n{}", i + 1);
            let child = spawn(dir.path(), &name, nats, http, cluster, &join);
            nodes.push(Node {
                name,
                http,
                nats,
                cluster,
                child,
            });
        }
        for n in &nodes {
            process::wait_listening(n.http).await;
        }
        let c = Cluster { dir, nodes, join };
        c.until_formed(n).await;
        c
    }

    /// Waits until every running node reports the same leader and `voters` voters.
    async fn until_formed(&self, voters: usize) {
        until("the meta group forms", || async {
            let mut leaders = Vec::new();
            for n in &self.nodes {
                let (ids, v, leader) = members(n.http).await;
                if v.len() != voters || ids.len() < voters || leader.is_none() {
                    return false;
                }
                leaders.push(leader);
            }
            leaders.windows(2).all(|w| w[0] == w[1])
        })
        .await;
    }

    fn index_of(&self, name: &str) -> usize {
        self.nodes.iter().position(|n| n.name == name).unwrap()
    }

    async fn kill(&mut self, i: usize) {
        self.nodes[i].child.kill().await.unwrap();
    }

    async fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.child = spawn(
            self.dir.path(),
            &n.name,
            n.nats,
            n.http,
            n.cluster,
            &self.join,
        );
        process::wait_listening(n.http).await;
    }
}

async fn create_schema(port: u16, name: &str) -> reqwest::Response {
    http()
        .post(format!("http://127.0.0.1:{port}/v1/schemas"))
        .json(&json!({"name": name, "definition": {"type": "object"}}))
        .send()
        .await
        .unwrap()
}

async fn schema_names(port: u16) -> Vec<String> {
    let v = get_json(port, "/v1/schemas").await;
    let mut names: Vec<String> = v["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_one_group_and_share_schemas_and_rules() {
    let c = Cluster::start(3).await;
    let (ids, voters, leader) = members(c.nodes[0].http).await;
    assert_eq!(voters, ["n1", "n2", "n3"]);
    let mut id_values: Vec<u64> = ids.iter().map(|(_, id)| *id).collect();
    id_values.sort();
    id_values.dedup();
    assert_eq!(id_values.len(), 3, "distinct ids: {ids:?}");
    let leader = leader.unwrap();
    // The leader knows how far behind each other member is; the others do not.
    let on_leader = cluster_view(c.nodes[c.index_of(&leader)].http).await;
    for n in on_leader["nodes"].as_array().unwrap() {
        if n["name"] == leader.as_str() {
            assert!(n["lag"].is_null(), "{n}");
        } else {
            assert!(n["lag"].is_u64(), "{n}");
        }
    }
    let follower = c.nodes.iter().find(|n| n.name != leader).unwrap();
    let on_follower = cluster_view(follower.http).await;
    assert!(
        on_follower["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["lag"].is_null()),
        "{on_follower}"
    );

    // A schema made on node 2 is on every node.
    let resp = create_schema(c.nodes[1].http, "orders").await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    // On the node that made it at once; on the others as the commit reaches them.
    assert_eq!(schema_names(c.nodes[1].http).await, ["orders"]);
    for n in &c.nodes {
        let port = n.http;
        until("every node has the schema", || async move {
            schema_names(port).await == ["orders"]
        })
        .await;
    }
    // The same name again, on another node: refused as on one node.
    let again = create_schema(c.nodes[2].http, "orders").await;
    assert_eq!(again.status(), 409);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["error"]["code"], "schema_exists");

    // A new version added on node 3 is active on node 1.
    let v2 = http()
        .post(format!(
            "http://127.0.0.1:{}/v1/schemas/orders/versions",
            c.nodes[2].http
        ))
        .json(&json!({"definition": {"type": "object", "required": ["id"]}}))
        .send()
        .await
        .unwrap();
    assert!(v2.status().is_success(), "{:?}", v2.text().await);
    let port1 = c.nodes[0].http;
    until("version 2 is active on node 1", || async move {
        get_json(port1, "/v1/schemas/orders").await["active_version"] == 2
    })
    .await;

    // A routing rule put on node 3 is listed on node 1; deleted on node 1, it is
    // gone from node 2.
    let rule = json!({"name": "drop-debug", "priority": 10, "subjects": ["logs.debug.>"],
        "match": [{"header": "X-Debug", "exists": true}], "action": {"drop": true}});
    let put = http()
        .post(format!(
            "http://127.0.0.1:{}/v1/routing/rules",
            c.nodes[2].http
        ))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text().await);
    until("node 1 lists the rule", || async move {
        get_json(port1, "/v1/routing/rules").await["rules"][0]["name"] == "drop-debug"
    })
    .await;
    let del = delete(c.nodes[0].http, "/v1/routing/rules/drop-debug").await;
    assert_eq!(del.status(), 204);
    let port2 = c.nodes[1].http;
    until("the rule is gone from node 2", || async move {
        get(port2, "/v1/routing/rules/drop-debug").await.status() == 404
    })
    .await;

    // Removing a node that is not there: a clear 400.
    let bad = delete(c.nodes[0].http, "/v1/cluster/nodes/nope").await;
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_work_again_after_the_meta_leader_is_killed() {
    let mut c = Cluster::start(3).await;
    let (_, _, leader) = members(c.nodes[0].http).await;
    let leader = c.index_of(&leader.unwrap());
    let survivor = (leader + 1) % 3;
    c.kill(leader).await;
    let killed = Instant::now();
    // One call, made right after the kill: it waits for the new leader.
    let resp = create_schema(c.nodes[survivor].http, "after-kill").await;
    let took = killed.elapsed();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    println!("admin call after kill -9 of the meta leader answered in {took:?}");
    // The caller's node answers once it has applied the change; the other
    // survivor applies it as the leader's commit reaches it.
    let other = c.nodes[3 - leader - survivor].http;
    until("the other survivor has the schema", || async move {
        schema_names(other).await == ["after-kill"]
    })
    .await;
    let (_, _, new_leader) = members(c.nodes[survivor].http).await;
    assert_ne!(new_leader.as_deref(), Some(c.nodes[leader].name.as_str()));

    // The killed node comes back under its id and catches up.
    let (ids_before, _, _) = members(c.nodes[survivor].http).await;
    c.restart(leader).await;
    let port = c.nodes[leader].http;
    until("the restarted node catches up", || async move {
        schema_names(port).await == ["after-kill"]
    })
    .await;
    c.until_formed(3).await;
    let (ids_after, _, _) = members(c.nodes[survivor].http).await;
    assert_eq!(ids_before, ids_after, "a restart keeps the node's id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_rejoins_under_a_new_id_and_a_removed_node_leaves_no_trace() {
    let mut c = Cluster::start(3).await;
    assert_eq!(create_schema(c.nodes[0].http, "kept").await.status(), 201);
    let (ids, _, leader) = members(c.nodes[0].http).await;
    // Wipe a follower: kill it, delete its data, start it again.
    let victim = (c.index_of(&leader.unwrap()) + 1) % 3;
    let name = c.nodes[victim].name.clone();
    let old_id = ids.iter().find(|(n, _)| *n == name).unwrap().1;
    c.kill(victim).await;
    std::fs::remove_dir_all(c.dir.path().join(&name)).unwrap();
    c.restart(victim).await;
    let port = c.nodes[victim].http;
    let first = c.nodes[(victim + 1) % 3].http;
    let name2 = name.clone();
    until("the wiped node rejoins", || {
        let name = name2.clone();
        async move {
            let (ids, voters, _) = members(first).await;
            voters.len() == 3
                && ids
                    .iter()
                    .any(|(n, id)| *n == name && *id != old_id && *id > 3)
        }
    })
    .await;
    let (ids, _, _) = members(first).await;
    assert!(
        !ids.iter().any(|(_, id)| *id == old_id),
        "the old id {old_id} is retired: {ids:?}"
    );
    until("the wiped node has the definitions again", || async move {
        schema_names(port).await == ["kept"]
    })
    .await;

    // A fourth node started later sees every definition and becomes a voter.
    let (nats, http4, cluster) = (
        process::free_port(),
        process::free_port(),
        process::free_port(),
    );
    let child = spawn(c.dir.path(), "n4", nats, http4, cluster, &c.join);
    c.nodes.push(Node {
        name: "n4".into(),
        http: http4,
        nats,
        cluster,
        child,
    });
    process::wait_listening(http4).await;
    c.until_formed(4).await;
    until("the new node has every definition", || async move {
        schema_names(http4).await == ["kept"]
    })
    .await;

    // peer-remove through the command line, on node 1.
    let out = process::run_to_exit(
        c.dir.path(),
        &[
            "cluster",
            "peer-remove",
            "n4",
            "--url",
            &format!("http://127.0.0.1:{}", c.nodes[0].http),
            "--timeout",
            "15s",
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.kill(3).await;
    c.nodes.pop();
    for n in &c.nodes {
        let port = n.http;
        until("n4 is gone from every node's view", || async move {
            let v = cluster_view(port).await;
            !v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == "n4")
        })
        .await;
    }
    // Three voters again, and admin calls still work.
    c.until_formed(3).await;
    assert_eq!(create_schema(c.nodes[1].http, "after").await.status(), 201);
}

/// Reads what a NATS server sends on a fresh connection until it closes it (or
/// 10 s pass): `INFO …` and, when refused, `-ERR …`.
async fn nats_greeting(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let _ = s
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            if out.windows(6).any(|w| w == b"PONG\r\n") {
                return;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_meta_quorum_closes_its_clients_and_refuses_new_ones() {
    let mut c = Cluster::start(3).await;
    // A client of node 1 (async-nats, told of node 1 only, so that it keeps
    // trying there), with its connection events counted.
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::new()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e.to_string());
            }
        })
        .connect(format!("nats://127.0.0.1:{}", c.nodes[0].nats))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert!(nats_greeting(c.nodes[0].nats).await.contains("PONG"));

    // Nodes 2 and 3 die: node 1 has no quorum any more.
    c.kill(1).await;
    c.kill(2).await;
    let disconnected = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = events.recv().await {
            if e.contains("disconnected") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        disconnected,
        Ok(true),
        "node 1 closed its client's connection"
    );
    // New connections are refused with a clear error while the quorum is gone.
    let port = c.nodes[0].nats;
    until("node 1 refuses new NATS connections", || async move {
        nats_greeting(port)
            .await
            .contains("-ERR 'cluster meta quorum lost'")
    })
    .await;
    // A schema change fails with 503 no_quorum, and nothing is changed.
    let resp = create_schema(c.nodes[0].http, "lost").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_quorum");
    assert!(schema_names(c.nodes[0].http).await.is_empty());

    // Node 2 comes back: the quorum is back, and so are clients.
    c.restart(1).await;
    until("node 1 accepts NATS connections again", || async move {
        nats_greeting(port).await.contains("PONG")
    })
    .await;
    until("the client is connected again", || {
        let state = client.connection_state();
        async move { state == async_nats::connection::State::Connected }
    })
    .await;
    assert_eq!(create_schema(c.nodes[0].http, "back").await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_snapshots_catches_up_and_drops_what_was_deleted() {
    let mut c = Cluster::start(3).await;
    assert_eq!(create_schema(c.nodes[0].http, "doomed").await.status(), 201);
    let port3 = c.nodes[2].http;
    until("node 3 has the schema", || async move {
        schema_names(port3).await == ["doomed"]
    })
    .await;
    c.kill(2).await;
    // While node 3 is down: a delete and 25 creates, past several snapshots (the
    // log before them is purged, so node 3 can only be sent a snapshot).
    assert_eq!(
        delete(c.nodes[0].http, "/v1/schemas/doomed").await.status(),
        204
    );
    let mut want = Vec::new();
    for i in 0..25 {
        let name = format!("s{i:02}");
        let on = c.nodes[i % 2].http;
        assert_eq!(create_schema(on, &name).await.status(), 201, "{name}");
        want.push(name);
    }
    c.restart(2).await;
    let want2 = want.clone();
    until("node 3 caught up from a snapshot", || {
        let want = want2.clone();
        async move { schema_names(port3).await == want }
    })
    .await;
    // A restart of a node that is up to date changes nothing.
    c.kill(0).await;
    c.restart(0).await;
    let port1 = c.nodes[0].http;
    until("node 1 is back with every schema", || {
        let want = want.clone();
        async move { schema_names(port1).await == want }
    })
    .await;
}
