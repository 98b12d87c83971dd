//! Republish: a station's stored messages published again, as core messages,
//! on another subject (JetStream `republish`, nats-server 2.10).
//!
//! - **Which.** A message whose subject matches the policy's `source` filter,
//!   once the station has stored it (a refused or duplicate publish is not
//!   republished). On a replicated station, once, from the node the publish
//!   came in on.
//! - **Where.** `destination`, whose `*` tokens take the source's `*` tokens in
//!   order, `{{wildcard(n)}}` and `$n` the n-th one, and a trailing `>` what
//!   the source's `>` matched (nats-server's transform forms for republish;
//!   its other functions, `{{partition(…)}}` and the like, are refused).
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

/// One token of a destination template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The n-th (0-based) single-token wildcard of the source.
    Wildcard(usize),
    /// What the source's `>` matched.
    Rest,
}

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
        let source_tokens: Vec<&str> = source_text.split('.').collect();
        let stars = source_tokens.iter().filter(|t| **t == "*").count();
        let has_rest = source_tokens.last() == Some(&">");
        if r.destination.is_empty() {
            return Err(not_valid());
        }
        let dest_tokens: Vec<&str> = r.destination.split('.').collect();
        let mut parts = Vec::with_capacity(dest_tokens.len());
        let mut next_star = 0usize;
        for (i, t) in dest_tokens.iter().enumerate() {
            let part = if *t == ">" {
                if i + 1 != dest_tokens.len() || !has_rest {
                    return Err(not_valid());
                }
                Part::Rest
            } else if *t == "*" {
                next_star += 1;
                Part::Wildcard(next_star - 1)
            } else if let Some(n) = wildcard_ref(t) {
                Part::Wildcard(n.checked_sub(1).ok_or_else(not_valid)?)
            } else if t.is_empty() || t.contains(['*', '>', ' ', '\t']) || t.starts_with("{{") {
                // Other transform functions (`{{partition(…)}}`, `{{split(…)}}`,
                // …) are the stream subject transforms' and not taken here.
                return Err(not_valid());
            } else {
                Part::Literal((*t).to_string())
            };
            if let Part::Wildcard(n) = part
                && n >= stars
            {
                return Err(not_valid());
            }
            parts.push(part);
        }
        // Destination as a filter (wildcards for the taken tokens), for the
        // cycle check.
        let as_filter: String = parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Wildcard(_) => "*",
                Part::Rest => ">",
            })
            .collect::<Vec<_>>()
            .join(".");
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

/// `{{wildcard(n)}}` (spaces allowed) or `$n`: n.
fn wildcard_ref(token: &str) -> Option<usize> {
    if let Some(n) = token.strip_prefix('$') {
        return n.parse().ok();
    }
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let args = inner
        .strip_prefix("wildcard")
        .or_else(|| inner.strip_prefix("Wildcard"))?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    args.trim().parse().ok()
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
    r: &Republish,
    message: &Message,
    last_seq: u64,
    publish: impl FnOnce(Message) + Send + 'static,
    then: StoredCallback,
) -> StoredCallback {
    // Checked against the station's subjects when it was defined.
    let Ok(transform) = Transform::new(r, &[]) else {
        return then;
    };
    let Some(destination) = transform
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
        let t = Transform::new(&r("orders.*.*", "copy.*.*"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.new").as_deref(), Some("copy.eu.new"));
        let t = Transform::new(&r("orders.*.*", "copy.{{wildcard(2)}}.$1"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.new").as_deref(), Some("copy.new.eu"));
        let t = Transform::new(&r(">", "copy.>"), &subjects).unwrap();
        assert_eq!(
            dest(&t, "orders.eu.new").as_deref(),
            Some("copy.orders.eu.new")
        );
        let t = Transform::new(&r("orders.eu.>", "all"), &subjects).unwrap();
        assert_eq!(dest(&t, "orders.eu.new").as_deref(), Some("all"));
        assert_eq!(dest(&t, "orders.us.new"), None);
    }

    #[test]
    fn bad_templates_and_cycles_are_refused() {
        let subjects = vec!["orders.>".to_string()];
        for (s, d) in [
            ("orders.*", "copy.*.*"),
            ("orders.*", "copy.>"),
            ("orders.>", "copy.>.x"),
            ("orders.*", "copy.$0"),
            ("orders.*", ""),
            ("orders.*", "copy.{{partition(3,1)}}"),
            ("orders..x", "copy"),
        ] {
            assert!(Transform::new(&r(s, d), &subjects).is_err(), "{s} -> {d}");
        }
        let e = Transform::new(&r(">", "orders.copy.>"), &subjects).unwrap_err();
        assert!(e.to_string().contains("cycle") || format!("{e:?}").contains("cycle"));
    }
}
