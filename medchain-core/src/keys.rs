//! Identities: every party holds an ed25519 signing key and an X25519 agreement key.
//!
//! * [`Identity`] is the secret half. It zeroizes on drop and never prints its secrets: its
//!   `Debug` shows the public id only.
//! * [`PublicIdentity`] is both public keys; [`PartyId`] is its short printable id, and
//!   [`PublicIdentity::to_text`] its full printable form (what a QR code carries).
//! * Signatures are bound to a network and a purpose: a signature for purpose `label` on the
//!   network `chain` ([`ChainId`], the genesis hash) is ed25519 over
//!   `len(label) || label || chain (32) || message`, so nothing signed for one network or one
//!   message kind verifies for another.
//! * Validity is **ZIP-215** (docs/adr/0005-signature-validity.md): canonical `S`, `R` decoded as
//!   given, the cofactored equation `[8][S]B = [8]R + [8][k]A`. [`VerifyKey::verify`] checks one
//!   signature, [`verify_batch`] many at once, and both give exactly the same verdict on every
//!   input. Keys are still checked strictly when decoded: no small-order point, no non-canonical
//!   encoding.
//! * [`Identity::export_backup`] / [`Identity::restore_backup`] protect the secret keys with a
//!   password: Argon2id, then AES-256-GCM.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, Rng};
use thiserror::Error;
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{domain, tagged_hash, tagged_hash_parts, ChainId, ParseHexError};

mod zip215;

/// Signing or verifying failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not verify (ZIP-215) under the key for this purpose and message.
    #[error("signature does not verify")]
    Invalid,
}

/// Slots of the per-thread cache of decoded keys (direct-mapped by two key bytes).
const DECODED_SLOTS: usize = 64;

thread_local! {
    /// Keys this thread decoded and checked, by their bytes ([`VerifyKey::from_byte_array`]).
    static DECODED: std::cell::RefCell<[Option<VerifyKey>; DECODED_SLOTS]> =
        const { std::cell::RefCell::new([None; DECODED_SLOTS]) };
}

/// An ed25519 public key, checked to be a valid point of large order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyKey(VerifyingKey);

impl VerifyKey {
    /// Parses and checks 32 bytes.
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] if the bytes are not a point or the point has small order.
    pub fn from_byte_array(bytes: [u8; 32]) -> Result<Self, DecodeError> {
        // A network has few members and each signs many transactions, votes and blocks:
        // decompressing the same key again is most of the cost of decoding it. A small cache of
        // keys this thread has already checked (by their exact bytes) answers those; only keys
        // that passed every check below are cached, so the verdict is the same either way.
        let slot = usize::from(bytes[0] ^ bytes[31]) % DECODED_SLOTS;
        if let Some(key) =
            DECODED.with(|c| c.borrow()[slot].filter(|k| k.as_byte_array() == &bytes))
        {
            return Ok(key);
        }
        let key = Self::check(bytes)?;
        DECODED.with(|c| c.borrow_mut()[slot] = Some(key));
        Ok(key)
    }

    /// The checks of [`VerifyKey::from_byte_array`], uncached.
    fn check(bytes: [u8; 32]) -> Result<Self, DecodeError> {
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| DecodeError::InvalidValue {
            what: "ed25519 public key",
            reason: "not a curve point",
        })?;
        if key.is_weak() {
            return Err(DecodeError::InvalidValue {
                what: "ed25519 public key",
                reason: "small-order point",
            });
        }
        // One encoding per key: refuse non-canonical encodings (y >= p = 2^255 - 19), which
        // decompress to a point that also has its canonical encoding. Checked on the bytes
        // (no field inversion): y >= p exactly when bytes 1..31 are 0xff, the low 7 bits of
        // byte 31 are all set, and byte 0 is at least 0xed.
        let y_at_least_p =
            bytes[0] >= 0xed && bytes[1..31].iter().all(|b| *b == 0xff) && bytes[31] & 0x7f == 0x7f;
        if y_at_least_p {
            return Err(DecodeError::InvalidValue {
                what: "ed25519 public key",
                reason: "non-canonical encoding",
            });
        }
        Ok(Self(key))
    }

    /// The 32 key bytes.
    pub fn to_byte_array(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The 32 key bytes, borrowed.
    pub fn as_byte_array(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The dalek key, for low-level use (protocols built on the same key, such as the VRF).
    /// Signatures are checked with [`VerifyKey::verify`] or [`verify_batch`] (ZIP-215), not with
    /// this key's own `verify_strict`.
    pub fn as_dalek(&self) -> &VerifyingKey {
        &self.0
    }

    /// Verifies `sig` over `message` for the purpose `label` on the network `chain`, under
    /// medchain's rule (ZIP-215: canonical `S`, cofactored equation; see the module docs). The
    /// verdict is exactly that of [`verify_batch`] for this one signature.
    ///
    /// # Errors
    /// [`SignatureError::Invalid`] when it does not verify.
    pub fn verify(
        &self,
        chain: &ChainId,
        label: &str,
        message: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let item = SignedMessage {
            key: self,
            chain,
            label,
            message,
            signature: sig,
        };
        match item.parse() {
            Some(p) if zip215::holds(&p) => Ok(()),
            _ => Err(SignatureError::Invalid),
        }
    }
}

/// One signature to check with [`verify_batch`]: the same five things [`VerifyKey::verify`]
/// takes. `Debug` shows the key, the label and the message length, never the message.
#[derive(Clone, Copy)]
pub struct SignedMessage<'a> {
    /// The signer's key.
    pub key: &'a VerifyKey,
    /// The network the signature is bound to.
    pub chain: &'a ChainId,
    /// The purpose (one of [`crate::hash::domain`]).
    pub label: &'a str,
    /// The message, unframed.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

impl SignedMessage<'_> {
    /// `None` when the signature cannot hold (non-canonical `S`, `R` not a point).
    fn parse(&self) -> Option<zip215::Parsed> {
        let label_len = [label_len(self.label)];
        zip215::parse(
            self.key.as_byte_array(),
            self.key.0.to_edwards(),
            &[
                &label_len,
                self.label.as_bytes(),
                self.chain.as_byte_array(),
                self.message,
            ],
            self.signature.as_byte_array(),
        )
    }
}

impl fmt::Debug for SignedMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedMessage")
            .field("key", self.key)
            .field("label", &self.label)
            .field("message_len", &self.message.len())
            .finish_non_exhaustive()
    }
}

/// A batch of signatures did not all verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BatchError {
    /// These signatures (positions in the batch, ascending) do not verify; every other one does.
    #[error("{} of {total} signatures do not verify", invalid.len())]
    Invalid {
        /// Positions of the signatures that do not verify, ascending, never empty.
        invalid: Vec<usize>,
        /// How many signatures the batch held.
        total: usize,
    },
}

/// Domain of the hash that seeds [`verify_batch`]'s coefficients.
const BATCH_COEFFICIENTS: &str = "medchain/v1/batch-coefficients";

/// Verifies many signatures at once, with the verdict of [`VerifyKey::verify`] on each: `Ok` when
/// every one verifies, otherwise the exact positions of those that do not (found by checking
/// each one alone after the batch equation fails).
///
/// The 128-bit batch coefficients come from ChaCha20 seeded with SHA-256 over every input (a
/// Fiat–Shamir derivation, like ed25519-dalek's own batch), so the call is deterministic and needs
/// no RNG; [`verify_batch_with_rng`] takes the caller's. A batch in which every signature is
/// valid passes for any coefficients; one holding an invalid signature passes the batch equation
/// with probability at most 2⁻¹²⁸ (docs/adr/0005-signature-validity.md).
///
/// # Errors
/// [`BatchError::Invalid`] naming the signatures that do not verify.
///
/// # Example
/// ```
/// use medchain_core::hash::{domain, ChainId};
/// use medchain_core::keys::{verify_batch, BatchError, Identity, SignedMessage};
///
/// let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
/// let (alice, bob) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
/// let chain = ChainId::from_byte_array([7; 32]);
/// let (ka, kb) = (alice.verify_key(), bob.verify_key());
/// let sa = alice.sign(&chain, domain::TX_SIG, b"one");
/// let sb = bob.sign(&chain, domain::TX_SIG, b"two");
/// let item = |key, message, signature| SignedMessage {
///     key, chain: &chain, label: domain::TX_SIG, message, signature,
/// };
/// assert_eq!(verify_batch(&[item(&ka, b"one", &sa), item(&kb, b"two", &sb)]), Ok(()));
/// // Bob's signature does not cover "one": the batch names position 1.
/// let err = verify_batch(&[item(&ka, b"one", &sa), item(&kb, b"one", &sb)]).unwrap_err();
/// assert!(matches!(err, BatchError::Invalid { ref invalid, total: 2 } if invalid == &[1]));
/// ```
pub fn verify_batch(items: &[SignedMessage<'_>]) -> Result<(), BatchError> {
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut h, BATCH_COEFFICIENTS.as_bytes());
    for it in items {
        sha2::Digest::update(&mut h, it.key.as_byte_array());
        sha2::Digest::update(&mut h, it.signature.as_byte_array());
        sha2::Digest::update(&mut h, [label_len(it.label)]);
        sha2::Digest::update(&mut h, it.label.as_bytes());
        sha2::Digest::update(&mut h, it.chain.as_byte_array());
        sha2::Digest::update(&mut h, (it.message.len() as u64).to_be_bytes());
        sha2::Digest::update(&mut h, it.message);
    }
    let seed: [u8; 32] = sha2::Digest::finalize(h).into();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed);
    verify_batch_with_rng(items, &mut rng)
}

/// [`verify_batch`] with the batch coefficients drawn from `rng` (16 bytes per signature). The
/// verdict is the same for every RNG except with probability at most 2⁻¹²⁸ per batch holding an
/// invalid signature; a weak RNG weakens only that bound, never the verdict on valid batches.
///
/// # Errors
/// [`BatchError::Invalid`] naming the signatures that do not verify.
pub fn verify_batch_with_rng<R: Rng + CryptoRng + ?Sized>(
    items: &[SignedMessage<'_>],
    rng: &mut R,
) -> Result<(), BatchError> {
    let mut parsed = Vec::with_capacity(items.len());
    let mut positions = Vec::with_capacity(items.len());
    let mut invalid = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.parse() {
            Some(p) => {
                parsed.push(p);
                positions.push(i);
            }
            None => invalid.push(i),
        }
    }
    if !zip215::batch_holds(&parsed, rng) {
        // Fallback: pinpoint the bad ones, each checked alone (the verdict of `verify`).
        invalid.extend(
            parsed
                .iter()
                .zip(&positions)
                .filter(|(p, _)| !zip215::holds(p))
                .map(|(_, &i)| i),
        );
        invalid.sort_unstable();
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(BatchError::Invalid {
            invalid,
            total: items.len(),
        })
    }
}

/// The one-byte label length of the framing (labels are short constants).
fn label_len(label: &str) -> u8 {
    // Every label is far shorter than 0x65 (`e`): a framed message therefore never starts with
    // the byte a JWS signing input starts with ([`Identity::sign_jws`]).
    debug_assert!(label.len() < usize::from(JWS_FIRST_BYTE));
    label.len() as u8
}

/// The first byte of every JWS signing input [`Identity::sign_jws`] signs: `e`, from `eyJ`, the
/// base64url of a JSON object's `{"`. Longer than any medchain label can be.
const JWS_FIRST_BYTE: u8 = b'e';

impl PartialOrd for VerifyKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for VerifyKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_byte_array().cmp(other.as_byte_array())
    }
}

impl std::hash::Hash for VerifyKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_byte_array().hash(state);
    }
}

impl fmt::Display for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_byte_array()))
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyKey({self})")
    }
}

impl Encode for VerifyKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(self.as_byte_array());
    }
}

impl Decode for VerifyKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::from_byte_array(r.array()?)
    }
}

/// An X25519 public key. Any 32 bytes decode; a low-order key is caught when a shared secret
/// with it turns out non-contributory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgreementKey([u8; 32]);

impl AgreementKey {
    /// Wraps 32 bytes.
    pub const fn from_byte_array(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The 32 key bytes.
    pub const fn to_byte_array(self) -> [u8; 32] {
        self.0
    }
    /// The 32 key bytes, borrowed.
    pub const fn as_byte_array(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for AgreementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for AgreementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgreementKey({self})")
    }
}

impl Encode for AgreementKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for AgreementKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(Self)
    }
}

/// An ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps 64 bytes.
    pub const fn from_byte_array(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }
    /// The 64 signature bytes.
    pub const fn to_byte_array(self) -> [u8; 64] {
        self.0
    }
    /// The 64 signature bytes, borrowed.
    pub const fn as_byte_array(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Encode for Signature {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for Signature {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(Self)
    }
}

/// `len(label) || label || message`: what a signature for purpose `label` signs.
/// What an ed25519 signature covers: `len(label) || label || chain || message`.
fn frame(chain: &ChainId, label: &str, message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(1 + label.len() + 32 + message.len());
    framed.push(label_len(label));
    framed.extend_from_slice(label.as_bytes());
    framed.extend_from_slice(chain.as_byte_array());
    framed.extend_from_slice(message);
    framed
}

/// [`Identity::sign_jws`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JwsError {
    /// The input is not `BASE64URL(header) '.' BASE64URL(payload)` with a JSON-object header.
    #[error(
        "not a JWS signing input (base64url JSON header starting \"eyJ\", '.', base64url payload)"
    )]
    NotSigningInput,
}

/// Whether `input` is `header '.' payload`, both non-empty unpadded base64url, the header
/// starting `eyJ` (a JSON object).
fn is_jws_signing_input(input: &str) -> bool {
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match input.split_once('.') {
        Some((header, payload)) => {
            header.as_bytes().first() == Some(&JWS_FIRST_BYTE)
                && header.starts_with("eyJ")
                && base64url(header)
                && base64url(payload)
        }
        None => false,
    }
}

/// A party's short printable id: the first 16 bytes of the tagged hash of both public keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartyId([u8; 16]);

impl PartyId {
    /// The 16 id bytes.
    pub const fn to_byte_array(self) -> [u8; 16] {
        self.0
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyId({self})")
    }
}

impl FromStr for PartyId {
    type Err = ParseHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::hash::parse_hex_array(s).map(Self)
    }
}

impl Encode for PartyId {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for PartyId {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(Self)
    }
}

/// A party's public identity: its signing key and its agreement key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicIdentity {
    /// Verifies the party's signatures.
    pub sign: VerifyKey,
    /// Receives keys wrapped to the party.
    pub agree: AgreementKey,
}

/// The prefix of [`PublicIdentity::to_text`].
pub const IDENTITY_TEXT_PREFIX: &str = "mcid1";

/// A printable identity string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityTextError {
    /// The string does not start with `mcid1`.
    #[error("not a medchain identity (expected the prefix {IDENTITY_TEXT_PREFIX})")]
    WrongPrefix,
    /// The body is not 136 hex digits.
    #[error("malformed identity text: {0}")]
    Hex(#[from] ParseHexError),
    /// The checksum does not match: a typo or a truncated scan.
    #[error("identity checksum mismatch (mistyped or damaged)")]
    Checksum,
    /// The signing key is not a valid ed25519 key.
    #[error("identity holds an invalid signing key: {0}")]
    Key(#[from] DecodeError),
}

impl PublicIdentity {
    /// The short id of this identity.
    pub fn id(&self) -> PartyId {
        let h = tagged_hash_parts(
            domain::PARTY_ID,
            &[self.sign.as_byte_array(), self.agree.as_byte_array()],
        );
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        PartyId(id)
    }

    /// The full printable form: `mcid1` followed by hex of the two keys and a 4-byte checksum.
    pub fn to_text(&self) -> String {
        let mut body = Vec::with_capacity(68);
        body.extend_from_slice(self.sign.as_byte_array());
        body.extend_from_slice(self.agree.as_byte_array());
        let check = tagged_hash(domain::IDENTITY_CHECKSUM, &body);
        body.extend_from_slice(&check[..4]);
        format!("{IDENTITY_TEXT_PREFIX}{}", hex::encode(body))
    }

    /// Parses [`PublicIdentity::to_text`] output.
    ///
    /// # Errors
    /// An [`IdentityTextError`] saying what is wrong.
    pub fn from_text(s: &str) -> Result<Self, IdentityTextError> {
        let body = s
            .trim()
            .strip_prefix(IDENTITY_TEXT_PREFIX)
            .ok_or(IdentityTextError::WrongPrefix)?;
        let raw: [u8; 68] = crate::hash::parse_hex_array(body)?;
        let check = tagged_hash(domain::IDENTITY_CHECKSUM, &raw[..64]);
        if check[..4] != raw[64..] {
            return Err(IdentityTextError::Checksum);
        }
        let mut sign = [0u8; 32];
        sign.copy_from_slice(&raw[..32]);
        let mut agree = [0u8; 32];
        agree.copy_from_slice(&raw[32..64]);
        Ok(Self {
            sign: VerifyKey::from_byte_array(sign)?,
            agree: AgreementKey(agree),
        })
    }
}

impl fmt::Display for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", self.id())
    }
}

impl Encode for PublicIdentity {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.sign.encode_to(out);
        self.agree.encode_to(out);
    }
}

impl Decode for PublicIdentity {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            sign: VerifyKey::decode_from(r)?,
            agree: AgreementKey::decode_from(r)?,
        })
    }
}

/// A party's secret keys. Zeroized on drop; `Debug` shows only the public id.
pub struct Identity {
    signing: SigningKey,
    agreement: StaticSecret,
    public: PublicIdentity,
}

impl Identity {
    /// A new identity from a cryptographic RNG.
    pub fn generate<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut sign = Zeroizing::new([0u8; 32]);
        let mut agree = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *sign);
        rng.fill_bytes(&mut *agree);
        Self::from_secret_bytes(&sign, &agree)
    }

    fn from_secret_bytes(sign: &[u8; 32], agree: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(sign);
        let agreement = StaticSecret::from(*agree);
        let public = PublicIdentity {
            // A key derived from a secret scalar is never small-order.
            sign: VerifyKey(signing.verifying_key()),
            agree: AgreementKey(XPublicKey::from(&agreement).to_bytes()),
        };
        Self {
            signing,
            agreement,
            public,
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicIdentity {
        self.public
    }

    /// The short id.
    pub fn id(&self) -> PartyId {
        self.public.id()
    }

    /// The verifying key.
    pub fn verify_key(&self) -> VerifyKey {
        self.public.sign
    }

    /// Signs `message` for the purpose `label` (one of [`crate::hash::domain`]) on the network
    /// `chain`.
    pub fn sign(&self, chain: &ChainId, label: &str, message: &[u8]) -> Signature {
        Signature(self.signing.sign(&frame(chain, label, message)).to_bytes())
    }

    /// An explicit copy of this identity's secrets, for the rare owner that must hold two (a
    /// binding handing one to a node and keeping one for its caller). Both copies zeroize on
    /// drop; nothing goes through a backup or a password.
    pub fn duplicate(&self) -> Self {
        let sign = Zeroizing::new(self.signing.to_bytes());
        let agree = Zeroizing::new(self.agreement.to_bytes());
        Self::from_secret_bytes(&sign, &agree)
    }

    /// X25519 with `their` key; `None` if the result is non-contributory (a low-order key).
    pub(crate) fn agree(&self, their: &AgreementKey) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self.agreement.diffie_hellman(&XPublicKey::from(their.0));
        if shared.was_contributory() {
            Some(Zeroizing::new(shared.to_bytes()))
        } else {
            None
        }
    }

    /// A 32-byte secret derived from this identity for one purpose: HKDF-SHA256 over the signing
    /// secret, with `label` (a [`crate::hash::domain`]-style constant) and `context` as info.
    /// Used for keys that must come back with a restored backup (such as a patient's index key).
    pub fn derive_secret(&self, label: &str, context: &[u8]) -> Zeroizing<[u8; 32]> {
        let ikm = Zeroizing::new(self.signing.to_bytes());
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"medchain/v1/identity-derive"), &*ikm);
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand_multi_info(
            &[&[label.len() as u8], label.as_bytes(), context],
            &mut *out,
        )
        .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// The ed25519 signing key, for protocols (such as a VRF) built on the same key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The raw X25519 static secret, for the peer transport only.
    ///
    /// `medchain-node`'s transport runs the Noise handshake (`snow`) with this key as the
    /// node's static key, and that library takes the secret as bytes. Nothing else should call
    /// this: every other use of the agreement key goes through this type (key unwrapping,
    /// record opening). The bytes come back zeroizing; never log or store them.
    pub fn x25519_secret_for_transport(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.agreement.to_bytes())
    }

    /// Signs a JWS signing input with this identity's ed25519 key: the `EdDSA` algorithm of
    /// RFC 8037, raw ed25519 over the ASCII bytes of `signing_input`, for a JWT a member or a
    /// patient presents to a node (the SMART Backend Services client assertion, `docs/node.md`).
    ///
    /// Only a JWS signing input is signed: `BASE64URL(header) '.' BASE64URL(payload)`, the
    /// header a JSON object (so the input starts with `eyJ`), both parts non-empty and in the
    /// base64url alphabet without padding. That shape is what keeps these signatures apart
    /// from medchain's own: every message [`Identity::sign`] signs is framed, and its first
    /// byte is the length of its purpose label, below 0x65; a JWS signing input starts with
    /// `e` (0x65). Neither kind of signature can therefore ever verify as the other.
    ///
    /// # Errors
    /// [`JwsError::NotSigningInput`]: nothing was signed.
    pub fn sign_jws(&self, signing_input: &str) -> Result<[u8; 64], JwsError> {
        if !is_jws_signing_input(signing_input) {
            return Err(JwsError::NotSigningInput);
        }
        Ok(self.signing.sign(signing_input.as_bytes()).to_bytes())
    }

    /// Encrypts both secret keys under `password` (Argon2id + AES-256-GCM).
    ///
    /// # Errors
    /// [`BackupError::UnsupportedParams`] for cost parameters out of range.
    pub fn export_backup<R: Rng + CryptoRng>(
        &self,
        password: &[u8],
        params: BackupParams,
        rng: &mut R,
    ) -> Result<Vec<u8>, BackupError> {
        let mut secret = Zeroizing::new([0u8; 64]);
        secret[..32].copy_from_slice(&self.signing.to_bytes());
        secret[32..].copy_from_slice(&self.agreement.to_bytes());
        password_seal(&*secret, domain::BACKUP_AAD, password, params, rng)
    }

    /// Restores an identity from [`Identity::export_backup`] output.
    ///
    /// # Errors
    /// [`BackupError::WrongPasswordOrDamaged`] for a wrong password or altered bytes,
    /// [`BackupError::Decode`] for a malformed backup, [`BackupError::UnsupportedParams`] for
    /// cost parameters out of range (which could otherwise be used to exhaust memory).
    pub fn restore_backup(backup: &[u8], password: &[u8]) -> Result<Self, BackupError> {
        let secret = password_open(backup, domain::BACKUP_AAD, 64, password)?;
        let mut sign = Zeroizing::new([0u8; 32]);
        let mut agree = Zeroizing::new([0u8; 32]);
        sign.copy_from_slice(&secret[..32]);
        agree.copy_from_slice(&secret[32..]);
        Ok(Self::from_secret_bytes(&sign, &agree))
    }
}

/// Encrypts `secret` under `password` (Argon2id + AES-256-GCM), bound to the purpose `label`:
/// `version || m || t || p || salt || nonce || bytes(ciphertext)` with associated data
/// `label || header`.
pub(crate) fn password_seal<R: Rng + CryptoRng>(
    secret: &[u8],
    label: &str,
    password: &[u8],
    params: BackupParams,
    rng: &mut R,
) -> Result<Vec<u8>, BackupError> {
    params.check()?;
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let key = derive_backup_key(password, &salt, params)?;
    let header = backup_header(params, &salt, &nonce);
    let cipher = Aes256Gcm::new_from_slice(&*key).map_err(|_| BackupError::Kdf)?;
    let ct = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: secret,
                aad: &backup_aad(label, &header),
            },
        )
        .map_err(|_| BackupError::Kdf)?;
    let mut out = header;
    out.put_bytes(&ct);
    Ok(out)
}

/// Opens [`password_seal`] output holding a secret of `len` bytes.
pub(crate) fn password_open(
    backup: &[u8],
    label: &str,
    len: usize,
    password: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let mut r = Reader::new(backup);
    r.version("identity backup", BACKUP_VERSION)?;
    let params = BackupParams {
        memory_kib: r.u32()?,
        iterations: r.u32()?,
        parallelism: r.u32()?,
    };
    let salt: [u8; 16] = r.array()?;
    let nonce: [u8; 12] = r.array()?;
    let ct = r.bytes("backup ciphertext", len + 16)?;
    r.finish()?;
    params.check()?;
    if ct.len() != len + 16 {
        return Err(BackupError::Decode(DecodeError::InvalidValue {
            what: "backup ciphertext",
            reason: "wrong length",
        }));
    }
    let key = derive_backup_key(password, &salt, params)?;
    let header = backup_header(params, &salt, &nonce);
    let cipher = Aes256Gcm::new_from_slice(&*key).map_err(|_| BackupError::Kdf)?;
    cipher
        .decrypt(
            (&nonce).into(),
            Payload {
                msg: ct,
                aad: &backup_aad(label, &header),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| BackupError::WrongPasswordOrDamaged)
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

const BACKUP_VERSION: u8 = 1;

fn backup_header(params: BackupParams, salt: &[u8; 16], nonce: &[u8; 12]) -> Vec<u8> {
    let mut out = vec![BACKUP_VERSION];
    out.put_u32(params.memory_kib);
    out.put_u32(params.iterations);
    out.put_u32(params.parallelism);
    out.put_raw(salt);
    out.put_raw(nonce);
    out
}

fn backup_aad(label: &str, header: &[u8]) -> Vec<u8> {
    let mut aad = label.as_bytes().to_vec();
    aad.extend_from_slice(header);
    aad
}

fn derive_backup_key(
    password: &[u8],
    salt: &[u8; 16],
    params: BackupParams,
) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            Some(32),
        )
        .map_err(|_| BackupError::UnsupportedParams)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, &mut *key)
        .map_err(|_| BackupError::Kdf)?;
    Ok(key)
}

/// Argon2id cost parameters of an identity backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl BackupParams {
    /// OWASP's recommended Argon2id setting (19 MiB, 2 passes, 1 lane): about 50 ms on a phone.
    pub const RECOMMENDED: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Largest memory cost a backup may ask for when restored (256 MiB): a hostile file cannot
    /// make a phone allocate more.
    pub const MAX_MEMORY_KIB: u32 = 256 * 1024;

    /// A weak setting that is fast enough for unit tests. Never protect a real key with it.
    pub const fn dangerous_test_only() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn check(self) -> Result<(), BackupError> {
        // Check the lanes first: `8 * parallelism` must not overflow on hostile input.
        let ok = (1..=8).contains(&self.parallelism)
            && (1..=16).contains(&self.iterations)
            && (8 * self.parallelism..=Self::MAX_MEMORY_KIB).contains(&self.memory_kib);
        if ok {
            Ok(())
        } else {
            Err(BackupError::UnsupportedParams)
        }
    }
}

/// An identity backup could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The password is wrong, or the backup was altered.
    #[error("wrong password, or the backup is damaged")]
    WrongPasswordOrDamaged,
    /// The backup is not well formed.
    #[error("malformed identity backup: {0}")]
    Decode(#[from] DecodeError),
    /// The Argon2id parameters are outside the accepted range.
    #[error("unsupported backup cost parameters")]
    UnsupportedParams,
    /// The key derivation failed.
    #[error("key derivation failed")]
    Kdf,
}

impl From<&Identity> for PublicIdentity {
    fn from(identity: &Identity) -> Self {
        identity.public()
    }
}

impl From<&Identity> for VerifyKey {
    fn from(identity: &Identity) -> Self {
        identity.verify_key()
    }
}

impl From<PublicIdentity> for VerifyKey {
    fn from(public: PublicIdentity) -> Self {
        public.sign
    }
}

impl From<&PublicIdentity> for PartyId {
    fn from(public: &PublicIdentity) -> Self {
        public.id()
    }
}

impl AsRef<VerifyKey> for PublicIdentity {
    fn as_ref(&self) -> &VerifyKey {
        &self.sign
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(7)
    }

    const NET: ChainId = ChainId::from_byte_array([1; 32]);

    #[test]
    fn transport_secret_is_the_agreement_key() {
        let id = Identity::generate(&mut rng());
        let secret = id.x25519_secret_for_transport();
        let public = XPublicKey::from(&StaticSecret::from(*secret));
        assert_eq!(public.to_bytes(), id.public().agree.to_byte_array());
    }

    #[test]
    fn jws_signatures_cover_only_jws_signing_inputs() {
        use ed25519_dalek::Verifier;
        let id = Identity::generate(&mut rng());
        let input = "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJhIn0";
        let sig = id.sign_jws(input).unwrap();
        // RFC 8037: plain ed25519 over the ASCII signing input.
        let dalek = ed25519_dalek::Signature::from_bytes(&sig);
        assert!(id
            .verify_key()
            .as_dalek()
            .verify(input.as_bytes(), &dalek)
            .is_ok());
        // It is not a medchain signature of anything.
        let as_medchain = Signature::from_byte_array(sig);
        assert!(id
            .verify_key()
            .verify(&NET, domain::TX_SIG, input.as_bytes(), &as_medchain)
            .is_err());
        for bad in [
            "",
            "eyJhbGciOiJFZERTQSJ9",
            "eyJhbGciOiJFZERTQSJ9.",
            ".eyJpc3MiOiJhIn0",
            "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJhIn0.c2ln",
            "eyJhbGciOiJFZERTQSJ9=.eyJpc3MiOiJhIn0",
            "eyJhbGci+OiJFZERTQSJ9.eyJpc3MiOiJhIn0",
            "W1tdXQ.eyJpc3MiOiJhIn0",
            "\u{11}medchain/v1/tx-signature.x",
        ] {
            assert_eq!(id.sign_jws(bad), Err(JwsError::NotSigningInput), "{bad:?}");
        }
        // A framed medchain message can never be a signing input: its first byte is a label
        // length, and every label is shorter than 0x65 (the `e` of `eyJ`).
        let hash_rs = include_str!("hash.rs");
        let labels: Vec<&str> = hash_rs
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split_once(": &str = \""))
            .filter_map(|(_, rest)| rest.strip_suffix("\";"))
            .collect();
        assert!(labels.len() > 40, "{labels:?}");
        for label in labels {
            assert!(label.len() < usize::from(JWS_FIRST_BYTE), "{label}");
            let framed = frame(&NET, label, b"{}");
            assert!(!is_jws_signing_input(&String::from_utf8_lossy(&framed)));
        }
    }

    #[test]
    fn sign_verify_is_domain_separated_and_network_bound() {
        let id = Identity::generate(&mut rng());
        let sig = id.sign(&NET, domain::TX_SIG, b"hello");
        id.verify_key()
            .verify(&NET, domain::TX_SIG, b"hello", &sig)
            .unwrap();
        assert_eq!(
            id.verify_key()
                .verify(&NET, domain::CONSENT_SIG, b"hello", &sig),
            Err(SignatureError::Invalid)
        );
        assert!(id
            .verify_key()
            .verify(&NET, domain::TX_SIG, b"hellp", &sig)
            .is_err());
        // Attack: a signature made on another network (same key, label and message) is refused.
        let other = ChainId::from_byte_array([2; 32]);
        assert_eq!(
            id.verify_key()
                .verify(&other, domain::TX_SIG, b"hello", &sig),
            Err(SignatureError::Invalid)
        );
        // The framing is exactly len(label) || label || chain || message.
        let mut framed = vec![domain::TX_SIG.len() as u8];
        framed.extend_from_slice(domain::TX_SIG.as_bytes());
        framed.extend_from_slice(NET.as_byte_array());
        framed.extend_from_slice(b"hello");
        let raw = ed25519_dalek::Signature::from_bytes(&sig.to_byte_array());
        id.verify_key()
            .as_dalek()
            .verify_strict(&framed, &raw)
            .unwrap();
    }

    #[test]
    fn the_decoded_key_cache_gives_the_uncached_verdict() {
        let mut r = rng();
        let mut inputs: Vec<[u8; 32]> = (0..200)
            .map(|_| Identity::generate(&mut r).verify_key().to_byte_array())
            .collect();
        // Random bytes (about half are not points), a small-order point, a non-canonical
        // encoding, and valid keys with a byte flipped, all sharing cache slots with the keys.
        for i in 0..200u8 {
            let mut b = [0u8; 32];
            r.fill_bytes(&mut b);
            inputs.push(b);
            let mut flipped = inputs[usize::from(i)];
            flipped[7] ^= 1 << (i % 8);
            inputs.push(flipped);
        }
        inputs.push([0; 32]);
        let mut non_canonical = [0xff; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        inputs.push(non_canonical);
        for round in 0..3 {
            for b in &inputs {
                let cached = VerifyKey::from_byte_array(*b);
                let uncached = VerifyKey::check(*b);
                assert_eq!(cached, uncached, "round {round}");
                if let Ok(k) = cached {
                    assert_eq!(k.as_byte_array(), b);
                }
            }
        }
    }

    #[test]
    fn duplicate_is_the_same_identity() {
        let id = Identity::generate(&mut rng());
        let copy = id.duplicate();
        assert_eq!(copy.public(), id.public());
        assert_eq!(
            copy.sign(&NET, domain::TX_SIG, b"m"),
            id.sign(&NET, domain::TX_SIG, b"m")
        );
    }

    #[test]
    fn rejects_small_order_key_and_non_canonical_s() {
        // The identity point (small order) encodes as 0x01 followed by zeros.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        let err = VerifyKey::from_byte_array(ident).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ed25519 public key: invalid value (small-order point)"
        );
        // A signature with S >= l is rejected.
        let id = Identity::generate(&mut rng());
        let mut sig = id.sign(&NET, domain::TX_SIG, b"m").to_byte_array();
        sig[32..].copy_from_slice(&[0xff; 32]);
        assert!(id
            .verify_key()
            .verify(&NET, domain::TX_SIG, b"m", &Signature::from_byte_array(sig))
            .is_err());
    }

    #[test]
    fn rejects_non_canonical_key_encodings_and_hostile_backup_lanes() {
        // y = p + 1 (non-canonical for y = 1... here p + 2): bytes of 2^255 - 19 + 2 = ...ff7f -> use
        // the canonical encoding of a real key with y + p instead; simplest: y = p (encodes 0).
        let mut y_eq_p = [0xffu8; 32];
        y_eq_p[0] = 0xed;
        y_eq_p[31] = 0x7f;
        assert!(VerifyKey::from_byte_array(y_eq_p).is_err());
        // Every y in [p, 2^255) with either sign bit is refused; the canonical encoding of each
        // such point (y - p) may be accepted or refused for other reasons, never both forms.
        for low in 0xedu8..=0xff {
            for sign in [0u8, 0x80] {
                let mut b = [0xffu8; 32];
                b[0] = low;
                b[31] = 0x7f | sign;
                let r = VerifyKey::from_byte_array(b);
                assert!(r.is_err(), "non-canonical y accepted: {}", hex::encode(b));
            }
        }
        let p = BackupParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: u32::MAX,
        };
        assert_eq!(p.check(), Err(BackupError::UnsupportedParams));
    }

    #[test]
    fn debug_never_shows_secrets() {
        let id = Identity::generate(&mut rng());
        let dbg = format!("{id:?}");
        assert!(dbg.starts_with("Identity { id: PartyId("));
        let secret_hex = hex::encode(id.signing.to_bytes());
        assert!(!dbg.contains(&secret_hex));
    }

    #[test]
    fn text_form_round_trips_and_catches_typos() {
        let public = Identity::generate(&mut rng()).public();
        let text = public.to_text();
        assert!(text.starts_with("mcid1"));
        assert_eq!(PublicIdentity::from_text(&text).unwrap(), public);
        let mut typo = text.clone().into_bytes();
        typo[10] = if typo[10] == b'0' { b'1' } else { b'0' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(
            PublicIdentity::from_text(&typo).unwrap_err(),
            IdentityTextError::Checksum
        );
        assert_eq!(
            PublicIdentity::from_text("xyz").unwrap_err().to_string(),
            "not a medchain identity (expected the prefix mcid1)"
        );
        assert!(matches!(
            PublicIdentity::from_text("mcid1abc"),
            Err(IdentityTextError::Hex(_))
        ));
    }

    #[test]
    fn backup_round_trip_and_wrong_password() {
        let mut rng = rng();
        let id = Identity::generate(&mut rng);
        let params = BackupParams::dangerous_test_only();
        let backup = id
            .export_backup(b"correct horse", params, &mut rng)
            .unwrap();
        let restored = Identity::restore_backup(&backup, b"correct horse").unwrap();
        assert_eq!(restored.public(), id.public());
        assert_eq!(
            Identity::restore_backup(&backup, b"wrong").unwrap_err(),
            BackupError::WrongPasswordOrDamaged
        );
        let mut tampered = backup.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            Identity::restore_backup(&tampered, b"correct horse").unwrap_err(),
            BackupError::WrongPasswordOrDamaged
        );
        // A hostile memory cost is refused before any allocation.
        let mut hostile = backup.clone();
        hostile[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Identity::restore_backup(&hostile, b"correct horse").unwrap_err(),
            BackupError::UnsupportedParams
        );
        assert!(matches!(
            Identity::restore_backup(&backup[..10], b"x"),
            Err(BackupError::Decode(_))
        ));
        assert!(backup.len() < 200);
    }

    #[test]
    fn rejects_non_contributory_agreement() {
        let id = Identity::generate(&mut rng());
        assert!(id.agree(&AgreementKey::from_byte_array([0; 32])).is_none());
        let other = Identity::generate(&mut rng());
        assert!(id.agree(&other.public().agree).is_some());
    }
}
