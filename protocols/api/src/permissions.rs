//! What an authenticated user may publish and subscribe to, checked in one place
//! for every protocol.
//!
//! The model is nats-server's user permissions, rule for rule:
//! - `publish` and `subscribe` each have an optional `allow` list and a `deny`
//!   list of subject patterns. No allow list means everything is allowed; deny
//!   wins over allow.
//! - A subscribe entry may name a queue group (`"orders.* workers"`): it then
//!   governs queue subscriptions in that group (the group may itself be a
//!   pattern).
//! - A subscription's filter is matched *as a literal subject* against the
//!   patterns, as nats-server's sublist does: `SUB orders.*` is allowed by an
//!   allow entry `orders.*` or `orders.>` or `*.*`, and not denied by a deny
//!   entry `orders.secret`. Messages that such a wider subscription would carry
//!   from a denied subject are filtered when delivered ([`Permissions::deny_delivery`]).
//! - `allow_responses` lets a user publish to the reply subject of a message it
//!   received, up to `max` times within `expires`, whatever its publish list
//!   says ([`ResponsePermission`]).
//!
//! Each protocol answers a refusal its own way (NATS `-ERR 'Permissions
//! Violation …'`, MQTT reason code 0x87, HTTP 403); [`Permissions`] only decides.

use crate::subject::{Subject, SubjectFilter};
use std::time::Duration;

/// One pattern of a permission list, with the queue group it is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionRule {
    pattern: SubjectFilter,
    queue: Option<String>,
}

impl PermissionRule {
    /// Parses `"subject"` or `"subject queue"` (the queue form only means
    /// something in subscribe lists). Errors name what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split_whitespace();
        let subject = parts
            .next()
            .ok_or_else(|| "a permission entry is empty".to_string())?;
        let queue = parts.next().map(str::to_string);
        if parts.next().is_some() {
            return Err(format!(
                "permission entry '{text}' has more than a subject and a queue group"
            ));
        }
        let pattern = SubjectFilter::new(subject.as_bytes().to_vec())
            .map_err(|e| format!("permission entry '{text}': {e}"))?;
        Ok(PermissionRule { pattern, queue })
    }

    /// The subject pattern.
    pub fn pattern(&self) -> &SubjectFilter {
        &self.pattern
    }

    /// The queue group this entry is limited to, if any.
    pub fn queue(&self) -> Option<&str> {
        self.queue.as_deref()
    }
}

/// An allow list (none: everything) and a deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectRules {
    /// Allowed patterns; `None` allows every subject.
    pub allow: Option<Vec<PermissionRule>>,
    /// Denied patterns; deny wins over allow.
    pub deny: Vec<PermissionRule>,
}

impl SubjectRules {
    fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }
}

/// How a user may answer requests it received (`allow_responses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponsePermission {
    /// Replies allowed per received reply subject (nats-server's default: 1).
    pub max: u32,
    /// How long after receiving the request the reply is allowed (default: 2
    /// minutes; zero means no limit).
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max: 1,
            expires: Duration::from_secs(120),
        }
    }
}

/// A user's permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// What the user may publish to.
    pub publish: SubjectRules,
    /// What the user may subscribe to.
    pub subscribe: SubjectRules,
    /// Replies to received requests, allowed whatever `publish` says.
    pub responses: Option<ResponsePermission>,
}

/// `subject`, read as a literal subject even when it holds wildcards, matches
/// `pattern` (nats-server's `Sublist.Match` on a subscription's subject).
fn literal_matches(pattern: &SubjectFilter, subject: &[u8]) -> bool {
    let mut p = pattern.tokens();
    let mut s = subject.split(|b| *b == b'.');
    loop {
        match (p.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(pt), Some(st)) if pt == st => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `queue` is within the queue pattern `allowed` (a literal name, or a pattern).
fn queue_matches(queue: &str, allowed: &str) -> bool {
    if queue == allowed {
        return true;
    }
    match SubjectFilter::new(allowed.as_bytes().to_vec()) {
        Ok(p) if !p.is_literal() => literal_matches(&p, queue.as_bytes()),
        _ => false,
    }
}

impl Permissions {
    /// Allows everything: what a user without permissions gets.
    pub fn is_open(&self) -> bool {
        self.publish.is_open() && self.subscribe.is_open() && self.responses.is_none()
    }

    /// May the user publish to `subject` (ignoring response permissions, which
    /// the protocol's session tracks)?
    pub fn may_publish(&self, subject: &[u8]) -> bool {
        let rules = &self.publish;
        if let Some(allow) = &rules.allow
            && !allow.iter().any(|r| literal_matches(&r.pattern, subject))
        {
            return false;
        }
        !rules
            .deny
            .iter()
            .any(|r| literal_matches(&r.pattern, subject))
    }

    /// May the user subscribe with `filter`, in queue group `queue` if given?
    pub fn may_subscribe(&self, filter: &[u8], queue: Option<&str>) -> bool {
        let rules = &self.subscribe;
        if let Some(allow) = &rules.allow {
            let hits: Vec<&PermissionRule> = allow
                .iter()
                .filter(|r| literal_matches(&r.pattern, filter))
                .collect();
            let plain = hits.iter().any(|r| r.queue.is_none());
            let queued: Vec<&str> = hits.iter().filter_map(|r| r.queue()).collect();
            let allowed = match queue {
                Some(q) if !queued.is_empty() => queued.iter().any(|a| queue_matches(q, a)),
                _ => plain,
            };
            if !allowed {
                return false;
            }
        }
        let hits: Vec<&PermissionRule> = rules
            .deny
            .iter()
            .filter(|r| literal_matches(&r.pattern, filter))
            .collect();
        if hits.iter().any(|r| r.queue.is_none()) {
            return false;
        }
        match queue {
            Some(q) => !hits
                .iter()
                .filter_map(|r| r.queue())
                .any(|a| queue_matches(q, a)),
            None => true,
        }
    }

    /// Must a subscription with `filter` (in `queue`) be checked at delivery,
    /// because it is wider than a deny entry it could carry messages from?
    pub fn needs_delivery_check(&self, filter: &SubjectFilter, queue: Option<&str>) -> bool {
        (queue.is_some() || !filter.is_literal())
            && self
                .subscribe
                .deny
                .iter()
                .any(|r| crate::subject::filters_overlap(r.pattern.as_bytes(), filter.as_bytes()))
    }

    /// Is delivering a message on `subject` to a subscription (in `queue`)
    /// denied? Only asked of subscriptions [`Self::needs_delivery_check`] marks.
    pub fn deny_delivery(&self, subject: &Subject, queue: Option<&str>) -> bool {
        self.subscribe.deny.iter().any(|r| {
            r.pattern.matches(subject)
                && match (&r.queue, queue) {
                    (None, _) => true,
                    (Some(a), Some(q)) => queue_matches(q, a),
                    (Some(_), None) => false,
                }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: Option<&[&str]>, deny: &[&str]) -> SubjectRules {
        let parse = |l: &[&str]| {
            l.iter()
                .map(|s| PermissionRule::parse(s).expect("rule"))
                .collect::<Vec<_>>()
        };
        SubjectRules {
            allow: allow.map(parse),
            deny: parse(deny),
        }
    }

    #[test]
    fn publish_allow_and_deny() {
        let p = Permissions {
            publish: rules(Some(&["orders.>", "logs.*"]), &["orders.secret"]),
            ..Default::default()
        };
        assert!(p.may_publish(b"orders.new"));
        assert!(p.may_publish(b"orders.a.b"));
        assert!(!p.may_publish(b"orders.secret"));
        assert!(p.may_publish(b"logs.x"));
        assert!(!p.may_publish(b"logs.x.y"));
        assert!(!p.may_publish(b"other"));
        let deny_only = Permissions {
            publish: rules(None, &["$JS.API.>"]),
            ..Default::default()
        };
        assert!(deny_only.may_publish(b"anything"));
        assert!(!deny_only.may_publish(b"$JS.API.STREAM.NAMES"));
    }

    #[test]
    fn subscribe_matches_the_filter_literally() {
        let p = Permissions {
            subscribe: rules(Some(&["orders.*", "_INBOX.>"]), &["orders.secret"]),
            ..Default::default()
        };
        assert!(p.may_subscribe(b"orders.new", None));
        assert!(p.may_subscribe(b"orders.*", None));
        assert!(!p.may_subscribe(b"orders.secret", None));
        assert!(!p.may_subscribe(b"orders.a.b", None));
        assert!(p.may_subscribe(b"_INBOX.abc.*", None));
        assert!(!p.may_subscribe(b">", None));
        let f = SubjectFilter::new(&b"orders.*"[..]).expect("filter");
        assert!(p.needs_delivery_check(&f, None));
        let secret = Subject::new(&b"orders.secret"[..]).expect("subject");
        let fine = Subject::new(&b"orders.new"[..]).expect("subject");
        assert!(p.deny_delivery(&secret, None));
        assert!(!p.deny_delivery(&fine, None));
        let literal = SubjectFilter::new(&b"orders.new"[..]).expect("filter");
        assert!(!p.needs_delivery_check(&literal, None));
    }

    #[test]
    fn queue_entries() {
        let p = Permissions {
            subscribe: rules(Some(&["jobs.* workers", "events"]), &["jobs.x bad.*"]),
            ..Default::default()
        };
        assert!(p.may_subscribe(b"jobs.a", Some("workers")));
        assert!(!p.may_subscribe(b"jobs.a", Some("others")));
        assert!(!p.may_subscribe(b"jobs.a", None));
        assert!(p.may_subscribe(b"events", None));
        assert!(p.may_subscribe(b"events", Some("any")));
        let deny = Permissions {
            subscribe: rules(None, &["jobs.x bad.*"]),
            ..Default::default()
        };
        assert!(deny.may_subscribe(b"jobs.x", None));
        assert!(deny.may_subscribe(b"jobs.x", Some("good")));
        assert!(!deny.may_subscribe(b"jobs.x", Some("bad.one")));
    }

    #[test]
    fn parse_errors() {
        assert!(PermissionRule::parse("").is_err());
        assert!(PermissionRule::parse("a b c").is_err());
        assert!(PermissionRule::parse("a..b").is_err());
        assert_eq!(
            PermissionRule::parse("a.* q").expect("rule").queue(),
            Some("q")
        );
    }
}
