//! Subject transforms, as nats-server 2.10 compiles and applies them: a source
//! filter whose wildcards a destination template refers to by position, as `$1`,
//! `{{wildcard(1)}}`, `{{partition(n,1,2)}}`, `{{splitFromLeft(1,n)}}`,
//! `{{splitFromRight(1,n)}}`, `{{sliceFromLeft(1,n)}}`, `{{sliceFromRight(1,n)}}`
//! or `{{split(1,-)}}`. Pure code: no I/O.
//!
//! What a destination does, and the text of every refusal, is nats-server
//! 2.10.26's (`server/subject_transform.go`), checked side by side with it in
//! `conformance/tests/jetstream/subject_transforms_answer_as_nats_server_2_10.rs`:
//! a placeholder is a whole token (`pre{{wildcard(1)}}` and `a$1` are literal
//! text), a destination has a `>` exactly when its source has one, and has no
//! `*`. Two deliberate differences: a partition count below 1 is refused (nats-server
//! 2.10 accepts `{{partition(0,1)}}` and then panics on the first publish), and a
//! result that is not a valid subject (`{{split(1,-)}}` of `--` is empty) leaves
//! the subject as it was (nats-server stores the invalid subject).

use crate::{Subject, SubjectFilter};

/// Why a destination token is refused: nats-server's
/// `ErrorMappingDestinationFunction*` texts.
const OUT_OF_RANGE: &str = "wildcard index out of range";
const UNKNOWN_FUNCTION: &str = "unknown function";
const NOT_ENOUGH_ARGUMENTS: &str = "not enough arguments passed to the function";
const TOO_MANY_ARGUMENTS: &str = "too many arguments passed to the function";
const INVALID_ARGUMENT: &str = "function argument is invalid or in the wrong format";

/// A transform that cannot be compiled, with nats-server's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The source or the destination is not a valid subject, a destination has a
    /// `*`, or only one of them ends with `>` (nats-server's `ErrBadSubject`).
    #[error("invalid subject")]
    BadSubject,
    /// A destination token nats-server refuses.
    #[error("invalid mapping destination: {reason} in {token}")]
    Destination {
        /// nats-server's reason.
        reason: &'static str,
        /// The token (with `: [n]` for an index beyond the source's wildcards).
        token: String,
    },
}

/// One destination token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    /// A trailing `>`: the rest of the subject.
    Rest,
    /// The subject token at this position.
    Wildcard(usize),
    Partition(u32, Vec<usize>),
    SplitFromLeft(usize, i64),
    SplitFromRight(usize, i64),
    SliceFromLeft(usize, i64),
    SliceFromRight(usize, i64),
    Split(usize, Vec<u8>),
}

/// What a destination token is before its wildcard references are resolved.
enum Parsed {
    Literal,
    Wildcard(i64),
    Partition(i64, Vec<i64>),
    SplitFromLeft(i64, i64),
    SplitFromRight(i64, i64),
    SliceFromLeft(i64, i64),
    SliceFromRight(i64, i64),
    Split(i64, String),
}

#[derive(Debug, Clone)]
enum Shape {
    /// The subject as it is (no destination, or `>` to `>`).
    Identity,
    /// A source without wildcards: always this destination.
    Constant(String),
    Tokens(Vec<Token>),
}

/// A compiled transform.
#[derive(Debug, Clone)]
pub struct CompiledTransform {
    source: SubjectFilter,
    source_len: usize,
    shape: Shape,
}

impl CompiledTransform {
    /// Compiles `source` → `destination`. An empty source means `>`; an empty
    /// destination keeps the subject.
    pub fn new(source: &str, destination: &str) -> Result<Self, TransformError> {
        let src = if source.is_empty() { ">" } else { source };
        let filter = SubjectFilter::new(src.to_string()).map_err(|_| TransformError::BadSubject)?;
        let (src_ok, stoks, npwcs, src_fwc) = subject_info(src);
        let source_len = stoks.len();
        let done = |shape| {
            Ok(CompiledTransform {
                source: filter.clone(),
                source_len,
                shape,
            })
        };
        if destination.is_empty() || (src == ">" && destination == ">") {
            return done(Shape::Identity);
        }
        let (dest_ok, dtoks, dest_pwcs, dest_fwc) = subject_info(destination);
        if !src_ok || !dest_ok || dest_pwcs > 0 || src_fwc != dest_fwc {
            return Err(TransformError::BadSubject);
        }
        if npwcs == 0 && !src_fwc {
            // No wildcards: no function may be used, and the destination is
            // a constant.
            for t in &dtoks {
                if !matches!(parse_token(t)?, Parsed::Literal) {
                    return Err(destination_error(OUT_OF_RANGE, t));
                }
            }
            return done(Shape::Constant(destination.to_string()));
        }
        // The subject token index of each `*` of the source, by its 1-based
        // number. An index below 1 reads the first token, as nats-server's map
        // lookup does.
        let stars: Vec<usize> = stoks
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == "*")
            .map(|(i, _)| i)
            .collect();
        let resolve = |token: &str, index: i64| -> Result<usize, TransformError> {
            if npwcs == 0 {
                return Err(destination_error(OUT_OF_RANGE, token));
            }
            match usize::try_from(index) {
                Ok(i) if i > npwcs => Err(destination_error(
                    OUT_OF_RANGE,
                    &format!("{token}: [{index}]"),
                )),
                Ok(i) if i >= 1 => Ok(stars[i - 1]),
                _ => Ok(0),
            }
        };
        let mut tokens = Vec::with_capacity(dtoks.len());
        for t in &dtoks {
            let parsed = parse_token(t)?;
            if npwcs == 0 && !matches!(parsed, Parsed::Literal) {
                return Err(destination_error(OUT_OF_RANGE, t));
            }
            let int = |n: i64| i64::from(i32::try_from(n).unwrap_or(i32::MAX));
            tokens.push(match parsed {
                Parsed::Literal if *t == ">" => Token::Rest,
                Parsed::Literal => Token::Literal(t.as_bytes().to_vec()),
                Parsed::Wildcard(i) => Token::Wildcard(resolve(t, i)?),
                Parsed::Partition(n, refs) => {
                    let mut at = Vec::with_capacity(refs.len());
                    for r in refs {
                        at.push(resolve(t, r)?);
                    }
                    // nats-server 2.10 takes 0 and then divides by it.
                    let n = u32::try_from(n)
                        .ok()
                        .filter(|n| (1..=i32::MAX.unsigned_abs()).contains(n))
                        .ok_or_else(|| destination_error(INVALID_ARGUMENT, t))?;
                    Token::Partition(n, at)
                }
                Parsed::SplitFromLeft(i, n) => Token::SplitFromLeft(resolve(t, i)?, int(n)),
                Parsed::SplitFromRight(i, n) => Token::SplitFromRight(resolve(t, i)?, int(n)),
                Parsed::SliceFromLeft(i, n) => Token::SliceFromLeft(resolve(t, i)?, int(n)),
                Parsed::SliceFromRight(i, n) => Token::SliceFromRight(resolve(t, i)?, int(n)),
                Parsed::Split(i, d) => Token::Split(resolve(t, i)?, d.into_bytes()),
            });
        }
        done(Shape::Tokens(tokens))
    }

    /// Does the transform apply to `subject`?
    pub fn matches(&self, subject: &Subject) -> bool {
        self.source.matches(subject)
    }

    /// [`CompiledTransform::apply`] on a subject: `None` when the source does not
    /// match it, or when what it becomes is not a valid subject.
    pub fn apply_subject(&self, subject: &Subject) -> Option<Subject> {
        if !self.matches(subject) {
            return None;
        }
        if matches!(self.shape, Shape::Identity) {
            return Some(subject.clone());
        }
        Subject::new(self.transform(subject.as_bytes())?).ok()
    }

    /// The subject `subject` becomes, or `None` when the source does not match.
    pub fn apply(&self, subject: &str) -> Option<String> {
        let s = Subject::new(subject.to_string()).ok()?;
        if !self.matches(&s) {
            return None;
        }
        String::from_utf8(self.transform(subject.as_bytes())?).ok()
    }

    /// nats-server's `TransformTokenizedSubject` on a subject the source matches.
    fn transform(&self, subject: &[u8]) -> Option<Vec<u8>> {
        let dest = match &self.shape {
            Shape::Identity => return Some(subject.to_vec()),
            Shape::Constant(c) => return Some(c.as_bytes().to_vec()),
            Shape::Tokens(t) => t,
        };
        let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
        let mut out = Vec::with_capacity(subject.len() + 16);
        let last = dest.len() - 1;
        for (i, t) in dest.iter().enumerate() {
            match t {
                Token::Rest => break,
                Token::Literal(l) => out.extend_from_slice(l),
                Token::Wildcard(at) => out.extend_from_slice(tokens.get(*at)?),
                Token::Partition(n, at) => {
                    let mut key = Vec::new();
                    for a in at {
                        key.extend_from_slice(tokens.get(*a)?);
                    }
                    out.extend_from_slice((fnv1a(&key) % n).to_string().as_bytes());
                }
                Token::SplitFromLeft(at, n) => {
                    let s = tokens.get(*at)?;
                    match usize::try_from(*n) {
                        Ok(p) if p > 0 && p < s.len() => {
                            out.extend_from_slice(&s[..p]);
                            out.push(b'.');
                            out.extend_from_slice(&s[p..]);
                        }
                        _ => out.extend_from_slice(s),
                    }
                }
                Token::SplitFromRight(at, n) => {
                    let s = tokens.get(*at)?;
                    match usize::try_from(*n) {
                        Ok(p) if p > 0 && p < s.len() => {
                            out.extend_from_slice(&s[..s.len() - p]);
                            out.push(b'.');
                            out.extend_from_slice(&s[s.len() - p..]);
                        }
                        _ => out.extend_from_slice(s),
                    }
                }
                Token::SliceFromLeft(at, n) => {
                    let s = tokens.get(*at)?;
                    match usize::try_from(*n) {
                        Ok(size) if size > 0 && size < s.len() => {
                            let chunks: Vec<&[u8]> = s.chunks(size).collect();
                            out.extend_from_slice(&chunks.join(&b'.'));
                        }
                        _ => out.extend_from_slice(s),
                    }
                }
                Token::SliceFromRight(at, n) => {
                    let s = tokens.get(*at)?;
                    match usize::try_from(*n) {
                        Ok(size) if size > 0 && size < s.len() => {
                            let chunks: Vec<&[u8]> = s.rchunks(size).rev().collect();
                            out.extend_from_slice(&chunks.join(&b'.'));
                        }
                        _ => out.extend_from_slice(s),
                    }
                }
                Token::Split(at, delimiter) => {
                    let s = tokens.get(*at)?;
                    let parts = split_go(s, delimiter);
                    for (j, part) in parts.iter().enumerate() {
                        out.extend_from_slice(part);
                        let next_empty = parts.get(j + 1).is_none_or(|p| p.is_empty());
                        if j + 1 < parts.len() && !next_empty && !(j == 0 && part.is_empty()) {
                            out.push(b'.');
                        }
                    }
                }
            }
            if i < last {
                out.push(b'.');
            }
        }
        if matches!(dest.last(), Some(Token::Rest)) {
            let from = self.source_len.checked_sub(1)?;
            out.extend_from_slice(&tokens.get(from..)?.join(&b'.'));
        }
        Some(out)
    }
}

/// nats-server's `ValidateMappingDestination`: the checks made on a source's or
/// mirror's transform destination before it is compiled (a sourcing link answers
/// these with its own code, 10146).
pub fn validate_destination(destination: &str) -> Result<(), TransformError> {
    let mut after_rest = false;
    for t in destination.split('.') {
        if t.is_empty() || after_rest {
            return Err(destination_error("invalid mapping destination subject", t));
        }
        if is_mustache(t) {
            if FUNCTIONS.iter().any(|f| function_args(t, f).is_some()) {
                continue;
            }
            return Err(destination_error(UNKNOWN_FUNCTION, t));
        }
        if t == ">" {
            after_rest = true;
        } else if t.contains(['\t', '\n', '\x0c', '\r', ' ']) {
            return Err(TransformError::BadSubject);
        }
    }
    Ok(())
}

fn destination_error(reason: &'static str, token: &str) -> TransformError {
    TransformError::Destination {
        reason,
        token: token.to_string(),
    }
}

/// nats-server's `subjectInfo`: valid, its tokens, how many `*`, ends with `>`.
fn subject_info(subject: &str) -> (bool, Vec<&str>, usize, bool) {
    if subject.is_empty() {
        return (false, Vec::new(), 0, false);
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let (mut stars, mut rest) = (0, false);
    for t in &tokens {
        if t.is_empty() || rest {
            return (false, tokens, 0, false);
        }
        match *t {
            ">" => rest = true,
            "*" => stars += 1,
            _ => {}
        }
    }
    (true, tokens, stars, rest)
}

/// The destination functions, each with the letters whose case may vary in
/// upper case (nats-server's `[sS]plit[fF]rom[lL]eft`), in nats-server's order.
const FUNCTIONS: [&str; 7] = [
    "Wildcard",
    "Partition",
    "SplitFromLeft",
    "SplitFromRight",
    "SliceFromLeft",
    "SliceFromRight",
    "Split",
];

fn is_mustache(t: &str) -> bool {
    t.len() > 4 && t.starts_with("{{") && t.ends_with("}}")
}

/// Go's `\s`.
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

/// The arguments of `{{ name ( args ) }}` when `token` calls `name`, split as
/// nats-server splits them (at commas, dropping the blanks after each).
fn function_args(token: &str, name: &str) -> Option<Vec<String>> {
    let b = token.as_bytes();
    let mut i = 2;
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    let n = name.as_bytes();
    let word = b.get(i..i + n.len())?;
    let same = word
        .iter()
        .zip(n)
        .all(|(&a, &c)| a == c || (c.is_ascii_uppercase() && a == c.to_ascii_lowercase()));
    if !same {
        return None;
    }
    i += n.len();
    while i < b.len() && is_space(b[i]) {
        i += 1;
    }
    if b.get(i) != Some(&b'(') {
        return None;
    }
    let open = i + 1;
    // Greedy: the last `)` followed only by blanks and `}}`.
    let close = (open..b.len()).rev().find(|&p| {
        b[p] == b')' && {
            let mut q = p + 1;
            while q < b.len() && is_space(b[q]) {
                q += 1;
            }
            b[q..].starts_with(b"}}")
        }
    })?;
    let inner = &token[open..close];
    Some(
        inner
            .split(',')
            .enumerate()
            .map(|(k, a)| {
                if k == 0 {
                    a.to_string()
                } else {
                    a.trim_start_matches(['\t', '\n', '\x0c', '\r', ' '])
                        .to_string()
                }
            })
            .collect(),
    )
}

/// Go's `strconv.Atoi` after `strings.Trim(s, " ")`.
fn atoi(s: &str) -> Option<i64> {
    s.trim_matches(' ').parse().ok()
}

/// nats-server's `indexPlaceHolders`.
fn parse_token(token: &str) -> Result<Parsed, TransformError> {
    if token.len() > 1
        && let Some(rest) = token.strip_prefix('$')
    {
        // `$x` that is not a number is literal text.
        return Ok(rest.parse().map_or(Parsed::Literal, Parsed::Wildcard));
    }
    if !is_mustache(token) {
        return Ok(Parsed::Literal);
    }
    let err = |reason| Err(destination_error(reason, token));
    if let Some(args) = function_args(token, "Wildcard") {
        return match args.as_slice() {
            [a] if a.is_empty() => err(NOT_ENOUGH_ARGUMENTS),
            [a] => atoi(a).map_or_else(|| err(INVALID_ARGUMENT), |i| Ok(Parsed::Wildcard(i))),
            _ => err(TOO_MANY_ARGUMENTS),
        };
    }
    if let Some(args) = function_args(token, "Partition") {
        if args.len() < 2 {
            return err(NOT_ENOUGH_ARGUMENTS);
        }
        let Some(n) = atoi(&args[0]) else {
            return err(INVALID_ARGUMENT);
        };
        let refs: Option<Vec<i64>> = args[1..].iter().map(|a| atoi(a)).collect();
        return refs.map_or_else(|| err(INVALID_ARGUMENT), |r| Ok(Parsed::Partition(n, r)));
    }
    type Make = fn(i64, i64) -> Parsed;
    let two_ints: [(&str, Make); 4] = [
        ("SplitFromLeft", Parsed::SplitFromLeft),
        ("SplitFromRight", Parsed::SplitFromRight),
        ("SliceFromLeft", Parsed::SliceFromLeft),
        ("SliceFromRight", Parsed::SliceFromRight),
    ];
    for (name, make) in two_ints {
        if let Some(args) = function_args(token, name) {
            return match args.as_slice() {
                [_] => err(NOT_ENOUGH_ARGUMENTS),
                [a, n] => match (atoi(a), atoi(n)) {
                    (Some(a), Some(n)) => Ok(make(a, n)),
                    _ => err(INVALID_ARGUMENT),
                },
                _ => err(TOO_MANY_ARGUMENTS),
            };
        }
    }
    if let Some(args) = function_args(token, "Split") {
        return match args.as_slice() {
            [_] => err(NOT_ENOUGH_ARGUMENTS),
            [a, d] => match atoi(a) {
                Some(a) if !d.contains([' ', '.']) => Ok(Parsed::Split(a, d.clone())),
                _ => err(INVALID_ARGUMENT),
            },
            _ => err(TOO_MANY_ARGUMENTS),
        };
    }
    err(UNKNOWN_FUNCTION)
}

/// Go's `strings.Split`: an empty delimiter splits into characters.
fn split_go<'a>(s: &'a [u8], delimiter: &[u8]) -> Vec<&'a [u8]> {
    if delimiter.is_empty() {
        let text = String::from_utf8_lossy(s);
        if matches!(text, std::borrow::Cow::Owned(_)) {
            return s.chunks(1).collect();
        }
        let mut parts = Vec::new();
        let mut at = 0;
        for c in text.chars() {
            parts.push(&s[at..at + c.len_utf8()]);
            at += c.len_utf8();
        }
        return parts;
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + delimiter.len() <= s.len() {
        if &s[i..i + delimiter.len()] == delimiter {
            parts.push(&s[start..i]);
            i += delimiter.len();
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// nats-server partitions with FNV-1a (32-bit) of the joined tokens.
fn fnv1a(b: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h ^= u32::from(x);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(src: &str, dest: &str, subject: &str) -> String {
        CompiledTransform::new(src, dest)
            .unwrap_or_else(|e| panic!("{src} -> {dest}: {e}"))
            .apply(subject)
            .unwrap_or_else(|| panic!("{src} -> {dest} on {subject}"))
    }

    fn refusal(src: &str, dest: &str) -> String {
        CompiledTransform::new(src, dest)
            .err()
            .unwrap_or_else(|| panic!("{src} -> {dest} compiled"))
            .to_string()
    }

    // Each expectation below is what nats-server 2.10.26 stored or answered for
    // the same transform (probed with a real server; the conformance test runs the
    // same comparison live).
    #[test]
    fn wildcards_and_literals() {
        assert_eq!(
            apply("st.in.*.*", "st.out.{{wildcard(2)}}.$1", "st.in.eu.new"),
            "st.out.new.eu"
        );
        assert_eq!(apply("st.*.*", "b.$2.$1", "st.a.b"), "b.b.a");
        assert_eq!(apply("st.*", "b.{{ wildcard( 1 ) }}", "st.a"), "b.a");
        assert_eq!(apply("st.in.>", "st.all.>", "st.in.a.b.c"), "st.all.a.b.c");
        assert_eq!(apply("st.*.>", "x.$1.>", "st.a.b.c"), "x.a.b.c");
        assert_eq!(apply(">", "all.>", "st.a.b"), "all.st.a.b");
        assert_eq!(apply("", "all.>", "st.a.b"), "all.st.a.b");
        assert_eq!(apply("st.*", "c", "st.a"), "c");
        assert_eq!(apply("st.a", "c.d", "st.a"), "c.d");
        assert_eq!(apply("st.*", "", "st.a"), "st.a");
        // A placeholder is a whole token; anything else is literal text.
        assert_eq!(
            apply("st.*", "b.pre{{wildcard(1)}}", "st.a"),
            "b.pre{{wildcard(1)}}"
        );
        assert_eq!(apply("st.*", "b.a$1", "st.a"), "b.a$1");
        assert_eq!(apply("st.*", "b.$x", "st.a"), "b.$x");
        // Index 0 reads the first token (nats-server's map lookup).
        assert_eq!(apply("st.*", "c.{{wildcard(0)}}", "st.a"), "c.st");
        let t = CompiledTransform::new("st.a", "c").unwrap();
        assert_eq!(t.apply("st.b"), None);
    }

    #[test]
    fn partitions_match_nats_server() {
        let t = "p.{{partition(3,1)}}.{{wildcard(1)}}";
        for (s, want) in [
            ("st.a", "p.1.a"),
            ("st.b", "p.1.b"),
            ("st.c", "p.2.c"),
            ("st.hello", "p.0.hello"),
            ("st.x1", "p.1.x1"),
        ] {
            assert_eq!(apply("st.*", t, s), want);
        }
        assert_eq!(apply("st.*.*", "p.{{Partition(5,1,2)}}", "st.a.b"), "p.1");
        assert_eq!(apply("st.*.*", "p.{{Partition(5,1,2)}}", "st.ab.c"), "p.1");
        assert!(refusal("st.*", "c.{{partition(0,1)}}").contains(INVALID_ARGUMENT));
    }

    #[test]
    fn split_and_slice_functions_match_nats_server() {
        let f = "b.{{splitfromleft(1,2)}}";
        assert_eq!(apply("st.*", f, "st.abcdef"), "b.ab.cdef");
        assert_eq!(apply("st.*", f, "st.a"), "b.a");
        let f = "b.{{SplitFromRight(1,2)}}";
        assert_eq!(apply("st.*", f, "st.abcdef"), "b.abcd.ef");
        assert_eq!(apply("st.*", f, "st.ab"), "b.ab");
        let f = "b.{{slicefromleft(1,2)}}";
        assert_eq!(apply("st.*", f, "st.abcde"), "b.ab.cd.e");
        assert_eq!(apply("st.*", f, "st.ab"), "b.ab");
        assert_eq!(apply("st.*", f, "st.abcdef"), "b.ab.cd.ef");
        let f = "b.{{slicefromright(1,2)}}";
        assert_eq!(apply("st.*", f, "st.abcde"), "b.a.bc.de");
        assert_eq!(apply("st.*", f, "st.ab"), "b.ab");
        assert_eq!(apply("st.*", f, "st.abcdef"), "b.ab.cd.ef");
        let f = "b.{{split(1,-)}}";
        assert_eq!(apply("st.*", f, "st.a-b-c"), "b.a.b.c");
        assert_eq!(apply("st.*", f, "st.-a--b-"), "b.a.b");
        assert_eq!(apply("st.*", f, "st.abc"), "b.abc");
        // nats-server stores `b.`; as a subject it is invalid, so it is kept.
        assert_eq!(apply("st.*", f, "st.--"), "b.");
        let t = CompiledTransform::new("st.*", f).unwrap();
        let s = Subject::new("st.--").unwrap();
        assert_eq!(t.apply_subject(&s), None);
    }

    #[test]
    fn refusals_have_nats_servers_text() {
        let bad = "invalid subject";
        for (src, dest) in [
            ("st..x", "c"),
            ("st.*", "c.>"),
            ("st.>", "c"),
            ("st.*", "c.*"),
            ("st.>", "x.>.y"),
            ("st.*", "c..d"),
        ] {
            assert_eq!(refusal(src, dest), bad, "{src} -> {dest}");
        }
        let d = "invalid mapping destination: ";
        for (src, dest, text) in [
            ("st.*", "c.$2", "wildcard index out of range in $2: [2]"),
            ("st.*", "c.{{nope(1)}}", "unknown function in {{nope(1)}}"),
            (
                "st.*",
                "c.{{wildcard()}}",
                "not enough arguments passed to the function in {{wildcard()}}",
            ),
            (
                "st.*",
                "c.{{wildcard(1,2)}}",
                "too many arguments passed to the function in {{wildcard(1,2)}}",
            ),
            (
                "st.*",
                "c.{{wildcard(x)}}",
                "function argument is invalid or in the wrong format in {{wildcard(x)}}",
            ),
            (
                "st.*",
                "c.{{partition(3)}}",
                "not enough arguments passed to the function in {{partition(3)}}",
            ),
            (
                "st.*",
                "c.{{splitfromleft(1,2,3)}}",
                "too many arguments passed to the function in {{splitfromleft(1,2,3)}}",
            ),
            (
                "st.*",
                "c.{{split(1,a b)}}",
                "function argument is invalid or in the wrong format in {{split(1,a b)}}",
            ),
            ("st.a", "c.$1", "wildcard index out of range in $1"),
        ] {
            assert_eq!(refusal(src, dest), format!("{d}{text}"), "{src} -> {dest}");
        }
    }

    #[test]
    fn a_source_or_mirror_destination_is_validated_as_nats_server_does() {
        assert!(validate_destination("s.{{split(1,-)}}").is_ok());
        assert!(validate_destination("s.$2").is_ok());
        assert!(validate_destination("s.*").is_ok());
        assert_eq!(
            validate_destination("s.{{nope(1)}}")
                .unwrap_err()
                .to_string(),
            "invalid mapping destination: unknown function in {{nope(1)}}"
        );
        assert!(validate_destination("s..x").is_err());
        assert!(validate_destination("s.>.x").is_err());
    }
}
