//! Authentication with the broker's users (the same as NATS) and the topic ACL:
//! CONNACK 0x04/0x05 (v3.1.1) and 0x86/0x87 (MQTT 5); SUBACK 0x80 (v3.1.1) / 0x87
//! (MQTT 5) and PUBACK 0x87 (MQTT 5) for denied topics.

use crate::support::{V4, V5, v4_options, v5_options};
use junction::engine::User;
use junction_conformance::{TestBroker, mqtt_broker_with};
use junction_mqtt::AclRule;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Sub5;

async fn broker_with_users() -> TestBroker {
    mqtt_broker_with(|c| {
        c.auth.users = vec![User::new("alice", "secret"), User::new("bob", "hunter2")];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_connack_codes_for_bad_and_missing_credentials() {
    let b = broker_with_users().await;
    let mut o = v4_options(&b, "bad-pass");
    o.set_credentials("alice", "wrong");
    let err = V4::try_connect(o).await.err().expect("refused");
    assert!(err.contains("BadUserNamePassword"), "0x04 expected: {err}");

    let mut o = v4_options(&b, "no-user");
    o.set_credentials("mallory", "secret");
    let err = V4::try_connect(o).await.err().expect("refused");
    assert!(err.contains("BadUserNamePassword"), "0x04 expected: {err}");

    let err = V4::try_connect(v4_options(&b, "anonymous"))
        .await
        .err()
        .expect("refused");
    assert!(err.contains("NotAuthorized"), "0x05 expected: {err}");

    let mut o = v4_options(&b, "good");
    o.set_credentials("alice", "secret");
    let (mut c, _) = V4::connect(o).await;
    c.subscribe("auth/ok", QoS::AtLeastOnce).await;
    c.publish("auth/ok", QoS::AtLeastOnce, false, "hi").await;
    assert_eq!(&c.recv().await.payload[..], b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_connack_codes_for_bad_and_missing_credentials() {
    let b = broker_with_users().await;
    let mut o = v5_options(&b, "bad-pass5");
    o.set_credentials("alice", "wrong");
    let err = V5::try_connect(o).await.err().expect("refused");
    assert!(err.contains("BadUserNamePassword"), "0x86 expected: {err}");

    let err = V5::try_connect(v5_options(&b, "anonymous5"))
        .await
        .err()
        .expect("refused");
    assert!(err.contains("NotAuthorized"), "0x87 expected: {err}");

    let mut o = v5_options(&b, "good5");
    o.set_credentials("bob", "hunter2");
    V5::connect(o).await;
}

/// The same users log in over NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_users_are_the_nats_users() {
    let b = broker_with_users().await;
    let nats = async_nats::ConnectOptions::with_user_and_password("alice".into(), "secret".into())
        .connect(b.nats_url())
        .await
        .expect("NATS login with the MQTT user");
    let mut sub = nats.subscribe("auth.shared").await.unwrap();
    nats.flush().await.unwrap();
    let mut o = v4_options(&b, "shared-user");
    o.set_credentials("alice", "secret");
    let (mut c, _) = V4::connect(o).await;
    c.publish("auth/shared", QoS::AtLeastOnce, false, "x").await;
    let m = crate::support::within("NATS message", futures::StreamExt::next(&mut sub))
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"x");
}

async fn broker_with_acl() -> TestBroker {
    mqtt_broker_with(|c| {
        c.mqtt.acl = vec![
            AclRule {
                user: None,
                deny_publish: vec!["secret/#".into()],
                deny_subscribe: vec!["private/#".into()],
            },
            AclRule {
                user: Some("bob".into()),
                deny_publish: vec!["alerts/#".into()],
                deny_subscribe: vec![],
            },
        ];
        c.auth.users = vec![User::new("alice", "a"), User::new("bob", "b")];
    })
    .await
}

fn v4_as(b: &TestBroker, id: &str, user: &str) -> rumqttc::MqttOptions {
    let mut o = v4_options(b, id);
    o.set_credentials(user, &user[..1]);
    o
}

fn v5_as(b: &TestBroker, id: &str, user: &str) -> rumqttc::v5::MqttOptions {
    let mut o = v5_options(b, id);
    o.set_credentials(user, &user[..1]);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_subscribe_gets_suback_failure() {
    let b = broker_with_acl().await;
    let (mut c4, _) = V4::connect(v4_as(&b, "acl-sub4", "alice")).await;
    assert_eq!(
        c4.subscribe("private/x", QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Failure],
        "v3.1.1 SUBACK 0x80"
    );
    assert_eq!(
        c4.subscribe("public/x", QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let (mut c5, _) = V5::connect(v5_as(&b, "acl-sub5", "alice")).await;
    assert_eq!(
        c5.subscribe("private/#", QoS5::AtLeastOnce).await,
        vec![Sub5::NotAuthorized],
        "MQTT 5 SUBACK 0x87"
    );
    // A wider filter is granted, but denied topics are not delivered through it.
    assert_eq!(
        c5.subscribe("#", QoS5::AtLeastOnce).await,
        vec![Sub5::Success(QoS5::AtLeastOnce)]
    );
    let nats = async_nats::ConnectOptions::with_user_and_password("alice".into(), "a".into())
        .connect(b.nats_url())
        .await
        .unwrap();
    nats.publish("private.x", "hidden".into()).await.unwrap();
    nats.publish("public.x", "visible".into()).await.unwrap();
    nats.flush().await.unwrap();
    let got = c5.recv_until(b"visible").await;
    let payloads: Vec<_> = got.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(
        payloads,
        vec![bytes::Bytes::from("visible")],
        "denied topic leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_publish_gets_puback_0x87_and_is_not_routed() {
    let b = broker_with_acl().await;
    let (mut watcher, _) = V4::connect(v4_as(&b, "acl-watch", "alice")).await;
    watcher.subscribe("secret/#", QoS::AtLeastOnce).await;
    watcher.subscribe("alerts/#", QoS::AtLeastOnce).await;

    let (mut c5, _) = V5::connect(v5_as(&b, "acl-pub5", "alice")).await;
    let reason = c5.publish("secret/a", QoS5::AtLeastOnce, false, "no").await;
    assert_eq!(reason.as_deref(), Some("NotAuthorized"), "PUBACK 0x87");
    let reason = c5
        .publish("alerts/a", QoS5::AtLeastOnce, false, "alice-alert")
        .await;
    assert_eq!(
        reason.as_deref(),
        Some("Success"),
        "the bob rule is not alice's"
    );

    // v3.1.1 cannot carry a reason: the PUBACK comes, the message goes nowhere.
    let (mut bob, _) = V4::connect(v4_as(&b, "acl-bob", "bob")).await;
    bob.publish("alerts/b", QoS::AtLeastOnce, false, "bob-alert")
        .await;
    bob.publish("secret/b", QoS::AtLeastOnce, false, "bob-secret")
        .await;
    // QoS 2: PUBREC carries the refusal in v5; the exchange still completes in v3.
    bob.publish("secret/c", QoS::ExactlyOnce, false, "bob-secret2")
        .await;
    let reason = c5
        .publish("secret/q2", QoS5::ExactlyOnce, false, "no2")
        .await;
    assert_eq!(reason.as_deref(), Some("NotAuthorized"), "PUBREC 0x87");
    c5.publish("alerts/end", QoS5::AtLeastOnce, false, "end")
        .await;

    let got = watcher.recv_until(b"end").await;
    let payloads: Vec<String> = got
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(payloads, vec!["alice-alert", "end"]);
}

/// A will on a topic the user may not publish to is refused at CONNECT (0x87).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_on_denied_topic_is_refused() {
    let b = broker_with_acl().await;
    let mut o = v5_as(&b, "acl-will", "alice");
    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        "secret/will",
        "x",
        QoS5::AtLeastOnce,
        false,
        None,
    ));
    let err = V5::try_connect(o).await.err().expect("refused");
    assert!(err.contains("NotAuthorized"), "{err}");
}

/// The ACL holds for a persistent session too, whose QoS 1/2 deliveries come from
/// storage rather than live fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_topics_are_not_delivered_to_persistent_sessions() {
    let b = broker_with_acl().await;
    let mut o = v5_as(&b, "acl-persist", "alice");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut c, _) = V5::connect(o).await;
    assert_eq!(
        c.subscribe("#", QoS5::AtLeastOnce).await,
        vec![Sub5::Success(QoS5::AtLeastOnce)]
    );
    let (mut p, _) = V4::connect(v4_as(&b, "acl-persist-pub", "bob")).await;
    p.publish("private/x", QoS::AtLeastOnce, false, "hidden")
        .await;
    p.publish("public/x", QoS::AtLeastOnce, false, "visible")
        .await;
    let got: Vec<String> = c
        .recv_until(b"visible")
        .await
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(got, ["visible"], "denied topic leaked");
}
