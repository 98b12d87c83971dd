//! The subject trie: which subscriptions match a published subject.
//!
//! Filters are stored token by token. Each level has literal children, a `*` child
//! and a `>` child. Matching walks the published subject's tokens once, branching
//! into `*` and `>` where present. Results are cached per subject; any change to the
//! trie empties the cache (guarded by a generation number so that a match computed
//! against an old trie is never cached after the change).

use ahash::AHashMap;
use bytes::Bytes;
use junction_api::{ClientId, QueueGroup, Subject, SubjectFilter, Subscriber, SubscriptionId};
use parking_lot::RwLock;
use std::sync::Arc;

/// Most subjects whose match results are cached at once.
const CACHE_LIMIT: usize = 4096;

/// One subscription as the trie holds it.
pub(crate) struct Subscription {
    pub id: SubscriptionId,
    pub client: ClientId,
    pub filter: SubjectFilter,
    pub queue: Option<QueueGroup>,
    pub subscriber: Arc<dyn Subscriber>,
    /// The subscriber is an MQTT client: it gets the MQTT front-end's markers
    /// (`lineage::MQTT_MARKERS`), which every other subscriber is spared.
    pub mqtt: bool,
    /// A peer node's interest (`cluster.rs`): matching messages are forwarded to
    /// that node, once per publish, and never to another node from there.
    pub route: Option<Arc<str>>,
    /// This node's peers were told of it (a client's subscription, in a cluster).
    pub shared: bool,
}

/// Everything one subject matches: plain subscriptions, and queue groups (one
/// member of each group gets the message).
#[derive(Default)]
pub(crate) struct MatchResult {
    pub plain: Vec<Arc<Subscription>>,
    pub groups: Vec<(QueueGroup, Vec<Arc<Subscription>>)>,
}

impl MatchResult {
    fn add_node(&mut self, node: &Node) {
        self.plain.extend(node.plain.iter().cloned());
        for (name, members) in &node.groups {
            match self.groups.iter_mut().find(|(n, _)| n == name) {
                Some((_, all)) => all.extend(members.iter().cloned()),
                None => self.groups.push((name.clone(), members.clone())),
            }
        }
    }
}

#[derive(Default)]
struct Node {
    plain: Vec<Arc<Subscription>>,
    groups: AHashMap<QueueGroup, Vec<Arc<Subscription>>>,
    next: Option<Box<Level>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.plain.is_empty()
            && self.groups.is_empty()
            && self.next.as_ref().is_none_or(|l| l.is_empty())
    }
}

#[derive(Default)]
struct Level {
    literal: AHashMap<Bytes, Node>,
    one: Option<Box<Node>>,
    rest: Option<Box<Node>>,
}

impl Level {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.one.is_none() && self.rest.is_none()
    }

    fn child_mut(&mut self, token: &[u8]) -> &mut Node {
        match token {
            b"*" => self.one.get_or_insert_with(Default::default),
            b">" => self.rest.get_or_insert_with(Default::default),
            _ => {
                if !self.literal.contains_key(token) {
                    self.literal
                        .insert(Bytes::copy_from_slice(token), Node::default());
                }
                // Present: inserted just above when missing.
                match self.literal.get_mut(token) {
                    Some(n) => n,
                    None => unreachable!("literal child inserted above"),
                }
            }
        }
    }

    fn collect(&self, tokens: &[&[u8]], out: &mut MatchResult) {
        let Some((token, rest)) = tokens.split_first() else {
            return;
        };
        if let Some(node) = &self.rest {
            out.add_node(node);
        }
        if let Some(node) = &self.one {
            node.visit(rest, out);
        }
        if let Some(node) = self.literal.get(*token) {
            node.visit(rest, out);
        }
    }

    /// Removes subscription `id` under `tokens`; true when it was found.
    fn remove(&mut self, tokens: &[&[u8]], sub: &Subscription) -> bool {
        let Some((token, rest)) = tokens.split_first() else {
            return false;
        };
        let (found, now_empty) = {
            let node = match *token {
                b"*" => self.one.as_deref_mut(),
                b">" => self.rest.as_deref_mut(),
                t => self.literal.get_mut(t),
            };
            let Some(node) = node else { return false };
            let found = if rest.is_empty() {
                node.remove_here(sub)
            } else {
                let found = node.next.as_mut().is_some_and(|l| l.remove(rest, sub));
                if node.next.as_ref().is_some_and(|l| l.is_empty()) {
                    node.next = None;
                }
                found
            };
            (found, node.is_empty())
        };
        if now_empty {
            match *token {
                b"*" => self.one = None,
                b">" => self.rest = None,
                t => {
                    self.literal.remove(t);
                }
            }
        }
        found
    }
}

impl Node {
    fn visit(&self, rest: &[&[u8]], out: &mut MatchResult) {
        if rest.is_empty() {
            out.add_node(self);
        } else if let Some(next) = &self.next {
            next.collect(rest, out);
        }
    }

    fn remove_here(&mut self, sub: &Subscription) -> bool {
        match &sub.queue {
            None => {
                let before = self.plain.len();
                self.plain.retain(|s| s.id != sub.id);
                before != self.plain.len()
            }
            Some(q) => {
                let Some(members) = self.groups.get_mut(q) else {
                    return false;
                };
                let before = members.len();
                members.retain(|s| s.id != sub.id);
                let found = before != members.len();
                if members.is_empty() {
                    self.groups.remove(q);
                }
                found
            }
        }
    }
}

struct Cache {
    generation: u64,
    results: AHashMap<Bytes, Arc<MatchResult>>,
}

struct Tree {
    generation: u64,
    root: Level,
    count: usize,
}

/// The subscriptions of one tenant, indexed by filter.
pub(crate) struct SubjectTrie {
    tree: RwLock<Tree>,
    cache: RwLock<Cache>,
}

impl Default for SubjectTrie {
    fn default() -> Self {
        SubjectTrie {
            tree: RwLock::new(Tree {
                generation: 0,
                root: Level::default(),
                count: 0,
            }),
            cache: RwLock::new(Cache {
                generation: 0,
                results: AHashMap::new(),
            }),
        }
    }
}

impl SubjectTrie {
    /// Adds a subscription.
    pub fn insert(&self, sub: Arc<Subscription>) {
        let mut tree = self.tree.write();
        let filter = sub.filter.clone();
        let mut tokens = filter.tokens().peekable();
        let mut level = &mut tree.root;
        while let Some(token) = tokens.next() {
            let node = level.child_mut(token);
            if tokens.peek().is_none() {
                match &sub.queue {
                    None => node.plain.push(sub),
                    Some(q) => node.groups.entry(q.clone()).or_default().push(sub),
                }
                break;
            }
            level = node.next.get_or_insert_with(Default::default);
        }
        tree.count += 1;
        tree.generation += 1;
        self.invalidate(tree.generation);
    }

    /// Removes a subscription; true when it was present.
    pub fn remove(&self, sub: &Subscription) -> bool {
        let tokens: Vec<&[u8]> = sub.filter.tokens().collect();
        let mut tree = self.tree.write();
        let found = tree.root.remove(&tokens, sub);
        if found {
            tree.count -= 1;
            tree.generation += 1;
            self.invalidate(tree.generation);
        }
        found
    }

    fn invalidate(&self, generation: u64) {
        let mut cache = self.cache.write();
        cache.results.clear();
        cache.generation = generation;
    }

    /// Number of subscriptions.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.tree.read().count
    }

    /// Everything `subject` matches.
    pub fn matches(&self, subject: &Subject) -> Arc<MatchResult> {
        if let Some(hit) = self.cache.read().results.get(subject.as_bytes()) {
            return hit.clone();
        }
        let tokens: Vec<&[u8]> = subject.tokens().collect();
        let (generation, result) = {
            let tree = self.tree.read();
            let mut out = MatchResult::default();
            // A subject with an empty token (`a..b`) matches nothing, as in nats-server.
            if tokens.iter().all(|t| !t.is_empty()) {
                tree.root.collect(&tokens, &mut out);
            }
            (tree.generation, Arc::new(out))
        };
        // Ack subjects never repeat: caching them would only evict the subjects
        // that do.
        if junction_api::is_per_message_subject(subject.as_bytes()) {
            return result;
        }
        let mut cache = self.cache.write();
        if cache.generation == generation {
            if cache.results.len() >= CACHE_LIMIT {
                cache.results.clear();
            }
            cache
                .results
                .insert(subject.bytes().clone(), result.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_api::{Delivery, Message};

    struct Nop;
    impl Subscriber for Nop {
        fn deliver(&self, _: &Message, _: junction_api::FanoutId) -> Delivery {
            Delivery::Accepted
        }
        fn describe(&self) -> (String, u64) {
            (String::new(), 0)
        }
    }

    fn sub(id: u64, filter: &str, queue: Option<&str>) -> Arc<Subscription> {
        Arc::new(Subscription {
            id: SubscriptionId(id),
            client: ClientId(1),
            filter: SubjectFilter::new(filter.to_string()).unwrap(),
            queue: queue.map(|q| QueueGroup::new(q.to_string()).unwrap()),
            subscriber: Arc::new(Nop),
            mqtt: false,
            route: None,
            shared: false,
        })
    }

    fn ids(trie: &SubjectTrie, subject: &str) -> Vec<u64> {
        let r = trie.matches(&Subject::new(subject.to_string()).unwrap());
        let mut v: Vec<u64> = r.plain.iter().map(|s| s.id.0).collect();
        for (_, members) in &r.groups {
            v.extend(members.iter().map(|s| s.id.0));
        }
        v.sort();
        v
    }

    #[test]
    fn wildcards_match_like_nats() {
        let t = SubjectTrie::default();
        t.insert(sub(1, "foo.bar", None));
        t.insert(sub(2, "foo.*", None));
        t.insert(sub(3, "foo.>", None));
        t.insert(sub(4, ">", None));
        t.insert(sub(5, "*.bar", None));
        t.insert(sub(6, "foo.*.baz", None));
        assert_eq!(ids(&t, "foo.bar"), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&t, "foo"), vec![4]);
        assert_eq!(ids(&t, "foo.x.baz"), vec![3, 4, 6]);
        assert_eq!(ids(&t, "bar.bar"), vec![4, 5]);
    }

    #[test]
    fn queue_groups_merge_across_nodes() {
        let t = SubjectTrie::default();
        t.insert(sub(1, "a.b", Some("q")));
        t.insert(sub(2, "a.*", Some("q")));
        t.insert(sub(3, "a.*", Some("r")));
        let r = t.matches(&Subject::new("a.b").unwrap());
        assert_eq!(r.groups.len(), 2);
        let q = r.groups.iter().find(|(n, _)| n.as_bytes() == b"q").unwrap();
        assert_eq!(q.1.len(), 2);
    }

    #[test]
    fn remove_prunes_and_invalidates_cache() {
        let t = SubjectTrie::default();
        let a = sub(1, "a.b.c", None);
        t.insert(a.clone());
        assert_eq!(ids(&t, "a.b.c"), vec![1]);
        assert!(t.remove(&a));
        assert!(!t.remove(&a));
        assert_eq!(ids(&t, "a.b.c"), Vec::<u64>::new());
        assert!(t.tree.read().root.is_empty());
        assert_eq!(t.len(), 0);
    }
}
