//! MQTT over WebSocket at `/mqtt` (subprotocol `mqtt`, as MQTT.js and rumqttc use).
//!
//! The HTTP front-end knows nothing of MQTT: it upgrades the request and hands a
//! byte stream (binary frames in, binary frames out) to whatever handler the
//! process wired in, which is the MQTT front-end's connection driver.

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

/// Runs one MQTT connection over the given byte stream, from the address, with
/// the client certificate (DER) an HTTPS client presented, if any.
pub type MqttStreamHandler =
    Arc<dyn Fn(DuplexStream, SocketAddr, Option<Vec<u8>>) -> BoxFuture<'static, ()> + Send + Sync>;

/// `GET /mqtt`: MQTT over WebSocket, handled by `handler`.
pub fn mqtt_ws_router(handler: MqttStreamHandler) -> Router {
    Router::new()
        .route("/mqtt", get(upgrade))
        .with_state(handler)
}

async fn upgrade(
    State(handler): State<MqttStreamHandler>,
    remote: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    certificate: Option<axum::Extension<crate::listener::PeerCertificate>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let certificate = certificate.map(|c| c.0.0.to_vec());
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return crate::websocket::refuse_upgrade(rejection),
    };
    let remote = remote
        .map(|c| c.0.0)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    ws.protocols(["mqtt", "mqttv3.1"])
        .max_message_size(64 * 1024 * 1024)
        .on_upgrade(move |socket| bridge(socket, handler, remote, certificate))
}

/// How long one side waits for the other once it has ended: the writer to send
/// the Close frame, or the client to answer ours.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Copies binary frames to and from an in-memory pipe whose other end the MQTT
/// front-end reads and writes like a TCP socket. A broken frame is answered with
/// its RFC 6455 close code (see [`crate::websocket`]), a text frame with 1003.
async fn bridge(
    socket: WebSocket,
    handler: MqttStreamHandler,
    remote: SocketAddr,
    certificate: Option<Vec<u8>>,
) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let session = tokio::spawn(handler(theirs, remote, certificate));
    let (mut ws_tx, mut ws_rx) = socket.split();
    let (mut pipe_rx, mut pipe_tx) = tokio::io::split(ours);
    let (close_tx, mut close_rx) = oneshot::channel::<CloseFrame>();
    let inbound = async move {
        let close = loop {
            match ws_rx.next().await {
                None => break None,
                Some(Err(e)) => break crate::websocket::close_for(&e),
                Some(Ok(WsMessage::Binary(b))) => {
                    if pipe_tx.write_all(&b).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(WsMessage::Text(t))) => {
                    // Not MQTT: binary frames only (MQTT 5 §6.0).
                    tracing::info!(%remote, len = t.len(), "MQTT over WebSocket: text frame, closing");
                    break Some(CloseFrame {
                        code: crate::websocket::CLOSE_UNSUPPORTED_DATA,
                        reason: "MQTT travels in binary frames".into(),
                    });
                }
                // Read on: the library answers the Close, then the stream ends.
                Some(Ok(WsMessage::Close(_))) => {}
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            }
        };
        let _ = pipe_tx.shutdown().await;
        if let Some(frame) = close {
            let _ = close_tx.send(frame);
        }
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        let close = loop {
            tokio::select! {
                biased;
                // A frame from the reader, or its end without one.
                frame = &mut close_rx => break frame.ok(),
                read = pipe_rx.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => {
                        let frame = bytes::Bytes::copy_from_slice(&buf[..n]);
                        if ws_tx.send(WsMessage::Binary(frame)).await.is_err() {
                            return;
                        }
                    }
                },
            }
        };
        let _ = ws_tx.send(WsMessage::Close(close)).await;
    };
    tokio::pin!(inbound, outbound);
    tokio::select! {
        _ = &mut inbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, outbound).await;
        }
        _ = &mut outbound => {
            let _ = tokio::time::timeout(CLOSE_GRACE, inbound).await;
        }
    }
    // Either side ended: the session sees EOF (or a write error) and finishes.
    let _ = session.await;
}
