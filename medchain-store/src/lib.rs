//! Persistent stores for the medchain ledger.
//!
//! This crate will implement the storage traits of `medchain-core` on SQLite (the embedded
//! default) and PostgreSQL; until that work lands it only re-exports the core so that the
//! workspace layout is in place. See `ARCHITECTURE.md`.

pub use medchain_core as core;
