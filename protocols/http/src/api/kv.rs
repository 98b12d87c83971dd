//! Key-value buckets over HTTP: the same buckets NATS clients use (a bucket
//! `B` is the station `KV_B`, a key `K` the subject `$KV.B.K`, a delete a
//! message with `KV-Operation: DEL`), so a key put here is read by
//! `js.key_value` and the other way round. Buckets are made by a NATS client
//! (`create_key_value`) or as a station (`POST /v1/stations`).
//!
//! - `GET /v1/kv/{bucket}`: the bucket's keys (deleted and purged ones left out).
//! - `GET /v1/kv/{bucket}/{key}`: the key's value and revision; 404 `key_not_found`
//!   for one never put, deleted or purged.
//! - `PUT /v1/kv/{bucket}/{key}`: puts the body as the value, answered with the
//!   revision once durable; `Junction-Expected-Last-Subject-Sequence: <revision>`
//!   makes it an update of that revision (0: a create), 412 otherwise.
//! - `DELETE /v1/kv/{bucket}/{key}`: a delete marker (history kept).
//! - `GET /v1/kv/{bucket}/{key}/history`: every revision the bucket still
//!   keeps of the key, oldest first, delete and purge markers included (what
//!   `kv.history` returns to NATS clients).

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, body_bytes};
use super::options::HttpOptions;
use super::publish::{Caller, Published, start_publish};
use super::wire::rfc3339;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use junction_api::{EngineError, Headers, Message, MessageQuery, Subject, TenantId};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The header a key-value delete or purge marker carries.
const KV_OPERATION: &str = "KV-Operation";

fn station(bucket: &str) -> String {
    format!("KV_{bucket}")
}

fn subject(bucket: &str, key: &str) -> Result<Subject, AppError> {
    let valid = !bucket.is_empty()
        && !key.is_empty()
        && !bucket.contains(['.', '*', '>', ' '])
        && key
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">" && !t.contains(' '));
    if !valid {
        return Err(AppError::bad_request(
            "invalid_key",
            format!("'{bucket}/{key}' is not a valid bucket and key"),
        ));
    }
    Subject::new(format!("$KV.{bucket}.{key}"))
        .map_err(|e| AppError::bad_request("invalid_key", format!("key: {e}")))
}

fn bucket_not_found(bucket: &str) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "bucket_not_found",
        format!("no key-value bucket '{bucket}' (station KV_{bucket})"),
    )
}

fn is_marker(headers: Option<&Headers>) -> bool {
    headers
        .and_then(|h| h.get(KV_OPERATION))
        .is_some_and(|op| op.eq_ignore_ascii_case("DEL") || op.eq_ignore_ascii_case("PURGE"))
}

/// A key's current value.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvEntryJson {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The value as UTF-8 text, when it is.
    pub value: Option<String>,
    /// The value, in base64.
    pub value_base64: String,
    /// Its revision (the station sequence it is stored at).
    pub revision: u64,
    /// When it was put (RFC 3339).
    pub created: String,
}

/// A bucket's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvKeysJson {
    /// Bucket.
    pub bucket: String,
    /// Keys with a value, in the order they were last put.
    pub keys: Vec<String>,
}

/// A put's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvPutJson {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// The new revision.
    pub revision: u64,
}

/// List a bucket's keys.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}",
    tag = "key-value",
    params(("bucket" = String, Path, description = "Bucket name")),
    responses(
        (status = 200, description = "The keys", body = KvKeysJson),
        (status = 404, description = "No such bucket", body = ErrorBody),
    )
)]
pub async fn list_keys(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(bucket): ApiPath<String>,
) -> Result<Json<KvKeysJson>, AppError> {
    let prefix = format!("$KV.{bucket}.");
    let seqs = state
        .engine
        .last_sequences(&tenant, &station(&bucket), &[format!("{prefix}>")], None)
        .map_err(|e| match e {
            EngineError::StationNotFound => bucket_not_found(&bucket),
            other => other.into(),
        })?;
    let mut keys = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let Ok(m) = state
            .engine
            .get_message(&tenant, &station(&bucket), MessageQuery::Seq(seq))
        else {
            continue;
        };
        if is_marker(m.headers.as_ref()) {
            continue;
        }
        if let Some(key) = m.subject.to_str_lossy().strip_prefix(&prefix) {
            keys.push(key.to_string());
        }
    }
    Ok(Json(KvKeysJson { bucket, keys }))
}

/// Read a key's value.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/{key}",
    tag = "key-value",
    params(
        ("bucket" = String, Path, description = "Bucket name"),
        ("key" = String, Path, description = "Key"),
    ),
    responses(
        (status = 200, description = "The value", body = KvEntryJson),
        (status = 404, description = "No such bucket, or the key has no value", body = ErrorBody),
    )
)]
pub async fn get_key(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
) -> Result<Json<KvEntryJson>, AppError> {
    let subject = subject(&bucket, &key)?;
    let found = state.engine.get_message(
        &tenant,
        &station(&bucket),
        MessageQuery::LastBySubject(subject.to_str_lossy().into_owned()),
    );
    let no_key = || {
        AppError::new(
            StatusCode::NOT_FOUND,
            "key_not_found",
            format!("key '{key}' has no value in bucket '{bucket}'"),
        )
    };
    let m = match found {
        Ok(m) => m,
        Err(EngineError::StationNotFound) => return Err(bucket_not_found(&bucket)),
        Err(EngineError::MessageNotFound) => return Err(no_key()),
        Err(e) => return Err(e.into()),
    };
    if is_marker(m.headers.as_ref()) {
        return Err(no_key());
    }
    Ok(Json(KvEntryJson {
        value: std::str::from_utf8(&m.payload).ok().map(str::to_owned),
        value_base64: STANDARD.encode(&m.payload),
        revision: m.seq,
        created: rfc3339(m.time),
        bucket,
        key,
    }))
}

/// Stores `message` (on a key's subject) in `bucket`; its revision.
async fn put_on_key(
    state: &Arc<ApiState>,
    tenant: &TenantId,
    caller: Caller,
    message: Message,
    options: &HttpOptions,
    bucket: &str,
) -> Result<u64, AppError> {
    if state.engine.station_info(tenant, &station(bucket)).is_err() {
        return Err(bucket_not_found(bucket));
    }
    let client = state.clients.get(tenant)?;
    let producer = caller.record(&client);
    match start_publish(state, &client, &producer, &message, options)
        .outcome()
        .await?
    {
        Published::Stored(ack) => Ok(ack.seq),
        Published::Live(_) | Published::Dropped(_) => Err(bucket_not_found(bucket)),
    }
}

/// Put a key's value (the request body, byte for byte).
#[utoipa::path(
    put,
    path = "/v1/kv/{bucket}/{key}",
    tag = "key-value",
    params(
        ("bucket" = String, Path, description = "Bucket name"),
        ("key" = String, Path, description = "Key"),
        ("Junction-Expected-Last-Subject-Sequence" = Option<u64>, Header, description = "Update only this revision (0: create only; 412 `wrong_last_subject_sequence` otherwise)"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The value"),
    responses(
        (status = 200, description = "Stored (durable)", body = KvPutJson),
        (status = 404, description = "No such bucket", body = ErrorBody),
        (status = 412, description = "The key is not at the expected revision", body = ErrorBody),
    )
)]
pub async fn put_key(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
    request: Request,
) -> Result<Response, AppError> {
    let subject = subject(&bucket, &key)?;
    let caller = Caller::of(&state, &request);
    let options = HttpOptions::of(Some(request.headers()), None)?;
    let payload = body_bytes(request, &()).await?;
    if payload.len() > state.settings.max_payload {
        return Err(AppError::payload_too_large(
            payload.len(),
            state.settings.max_payload,
        ));
    }
    let message = Message {
        subject,
        reply: None,
        headers: None,
        payload,
    };
    let revision = put_on_key(&state, &tenant, caller, message, &options, &bucket).await?;
    Ok(Json(KvPutJson {
        bucket,
        key,
        revision,
    })
    .into_response())
}

/// Delete a key (a delete marker; its history stays within the bucket's).
#[utoipa::path(
    delete,
    path = "/v1/kv/{bucket}/{key}",
    tag = "key-value",
    params(
        ("bucket" = String, Path, description = "Bucket name"),
        ("key" = String, Path, description = "Key"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such bucket", body = ErrorBody),
    )
)]
pub async fn delete_key(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
    request: Request,
) -> Result<StatusCode, AppError> {
    let subject = subject(&bucket, &key)?;
    let caller = Caller::of(&state, &request);
    let mut headers = Headers::default();
    headers.insert(KV_OPERATION, "DEL");
    let options = HttpOptions::of(None, Some(&headers))?;
    let message = Message {
        subject,
        reply: None,
        headers: Some(headers),
        payload: Bytes::new(),
    };
    put_on_key(&state, &tenant, caller, message, &options, &bucket).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Most revisions one history answer lists (a bucket keeps at most 64 per key;
/// a station used as a bucket with no per-key limit may keep more).
const HISTORY_LIMIT: usize = 1000;

/// One revision of a key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvRevisionJson {
    /// The revision (the station sequence it is stored at).
    pub revision: u64,
    /// `PUT`, `DEL` (a delete marker) or `PURGE` (a purge marker).
    pub operation: String,
    /// The value as UTF-8 text, when it is (empty for markers).
    pub value: Option<String>,
    /// The value, in base64.
    pub value_base64: String,
    /// When it was stored (RFC 3339).
    pub created: String,
}

/// A key's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct KvHistoryJson {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Its revisions, oldest first (at most 1000).
    pub entries: Vec<KvRevisionJson>,
}

/// Read a key's history: every revision the bucket keeps, markers included.
#[utoipa::path(
    get,
    path = "/v1/kv/{bucket}/{key}/history",
    tag = "key-value",
    params(
        ("bucket" = String, Path, description = "Bucket name"),
        ("key" = String, Path, description = "Key"),
    ),
    responses(
        (status = 200, description = "The revisions, oldest first (empty for a key never put)", body = KvHistoryJson),
        (status = 404, description = "No such bucket", body = ErrorBody),
    )
)]
pub async fn key_history(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath((bucket, key)): ApiPath<(String, String)>,
) -> Result<Json<KvHistoryJson>, AppError> {
    let subject = subject(&bucket, &key)?.to_str_lossy().into_owned();
    let mut entries = Vec::new();
    let mut from = 1u64;
    while entries.len() < HISTORY_LIMIT {
        let found = state.engine.get_message(
            &tenant,
            &station(&bucket),
            MessageQuery::NextBySubject {
                seq: from,
                subject: subject.clone(),
            },
        );
        let m = match found {
            Ok(m) => m,
            Err(EngineError::StationNotFound) => return Err(bucket_not_found(&bucket)),
            Err(EngineError::MessageNotFound) => break,
            Err(e) => return Err(e.into()),
        };
        let operation = m
            .headers
            .as_ref()
            .and_then(|h| h.get(KV_OPERATION))
            .map_or_else(|| "PUT".to_string(), |op| op.to_ascii_uppercase());
        entries.push(KvRevisionJson {
            revision: m.seq,
            operation,
            value: std::str::from_utf8(&m.payload).ok().map(str::to_owned),
            value_base64: STANDARD.encode(&m.payload),
            created: rfc3339(m.time),
        });
        from = m.seq + 1;
    }
    Ok(Json(KvHistoryJson {
        bucket,
        key,
        entries,
    }))
}
