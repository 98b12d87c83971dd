//! Packets to the client: deliveries (live and from groups), acks, flow control.

use super::*;

/// DISCONNECT reason codes sent while the client may still be writing: its
/// errors (malformed packet, protocol error, topic alias invalid, receive
/// maximum exceeded, topic alias out of range, packet too large), a publish that
/// could not be stored (unspecified error), a slow consumer (quota exceeded) and
/// an operator's kick (administrative action). The broker drains what the client
/// still sends before it closes ([`crate::io::MqttIo::shutdown_and_drain`]), so
/// the reason code arrives (MQTT-4.13.1, 4.13.2). Not for a takeover (the new
/// connection waits for this one), a keep-alive timeout (the client is silent)
/// or a shutdown (which has its own drain timeout).
const DRAINED: [u8; 9] = [0x80, 0x81, 0x82, 0x90, 0x93, 0x94, 0x95, 0x97, 0x98];

impl MqttChannel {
    /// Encodes a packet for the socket. Only a packet the codec cannot encode (an
    /// error of the broker's, logged) ends the connection.
    pub(super) fn write(&mut self, out: Out) -> Step {
        let out = if self.problem_info {
            out
        } else {
            strip_reason(out)
        };
        let Some(packet) = lower(out, self.v5) else {
            return Ok(());
        };
        self.wire.encode(packet).map_err(|e| {
            tracing::warn!(client_id = %self.client_id, error = %e, "MQTT packet cannot be encoded, closing");
            Close::WITH_WILL
        })
    }

    /// A v5 DISCONNECT (v3 just closes), logged: the connection ends with the
    /// will.
    pub(super) fn disconnect(&mut self, code: u8, why: &str) -> Close {
        tracing::info!(client_id = %self.client_id, code, "MQTT disconnecting client: {why}");
        let _ = self.write(Out::Disconnect(code, Some(why.to_owned())));
        Close {
            end: End::WithWill,
            drain: DRAINED.contains(&code),
        }
    }

    /// The MQTT topic of a subject, or `None` (counted and logged) when it has none:
    /// MQTT forbids U+0000, invalid UTF-8 and wildcards in a PUBLISH topic, so such a
    /// message (published over NATS or HTTP) is not delivered to MQTT clients.
    pub(super) fn topic_or_skip(&self, subject: &[u8]) -> Option<String> {
        match topic::subject_to_topic(subject) {
            Ok(t) => Some(t),
            Err(e) => {
                let n = self
                    .broker
                    .undeliverable
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                tracing::warn!(client_id = %self.client_id, error = %e, skipped_total = n, "message not delivered over MQTT: its subject has no MQTT topic");
                None
            }
        }
    }

    pub(super) fn on_puback(&mut self, pkid: u16) {
        if let Some((origin, OutState::AwaitAck)) = self.outflight.get(&pkid).cloned() {
            self.outflight.remove(&pkid);
            self.forget_pending_out(&origin);
            self.ack_origin(&origin, AckKind::Ack);
        }
    }

    /// A delivery the client acknowledged (PUBACK, PUBREC) needs no packet id
    /// kept for it in the session record any more (nothing is written for
    /// that: a stale entry only holds an id back).
    fn forget_pending_out(&mut self, origin: &Origin) {
        if let Origin::Group { group, seq } = origin
            && !self.record.pending_out.is_empty()
        {
            self.record
                .pending_out
                .retain(|p| p.seq != *seq || p.group != *group);
        }
    }

    pub(super) fn on_pubrec(&mut self, pkid: u16, code: u8) -> Step {
        match self.outflight.get(&pkid).cloned() {
            Some((origin, OutState::AwaitRec)) => {
                if code >= 0x80 {
                    self.ack_origin(&origin, AckKind::Ack);
                    self.outflight.remove(&pkid);
                    return Ok(());
                }
                self.record.pubrel_out.insert(pkid);
                if let Origin::Group { group, seq } = &origin {
                    self.record.pubrel_seqs.insert(pkid, (group.clone(), *seq));
                }
                self.forget_pending_out(&origin);
                if self.persistent() {
                    // The PUBREL-sent state is durable before the stored message is
                    // let go: after a crash the PUBREL is sent again, not the message.
                    self.outflight.insert(pkid, (origin, OutState::AwaitComp));
                    let mailbox = self.mailbox.clone();
                    self.broker.store_record(
                        &self.tenant,
                        &self.client,
                        &self.record,
                        Some(Box::new(move |_| {
                            mailbox.push(Event::Released { pkid });
                        })),
                    );
                    Ok(())
                } else {
                    self.ack_origin(&origin, AckKind::Ack);
                    self.outflight
                        .insert(pkid, (Origin::Live, OutState::AwaitComp));
                    self.write(Out::PubRel(pkid, 0))
                }
            }
            Some((_, OutState::AwaitComp)) => self.write(Out::PubRel(pkid, 0)),
            _ => self.write(Out::PubRel(pkid, 0x92)),
        }
    }

    /// The session record holds a QoS 2 delivery's PUBREL state: release the stored
    /// message and send PUBREL.
    pub(super) fn on_released(&mut self, pkid: u16) -> Step {
        match self.outflight.get(&pkid).cloned() {
            Some((origin, OutState::AwaitComp)) => {
                self.ack_origin(&origin, AckKind::Ack);
                self.outflight
                    .insert(pkid, (Origin::Live, OutState::AwaitComp));
                self.write(Out::PubRel(pkid, 0))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn ack_origin(&self, origin: &Origin, kind: AckKind) {
        if let Origin::Group { group, seq, .. } = origin
            && let Err(e) = self
                .broker
                .engine
                .ack(&self.tenant.id, MSGS, group, *seq, kind)
        {
            tracing::debug!(client_id = %self.client_id, error = %e, "MQTT group ack failed");
        }
    }

    /// Room for more QoS 1/2 messages towards the client.
    pub(super) fn credit(&self) -> usize {
        self.client_recv_max
            .saturating_sub(self.outflight.len() + self.queue.len())
    }

    pub(super) fn maybe_fetch(&mut self, key: u32) {
        let credit = self.credit();
        let Some(sub) = self.subs.get_mut(&key) else {
            return;
        };
        let Some(group) = sub.group.clone() else {
            return;
        };
        if sub.fetching || credit == 0 {
            return;
        }
        sub.fetching = true;
        let sink = Arc::new(GroupSink {
            mailbox: self.mailbox.clone(),
            sub: key,
            group: Arc::from(group.as_str()),
        });
        let request = FetchRequest {
            batch: credit.min(256),
            expires: Some(FETCH_EXPIRES),
            ..FetchRequest::default()
        };
        if let Err(e) = self
            .broker
            .engine
            .fetch(&self.tenant.id, MSGS, &group, request, sink)
        {
            tracing::warn!(client_id = %self.client_id, error = %e, "MQTT group fetch failed");
            if let Some(sub) = self.subs.get_mut(&key) {
                sub.fetching = false;
            }
        }
    }

    pub(super) fn on_live(&mut self, message: Message, keys: &[u32]) -> Step {
        let trusted = from_mqtt(message.headers.as_ref());
        let pub_qos = if trusted { header_qos(&message) } else { 0 };
        let retained =
            trusted && message.headers.as_ref().and_then(|h| h.get(H_MQTT_RETAIN)) == Some("1");
        let mut qos = None;
        let mut retain = false;
        let mut ids = Vec::new();
        for k in keys {
            let Some(sub) = self.subs.get(k) else {
                continue;
            };
            let q = pub_qos.min(sub.opts.qos);
            qos = Some(qos.map_or(q, |x: u8| x.max(q)));
            retain |= retained && sub.opts.retain_as_published;
            if let Some(id) = sub.opts.id {
                ids.push(id);
            }
        }
        let Some(qos) = qos else {
            return Ok(());
        };
        // (A subject with no MQTT topic is skipped when it is sent.)
        if (!self.broker.options.acl.is_empty() || self.client.permissions().is_some())
            && topic::subject_to_topic(message.subject.as_bytes())
                .is_ok_and(|t| self.denied_receive(&t))
        {
            return Ok(());
        }
        self.enqueue(OutMsg {
            subject: message.subject,
            payload: message.payload,
            headers: message.headers,
            reply: message.reply,
            qos,
            retain,
            dup: false,
            sub_ids: ids,
            origin: Origin::Live,
        })
    }

    pub(super) fn on_group(&mut self, key: u32, from: &str, d: Delivered) -> Step {
        // The fetch may have been made for a subscription that was replaced since
        // (a client re-subscribing the same filter on a resumed session keeps its
        // group under a new key): the group's current subscription takes it.
        let key = if self.subs.contains_key(&key) {
            key
        } else {
            match self
                .subs
                .iter()
                .find(|(_, s)| s.group.as_deref() == Some(from))
            {
                Some((k, _)) => *k,
                None => key,
            }
        };
        let Some(group) = self.subs.get(&key).and_then(|s| s.group.clone()) else {
            // Its subscription is gone: the message goes back to its group for
            // the next fetch, never left pending until the ack wait ends.
            let _ = self.broker.engine.ack(
                &self.tenant.id,
                MSGS,
                from,
                d.message.seq,
                AckKind::Nak(None),
            );
            return Ok(());
        };
        let seq = d.message.seq;
        let skip = |this: &Self| {
            let _ = this
                .broker
                .engine
                .ack(&this.tenant.id, MSGS, &group, seq, AckKind::Ack);
            Ok(())
        };
        // Overlapping persistent subscriptions each have a group, and each group
        // delivers the same stored message: the session sends it once (at the
        // highest QoS of every matching subscription, computed below) and the other
        // groups' copies are acknowledged unsent.
        let in_flight = self
            .outflight
            .values()
            .any(|(o, _)| matches!(o, Origin::Group { seq: s, .. } if *s == seq))
            || self
                .queue
                .iter()
                .any(|m| matches!(&m.origin, Origin::Group { seq: s, .. } if *s == seq));
        if in_flight {
            let same_group = self.outflight.values().any(|(o, _)| {
                matches!(o, Origin::Group { group: g, seq: s } if *g == group && *s == seq)
            }) || self.queue.iter().any(|m| {
                matches!(&m.origin, Origin::Group { group: g, seq: s } if *g == group && *s == seq)
            });
            // A redelivery of what we already hold is ignored; another group's copy
            // is done with.
            return if same_group { Ok(()) } else { skip(self) };
        }
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.recent_seqs.contains(&seq))
        {
            return skip(self);
        }
        if let Some(r) = self.rare.as_mut()
            && !r.released.is_empty()
            && r.released.remove(&(group.clone(), seq))
        {
            // PUBREC'd before a crash (its PUBREL went out again on resume).
            return skip(self);
        }
        let m = d.message;
        let Some(rest) = m.subject.as_bytes().strip_prefix(MSGS_PREFIX.as_bytes()) else {
            return skip(self);
        };
        let subject = Subject::from_trusted(Bytes::copy_from_slice(rest));
        let Some(topic_name) = self.topic_or_skip(rest) else {
            return skip(self);
        };
        if self.denied_receive(&topic_name) {
            return skip(self);
        }
        let trusted = from_mqtt(m.headers.as_ref());
        let origin_client = m.headers.as_ref().and_then(|h| h.get(H_ORIGIN_CLIENT));
        let header = |name: &str| {
            m.headers
                .as_ref()
                .filter(|_| trusted)
                .and_then(|h| h.get(name))
        };
        let pub_qos: u8 = header(H_MQTT_QOS)
            .and_then(|q| q.parse().ok())
            .unwrap_or(1)
            .clamp(1, 2);
        let retained = header(H_MQTT_RETAIN) == Some("1");
        // Every persistent subscription of this session that matches, as live
        // delivery does for overlapping filters.
        let mut qos = None;
        let mut retain = false;
        let mut ids = Vec::new();
        for sub in self.subs.values().filter(|s| s.group.is_some()) {
            if !sub.mapped.subjects.iter().any(|f| f.matches(&subject)) {
                continue;
            }
            if sub.mapped.wild_first && rest.first() == Some(&b'$') {
                continue;
            }
            if sub.opts.no_local && trusted && origin_client == Some(self.client_id.as_str()) {
                continue;
            }
            let q = pub_qos.min(sub.opts.qos);
            qos = Some(qos.map_or(q, |x: u8| x.max(q)));
            retain |= retained && sub.opts.retain_as_published;
            if let Some(id) = sub.opts.id {
                ids.push(id);
            }
        }
        let Some(qos) = qos else {
            // `$`-topic under a leading wildcard, or No Local.
            return skip(self);
        };
        self.remember_seq(seq);
        let msg = OutMsg {
            subject,
            payload: m.payload,
            headers: m.headers,
            reply: None,
            qos: qos.max(1),
            retain,
            // DUP only for what this session really sent before (MQTT-3.3.1-1): a
            // message put back unsent when a connection ended is a first delivery.
            // After a crash nothing says what was sent: a message delivered before
            // (its group counts it) was, as far as anyone knows.
            dup: self
                .rare
                .as_ref()
                .is_some_and(|r| r.reuse_pkids.contains_key(&(group.clone(), seq)))
                || (self.after_crash && d.delivery_count > 1),
            sub_ids: ids,
            origin: Origin::Group { group, seq },
        };
        self.enqueue(msg)
    }

    fn remember_seq(&mut self, seq: u64) {
        const RECENT: usize = 4096;
        let rare = self.rare();
        if rare.recent_seqs.insert(seq) {
            rare.recent_order.push_back(seq);
            if rare.recent_order.len() > RECENT
                && let Some(old) = rare.recent_order.pop_front()
            {
                rare.recent_seqs.remove(&old);
            }
        }
    }

    /// Sends a message now, or queues it until the client has room.
    pub(super) fn enqueue(&mut self, m: OutMsg) -> Step {
        if m.qos == 0 {
            return self.send_publish(m);
        }
        if self.outflight.len() < self.client_recv_max && self.queue.is_empty() {
            return self.send_publish(m);
        }
        if matches!(m.origin, Origin::Live)
            && self.queue.len() >= self.broker.options.max_queued_messages
        {
            // The client does not acknowledge what it has: it is a slow consumer. An
            // acknowledged QoS 1/2 message is never dropped quietly.
            tracing::warn!(client_id = %self.client_id, queued = self.queue.len(), "MQTT slow consumer: too many unacknowledged QoS 1/2 messages, disconnecting");
            self.broker.engine.slow_consumer(&self.client);
            return Err(self.disconnect(0x97, "slow consumer: too many unacknowledged messages"));
        }
        self.queue.push_back(m);
        Ok(())
    }

    /// Sends queued messages while the client has room, and asks groups for more.
    pub(super) fn pump(&mut self) -> Step {
        while self.outflight.len() < self.client_recv_max {
            let Some(m) = self.queue.pop_front() else {
                break;
            };
            self.send_publish(m)?;
        }
        let keys: Vec<u32> = self
            .subs
            .iter()
            .filter(|(_, s)| s.group.is_some() && !s.fetching)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.maybe_fetch(k);
        }
        Ok(())
    }

    pub(super) fn alloc_pkid(&mut self) -> u16 {
        // Ids held for stored messages sent before (few, and only after a
        // resumed session): looked through, not collected into a set per call.
        let reserved = |id: u16| {
            self.rare
                .as_ref()
                .is_some_and(|r| r.reuse_pkids.values().any(|&v| v == id))
        };
        for _ in 0..=u16::MAX {
            let id = self.next_pkid;
            self.next_pkid = if self.next_pkid == u16::MAX {
                1
            } else {
                self.next_pkid + 1
            };
            if !self.outflight.contains_key(&id) && !reserved(id) {
                return id;
            }
        }
        1
    }

    /// The packet id of a stored message: the one it was sent with before (kept
    /// in the session record), else the one its sequence gives
    /// ([`session::seq_pkid`]), else (in use) a free one, written to the
    /// session record so that a crash does not change it.
    fn group_pkid(&mut self, group: &str, seq: u64) -> u16 {
        let wanted = self
            .rare
            .as_mut()
            .and_then(|r| r.reuse_pkids.remove(&(group.to_owned(), seq)))
            .unwrap_or_else(|| session::seq_pkid(seq));
        if !self.outflight.contains_key(&wanted) {
            return wanted;
        }
        let pkid = self.alloc_pkid();
        self.record
            .pending_out
            .retain(|p| p.seq != seq || p.group != group);
        self.record.pending_out.push(PendingOut {
            pkid,
            group: group.to_owned(),
            seq,
        });
        if self.persistent() {
            // Queued before the PUBLISH is written to the socket.
            self.broker
                .store_record(&self.tenant, &self.client, &self.record, None);
        }
        pkid
    }

    pub(super) fn send_publish(&mut self, m: OutMsg) -> Step {
        // The clock is read only for a message with an expiry.
        let expiry = match expires_at(m.headers.as_ref()).map(|e| (e, now_ms())) {
            Some((e, now)) if e <= now => {
                self.ack_origin(&m.origin, AckKind::Ack);
                return Ok(());
            }
            Some((e, now)) => NonZeroU32::new(((e - now).div_ceil(1000)) as u32),
            None => None,
        };
        let Some(mut topic_name) = self.topic_or_skip(m.subject.as_bytes()) else {
            self.ack_origin(&m.origin, AckKind::Ack);
            return Ok(());
        };
        let mut alias = None;
        // A new alias is the client's only once the packet that sets it is
        // sent: one discarded as too large (below) sets nothing.
        let mut new_alias = None;
        if self.v5 && self.client_alias_max > 0 {
            let aliases = self.rare.as_ref().map(|r| &r.aliases_out);
            match aliases.and_then(|a| a.get(&topic_name)) {
                Some(a) => {
                    alias = NonZeroU16::new(*a);
                    topic_name.clear();
                }
                None => {
                    let next = aliases.map_or(0, |a| a.len()) as u16 + 1;
                    if next <= self.client_alias_max {
                        new_alias = Some((topic_name.clone(), next));
                        alias = NonZeroU16::new(next);
                    }
                }
            }
        }
        let lineage = self.broker.options.lineage_properties;
        let properties = self.v5.then(|| out_properties(&m, expiry, alias, lineage));
        let pkid = match &m.origin {
            Origin::Group { group, seq } if m.qos > 0 => Some(self.group_pkid(group, *seq)),
            _ if m.qos > 0 => Some(self.alloc_pkid()),
            _ => None,
        };
        let size = m.payload.len();
        let publish = Publish {
            dup: m.dup && m.qos > 0,
            retain: m.retain,
            qos: qos_of(m.qos),
            topic: ByteString::from(topic_name),
            packet_id: pkid.and_then(NonZeroU16::new),
            payload: m.payload,
            properties,
        };
        let packet = match lower(Out::Publish(Box::new(publish)), self.v5) {
            Some(p) => p,
            None => return Ok(()),
        };
        match self.wire.encode(packet) {
            Ok(()) => {}
            Err(e @ EncodeError::OverMaxPacketSize { .. }) => {
                // Larger than the client's Maximum Packet Size: discarded, and
                // handled as if it had been sent (MQTT-3.1.2-25).
                let n = self
                    .broker
                    .too_large
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1;
                tracing::info!(client_id = %self.client_id, error = %e, too_large_total = n, "MQTT message too large for the client, dropped");
                self.ack_origin(&m.origin, AckKind::Ack);
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(client_id = %self.client_id, error = %e, "MQTT PUBLISH cannot be encoded, closing");
                return Err(Close::WITH_WILL);
            }
        }
        if let Some((name, a)) = new_alias {
            self.rare().aliases_out.insert(name, a);
        }
        self.client.stats.record_out(size);
        if let Some(pkid) = pkid {
            let state = if m.qos == 1 {
                OutState::AwaitAck
            } else {
                OutState::AwaitRec
            };
            self.outflight.insert(pkid, (m.origin, state));
        } else {
            self.ack_origin(&m.origin, AckKind::Ack);
        }
        Ok(())
    }
}

pub(super) fn expires_at(h: Option<&Headers>) -> Option<u64> {
    h.filter(|h| from_mqtt(Some(h)))
        .and_then(|h| h.get(H_MQTT_EXPIRES))
        .and_then(|v| v.parse().ok())
}

/// The front-end's own `Mqtt-*` headers mean something only on messages that came
/// in over MQTT (a NATS or HTTP publisher may carry any header it likes).
pub(super) fn from_mqtt(h: Option<&Headers>) -> bool {
    h.and_then(|h| h.get(H_ORIGIN_PROTOCOL)) == Some("mqtt")
}

/// MQTT 5 properties of an outgoing message: headers become user properties,
/// exactly the publisher's (MQTT-3.3.2-17, -18). With `lineage` (`[mqtt]
/// lineage_properties`) the front-end's markers of a message published over MQTT
/// follow them.
pub(super) fn out_properties(
    m: &OutMsg,
    expiry: Option<NonZeroU32>,
    alias: Option<NonZeroU16>,
    lineage: bool,
) -> PublishProperties {
    let mut p = PublishProperties {
        topic_alias: alias,
        message_expiry_interval: expiry,
        subscription_ids: m
            .sub_ids
            .iter()
            .filter_map(|i| NonZeroU32::new(*i))
            .collect(),
        response_topic: m
            .reply
            .as_ref()
            .and_then(|r| topic::subject_to_topic(r.as_bytes()).ok())
            .map(ByteString::from),
        ..Default::default()
    };
    if let Some(h) = &m.headers {
        for (k, v) in h.iter() {
            if let Some(name) = session::escaped_property_name(k) {
                p.user_properties.push((
                    ByteString::from(name.to_owned()),
                    ByteString::from(v.to_owned()),
                ));
                continue;
            }
            if session::is_internal_header(k) {
                continue;
            }
            p.user_properties.push((
                ByteString::from(k.to_owned()),
                ByteString::from(v.to_owned()),
            ));
        }
        if lineage && from_mqtt(Some(h)) {
            for name in [H_ORIGIN_PROTOCOL, H_ORIGIN_CLIENT, H_ORIGIN_TOPIC] {
                if let Some(v) = h.get(name) {
                    p.user_properties
                        .push((ByteString::from(name), ByteString::from(v.to_owned())));
                }
            }
        }
        p.content_type = h
            .get(H_CONTENT_TYPE)
            .map(|c| ByteString::from(c.to_owned()));
        p.is_utf8_payload = h.get(H_MQTT_UTF8) == Some("1");
        p.correlation_data = h
            .get(H_MQTT_CORRELATION)
            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
            .map(Bytes::from);
    }
    p
}

/// Without Request Problem Information, reason strings go only in CONNACK and
/// DISCONNECT.
pub(super) fn strip_reason(out: Out) -> Out {
    match out {
        Out::PubAck(p, c, _) => Out::PubAck(p, c, None),
        Out::PubRec(p, c, _) => Out::PubRec(p, c, None),
        Out::SubAck(p, c, _) => Out::SubAck(p, c, None),
        other => other,
    }
}

impl From<TopicError> for EngineError {
    fn from(e: TopicError) -> Self {
        EngineError::BadRequest(e.to_string())
    }
}
