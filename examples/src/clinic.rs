//! The clinic network: medchain's main job, told as a short story.
//!
//! Three hospitals and a research institute run the protocol in process; patients enrol; FHIR
//! records are added; a clinician finds and reads a record under the patient's consent; an
//! emergency read happens and is audited; a researcher receives a de-identified dataset,
//! released under the one research policy and logged once on chain; the patient revokes;
//! someone tampers with the stored chain and verification catches it.
//!
//! Run: `cargo run --release -p medchain-examples --bin clinic [LEDGER_PATH]`
//! (default `clinic-ledger.sqlite` in the current directory; an existing file is replaced).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use getrandom::SysRng;
use medchain::{
    AccessError, Action, Actor, Consent, Event, Host, Identity, Ledger, LedgerError, MemoryNetwork,
    NetworkKey, Provision, Purpose, RecordDraft, RecordReceipt, ReleaseError, ReleaseRequest,
    SealedWriterKey, TxBody,
};
use medchain_core::access::audit_event;
use medchain_core::consent::{DataClass, EmergencyPreference, Period};
use medchain_core::credential::{Credential, Role};
use medchain_core::election::VrfSecret;
use medchain_core::encoding::Encode;
use medchain_core::genesis::{Genesis, Member, Quorum, Timing};
use medchain_core::hash::TxId;
use medchain_core::index::{IndexKey, Keyword};
use medchain_core::keys::BackupParams;
use medchain_core::research::{ResearchError, ResearchRequest, Study};
use rand_core::UnwrapErr;

/// The passphrase of the demo's operator key file (a real deployment asks the operator).
const DEMO_PASSPHRASE: &str = "clinic-demo";

const HBA1C: &str = r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},
 "effectiveDateTime":"2026-10-14T09:30:00Z",
 "code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},
 "valueQuantity":{"value":7.9,"unit":"%"}}"#;
const DIABETES: &str = r#"{"resourceType":"Condition","subject":{"reference":"Patient/alice"},
 "recordedDate":"2026-10-14",
 "code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}]}}"#;
const HIV_TEST: &str = r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},
 "effectiveDateTime":"2026-09-02",
 "code":{"coding":[{"system":"http://loinc.org","code":"75622-1","display":"HIV 1 and 2 tests"}]},
 "valueString":"negative"}"#;
const BOB_ALLERGY: &str = r#"{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/bob"},
 "recordedDate":"2025-03-01",
 "code":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"7980","display":"Penicillin G"}]},
 "criticality":"high"}"#;
const BOB_HBA1C: &str = r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/bob"},
 "effectiveDateTime":"2026-08-20",
 "code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},
 "valueQuantity":{"value":6.4,"unit":"%"}}"#;

/// St. Mary's diabetes clinic: HbA1c results of the patients who joined its research
/// programme (a type 2 diabetes diagnosis each, and consent to diabetes research).
fn cohort_hba1c(i: usize) -> String {
    format!(
        r#"{{"resourceType":"Observation","status":"final","subject":{{"reference":"Patient/dm-{i}"}},
 "effectiveDateTime":"2026-0{}-1{}T08:00:00Z",
 "code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}}]}},
 "valueQuantity":{{"value":{}.{},"unit":"%"}}}}"#,
        1 + i % 9,
        i % 10,
        6 + i % 4,
        (i * 7) % 10
    )
}

fn cohort_diabetes(i: usize) -> String {
    format!(
        r#"{{"resourceType":"Condition","subject":{{"reference":"Patient/dm-{i}"}},"recordedDate":"202{}-05-0{}",
 "code":{{"coding":[{{"system":"http://snomed.info/sct","code":"44054006","display":"Diabetes mellitus type 2"}}]}}}}"#,
        i % 6,
        1 + i % 9
    )
}

/// Patients of St. Mary's diabetes programme besides Alice.
const COHORT: usize = 12;

/// What an administrator with file access could do: change one byte of the first stored
/// transaction at or above block `height`, straight in the SQLite file. Returns its height.
fn tamper_with_block(path: &Path, height: u64) -> Result<u64, Box<dyn Error>> {
    let db = rusqlite::Connection::open(path)?;
    let (seq, at, mut bytes): (i64, i64, Vec<u8>) = db.query_row(
        "SELECT seq, height, bytes FROM transactions WHERE height >= ?1 ORDER BY height, idx LIMIT 1",
        [height as i64],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    db.execute(
        "UPDATE transactions SET bytes = ?1 WHERE seq = ?2",
        rusqlite::params![bytes, seq],
    )?;
    Ok(at as u64)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn chapter(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

fn say(line: impl AsRef<str>) {
    println!("   {}", line.as_ref());
}

/// Steps a run may take before the example gives up (each delivers one message or fires one
/// deadline).
const STEPS: usize = 200_000;

/// Runs the network until every member has committed `pending`, then tells what St. Mary's
/// ledger gained.
fn commit(net: &mut MemoryNetwork, pending: &mut Vec<TxId>) -> Result<(), Box<dyn Error>> {
    if !net.run_until_committed(pending, STEPS)? {
        return Err("the network did not commit in time".into());
    }
    for (i, event) in net.take_events() {
        let Event::Committed { height, txs } = event else {
            continue;
        };
        if i != 0 {
            continue;
        }
        let block = net
            .host(0)
            .ledger()
            .blocks_from(height)
            .next()
            .ok_or("a committed block is missing from the ledger")??;
        say(format!(
            "block {height} committed ({}, miner {}…), written to the ledger",
            if txs.is_empty() {
                "empty: it certifies its parent, which the two-chain rule then commits".to_owned()
            } else {
                format!("{} transaction(s)", txs.len())
            },
            &block.header.miner.to_string()[..8]
        ));
    }
    pending.clear();
    Ok(())
}

/// Adds a FHIR record at hospital `at` for a patient enrolled there; returns its receipt.
fn add_record(
    net: &mut MemoryNetwork,
    at: usize,
    fhir: &str,
    enrolment: &SealedWriterKey,
    pending: &mut Vec<TxId>,
) -> Result<RecordReceipt, Box<dyn Error>> {
    let now = net.now_ms();
    let receipt = net.host_mut(at).add_record(
        RecordDraft {
            fhir: fhir.as_bytes(),
            enrolment,
            readers: &[],
        },
        now,
    )?;
    net.pump(at);
    pending.push(receipt.tx_id);
    Ok(receipt)
}

/// Hospital `at` contributes a body the patient's wallet signed (a consent, a revocation).
fn submit_signed(
    net: &mut MemoryNetwork,
    at: usize,
    body: &TxBody,
    pending: &mut Vec<TxId>,
) -> Result<TxId, Box<dyn Error>> {
    let now = net.now_ms();
    let id = net.host_mut(at).submit_patient_signed(body, now)?;
    net.pump(at);
    pending.push(id);
    Ok(id)
}

/// A patient's wallet enrols at a hospital: it seals her writer index key and consent tag key
/// to the hospital's public identity.
fn enrol(patient: &Identity, host: &Host) -> Result<SealedWriterKey, Box<dyn Error>> {
    Ok(SealedWriterKey::export(
        patient,
        &host.genesis().chain_id(),
        &host.public(),
        &mut UnwrapErr(SysRng),
    )?)
}

#[allow(clippy::too_many_lines)]
fn main() -> Result<(), Box<dyn Error>> {
    let path = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "clinic-ledger.sqlite".into()),
    );
    for suffix in [
        "",
        "-wal",
        "-shm",
        ".tampered",
        ".tampered-wal",
        ".tampered-shm",
        ".st-marys.id",
        ".request",
    ] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        let _ = std::fs::remove_file(p);
    }
    // The other members' ledger files.
    let peers_dir = PathBuf::from(format!("{}.members", path.display()));
    let _ = std::fs::remove_dir_all(&peers_dir);
    std::fs::create_dir_all(&peers_dir)?;
    println!("medchain clinic network — a short story");

    // ------------------------------------------------------------------------------------
    chapter(1, "The network is founded");
    let names = [
        "St. Mary's Hospital",
        "City General",
        "Riverside Clinic",
        "Regional Health Authority",
        "Northgate Research Institute",
    ];
    let identities: Vec<Identity> = names
        .iter()
        .map(|_| Identity::generate(&mut UnwrapErr(SysRng)))
        .collect();
    let network_key = NetworkKey::generate(&mut UnwrapErr(SysRng));
    let members = names
        .iter()
        .zip(&identities)
        .enumerate()
        .map(|(i, (name, id))| -> Result<Member, Box<dyn Error>> {
            Ok(Member {
                name: (*name).into(),
                identity: id.public(),
                vrf: VrfSecret::derive(id)?.public(),
                validator: i < 4,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = now_ms();
    let genesis = Genesis::new(
        "clinic-network",
        start,
        network_key.fingerprint(),
        members,
        Quorum::TWO_THIRDS,
        Timing::DEFAULT,
        10_000,
    )?;
    say(format!("genesis {} — {} trusted validators, {} members, quorum {} of {}, tolerates {} faulty validator(s)",
        &genesis.hash().to_string()[..16], genesis.validators().len(), genesis.members.len(),
        genesis.quorum_size(), genesis.validators().len(), genesis.fault_tolerance()));
    // Writers validate every record against the network's FHIR profile before sealing it.
    say(format!(
        "FHIR profile chosen at genesis: {} (records are validated before sealing)",
        genesis.fhir_profile().name()
    ));
    // The founder wraps the network key for every member (X25519 + HKDF + AES-GCM); each
    // member's host keeps its identity, the network key and its own ledger file.
    let mut hosts = Vec::new();
    for (i, (name, id)) in names.iter().zip(identities).enumerate() {
        let envelope = network_key.wrap_for(&id.public(), &mut UnwrapErr(SysRng))?;
        let key = NetworkKey::unwrap_from(&envelope, &id)?;
        let file = if i == 0 {
            path.clone()
        } else {
            peers_dir.join(format!("member-{i}.sqlite"))
        };
        let host = Host::create(&file, &genesis, id, key, start)?;
        say(format!(
            "{name} joins ({}), network key received",
            if genesis.is_validator(&host.key()) {
                "validator"
            } else {
                "member"
            }
        ));
        hosts.push(host);
    }
    let mut net = MemoryNetwork::new(hosts, start);
    let chain = genesis.chain_id();
    // The operator's key file: the network key under a passphrase (Argon2id + AES-256-GCM).
    let key_path = PathBuf::from(format!("{}.key", path.display()));
    std::fs::write(
        &key_path,
        network_key.export_protected(
            DEMO_PASSPHRASE.as_bytes(),
            BackupParams::RECOMMENDED,
            &mut UnwrapErr(SysRng),
        )?,
    )?;
    say(format!(
        "St. Mary's keeps the ledger file {} (operator key file {}); the other members keep theirs in {}",
        path.display(),
        key_path.display(),
        peers_dir.display()
    ));

    // ------------------------------------------------------------------------------------
    chapter(2, "Patients enrol");
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let bob = Identity::generate(&mut UnwrapErr(SysRng));
    let backup = alice.export_backup(
        b"correct horse battery staple",
        BackupParams::RECOMMENDED,
        &mut UnwrapErr(SysRng),
    )?;
    let alice_on_new_phone = Identity::restore_backup(&backup, b"correct horse battery staple")?;
    say(format!("Alice's wallet: {}", alice.public().to_text()));
    say(format!(
        "her encrypted backup is {} bytes; restored on a new phone: same identity = {}",
        backup.len(),
        alice_on_new_phone.public() == alice.public()
    ));
    say(format!("Bob's wallet:   {}", bob.public().to_text()));
    // At enrolment each wallet seals the patient's writer index key and consent tag key to the
    // hospital: it indexes and classifies her records without ever holding her identity.
    let alice_at_st_marys = enrol(&alice, net.host(0))?;
    let alice_at_riverside = enrol(&alice, net.host(2))?;
    let bob_at_riverside = enrol(&bob, net.host(2))?;
    say("Alice enrols at St. Mary's and Riverside, Bob at Riverside: their wallets seal each hospital a writer index key and a consent tag key");
    let dr_ruiz = Identity::generate(&mut UnwrapErr(SysRng));
    let dr_okafor = Identity::generate(&mut UnwrapErr(SysRng));
    let dr_chen = Identity::generate(&mut UnwrapErr(SysRng));
    let day = 86_400_000;
    let issue = |by: &Host, who: &Identity, role: Role| {
        Credential::issue(
            by.identity(),
            &chain,
            who.verify_key(),
            role,
            start + 365 * day,
        )
    };
    let ruiz_cred = issue(
        net.host(0),
        &dr_ruiz,
        Role::Clinician {
            institution: net.host(0).key(),
        },
    );
    let okafor_cred = issue(
        net.host(1),
        &dr_okafor,
        Role::Clinician {
            institution: net.host(1).key(),
        },
    );
    let chen_cred = issue(
        net.host(4),
        &dr_chen,
        Role::Researcher {
            institution: net.host(4).key(),
        },
    );
    say("Dr. Ruiz (St. Mary's), Dr. Okafor (City General ER) and Dr. Chen (Northgate, researcher) hold signed credentials");

    let mut pending: Vec<TxId> = Vec::new();

    // ------------------------------------------------------------------------------------
    chapter(3, "Hospitals add FHIR records");
    let a1c = add_record(&mut net, 0, HBA1C, &alice_at_st_marys, &mut pending)?;
    add_record(&mut net, 0, DIABETES, &alice_at_st_marys, &mut pending)?;
    let hiv = add_record(&mut net, 2, HIV_TEST, &alice_at_riverside, &mut pending)?;
    let allergy = add_record(&mut net, 2, BOB_ALLERGY, &bob_at_riverside, &mut pending)?;
    add_record(&mut net, 2, BOB_HBA1C, &bob_at_riverside, &mut pending)?;
    let cohort: Vec<Identity> = (0..COHORT)
        .map(|_| Identity::generate(&mut UnwrapErr(SysRng)))
        .collect();
    for (i, p) in cohort.iter().enumerate() {
        let enrolment = enrol(p, net.host(0))?;
        for fhir in [cohort_hba1c(i), cohort_diabetes(i)] {
            add_record(&mut net, 0, &fhir, &enrolment, &mut pending)?;
        }
    }
    say("St. Mary's adds Alice's HbA1c and diabetes diagnosis; Riverside adds her HIV test and Bob's allergy and HbA1c");
    say(format!("St. Mary's diabetes programme adds an HbA1c and a diagnosis for each of {COHORT} more patients"));
    say("each record is sealed (AES-256-GCM, fresh key) for the patient and its hospital; only a salted commitment and an encrypted index entry are visible");
    commit(&mut net, &mut pending)?;
    let stranger = Identity::generate(&mut UnwrapErr(SysRng));
    net.inject(
        1,
        stranger.verify_key(),
        b"\x01\x07 not a medchain message".to_vec(),
    );
    net.deliver_all(STEPS)?;
    let dropped = net.take_events().into_iter().find_map(|(i, e)| match e {
        Event::Dropped { reason, .. } if i == 1 => Some(reason),
        _ => None,
    });
    if let Some(reason) = dropped {
        say(format!(
            "a stranger sends City General garbage: dropped ({reason}); nothing committed changes"
        ));
    }

    // ------------------------------------------------------------------------------------
    chapter(4, "Alice signs her consent");
    let consent = Consent {
        patient: alice.public(),
        issued_ms: net.now_ms(),
        summary: "Dr. Ruiz may read my results for my treatment, except my HIV test; diabetes research may use my data".into(),
        period: Period { start_ms: Some(start), end_ms: Some(start + 365 * day) },
        emergency: Some(EmergencyPreference::Allow),
        provisions: vec![
            Provision::permit()
                .actor(Actor::Party(dr_ruiz.verify_key()))
                .action(Action::Read)
                .action(Action::Search)
                .purpose(Purpose::Treat)
                .nest(Provision::deny().class(DataClass::Code { system: "http://loinc.org".into(), code: "75622-1".into() })),
            Provision::permit()
                .actor(Actor::AnyResearcher)
                .action(Action::ResearchUse)
                .purpose(Purpose::Research { topic: Some("diabetes".into()) }),
        ],
    };
    let fhir_consent = medchain_core::consent::consent_to_fhir(&consent);
    say(format!(
        "as FHIR R4: Consent/{}… scope {}",
        &consent.granted_id(&alice).to_string()[..12],
        fhir_consent["scope"]["coding"][0]["code"]
    ));
    say(format!(
        "\"{}\" (Alice's own copy: on chain the consent has no summary and its HIV code is blinded)",
        consent.summary
    ));
    let bob_consent = Consent {
        patient: bob.public(),
        issued_ms: net.now_ms(),
        summary: "my data may be used for diabetes research".into(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit().actor(Actor::AnyResearcher).purpose(
            Purpose::Research {
                topic: Some("diabetes".into()),
            },
        )],
    };
    submit_signed(
        &mut net,
        0,
        &consent.grant_body(&alice, &chain)?,
        &mut pending,
    )?;
    submit_signed(
        &mut net,
        2,
        &bob_consent.grant_body(&bob, &chain)?,
        &mut pending,
    )?;
    for p in &cohort {
        let c = Consent {
            patient: p.public(),
            issued_ms: net.now_ms(),
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
        submit_signed(&mut net, 0, &c.grant_body(p, &chain)?, &mut pending)?;
    }
    say(format!(
        "Bob and the {COHORT} patients of the programme consent to diabetes research"
    ));
    commit(&mut net, &mut pending)?;

    // ------------------------------------------------------------------------------------
    chapter(5, "Dr. Ruiz finds and reads Alice's HbA1c");
    // Alice's wallet derives the trapdoor for St. Mary's entries; St. Mary's searches with it.
    let query = IndexKey::for_patient(&alice)
        .for_writer(&net.host(0).public().id())
        .query(&[Keyword::code("http://loinc.org", "4548-4")?])?;
    let found = net.host(0).ledger().search_report(&query, 1)?;
    let hits = &found.hits;
    say(format!(
        "encrypted search for LOINC 4548-4 with Alice's trapdoor for St. Mary's entries: {} hit(s){} — no node learns what was searched",
        hits.len(),
        hits.iter().map(|h| format!(", record {}… in block {}", &h.record_id.to_string()[..8], h.height)).collect::<String>()
    ));
    say(format!(
        "the blocks' secure-index filters (built by the contributing hospitals when they signed) did the work: {} indexed block(s), {} ruled out, {} searched record by record, {} PRF evaluation(s)",
        found.indexed_blocks, found.blocks_skipped, found.exhaustive_blocks, found.prf_evaluations
    ));
    let now = net.now_ms();
    let release = net.host_mut(0).release(
        &a1c.sealed,
        ReleaseRequest {
            grantee: dr_ruiz.public(),
            credential: Some(ruiz_cred.clone()),
            purpose: Purpose::Treat,
        },
        now,
    )?;
    net.pump(0);
    pending.extend([release.key_shared, release.access_logged]);
    commit(&mut net, &mut pending)?;
    let TxBody::KeyShared {
        envelope: Some(envelope),
        ..
    } = &release.release.key_shared
    else {
        return Err("no envelope".into());
    };
    let opened = a1c
        .sealed
        .open_with(&dr_ruiz, std::slice::from_ref(envelope))?;
    let obs: serde_json::Value = serde_json::from_slice(opened.payload())?;
    say(format!(
        "permitted by {:?}; Dr. Ruiz decrypts it: HbA1c {}{}",
        release.release.decision,
        obs["valueQuantity"]["value"],
        obs["valueQuantity"]["unit"].as_str().unwrap_or("")
    ));

    chapter(6, "Dr. Ruiz asks for the HIV test: the consent says no");
    let now = net.now_ms();
    match net.host_mut(2).release(
        &hiv.sealed,
        ReleaseRequest {
            grantee: dr_ruiz.public(),
            credential: Some(ruiz_cred.clone()),
            purpose: Purpose::Treat,
        },
        now,
    ) {
        Err(ReleaseError::Access(AccessError::Denied(denial))) => {
            say(format!("Riverside refuses Dr. Ruiz: {denial}"));
            say(format!("Alice's audit view says why: {}", denial.detail()));
        }
        other => return Err(format!("expected a denial, got {other:?}").into()),
    }

    // ------------------------------------------------------------------------------------
    chapter(7, "Emergency: Bob arrives unconscious at City General");
    let now = net.now_ms();
    let er = net.host_mut(2).release(
        &allergy.sealed,
        ReleaseRequest {
            grantee: dr_okafor.public(),
            credential: Some(okafor_cred),
            purpose: Purpose::EmergencyTreat,
        },
        now,
    )?;
    net.pump(2);
    pending.extend([er.key_shared, er.access_logged]);
    commit(&mut net, &mut pending)?;
    let TxBody::KeyShared {
        envelope: Some(env),
        ..
    } = &er.release.key_shared
    else {
        return Err("no envelope".into());
    };
    let allergy_json: serde_json::Value = serde_json::from_slice(
        allergy
            .sealed
            .open_with(&dr_okafor, std::slice::from_ref(env))?
            .payload(),
    )?;
    say(format!(
        "break-glass read by Dr. Okafor: allergy to {} (criticality {})",
        allergy_json["code"]["coding"][0]["display"], allergy_json["criticality"]
    ));
    for a in net.host(0).audit_trail(&bob.verify_key())? {
        let ev = audit_event(&a);
        say(format!(
            "Bob's audit trail: {:?} by {}… purpose {} emergency={} at {}",
            a.kind,
            &a.actor.id().to_string()[..8],
            a.purpose,
            a.emergency,
            ev["recorded"].as_str().unwrap_or("")
        ));
    }

    // ------------------------------------------------------------------------------------
    chapter(8, "Dr. Chen receives a de-identified diabetes dataset");
    // What the study needs, and nothing else: HbA1c results and type 2 diabetes diagnoses.
    let study = Study {
        id: "northgate-dm2-2026".into(),
        purpose: "HRESCH".into(),
        topic: Some("diabetes".into()),
        classes: vec![
            DataClass::Code {
                system: "http://loinc.org".into(),
                code: "4548-4".into(),
            },
            DataClass::Code {
                system: "http://snomed.info/sct".into(),
                code: "44054006".into(),
            },
        ],
        longitudinal: false,
    };
    // A researcher role Dr. Chen attests himself is refused before any record is opened.
    let self_made = Credential::issue(
        &dr_chen,
        &chain,
        dr_chen.verify_key(),
        Role::Researcher {
            institution: net.host(4).key(),
        },
        start + 365 * day,
    );
    let forged = ResearchRequest::sign(&dr_chen, &chain, study.clone(), self_made)?;
    match net.host(0).research_release(&forged) {
        Err(e) => say(format!(
            "with a credential he signed himself: refused ({e})"
        )),
        Ok(_) => return Err("a self-issued credential was accepted".into()),
    }
    // Dr. Chen signs his request with the credential Northgate issued him.
    let request = ResearchRequest::sign(&dr_chen, &chain, study, chen_cred)?;
    match net.host(2).research_release(&request) {
        Err(LedgerError::Research(ResearchError::TooFewPatients)) => say(
            "Riverside holds Bob's HbA1c only: a cell of fewer than 11 patients, so it releases nothing",
        ),
        other => return Err(format!("expected small-cell suppression, got {other:?}").into()),
    }
    // St. Mary's releases: consent checked per record, de-identified, small cells suppressed,
    // rows in an order only the release's private key determines, pseudonyms of this release.
    let release = net.host(0).research_release(&request)?;
    say(format!(
        "St. Mary's releases {} rows of {} patients (consents judged and ages capped at {})",
        release.rows.len(),
        release.patients,
        medchain_core::fhir::format_instant(release.clock.time_ms())
    ));
    for row in release.rows.iter().take(2) {
        say(format!(
            "row: patient {}… {}",
            &row.pseudonym[..8],
            row.resource
        ));
    }
    // The release is logged once, from St. Mary's host, before the rows leave. The log carries
    // the release time (the host's clock when it is past the chain's tip); a block may hold it
    // if the log is at most `max_clock_skew_ms` ahead of the block.
    //
    //
    // The network's virtual clock moves to the release time (a jump past round timeouts: the
    // next commit step may cover several blocks, which each host appends in one write).
    net.advance_clock(release.clock.time_ms());
    let now = net.now_ms();
    let log_id = net.host_mut(0).submit_body(&release.log_body(), now)?;
    net.pump(0);
    pending.push(log_id);
    commit(&mut net, &mut pending)?;
    let log = release.log();
    say(format!(
        "on chain, one ResearchReleased for the whole dataset: study {}, Dr. Chen's signed request and credential, commitment {}…, about {} patients and {} rows (rounded at random to tens) — no record, no patient",
        log.request.study.id,
        &log.commitment.to_string()[..12],
        log.patients,
        log.rows
    ));
    let mine = release
        .inclusion(&a1c.record_id)
        .ok_or("Alice's HbA1c should be in the release")?;
    say(format!(
        "Alice's audit trail lists no study; her wallet asks St. Mary's whether her HbA1c was used and checks the answer against the commitment: {}",
        mine.verify(&log.commitment, &a1c.record_id)
    ));
    // For `medchain research` on this ledger: St. Mary's identity (under the demo passphrase)
    // and Dr. Chen's signed request.
    std::fs::write(
        format!("{}.st-marys.id", path.display()),
        net.host(0).identity().export_backup(
            DEMO_PASSPHRASE.as_bytes(),
            BackupParams::RECOMMENDED,
            &mut UnwrapErr(SysRng),
        )?,
    )?;
    std::fs::write(format!("{}.request", path.display()), request.to_bytes())?;

    // ------------------------------------------------------------------------------------
    chapter(9, "Alice revokes her consent");
    submit_signed(
        &mut net,
        0,
        &Consent::revoke_body(&alice, &chain, &consent.granted_id(&alice)),
        &mut pending,
    )?;
    commit(&mut net, &mut pending)?;
    let now = net.now_ms();
    match net.host_mut(0).release(
        &a1c.sealed,
        ReleaseRequest {
            grantee: dr_ruiz.public(),
            credential: Some(ruiz_cred),
            purpose: Purpose::Treat,
        },
        now,
    ) {
        Err(ReleaseError::Access(AccessError::Denied(denial))) => say(format!(
            "Dr. Ruiz asks again: {denial} (Alice's audit view: {})",
            denial.detail()
        )),
        other => return Err(format!("expected a denial, got {other:?}").into()),
    }
    // A careless node releases the key anyway: the network's consent rules keep it out.
    let rogue = TxBody::KeyShared {
        record_id: a1c.record_id,
        grantee: dr_ruiz.public(),
        purpose: "TREAT".into(),
        consent_id: Some(consent.granted_id(&alice).to_byte_array()),
        credential: None,
        envelope: Some(a1c.sealed.share_with(
            net.host(0).identity(),
            &dr_ruiz.public(),
            &mut UnwrapErr(SysRng),
        )?),
    };
    let now = net.now_ms();
    let rogue_id = net.host_mut(0).submit_body(&rogue, now)?;
    net.pump(0);
    net.run_for(20_000, STEPS)?;
    let got_in = net.hosts().iter().any(|h| h.is_committed(&rogue_id));
    let refused = net.take_events().into_iter().find_map(|(_, e)| match e {
        Event::Refused { id, reason } if id == rogue_id => Some(reason),
        _ => None,
    });
    say(format!("a node that ignores the revocation tries to release the key anyway: committed = {got_in} (the consent rules keep it out of every block{})",
        refused.map(|r| format!("; its own node refuses it: {r}")).unwrap_or_default()));
    say("Alice's audit trail:");
    for a in net.host(0).audit_trail(&alice.verify_key())? {
        say(format!(
            "  {:?} of record {}… by {}… for {}",
            a.kind,
            &a.record_id.to_string()[..8],
            &a.actor.id().to_string()[..8],
            a.purpose
        ));
    }

    // ------------------------------------------------------------------------------------
    chapter(10, "Someone tampers with the stored chain");
    let summary = net.host(0).ledger().verify(|_| {})?;
    say(format!(
        "verification before: {} blocks, {} transactions, head proven: {}",
        summary.blocks, summary.transactions, summary.head_proven
    ));
    let height = net.host(0).ledger().height();
    // St. Mary's network key, to open the copy below.
    let reopen_key = NetworkKey::unwrap_from(
        &network_key.wrap_for(&net.host(0).public(), &mut UnwrapErr(SysRng))?,
        net.host(0).identity(),
    )?;
    // The members stop: every ledger file is closed.
    drop(net);
    let copy = PathBuf::from(format!("{}.tampered", path.display()));
    std::fs::copy(&path, &copy)?;
    let edited = tamper_with_block(&copy, 3)?;
    say(format!("an administrator edits one byte of block {edited} directly in a copy of the SQLite file ({})", copy.display()));
    match Ledger::open_sqlite(&copy, reopen_key).and_then(|l| l.verify(|_| {})) {
        Ok(s) => return Err(format!("tampering went unnoticed ({} blocks)", s.blocks).into()),
        Err(e) => say(format!("caught: {e}")),
    }
    println!(
        "\nThe ledger ({height} blocks) is in {}. Inspect it with:",
        path.display()
    );
    println!("   MEDCHAIN_PASSPHRASE={DEMO_PASSPHRASE} cargo run --release -p medchain-examples --bin medchain -- verify {}", path.display());
    println!("and release Dr. Chen's study again from St. Mary's copy of it with:");
    println!("   MEDCHAIN_PASSPHRASE={DEMO_PASSPHRASE} MEDCHAIN_RELEASER_PASSPHRASE={DEMO_PASSPHRASE} cargo run --release -p medchain-examples --bin medchain -- research {0} --releaser {0}.st-marys.id --request {0}.request", path.display());
    Ok(())
}
