//! MQTT-3.3.2-17 and -18: the server sends all User Properties unaltered and in
//! order when it forwards a message, retained messages and wills included. The
//! external interoperability suite found Junction adding its lineage markers
//! (`Junction-Origin-Protocol`, `Junction-Client-Name`, `Junction-Origin-Topic`)
//! to all three. They now reach an MQTT client only when the listener opts in
//! (`[mqtt] lineage_properties = true`), after the publisher's own.

use crate::support::{V5, v5_options, within};
use junction_conformance::{mqtt_broker, mqtt_broker_with};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties, PublishProperties};

/// Repeated names, and an order no sort would give.
fn published() -> Vec<(String, String)> {
    vec![
        ("zone".into(), "b".into()),
        ("id".into(), "7".into()),
        ("zone".into(), "a".into()),
    ]
}

fn props() -> PublishProperties {
    PublishProperties {
        user_properties: published(),
        ..Default::default()
    }
}

fn user_properties(m: &rumqttc::v5::mqttbytes::v5::Publish) -> Vec<(String, String)> {
    m.properties
        .clone()
        .map(|p| p.user_properties)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_17_retained_message_user_properties_are_forwarded_unaltered() {
    let b = mqtt_broker().await;
    let mut producer = V5::new(&b, "ret-props-pub").await;
    producer
        .publish_with("ret/props", QoS::AtLeastOnce, true, "kept", Some(props()))
        .await;
    // Subscribing afterwards: the retained copy, from the retained store.
    let mut late = V5::new(&b, "ret-props-late").await;
    late.subscribe("ret/#", QoS::AtLeastOnce).await;
    let m = within("retained", late.recv()).await;
    assert!(m.retain, "{m:?}");
    assert_eq!(&m.payload[..], b"kept");
    assert_eq!(user_properties(&m), published(), "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_17_will_user_properties_are_forwarded_unaltered() {
    let b = mqtt_broker().await;
    let mut watcher = V5::new(&b, "will-props-watch").await;
    watcher.subscribe("will-props/#", QoS::AtLeastOnce).await;
    let mut o = v5_options(&b, "will-props-gone");
    o.set_last_will(LastWill::new(
        "will-props/gone",
        "gone",
        QoS::AtLeastOnce,
        false,
        Some(LastWillProperties {
            delay_interval: None,
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: published(),
        }),
    ));
    let (c, _) = V5::connect(o).await;
    drop(c); // no DISCONNECT: the will is published
    let m = within("will", watcher.recv()).await;
    assert_eq!(&m.payload[..], b"gone");
    assert_eq!(user_properties(&m), published(), "{m:?}");
}

/// MQTT-3.3.2-18 with the opt-in: the publisher's properties stay first and in
/// their order, the markers follow them; the same message to a broker without
/// the opt-in carries the publisher's alone (the tests above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_3_2_18_lineage_properties_follow_the_publishers_when_the_listener_opts_in() {
    let b = mqtt_broker_with(|c| c.mqtt.lineage_properties = true).await;
    let mut live = V5::new(&b, "lin-live").await;
    live.subscribe("lin/#", QoS::AtLeastOnce).await;
    // A persistent session gets its copy from the front-end's own station.
    let mut o = v5_options(&b, "lin-durable");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut durable, _) = V5::connect(o).await;
    durable.subscribe("lin/#", QoS::AtLeastOnce).await;
    let mut producer = V5::new(&b, "lin-pub").await;
    producer
        .publish_with("lin/1", QoS::AtLeastOnce, true, "x", Some(props()))
        .await;
    let mut late = V5::new(&b, "lin-late").await;
    late.subscribe("lin/#", QoS::AtLeastOnce).await;

    let mut expected = published();
    expected.extend([
        ("Junction-Origin-Protocol".into(), "mqtt".into()),
        ("Junction-Client-Name".into(), "lin-pub".into()),
        ("Junction-Origin-Topic".into(), "lin/1".into()),
    ]);
    for (who, client) in [
        ("live", &mut live),
        ("durable", &mut durable),
        ("retained", &mut late),
    ] {
        let m = within(who, client.recv()).await;
        assert_eq!(&m.payload[..], b"x", "{who}");
        assert_eq!(user_properties(&m), expected, "{who}: {m:?}");
    }

    // A NATS producer's message has no markers: its headers arrive as they were.
    let nats = within("NATS connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut h = async_nats::HeaderMap::new();
    h.insert("zone", "n");
    nats.publish_with_headers("lin.2", h, "from-nats".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let m = within("the NATS message", live.recv()).await;
    assert_eq!(&m.payload[..], b"from-nats");
    assert_eq!(
        user_properties(&m),
        vec![("zone".to_string(), "n".to_string())],
        "{m:?}"
    );
}
