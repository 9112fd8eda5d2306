//! The foundation test vectors, `tests/data/vectors.json`, checked two ways:
//!
//! 1. through `medchain_core` (decode → re-encode is byte-identical, ids and hashes match,
//!    signatures verify strictly, records and bodies open to the recorded plaintext);
//! 2. through an independent re-implementation that uses only the primitives (SHA-256,
//!    HKDF-SHA256, AES-256-GCM, X25519, ed25519, Argon2id) and `docs/encoding.md` — the check
//!    that the document is enough to write a verifier in another language.
//!
//! The vectors are generated from a seeded ChaCha20 RNG, so they are the same on every run. To
//! rewrite the file after an intended format change:
//! `MEDCHAIN_REGENERATE_VECTORS=1 cargo test -p medchain-tests --test vectors`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use medchain_core::consent::{ConsentTagKey, DataClass};
use medchain_core::credential::{Credential, Role};
use medchain_core::encoding::{Decode, Encode, Writer};
use medchain_core::hash::{domain, tagged_hash, ChainId, RecordId, TxId};
use medchain_core::keys::{AgreementKey, BackupParams, Identity, PublicIdentity, Signature};
use medchain_core::research::{ReleaseCommitment, ReleaseLog, ResearchRequest, Study};
use medchain_core::seal::{
    seal_record, seal_record_as, KeyEnvelope, NetworkKey, NetworkSealed, SealedRecord,
};
use medchain_core::tx::{revocation_message, PatientSignature, Transaction, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::{Infallible, Rng, SeedableRng, TryCryptoRng, TryRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const VECTOR_FILE: &str = "data/vectors.json";

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(VECTOR_FILE)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Yields fixed bytes as randomness: rebuilds identities and keys from recorded secrets.
struct Replay(Vec<u8>);

impl TryRng for Replay {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        assert!(dest.len() <= self.0.len(), "replay RNG ran out of bytes");
        dest.copy_from_slice(&self.0[..dest.len()]);
        self.0.drain(..dest.len());
        Ok(())
    }
}

impl TryCryptoRng for Replay {}

fn identity_from_secrets(sign: &[u8], agree: &[u8]) -> Identity {
    Identity::generate(&mut Replay([sign, agree].concat()))
}

fn network_key_from(bytes: &[u8]) -> NetworkKey {
    NetworkKey::generate(&mut Replay(bytes.to_vec()))
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("expected a hex string, got {v}")),
    )
    .expect("valid hex")
}

fn h32(v: &Value) -> [u8; 32] {
    h(v).try_into().expect("32 bytes")
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

// ---------------------------------------------------------------------------------------------
// The independent re-implementation (follows docs/encoding.md, uses no medchain code)
// ---------------------------------------------------------------------------------------------

mod indep {
    use super::*;

    pub fn tagged(label: &str, data: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update([label.len() as u8]);
        hasher.update(label.as_bytes());
        hasher.update(data);
        hasher.finalize().into()
    }

    /// What a signature covers: `len(label) || label || chain || message` (docs/crypto.md).
    pub fn framed(label: &str, chain: &[u8; 32], msg: &[u8]) -> Vec<u8> {
        [&[label.len() as u8][..], label.as_bytes(), chain, msg].concat()
    }

    pub fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), ikm)
            .expand(info, &mut out)
            .expect("32-byte output");
        out
    }

    /// HMAC-SHA256 (RFC 2104) over SHA-256, written out.
    pub fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        let pad = |b: u8| -> Vec<u8> {
            let mut k = [b; 64];
            for (x, y) in k.iter_mut().zip(key) {
                *x ^= y;
            }
            k.to_vec()
        };
        let inner = Sha256::digest([pad(0x36), msg.to_vec()].concat());
        Sha256::digest([pad(0x5c), inner.to_vec()].concat()).into()
    }

    pub fn label_info(label: &str) -> Vec<u8> {
        [&[label.len() as u8][..], label.as_bytes()].concat()
    }

    pub fn gcm_open(key: &[u8], nonce: &[u8], ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce.try_into().ok()?, Payload { msg: ct, aad })
            .ok()
    }

    pub fn ed_public(secret: &[u8; 32]) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(secret)
            .verifying_key()
            .to_bytes()
    }

    pub fn x_public(secret: &[u8; 32]) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
    }

    pub fn x_shared(secret: &[u8; 32], public: &[u8; 32]) -> [u8; 32] {
        x25519_dalek::StaticSecret::from(*secret)
            .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
            .to_bytes()
    }

    pub fn verify_strict(
        public: &[u8; 32],
        label: &str,
        chain: &[u8; 32],
        msg: &[u8],
        sig: &[u8],
    ) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&sig.try_into().expect("64 bytes"));
        key.verify_strict(&framed(label, chain, msg), &sig).is_ok()
    }

    /// Key-wrap key of a key envelope (docs/encoding.md, "Key envelope").
    pub fn wrap_key(shared: &[u8; 32], ephemeral: &[u8], recipient: &[u8], ctx: &[u8]) -> [u8; 32] {
        let info = [&label_info("medchain/v1/key-wrap")[..], recipient, ctx].concat();
        hkdf32(ephemeral, shared, &info)
    }

    /// Unwraps a 112-byte key envelope with the recipient's X25519 secret.
    pub fn unwrap_envelope(env: &[u8], secret: &[u8; 32], ctx: &[u8]) -> Option<Vec<u8>> {
        assert_eq!(env.len(), 112);
        let (recipient, ephemeral, wrapped) = (&env[..32], &env[32..64], &env[64..]);
        let shared = x_shared(secret, &ephemeral.try_into().ok()?);
        if shared == [0u8; 32] {
            return None;
        }
        let key = wrap_key(&shared, ephemeral, recipient, ctx);
        gcm_open(&key, &[0u8; 12], wrapped, ctx)
    }

    /// Unwraps a 112-byte self envelope (bit 255 of its salt set) with its writer's ed25519
    /// secret: the shared secret is the writer's `derive_secret(SELF_WRAP, "")`.
    pub fn unwrap_self_envelope(env: &[u8], sign: &[u8; 32], ctx: &[u8]) -> Option<Vec<u8>> {
        assert_eq!(env.len(), 112);
        let (recipient, salt, wrapped) = (&env[..32], &env[32..64], &env[64..]);
        if salt[31] & 0x80 == 0 {
            return None;
        }
        let secret = hkdf32(
            b"medchain/v1/identity-derive",
            sign,
            &label_info("medchain/v1/self-wrap"),
        );
        let key = wrap_key(&secret, salt, recipient, ctx);
        gcm_open(&key, &[0u8; 12], wrapped, ctx)
    }

    /// A big-endian cursor.
    pub struct Cur<'a>(pub &'a [u8]);

    impl<'a> Cur<'a> {
        pub fn take(&mut self, n: usize) -> &'a [u8] {
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        }
        pub fn u32(&mut self) -> usize {
            u32::from_be_bytes(self.take(4).try_into().unwrap()) as usize
        }
        pub fn bytes(&mut self) -> &'a [u8] {
            let n = self.u32();
            self.take(n)
        }
    }

    /// Opens an encoded sealed record as the reader with X25519 secret `secret`: returns
    /// `(data key, salt, payload, record aad)`, checking the commitment.
    pub fn open_record(enc: &[u8], secret: &[u8; 32]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        open_record_with(enc, &x_public(secret), &|env, ctx| {
            unwrap_envelope(env, secret, ctx)
        })
    }

    /// Unwraps an envelope under a context: `(envelope, context) -> data key`.
    pub type Unwrap<'a> = &'a dyn Fn(&[u8], &[u8]) -> Option<Vec<u8>>;

    /// [`open_record`] as the reader with agreement key `me`, its envelope unwrapped by
    /// `unwrap(envelope, context)`.
    pub fn open_record_with(
        enc: &[u8],
        me: &[u8; 32],
        unwrap: Unwrap<'_>,
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut c = Cur(enc);
        assert_eq!(c.take(1), [2], "sealed record version");
        let record_id = c.take(32);
        let patient = c.take(64);
        let commitment = c.take(32);
        let nonce = c.take(12);
        let ct = c.bytes();
        let n = c.u32();
        let envelopes: Vec<&[u8]> = (0..n).map(|_| c.take(112)).collect();
        assert!(c.0.is_empty(), "trailing bytes");
        let env = envelopes
            .iter()
            .find(|e| e[..32] == me[..])
            .expect("an envelope for the reader");
        let data_key = unwrap(env, record_id).expect("envelope opens");
        let aad = [
            b"medchain/v1/record-aad".as_slice(),
            &[2],
            record_id,
            patient,
            commitment,
        ]
        .concat();
        let pt = gcm_open(&data_key, nonce, ct, &aad).expect("record decrypts");
        let (salt, padded) = pt.split_at(32);
        let payload = unpad(padded, 4096);
        assert_eq!(
            tagged(
                "medchain/v1/payload-commitment",
                &[salt, payload.as_slice()].concat()
            ),
            commitment,
            "payload commitment"
        );
        (data_key, salt.to_vec(), payload, aad)
    }

    /// Padmé above `floor` (docs/encoding.md §5): `L` rounded up to a multiple of
    /// `2^(E - S)` with `E = floor(log2 L)`, `S = floor(log2 E) + 1`.
    pub fn padded_len(len: usize, floor: usize) -> usize {
        if len <= floor {
            return floor;
        }
        let e = (usize::BITS - 1 - len.leading_zeros()) as usize;
        let s = (usize::BITS - e.leading_zeros()) as usize;
        let step = 1usize << (e - s);
        len.div_ceil(step) * step
    }

    /// `u32 len || content || zeros`, checked to be exactly `padded_len(4 + len, floor)` bytes
    /// with zero padding: returns the content.
    pub fn unpad(padded: &[u8], floor: usize) -> Vec<u8> {
        let len = u32::from_be_bytes(padded[..4].try_into().unwrap()) as usize;
        assert_eq!(padded.len(), padded_len(4 + len, floor), "padded width");
        assert!(padded[4 + len..].iter().all(|&b| b == 0), "zero padding");
        padded[4..4 + len].to_vec()
    }

    /// What [`check_transaction`] finds in a transaction.
    pub struct TxParts {
        pub header: [u8; 82],
        pub id: [u8; 32],
        pub body: Vec<u8>,
        pub payload_digest: [u8; 32],
        /// The decrypted payload, if the transaction carries one (not pruned).
        pub payload: Option<Vec<u8>>,
    }

    /// Checks an encoded transaction: id, strict signature, payload digest, and decrypts the
    /// body and the payload under the network key.
    pub fn check_transaction(enc: &[u8], network_key: &[u8]) -> TxParts {
        let mut c = Cur(enc);
        // version (1) || kind (1) || chain (32) || contributor (32) || timestamp (8) || nonce (8)
        let header: [u8; 82] = c.take(82).try_into().unwrap();
        assert_eq!(header[0], 3, "transaction version");
        let body_nonce = c.take(32);
        let body_ct = c.bytes();
        let index_entry = c.bytes();
        if header[1] != 1 {
            assert!(index_entry.is_empty());
        }
        let payload_digest: [u8; 32] = c.take(32).try_into().unwrap();
        let signed_len = enc.len() - c.0.len();
        let sig = c.take(64);
        let payload = match c.take(1)[0] {
            0 => None,
            1 => Some((c.take(32), c.bytes())),
            other => panic!("presence byte {other}"),
        };
        assert!(c.0.is_empty(), "trailing bytes");
        let id = tagged("medchain/v1/tx-id", &enc[..signed_len]);
        let chain: [u8; 32] = header[2..34].try_into().unwrap();
        let contributor: [u8; 32] = header[34..66].try_into().unwrap();
        assert!(
            verify_strict(&contributor, "medchain/v1/tx-signature", &chain, &id, sig),
            "signature"
        );
        let seal_key =
            |nonce: &[u8]| hkdf32(nonce, network_key, &label_info("medchain/v1/network-seal"));
        let body = unpad(
            &gcm_open(&seal_key(body_nonce), &[0u8; 12], body_ct, &header).expect("body decrypts"),
            512,
        );
        let payload = payload.map(|(nonce, ct)| {
            let mut framed = nonce.to_vec();
            framed.extend_from_slice(&(ct.len() as u32).to_be_bytes());
            framed.extend_from_slice(ct);
            assert_eq!(
                tagged("medchain/v1/tx-payload", &framed),
                payload_digest,
                "payload digest"
            );
            let aad = [&header[..], b"payload"].concat();
            gcm_open(&seal_key(nonce), &[0u8; 12], ct, &aad).expect("payload decrypts")
        });
        if payload.is_none() && !matches!(header[1], 1 | 4) {
            assert_eq!(payload_digest, [0; 32]);
        }
        TxParts {
            header,
            id,
            body,
            payload_digest,
            payload,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generation (deterministic)
// ---------------------------------------------------------------------------------------------

const OBSERVATION: &str = r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},"subject":{"reference":"Patient/example"},"valueQuantity":{"value":6.1,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}"#;

const LABELS: &[&str] = &[
    domain::TX_ID,
    domain::TX_PAYLOAD,
    domain::TX_SIG,
    domain::PAYLOAD_COMMITMENT,
    domain::RECORD_AAD,
    domain::KEY_WRAP,
    domain::NETWORK_SEAL,
    domain::NETWORK_KEY_FINGERPRINT,
    domain::PARTY_ID,
    domain::IDENTITY_CHECKSUM,
    domain::BACKUP_AAD,
    domain::CONSENT_SIG,
    domain::REVOKE_SIG,
    domain::ERASURE_SIG,
    domain::CREDENTIAL_SIG,
    domain::RESEARCH_REQUEST_SIG,
    domain::RESEARCH_RELEASE,
    domain::RESEARCH_RELEASE_KEY,
];

fn enc_of(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    hex::encode(out)
}

fn primitives() -> Vec<Value> {
    vec![
        json!({"type": "u8", "value": "7", "encoding": enc_of(|o| o.put_u8(7))}),
        json!({"type": "u16", "value": "258", "encoding": enc_of(|o| o.put_u16(0x0102))}),
        json!({"type": "u32", "value": "50595078", "encoding": enc_of(|o| o.put_u32(0x0304_0506))}),
        json!({"type": "u64", "value": "1700000000000", "encoding": enc_of(|o| o.put_u64(1_700_000_000_000))}),
        json!({"type": "bool", "value": "false", "encoding": enc_of(|o| o.put_bool(false))}),
        json!({"type": "bool", "value": "true", "encoding": enc_of(|o| o.put_bool(true))}),
        json!({"type": "bytes", "value": "", "encoding": enc_of(|o| o.put_bytes(b""))}),
        json!({"type": "bytes", "value": "616263", "encoding": enc_of(|o| o.put_bytes(b"abc"))}),
        json!({"type": "string", "value": "TREAT", "encoding": enc_of(|o| o.put_bytes(b"TREAT"))}),
        json!({"type": "list<u64>", "value": "[1, 2]", "encoding": enc_of(|o| o.put_list(&[1u64, 2]))}),
        json!({"type": "option<u64>", "value": "None", "encoding": enc_of(|o| o.put_option::<u64>(None))}),
        json!({"type": "option<u64>", "value": "Some(5)", "encoding": enc_of(|o| o.put_option(Some(&5u64)))}),
    ]
}

struct Party {
    name: &'static str,
    sign: [u8; 32],
    agree: [u8; 32],
    id: Identity,
}

fn party(name: &'static str, rng: &mut ChaCha20Rng) -> Party {
    let mut sign = [0u8; 32];
    let mut agree = [0u8; 32];
    rng.fill_bytes(&mut sign);
    rng.fill_bytes(&mut agree);
    Party {
        name,
        sign,
        agree,
        id: identity_from_secrets(&sign, &agree),
    }
}

/// The network the vectors are signed for (any 32 bytes serve; a real network's is its genesis
/// hash).
fn vector_chain() -> ChainId {
    ChainId::from_byte_array(tagged_hash(
        domain::GENESIS,
        b"medchain test-vector network",
    ))
}

fn generate() -> Value {
    let chain = vector_chain();
    let mut rng = ChaCha20Rng::seed_from_u64(0x6d63_7665_6374_6f72);
    let patient = party("patient", &mut rng);
    let hospital = party("hospital", &mut rng);
    let doctor = party("doctor", &mut rng);
    let parties = [&patient, &hospital, &doctor];
    let mut net_bytes = [0u8; 32];
    rng.fill_bytes(&mut net_bytes);
    let net = network_key_from(&net_bytes);

    let tagged_hashes: Vec<Value> = LABELS
        .iter()
        .flat_map(|label| {
            [&b""[..], b"medchain"].into_iter().map(move |data| {
                json!({
                    "label": label,
                    "data": hex::encode(data),
                    "hash": hex::encode(tagged_hash(label, data)),
                })
            })
        })
        .collect();

    let identities: BTreeMap<&str, Value> = parties
        .iter()
        .map(|p| {
            let public = p.id.public();
            (
                p.name,
                json!({
                    "signing_secret": hex::encode(p.sign),
                    "agreement_secret": hex::encode(p.agree),
                    "sign_public": hex::encode(public.sign.as_byte_array()),
                    "agree_public": hex::encode(public.agree.as_byte_array()),
                    "encoding": hex::encode(public.to_bytes()),
                    "party_id": public.id().to_string(),
                    "text": public.to_text(),
                }),
            )
        })
        .collect();

    let signatures = vec![
        json!({
            "signer": "patient",
            "label": domain::CONSENT_SIG,
            "message": hex::encode(b"consent document"),
            "signature": hex::encode(patient.id.sign(&chain, domain::CONSENT_SIG, b"consent document").as_byte_array()),
        }),
        json!({
            "signer": "hospital",
            "label": domain::TX_SIG,
            "message": hex::encode([0x42u8; 32]),
            "signature": hex::encode(hospital.id.sign(&chain, domain::TX_SIG, &[0x42; 32]).as_byte_array()),
        }),
    ];

    let derived = vec![
        json!({
            "identity": "patient",
            "label": domain::INDEX_KEY,
            "context": hex::encode(b"example"),
            "secret": hex::encode(*patient.id.derive_secret(domain::INDEX_KEY, b"example")),
        }),
        json!({
            "identity": "patient",
            "label": domain::CONSENT_TAG_KEY,
            "context": hex::encode(b"patient"),
            "secret": hex::encode(*patient.id.derive_secret(domain::CONSENT_TAG_KEY, b"patient")),
        }),
    ];

    // Blinded consent codes: the patient's tag of a (system, code) pair.
    let tag_key = ConsentTagKey::for_patient(&patient.id);
    let consent_tags: Vec<Value> = [
        ("http://hl7.org/fhir/sid/icd-10", "F20.9"),
        ("http://loinc.org", "4548-4"),
        ("", ""),
    ]
    .iter()
    .map(|(system, code)| {
        json!({
            "identity": "patient",
            "system": system,
            "code": code,
            "tag": tag_key.tag(system, code).to_string(),
        })
    })
    .collect();

    // Network-sealed messages.
    let network_sealed: Vec<Value> = [(&b"hello nodes"[..], &b""[..]), (b"", b"header")]
        .iter()
        .map(|(pt, aad)| {
            let sealed = net.seal(pt, aad, &mut rng);
            let key = indep::hkdf32(
                sealed.nonce(),
                &net_bytes,
                &indep::label_info(domain::NETWORK_SEAL),
            );
            json!({
                "plaintext": hex::encode(pt),
                "aad": hex::encode(aad),
                "encoding": hex::encode(sealed.to_bytes()),
                "message_key": hex::encode(key),
            })
        })
        .collect();

    // The network key wrapped for the hospital node.
    let env = net.wrap_for(&hospital.id.public(), &mut rng).expect("wrap");
    let shared = indep::x_shared(&hospital.agree, &env.ephemeral);
    let ctx = b"medchain/v1/network-key";
    let key_envelopes = vec![json!({
        "recipient": "hospital",
        "context": hex::encode(ctx),
        "encoding": hex::encode(env.to_bytes()),
        "shared_secret": hex::encode(shared),
        "wrap_key": hex::encode(indep::wrap_key(&shared, &env.ephemeral, env.recipient.as_byte_array(), ctx)),
        "secret": hex::encode(net_bytes),
    })];

    // A record sealed for the patient and the hospital.
    let record = seal_record(
        OBSERVATION.as_bytes(),
        &patient.id.public(),
        &[hospital.id.public()],
        &mut rng,
    )
    .expect("seal");
    let rec_bytes = record.to_bytes();
    let (data_key, salt, _, aad) = indep::open_record(&rec_bytes, &patient.agree);
    let sealed_records = vec![json!({
        "payload": OBSERVATION,
        "patient": "patient",
        "readers": ["patient", "hospital"],
        "encoding": hex::encode(&rec_bytes),
        "record_id": record.record_id().to_string(),
        "commitment": record.commitment().to_string(),
        "salt": hex::encode(salt),
        "data_key": hex::encode(data_key),
        "aad": hex::encode(aad),
    })];

    // One transaction of every kind.
    let doc = b"\x01example consent document (format defined by the consent module)".to_vec();
    let consent_id = tagged_hash(domain::CONSENT_ID, &doc);
    let rid = record.record_id();
    let bodies: Vec<(&Party, TxBody, Vec<u8>)> = vec![
        (
            &hospital,
            TxBody::record_added(
                record.clone(),
                medchain_core::access::record_class(OBSERVATION.as_bytes(), &tag_key, &mut rng)
                    .expect("class"),
            ),
            (0u8..40).collect(),
        ),
        (
            &hospital,
            TxBody::ConsentGranted {
                patient: PatientSignature::sign(&patient.id, &chain, domain::CONSENT_SIG, &doc),
                document: doc.clone(),
            },
            vec![],
        ),
        (
            &hospital,
            TxBody::ConsentRevoked {
                consent_id,
                patient: PatientSignature::sign(
                    &patient.id,
                    &chain,
                    domain::REVOKE_SIG,
                    &revocation_message(&consent_id),
                ),
            },
            vec![],
        ),
        (
            &patient,
            TxBody::KeyShared {
                record_id: rid,
                grantee: doctor.id.public(),
                purpose: "TREAT".into(),
                consent_id: Some(consent_id),
                credential: None,
                envelope: Some(
                    record
                        .share_with(&patient.id, &doctor.id.public(), &mut rng)
                        .expect("share"),
                ),
            },
            vec![],
        ),
        (
            &hospital,
            TxBody::AccessLogged {
                record_id: rid,
                accessor: doctor.id.public(),
                purpose: "TREAT".into(),
                consent_id: Some(consent_id),
                emergency: false,
                accessed_at_ms: 1_700_000_123_456,
            },
            vec![],
        ),
        (
            &patient,
            TxBody::RecordErased {
                record_id: rid,
                patient: PatientSignature::sign(
                    &patient.id,
                    &chain,
                    domain::ERASURE_SIG,
                    rid.as_byte_array(),
                ),
            },
            vec![],
        ),
        (
            &hospital,
            TxBody::ResearchReleased(Box::new(ReleaseLog {
                // The doctor as a researcher, credentialed by the hospital.
                request: ResearchRequest::sign(
                    &doctor.id,
                    &chain,
                    Study {
                        id: "example-study".into(),
                        purpose: "HRESCH".into(),
                        topic: Some("diabetes".into()),
                        classes: vec![
                            DataClass::ResourceType("Condition".into()),
                            DataClass::Code {
                                system: "http://loinc.org".into(),
                                code: "4548-4".into(),
                            },
                        ],
                        longitudinal: false,
                    },
                    Credential::issue(
                        &hospital.id,
                        &chain,
                        doctor.id.verify_key(),
                        Role::Researcher {
                            institution: hospital.id.verify_key(),
                        },
                        1_800_000_000_000,
                    ),
                )
                .expect("request"),
                commitment: ReleaseCommitment::from_byte_array(tagged_hash(
                    domain::RESEARCH_RELEASE,
                    b"example",
                )),
                patients: 20,
                rows: 40,
                released_at_ms: 1_700_000_006_000,
            })),
            vec![],
        ),
    ];
    let transactions: Vec<Value> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, (who, body, index_entry))| {
            let tx = Transaction::create(
                &who.id,
                &chain,
                1_700_000_000_000 + i as u64 * 1000,
                i as u64 + 1,
                &body,
                index_entry.clone(),
                &net,
                &mut rng,
            )
            .expect("create");
            let bytes = tx.to_bytes();
            let parts = indep::check_transaction(&bytes, &net_bytes);
            json!({
                "payload_digest": hex::encode(parts.payload_digest),
                "payload": parts.payload.map(hex::encode),
                "kind": format!("{:?}", tx.kind()),
                "kind_code": tx.kind().code(),
                "contributor": who.name,
                "timestamp_ms": tx.timestamp_ms(),
                "nonce": tx.nonce(),
                "index_entry": hex::encode(&index_entry),
                "body": hex::encode(body.to_bytes()),
                "header": hex::encode(&bytes[..82]),
                "encoding": hex::encode(&bytes),
                "tx_id": tx.id().to_string(),
                "signature": hex::encode(tx.signature().as_byte_array()),
            })
        })
        .collect();

    // An identity backup (weak test parameters; real backups use BackupParams::RECOMMENDED).
    let params = BackupParams::dangerous_test_only();
    let password = b"correct horse battery staple";
    let backup = patient
        .id
        .export_backup(password, params, &mut rng)
        .expect("backup");
    let backups = vec![json!({
        "identity": "patient",
        "password": hex::encode(password),
        "memory_kib": params.memory_kib,
        "iterations": params.iterations,
        "parallelism": params.parallelism,
        "encoding": hex::encode(&backup),
    })];

    // Inputs that must be rejected, with the error they get.
    let tx0 = h(&transactions[0]["encoding"]);
    // ConsentGranted: no payload, so the encoding ends with the signature and a 0x00 (absent).
    let mut bad_sig = h(&transactions[1]["encoding"]);
    let r_first = bad_sig.len() - 1 - 64;
    bad_sig[r_first] ^= 1;
    // RecordAdded: the last byte is inside the payload, which no longer matches its digest.
    let mut bad_payload = tx0.clone();
    *bad_payload.last_mut().expect("non-empty") ^= 1;
    let mut trailing = tx0.clone();
    trailing.push(0);
    // A version-1 transaction (before signatures bound the chain) is refused.
    let mut version1 = tx0.clone();
    version1[0] = 1;
    let mut bad_kind = tx0.clone();
    bad_kind[1] = 9;
    let mut small_order_key = vec![0u8; 64];
    small_order_key[0] = 1;
    let mut no_envelopes = rec_bytes.clone();
    let n = no_envelopes.len();
    no_envelopes.truncate(n - 4 - 2 * 112);
    no_envelopes.put_u32(0);
    // The AccessLogged body with its emergency flag set to 2.
    let mut bad_bool = h(&transactions[4]["body"]);
    let flag = bad_bool.len() - 9;
    bad_bool[flag] = 2;
    let reject = |t: &str, bytes: &[u8], err: String| json!({"type": t, "encoding": hex::encode(bytes), "error": err});
    let tx_err = |b: &[u8]| {
        Transaction::decode_verified(b)
            .expect_err("rejected")
            .to_string()
    };
    let rejections = vec![
        reject("transaction", &bad_sig, tx_err(&bad_sig)),
        reject("transaction", &bad_payload, tx_err(&bad_payload)),
        reject("transaction", &trailing, tx_err(&trailing)),
        reject("transaction", &version1, tx_err(&version1)),
        reject("transaction", &bad_kind, tx_err(&bad_kind)),
        reject(
            "public_identity",
            &small_order_key,
            PublicIdentity::from_bytes(&small_order_key)
                .expect_err("rejected")
                .to_string(),
        ),
        reject(
            "sealed_record",
            &no_envelopes,
            SealedRecord::from_bytes(&no_envelopes)
                .expect_err("rejected")
                .to_string(),
        ),
        reject(
            "tx_body",
            &bad_bool,
            TxBody::from_bytes(&bad_bool)
                .expect_err("rejected")
                .to_string(),
        ),
    ];

    // A record written by the hospital (`seal_record_as`): its own envelope is a self envelope.
    // Its own generator, so the vectors above keep their bytes.
    let mut self_rng = ChaCha20Rng::seed_from_u64(0x5e1f);
    let by_writer = seal_record_as(
        &hospital.id,
        OBSERVATION.as_bytes(),
        &patient.id.public(),
        &[],
        &mut self_rng,
    )
    .expect("seal");
    let self_bytes = by_writer.to_bytes();
    let (data_key, salt, _, aad) = indep::open_record(&self_bytes, &patient.agree);
    let self_sealed_records = vec![json!({
        "payload": OBSERVATION,
        "patient": "patient",
        "writer": "hospital",
        "readers": ["patient", "hospital"],
        "encoding": hex::encode(&self_bytes),
        "record_id": by_writer.record_id().to_string(),
        "self_secret": hex::encode(*hospital.id.derive_secret(domain::SELF_WRAP, &[])),
        "salt": hex::encode(salt),
        "data_key": hex::encode(data_key),
        "aad": hex::encode(aad),
    })];

    json!({
        "about": "medchain foundation test vectors (docs/encoding.md). All byte strings are hex. \
                  Generated by tests/tests/vectors.rs from a seeded ChaCha20 RNG; the secrets \
                  here are test data. Randomized encodings (records, envelopes, network-sealed \
                  bodies, transactions, backups) are checked by decoding, verifying and opening, \
                  not by re-sealing.",
        "version": 2,
        "chain": chain.to_string(),
        "tagged_hashes": tagged_hashes,
        "primitives": primitives(),
        "identities": identities,
        "signatures": signatures,
        "derived_secrets": derived,
        "consent_tags": consent_tags,
        "network_key": {
            "key": hex::encode(net_bytes),
            "fingerprint": hex::encode(net.fingerprint()),
        },
        "network_sealed": network_sealed,
        "key_envelopes": key_envelopes,
        "sealed_records": sealed_records,
        "self_sealed_records": self_sealed_records,
        "transactions": transactions,
        "backups": backups,
        "rejections": rejections,
    })
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn load() -> &'static Value {
    static VECTORS: OnceLock<Value> = OnceLock::new();
    VECTORS.get_or_init(|| {
        if std::env::var_os("MEDCHAIN_REGENERATE_VECTORS").is_some_and(|v| v == "1") {
            let text = serde_json::to_string_pretty(&generate()).expect("serialize") + "\n";
            std::fs::write(vector_path(), text).expect("write vectors");
        }
        let text = std::fs::read_to_string(vector_path()).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (generate with MEDCHAIN_REGENERATE_VECTORS=1)",
                vector_path().display()
            )
        });
        serde_json::from_str(&text).expect("valid JSON")
    })
}

fn identities(v: &Value) -> BTreeMap<String, (Identity, [u8; 32], [u8; 32])> {
    v["identities"]
        .as_object()
        .expect("identities")
        .iter()
        .map(|(name, p)| {
            let sign = h32(&p["signing_secret"]);
            let agree = h32(&p["agreement_secret"]);
            (
                name.clone(),
                (identity_from_secrets(&sign, &agree), sign, agree),
            )
        })
        .collect()
}

#[test]
fn vectors_are_stable() {
    // Generation is deterministic: two runs give the same file content.
    assert_eq!(generate(), generate());
}

#[test]
fn tagged_hashes_and_primitives() {
    let v = load();
    let hashes = arr(&v["tagged_hashes"]);
    assert_eq!(hashes.len(), 2 * LABELS.len());
    for t in hashes {
        let (label, data) = (s(&t["label"]), h(&t["data"]));
        assert!(LABELS.contains(&label), "unknown label {label}");
        assert_eq!(tagged_hash(label, &data), h32(&t["hash"]), "{label}");
        assert_eq!(indep::tagged(label, &data), h32(&t["hash"]), "{label}");
    }
    let expected = primitives();
    assert_eq!(arr(&v["primitives"]), &expected);
}

#[test]
fn identities_and_signatures() {
    let v = load();
    let ids = identities(v);
    assert_eq!(ids.len(), 3);
    for (name, (id, sign, agree)) in &ids {
        let p = &v["identities"][name];
        let public = id.public();
        let enc = h(&p["encoding"]);
        assert_eq!(public.to_bytes(), enc, "{name}");
        assert_eq!(PublicIdentity::from_bytes(&enc).unwrap(), public);
        assert_eq!(public.id().to_string(), s(&p["party_id"]));
        assert_eq!(public.to_text(), s(&p["text"]));
        assert_eq!(PublicIdentity::from_text(s(&p["text"])).unwrap(), public);
        // Independently.
        let (sp, ap) = (indep::ed_public(sign), indep::x_public(agree));
        assert_eq!(sp, h32(&p["sign_public"]));
        assert_eq!(ap, h32(&p["agree_public"]));
        assert_eq!(enc, [sp, ap].concat());
        let pid = indep::tagged("medchain/v1/party-id", &enc);
        assert_eq!(hex::encode(&pid[..16]), s(&p["party_id"]));
        let check = indep::tagged("medchain/v1/identity-checksum", &enc);
        let text = format!("mcid1{}{}", hex::encode(&enc), hex::encode(&check[..4]));
        assert_eq!(text, s(&p["text"]));
    }
    let chain: ChainId = s(&v["chain"]).parse().unwrap();
    assert_eq!(chain, vector_chain());
    for sig in arr(&v["signatures"]) {
        let (id, _, _) = &ids[s(&sig["signer"])];
        let (label, msg, bytes) = (s(&sig["label"]), h(&sig["message"]), h(&sig["signature"]));
        // ed25519 is deterministic: signing again gives the same bytes.
        assert_eq!(id.sign(&chain, label, &msg).as_byte_array()[..], bytes[..]);
        let signature = Signature::from_byte_array(bytes.clone().try_into().unwrap());
        id.verify_key()
            .verify(&chain, label, &msg, &signature)
            .unwrap();
        let key = id.verify_key();
        let raw = chain.as_byte_array();
        assert!(indep::verify_strict(
            key.as_byte_array(),
            label,
            raw,
            &msg,
            &bytes
        ));
        assert!(!indep::verify_strict(
            key.as_byte_array(),
            "medchain/v1/other",
            raw,
            &msg,
            &bytes
        ));
        // Bound to the network: the same signature is not valid for another chain.
        assert!(!indep::verify_strict(
            key.as_byte_array(),
            label,
            &[0; 32],
            &msg,
            &bytes
        ));
    }
    for t in arr(&v["consent_tags"]) {
        let (id, sign, _) = &ids[s(&t["identity"])];
        let key = ConsentTagKey::for_patient(id);
        assert_eq!(
            key.tag(s(&t["system"]), s(&t["code"])).to_string(),
            s(&t["tag"])
        );
        // Independently: HMAC-SHA256(key, u8 len || label || u32 len || system || u32 len ||
        // code), cut to 16 bytes, the key derived as any identity secret.
        let info = [
            indep::label_info(domain::CONSENT_TAG_KEY),
            b"patient".to_vec(),
        ]
        .concat();
        let k = indep::hkdf32(b"medchain/v1/identity-derive", sign, &info);
        let (system, code) = (s(&t["system"]).as_bytes(), s(&t["code"]).as_bytes());
        let msg = [
            indep::label_info("medchain/v1/consent-code-tag"),
            (system.len() as u32).to_be_bytes().to_vec(),
            system.to_vec(),
            (code.len() as u32).to_be_bytes().to_vec(),
            code.to_vec(),
        ]
        .concat();
        assert_eq!(
            hex::encode(&indep::hmac_sha256(&k, &msg)[..16]),
            s(&t["tag"])
        );
    }
    for d in arr(&v["derived_secrets"]) {
        let (id, sign, _) = &ids[s(&d["identity"])];
        let (label, ctx) = (s(&d["label"]), h(&d["context"]));
        assert_eq!(*id.derive_secret(label, &ctx), h32(&d["secret"]));
        let info = [indep::label_info(label), ctx].concat();
        assert_eq!(
            indep::hkdf32(b"medchain/v1/identity-derive", sign, &info),
            h32(&d["secret"])
        );
    }
}

#[test]
fn network_key_sealed_messages_and_envelopes() {
    let v = load();
    let ids = identities(v);
    let key_bytes = h(&v["network_key"]["key"]);
    let net = network_key_from(&key_bytes);
    assert_eq!(net.fingerprint(), h32(&v["network_key"]["fingerprint"]));
    assert_eq!(
        indep::tagged("medchain/v1/network-key-fingerprint", &key_bytes),
        h32(&v["network_key"]["fingerprint"])
    );
    for m in arr(&v["network_sealed"]) {
        let enc = h(&m["encoding"]);
        let sealed = NetworkSealed::from_bytes(&enc).unwrap();
        assert_eq!(sealed.to_bytes(), enc);
        let (pt, aad) = (h(&m["plaintext"]), h(&m["aad"]));
        assert_eq!(&net.open(&sealed, &aad).unwrap()[..], &pt[..]);
        // Independently: nonce (32) || u32 length || ciphertext.
        let mut c = indep::Cur(&enc);
        let nonce = c.take(32);
        let ct = c.bytes();
        assert!(c.0.is_empty());
        let key = indep::hkdf32(
            nonce,
            &key_bytes,
            &indep::label_info("medchain/v1/network-seal"),
        );
        assert_eq!(key, h32(&m["message_key"]));
        assert_eq!(indep::gcm_open(&key, &[0; 12], ct, &aad).unwrap(), pt);
    }
    for e in arr(&v["key_envelopes"]) {
        let (id, _, agree) = &ids[s(&e["recipient"])];
        let enc = h(&e["encoding"]);
        let env = KeyEnvelope::from_bytes(&enc).unwrap();
        assert_eq!(env.to_bytes(), enc);
        let got = NetworkKey::unwrap_from(&env, id).unwrap();
        assert_eq!(got.fingerprint(), net.fingerprint());
        let ctx = h(&e["context"]);
        let shared = indep::x_shared(agree, &enc[32..64].try_into().unwrap());
        assert_eq!(shared, h32(&e["shared_secret"]));
        assert_eq!(
            indep::wrap_key(&shared, &enc[32..64], &enc[..32], &ctx),
            h32(&e["wrap_key"])
        );
        assert_eq!(
            indep::unwrap_envelope(&enc, agree, &ctx).unwrap(),
            h(&e["secret"])
        );
    }
}

#[test]
fn sealed_records() {
    let v = load();
    let ids = identities(v);
    for r in arr(&v["sealed_records"]) {
        let enc = h(&r["encoding"]);
        let record = SealedRecord::from_bytes(&enc).unwrap();
        assert_eq!(record.to_bytes(), enc);
        assert_eq!(record.record_id().to_string(), s(&r["record_id"]));
        assert_eq!(record.commitment().to_string(), s(&r["commitment"]));
        assert_eq!(record.patient(), &ids[s(&r["patient"])].0.public());
        let payload = s(&r["payload"]).as_bytes();
        for reader in arr(&r["readers"]) {
            let (id, _, agree) = &ids[s(reader)];
            assert_eq!(record.open(id).unwrap().payload(), payload);
            let (key, salt, pt, aad) = indep::open_record(&enc, agree);
            assert_eq!(pt, payload);
            assert_eq!(key, h(&r["data_key"]));
            assert_eq!(salt, h(&r["salt"]));
            assert_eq!(aad, h(&r["aad"]));
        }
        let stranger: Vec<&String> = ids
            .keys()
            .filter(|n| !arr(&r["readers"]).iter().any(|x| s(x) == n.as_str()))
            .collect();
        for name in stranger {
            assert!(record.open(&ids[name].0).is_err());
        }
    }
}

#[test]
fn self_sealed_records() {
    let v = load();
    let ids = identities(v);
    for r in arr(&v["self_sealed_records"]) {
        let enc = h(&r["encoding"]);
        let record = SealedRecord::from_bytes(&enc).unwrap();
        assert_eq!(record.to_bytes(), enc);
        assert_eq!(record.record_id().to_string(), s(&r["record_id"]));
        let payload = s(&r["payload"]).as_bytes();
        let (writer, sign, _) = &ids[s(&r["writer"])];
        assert_eq!(
            *writer.derive_secret(domain::SELF_WRAP, &[]),
            h32(&r["self_secret"])
        );
        // Independently: HKDF over the ed25519 seed, as any identity-derived secret.
        assert_eq!(
            indep::hkdf32(
                b"medchain/v1/identity-derive",
                sign,
                &indep::label_info("medchain/v1/self-wrap")
            ),
            h32(&r["self_secret"])
        );
        // Exactly one self envelope: the writer's.
        let selfs: Vec<AgreementKey> = record
            .envelopes()
            .iter()
            .filter(|e| e.is_self())
            .map(|e| e.recipient)
            .collect();
        assert_eq!(selfs, [writer.public().agree]);
        for reader in arr(&r["readers"]) {
            let (id, _, _) = &ids[s(reader)];
            assert_eq!(record.open(id).unwrap().payload(), payload);
        }
        // Independently, from the writer's ed25519 secret alone (no X25519): its envelope is
        // found by its public agreement key.
        let me: [u8; 32] = *writer.public().agree.as_byte_array();
        let (key, salt, pt, aad) = indep::open_record_with(&enc, &me, &|env, ctx| {
            indep::unwrap_self_envelope(env, sign, ctx)
        });
        assert_eq!(pt, payload);
        assert_eq!(key, h(&r["data_key"]));
        assert_eq!(salt, h(&r["salt"]));
        assert_eq!(aad, h(&r["aad"]));
        // And the patient through its X25519 envelope, to the same key.
        let patient_agree = &ids[s(&r["patient"])].2;
        assert_eq!(indep::open_record(&enc, patient_agree).0, h(&r["data_key"]));
    }
}

#[test]
fn transactions() {
    let v = load();
    let ids = identities(v);
    let key_bytes = h(&v["network_key"]["key"]);
    let net = network_key_from(&key_bytes);
    let txs = arr(&v["transactions"]);
    let codes: Vec<u64> = txs
        .iter()
        .map(|t| t["kind_code"].as_u64().unwrap())
        .collect();
    assert_eq!(
        codes,
        [1, 2, 3, 4, 5, 6, 7],
        "one transaction of every kind"
    );
    for t in txs {
        let enc = h(&t["encoding"]);
        let tx = Transaction::from_bytes(&enc).unwrap();
        assert_eq!(tx.to_bytes(), enc);
        assert_eq!(format!("{:?}", tx.kind()), s(&t["kind"]));
        assert_eq!(tx.contributor(), &ids[s(&t["contributor"])].0.verify_key());
        assert_eq!(tx.timestamp_ms(), t["timestamp_ms"].as_u64().unwrap());
        assert_eq!(tx.nonce(), t["nonce"].as_u64().unwrap());
        assert_eq!(tx.index_entry(), h(&t["index_entry"]));
        assert_eq!(tx.signature().as_byte_array()[..], h(&t["signature"])[..]);
        let id: TxId = s(&t["tx_id"]).parse().unwrap();
        let verified = Transaction::decode_verified(&enc).unwrap();
        assert_eq!(verified.id(), id);
        let metadata = TxBody::from_bytes(&h(&t["body"])).unwrap();
        assert_eq!(metadata.to_bytes(), h(&t["body"]));
        let body = verified.open_body(&net).unwrap();
        assert_eq!(body.to_bytes(), h(&t["body"]));
        // Independently.
        let parts = indep::check_transaction(&enc, &key_bytes);
        assert_eq!(parts.header[..], h(&t["header"])[..]);
        assert_eq!(parts.id, id.to_byte_array());
        assert_eq!(parts.body, h(&t["body"]));
        assert_eq!(parts.payload_digest[..], h(&t["payload_digest"])[..]);
        assert_eq!(
            parts.payload,
            t["payload"].as_str().map(|p| hex::decode(p).unwrap())
        );
        assert_eq!(
            u64::from_be_bytes(parts.header[66..74].try_into().unwrap()),
            tx.timestamp_ms()
        );
        assert_eq!(&parts.header[2..34], tx.chain().as_byte_array());
        match &body {
            TxBody::RecordAdded { sealed, .. } => {
                let sealed = sealed.as_ref().expect("payload present");
                assert_eq!(Some(sealed.to_bytes()), parts.payload);
                assert!(sealed.open(&ids["patient"].0).is_ok());
            }
            TxBody::KeyShared { envelope, .. } => {
                let envelope = envelope.as_ref().expect("payload present");
                assert_eq!(Some(envelope.to_bytes()), parts.payload);
                // The envelope shared with the doctor opens the vector's record.
                let rec =
                    SealedRecord::from_bytes(&h(&v["sealed_records"][0]["encoding"])).unwrap();
                let (doctor, _, agree) = &ids["doctor"];
                assert_eq!(
                    rec.open_with(doctor, std::slice::from_ref(envelope))
                        .unwrap()
                        .payload(),
                    s(&v["sealed_records"][0]["payload"]).as_bytes()
                );
                let rid: RecordId = rec.record_id();
                assert!(
                    indep::unwrap_envelope(&envelope.to_bytes(), agree, rid.as_byte_array())
                        .is_some()
                );
            }
            _ => assert_eq!(parts.payload, None),
        }
        // A pruned copy keeps its id and signature.
        let mut pruned = tx.clone();
        pruned.prune();
        let pruned_bytes = pruned.to_bytes();
        let back = Transaction::decode_verified(&pruned_bytes).unwrap();
        assert_eq!(back.id(), id);
        assert_eq!(
            indep::check_transaction(&pruned_bytes, &key_bytes).id,
            parts.id
        );
    }
}

#[test]
fn backups() {
    let v = load();
    let ids = identities(v);
    for b in arr(&v["backups"]) {
        let enc = h(&b["encoding"]);
        let password = h(&b["password"]);
        let (id, sign, agree) = &ids[s(&b["identity"])];
        let restored = Identity::restore_backup(&enc, &password).unwrap();
        assert_eq!(restored.public(), id.public());
        assert!(Identity::restore_backup(&enc, b"wrong").is_err());
        // Independently: header (41 bytes) || u32 length (80) || ciphertext.
        let mut c = indep::Cur(&enc);
        let header = c.take(41);
        assert_eq!(header[0], 1);
        let word = |i: usize| u32::from_be_bytes(header[i..i + 4].try_into().unwrap());
        let (m, t, p) = (word(1), word(5), word(9));
        assert_eq!(m as u64, b["memory_kib"].as_u64().unwrap());
        assert_eq!(t as u64, b["iterations"].as_u64().unwrap());
        assert_eq!(p as u64, b["parallelism"].as_u64().unwrap());
        let (salt, nonce) = (&header[13..29], &header[29..41]);
        let ct = c.bytes();
        assert!(c.0.is_empty());
        let mut key = [0u8; 32];
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(m, t, p, Some(32)).unwrap(),
        )
        .hash_password_into(&password, salt, &mut key)
        .unwrap();
        let aad = [b"medchain/v1/identity-backup".as_slice(), header].concat();
        let pt = indep::gcm_open(&key, nonce, ct, &aad).unwrap();
        assert_eq!(pt, [&sign[..], &agree[..]].concat());
    }
}

#[test]
fn rejections() {
    let v = load();
    for r in arr(&v["rejections"]) {
        let enc = h(&r["encoding"]);
        let err = match s(&r["type"]) {
            "transaction" => Transaction::decode_verified(&enc)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "public_identity" => PublicIdentity::from_bytes(&enc)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "sealed_record" => SealedRecord::from_bytes(&enc)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "tx_body" => TxBody::from_bytes(&enc)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            other => panic!("unknown rejection type {other}"),
        };
        assert_eq!(err, s(&r["error"]));
    }
}
