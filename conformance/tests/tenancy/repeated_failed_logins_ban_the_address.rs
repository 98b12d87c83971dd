//! Repeated failed logins from one address ban it for a while: 500 bad logins
//! from 127.0.0.1 are cut off after `ban_after_failures`, without a password
//! check each (no bcrypt for a banned address), while a good user from another
//! loopback address (127.0.0.2) still logs in at once. The ban covers every
//! protocol.

use crate::support::{V4, v4_options};
use junction::engine::User;
use junction_conformance::mqtt_broker_with;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One raw NATS login from `from`: the first line after INFO.
pub async fn login(server: SocketAddr, from: &str, user: &str, pass: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind a loopback source address");
    let stream = socket.connect(server).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO "), "{line}");
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{pass}\"}}\r\nPING\r\n"
    );
    reader
        .get_mut()
        .write_all(connect.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_logins_is_banned_and_others_still_get_in() {
    let hash = junction::engine::auth::hash_password("right", 4).unwrap();
    let b = mqtt_broker_with(|c| {
        c.auth.users = vec![User::new("alice", hash)];
        c.auth.ban_after_failures = 20;
    })
    .await;
    let server = b.nats_addr();
    for _ in 0..500 {
        let answer = login(server, "127.0.0.1", "alice", "wrong").await;
        assert_eq!(answer, "-ERR 'Authorization Violation'\r\n");
    }
    let auth = &b.running.engine().options().auth;
    assert!(
        auth.refused_banned() >= 480,
        "only {} of the 500 were refused by the ban",
        auth.refused_banned()
    );
    // Even the right password is refused from the banned address, on every
    // protocol...
    assert_eq!(
        login(server, "127.0.0.1", "alice", "right").await,
        "-ERR 'Authorization Violation'\r\n"
    );
    let mut o = v4_options(&b, "banned");
    o.set_credentials("alice", "right");
    assert!(
        V4::try_connect(o).await.is_err(),
        "MQTT from a banned address"
    );
    // ...while another address logs in.
    assert_eq!(
        login(server, "127.0.0.2", "alice", "right").await,
        "PONG\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_event_log_tells_bans_once_and_failures_aggregated() {
    let b = mqtt_broker_with(|c| {
        c.auth.users = vec![User::new("alice", "right")];
        c.auth.ban_after_failures = 3;
    })
    .await;
    let server = b.nats_addr();
    for _ in 0..6 {
        let answer = login(server, "127.0.0.1", "alice", "wrong").await;
        assert_eq!(answer, "-ERR 'Authorization Violation'\r\n");
    }
    use junction_api::Monitor;
    // Events are stored by a writer thread: wait for what was recorded.
    b.running
        .engine()
        .flush_events(std::time::Duration::from_secs(10));
    let events = b.running.engine().events(
        &junction_api::TenantId::default_tenant(),
        &junction_api::EventFilter {
            limit: 1000,
            ..Default::default()
        },
    );
    let of = |kind: &str| {
        events
            .iter()
            .filter(|e| e.kind.as_str() == kind)
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
    };
    let banned = of("client_banned");
    assert_eq!(banned.len(), 1, "the ban once: {banned:?}");
    assert!(
        banned[0].starts_with("address 127.0.0.1 banned for 5m: 3 failed logins within 1m"),
        "{banned:?}"
    );
    // At most one event per 10 s: the first failure is told at once, the
    // others are counted into the next one (not one event each).
    let failed = of("auth_failed");
    assert!(
        !failed.is_empty() && failed.len() < 6,
        "aggregated: {failed:?}"
    );
    assert_eq!(
        failed[failed.len() - 1],
        "1 failed login(s); the last: user 'alice' from 127.0.0.1",
        "the first, told at once (newest first): {failed:?}"
    );
    assert_eq!(of("server_started").len(), 1);
}
