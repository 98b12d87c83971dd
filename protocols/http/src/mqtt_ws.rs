//! MQTT over WebSocket at `/mqtt` (subprotocol `mqtt`, as MQTT.js and rumqttc use).
//!
//! The HTTP front-end knows nothing of MQTT: it upgrades the request and hands a
//! byte stream (binary frames in, binary frames out) to whatever handler the
//! process wired in, which is the MQTT front-end's connection driver.

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Runs one MQTT connection over the given byte stream.
pub type MqttStreamHandler =
    Arc<dyn Fn(DuplexStream, SocketAddr) -> BoxFuture<'static, ()> + Send + Sync>;

/// `GET /mqtt`: MQTT over WebSocket, handled by `handler`.
pub fn mqtt_ws_router(handler: MqttStreamHandler) -> Router {
    Router::new()
        .route("/mqtt", get(upgrade))
        .with_state(handler)
}

async fn upgrade(
    State(handler): State<MqttStreamHandler>,
    remote: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    ws: WebSocketUpgrade,
) -> Response {
    let remote = remote
        .map(|c| c.0.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    ws.protocols(["mqtt", "mqttv3.1"])
        .max_message_size(64 * 1024 * 1024)
        .on_upgrade(move |socket| bridge(socket, handler, remote))
}

/// Copies binary frames to and from an in-memory pipe whose other end the MQTT
/// front-end reads and writes like a TCP socket.
async fn bridge(socket: WebSocket, handler: MqttStreamHandler, remote: SocketAddr) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let session = tokio::spawn(handler(theirs, remote));
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut pipe_rx, mut pipe_tx) = tokio::io::split(ours);
    let inbound = async move {
        while let Some(Ok(msg)) = ws_rx.next().await {
            match msg {
                WsMessage::Binary(b) => {
                    if pipe_tx.write_all(&b).await.is_err() {
                        break;
                    }
                }
                WsMessage::Text(t) => {
                    // Not MQTT: binary frames only (MQTT 5 §6.0).
                    tracing::info!(%remote, len = t.len(), "MQTT over WebSocket: text frame, closing");
                    break;
                }
                WsMessage::Close(_) => break,
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
            }
        }
        let _ = pipe_tx.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match pipe_rx.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let frame = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if ws_tx.send(WsMessage::Binary(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.send(WsMessage::Close(None)).await;
    };
    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
    // Either side ended: the session sees EOF (or a write error) and finishes.
    let _ = session.await;
}
