//! Store tests: one binary, one module per concern. Every test written with [`engine_test!`]
//! runs against each storage engine, RocksDB in a folder and PostgreSQL in a database of a
//! throwaway cluster (`../common/pg_cluster.rs`): one harness, not copies.

use ferrovex_runtime::store::Store;
use tempfile::TempDir;

#[path = "../common/pg_cluster.rs"]
mod pg_cluster;

/// Defines `NAME::rocksdb` and `NAME::postgres`: the body run against each engine, as
/// `engine`.
macro_rules! engine_test {
    (fn $name:ident($engine:ident: Engine) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($engine: crate::Engine) $body

            #[test]
            fn rocksdb() {
                run(crate::Engine::Rocks)
            }

            #[test]
            fn postgres() {
                run(crate::Engine::Postgres)
            }
        }
    };
}

mod bad_input;
mod basics;
mod concurrency;
mod follower;
mod import;
mod intercept;
mod model_check;
mod point_reads;
mod recovery;

/// A storage engine the store tests run against.
#[derive(Clone, Copy, Debug)]
pub enum Engine {
    Rocks,
    Postgres,
}

/// Where a test's store lives: a temporary folder, or a fresh database of the shared
/// cluster. It outlives the stores opened on it, so a test can close and reopen one.
pub enum Location {
    Folder(TempDir),
    Database(String),
}

impl Location {
    /// Opens (or reopens) the store; a store opened before must have been dropped.
    pub fn open(&self) -> Store {
        match self {
            Location::Folder(dir) => Store::open(&dir.path().join("data")).expect("open store"),
            Location::Database(url) => Store::open_postgres(url).expect("open store"),
        }
    }
}

impl Engine {
    /// A new, empty place for a store.
    pub fn location(self) -> Location {
        match self {
            Engine::Rocks => Location::Folder(tempfile::tempdir().expect("temp dir")),
            Engine::Postgres => Location::Database(pg_cluster::Cluster::shared().database()),
        }
    }

    /// A store in a new place; the place lives as long as the returned guard.
    pub fn temp_store(self) -> (Store, Location) {
        let location = self.location();
        (location.open(), location)
    }
}
