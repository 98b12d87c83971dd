//! A stored value whose bytes were damaged is never handed out: a read is a
//! `Corrupt` error and is counted, a scan reports it and goes on, and the
//! highest sequence is still known from the keys.

use bytes::Bytes;
use junction_storage::record::{self, Record};
use junction_storage::{StorageError, Store};

fn rec(seq: u64) -> Record {
    Record {
        seq,
        time_ns: seq,
        subject: Bytes::from(format!("s.{seq}")),
        headers: None,
        payload: Bytes::from(format!("payload {seq}")),
        lineage: Bytes::new(),
    }
}

#[test]
fn a_damaged_value_is_an_error_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = fjall::Database::builder(dir.path().join("store"))
            .open()
            .unwrap();
        let log = db
            .keyspace("log", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        for seq in 1..=4 {
            let mut value = record::encode(&rec(seq));
            if seq == 2 || seq == 4 {
                // One bit flipped in the payload, as a bad disk or a bug would.
                let last = value.len() - 1;
                value[last] ^= 0x01;
            }
            log.insert(record::key(3, seq), value).unwrap();
        }
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.read(3, 1).unwrap(), Some(rec(1)));
    assert!(matches!(store.read(3, 2), Err(StorageError::Corrupt(_))));
    assert_eq!(store.corrupt_records(), 1);
    let scanned: Vec<Result<Record, StorageError>> = store.scan(3, 0).collect();
    assert_eq!(scanned.len(), 4);
    assert_eq!(scanned[0].as_ref().unwrap(), &rec(1));
    assert!(scanned[1].is_err());
    assert_eq!(scanned[2].as_ref().unwrap(), &rec(3));
    assert!(scanned[3].is_err());
    assert_eq!(store.corrupt_records(), 3);
    assert_eq!(
        store.last_seq(3),
        Some(4),
        "a corrupt value does not hide its sequence"
    );
}
