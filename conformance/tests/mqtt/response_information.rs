//! MQTT 5 Response Information (3.1.2.11.6, 3.2.2.3.15): a CONNECT with
//! Request Response Information = 1 gets `[mqtt] response_information`
//! followed by `/` and its client id in CONNACK; without the option, or
//! without the request, CONNACK carries none (as mosquitto).

use crate::support::{Raw, connect_v5};
use junction_conformance::{TestBroker, mqtt_broker_with};

/// The Response Information property of the CONNACK a CONNECT gets.
async fn response_information(b: &TestBroker, client_id: &str, request: bool) -> Option<String> {
    let props: &[u8] = if request { &[0x19, 0x01] } else { &[] };
    let mut raw = Raw::open(b).await;
    raw.send(&connect_v5(client_id, true, 60, props)).await;
    let ack = raw.read().await.expect("CONNACK");
    assert_eq!((ack.kind(), ack.body[1]), (2, 0), "{ack:?}");
    // Properties: length (one byte here: CONNACK's are short), then id/value.
    let mut p = &ack.body[3..];
    while let Some((&id, rest)) = p.split_first() {
        let size = match id {
            0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 => 2,
            0x11 | 0x27 => 4,
            _ => {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if id == 0x1A {
                    return Some(String::from_utf8_lossy(&rest[2..2 + n]).into_owned());
                }
                2 + n
            }
        };
        p = &rest[size..];
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_with_the_option_when_requested() {
    let b = mqtt_broker_with(|c| c.mqtt.response_information = Some("resp".into())).await;
    assert_eq!(
        response_information(&b, "ri-client", true).await.as_deref(),
        Some("resp/ri-client")
    );
    assert_eq!(response_information(&b, "ri-quiet", false).await, None);
    let b = mqtt_broker_with(|c| c.mqtt.response_information = Some("replies/".into())).await;
    assert_eq!(
        response_information(&b, "ri-slash", true).await.as_deref(),
        Some("replies/ri-slash")
    );
    // A wildcard character in the client id would make it a filter, not a
    // topic the client could publish its requests' responses to.
    assert_eq!(response_information(&b, "ri+wild", true).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_without_the_option() {
    let b = mqtt_broker_with(|_| {}).await;
    assert_eq!(response_information(&b, "ri-none", true).await, None);
}
