//! Wills: published when a connection ends without a DISCONNECT, not after a
//! normal DISCONNECT; MQTT 5 Will Delay Interval, cancelled when the client comes
//! back in time, and cut short when the session ends first.

use crate::support::{LONG_GUARD, V4, V5, v4_options, v5_options, within_for};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties};
use std::time::Duration;

fn will5(topic: &str, payload: &str, delay: u32) -> LastWill {
    LastWill::new(
        topic,
        payload.to_string(),
        QoS5::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![("why".into(), "gone".into())],
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_will_on_abnormal_close_not_on_disconnect() {
    let b = mqtt_broker().await;
    let mut watcher = V4::new(&b, "will-watch").await;
    watcher.subscribe("will/#", QoS::AtLeastOnce).await;

    let mut o = v4_options(&b, "will-crash");
    o.set_last_will(rumqttc::LastWill::new(
        "will/crash",
        "crashed",
        QoS::AtLeastOnce,
        false,
    ));
    let (c, _) = V4::connect(o).await;
    drop(c); // socket closed without DISCONNECT
    let m = watcher.recv().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("will/crash", &b"crashed"[..])
    );
    assert_eq!(m.qos, QoS::AtLeastOnce);

    let mut o = v4_options(&b, "will-clean");
    o.set_last_will(rumqttc::LastWill::new(
        "will/clean",
        "should-not",
        QoS::AtLeastOnce,
        false,
    ));
    let (c, _) = V4::connect(o).await;
    c.disconnect().await;
    let mut p = V4::new(&b, "will-pub").await;
    p.publish("will/sentinel", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = watcher.recv_until(b"sentinel").await;
    assert_eq!(got.len(), 1, "no will after a normal DISCONNECT: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_retained_will() {
    let b = mqtt_broker().await;
    let mut o = v4_options(&b, "will-ret");
    o.set_last_will(rumqttc::LastWill::new(
        "willret/status",
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let (c, _) = V4::connect(o).await;
    let mut watcher = V4::new(&b, "willret-watch").await;
    watcher.subscribe("willret/status", QoS::AtLeastOnce).await;
    drop(c);
    assert_eq!(&watcher.recv().await.payload[..], b"offline");
    // Retained: a later subscriber sees it too.
    let mut late = V4::new(&b, "willret-late").await;
    late.subscribe("willret/status", QoS::AtLeastOnce).await;
    let m = late.recv().await;
    assert_eq!((&m.payload[..], m.retain), (&b"offline"[..], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_delayed_will_is_published_after_the_delay() {
    let b = mqtt_broker().await;
    let mut watcher = V5::new(&b, "wd-watch").await;
    watcher.subscribe("wd/#", QoS5::AtLeastOnce).await;
    let mut o = v5_options(&b, "wd-late");
    o.set_session_expiry_interval(Some(60));
    o.set_last_will(will5("wd/late", "late-will", 1));
    let (c, _) = V5::connect(o).await;
    drop(c);
    let m = within_for(LONG_GUARD, "the delayed will", watcher.recv()).await;
    assert_eq!(&m.payload[..], b"late-will");
    let props = m.properties.expect("will properties");
    assert!(
        props
            .user_properties
            .contains(&("why".into(), "gone".into())),
        "{props:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_delay_cancelled_by_reconnect() {
    let b = mqtt_broker().await;
    let mut watcher = V5::new(&b, "wc-watch").await;
    watcher.subscribe("wc/#", QoS5::AtLeastOnce).await;
    let mut o = v5_options(&b, "wc");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(60));
    // A delay long enough that the reconnect below beats it even on a loaded
    // machine.
    o.set_last_will(will5("wc/will", "cancelled-will", 4));
    let (c, _) = V5::connect(o.clone()).await;
    drop(c);
    // Back within the delay: the will is not sent.
    let (c, _) = V5::connect(o).await;
    // Wait past the delay, then a sentinel.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let mut p = V5::new(&b, "wc-pub").await;
    p.publish("wc/sentinel", QoS5::AtLeastOnce, false, "sentinel")
        .await;
    let got = watcher.recv_until(b"sentinel").await;
    assert_eq!(got.len(), 1, "the will was published: {got:?}");
    c.disconnect().await;
}

/// The will goes out when the session ends, if that is before the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_will_sent_when_session_ends_before_delay() {
    let b = mqtt_broker().await;
    let mut watcher = V5::new(&b, "we-watch").await;
    watcher.subscribe("we/#", QoS5::AtLeastOnce).await;
    let mut o = v5_options(&b, "we");
    o.set_session_expiry_interval(Some(1));
    o.set_last_will(will5("we/will", "session-ended", 3600));
    let (c, _) = V5::connect(o).await;
    drop(c);
    let m = within_for(LONG_GUARD, "the will at session end", watcher.recv()).await;
    assert_eq!(&m.payload[..], b"session-ended");
}

/// MQTT 5 DISCONNECT with reason 0x04 (Disconnect with Will Message) sends the will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_disconnect_with_will_message_sends_it() {
    let b = mqtt_broker().await;
    let mut watcher = V5::new(&b, "w4-watch").await;
    watcher.subscribe("w4/#", QoS5::AtLeastOnce).await;
    // CONNECT with a will (flag 0x04, QoS 1 = 0x08), no will properties.
    let mut body = crate::support::lstr(b"MQTT");
    body.extend([5, 0x02 | 0x04 | 0x08, 0, 60, 0]);
    body.extend(crate::support::lstr(b"w4"));
    body.push(0); // will properties
    body.extend(crate::support::lstr(b"w4/will"));
    body.extend(crate::support::lstr(b"asked-for"));
    let mut raw = crate::support::Raw::connected(&b, &crate::support::packet(0x10, &body)).await;
    raw.send(&crate::support::packet(0xE0, &[0x04, 0x00])).await;
    raw.until_closed().await;
    assert_eq!(&watcher.recv().await.payload[..], b"asked-for");
}

/// MQTT 5 §3.14.4: only a DISCONNECT with reason 0x00 discards the will; any
/// other reason (here 0x80, Unspecified error) leaves it to be published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_disconnect_with_error_reason_sends_the_will() {
    let b = mqtt_broker().await;
    let mut watcher = V5::new(&b, "w80-watch").await;
    watcher.subscribe("w80/#", QoS5::AtLeastOnce).await;
    let mut body = crate::support::lstr(b"MQTT");
    body.extend([5, 0x02 | 0x04 | 0x08, 0, 60, 0]);
    body.extend(crate::support::lstr(b"w80"));
    body.push(0);
    body.extend(crate::support::lstr(b"w80/will"));
    body.extend(crate::support::lstr(b"error-will"));
    let mut raw = crate::support::Raw::connected(&b, &crate::support::packet(0x10, &body)).await;
    raw.send(&crate::support::packet(0xE0, &[0x80, 0x00])).await;
    raw.until_closed().await;
    let mut p = V5::new(&b, "w80-pub").await;
    p.publish("w80/sentinel", QoS5::AtLeastOnce, false, "sentinel")
        .await;
    let got: Vec<String> = watcher
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| crate::support::text(&m.payload))
        .collect();
    assert_eq!(got, ["error-will", "sentinel"]);
}
