//! Slow headers (the severe case of the hostile run): a request head that stops
//! half-way is answered `408 {"error":{"code":"request_timeout"}}` once
//! `[http] header_timeout` passes, and the socket is closed; a socket that sends
//! nothing is closed without an answer. A flood of such sockets fills only the HTTP
//! listener's own share: NATS, MQTT and, once the flood is shed, HTTP keep working.

use crate::raw::{Ending, connect, parse, read_until_closed};
use crate::support::{Api, poll_until, within};
use futures::future::join_all;
use junction_conformance::{broker_with, mqtt_broker_with};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const HALF_A_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Ag";

#[tokio::test(flavor = "multi_thread")]
async fn half_a_header_is_answered_408_and_closed() {
    let b = broker_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut s = connect(b.running.http_addr().unwrap()).await;
    s.write_all(HALF_A_HEADER).await.unwrap();
    let Ending::Answer(bytes) = read_until_closed(&mut s).await else {
        panic!("the half-header socket was closed without a 408");
    };
    let answer = parse(&bytes);
    answer.expect_error(408, "request_timeout");
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_socket_is_closed_without_an_answer() {
    let b = broker_with(|c| c.http.header_timeout = Duration::from_secs(1)).await;
    let mut s = connect(b.running.http_addr().unwrap()).await;
    assert!(matches!(read_until_closed(&mut s).await, Ending::Eof));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_header_flood_starves_no_protocol() {
    const FLOOD: usize = 300;
    const CAP: usize = 50;
    let b = mqtt_broker_with(|c| {
        c.http.header_timeout = Duration::from_secs(2);
        c.limits.max_http_connections = CAP;
    })
    .await;
    let http = b.running.http_addr().unwrap();

    // Hundreds of sockets that send half a header and stop.
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let mut s = connect(http).await;
        // A refused socket may already be closed; the write may then fail.
        let _ = s.write_all(HALF_A_HEADER).await;
        flood.push(s);
    }

    // Meanwhile NATS and MQTT connect and carry messages.
    let nats = within("NATS connect", async_nats::connect(b.nats_url()))
        .await
        .expect("NATS connects during the HTTP flood");
    let mut sub = nats.subscribe("flood.nats").await.unwrap();
    nats.publish("flood.nats", "n".into()).await.unwrap();
    let got = within("NATS delivery", futures::StreamExt::next(&mut sub))
        .await
        .unwrap();
    assert_eq!(&got.payload[..], b"n");
    mqtt_round_trip(b.mqtt_port()).await;

    // Every flood socket is closed by the server: a slot holder with 408 once its
    // head times out, one beyond the cap with 503 (or, beyond the refusals being
    // answered at once, closed with nothing).
    let endings = join_all(flood.iter_mut().map(read_until_closed)).await;
    let (mut timed_out, mut refused, mut silent) = (0, 0, 0);
    for ending in endings {
        match ending {
            Ending::Answer(bytes) => {
                let answer = parse(&bytes);
                match answer.status {
                    408 => {
                        answer.expect_error(408, "request_timeout");
                        timed_out += 1;
                    }
                    503 => {
                        answer.expect_error(503, "max_connections");
                        assert_eq!(answer.header("retry-after"), Some("1"));
                        refused += 1;
                    }
                    _ => panic!("unexpected answer to a half header: {answer:?}"),
                }
            }
            Ending::Eof | Ending::Reset => silent += 1,
        }
    }
    assert_eq!(timed_out + refused + silent, FLOOD);
    assert!(
        timed_out >= CAP,
        "{timed_out} 408s, {refused} 503s, {silent} silent"
    );
    assert!(refused > 0, "the cap was never reached: {timed_out} 408s");

    // HTTP serves normal requests again.
    let api = Api::new(&b);
    poll_until("GET /healthz answers 200 after the flood", || async {
        api.get("/healthz").await.status.as_u16() == 200
    })
    .await;
}

/// Connects an MQTT 3.1.1 client (rumqttc), subscribes and receives its own
/// publish.
pub async fn mqtt_round_trip(port: u16) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new("flood-check", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("flood/mqtt", QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .publish("flood/mqtt", QoS::AtLeastOnce, false, "m")
        .await
        .unwrap();
    within("MQTT round trip", async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    assert_eq!(&p.payload[..], b"m");
                    return;
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success);
                }
                Ok(_) => {}
                Err(e) => panic!("MQTT failed during the HTTP flood: {e}"),
            }
        }
    })
    .await;
}
