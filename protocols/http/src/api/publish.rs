//! Producing: publish to a subject, into a station, or a batch into a station.
//!
//! A publish that a station captures is answered only once the station reports it
//! durable (or refused) through the engine's [`StoredCallback`]; a publish no
//! station captures is answered with how many live subscriptions received it.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody, ErrorDetail};
use super::extract::{ApiPath, ApiQuery, body_bytes, parse_json};
use super::options::{HttpOptions, refuse_preconditions};
use super::wire::{HeadersJson, decode_payload, headers_from_json, headers_from_request};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use junction_api::{
    ClientRecord, EngineError, Message, PubAck, StationConfig, StoredCallback, Subject,
    SubjectFilter,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use utoipa::{IntoParams, ToSchema};

/// Most messages in one batch request.
pub const MAX_BATCH_MESSAGES: usize = 1000;

/// A message stored by a station.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoredJson {
    /// The station that stored it.
    pub station: String,
    /// Its sequence number (the original one for a duplicate).
    pub seq: u64,
    /// True when the idempotency key was seen within the station's duplicate window
    /// and nothing new was stored.
    pub duplicate: bool,
}

/// A message no station captured: delivered live only.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveredJson {
    /// How many live subscriptions received it.
    pub delivered: usize,
}

/// A message a routing rule dropped (202): nothing was stored or delivered.
#[derive(Debug, Serialize, ToSchema)]
pub struct DroppedJson {
    /// The routing rule that dropped it.
    pub dropped_by: String,
    /// Always 0.
    pub delivered: usize,
}

/// How a publish went.
pub enum Published {
    /// A station stored it (or recognised it as a duplicate).
    Stored(PubAck),
    /// No station captured it.
    Live(usize),
    /// A routing rule (named) dropped it.
    Dropped(String),
}

impl Published {
    /// The 202 answer to a dropped message.
    pub fn dropped_response(rule: String) -> Response {
        (
            StatusCode::ACCEPTED,
            Json(DroppedJson {
                dropped_by: rule,
                delivered: 0,
            }),
        )
            .into_response()
    }
}

/// A publish whose durable outcome is not known yet.
pub struct Pending {
    captured: bool,
    delivered: usize,
    refused: Option<EngineError>,
    /// A failed precondition is a 412 (the `Junction-Expected-*` headers).
    conditional: bool,
    stored: oneshot::Receiver<Result<PubAck, EngineError>>,
}

impl Pending {
    /// Waits for the station's answer when one captured the message.
    pub async fn outcome(self) -> Result<Published, AppError> {
        match self.refused {
            Some(EngineError::DroppedByRule(rule)) => return Ok(Published::Dropped(rule)),
            Some(e) => return Err(e.into()),
            None => {}
        }
        if !self.captured {
            return Ok(Published::Live(self.delivered));
        }
        match self.stored.await {
            Ok(Err(EngineError::DroppedByRule(rule))) => Ok(Published::Dropped(rule)),
            Ok(Ok(ack)) => Ok(Published::Stored(ack)),
            Ok(Err(e)) => Err(HttpOptions {
                conditional: self.conditional,
                ..HttpOptions::default()
            }
            .error(e)),
            Err(_) => Err(AppError::Internal(
                "the station dropped a publish without answering".into(),
            )),
        }
    }
}

/// Who an HTTP request publishes for, as lineage names it: the caller's address,
/// its `User-Agent` and, when the broker requires credentials, the user it signed
/// in as (a bearer token names no user).
pub struct Caller {
    remote: Option<SocketAddr>,
    agent: Option<String>,
    user: Option<String>,
    auth: super::auth::Authenticated,
}

impl Caller {
    /// The caller of `request`.
    pub fn of(state: &ApiState, request: &Request) -> Caller {
        let headers = request.headers();
        let user = if state.engine.auth_required() {
            match super::auth::credentials(headers) {
                Ok(junction_api::Credentials::UserPassword { user, .. }) => Some(user),
                _ => None,
            }
        } else {
            None
        };
        Caller {
            remote: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
            agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            user,
            auth: super::auth::Authenticated::of(request),
        }
    }

    /// May the caller publish to `subject`? 403 `forbidden` when not.
    pub fn may_publish(&self, subject: &Subject) -> Result<(), AppError> {
        self.auth.may_publish(&subject.to_str_lossy())
    }

    /// The record the gateway client `client` publishes this caller's messages
    /// with.
    pub fn record(self, client: &ClientRecord) -> ClientRecord {
        client.for_caller(self.remote.unwrap_or(client.remote), self.agent, self.user)
    }
}

/// Publishes `message` for `producer` (the gateway client `client`, or a caller
/// of it: see [`Caller`]) with `options` (its idempotency key and
/// preconditions); the returned [`Pending`] resolves once the capturing station
/// (if any) has stored or refused it.
pub fn start_publish(
    state: &ApiState,
    client: &ClientRecord,
    producer: &ClientRecord,
    message: &Message,
    options: &HttpOptions,
) -> Pending {
    let (tx, rx) = oneshot::channel();
    let callback: StoredCallback = Box::new(move |result| {
        let _ = tx.send(result);
    });
    client.stats.record_in(message.payload.len());
    let outcome = state
        .engine
        .publish_stored(producer, message, &options.options, Some(callback));
    Pending {
        captured: outcome.captured,
        delivered: outcome.delivered,
        refused: outcome.refused,
        conditional: options.conditional,
        stored: rx,
    }
}

fn check_size(state: &ApiState, payload: &[u8]) -> Result<(), AppError> {
    let max = state.settings.max_payload;
    if payload.len() > max {
        return Err(AppError::payload_too_large(payload.len(), max));
    }
    Ok(())
}

fn stored_response(ack: PubAck) -> Response {
    (
        StatusCode::CREATED,
        Json(StoredJson {
            station: ack.station,
            seq: ack.seq,
            duplicate: ack.duplicate,
        }),
    )
        .into_response()
}

/// Publish a message to a subject.
///
/// The body is the payload, byte for byte, whatever its content type. Request
/// headers `X-Junction-Header-<Name>` become message headers `<Name>`;
/// `Idempotency-Key` becomes `Nats-Msg-Id` (de-duplicated within the station's
/// window); `Junction-Expected-*` headers are preconditions (412 when one fails). When a station captures the subject the answer (201) comes once the
/// message is durable; otherwise 200 says how many live subscribers got it.
#[utoipa::path(
    post,
    path = "/v1/subjects/{subject}",
    tag = "produce",
    params(
        ("subject" = String, Path, description = "A literal subject, e.g. `orders.eu.new`"),
        ("Idempotency-Key" = Option<String>, Header, description = "Becomes `Nats-Msg-Id`: a repeat within the duplicate window is not stored again"),
        ("Junction-Expected-Station" = Option<String>, Header, description = "Precondition: the station that captures the subject (412 `wrong_expected_station`)"),
        ("Junction-Expected-Last-Sequence" = Option<u64>, Header, description = "Precondition: the station's last sequence (412 `wrong_last_sequence`)"),
        ("Junction-Expected-Last-Subject-Sequence" = Option<u64>, Header, description = "Precondition: the last sequence stored on this subject, 0 for none (412 `wrong_last_subject_sequence`)"),
        ("Junction-Expected-Last-Idempotency-Key" = Option<String>, Header, description = "Precondition: the last idempotency key the station stored (412 `wrong_last_msg_id`)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The payload"),
    responses(
        (status = 201, description = "Stored by a station", body = StoredJson),
        (status = 200, description = "No station captures the subject; delivered live", body = DeliveredJson),
        (status = 400, description = "Invalid subject or header", body = ErrorBody),
        (status = 409, description = "An expected-sequence message header (`X-Junction-Header-Nats-Expected-*`) did not match", body = ErrorBody),
        (status = 412, description = "A `Junction-Expected-*` precondition did not match", body = ErrorBody),
        (status = 413, description = "Payload too large", body = ErrorBody),
        (status = 429, description = "The station is full and discards new messages", body = ErrorBody),
        (status = 507, description = "`tenant_storage_full`: the tenant's stations would hold more than its `max_file` / `max_memory`; not stored", body = ErrorBody),
    )
)]
pub async fn publish_subject(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(subject): ApiPath<String>,
    request: Request,
) -> Result<Response, AppError> {
    let caller = Caller::of(&state, &request);
    let headers = headers_from_request(request.headers())?;
    let options = HttpOptions::of(Some(request.headers()), headers.as_ref())?;
    let payload = body_bytes(request, &()).await?;
    check_size(&state, &payload)?;
    let subject = Subject::new(subject)
        .map_err(|e| AppError::bad_request("invalid_subject", format!("subject: {e}")))?;
    caller.may_publish(&subject)?;
    let client = state.clients.get(&tenant)?;
    let message = Message {
        subject,
        reply: None,
        headers,
        payload,
    };
    let producer = caller.record(&client);
    match start_publish(&state, &client, &producer, &message, &options)
        .outcome()
        .await?
    {
        Published::Stored(ack) => Ok(stored_response(ack)),
        Published::Live(delivered) => Ok(Json(DeliveredJson { delivered }).into_response()),
        Published::Dropped(rule) => Ok(Published::dropped_response(rule)),
    }
}

/// Query of a publish into a station.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StationPublishQuery {
    /// The subject to publish on; it must be one the station captures. Defaults to
    /// the station's only literal subject, or its name when the station captures
    /// it.
    pub subject: Option<String>,
}

/// The subjects a station captures (its name when it lists none).
fn station_filters(config: &StationConfig) -> Vec<String> {
    config.subjects_or_name()
}

fn captures(filters: &[String], subject: &Subject) -> bool {
    filters.iter().any(|f| {
        SubjectFilter::new(f.clone())
            .map(|f| f.matches(subject))
            .unwrap_or(false)
    })
}

/// The subject a publish into `config`'s station goes to.
pub fn station_subject(
    config: &StationConfig,
    requested: Option<&str>,
) -> Result<Subject, AppError> {
    let filters = station_filters(config);
    if let Some(requested) = requested {
        let subject = Subject::new(requested.to_string())
            .map_err(|e| AppError::bad_request("invalid_subject", format!("subject: {e}")))?;
        if !captures(&filters, &subject) {
            return Err(AppError::bad_request(
                "subject_not_in_station",
                format!(
                    "station '{}' does not capture subject '{requested}' (it captures {filters:?})",
                    config.name
                ),
            ));
        }
        return Ok(subject);
    }
    let literal: Vec<&String> = filters
        .iter()
        .filter(|f| SubjectFilter::new((*f).clone()).is_ok_and(|f| f.is_literal()))
        .collect();
    if let [only] = literal.as_slice()
        && let Ok(s) = Subject::new((*only).clone())
    {
        return Ok(s);
    }
    if let Ok(name) = Subject::new(config.name.clone())
        && captures(&filters, &name)
    {
        return Ok(name);
    }
    Err(AppError::bad_request(
        "subject_required",
        format!(
            "station '{}' captures {filters:?}; say which subject with ?subject=",
            config.name
        ),
    ))
}

/// Publish a message into a station.
///
/// Like publishing to a subject, but the subject must be one the station captures
/// (`?subject=`, or the station's own subject by default), and the answer is always
/// 201 once the message is durable.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/messages",
    tag = "produce",
    params(
        ("station" = String, Path, description = "Station name"),
        StationPublishQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Becomes `Nats-Msg-Id`"),
        ("Junction-Expected-Station" = Option<String>, Header, description = "Precondition: the station that captures the subject (412 `wrong_expected_station`)"),
        ("Junction-Expected-Last-Sequence" = Option<u64>, Header, description = "Precondition: the station's last sequence (412 `wrong_last_sequence`)"),
        ("Junction-Expected-Last-Subject-Sequence" = Option<u64>, Header, description = "Precondition: the last sequence stored on this subject, 0 for none (412 `wrong_last_subject_sequence`)"),
        ("Junction-Expected-Last-Idempotency-Key" = Option<String>, Header, description = "Precondition: the last idempotency key the station stored (412 `wrong_last_msg_id`)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The payload"),
    responses(
        (status = 201, description = "Stored", body = StoredJson),
        (status = 400, description = "No subject given and none implied, or not captured by the station", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 409, description = "An expected-sequence message header (`X-Junction-Header-Nats-Expected-*`) did not match", body = ErrorBody),
        (status = 412, description = "A `Junction-Expected-*` precondition did not match", body = ErrorBody),
        (status = 413, description = "Payload too large", body = ErrorBody),
        (status = 429, description = "The station is full and discards new messages", body = ErrorBody),
        (status = 507, description = "`tenant_storage_full`: the tenant's stations would hold more than its `max_file` / `max_memory`; not stored", body = ErrorBody),
    )
)]
pub async fn publish_to_station(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    ApiQuery(query): ApiQuery<StationPublishQuery>,
    request: Request,
) -> Result<Response, AppError> {
    let caller = Caller::of(&state, &request);
    let headers = headers_from_request(request.headers())?;
    let options = HttpOptions::of(Some(request.headers()), headers.as_ref())?;
    let payload = body_bytes(request, &()).await?;
    check_size(&state, &payload)?;
    let info = state.engine.station_info(&tenant, &station)?;
    let subject = station_subject(&info.config, query.subject.as_deref())?;
    caller.may_publish(&subject)?;
    let client = state.clients.get(&tenant)?;
    let message = Message {
        subject,
        reply: None,
        headers,
        payload,
    };
    let producer = caller.record(&client);
    match start_publish(&state, &client, &producer, &message, &options)
        .outcome()
        .await?
    {
        Published::Stored(ack) => {
            if ack.station != station {
                tracing::warn!(
                    station,
                    stored_in = ack.station,
                    "station subjects changed during a publish"
                );
            }
            Ok(stored_response(ack))
        }
        Published::Live(_) => Err(EngineError::StationNotFound.into()),
        Published::Dropped(rule) => Ok(Published::dropped_response(rule)),
    }
}

/// One message of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// Subject; defaults as for a single publish into the station.
    pub subject: Option<String>,
    /// Message headers.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub headers: HeadersJson,
    /// Payload as text.
    pub payload: Option<String>,
    /// Payload in base64 (instead of `payload`).
    pub payload_base64: Option<String>,
    /// Becomes `Nats-Msg-Id`.
    pub idempotency_key: Option<String>,
}

/// The outcome of one message of a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    /// Stored.
    Stored {
        /// Sequence number.
        seq: u64,
        /// True when it was a duplicate.
        duplicate: bool,
    },
    /// Refused.
    Failed {
        /// Why.
        error: ErrorDetail,
    },
    /// A routing rule dropped it.
    Dropped {
        /// The rule.
        dropped_by: String,
    },
}

/// The outcomes of a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One per message.
    pub results: Vec<BatchResult>,
}

/// A batch body: a JSON array, or NDJSON with one object per line.
fn parse_batch(headers: &HeaderMap, body: &Bytes) -> Result<Vec<BatchItem>, AppError> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v.starts_with("application/x-ndjson")
                || v.starts_with("application/ndjson")
                || v.starts_with("application/jsonl")
        });
    if !ndjson {
        return parse_json(body);
    }
    let mut items = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let item = serde_json::from_slice(line).map_err(|e| {
            AppError::bad_request("invalid_json", format!("NDJSON line {}: {e}", i + 1))
        })?;
        items.push(item);
    }
    Ok(items)
}

fn batch_message(
    state: &ApiState,
    config: &StationConfig,
    item: BatchItem,
) -> Result<Message, AppError> {
    let subject = station_subject(config, item.subject.as_deref())?;
    let payload = decode_payload(item.payload, item.payload_base64)?;
    check_size(state, &payload)?;
    let mut headers = headers_from_json(&item.headers)?;
    if let Some(key) = item.idempotency_key {
        if key.contains(['\r', '\n']) {
            return Err(AppError::bad_request(
                "invalid_header",
                "idempotency_key may not contain line breaks",
            ));
        }
        headers.insert("Nats-Msg-Id", key);
    }
    Ok(Message {
        subject,
        reply: None,
        headers: (!headers.is_empty()).then_some(headers),
        payload,
    })
}

/// Publish a batch of messages into a station.
///
/// The body is a JSON array of messages, or NDJSON (`Content-Type:
/// application/x-ndjson`) with one message object per line. Messages are published
/// in order and the answer comes once every one is durable or refused: 200 with one
/// result per message, in order. A malformed body is refused as a whole and nothing
/// is published.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/messages/batch",
    tag = "produce",
    params(("station" = String, Path, description = "Station name")),
    request_body(content = Vec<BatchItem>, description = "JSON array, or NDJSON with Content-Type application/x-ndjson"),
    responses(
        (status = 200, description = "One result per message, in order", body = BatchResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "No such station", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "More than 1000 messages", body = ErrorBody),
    )
)]
pub async fn publish_batch(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(station): ApiPath<String>,
    request: Request,
) -> Result<Json<BatchResponse>, AppError> {
    let caller = Caller::of(&state, &request);
    let headers = request.headers().clone();
    refuse_preconditions(
        &headers,
        "a batch (each item may carry the older form in its headers)",
    )?;
    let body = body_bytes(request, &()).await?;
    let items = parse_batch(&headers, &body)?;
    if items.len() > MAX_BATCH_MESSAGES {
        return Err(AppError::invalid(
            "too_many_messages",
            format!(
                "{} messages in one batch; at most {MAX_BATCH_MESSAGES}",
                items.len()
            ),
        ));
    }
    let info = state.engine.station_info(&tenant, &station)?;
    let client = state.clients.get(&tenant)?;
    let allowed = |m: &Message| caller.may_publish(&m.subject);
    let checked: Vec<Result<Message, AppError>> = items
        .into_iter()
        .map(|item| batch_message(&state, &info.config, item).and_then(|m| allowed(&m).map(|()| m)))
        .collect();
    let producer = caller.record(&client);
    // Publish everything first so the station commits them together, then wait.
    let pending: Vec<Result<Pending, AppError>> = checked
        .into_iter()
        .map(|checked| {
            checked.and_then(|message| {
                let options = HttpOptions::of(None, message.headers.as_ref())?;
                Ok(start_publish(
                    &state, &client, &producer, &message, &options,
                ))
            })
        })
        .collect();
    let mut results = Vec::with_capacity(pending.len());
    for p in pending {
        let outcome = match p {
            Ok(p) => p.outcome().await,
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(Published::Stored(ack)) => BatchResult::Stored {
                seq: ack.seq,
                duplicate: ack.duplicate,
            },
            Ok(Published::Live(_)) => BatchResult::Failed {
                error: AppError::from(EngineError::StationNotFound).detail(),
            },
            Ok(Published::Dropped(rule)) => BatchResult::Dropped { dropped_by: rule },
            Err(e) => {
                if matches!(e, AppError::Internal(_)) {
                    tracing::error!(error = %e, station, "batch publish failed");
                }
                BatchResult::Failed { error: e.detail() }
            }
        });
    }
    Ok(Json(BatchResponse { results }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, subjects: &[&str]) -> StationConfig {
        StationConfig {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            ..StationConfig::default()
        }
    }

    fn subject(config: &StationConfig, requested: Option<&str>) -> Option<String> {
        station_subject(config, requested)
            .ok()
            .map(|s| s.to_string())
    }

    #[test]
    fn default_subject() {
        assert_eq!(
            subject(&config("orders", &[]), None).as_deref(),
            Some("orders")
        );
        assert_eq!(
            subject(&config("o", &["orders.new"]), None).as_deref(),
            Some("orders.new")
        );
        assert_eq!(
            subject(&config("o", &["a", "b.*"]), None).as_deref(),
            Some("a")
        );
        assert_eq!(
            subject(&config("orders", &["orders", "orders.>"]), None).as_deref(),
            Some("orders")
        );
        assert_eq!(subject(&config("o", &["a.*"]), None), None);
        assert_eq!(subject(&config("o", &["a", "b"]), None), None);
    }

    #[test]
    fn requested_subject_must_be_captured() {
        let c = config("o", &["orders.*"]);
        assert_eq!(subject(&c, Some("orders.eu")).as_deref(), Some("orders.eu"));
        assert_eq!(subject(&c, Some("payments.eu")), None);
        assert_eq!(subject(&c, Some("orders.*")), None);
    }
}
