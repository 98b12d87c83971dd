//! HPUB, HMSG, header stripping for clients without header support, and the
//! no-responders status message.

use super::support::{QUIET_HEADERS, Wire};
use junction_conformance::broker;

/// `NATS/1.0\r\nX-Key: v1\r\n\r\n`: 23 bytes.
const BLOCK: &[u8] = b"NATS/1.0\r\nX-Key: v1\r\n\r\n";

#[tokio::test]
async fn hpub_is_hmsg_for_header_clients_and_stripped_msg_for_others() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut with = Wire::client_with(addr, QUIET_HEADERS).await;
    let mut without = Wire::client(addr).await;
    for w in [&mut with, &mut without] {
        w.send(b"SUB foo 1\r\nPING\r\n").await;
        w.expect(b"PONG\r\n").await;
    }
    assert_eq!(BLOCK.len(), 23);
    let mut publ = Wire::client_with(addr, QUIET_HEADERS).await;
    let mut batch = Vec::new();
    batch.extend_from_slice(b"HPUB foo 23 28\r\n");
    batch.extend_from_slice(BLOCK);
    batch.extend_from_slice(b"hello\r\nHPUB foo rep.ly 23 28\r\n");
    batch.extend_from_slice(BLOCK);
    batch.extend_from_slice(b"hello\r\nPING\r\n");
    publ.send(&batch).await;
    publ.expect(b"PONG\r\n").await;

    let mut want = Vec::new();
    want.extend_from_slice(b"HMSG foo 1 23 28\r\n");
    want.extend_from_slice(BLOCK);
    want.extend_from_slice(b"hello\r\nHMSG foo 1 rep.ly 23 28\r\n");
    want.extend_from_slice(BLOCK);
    want.extend_from_slice(b"hello\r\n");
    with.expect(&want).await;
    with.ping_pong().await;

    without
        .expect(b"MSG foo 1 5\r\nhello\r\nMSG foo 1 rep.ly 5\r\nhello\r\n")
        .await;
    without.ping_pong().await;
}

#[tokio::test]
async fn hpub_header_only_message() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut with = Wire::client_with(addr, QUIET_HEADERS).await;
    let mut without = Wire::client(addr).await;
    for w in [&mut with, &mut without] {
        w.send(b"SUB foo 1\r\nPING\r\n").await;
        w.expect(b"PONG\r\n").await;
    }
    let mut publ = Wire::client_with(addr, QUIET_HEADERS).await;
    publ.send(b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\nPING\r\n")
        .await;
    publ.expect(b"PONG\r\n").await;
    with.expect(b"HMSG foo 1 12 12\r\nNATS/1.0\r\n\r\n\r\n")
        .await;
    without.expect(b"MSG foo 1 0\r\n\r\n").await;
}

#[tokio::test]
async fn hpub_with_header_size_zero_is_plain_msg() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut with = Wire::client_with(addr, QUIET_HEADERS).await;
    let mut without = Wire::client(addr).await;
    for w in [&mut with, &mut without] {
        w.send(b"SUB foo 1\r\nPING\r\n").await;
        w.expect(b"PONG\r\n").await;
    }
    let mut publ = Wire::client_with(addr, QUIET_HEADERS).await;
    publ.send(b"HPUB foo 0 5\r\nhello\r\nHPUB foo r 0 0\r\n\r\nPING\r\n")
        .await;
    publ.expect(b"PONG\r\n").await;
    with.expect(b"MSG foo 1 5\r\nhello\r\nMSG foo 1 r 0\r\n\r\n")
        .await;
    without
        .expect(b"MSG foo 1 5\r\nhello\r\nMSG foo 1 r 0\r\n\r\n")
        .await;
}

#[tokio::test]
async fn hpub_to_self_and_verbose_ok_first() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {\"headers\":true,\"pedantic\":false}\r\n")
        .await;
    w.expect(b"+OK\r\n").await;
    w.send(b"SUB foo 1\r\nHPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"+OK\r\n+OK\r\nHMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn hpub_without_headers_negotiated_closes_silently() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    // Before CONNECT.
    let mut w = Wire::open(addr).await;
    w.send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n").await;
    w.expect_closed().await;
    // After a CONNECT without headers.
    let mut w = Wire::client(addr).await;
    w.send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n").await;
    w.expect_closed().await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn hpub_bad_sizes_close_silently() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    for bad in [
        &b"HPUB foo 14 12\r\n"[..],
        b"HPUB foo 12\r\n",
        b"HPUB foo a b c d e\r\n",
        b"HPUB foo x 12\r\n",
        b"HPUB foo 12 y\r\n",
    ] {
        let mut w = Wire::client_with(addr, QUIET_HEADERS).await;
        w.send(bad).await;
        w.expect_closed().await;
    }
    by.assert_healthy().await;
}

const NO_RESPONDERS: &str =
    r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#;

const STATUS_503: &[u8] = b"NATS/1.0 503\r\n\r\n";

#[tokio::test]
async fn no_responders_status_exact_bytes() {
    let b = broker().await;
    let mut w = Wire::client_with(b.nats_addr(), NO_RESPONDERS).await;
    assert_eq!(STATUS_503.len(), 16);
    w.send(b"SUB _INBOX.> 1\r\nPUB foo _INBOX.abc 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"HMSG _INBOX.abc 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")
        .await;
    // A request sent with HPUB gets the same answer; an exact inbox sub matches too.
    w.send(b"UNSUB 1\r\nSUB _INBOX.xyz 2\r\nHPUB foo _INBOX.xyz 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"HMSG _INBOX.xyz 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn no_responders_verbose_ok_comes_first() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {\"headers\":true,\"no_responders\":true}\r\n")
        .await;
    w.expect(b"+OK\r\n").await;
    w.send(b"SUB _INBOX.> 1\r\nPUB foo _INBOX.a 0\r\n\r\nPING\r\n")
        .await;
    w.expect(b"+OK\r\n+OK\r\nHMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn no_responders_not_sent_when_someone_listens() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut responder = Wire::client(addr).await;
    responder.send(b"SUB svc 1\r\nPING\r\n").await;
    responder.expect(b"PONG\r\n").await;
    let mut w = Wire::client_with(addr, NO_RESPONDERS).await;
    w.send(b"SUB _INBOX.> 1\r\nPUB svc _INBOX.a 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
    responder.expect(b"MSG svc 1 _INBOX.a 2\r\nhi\r\n").await;
}

#[tokio::test]
async fn no_responders_needs_reply_option_and_own_plain_sub() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut w = Wire::client_with(addr, NO_RESPONDERS).await;
    // No reply subject.
    w.send(b"SUB _INBOX.> 1\r\nPUB foo 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
    // No own sub matching the reply.
    w.send(b"PUB foo other.inbox 2\r\nhi\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
    // Only a queue sub matches the reply.
    w.send(b"SUB q.inbox.> grp 2\r\nPUB foo q.inbox.1 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
    // The option is off: nothing.
    let mut plain = Wire::client_with(addr, QUIET_HEADERS).await;
    plain
        .send(b"SUB _INBOX.> 1\r\nPUB foo _INBOX.a 2\r\nhi\r\nPING\r\n")
        .await;
    plain.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn no_responders_skips_a_reply_sub_that_reached_its_max() {
    let b = broker().await;
    let mut w = Wire::client_with(b.nats_addr(), NO_RESPONDERS).await;
    w.send(b"SUB _INBOX.a 1\r\nUNSUB 1 1\r\nPUB _INBOX.a 1\r\nx\r\nPUB foo _INBOX.a 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"MSG _INBOX.a 1 1\r\nx\r\nPONG\r\n").await;
}

#[tokio::test]
async fn no_responders_counts_echo_suppressed_sub_as_nobody() {
    let b = broker().await;
    let mut w = Wire::client_with(
        b.nats_addr(),
        r#"{"verbose":false,"headers":true,"no_responders":true,"echo":false}"#,
    )
    .await;
    w.send(b"SUB svc 2\r\nSUB _INBOX.> 1\r\nPUB svc _INBOX.a 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"HMSG _INBOX.a 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn no_responders_requires_headers() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    let mut w = Wire::open(addr).await;
    w.send(b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n")
        .await;
    w.expect(b"-ERR 'no responders requires headers support'\r\n")
        .await;
    w.expect_closed().await;
    by.assert_healthy().await;
}
