//! Sealed records, key envelopes and the network-shared key.
//!
//! * A record (a FHIR R4 resource) is encrypted with AES-256-GCM under a fresh 32-byte data key
//!   that is used for that record only. Its associated data binds the ciphertext to the format
//!   version, the record id, the patient's public identity and the payload commitment.
//! * The plaintext is `salt (32 bytes) || payload`; the on-chain commitment is
//!   `tagged_hash("medchain/v1/payload-commitment", salt || payload)`, so nobody without the
//!   record can confirm a guessed payload, and opening checks it.
//! * The data key is wrapped for each reader in a [`KeyEnvelope`]: ephemeral–static X25519,
//!   HKDF-SHA256 and AES-256-GCM, as in HPKE base mode. Non-contributory shared secrets (a
//!   low-order reader key) are refused on both sides.
//! * The writing institution's own envelope can instead be a **self envelope**
//!   ([`seal_record_as`]): the same key schedule with a secret only the writer derives from its
//!   identity in place of the X25519 shared secret, so the holder of a record opens it (to read
//!   it, release its key or export it for research) without an X25519 operation.
//! * A [`NetworkKey`] encrypts what every node of the network may read (the paper's
//!   "network-shared key"): each message gets its own key, `HKDF(network key, 32-byte random
//!   nonce)`, so there is no nonce-reuse or birthday bound on the number of messages.
//!
//! See `docs/crypto.md` for why each construction is safe.

use std::fmt;

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use rand_core::{CryptoRng, Rng};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::fhir::{self, FhirError};
use crate::hash::{domain, tagged_hash, tagged_hash_parts, PayloadCommitment, RecordId};
use crate::keys::{AgreementKey, Identity, PublicIdentity};

/// Format version of [`SealedRecord`]. Version 2: the payload is padded to a size bucket
/// ([`padded_len`] with [`RECORD_PAD_FLOOR`]) inside the encryption.
pub const SEALED_RECORD_VERSION: u8 = 2;

/// The smallest padded record: every record of up to this many bytes (less 4) has one length.
pub const RECORD_PAD_FLOOR: usize = 4096;

/// Largest sealed ciphertext accepted (the FHIR limit, padded, plus salt and tag).
pub const MAX_CIPHERTEXT: usize =
    padded_len(fhir::MAX_RESOURCE_BYTES + 4, RECORD_PAD_FLOOR) + SALT_LEN + TAG_LEN;

/// The padded length of a message of `len` bytes: `floor` for anything up to `floor`, and above
/// it Padmé (Nikitin et al., "Reducing metadata leakage from encrypted files and communication
/// with PURBs", PETS 2019): with `E = ⌊log₂ L⌋` and `S = ⌊log₂ E⌋ + 1`, `L` rounded up to a
/// multiple of `2^(E−S)`. The overhead above the floor is at most 12% (6.25% from 4 KiB up), and
/// a padded length tells at most `O(log log L)` bits about the length. `floor` must be a power
/// of two (then the padded lengths are exactly the fixed points of this function).
pub const fn padded_len(len: usize, floor: usize) -> usize {
    if len <= floor {
        return floor;
    }
    let e = usize::BITS - 1 - len.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let mask = (1usize << (e - s)) - 1;
    (len + mask) & !mask
}

/// Pads `content` to a size bucket: `u32 len || content || zeros`, `padded_len(4 + len, floor)`
/// bytes in all. Zeroized on drop (it may hold a record).
pub fn pad(content: &[u8], floor: usize) -> Zeroizing<Vec<u8>> {
    let total = padded_len(4 + content.len(), floor);
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.put_u32(content.len() as u32);
    out.extend_from_slice(content);
    out.resize(total, 0);
    out
}

/// The content of a [`pad`]ded message, checking that it is canonical: its length is the
/// padded length of its content, and the padding is zeros.
///
/// # Errors
/// [`DecodeError::NonCanonical`] for any other padding, [`DecodeError::UnexpectedEnd`] for a
/// length prefix beyond the message.
pub fn unpad<'a>(
    padded: &'a [u8],
    floor: usize,
    what: &'static str,
) -> Result<&'a [u8], DecodeError> {
    let mut r = Reader::new(padded);
    let len = r.u32()? as usize;
    if len > padded.len() - 4 {
        return Err(DecodeError::UnexpectedEnd {
            needed: len,
            remaining: padded.len() - 4,
        });
    }
    let (content, padding) = padded[4..].split_at(len);
    if padded.len() != padded_len(4 + len, floor) || padding.iter().any(|&b| b != 0) {
        return Err(DecodeError::NonCanonical { what });
    }
    Ok(content)
}

/// Most key envelopes one record or message may carry.
pub const MAX_ENVELOPES: usize = 64;

const SALT_LEN: usize = 32;
const TAG_LEN: usize = 16;
const ZERO_NONCE: [u8; 12] = [0u8; 12];

/// Sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The payload is not a FHIR R4 resource.
    #[error(transparent)]
    NotFhir(#[from] FhirError),
    /// A reader's agreement key is low order: the shared secret would be predictable.
    #[error("reader key is not usable for key agreement (non-contributory)")]
    NonContributory,
    /// No envelope in the record is addressed to this identity.
    #[error("this identity holds no key envelope for the record")]
    NoEnvelope,
    /// The envelope or ciphertext does not decrypt: wrong key, or altered bytes.
    #[error("decryption failed: wrong key or tampered ciphertext")]
    Decrypt,
    /// The decrypted payload does not match the on-chain commitment.
    #[error("payload does not match its commitment")]
    CommitmentMismatch,
    /// Too many readers.
    #[error("too many readers: {count}, at most {MAX_ENVELOPES}")]
    TooManyReaders {
        /// Readers asked for.
        count: usize,
    },
    /// A malformed encoding.
    #[error("malformed sealed data: {0}")]
    Decode(#[from] DecodeError),
}

/// A 32-byte symmetric key used for exactly one record. Zeroized on drop.
struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *k);
        Self(k)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.0).into())
    }
}

/// A data key wrapped for one reader (ephemeral–static X25519 + HKDF-SHA256 + AES-256-GCM), or
/// a writer's self envelope ([`KeyEnvelope::is_self`]).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEnvelope {
    /// The reader's agreement key.
    pub recipient: AgreementKey,
    /// The sender's ephemeral X25519 public key (canonical, so bit 255 is clear); in a self
    /// envelope, a random salt with bit 255 set ([`SELF_ENVELOPE_MARK`]).
    pub ephemeral: [u8; 32],
    /// The wrapped 32-byte key and its 16-byte tag.
    pub wrapped: [u8; 48],
}

impl fmt::Debug for KeyEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEnvelope")
            .field("recipient", &self.recipient)
            .finish_non_exhaustive()
    }
}

impl Encode for KeyEnvelope {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.recipient.encode_to(out);
        out.put_raw(&self.ephemeral);
        out.put_raw(&self.wrapped);
    }
}

impl Decode for KeyEnvelope {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            recipient: AgreementKey::decode_from(r)?,
            ephemeral: r.array()?,
            wrapped: r.array()?,
        })
    }
}

/// Encoded size of a [`KeyEnvelope`].
pub const KEY_ENVELOPE_LEN: usize = 32 + 32 + 48;

fn wrap_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 32],
    recipient: &[u8; 32],
    context: &[u8],
) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(ephemeral), shared);
    let mut okm = Zeroizing::new([0u8; 32]);
    let label = domain::KEY_WRAP.as_bytes();
    hk.expand_multi_info(
        &[&[label.len() as u8], label, recipient, context],
        &mut *okm,
    )
    .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    Aes256Gcm::new((&*okm).into())
}

/// Bit 255 of an envelope's `ephemeral` field (the top bit of its last byte) marks a self
/// envelope. The X25519 public key an ephemeral–static wrap puts there is a canonical field
/// element, below 2^255 − 19, so the bit is clear in every ephemeral–static envelope.
pub const SELF_ENVELOPE_MARK: u8 = 0x80;

impl KeyEnvelope {
    /// Whether this is a self envelope: made by the reader for itself, opened without X25519.
    pub fn is_self(&self) -> bool {
        self.ephemeral[31] & SELF_ENVELOPE_MARK != 0
    }

    /// Wraps `secret` for `writer` itself, bound to `context`: a random 32-byte salt with
    /// bit 255 set takes the ephemeral key's place, and `writer.derive_secret(SELF_WRAP)` the
    /// shared secret's, in the same key schedule as [`KeyEnvelope::wrap`]. Only the writer's
    /// identity derives that secret, and a fresh salt gives each envelope its own key.
    pub(crate) fn wrap_for_self<R: Rng + CryptoRng>(
        secret: &[u8; 32],
        writer: &Identity,
        context: &[u8],
        rng: &mut R,
    ) -> Result<Self, SealError> {
        let mut salt = [0u8; 32];
        rng.fill_bytes(&mut salt);
        salt[31] |= SELF_ENVELOPE_MARK;
        let recipient = writer.public().agree;
        let shared = writer.derive_secret(domain::SELF_WRAP, &[]);
        Self::seal_secret(secret, &shared, salt, recipient, context)
    }

    /// The last step of both wraps: `wrap_key` from the shared secret, then AES-256-GCM.
    fn seal_secret(
        secret: &[u8; 32],
        shared: &[u8; 32],
        ephemeral: [u8; 32],
        recipient: AgreementKey,
        context: &[u8],
    ) -> Result<Self, SealError> {
        let cipher = wrap_key(shared, &ephemeral, recipient.as_byte_array(), context);
        let ct = cipher
            .encrypt(
                (&ZERO_NONCE).into(),
                Payload {
                    msg: secret,
                    aad: context,
                },
            )
            .map_err(|_| SealError::Decrypt)?;
        let mut wrapped = [0u8; 48];
        wrapped.copy_from_slice(&ct);
        Ok(Self {
            recipient,
            ephemeral,
            wrapped,
        })
    }

    /// Wraps `secret` for `recipient`, bound to `context` (a record id, or a label for other
    /// secrets such as the network key).
    ///
    /// # Errors
    /// [`SealError::NonContributory`] for a low-order recipient key.
    pub(crate) fn wrap<R: Rng + CryptoRng>(
        secret: &[u8; 32],
        recipient: &AgreementKey,
        context: &[u8],
        rng: &mut R,
    ) -> Result<Self, SealError> {
        let eph = StaticSecret::random_from_rng(&mut *rng);
        let ephemeral = XPublicKey::from(&eph).to_bytes();
        let shared = eph.diffie_hellman(&XPublicKey::from(recipient.to_byte_array()));
        if !shared.was_contributory() {
            return Err(SealError::NonContributory);
        }
        Self::seal_secret(secret, shared.as_bytes(), ephemeral, *recipient, context)
    }

    /// Unwraps the secret with the recipient's identity: a self envelope with the secret the
    /// identity derives, any other with X25519.
    pub(crate) fn unwrap(
        &self,
        identity: &Identity,
        context: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, SealError> {
        if identity.public().agree != self.recipient {
            return Err(SealError::NoEnvelope);
        }
        let shared = if self.is_self() {
            identity.derive_secret(domain::SELF_WRAP, &[])
        } else {
            identity
                .agree(&AgreementKey::from_byte_array(self.ephemeral))
                .ok_or(SealError::NonContributory)?
        };
        let cipher = wrap_key(
            &shared,
            &self.ephemeral,
            self.recipient.as_byte_array(),
            context,
        );
        let pt = Zeroizing::new(
            cipher
                .decrypt(
                    (&ZERO_NONCE).into(),
                    Payload {
                        msg: &self.wrapped,
                        aad: context,
                    },
                )
                .map_err(|_| SealError::Decrypt)?,
        );
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&pt);
        Ok(out)
    }
}

/// An encrypted FHIR record with its commitment and the key envelopes of its readers.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord {
    record_id: RecordId,
    patient: PublicIdentity,
    commitment: PayloadCommitment,
    nonce: [u8; 12],
    ciphertext: Vec<u8>,
    envelopes: Vec<KeyEnvelope>,
}

impl fmt::Debug for SealedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("record_id", &self.record_id)
            .field("patient", &self.patient)
            .field("ciphertext_len", &self.ciphertext.len())
            .field("envelopes", &self.envelopes.len())
            .finish_non_exhaustive()
    }
}

/// A record opened by one of its readers. Zeroizes its plaintext on drop; `Debug` hides it.
pub struct OpenedRecord {
    /// `salt || u32 len || payload || zero padding`, checked.
    plaintext: Zeroizing<Vec<u8>>,
    len: usize,
}

impl OpenedRecord {
    /// The FHIR JSON payload.
    pub fn payload(&self) -> &[u8] {
        &self.plaintext[SALT_LEN + 4..SALT_LEN + 4 + self.len]
    }

    /// The payload parsed as a FHIR resource.
    ///
    /// # Errors
    /// A [`FhirError`] if the payload does not parse (it was checked when sealed, so this means
    /// the sealer used another implementation).
    pub fn resource(&self) -> Result<fhir::Resource, FhirError> {
        fhir::parse_resource(self.payload())
    }
}

impl fmt::Debug for OpenedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedRecord")
            .field("len", &self.payload().len())
            .finish_non_exhaustive()
    }
}

fn commitment(salt: &[u8], payload: &[u8]) -> PayloadCommitment {
    PayloadCommitment::from_byte_array(tagged_hash_parts(
        domain::PAYLOAD_COMMITMENT,
        &[salt, payload],
    ))
}

fn record_aad(
    record_id: &RecordId,
    patient: &PublicIdentity,
    commitment: &PayloadCommitment,
) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + 1 + 32 + 64 + 32);
    aad.put_raw(domain::RECORD_AAD.as_bytes());
    aad.put_u8(SEALED_RECORD_VERSION);
    record_id.encode_to(&mut aad);
    patient.encode_to(&mut aad);
    commitment.encode_to(&mut aad);
    aad
}

/// Seals a FHIR R4 resource for its patient and the given extra readers (for example the
/// contributing institution).
///
/// This checks only that the payload is a JSON object naming an R4 resource type. Writers seal
/// through `medchain_fhir::seal_validated`, which first validates the resource against the
/// network's FHIR profile and seals nothing invalid (`docs/fhir.md`).
///
/// # Errors
/// [`SealError::NotFhir`] if the payload is not a FHIR R4 resource,
/// [`SealError::NonContributory`] for an unusable reader key, [`SealError::TooManyReaders`].
pub fn seal_record<R: Rng + CryptoRng>(
    payload: &[u8],
    patient: &PublicIdentity,
    readers: &[PublicIdentity],
    rng: &mut R,
) -> Result<SealedRecord, SealError> {
    seal(payload, patient, readers, None, rng)
}

/// Seals a record as [`seal_record`] does, written by `writer` (the contributing institution),
/// which is a reader whether or not `readers` names it (appended last unless the patient or a
/// reader already has its agreement key). Its own envelope is a self envelope
/// ([`KeyEnvelope::is_self`]): the writer opens the record with a key derivation and two AES-GCM
/// decryptions, where an ephemeral–static envelope adds an X25519 operation (the research bench
/// opens a small record in about 7 µs through a self envelope, 60 µs through an X25519 one).
/// Every other reader's envelope, the patient's first, is ephemeral–static as in
/// [`seal_record`]; the encoding is the same.
///
/// # Errors
/// As [`seal_record`].
pub fn seal_record_as<R: Rng + CryptoRng>(
    writer: &Identity,
    payload: &[u8],
    patient: &PublicIdentity,
    readers: &[PublicIdentity],
    rng: &mut R,
) -> Result<SealedRecord, SealError> {
    let me = writer.public();
    if patient.agree == me.agree || readers.iter().any(|r| r.agree == me.agree) {
        seal(payload, patient, readers, Some(writer), rng)
    } else {
        let mut all = readers.to_vec();
        all.push(me);
        seal(payload, patient, &all, Some(writer), rng)
    }
}

/// [`seal_record`], with `writer`'s own envelope a self envelope when it is given.
fn seal<R: Rng + CryptoRng>(
    payload: &[u8],
    patient: &PublicIdentity,
    readers: &[PublicIdentity],
    writer: Option<&Identity>,
    rng: &mut R,
) -> Result<SealedRecord, SealError> {
    fhir::check_resource(payload)?;
    if readers.len() + 1 > MAX_ENVELOPES {
        return Err(SealError::TooManyReaders {
            count: readers.len() + 1,
        });
    }
    let mut id = [0u8; 32];
    rng.fill_bytes(&mut id);
    let record_id = RecordId::from_byte_array(id);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let key = DataKey::generate(rng);

    // Encrypted in place: one buffer (with room for the tag) goes from plaintext to ciphertext,
    // so there is no second copy of the payload and nothing left to zeroize afterwards. The
    // payload is padded to its size bucket inside the encryption, so the ciphertext's length
    // tells only the bucket.
    let padded = padded_len(4 + payload.len(), RECORD_PAD_FLOOR);
    let mut buf = Zeroizing::new(Vec::with_capacity(SALT_LEN + padded + TAG_LEN));
    buf.resize(SALT_LEN, 0);
    rng.fill_bytes(&mut buf[..SALT_LEN]);
    buf.put_u32(payload.len() as u32);
    buf.extend_from_slice(payload);
    buf.resize(SALT_LEN + padded, 0);
    let commitment = commitment(&buf[..SALT_LEN], payload);
    let aad = record_aad(&record_id, patient, &commitment);
    key.cipher()
        .encrypt_in_place((&nonce).into(), &aad, &mut *buf)
        .map_err(|_| SealError::Decrypt)?;
    let ciphertext = std::mem::take(&mut *buf);

    let mut envelopes = Vec::with_capacity(readers.len() + 1);
    for reader in std::iter::once(patient).chain(readers) {
        if envelopes
            .iter()
            .any(|e: &KeyEnvelope| e.recipient == reader.agree)
        {
            continue;
        }
        envelopes.push(match writer {
            Some(w) if w.public().agree == reader.agree => {
                KeyEnvelope::wrap_for_self(&key.0, w, &id, rng)?
            }
            _ => KeyEnvelope::wrap(&key.0, &reader.agree, &id, rng)?,
        });
    }
    Ok(SealedRecord {
        record_id,
        patient: *patient,
        commitment,
        nonce,
        ciphertext,
        envelopes,
    })
}

impl SealedRecord {
    /// The record's id.
    pub fn record_id(&self) -> RecordId {
        self.record_id
    }

    /// The patient the record belongs to.
    pub fn patient(&self) -> &PublicIdentity {
        &self.patient
    }

    /// The payload commitment that goes on chain.
    pub fn commitment(&self) -> PayloadCommitment {
        self.commitment
    }

    /// The key envelopes.
    pub fn envelopes(&self) -> &[KeyEnvelope] {
        &self.envelopes
    }

    /// Size of the ciphertext (the padded payload + 32-byte salt + 16-byte tag).
    pub fn ciphertext_len(&self) -> usize {
        self.ciphertext.len()
    }

    fn data_key(&self, identity: &Identity, extra: &[KeyEnvelope]) -> Result<DataKey, SealError> {
        let mine = identity.public().agree;
        let envelope = self
            .envelopes
            .iter()
            .chain(extra)
            .find(|e| e.recipient == mine)
            .ok_or(SealError::NoEnvelope)?;
        envelope
            .unwrap(identity, self.record_id.as_byte_array())
            .map(DataKey)
    }

    /// Opens the record with a reader's identity and checks the payload commitment.
    ///
    /// # Errors
    /// [`SealError::NoEnvelope`] if the identity is not a reader, [`SealError::Decrypt`] for a
    /// wrong key or altered bytes, [`SealError::CommitmentMismatch`] if the payload does not
    /// match the commitment.
    pub fn open(&self, identity: &Identity) -> Result<OpenedRecord, SealError> {
        self.open_with(identity, &[])
    }

    /// As [`SealedRecord::open`], also looking in `extra` envelopes (shared later, in `KeyShared`
    /// transactions).
    ///
    /// # Errors
    /// As [`SealedRecord::open`].
    pub fn open_with(
        &self,
        identity: &Identity,
        extra: &[KeyEnvelope],
    ) -> Result<OpenedRecord, SealError> {
        let key = self.data_key(identity, extra)?;
        let aad = record_aad(&self.record_id, &self.patient, &self.commitment);
        let plaintext = Zeroizing::new(
            key.cipher()
                .decrypt(
                    (&self.nonce).into(),
                    Payload {
                        msg: &self.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::Decrypt)?,
        );
        if plaintext.len() < SALT_LEN {
            return Err(SealError::Decrypt);
        }
        let len = unpad(&plaintext[SALT_LEN..], RECORD_PAD_FLOOR, "record padding")?.len();
        let expected = commitment(
            &plaintext[..SALT_LEN],
            &plaintext[SALT_LEN + 4..SALT_LEN + 4 + len],
        );
        if !bool::from(
            expected
                .as_byte_array()
                .ct_eq(self.commitment.as_byte_array()),
        ) {
            return Err(SealError::CommitmentMismatch);
        }
        Ok(OpenedRecord { plaintext, len })
    }

    /// Re-wraps the record's data key for a new reader. `holder` must already be a reader (the
    /// patient's wallet, or the originating institution acting under a consent).
    ///
    /// # Errors
    /// As [`SealedRecord::open`] for the holder, and [`SealError::NonContributory`] for an
    /// unusable reader key.
    pub fn share_with<R: Rng + CryptoRng>(
        &self,
        holder: &Identity,
        reader: &PublicIdentity,
        rng: &mut R,
    ) -> Result<KeyEnvelope, SealError> {
        let key = self.data_key(holder, &[])?;
        KeyEnvelope::wrap(&key.0, &reader.agree, self.record_id.as_byte_array(), rng)
    }
}

impl Encode for SealedRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(SEALED_RECORD_VERSION);
        self.record_id.encode_to(out);
        self.patient.encode_to(out);
        self.commitment.encode_to(out);
        out.put_raw(&self.nonce);
        out.put_bytes(&self.ciphertext);
        out.put_list(&self.envelopes);
    }
}

impl Decode for SealedRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("sealed record", SEALED_RECORD_VERSION)?;
        let record_id = RecordId::decode_from(r)?;
        let patient = PublicIdentity::decode_from(r)?;
        let commitment = PayloadCommitment::decode_from(r)?;
        let nonce = r.array()?;
        let ciphertext = r.bytes("record ciphertext", MAX_CIPHERTEXT)?;
        if ciphertext.len() < SALT_LEN + RECORD_PAD_FLOOR + TAG_LEN {
            return Err(DecodeError::InvalidValue {
                what: "record ciphertext",
                reason: "shorter than salt, smallest padded payload and tag",
            });
        }
        let padded = ciphertext.len() - SALT_LEN - TAG_LEN;
        if padded_len(padded, RECORD_PAD_FLOOR) != padded {
            return Err(DecodeError::NonCanonical {
                what: "record ciphertext length (not a padding bucket)",
            });
        }
        let envelopes: Vec<KeyEnvelope> =
            r.list("key envelopes", MAX_ENVELOPES, KEY_ENVELOPE_LEN)?;
        if envelopes.is_empty() {
            return Err(DecodeError::InvalidValue {
                what: "key envelopes",
                reason: "a record needs at least the patient's envelope",
            });
        }
        Ok(Self {
            record_id,
            patient,
            commitment,
            nonce,
            ciphertext: ciphertext.to_vec(),
            envelopes,
        })
    }
}

/// The network-shared key: encrypts what every node of the network may read. Zeroized on drop.
pub struct NetworkKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for NetworkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NetworkKey(fingerprint {})",
            hex::encode(&self.fingerprint()[..8])
        )
    }
}

/// The context a network key is wrapped under.
const NETWORK_KEY_CONTEXT: &[u8] = b"medchain/v1/network-key";

impl NetworkKey {
    /// A fresh random network key.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *k);
        Self(k)
    }

    /// An explicit copy of this key, for the rare owner that must hold two (a host handing one
    /// to its node and one to its ledger). Both copies zeroize on drop; nothing goes through a
    /// wrapping or a password.
    pub fn duplicate(&self) -> Self {
        Self(Zeroizing::new(*self.0))
    }

    /// The key's public fingerprint (recorded in genesis).
    pub fn fingerprint(&self) -> [u8; 32] {
        tagged_hash(domain::NETWORK_KEY_FINGERPRINT, &*self.0)
    }

    fn message_cipher(&self, nonce: &[u8; 32]) -> Aes256Gcm {
        let hk = Hkdf::<Sha256>::new(Some(nonce), &*self.0);
        let mut okm = Zeroizing::new([0u8; 32]);
        let label = domain::NETWORK_SEAL.as_bytes();
        hk.expand_multi_info(&[&[label.len() as u8], label], &mut *okm)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
        Aes256Gcm::new((&*okm).into())
    }

    /// Encrypts `plaintext` for every holder of the network key, bound to `aad`.
    pub fn seal<R: Rng + CryptoRng>(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        rng: &mut R,
    ) -> NetworkSealed {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let ciphertext = self
            .message_cipher(&nonce)
            .encrypt(
                (&ZERO_NONCE).into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_else(|_| unreachable!("AES-GCM encryption of < 64 GiB cannot fail"));
        NetworkSealed { nonce, ciphertext }
    }

    /// Decrypts a [`NetworkSealed`] message bound to `aad`.
    ///
    /// # Errors
    /// [`SealError::Decrypt`] for another key, another `aad` or altered bytes.
    pub fn open(
        &self,
        sealed: &NetworkSealed,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.message_cipher(&sealed.nonce)
            .decrypt(
                (&ZERO_NONCE).into(),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Decrypt)
    }

    /// Wraps the network key for a node joining the network.
    ///
    /// # Errors
    /// [`SealError::NonContributory`] for an unusable node key.
    pub fn wrap_for<R: Rng + CryptoRng>(
        &self,
        node: &PublicIdentity,
        rng: &mut R,
    ) -> Result<KeyEnvelope, SealError> {
        KeyEnvelope::wrap(&self.0, &node.agree, NETWORK_KEY_CONTEXT, rng)
    }

    /// Encrypts the network key under a password (Argon2id + AES-256-GCM, the identity-backup
    /// format with its own label), for an operator's key file.
    ///
    /// # Errors
    /// [`crate::keys::BackupError::UnsupportedParams`] for cost parameters out of range.
    pub fn export_protected<R: Rng + CryptoRng>(
        &self,
        password: &[u8],
        params: crate::keys::BackupParams,
        rng: &mut R,
    ) -> Result<Vec<u8>, crate::keys::BackupError> {
        crate::keys::password_seal(
            &*self.0,
            domain::NETWORK_KEY_BACKUP_AAD,
            password,
            params,
            rng,
        )
    }

    /// Opens [`NetworkKey::export_protected`] output.
    ///
    /// # Errors
    /// [`crate::keys::BackupError::WrongPasswordOrDamaged`], or a malformed-file error.
    pub fn import_protected(
        bytes: &[u8],
        password: &[u8],
    ) -> Result<Self, crate::keys::BackupError> {
        let secret =
            crate::keys::password_open(bytes, domain::NETWORK_KEY_BACKUP_AAD, 32, password)?;
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&secret);
        Ok(Self(k))
    }

    /// Unwraps a network key sent to `node` with [`NetworkKey::wrap_for`].
    ///
    /// # Errors
    /// [`SealError::NoEnvelope`] if the envelope is for someone else, [`SealError::Decrypt`]
    /// if it does not decrypt.
    pub fn unwrap_from(envelope: &KeyEnvelope, node: &Identity) -> Result<Self, SealError> {
        envelope.unwrap(node, NETWORK_KEY_CONTEXT).map(Self)
    }
}

/// A message encrypted under the [`NetworkKey`].
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSealed {
    nonce: [u8; 32],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for NetworkSealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkSealed")
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl NetworkSealed {
    /// The 32-byte random nonce the message key is derived from.
    pub fn nonce(&self) -> &[u8; 32] {
        &self.nonce
    }

    /// The ciphertext and its tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

/// Largest network-sealed message (the largest sealed record plus room for its envelopes).
pub const MAX_NETWORK_SEALED: usize = MAX_CIPHERTEXT + 64 * 1024;

impl Encode for NetworkSealed {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.nonce);
        out.put_bytes(&self.ciphertext);
    }
}

impl Decode for NetworkSealed {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let nonce = r.array()?;
        let ciphertext = r.bytes("network-sealed body", MAX_NETWORK_SEALED)?;
        if ciphertext.len() < TAG_LEN {
            return Err(DecodeError::InvalidValue {
                what: "network-sealed body",
                reason: "shorter than the tag",
            });
        }
        Ok(Self {
            nonce,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const OBS: &[u8] = br#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1,"unit":"%"}}"#;

    fn setup() -> (ChaCha20Rng, Identity, Identity, Identity) {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let p = Identity::generate(&mut rng);
        let h = Identity::generate(&mut rng);
        let x = Identity::generate(&mut rng);
        (rng, p, h, x)
    }

    #[test]
    fn seal_open_for_patient_and_reader_only() {
        let (mut rng, patient, hospital, stranger) = setup();
        let sealed = seal_record(OBS, &patient.public(), &[hospital.public()], &mut rng).unwrap();
        assert_eq!(sealed.open(&patient).unwrap().payload(), OBS);
        assert_eq!(sealed.open(&hospital).unwrap().payload(), OBS);
        assert_eq!(sealed.open(&stranger).unwrap_err(), SealError::NoEnvelope);
        assert_eq!(sealed.envelopes().len(), 2);
        let opened = sealed.open(&patient).unwrap();
        assert_eq!(opened.resource().unwrap().resource_type(), "Observation");
        assert!(!format!("{opened:?}").contains("loinc"));
        assert!(!format!("{sealed:?}").contains("loinc"));
    }

    #[test]
    fn a_writer_opens_its_own_record_through_a_self_envelope() {
        let (mut rng, patient, hospital, doctor) = setup();
        let sealed = seal_record_as(
            &hospital,
            OBS,
            &patient.public(),
            &[doctor.public()],
            &mut rng,
        )
        .unwrap();
        // The patient first, the readers in order, the writer last when not named.
        let recipients: Vec<AgreementKey> =
            sealed.envelopes().iter().map(|e| e.recipient).collect();
        assert_eq!(
            recipients,
            [
                patient.public().agree,
                doctor.public().agree,
                hospital.public().agree
            ]
        );
        let selfs: Vec<bool> = sealed
            .envelopes()
            .iter()
            .map(KeyEnvelope::is_self)
            .collect();
        assert_eq!(selfs, [false, false, true]);
        for reader in [&patient, &hospital, &doctor] {
            assert_eq!(sealed.open(reader).unwrap().payload(), OBS);
        }
        // Same encoding as any sealed record.
        let back = SealedRecord::from_bytes(&sealed.to_bytes()).unwrap();
        assert_eq!(back, sealed);
        assert_eq!(back.open(&hospital).unwrap().payload(), OBS);
        // Named among the readers, the writer has one envelope, where it was named.
        let named = seal_record_as(
            &hospital,
            OBS,
            &patient.public(),
            &[hospital.public(), doctor.public()],
            &mut rng,
        )
        .unwrap();
        let selfs: Vec<bool> = named.envelopes().iter().map(KeyEnvelope::is_self).collect();
        assert_eq!(selfs, [false, true, false]);
        // A reader listed with the writer's agreement key (under another signing key) is the
        // writer's envelope: one envelope per agreement key, never two.
        let alias = PublicIdentity {
            sign: doctor.public().sign,
            agree: hospital.public().agree,
        };
        let aliased =
            seal_record_as(&hospital, OBS, &patient.public(), &[alias], &mut rng).unwrap();
        let selfs: Vec<bool> = aliased
            .envelopes()
            .iter()
            .map(KeyEnvelope::is_self)
            .collect();
        assert_eq!(selfs, [false, true]);
        assert_eq!(aliased.open(&hospital).unwrap().payload(), OBS);
        // A patient who writes its own record: its first envelope is its self envelope.
        let own = seal_record_as(
            &patient,
            OBS,
            &patient.public(),
            &[doctor.public()],
            &mut rng,
        )
        .unwrap();
        let selfs: Vec<bool> = own.envelopes().iter().map(KeyEnvelope::is_self).collect();
        assert_eq!(selfs, [true, false]);
        assert_eq!(own.envelopes()[0].recipient, patient.public().agree);
        assert_eq!(own.open(&patient).unwrap().payload(), OBS);
        assert_eq!(own.open(&doctor).unwrap().payload(), OBS);
        // The holder releases the key from its self envelope as from any other.
        let stranger = Identity::generate(&mut rng);
        let env = sealed
            .share_with(&hospital, &stranger.public(), &mut rng)
            .unwrap();
        assert!(!env.is_self());
        assert_eq!(sealed.open_with(&stranger, &[env]).unwrap().payload(), OBS);
    }

    #[test]
    fn ephemeral_static_envelopes_never_carry_the_self_mark() {
        // X25519 public keys are canonical (below 2^255 - 19): bit 255 is always clear, so the
        // mark cannot make a reader take an ordinary envelope for a self envelope.
        let (mut rng, patient, hospital, _) = setup();
        for _ in 0..256 {
            let sealed =
                seal_record(OBS, &patient.public(), &[hospital.public()], &mut rng).unwrap();
            assert!(sealed.envelopes().iter().all(|e| !e.is_self()));
        }
    }

    #[test]
    fn attack_a_self_envelope_opens_for_no_one_else_and_nowhere_else() {
        let (mut rng, patient, hospital, stranger) = setup();
        let sealed = seal_record_as(&hospital, OBS, &patient.public(), &[], &mut rng).unwrap();
        let own = sealed.envelopes()[1].clone();
        assert!(own.is_self());
        let id = sealed.record_id();
        let unwrap = |env: &KeyEnvelope, who: &Identity| env.unwrap(who, id.as_byte_array());
        // Readdressed to another identity: its own derived secret does not open it.
        let mut readdressed = own.clone();
        readdressed.recipient = stranger.public().agree;
        assert_eq!(
            unwrap(&readdressed, &stranger).unwrap_err(),
            SealError::Decrypt
        );
        // The patient holds its own envelope, not the writer's.
        assert_eq!(unwrap(&own, &patient).unwrap_err(), SealError::NoEnvelope);
        // Moved to another record of the same writer: bound to the record id.
        let other = seal_record_as(&hospital, OBS, &patient.public(), &[], &mut rng).unwrap();
        assert_eq!(
            own.unwrap(&hospital, other.record_id().as_byte_array())
                .unwrap_err(),
            SealError::Decrypt
        );
        // The mark removed: taken as an X25519 envelope, it does not open.
        let mut unmarked = own.clone();
        unmarked.ephemeral[31] &= !SELF_ENVELOPE_MARK;
        assert!(unwrap(&unmarked, &hospital).is_err());
        // The mark added to the patient's X25519 envelope: taken as a self envelope, it does not
        // open either.
        let mut marked = sealed.envelopes()[0].clone();
        marked.ephemeral[31] |= SELF_ENVELOPE_MARK;
        assert_eq!(unwrap(&marked, &patient).unwrap_err(), SealError::Decrypt);
        // Forged for the writer by someone without its secret: random salts (marked), random
        // wrapped bytes.
        for _ in 0..64 {
            let mut forged = KeyEnvelope {
                recipient: hospital.public().agree,
                ephemeral: [0; 32],
                wrapped: [0; 48],
            };
            rng.fill_bytes(&mut forged.ephemeral);
            rng.fill_bytes(&mut forged.wrapped);
            forged.ephemeral[31] |= SELF_ENVELOPE_MARK;
            assert_eq!(unwrap(&forged, &hospital).unwrap_err(), SealError::Decrypt);
        }
        // Every byte of the self envelope is bound: a flip anywhere fails to open.
        for i in 0..KEY_ENVELOPE_LEN {
            let mut bytes = own.to_bytes();
            bytes[i] ^= 1;
            let Ok(env) = KeyEnvelope::from_bytes(&bytes) else {
                continue;
            };
            assert!(unwrap(&env, &hospital).is_err(), "byte {i}");
        }
        // Each self envelope has a fresh salt (its key is derived from it).
        assert_ne!(own.ephemeral, other.envelopes()[1].ephemeral);
        assert_eq!(unwrap(&own, &hospital).unwrap().len(), 32);
    }

    #[test]
    fn share_with_then_open_with() {
        let (mut rng, patient, hospital, doctor) = setup();
        let sealed = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        let env = sealed
            .share_with(&patient, &doctor.public(), &mut rng)
            .unwrap();
        assert_eq!(
            sealed
                .open_with(&doctor, std::slice::from_ref(&env))
                .unwrap()
                .payload(),
            OBS
        );
        assert_eq!(
            sealed
                .share_with(&hospital, &doctor.public(), &mut rng)
                .unwrap_err(),
            SealError::NoEnvelope
        );
        // An envelope made for one record does not open another (context binds the record id).
        let other = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        assert_eq!(
            other.open_with(&doctor, &[env]).unwrap_err(),
            SealError::Decrypt
        );
    }

    #[test]
    fn refuses_non_fhir_and_low_order_keys() {
        let (mut rng, patient, _, _) = setup();
        let err = seal_record(b"hello", &patient.public(), &[], &mut rng).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a FHIR resource: invalid JSON at line 1, column 1"
        );
        let mut bad = patient.public();
        bad.agree = AgreementKey::from_byte_array([0; 32]);
        let err = seal_record(OBS, &bad, &[], &mut rng).unwrap_err();
        assert_eq!(err, SealError::NonContributory);
        assert_eq!(
            err.to_string(),
            "reader key is not usable for key agreement (non-contributory)"
        );
    }

    #[test]
    fn commitment_is_salted_and_checked() {
        let (mut rng, patient, _, _) = setup();
        let a = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        let b = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        assert_ne!(a.commitment(), b.commitment());
        // Swapping in another record's commitment breaks the AAD, so decryption fails.
        let mut c = a.clone();
        c.commitment = b.commitment();
        assert_eq!(c.open(&patient).unwrap_err(), SealError::Decrypt);
    }

    #[test]
    fn every_byte_flip_of_an_encoded_record_is_caught() {
        let (mut rng, patient, _, _) = setup();
        let sealed = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        let bytes = sealed.to_bytes();
        assert_eq!(SealedRecord::from_bytes(&bytes).unwrap(), sealed);
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            let ok = SealedRecord::from_bytes(&t)
                .map_err(SealError::from)
                .and_then(|r| r.open(&patient).map(|o| o.payload().to_vec()));
            assert!(ok.is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn network_key_seal_open_and_wrap() {
        let (mut rng, node, _, stranger) = setup();
        let key = NetworkKey::generate(&mut rng);
        let sealed = key.seal(b"meta", b"aad", &mut rng);
        assert_eq!(&key.open(&sealed, b"aad").unwrap()[..], b"meta");
        assert_eq!(key.open(&sealed, b"other").unwrap_err(), SealError::Decrypt);
        let other = NetworkKey::generate(&mut rng);
        assert_eq!(other.open(&sealed, b"aad").unwrap_err(), SealError::Decrypt);
        let env = key.wrap_for(&node.public(), &mut rng).unwrap();
        let got = NetworkKey::unwrap_from(&env, &node).unwrap();
        assert_eq!(got.fingerprint(), key.fingerprint());
        assert_eq!(
            NetworkKey::unwrap_from(&env, &stranger).unwrap_err(),
            SealError::NoEnvelope
        );
        assert!(!format!("{key:?}").contains(&hex::encode(*key.0)));
        assert_eq!(
            NetworkSealed::from_bytes(&sealed.to_bytes()).unwrap(),
            sealed
        );
    }
    #[test]
    fn padding_buckets_are_fixed_points_with_bounded_overhead() {
        assert_eq!(padded_len(1, RECORD_PAD_FLOOR), RECORD_PAD_FLOOR);
        assert_eq!(
            padded_len(RECORD_PAD_FLOOR, RECORD_PAD_FLOOR),
            RECORD_PAD_FLOOR
        );
        assert_eq!(
            padded_len(RECORD_PAD_FLOOR + 1, RECORD_PAD_FLOOR),
            4096 + 256
        );
        let mut len = 1usize;
        while len < MAX_CIPHERTEXT {
            for l in [len, len + 1, len * 3 / 2 + 7] {
                let p = padded_len(l, RECORD_PAD_FLOOR);
                assert!(p >= l);
                assert_eq!(padded_len(p, RECORD_PAD_FLOOR), p, "{l}");
                if l > RECORD_PAD_FLOOR {
                    assert!((p - l) * 100 <= l * 7, "{l} -> {p}");
                }
            }
            len = len * 2 + 1;
        }
        // A padded message round-trips, and only its canonical form is accepted.
        let padded = pad(b"abc", 512);
        assert_eq!(padded.len(), 512);
        assert_eq!(unpad(&padded, 512, "t").unwrap(), b"abc");
        let mut dirty = padded.to_vec();
        dirty[100] = 1;
        assert_eq!(
            unpad(&dirty, 512, "t").unwrap_err(),
            DecodeError::NonCanonical { what: "t" }
        );
        assert!(unpad(&padded[..511], 512, "t").is_err());
        let mut huge = padded.to_vec();
        huge[..4].copy_from_slice(&600u32.to_be_bytes());
        assert!(matches!(
            unpad(&huge, 512, "t"),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn attack_a_record_with_dirty_padding_does_not_open() {
        // A sealer hides bytes in the padding (or lies about the length): readers refuse it.
        let (mut rng, patient, _, _) = setup();
        let good = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        let key = good.data_key(&patient, &[]).unwrap();
        let aad = record_aad(&good.record_id, &good.patient, &good.commitment);
        let plain = good.open(&patient).unwrap().plaintext.to_vec();
        for tamper in [
            |p: &mut Vec<u8>| *p.last_mut().unwrap() = 1,
            |p: &mut Vec<u8>| p[SALT_LEN..SALT_LEN + 4].copy_from_slice(&5000u32.to_be_bytes()),
        ] {
            let mut bad = plain.clone();
            tamper(&mut bad);
            let mut forged = good.clone();
            forged.ciphertext = key
                .cipher()
                .encrypt(
                    (&good.nonce).into(),
                    Payload {
                        msg: &bad,
                        aad: &aad,
                    },
                )
                .unwrap();
            assert!(matches!(forged.open(&patient), Err(SealError::Decode(_))));
        }
    }

    #[test]
    fn sealed_records_have_bucket_lengths_only() {
        let (mut rng, patient, _, _) = setup();
        let sealed = seal_record(OBS, &patient.public(), &[], &mut rng).unwrap();
        assert_eq!(
            sealed.ciphertext_len(),
            SALT_LEN + RECORD_PAD_FLOOR + TAG_LEN
        );
        // A ciphertext whose length is not a bucket is refused when decoded.
        let mut odd = sealed.clone();
        odd.ciphertext.push(0);
        assert!(matches!(
            SealedRecord::from_bytes(&odd.to_bytes()),
            Err(DecodeError::NonCanonical { .. })
        ));
        let mut short = sealed.clone();
        short.ciphertext.truncate(200);
        assert!(SealedRecord::from_bytes(&short.to_bytes()).is_err());
    }
}
