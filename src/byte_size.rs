//! Sizes in bytes as configuration files write them: `1048576`, `512K`, `10G`,
//! `1MB`, `1GiB`.
//!
//! The suffixes are nats-server's (its `conf/parse.go`), so that a size means
//! the same in Junction's TOML and in a nats-server `.conf` file: `K`, `M`,
//! `G`, `T`, `P`, `E` are powers of 1000; `KB`/`Ki`/`KiB`, `MB`/`Mi`/`MiB`, …
//! are powers of 1024. Suffixes are case-insensitive and may follow a space.
//! This module owns the parsing only; what a size limits is its caller's.

use serde::Deserialize;

/// The bytes `text` names, or why it names none. An integer with no suffix is
/// bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (bytes, or a number with K, MB, GiB, …)"))?;
    let multiplier: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1000,
        "kb" | "ki" | "kib" => 1 << 10,
        "m" => 1000_u64.pow(2),
        "mb" | "mi" | "mib" => 1 << 20,
        "g" => 1000_u64.pow(3),
        "gb" | "gi" | "gib" => 1 << 30,
        "t" => 1000_u64.pow(4),
        "tb" | "ti" | "tib" => 1 << 40,
        "p" => 1000_u64.pow(5),
        "pb" | "pi" | "pib" => 1 << 50,
        "e" => 1000_u64.pow(6),
        "eb" | "ei" | "eib" => 1 << 60,
        other => {
            return Err(format!(
                "'{text}': unknown size suffix '{other}' (K, M, G, T are powers of 1000; KB/KiB, MB/MiB, GB/GiB, TB/TiB powers of 1024)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large a size"))
}

/// Serde: an optional size, an integer of bytes or a string [`parse`] reads.
/// `-1` means none (nats-server's "unlimited"), as does leaving it out.
pub fn optional<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(i64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None | Some(Raw::Bytes(-1)) => Ok(None),
        Some(Raw::Bytes(n)) => u64::try_from(n).map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{n} is not a size (bytes, or -1 for no limit)"))
        }),
        Some(Raw::Text(t)) => parse(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_mean_what_they_mean_to_nats_server() {
        assert_eq!(parse("1048576"), Ok(1_048_576));
        assert_eq!(parse("512K"), Ok(512_000));
        assert_eq!(parse("512k"), Ok(512_000));
        assert_eq!(parse("1M"), Ok(1_000_000));
        assert_eq!(parse("10G"), Ok(10_000_000_000));
        assert_eq!(parse("1KB"), Ok(1024));
        assert_eq!(parse("1MB"), Ok(1 << 20));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("1gi"), Ok(1 << 30));
        assert_eq!(parse("2 TB"), Ok(2 << 40));
        assert_eq!(parse(" 3T "), Ok(3_000_000_000_000));
        assert!(parse("").is_err());
        assert!(parse("G").is_err());
        assert!(parse("1.5G").is_err());
        assert!(parse("10 bananas").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("99999999999EiB").is_err());
    }
}
