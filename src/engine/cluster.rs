//! The engine's side of the cluster links (`junction-cluster`): what this node's
//! clients subscribe to is shared with the peers, the peers' interest sits in the
//! subject trie as subscriptions marked with the peer's name, and a publish that
//! matches them is forwarded once per peer. What a peer forwards is delivered to
//! this node's own subscribers only (one hop).
//!
//! Queue groups span the cluster: a peer's members of a group are one member of it
//! here (the peer then picks one of its own), so each message reaches one member
//! cluster-wide.
//!
//! Stations are defined through the meta group (`meta.rs`) and held by one node
//! each (`placement.rs`): a publish a station on another node captures goes to
//! that node as a store call. Schemas and routing rules are shared through the
//! meta group too.

use super::trie::Subscription;
use super::{StationEngine, lineage};
use bytes::Bytes;
use junction_api::{
    ClientId, Delivery, FanoutId, Message, QueueGroup, SubjectFilter, Subscriber, SubscriptionId,
    TenantId,
};
use junction_cluster::{Cluster, Forward, ForwardRef, Host, Interest};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Peers' interest as trie subscriptions: (peer, interest) → the subscription.
pub(super) type RemoteInterest = ahash::AHashMap<(Arc<str>, Interest), Arc<Subscription>>;

/// Where one publish goes among the peers.
pub(super) struct PeerForward<'a> {
    peer: &'a Arc<str>,
    plain: bool,
    queues: Vec<Bytes>,
}

/// Notes that `peer`'s plain subscribers get the message; true the first time.
pub(super) fn forward_plain<'a>(peers: &mut Vec<PeerForward<'a>>, peer: &'a Arc<str>) -> bool {
    match peers
        .iter_mut()
        .find(|p| Arc::ptr_eq(p.peer, peer) || p.peer == peer)
    {
        Some(p) => !std::mem::replace(&mut p.plain, true),
        None => {
            peers.push(PeerForward {
                peer,
                plain: true,
                queues: Vec::new(),
            });
            true
        }
    }
}

/// Notes that one of `peer`'s members of `queue` gets the message.
pub(super) fn forward_queue<'a>(
    peers: &mut Vec<PeerForward<'a>>,
    peer: &'a Arc<str>,
    queue: &QueueGroup,
) {
    let q = Bytes::copy_from_slice(queue.as_bytes());
    match peers
        .iter_mut()
        .find(|p| Arc::ptr_eq(p.peer, peer) || p.peer == peer)
    {
        Some(p) => p.queues.push(q),
        None => peers.push(PeerForward {
            peer,
            plain: false,
            queues: vec![q],
        }),
    }
}

/// A peer's interest as the trie holds it. Never called: `fan_out` forwards to
/// the peer itself, once per publish.
struct RouteSubscriber {
    peer: Arc<str>,
}

impl Subscriber for RouteSubscriber {
    fn deliver(&self, _: &Message, _: FanoutId) -> Delivery {
        Delivery::Accepted
    }

    fn describe(&self) -> (String, u64) {
        (format!("route {}", self.peer), 0)
    }
}

fn interest_of(tenant: &TenantId, sub: &Subscription) -> Interest {
    Interest {
        tenant: tenant.0.to_string(),
        filter: Bytes::copy_from_slice(sub.filter.as_bytes()),
        queue: sub
            .queue
            .as_ref()
            .map(|q| Bytes::copy_from_slice(q.as_bytes())),
    }
}

impl StationEngine {
    /// Joins this engine to the cluster links: from now on, clients'
    /// subscriptions are shared with the peers. Call once, before clients connect.
    pub fn attach_cluster(&self, cluster: Cluster) {
        if self.cluster.set(cluster).is_err() {
            tracing::warn!("the engine is already attached to a cluster");
            return;
        }
        if let Some(cluster) = self.cluster.get() {
            cluster.set_engine_handler(Arc::new(super::placement::EngineCalls(self.me.clone())));
        }
        self.start_state_notes();
    }

    /// The cluster links, when this node is in a cluster.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// The cluster as this node sees it: every node linked since start but those
    /// removed from the meta group (a removed node leaves no trace), and the
    /// group's registered nodes that were not linked, shown offline.
    pub(super) fn cluster_snapshot(&self) -> Option<junction_api::ClusterSnapshot> {
        let cluster = self.cluster.get()?;
        let status = self.meta.get().map(|m| m.status()).unwrap_or_default();
        let registry: std::collections::BTreeMap<String, (u64, String)> = status
            .nodes
            .iter()
            .map(|(id, name, addr)| (name.clone(), (*id, addr.clone())))
            .collect();
        let mut nodes: Vec<junction_api::ClusterNode> = cluster
            .nodes()
            .into_iter()
            .filter(|n| n.this || !status.removed.contains(&n.name))
            .map(|n| junction_api::ClusterNode {
                voter: status.voters.contains(&n.name),
                id: registry.get(&n.name).map(|(id, _)| *id),
                lag: (!n.this)
                    .then(|| status.lag.get(&n.name).copied())
                    .flatten(),
                name: n.name,
                addr: n.addr,
                online: n.online,
                last_seen: n.last_seen,
                this: n.this,
                client_urls: n.client_urls,
                http_url: n.http_url,
            })
            .collect();
        for (name, (id, addr)) in &registry {
            if !nodes.iter().any(|n| &n.name == name) {
                nodes.push(junction_api::ClusterNode {
                    name: name.clone(),
                    addr: addr.clone(),
                    online: false,
                    voter: status.voters.contains(name),
                    id: Some(*id),
                    lag: status.lag.get(name).copied(),
                    last_seen: std::time::UNIX_EPOCH,
                    this: false,
                    client_urls: Vec::new(),
                    http_url: None,
                });
            }
        }
        Some(junction_api::ClusterSnapshot {
            name: cluster.name().to_string(),
            node: cluster.node().to_string(),
            meta_leader: status.leader.clone(),
            meta_id: (status.id > 0).then_some(status.id),
            meta_role: if status.role.is_empty() {
                "joining".to_string()
            } else {
                status.role.clone()
            },
            meta_applied: status.applied,
            nodes,
            dropped_forwards: cluster.dropped(),
        })
    }

    /// Tells the peers that a client subscription came (or went).
    pub(super) fn share_interest(&self, tenant: &TenantId, sub: &Subscription, added: bool) {
        if let Some(cluster) = self.cluster.get() {
            cluster.local_interest(interest_of(tenant, sub), added);
        }
    }

    /// Sends one publish to each peer that wants it.
    pub(super) fn forward_to_peers(
        &self,
        tenant: &TenantId,
        message: &Message,
        route: Option<&junction_api::Subject>,
        origin_mqtt: bool,
        peers: Vec<PeerForward<'_>>,
    ) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        for p in peers {
            cluster.forward(
                p.peer,
                ForwardRef {
                    tenant: &tenant.0,
                    message,
                    origin_mqtt,
                    plain: p.plain,
                    queues: &p.queues,
                    route,
                },
            );
        }
    }

    pub(super) fn tenant_named(&self, name: &str) -> TenantId {
        if *self.default_tenant.0 == *name {
            self.default_tenant.clone()
        } else {
            TenantId(Arc::from(name))
        }
    }

    /// Delivers what a peer forwarded to this node's own subscribers: its plain
    /// ones if the peer says so, and one local member of each named queue group.
    fn deliver_forwarded(&self, f: Forward) {
        let tenant = self.tenant_named(&f.tenant);
        let message = f.message;
        let result = self
            .trie(&tenant)
            .matches(f.route.as_ref().unwrap_or(&message.subject));
        let fanout = FanoutId::next();
        let mut unmarked: Option<Message> = None;
        let mut done = Vec::new();
        let mut delivered = 0u64;
        let mut one = |sub: &Arc<Subscription>, done: &mut Vec<(ClientId, SubscriptionId)>| {
            let m: &Message = if f.origin_mqtt && !sub.mqtt {
                unmarked.get_or_insert_with(|| lineage::strip_mqtt_markers(&message).into_owned())
            } else {
                &message
            };
            self.deliver_one(sub, m, fanout, done)
        };
        if f.plain {
            for sub in result.plain.iter().filter(|s| s.route.is_none()) {
                if one(sub, &mut done) {
                    delivered += 1;
                }
            }
        }
        for queue in &f.queues {
            let Some((_, members)) = result
                .groups
                .iter()
                .find(|(name, _)| name.as_bytes() == &queue[..])
            else {
                continue;
            };
            let local: Vec<&Arc<Subscription>> =
                members.iter().filter(|s| s.route.is_none()).collect();
            let n = local.len();
            let start = self.queue_cursor.fetch_add(1, Ordering::Relaxed);
            for k in 0..n {
                if one(local[(start + k) % n], &mut done) {
                    delivered += 1;
                    break;
                }
            }
        }
        if delivered > 0 {
            let bytes = message.payload.len() as u64;
            self.counters
                .out_msgs
                .fetch_add(delivered, Ordering::Relaxed);
            self.counters
                .out_bytes
                .fetch_add(bytes * delivered, Ordering::Relaxed);
        }
        for (client, id) in done {
            self.remove_subscriptions(client, &[id]);
        }
    }
}

impl Host for StationEngine {
    fn remote_interest(&self, peer: &str, interest: &Interest, added: bool) {
        let tenant = self.tenant_named(&interest.tenant);
        let key: (Arc<str>, Interest) = (Arc::from(peer), interest.clone());
        if !added {
            if let Some(sub) = self.remote.lock().remove(&key) {
                self.trie(&tenant).remove(&sub);
            }
            return;
        }
        let Ok(filter) = SubjectFilter::new(interest.filter.clone()) else {
            tracing::warn!(%peer, "a peer sent interest in an invalid filter; ignored");
            return;
        };
        let queue = match &interest.queue {
            None => None,
            Some(q) => match QueueGroup::new(q.clone()) {
                Ok(q) => Some(q),
                Err(_) => {
                    tracing::warn!(%peer, "a peer sent interest with an invalid queue group; ignored");
                    return;
                }
            },
        };
        let mut remote = self.remote.lock();
        if remote.contains_key(&key) {
            return;
        }
        let sub = Arc::new(Subscription {
            id: SubscriptionId(self.next_subscription.fetch_add(1, Ordering::Relaxed)),
            client: self.system.id,
            filter,
            queue,
            subscriber: Arc::new(RouteSubscriber {
                peer: key.0.clone(),
            }),
            mqtt: false,
            route: Some(key.0.clone()),
            shared: false,
        });
        self.trie(&tenant).insert(sub.clone());
        remote.insert(key, sub);
    }

    fn remote_message(&self, _peer: &str, forward: Forward) {
        self.deliver_forwarded(forward);
    }
}
