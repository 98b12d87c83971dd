//! Repeated failed logins with one MQTT client id ban that client id, from any
//! address, and operators see, lift and add bans over `/v1/bans`.
//!
//! With `ban_after_failures = 5`, rumqttc (MQTT 5 and 3.1.1 in turn) fails five
//! times as client id `dev-1`, each time from another loopback address
//! (127.0.0.2 to 127.0.0.6, through a relay bound to that source address), so
//! no address reaches the threshold. Then even the right password for `dev-1`
//! is answered CONNACK 0x8A (Banned) on MQTT 5 and 0x05 (not authorized) on
//! 3.1.1, while `dev-2` logs in. An operator (an `[auth]` user: there is no
//! `$SYS` tenant) lists the ban, a tenant's user gets 403, lifting it lets
//! `dev-1` in, and an address banned by hand refuses a NATS client from it
//! while its neighbour logs in. A client id that connects too often (`[mqtt]
//! flapping`) is banned the same way.

use crate::common::{get_as, http, post_as, tenant};
use crate::repeated_failed_logins_ban_the_address::login;
use crate::support::{V4, V5};
use junction::engine::User;
use junction_conformance::{TestBroker, mqtt_broker_with};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// A relay on 127.0.0.1 whose connections reach `server` from the source
/// address `from`, so a client that cannot choose its source address
/// (rumqttc) connects from `from`. Returns the relay's address.
async fn relay_from(server: SocketAddr, from: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = listener.local_addr().unwrap();
    let source: SocketAddr = format!("{from}:0").parse().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(source).expect("bind a loopback source address");
                let Ok(mut upstream) = socket.connect(server).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    relay
}

/// The answer to an MQTT CONNECT as `client_id` with `password` for user
/// `dev`, on MQTT 5 (`v5`) or 3.1.1, through `port` on 127.0.0.1 (the
/// broker's, or a relay's): `Success`,
/// or rumqttc's refusal (`ConnectionRefused(<return code>)`).
async fn mqtt_login(v5: bool, port: u16, client_id: &str, password: &str) -> String {
    let keep_alive = std::time::Duration::from_secs(30);
    if v5 {
        let mut o = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(keep_alive);
        o.set_credentials("dev", password);
        match V5::try_connect(o).await {
            Ok((_client, ack)) => format!("{:?}", ack.code),
            Err(e) => e,
        }
    } else {
        let mut o = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(keep_alive);
        o.set_credentials("dev", password);
        match V4::try_connect(o).await {
            Ok((_client, ack)) => format!("{:?}", ack.code),
            Err(e) => e,
        }
    }
}

/// `DELETE path` as `user`: status and JSON body.
async fn delete_as(b: &TestBroker, user: &str, password: &str, path: &str) -> (u16, Value) {
    let r = http()
        .delete(format!("{}{path}", b.http_url()))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("DELETE");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The bans listed to the operator, as `(kind, who, reason)`.
async fn bans(b: &TestBroker) -> Vec<(String, String, String)> {
    let (status, body) = get_as(b, "admin", "admin-pw", "/v1/bans").await;
    assert_eq!(status, 200, "{body}");
    body["bans"]
        .as_array()
        .expect("bans")
        .iter()
        .map(|ban| {
            let until = ban["until"].as_str().expect("until");
            assert!(
                until.len() >= 20 && until.ends_with('Z'),
                "until is RFC 3339: {until}"
            );
            let field = |k: &str| ban[k].as_str().expect(k).to_string();
            (field("kind"), field("who"), field("reason"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_is_banned_from_every_address_and_operators_lift_and_add_bans() {
    let b = mqtt_broker_with(|c| {
        c.auth.users = vec![User::new("admin", "admin-pw"), User::new("dev", "dev-pw")];
        c.tenants = vec![tenant("acme", &[("alice", "alice-pw")])];
        c.auth.ban_after_failures = 5;
    })
    .await;
    let mqtt = b.mqtt_addr();
    let direct = b.mqtt_port();

    // Five failures as dev-1, MQTT 5 and 3.1.1 in turn, each from another
    // address: each is answered as a bad password.
    for (i, from) in [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
    ]
    .into_iter()
    .enumerate()
    {
        let port = relay_from(mqtt, from).await.port();
        let answer = mqtt_login(i % 2 == 0, port, "dev-1", "wrong").await;
        assert_eq!(
            answer, "ConnectionRefused(BadUserNamePassword)",
            "failure {i} from {from}"
        );
    }
    let auth = &b.running.engine().options().auth;
    let refused_before = auth.refused_banned();

    // dev-1 is banned from any address, even with the right password; dev-2 is not.
    assert_eq!(
        mqtt_login(true, direct, "dev-1", "dev-pw").await,
        "ConnectionRefused(Banned)",
        "MQTT 5: CONNACK 0x8A"
    );
    assert_eq!(
        mqtt_login(false, direct, "dev-1", "dev-pw").await,
        "ConnectionRefused(NotAuthorized)",
        "MQTT 3.1.1: CONNACK 0x05"
    );
    let elsewhere = relay_from(mqtt, "127.0.0.7").await.port();
    assert_eq!(
        mqtt_login(true, elsewhere, "dev-1", "dev-pw").await,
        "ConnectionRefused(Banned)",
        "from an address that never failed"
    );
    assert_eq!(
        auth.refused_banned() - refused_before,
        3,
        "refused by the ban, before any password check"
    );
    assert_eq!(mqtt_login(true, direct, "dev-2", "dev-pw").await, "Success");
    assert_eq!(
        mqtt_login(false, direct, "dev-2", "dev-pw").await,
        "Success"
    );

    // The operators see the ban; a tenant's user may not see or lift it.
    let listed = bans(&b).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].0.as_str(), listed[0].1.as_str()),
        ("client_id", "dev-1")
    );
    assert!(listed[0].2.contains("5 failed logins"), "{listed:?}");
    let (status, body) = get_as(&b, "alice", "alice-pw", "/v1/bans").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, body) = delete_as(&b, "alice", "alice-pw", "/v1/bans/client_id/dev-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // Lifted, dev-1 logs in on both versions; a second lift finds nothing.
    let (status, _) = delete_as(&b, "admin", "admin-pw", "/v1/bans/client_id/dev-1").await;
    assert_eq!(status, 204);
    let (status, body) = delete_as(&b, "admin", "admin-pw", "/v1/bans/client_id/dev-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ban_not_found"))
    );
    assert!(bans(&b).await.is_empty());
    assert_eq!(mqtt_login(true, direct, "dev-1", "dev-pw").await, "Success");
    assert_eq!(
        mqtt_login(false, direct, "dev-1", "dev-pw").await,
        "Success"
    );

    // An address banned by hand: NATS from it is refused as a failed login
    // (nats-server's words), its neighbour logs in.
    let ban = json!({"kind": "address", "who": "127.0.0.3", "for": "10m"}).to_string();
    let (status, _) = post_as(&b, "alice", "alice-pw", "/v1/bans", &ban).await;
    assert_eq!(status, 403);
    let (status, made) = post_as(&b, "admin", "admin-pw", "/v1/bans", &ban).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(
        (made["kind"].as_str(), made["who"].as_str()),
        (Some("address"), Some("127.0.0.3"))
    );
    assert_eq!(
        bans(&b).await,
        vec![(
            "address".to_string(),
            "127.0.0.3".to_string(),
            "banned by an operator".to_string()
        )]
    );
    let server = b.nats_addr();
    assert_eq!(
        login(server, "127.0.0.3", "dev", "dev-pw").await,
        "-ERR 'Authorization Violation'\r\n"
    );
    assert_eq!(
        login(server, "127.0.0.4", "dev", "dev-pw").await,
        "PONG\r\n"
    );
    // MQTT from the banned address keeps today's answer for an address ban.
    let banned_address = relay_from(mqtt, "127.0.0.3").await.port();
    assert_eq!(
        mqtt_login(true, banned_address, "dev-3", "dev-pw").await,
        "ConnectionRefused(BadUserNamePassword)"
    );
    let bad = json!({"kind": "address", "who": "not-an-ip", "for": "10m"}).to_string();
    let (status, body) = post_as(&b, "admin", "admin-pw", "/v1/bans", &bad).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
}

/// Flapping detection (`[mqtt] flapping`, EMQX's): a client id that connects
/// `max_count` times within the window is banned, whatever its credentials;
/// the ban is listed with its reason, recorded as a `client_banned` event, and
/// lifted like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_that_connects_too_often_is_banned() {
    let b = mqtt_broker_with(|c| {
        c.auth.users = vec![User::new("admin", "admin-pw"), User::new("dev", "dev-pw")];
        c.mqtt.flapping.max_count = 5;
    })
    .await;
    let port = b.mqtt_port();
    for i in 1..5 {
        assert_eq!(
            mqtt_login(i % 2 == 0, port, "flappy", "dev-pw").await,
            "Success",
            "connect {i}"
        );
    }
    assert_eq!(
        mqtt_login(true, port, "flappy", "dev-pw").await,
        "ConnectionRefused(Banned)",
        "the fifth connect within the window: CONNACK 0x8A"
    );
    assert_eq!(
        mqtt_login(false, port, "flappy", "dev-pw").await,
        "ConnectionRefused(NotAuthorized)",
        "MQTT 3.1.1: 0x05"
    );
    assert_eq!(mqtt_login(true, port, "steady", "dev-pw").await, "Success");
    assert!(
        bans(&b).await.contains(&(
            "client_id".into(),
            "flappy".into(),
            "5 connects within 1m (flapping)".into()
        )),
        "{:?}",
        bans(&b).await
    );
    // Events are stored by a writer thread: wait for what was recorded.
    b.running
        .engine()
        .flush_events(std::time::Duration::from_secs(10));
    let (_, events) = get_as(&b, "admin", "admin-pw", "/v1/events").await;
    let banned: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "client_banned")
        .collect();
    assert_eq!(banned.len(), 1, "{events}");
    assert!(
        banned[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("flappy")
    );
    let (status, _) = delete_as(&b, "admin", "admin-pw", "/v1/bans/client_id/flappy").await;
    assert_eq!(status, 204);
    assert_eq!(mqtt_login(true, port, "flappy", "dev-pw").await, "Success");
}
