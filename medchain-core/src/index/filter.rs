//! The per-block keyed filter: which keywords a block holds, and in which records.
//!
//! For a block with context `C` (32 bytes; the block's Merkle root) the `j`-th record (in block
//! order, counting from 0) holding a keyword with trapdoor `t` gets the **filter key**
//! `PRF(t, INDEX_FILTER_KEY || C || u32 j)[..16]`, and the filter maps that key to the record's
//! position in the block. A search computes the key for `j = 0`: one PRF per block. If the filter
//! does not hold it, the block is skipped; if it does, it names the first candidate, and
//! `j = 1, 2, ...` the next ones until a key is missing. Because `C` differs per block, equal
//! keywords in different blocks have unrelated filter keys.
//!
//! Building the filter needs the trapdoors, which only the records' authors hold. So a block's
//! filter is a list of **segments**, one per party that indexed records in the block (each
//! contributor, once the block's records and context are fixed): a segment covers that party's
//! records, with occurrences `j` counted among them, and stores their block positions. A search
//! looks each filter key up in every segment; the PRFs are shared, so the cost stays one PRF per
//! block plus the candidates. With a single indexing party there is one segment.
//!
//! A segment is an **xor filter** (Graf and Lemire, 2020) used as a static function
//! (a "retrieval" structure, as in Bloomier filters): an array of `3 ⌈(32 + ⌈1.23 n⌉) / 3⌉` slots
//! of `w = 8 + p` bits, where `n` is the number of keys and `p` the bits of a position in the
//! block; a key is hashed to one slot in each third, and the XOR of its three slots is its
//! value `position ⊕ mask(key)`, `mask` being the key's low `w` bits. A key that is not in the
//! segment reads a random `w`-bit value and is taken for a member when it decodes to a position
//! below the block's entry count: probability `entries / 2^w ≤ 2^-8`. A Bloom filter cannot
//! return a position; binary fuse filters (the xor filter's successor) save space only for
//! larger `n` (their size factor is `max(1.125, 0.875 + 0.25 ln(10^6) / ln n)`, 1.23 at the
//! 16,000 keys of a 1,000-record block), so the simpler xor filter is used.
//!
//! A segment holds exactly one key per tag of its records' entries: the real keys, plus random
//! keys for the padding tags. Its size is therefore a function of the entries' padded sizes
//! alone, and its slots (unused slots are filled at random) look random to anyone without a
//! trapdoor.
//!
//! A filter is only a hint: every candidate it names is checked against the record's entry, so
//! a wrong or hostile filter can hide records from a search but never add a false match.
//!
//! Encodings (slots packed most significant bit first, their byte length implied by the counts,
//! the unused low bits of the last byte zero; `w = 8 + bits(entry count - 1)`):
//!
//! ```text
//! segment data   = u64 seed | u32 key count | slot bits
//! BlockFilter    = u8 version (1) | u32 entry count | u32 n | n × segment data
//! FilterSegment  = u8 version (1) | u32 entry count | segment data   (one party's part, sent to
//!                                                                    the block's proposer)
//! ```

use std::fmt;

use rand_core::{CryptoRng, Rng};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::entry::{
    EntryError, IndexEntry, IndexedRecord, ENTRY_BUCKETS, MAX_ENTRY_TAGS, MIN_INDEXED_RECORD_LEN,
};
use super::keys::Trapdoor;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{domain, tagged_hash, MerkleRoot, RecordId};

/// Most records one block index covers.
pub const MAX_BLOCK_ENTRIES: usize = 1 << 20;

/// Most segments (indexing parties) in one block filter.
pub const MAX_FILTER_SEGMENTS: usize = 1024;

/// Fingerprint bits per slot (on top of the position bits): the false-positive rate of one
/// filter lookup is at most `2^-FINGERPRINT_BITS`.
pub const FINGERPRINT_BITS: u32 = 8;

const FILTER_VERSION: u8 = 1;
const SEGMENT_VERSION: u8 = 1;
const BLOCK_INDEX_VERSION: u8 = 1;

/// Seeds tried before construction gives up. One try fails with small probability (the
/// `1.23 n + 32` slots of an xor filter peel with high probability), so 64 failures mean
/// repeated keys or a broken RNG.
const MAX_SEEDS: usize = 64;

/// Smallest encoding of a segment: seed, key count, and the slots of 16 keys at 8 bits.
const MIN_SEGMENT_LEN: usize = 8 + 4 + 54;

/// The 32 bytes that key a block's filter: the block's Merkle root.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockContext([u8; 32]);

impl BlockContext {
    /// Wraps 32 bytes.
    pub const fn from_byte_array(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn to_byte_array(self) -> [u8; 32] {
        self.0
    }

    /// The 32 bytes, borrowed.
    pub const fn as_byte_array(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<MerkleRoot> for BlockContext {
    fn from(root: MerkleRoot) -> Self {
        Self(root.to_byte_array())
    }
}

impl fmt::Display for BlockContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlockContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockContext({self})")
    }
}

impl Encode for BlockContext {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for BlockContext {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(Self)
    }
}

crate::hash::digest_newtype!(
    /// A block filter's digest, `tagged_hash(INDEX_FILTER, encoding)`, which the block header
    /// commits to.
    FilterDigest
);

/// A filter key: 128 bits of `PRF(trapdoor, INDEX_FILTER_KEY || context || occurrence)`.
#[derive(Clone, Copy, Zeroize)]
pub(crate) struct FilterKey {
    a: u64,
    b: u64,
}

impl FilterKey {
    pub(crate) fn from_prf_output(out: &[u8; 32]) -> Self {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&out[..8]);
        b.copy_from_slice(&out[8..16]);
        Self {
            a: u64::from_be_bytes(a),
            b: u64::from_be_bytes(b),
        }
    }

    fn random<R: Rng>(rng: &mut R) -> Self {
        Self {
            a: rng.next_u64(),
            b: rng.next_u64(),
        }
    }
}

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn slot_hash(key: &FilterKey, seed: u64) -> u64 {
    fmix64(key.a ^ fmix64(key.b ^ seed))
}

/// `⌊x · n / 2^32⌋`: maps `x` uniformly onto `0..n`.
fn reduce(x: u32, n: u32) -> u32 {
    ((u64::from(x) * u64::from(n)) >> 32) as u32
}

fn slots_of(h: u64, third: u32) -> [usize; 3] {
    [
        reduce(h as u32, third) as usize,
        (third + reduce(h.rotate_left(21) as u32, third)) as usize,
        (2 * third + reduce(h.rotate_left(42) as u32, third)) as usize,
    ]
}

fn low_bits(width: u32) -> u32 {
    if width >= 32 {
        u32::MAX
    } else {
        (1u32 << width) - 1
    }
}

/// Slots for `n` keys: `3 ⌈(32 + ⌈1.23 n⌉) / 3⌉`, or none for no keys.
fn slot_count(keys: u64) -> u64 {
    if keys == 0 {
        0
    } else {
        (32 + (123 * keys).div_ceil(100)).div_ceil(3) * 3
    }
}

/// Bits to write a position below `entries`.
fn position_bits(entries: u32) -> u32 {
    if entries <= 1 {
        0
    } else {
        32 - (entries - 1).leading_zeros()
    }
}

fn data_len(slots: u64, width: u32) -> u64 {
    (slots * u64::from(width)).div_ceil(8)
}

/// One xor filter over some of a block's records.
#[derive(Clone, PartialEq, Eq)]
struct Segment {
    seed: u64,
    key_count: u32,
    /// Slots per third.
    third: u32,
    data: Vec<u8>,
}

impl Segment {
    /// Slots per third and byte length for `key_count` keys of `width` bits in a block of
    /// `entry_count` records; `None` if the key count cannot be one of such a segment.
    fn geometry(entry_count: u32, key_count: u32, width: u32) -> Option<(u32, usize)> {
        let keys = u64::from(key_count);
        let min_bucket = ENTRY_BUCKETS[0] as u64;
        let fits = keys >= min_bucket
            && keys % min_bucket == 0
            && keys <= u64::from(entry_count) * MAX_ENTRY_TAGS as u64;
        if !fits {
            return None;
        }
        let slots = slot_count(keys);
        let third = u32::try_from(slots / 3).ok()?;
        let len = usize::try_from(data_len(slots, width)).ok()?;
        Some((third, len))
    }

    fn read_slot(&self, index: usize, width: u32) -> u32 {
        let bit = index * width as usize;
        let (byte, shift) = (bit / 8, (bit % 8) as u32);
        let mut window = 0u64;
        for i in 0..5 {
            window = (window << 8) | u64::from(self.data.get(byte + i).copied().unwrap_or(0));
        }
        ((window >> (40 - shift - width)) as u32) & low_bits(width)
    }

    fn lookup(&self, key: &FilterKey, width: u32, entry_count: u32) -> Option<u32> {
        if self.third == 0 {
            return None;
        }
        let [s0, s1, s2] = slots_of(slot_hash(key, self.seed), self.third);
        let value =
            self.read_slot(s0, width) ^ self.read_slot(s1, width) ^ self.read_slot(s2, width);
        let position = value ^ (key.b as u32 & low_bits(width));
        (position < entry_count).then_some(position)
    }

    /// Builds a segment over `keys` (each with its position) plus `dummies` random keys.
    fn construct<R: Rng + CryptoRng>(
        keys: &[KeyedPosition],
        dummies: usize,
        entry_count: u32,
        rng: &mut R,
    ) -> Result<Self, FilterError> {
        let n = keys.len() + dummies;
        let key_count = u32::try_from(n).map_err(|_| FilterError::ConstructionFailed)?;
        let width = slot_width(entry_count);
        let (third, len) =
            Self::geometry(entry_count, key_count, width).ok_or(FilterError::ConstructionFailed)?;
        let slots = third as usize * 3;
        let mask = low_bits(width);
        let pos_mask = low_bits(width - FINGERPRINT_BITS);
        // Every key with the value its three slots must XOR to.
        let mut all: Zeroizing<Vec<KeyedPosition>> = Zeroizing::new(Vec::with_capacity(n));
        all.extend(keys.iter().map(|k| KeyedPosition {
            key: k.key,
            position: k.position ^ (k.key.b as u32 & mask),
        }));
        for _ in 0..dummies {
            let key = FilterKey::random(rng);
            let position = (rng.next_u32() & pos_mask) ^ (key.b as u32 & mask);
            all.push(KeyedPosition { key, position });
        }
        let mut hashes: Vec<[usize; 3]> = vec![[0; 3]; n];
        let mut count = vec![0u32; slots];
        let mut xor = vec![0u32; slots];
        let mut queue: Vec<usize> = Vec::new();
        let mut stack: Vec<(usize, usize)> = Vec::with_capacity(n);
        for _ in 0..MAX_SEEDS {
            let seed = rng.next_u64();
            count.fill(0);
            xor.fill(0);
            for (k, item) in all.iter().enumerate() {
                hashes[k] = slots_of(slot_hash(&item.key, seed), third);
                for &s in &hashes[k] {
                    count[s] += 1;
                    xor[s] ^= k as u32;
                }
            }
            // Peel: a slot that only one key uses fixes that key last.
            queue.clear();
            queue.extend((0..slots).filter(|&s| count[s] == 1));
            stack.clear();
            while let Some(s) = queue.pop() {
                if count[s] != 1 {
                    continue;
                }
                let k = xor[s] as usize;
                stack.push((k, s));
                for &t in &hashes[k] {
                    count[t] -= 1;
                    xor[t] ^= k as u32;
                    if count[t] == 1 {
                        queue.push(t);
                    }
                }
            }
            if stack.len() != n {
                continue;
            }
            // Unused slots keep random values; in reverse peeling order each key's free slot is
            // set so that its three slots XOR to its value.
            let mut values: Vec<u32> = (0..slots).map(|_| rng.next_u32() & mask).collect();
            for &(k, s) in stack.iter().rev() {
                let [a, b, c] = hashes[k];
                // `s` is one of `a, b, c`: XOR-ing it in again cancels its old value.
                values[s] ^= all[k].position ^ values[a] ^ values[b] ^ values[c];
            }
            let data = pack(&values, width, len);
            values.zeroize();
            return Ok(Self {
                seed,
                key_count,
                third,
                data,
            });
        }
        Err(FilterError::ConstructionFailed)
    }

    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u64(self.seed);
        out.put_u32(self.key_count);
        out.put_raw(&self.data);
    }

    fn decode_from(r: &mut Reader<'_>, entry_count: u32) -> Result<Self, DecodeError> {
        let seed = r.u64()?;
        let key_count = r.u32()?;
        let width = slot_width(entry_count);
        let (third, len) =
            Self::geometry(entry_count, key_count, width).ok_or(DecodeError::InvalidValue {
                what: "block filter segment",
                reason: "key count does not fit the entry count",
            })?;
        // `take` checks that the input holds `len` bytes before anything is copied.
        let data = r.take(len)?.to_vec();
        let unused = (len as u64 * 8 - u64::from(third) * 3 * u64::from(width)) as u32;
        if unused > 0
            && data
                .last()
                .is_some_and(|b| u32::from(*b) & ((1 << unused) - 1) != 0)
        {
            return Err(DecodeError::NonCanonical {
                what: "block filter padding bits",
            });
        }
        Ok(Self {
            seed,
            key_count,
            third,
            data,
        })
    }
}

/// Bits per slot in a block of `entry_count` records.
fn slot_width(entry_count: u32) -> u32 {
    FINGERPRINT_BITS + position_bits(entry_count)
}

/// Packs `width`-bit values most significant bit first into `len` bytes.
fn pack(values: &[u32], width: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let (mut acc, mut bits) = (0u64, 0u32);
    for &v in values {
        acc = (acc << width) | u64::from(v);
        bits += width;
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        out.push((acc << (8 - bits)) as u8);
    }
    out
}

fn check_entry_count(entry_count: usize) -> Result<u32, FilterError> {
    u32::try_from(entry_count)
        .ok()
        .filter(|&n| n as usize <= MAX_BLOCK_ENTRIES)
        .ok_or(FilterError::TooManyEntries {
            max: MAX_BLOCK_ENTRIES,
        })
}

/// Filter keys for records given as (position, trapdoors): occurrences are counted per
/// trapdoor in position order, and a trapdoor repeated within one record counts once.
fn filter_keys<'a>(
    context: &BlockContext,
    records: impl IntoIterator<Item = (u32, &'a [Trapdoor])>,
) -> Zeroizing<Vec<KeyedPosition>> {
    let mut pairs: Vec<(&Trapdoor, u32)> = records
        .into_iter()
        .flat_map(|(pos, ts)| ts.iter().map(move |t| (t, pos)))
        .collect();
    pairs.sort_by(|x, y| x.0.secret().cmp(y.0.secret()).then(x.1.cmp(&y.1)));
    pairs.dedup_by(|x, y| x.1 == y.1 && x.0 == y.0);
    let mut keys = Zeroizing::new(Vec::with_capacity(pairs.len()));
    let mut occurrence = 0u32;
    for (i, &(t, position)) in pairs.iter().enumerate() {
        occurrence = match i.checked_sub(1).map(|p| pairs[p].0) {
            Some(prev) if prev == t => occurrence + 1,
            _ => 0,
        };
        keys.push(KeyedPosition {
            key: t.filter_key(context, occurrence),
            position,
        });
    }
    keys
}

/// One indexing party's part of a block filter: built by whoever holds the trapdoors of some
/// of the block's records (their contributor), sent to the block's proposer, and joined with the
/// other parts by [`BlockFilter::from_segments`].
#[derive(Clone, PartialEq, Eq)]
pub struct FilterSegment {
    entry_count: u32,
    segment: Segment,
}

impl FilterSegment {
    /// The segment over `records`, given as (position in the block, indexed record, the
    /// trapdoors its entry was built from), for a block of `entry_count` records keyed by
    /// `context`. Each trapdoor is checked against its entry.
    ///
    /// # Errors
    /// [`FilterError::EmptySegment`], [`FilterError::TooManyEntries`],
    /// [`FilterError::PositionOutOfRange`], [`FilterError::DuplicatePosition`],
    /// [`FilterError::TrapdoorNotInEntry`], [`FilterError::ConstructionFailed`].
    pub fn build<'a, R: Rng + CryptoRng>(
        context: &BlockContext,
        entry_count: usize,
        records: impl IntoIterator<Item = (usize, &'a IndexedRecord, &'a [Trapdoor])>,
        rng: &mut R,
    ) -> Result<Self, FilterError> {
        let entry_count = check_entry_count(entry_count)?;
        let records: Vec<(usize, &IndexedRecord, &[Trapdoor])> = records.into_iter().collect();
        if records.is_empty() {
            return Err(FilterError::EmptySegment);
        }
        let mut positions: Vec<usize> = Vec::with_capacity(records.len());
        let mut padded = 0usize;
        for &(position, record, trapdoors) in &records {
            if position >= entry_count as usize {
                return Err(FilterError::PositionOutOfRange {
                    position,
                    entry_count: entry_count as usize,
                });
            }
            if !trapdoors
                .iter()
                .all(|t| record.entry.matches(&record.record_id, t))
            {
                return Err(FilterError::TrapdoorNotInEntry { position });
            }
            positions.push(position);
            padded += record.entry.padded_len();
        }
        positions.sort_unstable();
        if let Some(w) = positions.windows(2).find(|w| w[0] == w[1]) {
            return Err(FilterError::DuplicatePosition { position: w[0] });
        }
        let keys = filter_keys(context, records.iter().map(|&(p, _, t)| (p as u32, t)));
        let dummies = padded
            .checked_sub(keys.len())
            .ok_or(FilterError::ConstructionFailed)?;
        let segment = Segment::construct(&keys, dummies, entry_count, rng)?;
        Ok(Self {
            entry_count,
            segment,
        })
    }

    /// Keys it holds: the padded sizes of its records' entries.
    pub fn key_count(&self) -> usize {
        self.segment.key_count as usize
    }

    /// How many records the block it was built for has (positions are below this).
    pub fn entry_count(&self) -> usize {
        self.entry_count as usize
    }

    /// The digest a contributor signs with its block signature:
    /// `tagged_hash(INDEX_SEGMENT, encoding)`.
    pub fn digest(&self) -> [u8; 32] {
        tagged_hash(domain::INDEX_SEGMENT, &self.to_bytes())
    }

    /// Length of the canonical encoding.
    pub fn encoded_len(&self) -> usize {
        1 + 4 + 8 + 4 + self.segment.data.len()
    }
}

impl fmt::Debug for FilterSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilterSegment")
            .field("entries", &self.entry_count)
            .field("keys", &self.segment.key_count)
            .finish()
    }
}

impl Encode for FilterSegment {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(SEGMENT_VERSION);
        out.put_u32(self.entry_count);
        self.segment.encode_to(out);
    }
}

impl Decode for FilterSegment {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("filter segment", SEGMENT_VERSION)?;
        let entry_count = decode_entry_count(r)?;
        Ok(Self {
            entry_count,
            segment: Segment::decode_from(r, entry_count)?,
        })
    }
}

fn decode_entry_count(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let entry_count = r.u32()?;
    if entry_count as usize > MAX_BLOCK_ENTRIES {
        return Err(DecodeError::TooLong {
            what: "block filter entries",
            len: entry_count.into(),
            max: MAX_BLOCK_ENTRIES as u64,
        });
    }
    Ok(entry_count)
}

/// A block's keyed filter (public: it goes on chain, and the block header commits to its
/// [`digest`](BlockFilter::digest)).
#[derive(Clone, PartialEq, Eq)]
pub struct BlockFilter {
    entry_count: u32,
    segments: Vec<Segment>,
}

impl BlockFilter {
    /// Joins the segments of the parties that indexed the block's records (in the order given,
    /// which the digest commits to).
    ///
    /// # Errors
    /// [`FilterError::TooManyEntries`], [`FilterError::TooManySegments`],
    /// [`FilterError::SegmentMismatch`] if a segment was built for another block size.
    pub fn from_segments(
        entry_count: usize,
        segments: Vec<FilterSegment>,
    ) -> Result<Self, FilterError> {
        let entry_count = check_entry_count(entry_count)?;
        if segments.len() > MAX_FILTER_SEGMENTS {
            return Err(FilterError::TooManySegments {
                max: MAX_FILTER_SEGMENTS,
            });
        }
        if segments.iter().any(|s| s.entry_count != entry_count) {
            return Err(FilterError::SegmentMismatch);
        }
        Ok(Self {
            entry_count,
            segments: segments.into_iter().map(|s| s.segment).collect(),
        })
    }

    /// How many records the filter covers (positions are below this).
    pub fn entry_count(&self) -> usize {
        self.entry_count as usize
    }

    /// How many keys it holds (the sum of the entries' padded sizes).
    pub fn key_count(&self) -> usize {
        self.segments.iter().map(|s| s.key_count as usize).sum()
    }

    /// How many segments (indexing parties) it has.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments as their parties sent them, in filter order.
    pub fn segments(&self) -> impl ExactSizeIterator<Item = FilterSegment> + '_ {
        self.segments.iter().map(|s| FilterSegment {
            entry_count: self.entry_count,
            segment: s.clone(),
        })
    }

    /// Length of the canonical encoding.
    pub fn encoded_len(&self) -> usize {
        1 + 4
            + 4
            + self
                .segments
                .iter()
                .map(|s| 12 + s.data.len())
                .sum::<usize>()
    }

    /// The digest the block header commits to: `tagged_hash(INDEX_FILTER, encoding)`.
    pub fn digest(&self) -> FilterDigest {
        FilterDigest::from_byte_array(tagged_hash(domain::INDEX_FILTER, &self.to_bytes()))
    }

    /// Checks that the filter fits a block's entries: as many entries as it covers, and one key
    /// per padded tag. A block whose filter does not fit fails validation.
    ///
    /// # Errors
    /// [`BlockIndexError::EntryCountMismatch`] or [`BlockIndexError::KeyCountMismatch`].
    pub fn check_entries<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a IndexEntry>,
    ) -> Result<(), BlockIndexError> {
        let (mut count, mut tags) = (0u64, 0u64);
        for entry in entries {
            count += 1;
            tags += entry.padded_len() as u64;
        }
        if count != u64::from(self.entry_count) {
            return Err(BlockIndexError::EntryCountMismatch {
                filter: self.entry_count.into(),
                block: count,
            });
        }
        let keys = self.key_count() as u64;
        if tags != keys {
            return Err(BlockIndexError::KeyCountMismatch {
                filter: keys,
                block: tags,
            });
        }
        Ok(())
    }

    /// The position segment `segment` gives for `key`, if it holds it (or a false positive, with
    /// probability at most `2^-8`).
    pub(crate) fn lookup(&self, segment: usize, key: &FilterKey) -> Option<u32> {
        self.segments
            .get(segment)?
            .lookup(key, slot_width(self.entry_count), self.entry_count)
    }
}

impl fmt::Debug for BlockFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockFilter")
            .field("entries", &self.entry_count)
            .field("segments", &self.segments.len())
            .field("keys", &self.key_count())
            .finish()
    }
}

impl Encode for BlockFilter {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(FILTER_VERSION);
        out.put_u32(self.entry_count);
        out.put_u32(self.segments.len() as u32);
        for s in &self.segments {
            s.encode_to(out);
        }
    }
}

impl Decode for BlockFilter {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("block filter", FILTER_VERSION)?;
        let entry_count = decode_entry_count(r)?;
        let n = r.length(
            "block filter segments",
            MAX_FILTER_SEGMENTS,
            MIN_SEGMENT_LEN,
        )?;
        let mut segments = Vec::with_capacity(n);
        let mut keys = 0u64;
        for _ in 0..n {
            let s = Segment::decode_from(r, entry_count)?;
            keys += u64::from(s.key_count);
            segments.push(s);
        }
        if keys > u64::from(entry_count) * MAX_ENTRY_TAGS as u64 {
            return Err(DecodeError::InvalidValue {
                what: "block filter",
                reason: "more keys than the entries can have",
            });
        }
        Ok(Self {
            entry_count,
            segments,
        })
    }
}

/// A block's filter does not fit its entries.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BlockIndexError {
    /// The filter covers another number of entries than the block has.
    #[error("the filter covers {filter} entries, the block has {block}")]
    EntryCountMismatch {
        /// Entries the filter covers.
        filter: u64,
        /// Entries the block has.
        block: u64,
    },
    /// The filter holds another number of keys than the entries have padded tags.
    #[error("the filter holds {filter} keys, the block's entries have {block} tags")]
    KeyCountMismatch {
        /// Keys in the filter.
        filter: u64,
        /// Padded tags of the entries.
        block: u64,
    },
}

/// A filter segment or block index could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FilterError {
    /// More records than one block index covers.
    #[error("a block index covers at most {max} records")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// More segments than one filter holds.
    #[error("a block filter holds at most {max} segments")]
    TooManySegments {
        /// The limit.
        max: usize,
    },
    /// A segment was asked for no record.
    #[error("a filter segment needs at least one record")]
    EmptySegment,
    /// A position is not below the block's entry count.
    #[error("position {position} is outside a block of {entry_count} records")]
    PositionOutOfRange {
        /// The position.
        position: usize,
        /// The block's entry count.
        entry_count: usize,
    },
    /// A position was given twice.
    #[error("position {position} is given twice")]
    DuplicatePosition {
        /// The position.
        position: usize,
    },
    /// Segments built for blocks of different sizes.
    #[error("the segments were built for another number of records")]
    SegmentMismatch,
    /// A trapdoor given with an entry does not match it.
    #[error("a trapdoor given for entry {position} does not match that entry")]
    TrapdoorNotInEntry {
        /// The entry's position in the block.
        position: usize,
    },
    /// An entry could not be built.
    #[error("entry {position} could not be built: {source}")]
    Entry {
        /// The entry's position in the block.
        position: usize,
        /// Why.
        source: EntryError,
    },
    /// No seed gave a filter (repeated keys, or a broken random generator).
    #[error("the filter could not be built (repeated keys or a broken random generator)")]
    ConstructionFailed,
}

#[derive(Clone, Copy, Zeroize)]
struct KeyedPosition {
    key: FilterKey,
    position: u32,
}

/// Builds a block's index when one party holds the trapdoors of all its records: the entries,
/// then (once the block context is known) a filter of one segment.
///
/// The builder learns which of its records share a keyword, which it could learn from the
/// trapdoors it holds anyway.
#[derive(Default)]
pub struct BlockIndexBuilder {
    records: Vec<IndexedRecord>,
    trapdoors: Vec<Vec<Trapdoor>>,
}

impl fmt::Debug for BlockIndexBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockIndexBuilder")
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl BlockIndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records added so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none was added.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn check_room(&self) -> Result<(), FilterError> {
        if self.records.len() >= MAX_BLOCK_ENTRIES {
            Err(FilterError::TooManyEntries {
                max: MAX_BLOCK_ENTRIES,
            })
        } else {
            Ok(())
        }
    }

    /// Builds the entry of `record_id` for `trapdoors` and adds it; returns the entry.
    ///
    /// # Errors
    /// [`FilterError::TooManyEntries`], [`FilterError::Entry`].
    pub fn add_record<R: Rng + CryptoRng>(
        &mut self,
        record_id: RecordId,
        trapdoors: &[Trapdoor],
        rng: &mut R,
    ) -> Result<&IndexEntry, FilterError> {
        self.check_room()?;
        let entry =
            IndexEntry::build(&record_id, trapdoors, rng).map_err(|source| FilterError::Entry {
                position: self.records.len(),
                source,
            })?;
        self.records.push(IndexedRecord { record_id, entry });
        self.trapdoors.push(trapdoors.to_vec());
        Ok(&self.records[self.records.len() - 1].entry)
    }

    /// Adds an entry built earlier (by the record's author) with the trapdoors it was built
    /// from; each is checked against the entry.
    ///
    /// # Errors
    /// [`FilterError::TooManyEntries`], [`FilterError::TrapdoorNotInEntry`].
    pub fn add_entry(
        &mut self,
        record: IndexedRecord,
        trapdoors: &[Trapdoor],
    ) -> Result<(), FilterError> {
        self.check_room()?;
        if !trapdoors
            .iter()
            .all(|t| record.entry.matches(&record.record_id, t))
        {
            return Err(FilterError::TrapdoorNotInEntry {
                position: self.records.len(),
            });
        }
        self.records.push(record);
        self.trapdoors.push(trapdoors.to_vec());
        Ok(())
    }

    /// The block's index under `context` (its Merkle root).
    ///
    /// # Errors
    /// [`FilterError::ConstructionFailed`] (negligible unless the RNG is broken).
    pub fn finish<R: Rng + CryptoRng>(
        self,
        context: BlockContext,
        rng: &mut R,
    ) -> Result<BlockIndex, FilterError> {
        let entry_count = check_entry_count(self.records.len())?;
        let mut segments = Vec::new();
        if !self.records.is_empty() {
            let keys = filter_keys(
                &context,
                self.trapdoors
                    .iter()
                    .enumerate()
                    .map(|(p, t)| (p as u32, t.as_slice())),
            );
            let padded: usize = self.records.iter().map(|r| r.entry.padded_len()).sum();
            let dummies = padded
                .checked_sub(keys.len())
                .ok_or(FilterError::ConstructionFailed)?;
            segments.push(Segment::construct(&keys, dummies, entry_count, rng)?);
        }
        Ok(BlockIndex {
            context,
            filter: BlockFilter {
                entry_count,
                segments,
            },
            records: self.records,
        })
    }
}

/// A block's secure index: its context, its filter and its indexed records, checked to fit
/// together.
///
/// Encoding: `u8 version (1) | 32-byte context | filter | u32 n | n × indexed record`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockIndex {
    context: BlockContext,
    filter: BlockFilter,
    records: Vec<IndexedRecord>,
}

impl BlockIndex {
    /// Puts the parts together, checking that the filter fits the entries.
    ///
    /// # Errors
    /// As [`BlockFilter::check_entries`].
    pub fn from_parts(
        context: BlockContext,
        filter: BlockFilter,
        records: Vec<IndexedRecord>,
    ) -> Result<Self, BlockIndexError> {
        filter.check_entries(records.iter().map(|r| &r.entry))?;
        Ok(Self {
            context,
            filter,
            records,
        })
    }

    /// The context the filter is keyed by.
    pub fn context(&self) -> &BlockContext {
        &self.context
    }

    /// The filter.
    pub fn filter(&self) -> &BlockFilter {
        &self.filter
    }

    /// The indexed records, in block order (a record's position is its index here).
    pub fn records(&self) -> &[IndexedRecord] {
        &self.records
    }

    /// The parts.
    pub fn into_parts(self) -> (BlockContext, BlockFilter, Vec<IndexedRecord>) {
        (self.context, self.filter, self.records)
    }
}

impl Encode for BlockIndex {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(BLOCK_INDEX_VERSION);
        self.context.encode_to(out);
        self.filter.encode_to(out);
        out.put_list(&self.records);
    }
}

impl Decode for BlockIndex {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("block index", BLOCK_INDEX_VERSION)?;
        let context = BlockContext::decode_from(r)?;
        let filter = BlockFilter::decode_from(r)?;
        let records = r.list(
            "block index records",
            MAX_BLOCK_ENTRIES,
            MIN_INDEXED_RECORD_LEN,
        )?;
        Self::from_parts(context, filter, records).map_err(|_| DecodeError::InvalidValue {
            what: "block index",
            reason: "the filter does not fit the entries",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexKey, Keyword};
    use crate::keys::Identity;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(3)
    }

    fn kw(i: usize) -> Keyword {
        Keyword::code("urn:t", &format!("k{i}")).unwrap()
    }

    /// A block of `n` records; record `i` holds keywords `i % 7` and `100 + i`.
    fn block(n: usize, rng: &mut ChaCha20Rng) -> (IndexKey, BlockIndex) {
        let key = IndexKey::for_patient(&Identity::generate(rng));
        let mut b = BlockIndexBuilder::new();
        for i in 0..n {
            let t = key.trapdoors(&[kw(i % 7), kw(100 + i)]);
            b.add_record(RecordId::from_byte_array([i as u8; 32]), &t, rng)
                .unwrap();
        }
        let ctx = BlockContext::from_byte_array([9; 32]);
        (key, b.finish(ctx, rng).unwrap())
    }

    fn chain(filter: &BlockFilter, segment: usize, ctx: &BlockContext, t: &Trapdoor) -> Vec<u32> {
        let mut out = Vec::new();
        let mut j = 0;
        while let Some(p) = filter.lookup(segment, &t.filter_key(ctx, j)) {
            out.push(p);
            j += 1;
        }
        out
    }

    #[test]
    fn filter_maps_occurrences_to_positions() {
        let mut rng = rng();
        let (key, index) = block(50, &mut rng);
        let (f, ctx) = (index.filter(), index.context());
        assert_eq!(f.entry_count(), 50);
        assert_eq!(f.key_count(), 50 * 16);
        assert_eq!(f.segment_count(), 1);
        let expected: Vec<u32> = (0..50).filter(|i| i % 7 == 3).collect();
        // Occasional false positives may extend a chain; the real positions come first.
        let got = chain(f, 0, ctx, &key.trapdoor(&kw(3)));
        assert_eq!(&got[..expected.len()], &expected[..]);
        assert_eq!(chain(f, 0, ctx, &key.trapdoor(&kw(142)))[0], 42);
        assert!(f
            .lookup(1, &key.trapdoor(&kw(3)).filter_key(ctx, 0))
            .is_none());
        // Another context gives unrelated keys.
        let other = BlockContext::from_byte_array([8; 32]);
        let misses = (0..7)
            .filter(|&c| {
                f.lookup(0, &key.trapdoor(&kw(c)).filter_key(&other, 0))
                    .is_none()
            })
            .count();
        assert!(misses >= 5, "{misses}");
    }

    #[test]
    fn false_positive_rate_is_about_entries_over_2_to_the_width() {
        let mut rng = rng();
        let (_, index) = block(200, &mut rng);
        let trials = 200_000u32;
        let hits = (0..trials)
            .filter(|_| {
                index
                    .filter()
                    .lookup(0, &FilterKey::random(&mut rng))
                    .is_some()
            })
            .count() as f64;
        // 200 entries, 8 + 8 bits: 200 / 65536 ≈ 0.31%.
        let rate = hits / f64::from(trials);
        assert!((0.002..0.0045).contains(&rate), "{rate}");
    }

    #[test]
    fn segments_from_several_parties() {
        let mut rng = rng();
        let alice = IndexKey::for_patient(&Identity::generate(&mut rng));
        let bob = IndexKey::for_patient(&Identity::generate(&mut rng));
        // Records 0, 2, 4 are Alice's (indexed by hospital A), 1 and 3 Bob's (hospital B).
        let mut records = Vec::new();
        let mut trapdoors = Vec::new();
        for i in 0..5 {
            let key = if i % 2 == 0 { &alice } else { &bob };
            let t = key.trapdoors(&[kw(1), kw(10 + i)]);
            let id = RecordId::from_byte_array([i as u8; 32]);
            let entry = IndexEntry::build(&id, &t, &mut rng).unwrap();
            records.push(IndexedRecord {
                record_id: id,
                entry,
            });
            trapdoors.push(t);
        }
        let ctx = BlockContext::from_byte_array([5; 32]);
        let part = |positions: &[usize], rng: &mut ChaCha20Rng| {
            FilterSegment::build(
                &ctx,
                5,
                positions
                    .iter()
                    .map(|&p| (p, &records[p], trapdoors[p].as_slice())),
                rng,
            )
            .unwrap()
        };
        let a = part(&[4, 0, 2], &mut rng);
        let b = part(&[1, 3], &mut rng);
        assert_eq!((a.key_count(), b.key_count()), (48, 32));
        let a = FilterSegment::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(a.to_bytes().len(), a.encoded_len());
        assert_eq!(format!("{a:?}"), "FilterSegment { entries: 5, keys: 48 }");
        let filter = BlockFilter::from_segments(5, vec![a, b]).unwrap();
        let index = BlockIndex::from_parts(ctx, filter, records.clone()).unwrap();
        let index = BlockIndex::from_bytes(&index.to_bytes()).unwrap();
        let f = index.filter();
        assert_eq!(f.segment_count(), 2);
        assert_eq!(&chain(f, 0, &ctx, &alice.trapdoor(&kw(1)))[..3], [0, 2, 4]);
        assert_eq!(&chain(f, 1, &ctx, &bob.trapdoor(&kw(1)))[..2], [1, 3]);
        assert_eq!(chain(f, 1, &ctx, &bob.trapdoor(&kw(13)))[0], 3);

        // Errors.
        let err = |r: Result<FilterSegment, FilterError>| r.unwrap_err().to_string();
        let none: [(usize, &IndexedRecord, &[Trapdoor]); 0] = [];
        assert_eq!(
            err(FilterSegment::build(&ctx, 5, none, &mut rng)),
            "a filter segment needs at least one record"
        );
        assert_eq!(
            err(FilterSegment::build(
                &ctx,
                5,
                [(5, &records[0], trapdoors[0].as_slice())],
                &mut rng
            )),
            "position 5 is outside a block of 5 records"
        );
        assert_eq!(
            err(FilterSegment::build(
                &ctx,
                5,
                [
                    (2, &records[2], trapdoors[2].as_slice()),
                    (2, &records[2], trapdoors[2].as_slice())
                ],
                &mut rng
            )),
            "position 2 is given twice"
        );
        assert_eq!(
            err(FilterSegment::build(
                &ctx,
                5,
                [(1, &records[1], trapdoors[0].as_slice())],
                &mut rng
            )),
            "a trapdoor given for entry 1 does not match that entry"
        );
        assert_eq!(
            err(FilterSegment::build(
                &ctx,
                MAX_BLOCK_ENTRIES + 1,
                [(1, &records[1], trapdoors[1].as_slice())],
                &mut rng
            )),
            "a block index covers at most 1048576 records"
        );
        let other_size = part(&[1], &mut rng);
        let other_size = FilterSegment {
            entry_count: 6,
            ..other_size
        };
        assert_eq!(
            BlockFilter::from_segments(5, vec![other_size])
                .unwrap_err()
                .to_string(),
            "the segments were built for another number of records"
        );
        let many = vec![part(&[0], &mut rng); MAX_FILTER_SEGMENTS + 1];
        assert_eq!(
            BlockFilter::from_segments(5, many).unwrap_err().to_string(),
            "a block filter holds at most 1024 segments"
        );
    }

    #[test]
    fn geometry_and_packing() {
        assert_eq!(slot_count(0), 0);
        assert_eq!(slot_count(1), 36);
        assert_eq!(slot_count(16), 54);
        assert_eq!(slot_count(16_000), 19_713);
        assert_eq!(position_bits(0), 0);
        assert_eq!(position_bits(1), 0);
        assert_eq!(position_bits(2), 1);
        assert_eq!(position_bits(1000), 10);
        assert_eq!(position_bits(1024), 10);
        assert_eq!(position_bits(1025), 11);
        assert_eq!(Segment::geometry(1, 16, 8), Some((18, 54)));
        assert_eq!(Segment::geometry(1, 0, 8), None);
        assert_eq!(Segment::geometry(1, 24, 8), None);
        assert_eq!(Segment::geometry(1, 144, 8), None);
        let values = [0x3ffffu32, 0, 0x12345, 1];
        let packed = pack(&values, 18, 9);
        assert_eq!(packed.len(), 9);
        let s = Segment {
            seed: 0,
            key_count: 0,
            third: 1,
            data: packed,
        };
        for (i, v) in values.iter().enumerate() {
            assert_eq!(s.read_slot(i, 18), *v);
        }
    }

    #[test]
    fn encoding_round_trip_digest_and_rejections() {
        let mut rng = rng();
        let (key, index) = block(30, &mut rng);
        let filter = index.filter().clone();
        let bytes = filter.to_bytes();
        assert_eq!(bytes.len(), filter.encoded_len());
        let back = BlockFilter::from_bytes(&bytes).unwrap();
        assert_eq!(back, filter);
        assert_eq!(back.digest(), filter.digest());
        assert_eq!(
            back.digest().to_byte_array(),
            tagged_hash(domain::INDEX_FILTER, &bytes)
        );
        assert_eq!(BlockIndex::from_bytes(&index.to_bytes()).unwrap(), index);
        assert_eq!(
            format!("{filter:?}"),
            "BlockFilter { entries: 30, segments: 1, keys: 480 }"
        );

        let decode_err = |v: &[u8]| BlockFilter::from_bytes(v).unwrap_err().to_string();
        let mut v = bytes.clone();
        v[0] = 0;
        assert_eq!(decode_err(&v), "block filter: unknown format version 0");
        let mut v = bytes.clone();
        v[1..5].copy_from_slice(&(MAX_BLOCK_ENTRIES as u32 + 1).to_be_bytes());
        assert_eq!(
            decode_err(&v),
            "block filter entries: length 1048577 is above the limit of 1048576"
        );
        let mut v = bytes.clone();
        v[17..21].copy_from_slice(&481u32.to_be_bytes());
        assert_eq!(
            decode_err(&v),
            "block filter segment: invalid value (key count does not fit the entry count)"
        );
        let mut v = bytes.clone();
        v[5..9].copy_from_slice(&2000u32.to_be_bytes());
        assert_eq!(
            decode_err(&v),
            "block filter segments: length 2000 is above the limit of 1024"
        );
        // Two copies of the segment: more keys than 30 entries of 16 tags, and a check of the
        // exact count against the entries.
        let mut two = bytes[..5].to_vec();
        two.put_u32(2);
        two.extend_from_slice(&bytes[9..]);
        two.extend_from_slice(&bytes[9..]);
        let doubled = BlockFilter::from_bytes(&two).unwrap();
        assert_eq!(
            doubled
                .check_entries(index.records().iter().map(|r| &r.entry))
                .unwrap_err()
                .to_string(),
            "the filter holds 960 keys, the block's entries have 480 tags"
        );
        // 9 copies: above 30 × 128 keys.
        let mut nine = bytes[..5].to_vec();
        nine.put_u32(9);
        for _ in 0..9 {
            nine.extend_from_slice(&bytes[9..]);
        }
        assert_eq!(
            decode_err(&nine),
            "block filter: invalid value (more keys than the entries can have)"
        );
        // A key count that fits but claims far more data than the input holds: no allocation.
        let mut v = bytes[..21].to_vec();
        v[1..5].copy_from_slice(&(MAX_BLOCK_ENTRIES as u32).to_be_bytes());
        v[17..21].copy_from_slice(&(16 * MAX_BLOCK_ENTRIES as u32).to_be_bytes());
        v.extend_from_slice(&[0; MIN_SEGMENT_LEN]);
        assert!(matches!(
            BlockFilter::from_bytes(&v).unwrap_err(),
            DecodeError::UnexpectedEnd { .. }
        ));
        for cut in 0..bytes.len() {
            assert!(BlockFilter::from_bytes(&bytes[..cut]).is_err());
        }
        // Padding bits must be zero (3 entries: 10-bit slots, 93 slots: 6 unused bits).
        let (_, odd) = block(3, &mut rng);
        let mut v = odd.filter().to_bytes();
        *v.last_mut().unwrap() |= 1;
        assert_eq!(
            decode_err(&v),
            "block filter padding bits: non-canonical encoding"
        );
        let seg_err = FilterSegment::from_bytes(&[2]).unwrap_err().to_string();
        assert_eq!(seg_err, "filter segment: unknown format version 2");

        // The block index rejects a filter that does not fit its entries.
        let (ctx, filter, mut records) = index.clone().into_parts();
        records.pop();
        let err = BlockIndex::from_parts(ctx, filter.clone(), records.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the filter covers 30 entries, the block has 29"
        );
        let bigger = IndexEntry::build(
            &records[0].record_id,
            &key.trapdoors(&(0..20).map(kw).collect::<Vec<_>>()),
            &mut rng,
        )
        .unwrap();
        let mut swapped = index.records().to_vec();
        swapped[0].entry = bigger;
        let err = BlockIndex::from_parts(ctx, filter.clone(), swapped.clone()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the filter holds 480 keys, the block's entries have 496 tags"
        );
        let mut enc = vec![BLOCK_INDEX_VERSION];
        ctx.encode_to(&mut enc);
        filter.encode_to(&mut enc);
        enc.put_list(&swapped);
        assert_eq!(
            BlockIndex::from_bytes(&enc).unwrap_err().to_string(),
            "block index: invalid value (the filter does not fit the entries)"
        );
    }

    #[test]
    fn empty_and_single_record_blocks() {
        let mut rng = rng();
        let empty = BlockIndexBuilder::new()
            .finish(BlockContext::default(), &mut rng)
            .unwrap();
        assert_eq!(empty.filter().encoded_len(), 9);
        assert!(empty
            .filter()
            .lookup(0, &FilterKey::random(&mut rng))
            .is_none());
        assert_eq!(BlockIndex::from_bytes(&empty.to_bytes()).unwrap(), empty);
        let (key, one) = block(1, &mut rng);
        assert_eq!(
            chain(one.filter(), 0, one.context(), &key.trapdoor(&kw(0)))[0],
            0
        );
        assert_eq!(BlockIndex::from_bytes(&one.to_bytes()).unwrap(), one);
    }

    #[test]
    fn builder_errors() {
        let mut rng = rng();
        let key = IndexKey::for_patient(&Identity::generate(&mut rng));
        let id = RecordId::from_byte_array([1; 32]);
        let entry = IndexEntry::build(&id, &key.trapdoors(&[kw(1)]), &mut rng).unwrap();
        let mut b = BlockIndexBuilder::new();
        assert!(b.is_empty());
        let err = b
            .add_entry(
                IndexedRecord {
                    record_id: id,
                    entry: entry.clone(),
                },
                &key.trapdoors(&[kw(2)]),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a trapdoor given for entry 0 does not match that entry"
        );
        b.add_entry(
            IndexedRecord {
                record_id: id,
                entry,
            },
            &key.trapdoors(&[kw(1)]),
        )
        .unwrap();
        assert_eq!(b.len(), 1);
        let many: Vec<Keyword> = (0..200).map(kw).collect();
        let err = b
            .add_record(id, &key.trapdoors(&many), &mut rng)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry 1 could not be built: an entry holds at most 128 keywords, 200 given"
        );
        assert_eq!(
            FilterError::ConstructionFailed.to_string(),
            "the filter could not be built (repeated keys or a broken random generator)"
        );
        assert_eq!(format!("{b:?}"), "BlockIndexBuilder { records: 1, .. }");
    }

    #[test]
    fn context_and_digest_text() {
        let ctx = BlockContext::from(MerkleRoot::from_byte_array([0xab; 32]));
        assert_eq!(ctx.to_byte_array(), [0xab; 32]);
        assert_eq!(
            format!("{ctx:?}"),
            format!("BlockContext({})", "ab".repeat(32))
        );
        assert_eq!(BlockContext::from_bytes(&ctx.to_bytes()).unwrap(), ctx);
        let d = FilterDigest::from_byte_array([1; 32]);
        assert_eq!(d.to_string().parse::<FilterDigest>().unwrap(), d);
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(f) = BlockFilter::from_bytes(&data) {
                let _ = f.lookup(0, &FilterKey { a: 1, b: 2 });
            }
            let _ = FilterSegment::from_bytes(&data);
            let _ = BlockIndex::from_bytes(&data);
        }
    }
}
