//! Subjects, subject filters and queue group names, with NATS token rules.
//!
//! A subject is a sequence of non-empty tokens joined by `.`. A filter may use `*`
//! (exactly one token) and `>` (one or more tokens, last position only). A wildcard
//! character inside a longer token (`foo*`) is an ordinary character, as in NATS.

use bytes::Bytes;
use std::fmt;

/// Why a subject, filter or queue name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is empty.
    #[error("empty subject")]
    Empty,
    /// A token between dots is empty (`a..b`, `.a`, `a.`).
    #[error("empty token in subject")]
    EmptyToken,
    /// The subject contains a space, tab, CR or LF.
    #[error("whitespace in subject")]
    Whitespace,
    /// A publish subject contains a wildcard token.
    #[error("wildcard in publish subject")]
    Wildcard,
    /// `>` appears somewhere other than the last token.
    #[error("'>' must be the last token")]
    FullWildcardNotLast,
    /// The subject contains a control character (NUL, DEL, …).
    #[error("control character in subject")]
    ControlCharacter,
    /// The subject is not valid UTF-8.
    #[error("subject is not valid UTF-8")]
    NotUtf8,
    /// The subject is longer than [`MAX_SUBJECT_LEN`] bytes.
    #[error("subject is longer than {MAX_SUBJECT_LEN} bytes")]
    TooLong,
}

/// Longest subject or filter accepted, in bytes (nats-server's default control-line
/// limit bounds a NATS subject to about this).
pub const MAX_SUBJECT_LEN: usize = 4096;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The checks every subject gets at ingress, whatever the protocol (NATS core skips
/// the token rules unless the client is pedantic, but never these): a length limit,
/// no whitespace, no control characters, valid UTF-8. Other protocols (MQTT topics,
/// HTTP paths) cannot carry such subjects, so one that got in could not be delivered
/// to them faithfully.
pub fn check_subject_bytes(raw: &[u8]) -> Result<(), SubjectError> {
    if raw.is_empty() {
        return Err(SubjectError::Empty);
    }
    if raw.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::TooLong);
    }
    for &b in raw {
        if is_ws(b) {
            return Err(SubjectError::Whitespace);
        }
        if b < 0x20 || b == 0x7f {
            return Err(SubjectError::ControlCharacter);
        }
    }
    if !raw.is_ascii() && std::str::from_utf8(raw).is_err() {
        return Err(SubjectError::NotUtf8);
    }
    Ok(())
}

/// Subject spaces that belong to the broker: the JetStream API and acks, MQTT's
/// session state, dead letters, system events, Raft traffic, and reply inboxes.
/// No station may capture them (except the broker's own), and routing rules never
/// see them.
pub const RESERVED_FILTERS: &[&str] = &[
    "$JS.API.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    "$JSC.>",
    "$NRG.>",
    "$SYS.REQ.>",
    "$MQTT.>",
    "$MQTT.sess.>",
    "$MQTT.msgs.>",
    "$MQTT.rmsgs.>",
    "$dls.>",
    "$sys.>",
    "_INBOX.>",
];

/// Is `subject` in a space no station ever captures: JetStream API requests,
/// acks and flow control, and reply inboxes? Client stations may not overlap
/// them ([`RESERVED_FILTERS`]) and the broker's own stations capture `$MQTT.…`
/// and `$dls.…`, so the capture lookup can skip them.
pub fn is_never_stored(subject: &[u8]) -> bool {
    is_per_message_subject(subject)
        || subject.starts_with(b"$JS.API.")
        || subject.starts_with(b"_INBOX.")
}

/// Is `subject` new with every message: a JetStream ack or flow-control reply
/// (they carry the message's sequence numbers)? A per-subject cache of them
/// would only push out the subjects that repeat.
pub fn is_per_message_subject(subject: &[u8]) -> bool {
    subject.starts_with(b"$JS.ACK.") || subject.starts_with(b"$JS.FC.")
}

/// Subject spaces that only the broker itself may publish into: MQTT's session
/// state (the MQTT front-end writes it), dead letters, system events and Raft
/// traffic.
pub const INTERNAL_PUBLISH_FILTERS: &[&str] = &["$MQTT.>", "$dls.>", "$sys.>", "$NRG.>"];

/// Is `subject` in a space routing rules never touch: every subject whose first
/// token starts with `$` (system, API and protocol-internal subjects) and reply
/// inboxes (`_INBOX.…`)?
pub fn is_system_subject(subject: &[u8]) -> bool {
    subject.first() == Some(&b'$') || subject == b"_INBOX" || subject.starts_with(b"_INBOX.")
}

/// Do two filters (or subjects) match at least one subject in common?
pub fn filters_overlap(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.split(|&c| c == b'.');
    let mut y = b.split(|&c| c == b'.');
    loop {
        match (x.next(), y.next()) {
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(p), Some(q)) if p == b"*" || q == b"*" || p == q => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The first reserved space (of [`RESERVED_FILTERS`]) that `filter` overlaps.
///
/// A filter that starts with `*` only counts against the spaces that are at least
/// three tokens deep (`$JS.API.>`, `$MQTT.msgs.>`, …), as nats-server only refuses
/// overlaps with `$JS.API.>`: `*.new` could only reach `$dls.new` or `_INBOX.new`,
/// which nothing sends, while `*.*.>` would store every API request.
pub fn reserved_overlap(filter: &[u8]) -> Option<&'static str> {
    let leading_star = filter == b"*" || filter.starts_with(b"*.");
    RESERVED_FILTERS.iter().copied().find(|r| {
        (!leading_star || r.split('.').count() >= 3) && filters_overlap(filter, r.as_bytes())
    })
}

/// Is `subject` one only the broker may publish into (see
/// [`INTERNAL_PUBLISH_FILTERS`])?
pub fn is_internal_publish_subject(subject: &[u8]) -> bool {
    subject.first() == Some(&b'$')
        && INTERNAL_PUBLISH_FILTERS
            .iter()
            .any(|f| filters_overlap(subject, f.as_bytes()))
}

fn check_tokens(raw: &[u8], allow_wildcards: bool) -> Result<(), SubjectError> {
    check_subject_bytes(raw)?;
    let mut tokens = raw.split(|&b| b == b'.').peekable();
    while let Some(tok) = tokens.next() {
        match tok {
            [] => return Err(SubjectError::EmptyToken),
            b"*" if !allow_wildcards => return Err(SubjectError::Wildcard),
            b">" if !allow_wildcards => return Err(SubjectError::Wildcard),
            b">" if tokens.peek().is_some() => return Err(SubjectError::FullWildcardNotLast),
            _ => {}
        }
    }
    Ok(())
}

/// A literal subject a message is published to. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(Bytes);

impl Subject {
    /// Checks `raw` as a literal subject: non-empty tokens, no whitespace, no wildcards.
    pub fn new(raw: impl Into<Bytes>) -> Result<Self, SubjectError> {
        let raw = raw.into();
        check_tokens(&raw, false)?;
        Ok(Subject(raw))
    }

    /// Wraps bytes that the caller has already validated, or that a protocol accepts
    /// without validation (NATS core does not check publish subjects unless the client
    /// asked for pedantic mode). The bytes must not contain whitespace.
    pub fn from_trusted(raw: Bytes) -> Self {
        Subject(raw)
    }

    /// The subject's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The subject as shared bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The subject as text (lossy for non-UTF-8 bytes).
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Iterates the tokens.
    pub fn tokens(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'.')
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subject({:?})", self.to_str_lossy())
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

/// A subscription filter: a subject that may use `*` and `>` wildcards.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectFilter(Bytes);

impl SubjectFilter {
    /// Checks `raw` as a filter.
    pub fn new(raw: impl Into<Bytes>) -> Result<Self, SubjectError> {
        let raw = raw.into();
        check_tokens(&raw, true)?;
        Ok(SubjectFilter(raw))
    }

    /// The filter's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The filter as shared bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The filter as text (lossy for non-UTF-8 bytes).
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Iterates the tokens.
    pub fn tokens(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'.')
    }

    /// True when the filter has no wildcard token.
    pub fn is_literal(&self) -> bool {
        self.tokens().all(|t| t != b"*" && t != b">")
    }

    /// Does `subject` match this filter?
    pub fn matches(&self, subject: &Subject) -> bool {
        let mut f = self.tokens();
        let mut s = subject.tokens();
        loop {
            match (f.next(), s.next()) {
                (Some(b">"), Some(_)) => return true,
                (Some(b"*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Debug for SubjectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectFilter({:?})", self.to_str_lossy())
    }
}

impl fmt::Display for SubjectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_str_lossy())
    }
}

/// The name of a queue group (NATS) or shared subscription group (MQTT `$share`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct QueueGroup(Bytes);

impl QueueGroup {
    /// Checks a queue group name: non-empty and without whitespace.
    pub fn new(raw: impl Into<Bytes>) -> Result<Self, SubjectError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(SubjectError::Empty);
        }
        check_subject_bytes(&raw)?;
        Ok(QueueGroup(raw))
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as text (lossy for non-UTF-8 bytes).
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }
}

impl fmt::Debug for QueueGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueGroup({:?})", self.to_str_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_control_characters_bad_utf8_and_long_subjects() {
        assert_eq!(
            Subject::new(&b"a.\0.b"[..]),
            Err(SubjectError::ControlCharacter)
        );
        assert_eq!(
            Subject::new(&b"a.\x7f"[..]),
            Err(SubjectError::ControlCharacter)
        );
        assert_eq!(Subject::new(&b"a.\xff\xfe"[..]), Err(SubjectError::NotUtf8));
        assert!(Subject::new("caf\u{e9}.cr\u{e8}me").is_ok());
        let long = "a".repeat(MAX_SUBJECT_LEN + 1);
        assert_eq!(Subject::new(long), Err(SubjectError::TooLong));
        assert_eq!(
            QueueGroup::new(&b"q\0"[..]),
            Err(SubjectError::ControlCharacter)
        );
        assert_eq!(
            SubjectFilter::new(&b"a.\x01"[..]),
            Err(SubjectError::ControlCharacter)
        );
    }

    #[test]
    fn reserved_spaces() {
        for f in [
            ">",
            "*.>",
            "$JS.>",
            "$JS.API.STREAM.>",
            "_INBOX.*",
            "$MQTT.sess.*",
            "*.API.>",
        ] {
            assert!(reserved_overlap(f.as_bytes()).is_some(), "{f}");
        }
        assert!(reserved_overlap(b"*.*.>").is_some());
        for f in [
            "orders.>",
            "$KV.bucket.>",
            "$JS.EVENT.>",
            "a.*.c",
            "_INBOXES.x",
            "*.new",
            "*.*",
            "*",
        ] {
            assert_eq!(reserved_overlap(f.as_bytes()), None, "{f}");
        }
        assert!(is_system_subject(b"$JS.API.INFO"));
        assert!(is_system_subject(b"_INBOX.abc"));
        assert!(!is_system_subject(b"orders.new"));
        assert!(is_internal_publish_subject(b"$MQTT.sess.abc"));
        assert!(is_internal_publish_subject(b"$dls.orders.x"));
        assert!(!is_internal_publish_subject(b"$JS.API.INFO"));
        assert!(!is_internal_publish_subject(b"$JS.ACK.s.g.1.1.1.0.0"));
        assert!(filters_overlap(b"a.*", b"a.b"));
        assert!(!filters_overlap(b"a.*", b"a.b.c"));
        assert!(filters_overlap(b"a.>", b"*.b.c"));
    }

    #[test]
    fn literal_subjects() {
        assert!(Subject::new("foo.bar").is_ok());
        assert!(Subject::new("foo*.b>r").is_ok());
        assert_eq!(Subject::new(""), Err(SubjectError::Empty));
        assert_eq!(Subject::new("foo..bar"), Err(SubjectError::EmptyToken));
        assert_eq!(Subject::new(".foo"), Err(SubjectError::EmptyToken));
        assert_eq!(Subject::new("foo."), Err(SubjectError::EmptyToken));
        assert_eq!(Subject::new("foo.*"), Err(SubjectError::Wildcard));
        assert_eq!(Subject::new("foo.>"), Err(SubjectError::Wildcard));
        assert_eq!(Subject::new("foo bar"), Err(SubjectError::Whitespace));
    }

    #[test]
    fn filters() {
        assert!(SubjectFilter::new("foo.*.bar").is_ok());
        assert!(SubjectFilter::new(">").is_ok());
        assert!(SubjectFilter::new("foo.>").is_ok());
        assert_eq!(
            SubjectFilter::new("foo.>.bar"),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert_eq!(SubjectFilter::new("foo..>"), Err(SubjectError::EmptyToken));
    }

    #[test]
    fn matching() {
        let s = |x: &str| Subject::new(x.to_string()).unwrap();
        let f = |x: &str| SubjectFilter::new(x.to_string()).unwrap();
        assert!(f("foo.*").matches(&s("foo.bar")));
        assert!(!f("foo.*").matches(&s("foo.bar.baz")));
        assert!(f("foo.>").matches(&s("foo.bar.baz")));
        assert!(!f("foo.>").matches(&s("foo")));
        assert!(f(">").matches(&s("a")));
        assert!(f("a.b").matches(&s("a.b")));
        assert!(!f("a.b").matches(&s("a.c")));
    }
}
