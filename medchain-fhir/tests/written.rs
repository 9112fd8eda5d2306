//! What medchain itself writes as FHIR — Consents (`consent_to_fhir`), AuditEvents
//! (`access::audit_event`) and OperationOutcomes — is valid R4 with no issue.

use medchain_core::access::audit_event;
use medchain_core::consent::{
    consent_to_fhir, Action, Actor, Consent, DataClass, EmergencyPreference, Period, Provision,
    Purpose,
};
use medchain_core::credential::Role;
use medchain_core::hash::{RecordId, TxId};
use medchain_core::keys::Identity;
use medchain_core::ledger::{AuditEntry, AuditKind};
use medchain_fhir::{validate, Options};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn assert_clean(value: &serde_json::Value) {
    let bytes = serde_json::to_vec(value).expect("JSON");
    let report = validate(&bytes, &Options::default());
    assert!(report.issues().is_empty(), "{report}\n{value}");
}

#[test]
fn consents_medchain_exports_are_valid_r4() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let patient = Identity::generate(&mut rng);
    let doctor = Identity::generate(&mut rng);
    let hospital = Identity::generate(&mut rng);
    let span = Period {
        start_ms: Some(1_700_000_000_000),
        end_ms: Some(1_900_000_000_000),
    };
    let consent = Consent {
        patient: patient.public(),
        issued_ms: 1_700_000_000_000,
        summary: "Share my labs with Dr. Ruiz; diabetes research welcome".into(),
        period: span,
        emergency: Some(EmergencyPreference::Allow),
        provisions: vec![
            Provision::permit()
                .actor(Actor::Party(doctor.verify_key()))
                .actor(Actor::Role(Role::Clinician {
                    institution: hospital.verify_key(),
                }))
                .action(Action::Read)
                .action(Action::Search)
                .purpose(Purpose::Treat)
                .class(DataClass::ResourceType("Observation".into()))
                .class(DataClass::Code {
                    system: "http://loinc.org".into(),
                    code: "4548-4".into(),
                })
                .in_force(span)
                .data_within(Period {
                    start_ms: Some(1_600_000_000_000),
                    end_ms: None,
                })
                .nest(Provision::deny().class(DataClass::Code {
                    system: "http://loinc.org".into(),
                    code: "75622-1".into(),
                })),
            Provision::permit()
                .actor(Actor::AnyResearcher)
                .action(Action::ResearchUse)
                .purpose(Purpose::Research {
                    topic: Some("diabetes".into()),
                }),
        ],
    };
    assert_clean(&consent_to_fhir(&consent));
    let refusal = Consent {
        emergency: Some(EmergencyPreference::Refuse),
        provisions: vec![Provision::deny().actor(Actor::AnyClinician)],
        ..consent
    };
    assert_clean(&consent_to_fhir(&refusal));
}

#[test]
fn audit_events_medchain_exports_are_valid_r4() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let patient = Identity::generate(&mut rng);
    let actor = Identity::generate(&mut rng);
    let node = Identity::generate(&mut rng);
    for (kind, consent, emergency) in [
        (AuditKind::KeyShared, true, false),
        (AuditKind::Accessed, false, true),
        (AuditKind::Erased, false, false),
        (AuditKind::Denied, false, false),
    ] {
        let entry = AuditEntry {
            kind,
            record_id: RecordId::from_byte_array([1; 32]),
            patient: patient.verify_key(),
            actor: actor.public(),
            purpose: if emergency { "ETREAT" } else { "TREAT" }.into(),
            consent_id: consent
                .then(|| medchain_core::consent::ConsentId::from_byte_array([2; 32])),
            emergency,
            at_ms: 1_790_000_000_123,
            claimed_at_ms: 1_790_000_000_000,
            node: node.verify_key(),
            tx_id: TxId::from_byte_array([3; 32]),
            height: 42,
            denied_by: (kind == AuditKind::Denied).then(|| "bad_credential".to_owned()),
            relayed_by: (kind == AuditKind::Denied).then(|| node.verify_key()),
        };
        let event = audit_event(&entry);
        assert_clean(&event);
        let refused = kind == AuditKind::Denied;
        assert_eq!(event["outcome"], if refused { "4" } else { "0" });
        if refused {
            assert_eq!(event["outcomeDesc"], "refused: bad_credential");
            assert_eq!(event["agent"][1]["requestor"], false);
        }
    }
}
