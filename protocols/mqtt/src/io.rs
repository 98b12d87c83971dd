//! Packet I/O over a byte stream with buffers that cost nothing while idle.
//!
//! tokio-util's `Framed` keeps at least 8 KiB for reading and 8 KiB for writing per
//! connection, whatever it is asked for: 16 KiB per idle MQTT device. Here the read
//! buffer is only kept while a packet is incomplete (a small stack buffer takes each
//! read first), and the write buffer is released after a large flush.

use bytes::BytesMut;
use rmqtt_codec::error::{DecodeError, EncodeError};
use rmqtt_codec::{MqttCodec, MqttPacket};
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::codec::{Decoder, Encoder};

/// Read size when nothing is buffered: most packets from a device fit in it.
const SMALL_READ: usize = 512;
/// Read size while a packet is incomplete or traffic is flowing.
const LARGE_READ: usize = 16 * 1024;
/// Buffered output written out before more is encoded.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Buffers larger than this are released once empty.
const KEEP_CAPACITY: usize = 8 * 1024;

/// One read of at most [`SMALL_READ`] bytes appended to `rbuf`. The small
/// buffer lives on the stack only while the stream is polled, never in the
/// waiting future: an idle connection's task holds no read buffer at all.
async fn read_small<S: AsyncRead + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut small = [0u8; SMALL_READ];
        let mut buf = ReadBuf::new(&mut small);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                rbuf.extend_from_slice(buf.filled());
                Poll::Ready(Ok(buf.filled().len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A connection's packet reader and writer.
pub(crate) struct MqttIo<S> {
    stream: S,
    codec: MqttCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
    eof: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MqttIo<S> {
    pub fn new(stream: S, codec: MqttCodec) -> Self {
        MqttIo {
            stream,
            codec,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            eof: false,
        }
    }

    pub fn codec_mut(&mut self) -> &mut MqttCodec {
        &mut self.codec
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Bytes read and not yet decoded.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Bytes read and not yet decoded, to be changed in place.
    pub fn buffered_mut(&mut self) -> &mut [u8] {
        &mut self.rbuf
    }

    /// Reads once more into the buffer; false at the end of the stream or an error.
    /// Through the small stack buffer, as [`Self::next`] reads when nothing is
    /// buffered: the read buffer grows by what came, not by a whole read size
    /// it would keep for the connection's life.
    pub async fn read_more(&mut self) -> bool {
        if self.eof {
            return false;
        }
        match read_small(&mut self.stream, &mut self.rbuf).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(_) => true,
        }
    }

    /// The next packet; `None` at a clean end of stream. Cancel safe: a read that
    /// does not complete takes no bytes.
    pub async fn next(&mut self) -> Option<Result<(MqttPacket, u32), DecodeError>> {
        loop {
            if !self.rbuf.is_empty() {
                match self.codec.decode(&mut self.rbuf) {
                    Ok(Some(p)) => return Some(Ok(p)),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.eof {
                return if self.rbuf.is_empty() {
                    None
                } else {
                    Some(Err(DecodeError::Io(
                        "connection closed inside a packet".into(),
                    )))
                };
            }
            let read = if self.rbuf.is_empty() {
                if self.rbuf.capacity() > KEEP_CAPACITY {
                    self.rbuf = BytesMut::new();
                }
                read_small(&mut self.stream, &mut self.rbuf).await
            } else {
                self.rbuf.reserve(LARGE_READ);
                self.stream.read_buf(&mut self.rbuf).await
            };
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) => return Some(Err(DecodeError::from(e))),
            }
        }
    }

    /// Encodes a packet into the output buffer, writing the buffer out first when it
    /// is large.
    pub async fn feed(&mut self, packet: MqttPacket) -> Result<(), EncodeError> {
        if self.wbuf.len() >= WRITE_HIGH_WATER {
            self.write_out().await?;
        }
        self.codec.encode(packet, &mut self.wbuf)
    }

    /// Writes out `buf` (after what is buffered here) and flushes the stream;
    /// `buf` is left empty, its memory released when it grew large.
    pub async fn write_from(&mut self, buf: &mut BytesMut) -> std::io::Result<()> {
        self.write_out().await?;
        if !buf.is_empty() {
            self.stream.write_all(buf).await?;
            buf.clear();
        }
        if buf.capacity() > KEEP_CAPACITY {
            *buf = BytesMut::new();
        }
        self.stream.flush().await
    }

    /// Writes everything buffered and flushes the stream.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.write_out().await?;
        self.stream.flush().await
    }

    /// [`Self::feed`] then [`Self::flush`].
    pub async fn send(&mut self, packet: MqttPacket) -> Result<(), EncodeError> {
        self.feed(packet).await?;
        Ok(self.flush().await?)
    }

    /// Ends a connection the server disconnects for the client's error: sends
    /// what is buffered (the DISCONNECT), stops writing (a FIN after it), then
    /// reads and drops what the client is still sending, until it closes, for at
    /// most `limit` and `max_bytes`. Closed at once with bytes unread, the socket
    /// would send a reset, and a client still writing fails on it (broken pipe)
    /// before it reads the DISCONNECT's reason code.
    pub async fn shutdown_and_drain(&mut self, limit: std::time::Duration, max_bytes: usize) {
        if self.flush().await.is_err() || self.stream.shutdown().await.is_err() {
            return;
        }
        self.rbuf = BytesMut::new();
        let mut scratch = [0u8; SMALL_READ];
        let mut total = 0usize;
        let _ = tokio::time::timeout(limit, async {
            while total < max_bytes {
                match self.stream.read(&mut scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
        self.eof = true;
    }

    /// Flushes and shuts the stream down.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.stream.shutdown().await
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        if self.wbuf.capacity() > KEEP_CAPACITY {
            self.wbuf = BytesMut::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmqtt_codec::v3;
    use rmqtt_codec::version::VersionCodec;

    #[tokio::test]
    async fn reads_packets_split_and_batched_and_writes_them() {
        let (client, server) = tokio::io::duplex(64);
        let mut io = MqttIo::new(server, MqttCodec::Version(VersionCodec));
        let mut client = client;
        // CONNECT (3.1.1), then two PINGREQs in one write, then a PINGREQ in halves.
        let connect = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04test";
        client.write_all(connect).await.unwrap();
        match io.next().await {
            Some(Ok((MqttPacket::Version(_), _))) => {}
            other => panic!("{other:?}"),
        }
        *io.codec_mut() = MqttCodec::V3(v3::Codec::new(1024));
        assert!(matches!(
            io.next().await,
            Some(Ok((MqttPacket::V3(v3::Packet::Connect(_)), _)))
        ));
        client.write_all(b"\xc0\x00\xc0\x00\xc0").await.unwrap();
        for _ in 0..2 {
            assert!(matches!(
                io.next().await,
                Some(Ok((MqttPacket::V3(v3::Packet::PingRequest), _)))
            ));
        }
        client.write_all(b"\x00").await.unwrap();
        assert!(matches!(
            io.next().await,
            Some(Ok((MqttPacket::V3(v3::Packet::PingRequest), _)))
        ));
        io.send(MqttPacket::V3(v3::Packet::PingResponse))
            .await
            .unwrap();
        let mut out = [0u8; 2];
        client.read_exact(&mut out).await.unwrap();
        assert_eq!(out, [0xd0, 0x00]);
        // End of stream inside a packet is an error; at a boundary it is the end.
        client.write_all(b"\xc0").await.unwrap();
        drop(client);
        assert!(matches!(io.next().await, Some(Err(DecodeError::Io(_)))));
    }
}
