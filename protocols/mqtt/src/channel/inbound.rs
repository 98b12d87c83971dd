//! Inputs from the client (PUBLISH, SUBSCRIBE, UNSUBSCRIBE and the rest) and
//! from the mailbox.

use super::*;

/// A pause in the client's packets after which its activity is recorded at once.
const TOUCH_GAP: Duration = Duration::from_millis(1);
/// How often a continuous stream of packets records the client's activity.
const TOUCH_EVERY: Duration = Duration::from_millis(100);

impl MqttChannel {
    /// A packet the driver read (or its decode error) at `now`.
    pub(crate) fn on_frame(
        &mut self,
        frame: Result<rmqtt_codec::MqttPacket, DecodeError>,
        now: Instant,
    ) -> Step {
        // The client's last activity (`/connz`, wall clock) is written on the
        // first packet after a pause and then at most every 100 ms: the rest of
        // a burst would read the clock per packet for nothing.
        if now.duration_since(self.last_in) >= TOUCH_GAP
            || now.duration_since(self.last_touch) >= TOUCH_EVERY
        {
            self.client.stats.touch();
            self.last_touch = now;
        }
        self.last_in = now;
        match frame {
            Ok(packet) => self.handle(crate::frame::lift(packet)),
            Err(DecodeError::Io(e)) => {
                tracing::debug!(client_id = %self.client_id, error = %e, "MQTT connection lost");
                Err(Close::WITH_WILL)
            }
            Err(e) => {
                let code = match e {
                    // An invalid UTF-8 string is a malformed packet (v5 §1.5.4).
                    DecodeError::Utf8Error => 0x81,
                    _ => u8::from(e.to_reason_code()),
                };
                Err(self.disconnect(code, &e.to_string()))
            }
        }
    }

    /// Live messages the mailbox dropped for a slow client, and whether it had
    /// to refuse a QoS 1/2 message: then the client is disconnected.
    pub(crate) fn on_mailbox(&mut self, dropped: u64) -> Step {
        if dropped > 0 {
            tracing::warn!(client_id = %self.client_id, dropped, "MQTT client too slow: QoS 0 messages dropped");
        }
        if self.mailbox.overflowed() {
            tracing::warn!(client_id = %self.client_id, "MQTT slow consumer: QoS 1/2 messages could not be queued, disconnecting");
            self.broker.engine.slow_consumer(&self.client);
            return Err(self.disconnect(0x97, "slow consumer: messages could not be queued"));
        }
        Ok(())
    }

    /// One event from the mailbox.
    pub(crate) fn on_event(&mut self, event: Event) -> Step {
        match event {
            Event::Live { message, subs, .. } => self.on_live(message, &subs),
            Event::Group {
                sub,
                group,
                delivered,
            } => self.on_group(sub, &group, *delivered),
            Event::GroupEnd { sub } => {
                if let Some(s) = self.subs.get_mut(&sub) {
                    s.fetching = false;
                }
                self.maybe_fetch(sub);
                Ok(())
            }
            Event::Stored { slot, result } => {
                // Slots are handed out in increasing order.
                if let Ok(i) = self.acks_in.binary_search_by_key(&slot, |p| p.slot) {
                    let (pkid, qos) = (self.acks_in[i].pkid, self.acks_in[i].qos);
                    // The QoS 2 resends that came while it was stored share its
                    // outcome (up to the next publish with the same id).
                    if qos == 2 {
                        for p in self.acks_in.iter_mut().skip(i + 1) {
                            if p.pkid == pkid && p.qos == 2 {
                                if !p.echo {
                                    break;
                                }
                                p.result.get_or_insert_with(|| result.clone());
                            }
                        }
                    }
                    self.acks_in[i].result = Some(result);
                }
                self.flush_acks()
            }
            Event::Released { pkid } => self.on_released(pkid),
            Event::SubStored {
                pkid,
                codes,
                added,
                result,
            } => self.on_sub_stored(pkid, codes, added, result),
            Event::StoreRecord => {
                if self.persistent() {
                    self.broker
                        .store_record(&self.tenant, &self.client, &self.record, None);
                }
                Ok(())
            }
            Event::Send(out) => {
                let after = match &out {
                    Out::SubAck(pkid, ..) => {
                        self.rare.as_mut().and_then(|r| r.after_suback.remove(pkid))
                    }
                    _ => None,
                };
                self.write(out)?;
                for m in after.into_iter().flatten() {
                    self.enqueue(m)?;
                }
                Ok(())
            }
        }
    }

    /// Sends PUBACK/PUBREC for completed inbound publishes, in arrival order.
    pub(super) fn flush_acks(&mut self) -> Step {
        while self.acks_in.front().is_some_and(|p| p.result.is_some()) {
            let Some(p) = self.acks_in.pop_front() else {
                break;
            };
            let (code, why) = match p.result {
                Some(Err(crate::broker::Refusal { code, why, retry })) => {
                    tracing::warn!(client_id = %self.client_id, pkid = p.pkid, code, "MQTT publish refused: {why}");
                    if !self.v5 && retry {
                        // 3.1.1 cannot refuse a publish. When the broker could not
                        // store it (not the message's fault: storage, a full disk),
                        // it is not acknowledged and the connection closes, so the
                        // client sends it again later. A message refused for what
                        // it is (ACL, schema, quota) is acknowledged and dropped,
                        // as mosquitto does: a resend would be refused again.
                        return Err(self.disconnect(0x80, &why));
                    }
                    (code, Some(why))
                }
                _ => (0, None),
            };
            let out = if p.qos == 1 {
                Out::PubAck(p.pkid, code, why)
            } else {
                if code >= 0x80 {
                    self.record.qos2_in.remove(&p.pkid);
                }
                Out::PubRec(p.pkid, code, why)
            };
            self.write(out)?;
        }
        Ok(())
    }

    /// Handles one packet.
    pub(crate) fn handle(&mut self, packet: In) -> Step {
        match packet {
            In::Publish(p) => return self.on_publish(*p),
            In::PubAck(pkid) => self.on_puback(pkid),
            In::PubRec(pkid, code) => self.on_pubrec(pkid, code)?,
            In::PubRel(pkid) => self.on_pubrel(pkid)?,
            In::PubComp(pkid) => {
                if let Some((_, OutState::AwaitComp)) = self.outflight.get(&pkid) {
                    self.outflight.remove(&pkid);
                }
                self.record.pubrel_out.remove(&pkid);
                self.record.pubrel_seqs.remove(&pkid);
            }
            In::Subscribe { pkid, id, filters } => {
                return self.on_subscribe(pkid, id, filters);
            }
            In::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters)?,
            In::Ping => self.write(Out::PingResp)?,
            In::Disconnect {
                reason,
                session_expiry,
            } => {
                if let Some(e) = session_expiry {
                    if self.connect_expiry == 0 && e != 0 {
                        return Err(self.disconnect(
                            0x82,
                            "session expiry cannot be set on DISCONNECT after CONNECT set 0",
                        ));
                    }
                    self.record.expiry = e.min(self.broker.options.max_session_expiry);
                }
                // Only a normal disconnection (0x00) discards the will (v5 §3.14.4).
                return Err(Close {
                    end: if reason == 0x00 {
                        End::Normal
                    } else {
                        End::WithWill
                    },
                    drain: false,
                });
            }
            In::Connect(_) => {
                return Err(self.disconnect(0x82, "second CONNECT on a connection"));
            }
            In::Auth {
                reason,
                method,
                data,
            } => self.on_auth(reason, method, data)?,
            In::ServerOnly => {
                return Err(self.disconnect(0x82, "packet type a client may not send"));
            }
        }
        self.pump()
    }

    /// MQTT 5 re-authentication (§4.12.1): a client that authenticated with
    /// SCRAM-SHA-256 at CONNECT sends AUTH 0x19 with a new client-first-message,
    /// gets AUTH 0x18 (server-first), answers AUTH 0x18 (client-final), and
    /// gets AUTH 0x00 with the server-final-message; the session goes on
    /// meanwhile. The proof is checked by the engine as at CONNECT (a failure
    /// counts as a failed login). It must be the same user: the connection
    /// keeps the identity (and permissions) it got at CONNECT. Any failure
    /// ends the connection with a DISCONNECT saying why (MQTT-4.12.1-2): 0x87
    /// Not authorized for a failed proof (0x86 and 0x8A are CONNACK codes, not
    /// DISCONNECT ones), 0x82 for an AUTH out of sequence.
    pub(super) fn on_auth(
        &mut self,
        reason: u8,
        method: Option<String>,
        data: Option<Bytes>,
    ) -> Step {
        use crate::auth::{SCRAM_SHA_256, ScramServer};
        if !self.scram {
            return Err(self.disconnect(
                0x82,
                "AUTH after CONNACK, but CONNECT named no authentication method",
            ));
        }
        if method.as_deref() != Some(SCRAM_SHA_256) {
            // MQTT-4.12.1-1: the method CONNECT used.
            return Err(self.disconnect(
                0x82,
                "AUTH must name the authentication method CONNECT named (SCRAM-SHA-256)",
            ));
        }
        let data = data.unwrap_or_default();
        let under_way = self.rare.as_mut().and_then(|r| r.reauth.take());
        match (reason, under_way) {
            (0x19, None) => {
                let first = match crate::auth::client_first(&data) {
                    Ok(f) => f,
                    Err(e) => return Err(self.disconnect(0x87, &format!("re-authentication: {e}"))),
                };
                if self.username.as_deref() != Some(first.user.as_str()) {
                    return Err(self.disconnect(
                        0x87,
                        "re-authentication as another user than the connection's",
                    ));
                }
                let Some(keys) = self.broker.engine.scram_sha256(&first.user) else {
                    return Err(self.disconnect(0x87, "re-authentication: the broker has no users"));
                };
                let server = ScramServer::new(first, keys, &crate::auth::server_nonce());
                let challenge = Bytes::copy_from_slice(server.server_first().as_bytes());
                self.rare().reauth = Some(server);
                self.write(Out::Auth(0x18, SCRAM_SHA_256, challenge))
            }
            (0x18, Some(server)) => {
                let proof = server.client_final(&data);
                let (auth_message, proof_bytes) = match &proof {
                    Ok(p) => (p.auth_message.clone(), p.proof.clone()),
                    Err(_) => (String::new(), Vec::new()),
                };
                let creds = junction_api::Credentials::ScramSha256 {
                    user: server.user().to_owned(),
                    auth_message,
                    proof: proof_bytes,
                };
                let checked = self.broker.engine.authenticate_client(
                    &creds,
                    self.client.remote.ip(),
                    Some(&self.client_id),
                );
                match (proof, checked) {
                    (Ok(proof), Ok(_)) => {
                        tracing::info!(client_id = %self.client_id, user = server.user(), "MQTT client re-authenticated (SCRAM-SHA-256)");
                        let last = Bytes::from(server.server_final(&proof));
                        self.write(Out::Auth(0x00, SCRAM_SHA_256, last))
                    }
                    (_, Err(EngineError::Banned)) => {
                        Err(self.disconnect(0x87, "re-authentication: client banned"))
                    }
                    (Err(e), _) => Err(self.disconnect(0x87, &format!("re-authentication: {e}"))),
                    (Ok(_), Err(_)) => Err(self
                        .disconnect(0x87, "re-authentication failed: SCRAM proof does not match")),
                }
            }
            (0x19, Some(_)) => {
                Err(self.disconnect(0x82, "AUTH 0x19 while a re-authentication is under way"))
            }
            (0x18, None) => {
                Err(self.disconnect(0x82, "AUTH 0x18 with no re-authentication under way"))
            }
            (code, _) => Err(self.disconnect(
                0x82,
                &format!("AUTH with reason code {code:#04x} from a client"),
            )),
        }
    }

    pub(super) fn on_publish(&mut self, mut p: Publish) -> Step {
        let qos = qos_num(p.qos);
        let pkid = p.packet_id.map(|x| x.get()).unwrap_or(0);
        let props = p.properties.take().unwrap_or_default();
        // Topic aliases (MQTT 5).
        if let Some(alias) = props.topic_alias.map(|a| a.get()) {
            if alias > self.broker.options.topic_alias_maximum {
                return Err(self.disconnect(0x94, "topic alias out of range"));
            }
            if p.topic.is_empty() {
                match self.rare.as_ref().and_then(|r| r.aliases_in.get(&alias)) {
                    Some(t) => p.topic = ByteString::from(t.clone()),
                    None => {
                        return Err(self.disconnect(0x82, "unknown topic alias"));
                    }
                }
            } else {
                self.rare().aliases_in.insert(alias, p.topic.to_string());
            }
        }
        let topic_name = p.topic.to_string();
        let mapped = match topic::topic_to_subject(&topic_name) {
            Ok(s) => Ok(s),
            // A wildcard in a topic name breaks the protocol (MQTT-3.3.2-2): the
            // connection ends, as mosquitto does.
            Err(e @ (TopicError::WildcardInName | TopicError::Empty)) => {
                let why = format!("invalid topic name '{topic_name}': {e}");
                return Err(self.disconnect(0x90, &why));
            }
            // A topic with no subject form: only this publish is refused.
            Err(e) => Err(format!(
                "topic name '{}' cannot be mapped to a subject: {e}",
                topic_name.escape_debug()
            )),
        };
        // QoS 2 resend of a publish we already hold: answer again, store nothing.
        // While the first is still being stored, the resend's PUBREC waits for
        // it, in arrival order, with its outcome: every PUBLISH gets one PUBREC
        // (MQTT 4.3.3, the receiver's rules). A QoS 1 publish still pending
        // under the same id does not hold it back.
        if qos == 2 && self.record.qos2_in.contains(&pkid) {
            // The copy it repeats: the latest QoS 2 publish with this id still
            // waiting for its turn to be answered.
            if let Some(first) = self
                .acks_in
                .iter()
                .rev()
                .find(|a| a.pkid == pkid && a.qos == 2 && !a.echo)
            {
                // Its outcome may be in already (it waits behind an earlier
                // publish): then the resend has it too, or it would wait for
                // an outcome that does not come again.
                let result = first.result.clone();
                let slot = self.next_slot;
                self.next_slot += 1;
                self.acks_in.push_back(PendingIn {
                    slot,
                    pkid,
                    qos: 2,
                    result,
                    echo: true,
                });
            } else {
                self.write(Out::PubRec(pkid, 0, None))?;
            }
            return Ok(());
        }
        if self.v5 && qos > 0 {
            let inflight =
                self.acks_in.iter().filter(|a| a.qos == 1).count() + self.record.qos2_in.len();
            if self.v5 && inflight >= usize::from(self.broker.options.receive_maximum) {
                return Err(self.disconnect(0x93, "receive maximum exceeded"));
            }
        }
        let (subject, refused) = match mapped {
            Ok(subject) => {
                let refused = if (topic_name == "$SYS" || topic_name.starts_with("$SYS/"))
                    || junction_api::is_internal_publish_subject(subject.as_bytes())
                {
                    Some((0x87, format!("topic '{topic_name}' is reserved")))
                } else if denied_publish(&self.broker, self.username.as_deref(), &topic_name)
                    || self
                        .client
                        .permissions()
                        .is_some_and(|p| !p.may_publish(subject.as_bytes()))
                {
                    let why = format!("not authorized to publish to '{topic_name}'");
                    self.broker.engine.permission_violation(&self.client, &why);
                    Some((0x87, why))
                } else if props.is_utf8_payload && std::str::from_utf8(&p.payload).is_err() {
                    Some((
                        0x99,
                        "payload is not UTF-8 as its format indicator says".to_owned(),
                    ))
                } else {
                    None
                };
                (subject, refused)
            }
            Err(why) => (Subject::from_trusted(Bytes::new()), Some((0x90, why))),
        };
        if let Some((code, why)) = refused {
            tracing::info!(client_id = %self.client_id, topic = %topic_name.escape_debug(), code, "MQTT publish refused: {why}");
            if !self.v5 && qos > 0 && code == 0x90 {
                // A topic with U+0000 is a malformed packet in 3.1.1, which has no
                // negative PUBACK: the connection closes.
                return Err(self.disconnect(code, &why));
            }
            return match qos {
                0 => Ok(()),
                1 => self.write(Out::PubAck(pkid, code, Some(why))),
                _ => {
                    if !self.v5 {
                        self.record.qos2_in.insert(pkid);
                    }
                    self.write(Out::PubRec(pkid, code, Some(why)))
                }
            };
        }
        self.client.stats.record_in(p.payload.len());
        let message = build_message(
            subject,
            &topic_name,
            p.payload,
            qos,
            p.retain,
            &props,
            &self.client_id,
        );
        if qos == 0 {
            self.broker.route(
                &self.tenant,
                &self.client,
                message,
                0,
                p.retain,
                &topic_name,
                None,
            );
            return Ok(());
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        let mailbox = self.mailbox.clone();
        let join = AckJoin::new(move |result| {
            mailbox.push(Event::Stored { slot, result });
        });
        self.acks_in.push_back(PendingIn {
            slot,
            pkid,
            qos,
            result: None,
            echo: false,
        });
        self.broker.route(
            &self.tenant,
            &self.client,
            message,
            qos,
            p.retain,
            &topic_name,
            Some(&join),
        );
        if qos == 2 {
            self.record.qos2_in.insert(pkid);
            if self.persistent() {
                self.broker.store_record(
                    &self.tenant,
                    &self.client,
                    &self.record,
                    Some(join.part()),
                );
            }
        }
        join.arm();
        Ok(())
    }

    pub(super) fn on_pubrel(&mut self, pkid: u16) -> Step {
        if self.record.qos2_in.remove(&pkid) {
            if self.persistent() {
                let mailbox = self.mailbox.clone();
                self.broker.store_record(
                    &self.tenant,
                    &self.client,
                    &self.record,
                    Some(Box::new(move |_| {
                        mailbox.push(Event::Send(Out::PubComp(pkid, 0)));
                    })),
                );
                Ok(())
            } else {
                self.write(Out::PubComp(pkid, 0))
            }
        } else {
            self.write(Out::PubComp(pkid, 0x92))
        }
    }

    pub(super) fn on_subscribe(
        &mut self,
        pkid: u16,
        id: Option<u32>,
        filters: Vec<(String, rmqtt_codec::v5::SubscriptionOptions)>,
    ) -> Step {
        let mut codes = Vec::with_capacity(filters.len());
        let mut added = Vec::new();
        let mut retained_out = Vec::new();
        for (raw, o) in filters {
            // A bridge's subscriptions (mosquitto's bridge bit) are No Local
            // and Retain As Published, as mosquitto makes them; not a shared
            // one's, where No Local is a protocol error.
            let bridged = self.bridge && !raw.starts_with("$share/");
            let opts = SubOpts {
                qos: qos_num(o.qos).min(2),
                no_local: o.no_local || bridged,
                retain_as_published: o.retain_as_published || bridged,
                retain_handling: u8::from(o.retain_handling),
                id,
            };
            let mapped = match topic::map_filter(&raw) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!(client_id = %self.client_id, filter = %raw, error = %e, "MQTT subscribe refused");
                    codes.push(if self.v5 { 0x8F } else { 0x80 });
                    continue;
                }
            };
            if mapped.share.is_some() && opts.no_local {
                return Err(self.disconnect(0x82, "No Local on a shared subscription"));
            }
            if self.denied_subscribe_filter(&mapped.topic_filter)
                || self.client.permissions().is_some_and(|p| {
                    let queue = mapped.share.as_deref();
                    mapped
                        .subjects
                        .iter()
                        .any(|s| !p.may_subscribe(s.as_bytes(), queue))
                })
            {
                tracing::info!(client_id = %self.client_id, filter = %raw, "MQTT subscribe denied by ACL");
                self.broker.engine.permission_violation(
                    &self.client,
                    &format!("not authorized to subscribe to '{raw}'"),
                );
                codes.push(if self.v5 { 0x87 } else { 0x80 });
                continue;
            }
            let existed = self.sub_keys.contains_key(&raw);
            // A subscription of the resumed session with a consumer group keeps
            // it when subscribed again, even in a connection that asked for
            // no Session Expiry Interval.
            let had_group = self
                .sub_keys
                .get(&raw)
                .and_then(|k| self.subs.get(k))
                .is_some_and(|sub| sub.group.is_some())
                // (A session that only joined a share group's queue holds none.)
                && (mapped.share.is_none()
                    || self
                        .tenant
                        .durable
                        .read()
                        .contains_key(&(self.client_id.clone(), raw.clone())));
            if existed {
                // Still a persistent QoS 1/2 subscription: keep its group and
                // backlog; otherwise the group goes.
                let durable = (self.persistent() || had_group) && opts.qos > 0;
                self.deactivate(&raw, !durable);
            }
            match self.activate(&raw, opts.clone(), mapped.clone(), had_group) {
                Ok(key) => {
                    self.record.subs.insert(raw.clone(), opts.clone());
                    added.push((codes.len(), raw.clone()));
                    codes.push(opts.qos);
                    let send_retained = mapped.share.is_none()
                        && (opts.retain_handling == 0 || (opts.retain_handling == 1 && !existed));
                    if send_retained {
                        retained_out.extend(self.retained_for(&mapped, &opts, key));
                    }
                }
                Err(e) => {
                    tracing::warn!(client_id = %self.client_id, filter = %raw, error = %e, "MQTT subscribe failed");
                    codes.push(0x80);
                }
            }
        }
        if self.persistent() {
            // SUBACK once the session record (with these subscriptions) is stored.
            self.rare().after_suback.insert(pkid, retained_out);
            let mailbox = self.mailbox.clone();
            self.broker.store_record(
                &self.tenant,
                &self.client,
                &self.record,
                Some(Box::new(move |result| {
                    mailbox.push(Event::SubStored {
                        pkid,
                        codes,
                        added,
                        result: result.map(|_| ()).map_err(|e| e.to_string()),
                    });
                })),
            );
        } else {
            self.write(Out::SubAck(pkid, codes, None))?;
            for m in retained_out {
                self.enqueue(m)?;
            }
        }
        let keys: Vec<u32> = self.subs.keys().copied().collect();
        for k in keys {
            self.maybe_fetch(k);
        }
        Ok(())
    }

    /// A persistent session's SUBSCRIBE is stored (SUBACK with its codes, then the
    /// retained messages) or not: then every subscription it added is taken back and
    /// gets 0x80, as nothing of it would survive a restart.
    fn on_sub_stored(
        &mut self,
        pkid: u16,
        mut codes: Vec<u8>,
        added: Vec<(usize, String)>,
        result: Result<(), String>,
    ) -> Step {
        let retained = self
            .rare
            .as_mut()
            .and_then(|r| r.after_suback.remove(&pkid))
            .unwrap_or_default();
        if let Err(why) = result {
            tracing::error!(client_id = %self.client_id, pkid, "MQTT subscription refused: session not stored: {why}");
            for (i, raw) in added {
                self.deactivate(&raw, true);
                self.record.subs.remove(&raw);
                if let Some(c) = codes.get_mut(i) {
                    *c = 0x80;
                }
            }
            return self.write(Out::SubAck(
                pkid,
                codes,
                Some(format!("session state not stored: {why}")),
            ));
        }
        self.write(Out::SubAck(pkid, codes, None))?;
        for m in retained {
            self.enqueue(m)?;
        }
        Ok(())
    }

    pub(super) fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) -> Step {
        let mut codes = Vec::with_capacity(filters.len());
        for raw in filters {
            let existed = self.deactivate(&raw, true);
            self.record.subs.remove(&raw);
            codes.push(if existed { 0x00 } else { 0x11 });
        }
        if self.persistent() {
            let mailbox = self.mailbox.clone();
            let client_id = self.client_id.clone();
            self.broker.store_record(
                &self.tenant,
                &self.client,
                &self.record,
                Some(Box::new(move |result| {
                    let codes = match result {
                        Ok(_) => codes,
                        Err(e) => {
                            tracing::error!(%client_id, error = %e, "MQTT unsubscribe not stored");
                            vec![0x80; codes.len()]
                        }
                    };
                    mailbox.push(Event::Send(Out::UnsubAck(pkid, codes)));
                })),
            );
            Ok(())
        } else {
            self.write(Out::UnsubAck(pkid, codes))
        }
    }

    pub(super) fn denied_subscribe_filter(&self, filter: &str) -> bool {
        self.broker.options.acl.iter().any(|r| {
            (r.user.is_none() || r.user.as_deref() == self.username.as_deref())
                && r.deny_subscribe
                    .iter()
                    .any(|d| topic::filter_within(filter, d))
        })
    }

    pub(super) fn denied_receive(&self, topic_name: &str) -> bool {
        if let Some(p) = self.client.permissions()
            && let Ok(subject) = topic::topic_to_subject(topic_name)
            && p.deny_delivery(&subject, None)
        {
            return true;
        }
        self.broker.options.acl.iter().any(|r| {
            (r.user.is_none() || r.user.as_deref() == self.username.as_deref())
                && r.deny_subscribe
                    .iter()
                    .any(|d| topic::filter_matches(d, topic_name))
        })
    }

    pub(super) fn retained_for(
        &self,
        mapped: &MappedFilter,
        opts: &SubOpts,
        key: u32,
    ) -> Vec<OutMsg> {
        let now = now_ms();
        let retained = self.tenant.retained.read();
        let mut out = Vec::new();
        for (t, r) in retained.iter() {
            if !topic::filter_matches(&mapped.topic_filter, t) || self.denied_receive(t) {
                continue;
            }
            if expires_at(r.headers.as_ref()).is_some_and(|e| e <= now) {
                continue;
            }
            let _ = key;
            out.push(OutMsg {
                subject: r.subject.clone(),
                payload: r.payload.clone(),
                headers: r.headers.clone(),
                reply: r.reply.clone(),
                qos: r.qos.min(opts.qos),
                retain: true,
                dup: false,
                sub_ids: opts.id.into_iter().collect(),
                origin: Origin::Live,
            });
        }
        out
    }

    /// Creates the engine side of a subscription: live subscriptions, and for a
    /// persistent QoS 1/2 one its consumer group. `resumed`: a subscription of
    /// the resumed session, which keeps its consumer group (and what is queued
    /// in it) even when this connection asked for no Session Expiry Interval:
    /// the session's state is resumed as it was (MQTT-3.1.2-4), and the
    /// interval given only says when the session ends after this connection.
    pub(super) fn activate(
        &mut self,
        raw: &str,
        opts: SubOpts,
        mapped: MappedFilter,
        resumed: bool,
    ) -> Result<u32, EngineError> {
        let key = self.next_sub_key;
        self.next_sub_key += 1;
        // A persistent QoS 1/2 subscription has a consumer group; a shared one
        // shares its share group's, which a session without a session state
        // joins too while the share group has one (so that each message goes to
        // one member), though it does not keep it.
        let member = (self.persistent() || resumed) && opts.qos > 0;
        let joins =
            !member && opts.qos > 0 && mapped.share.is_some() && self.tenant.share_queued(raw);
        let durable = member || joins;
        let mut group = None;
        if joins {
            group = Some(group_name(&self.client_id, raw));
        } else if durable {
            let name = group_name(&self.client_id, raw);
            let config = durable_group(&self.client_id, raw, &mapped.subjects);
            let mut created =
                self.broker
                    .engine
                    .create_internal_group(&self.tenant.id, MSGS, config.clone());
            if matches!(created, Err(EngineError::StationNotFound)) {
                tracing::error!(
                    station = MSGS,
                    "MQTT station missing: making the front-end's stations again"
                );
                if self.broker.repair(&self.tenant) {
                    created =
                        self.broker
                            .engine
                            .create_internal_group(&self.tenant.id, MSGS, config);
                }
            }
            match created {
                Ok(_) | Err(EngineError::GroupExists) => {}
                Err(e) => return Err(e),
            }
            let added = self
                .tenant
                .durable
                .write()
                .insert(
                    (self.client_id.clone(), raw.to_owned()),
                    mapped.subjects.clone(),
                )
                .is_none();
            if added {
                self.broker
                    .announce_durable(&self.tenant, &self.client_id, raw, true);
            }
            group = Some(name);
        }
        let queue = match &mapped.share {
            Some(g) => Some(QueueGroup::new(Bytes::from(g.clone()))?),
            None => None,
        };
        let mut ids = Vec::new();
        for f in &mapped.subjects {
            let live = Arc::new(LiveSub {
                mailbox: self.mailbox.clone(),
                sub: key,
                filter: raw.to_owned(),
                wild_first: mapped.wild_first,
                no_local: opts.no_local.then(|| self.client_id.clone()),
                durable,
                qos: opts.qos,
                delivered: AtomicU64::new(0),
            });
            match self
                .broker
                .engine
                .subscribe(&self.client, f.clone(), queue.clone(), live)
            {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for id in ids {
                        self.broker.engine.unsubscribe(&self.client, id);
                    }
                    return Err(e);
                }
            }
        }
        self.subs.insert(
            key,
            ActiveSub {
                raw: raw.to_owned(),
                opts,
                mapped,
                engine_ids: ids,
                group,
                fetching: false,
            },
        );
        self.sub_keys.insert(raw.to_owned(), key);
        Ok(key)
    }

    /// Removes a subscription's engine side; `delete_group` also drops its stored
    /// backlog (UNSUBSCRIBE, or the session ending).
    pub(super) fn deactivate(&mut self, raw: &str, delete_group: bool) -> bool {
        let Some(key) = self.sub_keys.remove(raw) else {
            return false;
        };
        if let Some(sub) = self.subs.remove(&key) {
            for id in sub.engine_ids {
                self.broker.engine.unsubscribe(&self.client, id);
            }
            if let Some(g) = &sub.group
                && delete_group
            {
                let member = self
                    .tenant
                    .durable
                    .write()
                    .remove(&(self.client_id.clone(), raw.to_owned()))
                    .is_some();
                if member {
                    self.broker
                        .announce_durable(&self.tenant, &self.client_id, raw, false);
                }
                // A share group's queue stays while another persistent session
                // holds the subscription.
                let shared = sub.mapped.share.is_some();
                if !shared || (member && !self.tenant.share_queued(raw)) {
                    let _ = self
                        .broker
                        .engine
                        .delete_internal_group(&self.tenant.id, MSGS, g);
                }
            }
            let _ = (&sub.raw, &sub.opts, &sub.mapped);
        }
        true
    }
}
