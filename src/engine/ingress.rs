//! The ingress path of a publish, up to the stores: reserved headers stripped,
//! routing rules applied, the capturing (and routed) stations found, the lineage
//! stamp, schema validation and the appends. Live fan-out follows in
//! [`StationEngine::publish_stored`](junction_api::Engine::publish_stored).

use super::StationEngine;
use super::station::Station;
use junction_api::{
    ClientRecord, EngineError, Message, Protocol, StationConfig, StoredCallback, TenantId,
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
    /// Runs the ingress path. `None`: a routing rule dropped the message. Otherwise
    /// the message to fan out (stripped, maybe re-subjected) and what was stored.
    pub(crate) fn ingress<'m>(
        &self,
        from: &ClientRecord,
        message: &'m Message,
        stored: Option<StoredCallback>,
    ) -> Option<(Cow<'m, Message>, Captured)> {
        // Reserved `Junction-*` headers are the engine's: clients cannot set them.
        // The MQTT front-end is the exception that proves it: it drops every
        // `Junction-*` user property a client sends and sets the MQTT lineage
        // (`Junction-Origin-Topic`, ...) itself.
        let message = if from.id == self.system.id || from.protocol == Protocol::Mqtt {
            Cow::Borrowed(message)
        } else {
            super::lineage::strip_reserved(message)
        };
        // Content-based routing (never for the engine's own messages: PubAcks,
        // advisories).
        let mut routes = Vec::new();
        let message = match (from.id != self.system.id)
            .then(|| self.routing.evaluate(&from.tenant, &message))
            .flatten()
        {
            Some(d) if d.drop => return None,
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
            .capture(&from.tenant, &message.subject)
            .into_iter()
            .collect();
        for name in &routes {
            match self.stations.get(&from.tenant, name) {
                Ok(s) if !targets.iter().any(|t| t.name() == s.name()) => targets.push(s),
                Ok(_) => {}
                Err(_) => tracing::warn!(station = %name, "routing rule names a missing station"),
            }
        }
        let captured = !targets.is_empty();
        if captured {
            // What stations store carries lineage; live fan-out does not.
            let (stamped, msg_id) = self.lineage.stamp(from, &message);
            let mut stored = stored;
            for (i, station) in targets.iter().enumerate() {
                // A message the (first) station's schema refuses is refused as a
                // whole: not stored, and not delivered live either. A routed copy
                // that a routed station refuses is only left out there.
                if let Err(violation) = self.check_schema(station, &stamped) {
                    let copied = if station.config().dead_letter.schema_violation {
                        " (copied to the dead-letter station)"
                    } else {
                        ""
                    };
                    self.events.record(
                        junction_api::SystemEventKind::SchemaViolation,
                        super::events::About {
                            client: (from.id != self.system.id).then_some(from),
                            tenant: Some(&from.tenant),
                            station: Some(station.name()),
                            ..Default::default()
                        },
                        format!("{violation}{copied}"),
                    );
                    if i == 0 {
                        if let Some(stored) = stored.take() {
                            stored(Err(EngineError::SchemaViolation(violation)));
                        }
                        return Some((
                            message,
                            Captured {
                                stored: true,
                                refused: true,
                            },
                        ));
                    }
                    continue;
                }
                let callback: StoredCallback = if i == 0 {
                    let lineage = self.lineage.clone();
                    let msg_id = msg_id.clone();
                    let stored = stored.take();
                    Box::new(move |result| {
                        if let Ok(ack) = &result
                            && !ack.duplicate
                        {
                            lineage.stored(&msg_id, &ack.station, ack.seq);
                        }
                        if let Some(stored) = stored {
                            stored(result);
                        }
                    })
                } else {
                    let name = station.name().to_string();
                    Box::new(move |result| {
                        if let Err(e) = result {
                            tracing::warn!(station = name, error = %e, "routed copy not stored");
                        }
                    })
                };
                station.append(&stamped, Some(callback));
            }
        }
        Some((
            message,
            Captured {
                stored: captured,
                refused: false,
            },
        ))
    }
}

/// Station names starting with `$dls_` belong to dead-letter stations, which the
/// engine creates and configures from their station's `dead_letter` policy.
pub(crate) fn refuse_reserved(name: &str) -> Result<(), EngineError> {
    if name.starts_with(junction_api::DLS_PREFIX) {
        return Err(EngineError::InvalidConfig(format!(
            "station names starting with '{}' are reserved for dead-letter stations",
            junction_api::DLS_PREFIX
        )));
    }
    Ok(())
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
            None if config.schema_version.is_some() => Err(EngineError::InvalidConfig(
                "schema_version needs a schema".into(),
            )),
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
