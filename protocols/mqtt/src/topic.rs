//! MQTT topic ↔ NATS subject mapping, as nats-server does it.
//!
//! | MQTT            | subject            | why                                        |
//! |-----------------|--------------------|--------------------------------------------|
//! | `a/b/c`         | `a.b.c`            | `/` separates levels, `.` separates tokens |
//! | `a.b/c`         | `a//b.c`           | a literal `.` inside a level becomes `//`  |
//! | `/a` , `a//b`   | `/.a` , `a./.b`    | an empty level becomes the token `/`       |
//! | `+`             | `*`                | one level                                  |
//! | `a/#`           | `a.>` **and** `a`  | `#` also matches the parent level          |
//!
//! A topic level holding whitespace, `*` or `>` cannot be expressed as a NATS
//! subject and is refused as an invalid topic name or filter.

use bytes::Bytes;
use junction_api::{Subject, SubjectFilter};

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty topic or filter.
    #[error("empty topic")]
    Empty,
    /// A wildcard in a topic name (PUBLISH).
    #[error("wildcard in topic name")]
    WildcardInName,
    /// `#` not last, or a wildcard sharing a level with other characters.
    #[error("malformed wildcard in topic filter")]
    BadWildcard,
    /// A level that has no NATS equivalent (whitespace, `*`, `>`, NUL).
    #[error("topic level cannot be mapped to a subject: {0:?}")]
    Unmappable(String),
    /// `$share/<group>/<filter>` with an empty or wildcard group, or no filter.
    #[error("malformed shared subscription")]
    BadShare,
}

fn push_level(out: &mut String, level: &str) -> Result<(), TopicError> {
    if level.is_empty() {
        out.push('/');
        return Ok(());
    }
    if level.chars().any(|c| c.is_whitespace() || c == '\0') || level == "*" || level == ">" {
        return Err(TopicError::Unmappable(level.to_owned()));
    }
    // `*` or `>` inside a longer level (`a*b`) is an ordinary character, as in NATS.
    for c in level.chars() {
        if c == '.' {
            out.push_str("//");
        } else {
            out.push(c);
        }
    }
    Ok(())
}

/// Maps a PUBLISH topic name to a subject.
pub fn topic_to_subject(topic: &str) -> Result<Subject, TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut out = String::with_capacity(topic.len() + 4);
    for (i, level) in topic.split('/').enumerate() {
        if level.contains('+') || level.contains('#') {
            return Err(TopicError::WildcardInName);
        }
        if i > 0 {
            out.push('.');
        }
        push_level(&mut out, level)?;
    }
    Subject::new(Bytes::from(out)).map_err(|e| TopicError::Unmappable(e.to_string()))
}

/// Maps a subject back to the MQTT topic a subscriber sees.
pub fn subject_to_topic(subject: &[u8]) -> String {
    let text = String::from_utf8_lossy(subject);
    let mut out = String::with_capacity(text.len());
    for (i, token) in text.split('.').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if token == "/" {
            continue;
        }
        out.push_str(&token.replace("//", "."));
    }
    out
}

/// A subscription filter after mapping: the engine filters to subscribe to (two for
/// `a/#`: `a.>` and `a`), and the share group if it was `$share/<group>/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFilter {
    /// The filter without the `$share/<group>/` prefix.
    pub topic_filter: String,
    /// Engine filters: one, or two when the filter ends in `#` after a level.
    pub subjects: Vec<SubjectFilter>,
    /// `$share` group name.
    pub share: Option<String>,
    /// True when the first level is a wildcard, so `$`-topics must not match.
    pub wild_first: bool,
}

/// Maps a SUBSCRIBE topic filter (possibly `$share/<group>/<filter>`).
pub fn map_filter(raw: &str) -> Result<MappedFilter, TopicError> {
    let (share, filter) = match raw.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
            if group.is_empty()
                || group.contains('+')
                || group.contains('#')
                || filter.is_empty()
                || group.chars().any(char::is_whitespace)
            {
                return Err(TopicError::BadShare);
            }
            (Some(group.to_owned()), filter)
        }
        None => (None, raw),
    };
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let levels: Vec<&str> = filter.split('/').collect();
    let mut out = String::with_capacity(filter.len() + 4);
    let mut parent: Option<String> = None;
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match *level {
            "#" => {
                if i + 1 != levels.len() {
                    return Err(TopicError::BadWildcard);
                }
                if i > 0 {
                    parent = Some(out[..out.len() - 1].to_owned());
                }
                out.push('>');
            }
            "+" => out.push('*'),
            l if l.contains('#') || l.contains('+') => return Err(TopicError::BadWildcard),
            l => push_level(&mut out, l)?,
        }
    }
    let mut subjects = vec![
        SubjectFilter::new(Bytes::from(out)).map_err(|e| TopicError::Unmappable(e.to_string()))?,
    ];
    if let Some(p) = parent {
        subjects.push(
            SubjectFilter::new(Bytes::from(p))
                .map_err(|e| TopicError::Unmappable(e.to_string()))?,
        );
    }
    Ok(MappedFilter {
        topic_filter: filter.to_owned(),
        subjects,
        share,
        wild_first: levels[0] == "+" || levels[0] == "#",
    })
}

/// Does an MQTT topic filter match a topic name? (Used for retained messages and
/// ACLs; `$`-topics are not matched by a leading wildcard.)
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Is every topic that `inner` matches also matched by `outer`? (ACL subscribe
/// checks: a filter wholly inside a denied filter is refused at SUBSCRIBE.)
pub fn filter_within(inner: &str, outer: &str) -> bool {
    let mut i = inner.split('/');
    let mut o = outer.split('/');
    loop {
        match (i.next(), o.next()) {
            (_, Some("#")) => return true,
            (Some("#"), _) => return false,
            (Some(_), Some("+")) => {}
            (Some(a), Some(b)) if a == b && a != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Do two filters share at least one topic?
pub fn filters_overlap(a: &str, b: &str) -> bool {
    let mut x = a.split('/');
    let mut y = b.split('/');
    loop {
        match (x.next(), y.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(p), Some(q)) if p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subj(t: &str) -> String {
        topic_to_subject(t).unwrap().to_string()
    }

    fn filt(t: &str) -> Vec<String> {
        map_filter(t)
            .unwrap()
            .subjects
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn topics_map_like_nats_server() {
        assert_eq!(subj("sensors/room1/temp"), "sensors.room1.temp");
        assert_eq!(subj("a.b/c"), "a//b.c");
        assert_eq!(subj("/a"), "/.a");
        assert_eq!(subj("a//b"), "a./.b");
        assert_eq!(subj("a/"), "a./");
        assert_eq!(subj("$SYS/broker"), "$SYS.broker");
        assert_eq!(topic_to_subject("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(topic_to_subject("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(topic_to_subject(""), Err(TopicError::Empty));
        assert!(matches!(
            topic_to_subject("a b"),
            Err(TopicError::Unmappable(_))
        ));
        assert!(matches!(
            topic_to_subject("a/*/b"),
            Err(TopicError::Unmappable(_))
        ));
    }

    #[test]
    fn subjects_map_back() {
        for t in ["sensors/room1/temp", "a.b/c", "/a", "a//b", "a/", "x"] {
            let s = topic_to_subject(t).unwrap();
            assert_eq!(subject_to_topic(s.as_bytes()), t, "{t}");
        }
    }

    #[test]
    fn filters_map_with_parent_level() {
        assert_eq!(filt("sensors/+/temp"), ["sensors.*.temp"]);
        assert_eq!(filt("a/#"), ["a.>", "a"]);
        assert_eq!(filt("#"), [">"]);
        assert_eq!(filt("+/#"), ["*.>", "*"]);
        assert_eq!(filt("a.b/+"), ["a//b.*"]);
        assert_eq!(map_filter("a/#/b"), Err(TopicError::BadWildcard));
        assert_eq!(map_filter("a/b#"), Err(TopicError::BadWildcard));
        assert_eq!(map_filter("a+/b"), Err(TopicError::BadWildcard));
        let s = map_filter("$share/g1/a/+").unwrap();
        assert_eq!(s.share.as_deref(), Some("g1"));
        assert_eq!(s.topic_filter, "a/+");
        assert_eq!(map_filter("$share/g1"), Err(TopicError::BadShare));
        assert_eq!(map_filter("$share//a"), Err(TopicError::BadShare));
        assert!(map_filter("#").unwrap().wild_first);
        assert!(!map_filter("a/#").unwrap().wild_first);
    }

    #[test]
    fn filter_matching() {
        assert!(filter_matches("a/#", "a"));
        assert!(filter_matches("a/#", "a/b/c"));
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(!filter_matches("a/+", "a/b/c"));
        assert!(!filter_matches("#", "$SYS/x"));
        assert!(!filter_matches("+/x", "$SYS/x"));
        assert!(filter_matches("$SYS/#", "$SYS/x"));
        assert!(filter_within("secret/a", "secret/#"));
        assert!(filter_within("secret/+", "secret/#"));
        assert!(!filter_within("#", "secret/#"));
        assert!(!filter_within("secret/+", "secret/a"));
        assert!(filters_overlap("#", "secret/#"));
        assert!(filters_overlap("+/a", "secret/#"));
        assert!(!filters_overlap("public/a", "secret/#"));
    }
}
