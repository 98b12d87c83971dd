//! The consumer side of a cell: one stock client per protocol, subscribed (live) or
//! reading a consumer group (stored) with a wildcard, turning what arrives into a
//! protocol-neutral [`Delivery`], and NAKing where the protocol can.

use crate::http_support::Api;
use crate::mqtt_support::{V4, V5, v4_options, v5_options};
use crate::setup::{Matrix, Place, Target};
use crate::table::Proto;
use crate::ws_client::{WsClient, base64_decode};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a consumer waits for a delivery before the cell fails.
const WAIT: Duration = Duration::from_secs(8);

/// One message as a consumer received it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Read from a station through a group (`true`) or a live subscription.
    pub stored: bool,
    /// The subject (NATS, HTTP, WebSocket) or topic (MQTT) it arrived on.
    pub subject: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Its headers (MQTT 5: user properties); `None` when the protocol has none.
    pub headers: Option<Vec<(String, String)>>,
    /// The delivered QoS (MQTT).
    pub qos: Option<u8>,
    /// The group's delivery count (stored reads).
    pub delivery_count: Option<u64>,
}

impl Delivery {
    /// Every value of header `name` (names compared without case).
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .flatten()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// How it arrived, for messages.
    pub fn via(&self) -> &'static str {
        if self.stored { "stored" } else { "live" }
    }
}

/// A consumer, subscribed or attached.
pub enum Consumer {
    /// A NATS core subscription (and its client, kept open with it).
    Nats(
        #[allow(dead_code)] async_nats::Client,
        async_nats::Subscriber,
    ),
    /// A durable JetStream pull consumer, and its last delivery.
    JetStream(Box<PullConsumer>, Option<jetstream::Message>),
    /// MQTT 3.1.1 subscription.
    Mqtt311(Box<V4>),
    /// MQTT 5 subscription.
    Mqtt5(Box<V5>),
    /// An HTTP consumer group, and the last delivery's ack token.
    Http(Api, Place, Option<String>),
    /// A WebSocket with a live subscription (unless reading the dead-letter
    /// station) and a group attach, and the last group delivery's ack token.
    WebSocket(WsClient, bool, Option<String>),
}

fn nats_err<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

async fn guard<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| format!("{what} timed out after {WAIT:?}"))?
        .map_err(nats_err(what))
}

/// Creates the HTTP group of `place`, filtered by its wildcard.
async fn create_group(api: &Api, place: &Place) -> Result<(), String> {
    let reply = api
        .post(
            &format!("/v1/stations/{}/groups", place.station),
            &json!({"name": place.group, "filter_subjects": [place.filter]}),
        )
        .await;
    if reply.status.as_u16() != 201 {
        return Err(format!(
            "creating group {} on {}: {} {}",
            place.group, place.station, reply.status, reply.json
        ));
    }
    Ok(())
}

/// A message of the HTTP fetch or WebSocket attach JSON shape.
fn from_json(m: &Value) -> Result<Delivery, String> {
    let payload = match (&m["payload"], &m["payload_base64"]) {
        (Value::String(s), Value::Null) => s.as_bytes().to_vec(),
        (Value::Null, Value::String(b)) => base64_decode(b)?,
        (Value::Null, Value::Null) => Vec::new(),
        _ => return Err(format!("payload and payload_base64 both present: {m}")),
    };
    let mut headers = Vec::new();
    if let Some(h) = m["headers"].as_object() {
        for (k, v) in h {
            match v {
                Value::String(s) => headers.push((k.clone(), s.clone())),
                Value::Array(vs) => {
                    for v in vs {
                        headers.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
                    }
                }
                other => return Err(format!("header {k} is {other}")),
            }
        }
    }
    Ok(Delivery {
        stored: m["seq"].is_u64(),
        subject: m["subject"].as_str().unwrap_or_default().to_string(),
        payload,
        headers: Some(headers),
        qos: None,
        delivery_count: m["delivery_count"].as_u64(),
    })
}

fn from_nats(m: &async_nats::Message, stored: bool, count: Option<u64>) -> Delivery {
    // async-nats keeps headers in a HashMap, so the order it yields them in differs
    // from one received message to the next: sort them, or two deliveries of the
    // same stored message compare unequal by chance.
    let mut headers: Vec<(String, String)> = m
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| (k.to_string(), v.as_str().to_string()))
        })
        .collect();
    headers.sort();
    Delivery {
        stored,
        subject: m.subject.to_string(),
        payload: m.payload.to_vec(),
        headers: Some(headers),
        qos: None,
        delivery_count: count,
    }
}

impl Consumer {
    /// Opens a `c` consumer of `cell` on `place`: subscribed or attached before
    /// this returns (a live subscription is registered once the broker answered a
    /// later request on the same connection, or sent its SUBACK).
    pub async fn open(m: &Matrix, c: Proto, cell: &str, place: &Place) -> Result<Consumer, String> {
        let name = format!("mx-sub-{cell}-{}", place.group);
        match c {
            Proto::NatsCore => {
                let client = guard(
                    "NATS connect",
                    async_nats::ConnectOptions::new()
                        .name(&name)
                        .connect(m.broker.nats_url()),
                )
                .await?;
                let sub = guard("NATS subscribe", client.subscribe(place.filter.clone())).await?;
                // A round trip: the SUB before it has been processed. Nobody answers
                // this subject, so the answer is "no responders".
                let _ = tokio::time::timeout(WAIT, client.request("_matrix.sync", "".into()))
                    .await
                    .map_err(|_| "NATS sync round trip timed out".to_string())?;
                Ok(Consumer::Nats(client, sub))
            }
            Proto::JetStream => {
                let client = guard(
                    "NATS connect",
                    async_nats::ConnectOptions::new()
                        .name(&name)
                        .connect(m.broker.nats_url()),
                )
                .await?;
                let js = jetstream::new(client);
                let stream = guard("get stream", js.get_stream(place.station)).await?;
                let consumer = guard(
                    "create pull consumer",
                    stream.create_consumer(pull::Config {
                        durable_name: Some(place.group.clone()),
                        filter_subject: place.filter.clone(),
                        ack_policy: AckPolicy::Explicit,
                        ..Default::default()
                    }),
                )
                .await?;
                Ok(Consumer::JetStream(Box::new(consumer), None))
            }
            Proto::Mqtt311 => {
                let (mut client, _) = V4::connect(v4_options(&m.broker, &name)).await;
                let codes = client
                    .subscribe(&place.mqtt_filter(), rumqttc::QoS::AtLeastOnce)
                    .await;
                if codes
                    != [rumqttc::SubscribeReasonCode::Success(
                        rumqttc::QoS::AtLeastOnce,
                    )]
                {
                    return Err(format!("SUBACK {codes:?}"));
                }
                Ok(Consumer::Mqtt311(Box::new(client)))
            }
            Proto::Mqtt5 => {
                use rumqttc::v5::mqttbytes::QoS;
                use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode;
                let (mut client, _) = V5::connect(v5_options(&m.broker, &name)).await;
                let codes = client
                    .subscribe(&place.mqtt_filter(), QoS::AtLeastOnce)
                    .await;
                if codes != [SubscribeReasonCode::Success(QoS::AtLeastOnce)] {
                    return Err(format!("SUBACK {codes:?}"));
                }
                Ok(Consumer::Mqtt5(Box::new(client)))
            }
            Proto::Http => {
                create_group(&m.api, place).await?;
                Ok(Consumer::Http(m.api.clone(), place.clone(), None))
            }
            Proto::WebSocket => {
                let mut ws = WsClient::connect(&m.broker).await?;
                let live = place.target != Target::DeadLetter;
                if live {
                    ws.send(json!({"op": "subscribe", "sub": "live", "subject": place.filter}))
                        .await?;
                    ws.wait("subscribed", |f| {
                        f["op"] == "subscribed" || f["op"] == "error"
                    })
                    .await
                    .and_then(|f| {
                        if f["op"] == "subscribed" {
                            Ok(())
                        } else {
                            Err(format!("subscribe refused: {f}"))
                        }
                    })?;
                }
                create_group(&m.api, place).await?;
                ws.send(
                    json!({"op": "attach", "id": "group", "station": place.station,
                               "group": place.group}),
                )
                .await?;
                ws.wait("attached", |f| f["op"] == "attached" || f["op"] == "error")
                    .await
                    .and_then(|f| {
                        if f["op"] == "attached" {
                            Ok(())
                        } else {
                            Err(format!("attach refused: {f}"))
                        }
                    })?;
                Ok(Consumer::WebSocket(ws, live, None))
            }
        }
    }

    /// The next message: one delivery, or for the WebSocket its live delivery
    /// (when subscribed) and its group delivery.
    pub async fn receive(&mut self) -> Result<Vec<Delivery>, String> {
        match self {
            Consumer::Nats(_, sub) => {
                let m = tokio::time::timeout(WAIT, sub.next())
                    .await
                    .map_err(|_| format!("no NATS message within {WAIT:?}"))?
                    .ok_or("the NATS subscription ended")?;
                Ok(vec![from_nats(&m, false, None)])
            }
            Consumer::JetStream(consumer, last) => {
                let mut batch = guard(
                    "JetStream fetch",
                    consumer
                        .fetch()
                        .max_messages(1)
                        .expires(Duration::from_secs(5))
                        .messages(),
                )
                .await?;
                let m = tokio::time::timeout(WAIT, batch.next())
                    .await
                    .map_err(|_| format!("JetStream fetch hung for {WAIT:?}"))?
                    .ok_or("no JetStream message within the fetch's 5 s")?
                    .map_err(|e| format!("JetStream fetch: {e}"))?;
                let count = m.info().map(|i| i.delivered as u64).ok();
                let d = from_nats(&m, true, count);
                *last = Some(m);
                Ok(vec![d])
            }
            Consumer::Mqtt311(c) => {
                let p = c.recv().await;
                Ok(vec![Delivery {
                    stored: false,
                    subject: p.topic.clone(),
                    payload: p.payload.to_vec(),
                    headers: None,
                    qos: Some(p.qos as u8),
                    delivery_count: None,
                }])
            }
            Consumer::Mqtt5(c) => {
                let p = c.recv().await;
                let headers = p
                    .properties
                    .as_ref()
                    .map(|props| props.user_properties.clone())
                    .unwrap_or_default();
                Ok(vec![Delivery {
                    stored: false,
                    subject: String::from_utf8_lossy(&p.topic).into_owned(),
                    payload: p.payload.to_vec(),
                    headers: Some(headers),
                    qos: Some(p.qos as u8),
                    delivery_count: None,
                }])
            }
            Consumer::Http(api, place, last) => {
                let reply = api
                    .post(
                        &format!(
                            "/v1/stations/{}/groups/{}/fetch",
                            place.station, place.group
                        ),
                        &json!({"batch": 1, "max_wait_ms": 5000}),
                    )
                    .await;
                if reply.status.as_u16() != 200 {
                    return Err(format!("fetch answered {} {}", reply.status, reply.json));
                }
                let m = reply.json["messages"].get(0).ok_or_else(|| {
                    format!("fetch returned no message within 5 s: {}", reply.json)
                })?;
                *last = m["ack_token"].as_str().map(str::to_string);
                Ok(vec![from_json(m)?])
            }
            Consumer::WebSocket(ws, live, last) => {
                let mut out = Vec::new();
                if *live {
                    let f = ws
                        .wait("a live message", |f| {
                            f["op"] == "message" && f["sub"] == "live"
                        })
                        .await?;
                    out.push(from_json(&f)?);
                }
                let f = ws
                    .wait("a group message", |f| {
                        f["op"] == "message" && f["attach"] == "group"
                    })
                    .await?;
                *last = f["ack_token"].as_str().map(str::to_string);
                out.push(from_json(&f)?);
                Ok(out)
            }
        }
    }

    /// NAKs the last stored delivery and returns its redelivery.
    pub async fn nak_and_receive(&mut self) -> Result<Delivery, String> {
        match self {
            Consumer::JetStream(_, last) => {
                let m = last.take().ok_or("nothing to NAK")?;
                guard("NAK", m.ack_with(AckKind::Nak(None))).await?;
            }
            Consumer::Http(api, place, last) => {
                let token = last.take().ok_or("nothing to NAK")?;
                let reply = api
                    .post(
                        &format!("/v1/stations/{}/groups/{}/ack", place.station, place.group),
                        &json!({"nak": [{"token": token}]}),
                    )
                    .await;
                if reply.status.as_u16() != 200 || reply.json["naked"] != 1 {
                    return Err(format!("nak answered {} {}", reply.status, reply.json));
                }
            }
            Consumer::WebSocket(ws, _, last) => {
                let token = last.take().ok_or("nothing to NAK")?;
                ws.send(json!({"op": "nak", "token": token})).await?;
                let f = ws
                    .wait("the redelivery", |f| {
                        f["op"] == "message" && f["attach"] == "group"
                    })
                    .await?;
                *last = f["ack_token"].as_str().map(str::to_string);
                return from_json(&f);
            }
            _ => return Err("this consumer cannot NAK".into()),
        }
        self.receive()
            .await?
            .pop()
            .ok_or_else(|| "no redelivery".to_string())
    }

    /// Acknowledges the last stored delivery (nothing for live subscriptions).
    pub async fn ack(&mut self) -> Result<(), String> {
        match self {
            Consumer::JetStream(_, last) => match last.take() {
                Some(m) => guard("ack", m.double_ack()).await,
                None => Ok(()),
            },
            Consumer::Http(api, place, last) => match last.take() {
                Some(token) => {
                    let reply = api
                        .post(
                            &format!("/v1/stations/{}/groups/{}/ack", place.station, place.group),
                            &json!({"ack": [token]}),
                        )
                        .await;
                    if reply.status.as_u16() == 200 && reply.json["acked"] == 1 {
                        Ok(())
                    } else {
                        Err(format!("ack answered {} {}", reply.status, reply.json))
                    }
                }
                None => Ok(()),
            },
            Consumer::WebSocket(ws, _, last) => match last.take() {
                Some(token) => ws.send(json!({"op": "ack", "token": token})).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Disconnects (best effort).
    pub async fn close(self) {
        match self {
            Consumer::Mqtt311(c) => c.disconnect().await,
            Consumer::Mqtt5(c) => c.disconnect().await,
            Consumer::WebSocket(ws, _, _) => ws.close().await,
            Consumer::Nats(..) | Consumer::JetStream(..) | Consumer::Http(..) => {}
        }
    }
}
