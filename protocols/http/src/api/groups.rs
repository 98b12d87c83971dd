//! Consumer group admin. A group created here is the same engine group a NATS
//! JetStream durable pull consumer of that name reads: members of either protocol
//! share its messages, acknowledgements and redeliveries.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use super::wire::{millis, parse_rfc3339, rfc3339};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{AckPolicy, DeliverPolicy, GroupConfig, GroupInfo, SubjectFilter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// Where a new group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicyJson {
    /// From the oldest stored message.
    #[default]
    All,
    /// From the newest stored message.
    Last,
    /// Only messages stored after the group is created.
    New,
    /// From `start_seq`.
    ByStartSequence,
    /// From the first message stored at or after `start_time`.
    ByStartTime,
    /// The newest message of every subject, then new ones.
    LastPerSubject,
}

/// What members must acknowledge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicyJson {
    /// Every message separately.
    #[default]
    Explicit,
    /// An ack covers every earlier message too.
    All,
    /// Nothing: delivery counts as acknowledged.
    None,
}

/// A durable consumer group's definition. Omitted fields take their defaults.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    /// Name, unique within the station.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Where it starts (default `all`).
    #[serde(default)]
    pub deliver_policy: DeliverPolicyJson,
    /// With `by_start_sequence`.
    pub start_seq: Option<u64>,
    /// With `by_start_time` (RFC 3339).
    pub start_time: Option<String>,
    /// What must be acknowledged (default `explicit`).
    #[serde(default)]
    pub ack_policy: AckPolicyJson,
    /// How long a delivery may stay unacknowledged before redelivery (default 30000).
    pub ack_wait_ms: Option<u64>,
    /// Most deliveries of one message (-1 = unlimited, the default).
    pub max_deliver: Option<i64>,
    /// Most unacknowledged deliveries at once (default 1000, -1 = unlimited).
    pub max_ack_pending: Option<i64>,
    /// Only messages on subjects matching one of these (default: all).
    #[serde(default)]
    pub filter_subjects: Vec<String>,
    /// Redelivery delays in milliseconds, one per attempt (the last repeats).
    #[serde(default)]
    pub backoff_ms: Vec<u64>,
    /// Most fetch requests waiting at once (default 512).
    pub max_waiting: Option<i64>,
    /// Render each delivered message's lineage as `Junction-*` headers (default
    /// false: every fetch gets exactly the headers the producer sent).
    #[serde(default)]
    pub lineage_headers: bool,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl GroupRequest {
    fn into_config(self) -> Result<GroupConfig, AppError> {
        let d = GroupConfig::default();
        if self.name.is_empty() {
            return Err(AppError::invalid(
                "invalid_group_config",
                "name is required",
            ));
        }
        let deliver_policy = match self.deliver_policy {
            DeliverPolicyJson::All => DeliverPolicy::All,
            DeliverPolicyJson::Last => DeliverPolicy::Last,
            DeliverPolicyJson::New => DeliverPolicy::New,
            DeliverPolicyJson::LastPerSubject => DeliverPolicy::LastPerSubject,
            DeliverPolicyJson::ByStartSequence => match self.start_seq {
                Some(s) if s > 0 => DeliverPolicy::ByStartSequence(s),
                _ => {
                    return Err(AppError::invalid(
                        "invalid_group_config",
                        "deliver_policy by_start_sequence needs start_seq >= 1",
                    ));
                }
            },
            DeliverPolicyJson::ByStartTime => {
                let Some(t) = &self.start_time else {
                    return Err(AppError::invalid(
                        "invalid_group_config",
                        "deliver_policy by_start_time needs start_time",
                    ));
                };
                DeliverPolicy::ByStartTime(
                    parse_rfc3339(t).map_err(|e| AppError::invalid("invalid_group_config", e))?,
                )
            }
        };
        let wrong_start = (self.start_seq.is_some()
            && self.deliver_policy != DeliverPolicyJson::ByStartSequence)
            || (self.start_time.is_some() && self.deliver_policy != DeliverPolicyJson::ByStartTime);
        if wrong_start {
            return Err(AppError::invalid(
                "invalid_group_config",
                "start_seq goes with by_start_sequence, start_time with by_start_time",
            ));
        }
        for f in &self.filter_subjects {
            SubjectFilter::new(f.clone()).map_err(|e| {
                AppError::bad_request("invalid_subject", format!("filter_subjects '{f}': {e}"))
            })?;
        }
        if self.ack_wait_ms == Some(0) {
            return Err(AppError::invalid(
                "invalid_group_config",
                "ack_wait_ms must be positive",
            ));
        }
        Ok(GroupConfig {
            name: self.name,
            durable: true,
            description: self.description,
            deliver_policy,
            ack_policy: match self.ack_policy {
                AckPolicyJson::Explicit => AckPolicy::Explicit,
                AckPolicyJson::All => AckPolicy::All,
                AckPolicyJson::None => AckPolicy::None,
            },
            ack_wait: self.ack_wait_ms.map_or(d.ack_wait, Duration::from_millis),
            max_deliver: self.max_deliver.unwrap_or(d.max_deliver),
            backoff: self
                .backoff_ms
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            filter_subjects: self.filter_subjects,
            max_waiting: self.max_waiting.unwrap_or(d.max_waiting),
            max_ack_pending: self.max_ack_pending.unwrap_or(d.max_ack_pending),
            lineage_headers: self.lineage_headers,
            metadata: self.metadata,
            ..d
        })
    }
}

/// A sequence pair: the group's own delivery counter and the station sequence.
#[derive(Debug, Serialize, ToSchema)]
pub struct SequencePair {
    /// Delivery sequence (counts redeliveries).
    pub group_seq: u64,
    /// Station sequence.
    pub station_seq: u64,
}

/// A group's position and backlog.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupStateJson {
    /// Messages not yet delivered to any member.
    pub lag: u64,
    /// Deliveries waiting for an acknowledgement.
    pub pending_acks: u64,
    /// Pending messages that were delivered more than once.
    pub redelivered: u64,
    /// Fetch requests waiting (HTTP long polls and NATS pulls).
    pub waiting: u64,
    /// Last delivery.
    pub delivered: SequencePair,
    /// Everything up to here is acknowledged.
    pub ack_floor: SequencePair,
    /// Last time a member fetched or acknowledged.
    pub last_active: Option<String>,
}

/// A consumer group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupJson {
    /// The station it reads.
    pub station: String,
    /// Name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Durable groups live until deleted; NATS ephemeral consumers are not.
    pub durable: bool,
    /// Where it started.
    pub deliver_policy: DeliverPolicyJson,
    /// With `by_start_sequence`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_seq: Option<u64>,
    /// With `by_start_time`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// What must be acknowledged.
    pub ack_policy: AckPolicyJson,
    /// Redelivery timeout.
    pub ack_wait_ms: u64,
    /// Most deliveries of one message (-1 = unlimited).
    pub max_deliver: i64,
    /// Most unacknowledged deliveries.
    pub max_ack_pending: i64,
    /// Subject filters (empty = all).
    pub filter_subjects: Vec<String>,
    /// Redelivery delays.
    pub backoff_ms: Vec<u64>,
    /// Most waiting fetch requests.
    pub max_waiting: i64,
    /// Lineage rendered as `Junction-*` headers on every delivery.
    pub lineage_headers: bool,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// When it was created.
    pub created: String,
    /// Position and backlog now.
    pub state: GroupStateJson,
}

impl From<&GroupInfo> for GroupJson {
    fn from(info: &GroupInfo) -> Self {
        let c = &info.config;
        let s = &info.state;
        let (deliver_policy, start_seq, start_time) = match &c.deliver_policy {
            DeliverPolicy::All => (DeliverPolicyJson::All, None, None),
            DeliverPolicy::Last => (DeliverPolicyJson::Last, None, None),
            DeliverPolicy::New => (DeliverPolicyJson::New, None, None),
            DeliverPolicy::LastPerSubject => (DeliverPolicyJson::LastPerSubject, None, None),
            DeliverPolicy::ByStartSequence(n) => {
                (DeliverPolicyJson::ByStartSequence, Some(*n), None)
            }
            DeliverPolicy::ByStartTime(t) => {
                (DeliverPolicyJson::ByStartTime, None, Some(rfc3339(*t)))
            }
        };
        GroupJson {
            station: info.station.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            durable: c.durable,
            deliver_policy,
            start_seq,
            start_time,
            ack_policy: match c.ack_policy {
                AckPolicy::Explicit => AckPolicyJson::Explicit,
                AckPolicy::All => AckPolicyJson::All,
                AckPolicy::None => AckPolicyJson::None,
            },
            ack_wait_ms: millis(c.ack_wait),
            max_deliver: c.max_deliver,
            max_ack_pending: c.max_ack_pending,
            filter_subjects: c.filter_subjects.clone(),
            backoff_ms: c.backoff.iter().map(|d| millis(*d)).collect(),
            max_waiting: c.max_waiting,
            lineage_headers: c.lineage_headers,
            metadata: c.metadata.clone(),
            created: rfc3339(info.created),
            state: GroupStateJson {
                lag: s.num_pending,
                pending_acks: s.num_ack_pending,
                redelivered: s.num_redelivered,
                waiting: s.num_waiting,
                delivered: SequencePair {
                    group_seq: s.delivered_consumer_seq,
                    station_seq: s.delivered_stream_seq,
                },
                ack_floor: SequencePair {
                    group_seq: s.ack_floor_consumer_seq,
                    station_seq: s.ack_floor_stream_seq,
                },
                last_active: s.last_active.map(rfc3339),
            },
        }
    }
}

/// A station's groups.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    /// Groups, by name.
    pub groups: Vec<GroupJson>,
}

/// Create a durable consumer group.
///
/// Creating a group that exists with the same definition answers 200 with it; with
/// a different definition, 409 `group_exists`.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/groups",
    tag = "groups",
    params(("station" = String, Path, description = "Station name")),
    request_body = GroupRequest,
    responses(
        (status = 201, description = "Created", body = GroupJson),
        (status = 200, description = "Already exists with this definition", body = GroupJson),
        (status = 400, description = "Malformed JSON or filter", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 409, description = "`group_exists` or `max_groups`", body = ErrorBody),
        (status = 422, description = "Invalid definition", body = ErrorBody),
    )
)]
pub async fn create_group(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    JsonBody(request): JsonBody<GroupRequest>,
) -> Result<Response, AppError> {
    let config = request.into_config()?;
    let existed = state
        .engine
        .group_info(&tenant, &station, &config.name)
        .is_ok();
    let info = state.engine.create_group(&tenant, &station, config).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(GroupJson::from(&info))).into_response())
}

/// List a station's groups.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/groups",
    tag = "groups",
    params(("station" = String, Path, description = "Station name")),
    responses(
        (status = 200, description = "The station's groups, by name", body = GroupList),
        (status = 404, description = "No such station", body = ErrorBody),
    )
)]
pub async fn list_groups(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
) -> Result<Json<GroupList>, AppError> {
    let groups = state
        .engine
        .group_names(&tenant, &station)?
        .iter()
        .filter_map(|g| state.engine.group_info(&tenant, &station, g).ok())
        .map(|i| GroupJson::from(&i))
        .collect();
    Ok(Json(GroupList { groups }))
}

/// Read a group, with its lag and pending acknowledgements.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/groups/{group}",
    tag = "groups",
    params(
        ("station" = String, Path, description = "Station name"),
        ("group" = String, Path, description = "Group name"),
    ),
    responses(
        (status = 200, description = "The group", body = GroupJson),
        (status = 404, description = "No such station or group", body = ErrorBody),
    )
)]
pub async fn get_group(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, group)): ApiPath<(String, String)>,
) -> Result<Json<GroupJson>, AppError> {
    let info = state.engine.group_info(&tenant, &station, &group)?;
    Ok(Json(GroupJson::from(&info)))
}

/// Delete a group.
#[utoipa::path(
    delete,
    path = "/v1/stations/{station}/groups/{group}",
    tag = "groups",
    params(
        ("station" = String, Path, description = "Station name"),
        ("group" = String, Path, description = "Group name"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such station or group", body = ErrorBody),
    )
)]
pub async fn delete_group(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, group)): ApiPath<(String, String)>,
) -> Result<StatusCode, AppError> {
    state.engine.delete_group(&tenant, &station, &group).await?;
    Ok(StatusCode::NO_CONTENT)
}
