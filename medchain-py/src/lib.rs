//! Python bindings for medchain (pyo3 + maturin).
//!
//! The bindings are not built yet; this crate holds the workspace place for them and
//! re-exports the core. See `ARCHITECTURE.md`.

pub use medchain_core as core;
