//! Client-id takeover: a second connection with the same client id disconnects
//! the first (MQTT 5: DISCONNECT 0x8E) and, when it asks for it, takes over its
//! session.

use crate::support::{V4, V5, v4_options, v5_options};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_second_connection_disconnects_the_first() {
    let b = mqtt_broker().await;
    let mut first = V4::new(&b, "same-id").await;
    let mut second = V4::new(&b, "same-id").await;
    let (why, _) = first.closed().await;
    assert!(!why.is_empty());
    second.subscribe("takeover/t", QoS::AtLeastOnce).await;
    second
        .publish("takeover/t", QoS::AtLeastOnce, false, "alive")
        .await;
    assert_eq!(&second.recv().await.payload[..], b"alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_first_connection_gets_disconnect_0x8e() {
    let b = mqtt_broker().await;
    let mut first = V5::new(&b, "same-id5").await;
    let _second = V5::new(&b, "same-id5").await;
    // rumqttc reports a server DISCONNECT as its error, with the reason code.
    let (why, _) = first.closed().await;
    assert!(
        why.contains("ServerDisconnect") && why.contains("SessionTakenOver"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_keeps_the_persistent_session() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "take-sess");
    o.set_clean_session(false);
    let (mut first, _) = V4::connect(o.clone()).await;
    first.subscribe("takesess/#", QoS::AtLeastOnce).await;
    let (mut second, ack) = V4::connect(o).await;
    assert!(
        ack.session_present,
        "the session moved to the new connection"
    );
    first.closed().await;
    let mut p = V4::new(&b, "take-pub").await;
    p.publish("takesess/a", QoS::AtLeastOnce, false, "m").await;
    assert_eq!(&second.recv().await.payload[..], b"m");

    // MQTT 5 with clean start: the old session is discarded.
    let mut o5 = v5_options(&b, "take-sess5");
    o5.set_clean_start(false);
    o5.set_session_expiry_interval(Some(60));
    let (mut a, _) = V5::connect(o5.clone()).await;
    a.subscribe("t5/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    o5.set_clean_start(true);
    let (_b5, ack) = V5::connect(o5).await;
    assert!(!ack.session_present);
    a.closed().await;
}
