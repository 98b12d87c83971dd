//! Status messages for pull requests (`NATS/1.0 404 ...`).

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Status messages
// ---------------------------------------------------------------------------------------

/// Header-only status messages nats-server sends to pull requesters and push consumers
/// (`server/consumer.go`). Each value is a complete header block (status line, headers,
/// blank line) sent with an empty payload.
///
/// async-nats reads the status code and the text after it: 404 (no messages, with
/// `no_wait`), 408 and 409 end the pull request (`Consumer Deleted` and `Consumer is push
/// based` end the stream, `Exceeded MaxRequest...` too; otherwise the pending counts in
/// `Nats-Pending-Messages`/`Nats-Pending-Bytes` are given back), 100 is a heartbeat.
/// nats-server 2.10 has no `409 Exceeded MaxAckPending`: a pull request just waits.
pub mod status {
    use super::format_go_duration;

    /// Remaining batch of a terminated pull request.
    pub const PENDING_MESSAGES: &str = "Nats-Pending-Messages";
    /// Remaining byte budget of a terminated pull request.
    pub const PENDING_BYTES: &str = "Nats-Pending-Bytes";
    /// Last consumer sequence, on idle heartbeats.
    pub const LAST_CONSUMER: &str = "Nats-Last-Consumer";
    /// Last stream sequence, on idle heartbeats.
    pub const LAST_STREAM: &str = "Nats-Last-Stream";
    /// Flow-control reply subject the consumer is stalled on, on idle heartbeats.
    pub const CONSUMER_STALLED: &str = "Nats-Consumer-Stalled";

    /// `no_wait` request and nothing pending.
    pub const NO_MESSAGES: &[u8] = b"NATS/1.0 404 No Messages\r\n\r\n";
    /// `no_wait` request while earlier requests already cover what is pending.
    pub const REQUESTS_PENDING: &[u8] = b"NATS/1.0 408 Requests Pending\r\n\r\n";
    /// The wait queue is full (`max_waiting`).
    pub const EXCEEDED_MAX_WAITING: &[u8] = b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n";
    /// The consumer was deleted while the request waited.
    pub const CONSUMER_DELETED: &[u8] = b"NATS/1.0 409 Consumer Deleted\r\n\r\n";
    /// A pull request to a push consumer.
    pub const CONSUMER_IS_PUSH_BASED: &[u8] = b"NATS/1.0 409 Consumer is push based\r\n\r\n";
    /// The consumer lost leadership (clustered).
    pub const LEADERSHIP_CHANGE: &[u8] = b"NATS/1.0 409 Leadership Change\r\n\r\n";
    /// Push flow control request (sent with a reply subject to answer).
    pub const FLOW_CONTROL_REQUEST: &[u8] = b"NATS/1.0 100 FlowControl Request\r\n\r\n";
    /// Core NATS no-responders reply to a request (no text after the code).
    pub const NO_RESPONDERS: &[u8] = b"NATS/1.0 503\r\n\r\n";

    fn with_pending(line: &str, pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        format!(
            "NATS/1.0 {line}\r\n{PENDING_MESSAGES}: {pending_msgs}\r\n{PENDING_BYTES}: {pending_bytes}\r\n\r\n"
        )
        .into_bytes()
    }

    fn line(code: u16, text: &str) -> Vec<u8> {
        format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes()
    }

    /// A pull request expired; `pending_*` are its unused batch and byte budget.
    pub fn request_timeout(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending("408 Request Timeout", pending_msgs, pending_bytes)
    }

    /// A pull request forwarded through an account export lost its interest.
    pub fn interest_expired(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending("408 Interest Expired", pending_msgs, pending_bytes)
    }

    /// The next message does not fit the request's remaining `max_bytes`.
    pub fn message_size_exceeds_max_bytes(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending(
            "409 Message Size Exceeds MaxBytes",
            pending_msgs,
            pending_bytes,
        )
    }

    /// The batch is complete but byte budget remains (sent after the last message).
    pub fn batch_completed(pending_msgs: i64, pending_bytes: i64) -> Vec<u8> {
        with_pending("409 Batch Completed", pending_msgs, pending_bytes)
    }

    /// `batch` above the consumer's `max_batch`.
    pub fn exceeded_max_request_batch(max_batch: i64) -> Vec<u8> {
        line(409, &format!("Exceeded MaxRequestBatch of {max_batch}"))
    }

    /// `expires` above the consumer's `max_expires` (Go duration text, e.g. `1m0s`).
    pub fn exceeded_max_request_expires(max_expires_ns: i64) -> Vec<u8> {
        line(
            409,
            &format!(
                "Exceeded MaxRequestExpires of {}",
                format_go_duration(max_expires_ns)
            ),
        )
    }

    /// `max_bytes` above the consumer's `max_bytes`.
    pub fn exceeded_max_request_max_bytes(max_bytes: i64) -> Vec<u8> {
        line(409, &format!("Exceeded MaxRequestMaxBytes of {max_bytes}"))
    }

    /// A pull request body that does not parse ([`super::NextRequestError`]).
    pub fn bad_request(err: &str) -> Vec<u8> {
        line(400, &format!("Bad Request - {err}"))
    }

    /// Idle heartbeat, to a pull requester (with `idle_heartbeat`) or a push consumer;
    /// `stalled` is the pending flow-control reply subject, if any.
    pub fn idle_heartbeat(
        last_consumer_seq: u64,
        last_stream_seq: u64,
        stalled: Option<&str>,
    ) -> Vec<u8> {
        let mut text = format!(
            "NATS/1.0 100 Idle Heartbeat\r\n{LAST_CONSUMER}: {last_consumer_seq}\r\n{LAST_STREAM}: {last_stream_seq}\r\n"
        );
        if let Some(reply) = stalled {
            text.push_str(&format!("{CONSUMER_STALLED}: {reply}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}
