//! The webhooks as the HTTP API manages them ([`NotificationCentre`]): listed
//! with their health, made and changed (kept in the store's metadata as
//! `webhook/<name>`, fsynced before the answer), deleted with their consumer
//! groups, and tried with a `test` event.

use super::{Notifier, Out, WebhookConfig, body, post_request};
use crate::engine::StationEngine;
use junction_api::{
    Admin as _, AdminFuture, Broker as _, EVENTS_STATION, EngineError, NotificationCentre,
    REDACTED_SECRET, SystemEventKind, TenantId, WebhookInfo, WebhookSource, WebhookTestOutcome,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where the webhooks made over the API are kept in the store's metadata.
const KEY_PREFIX: &str = "webhook/";

fn meta_key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// The webhooks made over the API before the last stop. One that no longer
/// reads or checks is logged and left out.
pub(super) fn load_stored(engine: &StationEngine) -> BTreeMap<String, WebhookConfig> {
    let stored = match engine.store().list_meta(KEY_PREFIX) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %e, "the webhooks made over the API do not read; they are left out");
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (key, value) in stored {
        let name = key.trim_start_matches(KEY_PREFIX).to_string();
        let config = serde_json::from_slice::<WebhookConfig>(&value)
            .map_err(|e| e.to_string())
            .and_then(|w| w.validate().map(|()| w));
        match config {
            Ok(w) => {
                out.insert(name, w);
            }
            Err(e) => {
                tracing::error!(webhook = %name, error = %e, "a stored webhook does not read; it is left out");
            }
        }
    }
    out
}

/// `config` as JSON with its secret hidden.
fn redacted(config: &WebhookConfig) -> serde_json::Value {
    let mut v = serde_json::to_value(config).unwrap_or_default();
    if config.secret.is_some() {
        v["secret"] = serde_json::Value::from(REDACTED_SECRET);
    }
    v
}

impl Notifier {
    fn engine(&self) -> Result<Arc<StationEngine>, EngineError> {
        self.engine.upgrade().ok_or(EngineError::ShuttingDown)
    }

    fn me(&self) -> Result<Arc<Notifier>, EngineError> {
        self.me.upgrade().ok_or(EngineError::ShuttingDown)
    }

    /// Webhook `name`'s configuration and where it is defined.
    fn find(&self, name: &str) -> Option<(WebhookConfig, WebhookSource)> {
        self.wanted().into_iter().find(|(w, _)| w.name == name)
    }

    /// Refuses to change webhook `name` when the configuration file has it.
    fn editable(&self, name: &str) -> Result<(), EngineError> {
        if self.file.lock().iter().any(|w| w.name == name) {
            return Err(EngineError::WebhookReadOnly(format!(
                "webhook '{name}' is defined in the configuration file ([[notifications.webhooks]]); change it there"
            )));
        }
        Ok(())
    }

    /// `config` (JSON from the API) read and checked as webhook `name`; a
    /// secret given as [`REDACTED_SECRET`] keeps the one the webhook has.
    fn read_config(
        &self,
        name: &str,
        mut config: serde_json::Value,
    ) -> Result<WebhookConfig, EngineError> {
        let Some(fields) = config.as_object_mut() else {
            return Err(EngineError::invalid_config(
                "a webhook is a JSON object: {\"url\", \"kinds\", \"tenants\", \"min_severity\", \"format\", \"headers\", \"secret\", ...}",
            ));
        };
        match fields.get("name") {
            None => {
                fields.insert("name".into(), serde_json::Value::from(name));
            }
            Some(given) if given.as_str() == Some(name) => {}
            Some(given) => {
                return Err(EngineError::invalid_config(format!(
                    "the body names webhook {given}, the path '{name}'"
                )));
            }
        }
        if fields.get("secret").and_then(|s| s.as_str()) == Some(REDACTED_SECRET) {
            let kept = self.stored.lock().get(name).and_then(|w| w.secret.clone());
            match kept {
                Some(secret) => fields.insert("secret".into(), serde_json::Value::from(secret)),
                None => fields.remove("secret"),
            };
        }
        let config: WebhookConfig = serde_json::from_value(config)
            .map_err(|e| EngineError::invalid_config(format!("webhook '{name}': {e}")))?;
        config.validate().map_err(EngineError::invalid_config)?;
        Ok(config)
    }

    /// Webhook `w`'s events waiting: its groups' lag over the tenants it
    /// covers.
    fn pending(&self, engine: &StationEngine, w: &WebhookConfig) -> u64 {
        engine
            .events_tenants()
            .iter()
            .filter(|t| w.covers(t))
            .filter_map(|t| engine.group_info(t, EVENTS_STATION, &w.group()).ok())
            .map(|g| g.state.num_pending + g.state.num_ack_pending)
            .sum()
    }

    fn info(&self, w: &WebhookConfig, source: WebhookSource) -> WebhookInfo {
        let mut health = self.health.lock().get(&w.name).cloned().unwrap_or_default();
        if let Some(engine) = self.engine.upgrade() {
            health.pending = self.pending(&engine, w);
        }
        WebhookInfo {
            name: w.name.clone(),
            source,
            config: redacted(w),
            health,
        }
    }
}

impl NotificationCentre for Notifier {
    fn webhooks(&self) -> Vec<WebhookInfo> {
        let mut all: Vec<WebhookInfo> = self
            .wanted()
            .iter()
            .map(|(w, source)| self.info(w, *source))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn put_webhook(&self, name: &str, config: serde_json::Value) -> AdminFuture<WebhookInfo> {
        let name = name.to_string();
        let checked = self.editable(&name).and_then(|()| {
            let config = self.read_config(&name, config)?;
            Ok((config, self.me()?, self.engine()?))
        });
        Box::pin(async move {
            let (config, me, engine) = checked?;
            tokio::task::spawn_blocking(move || {
                let _edit = me.edits.lock();
                // The file may have taken the name since the check.
                me.editable(&name)?;
                let json =
                    serde_json::to_vec(&config).map_err(|e| EngineError::Storage(e.to_string()))?;
                engine
                    .store()
                    .put_meta(&meta_key(&name), &json)
                    .map_err(|e| EngineError::Storage(e.to_string()))?;
                me.stored.lock().insert(name.clone(), config.clone());
                me.run_wanted();
                tracing::info!(webhook = %name, url = %config.url, "webhook saved over the API");
                Ok(me.info(&config, WebhookSource::Api))
            })
            .await
            .map_err(|e| EngineError::Storage(format!("webhook not saved: {e}")))?
        })
    }

    fn delete_webhook(&self, name: &str) -> AdminFuture<()> {
        let name = name.to_string();
        let checked = self.editable(&name).and_then(|()| {
            if !self.stored.lock().contains_key(&name) {
                return Err(EngineError::WebhookNotFound);
            }
            Ok((self.me()?, self.engine()?))
        });
        Box::pin(async move {
            let (me, engine) = checked?;
            let removed = {
                let (me, engine, name) = (me.clone(), engine.clone(), name.clone());
                tokio::task::spawn_blocking(move || {
                    let _edit = me.edits.lock();
                    let Some(removed) = me.stored.lock().get(&name).cloned() else {
                        return Err(EngineError::WebhookNotFound);
                    };
                    engine
                        .store()
                        .remove_meta(&meta_key(&name))
                        .map_err(|e| EngineError::Storage(e.to_string()))?;
                    me.stored.lock().remove(&name);
                    me.run_wanted();
                    Ok(removed)
                })
                .await
                .map_err(|e| EngineError::Storage(format!("webhook not deleted: {e}")))??
            };
            // Its groups go too: a webhook made again with this name starts
            // from its own creation, not from where this one stopped.
            for tenant in engine.events_tenants() {
                if !removed.covers(&tenant) {
                    continue;
                }
                match engine
                    .delete_group(&tenant, EVENTS_STATION, &removed.group())
                    .await
                {
                    Ok(()) | Err(EngineError::GroupNotFound) => {}
                    Err(e) => {
                        tracing::warn!(webhook = %name, tenant = %tenant.0, error = %e, "a deleted webhook's group stays");
                    }
                }
            }
            tracing::info!(webhook = %name, "webhook deleted over the API");
            Ok(())
        })
    }

    fn test_webhook(&self, name: &str) -> AdminFuture<WebhookTestOutcome> {
        let found = self
            .find(name)
            .ok_or(EngineError::WebhookNotFound)
            .and_then(|(w, _)| Ok((w, self.engine()?)));
        let http = self.http.clone();
        Box::pin(async move {
            let (config, engine) = found?;
            let event = engine.unrecorded_event(
                SystemEventKind::Test,
                format!(
                    "a test of webhook '{}': it reaches this receiver",
                    config.name
                ),
            );
            let out = Out {
                tenant: TenantId(Arc::from(event.tenant.as_str())),
                seq: 0,
                event,
            };
            let event_id = super::event_id(&out);
            let body = body(config.format, std::slice::from_ref(&out));
            let sent = post_request(&http, &config, &body, std::slice::from_ref(&event_id), 1)
                .send()
                .await;
            let outcome = match sent {
                Ok(answer) => {
                    let status = answer.status();
                    WebhookTestOutcome {
                        event_id,
                        status: Some(status.as_u16()),
                        ok: status.is_success(),
                        error: (!status.is_success())
                            .then(|| format!("POST {} answered {status}", config.url)),
                    }
                }
                Err(e) => WebhookTestOutcome {
                    event_id,
                    status: None,
                    ok: false,
                    error: Some(format!("POST {} failed: {e}", config.url)),
                },
            };
            tracing::info!(webhook = %config.name, ok = outcome.ok, status = ?outcome.status, "webhook test sent");
            Ok(outcome)
        })
    }
}
