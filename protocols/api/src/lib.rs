//! The seam between Junction's protocol front-ends and its station engine.
//!
//! Every front-end (NATS, MQTT, HTTP/WebSocket) talks to the broker only through the
//! [`Engine`] trait and the types defined here: [`Message`], [`Subject`],
//! [`SubjectFilter`], [`Headers`], [`ClientRecord`] and [`EngineError`].
//!
//! What this crate is not: it does no I/O, holds no storage and knows no wire format.
//! It must never depend on tokio I/O, `junction-storage`, `junction-cluster` or any
//! protocol crate, so that a front-end can be compiled, tested and fuzzed without the
//! engine behind it.
//!
//! Invariants worth naming:
//! - A [`Subject`] is always a valid literal publish subject; a [`SubjectFilter`] is
//!   always a valid subscription filter. Both are checked once, at the edge.
//! - [`Subscriber::deliver`] is called on the publisher's task and must never block
//!   or await: it queues and returns.
//! - The engine reads what a producer asks of a station (de-duplication,
//!   preconditions) from [`PublishOptions`], which each front-end fills from its own
//!   protocol; it never reads header names for it.

mod ban;
mod client;
mod dead_letter;
mod engine;
mod error;
mod event;
mod fanout;
mod group;
mod headers;
mod lineage;
mod message;
mod notification;
mod permissions;
mod publish;
mod routing;
mod schema;
pub mod scram;
mod station;
mod subject;
mod tenant;
mod transform;

pub use ban::{BanInfo, BanKind};
pub use client::{
    ClientId, ClientKind, ClientRecord, ClientSnapshot, ClientStats, CloseCause, Credentials,
    Identity, NewClient, Protocol, SubscriptionSnapshot, TenantId,
};
pub use dead_letter::{
    DLS_DELIVERIES, DLS_GROUP, DLS_PREFIX, DLS_REASON, DLS_SEQUENCE, DLS_STATION, DLS_SUBJECT,
    DLS_TERM_REASON, DLS_TIMESTAMP, DLS_VALIDATION_ERROR, DeadLetterPolicy, DeadLetterReason,
    ResendRequest, ResendState, ResendStatus, dead_letter_station, dead_letter_subject_prefix,
};
pub use engine::{
    AckDone, Admin, AdminFuture, Backpressure, Broker, ClusterNode, ClusterSnapshot, Delivery,
    DiskCacheStats, Engine, Monitor, PublishOutcome, ReplicaRole, ServerSnapshot, StationQuota,
    StorageStats, Subscriber, SubscriptionId, TierAdoption, TierManifest, TierStats,
};
pub use error::{
    ConfigError, Denial, EngineError, ErrorKind, GroupConfigError, SchemaViolation, TenantLimit,
};
pub use event::{
    AlarmState, EVENTS_STATION, EVENTS_SUBJECT_PREFIX, EventFilter, Severity, SystemEvent,
    SystemEventKind,
};
pub use fanout::FanoutId;
pub use group::{
    AckKind, AckPolicy, DeliverPolicy, Delivered, FetchEnd, FetchRequest, FetchSink, GroupConfig,
    GroupInfo, GroupState, PushConfig, parse_sample_freq,
};
pub use headers::Headers;
pub use lineage::{
    LINEAGE_CLIENT, LINEAGE_CONN_ID, LINEAGE_METADATA_KEY, LINEAGE_MSG_ID, LINEAGE_OPT_IN,
    LINEAGE_PROTOCOL, LINEAGE_RECEIVED, LINEAGE_REMOTE, LINEAGE_SUBJECT, LINEAGE_USER,
    LineageDelivery, LineageEdge, LineageError, LineageGraph, LineageMessage, LineageNodeKind,
    LineageRecord, LineageTrace, RESERVED_PREFIX, TRACEPARENT, hex_id, is_reserved_header,
    parse_hex_id, protocol_name, render_lineage, trace_id_of,
};
pub use message::Message;
pub use notification::{
    NotificationCentre, REDACTED_SECRET, WebhookHealth, WebhookInfo, WebhookSource,
    WebhookTestOutcome,
};
pub use permissions::{PermissionRule, Permissions, ResponsePermission, SubjectRules};
pub use publish::{PublishOptions, Rollup, STEERING_HEADERS, stored_msg_id};
pub use routing::{Predicate, RoutingAction, RoutingRule};
pub use schema::{SchemaFormat, SchemaInfo, SchemaVersion};
pub use station::{
    CompactPolicy, Discard, MessageQuery, PubAck, Purge, RemoteOrigin, ReplicaInfo, Republish,
    Retention, SourceStatus, StationConfig, StationInfo, StationSource, StationState, StorageKind,
    StoredCallback, StoredMessage, SubjectTransform, TierPolicy, TierState, is_tombstone,
};
pub use subject::{
    INTERNAL_PUBLISH_FILTERS, MAX_SUBJECT_LEN, QueueGroup, RESERVED_FILTERS, Subject, SubjectError,
    SubjectFilter, check_subject_bytes, filters_overlap, is_internal_publish_subject,
    is_never_stored, is_per_message_subject, is_system_subject, reserved_overlap,
};
pub use tenant::{
    PermissionsConfig, ResponsesConfig, RulesConfig, StringList, TenantConnectionLimits,
    TenantInfo, TenantSource, TenantSpec, TenantStationLimits, TenantUsage, User, UserInfo,
};
pub use transform::{
    CompiledTransform, TransformError, validate_destination as validate_transform_destination,
};
