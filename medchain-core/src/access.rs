//! The access flow: a clinician asks, the key holder checks the patient's consent, re-wraps the
//! record key, and both the release and the access go on chain; audit entries export as FHIR R4
//! `AuditEvent`.
//!
//! ```text
//! clinician ──request──▶ key holder (the institution that added the record)
//!                         ├─ opens the record (sees its codes) and evaluates strictly
//!                         ├─ runs the validators' own rule on both bodies (credential, holder,
//!                         │  erasure, consent named, emergency log) — nothing wrapped before
//!                         ├─ KeyShared    {record, grantee, purpose, consent, key envelope}
//!                         └─ AccessLogged {record, accessor, purpose, consent, emergency}
//! validators: re-evaluate both against the consents in force (class level, block time)
//! ```

use rand_core::{CryptoRng, Rng};
use serde_json::{json, Value};
use thiserror::Error;

use crate::block::TxContext;
use crate::consent::{
    evaluate, AccessRequest, Action, CodeTagError, ConsentTagKey, Decision, Denial, Purpose,
    RecordDate, RecordFacts,
};
use crate::credential::Credential;
use crate::fhir;
use crate::genesis::Genesis;
use crate::keys::{Identity, PublicIdentity};
use crate::ledger::{
    rules_over, AuditEntry, AuditKind, PreviewError, RuleError, StateError, StateView,
};
use crate::seal::{NetworkKey, SealError, SealedRecord};
use crate::tx::{RecordClass, TxBody};

/// A key release could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The patient's consent does not permit the request (judged with the record's codes and
    /// exact date). Its message is generic, fit for the requester; the detail
    /// ([`Denial::detail`]) is for the patient's own audit view ([`denial_audit_event`]).
    #[error("access denied: {0}")]
    Denied(Denial),
    /// The holder cannot open the record.
    #[error("the key holder cannot open the record: {0}")]
    Seal(#[from] SealError),
    /// Research receives de-identified data, never record keys.
    #[error("research access is served de-identified, not by releasing record keys")]
    ResearchNeedsDeidentification,
    /// Validators would refuse the release (a ledger rule: credential, record holder, erased,
    /// consent, emergency): nothing was wrapped.
    #[error("the network would refuse this release: {0}")]
    Rule(RuleError),
    /// The ledger state could not be read: nothing was judged or wrapped.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<PreviewError> for AccessError {
    fn from(e: PreviewError) -> Self {
        match e {
            PreviewError::Rule(r) => Self::Rule(r),
            PreviewError::State(s) => Self::State(s),
        }
    }
}

/// The two transactions of a key release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRelease {
    /// The `KeyShared` body (the record key wrapped for the grantee).
    pub key_shared: TxBody,
    /// The `AccessLogged` body.
    pub access_logged: TxBody,
    /// The verdict it was made under.
    pub decision: Decision,
}

/// What a clinician asks of a record's key holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// Who is to read the record.
    pub grantee: PublicIdentity,
    /// The grantee's role credential (a role-based consent or an emergency needs one).
    pub credential: Option<Credential>,
    /// Why: `ETREAT` is a break-glass emergency access.
    pub purpose: Purpose,
}

/// The ledger a key holder judges a release against: the committed state, the genesis and
/// the network key (what a validator holds).
#[derive(Clone, Copy)]
pub struct LedgerView<'a> {
    /// The committed state (a store, or an in-memory [`crate::ledger::LedgerState`]).
    pub state: &'a dyn StateView,
    /// The network.
    pub genesis: &'a Genesis,
    /// The network key.
    pub network: &'a NetworkKey,
}

impl std::fmt::Debug for LedgerView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerView")
            .field("height", &self.state.height())
            .finish_non_exhaustive()
    }
}

/// What a key holder knows of a record once opened: its type, its codes (in clear, and blinded
/// as its on-chain `class` carries them) and its exact date.
///
/// # Errors
/// [`AccessError::Seal`] if the holder cannot open the record.
pub fn record_facts(
    holder: &Identity,
    sealed: &SealedRecord,
    class: &RecordClass,
) -> Result<RecordFacts, AccessError> {
    let opened = sealed.open(holder)?;
    let resource = opened.resource().map_err(SealError::from)?;
    Ok(RecordFacts {
        resource_type: resource.resource_type().to_owned(),
        codes: Some(fhir::codings(resource.json())),
        code_tags: Some(class.code_tags.clone()),
        date: RecordDate::exact(fhir::clinical_date_ms(resource.json())),
    })
}

/// A record class could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClassError {
    /// The payload is not a FHIR R4 resource.
    #[error(transparent)]
    NotFhir(#[from] fhir::FhirError),
    /// The record holds more codes than a class can carry blinded.
    #[error(transparent)]
    Codes(#[from] CodeTagError),
}

/// The record class that goes on chain for a resource: its type, the year of its clinical date
/// (none for a type that withholds it, [`RecordClass::withholds_date`]), and every code it holds
/// blinded under its patient's consent tag `key` (which the writer received at enrolment),
/// padded with random tags to a bucket.
///
/// # Errors
/// [`ClassError::NotFhir`] if the payload is not a FHIR R4 resource, [`ClassError::Codes`] if it
/// holds more codes than `consent::MAX_CODE_TAGS`.
pub fn record_class<R: Rng + CryptoRng>(
    payload: &[u8],
    key: &ConsentTagKey,
    rng: &mut R,
) -> Result<RecordClass, ClassError> {
    let r = fhir::parse_resource(payload)?;
    let resource_type = r.resource_type().to_owned();
    let year = if RecordClass::withholds_date(&resource_type) {
        0
    } else {
        fhir::clinical_date_ms(r.json()).map_or(0, |ms| u16::try_from(fhir::year(ms)).unwrap_or(0))
    };
    Ok(RecordClass {
        resource_type,
        year: if year > 9999 { 0 } else { year },
        code_tags: key.record_tags(&fhir::codings(r.json()), rng)?,
    })
}

/// The key holder's side of an access: judges the request, and only then wraps the record key
/// for the grantee and writes the access log.
///
/// In order, before any key is wrapped:
/// 1. research is refused (it is served de-identified);
/// 2. the request is evaluated strictly, with the record's codes, against the consents of the
///    record's patient in `ledger` at `now_ms` (`ETREAT` asks for break-glass access);
/// 3. the `KeyShared` and `AccessLogged` bodies are judged by exactly the ledger rule
///    validators apply ([`crate::ledger::LedgerRules::preview`]), as if in the next block at
///    `now_ms`: the credential against genesis, the grantee and the time; the holder is the
///    node that added the record; the record is not erased; the consent named permits it; an
///    emergency release has its log.
///
/// # Errors
/// [`AccessError::ResearchNeedsDeidentification`], [`AccessError::Denied`] with the readable
/// reason, [`AccessError::Rule`] with the rule validators would apply, [`AccessError::Seal`],
/// [`AccessError::State`].
pub fn release_key<R: Rng + CryptoRng>(
    holder: &Identity,
    sealed: &SealedRecord,
    request: ReleaseRequest,
    ledger: LedgerView<'_>,
    now_ms: u64,
    rng: &mut R,
) -> Result<KeyRelease, AccessError> {
    let ReleaseRequest {
        grantee,
        credential,
        purpose,
    } = request;
    if matches!(purpose, Purpose::Research { .. }) {
        return Err(AccessError::ResearchNeedsDeidentification);
    }
    let patient = sealed.patient();
    let mut consents = ledger.state.consents_of(&patient.sign)?;
    consents.retain(|c| &c.consent.patient == patient && c.consent.id() == c.id);
    let entry = ledger
        .state
        .record(&sealed.record_id())?
        .ok_or(AccessError::Rule(RuleError::UnknownRecord))?;
    if entry.patient != *patient {
        return Err(AccessError::Rule(RuleError::UnknownRecord));
    }
    let facts = record_facts(holder, sealed, &entry.class)?;
    let ctx = TxContext {
        height: ledger.state.height().saturating_add(1),
        block_time_ms: now_ms,
    };
    let emergency = purpose == Purpose::EmergencyTreat;
    let request = AccessRequest {
        requester: grantee.sign,
        roles: credential.iter().map(|c| c.role).collect(),
        action: Action::Read,
        purpose: purpose.clone(),
        record: facts,
        emergency,
    };
    let decision = evaluate(&request, &consents, now_ms, ctx.height);
    let consent_id = match &decision {
        Decision::Permit(by) => Some(by.consent.to_byte_array()),
        Decision::EmergencyPermit => None,
        Decision::Deny(reason) => return Err(AccessError::Denied(Denial::new(reason.clone()))),
    };
    let mut key_shared = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee,
        purpose: purpose.code().to_owned(),
        consent_id,
        credential,
        envelope: None,
    };
    let access_logged = TxBody::AccessLogged {
        record_id: sealed.record_id(),
        accessor: grantee,
        purpose: purpose.code().to_owned(),
        consent_id,
        emergency: consent_id.is_none(),
        accessed_at_ms: now_ms,
    };
    let mut rules = rules_over(ledger.state, ledger.genesis, ledger.network);
    let me = holder.verify_key();
    rules.preview(&ctx, &me, &key_shared)?;
    rules.preview(&ctx, &me, &access_logged)?;
    rules.preview_finish().map_err(AccessError::Rule)?;
    // Every check validators make has passed: only now does the key leave the holder.
    let wrapped = sealed.share_with(holder, &grantee, rng)?;
    if let TxBody::KeyShared { envelope, .. } = &mut key_shared {
        *envelope = Some(wrapped);
    }
    Ok(KeyRelease {
        key_shared,
        access_logged,
        decision,
    })
}

/// A refused request as a FHIR R4 `AuditEvent` for the **patient's own audit view**: who asked
/// for which record, when and why, and the full reason ([`Denial::detail`]: the consent and
/// provision that denied, or that the consent was revoked or expired) in `outcomeDesc`, with
/// `outcome` `4` (minor failure). The requester is told only the generic [`Denial`] message.
/// Nothing of it goes on chain, where every member would read it: the key holder hands it to
/// the patient.
pub fn denial_audit_event(
    record: &crate::hash::RecordId,
    requester: &PublicIdentity,
    purpose: &Purpose,
    at_ms: u64,
    denial: &Denial,
) -> Value {
    let purpose = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose.code()}]}]);
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": fhir::format_instant(at_ms),
        "outcome": "4",
        "outcomeDesc": denial.detail().to_string(),
        "purposeOfEvent": purpose,
        "agent": [{
            "who": {"identifier": {"system": "urn:medchain:identity", "value": requester.to_text()}},
            "requestor": true,
            "purposeOfUse": purpose
        }],
        "entity": [{
            "what": {"identifier": {"system": "urn:medchain:record", "value": record.to_string()}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}
        }]
    })
}

/// An audit entry as a FHIR R4 `AuditEvent`: `recorded` is the block's time (checked by the
/// validators); the time the transaction claimed is the extension `urn:medchain:claimed-time`.
pub fn audit_event(entry: &AuditEntry) -> Value {
    let (subtype, action) = match entry.kind {
        AuditKind::KeyShared => ("disclose", "E"),
        AuditKind::Accessed => ("read", "R"),
        AuditKind::Erased => ("delete", "D"),
        // A refused key request: a read that did not happen (`outcome` 4 below).
        AuditKind::Denied => ("read", "R"),
    };
    let mut entity = vec![json!({
        "what": {"identifier": {"system": "urn:medchain:record", "value": entry.record_id.to_string()}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}
    })];
    if let Some(c) = &entry.consent_id {
        entity.push(json!({
            "what": {"identifier": {"system": "urn:medchain:consent", "value": c.to_string()}},
            "type": {"system": "http://hl7.org/fhir/resource-types", "code": "Consent"}
        }));
    }
    let purpose = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": entry.purpose}]}]);
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": entry.tx_id.to_string(),
        "extension": [
            {"url": "urn:medchain:break-glass", "valueBoolean": entry.emergency},
            {"url": "urn:medchain:claimed-time", "valueInstant": fhir::format_instant(entry.claimed_at_ms)}
        ],
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
        "action": action,
        "recorded": fhir::format_instant(entry.at_ms),
        "outcome": "0",
        "purposeOfEvent": purpose,
        "agent": [{
            "who": {"identifier": {"system": "urn:medchain:identity", "value": entry.actor.to_text()}},
            "requestor": true,
            "purposeOfUse": purpose
        }],
        "source": {
            "site": format!("block {}", entry.height),
            "observer": {"identifier": {"system": "urn:medchain:node", "value": entry.node.to_string()}}
        },
        "entity": entity
    });
    if entry.kind == AuditKind::Denied {
        // The rule's name only: which consent or provision refused is the patient's to see
        // (`denial_audit_event`), not every member's.
        event["outcome"] = json!("4");
        event["outcomeDesc"] = json!(format!(
            "refused: {}",
            entry.denied_by.as_deref().unwrap_or("denied")
        ));
        // The institution whose node relayed the request (IHE BALP: the requesting system).
        if let (Some(relay), Some(agents)) = (&entry.relayed_by, event["agent"].as_array_mut()) {
            agents.push(json!({
                "type": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110153", "display": "Source Role ID"}]},
                "who": {"identifier": {"system": "urn:medchain:node", "value": relay.to_string()}},
                "requestor": false
            }));
        }
    }
    event
}
