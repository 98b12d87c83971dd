//! `junction cluster join` (real `junction` processes):
//! - a running node started with `--cluster-listen` and no routes (a cluster of
//!   one, nothing defined) is told to join a running 3-node cluster: it
//!   restarts in place (the same process), joins as a new node, gets the
//!   stations defined before, and what it defines is seen on the others;
//! - a node whose cluster of one has a station is refused (409
//!   `cluster_state_exists`, the CLI exits 1) and keeps running with it; a join
//!   with no route is a 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use cluster::{Cluster, get_json, http, post_json as post, until};
use serde_json::{Value, json};

fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_junction"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn node<'a>(cluster: &'a Value, name: &str) -> Option<&'a Value> {
    cluster["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_node_of_its_own_joins_a_cluster_and_gets_every_definition() {
    let mut c = Cluster::start(3, &[]).await;
    let (status, _) = post(
        c.nodes[0].http,
        "/v1/stations",
        json!({"name": "before", "subjects": ["before.>"]}),
    )
    .await;
    assert_eq!(status, 201);

    let lone = c.add_lone_node().await;
    let port = c.nodes[lone].http;
    until("the lone node leads its own cluster of one", || async {
        get_json(port, "/v1/cluster").await["meta_leader"] == "n4"
    })
    .await;
    let pid = c.nodes[lone].child.id();

    let out = cli(&[
        "cluster",
        "join",
        &format!("127.0.0.1:{}", c.nodes[0].cluster),
        "--url",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("restarts and joins"));

    // It restarts in place and joins: the cluster lists it, online, with an
    // id, and it follows the cluster's meta leader.
    until("n4 is a member of the cluster", || async {
        let v = get_json(c.nodes[0].http, "/v1/cluster").await;
        node(&v, "n4").is_some_and(|n| n["id"].is_u64() && n["online"] == true)
    })
    .await;
    until("n4 follows the cluster's meta leader", || async {
        let theirs = get_json(c.nodes[1].http, "/v1/cluster").await["meta_leader"].clone();
        let ours = http()
            .get(format!("http://127.0.0.1:{port}/v1/cluster"))
            .send()
            .await;
        match ours {
            Ok(r) => r.json::<Value>().await.is_ok_and(|v| {
                v["meta_leader"] == theirs && theirs.is_string() && v["meta_leader"] != "n4"
            }),
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(
        c.nodes[lone].child.id(),
        pid,
        "the same process, restarted in place"
    );
    assert!(c.nodes[lone].child.try_wait().unwrap().is_none());

    // Definitions flow both ways.
    until("n4 has the station defined before it joined", || async {
        get_json(port, "/v1/stations/before").await["name"] == "before"
    })
    .await;
    let (status, body) = post(
        port,
        "/v1/stations",
        json!({"name": "after", "subjects": ["after.>"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    until("n2 has the station made on n4", || async {
        get_json(c.nodes[1].http, "/v1/stations/after").await["node"] == "n4"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_definitions_of_its_own_is_refused_and_keeps_them() {
    let c = Cluster::start(1, &[]).await;
    let port = c.nodes[0].http;
    let (status, _) = post(
        port,
        "/v1/stations",
        json!({"name": "mine", "subjects": ["mine.>"]}),
    )
    .await;
    assert_eq!(status, 201);

    let (status, body) = post(port, "/v1/cluster/join", json!({"routes": ["127.0.0.1:1"]})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "cluster_state_exists", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("definition"),
        "{body}"
    );
    let out = cli(&[
        "cluster",
        "join",
        "127.0.0.1:1",
        "--url",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("409"));

    let (status, body) = post(port, "/v1/cluster/join", json!({"routes": []})).await;
    assert_eq!(status, 400, "{body}");

    // Still running, with its station.
    assert_eq!(get_json(port, "/v1/stations/mine").await["name"], "mine");
    assert_eq!(get_json(port, "/v1/cluster").await["meta_leader"], "n1");
}
