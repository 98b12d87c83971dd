//! Raw sockets for the hostile HTTP battery: hand-written HTTP requests, a parsed
//! answer, a WebSocket handshake and hand-built WebSocket frames.
//!
//! Timeouts here only guard against hangs.

#![allow(dead_code)]

use crate::support::{GUARD, within};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP answer read off a raw socket.
#[derive(Debug)]
pub struct RawAnswer {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts `status`, a JSON content type and `{"error":{"code"}}` = `code`.
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{self:?}"
        );
        assert_eq!(self.json()["error"]["code"], code, "{self:?}");
    }
}

/// Connects to `addr`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    within("TCP connect", TcpStream::connect(addr))
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

/// What one socket ended with: an answer, a clean end of stream with nothing, or a
/// reset.
#[derive(Debug)]
pub enum Ending {
    /// Bytes and then end of stream.
    Answer(Vec<u8>),
    /// End of stream with no byte.
    Eof,
    /// The connection was reset.
    Reset,
}

/// Reads `stream` until the server closes it (fails after the guard).
pub async fn read_until_closed(stream: &mut TcpStream) -> Ending {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match within("the server to close the socket", stream.read(&mut buf)).await {
            Ok(0) if all.is_empty() => return Ending::Eof,
            Ok(0) => return Ending::Answer(all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) if all.is_empty() => return Ending::Reset,
            Err(_) => return Ending::Answer(all),
        }
    }
}

/// Parses an HTTP/1.1 answer (head and the body after it).
pub fn parse(bytes: &[u8]) -> RawAnswer {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    RawAnswer {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// Sends `request` on a fresh connection and reads the answer until the server
/// closes (send `Connection: close`).
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> RawAnswer {
    let mut s = connect(addr).await;
    within("write", s.write_all(request)).await.unwrap();
    match read_until_closed(&mut s).await {
        Ending::Answer(bytes) => parse(&bytes),
        other => panic!("no answer: {other:?}"),
    }
}

/// Sends `request` and reads one answer (by its Content-Length), without waiting
/// for the server to close a kept-alive connection.
pub async fn exchange_one(addr: SocketAddr, request: &[u8]) -> RawAnswer {
    let mut s = connect(addr).await;
    within("write", s.write_all(request)).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = within("an answer", s.read(&mut buf)).await.unwrap();
        assert!(n > 0, "closed before a whole answer: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let answer = parse(&got);
            let length: usize = answer
                .header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return answer;
            }
        }
    }
}

/// An upgrade request for `path` with `version` as `Sec-WebSocket-Version`.
pub fn upgrade_request(path: &str, version: &str, protocol: Option<&str>) -> Vec<u8> {
    let protocol = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n{protocol}\r\n"
    )
    .into_bytes()
}

/// Opens a WebSocket on `path` by hand; returns the socket after the 101.
pub async fn ws_open(addr: SocketAddr, path: &str, protocol: Option<&str>) -> TcpStream {
    let mut s = connect(addr).await;
    within("write", s.write_all(&upgrade_request(path, "13", protocol)))
        .await
        .unwrap();
    // Read the head byte by byte so no frame byte is taken with it.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within("101 head", s.read(&mut byte)).await.unwrap();
        assert_eq!(n, 1, "closed during the handshake: {head:?}");
        head.push(byte[0]);
    }
    let answer = parse(&head);
    assert_eq!(answer.status, 101, "{answer:?}");
    s
}

/// A frame as the bytes of its header and payload. `mask` masks the payload (a
/// client must); `len` overrides the length written in the header.
pub fn frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8], len: Option<u64>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = len.unwrap_or(payload.len() as u64);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame: FIN + `opcode`.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(0x80 | opcode, Some([1, 2, 3, 4]), payload, None)
}

/// Reads server frames until a Close; returns its code (`None`: a Close without
/// one). Fails if the socket closes without a Close frame.
pub async fn read_close_code(s: &mut TcpStream) -> Option<u16> {
    within("a Close frame", async {
        loop {
            let mut head = [0u8; 2];
            s.read_exact(&mut head)
                .await
                .unwrap_or_else(|e| panic!("socket ended without a Close frame: {e}"));
            let opcode = head[0] & 0x0f;
            assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    s.read_exact(&mut b).await.unwrap();
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    s.read_exact(&mut b).await.unwrap();
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            s.read_exact(&mut payload).await.unwrap();
            if opcode == 0x8 {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
    })
    .await
}

/// Waits for `GUARD` at most for the server to close `s` after its Close frame.
pub async fn assert_closed_after(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(GUARD, s.read(&mut buf))
        .await
        .expect("the server closes the socket after its Close frame");
    assert!(matches!(n, Ok(0) | Err(_)), "more bytes after Close: {n:?}");
}
