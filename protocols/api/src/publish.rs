//! Publish options: what a producer asks of the station that stores its message
//! (de-duplication, optimistic-concurrency preconditions, rollups), as typed values.
//!
//! Each front-end fills a [`PublishOptions`] from its own protocol and hands it to
//! [`crate::Broker::publish_stored`]; the engine reads the options, never header
//! names. The producer's headers are stored exactly as sent.
//!
//! - NATS (and MQTT user properties) use the JetStream header convention:
//!   [`PublishOptions::from_headers`] reads it the way nats-server does.
//! - HTTP has its own request headers (`Idempotency-Key`, `Junction-Expected-*`)
//!   and also honours the convention's headers set as message headers.
//!
//! The de-duplication id survives a restart because it is part of the stored
//! message: a front-end that takes the id from elsewhere (HTTP's `Idempotency-Key`)
//! stores it as a `Nats-Msg-Id` header, and a station rebuilding its duplicate
//! window reads it back with [`stored_msg_id`], the same rule
//! [`PublishOptions::from_headers`] applies.

use crate::Headers;

/// `Nats-Msg-Id`: the producer's de-duplication id.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// `msg-id`: the de-duplication id as an MQTT 5 user property (also read over NATS).
pub const MSG_ID_LOWER: &str = "msg-id";
/// `Nats-Expected-Stream`: the station that must capture the message.
pub const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
/// `Nats-Expected-Last-Sequence`: the station's last sequence must be this.
pub const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
/// `Nats-Expected-Last-Subject-Sequence`: the last sequence stored on the message's
/// subject must be this (0: none).
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// `Nats-Expected-Last-Msg-Id`: the last de-duplication id the station stored must
/// be this.
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
/// `Nats-Rollup`: replace earlier messages (of the subject, or all).
pub const ROLLUP: &str = "Nats-Rollup";

/// Every header of the JetStream convention: they steer how a station stores a
/// message. A copy the engine makes (a dead letter) leaves them out.
pub const STEERING_HEADERS: [&str; 7] = [
    MSG_ID,
    MSG_ID_LOWER,
    EXPECTED_STREAM,
    EXPECTED_LAST_SEQUENCE,
    EXPECTED_LAST_MSG_ID,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    ROLLUP,
];

/// What a producer asks of the station that stores its message. `Default` asks
/// nothing. A message no station captures ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishOptions {
    /// De-duplication id: a second message with the same id within the station's
    /// duplicate window is acknowledged with the first one's sequence
    /// (`duplicate: true`) and not stored again. Never empty.
    pub msg_id: Option<String>,
    /// Refuse ([`crate::EngineError::WrongExpectedStation`]) unless the capturing
    /// station has this name.
    pub expected_station: Option<String>,
    /// Refuse ([`crate::EngineError::WrongLastSequence`]) unless the station's last
    /// sequence is this.
    pub expected_last_seq: Option<u64>,
    /// Refuse ([`crate::EngineError::WrongLastSubjectSequence`]) unless the last
    /// sequence stored on the message's subject is this (0: none stored).
    pub expected_last_subject_seq: Option<u64>,
    /// Refuse ([`crate::EngineError::WrongLastMsgId`]) unless the last
    /// de-duplication id the station stored is this.
    pub expected_last_msg_id: Option<String>,
    /// Replace earlier messages: only on a station with `allow_rollup` (and
    /// not `deny_purge`); others refuse it
    /// ([`crate::EngineError::RollupNotPermitted`]).
    pub rollup: Option<Rollup>,
}

/// What a rollup replaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Rollup {
    /// Every earlier message on the message's subject (`sub`).
    Subject,
    /// Every earlier message of the station (`all`).
    All,
    /// A value the protocol does not define (nats-server checks that rollups are
    /// allowed before it looks at the value, so this too is "not permitted").
    Other(String),
}

impl PublishOptions {
    /// No options: what a plain publish asks.
    pub const NONE: PublishOptions = PublishOptions {
        msg_id: None,
        expected_station: None,
        expected_last_seq: None,
        expected_last_subject_seq: None,
        expected_last_msg_id: None,
        rollup: None,
    };

    /// True when nothing is asked.
    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }

    /// Only the de-duplication id (for the copies a front-end keeps of the same
    /// publish in its own stations: they are duplicates when the publish is, but
    /// the preconditions are about the producer's station).
    pub fn dedup_only(&self) -> PublishOptions {
        PublishOptions {
            msg_id: self.msg_id.clone(),
            ..Self::NONE
        }
    }

    /// The options of the JetStream header convention, read as nats-server reads
    /// them:
    /// - an empty value is no value;
    /// - the de-duplication id is `Nats-Msg-Id`, else `msg-id` ([`stored_msg_id`]);
    /// - a sequence that is not a decimal number is taken as `u64::MAX`
    ///   (nats-server parses it to -1), which never matches: the publish is
    ///   refused with the station's actual last sequence, as nats-server answers;
    /// - `Nats-Rollup` is compared without case.
    pub fn from_headers(headers: Option<&Headers>) -> PublishOptions {
        let Some(h) = headers else {
            return Self::NONE;
        };
        let value = |name: &str| h.get(name).map(str::trim).filter(|v| !v.is_empty());
        PublishOptions {
            msg_id: stored_msg_id(headers).map(str::to_owned),
            expected_station: value(EXPECTED_STREAM).map(str::to_owned),
            expected_last_seq: value(EXPECTED_LAST_SEQUENCE).map(nats_sequence),
            expected_last_subject_seq: value(EXPECTED_LAST_SUBJECT_SEQUENCE).map(nats_sequence),
            expected_last_msg_id: value(EXPECTED_LAST_MSG_ID).map(str::to_owned),
            rollup: value(ROLLUP).map(|v| match v.to_ascii_lowercase().as_str() {
                "sub" => Rollup::Subject,
                "all" => Rollup::All,
                _ => Rollup::Other(v.to_owned()),
            }),
        }
    }
}

/// A sequence header's value as nats-server's `parseInt64` reads it: decimal
/// digits only; anything else is -1, which as an unsigned sequence is `u64::MAX`.
fn nats_sequence(v: &str) -> u64 {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse().unwrap_or(u64::MAX)
    } else {
        u64::MAX
    }
}

/// The de-duplication id in a message's headers: `Nats-Msg-Id`, else `msg-id`,
/// non-empty. A station reads it back from what it stored when it rebuilds its
/// duplicate window at start-up.
pub fn stored_msg_id(headers: Option<&Headers>) -> Option<&str> {
    let h = headers?;
    [MSG_ID, MSG_ID_LOWER]
        .iter()
        .find_map(|name| h.get(name).filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.append(*n, *v);
        }
        h
    }

    #[test]
    fn reads_the_jetstream_convention() {
        let h = headers(&[
            ("nats-msg-id", "m1"),
            ("Nats-Expected-Stream", "ORDERS"),
            ("Nats-Expected-Last-Sequence", " 7 "),
            ("Nats-Expected-Last-Subject-Sequence", "0"),
            ("Nats-Expected-Last-Msg-Id", "m0"),
            ("Nats-Rollup", "SUB"),
        ]);
        assert_eq!(
            PublishOptions::from_headers(Some(&h)),
            PublishOptions {
                msg_id: Some("m1".into()),
                expected_station: Some("ORDERS".into()),
                expected_last_seq: Some(7),
                expected_last_subject_seq: Some(0),
                expected_last_msg_id: Some("m0".into()),
                rollup: Some(Rollup::Subject),
            }
        );
        assert!(PublishOptions::from_headers(None).is_none());
        assert!(PublishOptions::from_headers(Some(&headers(&[("Other", "1")]))).is_none());
    }

    #[test]
    fn empty_values_are_absent_and_bad_sequences_never_match() {
        let h = headers(&[
            ("Nats-Msg-Id", ""),
            ("msg-id", "lower"),
            ("Nats-Expected-Stream", ""),
            ("Nats-Expected-Last-Sequence", "abc"),
            ("Nats-Expected-Last-Subject-Sequence", "-1"),
            ("Nats-Rollup", "everything"),
        ]);
        let o = PublishOptions::from_headers(Some(&h));
        // `Nats-Msg-Id` is empty: `msg-id` is the id.
        assert_eq!(o.msg_id.as_deref(), Some("lower"));
        assert_eq!(o.expected_station, None);
        assert_eq!(o.expected_last_seq, Some(u64::MAX));
        assert_eq!(o.expected_last_subject_seq, Some(u64::MAX));
        assert_eq!(o.rollup, Some(Rollup::Other("everything".into())));
        assert_eq!(stored_msg_id(Some(&h)), Some("lower"));
    }

    #[test]
    fn dedup_only_keeps_the_id() {
        let o = PublishOptions {
            msg_id: Some("k".into()),
            expected_last_seq: Some(3),
            ..PublishOptions::NONE
        };
        assert_eq!(
            o.dedup_only(),
            PublishOptions {
                msg_id: Some("k".into()),
                ..PublishOptions::NONE
            }
        );
    }
}
