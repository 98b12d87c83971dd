//! Policy enums (retention, discard, storage, compression, deliver, ack, replay, action).

#[allow(unused_imports)]
use super::*;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

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
