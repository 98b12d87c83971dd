//! Sessions in the registry: an offline session's expiry, wills (delayed and
//! stored, so a pending one survives a restart) and their publication.

use super::{MqttBroker, Tenant};
use crate::frame::Will;
use crate::session::{self, MSGS, SessionRecord, StoredWill};
use bytes::Bytes;
use junction_api::{Headers, Message, Subject};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

impl MqttBroker {
    /// Starts an offline session's expiry timer.
    pub(crate) fn schedule_expiry(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        id: &str,
        after: Duration,
    ) {
        let token = CancellationToken::new();
        {
            let mut slots = tenant.slots.lock();
            let Some(slot) = slots.get_mut(id) else {
                return;
            };
            if let Some(old) = slot.expiry.replace(token.clone()) {
                old.cancel();
            }
        }
        let broker = self.clone();
        let tenant = tenant.clone();
        let id = id.to_owned();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = broker.shutdown.cancelled() => {}
                _ = tokio::time::sleep(after) => {
                    let record = {
                        let mut slots = tenant.slots.lock();
                        match slots.get_mut(&id) {
                            Some(slot) if slot.online.is_none() && slot.expiry.as_ref().is_some_and(|t| !t.is_cancelled()) => {
                                slot.expiry = None;
                                let r = slot.record.take().map(|r| *r);
                                if slot.will.is_none() {
                                    slots.remove(&id);
                                }
                                r
                            }
                            _ => None,
                        }
                    };
                    if let Some(record) = record {
                        tracing::info!(client_id = %id, "MQTT session expired");
                        broker.discard_session(&tenant, &record);
                    }
                }
            }
        });
    }

    /// Deletes a session's groups and record.
    pub(crate) fn discard_session(&self, tenant: &Tenant, record: &SessionRecord) {
        for raw in record.subs.keys() {
            tenant
                .durable
                .write()
                .remove(&(record.client_id.clone(), raw.clone()));
            self.announce_durable(tenant, &record.client_id, raw, false);
            // Whatever the subscription's QoS now: a group left by an earlier QoS 1/2
            // subscription to the same filter goes too. A share group's queue
            // goes with its last persistent member.
            if !raw.starts_with("$share/") || !tenant.share_queued(raw) {
                let group = crate::channel::group_name(&record.client_id, raw);
                let _ = self.engine.delete_internal_group(&tenant.id, MSGS, &group);
            }
        }
        session::delete_record(self.engine.as_ref(), &tenant.id, &record.client_id);
    }

    /// Publishes a will, now or after its delay (cancelled if the client comes back).
    pub(crate) fn schedule_will(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        client_id: &str,
        will: Will,
        delay: Duration,
    ) {
        if delay.is_zero() {
            self.publish_will(tenant, client_id, will);
            return;
        }
        self.will_after(
            tenant,
            client_id,
            delay,
            Box::new(move |broker: &MqttBroker, tenant: &Tenant, id: &str| {
                broker.publish_will(tenant, id, will)
            }),
        );
    }

    /// Publishes a delayed will kept in a session record (loaded after a
    /// restart) when it is due.
    pub(super) fn schedule_stored_will(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        client_id: &str,
        w: StoredWill,
    ) {
        let delay = Duration::from_millis(w.due_ms.saturating_sub(crate::channel::now_ms()));
        self.will_after(
            tenant,
            client_id,
            delay,
            Box::new(move |broker: &MqttBroker, tenant: &Tenant, id: &str| {
                let Ok(subject) = crate::topic::topic_to_subject(&w.topic) else {
                    tracing::warn!(client_id = %id, topic = %w.topic, "stored will not published");
                    return;
                };
                let mut headers = Headers::new();
                for (k, v) in w.headers {
                    headers.append(k, v);
                }
                use base64::Engine as _;
                let payload = base64::engine::general_purpose::STANDARD
                    .decode(&w.payload)
                    .unwrap_or_default();
                let message = Message {
                    subject,
                    reply: w.reply.and_then(|r| Subject::new(Bytes::from(r)).ok()),
                    headers: Some(headers),
                    payload: Bytes::from(payload),
                };
                tracing::debug!(client_id = %id, topic = %w.topic, "publishing a will kept across a restart");
                broker.route(tenant, &tenant.client, message, w.qos, w.retain, &w.topic, None);
            }),
        );
    }

    /// Runs `publish` after `delay` unless the client comes back first, then
    /// takes the will out of the offline session's record.
    fn will_after(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        client_id: &str,
        delay: Duration,
        publish: PublishWill,
    ) {
        let token = CancellationToken::new();
        {
            let mut slots = tenant.slots.lock();
            let slot = slots.entry(client_id.to_owned()).or_default();
            if let Some(old) = slot.will.replace(token.clone()) {
                old.cancel();
            }
        }
        let broker = self.clone();
        let tenant = tenant.clone();
        let id = client_id.to_owned();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = broker.shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let cleared = {
                        let mut slots = tenant.slots.lock();
                        let mut cleared = None;
                        if let Some(slot) = slots.get_mut(&id) {
                            slot.will = None;
                            if slot.online.is_none()
                                && let Some(r) = slot.record.as_mut()
                                && r.will.take().is_some()
                            {
                                cleared = Some(r.clone());
                            }
                            if slot.online.is_none() && slot.record.is_none() {
                                slots.remove(&id);
                            }
                        }
                        cleared
                    };
                    publish(&broker, &tenant, &id);
                    // The record without the will, unless the session ends now
                    // anyway (its expiry deletes the record; a write racing it
                    // would bring it back).
                    if let Some(r) = cleared
                        && remaining_expiry(r.expiry, r.disconnected_ms, crate::channel::now_ms())
                            .is_some_and(|left| left > WILL_CLEAR_MARGIN)
                    {
                        broker.store_record(&tenant, &tenant.client, &r, None);
                    }
                }
            }
        });
    }

    fn publish_will(&self, tenant: &Tenant, client_id: &str, will: Will) {
        let subject = match crate::topic::topic_to_subject(&will.topic) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%client_id, topic = %will.topic, error = %e, "will not published");
                return;
            }
        };
        tracing::debug!(%client_id, topic = %will.topic, "publishing will");
        let qos = crate::frame::qos_num(will.qos);
        let message = crate::channel::build_message(
            subject,
            &will.topic,
            will.payload,
            qos,
            will.retain,
            &will.properties,
            client_id,
        );
        self.route(
            tenant,
            &tenant.client,
            message,
            qos,
            will.retain,
            &will.topic,
            None,
        );
    }
}

/// How long an offline session has left; `None`: it never expires.
pub(crate) fn remaining_expiry(expiry: u32, disconnected_ms: u64, now_ms: u64) -> Option<Duration> {
    if expiry == u32::MAX {
        return None;
    }
    let total = u64::from(expiry) * 1000;
    let gone = now_ms.saturating_sub(disconnected_ms);
    Some(Duration::from_millis(total.saturating_sub(gone)))
}

/// Publishes a will (for a tenant and a client id) when its delay is over.
type PublishWill = Box<dyn FnOnce(&MqttBroker, &Tenant, &str) + Send>;

/// A session's expiry closer than this when its delayed will is published: the
/// record is not written again without the will (the expiry deletes it).
const WILL_CLEAR_MARGIN: Duration = Duration::from_secs(2);

/// A delayed will as the session record keeps it: the message it publishes
/// (built as it will be published), due at `due_ms`.
pub(crate) fn stored_will(client_id: &str, w: &Will, due_ms: u64) -> Option<StoredWill> {
    let subject = crate::topic::topic_to_subject(&w.topic).ok()?;
    let qos = crate::frame::qos_num(w.qos);
    let m = crate::channel::build_message(
        subject,
        &w.topic,
        w.payload.clone(),
        qos,
        w.retain,
        &w.properties,
        client_id,
    );
    use base64::Engine as _;
    Some(StoredWill {
        topic: w.topic.clone(),
        qos,
        retain: w.retain,
        payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
        headers: m
            .headers
            .as_ref()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        reply: m
            .reply
            .as_ref()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned()),
        due_ms,
    })
}
