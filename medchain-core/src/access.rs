//! The access flow: a clinician asks, the key holder checks the patient's consent, re-wraps the
//! record key, and both the release and the access go on chain; audit entries export as FHIR R4
//! `AuditEvent`.
//!
//! ```text
//! clinician ──request──▶ key holder (patient wallet / originating institution)
//!                         ├─ opens the record (sees its codes) and evaluates strictly
//!                         ├─ KeyShared    {record, grantee, purpose, consent, key envelope}
//!                         └─ AccessLogged {record, accessor, purpose, consent, emergency}
//! validators: re-evaluate the KeyShared against the consents in force (class level)
//! ```

use rand_core::{CryptoRng, Rng};
use serde_json::{json, Value};
use thiserror::Error;

use crate::consent::{
    evaluate, AccessRequest, Action, ConsentState, Decision, DenyReason, Purpose, RecordFacts,
};
use crate::credential::Credential;
use crate::fhir;
use crate::keys::{Identity, PublicIdentity};
use crate::ledger::{AuditEntry, AuditKind};
use crate::seal::{SealError, SealedRecord};
use crate::tx::{RecordClass, TxBody};

/// A key release could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The patient's consent does not permit the request.
    #[error("access denied: {0}")]
    Denied(DenyReason),
    /// The holder cannot open the record.
    #[error("the key holder cannot open the record: {0}")]
    Seal(#[from] SealError),
    /// Research receives de-identified data, never record keys.
    #[error("research access is served de-identified, not by releasing record keys")]
    ResearchNeedsDeidentification,
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

/// What a key holder knows of a record once opened: its type, codes and date.
///
/// # Errors
/// [`AccessError::Seal`] if the holder cannot open the record.
pub fn record_facts(holder: &Identity, sealed: &SealedRecord) -> Result<RecordFacts, AccessError> {
    let opened = sealed.open(holder)?;
    let resource = opened.resource().map_err(SealError::from)?;
    Ok(RecordFacts {
        resource_type: resource.resource_type().to_owned(),
        codes: Some(fhir::codings(resource.json())),
        date_ms: fhir::clinical_date_ms(resource.json()),
    })
}

/// The record class that goes on chain for a resource (its type and month).
///
/// # Errors
/// [`fhir::FhirError`] if the payload is not a FHIR R4 resource.
pub fn record_class(payload: &[u8]) -> Result<RecordClass, fhir::FhirError> {
    let r = fhir::parse_resource(payload)?;
    Ok(RecordClass {
        resource_type: r.resource_type().to_owned(),
        month: fhir::clinical_date_ms(r.json()).map_or(0, fhir::year_month),
    })
}

/// The key holder's side: opens the record, evaluates the request strictly (with the record's
/// codes) against the patient's consents at `now_ms` and `height`, and if permitted wraps the
/// record key for `grantee` and writes the access log.
///
/// `emergency` asks for break-glass access (purpose `ETREAT`); `credential` is the grantee's
/// role credential (checked again by validators).
///
/// # Errors
/// [`AccessError::Denied`] with the readable reason, [`AccessError::Seal`],
/// [`AccessError::ResearchNeedsDeidentification`].
#[allow(clippy::too_many_arguments)]
pub fn release_key<R: Rng + CryptoRng>(
    holder: &Identity,
    sealed: &SealedRecord,
    grantee: &PublicIdentity,
    credential: Option<Credential>,
    purpose: Purpose,
    emergency: bool,
    consents: &[ConsentState],
    now_ms: u64,
    height: u64,
    rng: &mut R,
) -> Result<KeyRelease, AccessError> {
    if matches!(purpose, Purpose::Research { .. }) {
        return Err(AccessError::ResearchNeedsDeidentification);
    }
    let facts = record_facts(holder, sealed)?;
    let request = AccessRequest {
        requester: grantee.sign,
        roles: credential.iter().map(|c| c.role).collect(),
        action: Action::Read,
        purpose: purpose.clone(),
        record: facts,
        emergency,
    };
    let decision = evaluate(&request, consents, now_ms, height);
    let consent_id = match &decision {
        Decision::Permit(by) => Some(by.consent.to_byte_array()),
        Decision::EmergencyPermit => None,
        Decision::Deny(reason) => return Err(AccessError::Denied(reason.clone())),
    };
    let envelope = sealed.share_with(holder, grantee, rng)?;
    Ok(KeyRelease {
        key_shared: TxBody::KeyShared {
            record_id: sealed.record_id(),
            grantee: *grantee,
            purpose: purpose.code().to_owned(),
            consent_id,
            credential,
            envelope: Some(envelope),
        },
        access_logged: TxBody::AccessLogged {
            record_id: sealed.record_id(),
            accessor: *grantee,
            purpose: purpose.code().to_owned(),
            consent_id,
            emergency: consent_id.is_none(),
            accessed_at_ms: now_ms,
        },
        decision,
    })
}

/// An audit entry as a FHIR R4 `AuditEvent`.
pub fn audit_event(entry: &AuditEntry) -> Value {
    let (subtype, action) = match entry.kind {
        AuditKind::KeyShared => ("disclose", "E"),
        AuditKind::Accessed => ("read", "R"),
        AuditKind::Erased => ("delete", "D"),
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
    json!({
        "resourceType": "AuditEvent",
        "id": entry.tx_id.to_string(),
        "extension": [{"url": "urn:medchain:break-glass", "valueBoolean": entry.emergency}],
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
    })
}
