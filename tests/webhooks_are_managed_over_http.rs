//! The notification centre over HTTP (docs/http.md), against the real binary:
//!
//! - the operators list webhooks with their health, make and replace them
//!   (`PUT`, checked: 422 with a JSON error for a bad one), delete them, and
//!   send one a `test` event that reaches the receiver signed with its secret;
//! - a webhook made over the API comes back after a restart with its secret
//!   (shown redacted, kept when given back redacted);
//! - webhooks of the configuration file are read-only (409);
//! - a tenant's user may do none of it (403) but reads the alarms, where a
//!   failing webhook's `webhook_failing:<name>` shows, with its health.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::notify;
use crate::support::process;
use notify::{Broker, Receiver, http};
use process::GUARD;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[tenants]]
name = "$SYS"
users = [{ user = "ops", password = "ops-pw" }]

[[tenants]]
name = "acme"
users = [{ user = "alice", password = "alice-pw" }]

[[notifications.webhooks]]
name = "from-file"
url = "http://127.0.0.1:9/never"
kinds = ["storage_full"]
secret = "file-secret"
"#;

impl Broker {
    /// `method path` as `user` (password `<user>-pw`), with `body` as is
    /// (JSON text, or anything): status and JSON body (`Null` when none).
    async fn call(&self, user: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = http()
            .request(method, format!("http://{}{path}", self.http))
            .basic_auth(user, Some(format!("{user}-pw")));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn put(&self, user: &str, path: &str, body: Value) -> (u16, Value) {
        self.call(user, "PUT", path, Some(&body.to_string())).await
    }

    async fn webhooks(&self) -> Vec<Value> {
        let (status, body) = self
            .call("ops", "GET", "/v1/notifications/webhooks", None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["webhooks"].as_array().unwrap().clone()
    }

    async fn webhook(&self, name: &str) -> Value {
        self.webhooks()
            .await
            .into_iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("no webhook '{name}'"))
    }

    /// Waits until webhook `name`'s health passes `pred`.
    async fn health_until(&self, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + GUARD;
        loop {
            let health = self.webhook(name).await["health"].clone();
            if pred(&health) {
                return health;
            }
            assert!(
                Instant::now() < deadline,
                "webhook '{name}': {what}; health {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A publish as `ops` that fails station `readings`' schema: a
    /// `schema_violation` event in the `$SYS` tenant.
    async fn violate_schema(&self) {
        let (status, body) = self
            .call(
                "ops",
                "POST",
                "/v1/subjects/readings.kitchen",
                Some(r#"{"f":70}"#),
            )
            .await;
        assert_eq!(status, 422, "{body}");
    }
}

/// A loopback port nothing listens on (bound, then let go).
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

const HOOKS: &str = "/v1/notifications/webhooks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_manage_and_test_webhooks_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junction.toml"), CONFIG).unwrap();
    let receiver = Receiver::start(0).await;
    let broker = Broker::start(dir.path()).await;

    // The file's webhook, read-only, its secret hidden.
    let listed = broker.webhooks().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "from-file");
    assert_eq!(listed[0]["source"], "config");
    assert_eq!(listed[0]["config"]["secret"], "********");
    assert_eq!(listed[0]["config"]["kinds"], json!(["storage_full"]));
    // `server_started` is pending in its group until the webhook passes over
    // it (it wants `storage_full` only).
    let health = broker
        .health_until("from-file", "nothing pending", |h| h["pending"] == 0)
        .await;
    for key in ["delivered", "failed_attempts", "dead_lettered"] {
        assert_eq!(health[key], 0, "{key}: {health}");
    }
    let hook = format!("{HOOKS}/from-file");
    let (status, body) = broker
        .put("ops", &hook, json!({"url": receiver.url()}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "webhook_read_only");
    let (status, body) = broker.call("ops", "DELETE", &hook, None).await;
    assert_eq!(status, 409, "{body}");

    // A tenant's user administers none of it.
    let ops_hook = format!("{HOOKS}/ops-hook");
    for (method, path, body) in [
        ("GET", HOOKS.to_string(), None),
        ("GET", ops_hook.clone(), None),
        (
            "PUT",
            ops_hook.clone(),
            Some(r#"{"url":"http://127.0.0.1:9/"}"#),
        ),
        ("DELETE", hook.clone(), None),
        ("POST", format!("{hook}/test"), None),
    ] {
        let (status, answer) = broker.call("alice", method, &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }

    // Bad webhooks are refused with what is wrong.
    let receiver_url = receiver.url();
    for (body, why) in [
        (json!({"url": "ftp://127.0.0.1/"}), "http:// or https://"),
        (json!({"url": "not a url"}), "is not a URL"),
        (json!({"url": receiver_url, "surprise": 1}), "surprise"),
        (
            json!({"url": receiver_url, "kinds": ["nope"]}),
            "unknown event kind 'nope'",
        ),
        (
            json!({"url": receiver_url, "min_severity": "loud"}),
            "min_severity 'loud'",
        ),
        (
            json!({"url": receiver_url, "max_attempts": 0}),
            "at least 1",
        ),
        (
            json!({"name": "other", "url": receiver_url}),
            "the path 'ops-hook'",
        ),
        (json!(["not", "an", "object"]), "JSON object"),
        (json!({"kinds": []}), "url"),
    ] {
        let (status, answer) = broker.put("ops", &ops_hook, body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_config", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: '{message}' says '{why}'");
    }
    let (status, answer) = broker
        .put(
            "ops",
            &format!("{HOOKS}/bad%20name"),
            json!({"url": receiver_url}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = broker
        .call("ops", "PUT", &ops_hook, Some("{not json"))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["code"].is_string(), "{answer}");
    assert!(broker.webhooks().await.len() == 1, "nothing bad was kept");

    // Made, then replaced.
    let config = json!({
        "url": receiver_url,
        "kinds": ["schema_violation"],
        "secret": "s3cret",
        "headers": {"X-Team": "ops"},
    });
    let (status, made) = broker.put("ops", &ops_hook, config.clone()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["source"], "api");
    assert_eq!(made["config"]["secret"], "********");
    assert_eq!(made["config"]["url"], receiver_url.as_str());
    let (status, replaced) = broker.put("ops", &ops_hook, config).await;
    assert_eq!(status, 200, "{replaced}");

    // A test reaches the receiver, signed, with the id the answer names.
    let (status, test) = broker
        .call("ops", "POST", &format!("{ops_hook}/test"), None)
        .await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["ok"], true, "{test}");
    assert_eq!(test["status"], 200, "{test}");
    let id = test["event_id"].as_str().unwrap().to_string();
    let hit = receiver
        .until_hit("the test event", |h| h.body["kind"] == "test")
        .await;
    assert_eq!(hit.header("Junction-Event-Id"), Some(id.as_str()));
    assert_eq!(hit.header("X-Team"), Some("ops"));
    assert!(hit.signed_with("s3cret"), "{:?}", hit.headers);
    assert_eq!(hit.body["tenant"], "$SYS");
    assert!(
        hit.body["message"].as_str().unwrap().contains("ops-hook"),
        "{}",
        hit.body
    );

    // Real events are delivered, and the health counts them.
    let (status, body) = broker
        .call(
            "ops",
            "POST",
            "/v1/schemas",
            Some(&json!({"name": "reading", "definition": {"type": "object", "required": ["celsius"]}}).to_string()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = broker
        .call(
            "ops",
            "POST",
            "/v1/stations",
            Some(
                &json!({"name": "readings", "subjects": ["readings.>"], "schema": "reading"})
                    .to_string(),
            ),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    broker.violate_schema().await;
    let hit = receiver
        .until_hit("the schema violation", |h| {
            h.body["kind"] == "schema_violation"
        })
        .await;
    assert_eq!(hit.body["station"], "readings");
    broker
        .health_until("ops-hook", "one delivered, none waiting", |h| {
            h["delivered"] == 1 && h["pending"] == 0 && h["failed_attempts"] == 0
        })
        .await;

    // A webhook whose receiver is gone: its failures show in its health, its
    // test says why, and its alarm is raised for everyone to read.
    let dead = format!("http://127.0.0.1:{}/gone", closed_port().await);
    let (status, body) = broker
        .put(
            "ops",
            &format!("{HOOKS}/dead-hook"),
            json!({"url": dead, "kinds": ["schema_violation"], "max_attempts": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, test) = broker
        .call("ops", "POST", &format!("{HOOKS}/dead-hook/test"), None)
        .await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["ok"], false, "{test}");
    assert_eq!(test["status"], Value::Null, "{test}");
    assert!(test["error"].as_str().unwrap().contains("failed"), "{test}");
    broker.violate_schema().await;
    let health = broker
        .health_until("dead-hook", "one dead-lettered", |h| {
            h["dead_lettered"] == 1 && h["failed_attempts"] == 1
        })
        .await;
    assert!(
        health["last_error"].as_str().unwrap().contains(&dead),
        "{health}"
    );
    // The alarm is raised just after the health counts the dead letter.
    let deadline = Instant::now() + GUARD;
    let alarm = loop {
        let (status, alarms) = broker.call("alice", "GET", "/v1/alarms", None).await;
        assert_eq!(status, 200, "{alarms}");
        if let Some(alarm) = alarms["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "webhook_failing:dead-hook")
        {
            break alarm.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no webhook_failing:dead-hook in {alarms}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        alarm["message"].as_str().unwrap().contains("dead-hook"),
        "{alarm}"
    );
    let (status, body) = broker
        .call("ops", "POST", &format!("{HOOKS}/nope/test"), None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "webhook_not_found");

    // Given back redacted, the secret stays what it was.
    let mut shown = broker.webhook("ops-hook").await["config"].clone();
    shown["kinds"] = json!(["schema_violation", "dead_letter"]);
    let (status, body) = broker.put("ops", &ops_hook, shown).await;
    assert_eq!(status, 200, "{body}");
    broker.stop().await;

    // After a restart: the API's webhooks are back, with their secret.
    let broker = Broker::start(dir.path()).await;
    let names: Vec<Value> = broker
        .webhooks()
        .await
        .iter()
        .map(|w| json!([w["name"], w["source"]]))
        .collect();
    assert_eq!(
        names,
        [
            json!(["dead-hook", "api"]),
            json!(["from-file", "config"]),
            json!(["ops-hook", "api"])
        ]
    );
    let back = broker.webhook("ops-hook").await;
    assert_eq!(
        back["config"]["kinds"],
        json!(["schema_violation", "dead_letter"])
    );
    assert_eq!(back["config"]["secret"], "********");
    let (status, test) = broker
        .call("ops", "POST", &format!("{ops_hook}/test"), None)
        .await;
    assert_eq!(status, 200, "{test}");
    let id = test["event_id"].as_str().unwrap().to_string();
    let hit = receiver
        .until_hit("the test after the restart", |h| {
            h.header("Junction-Event-Id") == Some(id.as_str())
        })
        .await;
    assert!(
        hit.signed_with("s3cret"),
        "the secret survived: {:?}",
        hit.headers
    );

    // Deleted: gone from the list, and not back after a restart.
    let (status, body) = broker.call("ops", "DELETE", &ops_hook, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = broker.call("ops", "DELETE", &ops_hook, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "webhook_not_found");
    broker.stop().await;
    let broker = Broker::start(dir.path()).await;
    let names: Vec<Value> = broker
        .webhooks()
        .await
        .iter()
        .map(|w| w["name"].clone())
        .collect();
    assert_eq!(names, [json!("dead-hook"), json!("from-file")]);
    broker.stop().await;
}
