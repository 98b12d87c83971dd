//! Each listener's share of the process's file descriptors, so that a flood on one
//! protocol (thousands of half-open HTTP connections, say) can never leave another
//! without descriptors to accept with.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit. A reserve is kept
//! for the store, the monitoring listener and refusals in progress (an eighth of
//! the limit, at least 256, at most half); the rest is the connection budget. A
//! listener given a cap in the configuration (`limits.max_nats_connections`,
//! `…_mqtt_…`, `…_http_…`) keeps it. The others share what the explicit caps
//! leave (the pool): each may grow to the pool minus a floor kept for every other
//! one (a quarter of an even share), so one protocol can never starve another,
//! yet a broker serving mostly one protocol can give it most descriptors (10,000
//! NATS connections under a 20,000 limit). Two protocols flooding at once can
//! still crowd out a third: give explicit caps where that matters. A disabled
//! listener takes no share.
//!
//! Where the limit cannot be read (not a Unix), only explicit caps apply.

/// Descriptors kept back for everything that is not a client connection, at least.
const RESERVE_MIN: u64 = 256;

/// The smallest automatic share, even when explicit caps use up the budget.
const SHARE_MIN: usize = 16;

/// Sockets the nats-server style monitoring listener (`-m`) may hold at once,
/// taken from the reserve.
pub const MONITOR_CONNECTIONS: usize = 64;

/// A listener's enablement and its explicit cap (0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Whether it listens at all.
    pub enabled: bool,
    /// The configured cap; 0 takes a share.
    pub explicit: usize,
}

/// Raises the soft open-file limit to the hard one; returns the soft limit now in
/// force, or `None` where there is no such limit.
pub fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    }
}

/// The caps of `listeners` under the open-file limit `limit` (0 for a disabled
/// listener; 0 means no cap only where `limit` is unknown and none was given).
pub fn shares<const N: usize>(limit: Option<u64>, listeners: [Listener; N]) -> [usize; N] {
    let Some(limit) = limit else {
        return listeners.map(|l| if l.enabled { l.explicit } else { 0 });
    };
    let reserve = (limit / 8).max(RESERVE_MIN).min(limit / 2);
    let budget = usize::try_from(limit - reserve).unwrap_or(usize::MAX);
    let fixed: usize = listeners
        .iter()
        .filter(|l| l.enabled)
        .map(|l| l.explicit)
        .fold(0, usize::saturating_add);
    let automatic = listeners
        .iter()
        .filter(|l| l.enabled && l.explicit == 0)
        .count();
    let pool = budget.saturating_sub(fixed);
    let floor = pool / (4 * automatic.max(1));
    let each = pool
        .saturating_sub(automatic.saturating_sub(1) * floor)
        .max(SHARE_MIN);
    listeners.map(|l| match (l.enabled, l.explicit) {
        (false, _) => 0,
        (true, 0) => each,
        (true, n) => n,
    })
}

/// Whether explicit caps promise more descriptors than `limit` holds (pass the
/// configured caps only: automatic ones overlap by design).
pub fn overcommitted(limit: Option<u64>, caps: &[usize]) -> bool {
    let total = caps.iter().copied().fold(0usize, usize::saturating_add);
    limit.is_some_and(|l| u64::try_from(total).unwrap_or(u64::MAX) > l)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Listener = Listener {
        enabled: true,
        explicit: 0,
    };
    const OFF: Listener = Listener {
        enabled: false,
        explicit: 0,
    };

    #[test]
    fn each_may_grow_to_the_pool_less_the_others_floors() {
        // 1024: 256 kept back; of the 768, a floor of 64 each is kept for the
        // other two listeners.
        assert_eq!(shares(Some(1024), [ON, ON, ON]), [640, 640, 640]);
        // 20,000 (this machine's hard limit): 10,000 NATS connections fit.
        let [nats, _, _] = shares(Some(20_000), [ON, ON, ON]);
        assert_eq!(nats, 17_500 - 2 * 1_458);
        assert!(nats >= 10_000);
        // A large limit: an eighth kept back.
        let pool = 917_504;
        assert_eq!(
            shares(Some(1 << 20), [ON, ON, ON]),
            [pool - 2 * (pool / 12); 3]
        );
    }

    #[test]
    fn explicit_caps_win_and_disabled_listeners_take_nothing() {
        let http = Listener {
            enabled: true,
            explicit: 100,
        };
        // 668 left: one automatic listener, no floor kept for anyone else.
        assert_eq!(shares(Some(1024), [ON, OFF, http]), [668, 0, 100]);
        assert_eq!(shares(Some(1024), [ON, OFF, OFF]), [768, 0, 0]);
        // Explicit caps that eat the budget leave the others a floor, not "no cap".
        let huge = Listener {
            enabled: true,
            explicit: 5000,
        };
        assert_eq!(shares(Some(1024), [ON, ON, huge]), [16, 16, 5000]);
        assert!(overcommitted(Some(1024), &[16, 16, 5000]));
        assert!(!overcommitted(Some(1024), &[256, 256, 256]));
    }

    #[test]
    fn unknown_limit_keeps_only_explicit_caps() {
        let http = Listener {
            enabled: true,
            explicit: 10,
        };
        assert_eq!(shares(None, [ON, OFF, http]), [0, 0, 10]);
    }

    #[test]
    fn tiny_limits_keep_half() {
        // 300: half kept back (the reserve floor would leave too little).
        assert_eq!(shares(Some(300), [ON, ON, ON]), [126, 126, 126]);
    }
}
