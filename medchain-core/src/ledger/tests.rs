use super::*;
use crate::access::{
    audit_event, record_class, release_key, AccessError, LedgerView, ReleaseRequest,
};
use crate::block::{check_rules, InvalidBlock};
use crate::consent::{
    Actor, ConsentTagKey, Denial, DenyReason, EmergencyPreference, Period, Provision,
};
use crate::credential::{Credential, Role};
use crate::election::VrfSecret;
use crate::encoding::Encode;
use crate::genesis::{Member, Quorum, Timing};
use crate::hash::ChainId;
use crate::keys::Identity;
use crate::seal::seal_record;
use crate::tx::{PatientSignature, Transaction, TxBody};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const OBS: &[u8] = br#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1,"unit":"%"}}"#;
const HIV: &[u8] = br#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-02","code":{"coding":[{"system":"http://loinc.org","code":"75622-1"}]},"valueString":"negative"}"#;
const T0: u64 = 1_790_000_000_000;
const DAY: u64 = 86_400_000;

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
    fn chain(&self) -> ChainId {
        self.genesis.chain_id()
    }

    fn tx(&mut self, by_clinic: bool, body: &TxBody, at: u64) -> Transaction {
        self.nonce += 1;
        let chain = self.chain();
        let node = if by_clinic {
            &self.clinic
        } else {
            &self.hospital
        };
        Transaction::create(
            node,
            &chain,
            at,
            self.nonce,
            body,
            vec![],
            &self.net,
            &mut self.rng,
        )
        .unwrap()
    }

    /// Validates `txs` as the next block's transactions (block time `T0`) and commits them.
    fn block(&mut self, txs: Vec<Transaction>) -> Result<(), RuleError> {
        self.block_at(T0, txs)
    }

    /// Validates `txs` as the next block's transactions at block time `time` and commits them;
    /// a refusal names the rule.
    fn block_at(&mut self, time: u64, txs: Vec<Transaction>) -> Result<(), RuleError> {
        let ctx = TxContext {
            height: self.state.height() + 1,
            block_time_ms: time,
        };
        let verified: Vec<VerifiedTx> = txs.into_iter().map(|t| t.verify().unwrap()).collect();
        let effects = {
            let mut rules = self.state.rules(&self.genesis, &self.net);
            if let Err(InvalidBlock { reason, .. }) = check_rules(&mut rules, &ctx, &verified) {
                let rule = rules.take_rule_error().expect("a refusal names its rule");
                assert_eq!(rule.reason(), reason);
                return Err(rule);
            }
            rules.into_effects()
        };
        self.state.commit(effects).unwrap();
        Ok(())
    }

    /// The class the hospital (enrolled: it holds the patient's tag key) writes for `payload`.
    fn class(&mut self, payload: &[u8]) -> crate::tx::RecordClass {
        record_class(
            payload,
            &ConsentTagKey::for_patient(&self.patient),
            &mut self.rng,
        )
        .unwrap()
    }

    fn add_record(&mut self, payload: &[u8]) -> crate::seal::SealedRecord {
        let sealed = seal_record(
            payload,
            &self.patient.public(),
            &[self.hospital.public()],
            &mut self.rng,
        )
        .unwrap();
        let class = self.class(payload);
        let body = TxBody::record_added(sealed.clone(), class);
        let tx = self.tx(false, &body, T0);
        self.block(vec![tx]).unwrap();
        sealed
    }

    fn grant(&mut self, c: &Consent) -> ConsentId {
        let body = c.grant_body(&self.patient, &self.chain()).unwrap();
        let tx = self.tx(false, &body, T0);
        self.block(vec![tx]).unwrap();
        c.granted_id(&self.patient)
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

    /// The hospital (the record's holder) releases `sealed` to `grantee` at `now`.
    fn release(
        &mut self,
        sealed: &crate::seal::SealedRecord,
        grantee: &PublicIdentity,
        credential: Option<Credential>,
        purpose: Purpose,
        now: u64,
    ) -> Result<crate::access::KeyRelease, AccessError> {
        release_key(
            &self.hospital,
            sealed,
            ReleaseRequest {
                grantee: *grantee,
                credential,
                purpose,
            },
            LedgerView {
                state: &self.state,
                genesis: &self.genesis,
                network: &self.net,
            },
            now,
            &mut self.rng,
        )
    }

    fn clinician(&self, issuer: &Identity, holder: &Identity, expires: u64) -> Credential {
        Credential::issue(
            issuer,
            &self.chain(),
            holder.verify_key(),
            Role::Clinician {
                institution: issuer.verify_key(),
            },
            expires,
        )
    }

    /// A key release body the hospital makes by hand (bypassing `release_key`'s checks).
    fn raw_release(
        &mut self,
        sealed: &crate::seal::SealedRecord,
        grantee: &Identity,
        purpose: &str,
        consent: Option<ConsentId>,
        credential: Option<Credential>,
    ) -> TxBody {
        TxBody::KeyShared {
            record_id: sealed.record_id(),
            grantee: grantee.public(),
            purpose: purpose.into(),
            consent_id: consent.map(|c| c.to_byte_array()),
            credential,
            envelope: Some(
                sealed
                    .share_with(&self.hospital, &grantee.public(), &mut self.rng)
                    .unwrap(),
            ),
        }
    }

    fn raw_log(
        &self,
        sealed: &crate::seal::SealedRecord,
        who: &Identity,
        purpose: &str,
        consent: Option<ConsentId>,
        at: u64,
    ) -> TxBody {
        TxBody::AccessLogged {
            record_id: sealed.record_id(),
            accessor: who.public(),
            purpose: purpose.into(),
            consent_id: consent.map(|c| c.to_byte_array()),
            emergency: purpose == "ETREAT" && consent.is_none(),
            accessed_at_ms: at,
        }
    }

    fn erase_body(&self, sealed: &crate::seal::SealedRecord, by: &Identity) -> TxBody {
        TxBody::RecordErased {
            record_id: sealed.record_id(),
            patient: PatientSignature::sign(
                by,
                &self.chain(),
                crate::hash::domain::ERASURE_SIG,
                sealed.record_id().as_byte_array(),
            ),
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

    // The hospital (the record's holder) releases the key to the doctor.
    let doctor = f.doctor.public();
    let release = f
        .release(&sealed, &doctor, None, Purpose::Treat, T0 + 1)
        .unwrap();
    let tx1 = f.tx(false, &release.key_shared, T0 + 1);
    let tx2 = f.tx(false, &release.access_logged, T0 + 1);
    f.block_at(T0 + 5, vec![tx1, tx2]).unwrap();

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

    // The patient sees who read what, when (the block's time, with the claimed time beside
    // it), why, under which consent.
    let trail = f.state.audit_of_patient(&f.patient.verify_key());
    assert_eq!(trail.len(), 2);
    assert!(trail.iter().all(|a| a.actor == f.doctor.public()
        && a.consent_id == Some(cid)
        && !a.emergency
        && a.at_ms == T0 + 5
        && a.claimed_at_ms == T0 + 1));
    let ev = audit_event(trail[1]);
    assert_eq!(ev["resourceType"], "AuditEvent");
    assert_eq!(ev["action"], "R");
    assert_eq!(ev["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(
        ev["entity"][1]["what"]["identifier"]["value"],
        cid.to_string()
    );

    // Revocation: from the next block on, the release is denied by the holder and by validators.
    let revoke = Consent::revoke_body(&f.patient, &f.chain(), &cid);
    let tx = f.tx(false, &revoke, T0 + 2);
    f.block(vec![tx]).unwrap();
    assert!(f.state.consent(&cid).unwrap().revoked_at.is_some());
    let err = f
        .release(&sealed, &doctor, None, Purpose::Treat, T0 + 3)
        .unwrap_err();
    assert_eq!(err, AccessError::Denied(Denial::new(DenyReason::Revoked)));
    // The requester is told nothing of the revocation; the detail is the patient's.
    assert_eq!(
        err.to_string(),
        "access denied: the patient's consent does not permit this request"
    );
    // A node that ignores the revocation cannot get its KeyShared into a block.
    let forged = f.raw_release(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), None);
    let tx = f.tx(false, &forged, T0 + 3);
    assert_eq!(
        f.block(vec![tx]),
        Err(RuleError::Denied(Denial::new(DenyReason::Revoked)))
    );
}

#[test]
fn consent_rules_in_validation() {
    let mut f = fx();
    let sealed = f.add_record(HIV);
    // A consent not signed by its patient never enters a block.
    let c = f.consent(vec![Provision::permit()]);
    let doc = c.to_bytes();
    let forged = TxBody::ConsentGranted {
        patient: PatientSignature {
            patient: f.patient.public(),
            signature: f
                .doctor
                .sign(&f.chain(), crate::hash::domain::CONSENT_SIG, &doc),
        },
        document: doc,
    };
    let chain = f.chain();
    let err = Transaction::create(
        &f.hospital,
        &chain,
        T0,
        99,
        &forged,
        vec![],
        &f.net,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(err, crate::tx::TxError::BadPatientSignature);
    // Granting the same consent twice is refused.
    let cid = f.grant(&c);
    let again = c.grant_body(&f.patient, &f.chain()).unwrap();
    let tx = f.tx(false, &again, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::ConsentExists));
    // Someone else cannot revoke it.
    let other = Identity::generate(&mut f.rng);
    let bad = Consent::revoke_body(&other, &f.chain(), &cid);
    let tx = f.tx(false, &bad, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::NotThePatient));
    // A KeyShared naming a consent that does not permit it (wrong consent id) is refused.
    let ks = f.raw_release(
        &sealed,
        &f.doctor.duplicate(),
        "TREAT",
        Some(ConsentId::from_byte_array([9; 32])),
        None,
    );
    let tx = f.tx(false, &ks, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::WrongConsent));
    // Research never receives record keys: HRESCH and every code of its hierarchy.
    for code in crate::consent::RESEARCH_CODES {
        let ks = f.raw_release(&sealed, &f.doctor.duplicate(), code, Some(cid), None);
        let tx = f.tx(false, &ks, T0);
        assert_eq!(
            f.block(vec![tx]),
            Err(RuleError::ResearchKeyRelease),
            "{code}"
        );
    }
    // A replayed transaction is a duplicate.
    let body = f.raw_log(&sealed, &f.patient.duplicate(), "PATRQT", None, T0);
    let tx = f.tx(false, &body, T0);
    f.block(vec![tx.clone()]).unwrap();
    assert_eq!(f.block(vec![tx]), Err(RuleError::Duplicate));
    assert_eq!(
        RuleError::Duplicate.reason(),
        InvalidReason::DuplicateTransaction
    );
}

#[test]
fn emergency_access_is_allowed_by_preference_and_always_logged() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let cred = f.clinician(&f.clinic.duplicate(), &f.er_doctor.duplicate(), T0 + DAY);
    let er = f.er_doctor.public();
    let release = f
        .release(
            &sealed,
            &er,
            Some(cred.clone()),
            Purpose::EmergencyTreat,
            T0,
        )
        .unwrap();
    assert_eq!(release.decision, Decision::EmergencyPermit);
    // Without its emergency access log, the key release is refused.
    let ks = f.tx(false, &release.key_shared, T0);
    assert_eq!(
        f.block(vec![ks.clone()]),
        Err(RuleError::EmergencyNotLogged)
    );
    let log = f.tx(false, &release.access_logged, T0);
    f.block(vec![ks, log]).unwrap();
    let trail = f.state.audit_of_record(&sealed.record_id());
    assert!(trail
        .iter()
        .any(|a| a.emergency && a.kind == AuditKind::Accessed && a.actor == f.er_doctor.public()));
    assert_eq!(audit_event(trail[0])["extension"][0]["valueBoolean"], true);

    // Without a clinician credential: denied.
    let err = f
        .release(&sealed, &er, None, Purpose::EmergencyTreat, T0)
        .unwrap_err();
    assert_eq!(
        err,
        AccessError::Denied(Denial::new(DenyReason::NotAClinician))
    );
    // An expired credential is refused by validators, judged at the block's time.
    let old = f.clinician(&f.clinic.duplicate(), &f.er_doctor.duplicate(), T0 - 1);
    let ks = f.raw_release(&sealed, &f.er_doctor.duplicate(), "ETREAT", None, Some(old));
    let log = f.raw_log(&sealed, &f.er_doctor.duplicate(), "ETREAT", None, T0);
    let (a, b) = (f.tx(false, &ks, T0), f.tx(false, &log, T0));
    assert_eq!(
        f.block(vec![a, b]),
        Err(RuleError::BadCredential(
            crate::credential::CredentialError::Expired
        ))
    );

    // The patient refuses emergency access: denied by the holder and by validators.
    let refuse = Consent {
        emergency: Some(EmergencyPreference::Refuse),
        ..f.consent(vec![])
    };
    f.grant(&refuse);
    let err = f
        .release(
            &sealed,
            &er,
            Some(cred.clone()),
            Purpose::EmergencyTreat,
            T0 + 5,
        )
        .unwrap_err();
    assert_eq!(
        err,
        AccessError::Denied(Denial::new(DenyReason::EmergencyRefused))
    );
    let ks = f.raw_release(
        &sealed,
        &f.er_doctor.duplicate(),
        "ETREAT",
        None,
        Some(cred),
    );
    let (a, b) = (f.tx(false, &ks, T0 + 5), f.tx(false, &log, T0 + 5));
    assert_eq!(
        f.block(vec![a, b]),
        Err(RuleError::Denied(Denial::new(DenyReason::EmergencyRefused)))
    );
}

#[test]
fn attack_one_emergency_log_does_not_cover_two_releases() {
    // Issue #12 (read): one emergency access log satisfied several emergency releases.
    let mut f = fx();
    let a = f.add_record(OBS);
    let cred = f.clinician(&f.clinic.duplicate(), &f.er_doctor.duplicate(), T0 + DAY);
    let er = f.er_doctor.duplicate();
    let ks1 = f.raw_release(&a, &er, "ETREAT", None, Some(cred.clone()));
    let ks2 = f.raw_release(&a, &er, "ETREAT", None, Some(cred.clone()));
    let log = f.raw_log(&a, &er, "ETREAT", None, T0);
    let txs = vec![
        f.tx(false, &ks1, T0),
        f.tx(false, &ks2, T0),
        f.tx(false, &log, T0),
    ];
    assert_eq!(f.block(txs), Err(RuleError::EmergencyNotLogged));
    // With a log each, both pass.
    let log2 = f.raw_log(&a, &er, "ETREAT", None, T0 + 1);
    let txs = vec![
        f.tx(false, &ks1, T0),
        f.tx(false, &ks2, T0),
        f.tx(false, &log, T0),
        f.tx(false, &log2, T0),
    ];
    f.block(txs).unwrap();
}

#[test]
fn attack_backdated_release_is_judged_at_the_block_time() {
    // Issue #12.2: a key holder back-dates a release so that an expired consent still applies.
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let mut c = f.consent(vec![Provision::permit()
        .actor(Actor::Party(f.doctor.verify_key()))
        .purpose(Purpose::Treat)]);
    c.period = Period::between(T0 - DAY, T0 + DAY);
    let cid = f.grant(&c);
    // The release claims a time inside the consent's period; its block comes after the end.
    let after = T0 + DAY + 60_000;
    let ks = f.raw_release(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), None);
    let log = f.raw_log(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), T0);
    let txs = vec![f.tx(false, &ks, T0), f.tx(false, &log, T0)];
    assert_eq!(
        f.block_at(after, txs),
        Err(RuleError::Denied(Denial::new(DenyReason::OutOfPeriod)))
    );
    // The holder's own check refuses it too, before wrapping anything.
    let doctor = f.doctor.public();
    assert_eq!(
        f.release(&sealed, &doctor, None, Purpose::Treat, after)
            .unwrap_err(),
        AccessError::Denied(Denial::new(DenyReason::OutOfPeriod))
    );
    // A credential is judged at the block's time as well.
    let cred = f.clinician(&f.clinic.duplicate(), &f.er_doctor.duplicate(), T0 + 10);
    let er = f.er_doctor.duplicate();
    let ks = f.raw_release(&sealed, &er, "ETREAT", None, Some(cred));
    let log = f.raw_log(&sealed, &er, "ETREAT", None, T0 + 20);
    let txs = vec![f.tx(false, &ks, T0), f.tx(false, &log, T0 + 20)];
    assert_eq!(
        f.block_at(T0 + 20, txs),
        Err(RuleError::BadCredential(
            crate::credential::CredentialError::Expired
        ))
    );
    // An access log may not claim a time far from its block's: the audit trail shows the
    // block time, and the claimed time only within the genesis window.
    let log = f.raw_log(
        &sealed,
        &f.patient.duplicate(),
        "PATRQT",
        None,
        T0 - 30 * DAY,
    );
    let tx = f.tx(false, &log, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::ClaimedTimeOutOfRange));
}

#[test]
fn attack_release_key_checks_credentials_before_wrapping() {
    // Issue #12.3: `release_key` took roles from any credential it was handed.
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let er = f.er_doctor.public();
    // A self-signed "clinician" credential (the attacker's own key as the institution).
    let mallory = Identity::generate(&mut f.rng);
    let self_signed = f.clinician(&mallory, &f.er_doctor.duplicate(), T0 + DAY);
    assert_eq!(
        f.release(&sealed, &er, Some(self_signed), Purpose::EmergencyTreat, T0)
            .unwrap_err(),
        AccessError::Rule(RuleError::BadCredential(
            crate::credential::CredentialError::UnknownInstitution
        ))
    );
    // Another doctor's real credential (readable in key-release bodies).
    let real = f.clinician(&f.clinic.duplicate(), &f.doctor.duplicate(), T0 + DAY);
    assert_eq!(
        f.release(&sealed, &er, Some(real), Purpose::EmergencyTreat, T0)
            .unwrap_err(),
        AccessError::Rule(RuleError::BadCredential(
            crate::credential::CredentialError::WrongHolder
        ))
    );
    // An expired one.
    let expired = f.clinician(&f.clinic.duplicate(), &f.er_doctor.duplicate(), T0 - 1);
    assert_eq!(
        f.release(&sealed, &er, Some(expired), Purpose::EmergencyTreat, T0)
            .unwrap_err(),
        AccessError::Rule(RuleError::BadCredential(
            crate::credential::CredentialError::Expired
        ))
    );
    // A node that did not add the record may not release its key (nor log its accesses).
    let cred = f.clinician(&f.clinic.duplicate(), &f.er_doctor.duplicate(), T0 + DAY);
    let ks = f.raw_release(
        &sealed,
        &f.er_doctor.duplicate(),
        "ETREAT",
        None,
        Some(cred),
    );
    let log = f.raw_log(&sealed, &f.er_doctor.duplicate(), "ETREAT", None, T0);
    let txs = vec![f.tx(true, &ks, T0), f.tx(true, &log, T0)];
    assert_eq!(f.block(txs), Err(RuleError::NotTheRecordHolder));
    let log = f.raw_log(&sealed, &f.doctor.duplicate(), "TREAT", None, T0);
    let tx = f.tx(true, &log, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::NotTheRecordHolder));
    // Through `release_key`: a record the clinic can open (sealed for it too) but that the
    // hospital added is not the clinic's to release.
    let shared = seal_record(
        OBS,
        &f.patient.public(),
        &[f.hospital.public(), f.clinic.public()],
        &mut f.rng,
    )
    .unwrap();
    let body = TxBody::record_added(shared.clone(), f.class(OBS));
    let tx = f.tx(false, &body, T0);
    f.block(vec![tx]).unwrap();
    let c = f.consent(vec![
        Provision::permit().actor(Actor::Party(f.doctor.verify_key()))
    ]);
    f.grant(&c);
    let clinic = f.clinic.duplicate();
    let doctor = f.doctor.public();
    assert_eq!(
        release_key(
            &clinic,
            &shared,
            ReleaseRequest {
                grantee: doctor,
                credential: None,
                purpose: Purpose::Treat,
            },
            LedgerView {
                state: &f.state,
                genesis: &f.genesis,
                network: &f.net,
            },
            T0,
            &mut f.rng,
        )
        .unwrap_err(),
        AccessError::Rule(RuleError::NotTheRecordHolder)
    );
}

#[test]
fn attack_revocation_and_erasure_apply_before_releases_in_the_same_block() {
    // Issue #12.8: effects applied in transaction order let a key release placed before a
    // revocation in the same block pass.
    for revocation_first in [false, true] {
        let mut f = fx();
        let sealed = f.add_record(OBS);
        let c = f.consent(vec![
            Provision::permit().actor(Actor::Party(f.doctor.verify_key()))
        ]);
        let cid = f.grant(&c);
        let ks = f.raw_release(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), None);
        let log = f.raw_log(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), T0);
        let revoke = Consent::revoke_body(&f.patient, &f.chain(), &cid);
        let (ks, log, revoke) = (
            f.tx(false, &ks, T0),
            f.tx(false, &log, T0),
            f.tx(false, &revoke, T0),
        );
        let txs = if revocation_first {
            vec![revoke, ks, log]
        } else {
            vec![ks, log, revoke]
        };
        assert_eq!(
            f.block(txs),
            Err(RuleError::Denied(Denial::new(DenyReason::Revoked))),
            "revocation first: {revocation_first}"
        );
        // Erasure likewise, in both orders.
        let ks = f.raw_release(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), None);
        let erase = f.erase_body(&sealed, &f.patient.duplicate());
        let (ks, erase) = (f.tx(false, &ks, T0), f.tx(false, &erase, T0));
        let txs = if revocation_first {
            vec![erase, ks]
        } else {
            vec![ks, erase]
        };
        assert_eq!(f.block(txs), Err(RuleError::Erased));
    }
}

#[test]
fn attack_consent_of_another_patient_is_not_believed() {
    // Issue #12.5 (the rule's part): a store that returns patient A's consent among patient
    // B's (a row moved in the database) must not make B's record releasable.
    struct Moved<'a> {
        inner: &'a LedgerState,
        foreign: ConsentState,
    }
    impl StateView for Moved<'_> {
        fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
            StateView::contains_tx(self.inner, id)
        }
        fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
            StateView::record(self.inner, id)
        }
        fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
            StateView::consent(self.inner, id)
        }
        fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
            let mut all = StateView::consents_of(self.inner, patient)?;
            all.push(self.foreign.clone());
            Ok(all)
        }
        fn height(&self) -> u64 {
            self.inner.height()
        }
    }
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let alice = Identity::generate(&mut f.rng);
    let alices = Consent {
        patient: alice.public(),
        ..f.consent(vec![
            Provision::permit().actor(Actor::Party(f.doctor.verify_key()))
        ])
    };
    let ks = f.raw_release(
        &sealed,
        &f.doctor.duplicate(),
        "TREAT",
        Some(alices.id()),
        None,
    );
    let view = Moved {
        inner: &f.state,
        foreign: ConsentState::new(alices.clone()),
    };
    let mut rules = rules_over(&view, &f.genesis, &f.net);
    let ctx = TxContext {
        height: 1 + view.height(),
        block_time_ms: T0,
    };
    assert_eq!(
        rules.preview(&ctx, &f.hospital.verify_key(), &ks),
        Err(PreviewError::Rule(RuleError::Denied(Denial::new(
            DenyReason::NoConsent
        ))))
    );
    let doctor = f.doctor.public();
    assert_eq!(
        release_key(
            &f.hospital,
            &sealed,
            ReleaseRequest {
                grantee: doctor,
                credential: None,
                purpose: Purpose::Treat,
            },
            LedgerView {
                state: &view,
                genesis: &f.genesis,
                network: &f.net,
            },
            T0,
            &mut f.rng,
        )
        .unwrap_err(),
        AccessError::Denied(Denial::new(DenyReason::NoConsent))
    );
}

#[test]
fn pruned_history_must_be_explained_by_an_erasure() {
    let mut f = fx();
    let sealed = seal_record(OBS, &f.patient.public(), &[f.hospital.public()], &mut f.rng).unwrap();
    let body = TxBody::record_added(sealed.clone(), f.class(OBS));
    let mut tx = f.tx(false, &body, T0);
    tx.prune();
    // Re-read history: the rules accept the pruned record but remember it.
    f.block(vec![tx]).unwrap();
    assert_eq!(f.state.unexplained_pruned(), vec![sealed.record_id()]);
    // The patient's erasure explains it.
    let erase = f.erase_body(&sealed, &f.patient.duplicate());
    let tx = f.tx(false, &erase, T0);
    f.block(vec![tx]).unwrap();
    assert!(f.state.unexplained_pruned().is_empty());
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
    let wrong = f.erase_body(&sealed, &f.doctor.duplicate());
    let tx = f.tx(false, &wrong, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::NotThePatient));
    let erase = f.erase_body(&sealed, &f.patient.duplicate());
    let tx = f.tx(false, &erase, T0);
    f.block(vec![tx]).unwrap();
    assert!(f.state.record(&sealed.record_id()).unwrap().erased);
    let ks = f.raw_release(&sealed, &f.doctor.duplicate(), "TREAT", Some(cid), None);
    let tx = f.tx(false, &ks, T0);
    assert_eq!(f.block(vec![tx]), Err(RuleError::Erased));
    let doctor = f.doctor.public();
    assert_eq!(
        f.release(&sealed, &doctor, None, Purpose::Treat, T0)
            .unwrap_err(),
        AccessError::Rule(RuleError::Erased)
    );
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
    let cred = f.clinician(&f.clinic.duplicate(), &f.doctor.duplicate(), T0 + 10);
    let doctor = f.doctor.public();
    let release = f
        .release(&sealed, &doctor, Some(cred), Purpose::Treat, T0)
        .unwrap();
    let a = f.tx(false, &release.key_shared, T0);
    let b = f.tx(false, &release.access_logged, T0);
    f.block(vec![a, b]).unwrap();
    // A clinician of the other institution is denied.
    let cred = f.clinician(&f.hospital.duplicate(), &f.er_doctor.duplicate(), T0 + 10);
    let er = f.er_doctor.public();
    let err = f
        .release(&sealed, &er, Some(cred), Purpose::Treat, T0)
        .unwrap_err();
    assert_eq!(err, AccessError::Denied(Denial::new(DenyReason::NoConsent)));
    // Research access goes through de-identification, not key release.
    let err = f
        .release(&sealed, &er, None, Purpose::Research { topic: None }, T0)
        .unwrap_err();
    assert_eq!(err, AccessError::ResearchNeedsDeidentification);
}

#[test]
fn overlay_sees_uncommitted_effects() {
    let mut f = fx();
    let sealed = seal_record(OBS, &f.patient.public(), &[f.hospital.public()], &mut f.rng).unwrap();
    let body = TxBody::record_added(sealed.clone(), f.class(OBS));
    let tx = f.tx(false, &body, T0);
    let ctx = |h| TxContext {
        height: h,
        block_time_ms: T0,
    };
    // Block 1 validated, not committed.
    let effects1 = {
        let mut rules = f.state.rules(&f.genesis, &f.net);
        rules.check(&ctx(1), &tx.clone().verify().unwrap()).unwrap();
        rules.finish().unwrap();
        rules.into_effects()
    };
    let c = f.consent(vec![Provision::permit()]);
    let grant = f.tx(false, &c.grant_body(&f.patient, &f.chain()).unwrap(), T0);
    let overlay = Overlay::new(&f.state, vec![&effects1]);
    assert_eq!(overlay.height(), 1);
    assert!(overlay.record(&sealed.record_id()).unwrap().is_some());
    assert!(overlay.contains_tx(&tx.id()).unwrap());
    // Block 2 over the overlay: the same record again is refused, a consent is accepted.
    let mut rules = rules_over(&overlay, &f.genesis, &f.net);
    assert_eq!(
        rules.check(&ctx(2), &tx.clone().verify().unwrap()),
        Err(InvalidReason::DuplicateTransaction)
    );
    assert_eq!(rules.take_rule_error(), Some(RuleError::Duplicate));
    rules.check(&ctx(2), &grant.verify().unwrap()).unwrap();
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

const F20: &[u8] = br#"{"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"F20.9"}]},"recordedDate":"2026-09-14"}"#;

/// Dr. Ruiz may read for treatment, except ICD-10 F20.9.
fn f20_consent(f: &Fx) -> Consent {
    f.consent(vec![Provision::permit()
        .actor(Actor::Party(f.doctor.verify_key()))
        .purpose(Purpose::Treat)
        .nest(Provision::deny().class(crate::consent::DataClass::Code {
            system: "http://hl7.org/fhir/sid/icd-10".into(),
            code: "F20.9".into(),
        }))])
}

#[test]
fn a_blinded_code_deny_is_enforced_by_validators_too() {
    let mut f = fx();
    let f20 = f.add_record(F20);
    let other = f.add_record(OBS);
    let c = f20_consent(&f);
    let cid = f.grant(&c);
    let doctor = f.doctor.public();
    // The holder refuses the F20.9 record and releases the other.
    assert!(matches!(
        f.release(&f20, &doctor, None, Purpose::Treat, T0),
        Err(AccessError::Denied(_))
    ));
    let ok = f
        .release(&other, &doctor, None, Purpose::Treat, T0)
        .unwrap();
    let txs = vec![
        f.tx(false, &ok.key_shared, T0),
        f.tx(false, &ok.access_logged, T0),
    ];
    f.block(txs).unwrap();
    // A holder that skips its own check: validators see only tags, and refuse it all the same
    // (before blinding, a code deny was the key holder's alone to enforce).
    let forced = f.raw_release(&f20, &f.doctor.duplicate(), "TREAT", Some(cid), None);
    let tx = f.tx(false, &forced, T0);
    let err = f.block(vec![tx]).unwrap_err();
    let RuleError::Denied(denial) = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(denial.detail(), DenyReason::DeniedBy(by) if by.consent == cid));
    assert_eq!(
        err.to_string(),
        "the patient's consent does not permit this request"
    );
}

#[test]
fn a_refused_requester_learns_a_generic_denial_and_the_patient_the_detail() {
    let mut f = fx();
    let f20 = f.add_record(F20);
    let cid = f.grant(&f20_consent(&f));
    let doctor = f.doctor.public();
    let err = f
        .release(&f20, &doctor, None, Purpose::Treat, T0)
        .unwrap_err();
    // The requester's side: no consent, no provision, no code.
    let told = err.to_string();
    assert_eq!(
        told,
        "access denied: the patient's consent does not permit this request"
    );
    let dbg = format!("{err:?}");
    for detail in ["provision", "F20", &cid.to_string()[..12]] {
        assert!(!told.contains(detail) && !dbg.contains(detail), "{detail}");
    }
    // The patient's side: the audit event the holder hands the patient names the consent and
    // the provision (1.1, the nested deny).
    let AccessError::Denied(denial) = &err else {
        panic!()
    };
    let ev =
        crate::access::denial_audit_event(&f20.record_id(), &doctor, &Purpose::Treat, T0, denial);
    assert_eq!(ev["outcome"], "4");
    let desc = ev["outcomeDesc"].as_str().unwrap();
    assert!(
        desc.starts_with(&format!("denied by consent {}", &cid.to_string()[..12]))
            && desc.ends_with("provision 1.1"),
        "{desc}"
    );
    assert_eq!(
        ev["agent"][0]["who"]["identifier"]["value"],
        doctor.to_text()
    );
}

#[test]
fn record_classes_carry_no_birth_month_no_admission_month_and_no_code() {
    let mut f = fx();
    let patient = br#"{"resourceType":"Patient","birthDate":"1985-07-14","gender":"female"}"#;
    let encounter = br#"{"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"period":{"start":"2024-03-15T08:00:00Z"}}"#;
    let p = f.class(patient);
    assert_eq!((p.resource_type.as_str(), p.year), ("Patient", 0));
    let bytes = p.to_bytes();
    for leak in [
        &b"1985"[..],
        &198_507u32.to_be_bytes(),
        &1985u16.to_be_bytes(),
    ] {
        assert!(!bytes.windows(leak.len()).any(|w| w == leak), "{leak:?}");
    }
    let e = f.class(encounter);
    assert_eq!(e.year, 2024);
    assert!(!e
        .to_bytes()
        .windows(4)
        .any(|w| w == 202_403u32.to_be_bytes()));
    let c = f.class(F20);
    assert_eq!(c.year, 2026);
    assert_eq!(c.code_tags.len(), crate::consent::CODE_TAG_BUCKETS[0]);
    let bytes = c.to_bytes();
    assert!(!bytes.windows(5).any(|w| w == b"F20.9") && !bytes.windows(6).any(|w| w == b"icd-10"));
    // Attack: a writer slips the birth year back into a Patient's class; validators refuse it
    // (the body check), as they refuse tags out of order or a count that is not a bucket.
    let sealed = seal_record(
        patient,
        &f.patient.public(),
        &[f.hospital.public()],
        &mut f.rng,
    )
    .unwrap();
    let chain = f.chain();
    let mut attempts = Vec::new();
    attempts.push(crate::tx::RecordClass {
        year: 1985,
        ..p.clone()
    });
    let mut unsorted = p.clone();
    unsorted.code_tags.reverse();
    attempts.push(unsorted);
    let mut short = p.clone();
    short.code_tags.pop();
    attempts.push(short);
    for class in attempts {
        let err = Transaction::create(
            &f.hospital,
            &chain,
            T0,
            500,
            &TxBody::record_added(sealed.clone(), class),
            vec![],
            &f.net,
            &mut f.rng,
        )
        .unwrap_err();
        assert!(matches!(err, crate::tx::TxError::InvalidBody(_)), "{err:?}");
    }
}

/// Every rule has its own stable name; the wire keeps only the coarse reason.
#[test]
fn every_rule_is_named_and_keeps_its_coarse_wire_reason() {
    use crate::consent::DenyReason;
    use crate::credential::CredentialError;
    let all = [
        RuleError::Duplicate,
        RuleError::Unreadable(TxError::BodyDecrypt),
        RuleError::RecordExists,
        RuleError::MissingEnvelope,
        RuleError::UnknownRecord,
        RuleError::Erased,
        RuleError::NotTheRecordHolder,
        RuleError::ConsentExists,
        RuleError::BadConsent(ConsentError::NotSignedByPatient),
        RuleError::UnknownConsent,
        RuleError::NotThePatient,
        RuleError::ConsentOfAnotherPatient,
        RuleError::AlreadyRevoked,
        RuleError::ResearchKeyRelease,
        RuleError::BadCredential(CredentialError::Expired),
        RuleError::Denied(Denial::new(DenyReason::Revoked)),
        RuleError::WrongConsent,
        RuleError::EmergencyNotLogged,
        RuleError::EmergencyFlagMismatch,
        RuleError::ClaimedTimeOutOfRange,
        RuleError::NotAResearcher,
        RuleError::ResearchLoggedPerRecord,
        RuleError::NotAMember,
        RuleError::StaleTimestamp,
        RuleError::Unverified(TxError::BadSignature),
    ];
    let names: HashSet<&str> = all.iter().map(RuleError::name).collect();
    assert_eq!(names.len(), all.len(), "two rules share a name");
    for rule in &all {
        let name = rule.name();
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
        let expected = match rule {
            RuleError::Duplicate => InvalidReason::DuplicateTransaction,
            RuleError::Unreadable(_) | RuleError::Unverified(_) => InvalidReason::BadTransaction,
            RuleError::StaleTimestamp => InvalidReason::BadTimestamp,
            _ => InvalidReason::RuleViolation,
        };
        assert_eq!(rule.reason(), expected, "{name}");
    }
    // A denial is named generically: neither its name nor its message says which provision.
    let revoked = RuleError::Denied(Denial::new(DenyReason::Revoked));
    let no_consent = RuleError::Denied(Denial::new(DenyReason::NoConsent));
    assert_eq!(revoked.name(), no_consent.name());
    assert_eq!(revoked.to_string(), no_consent.to_string());
}

/// A refusal of `requester`'s request, relayed by `relay` (a member key).
fn denial_by(
    record: &RecordId,
    requester: &Identity,
    purpose: &str,
    rule: &str,
    relay: VerifyKey,
) -> TxBody {
    TxBody::AccessDenied {
        record_id: *record,
        requester: requester.public(),
        purpose: purpose.into(),
        rule: rule.into(),
        requested_at_ms: T0,
        relayed_by: relay,
    }
}

impl Fx {
    /// A refusal of `requester`'s request relayed by the clinic (a member).
    fn denial(&self, record: &RecordId, requester: &Identity, purpose: &str, rule: &str) -> TxBody {
        denial_by(record, requester, purpose, rule, self.clinic.verify_key())
    }
}

#[test]
fn a_refused_request_is_logged_by_the_holder_in_the_patients_audit_trail() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let id = sealed.record_id();
    let doctor = f.doctor.duplicate();
    let body = f.denial(&id, &doctor, "TREAT", "denied");
    // The canonical encoding round-trips (metadata only: the body has no payload).
    assert_eq!(TxBody::from_bytes(&body.to_bytes()).unwrap(), body);
    let tx = f.tx(false, &body, T0);
    f.block(vec![tx]).unwrap();
    let trail = f.state.audit_of_patient(&f.patient.verify_key());
    assert_eq!(trail.len(), 1);
    let entry = trail[0].clone();
    assert_eq!(entry.kind, AuditKind::Denied);
    assert_eq!(entry.actor, doctor.public());
    assert_eq!(entry.denied_by.as_deref(), Some("denied"));
    assert_eq!(entry.relayed_by, Some(f.clinic.verify_key()));
    assert!(!entry.emergency && entry.consent_id.is_none());
    // The stored form keeps the rule; the FHIR form says "refused" with the rule's name only.
    assert_eq!(AuditEntry::from_bytes(&entry.to_bytes()).unwrap(), entry);
    // A stored entry whose rule is free text (a tampered or foreign store) does not decode.
    let mut tampered = entry.clone();
    tampered.denied_by = Some("Alice has HIV".into());
    assert!(matches!(
        AuditEntry::from_bytes(&tampered.to_bytes()),
        Err(DecodeError::NonCanonical { .. })
    ));
    let event = audit_event(&entry);
    assert_eq!(event["outcome"], "4");
    assert_eq!(event["outcomeDesc"], "refused: denied");
    assert_eq!(
        event["agent"][1]["who"]["identifier"]["value"],
        f.clinic.verify_key().to_string()
    );
    // A refused break-glass read is flagged as one.
    let er = f.er_doctor.duplicate();
    let tx = f.tx(false, &f.denial(&id, &er, "ETREAT", "bad_credential"), T0);
    f.block(vec![tx]).unwrap();
    let trail = f.state.audit_of_patient(&f.patient.verify_key());
    assert!(trail[1].emergency && trail[1].denied_by.as_deref() == Some("bad_credential"));
}

#[test]
fn attack_denials_only_from_the_holder_never_for_research_nor_with_a_made_up_rule() {
    let mut f = fx();
    let sealed = f.add_record(OBS);
    let id = sealed.record_id();
    let doctor = f.doctor.duplicate();
    // Another member cannot fill a patient's trail with denials for a record it did not add.
    let forged = f.tx(true, &f.denial(&id, &doctor, "TREAT", "denied"), T0);
    assert_eq!(f.block(vec![forged]), Err(RuleError::NotTheRecordHolder));
    // Nor for a record that does not exist.
    let unknown = RecordId::from_byte_array([9; 32]);
    let ghost = f.tx(false, &f.denial(&unknown, &doctor, "TREAT", "denied"), T0);
    assert_eq!(f.block(vec![ghost]), Err(RuleError::UnknownRecord));
    // A claimed request time far from the block's is refused.
    let mut late = f.denial(&id, &doctor, "TREAT", "denied");
    if let TxBody::AccessDenied {
        requested_at_ms, ..
    } = &mut late
    {
        *requested_at_ms = T0 + 30 * DAY;
    }
    let late = f.tx(false, &late, T0);
    assert_eq!(f.block(vec![late]), Err(RuleError::ClaimedTimeOutOfRange));
    // The relaying member must be a member: the patient's trail names a real institution.
    let stranger = Identity::generate(&mut f.rng).verify_key();
    let unrelayed = f.tx(
        false,
        &denial_by(&id, &doctor, "TREAT", "denied", stranger),
        T0,
    );
    assert_eq!(f.block(vec![unrelayed]), Err(RuleError::NotAMember));
    // Research asks for no key, so it is never refused one; a rule name is a-z and _ only,
    // which keeps free text (and any PHI in it) off the chain.
    for (purpose, rule) in [
        ("HRESCH", "denied"),
        ("TREAT", ""),
        ("TREAT", "Alice Example's HbA1c"),
        ("TREAT", &"x".repeat(49)),
        ("", "denied"),
    ] {
        let body = f.denial(&id, &doctor, purpose, rule);
        assert!(body.check(&f.chain()).is_err(), "{purpose} {rule}");
        assert!(TxBody::from_bytes(&body.to_bytes()).map_or(true, |b| b.check(&f.chain()).is_err()));
    }
    assert!(f.state.audit_of_patient(&f.patient.verify_key()).is_empty());
    // An erased record is not the holder's to log about any more.
    let erase = f.erase_body(&sealed, &f.patient.duplicate());
    let tx = f.tx(false, &erase, T0);
    f.block(vec![tx]).unwrap();
    let after = f.tx(false, &f.denial(&id, &doctor, "TREAT", "denied"), T0);
    assert_eq!(f.block(vec![after]), Err(RuleError::Erased));
}
