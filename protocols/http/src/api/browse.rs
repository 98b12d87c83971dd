//! Reading a station without a consumer group: browse a page of messages from a
//! sequence or a time, read or delete one message.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, ApiQuery};
use super::wire::{MessageJson, parse_rfc3339, wants_lineage};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use junction_api::{Engine, EngineError, MessageQuery, SubjectFilter, TenantId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Messages per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// Most messages per page.
pub const MAX_PAGE: usize = 1000;

/// Where a page starts and how long it is.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BrowseQuery {
    /// First sequence to return (default: the oldest stored).
    pub from_seq: Option<u64>,
    /// Start at the first message stored at or after this RFC 3339 time instead.
    pub from_time: Option<String>,
    /// Most messages to return: default 100, at most 1000.
    pub limit: Option<usize>,
    /// Only messages on subjects matching this filter (default `>`).
    pub subject: Option<String>,
}

/// A page of stored messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesPage {
    /// Messages in sequence order.
    pub messages: Vec<MessageJson>,
    /// Pass as `from_seq` to read the next page.
    pub next_seq: u64,
}

fn read_page(
    engine: &dyn Engine,
    tenant: &TenantId,
    station: &str,
    start: u64,
    filter: &str,
    limit: usize,
    lineage: bool,
) -> Result<MessagesPage, AppError> {
    let mut messages = Vec::with_capacity(limit.min(64));
    let mut next = start;
    while messages.len() < limit {
        let query = MessageQuery::NextBySubject {
            seq: next,
            subject: filter.to_string(),
        };
        match engine.get_message(tenant, station, query) {
            Ok(m) => {
                next = m.seq + 1;
                messages.push(MessageJson::from_stored_with(&m, lineage));
            }
            Err(EngineError::MessageNotFound) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(MessagesPage {
        messages,
        next_seq: next,
    })
}

/// Browse a station's messages.
///
/// Reads stored messages in sequence order without a consumer group: nothing is
/// acknowledged or moved. Start at `from_seq` or at `from_time` (not both).
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/messages",
    tag = "consume",
    params(
        ("station" = String, Path, description = "Station name"),
        BrowseQuery,
        ("Junction-Lineage" = Option<bool>, Header, description = "`true`: render each message's lineage as `Junction-*` headers (default: exactly the producer's headers)"),
    ),
    responses(
        (status = 200, description = "A page of messages", body = MessagesPage),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
    )
)]
pub async fn list_messages(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    ApiQuery(query): ApiQuery<BrowseQuery>,
    headers: HeaderMap,
) -> Result<Json<MessagesPage>, AppError> {
    let lineage = wants_lineage(&headers)?;
    browse(&state, tenant, station, query, lineage)
        .await
        .map(Json)
}

/// Reads a page of `station` as `query` asks (with lineage headers when
/// `lineage`).
pub async fn browse(
    state: &ApiState,
    tenant: TenantId,
    station: String,
    query: BrowseQuery,
    lineage: bool,
) -> Result<MessagesPage, AppError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let filter = query.subject.unwrap_or_else(|| ">".to_string());
    SubjectFilter::new(filter.clone())
        .map_err(|e| AppError::bad_request("invalid_subject", format!("subject: {e}")))?;
    let info = state.engine.station_info(&tenant, &station)?;
    let start = match (query.from_seq, query.from_time) {
        (Some(_), Some(_)) => {
            return Err(AppError::bad_request(
                "invalid_query",
                "give from_seq or from_time, not both",
            ));
        }
        (Some(seq), None) => seq,
        (None, Some(time)) => {
            let t = parse_rfc3339(&time)
                .map_err(|e| AppError::bad_request("invalid_query", format!("from_time: {e}")))?;
            match state
                .engine
                .get_message(&tenant, &station, MessageQuery::FirstAtOrAfter(t))
            {
                Ok(m) => m.seq,
                Err(EngineError::MessageNotFound) => info.state.last_seq + 1,
                Err(e) => return Err(e.into()),
            }
        }
        // A station never written to reports first_seq 0.
        (None, None) => info.state.first_seq.max(1),
    };
    let engine = state.engine.clone();
    tokio::task::spawn_blocking(move || {
        read_page(&*engine, &tenant, &station, start, &filter, limit, lineage)
    })
    .await
    .map_err(|e| AppError::Internal(format!("browse task failed: {e}")))?
}

/// Where a page of a node's own replica starts and how long it is.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplicaQuery {
    /// First sequence to return (default: the oldest stored).
    pub from_seq: Option<u64>,
    /// Most messages to return: default 100, at most 1000.
    pub limit: Option<usize>,
}

/// One message of a node's replica, exactly as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaMessage {
    /// Sequence number.
    pub seq: u64,
    /// Subject.
    pub subject: String,
    /// Its `Nats-Msg-Id` (de-duplication id), when it has one.
    pub msg_id: Option<String>,
    /// Headers (empty object when none).
    #[schema(value_type = Object)]
    pub headers: super::wire::HeadersJson,
    /// The payload, in base64.
    pub payload_base64: String,
    /// When it was stored (ns since the epoch, the leader's clock).
    pub time_ns: u64,
}

/// A page of this node's own copy of a replicated station.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplicaPage {
    /// This node.
    pub node: String,
    /// Its role in the station's Raft group: leader, follower, candidate,
    /// learner or shutdown.
    pub role: String,
    /// The last Raft log index applied here.
    pub applied: u64,
    /// The log index of this node's newest snapshot of the station (null:
    /// none taken yet).
    pub snapshot_index: Option<u64>,
    /// Log entries up to this index were purged here: its snapshot has them.
    pub purged_index: Option<u64>,
    /// First and last sequence stored here (locally or, for a tiered
    /// station, in the bucket).
    pub first_seq: u64,
    pub last_seq: u64,
    /// The first sequence on this node's own disk.
    pub local_first_seq: u64,
    /// Segments in this replica's remote index (0: not tiered).
    pub remote_segments: u64,
    /// The last sequence its remote index holds (0: none).
    pub remote_last_seq: u64,
    /// Messages in sequence order.
    pub messages: Vec<ReplicaMessage>,
}

/// Read this node's own replica of a replicated station.
///
/// Never passed to the station's leader: what this node has stored, for
/// checking replicas against each other. 404 `not_a_replica` on a node that
/// holds no replica of it.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/replica",
    tag = "stations",
    params(("station" = String, Path, description = "Station name"), ReplicaQuery),
    responses(
        (status = 200, description = "A page of this node's replica", body = ReplicaPage),
        (status = 404, description = "No replica of that station here", body = ErrorBody),
        (status = 422, description = "limit out of range", body = ErrorBody),
    )
)]
pub async fn replica(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    ApiQuery(query): ApiQuery<ReplicaQuery>,
) -> Result<Json<ReplicaPage>, AppError> {
    use base64::Engine as _;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let Some(copy) = state.engine.replica_role(&tenant, &station) else {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_a_replica",
            format!("this node holds no replica of station '{station}'"),
        ));
    };
    let info = state.engine.station_info(&tenant, &station)?;
    let start = query.from_seq.unwrap_or(info.state.first_seq.max(1));
    let engine = state.engine.clone();
    let (t, s) = (tenant.clone(), station.clone());
    let page = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut next = start;
        while out.len() < limit {
            let query = MessageQuery::NextBySubject {
                seq: next,
                subject: ">".to_string(),
            };
            match engine.get_message(&t, &s, query) {
                Ok(m) => {
                    next = m.seq + 1;
                    out.push(m);
                }
                Err(EngineError::MessageNotFound) => break,
                Err(e) => return Err(AppError::from(e)),
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| AppError::Internal(format!("replica read failed: {e}")))??;
    let messages = page
        .into_iter()
        .map(|m| {
            let json = MessageJson::from_stored_with(&m, false);
            ReplicaMessage {
                seq: m.seq,
                subject: json.subject,
                msg_id: m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| String::from_utf8_lossy(v.as_ref()).into_owned()),
                headers: json.headers,
                payload_base64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
                time_ns: m
                    .time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
            }
        })
        .collect();
    Ok(Json(ReplicaPage {
        node: state.engine.cluster().map(|c| c.node).unwrap_or_default(),
        role: copy.role,
        applied: copy.applied,
        snapshot_index: copy.snapshot_index,
        purged_index: copy.purged_index,
        first_seq: info.state.first_seq,
        last_seq: info.state.last_seq,
        local_first_seq: copy.local_first_seq,
        remote_segments: copy.remote_segments,
        remote_last_seq: copy.remote_last_seq,
        messages,
    }))
}

/// Read one stored message.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/messages/{seq}",
    tag = "consume",
    params(
        ("station" = String, Path, description = "Station name"),
        ("seq" = u64, Path, description = "Sequence number"),
        ("Junction-Lineage" = Option<bool>, Header, description = "`true`: render each message's lineage as `Junction-*` headers (default: exactly the producer's headers)"),
    ),
    responses(
        (status = 200, description = "The message", body = MessageJson),
        (status = 404, description = "No such station or message", body = ErrorBody),
    )
)]
pub async fn get_message(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, seq)): ApiPath<(String, u64)>,
    headers: HeaderMap,
) -> Result<Json<MessageJson>, AppError> {
    let lineage = wants_lineage(&headers)?;
    let m = state
        .engine
        .get_message(&tenant, &station, MessageQuery::Seq(seq))?;
    Ok(Json(MessageJson::from_stored_with(&m, lineage)))
}

/// Delete one stored message.
#[utoipa::path(
    delete,
    path = "/v1/stations/{station}/messages/{seq}",
    tag = "consume",
    params(
        ("station" = String, Path, description = "Station name"),
        ("seq" = u64, Path, description = "Sequence number"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "The station denies deletes", body = ErrorBody),
        (status = 404, description = "No such station or message", body = ErrorBody),
    )
)]
pub async fn delete_message(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, seq)): ApiPath<(String, u64)>,
) -> Result<StatusCode, AppError> {
    state.engine.delete_message(&tenant, &station, seq).await?;
    Ok(StatusCode::NO_CONTENT)
}
