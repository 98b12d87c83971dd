//! The meta group's Raft log store and state machine (on the broker's own fjall
//! store, written through its ordered writer queue) pass openraft's storage test
//! suite: log state, vote, committed pointer, append, truncate, purge, applying
//! membership, snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use junction_cluster::meta::{LogStore, MetaConfig, StateMachine};
use junction_storage::Store;
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<MetaConfig, LogStore<MetaConfig>, StateMachine, (tempfile::TempDir, Store)>
    for Builder
{
    async fn build(
        &self,
    ) -> Result<
        (
            (tempfile::TempDir, Store),
            LogStore<MetaConfig>,
            StateMachine,
        ),
        StorageError<u64>,
    > {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = LogStore::new(store.clone(), 0);
        let sm = StateMachine::open(store.clone(), 0, None)?;
        Ok(((dir, store), log, sm))
    }
}

#[test]
fn the_meta_store_passes_openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
