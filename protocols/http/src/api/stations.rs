//! Station admin: create, list, read, update, delete and purge.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use super::wire::{millis, rfc3339};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{
    CompactPolicy, DeadLetterPolicy, Discard, Purge, Retention, StationConfig, StationInfo,
    StationState, StorageKind, TierPolicy, TierState,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// When stored messages may be removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RetentionPolicy {
    /// Only the limits remove messages.
    #[default]
    Limits,
    /// Removed once every interested group acknowledged them.
    Interest,
    /// Removed once a group acknowledged them.
    Workqueue,
}

/// What a full station does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiscardPolicy {
    /// The oldest messages make room.
    #[default]
    Old,
    /// New messages are refused (429 `station_full`).
    New,
}

/// Where a station keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageJson {
    /// On disk.
    #[default]
    File,
    /// In memory, lost on restart.
    Memory,
}

/// Retention policy and limits. `-1` means unlimited; `max_age_ms` 0 means forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionJson {
    /// When messages may be removed.
    pub policy: RetentionPolicy,
    /// Most messages kept.
    pub max_msgs: i64,
    /// Most bytes kept.
    pub max_bytes: i64,
    /// Oldest message kept, in milliseconds.
    pub max_age_ms: u64,
    /// Most messages kept per subject.
    pub max_msgs_per_subject: i64,
    /// What happens at a limit.
    pub discard: DiscardPolicy,
}

impl Default for RetentionJson {
    fn default() -> Self {
        RetentionJson {
            policy: RetentionPolicy::Limits,
            max_msgs: -1,
            max_bytes: -1,
            max_age_ms: 0,
            max_msgs_per_subject: -1,
            discard: DiscardPolicy::Old,
        }
    }
}

/// Which failures are copied to the station's dead-letter station
/// (`$dls_<station>`), and how long they stay there. All causes are off by
/// default; the DLS is created once one is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterJson {
    /// Copy messages that exceeded a group's `max_deliver`.
    pub max_deliveries: bool,
    /// Copy messages a consumer terminated.
    pub terminated: bool,
    /// Copy publishes the station's schema refused.
    pub schema_violation: bool,
    /// Most dead letters kept (-1 = unlimited; default 10000).
    pub max_msgs: i64,
    /// Oldest dead letter kept, in milliseconds (0 = forever).
    pub max_age_ms: u64,
}

impl Default for DeadLetterJson {
    fn default() -> Self {
        DeadLetterJson::from(&DeadLetterPolicy::default())
    }
}

impl From<&DeadLetterPolicy> for DeadLetterJson {
    fn from(p: &DeadLetterPolicy) -> Self {
        DeadLetterJson {
            max_deliveries: p.max_deliveries,
            terminated: p.terminated,
            schema_violation: p.schema_violation,
            max_msgs: p.max_msgs,
            max_age_ms: millis(p.max_age),
        }
    }
}

impl From<&DeadLetterJson> for DeadLetterPolicy {
    fn from(j: &DeadLetterJson) -> Self {
        DeadLetterPolicy {
            max_deliveries: j.max_deliveries,
            terminated: j.terminated,
            schema_violation: j.schema_violation,
            max_msgs: j.max_msgs,
            max_age: Duration::from_millis(j.max_age_ms),
        }
    }
}

/// A station's definition, as sent to create or replace one. Omitted fields take
/// their defaults.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StationRequest {
    /// Name: no whitespace, `.`, `*`, `>`, `/` or `\`. Required to create; on
    /// update it may be omitted and must otherwise match the path.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Subject filters captured (default: the name).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Retention policy and limits.
    #[serde(default)]
    pub retention: RetentionJson,
    /// `file` (default) or `memory`.
    #[serde(default)]
    pub storage: StorageJson,
    /// How long idempotency keys are remembered (default 120000).
    pub duplicate_window_ms: Option<u64>,
    /// Absent: fsync before every ack. Set: ack once written to the OS, fsync
    /// within this many milliseconds.
    pub flush_interval_ms: Option<u64>,
    /// Largest payload accepted (-1 = unlimited).
    pub max_msg_size: Option<i64>,
    /// Most consumer groups (-1 = unlimited).
    /// Copies on that many cluster nodes (default 1; 3 or 5 for a replicated
    /// station, which needs a cluster).
    pub replicas: Option<u32>,
    pub max_consumers: Option<i64>,
    /// Refuse single-message deletes.
    #[serde(default)]
    pub deny_delete: bool,
    /// Refuse purges.
    #[serde(default)]
    pub deny_purge: bool,
    /// Honour `Nats-Rollup` on publishes (JetStream `allow_rollup_hdrs`).
    #[serde(default)]
    pub allow_rollup: bool,
    /// Answer JetStream direct gets (`allow_direct`).
    #[serde(default)]
    pub allow_direct: bool,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Name of a schema (`/v1/schemas`) every publish must match.
    pub schema: Option<String>,
    /// Pin the schema to this version; absent follows its active version.
    pub schema_version: Option<u32>,
    /// Dead-letter policy.
    #[serde(default)]
    pub dead_letter: DeadLetterJson,
    /// Tiering to S3 (the broker needs a `[tier]` bucket); absent: not tiered.
    pub tier: Option<TierJson>,
    /// Log compaction: keep the newest message per subject; absent: not
    /// compacted.
    pub compact: Option<CompactJson>,
}

/// A station's compaction policy (`docs/stations.md#compaction`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactJson {
    /// A message younger than this is never compacted away [default: 0].
    #[serde(default)]
    pub min_lag_ms: i64,
    /// A message with a newer one on its subject is removed at most this long
    /// after the newer one was stored [default: 60000].
    #[serde(default = "CompactJson::max_lag_ms")]
    pub max_lag_ms: i64,
    /// How long a tombstone (`KV-Operation: DEL|PURGE`) is kept once it is
    /// the newest of its subject [default: 86400000].
    #[serde(default = "CompactJson::tombstone_retention_ms")]
    pub tombstone_retention_ms: i64,
}

impl CompactJson {
    fn max_lag_ms() -> i64 {
        CompactPolicy::DEFAULT_MAX_LAG_MS as i64
    }
    fn tombstone_retention_ms() -> i64 {
        CompactPolicy::DEFAULT_TOMBSTONE_RETENTION_MS as i64
    }

    /// The policy, or a 422 naming a negative field (the engine checks the
    /// rest).
    fn policy(&self) -> Result<CompactPolicy, AppError> {
        let field = |name: &str, v: i64| {
            u64::try_from(v).map_err(|_| {
                AppError::invalid(
                    "invalid_config",
                    format!("compact.{name} must not be negative"),
                )
            })
        };
        Ok(CompactPolicy {
            min_lag_ms: field("min_lag_ms", self.min_lag_ms)?,
            max_lag_ms: field("max_lag_ms", self.max_lag_ms)?,
            tombstone_retention_ms: field("tombstone_retention_ms", self.tombstone_retention_ms)?,
        })
    }
}

impl From<&CompactPolicy> for CompactJson {
    fn from(c: &CompactPolicy) -> Self {
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        CompactJson {
            min_lag_ms: ms(c.min_lag_ms),
            max_lag_ms: ms(c.max_lag_ms),
            tombstone_retention_ms: ms(c.tombstone_retention_ms),
        }
    }
}

/// A station's tiering policy (`docs/tiering.md`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierJson {
    /// Most bytes of uploaded messages kept on local disk (0: no byte limit)
    /// [default: 1 GiB].
    #[serde(default = "TierJson::local_max_bytes")]
    pub local_max_bytes: u64,
    /// Uploaded messages older than this leave local disk (0: no age limit).
    #[serde(default)]
    pub local_max_age_ms: u64,
    /// A segment is sealed at this many bytes [default: 32 MiB].
    #[serde(default = "TierJson::segment_bytes")]
    pub segment_bytes: u64,
    /// A segment is sealed when its oldest message is this old [default: 10 min].
    #[serde(default = "TierJson::segment_max_age_ms")]
    pub segment_max_age_ms: u64,
    /// Publishes are refused (507 `storage_full`) while more than this many
    /// bytes wait to be uploaded (0: no cap, the default).
    #[serde(default)]
    pub max_pending_bytes: u64,
}

impl TierJson {
    fn local_max_bytes() -> u64 {
        TierPolicy::DEFAULT_LOCAL_MAX_BYTES
    }
    fn segment_bytes() -> u64 {
        TierPolicy::DEFAULT_SEGMENT_BYTES
    }
    fn segment_max_age_ms() -> u64 {
        TierPolicy::DEFAULT_SEGMENT_MAX_AGE_MS
    }
}

impl From<TierJson> for TierPolicy {
    fn from(t: TierJson) -> Self {
        TierPolicy {
            local_max_bytes: t.local_max_bytes,
            local_max_age_ms: t.local_max_age_ms,
            segment_bytes: t.segment_bytes,
            segment_max_age_ms: t.segment_max_age_ms,
            max_pending_bytes: t.max_pending_bytes,
        }
    }
}

impl From<&TierPolicy> for TierJson {
    fn from(t: &TierPolicy) -> Self {
        TierJson {
            local_max_bytes: t.local_max_bytes,
            local_max_age_ms: t.local_max_age_ms,
            segment_bytes: t.segment_bytes,
            segment_max_age_ms: t.segment_max_age_ms,
            max_pending_bytes: t.max_pending_bytes,
        }
    }
}

/// Where a tiered station's messages are.
#[derive(Debug, Serialize, ToSchema)]
pub struct TierStateJson {
    /// Messages on local disk.
    pub local_messages: u64,
    /// Their bytes.
    pub local_bytes: u64,
    /// First sequence on local disk.
    pub local_first_seq: u64,
    /// Messages only in the bucket.
    pub remote_messages: u64,
    /// Bytes of every uploaded segment.
    pub remote_bytes: u64,
    /// Uploaded segments.
    pub segments: u64,
    /// Committed messages not yet uploaded.
    pub upload_lag_messages: u64,
    /// Age of the oldest message not yet uploaded, in ms.
    pub upload_lag_ms: u64,
    /// Reads of remote blocks served from the broker's read cache, since start.
    pub cache_hits: u64,
    /// Reads of remote blocks that went to S3, since start.
    pub cache_misses: u64,
    /// The part of `cache_hits` served from the broker's on-disk cache, since start.
    pub disk_cache_hits: u64,
}

impl From<&TierState> for TierStateJson {
    fn from(t: &TierState) -> Self {
        TierStateJson {
            local_messages: t.local_messages,
            local_bytes: t.local_bytes,
            local_first_seq: t.local_first_seq,
            remote_messages: t.remote_messages,
            remote_bytes: t.remote_bytes,
            segments: t.segments,
            upload_lag_messages: t.upload_lag_messages,
            upload_lag_ms: t.upload_lag_ms,
            cache_hits: t.cache_hits,
            cache_misses: t.cache_misses,
            disk_cache_hits: t.disk_cache_hits,
        }
    }
}

impl StationRequest {
    /// The engine configuration for a station named `name`; 422 for a field
    /// the engine's types cannot hold.
    fn into_config(self, name: String) -> Result<StationConfig, AppError> {
        let compact = self.compact.as_ref().map(CompactJson::policy).transpose()?;
        let d = StationConfig::default();
        let r = self.retention;
        Ok(StationConfig {
            name,
            description: self.description,
            subjects: self.subjects,
            retention: match r.policy {
                RetentionPolicy::Limits => Retention::Limits,
                RetentionPolicy::Interest => Retention::Interest,
                RetentionPolicy::Workqueue => Retention::WorkQueue,
            },
            max_msgs: r.max_msgs,
            max_bytes: r.max_bytes,
            max_age: Duration::from_millis(r.max_age_ms),
            max_msgs_per_subject: r.max_msgs_per_subject,
            max_msg_size: self.max_msg_size.unwrap_or(d.max_msg_size),
            max_consumers: self.max_consumers.unwrap_or(d.max_consumers),
            discard: match r.discard {
                DiscardPolicy::Old => Discard::Old,
                DiscardPolicy::New => Discard::New,
            },
            storage: match self.storage {
                StorageJson::File => StorageKind::File,
                StorageJson::Memory => StorageKind::Memory,
            },
            replicas: self.replicas.unwrap_or(d.replicas),
            duplicate_window: self
                .duplicate_window_ms
                .map_or(d.duplicate_window, Duration::from_millis),
            flush_interval: self.flush_interval_ms.map(Duration::from_millis),
            deny_delete: self.deny_delete,
            deny_purge: self.deny_purge,
            allow_rollup: self.allow_rollup,
            allow_direct: self.allow_direct,
            metadata: self.metadata,
            schema: self.schema,
            schema_version: self.schema_version,
            dead_letter: DeadLetterPolicy::from(&self.dead_letter),
            tier: self.tier.map(TierPolicy::from),
            compact,
            // Set over JetStream only; an HTTP update keeps the station's own.
            sealed: false,
            republish: None,
            subject_transform: None,
            mirror: None,
            sources: Vec::new(),
        })
    }
}

/// What a station holds now.
#[derive(Debug, Serialize, ToSchema)]
pub struct StationStateJson {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Oldest sequence stored (or the next one, when empty).
    pub first_seq: u64,
    /// Time of the oldest message.
    pub first_time: Option<String>,
    /// Newest sequence assigned.
    pub last_seq: u64,
    /// Time of the newest message.
    pub last_time: Option<String>,
    /// Distinct subjects stored.
    pub num_subjects: u64,
    /// Deleted sequences between first and last.
    pub num_deleted: u64,
    /// Consumer groups.
    pub groups: u64,
    /// A tiered station's local and remote shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierStateJson>,
    /// Messages removed by compaction since the station was created.
    pub compacted_messages: u64,
}

impl From<&StationState> for StationStateJson {
    fn from(s: &StationState) -> Self {
        StationStateJson {
            messages: s.messages,
            bytes: s.bytes,
            first_seq: s.first_seq,
            first_time: s.first_time.map(rfc3339),
            last_seq: s.last_seq,
            last_time: s.last_time.map(rfc3339),
            num_subjects: s.num_subjects,
            num_deleted: s.num_deleted,
            groups: s.consumer_count,
            tier: s.tier.as_ref().map(TierStateJson::from),
            compacted_messages: s.compacted,
        }
    }
}

/// A station: definition, state and creation time.
#[derive(Debug, Serialize, ToSchema)]
pub struct StationJson {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Subject filters captured.
    pub subjects: Vec<String>,
    /// Retention policy and limits.
    pub retention: RetentionJson,
    /// `file` or `memory`.
    pub storage: StorageJson,
    /// How long idempotency keys are remembered.
    pub duplicate_window_ms: u64,
    /// Null: fsync before ack; else the flush interval.
    pub flush_interval_ms: Option<u64>,
    /// Largest payload accepted (-1 = unlimited).
    pub max_msg_size: i64,
    /// Most consumer groups (-1 = unlimited).
    pub max_consumers: i64,
    /// Copies kept (1: on one node; 3 or 5: a replicated station).
    pub replicas: u32,
    /// Refuses single-message deletes.
    pub deny_delete: bool,
    /// Refuses purges.
    pub deny_purge: bool,
    /// Honours `Nats-Rollup` on publishes.
    pub allow_rollup: bool,
    /// Answers JetStream direct gets.
    pub allow_direct: bool,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// The attached schema.
    pub schema: Option<String>,
    /// The pinned schema version (null: the schema's active version).
    pub schema_version: Option<u32>,
    /// Dead-letter policy.
    pub dead_letter: DeadLetterJson,
    /// Tiering policy, when the station is tiered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierJson>,
    /// Compaction policy, when the station is compacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compact: Option<CompactJson>,
    /// Name of the dead-letter station, once the policy captures something.
    pub dead_letter_station: Option<String>,
    /// When it was created.
    pub created: String,
    /// What it holds now (on a cluster node that does not hold the station, as
    /// its node reported it about a second ago).
    pub state: StationStateJson,
    /// In a cluster, the node that holds the station's messages and groups
    /// (for a replicated station, its leader).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A replicated station's leader and replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ReplicasJson>,
    /// The station it mirrors, and how far behind it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<SourceJson>,
    /// The stations it sources from, and how far behind each is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceJson>,
}

/// A mirror's or a source's origin and progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceJson {
    /// The origin station.
    pub name: String,
    /// The origin's broker (host, never credentials), for a remote origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Subject filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_subject: Option<String>,
    /// Last origin sequence copied.
    pub last_seq: u64,
    /// Origin messages not copied yet.
    pub lag: u64,
    /// Milliseconds since the origin was last heard from (-1: never).
    pub active_ms: i64,
    /// The link's last error, while it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn source_json(
    c: &junction_api::StationSource,
    st: Option<&junction_api::SourceStatus>,
) -> SourceJson {
    SourceJson {
        name: c.name.clone(),
        remote: st.and_then(|s| s.remote.clone()),
        filter_subject: c.filter_subject.clone(),
        last_seq: st.map_or(0, |s| s.last_seq),
        lag: st.map_or(0, |s| s.lag),
        active_ms: st.map_or(-1, |s| s.active_ms),
        error: st.and_then(|s| s.error.clone()),
    }
}

impl From<&StationInfo> for StationJson {
    fn from(info: &StationInfo) -> Self {
        let c = &info.config;
        StationJson {
            name: c.name.clone(),
            description: c.description.clone(),
            subjects: c.subjects_or_name(),
            retention: RetentionJson {
                policy: match c.retention {
                    Retention::Limits => RetentionPolicy::Limits,
                    Retention::Interest => RetentionPolicy::Interest,
                    Retention::WorkQueue => RetentionPolicy::Workqueue,
                },
                max_msgs: c.max_msgs,
                max_bytes: c.max_bytes,
                max_age_ms: millis(c.max_age),
                max_msgs_per_subject: c.max_msgs_per_subject,
                discard: match c.discard {
                    Discard::Old => DiscardPolicy::Old,
                    Discard::New => DiscardPolicy::New,
                },
            },
            storage: match c.storage {
                StorageKind::File => StorageJson::File,
                StorageKind::Memory => StorageJson::Memory,
            },
            duplicate_window_ms: millis(c.duplicate_window),
            flush_interval_ms: c.flush_interval.map(millis),
            max_msg_size: c.max_msg_size,
            max_consumers: c.max_consumers,
            replicas: c.replicas,
            deny_delete: c.deny_delete,
            deny_purge: c.deny_purge,
            allow_rollup: c.allow_rollup,
            allow_direct: c.allow_direct,
            metadata: c.metadata.clone(),
            schema: c.schema.clone(),
            schema_version: c.schema_version,
            dead_letter: DeadLetterJson::from(&c.dead_letter),
            tier: c.tier.as_ref().map(TierJson::from),
            compact: c.compact.as_ref().map(CompactJson::from),
            dead_letter_station: c
                .dead_letter
                .enabled()
                .then(|| junction_api::dead_letter_station(&c.name)),
            created: rfc3339(info.created),
            state: StationStateJson::from(&info.state),
            node: info.node.clone(),
            cluster: (!info.replicas.is_empty()).then(|| ReplicasJson {
                leader: info.node.clone(),
                under_replicated: under_replicated(info),
                replicas: info
                    .replicas
                    .iter()
                    .map(|r| ReplicaJson {
                        name: r.name.clone(),
                        leader: r.leader,
                        current: r.current,
                        lag: r.lag,
                        online: r.online,
                    })
                    .collect(),
            }),
            mirror: c
                .mirror
                .as_ref()
                .map(|m| source_json(m, info.mirror.as_ref())),
            sources: c
                .sources
                .iter()
                .enumerate()
                .map(|(i, s)| source_json(s, info.sources.get(i)))
                .collect(),
        }
    }
}

/// Whether fewer of a replicated station's replicas are online and current
/// than it should have (a node down, cut off, or catching up).
pub(crate) fn under_replicated(info: &junction_api::StationInfo) -> bool {
    !info.replicas.is_empty()
        && info
            .replicas
            .iter()
            .filter(|r| r.online && r.current)
            .count()
            < info.config.replicas as usize
}

/// A replicated station's leader and replicas.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicasJson {
    /// The node that leads it now (`null` during an election or without a
    /// quorum).
    pub leader: Option<String>,
    /// Fewer replicas are online and current than the station's `replicas`
    /// (a node down, cut off, or catching up); also in `GET /v1/cluster`.
    pub under_replicated: bool,
    /// Every replica, the leader included.
    pub replicas: Vec<ReplicaJson>,
}

/// One replica.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaJson {
    /// Node name.
    pub name: String,
    /// Whether it leads.
    pub leader: bool,
    /// Whether it has (nearly) every committed entry.
    pub current: bool,
    /// Raft log entries it is behind the leader.
    pub lag: u64,
    /// Whether its node is reachable from this one.
    pub online: bool,
}

/// Every station.
#[derive(Debug, Serialize, ToSchema)]
pub struct StationList {
    /// Stations, by name.
    pub stations: Vec<StationJson>,
}

/// Create a station.
///
/// Creating a station that exists with the same definition answers 200 with it;
/// with a different definition, 409 `station_exists`.
#[utoipa::path(
    post,
    path = "/v1/stations",
    tag = "stations",
    request_body = StationRequest,
    responses(
        (status = 201, description = "Created", body = StationJson),
        (status = 200, description = "Already exists with this definition", body = StationJson),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "`station_exists` or `subjects_overlap`", body = ErrorBody),
        (status = 422, description = "Invalid definition", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: the station's `max_bytes` does not fit the tenant's `max_file` / `max_memory` beside its other stations'", body = ErrorBody),
    )
)]
pub async fn create_station(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(request): JsonBody<StationRequest>,
) -> Result<Response, AppError> {
    let Some(name) = request.name.clone().filter(|n| !n.is_empty()) else {
        return Err(AppError::invalid("invalid_config", "name is required"));
    };
    let existed = state.engine.station_info(&tenant, &name).is_ok();
    let info = state
        .engine
        .create_station(&tenant, request.into_config(name)?)
        .await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(StationJson::from(&info))).into_response())
}

/// List stations.
#[utoipa::path(
    get,
    path = "/v1/stations",
    tag = "stations",
    responses((status = 200, description = "Every station, by name", body = StationList))
)]
pub async fn list_stations(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Json<StationList> {
    let stations = state
        .engine
        .station_names(&tenant, None)
        .iter()
        .filter_map(|n| state.engine.station_info(&tenant, n).ok())
        .map(|i| StationJson::from(&i))
        .collect();
    Json(StationList { stations })
}

/// Read a station.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    responses(
        (status = 200, description = "The station", body = StationJson),
        (status = 404, description = "No such station", body = ErrorBody),
    )
)]
pub async fn get_station(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
) -> Result<Json<StationJson>, AppError> {
    let info = state.engine.station_info(&tenant, &station)?;
    Ok(Json(StationJson::from(&info)))
}

/// Replace a station's definition.
///
/// The body is a whole definition; omitted fields take their defaults.
#[utoipa::path(
    put,
    path = "/v1/stations/{station}",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    request_body = StationRequest,
    responses(
        (status = 200, description = "Updated", body = StationJson),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 409, description = "`subjects_overlap`", body = ErrorBody),
        (status = 422, description = "Invalid definition, or a change the engine does not allow", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: the station's `max_bytes` does not fit the tenant's `max_file` / `max_memory` beside its other stations'", body = ErrorBody),
    )
)]
pub async fn update_station(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    JsonBody(request): JsonBody<StationRequest>,
) -> Result<Json<StationJson>, AppError> {
    if let Some(name) = &request.name
        && *name != station
    {
        return Err(AppError::invalid(
            "name_mismatch",
            format!("body names station '{name}' but the path names '{station}'"),
        ));
    }
    let mut config = request.into_config(station)?;
    // Sealing, republish, the subject transform, mirrors and sources are JetStream settings the HTTP
    // body cannot express: an update keeps them (a sealed station stays
    // sealed).
    if let Ok(existing) = state.engine.station_info(&tenant, &config.name) {
        config.sealed = existing.config.sealed;
        config.republish = existing.config.republish;
        config.subject_transform = existing.config.subject_transform;
        config.mirror = existing.config.mirror;
        config.sources = existing.config.sources;
    }
    let info = state.engine.update_station(&tenant, config).await?;
    Ok(Json(StationJson::from(&info)))
}

/// Delete a station and its messages.
#[utoipa::path(
    delete,
    path = "/v1/stations/{station}",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such station", body = ErrorBody),
    )
)]
pub async fn delete_station(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.engine.delete_station(&tenant, &station).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which messages a purge removes; an empty body removes all.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PurgeRequest {
    /// Only messages on subjects matching this filter.
    pub filter: Option<String>,
    /// Only messages below this sequence.
    pub seq: Option<u64>,
    /// Keep this many of the newest.
    pub keep: Option<u64>,
}

/// How many messages a purge removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PurgeResponse {
    /// Messages removed.
    pub purged: u64,
}

/// The replica to move off its node.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PeerRemoveRequest {
    /// The node whose replica moves to a spare node.
    pub peer: String,
}

/// Move a replicated station's replica off a node.
///
/// The replica on `peer` is re-placed on a spare node (one with no replica of
/// the station); 503 `insufficient_resources` when there is none: the station
/// never drops below its replica count.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/peer-remove",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    request_body = PeerRemoveRequest,
    responses(
        (status = 204, description = "The replica is moving"),
        (status = 400, description = "Not replicated, or the node has no replica", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 503, description = "No spare node", body = ErrorBody),
    )
)]
pub async fn peer_remove(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    JsonBody(request): JsonBody<PeerRemoveRequest>,
) -> Result<StatusCode, AppError> {
    state
        .engine
        .remove_station_peer(&tenant, &station, &request.peer)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which replica was asked to take over.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepDownResponse {
    /// The replica asked to take the lead (an election follows).
    pub asked: String,
}

/// Hand a replicated station's leadership to another replica.
///
/// Sent to the leader (from any node); the most caught-up other replica starts
/// an election. 400 for a station with one copy.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/stepdown",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    responses(
        (status = 200, description = "Another replica was asked to lead", body = StepDownResponse),
        (status = 400, description = "The station is not replicated", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 503, description = "No other replica could be asked", body = ErrorBody),
    )
)]
pub async fn step_down(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
) -> Result<Json<StepDownResponse>, AppError> {
    let asked = state.engine.step_down_station(&tenant, &station).await?;
    Ok(Json(StepDownResponse { asked }))
}

/// Purge a station's messages.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/purge",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "Purged", body = PurgeResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 403, description = "The station denies purges", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
    )
)]
pub async fn purge_station(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    JsonBody(request): JsonBody<PurgeRequest>,
) -> Result<Json<PurgeResponse>, AppError> {
    if request.seq.is_some() && request.keep.is_some() {
        return Err(AppError::bad_request(
            "bad_request",
            "give seq or keep, not both",
        ));
    }
    let purged = state
        .engine
        .purge_station(
            &tenant,
            &station,
            Purge {
                filter: request.filter,
                seq: request.seq,
                keep: request.keep,
            },
        )
        .await?;
    Ok(Json(PurgeResponse { purged }))
}
