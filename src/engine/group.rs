//! Consumer groups: a durable cursor on a station, pending acks, redelivery, and the
//! queue of waiting pull requests.
//!
//! A group hands each message to one member (one pull request at a time, in order),
//! keeps it pending until acked, and redelivers it after `ack_wait` or a NAK, up to
//! `max_deliver` times. Its position is written to storage by the engine's ticker
//! (about every 100 ms when it changed), so after a crash a group resumes from its
//! last saved position and redelivers what was pending: delivery is at least once.

use super::station::{RemoteRead, Station};
use ahash::AHashMap;
use junction_api::{
    AckKind, AckPolicy, DeliverPolicy, Delivered, EngineError, FetchEnd, FetchRequest, FetchSink,
    GroupConfig, GroupState, StoredMessage, Subject, SubjectFilter,
};
use junction_storage::Store;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Most index entries one delivery's `pending` count walks (beyond, it is an
/// estimate: the station's last sequence minus the message's).
const PENDING_COUNT_LIMIT: u64 = 4096;
/// Most new messages a fill reads ahead in one range scan.
const READ_AHEAD: usize = 256;

/// Timers that expire pull requests may run this much early: a request whose
/// `expires` is that close counts as expired. Clients (nats-py) give up about 100 µs
/// after `expires`, so the `408` must be sent within that window.
pub(crate) const EXPIRY_SLACK: Duration = Duration::from_micros(100);

/// How late (behind when it was due) a paced replay delivery may go and still
/// count as on time for the next gap: a little over the group tick.
const REPLAY_TICK_SLACK: Duration = Duration::from_millis(100);

struct Pending {
    consumer_seq: u64,
    deliveries: u32,
    deadline: Instant,
    /// When it was delivered (an ack metric's `ack_time`).
    sent: Instant,
}

/// The messages delivered and not yet acked, by stream sequence, with their
/// consumer sequences kept in order too: the consumer ack floor is found without
/// a scan (it was a scan of every pending message on every ack, which made a
/// batch of 500 acks cost 125,000 steps).
#[derive(Default)]
struct PendingSet {
    by_seq: BTreeMap<u64, Pending>,
    consumer_seqs: BTreeSet<u64>,
}

impl PendingSet {
    fn insert(&mut self, seq: u64, p: Pending) {
        self.consumer_seqs.insert(p.consumer_seq);
        if let Some(old) = self.by_seq.insert(seq, p) {
            self.consumer_seqs.remove(&old.consumer_seq);
        }
    }

    fn remove(&mut self, seq: &u64) -> Option<Pending> {
        let p = self.by_seq.remove(seq)?;
        self.consumer_seqs.remove(&p.consumer_seq);
        Some(p)
    }

    /// Moves the ack deadline of `seq`, if it is pending.
    fn extend(&mut self, seq: &u64, deadline: Instant) {
        if let Some(p) = self.by_seq.get_mut(seq) {
            p.deadline = deadline;
        }
    }

    fn lowest_consumer_seq(&self) -> Option<u64> {
        self.consumer_seqs.first().copied()
    }

    fn contains_key(&self, seq: &u64) -> bool {
        self.by_seq.contains_key(seq)
    }

    fn len(&self) -> usize {
        self.by_seq.len()
    }

    fn keys(&self) -> impl Iterator<Item = &u64> {
        self.by_seq.keys()
    }

    fn values(&self) -> impl Iterator<Item = &Pending> {
        self.by_seq.values()
    }

    fn iter(&self) -> impl Iterator<Item = (&u64, &Pending)> {
        self.by_seq.iter()
    }

    fn range(&self, r: std::ops::RangeToInclusive<u64>) -> impl Iterator<Item = (&u64, &Pending)> {
        self.by_seq.range(r)
    }
}

struct Redelivery {
    not_before: Instant,
    deliveries: u32,
}

struct Waiting {
    sink: Arc<dyn FetchSink>,
    batch: usize,
    bytes: usize,
    /// Messages delivered to this request so far.
    delivered: usize,
    no_wait: bool,
    expires: Option<Instant>,
    heartbeat: Option<Duration>,
    last_sent: Instant,
}

/// What the ticker should do with a group afterwards.
pub(crate) enum TickOutcome {
    /// Keep it.
    Keep,
    /// An ephemeral group was idle past its threshold: delete it.
    Expired,
}

#[derive(Default)]
struct Run {
    cursor: u64,
    initial: VecDeque<u64>,
    consumer_seq: u64,
    delivered_stream_seq: u64,
    pending: PendingSet,
    redeliver: BTreeMap<u64, Redelivery>,
    ack_floor_stream: u64,
    ack_floor_consumer: u64,
    /// Sequences acked before this node delivered them: a replicated
    /// station's earlier leader delivered them and the ack came to this one
    /// (skipped when the cursor reaches them).
    acked_ahead: BTreeSet<u64>,
    waiting: VecDeque<Waiting>,
    last_active: Option<SystemTime>,
    idle_since: Option<Instant>,
    /// Replay at the original pace: when the last first delivery went out,
    /// and when its message was stored.
    replay_last: Option<(Instant, SystemTime)>,
    dirty: bool,
    deleted: bool,
    /// `(cursor, until)`: with the cursor where it is, no message from it up
    /// to `until` matches the filters (a filtered group found nothing there
    /// last time). The next look starts after `until`, so a caught-up group
    /// of a busy station with other subjects looks at each message once, not
    /// on every commit from its cursor on. Used only while the cursor has not
    /// moved: a sequence at or below the committed one never gets a new
    /// message.
    clear: (u64, u64),
}

impl Run {
    /// Takes a saved position: what was unacked is delivered again now.
    fn restore(&mut self, s: Saved) {
        let now = Instant::now();
        self.cursor = s.cursor;
        self.initial = s.initial.into();
        self.consumer_seq = s.consumer_seq;
        self.delivered_stream_seq = s.delivered_stream_seq;
        self.ack_floor_stream = s.ack_floor_stream;
        self.ack_floor_consumer = s.ack_floor_consumer;
        self.acked_ahead = s.acked_ahead.into_iter().collect();
        for (seq, deliveries) in s.unacked {
            self.redeliver.insert(
                seq,
                Redelivery {
                    not_before: now,
                    deliveries,
                },
            );
        }
        self.dirty = false;
    }
}

/// The saved form of a group's position.
#[derive(Serialize, Deserialize, Default)]
struct Saved {
    cursor: u64,
    initial: Vec<u64>,
    consumer_seq: u64,
    delivered_stream_seq: u64,
    ack_floor_stream: u64,
    ack_floor_consumer: u64,
    /// (stream seq, deliveries so far)
    unacked: Vec<(u64, u32)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acked_ahead: Vec<u64>,
}

/// One consumer group.
pub(crate) struct Group {
    pub name: String,
    pub created: SystemTime,
    /// Its definition: fixed but for what an update may change
    /// ([`Group::update`]).
    config: RwLock<GroupConfig>,
    filters: Vec<SubjectFilter>,
    run: Mutex<Run>,
    store: Store,
    state_key: Vec<u8>,
    /// Paused with a `pause_until` still ahead: the tick announces the end
    /// of the pause once ([`Group::pause_ended`]).
    pause_watch: std::sync::atomic::AtomicBool,
}

/// Storage key of a group's position.
pub fn state_key(station_id: u64, name: &str) -> Vec<u8> {
    let mut k = station_id.to_be_bytes().to_vec();
    k.push(b'/');
    k.extend_from_slice(name.as_bytes());
    k
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::invalid_group_config(msg)
}

/// What an update of a group may change, as nats-server allows it: limits,
/// timers, description, metadata and push delivery settings; not where it
/// starts, what it acks, its filters, or whether it is pushed to.
pub fn check_update(old: &GroupConfig, new: &GroupConfig) -> Result<(), EngineError> {
    let fixed = |what: &str| Err(invalid(format!("{what} can not be updated")));
    if old.deliver_policy != new.deliver_policy {
        return fixed("deliver policy");
    }
    if old.ack_policy != new.ack_policy {
        return fixed("ack policy");
    }
    if old.durable != new.durable {
        return fixed("durable name");
    }
    if old.filter_subjects != new.filter_subjects {
        return fixed("filter subjects");
    }
    if old.replay_original != new.replay_original {
        return fixed("replay policy");
    }
    match (&old.push, &new.push) {
        (None, Some(_)) | (Some(_), None) => return fixed("push or pull mode"),
        (Some(a), Some(b)) if a.deliver_group != b.deliver_group => {
            return fixed("deliver group");
        }
        _ => {}
    }
    Ok(())
}

/// Checks a configuration and fills in defaults, as nats-server does.
pub fn normalize(mut c: GroupConfig) -> Result<GroupConfig, EngineError> {
    super::stations::check_name("consumer", &c.name).map_err(invalid)?;
    for (what, v) in [
        ("max_deliver", c.max_deliver),
        ("max_ack_pending", c.max_ack_pending),
        ("max_waiting", c.max_waiting),
        ("max_batch", c.max_batch),
        ("max_bytes", c.max_bytes),
    ] {
        super::stations::check_limit(what, v).map_err(invalid)?;
    }
    if c.ack_wait.is_zero() {
        c.ack_wait = c
            .backoff
            .first()
            .copied()
            .unwrap_or(Duration::from_secs(30));
    }
    if c.max_deliver == 0 {
        c.max_deliver = -1;
    }
    if c.max_deliver > 0 && !c.backoff.is_empty() && c.max_deliver <= c.backoff.len() as i64 {
        return Err(invalid(
            "max deliver is required to be > length of backoff values",
        ));
    }
    if c.max_waiting == 0 {
        c.max_waiting = 512;
    }
    if c.max_ack_pending == 0 {
        c.max_ack_pending = if c.ack_policy == AckPolicy::None {
            -1
        } else {
            1000
        };
    }
    if !c.durable && c.inactive_threshold.is_zero() {
        c.inactive_threshold = Duration::from_secs(5);
    }
    for f in &c.filter_subjects {
        SubjectFilter::new(f.clone())
            .map_err(|e| invalid(format!("invalid filter subject '{f}': {e}")))?;
    }
    if junction_api::parse_sample_freq(&c.sample_freq).is_none() {
        return Err(invalid(format!(
            "failed to parse consumer sampling configuration: {:?}",
            c.sample_freq
        )));
    }
    Ok(c)
}

impl Group {
    /// A new group positioned by its deliver policy.
    pub fn create(
        config: GroupConfig,
        station: &Station,
        store: Store,
    ) -> Result<Self, EngineError> {
        let filters = config
            .filter_subjects
            .iter()
            .map(|f| SubjectFilter::new(f.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut run = Run::default();
        let (first, last) = station.bounds();
        match &config.deliver_policy {
            DeliverPolicy::All => run.cursor = first,
            DeliverPolicy::Last => run.cursor = last.max(1),
            DeliverPolicy::New => run.cursor = last + 1,
            DeliverPolicy::ByStartSequence(s) => run.cursor = (*s).max(1),
            DeliverPolicy::ByStartTime(t) => run.cursor = station.first_seq_at_or_after(*t),
            DeliverPolicy::LastPerSubject => {
                run.initial = station.last_per_subject(&filters).into();
                run.cursor = last + 1;
            }
        }
        run.ack_floor_stream = run.cursor.saturating_sub(1);
        run.dirty = true;
        run.idle_since = Some(Instant::now());
        Ok(Group {
            name: config.name.clone(),
            created: SystemTime::now(),
            state_key: state_key(station.id, &config.name),
            pause_watch: std::sync::atomic::AtomicBool::new(config.paused_at(SystemTime::now())),
            filters,
            config: RwLock::new(config),
            run: Mutex::new(run),
            store,
        })
    }

    /// A group recovered from storage: whatever was unacked is redelivered.
    pub fn recover(
        config: GroupConfig,
        created: SystemTime,
        station: &Station,
        store: Store,
    ) -> Result<Self, EngineError> {
        let group = Group::create(config, station, store.clone())?;
        let saved = store
            .list_state(&group.state_key)
            .map_err(|e| EngineError::Storage(e.to_string()))?
            .into_iter()
            .find(|(k, _)| *k == group.state_key)
            .and_then(|(_, v)| serde_json::from_slice::<Saved>(&v).ok());
        let group = Group { created, ..group };
        if let Some(s) = saved {
            group.run.lock().restore(s);
        }
        Ok(group)
    }

    fn wants(&self, subject: &Subject) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.matches(subject))
    }

    /// Does this group want messages on `subject`?
    pub fn interested_in(&self, subject: &bytes::Bytes) -> bool {
        self.wants(&Subject::from_trusted(subject.clone()))
    }

    /// True when this group has acknowledged (or will never see) `seq`.
    pub fn done_with(&self, seq: u64, subject: &bytes::Bytes) -> bool {
        if !self.interested_in(subject) {
            return true;
        }
        let run = self.run.lock();
        run.acked_ahead.contains(&seq)
            || (seq < run.cursor
                && !run.pending.contains_key(&seq)
                && !run.redeliver.contains_key(&seq)
                && !run.initial.contains(&seq))
    }

    /// The lowest sequence [`Group::done_with`] may answer false for: every
    /// sequence below it is done with (the cursor passed it and it is neither
    /// pending, nor to be redelivered, nor an initial one still owed).
    pub fn first_not_done(&self) -> u64 {
        let run = self.run.lock();
        let mut first = run.cursor;
        if let Some(&s) = run.pending.keys().next() {
            first = first.min(s);
        }
        if let Some((&s, _)) = run.redeliver.first_key_value() {
            first = first.min(s);
        }
        if let Some(&s) = run.initial.iter().min() {
            first = first.min(s);
        }
        first
    }

    pub fn filters(&self) -> &[SubjectFilter] {
        &self.filters
    }

    pub fn state(&self, station: &Station) -> GroupState {
        let run = self.run.lock();
        let redelivered =
            run.pending.values().filter(|p| p.deliveries > 1).count() + run.redeliver.len();
        GroupState {
            delivered_consumer_seq: run.consumer_seq,
            delivered_stream_seq: run.delivered_stream_seq,
            ack_floor_consumer_seq: run.ack_floor_consumer,
            ack_floor_stream_seq: run.ack_floor_stream,
            num_ack_pending: run.pending.len() as u64,
            num_redelivered: redelivered as u64,
            num_waiting: run.waiting.len() as u64,
            num_pending: station.count_from(run.cursor, &self.filters)
                + run.initial.len() as u64
                + run.redeliver.len() as u64,
            last_active: run.last_active,
        }
    }

    /// Its definition.
    pub fn config(&self) -> GroupConfig {
        self.config.read().clone()
    }

    /// Whether it lives until deleted.
    pub fn durable(&self) -> bool {
        self.config.read().durable
    }

    /// Changes its definition in place (checked by [`check_update`]): limits and
    /// timers apply from the next delivery; its position is kept.
    pub fn update(&self, config: GroupConfig) {
        self.pause_watch.store(
            config.paused_at(SystemTime::now()),
            std::sync::atomic::Ordering::Release,
        );
        *self.config.write() = config;
        // A larger max_ack_pending or max_waiting may let waiting pulls go on.
        self.run.lock().dirty = true;
    }

    /// The time its pause ended, once, when a `pause_until` it was paused
    /// until has passed (not when a request lifted it: that is announced by
    /// the request).
    pub fn pause_ended(&self) -> Option<SystemTime> {
        use std::sync::atomic::Ordering;
        if !self.pause_watch.load(Ordering::Acquire) {
            return None;
        }
        let until = self.config.read().pause_until;
        match until {
            Some(t) if t > SystemTime::now() => None,
            _ => {
                self.pause_watch.store(false, Ordering::Release);
                until
            }
        }
    }

    /// Queues a pull request and delivers what it can now.
    pub fn fetch(&self, station: &Station, request: FetchRequest, sink: Arc<dyn FetchSink>) {
        let (exceeds, max_waiting, push_based) = {
            let c = self.config.read();
            let push_based = request.pull_request && c.push.is_some();
            let exceeds = (c.max_batch > 0 && request.batch as i64 > c.max_batch)
                || (!c.max_expires.is_zero() && request.expires.is_some_and(|e| e > c.max_expires))
                || (c.max_bytes > 0 && request.max_bytes as i64 > c.max_bytes);
            (exceeds, c.max_waiting, push_based)
        };
        if push_based {
            sink.end(FetchEnd::PushBased);
            return;
        }
        {
            let mut run = self.run.lock();
            run.last_active = Some(SystemTime::now());
            run.idle_since = None;
            if run.deleted {
                drop(run);
                sink.end(FetchEnd::GroupDeleted);
                return;
            }
            if exceeds {
                drop(run);
                sink.end(FetchEnd::ExceedsLimits);
                return;
            }
            if max_waiting > 0 && run.waiting.len() as i64 >= max_waiting {
                drop(run);
                sink.end(FetchEnd::MaxWaiting);
                return;
            }
            let now = Instant::now();
            run.waiting.push_back(Waiting {
                sink,
                batch: request.batch.max(1),
                bytes: request.max_bytes,
                delivered: 0,
                no_wait: request.no_wait,
                expires: request.expires.map(|d| now + d),
                heartbeat: request.idle_heartbeat,
                last_sent: now,
            });
        }
        self.fill(station);
    }

    fn ack_wait_for(&self, deliveries: u32) -> Duration {
        let c = self.config.read();
        let b = &c.backoff;
        if b.is_empty() {
            c.ack_wait
        } else {
            b[(deliveries as usize).saturating_sub(1).min(b.len() - 1)]
        }
    }

    /// How many messages a fill reads ahead: no more than the first waiting
    /// request takes and `max_ack_pending` leaves room for (at least one, at
    /// most [`READ_AHEAD`]).
    fn want(run: &Run, acks: bool, limit: i64) -> usize {
        let room = if acks && limit > 0 {
            (limit as usize).saturating_sub(run.pending.len())
        } else {
            usize::MAX
        };
        run.waiting
            .front()
            .map_or(1, |w| w.batch.min(room).clamp(1, READ_AHEAD))
    }

    /// Delivers to waiting pull requests while there are messages and room.
    pub fn fill(&self, station: &Station) {
        let mut run = self.run.lock();
        let (acks, limit, paused, replay_original) = {
            let c = self.config.read();
            (
                c.ack_policy != AckPolicy::None,
                c.max_ack_pending,
                c.paused_at(SystemTime::now()),
                c.replay_original,
            )
        };
        if paused {
            // Nothing goes out until the pause ends (the ticker fills again
            // then): waiting requests wait, no_wait ones end as when nothing
            // can be delivered.
            Self::end_no_wait(&mut run);
            return;
        }
        // New messages read ahead in one range scan (a group without filters):
        // a point read per message cost half of a durable pull's server time.
        let mut ahead: VecDeque<StoredMessage> = VecDeque::new();
        // Messages after the cursor matching the filters (each delivery's
        // `pending`): counted once per fill, then counted down.
        let mut after_cursor: Option<u64> = None;
        // `ahead` holds remote messages (read from the station's S3 tier), which
        // are delivered from it for filtered groups too.
        let mut remote_ahead = false;
        loop {
            if run.waiting.is_empty() {
                return;
            }
            // Below the local log, the cursor's messages come from the remote
            // tier: from the cache, or a fetch is started and this fill ends (the
            // fetch wakes the groups). The group never waits on S3 here.
            while ahead.front().is_some_and(|m| m.seq < run.cursor) {
                ahead.pop_front();
            }
            let mut remote_pending = false;
            if ahead.is_empty() {
                remote_ahead = false;
                // No more than can be delivered now, as for local reads.
                let want = Self::want(&run, acks, limit);
                match station.remote_from(run.cursor, &self.filters, want) {
                    RemoteRead::Local => {}
                    RemoteRead::Pending => {
                        if run.redeliver.is_empty() && run.initial.is_empty() {
                            return;
                        }
                        remote_pending = true;
                    }
                    RemoteRead::Ready { messages, next } => {
                        if messages.is_empty() {
                            // Nothing in this block for the group's filters.
                            run.cursor = next;
                            continue;
                        }
                        ahead = messages.into();
                        remote_ahead = true;
                    }
                }
            }
            if acks && limit > 0 && run.pending.len() as i64 >= limit {
                // Nothing can be delivered until acks free room: no_wait requests
                // end now rather than wait without end.
                Self::end_no_wait(&mut run);
                return;
            }
            let now = Instant::now();
            let mut cleared = None;
            // Redeliveries first, then the start set, then new messages.
            let candidate = run
                .redeliver
                .iter()
                .find(|(_, r)| r.not_before <= now)
                .map(|(s, r)| (*s, r.deliveries, Source::Redeliver))
                .or_else(|| run.initial.front().map(|s| (*s, 0, Source::Initial)))
                .or_else(|| {
                    if remote_pending {
                        return None;
                    }
                    if remote_ahead {
                        return ahead.front().map(|m| (m.seq, 0, Source::Cursor));
                    }
                    if self.filters.is_empty() {
                        while ahead.front().is_some_and(|m| m.seq < run.cursor) {
                            ahead.pop_front();
                        }
                        if ahead.is_empty() {
                            // No more than can be delivered now: a fill woken by
                            // one ack has room for one message.
                            let want = Self::want(&run, acks, limit);
                            ahead = station.read_from(run.cursor, want).into();
                        }
                        if let Some(m) = ahead.front() {
                            return Some((m.seq, 0, Source::Cursor));
                        }
                    }
                    let (clear_from, clear_until) = run.clear;
                    let from = if clear_from == run.cursor && clear_until >= run.cursor {
                        clear_until + 1
                    } else {
                        run.cursor
                    };
                    let (next, upto) = station.next_within(from, &self.filters);
                    if next.is_none() && upto >= run.cursor {
                        cleared = Some((run.cursor, upto));
                    }
                    next.map(|s| (s, 0, Source::Cursor))
                });
            if let Some(c) = cleared.take() {
                run.clear = c;
            }
            let Some((seq, previous, source)) = candidate else {
                let before = run.waiting.len();
                Self::end_no_wait(&mut run);
                if run.waiting.len() == before || run.waiting.is_empty() {
                    return;
                }
                continue;
            };
            if source == Source::Cursor && run.acked_ahead.remove(&seq) {
                // Acked already (delivered by an earlier leader).
                Self::done_with_candidate(&mut run, source, seq);
                continue;
            }
            let read_ahead = match source {
                Source::Cursor if ahead.front().is_some_and(|m| m.seq == seq) => ahead.pop_front(),
                _ => None,
            };
            // A redelivery (or start-set message) in the remote range whose block
            // is not cached: fetched in the background, never waited for here
            // (a fill may run on the storage notifier's thread).
            if read_ahead.is_none() && !station.readable_now(seq) {
                return;
            }
            let message = match read_ahead
                .map_or_else(|| station.read_message(seq), |m| Ok(Some(m)))
            {
                Ok(Some(m)) => m,
                // Removed meanwhile (limits, purge): skip it.
                Ok(None) => {
                    Self::done_with_candidate(&mut run, source, seq);
                    continue;
                }
                // A record that failed its checksum can never be delivered
                // (counted and logged where it was read): skip it.
                Err(e) if e.kind() == junction_api::ErrorKind::Corrupt => {
                    Self::done_with_candidate(&mut run, source, seq);
                    continue;
                }
                // Storage or the remote tier cannot answer now: the message
                // is not skipped; the group tries again on its next tick.
                Err(e) => {
                    tracing::warn!(group = %self.name, seq, error = %e, "message cannot be read now; delivery waits");
                    return;
                }
            };
            // Replay at the original pace: not before the gap between this
            // message and the last one delivered has passed since that
            // delivery was due. The ticker fills again about every 50 ms, so a
            // delivery goes up to a tick late; counting the next gap from when
            // it was due (not from when the tick sent it) keeps those delays
            // from adding up over a replay. After a longer stall (nobody
            // pulling) the next gap counts from the late delivery, as in
            // nats-server, so a stalled replay does not burst.
            let mut replay_due = now;
            if replay_original
                && source != Source::Redeliver
                && let Some((sent, stored)) = run.replay_last
            {
                let gap = message.time.duration_since(stored).unwrap_or_default();
                let due = sent + gap;
                if now < due {
                    return;
                }
                if now.duration_since(due) < REPLAY_TICK_SLACK {
                    replay_due = due;
                }
            }
            let size = message.payload.len();
            let Some(w) = run.waiting.front_mut() else {
                return;
            };
            if w.bytes > 0 && size > w.bytes {
                let (messages, bytes) = (w.batch, w.bytes);
                if let Some(w) = run.waiting.pop_front() {
                    w.sink.end(FetchEnd::MaxBytes { messages, bytes });
                }
                continue;
            }
            let deliveries = previous + 1;
            let consumer_seq = run.consumer_seq + 1;
            // Messages still to come (clients read 0 as "caught up": an object
            // store's reader stops there): the start set left, plus what is
            // stored from the cursor on, counted once per fill (exact for what is
            // stored when the fill starts; an estimate when counting would walk
            // too far) and counted down as the cursor moves.
            let from_cursor = *after_cursor.get_or_insert_with(|| {
                station
                    .count_from_bounded(run.cursor, &self.filters, PENDING_COUNT_LIMIT)
                    .unwrap_or_else(|| (station.last_seq() + 1).saturating_sub(run.cursor))
            });
            let initial_left = run.initial.len() as u64;
            let pending = match source {
                Source::Cursor => from_cursor.saturating_sub(1) + initial_left,
                Source::Initial => from_cursor + initial_left.saturating_sub(1),
                Source::Redeliver => from_cursor + initial_left,
            };
            let stored_at = message.time;
            let delivered = Delivered {
                message: self.shape(message),
                consumer_seq,
                delivery_count: deliveries,
                pending,
            };
            let Some(w) = run.waiting.front_mut() else {
                return;
            };
            if !w.sink.deliver(&delivered) {
                run.waiting.pop_front();
                continue;
            }
            if source == Source::Cursor {
                after_cursor = Some(from_cursor.saturating_sub(1));
            }
            w.batch -= 1;
            w.delivered += 1;
            if w.bytes > 0 {
                w.bytes -= size;
            }
            w.last_sent = now;
            if w.batch == 0
                && let Some(w) = run.waiting.pop_front()
            {
                w.sink.end(FetchEnd::Complete);
            }
            Self::done_with_candidate(&mut run, source, seq);
            if replay_original && source != Source::Redeliver {
                run.replay_last = Some((replay_due, stored_at));
            }
            run.consumer_seq = consumer_seq;
            run.delivered_stream_seq = run.delivered_stream_seq.max(seq);
            if acks {
                let deadline = now + self.ack_wait_for(deliveries);
                run.pending.insert(
                    seq,
                    Pending {
                        consumer_seq,
                        deliveries,
                        deadline,
                        sent: now,
                    },
                );
            } else {
                Self::advance_floor(&mut run);
            }
            run.dirty = true;
        }
    }

    /// `seq`, taken from `source`, was delivered or skipped: move past it there.
    fn done_with_candidate(run: &mut Run, source: Source, seq: u64) {
        match source {
            Source::Redeliver => {
                run.redeliver.remove(&seq);
            }
            Source::Initial => {
                run.initial.pop_front();
            }
            Source::Cursor => run.cursor = seq + 1,
        }
    }

    /// Nothing can be delivered now: no_wait requests end, as in nats-server: one that
    /// got messages with 408, one that got none with 404, unless it has an expiry,
    /// then it waits for the first message.
    fn end_no_wait(run: &mut Run) {
        run.waiting.retain(|w| {
            if !w.no_wait {
                return true;
            }
            if w.delivered > 0 {
                w.sink.end(FetchEnd::Timeout {
                    messages: w.batch,
                    bytes: w.bytes,
                });
            } else if w.expires.is_none() {
                w.sink.end(FetchEnd::NoMessages);
            } else {
                return true;
            }
            false
        });
    }

    fn shape(&self, mut m: StoredMessage) -> StoredMessage {
        if self.config.read().lineage_headers {
            m.render_lineage();
        }
        if self.config.read().headers_only {
            let size = m.payload.len();
            m.payload = bytes::Bytes::new();
            m.headers
                .get_or_insert_with(Default::default)
                .insert("Nats-Msg-Size", size.to_string());
        }
        m
    }

    /// An ack of a message not pending here: one waiting for its redelivery
    /// (its ack wait ran out, or a position taken from another replica holds
    /// it unacked) counts, as in nats-server; one past the cursor was delivered
    /// by an earlier leader of a replicated station and is skipped when the
    /// cursor gets there. Returns whether the ack did anything.
    fn ack_unheld(run: &mut Run, seq: u64, replicated: bool) -> bool {
        if run.redeliver.remove(&seq).is_some() {
            return true;
        }
        if let Some(at) = run.initial.iter().position(|s| *s == seq) {
            run.initial.remove(at);
            return true;
        }
        replicated && seq >= run.cursor && run.acked_ahead.insert(seq)
    }

    fn advance_floor(run: &mut Run) {
        let lowest_open = [
            run.pending.keys().next().copied(),
            run.redeliver.keys().next().copied(),
            run.initial.iter().min().copied(),
            Some(run.cursor),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(run.cursor);
        run.ack_floor_stream = run.ack_floor_stream.max(lowest_open.saturating_sub(1));
        let cursor = run.cursor;
        run.acked_ahead.retain(|s| *s >= cursor);
        run.ack_floor_consumer = match run.pending.lowest_consumer_seq() {
            Some(c) => c.saturating_sub(1),
            None => run.consumer_seq,
        };
    }

    /// Applies an ack; returns the sequences this group is now done with (for
    /// interest and work-queue retention) and, for a TERM, the terminated sequence.
    ///
    /// `replicated`: the group is on a replicated station, where an ack may
    /// come to a new leader for a message an earlier one delivered.
    pub fn ack(&self, seq: u64, kind: &AckKind, replicated: bool) -> AckOutcome {
        let mut run = self.run.lock();
        run.last_active = Some(SystemTime::now());
        let mut out = AckOutcome::default();
        match kind {
            AckKind::Ack => {
                if self.config.read().ack_policy == AckPolicy::All {
                    let done: Vec<u64> = run.pending.range(..=seq).map(|(s, _)| *s).collect();
                    for s in &done {
                        run.pending.remove(s);
                    }
                    out.done = done;
                } else if let Some(p) = run.pending.remove(&seq) {
                    out.done.push(seq);
                    out.sample = self.sample(seq, &p);
                } else if Self::ack_unheld(&mut run, seq, replicated) {
                    out.done.push(seq);
                }
            }
            AckKind::Nak(delay) => {
                if let Some(p) = run.pending.remove(&seq) {
                    let not_before = Instant::now() + delay.unwrap_or_default();
                    run.redeliver.insert(
                        seq,
                        Redelivery {
                            not_before,
                            deliveries: p.deliveries,
                        },
                    );
                }
            }
            AckKind::InProgress => {
                let wait = self.config.read().ack_wait;
                run.pending.extend(&seq, Instant::now() + wait);
            }
            AckKind::Term(reason) => {
                if let Some(p) = run.pending.remove(&seq) {
                    out.done.push(seq);
                    out.terminated = Some(Terminated {
                        seq,
                        consumer_seq: p.consumer_seq,
                        deliveries: p.deliveries,
                        reason: reason.clone(),
                    });
                } else if Self::ack_unheld(&mut run, seq, replicated) {
                    out.done.push(seq);
                }
            }
        }
        Self::advance_floor(&mut run);
        run.dirty = true;
        out
    }

    /// An ack metric for this ack of `seq`, when `sample_freq` picks it.
    fn sample(&self, seq: u64, p: &Pending) -> Option<AckSample> {
        let percent = self.config.read().sample_percent();
        if percent == 0 || (percent < 100 && rand::random_range(0..100u8) >= percent) {
            return None;
        }
        Some(AckSample {
            tenant: junction_api::TenantId::default_tenant(),
            station: String::new(),
            group: String::new(),
            consumer_seq: p.consumer_seq,
            stream_seq: seq,
            ack_time: p.sent.elapsed(),
            deliveries: p.deliveries,
        })
    }

    /// Timers: ack deadlines, request expiry, heartbeats, ephemeral inactivity.
    /// Returns the sequences that went past `max_deliver`, and whether to delete.
    pub fn tick(&self, now: Instant) -> (Vec<(u64, u32)>, TickOutcome) {
        let mut run = self.run.lock();
        let mut exhausted = Vec::new();
        let overdue: Vec<u64> = run
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        let max_deliver = self.config.read().max_deliver;
        for seq in overdue {
            if let Some(p) = run.pending.remove(&seq) {
                if max_deliver > 0 && i64::from(p.deliveries) >= max_deliver {
                    exhausted.push((seq, p.deliveries));
                } else {
                    run.redeliver.insert(
                        seq,
                        Redelivery {
                            not_before: now,
                            deliveries: p.deliveries,
                        },
                    );
                }
                run.dirty = true;
            }
        }
        // A NAKed message that used up its deliveries is not tried again either.
        if max_deliver > 0 {
            let max = max_deliver;
            let spent: Vec<u64> = run
                .redeliver
                .iter()
                .filter(|(_, r)| i64::from(r.deliveries) >= max)
                .map(|(s, _)| *s)
                .collect();
            for seq in spent {
                if let Some(r) = run.redeliver.remove(&seq) {
                    exhausted.push((seq, r.deliveries));
                }
            }
        }
        if !exhausted.is_empty() {
            Self::advance_floor(&mut run);
        }
        run.waiting.retain_mut(|w| {
            if w.expires.is_some_and(|e| e <= now + EXPIRY_SLACK) {
                w.sink.end(FetchEnd::Timeout {
                    messages: w.batch,
                    bytes: w.bytes,
                });
                return false;
            }
            if let Some(hb) = w.heartbeat
                && now.duration_since(w.last_sent) >= hb
            {
                w.sink.heartbeat();
                w.last_sent = now;
            }
            true
        });
        let outcome = if run.waiting.is_empty() {
            let since = *run.idle_since.get_or_insert(now);
            let (durable, threshold) = {
                let c = self.config.read();
                (c.durable, c.inactive_threshold)
            };
            if !durable && now.duration_since(since) >= threshold {
                TickOutcome::Expired
            } else {
                TickOutcome::Keep
            }
        } else {
            run.idle_since = None;
            TickOutcome::Keep
        };
        (exhausted, outcome)
    }

    /// Hands `seq` back to this group as if it had never been delivered (a
    /// dead-letter resend): it is delivered again, with a fresh delivery count, so
    /// the group has `max_deliver` new attempts. Returns false when the group holds
    /// it already (pending or queued for redelivery) or is deleted.
    pub fn requeue(&self, seq: u64) -> bool {
        let mut run = self.run.lock();
        if run.deleted || run.pending.contains_key(&seq) || run.redeliver.contains_key(&seq) {
            return false;
        }
        if seq >= run.cursor || run.initial.contains(&seq) {
            // Not delivered yet: it will be, in order.
            return true;
        }
        run.redeliver.insert(
            seq,
            Redelivery {
                not_before: Instant::now(),
                deliveries: 0,
            },
        );
        run.dirty = true;
        true
    }

    /// The position as it is saved.
    fn saved(run: &Run) -> Saved {
        let mut unacked: Vec<(u64, u32)> = run
            .pending
            .iter()
            .map(|(s, p)| (*s, p.deliveries))
            .chain(run.redeliver.iter().map(|(s, r)| (*s, r.deliveries)))
            .collect();
        unacked.sort_unstable();
        Saved {
            cursor: run.cursor,
            initial: run.initial.iter().copied().collect(),
            acked_ahead: run.acked_ahead.iter().copied().collect(),
            consumer_seq: run.consumer_seq,
            delivered_stream_seq: run.delivered_stream_seq,
            ack_floor_stream: run.ack_floor_stream,
            ack_floor_consumer: run.ack_floor_consumer,
            unacked,
        }
    }

    /// The highest station sequence this group has seen (delivered, acked,
    /// waiting for an ack or a redelivery). A station whose newest messages were
    /// consumed and deleted before a crash recovers a lower last sequence from
    /// its log; it must not hand these sequences out again, or the group would
    /// take a new message for one it is done with (see
    /// [`super::station::Station::raise_last_seq`]).
    pub fn highest_seen(&self) -> u64 {
        let run = self.run.lock();
        [
            run.delivered_stream_seq,
            run.ack_floor_stream,
            run.pending.by_seq.keys().next_back().copied().unwrap_or(0),
            run.redeliver.keys().next_back().copied().unwrap_or(0),
            run.acked_ahead.iter().next_back().copied().unwrap_or(0),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }

    /// The position as [`Group::save`] writes it, without writing it (a
    /// replicated station's snapshot).
    pub fn position_json(&self) -> Result<Vec<u8>, EngineError> {
        let saved = Self::saved(&self.run.lock());
        serde_json::to_vec(&saved).map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// Writes the position to storage if it changed; answers what it wrote (a
    /// replicated station's leader sends it to the other replicas).
    pub fn save(&self, force: bool) -> Result<Option<Vec<u8>>, EngineError> {
        let saved = {
            let mut run = self.run.lock();
            if !run.dirty && !force {
                return Ok(None);
            }
            run.dirty = false;
            Self::saved(&run)
        };
        let json = serde_json::to_vec(&saved).map_err(|e| EngineError::Storage(e.to_string()))?;
        self.store
            .put_state(&self.state_key, &json)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        Ok(Some(json))
    }

    /// Takes a position a replicated station's leader saved (see
    /// [`Group::save`]): what it had not seen acked is delivered again if this
    /// node leads next.
    pub fn install_position(&self, json: &[u8]) -> Result<(), EngineError> {
        let s: Saved =
            serde_json::from_slice(json).map_err(|e| EngineError::Storage(e.to_string()))?;
        {
            let mut run = self.run.lock();
            run.pending = PendingSet::default();
            run.redeliver.clear();
            run.restore(s);
        }
        self.store
            .put_state(&self.state_key, json)
            .map_err(|e| EngineError::Storage(e.to_string()))
    }

    /// Ends every waiting request and forgets the saved position.
    pub fn close(&self, remove_state: bool) {
        let waiting: Vec<Waiting> = {
            let mut run = self.run.lock();
            run.deleted = true;
            run.waiting.drain(..).collect()
        };
        for w in waiting {
            w.sink.end(FetchEnd::GroupDeleted);
        }
        if remove_state {
            let _ = self.store.remove_state_prefix(&self.state_key);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Redeliver,
    Initial,
    Cursor,
}

/// What an ack changed.
#[derive(Default)]
pub(crate) struct AckOutcome {
    /// Sequences this group is now done with.
    pub done: Vec<u64>,
    /// A terminated delivery.
    pub terminated: Option<Terminated>,
    /// An ack sampled for an ack metric (`sample_freq`); its tenant, station
    /// and group are filled in by the caller.
    pub sample: Option<AckSample>,
}

/// An acknowledgement sampled by a group's `sample_freq` (JetStream's
/// `$JS.EVENT.METRIC.CONSUMER.ACK`).
pub(crate) struct AckSample {
    pub tenant: junction_api::TenantId,
    pub station: String,
    pub group: String,
    pub consumer_seq: u64,
    pub stream_seq: u64,
    /// From delivery to ack.
    pub ack_time: Duration,
    pub deliveries: u32,
}

/// A delivery a member terminated.
pub(crate) struct Terminated {
    /// Station sequence.
    pub seq: u64,
    /// Consumer sequence of the terminated delivery.
    pub consumer_seq: u64,
    /// Deliveries so far.
    pub deliveries: u32,
    /// The member's reason, if it gave one.
    pub reason: Option<String>,
}

/// Groups of one station, by name.
pub(crate) type Groups = AHashMap<String, Arc<Group>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn p(consumer_seq: u64) -> Pending {
        Pending {
            consumer_seq,
            deliveries: 1,
            deadline: Instant::now(),
            sent: Instant::now(),
        }
    }

    #[test]
    fn the_lowest_consumer_sequence_follows_inserts_removals_and_redeliveries() {
        let mut set = PendingSet::default();
        assert_eq!(set.lowest_consumer_seq(), None);
        set.insert(10, p(1));
        set.insert(11, p(2));
        set.insert(12, p(3));
        assert_eq!(set.lowest_consumer_seq(), Some(1));
        // Acked out of order: the floor stays until the lowest goes.
        assert!(set.remove(&11).is_some());
        assert_eq!(set.lowest_consumer_seq(), Some(1));
        assert!(set.remove(&10).is_some());
        assert_eq!(set.lowest_consumer_seq(), Some(3));
        // A redelivery of stream seq 10 gets a new, higher consumer sequence.
        set.insert(10, p(4));
        assert_eq!(set.lowest_consumer_seq(), Some(3));
        // Delivered again while still pending: the old consumer sequence is gone.
        set.insert(12, p(5));
        assert_eq!(set.lowest_consumer_seq(), Some(4));
        assert_eq!(set.len(), 2);
        assert!(set.remove(&99).is_none());
        assert!(set.remove(&10).is_some());
        assert!(set.remove(&12).is_some());
        assert_eq!(set.lowest_consumer_seq(), None);
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn an_ack_for_a_message_not_pending_here_counts_and_is_kept_in_the_position() {
        let mut run = Run {
            cursor: 10,
            ..Run::default()
        };
        run.redeliver.insert(
            5,
            Redelivery {
                not_before: Instant::now(),
                deliveries: 1,
            },
        );
        run.initial.push_back(7);
        // Waiting for its redelivery (ack wait over, or a position taken from
        // another replica): the ack counts, as in nats-server.
        assert!(Group::ack_unheld(&mut run, 5, false));
        assert!(!run.redeliver.contains_key(&5));
        assert!(Group::ack_unheld(&mut run, 7, false));
        assert!(run.initial.is_empty());
        // Past the cursor: delivered by an earlier leader of a replicated
        // station; never on a station held by one node.
        assert!(!Group::ack_unheld(&mut run, 12, false));
        assert!(Group::ack_unheld(&mut run, 12, true));
        assert!(run.acked_ahead.contains(&12));
        // Below the cursor and held nowhere: acked already.
        assert!(!Group::ack_unheld(&mut run, 3, true));
        // The saved position carries it to the next leader.
        let saved = Group::saved(&run);
        assert_eq!(saved.acked_ahead, vec![12]);
        let mut next = Run::default();
        next.restore(saved);
        assert!(next.acked_ahead.contains(&12));
        // Once the cursor passes it, it is forgotten.
        run.cursor = 13;
        Group::advance_floor(&mut run);
        assert!(run.acked_ahead.is_empty());
    }
}
