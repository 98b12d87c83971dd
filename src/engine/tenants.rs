//! Tenants: those of the configuration file, those operators make and edit
//! live over the API, and which one holds the operators.
//!
//! A tenant edited live is kept in the store's metadata (`tenant/<name>`, the
//! [`TenantSpec`] with every password as a bcrypt hash, fsynced before the
//! answer), so it comes back after a restart. Tenants of the configuration
//! file, and the default tenant `$G`, are read-only here: the file is the one
//! place they are defined, so that what an operator reads there stays true.
//!
//! Decisions worth naming:
//! - Editing needs a broker that requires credentials: on an open broker every
//!   client is an operator, and a first user would lock every client out.
//! - In a cluster, an edit goes through the meta group (`meta.rs`, keys
//!   `tenant:<name>:spec`), so every node applies it in log order; the node
//!   asked answers once it has applied it itself. Each node also keeps it in
//!   its own store, so that it is back at once after a restart.
//! - A user removed or changed (password, permissions) has its connections
//!   closed with `Authorization Violation`; clients log in again under the new
//!   rules, as after nats-server's reload of a changed user.

use super::{StationEngine, TenantLimits};
use ahash::AHashMap;
use junction_api::{
    Broker, EngineError, TenantConnectionLimits, TenantId, TenantInfo, TenantSource, TenantSpec,
    TenantStationLimits, TenantUsage, User,
};
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where the tenant specs edited live are kept in the store's metadata.
const KEY_PREFIX: &str = "tenant/";

/// The bcrypt cost of passwords given in clear text over the API.
const BCRYPT_COST: u32 = 11;

/// A hook told of each tenant made after start.
type NewTenantHook = Arc<dyn Fn(&TenantId) + Send + Sync>;

/// Every tenant besides the default one, with its limits.
#[derive(Default)]
pub(crate) struct TenantBook {
    /// Tenants besides the default one, in the order they were made.
    entries: RwLock<Vec<(TenantId, TenantSource)>>,
    /// Each tenant's limits, for those that have any.
    limits: RwLock<AHashMap<TenantId, TenantLimits>>,
    /// Does any tenant have a storage limit? (The publish path asks first.)
    storage_limited: AtomicBool,
    /// Told of each tenant made after start.
    hooks: Mutex<Vec<NewTenantHook>>,
    /// One edit at a time.
    edits: Mutex<()>,
}

impl TenantBook {
    /// The tenants of the configuration file, with their limits.
    pub(crate) fn new(configured: &[TenantId], limits: &AHashMap<TenantId, TenantLimits>) -> Self {
        let book = TenantBook {
            entries: RwLock::new(
                configured
                    .iter()
                    .map(|t| (t.clone(), TenantSource::Config))
                    .collect(),
            ),
            limits: RwLock::new(limits.clone()),
            ..Default::default()
        };
        book.limits_changed();
        book
    }

    /// Does any tenant have a storage limit (`max_file`, `max_memory`)? One
    /// atomic load: what a publish asks before anything else about limits.
    pub(crate) fn storage_limited(&self) -> bool {
        self.storage_limited.load(Ordering::Acquire)
    }

    fn limits_changed(&self) {
        let any = self
            .limits
            .read()
            .values()
            .any(|l| l.max_file.is_some() || l.max_memory.is_some());
        self.storage_limited.store(any, Ordering::Release);
    }

    /// Every tenant besides the default one.
    pub(crate) fn names(&self) -> Vec<TenantId> {
        self.entries.read().iter().map(|(t, _)| t.clone()).collect()
    }

    /// The tenant's limits, if it has any.
    pub(crate) fn limits_of(&self, tenant: &TenantId) -> Option<TenantLimits> {
        self.limits.read().get(tenant).copied()
    }

    fn source(&self, tenant: &TenantId) -> Option<TenantSource> {
        self.entries
            .read()
            .iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, s)| *s)
    }

    pub(crate) fn add_hook(&self, hook: NewTenantHook) {
        self.hooks.lock().push(hook);
    }
}

/// Refuses a tenant name that is empty, too long or holds other characters
/// than letters, digits, `-` and `_`.
pub(crate) fn check_name(name: &str) -> Result<(), EngineError> {
    if name.is_empty() || name.len() > 64 {
        return Err(EngineError::invalid_config(format!(
            "tenant name '{name}' must have 1 to 64 characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(EngineError::invalid_config(format!(
            "tenant name '{name}' may hold only letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

fn limits_from(spec: &TenantSpec) -> TenantLimits {
    TenantLimits {
        max_connections: spec.limits.max_connections.unwrap_or(0),
        max_streams: spec.jetstream.max_streams.unwrap_or(0),
        max_consumers: spec.jetstream.max_consumers.unwrap_or(0),
        max_file: spec.jetstream.max_file,
        max_memory: spec.jetstream.max_memory,
    }
}

fn nonzero(n: usize) -> Option<usize> {
    (n > 0).then_some(n)
}

fn meta_key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// Hashes the clear-text passwords of `users` with bcrypt (CPU-heavy: call it
/// on a blocking thread).
fn hash_passwords(users: &mut [User]) -> Result<(), EngineError> {
    for u in users.iter_mut() {
        if !u.password.is_empty() && !super::auth::is_bcrypt(&u.password) {
            u.password = super::auth::hash_password(&u.password, BCRYPT_COST)
                .map_err(EngineError::invalid_config)?;
        }
    }
    Ok(())
}

/// Failures (logins, permission checks) since the last event that told them.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    /// When the last event was recorded.
    told: Option<std::time::Instant>,
    /// Failures since.
    pending: u64,
}

impl AuthFailures {
    /// Counts one more: how many to tell now (this one included), or none
    /// while the last event is under [`AUTH_FAILED_EVERY`] old.
    fn count(&mut self) -> Option<u64> {
        self.pending += 1;
        let now = std::time::Instant::now();
        if self
            .told
            .is_some_and(|t| now.duration_since(t) < AUTH_FAILED_EVERY)
        {
            return None;
        }
        self.told = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// At most one `auth_failed` event per this long.
const AUTH_FAILED_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl StationEngine {
    /// After a login: records the bans it made, and its failure (aggregated).
    pub(crate) fn after_login(
        &self,
        result: &Result<junction_api::Identity, EngineError>,
        credentials: &junction_api::Credentials,
        remote: std::net::IpAddr,
    ) {
        let about = || super::events::About {
            tenant: self.system_tenant(),
            ..Default::default()
        };
        for ban in self.options.auth.take_new_bans() {
            self.events
                .record(junction_api::SystemEventKind::ClientBanned, about(), ban);
        }
        if !matches!(result, Err(EngineError::AuthorizationViolation)) {
            return;
        }
        let Some(count) = self.auth_failures.lock().count() else {
            return;
        };
        let who = match credentials {
            junction_api::Credentials::UserPassword { user, .. } => format!("user '{user}'"),
            junction_api::Credentials::Nkey { key, .. } => format!("nkey {key}"),
            junction_api::Credentials::ScramSha256 { user, .. } => {
                format!("user '{user}' (SCRAM-SHA-256)")
            }
            junction_api::Credentials::Token(_) => "a token".to_string(),
            junction_api::Credentials::Certificate(_) => "a client certificate".to_string(),
            _ => "no credentials".to_string(),
        };
        self.events.record(
            junction_api::SystemEventKind::AuthFailed,
            about(),
            format!("{count} failed login(s); the last: {who} from {remote}"),
        );
    }

    /// Records a permission violation in the client's tenant (aggregated).
    pub(crate) fn record_violation(&self, client: &junction_api::ClientRecord, what: &str) {
        let tenant = client.tenant().clone();
        let Some(count) = self
            .violations
            .lock()
            .entry(tenant.clone())
            .or_default()
            .count()
        else {
            return;
        };
        let user = client
            .identity()
            .and_then(|i| i.user.as_deref())
            .unwrap_or("-")
            .to_string();
        self.events.record(
            junction_api::SystemEventKind::PermissionViolation,
            super::events::About {
                tenant: Some(&tenant),
                client: Some(client),
                ..Default::default()
            },
            format!("{count} permission violation(s); the last: {what} (user '{user}')"),
        );
    }

    /// Records that the broker started or is stopping.
    pub fn record_lifecycle(&self, started: bool) {
        let (kind, what) = if started {
            (
                junction_api::SystemEventKind::ServerStarted,
                "server started",
            )
        } else {
            (
                junction_api::SystemEventKind::ServerStopping,
                "server stopping",
            )
        };
        self.events.record(
            kind,
            super::events::About {
                tenant: self.system_tenant(),
                ..Default::default()
            },
            format!("{what} ({})", self.options.server_name),
        );
    }

    /// Installs what reloads the configuration (`junction serve`).
    pub fn set_reload_hook(&self, hook: super::ReloadHook) {
        let _ = self.reload_hook.set(hook);
    }

    /// Installs the notification centre the HTTP API manages webhooks
    /// through (`junction serve`).
    pub fn set_notification_centre(&self, centre: Arc<dyn junction_api::NotificationCentre>) {
        let _ = self.notification_centre.set(centre);
    }

    /// Records a reload's outcome as a system event (and in the log).
    pub fn record_reload(&self, outcome: &Result<String, String>) {
        use junction_api::SystemEventKind as K;
        match outcome {
            Ok(what) => {
                tracing::info!("configuration reloaded: {what}");
                self.events.record(
                    K::ConfigReloaded,
                    super::events::About {
                        tenant: self.system_tenant(),
                        ..Default::default()
                    },
                    format!("configuration reloaded: {what}"),
                );
            }
            Err(why) => {
                tracing::error!(
                    "configuration reload refused, the previous configuration stays: {why}"
                );
                self.events.record(
                    K::ConfigReloadFailed,
                    super::events::About {
                        tenant: self.system_tenant(),
                        ..Default::default()
                    },
                    format!("configuration reload refused: {why}"),
                );
            }
        }
    }

    /// The tenant that holds the operators, if one is configured.
    pub(crate) fn system_tenant(&self) -> Option<&TenantId> {
        self.options.system_tenant.as_ref()
    }

    /// Brings back the tenants edited live before the last stop. One that the
    /// configuration file now defines too is left to the file.
    pub(crate) fn load_tenants(&self) -> Result<(), EngineError> {
        let stored = self
            .store()
            .list_meta(KEY_PREFIX)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        for (key, value) in stored {
            let name = key.trim_start_matches(KEY_PREFIX).to_string();
            let tenant = TenantId(Arc::from(name.as_str()));
            if self.book.source(&tenant).is_some() || tenant == self.default_tenant {
                tracing::warn!(tenant = %name, "a tenant made over the API is now in the configuration file too; the file's definition is used");
                continue;
            }
            let spec: TenantSpec = match serde_json::from_slice(&value) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(tenant = %name, error = %e, "a stored tenant does not read; it is left out");
                    continue;
                }
            };
            if let Err(e) = self
                .options
                .auth
                .set_tenant_users(&tenant, spec.users.clone())
            {
                tracing::error!(tenant = %name, error = %e, "a stored tenant's users do not check; it is left out");
                continue;
            }
            self.apply_tenant(&tenant, &spec);
        }
        Ok(())
    }

    /// Records `tenant` as made over the API with `spec`'s limits; tells the
    /// hooks when it is new.
    fn apply_tenant(&self, tenant: &TenantId, spec: &TenantSpec) -> bool {
        let limits = limits_from(spec);
        {
            let mut all = self.book.limits.write();
            if limits == TenantLimits::default() {
                all.remove(tenant);
            } else {
                all.insert(tenant.clone(), limits);
            }
        }
        self.book.limits_changed();
        let mut entries = self.book.entries.write();
        if entries.iter().any(|(t, _)| t == tenant) {
            return false;
        }
        entries.push((tenant.clone(), TenantSource::Api));
        true
    }

    fn announce(&self, tenant: &TenantId) {
        let hooks = self.book.hooks.lock().clone();
        for hook in hooks {
            hook(tenant);
        }
    }

    /// Refuses an edit of `tenant`: the default one, one of the file, or any
    /// on a broker that cannot keep it.
    fn editable(&self, tenant: &TenantId) -> Result<(), EngineError> {
        if *tenant == self.default_tenant {
            return Err(EngineError::TenantReadOnly(
                "the default tenant $G is defined by [auth] in the configuration file".into(),
            ));
        }
        if self.book.source(tenant) == Some(TenantSource::Config) {
            return Err(EngineError::TenantReadOnly(format!(
                "tenant '{}' is defined in the configuration file; change it there",
                tenant.0
            )));
        }
        if !self.options.auth.required() {
            return Err(EngineError::TenantReadOnly(
                "this broker requires no credentials, so every client is an operator; configure [auth] users or a $SYS tenant before making tenants".into(),
            ));
        }
        Ok(())
    }

    /// Checks a tenant's new definition and makes it ready to keep: its clear
    /// passwords hashed, the passwords of users given without one filled in
    /// (on a blocking thread: bcrypt).
    pub(crate) fn prepare_tenant(
        &self,
        name: &str,
        mut spec: TenantSpec,
    ) -> Result<TenantSpec, EngineError> {
        check_name(name)?;
        let tenant = TenantId(Arc::from(name));
        self.editable(&tenant)?;
        hash_passwords(&mut spec.users)?;
        self.options
            .auth
            .check_tenant_users(&tenant, &mut spec.users)
            .map_err(EngineError::invalid_config)?;
        Ok(spec)
    }

    /// Keeps and applies a prepared definition: stored (fsynced), its users
    /// replaced, its limits set; a new tenant is announced; the connections of
    /// users removed or changed are closed.
    pub(crate) fn install_tenant(&self, name: &str, spec: &TenantSpec) -> Result<(), EngineError> {
        let tenant = TenantId(Arc::from(name));
        if tenant == self.default_tenant || self.book.source(&tenant) == Some(TenantSource::Config)
        {
            return Err(EngineError::TenantReadOnly(format!(
                "tenant '{name}' is defined in this node's configuration file"
            )));
        }
        let json = serde_json::to_vec(spec).map_err(|e| EngineError::Storage(e.to_string()))?;
        self.store()
            .put_meta(&meta_key(name), &json)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let gone = self
            .options
            .auth
            .set_tenant_users(&tenant, spec.users.clone())
            .map_err(EngineError::invalid_config)?;
        let new = self.apply_tenant(&tenant, spec);
        tracing::info!(tenant = %name, users = spec.users.len(), new, "tenant saved over the API");
        if new {
            self.announce(&tenant);
        }
        self.log_out(&tenant, |user| gone.iter().any(|g| g.as_str() == user));
        Ok(())
    }

    /// Makes or replaces a tenant on a broker of one node (on a blocking
    /// thread: bcrypt and fsync).
    pub(crate) fn put_tenant_now(
        &self,
        name: &str,
        spec: TenantSpec,
    ) -> Result<TenantInfo, EngineError> {
        let _edit = self.book.edits.lock();
        let spec = self.prepare_tenant(name, spec)?;
        self.install_tenant(name, &spec)?;
        self.tenant_info(&TenantId(Arc::from(name)))
            .ok_or(EngineError::TenantNotFound)
    }

    /// Refuses to delete a tenant that is not there or not editable.
    pub(crate) fn check_delete_tenant(&self, name: &str) -> Result<(), EngineError> {
        let tenant = TenantId(Arc::from(name));
        if self.book.source(&tenant).is_none() && tenant != self.default_tenant {
            return Err(EngineError::TenantNotFound);
        }
        self.editable(&tenant)
    }

    /// Removes a tenant made over the API and closes its connections.
    pub(crate) fn uninstall_tenant(&self, name: &str) -> Result<(), EngineError> {
        let tenant = TenantId(Arc::from(name));
        if self.book.source(&tenant) != Some(TenantSource::Api) {
            return Ok(());
        }
        self.store()
            .remove_meta(&meta_key(name))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        self.options
            .auth
            .set_tenant_users(&tenant, Vec::new())
            .map_err(EngineError::invalid_config)?;
        self.book.entries.write().retain(|(t, _)| *t != tenant);
        self.book.limits.write().remove(&tenant);
        self.book.limits_changed();
        tracing::info!(tenant = %name, "tenant deleted over the API; its stations stay on disk");
        self.log_out(&tenant, |_| true);
        Ok(())
    }

    /// The stored definition of a tenant made over the API, as JSON.
    pub(crate) fn stored_tenant(&self, name: &str) -> Option<serde_json::Value> {
        let bytes = self.store().get_meta(&meta_key(name)).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    /// Removes a tenant made over the API on a broker of one node.
    pub(crate) fn delete_tenant_now(&self, name: &str) -> Result<(), EngineError> {
        let _edit = self.book.edits.lock();
        self.check_delete_tenant(name)?;
        self.uninstall_tenant(name)
    }

    /// A configuration reload of who may connect: the default tenant's users
    /// and token, and the file's tenants (name, users, limits). Tenants the
    /// file no longer has are removed, new ones are served at once; the
    /// connections of users removed or changed are closed. Refused, changing
    /// nothing, for a user that does not check, a name used twice, or a tenant
    /// of the file named as one made over the API.
    pub fn reload_tenants(
        &self,
        users: Vec<User>,
        token: Option<String>,
        tenants: Vec<(TenantId, Vec<User>, TenantLimits)>,
    ) -> Result<String, EngineError> {
        let _edit = self.book.edits.lock();
        for (t, _, _) in &tenants {
            if self.book.source(t) == Some(TenantSource::Api) {
                return Err(EngineError::invalid_config(format!(
                    "tenants: '{}' is a tenant made over the API; delete it there first",
                    t.0
                )));
            }
        }
        let before: Vec<TenantId> = self
            .book
            .entries
            .read()
            .iter()
            .filter(|(_, s)| *s == TenantSource::Config)
            .map(|(t, _)| t.clone())
            .collect();
        let mut replaced = vec![self.default_tenant.clone()];
        replaced.extend(before.iter().cloned());
        replaced.extend(tenants.iter().map(|(t, _, _)| t.clone()));
        let all_users = users
            .into_iter()
            .map(|u| (self.default_tenant.clone(), u))
            .chain(
                tenants
                    .iter()
                    .flat_map(|(t, us, _)| us.iter().map(|u| (t.clone(), u.clone()))),
            )
            .collect();
        let gone = self
            .options
            .auth
            .replace_users(&replaced, all_users, token)
            .map_err(EngineError::invalid_config)?;
        let removed: Vec<TenantId> = before
            .iter()
            .filter(|t| !tenants.iter().any(|(n, _, _)| n == *t))
            .cloned()
            .collect();
        let mut added = Vec::new();
        {
            let mut entries = self.book.entries.write();
            let mut limits = self.book.limits.write();
            entries.retain(|(t, _)| !removed.contains(t));
            for t in &removed {
                limits.remove(t);
            }
            for (t, _, l) in &tenants {
                if !entries.iter().any(|(e, _)| e == t) {
                    entries.push((t.clone(), TenantSource::Config));
                    added.push(t.clone());
                }
                if *l == TenantLimits::default() {
                    limits.remove(t);
                } else {
                    limits.insert(t.clone(), *l);
                }
            }
        }
        self.book.limits_changed();
        for t in &added {
            self.announce(t);
        }
        for t in &removed {
            self.log_out(t, |_| true);
        }
        for (t, user) in &gone {
            self.log_out(t, |u| u == user.as_str());
        }
        Ok(format!(
            "{} users logged out, {} tenants added, {} removed",
            gone.len(),
            added.len(),
            removed.len()
        ))
    }

    /// Closes the connections of `tenant`'s users that `which` names.
    fn log_out(&self, tenant: &TenantId, which: impl Fn(&str) -> bool) {
        let ids: Vec<_> = self
            .clients
            .read()
            .values()
            .filter(|c| {
                c.record.kind().is_connection()
                    && c.record.tenant() == tenant
                    && c.record
                        .identity()
                        .and_then(|i| i.user.as_deref())
                        .is_some_and(&which)
            })
            .map(|c| c.record.id)
            .collect();
        for id in ids {
            // A client that closed meanwhile is gone already.
            let _ = self.close_client_now(tenant, id, "Authorization Violation");
        }
    }

    /// What a tenant uses now.
    fn usage_of(&self, tenant: &TenantId) -> TenantUsage {
        let connections = self
            .clients
            .read()
            .values()
            .filter(|c| c.record.kind().is_connection() && c.record.tenant() == tenant)
            .count();
        let stations = self.client_stations(tenant);
        let consumers = stations
            .iter()
            .filter_map(|s| Broker::group_names(self, tenant, s).ok())
            .map(|g| g.len())
            .sum();
        TenantUsage {
            connections,
            stations: stations.len(),
            consumers,
        }
    }

    /// A tenant as shown to operators.
    pub(crate) fn tenant_info(&self, tenant: &TenantId) -> Option<TenantInfo> {
        let source = if *tenant == self.default_tenant {
            TenantSource::Default
        } else {
            self.book.source(tenant)?
        };
        let limits = self.book.limits_of(tenant).unwrap_or_default();
        Some(TenantInfo {
            name: tenant.0.to_string(),
            source,
            system: self.system_tenant() == Some(tenant)
                || (self.system_tenant().is_none() && *tenant == self.default_tenant),
            users: self.options.auth.users_of(tenant),
            limits: TenantConnectionLimits {
                max_connections: nonzero(limits.max_connections),
            },
            jetstream: TenantStationLimits {
                max_streams: nonzero(limits.max_streams),
                max_consumers: nonzero(limits.max_consumers),
                max_file: limits.max_file,
                max_memory: limits.max_memory,
            },
            exports: self
                .options
                .exports
                .get(tenant)
                .cloned()
                .unwrap_or_default(),
            imports: self
                .options
                .imports
                .iter()
                .filter(|i| i.to == *tenant)
                .map(|i| match &i.prefix {
                    Some(p) => format!("{}:{} as {p}", i.from.0, i.filter),
                    None => format!("{}:{}", i.from.0, i.filter),
                })
                .collect(),
            usage: self.usage_of(tenant),
        })
    }

    /// Every tenant, the default one first.
    pub(crate) fn tenant_infos_now(&self) -> Vec<TenantInfo> {
        Broker::tenants(self)
            .iter()
            .filter_map(|t| self.tenant_info(t))
            .collect()
    }
}
