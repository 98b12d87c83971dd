//! Consumer groups: durable cursors on a station with server-side offsets and acks.
//! A JetStream pull consumer, an HTTP consumer group and an MQTT persistent
//! subscription are all consumer groups.

use crate::StoredMessage;
use std::time::{Duration, SystemTime};

/// Where a new group starts reading.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliverPolicy {
    /// From the oldest stored message.
    #[default]
    All,
    /// From the newest stored message.
    Last,
    /// Only messages stored after the group is created.
    New,
    /// From this sequence.
    ByStartSequence(u64),
    /// From the first message stored at or after this time.
    ByStartTime(SystemTime),
    /// The newest message of every subject, then new ones.
    LastPerSubject,
}

/// What a member must acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicy {
    /// Nothing: a delivery counts as acknowledged.
    None,
    /// An ack covers every earlier message too.
    All,
    /// Every message separately.
    #[default]
    Explicit,
}

/// A consumer group's definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct GroupConfig {
    /// Name, unique within the station.
    pub name: String,
    /// Durable groups live until deleted; others are removed after
    /// `inactive_threshold` without activity.
    pub durable: bool,
    /// Free text.
    pub description: Option<String>,
    /// Where it starts.
    pub deliver_policy: DeliverPolicy,
    /// What must be acknowledged.
    pub ack_policy: AckPolicy,
    /// How long a delivery may stay unacknowledged before redelivery.
    pub ack_wait: Duration,
    /// Most deliveries of one message (-1 = unlimited).
    pub max_deliver: i64,
    /// Redelivery delays, one per attempt (the last repeats); empty means `ack_wait`.
    pub backoff: Vec<Duration>,
    /// Only messages on subjects matching one of these (empty = all).
    pub filter_subjects: Vec<String>,
    /// Most pull requests waiting at once.
    pub max_waiting: i64,
    /// Most unacknowledged deliveries at once (-1 = unlimited).
    pub max_ack_pending: i64,
    /// Non-durable groups are removed after this long without activity.
    pub inactive_threshold: Duration,
    /// Largest batch one request may ask for (0 = unlimited).
    pub max_batch: i64,
    /// Longest wait one request may ask for (zero = unlimited).
    pub max_expires: Duration,
    /// Largest byte budget one request may ask for (0 = unlimited).
    pub max_bytes: i64,
    /// Deliver headers only, without payloads.
    pub headers_only: bool,
    /// Render each delivered message's lineage as `Junction-*` headers (off: every
    /// member gets exactly the headers the producer sent).
    pub lineage_headers: bool,
    /// Free-form metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Push delivery (a JetStream push consumer): the front-end that made the
    /// group delivers its messages to a subject; `None` for groups read by
    /// pull requests.
    pub push: Option<PushConfig>,
    /// Deliver nothing until this time (JetStream consumer pause, nats-server
    /// 2.11): pull requests wait, a push group's deliveries wait. `None`: not
    /// paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_until: Option<SystemTime>,
    /// Deliver new messages at the pace they were stored (JetStream
    /// `replay_policy: original`); off: as fast as members take them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay_original: bool,
    /// JetStream's `sample_freq` as the client gave it (`"50%"`, `"100"`;
    /// empty: off): that share of acks is reported as an ack metric.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sample_freq: String,
}

impl GroupConfig {
    /// Whether it is paused at `now`.
    pub fn paused_at(&self, now: SystemTime) -> bool {
        self.pause_until.is_some_and(|t| t > now)
    }

    /// The share of acks sampled, in percent (0: none), from `sample_freq`
    /// (`"50%"` or `"50"`; anything else, or above 100, is 0).
    pub fn sample_percent(&self) -> u8 {
        parse_sample_freq(&self.sample_freq).unwrap_or(0)
    }
}

/// Parses a JetStream `sample_freq` (`"50%"`, `"50"`, `""`) into a percentage;
/// `None` when it is not one (nats-server refuses such a configuration).
pub fn parse_sample_freq(text: &str) -> Option<u8> {
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    let digits = t.strip_suffix('%').unwrap_or(t).trim();
    match digits.parse::<u8>() {
        Ok(n) if n <= 100 => Some(n),
        _ => None,
    }
}

/// Where and how a push group's messages are delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// The subject every message is published to (with its ack reply).
    pub deliver_subject: String,
    /// The queue group its subscribers must be in (each message reaches one).
    pub deliver_group: Option<String>,
    /// Ask the subscriber to confirm it keeps up, and wait for it.
    pub flow_control: bool,
    /// Send a heartbeat after this long with nothing delivered (zero: never).
    pub idle_heartbeat: Duration,
    /// Most payload bits per second delivered (0: unlimited).
    pub rate_limit_bps: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            name: String::new(),
            durable: true,
            description: None,
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: -1,
            backoff: Vec::new(),
            filter_subjects: Vec::new(),
            max_waiting: 512,
            max_ack_pending: 1000,
            inactive_threshold: Duration::from_secs(5),
            max_batch: 0,
            max_expires: Duration::ZERO,
            max_bytes: 0,
            headers_only: false,
            lineage_headers: false,
            metadata: Default::default(),
            push: None,
            pause_until: None,
            replay_original: false,
            sample_freq: String::new(),
        }
    }
}

/// A group's position and backlog.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupState {
    /// Deliveries made (the delivery sequence).
    pub delivered_consumer_seq: u64,
    /// Highest station sequence delivered.
    pub delivered_stream_seq: u64,
    /// Delivery sequence below which everything is acknowledged.
    pub ack_floor_consumer_seq: u64,
    /// Station sequence below which everything is acknowledged.
    pub ack_floor_stream_seq: u64,
    /// Deliveries not yet acknowledged.
    pub num_ack_pending: u64,
    /// Messages delivered more than once and still pending.
    pub num_redelivered: u64,
    /// Pull requests waiting.
    pub num_waiting: u64,
    /// Messages not yet delivered.
    pub num_pending: u64,
    /// Last time a member pulled or acked.
    pub last_active: Option<SystemTime>,
}

/// A group's definition and state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupInfo {
    /// The station it reads.
    pub station: String,
    /// Definition.
    pub config: GroupConfig,
    /// When it was created.
    pub created: SystemTime,
    /// State now.
    pub state: GroupState,
}

/// One delivery to a member.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The message.
    pub message: StoredMessage,
    /// Delivery sequence (counts redeliveries too).
    pub consumer_seq: u64,
    /// How many times this message has been delivered, this time included.
    pub delivery_count: u32,
    /// Messages still waiting after this one.
    pub pending: u64,
}

/// A pull request: how many messages, how many bytes, how long to wait.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchRequest {
    /// Most messages.
    pub batch: usize,
    /// Most payload bytes (0 = no limit).
    pub max_bytes: usize,
    /// Give up after this long (`None`: wait as long as the member stays).
    pub expires: Option<Duration>,
    /// Answer at once: deliver what is there, then end.
    pub no_wait: bool,
    /// Send a heartbeat when idle this long.
    pub idle_heartbeat: Option<Duration>,
    /// A client's pull request (JetStream `CONSUMER.MSG.NEXT`): a group with
    /// push delivery refuses it ([`FetchEnd::PushBased`]), as nats-server
    /// answers `409 Consumer is push based`. Off for the push delivery's own
    /// fetches and for other protocols' reads.
    pub pull_request: bool,
}

/// Why a pull request ended without filling its batch (or with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEnd {
    /// Every message asked for was delivered.
    Complete,
    /// `no_wait` and nothing (more) to deliver.
    NoMessages,
    /// `expires` passed; what was still wanted.
    Timeout {
        /// Messages still wanted.
        messages: usize,
        /// Bytes still wanted.
        bytes: usize,
    },
    /// The next message is larger than the remaining byte budget.
    MaxBytes {
        /// Messages still wanted.
        messages: usize,
        /// Bytes still wanted.
        bytes: usize,
    },
    /// Too many requests were already waiting.
    MaxWaiting,
    /// The request asked for more than the group allows.
    ExceedsLimits,
    /// The group was deleted.
    GroupDeleted,
    /// A client's pull request to a group with push delivery.
    PushBased,
}

/// Where a pull request's deliveries go. Called with the group's lock held: it must
/// only queue, never call back into the engine's group operations.
pub trait FetchSink: Send + Sync + 'static {
    /// Delivers one message; false when the member is gone.
    fn deliver(&self, delivered: &Delivered) -> bool;
    /// The request ended.
    fn end(&self, end: FetchEnd);
    /// Nothing to deliver for a while; the member is still waiting.
    fn heartbeat(&self);
    /// False once the member is gone (its connection closed): a request
    /// passed to another node is then cancelled there rather than left to
    /// deliver into nothing.
    fn alive(&self) -> bool {
        true
    }
}

/// What a member says about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind {
    /// Done with it.
    Ack,
    /// Redeliver it, optionally after a delay.
    Nak(Option<Duration>),
    /// Still working on it: restart the ack timer.
    InProgress,
    /// Never redeliver it (dead-letter hook), with an optional reason.
    Term(Option<String>),
}
