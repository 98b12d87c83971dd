//! A tenant exports a stream of subjects; another imports it with a prefix.
//! What the exporter publishes there (NATS, MQTT, HTTP) reaches the importer's
//! subscribers and stations under the prefix; nothing else crosses, and nothing
//! crosses back. An import of something not exported is refused at start.

use crate::common::{nats_as, post_as, tenant};
use crate::support::{V4, text, v4_options, within};
use async_nats::jetstream;
use futures::StreamExt;
use junction::config::{ExportConfig, ImportConfig, ImportSource};
use junction_conformance::mqtt_broker_with;
use rumqttc::QoS;

fn exporter_and_importer(c: &mut junction::config::Config) {
    let mut acme = tenant("acme", &[("alice", "pw")]);
    acme.exports = vec![ExportConfig {
        stream: "public.>".into(),
    }];
    let mut globex = tenant("globex", &[("bob", "pw")]);
    globex.imports = vec![ImportConfig {
        stream: ImportSource {
            tenant: "acme".into(),
            subject: "public.>".into(),
        },
        prefix: Some("fromacme".into()),
    }];
    c.tenants = vec![acme, globex];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_stream_arrives_under_its_prefix() {
    let b = mqtt_broker_with(exporter_and_importer).await;
    let alice = nats_as(&b, "alice", "pw").await;
    let bob = nats_as(&b, "bob", "pw").await;
    let mut bob_sub = bob.subscribe("fromacme.>").await.unwrap();
    let mut bob_all = bob.subscribe(">").await.unwrap();
    bob.flush().await.unwrap();
    let js = jetstream::new(bob.clone());
    js.create_stream(jetstream::stream::Config {
        name: "imported".into(),
        subjects: vec!["fromacme.public.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut o = v4_options(&b, "bob-mqtt");
    o.set_credentials("bob", "pw");
    let (mut bob_mqtt, _) = V4::connect(o).await;
    bob_mqtt
        .subscribe("fromacme/public/#", QoS::AtLeastOnce)
        .await;
    let mut alice_sub = alice.subscribe("public.>").await.unwrap();
    alice.flush().await.unwrap();

    // Bob publishing on public.> does not reach acme.
    bob.publish("public.back", "from globex".into())
        .await
        .unwrap();
    bob.flush().await.unwrap();
    // Alice's private subjects do not cross; her public ones do, from every
    // protocol.
    alice.publish("private.x", "private".into()).await.unwrap();
    alice
        .publish("public.nats", "over nats".into())
        .await
        .unwrap();
    alice.flush().await.unwrap();
    let mut o = v4_options(&b, "alice-mqtt");
    o.set_credentials("alice", "pw");
    let (mut alice_mqtt, _) = V4::connect(o).await;
    alice_mqtt
        .publish("public/mqtt", QoS::AtLeastOnce, false, "over mqtt")
        .await;
    let (status, body) = post_as(&b, "alice", "pw", "/v1/subjects/public.http", "over http").await;
    assert_eq!(status, 200, "{body}");

    let mut got = Vec::new();
    for _ in 0..3 {
        let m = within("imported message", bob_sub.next()).await.unwrap();
        got.push((m.subject.to_string(), text(&m.payload)));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("fromacme.public.http".to_string(), "over http".to_string()),
            ("fromacme.public.mqtt".into(), "over mqtt".into()),
            ("fromacme.public.nats".into(), "over nats".into()),
        ]
    );
    // Bob's `>` saw his own publish and the three imports, never "private".
    let mut all = Vec::new();
    for _ in 0..4 {
        let m = within("message", bob_all.next()).await.unwrap();
        all.push(text(&m.payload));
    }
    assert!(!all.contains(&"private".to_string()), "{all:?}");
    let mqtt: Vec<String> = bob_mqtt
        .recv_n(3)
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(mqtt.len(), 3, "{mqtt:?}");
    // The importer's station captured them.
    let mut s = js.get_stream("imported").await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 3);
    // Acme's own subscriber got its own three, not globex's.
    let mut mine = Vec::new();
    for _ in 0..3 {
        let m = within("acme message", alice_sub.next()).await.unwrap();
        mine.push(text(&m.payload));
    }
    assert!(!mine.contains(&"from globex".to_string()), "{mine:?}");
}

#[tokio::test]
async fn an_import_of_what_is_not_exported_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = junction_conformance::test_config(dir.path());
    exporter_and_importer(&mut c);
    c.tenants[1].imports[0].stream.subject = "private.>".into();
    let e = c.validate().expect_err("refused");
    assert!(e.0.contains("does not export it"), "{}", e.0);
}
