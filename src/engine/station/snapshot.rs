//! A station's index state, written at clean shutdown so the next start need not
//! scan the log.
//!
//! At clean shutdown the engine waits for the storage writer to drain, then writes
//! one snapshot per file station (`snapshot/<station id>`) and the marker
//! [`CLEAN_KEY`] in one fsynced batch. Both carry a *boot id*, a random number
//! chosen when the engine opened. At start-up the marker is read and removed
//! (fsynced) before anything else is written, so a snapshot is trusted only by the
//! first start after the shutdown that wrote it: after a crash there is no marker
//! and every station is recovered by a full scan of its log. A change to a station
//! after its snapshot was written withdraws the marker.
//!
//! Format (little-endian), followed by a CRC32C of everything before it:
//!
//! ```text
//! "JSNAP1" boot:u64 last_seq:u64 last_time_ns:u64 msgs:u64 bytes:u64 first_seq:u64
//! last_msg_id: len:u32 (u32::MAX = none) bytes
//! subjects:u64 { len:u32 subject count:u64 first:u64 last:u64 nseqs:u32 seq:u64* }*
//! dedup:u64 { len:u32 id seq:u64 time_ns:u64 }*
//! crc32c:u32
//! ```

use super::index::SubjectState;
use bytes::Bytes;
use std::collections::VecDeque;

/// Metadata key of the clean-shutdown marker (value: the boot id, decimal).
pub(crate) const CLEAN_KEY: &str = "snapshot-clean";

const MAGIC: &[u8] = b"JSNAP1";

/// Metadata key of a station's snapshot.
pub(crate) fn key(station: u64) -> String {
    format!("snapshot/{station}")
}

/// A station's index state as of `last_seq`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Snapshot {
    pub boot: u64,
    pub last_seq: u64,
    pub last_time_ns: u64,
    pub msgs: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_msg_id: Option<String>,
    pub subjects: Vec<(Bytes, SubjectState)>,
    /// (message id, sequence, time in ns).
    pub dedup: Vec<(String, u64, u64)>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Snapshot {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.subjects.len() * 48 + self.dedup.len() * 40);
        out.extend_from_slice(MAGIC);
        for v in [
            self.boot,
            self.last_seq,
            self.last_time_ns,
            self.msgs,
            self.bytes,
            self.first_seq,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        match &self.last_msg_id {
            Some(id) => put_bytes(&mut out, id.as_bytes()),
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
        out.extend_from_slice(&(self.subjects.len() as u64).to_le_bytes());
        for (subject, s) in &self.subjects {
            put_bytes(&mut out, subject);
            for v in [s.count, s.first, s.last] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&(s.seqs.len() as u32).to_le_bytes());
            for seq in &s.seqs {
                out.extend_from_slice(&seq.to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.dedup.len() as u64).to_le_bytes());
        for (id, seq, t) in &self.dedup {
            put_bytes(&mut out, id.as_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&t.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Do the subjects add up to the totals (and, for a station that keeps each
    /// subject's sequences, do those)?
    pub fn consistent(&self, tracks_seqs: bool) -> bool {
        let counted: u64 = self.subjects.iter().map(|(_, s)| s.count).sum();
        counted == self.msgs
            && self.subjects.iter().all(|(_, s)| {
                s.count > 0
                    && s.first <= s.last
                    && s.last <= self.last_seq
                    && (!tracks_seqs || s.seqs.len() as u64 == s.count)
            })
    }

    /// `None` when the bytes are not a whole, intact snapshot.
    pub fn decode(data: &[u8]) -> Option<Snapshot> {
        let (body, crc) = data.split_at_checked(data.len().checked_sub(4)?)?;
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return None;
        }
        let mut r = Reader(body);
        if r.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let mut s = Snapshot {
            boot: r.u64()?,
            last_seq: r.u64()?,
            last_time_ns: r.u64()?,
            msgs: r.u64()?,
            bytes: r.u64()?,
            first_seq: r.u64()?,
            ..Snapshot::default()
        };
        let len = r.u32()?;
        if len != u32::MAX {
            s.last_msg_id = Some(String::from_utf8(r.take(len as usize)?.to_vec()).ok()?);
        }
        let n = r.u64()?;
        for _ in 0..n {
            let len = r.u32()? as usize;
            let subject = Bytes::copy_from_slice(r.take(len)?);
            let (count, first, last) = (r.u64()?, r.u64()?, r.u64()?);
            let nseqs = r.u32()? as usize;
            let mut seqs = VecDeque::with_capacity(nseqs.min(r.0.len() / 8));
            for _ in 0..nseqs {
                seqs.push_back(r.u64()?);
            }
            s.subjects.push((
                subject,
                SubjectState {
                    count,
                    first,
                    last,
                    seqs,
                },
            ));
        }
        let n = r.u64()?;
        for _ in 0..n {
            let len = r.u32()? as usize;
            let id = String::from_utf8(r.take(len)?.to_vec()).ok()?;
            s.dedup.push((id, r.u64()?, r.u64()?));
        }
        r.0.is_empty().then_some(s)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let s = Snapshot {
            boot: 7,
            last_seq: 100,
            last_time_ns: 5,
            msgs: 3,
            bytes: 120,
            first_seq: 90,
            last_msg_id: Some("m-1".into()),
            subjects: vec![(
                Bytes::from_static(b"a.b"),
                SubjectState {
                    count: 3,
                    first: 90,
                    last: 100,
                    seqs: VecDeque::from([90, 95, 100]),
                },
            )],
            dedup: vec![("m-1".into(), 100, 5)],
        };
        let bytes = s.encode();
        assert_eq!(Snapshot::decode(&bytes), Some(s));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                Snapshot::decode(&bad),
                None,
                "a flipped byte at {i} is refused"
            );
        }
        assert_eq!(Snapshot::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Snapshot::decode(&[]), None);
    }
}
