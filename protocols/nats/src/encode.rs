//! The NATS wire format, server to client: `INFO`, `MSG`, `HMSG`, `PING`, `PONG`,
//! `+OK` and `-ERR`, written into a byte buffer. Sans-I/O, like [`crate::frame`].

use bytes::{BufMut, BytesMut};
use junction_api::Headers;

/// `PING\r\n`
pub const PING: &[u8] = b"PING\r\n";
/// `PONG\r\n`
pub const PONG: &[u8] = b"PONG\r\n";
/// `+OK\r\n`
pub const OK: &[u8] = b"+OK\r\n";

/// Writes `-ERR 'text'\r\n`.
pub fn err(buf: &mut BytesMut, text: &str) {
    buf.put_slice(b"-ERR '");
    buf.put_slice(text.as_bytes());
    buf.put_slice(b"'\r\n");
}

/// Writes `INFO {json}\r\n`.
pub fn info(buf: &mut BytesMut, json: &[u8]) {
    buf.put_slice(b"INFO ");
    buf.put_slice(json);
    buf.put_slice(b"\r\n");
}

fn put_usize(buf: &mut BytesMut, n: usize) {
    let mut b = itoa::Buffer::new();
    buf.put_slice(b.format(n).as_bytes());
}

/// Writes `MSG subject sid [reply] size\r\npayload\r\n`.
pub fn msg(buf: &mut BytesMut, subject: &[u8], sid: &[u8], reply: Option<&[u8]>, payload: &[u8]) {
    buf.reserve(subject.len() + sid.len() + payload.len() + 32);
    buf.put_slice(b"MSG ");
    buf.put_slice(subject);
    buf.put_u8(b' ');
    buf.put_slice(sid);
    buf.put_u8(b' ');
    if let Some(reply) = reply {
        buf.put_slice(reply);
        buf.put_u8(b' ');
    }
    put_usize(buf, payload.len());
    buf.put_slice(b"\r\n");
    buf.put_slice(payload);
    buf.put_slice(b"\r\n");
}

/// Writes `HMSG subject sid [reply] header_size total_size\r\nheaders payload\r\n`.
pub fn hmsg(
    buf: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    buf.reserve(subject.len() + sid.len() + headers.len() + payload.len() + 40);
    buf.put_slice(b"HMSG ");
    buf.put_slice(subject);
    buf.put_u8(b' ');
    buf.put_slice(sid);
    buf.put_u8(b' ');
    if let Some(reply) = reply {
        buf.put_slice(reply);
        buf.put_u8(b' ');
    }
    put_usize(buf, headers.len());
    buf.put_u8(b' ');
    put_usize(buf, headers.len() + payload.len());
    buf.put_slice(b"\r\n");
    buf.put_slice(headers);
    buf.put_slice(payload);
    buf.put_slice(b"\r\n");
}

/// Encodes a header block: `NATS/1.0[ status[ description]]\r\n`, then one
/// `Name: value\r\n` per pair, then `\r\n`.
pub fn header_block(headers: &Headers) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_slice(b"NATS/1.0");
    if let Some(status) = headers.status() {
        buf.put_u8(b' ');
        put_usize(&mut buf, usize::from(status));
        if let Some(d) = headers.description() {
            buf.put_u8(b' ');
            buf.put_slice(d.as_bytes());
        }
    }
    buf.put_slice(b"\r\n");
    for (name, value) in headers.iter() {
        buf.put_slice(name.as_bytes());
        buf.put_slice(b": ");
        buf.put_slice(value.as_bytes());
        buf.put_slice(b"\r\n");
    }
    buf.put_slice(b"\r\n");
    buf
}

/// Why a header block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The block does not start with `NATS/1.0`.
    #[error("header block does not start with NATS/1.0")]
    MissingVersion,
    /// The block is not UTF-8 text.
    #[error("header block is not UTF-8")]
    NotText,
    /// A line has no `:`.
    #[error("header line without ':'")]
    MissingColon,
}

/// Reads a header block as sent in `HPUB`.
pub fn parse_header_block(block: &[u8]) -> Result<Headers, HeaderError> {
    let text = std::str::from_utf8(block).map_err(|_| HeaderError::NotText)?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let status_part = first
        .strip_prefix("NATS/1.0")
        .ok_or(HeaderError::MissingVersion)?;
    let mut headers = Headers::new();
    let status_part = status_part.trim();
    if !status_part.is_empty() {
        let (code, desc) = match status_part.split_once(' ') {
            Some((c, d)) => (c, Some(d.trim().to_string())),
            None => (status_part, None),
        };
        if let Ok(code) = code.parse::<u16>() {
            headers.set_status(Some(code), desc.filter(|d| !d.is_empty()));
        }
    }
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(HeaderError::MissingColon)?;
        headers.append(name.trim(), value.trim());
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_and_hmsg_bytes() {
        let mut b = BytesMut::new();
        msg(&mut b, b"foo", b"1", None, b"hi");
        msg(&mut b, b"foo", b"1", Some(b"r"), b"");
        assert_eq!(&b[..], b"MSG foo 1 2\r\nhi\r\nMSG foo 1 r 0\r\n\r\n");
        let mut b = BytesMut::new();
        hmsg(&mut b, b"foo", b"9", Some(b"r"), b"NATS/1.0\r\n\r\n", b"x");
        assert_eq!(&b[..], b"HMSG foo 9 r 12 13\r\nNATS/1.0\r\n\r\nx\r\n");
    }

    #[test]
    fn header_round_trip() {
        let block = b"NATS/1.0\r\nA: 1\r\nb: two words\r\nA: 3\r\n\r\n";
        let h = parse_header_block(block).unwrap();
        assert_eq!(h.get_all("a").collect::<Vec<_>>(), vec!["1", "3"]);
        assert_eq!(&header_block(&h)[..], &block[..]);
        let s = parse_header_block(b"NATS/1.0 503\r\n\r\n").unwrap();
        assert_eq!(s.status(), Some(503));
        assert_eq!(&header_block(&s)[..], b"NATS/1.0 503\r\n\r\n");
        let s = parse_header_block(b"NATS/1.0 408 Request Timeout\r\n\r\n").unwrap();
        assert_eq!(s.description(), Some("Request Timeout"));
    }
}
