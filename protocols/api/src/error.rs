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
}
