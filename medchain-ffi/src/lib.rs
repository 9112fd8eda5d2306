//! # medchain-ffi: the patient's wallet for Kotlin, Swift and Python
//!
//! Mobile bindings of medchain made with [uniffi](https://mozilla.github.io/uniffi-rs)
//! (attribute macros, an exact-pinned version, bindings generated in library mode). A patient's
//! phone links this library; the patient's keys stay on the phone.
//!
//! | What | Where |
//! | --- | --- |
//! | [`Wallet`]: create, open or restore an identity (Argon2id-encrypted backup), show it | [`wallet`] |
//! | consents (grant, revoke, emergency preference) signed from plain records, FHIR export | [`consent`] |
//! | records addressed to the patient, opened on the phone | [`Wallet::open_record`] |
//! | erasure requests | [`Wallet::request_erasure`] |
//! | enrolment at a hospital: the writer index key sealed to it | [`Wallet::export_writer_key`], [`enrol`] |
//! | the audit trail (who read what, when, why; emergencies flagged) | [`audit`] |
//! | a light client: inclusion proof + header + quorum of votes against the pinned genesis | [`light`] |
//! | storage the app owns ([`WalletStore`], a foreign trait) and [`InMemoryWalletStore`] | [`store`] |
//! | the patient's SMART client assertion (a node's token), JWS signing | [`token`] |
//! | typed errors ([`WalletError`], [`ProofError`], [`StoreError`]); no panic crosses | [`error`] |
//!
//! The wallet does no I/O of its own: what it needs from a node (sealed records, inclusion
//! proofs, audit entries) the app fetches and passes in as bytes, and what it signs (consents,
//! revocations, erasure requests) it returns as bytes for the app to submit. See
//! `docs/mobile.md`.

uniffi::setup_scaffolding!();

pub mod audit;
pub mod consent;
pub mod enrol;
pub mod error;
#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
pub mod light;
pub mod store;
pub mod token;
pub mod wallet;

#[cfg(test)]
mod tests;

pub use audit::{AuditAction, AuditRecord};
pub use consent::{
    CodedConcept, ConsentAction, ConsentDraft, ConsentRule, EmergencyAccess, Grantee, PurposeOfUse,
    RequestKind, RuleEffect, SignedRequest, SignedRequestInfo,
};
pub use enrol::{inspect_writer_key, WriterKeyInfo};
pub use error::{ProofError, StoreError, WalletError};
pub use light::{CommittedTransaction, NetworkInfo, TransactionKind, TrustedNetwork};
pub use medchain_core as core;
pub use store::{InMemoryWalletStore, WalletStore};
pub use token::patient_client_id;
pub use wallet::{OpenedRecord, PublicIdentityInfo, Wallet};

/// The version of this library (the crate version).
#[uniffi::export]
pub fn medchain_ffi_version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
