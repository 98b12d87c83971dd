//! Batching a queue under load, shared by the replicated stations' proposals
//! and the engine's forwarded publishes: whatever is queued when a slot frees
//! goes out together, with a few slots (batches on their way) at a time.

use std::future::Future;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::UnboundedReceiver;

/// `first`, then whatever else is queued on `rx` now, up to `max` in all.
pub fn take_queued<T>(rx: &mut UnboundedReceiver<T>, first: T, max: usize) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

/// Waits for `work`, giving `slot` back once it is done or after `held`,
/// whichever comes first: a batch that takes longer (an election, a slow
/// link) lets the next one go anyway.
pub async fn holding<F: Future>(work: F, slot: OwnedSemaphorePermit, held: Duration) -> F::Output {
    tokio::pin!(work);
    tokio::select! {
        out = &mut work => out,
        () = tokio::time::sleep(held) => {
            drop(slot);
            work.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_up_to_the_most() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 1..=5 {
            tx.send(i).unwrap();
        }
        let first = rx.recv().await.unwrap();
        assert_eq!(take_queued(&mut rx, first, 3), vec![1, 2, 3]);
        let first = rx.recv().await.unwrap();
        assert_eq!(take_queued(&mut rx, first, 3), vec![4, 5]);
    }

    #[tokio::test]
    async fn a_batch_that_never_ends_gives_its_slot_back_after_the_hold() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let slot = slots.clone().acquire_owned().await.unwrap();
        let stuck = tokio::spawn(holding(
            std::future::pending::<()>(),
            slot,
            Duration::from_millis(50),
        ));
        // The only slot comes back though the work never finishes (the
        // timeout only guards against a hang).
        let next = tokio::time::timeout(Duration::from_secs(30), slots.clone().acquire_owned())
            .await
            .expect("the slot came back")
            .unwrap();
        assert!(!stuck.is_finished());
        drop(next);
        stuck.abort();
    }
}
