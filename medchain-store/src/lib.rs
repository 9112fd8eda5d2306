//! Persistent stores for the medchain ledger, and the [`Ledger`] API for embedders.
//!
//! * [`SqliteStore`]: the embedded default — one SQLite file in WAL mode.
//! * `PostgresStore` (cargo feature `postgres`): a hospital server's PostgreSQL database,
//!   one schema per store, over plain TCP or TLS (rustls; `sslmode=verify-full` and
//!   `sslrootcert` in the URL).
//!
//! Both implement [`medchain_core::store::LedgerStore`] and pass its conformance suite. Every
//! [`LedgerStore::append`](medchain_core::store::LedgerStore::append) is one database
//! transaction: the block, its transactions, the state it changes, the pruning an erasure
//! causes and the new head with its commit proof are written together or not at all.
//!
//! Blocks and transactions are stored in their canonical encodings. The derived state
//! (records, consents, audit entries), which would reveal what the network-sealed transaction
//! bodies hide, is stored encrypted under a state key that is itself sealed under the network
//! key (see `docs/storage.md`).
//!
//! ```no_run
//! use medchain_store::Ledger;
//! # fn demo(genesis: medchain_core::genesis::Genesis, network: medchain_core::seal::NetworkKey)
//! #     -> Result<(), medchain_store::LedgerError> {
//! let mut ledger = Ledger::create("clinic.medchain", &genesis, network)?;
//! // ... ledger.append_committed(block, &proof)? for every committed block ...
//! let summary = ledger.verify(|p| eprintln!("verified {} blocks", p.blocks))?;
//! # let _ = summary; Ok(()) }
//! ```

mod common;
mod crypt;
mod error;
mod ledger;
mod location;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_tls;
mod rows;
mod shared;
mod sqlite;

pub use common::SCHEMA_VERSION;
pub use error::{BackendError, Corruption, LedgerError, OpenError, StoreError, TlsError};
pub use ledger::{
    AnyStore, Blocks, Ledger, LedgerSearch, ParallelVerifier, PersistentStore, SearchHit,
    StoredRecord, DEFAULT_FILTER_CACHE_BYTES,
};
pub use location::{LedgerLocation, LEDGER_SCHEMA};
#[cfg(feature = "postgres")]
pub use pg::{PostgresReader, PostgresStore};
#[cfg(feature = "postgres")]
pub use pg_tls::PgTlsMode;
pub use rows::StateAudit;
pub use shared::SharedRecord;
pub use sqlite::{wal_path, SqliteReader, SqliteStore, APPLICATION_ID};

pub use medchain_core as core;
