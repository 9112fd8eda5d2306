//! The research fixture shared by `tests/research.rs` and `benches/research.rs`: records a
//! member holds, patients' diabetes-research consents, the study and the researcher's
//! credential.
#![allow(dead_code, missing_docs)]

use medchain_core::access::record_class;
use medchain_core::consent::{
    Action, Actor, Consent, ConsentTagKey, DataClass, Period, Provision, Purpose,
};
use medchain_core::credential::{Credential, Role};
use medchain_core::keys::Identity;
use medchain_core::research::Study;
use medchain_core::seal::{seal_record_as, SealedRecord};
use medchain_core::testkit::TestNet;
use medchain_core::tx::{Transaction, TxBody};

/// Node 4 (a validator-less member) holds the records; node 5 is the research institute.
pub const HOLDER: usize = 4;
pub const INSTITUTE: usize = 5;

pub const DIAGNOSIS: &str = r#"{"resourceType":"Condition","recordedDate":"2025-11-20","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]}}"#;

pub fn hba1c(i: usize) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/mrn-{i}"}},"effectiveDateTime":"2026-05-02","code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4"}}]}},"valueQuantity":{{"value":{}.5,"unit":"%"}}}}"#,
        5 + i % 4
    )
}

/// `fhir` sealed for `patient` and the holder, and the holder's `RecordAdded` for it.
pub fn record(net: &mut TestNet, patient: &Identity, fhir: &str) -> (SealedRecord, Transaction) {
    // As a node writes (`Host::prepare_record`): the holder's own envelope is a self envelope.
    let sealed = seal_record_as(
        &net.nodes[HOLDER],
        fhir.as_bytes(),
        &patient.public(),
        &[],
        &mut net.rng,
    )
    .expect("seal");
    let class = record_class(
        fhir.as_bytes(),
        &ConsentTagKey::for_patient(patient),
        &mut net.rng,
    )
    .expect("class");
    let tx = net.tx(HOLDER, &TxBody::record_added(sealed.clone(), class), vec![]);
    (sealed, tx)
}

/// `patient`'s consent to diabetes research by any researcher, submitted by node 0.
pub fn research_grant(net: &mut TestNet, patient: &Identity) -> Transaction {
    let consent = Consent {
        patient: patient.public(),
        issued_ms: net.now_ms,
        summary: "my data may be used for diabetes research".into(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit()
            .actor(Actor::AnyResearcher)
            .action(Action::ResearchUse)
            .purpose(Purpose::Research {
                topic: Some("diabetes".into()),
            })],
    };
    let body = consent
        .grant_body(patient, &net.genesis.chain_id())
        .expect("grant");
    net.tx(0, &body, vec![])
}

/// The study: HbA1c observations and every Condition, for diabetes research.
pub fn diabetes_study(id: &str) -> Study {
    Study {
        id: id.into(),
        purpose: "HRESCH".into(),
        topic: Some("diabetes".into()),
        classes: vec![
            DataClass::Code {
                system: "http://loinc.org".into(),
                code: "4548-4".into(),
            },
            DataClass::ResourceType("Condition".into()),
        ],
        longitudinal: false,
    }
}

/// A researcher credential `researcher` holds from node `issuer`, valid for a day.
pub fn credential(net: &TestNet, issuer: usize, researcher: &Identity) -> Credential {
    let institute = &net.nodes[issuer];
    Credential::issue(
        institute,
        &net.genesis.chain_id(),
        researcher.verify_key(),
        Role::Researcher {
            institution: institute.verify_key(),
        },
        net.now_ms + 86_400_000,
    )
}
