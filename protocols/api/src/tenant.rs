//! Tenants as they are defined: users with their passwords and permissions, and
//! limits. The same shapes are read from `[[tenants]]` in the configuration
//! file and from the HTTP API that edits tenants live ([`TenantSpec`]), and
//! are shown back without secrets ([`TenantInfo`]).

use crate::permissions::{PermissionRule, Permissions, ResponsePermission, SubjectRules};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A user allowed to connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name, unique across every tenant (empty for an NKey user).
    #[serde(default)]
    pub user: String,
    /// Password: a bcrypt hash (`$2a$`, `$2b$`, `$2y$`, as `junction passwd` and
    /// `htpasswd -B` make), or clear text (empty for an NKey user).
    #[serde(default)]
    pub password: String,
    /// An NKey user's public key (`U…`), instead of a name and password: the
    /// client signs the INFO nonce with the key's seed (NATS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nkey: Option<String>,
    /// What the user may publish and subscribe to; everything when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionsConfig>,
}

impl User {
    /// A user with a password and no permission limits.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        User {
            user: user.into(),
            password: password.into(),
            nkey: None,
            permissions: None,
        }
    }

    /// An NKey user: its public key.
    pub fn nkey(public_key: impl Into<String>) -> Self {
        User {
            nkey: Some(public_key.into()),
            ..User::new("", "")
        }
    }

    /// The name the user is known by: its name, or its NKey.
    pub fn name(&self) -> &str {
        self.nkey.as_deref().unwrap_or(&self.user)
    }
}

/// One subject list: a list (or a single subject) of allowed subjects, or
/// `{ allow = [...], deny = [...] }`, as in nats-server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RulesConfig {
    /// Only these are allowed.
    Allow(StringList),
    /// Allow and deny lists.
    Split {
        /// Allowed subjects (every subject when unset).
        #[serde(default)]
        allow: Option<StringList>,
        /// Denied subjects; deny wins over allow.
        #[serde(default)]
        deny: Option<StringList>,
    },
}

/// A list of strings, or one string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringList {
    /// One entry.
    One(String),
    /// Several entries.
    Many(Vec<String>),
}

impl StringList {
    fn entries(&self) -> Vec<&str> {
        match self {
            StringList::One(s) => vec![s.as_str()],
            StringList::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `allow_responses`: `true`, or `{ max = N, expires = "1m" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResponsesConfig {
    /// `true` allows one reply within 2 minutes; `false` none.
    Enabled(bool),
    /// Limits.
    Limits {
        /// Replies allowed per request [default: 1].
        #[serde(default)]
        max: Option<u32>,
        /// How long after the request [default: 2m; 0 means no limit].
        #[serde(default, with = "humantime_serde")]
        expires: Option<Duration>,
    },
}

/// A user's permissions as configured (`permissions = { publish = …, subscribe = …,
/// allow_responses = … }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsConfig {
    /// What the user may publish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<RulesConfig>,
    /// What the user may subscribe to (entries may name a queue group:
    /// `"jobs.* workers"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<RulesConfig>,
    /// Lets the user answer requests it received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_responses: Option<ResponsesConfig>,
}

impl PermissionsConfig {
    /// The checked permissions, or what is wrong with them.
    pub fn build(&self) -> Result<Permissions, String> {
        fn rules(config: &Option<RulesConfig>, what: &str) -> Result<SubjectRules, String> {
            let parse = |list: &StringList| -> Result<Vec<PermissionRule>, String> {
                list.entries()
                    .into_iter()
                    .map(|e| PermissionRule::parse(e).map_err(|err| format!("{what}: {err}")))
                    .collect()
            };
            Ok(match config {
                None => SubjectRules::default(),
                Some(RulesConfig::Allow(list)) => SubjectRules {
                    allow: Some(parse(list)?),
                    deny: Vec::new(),
                },
                Some(RulesConfig::Split { allow, deny }) => SubjectRules {
                    allow: allow.as_ref().map(parse).transpose()?,
                    deny: deny.as_ref().map(parse).transpose()?.unwrap_or_default(),
                },
            })
        }
        let responses = match &self.allow_responses {
            None | Some(ResponsesConfig::Enabled(false)) => None,
            Some(ResponsesConfig::Enabled(true)) => Some(ResponsePermission::default()),
            Some(ResponsesConfig::Limits { max, expires }) => {
                let d = ResponsePermission::default();
                Some(ResponsePermission {
                    max: max.unwrap_or(d.max),
                    expires: expires.unwrap_or(d.expires),
                })
            }
        };
        Ok(Permissions {
            publish: rules(&self.publish, "publish")?,
            subscribe: rules(&self.subscribe, "subscribe")?,
            responses,
        })
    }
}

/// A tenant edited live (`PUT /v1/tenants/{name}`): its users and limits, the
/// shape of `[[tenants]]` in the configuration file without exports and imports
/// (those are only read from the file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Its users. A user given without a password keeps the one it has.
    #[serde(default)]
    pub users: Vec<User>,
    /// Connection limits.
    #[serde(default)]
    pub limits: TenantConnectionLimits,
    /// JetStream (station) limits.
    #[serde(default)]
    pub jetstream: TenantStationLimits,
}

/// `limits = { max_connections = N }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConnectionLimits {
    /// NATS and MQTT connections at once (none: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
}

/// `jetstream = { max_streams = N, max_consumers = N, max_file = B, max_memory = B }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantStationLimits {
    /// Stations (none: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<usize>,
    /// Consumer groups over all the tenant's stations (none: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_consumers: Option<usize>,
    /// Bytes of file storage over its stations, in bytes (none: no limit; 0: no
    /// file station).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file: Option<u64>,
    /// Bytes of memory storage over its stations, as `max_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
}

/// Where a tenant is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantSource {
    /// The default tenant `$G` (users of `[auth]`).
    Default,
    /// `[[tenants]]` in the configuration file: read-only over the API.
    Config,
    /// Made over the API (`PUT /v1/tenants/{name}`), kept in the data directory.
    Api,
}

/// A user as shown: never its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Its name, or its NKey.
    pub user: String,
    /// How it logs in: `password`, `bcrypt`, `nkey` or `certificate`.
    pub login: String,
    /// What it may publish and subscribe to; everything when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<PermissionsConfig>,
}

/// What a tenant uses now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantUsage {
    /// NATS and MQTT connections.
    pub connections: usize,
    /// Stations (not the broker's own).
    pub stations: usize,
    /// Consumer groups over its stations.
    pub consumers: usize,
}

/// A tenant as shown to operators (`GET /v1/tenants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Its name.
    pub name: String,
    /// Where it is defined.
    pub source: TenantSource,
    /// Are its users the broker's operators (the system tenant)?
    pub system: bool,
    /// Its users.
    pub users: Vec<UserInfo>,
    /// Connection limits.
    pub limits: TenantConnectionLimits,
    /// Station limits.
    pub jetstream: TenantStationLimits,
    /// Subjects other tenants may import.
    pub exports: Vec<String>,
    /// Imports from other tenants, as `tenant:subject` (with ` as prefix`).
    pub imports: Vec<String>,
    /// What it uses now.
    pub usage: TenantUsage,
}
