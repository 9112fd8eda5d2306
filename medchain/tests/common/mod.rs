//! Helpers shared by the host tests.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use getrandom::SysRng;
use medchain::{Host, Identity, RecordDraft, RecordReceipt, SealedWriterKey};
use medchain_core::credential::{Credential, Role};
use rand_core::UnwrapErr;

pub const HBA1C: &[u8] =
    br#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},
 "effectiveDateTime":"2026-10-14T09:30:00Z",
 "code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},
 "valueQuantity":{"value":7.9,"unit":"%"}}"#;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What `patient`'s wallet hands `host` at enrolment.
pub fn enrolment_at(host: &Host, patient: &Identity) -> SealedWriterKey {
    SealedWriterKey::export(
        patient,
        &host.genesis().chain_id(),
        &host.public(),
        &mut UnwrapErr(SysRng),
    )
    .expect("enrolment")
}

/// `host` adds `patient`'s HbA1c at `at_ms` (she enrols there first); submitted, not committed.
pub fn add_hba1c_to(host: &mut Host, patient: &Identity, at_ms: u64) -> RecordReceipt {
    let enrolment = enrolment_at(host, patient);
    host.add_record(
        RecordDraft {
            fhir: HBA1C,
            enrolment: &enrolment,
            readers: &[],
        },
        at_ms,
    )
    .expect("record")
}

/// A clinician credential `host` issues to `doctor` at `at_ms`, valid for a year.
pub fn credential(host: &Host, doctor: &Identity, at_ms: u64) -> Credential {
    Credential::issue(
        host.identity(),
        &host.genesis().chain_id(),
        doctor.verify_key(),
        Role::Clinician {
            institution: host.key(),
        },
        at_ms + 365 * 86_400_000,
    )
}
