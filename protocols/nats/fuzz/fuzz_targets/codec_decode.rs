//! Differential fuzzing of `junction_nats::codec::NatsCodec`: a TCP stream can be
//! cut anywhere, so decoding must not depend on where the reads were split.
//!
//! Input layout: byte 0 picks the limits (bit 0 set: tight limits of a 32-byte
//! control line and 64-byte payload, so the limit checks are reachable with short
//! inputs; clear: the defaults), bytes 1..3 (little-endian u16) pick the split
//! point modulo the stream length + 1, and the rest is the client byte stream.
//!
//! The stream is decoded three ways with fresh codecs, the way `FramedRead` drives
//! a decoder (call `decode` until it returns `None` or an error, then append the
//! next read and go on):
//!
//! 1. whole, in one buffer;
//! 2. in two chunks, split at the chosen point;
//! 3. one byte at a time (streams of up to 512 bytes only, to bound the cost).
//!
//! All three must give the same operations in the same order, then the same
//! outcome: the same `FrameError`, or the same undecoded remainder.
#![no_main]

use bytes::{Bytes, BytesMut};
use junction_nats::codec::{CodecError, NatsCodec};
use junction_nats::frame::{ClientOp, FrameError, Limits};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The decoder wants more bytes; these were left in the buffer.
    NeedMore(Vec<u8>),
    /// The decoder refused the stream (the connection would close).
    Failed(FrameError),
}

fn decode_chunks<'a>(
    limits: Limits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<ClientOp<Bytes>>, End) {
    let mut codec = NatsCodec::new(limits);
    let mut buf = BytesMut::new();
    let mut ops = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(op)) => {
                    assert!(buf.len() < before, "an op consumed no bytes");
                    ops.push(op);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "None consumed bytes");
                    break;
                }
                Err(CodecError::Frame(e)) => return (ops, End::Failed(e)),
                Err(e) => panic!("decode returned a non-frame error: {e}"),
            }
        }
    }
    (ops, End::NeedMore(buf.to_vec()))
}

fn assert_same(
    what: &str,
    whole: &(Vec<ClientOp<Bytes>>, End),
    other: &(Vec<ClientOp<Bytes>>, End),
) {
    assert_eq!(whole.0.len(), other.0.len(), "{what}: op count differs");
    for (i, (a, b)) in whole.0.iter().zip(&other.0).enumerate() {
        assert_eq!(a, b, "{what}: op {i} differs");
    }
    assert_eq!(whole.1, other.1, "{what}: outcome differs");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let limits = if data[0] & 1 == 1 {
        Limits {
            max_control_line: 32,
            max_payload: 64,
        }
    } else {
        Limits::default()
    };
    let stream = &data[3..];
    let split = usize::from(u16::from_le_bytes([data[1], data[2]])) % (stream.len() + 1);

    let whole = decode_chunks(limits, [stream]);
    let (a, b) = stream.split_at(split);
    let two = decode_chunks(limits, [a, b]);
    assert_same(&format!("split at {split}"), &whole, &two);

    if stream.len() <= 512 {
        let bytewise = decode_chunks(limits, stream.chunks(1));
        assert_same("byte at a time", &whole, &bytewise);
    }
});
