//! QoS 2 exactly once, inbound: a PUBLISH resent with the same packet id before
//! PUBREL (DUP set, as a client does after losing the PUBREC) is answered with
//! PUBREC again and not delivered a second time, also across a reconnect of a
//! persistent session. Needs raw packets: a well-behaved client library never
//! resends on a live connection.

use crate::support::{Raw, V4, V5, connect_v4, connect_v5, publish_raw, pubrel};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;

const PUBREC: u8 = 5;
const PUBCOMP: u8 = 7;

async fn exchange_with_resend(raw: &mut Raw, pkid: u16, payload: &[u8], v5: bool) {
    let props: Option<&[u8]> = if v5 { Some(&[]) } else { None };
    raw.send(&publish_raw(b"eo/t", 2, pkid, false, false, payload, props))
        .await;
    let rec = raw.expect(PUBREC).await;
    assert_eq!(rec.pkid(), pkid);
    // The PUBREC was "lost": resend the PUBLISH, twice.
    for _ in 0..2 {
        raw.send(&publish_raw(b"eo/t", 2, pkid, true, false, payload, props))
            .await;
        let rec = raw.expect(PUBREC).await;
        assert_eq!(rec.pkid(), pkid);
        if v5 {
            assert_eq!(rec.ack_reason(), 0);
        }
    }
    raw.send(&pubrel(pkid)).await;
    let comp = raw.expect(PUBCOMP).await;
    assert_eq!(comp.pkid(), pkid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_resent_qos2_publish_is_delivered_once() {
    let b = mqtt_broker().await;
    let mut sub = V4::new(&b, "eo-sub").await;
    sub.subscribe("eo/#", QoS::ExactlyOnce).await;
    let mut raw = Raw::connected(&b, &connect_v4("eo-pub", true, 60)).await;
    exchange_with_resend(&mut raw, 7, b"once", false).await;
    // The packet id is free again: a new message with it is a new message.
    exchange_with_resend(&mut raw, 7, b"twice", false).await;
    raw.send(&publish_raw(b"eo/t", 1, 8, false, false, b"sentinel", None))
        .await;
    raw.expect(4).await;
    let got = sub.recv_until(b"sentinel").await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(payloads, vec!["once", "twice", "sentinel"]);
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_resent_qos2_publish_is_delivered_once() {
    let b = mqtt_broker().await;
    let mut sub = V5::new(&b, "eo5-sub").await;
    sub.subscribe("eo/#", rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
        .await;
    let mut raw = Raw::connected(&b, &connect_v5("eo5-pub", true, 60, &[])).await;
    exchange_with_resend(&mut raw, 300, b"once", true).await;
    raw.send(&publish_raw(
        b"eo/t",
        1,
        301,
        false,
        false,
        b"sentinel",
        Some(&[]),
    ))
    .await;
    raw.expect(4).await;
    let got = sub.recv_until(b"sentinel").await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(payloads, vec!["once", "sentinel"]);
}

/// The PUBREC state is part of a persistent session: after a reconnect the resent
/// PUBLISH is still recognised, and the PUBREL completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_state_survives_reconnect_of_persistent_session() {
    let b = mqtt_broker().await;
    let mut sub = V4::new(&b, "eo-p-sub").await;
    sub.subscribe("eo/#", QoS::ExactlyOnce).await;

    let mut raw = Raw::connected(&b, &connect_v4("eo-p-pub", false, 60)).await;
    raw.send(&publish_raw(b"eo/t", 2, 42, false, false, b"once", None))
        .await;
    assert_eq!(raw.expect(PUBREC).await.pkid(), 42);
    drop(raw); // connection lost before PUBREL

    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4("eo-p-pub", false, 60)).await;
    let ack = raw.expect(2).await;
    assert_eq!(ack.body, vec![1, 0], "session present, accepted");
    raw.send(&publish_raw(b"eo/t", 2, 42, true, false, b"once", None))
        .await;
    assert_eq!(raw.expect(PUBREC).await.pkid(), 42);
    raw.send(&pubrel(42)).await;
    assert_eq!(raw.expect(PUBCOMP).await.pkid(), 42);
    raw.send(&publish_raw(
        b"eo/t",
        1,
        43,
        false,
        false,
        b"sentinel",
        None,
    ))
    .await;
    raw.expect(4).await;

    let got = sub.recv_until(b"sentinel").await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(payloads, vec!["once", "sentinel"]);
}

/// Outbound QoS 2: the broker resends PUBREL (not the PUBLISH) when a subscriber
/// reconnects after PUBREC, and delivers the message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_pubrel_is_resent_after_reconnect() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v4("eo-out", false, 60)).await;
    raw.send(&crate::support::subscribe_raw(1, "eoo/#", 2, None))
        .await;
    raw.expect(9).await;
    let mut p = V4::new(&b, "eo-out-pub").await;
    p.publish("eoo/t", QoS::ExactlyOnce, false, "m").await;
    let m = raw.expect(3).await;
    assert_eq!((m.first >> 1) & 3, 2, "QoS 2");
    let pkid = m.publish_pkid();
    raw.send(&crate::support::pubrec(pkid)).await;
    assert_eq!(raw.expect(6).await.pkid(), pkid, "PUBREL");
    drop(raw); // lost before PUBCOMP

    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4("eo-out", false, 60)).await;
    assert_eq!(raw.expect(2).await.body, vec![1, 0]);
    let again = raw.read().await.expect("PUBREL resent");
    assert_eq!(
        (again.kind(), again.pkid()),
        (6, pkid),
        "PUBREL, not the PUBLISH: {again:?}"
    );
    raw.send(&crate::support::pubcomp(pkid)).await;
    p.publish("eoo/t", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let next = raw.expect(3).await;
    assert_eq!(next.publish_parts(false).1, b"sentinel");
}

/// MQTT 5: a PUBREL for a packet id the broker does not hold is answered with
/// PUBCOMP 0x92 (Packet Identifier Not Found).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_pubrel_for_unknown_packet_id_gets_0x92() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("eo-unknown", true, 60, &[])).await;
    raw.send(&pubrel(77)).await;
    let comp = raw.expect(PUBCOMP).await;
    assert_eq!((comp.pkid(), comp.ack_reason()), (77, 0x92), "{comp:?}");
}
