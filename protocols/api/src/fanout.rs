//! Fan-out ids: lets a front-end recognise that two deliveries to two of its
//! subscriptions are the same publish (MQTT overlapping subscriptions get one copy).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// Marks the fan-out of one message on this thread; restores the previous id when
/// dropped (fan-outs may nest, for example a delivery that publishes a reply).
#[derive(Debug)]
pub struct FanoutScope {
    previous: u64,
}

impl FanoutScope {
    /// Starts a fan-out with a fresh, process-unique id.
    pub fn enter() -> Self {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        FanoutScope {
            previous: CURRENT.with(|c| c.replace(id)),
        }
    }
}

impl Drop for FanoutScope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// The id of the fan-out running on this thread (0 outside one). Every
/// [`crate::Subscriber::deliver`] call made for one publish sees the same id, and no
/// other publish ever has it.
pub fn current_fanout() -> u64 {
    CURRENT.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(current_fanout(), 0);
        let a = FanoutScope::enter();
        let id_a = current_fanout();
        assert_ne!(id_a, 0);
        {
            let _b = FanoutScope::enter();
            assert_ne!(current_fanout(), id_a);
        }
        assert_eq!(current_fanout(), id_a);
        drop(a);
        assert_eq!(current_fanout(), 0);
    }
}
