//! Authentication: user/password and token CONNECTs, violations and the auth
//! timeout.

use super::support::Wire;
use junction::Config;
use junction_conformance::{broker, broker_with};
use std::time::Duration;

fn user_pass(cfg: &mut Config) {
    cfg.auth.user = Some("alice".into());
    cfg.auth.password = Some("s3cret".into());
}

fn token(cfg: &mut Config) {
    cfg.auth.token = Some("t0ken".into());
}

const ALICE: &str = r#"{"verbose":false,"pedantic":false,"user":"alice","pass":"s3cret"}"#;
const TOKEN: &str = r#"{"verbose":false,"pedantic":false,"auth_token":"t0ken"}"#;

/// Sends `input` on a fresh connection and expects `-ERR 'Authorization
/// Violation'` and a close.
async fn violation(addr: std::net::SocketAddr, input: &[u8]) {
    let mut w = Wire::open(addr).await;
    w.send(input).await;
    w.expect(b"-ERR 'Authorization Violation'\r\n").await;
    w.expect_closed().await;
}

#[tokio::test]
async fn info_announces_auth_required() {
    let b = broker_with(user_pass).await;
    let w = Wire::open(b.nats_addr()).await;
    assert_eq!(w.info["auth_required"], true);
    // user/pass and token do not use a nonce.
    assert!(w.info.get("nonce").is_none(), "{}", w.info);
    let b = broker_with(token).await;
    let w = Wire::open(b.nats_addr()).await;
    assert_eq!(w.info["auth_required"], true);
    let b = broker().await;
    let w = Wire::open(b.nats_addr()).await;
    assert!(w.info.get("auth_required").is_none(), "{}", w.info);
}

#[tokio::test]
async fn user_password_connect() {
    let b = broker_with(user_pass).await;
    let mut w = Wire::client_with(b.nats_addr(), ALICE).await;
    w.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n").await;
    w.expect(b"MSG foo 1 2\r\nhi\r\nPONG\r\n").await;
    // Verbose: +OK for the accepted CONNECT.
    let mut v = Wire::open(b.nats_addr()).await;
    v.send(b"CONNECT {\"user\":\"alice\",\"pass\":\"s3cret\"}\r\nPING\r\n")
        .await;
    v.expect(b"+OK\r\nPONG\r\n").await;
}

#[tokio::test]
async fn token_connect() {
    let b = broker_with(token).await;
    let mut w = Wire::client_with(b.nats_addr(), TOKEN).await;
    w.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nPING\r\n").await;
    w.expect(b"MSG foo 1 2\r\nhi\r\nPONG\r\n").await;
}

#[tokio::test]
async fn wrong_or_missing_credentials() {
    let b = broker_with(user_pass).await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander_with(addr, ALICE).await;
    for json in [
        r#"{"verbose":false,"user":"alice","pass":"wrong"}"#,
        r#"{"verbose":false,"user":"bob","pass":"s3cret"}"#,
        r#"{"verbose":false,"user":"alice"}"#,
        r#"{"verbose":false,"auth_token":"s3cret"}"#,
        r#"{"verbose":false}"#,
        r#"{}"#,
    ] {
        violation(addr, format!("CONNECT {json}\r\nPING\r\n").as_bytes()).await;
    }
    by.assert_healthy().await;

    let b = broker_with(token).await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander_with(addr, TOKEN).await;
    for json in [
        r#"{"verbose":false,"auth_token":"nope"}"#,
        r#"{"verbose":false,"user":"alice","pass":"t0ken"}"#,
        r#"{"verbose":false}"#,
    ] {
        violation(addr, format!("CONNECT {json}\r\n").as_bytes()).await;
    }
    by.assert_healthy().await;
}

#[tokio::test]
async fn op_before_connect_is_an_authorization_violation() {
    let b = broker_with(user_pass).await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander_with(addr, ALICE).await;
    for input in [
        &b"PING\r\n"[..],
        b"PONG\r\n",
        b"PUB foo 2\r\nhi\r\n",
        b"SUB foo 1\r\n",
        b"UNSUB 1\r\n",
        b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\n",
        b"INFO {}\r\n",
        b"+OK\r\n",
        // The check is on the first byte of the op, before it is parsed.
        b"FOO\r\n",
        b"MSG foo 1 0\r\n\r\n",
        b"PUB foo\r\n",
    ] {
        violation(addr, input).await;
    }
    // Even before the op is complete.
    let mut w = Wire::open(addr).await;
    w.send(b"PI").await;
    w.expect(b"-ERR 'Authorization Violation'\r\n").await;
    w.expect_closed().await;
    // After an accepted CONNECT in the same write, other ops are fine.
    let mut w = Wire::open(addr).await;
    w.send(format!("CONNECT {ALICE}\r\nSUB foo 1\r\nPUB foo 1\r\nx\r\nPING\r\n").as_bytes())
        .await;
    w.expect(b"MSG foo 1 1\r\nx\r\nPONG\r\n").await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn account_in_connect_is_refused() {
    let b = broker().await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander(addr).await;
    violation(addr, b"CONNECT {\"verbose\":false,\"account\":\"A\"}\r\n").await;
    violation(
        addr,
        b"CONNECT {\"verbose\":false,\"new_account\":true}\r\n",
    )
    .await;
    by.assert_healthy().await;
}

#[tokio::test]
async fn credentials_are_ignored_without_auth() {
    let b = broker().await;
    Wire::client_with(
        b.nats_addr(),
        r#"{"verbose":false,"user":"x","pass":"y","auth_token":"z"}"#,
    )
    .await
    .ping_pong()
    .await;
}

#[tokio::test]
async fn authentication_timeout() {
    let b = broker_with(|cfg| {
        user_pass(cfg);
        cfg.limits.auth_timeout = Duration::from_millis(200);
    })
    .await;
    let addr = b.nats_addr();
    let mut by = Wire::bystander_with(addr, ALICE).await;
    let mut w = Wire::open(addr).await;
    // Say nothing and wait.
    w.expect(b"-ERR 'Authentication Timeout'\r\n").await;
    w.expect_closed().await;
    // A partial op does not count as CONNECT either.
    let mut p = Wire::open(addr).await;
    p.send(b"CONN").await;
    p.expect(b"-ERR 'Authentication Timeout'\r\n").await;
    p.expect_closed().await;
    by.assert_healthy().await;
}
