//! Topics MQTT allows but a NATS subject cannot carry as they are (a space, a
//! control character, a level that is exactly `*` or `>`) are mapped losslessly,
//! as mosquitto accepts them: a subscriber gets the topic back byte for byte, and
//! NATS reaches them at the escaped subject (`home/living room/temp` is
//! `home.living/20room.temp`). Checked with rumqttc, async-nats and mosquitto's
//! command-line clients.

use crate::support::{V4, V5, text, within};
use futures::StreamExt;
use junction_conformance::{TestBroker, mqtt_broker};
use rumqttc::QoS;
use std::process::Stdio;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spaces_and_star_levels_round_trip_between_mqtt_clients() {
    let b = mqtt_broker().await;
    let mut sub = V5::new(&b, "escape-sub").await;
    for f in ["home/living room/#", "a/*/b", "tab\there/>"] {
        let codes = sub
            .subscribe(f, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
            .await;
        assert_eq!(
            codes,
            vec![rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce
            )],
            "{f}"
        );
    }
    let mut p = V4::new(&b, "escape-pub").await;
    // `a/x/b` does not match the literal `*` level; `a/*/b` does.
    for t in [
        "home/living room/temp",
        "a/x/b",
        "a/*/b",
        "tab\there/>",
        "home/living room/ spaced . dots /",
    ] {
        p.publish(t, QoS::AtLeastOnce, false, t).await;
    }
    let got: Vec<(String, String)> = sub
        .recv_n(4)
        .await
        .iter()
        .map(|m| (text(&m.topic), text(&m.payload)))
        .collect();
    let want: Vec<(String, String)> = [
        "home/living room/temp",
        "a/*/b",
        "tab\there/>",
        "home/living room/ spaced . dots /",
    ]
    .iter()
    .map(|t| (t.to_string(), t.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_reaches_escaped_topics_both_ways() {
    let b = mqtt_broker().await;
    let nats = within("NATS connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let mut ns = nats.subscribe("home.living/20room.>").await.unwrap();
    nats.flush().await.unwrap();
    let mut m = V4::new(&b, "escape-nats").await;
    m.subscribe("home/living room/#", QoS::AtMostOnce).await;
    m.publish("home/living room/temp", QoS::AtLeastOnce, false, "21.5")
        .await;
    let got = within("NATS message", ns.next()).await.unwrap();
    assert_eq!(got.subject.as_str(), "home.living/20room.temp");
    assert_eq!(&got.payload[..], b"21.5");
    // MQTT's own copy, then the one from NATS.
    assert_eq!(m.recv().await.topic, "home/living room/temp");
    nats.publish("home.living/20room.hum", "40".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let from_nats = m.recv().await;
    assert_eq!(
        (from_nats.topic.as_str(), &from_nats.payload[..]),
        ("home/living room/hum", &b"40"[..])
    );
}

fn mosquitto(tool: &str) -> tokio::process::Command {
    assert!(
        std::process::Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok(),
        "{tool} is not installed: apt-get install mosquitto-clients (scripts/test does)"
    );
    let mut c = tokio::process::Command::new(tool);
    c.kill_on_drop(true);
    c
}

async fn mosquitto_pub(b: &TestBroker, version: &str, topic: &str, payload: &str, retain: bool) {
    let port = b.mqtt_port().to_string();
    let mut cmd = mosquitto("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"])
        .args(["-t", topic, "-m", payload]);
    if retain {
        cmd.arg("-r");
    }
    let out = within("mosquitto_pub", cmd.output()).await.unwrap();
    assert!(
        out.status.success(),
        "mosquitto_pub -t {topic:?}: {}",
        text(&out.stderr)
    );
}

/// `mosquitto_sub -C 1 -v` for `filter`: the first message as `topic payload`.
async fn mosquitto_sub_one(b: &TestBroker, version: &str, filter: &str) -> String {
    let port = b.mqtt_port().to_string();
    let out = within(
        "mosquitto_sub",
        mosquitto("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"])
            .args(["-t", filter, "-C", "1", "-v"])
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "mosquitto_sub: {}", text(&out.stderr));
    text(&out.stdout).trim_end_matches('\n').to_owned()
}

/// mosquitto's own clients, 3.1.1 and 5: retained messages on topics with a space
/// and a `*` level come back under the same topics (retained, so the subscriber
/// needs no timing to see them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_round_trip_escaped_topics() {
    let b = mqtt_broker().await;
    for (version, topic) in [
        ("mqttv311", "home/living room/temp"),
        ("mqttv5", "home/dining room/temp"),
        ("mqttv311", "a/*/b"),
        ("mqttv5", "x/>/y"),
    ] {
        mosquitto_pub(&b, version, topic, "v1", true).await;
        let line = mosquitto_sub_one(&b, version, topic).await;
        assert_eq!(line, format!("{topic} v1"), "{version}");
    }
    let line = mosquitto_sub_one(&b, "mqttv5", "home/+/temp").await;
    assert!(
        line == "home/dining room/temp v1" || line == "home/living room/temp v1",
        "{line}"
    );
}
