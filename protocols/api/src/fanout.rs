//! Fan-out ids: let a front-end recognise that two deliveries to two of its
//! subscriptions are the same publish (MQTT overlapping subscriptions get one copy).
//! The engine passes the id to every [`crate::Subscriber::deliver`] call it makes
//! for one publish.

use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

/// One fan-out of one message: every [`crate::Subscriber::deliver`] call made for
/// one publish gets the same id, and no other fan-out ever has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FanoutId(u64);

impl FanoutId {
    /// A delivery that is no part of a fan-out (a front-end queueing a message on
    /// its own subscription, such as a PubAck): never merged with another.
    pub const NONE: FanoutId = FanoutId(0);

    /// A fresh, process-unique id.
    pub fn next() -> FanoutId {
        FanoutId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// True for [`FanoutId::NONE`].
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_never_none() {
        let a = FanoutId::next();
        let b = FanoutId::next();
        assert_ne!(a, b);
        assert!(!a.is_none() && !b.is_none());
        assert!(FanoutId::NONE.is_none());
    }
}
