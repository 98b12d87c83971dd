//! Stream configuration, state and info.

#[allow(unused_imports)]
use super::*;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

/// A stream's configuration: the `STREAM.CREATE`/`STREAM.UPDATE` request body and the
/// `config` of a stream info. `Default` is the Go zero value, which is what a missing key
/// decodes to; [`StreamConfig::apply_server_defaults`] fills in what nats-server fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Stream name; must equal the name in the request subject.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Free text, up to [`MAX_DESCRIPTION_LEN`].
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub description: String,
    /// Captured subjects (wildcards allowed); defaults to `[name]`.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: RetentionPolicy,
    /// Maximum number of consumers; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_consumers: i64,
    /// Maximum number of messages; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_msgs: i64,
    /// Maximum total bytes; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_bytes: i64,
    /// Maximum message age in nanoseconds; 0 for unlimited. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub max_age: i64,
    /// Maximum messages per subject; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_msgs_per_subject: i64,
    /// Largest accepted message (headers plus payload); -1 for unlimited (server
    /// default). Go `int32`, `omitempty`.
    #[serde(skip_serializing_if = "is_zero_i32", deserialize_with = "nullable")]
    pub max_msg_size: i32,
    /// Discard policy.
    pub discard: DiscardPolicy,
    /// Storage type.
    pub storage: StorageType,
    /// Replica count; 1 by server default.
    #[serde(deserialize_with = "nullable")]
    pub num_replicas: i64,
    /// Do not send pub acks.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub no_ack: bool,
    /// Owning stream template (deprecated feature).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub template_owner: String,
    /// De-duplication window in nanoseconds; 2 minutes by server default.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub duplicate_window: i64,
    /// Cluster placement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Mirror source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// Sources.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub sources: Vec<StreamSource>,
    /// On-disk compression. Always emitted.
    pub compression: StoreCompression,
    /// Initial sequence of a new stream.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub first_seq: u64,
    /// Subject transform applied on ingest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    /// Republish stored messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    /// Enable `DIRECT.GET`. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub allow_direct: bool,
    /// Enable direct get on mirrors. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub mirror_direct: bool,
    /// Apply discard-new per subject (requires `discard: new` and `max_msgs_per_subject`).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub discard_new_per_subject: bool,
    /// No messages in or out, no deletes or purges. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub sealed: bool,
    /// Refuse message deletes. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub deny_delete: bool,
    /// Refuse purges. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub deny_purge: bool,
    /// Honour `Nats-Rollup` headers. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub allow_rollup_hdrs: bool,
    /// Defaults for consumers of this stream. Always emitted (as `{}` when unset).
    #[serde(deserialize_with = "nullable")]
    pub consumer_limits: StreamConsumerLimits,
    /// User metadata.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub metadata: BTreeMap<String, String>,
    /// Per-message TTLs (`Nats-TTL`). A nats-server 2.11 key that 2.10 ignores; kept so it
    /// round-trips, and omitted when false so 2.10 output is unchanged.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub allow_msg_ttl: bool,
}

impl StreamConfig {
    /// A config with only the name set (Go zero values elsewhere).
    pub fn named(name: impl Into<String>) -> Self {
        StreamConfig {
            name: name.into(),
            ..StreamConfig::default()
        }
    }

    /// Fill the defaults nats-server's `checkStreamCfg` fills before storing a config (no
    /// server-configured duplicate-window cap): replicas 0 -> 1; the `max_*` limits
    /// 0 -> -1; duplicate window 0 -> 2 minutes, or `max_age` when that is smaller, unless
    /// mirroring; no subjects -> `[name]` unless mirroring or sourcing; an empty republish
    /// source -> `>`. Validation is the caller's.
    pub fn apply_server_defaults(&mut self) {
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.max_msgs == 0 {
            self.max_msgs = -1;
        }
        if self.max_msgs_per_subject == 0 {
            self.max_msgs_per_subject = -1;
        }
        if self.max_bytes == 0 {
            self.max_bytes = -1;
        }
        if self.max_msg_size == 0 {
            self.max_msg_size = -1;
        }
        if self.max_consumers == 0 {
            self.max_consumers = -1;
        }
        if self.duplicate_window == 0 && self.mirror.is_none() {
            self.duplicate_window =
                if self.max_age != 0 && self.max_age < DEFAULT_DUPLICATE_WINDOW_NS {
                    self.max_age
                } else {
                    DEFAULT_DUPLICATE_WINDOW_NS
                };
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_empty() {
            self.subjects.push(self.name.clone());
        }
        if let Some(republish) = &mut self.republish
            && republish.src.is_empty()
        {
            republish.src = ">".to_owned();
        }
    }
}

/// `consumer_limits` of a stream config: defaults applied to its consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConsumerLimits {
    /// Default (and maximum) consumer `inactive_threshold`, nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub inactive_threshold: i64,
    /// Default (and maximum) consumer `max_ack_pending`.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_ack_pending: i64,
}

/// A subject transform (`src` -> `dest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectTransformConfig {
    /// Source subject filter.
    #[serde(deserialize_with = "nullable")]
    pub src: String,
    /// Destination template.
    #[serde(deserialize_with = "nullable")]
    pub dest: String,
}

/// `republish` of a stream config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RePublish {
    /// Source filter; empty means `>` (the server stores `>`).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub src: String,
    /// Destination template.
    #[serde(deserialize_with = "nullable")]
    pub dest: String,
    /// Republish headers only.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub headers_only: bool,
}

/// `placement` of a stream config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    /// Cluster name.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub cluster: String,
    /// Server tags.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub tags: Vec<String>,
}

/// A mirror or source of a stream config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSource {
    /// Origin stream name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Start sequence.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub opt_start_seq: u64,
    /// Start time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Subject filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub filter_subject: String,
    /// Subject transforms.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    /// Cross-account/domain origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
}

/// `external` of a stream source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalStream {
    /// API prefix.
    #[serde(deserialize_with = "nullable")]
    pub api: String,
    /// Delivery prefix.
    #[serde(deserialize_with = "nullable")]
    pub deliver: String,
}

/// A stream's state, the `state` of a stream info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// First sequence present (0 when the stream never held a message).
    pub first_seq: u64,
    /// Time of the first message; [`GO_ZERO_TIME`] when empty.
    pub first_ts: String,
    /// Last sequence assigned.
    pub last_seq: u64,
    /// Time of the last message; [`GO_ZERO_TIME`] when never written.
    pub last_ts: String,
    /// Distinct subjects stored (`omitempty`).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_subjects: u64,
    /// Per-subject counts, only when asked for with `subjects_filter`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subjects: BTreeMap<String, u64>,
    /// Number of interior deletes (`omitempty`).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_deleted: u64,
    /// Deleted sequences, only when asked for with `deleted_details`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<u64>,
    /// Data lost to corruption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostStreamData>,
    /// Consumers on the stream. Always emitted.
    pub consumer_count: u64,
    /// Junction's own: a tiered station's local and remote shares (local and
    /// remote bytes, segments, upload lag). Absent for other stations.
    #[serde(rename = "junction_tier", skip_serializing_if = "Option::is_none")]
    pub tier: Option<junction_api::TierState>,
    /// Junction's own: messages a compacted station's compaction removed
    /// since it was created (absent when none).
    #[serde(
        rename = "junction_compacted",
        default,
        skip_serializing_if = "is_zero_u64"
    )]
    pub compacted: u64,
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            messages: 0,
            bytes: 0,
            first_seq: 0,
            first_ts: go_zero_time(),
            last_seq: 0,
            last_ts: go_zero_time(),
            num_subjects: 0,
            subjects: BTreeMap::new(),
            num_deleted: 0,
            deleted: Vec::new(),
            lost: None,
            consumer_count: 0,
            tier: None,
            compacted: 0,
        }
    }
}

/// `lost` of a stream state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LostStreamData {
    /// Lost sequences.
    pub msgs: Vec<u64>,
    /// Lost bytes.
    pub bytes: u64,
}

/// A stream info: the body of stream create/update/info responses and the elements of
/// `STREAM.LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stored config, server defaults filled in.
    pub config: StreamConfig,
    /// Creation time.
    pub created: String,
    /// Current state.
    pub state: StreamState,
    /// JetStream domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Cluster info. Single-server nats-server sends `{"leader": "<server name>"}` on
    /// info and list (not on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    /// Mirror status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSourceInfo>,
    /// Sources status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StreamSourceInfo>,
    /// Alternates (mirrors of this stream elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<StreamAlternate>,
    /// When this info was gathered. Always emitted.
    #[serde(default = "go_zero_time")]
    pub ts: String,
}

/// `cluster` of a stream or consumer info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterInfo {
    /// Cluster name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Raft group name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub raft_group: String,
    /// Leader server name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub leader: String,
    /// Followers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<PeerInfo>,
}

/// A replica in [`ClusterInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    /// Server name.
    pub name: String,
    /// Caught up.
    pub current: bool,
    /// Offline.
    #[serde(skip_serializing_if = "is_false")]
    pub offline: bool,
    /// Since last seen, nanoseconds.
    pub active: i64,
    /// Entries behind.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub lag: u64,
    /// Peer id.
    pub peer: String,
}

/// Status of a mirror or source in a stream info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSourceInfo {
    /// Origin stream name.
    pub name: String,
    /// Cross-account/domain origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
    /// Messages behind.
    pub lag: u64,
    /// Since last contact, nanoseconds (-1 if never).
    pub active: i64,
    /// Last setup error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Subject filter.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// Subject transforms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
}

/// An alternate of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamAlternate {
    /// Stream name.
    pub name: String,
    /// Domain.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Cluster.
    pub cluster: String,
}

/// A message as `STREAM.MSG.GET` returns it (`StoredMsg`); `hdrs` and `data` travel as
/// standard base64 (Go `[]byte`), omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMsg {
    /// Subject.
    pub subject: String,
    /// Stream sequence.
    pub seq: u64,
    /// Raw header block (`NATS/1.0\r\n...`), base64 on the wire.
    #[serde(
        default,
        skip_serializing_if = "Bytes::is_empty",
        with = "base64_bytes"
    )]
    pub hdrs: Bytes,
    /// Payload, base64 on the wire.
    #[serde(
        default,
        skip_serializing_if = "Bytes::is_empty",
        with = "base64_bytes"
    )]
    pub data: Bytes,
    /// Store time, RFC 3339.
    pub time: String,
}
