//! Who may connect, to which tenant, and what they may do: users with passwords
//! (plain or bcrypt) and permissions, tenants, one token, and `no_auth_user`,
//! shared by every protocol.
//!
//! A bcrypt check costs tens of milliseconds of CPU by design. It runs with
//! [`tokio::task::block_in_place`] (the worker's other tasks move to another
//! thread), and a user's last good password is remembered as a SHA-256 digest,
//! so a reconnecting client does not pay for bcrypt again.

use ahash::AHashMap;
use junction_api::{
    Credentials, EngineError, Identity, PermissionRule, Permissions, ResponsePermission,
    SubjectRules, TenantId,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
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

/// Is `password` a bcrypt hash rather than clear text?
pub fn is_bcrypt(password: &str) -> bool {
    ["$2a$", "$2b$", "$2y$", "$2x$"]
        .iter()
        .any(|p| password.starts_with(p))
}

/// Makes a bcrypt hash of `password` (`junction passwd`).
pub fn hash_password(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash(password, cost).map_err(|e| e.to_string())
}

#[derive(Debug)]
struct Account {
    password: String,
    bcrypt: bool,
    nkey: bool,
    identity: Identity,
}

/// When repeated failed logins from one address ban it (EMQX's flapping
/// detection, applied to logins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures within `window` that ban the address (0: never).
    pub after: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// How long the ban lasts.
    pub ban_for: Duration,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            after: 100,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(300),
        }
    }
}

/// Failed logins per address, and the addresses banned for them.
#[derive(Debug, Default)]
struct LoginGuard {
    policy: BanPolicy,
    /// Per address: when its window started and its failures in it.
    failures: Mutex<AHashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
    /// Per banned address: until when.
    banned: Mutex<AHashMap<std::net::IpAddr, std::time::Instant>>,
    /// Logins refused because their address was banned.
    refused: std::sync::atomic::AtomicU64,
}

/// Addresses tracked at most; beyond it the oldest windows are forgotten.
const TRACKED_ADDRESSES: usize = 65_536;

impl LoginGuard {
    fn is_banned(&self, ip: std::net::IpAddr) -> bool {
        let mut banned = self.banned.lock();
        match banned.get(&ip) {
            Some(until) if std::time::Instant::now() < *until => {
                self.refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Some(_) => {
                banned.remove(&ip);
                false
            }
            None => false,
        }
    }

    fn failed(&self, ip: std::net::IpAddr) {
        let p = self.policy;
        if p.after == 0 {
            return;
        }
        let now = std::time::Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= TRACKED_ADDRESSES {
            failures.retain(|_, (start, _)| now.duration_since(*start) < p.window);
        }
        let entry = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= p.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 >= p.after {
            failures.remove(&ip);
            drop(failures);
            tracing::warn!(%ip, failures = p.after, ban_for = ?p.ban_for, "address banned after repeated failed logins");
            self.banned.lock().insert(ip, now + p.ban_for);
        }
    }
}

/// The credentials the broker accepts. Empty means anyone may connect.
#[derive(Debug, Default)]
pub struct Authenticator {
    users: AHashMap<String, Account>,
    token: Option<String>,
    no_auth_user: Option<String>,
    /// SHA-256 of each bcrypt user's last password that verified.
    verified: Mutex<AHashMap<String, [u8; 32]>>,
    guard: LoginGuard,
    /// TLS client certificates name their user (`verify_and_map`).
    map_certificates: bool,
}

/// The names a client certificate may map to, in the order nats-server tries
/// them: e-mail SANs, DNS SANs, URI SANs, then the subject DN (RFC 2253, as
/// `CN=alice,OU=ops,O=Acme`).
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let (mut email, mut dns, mut uri) = (Vec::new(), Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(e) => email.push(e.to_string()),
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::URI(u) => uri.push(u.to_string()),
                _ => {}
            }
        }
    }
    let mut rdns: Vec<String> = Vec::new();
    for rdn in cert.subject().iter_rdn() {
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.9" => "STREET",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.5" => "SERIALNUMBER",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                _ => continue,
            };
            if let Ok(value) = attr.as_str() {
                rdns.push(format!("{key}={value}"));
            }
        }
    }
    rdns.reverse();
    let mut names = email;
    names.extend(dns);
    names.extend(uri);
    if !rdns.is_empty() {
        names.push(rdns.join(","));
    }
    names
}

/// Compares in time that depends only on the lengths, not on where bytes differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs a CPU-heavy check without stalling the async worker it is called on.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Authenticator {
    /// An authenticator for users of the default tenant and one token.
    pub fn new(users: Vec<User>, token: Option<String>) -> Result<Self, String> {
        Self::with_tenants(users, &[], token, None)
    }

    /// An authenticator for `users` of the default tenant, users of other
    /// `tenants` (name, users), one token and the `no_auth_user`. Refuses
    /// permissions that do not parse, a user listed twice (in any tenants) and a
    /// `no_auth_user` that is not a user.
    pub fn with_tenants(
        users: Vec<User>,
        tenants: &[(String, Vec<User>)],
        token: Option<String>,
        no_auth_user: Option<String>,
    ) -> Result<Self, String> {
        let mut accounts = AHashMap::new();
        let default = TenantId::default_tenant();
        let all = users
            .into_iter()
            .map(|u| (default.clone(), u))
            .chain(tenants.iter().flat_map(|(t, us)| {
                us.iter()
                    .map(|u| (TenantId(Arc::from(t.as_str())), u.clone()))
            }));
        for (tenant, u) in all {
            if let Some(key) = &u.nkey {
                if !u.user.is_empty() || !u.password.is_empty() {
                    return Err(format!(
                        "nkey user {key}: give either nkey or user and password, not both"
                    ));
                }
                if !key.starts_with('U') || nkeys::KeyPair::from_public_key(key).is_err() {
                    return Err(format!("nkey '{key}' is not a user's public NKey (U…)"));
                }
            }
            let permissions = match &u.permissions {
                None => None,
                Some(p) => {
                    let p = p
                        .build()
                        .map_err(|e| format!("user '{}': permissions: {e}", u.name()))?;
                    (!p.is_open()).then(|| Arc::new(p))
                }
            };
            let name = u.name().to_string();
            let account = Account {
                bcrypt: is_bcrypt(&u.password),
                nkey: u.nkey.is_some(),
                password: u.password,
                identity: Identity {
                    tenant,
                    user: Some(Arc::from(name.as_str())),
                    permissions,
                },
            };
            if accounts.insert(name.clone(), account).is_some() {
                return Err(format!("Duplicate user '{name}'"));
            }
        }
        if let Some(n) = &no_auth_user
            && !accounts.contains_key(n)
        {
            return Err(format!("no_auth_user '{n}' is not a configured user"));
        }
        Ok(Authenticator {
            users: accounts,
            token,
            no_auth_user,
            verified: Mutex::new(AHashMap::new()),
            guard: LoginGuard::default(),
            map_certificates: false,
        })
    }

    /// Maps TLS client certificates to users (`verify_and_map`).
    pub fn with_certificate_mapping(mut self, on: bool) -> Self {
        self.map_certificates = on;
        self
    }

    /// Are TLS client certificates mapped to users?
    pub fn maps_certificates(&self) -> bool {
        self.map_certificates
    }

    /// Sets when failed logins ban an address.
    pub fn with_ban_policy(mut self, policy: BanPolicy) -> Self {
        self.guard.policy = policy;
        self
    }

    /// Logins refused so far because their address was banned.
    pub fn refused_banned(&self) -> u64 {
        self.guard
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// [`Authenticator::check`] for a client at `remote`: a banned address is
    /// refused before anything is checked; a failure counts against it.
    pub fn check_from(
        &self,
        credentials: &Credentials,
        remote: std::net::IpAddr,
    ) -> Result<Identity, EngineError> {
        if !self.required() {
            return Ok(Identity::anonymous());
        }
        if self.guard.is_banned(remote) {
            tracing::info!(%remote, "login refused: the address is banned after repeated failures");
            return Err(EngineError::AuthorizationViolation);
        }
        let result = self.check(credentials);
        if result.is_err() {
            self.guard.failed(remote);
        }
        result
    }

    /// Does anything need credentials?
    pub fn required(&self) -> bool {
        !self.users.is_empty() || self.token.is_some()
    }

    /// Are there any users (rather than only a token)?
    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Do some users log in with an NKey?
    pub fn has_nkeys(&self) -> bool {
        self.users.values().any(|a| a.nkey)
    }

    /// Checks credentials: who they belong to.
    pub fn check(&self, credentials: &Credentials) -> Result<Identity, EngineError> {
        if !self.required() {
            return Ok(Identity::anonymous());
        }
        match credentials {
            Credentials::UserPassword { user, password } => self.check_user(user, password),
            Credentials::Nkey {
                key,
                nonce,
                signature,
            } => self.check_nkey(key, nonce, signature),
            Credentials::Certificate(der) if self.map_certificates => {
                let names = certificate_names(der);
                match names
                    .iter()
                    .find_map(|n| self.users.get(n).filter(|a| !a.nkey))
                {
                    Some(account) => Ok(account.identity.clone()),
                    None => {
                        tracing::info!(?names, "client certificate maps to no user");
                        Err(EngineError::AuthorizationViolation)
                    }
                }
            }
            Credentials::Token(token)
                if self
                    .token
                    .as_deref()
                    .is_some_and(|t| same_secret(t.as_bytes(), token.as_bytes())) =>
            {
                Ok(Identity::anonymous())
            }
            Credentials::None => match &self.no_auth_user {
                Some(user) => self
                    .users
                    .get(user)
                    .map(|a| a.identity.clone())
                    .ok_or(EngineError::AuthorizationViolation),
                None => Err(EngineError::AuthorizationViolation),
            },
            _ => Err(EngineError::AuthorizationViolation),
        }
    }

    fn check_nkey(&self, key: &str, nonce: &str, signature: &str) -> Result<Identity, EngineError> {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
        let refused = Err(EngineError::AuthorizationViolation);
        let Some(account) = self.users.get(key).filter(|a| a.nkey) else {
            return refused;
        };
        let trimmed = signature.trim_end_matches('=');
        let Some(sig) = [
            URL_SAFE_NO_PAD.decode(trimmed),
            URL_SAFE.decode(signature),
            STANDARD.decode(signature),
        ]
        .into_iter()
        .find_map(Result::ok) else {
            return refused;
        };
        match nkeys::KeyPair::from_public_key(key) {
            Ok(pair) if !nonce.is_empty() && pair.verify(nonce.as_bytes(), &sig).is_ok() => {
                Ok(account.identity.clone())
            }
            _ => refused,
        }
    }

    fn check_user(&self, user: &str, password: &str) -> Result<Identity, EngineError> {
        // NKey users and certificate-only users (no password) never log in
        // with a password.
        let Some(account) = self
            .users
            .get(user)
            .filter(|a| !a.nkey && !a.password.is_empty())
        else {
            return Err(EngineError::AuthorizationViolation);
        };
        let ok = if account.bcrypt {
            let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            let known = self
                .verified
                .lock()
                .get(user)
                .is_some_and(|d| same_secret(d, &digest));
            known || {
                let good =
                    off_worker(|| bcrypt::verify(password, &account.password)).unwrap_or(false);
                if good {
                    self.verified.lock().insert(user.to_string(), digest);
                }
                good
            }
        } else {
            same_secret(account.password.as_bytes(), password.as_bytes())
        };
        if ok {
            Ok(account.identity.clone())
        } else {
            Err(EngineError::AuthorizationViolation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(u: &str, p: &str) -> Credentials {
        Credentials::UserPassword {
            user: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn users_and_token() {
        let a = Authenticator::new(vec![User::new("u", "p")], Some("t".into())).expect("auth");
        assert!(a.required());
        assert!(a.check(&up("u", "p")).is_ok());
        assert!(a.check(&up("u", "x")).is_err());
        assert!(a.check(&Credentials::Token("t".into())).is_ok());
        assert!(a.check(&Credentials::Token("tt".into())).is_err());
        assert!(a.check(&Credentials::None).is_err());
        assert!(Authenticator::default().check(&Credentials::None).is_ok());
    }

    #[test]
    fn bcrypt_tenants_and_no_auth_user() {
        let hash = hash_password("secret", 4).expect("hash");
        let mut alice = User::new("alice", hash);
        alice.permissions = Some(PermissionsConfig {
            publish: Some(RulesConfig::Allow(StringList::One("orders.>".into()))),
            ..Default::default()
        });
        let a = Authenticator::with_tenants(
            vec![User::new("admin", "pw")],
            &[("acme".into(), vec![alice])],
            None,
            Some("alice".into()),
        )
        .expect("auth");
        let id = a.check(&up("alice", "secret")).expect("alice");
        assert_eq!(&*id.tenant.0, "acme");
        let perms = id.permissions.expect("permissions");
        assert!(perms.may_publish(b"orders.new"));
        assert!(!perms.may_publish(b"other"));
        // Remembered, then checked again.
        assert!(a.check(&up("alice", "secret")).is_ok());
        assert!(a.check(&up("alice", "wrong")).is_err());
        assert_eq!(&*a.check(&up("admin", "pw")).expect("admin").tenant.0, "$G");
        let anon = a.check(&Credentials::None).expect("no_auth_user");
        assert_eq!(anon.user.as_deref(), Some("alice"));
    }

    #[test]
    fn refusals() {
        let dup = Authenticator::with_tenants(
            vec![User::new("a", "p")],
            &[("t".into(), vec![User::new("a", "q")])],
            None,
            None,
        );
        assert_eq!(dup.err().as_deref(), Some("Duplicate user 'a'"));
        let missing = Authenticator::with_tenants(vec![], &[], None, Some("x".into()));
        assert!(missing.is_err());
        let mut bad = User::new("b", "p");
        bad.permissions = Some(PermissionsConfig {
            subscribe: Some(RulesConfig::Allow(StringList::One("a..b".into()))),
            ..Default::default()
        });
        assert!(Authenticator::new(vec![bad], None).is_err());
    }
}
