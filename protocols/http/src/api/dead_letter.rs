//! A station's dead-letter station (`$dls_<station>`): browse, purge, and re-send
//! its messages as a background task whose progress can be read.
//!
//! The DLS is an ordinary station too: `/v1/stations/$dls_<station>/…` reads it,
//! and consumer groups can be created on it.

use super::ApiState;
use super::auth::Tenant;
use super::browse::{BrowseQuery, MessagesPage, browse};
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, ApiQuery, JsonBody};
use super::wire::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{
    Purge, ResendRequest, ResendState, ResendStatus, TenantId, dead_letter_station,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The dead-letter station of `station`, which must exist.
fn dls_of(state: &ApiState, tenant: &TenantId, station: &str) -> Result<String, AppError> {
    state.engine.station_info(tenant, station)?;
    let dls = dead_letter_station(station);
    if state.engine.station_info(tenant, &dls).is_err() {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "dead_letter_station_not_found",
            format!(
                "station '{station}' has no dead-letter station: switch on a cause in its dead_letter policy"
            ),
        ));
    }
    Ok(dls)
}

/// Browse a station's dead letters.
///
/// The same page shape and query as browsing a station. Each message carries the
/// `Junction-Dls-*` headers saying why it is there.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/dls/messages",
    tag = "dead-letter",
    params(
        ("station" = String, Path, description = "Station name"),
        BrowseQuery,
        ("Junction-Lineage" = Option<bool>, Header, description = "`true`: render each message's lineage as `Junction-*` headers (default: exactly the producer's headers)"),
    ),
    responses(
        (status = 200, description = "A page of dead letters", body = MessagesPage),
        (status = 404, description = "No such station, or it has no dead-letter station", body = ErrorBody),
    )
)]
pub async fn list_dead_letters(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    ApiQuery(query): ApiQuery<BrowseQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Json<MessagesPage>, AppError> {
    let lineage = super::wire::wants_lineage(&headers)?;
    let dls = dls_of(&state, &tenant, &station)?;
    browse(&state, tenant, dls, query, lineage).await.map(Json)
}

/// How many dead letters a purge removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct DlsPurgeResponse {
    /// Messages removed.
    pub purged: u64,
}

/// Purge a station's dead letters.
#[utoipa::path(
    delete,
    path = "/v1/stations/{station}/dls/messages",
    tag = "dead-letter",
    params(("station" = String, Path, description = "Station name")),
    responses(
        (status = 200, description = "Purged", body = DlsPurgeResponse),
        (status = 404, description = "No such station, or it has no dead-letter station", body = ErrorBody),
    )
)]
pub async fn purge_dead_letters(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
) -> Result<Json<DlsPurgeResponse>, AppError> {
    let dls = dls_of(&state, &tenant, &station)?;
    let purged = state
        .engine
        .purge_station(&tenant, &dls, Purge::default())
        .await?;
    Ok(Json(DlsPurgeResponse { purged }))
}

/// Which dead letters to re-send: `"all"` or a list of their sequences.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ResendIds {
    /// `"all"`: every dead letter stored when the task starts.
    All(String),
    /// These dead-letter sequences.
    Some(Vec<u64>),
}

/// Where re-sent messages go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResendTarget {
    /// Back to the group that gave up on each message (or `group`), as a new
    /// delivery attempt with a fresh delivery count. A message without a group
    /// (a schema violation), or whose original is no longer stored, is re-published
    /// into the station instead.
    #[default]
    Group,
    /// Re-published into the station as a new message: every group gets it.
    Station,
}

/// A resend request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendBody {
    /// `"all"` or `[seq, …]` (dead-letter sequences).
    #[schema(value_type = Object)]
    pub ids: ResendIds,
    /// Hand the messages to this group instead of the one that gave up on them.
    pub group: Option<String>,
    /// `group` (default) or `station`.
    #[serde(default)]
    pub target: ResendTarget,
}

/// A resend task's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResendJson {
    /// Task id: `GET /v1/stations/{station}/dls/resend/{id}`.
    pub id: u64,
    /// The station.
    pub station: String,
    /// `running` or `done`.
    pub state: String,
    /// Dead letters selected.
    pub total: u64,
    /// Handed back to a group.
    pub redelivered: u64,
    /// Re-published into the station.
    pub republished: u64,
    /// Not re-sent; see `errors`.
    pub failed: u64,
    /// `"<dls seq>: <why>"`, at most 100.
    pub errors: Vec<String>,
    /// When it started.
    pub started: String,
    /// When it finished.
    pub finished: Option<String>,
}

impl From<&ResendStatus> for ResendJson {
    fn from(s: &ResendStatus) -> Self {
        ResendJson {
            id: s.id,
            station: s.station.clone(),
            state: match s.state {
                ResendState::Running => "running",
                ResendState::Done => "done",
            }
            .into(),
            total: s.total,
            redelivered: s.redelivered,
            republished: s.republished,
            failed: s.failed,
            errors: s.errors.clone(),
            started: rfc3339(s.started),
            finished: s.finished.map(rfc3339),
        }
    }
}

/// Re-send dead letters.
///
/// Starts a background task and answers 202 at once with its id; poll
/// `GET /v1/stations/{station}/dls/resend/{id}`. A dead letter that is re-sent is
/// removed from the DLS; one that fails stays (and the task lists why).
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/dls/resend",
    tag = "dead-letter",
    params(("station" = String, Path, description = "Station name")),
    request_body = ResendBody,
    responses(
        (status = 202, description = "Started", body = ResendJson),
        (status = 400, description = "Malformed request, or no dead-letter station", body = ErrorBody),
        (status = 404, description = "No such station or group", body = ErrorBody),
    )
)]
pub async fn resend(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    JsonBody(body): JsonBody<ResendBody>,
) -> Result<Response, AppError> {
    let ids = match body.ids {
        ResendIds::All(all) if all == "all" => None,
        ResendIds::All(other) => {
            return Err(AppError::bad_request(
                "bad_request",
                format!("ids must be \"all\" or a list of sequences, not \"{other}\""),
            ));
        }
        ResendIds::Some(ids) => Some(ids),
    };
    let status = state
        .engine
        .resend_dead_letters(
            &tenant,
            &station,
            ResendRequest {
                ids,
                group: body.group,
                to_station: body.target == ResendTarget::Station,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ResendJson::from(&status))).into_response())
}

/// Read a resend task's progress.
#[utoipa::path(
    get,
    path = "/v1/stations/{station}/dls/resend/{task}",
    tag = "dead-letter",
    params(
        ("station" = String, Path, description = "Station name"),
        ("task" = u64, Path, description = "Task id"),
    ),
    responses(
        (status = 200, description = "Progress", body = ResendJson),
        (status = 404, description = "No such station or task", body = ErrorBody),
    )
)]
pub async fn resend_status(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((station, task)): ApiPath<(String, u64)>,
) -> Result<Json<ResendJson>, AppError> {
    let status = state.engine.resend_status(&tenant, &station, task)?;
    Ok(Json(ResendJson::from(&status)))
}
