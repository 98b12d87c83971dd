//! Keep-alive: 0 means none (never timed out); a client silent for 1.5× its
//! keep-alive is disconnected (MQTT 5: DISCONNECT 0x8D); pings keep it open; the
//! configured maximum (`[mqtt] max_keep_alive`, mosquitto's `max_keepalive`) is
//! announced as Server Keep Alive and enforced, and refuses a 3.1.1 client
//! asking for more, as mosquitto does.

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

/// MQTT-3.2.2-21: the Server Keep Alive announced is the one the server uses.
/// A client that asked for none (0) gets `max_keep_alive` = 1 s and is then
/// held to it: silent, it is disconnected with 0x8D.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_mqtt_3_2_2_21_is_the_one_enforced() {
    let b = mqtt_broker_with(|c| c.mqtt.max_keep_alive = 1).await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska-enforced", true, 0, &[])).await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body[1], 0, "accepted: {ack:?}");
    assert!(
        ack.body.windows(3).any(|w| w == [0x13, 0, 1]),
        "Server Keep Alive 1 in {ack:?}"
    );
    let seen = raw.until_closed_within(LONG_GUARD).await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x8D], "{seen:?}");
}

/// MQTT-3.2.2-22: without a Server Keep Alive the client's own stands; with a
/// maximum configured, one within it is taken as it is (no property) and pings
/// within it keep the connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_mqtt_3_2_2_22_absent_within_the_maximum() {
    let b = mqtt_broker_with(|c| c.mqtt.max_keep_alive = 60).await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska-within", true, 60, &[])).await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body[1], 0, "accepted: {ack:?}");
    assert!(!ack.body.contains(&0x13), "no Server Keep Alive: {ack:?}");
    raw.send(&PINGREQ).await;
    assert_eq!(raw.expect(13).await.body.len(), 0);
}

/// MQTT 3.1.1 has no Server Keep Alive: with `max_keep_alive` set, a 3.1.1
/// client asking for more, or for none, is refused with return code 0x02
/// (identifier rejected) and closed, as mosquitto does; one within it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_keep_alive_above_the_maximum_is_refused_as_mosquitto_does() {
    let b = mqtt_broker_with(|c| c.mqtt.max_keep_alive = 30).await;
    for (id, ka) in [("ka-v4-over", 31u16), ("ka-v4-none", 0)] {
        let mut raw = Raw::open(&b).await;
        raw.send(&connect_v4(id, true, ka)).await;
        let seen = raw.until_closed().await;
        assert_eq!(
            seen.iter()
                .map(|p| (p.first, p.body.clone()))
                .collect::<Vec<_>>(),
            vec![(0x20, vec![0x00, 0x02])],
            "keep alive {ka}: CONNACK 0x02, then a close"
        );
    }
    let mut raw = Raw::connected(&b, &connect_v4("ka-v4-within", true, 30)).await;
    raw.send(&PINGREQ).await;
    assert_eq!(raw.expect(13).await.body.len(), 0);
    // The refusals took no session: the same client id connects within the limit.
    let mut raw = Raw::connected(&b, &connect_v4("ka-v4-over", true, 10)).await;
    raw.send(&PINGREQ).await;
    assert_eq!(raw.expect(13).await.body.len(), 0);
}

/// MQTT-3.2.2-21 with the default `max_keep_alive`, mosquitto's 65535: an MQTT 5
/// client asking for no keep-alive (0) is told Server Keep Alive 65535, as
/// mosquitto 2.0 tells it; one asking for a keep-alive gets no property
/// (MQTT-3.2.2-22); an MQTT 3.1.1 client asking for none still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_2_2_21_default_maximum_is_announced_to_a_client_asking_for_none() {
    let b = mqtt_broker().await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska-default-0", true, 0, &[])).await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body[1], 0, "accepted: {ack:?}");
    assert!(
        ack.body.windows(3).any(|w| w == [0x13, 0xFF, 0xFF]),
        "Server Keep Alive 65535 in {ack:?}"
    );
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("ska-default-60", true, 60, &[])).await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body[1], 0, "accepted: {ack:?}");
    assert!(!ack.body.contains(&0x13), "no Server Keep Alive: {ack:?}");
    let mut raw = Raw::connected(&b, &connect_v4("ska-default-v4", true, 0)).await;
    raw.send(&PINGREQ).await;
    assert_eq!(raw.expect(13).await.body.len(), 0);
}
