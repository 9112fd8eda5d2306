//! Enrolment: a patient hands a writer (a hospital) its writer index key and the patient's
//! consent tag key, sealed to it.
//!
//! A hospital indexes a patient's records under the patient's writer sub-key for that hospital,
//! [`IndexKey::for_writer`] of the patient's key, which only the patient can derive. At
//! enrolment the patient's wallet seals that one sub-key to the hospital's public identity and
//! signs it ([`SealedWriterKey::export`]); the hospital checks and opens it with its own
//! identity ([`SealedWriterKey::import`]) and gets an [`IndexKey`] whose trapdoors are exactly
//! those of `IndexKey::for_patient(patient).for_writer(hospital)`.
//!
//! The same enrolment carries the patient's [`ConsentTagKey`] ([`SealedWriterKey::import_tag_key`]),
//! with which the hospital blinds the codes of the records it writes for the patient
//! (`access::record_class`), so that validators can match them against the patient's blinded
//! consent codes. Unlike the writer key it is one key per patient, the same at every hospital:
//! a consent's tag must equal the tag of the same code in a record, whoever wrote it.
//!
//! ```text
//! SealedWriterKey = 0x02 | chain [32] | patient: PublicIdentity [64] | writer: PublicIdentity [64]
//!                 | envelope: KeyEnvelope [112] | tag_envelope: KeyEnvelope [112]
//!                 | signature [64]                                                  (449 bytes)
//! envelope     = KeyEnvelope of K_writer for writer.agree, context =
//!                u8 len || "medchain/v1/writer-index-key" || chain || patient || writer
//! tag_envelope = KeyEnvelope of the consent tag key for writer.agree, context =
//!                u8 len || "medchain/v1/consent-tag-key-wrap" || chain || patient || writer
//! signature    = patient's ed25519 over WRITER_KEY_SIG, chain, and every byte before it
//! ```
//!
//! The envelope's context binds the key to its network, its patient, its writer and its
//! purpose (the label), so an envelope moved into another enrolment does not open; the
//! patient's signature tells the writer the key really comes from that patient (key envelopes
//! alone do not authenticate their sender, `docs/crypto.md` §7). The sealed form holds no
//! clear secret: a hospital may store it as it is and open it again with its identity.
//!
//! What it does not prove: that the sealed key really is the patient's derived sub-key. A
//! patient who seals another key only hides their own records from their own searches.

use std::fmt;

use rand_core::{CryptoRng, Rng};
use thiserror::Error;

use super::keys::IndexKey;
use crate::consent::ConsentTagKey;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{domain, ChainId};
use crate::keys::{Identity, PublicIdentity, Signature, SignatureError};
use crate::seal::{KeyEnvelope, SealError};

/// Format version of [`SealedWriterKey`]. Version 2 carries the patient's consent tag key.
pub const SEALED_WRITER_KEY_VERSION: u8 = 2;

/// Encoded size of a [`SealedWriterKey`].
pub const SEALED_WRITER_KEY_LEN: usize = 1 + 32 + 64 + 64 + 2 * crate::seal::KEY_ENVELOPE_LEN + 64;

/// A sealed writer index key was refused, or could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WriterKeyError {
    /// The bytes are not a sealed writer key (truncated, trailing bytes, unknown version,
    /// invalid key, envelope not addressed to the writer).
    #[error("malformed sealed writer key: {0}")]
    Decode(#[from] DecodeError),
    /// It was sealed on another network.
    #[error("the writer key was sealed for another network")]
    WrongChain,
    /// It was sealed to another writer.
    #[error("the writer key was sealed to another writer")]
    WrongWriter,
    /// It names another patient than the one being enrolled.
    #[error("the writer key is another patient's")]
    WrongPatient,
    /// The patient's signature does not verify (forged or altered).
    #[error("the patient's signature on the writer key does not verify")]
    BadSignature,
    /// The key does not decrypt (altered, or moved from another enrolment).
    #[error("the writer key does not decrypt: altered or moved")]
    Decrypt,
    /// The writer's agreement key is low order: nothing can be sealed to it.
    #[error("the writer's agreement key is not usable for key agreement (non-contributory)")]
    NonContributory,
}

impl From<SignatureError> for WriterKeyError {
    fn from(_: SignatureError) -> Self {
        Self::BadSignature
    }
}

impl From<SealError> for WriterKeyError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NonContributory => Self::NonContributory,
            SealError::Decode(d) => Self::Decode(d),
            _ => Self::Decrypt,
        }
    }
}

/// A patient's index key for one writer, sealed to that writer and signed by the patient
/// (the enrolment of the patient at a hospital). Public: it holds the key only encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedWriterKey {
    chain: ChainId,
    patient: PublicIdentity,
    writer: PublicIdentity,
    envelope: KeyEnvelope,
    tag_envelope: KeyEnvelope,
    signature: Signature,
}

/// The key-wrap context: label, chain, patient, writer (fixed lengths after the label).
fn context(
    label: &str,
    chain: &ChainId,
    patient: &PublicIdentity,
    writer: &PublicIdentity,
) -> Vec<u8> {
    let label = label.as_bytes();
    let mut out = Vec::with_capacity(1 + label.len() + 32 + 128);
    out.put_u8(label.len() as u8);
    out.put_raw(label);
    chain.encode_to(&mut out);
    patient.encode_to(&mut out);
    writer.encode_to(&mut out);
    out
}

impl SealedWriterKey {
    /// The patient's side: seals `IndexKey::for_patient(patient).for_writer(writer.id())` to
    /// `writer` on the network `chain`, and signs it.
    ///
    /// # Errors
    /// [`WriterKeyError::NonContributory`] for a writer whose agreement key is low order.
    pub fn export<R: Rng + CryptoRng>(
        patient: &Identity,
        chain: &ChainId,
        writer: &PublicIdentity,
        rng: &mut R,
    ) -> Result<Self, WriterKeyError> {
        let key = IndexKey::for_patient(patient).for_writer(&writer.id());
        let tag_key = ConsentTagKey::for_patient(patient);
        let public = patient.public();
        let envelope = KeyEnvelope::wrap(
            key.secret(),
            &writer.agree,
            &context(domain::WRITER_KEY_WRAP, chain, &public, writer),
            rng,
        )?;
        let tag_envelope = KeyEnvelope::wrap(
            tag_key.secret(),
            &writer.agree,
            &context(domain::CONSENT_TAG_KEY_WRAP, chain, &public, writer),
            rng,
        )?;
        let mut sealed = Self {
            chain: *chain,
            patient: public,
            writer: *writer,
            envelope,
            tag_envelope,
            signature: Signature::from_byte_array([0; 64]),
        };
        sealed.signature = patient.sign(chain, domain::WRITER_KEY_SIG, &sealed.signed_bytes());
        Ok(sealed)
    }

    /// The writer's side: checks that this key was sealed on `chain`, to `writer`, by
    /// `patient` (their signature), and opens it. The key's trapdoors are those of
    /// `IndexKey::for_patient(patient).for_writer(writer.id())`.
    ///
    /// # Errors
    /// [`WriterKeyError::WrongChain`], [`WriterKeyError::WrongWriter`],
    /// [`WriterKeyError::WrongPatient`], [`WriterKeyError::BadSignature`] or
    /// [`WriterKeyError::Decrypt`], checked in that order.
    pub fn import(
        &self,
        writer: &Identity,
        chain: &ChainId,
        patient: &PublicIdentity,
    ) -> Result<IndexKey, WriterKeyError> {
        self.check_for(writer, chain, patient)?;
        let secret = self.envelope.unwrap(
            writer,
            &context(
                domain::WRITER_KEY_WRAP,
                &self.chain,
                &self.patient,
                &self.writer,
            ),
        )?;
        Ok(IndexKey::from_secret(secret))
    }

    /// The writer's side, for the patient's consent tag key: the same checks as
    /// [`SealedWriterKey::import`], then opens the tag key, equal to
    /// `ConsentTagKey::for_patient(patient)`. The writer blinds the codes of the records it
    /// writes for the patient with it (`access::record_class`).
    ///
    /// # Errors
    /// As [`SealedWriterKey::import`].
    pub fn import_tag_key(
        &self,
        writer: &Identity,
        chain: &ChainId,
        patient: &PublicIdentity,
    ) -> Result<ConsentTagKey, WriterKeyError> {
        self.check_for(writer, chain, patient)?;
        let secret = self.tag_envelope.unwrap(
            writer,
            &context(
                domain::CONSENT_TAG_KEY_WRAP,
                &self.chain,
                &self.patient,
                &self.writer,
            ),
        )?;
        Ok(ConsentTagKey::from_secret(secret))
    }

    fn check_for(
        &self,
        writer: &Identity,
        chain: &ChainId,
        patient: &PublicIdentity,
    ) -> Result<(), WriterKeyError> {
        if self.chain != *chain {
            return Err(WriterKeyError::WrongChain);
        }
        if self.writer != writer.public() {
            return Err(WriterKeyError::WrongWriter);
        }
        if self.patient != *patient {
            return Err(WriterKeyError::WrongPatient);
        }
        self.verify(chain)
    }

    /// Checks what anyone can check: that it was sealed on `chain` and signed by the patient
    /// it names. (An app or a node can inspect an enrolment without the writer's identity.)
    ///
    /// # Errors
    /// [`WriterKeyError::WrongChain`] or [`WriterKeyError::BadSignature`].
    pub fn verify(&self, chain: &ChainId) -> Result<(), WriterKeyError> {
        if self.chain != *chain {
            return Err(WriterKeyError::WrongChain);
        }
        self.patient.sign.verify(
            chain,
            domain::WRITER_KEY_SIG,
            &self.signed_bytes(),
            &self.signature,
        )?;
        Ok(())
    }

    /// The network it was sealed on.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    /// The patient who sealed it.
    pub fn patient(&self) -> &PublicIdentity {
        &self.patient
    }

    /// The writer it is sealed to.
    pub fn writer(&self) -> &PublicIdentity {
        &self.writer
    }

    /// Every byte of the encoding before the signature.
    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEALED_WRITER_KEY_LEN - 64);
        out.put_u8(SEALED_WRITER_KEY_VERSION);
        self.chain.encode_to(&mut out);
        self.patient.encode_to(&mut out);
        self.writer.encode_to(&mut out);
        self.envelope.encode_to(&mut out);
        self.tag_envelope.encode_to(&mut out);
        out
    }
}

impl fmt::Debug for SealedWriterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedWriterKey")
            .field("patient", &self.patient.id())
            .field("writer", &self.writer.id())
            .finish_non_exhaustive()
    }
}

impl Encode for SealedWriterKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.signed_bytes());
        self.signature.encode_to(out);
    }
}

impl Decode for SealedWriterKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("sealed writer key", SEALED_WRITER_KEY_VERSION)?;
        let chain = ChainId::decode_from(r)?;
        let patient = PublicIdentity::decode_from(r)?;
        let writer = PublicIdentity::decode_from(r)?;
        let envelope = KeyEnvelope::decode_from(r)?;
        let tag_envelope = KeyEnvelope::decode_from(r)?;
        if envelope.recipient != writer.agree || tag_envelope.recipient != writer.agree {
            return Err(DecodeError::InvalidValue {
                what: "sealed writer key",
                reason: "the envelope is not addressed to the writer",
            });
        }
        let signature = Signature::decode_from(r)?;
        Ok(Self {
            chain,
            patient,
            writer,
            envelope,
            tag_envelope,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::RecordId;
    use crate::index::{IndexEntry, Keyword};
    use crate::keys::AgreementKey;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    struct Parties {
        rng: ChaCha20Rng,
        chain: ChainId,
        patient: Identity,
        hospital: Identity,
    }

    fn parties() -> Parties {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let patient = Identity::generate(&mut rng);
        let hospital = Identity::generate(&mut rng);
        Parties {
            rng,
            chain: ChainId::from_byte_array([0xc4; 32]),
            patient,
            hospital,
        }
    }

    fn keywords() -> Vec<Keyword> {
        [
            "type:Observation",
            "code:http://loinc.org|4548-4",
            "date:2026",
            "date:2026-10",
        ]
        .iter()
        .map(|k| k.parse().unwrap())
        .collect()
    }

    fn sealed(p: &mut Parties) -> SealedWriterKey {
        SealedWriterKey::export(&p.patient, &p.chain, &p.hospital.public(), &mut p.rng).unwrap()
    }

    #[test]
    fn imported_key_makes_exactly_the_patients_writer_trapdoors() {
        let mut p = parties();
        let bytes = sealed(&mut p).to_bytes();
        assert_eq!(bytes.len(), SEALED_WRITER_KEY_LEN);
        let key = SealedWriterKey::from_bytes(&bytes)
            .unwrap()
            .import(&p.hospital, &p.chain, &p.patient.public())
            .unwrap();
        let expected = IndexKey::for_patient(&p.patient).for_writer(&p.hospital.id());
        let kws = keywords();
        assert_eq!(key.trapdoors(&kws), expected.trapdoors(&kws));
        assert_ne!(
            key.trapdoors(&kws),
            IndexKey::for_patient(&p.patient).trapdoors(&kws)
        );
        // An entry the hospital builds with it is found by the patient's own trapdoors.
        let record = RecordId::from_byte_array([9; 32]);
        let entry = IndexEntry::build(&record, &key.trapdoors(&kws), &mut p.rng).unwrap();
        for t in expected.trapdoors(&kws) {
            assert!(entry.matches(&record, &t));
        }
        // Sealing twice gives two different encodings of the same key.
        let again = sealed(&mut p);
        assert_ne!(again.to_bytes(), bytes);
        let key2 = again
            .import(&p.hospital, &p.chain, &p.patient.public())
            .unwrap();
        assert_eq!(key2.trapdoors(&kws), expected.trapdoors(&kws));
        assert_eq!(again.patient(), &p.patient.public());
        assert_eq!(again.writer(), &p.hospital.public());
        assert_eq!(again.chain(), p.chain);
        assert_eq!(again.verify(&p.chain), Ok(()));
    }

    #[test]
    fn sealed_to_another_hospital_is_refused() {
        let mut p = parties();
        let other = Identity::generate(&mut p.rng);
        let s = sealed(&mut p);
        assert_eq!(
            s.import(&other, &p.chain, &p.patient.public()).unwrap_err(),
            WriterKeyError::WrongWriter
        );
        // Re-addressing it to the other hospital (writer field and envelope recipient) breaks
        // the signature; and even re-signed it would not decrypt for the other hospital.
        let mut moved = s.clone();
        moved.writer = other.public();
        moved.envelope.recipient = other.public().agree;
        moved.tag_envelope.recipient = other.public().agree;
        let moved = SealedWriterKey::from_bytes(&moved.to_bytes()).unwrap();
        assert_eq!(
            moved
                .import(&other, &p.chain, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::BadSignature
        );
        let mut resigned = moved.clone();
        resigned.signature =
            p.patient
                .sign(&p.chain, domain::WRITER_KEY_SIG, &resigned.signed_bytes());
        assert_eq!(
            resigned
                .import(&other, &p.chain, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::Decrypt
        );
    }

    #[test]
    fn sealed_for_another_chain_is_refused() {
        let mut p = parties();
        let s = sealed(&mut p);
        let sibling = ChainId::from_byte_array([0x5b; 32]);
        assert_eq!(
            s.import(&p.hospital, &sibling, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::WrongChain
        );
        assert_eq!(s.verify(&sibling).unwrap_err(), WriterKeyError::WrongChain);
        // Relabelled to the sibling chain: the signature (bound to the chain) fails.
        let mut relabelled = s.clone();
        relabelled.chain = sibling;
        assert_eq!(
            relabelled
                .import(&p.hospital, &sibling, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::BadSignature
        );
        // Re-signed by the patient for the sibling chain, the envelope (bound to its chain)
        // still does not open there.
        relabelled.signature =
            p.patient
                .sign(&sibling, domain::WRITER_KEY_SIG, &relabelled.signed_bytes());
        assert_eq!(relabelled.verify(&sibling), Ok(()));
        assert_eq!(
            relabelled
                .import(&p.hospital, &sibling, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::Decrypt
        );
        // A wrong chain is named as such whatever else is wrong.
        let other = Identity::generate(&mut p.rng);
        assert_eq!(
            s.import(&other, &sibling, &p.patient.public()).unwrap_err(),
            WriterKeyError::WrongChain
        );
        assert_eq!(
            s.import(&p.hospital, &sibling, &other.public())
                .unwrap_err(),
            WriterKeyError::WrongChain
        );
    }

    #[test]
    fn another_patients_key_is_refused() {
        let mut p = parties();
        let mallory = Identity::generate(&mut p.rng);
        let alice = sealed(&mut p);
        // Mallory's own enrolment offered as Alice's.
        let hers =
            SealedWriterKey::export(&mallory, &p.chain, &p.hospital.public(), &mut p.rng).unwrap();
        assert_eq!(
            hers.import(&p.hospital, &p.chain, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::WrongPatient
        );
        // Mallory forges one in Alice's name (her key, her signature): the signature check.
        let mut forged = hers.clone();
        forged.patient = p.patient.public();
        forged.envelope = KeyEnvelope::wrap(
            IndexKey::for_patient(&mallory)
                .for_writer(&p.hospital.id())
                .secret(),
            &p.hospital.public().agree,
            &context(
                domain::WRITER_KEY_WRAP,
                &p.chain,
                &p.patient.public(),
                &p.hospital.public(),
            ),
            &mut p.rng,
        )
        .unwrap();
        forged.signature = mallory.sign(&p.chain, domain::WRITER_KEY_SIG, &forged.signed_bytes());
        assert_eq!(
            forged
                .import(&p.hospital, &p.chain, &p.patient.public())
                .unwrap_err(),
            WriterKeyError::BadSignature
        );
        assert_eq!(
            forged.verify(&p.chain).unwrap_err(),
            WriterKeyError::BadSignature
        );
        // Mallory takes Alice's envelope and signs it as her own: it does not open (the
        // envelope is bound to Alice).
        let mut stolen = alice.clone();
        stolen.patient = mallory.public();
        stolen.signature = mallory.sign(&p.chain, domain::WRITER_KEY_SIG, &stolen.signed_bytes());
        assert_eq!(
            stolen
                .import(&p.hospital, &p.chain, &mallory.public())
                .unwrap_err(),
            WriterKeyError::Decrypt
        );
    }

    #[test]
    fn tampered_truncated_and_extended_bytes_are_refused() {
        let mut p = parties();
        let bytes = sealed(&mut p).to_bytes();
        let patient = p.patient.public();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = bytes.clone();
                t[i] ^= bit;
                let outcome = SealedWriterKey::from_bytes(&t)
                    .map_err(WriterKeyError::from)
                    .and_then(|s| {
                        s.import(&p.hospital, &p.chain, &patient)?;
                        s.import_tag_key(&p.hospital, &p.chain, &patient)
                            .map(|_| ())
                    });
                assert!(
                    outcome.is_err(),
                    "flip of bit {bit:#x} at byte {i} accepted"
                );
            }
        }
        for cut in 0..bytes.len() {
            assert!(matches!(
                SealedWriterKey::from_bytes(&bytes[..cut]),
                Err(DecodeError::UnexpectedEnd { .. })
            ));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SealedWriterKey::from_bytes(&longer).unwrap_err(),
            DecodeError::TrailingBytes { count: 1 }
        );
        // An altered ciphertext (signature made again) does not decrypt.
        let mut s = SealedWriterKey::from_bytes(&bytes).unwrap();
        s.envelope.wrapped[0] ^= 1;
        s.signature = p
            .patient
            .sign(&p.chain, domain::WRITER_KEY_SIG, &s.signed_bytes());
        assert_eq!(
            s.import(&p.hospital, &p.chain, &patient).unwrap_err(),
            WriterKeyError::Decrypt
        );
    }

    #[test]
    fn unknown_versions_and_misaddressed_envelopes_are_decode_errors() {
        let mut p = parties();
        let bytes = sealed(&mut p).to_bytes();
        for v in [0u8, 1, 3, 0xff] {
            let mut t = bytes.clone();
            t[0] = v;
            let err = WriterKeyError::from(SealedWriterKey::from_bytes(&t).unwrap_err());
            assert_eq!(
                err,
                WriterKeyError::Decode(DecodeError::UnknownVersion {
                    what: "sealed writer key",
                    found: v
                })
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "malformed sealed writer key: sealed writer key: unknown format version {v}"
                )
            );
        }
        // The envelope's recipient must be the writer's agreement key (offset 1+32+64+64+32).
        let mut t = bytes.clone();
        t[1 + 32 + 64 + 64] ^= 1;
        assert!(matches!(
            SealedWriterKey::from_bytes(&t),
            Err(DecodeError::InvalidValue { .. })
        ));
    }

    #[test]
    fn the_tag_key_is_the_patients_and_stays_in_its_envelope() {
        let mut p = parties();
        let s = sealed(&mut p);
        let patient = p.patient.public();
        let key = s.import_tag_key(&p.hospital, &p.chain, &patient).unwrap();
        let own = ConsentTagKey::for_patient(&p.patient);
        let icd = "http://hl7.org/fhir/sid/icd-10";
        assert_eq!(key.tag(icd, "F20.9"), own.tag(icd, "F20.9"));
        // The same key at every hospital: a consent's tags match whoever wrote the record.
        let clinic = Identity::generate(&mut p.rng);
        let at_clinic = SealedWriterKey::export(&p.patient, &p.chain, &clinic.public(), &mut p.rng)
            .unwrap()
            .import_tag_key(&clinic, &p.chain, &patient)
            .unwrap();
        assert_eq!(at_clinic.tag(icd, "F20.9"), own.tag(icd, "F20.9"));
        // The two envelopes are bound to their purposes: swapped (and signed again by the
        // patient), neither opens.
        let mut swapped = s.clone();
        std::mem::swap(&mut swapped.envelope, &mut swapped.tag_envelope);
        swapped.signature =
            p.patient
                .sign(&p.chain, domain::WRITER_KEY_SIG, &swapped.signed_bytes());
        assert_eq!(
            swapped
                .import_tag_key(&p.hospital, &p.chain, &patient)
                .unwrap_err(),
            WriterKeyError::Decrypt
        );
        assert_eq!(
            swapped.import(&p.hospital, &p.chain, &patient).unwrap_err(),
            WriterKeyError::Decrypt
        );
        // Another hospital cannot take it out.
        assert_eq!(
            s.import_tag_key(&clinic, &p.chain, &patient).unwrap_err(),
            WriterKeyError::WrongWriter
        );
    }

    #[test]
    fn a_low_order_writer_key_is_refused_at_export() {
        let mut p = parties();
        let mut writer = p.hospital.public();
        writer.agree = AgreementKey::from_byte_array([0; 32]);
        assert_eq!(
            SealedWriterKey::export(&p.patient, &p.chain, &writer, &mut p.rng).unwrap_err(),
            WriterKeyError::NonContributory
        );
    }

    #[test]
    fn debug_and_errors_show_no_secret() {
        let mut p = parties();
        let s = sealed(&mut p);
        let dbg = format!("{s:?}");
        assert_eq!(
            dbg,
            format!(
                "SealedWriterKey {{ patient: {:?}, writer: {:?}, .. }}",
                p.patient.id(),
                p.hospital.id()
            )
        );
        assert!(!dbg.contains(&hex::encode(s.envelope.wrapped)));
        let key = s
            .import(&p.hospital, &p.chain, &p.patient.public())
            .unwrap();
        assert_eq!(format!("{key:?}"), "IndexKey(..)");
        let messages = [
            (
                WriterKeyError::WrongChain,
                "the writer key was sealed for another network",
            ),
            (
                WriterKeyError::WrongWriter,
                "the writer key was sealed to another writer",
            ),
            (
                WriterKeyError::WrongPatient,
                "the writer key is another patient's",
            ),
            (
                WriterKeyError::BadSignature,
                "the patient's signature on the writer key does not verify",
            ),
            (
                WriterKeyError::Decrypt,
                "the writer key does not decrypt: altered or moved",
            ),
            (
                WriterKeyError::NonContributory,
                "the writer's agreement key is not usable for key agreement (non-contributory)",
            ),
        ];
        for (e, m) in messages {
            assert_eq!(e.to_string(), m);
        }
    }
}
