//! Keep-alive: 0 means none (never timed out); a client silent for 1.5× its
//! keep-alive is disconnected (MQTT 5: DISCONNECT 0x8D); pings keep it open; the
//! configured maximum is announced as Server Keep Alive.

use crate::support::{LONG_GUARD, PINGREQ, Raw, connect_v4, connect_v5};
use junction_conformance::{mqtt_broker, mqtt_broker_with};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_zero_is_accepted_and_never_times_out() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v4("ka0", true, 0)).await;
    // Silent for longer than any short keep-alive would allow.
    assert!(raw.drain_for(Duration::from_millis(2500)).await.is_empty());
    raw.send(&PINGREQ).await;
    let resp = raw.read().await.expect("PINGRESP, not a close");
    assert_eq!((resp.first, resp.body.len()), (0xD0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_v4_client_is_closed() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v4("ka1", true, 1)).await;
    let seen = raw.until_closed_within(LONG_GUARD).await;
    assert!(seen.is_empty(), "v3.1.1 is just closed: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_v5_client_gets_disconnect_0x8d() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("ka5", true, 1, &[])).await;
    let seen = raw.until_closed_within(LONG_GUARD).await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x8D], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_the_connection_open() {
    let b = mqtt_broker().await;
    // Keep-alive 2 s (closed after 3 s of silence); a ping every 500 ms.
    let mut raw = Raw::connected(&b, &connect_v4("ka-ping", true, 2)).await;
    for _ in 0..8 {
        raw.send(&PINGREQ).await;
        let resp = raw.read().await.expect("PINGRESP, not a close");
        assert_eq!(resp.first, 0xD0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keep_alive_is_announced_as_server_keep_alive() {
    let b = mqtt_broker_with(|c| c.mqtt.max_keep_alive = 5).await;
    // Keep-alive 0 asks for none: the broker imposes its maximum, Server Keep
    // Alive (0x13) = 5. (No other CONNACK property of ours holds byte 0x13.)
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska0", true, 0, &[])).await;
    let ack = raw.expect(2).await;
    assert!(
        ack.body.windows(3).any(|w| w == [0x13, 0, 5]),
        "CONNACK {ack:?}"
    );
    // Within the maximum: no Server Keep Alive.
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska3", true, 3, &[])).await;
    let ack = raw.expect(2).await;
    assert!(!ack.body.contains(&0x13), "CONNACK {ack:?}");
    // Above it: cut down to 5.
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska60", true, 60, &[])).await;
    let ack = raw.expect(2).await;
    assert!(
        ack.body.windows(3).any(|w| w == [0x13, 0, 5]),
        "CONNACK {ack:?}"
    );
}
