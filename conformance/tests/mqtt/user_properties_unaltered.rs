//! MQTT-3.3.2-17: a subscriber gets the publisher's user properties unaltered, in
//! order, duplicates kept, with nothing added: live, through a station, and
//! through a persistent session's stored copy. Lineage stays beside the message.

use crate::support::{V5, v5_options, within};
use junction_conformance::mqtt_broker;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;

fn published() -> Vec<(String, String)> {
    vec![
        ("region".into(), "eu".into()),
        ("trace-id".into(), "abc123".into()),
        ("region".into(), "us".into()),
        (
            "traceparent".into(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_exactly_the_published_user_properties() {
    let b = mqtt_broker().await;
    // A station captures the topic too, so the message is stored with lineage.
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v1/stations", b.http_url()))
        .json(&serde_json::json!({"name": "plant", "subjects": ["plant.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // A clean live subscriber and a persistent session (its QoS 1 copy comes from
    // the front-end's own station).
    let mut live = V5::new(&b, "props-live").await;
    live.subscribe("plant/#", QoS::AtLeastOnce).await;
    let mut o = v5_options(&b, "props-durable");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut durable, _) = V5::connect(o).await;
    durable.subscribe("plant/+/temp", QoS::AtLeastOnce).await;

    let mut producer = V5::new(&b, "props-producer").await;
    let props = PublishProperties {
        user_properties: published(),
        ..Default::default()
    };
    producer
        .publish_with("plant/1/temp", QoS::AtLeastOnce, false, "21.5", Some(props))
        .await;

    for (who, client) in [("live", &mut live), ("durable", &mut durable)] {
        let m = within(who, client.recv()).await;
        assert_eq!(&m.payload[..], b"21.5", "{who}");
        let got = m.properties.map(|p| p.user_properties).unwrap_or_default();
        assert_eq!(got, published(), "{who}");
    }

    // The stored copy's lineage is there for whoever asks, and names the producer.
    let stored: serde_json::Value = http
        .get(format!("{}/v1/stations/plant/messages/1", b.http_url()))
        .header("Junction-Lineage", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &stored["headers"];
    assert_eq!(h["Junction-Origin-Protocol"], "mqtt", "{stored}");
    assert_eq!(h["Junction-Client-Name"], "props-producer", "{stored}");
    assert_eq!(h["Junction-Origin-Subject"], "plant.1.temp", "{stored}");
    assert_eq!(h["region"], serde_json::json!(["eu", "us"]), "{stored}");
    let trace: serde_json::Value = http
        .get(format!(
            "{}/v1/lineage/{}",
            b.http_url(),
            h["Junction-Msg-Id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The producer's traceparent gave the message its trace id.
    assert_eq!(trace["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// User properties whose names the front-end uses itself (`Content-Type`,
/// `Mqtt-Qos`) reach subscribers unaltered too, in order, and change nothing: the
/// Content Type property and the QoS stay what the publish said. They are stored
/// escaped (`Mqtt-Prop-<name>`). Lineage names (`Junction-…`) are the one
/// exception: dropped, so that no publisher can forge where a message came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_with_reserved_names_are_forwarded_and_forge_nothing() {
    let b = mqtt_broker().await;
    let http = reqwest::Client::new();
    let created = http
        .post(format!("{}/v1/stations", b.http_url()))
        .json(&serde_json::json!({"name": "reserved", "subjects": ["reserved.>"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let reserved: Vec<(String, String)> = vec![
        ("k".into(), "1".into()),
        ("Content-Type".into(), "text/forged".into()),
        ("Mqtt-Qos".into(), "2".into()),
        ("Mqtt-Prop-x".into(), "y".into()),
        ("k".into(), "2".into()),
    ];
    let mut sent = reserved.clone();
    sent.insert(3, ("Junction-Origin-Protocol".into(), "forged".into()));
    let mut live = V5::new(&b, "reserved-live").await;
    live.subscribe("reserved/#", QoS::AtLeastOnce).await;
    let mut o = v5_options(&b, "reserved-durable");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut durable, _) = V5::connect(o).await;
    durable.subscribe("reserved/#", QoS::AtLeastOnce).await;

    let mut producer = V5::new(&b, "reserved-producer").await;
    let props = PublishProperties {
        user_properties: sent,
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    producer
        .publish_with("reserved/a", QoS::AtLeastOnce, false, "{}", Some(props))
        .await;
    for (who, client) in [("live", &mut live), ("durable", &mut durable)] {
        let m = within(who, client.recv()).await;
        assert_eq!(m.qos, QoS::AtLeastOnce, "{who}");
        let p = m.properties.unwrap_or_default();
        assert_eq!(p.user_properties, reserved, "{who}");
        assert_eq!(p.content_type.as_deref(), Some("application/json"), "{who}");
    }
    let stored: serde_json::Value = http
        .get(format!("{}/v1/stations/reserved/messages/1", b.http_url()))
        .header("Junction-Lineage", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h = &stored["headers"];
    assert_eq!(h["Junction-Origin-Protocol"], "mqtt", "{stored}");
    assert_eq!(h["Content-Type"], "application/json", "{stored}");
    assert_eq!(h["Mqtt-Prop-Content-Type"], "text/forged", "{stored}");
    assert!(
        h.get("Mqtt-Prop-Junction-Origin-Protocol").is_none(),
        "{stored}"
    );
    assert_eq!(h["Mqtt-Prop-Mqtt-Qos"], "2", "{stored}");
    assert_eq!(h["Mqtt-Qos"], "1", "{stored}");
    assert_eq!(h["Mqtt-Prop-Mqtt-Prop-x"], "y", "{stored}");
}
