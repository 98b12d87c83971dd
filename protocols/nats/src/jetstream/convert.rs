//! Mapping between JetStream's JSON types and the engine's station types, and from
//! engine errors to JetStream API errors.

use super::api_types::{
    ApiError, ClusterInfo, DiscardPolicy, JsErrorCode, PeerInfo, RetentionPolicy, StorageType,
    StoredMsg, StreamConfig, StreamInfo, StreamState, format_rfc3339_nanos,
};
use crate::encode;
use junction_api::{
    ConfigError, Denial, Discard, EngineError, GroupConfigError, Retention, StationConfig,
    StationInfo, StorageKind, StoredMessage,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Stream metadata key that selects Junction's flush-interval durability
/// (e.g. `"50ms"`); without it a station fsyncs before every ack.
pub const FLUSH_INTERVAL_METADATA: &str = "junction.flush_interval";

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn duration(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// RFC 3339 text of a time, as nats-server writes it.
pub fn timestamp(t: SystemTime) -> String {
    let ns = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    format_rfc3339_nanos(ns)
}

/// A JetStream stream configuration as a station configuration (`update`: for
/// `STREAM.UPDATE`, whose refusals of a transform have their own code).
pub fn station_config(c: &StreamConfig, update: bool) -> Result<StationConfig, ApiError> {
    let (mirror, sources) = super::sourcing::station_sources(c)?;
    // nats-server 2.10.26's answers (side by side in conformance/tests/jetstream/
    // subject_transforms_answer_as_nats_server_2_10.rs): 500 with 10049 on create,
    // 10069 on update. (nats-server 2.11 and later answer 400 with 10155/10156.)
    let subject_transform = match &c.subject_transform {
        None => None,
        Some(t) => {
            junction_api::CompiledTransform::new(&t.src, &t.dest).map_err(|e| {
                if update {
                    JsErrorCode::StreamUpdate.with_err(format!(
                        "stream configuration for subject transform from '{}' to '{}': {e}",
                        t.src, t.dest
                    ))
                } else {
                    JsErrorCode::StreamCreate.with_err(format!(
                        "stream subject transform from '{}' to '{}': {e}",
                        t.src, t.dest
                    ))
                }
            })?;
            Some(junction_api::SubjectTransform {
                source: t.src.clone(),
                destination: t.dest.clone(),
            })
        }
    };
    if c.num_replicas < 0 {
        return Err(JsErrorCode::ReplicasCountCannotBeNegative.error());
    }
    // nats-server's checks and texts (a negative duration would otherwise read as
    // 0: "forever" for max_age, the default for the duplicate window).
    if c.max_age < 0 {
        return Err(JsErrorCode::StreamInvalidConfig.with_err("max age needs to be >= 100ms"));
    }
    if c.duplicate_window < 0 {
        return Err(
            JsErrorCode::StreamInvalidConfig.with_err("duplicates window can not be negative")
        );
    }
    let flush_interval = match c.metadata.get(FLUSH_INTERVAL_METADATA) {
        None => None,
        Some(v) => Some(humantime_like(v).ok_or_else(|| {
            JsErrorCode::StreamInvalidConfig.with_err(format!(
                "{FLUSH_INTERVAL_METADATA}: '{v}' is not a duration"
            ))
        })?),
    };
    let tier = tier_policy(&c.metadata)?;
    let compact = compact_policy(&c.metadata)?;
    Ok(StationConfig {
        tier,
        compact,
        name: c.name.clone(),
        description: (!c.description.is_empty()).then(|| c.description.clone()),
        subjects: c.subjects.clone(),
        retention: match c.retention {
            RetentionPolicy::Limits => Retention::Limits,
            RetentionPolicy::Interest => Retention::Interest,
            RetentionPolicy::WorkQueue => Retention::WorkQueue,
        },
        max_msgs: c.max_msgs,
        max_bytes: c.max_bytes,
        max_age: duration(c.max_age),
        max_msgs_per_subject: c.max_msgs_per_subject,
        max_msg_size: i64::from(c.max_msg_size),
        max_consumers: c.max_consumers,
        discard: match c.discard {
            DiscardPolicy::Old => Discard::Old,
            DiscardPolicy::New => Discard::New,
        },
        storage: match c.storage {
            StorageType::File => StorageKind::File,
            StorageType::Memory => StorageKind::Memory,
        },
        replicas: u32::try_from(c.num_replicas.max(1)).unwrap_or(1),
        duplicate_window: duration(c.duplicate_window),
        flush_interval,
        deny_delete: c.deny_delete,
        deny_purge: c.deny_purge,
        allow_rollup: c.allow_rollup_hdrs,
        allow_direct: c.allow_direct,
        metadata: c.metadata.clone(),
        sealed: c.sealed,
        republish: c.republish.as_ref().map(|r| junction_api::Republish {
            source: r.src.clone(),
            destination: r.dest.clone(),
            headers_only: r.headers_only,
        }),
        subject_transform,
        mirror,
        sources,
        ..StationConfig::default()
    })
}

/// Prefix of the stream metadata keys that set a station's tiering policy:
/// `junction.tier.local_max_bytes`, `…local_max_age_ms`, `…segment_bytes`,
/// `…segment_max_age_ms`, `…max_pending_bytes` (whole numbers). Any of them tiers the station; the
/// others keep their defaults.
pub const TIER_METADATA_PREFIX: &str = "junction.tier.";

/// The station's metadata, with its tiering policy (set over HTTP or
/// JetStream) as `junction.tier.*` keys.
fn with_tier_metadata(c: &StationConfig) -> std::collections::BTreeMap<String, String> {
    let mut m = c.metadata.clone();
    if let Some(t) = &c.tier {
        for (field, v) in [
            ("local_max_bytes", t.local_max_bytes),
            ("local_max_age_ms", t.local_max_age_ms),
            ("segment_bytes", t.segment_bytes),
            ("segment_max_age_ms", t.segment_max_age_ms),
            ("max_pending_bytes", t.max_pending_bytes),
        ] {
            m.insert(format!("{TIER_METADATA_PREFIX}{field}"), v.to_string());
        }
    }
    m
}

/// The tiering policy the stream metadata sets, if any.
fn tier_policy(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<Option<junction_api::TierPolicy>, ApiError> {
    let mut policy: Option<junction_api::TierPolicy> = None;
    let mut keys: Vec<(&String, &String)> = metadata
        .iter()
        .filter(|(k, _)| k.starts_with(TIER_METADATA_PREFIX))
        .collect();
    keys.sort();
    for (key, value) in keys {
        let p = policy.get_or_insert_with(Default::default);
        let field = &key[TIER_METADATA_PREFIX.len()..];
        let slot = match field {
            "local_max_bytes" => &mut p.local_max_bytes,
            "local_max_age_ms" => &mut p.local_max_age_ms,
            "segment_bytes" => &mut p.segment_bytes,
            "segment_max_age_ms" => &mut p.segment_max_age_ms,
            "max_pending_bytes" => &mut p.max_pending_bytes,
            _ => {
                return Err(JsErrorCode::StreamInvalidConfig.with_err(format!(
                    "{key}: unknown tier setting (local_max_bytes, local_max_age_ms, \
                     segment_bytes, segment_max_age_ms, max_pending_bytes)"
                )));
            }
        };
        *slot = value.trim().parse().map_err(|_| {
            JsErrorCode::StreamInvalidConfig
                .with_err(format!("{key}: '{value}' is not a whole number"))
        })?;
    }
    Ok(policy)
}

/// Prefix of the stream metadata keys that set a station's compaction policy:
/// `junction.compact.min_lag_ms`, `…max_lag_ms`, `…tombstone_retention_ms`
/// (whole numbers of milliseconds). Any of them compacts the station; the
/// others keep their defaults.
pub const COMPACT_METADATA_PREFIX: &str = "junction.compact.";

/// `m` with the station's compaction policy as `junction.compact.*` keys.
fn with_compact_metadata(
    c: &StationConfig,
    mut m: std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    if let Some(p) = &c.compact {
        for (field, v) in [
            ("min_lag_ms", p.min_lag_ms),
            ("max_lag_ms", p.max_lag_ms),
            ("tombstone_retention_ms", p.tombstone_retention_ms),
        ] {
            m.insert(format!("{COMPACT_METADATA_PREFIX}{field}"), v.to_string());
        }
    }
    m
}

/// The compaction policy the stream metadata sets, if any (10052 for a key or
/// value it cannot take; the engine checks the policy as a whole).
fn compact_policy(
    metadata: &std::collections::BTreeMap<String, String>,
) -> Result<Option<junction_api::CompactPolicy>, ApiError> {
    let mut policy: Option<junction_api::CompactPolicy> = None;
    for (key, value) in metadata
        .iter()
        .filter(|(k, _)| k.starts_with(COMPACT_METADATA_PREFIX))
    {
        let p = policy.get_or_insert_with(Default::default);
        let field = &key[COMPACT_METADATA_PREFIX.len()..];
        let slot = match field {
            "min_lag_ms" => &mut p.min_lag_ms,
            "max_lag_ms" => &mut p.max_lag_ms,
            "tombstone_retention_ms" => &mut p.tombstone_retention_ms,
            _ => {
                return Err(JsErrorCode::StreamInvalidConfig.with_err(format!(
                    "{key}: unknown compact setting (min_lag_ms, max_lag_ms, tombstone_retention_ms)"
                )));
            }
        };
        let n: i64 = value.trim().parse().map_err(|_| {
            JsErrorCode::StreamInvalidConfig
                .with_err(format!("{key}: '{value}' is not a whole number"))
        })?;
        *slot = u64::try_from(n).map_err(|_| {
            JsErrorCode::StreamInvalidConfig.with_err(format!("{key}: must not be negative"))
        })?;
    }
    Ok(policy)
}

/// Parses `"50ms"`, `"2s"`, `"1m"` or a Go duration.
fn humantime_like(v: &str) -> Option<Duration> {
    super::api_types::parse_go_duration(v)
        .ok()
        .and_then(|ns| u64::try_from(ns).ok())
        .map(Duration::from_nanos)
}

/// A station configuration as the JetStream stream configuration clients expect.
pub fn stream_config(c: &StationConfig) -> StreamConfig {
    StreamConfig {
        name: c.name.clone(),
        description: c.description.clone().unwrap_or_default(),
        subjects: c.subjects_or_name(),
        retention: match c.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::WorkQueue => RetentionPolicy::WorkQueue,
        },
        max_consumers: c.max_consumers,
        max_msgs: c.max_msgs,
        max_bytes: c.max_bytes,
        max_age: nanos(c.max_age),
        max_msgs_per_subject: c.max_msgs_per_subject,
        max_msg_size: i32::try_from(c.max_msg_size).unwrap_or(i32::MAX),
        discard: match c.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        },
        storage: match c.storage {
            StorageKind::File => StorageType::File,
            StorageKind::Memory => StorageType::Memory,
        },
        num_replicas: i64::from(c.replicas),
        duplicate_window: nanos(c.duplicate_window),
        deny_delete: c.deny_delete,
        deny_purge: c.deny_purge,
        allow_rollup_hdrs: c.allow_rollup,
        allow_direct: c.allow_direct,
        metadata: with_compact_metadata(c, with_tier_metadata(c)),
        sealed: c.sealed,
        republish: c.republish.as_ref().map(|r| super::api_types::RePublish {
            src: r.source.clone(),
            dest: r.destination.clone(),
            headers_only: r.headers_only,
        }),
        subject_transform: c.subject_transform.as_ref().map(|t| {
            super::api_types::SubjectTransformConfig {
                src: t.source.clone(),
                dest: t.destination.clone(),
            }
        }),
        mirror: c.mirror.as_ref().map(super::sourcing::stream_source),
        sources: c
            .sources
            .iter()
            .map(super::sourcing::stream_source)
            .collect(),
        ..StreamConfig::default()
    }
}

/// A station's info as a JetStream stream info.
pub fn stream_info(info: &StationInfo) -> StreamInfo {
    let s = &info.state;
    StreamInfo {
        config: stream_config(&info.config),
        created: timestamp(info.created),
        state: StreamState {
            messages: s.messages,
            bytes: s.bytes,
            first_seq: s.first_seq,
            first_ts: s
                .first_time
                .map_or_else(|| timestamp(UNIX_EPOCH), timestamp),
            last_seq: s.last_seq,
            last_ts: s.last_time.map_or_else(|| timestamp(UNIX_EPOCH), timestamp),
            num_subjects: s.num_subjects,
            num_deleted: s.num_deleted,
            consumer_count: s.consumer_count,
            tier: s.tier.clone(),
            compacted: s.compacted,
            ..StreamState::default()
        },
        domain: String::new(),
        cluster: cluster_info(info),
        mirror: info
            .config
            .mirror
            .as_ref()
            .zip(info.mirror.as_ref())
            .map(|(c, st)| super::sourcing::source_info(c, st)),
        sources: info
            .config
            .sources
            .iter()
            .zip(info.sources.iter())
            .map(|(c, st)| super::sourcing::source_info(c, st))
            .collect(),
        alternates: Vec::new(),
        ts: timestamp(SystemTime::now()),
    }
}

/// A stream's `cluster` block: its leader and, for a replicated stream, its other
/// replicas (as nats-server lists them: the leader is not among `replicas`).
pub fn cluster_info(info: &junction_api::StationInfo) -> Option<ClusterInfo> {
    if info.node.is_none() && info.replicas.is_empty() {
        return None;
    }
    Some(ClusterInfo {
        leader: info.node.clone().unwrap_or_default(),
        replicas: info
            .replicas
            .iter()
            .filter(|r| !r.leader)
            .map(|r| PeerInfo {
                name: r.name.clone(),
                current: r.current,
                offline: !r.online,
                active: 0,
                lag: r.lag,
                peer: r.name.clone(),
            })
            .collect(),
        ..ClusterInfo::default()
    })
}

/// A stored message as `STREAM.MSG.GET` returns it.
pub fn stored_msg(m: &StoredMessage) -> StoredMsg {
    StoredMsg {
        subject: m.subject.to_str_lossy().into_owned(),
        seq: m.seq,
        hdrs: m
            .headers
            .as_ref()
            .map(|h| encode::header_block(h).freeze())
            .unwrap_or_default(),
        data: m.payload.clone(),
        time: timestamp(m.time),
    }
}

/// JetStream error code of a schema violation. nats-server has none; Junction's own
/// codes start at 19000 so that they never collide with nats-server's (10xxx).
pub const SCHEMA_VIOLATION_ERR_CODE: u16 = 19001;

/// A schema violation as a PubAck error: code 400, err_code 19001, and the
/// validation errors in the description.
pub fn schema_violation(v: &junction_api::SchemaViolation) -> ApiError {
    ApiError {
        code: 400,
        err_code: SCHEMA_VIOLATION_ERR_CODE,
        description: format!("schema violation: {v}"),
    }
}

/// Junction's own err_code: a content-based routing rule dropped the message.
pub const DROPPED_BY_RULE_ERR_CODE: u16 = 19002;
/// Junction's own err_code: the stream (station) or subject is the broker's own
/// (`$MQTT_*`, `$dls_*`, `$sys*`), out of clients' reach.
pub const INTERNAL_STATE_ERR_CODE: u16 = 19003;

/// An engine error in nats-server's words: the sentences JetStream clients (and
/// the conformance tests that compare with nats-server) expect. The engine's own
/// `Display` is neutral; this is the NATS front-end's wording.
pub fn description(e: &EngineError) -> String {
    use EngineError as E;
    match e {
        E::InvalidSubject(s) => format!("invalid subject: {s}"),
        E::AuthorizationViolation => "authorization violation".into(),
        E::MaxConnections => "maximum connections exceeded".into(),
        E::MaxSubscriptions => "maximum subscriptions exceeded".into(),
        E::ShuttingDown => "server is shutting down".into(),
        E::StationNotFound => "stream not found".into(),
        E::StationNameInUse => "stream name already in use with a different configuration".into(),
        E::SubjectsOverlap => "subjects overlap with an existing stream".into(),
        E::InvalidConfig(c) => config_description(c),
        E::WrongLastSequence(n) | E::WrongLastSubjectSequence(n) => {
            format!("wrong last sequence: {n}")
        }
        E::WrongLastMsgId(id) => format!("wrong last msg ID: {id}"),
        E::WrongExpectedStation => "expected stream does not match".into(),
        E::MessageTooLarge => "message size exceeds maximum allowed".into(),
        E::MaxMessages => "maximum messages exceeded".into(),
        E::MaxBytes => "maximum bytes exceeded".into(),
        E::RollupNotPermitted => "rollup not permitted".into(),
        E::MessageNotFound => "no message found".into(),
        E::Denied(Denial::PurgeNotPermitted) => "stream purge is not permitted".into(),
        E::Denied(Denial::DeleteNotPermitted) => "message delete is not permitted".into(),
        E::Denied(Denial::Sealed) => "invalid operation on sealed stream".into(),
        E::GroupNotFound => "consumer not found".into(),
        E::GroupExists => "consumer already exists".into(),
        E::InvalidGroupConfig(GroupConfigError::Invalid(m)) => m.clone(),
        E::InvalidGroupConfig(g) => {
            group_config_code(g).map_or_else(|| g.to_string(), |c| c.description().to_string())
        }
        E::MaxGroups => "maximum consumers limit reached".into(),
        // The rest have no nats-server counterpart: the broker's own words.
        other => other.to_string(),
    }
}

fn config_description(c: &ConfigError) -> String {
    match c {
        ConfigError::DuplicateSubjects => "duplicate subjects detected".into(),
        ConfigError::StorageChange => {
            "stream configuration update can not change storage type".into()
        }
        ConfigError::RetentionChange => {
            "stream configuration update can not change retention policy".into()
        }
        ConfigError::ReplicasUnsupported => {
            "replicas > 1 not supported in non-clustered mode".into()
        }
        other => other.to_string(),
    }
}

/// nats-server's own error code for a refused consumer configuration, where it has
/// one (the work-queue checks).
pub fn group_config_code(e: &GroupConfigError) -> Option<JsErrorCode> {
    match e {
        GroupConfigError::WorkQueueNeedsExplicitAck => {
            Some(JsErrorCode::ConsumerWQRequiresExplicitAck)
        }
        GroupConfigError::WorkQueueUnfilteredNotAlone => {
            Some(JsErrorCode::ConsumerWQMultipleUnfiltered)
        }
        GroupConfigError::WorkQueueFilterNotUnique => {
            Some(JsErrorCode::ConsumerWQConsumerNotUnique)
        }
        GroupConfigError::WorkQueueNotDeliverAll => {
            Some(JsErrorCode::ConsumerWQConsumerNotDeliverAll)
        }
        _ => None,
    }
}

/// The JetStream error for an engine error.
pub fn api_error(e: &EngineError) -> ApiError {
    match e {
        EngineError::DroppedByRule(_) => ApiError {
            code: 400,
            err_code: DROPPED_BY_RULE_ERR_CODE,
            description: description(e),
        },
        EngineError::InternalStation(_) | EngineError::InternalSubject(_) => ApiError {
            code: 403,
            err_code: INTERNAL_STATE_ERR_CODE,
            description: description(e),
        },
        EngineError::StationNotFound => JsErrorCode::StreamNotFound.error(),
        EngineError::StationNameInUse => JsErrorCode::StreamNameExist.error(),
        EngineError::SubjectsOverlap => JsErrorCode::StreamSubjectOverlap.error(),
        // nats-server's own answer outside a cluster.
        EngineError::InvalidConfig(ConfigError::ReplicasUnsupported) => {
            JsErrorCode::StreamReplicasNotSupported.error()
        }
        EngineError::InvalidConfig(c) => {
            JsErrorCode::StreamInvalidConfig.with_err(config_description(c))
        }
        EngineError::InsufficientResources(_) => JsErrorCode::InsufficientResources.error(),
        EngineError::BadRequest(_) => JsErrorCode::BadRequest.error(),
        EngineError::WrongLastSequence(n) | EngineError::WrongLastSubjectSequence(n) => {
            ApiError::wrong_last_sequence(*n)
        }
        EngineError::WrongLastMsgId(id) => ApiError::wrong_last_msg_id(id),
        EngineError::WrongExpectedStation => JsErrorCode::StreamNotMatch.error(),
        EngineError::MessageTooLarge => JsErrorCode::StreamMessageExceedsMaximum.error(),
        EngineError::MaxMessages | EngineError::MaxBytes => {
            JsErrorCode::StreamStoreFailed.with_err(description(e))
        }
        EngineError::MessageNotFound => JsErrorCode::NoMessageFound.error(),
        EngineError::RollupNotPermitted => JsErrorCode::StreamRollupFailed.with_err(description(e)),
        EngineError::Denied(Denial::Sealed) => JsErrorCode::StreamSealed.error(),
        EngineError::Denied(_) => JsErrorCode::StreamGeneral.with_err(description(e)),
        EngineError::Storage(m) => JsErrorCode::StreamStoreFailed.with_err(m),
        EngineError::CorruptRecord(_) => JsErrorCode::StreamStoreFailed.with_err(description(e)),
        // nats-server's 503 for a JetStream that cannot answer now.
        EngineError::TierUnavailable(_) => JsErrorCode::ClusterNotAvail.with_err(description(e)),
        EngineError::SchemaViolation(v) => schema_violation(v),
        EngineError::GroupNotFound => JsErrorCode::ConsumerNotFound.error(),
        EngineError::GroupExists => JsErrorCode::ConsumerNameExist.error(),
        EngineError::MaxGroups => JsErrorCode::MaximumConsumersLimit.error(),
        EngineError::TenantLimit {
            what: junction_api::TenantLimit::Streams,
            ..
        } => JsErrorCode::MaximumStreamsLimit.error(),
        EngineError::TenantLimit {
            what: junction_api::TenantLimit::Consumers,
            ..
        } => JsErrorCode::MaximumConsumersLimit.error(),
        // nats-server's `checkBytesLimits` on stream create and update: the
        // stations' `max_bytes` reservations do not fit the account's limit.
        EngineError::TenantLimit {
            what: junction_api::TenantLimit::FileStorage,
            ..
        } => JsErrorCode::StorageResourcesExceeded.error(),
        EngineError::TenantLimit {
            what: junction_api::TenantLimit::MemoryStorage,
            ..
        } => JsErrorCode::MemoryResourcesExceeded.error(),
        // nats-server's publish path when `wouldExceedLimits` holds.
        EngineError::TenantStorageFull { .. } => JsErrorCode::AccountResourcesExceeded.error(),
        // The disk is nearly full: nats-server's answer when its store is out
        // of resources.
        EngineError::StorageFenced(_) => JsErrorCode::StorageResourcesExceeded.error(),
        EngineError::InvalidGroupConfig(g) => group_config_code(g).map_or_else(
            || JsErrorCode::ConsumerCreate.with_err(description(e)),
            JsErrorCode::error,
        ),
        other => JsErrorCode::StreamGeneral.with_err(description(other)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn tier_metadata_sets_the_policy_and_is_shown_back() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "junction.tier.segment_bytes".to_string(),
            "65536".to_string(),
        );
        m.insert("other".to_string(), "kept".to_string());
        let p = tier_policy(&m).unwrap().expect("a policy");
        assert_eq!(p.segment_bytes, 65536);
        assert_eq!(
            p.local_max_bytes,
            junction_api::TierPolicy::DEFAULT_LOCAL_MAX_BYTES
        );
        let c = StationConfig {
            tier: Some(p),
            metadata: m,
            ..StationConfig::default()
        };
        let shown = with_tier_metadata(&c);
        assert_eq!(shown["junction.tier.segment_bytes"], "65536");
        assert_eq!(shown["other"], "kept");
        assert_eq!(tier_policy(&shown).unwrap(), Some(p));
        assert_eq!(tier_policy(&Default::default()).unwrap(), None);
    }

    #[test]
    fn bad_tier_metadata_is_refused_naming_the_key() {
        for (k, v, why) in [
            (
                "junction.tier.segment_bytes",
                "lots",
                "'lots' is not a whole number",
            ),
            ("junction.tier.segmnt_bytes", "1", "unknown tier setting"),
        ] {
            let m = [(k.to_string(), v.to_string())].into_iter().collect();
            let e = tier_policy(&m).expect_err("refused");
            let text = serde_json::to_string(&e).unwrap();
            assert!(text.contains(k) && text.contains(why), "{text}");
        }
    }
}
