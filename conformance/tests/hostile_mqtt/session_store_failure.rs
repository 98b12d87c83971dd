//! MQTT never acknowledges state it cannot store. Here the front-end's own stations
//! were made (as an older version might have) with limits that refuse some writes:
//! a session record too large for `$MQTT_sess`, a queued message too large for
//! `$MQTT_msgs`, a retained message `$MQTT_rmsgs` will not purge. The CONNECT then
//! gets CONNACK 0x88 Server unavailable (3.1.1: return code 3), the SUBSCRIBE 0x80
//! for its filter, the PUBLISH PUBACK/PUBREC 0x80 (3.1.1: no PUBACK, the
//! connection closes so the client sends it again); what was acknowledged survives
//! a restart.

use crate::support::{
    LONG_GUARD, Raw, V4, V5, connect_v4, connect_v5, publish_raw, still_serves, text, v4_options,
    v5_options, within_for,
};
use junction_api::{Broker, Retention, StationConfig, TenantId};
use junction_conformance::{TestBroker, mqtt_broker, start_in};
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Sub5;

/// Makes one of the front-end's stations before MQTT does, with `tweak`.
fn preset(b: &TestBroker, name: &str, subject: &str, tweak: impl FnOnce(&mut StationConfig)) {
    let mut config = StationConfig {
        name: name.to_owned(),
        subjects: vec![subject.to_owned()],
        max_msgs_per_subject: 1,
        ..StationConfig::default()
    };
    tweak(&mut config);
    b.running
        .engine()
        .create_internal_station(&TenantId::default_tenant(), config)
        .expect("station made");
}

/// `$MQTT_sess` refusing records over 300 bytes: a session with a 400-character
/// client id, or with a 200-character filter, cannot be stored.
fn small_session_station(b: &TestBroker) {
    preset(b, "$MQTT_sess", "$MQTT.sess.>", |c| c.max_msg_size = 300);
}

async fn restart(b: TestBroker) -> TestBroker {
    let (config, dir) = within_for(LONG_GUARD, "graceful stop", b.stop()).await;
    within_for(LONG_GUARD, "restart", start_in(config, dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_the_store_refuses_gets_no_success_connack() {
    let b = mqtt_broker().await;
    small_session_station(&b);
    let long_id = "k".repeat(400);

    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4(&long_id, false, 60)).await;
    let seen = raw.until_closed().await;
    let acks: Vec<(u8, Vec<u8>)> = seen.iter().map(|p| (p.kind(), p.body.clone())).collect();
    assert_eq!(acks, vec![(2, vec![0, 3])], "3.1.1: server unavailable");

    // Session Expiry Interval 3600.
    let expiry = [0x11, 0, 0, 0x0E, 0x10];
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5(&long_id, true, 60, &expiry)).await;
    let seen = raw.until_closed().await;
    let acks: Vec<(u8, u8, u8)> = seen
        .iter()
        .map(|p| (p.kind(), p.body[0], p.body[1]))
        .collect();
    assert_eq!(acks, vec![(2, 0, 0x88)], "5: Server unavailable");

    // Nothing to store without a persistent session: the same client id connects.
    Raw::connected(&b, &connect_v4(&long_id, true, 60)).await;
    Raw::connected(&b, &connect_v5(&long_id, true, 60, &[])).await;
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_the_store_refuses_gets_suback_0x80_and_acknowledged_state_survives_restart() {
    let b = mqtt_broker().await;
    small_session_station(&b);
    let long_filter = format!("long/{}", "f".repeat(200));
    let long_topic = long_filter.clone();

    let mut o4 = v4_options(&b, "keeper4");
    o4.set_clean_session(false);
    let (mut k4, _) = V4::connect(o4).await;
    assert_eq!(
        k4.subscribe(&long_filter, QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Failure]
    );
    assert_eq!(
        k4.subscribe("ok/x", QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );

    let mut o5 = v5_options(&b, "keeper5");
    o5.set_clean_start(false);
    o5.set_session_expiry_interval(Some(3600));
    let (mut k5, _) = V5::connect(o5).await;
    assert_eq!(
        k5.subscribe(&long_filter, QoS5::AtLeastOnce).await,
        vec![Sub5::Unspecified]
    );
    assert_eq!(
        k5.subscribe("ok/x", QoS5::AtLeastOnce).await,
        vec![Sub5::Success(QoS5::AtLeastOnce)]
    );

    // The refused subscription is not active.
    let mut p = V4::new(&b, "keeper-pub").await;
    p.publish(&long_topic, QoS::AtLeastOnce, false, "long")
        .await;
    p.publish("ok/x", QoS::AtLeastOnce, false, "live").await;
    let got: Vec<String> = k4
        .recv_until(b"live")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["live"]);
    let got: Vec<String> = k5
        .recv_until(b"live")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["live"]);
    k4.disconnect().await;
    k5.disconnect().await;

    // Acknowledged: queued while offline, kept across a restart.
    p.publish("ok/x", QoS::AtLeastOnce, false, "queued").await;
    drop(p);
    let b = restart(b).await;
    let mut o4 = v4_options(&b, "keeper4");
    o4.set_clean_session(false);
    let (mut k4, ack) = V4::connect(o4).await;
    assert!(ack.session_present, "3.1.1 session survived the restart");
    assert_eq!(text(&k4.recv().await.payload), "queued");
    let mut o5 = v5_options(&b, "keeper5");
    o5.set_clean_start(false);
    o5.set_session_expiry_interval(Some(3600));
    let (mut k5, ack) = V5::connect(o5).await;
    assert!(ack.session_present, "5 session survived the restart");
    assert_eq!(text(&k5.recv().await.payload), "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_the_store_refuses_gets_puback_0x80() {
    let b = mqtt_broker().await;
    preset(&b, "$MQTT_msgs", "$MQTT.msgs.>", |c| {
        c.retention = Retention::Interest;
        c.max_msgs_per_subject = -1;
        c.max_msg_size = 64;
    });
    let mut o = v5_options(&b, "queue");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut q, _) = V5::connect(o).await;
    q.subscribe("q/#", QoS5::AtLeastOnce).await;

    let big = vec![b'x'; 100];
    let mut p = V5::new(&b, "queue-pub").await;
    assert_eq!(
        p.publish("q/a", QoS5::AtLeastOnce, false, "small")
            .await
            .as_deref(),
        Some("Success")
    );
    assert_eq!(
        p.publish("q/a", QoS5::AtLeastOnce, false, big.clone())
            .await
            .as_deref(),
        Some("UnspecifiedError"),
        "PUBACK 0x80: the persistent session's copy was not stored"
    );
    assert_eq!(
        p.publish("q/a", QoS5::ExactlyOnce, false, big.clone())
            .await
            .as_deref(),
        Some("UnspecifiedError"),
        "PUBREC 0x80"
    );
    let mut raw = Raw::connected(&b, &connect_v4("queue-pub4", true, 60)).await;
    raw.send(&publish_raw(b"q/a", 1, 1, false, false, &big, None))
        .await;
    let seen = raw.until_closed().await;
    assert!(seen.is_empty(), "3.1.1: not acknowledged, closed: {seen:?}");

    p.publish("q/a", QoS5::AtLeastOnce, false, "sentinel").await;
    let got: Vec<String> = q
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["small", "sentinel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_clear_the_store_refuses_gets_puback_0x80() {
    let b = mqtt_broker().await;
    preset(&b, "$MQTT_rmsgs", "$MQTT.rmsgs.>", |c| c.deny_purge = true);
    let mut p = V5::new(&b, "retainer").await;
    assert_eq!(
        p.publish("r/t", QoS5::AtLeastOnce, true, "keep")
            .await
            .as_deref(),
        Some("Success")
    );
    assert_eq!(
        p.publish("r/t", QoS5::AtLeastOnce, true, "")
            .await
            .as_deref(),
        Some("UnspecifiedError"),
        "the clear was not stored"
    );
    // Still retained, as the store still holds it.
    let mut s = V5::new(&b, "retained-reader").await;
    s.subscribe("r/#", QoS5::AtLeastOnce).await;
    let m = s.recv().await;
    assert_eq!(
        (text(&m.topic), text(&m.payload), m.retain),
        ("r/t".into(), "keep".into(), true)
    );
}
