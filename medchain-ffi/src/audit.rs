//! The audit trail as the wallet presents it.
//!
//! A node serves a patient's audit trail (from its ledger: `Ledger::audit_of_patient`) as the
//! canonical list of the core's `AuditEntry`: `u32 count || entry*`, each entry
//! `version (1) | kind | record id | patient | actor | purpose | consent id? | emergency |
//! at_ms | node | tx id | height` (`docs/encoding.md`). The wallet decodes it strictly, checks
//! that every entry is about its patient, and returns one [`AuditRecord`] per entry with the
//! FHIR R4 `AuditEvent` the core exports for it.
//!
//! What the wallet can check and what it takes on trust: decoding and the patient are checked
//! locally; that an entry's transaction is committed can be checked with an inclusion proof of
//! `tx_id` ([`crate::Wallet::verify_inclusion`]). That the trail is *complete* — that the node
//! did not leave entries out — cannot be checked by a light client.

use medchain_core::access::audit_event;
use medchain_core::encoding::Reader;
use medchain_core::keys::VerifyKey;
use medchain_core::ledger::{AuditEntry, AuditKind};

use crate::error::{guard, malformed, WalletError};

/// Most entries one audit trail may hold.
pub const MAX_AUDIT_ENTRIES: usize = 1_000_000;

/// Smallest encoded audit entry (every optional part absent, empty purpose).
const MIN_AUDIT_ENTRY: usize = 1 + 1 + 32 + 32 + 64 + 4 + 1 + 1 + 8 + 32 + 32 + 8;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AuditAction {
    /// The record's key was released to a reader.
    KeyShared,
    /// The record was read.
    Accessed,
    /// The record was erased at the patient's request.
    Erased,
    /// A request to read the record was refused, logged by the hospital that holds it (the
    /// rule is in [`AuditRecord::denied_by`]).
    Denied,
}

/// One line of the patient's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuditRecord {
    /// What happened.
    pub action: AuditAction,
    /// The record (hex id).
    pub record_id: String,
    /// Who read, received the key, erased, or was refused (printable identity).
    pub actor: String,
    /// The actor's short party id.
    pub actor_party_id: String,
    /// HL7 v3 PurposeOfUse code (`TREAT`, `ETREAT`, ...).
    pub purpose: String,
    /// The consent it happened under (hex id), if any: an emergency access has none.
    pub consent_id: Option<String>,
    /// Whether it was a break-glass emergency access.
    pub emergency: bool,
    /// When (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// The node that logged it (hex signing key).
    pub logged_by: String,
    /// The transaction that logged it (hex id): check it with an inclusion proof.
    pub tx_id: String,
    /// The block height it was committed at.
    pub height: u64,
    /// For [`AuditAction::Denied`], the rule that refused: `denied` (the patient's consents do
    /// not permit it) or a ledger rule's stable name (`bad_credential`, ...); `None` otherwise.
    pub denied_by: Option<String>,
    /// For [`AuditAction::Denied`], the member whose node relayed the request (hex signing
    /// key): the requester's institution as far as the network knows; `None` otherwise.
    pub relayed_by: Option<String>,
    /// The entry as FHIR R4 `AuditEvent` JSON.
    pub fhir_audit_event: String,
}

impl From<&AuditEntry> for AuditRecord {
    fn from(e: &AuditEntry) -> Self {
        Self {
            action: match e.kind {
                AuditKind::KeyShared => AuditAction::KeyShared,
                AuditKind::Accessed => AuditAction::Accessed,
                AuditKind::Erased => AuditAction::Erased,
                AuditKind::Denied => AuditAction::Denied,
            },
            record_id: e.record_id.to_string(),
            actor: e.actor.to_text(),
            actor_party_id: e.actor.id().to_string(),
            purpose: e.purpose.clone(),
            consent_id: e.consent_id.map(|c| c.to_string()),
            emergency: e.emergency,
            at_ms: e.at_ms,
            logged_by: e.node.to_string(),
            tx_id: e.tx_id.to_string(),
            height: e.height,
            denied_by: e.denied_by.clone(),
            relayed_by: e.relayed_by.map(|k| k.to_string()),
            fhir_audit_event: audit_event(e).to_string(),
        }
    }
}

/// Decodes an audit trail; with `patient`, every entry must be about that patient.
pub(crate) fn decode_audit_trail(
    bytes: &[u8],
    patient: Option<&VerifyKey>,
) -> Result<Vec<AuditRecord>, WalletError> {
    let mut r = Reader::new(bytes);
    let entries: Vec<AuditEntry> = r
        .list("audit trail", MAX_AUDIT_ENTRIES, MIN_AUDIT_ENTRY)
        .and_then(|l| r.finish().map(|()| l))
        .map_err(|e| malformed("audit trail", &e))?;
    if let Some(p) = patient {
        if entries.iter().any(|e| &e.patient != p) {
            return Err(WalletError::ForeignAuditEntry);
        }
    }
    Ok(entries.iter().map(AuditRecord::from).collect())
}

/// Decodes an audit trail without checking whose it is (for a caregiver's or an auditor's app).
///
/// # Errors
/// [`WalletError::Malformed`].
#[uniffi::export]
pub fn decode_audit_entries(entries: Vec<u8>) -> Result<Vec<AuditRecord>, WalletError> {
    guard(|| decode_audit_trail(&entries, None))
}

/// Encodes audit entries as a trail (what a node serves); for nodes and tests.
pub fn encode_audit_trail<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> Vec<u8> {
    use medchain_core::encoding::{Encode, Writer};
    let entries: Vec<&AuditEntry> = entries.into_iter().collect();
    let mut out = Vec::new();
    out.put_u32(u32::try_from(entries.len()).unwrap_or(u32::MAX));
    for e in entries {
        e.encode_to(&mut out);
    }
    out
}
