//! MQTT and NATS in one subject space: MQTT 5 user properties ↔ NATS headers
//! (and no lineage among them), a station (made over HTTP)
//! capturing MQTT publishes and served to a JetStream pull consumer, and MQTT 5
//! request/response (response topic, correlation data) with NATS on either side.

use crate::support::{V4, V5, text, within};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use junction_conformance::{TestBroker, mqtt_broker};
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use std::time::Duration;

async fn nats(b: &TestBroker) -> async_nats::Client {
    within("NATS connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap()
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_become_headers_without_lineage() {
    let b = mqtt_broker().await;
    let nc = nats(&b).await;
    let mut sub = nc.subscribe("orders.>").await.unwrap();
    nc.flush().await.unwrap();
    let mut c = V5::new(&b, "lineage-client").await;
    let props = PublishProperties {
        user_properties: vec![
            ("trace-id".into(), "abc123".into()),
            ("tenant".into(), "eu".into()),
            // Clients may not forge lineage.
            ("Junction-Client-Name".into(), "forged".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    c.publish_with("orders/new", QoS5::AtLeastOnce, false, "{}", Some(props))
        .await;
    let m = within("HMSG", sub.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "orders.new");
    assert_eq!(header(&m, "trace-id"), Some("abc123"));
    assert_eq!(header(&m, "tenant"), Some("eu"));
    assert_eq!(header(&m, "Content-Type"), Some("application/json"));
    // The MQTT front-end's markers (its `Junction-Origin-*`, `Junction-Client-Name`)
    // are its own: a NATS subscriber never sees them, forged or not.
    assert_eq!(junction_headers(&m), Vec::<String>::new());

    // Nor on v3.1.1 publishes.
    let mut c4 = V4::new(&b, "lineage-v4").await;
    c4.publish("orders/old", QoS::AtMostOnce, false, "x").await;
    let m = within("HMSG", sub.next()).await.unwrap();
    assert_eq!(m.subject.as_str(), "orders.old");
    assert_eq!(junction_headers(&m), Vec::<String>::new());
}

/// The names of a message's `Junction-*` headers.
fn junction_headers(m: &async_nats::Message) -> Vec<String> {
    m.headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|(k, _)| k.to_string())
        .filter(|k| k.to_ascii_lowercase().starts_with("junction-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_headers_become_user_properties() {
    let b = mqtt_broker().await;
    let mut c = V5::new(&b, "hdr-sub").await;
    c.subscribe("events/#", QoS5::AtMostOnce).await;
    let nc = nats(&b).await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("trace-id", "n42");
    h.insert("Content-Type", "text/plain");
    nc.publish_with_headers("events.created", h, "body".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    let m = c.recv().await;
    assert_eq!(&m.topic[..], b"events/created");
    assert_eq!(&m.payload[..], b"body");
    let props = m.properties.expect("properties");
    assert!(
        props
            .user_properties
            .contains(&("trace-id".into(), "n42".into())),
        "{props:?}"
    );
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));

    // MQTT 5 to MQTT 5: properties pass through.
    let mut p = V5::new(&b, "hdr-pub").await;
    let props = PublishProperties {
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "v2".into())],
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    p.publish_with("events/mqtt", QoS5::AtLeastOnce, false, "utf8", Some(props))
        .await;
    let m = c.recv().await;
    let props = m.properties.expect("properties");
    assert!(
        props.user_properties.contains(&("k".into(), "v".into())),
        "{props:?}"
    );
    assert!(
        props.user_properties.contains(&("k".into(), "v2".into())),
        "repeated keys kept: {props:?}"
    );
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_captures_mqtt_publishes_for_a_pull_consumer() {
    let b = mqtt_broker().await;
    let http = reqwest::Client::new();
    let resp = within(
        "create station",
        http.post(format!("{}/v1/stations", b.http_url()))
            .json(&serde_json::json!({"name": "TELEMETRY", "subjects": ["telemetry.>"]}))
            .send(),
    )
    .await
    .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);

    let mut c = V4::new(&b, "station-pub").await;
    for i in 0..5 {
        c.publish(
            &format!("telemetry/dev{}/temp", i % 2),
            QoS::AtLeastOnce,
            false,
            format!("t{i}"),
        )
        .await;
    }
    let js = jetstream::new(nats(&b).await);
    let stream = within("get stream", js.get_stream("TELEMETRY"))
        .await
        .unwrap();
    let consumer = within(
        "create consumer",
        stream.create_consumer(pull::Config {
            durable_name: Some("reader".into()),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    within("pull 5", async {
        while got.len() < 5 {
            let mut batch = consumer
                .fetch()
                .max_messages(5 - got.len())
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .unwrap();
            while let Some(m) = batch.next().await {
                let m = m.unwrap();
                m.ack().await.unwrap();
                got.push(m);
            }
        }
    })
    .await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|m| (m.subject.to_string(), text(&m.payload)))
        .collect();
    let want: Vec<(String, String)> = (0..5)
        .map(|i| (format!("telemetry.dev{}.temp", i % 2), format!("t{i}")))
        .collect();
    assert_eq!(seen, want);
    // The stored copies carry no lineage in their headers (it is beside them).
    for m in &got {
        assert_eq!(junction_headers(m), Vec::<String>::new());
    }
}

/// A NATS requester and an MQTT 5 responder: the request's reply subject is the
/// response topic, and the responder's publish to it is the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_request_answered_by_mqtt5_responder() {
    let b = mqtt_broker().await;
    let mut responder = V5::new(&b, "responder").await;
    responder.subscribe("svc/echo", QoS5::AtMostOnce).await;
    let nc = nats(&b).await;
    let request = tokio::spawn({
        let nc = nc.clone();
        async move { nc.request("svc.echo", "ping".into()).await }
    });
    let req = responder.recv().await;
    let props = req.properties.expect("properties");
    let topic = props.response_topic.expect("response topic");
    responder
        .publish(
            &topic,
            QoS5::AtMostOnce,
            false,
            format!("pong:{}", text(&req.payload)),
        )
        .await;
    let reply = within("reply", request).await.unwrap().expect("NATS reply");
    assert_eq!(&reply.payload[..], b"pong:ping");
}

/// An MQTT 5 requester: response topic and correlation data reach an MQTT 5
/// responder intact, and a NATS responder sees the response topic as the reply
/// subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_request_response_with_correlation_data() {
    let b = mqtt_broker().await;
    let mut requester = V5::new(&b, "requester").await;
    requester
        .subscribe("replies/requester", QoS5::AtLeastOnce)
        .await;
    let mut responder = V5::new(&b, "responder5").await;
    responder.subscribe("svc/time", QoS5::AtLeastOnce).await;

    let props = PublishProperties {
        response_topic: Some("replies/requester".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"\x00corr-1\xff")),
        ..Default::default()
    };
    requester
        .publish_with("svc/time", QoS5::AtLeastOnce, false, "now?", Some(props))
        .await;
    let req = responder.recv().await;
    let p = req.properties.expect("properties");
    assert_eq!(p.response_topic.as_deref(), Some("replies/requester"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"\x00corr-1\xff"[..]));
    let answer = PublishProperties {
        correlation_data: p.correlation_data.clone(),
        ..Default::default()
    };
    responder
        .publish_with(
            &p.response_topic.unwrap(),
            QoS5::AtLeastOnce,
            false,
            "noon",
            Some(answer),
        )
        .await;
    let reply = requester.recv().await;
    assert_eq!(&reply.payload[..], b"noon");
    assert_eq!(
        reply.properties.and_then(|p| p.correlation_data).as_deref(),
        Some(&b"\x00corr-1\xff"[..])
    );

    // A NATS responder answers on the reply subject.
    let nc = nats(&b).await;
    let mut svc = nc.subscribe("svc.nats").await.unwrap();
    nc.flush().await.unwrap();
    let props = PublishProperties {
        response_topic: Some("replies/requester".into()),
        ..Default::default()
    };
    requester
        .publish_with("svc/nats", QoS5::AtMostOnce, false, "q", Some(props))
        .await;
    let m = within("NATS request", svc.next()).await.unwrap();
    assert_eq!(m.reply.as_deref(), Some("replies.requester"));
    nc.publish(m.reply.unwrap(), "from-nats".into())
        .await
        .unwrap();
    nc.flush().await.unwrap();
    assert_eq!(&requester.recv().await.payload[..], b"from-nats");
}

/// Headers the MQTT front-end uses internally (`Mqtt-Qos`, `Mqtt-Stored`, ...)
/// are trusted only on messages the front-end itself routed: a NATS message that
/// carries them (a bridge copying headers, or a hostile client) still reaches a
/// persistent MQTT session's subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_message_with_mqtt_internal_headers_still_reaches_persistent_session() {
    let b = mqtt_broker().await;
    let mut o = crate::support::v4_options(&b, "forge-persist");
    o.set_clean_session(false);
    let (mut c, _) = V4::connect(o).await;
    c.subscribe("forge/#", QoS::AtLeastOnce).await;
    let nc = nats(&b).await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("Mqtt-Qos", "1");
    h.insert("Mqtt-Stored", "1");
    nc.publish_with_headers("forge.t", h, "copied".into())
        .await
        .unwrap();
    nc.publish("forge.t", "sentinel".into()).await.unwrap();
    nc.flush().await.unwrap();
    let got: Vec<String> = c
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["copied", "sentinel"], "the NATS message was dropped");
}
