//! Live subscriptions for the streaming routes (Server-Sent Events and WebSocket):
//! an engine client per stream, and a [`Subscriber`] that queues deliveries on a
//! bounded channel.
//!
//! A subscriber whose channel is full is a slow consumer: the delivery is refused,
//! the subscription ends, and the stream closes with a `slow_consumer` error rather
//! than buffering without bound.

use super::ApiState;
use super::error::AppError;
use super::wire::{HeadersJson, encode_payload, headers_json};
use axum::Extension;
use axum::extract::ConnectInfo;
use junction_api::{
    ClientRecord, Delivery, Engine, Message, NewClient, Protocol, Subscriber, TenantId,
};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::mpsc;
use utoipa::ToSchema;

/// Deliveries (and, for WebSocket, replies) queued per stream before it counts as a
/// slow consumer.
pub const OUTBOUND_QUEUE: usize = 4096;

/// What a stream's writer sends next.
#[derive(Debug)]
pub enum Outbound {
    /// A message for subscription `sub`.
    Delivery {
        /// The subscription's id, as the client named it.
        sub: Arc<str>,
        /// The message.
        message: Message,
    },
    /// A ready-made text frame (WebSocket replies).
    Text(String),
}

/// A live message as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveMessageJson {
    /// The subscription it arrived on (WebSocket only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Subject it was published on.
    pub subject: String,
    /// Reply subject, if the publisher set one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Headers.
    #[schema(value_type = Object)]
    pub headers: HeadersJson,
    /// The payload, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in base64, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

impl LiveMessageJson {
    /// The JSON form of `message`.
    pub fn new(sub: Option<&str>, message: &Message) -> Self {
        let (payload, payload_base64) = encode_payload(&message.payload);
        LiveMessageJson {
            sub: sub.map(str::to_string),
            subject: message.subject.to_str_lossy().into_owned(),
            reply: message
                .reply
                .as_ref()
                .map(|r| r.to_str_lossy().into_owned()),
            headers: message
                .headers
                .as_ref()
                .map(headers_json)
                .unwrap_or_default(),
            payload,
            payload_base64,
        }
    }
}

/// Queues a subscription's deliveries on a stream's channel.
pub struct ChannelSubscriber {
    sub: Arc<str>,
    tx: mpsc::Sender<Outbound>,
    slow: Arc<AtomicBool>,
    delivered: AtomicU64,
    client: Arc<ClientRecord>,
}

impl ChannelSubscriber {
    /// A subscriber named `sub` feeding `tx`; sets `slow` when `tx` is full.
    pub fn new(
        sub: Arc<str>,
        tx: mpsc::Sender<Outbound>,
        slow: Arc<AtomicBool>,
        client: Arc<ClientRecord>,
    ) -> Self {
        ChannelSubscriber {
            sub,
            tx,
            slow,
            delivered: AtomicU64::new(0),
            client,
        }
    }
}

impl Subscriber for ChannelSubscriber {
    fn deliver(&self, message: &Message, _fanout: junction_api::FanoutId) -> Delivery {
        let item = Outbound::Delivery {
            sub: self.sub.clone(),
            message: message.clone(),
        };
        match self.tx.try_send(item) {
            Ok(()) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.client.stats.record_out(message.payload.len());
                Delivery::Accepted
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.store(true, Ordering::Relaxed);
                Delivery::Gone
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    fn describe(&self) -> (String, u64) {
        (self.sub.to_string(), self.delivered.load(Ordering::Relaxed))
    }
}

/// The engine client of one stream; disconnected (with its subscriptions) when
/// dropped.
pub struct LiveClient {
    /// The engine.
    pub engine: Arc<dyn Engine>,
    /// The client.
    pub client: Arc<ClientRecord>,
}

impl LiveClient {
    /// Registers a client for a new stream from `remote`.
    pub fn connect(
        state: &ApiState,
        tenant: &TenantId,
        protocol: Protocol,
        remote: Option<Extension<ConnectInfo<SocketAddr>>>,
        name: &str,
    ) -> Result<Self, AppError> {
        let remote = remote.map_or(state.settings.listen, |Extension(ConnectInfo(a))| a);
        let client = state
            .engine
            .connect(NewClient { protocol, remote }, tenant.clone())?;
        client.set_identity(
            Some(name.to_string()),
            Some("http".into()),
            Some(env!("CARGO_PKG_VERSION").into()),
            None,
        );
        Ok(LiveClient {
            engine: state.engine.clone(),
            client,
        })
    }

    /// Records that the stream was closed as a slow consumer.
    pub fn slow_consumer(&self) {
        tracing::warn!(cid = self.client.id.0, remote = %self.client.remote, "slow consumer: stream closed");
        self.engine.slow_consumer(&self.client);
    }
}

impl Drop for LiveClient {
    fn drop(&mut self) {
        self.engine.disconnect(self.client.id);
    }
}
