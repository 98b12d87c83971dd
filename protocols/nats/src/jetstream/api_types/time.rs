//! Go durations and RFC 3339 times.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Go durations and times
// ---------------------------------------------------------------------------------------

/// Format nanoseconds as Go's `time.Duration.String()` does: `0s`, `100ns`, `1.5µs`,
/// `2.5ms`, `1.5s`, `1m0s`, `2h0m0s`, `-3s`. Used in some nats-server texts.
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_owned();
    }
    let negative = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if u < 1_000_000_000 {
        if u < 1_000 {
            out.push_str(&format!("{u}ns"));
        } else if u < 1_000_000 {
            push_fraction(&mut out, u, 3);
            out.push_str("µs");
        } else {
            push_fraction(&mut out, u, 6);
            out.push_str("ms");
        }
        return out;
    }
    let seconds = u / 1_000_000_000;
    let minutes = seconds / 60;
    let hours = minutes / 60;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{}m", minutes % 60));
    }
    push_fraction(
        &mut out,
        (seconds % 60) * 1_000_000_000 + u % 1_000_000_000,
        9,
    );
    out.push('s');
    out
}

/// `value / 10^precision` with the fraction's trailing zeros (and a bare dot) removed.
pub(super) fn push_fraction(out: &mut String, value: u64, precision: u32) {
    let scale = 10u64.pow(precision);
    out.push_str(&(value / scale).to_string());
    let fraction = value % scale;
    if fraction != 0 {
        let digits = format!("{fraction:0width$}", width = precision as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// A string Go's `time.ParseDuration` rejects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time: invalid duration {0:?}")]
pub struct GoDurationError(pub String);

/// Parse a Go duration string (`time.ParseDuration`): an optional sign, then one or more
/// decimal numbers with a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), e.g. `1.5h`,
/// `2h45m`, `300ms`; a bare `0` is allowed. Returns nanoseconds.
pub fn parse_go_duration(input: &str) -> Result<i64, GoDurationError> {
    const LIMIT: u64 = 1 << 63;
    let fail = || GoDurationError(input.to_owned());
    let mut s = input.as_bytes();
    let mut negative = false;
    if let Some((&sign, rest)) = s.split_first()
        && (sign == b'-' || sign == b'+')
    {
        negative = sign == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(fail());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(fail());
        }
        // Integer part.
        let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &digit in &s[..int_len] {
            if whole > LIMIT / 10 {
                return Err(fail());
            }
            whole = whole * 10 + u64::from(digit - b'0');
            if whole > LIMIT {
                return Err(fail());
            }
        }
        s = &s[int_len..];
        // Fraction part.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut fraction_len = 0;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            fraction_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
            let mut overflow = false;
            for &digit in &s[..fraction_len] {
                if overflow {
                    continue;
                }
                if fraction > (LIMIT - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(digit - b'0');
                if next > LIMIT {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[fraction_len..];
        }
        if int_len == 0 && fraction_len == 0 {
            return Err(fail());
        }
        // Unit.
        let unit_len = s
            .iter()
            .position(|&b| b == b'.' || b.is_ascii_digit())
            .unwrap_or(s.len());
        let unit: u64 = match &s[..unit_len] {
            b"ns" => 1,
            b"us" => 1_000,
            b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => return Err(fail()),
        };
        s = &s[unit_len..];
        let mut value = whole
            .checked_mul(unit)
            .filter(|v| *v <= LIMIT)
            .ok_or_else(fail)?;
        if fraction > 0 {
            // Go computes the fractional part in float64 too.
            value = value.saturating_add((fraction as f64 * (unit as f64 / scale)) as u64);
            if value > LIMIT {
                return Err(fail());
            }
        }
        total = total
            .checked_add(value)
            .filter(|v| *v <= LIMIT)
            .ok_or_else(fail)?;
    }
    if negative {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| fail())
}

/// Format Unix nanoseconds as Go marshals a UTC `time.Time` (RFC 3339 with nanoseconds,
/// trailing zeros trimmed): `2024-01-02T03:04:05.123456789Z`, `2024-01-02T03:04:05Z`.
pub fn format_rfc3339_nanos(unix_nanos: i64) -> String {
    let seconds = unix_nanos.div_euclid(NANOS_PER_SEC);
    let nanos = unix_nanos.rem_euclid(NANOS_PER_SEC);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parse an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) into Unix
/// nanoseconds. `i128` so that [`GO_ZERO_TIME`] fits. Fraction digits past nine are
/// ignored.
pub fn parse_rfc3339_nanos(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut index = 19;
    let mut nanos: i64 = 0;
    if b[index] == b'.' {
        index += 1;
        let start = index;
        while index < b.len() && b[index].is_ascii_digit() {
            index += 1;
        }
        if index == start {
            return None;
        }
        for position in 0..9 {
            let digit = if start + position < index {
                i64::from(b[start + position] - b'0')
            } else {
                0
            };
            nanos = nanos * 10 + digit;
        }
    }
    let zone = b.get(index..)?;
    let offset_seconds: i64 = if zone == b"Z" {
        0
    } else if zone.len() == 6 && (zone[0] == b'+' || zone[0] == b'-') && zone[3] == b':' {
        let hours = digits(index + 1..index + 3)?;
        let minutes = digits(index + 4..index + 6)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        let offset = hours * 3600 + minutes * 60;
        if zone[0] == b'-' { -offset } else { offset }
    } else {
        return None;
    };
    let days = days_from_civil(year, month, day);
    let seconds = i128::from(days) * 86_400 + i128::from(hour * 3600 + minute * 60 + second)
        - i128::from(offset_seconds);
    Some(seconds * i128::from(NANOS_PER_SEC) + i128::from(nanos))
}

pub(super) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Proleptic Gregorian date of days since 1970-01-01.
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------
// base64 for Go []byte fields
// ---------------------------------------------------------------------------------------

pub(super) mod base64_bytes {
    //! Standard, padded base64 (Go `encoding/json` for `[]byte`).

    use bytes::Bytes;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(crate) fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }

    /// Decode; like Go, `\r` and `\n` are ignored and padding is required.
    pub(crate) fn decode(input: &str) -> Result<Vec<u8>, &'static str> {
        let clean: Vec<u8> = input
            .bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect();
        if !clean.len().is_multiple_of(4) {
            return Err("illegal base64 data: bad length");
        }
        let mut out = Vec::with_capacity(clean.len() / 4 * 3);
        let quads = clean.len() / 4;
        for (index, quad) in clean.chunks(4).enumerate() {
            let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
            if pad > 2 || (pad > 0 && index + 1 != quads) {
                return Err("illegal base64 data: bad padding");
            }
            let mut n: u32 = 0;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c).ok_or("illegal base64 data: bad character")?;
            }
            n <<= 6 * pad as u32;
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        Ok(out)
    }

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(Bytes::new()),
            Some(text) => decode(&text).map(Bytes::from).map_err(D::Error::custom),
        }
    }
}
