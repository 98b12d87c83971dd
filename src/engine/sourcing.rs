//! Mirrors and sources: a station copies another station's messages in, from
//! this broker or from another one (Junction or nats-server) reached as an
//! ordinary NATS client.
//!
//! - A **mirror** keeps the origin's sequences: before a message whose origin
//!   sequence is above the mirror's next one, the mirror's counter is raised,
//!   so gaps (deleted or filtered-out messages) stay gaps.
//! - A **source** appends with the station's own sequences and stamps each copy
//!   with `Nats-Stream-Source: <origin key> <origin seq>`, as nats-server does.
//!
//! Progress is never kept apart from the messages: a mirror resumes after its
//! last sequence, a source after the newest origin sequence found in its
//! stamps, both read back from the station's own (fsynced) log. A copy and its
//! progress are therefore one write, so a restart of either side can neither
//! lose nor duplicate a message. One task per (station, source) runs; a
//! supervisor starts and stops them as definitions come and go.

use super::StationEngine;
use super::station::{Append, Station};
use bytes::Bytes;
use junction_api::{
    CompiledTransform, EngineError, Headers, Message, PublishOptions, SourceStatus, StationSource,
    Subject, SubjectFilter, TenantId,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// The header a sourced copy carries.
pub const SOURCE_HEADER: &str = "Nats-Stream-Source";
/// Most messages copied in one store write.
const BATCH: usize = 512;
/// How often an idle local source looks for new messages.
const IDLE_POLL: Duration = Duration::from_millis(20);
/// Wait before retrying after an error.
const RETRY: Duration = Duration::from_millis(500);

/// Running sourcing tasks and their progress.
#[derive(Default)]
pub(crate) struct Sourcing {
    tasks: Mutex<HashMap<(TenantId, String), Running>>,
}

struct Running {
    /// The definition the tasks run for (mirror + sources, as JSON).
    definition: String,
    stop: CancellationToken,
    /// Mirror first (when there is one), then each source.
    status: Arc<Vec<Mutex<SourceStatus>>>,
}

impl Sourcing {
    /// A station's mirror and source progress, when it has tasks.
    pub(crate) fn status(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Option<(Option<SourceStatus>, Vec<SourceStatus>)> {
        let tasks = self.tasks.lock();
        let r = tasks.get(&(tenant.clone(), name.to_string()))?;
        let all: Vec<SourceStatus> = r
            .status
            .iter()
            .map(|s| {
                let mut s = s.lock().clone();
                if let Some(t) = s.last_contact {
                    s.active_ms = i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX);
                }
                s
            })
            .collect();
        let mirror = r.definition.starts_with("M");
        if mirror {
            Some((all.into_iter().next(), Vec::new()))
        } else {
            Some((None, all))
        }
    }
}

/// The identity a source's copies are stamped with: the origin's name, and for a
/// remote origin its host (never the credentials).
pub(crate) fn source_key(s: &StationSource) -> String {
    match &s.remote {
        None => s.name.clone(),
        Some(r) => {
            let hosts: Vec<&str> = r
                .url
                .split(',')
                .map(|u| {
                    let u = u.trim();
                    let u = u.split_once("://").map_or(u, |(_, rest)| rest);
                    u.rsplit_once('@').map_or(u, |(_, host)| host)
                })
                .collect();
            format!("{}@{}", s.name, hosts.join(","))
        }
    }
}

impl StationEngine {
    /// The brokers stations may name as a remote origin (`[remotes.<name>]`):
    /// name → (the tenant whose stations may use it, the remote). Taken at
    /// start and at each reload; a link reads it when it (re)connects.
    pub fn set_remotes(&self, remotes: HashMap<String, (TenantId, junction_api::RemoteOrigin)>) {
        *self.remotes.write() = remotes;
    }

    /// The configured remote `name` refers to, for a station of `tenant`.
    /// `Ok(None)`: `name` is not a configured remote's name (it is a URL).
    pub(crate) fn configured_remote(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<Option<junction_api::RemoteOrigin>, String> {
        match self.remotes.read().get(name.trim()) {
            None => Ok(None),
            Some((t, _)) if t != tenant => Err(format!(
                "remote '{name}' is configured for tenant '{}' only",
                t.0
            )),
            Some((_, r)) => Ok(Some(r.clone())),
        }
    }

    /// Starts the supervisor that runs every station's mirror and sources.
    pub fn start_sourcing(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(engine) = me.upgrade() else { return };
                engine.supervise_sourcing(&shutdown);
                drop(engine);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
            }
        });
    }

    fn supervise_sourcing(self: &Arc<Self>, shutdown: &CancellationToken) {
        let mut wanted: HashMap<(TenantId, String), (String, Arc<Station>)> = HashMap::new();
        for st in self.stations.all() {
            let c = st.config();
            if c.mirror.is_none() && c.sources.is_empty() {
                continue;
            }
            // A replicated station is written through its Raft group only; its
            // sources are not run here (see docs/stations.md).
            if st.is_replicated() {
                continue;
            }
            let def = match &c.mirror {
                Some(m) => format!("M{}", serde_json::to_string(m).unwrap_or_default()),
                None => format!("S{}", serde_json::to_string(&c.sources).unwrap_or_default()),
            };
            wanted.insert((st.tenant.clone(), st.name().to_string()), (def, st));
        }
        let mut tasks = self.sourcing.tasks.lock();
        tasks.retain(|k, r| {
            let keep = wanted.get(k).is_some_and(|(d, _)| *d == r.definition);
            if !keep {
                r.stop.cancel();
            }
            keep
        });
        for (key, (def, st)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let c = st.config();
            let (mirror, list) = match c.mirror {
                Some(m) => (true, vec![m]),
                None => (false, c.sources),
            };
            let stop = shutdown.child_token();
            let status: Arc<Vec<Mutex<SourceStatus>>> = Arc::new(
                list.iter()
                    .map(|s| {
                        Mutex::new(SourceStatus {
                            name: s.name.clone(),
                            remote: s.remote.as_ref().map(|_| source_key(s)),
                            active_ms: -1,
                            ..SourceStatus::default()
                        })
                    })
                    .collect(),
            );
            for (i, source) in list.into_iter().enumerate() {
                let link = Link {
                    engine: Arc::downgrade(self),
                    tenant: key.0.clone(),
                    station: key.1.clone(),
                    mirror,
                    key: source_key(&source),
                    filters: filters_of(&source),
                    transforms: transforms_of(&source),
                    source,
                    status: status.clone(),
                    index: i,
                    stop: stop.clone(),
                };
                tokio::spawn(link.run());
            }
            tasks.insert(
                key,
                Running {
                    definition: def,
                    stop,
                    status,
                },
            );
        }
    }
}

fn filters_of(s: &StationSource) -> Vec<SubjectFilter> {
    let mut out = Vec::new();
    if let Some(f) = &s.filter_subject {
        out.extend(SubjectFilter::new(f.clone()).ok());
    }
    for t in &s.transforms {
        out.extend(SubjectFilter::new(t.source.clone()).ok());
    }
    out
}

fn transforms_of(s: &StationSource) -> Vec<CompiledTransform> {
    s.transforms
        .iter()
        .filter_map(|t| CompiledTransform::new(&t.source, &t.destination).ok())
        .collect()
}

/// One origin copied into one station.
pub(crate) struct Link {
    pub(crate) engine: std::sync::Weak<StationEngine>,
    pub(crate) tenant: TenantId,
    pub(crate) station: String,
    pub(crate) mirror: bool,
    pub(crate) key: String,
    pub(crate) source: StationSource,
    pub(crate) filters: Vec<SubjectFilter>,
    pub(crate) transforms: Vec<CompiledTransform>,
    pub(crate) status: Arc<Vec<Mutex<SourceStatus>>>,
    pub(crate) index: usize,
    pub(crate) stop: CancellationToken,
}

/// A message read from the origin, with its origin sequence.
pub(crate) struct Copied {
    pub seq: u64,
    pub subject: Subject,
    pub headers: Option<Headers>,
    pub payload: Bytes,
}

impl Link {
    pub(crate) fn target(&self) -> Result<Arc<Station>, EngineError> {
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| EngineError::Storage("engine stopped".into()))?;
        engine.stations.get(&self.tenant, &self.station)
    }

    pub(crate) fn set_status(&self, f: impl FnOnce(&mut SourceStatus)) {
        if let Some(s) = self.status.get(self.index) {
            f(&mut s.lock());
        }
    }

    pub(crate) fn set_error(&self, e: impl std::fmt::Display) {
        let text = e.to_string();
        tracing::warn!(station = %self.station, origin = %self.key, error = %text, "source link");
        self.set_status(|s| s.error = Some(text));
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub(crate) async fn pause(&self, d: Duration) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            () = tokio::time::sleep(d) => {}
        }
    }

    /// The first origin sequence still to copy, read back from the station.
    pub(crate) fn resume_from(&self, target: &Station) -> u64 {
        let start = self.source.start_seq.max(1);
        if self.mirror {
            let last = target.last_seq();
            return if last > 0 { last + 1 } else { start };
        }
        let (first, last) = target.bounds();
        let mut seq = last;
        while seq >= first.max(1) && seq > 0 {
            let found = target.read_message(seq).ok().flatten().and_then(|m| {
                m.headers.as_ref().and_then(|h| {
                    h.get_all(SOURCE_HEADER).find_map(|v| {
                        let (k, n) = v.rsplit_once(' ')?;
                        if k == self.key {
                            n.parse::<u64>().ok()
                        } else {
                            None
                        }
                    })
                })
            });
            if let Some(n) = found {
                return n + 1;
            }
            seq -= 1;
        }
        start
    }

    /// Is `subject` wanted, and as what subject is it stored?
    fn map_subject(&self, subject: &Subject) -> Option<Subject> {
        if self.transforms.is_empty() {
            if self.filters.is_empty() || self.filters.iter().any(|f| f.matches(subject)) {
                return Some(subject.clone());
            }
            return None;
        }
        let t = self.transforms.iter().find(|t| t.matches(subject))?;
        Subject::new(t.apply(&subject.to_string())?).ok()
    }

    /// Stores `batch` (in origin order) durably; returns the next origin
    /// sequence to copy. Messages the station already has are skipped.
    pub(crate) async fn store(
        &self,
        target: &Arc<Station>,
        batch: Vec<Copied>,
        mut next: u64,
    ) -> Result<u64, EngineError> {
        let mut runs: Vec<Vec<Message>> = Vec::new();
        let mut raises: Vec<u64> = Vec::new();
        let mut last_mirror_seq = target.last_seq();
        for c in batch {
            if c.seq < next {
                continue;
            }
            next = c.seq + 1;
            let Some(subject) = self.map_subject(&c.subject) else {
                continue;
            };
            let mut headers = c.headers;
            if self.mirror {
                if c.seq <= last_mirror_seq {
                    continue;
                }
                if c.seq > last_mirror_seq + 1 || runs.is_empty() {
                    runs.push(Vec::new());
                    raises.push(c.seq - 1);
                }
                last_mirror_seq = c.seq;
            } else {
                let h = headers.get_or_insert_with(Headers::new);
                h.append(SOURCE_HEADER, format!("{} {}", self.key, c.seq));
                if runs.is_empty() {
                    runs.push(Vec::new());
                    raises.push(0);
                }
            }
            if let Some(run) = runs.last_mut() {
                run.push(Message {
                    subject,
                    reply: None,
                    headers,
                    payload: c.payload,
                });
            }
        }
        for (run, raise) in runs.into_iter().zip(raises) {
            if run.is_empty() {
                continue;
            }
            if self.mirror && raise > 0 {
                target.raise_last_seq(raise, "the mirrored stream");
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            let mut tx = Some(tx);
            let n = run.len();
            let now = now_ns();
            let appends: Vec<Append<'_>> = run
                .iter()
                .enumerate()
                .map(|(i, m)| Append {
                    message: m,
                    options: &PublishOptions::NONE,
                    lineage: Bytes::new(),
                    now,
                    done: if i + 1 == n {
                        let tx = tx.take();
                        Some(
                            Box::new(move |r: Result<junction_api::PubAck, EngineError>| {
                                if let Some(tx) = tx {
                                    let _ = tx.send(r.map(|_| ()));
                                }
                            }) as junction_api::StoredCallback,
                        )
                    } else {
                        None
                    },
                })
                .collect();
            target.append_batch(appends, None);
            rx.await
                .map_err(|_| EngineError::Storage("store write dropped".into()))??;
        }
        Ok(next)
    }

    async fn run(self) {
        if self.source.remote.is_some() {
            super::sourcing_remote::run(self).await;
            return;
        }
        let mut next: Option<u64> = None;
        while !self.stopped() {
            let Ok(target) = self.target() else { return };
            let engine = match self.engine.upgrade() {
                Some(e) => e,
                None => return,
            };
            let origin = match engine.stations.get(&self.tenant, &self.source.name) {
                Ok(o) => o,
                Err(_) => {
                    drop(engine);
                    self.set_error(format!("stream '{}' not found", self.source.name));
                    self.pause(RETRY).await;
                    continue;
                }
            };
            drop(engine);
            let from = match next {
                Some(n) => n,
                None => {
                    let mut n = self.resume_from(&target);
                    if self.source.start_time_ns > 0 && n <= 1.max(self.source.start_seq) {
                        let t = SystemTime::UNIX_EPOCH
                            + Duration::from_nanos(self.source.start_time_ns);
                        n = n.max(origin.first_seq_at_or_after(t));
                    }
                    next = Some(n);
                    n
                }
            };
            let filters = self.filters.clone();
            let o = origin.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let mut from = from;
                while out.len() < BATCH {
                    let Some(seq) = o.next_from(from, &filters) else {
                        break;
                    };
                    if let Ok(Some(m)) = o.read_message(seq) {
                        out.push(Copied {
                            seq,
                            subject: m.subject,
                            headers: m.headers,
                            payload: m.payload,
                        });
                    }
                    from = seq + 1;
                }
                let lag = if filters.is_empty() {
                    o.last_seq().saturating_sub(from.saturating_sub(1))
                } else {
                    o.count_from_bounded(from, &filters, 100_000)
                        .unwrap_or(100_000)
                };
                (out, lag)
            })
            .await;
            let Ok((batch, lag)) = read else {
                self.pause(RETRY).await;
                continue;
            };
            // The origin was read just now.
            let active = 0;
            let contact = Some(std::time::Instant::now());
            if batch.is_empty() {
                self.set_status(|s| {
                    s.lag = lag;
                    s.active_ms = active;
                    s.last_contact = contact;
                    s.error = None;
                });
                self.pause(IDLE_POLL).await;
                continue;
            }
            let last = batch.last().map_or(from, |c| c.seq);
            match self.store(&target, batch, from).await {
                Ok(n) => {
                    next = Some(n);
                    self.set_status(|s| {
                        s.last_seq = last;
                        s.lag = lag;
                        s.active_ms = active;
                        s.last_contact = contact;
                        s.error = None;
                    });
                }
                Err(e) => {
                    // Re-read progress from the log: what was stored stays.
                    next = None;
                    self.set_error(e);
                    self.pause(RETRY).await;
                }
            }
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
