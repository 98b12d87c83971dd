//! Shared subscriptions `$share/<group>/<filter>`: each message goes to one member
//! of a group, every group gets every message, and plain subscribers still get all;
//! a group whose members have persistent sessions keeps a queue while they are all
//! offline.

use crate::support::{LONG_GUARD, V4, V5, text, v4_options, within_for};
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

/// A member with a persistent session (clean session 0).
async fn persistent_member(b: &junction_conformance::TestBroker, id: &str) -> (V4, bool) {
    let mut o = v4_options(b, id);
    o.set_clean_session(false);
    let (c, ack) = V4::connect(o).await;
    (c, ack.session_present)
}

/// Each payload of `got` once, and exactly `want`.
fn assert_each_once(what: &str, got: &[String], want: &[String]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for m in got {
        *seen.entry(m.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        twice.is_empty(),
        "{what}: delivered more than once: {twice:?}"
    );
    let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(
        seen.into_keys().collect::<Vec<_>>(),
        want,
        "{what}: every message"
    );
}

/// A share group whose members all have persistent sessions keeps queueing while
/// every member is offline (as EMQX and HiveMQ do), and the first member back
/// gets the whole backlog, each message once; with both members back, each new
/// message goes to exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_of_persistent_sessions_queues_while_every_member_is_offline() {
    const N: usize = 100;
    let b = mqtt_broker().await;
    for i in 0..2 {
        let (mut c, _) = persistent_member(&b, &format!("sq-{i}")).await;
        c.subscribe("$share/g/sq/t", QoS::AtLeastOnce).await;
        c.disconnect().await;
    }
    let mut p = V4::new(&b, "sq-pub").await;
    let backlog: Vec<String> = (0..N).map(|i| format!("b{i}")).collect();
    for m in &backlog {
        p.publish("sq/t", QoS::AtLeastOnce, false, m.clone()).await;
    }

    let (mut first, present) = persistent_member(&b, "sq-0").await;
    assert!(present, "the member's session is kept");
    let got: Vec<String> = first
        .recv_n(N)
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_each_once("the backlog, to the first member back", &got, &backlog);

    let (second, present) = persistent_member(&b, "sq-1").await;
    assert!(present);
    let live: Vec<String> = (0..N).map(|i| format!("l{i}")).collect();
    for m in &live {
        p.publish("sq/t", QoS::AtLeastOnce, false, m.clone()).await;
    }
    let mut members = [first, second];
    let per = collect(&mut members, N).await;
    // Anything more (a duplicate of the backlog or of these) would show here.
    let mut all: Vec<String> = per.iter().flatten().cloned().collect();
    for m in members.iter_mut() {
        for pkt in m.drain_for(Duration::from_millis(300)).await {
            if let rumqttc::Packet::Publish(x) = pkt {
                all.push(text(&x.payload));
            }
        }
    }
    assert_each_once("with both members back", &all, &live);
}

/// A share group's queue goes with its last persistent member: once every
/// member's session has ended, nothing is queued for the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_queue_goes_with_its_last_persistent_member() {
    let b = mqtt_broker().await;
    for i in 0..2 {
        let (mut c, _) = persistent_member(&b, &format!("sg-{i}")).await;
        c.subscribe("$share/g/sg/t", QoS::AtLeastOnce).await;
        c.disconnect().await;
    }
    let mut p = V4::new(&b, "sg-pub").await;
    p.publish("sg/t", QoS::AtLeastOnce, false, "queued").await;
    // Both sessions end (a clean session discards the persistent one).
    for i in 0..2 {
        V4::new(&b, &format!("sg-{i}")).await.disconnect().await;
    }
    p.publish("sg/t", QoS::AtLeastOnce, false, "dropped").await;
    let (mut c, present) = persistent_member(&b, "sg-0").await;
    assert!(!present, "the session ended");
    c.subscribe("$share/g/sg/t", QoS::AtLeastOnce).await;
    p.publish("sg/t", QoS::AtLeastOnce, false, "sentinel").await;
    let got: Vec<String> = c
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["sentinel"], "the old queue went with the sessions");
}
