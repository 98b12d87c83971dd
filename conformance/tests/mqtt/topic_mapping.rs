//! Topic ↔ subject mapping as nats-server does it: `/`→`.`, `+`→`*`, `#`→`>`
//! (and `a/#` also matches `a`), a literal `.`→`//`, an empty level ↔ `/`;
//! `$`-topics are not matched by a leading wildcard; `$SYS` carries broker stats.

use crate::support::{V4, V5, text, within};
use futures::StreamExt;
use junction_conformance::{TestBroker, mqtt_broker, mqtt_broker_with};
use rumqttc::QoS;
use std::time::Duration;

async fn nats(b: &TestBroker) -> async_nats::Client {
    within("NATS connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap()
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    within("NATS message", sub.next())
        .await
        .expect("subscription open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publish_is_a_nats_message_on_the_mapped_subject() {
    let b = mqtt_broker().await;
    let nc = nats(&b).await;
    let mut exact = nc.subscribe("sensors.room1.temp").await.unwrap();
    let mut wild = nc.subscribe("sensors.*.temp").await.unwrap();
    let mut dotted = nc.subscribe("v1//2.x").await.unwrap();
    let mut empty = nc.subscribe("/.lead").await.unwrap();
    nc.flush().await.unwrap();
    let mut c = V4::new(&b, "map-pub").await;
    c.publish("sensors/room1/temp", QoS::AtLeastOnce, false, "21.5")
        .await;
    c.publish("v1.2/x", QoS::AtLeastOnce, false, "dot").await;
    c.publish("/lead", QoS::AtLeastOnce, false, "empty-level")
        .await;
    let m = next(&mut exact).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("sensors.room1.temp", &b"21.5"[..])
    );
    assert_eq!(next(&mut wild).await.subject.as_str(), "sensors.room1.temp");
    let m = next(&mut dotted).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("v1//2.x", &b"dot"[..])
    );
    assert_eq!(&next(&mut empty).await.payload[..], b"empty-level");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_publish_reaches_mqtt_wildcard_subscribers() {
    let b = mqtt_broker().await;
    let mut plus = V4::new(&b, "map-plus").await;
    plus.subscribe("sensors/+/temp", QoS::AtLeastOnce).await;
    let mut hash = V5::new(&b, "map-hash").await;
    hash.subscribe("home/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let mut dot = V4::new(&b, "map-dot").await;
    dot.subscribe("v1.2/+", QoS::AtLeastOnce).await;

    let nc = nats(&b).await;
    nc.publish("sensors.room2.temp", "19".into()).await.unwrap();
    nc.publish("sensors.room2.humidity", "no".into())
        .await
        .unwrap();
    nc.publish("home", "parent-level".into()).await.unwrap();
    nc.publish("home.kitchen.light", "deep".into())
        .await
        .unwrap();
    nc.publish("homer", "not-a-level".into()).await.unwrap();
    nc.publish("v1//2.y", "dotted".into()).await.unwrap();
    nc.publish("sensors.end.temp", "sentinel".into())
        .await
        .unwrap();
    nc.publish("home.end", "sentinel".into()).await.unwrap();
    nc.flush().await.unwrap();

    let got = plus.recv_until(b"sentinel").await;
    let got: Vec<(String, String, QoS)> = got
        .iter()
        .map(|m| (m.topic.clone(), text(&m.payload), m.qos))
        .collect();
    assert_eq!(
        got,
        vec![
            ("sensors/room2/temp".into(), "19".into(), QoS::AtMostOnce),
            (
                "sensors/end/temp".into(),
                "sentinel".into(),
                QoS::AtMostOnce
            ),
        ],
        "NATS messages arrive at QoS 0"
    );
    let got: Vec<(String, String)> = hash
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| (text(&m.topic), text(&m.payload)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("home".into(), "parent-level".into()),
            ("home/kitchen/light".into(), "deep".into()),
            ("home/end".into(), "sentinel".into()),
        ],
        "a/# matches a"
    );
    let m = dot.recv().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("v1.2/y", &b"dotted"[..])
    );
}

/// MQTT to MQTT: `a/#` matches `a` itself, once (not twice through its two
/// engine filters).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_matches_parent_level_once() {
    let b = mqtt_broker().await;
    let mut s = V4::new(&b, "parent").await;
    s.subscribe("a/#", QoS::AtLeastOnce).await;
    let mut p = V4::new(&b, "parent-pub").await;
    p.publish("a", QoS::AtLeastOnce, false, "a").await;
    p.publish("a/b", QoS::AtLeastOnce, false, "sentinel").await;
    let got: Vec<String> = s
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["a", "sentinel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let b = mqtt_broker().await;
    let mut all = V4::new(&b, "dollar-all").await;
    all.subscribe("#", QoS::AtLeastOnce).await;
    let mut plus = V4::new(&b, "dollar-plus").await;
    plus.subscribe("+/x", QoS::AtLeastOnce).await;
    let mut explicit = V4::new(&b, "dollar-explicit").await;
    explicit.subscribe("$app/#", QoS::AtLeastOnce).await;

    let mut p = V4::new(&b, "dollar-pub").await;
    p.publish("$app/x", QoS::AtLeastOnce, false, "dollar").await;
    let nc = nats(&b).await;
    nc.publish("$app.x", "dollar-nats".into()).await.unwrap();
    nc.flush().await.unwrap();
    p.publish("plain/x", QoS::AtLeastOnce, false, "sentinel")
        .await;

    for c in [&mut all, &mut plus] {
        let got: Vec<String> = c
            .recv_until(b"sentinel")
            .await
            .iter()
            .map(|m| text(&m.payload))
            .collect();
        assert_eq!(got, ["sentinel"], "a $-topic matched a leading wildcard");
    }
    let got: Vec<String> = explicit
        .recv_n(2)
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["dollar", "dollar-nats"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_carry_broker_stats() {
    let b = mqtt_broker_with(|c| c.mqtt.sys_interval = Duration::from_secs(1)).await;
    let mut s = V4::new(&b, "sys").await;
    s.subscribe("$SYS/broker/version", QoS::AtMostOnce).await;
    let m = s.recv().await;
    assert_eq!(m.topic, "$SYS/broker/version");
    assert!(text(&m.payload).contains("junction"), "{m:?}");
    // Clients may not publish to $SYS.
    let mut c = V5::new(&b, "sys-pub").await;
    let reason = c
        .publish(
            "$SYS/broker/version",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "fake",
        )
        .await;
    assert_eq!(reason.as_deref(), Some("NotAuthorized"));
}

/// A filter with no subject form (U+0000, which MQTT forbids) is refused with
/// Topic Filter Invalid (0x8F) in MQTT 5, and only that filter: the other one in
/// the same SUBSCRIBE is granted and the connection stays. (Whitespace and `*`
/// levels are mapped: `conformance/tests/hostile_mqtt/topic_escapes.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmappable_filter_is_refused() {
    let b = mqtt_broker().await;
    let mut c = V5::new(&b, "unmappable").await;
    let codes = c
        .subscribe("a\0b/c", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    assert_eq!(
        codes,
        vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::TopicFilterInvalid],
        "SUBACK 0x8F"
    );
    let codes = c
        .subscribe("a b/c", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    assert_eq!(
        codes,
        vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce
        )],
    );
}

/// `$`-topics are not matched by a leading wildcard for a persistent session
/// either, whose QoS 1/2 deliveries come from storage rather than live fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_topics_not_matched_for_persistent_session() {
    let b = mqtt_broker().await;
    let mut o = crate::support::v4_options(&b, "dollar-persist");
    o.set_clean_session(false);
    let (mut all, _) = V4::connect(o).await;
    all.subscribe("#", QoS::AtLeastOnce).await;
    let mut p = V4::new(&b, "dollar-persist-pub").await;
    p.publish("$app/x", QoS::AtLeastOnce, false, "dollar").await;
    p.publish("plain/x", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got: Vec<String> = all
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["sentinel"], "a $-topic matched a leading wildcard");
}
