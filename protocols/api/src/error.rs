//! Errors the engine returns to front-ends.

use crate::SubjectError;

/// Why the engine refused an operation. Front-ends map each variant to their
/// protocol's own error (NATS `-ERR`, MQTT reason code, HTTP status).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A subject, filter or queue name is malformed.
    #[error("invalid subject: {0}")]
    InvalidSubject(#[from] SubjectError),
    /// The credentials were missing or wrong.
    #[error("authorization violation")]
    AuthorizationViolation,
    /// The server is at its connection limit.
    #[error("maximum connections exceeded")]
    MaxConnections,
    /// The client is at its subscription limit.
    #[error("maximum subscriptions exceeded")]
    MaxSubscriptions,
    /// The engine is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// No station has that name.
    #[error("stream not found")]
    StationNotFound,
    /// A station with that name exists with a different configuration.
    #[error("stream name already in use with a different configuration")]
    StationNameInUse,
    /// The station's subjects overlap another station's.
    #[error("subjects overlap with an existing stream")]
    SubjectsOverlap,
    /// The station configuration is invalid.
    #[error("{0}")]
    InvalidConfig(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// `Nats-Expected-Last-Sequence` did not match: the station's last sequence.
    #[error("wrong last sequence: {0}")]
    WrongLastSequence(u64),
    /// `Nats-Expected-Last-Subject-Sequence` did not match: that subject's last sequence.
    #[error("wrong last sequence: {0}")]
    WrongLastSubjectSequence(u64),
    /// `Nats-Expected-Last-Msg-Id` did not match: the last message id.
    #[error("wrong last msg ID: {0}")]
    WrongLastMsgId(String),
    /// `Nats-Expected-Stream` did not match.
    #[error("expected stream does not match")]
    WrongExpectedStation,
    /// The message is larger than the station allows.
    #[error("message size exceeds maximum allowed")]
    MessageTooLarge,
    /// The station is full and discards new messages.
    #[error("maximum messages exceeded")]
    MaxMessages,
    /// The station is full (bytes) and discards new messages.
    #[error("maximum bytes exceeded")]
    MaxBytes,
    /// The publish asked for a rollup (`Nats-Rollup`), which the station does not allow.
    #[error("rollup not permitted")]
    RollupNotPermitted,
    /// No such message.
    #[error("no message found")]
    MessageNotFound,
    /// The station refuses deletes or purges.
    #[error("{0}")]
    Denied(String),
    /// No consumer group has that name.
    #[error("consumer not found")]
    GroupNotFound,
    /// A group with that name exists with a different configuration.
    #[error("consumer already exists")]
    GroupExists,
    /// The group configuration is invalid.
    #[error("{0}")]
    InvalidGroupConfig(String),
    /// The station has as many groups as it allows.
    #[error("maximum consumers limit reached")]
    MaxGroups,
    /// Storage failed; the station accepts no writes until restart.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The payload does not match the JSON Schema attached to the capturing station;
    /// nothing was stored. Front-ends answer with their protocol's "invalid payload"
    /// error (NATS PubAck error 19001, MQTT 5 reason 0x99, HTTP 422).
    #[error("schema violation: {0}")]
    SchemaViolation(SchemaViolation),
    /// No schema has that name (or that version).
    #[error("schema not found")]
    SchemaNotFound,
    /// A schema with that name exists already.
    #[error("schema already exists")]
    SchemaExists,
    /// The schema is attached to a station and cannot be deleted.
    #[error("{0}")]
    SchemaInUse(String),
    /// No routing rule has that name.
    #[error("routing rule not found")]
    RoutingRuleNotFound,
    /// No dead-letter resend task has that id.
    #[error("resend task not found")]
    ResendTaskNotFound,
    /// No connected client has that id.
    #[error("connection not found")]
    ClientNotFound,
    /// A content-based routing rule (named here) dropped the message: nothing was
    /// stored or delivered. Front-ends tell the producer (NATS PubAck error, HTTP
    /// 202 with `dropped_by`).
    #[error("message dropped by routing rule '{0}'")]
    DroppedByRule(String),
    /// The subject belongs to the broker (MQTT session state, dead letters, system
    /// events): clients cannot publish into it. NATS answers a permissions
    /// violation, HTTP 403.
    #[error("subject '{0}' is reserved for the broker's internal state")]
    InternalSubject(String),
    /// The station belongs to the broker (`$MQTT_*`, `$sys*`, `$dls_*`): clients
    /// cannot create, change, delete or purge it.
    #[error("station '{0}' is internal to the broker and cannot be changed by clients")]
    InternalStation(String),
}

/// Why a payload failed its station's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// The station that refused the message.
    pub station: String,
    /// The schema's name.
    pub schema: String,
    /// The version validated against.
    pub version: u32,
    /// Validation errors, each `"<JSON pointer>: <what is wrong>"` (`(root)` for the
    /// document itself). At most [`SchemaViolation::MAX_ERRORS`].
    pub errors: Vec<String>,
}

impl SchemaViolation {
    /// Most errors reported per message.
    pub const MAX_ERRORS: usize = 10;
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message does not match schema '{}' version {} of station '{}': {}",
            self.schema,
            self.version,
            self.station,
            self.errors.join("; ")
        )
    }
}
