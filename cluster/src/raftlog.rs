//! The Raft log of any group (the meta group, each replicated station's group)
//! in the store's `raft` keyspace, written through the store's one ordered writer
//! queue and fsynced by its group commit before openraft is told it is durable.
//!
//! Keys are `group (u64) | tag | index`, so each group is one key prefix. Log
//! entries are stored with a CRC-32C of their bytes ([`seal`]); an entry that
//! fails its check is reported to openraft as a storage error, which stops that
//! group's Raft on this node: a node whose log is corrupt neither votes nor
//! leads, and the others go on without it. Entries written before checksums
//! (plain JSON, from the first meta-group releases) are still read.

// openraft's storage traits return its `StorageError` (over 200 bytes).
#![allow(clippy::result_large_err)]

use junction_storage::{Durability, LogOp, RaftOp, Store};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, RaftLogReader, RaftTypeConfig, StorageError, Vote,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

pub(crate) type SErr = StorageError<u64>;

/// The store "station" that Raft writes are queued under.
pub(crate) const RAFT_STATION: u64 = u64::MAX;

// Key tags.
pub(crate) const T_LOG: u8 = 1;
pub(crate) const T_VOTE: u8 = 2;
pub(crate) const T_COMMITTED: u8 = 3;
pub(crate) const T_PURGED: u8 = 4;
pub(crate) const T_SM: u8 = 5;
pub(crate) const T_SNAP: u8 = 6;
pub(crate) const T_IDENTITY: u8 = 7;
/// A replicated station's applied marks: `index` is the applied log index.
pub(crate) const T_APPLIED: u8 = 8;

pub(crate) fn key(group: u64, tag: u8, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&group.to_be_bytes());
    k.push(tag);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub(crate) fn serr(verb: ErrorVerb, e: impl fmt::Display) -> SErr {
    StorageError::from_io_error(
        ErrorSubject::Store,
        verb,
        std::io::Error::other(e.to_string()),
    )
}

/// Writes Raft state through the store's writer queue and waits until it is durable.
pub(crate) async fn write(store: &Store, ops: Vec<RaftOp>) -> Result<(), SErr> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    store.append(
        RAFT_STATION,
        ops.into_iter().map(LogOp::Raft).collect(),
        Durability::Sync,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(serr(ErrorVerb::Write, e)),
        Err(_) => Err(serr(ErrorVerb::Write, "the store closed")),
    }
}

pub(crate) fn get_json<T: for<'a> Deserialize<'a>>(
    store: &Store,
    k: &[u8],
) -> Result<Option<T>, SErr> {
    match store.raft_get(k).map_err(|e| serr(ErrorVerb::Read, e))? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| serr(ErrorVerb::Read, e)),
    }
}

pub(crate) fn put_json(k: Vec<u8>, v: &impl Serialize) -> Result<RaftOp, SErr> {
    Ok(RaftOp::Put(
        k,
        serde_json::to_vec(v).map_err(|e| serr(ErrorVerb::Write, e))?,
    ))
}

/// First byte of a checksummed JSON value (JSON never starts with it).
const SEALED: u8 = 0xC5;
/// First byte of a checksummed MessagePack value.
const SEALED_MSGPACK: u8 = 0xC6;

/// `value` with a CRC-32C: `0xC5 | crc (4 bytes, LE) | value`.
pub(crate) fn seal(value: &[u8]) -> Vec<u8> {
    seal_as(SEALED, value)
}

fn seal_as(magic: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 5);
    out.push(magic);
    out.extend_from_slice(&crc32c::crc32c(value).to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// The value inside [`seal`]ed bytes, once its checksum holds; plain JSON (from
/// before checksums) as it is.
pub(crate) fn unseal(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.first() {
        Some(&(SEALED | SEALED_MSGPACK)) if bytes.len() >= 5 => {
            let crc = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            let value = &bytes[5..];
            if crc32c::crc32c(value) == crc {
                Ok(value)
            } else {
                Err("a Raft log entry fails its checksum (the log is corrupt)".into())
            }
        }
        Some(&(SEALED | SEALED_MSGPACK)) => {
            Err("a Raft log entry is truncated (the log is corrupt)".into())
        }
        _ => Ok(bytes),
    }
}

fn decode<C>(bytes: &[u8]) -> Result<Entry<C>, SErr>
where
    C: RaftTypeConfig<NodeId = u64>,
    Entry<C>: for<'a> Deserialize<'a>,
{
    let value = unseal(bytes).map_err(|e| serr(ErrorVerb::Read, e))?;
    if bytes.first() == Some(&SEALED_MSGPACK) {
        return rmp_serde::from_slice(value).map_err(|e| serr(ErrorVerb::Read, e));
    }
    serde_json::from_slice(value).map_err(|e| serr(ErrorVerb::Read, e))
}

/// The Raft log of one group, in the store.
pub struct LogStore<C> {
    store: Store,
    group: u64,
    /// Entries written as MessagePack (replicated stations' groups, whose
    /// entries carry messages) rather than JSON (the meta group).
    binary: bool,
    _config: PhantomData<fn() -> C>,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore {
            store: self.store.clone(),
            group: self.group,
            binary: self.binary,
            _config: PhantomData,
        }
    }
}

impl<C> LogStore<C> {
    /// The log of `group` in `store`.
    pub fn new(store: Store, group: u64) -> LogStore<C> {
        LogStore {
            store,
            group,
            binary: false,
            _config: PhantomData,
        }
    }

    /// The log of `group`, its entries written as MessagePack.
    pub fn new_binary(store: Store, group: u64) -> LogStore<C> {
        LogStore {
            binary: true,
            ..LogStore::new(store, group)
        }
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    Entry<C>: Serialize + for<'a> Deserialize<'a>,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, SErr> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .raft_range(&key(self.group, T_LOG, from), &key(self.group, T_LOG, to))
            .map_err(|e| serr(ErrorVerb::Read, e))?;
        rows.iter().map(|(_, v)| decode::<C>(v)).collect()
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>>,
    Entry<C>: Serialize + for<'a> Deserialize<'a>,
{
    type LogReader = LogStore<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, SErr> {
        let purged: Option<LogId<u64>> = get_json(&self.store, &key(self.group, T_PURGED, 0))?;
        let last = self
            .store
            .raft_last(
                &key(self.group, T_LOG, 0),
                &key(self.group, T_LOG, u64::MAX),
            )
            .map_err(|e| serr(ErrorVerb::Read, e))?;
        let last = match last {
            Some((_, v)) => Some(decode::<C>(&v)?.log_id),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), SErr> {
        write(
            &self.store,
            vec![put_json(key(self.group, T_VOTE, 0), vote)?],
        )
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, SErr> {
        get_json(&self.store, &key(self.group, T_VOTE, 0))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), SErr> {
        let op = put_json(key(self.group, T_COMMITTED, 0), &committed)?;
        if self.binary {
            // A replicated station's group commits with every publish: the
            // pointer is only a head start for re-applying after a restart (an
            // older one re-applies a little more), so it is queued, not awaited.
            self.store.append(
                RAFT_STATION,
                vec![LogOp::Raft(op)],
                Durability::Interval(std::time::Duration::from_millis(200)),
                Box::new(|_| {}),
            );
            return Ok(());
        }
        write(&self.store, vec![op]).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, SErr> {
        Ok(
            get_json::<Option<LogId<u64>>>(&self.store, &key(self.group, T_COMMITTED, 0))?
                .flatten(),
        )
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<C>> + Send,
        I::IntoIter: Send,
    {
        let mut ops = Vec::new();
        for e in entries {
            let sealed = if self.binary {
                let b = rmp_serde::to_vec_named(&e).map_err(|e| serr(ErrorVerb::Write, e))?;
                seal_as(SEALED_MSGPACK, &b)
            } else {
                let json = serde_json::to_vec(&e).map_err(|e| serr(ErrorVerb::Write, e))?;
                seal(&json)
            };
            ops.push(LogOp::Raft(RaftOp::Put(
                key(self.group, T_LOG, e.log_id.index),
                sealed,
            )));
        }
        self.store.append(
            RAFT_STATION,
            ops,
            Durability::Sync,
            Box::new(move |r| {
                callback.log_io_completed(r.map_err(|e| std::io::Error::other(e.to_string())))
            }),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        write(
            &self.store,
            vec![RaftOp::RemoveRange(
                key(self.group, T_LOG, log_id.index),
                key(self.group, T_LOG, u64::MAX),
            )],
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), SErr> {
        // The entries after the previous purge, one key each: a range removal
        // from 0 would walk every earlier purge's tombstones again, in the
        // writer, holding up every other write meanwhile.
        let before: Option<LogId<u64>> = get_json(&self.store, &key(self.group, T_PURGED, 0))?;
        let mut ops = vec![put_json(key(self.group, T_PURGED, 0), &log_id)?];
        match before {
            Some(b) if b.index < log_id.index => {
                for i in b.index.saturating_add(1)..=log_id.index {
                    ops.push(RaftOp::Remove(key(self.group, T_LOG, i)));
                }
            }
            Some(_) => {}
            None => ops.push(RaftOp::RemoveRange(
                key(self.group, T_LOG, 0),
                key(self.group, T_LOG, log_id.index.saturating_add(1)),
            )),
        }
        write(&self.store, ops).await
    }
}

/// Removes every key of `group` (a replicated station deleted here).
pub(crate) async fn remove_group(store: &Store, group: u64) -> Result<(), SErr> {
    write(
        store,
        vec![RaftOp::RemoveRange(
            key(group, 0, 0),
            key(group, u8::MAX, u64::MAX),
        )],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_fails_the_checksum_and_old_plain_entries_still_read() {
        let sealed = seal(br#"{"a":1}"#);
        assert_eq!(unseal(&sealed).unwrap(), br#"{"a":1}"#);
        for i in 1..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(unseal(&bad).is_err(), "flip at {i} not caught");
        }
        assert!(unseal(&sealed[..3]).is_err());
        assert_eq!(unseal(br#"{"b":2}"#).unwrap(), br#"{"b":2}"#);
    }
}
