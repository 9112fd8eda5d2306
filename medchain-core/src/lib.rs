//! # medchain-core
//!
//! The pure heart of medchain: a permissioned blockchain for medical records after Petrenko,
//! Kyslyi and Pysmennyi (2017) and the Mayo Clinic design of Peterson et al. (2016).
//!
//! This crate does no I/O, reads no clock and starts no threads: time arrives as an argument,
//! randomness as an `Rng + CryptoRng`, and messages as values. Everything that is hashed or
//! signed goes through one canonical codec ([`encoding`], specified in `docs/encoding.md`).
//!
//! ```
//! use medchain_core::keys::Identity;
//! use medchain_core::seal::{seal_record, NetworkKey};
//! use getrandom::SysRng;
//! use rand_core::UnwrapErr;
//!
//! let patient = Identity::generate(&mut UnwrapErr(SysRng));
//! let hospital = Identity::generate(&mut UnwrapErr(SysRng));
//! let fhir = br#"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"}}"#;
//! let sealed = seal_record(fhir, &patient.public(), &[hospital.public()], &mut UnwrapErr(SysRng))?;
//! let opened = sealed.open(&patient)?;
//! assert_eq!(opened.payload(), fhir);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access;
pub mod block;
pub mod chain;
pub mod consent;
pub mod credential;
pub mod election;
pub mod encoding;
pub mod fhir;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod genesis;
pub mod hash;
pub mod index;
pub mod jwt;
pub mod keys;
pub mod ledger;
pub mod light;
pub mod merkle;
pub mod protocol;
pub mod research;
pub mod seal;
pub mod sharing;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;
pub mod tx;
pub mod vote;
