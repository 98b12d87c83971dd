//! Tenants made live in a cluster of three real `junction` processes: an
//! operator's edit on any node goes through the cluster's meta group, so every
//! node lets the new tenant's users in, applies a changed password, keeps the
//! tenant across its own restart, and refuses the users once the tenant is
//! deleted, wherever the delete was asked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use cluster::{Cluster, until};
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &str = r#"
[auth]
token = "cluster-token"

[[tenants]]
name = "$SYS"
users = [{ user = "ops", password = "ops-pw" }]
"#;

/// A request as `user` (password `<user>-pw`) to node `port`: status and JSON.
async fn call(
    method: reqwest::Method,
    port: u16,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut r = client
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .basic_auth(user, Some(format!("{user}-pw")));
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn logs_in(c: &Cluster, node: usize, user: &str, password: &str) -> bool {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .max_reconnects(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .connect(c.nats_url(node))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_made_on_one_node_is_served_by_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ops.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let path = file.display().to_string();
    let _ = cluster::TOKEN.set("cluster-token".into());
    let mut c = Cluster::start(3, &[("--config", &path)]).await;
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.http).collect();
    let http = |i: usize| ports[i];

    let spec = json!({"users": [{"user": "peter", "password": "peter-pw"}],
                      "jetstream": {"max_streams": 2}});
    let (status, made) = call(
        reqwest::Method::PUT,
        http(0),
        "/v1/tenants/initech",
        "ops",
        Some(spec),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    for node in 0..3 {
        until(&format!("peter logs in on node {node}"), || {
            logs_in(&c, node, "peter", "peter-pw")
        })
        .await;
    }
    let (status, list) = call(reqwest::Method::GET, http(1), "/v1/tenants", "ops", None).await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "initech" && t["source"] == "api"),
        "{list}"
    );
    // The new tenant's user is no operator, on any node.
    let (status, _) = call(reqwest::Method::GET, http(2), "/v1/tenants", "peter", None).await;
    assert_eq!(status, 403);

    // A changed password, asked on another node, holds everywhere.
    let changed = json!({"users": [{"user": "peter", "password": "new-pw"}]});
    let (status, body) = call(
        reqwest::Method::PUT,
        http(1),
        "/v1/tenants/initech",
        "ops",
        Some(changed),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for node in 0..3 {
        until(&format!("the new password on node {node}"), || {
            logs_in(&c, node, "peter", "new-pw")
        })
        .await;
        assert!(
            !logs_in(&c, node, "peter", "peter-pw").await,
            "the old password on node {node}"
        );
    }

    // A node that restarts still knows the tenant.
    c.kill(2).await;
    c.restart(2).await;
    until("peter logs in on the restarted node", || {
        logs_in(&c, 2, "peter", "new-pw")
    })
    .await;

    // Refused edits: the default tenant, and a user another tenant made over
    // the API already has.
    let (status, _) = call(
        reqwest::Method::PUT,
        http(0),
        "/v1/tenants/$G",
        "ops",
        Some(json!({})),
    )
    .await;
    assert!(status == 409 || status == 422, "{status}");
    let dup = json!({"users": [{"user": "peter", "password": "x"}]});
    let (status, body) = call(
        reqwest::Method::PUT,
        http(2),
        "/v1/tenants/hooli",
        "ops",
        Some(dup),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    // Deleted on node 2: refused everywhere.
    let (status, body) = call(
        reqwest::Method::DELETE,
        http(2),
        "/v1/tenants/initech",
        "ops",
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    for node in 0..3 {
        until(&format!("peter refused on node {node}"), || async {
            !logs_in(&c, node, "peter", "new-pw").await
        })
        .await;
    }
    let (status, _) = call(
        reqwest::Method::DELETE,
        http(0),
        "/v1/tenants/initech",
        "ops",
        None,
    )
    .await;
    assert_eq!(status, 404);
}
