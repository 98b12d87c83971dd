//! Errors the engine returns to front-ends.
//!
//! Shaped like rustls' errors: every [`EngineError`] has a category
//! ([`EngineError::kind`], an [`ErrorKind`]) that is enough to choose a status code,
//! and a variant with the data a front-end needs to word it (a sequence number, a
//! station name, a typed reason). The engine never chooses a protocol's wording:
//! NATS/JetStream answers with nats-server's sentences and error codes, HTTP with its
//! own JSON codes and messages, MQTT with reason codes. `Display` is the broker's own
//! neutral wording, for logs and for protocols that have no wording of their own
//! (MQTT reason strings). No front-end may match on error text.

use crate::{ClientId, SubjectError};

/// The category of an [`EngineError`]: what it means for the caller, whatever the
/// protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed: a subject, a configuration field, a request
    /// parameter (HTTP 400/422; NATS `-ERR` or JetStream 400).
    InvalidInput,
    /// Credentials are missing or wrong, or the client is banned (HTTP 401;
    /// MQTT 0x86/0x87, 0x8A for a banned client id).
    Unauthenticated,
    /// The caller may not do this: a station's policy, the broker's own subjects and
    /// stations (HTTP 403; MQTT 0x87).
    Denied,
    /// The named station, group, message, schema, rule, task or client does not
    /// exist (HTTP 404).
    NotFound,
    /// It exists already with another definition, or is in use (HTTP 409).
    Conflict,
    /// A conditional publish's precondition did not hold (expected stream, last
    /// sequence, last message id): nothing was stored (HTTP 409).
    PreconditionFailed,
    /// A limit is reached: connections, subscriptions, groups, message size, a full
    /// station that discards new messages (HTTP 413/429/503; MQTT 0x97).
    LimitReached,
    /// The message was refused as a whole by the broker's rules: a schema violation
    /// or a routing rule that dropped it.
    Rejected,
    /// The broker cannot do it now: shutting down, or storage failed (HTTP 503).
    Unavailable,
    /// A stored record failed its checksum or could not be decoded (HTTP 500).
    Corrupt,
}

/// Why a station, schema or routing-rule definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two of the station's subjects are equal or overlap.
    #[error("two of the station's subjects are equal or overlap")]
    DuplicateSubjects,
    /// An update tried to change the storage kind (file or memory).
    #[error("a station's storage kind cannot be changed")]
    StorageChange,
    /// An update tried to change the retention policy.
    #[error("a station's retention policy cannot be changed")]
    RetentionChange,
    /// More than one replica was asked of a broker that is not clustered.
    #[error("more than one replica needs a cluster")]
    ReplicasUnsupported,
    /// Any other invalid field; the text names the field and what is wrong, in the
    /// broker's words (no protocol's).
    #[error("{0}")]
    Invalid(String),
}

/// Why a consumer-group definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum GroupConfigError {
    /// A work-queue station needs groups with explicit acks.
    #[error("a work-queue station needs explicit acks")]
    WorkQueueNeedsExplicitAck,
    /// A work-queue station already has a group, so a new one needs a filter.
    #[error("a work-queue station allows one group without a filter, alone")]
    WorkQueueUnfilteredNotAlone,
    /// The group's filters overlap another group's on a work-queue station.
    #[error("the group's filters overlap another group's on a work-queue station")]
    WorkQueueFilterNotUnique,
    /// Groups of a work-queue station must start with the first message.
    #[error("a work-queue station's groups must deliver all messages")]
    WorkQueueNotDeliverAll,
    /// Any other invalid field; the text names the field and what is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// What a station's policy or the broker refused to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Denial {
    /// The station denies purges (`deny_purge`).
    #[error("the station does not allow purges")]
    PurgeNotPermitted,
    /// The station denies message deletes (`deny_delete`).
    #[error("the station does not allow deleting messages")]
    DeleteNotPermitted,
    /// The station is sealed: no more writes, deletes or purges.
    #[error("the station is sealed")]
    Sealed,
    /// Dead-letter stations are deleted with their station (purging one is allowed).
    #[error("a dead-letter station is deleted with its station; purge it instead")]
    DeadLetterStationDelete,
    /// The client is not a connection of its own (HTTP requests share one client),
    /// so it cannot be disconnected.
    #[error("client {} cannot be disconnected: it is not a connection of its own", .0.0)]
    NotAConnection(ClientId),
}

/// Why the engine refused an operation. [`EngineError::kind`] gives its category;
/// each front-end words it in its own protocol (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum EngineError {
    /// A subject, filter or queue name is malformed.
    #[error("invalid subject: {0}")]
    InvalidSubject(#[from] SubjectError),
    /// The credentials were missing or wrong.
    #[error("credentials missing or wrong")]
    AuthorizationViolation,
    /// The server is at its connection limit.
    #[error("the server is at its connection limit")]
    MaxConnections,
    /// The client is at its subscription limit.
    #[error("the client is at its subscription limit")]
    MaxSubscriptions,
    /// The engine is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// No station has that name.
    #[error("station not found")]
    StationNotFound,
    /// A station with that name exists with a different configuration.
    #[error("a station with this name exists with a different definition")]
    StationNameInUse,
    /// The station's subjects overlap another station's.
    #[error("the subjects overlap another station's")]
    SubjectsOverlap,
    /// The station (or schema, or routing rule) definition is invalid.
    #[error("{0}")]
    InvalidConfig(ConfigError),
    /// The request is malformed; the text says how, in the broker's words.
    #[error("{0}")]
    BadRequest(String),
    /// The expected last sequence of the station did not match: the station's last
    /// sequence.
    #[error("the station's last sequence is {0}, not the one expected")]
    WrongLastSequence(u64),
    /// The expected last sequence of the subject did not match: that subject's last
    /// sequence.
    #[error("the subject's last sequence is {0}, not the one expected")]
    WrongLastSubjectSequence(u64),
    /// The expected last message id did not match: the last message id.
    #[error("the station's last message id is '{0}', not the one expected")]
    WrongLastMsgId(String),
    /// The expected station is not the one that captured the message.
    #[error("the message went to another station than the one expected")]
    WrongExpectedStation,
    /// The message is larger than the station allows.
    #[error("the message is larger than the station allows")]
    MessageTooLarge,
    /// The station is full (messages) and discards new messages.
    #[error("the station is full (maximum messages) and refuses new ones")]
    MaxMessages,
    /// The station is full (bytes) and discards new messages.
    #[error("the station is full (maximum bytes) and refuses new ones")]
    MaxBytes,
    /// The publish asked for a rollup, which the station does not allow.
    #[error("the station does not allow rollups")]
    RollupNotPermitted,
    /// No such message.
    #[error("message not found")]
    MessageNotFound,
    /// A station's policy or the broker refused the operation.
    #[error("{0}")]
    Denied(Denial),
    /// No consumer group has that name.
    #[error("group not found")]
    GroupNotFound,
    /// A group with that name exists with a different configuration.
    #[error("a group with this name exists with a different definition")]
    GroupExists,
    /// The group configuration is invalid.
    #[error("{0}")]
    InvalidGroupConfig(GroupConfigError),
    /// The station has as many groups as it allows.
    #[error("the station has as many groups as it allows")]
    MaxGroups,
    /// Storage failed; the station accepts no writes until restart.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A cluster-wide change could not reach the meta group's leader (no quorum,
    /// or an election that did not end in time); nothing was changed.
    #[error("cluster meta group unavailable: {0}")]
    NoQuorum(String),
    /// A replicated station could not commit (it has no leader, or its leader
    /// lost its quorum of replicas, or changed during the call). A publish that
    /// gets this was not acknowledged: it may or may not be stored.
    #[error("station replicas unavailable: {0}")]
    ReplicasUnavailable(String),
    /// The cluster has too few nodes (reachable) for what was asked, such as
    /// more replicas than nodes.
    #[error("insufficient resources: {0}")]
    InsufficientResources(String),
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
    /// The schema (named) is attached to these stations and cannot be deleted.
    #[error("schema '{schema}' is attached to station(s) {}; detach it first", stations.join(", "))]
    SchemaInUse {
        /// The schema.
        schema: String,
        /// The stations using it, sorted.
        stations: Vec<String>,
    },
    /// No routing rule has that name.
    #[error("routing rule not found")]
    RoutingRuleNotFound,
    /// No dead-letter resend task has that id.
    #[error("resend task not found")]
    ResendTaskNotFound,
    /// No connected client has that id.
    #[error("connection not found")]
    ClientNotFound,
    /// No tenant has that name.
    #[error("tenant not found")]
    TenantNotFound,
    /// The client is banned (after repeated failed logins, or by an operator):
    /// it was refused before its credentials were checked. Front-ends answer
    /// as their protocol says a banned client is answered (MQTT 5 CONNACK
    /// 0x8A, 3.1.1 0x05).
    #[error("banned")]
    Banned,
    /// No ban in force has that kind and that address or client id.
    #[error("ban not found")]
    BanNotFound,
    /// The tenant cannot be changed over the API (why is said): it is defined in
    /// the configuration file, or it is the default tenant.
    #[error("{0}")]
    TenantReadOnly(String),
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
    /// A stored record failed its checksum or could not be decoded: it is never
    /// handed to a client. Counted in `junction_storage_corrupt_records_total`.
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// A message in the station's remote tier (S3) cannot be read now: the
    /// bucket did not answer in time or answered with an error. The message is
    /// not lost and is never skipped; the read may be retried (HTTP 503, NATS
    /// 503-style status).
    #[error("remote tier unavailable: {0}")]
    TierUnavailable(String),
    /// No manifest under that unique id in the bucket (HTTP 404).
    #[error("{0}")]
    TierManifestNotFound(String),
    /// A station cannot adopt that manifest now: it already holds messages,
    /// or another station uses the objects (HTTP 409).
    #[error("{0}")]
    TierAdoptConflict(String),
    /// In a cluster: the station's messages and groups are on another node, and
    /// this request is not served for it here (HTTP 421, with the node's name).
    #[error("station '{station}' is held by node {node}; send this request to that node")]
    StationElsewhere {
        /// The station.
        station: String,
        /// The node that holds it.
        node: String,
    },
    /// In a cluster: the node that holds the station did not answer (its link is
    /// down, or it did not answer in time); a publish may or may not be stored.
    #[error("node {0}, which holds the station, did not answer")]
    NodeUnreachable(String),
    /// The station belongs to the broker (`$MQTT_*`, `$sys*`, `$dls_*`): clients
    /// cannot create, change, delete or purge it.
    #[error("station '{0}' is internal to the broker and cannot be changed by clients")]
    InternalStation(String),
    /// `junction cluster join` on a node that is not a cluster of one with
    /// nothing defined: joining would drop what it has.
    #[error("this node cannot join another cluster: {0}")]
    ClusterStateExists(String),
    /// The tenant is at one of its limits (`[[tenants]] limits`, `jetstream`).
    #[error("the tenant is at its limit of {limit} {what}")]
    TenantLimit {
        /// What is limited.
        what: TenantLimit,
        /// The limit.
        limit: usize,
    },
    /// A message was not stored: the bytes its tenant stores in stations of that
    /// storage kind ([`TenantLimit::FileStorage`] or
    /// [`TenantLimit::MemoryStorage`]), with this message, would exceed the
    /// tenant's `max_file` / `max_memory` (nats-server's "resource limits
    /// exceeded for account"). Nothing already stored is dropped for it.
    #[error("not stored: the tenant's stations would hold more than its limit of {limit} {what}")]
    TenantStorageFull {
        /// [`TenantLimit::FileStorage`] or [`TenantLimit::MemoryStorage`].
        what: TenantLimit,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A message was not stored: the data directory's disk is nearly full (the
    /// reason says how full), so stored writes are fenced until space returns
    /// ([limits] `disk_max_used_percent`, `disk_min_free`). Core messages still
    /// flow; reads, acks and purges go on.
    #[error("not stored: {0}")]
    StorageFenced(String),
    /// No webhook has that name.
    #[error("webhook not found")]
    WebhookNotFound,
    /// The webhook cannot be changed over the API (why is said): it is defined
    /// in the configuration file.
    #[error("{0}")]
    WebhookReadOnly(String),
}

/// What a tenant's limit bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TenantLimit {
    /// Connections at once.
    Connections,
    /// Stations (JetStream streams).
    Streams,
    /// Consumer groups (JetStream consumers), over all its stations.
    Consumers,
    /// Bytes of file storage (`max_file`): what its file stations reserve with
    /// their `max_bytes` (times their replicas) when one is created or changed,
    /// and what they store when a message is published.
    FileStorage,
    /// Bytes of memory storage (`max_memory`), as [`TenantLimit::FileStorage`]
    /// for memory stations.
    MemoryStorage,
}

impl std::fmt::Display for TenantLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TenantLimit::Connections => "connections",
            TenantLimit::Streams => "stations",
            TenantLimit::Consumers => "consumer groups",
            TenantLimit::FileStorage => "bytes of file storage",
            TenantLimit::MemoryStorage => "bytes of memory storage",
        })
    }
}

impl EngineError {
    /// The error's category.
    pub fn kind(&self) -> ErrorKind {
        use EngineError as E;
        match self {
            E::InvalidSubject(_)
            | E::InvalidConfig(_)
            | E::BadRequest(_)
            | E::InvalidGroupConfig(_) => ErrorKind::InvalidInput,
            E::AuthorizationViolation | E::Banned => ErrorKind::Unauthenticated,
            E::RollupNotPermitted
            | E::Denied(_)
            | E::InternalSubject(_)
            | E::InternalStation(_) => ErrorKind::Denied,
            E::StationNotFound
            | E::MessageNotFound
            | E::GroupNotFound
            | E::SchemaNotFound
            | E::RoutingRuleNotFound
            | E::ResendTaskNotFound
            | E::ClientNotFound
            | E::TenantNotFound
            | E::BanNotFound
            | E::TierManifestNotFound(_)
            | E::WebhookNotFound => ErrorKind::NotFound,
            E::StationNameInUse
            | E::SubjectsOverlap
            | E::GroupExists
            | E::SchemaExists
            | E::SchemaInUse { .. }
            | E::ClusterStateExists(_)
            | E::TierAdoptConflict(_)
            | E::TenantReadOnly(_)
            | E::WebhookReadOnly(_) => ErrorKind::Conflict,
            E::WrongLastSequence(_)
            | E::WrongLastSubjectSequence(_)
            | E::WrongLastMsgId(_)
            | E::WrongExpectedStation => ErrorKind::PreconditionFailed,
            E::MaxConnections
            | E::MaxSubscriptions
            | E::MessageTooLarge
            | E::MaxMessages
            | E::MaxBytes
            | E::MaxGroups
            | E::TenantLimit { .. }
            | E::TenantStorageFull { .. } => ErrorKind::LimitReached,
            E::StorageFenced(_) => ErrorKind::Unavailable,
            E::SchemaViolation(_) | E::DroppedByRule(_) => ErrorKind::Rejected,
            E::ShuttingDown
            | E::Storage(_)
            | E::NoQuorum(_)
            | E::ReplicasUnavailable(_)
            | E::InsufficientResources(_)
            | E::StationElsewhere { .. }
            | E::NodeUnreachable(_)
            | E::TierUnavailable(_) => ErrorKind::Unavailable,
            E::CorruptRecord(_) => ErrorKind::Corrupt,
        }
    }

    /// An invalid station, schema or rule field, explained in the broker's words.
    pub fn invalid_config(why: impl Into<String>) -> Self {
        EngineError::InvalidConfig(ConfigError::Invalid(why.into()))
    }

    /// An invalid group field, explained in the broker's words.
    pub fn invalid_group_config(why: impl Into<String>) -> Self {
        EngineError::InvalidGroupConfig(GroupConfigError::Invalid(why.into()))
    }
}

/// Why a payload failed its station's schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_is_reachable_and_typed_data_survives() {
        assert_eq!(EngineError::StationNotFound.kind(), ErrorKind::NotFound);
        assert_eq!(
            EngineError::WrongLastSequence(7).kind(),
            ErrorKind::PreconditionFailed
        );
        assert_eq!(
            EngineError::InvalidGroupConfig(GroupConfigError::WorkQueueNeedsExplicitAck).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            EngineError::Denied(Denial::PurgeNotPermitted).kind(),
            ErrorKind::Denied
        );
        assert_eq!(EngineError::MaxBytes.kind(), ErrorKind::LimitReached);
        let full = EngineError::TenantStorageFull {
            what: TenantLimit::FileStorage,
            limit: 1_000_000,
        };
        assert_eq!(full.kind(), ErrorKind::LimitReached);
        assert_eq!(
            full.to_string(),
            "not stored: the tenant's stations would hold more than its limit of 1000000 bytes of file storage"
        );
        assert_eq!(
            EngineError::Storage("x".into()).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            EngineError::SchemaInUse {
                schema: "order".into(),
                stations: vec!["a".into(), "b".into()]
            }
            .to_string(),
            "schema 'order' is attached to station(s) a, b; detach it first"
        );
    }
}
