//! The producer side of a cell: one stock client per protocol, publishing a
//! message that must be accepted, or one the station's schema must refuse (and
//! checking the protocol's own error for it).

use crate::http_support::Api;
use crate::mqtt_support::{V4, V5, v4_options, v5_options};
use crate::setup::{Matrix, to_mqtt};
use crate::table::Proto;
use crate::ws_client::{WsClient, base64_encode};
use async_nats::jetstream;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// How long a NATS step may take before it counts as a failure.
const NATS_GUARD: Duration = Duration::from_secs(8);

/// A connected producer.
pub enum Producer {
    /// NATS core (publishes without a reply subject).
    Nats(async_nats::Client),
    /// JetStream publishes (PubAck).
    JetStream(jetstream::Context),
    /// MQTT 3.1.1.
    Mqtt311(Box<V4>),
    /// MQTT 5.
    Mqtt5(Box<V5>),
    /// The HTTP gateway.
    Http(Api),
    /// A WebSocket, with the next `ref`.
    WebSocket(WsClient, u64),
}

async fn nats_connect(m: &Matrix, name: &str) -> Result<async_nats::Client, String> {
    let options = async_nats::ConnectOptions::new().name(name);
    tokio::time::timeout(NATS_GUARD, options.connect(m.broker.nats_url()))
        .await
        .map_err(|_| "NATS connect timed out".to_string())?
        .map_err(|e| format!("NATS connect: {e}"))
}

fn header_map(headers: &[(&str, &str)]) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, *v);
    }
    h
}

impl Producer {
    /// Connects a `p` producer for `cell`.
    pub async fn connect(m: &Matrix, p: Proto, cell: &str) -> Result<Producer, String> {
        let name = format!("mx-pub-{cell}");
        Ok(match p {
            Proto::NatsCore => Producer::Nats(nats_connect(m, &name).await?),
            Proto::JetStream => Producer::JetStream(jetstream::new(nats_connect(m, &name).await?)),
            Proto::Mqtt311 => {
                let (c, _) = V4::connect(v4_options(&m.broker, &name)).await;
                Producer::Mqtt311(Box::new(c))
            }
            Proto::Mqtt5 => {
                let (c, _) = V5::connect(v5_options(&m.broker, &name)).await;
                Producer::Mqtt5(Box::new(c))
            }
            Proto::Http => Producer::Http(m.api.clone()),
            Proto::WebSocket => Producer::WebSocket(WsClient::connect(&m.broker).await?, 1),
        })
    }

    /// Publishes `payload` on `subject` (as an MQTT topic over MQTT) with
    /// `headers` (ignored by MQTT 3.1.1), and checks that it was accepted and, when
    /// the protocol says so, stored.
    pub async fn publish(
        &mut self,
        subject: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), String> {
        match self {
            Producer::Nats(client) => {
                let published = client.publish_with_headers(
                    subject.to_string(),
                    header_map(headers),
                    Bytes::copy_from_slice(payload),
                );
                tokio::time::timeout(NATS_GUARD, published)
                    .await
                    .map_err(|_| "NATS publish timed out".to_string())?
                    .map_err(|e| format!("NATS publish: {e}"))?;
                tokio::time::timeout(NATS_GUARD, client.flush())
                    .await
                    .map_err(|_| "NATS flush timed out".to_string())?
                    .map_err(|e| format!("NATS flush: {e}"))
            }
            Producer::JetStream(js) => {
                let ack = tokio::time::timeout(NATS_GUARD, async {
                    js.publish_with_headers(
                        subject.to_string(),
                        header_map(headers),
                        Bytes::copy_from_slice(payload),
                    )
                    .await?
                    .await
                })
                .await
                .map_err(|_| "JetStream publish timed out".to_string())?
                .map_err(|e| format!("JetStream publish refused: {e}"))?;
                if ack.duplicate {
                    return Err(format!("PubAck says duplicate: {ack:?}"));
                }
                Ok(())
            }
            Producer::Mqtt311(c) => {
                // Waits for the PUBACK (a hang fails the cell).
                c.publish(
                    &to_mqtt(subject),
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    payload.to_vec(),
                )
                .await;
                Ok(())
            }
            Producer::Mqtt5(c) => {
                let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    user_properties: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..Default::default()
                };
                let reason = c
                    .publish_with(
                        &to_mqtt(subject),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        Bytes::copy_from_slice(payload),
                        Some(props),
                    )
                    .await;
                match reason.as_deref() {
                    Some("Success") => Ok(()),
                    other => Err(format!("MQTT 5 PUBACK reason {other:?}, expected Success")),
                }
            }
            Producer::Http(api) => {
                let names: Vec<(String, &str)> = headers
                    .iter()
                    .map(|(k, v)| (format!("x-junction-header-{}", k.to_ascii_lowercase()), *v))
                    .collect();
                let named: Vec<(&str, &str)> =
                    names.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                let reply = api
                    .post_raw(&format!("/v1/subjects/{subject}"), payload.to_vec(), &named)
                    .await;
                if reply.status.as_u16() != 201 {
                    return Err(format!(
                        "HTTP publish answered {} {}, expected 201 (stored)",
                        reply.status, reply.json
                    ));
                }
                Ok(())
            }
            Producer::WebSocket(ws, next) => {
                let reply = ws_publish(ws, next, subject, payload, headers).await?;
                if reply["op"] == "published" && reply["station"].is_string() {
                    Ok(())
                } else {
                    Err(format!(
                        "WebSocket publish answered {reply}, expected a stored `published`"
                    ))
                }
            }
        }
    }

    /// Publishes `payload` on `subject`, which the station's schema refuses, and
    /// checks the producer's own error (docs/schemas.md "What producers see").
    pub async fn publish_refused(&mut self, subject: &str, payload: &[u8]) -> Result<(), String> {
        match self {
            // Nobody to tell: the publish has no reply subject.
            Producer::Nats(_) => self.publish(subject, payload, &[]).await,
            Producer::JetStream(js) => {
                let result = tokio::time::timeout(NATS_GUARD, async {
                    js.publish(subject.to_string(), Bytes::copy_from_slice(payload))
                        .await?
                        .await
                })
                .await
                .map_err(|_| "JetStream publish timed out".to_string())?;
                match result {
                    Err(e) if e.to_string().contains("error code 19001") => Ok(()),
                    Err(e) => Err(format!(
                        "JetStream publish error {e}, expected err_code 19001"
                    )),
                    Ok(ack) => Err(format!("JetStream publish acknowledged: {ack:?}")),
                }
            }
            // 3.1.1 has no negative acknowledgement: a PUBACK, and the message is
            // dropped (checked by the consumer).
            Producer::Mqtt311(_) => self.publish(subject, payload, &[]).await,
            Producer::Mqtt5(c) => {
                let reason = c
                    .publish(
                        &to_mqtt(subject),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        false,
                        Bytes::copy_from_slice(payload),
                    )
                    .await;
                match reason.as_deref() {
                    Some("PayloadFormatInvalid") => Ok(()),
                    other => Err(format!(
                        "MQTT 5 PUBACK reason {other:?}, expected PayloadFormatInvalid (0x99)"
                    )),
                }
            }
            Producer::Http(api) => {
                let reply = api
                    .post_raw(&format!("/v1/subjects/{subject}"), payload.to_vec(), &[])
                    .await;
                if reply.status.as_u16() == 422 && reply.json["error"]["code"] == "schema_violation"
                {
                    Ok(())
                } else {
                    Err(format!(
                        "HTTP publish answered {} {}, expected 422 schema_violation",
                        reply.status, reply.json
                    ))
                }
            }
            Producer::WebSocket(ws, next) => {
                let reply = ws_publish(ws, next, subject, payload, &[]).await?;
                if reply["op"] == "error" && reply["error"]["code"] == "schema_violation" {
                    Ok(())
                } else {
                    Err(format!(
                        "WebSocket publish answered {reply}, expected an error frame schema_violation"
                    ))
                }
            }
        }
    }

    /// Disconnects (best effort).
    pub async fn close(self) {
        match self {
            Producer::Mqtt311(c) => c.disconnect().await,
            Producer::Mqtt5(c) => c.disconnect().await,
            Producer::WebSocket(ws, _) => ws.close().await,
            Producer::Nats(_) | Producer::JetStream(_) | Producer::Http(_) => {}
        }
    }
}

/// Sends a WebSocket publish frame and returns its answer (`published` or `error`).
async fn ws_publish(
    ws: &mut WsClient,
    next: &mut u64,
    subject: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> Result<Value, String> {
    let reference = *next;
    *next += 1;
    let mut frame = json!({"op": "publish", "subject": subject,
                           "payload_base64": base64_encode(payload), "ref": reference});
    if !headers.is_empty() {
        let h: Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        frame["headers"] = Value::Object(h);
    }
    ws.send(frame).await?;
    ws.wait("answering the publish", |f| {
        f["ref"] == reference && (f["op"] == "published" || f["op"] == "error")
    })
    .await
}
