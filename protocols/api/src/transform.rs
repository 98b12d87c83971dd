//! Subject transforms, in nats-server 2.10's syntax: a source filter whose
//! wildcards a destination template refers to by position, as `$1`,
//! `{{wildcard(1)}}` or `{{partition(n,1,2)}}`. Pure code: no I/O.

use crate::{Subject, SubjectFilter};

/// A transform that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The source is not a valid subject filter.
    #[error("invalid transform source '{0}'")]
    Source(String),
    /// The destination is not valid or refers to a wildcard the source lacks.
    #[error("invalid transform destination '{0}'")]
    Destination(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// 1-based position among the source's `*` wildcards.
    Wildcard(usize),
    /// Partition number of the named wildcards' values.
    Partition(u32, Vec<usize>),
}

/// A compiled transform.
#[derive(Debug, Clone)]
pub struct CompiledTransform {
    source: Option<SubjectFilter>,
    source_tokens: Vec<String>,
    /// One entry per destination token, each made of pieces.
    dest: Vec<Vec<Piece>>,
}

impl CompiledTransform {
    /// Compiles `source` → `destination`. An empty source means `>`; an empty
    /// destination keeps the subject.
    pub fn new(source: &str, destination: &str) -> Result<Self, TransformError> {
        let src = if source.is_empty() { ">" } else { source };
        let filter =
            SubjectFilter::new(src.to_string()).map_err(|_| TransformError::Source(src.into()))?;
        let source_tokens: Vec<String> = src.split('.').map(str::to_string).collect();
        let stars = source_tokens.iter().filter(|t| *t == "*").count();
        let bad = || TransformError::Destination(destination.to_string());
        let mut dest = Vec::new();
        if !destination.is_empty() {
            // A `*` in the destination takes the source's `*` tokens in turn
            // (nats-server's legacy form, the one republish documents).
            let mut next_star = 0;
            for token in destination.split('.') {
                if token.is_empty() {
                    return Err(bad());
                }
                let pieces = if token == "*" {
                    next_star += 1;
                    vec![Piece::Wildcard(next_star)]
                } else {
                    parse_token(token).ok_or_else(bad)?
                };
                for p in &pieces {
                    let refs: &[usize] = match p {
                        Piece::Wildcard(i) => std::slice::from_ref(i),
                        Piece::Partition(_, v) => v,
                        Piece::Literal(_) => &[],
                    };
                    if refs.iter().any(|&i| i == 0 || i > stars) {
                        return Err(bad());
                    }
                }
                dest.push(pieces);
            }
            // Destination wildcards are only allowed as a trailing `>` when the
            // source ends with one.
            let last_gt = destination.ends_with('>') || destination == ">";
            if last_gt && !src.ends_with('>') {
                return Err(bad());
            }
        }
        Ok(CompiledTransform {
            source: Some(filter),
            source_tokens,
            dest,
        })
    }

    /// Does the transform apply to `subject`?
    pub fn matches(&self, subject: &Subject) -> bool {
        self.source.as_ref().is_some_and(|f| f.matches(subject))
    }

    /// [`CompiledTransform::apply`] on a subject.
    pub fn apply_subject(&self, subject: &Subject) -> Option<Subject> {
        if !self.matches(subject) {
            return None;
        }
        if self.dest.is_empty() {
            return Some(subject.clone());
        }
        Subject::new(self.apply(&subject.to_str_lossy())?).ok()
    }

    /// The subject `subject` becomes, or `None` when the source does not match.
    pub fn apply(&self, subject: &str) -> Option<String> {
        let s = Subject::new(subject.to_string()).ok()?;
        if !self.matches(&s) {
            return None;
        }
        if self.dest.is_empty() {
            return Some(subject.to_string());
        }
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut wild = Vec::new();
        let mut tail: &[&str] = &[];
        for (i, t) in self.source_tokens.iter().enumerate() {
            match t.as_str() {
                "*" => wild.push(*tokens.get(i)?),
                ">" => tail = tokens.get(i..)?,
                _ => {}
            }
        }
        let mut out: Vec<String> = Vec::with_capacity(self.dest.len());
        for pieces in &self.dest {
            let mut tok = String::new();
            for p in pieces {
                match p {
                    Piece::Literal(l) if l == ">" => tok.push_str(&tail.join(".")),
                    Piece::Literal(l) => tok.push_str(l),
                    Piece::Wildcard(i) => tok.push_str(wild.get(i - 1)?),
                    Piece::Partition(n, refs) => {
                        let mut key = String::new();
                        for r in refs {
                            key.push_str(wild.get(r - 1)?);
                        }
                        tok.push_str(&(fnv1a(key.as_bytes()) % n).to_string());
                    }
                }
            }
            out.push(tok);
        }
        Some(out.join("."))
    }
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

fn parse_token(token: &str) -> Option<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut rest = token;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("{{") {
            let end = after.find("}}")?;
            pieces.push(parse_function(after[..end].trim())?);
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('$') {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() {
                return None;
            }
            pieces.push(Piece::Wildcard(digits.parse().ok()?));
            rest = &after[digits.len()..];
        } else {
            let end = rest.find(['{', '$']).unwrap_or(rest.len());
            let lit = &rest[..end.max(1).min(rest.len())];
            if lit == "*" {
                return None;
            }
            pieces.push(Piece::Literal(lit.to_string()));
            rest = &rest[lit.len()..];
        }
    }
    Some(pieces)
}

fn parse_function(f: &str) -> Option<Piece> {
    let open = f.find('(')?;
    let name = f[..open].trim().to_ascii_lowercase();
    let args: Vec<&str> = f[open + 1..]
        .strip_suffix(')')?
        .split(',')
        .map(str::trim)
        .collect();
    match name.as_str() {
        "wildcard" if args.len() == 1 => Some(Piece::Wildcard(args[0].parse().ok()?)),
        "partition" if args.len() >= 2 => {
            let n: u32 = args[0].parse().ok()?;
            if n == 0 {
                return None;
            }
            let refs = args[1..]
                .iter()
                .map(|a| a.parse().ok())
                .collect::<Option<Vec<usize>>>()?;
            Some(Piece::Partition(n, refs))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_literals() {
        let t = CompiledTransform::new("orders.*.*", "shop.{{wildcard(2)}}.$1").unwrap();
        assert_eq!(t.apply("orders.eu.42").as_deref(), Some("shop.42.eu"));
        assert_eq!(t.apply("other.eu.42"), None);
        let t = CompiledTransform::new("a.*.*", "b.*.*").unwrap();
        assert_eq!(t.apply("a.x.y").as_deref(), Some("b.x.y"));
        assert!(CompiledTransform::new("a.*", "b.*.*").is_err());
        let t = CompiledTransform::new("a.>", "b.>").unwrap();
        assert_eq!(t.apply("a.x.y").as_deref(), Some("b.x.y"));
        let t = CompiledTransform::new("a", "b").unwrap();
        assert_eq!(t.apply("a").as_deref(), Some("b"));
        let t = CompiledTransform::new("a.*", "").unwrap();
        assert_eq!(t.apply("a.q").as_deref(), Some("a.q"));
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        let t = CompiledTransform::new("p.*", "part.{{partition(3,1)}}.$1").unwrap();
        let s = t.apply("p.key").unwrap();
        assert!(s.starts_with("part.") && s.ends_with(".key"));
        assert_eq!(t.apply("p.key").unwrap(), s);
    }

    #[test]
    fn bad_references_are_refused() {
        assert!(CompiledTransform::new("a.*", "b.$2").is_err());
        assert!(CompiledTransform::new("a.*", "b.{{nope(1)}}").is_err());
        assert!(CompiledTransform::new("a..b", "c").is_err());
    }
}
