//! A record's index entry: one tag per keyword, padded with random tags to a bucket size.
//!
//! For a record `r` with id `id(r)` and a keyword with trapdoor `t`, the tag is
//! `PRF(t, INDEX_TAG || id(r))` cut to [`TAG_LEN`] bytes (the record id is the per-record nonce
//! of Goh's construction). The entry is the set of its tags, filled up with uniformly random
//! tags to the smallest of [`ENTRY_BUCKETS`] that holds them, and sorted. Without a trapdoor the
//! tags are indistinguishable from random, so an entry shows its bucket and nothing else; and
//! because the record id is in the PRF input, copying an entry onto another record does not
//! make that record match.
//!
//! Encoding: `u8 version (1) | u32 count | count × 8-byte tag`, the count one of
//! [`ENTRY_BUCKETS`] and the tags strictly ascending.

use std::fmt;

use rand_core::{CryptoRng, Rng};
use thiserror::Error;

use super::keys::{Tag, Trapdoor, TAG_LEN};
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::RecordId;

/// The sizes (in tags) an entry is padded to. The smallest holds a typical record
/// (4 to 12 keywords); the keyword count leaks only as far as the bucket.
pub const ENTRY_BUCKETS: [usize; 4] = [16, 32, 64, 128];

/// Most tags an entry holds: the largest bucket. One resource gives at most
/// [`MAX_KEYWORDS`](super::MAX_KEYWORDS) keywords, so a record can be indexed under two keys
/// (its patient's and a research purpose's) at full size.
pub const MAX_ENTRY_TAGS: usize = ENTRY_BUCKETS[ENTRY_BUCKETS.len() - 1];

const ENTRY_VERSION: u8 = 1;

/// Attempts to draw a random padding tag that is not yet in the entry before giving up.
const PAD_ATTEMPTS: usize = 4 * MAX_ENTRY_TAGS;

/// An index entry could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EntryError {
    /// More distinct keywords than the largest bucket holds.
    #[error("an entry holds at most {max} keywords, {count} given")]
    TooManyKeywords {
        /// Distinct keywords given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The random generator kept returning tags already in the entry.
    #[error("the random generator returned repeated values while padding an entry")]
    RepeatingRng,
}

/// The smallest bucket that holds `count` tags, if any.
pub fn bucket_for(count: usize) -> Option<usize> {
    ENTRY_BUCKETS.iter().copied().find(|&b| b >= count)
}

/// A record's secure-index entry (public: it goes on chain).
#[derive(Clone, PartialEq, Eq)]
pub struct IndexEntry {
    tags: Vec<Tag>,
}

impl IndexEntry {
    /// The entry of the record `record_id` for the keywords whose `trapdoors` are given (under
    /// any mix of index keys). Repeated trapdoors count once.
    ///
    /// # Errors
    /// [`EntryError::TooManyKeywords`] above [`MAX_ENTRY_TAGS`], [`EntryError::RepeatingRng`]
    /// if `rng` is broken.
    pub fn build<R: Rng + CryptoRng>(
        record_id: &RecordId,
        trapdoors: &[Trapdoor],
        rng: &mut R,
    ) -> Result<Self, EntryError> {
        let mut tags: Vec<Tag> = trapdoors.iter().map(|t| t.tag(record_id)).collect();
        tags.sort_unstable();
        tags.dedup();
        let bucket = bucket_for(tags.len()).ok_or(EntryError::TooManyKeywords {
            count: tags.len(),
            max: MAX_ENTRY_TAGS,
        })?;
        let real = tags.clone();
        let mut attempts = 0;
        while tags.len() < bucket {
            attempts += 1;
            if attempts > PAD_ATTEMPTS {
                return Err(EntryError::RepeatingRng);
            }
            let mut dummy = [0u8; TAG_LEN];
            rng.fill_bytes(&mut dummy);
            // Checked against the real tags (sorted) and the dummies so far.
            if real.binary_search(&dummy).is_err() && !tags[real.len()..].contains(&dummy) {
                tags.push(dummy);
            }
        }
        tags.sort_unstable();
        Ok(Self { tags })
    }

    /// How many tags the entry holds (its bucket).
    pub fn padded_len(&self) -> usize {
        self.tags.len()
    }

    /// Length of the canonical encoding.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + TAG_LEN * self.tags.len()
    }

    /// Whether the record `record_id` holds the keyword of `trapdoor` (one PRF evaluation).
    /// A false match has probability at most `padded_len / 2^64`.
    pub fn matches(&self, record_id: &RecordId, trapdoor: &Trapdoor) -> bool {
        self.contains_tag(&trapdoor.tag(record_id))
    }

    pub(crate) fn contains_tag(&self, tag: &Tag) -> bool {
        self.tags.binary_search(tag).is_ok()
    }
}

impl fmt::Debug for IndexEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexEntry")
            .field("padded_len", &self.tags.len())
            .finish()
    }
}

impl Encode for IndexEntry {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(ENTRY_VERSION);
        out.put_list(&self.tags);
    }
}

impl Decode for IndexEntry {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("index entry", ENTRY_VERSION)?;
        let tags: Vec<Tag> = r.sorted_list("index entry tags", MAX_ENTRY_TAGS, TAG_LEN, |t| *t)?;
        if bucket_for(tags.len()) != Some(tags.len()) {
            return Err(DecodeError::InvalidValue {
                what: "index entry",
                reason: "tag count is not a bucket size",
            });
        }
        Ok(Self { tags })
    }
}

/// A record id with its index entry: one item of a block's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedRecord {
    /// The record.
    pub record_id: RecordId,
    /// Its entry.
    pub entry: IndexEntry,
}

/// Encoding: the 32-byte record id, then the entry.
impl Encode for IndexedRecord {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.record_id.encode_to(out);
        self.entry.encode_to(out);
    }
}

impl Decode for IndexedRecord {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            record_id: RecordId::decode_from(r)?,
            entry: IndexEntry::decode_from(r)?,
        })
    }
}

/// Smallest encoding of an [`IndexedRecord`] (id, version, count, smallest bucket).
pub(crate) const MIN_INDEXED_RECORD_LEN: usize = 32 + 1 + 4 + TAG_LEN * ENTRY_BUCKETS[0];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexKey, Keyword};
    use crate::keys::Identity;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Infallible, TryCryptoRng, TryRng};

    fn setup() -> (ChaCha20Rng, IndexKey) {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let key = IndexKey::for_patient(&Identity::generate(&mut rng));
        (rng, key)
    }

    fn keywords(n: usize) -> Vec<Keyword> {
        (0..n)
            .map(|i| Keyword::code("urn:test", &format!("c{i}")).unwrap())
            .collect()
    }

    #[test]
    fn entries_match_their_keywords_only() {
        let (mut rng, key) = setup();
        let id = RecordId::from_byte_array([1; 32]);
        let kws = keywords(5);
        let e = IndexEntry::build(&id, &key.trapdoors(&kws), &mut rng).unwrap();
        assert_eq!(e.padded_len(), 16);
        for k in &kws {
            assert!(e.matches(&id, &key.trapdoor(k)));
        }
        assert!(!e.matches(&id, &key.trapdoor(&keywords(6)[5])));
        // Bound to the record id: the same entry under another id matches nothing.
        let other = RecordId::from_byte_array([2; 32]);
        assert!(!e.matches(&other, &key.trapdoor(&kws[0])));
        // One keyword in two records: different tags.
        assert_ne!(
            key.trapdoor(&kws[0]).tag(&id),
            key.trapdoor(&kws[0]).tag(&other)
        );
    }

    #[test]
    fn padding_hides_the_count_within_a_bucket() {
        let (mut rng, key) = setup();
        let id = RecordId::from_byte_array([1; 32]);
        let sizes: Vec<usize> = [0, 1, 16, 17, 32, 33, 64, 65, 128]
            .iter()
            .map(|&n| {
                IndexEntry::build(&id, &key.trapdoors(&keywords(n)), &mut rng)
                    .unwrap()
                    .to_bytes()
                    .len()
            })
            .collect();
        let e = |b: usize| 5 + 8 * b;
        assert_eq!(
            sizes,
            [
                e(16),
                e(16),
                e(16),
                e(32),
                e(32),
                e(64),
                e(64),
                e(128),
                e(128)
            ]
        );
        // Repeated trapdoors count once.
        let mut t = key.trapdoors(&keywords(16));
        t.extend(key.trapdoors(&keywords(16)));
        assert_eq!(
            IndexEntry::build(&id, &t, &mut rng).unwrap().padded_len(),
            16
        );
        let err = IndexEntry::build(&id, &key.trapdoors(&keywords(129)), &mut rng).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an entry holds at most 128 keywords, 129 given"
        );
        assert_eq!(bucket_for(0), Some(16));
        assert_eq!(bucket_for(129), None);
    }

    /// An RNG that always returns the same bytes.
    struct Stuck;
    impl TryRng for Stuck {
        type Error = Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            Ok(0)
        }
        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            Ok(0)
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
            dest.fill(0);
            Ok(())
        }
    }
    impl TryCryptoRng for Stuck {}

    #[test]
    fn broken_rng_is_an_error_not_a_hang() {
        let (_, key) = setup();
        let id = RecordId::from_byte_array([1; 32]);
        let err = IndexEntry::build(&id, &key.trapdoors(&keywords(2)), &mut Stuck).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the random generator returned repeated values while padding an entry"
        );
    }

    #[test]
    fn encoding_round_trip_and_rejections() {
        let (mut rng, key) = setup();
        let id = RecordId::from_byte_array([3; 32]);
        let e = IndexEntry::build(&id, &key.trapdoors(&keywords(3)), &mut rng).unwrap();
        let bytes = e.to_bytes();
        assert_eq!(bytes.len(), e.encoded_len());
        assert_eq!(IndexEntry::from_bytes(&bytes).unwrap(), e);
        let rec = IndexedRecord {
            record_id: id,
            entry: e.clone(),
        };
        assert_eq!(IndexedRecord::from_bytes(&rec.to_bytes()).unwrap(), rec);
        assert_eq!(rec.to_bytes().len(), MIN_INDEXED_RECORD_LEN);
        assert_eq!(format!("{e:?}"), "IndexEntry { padded_len: 16 }");

        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(
            IndexEntry::from_bytes(&v).unwrap_err().to_string(),
            "index entry: unknown format version 9"
        );
        // Swap two tags: not ascending.
        let mut v = bytes.clone();
        let (a, b) = (5, 5 + TAG_LEN);
        for i in 0..TAG_LEN {
            v.swap(a + i, b + i);
        }
        assert_eq!(
            IndexEntry::from_bytes(&v).unwrap_err().to_string(),
            "index entry tags: non-canonical encoding"
        );
        // A count that is not a bucket (15 tags).
        let mut v = vec![ENTRY_VERSION];
        v.put_u32(15);
        for i in 0..15u8 {
            v.extend_from_slice(&[i; TAG_LEN]);
        }
        assert_eq!(
            IndexEntry::from_bytes(&v).unwrap_err().to_string(),
            "index entry: invalid value (tag count is not a bucket size)"
        );
        // A hostile count is refused before allocating.
        let mut v = vec![ENTRY_VERSION];
        v.put_u32(u32::MAX);
        assert_eq!(
            IndexEntry::from_bytes(&v).unwrap_err().to_string(),
            "index entry tags: length 4294967295 is above the limit of 128"
        );
        let mut v = vec![ENTRY_VERSION];
        v.put_u32(16);
        assert_eq!(
            IndexEntry::from_bytes(&v).unwrap_err().to_string(),
            "index entry tags: length 16 needs at least 128 byte(s), only 0 left"
        );
        for cut in 0..bytes.len() {
            assert!(IndexEntry::from_bytes(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            IndexEntry::from_bytes(&long).unwrap_err().to_string(),
            "1 trailing byte(s) after the value"
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = IndexEntry::from_bytes(&data);
            let _ = IndexedRecord::from_bytes(&data);
        }
    }
}
