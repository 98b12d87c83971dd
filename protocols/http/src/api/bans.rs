//! Bans, for the operators (the system tenant's users, or the default
//! tenant's when there is none), as EMQX's `/api/v5/banned`: list the
//! addresses and MQTT client ids banned after repeated failed logins, lift a
//! ban, and ban one by hand. Bans live in this node's memory.

use super::ApiState;
use super::auth::Authenticated;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use super::wire::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{BanInfo, BanKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// One ban in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ban {
    /// `address` or `client_id`.
    pub kind: &'static str,
    /// The IP address or the MQTT client id.
    pub who: String,
    /// When it ends (RFC 3339, UTC).
    pub until: String,
    /// Why it was made.
    pub reason: String,
}

impl From<BanInfo> for Ban {
    fn from(b: BanInfo) -> Self {
        Ban {
            kind: b.kind.as_str(),
            who: b.who,
            until: rfc3339(b.until),
            reason: b.reason,
        }
    }
}

/// Every ban in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct BanList {
    /// Addresses first, then client ids, each sorted.
    pub bans: Vec<Ban>,
}

/// A ban made by hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// `address` or `client_id`.
    pub kind: String,
    /// The IP address or the MQTT client id.
    pub who: String,
    /// How long, as `10m`, `1h 30m` or `2days`.
    #[serde(rename = "for")]
    pub ban_for: String,
    /// Why; shown in the list (default: "banned by an operator").
    #[serde(default)]
    pub reason: String,
}

/// `address` or `client_id`, else 400 `bad_request`.
fn kind_of(name: &str) -> Result<BanKind, AppError> {
    BanKind::parse(name).ok_or_else(|| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("'{name}' is not a kind of ban: give 'address' or 'client_id'"),
        )
    })
}

/// List bans (operators only).
#[utoipa::path(
    get,
    path = "/v1/bans",
    tag = "bans",
    responses(
        (status = 200, description = "Every ban in force on this node", body = BanList),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
    )
)]
pub async fn list_bans(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<BanList>, AppError> {
    auth.operators_only("bans")?;
    Ok(Json(BanList {
        bans: state.engine.bans().into_iter().map(Ban::from).collect(),
    }))
}

/// Ban an address or an MQTT client id by hand (operators only), replacing a
/// ban it has. A banned address is refused on every protocol; a banned client
/// id's MQTT CONNECT is answered 0x8A (MQTT 5) or 0x05 (3.1.1). Connections
/// already open stay open.
#[utoipa::path(
    post,
    path = "/v1/bans",
    tag = "bans",
    request_body(content = BanRequest, description = "`{\"kind\", \"who\", \"for\", \"reason\"}`"),
    responses(
        (status = 201, description = "Banned", body = Ban),
        (status = 400, description = "`bad_request`: an unknown kind, an address that is not an IP address, an empty client id, a bad or zero duration, or a broker that needs no credentials", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
    )
)]
pub async fn ban(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    JsonBody(request): JsonBody<BanRequest>,
) -> Result<Response, AppError> {
    auth.operators_only("bans")?;
    let kind = kind_of(&request.kind)?;
    let ban_for = humantime::parse_duration(request.ban_for.trim()).map_err(|e| {
        AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("'for': '{}' is not a duration: {e}", request.ban_for),
        )
    })?;
    let made = state
        .engine
        .ban(kind, &request.who, ban_for, &request.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(Ban::from(made))).into_response())
}

/// Lift a ban (operators only); the address or client id may log in at once,
/// its recent failures forgotten.
#[utoipa::path(
    delete,
    path = "/v1/bans/{kind}/{who}",
    tag = "bans",
    params(
        ("kind" = String, Path, description = "`address` or `client_id`"),
        ("who" = String, Path, description = "The IP address or the client id (percent-encoded)"),
    ),
    responses(
        (status = 204, description = "Lifted"),
        (status = 400, description = "`bad_request`: an unknown kind", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`ban_not_found`", body = ErrorBody),
    )
)]
pub async fn lift_ban(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath((kind, who)): ApiPath<(String, String)>,
) -> Result<StatusCode, AppError> {
    auth.operators_only("bans")?;
    let kind = kind_of(&kind)?;
    state.engine.lift_ban(kind, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}
