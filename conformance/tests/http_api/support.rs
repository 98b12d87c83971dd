//! Helpers shared by the HTTP API scenarios: a small JSON client over reqwest, hang
//! guards, and shortcuts for stations, groups, publishing and fetching.
//!
//! Timeouts here only guard against hangs; no scenario asserts how long anything
//! takes (time-based behaviour is polled for until it holds, with a deadline).

#![allow(dead_code)]

use junction_conformance::TestBroker;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::future::Future;
use std::time::Duration;

/// How long any single step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(15);

/// A longer guard for steps that wait for a time-based behaviour (ack wait).
pub const LONG_GUARD: Duration = Duration::from_secs(30);

/// Runs `f`, failing the test if it does not finish within [`GUARD`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(GUARD, what, f).await
}

/// Runs `f`, failing the test if it does not finish within `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Polls `check` until it returns true; fails after [`LONG_GUARD`].
pub async fn poll_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within_for(LONG_GUARD, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// A response: status, headers and the body parsed as JSON (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The JSON body.
    pub json: Value,
}

impl Reply {
    /// Asserts the status and returns the body.
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status: {self:?}");
        self.json
    }

    /// Asserts an error answer: status, JSON content type, `{"error":{"code",
    /// "message"}}` with `code`. Returns the message.
    pub fn expect_error(self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status: {self:?}");
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "error content type {content_type:?}: {self:?}"
        );
        assert_eq!(
            self.json["error"]["code"].as_str(),
            Some(code),
            "error code: {self:?}"
        );
        let message = self.json["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {self:?}"));
        assert!(!message.is_empty(), "empty error message: {self:?}");
        message.to_string()
    }
}

/// A JSON client for one broker's HTTP listener.
#[derive(Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The underlying client.
    pub http: reqwest::Client,
    auth: Option<String>,
}

impl Api {
    /// A client for `broker`.
    pub fn new(broker: &TestBroker) -> Self {
        Api {
            base: broker.http_url(),
            http: reqwest::Client::new(),
            auth: None,
        }
    }

    /// The same client, sending `Authorization: <value>`.
    pub fn with_auth(&self, value: &str) -> Self {
        Api {
            auth: Some(value.to_string()),
            ..self.clone()
        }
    }

    /// A request builder for `method` on `path`, with this client's credentials.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.auth {
            Some(a) => r.header("authorization", a),
            None => r,
        }
    }

    /// Sends `request` and reads the reply.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = within("HTTP request", request.send())
            .await
            .unwrap_or_else(|e| panic!("HTTP request failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = within("HTTP body", response.bytes())
            .await
            .unwrap_or_else(|e| panic!("HTTP body failed: {e}"));
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: body is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(
            self.request(reqwest::Method::PUT, path)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await
    }

    /// `POST path` with raw bytes and extra headers.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut r = self.request(reqwest::Method::POST, path).body(body.into());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        self.send(r).await
    }

    /// Creates a station capturing `subjects`, expecting 201.
    pub async fn station(&self, name: &str, subjects: &[&str]) -> Value {
        self.post("/v1/stations", &json!({"name": name, "subjects": subjects}))
            .await
            .expect(201)
    }

    /// Creates a durable group with `extra` fields merged in, expecting 201.
    pub async fn group(&self, station: &str, name: &str, extra: Value) -> Value {
        let mut body = json!({ "name": name });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.post(&format!("/v1/stations/{station}/groups"), &body)
            .await
            .expect(201)
    }

    /// Publishes `payload` to `subject`; returns the reply.
    pub async fn publish(&self, subject: &str, payload: &str) -> Reply {
        self.post_raw(&format!("/v1/subjects/{subject}"), payload, &[])
            .await
    }

    /// Publishes `payload` to `subject` expecting a station to store it; returns its
    /// sequence.
    pub async fn publish_stored(&self, subject: &str, payload: &str) -> u64 {
        let body = self.publish(subject, payload).await.expect(201);
        body["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {body}"))
    }

    /// One fetch; returns the delivered messages.
    pub async fn fetch(
        &self,
        station: &str,
        group: &str,
        batch: u64,
        max_wait_ms: u64,
    ) -> Vec<Value> {
        let body = self
            .post(
                &format!("/v1/stations/{station}/groups/{group}/fetch"),
                &json!({"batch": batch, "max_wait_ms": max_wait_ms}),
            )
            .await
            .expect(200);
        body["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("no messages array: {body}"))
            .clone()
    }

    /// Acknowledges `messages` (fetched ones) with `ack`.
    pub async fn ack(&self, station: &str, group: &str, messages: &[Value]) -> Value {
        let tokens: Vec<&str> = messages.iter().map(token).collect();
        self.post(
            &format!("/v1/stations/{station}/groups/{group}/ack"),
            &json!({ "ack": tokens }),
        )
        .await
        .expect(200)
    }

    /// A group's state object.
    pub async fn group_state(&self, station: &str, group: &str) -> Value {
        self.get(&format!("/v1/stations/{station}/groups/{group}"))
            .await
            .expect(200)["state"]
            .clone()
    }
}

/// The ack token of a fetched message.
pub fn token(m: &Value) -> &str {
    m["ack_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no ack_token: {m}"))
}

/// The sequence of a message.
pub fn seq(m: &Value) -> u64 {
    m["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {m}"))
}

/// The text payload of a message.
pub fn payload(m: &Value) -> &str {
    m["payload"]
        .as_str()
        .unwrap_or_else(|| panic!("no text payload: {m}"))
}

/// A message's delivery count.
pub fn deliveries(m: &Value) -> u64 {
    m["delivery_count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no delivery_count: {m}"))
}

/// A stored message's headers without `Junction-*` ones (dead-letter reasons,
/// lineage rendered on request) and `traceparent`: what the producer sent.
pub fn producer_headers(m: &Value) -> Value {
    let mut h = m["headers"].clone();
    if let Some(o) = h.as_object_mut() {
        o.retain(|k, _| {
            !k.to_ascii_lowercase().starts_with("junction-")
                && !k.eq_ignore_ascii_case("traceparent")
        });
    }
    h
}
