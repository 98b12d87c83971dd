//! MQTT-3.1.2-24 and -25: the server never sends a packet larger than the
//! client's Maximum Packet Size; a message too large for it is discarded for that
//! client alone, as if it had been sent, and the session goes on.
//!
//! The external interoperability suite found a 32-byte payload growing to 141
//! bytes with properties the broker added (lineage user properties, since opt-in
//! only) and dropped. These tests pin the size: a subscriber whose Maximum Packet
//! Size is exactly the publisher's PUBLISH gets it byte for byte, one byte more is
//! discarded, and what follows still arrives, live, through a topic alias and from
//! a persistent session's stored backlog.

use crate::support::{
    DISCONNECT, Raw, RawPacket, connect_v5, lstr, packet, puback, publish_raw, subscribe_raw,
};
use junction_conformance::{TestBroker, mqtt_broker, mqtt_broker_with};

/// Encoded MQTT 5 properties: user properties (0x26).
fn user_props(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.push(0x26);
        out.extend(lstr(k.as_bytes()));
        out.extend(lstr(v.as_bytes()));
    }
    out
}

/// CONNECT properties: Maximum Packet Size (0x27), then `more`.
fn max_packet_props(max: usize, more: &[u8]) -> Vec<u8> {
    let mut p = vec![0x27];
    p.extend((max as u32).to_be_bytes());
    p.extend_from_slice(more);
    p
}

/// Session Expiry Interval (0x11) of 300 s.
const KEEP_SESSION: [u8; 5] = [0x11, 0, 0, 1, 44];
/// Topic Alias Maximum (0x22) of 10.
const ALIASES_10: [u8; 3] = [0x22, 0, 10];

/// The whole packet as it was on the wire.
fn wire(p: &RawPacket) -> Vec<u8> {
    packet(p.first, &p.body)
}

/// The PUBLISH the publisher sends: QoS 1, packet id 7, three user properties.
fn published(topic: &str, payload: &[u8]) -> Vec<u8> {
    let props = user_props(&[("a", "1"), ("trace", "xyz"), ("a", "2")]);
    publish_raw(topic.as_bytes(), 1, 7, false, false, payload, Some(&props))
}

/// The same packet with the packet id the broker chose.
fn with_pkid(mut bytes: Vec<u8>, topic_len: usize, pkid: u16) -> Vec<u8> {
    // First byte, then the remaining length (a varint), then the topic.
    let mut i = 1;
    while bytes[i] & 0x80 != 0 {
        i += 1;
    }
    let at = i + 1 + 2 + topic_len;
    bytes[at..at + 2].copy_from_slice(&pkid.to_be_bytes());
    bytes
}

async fn publisher(b: &TestBroker, id: &str) -> Raw {
    Raw::connected(b, &connect_v5(id, true, 60, &[])).await
}

async fn publish_acked(p: &mut Raw, bytes: &[u8]) {
    p.send(bytes).await;
    let ack = p.expect(4).await;
    assert_eq!(ack.ack_reason(), 0, "PUBACK {ack:?}");
}

/// A subscriber whose Maximum Packet Size is exactly the size of the PUBLISH the
/// publisher sent gets that packet byte for byte (only its packet id differs):
/// the broker adds nothing that would push it over. One byte larger is
/// discarded for this client, and the session carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_exactly_at_the_client_maximum_arrives_unaltered_and_one_byte_more_is_discarded()
{
    let b = mqtt_broker().await;
    let topic = "mps/exact";
    let fits = published(topic, &[b'x'; 32]);
    let max = fits.len();
    let mut sub = Raw::connected(
        &b,
        &connect_v5("mps-exact", true, 60, &max_packet_props(max, &[])),
    )
    .await;
    sub.send(&subscribe_raw(1, "mps/#", 1, Some(&[]))).await;
    assert_eq!(sub.expect(9).await.body[3], 1, "granted QoS 1");

    let mut p = publisher(&b, "mps-exact-pub").await;
    publish_acked(&mut p, &fits).await;
    let got = sub.expect(3).await;
    assert_eq!(
        wire(&got),
        with_pkid(fits.clone(), topic.len(), got.publish_pkid()),
        "the subscriber gets the publisher's PUBLISH as it was sent"
    );
    sub.send(&puback(got.publish_pkid())).await;

    // One byte over: acknowledged to the publisher, never sent to this client.
    let over = published(topic, &[b'y'; 33]);
    assert_eq!(over.len(), max + 1);
    publish_acked(&mut p, &over).await;
    let sentinel = published(topic, b"sentinel");
    publish_acked(&mut p, &sentinel).await;
    let next = sub.expect(3).await;
    assert_eq!(
        next.publish_parts(true).1,
        b"sentinel",
        "the oversized message was sent, or the session broke: {next:?}"
    );
    sub.send(&puback(next.publish_pkid())).await;
    sub.send(&DISCONNECT).await;
    assert!(
        sub.until_closed().await.is_empty(),
        "nothing else was sent, no DISCONNECT from the broker"
    );
}

/// With topic aliases, a message discarded for its size must not leave an alias
/// behind that the client never learnt: the next message on that topic names
/// the topic, so the client can resolve it (an alias the client does not know
/// is a protocol error on its side, MQTT-3.3.2-8 read the other way round).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarded_message_sets_no_topic_alias_the_client_never_saw() {
    let b = mqtt_broker().await;
    let topic = "mps/alias";
    let mut sub = Raw::connected(
        &b,
        &connect_v5("mps-alias", true, 60, &max_packet_props(128, &ALIASES_10)),
    )
    .await;
    sub.send(&subscribe_raw(1, "mps/#", 1, Some(&[]))).await;
    sub.expect(9).await;
    let mut p = publisher(&b, "mps-alias-pub").await;
    publish_acked(&mut p, &published(topic, &[b'x'; 400])).await;
    for n in 0..2 {
        publish_acked(&mut p, &published(topic, format!("small{n}").as_bytes())).await;
    }
    let first = sub.expect(3).await;
    let (name, payload) = first.publish_parts(true);
    assert_eq!(payload, b"small0");
    assert_eq!(name, topic, "the first message sent names its topic");
    sub.send(&puback(first.publish_pkid())).await;
    // The second may use the alias the first set up.
    let second = sub.expect(3).await;
    assert_eq!(second.publish_parts(true).1, b"small1");
    sub.send(&puback(second.publish_pkid())).await;
}

/// A persistent session's stored QoS 1 message that is too large is handled as
/// if it had been sent (acknowledged in its group): it is not sent on this
/// connection, nor again when the session resumes, and what was queued after it
/// is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_message_too_large_is_discarded_once_and_the_backlog_after_it_is_delivered() {
    let b = mqtt_broker().await;
    let topic = "mps/stored";
    let props = max_packet_props(128, &KEEP_SESSION);
    let mut sub = Raw::connected(&b, &connect_v5("mps-stored", false, 60, &props)).await;
    sub.send(&subscribe_raw(1, "mps/stored", 1, Some(&[])))
        .await;
    sub.expect(9).await;
    sub.send(&DISCONNECT).await;
    sub.until_closed().await;

    let mut p = publisher(&b, "mps-stored-pub").await;
    publish_acked(&mut p, &published(topic, b"before")).await;
    publish_acked(&mut p, &published(topic, &[b'x'; 400])).await;
    publish_acked(&mut p, &published(topic, b"after")).await;

    let mut sub = Raw::open(&b).await;
    sub.send(&connect_v5("mps-stored", false, 60, &props)).await;
    let ack = sub.expect(2).await;
    assert_eq!(ack.body[0], 1, "session present");
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let m = sub.expect(3).await;
        payloads.push(m.publish_parts(true).1);
        sub.send(&puback(m.publish_pkid())).await;
    }
    assert_eq!(payloads, vec![b"before".to_vec(), b"after".to_vec()]);
    sub.send(&DISCONNECT).await;
    sub.until_closed().await;

    // Resumed again: the discarded message is not queued any more.
    publish_acked(&mut p, &published(topic, b"sentinel")).await;
    let mut sub = Raw::open(&b).await;
    sub.send(&connect_v5("mps-stored", false, 60, &props)).await;
    sub.expect(2).await;
    let m = sub.expect(3).await;
    assert_eq!(
        m.publish_parts(true).1,
        b"sentinel",
        "the discarded message came back: {m:?}"
    );
    sub.send(&puback(m.publish_pkid())).await;
}

/// Our own Maximum Packet Size counts whole packets too (MQTT 5 §3.2.2.3.6):
/// with `max_packet_size` 1024, a PUBLISH of exactly 1024 bytes is taken and one
/// of 1025 is a protocol error (DISCONNECT 0x95). The codec bounded only the
/// remaining length, so packets up to 3 bytes over got through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_maximum_counts_the_whole_packet_too() {
    let b = mqtt_broker_with(|c| c.mqtt.max_packet_size = 1024).await;
    let mut p = publisher(&b, "mps-ours").await;
    // The payload that makes the packet 1024 bytes (the remaining length's
    // varint grows as the payload does).
    let pad = (0..1024)
        .find(|n| published("mps/ours", &vec![b'x'; *n]).len() == 1024)
        .expect("a payload size that makes 1024 bytes");
    let exact = published("mps/ours", &vec![b'x'; pad]);
    assert_eq!(exact.len(), 1024);
    publish_acked(&mut p, &exact).await;
    let over = published("mps/ours", &vec![b'x'; pad + 1]);
    assert_eq!(over.len(), 1025);
    p.send(&over).await;
    let seen = p.until_closed().await;
    let reasons: Vec<u8> = seen
        .iter()
        .filter(|x| x.kind() == 14)
        .map(|x| x.disconnect_reason())
        .collect();
    assert_eq!(reasons, vec![0x95], "{seen:?}");
}

/// MQTT-3.1.2-25 counts what is really sent. With `[mqtt] lineage_properties`
/// the broker appends its lineage markers after the publisher's user properties;
/// a message that fits as published but not with the markers is discarded for
/// this client (counted in `$SYS/broker/messages/too_large`), and a smaller one
/// arrives with the publisher's properties first and the markers after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_2_25_added_lineage_properties_count_against_the_client_maximum() {
    let b = mqtt_broker_with(|c| {
        c.mqtt.lineage_properties = true;
        c.mqtt.sys_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let topic = "mps/lineage";
    let publisher_id = "mps-lineage-pub";
    let markers = user_props(&[
        ("Junction-Origin-Protocol", "mqtt"),
        ("Junction-Client-Name", publisher_id),
        ("Junction-Origin-Topic", topic),
    ]);
    let big = published(topic, &[b'x'; 32]);
    // One byte short of the big message with the markers added.
    let max = big.len() + markers.len() - 1;
    let mut sub = Raw::connected(
        &b,
        &connect_v5("mps-lineage", true, 60, &max_packet_props(max, &[])),
    )
    .await;
    sub.send(&subscribe_raw(1, "mps/#", 1, Some(&[]))).await;
    assert_eq!(sub.expect(9).await.body[3], 1, "granted QoS 1");

    let mut p = publisher(&b, publisher_id).await;
    publish_acked(&mut p, &big).await;
    publish_acked(&mut p, &published(topic, b"small")).await;
    let got = sub.expect(3).await;
    assert_eq!(got.publish_parts(true).1, b"small", "{got:?}");
    assert!(
        wire(&got).len() <= max,
        "{} bytes sent over the client's {max}",
        wire(&got).len()
    );
    let own = user_props(&[("a", "1"), ("trace", "xyz"), ("a", "2")]);
    let mut expected = own.clone();
    expected.extend_from_slice(&markers);
    assert!(
        got.body.windows(expected.len()).any(|w| w == expected),
        "the publisher's user properties, then the markers: {got:?}"
    );
    sub.send(&puback(got.publish_pkid())).await;

    // The discard is counted.
    let mut sys = Raw::connected(&b, &connect_v5("mps-lineage-sys", true, 60, &[])).await;
    sys.send(&subscribe_raw(
        1,
        "$SYS/broker/messages/too_large",
        0,
        Some(&[]),
    ))
    .await;
    sys.expect(9).await;
    loop {
        let m = sys.expect(3).await;
        let (t, value) = m.publish_parts(true);
        assert_eq!(t, "$SYS/broker/messages/too_large");
        match value.as_slice() {
            b"1" => break,
            b"0" => continue,
            other => panic!("one discard, counted {:?}", String::from_utf8_lossy(other)),
        }
    }
}
