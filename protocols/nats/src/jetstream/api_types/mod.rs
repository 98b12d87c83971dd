//! JetStream JSON API wire types, field for field as nats-server 2.10 emits and accepts
//! them (reference: `server/stream.go`, `server/consumer.go`, `server/store.go`,
//! `server/jetstream_api.go`, `server/jetstream.go`, `server/errors.json` at v2.10.29),
//! checked against what async-nats 0.51 and nats-py 2.x send and parse.
//!
//! Pure data: serde structs and enums, constants, and small sans-I/O parsers and
//! formatters. Nothing here touches storage, routing or the network.
//!
//! # Conventions
//!
//! - Field names in Rust are the JSON names (except `type`, which is `kind`).
//! - Durations are `i64` nanoseconds, as Go's `time.Duration` marshals them.
//! - Timestamps are RFC 3339 strings as Go's `time.Time` marshals them: UTC, nanosecond
//!   precision with trailing zeros trimmed (`2024-01-02T03:04:05.1234Z`), and the Go
//!   zero time [`GO_ZERO_TIME`] for "never" (for example `first_ts`/`last_ts` of an empty
//!   stream). [`format_rfc3339_nanos`] and [`parse_rfc3339_nanos`] convert.
//! - `skip_serializing_if` mirrors Go's `omitempty` exactly. Fields without it are always
//!   emitted, even when zero: `max_age: 0`, `allow_direct: false`, `sealed: false`,
//!   `compression: "none"`, `consumer_limits: {}` in a stream config, `num_replicas: 0`
//!   in a consumer config, `purged: 0` in a purge response, `total/offset/limit` in a
//!   stream info response.
//! - Deserialization follows `encoding/json` semantics for request bodies: unknown keys
//!   are ignored, missing keys take the Go zero value (not the nats default; see
//!   [`StreamConfig::apply_server_defaults`] and [`ConsumerConfig::apply_server_defaults`]),
//!   and `null` for a non-pointer field leaves the zero value (async-nats sends
//!   `"consumer_limits": null`; `null` for a whole body decodes as the zero value, see
//!   [`decode_request`]). Unlike Go, key matching is case-sensitive.
//!
//! # nats-server quirks reproduced here
//!
//! - Go's enum unmarshalers are case-sensitive except `discard` (lower-cased first);
//!   `deliver_policy` also accepts `"undefined"` (= `all`).
//! - Stream defaults the server fills (`checkStreamCfg`): `num_replicas` 0 -> 1;
//!   `max_msgs`, `max_bytes`, `max_msgs_per_subject`, `max_msg_size`, `max_consumers`
//!   0 -> -1; `duplicate_window` 0 -> 2 min (or `max_age` if smaller) unless mirroring;
//!   no subjects -> `[name]` unless a mirror or sources; `storage` missing -> file.
//!   async-nats sends all of those as `0` (and `"consumer_limits": null`); nats-py sends
//!   `-1` for `max_msgs_per_subject`/`max_msg_size` and `0` for durations.
//! - Consumer defaults the server fills (`setConsumerConfigDefaults`): pull `max_waiting`
//!   0 -> 512; `ack_wait` 0 -> 30 s for explicit/all acks (or `backoff[0]`);
//!   `max_deliver` 0 -> -1; `max_ack_pending` 0 -> 1000 for explicit/all acks;
//!   ephemerals get `inactive_threshold` 5 s. A missing `ack_policy` is `none` on the
//!   server (Go zero value) although both clients default to and send `explicit`.
//!   `num_replicas` is stored as sent (0 in single-server mode).
//! - `STREAM.NAMES` returns `"streams": null` when there are none (Go nil slice), while
//!   `STREAM.LIST`, `CONSUMER.NAMES` and `CONSUMER.LIST` return `[]`.
//! - `success` is `omitempty`: error replies carry no `success` key, success replies carry
//!   `"success": true`.
//! - Error replies keep the response's other non-`omitempty` fields at zero, e.g.
//!   `{"type":"...stream_purge_response","error":{...},"purged":0}`; stream info errors
//!   carry `"total":0,"offset":0,"limit":0`.
//! - The success pub ack is hand-built by the server with a space after the comma:
//!   `{"stream":"S", "seq":5}`; a duplicate is `{"stream":"S", "seq":5,"duplicate": true}`
//!   (see [`PubAck::to_nats_json`]); publish errors are marshalled normally as
//!   `{"error":{...},"stream":"S","seq":0}`.
//! - Go's `json.Marshal` escapes `<`, `>` and `&` in strings (`"foo.\u003e"`); serde
//!   does not. Both are the same JSON value, and no client cares.
//! - async-nats sends `null` as the body of `STREAM.INFO` (`get_stream`), `[]` to `INFO`,
//!   `{}` to most others, and extra `null` fields in pull requests (`min_pending`,
//!   `group`, ...). All of those must be accepted.

mod account;
mod acks;
mod constants;
mod consumers;
mod enums;
mod errors;
mod status_messages;
mod stream_api;
mod streams;
#[cfg(test)]
mod tests;
mod time;

pub use account::*;
pub use acks::*;
pub use constants::*;
pub use consumers::*;
pub use enums::*;
pub use errors::*;
pub use status_messages::*;
pub use stream_api::*;
pub use streams::*;
pub use time::*;
