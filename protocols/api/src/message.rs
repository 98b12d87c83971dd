//! The message every protocol publishes and receives.

use crate::{Headers, Subject};
use bytes::Bytes;

/// A message in flight: what a producer published, as the engine routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it was published.
    pub subject: Subject,
    /// Where replies go (NATS reply subject, MQTT 5 response topic).
    pub reply: Option<Subject>,
    /// Headers, if the producer sent any.
    pub headers: Option<Headers>,
    /// The payload, shared without copying.
    pub payload: Bytes,
}

impl Message {
    /// A message with no reply and no headers.
    pub fn new(subject: Subject, payload: Bytes) -> Self {
        Message {
            subject,
            reply: None,
            headers: None,
            payload,
        }
    }
}
