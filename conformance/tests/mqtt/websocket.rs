//! MQTT over WebSocket at `/mqtt` on the HTTP listener (subprotocol `mqtt`), with
//! `rumqttc`'s WebSocket transport, for 3.1.1 and 5, talking to TCP clients.

use crate::support::{V4, V5};
use junction_conformance::{TestBroker, mqtt_broker};
use rumqttc::{QoS, Transport};
use std::time::Duration;

fn ws_url(b: &TestBroker) -> (String, u16) {
    let http = b.http_url();
    let port: u16 = http.rsplit(':').next().unwrap().parse().unwrap();
    (format!("ws://127.0.0.1:{port}/mqtt"), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_round_trip_over_websocket() {
    let b = mqtt_broker().await;
    let (url, port) = ws_url(&b);
    let mut o = rumqttc::MqttOptions::new("ws-v4", url, port);
    o.set_transport(Transport::Ws);
    o.set_keep_alive(Duration::from_secs(30));
    let (mut ws, _) = V4::connect(o).await;
    ws.subscribe("ws/#", QoS::ExactlyOnce).await;
    ws.publish("ws/self", QoS::ExactlyOnce, false, "over-ws")
        .await;
    let m = ws.recv().await;
    assert_eq!((&m.payload[..], m.qos), (&b"over-ws"[..], QoS::ExactlyOnce));

    let mut tcp = V4::new(&b, "ws-tcp").await;
    tcp.subscribe("fromws/#", QoS::AtLeastOnce).await;
    ws.publish("fromws/x", QoS::AtLeastOnce, false, "hello-tcp")
        .await;
    assert_eq!(&tcp.recv().await.payload[..], b"hello-tcp");
    tcp.publish("ws/x", QoS::AtLeastOnce, false, "hello-ws")
        .await;
    assert_eq!(&ws.recv().await.payload[..], b"hello-ws");
    ws.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_round_trip_over_websocket() {
    let b = mqtt_broker().await;
    let (url, port) = ws_url(&b);
    let mut o = rumqttc::v5::MqttOptions::new("ws-v5", url, port);
    o.set_transport(Transport::Ws);
    let (mut ws, _) = V5::connect(o).await;
    ws.subscribe("ws5/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let mut tcp = V5::new(&b, "ws5-tcp").await;
    tcp.publish(
        "ws5/x",
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        false,
        "to-ws5",
    )
    .await;
    assert_eq!(&ws.recv().await.payload[..], b"to-ws5");
    ws.disconnect().await;
}

/// The upgrade answers with the `mqtt` subprotocol; MQTT packets travel in binary
/// frames; a text frame is not MQTT and ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_websocket_negotiates_mqtt_subprotocol() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let b = mqtt_broker().await;
    let (url, _) = ws_url(&b);
    let mut request = url.clone().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, response) =
        crate::support::within("ws connect", tokio_tungstenite::connect_async(request))
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("mqtt")
    );
    ws.send(WsMessage::Binary(
        crate::support::connect_v4("raw-ws", true, 60).into(),
    ))
    .await
    .unwrap();
    let frame = crate::support::within("CONNACK frame", ws.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().to_vec(), vec![0x20, 0x02, 0x00, 0x00]);

    ws.send(WsMessage::Text("not mqtt".into())).await.unwrap();
    crate::support::within("close after a text frame", async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}
