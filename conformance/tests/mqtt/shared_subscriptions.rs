//! Shared subscriptions `$share/<group>/<filter>`: each message goes to one member
//! of a group, every group gets every message, and plain subscribers still get all.

use crate::support::{LONG_GUARD, V4, V5, text, within_for};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::time::Duration;

const N: usize = 30;

/// Reads from every member until `n` messages arrived in total.
async fn collect(members: &mut [V4], n: usize) -> Vec<Vec<String>> {
    let mut per: Vec<Vec<String>> = vec![Vec::new(); members.len()];
    within_for(LONG_GUARD, "shared deliveries", async {
        while per.iter().map(Vec::len).sum::<usize>() < n {
            for (i, m) in members.iter_mut().enumerate() {
                for p in m.drain_for(Duration::from_millis(100)).await {
                    if let rumqttc::Packet::Publish(p) = p {
                        per[i].push(text(&p.payload));
                    }
                }
            }
        }
    })
    .await;
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_goes_to_one_member_of_each_group() {
    let b = mqtt_broker().await;
    let mut g1 = Vec::new();
    for i in 0..3 {
        let mut c = V4::new(&b, &format!("g1-{i}")).await;
        c.subscribe("$share/g1/jobs/+", QoS::AtLeastOnce).await;
        g1.push(c);
    }
    let mut g2 = Vec::new();
    for i in 0..2 {
        let mut c = V4::new(&b, &format!("g2-{i}")).await;
        c.subscribe("$share/g2/jobs/#", QoS::AtLeastOnce).await;
        g2.push(c);
    }
    let mut plain = V4::new(&b, "plain").await;
    plain.subscribe("jobs/+", QoS::AtLeastOnce).await;

    let mut p = V4::new(&b, "share-pub").await;
    for i in 0..N {
        p.publish("jobs/x", QoS::AtLeastOnce, false, format!("j{i}"))
            .await;
    }
    let all: Vec<String> = (0..N).map(|i| format!("j{i}")).collect();

    for (name, group) in [("g1", &mut g1), ("g2", &mut g2)] {
        let per = collect(group, N).await;
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for m in per.iter().flatten() {
            *seen.entry(m.clone()).or_default() += 1;
        }
        assert!(
            seen.values().all(|c| *c == 1),
            "{name}: a message went to two members: {per:?}"
        );
        let mut got: Vec<String> = seen.into_keys().collect();
        got.sort();
        let mut want = all.clone();
        want.sort();
        assert_eq!(got, want, "{name}: every message once");
        assert!(
            per.iter().filter(|v| !v.is_empty()).count() > 1,
            "{name}: load not shared: {per:?}"
        );
    }
    let got: Vec<String> = plain
        .recv_n(N)
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, all, "a plain subscriber gets everything, in order");
}

/// A NATS publish reaches one member of an MQTT share group; the group is the
/// engine's queue group, so NATS queue subscribers of the same name share with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_group_is_an_engine_queue_group() {
    let b = mqtt_broker().await;
    let mut members = Vec::new();
    for i in 0..2 {
        let mut c = V4::new(&b, &format!("qg-{i}")).await;
        c.subscribe("$share/workers/tasks/#", QoS::AtMostOnce).await;
        members.push(c);
    }
    let nats = async_nats::connect(b.nats_url()).await.unwrap();
    let mut qsub = nats
        .queue_subscribe("tasks.>", "workers".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    for i in 0..N {
        nats.publish(format!("tasks.t{}", i % 3), format!("t{i}").into())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    let mut nats_got = Vec::new();
    let mut mqtt_got: Vec<String> = Vec::new();
    within_for(LONG_GUARD, "all tasks", async {
        while nats_got.len() + mqtt_got.len() < N {
            while let Ok(Some(m)) = tokio::time::timeout(
                Duration::from_millis(50),
                futures::StreamExt::next(&mut qsub),
            )
            .await
            {
                nats_got.push(text(&m.payload));
            }
            for c in members.iter_mut() {
                for p in c.drain_for(Duration::from_millis(50)).await {
                    if let rumqttc::Packet::Publish(p) = p {
                        mqtt_got.push(text(&p.payload));
                    }
                }
            }
        }
    })
    .await;
    let mut all: Vec<String> = nats_got.iter().chain(&mqtt_got).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        N,
        "each task once: nats {nats_got:?} mqtt {mqtt_got:?}"
    );
    assert_eq!(nats_got.len() + mqtt_got.len(), N, "no task twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_shared_subscription_with_no_local_is_a_protocol_error() {
    let b = mqtt_broker().await;
    let mut c = V5::new(&b, "share-nl").await;
    let mut f = rumqttc::v5::mqttbytes::v5::Filter::new(
        "$share/g/nl/t",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
    );
    f.nolocal = true;
    c.client.subscribe_many([f]).await.unwrap();
    // rumqttc reports a server DISCONNECT as its error, with the reason code.
    let (why, _) = c.closed().await;
    assert!(
        why.contains("ServerDisconnect") && why.contains("ProtocolError"),
        "{why}"
    );
}

/// Retained messages are not sent when a shared subscription is made (MQTT 5
/// §4.8.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_not_sent_to_new_shared_subscriptions() {
    let b = mqtt_broker().await;
    let mut p = V4::new(&b, "share-ret-pub").await;
    p.publish("sr/t", QoS::AtLeastOnce, true, "retained").await;
    let mut c = V4::new(&b, "share-ret").await;
    c.subscribe("$share/g/sr/t", QoS::AtLeastOnce).await;
    p.publish("sr/t", QoS::AtLeastOnce, false, "sentinel").await;
    let got: Vec<String> = c
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["sentinel"]);
}
