//! A JSON-frame client of `/v1/ws` (tokio-tungstenite) that keeps frames it was not
//! waiting for, and the standard base64 the HTTP gateway uses for binary payloads.

use futures::{SinkExt, StreamExt};
use junction_conformance::TestBroker;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as WsMessage;

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How long a wait for a frame may hang before it counts as a failure.
pub const FRAME_GUARD: Duration = Duration::from_secs(8);

/// One `/v1/ws` socket.
pub struct WsClient {
    stream: Stream,
    buffered: VecDeque<Value>,
}

impl WsClient {
    /// Opens a socket on `broker`'s HTTP listener.
    pub async fn connect(broker: &TestBroker) -> Result<WsClient, String> {
        let url = format!("{}/v1/ws", broker.http_url().replacen("http", "ws", 1));
        let (stream, response) =
            tokio::time::timeout(FRAME_GUARD, tokio_tungstenite::connect_async(url))
                .await
                .map_err(|_| "websocket connect timed out".to_string())?
                .map_err(|e| format!("websocket connect: {e}"))?;
        if response.status().as_u16() != 101 {
            return Err(format!("websocket upgrade answered {}", response.status()));
        }
        Ok(WsClient {
            stream,
            buffered: VecDeque::new(),
        })
    }

    /// Sends one frame.
    pub async fn send(&mut self, frame: Value) -> Result<(), String> {
        tokio::time::timeout(
            FRAME_GUARD,
            self.stream.send(WsMessage::Text(frame.to_string().into())),
        )
        .await
        .map_err(|_| "websocket send timed out".to_string())?
        .map_err(|e| format!("websocket send: {e}"))
    }

    /// Waits for the first frame `pick` accepts (from those kept earlier, then from
    /// the socket); other frames are kept.
    pub async fn wait(
        &mut self,
        what: &str,
        pick: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        if let Some(i) = self.buffered.iter().position(&pick) {
            return Ok(self.buffered.remove(i).expect("index in range"));
        }
        let deadline = tokio::time::Instant::now() + FRAME_GUARD;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => {
                    return Err(format!(
                        "no websocket frame {what} within {FRAME_GUARD:?}; other frames: {:?}",
                        self.buffered
                    ));
                }
                Ok(None) => return Err(format!("websocket closed while waiting for {what}")),
                Ok(Some(Err(e))) => return Err(format!("websocket error waiting for {what}: {e}")),
                Ok(Some(Ok(f))) => f,
            };
            let WsMessage::Text(text) = frame else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str())
                .map_err(|e| format!("websocket frame is not JSON ({e}): {text}"))?;
            if pick(&v) {
                return Ok(v);
            }
            self.buffered.push_back(v);
        }
    }

    /// Closes the socket (best effort).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(FRAME_GUARD, self.stream.close(None)).await;
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard, padded base64.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padded or not.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| format!("not base64: {text:?}"))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[test]
fn base64_round_trips() {
    for data in [&b""[..], b"\x00", b"\xff\x00", b"\x00matrix\xff", b"abcdef"] {
        assert_eq!(base64_decode(&base64_encode(data)).unwrap(), data);
    }
    assert_eq!(base64_encode(b"\xff\x00\x01"), "/wAB");
    assert_eq!(base64_encode(b"\xff\x00"), "/wA=");
}
