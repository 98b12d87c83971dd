//! The gateway's one error type and its JSON shape.
//!
//! Every error the API answers is `{"error":{"code":"snake_case","message":"…"}}`.
//! Client mistakes keep their 4xx status; internal failures become a 500 that says
//! nothing about the cause and are logged with it. Responses that axum or a tower
//! layer produce on their own (unknown method, body too large, timeout) are turned
//! into the same shape by [`normalize`].

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use junction_api::{ConfigError, Denial, EngineError, GroupConfigError, TenantLimit};
use serde::Serialize;
use std::any::Any;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A machine-readable code and a human-readable message.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: `station_not_found`, `wrong_last_sequence`, …
    #[schema(example = "station_not_found")]
    pub code: String,
    /// For people; may change between versions.
    #[schema(example = "station 'orders' not found")]
    pub message: String,
    /// Details, when there are several (`schema_violation`: each validation
    /// error as `"<JSON pointer>: <what is wrong>"`). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The client's fault, or a state it must deal with (4xx, 503).
    #[error("{code}: {message}")]
    Client {
        /// HTTP status.
        status: StatusCode,
        /// Stable error code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// A payload failed its station's schema (422 `schema_violation`, with the
    /// validation errors in `errors`).
    #[error("schema_violation: {message}")]
    SchemaViolation {
        /// Explanation.
        message: String,
        /// Each `"<JSON pointer>: <what is wrong>"`.
        errors: Vec<String>,
    },
    /// Credentials are missing or wrong (401 with `WWW-Authenticate`).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The broker failed; logged, answered as a bare 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// A client error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 422 with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 413: a payload larger than the broker accepts.
    pub fn payload_too_large(size: usize, max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("payload of {size} bytes exceeds the maximum of {max}"),
        )
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Client { status, .. } => *status,
            AppError::SchemaViolation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code and message clients see.
    pub fn detail(&self) -> ErrorDetail {
        match self {
            AppError::Client { code, message, .. } => ErrorDetail {
                code: (*code).to_string(),
                message: message.clone(),
                errors: Vec::new(),
            },
            AppError::SchemaViolation { message, errors } => ErrorDetail {
                code: "schema_violation".into(),
                message: message.clone(),
                errors: errors.clone(),
            },
            AppError::Unauthorized(message) => ErrorDetail {
                code: "unauthorized".into(),
                message: message.clone(),
                errors: Vec::new(),
            },
            AppError::Internal(_) => ErrorDetail {
                code: "internal".into(),
                message: "internal error; the server log has the details".into(),
                errors: Vec::new(),
            },
        }
    }
}

/// Engine errors as HTTP errors. The mapping is part of the API (docs/http.md).
impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let message = message_of(&e);
        let (status, code) = match &e {
            EngineError::InvalidSubject(_) => (S::BAD_REQUEST, "invalid_subject"),
            EngineError::BadRequest(_) => (S::BAD_REQUEST, "bad_request"),
            EngineError::AuthorizationViolation | EngineError::Banned => {
                return AppError::Unauthorized(message);
            }
            EngineError::Denied(_) => (S::FORBIDDEN, "denied"),
            EngineError::RollupNotPermitted => (S::FORBIDDEN, "rollup_not_permitted"),
            EngineError::StationNotFound => (S::NOT_FOUND, "station_not_found"),
            EngineError::GroupNotFound => (S::NOT_FOUND, "group_not_found"),
            EngineError::MessageNotFound => (S::NOT_FOUND, "message_not_found"),
            EngineError::StationNameInUse => (S::CONFLICT, "station_exists"),
            EngineError::ClusterStateExists(_) => (S::CONFLICT, "cluster_state_exists"),
            EngineError::SubjectsOverlap => (S::CONFLICT, "subjects_overlap"),
            EngineError::GroupExists => (S::CONFLICT, "group_exists"),
            EngineError::MaxGroups => (S::CONFLICT, "max_groups"),
            // The tenant's `max_file` / `max_memory`: its stations' `max_bytes`
            // do not fit (creating or changing a station), or a message would
            // take its stored bytes past it (publishing).
            EngineError::TenantLimit {
                what: TenantLimit::FileStorage | TenantLimit::MemoryStorage,
                ..
            } => (S::INSUFFICIENT_STORAGE, "insufficient_storage"),
            EngineError::TenantStorageFull { .. } => {
                (S::INSUFFICIENT_STORAGE, "tenant_storage_full")
            }
            // The disk is nearly full: retry once space returns.
            EngineError::StorageFenced(_) => (S::INSUFFICIENT_STORAGE, "storage_full"),
            EngineError::TenantLimit { .. } => (S::TOO_MANY_REQUESTS, "tenant_limit"),
            EngineError::WrongLastSequence(_) => (S::CONFLICT, "wrong_last_sequence"),
            EngineError::WrongLastSubjectSequence(_) => {
                (S::CONFLICT, "wrong_last_subject_sequence")
            }
            EngineError::WrongLastMsgId(_) => (S::CONFLICT, "wrong_last_msg_id"),
            EngineError::WrongExpectedStation => (S::CONFLICT, "wrong_expected_station"),
            EngineError::MessageTooLarge => (S::PAYLOAD_TOO_LARGE, "message_too_large"),
            EngineError::InvalidConfig(_) => (S::UNPROCESSABLE_ENTITY, "invalid_config"),
            EngineError::InvalidGroupConfig(_) => (S::UNPROCESSABLE_ENTITY, "invalid_group_config"),
            // A full station that discards new messages: retry once consumers have
            // made room.
            EngineError::MaxMessages => (S::TOO_MANY_REQUESTS, "station_full"),
            EngineError::MaxBytes => (S::TOO_MANY_REQUESTS, "station_full"),
            EngineError::MaxSubscriptions => (S::TOO_MANY_REQUESTS, "max_subscriptions"),
            EngineError::MaxConnections => (S::SERVICE_UNAVAILABLE, "max_connections"),
            EngineError::ShuttingDown => (S::SERVICE_UNAVAILABLE, "shutting_down"),
            EngineError::NoQuorum(_) => (S::SERVICE_UNAVAILABLE, "no_quorum"),
            // A replicated station without a leader or quorum: not acknowledged
            // (the publish may or may not be stored); retry.
            EngineError::ReplicasUnavailable(_) => (S::SERVICE_UNAVAILABLE, "replicas_unavailable"),
            EngineError::InsufficientResources(_) => {
                (S::SERVICE_UNAVAILABLE, "insufficient_resources")
            }
            // In a cluster: a read or fetch of a station another node holds (it
            // names the node); or that node did not answer.
            EngineError::StationElsewhere { .. } => (S::MISDIRECTED_REQUEST, "station_elsewhere"),
            EngineError::NodeUnreachable(_) => (S::SERVICE_UNAVAILABLE, "node_unreachable"),
            EngineError::SchemaViolation(v) => {
                return AppError::SchemaViolation {
                    message,
                    errors: v.errors.clone(),
                };
            }
            EngineError::SchemaNotFound => (S::NOT_FOUND, "schema_not_found"),
            EngineError::SchemaExists => (S::CONFLICT, "schema_exists"),
            EngineError::SchemaInUse { .. } => (S::CONFLICT, "schema_in_use"),
            EngineError::ResendTaskNotFound => (S::NOT_FOUND, "resend_task_not_found"),
            EngineError::RoutingRuleNotFound => (S::NOT_FOUND, "routing_rule_not_found"),
            EngineError::ClientNotFound => (S::NOT_FOUND, "connection_not_found"),
            EngineError::TenantNotFound => (S::NOT_FOUND, "tenant_not_found"),
            EngineError::TenantReadOnly(_) => (S::CONFLICT, "tenant_read_only"),
            EngineError::BanNotFound => (S::NOT_FOUND, "ban_not_found"),
            EngineError::WebhookNotFound => (S::NOT_FOUND, "webhook_not_found"),
            EngineError::WebhookReadOnly(_) => (S::CONFLICT, "webhook_read_only"),
            EngineError::InternalSubject(_) => (S::FORBIDDEN, "internal_subject"),
            EngineError::InternalStation(_) => (S::FORBIDDEN, "internal_station"),
            EngineError::DroppedByRule(_) => (S::ACCEPTED, "dropped_by_rule"),
            EngineError::CorruptRecord(_) => (S::INTERNAL_SERVER_ERROR, "corrupt_record"),
            EngineError::TierUnavailable(_) => (S::SERVICE_UNAVAILABLE, "tier_unavailable"),
            EngineError::TierManifestNotFound(_) => (S::NOT_FOUND, "manifest_not_found"),
            EngineError::TierAdoptConflict(_) => (S::CONFLICT, "adopt_conflict"),
            // The store refuses writes (a full disk, an I/O error) until restart:
            // a state to retry later, not a bug. The cause is logged and shown on
            // /readyz, not in every answer.
            EngineError::Storage(cause) => {
                tracing::error!(error = %cause, "storage failed; answering 503");
                return AppError::new(
                    S::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the broker cannot store messages now (storage failed; /readyz has the reason)",
                );
            }
            _ => return AppError::Internal(message),
        };
        AppError::new(status, code, message)
    }
}

/// An engine error in this API's words: stations, groups and messages, never
/// JetStream's streams and consumers (the NATS front-end has those).
fn message_of(e: &EngineError) -> String {
    use EngineError as E;
    match e {
        E::AuthorizationViolation => "credentials missing or wrong".into(),
        E::WrongLastSequence(n) => {
            format!("expected last sequence does not match: the station's last sequence is {n}")
        }
        E::WrongLastSubjectSequence(n) => {
            format!(
                "expected last subject sequence does not match: the subject's last sequence is {n}"
            )
        }
        E::WrongLastMsgId(id) => {
            format!(
                "expected last message id does not match: the station's last message id is '{id}'"
            )
        }
        E::WrongExpectedStation => {
            "the message was captured by another station than the expected one".into()
        }
        E::MessageTooLarge => "the message is larger than the station's max_msg_size".into(),
        E::MaxMessages => "the station is full (max_msgs) and discards new messages".into(),
        E::MaxBytes => "the station is full (max_bytes) and discards new messages".into(),
        E::InvalidConfig(ConfigError::DuplicateSubjects) => {
            "subjects: two of them are equal or overlap".into()
        }
        E::InvalidConfig(ConfigError::StorageChange) => {
            "storage: cannot be changed once the station exists".into()
        }
        E::InvalidConfig(ConfigError::RetentionChange) => {
            "retention: cannot be changed once the station exists".into()
        }
        E::InvalidConfig(ConfigError::ReplicasUnsupported) => {
            "replicas: more than 1 needs a cluster".into()
        }
        E::Denied(Denial::PurgeNotPermitted) => "the station denies purges (deny_purge)".into(),
        E::Denied(Denial::DeleteNotPermitted) => {
            "the station denies message deletes (deny_delete)".into()
        }
        E::InvalidGroupConfig(GroupConfigError::WorkQueueNeedsExplicitAck) => {
            "ack_policy: a work-queue station needs explicit acks".into()
        }
        E::InvalidGroupConfig(GroupConfigError::WorkQueueUnfilteredNotAlone) => {
            "filter_subjects: a work-queue station already has a group, so a new one needs a filter"
                .into()
        }
        E::InvalidGroupConfig(GroupConfigError::WorkQueueFilterNotUnique) => {
            "filter_subjects: overlap another group's on this work-queue station".into()
        }
        E::InvalidGroupConfig(GroupConfigError::WorkQueueNotDeliverAll) => {
            "deliver_policy: a work-queue station's groups must deliver all".into()
        }
        E::TenantLimit {
            what: what @ (TenantLimit::FileStorage | TenantLimit::MemoryStorage),
            limit,
        } => format!(
            "insufficient storage: the tenant's {} ({limit} bytes) cannot hold this station's max_bytes beside what its other stations reserve",
            storage_key(*what)
        ),
        E::TenantStorageFull { what, limit } => format!(
            "not stored: the tenant's stations would hold more than its {} ({limit} bytes)",
            storage_key(*what)
        ),
        // The rest are the broker's neutral words (station, group, message).
        other => other.to_string(),
    }
}

/// The `[[tenants]] jetstream` key that sets a storage limit.
fn storage_key(what: TenantLimit) -> &'static str {
    match what {
        TenantLimit::MemoryStorage => "max_memory",
        _ => "max_file",
    }
}

fn json_response(status: StatusCode, detail: ErrorDetail) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: detail }).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal","message":"error encoding failed"}}"#.to_vec()
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Internal(cause) => tracing::error!(error = %cause, "request failed"),
            AppError::Client { .. } if status.is_server_error() => {
                tracing::warn!(error = %self, "request refused")
            }
            _ => tracing::debug!(error = %self, "request refused"),
        }
        let mut response = json_response(status, self.detail());
        if matches!(self, AppError::Unauthorized(_)) {
            let h = response.headers_mut();
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"junction\""),
            );
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"junction\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// The answer to a request no route matches.
pub async fn route_not_found(uri: axum::http::Uri) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {}", uri.path()),
    )
}

/// The answer to a handler panic: a logged 500 in the usual JSON shape.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    AppError::Internal(format!("handler panicked: {what}")).into_response()
}

/// Most of an error body that [`normalize`] reads as the message.
const MAX_PLAIN_ERROR: usize = 16 * 1024;

/// Rewrites error responses that did not come from [`AppError`] (axum rejections,
/// 405, the body-limit and timeout layers) into the JSON error shape, keeping their
/// status and headers such as `Allow`.
pub async fn normalize(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, fallback) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "bad request"),
        StatusCode::NOT_FOUND => ("route_not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "method not allowed; the Allow header lists the allowed ones",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "request timed out"),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "request body exceeds the maximum payload size",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "unsupported media type"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_request", "invalid request"),
        StatusCode::GATEWAY_TIMEOUT => (
            "timeout",
            "the request did not complete within the server's time limit",
        ),
        StatusCode::INTERNAL_SERVER_ERROR => ("internal", "internal error"),
        s if s.is_server_error() => ("unavailable", "service unavailable"),
        _ => ("http_error", "request failed"),
    };
    let message = if text.is_empty() {
        fallback.to_string()
    } else {
        text
    };
    let fresh = json_response(
        status,
        ErrorDetail {
            code: code.to_string(),
            message,
            errors: Vec::new(),
        },
    );
    let (fresh_parts, body) = fresh.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    drop(fresh_parts);
    Response::from_parts(parts, Body::new(body))
}
