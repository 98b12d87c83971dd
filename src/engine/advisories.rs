//! The JetStream advisories and metrics the engine publishes about stations
//! and groups, in nats-server's JSON (`server/jetstream_events.go`), whatever
//! protocol made the change:
//! - `$JS.EVENT.ADVISORY.STREAM.CREATED|UPDATED|DELETED.<station>`
//!   (`io.nats.jetstream.advisory.v1.stream_action`);
//! - `$JS.EVENT.ADVISORY.CONSUMER.CREATED|DELETED.<station>.<group>`
//!   (`io.nats.jetstream.advisory.v1.consumer_action`), also when an
//!   ephemeral group is removed for inactivity;
//! - `$JS.EVENT.ADVISORY.CONSUMER.PAUSE.<station>.<group>`
//!   (`io.nats.jetstream.advisory.v1.consumer_pause`) when a pause changes;
//! - `$JS.EVENT.METRIC.CONSUMER.ACK.<station>.<group>`
//!   (`io.nats.jetstream.metric.v1.consumer_ack`) for the acks a group's
//!   `sample_freq` picks, published by the engine's tick.
//!
//! Stations whose names start with `$` (the broker's own) have none. The
//! max-deliveries and terminated advisories are the dead-letter module's.

use super::StationEngine;
use bytes::Bytes;
use junction_api::{Message, Subject, TenantId};
use rand::Rng;
use std::time::SystemTime;

/// What happened to a station or group (nats-server's `ActionAdvisoryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Modify,
    Delete,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Delete => "delete",
        }
    }

    fn subject_token(self) -> &'static str {
        match self {
            Action::Create => "CREATED",
            Action::Modify => "UPDATED",
            Action::Delete => "DELETED",
        }
    }
}

/// An advisory's id: 22 characters, as a NUID.
fn advisory_id() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(22)
        .map(char::from)
        .collect()
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

impl StationEngine {
    fn advise(&self, tenant: &TenantId, subject: String, body: serde_json::Value) {
        let (Ok(subject), Ok(payload)) = (Subject::new(subject), serde_json::to_vec(&body)) else {
            return;
        };
        self.publish_as_system(tenant, &Message::new(subject, Bytes::from(payload)));
    }

    /// A station was created, updated or deleted.
    pub(crate) fn stream_advisory(&self, tenant: &TenantId, station: &str, action: Action) {
        if station.starts_with('$') {
            return;
        }
        self.advise(
            tenant,
            format!(
                "$JS.EVENT.ADVISORY.STREAM.{}.{station}",
                action.subject_token()
            ),
            serde_json::json!({
                "type": "io.nats.jetstream.advisory.v1.stream_action",
                "id": advisory_id(),
                "timestamp": now_rfc3339(),
                "stream": station,
                "action": action.word(),
            }),
        );
    }

    /// A group was created or deleted (an update has no consumer advisory in
    /// nats-server).
    pub(crate) fn consumer_advisory(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        action: Action,
    ) {
        if station.starts_with('$') || action == Action::Modify {
            return;
        }
        self.advise(
            tenant,
            format!(
                "$JS.EVENT.ADVISORY.CONSUMER.{}.{station}.{group}",
                action.subject_token()
            ),
            serde_json::json!({
                "type": "io.nats.jetstream.advisory.v1.consumer_action",
                "id": advisory_id(),
                "timestamp": now_rfc3339(),
                "stream": station,
                "consumer": group,
                "action": action.word(),
            }),
        );
    }

    /// A group's pause changed (paused until a time, or resumed).
    pub(crate) fn pause_advisory(
        &self,
        tenant: &TenantId,
        station: &str,
        group: &str,
        until: Option<SystemTime>,
    ) {
        if station.starts_with('$') {
            return;
        }
        let mut body = serde_json::json!({
            "type": "io.nats.jetstream.advisory.v1.consumer_pause",
            "id": advisory_id(),
            "timestamp": now_rfc3339(),
            "stream": station,
            "consumer": group,
            "paused": until.is_some_and(|t| t > SystemTime::now()),
        });
        if let (Some(t), Some(obj)) = (until, body.as_object_mut()) {
            obj.insert(
                "pause_until".into(),
                humantime::format_rfc3339_nanos(t).to_string().into(),
            );
        }
        self.advise(
            tenant,
            format!("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.{station}.{group}"),
            body,
        );
    }

    /// Publishes the ack metrics sampled since the last tick.
    pub(crate) fn publish_ack_samples(&self) {
        let samples = {
            let mut queued = self.stations.ack_samples.lock();
            if queued.is_empty() {
                return;
            }
            std::mem::take(&mut *queued)
        };
        for s in samples {
            if s.station.starts_with('$') {
                continue;
            }
            self.advise(
                &s.tenant,
                format!("$JS.EVENT.METRIC.CONSUMER.ACK.{}.{}", s.station, s.group),
                serde_json::json!({
                    "type": "io.nats.jetstream.metric.v1.consumer_ack",
                    "id": advisory_id(),
                    "timestamp": now_rfc3339(),
                    "stream": s.station,
                    "consumer": s.group,
                    "consumer_seq": s.consumer_seq,
                    "stream_seq": s.stream_seq,
                    "ack_time": u64::try_from(s.ack_time.as_nanos()).unwrap_or(u64::MAX),
                    "deliveries": s.deliveries,
                }),
            );
        }
    }
}
