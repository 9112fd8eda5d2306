use super::*;
use crate::access::{audit_event, record_class, release_key, AccessError};
use crate::consent::{Actor, DenyReason, EmergencyPreference, Period, Provision};
use crate::credential::{Credential, Role};
use crate::election::VrfSecret;
use crate::encoding::Encode;
use crate::genesis::{Member, Quorum, Timing};
use crate::keys::Identity;
use crate::seal::seal_record;
use crate::tx::{Transaction, TxBody};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const OBS: &[u8] = br#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1,"unit":"%"}}"#;
const HIV: &[u8] = br#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-02","code":{"coding":[{"system":"http://loinc.org","code":"75622-1"}]},"valueString":"negative"}"#;
const T0: u64 = 1_790_000_000_000;

struct Fx {
    rng: ChaCha20Rng,
    genesis: Genesis,
    net: NetworkKey,
    hospital: Identity,
    clinic: Identity,
    patient: Identity,
    doctor: Identity,
    er_doctor: Identity,
    state: LedgerState,
    nonce: u64,
}

fn fx() -> Fx {
    let mut rng = ChaCha20Rng::seed_from_u64(1234);
    let hospital = Identity::generate(&mut rng);
    let clinic = Identity::generate(&mut rng);
    let members = [&hospital, &clinic]
        .iter()
        .enumerate()
        .map(|(i, id)| Member {
            name: format!("inst-{i}"),
            identity: id.public(),
            vrf: VrfSecret::derive(id).unwrap().public(),
            validator: true,
        })
        .collect();
    let net = NetworkKey::generate(&mut rng);
    let genesis = Genesis::new(
        "t",
        0,
        net.fingerprint(),
        members,
        Quorum::TWO_THIRDS,
        Timing::DEFAULT,
        1000,
    )
    .unwrap();
    Fx {
        patient: Identity::generate(&mut rng),
        doctor: Identity::generate(&mut rng),
        er_doctor: Identity::generate(&mut rng),
        rng,
        genesis,
        net,
        hospital,
        clinic,
        state: LedgerState::new(),
        nonce: 0,
    }
}

impl Fx {
    fn tx(&mut self, by_clinic: bool, body: &TxBody, at: u64) -> Transaction {
        self.nonce += 1;
        let node = if by_clinic {
            &self.clinic
        } else {
            &self.hospital
        };
        Transaction::create(node, at, self.nonce, body, vec![], &self.net, &mut self.rng).unwrap()
    }

    /// Validates `txs` as the next block's transactions and commits them.
    fn block(&mut self, txs: Vec<Transaction>) -> Result<(), InvalidReason> {
        let effects = {
            let mut rules = self.state.rules(&self.genesis, &self.net);
            for tx in txs {
                rules.check(&tx.verify().unwrap())?;
            }
            rules.finish()?;
            rules.into_effects()
        };
        self.state.commit(effects).unwrap();
        Ok(())
    }

    fn add_record(&mut self, payload: &[u8]) -> crate::seal::SealedRecord {
        let sealed = seal_record(
            payload,
            &self.patient.public(),
            &[self.hospital.public()],
            &mut self.rng,
        )
        .unwrap();
        let body = TxBody::record_added(sealed.clone(), record_class(payload).unwrap());
        let tx = self.tx(false, &body, T0);
        self.block(vec![tx]).unwrap();
        sealed
    }

    fn grant(&mut self, c: &Consent) -> ConsentId {
        let body = c.grant_body(&self.patient).unwrap();
        let tx = self.tx(false, &body, T0);
        self.block(vec![tx]).unwrap();
        c.id()
    }

    fn consent(&self, provisions: Vec<Provision>) -> Consent {
        Consent {
            patient: self.patient.public(),
            issued_ms: T0,
            summary: "Dr. Ruiz may read my labs for my treatment".into(),
            period: Period::default(),
            emergency: None,
            provisions,
        }
    }
}

#[test]
fn grant_read_audit_revoke_deny() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let c = f.consent(vec![Provision::permit()
        .actor(Actor::Party(f.doctor.verify_key()))
        .action(Action::Read)
        .purpose(Purpose::Treat)]);
    let cid = f.grant(&c);
    assert_eq!(f.state.consents_of(&f.patient.verify_key()).len(), 1);

    // The hospital (a reader of the record) releases the key to the doctor.
    let consents = f.state.consents_of(&f.patient.verify_key());
    let release = release_key(
        &f.hospital,
        &sealed,
        &f.doctor.public(),
        None,
        Purpose::Treat,
        false,
        &consents,
        T0 + 1,
        f.state.height() + 1,
        &mut f.rng,
    )
    .unwrap();
    let tx1 = f.tx(false, &release.key_shared, T0 + 1);
    let tx2 = f.tx(false, &release.access_logged, T0 + 1);
    f.block(vec![tx1, tx2]).unwrap();

    // The doctor opens the record with the shared envelope.
    let TxBody::KeyShared {
        envelope: Some(env),
        ..
    } = &release.key_shared
    else {
        panic!()
    };
    assert_eq!(
        sealed
            .open_with(&f.doctor, std::slice::from_ref(env))
            .unwrap()
            .payload(),
        OBS
    );

    // The patient sees who read what, when, why, under which consent.
    let trail = f.state.audit_of_patient(&f.patient.verify_key());
    assert_eq!(trail.len(), 2);
    assert!(trail
        .iter()
        .all(|a| a.actor == f.doctor.public() && a.consent_id == Some(cid) && !a.emergency));
    let ev = audit_event(trail[1]);
    assert_eq!(ev["resourceType"], "AuditEvent");
    assert_eq!(ev["action"], "R");
    assert_eq!(ev["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(
        ev["entity"][1]["what"]["identifier"]["value"],
        cid.to_string()
    );

    // Revocation: from the next block on, the release is denied by the holder and by validators.
    let revoke = Consent::revoke_body(&f.patient, &cid);
    let tx = f.tx(false, &revoke, T0 + 2);
    f.block(vec![tx]).unwrap();
    assert!(f.state.consent(&cid).unwrap().revoked_at.is_some());
    let consents = f.state.consents_of(&f.patient.verify_key());
    let err = release_key(
        &f.hospital,
        &sealed,
        &f.doctor.public(),
        None,
        Purpose::Treat,
        false,
        &consents,
        T0 + 3,
        f.state.height() + 1,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(err, AccessError::Denied(DenyReason::Revoked));
    assert_eq!(
        err.to_string(),
        "access denied: the patient revoked the consent that permitted this"
    );
    // A node that ignores the revocation cannot get its KeyShared into a block.
    let forged = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee: f.doctor.public(),
        purpose: "TREAT".into(),
        consent_id: Some(cid.to_byte_array()),
        credential: None,
        envelope: Some(
            sealed
                .share_with(&f.hospital, &f.doctor.public(), &mut f.rng)
                .unwrap(),
        ),
    };
    let tx = f.tx(false, &forged, T0 + 3);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
}

#[test]
fn consent_rules_in_validation() {
    let mut f = fx();
    let sealed = f.add_record(HIV);
    // A consent not signed by its patient never enters a block.
    let c = f.consent(vec![Provision::permit()]);
    let doc = c.to_bytes();
    let forged = TxBody::ConsentGranted {
        patient: crate::tx::PatientSignature {
            patient: f.patient.public(),
            signature: f.doctor.sign(crate::hash::domain::CONSENT_SIG, &doc),
        },
        document: doc,
    };
    let err =
        Transaction::create(&f.hospital, T0, 99, &forged, vec![], &f.net, &mut f.rng).unwrap_err();
    assert_eq!(err, crate::tx::TxError::BadPatientSignature);
    // Granting the same consent twice is refused.
    let cid = f.grant(&c);
    let again = c.grant_body(&f.patient).unwrap();
    let tx = f.tx(false, &again, T0);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
    // Someone else cannot revoke it.
    let other = Identity::generate(&mut f.rng);
    let bad = Consent::revoke_body(&other, &cid);
    let tx = f.tx(false, &bad, T0);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
    // A KeyShared naming a consent that does not permit it (wrong consent id) is refused.
    let ks = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee: f.doctor.public(),
        purpose: "TREAT".into(),
        consent_id: Some([9; 32]),
        credential: None,
        envelope: Some(
            sealed
                .share_with(&f.hospital, &f.doctor.public(), &mut f.rng)
                .unwrap(),
        ),
    };
    let tx = f.tx(false, &ks, T0);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
    // Research never receives record keys.
    let ks = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee: f.doctor.public(),
        purpose: "HRESCH".into(),
        consent_id: Some(cid.to_byte_array()),
        credential: None,
        envelope: Some(
            sealed
                .share_with(&f.hospital, &f.doctor.public(), &mut f.rng)
                .unwrap(),
        ),
    };
    let tx = f.tx(false, &ks, T0);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
    // A replayed transaction is a duplicate.
    let body = TxBody::AccessLogged {
        record_id: sealed.record_id(),
        accessor: f.patient.public(),
        purpose: "PATRQT".into(),
        consent_id: None,
        emergency: false,
        accessed_at_ms: T0,
    };
    let tx = f.tx(false, &body, T0);
    f.block(vec![tx.clone()]).unwrap();
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::DuplicateTransaction));
}

#[test]
fn emergency_access_is_allowed_by_preference_and_always_logged() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let cred = Credential::issue(
        &f.clinic,
        f.er_doctor.verify_key(),
        Role::Clinician {
            institution: f.clinic.verify_key(),
        },
        T0 + 1000,
    );
    let consents = f.state.consents_of(&f.patient.verify_key());
    let release = release_key(
        &f.hospital,
        &sealed,
        &f.er_doctor.public(),
        Some(cred.clone()),
        Purpose::EmergencyTreat,
        true,
        &consents,
        T0,
        f.state.height() + 1,
        &mut f.rng,
    )
    .unwrap();
    assert_eq!(release.decision, Decision::EmergencyPermit);
    // Without its emergency access log, the key release is refused.
    let ks = f.tx(true, &release.key_shared, T0);
    assert_eq!(f.block(vec![ks.clone()]), Err(InvalidReason::RuleViolation));
    let log = f.tx(true, &release.access_logged, T0);
    f.block(vec![ks, log]).unwrap();
    let trail = f.state.audit_of_record(&sealed.record_id());
    assert!(trail
        .iter()
        .any(|a| a.emergency && a.kind == AuditKind::Accessed && a.actor == f.er_doctor.public()));
    assert_eq!(audit_event(trail[0])["extension"][0]["valueBoolean"], true);

    // Without a clinician credential: denied.
    let err = release_key(
        &f.hospital,
        &sealed,
        &f.er_doctor.public(),
        None,
        Purpose::EmergencyTreat,
        true,
        &consents,
        T0,
        9,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(err, AccessError::Denied(DenyReason::NotAClinician));
    // An expired credential is refused by validators.
    let old = Credential::issue(
        &f.clinic,
        f.er_doctor.verify_key(),
        Role::Clinician {
            institution: f.clinic.verify_key(),
        },
        T0 - 1,
    );
    let ks = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee: f.er_doctor.public(),
        purpose: "ETREAT".into(),
        consent_id: None,
        credential: Some(old),
        envelope: Some(
            sealed
                .share_with(&f.hospital, &f.er_doctor.public(), &mut f.rng)
                .unwrap(),
        ),
    };
    let log = TxBody::AccessLogged {
        record_id: sealed.record_id(),
        accessor: f.er_doctor.public(),
        purpose: "ETREAT".into(),
        consent_id: None,
        emergency: true,
        accessed_at_ms: T0,
    };
    let (a, b) = (f.tx(true, &ks, T0), f.tx(true, &log, T0));
    assert_eq!(f.block(vec![a, b]), Err(InvalidReason::RuleViolation));

    // The patient refuses emergency access: denied by the holder and by validators.
    let refuse = Consent {
        emergency: Some(EmergencyPreference::Refuse),
        ..f.consent(vec![])
    };
    f.grant(&refuse);
    let consents = f.state.consents_of(&f.patient.verify_key());
    let err = release_key(
        &f.hospital,
        &sealed,
        &f.er_doctor.public(),
        Some(cred.clone()),
        Purpose::EmergencyTreat,
        true,
        &consents,
        T0 + 5,
        9,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(err, AccessError::Denied(DenyReason::EmergencyRefused));
    let ks = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee: f.er_doctor.public(),
        purpose: "ETREAT".into(),
        consent_id: None,
        credential: Some(cred),
        envelope: Some(
            sealed
                .share_with(&f.hospital, &f.er_doctor.public(), &mut f.rng)
                .unwrap(),
        ),
    };
    let (a, b) = (f.tx(true, &ks, T0 + 5), f.tx(true, &log, T0 + 5));
    assert_eq!(f.block(vec![a, b]), Err(InvalidReason::RuleViolation));
}

#[test]
fn erasure_blocks_further_sharing_and_prunes() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let c = f.consent(vec![
        Provision::permit().actor(Actor::Party(f.doctor.verify_key()))
    ]);
    let cid = f.grant(&c);
    // Only the patient may erase.
    let wrong = TxBody::RecordErased {
        record_id: sealed.record_id(),
        patient: crate::tx::PatientSignature::sign(
            &f.doctor,
            crate::hash::domain::ERASURE_SIG,
            sealed.record_id().as_byte_array(),
        ),
    };
    let tx = f.tx(false, &wrong, T0);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
    let erase = TxBody::RecordErased {
        record_id: sealed.record_id(),
        patient: crate::tx::PatientSignature::sign(
            &f.patient,
            crate::hash::domain::ERASURE_SIG,
            sealed.record_id().as_byte_array(),
        ),
    };
    let tx = f.tx(false, &erase, T0);
    f.block(vec![tx]).unwrap();
    assert!(f.state.record(&sealed.record_id()).unwrap().erased);
    let ks = TxBody::KeyShared {
        record_id: sealed.record_id(),
        grantee: f.doctor.public(),
        purpose: "TREAT".into(),
        consent_id: Some(cid.to_byte_array()),
        credential: None,
        envelope: Some(
            sealed
                .share_with(&f.hospital, &f.doctor.public(), &mut f.rng)
                .unwrap(),
        ),
    };
    let tx = f.tx(false, &ks, T0);
    assert_eq!(f.block(vec![tx]), Err(InvalidReason::RuleViolation));
    assert_eq!(
        f.state
            .audit_of_patient(&f.patient.verify_key())
            .last()
            .unwrap()
            .kind,
        AuditKind::Erased
    );
}

#[test]
fn role_based_consent_with_credentials() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let c = f.consent(vec![Provision::permit()
        .actor(Actor::Role(Role::Clinician {
            institution: f.clinic.verify_key(),
        }))
        .purpose(Purpose::Treat)
        .class(crate::consent::DataClass::ResourceType(
            "Observation".into(),
        ))]);
    f.grant(&c);
    let consents = f.state.consents_of(&f.patient.verify_key());
    let cred = Credential::issue(
        &f.clinic,
        f.doctor.verify_key(),
        Role::Clinician {
            institution: f.clinic.verify_key(),
        },
        T0 + 10,
    );
    let release = release_key(
        &f.hospital,
        &sealed,
        &f.doctor.public(),
        Some(cred),
        Purpose::Treat,
        false,
        &consents,
        T0,
        f.state.height() + 1,
        &mut f.rng,
    )
    .unwrap();
    let a = f.tx(false, &release.key_shared, T0);
    let b = f.tx(false, &release.access_logged, T0);
    f.block(vec![a, b]).unwrap();
    // A clinician of the other institution is denied.
    let cred = Credential::issue(
        &f.hospital,
        f.er_doctor.verify_key(),
        Role::Clinician {
            institution: f.hospital.verify_key(),
        },
        T0 + 10,
    );
    let err = release_key(
        &f.hospital,
        &sealed,
        &f.er_doctor.public(),
        Some(cred),
        Purpose::Treat,
        false,
        &consents,
        T0,
        9,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(err, AccessError::Denied(DenyReason::NoConsent));
    // Research access goes through de-identification, not key release.
    let err = release_key(
        &f.hospital,
        &sealed,
        &f.er_doctor.public(),
        None,
        Purpose::Research { topic: None },
        false,
        &consents,
        T0,
        9,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(err, AccessError::ResearchNeedsDeidentification);
}

#[test]
fn overlay_sees_uncommitted_effects() {
    let mut f = fx();
    let sealed = seal_record(OBS, &f.patient.public(), &[f.hospital.public()], &mut f.rng).unwrap();
    let body = TxBody::record_added(sealed.clone(), record_class(OBS).unwrap());
    let tx = f.tx(false, &body, T0);
    // Block 1 validated, not committed.
    let effects1 = {
        let mut rules = f.state.rules(&f.genesis, &f.net);
        rules.check(&tx.clone().verify().unwrap()).unwrap();
        rules.finish().unwrap();
        rules.into_effects()
    };
    let c = f.consent(vec![Provision::permit()]);
    let grant = f.tx(false, &c.grant_body(&f.patient).unwrap(), T0);
    let overlay = Overlay::new(&f.state, vec![&effects1]);
    assert_eq!(overlay.height(), 1);
    assert!(overlay.record(&sealed.record_id()).unwrap().is_some());
    assert!(overlay.contains_tx(&tx.id()).unwrap());
    // Block 2 over the overlay: the same record again is refused, a consent is accepted.
    let mut rules = rules_over(&overlay, &f.genesis, &f.net);
    assert_eq!(
        rules.check(&tx.clone().verify().unwrap()),
        Err(InvalidReason::DuplicateTransaction)
    );
    rules.check(&grant.verify().unwrap()).unwrap();
    let effects2 = rules.into_effects();
    assert_eq!(effects2.height(), 2);
    let both = Overlay::new(&f.state, vec![&effects1, &effects2]);
    assert_eq!(both.consents_of(&f.patient.verify_key()).unwrap().len(), 1);
    drop(both);
    drop(overlay);
    // Committing in order gives the same state.
    f.state.commit(effects1).unwrap();
    f.state.commit(effects2).unwrap();
    assert_eq!(f.state.consents_of(&f.patient.verify_key()).len(), 1);
}
