//! The NATS session state machine: operations in, replies and engine calls out.
//!
//! A [`NatsChannel`] does no I/O. The connection driver feeds it decoded operations
//! and timer ticks; it answers by appending to the connection's [`Outbound`] queue and
//! by calling the [`Engine`]. An `Err(CloseReason)` means "close the connection": any
//! `-ERR` that nats-server sends first has already been queued.

use crate::encode;
use crate::frame::{ClientOp, FrameError};
use crate::info::ConnectOptions;
use crate::jetstream::PubAck;
use crate::outbound::{CloseReason, DeliveryGuard, NatsSubscription, Outbound, Replies};
use bytes::Bytes;
use junction_api::{
    ClientRecord, Credentials, Delivery, Engine, EngineError, FanoutId, Message, Permissions,
    PublishOptions, QueueGroup, StoredCallback, Subject, SubjectFilter, Subscriber, SubscriptionId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The result of handling one input.
pub type Step = Result<(), CloseReason>;

struct LocalSubscription {
    id: SubscriptionId,
    filter: SubjectFilter,
    queued: bool,
    subscription: Arc<NatsSubscription>,
}

/// One client's session.
pub struct NatsChannel<E: Engine> {
    engine: Arc<E>,
    client: Arc<ClientRecord>,
    out: Arc<Outbound>,
    options: ConnectOptions,
    connected: bool,
    auth_required: bool,
    subscriptions: HashMap<Bytes, LocalSubscription>,
    prune_at: usize,
    pings_out: u32,
    max_pings_out: u32,
    active: bool,
    published: bool,
    /// The sid of the subscription that took the last PubAck: clients multiplex
    /// every request over one `_INBOX.<id>.*` subscription, so this is almost always
    /// the one for the next.
    ack_sid: Option<Bytes>,
    /// The user's permissions, once CONNECT authenticated one that has any.
    permissions: Option<Arc<Permissions>>,
    /// Reply subjects the user may answer (`allow_responses`).
    replies: Option<Arc<Replies>>,
    /// The nonce INFO carried, for NKey users to sign.
    nonce: Option<String>,
    /// The client's verified TLS certificate (DER), if it presented one.
    certificate: Option<Vec<u8>>,
}

/// A subject quoted as Go's `%q` quotes it (nats-server's error texts).
fn go_quote(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in String::from_utf8_lossy(text).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where a PubAck goes straight to: the publishing connection's own subscription.
struct AckRoute {
    id: SubscriptionId,
    subscription: Arc<NatsSubscription>,
}

impl<E: Engine> NatsChannel<E> {
    /// The engine this session talks to.
    pub fn engine(&self) -> &Arc<E> {
        &self.engine
    }

    /// A session for `client`, answering through `out`.
    pub fn new(
        engine: Arc<E>,
        client: Arc<ClientRecord>,
        out: Arc<Outbound>,
        max_pings_out: u32,
    ) -> Self {
        let auth_required = engine.auth_required();
        NatsChannel {
            engine,
            client,
            out,
            options: ConnectOptions::default(),
            connected: false,
            auth_required,
            subscriptions: HashMap::new(),
            prune_at: 64,
            pings_out: 0,
            max_pings_out,
            active: false,
            published: false,
            ack_sid: None,
            permissions: None,
            replies: None,
            nonce: None,
            certificate: None,
        }
    }

    /// Called after the operations of one socket read: records the client's last
    /// activity once if they published anything.
    pub fn end_of_read(&mut self) {
        if std::mem::take(&mut self.published) {
            self.client.stats.touch();
        }
    }

    /// The TLS client certificate the handshake verified.
    pub fn set_certificate(&mut self, certificate: Option<Vec<u8>>) {
        self.certificate = certificate;
    }

    /// The nonce INFO carried (NKey users sign it in CONNECT).
    pub fn set_nonce(&mut self, nonce: Option<String>) {
        self.nonce = nonce;
    }

    /// Has the client sent a CONNECT that was accepted?
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    fn error_and_close(&self, text: &str, reason: CloseReason) -> Step {
        tracing::debug!(
            cid = self.client.id.0,
            reason = reason.as_str(),
            "-ERR '{text}'"
        );
        self.out.write(|b| encode::err(b, text));
        Err(reason)
    }

    fn error(&self, text: &str) {
        tracing::debug!(cid = self.client.id.0, "-ERR '{text}'");
        self.out.write(|b| encode::err(b, text));
    }

    fn ok(&self) {
        if self.options.verbose {
            self.out.write(|b| b.extend_from_slice(encode::OK));
        }
    }

    /// Called with the first byte of each operation, before it is parsed (or even
    /// complete). While auth is required and no CONNECT was accepted, nats-server
    /// refuses any op that does not start with `C`.
    pub fn check_op_start(&self, first: u8) -> Step {
        if self.auth_required && !self.connected && !first.eq_ignore_ascii_case(&b'C') {
            return self.error_and_close(
                "Authorization Violation",
                CloseReason::AuthorizationViolation,
            );
        }
        Ok(())
    }

    /// Handles one decoded operation.
    pub fn handle(&mut self, op: ClientOp<Bytes>) -> Step {
        if self.auth_required && !self.connected && !matches!(op, ClientOp::Connect(_)) {
            return self.error_and_close(
                "Authorization Violation",
                CloseReason::AuthorizationViolation,
            );
        }
        match op {
            ClientOp::Connect(json) => self.connect(&json),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.publish(subject, reply, None, payload),
            ClientOp::Hpub {
                subject,
                reply,
                headers,
                payload,
            } => {
                if !self.options.headers {
                    tracing::debug!(cid = self.client.id.0, "HPUB without headers support");
                    return Err(CloseReason::ProtocolViolation);
                }
                self.publish(subject, reply, Some(headers), payload)
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => {
                self.subscribe(subject, queue, sid);
                Ok(())
            }
            ClientOp::Unsub { sid, max } => {
                self.unsubscribe(&sid, max);
                Ok(())
            }
            ClientOp::Ping => {
                self.active = true;
                self.out.write(|b| b.extend_from_slice(encode::PONG));
                Ok(())
            }
            ClientOp::Pong => {
                self.pings_out = 0;
                Ok(())
            }
            ClientOp::Ok => Ok(()),
            ClientOp::Err(text) => {
                tracing::debug!(
                    cid = self.client.id.0,
                    "client sent -ERR {}",
                    String::from_utf8_lossy(&text)
                );
                Err(CloseReason::ProtocolViolation)
            }
            ClientOp::Info(json) => match serde_json::from_slice::<serde_json::Value>(&json) {
                Ok(_) => Ok(()),
                Err(_) => Err(CloseReason::ProtocolViolation),
            },
        }
    }

    /// Answers a frame error the way nats-server does.
    pub fn frame_error(&mut self, error: &FrameError) -> Step {
        let reason = match error {
            FrameError::PayloadTooLarge => CloseReason::MaxPayloadExceeded,
            FrameError::ControlLineTooLong => CloseReason::MaxControlLineExceeded,
            _ => CloseReason::ProtocolViolation,
        };
        tracing::debug!(cid = self.client.id.0, %error, "parser error");
        match error.client_error() {
            Some(text) => self.error_and_close(text, reason),
            None => Err(reason),
        }
    }

    /// The auth timer fired before an accepted CONNECT.
    pub fn auth_timeout(&mut self) -> Step {
        self.error_and_close("Authentication Timeout", CloseReason::AuthenticationTimeout)
    }

    /// The ping timer fired. `force` sends a PING whatever the recent activity (the
    /// first ping after CONNECT, which nats-server uses to measure the RTT).
    pub fn ping_tick(&mut self, force: bool) -> Step {
        if !force && std::mem::take(&mut self.active) {
            return Ok(());
        }
        if self.pings_out + 1 > self.max_pings_out {
            return self.error_and_close("Stale Connection", CloseReason::StaleConnection);
        }
        self.pings_out += 1;
        self.out.write(|b| b.extend_from_slice(encode::PING));
        Ok(())
    }

    fn connect(&mut self, json: &[u8]) -> Step {
        // serde would read a JSON array as a struct's fields in order (`[]` is a
        // CONNECT with every default); nats-server wants an object.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            tracing::debug!(cid = self.client.id.0, "CONNECT is not a JSON object");
            return Err(CloseReason::ProtocolViolation);
        }
        let mut options: ConnectOptions = match serde_json::from_slice(json) {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(cid = self.client.id.0, error = %e, "invalid CONNECT");
                return Err(CloseReason::ProtocolViolation);
            }
        };
        if self.auth_required {
            let credentials = match (&options.auth_token, &options.user) {
                // verify_and_map: the certificate says who the client is, as in
                // nats-server (what CONNECT says is not used).
                _ if self.certificate.is_some() && self.engine.maps_certificates() => {
                    Credentials::Certificate(self.certificate.clone().unwrap_or_default())
                }
                _ if options.nkey.is_some() => Credentials::Nkey {
                    key: options.nkey.clone().unwrap_or_default(),
                    nonce: self.nonce.clone().unwrap_or_default(),
                    signature: options.sig.clone().unwrap_or_default(),
                },
                (Some(token), _) => Credentials::Token(token.clone()),
                (None, Some(user)) => Credentials::UserPassword {
                    user: user.clone(),
                    password: options.pass.clone().unwrap_or_default(),
                },
                (None, None) => Credentials::None,
            };
            match self
                .engine
                .authenticate_from(&credentials, self.client.remote.ip())
            {
                Ok(identity) => {
                    self.permissions = identity.permissions.clone();
                    if self
                        .permissions
                        .as_ref()
                        .is_some_and(|p| p.responses.is_some())
                    {
                        self.replies = Some(Arc::new(Replies::default()));
                    }
                    if let Err(e) = self.engine.join_tenant(&self.client, identity) {
                        tracing::info!(cid = self.client.id.0, error = %e, "connection refused");
                        self.permissions = None;
                        return self.error_and_close(
                            "maximum account active connections exceeded",
                            CloseReason::MaxConnectionsExceeded,
                        );
                    }
                }
                Err(_) => {
                    tracing::info!(cid = self.client.id.0, remote = %self.client.remote, "authentication failure");
                    return self.error_and_close(
                        "Authorization Violation",
                        CloseReason::AuthorizationViolation,
                    );
                }
            }
        }
        if options.account.is_some() || options.new_account.is_some() {
            return self.error_and_close(
                "Authorization Violation",
                CloseReason::AuthorizationViolation,
            );
        }
        if !(0..=1).contains(&options.protocol) {
            return self.error_and_close("invalid client protocol", CloseReason::ProtocolViolation);
        }
        if options.no_responders && !options.headers {
            return self.error_and_close(
                "no responders requires headers support",
                CloseReason::ProtocolViolation,
            );
        }
        self.client.set_no_echo(!options.echo);
        self.client.set_identity(
            options.name.take(),
            options.lang.take(),
            options.version.take(),
            self.client
                .identity()
                .and_then(|i| i.user.as_deref().map(str::to_string))
                .or_else(|| options.user.clone()),
        );
        options.auth_token = None;
        options.pass = None;
        options.sig = None;
        self.out.set_headers(options.headers);
        self.options = options;
        self.connected = true;
        self.client.stats.touch();
        self.ok();
        Ok(())
    }

    fn publish(
        &mut self,
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    ) -> Step {
        self.active = true;
        let size = payload.len() + headers.as_ref().map_or(0, Bytes::len);
        if self.options.pedantic && Subject::new(subject.clone()).is_err() {
            self.error("Invalid Publish Subject");
        }
        // Whatever the mode, a subject with control characters or bytes that are
        // not UTF-8 is refused: other protocols (MQTT topics, HTTP paths, JSON)
        // could not carry it faithfully.
        if let Err(e) = junction_api::check_subject_bytes(&subject) {
            tracing::info!(cid = self.client.id.0, error = %e, "publish refused: invalid subject");
            self.error("Invalid Publish Subject");
            return Ok(());
        }
        if let Some(p) = &self.permissions
            && !p.may_publish(&subject)
            && !self.response_allowed(p, &subject)
        {
            tracing::info!(
                cid = self.client.id.0,
                "Publish Violation - Subject {}",
                go_quote(&subject)
            );
            let text = format!(
                "Permissions Violation for Publish to {}",
                go_quote(&subject)
            );
            self.engine.permission_violation(&self.client, &text);
            self.error(&text);
            return Ok(());
        }
        let headers = match headers {
            Some(block) if !block.is_empty() => match encode::parse_header_block(&block) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::debug!(cid = self.client.id.0, error = %e, "bad header block");
                    return self.error_and_close(
                        "Unknown Protocol Operation",
                        CloseReason::ProtocolViolation,
                    );
                }
            },
            _ => None,
        };
        self.ok();
        self.client.stats.record_in(size);
        // Reading the clock per message costs ~10% of a core publish; the activity
        // time is recorded once per read instead (see `end_of_read`).
        self.published = true;
        let message = Message {
            subject: Subject::from_trusted(subject),
            reply: reply.map(Subject::from_trusted),
            headers,
            payload,
        };
        let stored = message.reply.clone().map(|reply| {
            let route = self.own_subscription_for(&reply);
            self.pub_ack(reply, route)
        });
        // The JetStream headers (`Nats-Msg-Id`, `Nats-Expected-*`, `Nats-Rollup`)
        // become typed options, read as nats-server reads them; the headers
        // themselves are stored as sent.
        let options = PublishOptions::from_headers(message.headers.as_ref());
        let outcome = self
            .engine
            .publish_stored(&self.client, &message, &options, stored);
        if let Some(EngineError::InternalSubject(subject)) = &outcome.refused {
            // nats-server's answer to a publish its permissions refuse; the
            // connection stays open.
            self.error(&format!(
                "Permissions Violation for Publish to \"{subject}\""
            ));
            return Ok(());
        }
        if outcome.delivered == 0
            && !outcome.captured
            && self.options.no_responders
            && let Some(reply) = &message.reply
        {
            self.no_responders(reply);
        }
        Ok(())
    }

    /// May the user answer on `subject` (a reply subject of a message it was
    /// delivered, within `allow_responses`)?
    fn response_allowed(&self, permissions: &Permissions, subject: &[u8]) -> bool {
        match (&self.replies, permissions.responses) {
            (Some(replies), Some(limits)) => replies.allow(subject, limits),
            _ => false,
        }
    }

    /// This connection's own plain subscription matching `reply`, if any (the last
    /// one that matched is tried first).
    fn own_subscription_for(&mut self, reply: &Subject) -> Option<AckRoute> {
        let fits = |s: &LocalSubscription| {
            !s.queued && !s.subscription.is_done() && s.filter.matches(reply)
        };
        if let Some(local) = self
            .ack_sid
            .as_ref()
            .and_then(|sid| self.subscriptions.get(sid))
            && fits(local)
        {
            return Some(AckRoute {
                id: local.id,
                subscription: local.subscription.clone(),
            });
        }
        // A miss costs a scan; a connection with many subscriptions (a service)
        // takes the routed path instead.
        if self.subscriptions.len() > 64 {
            return None;
        }
        let (sid, local) = self.subscriptions.iter().find(|(_, s)| fits(s))?;
        self.ack_sid = Some(sid.clone());
        Some(AckRoute {
            id: local.id,
            subscription: local.subscription.clone(),
        })
    }

    /// The callback that answers a publish captured by a station with a JetStream
    /// PubAck on the reply subject, once the message is durable.
    ///
    /// When the publisher itself subscribes to the reply subject (as every NATS
    /// client's request does), the PubAck is queued straight on that subscription:
    /// no routing, trie lookup or fan-out per ack. Otherwise (or if that
    /// subscription went away meanwhile) it is published on the reply subject like
    /// any message.
    fn pub_ack(&self, reply: Subject, route: Option<AckRoute>) -> StoredCallback {
        let engine = self.engine.clone();
        let client = self.client.clone();
        Box::new(move |result| {
            let json = match result {
                Ok(ack) => PubAck {
                    stream: ack.station,
                    seq: ack.seq,
                    domain: String::new(),
                    duplicate: ack.duplicate,
                }
                .to_nats_json(),
                Err(e) => {
                    let error = crate::jetstream::api_error(&e);
                    serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default()
                }
            };
            let message = Message::new(reply, Bytes::from(json));
            if let Some(route) = route {
                // Queued straight on the publisher's own subscription: no fan-out.
                match route.subscription.deliver(&message, FanoutId::NONE) {
                    Delivery::Accepted => {
                        engine.count_delivered(message.payload.len());
                        return;
                    }
                    Delivery::AcceptedLast => {
                        // Its `UNSUB sid max` is reached: the engine forgets it, as
                        // after a fan-out.
                        engine.count_delivered(message.payload.len());
                        engine.unsubscribe(&client, route.id);
                        return;
                    }
                    Delivery::Gone => {}
                }
            }
            let system = engine.tenant_client(client.tenant());
            engine.publish(&system, &message);
        })
    }

    /// Sends the `503` no-responders status to the requester's own subscription that
    /// matches the reply subject, as nats-server does.
    fn no_responders(&self, reply: &Subject) {
        let Some((sid, _)) = self
            .subscriptions
            .iter()
            .find(|(_, s)| !s.queued && !s.subscription.is_done() && s.filter.matches(reply))
        else {
            return;
        };
        self.out.write(|b| {
            encode::hmsg(b, reply.as_bytes(), sid, None, b"NATS/1.0 503\r\n\r\n", b"");
        });
    }

    fn subscribe(&mut self, subject: Bytes, queue: Option<Bytes>, sid: Bytes) {
        self.active = true;
        let Ok(filter) = SubjectFilter::new(subject) else {
            self.error("Invalid Subject");
            return;
        };
        let queue = match queue.map(QueueGroup::new).transpose() {
            Ok(q) => q,
            Err(_) => {
                self.error("Invalid Subject");
                return;
            }
        };
        if let Some(p) = &self.permissions {
            let q = queue.as_ref().map(|q| q.to_str_lossy().into_owned());
            if !p.may_subscribe(filter.as_bytes(), q.as_deref()) {
                let text = match &q {
                    Some(q) => format!(
                        "Permissions Violation for Subscription to {} using queue {}",
                        go_quote(filter.as_bytes()),
                        go_quote(q.as_bytes())
                    ),
                    None => format!(
                        "Permissions Violation for Subscription to {}",
                        go_quote(filter.as_bytes())
                    ),
                };
                tracing::info!(cid = self.client.id.0, sid = %String::from_utf8_lossy(&sid), "{text}");
                self.engine.permission_violation(&self.client, &text);
                self.error(&text);
                return;
            }
        }
        if let Some(existing) = self.subscriptions.get(&sid) {
            if !existing.subscription.is_done() {
                self.ok();
                return;
            }
            // It reached its auto-unsubscribe max and the engine dropped it: the sid
            // is free again, as in nats-server.
            self.subscriptions.remove(&sid);
        }
        let guard = self.permissions.as_ref().and_then(|p| {
            let q = queue.as_ref().map(|q| q.to_str_lossy().into_owned());
            let check_deny = p.needs_delivery_check(&filter, q.as_deref());
            (check_deny || self.replies.is_some()).then(|| DeliveryGuard {
                permissions: p.clone(),
                queue: q,
                check_deny,
                replies: self.replies.clone(),
            })
        });
        let subscription = Arc::new(NatsSubscription::guarded(
            sid.clone(),
            self.out.clone(),
            guard,
        ));
        let queued = queue.is_some();
        match self
            .engine
            .subscribe(&self.client, filter.clone(), queue, subscription.clone())
        {
            Ok(id) => {
                self.subscriptions.insert(
                    sid,
                    LocalSubscription {
                        id,
                        filter,
                        queued,
                        subscription,
                    },
                );
                self.client.stats.touch();
                self.ok();
                self.prune();
            }
            Err(EngineError::MaxSubscriptions) => self.error("maximum subscriptions exceeded"),
            Err(e) => tracing::warn!(cid = self.client.id.0, error = %e, "subscribe failed"),
        }
    }

    /// Forgets subscriptions that reached their auto-unsubscribe limit (the engine has
    /// already removed them), so long-lived connections that use `UNSUB sid 1` per
    /// request do not grow without bound.
    fn prune(&mut self) {
        if self.subscriptions.len() >= self.prune_at {
            self.subscriptions.retain(|_, s| !s.subscription.is_done());
            self.prune_at = (self.subscriptions.len() * 2).max(64);
        }
    }

    fn unsubscribe(&mut self, sid: &Bytes, max: Option<u64>) {
        self.active = true;
        if let Some(local) = self.subscriptions.get(sid) {
            match max {
                Some(max) if max > 0 && max > local.subscription.delivered() => {
                    local.subscription.set_max(max);
                }
                _ => {
                    if let Some(local) = self.subscriptions.remove(sid) {
                        self.engine.unsubscribe(&self.client, local.id);
                    }
                }
            }
        }
        self.client.stats.touch();
        self.ok();
    }
}
