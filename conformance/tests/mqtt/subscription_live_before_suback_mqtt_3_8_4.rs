//! MQTT 5 §3.8.4 (3.1.1 §3.8.4 alike): the server may send PUBLISH packets that
//! match a subscription before its SUBACK; a subscription is in force from the
//! moment its SUBSCRIBE is read. The external interoperability suite found a
//! subscriber missing a message published right after its SUBSCRIBE, before
//! its SUBACK (mosquitto handles packets in the order they arrive, so there it
//! arrives).
//!
//! A persistent session's SUBACK waits for the session record to be durable.
//! Each round pipelines SUBSCRIBE and PINGREQ on the subscriber: packets of one
//! connection are handled in order, so the PINGRESP proves the SUBSCRIBE was
//! read. Only then, and without waiting for the SUBACK, another client
//! publishes on the new filter. Every round must deliver, whether the SUBACK
//! came before the PINGRESP or not.

use crate::support::{PINGREQ, Raw, connect_v5, puback, publish_raw, subscribe_raw};
use junction_conformance::mqtt_broker;

const ROUNDS: u16 = 50;

/// Session Expiry Interval (0x11) of 300 s.
const KEEP_SESSION: [u8; 5] = [0x11, 0, 0, 1, 44];

/// Runs the rounds; `sub_qos` is the subscription's QoS, `pub_qos` the
/// publisher's. Returns (messages delivered, rounds whose SUBACK came only
/// after the PINGRESP, that is after the publish started).
async fn rounds(persistent: bool, sub_qos: u8, pub_qos: u8) -> (u16, u16) {
    let b = mqtt_broker().await;
    let props: &[u8] = if persistent { &KEEP_SESSION } else { &[] };
    let mut sub = Raw::connected(&b, &connect_v5("race-sub", !persistent, 60, props)).await;
    let mut p = Raw::connected(&b, &connect_v5("race-pub", true, 60, &[])).await;
    let mut delivered = 0;
    let mut suback_late = 0;
    for i in 0..ROUNDS {
        let topic = format!("race/{i}");
        let mut both = subscribe_raw(i + 1, &topic, sub_qos, Some(&[]));
        both.extend_from_slice(&PINGREQ);
        sub.send(&both).await;
        // Until the PINGRESP: the SUBSCRIBE has been read.
        let mut suback = false;
        loop {
            let pkt = sub.read().await.expect("PINGRESP, not a close");
            match pkt.kind() {
                13 => break,
                9 => {
                    assert_eq!(pkt.pkid(), i + 1);
                    assert_eq!(pkt.body[3], sub_qos, "granted: {pkt:?}");
                    suback = true;
                }
                _ => panic!("round {i}: unexpected {pkt:?}"),
            }
        }
        if !suback {
            suback_late += 1;
        }
        let payload = format!("m{i}");
        let pkid = i + 1;
        p.send(&publish_raw(
            topic.as_bytes(),
            pub_qos,
            pkid,
            false,
            false,
            payload.as_bytes(),
            Some(&[]),
        ))
        .await;
        if pub_qos > 0 {
            let ack = p.expect(4).await;
            assert_eq!((ack.pkid(), ack.ack_reason()), (pkid, 0));
        }
        // The SUBACK (if still due) and the message, in whatever order.
        let mut got = false;
        while !(got && suback) {
            let pkt = sub
                .read()
                .await
                .expect("the message and SUBACK, not a close");
            match pkt.kind() {
                9 => suback = true,
                3 => {
                    let (t, body) = pkt.publish_parts(true);
                    assert_eq!(
                        (t.as_str(), body.as_slice()),
                        (topic.as_str(), payload.as_bytes())
                    );
                    if (pkt.first >> 1) & 3 > 0 {
                        sub.send(&puback(pkt.publish_pkid())).await;
                    }
                    got = true;
                    delivered += 1;
                }
                _ => panic!("round {i}: unexpected {pkt:?}"),
            }
        }
    }
    (delivered, suback_late)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_subscription_delivers_what_is_published_before_its_suback() {
    let (delivered, late) = rounds(true, 1, 1).await;
    eprintln!(
        "persistent QoS 1: {delivered}/{ROUNDS} delivered, SUBACK after the publish in {late}"
    );
    assert_eq!(delivered, ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_qos0_subscription_delivers_what_is_published_before_its_suback() {
    let (delivered, late) = rounds(true, 0, 1).await;
    eprintln!(
        "persistent QoS 0: {delivered}/{ROUNDS} delivered, SUBACK after the publish in {late}"
    );
    assert_eq!(delivered, ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_subscription_delivers_what_is_published_right_after_subscribe() {
    let (delivered, _) = rounds(false, 1, 0).await;
    assert_eq!(delivered, ROUNDS);
}
