//! A client that stops acknowledging QoS 1 messages is a slow consumer: once its
//! queue is full it is disconnected (and counted), never left with acknowledged
//! messages silently dropped.

use crate::support::{Raw, V5, connect_v5, subscribe_raw, within};
use junction_conformance::mqtt_broker_with;
use rumqttc::v5::mqttbytes::QoS as QoS5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_acks_is_disconnected_as_slow_consumer() {
    let b = mqtt_broker_with(|c| c.mqtt.max_queued_messages = 3).await;
    // Receive Maximum 1: one message in flight, the rest queue in the broker.
    let mut raw = Raw::connected(&b, &connect_v5("never-acks", true, 60, &[0x21, 0, 1])).await;
    raw.send(&subscribe_raw(1, "slow/t", 1, Some(&[]))).await;
    raw.expect(9).await;

    let mut p = V5::new(&b, "slow-pub").await;
    for i in 0..6 {
        // Each PUBACK means the broker took responsibility for the message.
        p.publish("slow/t", QoS5::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    // The first delivery arrives, then (one in flight + 3 queued + 1 more) the
    // broker gives up on the client instead of dropping a message.
    let first = raw.expect(3).await;
    assert_eq!(first.publish_parts(true).1, b"m0");
    let seen = raw.until_closed().await;
    assert!(
        seen.iter().all(|p| p.kind() != 3),
        "nothing else was sent while m0 is unacknowledged: {seen:?}"
    );
    // MQTT 5 is told why: Quota Exceeded.
    let disconnect = seen.iter().find(|p| p.kind() == 14).expect("DISCONNECT");
    assert_eq!(disconnect.disconnect_reason(), 0x97);

    // Counted like a NATS slow consumer.
    let varz: serde_json::Value = within("varz", async {
        reqwest::get(format!("{}/varz", b.http_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(varz["slow_consumers"], 1, "{varz}");
    // And in the system log, with the client's id. The event is recorded by
    // the engine's event writer, which may finish after the socket closed: asked
    // again until it is there.
    let url = format!("{}/v1/events?limit=1000", b.http_url());
    within("the slow_consumer event", async {
        loop {
            let log: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            if log["events"].as_array().is_some_and(|all| {
                all.iter()
                    .any(|e| e["kind"] == "slow_consumer" && e["client_name"] == "never-acks")
            }) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    crate::support::still_serves(&b).await;
}
