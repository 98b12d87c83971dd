//! Publishes a node forwards to the leaders of replicated stations it does not
//! lead, and to the nodes holding R1 stations it does not hold, sent in
//! batches: one call to a node carries every publish queued for it (up to
//! [`BATCH`]), and its answer carries one answer per publish, in order.
//!
//! - **Order.** One task per leader node takes the queue in order and starts
//!   its calls in that order on the one link; the leader hands each call's
//!   publishes to their groups before it reads the next frame. Publishes from
//!   one connection are therefore stored in the order they were sent, as they
//!   were with one call each.
//! - **Batches form under load.** At most [`CALLS_IN_FLIGHT`] calls to a
//!   leader are unanswered at a time; publishes made meanwhile wait and go out
//!   together in the next call. A sync publisher (one in flight) never waits.
//!   A call unanswered after [`SLOT_HELD`] (an election, a slow link) lets the
//!   next one go anyway.
//! - **Answers** are a publish's [`super::replicated::ack_answer`]: 10 bytes
//!   when stored, JSON when refused.
//!
//! Measured with 1000 publishes in flight from another node (`r3-window`,
//! `cluster-js-fwd`), one call per publish against batched calls: see
//! docs/performance.md.

use super::StationEngine;
use super::replicated::{K_STORE_LEADER, ack_answer, read_ack};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use junction_api::{EngineError, PubAck, StoredCallback};
use junction_cluster::batch::{holding, take_queued};
use junction_cluster::{CallError, Cluster};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Publishes to a leader's replicated stations, many in one call: a `u32`
/// count, then per publish a `u32` length and the store call
/// ([`super::placement::encode_store`]). The answer: a `u32` count, then per
/// publish a `u32` length and its answer.
pub(crate) const K_STORE_BATCH: u8 = 74;

/// Most publishes one call carries.
const BATCH: usize = 1024;

/// Calls to one leader node unanswered at a time, at most.
const CALLS_IN_FLIGHT: usize = 2;

/// How long a call holds its place among [`CALLS_IN_FLIGHT`] at most.
const SLOT_HELD: Duration = Duration::from_millis(200);

/// How long a forwarded publish waits for its leader's answer (a publish is
/// answered once a quorum stored it, within 10 s, or refused).
const CALL_TIMEOUT: Duration = Duration::from_secs(12);

/// One forwarded publish.
pub(crate) struct Forward {
    /// The station, for its acknowledgement.
    pub station: String,
    /// The store call.
    pub body: Bytes,
    pub done: StoredCallback,
    /// To a replicated station's leader (else to the node holding an R1
    /// station): what a lost call is reported as.
    pub replicated: bool,
}

impl Forward {
    /// What its publisher is told when the node it went to did not answer.
    fn lost(&self, node: &str) -> EngineError {
        if self.replicated {
            EngineError::ReplicasUnavailable(format!(
                "the station's leader {node} did not answer; the publish may still be stored"
            ))
        } else {
            EngineError::NodeUnreachable(node.to_string())
        }
    }
}

/// Each leader node's queue.
#[derive(Default)]
pub(crate) struct Forwarders {
    to: Mutex<HashMap<String, tokio::sync::mpsc::UnboundedSender<Forward>>>,
}

impl Forwarders {
    /// Queues `f` for `leader` (a linked node). Needs a Tokio runtime.
    pub(crate) fn send(&self, cluster: &Cluster, leader: &str, f: Forward) {
        let mut to = self.to.lock();
        let f = match to.get(leader) {
            Some(tx) => match tx.send(f) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => f,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(run(cluster.clone(), leader.to_string(), rx));
        // A new queue takes it; a send to a queue whose task just started
        // cannot fail.
        let _ = tx.send(f);
        to.insert(leader.to_string(), tx);
    }
}

/// Sends the queue for `leader` in batches, in order.
async fn run(
    cluster: Cluster,
    leader: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Forward>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CALLS_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let batch = take_queued(&mut rx, first, BATCH);
        let size: usize = batch.iter().map(|f| 4 + f.body.len()).sum();
        let mut body = BytesMut::with_capacity(4 + size);
        body.put_u32(batch.len() as u32);
        for f in &batch {
            body.put_u32(f.body.len() as u32);
            body.put_slice(&f.body);
        }
        let wait = cluster.start_call(&leader, K_STORE_BATCH, body.freeze(), CALL_TIMEOUT);
        let leader = leader.clone();
        tokio::spawn(async move {
            let outcome = holding(wait, slot, SLOT_HELD).await;
            answer_all(batch, outcome, &leader);
        });
    }
}

/// Answers each forwarded publish of a call.
fn answer_all(batch: Vec<Forward>, outcome: Result<Bytes, CallError>, leader: &str) {
    let mut answer = match outcome {
        Ok(answer) => answer,
        Err(CallError::Remote(text)) => {
            let e = serde_json::from_str::<EngineError>(&text)
                .unwrap_or_else(|_| EngineError::Storage(format!("node {leader}: {text}")));
            for f in batch {
                (f.done)(Err(e.clone()));
            }
            return;
        }
        Err(CallError::Unreachable(_) | CallError::Timeout(_)) => {
            for f in batch {
                let e = f.lost(leader);
                (f.done)(Err(e));
            }
            return;
        }
    };
    let mut answers = Vec::with_capacity(batch.len());
    if answer.remaining() >= 4 && answer.get_u32() as usize == batch.len() {
        while answer.remaining() >= 4 {
            let n = answer.get_u32() as usize;
            if answer.remaining() < n {
                break;
            }
            answers.push(answer.split_to(n));
        }
    }
    if answers.len() != batch.len() {
        let e = EngineError::Storage(format!(
            "node {leader} answered a batch of {} publishes malformed; they may still be stored",
            batch.len()
        ));
        for f in batch {
            (f.done)(Err(e.clone()));
        }
        return;
    }
    for (f, a) in batch.into_iter().zip(answers) {
        (f.done)(read_ack(&a, &f.station));
    }
}

impl StationEngine {
    /// Stores the publishes a peer forwarded in one call ([`K_STORE_BATCH`]):
    /// each is handed to its station (its group, when replicated) now, in
    /// order; the future answers them all once each is stored or refused.
    pub(crate) fn store_forwarded_batch(
        &self,
        mut body: Bytes,
    ) -> BoxFuture<'static, Result<Bytes, String>> {
        let bad = || Box::pin(async { Err("malformed batch of publishes".to_string()) });
        if body.remaining() < 4 {
            return bad();
        }
        let count = body.get_u32() as usize;
        let mut waits = Vec::with_capacity(count.min(BATCH));
        for _ in 0..count {
            if body.remaining() < 4 {
                return bad();
            }
            let n = body.get_u32() as usize;
            if body.remaining() < n {
                return bad();
            }
            let item = body.split_to(n);
            waits.push(
                match self.store_forwarded_replicated(K_STORE_LEADER, item.clone()) {
                    Some(rx) => Ok(rx),
                    None => self.store_forwarded(item),
                },
            );
        }
        Box::pin(async move {
            let mut answers = Vec::with_capacity(waits.len());
            for w in waits {
                let r: Result<PubAck, EngineError> = match w {
                    Ok(rx) => rx.await.unwrap_or(Err(EngineError::ShuttingDown)),
                    Err(e) => Err(e),
                };
                answers.push(ack_answer(r));
            }
            let size: usize = answers.iter().map(|a| 4 + a.len()).sum();
            let mut out = BytesMut::with_capacity(4 + size);
            out.put_u32(answers.len() as u32);
            for a in answers {
                out.put_u32(a.len() as u32);
                out.put_slice(&a);
            }
            Ok(out.freeze())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answers = Arc<Mutex<Vec<Result<PubAck, EngineError>>>>;

    fn batch(n: usize, answers: &Answers) -> Vec<Forward> {
        (0..n)
            .map(|_| {
                let answers = answers.clone();
                Forward {
                    station: "orders".into(),
                    body: Bytes::new(),
                    done: Box::new(move |r| answers.lock().push(r)),
                    replicated: true,
                }
            })
            .collect()
    }

    fn answer_bytes(answers: &[Bytes]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_u32(answers.len() as u32);
        for a in answers {
            out.put_u32(a.len() as u32);
            out.put_slice(a);
        }
        out.freeze()
    }

    #[test]
    fn each_publish_of_a_batch_gets_its_own_answer_in_order() {
        let answers = Answers::default();
        let stored = |seq| {
            ack_answer(Ok(PubAck {
                station: "orders".into(),
                seq,
                duplicate: seq == 7,
            }))
        };
        let body = answer_bytes(&[
            stored(5),
            ack_answer(Err(EngineError::MaxMessages)),
            stored(7),
        ]);
        answer_all(batch(3, &answers), Ok(body), "n1");
        let got = answers.lock().clone();
        assert_eq!(
            got,
            vec![
                Ok(PubAck {
                    station: "orders".into(),
                    seq: 5,
                    duplicate: false
                }),
                Err(EngineError::MaxMessages),
                Ok(PubAck {
                    station: "orders".into(),
                    seq: 7,
                    duplicate: true
                }),
            ]
        );
    }

    #[test]
    fn a_short_or_malformed_answer_fails_every_publish_of_the_batch() {
        for body in [
            answer_bytes(&[ack_answer(Err(EngineError::MaxMessages))]),
            Bytes::from_static(b"\x00\x00\x00\x02\x00\x00\x00\x09"),
            Bytes::new(),
        ] {
            let answers = Answers::default();
            answer_all(batch(2, &answers), Ok(body), "n1");
            let got = answers.lock().clone();
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(
                |r| matches!(r, Err(EngineError::Storage(t)) if t.contains("may still be stored"))
            ));
        }
    }

    #[test]
    fn a_leader_that_does_not_answer_fails_every_publish_as_maybe_stored() {
        let answers = Answers::default();
        answer_all(
            batch(3, &answers),
            Err(CallError::Timeout("n1".into())),
            "n1",
        );
        let got = answers.lock().clone();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(
            |r| matches!(r, Err(EngineError::ReplicasUnavailable(t)) if t.contains("may still be stored"))
        ));
    }
}
