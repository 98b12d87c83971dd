//! A `tokio-util` [`Decoder`] around the sans-I/O [`frame::parse`](crate::frame::parse).
//!
//! The decoder hands out owned operations whose fields are [`Bytes`] slices of the
//! read buffer: subjects and payloads are never copied.

use crate::frame::{self, ClientOp, FrameError, Limits, Parsed};
use bytes::{Bytes, BytesMut};
use std::ops::Range;
use tokio_util::codec::Decoder;

/// Decodes client operations.
#[derive(Debug, Clone, Copy, Default)]
pub struct NatsCodec {
    limits: Limits,
}

impl NatsCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        NatsCodec { limits }
    }
}

/// Errors from [`NatsCodec`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a valid operation.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn range_of(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

impl Decoder for NatsCodec {
    type Item = ClientOp<Bytes>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let (ranges, used) = match frame::parse(src, &self.limits)? {
            Parsed::Incomplete => return Ok(None),
            Parsed::Op(op, used) => (op.map(|part| range_of(src, part)), used),
        };
        let frame = src.split_to(used).freeze();
        Ok(Some(ranges.map(|r| frame.slice(r))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ops_in_sequence_without_copying() {
        let mut codec = NatsCodec::default();
        let mut buf = BytesMut::from(&b"PUB a 2\r\nhi\r\nSUB b 1\r\nPI"[..]);
        let op = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            op,
            ClientOp::Pub {
                subject: Bytes::from_static(b"a"),
                reply: None,
                payload: Bytes::from_static(b"hi")
            }
        );
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(ClientOp::Sub { .. })
        ));
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(ClientOp::Ping));
    }
}
