//! Ack reply subjects and ack payloads.

#[allow(unused_imports)]
use super::*;
use serde::Deserialize;

// ---------------------------------------------------------------------------------------
// Ack reply subjects and ack payloads
// ---------------------------------------------------------------------------------------

/// The parsed reply subject of a delivered JetStream message.
///
/// nats-server 2.10 builds the 9-token v1 form
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts ns>.<pending>`.
/// [`parse_ack_reply`] also accepts the v2 form of ADR-15,
/// `$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
/// seq>.<ts ns>.<pending>[.<token>]` (11 or 12 tokens; further tokens are ignored, as
/// async-nats does; a domain of `_` means none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckReply<'a> {
    /// Domain (v2 only; `_` parses as `None`).
    pub domain: Option<&'a str>,
    /// Account hash (v2 only).
    pub account_hash: Option<&'a str>,
    /// Stream name.
    pub stream: &'a str,
    /// Consumer name.
    pub consumer: &'a str,
    /// Delivery count of this message (1 on first delivery).
    pub delivered: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Consumer (delivery) sequence.
    pub consumer_seq: u64,
    /// Message timestamp, Unix nanoseconds.
    pub timestamp_ns: i64,
    /// Messages still pending for the consumer after this one.
    pub pending: u64,
    /// Trailing random token (v2 only).
    pub token: Option<&'a str>,
}

impl AckReply<'_> {
    /// The subject: v1 unless an account hash is set, then v2 (domain `_` when none).
    pub fn to_subject(&self) -> String {
        match self.account_hash {
            None => ack_reply_subject(
                self.stream,
                self.consumer,
                self.delivered,
                self.stream_seq,
                self.consumer_seq,
                self.timestamp_ns,
                self.pending,
            ),
            Some(hash) => {
                let mut subject = format!(
                    "{}{}.{}.{}.{}.{}.{}.{}.{}.{}",
                    subjects::ACK_PREFIX,
                    self.domain.unwrap_or("_"),
                    hash,
                    self.stream,
                    self.consumer,
                    self.delivered,
                    self.stream_seq,
                    self.consumer_seq,
                    self.timestamp_ns,
                    self.pending,
                );
                if let Some(token) = self.token {
                    subject.push('.');
                    subject.push_str(token);
                }
                subject
            }
        }
    }
}

/// The v1 ack reply subject nats-server 2.10 puts on every delivered message:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`.
pub fn ack_reply_subject(
    stream: &str,
    consumer: &str,
    delivered: u64,
    stream_seq: u64,
    consumer_seq: u64,
    timestamp_ns: i64,
    pending: u64,
) -> String {
    // Written by hand rather than with `format!`: one is built for every message
    // a consumer gets, and the formatting machinery was 8% of the pull path.
    let mut numbers = itoa::Buffer::new();
    let mut subject = String::with_capacity(
        subjects::ACK_PREFIX.len() + stream.len() + consumer.len() + 2 + 5 * 21,
    );
    subject.push_str(subjects::ACK_PREFIX);
    subject.push_str(stream);
    subject.push('.');
    subject.push_str(consumer);
    for n in [delivered, stream_seq, consumer_seq] {
        subject.push('.');
        subject.push_str(numbers.format(n));
    }
    subject.push('.');
    subject.push_str(numbers.format(timestamp_ns));
    subject.push('.');
    subject.push_str(numbers.format(pending));
    subject
}

/// Why a subject is not an ack reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckReplyError {
    /// Does not start with `$JS.ACK.`.
    #[error("not a $JS.ACK subject")]
    NotAck,
    /// Neither 9 tokens (v1) nor at least 11 (v2).
    #[error("bad number of tokens in ack subject: {0}")]
    TokenCount(usize),
    /// A numeric token is not a plain decimal number.
    #[error("bad number in ack subject token {0}")]
    BadNumber(usize),
}

/// Parse an ack reply subject (v1 or v2); numbers must be plain decimal digits.
pub fn parse_ack_reply(subject: &str) -> Result<AckReply<'_>, AckReplyError> {
    if !subject.starts_with(subjects::ACK_PREFIX) {
        return Err(AckReplyError::NotAck);
    }
    // At most 12 tokens are read (v2 with its random token); more are counted
    // only. No allocation: this runs for every ack.
    let mut tokens = [""; 12];
    let mut count = 0;
    for t in subject.split('.') {
        if let Some(slot) = tokens.get_mut(count) {
            *slot = t;
        }
        count += 1;
    }
    let (domain, account_hash, base, token) = match count {
        9 => (None, None, 2, None),
        n if n >= 11 => {
            let domain = tokens[2];
            (
                (domain != "_").then_some(domain),
                Some(tokens[3]),
                4,
                (count > 11).then_some(tokens[11]),
            )
        }
        n => return Err(AckReplyError::TokenCount(n)),
    };
    let number = |index: usize| -> Result<u64, AckReplyError> {
        parse_decimal(tokens[index]).ok_or(AckReplyError::BadNumber(index))
    };
    let timestamp = number(base + 5)?;
    Ok(AckReply {
        domain,
        account_hash,
        stream: tokens[base],
        consumer: tokens[base + 1],
        delivered: number(base + 2)?,
        stream_seq: number(base + 3)?,
        consumer_seq: number(base + 4)?,
        timestamp_ns: i64::try_from(timestamp).map_err(|_| AckReplyError::BadNumber(base + 5))?,
        pending: number(base + 6)?,
        token,
    })
}

pub(super) fn parse_decimal(token: &str) -> Option<u64> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// What a message published to an ack reply subject asks for, as nats-server's
/// `processAck` reads it. Matching is byte-exact: `+ACK` and `+WPI` must be the whole
/// payload; `+NXT`, `-NAK` and `+TERM` are prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind {
    /// Empty payload, `+ACK`, or the deprecated `+OK`.
    Ack,
    /// `-NAK`, optionally followed by a delay: JSON `{"delay": <ns>}` (what async-nats and
    /// nats-py send, after a space) or a Go duration string like `5s`. A delay that does
    /// not parse is a plain NAK (`None`).
    Nak {
        /// Redeliver after this long, nanoseconds.
        delay_ns: Option<i64>,
    },
    /// `+WPI`: work in progress, reset the ack timer.
    Progress,
    /// `+NXT`: ack, then the rest is a pull request for more ([`parse_next_request`]).
    Next(Result<NextRequest, NextRequestError>),
    /// `+TERM`, optionally followed by a reason (trimmed).
    Term {
        /// Reason text, if any.
        reason: Option<String>,
    },
    /// Anything else: nats-server does nothing with it (but still answers a reply).
    Unknown,
}

/// Classify an ack payload (see [`AckKind`]).
pub fn parse_ack(payload: &[u8]) -> AckKind {
    if payload.is_empty() || payload == b"+ACK" || payload == b"+OK" {
        return AckKind::Ack;
    }
    if let Some(rest) = payload.strip_prefix(b"+NXT") {
        return AckKind::Next(parse_next_request(rest));
    }
    if let Some(rest) = payload.strip_prefix(b"-NAK") {
        return AckKind::Nak {
            delay_ns: parse_nak_delay(rest.trim_ascii()),
        };
    }
    if payload == b"+WPI" {
        return AckKind::Progress;
    }
    if let Some(rest) = payload.strip_prefix(b"+TERM") {
        let reason = rest.trim_ascii();
        return AckKind::Term {
            reason: (!reason.is_empty()).then(|| String::from_utf8_lossy(reason).into_owned()),
        };
    }
    AckKind::Unknown
}

pub(super) fn parse_nak_delay(arg: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct NakOptions {
        #[serde(default, deserialize_with = "nullable")]
        delay: i64,
    }
    match arg.first() {
        None => None,
        Some(b'{') => serde_json::from_slice::<NakOptions>(arg)
            .ok()
            .map(|options| options.delay),
        Some(_) => std::str::from_utf8(arg)
            .ok()
            .and_then(|text| parse_go_duration(text).ok()),
    }
}
