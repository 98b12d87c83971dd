//! A message published over NATS (or HTTP) whose subject has no MQTT topic form
//! (U+0000, invalid UTF-8, `+` or `#`: MQTT forbids them in a PUBLISH topic) is
//! never delivered to MQTT clients, live or from a persistent session's queue;
//! NATS subscribers still get it. The ingress may refuse some of these subjects
//! already; either way an MQTT client never sees them.

use crate::support::{V4, V5, text, within};
use futures::StreamExt;
use junction_conformance::mqtt_broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_mqtt_cannot_carry_are_not_delivered() {
    let b = mqtt_broker().await;
    let mut v4 = V4::new(&b, "all-v4").await;
    v4.subscribe("#", rumqttc::QoS::AtMostOnce).await;
    let mut v5 = V5::new(&b, "all-v5").await;
    v5.subscribe("#", rumqttc::v5::mqttbytes::QoS::AtMostOnce)
        .await;
    let nats = within("NATS connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut all = nats.subscribe("bad.>").await.unwrap();
    nats.flush().await.unwrap();

    // Raw NATS protocol: a client library would not send these subjects.
    let mut raw = within("NATS TCP", tokio::net::TcpStream::connect(b.nats_addr()))
        .await
        .unwrap();
    let mut info = [0u8; 4096];
    within("INFO", raw.read(&mut info)).await.unwrap();
    let mut out = b"CONNECT {\"verbose\":false}\r\n".to_vec();
    for subject in [
        &b"bad.nul\0x"[..],
        b"bad.utf8\xff\xfe",
        b"bad.plus+",
        b"bad.#",
        b"bad./00",
        b"bad.ok",
    ] {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(subject);
        out.extend_from_slice(b" 2\r\nhi\r\n");
    }
    out.extend_from_slice(b"PING\r\n");
    within("NATS write", raw.write_all(&out)).await.unwrap();
    let mut pong = Vec::new();
    within("PONG", async {
        while !pong.windows(4).any(|w| w == b"PONG") {
            let mut chunk = [0u8; 1024];
            let n = raw.read(&mut chunk).await.unwrap();
            assert!(n > 0, "NATS closed: {}", text(&pong));
            pong.extend_from_slice(&chunk[..n]);
        }
    })
    .await;

    // The NATS subscriber gets what the ingress let through, `bad.ok` last.
    let mut nats_got = Vec::new();
    while nats_got.last().map(String::as_str) != Some("bad.ok") {
        let m = within("NATS message", all.next()).await.unwrap();
        nats_got.push(m.subject.to_string());
    }
    // MQTT subscribers get only `bad/ok`.
    let got: Vec<String> = v4
        .recv_until(b"hi")
        .await
        .iter()
        .map(|m| m.topic.clone())
        .collect();
    assert_eq!(got, ["bad/ok"], "v3.1.1 subscriber");
    let got: Vec<String> = v5
        .recv_until(b"hi")
        .await
        .iter()
        .map(|m| text(&m.topic))
        .collect();
    assert_eq!(got, ["bad/ok"], "v5 subscriber");
}
