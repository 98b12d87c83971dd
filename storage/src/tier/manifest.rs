//! A station's manifest: the copy of its remote index kept in the bucket, next
//! to its segments (`stations/<uid>/manifest`), so that the index can be
//! rebuilt when the local store lost it (a lost disk, a data directory
//! restored from a backup taken before the uploads).
//!
//! The local index stays the source of truth while the node lives; the
//! manifest is rewritten after each change of it. Its bytes:
//!
//! ```text
//! "JMAN" | u32 version (1) | u32 crc32c of what follows |
//! u64 remote floor | u32 segment count |
//! ( u32 entry_len | SegmentRef::encode() | u32 summary_len | SubjectSummary::encode() )*
//! ```
//!
//! A `summary_len` of 0 means the segment has no subject summary (version 1
//! segments). Each entry and summary keeps its own checksum as well.

use super::SegmentRef;
use super::segment::{SegmentError, SubjectSummary};
use bytes::{Buf, BufMut};

const MAGIC: &[u8; 4] = b"JMAN";
/// The manifest format's version.
pub const MANIFEST_VERSION: u32 = 1;

/// One segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSegment {
    /// The remote index entry.
    pub entry: SegmentRef,
    /// Its subject summary, when the index keeps one.
    pub summary: Option<SubjectSummary>,
}

/// A station's remote index as the bucket keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Remote messages below it were purged (0: none).
    pub floor: u64,
    /// The segments, in sequence order.
    pub segments: Vec<ManifestSegment>,
}

impl Manifest {
    /// The manifest object's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        body.put_u64(self.floor);
        body.put_u32(self.segments.len() as u32);
        for s in &self.segments {
            let e = s.entry.encode();
            body.put_u32(e.len() as u32);
            body.put_slice(&e);
            match &s.summary {
                Some(summary) => {
                    let v = summary.encode();
                    body.put_u32(v.len() as u32);
                    body.put_slice(&v);
                }
                None => body.put_u32(0),
            }
        }
        let mut out = Vec::with_capacity(12 + body.len());
        out.put_slice(MAGIC);
        out.put_u32(MANIFEST_VERSION);
        out.put_u32(crc32c::crc32c(&body));
        out.put_slice(&body);
        out
    }

    /// Reads [`Manifest::encode`]'s bytes; a damaged or unknown manifest is
    /// refused whole.
    pub fn decode(v: &[u8]) -> Result<Manifest, SegmentError> {
        let too_short = SegmentError::Malformed("manifest is too short");
        if v.len() < 24 || &v[..4] != MAGIC {
            return Err(SegmentError::Malformed("not a manifest"));
        }
        let mut head = &v[4..12];
        if head.get_u32() != MANIFEST_VERSION {
            return Err(SegmentError::Malformed("unknown manifest version"));
        }
        let body = &v[12..];
        if crc32c::crc32c(body) != head.get_u32() {
            return Err(SegmentError::Checksum("manifest"));
        }
        let mut b = body;
        let floor = b.get_u64();
        let n = b.get_u32() as usize;
        // Each segment takes at least 68 bytes: no allocation past the input.
        if n > b.len() / 68 {
            return Err(SegmentError::Malformed(
                "manifest count is larger than its bytes",
            ));
        }
        let mut segments = Vec::with_capacity(n);
        let take = |b: &mut &[u8]| -> Result<Vec<u8>, SegmentError> {
            if b.remaining() < 4 {
                return Err(too_short.clone());
            }
            let len = b.get_u32() as usize;
            if b.remaining() < len {
                return Err(too_short.clone());
            }
            let out = b[..len].to_vec();
            b.advance(len);
            Ok(out)
        };
        for _ in 0..n {
            let entry = SegmentRef::decode(&take(&mut b)?)?;
            let summary = take(&mut b)?;
            let summary = if summary.is_empty() {
                None
            } else {
                Some(SubjectSummary::decode(&summary)?)
            };
            segments.push(ManifestSegment { entry, summary });
        }
        if !b.is_empty() {
            return Err(SegmentError::Malformed("manifest has bytes past its end"));
        }
        Ok(Manifest { floor, segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::segment::SubjectEntry;
    use bytes::Bytes;

    fn manifest() -> Manifest {
        let entry = |first: u64, last: u64| SegmentRef {
            key: format!("p/stations/3-7/{first:020}-{last:020}-0000000000000001.seg"),
            first_seq: first,
            last_seq: last,
            messages: last - first + 1,
            bytes: 100 * (last - first + 1),
            min_time_ns: first * 10,
            max_time_ns: last * 10,
            object_len: 4000,
        };
        Manifest {
            floor: 4,
            segments: vec![
                ManifestSegment {
                    entry: entry(1, 10),
                    summary: None,
                },
                ManifestSegment {
                    entry: entry(11, 20),
                    summary: Some(SubjectSummary {
                        subjects: vec![SubjectEntry {
                            subject: Bytes::from_static(b"a.b"),
                            last_seq: 20,
                            count: 10,
                        }],
                    }),
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trips() {
        let m = manifest();
        assert_eq!(Manifest::decode(&m.encode()), Ok(m));
        let empty = Manifest::default();
        assert_eq!(Manifest::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn a_manifest_with_a_bad_checksum_is_refused() {
        let v = manifest().encode();
        for i in 12..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                Manifest::decode(&bad),
                Err(SegmentError::Checksum("manifest")),
                "byte {i}"
            );
        }
        let mut bad = v.clone();
        bad[8] ^= 1;
        assert_eq!(
            Manifest::decode(&bad),
            Err(SegmentError::Checksum("manifest"))
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused_not_panicked_on() {
        let v = manifest().encode();
        for n in 0..v.len() {
            assert!(Manifest::decode(&v[..n]).is_err(), "{n}");
        }
        let mut other = v.clone();
        other[7] = 2;
        assert_eq!(
            Manifest::decode(&other),
            Err(SegmentError::Malformed("unknown manifest version"))
        );
    }
}
