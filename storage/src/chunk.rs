//! The log's entries as records: how a group commit writes a station's messages
//! as chunks (see [`record`]'s format notes) and deletes single messages out of
//! them, and how a range read turns entries back into records.

use crate::record::{self, CHUNK_BYTES, CHUNK_RECORDS, Record};
use crate::{Inner, ScanItem, Store};
use fjall::{Keyspace, OwnedWriteBatch};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

/// A stored chunk that this commit deletes records from.
struct Touched {
    /// Its lowest sequence when it was read: it covers `first..=key`.
    first: u64,
    /// What is left of it: (seq, version 2 value).
    records: Vec<(u64, Vec<u8>)>,
}

/// The log changes of one group commit, gathered before they go into its batch.
///
/// Puts of one station become chunks; a delete of a message put in the same
/// commit just drops it, and a delete of a stored message that sits in a chunk
/// rewrites that chunk once per commit, however many of its records go.
#[derive(Default)]
pub(crate) struct CommitLog {
    /// New records per station, ascending.
    fresh: HashMap<u64, Vec<(u64, Vec<u8>)>>,
    /// Stored chunks losing records, by (station, key sequence).
    touched: BTreeMap<(u64, u64), Touched>,
    /// Plain entries to remove.
    removed: Vec<[u8; 16]>,
}

impl CommitLog {
    pub(crate) fn put(&mut self, station: u64, r: &Record) {
        self.fresh
            .entry(station)
            .or_default()
            .push((r.seq, record::encode(r)));
    }

    /// Deletes one message: from this commit's puts, from a chunk already being
    /// rewritten, or from the log (read here, so the caller holds the log lock).
    /// A message that is not there is nothing to do.
    pub(crate) fn delete(&mut self, log: &Keyspace, station: u64, seq: u64) {
        if let Some(fresh) = self.fresh.get_mut(&station)
            && let Ok(i) = fresh.binary_search_by_key(&seq, |(s, _)| *s)
        {
            fresh.remove(i);
            return;
        }
        let covering = self
            .touched
            .range((station, seq)..=(station, u64::MAX))
            .next()
            .filter(|(_, t)| t.first <= seq)
            .map(|(k, _)| *k);
        if let Some(t) = covering.and_then(|k| self.touched.get_mut(&k)) {
            t.records.retain(|(s, _)| *s != seq);
            return;
        }
        let Some(guard) = log
            .range(record::key(station, seq)..=record::key(station, u64::MAX))
            .next()
        else {
            return;
        };
        let (k, v) = match guard.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                tracing::error!(station, seq, error = %e, "cannot read the log entry a delete is for; it stays");
                return;
            }
        };
        let Some(key_seq) = record::seq_of(&k) else {
            return;
        };
        if !record::is_chunk(&v) {
            if key_seq == seq {
                self.removed.push(record::key(station, seq));
            }
            return;
        }
        match record::split(key_seq, &v) {
            Ok(parts) => {
                if parts[0].0 > seq {
                    return;
                }
                let first = parts[0].0;
                let records = parts
                    .into_iter()
                    .filter(|(s, _)| *s != seq)
                    .map(|(s, v)| (s, v.to_vec()))
                    .collect();
                self.touched
                    .insert((station, key_seq), Touched { first, records });
            }
            // A chunk whose framing is damaged cannot lose one record; it stays,
            // and its records stay unreadable (each read reports it).
            Err(e) => {
                tracing::error!(station, seq, error = %e, "a delete is for a chunk whose framing is damaged; it stays");
            }
        }
    }

    /// Puts everything into `batch`: new entries and rewritten chunks first, then
    /// removals, so that a reader never finds a record missing that was not
    /// deleted (it may see a rewritten chunk beside its old self for a moment;
    /// the readers below skip a sequence they have already given).
    pub(crate) fn write_into(self, batch: &mut OwnedWriteBatch, log: &Keyspace) {
        let CommitLog {
            fresh,
            touched,
            mut removed,
        } = self;
        for (station, records) in fresh {
            let mut start = 0;
            while start < records.len() {
                let mut end = start;
                let mut bytes = 0;
                while end < records.len() && end - start < CHUNK_RECORDS && bytes < CHUNK_BYTES {
                    bytes += records[end].1.len();
                    end += 1;
                }
                insert(batch, log, station, &records[start..end]);
                start = end;
            }
        }
        for ((station, key_seq), t) in touched {
            match t.records.last() {
                None => removed.push(record::key(station, key_seq)),
                Some(&(last, _)) => {
                    insert(batch, log, station, &t.records);
                    if last != key_seq {
                        removed.push(record::key(station, key_seq));
                    }
                }
            }
        }
        for k in removed {
            batch.remove(log, k);
        }
    }
}

/// One log entry for `records`: a plain value for one record, a chunk for more.
fn insert(batch: &mut OwnedWriteBatch, log: &Keyspace, station: u64, records: &[(u64, Vec<u8>)]) {
    match records {
        [] => {}
        [(seq, value)] => batch.insert(log, record::key(station, *seq), value.as_slice()),
        [.., (last, _)] => batch.insert(
            log,
            record::key(station, *last),
            record::encode_chunk(records),
        ),
    }
}

/// The sequences stored for a station with `from <= seq < below`, in order, from
/// the entries' keys and chunk framings (record values are not read). A chunk
/// whose framing is damaged gives its key's sequence.
pub(crate) fn seqs(
    log: &Keyspace,
    station: u64,
    from: u64,
    below: u64,
) -> impl Iterator<Item = u64> + use<> {
    let entries = (from < below)
        .then(|| log.range(record::key(station, from)..=record::key(station, u64::MAX)));
    let mut ended = false;
    entries
        .into_iter()
        .flatten()
        .map_while(move |guard| {
            if ended {
                return None;
            }
            let Ok((k, v)) = guard.into_inner() else {
                return Some(Vec::new());
            };
            let Some(key_seq) = record::seq_of(&k) else {
                return Some(Vec::new());
            };
            let seqs: Vec<u64> = match record::split(key_seq, &v) {
                Ok(parts) => {
                    if parts[0].0 >= below {
                        return None;
                    }
                    parts.into_iter().map(|(s, _)| s).collect()
                }
                Err(_) => {
                    ended = key_seq >= below;
                    vec![key_seq]
                }
            };
            Some(
                seqs.into_iter()
                    .filter(|s| *s >= from && *s < below)
                    .collect(),
            )
        })
        .flatten()
}

/// The records of a range of log entries, in order (or reversed), limited to
/// `from <= seq < below`. A record that cannot be decoded is reported with its
/// sequence; a chunk whose framing is damaged, with its key's sequence; a
/// damaged block (no key), with none.
pub(crate) struct Records {
    inner: Arc<Inner>,
    station: u64,
    entries: Box<dyn Iterator<Item = fjall::Guard> + Send>,
    from: u64,
    below: u64,
    rev: bool,
    /// The entry being read, and what of it is still to give: records are decoded
    /// only when given, so a caller that takes one record of a chunk decodes one.
    value: fjall::UserValue,
    ready: VecDeque<Ready>,
    /// The last sequence given: a chunk being rewritten may be seen twice.
    last: Option<u64>,
    ended: bool,
}

impl Records {
    pub(crate) fn forward(inner: Arc<Inner>, station: u64, from: u64, below: u64) -> Records {
        let entries: Box<dyn Iterator<Item = fjall::Guard> + Send> = if from < below {
            Box::new(
                inner
                    .log
                    .range(record::key(station, from)..=record::key(station, u64::MAX)),
            )
        } else {
            Box::new(std::iter::empty())
        };
        Records::new(inner, station, entries, from, below, false)
    }

    /// From the newest record below `below` backwards: the entry that may hold
    /// `below - 1` among higher ones, then every entry keyed below `below`.
    pub(crate) fn backward(inner: Arc<Inner>, station: u64, below: u64) -> Records {
        let entries: Box<dyn Iterator<Item = fjall::Guard> + Send> = if below > 0 {
            let straddling = inner
                .log
                .range(record::key(station, below)..=record::key(station, u64::MAX))
                .next();
            let older = inner
                .log
                .range(record::key(station, 0)..record::key(station, below))
                .rev();
            Box::new(straddling.into_iter().chain(older))
        } else {
            Box::new(std::iter::empty())
        };
        Records::new(inner, station, entries, 0, below, true)
    }

    fn new(
        inner: Arc<Inner>,
        station: u64,
        entries: Box<dyn Iterator<Item = fjall::Guard> + Send>,
        from: u64,
        below: u64,
        rev: bool,
    ) -> Records {
        Records {
            inner,
            station,
            entries,
            from,
            below,
            rev,
            value: fjall::UserValue::empty(),
            ready: VecDeque::new(),
            last: None,
            ended: false,
        }
    }

    /// Queues one entry's records in range, to be decoded when given.
    fn expand(&mut self, guard: fjall::Guard) {
        let (inner, station) = (&self.inner, self.station);
        let (k, v) = match guard.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                let e = Store::corrupt_or_io(inner, station, None, e);
                self.ready.push_back(Ready::Item(Err((None, e))));
                return;
            }
        };
        let Some(key_seq) = record::seq_of(&k) else {
            let e = Store::corrupt(inner, station, None, record::CorruptRecord("key").into());
            self.ready.push_back(Ready::Item(Err((None, e))));
            return;
        };
        let parts = match record::split(key_seq, &v) {
            Ok(parts) => parts,
            Err(e) => {
                let e = Store::corrupt(inner, station, Some(key_seq), e.into());
                if key_seq < self.below {
                    self.ready.push_back(Ready::Item(Err((Some(key_seq), e))));
                } else if !self.rev {
                    // It may hold records in range; nothing after it does.
                    self.ready.push_back(Ready::Item(Err((Some(key_seq), e))));
                    self.ended = true;
                }
                return;
            }
        };
        if !self.rev && parts[0].0 >= self.below {
            self.ended = true;
            return;
        }
        let base = v.as_ptr() as usize;
        let (from, below) = (self.from, self.below);
        let raw = parts
            .into_iter()
            .filter(|(seq, _)| *seq >= from && *seq < below)
            .map(|(seq, bytes)| {
                let at = bytes.as_ptr() as usize - base;
                Ready::Raw(seq, at..at + bytes.len())
            });
        if self.rev {
            let raw: Vec<Ready> = raw.collect();
            self.ready.extend(raw.into_iter().rev());
        } else {
            self.ready.extend(raw);
        }
        self.value = v;
    }

    fn decode(&self, seq: u64, at: Range<usize>) -> ScanItem {
        record::decode(seq, &self.value[at]).map_err(|e| {
            let e = Store::corrupt(&self.inner, self.station, Some(seq), e.into());
            (Some(seq), e)
        })
    }
}

/// A record of the entry being read, or an error already found.
enum Ready {
    Raw(u64, Range<usize>),
    Item(ScanItem),
}

impl Iterator for Records {
    type Item = ScanItem;

    fn next(&mut self) -> Option<ScanItem> {
        loop {
            if let Some(ready) = self.ready.pop_front() {
                let seq = match &ready {
                    Ready::Raw(seq, _) => Some(*seq),
                    Ready::Item(Ok(r)) => Some(r.seq),
                    Ready::Item(Err((seq, _))) => *seq,
                };
                if let Some(seq) = seq {
                    if self
                        .last
                        .is_some_and(|l| if self.rev { seq >= l } else { seq <= l })
                    {
                        continue;
                    }
                    self.last = Some(seq);
                }
                return Some(match ready {
                    Ready::Raw(seq, at) => self.decode(seq, at),
                    Ready::Item(item) => item,
                });
            }
            if self.ended {
                return None;
            }
            match self.entries.next() {
                Some(guard) => self.expand(guard),
                None => self.ended = true,
            }
        }
    }
}
