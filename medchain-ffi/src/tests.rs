//! Unit tests of the wallet logic, over the real fixture chain, with hostile inputs: every
//! call that takes bytes or text from outside is fed truncated, flipped, oversized and
//! nonsensical values and must return a typed error, never panic.

use std::sync::{Arc, OnceLock};

use medchain_core::encoding::Writer;

use crate::error::{ProofError, StoreError, WalletError};
use crate::fixtures::{self, Files, PASSWORD};
use crate::*;

fn fx() -> &'static Files {
    static FX: OnceLock<Files> = OnceLock::new();
    FX.get_or_init(|| fixtures::build().expect("fixtures build"))
}

fn file(name: &str) -> Vec<u8> {
    fx().get(name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
        .clone()
}

fn text(name: &str) -> String {
    String::from_utf8(file(name)).unwrap()
}

fn store() -> Arc<dyn WalletStore> {
    store::new_in_memory_wallet_store()
}

/// The fixture patient's wallet, restored into a fresh store, pinned to the fixture network.
fn patient() -> Arc<Wallet> {
    let w = Wallet::restore(store(), file("patient.backup"), PASSWORD.into()).unwrap();
    w.trust_network(file("genesis.bin"), Some(text("genesis.hash")))
        .unwrap();
    w
}

/// The fixture patient's wallet pinned to the network whose genesis is `genesis`.
fn w_on(genesis: &[u8]) -> Arc<Wallet> {
    let w = Wallet::restore(store(), file("patient.backup"), PASSWORD.into()).unwrap();
    w.trust_network(genesis.to_vec(), None).unwrap();
    w
}

/// The fixture network.
fn network() -> Arc<TrustedNetwork> {
    TrustedNetwork::new(file("genesis.bin"), None).unwrap()
}

fn draft(rules: Vec<ConsentRule>) -> ConsentDraft {
    ConsentDraft {
        summary: "test".into(),
        issued_ms: 1_790_000_000_000,
        start_ms: None,
        end_ms: None,
        emergency: None,
        rules,
    }
}

fn rule() -> ConsentRule {
    ConsentRule {
        effect: RuleEffect::Permit,
        grantees: vec![Grantee::Party {
            identity: text("doctor.id"),
        }],
        actions: vec![ConsentAction::Read],
        purposes: vec![PurposeOfUse::Treatment],
        resource_types: vec!["Observation".into()],
        codes: vec![],
        start_ms: None,
        end_ms: None,
        data_start_ms: None,
        data_end_ms: None,
    }
}

/// Truncations, single-bit flips and garbage of `bytes`, for hostile-input loops.
fn mutations(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new(), vec![0], vec![0xff; 4], vec![0xff; 70_000]];
    for cut in [1, 2, 5, 33, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        out.push(bytes[..cut.min(bytes.len())].to_vec());
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    out.push(longer);
    let step = (bytes.len() / 40).max(1);
    for i in (0..bytes.len()).step_by(step) {
        let mut t = bytes.to_vec();
        t[i] ^= 0x01;
        out.push(t);
    }
    out
}

#[test]
fn create_open_restore_backup_and_passwords() {
    let s = store();
    assert!(!wallet::wallet_exists(s.clone()).unwrap());
    assert_eq!(
        Wallet::open(s.clone(), "pw".into()).unwrap_err(),
        WalletError::NoWallet
    );
    assert_eq!(
        Wallet::create(s.clone(), String::new()).unwrap_err(),
        WalletError::WeakPassword
    );
    let w = Wallet::create(s.clone(), "pw one".into()).unwrap();
    assert!(wallet::wallet_exists(s.clone()).unwrap());
    assert_eq!(
        Wallet::create(s.clone(), "pw".into()).unwrap_err(),
        WalletError::WalletExists
    );
    // The store holds the encrypted backup and the public identity, nothing else.
    let mut keys = s.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec!["identity.backup", "identity.public"]);
    assert_eq!(
        s.get("identity.public".into()).unwrap().unwrap(),
        w.public_identity().into_bytes()
    );
    let again = Wallet::open(s.clone(), "pw one".into()).unwrap();
    assert_eq!(again.public_identity(), w.public_identity());
    assert_eq!(
        Wallet::open(s.clone(), "pw two".into()).unwrap_err(),
        WalletError::WrongPassword
    );
    // Restore elsewhere from the backup.
    let moved = Wallet::restore(store(), w.backup().unwrap(), "pw one".into()).unwrap();
    assert_eq!(moved.public_identity(), w.public_identity());
    // Restoring another wallet over this one is refused.
    assert_eq!(
        Wallet::restore(s.clone(), file("patient.backup"), PASSWORD.into()).unwrap_err(),
        WalletError::WalletExists
    );
    // Change the password.
    assert_eq!(
        w.change_password("nope".into(), "new".into()).unwrap_err(),
        WalletError::WrongPassword
    );
    assert_eq!(
        w.change_password("pw one".into(), String::new())
            .unwrap_err(),
        WalletError::WeakPassword
    );
    w.change_password("pw one".into(), "pw new".into()).unwrap();
    assert_eq!(
        Wallet::open(s.clone(), "pw one".into()).unwrap_err(),
        WalletError::WrongPassword
    );
    Wallet::open(s.clone(), "pw new".into()).unwrap();
    wallet::delete_wallet(s.clone()).unwrap();
    assert!(s.keys().unwrap().is_empty());
    assert_eq!(
        Wallet::open(s, "pw new".into()).unwrap_err(),
        WalletError::NoWallet
    );
    // Debug shows the short id only.
    assert_eq!(
        format!("{w:?}"),
        format!("Wallet({})", w.identity_info().party_id)
    );
}

#[test]
fn hostile_backups_are_typed_errors() {
    let good = file("patient.backup");
    for bad in mutations(&good) {
        let e = Wallet::restore(store(), bad, PASSWORD.into()).unwrap_err();
        assert!(
            matches!(
                e,
                WalletError::WrongPassword | WalletError::Malformed { .. }
            ),
            "{e:?}"
        );
    }
    // A backup asking for 4 GiB of Argon2 memory is refused before any allocation.
    let mut greedy = good.clone();
    greedy[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    let e = Wallet::restore(store(), greedy, PASSWORD.into()).unwrap_err();
    assert!(matches!(e, WalletError::Malformed { .. }), "{e:?}");
    assert_eq!(
        Wallet::restore(store(), good, "wrong".into()).unwrap_err(),
        WalletError::WrongPassword
    );
    // A store holding garbage.
    let s = store();
    s.put("identity.backup".into(), vec![1; 10]).unwrap();
    assert!(matches!(
        Wallet::open(s, "x".into()).unwrap_err(),
        WalletError::Malformed { .. }
    ));
}

#[test]
fn public_identity_round_trips_and_bad_text_is_typed() {
    let w = patient();
    let info = wallet::parse_public_identity(w.public_identity()).unwrap();
    assert_eq!(info, w.identity_info());
    assert_eq!(info.text, text("patient.id"));
    assert_eq!(info.party_id.len(), 32);
    // Surrounding whitespace (a scanned QR code) is accepted and normalized.
    let padded = format!("  {}\n", w.public_identity());
    assert_eq!(
        wallet::parse_public_identity(padded).unwrap().text,
        info.text
    );
    let mut typo = w.public_identity().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'0' { b'1' } else { b'0' };
    let bad = [
        String::new(),
        "mcid1".into(),
        "mcid2".into(),
        "hello".into(),
        String::from_utf8(typo).unwrap(),
        w.public_identity()[..60].to_owned(),
        format!("{}00", w.public_identity()),
        format!("mcid1{}", "é".repeat(68)),
        format!("mcid1{}", "zz".repeat(68)),
        // A checksummed identity whose signing key is not a curve point is caught too.
        "x".repeat(5000),
    ];
    for b in bad {
        assert!(
            matches!(
                wallet::parse_public_identity(b.clone()),
                Err(WalletError::InvalidIdentity { .. })
            ),
            "{b:?}"
        );
    }
}

#[test]
fn a_signed_consent_carries_no_readable_code_or_summary() {
    // Issue #20: "not my schizophrenia records" must not be readable by every member.
    let w = patient();
    let mut deny = rule();
    deny.effect = RuleEffect::Deny;
    deny.resource_types = vec![];
    deny.codes = vec![CodedConcept {
        system: "http://hl7.org/fhir/sid/icd-10".into(),
        code: "F20.9".into(),
    }];
    let mut d = draft(vec![rule(), deny]);
    d.summary = "not my schizophrenia records".into();
    let signed = w.sign_consent(d).unwrap();
    for secret in [&b"F20.9"[..], b"icd-10", b"schizophrenia"] {
        assert!(
            !signed.body.windows(secret.len()).any(|x| x == secret),
            "{} in the signed body",
            String::from_utf8_lossy(secret)
        );
    }
    // The app keeps the clear copy (FHIR) to show the patient.
    let fhir = signed.fhir_json.clone().unwrap();
    assert!(fhir.contains("F20.9") && fhir.contains("schizophrenia"));
    // What a node sees when it inspects the request: no summary, and the on-chain id.
    let info = consent::inspect_signed_request(signed.body.clone(), network()).unwrap();
    assert_eq!(info.summary, None);
    assert_eq!(info.subject_id, signed.subject_id);
    assert_eq!(info.rule_count, 2);
}

#[test]
fn consents_are_signed_verifiable_and_accepted() {
    let w = patient();
    let signed = w.sign_consent(draft(vec![rule()])).unwrap();
    assert_eq!(signed.kind, RequestKind::ConsentGrant);
    assert_eq!(signed.subject_id.len(), 64);
    let info = consent::inspect_signed_request(signed.body.clone(), network()).unwrap();
    assert_eq!(info.kind, RequestKind::ConsentGrant);
    assert_eq!(info.subject_id, signed.subject_id);
    assert_eq!(info.patient, w.public_identity());
    assert_eq!(info.rule_count, 1);
    let fhir: serde_json::Value =
        serde_json::from_str(signed.fhir_json.as_deref().unwrap()).unwrap();
    assert_eq!(fhir["resourceType"], "Consent");
    // The FHIR export signs back to the same consent.
    let again = w
        .sign_fhir_consent(signed.fhir_json.clone().unwrap())
        .unwrap();
    assert_eq!(again.subject_id, signed.subject_id);
    // The consent the fixture chain committed was made the same way.
    assert_eq!(text("consent.id").len(), 64);

    let pref = w
        .sign_emergency_preference(EmergencyAccess::Refuse, 5)
        .unwrap();
    let info = consent::inspect_signed_request(pref.body, network()).unwrap();
    assert_eq!(info.emergency, Some(EmergencyAccess::Refuse));
    assert_eq!(info.rule_count, 0);

    let rev = w.sign_revocation(signed.subject_id.clone()).unwrap();
    let info = consent::inspect_signed_request(rev.body, network()).unwrap();
    assert_eq!(info.kind, RequestKind::ConsentRevocation);
    assert_eq!(info.subject_id, signed.subject_id);

    // Every flip of a signed body is caught (malformed, or a signature that fails).
    for bad in mutations(&signed.body) {
        assert!(consent::inspect_signed_request(bad, network()).is_err());
    }
    // Issue #12.7: a request signed for another network does not verify on this one, and a
    // wallet pins a network before it signs anything.
    let elsewhere = Wallet::create(store(), "x".into()).unwrap();
    assert_eq!(
        elsewhere.sign_consent(draft(vec![rule()])).unwrap_err(),
        WalletError::NoTrustedNetwork
    );
    assert_eq!(
        elsewhere
            .sign_revocation(signed.subject_id.clone())
            .unwrap_err(),
        WalletError::NoTrustedNetwork
    );
    let staging = file("genesis-staging.bin");
    elsewhere.trust_network(staging.clone(), None).unwrap();
    let on_staging = w_on(&staging).sign_consent(draft(vec![rule()])).unwrap();
    assert_eq!(
        consent::inspect_signed_request(on_staging.body.clone(), network()).unwrap_err(),
        WalletError::BadSignature
    );
    let staging_net = TrustedNetwork::new(staging, None).unwrap();
    assert!(consent::inspect_signed_request(on_staging.body, staging_net.clone()).is_ok());
    assert_eq!(
        consent::inspect_signed_request(signed.body.clone(), staging_net).unwrap_err(),
        WalletError::BadSignature
    );
    // A Consent medchain could read but that is not valid FHIR R4 is refused with its paths.
    let mut odd: serde_json::Value =
        serde_json::from_str(signed.fhir_json.as_deref().unwrap()).unwrap();
    odd["colour"] = "red".into();
    odd["status"] = "approved".into();
    let e = w.sign_fhir_consent(odd.to_string()).unwrap_err();
    let WalletError::InvalidFhir { issues } = &e else {
        panic!("{e:?}")
    };
    assert!(issues.contains(&"error at Consent.colour: unknown element".to_owned()));
    assert!(issues
        .iter()
        .any(|i| i.starts_with("error at Consent.status: the code is not in")));
    assert!(!e.to_string().contains("approved"));
    // Another patient's FHIR consent is not signed by this wallet.
    let other = Wallet::create(store(), "x".into()).unwrap();
    other.trust_network(file("genesis.bin"), None).unwrap();
    let theirs = other.sign_consent(draft(vec![rule()])).unwrap();
    assert_eq!(
        w.sign_fhir_consent(theirs.fhir_json.unwrap()).unwrap_err(),
        WalletError::BadSignature
    );
}

#[test]
fn bad_consent_drafts_are_typed_errors() {
    let w = patient();
    let invalid_arg = |d: ConsentDraft| {
        let e = w.sign_consent(d).unwrap_err();
        assert!(
            matches!(
                e,
                WalletError::InvalidArgument { .. }
                    | WalletError::InvalidConsent { .. }
                    | WalletError::InvalidIdentity { .. }
            ),
            "{e:?}"
        );
    };
    invalid_arg(draft(vec![]));
    let mut d = draft(vec![rule()]);
    d.start_ms = Some(10);
    d.end_ms = Some(5);
    invalid_arg(d);
    let mut d = draft(vec![rule()]);
    d.summary = "x".repeat(1000);
    invalid_arg(d);
    let mut r = rule();
    r.resource_types = vec!["NotAResource".into()];
    invalid_arg(draft(vec![r]));
    let mut r = rule();
    r.resource_types = vec!["Observation".into(); 65];
    invalid_arg(draft(vec![r]));
    let mut r = rule();
    r.purposes = vec![PurposeOfUse::Other {
        code: "no spaces".into(),
    }];
    invalid_arg(draft(vec![r]));
    let mut r = rule();
    r.purposes = vec![PurposeOfUse::Research {
        topic: Some(String::new()),
    }];
    invalid_arg(draft(vec![r]));
    let mut r = rule();
    r.grantees = vec![Grantee::Party {
        identity: "mcid1nope".into(),
    }];
    invalid_arg(draft(vec![r]));
    let mut r = rule();
    r.codes = vec![CodedConcept {
        system: "http://loinc.org".into(),
        code: "x".repeat(300),
    }];
    invalid_arg(draft(vec![r]));
    let mut r = rule();
    r.data_start_ms = Some(u64::MAX);
    r.data_end_ms = Some(0);
    invalid_arg(draft(vec![r]));
    invalid_arg(draft(vec![rule(); 300]));
    // Role grantees and research topics are representable.
    let mut r = rule();
    r.grantees = vec![
        Grantee::Clinician {
            institution: Some(text("institution.id")),
        },
        Grantee::Researcher { institution: None },
    ];
    r.purposes = vec![PurposeOfUse::Research {
        topic: Some("diabetes".into()),
    }];
    r.actions = vec![ConsentAction::ResearchUse, ConsentAction::Search];
    w.sign_consent(draft(vec![r])).unwrap();
    // FHIR input that is not a Consent.
    for bad in ["", "{", "[]", r#"{"resourceType":"Patient"}"#, "null"] {
        assert!(w.sign_fhir_consent(bad.into()).is_err());
    }
    assert!(w.sign_fhir_consent("x".repeat(300_000)).is_err());
}

#[test]
fn erasure_and_revocation_ids_are_checked() {
    let w = patient();
    let rid = text("record-erased.id");
    let req = w.request_erasure(rid.clone()).unwrap();
    assert_eq!(req.kind, RequestKind::RecordErasure);
    let info = consent::inspect_signed_request(req.body, network()).unwrap();
    assert_eq!(info.subject_id, rid);
    assert_eq!(info.patient, w.public_identity());
    for bad in ["", "00", "zz", &"0".repeat(63), &"0".repeat(65), "é"] {
        assert!(matches!(
            w.request_erasure(bad.into()),
            Err(WalletError::InvalidArgument { .. })
        ));
        assert!(matches!(
            w.sign_revocation(bad.into()),
            Err(WalletError::InvalidArgument { .. })
        ));
    }
}

#[test]
fn enrolment_seals_the_patients_writer_key_to_the_hospital() {
    use medchain_core::encoding::Decode;
    use medchain_core::index::{IndexKey, Keyword, SealedWriterKey};
    use medchain_core::keys::{Identity, PublicIdentity};
    use rand_chacha::rand_core::SeedableRng;

    let hospital = Identity::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(14));
    let hospital_text = hospital.public().to_text();
    // Nothing is signed before a network is pinned.
    let unpinned = Wallet::restore(store(), file("patient.backup"), PASSWORD.into()).unwrap();
    assert_eq!(
        unpinned.export_writer_key(hospital_text.clone()),
        Err(WalletError::NoTrustedNetwork)
    );
    let w = patient();
    let sealed = w.export_writer_key(hospital_text.clone()).unwrap();
    let info = enrol::inspect_writer_key(sealed.clone(), network()).unwrap();
    assert_eq!(info.patient, w.public_identity());
    assert_eq!(info.hospital, hospital_text);
    // The hospital opens it and gets exactly the patient's writer key for it.
    let chain = network().chain_id();
    let patient_public = PublicIdentity::from_text(&w.public_identity()).unwrap();
    let key = SealedWriterKey::from_bytes(&sealed)
        .unwrap()
        .import(&hospital, &chain, &patient_public)
        .unwrap();
    let me = Identity::restore_backup(&file("patient.backup"), PASSWORD.as_bytes()).unwrap();
    let kw: Vec<Keyword> = vec!["type:Observation".parse().unwrap()];
    assert_eq!(
        key.trapdoors(&kw),
        IndexKey::for_patient(&me)
            .for_writer(&hospital.id())
            .trapdoors(&kw)
    );
    // Sealed on the pinned network only: a sibling network refuses it.
    let staging = TrustedNetwork::new(file("genesis-staging.bin"), None).unwrap();
    assert_eq!(
        enrol::inspect_writer_key(sealed.clone(), staging),
        Err(WalletError::BadSignature)
    );
    for bad in mutations(&sealed) {
        assert!(enrol::inspect_writer_key(bad, network()).is_err());
    }
    assert!(matches!(
        enrol::inspect_writer_key(vec![2; 337], network()),
        Err(WalletError::Malformed { .. })
    ));
    assert!(matches!(
        enrol::inspect_writer_key(
            vec![1; medchain_core::index::SEALED_WRITER_KEY_LEN],
            network()
        ),
        Err(WalletError::Malformed { .. })
    ));
    for bad in ["", "mcid1bad", &"x".repeat(2000)] {
        assert!(matches!(
            w.export_writer_key(bad.into()),
            Err(WalletError::InvalidIdentity { .. })
        ));
    }
}

#[test]
fn records_open_for_their_patient_only() {
    let w = patient();
    let r = w.open_record(file("record-mine.sealed")).unwrap();
    assert!(r.is_mine);
    assert_eq!(r.resource_type, "Observation");
    assert_eq!(r.fhir_json, fixtures::OBSERVATION);
    assert_eq!(r.record_id, text("record-mine.id"));
    assert!(!format!("{r:?}").contains("loinc"));
    assert_eq!(
        w.open_record(file("record-foreign.sealed")).unwrap_err(),
        WalletError::NotAddressedToMe
    );
    let stranger = Wallet::create(store(), "x".into()).unwrap();
    assert_eq!(
        stranger
            .open_record(file("record-mine.sealed"))
            .unwrap_err(),
        WalletError::NotAddressedToMe
    );
    for bad in mutations(&file("record-mine.sealed")) {
        // A flip in another reader's envelope leaves the patient's intact: the record still
        // opens, to the same content. Anything else is a typed error.
        let e = match w.open_record(bad) {
            Ok(r) => {
                assert_eq!(r.fhir_json, fixtures::OBSERVATION);
                continue;
            }
            Err(e) => e,
        };
        assert!(
            matches!(
                e,
                WalletError::Malformed { .. }
                    | WalletError::RecordDamaged
                    | WalletError::NotAddressedToMe
            ),
            "{e:?}"
        );
    }
    // A length prefix claiming 4 GiB of ciphertext.
    let mut huge = file("record-mine.sealed");
    let at = 1 + 32 + 64 + 32 + 12;
    huge[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        w.open_record(huge),
        Err(WalletError::Malformed { .. })
    ));
}

#[test]
fn audit_trail_decodes_with_emergencies_flagged() {
    let w = patient();
    let trail = w.read_audit_trail(file("audit.bin")).unwrap();
    let actions: Vec<AuditAction> = trail.iter().map(|a| a.action).collect();
    assert_eq!(
        actions,
        vec![
            AuditAction::KeyShared,
            AuditAction::Accessed,
            AuditAction::KeyShared,
            AuditAction::Accessed,
            AuditAction::Erased,
            AuditAction::Denied
        ]
    );
    // The refusal: who asked, why, the rule; nothing released, no consent named.
    let refused = &trail[5];
    assert_eq!(refused.actor, text("stranger.id"));
    assert_eq!(
        (refused.purpose.as_str(), refused.denied_by.as_deref()),
        ("TREAT", Some("denied"))
    );
    assert!(refused.consent_id.is_none() && !refused.emergency);
    assert_eq!(
        refused.relayed_by.as_deref(),
        Some(text("relay.key").as_str())
    );
    assert!(trail[..5].iter().all(|a| a.denied_by.is_none()));
    let event: serde_json::Value = serde_json::from_str(&refused.fhir_audit_event).unwrap();
    assert_eq!(
        (event["outcome"].as_str(), event["outcomeDesc"].as_str()),
        (Some("4"), Some("refused: denied"))
    );
    let emergency: Vec<&AuditRecord> = trail.iter().filter(|a| a.emergency).collect();
    assert_eq!(emergency.len(), 2);
    assert!(emergency
        .iter()
        .all(|a| a.purpose == "ETREAT" && a.consent_id.is_none()));
    assert_eq!(emergency[0].actor, text("emergency-doctor.id"));
    assert_eq!(emergency[1].tx_id, text("tx-emergency-access.id"));
    assert_eq!(trail[1].actor, text("doctor.id"));
    assert_eq!(
        trail[1].consent_id.as_deref(),
        Some(text("consent.id").as_str())
    );
    assert_eq!(trail[4].record_id, text("record-erased.id"));
    let event: serde_json::Value = serde_json::from_str(&emergency[1].fhir_audit_event).unwrap();
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["extension"][0]["valueBoolean"], true);

    // Someone else's wallet refuses the trail; the neutral decoder reads it.
    let other = Wallet::create(store(), "x".into()).unwrap();
    assert_eq!(
        other.read_audit_trail(file("audit.bin")).unwrap_err(),
        WalletError::ForeignAuditEntry
    );
    assert_eq!(
        audit::decode_audit_entries(file("audit.bin")).unwrap(),
        trail
    );
    // An empty trail.
    assert_eq!(w.read_audit_trail(vec![0, 0, 0, 0]).unwrap(), vec![]);
    // A count of 2^32 - 1 entries in 4 bytes, and other damage.
    let mut huge = Vec::new();
    huge.put_u32(u32::MAX);
    assert!(matches!(
        w.read_audit_trail(huge),
        Err(WalletError::Malformed { .. })
    ));
    for bad in mutations(&file("audit.bin")) {
        // A flip inside a free-form field may still decode; it must never panic.
        let _ = w.read_audit_trail(bad);
    }
}

#[test]
fn light_client_accepts_real_proofs_and_types_every_failure() {
    let w = Wallet::restore(store(), file("patient.backup"), PASSWORD.into()).unwrap();
    assert_eq!(
        w.verify_inclusion(file("proof-record.bin")).unwrap_err(),
        ProofError::NoTrustedNetwork
    );
    let info = w
        .trust_network(file("genesis.bin"), Some(text("genesis.hash")))
        .unwrap();
    assert_eq!(info.validators, 4);
    assert_eq!(info.quorum, 3);
    assert_eq!(info.members.len(), 6);
    let got = w.verify_inclusion(file("proof-record.bin")).unwrap();
    assert_eq!(got.kind, TransactionKind::RecordAdded);
    assert_eq!(got.height, 1);
    assert_eq!(got.contributor_name.as_deref(), Some("validator-0"));
    assert_eq!(
        w.verify_inclusion(file("proof-consent.bin")).unwrap().kind,
        TransactionKind::ConsentGranted
    );
    // The refusal in the audit trail, proven committed by its transaction.
    let denial = w.verify_inclusion(file("proof-denial.bin")).unwrap();
    assert_eq!(denial.kind, TransactionKind::AccessDenied);
    let trail = w.read_audit_trail(file("audit.bin")).unwrap();
    assert_eq!(denial.tx_id, trail[5].tx_id);
    let access = w
        .verify_inclusion(file("proof-emergency-access.bin"))
        .unwrap();
    assert_eq!(access.kind, TransactionKind::AccessLogged);
    assert_eq!(access.tx_id, text("tx-emergency-access.id"));
    assert_eq!(access.height, 4);
    assert_eq!(
        w.verify_inclusion(file("proof-erasure.bin")).unwrap().kind,
        TransactionKind::RecordErased
    );
    assert_eq!(
        w.verify_inclusion(file("proof-other-block.bin"))
            .unwrap_err(),
        ProofError::NotInBlock
    );
    assert_eq!(
        w.verify_inclusion(file("proof-tampered-header.bin"))
            .unwrap_err(),
        ProofError::HeaderNotCertified
    );
    assert!(matches!(
        w.verify_inclusion(file("proof-outsider-votes.bin"))
            .unwrap_err(),
        ProofError::UntrustedVoter { .. }
    ));
    assert_eq!(
        w.verify_inclusion(file("proof-no-quorum.bin")).unwrap_err(),
        ProofError::NoQuorum { have: 1, need: 3 }
    );
    // A descendant header that does not link to the block (the header chain of a block
    // committed through a later descendant).
    {
        use medchain_core::encoding::{Decode, Encode};
        use medchain_core::light::InclusionProof;
        let mut p = InclusionProof::from_bytes(&file("proof-record.bin")).unwrap();
        p.descendants.push(p.header.clone());
        assert_eq!(
            w.verify_inclusion(p.to_bytes()).unwrap_err(),
            ProofError::BrokenHeaderChain
        );
    }
    let other = TrustedNetwork::new(file("genesis-other.bin"), None).unwrap();
    assert_eq!(
        other
            .verify_inclusion(file("proof-record.bin"))
            .unwrap_err(),
        ProofError::WrongNetwork
    );
    for bad in mutations(&file("proof-record.bin")) {
        assert!(w.verify_inclusion(bad).is_err());
    }
    assert!(matches!(
        w.verify_inclusion(vec![0; 5 * 1024 * 1024]),
        Err(ProofError::Malformed { .. })
    ));
    // Pinning: the wrong hash, a malformed hash, malformed genesis bytes.
    assert!(matches!(
        TrustedNetwork::new(file("genesis-other.bin"), Some(text("genesis.hash"))),
        Err(ProofError::GenesisMismatch { .. })
    ));
    assert!(matches!(
        TrustedNetwork::new(file("genesis.bin"), Some("abc".into())),
        Err(ProofError::Malformed { .. })
    ));
    for bad in mutations(&file("genesis.bin")) {
        let _ = TrustedNetwork::new(bad, None);
    }
    assert_eq!(
        w.trusted_network().unwrap().info().genesis_hash,
        text("genesis.hash")
    );
}

/// A store whose every operation fails, as a broken Keychain would.
struct BrokenStore;

impl WalletStore for BrokenStore {
    fn get(&self, _: String) -> Result<Option<Vec<u8>>, StoreError> {
        Err(StoreError::Io {
            reason: "locked".into(),
        })
    }
    fn put(&self, _: String, _: Vec<u8>) -> Result<(), StoreError> {
        Err(StoreError::Io {
            reason: "locked".into(),
        })
    }
    fn delete(&self, _: String) -> Result<(), StoreError> {
        Ok(())
    }
    fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![])
    }
}

#[test]
fn store_failures_are_typed() {
    let broken: Arc<dyn WalletStore> = Arc::new(BrokenStore);
    let e = Wallet::create(broken.clone(), "x".into()).unwrap_err();
    assert_eq!(
        e,
        WalletError::Store {
            reason: "storage failed: locked".into()
        }
    );
    assert!(matches!(
        Wallet::open(broken.clone(), "x".into()),
        Err(WalletError::Store { .. })
    ));
    assert!(matches!(
        Wallet::restore(broken, file("patient.backup"), PASSWORD.into()),
        Err(WalletError::Store { .. })
    ));
}

#[test]
fn version_is_the_crate_version() {
    assert_eq!(medchain_ffi_version(), env!("CARGO_PKG_VERSION"));
}

// --- SMART client assertions ---------------------------------------------------------------------

/// A compact JWS's header and claims (JSON) and signature bytes.
fn jws_parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let json = |part: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    (
        json(parts[0]),
        json(parts[1]),
        URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    )
}

/// Whether `signature` is the ed25519 (RFC 8037 `EdDSA`) signature of `input` under `key` (hex).
fn eddsa_verifies(key: &str, input: &str, signature: &[u8]) -> bool {
    let key: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    ed25519_dalek::Signature::from_slice(signature)
        .is_ok_and(|s| key.verify_strict(input.as_bytes(), &s).is_ok())
}

const AUD: &str = "https://node.example/fhir/auth/token";
const NOW: u64 = 1_790_000_000;

#[test]
fn the_patient_assertion_is_a_smart_self_assertion_signed_eddsa() {
    // No network needs to be pinned: the assertion binds the token endpoint, not a chain.
    let w = Wallet::restore(store(), file("patient.backup"), PASSWORD.into()).unwrap();
    let key = w.identity_info().signing_key;
    let jwt = w.patient_client_assertion(AUD.into(), NOW).unwrap();
    let (header, claims, signature) = jws_parts(&jwt);
    assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT"}));
    let client = format!("patient:{key}");
    assert_eq!(client, patient_client_id(&w.identity().verify_key()));
    assert_eq!(claims["iss"], client.as_str());
    assert_eq!(claims["sub"], client.as_str());
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + token::ASSERTION_LIFETIME_SECONDS);
    let jti = claims["jti"].as_str().unwrap().to_owned();
    assert!(
        jti.len() == 32
            && jti
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(claims.as_object().unwrap().len(), 6, "{claims}");
    // RFC 8037: plain ed25519 over the ASCII signing input, under the patient's key.
    let input = jwt.rsplit_once('.').unwrap().0;
    assert_eq!(signature.len(), 64);
    assert!(eddsa_verifies(&key, input, &signature));
    // The same as the core signs it, and under no other key.
    assert_eq!(signature, w.identity().sign_jws(input).unwrap());
    let other = Wallet::create(store(), "other".into()).unwrap();
    assert!(!eddsa_verifies(
        &other.identity_info().signing_key,
        input,
        &signature
    ));
    // A fresh jti every time (a node refuses a replayed one).
    let (_, again, _) = jws_parts(&w.patient_client_assertion(AUD.into(), NOW).unwrap());
    assert_ne!(again["jti"], jti.as_str());
    // The largest accepted time is still a valid assertion (no overflow).
    let late = w
        .patient_client_assertion(
            "http://127.0.0.1:7601/fhir/auth/token".into(),
            253_402_300_799,
        )
        .unwrap();
    assert_eq!(jws_parts(&late).1["exp"], 253_402_300_859u64);
}

#[test]
fn bad_audiences_and_times_are_typed_errors() {
    let w = patient();
    let long = format!("https://{}", "a".repeat(token::MAX_AUDIENCE));
    for aud in [
        "",
        "node.example",
        "not a url",
        "ftp://node.example/token",
        "http://",
        "https://",
        "https://node example/token",
        "https://node.example/token\n",
        "https://nöde.example/token",
        "https://node.example/\u{0}",
        long.as_str(),
    ] {
        let e = w.patient_client_assertion(aud.into(), NOW).unwrap_err();
        assert!(
            matches!(e, WalletError::InvalidArgument { .. }),
            "{aud:?}: {e}"
        );
        // The message names the problem, never the input.
        let message = e.to_string();
        assert!(
            !message.contains("node") && !message.contains("aaaa"),
            "{message}"
        );
    }
    for now in [253_402_300_800, u64::MAX - 59, u64::MAX] {
        let e = w.patient_client_assertion(AUD.into(), now).unwrap_err();
        assert!(
            matches!(e, WalletError::InvalidArgument { .. }),
            "{now}: {e}"
        );
    }
    // Milliseconds by mistake are caught too.
    assert!(w
        .patient_client_assertion(AUD.into(), 1_790_000_000_000_000)
        .is_err());
}

#[test]
fn sign_jws_signs_jws_signing_inputs_only() {
    let w = patient();
    let key = w.identity_info().signing_key;
    let input = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJpc3MiOiJhcHAifQ";
    let signature = w.sign_jws(input.into()).unwrap();
    assert_eq!(signature.len(), 64);
    assert!(eddsa_verifies(&key, input, &signature));
    // Deterministic (ed25519), and not a signature of anything else.
    assert_eq!(signature, w.sign_jws(input.into()).unwrap());
    assert!(!eddsa_verifies(&key, &format!("{input}x"), &signature));
    let framed = String::from_utf8_lossy(&[17, b'm', b'e', b'd']).into_owned();
    let too_long = format!(
        "eyJhbGciOiJFZERTQSJ9.{}",
        "a".repeat(token::MAX_SIGNING_INPUT)
    );
    // Every shape that is not a JWS signing input is core's test (`keys::tests`); here, that its
    // refusal arrives typed across the FFI, and the wallet's own length bound.
    for bad in ["", "hello world", framed.as_str(), too_long.as_str()] {
        let e = w.sign_jws(bad.into()).unwrap_err();
        assert!(
            matches!(e, WalletError::InvalidArgument { .. }),
            "{bad:?}: {e}"
        );
    }
}
