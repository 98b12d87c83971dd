//! JetStream JSON API wire types, field for field as nats-server 2.10 emits and accepts
//! them (reference: `server/stream.go`, `server/consumer.go`, `server/store.go`,
//! `server/jetstream_api.go`, `server/jetstream.go`, `server/errors.json` at v2.10.29),
//! checked against what async-nats 0.51 and nats-py 2.x send and parse.
//!
//! Pure data: serde structs and enums, constants, and small sans-I/O parsers and
//! formatters. Nothing here touches storage, routing or the network.
//!
//! # Conventions
//!
//! - Field names in Rust are the JSON names (except `type`, which is `kind`).
//! - Durations are `i64` nanoseconds, as Go's `time.Duration` marshals them.
//! - Timestamps are RFC 3339 strings as Go's `time.Time` marshals them: UTC, nanosecond
//!   precision with trailing zeros trimmed (`2024-01-02T03:04:05.1234Z`), and the Go
//!   zero time [`GO_ZERO_TIME`] for "never" (for example `first_ts`/`last_ts` of an empty
//!   stream). [`format_rfc3339_nanos`] and [`parse_rfc3339_nanos`] convert.
//! - `skip_serializing_if` mirrors Go's `omitempty` exactly. Fields without it are always
//!   emitted, even when zero: `max_age: 0`, `allow_direct: false`, `sealed: false`,
//!   `compression: "none"`, `consumer_limits: {}` in a stream config, `num_replicas: 0`
//!   in a consumer config, `purged: 0` in a purge response, `total/offset/limit` in a
//!   stream info response.
//! - Deserialization follows `encoding/json` semantics for request bodies: unknown keys
//!   are ignored, missing keys take the Go zero value (not the nats default; see
//!   [`StreamConfig::apply_server_defaults`] and [`ConsumerConfig::apply_server_defaults`]),
//!   and `null` for a non-pointer field leaves the zero value (async-nats sends
//!   `"consumer_limits": null`; `null` for a whole body decodes as the zero value, see
//!   [`decode_request`]). Unlike Go, key matching is case-sensitive.
//!
//! # nats-server quirks reproduced here
//!
//! - Go's enum unmarshalers are case-sensitive except `discard` (lower-cased first);
//!   `deliver_policy` also accepts `"undefined"` (= `all`).
//! - Stream defaults the server fills (`checkStreamCfg`): `num_replicas` 0 -> 1;
//!   `max_msgs`, `max_bytes`, `max_msgs_per_subject`, `max_msg_size`, `max_consumers`
//!   0 -> -1; `duplicate_window` 0 -> 2 min (or `max_age` if smaller) unless mirroring;
//!   no subjects -> `[name]` unless a mirror or sources; `storage` missing -> file.
//!   async-nats sends all of those as `0` (and `"consumer_limits": null`); nats-py sends
//!   `-1` for `max_msgs_per_subject`/`max_msg_size` and `0` for durations.
//! - Consumer defaults the server fills (`setConsumerConfigDefaults`): pull `max_waiting`
//!   0 -> 512; `ack_wait` 0 -> 30 s for explicit/all acks (or `backoff[0]`);
//!   `max_deliver` 0 -> -1; `max_ack_pending` 0 -> 1000 for explicit/all acks;
//!   ephemerals get `inactive_threshold` 5 s. A missing `ack_policy` is `none` on the
//!   server (Go zero value) although both clients default to and send `explicit`.
//!   `num_replicas` is stored as sent (0 in single-server mode).
//! - `STREAM.NAMES` returns `"streams": null` when there are none (Go nil slice), while
//!   `STREAM.LIST`, `CONSUMER.NAMES` and `CONSUMER.LIST` return `[]`.
//! - `success` is `omitempty`: error replies carry no `success` key, success replies carry
//!   `"success": true`.
//! - Error replies keep the response's other non-`omitempty` fields at zero, e.g.
//!   `{"type":"...stream_purge_response","error":{...},"purged":0}`; stream info errors
//!   carry `"total":0,"offset":0,"limit":0`.
//! - The success pub ack is hand-built by the server with a space after the comma:
//!   `{"stream":"S", "seq":5}`; a duplicate is `{"stream":"S", "seq":5,"duplicate": true}`
//!   (see [`PubAck::to_nats_json`]); publish errors are marshalled normally as
//!   `{"error":{...},"stream":"S","seq":0}`.
//! - Go's `json.Marshal` escapes `<`, `>` and `&` in strings (`"foo.\u003e"`); serde
//!   does not. Both are the same JSON value, and no client cares.
//! - async-nats sends `null` as the body of `STREAM.INFO` (`get_stream`), `[]` to `INFO`,
//!   `{}` to most others, and extra `null` fields in pull requests (`min_pending`,
//!   `group`, ...). All of those must be accepted.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/// How Go marshals the zero `time.Time`: nats-server emits it for timestamps that never
/// happened (for example `first_ts` of an empty stream).
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One second in nanoseconds.
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Default stream `duplicate_window` (`StreamDefaultDuplicatesWindow`, 2 minutes).
pub const DEFAULT_DUPLICATE_WINDOW_NS: i64 = 120 * NANOS_PER_SEC;

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
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

fn is_zero_i32(value: &i32) -> bool {
    *value == 0
}

fn go_zero_time() -> String {
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

// ---------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------

/// Stream `retention`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetentionPolicy {
    /// `"limits"`: keep messages until a limit is hit (Go zero value).
    #[default]
    #[serde(rename = "limits")]
    Limits,
    /// `"interest"`: keep messages while some consumer has not acked them.
    #[serde(rename = "interest")]
    Interest,
    /// `"workqueue"`: remove a message once any consumer acks it.
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// Stream `discard`. Unmarshalled case-insensitively, as nats-server does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum DiscardPolicy {
    /// `"old"`: drop the oldest messages to make room (Go zero value).
    #[default]
    #[serde(rename = "old")]
    Old,
    /// `"new"`: refuse new messages when full.
    #[serde(rename = "new")]
    New,
}

impl<'de> Deserialize<'de> for DiscardPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.to_ascii_lowercase().as_str() {
            "old" => Ok(DiscardPolicy::Old),
            "new" => Ok(DiscardPolicy::New),
            _ => Err(D::Error::custom(format_args!("can not unmarshal {text:?}"))),
        }
    }
}

/// Stream `storage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageType {
    /// `"file"`: the server default when the key is missing.
    #[default]
    #[serde(rename = "file")]
    File,
    /// `"memory"`.
    #[serde(rename = "memory")]
    Memory,
}

/// Stream `compression`; always emitted by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreCompression {
    /// `"none"` (Go zero value).
    #[default]
    #[serde(rename = "none")]
    None,
    /// `"s2"`.
    #[serde(rename = "s2")]
    S2,
}

/// Consumer `deliver_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeliverPolicy {
    /// `"all"` (Go zero value; `"undefined"` is accepted as well).
    #[default]
    #[serde(rename = "all", alias = "undefined")]
    All,
    /// `"last"`.
    #[serde(rename = "last")]
    Last,
    /// `"new"`.
    #[serde(rename = "new")]
    New,
    /// `"by_start_sequence"` with `opt_start_seq`.
    #[serde(rename = "by_start_sequence")]
    ByStartSequence,
    /// `"by_start_time"` with `opt_start_time`.
    #[serde(rename = "by_start_time")]
    ByStartTime,
    /// `"last_per_subject"`.
    #[serde(rename = "last_per_subject")]
    LastPerSubject,
}

/// Consumer `ack_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AckPolicy {
    /// `"none"`: the Go zero value, so what the server assumes when the key is missing
    /// (clients default to `explicit` and always send it).
    #[default]
    #[serde(rename = "none")]
    None,
    /// `"all"`: acking a sequence acks everything below it.
    #[serde(rename = "all")]
    All,
    /// `"explicit"`: every message is acked on its own.
    #[serde(rename = "explicit")]
    Explicit,
}

/// Consumer `replay_policy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplayPolicy {
    /// `"instant"` (Go zero value).
    #[default]
    #[serde(rename = "instant")]
    Instant,
    /// `"original"`: keep the original inter-message timing.
    #[serde(rename = "original")]
    Original,
}

/// `action` of a consumer create request (nats-server 2.10).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsumerAction {
    /// `""`: create, or update if it exists (Go zero value; also when the key is missing).
    #[default]
    #[serde(rename = "")]
    CreateOrUpdate,
    /// `"update"`: fail with [`JsErrorCode::ConsumerDoesNotExist`] if it does not exist.
    #[serde(rename = "update")]
    Update,
    /// `"create"`: fail with [`JsErrorCode::ConsumerAlreadyExists`] if it exists with a
    /// different config.
    #[serde(rename = "create")]
    Create,
}

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

/// A stream's configuration: the `STREAM.CREATE`/`STREAM.UPDATE` request body and the
/// `config` of a stream info. `Default` is the Go zero value, which is what a missing key
/// decodes to; [`StreamConfig::apply_server_defaults`] fills in what nats-server fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Stream name; must equal the name in the request subject.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Free text, up to [`MAX_DESCRIPTION_LEN`].
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub description: String,
    /// Captured subjects (wildcards allowed); defaults to `[name]`.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub subjects: Vec<String>,
    /// Retention policy.
    pub retention: RetentionPolicy,
    /// Maximum number of consumers; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_consumers: i64,
    /// Maximum number of messages; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_msgs: i64,
    /// Maximum total bytes; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_bytes: i64,
    /// Maximum message age in nanoseconds; 0 for unlimited. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub max_age: i64,
    /// Maximum messages per subject; -1 for unlimited (server default).
    #[serde(deserialize_with = "nullable")]
    pub max_msgs_per_subject: i64,
    /// Largest accepted message (headers plus payload); -1 for unlimited (server
    /// default). Go `int32`, `omitempty`.
    #[serde(skip_serializing_if = "is_zero_i32", deserialize_with = "nullable")]
    pub max_msg_size: i32,
    /// Discard policy.
    pub discard: DiscardPolicy,
    /// Storage type.
    pub storage: StorageType,
    /// Replica count; 1 by server default.
    #[serde(deserialize_with = "nullable")]
    pub num_replicas: i64,
    /// Do not send pub acks.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub no_ack: bool,
    /// Owning stream template (deprecated feature).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub template_owner: String,
    /// De-duplication window in nanoseconds; 2 minutes by server default.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub duplicate_window: i64,
    /// Cluster placement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Mirror source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSource>,
    /// Sources.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub sources: Vec<StreamSource>,
    /// On-disk compression. Always emitted.
    pub compression: StoreCompression,
    /// Initial sequence of a new stream.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub first_seq: u64,
    /// Subject transform applied on ingest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_transform: Option<SubjectTransformConfig>,
    /// Republish stored messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republish: Option<RePublish>,
    /// Enable `DIRECT.GET`. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub allow_direct: bool,
    /// Enable direct get on mirrors. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub mirror_direct: bool,
    /// Apply discard-new per subject (requires `discard: new` and `max_msgs_per_subject`).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub discard_new_per_subject: bool,
    /// No messages in or out, no deletes or purges. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub sealed: bool,
    /// Refuse message deletes. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub deny_delete: bool,
    /// Refuse purges. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub deny_purge: bool,
    /// Honour `Nats-Rollup` headers. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub allow_rollup_hdrs: bool,
    /// Defaults for consumers of this stream. Always emitted (as `{}` when unset).
    #[serde(deserialize_with = "nullable")]
    pub consumer_limits: StreamConsumerLimits,
    /// User metadata.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub metadata: BTreeMap<String, String>,
    /// Per-message TTLs (`Nats-TTL`). A nats-server 2.11 key that 2.10 ignores; kept so it
    /// round-trips, and omitted when false so 2.10 output is unchanged.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub allow_msg_ttl: bool,
}

impl StreamConfig {
    /// A config with only the name set (Go zero values elsewhere).
    pub fn named(name: impl Into<String>) -> Self {
        StreamConfig {
            name: name.into(),
            ..StreamConfig::default()
        }
    }

    /// Fill the defaults nats-server's `checkStreamCfg` fills before storing a config (no
    /// server-configured duplicate-window cap): replicas 0 -> 1; the `max_*` limits
    /// 0 -> -1; duplicate window 0 -> 2 minutes, or `max_age` when that is smaller, unless
    /// mirroring; no subjects -> `[name]` unless mirroring or sourcing; an empty republish
    /// source -> `>`. Validation is the caller's.
    pub fn apply_server_defaults(&mut self) {
        if self.num_replicas == 0 {
            self.num_replicas = 1;
        }
        if self.max_msgs == 0 {
            self.max_msgs = -1;
        }
        if self.max_msgs_per_subject == 0 {
            self.max_msgs_per_subject = -1;
        }
        if self.max_bytes == 0 {
            self.max_bytes = -1;
        }
        if self.max_msg_size == 0 {
            self.max_msg_size = -1;
        }
        if self.max_consumers == 0 {
            self.max_consumers = -1;
        }
        if self.duplicate_window == 0 && self.mirror.is_none() {
            self.duplicate_window =
                if self.max_age != 0 && self.max_age < DEFAULT_DUPLICATE_WINDOW_NS {
                    self.max_age
                } else {
                    DEFAULT_DUPLICATE_WINDOW_NS
                };
        }
        if self.subjects.is_empty() && self.mirror.is_none() && self.sources.is_empty() {
            self.subjects.push(self.name.clone());
        }
        if let Some(republish) = &mut self.republish {
            if republish.src.is_empty() {
                republish.src = ">".to_owned();
            }
        }
    }
}

/// `consumer_limits` of a stream config: defaults applied to its consumers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConsumerLimits {
    /// Default (and maximum) consumer `inactive_threshold`, nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub inactive_threshold: i64,
    /// Default (and maximum) consumer `max_ack_pending`.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_ack_pending: i64,
}

/// A subject transform (`src` -> `dest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectTransformConfig {
    /// Source subject filter.
    #[serde(deserialize_with = "nullable")]
    pub src: String,
    /// Destination template.
    #[serde(deserialize_with = "nullable")]
    pub dest: String,
}

/// `republish` of a stream config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RePublish {
    /// Source filter; empty means `>` (the server stores `>`).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub src: String,
    /// Destination template.
    #[serde(deserialize_with = "nullable")]
    pub dest: String,
    /// Republish headers only.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub headers_only: bool,
}

/// `placement` of a stream config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Placement {
    /// Cluster name.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub cluster: String,
    /// Server tags.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub tags: Vec<String>,
}

/// A mirror or source of a stream config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSource {
    /// Origin stream name.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    /// Start sequence.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub opt_start_seq: u64,
    /// Start time, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Subject filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub filter_subject: String,
    /// Subject transforms.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
    /// Cross-account/domain origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
}

/// `external` of a stream source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExternalStream {
    /// API prefix.
    #[serde(deserialize_with = "nullable")]
    pub api: String,
    /// Delivery prefix.
    #[serde(deserialize_with = "nullable")]
    pub deliver: String,
}

/// A stream's state, the `state` of a stream info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// First sequence present (0 when the stream never held a message).
    pub first_seq: u64,
    /// Time of the first message; [`GO_ZERO_TIME`] when empty.
    pub first_ts: String,
    /// Last sequence assigned.
    pub last_seq: u64,
    /// Time of the last message; [`GO_ZERO_TIME`] when never written.
    pub last_ts: String,
    /// Distinct subjects stored (`omitempty`).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_subjects: u64,
    /// Per-subject counts, only when asked for with `subjects_filter`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub subjects: BTreeMap<String, u64>,
    /// Number of interior deletes (`omitempty`).
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_deleted: u64,
    /// Deleted sequences, only when asked for with `deleted_details`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<u64>,
    /// Data lost to corruption.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<LostStreamData>,
    /// Consumers on the stream. Always emitted.
    pub consumer_count: u64,
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            messages: 0,
            bytes: 0,
            first_seq: 0,
            first_ts: go_zero_time(),
            last_seq: 0,
            last_ts: go_zero_time(),
            num_subjects: 0,
            subjects: BTreeMap::new(),
            num_deleted: 0,
            deleted: Vec::new(),
            lost: None,
            consumer_count: 0,
        }
    }
}

/// `lost` of a stream state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LostStreamData {
    /// Lost sequences.
    pub msgs: Vec<u64>,
    /// Lost bytes.
    pub bytes: u64,
}

/// A stream info: the body of stream create/update/info responses and the elements of
/// `STREAM.LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// The stored config, server defaults filled in.
    pub config: StreamConfig,
    /// Creation time.
    pub created: String,
    /// Current state.
    pub state: StreamState,
    /// JetStream domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Cluster info. Single-server nats-server sends `{"leader": "<server name>"}` on
    /// info and list (not on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    /// Mirror status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<StreamSourceInfo>,
    /// Sources status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<StreamSourceInfo>,
    /// Alternates (mirrors of this stream elsewhere).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<StreamAlternate>,
    /// When this info was gathered. Always emitted.
    #[serde(default = "go_zero_time")]
    pub ts: String,
}

/// `cluster` of a stream or consumer info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterInfo {
    /// Cluster name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Raft group name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub raft_group: String,
    /// Leader server name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub leader: String,
    /// Followers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<PeerInfo>,
}

/// A replica in [`ClusterInfo`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    /// Server name.
    pub name: String,
    /// Caught up.
    pub current: bool,
    /// Offline.
    #[serde(skip_serializing_if = "is_false")]
    pub offline: bool,
    /// Since last seen, nanoseconds.
    pub active: i64,
    /// Entries behind.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub lag: u64,
    /// Peer id.
    pub peer: String,
}

/// Status of a mirror or source in a stream info.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSourceInfo {
    /// Origin stream name.
    pub name: String,
    /// Cross-account/domain origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStream>,
    /// Messages behind.
    pub lag: u64,
    /// Since last contact, nanoseconds (-1 if never).
    pub active: i64,
    /// Last setup error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Subject filter.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub filter_subject: String,
    /// Subject transforms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subject_transforms: Vec<SubjectTransformConfig>,
}

/// An alternate of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamAlternate {
    /// Stream name.
    pub name: String,
    /// Domain.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Cluster.
    pub cluster: String,
}

/// A message as `STREAM.MSG.GET` returns it (`StoredMsg`); `hdrs` and `data` travel as
/// standard base64 (Go `[]byte`), omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMsg {
    /// Subject.
    pub subject: String,
    /// Stream sequence.
    pub seq: u64,
    /// Raw header block (`NATS/1.0\r\n...`), base64 on the wire.
    #[serde(
        default,
        skip_serializing_if = "Bytes::is_empty",
        with = "base64_bytes"
    )]
    pub hdrs: Bytes,
    /// Payload, base64 on the wire.
    #[serde(
        default,
        skip_serializing_if = "Bytes::is_empty",
        with = "base64_bytes"
    )]
    pub data: Bytes,
    /// Store time, RFC 3339.
    pub time: String,
}

// ---------------------------------------------------------------------------------------
// Stream requests
// ---------------------------------------------------------------------------------------

/// Paging of list requests (`ApiPagedRequest`): `offset` is always emitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiPagedRequest {
    /// Items to skip.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
}

/// Paging of list responses (`ApiPaged`): all three always emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiPaged {
    /// Items in total.
    pub total: u64,
    /// Items skipped.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
}

/// `STREAM.INFO` request body (optional; async-nats sends
/// `{"offset":0,"deleted_details":false,"subjects_filter":""}` or `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamInfoRequest {
    /// Offset into the subject details.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    /// Include `state.deleted`.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub deleted_details: bool,
    /// Include `state.subjects` for subjects matching this filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub subjects_filter: String,
}

/// `STREAM.NAMES` (and `STREAM.LIST`) request body; optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamNamesRequest {
    /// Items to skip.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    /// Only streams whose subjects collide with this subject.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub subject: String,
}

/// `STREAM.LIST` request body; same shape as [`StreamNamesRequest`].
pub type StreamListRequest = StreamNamesRequest;

/// `CONSUMER.NAMES` (and `CONSUMER.LIST`) request body; optional.
pub type ConsumerNamesRequest = ApiPagedRequest;

/// `CONSUMER.LIST` request body; optional.
pub type ConsumerListRequest = ApiPagedRequest;

/// `STREAM.PURGE` request body; optional (empty purges everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPurgeRequest {
    /// Purge up to but not including this sequence.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub seq: u64,
    /// Only subjects matching this filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub filter: String,
    /// Keep this many of the newest messages.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub keep: u64,
}

impl StreamPurgeRequest {
    /// nats-server's check: `seq` and `keep` together are [`JsErrorCode::BadRequest`].
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.seq > 0 && self.keep > 0 {
            return Err(JsErrorCode::BadRequest.error());
        }
        Ok(())
    }
}

/// `STREAM.MSG.GET` request body (required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamMsgGetRequest {
    /// By sequence; with `next_by_subj`, the sequence to start looking from.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub seq: u64,
    /// Last message on this subject.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub last_by_subj: String,
    /// First message at or after `seq` on this subject (wildcards allowed).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub next_by_subj: String,
}

/// What a valid [`StreamMsgGetRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgGetTarget<'a> {
    /// The message with this sequence.
    Sequence(u64),
    /// The last message on this subject.
    LastBySubject(&'a str),
    /// The first message at or after `start_seq` matching `subject`.
    NextBySubject {
        /// Subject filter, may contain wildcards.
        subject: &'a str,
        /// Sequence to start from (0 means from the first).
        start_seq: u64,
    },
}

impl StreamMsgGetRequest {
    /// nats-server's checks, then the lookup to perform. `seq` with `last_by_subj`,
    /// nothing at all, or both `last_by_subj` and `next_by_subj` are
    /// [`JsErrorCode::BadRequest`].
    pub fn target(&self) -> Result<MsgGetTarget<'_>, ApiError> {
        let bad = || JsErrorCode::BadRequest.error();
        if (self.seq > 0 && !self.last_by_subj.is_empty())
            || (self.seq == 0 && self.last_by_subj.is_empty() && self.next_by_subj.is_empty())
        {
            return Err(bad());
        }
        if !self.last_by_subj.is_empty() && !self.next_by_subj.is_empty() {
            return Err(bad());
        }
        if !self.next_by_subj.is_empty() {
            Ok(MsgGetTarget::NextBySubject {
                subject: &self.next_by_subj,
                start_seq: self.seq,
            })
        } else if self.seq > 0 {
            Ok(MsgGetTarget::Sequence(self.seq))
        } else {
            Ok(MsgGetTarget::LastBySubject(&self.last_by_subj))
        }
    }
}

/// `STREAM.MSG.DELETE` request body (required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamMsgDeleteRequest {
    /// Sequence to delete. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub seq: u64,
    /// Only mark deleted instead of overwriting the bytes.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub no_erase: bool,
}

// ---------------------------------------------------------------------------------------
// Stream responses
// ---------------------------------------------------------------------------------------

/// A reply that is only an error: `{"type":..., "error":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorResponse {
    /// Response type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: ApiError,
}

impl ApiErrorResponse {
    /// An error reply of the given response type.
    pub fn new(kind: &str, error: ApiError) -> Self {
        ApiErrorResponse {
            kind: kind.to_owned(),
            error,
        }
    }
}

/// Stream create, update and info responses: [`StreamInfo`] inline after `type`.
///
/// When deserializing, `info` (and `paged`) follow serde's flatten rules: an info that
/// does not parse becomes `None` rather than an error.
///
/// On the wire: create is `type, <info>, did_create: true`; update is `type, <info>`;
/// info is `type, total, offset, limit, <info>` (the paging fields are always present
/// for info, zero unless `subjects_filter` matched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfoResponse {
    /// Response type ([`response_type::STREAM_CREATE`], `STREAM_UPDATE` or `STREAM_INFO`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Error, instead of the info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Subject-details paging, stream info responses only.
    #[serde(flatten)]
    pub paged: Option<ApiPaged>,
    /// The info.
    #[serde(flatten)]
    pub info: Option<StreamInfo>,
    /// Set by a (non-clustered) create, even when an identical stream already existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub did_create: bool,
}

impl StreamInfoResponse {
    /// `STREAM.CREATE` success.
    pub fn create(info: StreamInfo) -> Self {
        StreamInfoResponse {
            kind: response_type::STREAM_CREATE.to_owned(),
            error: None,
            paged: None,
            info: Some(info),
            did_create: true,
        }
    }

    /// `STREAM.UPDATE` success.
    pub fn update(info: StreamInfo) -> Self {
        StreamInfoResponse {
            kind: response_type::STREAM_UPDATE.to_owned(),
            error: None,
            paged: None,
            info: Some(info),
            did_create: false,
        }
    }

    /// `STREAM.INFO` success; `paged` is all zero unless subject details were asked for.
    pub fn info(info: StreamInfo, paged: ApiPaged) -> Self {
        StreamInfoResponse {
            kind: response_type::STREAM_INFO.to_owned(),
            error: None,
            paged: Some(paged),
            info: Some(info),
            did_create: false,
        }
    }

    /// An error reply of type `kind`; for [`response_type::STREAM_INFO`] the zero paging
    /// fields are kept, as nats-server sends them.
    pub fn error(kind: &str, error: ApiError) -> Self {
        StreamInfoResponse {
            kind: kind.to_owned(),
            error: Some(error),
            paged: (kind == response_type::STREAM_INFO).then(ApiPaged::default),
            info: None,
            did_create: false,
        }
    }
}

/// `STREAM.CREATE` response ([`response_type::STREAM_CREATE`], `did_create: true`).
pub type StreamCreateResponse = StreamInfoResponse;

/// `STREAM.UPDATE` response ([`response_type::STREAM_UPDATE`]).
pub type StreamUpdateResponse = StreamInfoResponse;

/// `STREAM.NAMES` response. `streams` is `null` when empty (Go nil slice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamNamesResponse {
    /// [`response_type::STREAM_NAMES`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Matching streams in total.
    #[serde(default)]
    pub total: u64,
    /// Offset of this page.
    #[serde(default)]
    pub offset: u64,
    /// Page size ([`NAMES_PAGE_LIMIT`]).
    #[serde(default)]
    pub limit: u64,
    /// Names on this page, sorted; `None` serializes as `null`.
    #[serde(default)]
    pub streams: Option<Vec<String>>,
}

impl StreamNamesResponse {
    /// A page; an empty page becomes `"streams": null` as in nats-server.
    pub fn new(total: u64, offset: u64, streams: Vec<String>) -> Self {
        StreamNamesResponse {
            kind: response_type::STREAM_NAMES.to_owned(),
            error: None,
            total,
            offset,
            limit: NAMES_PAGE_LIMIT,
            streams: (!streams.is_empty()).then_some(streams),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamNamesResponse {
            kind: response_type::STREAM_NAMES.to_owned(),
            error: Some(error),
            total: 0,
            offset: 0,
            limit: 0,
            streams: None,
        }
    }
}

/// `STREAM.LIST` response; `streams` is always an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamListResponse {
    /// [`response_type::STREAM_LIST`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Matching streams in total.
    #[serde(default)]
    pub total: u64,
    /// Offset of this page.
    #[serde(default)]
    pub offset: u64,
    /// Page size ([`LIST_PAGE_LIMIT`]).
    #[serde(default)]
    pub limit: u64,
    /// Infos on this page, sorted by name.
    #[serde(default, deserialize_with = "nullable")]
    pub streams: Vec<StreamInfo>,
    /// Streams that did not answer in time (clustered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl StreamListResponse {
    /// A page.
    pub fn new(total: u64, offset: u64, streams: Vec<StreamInfo>) -> Self {
        StreamListResponse {
            kind: response_type::STREAM_LIST.to_owned(),
            error: None,
            total,
            offset,
            limit: LIST_PAGE_LIMIT,
            streams,
            missing: Vec::new(),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamListResponse {
            kind: response_type::STREAM_LIST.to_owned(),
            error: Some(error),
            total: 0,
            offset: 0,
            limit: 0,
            streams: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// Responses that are only a success flag: stream delete, message delete, consumer
/// delete. `success` is `omitempty`, so it is absent on errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessResponse {
    /// Response type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// True on success.
    #[serde(default, skip_serializing_if = "is_false")]
    pub success: bool,
}

impl SuccessResponse {
    /// Success of the given response type.
    pub fn ok(kind: &str) -> Self {
        SuccessResponse {
            kind: kind.to_owned(),
            error: None,
            success: true,
        }
    }

    /// Error of the given response type.
    pub fn error(kind: &str, error: ApiError) -> Self {
        SuccessResponse {
            kind: kind.to_owned(),
            error: Some(error),
            success: false,
        }
    }
}

/// `STREAM.DELETE` response ([`response_type::STREAM_DELETE`]).
pub type StreamDeleteResponse = SuccessResponse;

/// `STREAM.MSG.DELETE` response ([`response_type::STREAM_MSG_DELETE`]).
pub type StreamMsgDeleteResponse = SuccessResponse;

/// `CONSUMER.DELETE` response ([`response_type::CONSUMER_DELETE`]).
pub type ConsumerDeleteResponse = SuccessResponse;

/// `STREAM.PURGE` response; `purged` is always emitted (0 on errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPurgeResponse {
    /// [`response_type::STREAM_PURGE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// True on success.
    #[serde(default, skip_serializing_if = "is_false")]
    pub success: bool,
    /// Messages removed.
    #[serde(default)]
    pub purged: u64,
}

impl StreamPurgeResponse {
    /// Success.
    pub fn ok(purged: u64) -> Self {
        StreamPurgeResponse {
            kind: response_type::STREAM_PURGE.to_owned(),
            error: None,
            success: true,
            purged,
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamPurgeResponse {
            kind: response_type::STREAM_PURGE.to_owned(),
            error: Some(error),
            success: false,
            purged: 0,
        }
    }
}

/// `STREAM.MSG.GET` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMsgGetResponse {
    /// [`response_type::STREAM_MSG_GET`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error (typically [`JsErrorCode::NoMessageFound`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<StoredMsg>,
}

impl StreamMsgGetResponse {
    /// Success.
    pub fn ok(message: StoredMsg) -> Self {
        StreamMsgGetResponse {
            kind: response_type::STREAM_MSG_GET.to_owned(),
            error: None,
            message: Some(message),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamMsgGetResponse {
            kind: response_type::STREAM_MSG_GET.to_owned(),
            error: Some(error),
            message: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Consumers
// ---------------------------------------------------------------------------------------

/// A consumer's configuration: `config` of a create request and of a consumer info.
/// `Default` is the Go zero value; [`ConsumerConfig::apply_server_defaults`] fills in
/// what nats-server fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsumerConfig {
    /// Durable name (legacy; equals the consumer name for durables).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub durable_name: String,
    /// Consumer name (2.9+; set from the subject by the new create API).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub name: String,
    /// Free text.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub description: String,
    /// Where to start. Always emitted.
    pub deliver_policy: DeliverPolicy,
    /// Start sequence for `by_start_sequence`.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub opt_start_seq: u64,
    /// Start time for `by_start_time`, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opt_start_time: Option<String>,
    /// Ack policy. Always emitted; `none` when missing.
    pub ack_policy: AckPolicy,
    /// Redelivery timeout, nanoseconds; 30 s by server default for explicit/all.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub ack_wait: i64,
    /// Delivery attempts; -1 (unlimited) by server default.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_deliver: i64,
    /// Redelivery backoff, nanoseconds; overrides `ack_wait`.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub backoff: Vec<i64>,
    /// Single subject filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub filter_subject: String,
    /// Several subject filters (2.10); exclusive with `filter_subject`.
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub filter_subjects: Vec<String>,
    /// Replay policy. Always emitted.
    pub replay_policy: ReplayPolicy,
    /// Push rate limit, bits per second.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub rate_limit_bps: u64,
    /// Ack sampling, e.g. `"100"` or `"50%"` (a string on the wire).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub sample_freq: String,
    /// Pull requests queued at once; 512 by server default for pull consumers.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_waiting: i64,
    /// Unacked messages outstanding; 1000 by server default for explicit/all.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_ack_pending: i64,
    /// Push idle heartbeat, nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub idle_heartbeat: i64,
    /// Push flow control.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub flow_control: bool,
    /// Deliver headers only (with `Nats-Msg-Size`).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub headers_only: bool,
    /// Largest pull `batch` accepted.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_batch: i64,
    /// Largest pull `expires` accepted, nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_expires: i64,
    /// Largest pull `max_bytes` accepted.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_bytes: i64,
    /// Push delivery subject; empty for pull consumers.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub deliver_subject: String,
    /// Push queue group.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub deliver_group: String,
    /// Delete after this long without interest, nanoseconds; 5 s for ephemerals.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub inactive_threshold: i64,
    /// Replicas; stored as sent (0 = as the stream). Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub num_replicas: i64,
    /// Force memory storage of consumer state.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub mem_storage: bool,
    /// Internal direct consumer (mirrors/sources).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub direct: bool,
    /// User metadata.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub metadata: BTreeMap<String, String>,
}

impl ConsumerConfig {
    /// A durable consumer, like a legacy `DURABLE.CREATE`.
    pub fn is_durable(&self) -> bool {
        !self.durable_name.is_empty()
    }

    /// A pull consumer (no `deliver_subject`).
    pub fn is_pull(&self) -> bool {
        self.deliver_subject.is_empty()
    }

    /// Fill the defaults nats-server fills (`setConsumerConfigDefaults`, without server
    /// or account limits, then `updateInactiveThreshold`): pull `max_waiting` 0 -> 512;
    /// `ack_wait` 0 -> 30 s for explicit/all; `max_deliver` 0 -> -1; a `backoff` sets
    /// `ack_wait` to its first value; `max_ack_pending` and `inactive_threshold` 0 -> the
    /// stream's `consumer_limits`; then `max_ack_pending` 0 -> 1000 for explicit/all;
    /// ephemerals (no durable name) with no threshold get 5 s.
    pub fn apply_server_defaults(&mut self, stream_limits: &StreamConsumerLimits) {
        let acks = matches!(self.ack_policy, AckPolicy::Explicit | AckPolicy::All);
        if self.is_pull() && self.max_waiting == 0 {
            self.max_waiting = DEFAULT_MAX_WAITING;
        }
        if self.ack_wait == 0 && acks {
            self.ack_wait = DEFAULT_ACK_WAIT_NS;
        }
        if self.max_deliver == 0 {
            self.max_deliver = -1;
        }
        if let Some(first) = self.backoff.first() {
            self.ack_wait = *first;
        }
        if self.max_ack_pending == 0 {
            self.max_ack_pending = stream_limits.max_ack_pending;
        }
        if self.inactive_threshold == 0 {
            self.inactive_threshold = stream_limits.inactive_threshold;
        }
        if acks && self.max_ack_pending == 0 {
            self.max_ack_pending = DEFAULT_MAX_ACK_PENDING;
        }
        if !self.is_durable() && self.inactive_threshold <= 0 {
            self.inactive_threshold = DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NS;
        }
    }
}

/// Consumer create request body (`CONSUMER.CREATE.*` and `CONSUMER.DURABLE.CREATE.*.*`).
/// async-nats sends all three keys; `action` is `""` for create-or-update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreateConsumerRequest {
    /// Must equal the stream name in the subject ([`JsErrorCode::StreamMismatch`]).
    #[serde(deserialize_with = "nullable")]
    pub stream_name: String,
    /// The config.
    #[serde(deserialize_with = "nullable")]
    pub config: ConsumerConfig,
    /// Create/update semantics. Always emitted.
    pub action: ConsumerAction,
}

/// Consumer and stream sequence pair (`delivered`, `ack_floor` of a consumer info).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SequenceInfo {
    /// Consumer sequence.
    pub consumer_seq: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Time of the last delivery or ack, RFC 3339; absent if none yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
}

/// A consumer info: body of consumer create and info responses, element of
/// `CONSUMER.LIST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// Stream name.
    pub stream_name: String,
    /// Consumer name.
    pub name: String,
    /// Creation time.
    pub created: String,
    /// The stored config, defaults filled in (Go `omitempty` pointer, always set by the
    /// server, and required by async-nats).
    pub config: ConsumerConfig,
    /// Last delivered: consumer sequence and stream sequence.
    pub delivered: SequenceInfo,
    /// Ack floor.
    pub ack_floor: SequenceInfo,
    /// Delivered, not yet acked.
    #[serde(default)]
    pub num_ack_pending: u64,
    /// Messages redelivered at least once.
    #[serde(default)]
    pub num_redelivered: u64,
    /// Pull requests waiting.
    #[serde(default)]
    pub num_waiting: u64,
    /// Messages left to deliver.
    #[serde(default)]
    pub num_pending: u64,
    /// Cluster info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterInfo>,
    /// A push consumer with an active subscriber.
    #[serde(default, skip_serializing_if = "is_false")]
    pub push_bound: bool,
    /// When this info was gathered. Always emitted.
    #[serde(default = "go_zero_time")]
    pub ts: String,
}

/// Consumer create and info responses: [`ConsumerInfo`] inline after `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfoResponse {
    /// [`response_type::CONSUMER_CREATE`] or [`response_type::CONSUMER_INFO`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error, instead of the info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The info.
    #[serde(flatten)]
    pub info: Option<ConsumerInfo>,
}

impl ConsumerInfoResponse {
    /// `CONSUMER.CREATE` success.
    pub fn create(info: ConsumerInfo) -> Self {
        ConsumerInfoResponse {
            kind: response_type::CONSUMER_CREATE.to_owned(),
            error: None,
            info: Some(info),
        }
    }

    /// `CONSUMER.INFO` success.
    pub fn info(info: ConsumerInfo) -> Self {
        ConsumerInfoResponse {
            kind: response_type::CONSUMER_INFO.to_owned(),
            error: None,
            info: Some(info),
        }
    }

    /// An error reply of type `kind`.
    pub fn error(kind: &str, error: ApiError) -> Self {
        ConsumerInfoResponse {
            kind: kind.to_owned(),
            error: Some(error),
            info: None,
        }
    }
}

/// `CONSUMER.CREATE` response ([`response_type::CONSUMER_CREATE`]).
pub type ConsumerCreateResponse = ConsumerInfoResponse;

/// `CONSUMER.NAMES` response; `consumers` is always an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerNamesResponse {
    /// [`response_type::CONSUMER_NAMES`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Consumers in total.
    #[serde(default)]
    pub total: u64,
    /// Offset of this page.
    #[serde(default)]
    pub offset: u64,
    /// Page size ([`NAMES_PAGE_LIMIT`]).
    #[serde(default)]
    pub limit: u64,
    /// Names on this page, sorted.
    #[serde(default, deserialize_with = "nullable")]
    pub consumers: Vec<String>,
}

impl ConsumerNamesResponse {
    /// A page.
    pub fn new(total: u64, offset: u64, consumers: Vec<String>) -> Self {
        ConsumerNamesResponse {
            kind: response_type::CONSUMER_NAMES.to_owned(),
            error: None,
            total,
            offset,
            limit: NAMES_PAGE_LIMIT,
            consumers,
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        ConsumerNamesResponse {
            kind: response_type::CONSUMER_NAMES.to_owned(),
            error: Some(error),
            total: 0,
            offset: 0,
            limit: 0,
            consumers: Vec::new(),
        }
    }
}

/// `CONSUMER.LIST` response; `consumers` is always an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerListResponse {
    /// [`response_type::CONSUMER_LIST`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Consumers in total.
    #[serde(default)]
    pub total: u64,
    /// Offset of this page.
    #[serde(default)]
    pub offset: u64,
    /// Page size ([`LIST_PAGE_LIMIT`]).
    #[serde(default)]
    pub limit: u64,
    /// Infos on this page, sorted by name.
    #[serde(default, deserialize_with = "nullable")]
    pub consumers: Vec<ConsumerInfo>,
    /// Consumers that did not answer in time (clustered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl ConsumerListResponse {
    /// A page.
    pub fn new(total: u64, offset: u64, consumers: Vec<ConsumerInfo>) -> Self {
        ConsumerListResponse {
            kind: response_type::CONSUMER_LIST.to_owned(),
            error: None,
            total,
            offset,
            limit: LIST_PAGE_LIMIT,
            consumers,
            missing: Vec::new(),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        ConsumerListResponse {
            kind: response_type::CONSUMER_LIST.to_owned(),
            error: Some(error),
            total: 0,
            offset: 0,
            limit: 0,
            consumers: Vec::new(),
            missing: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pull requests
// ---------------------------------------------------------------------------------------

/// A pull request (`CONSUMER.MSG.NEXT.<stream>.<consumer>` body, or what follows `+NXT`
/// in an ack). Decode with [`parse_next_request`], which also handles the empty and
/// bare-number forms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NextRequest {
    /// Expire the request after this long, nanoseconds; 0 never.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub expires: i64,
    /// Messages wanted. In the JSON form a missing key is 0, passed through as is.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub batch: i64,
    /// Byte budget; 0 for none.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub max_bytes: i64,
    /// Answer `404 No Messages` at once when nothing is pending (and no `expires`).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub no_wait: bool,
    /// Send `100 Idle Heartbeat` this often while waiting, nanoseconds.
    #[serde(skip_serializing_if = "is_zero_i64", deserialize_with = "nullable")]
    pub idle_heartbeat: i64,
}

/// Why a pull request body was refused; the server answers
/// [`status::bad_request`] with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NextRequestError {
    /// The body started with `{` but is not a valid request. (nats-server's text is Go's
    /// JSON error, which this does not reproduce.)
    #[error("{0}")]
    InvalidJson(String),
    /// `idle_heartbeat * 2 > expires` (also when `expires` is 0).
    #[error("heartbeat value too large")]
    HeartbeatTooLarge,
}

/// nats-server's `nextReqFromMsg`: after trimming white space, an empty body is a batch of
/// 1; a body starting with `{` is JSON ([`NextRequest`]); otherwise a decimal integer
/// (Go `strconv.Atoi`, sign allowed) is the batch size; anything else is a batch of 1.
pub fn parse_next_request(body: &[u8]) -> Result<NextRequest, NextRequestError> {
    let body = body.trim_ascii();
    let one = NextRequest {
        batch: 1,
        ..NextRequest::default()
    };
    if body.is_empty() {
        return Ok(one);
    }
    if body[0] == b'{' {
        let request: NextRequest = serde_json::from_slice(body)
            .map_err(|err| NextRequestError::InvalidJson(err.to_string()))?;
        if request.idle_heartbeat > 0 && request.idle_heartbeat.saturating_mul(2) > request.expires
        {
            return Err(NextRequestError::HeartbeatTooLarge);
        }
        return Ok(request);
    }
    match std::str::from_utf8(body)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
    {
        Some(batch) => Ok(NextRequest {
            batch,
            ..NextRequest::default()
        }),
        None => Ok(one),
    }
}

// ---------------------------------------------------------------------------------------
// Account info
// ---------------------------------------------------------------------------------------

/// Account limits (`JetStreamAccountLimits`); -1 means unlimited. `Default` is
/// [`AccountLimits::unlimited`], what nats-server reports for an account with JetStream
/// enabled and no limits configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountLimits {
    /// Memory storage, bytes.
    pub max_memory: i64,
    /// File storage, bytes.
    pub max_storage: i64,
    /// Streams.
    pub max_streams: i64,
    /// Consumers.
    pub max_consumers: i64,
    /// Per-consumer `max_ack_pending` ceiling.
    pub max_ack_pending: i64,
    /// Per-stream `max_bytes` ceiling for memory streams.
    pub memory_max_stream_bytes: i64,
    /// Per-stream `max_bytes` ceiling for file streams.
    pub storage_max_stream_bytes: i64,
    /// Streams must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl AccountLimits {
    /// All -1, `max_bytes_required: false` (`dynamicJSAccountLimits`).
    pub const fn unlimited() -> Self {
        AccountLimits {
            max_memory: -1,
            max_storage: -1,
            max_streams: -1,
            max_consumers: -1,
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            storage_max_stream_bytes: -1,
            max_bytes_required: false,
        }
    }
}

impl Default for AccountLimits {
    fn default() -> Self {
        AccountLimits::unlimited()
    }
}

/// API call counters of an account info.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStats {
    /// Requests handled.
    pub total: u64,
    /// Requests answered with an error.
    pub errors: u64,
    /// Requests in flight (`omitempty`).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub inflight: u64,
}

/// Usage of one limits tier (`JetStreamTier`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountTier {
    /// Memory used, bytes.
    pub memory: u64,
    /// File storage used, bytes.
    pub storage: u64,
    /// Memory reserved by `max_bytes`, bytes.
    pub reserved_memory: u64,
    /// File storage reserved by `max_bytes`, bytes.
    pub reserved_storage: u64,
    /// Streams.
    pub streams: u64,
    /// Consumers.
    pub consumers: u64,
    /// Limits.
    pub limits: AccountLimits,
}

/// `$JS.API.INFO` body (`JetStreamAccountStats`). async-nats requires every key except
/// `domain` and `tiers`, including `reserved_*` and all of `limits`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// Memory used, bytes.
    pub memory: u64,
    /// File storage used, bytes.
    pub storage: u64,
    /// Memory reserved by `max_bytes`, bytes.
    pub reserved_memory: u64,
    /// File storage reserved by `max_bytes`, bytes.
    pub reserved_storage: u64,
    /// Streams.
    pub streams: u64,
    /// Consumers.
    pub consumers: u64,
    /// Limits of the default tier.
    pub limits: AccountLimits,
    /// JetStream domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// API counters.
    pub api: ApiStats,
    /// Per-tier usage when tiered limits are configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tiers: BTreeMap<String, AccountTier>,
}

/// `$JS.API.INFO` response: [`AccountInfo`] inline after `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfoResponse {
    /// [`response_type::ACCOUNT_INFO`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error (e.g. [`JsErrorCode::NotEnabledForAccount`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The info.
    #[serde(flatten)]
    pub info: Option<AccountInfo>,
}

impl AccountInfoResponse {
    /// Success.
    pub fn ok(info: AccountInfo) -> Self {
        AccountInfoResponse {
            kind: response_type::ACCOUNT_INFO.to_owned(),
            error: None,
            info: Some(info),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        AccountInfoResponse {
            kind: response_type::ACCOUNT_INFO.to_owned(),
            error: Some(error),
            info: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Publish acks
// ---------------------------------------------------------------------------------------

/// A successful publish acknowledgement. No `type` key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PubAck {
    /// Stream that stored the message.
    pub stream: String,
    /// Its sequence (of the original, for a duplicate).
    pub seq: u64,
    /// JetStream domain (`omitempty`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// The message id was seen within the duplicate window (`omitempty`).
    #[serde(skip_serializing_if = "is_false")]
    pub duplicate: bool,
}

impl PubAck {
    /// The exact bytes nats-server sends, from its pre-built template:
    /// `{"stream":"S", "seq":5}`, `{"stream":"S", "domain":"D", "seq":5}`, and for a
    /// duplicate `{"stream":"S", "seq":5,"duplicate": true}`.
    pub fn to_nats_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.stream.len() + self.domain.len());
        out.extend_from_slice(b"{\"stream\":");
        push_json_string(&mut out, &self.stream);
        if !self.domain.is_empty() {
            out.extend_from_slice(b", \"domain\":");
            push_json_string(&mut out, &self.domain);
        }
        out.extend_from_slice(b", \"seq\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        if self.duplicate {
            out.extend_from_slice(b",\"duplicate\": true}");
        } else {
            out.push(b'}');
        }
        out
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    match serde_json::to_vec(text) {
        Ok(quoted) => out.extend_from_slice(&quoted),
        // Serializing a &str cannot fail; keep a valid (empty) string regardless.
        Err(_) => out.extend_from_slice(b"\"\""),
    }
}

/// A publish reply as nats-server marshals it (`JSPubAckResponse`): on failure
/// `{"error":{...},"stream":"S","seq":0}`; on success the [`PubAck`] alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubAckResponse {
    /// Why the message was not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The ack (on errors only `stream` is set).
    #[serde(flatten)]
    pub ack: PubAck,
}

impl PubAckResponse {
    /// Success.
    pub fn ok(ack: PubAck) -> Self {
        PubAckResponse { error: None, ack }
    }

    /// A failed publish to `stream`.
    pub fn error(stream: impl Into<String>, error: ApiError) -> Self {
        PubAckResponse {
            error: Some(error),
            ack: PubAck {
                stream: stream.into(),
                ..PubAck::default()
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The `error` object of API responses (`ApiError`): `code` is HTTP-like (400, 404, 500,
/// 503), `err_code` the JetStream code (`omitempty`), `description` the text
/// (`omitempty`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// JetStream error code (10xxx).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub err_code: u16,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}

impl fmt::Display for ApiError {
    /// As Go's `ApiError.Error()`: `description (err_code)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description, self.err_code)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Is this the given JetStream error (`IsNatsErr`)?
    pub fn is(&self, code: JsErrorCode) -> bool {
        self.err_code == code.err_code()
    }

    /// [`JsErrorCode::StreamWrongLastSequence`]: `wrong last sequence: {seq}`, where `seq`
    /// is the stream's (or subject's) actual last sequence.
    pub fn wrong_last_sequence(actual: u64) -> Self {
        JsErrorCode::StreamWrongLastSequence.error_with(&[("{seq}", &actual)])
    }

    /// [`JsErrorCode::StreamWrongLastMsgId`]: `wrong last msg ID: {id}`, where `id` is the
    /// stream's actual last message id (possibly empty).
    pub fn wrong_last_msg_id(actual: &str) -> Self {
        JsErrorCode::StreamWrongLastMsgId.error_with(&[("{id}", &actual)])
    }

    /// [`JsErrorCode::SequenceNotFound`]: `sequence {seq} not found`.
    pub fn sequence_not_found(seq: u64) -> Self {
        JsErrorCode::SequenceNotFound.error_with(&[("{seq}", &seq)])
    }
}

impl From<JsErrorCode> for ApiError {
    fn from(code: JsErrorCode) -> Self {
        code.error()
    }
}

macro_rules! js_error_codes {
    ($( $(#[$doc:meta])* $name:ident = ($code:expr, $err_code:expr, $desc:expr); )*) => {
        /// Every JetStream API error nats-server 2.10 defines (`server/errors.json`,
        /// `server/jetstream_errors_generated.go`), with its HTTP-like `code`, its
        /// `err_code` and its description template. Placeholders such as `{err}`,
        /// `{seq}`, `{id}`, `{max}`, `{limit}`, `{subject}`, `{prefix}` and `{msg}` are
        /// filled by [`JsErrorCode::error_with`] / [`JsErrorCode::with_err`]. Variant names
        /// are the Go constant without `JS` and the `Err`/`ErrF`/`F` suffix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum JsErrorCode {
            $( $(#[$doc])* $name, )*
        }

        impl JsErrorCode {
            /// All codes, ascending by `err_code`.
            pub const ALL: &'static [JsErrorCode] = &[$(JsErrorCode::$name),*];

            /// The HTTP-like status (`code`).
            pub const fn code(self) -> u16 {
                match self { $(JsErrorCode::$name => $code,)* }
            }

            /// The JetStream error code (`err_code`).
            pub const fn err_code(self) -> u16 {
                match self { $(JsErrorCode::$name => $err_code,)* }
            }

            /// The description template, verbatim from nats-server.
            pub const fn description(self) -> &'static str {
                match self { $(JsErrorCode::$name => $desc,)* }
            }
        }
    };
}

js_error_codes! {
    /// 400 / 10002: `resource limits exceeded for account` (`JSAccountResourcesExceededErr`).
    AccountResourcesExceeded = (400, 10002, "resource limits exceeded for account");
    /// 400 / 10003: `bad request` (`JSBadRequestErr`).
    BadRequest = (400, 10003, "bad request");
    /// 503 / 10004: `incomplete results` (`JSClusterIncompleteErr`).
    ClusterIncomplete = (503, 10004, "incomplete results");
    /// 400 / 10005: `{err}` (`JSClusterNoPeersErrF`).
    ClusterNoPeers = (400, 10005, "{err}");
    /// 500 / 10006: `JetStream not in clustered mode` (`JSClusterNotActiveErr`).
    ClusterNotActive = (500, 10006, "JetStream not in clustered mode");
    /// 500 / 10007: `JetStream cluster not assigned to this server` (`JSClusterNotAssignedErr`).
    ClusterNotAssigned = (500, 10007, "JetStream cluster not assigned to this server");
    /// 503 / 10008: `JetStream system temporarily unavailable` (`JSClusterNotAvailErr`).
    ClusterNotAvail = (503, 10008, "JetStream system temporarily unavailable");
    /// 500 / 10009: `JetStream cluster can not handle request` (`JSClusterNotLeaderErr`).
    ClusterNotLeader = (500, 10009, "JetStream cluster can not handle request");
    /// 503 / 10010: `JetStream clustering support required` (`JSClusterRequiredErr`).
    ClusterRequired = (503, 10010, "JetStream clustering support required");
    /// 400 / 10011: `tags placement not supported for operation` (`JSClusterTagsErr`).
    ClusterTags = (400, 10011, "tags placement not supported for operation");
    /// 500 / 10012: `{err}` (`JSConsumerCreateErrF`).
    ConsumerCreate = (500, 10012, "{err}");
    /// 400 / 10013: `consumer name already in use` (`JSConsumerNameExistErr`).
    ConsumerNameExist = (400, 10013, "consumer name already in use");
    /// 404 / 10014: `consumer not found` (`JSConsumerNotFoundErr`).
    ConsumerNotFound = (404, 10014, "consumer not found");
    /// 400 / 10015: `deliver subject not valid` (`JSSnapshotDeliverSubjectInvalidErr`).
    SnapshotDeliverSubjectInvalid = (400, 10015, "deliver subject not valid");
    /// 400 / 10016: `consumer expected to be durable but no durable name set in subject` (`JSConsumerDurableNameNotInSubjectErr`).
    ConsumerDurableNameNotInSubject = (400, 10016, "consumer expected to be durable but no durable name set in subject");
    /// 400 / 10017: `consumer name in subject does not match durable name in request` (`JSConsumerDurableNameNotMatchSubjectErr`).
    ConsumerDurableNameNotMatchSubject = (400, 10017, "consumer name in subject does not match durable name in request");
    /// 400 / 10018: `consumer expected to be durable but a durable name was not set` (`JSConsumerDurableNameNotSetErr`).
    ConsumerDurableNameNotSet = (400, 10018, "consumer expected to be durable but a durable name was not set");
    /// 400 / 10019: `consumer expected to be ephemeral but detected a durable name set in subject` (`JSConsumerEphemeralWithDurableInSubjectErr`).
    ConsumerEphemeralWithDurableInSubject = (400, 10019, "consumer expected to be ephemeral but detected a durable name set in subject");
    /// 400 / 10020: `consumer expected to be ephemeral but a durable name was set in request` (`JSConsumerEphemeralWithDurableNameErr`).
    ConsumerEphemeralWithDurableName = (400, 10020, "consumer expected to be ephemeral but a durable name was set in request");
    /// 400 / 10021: `stream external api prefix {prefix} must not overlap with {subject}` (`JSStreamExternalApiOverlapErrF`).
    StreamExternalApiOverlap = (400, 10021, "stream external api prefix {prefix} must not overlap with {subject}");
    /// 400 / 10022: `stream external delivery prefix {prefix} overlaps with stream subject {subject}` (`JSStreamExternalDelPrefixOverlapsErrF`).
    StreamExternalDelPrefixOverlaps = (400, 10022, "stream external delivery prefix {prefix} overlaps with stream subject {subject}");
    /// 503 / 10023: `insufficient resources` (`JSInsufficientResourcesErr`).
    InsufficientResources = (503, 10023, "insufficient resources");
    /// 400 / 10024: `stream external delivery prefix {prefix} must not contain wildcards` (`JSStreamInvalidExternalDeliverySubjErrF`).
    StreamInvalidExternalDeliverySubj = (400, 10024, "stream external delivery prefix {prefix} must not contain wildcards");
    /// 400 / 10025: `invalid JSON` (`JSInvalidJSONErr`).
    InvalidJson = (400, 10025, "invalid JSON");
    /// 400 / 10026: `maximum consumers limit reached` (`JSMaximumConsumersLimitErr`).
    MaximumConsumersLimit = (400, 10026, "maximum consumers limit reached");
    /// 400 / 10027: `maximum number of streams reached` (`JSMaximumStreamsLimitErr`).
    MaximumStreamsLimit = (400, 10027, "maximum number of streams reached");
    /// 500 / 10028: `insufficient memory resources available` (`JSMemoryResourcesExceededErr`).
    MemoryResourcesExceeded = (500, 10028, "insufficient memory resources available");
    /// 500 / 10029: `{err}` (`JSMirrorConsumerSetupFailedErrF`).
    MirrorConsumerSetupFailed = (500, 10029, "{err}");
    /// 400 / 10030: `stream mirror must have max message size >= source` (`JSMirrorMaxMessageSizeTooBigErr`).
    MirrorMaxMessageSizeTooBig = (400, 10030, "stream mirror must have max message size >= source");
    /// 400 / 10031: `stream mirrors can not also contain other sources` (`JSMirrorWithSourcesErr`).
    MirrorWithSources = (400, 10031, "stream mirrors can not also contain other sources");
    /// 400 / 10032: `stream mirrors can not have both start seq and start time configured` (`JSMirrorWithStartSeqAndTimeErr`).
    MirrorWithStartSeqAndTime = (400, 10032, "stream mirrors can not have both start seq and start time configured");
    /// 400 / 10033: `stream mirrors can not contain filtered subjects` (`JSMirrorWithSubjectFiltersErr`).
    MirrorWithSubjectFilters = (400, 10033, "stream mirrors can not contain filtered subjects");
    /// 400 / 10034: `stream mirrors can not contain subjects` (`JSMirrorWithSubjectsErr`).
    MirrorWithSubjects = (400, 10034, "stream mirrors can not contain subjects");
    /// 503 / 10035: `account not found` (`JSNoAccountErr`).
    NoAccount = (503, 10035, "account not found");
    /// 503 / 10036: `not currently supported in clustered mode` (`JSClusterUnSupportFeatureErr`).
    ClusterUnSupportFeature = (503, 10036, "not currently supported in clustered mode");
    /// 404 / 10037: `no message found` (`JSNoMessageFoundErr`).
    NoMessageFound = (404, 10037, "no message found");
    /// 400 / 10038: `expected an empty request payload` (`JSNotEmptyRequestErr`).
    NotEmptyRequest = (400, 10038, "expected an empty request payload");
    /// 503 / 10039: `JetStream not enabled for account` (`JSNotEnabledForAccountErr`).
    NotEnabledForAccount = (503, 10039, "JetStream not enabled for account");
    /// 400 / 10040: `peer not a member` (`JSClusterPeerNotMemberErr`).
    ClusterPeerNotMember = (400, 10040, "peer not a member");
    /// 500 / 10041: `{err}` (`JSRaftGeneralErrF`).
    RaftGeneral = (500, 10041, "{err}");
    /// 500 / 10042: `JetStream unable to subscribe to restore snapshot {subject}: {err}` (`JSRestoreSubscribeFailedErrF`).
    RestoreSubscribeFailed = (500, 10042, "JetStream unable to subscribe to restore snapshot {subject}: {err}");
    /// 400 / 10043: `sequence {seq} not found` (`JSSequenceNotFoundErrF`).
    SequenceNotFound = (400, 10043, "sequence {seq} not found");
    /// 400 / 10044: `server is not a member of the cluster` (`JSClusterServerNotMemberErr`).
    ClusterServerNotMember = (400, 10044, "server is not a member of the cluster");
    /// 500 / 10045: `{err}` (`JSSourceConsumerSetupFailedErrF`).
    SourceConsumerSetupFailed = (500, 10045, "{err}");
    /// 400 / 10046: `stream source must have max message size >= target` (`JSSourceMaxMessageSizeTooBigErr`).
    SourceMaxMessageSizeTooBig = (400, 10046, "stream source must have max message size >= target");
    /// 500 / 10047: `insufficient storage resources available` (`JSStorageResourcesExceededErr`).
    StorageResourcesExceeded = (500, 10047, "insufficient storage resources available");
    /// 500 / 10048: `{err}` (`JSStreamAssignmentErrF`).
    StreamAssignment = (500, 10048, "{err}");
    /// 500 / 10049: `{err}` (`JSStreamCreateErrF`).
    StreamCreate = (500, 10049, "{err}");
    /// 500 / 10050: `{err}` (`JSStreamDeleteErrF`).
    StreamDelete = (500, 10050, "{err}");
    /// 500 / 10051: `{err}` (`JSStreamGeneralErrorF`).
    StreamGeneral = (500, 10051, "{err}");
    /// 500 / 10052: `{err}` (`JSStreamInvalidConfigF`).
    StreamInvalidConfig = (500, 10052, "{err}");
    /// 500 / 10053: `{err}` (`JSStreamLimitsErrF`).
    StreamLimits = (500, 10053, "{err}");
    /// 400 / 10054: `message size exceeds maximum allowed` (`JSStreamMessageExceedsMaximumErr`).
    StreamMessageExceedsMaximum = (400, 10054, "message size exceeds maximum allowed");
    /// 400 / 10055: `stream mirror configuration can not be updated` (`JSStreamMirrorNotUpdatableErr`).
    StreamMirrorNotUpdatable = (400, 10055, "stream mirror configuration can not be updated");
    /// 400 / 10056: `stream name in subject does not match request` (`JSStreamMismatchErr`).
    StreamMismatch = (400, 10056, "stream name in subject does not match request");
    /// 500 / 10057: `{err}` (`JSStreamMsgDeleteFailedF`).
    StreamMsgDeleteFailed = (500, 10057, "{err}");
    /// 400 / 10058: `stream name already in use with a different configuration` (`JSStreamNameExistErr`).
    StreamNameExist = (400, 10058, "stream name already in use with a different configuration");
    /// 404 / 10059: `stream not found` (`JSStreamNotFoundErr`).
    StreamNotFound = (404, 10059, "stream not found");
    /// 400 / 10060: `expected stream does not match` (`JSStreamNotMatchErr`).
    StreamNotMatch = (400, 10060, "expected stream does not match");
    /// 400 / 10061: `Replicas configuration can not be updated` (`JSStreamReplicasNotUpdatableErr`).
    StreamReplicasNotUpdatable = (400, 10061, "Replicas configuration can not be updated");
    /// 500 / 10062: `restore failed: {err}` (`JSStreamRestoreErrF`).
    StreamRestore = (500, 10062, "restore failed: {err}");
    /// 503 / 10063: `expected stream sequence does not match` (`JSStreamSequenceNotMatchErr`).
    StreamSequenceNotMatch = (503, 10063, "expected stream sequence does not match");
    /// 500 / 10064: `snapshot failed: {err}` (`JSStreamSnapshotErrF`).
    StreamSnapshot = (500, 10064, "snapshot failed: {err}");
    /// 400 / 10065: `subjects overlap with an existing stream` (`JSStreamSubjectOverlapErr`).
    StreamSubjectOverlap = (400, 10065, "subjects overlap with an existing stream");
    /// 500 / 10066: `{err}` (`JSStreamTemplateCreateErrF`).
    StreamTemplateCreate = (500, 10066, "{err}");
    /// 500 / 10067: `{err}` (`JSStreamTemplateDeleteErrF`).
    StreamTemplateDelete = (500, 10067, "{err}");
    /// 404 / 10068: `template not found` (`JSStreamTemplateNotFoundErr`).
    StreamTemplateNotFound = (404, 10068, "template not found");
    /// 500 / 10069: `{err}` (`JSStreamUpdateErrF`).
    StreamUpdate = (500, 10069, "{err}");
    /// 400 / 10070: `wrong last msg ID: {id}` (`JSStreamWrongLastMsgIDErrF`).
    StreamWrongLastMsgId = (400, 10070, "wrong last msg ID: {id}");
    /// 400 / 10071: `wrong last sequence: {seq}` (`JSStreamWrongLastSequenceErrF`).
    StreamWrongLastSequence = (400, 10071, "wrong last sequence: {seq}");
    /// 500 / 10072: `JetStream unable to open temp storage for restore` (`JSTempStorageFailedErr`).
    TempStorageFailed = (500, 10072, "JetStream unable to open temp storage for restore");
    /// 400 / 10073: `template name in subject does not match request` (`JSTemplateNameNotMatchSubjectErr`).
    TemplateNameNotMatchSubject = (400, 10073, "template name in subject does not match request");
    /// 500 / 10074: `replicas > 1 not supported in non-clustered mode` (`JSStreamReplicasNotSupportedErr`).
    StreamReplicasNotSupported = (500, 10074, "replicas > 1 not supported in non-clustered mode");
    /// 503 / 10075: `peer remap failed` (`JSPeerRemapErr`).
    PeerRemap = (503, 10075, "peer remap failed");
    /// 503 / 10076: `JetStream not enabled` (`JSNotEnabledErr`).
    NotEnabled = (503, 10076, "JetStream not enabled");
    /// 503 / 10077: `{err}` (`JSStreamStoreFailedF`).
    StreamStoreFailed = (503, 10077, "{err}");
    /// 400 / 10078: `consumer config required` (`JSConsumerConfigRequiredErr`).
    ConsumerConfigRequired = (400, 10078, "consumer config required");
    /// 400 / 10079: `consumer deliver subject has wildcards` (`JSConsumerDeliverToWildcardsErr`).
    ConsumerDeliverToWildcards = (400, 10079, "consumer deliver subject has wildcards");
    /// 400 / 10080: `consumer in push mode can not set max waiting` (`JSConsumerPushMaxWaitingErr`).
    ConsumerPushMaxWaiting = (400, 10080, "consumer in push mode can not set max waiting");
    /// 400 / 10081: `consumer deliver subject forms a cycle` (`JSConsumerDeliverCycleErr`).
    ConsumerDeliverCycle = (400, 10081, "consumer deliver subject forms a cycle");
    /// 400 / 10082: `consumer requires ack policy for max ack pending` (`JSConsumerMaxPendingAckPolicyRequiredErr`).
    ConsumerMaxPendingAckPolicyRequired = (400, 10082, "consumer requires ack policy for max ack pending");
    /// 400 / 10083: `consumer idle heartbeat needs to be >= 100ms` (`JSConsumerSmallHeartbeatErr`).
    ConsumerSmallHeartbeat = (400, 10083, "consumer idle heartbeat needs to be >= 100ms");
    /// 400 / 10084: `consumer in pull mode requires ack policy` (`JSConsumerPullRequiresAckErr`).
    ConsumerPullRequiresAck = (400, 10084, "consumer in pull mode requires ack policy");
    /// 400 / 10085: `consumer in pull mode requires a durable name` (`JSConsumerPullNotDurableErr`).
    ConsumerPullNotDurable = (400, 10085, "consumer in pull mode requires a durable name");
    /// 400 / 10086: `consumer in pull mode can not have rate limit set` (`JSConsumerPullWithRateLimitErr`).
    ConsumerPullWithRateLimit = (400, 10086, "consumer in pull mode can not have rate limit set");
    /// 400 / 10087: `consumer max waiting needs to be positive` (`JSConsumerMaxWaitingNegativeErr`).
    ConsumerMaxWaitingNegative = (400, 10087, "consumer max waiting needs to be positive");
    /// 400 / 10088: `consumer idle heartbeat requires a push based consumer` (`JSConsumerHBRequiresPushErr`).
    ConsumerHBRequiresPush = (400, 10088, "consumer idle heartbeat requires a push based consumer");
    /// 400 / 10089: `consumer flow control requires a push based consumer` (`JSConsumerFCRequiresPushErr`).
    ConsumerFCRequiresPush = (400, 10089, "consumer flow control requires a push based consumer");
    /// 400 / 10090: `consumer direct requires a push based consumer` (`JSConsumerDirectRequiresPushErr`).
    ConsumerDirectRequiresPush = (400, 10090, "consumer direct requires a push based consumer");
    /// 400 / 10091: `consumer direct requires an ephemeral consumer` (`JSConsumerDirectRequiresEphemeralErr`).
    ConsumerDirectRequiresEphemeral = (400, 10091, "consumer direct requires an ephemeral consumer");
    /// 400 / 10092: `consumer direct on a mapped consumer` (`JSConsumerOnMappedErr`).
    ConsumerOnMapped = (400, 10092, "consumer direct on a mapped consumer");
    /// 400 / 10093: `consumer filter subject is not a valid subset of the interest subjects` (`JSConsumerFilterNotSubsetErr`).
    ConsumerFilterNotSubset = (400, 10093, "consumer filter subject is not a valid subset of the interest subjects");
    /// 400 / 10094: `{err}` (`JSConsumerInvalidPolicyErrF`).
    ConsumerInvalidPolicy = (400, 10094, "{err}");
    /// 400 / 10095: `failed to parse consumer sampling configuration: {err}` (`JSConsumerInvalidSamplingErrF`).
    ConsumerInvalidSampling = (400, 10095, "failed to parse consumer sampling configuration: {err}");
    /// 500 / 10096: `stream not valid` (`JSStreamInvalidErr`).
    StreamInvalid = (500, 10096, "stream not valid");
    /// 400 / 10097: `header size exceeds maximum allowed of 64k` (`JSStreamHeaderExceedsMaximumErr`).
    StreamHeaderExceedsMaximum = (400, 10097, "header size exceeds maximum allowed of 64k");
    /// 400 / 10098: `workqueue stream requires explicit ack` (`JSConsumerWQRequiresExplicitAckErr`).
    ConsumerWQRequiresExplicitAck = (400, 10098, "workqueue stream requires explicit ack");
    /// 400 / 10099: `multiple non-filtered consumers not allowed on workqueue stream` (`JSConsumerWQMultipleUnfilteredErr`).
    ConsumerWQMultipleUnfiltered = (400, 10099, "multiple non-filtered consumers not allowed on workqueue stream");
    /// 400 / 10100: `filtered consumer not unique on workqueue stream` (`JSConsumerWQConsumerNotUniqueErr`).
    ConsumerWQConsumerNotUnique = (400, 10100, "filtered consumer not unique on workqueue stream");
    /// 400 / 10101: `consumer must be deliver all on workqueue stream` (`JSConsumerWQConsumerNotDeliverAllErr`).
    ConsumerWQConsumerNotDeliverAll = (400, 10101, "consumer must be deliver all on workqueue stream");
    /// 400 / 10102: `consumer name is too long, maximum allowed is {max}` (`JSConsumerNameTooLongErrF`).
    ConsumerNameTooLong = (400, 10102, "consumer name is too long, maximum allowed is {max}");
    /// 400 / 10103: `durable name can not contain '.', '*', '>'` (`JSConsumerBadDurableNameErr`).
    ConsumerBadDurableName = (400, 10103, "durable name can not contain '.', '*', '>'");
    /// 500 / 10104: `error creating store for consumer: {err}` (`JSConsumerStoreFailedErrF`).
    ConsumerStoreFailed = (500, 10104, "error creating store for consumer: {err}");
    /// 400 / 10105: `consumer already exists and is still active` (`JSConsumerExistingActiveErr`).
    ConsumerExistingActive = (400, 10105, "consumer already exists and is still active");
    /// 400 / 10106: `consumer replacement durable config not the same` (`JSConsumerReplacementWithDifferentNameErr`).
    ConsumerReplacementWithDifferentName = (400, 10106, "consumer replacement durable config not the same");
    /// 400 / 10107: `consumer description is too long, maximum allowed is {max}` (`JSConsumerDescriptionTooLongErrF`).
    ConsumerDescriptionTooLong = (400, 10107, "consumer description is too long, maximum allowed is {max}");
    /// 400 / 10108: `consumer with flow control also needs heartbeats` (`JSConsumerWithFlowControlNeedsHeartbeats`).
    ConsumerWithFlowControlNeedsHeartbeats = (400, 10108, "consumer with flow control also needs heartbeats");
    /// 400 / 10109: `invalid operation on sealed stream` (`JSStreamSealedErr`).
    StreamSealed = (400, 10109, "invalid operation on sealed stream");
    /// 500 / 10110: `{err}` (`JSStreamPurgeFailedF`).
    StreamPurgeFailed = (500, 10110, "{err}");
    /// 500 / 10111: `{err}` (`JSStreamRollupFailedF`).
    StreamRollupFailed = (500, 10111, "{err}");
    /// 400 / 10112: `invalid push consumer deliver subject` (`JSConsumerInvalidDeliverSubject`).
    ConsumerInvalidDeliverSubject = (400, 10112, "invalid push consumer deliver subject");
    /// 400 / 10113: `account requires a stream config to have max bytes set` (`JSStreamMaxBytesRequired`).
    StreamMaxBytesRequired = (400, 10113, "account requires a stream config to have max bytes set");
    /// 400 / 10114: `consumer max request batch needs to be > 0` (`JSConsumerMaxRequestBatchNegativeErr`).
    ConsumerMaxRequestBatchNegative = (400, 10114, "consumer max request batch needs to be > 0");
    /// 400 / 10115: `consumer max request expires needs to be >= 1ms` (`JSConsumerMaxRequestExpiresToSmall`).
    ConsumerMaxRequestExpiresToSmall = (400, 10115, "consumer max request expires needs to be >= 1ms");
    /// 400 / 10116: `max deliver is required to be > length of backoff values` (`JSConsumerMaxDeliverBackoffErr`).
    ConsumerMaxDeliverBackoff = (400, 10116, "max deliver is required to be > length of backoff values");
    /// 500 / 10117: `subject details would exceed maximum allowed` (`JSStreamInfoMaxSubjectsErr`).
    StreamInfoMaxSubjects = (500, 10117, "subject details would exceed maximum allowed");
    /// 500 / 10118: `stream is offline` (`JSStreamOfflineErr`).
    StreamOffline = (500, 10118, "stream is offline");
    /// 500 / 10119: `consumer is offline` (`JSConsumerOfflineErr`).
    ConsumerOffline = (500, 10119, "consumer is offline");
    /// 400 / 10120: `no JetStream default or applicable tiered limit present` (`JSNoLimitsErr`).
    NoLimits = (400, 10120, "no JetStream default or applicable tiered limit present");
    /// 400 / 10121: `consumer max ack pending exceeds system limit of {limit}` (`JSConsumerMaxPendingAckExcessErrF`).
    ConsumerMaxPendingAckExcess = (400, 10121, "consumer max ack pending exceeds system limit of {limit}");
    /// 400 / 10122: `stream max bytes exceeds account limit max stream bytes` (`JSStreamMaxStreamBytesExceeded`).
    StreamMaxStreamBytesExceeded = (400, 10122, "stream max bytes exceeds account limit max stream bytes");
    /// 400 / 10123: `can not move and scale a stream in a single update` (`JSStreamMoveAndScaleErr`).
    StreamMoveAndScale = (400, 10123, "can not move and scale a stream in a single update");
    /// 400 / 10124: `stream move already in progress: {msg}` (`JSStreamMoveInProgressF`).
    StreamMoveInProgress = (400, 10124, "stream move already in progress: {msg}");
    /// 400 / 10125: `consumer max request batch exceeds server limit of {limit}` (`JSConsumerMaxRequestBatchExceededF`).
    ConsumerMaxRequestBatchExceeded = (400, 10125, "consumer max request batch exceeds server limit of {limit}");
    /// 400 / 10126: `consumer config replica count exceeds parent stream` (`JSConsumerReplicasExceedsStream`).
    ConsumerReplicasExceedsStream = (400, 10126, "consumer config replica count exceeds parent stream");
    /// 400 / 10127: `Consumer name can not contain path separators` (`JSConsumerNameContainsPathSeparatorsErr`).
    ConsumerNameContainsPathSeparators = (400, 10127, "Consumer name can not contain path separators");
    /// 400 / 10128: `Stream name can not contain path separators` (`JSStreamNameContainsPathSeparatorsErr`).
    StreamNameContainsPathSeparators = (400, 10128, "Stream name can not contain path separators");
    /// 400 / 10129: `stream move not in progress` (`JSStreamMoveNotInProgress`).
    StreamMoveNotInProgress = (400, 10129, "stream move not in progress");
    /// 400 / 10130: `stream name already in use, cannot restore` (`JSStreamNameExistRestoreFailedErr`).
    StreamNameExistRestoreFailed = (400, 10130, "stream name already in use, cannot restore");
    /// 400 / 10131: `Consumer create request did not match filtered subject from create subject` (`JSConsumerCreateFilterSubjectMismatchErr`).
    ConsumerCreateFilterSubjectMismatch = (400, 10131, "Consumer create request did not match filtered subject from create subject");
    /// 400 / 10132: `Consumer Durable and Name have to be equal if both are provided` (`JSConsumerCreateDurableAndNameMismatch`).
    ConsumerCreateDurableAndNameMismatch = (400, 10132, "Consumer Durable and Name have to be equal if both are provided");
    /// 400 / 10133: `replicas count cannot be negative` (`JSReplicasCountCannotBeNegative`).
    ReplicasCountCannotBeNegative = (400, 10133, "replicas count cannot be negative");
    /// 400 / 10134: `consumer config replicas must match interest retention stream's replicas` (`JSConsumerReplicasShouldMatchStream`).
    ConsumerReplicasShouldMatchStream = (400, 10134, "consumer config replicas must match interest retention stream's replicas");
    /// 400 / 10135: `consumer metadata exceeds maximum size of {limit}` (`JSConsumerMetadataLengthErrF`).
    ConsumerMetadataLength = (400, 10135, "consumer metadata exceeds maximum size of {limit}");
    /// 400 / 10136: `consumer cannot have both FilterSubject and FilterSubjects specified` (`JSConsumerDuplicateFilterSubjects`).
    ConsumerDuplicateFilterSubjects = (400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified");
    /// 400 / 10137: `consumer with multiple subject filters cannot use subject based API` (`JSConsumerMultipleFiltersNotAllowed`).
    ConsumerMultipleFiltersNotAllowed = (400, 10137, "consumer with multiple subject filters cannot use subject based API");
    /// 400 / 10138: `consumer subject filters cannot overlap` (`JSConsumerOverlappingSubjectFilters`).
    ConsumerOverlappingSubjectFilters = (400, 10138, "consumer subject filters cannot overlap");
    /// 400 / 10139: `consumer filter in FilterSubjects cannot be empty` (`JSConsumerEmptyFilter`).
    ConsumerEmptyFilter = (400, 10139, "consumer filter in FilterSubjects cannot be empty");
    /// 400 / 10140: `duplicate source configuration detected` (`JSSourceDuplicateDetected`).
    SourceDuplicateDetected = (400, 10140, "duplicate source configuration detected");
    /// 400 / 10141: `sourced stream name is invalid` (`JSSourceInvalidStreamName`).
    SourceInvalidStreamName = (400, 10141, "sourced stream name is invalid");
    /// 400 / 10142: `mirrored stream name is invalid` (`JSMirrorInvalidStreamName`).
    MirrorInvalidStreamName = (400, 10142, "mirrored stream name is invalid");
    /// 400 / 10143: `stream mirrors can not have first sequence configured` (`JSMirrorWithFirstSeqErr`).
    MirrorWithFirstSeq = (400, 10143, "stream mirrors can not have first sequence configured");
    /// 400 / 10144: `source with multiple subject transforms cannot also have a single subject filter` (`JSSourceMultipleFiltersNotAllowed`).
    SourceMultipleFiltersNotAllowed = (400, 10144, "source with multiple subject transforms cannot also have a single subject filter");
    /// 400 / 10145: `source subject filter is invalid` (`JSSourceInvalidSubjectFilter`).
    SourceInvalidSubjectFilter = (400, 10145, "source subject filter is invalid");
    /// 400 / 10146: `source transform destination is invalid` (`JSSourceInvalidTransformDestination`).
    SourceInvalidTransformDestination = (400, 10146, "source transform destination is invalid");
    /// 400 / 10147: `source filters can not overlap` (`JSSourceOverlappingSubjectFilters`).
    SourceOverlappingSubjectFilters = (400, 10147, "source filters can not overlap");
    /// 400 / 10148: `consumer already exists` (`JSConsumerAlreadyExists`).
    ConsumerAlreadyExists = (400, 10148, "consumer already exists");
    /// 400 / 10149: `consumer does not exist` (`JSConsumerDoesNotExist`).
    ConsumerDoesNotExist = (400, 10149, "consumer does not exist");
    /// 400 / 10150: `mirror with multiple subject transforms cannot also have a single subject filter` (`JSMirrorMultipleFiltersNotAllowed`).
    MirrorMultipleFiltersNotAllowed = (400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter");
    /// 400 / 10151: `mirror subject filter is invalid` (`JSMirrorInvalidSubjectFilter`).
    MirrorInvalidSubjectFilter = (400, 10151, "mirror subject filter is invalid");
    /// 400 / 10152: `mirror subject filters can not overlap` (`JSMirrorOverlappingSubjectFilters`).
    MirrorOverlappingSubjectFilters = (400, 10152, "mirror subject filters can not overlap");
    /// 400 / 10153: `consumer inactive threshold exceeds system limit of {limit}` (`JSConsumerInactiveThresholdExcess`).
    ConsumerInactiveThresholdExcess = (400, 10153, "consumer inactive threshold exceeds system limit of {limit}");
}

impl JsErrorCode {
    /// The code with this `err_code`.
    pub fn from_err_code(err_code: u16) -> Option<JsErrorCode> {
        JsErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.err_code() == err_code)
    }

    /// The error with the description template as is (what nats-server sends for codes
    /// without placeholders).
    pub fn error(self) -> ApiError {
        ApiError {
            code: self.code(),
            err_code: self.err_code(),
            description: self.description().to_owned(),
        }
    }

    /// The error with placeholders replaced, like Go's `strings.NewReplacer` over
    /// `(key, value)` pairs: one left-to-right pass, replaced text is not rescanned, and
    /// unknown placeholders stay as they are. Keys include the braces: `("{seq}", &5)`.
    pub fn error_with(self, args: &[(&str, &dyn fmt::Display)]) -> ApiError {
        ApiError {
            code: self.code(),
            err_code: self.err_code(),
            description: render_template(self.description(), args),
        }
    }

    /// The error with `{err}` replaced by `err` (the `...ErrF` constructors).
    pub fn with_err(self, err: impl fmt::Display) -> ApiError {
        self.error_with(&[("{err}", &err)])
    }
}

fn render_template(template: &str, args: &[(&str, &dyn fmt::Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (key, value) in args {
            if !key.is_empty() && rest.starts_with(key) {
                out.push_str(&value.to_string());
                rest = &rest[key.len()..];
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

// ---------------------------------------------------------------------------------------
// Ack reply subjects and ack payloads
// ---------------------------------------------------------------------------------------

/// The parsed reply subject of a delivered JetStream message.
///
/// nats-server 2.10 builds the 9-token v1 form
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts ns>.<pending>`.
/// [`parse_ack_reply`] also accepts the v2 form of ADR-15,
/// `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
/// seq>.<ts ns>.<pending>[.<token>]` (11 or 12 tokens; further tokens are ignored, as
/// async-nats does; a domain of `_` means none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckReply<'a> {
    /// Domain (v2 only; `_` parses as `None`).
    pub domain: Option<&'a str>,
    /// Account hash (v2 only).
    pub account_hash: Option<&'a str>,
    /// Stream name.
    pub stream: &'a str,
    /// Consumer name.
    pub consumer: &'a str,
    /// Delivery count of this message (1 on first delivery).
    pub delivered: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Consumer (delivery) sequence.
    pub consumer_seq: u64,
    /// Message timestamp, Unix nanoseconds.
    pub timestamp_ns: i64,
    /// Messages still pending for the consumer after this one.
    pub pending: u64,
    /// Trailing random token (v2 only).
    pub token: Option<&'a str>,
}

impl AckReply<'_> {
    /// The subject: v1 unless an account hash is set, then v2 (domain `_` when none).
    pub fn to_subject(&self) -> String {
        match self.account_hash {
            None => ack_reply_subject(
                self.stream,
                self.consumer,
                self.delivered,
                self.stream_seq,
                self.consumer_seq,
                self.timestamp_ns,
                self.pending,
            ),
            Some(hash) => {
                let mut subject = format!(
                    "{}{}.{}.{}.{}.{}.{}.{}.{}.{}",
                    subjects::ACK_PREFIX,
                    self.domain.unwrap_or("_"),
                    hash,
                    self.stream,
                    self.consumer,
                    self.delivered,
                    self.stream_seq,
                    self.consumer_seq,
                    self.timestamp_ns,
                    self.pending,
                );
                if let Some(token) = self.token {
                    subject.push('.');
                    subject.push_str(token);
                }
                subject
            }
        }
    }
}

/// The v1 ack reply subject nats-server 2.10 puts on every delivered message:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`.
pub fn ack_reply_subject(
    stream: &str,
    consumer: &str,
    delivered: u64,
    stream_seq: u64,
    consumer_seq: u64,
    timestamp_ns: i64,
    pending: u64,
) -> String {
    format!(
        "{}{stream}.{consumer}.{delivered}.{stream_seq}.{consumer_seq}.{timestamp_ns}.{pending}",
        subjects::ACK_PREFIX
    )
}

/// Why a subject is not an ack reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckReplyError {
    /// Does not start with `$JS.ACK.`.
    #[error("not a $JS.ACK subject")]
    NotAck,
    /// Neither 9 tokens (v1) nor at least 11 (v2).
    #[error("bad number of tokens in ack subject: {0}")]
    TokenCount(usize),
    /// A numeric token is not a plain decimal number.
    #[error("bad number in ack subject token {0}")]
    BadNumber(usize),
}

/// Parse an ack reply subject (v1 or v2); numbers must be plain decimal digits.
pub fn parse_ack_reply(subject: &str) -> Result<AckReply<'_>, AckReplyError> {
    if !subject.starts_with(subjects::ACK_PREFIX) {
        return Err(AckReplyError::NotAck);
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let count = tokens.len();
    let (domain, account_hash, base, token) = match count {
        9 => (None, None, 2, None),
        n if n >= 11 => {
            let domain = tokens[2];
            (
                (domain != "_").then_some(domain),
                Some(tokens[3]),
                4,
                tokens.get(11).copied(),
            )
        }
        n => return Err(AckReplyError::TokenCount(n)),
    };
    let number = |index: usize| -> Result<u64, AckReplyError> {
        parse_decimal(tokens[index]).ok_or(AckReplyError::BadNumber(index))
    };
    let timestamp = number(base + 5)?;
    Ok(AckReply {
        domain,
        account_hash,
        stream: tokens[base],
        consumer: tokens[base + 1],
        delivered: number(base + 2)?,
        stream_seq: number(base + 3)?,
        consumer_seq: number(base + 4)?,
        timestamp_ns: i64::try_from(timestamp).map_err(|_| AckReplyError::BadNumber(base + 5))?,
        pending: number(base + 6)?,
        token,
    })
}

fn parse_decimal(token: &str) -> Option<u64> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// What a message published to an ack reply subject asks for, as nats-server's
/// `processAck` reads it. Matching is byte-exact: `+ACK` and `+WPI` must be the whole
/// payload; `+NXT`, `-NAK` and `+TERM` are prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind {
    /// Empty payload, `+ACK`, or the deprecated `+OK`.
    Ack,
    /// `-NAK`, optionally followed by a delay: JSON `{"delay": <ns>}` (what async-nats and
    /// nats-py send, after a space) or a Go duration string like `5s`. A delay that does
    /// not parse is a plain NAK (`None`).
    Nak {
        /// Redeliver after this long, nanoseconds.
        delay_ns: Option<i64>,
    },
    /// `+WPI`: work in progress, reset the ack timer.
    Progress,
    /// `+NXT`: ack, then the rest is a pull request for more ([`parse_next_request`]).
    Next(Result<NextRequest, NextRequestError>),
    /// `+TERM`, optionally followed by a reason (trimmed).
    Term {
        /// Reason text, if any.
        reason: Option<String>,
    },
    /// Anything else: nats-server does nothing with it (but still answers a reply).
    Unknown,
}

/// Classify an ack payload (see [`AckKind`]).
pub fn parse_ack(payload: &[u8]) -> AckKind {
    if payload.is_empty() || payload == b"+ACK" || payload == b"+OK" {
        return AckKind::Ack;
    }
    if let Some(rest) = payload.strip_prefix(b"+NXT") {
        return AckKind::Next(parse_next_request(rest));
    }
    if let Some(rest) = payload.strip_prefix(b"-NAK") {
        return AckKind::Nak {
            delay_ns: parse_nak_delay(rest.trim_ascii()),
        };
    }
    if payload == b"+WPI" {
        return AckKind::Progress;
    }
    if let Some(rest) = payload.strip_prefix(b"+TERM") {
        let reason = rest.trim_ascii();
        return AckKind::Term {
            reason: (!reason.is_empty()).then(|| String::from_utf8_lossy(reason).into_owned()),
        };
    }
    AckKind::Unknown
}

fn parse_nak_delay(arg: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct NakOptions {
        #[serde(default, deserialize_with = "nullable")]
        delay: i64,
    }
    match arg.first() {
        None => None,
        Some(b'{') => serde_json::from_slice::<NakOptions>(arg)
            .ok()
            .map(|options| options.delay),
        Some(_) => std::str::from_utf8(arg)
            .ok()
            .and_then(|text| parse_go_duration(text).ok()),
    }
}

// ---------------------------------------------------------------------------------------
// Status messages
// ---------------------------------------------------------------------------------------

/// Header-only status messages nats-server sends to pull requesters and push consumers
/// (`server/consumer.go`). Each value is a complete header block (status line, headers,
/// blank line) sent with an empty payload.
///
/// async-nats reads the status code and the text after it: 404 (no messages, with
/// `no_wait`), 408 and 409 end the pull request (`Consumer Deleted` and `Consumer is push
/// based` end the stream, `Exceeded MaxRequest...` too; otherwise the pending counts in
/// `Nats-Pending-Messages`/`Nats-Pending-Bytes` are given back), 100 is a heartbeat.
/// nats-server 2.10 has no `409 Exceeded MaxAckPending`: a pull request just waits.
pub mod status {
    use super::format_go_duration;

    /// Remaining batch of a terminated pull request.
    pub const PENDING_MESSAGES: &str = "Nats-Pending-Messages";
    /// Remaining byte budget of a terminated pull request.
    pub const PENDING_BYTES: &str = "Nats-Pending-Bytes";
    /// Last consumer sequence, on idle heartbeats.
    pub const LAST_CONSUMER: &str = "Nats-Last-Consumer";
    /// Last stream sequence, on idle heartbeats.
    pub const LAST_STREAM: &str = "Nats-Last-Stream";
    /// Flow-control reply subject the consumer is stalled on, on idle heartbeats.
    pub const CONSUMER_STALLED: &str = "Nats-Consumer-Stalled";

    /// `no_wait` request and nothing pending.
    pub const NO_MESSAGES: &[u8] = b"NATS/1.0 404 No Messages\r\n\r\n";
    /// `no_wait` request while earlier requests already cover what is pending.
    pub const REQUESTS_PENDING: &[u8] = b"NATS/1.0 408 Requests Pending\r\n\r\n";
    /// The wait queue is full (`max_waiting`).
    pub const EXCEEDED_MAX_WAITING: &[u8] = b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n";
    /// The consumer was deleted while the request waited.
    pub const CONSUMER_DELETED: &[u8] = b"NATS/1.0 409 Consumer Deleted\r\n\r\n";
    /// A pull request to a push consumer.
    pub const CONSUMER_IS_PUSH_BASED: &[u8] = b"NATS/1.0 409 Consumer is push based\r\n\r\n";
    /// The consumer lost leadership (clustered).
    pub const LEADERSHIP_CHANGE: &[u8] = b"NATS/1.0 409 Leadership Change\r\n\r\n";
    /// Push flow control request (sent with a reply subject to answer).
    pub const FLOW_CONTROL_REQUEST: &[u8] = b"NATS/1.0 100 FlowControl Request\r\n\r\n";
    /// Core NATS no-responders reply to a request (no text after the code).
    pub const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

    fn with_pending(line: &str, pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        format!(
            "NATS/1.0 {line}\r\n{PENDING_MESSAGES}: {pending_msgs}\r\n{PENDING_BYTES}: {pending_bytes}\r\n\r\n"
        )
        .into_bytes()
    }

    fn line(code: u16, text: &str) -> Vec<u8> {
        format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes()
    }

    /// A pull request expired; `pending_*` are its unused batch and byte budget.
    pub fn request_timeout(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending("408 Request Timeout", pending_msgs, pending_bytes)
    }

    /// A pull request forwarded through an account export lost its interest.
    pub fn interest_expired(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending("408 Interest Expired", pending_msgs, pending_bytes)
    }

    /// The next message does not fit the request's remaining `max_bytes`.
    pub fn message_size_exceeds_max_bytes(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending(
            "409 Message Size Exceeds MaxBytes",
            pending_msgs,
            pending_bytes,
        )
    }

    /// The batch is complete but byte budget remains (sent after the last message).
    pub fn batch_completed(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending("409 Batch Completed", pending_msgs, pending_bytes)
    }

    /// `batch` above the consumer's `max_batch`.
    pub fn exceeded_max_request_batch(max_batch: i64) -> Vec<u8> {
        line(409, &format!("Exceeded MaxRequestBatch of {max_batch}"))
    }

    /// `expires` above the consumer's `max_expires` (Go duration text, e.g. `1m0s`).
    pub fn exceeded_max_request_expires(max_expires_ns: i64) -> Vec<u8> {
        line(
            409,
            &format!(
                "Exceeded MaxRequestExpires of {}",
                format_go_duration(max_expires_ns)
            ),
        )
    }

    /// `max_bytes` above the consumer's `max_bytes`.
    pub fn exceeded_max_request_max_bytes(max_bytes: i64) -> Vec<u8> {
        line(409, &format!("Exceeded MaxRequestMaxBytes of {max_bytes}"))
    }

    /// A pull request body that does not parse ([`super::NextRequestError`]).
    pub fn bad_request(err: &str) -> Vec<u8> {
        line(400, &format!("Bad Request - {err}"))
    }

    /// Idle heartbeat, to a pull requester (with `idle_heartbeat`) or a push consumer;
    /// `stalled` is the pending flow-control reply subject, if any.
    pub fn idle_heartbeat(
        last_consumer_seq: u64,
        last_stream_seq: u64,
        stalled: Option<&str>,
    ) -> Vec<u8> {
        let mut text = format!(
            "NATS/1.0 100 Idle Heartbeat\r\n{LAST_CONSUMER}: {last_consumer_seq}\r\n{LAST_STREAM}: {last_stream_seq}\r\n"
        );
        if let Some(reply) = stalled {
            text.push_str(&format!("{CONSUMER_STALLED}: {reply}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}

// ---------------------------------------------------------------------------------------
// Go durations and times
// ---------------------------------------------------------------------------------------

/// Format nanoseconds as Go's `time.Duration.String()` does: `0s`, `100ns`, `1.5µs`,
/// `2.5ms`, `1.5s`, `1m0s`, `2h0m0s`, `-3s`. Used in some nats-server texts.
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let negative = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if u < 1_000_000_000 {
        if u < 1_000 {
            out.push_str(&format!("{u}ns"));
        } else if u < 1_000_000 {
            push_fraction(&mut out, u, 3);
            out.push_str("µs");
        } else {
            push_fraction(&mut out, u, 6);
            out.push_str("ms");
        }
        return out;
    }
    let seconds = u / 1_000_000_000;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{}m", minutes % 60));
    }
    push_fraction(
        &mut out,
        (seconds % 60) * 1_000_000_000 + u % 1_000_000_000,
        9,
    );
    out.push('s');
    out
}

/// `value / 10^precision` with the fraction's trailing zeros (and a bare dot) removed.
fn push_fraction(out: &mut String, value: u64, precision: u32) {
    let scale = 10u64.pow(precision);
    out.push_str(&(value / scale).to_string());
    let fraction = value % scale;
    if fraction != 0 {
        let digits = format!("{fraction:0width$}", width = precision as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// A string Go's `time.ParseDuration` rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time: invalid duration {0:?}")]
pub struct GoDurationError(pub String);

/// Parse a Go duration string (`time.ParseDuration`): an optional sign, then one or more
/// decimal numbers with a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), e.g. `1.5h`,
/// `2h45m`, `300ms`; a bare `0` is allowed. Returns nanoseconds.
pub fn parse_go_duration(input: &str) -> Result<i64, GoDurationError> {
    const LIMIT: u64 = 1 << 63;
    let fail = || GoDurationError(input.to_owned());
    let mut s = input.as_bytes();
    let mut negative = false;
    if let Some((&sign, rest)) = s.split_first() {
        if sign == b'-' || sign == b'+' {
            negative = sign == b'-';
            s = rest;
        }
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(fail());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(fail());
        }
        // Integer part.
        let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &digit in &s[..int_len] {
            if whole > LIMIT / 10 {
                return Err(fail());
            }
            whole = whole * 10 + u64::from(digit - b'0');
            if whole > LIMIT {
                return Err(fail());
            }
        }
        s = &s[int_len..];
        // Fraction part.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut fraction_len = 0;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            fraction_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &digit in &s[..fraction_len] {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(digit - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[fraction_len..];
        }
        if int_len == 0 && fraction_len == 0 {
            return Err(fail());
        }
        // Unit.
        let unit_len = s
            .iter()
            .position(|&b| b == b'.' || b.is_ascii_digit())
            .unwrap_or(s.len());
        let unit: u64 = match &s[..unit_len] {
            b"ns" => 1,
            b"us" => 1_000,
            b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return Err(fail()),
        };
        s = &s[unit_len..];
        let mut value = whole
            .checked_mul(unit)
            .filter(|v| *v <= LIMIT)
            .ok_or_else(fail)?;
        if fraction > 0 {
            // Go computes the fractional part in float64 too.
            value = value.saturating_add((fraction as f64 * (unit as f64 / scale)) as u64);
            if value > LIMIT {
                return Err(fail());
            }
        }
        total = total
            .checked_add(value)
            .filter(|v| *v <= LIMIT)
            .ok_or_else(fail)?;
    }
    if negative {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| fail())
}

/// Format Unix nanoseconds as Go marshals a UTC `time.Time` (RFC 3339 with nanoseconds,
/// trailing zeros trimmed): `2024-01-02T03:04:05.123456789Z`, `2024-01-02T03:04:05Z`.
pub fn format_rfc3339_nanos(unix_nanos: i64) -> String {
    let seconds = unix_nanos.div_euclid(NANOS_PER_SEC);
    let nanos = unix_nanos.rem_euclid(NANOS_PER_SEC);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parse an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) into Unix
/// nanoseconds. `i128` so that [`GO_ZERO_TIME`] fits. Fraction digits past nine are
/// ignored.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut index = 19;
    let mut nanos: i64 = 0;
    if b[index] == b'.' {
        index += 1;
        let start = index;
        while index < b.len() && b[index].is_ascii_digit() {
            index += 1;
        }
        if index == start {
            return None;
        }
        for position in 0..9 {
            let digit = if start + position < index {
                i64::from(b[start + position] - b'0')
            } else {
                0
            };
            nanos = nanos * 10 + digit;
        }
    }
    let zone = b.get(index..)?;
    let offset_seconds: i64 = if zone == b"Z" {
        0
    } else if zone.len() == 6 && (zone[0] == b'+' || zone[0] == b'-') && zone[3] == b':' {
        let hours = digits(index + 1..index + 3)?;
        let minutes = digits(index + 4..index + 6)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        let offset = hours * 3600 + minutes * 60;
        if zone[0] == b'-' { -offset } else { offset }
    } else {
        return None;
    };
    let days = days_from_civil(year, month, day);
    let seconds = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second)
        - i128::from(offset_seconds);
    Some(seconds * i128::from(NANOS_PER_SEC) + i128::from(nanos))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Proleptic Gregorian date of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------
// base64 for Go []byte fields
// ---------------------------------------------------------------------------------------

mod base64_bytes {
    //! Standard, padded base64 (Go `encoding/json` for `[]byte`).

    use bytes::Bytes;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }

    /// Decode; like Go, `\r` and `\n` are ignored and padding is required.
    pub(super) fn decode(input: &str) -> Result<Vec<u8>, &'static str> {
        let clean: Vec<u8> = input
            .bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        if clean.len() % 4 != 0 {
            return Err("illegal base64 data: bad length");
        }
        let mut out = Vec::with_capacity(clean.len() / 4 * 3);
        let quads = clean.len() / 4;
        for (index, quad) in clean.chunks(4).enumerate() {
            let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
            if pad > 2 || (pad > 0 && index + 1 != quads) {
                return Err("illegal base64 data: bad padding");
            }
            let mut n: u32 = 0;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c).ok_or("illegal base64 data: bad character")?;
            }
            n <<= 6 * pad as u32;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Ok(out)
    }

    pub(super) fn serialize<S: Serializer>(
        bytes: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(Bytes::new()),
            Some(text) => decode(&text).map(Bytes::from).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream config as async-nats 0.51 serializes `Config { name, subjects, ..Default }`.
    const ASYNC_NATS_STREAM: &str = r#"{"name":"events","max_bytes":0,"max_msgs":0,"max_msgs_per_subject":0,"discard":"old","subjects":["events.>"],"retention":"limits","max_consumers":0,"max_age":0,"storage":"file","num_replicas":0,"consumer_limits":null}"#;

    /// A KV-style stream config from async-nats 0.51.
    const ASYNC_NATS_KV_STREAM: &str = r#"{"name":"kv","max_bytes":0,"max_msgs":0,"max_msgs_per_subject":5,"discard":"new","subjects":["$KV.kv.>"],"retention":"limits","max_consumers":0,"max_age":3600000000000,"max_msg_size":-1,"storage":"memory","num_replicas":1,"duplicate_window":120000000000,"allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"consumer_limits":null}"#;

    /// `StreamConfig(name="foo", subjects=["foo.*"]).as_dict()` from nats-py 2.x.
    const NATS_PY_STREAM: &str = r#"{"name": "foo", "subjects": ["foo.*"], "discard": "old", "discard_new_per_subject": false, "max_msgs_per_subject": -1, "max_msg_size": -1, "no_ack": false, "duplicate_window": 0, "sealed": false, "deny_delete": false, "deny_purge": false, "allow_rollup_hdrs": false, "max_age": 0}"#;

    /// The stored config nats-server 2.10 reports for `ASYNC_NATS_STREAM`.
    const SERVER_STREAM_CONFIG: &str = r#"{"name":"events","subjects":["events.>"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{}}"#;

    const EMPTY_STATE: &str = r#"{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#;

    fn server_stream_info() -> StreamInfo {
        StreamInfo {
            config: serde_json::from_str(SERVER_STREAM_CONFIG).unwrap(),
            created: "2024-01-02T03:04:05.123456789Z".into(),
            state: StreamState::default(),
            domain: String::new(),
            cluster: None,
            mirror: None,
            sources: Vec::new(),
            alternates: Vec::new(),
            ts: "2024-01-02T03:04:05.1234Z".into(),
        }
    }

    fn assert_round_trip<T>(json: &str) -> T
    where
        T: Serialize + DeserializeOwned,
    {
        let value: T = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&value).unwrap(), json);
        value
    }

    #[test]
    fn async_nats_stream_create_request_gets_server_defaults() {
        let mut config: StreamConfig = serde_json::from_str(ASYNC_NATS_STREAM).unwrap();
        assert_eq!(config.name, "events");
        assert_eq!(config.num_replicas, 0);
        assert_eq!(config.consumer_limits, StreamConsumerLimits::default());
        config.apply_server_defaults();
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            SERVER_STREAM_CONFIG
        );
        assert_round_trip::<StreamConfig>(SERVER_STREAM_CONFIG);
    }

    #[test]
    fn async_nats_kv_stream_config() {
        let mut config: StreamConfig = serde_json::from_str(ASYNC_NATS_KV_STREAM).unwrap();
        assert_eq!(config.discard, DiscardPolicy::New);
        assert_eq!(config.storage, StorageType::Memory);
        assert!(config.allow_rollup_hdrs && config.deny_delete && config.allow_direct);
        assert_eq!(config.max_age, 3_600_000_000_000);
        config.apply_server_defaults();
        assert_eq!(config.max_msgs_per_subject, 5);
        assert_eq!(config.max_msg_size, -1);
        assert_eq!(config.duplicate_window, DEFAULT_DUPLICATE_WINDOW_NS);
    }

    #[test]
    fn nats_py_stream_config_and_defaults() {
        let mut config: StreamConfig = serde_json::from_str(NATS_PY_STREAM).unwrap();
        assert_eq!(config.retention, RetentionPolicy::Limits);
        assert_eq!(config.storage, StorageType::File);
        config.apply_server_defaults();
        assert_eq!(config.num_replicas, 1);
        assert_eq!(config.max_msgs, -1);
        assert_eq!(config.subjects, vec!["foo.*".to_owned()]);
    }

    #[test]
    fn stream_defaults_duplicate_window_and_subjects() {
        let mut config = StreamConfig::named("S");
        config.max_age = 30 * NANOS_PER_SEC;
        config.apply_server_defaults();
        assert_eq!(config.duplicate_window, 30 * NANOS_PER_SEC);
        assert_eq!(config.subjects, vec!["S".to_owned()]);

        let mut mirror = StreamConfig::named("M");
        mirror.mirror = Some(StreamSource {
            name: "S".into(),
            ..StreamSource::default()
        });
        mirror.apply_server_defaults();
        assert_eq!(mirror.duplicate_window, 0);
        assert!(mirror.subjects.is_empty());
    }

    #[test]
    fn enums_follow_go_unmarshalers() {
        let discard: DiscardPolicy = serde_json::from_str(r#""NEW""#).unwrap();
        assert_eq!(discard, DiscardPolicy::New);
        assert!(serde_json::from_str::<RetentionPolicy>(r#""Limits""#).is_err());
        let deliver: DeliverPolicy = serde_json::from_str(r#""undefined""#).unwrap();
        assert_eq!(deliver, DeliverPolicy::All);
        assert_eq!(
            serde_json::to_string(&DeliverPolicy::LastPerSubject).unwrap(),
            r#""last_per_subject""#
        );
        assert_eq!(
            serde_json::to_string(&ConsumerAction::CreateOrUpdate).unwrap(),
            r#""""#
        );
        assert!(serde_json::from_str::<ConsumerAction>(r#""upsert""#).is_err());
        assert!(serde_json::from_str::<StreamConfig>(r#"{"name":"x","retention":null}"#).is_err());
    }

    #[test]
    fn stream_create_response_round_trips() {
        let json = format!(
            r#"{{"type":"io.nats.jetstream.api.v1.stream_create_response","config":{SERVER_STREAM_CONFIG},"created":"2024-01-02T03:04:05.123456789Z","state":{EMPTY_STATE},"ts":"2024-01-02T03:04:05.1234Z","did_create":true}}"#
        );
        let response: StreamInfoResponse = assert_round_trip(&json);
        assert_eq!(response, StreamInfoResponse::create(server_stream_info()));
    }

    #[test]
    fn stream_info_response_carries_paging_and_cluster() {
        let json = format!(
            r#"{{"type":"io.nats.jetstream.api.v1.stream_info_response","total":0,"offset":0,"limit":0,"config":{SERVER_STREAM_CONFIG},"created":"2024-01-02T03:04:05.123456789Z","state":{{"messages":3,"bytes":120,"first_seq":1,"first_ts":"2024-01-02T03:04:06Z","last_seq":4,"last_ts":"2024-01-02T03:04:07.5Z","num_subjects":2,"num_deleted":1,"consumer_count":1}},"cluster":{{"leader":"NDJWE4SOUJOJT2TY5Y2YQEOAHGAK5VIGXTGKWJSFHVCII4ITI3LBHBUV"}},"ts":"2024-01-02T03:04:08Z"}}"#
        );
        let response: StreamInfoResponse = assert_round_trip(&json);
        let info = response.info.unwrap();
        assert_eq!(info.state.num_deleted, 1);
        assert_eq!(response.paged, Some(ApiPaged::default()));

        let error = StreamInfoResponse::error(
            response_type::STREAM_INFO,
            JsErrorCode::StreamNotFound.error(),
        );
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"},"total":0,"offset":0,"limit":0}"#
        );
        let parsed: StreamInfoResponse =
            serde_json::from_str(&serde_json::to_string(&error).unwrap()).unwrap();
        assert!(parsed.info.is_none());
        assert!(parsed.error.unwrap().is(JsErrorCode::StreamNotFound));

        let create_error = StreamInfoResponse::error(
            response_type::STREAM_CREATE,
            JsErrorCode::StreamNameExist.error(),
        );
        assert_eq!(
            serde_json::to_string(&create_error).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{"code":400,"err_code":10058,"description":"stream name already in use with a different configuration"}}"#
        );
    }

    #[test]
    fn stream_names_and_list_responses() {
        assert_eq!(
            serde_json::to_string(&StreamNamesResponse::new(0, 0, Vec::new())).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":0,"offset":0,"limit":1024,"streams":null}"#
        );
        let names: StreamNamesResponse = assert_round_trip(
            r#"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":2,"offset":0,"limit":1024,"streams":["A","B"]}"#,
        );
        assert_eq!(names.streams.unwrap(), vec!["A".to_owned(), "B".to_owned()]);
        assert_eq!(
            serde_json::to_string(&StreamListResponse::new(0, 0, Vec::new())).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_list_response","total":0,"offset":0,"limit":256,"streams":[]}"#
        );
        assert_eq!(
            serde_json::to_string(&ConsumerNamesResponse::new(0, 0, Vec::new())).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.consumer_names_response","total":0,"offset":0,"limit":1024,"consumers":[]}"#
        );
        let request: StreamNamesRequest =
            decode_request(br#"{"offset":0,"subject":"orders.*"}"#).unwrap();
        assert_eq!(request.subject, "orders.*");
    }

    #[test]
    fn success_purge_and_msg_responses() {
        assert_eq!(
            serde_json::to_string(&SuccessResponse::ok(response_type::STREAM_DELETE)).unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
        );
        assert_eq!(
            serde_json::to_string(&SuccessResponse::error(
                response_type::CONSUMER_DELETE,
                JsErrorCode::ConsumerNotFound.error()
            ))
            .unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.consumer_delete_response","error":{"code":404,"err_code":10014,"description":"consumer not found"}}"#
        );
        assert_round_trip::<StreamPurgeResponse>(
            r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":7}"#,
        );
        assert_eq!(
            serde_json::to_string(&StreamPurgeResponse::error(
                JsErrorCode::StreamSealed.error()
            ))
            .unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":400,"err_code":10109,"description":"invalid operation on sealed stream"},"purged":0}"#
        );
        let get: StreamMsgGetResponse = assert_round_trip(
            r#"{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"events.a","seq":3,"hdrs":"TkFUUy8xLjANCkZvbzogYmFyDQoNCg==","data":"aGVsbG8=","time":"2024-01-02T03:04:05.000000001Z"}}"#,
        );
        let message = get.message.unwrap();
        assert_eq!(&message.hdrs[..], b"NATS/1.0\r\nFoo: bar\r\n\r\n");
        assert_eq!(&message.data[..], b"hello");
        let bare: StoredMsg =
            serde_json::from_str(r#"{"subject":"s","seq":1,"time":"2024-01-02T03:04:05Z"}"#)
                .unwrap();
        assert!(bare.data.is_empty());
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"subject":"s","seq":1,"time":"2024-01-02T03:04:05Z"}"#
        );
    }

    #[test]
    fn msg_get_and_purge_validation() {
        let by_seq: StreamMsgGetRequest = decode_request(br#"{"seq":5}"#).unwrap();
        assert_eq!(by_seq.target().unwrap(), MsgGetTarget::Sequence(5));
        let last: StreamMsgGetRequest = decode_request(br#"{"last_by_subj":"a.b"}"#).unwrap();
        assert_eq!(last.target().unwrap(), MsgGetTarget::LastBySubject("a.b"));
        let next: StreamMsgGetRequest =
            decode_request(br#"{"seq":2,"next_by_subj":"a.*"}"#).unwrap();
        assert_eq!(
            next.target().unwrap(),
            MsgGetTarget::NextBySubject {
                subject: "a.*",
                start_seq: 2
            }
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"seq":1,"last_by_subj":"a"}"#,
            br#"{"last_by_subj":"a","next_by_subj":"b"}"#,
        ] {
            let request: StreamMsgGetRequest = decode_request(bad).unwrap();
            assert!(request.target().unwrap_err().is(JsErrorCode::BadRequest));
        }
        let purge: StreamPurgeRequest = decode_request(br#"{"seq":3,"keep":1}"#).unwrap();
        assert!(purge.validate().is_err());
        let delete: StreamMsgDeleteRequest = decode_request(br#"{"seq":9}"#).unwrap();
        assert_eq!(
            delete,
            StreamMsgDeleteRequest {
                seq: 9,
                no_erase: false
            }
        );
        assert_eq!(
            serde_json::to_string(&StreamMsgDeleteRequest {
                seq: 0,
                no_erase: true
            })
            .unwrap(),
            r#"{"seq":0,"no_erase":true}"#
        );
    }

    #[test]
    fn request_bodies_like_encoding_json() {
        assert!(is_empty_request(b""));
        assert!(is_empty_request(b"{}"));
        assert!(is_empty_request(b" { } "));
        assert!(!is_empty_request(b"null"));
        assert!(!is_empty_request(b"[]"));
        // async-nats `get_stream` sends `null` to STREAM.INFO.
        let info: StreamInfoRequest = decode_request(b"null").unwrap();
        assert_eq!(info, StreamInfoRequest::default());
        let info: StreamInfoRequest =
            decode_request(br#"{"offset":0,"deleted_details":false,"subjects_filter":""}"#)
                .unwrap();
        assert_eq!(info, StreamInfoRequest::default());
        assert!(
            decode_request::<StreamInfoRequest>(b"[]")
                .unwrap_err()
                .is(JsErrorCode::InvalidJson)
        );
        assert!(
            decode_request::<StreamConfig>(b"")
                .unwrap_err()
                .is(JsErrorCode::InvalidJson)
        );
        assert!(decode_request::<StreamConfig>(b"{\"name\":").is_err());
        let config: StreamConfig =
            decode_request(br#"{"name":"x","subjects":null,"metadata":null,"max_msgs":null}"#)
                .unwrap();
        assert_eq!(config.name, "x");
        assert!(config.subjects.is_empty());
    }

    #[test]
    fn consumer_create_requests_from_clients() {
        // async-nats: json!({"stream_name", "config", "action"}) with a pull::Config.
        let request: CreateConsumerRequest = decode_request(
            br#"{"action":"","config":{"durable_name":"dur","deliver_policy":"all","ack_policy":"explicit","replay_policy":"instant"},"stream_name":"events"}"#,
        )
        .unwrap();
        assert_eq!(request.action, ConsumerAction::CreateOrUpdate);
        assert_eq!(request.config.durable_name, "dur");
        assert_eq!(request.config.ack_policy, AckPolicy::Explicit);
        let mut config = request.config;
        config.apply_server_defaults(&StreamConsumerLimits::default());
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"durable_name":"dur","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0}"#
        );

        let full: ConsumerConfig = serde_json::from_str(
            r#"{"durable_name":"d","deliver_policy":"by_start_sequence","opt_start_seq":10,"ack_policy":"explicit","ack_wait":5000000000,"max_deliver":3,"filter_subjects":["a.*","b.>"],"replay_policy":"instant","sample_freq":"50","backoff":[1000000000,2000000000]}"#,
        )
        .unwrap();
        assert_eq!(full.deliver_policy, DeliverPolicy::ByStartSequence);
        assert_eq!(full.opt_start_seq, 10);
        assert_eq!(full.sample_freq, "50");
        let mut defaulted = full.clone();
        defaulted.apply_server_defaults(&StreamConsumerLimits::default());
        assert_eq!(defaulted.ack_wait, 1_000_000_000);
        assert_eq!(defaulted.max_deliver, 3);

        let by_time: ConsumerConfig = serde_json::from_str(
            r#"{"deliver_policy":"by_start_time","opt_start_time":"2024-01-02T03:04:05.123456789Z","ack_policy":"explicit","replay_policy":"instant"}"#,
        )
        .unwrap();
        assert_eq!(
            parse_rfc3339_nanos(by_time.opt_start_time.as_deref().unwrap()),
            Some(1_704_164_645_123_456_789)
        );

        // nats-py: no action key, zero durations, ephemeral.
        let py: CreateConsumerRequest = decode_request(
            br#"{"stream_name": "foo", "config": {"deliver_policy": "new", "ack_policy": "explicit", "replay_policy": "instant", "ack_wait": 0, "idle_heartbeat": 0, "inactive_threshold": 0}}"#,
        )
        .unwrap();
        assert_eq!(py.action, ConsumerAction::CreateOrUpdate);
        let mut eph = py.config;
        eph.apply_server_defaults(&StreamConsumerLimits {
            inactive_threshold: 0,
            max_ack_pending: 20,
        });
        assert_eq!(
            eph.inactive_threshold,
            DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NS
        );
        assert_eq!(eph.max_ack_pending, 20);

        // A missing ack_policy is "none" on the server.
        let bare: ConsumerConfig = serde_json::from_str(r#"{"durable_name":"x"}"#).unwrap();
        assert_eq!(bare.ack_policy, AckPolicy::None);
        let action: CreateConsumerRequest =
            decode_request(br#"{"stream_name":"s","config":null,"action":"create"}"#).unwrap();
        assert_eq!(action.action, ConsumerAction::Create);
    }

    #[test]
    fn consumer_info_response_round_trips() {
        let json = r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"events","name":"dur","created":"2024-01-02T03:04:05.5Z","config":{"durable_name":"dur","name":"dur","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0},"delivered":{"consumer_seq":0,"stream_seq":0},"ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":0,"ts":"2024-01-02T03:04:05.6Z"}"#;
        let response: ConsumerInfoResponse = assert_round_trip(json);
        let info = response.info.unwrap();
        assert_eq!(info.config.max_waiting, 512);
        let active = r#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","stream_name":"events","name":"dur","created":"2024-01-02T03:04:05.5Z","config":{"durable_name":"dur","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0},"delivered":{"consumer_seq":4,"stream_seq":6,"last_active":"2024-01-02T03:04:07.25Z"},"ack_floor":{"consumer_seq":2,"stream_seq":3,"last_active":"2024-01-02T03:04:07Z"},"num_ack_pending":2,"num_redelivered":1,"num_waiting":1,"num_pending":10,"cluster":{"leader":"srv"},"ts":"2024-01-02T03:04:08Z"}"#;
        let response: ConsumerInfoResponse = assert_round_trip(active);
        assert_eq!(response.info.unwrap().delivered.stream_seq, 6);
        assert_eq!(
            serde_json::to_string(&ConsumerInfoResponse::error(
                response_type::CONSUMER_CREATE,
                JsErrorCode::ConsumerAlreadyExists.error()
            ))
            .unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":400,"err_code":10148,"description":"consumer already exists"}}"#
        );
    }

    #[test]
    fn pull_requests_in_every_form() {
        // async-nats BatchConfig, including its null extras.
        let request = parse_next_request(
            br#"{"batch":200,"expires":30000000000,"max_bytes":0,"idle_heartbeat":15000000000,"min_pending":null,"min_ack_pending":null,"group":null,"priority":null}"#,
        )
        .unwrap();
        assert_eq!(
            request,
            NextRequest {
                expires: 30_000_000_000,
                batch: 200,
                max_bytes: 0,
                no_wait: false,
                idle_heartbeat: 15_000_000_000
            }
        );
        let no_wait = parse_next_request(
            br#"{"batch":10,"no_wait":true,"max_bytes":0,"min_pending":null,"min_ack_pending":null,"group":null,"priority":null}"#,
        )
        .unwrap();
        assert!(no_wait.no_wait);
        assert_eq!(no_wait.batch, 10);
        // nats-py.
        let py =
            parse_next_request(br#"{"batch": 5, "expires": 4500000000, "no_wait": true}"#).unwrap();
        assert_eq!((py.batch, py.expires), (5, 4_500_000_000));
        // Empty, bare numbers and junk.
        assert_eq!(parse_next_request(b"").unwrap().batch, 1);
        assert_eq!(parse_next_request(b" \r\n").unwrap().batch, 1);
        assert_eq!(parse_next_request(b"25").unwrap().batch, 25);
        assert_eq!(parse_next_request(b" +3 ").unwrap().batch, 3);
        assert_eq!(parse_next_request(b"abc").unwrap().batch, 1);
        assert_eq!(parse_next_request(br#"{}"#).unwrap().batch, 0);
        assert!(matches!(
            parse_next_request(b"{bad"),
            Err(NextRequestError::InvalidJson(_))
        ));
        assert_eq!(
            parse_next_request(br#"{"batch":1,"expires":1000,"idle_heartbeat":600}"#),
            Err(NextRequestError::HeartbeatTooLarge)
        );
        assert_eq!(
            parse_next_request(br#"{"batch":1,"idle_heartbeat":1}"#),
            Err(NextRequestError::HeartbeatTooLarge)
        );
        assert_eq!(
            serde_json::to_string(&NextRequest {
                batch: 2,
                expires: 5,
                ..NextRequest::default()
            })
            .unwrap(),
            r#"{"expires":5,"batch":2}"#
        );
    }

    #[test]
    fn ack_reply_subjects() {
        let subject = ack_reply_subject("ORDERS", "dur", 1, 42, 7, 1_704_164_645_123_456_789, 3);
        assert_eq!(subject, "$JS.ACK.ORDERS.dur.1.42.7.1704164645123456789.3");
        let reply = parse_ack_reply(&subject).unwrap();
        assert_eq!(
            reply,
            AckReply {
                domain: None,
                account_hash: None,
                stream: "ORDERS",
                consumer: "dur",
                delivered: 1,
                stream_seq: 42,
                consumer_seq: 7,
                timestamp_ns: 1_704_164_645_123_456_789,
                pending: 3,
                token: None,
            }
        );
        assert_eq!(reply.to_subject(), subject);

        let v2 = "$JS.ACK.hub.ACCHASH.ORDERS.dur.2.43.8.1704164645123456789.0.rand0m";
        let reply = parse_ack_reply(v2).unwrap();
        assert_eq!(reply.domain, Some("hub"));
        assert_eq!(reply.account_hash, Some("ACCHASH"));
        assert_eq!(
            (
                reply.stream,
                reply.consumer,
                reply.delivered,
                reply.stream_seq
            ),
            ("ORDERS", "dur", 2, 43)
        );
        assert_eq!(reply.token, Some("rand0m"));
        assert_eq!(reply.to_subject(), v2);
        let no_domain = parse_ack_reply("$JS.ACK._.H.S.C.1.2.3.4.5.tok").unwrap();
        assert_eq!(no_domain.domain, None);
        assert_eq!(no_domain.to_subject(), "$JS.ACK._.H.S.C.1.2.3.4.5.tok");
        assert!(
            parse_ack_reply("$JS.ACK._.H.S.C.1.2.3.4.5")
                .unwrap()
                .token
                .is_none()
        );

        assert_eq!(parse_ack_reply("foo.bar"), Err(AckReplyError::NotAck));
        assert_eq!(
            parse_ack_reply("$JS.ACK.S.C.1.2.3.4"),
            Err(AckReplyError::TokenCount(8))
        );
        assert_eq!(
            parse_ack_reply("$JS.ACK.S.C.1.2.3.4.5.6"),
            Err(AckReplyError::TokenCount(10))
        );
        assert_eq!(
            parse_ack_reply("$JS.ACK.S.C.1.-2.3.4.5"),
            Err(AckReplyError::BadNumber(5))
        );
    }

    #[test]
    fn ack_payloads() {
        assert_eq!(parse_ack(b""), AckKind::Ack);
        assert_eq!(parse_ack(b"+ACK"), AckKind::Ack);
        assert_eq!(parse_ack(b"+OK"), AckKind::Ack);
        assert_eq!(parse_ack(b"+ACK "), AckKind::Unknown);
        assert_eq!(parse_ack(b"-NAK"), AckKind::Nak { delay_ns: None });
        // async-nats and nats-py.
        assert_eq!(
            parse_ack(br#"-NAK {"delay":5000000000}"#),
            AckKind::Nak {
                delay_ns: Some(5_000_000_000)
            }
        );
        assert_eq!(
            parse_ack(br#"-NAK {"delay": 250}"#),
            AckKind::Nak {
                delay_ns: Some(250)
            }
        );
        // Go duration text, and junk falling back to a plain NAK.
        assert_eq!(
            parse_ack(b"-NAK 1m30s"),
            AckKind::Nak {
                delay_ns: Some(90_000_000_000)
            }
        );
        assert_eq!(parse_ack(b"-NAK soon"), AckKind::Nak { delay_ns: None });
        assert_eq!(parse_ack(b"-NAK {bad"), AckKind::Nak { delay_ns: None });
        assert_eq!(parse_ack(b"+WPI"), AckKind::Progress);
        assert_eq!(parse_ack(b"+TERM"), AckKind::Term { reason: None });
        assert_eq!(
            parse_ack(b"+TERM  poison pill "),
            AckKind::Term {
                reason: Some("poison pill".into())
            }
        );
        assert_eq!(
            parse_ack(b"+NXT"),
            AckKind::Next(Ok(NextRequest {
                batch: 1,
                ..NextRequest::default()
            }))
        );
        assert_eq!(
            parse_ack(b"+NXT 10"),
            AckKind::Next(Ok(NextRequest {
                batch: 10,
                ..NextRequest::default()
            }))
        );
        assert_eq!(
            parse_ack(br#"+NXT {"batch":2,"no_wait":true}"#),
            AckKind::Next(Ok(NextRequest {
                batch: 2,
                no_wait: true,
                ..NextRequest::default()
            }))
        );
        assert_eq!(parse_ack(b"hello"), AckKind::Unknown);
    }

    #[test]
    fn error_table_matches_nats_server() {
        assert_eq!(JsErrorCode::ALL.len(), 152);
        let check = |code: JsErrorCode, status: u16, err_code: u16, description: &str| {
            assert_eq!(
                (code.code(), code.err_code(), code.description()),
                (status, err_code, description)
            );
            assert_eq!(JsErrorCode::from_err_code(err_code), Some(code));
        };
        check(JsErrorCode::BadRequest, 400, 10003, "bad request");
        check(
            JsErrorCode::ConsumerNameExist,
            400,
            10013,
            "consumer name already in use",
        );
        check(
            JsErrorCode::ConsumerNotFound,
            404,
            10014,
            "consumer not found",
        );
        check(JsErrorCode::InvalidJson, 400, 10025, "invalid JSON");
        check(JsErrorCode::NoMessageFound, 404, 10037, "no message found");
        check(
            JsErrorCode::NotEmptyRequest,
            400,
            10038,
            "expected an empty request payload",
        );
        check(
            JsErrorCode::NotEnabledForAccount,
            503,
            10039,
            "JetStream not enabled for account",
        );
        check(
            JsErrorCode::SequenceNotFound,
            400,
            10043,
            "sequence {seq} not found",
        );
        check(JsErrorCode::StreamInvalidConfig, 500, 10052, "{err}");
        check(
            JsErrorCode::StreamMismatch,
            400,
            10056,
            "stream name in subject does not match request",
        );
        check(
            JsErrorCode::StreamNameExist,
            400,
            10058,
            "stream name already in use with a different configuration",
        );
        check(JsErrorCode::StreamNotFound, 404, 10059, "stream not found");
        check(
            JsErrorCode::StreamNotMatch,
            400,
            10060,
            "expected stream does not match",
        );
        check(
            JsErrorCode::StreamSubjectOverlap,
            400,
            10065,
            "subjects overlap with an existing stream",
        );
        check(
            JsErrorCode::StreamWrongLastMsgId,
            400,
            10070,
            "wrong last msg ID: {id}",
        );
        check(
            JsErrorCode::StreamWrongLastSequence,
            400,
            10071,
            "wrong last sequence: {seq}",
        );
        check(JsErrorCode::NotEnabled, 503, 10076, "JetStream not enabled");
        check(
            JsErrorCode::ConsumerDurableNameNotMatchSubject,
            400,
            10017,
            "consumer name in subject does not match durable name in request",
        );
        check(JsErrorCode::StreamPurgeFailed, 500, 10110, "{err}");
        check(
            JsErrorCode::ConsumerMaxPendingAckExcess,
            400,
            10121,
            "consumer max ack pending exceeds system limit of {limit}",
        );
        check(
            JsErrorCode::ConsumerAlreadyExists,
            400,
            10148,
            "consumer already exists",
        );
        check(
            JsErrorCode::ConsumerDoesNotExist,
            400,
            10149,
            "consumer does not exist",
        );
        check(
            JsErrorCode::ConsumerInactiveThresholdExcess,
            400,
            10153,
            "consumer inactive threshold exceeds system limit of {limit}",
        );
        assert_eq!(JsErrorCode::from_err_code(10001), None);
        let mut codes: Vec<u16> = JsErrorCode::ALL.iter().map(|c| c.err_code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), 152);
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn error_rendering() {
        let error = ApiError::wrong_last_sequence(5);
        assert_eq!(
            serde_json::to_string(&error).unwrap(),
            r#"{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}"#
        );
        assert_eq!(error.to_string(), "wrong last sequence: 5 (10071)");
        assert_eq!(
            ApiError::wrong_last_msg_id("").description,
            "wrong last msg ID: "
        );
        assert_eq!(
            ApiError::sequence_not_found(9).description,
            "sequence 9 not found"
        );
        assert_eq!(
            JsErrorCode::StreamInvalidConfig
                .with_err("max age needs to be >= 100ms")
                .description,
            "max age needs to be >= 100ms"
        );
        assert_eq!(
            JsErrorCode::ConsumerNameTooLong
                .error_with(&[("{max}", &MAX_NAME_LEN)])
                .description,
            "consumer name is too long, maximum allowed is 255"
        );
        // Replaced text is not rescanned, and unknown placeholders stay.
        assert_eq!(
            JsErrorCode::RestoreSubscribeFailed
                .error_with(&[("{subject}", &"{err}"), ("{err}", &"boom")])
                .description,
            "JetStream unable to subscribe to restore snapshot {err}: boom"
        );
        assert_eq!(JsErrorCode::StreamCreate.error().description, "{err}");
        let parsed: ApiError = serde_json::from_str(r#"{"code":503}"#).unwrap();
        assert_eq!(
            parsed,
            ApiError {
                code: 503,
                err_code: 0,
                description: String::new()
            }
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"{"code":503}"#);
    }

    #[test]
    fn pub_acks() {
        let ack = PubAck {
            stream: "ORDERS".into(),
            seq: 5,
            ..PubAck::default()
        };
        assert_eq!(ack.to_nats_json(), br#"{"stream":"ORDERS", "seq":5}"#);
        let with_domain = PubAck {
            domain: "hub".into(),
            ..ack.clone()
        };
        assert_eq!(
            with_domain.to_nats_json(),
            br#"{"stream":"ORDERS", "domain":"hub", "seq":5}"#
        );
        let duplicate = PubAck {
            duplicate: true,
            ..ack.clone()
        };
        assert_eq!(
            duplicate.to_nats_json(),
            br#"{"stream":"ORDERS", "seq":5,"duplicate": true}"#
        );
        for bytes in [
            ack.to_nats_json(),
            with_domain.to_nats_json(),
            duplicate.to_nats_json(),
        ] {
            let parsed: PubAckResponse = serde_json::from_slice(&bytes).unwrap();
            assert!(parsed.error.is_none());
            assert_eq!(parsed.ack.seq, 5);
        }
        assert_eq!(
            serde_json::to_string(&PubAckResponse::ok(ack)).unwrap(),
            r#"{"stream":"ORDERS","seq":5}"#
        );
        let failed = PubAckResponse::error("ORDERS", ApiError::wrong_last_sequence(3));
        let json = r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"ORDERS","seq":0}"#;
        assert_eq!(serde_json::to_string(&failed).unwrap(), json);
        assert_eq!(
            serde_json::from_str::<PubAckResponse>(json).unwrap(),
            failed
        );
    }

    #[test]
    fn account_info_response() {
        let json = r#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"storage":1024,"reserved_memory":0,"reserved_storage":0,"streams":1,"consumers":2,"limits":{"max_memory":-1,"max_storage":-1,"max_streams":-1,"max_consumers":-1,"max_ack_pending":-1,"memory_max_stream_bytes":-1,"storage_max_stream_bytes":-1,"max_bytes_required":false},"api":{"total":5,"errors":1}}"#;
        let response: AccountInfoResponse = assert_round_trip(json);
        let info = response.info.unwrap();
        assert_eq!(info.limits, AccountLimits::unlimited());
        assert_eq!((info.streams, info.consumers, info.api.total), (1, 2, 5));
        assert_eq!(
            serde_json::to_string(&AccountInfoResponse::error(
                JsErrorCode::NotEnabledForAccount.error()
            ))
            .unwrap(),
            r#"{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10039,"description":"JetStream not enabled for account"}}"#
        );
    }

    #[test]
    fn status_messages() {
        assert_eq!(status::NO_MESSAGES, b"NATS/1.0 404 No Messages\r\n\r\n");
        assert_eq!(
            status::request_timeout(5, 0),
            b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\nNats-Pending-Bytes: 0\r\n\r\n"
        );
        assert_eq!(
            status::message_size_exceeds_max_bytes(2, 100),
            b"NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 2\r\nNats-Pending-Bytes: 100\r\n\r\n"
        );
        assert_eq!(
            status::batch_completed(0, 50),
            b"NATS/1.0 409 Batch Completed\r\nNats-Pending-Messages: 0\r\nNats-Pending-Bytes: 50\r\n\r\n"
        );
        assert_eq!(
            status::exceeded_max_request_batch(10),
            b"NATS/1.0 409 Exceeded MaxRequestBatch of 10\r\n\r\n"
        );
        assert_eq!(
            status::exceeded_max_request_expires(60 * NANOS_PER_SEC),
            b"NATS/1.0 409 Exceeded MaxRequestExpires of 1m0s\r\n\r\n"
        );
        assert_eq!(
            status::bad_request("heartbeat value too large"),
            b"NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n"
        );
        assert_eq!(
            status::idle_heartbeat(4, 9, None),
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\nNats-Last-Stream: 9\r\n\r\n"
        );
        assert_eq!(
            status::idle_heartbeat(0, 0, Some("$JSC.FC.x")),
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 0\r\nNats-Consumer-Stalled: $JSC.FC.x\r\n\r\n"
        );
    }

    #[test]
    fn go_durations() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (2_500_000, "2.5ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (90_000_000_000, "1m30s"),
            (7_200_000_000_000, "2h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-3_000_000_000, "-3s"),
        ] {
            assert_eq!(format_go_duration(nanos), text);
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("2h45m"), Ok(9_900_000_000_000));
        assert_eq!(parse_go_duration("300us"), Ok(300_000));
        assert_eq!(parse_go_duration("300μs"), Ok(300_000));
        assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
        assert_eq!(parse_go_duration("+0"), Ok(0));
        assert_eq!(format_go_duration(i64::MIN), "-2562047h47m16.854775808s");
        assert_eq!(parse_go_duration("-2562047h47m16.854775808s"), Ok(i64::MIN));
        for bad in [
            "",
            "5",
            "s",
            ".s",
            "1x",
            "1.5",
            "-",
            "9999999999999999999h",
            "2562047h47m16.854775808s",
        ] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339_nanos(1_704_164_645_123_456_789),
            "2024-01-02T03:04:05.123456789Z"
        );
        assert_eq!(
            format_rfc3339_nanos(1_704_164_645_120_000_000),
            "2024-01-02T03:04:05.12Z"
        );
        assert_eq!(
            format_rfc3339_nanos(951_782_400 * NANOS_PER_SEC),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            parse_rfc3339_nanos("2024-01-02T03:04:05.12Z"),
            Some(1_704_164_645_120_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-01-02T04:04:05+01:00"),
            Some(1_704_164_645_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos("2024-01-01T22:04:05.5-05:00"),
            Some(1_704_164_645_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_nanos(GO_ZERO_TIME),
            Some(-62_135_596_800 * i128::from(NANOS_PER_SEC))
        );
        for bad in [
            "",
            "2024-01-02",
            "2024-02-30T00:00:00Z",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05Z",
            "2024-01-02T03:04:05.Z",
            "2024-01-02T24:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
        }
        for nanos in [
            0,
            1,
            1_704_164_645_123_456_789,
            -86_400_000_000_001,
            4_102_444_800_000_000_000,
        ] {
            assert_eq!(
                parse_rfc3339_nanos(&format_rfc3339_nanos(nanos)),
                Some(i128::from(nanos))
            );
        }
    }

    #[test]
    fn base64_matches_go() {
        for (raw, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\xfe\x00", "//4A"),
        ] {
            assert_eq!(base64_bytes::encode(raw), encoded);
            assert_eq!(base64_bytes::decode(encoded).unwrap(), raw);
        }
        assert_eq!(base64_bytes::decode("Zm9v\r\nYg==").unwrap(), b"foob");
        assert!(base64_bytes::decode("Zm9").is_err());
        assert!(base64_bytes::decode("Zg==Zg==").is_err());
        assert!(base64_bytes::decode("Z!==").is_err());
    }
}
