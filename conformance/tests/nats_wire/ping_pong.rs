//! INFO, CONNECT, PING/PONG, verbose `+OK` and the parser's tolerance for case,
//! whitespace and line endings.

use super::support::Wire;
use junction_conformance::broker;

#[tokio::test]
async fn info_line_is_framed_with_space_before_crlf() {
    let b = broker().await;
    let w = Wire::open(b.nats_addr()).await;
    assert_eq!(w.info["port"], b.nats_addr().port());
    assert_eq!(w.info["max_payload"], 1024 * 1024);
    assert!(w.info.get("auth_required").is_none(), "{}", w.info);
    let other = Wire::open(b.nats_addr()).await;
    assert_ne!(w.info["client_id"], other.info["client_id"]);
    assert_eq!(w.info["server_id"], other.info["server_id"]);
}

#[tokio::test]
async fn connect_quiet_then_ping_gets_pong_next() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
    w.send(b"PING\r\nPING\r\n").await;
    w.expect(b"PONG\r\nPONG\r\n").await;
}

#[tokio::test]
async fn connect_empty_json_is_verbose() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {}\r\nPING\r\n").await;
    w.expect(b"+OK\r\nPONG\r\n").await;
    // Verbose acknowledges SUB, PUB and UNSUB, never PING. PUB's +OK comes before
    // the message it delivers to the publisher itself.
    w.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nUNSUB 1\r\nPING\r\n")
        .await;
    w.expect(b"+OK\r\n+OK\r\nMSG foo 1 2\r\nhi\r\n+OK\r\nPONG\r\n")
        .await;
    // UNSUB of an unknown sid is acknowledged too.
    w.send(b"UNSUB 99\r\nPING\r\n").await;
    w.expect(b"+OK\r\nPONG\r\n").await;
}

#[tokio::test]
async fn telnet_style_ops_before_connect_are_verbose() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"PING\r\n").await;
    w.expect(b"PONG\r\n").await;
    w.send(b"PUB foo 2\r\nhi\r\n").await;
    w.expect(b"+OK\r\n").await;
    w.send(b"SUB foo 1\r\n").await;
    w.expect(b"+OK\r\n").await;
    w.send(b"PUB foo 2\r\nhi\r\n").await;
    w.expect(b"+OK\r\nMSG foo 1 2\r\nhi\r\n").await;
    // Pedantic is on before CONNECT too.
    w.send(b"PUB foo.* 2\r\nhi\r\n").await;
    w.expect(b"-ERR 'Invalid Publish Subject'\r\n+OK\r\n").await;
    w.ping_pong().await;
}

#[tokio::test]
async fn ops_are_case_insensitive() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"cOnNeCt {\"verbose\":false}\r\nsub foo 1\r\nSuB bar 2\r\npub foo 2\r\nhi\r\nPuB bar 0\r\n\r\npInG\r\n")
        .await;
    w.expect(b"MSG foo 1 2\r\nhi\r\nMSG bar 2 0\r\n\r\nPONG\r\n")
        .await;
    w.send(b"uNsUb 1\r\npub foo 2\r\nhi\r\nPing\r\n").await;
    w.expect(b"PONG\r\n").await;
    // Clients may send PONG and +OK; both are ignored.
    w.send(b"pong\r\n+ok\r\nPONG\r\n+OK\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn connect_json_may_follow_without_a_space() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT{\"verbose\":false}\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn args_split_on_runs_of_spaces_and_tabs() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT \t {\"verbose\":false} \t\r\n").await;
    w.send(b"SUB \t foo  \t\t 1\r\n").await;
    w.send(b"SUB\tbar\t q \t2   \r\n").await;
    w.send(b"PUB\t\tfoo   \t reply \t 2\t \r\nhi\r\n").await;
    w.send(b"PUB  bar \t0  \r\n\r\n").await;
    w.send(b"PING\r\n").await;
    w.expect(b"MSG foo 1 reply 2\r\nhi\r\nMSG bar 2 0\r\n\r\nPONG\r\n")
        .await;
    w.send(b"UNSUB \t 1 \t \r\nPUB foo 2\r\nhi\r\nPING\r\n")
        .await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn bare_newline_line_endings() {
    let b = broker().await;
    let mut w = Wire::open(b.nats_addr()).await;
    w.send(b"CONNECT {\"verbose\":false}\nPING\n").await;
    w.expect(b"PONG\r\n").await;
    w.send(b"SUB foo 1\nPUB foo 2\nok\r\nUNSUB 1\nPUB foo 2\nok\r\nPING\n")
        .await;
    w.expect(b"MSG foo 1 2\r\nok\r\nPONG\r\n").await;
}

#[tokio::test]
async fn ping_ignores_the_rest_of_its_line() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"PING xyz\r\nPING\tanything at all \r\nPINGPONG\r\nPINGX\r\nping1\n")
        .await;
    w.expect(b"PONG\r\nPONG\r\nPONG\r\nPONG\r\nPONG\r\n").await;
    // The same for the PONG and +OK a client may send: ignored.
    w.send(b"PONGX\r\n+OKAY\r\n+ok then\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn ops_split_across_writes_byte_by_byte() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    for byte in b"SUB foo 1\r\nPUB foo reply 5\r\nhello\r\nPING\r\n" {
        w.send(&[*byte]).await;
    }
    w.expect(b"MSG foo 1 reply 5\r\nhello\r\nPONG\r\n").await;
}

#[tokio::test]
async fn many_ops_in_one_write() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    let mut batch = Vec::new();
    let mut want = Vec::new();
    batch.extend_from_slice(b"SUB foo 7\r\n");
    for i in 0..100 {
        let p = format!("{i:03}");
        batch.extend_from_slice(format!("PUB foo 3\r\n{p}\r\n").as_bytes());
        want.extend_from_slice(format!("MSG foo 7 3\r\n{p}\r\n").as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    want.extend_from_slice(b"PONG\r\n");
    w.send(&batch).await;
    w.expect(&want).await;
}

#[tokio::test]
async fn client_info_is_ignored() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"INFO {\"server_id\":\"x\"}\r\nPING\r\n").await;
    w.expect(b"PONG\r\n").await;
}

#[tokio::test]
async fn second_connect_is_accepted() {
    let b = broker().await;
    let mut w = Wire::client(b.nats_addr()).await;
    w.send(b"CONNECT {\"verbose\":true}\r\nPING\r\n").await;
    w.expect(b"+OK\r\nPONG\r\n").await;
}
