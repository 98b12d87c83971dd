//! A raw NATS socket for golden tests: exact bytes in, exact bytes out.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long any single expectation may wait. Generous: tests never assert on timing.
pub const WAIT: Duration = Duration::from_secs(5);

/// The CONNECT most tests use: no `+OK`s, no subject checks.
pub const QUIET: &str = r#"{"verbose":false,"pedantic":false}"#;

/// The CONNECT of a quiet client that understands headers.
pub const QUIET_HEADERS: &str = r#"{"verbose":false,"pedantic":false,"headers":true}"#;

/// Shows bytes as an escaped string, for readable assertion messages.
pub fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// One raw client connection.
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The INFO JSON the server sent.
    pub info: serde_json::Value,
    /// Drop unsolicited server `PING\r\n` lines before matching. The server sends
    /// its first keepalive PING about 2 s after CONNECT; skipping it keeps the
    /// other tests independent of machine load. Keepalive tests turn this off.
    skip_pings: bool,
}

impl Wire {
    /// Opens a socket and reads the INFO line, checking only its framing
    /// (`INFO {json} \r\n`) and that the JSON parses.
    pub async fn open_unchecked(addr: SocketAddr) -> Wire {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut wire = Wire {
            stream,
            buf: Vec::new(),
            info: serde_json::Value::Null,
            skip_pings: true,
        };
        let line = wire.read_line().await;
        assert!(
            line.starts_with(b"INFO {"),
            "first line is not INFO: {}",
            show(&line)
        );
        assert!(
            line.ends_with(b"} \r\n"),
            "INFO must end with a space before CRLF: {}",
            show(&line)
        );
        let json = &line[b"INFO ".len()..line.len() - b" \r\n".len()];
        wire.info = serde_json::from_slice(json)
            .unwrap_or_else(|e| panic!("INFO JSON does not parse ({e}): {}", show(json)));
        wire
    }

    /// Opens a socket and checks the INFO line and its required fields.
    pub async fn open(addr: SocketAddr) -> Wire {
        let wire = Wire::open_unchecked(addr).await;
        let info = &wire.info;
        assert!(info["server_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(info["version"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(info["proto"], 1, "INFO proto");
        assert_eq!(info["headers"], true, "INFO headers");
        assert!(info["max_payload"].as_u64().is_some_and(|n| n > 0));
        assert!(
            info["client_id"].as_u64().is_some_and(|n| n > 0),
            "INFO client_id: {info}"
        );
        wire
    }

    /// Opens a socket, sends `CONNECT <json>` and `PING`, and expects `PONG` (so
    /// `json` must turn verbose off).
    pub async fn client_with(addr: SocketAddr, json: &str) -> Wire {
        let mut wire = Wire::open(addr).await;
        wire.send(format!("CONNECT {json}\r\nPING\r\n").as_bytes())
            .await;
        wire.expect(b"PONG\r\n").await;
        wire
    }

    /// A connected client with [`QUIET`] options.
    pub async fn client(addr: SocketAddr) -> Wire {
        Wire::client_with(addr, QUIET).await
    }

    /// A connected client that subscribed to `bystander.>` as sid `1`, for checking
    /// that other clients' misbehaviour leaves it alone (see [`Wire::assert_healthy`]).
    pub async fn bystander_with(addr: SocketAddr, json: &str) -> Wire {
        let mut wire = Wire::client_with(addr, json).await;
        wire.send(b"SUB bystander.> 1\r\nPING\r\n").await;
        wire.expect(b"PONG\r\n").await;
        wire
    }

    /// [`Wire::bystander_with`] with [`QUIET`] options.
    pub async fn bystander(addr: SocketAddr) -> Wire {
        Wire::bystander_with(addr, QUIET).await
    }

    /// Checks that a [`Wire::bystander`] is still served: nothing unexpected was
    /// queued for it, it can publish to itself and gets PONG for PING.
    pub async fn assert_healthy(&mut self) {
        self.send(b"PUB bystander.check 2\r\nok\r\nPING\r\n").await;
        self.expect(b"MSG bystander.check 1 2\r\nok\r\nPONG\r\n")
            .await;
    }

    /// Keeps unsolicited server PINGs in the stream (for keepalive tests).
    pub fn strict(mut self) -> Wire {
        self.skip_pings = false;
        self
    }

    /// Writes `bytes` to the socket.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Reads more bytes before `deadline`. Returns false at end of stream (or on a
    /// socket error, which a reset after close shows up as).
    async fn fill(&mut self, deadline: Instant, waiting_for: &str) -> bool {
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(_)) => true,
            Err(_) => panic!(
                "timed out waiting for {waiting_for}; have {}",
                show(&self.buf)
            ),
        }
    }

    fn drop_server_pings(&mut self, expected: &[u8]) {
        if self.skip_pings && !expected.starts_with(b"PING") {
            while self.buf.starts_with(b"PING\r\n") {
                self.buf.drain(..6);
            }
        }
    }

    /// Reads one line, CRLF included.
    async fn read_line(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return self.buf.drain(..p + 2).collect();
            }
            if !self.fill(deadline, "a line").await {
                panic!("connection closed; have {}", show(&self.buf));
            }
        }
    }

    /// Asserts that the next bytes from the server are exactly `expected`, and
    /// consumes them.
    pub async fn expect(&mut self, expected: &[u8]) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drop_server_pings(expected);
            // Keep reading while what we have could still become `expected`, or
            // is the start of a PING that will be skipped.
            let partial_ping = self.skip_pings
                && !expected.starts_with(b"PING")
                && self.buf.len() < 6
                && b"PING\r\n".starts_with(&self.buf);
            let partial = self.buf.len() < expected.len() && expected.starts_with(&self.buf);
            if !(partial || partial_ping) {
                break;
            }
            if !self.fill(deadline, &show(expected)).await {
                break;
            }
        }
        let n = expected.len().min(self.buf.len());
        assert_eq!(
            show(&self.buf[..n]),
            show(expected),
            "unexpected bytes from the server"
        );
        assert!(
            n == expected.len(),
            "connection closed before {}",
            show(expected)
        );
        self.buf.drain(..n);
    }

    /// Reads whole server frames until one equals `last` (not returned), and returns
    /// the frames before it, each exactly as sent.
    pub async fn frames_until(&mut self, last: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next_frame().await;
            if frame == last {
                return frames;
            }
            frames.push(frame);
        }
    }

    /// Reads one whole server frame: a line, or a `MSG`/`HMSG` with its payload.
    /// Unsolicited PINGs are skipped unless [`Wire::strict`].
    pub async fn next_frame(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drop_server_pings(b"");
            if let Some(len) = frame_len(&self.buf) {
                return self.buf.drain(..len).collect();
            }
            if !self.fill(deadline, "a frame").await {
                panic!("connection closed; have {}", show(&self.buf));
            }
        }
    }

    /// Asserts that the server closes the connection without sending anything
    /// more (unsolicited PINGs aside).
    pub async fn expect_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            self.drop_server_pings(b"");
            let partial_ping = self.skip_pings && b"PING\r\n".starts_with(&self.buf);
            assert!(
                self.buf.is_empty() || partial_ping,
                "expected the connection to close, got {}",
                show(&self.buf)
            );
            if !self.fill(deadline, "the connection to close").await {
                assert!(
                    self.buf.is_empty(),
                    "unexpected bytes before close: {}",
                    show(&self.buf)
                );
                return;
            }
        }
    }

    /// Sends `PING` and expects `PONG` as the very next frame: a barrier proving
    /// that everything sent before was processed and nothing else was queued.
    pub async fn ping_pong(&mut self) {
        self.send(b"PING\r\n").await;
        self.expect(b"PONG\r\n").await;
    }
}

/// The length of the first whole frame in `buf`, if it is all there.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")? + 2;
    let line = &buf[..line_end - 2];
    let body = if line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") {
        let size = line.rsplit(|&c| c == b' ').next()?;
        let size: usize = std::str::from_utf8(size).ok()?.parse().ok()?;
        size + 2
    } else {
        0
    };
    (buf.len() >= line_end + body).then_some(line_end + body)
}
