//! medchain for embedders: one [`Host`] per member institution.
//!
//! A [`Host`] owns a member's consensus node (`medchain_core::protocol::Node`), its
//! persistent ledger (`medchain_store::Ledger`, SQLite), its identity and the network key. It
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
//! certified, uncommitted blocks) in the same ledger file; [`Host::open`] resumes from that file
//! after a stop or a crash, never voting twice in a round it voted in. The host signs and nonces what it
//! submits. Domain operations: [`Host::add_record`] (FHIR JSON validated against the network's
//! profile, sealed, classified and indexed for an enrolled patient),
//! [`Host::submit_patient_signed`] (what a patient's wallet signed: consents, revocations,
//! erasures), [`Host::release`] (a record key for a reader, judged locally exactly as
//! validators judge it before any key is wrapped), [`Host::records_shared_with`] and
//! [`Host::open_for`] (what a reader received, opened with its released key),
//! [`Host::records_of`], [`Host::audit_trail`], [`Host::research_release`].
//!
//! # Quick start
//!
//! A one-hospital network (a sole validator commits alone), a patient who enrols, a record, the
//! patient's consent for her doctor, the doctor's key release and the audit trail:
//!
//! ```
//! use medchain::{Actor, Consent, Host, Identity, NetworkKey, Provision, Purpose, RecordDraft, ReleaseRequest, SealedWriterKey};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (now, rng) = (1_790_000_000_000, &mut rand_core::UnwrapErr(getrandom::SysRng));
//! # const OBSERVATION: &[u8] = br#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":7.9,"unit":"%"}}"#;
//! // 1. Found the network: its genesis names the member and the network key's fingerprint.
//! let (hospital, network) = (Identity::generate(rng), NetworkKey::generate(rng));
//! let genesis = medchain::genesis_of("clinic", &[("St. Mary's", &hospital)], &network, now)?;
//! let mut host = Host::create(dir.path().join("ledger.sqlite"), &genesis, hospital, network, now)?;
//! // 2. A patient enrols: her wallet seals her writer keys to the hospital.
//! let (alice, doctor) = (Identity::generate(rng), Identity::generate(rng));
//! let enrolment = SealedWriterKey::export(&alice, &genesis.chain_id(), &host.public(), rng)?;
//! // 3. The hospital adds a FHIR Observation.
//! let record = host.add_record(RecordDraft { fhir: OBSERVATION, enrolment: &enrolment, readers: &[] }, now)?;
//! // 4. Alice's wallet signs a consent for her doctor; the hospital submits it.
//! let permit = Provision::permit().actor(Actor::Party(doctor.verify_key())).purpose(Purpose::Treat);
//! let consent = Consent { patient: alice.public(), issued_ms: now, summary: String::new(), period: Default::default(), emergency: None, provisions: vec![permit] };
//! let grant = host.submit_patient_signed(&consent.grant_body(&alice, &genesis.chain_id())?, now)?;
//! // The application's loop: here time passes and nothing arrives (a sole validator).
//! let mut run = |host: &mut Host, id| -> Result<bool, medchain::HostError> {
//!     for _ in 0..1_000 { match host.poll_timeout() { _ if host.is_committed(&id) => break, Some(t) => host.handle_timeout(t)?, None => break } }
//!     Ok(host.is_committed(&id)) };
//! assert!(run(&mut host, record.tx_id)? && run(&mut host, grant)?);
//! // 5. The doctor asks; the hospital checks the consent and releases the key.
//! let request = ReleaseRequest { grantee: doctor.public(), credential: None, purpose: Purpose::Treat };
//! let released = host.release(&record.sealed, request, now)?;
//! assert!(run(&mut host, released.access_logged)?);
//! // 6. The audit trail shows who received the key, when and why.
//! assert_eq!(host.audit_trail(&alice.verify_key())?.len(), 2);
//! # Ok(()) }
//! ```
mod host;
#[cfg(feature = "testing")]
pub mod testing;

pub use host::{
    genesis_of, Event, FoundError, Host, HostError, NetworkRole, RecordDraft, RecordError,
    RecordReceipt, ReleaseError, ReleaseReceipt, SubmitTxError, Transmit,
};

pub use medchain_core::access::{AccessError, ReleaseRequest};
pub use medchain_core::consent::{Action, Actor, Consent, Provision, Purpose};
pub use medchain_core::genesis::Genesis;
pub use medchain_core::index::SealedWriterKey;
pub use medchain_core::keys::{Identity, PublicIdentity, VerifyKey};
pub use medchain_core::ledger::RuleError;
pub use medchain_core::protocol::{DropReason, Recipient};
pub use medchain_core::seal::{NetworkKey, SealedRecord};
pub use medchain_core::tx::TxBody;
pub use medchain_store::{Ledger, LedgerError, OpenError, SharedRecord};
