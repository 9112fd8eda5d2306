//! The clinic network: medchain's main job, told as a short story.
//!
//! Three hospitals and a research institute run the protocol in process; patients enrol; FHIR
//! records are added; a clinician finds and reads a record under the patient's consent; an
//! emergency read happens and is audited; a researcher receives a de-identified dataset; the
//! patient revokes; someone tampers with the stored chain and verification catches it.
//!
//! Run: `cargo run --release -p medchain-examples --bin clinic [LEDGER_PATH]`
//! (default `clinic-ledger.sqlite` in the current directory; an existing file is replaced).

mod cluster;

use std::error::Error;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use getrandom::SysRng;
use medchain_core::access::{audit_event, record_class, release_key, AccessError, ReleaseRequest};
use medchain_core::consent::{
    deidentify, Action, Actor, Consent, DataClass, EmergencyPreference, Period, Provision, Purpose,
    ReleaseClock, StudyKey,
};
use medchain_core::credential::{Credential, Role};
use medchain_core::election::VrfSecret;
use medchain_core::encoding::Encode;
use medchain_core::genesis::{Genesis, Member, Quorum, Timing};
use medchain_core::hash::TxId;
use medchain_core::index::{extract_keywords, IndexEntry, IndexKey, Keyword};
use medchain_core::keys::{BackupParams, Identity};
use medchain_core::protocol::{IndexMaterial, Node, NodeConfig};
use medchain_core::seal::{NetworkKey, SealedRecord};
use medchain_core::tx::{Transaction, TxBody};
use medchain_fhir::{seal_validated, Options};
use medchain_store::Ledger;
use rand_core::UnwrapErr;

use cluster::Cluster;

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

struct Institution {
    name: &'static str,
    id: Identity,
}

/// What an administrator with file access could do: change one byte of the first stored
/// transaction at or above block `height`, straight in the SQLite file. Returns its height.
fn tamper_with_block(path: &std::path::Path, height: u64) -> Result<u64, Box<dyn Error>> {
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

/// A record's secure-index entry and the material its node needs to place it in a block's
/// filter (the record id and the writer's trapdoors).
type Indexed = (Vec<u8>, IndexMaterial);

/// A record as its contributing hospital prepares it: validated against the network's FHIR
/// profile, sealed for the patient and itself, its secure-index entry written with the
/// patient's writer key.
fn prepare_record(
    fhir: &str,
    patient: &Identity,
    hospital: &Institution,
    options: &Options,
) -> Result<(SealedRecord, TxBody, Option<Indexed>), Box<dyn Error>> {
    let sealed = seal_validated(
        fhir.as_bytes(),
        options,
        &patient.public(),
        &[hospital.id.public()],
        &mut UnwrapErr(SysRng),
    )?
    .record;
    let keywords = extract_keywords(&serde_json::from_str(fhir)?)?;
    // At enrolment the patient's wallet handed the hospital a writer key for its records.
    let writer = IndexKey::for_patient(patient).for_writer(&hospital.id.id());
    let trapdoors = writer.trapdoors(keywords.iter());
    let entry = IndexEntry::build(&sealed.record_id(), &trapdoors, &mut UnwrapErr(SysRng))?;
    // With the writer key came the patient's consent tag key: the record's codes go on chain
    // blinded under it, so validators can match them against the patient's blinded consents.
    let tag_key = medchain_core::consent::ConsentTagKey::for_patient(patient);
    let class = record_class(fhir.as_bytes(), &tag_key, &mut UnwrapErr(SysRng))?;
    let body = TxBody::record_added(sealed.clone(), class);
    let material = IndexMaterial {
        record_id: sealed.record_id(),
        trapdoors,
    };
    Ok((sealed, body, Some((entry.to_bytes(), material))))
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
    ] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        let _ = std::fs::remove_file(p);
    }
    println!("medchain clinic network — a short story");

    // ------------------------------------------------------------------------------------
    chapter(1, "The network is founded");
    let institutions: Vec<Institution> = [
        "St. Mary's Hospital",
        "City General",
        "Riverside Clinic",
        "Regional Health Authority",
        "Northgate Research Institute",
    ]
    .into_iter()
    .map(|name| Institution {
        name,
        id: Identity::generate(&mut UnwrapErr(SysRng)),
    })
    .collect();
    let network_key = NetworkKey::generate(&mut UnwrapErr(SysRng));
    let members = institutions
        .iter()
        .enumerate()
        .map(|(i, inst)| -> Result<Member, Box<dyn Error>> {
            Ok(Member {
                name: inst.name.into(),
                identity: inst.id.public(),
                vrf: VrfSecret::derive(&inst.id)?.public(),
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
    let fhir_options = Options::for_genesis(&genesis);
    say(format!(
        "FHIR profile chosen at genesis: {} (records are validated before sealing)",
        genesis.fhir_profile().name()
    ));
    // The founder wraps the network key for every node (X25519 + HKDF + AES-GCM).
    let mut nodes = Vec::new();
    for inst in &institutions {
        let envelope = network_key.wrap_for(&inst.id.public(), &mut UnwrapErr(SysRng))?;
        let key = NetworkKey::unwrap_from(&envelope, &inst.id)?;
        // The node holds its own copy of the institution's identity (zeroized on drop).
        let restored = inst.id.duplicate();
        let mut cfg = NodeConfig::new(genesis.clone(), restored);
        cfg.network = Some(key);
        nodes.push(Node::new(cfg, start)?);
        say(format!(
            "{} joins ({}), network key received",
            inst.name,
            if genesis.is_validator(&inst.id.verify_key()) {
                "validator"
            } else {
                "member"
            }
        ));
    }
    let mut net = Cluster::new(nodes, start);
    let own_key = NetworkKey::unwrap_from(
        &network_key.wrap_for(&institutions[0].id.public(), &mut UnwrapErr(SysRng))?,
        &institutions[0].id,
    )?;
    let mut ledger = Ledger::create_sqlite(&path, &genesis, own_key)?;
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
        "St. Mary's keeps the ledger file {} (operator key file {})",
        path.display(),
        key_path.display()
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
    let dr_ruiz = Identity::generate(&mut UnwrapErr(SysRng));
    let dr_okafor = Identity::generate(&mut UnwrapErr(SysRng));
    let dr_chen = Identity::generate(&mut UnwrapErr(SysRng));
    let day = 86_400_000;
    let ruiz_cred = Credential::issue(
        &institutions[0].id,
        &chain,
        dr_ruiz.verify_key(),
        Role::Clinician {
            institution: institutions[0].id.verify_key(),
        },
        start + 365 * day,
    );
    let okafor_cred = Credential::issue(
        &institutions[1].id,
        &chain,
        dr_okafor.verify_key(),
        Role::Clinician {
            institution: institutions[1].id.verify_key(),
        },
        start + 365 * day,
    );
    let _chen_cred = Credential::issue(
        &institutions[4].id,
        &chain,
        dr_chen.verify_key(),
        Role::Researcher {
            institution: institutions[4].id.verify_key(),
        },
        start + 365 * day,
    );
    say("Dr. Ruiz (St. Mary's), Dr. Okafor (City General ER) and Dr. Chen (Northgate, researcher) hold signed credentials");

    let mut pending: Vec<TxId> = Vec::new();
    let mut nonce = 0u64;
    let mut submit_all = |net: &mut Cluster,
                          node: usize,
                          bodies: &[(&TxBody, Option<Indexed>)],
                          pending: &mut Vec<TxId>|
     -> Result<(), Box<dyn Error>> {
        let mut txs = Vec::new();
        for (body, indexed) in bodies {
            nonce += 1;
            let (entry, material) = indexed
                .as_ref()
                .map_or((Vec::new(), None), |(e, m)| (e.clone(), Some(m.clone())));
            let tx = Transaction::create(
                &institutions[node].id,
                &chain,
                net.now_ms,
                nonce,
                body,
                entry,
                &network_key,
                &mut UnwrapErr(SysRng),
            )?;
            pending.push(tx.id());
            txs.push((tx, material));
        }
        net.submit(node, txs)
            .map_err(|e| format!("submit refused: {e}"))?;
        Ok(())
    };
    macro_rules! submit {
        ($net:expr, $node:expr, $body:expr, $entry:expr, $pending:expr) => {
            submit_all($net, $node, &[($body, $entry)], $pending)
        };
    }
    let commit = |net: &mut Cluster,
                  ledger: &mut Ledger<medchain_store::SqliteStore>,
                  pending: &mut Vec<TxId>|
     -> Result<(), Box<dyn Error>> {
        if !net.run_until_committed(pending, 120_000) {
            return Err("the network did not commit in time".into());
        }
        for c in net.take_commits() {
            let proof = c.proof;
            let checked = ledger.append_committed(c.block.into_block(), &proof)?;
            let n = checked.tx_ids().len();
            say(format!(
                "block {} committed ({}, miner {}…), written to the ledger",
                checked.header().height,
                if n == 0 {
                    "empty: it certifies its parent, which the two-chain rule then commits"
                        .to_owned()
                } else {
                    format!("{n} transaction(s)")
                },
                &checked.header().miner.to_string()[..8]
            ));
        }
        pending.clear();
        Ok(())
    };

    // ------------------------------------------------------------------------------------
    chapter(3, "Hospitals add FHIR records");
    let (a1c, body, entry) = prepare_record(HBA1C, &alice, &institutions[0], &fhir_options)?;
    submit!(&mut net, 0, &body, entry, &mut pending)?;
    let (_dm, body, entry) = prepare_record(DIABETES, &alice, &institutions[0], &fhir_options)?;
    submit!(&mut net, 0, &body, entry, &mut pending)?;
    let (hiv, body, entry) = prepare_record(HIV_TEST, &alice, &institutions[2], &fhir_options)?;
    submit!(&mut net, 2, &body, entry, &mut pending)?;
    let (allergy, body, entry) =
        prepare_record(BOB_ALLERGY, &bob, &institutions[2], &fhir_options)?;
    submit!(&mut net, 2, &body, entry, &mut pending)?;
    let (bob_a1c, body, entry) = prepare_record(BOB_HBA1C, &bob, &institutions[2], &fhir_options)?;
    submit!(&mut net, 2, &body, entry, &mut pending)?;
    say("St. Mary's adds Alice's HbA1c and diabetes diagnosis; Riverside adds her HIV test and Bob's allergy and HbA1c");
    say("each record is sealed (AES-256-GCM, fresh key) for the patient and its hospital; only a salted commitment and an encrypted index entry are visible");
    commit(&mut net, &mut ledger, &mut pending)?;
    let stranger = Identity::generate(&mut UnwrapErr(SysRng));
    net.inject(
        1,
        stranger.verify_key(),
        b"\x01\x07 not a medchain message".to_vec(),
    );
    net.run_until_committed(&[], 0);
    if let Some(reason) = net.dropped.last() {
        say(format!(
            "a stranger sends City General garbage: dropped ({reason}); nothing committed changes"
        ));
    }

    // ------------------------------------------------------------------------------------
    chapter(4, "Alice signs her consent");
    let consent = Consent {
        patient: alice.public(),
        issued_ms: net.now_ms,
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
        issued_ms: net.now_ms,
        summary: "my data may be used for diabetes research".into(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit().actor(Actor::AnyResearcher).purpose(
            Purpose::Research {
                topic: Some("diabetes".into()),
            },
        )],
    };
    submit!(
        &mut net,
        0,
        &consent.grant_body(&alice, &chain)?,
        None,
        &mut pending
    )?;
    submit!(
        &mut net,
        2,
        &bob_consent.grant_body(&bob, &chain)?,
        None,
        &mut pending
    )?;
    commit(&mut net, &mut ledger, &mut pending)?;

    // ------------------------------------------------------------------------------------
    chapter(5, "Dr. Ruiz finds and reads Alice's HbA1c");
    let query = IndexKey::for_patient(&alice)
        .for_writer(&institutions[0].id.id())
        .query(&[Keyword::code("http://loinc.org", "4548-4")?])?;
    let found = ledger.search_report(&query, 1)?;
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
    let release = release_key(
        &institutions[0].id,
        &a1c,
        ReleaseRequest {
            grantee: dr_ruiz.public(),
            credential: Some(ruiz_cred.clone()),
            purpose: Purpose::Treat,
        },
        ledger.view(),
        net.now_ms,
        &mut UnwrapErr(SysRng),
    )?;
    submit_all(
        &mut net,
        0,
        &[(&release.key_shared, None), (&release.access_logged, None)],
        &mut pending,
    )?;
    commit(&mut net, &mut ledger, &mut pending)?;
    let TxBody::KeyShared {
        envelope: Some(envelope),
        ..
    } = &release.key_shared
    else {
        return Err("no envelope".into());
    };
    let opened = a1c.open_with(&dr_ruiz, std::slice::from_ref(envelope))?;
    let obs: serde_json::Value = serde_json::from_slice(opened.payload())?;
    say(format!(
        "permitted by {:?}; Dr. Ruiz decrypts it: HbA1c {}{}",
        release.decision,
        obs["valueQuantity"]["value"],
        obs["valueQuantity"]["unit"].as_str().unwrap_or("")
    ));

    chapter(6, "Dr. Ruiz asks for the HIV test: the consent says no");
    match release_key(
        &institutions[2].id,
        &hiv,
        ReleaseRequest {
            grantee: dr_ruiz.public(),
            credential: Some(ruiz_cred.clone()),
            purpose: Purpose::Treat,
        },
        ledger.view(),
        net.now_ms,
        &mut UnwrapErr(SysRng),
    ) {
        Err(AccessError::Denied(denial)) => {
            say(format!("Riverside refuses Dr. Ruiz: {denial}"));
            say(format!("Alice's audit view says why: {}", denial.detail()));
        }
        other => return Err(format!("expected a denial, got {other:?}").into()),
    }

    // ------------------------------------------------------------------------------------
    chapter(7, "Emergency: Bob arrives unconscious at City General");
    let er = release_key(
        &institutions[2].id,
        &allergy,
        ReleaseRequest {
            grantee: dr_okafor.public(),
            credential: Some(okafor_cred),
            purpose: Purpose::EmergencyTreat,
        },
        ledger.view(),
        net.now_ms,
        &mut UnwrapErr(SysRng),
    )?;
    submit_all(
        &mut net,
        2,
        &[(&er.key_shared, None), (&er.access_logged, None)],
        &mut pending,
    )?;
    commit(&mut net, &mut ledger, &mut pending)?;
    let TxBody::KeyShared {
        envelope: Some(env),
        ..
    } = &er.key_shared
    else {
        return Err("no envelope".into());
    };
    let allergy_json: serde_json::Value = serde_json::from_slice(
        allergy
            .open_with(&dr_okafor, std::slice::from_ref(env))?
            .payload(),
    )?;
    say(format!(
        "break-glass read by Dr. Okafor: allergy to {} (criticality {})",
        allergy_json["code"]["coding"][0]["display"], allergy_json["criticality"]
    ));
    for a in ledger.audit_of_patient(&bob.verify_key())? {
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
    chapter(8, "Dr. Chen builds a de-identified diabetes dataset");
    let study = StudyKey::derive(&institutions[2].id, "northgate-dm2-2026");
    // The 90-or-older rule is applied at the chain's time, not at a time the releaser picks.
    let clock = ReleaseClock::at_tip(ledger.tip());
    let mut rows = 0;
    for (patient, records) in [
        (&alice, vec![(&a1c, 0usize)]),
        (&bob, vec![(&bob_a1c, 2usize)]),
    ] {
        let consents = ledger.consents_of(&patient.verify_key())?;
        let req = medchain_core::consent::AccessRequest {
            requester: dr_chen.verify_key(),
            roles: vec![Role::Researcher {
                institution: institutions[4].id.verify_key(),
            }],
            action: Action::ResearchUse,
            purpose: Purpose::Research {
                topic: Some("diabetes".into()),
            },
            record: medchain_core::consent::RecordFacts {
                resource_type: "Observation".into(),
                codes: None,
                code_tags: None,
                date: medchain_core::consent::RecordDate::Undated,
            },
            emergency: false,
        };
        let decision =
            medchain_core::consent::evaluate(&req, &consents, net.now_ms, ledger.height());
        for (rec, holder) in records {
            if !decision.is_permit() {
                continue;
            }
            let opened = rec.open(&institutions[holder].id)?;
            let row = deidentify(&serde_json::from_slice(opened.payload())?, &study, &clock)?;
            say(format!("row: {}", row));
            rows += 1;
            let log = TxBody::AccessLogged {
                record_id: rec.record_id(),
                accessor: dr_chen.public(),
                purpose: "HRESCH".into(),
                consent_id: match &decision {
                    medchain_core::consent::Decision::Permit(p) => Some(p.consent.to_byte_array()),
                    _ => None,
                },
                emergency: false,
                accessed_at_ms: net.now_ms,
            };
            submit!(&mut net, holder, &log, None, &mut pending)?;
        }
    }
    commit(&mut net, &mut ledger, &mut pending)?;
    say(format!("{rows} de-identified row(s): names, dates below the year and identifiers are gone; subjects are study pseudonyms"));

    // ------------------------------------------------------------------------------------
    chapter(9, "Alice revokes her consent");
    submit!(
        &mut net,
        0,
        &Consent::revoke_body(&alice, &chain, &consent.granted_id(&alice)),
        None,
        &mut pending
    )?;
    commit(&mut net, &mut ledger, &mut pending)?;
    match release_key(
        &institutions[0].id,
        &a1c,
        ReleaseRequest {
            grantee: dr_ruiz.public(),
            credential: Some(ruiz_cred),
            purpose: Purpose::Treat,
        },
        ledger.view(),
        net.now_ms,
        &mut UnwrapErr(SysRng),
    ) {
        Err(AccessError::Denied(denial)) => say(format!(
            "Dr. Ruiz asks again: {denial} (Alice's audit view: {})",
            denial.detail()
        )),
        other => return Err(format!("expected a denial, got {other:?}").into()),
    }
    // A careless node releases the key anyway: the network's consent rules keep it out.
    let rogue = TxBody::KeyShared {
        record_id: a1c.record_id(),
        grantee: dr_ruiz.public(),
        purpose: "TREAT".into(),
        consent_id: Some(consent.granted_id(&alice).to_byte_array()),
        credential: None,
        envelope: Some(a1c.share_with(
            &institutions[0].id,
            &dr_ruiz.public(),
            &mut UnwrapErr(SysRng),
        )?),
    };
    let mut rogue_ids = Vec::new();
    submit!(&mut net, 0, &rogue, None, &mut rogue_ids)?;
    let got_in = net.run_until_committed(&rogue_ids, 20_000);
    for c in net.take_commits() {
        ledger.append_committed(c.block.into_block(), &c.proof)?;
    }
    say(format!("a node that ignores the revocation tries to release the key anyway: committed = {got_in} (the consent rules keep it out of every block)"));
    say("Alice's audit trail:");
    for a in ledger.audit_of_patient(&alice.verify_key())? {
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
    let summary = ledger.verify(|_| {})?;
    say(format!(
        "verification before: {} blocks, {} transactions, head proven: {}",
        summary.blocks, summary.transactions, summary.head_proven
    ));
    let height = ledger.height();
    drop(ledger);
    let copy = PathBuf::from(format!("{}.tampered", path.display()));
    std::fs::copy(&path, &copy)?;
    let edited = tamper_with_block(&copy, 3)?;
    say(format!("an administrator edits one byte of block {edited} directly in a copy of the SQLite file ({})", copy.display()));
    let reopen_key = NetworkKey::unwrap_from(
        &network_key.wrap_for(&institutions[0].id.public(), &mut UnwrapErr(SysRng))?,
        &institutions[0].id,
    )?;
    match Ledger::open_sqlite(&copy, reopen_key).and_then(|l| l.verify(|_| {})) {
        Ok(s) => return Err(format!("tampering went unnoticed ({} blocks)", s.blocks).into()),
        Err(e) => say(format!("caught: {e}")),
    }
    println!(
        "\nThe ledger ({height} blocks) is in {}. Inspect it with:",
        path.display()
    );
    println!("   MEDCHAIN_PASSPHRASE={DEMO_PASSPHRASE} cargo run --release -p medchain-examples --bin medchain -- verify {}", path.display());
    Ok(())
}
