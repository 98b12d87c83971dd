//! The publish pipeline: an inbound publish's way to the retained store, live
//! fan-out and station capture, and the copy for persistent sessions, with one
//! answer joined from every storage completion; and the front-end's writes to
//! its own stations.

use super::{MqttBroker, Tenant};
use crate::mailbox::{Event, Mailbox};
use crate::session::{self, H_MQTT_QOS, H_MQTT_STORED, MSGS, MSGS_PREFIX, SessionRecord};
use bytes::Bytes;
use junction_api::{
    ClientRecord, EngineError, Message, PublishOptions, StoredCallback, Subject, SubjectFilter,
};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why an inbound publish was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    /// The MQTT 5 reason code.
    pub code: u8,
    /// Why, for the log and the reason string.
    pub why: String,
    /// Not the message's fault (storage, a full disk, the cluster): a 3.1.1
    /// client, which cannot be told, is not acknowledged and sends it again.
    pub retry: bool,
}

/// What an inbound publish's storage came to: done, or why not.
pub(crate) type StoreResult = Result<(), Refusal>;
type OnDone = Box<dyn FnOnce(StoreResult) + Send>;

/// Joins several storage completions into one answer for an inbound publish.
pub(crate) struct AckJoin {
    remaining: AtomicUsize,
    error: Mutex<Option<Refusal>>,
    on_done: Mutex<Option<OnDone>>,
}

struct Part(Arc<AckJoin>);

impl Drop for Part {
    fn drop(&mut self) {
        self.0.finish_one();
    }
}

impl AckJoin {
    /// A join that calls `on_done` once every part (and the guard) completed.
    pub fn new(on_done: impl FnOnce(StoreResult) + Send + 'static) -> Arc<Self> {
        Arc::new(AckJoin {
            remaining: AtomicUsize::new(1),
            error: Mutex::new(None),
            on_done: Mutex::new(Some(Box::new(on_done))),
        })
    }

    /// A storage callback that is one part of the join. Dropped uncalled (nothing
    /// captured the message), it counts as done.
    pub fn part(self: &Arc<Self>) -> StoredCallback {
        self.remaining.fetch_add(1, Ordering::AcqRel);
        let part = Part(self.clone());
        Box::new(move |result| {
            if let Err(e) = result {
                let mut err = part.0.error.lock();
                if err.is_none() {
                    *err = Some(refusal_of(&e));
                }
            }
            drop(part);
        })
    }

    /// Releases the guard: the answer goes out once the parts are done.
    pub fn arm(self: &Arc<Self>) {
        self.finish_one();
    }

    fn finish_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(f) = self.on_done.lock().take()
        {
            let result = match self.error.lock().take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            f(result);
        }
    }
}

/// Why a publish was not stored, as MQTT says it.
pub(crate) fn refusal_of(e: &EngineError) -> Refusal {
    let code = reason_of(e);
    Refusal {
        code,
        why: e.to_string(),
        retry: code == 0x80 || matches!(e, EngineError::StorageFenced(_)),
    }
}

/// The MQTT 5 reason code for an engine refusal.
pub(crate) fn reason_of(e: &EngineError) -> u8 {
    match e {
        EngineError::MaxMessages
        | EngineError::MaxBytes
        | EngineError::MessageTooLarge
        | EngineError::TenantStorageFull { .. }
        | EngineError::StorageFenced(_) => 0x97,
        EngineError::AuthorizationViolation
        | EngineError::InternalSubject(_)
        | EngineError::InternalStation(_) => 0x87,
        EngineError::InvalidSubject(_) => 0x90,
        // Not stored for a reason that is not the message's (storage, or a
        // cluster node that holds the station did not answer): 0x80, which a
        // 3.1.1 client is never acknowledged for (it resends).
        EngineError::Storage(_)
        | EngineError::NodeUnreachable(_)
        | EngineError::StationElsewhere { .. }
        | EngineError::NoQuorum(_)
        | EngineError::ReplicasUnavailable(_)
        | EngineError::InsufficientResources(_)
        | EngineError::ShuttingDown => 0x80,
        EngineError::SchemaViolation(_) => 0x99,
        _ => 0x83,
    }
}

impl MqttBroker {
    /// The publish pipeline shared by clients and wills: retained store, live
    /// fan-out and station capture, and the copy for persistent sessions.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn route(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        mut message: Message,
        qos: u8,
        retain: bool,
        topic: &str,
        join: Option<&Arc<AckJoin>>,
    ) {
        let part = |j: Option<&Arc<AckJoin>>| j.map(AckJoin::part);
        // What the publisher asks of the station that stores it, from its user
        // properties (`msg-id` or `Nats-Msg-Id`, and the `Nats-Expected-*`
        // convention). The front-end's own copies of the same publish (retained,
        // queued for persistent sessions) are duplicates when it is, so they get
        // its de-duplication id; the preconditions are about the producer's
        // station only.
        let options = PublishOptions::from_headers(message.headers.as_ref());
        let copies = options.dedup_only();
        let durable = qos > 0 && tenant.durable_match(&message.subject);
        if durable {
            message
                .headers
                .get_or_insert_with(Default::default)
                .insert(H_MQTT_STORED, "1");
        }
        if retain {
            self.keep_retained(tenant, from, &message, qos, topic, &copies, join);
        }
        self.engine
            .publish_stored(from, &message, &options, part(join));
        if durable {
            let mut copy = message;
            copy.subject =
                Subject::from_trusted(Bytes::from(format!("{MSGS_PREFIX}{}", copy.subject)));
            self.store_internal(tenant, from, &copy, &copies, part(join));
        }
    }
}

impl MqttBroker {
    /// Writes a session record; `done` gets the outcome once it is durable (or
    /// refused). See [`Self::store_internal`].
    pub(crate) fn store_record(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        record: &SessionRecord,
        done: Option<StoredCallback>,
    ) {
        self.store_internal(
            tenant,
            from,
            &session::record_message(record),
            &PublishOptions::NONE,
            done,
        );
    }

    /// Stores a message in one of the front-end's own stations (`$MQTT_*`). When no
    /// station captured it (the station was deleted), the stations are made again
    /// ([`Self::repair`]) and it is stored once more; if that fails too, `done` gets
    /// an error, so nothing is acknowledged that is not stored.
    pub(crate) fn store_internal(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        message: &Message,
        options: &PublishOptions,
        done: Option<StoredCallback>,
    ) {
        let done = Arc::new(Mutex::new(done));
        let forward = |slot: &Arc<Mutex<Option<StoredCallback>>>| -> StoredCallback {
            let slot = slot.clone();
            let subject = message.subject.clone();
            Box::new(move |result| {
                let f = slot.lock().take();
                if let Some(f) = f {
                    // Whatever the store said, for the client it is the broker's own
                    // state that failed (0x80), not a limit of theirs.
                    f(result.map_err(|e| {
                        tracing::error!(%subject, error = %e, "MQTT state not stored");
                        match e {
                            EngineError::Storage(_) => e,
                            e => EngineError::Storage(format!("MQTT state not stored: {e}")),
                        }
                    }));
                }
            })
        };
        let outcome = self
            .engine
            .publish_stored(from, message, options, Some(forward(&done)));
        if outcome.captured {
            return;
        }
        if let Some(e) = outcome.refused {
            // Refused as a whole (not for want of a station): nothing to make again.
            let f = done.lock().take();
            if let Some(f) = f {
                f(Err(EngineError::Storage(format!(
                    "MQTT state not stored: {e}"
                ))));
            }
            return;
        }
        tracing::error!(subject = %message.subject, "MQTT station missing: making the front-end's stations again");
        if self.repair(tenant)
            && self
                .engine
                .publish_stored(from, message, options, Some(forward(&done)))
                .captured
        {
            return;
        }
        let why = format!("no station stores {}", message.subject);
        tracing::error!("MQTT state not stored: {why}");
        let f = done.lock().take();
        if let Some(f) = f {
            f(Err(EngineError::Storage(why)));
        }
    }

    /// Makes the front-end's stations again after one went missing (deleted behind
    /// the front-end's back), with what they must hold: the consumer groups of
    /// persistent subscriptions, the records of offline sessions, and (through
    /// their connections) those of connected ones. Messages that were queued in a
    /// deleted `$MQTT_msgs` are gone; nothing acknowledged from now on is.
    pub(crate) fn repair(&self, tenant: &Tenant) -> bool {
        let _one_at_a_time = tenant.repairing.lock();
        if let Err(e) = session::ensure_stations(self.engine.as_ref(), &tenant.id) {
            tracing::error!(tenant = %tenant.id.0, error = %e, "cannot make the MQTT front-end's stations again");
            return false;
        }
        let durable: Vec<((String, String), Vec<SubjectFilter>)> = tenant
            .durable
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for ((client_id, raw), subjects) in durable {
            let config = crate::channel::durable_group(&client_id, &raw, &subjects);
            match self.engine.create_internal_group(&tenant.id, MSGS, config) {
                Ok(_) | Err(EngineError::GroupExists) => {}
                Err(e) => {
                    tracing::error!(%client_id, filter = %raw, error = %e, "cannot make a persistent subscription's group again");
                }
            }
        }
        let (records, online): (Vec<SessionRecord>, Vec<Arc<Mailbox>>) = {
            let slots = tenant.slots.lock();
            (
                slots
                    .values()
                    .filter_map(|s| s.record.as_deref().cloned())
                    .collect(),
                slots
                    .values()
                    .filter_map(|s| s.online.as_ref().map(|o| o.mailbox.clone()))
                    .collect(),
            )
        };
        for record in &records {
            let message = session::record_message(record);
            if !self
                .engine
                .publish_stored(&tenant.client, &message, &PublishOptions::NONE, None)
                .captured
            {
                tracing::error!(client_id = %record.client_id, "MQTT session record not stored again");
            }
        }
        for mailbox in online {
            mailbox.push(Event::StoreRecord);
        }
        tracing::warn!(tenant = %tenant.id.0, offline_sessions = records.len(), "MQTT front-end's stations made again");
        true
    }
}

/// Header value helper.
pub(crate) fn header_qos(message: &Message) -> u8 {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(H_MQTT_QOS))
        .and_then(|q| q.parse().ok())
        .unwrap_or(0)
}
