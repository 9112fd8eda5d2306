//! medchain for embedders: one [`Host`] per member institution.
//!
//! A [`Host`] owns a member's consensus node (`medchain_core::protocol::Node`), its
//! persistent ledger (`medchain_store::Ledger`: a SQLite file by default, or a PostgreSQL
//! database by [`LedgerLocation`] with the `postgres` feature), its identity and the network
//! key. It
//! is sans-I/O, as quinn-proto is under quinn: no threads, no sockets, no clock. The
//! application moves bytes and time:
//!
//! - bytes from a member's authenticated connection go to [`Host::handle_message`];
//! - at [`Host::poll_timeout`], call [`Host::handle_timeout`];
//! - send what [`Host::poll_transmit`] yields; read [`Host::poll_event`] (committed blocks,
//!   own transactions refused by the ledger rules with the [`RuleError`] naming the rule,
//!   dropped messages).
//!
//! Committed blocks are written to the ledger inside the host, with the effects the node
//! computed when it validated them (one validation), one commit step per atomic write (a step
//! can commit a block and its uncommitted ancestors). Before any message of a call can be sent,
//! the host saves what the node must not forget across a crash (its voting state and its
//! certified, uncommitted blocks) in the same ledger; [`Host::open`] resumes from that file
//! after a stop or a crash, never voting twice in a round it voted in. The host signs and nonces what it
//! submits. Domain operations: [`Host::add_record`] (FHIR JSON validated against the network's
//! profile, sealed, classified and indexed for an enrolled patient),
//! [`Host::submit_patient_signed`] (what a patient's wallet signed: consents, revocations,
//! erasures), [`Host::release`] (a record key for a reader, judged locally exactly as
//! validators judge it before any key is wrapped), [`Host::records_shared_with`] and
//! [`Host::open_for`] (what a reader received, opened with its released key),
//! [`Host::records_of`], [`Host::audit_trail`], [`Host::research_release`],
//! [`Host::request_key`] (a clinician of this member asks the member that added a record for
//! its key; that member's host judges the signed request as validators will and answers,
//! [`Event::KeyAnswered`]).
//!
//! [`MemoryNetwork`] wires several members' hosts in one process (demos, the clinic example, an
//! application's own tests); in production each member runs its host in its own process and
//! moves the bytes over the peer transport (`medchain-node`).
//!
//! # Quick start
//!
//! Three hospitals found a network; Alice enrols at St. Mary's, which adds her HbA1c; her wallet
//! signs a consent for her doctor at City General; St. Mary's releases the record's key to the
//! doctor, who opens it from City General's copy of the chain; the audit trail shows the read:
//!
//! ```
//! use medchain::{Actor, Consent, Identity, MemoryNetwork, Provision, Purpose, RecordDraft, ReleaseRequest, SealedWriterKey};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (dir, rng) = (tempfile::tempdir()?, &mut rand_core::UnwrapErr(getrandom::SysRng));
//! # const OBSERVATION: &[u8] = br#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":7.9,"unit":"%"}}"#;
//! // 1. Three hospitals found a network (fresh identities, a network key, a ledger each).
//! let mut net = MemoryNetwork::found(dir.path(), &["St. Mary's", "City General", "Northgate"], 1_790_000_000_000)?;
//! let (chain, now) = (net.host(0).genesis().chain_id(), net.now_ms());
//! // 2. Alice enrols at St. Mary's: her wallet seals her writer keys to the hospital.
//! let (alice, doctor) = (Identity::generate(rng), Identity::generate(rng));
//! let enrolment = SealedWriterKey::export(&alice, &chain, &net.host(0).public(), rng)?;
//! // 3. St. Mary's adds a FHIR Observation (validated, sealed, indexed).
//! let record = net.host_mut(0).add_record(RecordDraft { fhir: OBSERVATION, enrolment: &enrolment, readers: &[] }, now)?;
//! // 4. Alice's wallet signs a consent for her doctor's treatment; City General submits it.
//! let permit = Provision::permit().actor(Actor::Party(doctor.verify_key())).purpose(Purpose::Treat);
//! let consent = Consent { patient: alice.public(), issued_ms: now, summary: String::new(), period: Default::default(), emergency: None, provisions: vec![permit] };
//! let grant = net.host_mut(1).submit_patient_signed(&consent.grant_body(&alice, &chain)?, now)?;
//! assert!(net.run_until_committed(&[record.tx_id, grant], 10_000)?);
//! // 5. St. Mary's checks the consent as validators will, and releases the key to the doctor.
//! let (request, now) = (ReleaseRequest { grantee: doctor.public(), credential: None, purpose: Purpose::Treat }, net.now_ms());
//! let released = net.host_mut(0).release(&record.sealed, request, now)?;
//! assert!(net.run_until_committed(&[released.access_logged], 10_000)?);
//! // 6. The doctor opens the record from City General's ledger; every ledger shows the read.
//! assert_eq!(net.host(1).open_for(&doctor, &record.record_id)?.payload(), OBSERVATION);
//! assert_eq!(net.host(2).audit_trail(&alice.verify_key())?.len(), 2);
//! # Ok(()) }
//! ```
mod host;
mod memory;
mod sharing;

pub use host::{
    genesis_of, Event, FoundError, Host, HostError, NetworkRole, PreparedRecord, RecordDraft,
    RecordError, RecordReceipt, ReleaseError, ReleaseReceipt, SubmitTxError, Transmit,
};
/// Why a FHIR record was not sealed ([`RecordError::Fhir`]): its validation report, or a seal
/// failure.
pub use medchain_fhir::WriteError;
pub use memory::{MemoryNetwork, MemoryNetworkError};
pub use sharing::{RequestKeyError, MAX_PENDING_KEY_REQUESTS, MAX_REMEMBERED_DENIALS};

/// The README's Rust quick start, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use medchain_core::access::{AccessError, ReleaseRequest};
pub use medchain_core::consent::{Action, Actor, Consent, Provision, Purpose};
pub use medchain_core::genesis::Genesis;
pub use medchain_core::index::SealedWriterKey;
pub use medchain_core::keys::{Identity, PublicIdentity, VerifyKey};
pub use medchain_core::ledger::RuleError;
pub use medchain_core::protocol::{DropReason, Recipient};
pub use medchain_core::seal::{NetworkKey, SealedRecord};
pub use medchain_core::sharing::{KeyAnswer, KeyRequestId};
pub use medchain_core::tx::TxBody;
pub use medchain_store::{
    AnyStore, Ledger, LedgerError, LedgerLocation, OpenError, PersistentStore, SharedRecord,
    SqliteStore,
};
