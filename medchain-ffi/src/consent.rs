//! Consents built from plain records, and the signed requests the wallet hands to the app.
//!
//! A [`ConsentDraft`] is a flat list of [`ConsentRule`]s (each one a core `Provision` without
//! nesting) plus an optional standing [`EmergencyAccess`] preference. The wallet turns it into
//! the core's canonical consent, checks it (the same limits block validation applies) and signs
//! it. What it returns is a [`SignedRequest`]: the canonical bytes of the transaction **body**
//! (`ConsentGranted`, `ConsentRevoked` or `RecordErased`, carrying the patient's signature).
//! The phone holds no network key, so it cannot seal a transaction itself: the app submits the
//! body to a member node, which wraps it in a transaction (`Transaction::create`) under the
//! network key; validators check the patient's signature again.

use std::sync::Arc;

use medchain_core::consent::{
    consent_to_fhir, Action, Actor, Consent, DataClass, EmergencyPreference, Period, Provision,
    Purpose,
};
use medchain_core::credential::Role;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::fhir;
use medchain_core::keys::PublicIdentity;
use medchain_core::tx::TxBody;

use crate::error::{guard, WalletError};
use crate::light::TrustedNetwork;

/// The patient's standing choice about break-glass emergency access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EmergencyAccess {
    /// Credentialed clinicians of member institutions may read in an emergency (always logged
    /// and flagged in the audit trail).
    Allow,
    /// No emergency access.
    Refuse,
}

impl From<EmergencyAccess> for EmergencyPreference {
    fn from(e: EmergencyAccess) -> Self {
        match e {
            EmergencyAccess::Allow => Self::Allow,
            EmergencyAccess::Refuse => Self::Refuse,
        }
    }
}

impl From<EmergencyPreference> for EmergencyAccess {
    fn from(e: EmergencyPreference) -> Self {
        match e {
            EmergencyPreference::Allow => Self::Allow,
            EmergencyPreference::Refuse => Self::Refuse,
        }
    }
}

/// Whether a rule permits or denies. Deny overrides permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RuleEffect {
    /// The rule permits what it matches.
    Permit,
    /// The rule denies what it matches.
    Deny,
}

/// Who a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Grantee {
    /// One party, by its printable identity (`mcid1…`, what its QR code shows).
    Party {
        /// The party's printable identity.
        identity: String,
    },
    /// Clinicians credentialed by an institution (`institution` is its printable identity), or
    /// of any member institution (`None`).
    Clinician {
        /// The institution, or `None` for any.
        institution: Option<String>,
    },
    /// Researchers credentialed by an institution, or of any member institution (`None`).
    Researcher {
        /// The institution, or `None` for any.
        institution: Option<String>,
    },
}

/// What a grantee may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ConsentAction {
    /// Read (decrypt) a record.
    Read,
    /// Search the patient's records through the secure index.
    Search,
    /// Use records, de-identified, for research.
    ResearchUse,
}

/// Why (HL7 v3 PurposeOfUse).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PurposeOfUse {
    /// `TREAT`.
    Treatment,
    /// `ETREAT` (break-glass).
    EmergencyTreatment,
    /// `HRESCH`, optionally on one research topic.
    Research {
        /// The topic; `None` means any research.
        topic: Option<String>,
    },
    /// `PATRQT`.
    PatientRequest,
    /// Another PurposeOfUse code (letters, digits, `-`, `_`).
    Other {
        /// The code.
        code: String,
    },
}

/// A coded concept (`system`, `code`), e.g. LOINC `4548-4`.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CodedConcept {
    /// Code system URI.
    pub system: String,
    /// Code.
    pub code: String,
}

/// One rule of a consent. Empty lists match anything.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConsentRule {
    /// Permit or deny.
    pub effect: RuleEffect,
    /// Who (any of; empty: anyone).
    #[uniffi(default = [])]
    pub grantees: Vec<Grantee>,
    /// What (any of).
    #[uniffi(default = [])]
    pub actions: Vec<ConsentAction>,
    /// Why (any of).
    #[uniffi(default = [])]
    pub purposes: Vec<PurposeOfUse>,
    /// FHIR resource types (`Observation`, ...), any of.
    #[uniffi(default = [])]
    pub resource_types: Vec<String>,
    /// Codes in the record, any of.
    #[uniffi(default = [])]
    pub codes: Vec<CodedConcept>,
    /// When the rule starts to apply (milliseconds since the Unix epoch).
    #[uniffi(default = None)]
    pub start_ms: Option<u64>,
    /// When it stops.
    #[uniffi(default = None)]
    pub end_ms: Option<u64>,
    /// Only records dated on or after this instant.
    #[uniffi(default = None)]
    pub data_start_ms: Option<u64>,
    /// Only records dated on or before this instant.
    #[uniffi(default = None)]
    pub data_end_ms: Option<u64>,
}

/// A consent as the app builds it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ConsentDraft {
    /// A short human-readable statement (at most 256 bytes).
    pub summary: String,
    /// When the patient made it (milliseconds since the Unix epoch).
    pub issued_ms: u64,
    /// When the consent starts to be in force.
    #[uniffi(default = None)]
    pub start_ms: Option<u64>,
    /// When it ends.
    #[uniffi(default = None)]
    pub end_ms: Option<u64>,
    /// The standing emergency preference this consent states, if any.
    #[uniffi(default = None)]
    pub emergency: Option<EmergencyAccess>,
    /// The rules.
    #[uniffi(default = [])]
    pub rules: Vec<ConsentRule>,
}

/// What a signed request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum RequestKind {
    /// A consent is granted (`ConsentGranted`).
    ConsentGrant,
    /// A consent is revoked (`ConsentRevoked`).
    ConsentRevocation,
    /// A record is to be erased (`RecordErased`).
    RecordErasure,
}

/// A request signed by the patient, ready for the app to submit to a member node.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignedRequest {
    /// What it does.
    pub kind: RequestKind,
    /// The consent's id (grant, revocation) or the record's id (erasure), hex.
    pub subject_id: String,
    /// The canonical transaction body, signed by the patient (`docs/encoding.md`).
    pub body: Vec<u8>,
    /// For a grant, the consent as FHIR R4 `Consent` JSON.
    pub fhir_json: Option<String>,
}

/// What a signed request says, after its patient signature was checked.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SignedRequestInfo {
    /// What it does.
    pub kind: RequestKind,
    /// The consent id or record id, hex.
    pub subject_id: String,
    /// The patient who signed it (printable identity).
    pub patient: String,
    /// For a grant: the consent's summary. Always `None` since consents go on chain blinded,
    /// without the patient's words (the app keeps them: [`SignedRequest::fhir_json`]).
    pub summary: Option<String>,
    /// For a grant: the emergency preference it states.
    pub emergency: Option<EmergencyAccess>,
    /// For a grant: how many top-level rules it has.
    pub rule_count: u32,
}

fn identity(text: &str) -> Result<PublicIdentity, WalletError> {
    Ok(PublicIdentity::from_text(text)?)
}

fn institution(
    text: &Option<String>,
) -> Result<Option<medchain_core::keys::VerifyKey>, WalletError> {
    text.as_deref()
        .map(|t| identity(t).map(|p| p.sign))
        .transpose()
}

fn period(
    what: &str,
    start_ms: Option<u64>,
    end_ms: Option<u64>,
) -> Result<Option<Period>, WalletError> {
    if let (Some(s), Some(e)) = (start_ms, end_ms) {
        if s > e {
            return Err(WalletError::InvalidArgument {
                reason: format!("{what} ends before it starts"),
            });
        }
    }
    Ok((start_ms.is_some() || end_ms.is_some()).then_some(Period { start_ms, end_ms }))
}

fn purpose(p: &PurposeOfUse) -> Result<Purpose, WalletError> {
    Ok(match p {
        PurposeOfUse::Treatment => Purpose::Treat,
        PurposeOfUse::EmergencyTreatment => Purpose::EmergencyTreat,
        PurposeOfUse::Research { topic } => {
            if topic.as_deref().is_some_and(str::is_empty) {
                return Err(WalletError::InvalidArgument {
                    reason: "a research topic must not be empty (use none for any topic)".into(),
                });
            }
            Purpose::Research {
                topic: topic.clone(),
            }
        }
        PurposeOfUse::PatientRequest => Purpose::PatientRequest,
        PurposeOfUse::Other { code } => {
            let ok = !code.is_empty()
                && code.len() <= 32
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(WalletError::InvalidArgument {
                    reason: "a purpose code is 1 to 32 letters, digits, '-' or '_'".into(),
                });
            }
            // "TREAT" given as Other is the same purpose as Treatment.
            Purpose::from_code(code, None)
        }
    })
}

fn provision(rule: &ConsentRule) -> Result<Provision, WalletError> {
    let mut p = match rule.effect {
        RuleEffect::Permit => Provision::permit(),
        RuleEffect::Deny => Provision::deny(),
    };
    for g in &rule.grantees {
        p = p.actor(match g {
            Grantee::Party { identity: text } => Actor::Party(identity(text)?.sign),
            Grantee::Clinician { institution: i } => match institution(i)? {
                Some(k) => Actor::Role(Role::Clinician { institution: k }),
                None => Actor::AnyClinician,
            },
            Grantee::Researcher { institution: i } => match institution(i)? {
                Some(k) => Actor::Role(Role::Researcher { institution: k }),
                None => Actor::AnyResearcher,
            },
        });
    }
    for a in &rule.actions {
        p = p.action(match a {
            ConsentAction::Read => Action::Read,
            ConsentAction::Search => Action::Search,
            ConsentAction::ResearchUse => Action::ResearchUse,
        });
    }
    for pu in &rule.purposes {
        p = p.purpose(purpose(pu)?);
    }
    for t in &rule.resource_types {
        if !fhir::is_r4_resource_type(t) {
            return Err(WalletError::InvalidArgument {
                reason: format!("{t:?} is not a FHIR R4 resource type"),
            });
        }
        p = p.class(DataClass::ResourceType(t.clone()));
    }
    for c in &rule.codes {
        if c.system.is_empty() || c.code.is_empty() {
            return Err(WalletError::InvalidArgument {
                reason: "a coded concept needs a system and a code".into(),
            });
        }
        p = p.class(DataClass::Code {
            system: c.system.clone(),
            code: c.code.clone(),
        });
    }
    if let Some(per) = period("a rule's period", rule.start_ms, rule.end_ms)? {
        p = p.in_force(per);
    }
    if let Some(per) = period("a rule's data period", rule.data_start_ms, rule.data_end_ms)? {
        p = p.data_within(per);
    }
    Ok(p)
}

/// The core consent for `draft`, checked: structural limits, and that it decodes back to itself
/// (so every field is within the limits validators decode with).
pub(crate) fn build_consent(
    patient: PublicIdentity,
    draft: &ConsentDraft,
) -> Result<Consent, WalletError> {
    let consent = Consent {
        patient,
        issued_ms: draft.issued_ms,
        summary: draft.summary.clone(),
        period: period("the consent's period", draft.start_ms, draft.end_ms)?.unwrap_or_default(),
        emergency: draft.emergency.map(Into::into),
        provisions: draft
            .rules
            .iter()
            .map(provision)
            .collect::<Result<_, _>>()?,
    };
    consent.check()?;
    match Consent::from_bytes(&consent.to_bytes()) {
        Ok(back) if back == consent => Ok(consent),
        Ok(_) => Err(WalletError::InvalidConsent {
            reason: "the consent does not have one canonical form".into(),
        }),
        Err(e) => Err(WalletError::InvalidConsent {
            reason: format!("a field is out of range: {e}"),
        }),
    }
}

/// The signed request for a consent grant: its subject is the id the consent gets on chain (the
/// consent blinded by the wallet, `Consent::grant_body`); the FHIR JSON is the patient's clear
/// copy, which the app keeps (the chain holds no summary and no code in clear).
pub(crate) fn grant_request(consent: &Consent, body: &TxBody) -> SignedRequest {
    let subject_id = match body {
        TxBody::ConsentGranted { document, .. } => {
            Consent::from_bytes(document).map_or_else(|_| consent.id(), |c| c.id())
        }
        _ => consent.id(),
    };
    SignedRequest {
        kind: RequestKind::ConsentGrant,
        subject_id: subject_id.to_string(),
        body: body.to_bytes(),
        fhir_json: Some(consent_to_fhir(consent).to_string()),
    }
}

/// Largest signed request accepted by [`inspect_signed_request`].
const MAX_REQUEST: usize = 512 * 1024;

/// Decodes a signed request (a [`SignedRequest::body`]) and checks its patient signature for
/// `network`: what a node, or a second device, does before submitting it. A request signed for
/// another network does not verify.
///
/// # Errors
/// [`WalletError::Malformed`] for bytes that are not a request body,
/// [`WalletError::BadSignature`] if the patient's signature does not verify for this network,
/// [`WalletError::InvalidArgument`] for a body of another kind (records, key shares).
#[uniffi::export]
pub fn inspect_signed_request(
    body: Vec<u8>,
    network: Arc<TrustedNetwork>,
) -> Result<SignedRequestInfo, WalletError> {
    guard(|| {
        if body.len() > MAX_REQUEST {
            return Err(WalletError::Malformed {
                what: "signed request".into(),
                reason: format!("{} bytes, at most {MAX_REQUEST}", body.len()),
            });
        }
        let tx =
            TxBody::from_bytes(&body).map_err(|e| crate::error::malformed("signed request", &e))?;
        let chain = network.chain_id();
        tx.check(&chain)?;
        match tx {
            TxBody::ConsentGranted { document, patient } => {
                let consent = Consent::from_grant(&chain, &document, &patient)?;
                Ok(SignedRequestInfo {
                    kind: RequestKind::ConsentGrant,
                    subject_id: consent.id().to_string(),
                    patient: consent.patient.to_text(),
                    summary: None,
                    emergency: consent.emergency.map(Into::into),
                    rule_count: u32::try_from(consent.provisions.len()).unwrap_or(u32::MAX),
                })
            }
            TxBody::ConsentRevoked {
                consent_id,
                patient,
            } => Ok(SignedRequestInfo {
                kind: RequestKind::ConsentRevocation,
                subject_id: hex::encode(consent_id),
                patient: patient.patient.to_text(),
                summary: None,
                emergency: None,
                rule_count: 0,
            }),
            TxBody::RecordErased { record_id, patient } => Ok(SignedRequestInfo {
                kind: RequestKind::RecordErasure,
                subject_id: record_id.to_string(),
                patient: patient.patient.to_text(),
                summary: None,
                emergency: None,
                rule_count: 0,
            }),
            _ => Err(WalletError::InvalidArgument {
                reason: "not a patient request (grant, revocation or erasure)".into(),
            }),
        }
    })
}
