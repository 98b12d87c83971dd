//! Stations: named, durable logs that capture subjects. A JetStream stream is a
//! station seen through the NATS API.

use crate::{DeadLetterPolicy, Headers, Subject};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// When stored messages may be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until a limit (count, bytes, age, per subject) removes them.
    #[default]
    Limits,
    /// Removed once every consumer group has acked them.
    Interest,
    /// Removed once any consumer group has acked them (one group per subject).
    WorkQueue,
}

/// What happens when a limit is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// The oldest messages make room.
    #[default]
    Old,
    /// New messages are refused.
    New,
}

/// Where a station keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// On disk, durable.
    #[default]
    File,
    /// In memory, lost on restart.
    Memory,
}

/// A station's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StationConfig {
    /// Name: no whitespace, `.`, `*`, `>`, `/` or `\`.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Subject filters the station captures (its routing keys). Empty means the name.
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: Retention,
    /// Most messages kept (-1 = unlimited).
    pub max_msgs: i64,
    /// Most bytes kept (-1 = unlimited).
    pub max_bytes: i64,
    /// Oldest message kept (zero = unlimited).
    pub max_age: Duration,
    /// Most messages kept per subject (-1 = unlimited).
    pub max_msgs_per_subject: i64,
    /// Largest message accepted (-1 = unlimited).
    pub max_msg_size: i64,
    /// Most consumer groups (-1 = unlimited).
    pub max_consumers: i64,
    /// What a full station does.
    pub discard: Discard,
    /// File or memory.
    pub storage: StorageKind,
    /// Copies kept (1 until clustering lands).
    pub replicas: u32,
    /// How long message ids are remembered for de-duplication.
    pub duplicate_window: Duration,
    /// `None`: fsync before ack (the default). `Some(d)`: ack once written to the OS,
    /// fsync within `d`; a power loss can lose up to `d` of acked messages.
    pub flush_interval: Option<Duration>,
    /// Refuse single-message deletes.
    pub deny_delete: bool,
    /// Refuse purges.
    pub deny_purge: bool,
    /// Honour `Nats-Rollup` on publishes (replace the subject's, or every,
    /// earlier message); off, such a publish is refused.
    pub allow_rollup: bool,
    /// Answer direct gets (JetStream `allow_direct`, what key-value gets use).
    pub allow_direct: bool,
    /// Free-form metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Name of the schema every publish is validated against.
    pub schema: Option<String>,
    /// Pin the schema to this version; `None` follows the schema's active version.
    pub schema_version: Option<u32>,
    /// Which failures are copied to the dead-letter station, and its retention.
    pub dead_letter: DeadLetterPolicy,
    /// Tiering to S3 (with the broker's `[tier]` configured): what stays on local
    /// disk and when a range is sealed and uploaded. `None`: nothing is tiered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierPolicy>,
    /// Log compaction: keep the newest message per subject (Kafka's compacted
    /// topics). `None`: nothing is compacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact: Option<CompactPolicy>,
    /// No more writes, deletes or purges (JetStream `sealed`; set by an update,
    /// never undone).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// Publish a copy of every stored message on another subject (JetStream
    /// `republish`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<Republish>,
    /// Messages published to the station's subjects are stored under this
    /// transform's destination (JetStream `subject_transform`, nats-server
    /// 2.10); a subject its source does not match is stored as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransform>,
    /// The station this one mirrors: same messages, same sequences; it takes
    /// no publishes of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StationSource>,
    /// Stations whose messages this one copies in, with its own sequences.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StationSource>,
}

/// A station's republish: each stored message whose subject matches `source`
/// is published again (core, not stored) on `destination`, with headers that
/// say where it was stored (`Nats-Stream`, `Nats-Subject`, `Nats-Sequence`,
/// `Nats-Time-Stamp`, `Nats-Last-Sequence`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Republish {
    /// Which stored subjects (a filter; `>` when empty).
    pub source: String,
    /// Where to: a subject whose `*` / `{{wildcard(n)}}` / `$n` tokens and
    /// trailing `>` take the source's wildcard tokens.
    pub destination: String,
    /// Headers only: no payload, and `Nats-Msg-Size` with its size.
    pub headers_only: bool,
}

/// Where a mirror or a source reads from, and what it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StationSource {
    /// The origin station (JetStream stream) name.
    pub name: String,
    /// First origin sequence copied (0: from the first one there is).
    pub start_seq: u64,
    /// Copy only messages stored at or after this time (ns since the epoch; 0: none).
    pub start_time_ns: u64,
    /// Copy only messages on subjects matching this filter.
    pub filter_subject: Option<String>,
    /// Subject transforms: a message matching `source` is stored on `destination`
    /// (nats-server 2.10 syntax: `$1`, `{{wildcard(1)}}`, `{{partition(n,1)}}`).
    pub transforms: Vec<SubjectTransform>,
    /// The origin is on another broker (Junction or nats-server), reached as an
    /// ordinary NATS client.
    pub remote: Option<RemoteOrigin>,
}

impl StationSource {
    /// The key that tells this source apart from the station's others (the
    /// origin name, and the remote URL for a remote one).
    pub fn key(&self) -> String {
        match &self.remote {
            Some(r) => format!("{}@{}", self.name, r.url),
            None => self.name.clone(),
        }
    }
}

/// A subject transform: `source` filter, `destination` template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SubjectTransform {
    /// The subjects it applies to (wildcards allowed).
    pub source: String,
    /// The subject they become.
    pub destination: String,
}

/// An origin on another broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteOrigin {
    /// NATS URL, comma-separated for several (`nats://user:pass@host:4222`).
    pub url: String,
    /// JetStream API prefix on the remote (JetStream `external.api`; default `$JS.API`).
    pub api: Option<String>,
    /// User name, when not in the URL.
    pub user: Option<String>,
    /// Password, when not in the URL.
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// Path of a `.creds` file (JWT and nkey seed).
    pub creds_file: Option<String>,
}

/// How a mirror or a source is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceStatus {
    /// The origin station's name.
    pub name: String,
    /// The remote URL, for an origin on another broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The last origin sequence copied.
    pub last_seq: u64,
    /// Messages the origin holds that are not copied yet.
    pub lag: u64,
    /// Milliseconds since the origin was last heard from (-1: never).
    pub active_ms: i64,
    /// The last error, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the origin was last heard from (this process's clock; `active_ms`
    /// is worked out from it when the status is read).
    #[serde(skip)]
    pub last_contact: Option<std::time::Instant>,
}

/// A station's tiering policy: sealed ranges of its log are uploaded to the
/// remote tier as segments, and uploaded messages beyond the local limits are
/// removed from local disk (they stay readable, from the remote tier). The
/// station's own `max_msgs`, `max_bytes` and `max_age` bound local and remote
/// messages together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierPolicy {
    /// Most bytes of uploaded messages kept on local disk (0: no byte limit).
    pub local_max_bytes: u64,
    /// Uploaded messages older than this (ms) leave local disk (0: no age limit).
    pub local_max_age_ms: u64,
    /// A segment is sealed once it holds this many bytes of messages.
    pub segment_bytes: u64,
    /// A segment is sealed once its oldest message is this old (ms), so a quiet
    /// station still tiers.
    pub segment_max_age_ms: u64,
    /// Publishes are refused while more than this many bytes wait to be
    /// uploaded (S3 down or behind); 0: no cap (the disk fence still applies).
    pub max_pending_bytes: u64,
}

impl TierPolicy {
    /// Default segment size: 32 MiB.
    pub const DEFAULT_SEGMENT_BYTES: u64 = 32 * 1024 * 1024;
    /// Default segment age: 10 minutes.
    pub const DEFAULT_SEGMENT_MAX_AGE_MS: u64 = 10 * 60 * 1000;
    /// Default local limit: 1 GiB.
    pub const DEFAULT_LOCAL_MAX_BYTES: u64 = 1024 * 1024 * 1024;
    /// Smallest segment size accepted (tests use small segments).
    pub const MIN_SEGMENT_BYTES: u64 = 1024;

    /// The policy's fields checked; the text names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < Self::MIN_SEGMENT_BYTES {
            return Err(format!(
                "tier.segment_bytes must be at least {}",
                Self::MIN_SEGMENT_BYTES
            ));
        }
        if self.segment_bytes > 4 * 1024 * 1024 * 1024 {
            return Err("tier.segment_bytes must be at most 4 GiB".into());
        }
        if self.segment_max_age_ms == 0 {
            return Err("tier.segment_max_age_ms must be above 0".into());
        }
        Ok(())
    }
}

impl Default for TierPolicy {
    fn default() -> Self {
        TierPolicy {
            local_max_bytes: Self::DEFAULT_LOCAL_MAX_BYTES,
            local_max_age_ms: 0,
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            segment_max_age_ms: Self::DEFAULT_SEGMENT_MAX_AGE_MS,
            max_pending_bytes: 0,
        }
    }
}

/// A station's compaction policy: only the newest message of each subject is
/// kept, as in Kafka's compacted topics. Sequences never change; a compacted
/// message leaves a gap. A message with the header `KV-Operation: DEL` or
/// `PURGE` (the NATS KV convention) is a tombstone: it removes its subject's
/// earlier messages, and is itself removed after `tombstone_retention_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactPolicy {
    /// A message younger than this (ms) is never compacted away, even when its
    /// subject has a newer one (Kafka `min.compaction.lag.ms`).
    pub min_lag_ms: u64,
    /// A message whose subject has a newer one is removed at most this long
    /// (ms) after the newer one was stored, give or take a tick of the
    /// station's compaction (Kafka `max.compaction.lag.ms`).
    pub max_lag_ms: u64,
    /// How long (ms) a tombstone is kept once it is the newest message of its
    /// subject, so consumers see the delete, before it goes too (Kafka
    /// `delete.retention.ms`).
    pub tombstone_retention_ms: u64,
}

impl CompactPolicy {
    /// Default `max_lag_ms`: one minute.
    pub const DEFAULT_MAX_LAG_MS: u64 = 60_000;
    /// Default `tombstone_retention_ms`: one day (Kafka's `delete.retention.ms`).
    pub const DEFAULT_TOMBSTONE_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
    /// Largest value of any of its durations: 100 years, in ms (beyond it a
    /// deadline in ns no longer fits in 64 bits).
    pub const MAX_MS: u64 = 100 * 365 * 24 * 60 * 60 * 1000;

    /// The policy's fields checked; the text names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("min_lag_ms", self.min_lag_ms),
            ("max_lag_ms", self.max_lag_ms),
            ("tombstone_retention_ms", self.tombstone_retention_ms),
        ] {
            if v > Self::MAX_MS {
                return Err(format!(
                    "compact.{name} must be at most {} (100 years)",
                    Self::MAX_MS
                ));
            }
        }
        if self.max_lag_ms == 0 {
            return Err("compact.max_lag_ms must be above 0".into());
        }
        if self.min_lag_ms > self.max_lag_ms {
            return Err(format!(
                "compact.min_lag_ms ({}) must not be above compact.max_lag_ms ({})",
                self.min_lag_ms, self.max_lag_ms
            ));
        }
        Ok(())
    }
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy {
            min_lag_ms: 0,
            max_lag_ms: Self::DEFAULT_MAX_LAG_MS,
            tombstone_retention_ms: Self::DEFAULT_TOMBSTONE_RETENTION_MS,
        }
    }
}

/// Whether a message is a compaction tombstone: its `KV-Operation` header is
/// `DEL` or `PURGE` (the NATS KV convention).
pub fn is_tombstone(headers: Option<&Headers>) -> bool {
    headers
        .and_then(|h| h.get("KV-Operation"))
        .is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("DEL") || v.eq_ignore_ascii_case("PURGE")
        })
}

impl Default for StationConfig {
    fn default() -> Self {
        StationConfig {
            name: String::new(),
            description: None,
            subjects: Vec::new(),
            retention: Retention::Limits,
            max_msgs: -1,
            max_bytes: -1,
            max_age: Duration::ZERO,
            max_msgs_per_subject: -1,
            max_msg_size: -1,
            max_consumers: -1,
            discard: Discard::Old,
            storage: StorageKind::File,
            replicas: 1,
            duplicate_window: StationConfig::DEFAULT_DUPLICATE_WINDOW,
            flush_interval: None,
            deny_delete: false,
            deny_purge: false,
            allow_rollup: false,
            allow_direct: false,
            metadata: Default::default(),
            schema: None,
            schema_version: None,
            dead_letter: DeadLetterPolicy::default(),
            tier: None,
            compact: None,
            sealed: false,
            republish: None,
            subject_transform: None,
            mirror: None,
            sources: Vec::new(),
        }
    }
}

/// The station defaults. This is their one owner: the engine, the NATS and the HTTP
/// front-ends read them from here.
impl StationConfig {
    /// How long message ids are remembered when the definition says nothing (or 0).
    pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

    /// The value of an unlimited count limit (`max_msgs`, `max_bytes`, …).
    pub const UNLIMITED: i64 = -1;

    /// The subjects the station captures: its own, or its name when it lists none.
    pub fn subjects_or_name(&self) -> Vec<String> {
        // A mirror or a sourcing station with no subjects of its own captures
        // nothing (as in nats-server).
        if self.subjects.is_empty() && (self.mirror.is_some() || !self.sources.is_empty()) {
            return Vec::new();
        }
        if self.subjects.is_empty() {
            vec![self.name.clone()]
        } else {
            self.subjects.clone()
        }
    }

    /// The duplicate window in force: the default for zero, and never longer than
    /// `max_age` (a message id outliving its message would refuse a re-publish).
    pub fn effective_duplicate_window(&self) -> Duration {
        let window = if self.duplicate_window.is_zero() {
            Self::DEFAULT_DUPLICATE_WINDOW
        } else {
            self.duplicate_window
        };
        if !self.max_age.is_zero() && window > self.max_age {
            self.max_age
        } else {
            window
        }
    }

    /// A count limit as stored: 0 and -1 both mean unlimited (stored as
    /// [`StationConfig::UNLIMITED`]). `None` for anything below -1.
    pub fn limit(value: i64) -> Option<i64> {
        match value {
            0 | -1 => Some(Self::UNLIMITED),
            v if v > 0 => Some(v),
            _ => None,
        }
    }
}

/// A station's current contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Oldest sequence stored (or the next one, when empty).
    pub first_seq: u64,
    /// Time of the oldest message.
    pub first_time: Option<SystemTime>,
    /// Newest sequence assigned.
    pub last_seq: u64,
    /// Time of the newest message.
    pub last_time: Option<SystemTime>,
    /// Distinct subjects stored.
    pub num_subjects: u64,
    /// Sequences inside `first_seq..=last_seq` that were deleted.
    pub num_deleted: u64,
    /// Consumer groups.
    pub consumer_count: u64,
    /// The remote tier's share, for a tiered station.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierState>,
    /// Messages removed by compaction since the station was created (a
    /// compacted station; 0 otherwise).
    #[serde(default)]
    pub compacted: u64,
}

/// What a tiered station keeps where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierState {
    /// Messages on local disk.
    pub local_messages: u64,
    /// Their bytes.
    pub local_bytes: u64,
    /// First sequence on local disk.
    pub local_first_seq: u64,
    /// Messages in uploaded segments no longer on local disk.
    pub remote_messages: u64,
    /// Bytes of uploaded segments (all of them).
    pub remote_bytes: u64,
    /// Uploaded segments.
    pub segments: u64,
    /// Committed messages not yet uploaded.
    pub upload_lag_messages: u64,
    /// Milliseconds since the oldest message not yet uploaded was stored (0 when
    /// everything is uploaded).
    pub upload_lag_ms: u64,
    /// Reads of remote blocks served from the read cache, since start.
    #[serde(default)]
    pub cache_hits: u64,
    /// Reads of remote blocks that went to S3, since start.
    #[serde(default)]
    pub cache_misses: u64,
    /// The part of `cache_hits` served from the on-disk cache, since start.
    #[serde(default)]
    pub disk_cache_hits: u64,
}

/// A station's definition and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationInfo {
    /// Definition.
    pub config: StationConfig,
    /// When it was created.
    pub created: SystemTime,
    /// Contents now: on a cluster node that does not hold the station, as its
    /// node last reported them (about once a second).
    pub state: StationState,
    /// In a cluster, the node that holds the station's messages and groups
    /// (`None` on a node that runs alone); for a replicated station, its
    /// current leader (`None` while it has none).
    pub node: Option<String>,
    /// A replicated station's replicas (empty for one with a single copy).
    #[serde(default)]
    pub replicas: Vec<ReplicaInfo>,
    /// A mirror's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<SourceStatus>,
    /// Each source's progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceStatus>,
}

/// One replica of a replicated station, as its leader knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// Node name.
    pub name: String,
    /// Whether it leads the station.
    pub leader: bool,
    /// Whether it has (nearly) every committed entry.
    pub current: bool,
    /// Raft log entries it is behind the leader.
    pub lag: u64,
    /// Whether the node is linked to this one now (not known to be down).
    pub online: bool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Sequence number in the station.
    pub seq: u64,
    /// Subject it was published on.
    pub subject: Subject,
    /// Headers.
    pub headers: Option<Headers>,
    /// Payload.
    pub payload: Bytes,
    /// When the station received it.
    pub time: SystemTime,
    /// Its lineage section (a [`LineageRecord`](crate::LineageRecord); empty: none),
    /// kept beside the headers, never in them. A front-end renders it only for a
    /// consumer that asked ([`render_lineage`](crate::render_lineage)).
    pub lineage: Bytes,
}

impl StoredMessage {
    /// Adds the lineage headers (for a consumer that opted in to lineage).
    pub fn render_lineage(&mut self) {
        let subject = self.subject.to_str_lossy().into_owned();
        crate::render_lineage(&self.lineage, &subject, &mut self.headers);
    }
}

/// The answer to a durable publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubAck {
    /// The station that stored it.
    pub station: String,
    /// Its sequence number (the original one for a duplicate).
    pub seq: u64,
    /// True when the message id was seen within the duplicate window and nothing new
    /// was stored.
    pub duplicate: bool,
}

/// Called once a captured message is stored under the station's durability policy,
/// or refused. Runs on a storage thread: it must not block.
pub type StoredCallback = Box<dyn FnOnce(Result<PubAck, crate::EngineError>) + Send>;

/// Which messages a purge removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    /// Only messages on subjects matching this filter.
    pub filter: Option<String>,
    /// Only messages below this sequence.
    pub seq: Option<u64>,
    /// Keep this many of the newest.
    pub keep: Option<u64>,
}

/// Which message to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageQuery {
    /// By sequence.
    Seq(u64),
    /// The newest on a subject.
    LastBySubject(String),
    /// The first at or after `seq` on subjects matching `subject`.
    NextBySubject {
        /// Start here.
        seq: u64,
        /// Subject filter.
        subject: String,
    },
    /// The first stored at or after this time (browse by time).
    FirstAtOrAfter(SystemTime),
}
