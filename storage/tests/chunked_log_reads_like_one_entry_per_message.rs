//! A group commit stores a station's messages as chunks of several records. Every
//! read (by sequence, forward, backward, by range, sequences only) must give
//! exactly what one entry per message would: checked against a model through
//! puts, deletes inside chunks, deletes in the same commit as the put, range
//! deletes that cut a chunk, and reopening. A damaged byte inside a chunk loses
//! one record; a damaged framing loses the chunk, reported, never garbage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use junction_storage::record::{self, Record};
use junction_storage::{Durability, LogOp, StorageError, Store};
use std::collections::BTreeSet;
use std::sync::mpsc;

fn rec(station: u64, seq: u64) -> Record {
    Record {
        seq,
        time_ns: seq * 10 + station,
        subject: Bytes::from(format!("s{station}.{seq}")),
        headers: None,
        payload: Bytes::from(vec![seq as u8; (seq % 50) as usize]),
        lineage: Bytes::from(vec![7u8; (seq % 3) as usize]),
    }
}

/// A small deterministic generator (no dependency, same sequence every run).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn apply(store: &Store, station: u64, ops: Vec<LogOp>) {
    let (tx, rx) = mpsc::channel();
    store.append(
        station,
        ops,
        Durability::Sync,
        Box::new(move |r| tx.send(r.is_ok()).unwrap()),
    );
    assert!(rx.recv().unwrap(), "append failed");
}

fn check(store: &Store, station: u64, live: &BTreeSet<u64>, rng: &mut Lcg) {
    let all: Vec<u64> = store.scan(station, 0).map(|r| r.unwrap().seq).collect();
    assert_eq!(all, live.iter().copied().collect::<Vec<_>>(), "scan");
    let back: Vec<u64> = store.scan_rev(station).map(|r| r.unwrap().seq).collect();
    assert_eq!(
        back,
        live.iter().rev().copied().collect::<Vec<_>>(),
        "scan_rev"
    );
    assert_eq!(store.last_seq(station), live.last().copied(), "last_seq");
    let top = live.last().copied().unwrap_or(0) + 3;
    for _ in 0..20 {
        let a = rng.below(top);
        let b = a + rng.below(top - a + 1);
        let want: Vec<u64> = live.range(a..b).copied().collect();
        let got: Vec<u64> = store
            .scan_between(station, a, b)
            .map(|r| r.unwrap().seq)
            .collect();
        assert_eq!(got, want, "scan_between {a}..{b}");
        let got: Vec<u64> = store.seqs_between(station, a, b).collect();
        assert_eq!(got, want, "seqs_between {a}..{b}");
        let want_rev: Vec<u64> = live.range(..b).rev().copied().collect();
        let got: Vec<u64> = store
            .scan_rev_below(station, b)
            .map(|r| r.unwrap().seq)
            .collect();
        assert_eq!(got, want_rev, "scan_rev_below {b}");
        let got = store.read(station, a).unwrap();
        if live.contains(&a) {
            assert_eq!(got, Some(rec(station, a)), "read {a}");
        } else {
            assert_eq!(got, None, "read of deleted {a}");
        }
    }
}

#[test]
fn reads_match_a_model_through_puts_deletes_range_deletes_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(42);
    let mut live = [BTreeSet::new(), BTreeSet::new()];
    let mut next = [1u64, 1u64];
    for round in 0..4 {
        let store = Store::open(dir.path()).unwrap();
        for station in [1u64, 2] {
            check(&store, station, &live[station as usize - 1], &mut rng);
        }
        for step in 0..60 {
            let station = 1 + rng.below(2);
            let i = station as usize - 1;
            match rng.below(6) {
                // A burst: one commit of up to 200 puts (several chunks), with a
                // few deletes of messages of this very commit and older ones.
                0..=2 => {
                    let n = 1 + rng.below(200);
                    let mut ops = Vec::new();
                    for _ in 0..n {
                        ops.push(LogOp::Put(rec(station, next[i])));
                        live[i].insert(next[i]);
                        next[i] += 1;
                    }
                    for _ in 0..rng.below(4) {
                        let s = 1 + rng.below(next[i] - 1);
                        ops.push(LogOp::Delete(s));
                        live[i].remove(&s);
                    }
                    apply(&store, station, ops);
                }
                // Single deletes: inside a chunk, its first or last, or missing.
                3 | 4 => {
                    let mut ops = Vec::new();
                    for _ in 0..1 + rng.below(5) {
                        let s = 1 + rng.below(next[i]);
                        ops.push(LogOp::Delete(s));
                        live[i].remove(&s);
                    }
                    apply(&store, station, ops);
                }
                // A range delete, which may cut a chunk.
                _ => {
                    let below = 1 + rng.below(next[i]);
                    let want = live[i].range(..below).count() as u64;
                    assert_eq!(
                        store.delete_below(station, below).unwrap(),
                        want,
                        "delete_below {below} (round {round}, step {step})"
                    );
                    live[i] = live[i].split_off(&below);
                }
            }
            check(&store, station, &live[i], &mut rng);
        }
        assert_eq!(store.corrupt_records(), 0);
    }
}

/// The store's log keyspace opened with fjall directly, as a test that looks at or
/// damages raw entries needs it.
fn raw_log(dir: &std::path::Path) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(dir.join("store")).open().unwrap();
    let log = db
        .keyspace("log", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    (db, log)
}

#[test]
fn a_commit_of_many_messages_is_few_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    apply(
        &store,
        5,
        (1..=640).map(|s| LogOp::Put(rec(5, s))).collect(),
    );
    drop(store);
    let (_db, log) = raw_log(dir.path());
    let entries = log
        .range(record::key(5, 0)..=record::key(5, u64::MAX))
        .count();
    assert_eq!(entries, 640 / record::CHUNK_RECORDS);
}

#[test]
fn a_damaged_chunk_loses_one_record_or_reports_itself() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (db, log) = raw_log(dir.path());
        let values = |seqs: std::ops::RangeInclusive<u64>| -> Vec<(u64, Vec<u8>)> {
            seqs.map(|s| (s, record::encode(&rec(3, s)))).collect()
        };
        // 1..=4: one payload bit flipped in record 2.
        let mut chunk = record::encode_chunk(&values(1..=4));
        let last_of_2 = {
            let v = values(1..=4);
            // The chunk's values follow its framing: 9 bytes, 12 per record.
            9 + 12 * 4 + v[0].1.len() + v[1].1.len() - 1
        };
        chunk[last_of_2] ^= 0x01;
        log.insert(record::key(3, 4), chunk).unwrap();
        // 5..=8: a flipped sequence in the framing.
        let mut chunk = record::encode_chunk(&values(5..=8));
        chunk[9 + 12 + 7] ^= 0x01;
        log.insert(record::key(3, 8), chunk).unwrap();
        // 9..=10: intact.
        log.insert(record::key(3, 10), record::encode_chunk(&values(9..=10)))
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.read(3, 1).unwrap(), Some(rec(3, 1)));
    assert!(matches!(store.read(3, 2), Err(StorageError::Corrupt(_))));
    assert_eq!(store.read(3, 3).unwrap(), Some(rec(3, 3)));
    assert!(matches!(store.read(3, 6), Err(StorageError::Corrupt(_))));
    assert_eq!(store.read(3, 9).unwrap(), Some(rec(3, 9)));
    let items: Vec<(Option<u64>, bool)> = store
        .scan_between(3, 0, u64::MAX)
        .map(|i| match i {
            Ok(r) => (Some(r.seq), true),
            Err((seq, _)) => (seq, false),
        })
        .collect();
    assert_eq!(
        items,
        vec![
            (Some(1), true),
            (Some(2), false),
            (Some(3), true),
            (Some(4), true),
            (Some(8), false),
            (Some(9), true),
            (Some(10), true),
        ]
    );
    assert!(store.corrupt_records() >= 4);
    assert_eq!(store.last_seq(3), Some(10));
}
