//! Python bindings for medchain: the private native module `medchain._medchain`.
//!
//! The Python package `medchain` (in `python/`) wraps this module: it defines the exception
//! hierarchy, the `Ledger` class with dataclass blocks, progress bars and pandas/pyarrow
//! datasets. Everything here returns [`errors::Result`], mapped to Python exceptions in
//! `errors.rs` only; long work runs with the GIL released. See `docs/python.md`.

mod consent;
mod convert;
mod dataset;
mod errors;
mod keys;
mod ledger;
mod records;
mod research;
mod testnet;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _medchain(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<keys::Identity>()?;
    m.add_class::<keys::PublicIdentity>()?;
    m.add_class::<keys::NetworkKey>()?;
    m.add_class::<keys::IndexKey>()?;
    m.add_class::<records::SealedRecord>()?;
    m.add_class::<consent::Consent>()?;
    m.add_class::<consent::ConsentState>()?;
    m.add_class::<consent::Decision>()?;
    m.add_class::<research::Credential>()?;
    m.add_class::<research::ResearchRequest>()?;
    m.add_class::<ledger::NativeLedger>()?;
    m.add_class::<testnet::LocalNetwork>()?;
    m.add_function(wrap_pyfunction!(records::seal, m)?)?;
    m.add_function(wrap_pyfunction!(consent::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(testnet::_synthetic_dataset_columns, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
