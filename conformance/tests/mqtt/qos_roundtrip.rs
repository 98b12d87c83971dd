//! QoS 0, 1 and 2 in both directions for v3.1.1 and MQTT 5: every combination of
//! publish QoS and subscription QoS is delivered once, at min(publish, subscription).

use crate::support::{V4, V5};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;

const LEVELS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
const LEVELS5: [QoS5; 3] = [QoS5::AtMostOnce, QoS5::AtLeastOnce, QoS5::ExactlyOnce];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_delivered_qos_is_min_of_publish_and_subscription() {
    let b = mqtt_broker().await;
    for (si, sub_qos) in LEVELS.iter().enumerate() {
        let mut sub = V4::new(&b, &format!("v4-sub-{si}")).await;
        let topic = format!("qos/v4/{si}");
        let codes = sub.subscribe(&topic, *sub_qos).await;
        assert_eq!(codes, vec![rumqttc::SubscribeReasonCode::Success(*sub_qos)]);
        let mut publisher = V4::new(&b, &format!("v4-pub-{si}")).await;
        for (pi, pub_qos) in LEVELS.iter().enumerate() {
            publisher
                .publish(&topic, *pub_qos, false, format!("p{pi}"))
                .await;
        }
        let got = sub.recv_n(3).await;
        for (pi, m) in got.iter().enumerate() {
            assert_eq!(m.topic, topic);
            assert_eq!(&m.payload[..], format!("p{pi}").as_bytes(), "order");
            let want = (pi.min(si)) as u8;
            assert_eq!(m.qos as u8, want, "publish QoS {pi}, subscription QoS {si}");
            assert!(!m.dup);
            assert!(!m.retain);
        }
        publisher.disconnect().await;
        sub.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_delivered_qos_is_min_of_publish_and_subscription() {
    let b = mqtt_broker().await;
    for (si, sub_qos) in LEVELS5.iter().enumerate() {
        let mut sub = V5::new(&b, &format!("v5-sub-{si}")).await;
        let topic = format!("qos/v5/{si}");
        let codes = sub.subscribe(&topic, *sub_qos).await;
        assert_eq!(
            codes,
            vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
                *sub_qos
            )]
        );
        let mut publisher = V5::new(&b, &format!("v5-pub-{si}")).await;
        for (pi, pub_qos) in LEVELS5.iter().enumerate() {
            let ack = publisher
                .publish(&topic, *pub_qos, false, format!("p{pi}"))
                .await;
            if pi > 0 {
                assert_eq!(ack.as_deref(), Some("Success"), "publish QoS {pi}");
            }
        }
        let got = sub.recv_n(3).await;
        for (pi, m) in got.iter().enumerate() {
            assert_eq!(&m.topic[..], topic.as_bytes());
            assert_eq!(&m.payload[..], format!("p{pi}").as_bytes(), "order");
            let want = (pi.min(si)) as u8;
            assert_eq!(m.qos as u8, want, "publish QoS {pi}, subscription QoS {si}");
            assert!(!m.dup);
        }
        publisher.disconnect().await;
        sub.disconnect().await;
    }
}

/// A v3.1.1 publisher and an MQTT 5 subscriber (and the reverse) share one port
/// and one topic space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_and_v5_clients_exchange_messages_on_one_port() {
    let b = mqtt_broker().await;
    let mut v4 = V4::new(&b, "mixed-v4").await;
    let mut v5 = V5::new(&b, "mixed-v5").await;
    v4.subscribe("mixed/to4", QoS::ExactlyOnce).await;
    v5.subscribe("mixed/to5", QoS5::ExactlyOnce).await;
    v4.publish("mixed/to5", QoS::ExactlyOnce, false, "from4")
        .await;
    v5.publish("mixed/to4", QoS5::ExactlyOnce, false, "from5")
        .await;
    let a = v5.recv().await;
    assert_eq!((&a.payload[..], a.qos), (&b"from4"[..], QoS5::ExactlyOnce));
    let c = v4.recv().await;
    assert_eq!((&c.payload[..], c.qos), (&b"from5"[..], QoS::ExactlyOnce));
}

/// Overlapping subscriptions of one v3.1.1 client: one copy, at the highest
/// granted QoS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_deliver_one_copy_at_max_qos() {
    let b = mqtt_broker().await;
    let mut sub = V4::new(&b, "overlap").await;
    sub.subscribe("ov/+/x", QoS::AtMostOnce).await;
    sub.subscribe("ov/#", QoS::AtLeastOnce).await;
    let mut p = V4::new(&b, "overlap-pub").await;
    p.publish("ov/a/x", QoS::ExactlyOnce, false, "one").await;
    p.publish("ov/a/x", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = sub.recv_until(b"sentinel").await;
    assert_eq!(got.len(), 2, "one copy each: {got:?}");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
}

/// The same for a persistent session, whose QoS 1/2 subscriptions are served from
/// storage: overlapping filters still give one copy per message (3.1.1 has no
/// subscription identifiers to tell copies apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_of_persistent_session_deliver_one_copy() {
    let b = mqtt_broker().await;
    let mut o = crate::support::v4_options(&b, "overlap-persist");
    o.set_clean_session(false);
    let (mut sub, _) = V4::connect(o).await;
    sub.subscribe("ovp/+/x", QoS::AtLeastOnce).await;
    sub.subscribe("ovp/#", QoS::AtLeastOnce).await;
    let mut p = V4::new(&b, "overlap-persist-pub").await;
    p.publish("ovp/a/x", QoS::AtLeastOnce, false, "one").await;
    p.publish("ovp/a/y", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got: Vec<String> = sub
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(got, ["one", "sentinel"], "one copy per message");
}
