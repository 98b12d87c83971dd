//! Bans after failed logins: failures counted per address and per MQTT client
//! id, the bans they make (and those operators make by hand), in maps whose
//! size is bounded.

use ahash::AHashMap;
use parking_lot::Mutex;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When repeated failed logins ban their address, or their MQTT client id
/// (EMQX's flapping detection, applied to logins). The same thresholds serve
/// both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failures within `window` that ban the address or client id (0: never).
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

/// Keys (addresses, client ids) tracked at most per map, for failures and for
/// bans alike. When a map is full, what has expired is dropped first, then the
/// older half of what is left (the oldest windows, the bans that end soonest);
/// bans made by hand are never dropped.
const TRACKED_KEYS: usize = 100_000;

/// Client ids longer than this are not counted (their failures count against
/// their address only), so a flood of long ids cannot hold much memory.
const LONGEST_TRACKED_CLIENT_ID: usize = 256;

/// A ban in force on one key.
#[derive(Debug, Clone)]
pub(super) struct Ban {
    pub(super) until: Instant,
    pub(super) reason: String,
    pub(super) by_hand: bool,
}

/// Failed logins per key (an address or a client id), and the keys banned.
#[derive(Debug)]
pub(super) struct Strikes<K> {
    /// Per key: when its window started and its failures in it.
    failures: Mutex<AHashMap<K, (Instant, u32)>>,
    /// Per banned key: until when, and why.
    banned: Mutex<AHashMap<K, Ban>>,
}

impl<K> Default for Strikes<K> {
    fn default() -> Self {
        Strikes {
            failures: Mutex::new(AHashMap::new()),
            banned: Mutex::new(AHashMap::new()),
        }
    }
}

/// Makes room in a full `map`: drops what has `expired`, then, if it is still
/// full, the older half of the rest by `age` (`None`: never dropped). Dropping
/// half at once keeps a flood of new keys at O(1) per key, amortised.
fn make_room<K, V>(
    map: &mut AHashMap<K, V>,
    expired: impl Fn(&V) -> bool,
    age: impl Fn(&V) -> Option<Instant>,
) {
    if map.len() < TRACKED_KEYS {
        return;
    }
    map.retain(|_, v| !expired(v));
    if map.len() < TRACKED_KEYS {
        return;
    }
    let mut ages: Vec<Instant> = map.values().filter_map(&age).collect();
    if ages.is_empty() {
        return;
    }
    let middle = ages.len() / 2;
    let cut = *ages.select_nth_unstable(middle).1;
    map.retain(|_, v| age(v).is_none_or(|t| t > cut));
}

impl<K: std::hash::Hash + Eq> Strikes<K> {
    /// Is `key` banned now? Forgets a ban that has ended.
    pub(super) fn is_banned<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut banned = self.banned.lock();
        match banned.get(key) {
            Some(ban) if Instant::now() < ban.until => true,
            Some(_) => {
                banned.remove(key);
                false
            }
            None => false,
        }
    }

    /// Counts a failure of `key`; bans it (and says so) when it reaches the
    /// policy's threshold within its window.
    pub(super) fn failed(&self, key: K, p: BanPolicy, reason: impl FnOnce() -> String) -> bool
    where
        K: Clone,
    {
        if !self.count(key.clone(), p) {
            return false;
        }
        self.ban(key, Instant::now() + p.ban_for, reason(), false);
        true
    }

    /// Counts one more of `key` in its window: has it reached the policy's
    /// threshold (and its count starts again)?
    pub(super) fn count(&self, key: K, p: BanPolicy) -> bool
    where
        K: Clone,
    {
        if p.after == 0 {
            return false;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if !failures.contains_key(&key) {
            make_room(
                &mut failures,
                |(start, _)| now.duration_since(*start) >= p.window,
                |(start, _)| Some(*start),
            );
        }
        let entry = failures.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= p.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 < p.after {
            return false;
        }
        failures.remove(&key);
        true
    }

    /// Bans `key` until `until`, replacing a ban it has.
    pub(super) fn ban(&self, key: K, until: Instant, reason: String, by_hand: bool) {
        let now = Instant::now();
        let mut banned = self.banned.lock();
        if !banned.contains_key(&key) {
            make_room(
                &mut banned,
                |b| now >= b.until,
                |b| (!b.by_hand).then_some(b.until),
            );
        }
        banned.insert(
            key,
            Ban {
                until,
                reason,
                by_hand,
            },
        );
    }

    /// Lifts the ban on `key` and forgets its failures: was it banned?
    pub(super) fn lift<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.failures.lock().remove(key);
        let ban = self.banned.lock().remove(key);
        ban.is_some_and(|b| Instant::now() < b.until)
    }

    /// The bans in force, as `(key, ban)`; forgets those that have ended.
    pub(super) fn in_force(&self) -> Vec<(K, Ban)>
    where
        K: Clone,
    {
        let now = Instant::now();
        let mut banned = self.banned.lock();
        banned.retain(|_, b| now < b.until);
        banned.iter().map(|(k, b)| (k.clone(), b.clone())).collect()
    }
}

/// Failed logins per address and per client id, and the bans made for them
/// (or by hand).
#[derive(Debug, Default)]
pub(super) struct LoginGuard {
    pub(super) policy: BanPolicy,
    /// Flapping detection: MQTT connects per client id (`after` 0: off).
    pub(super) flapping: BanPolicy,
    /// Connects per client id, counted for flapping detection.
    pub(super) connects: Strikes<Arc<str>>,
    pub(super) addresses: Strikes<IpAddr>,
    pub(super) client_ids: Strikes<Arc<str>>,
    /// Logins refused because their address or client id was banned.
    pub(super) refused: AtomicU64,
    /// Bans made since the engine last looked, for its event log.
    pub(super) new_bans: Mutex<Vec<String>>,
}

impl LoginGuard {
    /// Is `ip` banned? Counts the refusal.
    pub(super) fn address_banned(&self, ip: IpAddr) -> bool {
        let banned = self.addresses.is_banned(&ip);
        if banned {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        banned
    }

    /// Is `client_id` banned? Counts the refusal.
    pub(super) fn client_id_banned(&self, client_id: &str) -> bool {
        let banned = self.client_ids.is_banned(client_id);
        if banned {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        banned
    }

    /// Counts an MQTT CONNECT of `client_id` for flapping detection: refused
    /// when the id is banned; `Ok(true)` when this one bans it.
    pub(super) fn connecting(&self, client_id: &str) -> Result<bool, ()> {
        if self.client_id_banned(client_id) {
            return Err(());
        }
        let p = self.flapping;
        if p.after == 0 || client_id.is_empty() || client_id.len() > LONGEST_TRACKED_CLIENT_ID {
            return Ok(false);
        }
        let id: Arc<str> = Arc::from(client_id);
        if !self.connects.count(id.clone(), p) {
            return Ok(false);
        }
        let reason = format!(
            "{} connects within {} (flapping)",
            p.after,
            humantime::format_duration(p.window)
        );
        self.client_ids
            .ban(id, Instant::now() + p.ban_for, reason, false);
        Ok(true)
    }

    /// Counts a failed login from `ip` with `client_id` against both.
    pub(super) fn failed(&self, ip: IpAddr, client_id: Option<&str>) {
        let p = self.policy;
        let failures = p.after;
        if self.addresses.failed(ip, p, || {
            format!(
                "{failures} failed logins within {}",
                humantime::format_duration(p.window)
            )
        }) {
            tracing::warn!(%ip, failures, ban_for = ?p.ban_for, "address banned after repeated failed logins");
            self.new_bans.lock().push(format!(
                "address {ip} banned for {}: {failures} failed logins within {}",
                humantime::format_duration(p.ban_for),
                humantime::format_duration(p.window)
            ));
        }
        let Some(id) =
            client_id.filter(|id| !id.is_empty() && id.len() <= LONGEST_TRACKED_CLIENT_ID)
        else {
            return;
        };
        if self.client_ids.failed(Arc::from(id), p, || {
            format!(
                "{failures} failed logins within {}",
                humantime::format_duration(p.window)
            )
        }) {
            tracing::warn!(%ip, client_id = id, failures, ban_for = ?p.ban_for, "client id banned after repeated failed logins");
            self.new_bans.lock().push(format!(
                "MQTT client id '{id}' banned for {}: {failures} failed logins within {}",
                humantime::format_duration(p.ban_for),
                humantime::format_duration(p.window)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_client_ids_holds_bounded_memory() {
        let strikes: Strikes<Arc<str>> = Strikes::default();
        let policy = BanPolicy {
            after: 1,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(60),
        };
        strikes.ban(
            Arc::from("by-hand"),
            Instant::now() + policy.ban_for,
            "op".into(),
            true,
        );
        for n in 0..(TRACKED_KEYS * 5 / 2) {
            strikes.failed(Arc::from(format!("id-{n}")), policy, String::new);
        }
        let banned = strikes.banned.lock();
        assert!(banned.len() <= TRACKED_KEYS, "{} bans held", banned.len());
        assert!(
            banned.contains_key("by-hand"),
            "a ban by hand is never dropped"
        );
        assert!(banned.contains_key(format!("id-{}", TRACKED_KEYS * 5 / 2 - 1).as_str()));
        drop(banned);
        let policy = BanPolicy {
            after: 10,
            ..policy
        };
        for n in 0..(TRACKED_KEYS * 5 / 2) {
            strikes.failed(Arc::from(format!("f-{n}")), policy, String::new);
        }
        assert!(strikes.failures.lock().len() <= TRACKED_KEYS);
    }
}
