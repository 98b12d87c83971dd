//! A topic name or filter the broker cannot take is refused for that PUBLISH or
//! that filter only, never the connection: MQTT 5 PUBACK/PUBREC 0x90 and SUBACK
//! 0x8F, 3.1.1 SUBACK 0x80. (3.1.1 has no negative PUBACK, so there the publish is
//! not acknowledged and the connection closes: the client sends it again.) A
//! wildcard in a PUBLISH topic breaks the protocol and still ends the connection
//! (`conformance/tests/mqtt/bad_input.rs`).

use crate::support::{
    PINGREQ, Raw, connect_v4, connect_v5, lstr, packet, publish_raw, still_serves,
};
use junction_conformance::mqtt_broker;

/// A SUBSCRIBE with several filters, all asking QoS 1.
fn subscribe_many(pkid: u16, filters: &[&[u8]], v5: bool) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if v5 {
        body.push(0);
    }
    for f in filters {
        body.extend(lstr(f));
        body.push(1);
    }
    packet(0x82, &body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_unmappable_topic_refuses_that_publish_only() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v5("nul5", true, 60, &[])).await;
    raw.send(&publish_raw(b"a/\0/b", 1, 7, false, false, b"x", Some(&[])))
        .await;
    let ack = raw.expect(4).await;
    assert_eq!(
        (ack.pkid(), ack.ack_reason()),
        (7, 0x90),
        "PUBACK 0x90: {ack:?}"
    );
    raw.send(&publish_raw(b"a/\0/b", 2, 8, false, false, b"x", Some(&[])))
        .await;
    let rec = raw.expect(5).await;
    assert_eq!(
        (rec.pkid(), rec.ack_reason()),
        (8, 0x90),
        "PUBREC 0x90: {rec:?}"
    );
    // QoS 0: dropped; the connection carries on.
    raw.send(&publish_raw(b"a/\0/b", 0, 0, false, false, b"x", Some(&[])))
        .await;
    raw.send(&publish_raw(b"a/ok", 1, 9, false, false, b"x", Some(&[])))
        .await;
    let ack = raw.expect(4).await;
    assert_eq!((ack.pkid(), ack.ack_reason()), (9, 0x00), "{ack:?}");
    raw.send(&PINGREQ).await;
    raw.expect(13).await;
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_unmappable_topic_is_not_acknowledged() {
    let b = mqtt_broker().await;
    let mut raw = Raw::connected(&b, &connect_v4("nul4", true, 60)).await;
    raw.send(&publish_raw(b"a/\0/b", 1, 7, false, false, b"x", None))
        .await;
    let seen = raw.until_closed().await;
    assert!(
        seen.is_empty(),
        "no PUBACK for a publish not taken: {seen:?}"
    );
    still_serves(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filters_are_refused_per_filter() {
    let b = mqtt_broker().await;
    let filters: [&[u8]; 4] = [b"a/\0", b"a/#/b", b"$share//x", b"good/+"];
    let mut raw = Raw::connected(&b, &connect_v5("filters5", true, 60, &[])).await;
    raw.send(&subscribe_many(3, &filters, true)).await;
    let ack = raw.expect(9).await;
    // pkid, properties length, then one code per filter.
    assert_eq!(ack.body, vec![0, 3, 0, 0x8F, 0x8F, 0x8F, 0x01], "{ack:?}");
    raw.send(&PINGREQ).await;
    raw.expect(13).await;

    let mut raw = Raw::connected(&b, &connect_v4("filters4", true, 60)).await;
    raw.send(&subscribe_many(4, &filters, false)).await;
    let ack = raw.expect(9).await;
    assert_eq!(ack.body, vec![0, 4, 0x80, 0x80, 0x80, 0x01], "{ack:?}");
    raw.send(&PINGREQ).await;
    raw.expect(13).await;
    still_serves(&b).await;
}
