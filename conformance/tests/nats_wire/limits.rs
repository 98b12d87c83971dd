//! Configured limits: payload size, control line length, subscriptions and
//! connections.

use super::support::{QUIET_HEADERS, Wire};
use junction_conformance::{broker, broker_with};

#[tokio::test]
async fn max_payload_violation_closes() {
    let b = broker_with(|cfg| cfg.limits.max_payload = 16).await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    let mut w = Wire::open(addr).await;
    assert_eq!(w.info["max_payload"], 16);
    w.send(b"CONNECT {\"verbose\":false}\r\nSUB foo 1\r\n")
        .await;
    // Exactly max_payload is allowed.
    w.send(b"PUB foo 16\r\n0123456789abcdef\r\nPING\r\n").await;
    w.expect(b"MSG foo 1 16\r\n0123456789abcdef\r\nPONG\r\n")
        .await;
    // One more is refused as soon as the control line is read, before any payload.
    w.send(b"PUB foo 17\r\n").await;
    w.expect(b"-ERR 'Maximum Payload Violation'\r\n").await;
    w.expect_closed().await;
    // HPUB's total size counts.
    let mut h = Wire::client_with(addr, QUIET_HEADERS).await;
    h.send(b"HPUB foo 12 17\r\n").await;
    h.expect(b"-ERR 'Maximum Payload Violation'\r\n").await;
    h.expect_closed().await;
    // Before CONNECT too.
    let mut p = Wire::open(addr).await;
    p.send(b"PUB foo 1000000\r\n").await;
    p.expect(b"-ERR 'Maximum Payload Violation'\r\n").await;
    p.expect_closed().await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn max_control_line_on_a_complete_line() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    let mut w = Wire::client(addr).await;
    // Arguments of exactly 4096 bytes are fine: a 4094-byte subject plus " 1".
    let subject = "a".repeat(4094);
    w.send(format!("SUB {subject} 1\r\nPUB {subject} 1\r\nx\r\nPING\r\n").as_bytes())
        .await;
    w.expect(format!("MSG {subject} 1 1\r\nx\r\nPONG\r\n").as_bytes())
        .await;
    // 4097 bytes are not.
    let subject = "a".repeat(4095);
    w.send(format!("SUB {subject} 1\r\n").as_bytes()).await;
    w.expect(b"-ERR 'maximum control line exceeded'\r\n").await;
    w.expect_closed().await;
    // Any op's arguments count, CONNECT's JSON included.
    let mut c = Wire::open(addr).await;
    let name = "n".repeat(5000);
    c.send(format!("CONNECT {{\"verbose\":false,\"name\":\"{name}\"}}\r\n").as_bytes())
        .await;
    c.expect(b"-ERR 'maximum control line exceeded'\r\n").await;
    c.expect_closed().await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn max_control_line_without_a_newline() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    let mut w = Wire::client(addr).await;
    // No newline ever comes: the server must not wait for one.
    w.send(format!("PUB {}", "a".repeat(5000)).as_bytes()).await;
    w.expect(b"-ERR 'maximum control line exceeded'\r\n").await;
    w.expect_closed().await;
    let mut s = Wire::open(addr).await;
    s.send(format!("SUB foo {}", "b".repeat(6000)).as_bytes())
        .await;
    s.expect(b"-ERR 'maximum control line exceeded'\r\n").await;
    s.expect_closed().await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn max_control_line_is_configurable() {
    let b = broker_with(|cfg| cfg.limits.max_control_line = 64).await;
    let addr = b.nats_addr();
    let mut w = Wire::client(addr).await;
    let ok = "s".repeat(62);
    w.send(format!("SUB {ok} 1\r\nPING\r\n").as_bytes()).await;
    w.expect(b"PONG\r\n").await;
    let bad = "s".repeat(63);
    w.send(format!("SUB {bad} 1\r\n").as_bytes()).await;
    w.expect(b"-ERR 'maximum control line exceeded'\r\n").await;
    w.expect_closed().await;
}

#[tokio::test]
async fn ping_trailing_bytes_are_ignored_up_to_the_control_line_limit() {
    let b = broker_with(|cfg| cfg.limits.max_control_line = 64).await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(format!("PING {}\r\n", "z".repeat(50)).as_bytes())
        .await;
    w.expect(b"PONG\r\n").await;
    // Junction bounds what it buffers: a longer tail is refused (nats-server would
    // skip it unbuffered; see docs/nats.md).
    w.send(format!("PING {}\r\n", "z".repeat(200)).as_bytes())
        .await;
    w.expect(b"-ERR 'maximum control line exceeded'\r\n").await;
    w.expect_closed().await;
}

#[tokio::test]
async fn max_subscriptions_exceeded_keeps_the_connection() {
    let b = broker_with(|cfg| cfg.limits.max_subscriptions = 1).await;
    let addr = b.nats_addr();
    let mut w = Wire::client(addr).await;
    w.send(b"SUB a 1\r\nSUB b 2\r\nPING\r\n").await;
    w.expect(b"-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")
        .await;
    // The second sub was not added; the first still works.
    w.send(b"PUB b 1\r\nx\r\nPUB a 1\r\ny\r\nPING\r\n").await;
    w.expect(b"MSG a 1 1\r\ny\r\nPONG\r\n").await;
    // After an UNSUB there is room again.
    w.send(b"UNSUB 1\r\nSUB b 2\r\nPUB b 1\r\nz\r\nPING\r\n")
        .await;
    w.expect(b"MSG b 2 1\r\nz\r\nPONG\r\n").await;
    // Verbose: no +OK for the refused sub.
    let mut v = Wire::open(addr).await;
    v.send(b"CONNECT {}\r\nSUB a 1\r\nSUB b 2\r\nPING\r\n")
        .await;
    v.expect(b"+OK\r\n+OK\r\n-ERR 'maximum subscriptions exceeded'\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn max_connections_exceeded_after_info() {
    let b = broker_with(|cfg| cfg.limits.max_connections = 1).await;
    let addr = b.nats_addr();
    let mut first = Wire::client(addr).await;
    first.send(b"SUB foo 1\r\nPING\r\n").await;
    first.expect(b"PONG\r\n").await;
    // The refused client still gets INFO first, then the -ERR.
    let mut refused = Wire::open_unchecked(addr).await;
    refused
        .expect(b"-ERR 'maximum connections exceeded'\r\n")
        .await;
    refused.expect_closed().await;
    // The connected client is unaffected.
    first.send(b"PUB foo 2\r\nok\r\nPING\r\n").await;
    first.expect(b"MSG foo 1 2\r\nok\r\nPONG\r\n").await;
}
