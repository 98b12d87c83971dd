//! Sessions: clean session / clean start, persistent sessions with offline QoS 1
//! queueing and DUP redelivery, the session-present flag, MQTT 5 Session Expiry
//! (on CONNECT and changed on DISCONNECT), and zero-length client ids.

use crate::support::{
    Raw, V4, V5, connect_v4, connect_v5, packet, subscribe_raw, text, v4_options, v5_options,
};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_keeps_nothing() {
    let b = mqtt_broker().await;
    let (mut c, ack) = V4::connect(v4_options(&b, "clean")).await;
    assert!(!ack.session_present);
    c.subscribe("clean/t", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = V4::new(&b, "clean-pub").await;
    p.publish("clean/t", QoS::AtLeastOnce, false, "missed")
        .await;
    let (mut c, ack) = V4::connect(v4_options(&b, "clean")).await;
    assert!(!ack.session_present);
    // No subscription survived: the sentinel is only seen after subscribing again.
    c.subscribe("clean/t", QoS::AtLeastOnce).await;
    p.publish("clean/t", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = c.recv_until(b"sentinel").await;
    assert_eq!(got.len(), 1, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_queues_qos1_while_offline() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "persist");
    o.set_clean_session(false);
    let (mut c, ack) = V4::connect(o.clone()).await;
    assert!(!ack.session_present, "new session");
    c.subscribe("persist/#", QoS::AtLeastOnce).await;
    c.disconnect().await;

    let mut p = V4::new(&b, "persist-pub").await;
    // QoS 0 publishes are not queued for an offline session. (Sent first: the PUBACKs
    // of the QoS 1 publishes after it on the same connection prove the broker has
    // handled it before the session comes back.)
    p.publish("persist/a", QoS::AtMostOnce, false, "qos0").await;
    for i in 0..3 {
        p.publish("persist/a", QoS::AtLeastOnce, false, format!("q{i}"))
            .await;
    }

    let (mut c, ack) = V4::connect(o.clone()).await;
    assert!(ack.session_present, "session resumed");
    let got = c.recv_n(3).await;
    let payloads: Vec<String> = got.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(payloads, vec!["q0", "q1", "q2"]);
    assert!(got.iter().all(|m| m.qos == QoS::AtLeastOnce), "{got:?}");
    // Never sent before, so not a redelivery: DUP is 0 (MQTT-3.3.1-1).
    assert!(
        got.iter().all(|m| !m.dup),
        "DUP on a first delivery: {got:?}"
    );
    // The subscription is live again without a new SUBSCRIBE.
    p.publish("persist/a", QoS::AtLeastOnce, false, "live")
        .await;
    let more = c.recv_until(b"live").await;
    let payloads: Vec<String> = more.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(
        payloads,
        vec!["live"],
        "qos0 was queued or duplicates arrived"
    );
    c.disconnect().await;

    // Clean session on the same id discards it.
    o.set_clean_session(true);
    let (_c, ack) = V4::connect(o).await;
    assert!(!ack.session_present);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_is_redelivered_with_dup_after_reconnect() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "dup");
    o.set_clean_session(false);
    o.set_manual_acks(true);
    let (mut c, _) = V4::connect(o.clone()).await;
    c.subscribe("dup/t", QoS::AtLeastOnce).await;
    let mut p = V4::new(&b, "dup-pub").await;
    p.publish("dup/t", QoS::AtLeastOnce, false, "unacked").await;
    let first = c.recv().await;
    assert_eq!((&first.payload[..], first.dup), (&b"unacked"[..], false));
    // Leave without acknowledging it.
    c.disconnect().await;

    o.set_manual_acks(false);
    let (mut c, ack) = V4::connect(o).await;
    assert!(ack.session_present);
    let again = c.recv().await;
    assert_eq!(&again.payload[..], b"unacked");
    assert!(again.dup, "redelivery carries DUP: {again:?}");
    assert_eq!(again.pkid, first.pkid, "resent with its original packet id");
    assert_eq!(again.qos, QoS::AtLeastOnce);
    // Acked now: not delivered a third time.
    c.disconnect().await;
    let mut o = v4_options(&b, "dup");
    o.set_clean_session(false);
    let (mut c, _) = V4::connect(o).await;
    p.publish("dup/t", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = c.recv_until(b"sentinel").await;
    assert_eq!(got.len(), 1, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expiry_keeps_then_ends_the_session() {
    let b = mqtt_broker().await;
    // Long expiry: resumed with its queued messages.
    let mut o = v5_options(&b, "exp-long");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut c, ack) = V5::connect(o.clone()).await;
    assert!(!ack.session_present);
    c.subscribe("exp/#", QoS5::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = V5::new(&b, "exp-pub").await;
    p.publish("exp/a", QoS5::AtLeastOnce, false, "kept").await;
    let (mut c, ack) = V5::connect(o).await;
    assert!(ack.session_present);
    assert_eq!(&c.recv().await.payload[..], b"kept");
    c.disconnect().await;

    // Expiry 0 (the default): the session ends with the connection.
    let mut o = v5_options(&b, "exp-zero");
    o.set_clean_start(false);
    let (mut c, _) = V5::connect(o.clone()).await;
    c.subscribe("exp/#", QoS5::AtLeastOnce).await;
    c.disconnect().await;
    let (_c, ack) = V5::connect(o).await;
    assert!(!ack.session_present, "expiry 0 keeps no session");

    // Expiry 1 s: gone once it has run out.
    let mut o = v5_options(&b, "exp-short");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(1));
    let (mut c, _) = V5::connect(o.clone()).await;
    c.subscribe("exp/#", QoS5::AtLeastOnce).await;
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (_c, ack) = V5::connect(o).await;
    assert!(!ack.session_present, "the session expired");
}

/// MQTT 5: a DISCONNECT may change the expiry; setting 0 ends the session now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expiry_updated_on_disconnect() {
    let b = mqtt_broker().await;
    let expiry_300 = [0x11, 0, 0, 0x01, 0x2c];
    let mut raw = Raw::connected(&b, &connect_v5("exp-upd", false, 60, &expiry_300)).await;
    raw.send(&subscribe_raw(1, "upd/#", 1, Some(&[]))).await;
    raw.expect(9).await;
    // DISCONNECT, reason 0, Session Expiry Interval 0.
    raw.send(&packet(0xE0, &[0x00, 0x05, 0x11, 0, 0, 0, 0]))
        .await;
    raw.until_closed().await;

    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("exp-upd", false, 60, &expiry_300))
        .await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body[1], 0);
    assert_eq!(ack.body[0] & 1, 0, "session ended by DISCONNECT expiry 0");

    // And the reverse is a protocol error: CONNECT said 0, DISCONNECT says more.
    let mut raw = Raw::connected(&b, &connect_v5("exp-upd0", true, 60, &[])).await;
    raw.send(&packet(0xE0, &[0x00, 0x05, 0x11, 0, 0, 0, 10]))
        .await;
    let seen = raw.until_closed().await;
    let reason = seen
        .iter()
        .find(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason());
    assert_eq!(reason, Some(0x82), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_length_client_id() {
    let b = mqtt_broker().await;
    // 3.1.1, clean session: accepted.
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4("", true, 60)).await;
    assert_eq!(raw.expect(2).await.body, vec![0, 0]);
    // 3.1.1, persistent: identifier rejected (0x02).
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4("", false, 60)).await;
    let ack = raw.read().await.expect("CONNACK");
    assert_eq!((ack.kind(), ack.body.clone()), (2, vec![0, 2]));
    assert!(raw.read().await.is_none(), "closed after refusal");
    // 5: an id is assigned and returned (Assigned Client Identifier, 0x12).
    let (_c, ack) = V5::connect(v5_options(&b, "")).await;
    let assigned = ack
        .properties
        .and_then(|p| p.assigned_client_identifier)
        .expect("assigned client id");
    assert!(!assigned.is_empty());
}

/// A session expiry above the configured maximum is cut down, and the CONNACK
/// says so (Session Expiry Interval property).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_is_capped_by_the_broker_maximum() {
    let b = junction_conformance::mqtt_broker_with(|c| c.mqtt.max_session_expiry = 10).await;
    let mut o = v5_options(&b, "exp-cap");
    o.set_session_expiry_interval(Some(3600));
    let (_c, ack) = V5::connect(o).await;
    assert_eq!(
        ack.properties.and_then(|p| p.session_expiry_interval),
        Some(10)
    );
}

/// A backlog larger than one storage fetch is delivered whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_offline_backlog_is_delivered_in_order() {
    const N: usize = 600;
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "backlog");
    o.set_clean_session(false);
    let (mut c, _) = V4::connect(o.clone()).await;
    c.subscribe("backlog/#", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = V4::new(&b, "backlog-pub").await;
    for i in 0..N {
        p.client
            .publish("backlog/t", QoS::AtLeastOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    // The last one acknowledged means all were (PUBACKs come in order).
    p.publish("backlog/t", QoS::AtLeastOnce, false, "last")
        .await;
    let (mut c, ack) = V4::connect(o).await;
    assert!(ack.session_present);
    let got: Vec<String> = crate::support::within_for(
        crate::support::LONG_GUARD,
        "the backlog",
        c.recv_until(b"last"),
    )
    .await
    .iter()
    .map(|m| text(&m.payload))
    .collect();
    let want: Vec<String> = (0..N)
        .map(|i| format!("m{i}"))
        .chain(["last".to_string()])
        .collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}
