//! Who may connect, to which tenant, and what they may do: users with passwords
//! (plain or bcrypt) and permissions, tenants, one token, and `no_auth_user`,
//! shared by every protocol.
//!
//! A bcrypt check costs tens of milliseconds of CPU by design. It runs with
//! [`tokio::task::block_in_place`] (the worker's other tasks move to another
//! thread), and a user's last good password is remembered as a SHA-256 digest,
//! so a reconnecting client does not pay for bcrypt again.
//!
//! SCRAM-SHA-256 (MQTT 5 enhanced authentication) works for users with a
//! clear-text password: their keys are derived on first use (PBKDF2-HMAC-SHA-256,
//! 4096 iterations, a random 16-byte salt) and kept for the life of the process,
//! until the password changes. A restart makes new salts; clients that cache a
//! salted password by its salt simply derive it again. A bcrypt hash is not the
//! password, so bcrypt users cannot log in with SCRAM.
//!
//! Repeated failed logins ban their address, and their MQTT client id (from
//! any address), for a while; a banned one is refused before any password
//! check. Operators list, lift and add bans ([`Authenticator::bans`]). The
//! maps behind them hold at most 100,000 keys each, so a flood of distinct
//! addresses or client ids cannot grow them without bound.

use ahash::AHashMap;
use junction_api::scram::{ITERATIONS, ScramCredentials, hmac};
use junction_api::{BanInfo, BanKind, Credentials, EngineError, Identity, TenantId};
pub use junction_api::{PermissionsConfig, ResponsesConfig, RulesConfig, StringList, User};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

mod bans;
pub use bans::BanPolicy;
use bans::{Ban, LoginGuard};

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
    /// The permissions as configured, to show them back.
    permissions: Option<PermissionsConfig>,
}

impl Account {
    /// Checks one user of `tenant`: its name and the account it logs in to.
    fn of(tenant: TenantId, u: User) -> Result<(String, Account), String> {
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
            permissions: u.permissions,
        };
        Ok((name, account))
    }

    /// How it logs in, as shown: `nkey`, `bcrypt`, `password` or `certificate`.
    fn login(&self) -> &'static str {
        if self.nkey {
            "nkey"
        } else if self.bcrypt {
            "bcrypt"
        } else if self.password.is_empty() {
            "certificate"
        } else {
            "password"
        }
    }

    /// Does it log in and act exactly as `other` does?
    fn same_as(&self, other: &Account) -> bool {
        self.password == other.password
            && self.nkey == other.nkey
            && self.identity.tenant == other.identity.tenant
            && self.permissions == other.permissions
    }
}

/// The credentials the broker accepts. Empty means anyone may connect.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// Every user by name (tenants edited live change it).
    users: RwLock<AHashMap<String, Account>>,
    /// The one token (a reload may change it).
    token: RwLock<Option<String>>,
    no_auth_user: Option<String>,
    /// SHA-256 of each bcrypt user's last password that verified.
    verified: Mutex<AHashMap<String, [u8; 32]>>,
    guard: LoginGuard,
    /// Each clear-text user's SCRAM-SHA-256 keys, with the SHA-256 of the
    /// password they were derived from (a changed password derives new ones).
    scram: Mutex<AHashMap<String, ([u8; 32], ScramCredentials)>>,
    /// Makes up SCRAM keys for user names nobody has.
    decoy: DecoyKey,
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

/// A random key, made once per process, for SCRAM keys of unknown users.
#[derive(Debug)]
struct DecoyKey([u8; 32]);

impl Default for DecoyKey {
    fn default() -> Self {
        DecoyKey(rand::random())
    }
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
            let (name, account) = Account::of(tenant, u)?;
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
            users: RwLock::new(accounts),
            token: RwLock::new(token),
            no_auth_user,
            verified: Mutex::new(AHashMap::new()),
            guard: LoginGuard::default(),
            scram: Mutex::new(AHashMap::new()),
            decoy: DecoyKey::default(),
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

    /// Sets when failed logins ban an address or a client id.
    pub fn with_ban_policy(mut self, policy: BanPolicy) -> Self {
        self.guard.policy = policy;
        self
    }

    /// Bans an MQTT client id that connects too often (flapping detection).
    pub fn with_flapping(mut self, policy: BanPolicy) -> Self {
        self.guard.flapping = policy;
        self
    }

    /// An MQTT CONNECT of `client_id`, counted for flapping detection whether
    /// or not the broker needs credentials: [`EngineError::Banned`] for a
    /// banned id; `Ok(true)` when this connect banned it.
    pub fn connecting(&self, client_id: &str) -> Result<bool, EngineError> {
        self.guard
            .connecting(client_id)
            .map_err(|()| EngineError::Banned)
    }

    /// The bans made after failed logins since the last call, described.
    pub fn take_new_bans(&self) -> Vec<String> {
        std::mem::take(&mut *self.guard.new_bans.lock())
    }

    /// Logins refused so far because their address or client id was banned.
    pub fn refused_banned(&self) -> u64 {
        self.guard.refused.load(Ordering::Relaxed)
    }

    /// Replaces the users of `tenant` with `users` (a tenant edited live). A
    /// user given without a password keeps the one it has. Refuses a user that
    /// does not check or whose name another tenant uses, changing nothing.
    /// Returns the names of the users removed or changed, whose connections
    /// must log in again.
    pub fn set_tenant_users(
        &self,
        tenant: &TenantId,
        mut users: Vec<User>,
    ) -> Result<Vec<String>, String> {
        let mut all = self.users.write();
        let made = Self::prepare(&all, tenant, &mut users)?;
        let mut gone = Vec::new();
        all.retain(|name, a| {
            if a.identity.tenant != *tenant {
                return true;
            }
            if !made.get(name).is_some_and(|m| m.same_as(a)) {
                gone.push(name.clone());
            }
            false
        });
        all.extend(made);
        let mut verified = self.verified.lock();
        for name in &gone {
            verified.remove(name);
        }
        Ok(gone)
    }

    /// A configuration reload: the users of every tenant in `replaced` become
    /// `users` (tenant, user) at once, and the token becomes `token`; users of
    /// other tenants (made over the API) stay. Refuses, changing nothing, a
    /// user that does not check or a name used twice. Returns the users
    /// removed or changed, whose connections must log in again.
    pub fn replace_users(
        &self,
        replaced: &[TenantId],
        users: Vec<(TenantId, User)>,
        token: Option<String>,
    ) -> Result<Vec<(TenantId, String)>, String> {
        let mut all = self.users.write();
        let mut made: AHashMap<String, Account> = AHashMap::new();
        for (tenant, u) in users {
            let (name, account) = Account::of(tenant, u)?;
            let taken = made.contains_key(&name)
                || all
                    .get(&name)
                    .is_some_and(|a| !replaced.contains(&a.identity.tenant));
            if taken {
                return Err(format!("Duplicate user '{name}'"));
            }
            made.insert(name, account);
        }
        if let Some(n) = &self.no_auth_user
            && !made.contains_key(n)
            && all
                .get(n)
                .is_none_or(|a| replaced.contains(&a.identity.tenant))
        {
            return Err(format!("no_auth_user '{n}' is not a configured user"));
        }
        let mut gone = Vec::new();
        all.retain(|name, a| {
            if !replaced.contains(&a.identity.tenant) {
                return true;
            }
            if !made.get(name).is_some_and(|m| m.same_as(a)) {
                gone.push((a.identity.tenant.clone(), name.clone()));
            }
            false
        });
        all.extend(made);
        *self.token.write() = token;
        let mut verified = self.verified.lock();
        for (_, name) in &gone {
            verified.remove(name);
        }
        Ok(gone)
    }

    /// Checks `users` as [`Authenticator::set_tenant_users`] would, changing
    /// nothing but filling in the passwords kept.
    pub fn check_tenant_users(&self, tenant: &TenantId, users: &mut [User]) -> Result<(), String> {
        Self::prepare(&self.users.read(), tenant, users).map(|_| ())
    }

    fn prepare(
        all: &AHashMap<String, Account>,
        tenant: &TenantId,
        users: &mut [User],
    ) -> Result<AHashMap<String, Account>, String> {
        let mut made: AHashMap<String, Account> = AHashMap::new();
        for u in users.iter_mut() {
            if u.nkey.is_none() && u.user.is_empty() {
                return Err("every user needs a name (or an nkey)".into());
            }
            if u.nkey.is_none() && u.password.is_empty() {
                match all.get(&u.user).filter(|a| a.identity.tenant == *tenant) {
                    Some(known) if !known.nkey && !known.password.is_empty() => {
                        u.password = known.password.clone()
                    }
                    _ => return Err(format!("user '{}' needs a password", u.user)),
                }
            }
            let (name, account) = Account::of(tenant.clone(), u.clone())?;
            if all.get(&name).is_some_and(|a| a.identity.tenant != *tenant)
                || made.contains_key(&name)
            {
                return Err(format!("Duplicate user '{name}'"));
            }
            made.insert(name, account);
        }
        Ok(made)
    }

    /// The users of `tenant`, as shown (never their passwords), by name.
    pub fn users_of(&self, tenant: &TenantId) -> Vec<junction_api::UserInfo> {
        let mut users: Vec<_> = self
            .users
            .read()
            .iter()
            .filter(|(_, a)| a.identity.tenant == *tenant)
            .map(|(name, a)| junction_api::UserInfo {
                user: name.clone(),
                login: a.login().into(),
                permissions: a.permissions.clone(),
            })
            .collect();
        users.sort_by(|a, b| a.user.cmp(&b.user));
        users
    }

    /// [`Authenticator::check`] for a client at `remote`: a banned address is
    /// refused before anything is checked; a failure counts against it.
    pub fn check_from(
        &self,
        credentials: &Credentials,
        remote: IpAddr,
    ) -> Result<Identity, EngineError> {
        self.check_client(credentials, remote, None)
    }

    /// [`Authenticator::check_from`] for a client that names itself with
    /// `client_id` (MQTT): a banned client id is refused with
    /// [`EngineError::Banned`] before the credentials are checked, from any
    /// address; a failure counts against the address and the client id.
    pub fn check_client(
        &self,
        credentials: &Credentials,
        remote: IpAddr,
        client_id: Option<&str>,
    ) -> Result<Identity, EngineError> {
        if !self.required() {
            return Ok(Identity::anonymous());
        }
        // An address ban answers as a failed login, as nats-server's
        // "Authorization Violation" does: a guesser learns nothing from it.
        if self.guard.address_banned(remote) {
            tracing::info!(%remote, "login refused: the address is banned");
            return Err(EngineError::AuthorizationViolation);
        }
        if let Some(id) = client_id
            && self.guard.client_id_banned(id)
        {
            tracing::info!(%remote, client_id = id, "login refused: the client id is banned");
            return Err(EngineError::Banned);
        }
        let result = self.check(credentials);
        if result.is_err() {
            self.guard.failed(remote, client_id);
        }
        result
    }

    /// The bans in force, sorted by kind and then by who.
    pub fn bans(&self) -> Vec<BanInfo> {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let show = |kind, who: String, ban: Ban| BanInfo {
            kind,
            who,
            until: wall + ban.until.saturating_duration_since(now),
            reason: ban.reason,
        };
        let mut bans: Vec<BanInfo> = self
            .guard
            .addresses
            .in_force()
            .into_iter()
            .map(|(ip, b)| show(BanKind::Address, ip.to_string(), b))
            .chain(
                self.guard
                    .client_ids
                    .in_force()
                    .into_iter()
                    .map(|(id, b)| show(BanKind::ClientId, id.to_string(), b)),
            )
            .collect();
        bans.sort_by(|a, b| (a.kind, &a.who).cmp(&(b.kind, &b.who)));
        bans
    }

    /// Lifts the ban on `who` and forgets its failures. Fails with
    /// [`EngineError::BanNotFound`] when no such ban is in force.
    pub fn lift_ban(&self, kind: BanKind, who: &str) -> Result<(), EngineError> {
        let lifted = match kind {
            BanKind::Address => who
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.guard.addresses.lift(&ip)),
            BanKind::ClientId => self.guard.client_ids.lift(who),
        };
        if !lifted {
            return Err(EngineError::BanNotFound);
        }
        tracing::info!(kind = %kind, who, "ban lifted by an operator");
        Ok(())
    }

    /// Bans `who` by hand for `ban_for`, replacing a ban it has.
    pub fn ban(
        &self,
        kind: BanKind,
        who: &str,
        ban_for: Duration,
        reason: &str,
    ) -> Result<BanInfo, EngineError> {
        if !self.required() {
            return Err(EngineError::BadRequest(
                "this broker needs no credentials, so it bans nobody".into(),
            ));
        }
        if ban_for.is_zero() {
            return Err(EngineError::BadRequest(
                "a ban needs a duration longer than zero".into(),
            ));
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        let Some(until) = now.checked_add(ban_for) else {
            return Err(EngineError::BadRequest(
                "the ban's duration is too long".into(),
            ));
        };
        let reason = if reason.is_empty() {
            "banned by an operator".to_string()
        } else {
            reason.to_string()
        };
        let who = match kind {
            BanKind::Address => {
                let Ok(ip) = who.parse::<IpAddr>() else {
                    return Err(EngineError::BadRequest(format!(
                        "'{who}' is not an IP address"
                    )));
                };
                self.guard.addresses.ban(ip, until, reason.clone(), true);
                ip.to_string()
            }
            BanKind::ClientId => {
                if who.is_empty() {
                    return Err(EngineError::BadRequest(
                        "a client id to ban cannot be empty".into(),
                    ));
                }
                self.guard
                    .client_ids
                    .ban(Arc::from(who), until, reason.clone(), true);
                who.to_string()
            }
        };
        tracing::info!(kind = %kind, who, ban_for = ?ban_for, "banned by an operator");
        Ok(BanInfo {
            kind,
            who,
            until: wall + ban_for,
            reason,
        })
    }

    /// Does anything need credentials?
    pub fn required(&self) -> bool {
        !self.users.read().is_empty() || self.token.read().is_some()
    }

    /// Are there any users (rather than only a token)?
    pub fn has_users(&self) -> bool {
        !self.users.read().is_empty()
    }

    /// Do some users log in with an NKey?
    pub fn has_nkeys(&self) -> bool {
        self.users.read().values().any(|a| a.nkey)
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
            Credentials::ScramSha256 {
                user,
                auth_message,
                proof,
            } => self.check_scram(user, auth_message, proof),
            Credentials::Certificate(der) if self.map_certificates => {
                let names = certificate_names(der);
                match names.iter().find_map(|n| {
                    self.users
                        .read()
                        .get(n)
                        .filter(|a| !a.nkey)
                        .map(|a| a.identity.clone())
                }) {
                    Some(identity) => Ok(identity),
                    None => {
                        tracing::info!(?names, "client certificate maps to no user");
                        Err(EngineError::AuthorizationViolation)
                    }
                }
            }
            Credentials::Token(token)
                if self
                    .token
                    .read()
                    .as_deref()
                    .is_some_and(|t| same_secret(t.as_bytes(), token.as_bytes())) =>
            {
                Ok(Identity::anonymous())
            }
            Credentials::None => match &self.no_auth_user {
                Some(user) => self
                    .users
                    .read()
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
        let Some(identity) = self
            .users
            .read()
            .get(key)
            .filter(|a| a.nkey)
            .map(|a| a.identity.clone())
        else {
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
                Ok(identity)
            }
            _ => refused,
        }
    }

    /// The SCRAM-SHA-256 keys of `user` (see [`junction_api::Broker::scram_sha256`]):
    /// derived from its clear-text password on first use and kept; made up
    /// (the same each time in this process) for a name nobody has; `None` for
    /// a bcrypt, NKey or certificate-only user, and when there are no users.
    pub fn scram_sha256(&self, user: &str) -> Option<ScramCredentials> {
        if !self.has_users() {
            return None;
        }
        let account = self.users.read().get(user).map(|a| {
            (
                a.password.clone(),
                a.bcrypt || a.nkey || a.password.is_empty(),
            )
        });
        // An unknown user, and a user whose password is not in clear text (a
        // bcrypt hash, an NKey or certificate-only user, for whom no SCRAM keys
        // can be derived), get made-up keys: the exchange runs and ends with
        // "bad user name or password" (0x86) like a wrong password, so a
        // caller cannot tell which user names exist.
        let decoy = || {
            let key = &self.decoy.0;
            let salt = hmac(key, format!("salt:{user}").as_bytes())[..16].to_vec();
            Some(ScramCredentials {
                salt,
                iterations: ITERATIONS,
                stored_key: hmac(key, format!("stored:{user}").as_bytes()),
                server_key: hmac(key, format!("server:{user}").as_bytes()),
            })
        };
        let password = match account {
            None => return decoy(),
            Some((_, true)) => {
                tracing::warn!(%user, "SCRAM-SHA-256 login for a user whose password is not in clear text (bcrypt hash, NKey or certificate-only): it can only log in with user name and password; answered as a failed login");
                return decoy();
            }
            Some((password, false)) => password,
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if let Some((d, keys)) = self.scram.lock().get(user)
            && *d == digest
        {
            return Some(keys.clone());
        }
        let salt: [u8; 16] = rand::random();
        // RFC 5802 §2.2: Hi(Normalize(password), …), Normalize being SASLprep
        // (RFC 4013), as clients apply it (a soft hyphen goes, U+2168 becomes
        // "IX", …). A password SASLprep refuses (a control character, say) is
        // used as configured, as PostgreSQL does, so it still logs in with
        // clients that do not normalise.
        let prepared = stringprep::saslprep(&password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.clone());
        let keys =
            off_worker(|| ScramCredentials::derive(prepared.as_bytes(), salt.to_vec(), ITERATIONS));
        // Two first logins at once: the keys stored first stand, so both
        // exchanges check proofs against the salt they sent.
        let mut cache = self.scram.lock();
        match cache.get(user) {
            Some((d, stored)) if *d == digest => Some(stored.clone()),
            _ => {
                cache.insert(user.to_string(), (digest, keys.clone()));
                Some(keys)
            }
        }
    }

    fn check_scram(
        &self,
        user: &str,
        auth_message: &str,
        proof: &[u8],
    ) -> Result<Identity, EngineError> {
        let identity = self
            .users
            .read()
            .get(user)
            .filter(|a| !a.nkey && !a.bcrypt && !a.password.is_empty())
            .map(|a| a.identity.clone());
        match (identity, self.scram_sha256(user)) {
            (Some(identity), Some(keys)) if keys.verify(auth_message.as_bytes(), proof) => {
                Ok(identity)
            }
            _ => Err(EngineError::AuthorizationViolation),
        }
    }

    fn check_user(&self, user: &str, password: &str) -> Result<Identity, EngineError> {
        // NKey users and certificate-only users (no password) never log in
        // with a password.
        let Some((hash, bcrypt, identity)) = self
            .users
            .read()
            .get(user)
            .filter(|a| !a.nkey && !a.password.is_empty())
            .map(|a| (a.password.clone(), a.bcrypt, a.identity.clone()))
        else {
            return Err(EngineError::AuthorizationViolation);
        };
        let ok = if bcrypt {
            let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            let known = self
                .verified
                .lock()
                .get(user)
                .is_some_and(|d| same_secret(d, &digest));
            known || {
                let good = off_worker(|| bcrypt::verify(password, &hash)).unwrap_or(false);
                if good {
                    self.verified.lock().insert(user.to_string(), digest);
                }
                good
            }
        } else {
            same_secret(hash.as_bytes(), password.as_bytes())
        };
        if ok {
            Ok(identity)
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
    fn scram_keys_for_clear_text_users_only() {
        let hash = hash_password("pw", 4).expect("hash");
        let a = Authenticator::new(vec![User::new("u", "pencil"), User::new("h", hash)], None)
            .expect("users");
        let keys = a.scram_sha256("u").expect("clear-text user");
        assert_eq!(keys.iterations, ITERATIONS);
        assert_eq!(keys.salt.len(), 16);
        assert_eq!(a.scram_sha256("u"), Some(keys.clone()), "kept, same salt");
        assert_eq!(
            keys,
            ScramCredentials::derive(b"pencil", keys.salt.clone(), ITERATIONS)
        );
        let made_up = a.scram_sha256("h").expect("bcrypt: made-up keys");
        assert_ne!(
            made_up,
            ScramCredentials::derive(b"pw", made_up.salt.clone(), ITERATIONS),
            "bcrypt: the hash is not the password"
        );
        let decoy = a.scram_sha256("nobody").expect("made-up keys");
        assert_eq!(a.scram_sha256("nobody"), Some(decoy), "the same each time");
        assert!(Authenticator::default().scram_sha256("u").is_none());
        // The proof goes through check: a wrong one is a failed login.
        let scram = |user: &str| Credentials::ScramSha256 {
            user: user.into(),
            auth_message: "m".into(),
            proof: vec![0; 32],
        };
        assert!(a.check(&scram("u")).is_err());
        assert!(a.check(&scram("h")).is_err());
        assert!(a.check(&scram("nobody")).is_err());
        let salted = {
            let mut out = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(b"pencil", &keys.salt, ITERATIONS, &mut out);
            out
        };
        let client_key = hmac(&salted, b"Client Key");
        let signature = hmac(&keys.stored_key, b"m");
        let proof = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let good = Credentials::ScramSha256 {
            user: "u".into(),
            auth_message: "m".into(),
            proof,
        };
        let identity = a.check(&good).expect("right proof");
        assert_eq!(identity.user.as_deref(), Some("u"));
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

    #[test]
    fn a_client_id_is_banned_from_any_address_and_lifted() {
        let a = Authenticator::new(vec![User::new("u", "p")], None)
            .expect("auth")
            .with_ban_policy(BanPolicy {
                after: 3,
                window: Duration::from_secs(60),
                ban_for: Duration::from_secs(60),
            });
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        for n in 2..5 {
            assert_eq!(
                a.check_client(&up("u", "x"), ip(n), Some("dev-1")).err(),
                Some(EngineError::AuthorizationViolation)
            );
        }
        assert_eq!(
            a.check_client(&up("u", "p"), ip(9), Some("dev-1")).err(),
            Some(EngineError::Banned)
        );
        assert!(a.check_client(&up("u", "p"), ip(9), Some("dev-2")).is_ok());
        // No address failed three times; nothing but the client id is banned.
        let bans = a.bans();
        assert_eq!(bans.len(), 1);
        assert_eq!(
            (bans[0].kind, bans[0].who.as_str()),
            (BanKind::ClientId, "dev-1")
        );
        assert_eq!(a.lift_ban(BanKind::ClientId, "dev-1"), Ok(()));
        assert_eq!(
            a.lift_ban(BanKind::ClientId, "dev-1"),
            Err(EngineError::BanNotFound)
        );
        assert!(a.check_client(&up("u", "p"), ip(9), Some("dev-1")).is_ok());
        // By hand: an address, and what is not one.
        a.ban(BanKind::Address, "127.0.0.5", Duration::from_secs(60), "")
            .expect("ban");
        assert_eq!(
            a.check_client(&up("u", "p"), ip(5), Some("dev-3")).err(),
            Some(EngineError::AuthorizationViolation)
        );
        assert!(matches!(
            a.ban(BanKind::Address, "dev-1", Duration::from_secs(60), ""),
            Err(EngineError::BadRequest(_))
        ));
        assert!(matches!(
            a.ban(BanKind::ClientId, "dev-1", Duration::ZERO, ""),
            Err(EngineError::BadRequest(_))
        ));
    }
}
