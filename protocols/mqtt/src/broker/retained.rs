//! Retained messages: set, replaced or cleared by a retained PUBLISH, kept in
//! memory (topic → message) and in `$MQTT_rmsgs`, so they survive a restart;
//! in a cluster, stamped and announced to the other nodes, with tombstones for
//! cleared ones.

use super::{AckJoin, MqttBroker, Tenant};
use crate::session::{H_MQTT_QOS, H_MQTT_RETAIN, RMSGS, RMSGS_PREFIX, Retained};
use bytes::Bytes;
use junction_api::{ClientRecord, EngineError, Message, PublishOptions, Purge, Subject};
use std::sync::Arc;

impl MqttBroker {
    /// A retained PUBLISH's part of the pipeline ([`MqttBroker::route`]): an
    /// empty payload clears the topic's retained message, any other sets it;
    /// the store's answer joins the publish's (`join`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn keep_retained(
        &self,
        tenant: &Tenant,
        from: &ClientRecord,
        message: &Message,
        qos: u8,
        topic: &str,
        copies: &PublishOptions,
        join: Option<&Arc<AckJoin>>,
    ) {
        let part = |j: Option<&Arc<AckJoin>>| j.map(AckJoin::part);
        let stored_subject =
            Subject::from_trusted(Bytes::from(format!("{RMSGS_PREFIX}{}", message.subject)));
        // In a cluster, retained messages are kept on every node: stamped with
        // when they were set or cleared, and sent to the peers (`cluster.rs`).
        let clustered = self.engine.cluster().is_some();
        let at_ns = if clustered {
            crate::cluster::now_ns()
        } else {
            0
        };
        if message.payload.is_empty() && clustered {
            let key = message.subject.to_str_lossy().into_owned();
            tenant.retained.write().remove(topic);
            tenant.tombstones.write().insert(key, at_ns);
            let record = crate::cluster::tombstone(stored_subject, at_ns);
            self.store_internal(tenant, from, &record, copies, part(join));
            self.announce_retained(tenant, &record);
        } else if message.payload.is_empty() {
            let cleared = tenant.retained.write().remove(topic);
            match self.engine.purge_internal_station(
                &tenant.id,
                RMSGS,
                Purge {
                    filter: Some(stored_subject.to_string()),
                    ..Purge::default()
                },
            ) {
                Ok(_) => {}
                // Nothing is stored, so nothing comes back after a restart.
                Err(EngineError::StationNotFound) => {
                    tracing::error!(
                        station = RMSGS,
                        "MQTT station missing: making the front-end's stations again"
                    );
                    self.repair(tenant);
                }
                Err(e) => {
                    tracing::error!(%topic, error = %e, "cannot clear retained message");
                    // Still stored, so still retained.
                    if let Some(r) = cleared {
                        tenant.retained.write().insert(topic.to_owned(), r);
                    }
                    if let Some(part) = part(join) {
                        part(Err(EngineError::Storage(format!(
                            "retained message not cleared: {e}"
                        ))));
                    }
                }
            }
        } else {
            if clustered {
                tenant
                    .tombstones
                    .write()
                    .remove(&*message.subject.to_str_lossy());
            }
            tenant.retained.write().insert(
                topic.to_owned(),
                Retained {
                    subject: message.subject.clone(),
                    payload: message.payload.clone(),
                    qos,
                    headers: message.headers.clone(),
                    reply: message.reply.clone(),
                    volatile: false,
                    at_ns,
                },
            );
            let mut copy = message.clone();
            copy.subject = stored_subject;
            copy.reply = None;
            let h = copy.headers.get_or_insert_with(Default::default);
            h.insert(H_MQTT_QOS, qos.to_string());
            h.insert(H_MQTT_RETAIN, "1");
            if clustered {
                h.insert(crate::session::H_MQTT_AT, at_ns.to_string());
            }
            self.store_internal(tenant, from, &copy, copies, part(join));
            if clustered {
                self.announce_retained(tenant, &copy);
            }
        }
    }
}
