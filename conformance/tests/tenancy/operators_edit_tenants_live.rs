//! The operators (the `$SYS` tenant's users) list, make, change and delete
//! tenants over `/v1/tenants` while the broker runs: a tenant made live is
//! served at once over NATS, JetStream and HTTP, its limits and permissions
//! hold, a changed user's connections log in again, a deleted tenant's users are
//! refused, and what was made comes back after a restart. Nobody else may
//! administer tenants, and tenants of the configuration file stay as the file
//! says.

use crate::common::{get_as, http, nats_as, post_as, tenant};
use junction::engine::User;
use junction_conformance::{broker_with, start_in};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `PUT path` with a JSON body as `user`: status and JSON body.
async fn put_as(
    b: &junction_conformance::TestBroker,
    user: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http()
        .put(format!("{}{path}", b.http_url()))
        .basic_auth(user, Some(format!("{user}-pw")))
        .body(body.to_string())
        .send()
        .await
        .expect("PUT");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `DELETE path` as `user`: status and JSON body.
async fn delete_as(b: &junction_conformance::TestBroker, user: &str, path: &str) -> (u16, Value) {
    let r = http()
        .delete(format!("{}{path}", b.http_url()))
        .basic_auth(user, Some(format!("{user}-pw")))
        .send()
        .await
        .expect("DELETE");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Can `user` log in over NATS with `password`?
async fn nats_login(b: &junction_conformance::TestBroker, user: &str, password: &str) -> bool {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .max_reconnects(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .connect(b.nats_url())
        .await
        .is_ok()
}

/// A raw NATS connection logged in as `user`, past its first PONG.
async fn raw_login(b: &junction_conformance::TestBroker, user: &str, password: &str) -> TcpStream {
    let mut s = TcpStream::connect(b.nats_addr()).await.unwrap();
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"{password}\"}}\r\nPING\r\n"
    );
    s.write_all(connect.as_bytes()).await.unwrap();
    let read = read_all(&mut s, Some("PONG\r\n")).await;
    assert!(read.ends_with("PONG\r\n"), "login as {user}: {read}");
    s
}

/// What `s` sends until `until` (or until it closes, for `None`).
async fn read_all(s: &mut TcpStream, until: Option<&str>) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("nothing more after {text:?}"))
            .unwrap_or(0);
        if n == 0 {
            return text;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if until.is_some_and(|u| text.ends_with(u)) {
            return text;
        }
    }
}

fn names(list: &Value) -> Vec<String> {
    list["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `$SYS` holds `ops`, the config tenant `acme` holds `alice`, and the default
/// tenant's `admin` is not an operator.
fn operators(c: &mut junction::config::Config) {
    c.auth.users = vec![User::new("admin", "admin-pw")];
    c.tenants = vec![
        tenant("$SYS", &[("ops", "ops-pw")]),
        tenant("acme", &[("alice", "alice-pw")]),
    ];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_make_change_and_delete_tenants_while_the_broker_runs() {
    let b = broker_with(operators).await;

    // Only the operators administer tenants.
    for user in ["admin", "alice"] {
        let (status, body) = get_as(&b, user, &format!("{user}-pw"), "/v1/tenants").await;
        assert_eq!(status, 403, "{user}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        let (status, _) = put_as(&b, user, "/v1/tenants/x", json!({})).await;
        assert_eq!(status, 403, "{user}");
    }
    let (status, list) = get_as(&b, "ops", "ops-pw", "/v1/tenants").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), ["$G", "$SYS", "acme"]);
    assert_eq!(list["tenants"][0]["source"], "default");
    assert_eq!(list["tenants"][1]["system"], true);
    assert_eq!(list["tenants"][2]["source"], "config");
    assert_eq!(list["tenants"][2]["users"][0]["user"], "alice");
    assert!(
        !list.to_string().contains("alice-pw"),
        "a password is never shown: {list}"
    );

    // A new tenant, with a limit and a permission.
    let spec = json!({
        "users": [{"user": "peter", "password": "peter-pw",
                   "permissions": {"publish": {"deny": ["secret.>"]}}}],
        "jetstream": {"max_streams": 1}
    });
    let (status, made) = put_as(&b, "ops", "/v1/tenants/initech", spec.clone()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["source"], "api");
    assert_eq!(
        made["users"][0]["login"], "bcrypt",
        "stored as a hash: {made}"
    );
    assert_eq!(made["jetstream"]["max_streams"], 1);

    // Served at once: NATS, JetStream (the API answers in the new tenant) and
    // its limit, HTTP with its permissions.
    let peter = nats_as(&b, "peter", "peter-pw").await;
    let js = async_nats::jetstream::new(peter.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "orders".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    })
    .await
    .expect("a stream in the new tenant");
    js.publish("orders.1", "one".into())
        .await
        .expect("publish")
        .await
        .expect("PubAck");
    let refused = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "more".into(),
            subjects: vec!["more.>".into()],
            ..Default::default()
        })
        .await
        .expect_err("max_streams = 1");
    assert!(refused.to_string().contains("10027"), "{refused}");
    let (status, body) = post_as(&b, "peter", "peter-pw", "/v1/subjects/secret.x", "x").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = post_as(&b, "peter", "peter-pw", "/v1/subjects/orders.2", "two").await;
    assert!(status < 300, "{status}");
    // Isolated from the others.
    let (_, stations) = get_as(&b, "alice", "alice-pw", "/v1/stations").await;
    assert!(!stations.to_string().contains("orders"), "{stations}");
    let (_, one) = get_as(&b, "ops", "ops-pw", "/v1/tenants/initech").await;
    assert_eq!(one["usage"]["stations"], 1, "{one}");

    // Refused edits change nothing.
    let (status, body) = put_as(&b, "ops", "/v1/tenants/acme", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("tenant_read_only")),
        "{body}"
    );
    let (status, _) = put_as(&b, "ops", "/v1/tenants/$G", json!({})).await;
    assert!(status == 409 || status == 422, "{status}");
    let (status, body) = put_as(
        &b,
        "ops",
        "/v1/tenants/hooli",
        json!({"users": [{"user": "alice", "password": "x"}]}),
    )
    .await;
    assert_eq!(status, 422, "another tenant's user name: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Duplicate user"),
        "{body}"
    );
    let (status, _) = put_as(&b, "ops", "/v1/tenants/bad%20name", json!({})).await;
    assert_eq!(status, 422);
    let (status, body) = put_as(
        &b,
        "ops",
        "/v1/tenants/hooli",
        json!({"users": [{"user": "x"}]}),
    )
    .await;
    assert_eq!(status, 422, "a new user needs a password: {body}");
    let (status, body) = put_as(&b, "ops", "/v1/tenants/hooli", json!({"userz": []})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        nats_login(&b, "alice", "alice-pw").await,
        "alice is untouched"
    );

    // A changed user's connections are closed; it logs in again with the
    // password it kept, under the new permissions.
    let mut raw = raw_login(&b, "peter", "peter-pw").await;
    let changed = json!({
        "users": [{"user": "peter", "permissions": {"publish": {"deny": ["orders.>"]}}}],
        "jetstream": {"max_streams": 1}
    });
    let (status, body) = put_as(&b, "ops", "/v1/tenants/initech", changed).await;
    assert_eq!(status, 200, "{body}");
    let closed = read_all(&mut raw, None).await;
    assert!(
        closed.contains("-ERR 'Authorization Violation'"),
        "{closed:?}"
    );
    let (status, _) = post_as(&b, "peter", "peter-pw", "/v1/subjects/orders.3", "x").await;
    assert_eq!(status, 403, "the new permissions hold");
    let (status, _) = post_as(&b, "peter", "peter-pw", "/v1/subjects/secret.x", "x").await;
    assert!(status < 300, "{status}");

    // Deleted: its users are refused; its connections are closed.
    let mut raw = raw_login(&b, "peter", "peter-pw").await;
    let (status, _) = delete_as(&b, "ops", "/v1/tenants/initech").await;
    assert_eq!(status, 204);
    let closed = read_all(&mut raw, None).await;
    assert!(
        closed.contains("-ERR 'Authorization Violation'"),
        "{closed:?}"
    );
    assert!(!nats_login(&b, "peter", "peter-pw").await);
    let (status, _) = post_as(&b, "peter", "peter-pw", "/v1/subjects/orders.4", "x").await;
    assert_eq!(status, 401);
    let (_, list) = get_as(&b, "ops", "ops-pw", "/v1/tenants").await;
    assert_eq!(names(&list), ["$G", "$SYS", "acme"]);
    let (status, _) = delete_as(&b, "ops", "/v1/tenants/initech").await;
    assert_eq!(status, 404);
    let (status, _) = delete_as(&b, "ops", "/v1/tenants/acme").await;
    assert_eq!(status, 409);

    // Made again, its stations are its again; and it survives a restart.
    let (status, _) = put_as(&b, "ops", "/v1/tenants/initech", spec).await;
    assert_eq!(status, 201);
    drop(peter);
    let (config, dir) = b.stop().await;
    let b = start_in(config, dir).await;
    let (_, list) = get_as(&b, "ops", "ops-pw", "/v1/tenants").await;
    assert_eq!(names(&list), ["$G", "$SYS", "acme", "initech"]);
    let peter = nats_as(&b, "peter", "peter-pw").await;
    let js = async_nats::jetstream::new(peter);
    let mut stream = js.get_stream("orders").await.expect("its station, kept");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_tenant_sees_every_tenant_and_the_default_one_only_its_own() {
    let b = broker_with(operators).await;
    let _alice = nats_as(&b, "alice", "alice-pw").await;
    let _admin = nats_as(&b, "admin", "admin-pw").await;
    let connz = |user: &'static str| {
        let b = &b;
        async move {
            let (status, body) = get_as(b, user, &format!("{user}-pw"), "/connz").await;
            assert_eq!(status, 200, "{body}");
            let (status, body) = get_as(b, user, &format!("{user}-pw"), "/v1/connections").await;
            assert_eq!(status, 200, "{body}");
            body["connections"]
                .as_array()
                .expect("connections")
                .iter()
                .filter(|c| c["protocol"] == "nats" && c["internal"] == false)
                .map(|c| c["user"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    let mut all = connz("ops").await;
    all.sort();
    assert_eq!(all, ["admin", "alice"]);
    assert_eq!(
        connz("admin").await,
        ["admin"],
        "$G is a tenant like the others now"
    );
    assert_eq!(connz("alice").await, ["alice"]);
    let (status, _) = get_as(&b, "admin", "admin-pw", "/varz").await;
    assert_eq!(status, 403);
    let (status, _) = get_as(&b, "ops", "ops-pw", "/varz").await;
    assert_eq!(status, 200);
    let (_, conns) = get_as(&b, "ops", "ops-pw", "/v1/connections").await;
    let alice_id = conns["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .find(|c| c["user"] == "alice")
        .unwrap_or_else(|| panic!("alice listed: {conns}"))["id"]
        .as_u64()
        .expect("id");
    // An operator may disconnect any tenant's client; another tenant's user not.
    let (status, _) = delete_as(&b, "admin", &format!("/v1/connections/{alice_id}")).await;
    assert_eq!(status, 404);
    let (status, _) = delete_as(&b, "ops", &format!("/v1/connections/{alice_id}")).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_credentials_makes_no_tenants() {
    let b = broker_with(|_| {}).await;
    let r = http()
        .put(format!("{}/v1/tenants/acme", b.http_url()))
        .body(json!({"users": [{"user": "a", "password": "b"}]}).to_string())
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 409);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "tenant_read_only", "{body}");
    // Still open to everyone.
    assert!(async_nats::connect(b.nats_url()).await.is_ok());
}
