//! Consumer configuration and info, and pull requests.

#[allow(unused_imports)]
use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Deliver nothing until this time, RFC 3339 (nats-server 2.11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<String>,
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
    /// Paused now (`pause_until` is in the future; nats-server 2.11).
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Nanoseconds until the pause ends.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub pause_remaining: i64,
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
