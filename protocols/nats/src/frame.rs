//! The NATS wire format, client to server: a sans-I/O parser over byte slices.
//!
//! [`parse`] looks at the front of a buffer and either finds one whole operation,
//! says [`Parsed::Incomplete`] (not an error: read more bytes), or reports a
//! [`FrameError`]. It never allocates and never touches a socket, so it can be
//! tested byte by byte and fuzzed.
//!
//! Grammar notes, matching nats-server's parser:
//! - Operation names are case-insensitive.
//! - Arguments are separated by runs of spaces and tabs; trailing whitespace is fine.
//! - A line ends with `\n`; a `\r` before it is optional.
//! - `PUB`/`HPUB` payloads are followed by `\r\n`.

use nom::Parser;
use nom::bytes::complete::{take_till1, take_while1};
use nom::character::complete::space0;

/// Size limits the parser enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest control line (the op and its arguments), in bytes.
    pub max_control_line: usize,
    /// Largest payload (headers included), in bytes.
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_line: 4096,
            max_payload: 1024 * 1024,
        }
    }
}

/// One operation from a client. `T` is `&[u8]` when parsed in place and
/// [`bytes::Bytes`] once the connection owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp<T> {
    /// `CONNECT {json}`: the raw JSON.
    Connect(T),
    /// `PUB subject [reply] size`.
    Pub {
        /// Subject.
        subject: T,
        /// Reply subject.
        reply: Option<T>,
        /// Payload.
        payload: T,
    },
    /// `HPUB subject [reply] header_size total_size`.
    Hpub {
        /// Subject.
        subject: T,
        /// Reply subject.
        reply: Option<T>,
        /// The raw header block (`NATS/1.0\r\n...\r\n\r\n`).
        headers: T,
        /// Payload.
        payload: T,
    },
    /// `SUB subject [queue] sid`.
    Sub {
        /// Subject filter.
        subject: T,
        /// Queue group.
        queue: Option<T>,
        /// Client-chosen subscription id.
        sid: T,
    },
    /// `UNSUB sid [max]`.
    Unsub {
        /// Client-chosen subscription id.
        sid: T,
        /// Unsubscribe after this many messages in total.
        max: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK` (clients may send it; it is ignored).
    Ok,
    /// `-ERR ...` from the client.
    Err(T),
    /// `INFO {json}` from the client: the raw JSON.
    Info(T),
}

impl<T> ClientOp<T> {
    /// Converts every field with `f`.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> ClientOp<U> {
        match self {
            ClientOp::Connect(j) => ClientOp::Connect(f(j)),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => ClientOp::Pub {
                subject: f(subject),
                reply: reply.map(&mut f),
                payload: f(payload),
            },
            ClientOp::Hpub {
                subject,
                reply,
                headers,
                payload,
            } => ClientOp::Hpub {
                subject: f(subject),
                reply: reply.map(&mut f),
                headers: f(headers),
                payload: f(payload),
            },
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => ClientOp::Sub {
                subject: f(subject),
                queue: queue.map(&mut f),
                sid: f(sid),
            },
            ClientOp::Unsub { sid, max } => ClientOp::Unsub { sid: f(sid), max },
            ClientOp::Ping => ClientOp::Ping,
            ClientOp::Pong => ClientOp::Pong,
            ClientOp::Ok => ClientOp::Ok,
            ClientOp::Err(e) => ClientOp::Err(f(e)),
            ClientOp::Info(j) => ClientOp::Info(f(j)),
        }
    }
}

/// Why the bytes at the front of the buffer are not a valid operation. Each variant
/// is malformed input and ends the connection; [`FrameError::client_error`] says
/// which `-ERR` text (if any) nats-server sends first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The operation name is not one a client may send.
    #[error("unknown protocol operation")]
    UnknownOperation,
    /// The control line is longer than [`Limits::max_control_line`].
    #[error("maximum control line exceeded")]
    ControlLineTooLong,
    /// The announced payload is larger than [`Limits::max_payload`].
    #[error("maximum payload violation")]
    PayloadTooLarge,
    /// The arguments do not fit the operation (count, or a size that is not a number).
    #[error("invalid arguments for {0}")]
    InvalidArguments(&'static str),
    /// The payload was not followed by `\r\n`.
    #[error("payload not followed by CRLF")]
    MissingPayloadTrailer,
}

impl FrameError {
    /// The `-ERR` text nats-server sends for this error, or `None` where it closes
    /// the connection without one (bad argument counts and sizes).
    pub fn client_error(&self) -> Option<&'static str> {
        match self {
            FrameError::UnknownOperation | FrameError::MissingPayloadTrailer => {
                Some("Unknown Protocol Operation")
            }
            FrameError::ControlLineTooLong => Some("maximum control line exceeded"),
            FrameError::PayloadTooLarge => Some("Maximum Payload Violation"),
            FrameError::InvalidArguments(_) => None,
        }
    }
}

/// What [`parse`] found at the front of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// One operation, and how many bytes it used.
    Op(ClientOp<&'a [u8]>, usize),
    /// The buffer holds only part of an operation.
    Incomplete,
}

const MAX_ARGS: usize = 5;

struct Args<'a> {
    items: [&'a [u8]; MAX_ARGS],
    len: usize,
}

impl<'a> Args<'a> {
    fn get(&self, i: usize) -> &'a [u8] {
        self.items[i]
    }
}

fn split_args<'a>(mut input: &'a [u8], op: &'static str) -> Result<Args<'a>, FrameError> {
    let mut args = Args {
        items: [&[]; MAX_ARGS],
        len: 0,
    };
    loop {
        let (rest, _) = space0::<_, nom::error::Error<&[u8]>>(input)
            .map_err(|_| FrameError::InvalidArguments(op))?;
        if rest.is_empty() {
            return Ok(args);
        }
        let (rest, token) =
            take_till1::<_, _, nom::error::Error<&[u8]>>(|c| c == b' ' || c == b'\t')
                .parse(rest)
                .map_err(|_| FrameError::InvalidArguments(op))?;
        if args.len == MAX_ARGS {
            return Err(FrameError::InvalidArguments(op));
        }
        args.items[args.len] = token;
        args.len += 1;
        input = rest;
    }
}

/// Parses a decimal size. Anything else is refused, as nats-server refuses it.
pub fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0usize, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + usize::from(d - b'0'))
    })
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'+' || c == b'-'
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn op_name(line: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    take_while1::<_, _, nom::error::Error<&[u8]>>(is_name_char)
        .parse(line)
        .map_err(|_| FrameError::UnknownOperation)
}

/// Every operation name a client may send.
const CLIENT_OPS: [&[u8]; 10] = [
    b"CONNECT", b"PUB", b"HPUB", b"SUB", b"UNSUB", b"PING", b"PONG", b"+OK", b"-ERR", b"INFO",
];

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// PING, PONG and +OK ignore whatever follows them on the line, as nats-server does:
/// once their last letter is read, every byte up to `\n` is skipped, so `PINGX` is a
/// PING (while `PINX` is an error).
fn is_ping_like(name: &[u8]) -> bool {
    [&b"PING"[..], b"PONG", b"+OK"]
        .iter()
        .any(|op| starts_with_ci(name, op))
}

/// Checks a line whose `\n` has not arrived yet. It fails as soon as the bytes so far
/// make the complete line fail, with the same error, and otherwise says read more.
/// Running the complete line's checks (rather than a looser length test) keeps the
/// outcome independent of where the stream was split into reads, and still bounds
/// what is buffered: the op name, `max_control_line` blanks and `max_control_line`
/// of arguments. (PING, PONG and +OK lines are not bounded: their tails are ignored.)
fn check_partial_line(buf: &[u8], limits: &Limits) -> Result<(), FrameError> {
    let n = buf.iter().take_while(|&&c| is_name_char(c)).count();
    let (name, rest) = buf.split_at(n);
    if is_ping_like(name) {
        return check_ping_tail(name, rest, limits);
    }
    if rest.is_empty() {
        // The name may still be growing: fail once no client operation starts so.
        let possible = CLIENT_OPS
            .iter()
            .any(|op| op.len() >= n && op[..n].eq_ignore_ascii_case(name));
        return if possible {
            Ok(())
        } else {
            Err(FrameError::UnknownOperation)
        };
    }
    if name.is_empty() {
        return Err(FrameError::UnknownOperation);
    }
    // A final `\r` may be the start of the line's `\r\n`: leave it out of the count.
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    check_line_head(name, rest, limits).map(|_| ())
}

/// PING, PONG and +OK ignore their tails, but a tail longer than `max_control_line`
/// is refused (partial or complete alike), so an endless `PING xxx...` cannot grow the
/// read buffer without bound. nats-server skips such tails unbuffered instead.
fn check_ping_tail(name: &[u8], rest: &[u8], limits: &Limits) -> Result<(), FrameError> {
    let tail = name.len().saturating_sub(4) + rest.len();
    if tail > limits.max_control_line {
        Err(FrameError::ControlLineTooLong)
    } else {
        Ok(())
    }
}

/// The checks every line except PING, PONG and +OK goes through, in this order,
/// whether complete (`rest` is the rest of the line) or not (`rest` is what has
/// arrived so far of it). Returns the arguments.
fn check_line_head<'a>(
    name: &[u8],
    rest: &'a [u8],
    limits: &Limits,
) -> Result<&'a [u8], FrameError> {
    if !CLIENT_OPS.iter().any(|op| name.eq_ignore_ascii_case(op)) {
        return Err(FrameError::UnknownOperation);
    }
    let upper = |expected: &[u8]| name.eq_ignore_ascii_case(expected);
    let separated = rest.first().is_some_and(|&c| is_blank(c));
    // CONNECT and INFO may be followed directly by their JSON; every other op needs
    // at least one space or tab before its arguments.
    if !(separated || upper(b"CONNECT") || upper(b"INFO")) {
        return Err(FrameError::UnknownOperation);
    }
    let blanks = rest.iter().take_while(|&&c| is_blank(c)).count();
    let args = &rest[blanks..];
    // nats-server measures only the arguments; the run of blanks before them is
    // capped too, so that a line of blanks cannot be buffered without end.
    if blanks > limits.max_control_line || args.len() > limits.max_control_line {
        return Err(FrameError::ControlLineTooLong);
    }
    Ok(args)
}

/// Finds one whole client operation at the front of `buf`.
pub fn parse<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, FrameError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        check_partial_line(buf, limits)?;
        return Ok(Parsed::Incomplete);
    };
    let line = match buf[..nl].last() {
        Some(b'\r') => &buf[..nl - 1],
        _ => &buf[..nl],
    };
    let after_line = nl + 1;
    let (rest, name) = op_name(line)?;
    let upper = |expected: &[u8]| name.eq_ignore_ascii_case(expected);
    if is_ping_like(name) {
        check_ping_tail(name, rest, limits)?;
        let op = if starts_with_ci(name, b"PING") {
            ClientOp::Ping
        } else if starts_with_ci(name, b"PONG") {
            ClientOp::Pong
        } else {
            ClientOp::Ok
        };
        return Ok(Parsed::Op(op, after_line));
    }
    let args = check_line_head(name, rest, limits)?;
    if upper(b"PUB") {
        let a = split_args(args, "PUB")?;
        let (subject, reply, size) = match a.len {
            2 => (a.get(0), None, a.get(1)),
            3 => (a.get(0), Some(a.get(1)), a.get(2)),
            _ => return Err(FrameError::InvalidArguments("PUB")),
        };
        let size = parse_size(size).ok_or(FrameError::InvalidArguments("PUB"))?;
        if size > limits.max_payload {
            return Err(FrameError::PayloadTooLarge);
        }
        let Some(payload) = payload(buf, after_line, size)? else {
            return Ok(Parsed::Incomplete);
        };
        let used = after_line + size + 2;
        return Ok(Parsed::Op(
            ClientOp::Pub {
                subject,
                reply,
                payload,
            },
            used,
        ));
    }
    if upper(b"HPUB") {
        let a = split_args(args, "HPUB")?;
        let (subject, reply, hsize, tsize) = match a.len {
            3 => (a.get(0), None, a.get(1), a.get(2)),
            4 => (a.get(0), Some(a.get(1)), a.get(2), a.get(3)),
            _ => return Err(FrameError::InvalidArguments("HPUB")),
        };
        let hsize = parse_size(hsize).ok_or(FrameError::InvalidArguments("HPUB"))?;
        let tsize = parse_size(tsize).ok_or(FrameError::InvalidArguments("HPUB"))?;
        if hsize > tsize {
            return Err(FrameError::InvalidArguments("HPUB"));
        }
        if tsize > limits.max_payload {
            return Err(FrameError::PayloadTooLarge);
        }
        let Some(all) = payload(buf, after_line, tsize)? else {
            return Ok(Parsed::Incomplete);
        };
        let used = after_line + tsize + 2;
        return Ok(Parsed::Op(
            ClientOp::Hpub {
                subject,
                reply,
                headers: &all[..hsize],
                payload: &all[hsize..],
            },
            used,
        ));
    }
    let op = if upper(b"SUB") {
        let a = split_args(args, "SUB")?;
        match a.len {
            2 => ClientOp::Sub {
                subject: a.get(0),
                queue: None,
                sid: a.get(1),
            },
            3 => ClientOp::Sub {
                subject: a.get(0),
                queue: Some(a.get(1)),
                sid: a.get(2),
            },
            _ => return Err(FrameError::InvalidArguments("SUB")),
        }
    } else if upper(b"UNSUB") {
        let a = split_args(args, "UNSUB")?;
        match a.len {
            1 => ClientOp::Unsub {
                sid: a.get(0),
                max: None,
            },
            2 => ClientOp::Unsub {
                sid: a.get(0),
                // nats-server reads a bad max as -1, which removes the
                // subscription at once, as 0 does.
                max: Some(parse_size(a.get(1)).map_or(0, |n| n as u64)),
            },
            _ => return Err(FrameError::InvalidArguments("UNSUB")),
        }
    } else if upper(b"CONNECT") {
        ClientOp::Connect(trim_end(args))
    } else if upper(b"INFO") {
        ClientOp::Info(trim_end(args))
    } else if upper(b"-ERR") {
        ClientOp::Err(trim_end(args))
    } else {
        return Err(FrameError::UnknownOperation);
    };
    Ok(Parsed::Op(op, after_line))
}

fn trim_end(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |p| p + 1);
    &s[..end]
}

/// The payload of `size` bytes starting at `start`, once it and its `\r\n` trailer
/// are buffered.
fn payload(buf: &[u8], start: usize, size: usize) -> Result<Option<&[u8]>, FrameError> {
    let end = start + size;
    if buf.len() < end + 2 {
        // Fail early if the bytes already buffered past the payload are wrong.
        if buf.len() > end && buf[end] != b'\r' {
            return Err(FrameError::MissingPayloadTrailer);
        }
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(FrameError::MissingPayloadTrailer);
    }
    Ok(Some(&buf[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &[u8]) -> (ClientOp<&[u8]>, usize) {
        match parse(input, &Limits::default()).unwrap() {
            Parsed::Op(op, n) => (op, n),
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn pub_with_and_without_reply() {
        let (op, n) = one(b"PUB foo 5\r\nhello\r\nPING\r\n");
        assert_eq!(n, 18);
        assert_eq!(
            op,
            ClientOp::Pub {
                subject: &b"foo"[..],
                reply: None,
                payload: &b"hello"[..]
            }
        );
        let (op, _) = one(b"pub\tfoo   bar\t 0  \r\n\r\n");
        assert_eq!(
            op,
            ClientOp::Pub {
                subject: &b"foo"[..],
                reply: Some(&b"bar"[..]),
                payload: &b""[..]
            }
        );
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let l = Limits::default();
        assert_eq!(parse(b"PU", &l), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PUB foo 5\r\nhel", &l), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PUB foo 5\r\nhello\r", &l), Ok(Parsed::Incomplete));
    }

    #[test]
    fn hpub_splits_headers() {
        let (op, _) = one(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
        assert_eq!(
            op,
            ClientOp::Hpub {
                subject: &b"foo"[..],
                reply: None,
                headers: &b"NATS/1.0\r\n\r\n"[..],
                payload: &b"hi"[..]
            }
        );
    }

    #[test]
    fn errors() {
        let l = Limits {
            max_control_line: 16,
            max_payload: 4,
        };
        assert_eq!(parse(b"FOO\r\n", &l), Err(FrameError::UnknownOperation));
        assert_eq!(parse(b"SUB\r\n", &l), Err(FrameError::UnknownOperation));
        assert_eq!(parse(b" PING\r\n", &l), Err(FrameError::UnknownOperation));
        assert_eq!(parse(b"\r\n", &l), Err(FrameError::UnknownOperation));
        assert_eq!(
            parse(b"MSG foo 1 1\r\n", &l),
            Err(FrameError::UnknownOperation)
        );
        assert_eq!(
            parse(b"PUB foo\r\n", &l),
            Err(FrameError::InvalidArguments("PUB"))
        );
        assert_eq!(parse(b"PINX\r\n", &l), Err(FrameError::UnknownOperation));
        assert_eq!(
            parse(b"PUB foo 5\r\n", &l),
            Err(FrameError::PayloadTooLarge)
        );
        assert_eq!(
            parse(b"PUB foo x\r\n", &l),
            Err(FrameError::InvalidArguments("PUB"))
        );
        assert_eq!(
            parse(b"PUB foo 2\r\nabXY", &l),
            Err(FrameError::MissingPayloadTrailer)
        );
        assert_eq!(
            parse(b"SUB aaaaaaaaaaaaaaaaaaaaaaaaaaa", &l),
            Err(FrameError::ControlLineTooLong)
        );
    }

    /// Found by `fuzz/` (codec_decode): a partial line must fail exactly when, and
    /// exactly as, the complete line will.
    #[test]
    fn partial_lines_fail_like_complete_ones() {
        let l = Limits {
            max_control_line: 8,
            max_payload: 4,
        };
        // At the limit, cut before the `\n`: not an error yet, then accepted.
        assert_eq!(parse(b"CONNECT {\"a\":1}\r", &l), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PUB   foo 1\r", &l), Ok(Parsed::Incomplete));
        assert_eq!(parse(b"PUB   foo 1\r\nx\r\n", &l).map(|_| ()), Ok(()));
        // A bad name is refused as soon as it is known to be bad, whatever follows.
        assert_eq!(parse(b"\xe5", &l), Err(FrameError::UnknownOperation));
        assert_eq!(parse(b"PINX", &l), Err(FrameError::UnknownOperation));
        assert_eq!(
            parse(b"FOO aaaaaaaaaaaa", &l),
            Err(FrameError::UnknownOperation)
        );
        assert_eq!(
            parse(b"FOO aaaaaaaaaaaa\r\n", &l),
            Err(FrameError::UnknownOperation)
        );
        // Runs of blanks count against the limit too, so they cannot pile up.
        assert_eq!(
            parse(b"SUB          ", &l),
            Err(FrameError::ControlLineTooLong)
        );
        assert_eq!(parse(b"PING xx", &l), Ok(Parsed::Incomplete));
        let long = [b"PING ".as_slice(), &[b'x'; 100]].concat();
        assert_eq!(parse(&long, &l), Err(FrameError::ControlLineTooLong));
        let long_line = [long.as_slice(), b"\r\n"].concat();
        assert_eq!(parse(&long_line, &l), Err(FrameError::ControlLineTooLong));
    }

    #[test]
    fn sub_unsub_connect() {
        assert_eq!(
            one(b"SUB foo.* q 1\r\n").0,
            ClientOp::Sub {
                subject: &b"foo.*"[..],
                queue: Some(&b"q"[..]),
                sid: &b"1"[..]
            }
        );
        assert_eq!(
            one(b"unsub 1 5\n").0,
            ClientOp::Unsub {
                sid: &b"1"[..],
                max: Some(5)
            }
        );
        assert_eq!(
            one(b"CONNECT {\"verbose\": false} \r\n").0,
            ClientOp::Connect(&b"{\"verbose\": false}"[..])
        );
        assert_eq!(one(b"CONNECT{}\r\n").0, ClientOp::Connect(&b"{}"[..]));
        assert_eq!(one(b"PING xyz\r\n").0, ClientOp::Ping);
        assert_eq!(one(b"PINGX\r\n").0, ClientOp::Ping);
        assert_eq!(one(b"pongpong\r\n").0, ClientOp::Pong);
        assert_eq!(one(b"+OKAY\n").0, ClientOp::Ok);
        assert_eq!(
            one(b"UNSUB 1 x\r\n").0,
            ClientOp::Unsub {
                sid: &b"1"[..],
                max: Some(0)
            }
        );
    }
}
