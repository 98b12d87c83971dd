//! MQTT topic ↔ NATS subject mapping: nats-server's rules, plus an escape for the
//! characters nats-server refuses, so every valid MQTT topic has a subject.
//!
//! | MQTT            | subject            | why                                        |
//! |-----------------|--------------------|--------------------------------------------|
//! | `a/b/c`         | `a.b.c`            | `/` separates levels, `.` separates tokens |
//! | `a.b/c`         | `a//b.c`           | a literal `.` inside a level becomes `//`  |
//! | `/a` , `a//b`   | `/.a` , `a./.b`    | an empty level becomes the token `/`       |
//! | `+`             | `*`                | one level                                  |
//! | `a/#`           | `a.>` **and** `a`  | `#` also matches the parent level          |
//! | `living room`   | `living/20room`    | a space or control character is `/` + hex  |
//! | `a/*/b`, `>`    | `a./2A.b`, `/3E`   | a level that is exactly `*` or `>`         |
//!
//! A `/` never occurs inside an MQTT level, so in a subject it always starts an
//! escape: `//` is a `.`, a token that is just `/` is an empty level, and `/XX`
//! (two upper-case hex digits) is the byte `0xXX` for U+0001–U+0020 and U+007F, the
//! characters a NATS subject cannot carry. The mapping is lossless both ways for
//! every topic MQTT allows; only U+0000 (which MQTT forbids) is refused.
//!
//! A subject that came from NATS or HTTP may hold what an MQTT topic cannot (invalid
//! UTF-8, U+0000, `+` or `#`): [`subject_to_topic`] refuses it, and such a message is
//! not delivered to MQTT subscribers.

use bytes::Bytes;
use junction_api::{Subject, SubjectFilter};

/// Why a topic name or filter was refused, or a subject has no MQTT topic.
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
    /// A level that has no subject form (U+0000, which MQTT forbids).
    #[error("topic level cannot be mapped to a subject: {0:?}")]
    Unmappable(String),
    /// `$share/<group>/<filter>` with an empty or wildcard group, or no filter.
    #[error("malformed shared subscription")]
    BadShare,
    /// A subject with no valid MQTT topic (invalid UTF-8, U+0000, `+` or `#`).
    #[error("subject has no MQTT topic form: {0:?}")]
    NoTopicForm(String),
}

/// Bytes a subject cannot carry inside a token, written as `/XX`.
fn needs_escape(b: u8) -> bool {
    (0x01..=0x20).contains(&b) || b == 0x7F
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, b: u8) {
    out.push('/');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0F)]));
}

fn push_level(out: &mut String, level: &str) -> Result<(), TopicError> {
    match level {
        "" => out.push('/'),
        "*" => push_escape(out, b'*'),
        ">" => push_escape(out, b'>'),
        _ => {
            if level.contains('\0') {
                return Err(TopicError::Unmappable(level.to_owned()));
            }
            // `*` or `>` inside a longer level (`a*b`) is an ordinary character, as in
            // NATS.
            for c in level.chars() {
                match c {
                    '.' => out.push_str("//"),
                    c if c.is_ascii() && needs_escape(c as u8) => push_escape(out, c as u8),
                    c => out.push(c),
                }
            }
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

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Maps a subject back to the MQTT topic a subscriber sees; `Err` when the subject
/// has no valid MQTT topic (the message is then not delivered over MQTT).
pub fn subject_to_topic(subject: &[u8]) -> Result<String, TopicError> {
    let mut out: Vec<u8> = Vec::with_capacity(subject.len());
    for (i, token) in subject.split(|&b| b == b'.').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        match token {
            b"/" => continue,
            b"/2A" => {
                out.push(b'*');
                continue;
            }
            b"/3E" => {
                out.push(b'>');
                continue;
            }
            _ => {}
        }
        let mut j = 0;
        while j < token.len() {
            let b = token[j];
            if b == b'/' {
                if token.get(j + 1) == Some(&b'/') {
                    out.push(b'.');
                    j += 2;
                    continue;
                }
                if let (Some(hi), Some(lo)) = (
                    token.get(j + 1).copied().and_then(hex_value),
                    token.get(j + 2).copied().and_then(hex_value),
                ) {
                    let v = (hi << 4) | lo;
                    if v == 0 || needs_escape(v) {
                        out.push(v);
                        j += 3;
                        continue;
                    }
                }
            }
            out.push(b);
            j += 1;
        }
    }
    let lossy = || String::from_utf8_lossy(subject).into_owned();
    if out.iter().any(|&b| b == 0 || b == b'+' || b == b'#') {
        return Err(TopicError::NoTopicForm(lossy()));
    }
    String::from_utf8(out).map_err(|_| TopicError::NoTopicForm(lossy()))
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
                || group.chars().any(|c| c.is_whitespace() || c == '\0')
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
            topic_to_subject("a\0b"),
            Err(TopicError::Unmappable(_))
        ));
    }

    #[test]
    fn characters_a_subject_cannot_carry_are_escaped() {
        assert_eq!(subj("home/living room/temp"), "home.living/20room.temp");
        assert_eq!(subj("a/*/b"), "a./2A.b");
        assert_eq!(subj(">"), "/3E");
        assert_eq!(subj("a*b/c>"), "a*b.c>");
        assert_eq!(subj("tab\there"), "tab/09here");
        assert_eq!(subj("x\u{7f}"), "x/7F");
        assert_eq!(subj(". /"), "///20./");
        assert_eq!(subj("caf\u{e9} au lait"), "caf\u{e9}/20au/20lait");
        assert_eq!(
            filt("home/living room/#"),
            ["home.living/20room.>", "home.living/20room"]
        );
        assert_eq!(filt("a/*/+"), ["a./2A.*"]);
    }

    #[test]
    fn subjects_map_back() {
        for t in [
            "sensors/room1/temp",
            "a.b/c",
            "/a",
            "a//b",
            "a/",
            "x",
            "home/living room/temp",
            "a/*/b",
            ">",
            "*",
            ". /",
            " .",
            ".20",
            "a\tb\r\n/\u{1}\u{7f}",
            "caf\u{e9} au lait",
        ] {
            let s = topic_to_subject(t).unwrap();
            assert_eq!(subject_to_topic(s.as_bytes()).as_deref(), Ok(t), "{t}");
        }
        // Subjects from NATS: a `/` that starts no escape stays; lower-case hex, an
        // escape of a character subjects can carry, or a longer token is no escape.
        assert_eq!(subject_to_topic(b"a/b.c").as_deref(), Ok("a/b/c"));
        assert_eq!(subject_to_topic(b"x/20y").as_deref(), Ok("x y"));
        assert_eq!(subject_to_topic(b"x/2f").as_deref(), Ok("x/2f"));
        assert_eq!(subject_to_topic(b"x/41").as_deref(), Ok("x/41"));
        assert_eq!(subject_to_topic(b"a./2Ab").as_deref(), Ok("a//2Ab"));
    }

    #[test]
    fn subjects_without_a_topic_form_are_refused() {
        for s in [&b"a.\0.b"[..], b"a./00", b"a.\xff\xfe", b"a.b+c", b"a.#"] {
            assert!(
                matches!(subject_to_topic(s), Err(TopicError::NoTopicForm(_))),
                "{s:?}"
            );
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
