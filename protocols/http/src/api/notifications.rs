//! The notification centre, for the operators (the system tenant's users, or
//! the default tenant's when there is none): the webhooks that carry system
//! events out, with their health; make, change and delete those made here, and
//! send any of them a test. Webhooks of the configuration file are read-only
//! (409 `webhook_read_only`). Also the alarms raised now, for anyone signed in.

use super::ApiState;
use super::auth::Authenticated;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{NotificationCentre, WebhookInfo, WebhookTestOutcome};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Every webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Sorted by name, each `{"name", "source": "config" | "api", "config":
    /// {"name", "url", "kinds", "tenants", "min_severity", "format", "headers",
    /// "secret" (shown as "********"), "max_attempts", "max_per_minute",
    /// "timeout", "retry_base", "retry_max"}, "health": {"delivered", "failed_attempts",
    /// "dead_lettered", "last_error", "pending"}}`.
    #[schema(value_type = Vec<Object>)]
    pub webhooks: Vec<WebhookInfo>,
}

/// One alarm raised now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Alarm {
    /// `storage_low`, `storage_full`, `memory_high`,
    /// `tls_certificate_expiring`, `webhook_failing:<name>`.
    #[schema(example = "storage_low")]
    pub name: String,
    /// Why it is raised, for people.
    pub message: String,
}

/// The alarms raised now.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmList {
    /// Sorted by name; empty when all is well.
    pub alarms: Vec<Alarm>,
}

/// The notification centre, or 503 when this broker runs none.
fn centre(state: &ApiState) -> Result<Arc<dyn NotificationCentre>, AppError> {
    state.engine.notification_centre().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "notifications_unavailable",
            "this broker runs no notification centre",
        )
    })
}

/// The alarms raised now on this node (the self-checks': disk, memory,
/// certificates, webhooks), as `junction_alarm_active` in `/metrics` shows them.
#[utoipa::path(
    get,
    path = "/v1/alarms",
    tag = "notifications",
    responses(
        (status = 200, description = "The alarms raised now", body = AlarmList),
    )
)]
pub async fn list_alarms(State(state): State<Arc<ApiState>>) -> Json<AlarmList> {
    Json(AlarmList {
        alarms: state
            .engine
            .alarms()
            .into_iter()
            .map(|(name, message)| Alarm { name, message })
            .collect(),
    })
}

/// List webhooks with their health (operators only).
#[utoipa::path(
    get,
    path = "/v1/notifications/webhooks",
    tag = "notifications",
    responses(
        (status = 200, description = "Every webhook", body = WebhookList),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
    )
)]
pub async fn list_webhooks(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<WebhookList>, AppError> {
    auth.operators_only("webhooks")?;
    Ok(Json(WebhookList {
        webhooks: centre(&state)?.webhooks(),
    }))
}

/// Read one webhook with its health (operators only).
#[utoipa::path(
    get,
    path = "/v1/notifications/webhooks/{name}",
    tag = "notifications",
    params(("name" = String, Path, description = "Webhook name")),
    responses(
        (status = 200, description = "The webhook", body = Object),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    )
)]
pub async fn get_webhook(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<WebhookInfo>, AppError> {
    auth.operators_only("webhooks")?;
    centre(&state)?
        .webhooks()
        .into_iter()
        .find(|w| w.name == name)
        .map(Json)
        .ok_or_else(|| junction_api::EngineError::WebhookNotFound.into())
}

/// Make or replace a webhook (operators only).
///
/// The body is a `[[notifications.webhooks]]` entry as JSON (its `name` may be
/// left out; given, it must be the path's): `{"url", "kinds", "tenants",
/// "min_severity", "format": "json" | "slack", "headers", "secret",
/// "max_attempts", "max_per_minute", "timeout", "retry_base", "retry_max"}`. A `secret` of
/// `"********"` keeps the webhook's secret. Kept across restarts; a replaced
/// webhook goes on from where it was in the events. 201 when made, 200 when
/// replaced.
#[utoipa::path(
    put,
    path = "/v1/notifications/webhooks/{name}",
    tag = "notifications",
    params(("name" = String, Path, description = "Webhook name: 1 to 64 letters, digits, '-' and '_'")),
    request_body(content = Object, description = "The webhook's configuration"),
    responses(
        (status = 201, description = "Made", body = Object),
        (status = 200, description = "Replaced", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 409, description = "`webhook_read_only`: a webhook of the configuration file", body = ErrorBody),
        (status = 422, description = "`invalid_config`: an unknown field, a bad name, URL, kind, severity or header", body = ErrorBody),
    )
)]
pub async fn put_webhook(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
    JsonBody(config): JsonBody<serde_json::Value>,
) -> Result<Response, AppError> {
    auth.operators_only("webhooks")?;
    let centre = centre(&state)?;
    let existed = centre.webhooks().iter().any(|w| w.name == name);
    let saved = centre.put_webhook(&name, config).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved)).into_response())
}

/// Delete a webhook made over the API (operators only), with its consumer
/// groups: events not yet delivered to it are not.
#[utoipa::path(
    delete,
    path = "/v1/notifications/webhooks/{name}",
    tag = "notifications",
    params(("name" = String, Path, description = "Webhook name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
        (status = 409, description = "`webhook_read_only`: a webhook of the configuration file", body = ErrorBody),
    )
)]
pub async fn delete_webhook(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    auth.operators_only("webhooks")?;
    centre(&state)?.delete_webhook(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the receiver made of a test event.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookTest {
    /// The `Junction-Event-Id` it went out with.
    pub event_id: String,
    /// The receiver's HTTP status; null when it did not answer.
    pub status: Option<u16>,
    /// Whether the receiver answered 2xx.
    pub ok: bool,
    /// Why not, for people.
    pub error: Option<String>,
}

impl From<WebhookTestOutcome> for WebhookTest {
    fn from(o: WebhookTestOutcome) -> Self {
        WebhookTest {
            event_id: o.event_id,
            status: o.status,
            ok: o.ok,
            error: o.error,
        }
    }
}

/// Send a webhook a `test` event now (operators only).
///
/// One POST, made as its deliveries are (format, headers, signature), not
/// retried and not stored; the answer says what the receiver answered. A
/// receiver that refuses it or cannot be reached is still a 200 here, with
/// `ok: false` and the reason.
#[utoipa::path(
    post,
    path = "/v1/notifications/webhooks/{name}/test",
    tag = "notifications",
    params(("name" = String, Path, description = "Webhook name")),
    responses(
        (status = 200, description = "The receiver's answer (or why there was none)", body = WebhookTest),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`webhook_not_found`", body = ErrorBody),
    )
)]
pub async fn test_webhook(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<WebhookTest>, AppError> {
    auth.operators_only("webhooks")?;
    let outcome = centre(&state)?.test_webhook(&name).await?;
    Ok(Json(outcome.into()))
}
