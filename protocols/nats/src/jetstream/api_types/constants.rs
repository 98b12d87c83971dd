//! Limits, defaults, API subjects, response types and header names.

#[allow(unused_imports)]
use super::*;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/// How Go marshals the zero `time.Time`: nats-server emits it for timestamps that never
/// happened (for example `first_ts` of an empty stream).
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One second in nanoseconds.
pub(super) const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Default stream `duplicate_window` (`StreamDefaultDuplicatesWindow`, 2 minutes).
pub const DEFAULT_DUPLICATE_WINDOW_NS: i64 =
    junction_api::StationConfig::DEFAULT_DUPLICATE_WINDOW.as_secs() as i64 * NANOS_PER_SEC;

/// Default consumer `ack_wait` for explicit/all ack policies (`JsAckWaitDefault`, 30 s).
pub const DEFAULT_ACK_WAIT_NS: i64 = 30 * NANOS_PER_SEC;

/// Default consumer `max_ack_pending` for explicit/all ack policies
/// (`JsDefaultMaxAckPending`).
pub const DEFAULT_MAX_ACK_PENDING: i64 = 1000;

/// Default pull consumer `max_waiting` (`JSWaitQueueDefaultMax`).
pub const DEFAULT_MAX_WAITING: i64 = 512;

/// `inactive_threshold` stamped on ephemeral consumers that set none
/// (`JsDeleteWaitTimeDefault`, 5 s).
pub const DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NS: i64 = 5 * NANOS_PER_SEC;

/// Maximum stream/consumer name length (`JSMaxNameLen`).
pub const MAX_NAME_LEN: usize = 255;

/// Maximum stream/consumer description length (`JSMaxDescriptionLen`).
pub const MAX_DESCRIPTION_LEN: usize = 4 * 1024;

/// Maximum summed length of metadata keys and values (`JSMaxMetadataLen`).
pub const MAX_METADATA_LEN: usize = 128 * 1024;

/// Page size of `STREAM.NAMES` and `CONSUMER.NAMES` (`JSApiNamesLimit`).
pub const NAMES_PAGE_LIMIT: u64 = 1024;

/// Page size of `STREAM.LIST` and `CONSUMER.LIST` (`JSApiListLimit`).
pub const LIST_PAGE_LIMIT: u64 = 256;

/// Page size of subject details in a stream info response (`JSMaxSubjectDetails`).
pub const SUBJECT_DETAILS_PAGE_LIMIT: u64 = 100_000;

/// Largest `num_replicas` a stream accepts (`StreamMaxReplicas`).
pub const MAX_REPLICAS: i64 = 5;

/// API subjects (`server/jetstream_api.go`). Constants ending in `_PREFIX` or a dot are
/// followed by the stream name (and then the consumer name where the Go template has two
/// `%s`).
pub mod subjects {
    /// Every API subject starts with this.
    pub const API_PREFIX: &str = "$JS.API";
    /// Account info (`JSApiAccountInfo`).
    pub const INFO: &str = "$JS.API.INFO";
    /// `STREAM.CREATE.<stream>`.
    pub const STREAM_CREATE: &str = "$JS.API.STREAM.CREATE.";
    /// `STREAM.UPDATE.<stream>`.
    pub const STREAM_UPDATE: &str = "$JS.API.STREAM.UPDATE.";
    /// Stream names, paged.
    pub const STREAM_NAMES: &str = "$JS.API.STREAM.NAMES";
    /// Stream infos, paged.
    pub const STREAM_LIST: &str = "$JS.API.STREAM.LIST";
    /// `STREAM.INFO.<stream>`.
    pub const STREAM_INFO: &str = "$JS.API.STREAM.INFO.";
    /// `STREAM.DELETE.<stream>`.
    pub const STREAM_DELETE: &str = "$JS.API.STREAM.DELETE.";
    /// `STREAM.PURGE.<stream>`.
    pub const STREAM_PURGE: &str = "$JS.API.STREAM.PURGE.";
    /// `STREAM.MSG.DELETE.<stream>`.
    pub const STREAM_MSG_DELETE: &str = "$JS.API.STREAM.MSG.DELETE.";
    /// `STREAM.MSG.GET.<stream>`.
    pub const STREAM_MSG_GET: &str = "$JS.API.STREAM.MSG.GET.";
    /// `DIRECT.GET.<stream>` and `DIRECT.GET.<stream>.<subject>` (header replies).
    pub const DIRECT_GET: &str = "$JS.API.DIRECT.GET.";
    /// `CONSUMER.CREATE.<stream>` (legacy ephemeral) or
    /// `CONSUMER.CREATE.<stream>.<consumer>[.<filter subject>]`.
    pub const CONSUMER_CREATE: &str = "$JS.API.CONSUMER.CREATE.";
    /// `CONSUMER.DURABLE.CREATE.<stream>.<durable>` (legacy durable).
    pub const CONSUMER_DURABLE_CREATE: &str = "$JS.API.CONSUMER.DURABLE.CREATE.";
    /// `CONSUMER.NAMES.<stream>`.
    pub const CONSUMER_NAMES: &str = "$JS.API.CONSUMER.NAMES.";
    /// `CONSUMER.LIST.<stream>`.
    pub const CONSUMER_LIST: &str = "$JS.API.CONSUMER.LIST.";
    /// `CONSUMER.INFO.<stream>.<consumer>`.
    pub const CONSUMER_INFO: &str = "$JS.API.CONSUMER.INFO.";
    /// `CONSUMER.DELETE.<stream>.<consumer>`.
    pub const CONSUMER_DELETE: &str = "$JS.API.CONSUMER.DELETE.";
    /// `CONSUMER.MSG.NEXT.<stream>.<consumer>` (pull requests).
    pub const CONSUMER_MSG_NEXT: &str = "$JS.API.CONSUMER.MSG.NEXT.";
    /// Ack reply subjects of delivered messages (see [`super::AckReply`]).
    pub const ACK_PREFIX: &str = "$JS.ACK.";
}

/// The `type` strings of API responses (`server/jetstream_api.go`).
pub mod response_type {
    /// `$JS.API.INFO`.
    pub const ACCOUNT_INFO: &str = "io.nats.jetstream.api.v1.account_info_response";
    /// `STREAM.CREATE`.
    pub const STREAM_CREATE: &str = "io.nats.jetstream.api.v1.stream_create_response";
    /// `STREAM.UPDATE`.
    pub const STREAM_UPDATE: &str = "io.nats.jetstream.api.v1.stream_update_response";
    /// `STREAM.INFO`.
    pub const STREAM_INFO: &str = "io.nats.jetstream.api.v1.stream_info_response";
    /// `STREAM.NAMES`.
    pub const STREAM_NAMES: &str = "io.nats.jetstream.api.v1.stream_names_response";
    /// `STREAM.LIST`.
    pub const STREAM_LIST: &str = "io.nats.jetstream.api.v1.stream_list_response";
    /// `STREAM.DELETE`.
    pub const STREAM_DELETE: &str = "io.nats.jetstream.api.v1.stream_delete_response";
    /// `STREAM.PURGE`.
    pub const STREAM_PURGE: &str = "io.nats.jetstream.api.v1.stream_purge_response";
    /// `STREAM.PEER.REMOVE` response.
    pub const STREAM_REMOVE_PEER: &str = "io.nats.jetstream.api.v1.stream_remove_peer_response";
    /// `STREAM.LEADER.STEPDOWN` response.
    pub const STREAM_LEADER_STEPDOWN: &str =
        "io.nats.jetstream.api.v1.stream_leader_stepdown_response";
    /// `STREAM.MSG.GET`.
    pub const STREAM_MSG_GET: &str = "io.nats.jetstream.api.v1.stream_msg_get_response";
    /// `STREAM.MSG.DELETE`.
    pub const STREAM_MSG_DELETE: &str = "io.nats.jetstream.api.v1.stream_msg_delete_response";
    /// `CONSUMER.CREATE` and `CONSUMER.DURABLE.CREATE`.
    pub const CONSUMER_CREATE: &str = "io.nats.jetstream.api.v1.consumer_create_response";
    /// `CONSUMER.INFO`.
    pub const CONSUMER_INFO: &str = "io.nats.jetstream.api.v1.consumer_info_response";
    /// `CONSUMER.NAMES`.
    pub const CONSUMER_NAMES: &str = "io.nats.jetstream.api.v1.consumer_names_response";
    /// `CONSUMER.LIST`.
    pub const CONSUMER_LIST: &str = "io.nats.jetstream.api.v1.consumer_list_response";
    /// `CONSUMER.DELETE`.
    pub const CONSUMER_DELETE: &str = "io.nats.jetstream.api.v1.consumer_delete_response";
    /// `CONSUMER.PAUSE` (nats-server 2.11).
    pub const CONSUMER_PAUSE: &str = "io.nats.jetstream.api.v1.consumer_pause_response";
    /// Generic system response (`JSApiSystemResponseType`).
    pub const SYSTEM: &str = "io.nats.jetstream.api.v1.system_response";
}

/// Message headers JetStream reads on publish and writes on delivery (`server/stream.go`).
pub mod headers {
    /// De-duplication id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// Reject unless the subject is captured by this stream.
    pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
    /// Reject unless the stream's last sequence is this.
    pub const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
    /// Reject unless the last sequence on this subject is this.
    pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
    /// Reject unless the last `Nats-Msg-Id` stored is this.
    pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
    /// Roll-up: `sub` or `all`.
    pub const ROLLUP: &str = "Nats-Rollup";
    /// Roll-up value purging the message's subject.
    pub const ROLLUP_SUBJECT: &str = "sub";
    /// Roll-up value purging the whole stream.
    pub const ROLLUP_ALL: &str = "all";
    /// Stream name, on direct get replies and republished messages.
    pub const STREAM: &str = "Nats-Stream";
    /// Stream sequence, on direct get replies and republished messages.
    pub const SEQUENCE: &str = "Nats-Sequence";
    /// Timestamp, on direct get replies and republished messages.
    pub const TIME_STAMP: &str = "Nats-Time-Stamp";
    /// Original subject, on direct get replies and republished messages.
    pub const SUBJECT: &str = "Nats-Subject";
    /// Previous sequence on the subject, on republished messages.
    pub const LAST_SEQUENCE: &str = "Nats-Last-Sequence";
    /// Size of the omitted payload for `headers_only` consumers.
    pub const MSG_SIZE: &str = "Nats-Msg-Size";
}

// ---------------------------------------------------------------------------------------
// serde helpers
// ---------------------------------------------------------------------------------------

/// Go semantics for a JSON `null` into a non-pointer field: keep the zero value.
pub(super) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub(super) fn is_false(value: &bool) -> bool {
    !*value
}

pub(super) fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

pub(super) fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

pub(super) fn is_zero_i32(value: &i32) -> bool {
    *value == 0
}

pub(super) fn go_zero_time() -> String {
    GO_ZERO_TIME.to_owned()
}

/// Go's `isEmptyRequest`: an absent body, `{}`, or any JSON object with no keys. `null`
/// and `[]` are *not* empty. Handlers that take no body answer a non-empty one with
/// [`JsErrorCode::NotEmptyRequest`] (stream/consumer info, deletes); handlers that need
/// one answer an empty one with [`JsErrorCode::BadRequest`] (msg get, msg delete).
pub fn is_empty_request(body: &[u8]) -> bool {
    if body.is_empty() || body == b"{}" {
        return true;
    }
    matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Object(map)) if map.is_empty()
    )
}

/// Go's `json.Unmarshal` into a request struct: `null` gives the zero value, anything
/// that does not decode (including an empty body) is [`JsErrorCode::InvalidJson`].
/// Only an object or `null` is accepted at the top level (serde would also take an array
/// for a struct, Go does not).
pub fn decode_request<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    if !matches!(first, Some(b'{' | b'n')) {
        return Err(JsErrorCode::InvalidJson.error());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|_| JsErrorCode::InvalidJson.error())
}

/// A request whose body is optional (stream/consumer names and lists, purge):
/// nats-server decodes these only `if !isEmptyRequest(msg)`, so an empty body is the
/// zero value; anything else is decoded as by [`decode_request`].
pub fn decode_optional_request<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if is_empty_request(body) {
        Ok(T::default())
    } else {
        decode_request(body)
    }
}
