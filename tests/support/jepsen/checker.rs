//! The checker of the Jepsen-style harness: the history of every publish try,
//! the replicas' copies as read back, and pure functions that judge one against
//! the other (unit-tested on synthetic histories in
//! `tests/replicated_station_faults.rs`). No I/O here.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

/// What one publish try came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A PubAck: the station's sequence and whether it was a duplicate.
    Acked { seq: u64, duplicate: bool },
    /// Definitely not stored ("wrong last sequence").
    Rejected(String),
    /// An error or a timeout: it may or may not be stored.
    Indeterminate(String),
}

/// One publish try; instants are offsets from the run's epoch.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub msg_id: String,
    pub subject: String,
    /// `Nats-Expected-Last-Sequence`, when sent.
    pub expected_last_seq: Option<u64>,
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

/// One stored message, as a node's replica endpoint returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub subject: String,
    pub msg_id: Option<String>,
    pub headers: Value,
    pub payload_base64: String,
    pub time_ns: u64,
}

/// A node's own copy of a station.
#[derive(Clone, Debug, Default)]
pub struct ReplicaCopy {
    pub node: String,
    pub role: String,
    pub applied: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: BTreeMap<u64, Stored>,
}

/// A publish as the linearizability check sees it: from its first try's start
/// to its acknowledgement (`None`: never acknowledged, but stored at `seq`).
#[derive(Clone, Debug)]
pub struct LinOp {
    pub id: String,
    pub start: Duration,
    pub end: Option<Duration>,
    pub seq: u64,
}

// ---------------------------------------------------------------------------
// Checker (pure)
// ---------------------------------------------------------------------------

/// What the checker found; [`Report::problems`] is empty when all holds.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Ids acknowledged at least once.
    pub acked: usize,
    /// Ids never acknowledged nor refused.
    pub indeterminate: usize,
    /// Of those, how many are stored.
    pub indeterminate_stored: usize,
    /// Ids definitely refused.
    pub rejected: usize,
    /// Messages in the reference copy.
    pub stored: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub gaps: Vec<String>,
    /// Stored messages that no writer sent, or whose payload is not their id.
    pub phantoms: Vec<String>,
    pub rejected_but_stored: Vec<String>,
    pub replica_diffs: Vec<String>,
    /// Only reported: the store time is the leader's clock, carried in the log.
    pub time_diffs: Vec<String>,
    pub linearizability: Vec<String>,
    pub expected_seq: Vec<String>,
    /// Longest time between two consecutive acknowledgements.
    pub max_failover_gap: Duration,
    /// How often each error came back (tries, not ids).
    pub errors: BTreeMap<String, usize>,
}

impl Report {
    /// The summary line every scenario prints.
    pub fn summary(&self) -> String {
        format!(
            "checker: acked={} indeterminate={} lost={} duplicated={} stored={} \
             replicas_identical={} max_failover_gap={:.1}s",
            self.acked,
            self.indeterminate,
            self.lost.len(),
            self.duplicated.len(),
            self.stored,
            self.replica_diffs.is_empty(),
            self.max_failover_gap.as_secs_f64(),
        )
    }

    /// The other counts, on a second line.
    pub fn details(&self) -> String {
        format!(
            "checker: rejected={} indeterminate_stored={} gaps={} phantoms={} \
             rejected_but_stored={} linearizability_violations={} \
             expected_seq_violations={} time_diffs={}",
            self.rejected,
            self.indeterminate_stored,
            self.gaps.len(),
            self.phantoms.len(),
            self.rejected_but_stored.len(),
            self.linearizability.len(),
            self.expected_seq.len(),
            self.time_diffs.len(),
        )
    }

    /// Every violation, by kind (at most 10 examples of each).
    pub fn problems(&self) -> Vec<String> {
        let kinds: [(&str, &Vec<String>); 8] = [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("gap", &self.gaps),
            ("phantom", &self.phantoms),
            ("rejected but stored", &self.rejected_but_stored),
            ("replicas differ", &self.replica_diffs),
            ("not linearizable", &self.linearizability),
            ("expected last sequence", &self.expected_seq),
        ];
        let mut out = Vec::new();
        for (kind, list) in kinds {
            for p in list.iter().take(10) {
                out.push(format!("{kind}: {p}"));
            }
            if list.len() > 10 {
                out.push(format!("{kind}: … and {} more", list.len() - 10));
            }
        }
        out
    }

    /// Prints the summary and fails with every violation.
    pub fn assert_ok(&self, scenario: &str) {
        println!("{scenario}: {}", self.summary());
        println!("{scenario}: {}", self.details());
        let mut errors: Vec<(&String, &usize)> = self.errors.iter().collect();
        errors.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
        for (e, n) in errors.iter().take(8) {
            println!("{scenario}: {n} tries answered: {e}");
        }
        for d in self.time_diffs.iter().take(5) {
            println!("{scenario}: note: store times differ: {d}");
        }
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "{scenario}: {}\n{}",
            self.summary(),
            problems.join("\n")
        );
        assert!(self.acked > 0, "{scenario}: nothing was acknowledged");
    }
}

/// Standard base64 with padding (the replica endpoint's payload encoding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Pairs that break linearizability: A was acknowledged before B began, yet
/// seq(A) >= seq(B). Sorts by start and keeps the highest sequence of the
/// acknowledgements completed before each start: O(n log n).
pub fn linearizability_violations(ops: &[LinOp]) -> Vec<String> {
    let mut done: Vec<&LinOp> = ops.iter().filter(|o| o.end.is_some()).collect();
    done.sort_by_key(|o| o.end);
    let mut by_start: Vec<&LinOp> = ops.iter().collect();
    by_start.sort_by_key(|o| o.start);
    let mut out = Vec::new();
    let mut j = 0;
    let mut highest: Option<&LinOp> = None;
    for b in by_start {
        while j < done.len() && done[j].end.is_some_and(|end| end < b.start) {
            if highest.is_none_or(|h| done[j].seq > h.seq) {
                highest = Some(done[j]);
            }
            j += 1;
        }
        if let Some(a) = highest
            && a.seq >= b.seq
            && a.id != b.id
        {
            out.push(format!(
                "{} (seq {}, acknowledged at {:?}) before {} began (at {:?}), which got seq {}",
                a.id,
                a.seq,
                a.end.unwrap_or_default(),
                b.id,
                b.start,
                b.seq
            ));
        }
    }
    out
}

/// Judges `history` against the replicas' `copies`; `reference` is the copy
/// that acknowledged messages are looked up in (the leader's).
pub fn check(history: &[Attempt], copies: &[ReplicaCopy], reference: usize) -> Report {
    let mut r = Report::default();
    let Some(refc) = copies.get(reference) else {
        r.replica_diffs.push("no copy to check against".into());
        return r;
    };
    r.stored = refc.messages.len();

    // Where each id is stored (in the reference copy).
    let mut stored_at: HashMap<&str, Vec<u64>> = HashMap::new();
    for (seq, m) in &refc.messages {
        match &m.msg_id {
            Some(id) => stored_at.entry(id.as_str()).or_default().push(*seq),
            None => r.phantoms.push(format!("seq {seq} has no Nats-Msg-Id")),
        }
    }

    // Each id's tries, in order.
    let mut tries: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in history {
        tries.entry(a.msg_id.as_str()).or_default().push(a);
    }
    for a in history {
        if let Outcome::Indeterminate(e) | Outcome::Rejected(e) = &a.outcome {
            // Numbers (sequences, inboxes) blanked, so that kinds add up.
            let mut kind = String::new();
            for c in e.chars() {
                let c = if c.is_ascii_digit() { '#' } else { c };
                if !(c == '#' && kind.ends_with('#')) {
                    kind.push(c);
                }
            }
            *r.errors.entry(kind).or_default() += 1;
        }
    }
    let mut lin = Vec::new();
    // Lost ids, listed in sequence order: the first shows where copies part.
    let mut lost: Vec<(u64, String)> = Vec::new();
    for (id, attempts) in &tries {
        let first_start = attempts.iter().map(|a| a.start).min().unwrap_or_default();
        let acks: Vec<(u64, Duration)> = attempts
            .iter()
            .filter_map(|a| match a.outcome {
                Outcome::Acked { seq, .. } => Some((seq, a.end)),
                _ => None,
            })
            .collect();
        let rejected = attempts
            .iter()
            .any(|a| matches!(a.outcome, Outcome::Rejected(_)));
        let at = stored_at.get(id).cloned().unwrap_or_default();
        if let Some(&(seq, end)) = acks.iter().min_by_key(|(_, end)| *end) {
            r.acked += 1;
            if acks.iter().any(|(s, _)| *s != seq) {
                let seqs: Vec<u64> = acks.iter().map(|(s, _)| *s).collect();
                r.duplicated.push(format!(
                    "{id} acknowledged with different sequences {seqs:?}"
                ));
            }
            for (s, when) in &acks {
                let there = refc.messages.get(s).and_then(|m| m.msg_id.as_deref());
                if there != Some(id) {
                    lost.push((
                        *s,
                        format!(
                            "{id} acknowledged at seq {s} at {:.2}s, which holds {there:?} \
                             (id stored at {at:?})",
                            when.as_secs_f64()
                        ),
                    ));
                }
            }
            lin.push(LinOp {
                id: id.to_string(),
                start: first_start,
                end: Some(end),
                seq,
            });
        } else if rejected {
            r.rejected += 1;
            if !at.is_empty() {
                r.rejected_but_stored
                    .push(format!("{id} was refused, yet is stored at {at:?}"));
            }
        } else {
            r.indeterminate += 1;
            if let Some(&seq) = at.first() {
                r.indeterminate_stored += 1;
                lin.push(LinOp {
                    id: id.to_string(),
                    start: first_start,
                    end: None,
                    seq,
                });
            }
        }
        if at.len() > 1 {
            r.duplicated.push(format!("{id} stored at {at:?}"));
        }
        // At most one winner per expected sequence, and it lands right after.
        for a in attempts {
            if let Some(e) = a.expected_last_seq {
                for s in &at {
                    if *s != e + 1 {
                        r.expected_seq.push(format!(
                            "{id} expected last sequence {e}, yet is stored at {s}"
                        ));
                    }
                }
            }
        }
    }
    let mut winners: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for a in history {
        if let (Some(e), Outcome::Acked { .. }) = (a.expected_last_seq, &a.outcome)
            && !winners
                .get(&e)
                .is_some_and(|w| w.contains(&a.msg_id.as_str()))
        {
            winners.entry(e).or_default().push(a.msg_id.as_str());
        }
    }
    for (e, ids) in winners {
        if ids.len() > 1 {
            r.expected_seq.push(format!(
                "{} publishes expecting last sequence {e} all acknowledged: {ids:?}",
                ids.len()
            ));
        }
    }

    // Stored messages: sent by a writer, payload intact, no gaps.
    for (seq, m) in &refc.messages {
        if let Some(id) = &m.msg_id {
            if !tries.contains_key(id.as_str()) {
                r.phantoms.push(format!("seq {seq}: {id} was never sent"));
            } else if m.payload_base64 != base64(id.as_bytes()) {
                r.phantoms.push(format!(
                    "seq {seq}: {id} has payload {} (base64)",
                    m.payload_base64
                ));
            }
        }
    }
    if refc.last_seq >= refc.first_seq && refc.last_seq > 0 {
        let missing: Vec<u64> = (refc.first_seq.max(1)..=refc.last_seq)
            .filter(|s| !refc.messages.contains_key(s))
            .collect();
        if !missing.is_empty() {
            r.gaps.push(format!(
                "{} sequences missing between {} and {} on {}: {:?}…",
                missing.len(),
                refc.first_seq,
                refc.last_seq,
                refc.node,
                &missing[..missing.len().min(20)]
            ));
        }
    }
    if let Some((&beyond, _)) = refc.messages.range(refc.last_seq + 1..).next() {
        r.gaps.push(format!(
            "{} stores seq {beyond} beyond its last_seq {}",
            refc.node, refc.last_seq
        ));
    }

    // Every replica against the reference.
    for c in copies {
        r.replica_diffs.extend(replica_diffs(refc, c));
        r.time_diffs.extend(time_diffs(refc, c));
    }

    lost.sort();
    r.lost = lost.into_iter().map(|(_, l)| l).collect();
    r.linearizability = linearizability_violations(&lin);

    let mut ends: Vec<Duration> = history
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked { .. }))
        .map(|a| a.end)
        .collect();
    ends.sort();
    r.max_failover_gap = ends
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    r
}

/// How copy `b` differs from copy `a`: their ranges, an overview (how many
/// sequences differ, from which one, and the ids that only one of them holds),
/// then the first 5 differing sequences.
pub fn replica_diffs(a: &ReplicaCopy, b: &ReplicaCopy) -> Vec<String> {
    let mut out = Vec::new();
    if (a.first_seq, a.last_seq) != (b.first_seq, b.last_seq) {
        out.push(format!(
            "{} has seqs {}..={}, {} has {}..={}",
            a.node, a.first_seq, a.last_seq, b.node, b.first_seq, b.last_seq
        ));
    }
    let seqs: std::collections::BTreeSet<u64> = a
        .messages
        .keys()
        .chain(b.messages.keys())
        .copied()
        .collect();
    let differ: Vec<u64> = seqs
        .into_iter()
        .filter(|seq| match (a.messages.get(seq), b.messages.get(seq)) {
            (Some(x), Some(y)) => {
                x.subject != y.subject
                    || x.msg_id != y.msg_id
                    || x.headers != y.headers
                    || x.payload_base64 != y.payload_base64
            }
            _ => true,
        })
        .collect();
    let Some(&first) = differ.first() else {
        return out;
    };
    let ids = |c: &ReplicaCopy| -> BTreeMap<String, u64> {
        c.messages
            .iter()
            .filter_map(|(seq, m)| Some((m.msg_id.clone()?, *seq)))
            .collect()
    };
    let (in_a, in_b) = (ids(a), ids(b));
    let only = |x: &BTreeMap<String, u64>, y: &BTreeMap<String, u64>| -> Vec<String> {
        let mut v: Vec<(u64, &String)> = x
            .iter()
            .filter(|(id, _)| !y.contains_key(*id))
            .map(|(id, seq)| (*seq, id))
            .collect();
        v.sort();
        v.iter().map(|(seq, id)| format!("{id}@{seq}")).collect()
    };
    let (only_a, only_b) = (only(&in_a, &in_b), only(&in_b, &in_a));
    out.push(format!(
        "{} seqs differ between {} and {}, from seq {first}; only {} holds {} ids {:?}; \
         only {} holds {} ids {:?}",
        differ.len(),
        a.node,
        b.node,
        a.node,
        only_a.len(),
        &only_a[..only_a.len().min(8)],
        b.node,
        only_b.len(),
        &only_b[..only_b.len().min(8)],
    ));
    let show = |c: &ReplicaCopy, seq: u64| {
        c.messages.get(&seq).map_or("nothing".to_string(), |m| {
            format!("{} {:?} {}", m.subject, m.msg_id, m.payload_base64)
        })
    };
    for seq in differ.into_iter().take(5) {
        out.push(format!(
            "seq {seq}: {} has {}, {} has {}",
            a.node,
            show(a, seq),
            b.node,
            show(b, seq)
        ));
    }
    out
}

fn time_diffs(a: &ReplicaCopy, b: &ReplicaCopy) -> Vec<String> {
    a.messages
        .iter()
        .filter_map(|(seq, x)| {
            let y = b.messages.get(seq)?;
            (x.time_ns != y.time_ns).then(|| {
                format!(
                    "seq {seq}: {} {} ns, {} {} ns",
                    a.node, x.time_ns, b.node, y.time_ns
                )
            })
        })
        .collect()
}
