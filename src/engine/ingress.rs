//! The ingress path of a publish, up to the stores: reserved headers stripped,
//! routing rules applied, the capturing (and routed) stations found, the lineage
//! record (kept beside the message, never in its headers), schema validation and
//! the appends. Live fan-out follows in
//! [`StationEngine::publish_stored`](junction_api::Engine::publish_stored).

use super::StationEngine;
use super::station::Station;
use junction_api::{
    ClientRecord, EngineError, Message, Protocol, PublishOptions, StationConfig, StoredCallback,
    TenantId, is_internal_publish_subject, reserved_overlap,
};
use std::borrow::Cow;
use std::sync::Arc;

/// What the stores made of a publish.
pub(crate) struct Captured {
    /// A station captured (or a rule routed) it.
    pub stored: bool,
    /// The capturing station refused it (its schema): it is not delivered live
    /// either.
    pub refused: bool,
}

impl StationEngine {
    /// Runs the ingress path; `options` go to every station that stores the
    /// message (the capturing one and routed copies). `Err`: the message was refused as a whole (a routing
    /// rule dropped it, or its subject is the broker's own); the stored callback got
    /// the same error when a station would have captured it. Otherwise the message
    /// to fan out (stripped, maybe re-subjected) and what was stored.
    pub(crate) fn ingress<'m>(
        &self,
        from: &ClientRecord,
        message: &'m Message,
        options: &PublishOptions,
        stored: Option<StoredCallback>,
    ) -> Result<(Cow<'m, Message>, Captured), EngineError> {
        let internal = from.id == self.system.id;
        if !internal && is_internal_publish_subject(message.subject.as_bytes()) {
            // MQTT's session state is written by the MQTT front-end (which refuses
            // `$MQTT/…` topics from its clients); nobody else writes there.
            let mqtt_own = from.protocol == Protocol::Mqtt
                && message.subject.as_bytes().starts_with(b"$MQTT.");
            if !mqtt_own {
                let subject = message.subject.to_str_lossy().into_owned();
                tracing::info!(cid = from.id.0, %subject, "publish to an internal subject refused");
                return Err(EngineError::InternalSubject(subject));
            }
        }
        // Reserved `Junction-*` headers are the engine's: clients cannot set them.
        // The MQTT front-end is the exception that proves it: it drops every
        // `Junction-*` user property a client sends and sets its own markers
        // (`Junction-Origin-Protocol`, ...; see `lineage::MQTT_MARKERS`) itself.
        let message = if internal || from.protocol == Protocol::Mqtt {
            Cow::Borrowed(message)
        } else {
            super::lineage::strip_reserved(message)
        };
        // Content-based routing (never for the engine's own messages: PubAcks,
        // advisories).
        let mut routes = Vec::new();
        let message = match (!internal)
            .then(|| self.routing.evaluate(from.tenant(), &message))
            .flatten()
        {
            Some(d) if d.drop => {
                let rule = d.dropped_by.unwrap_or_default();
                tracing::debug!(cid = from.id.0, %rule, subject = %message.subject, "message dropped by a routing rule");
                let error = EngineError::DroppedByRule(rule);
                // A producer waiting for a station's answer is told.
                if let Some(stored) = stored
                    && self
                        .stations
                        .capture(from.tenant(), &message.subject)
                        .is_some()
                {
                    stored(Err(error.clone()));
                }
                return Err(error);
            }
            Some(d) => {
                routes = d.routes;
                match d.resubject {
                    Some(subject) => Cow::Owned(Message {
                        subject,
                        reply: message.reply.clone(),
                        headers: message.headers.clone(),
                        payload: message.payload.clone(),
                    }),
                    None => message,
                }
            }
            None => message,
        };
        let mut targets: Vec<Arc<Station>> = self
            .stations
            .capture(from.tenant(), &message.subject)
            .into_iter()
            .collect();
        // In a cluster, stations other nodes hold: the one that captures the
        // subject when no station here does, and those rules route to.
        let mut remote: Vec<Arc<super::placement::RemoteStation>> = if targets.is_empty() {
            self.placed
                .capture(from.tenant(), &message.subject)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        for name in &routes {
            match self.stations.get(from.tenant(), name) {
                Ok(s) if !targets.iter().any(|t| t.name() == s.name()) => targets.push(s),
                Ok(_) => {}
                Err(_) => match self.placed.get(from.tenant(), name) {
                    Some(r) if !remote.iter().any(|t| t.config.name == r.config.name) => {
                        remote.push(r)
                    }
                    Some(_) => {}
                    None => tracing::warn!(station = %name, "routing rule names a missing station"),
                },
            }
        }
        let remote_first = targets.is_empty();
        let captured = !targets.is_empty() || !remote.is_empty();
        if captured {
            // Lineage is kept beside what stations store, in the record's lineage
            // section; the headers stay the producer's.
            let super::lineage::Recorded {
                lineage, ticket, ..
            } = self.lineage.record(from, &message);
            // The MQTT front-end's markers stay in its own stations only.
            let unmarked = if from.protocol == Protocol::Mqtt {
                super::lineage::strip_mqtt_markers(&message)
            } else {
                Cow::Borrowed(&*message)
            };
            let mut stored = stored;
            for (i, station) in targets.iter().enumerate() {
                let copy: &Message = if station.name().starts_with("$MQTT_") {
                    &message
                } else {
                    &unmarked
                };
                // The station's `subject_transform`: stored (and republished)
                // under the transformed subject.
                let transformed;
                let copy: &Message = match station.input_subject(&copy.subject) {
                    Some(subject) => {
                        transformed = Message {
                            subject,
                            ..copy.clone()
                        };
                        &transformed
                    }
                    None => copy,
                };
                // A message the (first) station's schema refuses is refused as a
                // whole: not stored, and not delivered live either. A routed copy
                // that a routed station refuses is only left out there.
                if let Err(violation) = self.check_schema(station, copy, &lineage) {
                    let copied = if station.config().dead_letter.schema_violation {
                        " (copied to the dead-letter station)"
                    } else {
                        ""
                    };
                    self.events.record(
                        junction_api::SystemEventKind::SchemaViolation,
                        super::events::About {
                            client: (from.id != self.system.id).then_some(from),
                            tenant: Some(from.tenant()),
                            station: Some(station.name()),
                            ..Default::default()
                        },
                        format!("{violation}{copied}"),
                    );
                    if i == 0 {
                        if let Some(stored) = stored.take() {
                            stored(Err(EngineError::SchemaViolation(violation)));
                        }
                        return Ok((
                            message,
                            Captured {
                                stored: true,
                                refused: true,
                            },
                        ));
                    }
                    continue;
                }
                // The tenant's `max_file` / `max_memory`: not stored (logged and
                // counted there), but still delivered live, as nats-server
                // delivers a core publish its stream refuses.
                if let Err(full) = self.admit_to_tenant_storage(station, copy) {
                    if i == 0
                        && let Some(stored) = stored.take()
                    {
                        stored(Err(full));
                    }
                    continue;
                }
                let callback = if i == 0 {
                    self.capture_callback(ticket, station.name_arc(), stored.take())
                } else {
                    routed_callback(station.name().to_string())
                };
                let callback = if let Some(republish) = station.republish() {
                    let last = station.last_seq_of(copy.subject.as_bytes());
                    let me = self.me.clone();
                    let tenant = from.tenant().clone();
                    super::republish::wrap(
                        station.name(),
                        &republish,
                        copy,
                        last,
                        move |m| {
                            if let Some(e) = me.upgrade() {
                                e.publish_as_system(&tenant, &m);
                            }
                        },
                        callback,
                    )
                } else {
                    callback
                };
                match station.replica.get() {
                    // A replicated station: through its group (its leader).
                    Some(group) => self.replicated_append(
                        from.tenant(),
                        station,
                        group,
                        copy,
                        options,
                        &lineage,
                        false,
                        None,
                        callback,
                    ),
                    // Its group has not started here yet.
                    None if station.is_replicated() => {
                        callback(Err(EngineError::ReplicasUnavailable(format!(
                            "station '{}' is starting on this node",
                            station.name()
                        ))))
                    }
                    None => station.append(copy, options, lineage.clone(), Some(callback)),
                }
            }
            // Stations other nodes hold get a store call; the capturing one's
            // answer is the publisher's. Its schema is checked there (which
            // dead-letters what it refuses) and here, so that a message it
            // refuses is not delivered live either, as on one node.
            let refused_there = remote_first
                && remote
                    .first()
                    .is_some_and(|r| !self.remote_schema_accepts(from.tenant(), r, &unmarked));
            for (i, station) in remote.iter().enumerate() {
                let name = station.config.name.clone();
                let callback = if remote_first && i == 0 {
                    self.capture_callback(ticket, Arc::from(name), stored.take())
                } else {
                    routed_callback(name)
                };
                self.store_remote(
                    from.tenant(),
                    station,
                    &unmarked,
                    options,
                    &lineage,
                    callback,
                );
            }
            if refused_there {
                return Ok((
                    message,
                    Captured {
                        stored: true,
                        refused: true,
                    },
                ));
            }
        }
        Ok((
            message,
            Captured {
                stored: captured,
                refused: false,
            },
        ))
    }
}

impl StationEngine {
    /// The capturing station's callback: notes where the message was stored for
    /// its lineage, then answers the publisher.
    fn capture_callback(
        &self,
        ticket: super::lineage::Ticket,
        name: Arc<str>,
        stored: Option<StoredCallback>,
    ) -> StoredCallback {
        let index = self.lineage.clone();
        Box::new(move |result| {
            if let Ok(ack) = &result
                && !ack.duplicate
            {
                index.stored(ticket, &name, ack.seq);
            }
            if let Some(stored) = stored {
                stored(result);
            }
        })
    }
}

/// A routed copy's callback: a copy that was not stored is logged.
fn routed_callback(name: String) -> StoredCallback {
    Box::new(move |result| {
        if let Err(e) = result {
            tracing::warn!(station = name, error = %e, "routed copy not stored");
        }
    })
}

/// Is `name` one of the broker's own stations (`$dls_…`, `$MQTT_…`, `$sys…`)?
/// Every name starting with `$` is reserved for them.
pub(crate) fn is_internal_station(name: &str) -> bool {
    name.starts_with('$')
}

/// What a client may not put in a station it creates or changes: a `$` name
/// (reserved for the broker's own stations; dead-letter stations are made from their
/// station's policy) or a subject that overlaps a reserved space (`$JS.API.>`,
/// `_INBOX.>`, …), which would store every API request and answer it twice.
pub(crate) fn check_client_station(config: &StationConfig) -> Result<(), EngineError> {
    if config.name.starts_with(junction_api::DLS_PREFIX) {
        return Err(EngineError::invalid_config(format!(
            "station names starting with '{}' are reserved for dead-letter stations",
            junction_api::DLS_PREFIX
        )));
    }
    if is_internal_station(&config.name) {
        return Err(EngineError::invalid_config(
            "station names starting with '$' are reserved for the broker's internal stations",
        ));
    }
    for subject in &config.subjects {
        if let Some(space) = reserved_overlap(subject.as_bytes()) {
            return Err(EngineError::invalid_config(format!(
                "subject '{subject}' overlaps the reserved subject space '{space}'"
            )));
        }
    }
    Ok(())
}

/// Refuses a client's change to one of the broker's own stations. Dead-letter
/// stations may be read, consumed, purged and have messages dropped (`allow_dls`),
/// never deleted on their own.
pub(crate) fn refuse_internal(name: &str, allow_dls: bool) -> Result<(), EngineError> {
    if allow_dls && name.starts_with(junction_api::DLS_PREFIX) {
        return Ok(());
    }
    if is_internal_station(name) {
        tracing::info!(
            station = name,
            "client change to an internal station refused"
        );
        return Err(EngineError::InternalStation(name.to_string()));
    }
    Ok(())
}

/// [`refuse_internal`] for consumer groups: dead-letter stations and the
/// system events station ([`junction_api::EVENTS_STATION`]) are there to be
/// consumed, so groups may be made, changed and deleted on them.
pub(crate) fn refuse_internal_group(station: &str) -> Result<(), EngineError> {
    if station == junction_api::EVENTS_STATION {
        return Ok(());
    }
    refuse_internal(station, true)
}

impl StationEngine {
    /// Stations (of `tenant`) whose configuration names schema `name`, sorted.
    pub(crate) fn schema_users(&self, tenant: &TenantId, name: &str) -> Vec<String> {
        self.stations
            .names(tenant, None)
            .into_iter()
            .filter(|s| {
                self.stations
                    .get(tenant, s)
                    .is_ok_and(|st| st.schema().is_some_and(|(n, _)| &*n == name))
            })
            .collect()
    }

    /// A station may name only a schema (and version) that exists.
    pub(crate) fn check_station_schema(
        &self,
        tenant: &TenantId,
        config: &StationConfig,
    ) -> Result<(), EngineError> {
        match &config.schema {
            Some(name) => self.schemas.check(tenant, name, config.schema_version),
            None if config.schema_version.is_some() => {
                Err(EngineError::invalid_config("schema_version needs a schema"))
            }
            None => Ok(()),
        }
    }

    /// Creates or reconfigures the dead-letter station once the policy captures
    /// something. A DLS whose policy is switched off is kept, with its contents.
    pub(crate) fn sync_dead_letter(
        &self,
        tenant: &TenantId,
        config: &StationConfig,
    ) -> Result<(), EngineError> {
        let exists = self
            .stations
            .get(tenant, &junction_api::dead_letter_station(&config.name))
            .is_ok();
        if config.dead_letter.enabled() || exists {
            self.stations.ensure_dead_letter(tenant, config)?;
        }
        Ok(())
    }
}
