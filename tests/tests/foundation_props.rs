//! Property tests of the foundation: canonical round trips, seal/open, tamper detection, and
//! decoders that never panic.

use std::sync::OnceLock;

use medchain_core::encoding::{Decode, Encode};
use medchain_core::fhir::R4_RESOURCE_TYPES;
use medchain_core::fuzzing::TARGETS;
use medchain_core::hash::{domain, tagged_hash, ChainId, RecordId};
use medchain_core::keys::{AgreementKey, Identity, PublicIdentity};
use medchain_core::seal::{
    seal_record, KeyEnvelope, NetworkKey, NetworkSealed, SealError, SealedRecord,
};
use medchain_core::tx::{
    revocation_message, PatientSignature, RecordClass, Transaction, TxBody, TxKind,
};
use proptest::prelude::*;
use proptest::sample::{select, Index};

/// The network these properties sign for.
const CHAIN: ChainId = ChainId::from_byte_array([0x42; 32]);
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{json, Map, Value};

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn identity(seed: u64) -> Identity {
    Identity::generate(&mut rng(seed ^ 0x1d3e_17e5))
}

/// A FHIR-ish JSON value: strings, numbers, booleans, nested objects and arrays.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        "\\PC{0,24}".prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A FHIR R4 resource in JSON: a known `resourceType` and random other fields.
fn fhir_payload() -> impl Strategy<Value = Vec<u8>> {
    (
        select(R4_RESOURCE_TYPES),
        prop::collection::btree_map("[a-z][a-zA-Z]{0,11}", json_value(), 0..6),
    )
        .prop_map(|(rt, fields)| {
            let mut obj = Map::new();
            obj.insert("resourceType".into(), json!(rt));
            for (k, v) in fields {
                if k != "resourceType" {
                    obj.insert(k, v);
                }
            }
            serde_json::to_vec(&Value::Object(obj)).expect("serializable")
        })
}

/// Everything needed to build one valid body of any kind.
#[derive(Debug, Clone)]
struct BodyParams {
    kind: u8,
    patient: u64,
    other: u64,
    seal_seed: u64,
    payload: Vec<u8>,
    document: Vec<u8>,
    purpose: String,
    consent: Option<[u8; 32]>,
    emergency: bool,
    at_ms: u64,
    year: u16,
}

fn body_params() -> impl Strategy<Value = BodyParams> {
    (
        (1u8..=6, any::<u64>(), any::<u64>(), any::<u64>()),
        fhir_payload(),
        prop::collection::vec(any::<u8>(), 0..200),
        "[A-Z][A-Za-z0-9_-]{0,15}",
        prop::option::of(any::<[u8; 32]>()),
        (
            any::<bool>(),
            any::<u64>(),
            prop_oneof![Just(0u16), 1900u16..2200],
        ),
    )
        .prop_map(
            |(
                (kind, patient, other, seal_seed),
                payload,
                document,
                purpose,
                consent,
                (emergency, at_ms, year),
            )| {
                BodyParams {
                    kind,
                    patient,
                    other,
                    seal_seed,
                    payload,
                    document,
                    purpose,
                    consent,
                    emergency,
                    at_ms,
                    year,
                }
            },
        )
}

/// Builds a body that passes [`TxBody::check`].
fn build_body(p: &BodyParams) -> (Identity, TxBody) {
    let patient = identity(p.patient);
    let other = identity(p.other);
    let mut r = rng(p.seal_seed);
    let record = seal_record(&p.payload, &patient.public(), &[other.public()], &mut r)
        .expect("FHIR payload seals");
    let consent_id = p
        .consent
        .unwrap_or_else(|| tagged_hash(domain::CONSENT_ID, &p.document));
    let body = match TxKind::from_code(p.kind).expect("valid code") {
        TxKind::RecordAdded => {
            let rt = medchain_core::fhir::parse_resource(&p.payload)
                .expect("FHIR")
                .resource_type();
            let tag_key = medchain_core::consent::ConsentTagKey::for_patient(&patient);
            let class = medchain_core::access::record_class(&p.payload, &tag_key, &mut r)
                .expect("FHIR payload has a class");
            TxBody::record_added(
                record,
                RecordClass {
                    year: if RecordClass::withholds_date(rt) {
                        0
                    } else {
                        p.year
                    },
                    ..class
                },
            )
        }
        TxKind::ConsentGranted => TxBody::ConsentGranted {
            patient: PatientSignature::sign(&patient, &CHAIN, domain::CONSENT_SIG, &p.document),
            document: p.document.clone(),
        },
        TxKind::ConsentRevoked => TxBody::ConsentRevoked {
            consent_id,
            patient: PatientSignature::sign(
                &patient,
                &CHAIN,
                domain::REVOKE_SIG,
                &revocation_message(&consent_id),
            ),
        },
        TxKind::KeyShared => TxBody::KeyShared {
            record_id: record.record_id(),
            grantee: other.public(),
            purpose: p.purpose.clone(),
            consent_id: p.consent,
            credential: None,
            envelope: Some(
                record
                    .share_with(&patient, &other.public(), &mut r)
                    .expect("share"),
            ),
        },
        TxKind::AccessLogged => TxBody::AccessLogged {
            record_id: record.record_id(),
            accessor: other.public(),
            purpose: p.purpose.clone(),
            consent_id: p.consent,
            emergency: p.emergency,
            accessed_at_ms: p.at_ms,
        },
        TxKind::RecordErased => TxBody::RecordErased {
            record_id: record.record_id(),
            patient: PatientSignature::sign(
                &patient,
                &CHAIN,
                domain::ERASURE_SIG,
                record.record_id().as_byte_array(),
            ),
        },
        other => panic!("unexpected kind {other:?}"),
    };
    (patient, body)
}

/// The body as its canonical encoding carries it: the prunable payload (sealed record, wrapped
/// key) travels separately in the transaction.
fn without_payload(body: &TxBody) -> TxBody {
    let mut b = body.clone();
    match &mut b {
        TxBody::RecordAdded { sealed, .. } => *sealed = None,
        TxBody::KeyShared { envelope, .. } => *envelope = None,
        _ => {}
    }
    b
}

fn network_key() -> &'static NetworkKey {
    static KEY: OnceLock<NetworkKey> = OnceLock::new();
    KEY.get_or_init(|| NetworkKey::generate(&mut rng(99)))
}

const OBS: &[u8] = br#"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"},"valueQuantity":{"value":6.1,"unit":"%"}}"#;

/// A fixed RecordAdded transaction (with an index entry), encoded.
fn fixed_tx() -> &'static [u8] {
    static TX: OnceLock<Vec<u8>> = OnceLock::new();
    TX.get_or_init(|| {
        let mut r = rng(5);
        let patient = identity(1);
        let hospital = identity(2);
        let record = seal_record(OBS, &patient.public(), &[hospital.public()], &mut r).unwrap();
        let class = medchain_core::access::record_class(
            OBS,
            &medchain_core::consent::ConsentTagKey::for_patient(&patient),
            &mut r,
        )
        .unwrap();
        let body = TxBody::record_added(record, class);
        Transaction::create(
            &hospital,
            &CHAIN,
            1_700_000_000_000,
            7,
            &body,
            vec![0xab; 24],
            network_key(),
            &mut r,
        )
        .unwrap()
        .to_bytes()
    })
}

/// A fixed record sealed for a patient and a hospital, with both identities.
fn fixed_record() -> &'static (Identity, Identity, Vec<u8>) {
    static REC: OnceLock<(Identity, Identity, Vec<u8>)> = OnceLock::new();
    REC.get_or_init(|| {
        let patient = identity(11);
        let hospital = identity(12);
        let record =
            seal_record(OBS, &patient.public(), &[hospital.public()], &mut rng(13)).unwrap();
        (patient, hospital, record.to_bytes())
    })
}

fn heavy() -> ProptestConfig {
    ProptestConfig::with_cases(128)
}

fn light() -> ProptestConfig {
    ProptestConfig::with_cases(1024)
}

proptest! {
    #![proptest_config(heavy())]

    #[test]
    fn tx_body_round_trips(p in body_params()) {
        let (_, body) = build_body(&p);
        let bytes = body.to_bytes();
        let back = TxBody::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &without_payload(&body));
        prop_assert_eq!(back.to_bytes(), bytes);
        prop_assert!(body.check(&CHAIN).is_ok());
        prop_assert!(back.check(&CHAIN).is_ok());
    }

    #[test]
    fn transaction_round_trips_verifies_and_opens(
        p in body_params(),
        ts in any::<u64>(),
        nonce in any::<u64>(),
        index in prop::collection::vec(any::<u8>(), 0..300),
        seed in any::<u64>(),
    ) {
        let (patient, body) = build_body(&p);
        let contributor = identity(p.other);
        let index = if body.kind() == TxKind::RecordAdded { index } else { Vec::new() };
        let tx = Transaction::create(&contributor, &CHAIN, ts, nonce, &body, index.clone(), network_key(), &mut rng(seed)).unwrap();
        let bytes = tx.to_bytes();
        let back = Transaction::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.to_bytes(), bytes.clone());
        let verified = Transaction::decode_verified(&bytes).unwrap();
        prop_assert_eq!(verified.id(), tx.id());
        prop_assert_eq!(verified.kind(), body.kind());
        prop_assert_eq!(verified.index_entry(), &index[..]);
        let opened = verified.open_body(network_key()).unwrap();
        prop_assert_eq!(&opened, &body);
        if let TxBody::RecordAdded { sealed: Some(record), .. } = opened {
            prop_assert_eq!(record.open(&patient).unwrap().payload().to_vec(), p.payload.clone());
        }
    }

    #[test]
    fn seal_open_round_trips_for_every_reader(
        payload in fhir_payload(),
        patient in any::<u64>(),
        readers in prop::collection::vec(0u64..6, 0..4),
        seed in any::<u64>(),
    ) {
        let patient = identity(patient);
        // Small seeds so that readers repeat (and may equal nobody else).
        let readers: Vec<Identity> = readers.iter().map(|s| identity(*s)).collect();
        let publics: Vec<PublicIdentity> = readers.iter().map(Identity::public).collect();
        let sealed = seal_record(&payload, &patient.public(), &publics, &mut rng(seed)).unwrap();
        let mut distinct: Vec<AgreementKey> = vec![patient.public().agree];
        for p in &publics {
            if !distinct.contains(&p.agree) {
                distinct.push(p.agree);
            }
        }
        prop_assert_eq!(sealed.envelopes().len(), distinct.len());
        prop_assert_eq!(sealed.open(&patient).unwrap().payload().to_vec(), payload.clone());
        for reader in &readers {
            prop_assert_eq!(sealed.open(reader).unwrap().payload().to_vec(), payload.clone());
        }
        let stranger = identity(1000);
        prop_assert_eq!(sealed.open(&stranger).unwrap_err(), SealError::NoEnvelope);
        let bytes = sealed.to_bytes();
        let back = SealedRecord::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &sealed);
        prop_assert_eq!(back.to_bytes(), bytes.clone());
        // Nothing of the payload is visible in the encoding.
        if payload.len() >= 16 {
            prop_assert!(!bytes.windows(16).any(|w| w == &payload[..16]));
        }
    }

    #[test]
    fn shared_envelopes_round_trip_and_open(payload in fhir_payload(), seed in any::<u64>()) {
        let patient = identity(seed);
        let doctor = identity(seed.wrapping_add(1));
        let mut r = rng(seed);
        let sealed = seal_record(&payload, &patient.public(), &[], &mut r).unwrap();
        let env = sealed.share_with(&patient, &doctor.public(), &mut r).unwrap();
        let bytes = env.to_bytes();
        prop_assert_eq!(bytes.len(), medchain_core::seal::KEY_ENVELOPE_LEN);
        let back = KeyEnvelope::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(sealed.open_with(&doctor, &[back]).unwrap().payload().to_vec(), payload.clone());
    }
}

proptest! {
    #![proptest_config(light())]

    #[test]
    fn key_envelope_round_trips(recipient in any::<[u8; 32]>(), ephemeral in any::<[u8; 32]>(), wrapped in prop::collection::vec(any::<u8>(), 48)) {
        let env = KeyEnvelope {
            recipient: AgreementKey::from_byte_array(recipient),
            ephemeral,
            wrapped: wrapped.try_into().unwrap(),
        };
        let bytes = env.to_bytes();
        prop_assert_eq!(bytes.len(), 112);
        let back = KeyEnvelope::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &env);
        prop_assert_eq!(back.to_bytes(), bytes);
    }

    #[test]
    fn public_identity_round_trips(seed in any::<u64>()) {
        let public = identity(seed).public();
        let bytes = public.to_bytes();
        prop_assert_eq!(bytes.len(), 64);
        prop_assert_eq!(PublicIdentity::from_bytes(&bytes).unwrap(), public);
        prop_assert_eq!(PublicIdentity::from_text(&public.to_text()).unwrap(), public);
    }

    #[test]
    fn network_sealed_round_trips(pt in prop::collection::vec(any::<u8>(), 0..300), aad in prop::collection::vec(any::<u8>(), 0..60), seed in any::<u64>()) {
        let sealed = network_key().seal(&pt, &aad, &mut rng(seed));
        let bytes = sealed.to_bytes();
        let back = NetworkSealed::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&back, &sealed);
        prop_assert_eq!(back.to_bytes(), bytes);
        prop_assert_eq!(&network_key().open(&back, &aad).unwrap()[..], &pt[..]);
    }

    #[test]
    fn any_byte_flip_of_a_transaction_fails_decode_or_verify(at in any::<Index>(), xor in 1u8..=255) {
        let mut bytes = fixed_tx().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        prop_assert!(Transaction::decode_verified(&bytes).is_err(), "flip of byte {} by {:#04x} accepted", i, xor);
    }

    #[test]
    fn any_byte_flip_of_a_sealed_record_fails_decode_or_open(at in any::<Index>(), xor in 1u8..=255) {
        let (patient, hospital, original) = fixed_record();
        let mut bytes = original.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        // Envelopes are the last 2 × 112 bytes; before them everything is shared by all readers.
        let envelopes_at = bytes.len() - 2 * 112;
        match SealedRecord::from_bytes(&bytes) {
            Err(_) => {}
            Ok(record) => {
                let failed = [patient, hospital]
                    .iter()
                    .filter(|id| record.open(id).is_err())
                    .count();
                if i < envelopes_at {
                    prop_assert_eq!(failed, 2, "flip of shared byte {} by {:#04x} went unnoticed", i, xor);
                } else {
                    // A flip inside one reader's envelope is caught by that reader.
                    prop_assert!(failed >= 1, "flip of envelope byte {} by {:#04x} went unnoticed", i, xor);
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_a_decoder(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Transaction::from_bytes(&data);
        let _ = Transaction::decode_verified(&data);
        let _ = TxBody::from_bytes(&data);
        let _ = SealedRecord::from_bytes(&data);
        let _ = KeyEnvelope::from_bytes(&data);
        let _ = NetworkSealed::from_bytes(&data);
        let _ = PublicIdentity::from_bytes(&data);
        let _ = RecordId::from_bytes(&data);
        let _ = Identity::restore_backup(&data, b"password");
        let _ = PublicIdentity::from_text(&String::from_utf8_lossy(&data));
        let _ = medchain_core::fhir::parse_resource(&data);
        for (_, f) in TARGETS {
            f(&data);
        }
    }

    #[test]
    fn valid_prefix_with_random_tail_never_panics(cut in any::<Index>(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        for seed in [fixed_tx(), &fixed_record().2[..]] {
            let mut data = seed[..cut.index(seed.len() + 1)].to_vec();
            data.extend_from_slice(&tail);
            for (_, f) in TARGETS {
                f(&data);
            }
        }
    }
}

#[test]
fn body_strategy_covers_every_kind() {
    // prop_oneof-style coverage is probabilistic; make sure each kind builds and round trips.
    for kind in 1u8..=6 {
        let p = BodyParams {
            kind,
            patient: 1,
            other: 2,
            seal_seed: 3,
            payload: OBS.to_vec(),
            document: b"doc".to_vec(),
            purpose: "TREAT".into(),
            consent: None,
            emergency: true,
            at_ms: 4,
            year: 2024,
        };
        let (_, body) = build_body(&p);
        assert_eq!(body.kind().code(), kind);
        assert_eq!(
            TxBody::from_bytes(&body.to_bytes()).unwrap(),
            without_payload(&body)
        );
    }
}
