//! SUB, PUB, UNSUB and the exact MSG frames they produce.

use super::support::{QUIET, Wire};
use junction_conformance::broker;

#[tokio::test]
async fn msg_without_and_with_reply() {
    let b = broker().await;
    let mut sub = Wire::client(b.nats_addr()).await;
    sub.send(b"SUB foo 1\r\nPING\r\n").await;
    sub.expect(b"PONG\r\n").await;
    let mut publ = Wire::client(b.nats_addr()).await;
    publ.send(b"PUB foo 5\r\nhello\r\nPUB foo my.reply 5\r\nworld\r\nPUB foo 0\r\n\r\nPING\r\n")
        .await;
    publ.expect(b"PONG\r\n").await;
    sub.expect(b"MSG foo 1 5\r\nhello\r\nMSG foo 1 my.reply 5\r\nworld\r\nMSG foo 1 0\r\n\r\n")
        .await;
    sub.ping_pong().await;
}

#[tokio::test]
async fn payload_is_opaque_bytes() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo 1\r\n").await;
    // CRLF, a NUL and bytes that are not UTF-8 inside the payload are just data.
    w.send(b"PUB foo 8\r\na\r\nb\0\xff\xfe\n\r\nPING\r\n").await;
    w.expect(b"MSG foo 1 8\r\na\r\nb\0\xff\xfe\n\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn sid_is_echoed_as_sent() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo abc.DEF-1\r\nPUB foo 1\r\nx\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo abc.DEF-1 1\r\nx\r\nPONG\r\n").await;
}

#[tokio::test]
async fn wildcards() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut star = Wire::client(addr).await;
    let mut full = Wire::client(addr).await;
    let mut all = Wire::client(addr).await;
    let mut mid = Wire::client(addr).await;
    star.send(b"SUB foo.* 1\r\nPING\r\n").await;
    full.send(b"SUB foo.> 2\r\nPING\r\n").await;
    all.send(b"SUB > 3\r\nPING\r\n").await;
    mid.send(b"SUB *.bar.* 4\r\nPING\r\n").await;
    for w in [&mut star, &mut full, &mut all, &mut mid] {
        w.expect(b"PONG\r\n").await;
    }
    let mut publ = Wire::client(addr).await;
    publ.send(
        b"PUB foo 1\r\na\r\nPUB foo.bar 1\r\nb\r\nPUB foo.bar.baz 1\r\nc\r\nPUB x.bar.y 1\r\nd\r\nPING\r\n",
    )
    .await;
    publ.expect(b"PONG\r\n").await;
    star.expect(b"MSG foo.bar 1 1\r\nb\r\n").await;
    full.expect(b"MSG foo.bar 2 1\r\nb\r\nMSG foo.bar.baz 2 1\r\nc\r\n")
        .await;
    all.expect(b"MSG foo 3 1\r\na\r\nMSG foo.bar 3 1\r\nb\r\nMSG foo.bar.baz 3 1\r\nc\r\nMSG x.bar.y 3 1\r\nd\r\n")
        .await;
    mid.expect(b"MSG foo.bar.baz 4 1\r\nc\r\nMSG x.bar.y 4 1\r\nd\r\n")
        .await;
    for w in [&mut star, &mut full, &mut all, &mut mid] {
        w.ping_pong().await;
    }
}

#[tokio::test]
async fn partial_wildcard_tokens_are_literal() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo* 1\r\nSUB a>b 2\r\n").await;
    w.send(b"PUB foox 1\r\nx\r\nPUB foo* 1\r\ny\r\nPUB a>b 1\r\nz\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo* 1 1\r\ny\r\nMSG a>b 2 1\r\nz\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn queue_group_delivers_each_message_to_one_member() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut members = Vec::new();
    for _ in 0..3 {
        let mut m = Wire::client(addr).await;
        m.send(b"SUB work q 1\r\nPING\r\n").await;
        m.expect(b"PONG\r\n").await;
        members.push(m);
    }
    let mut plain = Wire::client(addr).await;
    plain.send(b"SUB work 9\r\nPING\r\n").await;
    plain.expect(b"PONG\r\n").await;

    let mut publ = Wire::client(addr).await;
    let mut batch = Vec::new();
    let mut want_plain = Vec::new();
    for i in 0..30 {
        batch.extend_from_slice(format!("PUB work 2\r\n{i:02}\r\n").as_bytes());
        want_plain.extend_from_slice(format!("MSG work 9 2\r\n{i:02}\r\n").as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    publ.send(&batch).await;
    publ.expect(b"PONG\r\n").await;

    // The plain subscriber sees every message.
    plain.expect(&want_plain).await;
    plain.ping_pong().await;
    // Each message reaches exactly one member, in one exact frame.
    let mut seen = Vec::new();
    for m in &mut members {
        m.send(b"PING\r\n").await;
        for frame in m.frames_until(b"PONG\r\n").await {
            assert_eq!(
                &frame[..13],
                b"MSG work 1 2\r",
                "{}",
                super::support::show(&frame)
            );
            assert_eq!(frame.len(), 18);
            seen.push(String::from_utf8(frame[14..16].to_vec()).unwrap());
        }
    }
    seen.sort();
    let want: Vec<String> = (0..30).map(|i| format!("{i:02}")).collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn queue_group_and_plain_sub_on_one_connection() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo q 1\r\nSUB foo q 2\r\nSUB foo 3\r\nPUB foo 2\r\nhi\r\nPING\r\n")
        .await;
    let mut frames = w.frames_until(b"PONG\r\n").await;
    frames.sort();
    let one_of = frames[0] == b"MSG foo 1 2\r\nhi\r\n" || frames[0] == b"MSG foo 2 2\r\nhi\r\n";
    assert!(one_of && frames.len() == 2, "{frames:?}");
    assert_eq!(frames[1], b"MSG foo 3 2\r\nhi\r\n");
}

#[tokio::test]
async fn unsub_stops_delivery() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo 1\r\nPUB foo 1\r\na\r\nUNSUB 1\r\nPUB foo 1\r\nb\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo 1 1\r\na\r\nPONG\r\n").await;
}

#[tokio::test]
async fn unsub_max_delivers_max_then_stops() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut sub = Wire::client(addr).await;
    sub.send(b"SUB foo 1\r\nUNSUB 1 3\r\nPING\r\n").await;
    sub.expect(b"PONG\r\n").await;
    let mut publ = Wire::client(addr).await;
    let mut batch = Vec::new();
    for i in 0..6 {
        batch.extend_from_slice(format!("PUB foo 1\r\n{i}\r\n").as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    publ.send(&batch).await;
    publ.expect(b"PONG\r\n").await;
    sub.expect(b"MSG foo 1 1\r\n0\r\nMSG foo 1 1\r\n1\r\nMSG foo 1 1\r\n2\r\n")
        .await;
    sub.ping_pong().await;
    // The sid is free again.
    sub.send(b"SUB bar 1\r\nPUB bar 1\r\nz\r\nPING\r\n").await;
    sub.expect(b"MSG bar 1 1\r\nz\r\nPONG\r\n").await;
}

#[tokio::test]
async fn unsub_max_counts_messages_already_delivered() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo 1\r\nPUB foo 1\r\na\r\nPUB foo 1\r\nb\r\n")
        .await;
    // Two delivered; a max of 3 leaves one more.
    w.send(b"UNSUB 1 3\r\nPUB foo 1\r\nc\r\nPUB foo 1\r\nd\r\nPING\r\n")
        .await;
    w.expect(b"MSG foo 1 1\r\na\r\nMSG foo 1 1\r\nb\r\nMSG foo 1 1\r\nc\r\nPONG\r\n")
        .await;
    // A max at or below what was delivered removes the sub at once.
    w.send(b"SUB bar 2\r\nPUB bar 1\r\na\r\nUNSUB 2 1\r\nPUB bar 1\r\nb\r\nPING\r\n")
        .await;
    w.expect(b"MSG bar 2 1\r\na\r\nPONG\r\n").await;
}

#[tokio::test]
async fn unsub_max_zero_or_unparsable_removes_at_once() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo 1\r\nUNSUB 1 0\r\nPUB foo 1\r\na\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
    // nats-server parses a bad max as -1: the sub is removed, no error, no close.
    w.send(b"SUB bar 2\r\nUNSUB 2 x\r\nPUB bar 1\r\na\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn unsub_unknown_sid_is_ignored() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"UNSUB nope\r\nUNSUB nope 5\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn duplicate_sid_keeps_the_original_sub() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {\"verbose\":true,\"pedantic\":false}\r\n")
        .await;
    w.expect(b"+OK\r\n").await;
    w.send(b"SUB foo 1\r\nSUB bar 1\r\nPING\r\n").await;
    w.expect(b"+OK\r\n+OK\r\nPONG\r\n").await;
    w.send(b"PUB bar 1\r\nb\r\nPUB foo 1\r\nf\r\nPING\r\n")
        .await;
    w.expect(b"+OK\r\n+OK\r\nMSG foo 1 1\r\nf\r\nPONG\r\n")
        .await;
}

#[tokio::test]
async fn echo_false_suppresses_own_messages() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut other = Wire::client(addr).await;
    other.send(b"SUB foo 1\r\nPING\r\n").await;
    other.expect(b"PONG\r\n").await;
    let mut w = Wire::client_with(addr, r#"{"verbose":false,"echo":false}"#).await;
    w.send(b"SUB foo 5\r\nPUB foo 2\r\nhi\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
    other.expect(b"MSG foo 1 2\r\nhi\r\n").await;
    // Its subscription still gets messages from others.
    other.send(b"PUB foo 3\r\nbye\r\nPING\r\n").await;
    other.expect(b"MSG foo 1 3\r\nbye\r\nPONG\r\n").await;
    w.expect(b"MSG foo 5 3\r\nbye\r\n").await;
    // With echo (the default) the publisher sees its own message.
    let mut e = Wire::client(addr).await;
    e.send(b"SUB foo 6\r\nPUB foo 2\r\nme\r\nPING\r\n").await;
    e.expect(b"MSG foo 6 2\r\nme\r\nPONG\r\n").await;
}

#[tokio::test]
async fn request_reply_round_trip() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut responder = Wire::client(addr).await;
    responder.send(b"SUB svc q 1\r\nPING\r\n").await;
    responder.expect(b"PONG\r\n").await;
    let mut requester = Wire::client(addr).await;
    requester
        .send(b"SUB _INBOX.abc.* 7\r\nPUB svc _INBOX.abc.1 3\r\nreq\r\n")
        .await;
    responder
        .expect(b"MSG svc 1 _INBOX.abc.1 3\r\nreq\r\n")
        .await;
    responder.send(b"PUB _INBOX.abc.1 3\r\nrep\r\n").await;
    requester.expect(b"MSG _INBOX.abc.1 7 3\r\nrep\r\n").await;
}

#[tokio::test]
async fn payload_size_with_leading_zeros() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"SUB foo 1\r\nPUB foo 002\r\nhi\r\nPING\r\n").await;
    let frames = w.frames_until(b"PONG\r\n").await;
    // nats-server echoes the size token as sent (`MSG foo 1 002`); the payload is
    // the same either way.
    assert_eq!(frames.len(), 1);
    assert!(
        frames[0] == b"MSG foo 1 002\r\nhi\r\n" || frames[0] == b"MSG foo 1 2\r\nhi\r\n",
        "{}",
        super::support::show(&frames[0])
    );
}

#[tokio::test]
async fn verbose_quiet_constant_is_quiet() {
    // Guard for the helpers: QUIET really turns +OK off.
    let b = broker().await;
    let mut w = Wire::client_with(b.nats_addr(), QUIET).await;
    w.send(b"SUB foo 1\r\nUNSUB 1\r\nPUB foo 1\r\nx\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
}
