//! Republish: a station's stored messages published again, as core messages,
//! on another subject (JetStream `republish`, nats-server 2.10).
//!
//! - **Which.** A message whose subject matches the policy's `source` filter,
//!   once the station has stored it (a refused or duplicate publish is not
//!   republished). On a replicated station, once, from the node the publish
//!   came in on.
//! - **Where.** `destination`, a subject transform as nats-server 2.10 takes it
//!   (`$n` and `{{wildcard(n)}}` the source's n-th `*`, a trailing `>` what the
//!   source's `>` matched, and the partition, split and slice functions;
//!   [`CompiledTransform`]).
//! - **With.** The message's own headers plus `Nats-Stream`, `Nats-Subject`,
//!   `Nats-Sequence`, `Nats-Time-Stamp` and `Nats-Last-Sequence` (the newest
//!   sequence on the same subject before it, as the index held it when the
//!   publish came in; 0 for the first); `headers_only` sends no payload and
//!   `Nats-Msg-Size`.
//! - **Checked** when the station is defined: the destination must be a valid
//!   subject template and must not overlap the station's own subjects (it
//!   would store its own copies: "forms a cycle", as nats-server says).

use junction_api::{
    CompiledTransform, EngineError, Headers, Message, Republish, StationConfig, StoredCallback,
    Subject, SubjectFilter, filters_overlap,
};
use std::time::SystemTime;

/// A checked republish: the source filter and the destination template,
/// applied by the one subject transform implementation
/// ([`CompiledTransform`], shared with stream, mirror and source transforms).
#[derive(Debug, Clone)]
pub(crate) struct Transform {
    compiled: CompiledTransform,
}

fn invalid(text: String) -> EngineError {
    EngineError::InvalidConfig(junction_api::ConfigError::Invalid(text))
}

impl Transform {
    /// Checks `r` as nats-server does for a station capturing `subjects`.
    pub(crate) fn new(r: &Republish, subjects: &[String]) -> Result<Transform, EngineError> {
        let source_text = if r.source.is_empty() {
            ">"
        } else {
            r.source.as_str()
        };
        let not_valid = || {
            invalid(format!(
                "stream configuration for republish with transform from '{source_text}' to '{}' not valid",
                r.destination
            ))
        };
        SubjectFilter::new(source_text.to_string()).map_err(|_| not_valid())?;
        if r.destination.is_empty() {
            return Err(not_valid());
        }
        // The destination as a filter, for the cycle check: a token that takes
        // one source token is `*`, and one that can make several (the split and
        // slice functions) makes the rest `>`. Stricter than nats-server, which
        // compares the template's text as a subject and so misses `x.$1` on a
        // station capturing `x.a`.
        let mut as_filter: Vec<&str> = Vec::new();
        for t in r.destination.split('.') {
            let function = t.len() > 4 && t.starts_with("{{") && t.ends_with("}}");
            let lower = t.to_ascii_lowercase();
            if function && (lower.contains("split") || lower.contains("slice")) {
                as_filter.push(">");
                break;
            }
            let wildcard =
                function || (t.len() > 1 && t.starts_with('$') && t[1..].parse::<i64>().is_ok());
            as_filter.push(if wildcard { "*" } else { t });
        }
        let as_filter = as_filter.join(".");
        for s in subjects {
            if filters_overlap(as_filter.as_bytes(), s.as_bytes()) {
                return Err(invalid(
                    "stream configuration for republish destination forms a cycle".into(),
                ));
            }
        }
        let compiled =
            CompiledTransform::new(source_text, &r.destination).map_err(|_| not_valid())?;
        Ok(Transform { compiled })
    }

    /// The destination of a message stored on `subject`; `None` when the
    /// source does not match it.
    pub(crate) fn destination(&self, subject: &Subject) -> Option<String> {
        self.compiled
            .apply_subject(subject)
            .map(|s| s.to_str_lossy().into_owned())
    }
}

/// A station's republish policy with its destination compiled (once per
/// definition; [`wrap`] uses it on every stored publish).
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) republish: Republish,
    transform: Transform,
}

impl Policy {
    /// An error when the destination does not compile (checked when the
    /// station was defined; an older definition may not).
    pub(crate) fn compile(r: &Republish) -> Result<Policy, EngineError> {
        Ok(Policy {
            transform: Transform::new(r, &[])?,
            republish: r.clone(),
        })
    }
}

/// Checks a station's republish (and fills in its source), as nats-server
/// does when a stream is defined.
pub(crate) fn check(config: &mut StationConfig) -> Result<(), EngineError> {
    let subjects = config.subjects_or_name();
    if let Some(r) = &mut config.republish {
        if r.source.is_empty() {
            r.source = ">".into();
        }
        Transform::new(r, &subjects)?;
    }
    Ok(())
}

/// Wraps a station's stored callback so that a message it stores is
/// republished (see the module docs) by `publish` before the publisher is
/// answered.
pub(crate) fn wrap(
    station: &str,
    policy: &Policy,
    message: &Message,
    last_seq: u64,
    publish: impl FnOnce(Message) + Send + 'static,
    then: StoredCallback,
) -> StoredCallback {
    let r = &policy.republish;
    let Some(destination) = policy
        .transform
        .destination(&message.subject)
        .and_then(|d| Subject::new(d).ok())
    else {
        return then;
    };
    let station = station.to_string();
    let headers_only = r.headers_only;
    let original = message.clone();
    let time = SystemTime::now();
    Box::new(move |result| {
        if let Ok(ack) = &result
            && !ack.duplicate
        {
            let mut headers: Headers = original.headers.clone().unwrap_or_default();
            headers.insert("Nats-Stream", station);
            headers.insert("Nats-Subject", original.subject.to_str_lossy().into_owned());
            headers.insert("Nats-Sequence", ack.seq.to_string());
            headers.insert(
                "Nats-Time-Stamp",
                humantime::format_rfc3339_nanos(time).to_string(),
            );
            headers.insert("Nats-Last-Sequence", last_seq.to_string());
            let payload = if headers_only {
                headers.insert("Nats-Msg-Size", original.payload.len().to_string());
                bytes::Bytes::new()
            } else {
                original.payload.clone()
            };
            publish(Message {
                subject: destination,
                reply: None,
                headers: Some(headers),
                payload,
            });
        }
        then(result);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(source: &str, destination: &str) -> Republish {
        Republish {
            source: source.into(),
            destination: destination.into(),
            headers_only: false,
        }
    }

    fn dest(t: &Transform, s: &str) -> Option<String> {
        t.destination(&Subject::new(s.to_string()).unwrap())
    }

    #[test]
    fn destinations_take_the_source_wildcards() {
        let subjects = vec!["orders.>".to_string()];
        let t = Transform::new(&r("orders.*.*", "copy.$1.$2"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.new").as_deref(), Some("copy.eu.new"));
        let t = Transform::new(&r("orders.*.*", "copy.{{split(2,-)}}"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.a-b").as_deref(), Some("copy.a.b"));
        let t = Transform::new(&r("orders.*.*", "copy.{{wildcard(2)}}.$1"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.new").as_deref(), Some("copy.new.eu"));
        let t = Transform::new(&r(">", "copy.>"), &subjects).unwrap();
        assert_eq!(
            dest(&t, "orders.eu.new").as_deref(),
            Some("copy.orders.eu.new")
        );
        let t = Transform::new(&r("orders.eu.*", "all"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.new").as_deref(), Some("all"));
        assert_eq!(dest(&t, "orders.us.new"), None);
    }

    #[test]
    fn bad_templates_and_cycles_are_refused() {
        let subjects = vec!["orders.>".to_string()];
        for (s, d) in [
            // nats-server 2.10 refuses `*` in a destination, and a `>` on one
            // side only.
            ("orders.*", "copy.*"),
            ("orders.*", "copy.>"),
            ("orders.eu.>", "all"),
            ("orders.>", "copy.>.x"),
            ("orders.*", "copy.$2"),
            ("orders.*", "copy.{{nope(1)}}"),
            ("orders.*", "copy.{{partition(0,1)}}"),
            ("orders.*", ""),
            ("orders..x", "copy"),
        ] {
            assert!(Transform::new(&r(s, d), &subjects).is_err(), "{s} -> {d}");
        }
        let e = Transform::new(&r(">", "orders.copy.>"), &subjects).unwrap_err();
        assert!(e.to_string().contains("cycle") || format!("{e:?}").contains("cycle"));
    }
}
