//! Each listener's share of the file descriptors (`limits.max_nats_connections`,
//! `limits.max_mqtt_connections`): a NATS socket beyond its listener's cap gets
//! nats-server's `-ERR 'maximum connections exceeded'`, an MQTT one CONNACK 0x97
//! Quota exceeded (3.1.1: 0x03 server unavailable), the clients already in
//! are unaffected, and a client that leaves gives its place back.

use crate::raw::connect;
use crate::support::within;
use junction_conformance::mqtt_broker_with;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn nats_beyond_its_share_gets_max_connections_exceeded() {
    let b = mqtt_broker_with(|c| c.limits.max_nats_connections = 2).await;
    let first = within("NATS 1", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let second = within("NATS 2", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    // Both are connected before the third comes.
    within("flush 1", first.flush()).await.unwrap();
    within("flush 2", second.flush()).await.unwrap();

    let mut third = connect(b.nats_addr()).await;
    let mut got = Vec::new();
    within("INFO and -ERR", third.read_to_end(&mut got))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("INFO {"), "{text:?}");
    assert!(
        text.ends_with("-ERR 'maximum connections exceeded'\r\n"),
        "{text:?}"
    );

    // The two inside still work: one answers the other's request (the request is
    // retried until the subscription is in place on the server).
    let mut sub = first.subscribe("shares.n").await.unwrap();
    let responder = first.clone();
    tokio::spawn(async move {
        while let Some(m) = futures::StreamExt::next(&mut sub).await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let answer = within("a request answered across the two clients", async {
        loop {
            match second.request("shares.n", "ok".into()).await {
                Ok(m) => return m,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert_eq!(&answer.payload[..], b"ok");
}

/// A raw MQTT 3.1.1 CONNECT for client id `id`, clean session, keep-alive 30 s.
fn connect_v311(id: &str) -> Vec<u8> {
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x1e];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    packet
}

#[tokio::test(flavor = "multi_thread")]
async fn mqtt_beyond_its_share_gets_a_refusing_connack() {
    let b = mqtt_broker_with(|c| c.limits.max_mqtt_connections = 1).await;
    let addr = b.mqtt_addr();
    let mut inside = connect(addr).await;
    inside.write_all(&connect_v311("inside")).await.unwrap();
    let mut ack = [0u8; 4];
    within("CONNACK", inside.read_exact(&mut ack))
        .await
        .unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);

    // 3.1.1: return code 3, then the socket closes.
    let mut beyond = connect(addr).await;
    beyond.write_all(&connect_v311("beyond")).await.unwrap();
    let mut got = Vec::new();
    within("CONNACK and close", beyond.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, [0x20, 0x02, 0x00, 0x03]);

    // MQTT 5 (rumqttc): Quota exceeded.
    use rumqttc::v5::{
        AsyncClient, ConnectionError, MqttOptions, mqttbytes::v5::ConnectReturnCode,
    };
    let mut options = MqttOptions::new("beyond-v5", "127.0.0.1", addr.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (_client, mut events) = AsyncClient::new(options, 8);
    let refused = within("v5 CONNACK", async {
        loop {
            if let Err(e) = events.poll().await {
                return e;
            }
        }
    })
    .await;
    assert!(
        matches!(
            refused,
            ConnectionError::ConnectionRefused(ConnectReturnCode::QuotaExceeded)
        ),
        "{refused:?}"
    );

    // The client inside is unaffected: PINGREQ → PINGRESP.
    inside.write_all(&[0xc0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    within("PINGRESP", inside.read_exact(&mut pong))
        .await
        .unwrap();
    assert_eq!(pong, [0xd0, 0x00]);

    // Its place is given back when it leaves: a new client gets in. The
    // connection's task ends a moment after the DISCONNECT, so the first tries
    // may still be refused (bounded).
    inside.write_all(&[0xe0, 0x00]).await.unwrap();
    let mut rest = Vec::new();
    within("close after DISCONNECT", inside.read_to_end(&mut rest))
        .await
        .unwrap();
    let mut answers = Vec::new();
    for attempt in 0..50 {
        let mut again = connect(addr).await;
        again
            .write_all(&connect_v311(&format!("again{attempt}")))
            .await
            .unwrap();
        let mut ack = [0u8; 4];
        within("CONNACK", again.read_exact(&mut ack)).await.unwrap();
        answers.push(ack[3]);
        if ack[3] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answers.last(), Some(&0), "return codes: {answers:?}");
}
