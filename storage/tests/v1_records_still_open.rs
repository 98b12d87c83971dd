//! A data directory written by a release that stored version 1 records (no
//! checksum, no lineage section) opens and reads back unchanged under version 2,
//! and new appends next to them are version 2.

use bytes::Bytes;
use junction_api::Headers;
use junction_storage::record::{self, Record};
use junction_storage::{Durability, LogOp, Store};
use std::sync::mpsc;

fn rec(seq: u64) -> Record {
    let mut h = Headers::new();
    h.append("Nats-Msg-Id", format!("id-{seq}"));
    Record {
        seq,
        time_ns: 1_700_000_000_000_000_000 + seq,
        subject: Bytes::from(format!("orders.{seq}")),
        headers: Some(h),
        payload: Bytes::from(format!("payload {seq}")),
        lineage: Bytes::new(),
    }
}

#[test]
fn version_1_records_open_and_mix_with_version_2() {
    let dir = tempfile::tempdir().unwrap();
    // Lay out the directory as the older release did: the same keyspaces and keys,
    // version 1 values.
    {
        let db = fjall::Database::builder(dir.path().join("store"))
            .open()
            .unwrap();
        let log = db
            .keyspace("log", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        for seq in 1..=3 {
            log.insert(record::key(7, seq), record::encode_v1(&rec(seq)))
                .unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    for seq in 1..=3 {
        assert_eq!(store.read(7, seq).unwrap(), Some(rec(seq)));
    }
    let (tx, rx) = mpsc::channel();
    let mut fourth = rec(4);
    fourth.lineage = Bytes::from_static(b"\x01lineage");
    store.append(
        7,
        vec![LogOp::Put(fourth.clone())],
        Durability::Sync,
        Box::new(move |r| tx.send(r.is_ok()).unwrap()),
    );
    assert!(rx.recv().unwrap());
    let all: Vec<Record> = store.scan(7, 0).map(Result::unwrap).collect();
    assert_eq!(all, vec![rec(1), rec(2), rec(3), fourth]);
    assert_eq!(store.corrupt_records(), 0);
}
