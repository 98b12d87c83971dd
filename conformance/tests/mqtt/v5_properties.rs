//! MQTT 5 properties: inbound topic aliases, subscription identifiers, No-Local,
//! message expiry (an expired queued message is not delivered; the interval is
//! counted down), Receive Maximum (DISCONNECT 0x93 when a client exceeds ours) and
//! Maximum Packet Size (DISCONNECT 0x95 inbound; too-large messages are not sent
//! to a client that set a smaller one).

use crate::support::{Raw, V4, V5, connect_v5, publish_raw, text, v5_options};
use junction_conformance::{mqtt_broker, mqtt_broker_with};
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{Filter, PublishProperties, SubscribeProperties};
use std::time::Duration;

fn alias(n: u16) -> Vec<u8> {
    let mut p = vec![0x23];
    p.extend(n.to_be_bytes());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_topic_alias_is_resolved() {
    let b = mqtt_broker().await;
    let mut s = V4::new(&b, "alias-sub").await;
    s.subscribe("alias/#", QoS::AtLeastOnce).await;
    let mut raw = Raw::connected(&b, &connect_v5("alias-pub", true, 60, &[])).await;
    raw.send(&publish_raw(
        b"alias/long/topic",
        1,
        1,
        false,
        false,
        b"first",
        Some(&alias(1)),
    ))
    .await;
    assert_eq!(raw.expect(4).await.pkid(), 1);
    raw.send(&publish_raw(
        b"",
        1,
        2,
        false,
        false,
        b"by-alias",
        Some(&alias(1)),
    ))
    .await;
    assert_eq!(raw.expect(4).await.ack_reason(), 0);
    // Re-map alias 1.
    raw.send(&publish_raw(
        b"alias/other",
        0,
        0,
        false,
        false,
        b"remapped",
        Some(&alias(1)),
    ))
    .await;
    raw.send(&publish_raw(
        b"",
        1,
        3,
        false,
        false,
        b"by-alias-2",
        Some(&alias(1)),
    ))
    .await;
    raw.expect(4).await;
    let got: Vec<(String, String)> = s
        .recv_n(4)
        .await
        .iter()
        .map(|m| (m.topic.clone(), text(&m.payload)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("alias/long/topic".into(), "first".into()),
            ("alias/long/topic".into(), "by-alias".into()),
            ("alias/other".into(), "remapped".into()),
            ("alias/other".into(), "by-alias-2".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_topic_aliases_disconnect() {
    let b = mqtt_broker_with(|c| c.mqtt.topic_alias_maximum = 4).await;
    // Above the maximum we announced: 0x94.
    let mut raw = Raw::connected(&b, &connect_v5("alias-big", true, 60, &[])).await;
    raw.send(&publish_raw(
        b"t",
        0,
        0,
        false,
        false,
        b"x",
        Some(&alias(5)),
    ))
    .await;
    let seen = raw.until_closed().await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x94], "{seen:?}");
    // An alias never set, with an empty topic: protocol error 0x82.
    let mut raw = Raw::connected(&b, &connect_v5("alias-unknown", true, 60, &[])).await;
    raw.send(&publish_raw(b"", 0, 0, false, false, b"x", Some(&alias(2))))
        .await;
    let seen = raw.until_closed().await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x82], "{seen:?}");
}

/// Outbound aliases: a client that allows them gets the topic and an alias the
/// first time, then the alias alone, and every message resolves to its topic.
/// (rumqttc's events show packets before its own alias resolution, so the test
/// resolves them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_topic_aliases_resolve_to_the_topic() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "alias-out");
    o.set_topic_alias_max(Some(10));
    let (mut s, _) = V5::connect(o).await;
    s.subscribe("ao/#", QoS5::AtLeastOnce).await;
    let mut p = V5::new(&b, "alias-out-pub").await;
    for i in 0..3 {
        p.publish("ao/same/topic", QoS5::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    p.publish("ao/other", QoS5::AtLeastOnce, false, "other")
        .await;
    let mut aliases: std::collections::HashMap<u16, bytes::Bytes> = Default::default();
    let mut resolved = Vec::new();
    for m in s.recv_n(4).await {
        let alias = m.properties.as_ref().and_then(|p| p.topic_alias);
        let topic = match (m.topic.is_empty(), alias) {
            (false, Some(a)) => {
                aliases.insert(a, m.topic.clone());
                m.topic.clone()
            }
            (false, None) => m.topic.clone(),
            (true, Some(a)) => aliases
                .get(&a)
                .cloned()
                .unwrap_or_else(|| panic!("alias {a} never set: {m:?}")),
            (true, None) => panic!("empty topic without an alias: {m:?}"),
        };
        assert!(
            alias.is_none_or(|a| (1..=10).contains(&a)),
            "alias within our maximum: {m:?}"
        );
        resolved.push((text(&topic), text(&m.payload)));
    }
    assert_eq!(
        resolved,
        vec![
            ("ao/same/topic".into(), "m0".into()),
            ("ao/same/topic".into(), "m1".into()),
            ("ao/same/topic".into(), "m2".into()),
            ("ao/other".into(), "other".into()),
        ]
    );
    // A client that allows none gets none.
    let mut plain = V5::new(&b, "alias-none").await;
    plain.subscribe("ao/#", QoS5::AtLeastOnce).await;
    p.publish("ao/same/topic", QoS5::AtLeastOnce, false, "x")
        .await;
    p.publish("ao/same/topic", QoS5::AtLeastOnce, false, "y")
        .await;
    for m in plain.recv_n(2).await {
        assert_eq!(&m.topic[..], b"ao/same/topic");
        assert_eq!(m.properties.and_then(|p| p.topic_alias), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifiers_are_returned() {
    let b = mqtt_broker().await;
    let mut c = V5::new(&b, "subid").await;
    c.subscribe_with(
        Filter::new("sid/#", QoS5::AtLeastOnce),
        Some(SubscribeProperties {
            id: Some(7),
            user_properties: vec![],
        }),
    )
    .await;
    c.subscribe_with(
        Filter::new("sid/a", QoS5::AtLeastOnce),
        Some(SubscribeProperties {
            id: Some(9),
            user_properties: vec![],
        }),
    )
    .await;
    let mut p = V5::new(&b, "subid-pub").await;
    p.publish("sid/b", QoS5::AtLeastOnce, false, "b").await;
    p.publish("sid/a", QoS5::AtLeastOnce, false, "a").await;
    p.publish("sid/end", QoS5::AtLeastOnce, false, "sentinel")
        .await;
    let got = c.recv_until(b"sentinel").await;
    let ids = |payload: &[u8]| -> Vec<usize> {
        let mut v: Vec<usize> = got
            .iter()
            .filter(|m| &m.payload[..] == payload)
            .flat_map(|m| {
                m.properties
                    .clone()
                    .map(|p| p.subscription_identifiers)
                    .unwrap_or_default()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(b"b"), vec![7]);
    assert_eq!(
        ids(b"a"),
        vec![7, 9],
        "one copy with both ids, or one per subscription: {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_skips_own_messages() {
    let b = mqtt_broker().await;
    let mut me = V5::new(&b, "nolocal").await;
    let mut f = Filter::new("nl/t", QoS5::AtLeastOnce);
    f.nolocal = true;
    me.subscribe_with(f, None).await;
    let mut echo = V5::new(&b, "local-ok").await;
    echo.subscribe("nl/t", QoS5::AtLeastOnce).await;

    me.publish("nl/t", QoS5::AtLeastOnce, false, "mine").await;
    echo.publish("nl/t", QoS5::AtLeastOnce, false, "theirs")
        .await;
    let got: Vec<String> = me
        .recv_until(b"theirs")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["theirs"], "No-Local delivered my own message");
    let got: Vec<String> = echo
        .recv_n(2)
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(
        got,
        ["mine", "theirs"],
        "without No-Local, own messages arrive"
    );
}

/// No-Local holds for a persistent session too, whose QoS 1/2 deliveries come
/// from storage rather than live fan-out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_holds_for_persistent_session() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "nolocal-persist");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut me, _) = V5::connect(o).await;
    let mut f = Filter::new("nlp/t", QoS5::AtLeastOnce);
    f.nolocal = true;
    me.subscribe_with(f, None).await;
    me.publish("nlp/t", QoS5::AtLeastOnce, false, "mine").await;
    let mut other = V5::new(&b, "nolocal-other").await;
    other
        .publish("nlp/t", QoS5::AtLeastOnce, false, "theirs")
        .await;
    let got: Vec<String> = me
        .recv_until(b"theirs")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["theirs"], "No-Local delivered my own message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_queued_message_is_not_delivered() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "expiry-sub");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(300));
    let (mut s, _) = V5::connect(o.clone()).await;
    s.subscribe("mexp/#", QoS5::AtLeastOnce).await;
    s.disconnect().await;

    let mut p = V5::new(&b, "expiry-pub").await;
    let expiring = |secs| PublishProperties {
        message_expiry_interval: Some(secs),
        ..Default::default()
    };
    p.publish_with(
        "mexp/a",
        QoS5::AtLeastOnce,
        false,
        "short",
        Some(expiring(1)),
    )
    .await;
    p.publish_with(
        "mexp/a",
        QoS5::AtLeastOnce,
        false,
        "long",
        Some(expiring(600)),
    )
    .await;
    p.publish("mexp/a", QoS5::AtLeastOnce, false, "forever")
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let (mut s, ack) = V5::connect(o).await;
    assert!(ack.session_present);
    let got = s.recv_n(2).await;
    let payloads: Vec<String> = got.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(
        payloads,
        ["long", "forever"],
        "the expired one was delivered"
    );
    let left = got[0]
        .properties
        .as_ref()
        .and_then(|p| p.message_expiry_interval)
        .expect("expiry interval forwarded");
    assert!(left < 600 && left > 0, "counted down: {left}");
    assert_eq!(
        got[1]
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval),
        None
    );
}

/// A retained message with an expiry is not replayed once it has expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_retained_message_is_not_replayed() {
    let b = mqtt_broker().await;
    let mut p = V5::new(&b, "rexp-pub").await;
    let props = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    p.publish_with(
        "rexp/t",
        QoS5::AtLeastOnce,
        true,
        "short-lived",
        Some(props),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut s = V5::new(&b, "rexp-sub").await;
    s.subscribe("rexp/t", QoS5::AtLeastOnce).await;
    p.publish("rexp/t", QoS5::AtLeastOnce, false, "sentinel")
        .await;
    let got: Vec<String> = s
        .recv_until(b"sentinel")
        .await
        .iter()
        .map(|m| text(&m.payload))
        .collect();
    assert_eq!(got, ["sentinel"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_receive_maximum_gets_disconnect_0x93() {
    let b = mqtt_broker_with(|c| c.mqtt.receive_maximum = 2).await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("recvmax", true, 60, &[])).await;
    let ack = raw.expect(2).await;
    // Receive Maximum property (0x21) = 2 in the CONNACK.
    assert!(
        ack.body.windows(3).any(|w| w == [0x21, 0, 2]),
        "CONNACK {ack:?}"
    );
    // QoS 2 publishes stay in flight until PUBREL: the third exceeds the maximum.
    for pkid in 1..=2u16 {
        raw.send(&publish_raw(
            b"rm/t",
            2,
            pkid,
            false,
            false,
            b"x",
            Some(&[]),
        ))
        .await;
        assert_eq!(raw.expect(5).await.pkid(), pkid);
    }
    raw.send(&publish_raw(b"rm/t", 2, 3, false, false, b"x", Some(&[])))
        .await;
    let seen = raw.until_closed().await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x93], "{seen:?}");
    crate::support::still_serves(&b).await;
}

/// A client that keeps writing past the Receive Maximum still reads the
/// DISCONNECT 0x93: the broker stops writing, reads (and drops) what the client
/// is still sending for a moment, then closes. Closed at once with bytes
/// unread, the socket sends a reset, and a client still writing fails on it
/// (broken pipe) before it reads the reason code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_writing_past_receive_maximum_reads_disconnect_0x93() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = mqtt_broker_with(|c| c.mqtt.receive_maximum = 2).await;
    let mut s = tokio::net::TcpStream::connect(b.mqtt_addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(&connect_v5("recvmax-writer", true, 60, &[]))
        .await
        .unwrap();
    // QoS 2 publishes, none released: the third exceeds the maximum. The client
    // goes on writing for a while after it, as a busy producer would.
    let mut writes_failed = 0;
    for pkid in 1..=60u16 {
        let p = publish_raw(b"rm/w", 2, pkid, false, false, &[b'x'; 256], Some(&[]));
        if s.write_all(&p).await.is_err() {
            writes_failed += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut got = Vec::new();
    let read = crate::support::within("the broker to close", async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    assert_eq!(writes_failed, 0, "the client's writes failed (reset)");
    assert!(read.is_ok(), "the connection was reset: {read:?}");
    // CONNACK (0x20 …), PUBRECs, then DISCONNECT 0xE0 with reason 0x93.
    let pos = got
        .windows(3)
        .position(|w| w[0] == 0xE0 && w[2] == 0x93)
        .expect("a DISCONNECT with reason 0x93");
    assert!(pos > 0);
    crate::support::still_serves(&b).await;
}

/// Our Receive Maximum towards a client: with its Receive Maximum 1 the broker
/// keeps one QoS 1 message in flight and sends the next after the PUBACK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_receive_maximum_limits_in_flight_messages() {
    let b = mqtt_broker().await;
    let recv_max_1 = [0x21, 0, 1];
    let mut raw = Raw::connected(&b, &connect_v5("rm-client", true, 60, &recv_max_1)).await;
    raw.send(&crate::support::subscribe_raw(1, "rmc/t", 1, Some(&[])))
        .await;
    raw.expect(9).await;
    let mut p = V5::new(&b, "rm-pub").await;
    for i in 0..3 {
        p.publish("rmc/t", QoS5::AtLeastOnce, false, format!("m{i}"))
            .await;
    }
    for i in 0..3 {
        let m = raw.expect(3).await;
        assert_eq!(m.publish_parts(true).1, format!("m{i}").as_bytes());
        // Nothing else is sent while this one is unacknowledged.
        if i < 2 {
            assert!(
                raw.drain_for(Duration::from_millis(300)).await.is_empty(),
                "more than Receive Maximum in flight"
            );
        }
        raw.send(&crate::support::puback(m.publish_pkid())).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_larger_than_maximum_gets_disconnect_0x95() {
    let b = mqtt_broker_with(|c| c.mqtt.max_packet_size = 1024).await;
    let mut raw = Raw::open(&b).await;
    raw.send(&connect_v5("maxpkt", true, 60, &[])).await;
    let ack = raw.expect(2).await;
    // Maximum Packet Size property (0x27) = 1024.
    assert!(
        ack.body.windows(5).any(|w| w == [0x27, 0, 0, 4, 0]),
        "CONNACK {ack:?}"
    );
    raw.send(&publish_raw(
        b"big/t",
        0,
        0,
        false,
        false,
        &[b'x'; 2000],
        Some(&[]),
    ))
    .await;
    let seen = raw.until_closed().await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|p| p.kind() == 14)
        .map(|p| p.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x95], "{seen:?}");
    crate::support::still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_larger_than_client_maximum_are_not_sent() {
    let b = mqtt_broker().await;
    let mut o = v5_options(&b, "small-client");
    o.set_max_packet_size(Some(256));
    let (mut s, _) = V5::connect(o).await;
    s.subscribe("cmax/#", QoS5::AtLeastOnce).await;
    let mut p = V5::new(&b, "cmax-pub").await;
    p.publish("cmax/t", QoS5::AtLeastOnce, false, vec![b'x'; 1000])
        .await;
    p.publish("cmax/t", QoS5::AtLeastOnce, false, "sentinel")
        .await;
    let got = s.recv_until(b"sentinel").await;
    assert_eq!(
        got.len(),
        1,
        "a packet over the client's maximum was sent: {:?}",
        got.iter().map(|m| m.payload.len()).collect::<Vec<_>>()
    );
}

/// Payload Format Indicator 1 with a payload that is not UTF-8: PUBACK 0x99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_payload_with_format_indicator_gets_0x99() {
    let b = mqtt_broker().await;
    let mut c = V5::new(&b, "pfi").await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        ..Default::default()
    };
    let reason = c
        .publish_with(
            "pfi/t",
            QoS5::AtLeastOnce,
            false,
            vec![0xFF, 0xFE],
            Some(props),
        )
        .await;
    assert_eq!(reason.as_deref(), Some("PayloadFormatInvalid"));
}

/// Request Problem Information 0: no reason string on a PUBACK (the reason code
/// stays); with the default (1) the refusal is explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_problem_information_0_drops_reason_strings() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("rpi0", true, 60, &[0x17, 0])).await;
    raw.send(&publish_raw(b"$SYS/x", 1, 1, false, false, b"x", Some(&[])))
        .await;
    let ack = raw.expect(4).await;
    assert_eq!(ack.ack_reason(), 0x87);
    assert!(
        ack.body.len() == 3 || ack.body[3] == 0,
        "no properties (no reason string): {ack:?}"
    );
    let mut raw = Raw::connected(&b, &connect_v5("rpi1", true, 60, &[])).await;
    raw.send(&publish_raw(b"$SYS/x", 1, 1, false, false, b"x", Some(&[])))
        .await;
    let ack = raw.expect(4).await;
    assert_eq!(ack.ack_reason(), 0x87);
    assert_eq!(
        ack.body.get(4),
        Some(&0x1F),
        "a reason string (0x1F): {ack:?}"
    );
}
