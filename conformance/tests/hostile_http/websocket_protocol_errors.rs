//! WebSocket protocol errors on `/v1/ws` and `/mqtt`: each is answered with a Close
//! frame carrying its RFC 6455 code before the TCP connection closes: 1002 for a
//! protocol error (unmasked client frame, RSV bits, reserved opcode, fragmented
//! ping, a Close with a forbidden code), 1007 for a text message that is not
//! UTF-8, 1009 for a frame beyond the limit (a 2^63 length; a message larger than
//! the endpoint takes, sent by tokio-tungstenite).

use crate::raw::{assert_closed_after, client_frame, frame, read_close_code, ws_open};
use crate::support::within;
use futures::{SinkExt, StreamExt};
use junction_conformance::broker_with;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Each hostile frame and the close code it must get.
fn cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        (
            "unmasked client frame",
            frame(0x82, None, b"abc", None),
            1002,
        ),
        (
            "RSV1 without an extension",
            frame(0x80 | 0x40 | 0x2, Some([9, 9, 9, 9]), b"abc", None),
            1002,
        ),
        ("reserved data opcode 0x3", client_frame(0x3, b"abc"), 1002),
        ("reserved control opcode 0xB", client_frame(0xB, b""), 1002),
        (
            "fragmented ping",
            frame(0x09, Some([1, 2, 3, 4]), b"ping", None),
            1002,
        ),
        (
            "close code 1005 (never sent on the wire)",
            client_frame(0x8, &1005u16.to_be_bytes()),
            1002,
        ),
        (
            "close code 999",
            client_frame(0x8, &999u16.to_be_bytes()),
            1002,
        ),
        (
            "text that is not UTF-8",
            client_frame(0x1, b"{\"op\":\"ping\",\"x\":\"\xff\xfe\"}"),
            1007,
        ),
        (
            "a length of 2^63",
            frame(0x82, Some([1, 2, 3, 4]), b"", Some(1 << 63)),
            1009,
        ),
    ]
}

async fn check(addr: SocketAddr, path: &str, protocol: Option<&str>) {
    for (what, bytes, code) in cases() {
        let mut s = ws_open(addr, path, protocol).await;
        within("write", s.write_all(&bytes)).await.unwrap();
        assert_eq!(read_close_code(&mut s).await, Some(code), "{path}: {what}");
        assert_closed_after(&mut s).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_ws_answers_protocol_errors_with_close_codes() {
    let b = broker_with(|_| {}).await;
    check(b.running.http_addr().unwrap(), "/v1/ws", None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_ws_answers_protocol_errors_with_close_codes() {
    let b = broker_with(|_| {}).await;
    check(b.running.http_addr().unwrap(), "/mqtt", Some("mqtt")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_ws_answers_a_text_frame_with_1003() {
    let b = broker_with(|_| {}).await;
    let mut s = ws_open(b.running.http_addr().unwrap(), "/mqtt", Some("mqtt")).await;
    s.write_all(&client_frame(0x1, b"CONNECT")).await.unwrap();
    assert_eq!(read_close_code(&mut s).await, Some(1003));
    assert_closed_after(&mut s).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_beyond_the_limit_is_closed_with_1009() {
    // /v1/ws takes twice max_payload plus 64 KiB per message.
    let b = broker_with(|c| c.limits.max_payload = 1024).await;
    let url = format!("ws://{}/v1/ws", b.running.http_addr().unwrap());
    let (mut ws, _) = within("connect", tokio_tungstenite::connect_async(&url))
        .await
        .unwrap();
    let big = format!("{{\"op\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(200 * 1024));
    ws.send(Message::text(big)).await.unwrap();
    let close = within("Close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("no Close frame: {other:?}"),
            }
        }
    })
    .await;
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 1009, "{frame:?}");

    // A good client on the same endpoint is unaffected.
    let (mut ok, _) = within("connect", tokio_tungstenite::connect_async(&url))
        .await
        .unwrap();
    ok.send(Message::text(r#"{"op":"ping"}"#)).await.unwrap();
    let pong = within("pong", ok.next()).await.unwrap().unwrap();
    assert_eq!(pong.into_text().unwrap().as_str(), r#"{"op":"pong"}"#);
}
