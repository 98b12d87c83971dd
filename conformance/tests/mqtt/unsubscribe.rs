//! UNSUBSCRIBE: UNSUBACK (MQTT 5 reason 0x00, or 0x11 when there was no such
//! subscription), nothing more is delivered, and a persistent session's backlog
//! for that filter is dropped.

use crate::support::{V4, V5, text, v4_options};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::UnsubAckReason;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsuback_reasons_and_no_further_delivery() {
    let b = mqtt_broker().await;
    let mut c = V5::new(&b, "unsub5").await;
    c.subscribe("us/a", QoS5::AtLeastOnce).await;
    c.subscribe("us/b", QoS5::AtLeastOnce).await;
    c.client.unsubscribe("us/a").await.unwrap();
    let reasons = c
        .wait_in("UNSUBACK", |p| match p {
            crate::support::P5::UnsubAck(u) => Some(u.reasons.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reasons, vec![UnsubAckReason::Success]);
    c.client.unsubscribe("us/never").await.unwrap();
    let reasons = c
        .wait_in("UNSUBACK", |p| match p {
            crate::support::P5::UnsubAck(u) => Some(u.reasons.clone()),
            _ => None,
        })
        .await;
    assert_eq!(reasons, vec![UnsubAckReason::NoSubscriptionExisted]);
    let mut p = V5::new(&b, "unsub-pub").await;
    p.publish("us/a", QoS5::AtLeastOnce, false, "gone").await;
    p.publish("us/b", QoS5::AtLeastOnce, false, "sentinel")
        .await;
    let got: Vec<String> = c
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["sentinel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_drops_the_persistent_backlog() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "unsub-persist");
    o.set_clean_session(false);
    let (mut c, _) = V4::connect(o.clone()).await;
    c.subscribe("usp/a", QoS::AtLeastOnce).await;
    c.subscribe("usp/b", QoS::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = V4::new(&b, "unsub-persist-pub").await;
    p.publish("usp/a", QoS::AtLeastOnce, false, "queued-a")
        .await;
    p.publish("usp/b", QoS::AtLeastOnce, false, "queued-b")
        .await;

    let mut o2 = o.clone();
    o2.set_manual_acks(true);
    let (mut c, _) = V4::connect(o2).await;
    // Both queued messages arrive; unsubscribe from a before acking anything.
    // (Two topics, two subscriptions: MQTT orders per topic only.)
    let mut got: Vec<String> = c.recv_n(2).await.iter().map(|m| text(&m.payload)).collect();
    got.sort();
    assert_eq!(got, ["queued-a", "queued-b"]);
    c.client.unsubscribe("usp/a").await.unwrap();
    c.wait_in("UNSUBACK", |p| {
        matches!(p, rumqttc::Packet::UnsubAck(_)).then_some(())
    })
    .await;
    c.disconnect().await;

    // Only b is redelivered; a went with its subscription.
    let (mut c, ack) = V4::connect(o).await;
    assert!(ack.session_present);
    p.publish("usp/b", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got: Vec<String> = c
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["queued-b", "sentinel"]);
}

/// Subscribing again to the same filter at QoS 0 replaces a persistent QoS 1
/// subscription: its stored backlog (a consumer group on `$MQTT_msgs`) goes with
/// it, and nothing is left behind once the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrading_a_persistent_subscription_to_qos0_leaves_no_group() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "downgrade");
    o.set_clean_session(false);
    let (mut c, _) = V4::connect(o.clone()).await;
    c.subscribe("dg/#", QoS::AtLeastOnce).await;
    c.subscribe("dg/#", QoS::AtMostOnce).await;
    let mut p = V4::new(&b, "downgrade-pub").await;
    p.publish("dg/t", QoS::AtLeastOnce, false, "m").await;
    let m = c.recv().await;
    assert_eq!((&m.payload[..], m.qos), (&b"m"[..], QoS::AtMostOnce));
    c.disconnect().await;
    // End the session.
    o.set_clean_session(true);
    let (c, _) = V4::connect(o).await;
    c.disconnect().await;

    let js = async_nats::jetstream::new(async_nats::connect(b.nats_url()).await.unwrap());
    let mut stream = crate::support::within("get $MQTT_msgs", js.get_stream("$MQTT_msgs"))
        .await
        .expect("the MQTT message station is visible as a stream");
    let info = crate::support::within("stream info", stream.info())
        .await
        .unwrap();
    assert_eq!(
        info.state.consumer_count, 0,
        "a consumer group outlived its subscription and session"
    );
}
