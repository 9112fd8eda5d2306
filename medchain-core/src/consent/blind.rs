//! Blinded consent codes: what a consent says about codes, without telling the network which.
//!
//! A consent provision may name a coded concept ("deny ICD-10 F20.9", "not my HIV results").
//! On chain, every member can read every consent, so the code itself never goes there: the
//! patient's wallet replaces it with a [`CodeTag`], a keyed PRF of the code under the patient's
//! [`ConsentTagKey`]:
//!
//! ```text
//! ConsentTagKey = identity.derive_secret("medchain/v1/consent-tag-key", "patient")
//! CodeTag       = first 16 bytes of HMAC-SHA256(ConsentTagKey,
//!                   u8 len || "medchain/v1/consent-code-tag" || u32 len || system || u32 len || code)
//! ```
//!
//! The writer of a record (a hospital the patient enrolled at, which received the key sealed to
//! it in its [`crate::index::SealedWriterKey`]) tags every code of the record with the same key
//! and puts the tags, padded with random ones to a bucket size ([`CODE_TAG_BUCKETS`]), in the
//! record's network-visible class. Validators compare a provision's tags with a record's tags:
//! they enforce code-level denies without learning any code.
//!
//! What leaks (also in `docs/consent.md` and `docs/crypto.md`): tags are deterministic per
//! patient, so a member sees that two of one patient's records share a code, or that a record
//! holds a code a consent names, and how many tags (a bucket) each record has; tags of two
//! patients never compare. Whoever holds the patient's key (the patient, the hospitals the
//! patient enrolled at) can test a tag against any candidate code.

use std::fmt;

use rand_core::{CryptoRng, Rng};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::domain;
use crate::index::prf::{frame, Prf};
use crate::keys::Identity;

/// Bytes of a [`CodeTag`].
pub const CODE_TAG_LEN: usize = 16;

/// The tag counts a record class may carry: a record's tags are padded with random tags to the
/// smallest bucket that holds them.
pub const CODE_TAG_BUCKETS: [usize; 6] = [8, 16, 32, 64, 128, 256];

/// Most codes a record may hold (the largest bucket).
pub const MAX_CODE_TAGS: usize = CODE_TAG_BUCKETS[CODE_TAG_BUCKETS.len() - 1];

/// A blinded code: a keyed PRF of a (`system`, `code`) pair under one patient's
/// [`ConsentTagKey`]. Equal tags mean equal codes within one patient; nothing else can be read
/// from it without the key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CodeTag([u8; CODE_TAG_LEN]);

impl CodeTag {
    /// A tag from its bytes.
    pub const fn from_byte_array(bytes: [u8; CODE_TAG_LEN]) -> Self {
        Self(bytes)
    }

    /// The tag's bytes.
    pub const fn to_byte_array(self) -> [u8; CODE_TAG_LEN] {
        self.0
    }

    /// A random tag (padding): equal to a real tag with probability 2⁻¹²⁸.
    pub fn random<R: Rng + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; CODE_TAG_LEN];
        rng.fill_bytes(&mut b);
        Self(b)
    }
}

impl fmt::Debug for CodeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeTag({})", hex::encode(self.0))
    }
}

impl fmt::Display for CodeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Encode for CodeTag {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for CodeTag {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self(r.array()?))
    }
}

/// A record holds more codes than a record class can carry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodeTagError {
    /// More distinct codes than [`MAX_CODE_TAGS`].
    #[error("the record holds {count} distinct codes, at most {MAX_CODE_TAGS} can be tagged")]
    TooManyCodes {
        /// Distinct codes found.
        count: usize,
    },
}

/// The patient's consent tag key: blinds the codes of the patient's consents and of the
/// patient's records. The patient derives it from their identity; a hospital receives it at
/// enrolment. Zeroized on drop; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ConsentTagKey {
    prf: Prf,
    key: Zeroizing<[u8; 32]>,
}

impl ConsentTagKey {
    /// The patient's key: `identity.derive_secret(CONSENT_TAG_KEY, "patient")`, so it comes
    /// back with a restored identity backup.
    pub fn for_patient(identity: &Identity) -> Self {
        Self::from_secret(identity.derive_secret(domain::CONSENT_TAG_KEY, b"patient"))
    }

    /// The key from its 32 secret bytes (unwrapped at enrolment).
    pub(crate) fn from_secret(key: Zeroizing<[u8; 32]>) -> Self {
        Self {
            prf: Prf::new(&key),
            key,
        }
    }

    /// The 32 secret bytes (to seal the key to a writer at enrolment).
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.key
    }

    /// The tag of one coded concept.
    pub fn tag(&self, system: &str, code: &str) -> CodeTag {
        let (len, label) = frame(domain::CONSENT_CODE_TAG);
        let mut framed = Vec::with_capacity(8 + system.len() + code.len());
        framed.put_bytes(system.as_bytes());
        framed.put_bytes(code.as_bytes());
        let out = self.prf.eval(&[&len, label, &framed]);
        let mut tag = [0u8; CODE_TAG_LEN];
        tag.copy_from_slice(&out[..CODE_TAG_LEN]);
        CodeTag(tag)
    }

    /// The tags a record class carries for a record holding `codes`: one tag per distinct code,
    /// padded with random tags to the smallest of [`CODE_TAG_BUCKETS`] that holds them, sorted
    /// (the canonical order, which also hides which tags are real).
    ///
    /// # Errors
    /// [`CodeTagError::TooManyCodes`] above [`MAX_CODE_TAGS`] distinct codes: the record cannot
    /// be tagged completely, and a partly tagged record would escape a deny.
    pub fn record_tags<R: Rng + CryptoRng>(
        &self,
        codes: &[(String, String)],
        rng: &mut R,
    ) -> Result<Vec<CodeTag>, CodeTagError> {
        let mut tags: Vec<CodeTag> = codes.iter().map(|(s, c)| self.tag(s, c)).collect();
        tags.sort_unstable();
        tags.dedup();
        let bucket =
            tag_bucket(tags.len()).ok_or(CodeTagError::TooManyCodes { count: tags.len() })?;
        while tags.len() < bucket {
            let t = CodeTag::random(rng);
            if let Err(i) = tags.binary_search(&t) {
                tags.insert(i, t);
            }
        }
        Ok(tags)
    }
}

impl fmt::Debug for ConsentTagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConsentTagKey(..)")
    }
}

/// The bucket for `count` tags: the smallest of [`CODE_TAG_BUCKETS`] that holds them.
pub fn tag_bucket(count: usize) -> Option<usize> {
    CODE_TAG_BUCKETS.iter().copied().find(|&b| b >= count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn tags_are_per_patient_and_per_code() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let a = ConsentTagKey::for_patient(&Identity::generate(&mut rng));
        let b = ConsentTagKey::for_patient(&Identity::generate(&mut rng));
        let icd = "http://hl7.org/fhir/sid/icd-10";
        assert_eq!(a.tag(icd, "F20.9"), a.tag(icd, "F20.9"));
        assert_ne!(a.tag(icd, "F20.9"), b.tag(icd, "F20.9"));
        assert_ne!(a.tag(icd, "F20.9"), a.tag(icd, "F20.8"));
        // The framing keeps system and code apart.
        assert_ne!(a.tag("ab", "c"), a.tag("a", "bc"));
        assert_eq!(format!("{a:?}"), "ConsentTagKey(..)");
    }

    #[test]
    fn record_tags_are_padded_sorted_and_complete() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let key = ConsentTagKey::for_patient(&Identity::generate(&mut rng));
        let codes: Vec<(String, String)> = (0..9)
            .map(|i| ("http://loinc.org".to_owned(), format!("{i}")))
            .chain([("http://loinc.org".to_owned(), "0".to_owned())])
            .collect();
        let tags = key.record_tags(&codes, &mut rng).unwrap();
        assert_eq!(tags.len(), 16);
        assert!(tags.windows(2).all(|w| w[0] < w[1]));
        for (s, c) in &codes {
            assert!(tags.contains(&key.tag(s, c)));
        }
        assert_eq!(key.record_tags(&[], &mut rng).unwrap().len(), 8);
        let many: Vec<(String, String)> = (0..=MAX_CODE_TAGS)
            .map(|i| ("s".to_owned(), i.to_string()))
            .collect();
        let err = key.record_tags(&many, &mut rng).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the record holds 257 distinct codes, at most 256 can be tagged"
        );
    }
}
