//! Session state and where it is kept: three stations per tenant.
//!
//! - `$MQTT_sess` (`$MQTT.sess.<hex client id>`, one message per subject): a
//!   persistent session's record, written before SUBACK and PUBREC are sent.
//! - `$MQTT_rmsgs` (`$MQTT.rmsgs.<subject>`, one per subject): retained messages.
//! - `$MQTT_msgs` (`$MQTT.msgs.<subject>`, interest retention): QoS 1/2 messages
//!   published over MQTT while a persistent session subscribes to them; each such
//!   subscription is a consumer group on it.

use bytes::Bytes;
use junction_api::Purge;
use junction_api::{
    Discard, Engine, EngineError, Headers, Message, MessageQuery, Retention, StationConfig,
    Subject, TenantId,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Header (the front-end's marker): the message came in over MQTT, so its
/// `Mqtt-*` headers are the front-end's own. Reserved, so no other producer can set
/// it; the engine keeps the markers only for MQTT subscribers and the front-end's
/// own stations, and no subscriber gets them as user properties.
pub const H_ORIGIN_PROTOCOL: &str = "Junction-Origin-Protocol";
/// Header (the front-end's marker): the MQTT client id that published it (No
/// Local).
pub const H_ORIGIN_CLIENT: &str = "Junction-Client-Name";
/// Header (the front-end's marker): the MQTT topic it was published to.
pub const H_ORIGIN_TOPIC: &str = "Junction-Origin-Topic";
/// Header: the QoS it was published with.
pub const H_MQTT_QOS: &str = "Mqtt-Qos";
/// Header: a copy was stored for persistent sessions (they get it from there).
pub const H_MQTT_STORED: &str = "Mqtt-Stored";
/// Header: the publish had the retain flag.
pub const H_MQTT_RETAIN: &str = "Mqtt-Retain";
/// Header (on `$MQTT_rmsgs` records, in a cluster): when the retained message
/// was set or cleared, ns since the epoch (the newest wins across nodes).
pub const H_MQTT_AT: &str = "Mqtt-Retained-At";
/// Header: MQTT 5 Payload Format Indicator was 1 (UTF-8).
pub const H_MQTT_UTF8: &str = "Mqtt-Payload-Utf8";
/// Header: MQTT 5 Correlation Data, base64.
pub const H_MQTT_CORRELATION: &str = "Mqtt-Correlation-Data";
/// Header: when an MQTT 5 Message Expiry Interval runs out, ms since the epoch.
pub const H_MQTT_EXPIRES: &str = "Mqtt-Expires-At";
/// Header: MQTT 5 Content Type (shared with HTTP).
pub const H_CONTENT_TYPE: &str = "Content-Type";

/// Prefix of a header holding a user property whose own name is reserved (one of
/// the front-end's headers, a `Junction-` lineage name, or one starting with this
/// prefix): stored as `Mqtt-Prop-<name>` and given back to MQTT subscribers as
/// `<name>`, so the property reaches them unaltered (MQTT-3.3.2-17) and cannot
/// forge what the front-end or lineage means by that header.
pub const H_MQTT_PROP_PREFIX: &str = "Mqtt-Prop-";

/// A user property's name as stored: escaped when reserved.
pub fn stored_property_name(name: &str, reserved: bool) -> std::borrow::Cow<'_, str> {
    if reserved || has_prop_prefix(name) {
        std::borrow::Cow::Owned(format!("{H_MQTT_PROP_PREFIX}{name}"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The user property a stored header stands for, when it is an escaped one.
pub fn escaped_property_name(header: &str) -> Option<&str> {
    has_prop_prefix(header).then(|| &header[H_MQTT_PROP_PREFIX.len()..])
}

fn has_prop_prefix(name: &str) -> bool {
    name.get(..H_MQTT_PROP_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(H_MQTT_PROP_PREFIX))
}

/// Headers the MQTT front-end manages itself: not passed on as user properties
/// (MQTT-3.3.2-17: a subscriber gets the publisher's user properties unaltered).
pub fn is_internal_header(name: &str) -> bool {
    [
        H_ORIGIN_PROTOCOL,
        H_ORIGIN_CLIENT,
        H_ORIGIN_TOPIC,
        H_MQTT_QOS,
        H_MQTT_STORED,
        H_MQTT_RETAIN,
        H_MQTT_AT,
        H_MQTT_UTF8,
        H_MQTT_CORRELATION,
        H_MQTT_EXPIRES,
        H_CONTENT_TYPE,
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

/// Station names.
pub const SESS: &str = "$MQTT_sess";
/// Retained messages station.
pub const RMSGS: &str = "$MQTT_rmsgs";
/// Persistent-session messages station.
pub const MSGS: &str = "$MQTT_msgs";
/// Subject prefix of `$MQTT_msgs`.
pub const MSGS_PREFIX: &str = "$MQTT.msgs.";
/// Subject prefix of `$MQTT_rmsgs`.
pub const RMSGS_PREFIX: &str = "$MQTT.rmsgs.";
/// Subject prefix of `$MQTT_sess`.
pub const SESS_PREFIX: &str = "$MQTT.sess.";

/// One subscription's options, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubOpts {
    pub qos: u8,
    #[serde(default)]
    pub no_local: bool,
    #[serde(default)]
    pub retain_as_published: bool,
    #[serde(default)]
    pub retain_handling: u8,
    #[serde(default)]
    pub id: Option<u32>,
}

/// A QoS 1/2 delivery from a group whose packet id is not the one its sequence
/// gives ([`seq_pkid`]), or that was unacknowledged when the client left: that
/// packet id is reused when the message is sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOut {
    pub pkid: u16,
    pub group: String,
    pub seq: u64,
}

/// A persistent session's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub client_id: String,
    /// Seconds the session outlives its connection (`u32::MAX`: forever).
    pub expiry: u32,
    /// Raw topic filter (with any `$share/...` prefix) → options.
    pub subs: BTreeMap<String, SubOpts>,
    /// QoS 2 publishes received (PUBREC sent) and not yet released.
    pub qos2_in: BTreeSet<u16>,
    /// QoS 2 deliveries whose PUBREL was sent and PUBCOMP not yet received.
    pub pubrel_out: BTreeSet<u16>,
    /// The stored messages of `pubrel_out` (packet id → group and sequence).
    /// The client has them (it sent PUBREC): when their groups deliver them
    /// again after a crash (the ack was not saved yet), they are done with, not
    /// sent again under another packet id (MQTT-4.3.3: exactly once).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pubrel_seqs: BTreeMap<u16, (String, u64)>,
    /// Deliveries sent with a packet id other than their sequence's (the
    /// connection keeps this current), and, from a clean disconnect on, every
    /// unacknowledged delivery with its packet id.
    pub pending_out: Vec<PendingOut>,
    /// When the last connection ended, ms since the epoch (0 while connected).
    pub disconnected_ms: u64,
    /// In a cluster: the node the session is connected to, or was last (it runs
    /// the session's expiry and will).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A delayed will waiting to be published (MQTT 5 Will Delay Interval), so
    /// that it survives a restart of the broker; cleared once it is published or
    /// the client comes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub will: Option<Box<StoredWill>>,
    /// Not stored: the record was read back after the broker stopped while the
    /// session was connected (a crash, or a lost node), so what its groups
    /// deliver again was sent before (DUP).
    #[serde(skip)]
    pub crashed: bool,
}

/// The packet id a stored message (`$MQTT_msgs` sequence `seq`) is first sent
/// with: derived from the sequence, so that after a crash, with nothing written
/// per delivery, the message is sent again with the same id (MQTT-4.4.0-1). A
/// session's in-flight messages have distinct sequences, so two of them share an
/// id only when their sequences are 65535 apart; the second then gets another id,
/// written to the session record ([`PendingOut`]).
pub fn seq_pkid(seq: u64) -> u16 {
    (seq.saturating_sub(1) % u64::from(u16::MAX)) as u16 + 1
}

/// A pending delayed will, as the message it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWill {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// The payload, base64.
    pub payload: String,
    /// The message's headers (the will's properties and the front-end's markers).
    pub headers: Vec<(String, String)>,
    /// Its reply subject (the will's Response Topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// When it is due, ms since the epoch.
    pub due_ms: u64,
}

/// A retained message.
#[derive(Debug, Clone)]
pub struct Retained {
    pub subject: Subject,
    pub payload: Bytes,
    pub qos: u8,
    pub headers: Option<Headers>,
    pub reply: Option<Subject>,
    /// Not persisted (`$SYS` topics).
    pub volatile: bool,
    /// When it was set (ns since the epoch; in a cluster only, else 0).
    pub at_ns: u64,
}

impl Retained {
    /// A retained message read back from its `$MQTT_rmsgs` record (its QoS is in
    /// the record's headers).
    pub fn stored(subject: Subject, payload: Bytes, headers: Option<Headers>, at_ns: u64) -> Self {
        let qos = headers
            .as_ref()
            .and_then(|h| h.get(H_MQTT_QOS))
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        Retained {
            subject,
            payload,
            qos,
            headers,
            reply: None,
            volatile: false,
            at_ns,
        }
    }
}

/// The hex of a client id: a valid subject token and group-name part.
pub fn hex_id(client_id: &str) -> String {
    let mut s = String::with_capacity(client_id.len() * 2);
    for b in client_id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    if s.is_empty() {
        s.push('0');
    }
    s
}

/// A short stable hash (FNV-1a, 64 bits) as hex, for group names.
pub fn short_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn station(name: &str, subject: &str, retention: Retention, per_subject: i64) -> StationConfig {
    let mut metadata = BTreeMap::new();
    metadata.insert("junction.internal".to_owned(), "mqtt".to_owned());
    StationConfig {
        name: name.to_owned(),
        description: Some("MQTT front-end state (managed by Junction)".to_owned()),
        subjects: vec![subject.to_owned()],
        retention,
        max_msgs_per_subject: per_subject,
        discard: Discard::Old,
        duplicate_window: Duration::ZERO,
        metadata,
        ..StationConfig::default()
    }
}

/// Creates the three stations of a tenant (or finds them). In a cluster, session
/// records and session queues are cluster-wide stations (replicated when the
/// cluster has three nodes or more), so a session resumes on any node; retained
/// messages are kept on every node (`cluster.rs`).
pub fn ensure_stations(engine: &dyn Engine, tenant: &TenantId) -> Result<(), EngineError> {
    let clustered = engine.cluster().is_some();
    let scoped = |mut cfg: StationConfig| {
        if clustered {
            cfg.metadata
                .insert("junction.scope".to_owned(), "cluster".to_owned());
        }
        cfg
    };
    for cfg in [
        scoped(station(SESS, "$MQTT.sess.>", Retention::Limits, 1)),
        station(RMSGS, "$MQTT.rmsgs.>", Retention::Limits, 1),
        scoped(station(MSGS, "$MQTT.msgs.>", Retention::Interest, -1)),
    ] {
        match engine.create_internal_station(tenant, cfg.clone()) {
            Ok(_) => {}
            Err(EngineError::StationNameInUse) => {
                // Made by an older version with other limits: keep what is there.
                tracing::debug!(station = %cfg.name, "MQTT station exists with another configuration");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every message of a station, oldest first.
pub fn read_all(
    engine: &dyn Engine,
    tenant: &TenantId,
    name: &str,
    filter: &str,
) -> Vec<junction_api::StoredMessage> {
    let mut out = Vec::new();
    let mut seq = 1;
    loop {
        match engine.get_message(
            tenant,
            name,
            MessageQuery::NextBySubject {
                seq,
                subject: filter.to_owned(),
            },
        ) {
            Ok(m) => {
                seq = m.seq + 1;
                out.push(m);
            }
            Err(_) => return out,
        }
    }
}

/// A session record as the message that stores it in `$MQTT_sess`.
pub fn record_message(record: &SessionRecord) -> Message {
    let subject = Subject::from_trusted(Bytes::from(format!(
        "{SESS_PREFIX}{}",
        hex_id(&record.client_id)
    )));
    let payload = serde_json::to_vec(record).unwrap_or_default();
    Message::new(subject, payload.into())
}

/// A session's record, read from `$MQTT_sess` (in a cluster: made on any node).
pub fn load_record(
    engine: &dyn Engine,
    tenant: &TenantId,
    client_id: &str,
) -> Result<Option<SessionRecord>, EngineError> {
    let subject = format!("{SESS_PREFIX}{}", hex_id(client_id));
    match engine.get_message(tenant, SESS, MessageQuery::LastBySubject(subject)) {
        Ok(m) => match serde_json::from_slice::<SessionRecord>(&m.payload) {
            Ok(r) if r.client_id == client_id => Ok(Some(r)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::warn!(%client_id, error = %e, "unreadable MQTT session record skipped");
                Ok(None)
            }
        },
        Err(EngineError::MessageNotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a session record.
pub fn delete_record(engine: &dyn Engine, tenant: &TenantId, client_id: &str) {
    let filter = format!("{SESS_PREFIX}{}", hex_id(client_id));
    if let Err(e) = engine.purge_internal_station(
        tenant,
        SESS,
        Purge {
            filter: Some(filter),
            ..Purge::default()
        },
    ) && !matches!(e, EngineError::StationNotFound)
    {
        tracing::warn!(%client_id, error = %e, "cannot remove MQTT session record");
    }
}

/// Loads every session record of a tenant.
pub fn load_records(engine: &dyn Engine, tenant: &TenantId) -> Vec<SessionRecord> {
    read_all(engine, tenant, SESS, "$MQTT.sess.>")
        .into_iter()
        .filter_map(|m| match serde_json::from_slice::<SessionRecord>(&m.payload) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(seq = m.seq, error = %e, "unreadable MQTT session record skipped");
                None
            }
        })
        .collect()
}

/// Loads every retained message of a tenant: topic → message.
pub fn load_retained(
    engine: &dyn Engine,
    tenant: &TenantId,
) -> (
    BTreeMap<String, Retained>,
    std::collections::HashMap<String, u64>,
) {
    let mut out = BTreeMap::new();
    let mut tombstones = std::collections::HashMap::new();
    for m in read_all(engine, tenant, RMSGS, "$MQTT.rmsgs.>") {
        let Some(rest) = m.subject.as_bytes().strip_prefix(RMSGS_PREFIX.as_bytes()) else {
            continue;
        };
        let subject = Subject::from_trusted(Bytes::copy_from_slice(rest));
        let at_ns = crate::cluster::at_of(m.headers.as_ref());
        // A clear made in a cluster (a tombstone): nothing retained.
        if m.payload.is_empty() {
            tombstones.insert(subject.to_str_lossy().into_owned(), at_ns);
            continue;
        }
        let topic = match crate::topic::subject_to_topic(rest) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(seq = m.seq, error = %e, "retained message with no MQTT topic skipped");
                continue;
            }
        };
        out.insert(
            topic,
            Retained::stored(subject, m.payload, m.headers, at_ns),
        );
    }
    (out, tombstones)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_gives_a_nonzero_packet_id_that_repeats_every_65535() {
        assert_eq!(seq_pkid(1), 1);
        assert_eq!(seq_pkid(65535), 65535);
        assert_eq!(seq_pkid(65536), 1);
        assert_eq!(seq_pkid(0), 1);
        assert_eq!(seq_pkid(u64::MAX), (((u64::MAX - 1) % 65535) + 1) as u16);
        assert!((1..200_000).all(|s| seq_pkid(s) != 0));
    }

    #[test]
    fn the_crash_marker_is_not_stored() {
        let r = SessionRecord {
            client_id: "c".to_owned(),
            crashed: true,
            ..SessionRecord::default()
        };
        let back: SessionRecord =
            serde_json::from_slice(&record_message(&r).payload).unwrap_or_default();
        assert_eq!(back.client_id, "c");
        assert!(!back.crashed);
    }
}
