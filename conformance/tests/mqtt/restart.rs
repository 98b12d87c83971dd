//! A graceful restart on the same data keeps a persistent session (its
//! subscriptions and queued QoS 1/2 messages), unacknowledged deliveries (sent
//! again with DUP) and retained messages. The `kill -9` variant runs the real
//! binary: `tests/mqtt_restart_kill9.rs` at the repository root.

use crate::support::{LONG_GUARD, V4, V5, text, v4_options, v5_options, within_for};
use junction_conformance::{TestBroker, mqtt_broker, start_in};
use rumqttc::QoS;

async fn restart(b: TestBroker) -> TestBroker {
    let (config, dir) = within_for(LONG_GUARD, "graceful stop", b.stop()).await;
    within_for(LONG_GUARD, "restart", start_in(config, dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_qos1_and_retained_survive_restart() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "durable-sub");
    o.set_clean_session(false);
    let (mut s, _) = V4::connect(o).await;
    s.subscribe("dur/q/#", QoS::AtLeastOnce).await;
    s.disconnect().await;

    let mut p = V4::new(&b, "durable-pub").await;
    for i in 0..3 {
        p.publish("dur/q/a", QoS::AtLeastOnce, false, format!("q{i}"))
            .await;
    }
    p.publish("dur/q/two", QoS::ExactlyOnce, false, "q2-exactly")
        .await;
    p.publish("dur/ret", QoS::AtLeastOnce, true, "retained-value")
        .await;
    p.publish("dur/gone", QoS::AtLeastOnce, true, "x").await;
    p.publish("dur/gone", QoS::AtLeastOnce, true, "").await; // cleared before the restart
    drop(p);

    let b = restart(b).await;

    let mut o = v4_options(&b, "durable-sub");
    o.set_clean_session(false);
    let (mut s, ack) = V4::connect(o).await;
    assert!(ack.session_present, "session survived the restart");
    let got: Vec<String> = s.recv_n(4).await.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(got, ["q0", "q1", "q2", "q2-exactly"]);
    // The subscription is live after the restart.
    let mut p = V4::new(&b, "durable-pub2").await;
    p.publish("dur/q/a", QoS::AtLeastOnce, false, "after").await;
    let more: Vec<String> = s
        .recv_until(b"after")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(more, ["after"], "queued messages delivered twice");

    let mut r = V4::new(&b, "retained-reader").await;
    r.subscribe("dur/#", QoS::AtLeastOnce).await;
    p.publish("dur/sentinel", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = r.recv_until(b"sentinel").await;
    let retained: Vec<(String, String, bool)> = got
        .iter()
        .map(|m| (m.topic.clone(), text(&m.payload), m.retain))
        .collect();
    assert_eq!(
        retained,
        vec![
            ("dur/ret".into(), "retained-value".into(), true),
            ("dur/sentinel".into(), "sentinel".into(), false),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_delivery_is_resent_with_dup_after_restart() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "unacked5");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    o.set_manual_acks(true);
    let (mut s, _) = V5::connect(o).await;
    s.subscribe("ua/t", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let mut p = V5::new(&b, "ua-pub").await;
    p.publish(
        "ua/t",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        "pending",
    )
    .await;
    let first = s.recv().await;
    assert!(!first.dup);
    drop((s, p)); // never acknowledged

    let b = restart(b).await;
    let mut o = v5_options(&b, "unacked5");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut s, ack) = V5::connect(o).await;
    assert!(ack.session_present);
    let again = s.recv().await;
    assert_eq!(&again.payload[..], b"pending");
    assert!(again.dup, "redelivered with DUP: {again:?}");
}

/// An MQTT 5 session's expiry keeps counting across a restart: it ends when its
/// interval has run out, not later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_counts_across_restart() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "exp-restart");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(2));
    let (mut s, _) = V5::connect(o).await;
    s.subscribe("er/t", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    s.disconnect().await;
    let b = restart(b).await;
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let mut o = v5_options(&b, "exp-restart");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(2));
    let (_s, ack) = V5::connect(o).await;
    assert!(
        !ack.session_present,
        "the session outlived its expiry across a restart"
    );
}

/// A graceful stop tells MQTT 5 clients why (DISCONNECT 0x8B), and a persistent
/// session that was connected at the time resumes after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_session_resumes_after_graceful_stop() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "online-at-stop");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut s, _) = V5::connect(o.clone()).await;
    s.subscribe("oas/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let (config, dir) = within_for(LONG_GUARD, "graceful stop", b.stop()).await;
    let (why, _) = s.closed().await;
    assert!(why.contains("ServerShuttingDown"), "{why}");
    let b = within_for(LONG_GUARD, "restart", start_in(config, dir)).await;

    let mut p = V4::new(&b, "oas-pub").await;
    p.publish("oas/a", QoS::AtLeastOnce, false, "while-offline")
        .await;
    let mut o = v5_options(&b, "online-at-stop");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut s, ack) = V5::connect(o).await;
    assert!(ack.session_present);
    assert_eq!(&s.recv().await.payload[..], b"while-offline");
}

/// The inbound QoS 2 state is durable: a PUBLISH resent after a restart (the
/// PUBREC was sent before it) is recognised and not delivered a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_inbound_state_survives_restart() {
    use crate::support::{Raw, connect_v4, publish_raw, pubrel};
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "eor-sub");
    o.set_clean_session(false);
    let (mut s, _) = V4::connect(o).await;
    s.subscribe("eor/#", QoS::ExactlyOnce).await;
    s.disconnect().await;

    let mut raw = Raw::connected(&b, &connect_v4("eor-pub", false, 60)).await;
    raw.send(&publish_raw(b"eor/t", 2, 5, false, false, b"once", None))
        .await;
    assert_eq!(raw.expect(5).await.pkid(), 5, "PUBREC");
    drop(raw);

    let b = restart(b).await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v4("eor-pub", false, 60)).await;
    assert_eq!(raw.expect(2).await.body, vec![1, 0], "session present");
    raw.send(&publish_raw(b"eor/t", 2, 5, true, false, b"once", None))
        .await;
    assert_eq!(raw.expect(5).await.pkid(), 5, "PUBREC again");
    raw.send(&pubrel(5)).await;
    assert_eq!(raw.expect(7).await.pkid(), 5, "PUBCOMP");
    raw.send(&publish_raw(
        b"eor/t",
        1,
        6,
        false,
        false,
        b"sentinel",
        None,
    ))
    .await;
    raw.expect(4).await;

    let mut o = v4_options(&b, "eor-sub");
    o.set_clean_session(false);
    let (mut s, _) = V4::connect(o).await;
    let got: Vec<String> = s
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["once", "sentinel"]);
}

/// A delayed will pending at a graceful stop is published after the restart,
/// when due: the session record keeps it (the `kill -9` variant is
/// `a_pending_delayed_will_survives_kill_9`). Retained, so the watcher sees it
/// whenever it subscribes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delayed_will_is_published_after_a_graceful_restart() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "will-restart");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    o.set_last_will(LastWill::new(
        "willrestart/status",
        "offline",
        QoS5::AtLeastOnce,
        true,
        Some(LastWillProperties {
            delay_interval: Some(3),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
        }),
    ));
    let (c, _) = V5::connect(o).await;
    drop(c); // no DISCONNECT: the will is due in 3 s
    // The broker has seen the connection end (its session stored with the will)
    // before the stop: a connection still open at a stop leaves no will.
    within_for(LONG_GUARD, "the client to leave /v1/connections", async {
        loop {
            let list: serde_json::Value = reqwest::get(format!("{}/v1/connections", b.http_url()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !list.to_string().contains("\"will-restart\"") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    let b = restart(b).await;
    let mut watcher = V5::new(&b, "will-restart-watch").await;
    watcher.subscribe("willrestart/#", QoS5::AtLeastOnce).await;
    let m = within_for(LONG_GUARD, "the will after the restart", watcher.recv()).await;
    assert_eq!(
        (m.topic.as_ref(), &m.payload[..]),
        (&b"willrestart/status"[..], &b"offline"[..])
    );
}
