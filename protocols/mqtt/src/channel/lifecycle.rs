//! A session resumed at CONNECT and put away when the connection ends.

use super::*;
use crate::broker::remaining_expiry;

/// What [`MqttChannel::put_away`] decided, for [`MqttChannel::release`] once
/// the socket is closed.
pub(crate) struct PutAway {
    end: End,
    will: Option<Will>,
    will_delay: Option<Duration>,
    record: Option<SessionRecord>,
    persistent: bool,
    moved: bool,
}

impl MqttChannel {
    pub(super) fn persistent(&self) -> bool {
        self.record.expiry > 0
    }

    /// Re-establishes a resumed session's subscriptions and resends PUBRELs.
    pub(super) fn restore(&mut self) {
        let subs: Vec<(String, SubOpts)> = self
            .record
            .subs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (raw, opts) in subs {
            if let Ok(mapped) = topic::map_filter(&raw)
                && let Err(e) = self.activate(&raw, opts, mapped, true)
            {
                tracing::warn!(client_id = %self.client_id, filter = %raw, error = %e, "cannot restore subscription");
            }
        }
        // Kept in the record too (until acknowledged): a record written later in
        // this connection still holds them, for a crash before they are resent.
        for p in self.record.pending_out.clone() {
            self.rare().reuse_pkids.insert((p.group, p.seq), p.pkid);
        }
        for (group, seq) in self
            .record
            .pubrel_seqs
            .values()
            .cloned()
            .collect::<Vec<_>>()
        {
            self.rare().released.insert((group, seq));
        }
        let pubrels: Vec<u16> = self.record.pubrel_out.iter().copied().collect();
        for pkid in pubrels {
            self.outflight
                .insert(pkid, (Origin::Live, OutState::AwaitComp));
            self.mailbox.push(Event::Send(Out::PubRel(pkid, 0)));
        }
        let keys: Vec<u32> = self.subs.keys().copied().collect();
        for k in keys {
            self.maybe_fetch(k);
        }
    }

    /// Ends the session's use of this connection: undelivered messages go back
    /// to their groups, the engine forgets the client, and a persistent session's
    /// record (with a pending delayed will) is queued for its durable write. The
    /// driver closes the socket after this, and then calls [`Self::release`].
    pub(crate) fn put_away(&mut self, end: End) -> PutAway {
        // Nothing more is taken in once the socket goes: undelivered group messages
        // go back to their groups, as first deliveries.
        let leftovers = self.mailbox.close();
        for e in leftovers {
            if let Event::Group {
                group, delivered, ..
            } = e
            {
                let _ = self.broker.engine.ack(
                    &self.tenant.id,
                    MSGS,
                    &group,
                    delivered.message.seq,
                    AckKind::Nak(None),
                );
            }
        }
        let queued: Vec<OutMsg> = self.queue.drain(..).collect();
        for m in queued {
            self.ack_origin(&m.origin, AckKind::Nak(None));
        }
        let mut pending = Vec::new();
        let inflight: Vec<(u16, (Origin, OutState))> =
            std::mem::take(&mut self.outflight).into_iter().collect();
        for (pkid, (origin, state)) in inflight {
            if state == OutState::AwaitComp {
                // The client has it (PUBREC); the PUBREL state is in the record.
                self.ack_origin(&origin, AckKind::Ack);
                continue;
            }
            if let Origin::Group { group, seq, .. } = &origin {
                self.ack_origin(&origin, AckKind::Nak(None));
                pending.push(PendingOut {
                    pkid,
                    group: group.clone(),
                    seq: *seq,
                });
            }
        }
        let raws: Vec<String> = self.sub_keys.keys().cloned().collect();
        let persistent = self.persistent();
        for raw in &raws {
            self.deactivate(raw, false);
        }
        self.broker.engine.disconnect(self.client.id);
        let will = if end == End::Normal {
            None
        } else {
            self.will.take().map(|w| *w)
        };
        let tenant = self.tenant.clone();
        // The session moved to another node of the cluster, which owns it now.
        let moved = self.mailbox.stopped() == Some(Stop::Moved);
        let persistent = persistent && !moved;
        let will_delay = will
            .as_ref()
            .map(|w| Duration::from_secs(u64::from(w.delay.min(self.record.expiry))));
        if persistent
            && end != End::Shutdown
            && let (Some(w), Some(delay)) = (&will, will_delay)
            && !delay.is_zero()
        {
            // Kept in the session record so that it survives a restart.
            self.record.will =
                crate::broker::stored_will(&self.client_id, w, now_ms() + delay.as_millis() as u64)
                    .map(Box::new);
        }
        let record = if persistent {
            self.record.pending_out = pending;
            self.record.disconnected_ms = now_ms();
            self.broker
                .store_record(&tenant, &tenant.client, &self.record, None);
            Some(self.record.clone())
        } else {
            None
        };
        PutAway {
            end,
            will,
            will_delay,
            record,
            persistent,
            moved,
        }
    }

    /// After the socket closed: the client id's slot gets the session back, and
    /// its expiry and will are scheduled. The socket closes only once the session
    /// record (and a pending will in it) is queued for its durable write
    /// ([`Self::put_away`]): a client that saw the close and then connects gets its
    /// own session write ordered after it.
    pub(crate) fn release(self, put_away: PutAway, conn_id: u64) {
        let PutAway {
            end,
            will,
            will_delay,
            record,
            persistent,
            moved,
        } = put_away;
        let tenant = self.tenant.clone();
        {
            let mut slots = tenant.slots.lock();
            if let Some(slot) = slots.get_mut(&self.client_id)
                && slot.online.as_ref().is_some_and(|o| o.conn == conn_id)
            {
                slot.online = None;
                slot.record = record.clone().map(Box::new);
                if record.is_none() && slot.will.is_none() {
                    slots.remove(&self.client_id);
                }
            }
        }
        if moved {
            // Nothing to discard or expire here.
        } else if !persistent && self.stored {
            // The session was persistent once (a DISCONNECT set its expiry to 0):
            // its groups and record go with it.
            self.broker.discard_session(&tenant, &self.record);
        } else if end != End::TakenOver
            && let Some(left) =
                remaining_expiry(self.record.expiry, self.record.disconnected_ms, now_ms())
        {
            self.broker.schedule_expiry(&tenant, &self.client_id, left);
        }
        if let (Some(w), Some(delay)) = (will, will_delay)
            && end != End::Shutdown
        {
            self.broker
                .schedule_will(&tenant, &self.client_id, w, delay);
        }
        tracing::debug!(client_id = %self.client_id, ?end, "MQTT client disconnected");
    }
}
