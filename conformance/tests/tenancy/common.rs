//! What the tenancy tests share: brokers with tenants, authenticated clients.

#![allow(dead_code)]

use junction::config::{Config, TenantConfig};
use junction::engine::User;
use junction_conformance::TestBroker;
use serde_json::Value;

/// A tenant with users `(name, password)`.
pub fn tenant(name: &str, users: &[(&str, &str)]) -> TenantConfig {
    TenantConfig {
        name: name.into(),
        users: users.iter().map(|(u, p)| User::new(*u, *p)).collect(),
        ..Default::default()
    }
}

/// Sets two tenants, `acme` (alice) and `globex` (bob), and an `[auth]` user
/// `admin` in the default tenant.
pub fn two_tenants(c: &mut Config) {
    c.auth.users = vec![User::new("admin", "admin-pw")];
    c.tenants = vec![
        tenant("acme", &[("alice", "alice-pw")]),
        tenant("globex", &[("bob", "bob-pw")]),
    ];
}

/// An async-nats connection as `user`.
pub async fn nats_as(b: &TestBroker, user: &str, password: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(b.nats_url())
        .await
        .unwrap_or_else(|e| panic!("NATS login as {user}: {e}"))
}

/// A reqwest client.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `GET path` as `user`: status and JSON body.
pub async fn get_as(b: &TestBroker, user: &str, password: &str, path: &str) -> (u16, Value) {
    let r = http()
        .get(format!("{}{path}", b.http_url()))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST path` with a raw body as `user`: status and JSON body.
pub async fn post_as(
    b: &TestBroker,
    user: &str,
    password: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let r = http()
        .post(format!("{}{path}", b.http_url()))
        .basic_auth(user, Some(password))
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A WebSocket on `/v1/ws` as `user`.
pub async fn ws_as(
    b: &TestBroker,
    user: &str,
    password: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use base64::Engine as _;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/v1/ws", b.http_url().replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    request.headers_mut().insert(
        "authorization",
        format!("Basic {token}").parse().expect("header"),
    );
    let (ws, _) = crate::support::within("ws connect", tokio_tungstenite::connect_async(request))
        .await
        .expect("websocket");
    ws
}

/// Sends one JSON frame and waits for the frame whose `op` is one of `ops`
/// (others are skipped).
pub async fn ws_call(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    frame: Value,
    ops: &[&str],
) -> Value {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("ws send");
    ws_next(ws, ops).await
}

/// The next frame whose `op` is one of `ops`.
pub async fn ws_next(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    ops: &[&str],
) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = crate::support::within("ws frame", ws.next())
            .await
            .expect("ws open")
            .expect("ws frame");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).expect("json frame");
            if ops.iter().any(|o| v["op"] == *o) {
                return v;
            }
        }
    }
}

pub use junction_conformance::NatsServer;
