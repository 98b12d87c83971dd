//! Malformed input: the exact `-ERR` (or none), whether the connection closes, and
//! that other clients are not affected.

use super::support::{QUIET, Wire};
use junction_conformance::broker;
use std::net::SocketAddr;

/// Sends `input` on a fresh connection (after `CONNECT connect` and a PING barrier
/// when `connect` is given), then expects `-ERR '<err>'` when `err` is given, and
/// the connection to close.
async fn closes(addr: SocketAddr, connect: Option<&str>, input: &[u8], err: Option<&str>) {
    let mut w = match connect {
        Some(json) => Wire::client_with(addr, json).await,
        None => Wire::open(addr).await,
    };
    w.send(input).await;
    if let Some(text) = err {
        w.expect(format!("-ERR '{text}'\r\n").as_bytes()).await;
    }
    w.expect_closed().await;
}

const UNKNOWN: Option<&str> = Some("Unknown Protocol Operation");

#[tokio::test]
async fn unknown_operation_closes() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for input in [
        &b"FOO\r\n"[..],
        b"FOO bar\r\n",
        b"PINX\r\n",
        b"PUBX foo 1\r\n",
        b"SUBSCRIBE foo 1\r\n",
        b" PING\r\n",
        b"\tPING\r\n",
        b"\r\n",
        b"\n",
        b"123\r\n",
        b"RMSG foo 1\r\n",
        b"RS+ foo\r\n",
        b"LS+ foo\r\n",
        b"A+ foo\r\n",
        b"LMSG foo 1\r\n",
    ] {
        for connect in [None, Some(QUIET)] {
            closes(addr, connect, input, UNKNOWN).await;
        }
    }
    by.assert_healthy().await;
    // The broker still accepts new clients.
    Wire::client(addr).await.ping_pong().await;
}

#[tokio::test]
async fn client_sending_msg_is_unknown_operation() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    closes(addr, Some(QUIET), b"MSG foo 1 2\r\nhi\r\n", UNKNOWN).await;
    closes(addr, None, b"msg foo 1 2\r\nhi\r\n", UNKNOWN).await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn missing_separator_after_op_is_unknown_operation() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for input in [
        &b"SUB\r\n"[..],
        b"PUB\r\n",
        b"UNSUB\r\n",
        b"SUB\n",
        b"SUBfoo 1\r\n",
        b"PUBfoo 2\r\nhi\r\n",
    ] {
        closes(addr, Some(QUIET), input, UNKNOWN).await;
    }
    closes(
        addr,
        Some(super::support::QUIET_HEADERS),
        b"HPUB\r\n",
        UNKNOWN,
    )
    .await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn payload_not_followed_by_crlf_is_unknown_operation() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for input in [
        &b"PUB foo 2\r\nok \r\n"[..],
        b"PUB foo 2\r\nok\r \n",
        b"PUB foo 2\r\nok\n",
        b"PUB foo 2\r\nokay\r\n",
        b"PUB foo 0\r\nx\r\n",
    ] {
        closes(addr, Some(QUIET), input, UNKNOWN).await;
    }
    by.assert_healthy().await;
}

#[tokio::test]
async fn ops_before_the_bad_one_are_processed() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\nFOO\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo 1 2\r\nhi\r\nPONG\r\n-ERR 'Unknown Protocol Operation'\r\n")
        .await;
    w.expect_closed().await;
}

#[tokio::test]
async fn bad_argument_counts_and_sizes_close_silently() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for input in [
        &b"PUB foo\r\n"[..],
        b"PUB \r\n",
        b"PUB a b c 1\r\n",
        b"PUB foo bar\r\n",
        b"PUB foo -1\r\n",
        b"PUB foo +1\r\n",
        b"PUB foo 1234567890\r\n",
        b"SUB foo\r\n",
        b"SUB \r\n",
        b"SUB a b c d\r\n",
        b"UNSUB \r\n",
        b"UNSUB a b c\r\n",
    ] {
        closes(addr, Some(QUIET), input, None).await;
    }
    // Before CONNECT as well.
    closes(addr, None, b"PUB foo\r\n", None).await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn bad_connect_closes_silently() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for input in [
        &b"CONNECT\r\n"[..],
        b"CONNECT {\r\n",
        b"CONNECT not json\r\n",
        b"CONNECT {\"verbose\":\"yes\"}\r\n",
        b"CONNECT {\"echo\":1}\r\n",
    ] {
        closes(addr, None, input, None).await;
    }
    by.assert_healthy().await;
}

#[tokio::test]
async fn client_err_and_bad_info_close_silently() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    closes(addr, Some(QUIET), b"-ERR 'oops'\r\n", None).await;
    closes(addr, Some(QUIET), b"INFO {not json\r\n", None).await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn invalid_client_protocol() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for json in [r#"{"protocol":2}"#, r#"{"protocol":-1}"#] {
        closes(
            addr,
            None,
            format!("CONNECT {json}\r\n").as_bytes(),
            Some("invalid client protocol"),
        )
        .await;
    }
    // 0 and 1 are fine.
    Wire::client_with(addr, r#"{"verbose":false,"protocol":1}"#).await;
    Wire::client_with(addr, r#"{"verbose":false,"protocol":0}"#).await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn invalid_subject_keeps_the_connection() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    let mut w = Wire::client(addr).await;
    for subject in ["foo..bar", "foo.", ".foo", ".", "foo.>.bar", ">.a", "a.>.>"] {
        w.send(format!("SUB {subject} 1\r\nPING\r\n").as_bytes())
            .await;
        w.expect(b"-ERR 'Invalid Subject'\r\nPONG\r\n").await;
    }
    // A queue sub with a bad subject is refused the same way.
    w.send(b"SUB foo..bar q 1\r\nPING\r\n").await;
    w.expect(b"-ERR 'Invalid Subject'\r\nPONG\r\n").await;
    // None was added: sid 1 is still free, and the connection still works.
    w.send(b"SUB foo.bar 1\r\nPUB foo.bar 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo.bar 1 2\r\nhi\r\nPONG\r\n").await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn invalid_subject_with_verbose_gets_no_ok() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {}\r\n").await;
    w.expect(b"+OK\r\n").await;
    w.send(b"SUB foo..bar 1\r\nPING\r\n").await;
    w.expect(b"-ERR 'Invalid Subject'\r\nPONG\r\n").await;
}

#[tokio::test]
async fn pedantic_invalid_publish_subject_is_still_delivered() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut sub = Wire::client(addr).await;
    sub.send(b"SUB foo.> 1\r\nPING\r\n").await;
    sub.expect(b"PONG\r\n").await;

    let mut w = Wire::client_with(addr, r#"{"verbose":false,"pedantic":true}"#).await;
    w.send(b"PUB foo.* 2\r\nhi\r\nPING\r\n").await;
    w.expect(b"-ERR 'Invalid Publish Subject'\r\nPONG\r\n")
        .await;
    sub.expect(b"MSG foo.* 1 2\r\nhi\r\n").await;

    // Empty tokens and a full wildcard are refused too; the connection stays open.
    // (`bar..baz` rather than `foo..bar`: see `empty_token_publish_matches_nothing`.)
    w.send(b"PUB bar..baz 1\r\nx\r\nPUB foo.> 1\r\ny\r\nPING\r\n")
        .await;
    w.expect(b"-ERR 'Invalid Publish Subject'\r\n-ERR 'Invalid Publish Subject'\r\nPONG\r\n")
        .await;
    sub.expect(b"MSG foo.> 1 1\r\ny\r\n").await;

    // Verbose and pedantic: the -ERR, then the +OK, then the delivery.
    let mut v = Wire::open(addr).await;
    v.send(b"CONNECT {}\r\nSUB foo.* 9\r\nPUB foo.* 2\r\nhi\r\nPING\r\n")
        .await;
    v.expect(
        b"+OK\r\n+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nMSG foo.* 9 2\r\nhi\r\nPONG\r\n",
    )
    .await;
    sub.expect(b"MSG foo.* 1 2\r\nhi\r\n").await;
    sub.ping_pong().await;
}

#[tokio::test]
async fn not_pedantic_publish_subject_is_not_checked() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\nPUB foo..bar 1\r\nx\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo.* 1 2\r\nhi\r\nPONG\r\n").await;
}

#[tokio::test]
async fn empty_token_publish_matches_nothing() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo.> 1\r\nSUB > 2\r\nSUB foo.*.bar 3\r\nPUB foo..bar 1\r\nx\r\nPUB .foo 1\r\nx\r\nPUB foo. 1\r\nx\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
}
