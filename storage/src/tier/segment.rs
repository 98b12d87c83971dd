//! The segment object: a sealed, contiguous, committed range of one station's log,
//! as one self-describing object in the bucket.
//!
//! ```text
//! header (44 bytes):
//!   b"JSEG" | u32 version=1 | u64 station_id | u64 first_seq | u64 last_seq
//!   | u64 created_ns | u32 crc32c of the 40 bytes before
//! blocks, each about BLOCK_BYTES:
//!   u32 crc32c of the rest of the block | u32 count
//!   | (u64 seq | u32 value_len | value)* count     (value: a record, version 2)
//! footer:
//!   (u64 first_seq | u64 last_seq | u64 min_time_ns | u64 max_time_ns
//!    | u64 offset | u32 len | u32 count)* block_count
//!   | u32 block_count | u64 messages | u64 bytes
//! trailer (16 bytes):
//!   u32 crc32c of the footer | u32 footer_len | b"JSEGEND\0"
//! ```
//!
//! All integers are big-endian. A reader takes the object's last
//! [`FOOTER_READ`] bytes in one suffix GET (the footer and trailer of any segment
//! up to a few thousand blocks), then fetches blocks by range. Every block and the
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
const END: &[u8; 8] = b"JSEGEND\0";
const VERSION: u32 = 1;
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

/// A segment's footer: its block index and totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// Blocks in sequence order.
    pub blocks: Vec<BlockRef>,
    /// Records in the segment.
    pub messages: u64,
    /// Their accounted bytes ([`Record::stored_size`]).
    pub bytes: u64,
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
}

impl SegmentWriter {
    /// A segment of `station` covering `first_seq..=last_seq`.
    pub fn new(header: Header) -> SegmentWriter {
        Self::with_block_bytes(header, BLOCK_BYTES)
    }

    /// [`SegmentWriter::new`] with another block size (tests use small ones).
    pub fn with_block_bytes(header: Header, block_bytes: usize) -> SegmentWriter {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.put_slice(MAGIC);
        out.put_u32(VERSION);
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
    pub fn finish(mut self) -> (Vec<u8>, Footer) {
        self.close_block();
        let mut footer = Vec::with_capacity(self.blocks.len() * INDEX_ENTRY + 20);
        for b in &self.blocks {
            footer.put_u64(b.first_seq);
            footer.put_u64(b.last_seq);
            footer.put_u64(b.min_time_ns);
            footer.put_u64(b.max_time_ns);
            footer.put_u64(b.offset);
            footer.put_u32(b.len);
            footer.put_u32(b.count);
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
        (
            self.out,
            Footer {
                blocks: self.blocks,
                messages: self.messages,
                bytes: self.bytes,
            },
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
    if b.get_u32() != VERSION {
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
    if tail.len() < TRAILER_LEN {
        return Err(SegmentError::Malformed("object is shorter than a trailer"));
    }
    let mut t = &tail[tail.len() - TRAILER_LEN..];
    let _crc = t.get_u32();
    let len = t.get_u32() as usize;
    if t != END {
        return Err(SegmentError::Malformed("bad trailer"));
    }
    Ok(len + TRAILER_LEN)
}

/// Decodes the footer from the object's last bytes (`tail`, which must hold
/// [`footer_span`] bytes; an object's size is `object_len`).
pub fn decode_footer(tail: &[u8], object_len: u64) -> Result<Footer, SegmentError> {
    let span = footer_span(tail)?;
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
    if footer.len() < 20 {
        return Err(SegmentError::Malformed("footer is too short"));
    }
    let mut totals = &footer[footer.len() - 20..];
    let count = totals.get_u32() as usize;
    let messages = totals.get_u64();
    let bytes = totals.get_u64();
    if count * INDEX_ENTRY != footer.len() - 20 {
        return Err(SegmentError::Malformed(
            "footer length does not match its block count",
        ));
    }
    let blocks_end = object_len.saturating_sub(span as u64);
    let mut b = &footer[..footer.len() - 20];
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
    })
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
