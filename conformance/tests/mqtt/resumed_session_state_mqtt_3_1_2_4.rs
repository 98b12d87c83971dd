//! MQTT-3.1.2-4: with Clean Start 0 and a session for the client id, the server
//! resumes communications from that session's state, queued messages included.
//! A CONNECT without a Session Expiry Interval (0: the session ends with this
//! connection) still resumes it: the interval only says what happens after the
//! connection closes. Before the fix, such a resume answered `session present`
//! and delivered nothing queued (found by an external interoperability suite).

use crate::support::{V5, v5_options, within};
use junction_conformance::mqtt_broker;
use rumqttc::v5::mqttbytes::QoS as QoS5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_without_session_expiry_gets_the_queued_messages_then_the_session_ends() {
    let b = mqtt_broker().await;
    let mut kept = v5_options(&b, "resume-no-sei");
    kept.set_clean_start(false);
    kept.set_session_expiry_interval(Some(300));
    let (mut c, ack) = V5::connect(kept.clone()).await;
    assert!(!ack.session_present);
    c.subscribe("resume/#", QoS5::AtLeastOnce).await;
    c.subscribe("resume2/#", QoS5::AtLeastOnce).await;
    c.disconnect().await;

    let mut p = V5::new(&b, "resume-pub").await;
    for i in 0..3 {
        p.publish("resume/a", QoS5::AtLeastOnce, false, format!("q{i}"))
            .await;
    }
    p.publish("resume2/b", QoS5::AtLeastOnce, false, "other")
        .await;

    // Clean Start 0, no Session Expiry Interval.
    let mut again = v5_options(&b, "resume-no-sei");
    again.set_clean_start(false);
    let (mut c, ack) = V5::connect(again.clone()).await;
    assert!(ack.session_present, "the stored session is resumed");
    // Subscribing again to one of the filters keeps what is queued for it.
    c.subscribe("resume2/#", QoS5::AtLeastOnce).await;
    let got = within("the four queued messages", c.recv_n(4)).await;
    let mut payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    payloads.sort();
    assert_eq!(payloads, ["other", "q0", "q1", "q2"]);
    // Live messages still arrive on the resumed subscriptions.
    p.publish("resume/a", QoS5::AtLeastOnce, false, "live")
        .await;
    assert_eq!(
        &within("a live message", c.recv()).await.payload[..],
        b"live"
    );
    c.disconnect().await;

    // This connection's interval (0) ended the session when it closed.
    let (_c, ack) = V5::connect(again).await;
    assert!(
        !ack.session_present,
        "the session ended with the connection"
    );
}

/// MQTT-3.3.2-5 and -6 on the same resume (the suite's message expiry cases
/// failed with it): of the messages queued for the session, one whose Message
/// Expiry Interval ran out while it waited is not delivered, and one still
/// valid is, with the interval minus the time it waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_6_a_resume_without_session_expiry_counts_message_expiry_down() {
    use rumqttc::v5::mqttbytes::v5::PublishProperties;
    let b = mqtt_broker().await;
    let mut kept = v5_options(&b, "resume-expiry");
    kept.set_clean_start(false);
    kept.set_session_expiry_interval(Some(300));
    let (mut c, _) = V5::connect(kept).await;
    c.subscribe("resume-exp/#", QoS5::AtLeastOnce).await;
    c.disconnect().await;

    let mut p = V5::new(&b, "resume-expiry-pub").await;
    let expiring = |secs: u32| PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    };
    p.publish_with(
        "resume-exp/a",
        QoS5::AtLeastOnce,
        false,
        "short",
        Some(expiring(1)),
    )
    .await;
    p.publish_with(
        "resume-exp/a",
        QoS5::AtLeastOnce,
        false,
        "long",
        Some(expiring(300)),
    )
    .await;
    // Longer than the short one's interval: it expires while queued.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;

    let mut again = v5_options(&b, "resume-expiry");
    again.set_clean_start(false);
    let (mut c, ack) = V5::connect(again).await;
    assert!(ack.session_present, "the stored session is resumed");
    // Queued in order: the first to arrive is the long one, so the short one
    // was not delivered.
    let m = within("the message still valid", c.recv()).await;
    assert_eq!(&m.payload[..], b"long", "{m:?}");
    let left = m
        .properties
        .and_then(|p| p.message_expiry_interval)
        .expect("a Message Expiry Interval (MQTT-3.3.2-6)");
    assert!(
        (1..=298).contains(&left),
        "300 s minus at least the 2.5 s it waited, got {left}"
    );
}
