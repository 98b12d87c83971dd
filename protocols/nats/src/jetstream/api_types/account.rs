//! Account info and publish acks.

#[allow(unused_imports)]
use super::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

pub(super) fn push_json_string(out: &mut Vec<u8>, text: &str) {
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
