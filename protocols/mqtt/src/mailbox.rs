//! What reaches a connection from outside its own socket: live deliveries (engine
//! fan-out), consumer-group deliveries, storage completions and packets to send.
//!
//! Producers run on other tasks and threads and must never block: they push onto a
//! mutex-guarded queue and wake the connection task.

use crate::frame::Out;
use junction_api::{Delivered, Delivery, FanoutId, FetchEnd, FetchSink, Message, Subscriber};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// One thing for the connection task to handle.
#[derive(Debug)]
pub enum Event {
    /// A live message for one or more of the session's subscriptions (the same
    /// publish matching overlapping filters is merged into one event).
    Live {
        fanout: FanoutId,
        message: Message,
        subs: Vec<u32>,
    },
    /// A delivery from a persistent subscription's consumer group.
    Group {
        sub: u32,
        /// The group it came from: a message whose subscription is gone by the
        /// time it is read goes back there.
        group: Arc<str>,
        delivered: Box<Delivered>,
    },
    /// A group fetch ended.
    GroupEnd { sub: u32 },
    /// An inbound publish's storage completed: `Ok` or an MQTT reason code and text.
    Stored {
        slot: u64,
        result: crate::broker::StoreResult,
    },
    /// Send this packet (after a session write completed).
    Send(Out),
    /// The session record holds this QoS 2 delivery's PUBREL state.
    Released { pkid: u16 },
    /// A persistent session's SUBSCRIBE was stored (or not): send its SUBACK.
    SubStored {
        pkid: u16,
        codes: Vec<u8>,
        /// Index in `codes` and filter of each subscription the packet added.
        added: Vec<(usize, String)>,
        result: Result<(), String>,
    },
    /// The front-end's stations were made again: store the session record anew.
    StoreRecord,
}

#[derive(Default)]
struct Inner {
    events: VecDeque<Event>,
    closed: bool,
    live_dropped: u64,
    /// A live QoS 1/2 message found the mailbox full: the client is a slow consumer.
    overflow: bool,
    /// Why the connection must end, told from outside its task.
    stop: Option<Stop>,
}

/// Why a connection is told to end from outside its task. One flag in the
/// mailbox the connection already waits on, instead of a cancellation token per
/// cause: an idle connection holds as little as it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Another connection took the client id over.
    TakenOver,
    /// The client connected on another node of the cluster: the session moved
    /// there, so this node stores nothing more of it.
    Moved,
    /// An operator's disconnect, or the engine shedding a slow consumer.
    Operator,
}

/// A connection's inbox.
#[derive(Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
    notify: Notify,
    /// Payload bytes of live messages queued and not yet taken, to bound memory.
    live_bytes: AtomicU64,
    /// Most live payload bytes queued: beyond it QoS 0 messages are dropped and a
    /// QoS 1/2 message makes the client a slow consumer (disconnected).
    pub live_limit: u64,
    /// The client whose `pending_bytes` shows what is queued here (monitoring,
    /// and the memory self-check's choice of the slowest consumer).
    client: Option<Arc<junction_api::ClientRecord>>,
}

impl Mailbox {
    /// A mailbox holding at most `live_limit` bytes of live payloads, showing
    /// what is queued in `client`'s `pending_bytes`.
    pub fn for_client(live_limit: usize, client: Arc<junction_api::ClientRecord>) -> Arc<Self> {
        Arc::new(Mailbox {
            live_limit: live_limit as u64,
            client: Some(client),
            ..Default::default()
        })
    }

    fn show_pending(&self, bytes: u64) {
        if let Some(c) = &self.client {
            c.stats.pending_bytes.store(bytes, Ordering::Relaxed);
        }
    }

    /// True once a QoS 1/2 live message could not be queued.
    pub fn overflowed(&self) -> bool {
        self.inner.lock().overflow
    }

    /// Queues an event; false when the connection is gone.
    pub fn push(&self, event: Event) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        inner.events.push_back(event);
        drop(inner);
        self.notify.notify_one();
        true
    }

    fn push_live(
        &self,
        message: &Message,
        fanout: FanoutId,
        sub: u32,
        droppable: bool,
    ) -> Delivery {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Delivery::Gone;
        }
        if !fanout.is_none() {
            // The same publish matching another of our filters: merge.
            for e in inner.events.iter_mut().rev().take(16) {
                if let Event::Live {
                    fanout: f, subs, ..
                } = e
                    && *f == fanout
                {
                    subs.push(sub);
                    return Delivery::Accepted;
                }
            }
        }
        let size = message.payload.len() as u64;
        if self.live_limit > 0 && self.live_bytes.load(Ordering::Relaxed) + size > self.live_limit {
            if droppable {
                inner.live_dropped += 1;
                return Delivery::Accepted;
            }
            // Never drop an acknowledged QoS 1/2 message quietly: the client goes,
            // as a NATS slow consumer does.
            inner.overflow = true;
            drop(inner);
            self.notify.notify_one();
            return Delivery::Gone;
        }
        let now = self.live_bytes.fetch_add(size, Ordering::Relaxed) + size;
        self.show_pending(now);
        inner.events.push_back(Event::Live {
            fanout,
            message: message.clone(),
            subs: vec![sub],
        });
        drop(inner);
        self.notify.notify_one();
        Delivery::Accepted
    }

    /// Takes everything queued, and how many live messages were dropped since.
    pub fn take(&self) -> (VecDeque<Event>, u64) {
        let mut inner = self.inner.lock();
        let events = std::mem::take(&mut inner.events);
        let dropped = std::mem::take(&mut inner.live_dropped);
        drop(inner);
        let live: u64 = events
            .iter()
            .map(|e| match e {
                Event::Live { message, .. } => message.payload.len() as u64,
                _ => 0,
            })
            .sum();
        let now = self.live_bytes.fetch_sub(live, Ordering::Relaxed) - live;
        self.show_pending(now);
        (events, dropped)
    }

    /// Tells the connection to end (the first reason given stands).
    pub fn stop(&self, why: Stop) {
        let mut inner = self.inner.lock();
        if inner.stop.is_none() {
            inner.stop = Some(why);
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Why the connection was told to end, if it was.
    pub fn stopped(&self) -> Option<Stop> {
        self.inner.lock().stop
    }

    /// Waits until something is queued.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Closed: the connection is ending.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Refuses every later event; returns what was still queued.
    pub fn close(&self) -> VecDeque<Event> {
        let mut inner = self.inner.lock();
        inner.closed = true;
        std::mem::take(&mut inner.events)
    }
}

/// The engine's view of one MQTT subscription (one per engine filter).
pub struct LiveSub {
    pub mailbox: Arc<Mailbox>,
    /// The session's key for the subscription.
    pub sub: u32,
    /// The MQTT filter, for monitoring.
    pub filter: String,
    /// `+`/`#` first level: `$`-topics do not match.
    pub wild_first: bool,
    /// MQTT 5 No-Local: skip messages this client published.
    pub no_local: Option<String>,
    /// QoS 1/2 MQTT publishes reach this subscription through its consumer group.
    pub durable: bool,
    /// The subscription's QoS.
    pub qos: u8,
    pub delivered: AtomicU64,
}

impl Subscriber for LiveSub {
    fn deliver(&self, message: &Message, fanout: FanoutId) -> Delivery {
        if self.wild_first && message.subject.as_bytes().first() == Some(&b'$') {
            return Delivery::Accepted;
        }
        if let Some(h) = &message.headers {
            if let Some(me) = &self.no_local
                && h.get(crate::session::H_ORIGIN_PROTOCOL) == Some("mqtt")
                && h.get(crate::session::H_ORIGIN_CLIENT) == Some(me.as_str())
            {
                return Delivery::Accepted;
            }
            if self.durable
                && h.get(crate::session::H_MQTT_QOS).is_some_and(|q| q != "0")
                && h.get(crate::session::H_MQTT_STORED) == Some("1")
                && h.get(crate::session::H_ORIGIN_PROTOCOL) == Some("mqtt")
            {
                return Delivery::Accepted;
            }
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let pub_qos = match &message.headers {
            Some(h) if h.get(crate::session::H_ORIGIN_PROTOCOL) == Some("mqtt") => {
                h.get(crate::session::H_MQTT_QOS).map_or(0, |q| {
                    q.as_bytes().first().map_or(0, |b| b.saturating_sub(b'0'))
                })
            }
            _ => 0,
        };
        self.mailbox
            .push_live(message, fanout, self.sub, pub_qos.min(self.qos) == 0)
    }

    fn describe(&self) -> (String, u64) {
        (self.filter.clone(), self.delivered.load(Ordering::Relaxed))
    }
}

/// Where a persistent subscription's consumer group delivers.
pub struct GroupSink {
    pub mailbox: Arc<Mailbox>,
    pub sub: u32,
    pub group: Arc<str>,
}

impl FetchSink for GroupSink {
    fn deliver(&self, delivered: &Delivered) -> bool {
        self.mailbox.push(Event::Group {
            sub: self.sub,
            group: self.group.clone(),
            delivered: Box::new(delivered.clone()),
        })
    }

    fn end(&self, _end: FetchEnd) {
        self.mailbox.push(Event::GroupEnd { sub: self.sub });
    }

    fn heartbeat(&self) {}

    fn alive(&self) -> bool {
        !self.mailbox.is_closed()
    }
}
