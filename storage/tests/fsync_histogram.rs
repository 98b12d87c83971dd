//! Every synchronous append is fsynced, and each fsync is counted in the store's
//! latency histogram.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use junction_storage::{Durability, FSYNC_BUCKETS_SECS, LogOp, Record, Store};
use std::sync::mpsc;

#[test]
fn synchronous_appends_are_counted_in_the_fsync_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let before = store.fsync_histogram();
    for seq in 1..=3u64 {
        let (tx, rx) = mpsc::channel();
        store.append(
            7,
            vec![LogOp::Put(Record {
                seq,
                time_ns: seq,
                subject: Bytes::from_static(b"a.b"),
                headers: None,
                payload: Bytes::from_static(b"x"),
                lineage: Bytes::new(),
            })],
            Durability::Sync,
            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
        );
        assert!(rx.recv().unwrap());
    }
    let after = store.fsync_histogram();
    // One append is waited for before the next is queued: one fsync each.
    assert!(after.count >= before.count + 3, "{before:?} -> {after:?}");
    assert!(after.sum_secs >= before.sum_secs);
    assert_eq!(after.buckets.len(), FSYNC_BUCKETS_SECS.len());
    let bounds: Vec<f64> = after.buckets.iter().map(|b| b.0).collect();
    assert_eq!(bounds, FSYNC_BUCKETS_SECS);
    assert!(after.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(after.buckets.last().unwrap().1 <= after.count);
}
