//! Writes the seed corpus of the fuzz targets, `fuzz/corpus/<target>/<name>`, from fixed seeds.
//!
//! Run by hand when a format changes, then commit the files:
//! `cargo run -p medchain-tests --example make_fuzz_corpus`. The output is deterministic.
//! `tests/tests/fuzz_corpus.rs` replays (and mutates) every file on each test run.

use std::fs;
use std::path::Path;

use medchain_core::encoding::{Decode, Encode};
use medchain_core::fuzzing::{fuzz_identity, fuzz_network_key, FUZZ_BACKUP_PASSWORD, TARGETS};
use medchain_core::hash::{domain, RecordId, TxId};
use medchain_core::keys::{BackupParams, Identity};
use medchain_core::seal::seal_record;
use medchain_core::tx::{revocation_message, PatientSignature, Transaction, TxBody};
use medchain_node::transport::wire::Frame;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const OBSERVATION: &str = r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":6.1,"unit":"%"}}"#;
const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Doe","given":["Jane"]}],"birthDate":"1970-01-01","gender":"female"}"#;
const BUNDLE: &str = r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Condition","code":{"text":"type 2 diabetes"}}},{"resource":{"resourceType":"MedicationStatement","status":"active","medicationCodeableConcept":{"text":"metformin 500 mg"}}}]}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut rng = ChaCha20Rng::seed_from_u64(0x6d65_6463_6861_696e);
    let me = fuzz_identity();
    let chain = medchain_core::fuzzing::fuzz_chain();
    let net = fuzz_network_key();
    let hospital = Identity::generate(&mut rng);
    let mut files: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        assert!(
            TARGETS
                .iter()
                .chain(medchain_fhir::fuzzing::TARGETS)
                .any(|(t, _)| *t == target),
            "{target}"
        );
        files.push((target, name.to_owned(), bytes));
    };

    // Records sealed to the fuzzing identity, so the target reaches decryption.
    let record = seal_record(OBSERVATION.as_bytes(), &me.public(), &[], &mut rng)?;
    let record2 = seal_record(
        PATIENT.as_bytes(),
        &me.public(),
        &[hospital.public()],
        &mut rng,
    )?;
    add(
        "decode_sealed_record",
        "observation-1-reader",
        record.to_bytes(),
    );
    add(
        "decode_sealed_record",
        "patient-2-readers",
        record2.to_bytes(),
    );

    // One body of every kind.
    let consent_doc = b"\x01consent: Dr X may read Observations for TREAT until 2030".to_vec();
    let consent_id = medchain_core::hash::tagged_hash(domain::CONSENT_ID, &consent_doc);
    let rid = record.record_id();
    let bodies = [
        (
            "record-added",
            TxBody::record_added(
                record.clone(),
                medchain_core::access::record_class(
                    OBSERVATION.as_bytes(),
                    &medchain_core::consent::ConsentTagKey::for_patient(&me),
                    &mut rng,
                )?,
            ),
        ),
        (
            "consent-granted",
            TxBody::ConsentGranted {
                patient: PatientSignature::sign(&me, &chain, domain::CONSENT_SIG, &consent_doc),
                document: consent_doc.clone(),
            },
        ),
        (
            "consent-revoked",
            TxBody::ConsentRevoked {
                consent_id,
                patient: PatientSignature::sign(
                    &me,
                    &chain,
                    domain::REVOKE_SIG,
                    &revocation_message(&consent_id),
                ),
            },
        ),
        (
            "key-shared",
            TxBody::KeyShared {
                record_id: rid,
                grantee: hospital.public(),
                purpose: "TREAT".into(),
                consent_id: Some(consent_id),
                credential: None,
                envelope: Some(record.share_with(&me, &hospital.public(), &mut rng)?),
            },
        ),
        (
            "access-logged",
            TxBody::AccessLogged {
                record_id: rid,
                accessor: hospital.public(),
                purpose: "TREAT".into(),
                consent_id: Some(consent_id),
                emergency: false,
                accessed_at_ms: 1_700_000_000_500,
            },
        ),
        (
            "record-erased",
            TxBody::RecordErased {
                record_id: RecordId::from_byte_array(rid.to_byte_array()),
                patient: PatientSignature::sign(
                    &me,
                    &chain,
                    domain::ERASURE_SIG,
                    rid.as_byte_array(),
                ),
            },
        ),
        (
            "access-denied",
            TxBody::AccessDenied {
                record_id: rid,
                requester: hospital.public(),
                purpose: "TREAT".into(),
                rule: "denied".into(),
                requested_at_ms: 1_700_000_000_400,
                relayed_by: hospital.verify_key(),
            },
        ),
    ];
    for (i, (name, body)) in bodies.iter().enumerate() {
        add("decode_tx_body", name, body.to_bytes());
        let index_entry = if matches!(body, TxBody::RecordAdded { .. }) {
            (0u8..48).collect()
        } else {
            Vec::new()
        };
        let tx = Transaction::create(
            &me,
            &chain,
            1_700_000_000_000 + i as u64,
            i as u64 + 1,
            body,
            index_entry,
            &net,
            &mut rng,
        )?;
        add("decode_transaction", name, tx.to_bytes());
    }

    add(
        "decode_key_envelope",
        "network-key-for-fuzz-identity",
        net.wrap_for(&me.public(), &mut rng)?.to_bytes(),
    );
    add(
        "decode_key_envelope",
        "record-key",
        record.envelopes()[0].to_bytes(),
    );
    add(
        "decode_network_sealed",
        "short",
        net.seal(b"hello nodes", b"", &mut rng).to_bytes(),
    );
    add(
        "decode_network_sealed",
        "empty",
        net.seal(b"", b"", &mut rng).to_bytes(),
    );
    add(
        "decode_public_identity",
        "fuzz-identity",
        me.public().to_bytes(),
    );
    add(
        "decode_public_identity",
        "hospital",
        hospital.public().to_bytes(),
    );
    add(
        "restore_backup",
        "test-params",
        me.export_backup(
            FUZZ_BACKUP_PASSWORD,
            BackupParams::dangerous_test_only(),
            &mut rng,
        )?,
    );
    // Regression: a backup naming 2^32 - 1 Argon2id lanes (8 × lanes overflowed a u32).
    let mut lanes = me.export_backup(
        FUZZ_BACKUP_PASSWORD,
        BackupParams::dangerous_test_only(),
        &mut rng,
    )?;
    lanes[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    add("restore_backup", "regression-lanes-overflow", lanes);
    for (name, json) in [
        ("observation", OBSERVATION),
        ("patient", PATIENT),
        ("bundle", BUNDLE),
    ] {
        add("parse_fhir", name, json.as_bytes().to_vec());
    }
    add(
        "parse_fhir",
        "not-an-object",
        b"[1,2,{\"resourceType\":\"Patient\"}]".to_vec(),
    );
    add(
        "parse_fhir",
        "unknown-type",
        br#"{"resourceType":"Secret"}"#.to_vec(),
    );
    // The FHIR validator: the same resources, and one of each kind of defect it reports.
    for (name, json) in [
        ("observation", OBSERVATION),
        ("patient", PATIENT),
        ("bundle", BUNDLE),
        (
            "observation-broken",
            r#"{"resourceType":"Observation","code":{"text":"x"},"subject":7,
               "effectiveDateTime":"2026-13-45","valueQuantity":"high","unknownElement":true}"#,
        ),
        (
            "transaction-bundle",
            r#"{"resourceType":"Bundle","type":"transaction","entry":[
               {"fullUrl":"urn:uuid:8f7c3d2e-1b4a-4c5d-9e6f-7a8b9c0d1e2f",
                "resource":{"resourceType":"Patient","gender":"female","birthDate":"1985-07"},
                "request":{"method":"POST","url":"Patient"}},
               {"fullUrl":"urn:uuid:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                "resource":{"resourceType":"Condition",
                 "subject":{"reference":"urn:uuid:8f7c3d2e-1b4a-4c5d-9e6f-7a8b9c0d1e2f"},
                 "code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]}},
                "request":{"method":"POST","url":"Condition"}}]}"#,
        ),
        (
            "primitive-extension",
            r#"{"resourceType":"Patient","birthDate":"1990-01-01","_birthDate":{"extension":[
               {"url":"http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime":"1990-01-01T08:30:00+01:00"}]}}"#,
        ),
    ] {
        add("validate_fhir", name, json.as_bytes().to_vec());
    }
    add("validate_fhir", "deep", "[".repeat(300).into_bytes());
    let text = me.public().to_text();
    add("identity_text", "fuzz-identity", text.clone().into_bytes());
    add(
        "identity_text",
        "upper-case-padded",
        format!("  mcid1{}\n", text[5..].to_ascii_uppercase()).into_bytes(),
    );
    add(
        "identity_text",
        "hospital",
        hospital.public().to_text().into_bytes(),
    );

    // Consensus, chain, consent and index structures from the fuzz test network.
    {
        use medchain_core::chain::CommitProof;
        use medchain_core::consent::{Action, Actor, Consent, Period, Provision, Purpose};
        use medchain_core::credential::{Credential, Role};
        use medchain_core::index::{
            BlockContext, BlockIndexBuilder, IndexEntry, IndexKey, Keyword,
        };
        use medchain_core::ledger::LedgerState;
        use medchain_core::protocol::Message;
        use medchain_core::testkit::TestNet;
        use medchain_core::vote::Vote;

        let mut tn = TestNet::new(medchain_core::fuzzing::FUZZ_NET_SEED, 4, 1);
        add("decode_genesis", "testnet", tn.genesis.to_bytes());
        let grant = Consent {
            patient: me.public(),
            issued_ms: 1,
            summary: "fuzz block".into(),
            period: Period::default(),
            emergency: Some(medchain_core::consent::EmergencyPreference::Allow),
            provisions: vec![],
        };
        let body = grant.grant_body(&me, &tn.genesis.chain_id())?;
        let tx = tn.tx(4, &body, vec![]);
        let state = LedgerState::new();
        let (b1, _, proof) = tn.next_block(&state, vec![tx.clone()])?;
        add("decode_block", "block-1", b1.block().to_bytes());
        add("decode_commit_proof", "proof-1", proof.to_bytes());
        let inclusion = medchain_core::light::InclusionProof::new(&b1, 0, proof.clone())?;
        add(
            "decode_inclusion_proof",
            "proof-1-tx-0",
            inclusion.to_bytes(),
        );
        let audit = medchain_core::ledger::AuditEntry {
            kind: medchain_core::ledger::AuditKind::Accessed,
            record_id: RecordId::from_byte_array([3; 32]),
            patient: me.verify_key(),
            actor: hospital.public(),
            purpose: "ETREAT".into(),
            consent_id: None,
            emergency: true,
            at_ms: 1_700_000_000_000,
            claimed_at_ms: 1_699_999_999_000,
            node: tn.nodes[0].verify_key(),
            tx_id: tx.id(),
            height: 1,
            denied_by: None,
            relayed_by: None,
        };
        add("decode_audit_entry", "emergency-access", audit.to_bytes());
        let denied = medchain_core::ledger::AuditEntry {
            kind: medchain_core::ledger::AuditKind::Denied,
            purpose: "TREAT".into(),
            emergency: false,
            denied_by: Some("denied".into()),
            relayed_by: Some(tn.nodes[1].verify_key()),
            ..audit
        };
        add("decode_audit_entry", "denied-read", denied.to_bytes());
        let vote = Vote::cast(
            &tn.nodes[0],
            &tn.genesis.chain_id(),
            b1.header().prev,
            b1.hash(),
            Ok(()),
            5,
        );
        add("decode_vote", "vote", vote.to_bytes());
        add(
            "decode_message",
            "vote",
            Message::Vote { vote: vote.clone() }.to_bytes(),
        );
        add(
            "decode_message",
            "gather",
            Message::GatherRequest {
                round: 2,
                parent: b1.hash(),
            }
            .to_bytes(),
        );
        let _: &CommitProof = &proof;
        let c = Consent {
            patient: me.public(),
            issued_ms: 1,
            summary: "fuzz".into(),
            period: Period::default(),
            emergency: None,
            provisions: vec![Provision::permit()
                .actor(Actor::Party(hospital.verify_key()))
                .action(Action::Read)
                .purpose(Purpose::Treat)
                .nest(Provision::deny().purpose(Purpose::Research {
                    topic: Some("x".into()),
                }))],
        };
        add("decode_consent", "consent", c.to_bytes());
        let cred = Credential::issue(
            &tn.nodes[0],
            &tn.genesis.chain_id(),
            me.verify_key(),
            Role::Clinician {
                institution: tn.nodes[0].verify_key(),
            },
            99,
        );
        add("decode_credential", "credential", cred.to_bytes());
        let leaves: Vec<[u8; 32]> = (0u8..5)
            .map(|i| medchain_core::merkle::leaf_hash(&[i]))
            .collect();
        add(
            "decode_merkle_proof",
            "proof-2-of-5",
            medchain_core::merkle::proof(&leaves, 2)?.to_bytes(),
        );
        let key = IndexKey::for_patient(&me);
        let kw = [
            Keyword::code("http://loinc.org", "4548-4")?,
            Keyword::resource_type("Observation")?,
        ];
        let rid = medchain_core::hash::RecordId::from_byte_array([5; 32]);
        let entry = IndexEntry::build(&rid, &key.trapdoors(kw.iter()), &mut rng)?;
        add("decode_index_entry", "entry", entry.to_bytes());
        let mut builder = BlockIndexBuilder::new();
        builder.add_record(rid, &key.trapdoors(kw.iter()), &mut rng)?;
        let index = builder.finish(BlockContext::from_byte_array([9; 32]), &mut rng)?;
        add("decode_block_filter", "filter", index.filter().to_bytes());

        // A block whose filter its two contributors built, and the SignBlock messages.
        let mut records = Vec::new();
        for (node, code) in [(4usize, "4548-4"), (0, "2345-7")] {
            let payload = format!(
                r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}}}}"#
            );
            let sealed = medchain_core::seal::seal_record(
                payload.as_bytes(),
                &me.public(),
                &[tn.nodes[node].public()],
                &mut rng,
            )?;
            let body = TxBody::record_added(
                sealed.clone(),
                medchain_core::access::record_class(
                    payload.as_bytes(),
                    &medchain_core::consent::ConsentTagKey::for_patient(&me),
                    &mut rng,
                )?,
            );
            let trapdoors = key.trapdoors(&[Keyword::code("http://loinc.org", code)?]);
            records.push(tn.indexed_tx(node, &body, sealed.record_id(), trapdoors));
        }
        let (b2, _, _) = tn.next_block(&state, records)?;
        add("decode_block", "indexed-block-2", b2.block().to_bytes());
        let filter = medchain_core::index::BlockFilter::from_bytes(&b2.block().index_filter)?;
        let segment = filter.segments().next().ok_or("no segment")?;
        add("decode_filter_segment", "segment", segment.to_bytes());
        add(
            "decode_block_filter",
            "two-segments",
            b2.block().index_filter.clone(),
        );
        let leaves: Vec<[u8; 32]> = b2
            .block()
            .transactions
            .iter()
            .map(|t| medchain_core::block::tx_leaf(&t.id(), t.signature()))
            .collect();
        add(
            "decode_message",
            "sign-request",
            Message::SignRequest {
                round: b2.header().round,
                header: b2.header().clone(),
                leaves,
                indexed: vec![0, 1],
            }
            .to_bytes(),
        );
        add(
            "decode_message",
            "sign-response",
            Message::SignResponse {
                round: b2.header().round,
                block: b2.header().draft_hash(),
                segment: Some(segment),
                signature: b2.block().contributor_signatures[0],
            }
            .to_bytes(),
        );
    }

    // The sharing channel (tags 9 and 10): a clinician's key request and a holder's answers.
    let request = medchain_core::sharing::KeyRequest::sign(
        &me,
        &chain,
        hospital.verify_key(),
        record.record_id(),
        Some(medchain_core::credential::Credential::issue(
            &hospital,
            &chain,
            me.verify_key(),
            medchain_core::credential::Role::Clinician {
                institution: hospital.verify_key(),
            },
            1_900_000_000_000,
        )),
        medchain_core::consent::Purpose::Treat,
        1_800_000_000_000,
        &mut rng,
    )?;
    add(
        "decode_message",
        "key-request",
        medchain_core::protocol::Message::KeyRequest {
            request: request.clone(),
        }
        .to_bytes(),
    );
    for (name, answer) in [
        (
            "key-response-released",
            medchain_core::sharing::KeyAnswer::Released {
                key_shared: TxId::from_byte_array([1; 32]),
                access_logged: TxId::from_byte_array([2; 32]),
            },
        ),
        (
            "key-response-refused",
            medchain_core::sharing::KeyAnswer::RuleRefused {
                rule: "unknown_credential".into(),
            },
        ),
    ] {
        let response = medchain_core::sharing::KeyResponse {
            request: request.id(),
            answer,
        };
        add(
            "decode_message",
            name,
            medchain_core::protocol::Message::KeyResponse { response }.to_bytes(),
        );
    }

    // The transport's frame decoder (medchain_node::fuzzing::decode_frames): decrypted
    // frames as `len u16 || frame`.
    let mut frames: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let message_frames = |message: &[u8]| -> Vec<Vec<u8>> {
        medchain_node::transport::wire::fragments(message)
            .expect("small message")
            .map(|f| f.to_vec())
            .collect()
    };
    let vote_sized = vec![0x42u8; 200];
    let two_frames: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    frames.push(("keepalive", vec![Frame::Keepalive.to_vec()]));
    frames.push(("empty-message", message_frames(&[])));
    frames.push((
        "keepalive-then-vote-sized",
        [vec![Frame::Keepalive.to_vec()], message_frames(&vote_sized)].concat(),
    ));
    frames.push(("two-frame-message", message_frames(&two_frames)));
    frames.push((
        "auth-frame",
        vec![Frame::Auth {
            key: me.verify_key(),
            signature: me.sign(&chain, medchain_node::transport::wire::AUTH_LABEL, b"seed"),
        }
        .to_vec()],
    ));
    for (name, list) in frames {
        assert!(medchain_node::fuzzing::TARGETS
            .iter()
            .any(|(t, _)| *t == "decode_frames"));
        let mut bytes = Vec::new();
        for frame in list {
            bytes.extend_from_slice(&u16::try_from(frame.len())?.to_be_bytes());
            bytes.extend_from_slice(&frame);
        }
        files.push(("decode_frames", name.to_owned(), bytes));
    }

    // An enrolment: a patient's writer index key sealed to the fuzzing identity on the fuzz
    // chain (own RNG, so the seeds above stay as they were).
    let mut enrol_rng = ChaCha20Rng::seed_from_u64(14);
    let patient = Identity::generate(&mut enrol_rng);
    let sealed = medchain_core::index::SealedWriterKey::export(
        &patient,
        &chain,
        &me.public(),
        &mut enrol_rng,
    )?;
    assert!(TARGETS
        .iter()
        .any(|(t, _)| *t == "decode_sealed_writer_key"));
    files.push((
        "decode_sealed_writer_key",
        "enrolment-for-fuzz-identity".to_owned(),
        sealed.to_bytes(),
    ));

    let mut total = 0;
    for (target, name, bytes) in &files {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        total += bytes.len();
    }
    println!(
        "wrote {} files, {total} bytes, under {}",
        files.len(),
        root.display()
    );
    Ok(())
}
