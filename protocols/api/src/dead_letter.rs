//! Dead-letter stations: where a station's failed messages are copied.
//!
//! A station's dead-letter station (DLS) is an ordinary station named
//! [`dead_letter_station`]`(station)` (`$dls_<station>`: station names cannot hold
//! `.`, so the `$dls.<station>` of the design became `$dls_<station>`). It captures
//! the subjects `$dls.<station>.>`; each copy is stored on
//! `$dls.<station>.<original subject>` and carries the `Junction-Dls-*` headers
//! below.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Prefix of every dead-letter station's name.
pub const DLS_PREFIX: &str = "$dls_";

/// The dead-letter station of `station`.
pub fn dead_letter_station(station: &str) -> String {
    format!("{DLS_PREFIX}{station}")
}

/// The subject prefix (without the trailing `.`) of `station`'s dead letters.
pub fn dead_letter_subject_prefix(station: &str) -> String {
    format!("$dls.{station}")
}

/// Header: why the message is here: `max_deliveries`, `terminated` or
/// `schema_violation`.
pub const DLS_REASON: &str = "Junction-Dls-Reason";
/// Header: the station the message was published to.
pub const DLS_STATION: &str = "Junction-Dls-Station";
/// Header: the subject it was published on.
pub const DLS_SUBJECT: &str = "Junction-Dls-Subject";
/// Header: its sequence in that station (absent for schema violations, which were
/// never stored).
pub const DLS_SEQUENCE: &str = "Junction-Dls-Sequence";
/// Header: when the station received it, RFC 3339 (UTC, nanoseconds).
pub const DLS_TIMESTAMP: &str = "Junction-Dls-Timestamp";
/// Header: the consumer group that gave up on it (`max_deliveries`, `terminated`).
pub const DLS_GROUP: &str = "Junction-Dls-Group";
/// Header: how many times that group delivered it.
pub const DLS_DELIVERIES: &str = "Junction-Dls-Deliveries";
/// Header: the reason a consumer gave when terminating it (`+TERM reason`).
pub const DLS_TERM_REASON: &str = "Junction-Dls-Term-Reason";
/// Header: the schema validation errors, `; `-separated.
pub const DLS_VALIDATION_ERROR: &str = "Junction-Dls-Validation-Error";

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// A consumer group delivered it `max_deliver` times without an ack.
    MaxDeliveries,
    /// A consumer terminated it (NATS `+TERM`, HTTP or WebSocket `term`).
    Terminated,
    /// It did not match the station's schema.
    SchemaViolation,
}

impl DeadLetterReason {
    /// The value of [`DLS_REASON`].
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MaxDeliveries => "max_deliveries",
            DeadLetterReason::Terminated => "terminated",
            DeadLetterReason::SchemaViolation => "schema_violation",
        }
    }
}

/// Which failures a station copies to its dead-letter station, and how long they
/// are kept there. Everything is off by default: a station gets a DLS once one
/// cause is switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadLetterPolicy {
    /// Copy messages that exceeded a group's `max_deliver`.
    pub max_deliveries: bool,
    /// Copy messages a consumer terminated.
    pub terminated: bool,
    /// Copy messages refused by the station's schema.
    pub schema_violation: bool,
    /// Most dead letters kept (-1 = unlimited); the oldest make room.
    pub max_msgs: i64,
    /// Oldest dead letter kept (zero = forever).
    #[serde(with = "duration_ms")]
    pub max_age: Duration,
}

impl Default for DeadLetterPolicy {
    fn default() -> Self {
        DeadLetterPolicy {
            max_deliveries: false,
            terminated: false,
            schema_violation: false,
            max_msgs: 10_000,
            max_age: Duration::ZERO,
        }
    }
}

impl DeadLetterPolicy {
    /// Is any cause captured?
    pub fn enabled(&self) -> bool {
        self.max_deliveries || self.terminated || self.schema_violation
    }

    /// Is `reason` captured?
    pub fn captures(&self, reason: DeadLetterReason) -> bool {
        match reason {
            DeadLetterReason::MaxDeliveries => self.max_deliveries,
            DeadLetterReason::Terminated => self.terminated,
            DeadLetterReason::SchemaViolation => self.schema_violation,
        }
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Which dead letters to re-send, and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResendRequest {
    /// Dead-letter sequences to re-send; `None` re-sends every one stored now.
    pub ids: Option<Vec<u64>>,
    /// Re-send to this group instead of the group that failed each message.
    pub group: Option<String>,
    /// Re-publish into the station (every group sees it again, as a new message)
    /// instead of handing it back to one group.
    pub to_station: bool,
}

/// Where a resend task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendState {
    /// Still working.
    Running,
    /// Finished (some messages may have failed; see `failed`).
    Done,
}

/// A resend task's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResendStatus {
    /// Task id, for polling.
    pub id: u64,
    /// The station whose dead letters are re-sent.
    pub station: String,
    /// Running or done.
    pub state: ResendState,
    /// Dead letters selected.
    pub total: u64,
    /// Handed back to a group (the original message was still stored).
    pub redelivered: u64,
    /// Re-published into the station as a new message.
    pub republished: u64,
    /// Could not be re-sent; see `errors`.
    pub failed: u64,
    /// Why some failed (at most 100 entries), `"<dls seq>: <why>"`.
    pub errors: Vec<String>,
    /// When the task started.
    pub started: SystemTime,
    /// When it finished.
    pub finished: Option<SystemTime>,
}
