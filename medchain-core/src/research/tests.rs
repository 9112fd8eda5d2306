use super::*;
use crate::access::record_class;
use crate::block::{check_rules, ChainTip, InvalidBlock};
use crate::consent::{Actor, Consent, ConsentId, ConsentTagKey, Period, Provision};
use crate::credential::{CredentialError, Role};
use crate::election::{ElectionSeed, VrfSecret};
use crate::genesis::{Genesis, Member, Quorum, Timing};
use crate::hash::BlockHash;
use crate::ledger::{AuditEntry, LedgerState};
use crate::seal::{seal_record, NetworkKey};
use crate::tx::{Transaction, VerifiedTx};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const T0: u64 = 1_790_000_000_000;
const DAY: u64 = 86_400_000;
const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";

/// Who submits a transaction.
#[derive(Clone, Copy)]
enum Who {
    Hospital,
    Clinic,
}

struct Net {
    rng: ChaCha20Rng,
    genesis: Genesis,
    net: NetworkKey,
    hospital: Identity,
    clinic: Identity,
    institute: Identity,
    researcher: Identity,
    patients: Vec<Identity>,
    state: LedgerState,
    nonce: u64,
    /// The block time of the next block.
    now: u64,
}

fn net(seed: u64) -> Net {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let hospital = Identity::generate(&mut rng);
    let clinic = Identity::generate(&mut rng);
    let institute = Identity::generate(&mut rng);
    let members = [&hospital, &clinic, &institute]
        .iter()
        .enumerate()
        .map(|(i, id)| Member {
            name: format!("member-{i}"),
            identity: id.public(),
            vrf: VrfSecret::derive(id).unwrap().public(),
            validator: i < 2,
        })
        .collect();
    let net = NetworkKey::generate(&mut rng);
    let genesis = Genesis::new(
        "research",
        0,
        net.fingerprint(),
        members,
        Quorum::TWO_THIRDS,
        Timing::DEFAULT,
        10_000,
    )
    .unwrap();
    Net {
        researcher: Identity::generate(&mut rng),
        rng,
        genesis,
        net,
        hospital,
        clinic,
        institute,
        patients: Vec::new(),
        state: LedgerState::new(),
        nonce: 0,
        now: T0,
    }
}

fn hba1c(value: u32) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","id":"obs-{value}","subject":{{"reference":"Patient/mrn-{value}"}},
        "effectiveDateTime":"2026-03-0{}T09:30:00Z","code":{{"coding":[{{"system":"{LOINC}","code":"4548-4","display":"Hemoglobin A1c"}}]}},
        "valueQuantity":{{"value":{}.{},"unit":"%"}},"note":[{{"text":"patient Ruiz-{value} lives at 12 Oak St"}}]}}"#,
        value % 9 + 1,
        5 + value % 5,
        value % 10
    )
}

fn condition(code: &str) -> String {
    format!(
        r#"{{"resourceType":"Condition","subject":{{"reference":"Patient/someone"}},"recordedDate":"2025-11-20",
        "code":{{"coding":[{{"system":"{SNOMED}","code":"{code}"}}]}}}}"#
    )
}

const DIABETES: &str = "44054006";
const RARE: &str = "38341003";

impl Net {
    fn chain(&self) -> ChainId {
        self.genesis.chain_id()
    }

    fn id(&self, who: Who) -> &Identity {
        match who {
            Who::Hospital => &self.hospital,
            Who::Clinic => &self.clinic,
        }
    }

    fn view(&self) -> LedgerView<'_> {
        LedgerView {
            state: &self.state,
            genesis: &self.genesis,
            network: &self.net,
        }
    }

    /// Validates `bodies` as the next block at `self.now` and commits them; a refusal names
    /// the rule. Returns the block's audit entries.
    fn block(&mut self, bodies: Vec<(Who, TxBody)>) -> Result<Vec<AuditEntry>, RuleError> {
        let chain = self.chain();
        let mut txs = Vec::new();
        for (who, body) in bodies {
            self.nonce += 1;
            let tx = Transaction::create(
                &self.id(who).duplicate(),
                &chain,
                self.now,
                self.nonce,
                &body,
                vec![],
                &self.net,
                &mut self.rng,
            )
            .unwrap();
            txs.push(tx);
        }
        let ctx = TxContext {
            height: self.state.height() + 1,
            block_time_ms: self.now,
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
        let audit = effects.audit().to_vec();
        self.state.commit(effects).unwrap();
        Ok(audit)
    }

    fn patient(&mut self) -> usize {
        let p = Identity::generate(&mut self.rng);
        self.patients.push(p);
        self.patients.len() - 1
    }

    /// Patient `p`'s record `fhir`, added by `who` (sealed for the patient and `who`).
    fn record(&mut self, p: usize, fhir: &str, who: Who) -> SealedRecord {
        let holder = self.id(who).public();
        let sealed = seal_record(
            fhir.as_bytes(),
            &self.patients[p].public(),
            &[holder],
            &mut self.rng,
        )
        .unwrap();
        // The writing hospital is enrolled: it holds the patient's consent tag key.
        let class = record_class(
            fhir.as_bytes(),
            &ConsentTagKey::for_patient(&self.patients[p]),
            &mut self.rng,
        )
        .unwrap();
        let body = TxBody::record_added(sealed.clone(), class);
        self.block(vec![(who, body)]).unwrap();
        sealed
    }

    /// Patient `p` consents to research on `topic` by any researcher (with `extra`
    /// provisions nested under the permit).
    fn consent(&mut self, p: usize, topic: &str, extra: Vec<Provision>) -> ConsentId {
        let mut permit = Provision::permit()
            .actor(Actor::AnyResearcher)
            .action(Action::ResearchUse)
            .purpose(Purpose::Research {
                topic: Some(topic.into()),
            });
        for e in extra {
            permit = permit.nest(e);
        }
        let c = Consent {
            patient: self.patients[p].public(),
            issued_ms: T0,
            summary: format!("my data may be used for {topic} research"),
            period: Period::default(),
            emergency: None,
            provisions: vec![permit],
        };
        let body = c.grant_body(&self.patients[p], &self.chain()).unwrap();
        self.block(vec![(Who::Hospital, body)]).unwrap();
        c.granted_id(&self.patients[p])
    }

    fn revoke(&mut self, p: usize, id: &ConsentId) {
        let body = Consent::revoke_body(&self.patients[p], &self.chain(), id);
        self.block(vec![(Who::Hospital, body)]).unwrap();
    }

    fn credential(&self, issuer: &Identity, role: Role, expires: u64) -> Credential {
        Credential::issue(
            issuer,
            &self.chain(),
            self.researcher.verify_key(),
            role,
            expires,
        )
    }

    fn researcher_credential(&self) -> Credential {
        self.credential(
            &self.institute,
            Role::Researcher {
                institution: self.institute.verify_key(),
            },
            T0 + 365 * DAY,
        )
    }

    fn request_with(&self, study: Study, credential: Credential) -> ResearchRequest {
        ResearchRequest::sign(&self.researcher, &self.chain(), study, credential).unwrap()
    }

    fn request(&self, study: Study) -> ResearchRequest {
        self.request_with(study, self.researcher_credential())
    }

    /// The hospital releases `records` for `request` at `self.now`, with randomness `seed`.
    fn release(
        &self,
        request: &ResearchRequest,
        records: &[SealedRecord],
        seed: u64,
    ) -> Result<ResearchRelease, ResearchError> {
        self.release_by(&self.hospital, request, records, seed)
    }

    fn release_by(
        &self,
        releaser: &Identity,
        request: &ResearchRequest,
        records: &[SealedRecord],
        seed: u64,
    ) -> Result<ResearchRelease, ResearchError> {
        release(
            releaser,
            request,
            records.iter().cloned(),
            self.view(),
            clock(self.now),
            &mut ChaCha20Rng::seed_from_u64(seed),
        )
    }
}

fn clock(ms: u64) -> ReleaseClock {
    ReleaseClock::at_tip(&ChainTip {
        hash: BlockHash::default(),
        prev: BlockHash::default(),
        height: 1,
        round: 1,
        timestamp_ms: ms,
        seed: ElectionSeed::default(),
    })
}

fn diabetes_study(longitudinal: bool) -> Study {
    Study {
        id: "northgate-dm2".into(),
        purpose: "HRESCH".into(),
        topic: Some("diabetes".into()),
        classes: vec![
            DataClass::Code {
                system: LOINC.into(),
                code: "4548-4".into(),
            },
            DataClass::ResourceType("Condition".into()),
        ],
        longitudinal,
    }
}

/// A population at the hospital: `n` patients with an HbA1c and a diabetes diagnosis each,
/// consenting to diabetes research. Returns their records in chain order.
fn population(f: &mut Net, n: usize) -> Vec<SealedRecord> {
    let mut records = Vec::new();
    for _ in 0..n {
        let p = f.patient();
        f.consent(p, "diabetes", vec![]);
        let v = p as u32;
        records.push(f.record(p, &hba1c(v), Who::Hospital));
        records.push(f.record(p, &condition(DIABETES), Who::Hospital));
    }
    f.now = T0 + DAY;
    records
}

/// A row's content with its pseudonyms (32 hex digits) blanked: what stays equal between two
/// releases of the same data.
fn content(row: &ResearchRow) -> String {
    let text = row.resource.to_string();
    let mut out = String::new();
    let mut run = String::new();
    for ch in text.chars().chain(std::iter::once('"')) {
        if ch.is_ascii_hexdigit() {
            run.push(ch);
            continue;
        }
        if run.len() == 32 {
            out.push('P');
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(ch);
    }
    out
}

fn contents(r: &ResearchRelease) -> Vec<String> {
    let mut all: Vec<String> = r.rows.iter().map(content).collect();
    all.sort();
    all
}

#[test]
fn releases_consenting_patients_strictly_and_de_identified() {
    let mut f = net(1);
    let mut records = population(&mut f, 12);
    // A patient who consented to another topic, one who revoked, one whose consent denies
    // the HbA1c code (strict: the code is only visible to the record's holder).
    let other = f.patient();
    f.consent(other, "oncology", vec![]);
    records.push(f.record(other, &hba1c(900), Who::Hospital));
    let revoker = f.patient();
    let cid = f.consent(revoker, "diabetes", vec![]);
    records.push(f.record(revoker, &hba1c(901), Who::Hospital));
    f.revoke(revoker, &cid);
    let denier = f.patient();
    f.consent(
        denier,
        "diabetes",
        vec![Provision::deny().class(DataClass::Code {
            system: LOINC.into(),
            code: "4548-4".into(),
        })],
    );
    let denied = f.record(denier, &hba1c(902), Who::Hospital);
    records.push(denied.clone());
    // A record the clinic added (not the hospital's to release), and one the study does not
    // need (a Patient resource).
    let p0 = 0;
    records.push(f.record(p0, &hba1c(903), Who::Clinic));
    records.push(f.record(
        p0,
        r#"{"resourceType":"Patient","id":"p0","gender":"female","birthDate":"1970-01-01"}"#,
        Who::Hospital,
    ));
    f.now = T0 + 2 * DAY;

    let request = f.request(diabetes_study(false));
    let r = f.release(&request, &records, 7).unwrap();
    assert_eq!(r.rows.len(), 24, "12 HbA1c and 12 diagnoses, nothing else");
    assert_eq!(r.patients, 12);
    let pseudonyms: HashSet<&str> = r.rows.iter().map(|x| x.pseudonym.as_str()).collect();
    assert_eq!(pseudonyms.len(), 12);
    let text: String = r.rows.iter().map(|x| x.resource.to_string()).collect();
    for leak in [
        "Ruiz",
        "Oak St",
        "mrn-",
        "obs-",
        "2026-03",
        "Hemoglobin",
        "Patient/someone",
    ] {
        assert!(!text.contains(leak), "{leak} leaked");
    }
    for p in &f.patients {
        assert!(!text.contains(&p.public().to_text()));
    }
    assert!(r.inclusion(&denied.record_id()).is_none());
    // The release log goes on chain: validators accept it, and it adds no audit entry.
    let audit = f.block(vec![(Who::Hospital, r.log_body())]).unwrap();
    assert!(audit.is_empty(), "no per-record entry: {audit:?}");
    for p in 0..f.patients.len() {
        assert!(f
            .state
            .audit_of_patient(&f.patients[p].verify_key())
            .is_empty());
    }
}

#[test]
fn offering_on_several_threads_releases_exactly_what_one_thread_releases() {
    let mut f = net(9);
    let mut records = population(&mut f, 40);
    // A revoked consent, a record the clinic added, and records offered twice: the threads
    // must skip the same ones.
    let revoker = f.patient();
    let cid = f.consent(revoker, "diabetes", vec![]);
    records.push(f.record(revoker, &hba1c(901), Who::Hospital));
    f.revoke(revoker, &cid);
    records.push(f.record(0, &hba1c(903), Who::Clinic));
    let again = records[..5].to_vec();
    records.extend(again);
    f.now = T0 + 2 * DAY;
    let request = f.request(diabetes_study(false));
    let by = |threads: usize| {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut builder =
            ReleaseBuilder::new(&f.hospital, &request, f.view(), clock(f.now), &mut rng).unwrap();
        let taken = builder.offer_all(&records, threads).unwrap();
        (taken, builder.finish(&mut rng).unwrap())
    };
    let (taken, one) = by(1);
    assert_eq!(
        taken, 80,
        "40 patients' HbA1c and diagnosis, nothing else, each once"
    );
    for threads in [2, 3, 16] {
        let (n, several) = by(threads);
        assert_eq!(n, taken);
        assert!(several.rows == one.rows, "{threads} threads: other rows");
        assert_eq!(several.log_body(), one.log_body());
    }
    // One at a time, through `offer`, is the same release again.
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut builder =
        ReleaseBuilder::new(&f.hospital, &request, f.view(), clock(f.now), &mut rng).unwrap();
    let offered = records.iter().filter(|r| builder.offer(r).unwrap()).count();
    assert_eq!(offered, taken);
    assert!(builder.finish(&mut rng).unwrap().rows == one.rows);
}

#[test]
fn small_cells_are_suppressed() {
    let mut f = net(2);
    let mut records = population(&mut f, 11);
    // Three of them also have a rare diagnosis: a cell of three patients.
    for p in 0..3 {
        records.push(f.record(p, &condition(RARE), Who::Hospital));
    }
    let r = f
        .release(&f.request(diabetes_study(false)), &records, 1)
        .unwrap();
    assert_eq!(r.rows.len(), 22);
    assert!(r
        .rows
        .iter()
        .all(|row| !row.resource.to_string().contains(RARE)));
    // With ten patients no cell reaches eleven: nothing is released.
    let mut g = net(3);
    let few = population(&mut g, 10);
    let err = g
        .release(&g.request(diabetes_study(false)), &few, 1)
        .unwrap_err();
    assert_eq!(err, ResearchError::TooFewPatients);
    assert_eq!(
        err.to_string(),
        "no part of the study has at least 11 consenting patients: nothing is released"
    );
}

#[test]
fn one_patients_choice_changes_only_their_own_rows() {
    // The guarantee of docs/consent.md: between a release before and after one patient's
    // revocation (no cell crossing the threshold), the rows of everyone else are the same
    // de-identified data, under fresh pseudonyms and in a fresh order; the release reports no
    // count of who declined, revoked or was left out.
    let mut f = net(4);
    let mut records = Vec::new();
    let mut consents = Vec::new();
    for _ in 0..14 {
        let p = f.patient();
        consents.push(f.consent(p, "diabetes", vec![]));
        records.push(f.record(p, &hba1c(p as u32), Who::Hospital));
        records.push(f.record(p, &condition(DIABETES), Who::Hospital));
    }
    f.now = T0 + DAY;
    let request = f.request(diabetes_study(false));
    let before = f.release(&request, &records, 10).unwrap();
    f.revoke(5, &consents[5]);
    let after = f.release(&request, &records, 11).unwrap();
    assert_eq!(before.patients, 14);
    assert_eq!(after.patients, 13);
    // Patient 5's own rows are exactly what is gone.
    let mut expected = contents(&before);
    for gone in [hba1c(5), condition(DIABETES)] {
        let value: Value = serde_json::from_str(&gone).unwrap();
        let clean =
            deidentify(&value, &StudyKey::from_secret([0; 32], "x"), &clock(f.now)).unwrap();
        let blank = content(&ResearchRow {
            pseudonym: String::new(),
            resource: clean,
        });
        let at = expected
            .iter()
            .position(|c| *c == blank)
            .expect("row of patient 5");
        expected.remove(at);
    }
    assert_eq!(contents(&after), expected);
    // No pseudonym survives from one release to the next: the revoker cannot be found by
    // the pseudonym that disappeared.
    let a: HashSet<&str> = before.rows.iter().map(|r| r.pseudonym.as_str()).collect();
    assert!(after.rows.iter().all(|r| !a.contains(r.pseudonym.as_str())));
}

#[test]
fn random_rounding_hides_a_one_patient_difference() {
    // Counts every member reads are rounded at random to tens: multiples of ten, never more
    // than nine away, unbiased; and the distributions shown for n and n + 1 patients are at
    // most 1/10 apart in total variation, so a difference between two logs is no evidence
    // that one patient left.
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let draws = |n: u64, rng: &mut ChaCha20Rng| -> BTreeMap<u64, f64> {
        let mut m = BTreeMap::new();
        for _ in 0..20_000 {
            *m.entry(round_at_random(n, rng)).or_insert(0.0) += 1.0 / 20_000.0;
        }
        m
    };
    for n in [10u64, 11, 14, 19, 20, 57, 1_000_003] {
        let d = draws(n, &mut rng);
        assert!(d.keys().all(|v| v % 10 == 0 && v.abs_diff(n) < 10), "{n}");
        let mean: f64 = d.iter().map(|(v, p)| *v as f64 * p).sum();
        assert!((mean - n as f64).abs() < 0.2, "{n}: mean {mean}");
        let next = draws(n + 1, &mut rng);
        let values: BTreeSet<u64> = d.keys().chain(next.keys()).copied().collect();
        let tv: f64 = values
            .iter()
            .map(|v| (d.get(v).unwrap_or(&0.0) - next.get(v).unwrap_or(&0.0)).abs())
            .sum::<f64>()
            / 2.0;
        assert!(tv < 0.1 + 0.02, "{n}: total variation {tv}");
    }
    assert!((0..100).all(|_| round_at_random(40, &mut rng) == 40));
}

#[test]
fn the_release_log_reveals_no_patient() {
    let mut f = net(5);
    let records = population(&mut f, 11);
    let request = f.request(diabetes_study(false));
    let r1 = f.release(&request, &records, 1).unwrap();
    let r2 = f.release(&request, &records, 2).unwrap();
    let bytes = r1.log_body().to_bytes();
    for p in &f.patients {
        let k = p.verify_key();
        assert!(!bytes.windows(32).any(|w| w == k.as_byte_array()));
    }
    for s in &records {
        let id = s.record_id();
        assert!(!bytes.windows(32).any(|w| w == id.as_byte_array()));
    }
    // Same records, two releases: two unrelated commitments (hiding), exact counts bound in
    // each, shown rounded to tens.
    let (l1, l2) = (r1.log(), r2.log());
    assert_ne!(l1.commitment, l2.commitment);
    assert!(l1.patients % 10 == 0 && l1.patients.abs_diff(11) < 10);
    // A patient asks the releaser: the proof opens their leaf only, against this release.
    let mine = records[0].record_id();
    let proof = r1.inclusion(&mine).unwrap();
    assert!(proof.verify(&l1.commitment, &mine));
    assert_eq!((proof.patients, proof.rows), (11, 22));
    assert!(!proof.verify(&l2.commitment, &mine));
    assert!(!proof.verify(&l1.commitment, &records[1].record_id()));
    let decoded = ReleaseInclusion::from_bytes(&proof.to_bytes()).unwrap();
    assert_eq!(decoded, proof);
    // Nothing of the data is in Debug output.
    let dbg = format!("{r1:?} {:?}", r1.rows[0]);
    assert!(!dbg.contains("4548") && !dbg.contains("value"), "{dbg}");
    assert!(!format!("{request:?}").contains("loinc"));
}

#[test]
fn longitudinal_studies_keep_pseudonyms_others_do_not() {
    let mut f = net(6);
    let records = population(&mut f, 11);
    let ids = |r: &ResearchRelease| -> BTreeSet<String> {
        r.rows.iter().map(|x| x.pseudonym.clone()).collect()
    };
    let cross = f.request(diabetes_study(false));
    let a = ids(&f.release(&cross, &records, 1).unwrap());
    let b = ids(&f.release(&cross, &records, 2).unwrap());
    assert!(a.is_disjoint(&b));
    let long = f.request(diabetes_study(true));
    let c = ids(&f.release(&long, &records, 3).unwrap());
    let d = ids(&f.release(&long, &records, 4).unwrap());
    assert_eq!(c, d);
    assert!(c.is_disjoint(&a) && c.is_disjoint(&b));
    // Another study id, longitudinal too: unlinkable with the first.
    let mut other = diabetes_study(true);
    other.id = "another-study".into();
    let e = ids(&f.release(&f.request(other), &records, 5).unwrap());
    assert!(e.is_disjoint(&c));
}

#[test]
fn attack_credentials_that_do_not_hold_are_refused() {
    let mut f = net(7);
    let records = population(&mut f, 11);
    let study = diabetes_study(false);
    let researcher_role = Role::Researcher {
        institution: f.institute.verify_key(),
    };
    let refuse = |f: &mut Net, cred: Credential, expected: RuleError| {
        let request = f.request_with(study.clone(), cred);
        assert_eq!(
            f.release(&request, &records, 1).unwrap_err(),
            ResearchError::Rule(expected.clone())
        );
        // The same log, submitted by hand, is refused by validators.
        let log = ReleaseLog {
            request,
            commitment: ReleaseCommitment::default(),
            patients: 20,
            rows: 30,
            released_at_ms: f.now,
        };
        assert_eq!(
            f.block(vec![(
                Who::Hospital,
                TxBody::ResearchReleased(Box::new(log))
            )]),
            Err(expected)
        );
    };
    // Self-issued: the researcher attests its own role, as its own institution or in the
    // name of a member.
    let own = Role::Researcher {
        institution: f.researcher.verify_key(),
    };
    let cred = f.credential(&f.researcher.duplicate(), own, T0 + 365 * DAY);
    refuse(
        &mut f,
        cred,
        RuleError::BadCredential(CredentialError::UnknownInstitution),
    );
    let cred = f.credential(&f.researcher.duplicate(), researcher_role, T0 + 365 * DAY);
    refuse(
        &mut f,
        cred,
        RuleError::BadCredential(CredentialError::BadSignature),
    );
    // Expired.
    let cred = f.credential(&f.institute, researcher_role, T0);
    refuse(
        &mut f,
        cred,
        RuleError::BadCredential(CredentialError::Expired),
    );
    // Issued by a member of another network (the signature binds the chain).
    let elsewhere = Credential::issue(
        &f.institute,
        &ChainId::from_byte_array([7; 32]),
        f.researcher.verify_key(),
        researcher_role,
        T0 + 365 * DAY,
    );
    refuse(
        &mut f,
        elsewhere,
        RuleError::BadCredential(CredentialError::BadSignature),
    );
    // Another researcher's real credential, presented in a request the thief signs.
    let colleague = Identity::generate(&mut f.rng);
    let theirs = Credential::issue(
        &f.institute,
        &f.chain(),
        colleague.verify_key(),
        researcher_role,
        T0 + 365 * DAY,
    );
    refuse(
        &mut f,
        theirs,
        RuleError::BadCredential(CredentialError::WrongHolder),
    );
    // A clinician's credential is not a researcher's.
    let clinician = f.credential(
        &f.hospital.duplicate(),
        Role::Clinician {
            institution: f.hospital.verify_key(),
        },
        T0 + 365 * DAY,
    );
    refuse(&mut f, clinician, RuleError::NotAResearcher);
}

#[test]
fn attack_requests_and_releasers_that_do_not_hold_are_refused() {
    let mut f = net(8);
    let records = population(&mut f, 11);
    // Signed by someone else than the researcher it names.
    let mut forged = f.request(diabetes_study(false));
    forged.signature = f.institute.sign(
        &f.chain(),
        domain::RESEARCH_REQUEST_SIG,
        &forged.signed_bytes(),
    );
    let refused = ResearchError::Request(TxError::InvalidBody(
        "the research request is not signed by its researcher",
    ));
    assert_eq!(f.release(&forged, &records, 1).unwrap_err(), refused);
    // Signed for another network.
    let other = ResearchRequest::sign(
        &f.researcher,
        &ChainId::from_byte_array([3; 32]),
        diabetes_study(false),
        f.researcher_credential(),
    )
    .unwrap();
    assert_eq!(f.release(&other, &records, 1).unwrap_err(), refused);
    // A study widened after signing.
    let mut widened = f.request(diabetes_study(false));
    widened
        .study
        .classes
        .push(DataClass::ResourceType("Observation".into()));
    assert_eq!(f.release(&widened, &records, 1).unwrap_err(), refused);
    // A releaser outside the network, or a patient, releases nothing.
    let request = f.request(diabetes_study(false));
    let outsider = Identity::generate(&mut f.rng);
    assert_eq!(
        f.release_by(&outsider, &request, &records, 1).unwrap_err(),
        ResearchError::NotAMember
    );
    let patient = f.patients[0].duplicate();
    assert_eq!(
        f.release_by(&patient, &request, &records, 1).unwrap_err(),
        ResearchError::NotAMember
    );
    // A member that did not add the records has nothing to release.
    assert_eq!(
        f.release_by(&f.clinic, &request, &records, 1).unwrap_err(),
        ResearchError::TooFewPatients
    );
    // A release time the block's does not fit is refused by validators.
    let r = f.release(&request, &records, 1).unwrap();
    f.now += 3_600_000;
    assert_eq!(
        f.block(vec![(Who::Hospital, r.log_body())]),
        Err(RuleError::ClaimedTimeOutOfRange)
    );
}

#[test]
fn attack_per_record_research_logs_are_refused() {
    // The old way (one HRESCH AccessLogged per record, no credential) told every member who
    // is in which study: validators refuse it for every code of the research hierarchy.
    let mut f = net(9);
    let records = population(&mut f, 1);
    for code in RESEARCH_CODES {
        let log = TxBody::AccessLogged {
            record_id: records[0].record_id(),
            accessor: f.researcher.public(),
            purpose: (*code).into(),
            consent_id: None,
            emergency: false,
            accessed_at_ms: f.now,
        };
        assert_eq!(
            f.block(vec![(Who::Hospital, log)]),
            Err(RuleError::ResearchLoggedPerRecord),
            "{code}"
        );
    }
    assert_eq!(
        RuleError::ResearchLoggedPerRecord.to_string(),
        "research is logged once per release, never per record"
    );
    // A release log cannot leave its credential out: the body does not decode without it.
    let request = f.request(diabetes_study(false));
    let log = ReleaseLog {
        request,
        commitment: ReleaseCommitment::default(),
        patients: 10,
        rows: 10,
        released_at_ms: f.now,
    };
    let bytes = log.to_bytes();
    let study_and_researcher = log.request.study.to_bytes().len() + 64;
    let mut without = bytes[..study_and_researcher].to_vec();
    without.extend_from_slice(
        &bytes[study_and_researcher + log.request.credential.to_bytes().len()..],
    );
    assert!(ReleaseLog::from_bytes(&without).is_err());
    assert_eq!(ReleaseLog::from_bytes(&bytes).unwrap(), log);
    // Counts that are not rounded to tens do not make a transaction.
    let exact = ReleaseLog {
        patients: 11,
        ..log
    };
    let err = Transaction::create(
        &f.hospital,
        &f.chain(),
        f.now,
        99,
        &TxBody::ResearchReleased(Box::new(exact)),
        vec![],
        &f.net,
        &mut f.rng,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid transaction body: release counts are multiples of ten, at least ten"
    );
}

#[test]
fn studies_are_checked_and_round_trip() {
    let good = diabetes_study(true);
    assert_eq!(Study::from_bytes(&good.to_bytes()).unwrap(), good);
    let bad = |edit: fn(&mut Study), e: StudyError| {
        let mut s = diabetes_study(false);
        edit(&mut s);
        assert_eq!(s.check(), Err(e));
        assert!(Study::from_bytes(&s.to_bytes()).is_err());
    };
    bad(|s| s.id = String::new(), StudyError::BadId);
    bad(|s| s.id = "a b".into(), StudyError::BadId);
    bad(|s| s.id = "x".repeat(65), StudyError::BadId);
    bad(|s| s.purpose = "TREAT".into(), StudyError::NotResearch);
    bad(|s| s.topic = Some(String::new()), StudyError::BadTopic);
    bad(|s| s.classes.clear(), StudyError::BadClasses);
    assert_eq!(
        StudyError::NotResearch.to_string(),
        "a study's purpose is a code of the HL7 v3 research hierarchy (HRESCH, CLINTRCH, ...)"
    );
    let mut clinical = diabetes_study(false);
    clinical.purpose = "CLINTRCH".into();
    assert!(clinical.check().is_ok());
    let f = net(10);
    let mut s = diabetes_study(false);
    s.purpose = "ETREAT".into();
    assert!(matches!(
        ResearchRequest::sign(&f.researcher, &f.chain(), s, f.researcher_credential()),
        Err(StudyError::NotResearch)
    ));
    let r = f.request(good);
    assert_eq!(ResearchRequest::from_bytes(&r.to_bytes()).unwrap(), r);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// The order rows leave in depends on the release's private key, never on the order the
    /// records come in (chain order): any permutation of the input gives the same rows in the
    /// same order for the same key, and two keys give two orders.
    #[test]
    fn release_order_is_independent_of_chain_order(
        seed in any::<u64>(),
        perm in Just((0..22usize).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let mut f = net(11);
        let records = population(&mut f, 11);
        let request = f.request(diabetes_study(true));
        let shuffled: Vec<SealedRecord> = perm.iter().map(|&i| records[i].clone()).collect();
        let a = f.release(&request, &records, seed).unwrap();
        let b = f.release(&request, &shuffled, seed).unwrap();
        prop_assert_eq!(&a.rows, &b.rows);
        prop_assert_eq!(a.log(), b.log());
        let c = f.release(&request, &records, seed.wrapping_add(1)).unwrap();
        prop_assert_eq!(contents(&a), contents(&c));
        let order = |r: &ResearchRelease| r.rows.iter().map(content).collect::<Vec<_>>();
        prop_assert_ne!(order(&a), order(&c));
        // Not chain order either: the rows of one patient are not kept together in input
        // order (two releases with unrelated keys would have to agree by chance).
        let pseudonyms: Vec<&str> = a.rows.iter().map(|r| r.pseudonym.as_str()).collect();
        let paired = pseudonyms.chunks(2).all(|w| w[0] == w[1]);
        prop_assert!(!paired);
    }

    /// Two releases of studies that are not longitudinal share no pseudonym, whatever their
    /// keys.
    #[test]
    fn non_longitudinal_releases_share_no_pseudonym(s1 in any::<u64>(), s2 in any::<u64>()) {
        prop_assume!(s1 != s2);
        let mut f = net(12);
        let records = population(&mut f, 11);
        let request = f.request(diabetes_study(false));
        let a = f.release(&request, &records, s1).unwrap();
        let b = f.release(&request, &records, s2).unwrap();
        let seen: HashSet<&str> = a.rows.iter().map(|r| r.pseudonym.as_str()).collect();
        prop_assert!(b.rows.iter().all(|r| !seen.contains(r.pseudonym.as_str())));
        prop_assert_eq!(contents(&a), contents(&b));
    }

    /// Whatever the population, no released cell has fewer than 11 patients, and a cell of
    /// 11 or more is released whole.
    #[test]
    fn small_cells_never_leave(rare in 0usize..14, common in 9usize..14) {
        let mut f = net(13);
        let mut records = Vec::new();
        for i in 0..common.max(rare) {
            let p = f.patient();
            f.consent(p, "diabetes", vec![]);
            if i < common {
                records.push(f.record(p, &condition(DIABETES), Who::Hospital));
            }
            if i < rare {
                records.push(f.record(p, &condition(RARE), Who::Hospital));
            }
        }
        f.now = T0 + DAY;
        let request = f.request(diabetes_study(false));
        match f.release(&request, &records, 1) {
            Ok(r) => {
                let count = |code: &str| r.rows.iter().filter(|x| x.resource.to_string().contains(code)).count();
                prop_assert_eq!(count(DIABETES), if common >= 11 { common } else { 0 });
                prop_assert_eq!(count(RARE), if rare >= 11 { rare } else { 0 });
            }
            Err(e) => {
                prop_assert_eq!(e, ResearchError::TooFewPatients);
                prop_assert!(common < 11 && rare < 11);
            }
        }
    }
}
