//! A bridge's topics, as mosquitto's `topic pattern [in|out|both] qos
//! local-prefix remote-prefix` lines: which filter each side subscribes to, and
//! the topic a message gets on the other side.

use serde::{Deserialize, Serialize};

/// Which way a bridge topic carries messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the remote broker to this one.
    In,
    /// From this broker to the remote one (mosquitto's default).
    #[default]
    Out,
    /// Both ways (No Local keeps a message from coming back).
    Both,
}

/// One `topics` entry of a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTopic {
    /// The topic filter, under the prefixes (`sensors/#`).
    pub pattern: String,
    /// `in`, `out` (default) or `both`.
    #[serde(default)]
    pub direction: Direction,
    /// QoS of the subscriptions and the most a forwarded message gets: 0, 1 or
    /// 2 (default 0, as mosquitto). At 1 and 2 a message is acknowledged to the
    /// broker it came from only once the other broker acknowledged it; at 2 the
    /// exchange is relayed step by step, so it stays exactly once.
    #[serde(default)]
    pub qos: u8,
    /// Put before `pattern` on this broker (`""` by default).
    #[serde(default)]
    pub local_prefix: String,
    /// Put before `pattern` on the remote broker (`""` by default).
    #[serde(default)]
    pub remote_prefix: String,
}

/// One side of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Local,
    Remote,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Local => Side::Remote,
            Side::Remote => Side::Local,
        }
    }

    pub fn index(self) -> usize {
        match self {
            Side::Local => 0,
            Side::Remote => 1,
        }
    }
}

impl BridgeTopic {
    /// Does this entry carry messages from `from` to the other side?
    pub(crate) fn carries_from(&self, from: Side) -> bool {
        matches!(
            (self.direction, from),
            (Direction::Both, _) | (Direction::Out, Side::Local) | (Direction::In, Side::Remote)
        )
    }

    fn prefix(&self, side: Side) -> &str {
        match side {
            Side::Local => &self.local_prefix,
            Side::Remote => &self.remote_prefix,
        }
    }

    /// The filter subscribed to on `side` (for messages leaving it).
    pub(crate) fn filter_on(&self, side: Side) -> String {
        format!("{}{}", self.prefix(side), self.pattern)
    }

    /// The topic on the other side of a message with `topic` on `from`, when
    /// this entry carries it.
    pub(crate) fn map(&self, from: Side, topic: &str) -> Option<String> {
        if !self.carries_from(from) || !crate::topic::filter_matches(&self.filter_on(from), topic) {
            return None;
        }
        let rest = topic.strip_prefix(self.prefix(from))?;
        Some(format!("{}{rest}", self.prefix(from.other())))
    }

    /// What is wrong with this entry, if anything.
    pub fn check(&self) -> Result<(), String> {
        if self.qos > 2 {
            return Err(format!("'{}': qos {} (0, 1 or 2)", self.pattern, self.qos));
        }
        for prefix in [&self.local_prefix, &self.remote_prefix] {
            if prefix.contains(['+', '#']) {
                return Err(format!(
                    "'{}': prefix '{prefix}' has a wildcard",
                    self.pattern
                ));
            }
        }
        for side in [Side::Local, Side::Remote] {
            let filter = self.filter_on(side);
            let mapped = crate::topic::map_filter(&filter)
                .map_err(|e| format!("'{filter}' is not a topic filter: {e}"))?;
            if mapped.share.is_some() {
                return Err(format!(
                    "'{filter}': a shared subscription cannot be bridged"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(pattern: &str, direction: Direction, local: &str, remote: &str) -> BridgeTopic {
        BridgeTopic {
            pattern: pattern.into(),
            direction,
            qos: 1,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    #[test]
    fn prefixes_are_swapped_in_the_direction_the_entry_carries() {
        let t = topic("sensors/#", Direction::Out, "site/", "fleet/a/");
        assert_eq!(t.filter_on(Side::Local), "site/sensors/#");
        assert_eq!(
            t.map(Side::Local, "site/sensors/t1").as_deref(),
            Some("fleet/a/sensors/t1")
        );
        // `out` carries nothing in.
        assert_eq!(t.map(Side::Remote, "fleet/a/sensors/t1"), None);
        // Outside the filter.
        assert_eq!(t.map(Side::Local, "site/other"), None);

        let t = topic("cmd/+", Direction::In, "", "dev/");
        assert_eq!(t.filter_on(Side::Remote), "dev/cmd/+");
        assert_eq!(t.map(Side::Remote, "dev/cmd/x").as_deref(), Some("cmd/x"));
        assert_eq!(t.map(Side::Local, "cmd/x"), None);

        let t = topic("#", Direction::Both, "", "");
        assert_eq!(t.map(Side::Local, "a/b").as_deref(), Some("a/b"));
        assert_eq!(t.map(Side::Remote, "a/b").as_deref(), Some("a/b"));
        // `#` does not take `$`-topics.
        assert_eq!(t.map(Side::Remote, "$SYS/broker/uptime"), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(topic("a/#", Direction::Out, "", "").check().is_ok());
        let mut t = topic("a/#", Direction::Out, "", "");
        t.qos = 2;
        assert!(t.check().is_ok());
        t.qos = 3;
        assert!(t.check().is_err());
        assert!(topic("a/#", Direction::Out, "x/+/", "").check().is_err());
        assert!(topic("a/#/b", Direction::Out, "", "").check().is_err());
        assert!(topic("g/a", Direction::In, "", "$share/").check().is_err());
    }
}
