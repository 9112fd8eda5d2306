//! Signed transactions.
//!
//! A [`Transaction`] is an envelope that anyone can check and a body that only network members
//! can read:
//!
//! ```text
//! signed bytes = version (u8 = 3) || kind (u8) || chain (32) || contributor (32)
//!                || timestamp_ms (u64) || nonce (u64) || body: NetworkSealed
//!                || index_entry: bytes || payload digest (32)
//! tx id        = tagged_hash("medchain/v1/tx-id", signed bytes)
//! signature    = ed25519(contributor, len || "medchain/v1/tx-signature" || chain || tx id)
//! encoding     = signed bytes || signature (64)
//! ```
//!
//! The body ([`TxBody`], one variant per [`TxKind`]) is padded to a fixed width
//! ([`BODY_PAD_FLOOR`], or a size bucket above it) and encrypted under the network key with
//! the header as associated data; sensitive parts inside it (the record, its data keys) are
//! encrypted again to their readers, and the record is padded to a size bucket inside its own
//! encryption. The secure-index entry travels outside the body because it
//! is opaque by construction and searchers must read it without the network key.
//!
//! Decoding gives a [`Transaction`]; only [`Transaction::verify`] (strict ed25519) gives a
//! [`VerifiedTx`].

use std::fmt;
use std::ops::Deref;

use rand_core::{CryptoRng, Rng};
use thiserror::Error;

use crate::consent::{CodeTag, CODE_TAG_BUCKETS, CODE_TAG_LEN, MAX_CODE_TAGS};
use crate::credential::Credential;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{domain, ChainId, PayloadCommitment, RecordId, TaggedHasher, TxId};
use crate::keys::{
    verify_batch, BatchError, Identity, PublicIdentity, Signature, SignatureError, SignedMessage,
    VerifyKey,
};
use crate::research::ReleaseLog;
use crate::seal::{pad, unpad, KeyEnvelope, NetworkKey, NetworkSealed, SealError, SealedRecord};

/// Format version of [`Transaction`]. Version 2: the header names the chain (the genesis hash),
/// which the id, every signature and the body's associated data bind. Version 3: the body is
/// padded to a fixed width ([`BODY_PAD_FLOOR`]) or, for longer bodies, a size bucket, before it
/// is sealed.
pub const TX_VERSION: u8 = 3;

/// The width every transaction body up to this size (less 4) is padded to: every body of kinds
/// other than `ConsentGranted` fits, so their sealed bodies have one length whatever their
/// purpose, emergency flag, consent, credential or resource type. Longer bodies (consents,
/// records with many codes) are padded to Padmé buckets (`seal::padded_len`).
pub const BODY_PAD_FLOOR: usize = 512;

/// Largest secure-index entry a transaction may carry (bytes).
pub const MAX_INDEX_ENTRY: usize = 64 * 1024;

/// Largest consent document (bytes).
pub const MAX_CONSENT_DOCUMENT: usize = 256 * 1024;

/// What a transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TxKind {
    /// A sealed record is added, with key envelopes for its patient and contributor.
    RecordAdded = 1,
    /// A patient grants a consent.
    ConsentGranted = 2,
    /// A patient revokes a consent.
    ConsentRevoked = 3,
    /// A record's data key is wrapped for a new reader under a consent.
    KeyShared = 4,
    /// Someone accessed a record: who, what, when, why, under which consent.
    AccessLogged = 5,
    /// A record is crypto-shredded at the patient's request.
    RecordErased = 6,
    /// A research dataset was released: one log per release, naming no patient
    /// ([`crate::research::ReleaseLog`]).
    ResearchReleased = 7,
    /// A request for a record's key was refused by the member that holds it: who asked, why,
    /// and the rule that refused.
    AccessDenied = 8,
}

impl TxKind {
    /// The kind's stable wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind for a wire code.
    ///
    /// # Errors
    /// [`DecodeError::UnknownTag`] for an unknown code.
    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            1 => Self::RecordAdded,
            2 => Self::ConsentGranted,
            3 => Self::ConsentRevoked,
            4 => Self::KeyShared,
            5 => Self::AccessLogged,
            6 => Self::RecordErased,
            7 => Self::ResearchReleased,
            8 => Self::AccessDenied,
            _ => {
                return Err(DecodeError::UnknownTag {
                    what: "transaction kind",
                    tag: code.into(),
                })
            }
        })
    }
}

/// A transaction failed to build, verify or open.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TxError {
    /// Malformed bytes.
    #[error("malformed transaction: {0}")]
    Decode(#[from] DecodeError),
    /// The contributor's signature does not verify strictly.
    #[error("transaction signature does not verify")]
    BadSignature,
    /// A patient's signature inside the body does not verify.
    #[error("patient signature in the transaction body does not verify")]
    BadPatientSignature,
    /// The body is of another kind than the header says.
    #[error("body kind {body:?} does not match header kind {header:?}")]
    KindMismatch {
        /// The header's kind.
        header: TxKind,
        /// The body's kind.
        body: TxKind,
    },
    /// The body does not decrypt under this network key.
    #[error("transaction body does not decrypt under this network key")]
    BodyDecrypt,
    /// Only a record transaction may carry a secure-index entry.
    #[error("only a RecordAdded transaction may carry a secure-index entry")]
    UnexpectedIndexEntry,
    /// The index entry is larger than [`MAX_INDEX_ENTRY`].
    #[error("secure-index entry of {0} bytes is above the limit")]
    IndexEntryTooLarge(usize),
    /// A body field is invalid.
    #[error("invalid transaction body: {0}")]
    InvalidBody(&'static str),
    /// The transaction was made for another network.
    #[error("the transaction was made for another network")]
    WrongChain,
    /// The transaction's payload (sealed record or wrapped key) is missing: only history
    /// re-read from a store, after an erasure, may lack it.
    #[error("the transaction's payload is missing")]
    MissingPayload,
}

impl From<SignatureError> for TxError {
    fn from(_: SignatureError) -> Self {
        Self::BadSignature
    }
}

/// A patient's signature over a body part, for a given purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientSignature {
    /// The patient.
    pub patient: PublicIdentity,
    /// ed25519 over the purpose's label and the signed part.
    pub signature: Signature,
}

impl PatientSignature {
    /// Signs `message` for `label` as `patient`, on the network `chain`.
    pub fn sign(patient: &Identity, chain: &ChainId, label: &str, message: &[u8]) -> Self {
        Self {
            patient: patient.public(),
            signature: patient.sign(chain, label, message),
        }
    }

    fn verify(&self, chain: &ChainId, label: &str, message: &[u8]) -> Result<(), TxError> {
        self.patient
            .sign
            .verify(chain, label, message, &self.signature)
            .map_err(|_| TxError::BadPatientSignature)
    }
}

impl Encode for PatientSignature {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.patient.encode_to(out);
        self.signature.encode_to(out);
    }
}

impl Decode for PatientSignature {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            patient: PublicIdentity::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// The body of a transaction, one variant per [`TxKind`].
///
/// On the wire a body has two parts, both encrypted under the network key: the **metadata**
/// (every field but `sealed`/`envelope`), which the transaction id covers directly, and the
/// **payload** (the sealed record, or the wrapped key), which the id covers through its digest.
/// A store that honours an erasure deletes the payload (crypto-shredding) and the chain still
/// verifies; such a body opens with `sealed`/`envelope` set to `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxBody {
    /// A sealed record, with its key envelopes for the patient and the contributor.
    RecordAdded {
        /// The record's id.
        record_id: RecordId,
        /// The patient the record belongs to.
        patient: PublicIdentity,
        /// The salted payload commitment.
        commitment: PayloadCommitment,
        /// What every network member may know of the record, so that block validation can
        /// enforce consent by data class: its resource type, year and blinded codes.
        class: RecordClass,
        /// The sealed record (payload; `None` once pruned).
        sealed: Option<SealedRecord>,
    },
    /// A consent granted by the patient: the canonical consent document and the patient's
    /// signature over it (label `medchain/v1/consent-signature`).
    ConsentGranted {
        /// The consent document's canonical bytes (defined by the consent module).
        document: Vec<u8>,
        /// The patient's signature over `document`.
        patient: PatientSignature,
    },
    /// A consent revoked by the patient.
    ConsentRevoked {
        /// The id of the consent revoked.
        consent_id: [u8; 32],
        /// The patient's signature over [`revocation_message`] (label
        /// `medchain/v1/consent-revocation`).
        patient: PatientSignature,
    },
    /// A record's data key wrapped for a new reader.
    KeyShared {
        /// The record.
        record_id: RecordId,
        /// The new reader.
        grantee: PublicIdentity,
        /// HL7 v3 PurposeOfUse code of the access (`TREAT`, `ETREAT`, `HRESCH`, ...).
        purpose: String,
        /// The consent this sharing is made under (`None` only for an emergency access).
        consent_id: Option<[u8; 32]>,
        /// The grantee's role credential, when a role-based consent or an emergency needs one.
        credential: Option<Credential>,
        /// The record key wrapped for the grantee (payload; `None` once pruned).
        envelope: Option<KeyEnvelope>,
    },
    /// An access to a record.
    AccessLogged {
        /// The record.
        record_id: RecordId,
        /// Who accessed it.
        accessor: PublicIdentity,
        /// HL7 v3 PurposeOfUse code (`TREAT`, `ETREAT`, `HRESCH`, ...).
        purpose: String,
        /// The consent it was made under, if any (an emergency access has none).
        consent_id: Option<[u8; 32]>,
        /// Whether it was a break-glass emergency access.
        emergency: bool,
        /// When it happened (milliseconds since the Unix epoch).
        accessed_at_ms: u64,
    },
    /// A record crypto-shredded at the patient's request.
    RecordErased {
        /// The record.
        record_id: RecordId,
        /// The patient's signature over the record id (label `medchain/v1/erasure-signature`).
        patient: PatientSignature,
    },
    /// A research release: the researcher's signed request, a commitment to the released set,
    /// counts rounded at random to tens, the release time (`crate::research`).
    ResearchReleased(Box<ReleaseLog>),
    /// A refused request for a record's key, logged by the member that holds the record (and
    /// refused it) so that the patient's audit trail shows who tried to read, and why not.
    AccessDenied {
        /// The record.
        record_id: RecordId,
        /// Who asked (the grantee of the key request).
        requester: PublicIdentity,
        /// The HL7 v3 PurposeOfUse code the request named (never a research code: research is
        /// served de-identified, without key requests).
        purpose: String,
        /// The rule that refused, by its stable name: `denied` (the patient's consents do not
        /// permit it) or a ledger rule's name (`bad_credential`, `wrong_consent`, ...); 1 to
        /// [`MAX_DENIAL_RULE`] of `a-z` and `_`.
        rule: String,
        /// When the request was made (its signed time, milliseconds since the Unix epoch).
        requested_at_ms: u64,
        /// The member whose node relayed the request (the holder itself for its own
        /// clinicians): the institution the patient's audit trail names beside the requester.
        relayed_by: VerifyKey,
    },
}

const MAX_PURPOSE: usize = 64;

/// The longest rule name an `AccessDenied` body may carry (as a key answer's).
pub const MAX_DENIAL_RULE: usize = 48;

/// Whether `rule` is a rule name an `AccessDenied` body may carry.
pub fn is_rule_name(rule: &str) -> bool {
    !rule.is_empty()
        && rule.len() <= MAX_DENIAL_RULE
        && rule.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

impl TxBody {
    /// A `RecordAdded` body for a sealed record.
    pub fn record_added(sealed: SealedRecord, class: RecordClass) -> Self {
        Self::RecordAdded {
            record_id: sealed.record_id(),
            patient: *sealed.patient(),
            commitment: sealed.commitment(),
            class,
            sealed: Some(sealed),
        }
    }

    /// The body's kind.
    pub fn kind(&self) -> TxKind {
        match self {
            Self::RecordAdded { .. } => TxKind::RecordAdded,
            Self::ConsentGranted { .. } => TxKind::ConsentGranted,
            Self::ConsentRevoked { .. } => TxKind::ConsentRevoked,
            Self::KeyShared { .. } => TxKind::KeyShared,
            Self::AccessLogged { .. } => TxKind::AccessLogged,
            Self::AccessDenied { .. } => TxKind::AccessDenied,
            Self::RecordErased { .. } => TxKind::RecordErased,
            Self::ResearchReleased(_) => TxKind::ResearchReleased,
        }
    }

    /// The payload's canonical bytes (`None` for kinds without one, or when pruned).
    fn payload_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::RecordAdded { sealed, .. } => sealed.as_ref().map(Encode::to_bytes),
            Self::KeyShared { envelope, .. } => envelope.as_ref().map(Encode::to_bytes),
            _ => None,
        }
    }

    fn attach_payload(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        match self {
            Self::RecordAdded { sealed, .. } => *sealed = Some(SealedRecord::from_bytes(bytes)?),
            Self::KeyShared { envelope, .. } => *envelope = Some(KeyEnvelope::from_bytes(bytes)?),
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "transaction payload",
                    reason: "this kind has no payload",
                })
            }
        }
        Ok(())
    }

    /// Checks the patient signatures (bound to the network `chain`) and the field rules that
    /// need no ledger state.
    ///
    /// # Errors
    /// [`TxError::BadPatientSignature`] or [`TxError::InvalidBody`].
    pub fn check(&self, chain: &ChainId) -> Result<(), TxError> {
        match self {
            Self::ConsentGranted { document, patient } => {
                patient.verify(chain, domain::CONSENT_SIG, document)
            }
            Self::ConsentRevoked {
                consent_id,
                patient,
            } => patient.verify(chain, domain::REVOKE_SIG, &revocation_message(consent_id)),
            Self::RecordErased { record_id, patient } => {
                patient.verify(chain, domain::ERASURE_SIG, record_id.as_byte_array())
            }
            Self::AccessLogged { purpose, .. } => check_purpose(purpose),
            Self::AccessDenied { purpose, rule, .. } => {
                check_purpose(purpose)?;
                if matches!(
                    crate::consent::Purpose::from_code(purpose, None),
                    crate::consent::Purpose::Research { .. }
                ) {
                    return Err(TxError::InvalidBody(
                        "research is never refused a record key: it asks for none",
                    ));
                }
                if !is_rule_name(rule) {
                    return Err(TxError::InvalidBody(
                        "a denial's rule is 1 to 48 of a-z and _",
                    ));
                }
                Ok(())
            }
            Self::ResearchReleased(log) => log.check(chain),
            Self::KeyShared {
                grantee,
                purpose,
                envelope,
                ..
            } => {
                check_purpose(purpose)?;
                if envelope
                    .as_ref()
                    .is_some_and(|e| e.recipient != grantee.agree)
                {
                    return Err(TxError::InvalidBody(
                        "the key envelope is not addressed to the grantee",
                    ));
                }
                Ok(())
            }
            Self::RecordAdded {
                record_id,
                patient,
                commitment,
                class,
                sealed,
            } => {
                class.check()?;
                if let Some(s) = sealed {
                    if s.record_id() != *record_id
                        || s.patient() != patient
                        || s.commitment() != *commitment
                    {
                        return Err(TxError::InvalidBody(
                            "the sealed record does not match the record metadata",
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

fn check_purpose(purpose: &str) -> Result<(), TxError> {
    if purpose.is_empty()
        || !purpose
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Err(TxError::InvalidBody("purpose must be a non-empty code"))
    } else {
        Ok(())
    }
}

/// What every network member may know of a record, so that validators can enforce consent by
/// data class: its FHIR resource type, the **year** of its clinical date (none for the resource
/// types whose date would be a person's birth date, [`RecordClass::withholds_date`]), and its
/// codes **blinded** under the patient's consent tag key, padded with random tags to a bucket
/// (`consent::CODE_TAG_BUCKETS`). The codes themselves stay private to the record's readers
/// (see `docs/consent.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordClass {
    /// FHIR R4 resource type, e.g. `Observation`.
    pub resource_type: String,
    /// The year of the record's clinical date; 0 if it has none or its type withholds it.
    pub year: u16,
    /// The record's codes blinded under its patient's consent tag key, with random padding
    /// tags, strictly ascending; as many as a bucket of `consent::CODE_TAG_BUCKETS`.
    pub code_tags: Vec<CodeTag>,
}

/// Resource types whose class carries no date: the date [`crate::fhir::clinical_date_ms`]
/// finds for them is a person's birth date.
pub const DATELESS_CLASSES: &[&str] = &["Patient", "Person", "Practitioner", "RelatedPerson"];

impl RecordClass {
    /// Whether records of `resource_type` carry no date in their class (a Patient's birth date
    /// is nobody's business but its readers').
    pub fn withholds_date(resource_type: &str) -> bool {
        DATELESS_CLASSES.contains(&resource_type)
    }

    /// Checks the class: a FHIR R4 resource type; a year of 4 digits at most, and none for a
    /// type that withholds its date; tags strictly ascending, as many as a bucket.
    ///
    /// # Errors
    /// [`TxError::InvalidBody`].
    pub fn check(&self) -> Result<(), TxError> {
        if !crate::fhir::is_r4_resource_type(&self.resource_type) {
            return Err(TxError::InvalidBody("unknown FHIR resource type"));
        }
        if self.year > 9999 {
            return Err(TxError::InvalidBody(
                "record year must have at most 4 digits",
            ));
        }
        if self.year != 0 && Self::withholds_date(&self.resource_type) {
            return Err(TxError::InvalidBody(
                "the class of a Patient, Person, Practitioner or RelatedPerson carries no date",
            ));
        }
        if !CODE_TAG_BUCKETS.contains(&self.code_tags.len()) {
            return Err(TxError::InvalidBody(
                "a record class carries a bucket's number of code tags",
            ));
        }
        if self.code_tags.windows(2).any(|w| w[0] >= w[1]) {
            return Err(TxError::InvalidBody(
                "a record class's code tags are strictly ascending",
            ));
        }
        Ok(())
    }
}

impl Encode for RecordClass {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.resource_type.as_bytes());
        out.put_u16(self.year);
        out.put_list(&self.code_tags);
    }
}

impl Decode for RecordClass {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            resource_type: r.string("resource type", 64)?,
            year: r.u16()?,
            code_tags: r.sorted_list("record code tags", MAX_CODE_TAGS, CODE_TAG_LEN, |t| *t)?,
        })
    }
}

/// The message a patient signs to revoke a consent: `"revoke" || consent id`.
pub fn revocation_message(consent_id: &[u8; 32]) -> Vec<u8> {
    let mut m = b"revoke".to_vec();
    m.extend_from_slice(consent_id);
    m
}

/// Encodes the metadata part of a body (everything but the payload).
impl Encode for TxBody {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(self.kind().code());
        match self {
            Self::RecordAdded {
                record_id,
                patient,
                commitment,
                class,
                sealed: _,
            } => {
                record_id.encode_to(out);
                patient.encode_to(out);
                commitment.encode_to(out);
                class.encode_to(out);
            }
            Self::ConsentGranted { document, patient } => {
                out.put_bytes(document);
                patient.encode_to(out);
            }
            Self::ConsentRevoked {
                consent_id,
                patient,
            } => {
                out.put_raw(consent_id);
                patient.encode_to(out);
            }
            Self::KeyShared {
                record_id,
                grantee,
                purpose,
                consent_id,
                credential,
                envelope: _,
            } => {
                record_id.encode_to(out);
                grantee.encode_to(out);
                out.put_bytes(purpose.as_bytes());
                out.put_option(consent_id.as_ref());
                out.put_option(credential.as_ref());
            }
            Self::AccessLogged {
                record_id,
                accessor,
                purpose,
                consent_id,
                emergency,
                accessed_at_ms,
            } => {
                record_id.encode_to(out);
                accessor.encode_to(out);
                out.put_bytes(purpose.as_bytes());
                out.put_option(consent_id.as_ref());
                out.put_bool(*emergency);
                out.put_u64(*accessed_at_ms);
            }
            Self::RecordErased { record_id, patient } => {
                record_id.encode_to(out);
                patient.encode_to(out);
            }
            Self::ResearchReleased(log) => log.encode_to(out),
            Self::AccessDenied {
                record_id,
                requester,
                purpose,
                rule,
                requested_at_ms,
                relayed_by,
            } => {
                record_id.encode_to(out);
                requester.encode_to(out);
                out.put_bytes(purpose.as_bytes());
                out.put_bytes(rule.as_bytes());
                out.put_u64(*requested_at_ms);
                relayed_by.encode_to(out);
            }
        }
    }
}

/// Decodes the metadata part of a body; payload fields come back `None`.
impl Decode for TxBody {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match TxKind::from_code(r.u8()?)? {
            TxKind::RecordAdded => Self::RecordAdded {
                record_id: RecordId::decode_from(r)?,
                patient: PublicIdentity::decode_from(r)?,
                commitment: PayloadCommitment::decode_from(r)?,
                class: RecordClass::decode_from(r)?,
                sealed: None,
            },
            TxKind::ConsentGranted => Self::ConsentGranted {
                document: r.bytes("consent document", MAX_CONSENT_DOCUMENT)?.to_vec(),
                patient: PatientSignature::decode_from(r)?,
            },
            TxKind::ConsentRevoked => Self::ConsentRevoked {
                consent_id: r.array()?,
                patient: PatientSignature::decode_from(r)?,
            },
            TxKind::KeyShared => Self::KeyShared {
                record_id: RecordId::decode_from(r)?,
                grantee: PublicIdentity::decode_from(r)?,
                purpose: r.string("purpose of use", MAX_PURPOSE)?,
                consent_id: r.option("consent id")?,
                credential: r.option("credential")?,
                envelope: None,
            },
            TxKind::AccessLogged => Self::AccessLogged {
                record_id: RecordId::decode_from(r)?,
                accessor: PublicIdentity::decode_from(r)?,
                purpose: r.string("purpose of use", MAX_PURPOSE)?,
                consent_id: r.option("consent id")?,
                emergency: r.bool("emergency flag")?,
                accessed_at_ms: r.u64()?,
            },
            TxKind::RecordErased => Self::RecordErased {
                record_id: RecordId::decode_from(r)?,
                patient: PatientSignature::decode_from(r)?,
            },
            TxKind::ResearchReleased => {
                Self::ResearchReleased(Box::new(ReleaseLog::decode_from(r)?))
            }
            TxKind::AccessDenied => Self::AccessDenied {
                record_id: RecordId::decode_from(r)?,
                requester: PublicIdentity::decode_from(r)?,
                purpose: r.string("purpose of use", MAX_PURPOSE)?,
                rule: r.string("denial rule", MAX_DENIAL_RULE)?,
                requested_at_ms: r.u64()?,
                relayed_by: VerifyKey::decode_from(r)?,
            },
        })
    }
}

impl TxKind {
    /// When ledger rules see transactions of this kind within a block: phase 0 for what
    /// changes the rules (records, consent grants and revocations, erasures), phase 1 for
    /// accesses (key releases, access logs, research releases), so that a revocation or an erasure takes effect
    /// from its block whatever its position in it.
    pub fn phase(self) -> u8 {
        match self {
            Self::KeyShared | Self::AccessLogged | Self::ResearchReleased | Self::AccessDenied => 1,
            Self::RecordAdded
            | Self::ConsentGranted
            | Self::ConsentRevoked
            | Self::RecordErased => 0,
        }
    }

    /// Whether transactions of this kind carry a prunable payload.
    pub fn has_payload(self) -> bool {
        matches!(self, Self::RecordAdded | Self::KeyShared)
    }
}

/// An unverified transaction, as decoded from bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    kind: TxKind,
    chain: ChainId,
    contributor: VerifyKey,
    timestamp_ms: u64,
    nonce: u64,
    body: NetworkSealed,
    index_entry: Vec<u8>,
    payload_digest: [u8; 32],
    signature: Signature,
    payload: Option<NetworkSealed>,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("id", &self.id())
            .field("kind", &self.kind)
            .field("contributor", &self.contributor)
            .field("timestamp_ms", &self.timestamp_ms)
            .finish_non_exhaustive()
    }
}

impl Transaction {
    /// Builds and signs a transaction for the network `chain`: encrypts `body` under the
    /// network key, binds it to the header, signs the id.
    ///
    /// # Errors
    /// [`TxError::UnexpectedIndexEntry`] if a non-record body carries an index entry,
    /// [`TxError::IndexEntryTooLarge`], or a body check failure ([`TxBody::check`]).
    #[allow(clippy::too_many_arguments)]
    pub fn create<R: Rng + CryptoRng>(
        contributor: &Identity,
        chain: &ChainId,
        timestamp_ms: u64,
        nonce: u64,
        body: &TxBody,
        index_entry: Vec<u8>,
        network: &NetworkKey,
        rng: &mut R,
    ) -> Result<Self, TxError> {
        let kind = body.kind();
        check_index_entry(kind, &index_entry)?;
        body.check(chain)?;
        let header = header_bytes(kind, chain, &contributor.verify_key(), timestamp_ms, nonce);
        let plain = pad(&zeroize::Zeroizing::new(body.to_bytes()), BODY_PAD_FLOOR);
        let sealed = network.seal(&plain, &header, rng);
        let payload = match (kind.has_payload(), body.payload_bytes()) {
            (true, Some(bytes)) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                Some(network.seal(&bytes, &payload_aad(&header), rng))
            }
            (true, None) => return Err(TxError::InvalidBody("the payload is missing")),
            (false, _) => None,
        };
        let mut tx = Self {
            kind,
            chain: *chain,
            contributor: contributor.verify_key(),
            timestamp_ms,
            nonce,
            body: sealed,
            index_entry,
            payload_digest: payload.as_ref().map(payload_digest).unwrap_or([0; 32]),
            signature: Signature::from_byte_array([0; 64]),
            payload,
        };
        let id = tx.id();
        tx.signature = contributor.sign(chain, domain::TX_SIG, id.as_byte_array());
        Ok(tx)
    }

    /// The kind.
    pub fn kind(&self) -> TxKind {
        self.kind
    }

    /// The network it was made for (validators refuse any other: `WrongChain`).
    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// The contributor's key.
    pub fn contributor(&self) -> &VerifyKey {
        &self.contributor
    }

    /// The contributor's timestamp (milliseconds since the Unix epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The contributor's nonce (unique per contributor; replay protection).
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The secure-index entry's canonical bytes (empty if none).
    pub fn index_entry(&self) -> &[u8] {
        &self.index_entry
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Whether the payload (sealed record or wrapped key) has been pruned by an erasure.
    pub fn is_pruned(&self) -> bool {
        self.kind.has_payload() && self.payload.is_none()
    }

    /// Deletes the payload: crypto-shredding for a store that honours an erasure. The id, the
    /// signature and the block's Merkle root still verify, through the payload digest.
    pub fn prune(&mut self) {
        self.payload = None;
    }

    fn signed_bytes_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&header_bytes(
            self.kind,
            &self.chain,
            &self.contributor,
            self.timestamp_ms,
            self.nonce,
        ));
        self.body.encode_to(out);
        out.put_bytes(&self.index_entry);
        out.put_raw(&self.payload_digest);
    }

    /// The transaction id: tagged hash of the signed bytes (streamed, without re-encoding).
    pub fn id(&self) -> TxId {
        let mut h = TaggedHasher::new(domain::TX_ID);
        h.update(&header_bytes(
            self.kind,
            &self.chain,
            &self.contributor,
            self.timestamp_ms,
            self.nonce,
        ));
        h.update(self.body.nonce());
        h.update_prefixed(self.body.ciphertext());
        h.update_prefixed(&self.index_entry);
        h.update(&self.payload_digest);
        TxId::from_byte_array(h.finalize())
    }

    /// Decrypts the body with the network key, checks it matches the header's kind and checks
    /// its patient signatures. Does not check the contributor's signature: call it on a
    /// [`VerifiedTx`] for transactions from outside; the body is authenticated by the network
    /// key's AEAD either way. Stores use it directly on transactions they verified when they
    /// committed them.
    ///
    /// # Errors
    /// [`TxError::BodyDecrypt`], [`TxError::Decode`], [`TxError::KindMismatch`],
    /// [`TxError::BadPatientSignature`], [`TxError::InvalidBody`].
    pub fn open_body(&self, network: &NetworkKey) -> Result<TxBody, TxError> {
        let header = header_bytes(
            self.kind,
            &self.chain,
            &self.contributor,
            self.timestamp_ms,
            self.nonce,
        );
        let plain = network.open(&self.body, &header).map_err(|e| match e {
            SealError::Decode(d) => TxError::Decode(d),
            _ => TxError::BodyDecrypt,
        })?;
        let mut body =
            TxBody::from_bytes(unpad(&plain, BODY_PAD_FLOOR, "transaction body padding")?)?;
        if let Some(payload) = &self.payload {
            let bytes = network
                .open(payload, &payload_aad(&header))
                .map_err(|_| TxError::BodyDecrypt)?;
            body.attach_payload(&bytes)?;
        }
        if body.kind() != self.kind {
            return Err(TxError::KindMismatch {
                header: self.kind,
                body: body.kind(),
            });
        }
        body.check(&self.chain)?;
        Ok(body)
    }
    /// Verifies the contributor's signature under the network's one signature rule (ZIP-215,
    /// docs/adr/0005-signature-validity.md).
    ///
    /// # Errors
    /// [`TxError::BadSignature`].
    pub fn verify(self) -> Result<VerifiedTx, TxError> {
        let id = self.id();
        self.contributor.verify(
            &self.chain,
            domain::TX_SIG,
            id.as_byte_array(),
            &self.signature,
        )?;
        Ok(VerifiedTx { tx: self, id })
    }

    /// Verifies many transactions' signatures in one batch ([`crate::keys::verify_batch`]),
    /// with exactly the verdict [`Transaction::verify`] gives each: one result per input, in
    /// input order. ZIP-215 makes the batch and the single equation agree on every input
    /// (ADR 0005), so this is the fast path of [`crate::block::TxVerifier`]; when the batch
    /// fails, the transactions it names are verified alone for their exact error.
    ///
    pub fn verify_batch(txs: Vec<Transaction>) -> Vec<Result<VerifiedTx, TxError>> {
        let ids: Vec<TxId> = txs.iter().map(Transaction::id).collect();
        let items: Vec<SignedMessage<'_>> = txs
            .iter()
            .zip(&ids)
            .map(|(tx, id)| SignedMessage {
                key: &tx.contributor,
                chain: &tx.chain,
                label: domain::TX_SIG,
                message: id.as_byte_array(),
                signature: &tx.signature,
            })
            .collect();
        let invalid = match verify_batch(&items) {
            Ok(()) => Vec::new(),
            Err(BatchError::Invalid { invalid, .. }) => invalid,
        };
        drop(items);
        let mut bad = invalid.into_iter().peekable();
        txs.into_iter()
            .zip(ids)
            .enumerate()
            .map(|(i, (tx, id))| {
                if bad.next_if_eq(&i).is_some() {
                    // Named by the batch: its own verdict, with its own error.
                    tx.verify()
                } else {
                    Ok(VerifiedTx { tx, id })
                }
            })
            .collect()
    }

    /// Checks what a new transaction (submitted, gathered, or in a block not yet committed)
    /// must satisfy beyond its signature: it is made for the network `chain`, and it carries
    /// its payload.
    ///
    /// # Errors
    /// [`TxError::WrongChain`], [`TxError::MissingPayload`].
    pub fn check_fresh(&self, chain: &ChainId) -> Result<(), TxError> {
        if &self.chain != chain {
            return Err(TxError::WrongChain);
        }
        if self.is_pruned() {
            return Err(TxError::MissingPayload);
        }
        Ok(())
    }

    /// Decodes and verifies in one step.
    ///
    /// # Errors
    /// [`TxError::Decode`] or [`TxError::BadSignature`].
    pub fn decode_verified(bytes: &[u8]) -> Result<VerifiedTx, TxError> {
        Self::from_bytes(bytes)?.verify()
    }
}

/// Length of a transaction header: version, kind, chain, contributor, timestamp, nonce.
const HEADER_LEN: usize = 1 + 1 + 32 + 32 + 8 + 8;

fn header_bytes(
    kind: TxKind,
    chain: &ChainId,
    contributor: &VerifyKey,
    timestamp_ms: u64,
    nonce: u64,
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = TX_VERSION;
    h[1] = kind.code();
    h[2..34].copy_from_slice(chain.as_byte_array());
    h[34..66].copy_from_slice(contributor.as_byte_array());
    h[66..74].copy_from_slice(&timestamp_ms.to_be_bytes());
    h[74..82].copy_from_slice(&nonce.to_be_bytes());
    h
}

fn payload_aad(header: &[u8; HEADER_LEN]) -> [u8; HEADER_LEN + 7] {
    let mut aad = [0u8; HEADER_LEN + 7];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad[HEADER_LEN..].copy_from_slice(b"payload");
    aad
}

fn payload_digest(payload: &NetworkSealed) -> [u8; 32] {
    let mut h = TaggedHasher::new(domain::TX_PAYLOAD);
    h.update(payload.nonce());
    h.update_prefixed(payload.ciphertext());
    h.finalize()
}

fn check_index_entry(kind: TxKind, entry: &[u8]) -> Result<(), TxError> {
    if entry.len() > MAX_INDEX_ENTRY {
        return Err(TxError::IndexEntryTooLarge(entry.len()));
    }
    if !entry.is_empty() && kind != TxKind::RecordAdded {
        return Err(TxError::UnexpectedIndexEntry);
    }
    Ok(())
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.signed_bytes_to(out);
        self.signature.encode_to(out);
        out.put_option(self.payload.as_ref());
    }
}

impl Decode for Transaction {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("transaction", TX_VERSION)?;
        let kind = TxKind::from_code(r.u8()?)?;
        let chain = ChainId::decode_from(r)?;
        let contributor = VerifyKey::decode_from(r)?;
        let timestamp_ms = r.u64()?;
        let nonce = r.u64()?;
        let body = NetworkSealed::decode_from(r)?;
        let index_entry = r.bytes("secure-index entry", MAX_INDEX_ENTRY)?.to_vec();
        if !index_entry.is_empty() && kind != TxKind::RecordAdded {
            return Err(DecodeError::InvalidValue {
                what: "secure-index entry",
                reason: "only a RecordAdded transaction may carry one",
            });
        }
        let payload_digest: [u8; 32] = r.array()?;
        let signature = Signature::decode_from(r)?;
        let payload: Option<NetworkSealed> = r.option("transaction payload")?;
        match (&payload, kind.has_payload()) {
            (None, false) if payload_digest == [0; 32] => {}
            (None, true) => {} // pruned: the digest alone stays
            (Some(p), true) if self::payload_digest(p) == payload_digest => {}
            _ => {
                return Err(DecodeError::InvalidValue {
                    what: "transaction payload",
                    reason: "payload does not match its digest or kind",
                })
            }
        }
        Ok(Self {
            kind,
            chain,
            contributor,
            timestamp_ms,
            nonce,
            body,
            index_entry,
            payload_digest,
            signature,
            payload,
        })
    }
}

/// A transaction whose contributor signature verified strictly. Derefs to [`Transaction`].
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedTx {
    tx: Transaction,
    id: TxId,
}

impl fmt::Debug for VerifiedTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verified{:?}", self.tx)
    }
}

impl Deref for VerifiedTx {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        &self.tx
    }
}

impl VerifiedTx {
    /// The id (computed once, at verification).
    pub fn id(&self) -> TxId {
        self.id
    }

    /// The unverified transaction.
    pub fn into_inner(self) -> Transaction {
        self.tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::tagged_hash;
    use crate::seal::seal_record;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const CHAIN: ChainId = ChainId::from_byte_array([5; 32]);

    const OBS: &[u8] =
        br#"{"resourceType":"Observation","status":"final","code":{"text":"glucose"}}"#;

    struct Fx {
        rng: ChaCha20Rng,
        patient: Identity,
        hospital: Identity,
        net: NetworkKey,
    }

    fn fx() -> Fx {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let patient = Identity::generate(&mut rng);
        let hospital = Identity::generate(&mut rng);
        let net = NetworkKey::generate(&mut rng);
        Fx {
            rng,
            patient,
            hospital,
            net,
        }
    }

    fn record_tx(f: &mut Fx) -> Transaction {
        let record =
            seal_record(OBS, &f.patient.public(), &[f.hospital.public()], &mut f.rng).unwrap();
        Transaction::create(
            &f.hospital,
            &CHAIN,
            1_700_000_000_000,
            1,
            &TxBody::record_added(
                record,
                crate::access::record_class(
                    OBS,
                    &crate::consent::ConsentTagKey::for_patient(&f.patient),
                    &mut f.rng,
                )
                .unwrap(),
            ),
            vec![1, 2, 3],
            &f.net,
            &mut f.rng,
        )
        .unwrap()
    }

    /// How a transaction in a batch is spoiled, if at all.
    #[derive(Debug, Clone, Copy)]
    enum Spoil {
        None,
        /// A bit of the signature flipped.
        Signature(u8),
        /// Signed for another network.
        Chain,
        /// Another contributor's key in the header.
        Contributor,
        /// The timestamp changed after signing.
        Timestamp,
    }

    fn spoil(tx: &mut Transaction, how: Spoil, other: &Identity) {
        match how {
            Spoil::None => {}
            Spoil::Signature(bit) => {
                let mut b = *tx.signature.as_byte_array();
                b[usize::from(bit) % 64] ^= 1 << (bit % 8);
                tx.signature = Signature::from_byte_array(b);
            }
            Spoil::Chain => tx.chain = ChainId::from_byte_array([6; 32]),
            Spoil::Contributor => tx.contributor = other.verify_key(),
            Spoil::Timestamp => tx.timestamp_ms += 1,
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// The batch gives every transaction exactly the verdict `verify` gives it alone, for
        /// any mix of valid and spoiled transactions in any position.
        #[test]
        fn batch_verdicts_are_the_single_verdicts(
            spoils in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::strategy::Just(Spoil::None),
                    1 => proptest::strategy::Strategy::prop_map(
                        proptest::prelude::any::<u8>(),
                        Spoil::Signature,
                    ),
                    1 => proptest::strategy::Just(Spoil::Chain),
                    1 => proptest::strategy::Just(Spoil::Contributor),
                    1 => proptest::strategy::Just(Spoil::Timestamp),
                ],
                0..12,
            )
        ) {
            let mut f = fx();
            let other = Identity::generate(&mut f.rng);
            let txs: Vec<Transaction> = spoils
                .iter()
                .map(|&how| {
                    let mut tx = record_tx(&mut f);
                    spoil(&mut tx, how, &other);
                    tx
                })
                .collect();
            let singles: Vec<_> = txs.iter().cloned().map(Transaction::verify).collect();
            let batch = Transaction::verify_batch(txs);
            proptest::prop_assert_eq!(batch.len(), singles.len());
            for (b, s) in batch.iter().zip(&singles) {
                match (b, s) {
                    (Ok(b), Ok(s)) => proptest::prop_assert_eq!(b.id(), s.id()),
                    (Err(b), Err(s)) => proptest::prop_assert_eq!(b, s),
                    _ => proptest::prop_assert!(false, "batch {:?} != single {:?}", b, s),
                }
            }
        }
    }

    #[test]
    fn a_batch_names_exactly_the_bad_transactions() {
        let mut f = fx();
        let other = Identity::generate(&mut f.rng);
        let mut txs: Vec<Transaction> = (0..6).map(|_| record_tx(&mut f)).collect();
        spoil(&mut txs[1], Spoil::Signature(9), &other);
        spoil(&mut txs[4], Spoil::Contributor, &other);
        let verdicts = Transaction::verify_batch(txs.clone());
        let bad: Vec<usize> = (0..6).filter(|&i| verdicts[i].is_err()).collect();
        assert_eq!(bad, [1, 4]);
        assert_eq!(verdicts[1].as_ref().unwrap_err(), &TxError::BadSignature);
        assert_eq!(verdicts[0].as_ref().unwrap().id(), txs[0].id());
        assert!(Transaction::verify_batch(Vec::new()).is_empty());
    }

    #[test]
    fn create_encode_decode_verify_open() {
        let mut f = fx();
        let tx = record_tx(&mut f);
        let bytes = tx.to_bytes();
        let v = Transaction::decode_verified(&bytes).unwrap();
        assert_eq!(v.id(), tx.id());
        assert_eq!(v.kind(), TxKind::RecordAdded);
        match v.open_body(&f.net).unwrap() {
            TxBody::RecordAdded { sealed, .. } => {
                assert_eq!(sealed.unwrap().open(&f.patient).unwrap().payload(), OBS);
            }
            other => panic!("unexpected body {other:?}"),
        }
        let other_net = NetworkKey::generate(&mut f.rng);
        assert_eq!(v.open_body(&other_net).unwrap_err(), TxError::BodyDecrypt);
        // Nothing of the record appears in the encoded transaction.
        assert!(!bytes.windows(7).any(|w| w == b"glucose"));
    }

    #[test]
    fn patient_signatures_and_ids_are_bound_to_the_network() {
        // Attack (issue #12.7): a consent the patient signed on network A is submitted verbatim
        // on network B.
        let mut f = fx();
        let doc = b"consent document".to_vec();
        let on_a = TxBody::ConsentGranted {
            document: doc.clone(),
            patient: PatientSignature::sign(&f.patient, &CHAIN, domain::CONSENT_SIG, &doc),
        };
        let network_b = ChainId::from_byte_array([6; 32]);
        assert_eq!(
            Transaction::create(
                &f.hospital,
                &network_b,
                1,
                2,
                &on_a,
                vec![],
                &f.net,
                &mut f.rng
            )
            .unwrap_err(),
            TxError::BadPatientSignature
        );
        // The same transaction fields on two networks give two ids, and a transaction's bytes
        // with its chain swapped no longer verify.
        let a = Transaction::create(&f.hospital, &CHAIN, 1, 2, &on_a, vec![], &f.net, &mut f.rng)
            .unwrap();
        let mut moved = a.clone();
        moved.chain = network_b;
        assert_ne!(moved.id(), a.id());
        assert_eq!(moved.verify().unwrap_err(), TxError::BadSignature);
        assert_eq!(a.chain(), &CHAIN);
    }

    #[test]
    fn every_byte_flip_breaks_decode_or_verify() {
        let mut f = fx();
        let tx = record_tx(&mut f);
        let bytes = tx.to_bytes();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x80;
            assert!(
                Transaction::decode_verified(&t).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn patient_signatures_are_checked() {
        let mut f = fx();
        let doc = b"consent document".to_vec();
        let good = TxBody::ConsentGranted {
            document: doc.clone(),
            patient: PatientSignature::sign(&f.patient, &CHAIN, domain::CONSENT_SIG, &doc),
        };
        let tx = Transaction::create(&f.hospital, &CHAIN, 1, 2, &good, vec![], &f.net, &mut f.rng)
            .unwrap();
        let v = tx.verify().unwrap();
        assert_eq!(v.open_body(&f.net).unwrap(), good);
        // Signed by the hospital instead of the patient it names.
        let forged = TxBody::ConsentGranted {
            document: doc.clone(),
            patient: PatientSignature {
                patient: f.patient.public(),
                signature: f.hospital.sign(&CHAIN, domain::CONSENT_SIG, &doc),
            },
        };
        let err = Transaction::create(
            &f.hospital,
            &CHAIN,
            1,
            3,
            &forged,
            vec![],
            &f.net,
            &mut f.rng,
        )
        .unwrap_err();
        assert_eq!(err, TxError::BadPatientSignature);
        assert_eq!(
            err.to_string(),
            "patient signature in the transaction body does not verify"
        );
        let rid = RecordId::from_byte_array([9; 32]);
        let erase = TxBody::RecordErased {
            record_id: rid,
            patient: PatientSignature::sign(
                &f.patient,
                &CHAIN,
                domain::ERASURE_SIG,
                rid.as_byte_array(),
            ),
        };
        assert!(
            Transaction::create(&f.patient, &CHAIN, 1, 4, &erase, vec![], &f.net, &mut f.rng)
                .is_ok()
        );
        let revoke = TxBody::ConsentRevoked {
            consent_id: [7; 32],
            patient: PatientSignature::sign(
                &f.patient,
                &CHAIN,
                domain::REVOKE_SIG,
                b"wrong message",
            ),
        };
        assert_eq!(
            Transaction::create(
                &f.patient,
                &CHAIN,
                1,
                5,
                &revoke,
                vec![],
                &f.net,
                &mut f.rng
            )
            .unwrap_err(),
            TxError::BadPatientSignature
        );
    }

    #[test]
    fn index_entries_only_on_records() {
        let mut f = fx();
        let body = TxBody::AccessLogged {
            record_id: RecordId::from_byte_array([1; 32]),
            accessor: f.hospital.public(),
            purpose: "TREAT".into(),
            consent_id: None,
            emergency: false,
            accessed_at_ms: 5,
        };
        let err = Transaction::create(
            &f.hospital,
            &CHAIN,
            1,
            1,
            &body,
            vec![1],
            &f.net,
            &mut f.rng,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "only a RecordAdded transaction may carry a secure-index entry"
        );
        let tx = Transaction::create(&f.hospital, &CHAIN, 1, 1, &body, vec![], &f.net, &mut f.rng)
            .unwrap();
        assert_eq!(tx.verify().unwrap().open_body(&f.net).unwrap(), body);
        let bad = TxBody::AccessLogged {
            record_id: RecordId::from_byte_array([1; 32]),
            accessor: f.hospital.public(),
            purpose: "no spaces allowed".into(),
            consent_id: None,
            emergency: false,
            accessed_at_ms: 5,
        };
        assert_eq!(
            Transaction::create(&f.hospital, &CHAIN, 1, 1, &bad, vec![], &f.net, &mut f.rng)
                .unwrap_err(),
            TxError::InvalidBody("purpose must be a non-empty code")
        );
    }

    #[test]
    fn streamed_id_equals_tagged_hash_of_signed_bytes() {
        let mut f = fx();
        let tx = record_tx(&mut f);
        let mut signed = Vec::new();
        tx.signed_bytes_to(&mut signed);
        assert_eq!(tx.id().to_byte_array(), tagged_hash(domain::TX_ID, &signed));
        let bytes = tx.to_bytes();
        assert_eq!(&bytes[..signed.len()], &signed[..]);
    }

    #[test]
    fn pruning_keeps_the_id_and_signature_valid() {
        let mut f = fx();
        let tx = record_tx(&mut f);
        let id = tx.id();
        let mut pruned = tx.clone();
        pruned.prune();
        assert!(pruned.is_pruned() && !tx.is_pruned());
        let bytes = pruned.to_bytes();
        assert!(bytes.len() < tx.to_bytes().len());
        let v = Transaction::decode_verified(&bytes).unwrap();
        assert_eq!(v.id(), id);
        match v.open_body(&f.net).unwrap() {
            TxBody::RecordAdded { sealed, class, .. } => {
                assert!(sealed.is_none());
                assert_eq!(class.resource_type, "Observation");
            }
            other => panic!("unexpected body {other:?}"),
        }
        // A payload swapped in from another transaction does not match the digest.
        let other = record_tx(&mut f);
        let mut frank = tx.clone();
        frank.payload = other.payload.clone();
        assert!(Transaction::from_bytes(&frank.to_bytes()).is_err());
    }

    #[test]
    fn debug_shows_no_body() {
        let mut f = fx();
        let tx = record_tx(&mut f);
        let dbg = format!("{tx:?}");
        assert!(dbg.contains("RecordAdded") && !dbg.contains("glucose"));
    }
    /// Every byte an outsider sees of `body` sealed in a transaction: its encoding's length.
    fn wire_len(f: &mut Fx, body: &TxBody) -> usize {
        Transaction::create(&f.hospital, &CHAIN, 1, 1, body, vec![], &f.net, &mut f.rng)
            .unwrap()
            .to_bytes()
            .len()
    }

    #[test]
    fn access_log_and_key_release_lengths_tell_nothing_of_purpose_or_emergency() {
        let mut f = fx();
        let record_id = RecordId::from_byte_array([1; 32]);
        let accessor = f.hospital.public();
        let mut lens = std::collections::BTreeSet::new();
        for (purpose, consent, emergency) in [
            ("TREAT", Some([7; 32]), false),
            ("ETREAT", None, true),
            ("PATRQT", None, false),
            ("HRESCH", Some([7; 32]), false),
            ("CLINTRCHNPC", Some([7; 32]), false),
            (
                "A-PURPOSE-CODE-OF-SIXTY-FOUR-BYTES-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                None,
                false,
            ),
        ] {
            let body = TxBody::AccessLogged {
                record_id,
                accessor,
                purpose: purpose.into(),
                consent_id: consent,
                emergency,
                accessed_at_ms: 5,
            };
            lens.insert(wire_len(&mut f, &body));
        }
        assert_eq!(lens.len(), 1, "access-log lengths differ: {lens:?}");
        // Key releases: with or without a consent, with or without a credential.
        let institution = Identity::generate(&mut f.rng);
        let credential = Credential::issue(
            &institution,
            &CHAIN,
            f.patient.verify_key(),
            crate::credential::Role::Clinician {
                institution: institution.verify_key(),
            },
            u64::MAX,
        );
        let sealed =
            seal_record(OBS, &f.patient.public(), &[f.hospital.public()], &mut f.rng).unwrap();
        let grantee = f.patient.public();
        let envelope = sealed
            .share_with(&f.hospital, &grantee, &mut f.rng)
            .unwrap();
        let mut lens = std::collections::BTreeSet::new();
        for (purpose, consent, credential) in [
            ("TREAT", Some([7; 32]), None),
            ("ETREAT", None, Some(credential.clone())),
            ("TREAT", Some([7; 32]), Some(credential)),
        ] {
            let body = TxBody::KeyShared {
                record_id: sealed.record_id(),
                grantee,
                purpose: purpose.into(),
                consent_id: consent,
                credential,
                envelope: Some(envelope.clone()),
            };
            lens.insert(wire_len(&mut f, &body));
        }
        assert_eq!(lens.len(), 1, "key-release lengths differ: {lens:?}");
    }

    #[test]
    fn record_lengths_tell_nothing_of_the_resource_type() {
        let mut f = fx();
        let key = crate::consent::ConsentTagKey::for_patient(&f.patient);
        let resources: [&[u8]; 5] = [
            br#"{"resourceType":"Patient","birthDate":"1985-07-14","gender":"female","name":[{"family":"Ruiz","given":["Ana"]}],"address":[{"city":"Springfield","state":"IL"}]}"#,
            br#"{"resourceType":"Condition","code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"F20.9"}]},"recordedDate":"2026-09-14","clinicalStatus":{"coding":[{"code":"active"}]}}"#,
            br#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"effectiveDateTime":"2026-10-01","valueQuantity":{"value":6.1,"unit":"%"}}"#,
            br#"{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"},"period":{"start":"2024-03-15T08:00:00Z","end":"2024-03-19T11:00:00Z"}}"#,
            br#"{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"860975"}]},"authoredOn":"2026-10-01"}"#,
        ];
        let mut sealed_lens = std::collections::BTreeSet::new();
        let mut wire_lens = std::collections::BTreeSet::new();
        for r in resources {
            let sealed =
                seal_record(r, &f.patient.public(), &[f.hospital.public()], &mut f.rng).unwrap();
            sealed_lens.insert(sealed.ciphertext_len());
            let class = crate::access::record_class(r, &key, &mut f.rng).unwrap();
            wire_lens.insert(wire_len(&mut f, &TxBody::record_added(sealed, class)));
        }
        assert_eq!(
            sealed_lens.len(),
            1,
            "ciphertext lengths differ: {sealed_lens:?}"
        );
        assert_eq!(
            wire_lens.len(),
            1,
            "transaction lengths differ: {wire_lens:?}"
        );
    }

    #[test]
    fn bodies_are_padded_canonically() {
        let mut f = fx();
        let tx = record_tx(&mut f);
        // A body sealed without its padding, or with non-zero padding, does not open.
        let header = header_bytes(
            tx.kind,
            &tx.chain,
            &tx.contributor,
            tx.timestamp_ms,
            tx.nonce,
        );
        let body = tx.open_body(&f.net).unwrap();
        let mut bare = tx.clone();
        bare.body = f.net.seal(&body.to_bytes(), &header, &mut f.rng);
        assert!(matches!(bare.open_body(&f.net), Err(TxError::Decode(_))));
        let mut padded = pad(&body.to_bytes(), BODY_PAD_FLOOR).to_vec();
        *padded.last_mut().unwrap() = 1;
        let mut dirty = tx.clone();
        dirty.body = f.net.seal(&padded, &header, &mut f.rng);
        assert_eq!(
            dirty.open_body(&f.net).unwrap_err(),
            TxError::Decode(DecodeError::NonCanonical {
                what: "transaction body padding"
            })
        );
        let mut longer = pad(&body.to_bytes(), BODY_PAD_FLOOR).to_vec();
        longer.resize(BODY_PAD_FLOOR * 2, 0);
        let mut long = tx.clone();
        long.body = f.net.seal(&longer, &header, &mut f.rng);
        assert!(long.open_body(&f.net).is_err());
    }
}
