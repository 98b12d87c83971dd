//! The on-disk form of one stored message, and of log keys.
//!
//! Key: `station_id (u64 BE) | seq (u64 BE)`, so a station's messages sort by
//! sequence and a station is one key prefix. Value, version 2 (written since 0.2):
//!
//! ```text
//! u8 version=2 | u32 crc32c of every byte after this field
//! | u64 time_ns | u16 subject_len | subject
//! | u16 header_count | (u16 name_len | name | u32 value_len | value)*
//! | u8 has_status | [u16 status | u16 desc_len | desc]
//! | u32 lineage_len | lineage (opaque to storage: the engine's compact record)
//! | payload (rest)
//! ```
//!
//! The checksum (CRC-32C, Castagnoli) is checked on every read; a mismatch is a
//! [`CorruptRecord`], never bytes handed to a client.
//!
//! A **chunk** (version 3, written since 0.3) holds several records of one station
//! in one log entry, keyed by the *highest* sequence it holds, so that the first
//! entry at or after a sequence is the one that holds it. A group commit stores the
//! messages it carries for a station as chunks of up to [`CHUNK_RECORDS`] records
//! (fewer when they pass [`CHUNK_BYTES`]): one entry to index, journal and flush
//! instead of one per message. Each record inside keeps its own version 2 value
//! and checksum, so a damaged byte loses one record; the framing has a checksum of
//! its own:
//!
//! ```text
//! u8 version=3 | u32 crc32c of count and index | u32 count
//! | (u64 seq | u32 value_len)* count, sequences ascending, the last = the key's
//! | the records' version 2 values, in the same order
//! ```
//!
//! An entry of one record is written as a plain version 2 value. Version 1 (no checksum, no
//! lineage section) is still read, so a data directory written by an older release
//! opens:
//!
//! ```text
//! u8 version=1 | u64 time_ns | u16 subject_len | subject
//! | u16 header_count | (u16 name_len | name | u32 value_len | value)*
//! | u8 has_status | [u16 status | u16 desc_len | desc]
//! | payload (rest)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use junction_api::Headers;

/// One message as a station stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Sequence number within the station (from 1).
    pub seq: u64,
    /// Receive time, ns since the Unix epoch.
    pub time_ns: u64,
    /// Subject it was published on.
    pub subject: Bytes,
    /// Headers, if any.
    pub headers: Option<Headers>,
    /// Payload.
    pub payload: Bytes,
    /// The engine's lineage record for this message (empty: none). Stored beside
    /// the message, never mixed into its headers.
    pub lineage: Bytes,
}

impl Record {
    /// Bytes counted against `max_bytes`, as nats-server counts them: subject,
    /// headers and payload, plus a fixed overhead.
    pub fn stored_size(&self) -> u64 {
        let headers: usize = self.headers.as_ref().map_or(0, |h| {
            h.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>() + 12
        });
        (self.subject.len() + headers + self.payload.len() + 16) as u64
    }
}

/// Why a stored value could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct CorruptRecord(pub &'static str);

/// The log key of `seq` in station `station`.
pub fn key(station: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&station.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number in a log key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn clamp_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Bytes before the checksummed part of a version 2 value.
const V2_PREFIX: usize = 5;

/// Encodes a record's value (version 2).
pub fn encode(record: &Record) -> Vec<u8> {
    let mut b =
        Vec::with_capacity(record.payload.len() + record.subject.len() + record.lineage.len() + 40);
    b.put_u8(2);
    b.put_u32(0);
    b.put_u64(record.time_ns);
    let subject = &record.subject[..record.subject.len().min(usize::from(u16::MAX))];
    b.put_u16(clamp_u16(subject.len()));
    b.put_slice(subject);
    put_headers(&mut b, record.headers.as_ref());
    b.put_u32(u32::try_from(record.lineage.len()).unwrap_or(0));
    if u32::try_from(record.lineage.len()).is_ok() {
        b.put_slice(&record.lineage);
    }
    b.put_slice(&record.payload);
    let crc = crc32c::crc32c(&b[V2_PREFIX..]);
    b[1..V2_PREFIX].copy_from_slice(&crc.to_be_bytes());
    b
}

fn put_headers(b: &mut impl BufMut, headers: Option<&Headers>) {
    match headers {
        None => {
            b.put_u16(0);
            b.put_u8(0);
        }
        Some(h) => {
            let pairs: Vec<(&str, &str)> = h.iter().take(usize::from(u16::MAX)).collect();
            b.put_u16(clamp_u16(pairs.len()));
            for (name, value) in pairs {
                let name = &name.as_bytes()[..name.len().min(usize::from(u16::MAX))];
                b.put_u16(clamp_u16(name.len()));
                b.put_slice(name);
                b.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
                b.put_slice(value.as_bytes());
            }
            match h.status() {
                Some(code) => {
                    b.put_u8(1);
                    b.put_u16(code);
                    let d = h.description().unwrap_or("").as_bytes();
                    let d = &d[..d.len().min(usize::from(u16::MAX))];
                    b.put_u16(clamp_u16(d.len()));
                    b.put_slice(d);
                }
                None => b.put_u8(if h.is_empty() { 2 } else { 3 }),
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CorruptRecord> {
        let end = self.pos.checked_add(n).ok_or(CorruptRecord("length"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(CorruptRecord("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CorruptRecord> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CorruptRecord> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, CorruptRecord> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, CorruptRecord> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }
    fn text(&mut self, n: usize) -> Result<String, CorruptRecord> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CorruptRecord("utf-8"))
    }
}

/// Decodes a record's value, version 1 or 2 (the `seq` comes from the key). A
/// version 2 value whose checksum does not match is refused.
pub fn decode(seq: u64, value: &[u8]) -> Result<Record, CorruptRecord> {
    let mut r = Reader { buf: value, pos: 0 };
    let version = r.u8()?;
    match version {
        1 => {}
        2 => {
            let want = r.u32()?;
            if crc32c::crc32c(&value[V2_PREFIX..]) != want {
                return Err(CorruptRecord("checksum mismatch"));
            }
        }
        _ => return Err(CorruptRecord("version")),
    }
    let time_ns = r.u64()?;
    let n = usize::from(r.u16()?);
    let subject = Bytes::copy_from_slice(r.take(n)?);
    let count = r.u16()?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let n = usize::from(r.u16()?);
        let name = r.text(n)?;
        let n = r.u32()? as usize;
        let value = r.text(n)?;
        headers.append(name, value);
    }
    let headers = match r.u8()? {
        0 => None,
        1 => {
            let code = r.u16()?;
            let n = usize::from(r.u16()?);
            let d = r.text(n)?;
            headers.set_status(Some(code), (!d.is_empty()).then_some(d));
            Some(headers)
        }
        2 | 3 => Some(headers),
        _ => return Err(CorruptRecord("status flag")),
    };
    let lineage = if version >= 2 {
        let n = r.u32()? as usize;
        Bytes::copy_from_slice(r.take(n)?)
    } else {
        Bytes::new()
    };
    let payload = Bytes::copy_from_slice(&value[r.pos..]);
    Ok(Record {
        seq,
        time_ns,
        subject,
        headers,
        payload,
        lineage,
    })
}

/// Most records in one chunk: deleting one record of a chunk rewrites the
/// chunk, so a chunk stays small.
pub const CHUNK_RECORDS: usize = 64;

/// A chunk takes no more records once its values reach this many bytes.
pub const CHUNK_BYTES: usize = 32 * 1024;

const CHUNK_VERSION: u8 = 3;
/// Bytes before the part of a chunk's framing its checksum covers.
const CHUNK_PREFIX: usize = 5;
/// Bytes of one record's place in a chunk's index.
const CHUNK_SLOT: usize = 12;

/// Whether a log value is a chunk (several records) rather than one record.
pub fn is_chunk(value: &[u8]) -> bool {
    value.first() == Some(&CHUNK_VERSION)
}

/// Encodes records' version 2 values (sequences ascending) as one chunk value.
pub fn encode_chunk<V: AsRef<[u8]>>(records: &[(u64, V)]) -> Vec<u8> {
    let values: usize = records.iter().map(|(_, v)| v.as_ref().len()).sum();
    let mut b = Vec::with_capacity(CHUNK_PREFIX + 4 + CHUNK_SLOT * records.len() + values);
    b.put_u8(CHUNK_VERSION);
    b.put_u32(0);
    b.put_u32(u32::try_from(records.len()).unwrap_or(u32::MAX));
    for (seq, v) in records {
        b.put_u64(*seq);
        b.put_u32(u32::try_from(v.as_ref().len()).unwrap_or(u32::MAX));
    }
    let crc = crc32c::crc32c(&b[CHUNK_PREFIX..]);
    b[1..CHUNK_PREFIX].copy_from_slice(&crc.to_be_bytes());
    for (_, v) in records {
        b.put_slice(v.as_ref());
    }
    b
}

/// The records of one log entry whose key holds `key_seq`: `(seq, value)` in
/// sequence order, each value to be [`decode`]d. A plain value is one record; a
/// chunk whose framing is damaged is a [`CorruptRecord`] as a whole.
pub fn split(key_seq: u64, value: &[u8]) -> Result<Vec<(u64, &[u8])>, CorruptRecord> {
    if !is_chunk(value) {
        return Ok(vec![(key_seq, value)]);
    }
    let mut r = Reader { buf: value, pos: 1 };
    let want = r.u32()?;
    let count = r.u32()? as usize;
    let index_len = count
        .checked_mul(CHUNK_SLOT)
        .and_then(|n| n.checked_add(4))
        .ok_or(CorruptRecord("chunk length"))?;
    let framing = value
        .get(CHUNK_PREFIX..CHUNK_PREFIX + index_len)
        .ok_or(CorruptRecord("truncated chunk"))?;
    if crc32c::crc32c(framing) != want {
        return Err(CorruptRecord("chunk checksum mismatch"));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = CHUNK_PREFIX + index_len;
    let mut previous = None;
    for _ in 0..count {
        let seq = r.u64()?;
        let len = r.u32()? as usize;
        if previous.is_some_and(|p| p >= seq) {
            return Err(CorruptRecord("chunk order"));
        }
        previous = Some(seq);
        let end = at.checked_add(len).ok_or(CorruptRecord("chunk length"))?;
        out.push((
            seq,
            value.get(at..end).ok_or(CorruptRecord("truncated chunk"))?,
        ));
        at = end;
    }
    if count == 0 || previous != Some(key_seq) || at != value.len() {
        return Err(CorruptRecord("chunk framing"));
    }
    Ok(out)
}

/// Encodes a record in the version 1 form, as releases before 0.2 wrote it; kept
/// for tests that prove old data directories still open.
pub fn encode_v1(record: &Record) -> Vec<u8> {
    let mut b = BytesMut::with_capacity(record.payload.len() + record.subject.len() + 32);
    b.put_u8(1);
    b.put_u64(record.time_ns);
    let subject = &record.subject[..record.subject.len().min(usize::from(u16::MAX))];
    b.put_u16(clamp_u16(subject.len()));
    b.put_slice(subject);
    put_headers(&mut b, record.headers.as_ref());
    b.put_slice(&record.payload);
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut h = Headers::new();
        h.append("Nats-Msg-Id", "1");
        h.append("a", "b");
        for headers in [
            None,
            Some(Headers::new()),
            Some(h),
            Some(Headers::with_status(503, Some("x"))),
        ] {
            let mut r = Record {
                seq: 7,
                time_ns: 42,
                subject: Bytes::from_static(b"a.b"),
                headers,
                payload: Bytes::from_static(b"\x00payload"),
                lineage: Bytes::from_static(b"\x01lineage"),
            };
            assert_eq!(decode(7, &encode(&r)).unwrap(), r);
            // Version 1 has no lineage section.
            r.lineage = Bytes::new();
            assert_eq!(decode(7, &encode_v1(&r)).unwrap(), r);
        }
        assert!(decode(1, b"\x03").is_err());
        assert!(decode(1, b"\x02").is_err());
        assert!(decode(1, b"\x01\x00").is_err());
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let r = Record {
            seq: 1,
            time_ns: 1_700_000_000_000_000_000,
            subject: Bytes::from_static(b"orders.eu"),
            headers: None,
            payload: Bytes::from_static(b"{\"id\":1}"),
            lineage: Bytes::new(),
        };
        let good = encode(&r);
        for i in 1..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                assert!(
                    decode(1, &bad).is_err(),
                    "flip of bit {bit:#x} at byte {i} not caught"
                );
            }
        }
    }

    #[test]
    fn a_chunk_splits_into_its_records_and_every_framing_flip_is_caught() {
        let records: Vec<(u64, Vec<u8>)> = [5u64, 6, 9]
            .iter()
            .map(|&seq| {
                let r = Record {
                    seq,
                    time_ns: seq,
                    subject: Bytes::from(format!("s.{seq}")),
                    headers: None,
                    payload: Bytes::from(format!("payload {seq}")),
                    lineage: Bytes::new(),
                };
                (seq, encode(&r))
            })
            .collect();
        let chunk = encode_chunk(&records);
        assert!(is_chunk(&chunk));
        let parts = split(9, &chunk).unwrap();
        assert_eq!(parts.len(), 3);
        for ((seq, value), (want_seq, want)) in parts.iter().zip(&records) {
            assert_eq!(seq, want_seq);
            assert_eq!(*value, want.as_slice());
            assert_eq!(decode(*seq, value).unwrap().seq, *seq);
        }
        // Keyed by another sequence than its last: refused.
        assert!(split(8, &chunk).is_err());
        // A plain value is one record.
        assert_eq!(
            split(5, &records[0].1).unwrap(),
            vec![(5, &records[0].1[..])]
        );
        let framing = CHUNK_PREFIX + 4 + CHUNK_SLOT * records.len();
        for i in 1..framing {
            let mut bad = chunk.clone();
            bad[i] ^= 0x01;
            assert!(split(9, &bad).is_err(), "flip at byte {i} not caught");
        }
        // A flip in one record's value loses that record only.
        let mut bad = chunk.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let parts = split(9, &bad).unwrap();
        assert!(decode(parts[0].0, parts[0].1).is_ok());
        assert!(decode(parts[2].0, parts[2].1).is_err());
        assert!(split(9, &chunk[..chunk.len() - 1]).is_err());
    }

    #[test]
    fn keys_sort_by_station_then_seq() {
        assert!(key(1, 2) < key(1, 3));
        assert!(key(1, u64::MAX) < key(2, 0));
        assert_eq!(seq_of(&key(9, 77)), Some(77));
    }
}
