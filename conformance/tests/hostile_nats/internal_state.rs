//! The broker's own stations (`$MQTT_sess`, `$MQTT_msgs`, `$MQTT_rmsgs`, dead-letter
//! stations) and subject spaces (`$JS.API.>`, `_INBOX.>`) are out of a NATS
//! client's reach: delete, purge, create and consumers are refused with
//! JetStream errors, and MQTT sessions keep working afterwards.

use crate::js::{self, api, expect_api_error};
use junction_conformance::mqtt_broker;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::Duration;

async fn mqtt_session(broker: &junction_conformance::TestBroker, id: &str) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.mqtt_port());
    options.set_clean_session(false);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    js::within("MQTT CONNACK", async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = events.poll().await.expect("MQTT poll") {
                break;
            }
        }
    })
    .await;
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

#[tokio::test]
async fn mqtt_stations_cannot_be_deleted_or_purged_over_nats() {
    let broker = mqtt_broker().await;
    let mqtt = mqtt_session(&broker, "sensor-1").await;
    mqtt.subscribe("home/#", QoS::AtLeastOnce).await.unwrap();
    let (client, jsx) = js::connect(&broker).await;
    js::poll_until("the MQTT stations exist", || async {
        jsx.get_stream("$MQTT_sess").await.is_ok()
    })
    .await;
    for (verb, name) in [
        ("DELETE", "$MQTT_sess"),
        ("DELETE", "$MQTT_msgs"),
        ("DELETE", "$MQTT_rmsgs"),
        ("PURGE", "$MQTT_sess"),
        ("PURGE", "$MQTT_msgs"),
        ("PURGE", "$MQTT_rmsgs"),
    ] {
        let r = api(&client, &format!("$JS.API.STREAM.{verb}.{name}"), "").await;
        let text = expect_api_error(&r, 403, 19003);
        assert!(text.contains(name), "{verb} {name}: {text}");
    }
    let r = api(
        &client,
        "$JS.API.STREAM.MSG.DELETE.$MQTT_sess",
        r#"{"seq":1}"#,
    )
    .await;
    expect_api_error(&r, 403, 19003);
    // Consumers on internal stations would hold MQTT's messages forever.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.$MQTT_msgs.spy",
        r#"{"stream_name":"$MQTT_msgs","config":{"durable_name":"spy","ack_policy":"explicit"}}"#,
    )
    .await;
    expect_api_error(&r, 403, 19003);
    // Still there and still holding the session.
    let info = api(&client, "$JS.API.STREAM.INFO.$MQTT_sess", "").await;
    assert!(
        info["state"]["messages"].as_u64().unwrap_or(0) >= 1,
        "{info}"
    );
    drop(mqtt);
}

#[tokio::test]
async fn stations_cannot_use_reserved_names_or_capture_reserved_subjects() {
    let broker = mqtt_broker().await;
    let (client, _jsx) = js::connect(&broker).await;
    for (name, subjects) in [
        ("api", r#"["$JS.API.>"]"#),
        ("all", r#"[">"]"#),
        ("inboxes", r#"["_INBOX.>"]"#),
        ("wild", r#"["*.API.>"]"#),
        ("mqtt", r#"["$MQTT.sess.>"]"#),
    ] {
        let r = api(
            &client,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &format!(r#"{{"name":"{name}","subjects":{subjects}}}"#),
        )
        .await;
        let text = expect_api_error(&r, 500, 10052);
        assert!(text.contains("reserved"), "{name}: {text}");
    }
    for name in ["$MQTT_evil", "$sys_x", "$dls_x"] {
        let r = api(
            &client,
            &format!("$JS.API.STREAM.CREATE.{name}"),
            &format!(r#"{{"name":"{name}","subjects":["evil.x"]}}"#),
        )
        .await;
        expect_api_error(&r, 500, 10052);
    }
    // The JetStream API still answers once (no stray second answer was stored).
    let r = api(&client, "$JS.API.INFO", "").await;
    assert!(r["error"].is_null(), "{r}");
    let names = api(&client, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(names["total"], 0, "{names}");
}

#[tokio::test]
async fn msg_next_on_a_missing_consumer_gets_no_responders() {
    let broker = mqtt_broker().await;
    let (client, jsx) = js::connect(&broker).await;
    let pull = js::raw_pull(&client, "NOPE", "nobody", r#"{"batch":1}"#).await;
    assert_eq!(
        js::status_code(&pull),
        503,
        "stream and consumer never existed"
    );
    js::simple_stream(&jsx, "S", &["s.>"]).await;
    let pull = js::raw_pull(&client, "S", "nobody", r#"{"batch":1}"#).await;
    assert_eq!(js::status_code(&pull), 503, "consumer never existed");
}
