//! Fuzzes the sans-I/O NATS client parser, `junction_nats::frame::parse`.
//!
//! The input is treated as a client byte stream. It is parsed repeatedly from the
//! front, advancing by the `used` length of each operation, once with the default
//! limits and once with tight limits (so the control-line and payload limits are
//! reachable with short inputs). For every step it asserts:
//!
//! - `used > 0` and `used <= remaining` (no stalls, no over-reads);
//! - `Incomplete` consumes nothing: the loop stops with the bytes untouched, and
//!   re-parsing the same bytes gives `Incomplete` again (the parser is pure);
//! - every field of an operation is a sub-slice of the bytes it used;
//! - for `PUB`/`HPUB`, the payload (headers included) starts right after the
//!   control line, its length equals the size on the control line and is within
//!   `max_payload`, it is followed by `\r\n`, and `used` ends just after that;
//!   `HPUB` headers and payload are adjacent, and the header size matches;
//! - for every other operation, `used` is the control line including its `\n`;
//! - subjects, reply subjects, queue groups and sids are non-empty and hold no
//!   space, tab or line break;
//! - the operation is decided by its own bytes: parsing exactly `used` bytes gives
//!   the same operation, and one byte fewer never gives an operation;
//! - `HPUB` header blocks go through `encode::parse_header_block` without panicking,
//!   and a block it accepts survives `header_block` -> `parse_header_block` intact.
#![no_main]

use junction_nats::encode::{header_block, parse_header_block};
use junction_nats::frame::{parse, parse_size, ClientOp, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

/// Where `part` sits inside `base`, asserting it is a sub-slice.
fn offset_in(base: &[u8], part: &[u8]) -> usize {
    let b = base.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    assert!(
        p >= b && p + part.len() <= b + base.len(),
        "field is not a sub-slice of the parsed bytes"
    );
    p - b
}

fn assert_token(base: &[u8], tok: &[u8], what: &str) {
    offset_in(base, tok);
    assert!(!tok.is_empty(), "empty {what}");
    assert!(
        !tok.iter().any(|c| matches!(c, b' ' | b'\t' | b'\n')),
        "{what} holds whitespace: {tok:?}"
    );
    // A `\r` inside a token is accepted (only a `\r` right before the `\n` ends
    // the line), as in nats-server.
}

/// The control line (without `\n`, with any final `\r` removed) and its length
/// including the `\n`.
fn control_line(buf: &[u8]) -> (&[u8], usize) {
    let nl = buf
        .iter()
        .position(|&c| c == b'\n')
        .expect("an op needs a newline");
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    (line, nl + 1)
}

/// The last whitespace-separated argument on the control line.
fn last_arg(line: &[u8]) -> &[u8] {
    line.split(|&c| c == b' ' || c == b'\t')
        .rfind(|t| !t.is_empty())
        .unwrap_or_default()
}

fn second_last_arg(line: &[u8]) -> &[u8] {
    let toks: Vec<&[u8]> = line
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|t| !t.is_empty())
        .collect();
    toks[toks.len() - 2]
}

fn check_op(buf: &[u8], op: &ClientOp<&[u8]>, used: usize, limits: &Limits) {
    let (line, line_len) = control_line(buf);
    assert!(line_len <= used, "op used less than its control line");
    match op {
        ClientOp::Pub {
            subject,
            reply,
            payload,
        } => {
            assert_token(buf, subject, "subject");
            if let Some(r) = reply {
                assert_token(buf, r, "reply");
            }
            let start = offset_in(buf, payload);
            assert_eq!(start, line_len, "PUB payload does not follow the line");
            assert!(payload.len() <= limits.max_payload, "PUB over max_payload");
            assert_eq!(
                parse_size(last_arg(line)),
                Some(payload.len()),
                "PUB payload length differs from its size argument"
            );
            let end = start + payload.len();
            assert_eq!(&buf[end..end + 2], b"\r\n", "PUB payload without CRLF");
            assert_eq!(used, end + 2, "PUB used length");
        }
        ClientOp::Hpub {
            subject,
            reply,
            headers,
            payload,
        } => {
            assert_token(buf, subject, "subject");
            if let Some(r) = reply {
                assert_token(buf, r, "reply");
            }
            let hstart = offset_in(buf, headers);
            let pstart = offset_in(buf, payload);
            assert_eq!(hstart, line_len, "HPUB headers do not follow the line");
            assert_eq!(pstart, hstart + headers.len(), "HPUB headers/payload gap");
            let total = headers.len() + payload.len();
            assert!(total <= limits.max_payload, "HPUB over max_payload");
            assert_eq!(parse_size(last_arg(line)), Some(total), "HPUB total size");
            assert_eq!(
                parse_size(second_last_arg(line)),
                Some(headers.len()),
                "HPUB header size"
            );
            let end = pstart + payload.len();
            assert_eq!(&buf[end..end + 2], b"\r\n", "HPUB payload without CRLF");
            assert_eq!(used, end + 2, "HPUB used length");

            // The header block parser must not panic on anything, and what it
            // accepts must encode and re-parse to the same headers.
            if let Ok(h) = parse_header_block(headers) {
                let again = parse_header_block(&header_block(&h))
                    .expect("an encoded header block must parse");
                assert_eq!(h, again, "header block round trip changed the headers");
            }
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => {
            assert_token(buf, subject, "subject");
            if let Some(q) = queue {
                assert_token(buf, q, "queue");
            }
            assert_token(buf, sid, "sid");
            assert_eq!(used, line_len);
        }
        ClientOp::Unsub { sid, max } => {
            assert_token(buf, sid, "sid");
            if let Some(m) = max {
                assert!(*m < 1_000_000_000, "UNSUB max beyond 9 digits");
            }
            assert_eq!(used, line_len);
        }
        ClientOp::Connect(j) | ClientOp::Info(j) | ClientOp::Err(j) => {
            offset_in(buf, j);
            assert!(
                j.len() <= limits.max_control_line,
                "argument over the limit"
            );
            assert_eq!(used, line_len);
        }
        ClientOp::Ping | ClientOp::Pong | ClientOp::Ok => assert_eq!(used, line_len),
    }
}

fn run(data: &[u8], limits: &Limits) {
    let mut pos = 0;
    // Every op uses at least one byte, so this terminates; the bound is a backstop.
    for _ in 0..=data.len() {
        let rest = &data[pos..];
        match parse(rest, limits) {
            Ok(Parsed::Op(op, used)) => {
                assert!(used > 0, "op used zero bytes");
                assert!(used <= rest.len(), "op used {used} of {} bytes", rest.len());
                check_op(rest, &op, used, limits);
                // Same bytes, same op: nothing after `used` influenced it...
                match parse(&rest[..used], limits) {
                    Ok(Parsed::Op(op2, used2)) => {
                        assert_eq!(op, op2, "op changed when trailing bytes were cut");
                        assert_eq!(used, used2);
                    }
                    other => panic!("exact bytes of an op parse as {other:?}"),
                }
                // ...and it needed every one of them.
                assert!(
                    !matches!(parse(&rest[..used - 1], limits), Ok(Parsed::Op(..))),
                    "an op parsed from a strict prefix of its bytes"
                );
                pos += used;
                if pos == data.len() {
                    return;
                }
            }
            Ok(Parsed::Incomplete) => {
                // Incomplete consumes nothing and is stable: asking again about the
                // same bytes gives the same answer.
                assert_eq!(parse(rest, limits), Ok(Parsed::Incomplete));
                return;
            }
            Err(e) => {
                // Errors are deterministic too, and map to a client error or a
                // silent close without panicking.
                let _ = e.client_error();
                assert_eq!(parse(rest, limits), Err(e));
                return;
            }
        }
    }
    panic!("parser made no progress");
}

fuzz_target!(|data: &[u8]| {
    run(data, &Limits::default());
    run(
        data,
        &Limits {
            max_control_line: 32,
            max_payload: 64,
        },
    );
});
