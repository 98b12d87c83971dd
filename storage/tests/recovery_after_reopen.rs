//! Messages acknowledged by the writer are all there after the store is reopened, in
//! order; deletions are too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use junction_storage::{Durability, LogOp, Record, Store};
use std::sync::mpsc;

fn rec(seq: u64) -> Record {
    Record {
        seq,
        time_ns: seq * 10,
        subject: Bytes::from(format!("s.{seq}")),
        headers: None,
        payload: Bytes::from(vec![seq as u8; 10]),
        lineage: Bytes::new(),
    }
}

#[test]
fn acknowledged_appends_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        for seq in 1..=500u64 {
            let tx = tx.clone();
            store.append(
                1,
                vec![LogOp::Put(rec(seq))],
                Durability::Sync,
                Box::new(move |r| tx.send((seq, r.is_ok())).unwrap()),
            );
        }
        let mut acked: Vec<u64> = (0..500)
            .map(|_| rx.recv().unwrap())
            .map(|(s, ok)| {
                assert!(ok);
                s
            })
            .collect();
        acked.sort();
        assert_eq!(acked, (1..=500).collect::<Vec<_>>());
        let (tx2, rx2) = mpsc::channel();
        store.append(
            1,
            vec![LogOp::Delete(3)],
            Durability::Sync,
            Box::new(move |r| tx2.send(r.is_ok()).unwrap()),
        );
        assert!(rx2.recv().unwrap());
        store.put_meta("station/x", b"{}").unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let seqs: Vec<u64> = store.scan(1, 0).map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs.len(), 499);
    assert!(!seqs.contains(&3));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.read(1, 500).unwrap().unwrap(), rec(500));
    assert_eq!(store.scan_rev(1).next().unwrap().unwrap().seq, 500);
    assert_eq!(store.scan(2, 0).count(), 0);
    assert_eq!(store.get_meta("station/x").unwrap().unwrap(), b"{}");
    assert_eq!(store.delete_below(1, 100).unwrap(), 98);
    assert_eq!(store.scan(1, 0).next().unwrap().unwrap().seq, 100);
}

/// A metadata value queued with deletes is written in their commit: after a reopen
/// the emptied log's last sequence is still known.
#[test]
fn a_meta_value_queued_with_deletes_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        let put = tx.clone();
        store.append(
            7,
            vec![LogOp::Put(rec(1)), LogOp::Put(rec(2))],
            Durability::Sync,
            Box::new(move |r| put.send(r.is_ok()).unwrap()),
        );
        store.append(
            7,
            vec![
                LogOp::Delete(1),
                LogOp::Delete(2),
                LogOp::Meta("seqfloor/7".into(), b"1".to_vec()),
                LogOp::Meta("seqfloor/7".into(), b"2".to_vec()),
            ],
            Durability::Sync,
            Box::new(move |r| tx.send(r.is_ok()).unwrap()),
        );
        assert!(rx.recv().unwrap());
        assert!(rx.recv().unwrap());
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.scan(7, 0).count(), 0);
    assert_eq!(store.last_seq(7), None);
    // The last of a key's values in one commit wins.
    assert_eq!(store.get_meta("seqfloor/7").unwrap().unwrap(), b"2");
}
