//! Configuration reload while the broker runs (SIGHUP, `junction --signal
//! reload`, `POST /v1/server/reload`), as nats-server's reload.
//!
//! The whole file is read and checked again; if it is valid and differs from
//! the running configuration only in what can change live, it is applied at
//! once, else nothing changes and the reason is logged and recorded as a
//! `config_reload_failed` event.
//!
//! What can change: the users of `[auth]` (and `user`/`password`), the token,
//! the webhooks of `[notifications]`, `[[tenants]]` (their users, permissions
//! and limits, tenants added or removed), `log_level`, `http.cors_origins`, and
//! the `[limits]` the self-checks read ([`LIVE_LIMITS`]). Users removed or
//! changed have their connections closed (they log in again under the new
//! rules); a new tenant is served at once. Anything else (listen addresses, the
//! data directory, the wire limits announced to clients at connect, a tenant's
//! exports and imports, `system_account`, `no_auth_user`, ...) is refused with
//! "config reload not supported for KEY", because applying it would need a
//! restart. TLS certificate files are watched and reloaded on their own.

use crate::config::{Config, ConfigError};
use crate::engine::StationEngine;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::{Arc, Weak};

/// Reads the configuration again, as at start (file, environment, flags).
pub type ConfigLoader = Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

/// Changes the log level (`log_level`) of the running process.
pub type LogLevelHook = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The `[limits]` keys a reload applies: the disk fence and the self-checks'
/// thresholds. The others are announced to clients when they connect (INFO,
/// CONNACK) or size listeners, so they need a restart.
pub const LIVE_LIMITS: [&str; 7] = [
    "disk_max_used_percent",
    "disk_min_free",
    "memory_max",
    "memory_high_percent",
    "consumer_lag_alarm",
    "stuck_ack_alarm",
    "fsync_p99_alarm",
];

static LOG_LEVEL_HOOK: std::sync::OnceLock<LogLevelHook> = std::sync::OnceLock::new();

/// Sets how a reload changes the log level (the binary's logging set-up does,
/// once; without it a changed `log_level` applies at the next start).
pub fn set_log_level_hook(hook: LogLevelHook) {
    let _ = LOG_LEVEL_HOOK.set(hook);
}

/// What reloads the running configuration.
pub struct Reloader {
    engine: Weak<StationEngine>,
    current: Mutex<Config>,
    loader: Mutex<Option<ConfigLoader>>,
    notifier: Mutex<Option<Arc<crate::notify::Notifier>>>,
    cors_origins: Mutex<Option<junction_http::CorsOrigins>>,
}

impl Reloader {
    /// A reloader for `engine`, started with `config`; it needs a loader
    /// ([`Reloader::set_loader`]) before it can reload.
    pub fn new(engine: &Arc<StationEngine>, config: Config) -> Arc<Reloader> {
        Arc::new(Reloader {
            engine: Arc::downgrade(engine),
            current: Mutex::new(config),
            loader: Mutex::new(None),
            notifier: Mutex::new(None),
            cors_origins: Mutex::new(None),
        })
    }

    /// The webhooks a reload changes (`[notifications]`).
    pub fn set_notifier(&self, notifier: Arc<crate::notify::Notifier>) {
        *self.notifier.lock() = Some(notifier);
    }

    /// The HTTP API's CORS origins a reload changes (`http.cors_origins`).
    pub fn set_cors_origins(&self, origins: junction_http::CorsOrigins) {
        *self.cors_origins.lock() = Some(origins);
    }

    /// Sets how the configuration is read again.
    pub fn set_loader(&self, loader: ConfigLoader) {
        *self.loader.lock() = Some(loader);
    }

    /// Reads the configuration again and applies it (blocking: bcrypt checks
    /// may run). The outcome is logged and recorded as an event.
    pub fn reload(&self) -> Result<String, String> {
        let outcome = self.try_reload();
        if let Some(engine) = self.engine.upgrade() {
            engine.record_reload(&outcome);
        }
        outcome
    }

    fn try_reload(&self) -> Result<String, String> {
        let new = {
            let loader = self.loader.lock();
            let load = loader
                .as_ref()
                .ok_or("this broker was not started from a configuration file")?;
            load().map_err(|e| e.to_string())?
        };
        new.validate().map_err(|e| e.to_string())?;
        let mut current = self.current.lock();
        let fixed = not_reloadable(&current, &new)?;
        if !fixed.is_empty() {
            return Err(format!(
                "config reload not supported for {}",
                fixed.join(", ")
            ));
        }
        let engine = self.engine.upgrade().ok_or("the broker is shutting down")?;
        let tenants = new
            .tenants
            .iter()
            .map(|t| (t.id(), t.users.clone(), t.engine_limits()))
            .collect();
        if new.log_level != current.log_level
            && std::env::var_os("RUST_LOG").is_none_or(|v| v.is_empty())
            && let Some(hook) = LOG_LEVEL_HOOK.get()
        {
            hook(&new.log_level)?;
        }
        let mut what = engine
            .reload_tenants(new.auth.all_users(), new.auth.token.clone(), tenants)
            .map_err(|e| e.to_string())?;
        if let Some(notifier) = self.notifier.lock().as_ref() {
            notifier.apply(&new.notifications);
        }
        engine.set_self_checks(new.limits.disk_policy(), new.limits.self_checks());
        engine.set_remotes(crate::config::RemoteConfig::remote_origins(&new.remotes));
        if let Some(origins) = self.cors_origins.lock().as_ref() {
            origins.set(new.http.cors_origins.clone());
        }
        if new.log_level != current.log_level {
            what.push_str(&format!("; log level {}", new.log_level));
        }
        *current = new;
        Ok(what)
    }
}

/// The top-level keys (with `auth.` or `tenants.` sub-keys) that differ
/// between `old` and `new` beyond what a reload can change.
fn not_reloadable(old: &Config, new: &Config) -> Result<Vec<String>, String> {
    let shape = |c: &Config| -> Result<Value, String> {
        let mut v = serde_json::to_value(c).map_err(|e| e.to_string())?;
        // Webhooks start, stop and change live; so do the log level, CORS and
        // the self-checks' limits.
        if let Some(v) = v.as_object_mut() {
            v.remove("notifications");
            v.remove("log_level");
            v.remove("remotes");
        }
        if let Some(http) = v.get_mut("http").and_then(Value::as_object_mut) {
            http.remove("cors_origins");
        }
        if let Some(limits) = v.get_mut("limits").and_then(Value::as_object_mut) {
            for key in LIVE_LIMITS {
                limits.remove(key);
            }
        }
        if let Some(auth) = v.get_mut("auth").and_then(Value::as_object_mut) {
            for key in ["user", "password", "users", "token"] {
                auth.remove(key);
            }
        }
        // Tenants may come and go and change users and limits; their exports
        // and imports may not.
        let mut links: Vec<Value> = c
            .tenants
            .iter()
            .filter(|t| !t.exports.is_empty() || !t.imports.is_empty())
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "exports": serde_json::to_value(&t.exports).unwrap_or_default(),
                    "imports": serde_json::to_value(&t.imports).unwrap_or_default(),
                })
            })
            .collect();
        links.sort_by_key(|l| l["name"].to_string());
        v["tenants"] = Value::Array(links);
        Ok(v)
    };
    let (a, b) = (shape(old)?, shape(new)?);
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return Ok(Vec::new());
    };
    let mut keys: Vec<String> = Vec::new();
    for (k, va) in a {
        let vb = b.get(k).unwrap_or(&Value::Null);
        if va == vb {
            continue;
        }
        match (va.as_object(), vb.as_object()) {
            (Some(oa), Some(ob)) => {
                for (sk, sa) in oa {
                    if ob.get(sk) != Some(sa) {
                        keys.push(format!("{k}.{sk}"));
                    }
                }
            }
            _ if k == "tenants" => keys.push("tenants exports and imports".into()),
            _ => keys.push(k.clone()),
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::User;

    #[test]
    fn users_tenants_and_limits_reload_and_listeners_do_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.auth.users = vec![User::new("alice", "pw")];
        new.auth.token = Some("t".into());
        new.notifications.webhooks = vec![crate::notify::WebhookConfig {
            name: "ops".into(),
            url: "http://127.0.0.1:9/".into(),
            kinds: vec![],
            tenants: vec![],
            min_severity: None,
            format: crate::notify::WebhookFormat::Json,
            headers: Default::default(),
            secret: None,
            max_attempts: None,
            max_per_minute: None,
            timeout: None,
            retry_base: None,
            retry_max: None,
        }];
        new.tenants = vec![crate::config::TenantConfig {
            name: "acme".into(),
            users: vec![User::new("bob", "pw")],
            ..Default::default()
        }];
        new.log_level = "debug".into();
        new.http.cors_origins = vec!["https://app.example".into()];
        new.limits.memory_max = Some(1 << 30);
        new.limits.stuck_ack_alarm = std::time::Duration::from_secs(5);
        new.limits.fsync_p99_alarm = std::time::Duration::from_millis(20);
        new.limits.disk_max_used_percent = 80;
        assert_eq!(not_reloadable(&old, &new).unwrap(), Vec::<String>::new());
        new.nats_listen = "127.0.0.1:5222".into();
        new.limits.max_payload = 1024;
        new.auth.no_auth_user = Some("alice".into());
        new.tenants[0].exports = vec![crate::config::ExportConfig {
            stream: "a.>".into(),
        }];
        let mut keys = not_reloadable(&old, &new).unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                "auth.no_auth_user",
                "limits.max_payload",
                "nats_listen",
                "tenants exports and imports"
            ]
        );
    }
}
