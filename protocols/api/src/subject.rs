//! Subjects, subject filters and queue group names, with NATS token rules.
//!
//! A subject is a sequence of non-empty tokens joined by `.`. A filter may use `*`
//! (exactly one token) and `>` (one or more tokens, last position only). A wildcard
//! character inside a longer token (`foo*`) is an ordinary character, as in NATS.

use bytes::Bytes;
use std::fmt;

/// Why a subject, filter or queue name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn check_tokens(raw: &[u8], allow_wildcards: bool) -> Result<(), SubjectError> {
    if raw.is_empty() {
        return Err(SubjectError::Empty);
    }
    if raw.iter().any(|&b| is_ws(b)) {
        return Err(SubjectError::Whitespace);
    }
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
        if raw.iter().any(|&b| is_ws(b)) {
            return Err(SubjectError::Whitespace);
        }
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
