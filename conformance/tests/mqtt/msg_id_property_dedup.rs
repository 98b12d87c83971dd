//! An MQTT 5 publisher's `msg-id` user property is its station's de-duplication id,
//! shared with NATS `Nats-Msg-Id`: a repeat within the duplicate window is
//! acknowledged and not stored again, and the user property is stored as sent.

use crate::support::{V5, within};
use junction_conformance::{TestBroker, mqtt_broker};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use serde_json::Value;

async fn get(b: &TestBroker, path: &str) -> Value {
    let r = within(
        "HTTP GET",
        reqwest::Client::new()
            .get(format!("{}{path}", b.http_url()))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    within("HTTP body", r.json()).await.unwrap()
}

fn with_id(id: &str) -> Option<PublishProperties> {
    Some(PublishProperties {
        user_properties: vec![("msg-id".into(), id.into())],
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msg_id_user_property_is_stored_once() {
    let b = mqtt_broker().await;
    let r = within(
        "create station",
        reqwest::Client::new()
            .post(format!("{}/v1/stations", b.http_url()))
            .json(&serde_json::json!({"name": "SENSORS", "subjects": ["sensors.>"]}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let mut c = V5::new(&b, "dedup-pub").await;
    for (payload, id) in [("21.5", "r-1"), ("21.5 again", "r-1"), ("22.0", "r-2")] {
        let reason = c
            .publish_with("sensors/t1", QoS5::AtLeastOnce, false, payload, with_id(id))
            .await;
        assert_eq!(reason.as_deref(), Some("Success"), "{payload}");
    }
    let state = &get(&b, "/v1/stations/SENSORS").await["state"];
    assert_eq!(
        (state["messages"].as_u64(), state["last_seq"].as_u64()),
        (Some(2), Some(2)),
        "{state}"
    );
    let m = get(&b, "/v1/stations/SENSORS/messages/1").await;
    assert_eq!(m["payload"], "21.5");
    assert_eq!(m["headers"]["msg-id"], "r-1", "{m}");

    // The same id from a NATS producer is a duplicate of the MQTT publish.
    let js = async_nats::jetstream::new(
        within("NATS connect", async_nats::connect(b.nats_url()))
            .await
            .unwrap(),
    );
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "r-2");
    let ack = within("publish", async {
        js.publish_with_headers("sensors.t1", h, "from nats".into())
            .await
            .unwrap()
            .await
            .unwrap()
    })
    .await;
    assert_eq!((ack.sequence, ack.duplicate), (2, true));
}
