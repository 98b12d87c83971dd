//! The system event log: a bounded ring of recent [`SystemEvent`]s, newest last.
//!
//! Events are recorded off the hot path only: a connect, a disconnect, a slow
//! consumer, a schema violation, a dead letter. A plain publish records nothing
//! and allocates nothing here. When the ring is full the oldest event goes.
//!
//! This is the placeholder for the `$sys.events` system station of the
//! architecture: nothing is persisted, and a restart starts an empty log.

use junction_api::{ClientRecord, SystemEvent, SystemEventKind, TenantId};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many events are kept.
pub(crate) const CAPACITY: usize = 1000;

struct Entry {
    tenant: TenantId,
    event: SystemEvent,
    /// The client, kept so that a name it announces after connecting is shown on
    /// its `client_connected` event too. At most [`CAPACITY`] records are held.
    client: Option<Arc<ClientRecord>>,
}

#[derive(Default)]
struct Ring {
    next_id: u64,
    entries: VecDeque<Entry>,
}

/// The log.
#[derive(Default)]
pub(crate) struct EventLog {
    ring: Mutex<Ring>,
}

/// What an event is about, besides its kind and text.
#[derive(Default)]
pub(crate) struct About<'a> {
    pub tenant: Option<&'a TenantId>,
    pub client: Option<&'a ClientRecord>,
    /// The client's shared record, when the caller has it (see [`Entry::client`]).
    pub keep: Option<Arc<ClientRecord>>,
    pub station: Option<&'a str>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl EventLog {
    /// Appends an event, dropping the oldest past [`CAPACITY`].
    pub fn record(&self, kind: SystemEventKind, about: About<'_>, message: String) {
        let client = about.client;
        let tenant = about
            .tenant
            .or(client.map(|c| c.tenant()))
            .cloned()
            .unwrap_or_default();
        let event = SystemEvent {
            id: 0,
            time_ms: now_ms(),
            kind,
            protocol: client.map(|c| c.protocol),
            client_id: client.map(|c| c.id),
            client_name: client.and_then(|c| c.name()).filter(|n| !n.is_empty()),
            station: about.station.map(str::to_string),
            message,
        };
        let mut ring = self.ring.lock();
        ring.next_id += 1;
        let id = ring.next_id;
        if ring.entries.len() >= CAPACITY {
            ring.entries.pop_front();
        }
        ring.entries.push_back(Entry {
            tenant,
            event: SystemEvent { id, ..event },
            client: about.keep,
        });
    }

    /// The newest `limit` events of `tenant`, newest first.
    pub fn recent(&self, tenant: &TenantId, limit: usize) -> Vec<SystemEvent> {
        let ring = self.ring.lock();
        ring.entries
            .iter()
            .rev()
            .filter(|e| e.tenant == *tenant)
            .take(limit)
            .map(|e| {
                let mut event = e.event.clone();
                if event.client_name.is_none() {
                    event.client_name = e
                        .client
                        .as_ref()
                        .and_then(|c| c.name())
                        .filter(|n| !n.is_empty());
                }
                event
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_answers_newest_first() {
        let log = EventLog::default();
        let t = TenantId::default_tenant();
        for i in 0..CAPACITY + 5 {
            log.record(
                SystemEventKind::SchemaViolation,
                About {
                    station: Some("s"),
                    ..About::default()
                },
                format!("e{i}"),
            );
        }
        let all = log.recent(&t, usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].message, format!("e{}", CAPACITY + 4));
        assert_eq!(all[CAPACITY - 1].message, "e5");
        assert!(all.windows(2).all(|w| w[0].id > w[1].id));
        assert_eq!(log.recent(&t, 2).len(), 2);
        assert!(log.recent(&TenantId(Arc::from("other")), 10).is_empty());
    }
}
