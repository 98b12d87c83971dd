//! The segment object: a sealed, contiguous, committed range of one station's log,
//! as one self-describing object in the bucket.
//!
//! ```text
//! header (44 bytes):
//!   b"JSEG" | u32 version=2 | u64 station_id | u64 first_seq | u64 last_seq
//!   | u64 created_ns | u32 crc32c of the 40 bytes before
//! blocks, each about BLOCK_BYTES:
//!   u32 crc32c of the rest of the block | u32 count
//!   | (u64 seq | u32 value_len | value)* count     (value: a record, version 2)
//! footer (version 2):
//!   (u64 first_seq | u64 last_seq | u64 min_time_ns | u64 max_time_ns
//!    | u64 offset | u32 len | u32 count)* block_count
//!   | (u32 subject_len | subject | u64 last_seq | u32 count)* subject_count
//!   | u32 subject_count
//!   | u32 block_count | u64 messages | u64 bytes
//! trailer (16 bytes):
//!   u32 crc32c of the footer | u32 footer_len | b"JSEGEND" | u8 footer version
//! ```
//!
//! The subject summary (version 2) names every subject in the segment once,
//! in byte order, with the sequence of its last message there and how many
//! messages it has there. Version 1 segments (header version 1, trailer
//! `b"JSEGEND\0"`, written before the summary existed) have the same footer
//! without the subject part; they are still read, and have no summary
//! ([`decode_summary`] answers `None`).
//!
//! All integers are big-endian. A reader takes the object's last
//! [`FOOTER_READ`] bytes in one suffix GET (the footer and trailer of a segment
//! of up to about a thousand blocks and subjects; a longer footer takes a second
//! ranged GET), then fetches blocks by range. Every block and the
//! footer carry a CRC-32C, and every record inside a block keeps its own (the
//! record's version 2 value): a flipped byte is a [`SegmentError`], never a
//! message with wrong bytes.

use crate::record::{self, Record};
use bytes::{Buf, BufMut, Bytes};

/// A segment's blocks hold about this many bytes of records each.
pub const BLOCK_BYTES: usize = 1024 * 1024;

/// Bytes a reader asks for in its suffix GET of the footer.
pub const FOOTER_READ: u64 = 64 * 1024;

const MAGIC: &[u8; 4] = b"JSEG";
/// The trailer's magic; its 8th byte is the footer's version (0 for version 1).
const END: &[u8; 7] = b"JSEGEND";
/// The version segments are written in (header and footer).
const VERSION: u32 = 2;
/// The version before the subject summary.
const VERSION_1: u32 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 44;
/// Trailer bytes.
pub const TRAILER_LEN: usize = 16;
const INDEX_ENTRY: usize = 48;

/// Why a segment (or part of one) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The bytes are not a segment of this format (magic, version, lengths).
    #[error("not a segment object: {0}")]
    Malformed(&'static str),
    /// A checksum did not match: the object was damaged.
    #[error("segment {0} failed its checksum")]
    Checksum(&'static str),
    /// A record inside a block failed its own check.
    #[error("segment block holds a corrupt record: {0}")]
    Record(#[from] record::CorruptRecord),
}

/// What a segment's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The station's unique id.
    pub station: u64,
    /// First sequence the segment covers.
    pub first_seq: u64,
    /// Last sequence it covers.
    pub last_seq: u64,
    /// When it was sealed (ns since the epoch).
    pub created_ns: u64,
}

/// One block of a segment, as the footer indexes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Sequence of its first record.
    pub first_seq: u64,
    /// Sequence of its last record.
    pub last_seq: u64,
    /// Oldest record time in it.
    pub min_time_ns: u64,
    /// Newest record time in it.
    pub max_time_ns: u64,
    /// Offset of the block in the object.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u32,
    /// Records in it.
    pub count: u32,
}

/// A segment's footer: its block index and totals. The subject summary is
/// read apart ([`decode_summary`]): reads by sequence or time do not need
/// it, and footers are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Blocks in sequence order.
    pub blocks: Vec<BlockRef>,
    /// Records in the segment.
    pub messages: u64,
    /// Their accounted bytes ([`Record::stored_size`]).
    pub bytes: u64,
    /// The footer's version: 1 (no subject summary) or 2.
    pub version: u32,
}

/// One subject of a segment's subject summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectEntry {
    /// The subject.
    pub subject: Bytes,
    /// Sequence of its last message in the segment.
    pub last_seq: u64,
    /// Its messages in the segment.
    pub count: u32,
}

/// A segment's subjects, each once, in byte order of the subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectSummary {
    /// The subjects.
    pub subjects: Vec<SubjectEntry>,
}

impl SubjectSummary {
    /// The entry of `subject`, if the segment has it.
    pub fn get(&self, subject: &[u8]) -> Option<&SubjectEntry> {
        self.subjects
            .binary_search_by(|e| e.subject.as_ref().cmp(subject))
            .ok()
            .map(|i| &self.subjects[i])
    }

    /// The summary's bytes as the footer holds them, `subject_count` last.
    fn put(&self, out: &mut Vec<u8>) {
        for e in &self.subjects {
            out.put_u32(e.subject.len() as u32);
            out.put_slice(&e.subject);
            out.put_u64(e.last_seq);
            out.put_u32(e.count);
        }
        out.put_u32(self.subjects.len() as u32);
    }

    /// Reads [`SubjectSummary::put`]'s bytes (exactly).
    fn read(bytes: &[u8]) -> Result<SubjectSummary, SegmentError> {
        if bytes.len() < 4 {
            return Err(SegmentError::Malformed("subject summary is too short"));
        }
        let (mut b, mut n) = bytes.split_at(bytes.len() - 4);
        let n = n.get_u32() as usize;
        // Each entry takes at least 16 bytes: no allocation past the input.
        if n > b.len() / 16 {
            return Err(SegmentError::Malformed(
                "subject summary count is larger than its bytes",
            ));
        }
        let mut subjects: Vec<SubjectEntry> = Vec::with_capacity(n);
        for _ in 0..n {
            if b.remaining() < 4 {
                return Err(SegmentError::Malformed("subject summary ends in an entry"));
            }
            let len = b.get_u32() as usize;
            if b.remaining() < len.saturating_add(12) {
                return Err(SegmentError::Malformed("subject summary ends in an entry"));
            }
            let subject = Bytes::copy_from_slice(&b[..len]);
            b.advance(len);
            let e = SubjectEntry {
                subject,
                last_seq: b.get_u64(),
                count: b.get_u32(),
            };
            if subjects.last().is_some_and(|p| p.subject >= e.subject) {
                return Err(SegmentError::Malformed(
                    "subject summary is not in subject order",
                ));
            }
            subjects.push(e);
        }
        if !b.is_empty() {
            return Err(SegmentError::Malformed(
                "subject summary is shorter than its bytes",
            ));
        }
        Ok(SubjectSummary { subjects })
    }

    /// The summary as the station's remote index keeps it in the local store:
    /// `u32 crc32c | (u32 subject_len | subject | u64 last_seq | u32 count)*
    /// | u32 subject_count`.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        self.put(&mut body);
        let mut out = Vec::with_capacity(4 + body.len());
        out.put_u32(crc32c::crc32c(&body));
        out.extend_from_slice(&body);
        out
    }

    /// Reads [`SubjectSummary::encode`]'s bytes.
    pub fn decode(v: &[u8]) -> Result<SubjectSummary, SegmentError> {
        if v.len() < 8 {
            return Err(SegmentError::Malformed(
                "subject summary entry is too short",
            ));
        }
        let (mut crc, body) = v.split_at(4);
        if crc32c::crc32c(body) != crc.get_u32() {
            return Err(SegmentError::Checksum("subject summary entry"));
        }
        Self::read(body)
    }
}

impl Footer {
    /// The block that holds `seq`, or the first one after it.
    pub fn block_for(&self, seq: u64) -> Option<&BlockRef> {
        let i = self.blocks.partition_point(|b| b.last_seq < seq);
        self.blocks.get(i)
    }

    /// The first block whose newest record is at or after `time_ns`.
    pub fn block_at_time(&self, time_ns: u64) -> Option<&BlockRef> {
        self.blocks.iter().find(|b| b.max_time_ns >= time_ns)
    }
}

/// Builds a segment from records given in sequence order.
pub struct SegmentWriter {
    out: Vec<u8>,
    blocks: Vec<BlockRef>,
    block: Vec<u8>,
    current: Option<BlockRef>,
    messages: u64,
    bytes: u64,
    block_bytes: usize,
    /// Per subject: (last sequence, count).
    subjects: std::collections::HashMap<Bytes, (u64, u32)>,
    version: u32,
}

impl SegmentWriter {
    /// A segment of `station` covering `first_seq..=last_seq`.
    pub fn new(header: Header) -> SegmentWriter {
        Self::with_block_bytes(header, BLOCK_BYTES)
    }

    /// [`SegmentWriter::new`] with another block size (tests use small ones).
    pub fn with_block_bytes(header: Header, block_bytes: usize) -> SegmentWriter {
        Self::of_version(header, block_bytes, VERSION)
    }

    /// A writer of the version 1 format, without a subject summary, as
    /// segments were written before it existed (tests of reading them).
    #[doc(hidden)]
    pub fn version_1(header: Header, block_bytes: usize) -> SegmentWriter {
        Self::of_version(header, block_bytes, VERSION_1)
    }

    fn of_version(header: Header, block_bytes: usize, version: u32) -> SegmentWriter {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.put_slice(MAGIC);
        out.put_u32(version);
        out.put_u64(header.station);
        out.put_u64(header.first_seq);
        out.put_u64(header.last_seq);
        out.put_u64(header.created_ns);
        let crc = crc32c::crc32c(&out);
        out.put_u32(crc);
        SegmentWriter {
            out,
            blocks: Vec::new(),
            block: Vec::new(),
            current: None,
            messages: 0,
            bytes: 0,
            block_bytes: block_bytes.max(1),
            subjects: std::collections::HashMap::new(),
            version,
        }
    }

    /// Adds a record (sequences ascending).
    pub fn push(&mut self, r: &Record) {
        let value = record::encode(r);
        self.block.put_u64(r.seq);
        self.block.put_u32(value.len() as u32);
        self.block.put_slice(&value);
        self.messages += 1;
        self.bytes += r.stored_size();
        if self.version >= VERSION {
            let e = self.subjects.entry(r.subject.clone()).or_insert((0, 0));
            e.0 = e.0.max(r.seq);
            e.1 += 1;
        }
        let b = self.current.get_or_insert(BlockRef {
            first_seq: r.seq,
            last_seq: r.seq,
            min_time_ns: r.time_ns,
            max_time_ns: r.time_ns,
            offset: 0,
            len: 0,
            count: 0,
        });
        b.last_seq = r.seq;
        b.min_time_ns = b.min_time_ns.min(r.time_ns);
        b.max_time_ns = b.max_time_ns.max(r.time_ns);
        b.count += 1;
        if self.block.len() >= self.block_bytes {
            self.close_block();
        }
    }

    /// Bytes of records pushed so far (encoded).
    pub fn len(&self) -> usize {
        self.out.len() + self.block.len()
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    fn close_block(&mut self) {
        let Some(mut b) = self.current.take() else {
            return;
        };
        let mut body = Vec::with_capacity(4 + self.block.len());
        body.put_u32(b.count);
        body.extend_from_slice(&self.block);
        b.offset = self.out.len() as u64;
        b.len = (body.len() + 4) as u32;
        self.out.put_u32(crc32c::crc32c(&body));
        self.out.extend_from_slice(&body);
        self.block.clear();
        self.blocks.push(b);
    }

    /// The whole object and its footer.
    pub fn finish(self) -> (Vec<u8>, Footer) {
        let (object, footer, _) = self.finish_with_summary();
        (object, footer)
    }

    /// The whole object, its footer and its subject summary (empty for a
    /// version 1 writer).
    pub fn finish_with_summary(mut self) -> (Vec<u8>, Footer, SubjectSummary) {
        self.close_block();
        let mut summary = SubjectSummary {
            subjects: std::mem::take(&mut self.subjects)
                .into_iter()
                .map(|(subject, (last_seq, count))| SubjectEntry {
                    subject,
                    last_seq,
                    count,
                })
                .collect(),
        };
        summary
            .subjects
            .sort_unstable_by(|a, b| a.subject.cmp(&b.subject));
        let mut footer = Vec::with_capacity(self.blocks.len() * INDEX_ENTRY + 24);
        for b in &self.blocks {
            footer.put_u64(b.first_seq);
            footer.put_u64(b.last_seq);
            footer.put_u64(b.min_time_ns);
            footer.put_u64(b.max_time_ns);
            footer.put_u64(b.offset);
            footer.put_u32(b.len);
            footer.put_u32(b.count);
        }
        if self.version >= VERSION {
            summary.put(&mut footer);
        }
        footer.put_u32(self.blocks.len() as u32);
        footer.put_u64(self.messages);
        footer.put_u64(self.bytes);
        let crc = crc32c::crc32c(&footer);
        let footer_len = footer.len() as u32;
        self.out.extend_from_slice(&footer);
        self.out.put_u32(crc);
        self.out.put_u32(footer_len);
        self.out.put_slice(END);
        self.out.put_u8(if self.version >= VERSION {
            VERSION as u8
        } else {
            0
        });
        (
            self.out,
            Footer {
                blocks: self.blocks,
                messages: self.messages,
                bytes: self.bytes,
                version: self.version,
            },
            summary,
        )
    }
}

/// Reads a segment's header from its first [`HEADER_LEN`] bytes.
pub fn decode_header(bytes: &[u8]) -> Result<Header, SegmentError> {
    if bytes.len() < HEADER_LEN {
        return Err(SegmentError::Malformed("header is too short"));
    }
    let (body, mut crc) = bytes[..HEADER_LEN].split_at(HEADER_LEN - 4);
    if &body[..4] != MAGIC {
        return Err(SegmentError::Malformed("bad magic"));
    }
    if crc32c::crc32c(body) != crc.get_u32() {
        return Err(SegmentError::Checksum("header"));
    }
    let mut b = &body[4..];
    if !matches!(b.get_u32(), VERSION_1 | VERSION) {
        return Err(SegmentError::Malformed("unknown version"));
    }
    Ok(Header {
        station: b.get_u64(),
        first_seq: b.get_u64(),
        last_seq: b.get_u64(),
        created_ns: b.get_u64(),
    })
}

/// How many bytes before the end of the object the footer starts, read from
/// the object's last bytes (`tail`, at least the trailer).
pub fn footer_span(tail: &[u8]) -> Result<usize, SegmentError> {
    trailer(tail).map(|(len, _)| len + TRAILER_LEN)
}

/// The footer's length and version, from the trailer at the end of `tail`.
fn trailer(tail: &[u8]) -> Result<(usize, u32), SegmentError> {
    if tail.len() < TRAILER_LEN {
        return Err(SegmentError::Malformed("object is shorter than a trailer"));
    }
    let mut t = &tail[tail.len() - TRAILER_LEN..];
    let _crc = t.get_u32();
    let len = t.get_u32() as usize;
    if &t[..END.len()] != END {
        return Err(SegmentError::Malformed("bad trailer"));
    }
    let version = match t[END.len()] {
        0 => VERSION_1,
        v if u32::from(v) == VERSION => VERSION,
        _ => return Err(SegmentError::Malformed("unknown footer version")),
    };
    Ok((len, version))
}

/// The footer's checked bytes (without the trailer) and its version.
fn footer_bytes(tail: &[u8]) -> Result<(&[u8], u32), SegmentError> {
    let (len, version) = trailer(tail)?;
    let span = len + TRAILER_LEN;
    if tail.len() < span {
        return Err(SegmentError::Malformed(
            "footer is longer than the bytes read",
        ));
    }
    let start = tail.len() - span;
    let footer = &tail[start..tail.len() - TRAILER_LEN];
    let crc = (&tail[tail.len() - TRAILER_LEN..]).get_u32();
    if crc32c::crc32c(footer) != crc {
        return Err(SegmentError::Checksum("footer"));
    }
    // Totals, and for version 2 the subject count.
    let fixed = if version == VERSION_1 { 20 } else { 24 };
    if footer.len() < fixed {
        return Err(SegmentError::Malformed("footer is too short"));
    }
    Ok((footer, version))
}

/// A footer's parts.
struct FooterParts<'a> {
    /// The block index.
    index: &'a [u8],
    /// The subject summary (empty for version 1).
    summary: &'a [u8],
    /// Block count, messages, bytes.
    totals: &'a [u8],
}

/// Splits a checked footer into its parts.
fn footer_parts(footer: &[u8], version: u32) -> Result<FooterParts<'_>, SegmentError> {
    let (rest, totals) = footer.split_at(footer.len() - 20);
    let count = (&totals[..4]).get_u32() as usize;
    let index_len = count
        .checked_mul(INDEX_ENTRY)
        .filter(|n| *n <= rest.len())
        .ok_or(SegmentError::Malformed(
            "footer length does not match its block count",
        ))?;
    let (index, summary) = rest.split_at(index_len);
    if version == VERSION_1 && !summary.is_empty() {
        return Err(SegmentError::Malformed(
            "footer length does not match its block count",
        ));
    }
    Ok(FooterParts {
        index,
        summary,
        totals,
    })
}

/// Decodes the footer from the object's last bytes (`tail`, which must hold
/// [`footer_span`] bytes; an object's size is `object_len`). The subject
/// summary is checked (by the footer's checksum) but not decoded.
pub fn decode_footer(tail: &[u8], object_len: u64) -> Result<Footer, SegmentError> {
    let span = footer_span(tail)?;
    let (footer, version) = footer_bytes(tail)?;
    let FooterParts {
        index, mut totals, ..
    } = footer_parts(footer, version)?;
    let count = totals.get_u32() as usize;
    let messages = totals.get_u64();
    let bytes = totals.get_u64();
    let blocks_end = object_len.saturating_sub(span as u64);
    let mut b = index;
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let r = BlockRef {
            first_seq: b.get_u64(),
            last_seq: b.get_u64(),
            min_time_ns: b.get_u64(),
            max_time_ns: b.get_u64(),
            offset: b.get_u64(),
            len: b.get_u32(),
            count: b.get_u32(),
        };
        if r.offset < HEADER_LEN as u64 || r.offset + u64::from(r.len) > blocks_end {
            return Err(SegmentError::Malformed("a block lies outside the object"));
        }
        blocks.push(r);
    }
    Ok(Footer {
        blocks,
        messages,
        bytes,
        version,
    })
}

/// Decodes the subject summary from the object's last bytes (as
/// [`decode_footer`] takes them). `None`: a version 1 segment, which has none.
pub fn decode_summary(tail: &[u8]) -> Result<Option<SubjectSummary>, SegmentError> {
    let (footer, version) = footer_bytes(tail)?;
    if version == VERSION_1 {
        return Ok(None);
    }
    SubjectSummary::read(footer_parts(footer, version)?.summary).map(Some)
}

/// Decodes one block (its bytes, as the footer locates them) into records.
pub fn decode_block(block: &BlockRef, bytes: &[u8]) -> Result<Vec<Record>, SegmentError> {
    if bytes.len() != block.len as usize || bytes.len() < 8 {
        return Err(SegmentError::Malformed(
            "block length differs from its index entry",
        ));
    }
    let (mut crc, body) = bytes.split_at(4);
    if crc32c::crc32c(body) != crc.get_u32() {
        return Err(SegmentError::Checksum("block"));
    }
    let mut b = body;
    let count = b.get_u32();
    if count != block.count {
        return Err(SegmentError::Malformed(
            "block count differs from its index entry",
        ));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        if b.remaining() < 12 {
            return Err(SegmentError::Malformed("block ends inside a record"));
        }
        let seq = b.get_u64();
        let len = b.get_u32() as usize;
        if b.remaining() < len {
            return Err(SegmentError::Malformed("block ends inside a record"));
        }
        out.push(record::decode(seq, &b[..len])?);
        b.advance(len);
    }
    Ok(out)
}

/// A whole segment's records (tests and tools).
pub fn decode_all(object: &Bytes) -> Result<(Header, Vec<Record>), SegmentError> {
    let header = decode_header(object)?;
    let footer = decode_footer(object, object.len() as u64)?;
    let mut out = Vec::new();
    for b in &footer.blocks {
        let start = b.offset as usize;
        out.extend(decode_block(b, &object[start..start + b.len as usize])?);
    }
    Ok((header, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            time_ns: 1_000 + seq * 10,
            subject: Bytes::from(format!("orders.{}", seq % 7)),
            headers: None,
            payload: Bytes::from(vec![(seq % 251) as u8; 100 + (seq as usize % 50)]),
            lineage: Bytes::new(),
        }
    }

    fn segment(n: u64, block: usize) -> (Vec<u8>, Footer) {
        let mut w = SegmentWriter::with_block_bytes(
            Header {
                station: 7,
                first_seq: 1,
                last_seq: n,
                created_ns: 42,
            },
            block,
        );
        for s in 1..=n {
            w.push(&record(s));
        }
        w.finish()
    }

    #[test]
    fn round_trip_through_blocks() {
        let (object, footer) = segment(500, 4096);
        assert!(footer.blocks.len() > 10, "{} blocks", footer.blocks.len());
        assert_eq!(footer.messages, 500);
        let object = Bytes::from(object);
        let (header, records) = decode_all(&object).expect("decodes");
        assert_eq!(header.station, 7);
        assert_eq!((header.first_seq, header.last_seq), (1, 500));
        assert_eq!(records, (1..=500).map(record).collect::<Vec<_>>());
        // The footer read from a suffix alone equals the writer's.
        let tail = &object[object.len() - 3000.min(object.len())..];
        assert_eq!(decode_footer(tail, object.len() as u64), Ok(footer.clone()));
        let b = footer.block_for(250).expect("block");
        assert!(b.first_seq <= 250 && b.last_seq >= 250);
        let got = decode_block(
            b,
            &object[b.offset as usize..(b.offset + u64::from(b.len)) as usize],
        )
        .expect("block decodes");
        assert!(got.iter().any(|r| r == &record(250)));
        let t = footer
            .block_at_time(record(300).time_ns)
            .expect("block by time");
        assert!(t.first_seq <= 300 && t.last_seq >= 300);
        assert!(footer.block_for(501).is_none());
    }

    #[test]
    fn footer_round_trips_with_its_subject_summary() {
        let mut w = SegmentWriter::with_block_bytes(
            Header {
                station: 7,
                first_seq: 1,
                last_seq: 500,
                created_ns: 42,
            },
            4096,
        );
        for s in 1..=500 {
            w.push(&record(s));
        }
        let (object, footer, summary) = w.finish_with_summary();
        assert_eq!(footer.version, 2);
        // orders.0 .. orders.6, in byte order, each with its last sequence
        // (the largest s <= 500 with s % 7 == k) and its count.
        let want: Vec<SubjectEntry> = (0..7u64)
            .map(|k| SubjectEntry {
                subject: Bytes::from(format!("orders.{k}")),
                last_seq: (1..=500).rev().find(|s| s % 7 == k).expect("one"),
                count: (1..=500u64).filter(|s| s % 7 == k).count() as u32,
            })
            .collect();
        assert_eq!(summary.subjects, want);
        assert_eq!(summary.get(b"orders.3"), Some(&want[3]));
        assert_eq!(summary.get(b"orders.9"), None);
        // Read back from a suffix of the object, as a reader does.
        let tail = &object[object.len() - 3000..];
        assert_eq!(decode_footer(tail, object.len() as u64), Ok(footer));
        assert_eq!(decode_summary(tail), Ok(Some(summary.clone())));
        // The station's copy in the local store round-trips, and is checked.
        let entry = summary.encode();
        assert_eq!(SubjectSummary::decode(&entry), Ok(summary));
        let mut bad = entry.clone();
        bad[9] ^= 1;
        assert_eq!(
            SubjectSummary::decode(&bad),
            Err(SegmentError::Checksum("subject summary entry"))
        );
        let records = decode_all(&Bytes::from(object)).expect("decodes").1;
        assert_eq!(records, (1..=500).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn a_version_1_segment_without_a_summary_still_reads() {
        let mut w = SegmentWriter::version_1(
            Header {
                station: 7,
                first_seq: 1,
                last_seq: 300,
                created_ns: 42,
            },
            4096,
        );
        for s in 1..=300 {
            w.push(&record(s));
        }
        let (object, footer, summary) = w.finish_with_summary();
        assert_eq!(footer.version, 1);
        assert!(summary.subjects.is_empty());
        // Byte for byte the format before the summary: header version 1, the
        // trailer "JSEGEND\0", a footer of 48 bytes per block and 20 of totals.
        assert_eq!(&object[4..8], &1u32.to_be_bytes());
        assert_eq!(&object[object.len() - 8..], b"JSEGEND\0");
        let footer_len = u32::from_be_bytes(
            object[object.len() - 12..object.len() - 8]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        assert_eq!(footer_len, footer.blocks.len() * 48 + 20);
        let tail = &object[object.len() - 3000..];
        assert_eq!(decode_footer(tail, object.len() as u64), Ok(footer));
        assert_eq!(decode_summary(tail), Ok(None));
        let (header, records) = decode_all(&Bytes::from(object)).expect("decodes");
        assert_eq!((header.first_seq, header.last_seq), (1, 300));
        assert_eq!(records, (1..=300).map(record).collect::<Vec<_>>());
    }

    #[test]
    fn a_flipped_summary_byte_is_an_error_never_another_summary() {
        let (object, _) = segment(60, 1024);
        let good = decode_summary(&object).expect("decodes");
        for i in 0..object.len() {
            let mut bad = object.clone();
            bad[i] ^= 0x20;
            if let Ok(got) = decode_summary(&bad) {
                assert_eq!(got, good, "byte {i} flipped gave another summary");
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_an_error_never_other_data() {
        let (object, _) = segment(40, 1024);
        let good = decode_all(&Bytes::from(object.clone())).expect("decodes").1;
        for i in 0..object.len() {
            let mut bad = object.clone();
            bad[i] ^= 0x20;
            match decode_all(&Bytes::from(bad)) {
                Err(_) => {}
                Ok((_, records)) => panic!(
                    "byte {i} flipped gave {} records back ({} intact)",
                    records.len(),
                    good.len()
                ),
            }
        }
    }

    #[test]
    fn truncated_or_foreign_objects_are_refused() {
        let (object, _) = segment(10, 1024);
        assert!(matches!(
            decode_footer(&object[..object.len() - 1], object.len() as u64 - 1),
            Err(SegmentError::Malformed(_))
        ));
        assert_eq!(
            decode_header(b"not a segment at all, not at all ..........."),
            Err(SegmentError::Malformed("bad magic"))
        );
        assert!(matches!(
            decode_footer(&object[object.len() - 20..], object.len() as u64),
            Err(SegmentError::Malformed(
                "footer is longer than the bytes read"
            ))
        ));
    }
}
