//! Message headers: an ordered multimap of names to values, plus an optional status.
//!
//! Header names keep the case the producer used; lookups ignore ASCII case, as in
//! NATS and HTTP. The status line (`NATS/1.0 503 No Responders`) is modelled as
//! [`Headers::status`] and [`Headers::description`] so that protocols without one
//! can ignore it.

use std::sync::Arc;

/// An ordered multimap of message headers.
///
/// The entries are shared, copied on write: a message delivered to many
/// subscribers (each gets a clone) carries one set of header strings, not one
/// per delivery.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    /// `None` while empty (no allocation for a message without headers).
    entries: Option<Arc<Vec<(String, String)>>>,
    status: Option<u16>,
    description: Option<String>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
            && self.status == other.status
            && self.description == other.description
    }
}

impl Eq for Headers {}

impl Headers {
    /// An empty header set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A header set that carries only a status code and description, such as the
    /// NATS `503` no-responders reply.
    pub fn with_status(status: u16, description: Option<&str>) -> Self {
        Headers {
            entries: None,
            status: Some(status),
            description: description.map(str::to_owned),
        }
    }

    fn entries(&self) -> &[(String, String)] {
        self.entries.as_deref().map_or(&[], Vec::as_slice)
    }

    /// The entries to change: this copy's own (copied first if shared).
    fn entries_mut(&mut self) -> &mut Vec<(String, String)> {
        Arc::make_mut(self.entries.get_or_insert_with(Default::default))
    }

    /// Appends a value, keeping any existing values for the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries_mut().push((name.into(), value.into()));
    }

    /// Replaces every value for `name` with one value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.entries_mut().push((name, value.into()));
    }

    /// Removes every value for `name`.
    pub fn remove(&mut self, name: &str) {
        if self
            .entries()
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            self.entries_mut()
                .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
    }

    /// The first value for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value for `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries()
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries().iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of (name, value) pairs.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// True when there are no pairs and no status.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty() && self.status.is_none()
    }

    /// The status code, if any (NATS status headers such as `503`).
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The status description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Sets the status code and description.
    pub fn set_status(&mut self, status: Option<u16>, description: Option<String>) {
        self.status = status;
        self.description = description;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multimap_keeps_order_and_ignores_case() {
        let mut h = Headers::new();
        h.append("A", "1");
        h.append("b", "2");
        h.append("a", "3");
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.get_all("A").collect::<Vec<_>>(), vec!["1", "3"]);
        h.insert("a", "4");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("b", "2"), ("a", "4")]);
    }

    #[test]
    fn a_clone_shares_its_entries_until_either_changes() {
        let mut a = Headers::new();
        a.append("k", "1");
        let mut b = a.clone();
        assert_eq!(a, b);
        b.insert("k", "2");
        b.append("x", "y");
        assert_eq!(a.get("k"), Some("1"));
        assert_eq!(a.len(), 1);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![("k", "2"), ("x", "y")]);
        // Nothing to remove: nothing copied, still equal.
        let mut c = a.clone();
        c.remove("absent");
        assert_eq!(a, c);
        // Emptied is equal to never filled.
        c.remove("k");
        assert_eq!(c, Headers::new());
    }
}
