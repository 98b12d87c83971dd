//! Packets from the client: the main loop, PUBLISH in, SUBSCRIBE, UNSUBSCRIBE.

use super::*;
use futures::FutureExt;

/// Longest a connection waits for a congested cluster link before it reads on.
const BACKPRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A packet read this long after the previous one was read on waking (the
/// connection was idle), not from a burst.
const WOKEN_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(super) async fn main_loop(
        &mut self,
        kick: &CancellationToken,
        operator: &CancellationToken,
    ) -> End {
        loop {
            let deadline = self.keep_alive.map(|k| self.last_in + k);
            tokio::select! {
                biased;
                _ = kick.cancelled() => {
                    self.disconnect(0x8E, "session taken over").await;
                    return End::TakenOver;
                }
                _ = operator.cancelled() => {
                    // MQTT 5 0x98 Administrative action; MQTT 3.1.1 has no server
                    // DISCONNECT, so the socket just closes. An abnormal end: the
                    // will goes out.
                    self.disconnect(0x98, "Kicked by operator").await;
                    return End::WithWill;
                }
                _ = self.broker.shutdown.cancelled() => {
                    self.disconnect(0x8B, "server shutting down").await;
                    return End::Shutdown;
                }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    self.disconnect(0x8D, "keep alive timeout").await;
                    return End::WithWill;
                }
                frame = self.framed.next() => {
                    let now = Instant::now();
                    // Read on waking, not in the middle of a burst already
                    // buffered (packets of a burst come microseconds apart).
                    let woke = now.duration_since(self.last_in) >= WOKEN_AFTER;
                    self.last_in = now;
                    self.client.stats.touch();
                    // Packets that reached the broker together are handled in
                    // the order they arrived, as mosquitto's single loop does: the
                    // runtime runs the connection woken last first, so a PUBLISH
                    // read on waking yields once, and a SUBSCRIBE another client
                    // sent just before it is in force when it fans out (MQTT 4.6,
                    // 3.8.4; `subscription_live_before_suback_mqtt_3_8_4.rs`).
                    // The rest of a burst does not yield: a task switch per
                    // PUBLISH would cost QoS 0 throughput for nothing.
                    if woke
                        && matches!(
                            &frame,
                            Some(Ok((MqttPacket::V5(v5::Packet::Publish(_)), _)))
                                | Some(Ok((MqttPacket::V3(v3::Packet::Publish(_)), _)))
                        )
                    {
                        tokio::task::yield_now().await;
                    }
                    if let Some(end) = self.on_frame(frame).await {
                        return end;
                    }
                    // Take every packet already read before answering, so a burst of
                    // publishes is acknowledged with one write.
                    for _ in 0..64 {
                        match self.framed.next().now_or_never() {
                            Some(frame) => {
                                if let Some(end) = self.on_frame(frame).await {
                                    return end;
                                }
                            }
                            None => break,
                        }
                    }
                }
                _ = self.mailbox.wait() => {}
            }
            if !self.drain().await || !self.flush().await {
                return End::WithWill;
            }
            // A cluster link behind: read no more publishes until it catches up
            // (at most BACKPRESSURE_WAIT; past that the link drops what does not fit).
            if let Some(wait) = self.broker.engine.backpressure() {
                let _ = tokio::time::timeout(BACKPRESSURE_WAIT, wait).await;
            }
        }
    }

    /// Handles what the socket produced; `Some` ends the connection.
    async fn on_frame(
        &mut self,
        frame: Option<Result<(MqttPacket, u32), DecodeError>>,
    ) -> Option<End> {
        match frame {
            Some(Ok((packet, _))) => self.handle(lift(packet)).await,
            Some(Err(DecodeError::Io(e))) => {
                tracing::debug!(client_id = %self.client_id, error = %e, "MQTT connection lost");
                Some(End::WithWill)
            }
            Some(Err(e)) => {
                let code = match e {
                    // An invalid UTF-8 string is a malformed packet (v5 §1.5.4).
                    DecodeError::Utf8Error => 0x81,
                    _ => u8::from(e.to_reason_code()),
                };
                self.disconnect(code, &e.to_string()).await;
                Some(End::WithWill)
            }
            None => Some(End::WithWill),
        }
    }

    /// Handles everything in the mailbox.
    pub(super) async fn drain(&mut self) -> bool {
        let (events, dropped) = self.mailbox.take();
        if dropped > 0 {
            tracing::warn!(client_id = %self.client_id, dropped, "MQTT client too slow: QoS 0 messages dropped");
        }
        if self.mailbox.overflowed() {
            tracing::warn!(client_id = %self.client_id, "MQTT slow consumer: QoS 1/2 messages could not be queued, disconnecting");
            self.broker.engine.slow_consumer(&self.client);
            self.disconnect(0x97, "slow consumer: messages could not be queued")
                .await;
            return false;
        }
        for e in events {
            let ok = match e {
                Event::Live { message, subs, .. } => self.on_live(message, &subs).await,
                Event::Group {
                    sub,
                    group,
                    delivered,
                } => self.on_group(sub, &group, *delivered).await,
                Event::GroupEnd { sub } => {
                    if let Some(s) = self.subs.get_mut(&sub) {
                        s.fetching = false;
                    }
                    self.maybe_fetch(sub);
                    true
                }
                Event::Stored { slot, result } => {
                    // Slots are handed out in increasing order.
                    if let Ok(i) = self.acks_in.binary_search_by_key(&slot, |p| p.slot) {
                        self.acks_in[i].result = Some(result);
                    }
                    self.flush_acks().await
                }
                Event::Released { pkid } => self.on_released(pkid).await,
                Event::SubStored {
                    pkid,
                    codes,
                    added,
                    result,
                } => self.on_sub_stored(pkid, codes, added, result).await,
                Event::StoreRecord => {
                    if self.persistent() {
                        self.broker
                            .store_record(&self.tenant, &self.client, &self.record, None);
                    }
                    true
                }
                Event::Send(out) => {
                    let after = match &out {
                        Out::SubAck(pkid, ..) => self.after_suback.remove(pkid),
                        _ => None,
                    };
                    let mut ok = self.write(out).await;
                    for m in after.into_iter().flatten() {
                        ok = ok && self.enqueue(m).await;
                    }
                    ok
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// Sends PUBACK/PUBREC for completed inbound publishes, in arrival order.
    pub(super) async fn flush_acks(&mut self) -> bool {
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
                        self.disconnect(0x80, &why).await;
                        return false;
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
            if !self.write(out).await {
                return false;
            }
        }
        true
    }

    /// Handles one packet; `Some` ends the connection.
    pub(super) async fn handle(&mut self, packet: In) -> Option<End> {
        match packet {
            In::Publish(p) => return self.on_publish(*p).await,
            In::PubAck(pkid) => self.on_puback(pkid),
            In::PubRec(pkid, code) => {
                if !self.on_pubrec(pkid, code).await {
                    return Some(End::WithWill);
                }
            }
            In::PubRel(pkid) => {
                if !self.on_pubrel(pkid).await {
                    return Some(End::WithWill);
                }
            }
            In::PubComp(pkid) => {
                if let Some((_, OutState::AwaitComp)) = self.outflight.get(&pkid) {
                    self.outflight.remove(&pkid);
                }
                self.record.pubrel_out.remove(&pkid);
            }
            In::Subscribe { pkid, id, filters } => {
                return self.on_subscribe(pkid, id, filters).await;
            }
            In::Unsubscribe { pkid, filters } => {
                if !self.on_unsubscribe(pkid, filters).await {
                    return Some(End::WithWill);
                }
            }
            In::Ping => {
                if !self.write(Out::PingResp).await {
                    return Some(End::WithWill);
                }
            }
            In::Disconnect {
                reason,
                session_expiry,
            } => {
                if let Some(e) = session_expiry {
                    if self.connect_expiry == 0 && e != 0 {
                        self.disconnect(
                            0x82,
                            "session expiry cannot be set on DISCONNECT after CONNECT set 0",
                        )
                        .await;
                        return Some(End::WithWill);
                    }
                    self.record.expiry = e.min(self.broker.options.max_session_expiry);
                }
                // Only a normal disconnection (0x00) discards the will (v5 §3.14.4).
                return Some(if reason == 0x00 {
                    End::Normal
                } else {
                    End::WithWill
                });
            }
            In::Connect(_) => {
                self.disconnect(0x82, "second CONNECT on a connection")
                    .await;
                return Some(End::WithWill);
            }
            In::Auth => {
                self.disconnect(0x82, "AUTH without enhanced authentication")
                    .await;
                return Some(End::WithWill);
            }
            In::ServerOnly => {
                self.disconnect(0x82, "packet type a client may not send")
                    .await;
                return Some(End::WithWill);
            }
        }
        self.pump()
            .await
            .then_some(())
            .map_or(Some(End::WithWill), |_| None)
    }

    pub(super) async fn on_publish(&mut self, mut p: Publish) -> Option<End> {
        let qos = qos_num(p.qos);
        let pkid = p.packet_id.map(|x| x.get()).unwrap_or(0);
        let props = p.properties.take().unwrap_or_default();
        // Topic aliases (MQTT 5).
        if let Some(alias) = props.topic_alias.map(|a| a.get()) {
            if alias > self.broker.options.topic_alias_maximum {
                self.disconnect(0x94, "topic alias out of range").await;
                return Some(End::WithWill);
            }
            if p.topic.is_empty() {
                match self.aliases_in.get(&alias) {
                    Some(t) => p.topic = ByteString::from(t.clone()),
                    None => {
                        self.disconnect(0x82, "unknown topic alias").await;
                        return Some(End::WithWill);
                    }
                }
            } else {
                self.aliases_in.insert(alias, p.topic.to_string());
            }
        }
        let topic_name = p.topic.to_string();
        let mapped = match topic::topic_to_subject(&topic_name) {
            Ok(s) => Ok(s),
            // A wildcard in a topic name breaks the protocol (MQTT-3.3.2-2): the
            // connection ends, as mosquitto does.
            Err(e @ (TopicError::WildcardInName | TopicError::Empty)) => {
                let why = format!("invalid topic name '{topic_name}': {e}");
                self.disconnect(0x90, &why).await;
                return Some(End::WithWill);
            }
            // A topic with no subject form: only this publish is refused.
            Err(e) => Err(format!(
                "topic name '{}' cannot be mapped to a subject: {e}",
                topic_name.escape_debug()
            )),
        };
        // QoS 2 resend of a publish we already hold: answer again, store nothing.
        if qos == 2 && self.record.qos2_in.contains(&pkid) {
            if !self.acks_in.iter().any(|a| a.pkid == pkid)
                && !self.write(Out::PubRec(pkid, 0, None)).await
            {
                return Some(End::WithWill);
            }
            return None;
        }
        if self.v5 && qos > 0 {
            let inflight =
                self.acks_in.iter().filter(|a| a.qos == 1).count() + self.record.qos2_in.len();
            if self.v5 && inflight >= usize::from(self.broker.options.receive_maximum) {
                self.disconnect(0x93, "receive maximum exceeded").await;
                return Some(End::WithWill);
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
                self.disconnect(code, &why).await;
                return Some(End::WithWill);
            }
            let ok = match qos {
                0 => true,
                1 => self.write(Out::PubAck(pkid, code, Some(why))).await,
                _ => {
                    if !self.v5 {
                        self.record.qos2_in.insert(pkid);
                    }
                    self.write(Out::PubRec(pkid, code, Some(why))).await
                }
            };
            return (!ok).then_some(End::WithWill);
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
            return None;
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
        None
    }

    pub(super) async fn on_pubrel(&mut self, pkid: u16) -> bool {
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
                true
            } else {
                self.write(Out::PubComp(pkid, 0)).await
            }
        } else {
            self.write(Out::PubComp(pkid, 0x92)).await
        }
    }

    pub(super) async fn on_subscribe(
        &mut self,
        pkid: u16,
        id: Option<u32>,
        filters: Vec<(String, rmqtt_codec::v5::SubscriptionOptions)>,
    ) -> Option<End> {
        let mut codes = Vec::with_capacity(filters.len());
        let mut added = Vec::new();
        let mut retained_out = Vec::new();
        for (raw, o) in filters {
            let opts = SubOpts {
                qos: qos_num(o.qos).min(2),
                no_local: o.no_local,
                retain_as_published: o.retain_as_published,
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
                self.disconnect(0x82, "No Local on a shared subscription")
                    .await;
                return Some(End::WithWill);
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
            self.after_suback.insert(pkid, retained_out);
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
            if !self.write(Out::SubAck(pkid, codes, None)).await {
                return Some(End::WithWill);
            }
            for m in retained_out {
                if !self.enqueue(m).await {
                    return Some(End::WithWill);
                }
            }
        }
        let keys: Vec<u32> = self.subs.keys().copied().collect();
        for k in keys {
            self.maybe_fetch(k);
        }
        None
    }

    /// A persistent session's SUBSCRIBE is stored (SUBACK with its codes, then the
    /// retained messages) or not: then every subscription it added is taken back and
    /// gets 0x80, as nothing of it would survive a restart.
    async fn on_sub_stored(
        &mut self,
        pkid: u16,
        mut codes: Vec<u8>,
        added: Vec<(usize, String)>,
        result: Result<(), String>,
    ) -> bool {
        let retained = self.after_suback.remove(&pkid).unwrap_or_default();
        if let Err(why) = result {
            tracing::error!(client_id = %self.client_id, pkid, "MQTT subscription refused: session not stored: {why}");
            for (i, raw) in added {
                self.deactivate(&raw, true);
                self.record.subs.remove(&raw);
                if let Some(c) = codes.get_mut(i) {
                    *c = 0x80;
                }
            }
            return self
                .write(Out::SubAck(
                    pkid,
                    codes,
                    Some(format!("session state not stored: {why}")),
                ))
                .await;
        }
        if !self.write(Out::SubAck(pkid, codes, None)).await {
            return false;
        }
        for m in retained {
            if !self.enqueue(m).await {
                return false;
            }
        }
        true
    }

    pub(super) async fn on_unsubscribe(&mut self, pkid: u16, filters: Vec<String>) -> bool {
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
            true
        } else {
            self.write(Out::UnsubAck(pkid, codes)).await
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
