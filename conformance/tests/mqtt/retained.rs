//! Retained messages: stored, replayed on subscribe (wildcards too) with the
//! retain flag, cleared by an empty retained publish; MQTT 5 Retain As Published
//! and Retain Handling 0, 1 and 2.

use crate::support::{V4, V5, text};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_is_replayed_on_wildcard_subscribe_and_cleared_by_empty_publish() {
    let b = mqtt_broker().await;
    let mut p = V4::new(&b, "ret-pub").await;
    p.publish("ret/a/temp", QoS::AtLeastOnce, true, "21").await;
    p.publish("ret/b/temp", QoS::AtMostOnce, true, "19").await;
    p.publish("ret/b/temp/deeper", QoS::ExactlyOnce, true, "d")
        .await;
    p.publish("ret/a/temp", QoS::AtLeastOnce, true, "22").await; // replaces 21
    p.publish("other/x", QoS::AtLeastOnce, true, "o").await;

    let mut s = V4::new(&b, "ret-sub").await;
    s.subscribe("ret/+/temp", QoS::ExactlyOnce).await;
    p.publish("ret/z/temp", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = s.recv_until(b"sentinel").await;
    let mut retained: Vec<(String, String, bool, QoS)> = got[..got.len() - 1]
        .iter()
        .map(|m| (m.topic.clone(), text(&m.payload), m.retain, m.qos))
        .collect();
    retained.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        retained,
        vec![
            ("ret/a/temp".into(), "22".into(), true, QoS::AtLeastOnce),
            ("ret/b/temp".into(), "19".into(), true, QoS::AtMostOnce),
        ]
    );
    assert!(
        !got.last().unwrap().retain,
        "a live message is not retained"
    );

    let mut all = V4::new(&b, "ret-all").await;
    all.subscribe("ret/#", QoS::AtLeastOnce).await;
    p.publish("ret/z/x", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = all.recv_until(b"sentinel").await;
    assert_eq!(got.len(), 4, "three retained + sentinel: {got:?}");

    // Clear one with an empty retained publish.
    p.publish("ret/a/temp", QoS::AtLeastOnce, true, "").await;
    let mut again = V4::new(&b, "ret-again").await;
    again.subscribe("ret/+/temp", QoS::AtLeastOnce).await;
    p.publish("ret/z/temp", QoS::AtLeastOnce, false, "sentinel")
        .await;
    let got = again.recv_until(b"sentinel").await;
    let topics: Vec<&str> = got.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, vec!["ret/b/temp", "ret/z/temp"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retain_as_published() {
    let b = mqtt_broker().await;
    let mut keep = V5::new(&b, "rap-keep").await;
    let mut f = Filter::new("rap/t", QoS5::AtLeastOnce);
    f.preserve_retain = true;
    keep.subscribe_with(f, None).await;
    let mut clear = V5::new(&b, "rap-clear").await;
    clear.subscribe("rap/t", QoS5::AtLeastOnce).await;
    let mut v4 = V4::new(&b, "rap-v4").await;
    v4.subscribe("rap/t", QoS::AtLeastOnce).await;

    let mut p = V5::new(&b, "rap-pub").await;
    p.publish("rap/t", QoS5::AtLeastOnce, true, "live").await;
    let k = keep.recv().await;
    assert!(k.retain, "Retain As Published keeps the flag: {k:?}");
    let c = clear.recv().await;
    assert!(
        !c.retain,
        "live delivery clears the flag without RAP: {c:?}"
    );
    let v = v4.recv().await;
    assert!(!v.retain, "3.1.1 live delivery clears the flag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_retain_handling_0_1_2() {
    let b = mqtt_broker().await;
    let mut p = V5::new(&b, "rh-pub").await;
    p.publish("rh/t", QoS5::AtLeastOnce, true, "retained").await;

    async fn subscribe_and_collect(c: &mut V5, p: &mut V5, rule: RetainForwardRule) -> Vec<String> {
        let mut f = Filter::new("rh/t", QoS5::AtLeastOnce);
        f.retain_forward_rule = rule;
        c.subscribe_with(f, None).await;
        p.publish("rh/t", QoS5::AtLeastOnce, false, "sentinel")
            .await;
        c.recv_until(b"sentinel")
            .await
            .iter()
            .map(|m| text(&m.payload))
            .collect()
    }

    // 0: on every subscribe, including a repeated one.
    let mut c = V5::new(&b, "rh0").await;
    assert_eq!(
        subscribe_and_collect(&mut c, &mut p, RetainForwardRule::OnEverySubscribe).await,
        ["retained", "sentinel"]
    );
    assert_eq!(
        subscribe_and_collect(&mut c, &mut p, RetainForwardRule::OnEverySubscribe).await,
        ["retained", "sentinel"]
    );
    // 1: only when the subscription is new.
    let mut c = V5::new(&b, "rh1").await;
    assert_eq!(
        subscribe_and_collect(&mut c, &mut p, RetainForwardRule::OnNewSubscribe).await,
        ["retained", "sentinel"]
    );
    assert_eq!(
        subscribe_and_collect(&mut c, &mut p, RetainForwardRule::OnNewSubscribe).await,
        ["sentinel"]
    );
    // 2: never.
    let mut c = V5::new(&b, "rh2").await;
    assert_eq!(
        subscribe_and_collect(&mut c, &mut p, RetainForwardRule::Never).await,
        ["sentinel"]
    );
}

/// A retained message is replayed at min(its QoS, the subscription's QoS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_replay_follows_subscription_qos() {
    let b = mqtt_broker().await;
    let mut p = V4::new(&b, "rq-pub").await;
    p.publish("rq/t", QoS::ExactlyOnce, true, "two").await;
    let mut s = V4::new(&b, "rq-sub").await;
    s.subscribe("rq/t", QoS::AtMostOnce).await;
    let m = s.recv().await;
    assert_eq!((m.qos, m.retain), (QoS::AtMostOnce, true));
}
