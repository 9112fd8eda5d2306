//! Merkle trees over a block's transactions, hashed as in RFC 6962 (Certificate Transparency).
//!
//! # Construction
//!
//! * A leaf's hash is `SHA-256(0x00 || data)` ([`leaf_hash`]); for a block, `data` is the 32 raw
//!   bytes of a transaction id.
//! * An inner node's hash is `SHA-256(0x01 || left || right)` ([`node_hash`]).
//! * The tree over `n` leaves is RFC 6962's `MTH`: for `n > 1`, with `k` the largest power of two
//!   smaller than `n`, `MTH(D[n]) = node_hash(MTH(D[0..k]), MTH(D[k..n]))`, and `MTH` of one
//!   leaf is its leaf hash. Built level by level, this means a node left alone at the end of a
//!   level is *promoted* to the next level unchanged; it is never paired with a copy of itself,
//!   so the duplicate-leaf ambiguity of Bitcoin's tree (CVE-2012-2459) cannot arise.
//! * The root of the empty tree is `SHA-256("")` ([`EMPTY_ROOT`]), as RFC 6962 defines it. Every
//!   other root hashes a non-empty, prefixed message, so an equal root would need a SHA-256
//!   collision.
//! * The distinct prefixes for leaves and inner nodes defeat second-preimage attacks: presenting
//!   an inner node as a leaf (or the reverse) with the same hash would need a SHA-256 collision.
//!
//! A block whose transactions contain a duplicate is invalid: [`merkle_root_checked`] rejects
//! it, naming the index of the first duplicate ([`find_duplicate`]).
//!
//! # Inclusion proofs
//!
//! [`proof`] (or [`MerkleTree::proof`], which builds the tree once for many proofs) returns a
//! [`MerkleProof`]: the leaf index, the leaf count and the sibling hashes from the leaf up.
//! [`MerkleProof::verify`] needs only the root, so a light client that holds block headers can
//! check that a transaction is in a block. Proofs are made and checked with `rs_merkle`, given
//! the RFC 6962 hashing through [`Rfc6962Hasher`].
//!
//! What a proof authenticates: that the leaf sits at one particular position (a left/right path)
//! in the tree with that root. The root does not commit to the number of leaves, so a proof for
//! `(index, leaf_count)` may also verify relabelled as another `(index', leaf_count')` whose path
//! has the same shape. A verifier that relies on the index or the count must compare
//! [`MerkleProof::leaf_count`] with a count it trusts (the block header's transaction count).
//!
//! # Wire format of a proof (version 1)
//!
//! ```text
//! u8       version = 0x01
//! u32      leaf_count              (big-endian, at least 1)
//! u32      leaf_index              (big-endian, below leaf_count)
//! u32      sibling count           (big-endian, exactly the path length for index and count,
//!                                   so at most ceil(log2(leaf_count)) <= 32)
//! [u8;32]* siblings, from the leaf's level up to the root's children
//! ```
//!
//! Decoding rejects anything else (an unknown version, a zero count, an index out of range, a
//! sibling count that is not exactly the path length, trailing bytes), so every proof has exactly
//! one encoding, and it never allocates more than the input holds.

use rs_merkle::MerkleProof as RsMerkleProof;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::MerkleRoot;

/// Prefix byte of a leaf hash (RFC 6962).
pub const LEAF_PREFIX: u8 = 0x00;

/// Prefix byte of an inner-node hash (RFC 6962).
pub const NODE_PREFIX: u8 = 0x01;

/// The format version byte of an encoded [`MerkleProof`].
pub const PROOF_VERSION: u8 = 1;

/// The most leaves a tree with proofs may hold: leaf indices and counts are `u32` on the wire.
pub const MAX_LEAVES: usize = u32::MAX as usize;

/// The root of the empty tree: `SHA-256("")`, as RFC 6962 defines `MTH({})`.
pub const EMPTY_ROOT: MerkleRoot = MerkleRoot::from_byte_array([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// Why a Merkle operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is out of range for a tree of {leaf_count} leaves")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The number of leaves in the tree.
        leaf_count: usize,
    },
    /// Two leaves are equal (a block with a duplicate transaction is invalid).
    #[error("leaf {index} duplicates an earlier leaf")]
    DuplicateLeaf {
        /// The index of the first leaf equal to an earlier one.
        index: usize,
    },
    /// The tree has more leaves than a proof can address.
    #[error("a tree of {leaf_count} leaves is above the limit of {max}", max = MAX_LEAVES)]
    TooManyLeaves {
        /// The number of leaves.
        leaf_count: usize,
    },
    /// The proof does not lead from the leaf to the root.
    #[error("the Merkle proof does not match the root and leaf")]
    ProofMismatch,
}

/// RFC 6962 hashing for `rs_merkle`: leaves are hashed with the `0x00` prefix, inner nodes with
/// `0x01`, and a node alone at the end of a level is promoted unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rfc6962Hasher;

impl rs_merkle::Hasher for Rfc6962Hasher {
    type Hash = [u8; 32];

    /// The leaf hash `SHA-256(0x00 || data)`.
    fn hash(data: &[u8]) -> [u8; 32] {
        leaf_hash(data)
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => node_hash(left, right),
            None => *left,
        }
    }
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The Merkle root over leaf hashes (see the [module docs](self) for the construction);
/// [`EMPTY_ROOT`] for no leaves.
///
/// This does not check for duplicate leaves; a block's root is taken with
/// [`merkle_root_checked`]. The cost is `n - 1` inner-node hashes and no other work worth the
/// name: each level is kept as a run of ready-made 65-byte messages `0x01 || left || right`,
/// so every node is one SHA-256 call over bytes already in memory (building each message just
/// before hashing it would cost ~25% in store-forwarding stalls), and the levels are reduced in
/// place in one buffer of `ceil(n / 2)` messages.
pub fn merkle_root(leaf_hashes: &[[u8; 32]]) -> MerkleRoot {
    match leaf_hashes {
        [] => EMPTY_ROOT,
        [only] => MerkleRoot::from_byte_array(*only),
        _ => {
            // msgs[j] holds nodes 2j (bytes 1..33) and 2j + 1 (bytes 33..65) of the current
            // level, after the node prefix.
            let mut msgs: Vec<[u8; 65]> = leaf_hashes
                .chunks(2)
                .map(|pair| {
                    let mut m = [NODE_PREFIX; 65];
                    for (slot, node) in m[1..].chunks_exact_mut(32).zip(pair) {
                        slot.copy_from_slice(node);
                    }
                    m
                })
                .collect();
            let mut len = leaf_hashes.len();
            while len > 1 {
                // Parent i goes to msgs[i / 2], slot i % 2. Writing msgs[i / 2] never clobbers
                // a message not yet hashed: i / 2 <= i, and msgs[0] is written after it is read.
                let pairs = len / 2;
                for i in 0..pairs {
                    // By reference: passing the array by value would copy it to the stack
                    // right before hashing, bringing back the stalls.
                    let parent: [u8; 32] = Sha256::digest(msgs[i].as_slice()).into();
                    set_node(&mut msgs, i, &parent);
                }
                if len % 2 == 1 {
                    // Promote the lone last node (node 2 * pairs, in msgs[pairs], first slot).
                    let mut alone = [0u8; 32];
                    alone.copy_from_slice(&msgs[pairs][1..33]);
                    set_node(&mut msgs, pairs, &alone);
                }
                len = len.div_ceil(2);
            }
            let mut root = [0u8; 32];
            root.copy_from_slice(&msgs[0][1..33]);
            MerkleRoot::from_byte_array(root)
        }
    }
}

/// Stores node `i` of a level laid out as in [`merkle_root`].
#[inline(always)]
fn set_node(msgs: &mut [[u8; 65]], i: usize, node: &[u8; 32]) {
    let start = 1 + 32 * (i % 2);
    msgs[i / 2][start..start + 32].copy_from_slice(node);
}

/// The index of the first leaf that equals an earlier leaf, or `None` if all are distinct.
///
/// Runs in `O(n log n)`: it sorts the leaves' 8-byte prefixes with their indices, then compares
/// full hashes only within runs of equal prefixes (sorting a run too, so leaves ground to share
/// a prefix cannot make it quadratic). It uses no hash table, so it needs no random seed and
/// hostile leaves cannot slow it down.
pub fn find_duplicate(leaf_hashes: &[[u8; 32]]) -> Option<usize> {
    if leaf_hashes.len() < 2 {
        return None;
    }
    let mut keyed: Vec<(u64, usize)> = leaf_hashes.iter().map(prefix).zip(0..).collect();
    keyed.sort_unstable();
    let mut first: Option<usize> = None;
    for run in keyed
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        let mut full: Vec<(&[u8; 32], usize)> = run
            .iter()
            .filter_map(|&(_, i)| leaf_hashes.get(i).map(|h| (h, i)))
            .collect();
        full.sort_unstable();
        // In each run of equal hashes (sorted by index), the second entry is that run's
        // earliest duplicate; the answer is the smallest of those.
        for w in full.windows(2) {
            if let [(a, _), (b, later)] = w {
                if a == b && !matches!(first, Some(f) if f <= *later) {
                    first = Some(*later);
                }
            }
        }
    }
    first
}

/// The first 8 bytes of a hash, as a sort key.
fn prefix(hash: &[u8; 32]) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *hash;
    u64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// The Merkle root of a block's leaves, rejecting duplicates.
///
/// # Errors
/// [`MerkleError::DuplicateLeaf`] naming the first leaf equal to an earlier one.
pub fn merkle_root_checked(leaf_hashes: &[[u8; 32]]) -> Result<MerkleRoot, MerkleError> {
    match find_duplicate(leaf_hashes) {
        Some(index) => Err(MerkleError::DuplicateLeaf { index }),
        None => Ok(merkle_root(leaf_hashes)),
    }
}

/// A whole tree held in memory, to make many proofs after building it once.
#[derive(Clone)]
pub struct MerkleTree {
    inner: rs_merkle::MerkleTree<Rfc6962Hasher>,
    leaf_count: u32,
}

impl std::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("leaf_count", &self.leaf_count)
            .field("root", &self.root())
            .finish()
    }
}

impl MerkleTree {
    /// Builds the tree over `leaf_hashes` (duplicates are not checked here; see
    /// [`find_duplicate`]).
    ///
    /// # Errors
    /// [`MerkleError::TooManyLeaves`] above [`MAX_LEAVES`].
    pub fn new(leaf_hashes: &[[u8; 32]]) -> Result<Self, MerkleError> {
        let leaf_count =
            u32::try_from(leaf_hashes.len()).map_err(|_| MerkleError::TooManyLeaves {
                leaf_count: leaf_hashes.len(),
            })?;
        Ok(Self {
            inner: rs_merkle::MerkleTree::from_leaves(leaf_hashes),
            leaf_count,
        })
    }

    /// The number of leaves.
    pub fn leaf_count(&self) -> usize {
        self.leaf_count as usize
    }

    /// The root; equal to [`merkle_root`] of the same leaves.
    pub fn root(&self) -> MerkleRoot {
        self.inner
            .root()
            .map_or(EMPTY_ROOT, MerkleRoot::from_byte_array)
    }

    /// The inclusion proof for the leaf at `index`.
    ///
    /// # Errors
    /// [`MerkleError::IndexOutOfRange`] when `index` is not below the leaf count.
    pub fn proof(&self, index: usize) -> Result<MerkleProof, MerkleError> {
        let out_of_range = MerkleError::IndexOutOfRange {
            index,
            leaf_count: self.leaf_count(),
        };
        let leaf_index = u32::try_from(index).map_err(|_| out_of_range.clone())?;
        if leaf_index >= self.leaf_count {
            return Err(out_of_range);
        }
        let siblings = self.inner.proof(&[index]).proof_hashes().to_vec();
        // rs_merkle returns exactly the RFC 6962 audit path; a different length would be a bug
        // there, and is reported rather than producing a proof that cannot decode.
        if siblings.len() != path_len(leaf_index, self.leaf_count) {
            return Err(MerkleError::ProofMismatch);
        }
        Ok(MerkleProof {
            leaf_index,
            leaf_count: self.leaf_count,
            siblings,
        })
    }
}

/// The inclusion proof for `leaf_hashes[index]` (builds the tree; for many proofs over one tree
/// use [`MerkleTree::proof`]).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] when `index` is not below `leaf_hashes.len()`,
/// [`MerkleError::TooManyLeaves`] above [`MAX_LEAVES`].
pub fn proof(leaf_hashes: &[[u8; 32]], index: usize) -> Result<MerkleProof, MerkleError> {
    if index >= leaf_hashes.len() {
        return Err(MerkleError::IndexOutOfRange {
            index,
            leaf_count: leaf_hashes.len(),
        });
    }
    MerkleTree::new(leaf_hashes)?.proof(index)
}

/// The number of siblings on the path from leaf `index` to the root of a tree of `leaf_count`
/// leaves: one per level, except where the node is promoted alone.
fn path_len(index: u32, leaf_count: u32) -> usize {
    let (mut index, mut size) = (u64::from(index), u64::from(leaf_count));
    let mut len = 0;
    while size > 1 {
        if index % 2 == 1 || index + 1 < size {
            len += 1;
        }
        index /= 2;
        size = size.div_ceil(2);
    }
    len
}

/// The height of a tree of `leaf_count >= 1` leaves, `ceil(log2(leaf_count))`: the longest path.
fn max_path_len(leaf_count: u32) -> usize {
    (u32::BITS - leaf_count.saturating_sub(1).leading_zeros()) as usize
}

/// An inclusion proof for one leaf: its index, the tree's leaf count, and the sibling hashes
/// from the leaf's level up. Its fields are always consistent (the sibling count is exactly the
/// path length for the index and count): it is made only by [`proof`] or by decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleProof {
    leaf_index: u32,
    leaf_count: u32,
    siblings: Vec<[u8; 32]>,
}

impl MerkleProof {
    /// The index of the proven leaf.
    pub fn leaf_index(&self) -> usize {
        self.leaf_index as usize
    }

    /// The number of leaves in the tree, as the proof claims it (see the
    /// [module docs](self) on what the root does and does not authenticate).
    pub fn leaf_count(&self) -> usize {
        self.leaf_count as usize
    }

    /// The sibling hashes, from the leaf's level up.
    pub fn siblings(&self) -> &[[u8; 32]] {
        &self.siblings
    }

    /// The root this proof leads to from `leaf_hash`.
    ///
    /// # Errors
    /// [`MerkleError::ProofMismatch`] if the proof cannot be evaluated (never for a proof made
    /// by [`proof`] or decoded).
    pub fn root_from(&self, leaf_hash: &[u8; 32]) -> Result<MerkleRoot, MerkleError> {
        if self.leaf_index >= self.leaf_count
            || self.siblings.len() != path_len(self.leaf_index, self.leaf_count)
        {
            return Err(MerkleError::ProofMismatch);
        }
        RsMerkleProof::<Rfc6962Hasher>::new(self.siblings.clone())
            .root(
                &[self.leaf_index as usize],
                &[*leaf_hash],
                self.leaf_count as usize,
            )
            .map(MerkleRoot::from_byte_array)
            .map_err(|_| MerkleError::ProofMismatch)
    }

    /// Checks that the leaf with hash `leaf_hash` is in the tree with root `root`. Needs nothing
    /// else (light clients use it with a block header's root).
    ///
    /// # Errors
    /// [`MerkleError::ProofMismatch`] when the proof does not lead from `leaf_hash` to `root`.
    pub fn verify(&self, root: &MerkleRoot, leaf_hash: &[u8; 32]) -> Result<(), MerkleError> {
        if self.root_from(leaf_hash)? == *root {
            Ok(())
        } else {
            Err(MerkleError::ProofMismatch)
        }
    }
}

impl Encode for MerkleProof {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(PROOF_VERSION);
        out.put_u32(self.leaf_count);
        out.put_u32(self.leaf_index);
        out.put_list(&self.siblings);
    }
}

impl Decode for MerkleProof {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("merkle proof", PROOF_VERSION)?;
        let leaf_count = r.u32()?;
        if leaf_count == 0 {
            return Err(DecodeError::InvalidValue {
                what: "merkle proof leaf count",
                reason: "zero",
            });
        }
        let leaf_index = r.u32()?;
        if leaf_index >= leaf_count {
            return Err(DecodeError::InvalidValue {
                what: "merkle proof leaf index",
                reason: "not below the leaf count",
            });
        }
        // At most ceil(log2(leaf_count)) <= 32 siblings, checked against the input before any
        // allocation.
        let n = r.length("merkle proof siblings", max_path_len(leaf_count), 32)?;
        if n != path_len(leaf_index, leaf_count) {
            return Err(DecodeError::InvalidValue {
                what: "merkle proof siblings",
                reason: "count is not the path length for the leaf index and count",
            });
        }
        let mut siblings = Vec::with_capacity(n);
        for _ in 0..n {
            siblings.push(r.array()?);
        }
        Ok(Self {
            leaf_index,
            leaf_count,
            siblings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::sha256;
    use proptest::prelude::*;

    /// RFC 6962 section 2.1, written down as directly as possible: the independent reference.
    fn reference_mth(data: &[Vec<u8>]) -> [u8; 32] {
        let n = data.len();
        match n {
            0 => sha256(b""),
            1 => {
                let mut m = vec![0x00];
                m.extend_from_slice(&data[0]);
                sha256(&m)
            }
            _ => {
                let k = largest_power_of_two_below(n);
                let mut m = vec![0x01];
                m.extend_from_slice(&reference_mth(&data[..k]));
                m.extend_from_slice(&reference_mth(&data[k..]));
                sha256(&m)
            }
        }
    }

    /// RFC 6962 section 2.1.1, `PATH(m, D[n])`: the audit path, leaf level first.
    fn reference_path(m: usize, data: &[Vec<u8>]) -> Vec<[u8; 32]> {
        let n = data.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = largest_power_of_two_below(n);
        if m < k {
            let mut p = reference_path(m, &data[..k]);
            p.push(reference_mth(&data[k..]));
            p
        } else {
            let mut p = reference_path(m - k, &data[k..]);
            p.push(reference_mth(&data[..k]));
            p
        }
    }

    fn largest_power_of_two_below(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn leaf_data(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("tx-{i}").into_bytes().repeat(1 + i % 3))
            .collect()
    }

    fn hashes(data: &[Vec<u8>]) -> Vec<[u8; 32]> {
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn hashes_use_the_rfc6962_prefixes() {
        assert_eq!(leaf_hash(b"abc"), sha256(b"\x00abc"));
        let (l, r) = ([7u8; 32], [9u8; 32]);
        let mut m = vec![0x01];
        m.extend_from_slice(&l);
        m.extend_from_slice(&r);
        assert_eq!(node_hash(&l, &r), sha256(&m));
        assert_eq!(EMPTY_ROOT.to_byte_array(), sha256(b""));
        assert_eq!(merkle_root(&[]), EMPTY_ROOT);
        assert_eq!(MerkleTree::new(&[]).unwrap().root(), EMPTY_ROOT);
        let one = leaf_hash(b"only");
        assert_eq!(merkle_root(&[one]).to_byte_array(), one);
    }

    #[test]
    fn known_certificate_transparency_roots() {
        // The leaves and roots of the Certificate Transparency reference tests.
        let data: Vec<Vec<u8>> = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| hex::decode(h).unwrap())
        .collect();
        let leaves = hashes(&data);
        assert_eq!(
            merkle_root(&leaves[..1]).to_string(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            merkle_root(&leaves).to_string(),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
    }

    proptest! {
        #[test]
        fn root_matches_reference_and_rs_merkle(n in 0usize..300) {
            let data = leaf_data(n);
            let leaves = hashes(&data);
            let expected = reference_mth(&data);
            prop_assert_eq!(merkle_root(&leaves).to_byte_array(), expected);
            prop_assert_eq!(MerkleTree::new(&leaves).unwrap().root().to_byte_array(), expected);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = MerkleProof::from_bytes(&bytes) {
                prop_assert_eq!(p.to_bytes(), bytes);
                let _ = p.verify(&EMPTY_ROOT, &[0u8; 32]);
            }
        }

        #[test]
        fn structured_hostile_proofs_never_panic(
            count in any::<u32>(),
            index in any::<u32>(),
            siblings in 0u32..40,
            extra in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut bytes = vec![PROOF_VERSION];
            bytes.put_u32(count);
            bytes.put_u32(index);
            bytes.put_u32(siblings);
            bytes.extend_from_slice(&vec![0xab; siblings as usize * 32]);
            bytes.extend_from_slice(&extra);
            if let Ok(p) = MerkleProof::from_bytes(&bytes) {
                prop_assert_eq!(p.to_bytes(), bytes);
                prop_assert!(p.verify(&EMPTY_ROOT, &[0u8; 32]).is_err());
            }
        }
    }

    #[test]
    fn proofs_match_the_rfc6962_audit_path_and_verify_for_every_index() {
        for n in (1..=70).chain([127, 128, 129, 255, 256, 257]) {
            let data = leaf_data(n);
            let leaves = hashes(&data);
            let tree = MerkleTree::new(&leaves).unwrap();
            let root = merkle_root(&leaves);
            assert_eq!(tree.root(), root);
            assert_eq!(tree.leaf_count(), n);
            for (i, leaf) in leaves.iter().enumerate() {
                let p = tree.proof(i).unwrap();
                assert_eq!(p.siblings(), &reference_path(i, &data)[..], "n={n} i={i}");
                assert_eq!((p.leaf_index(), p.leaf_count()), (i, n));
                p.verify(&root, leaf).unwrap();
                let decoded = MerkleProof::from_bytes(&p.to_bytes()).unwrap();
                assert_eq!(decoded, p);
                decoded.verify(&root, leaf).unwrap();
            }
        }
        assert_eq!(
            proof(&hashes(&leaf_data(9)), 4).unwrap(),
            MerkleTree::new(&hashes(&leaf_data(9)))
                .unwrap()
                .proof(4)
                .unwrap()
        );
    }

    #[test]
    fn wrong_leaf_index_or_root_fails() {
        for n in [2usize, 3, 5, 8, 13] {
            let leaves = hashes(&leaf_data(n));
            let root = merkle_root(&leaves);
            let other_root = merkle_root(&leaves[..n - 1]);
            for i in 0..n {
                let p = proof(&leaves, i).unwrap();
                for (j, other) in leaves.iter().enumerate() {
                    if j != i {
                        assert_eq!(p.verify(&root, other), Err(MerkleError::ProofMismatch));
                        // A proof for leaf j presented for leaf i's hash.
                        let q = proof(&leaves, j).unwrap();
                        assert!(q.verify(&root, &leaves[i]).is_err());
                    }
                }
                assert_eq!(
                    p.verify(&other_root, &leaves[i]),
                    Err(MerkleError::ProofMismatch)
                );
                assert!(p.verify(&EMPTY_ROOT, &leaves[i]).is_err());
            }
        }
    }

    #[test]
    fn inner_node_presented_as_leaf_fails() {
        // Second-preimage attempt: tree [a, b, c, d]; present the node (a, b) as a leaf of the
        // two-"leaf" tree [(a,b), (c,d)], whose naive root would equal the real root.
        let leaves = hashes(&leaf_data(4));
        let root = merkle_root(&leaves);
        let ab = node_hash(&leaves[0], &leaves[1]);
        let cd = node_hash(&leaves[2], &leaves[3]);
        assert_eq!(node_hash(&ab, &cd), root.to_byte_array());
        // The forged proof: index 0 of 2, sibling cd. With the 0x00 leaf prefix, the leaf whose
        // data is `ab` hashes to leaf_hash(ab) != ab, so it cannot reach the root.
        let forged = proof(&[ab, cd], 0).unwrap();
        assert!(forged.verify(&root, &leaf_hash(&ab)).is_err());
        // Even given the raw node as "leaf hash", the 2-leaf proof is only valid if the attacker
        // can make a leaf whose hash is `ab`: a SHA-256 preimage. And the tree of the leaf
        // hashes `[ab, cd]` is the same tree, so the root is unchanged only for that preimage.
        assert_eq!(merkle_root(&[ab, cd]), root);
        // A leaf whose data is the 64-byte concatenation a || b is not the node (a, b).
        let mut concat = leaves[0].to_vec();
        concat.extend_from_slice(&leaves[1]);
        assert_ne!(leaf_hash(&concat), ab);
        let fake = hashes(&[concat, [leaves[2], leaves[3]].concat()]);
        assert_ne!(merkle_root(&fake), root);
    }

    #[test]
    fn odd_leaf_is_promoted_not_duplicated() {
        let leaves = hashes(&leaf_data(3));
        let root = merkle_root(&leaves);
        assert_eq!(
            root.to_byte_array(),
            node_hash(&node_hash(&leaves[0], &leaves[1]), &leaves[2])
        );
        // Bitcoin's tree would give [a, b, c] and [a, b, c, c] the same root; here they differ.
        let mut padded = leaves.clone();
        padded.push(leaves[2]);
        assert_ne!(merkle_root(&padded), root);
    }

    #[test]
    fn duplicates_are_found_and_rejected() {
        let leaves = hashes(&leaf_data(10));
        assert_eq!(find_duplicate(&leaves), None);
        assert_eq!(find_duplicate(&[]), None);
        assert_eq!(find_duplicate(&leaves[..1]), None);
        assert_eq!(merkle_root_checked(&leaves), Ok(merkle_root(&leaves)));
        let mut dup = leaves.clone();
        dup[7] = dup[2];
        dup[9] = dup[8];
        dup[5] = dup[8];
        // 5 and 8 are equal (to old leaf 8), 7 equals 2, 9 equals 8: the first duplicate is 7.
        assert_eq!(find_duplicate(&dup), Some(7));
        let err = merkle_root_checked(&dup).unwrap_err();
        assert_eq!(err, MerkleError::DuplicateLeaf { index: 7 });
        assert_eq!(err.to_string(), "leaf 7 duplicates an earlier leaf");
        let same = vec![[1u8; 32]; 3];
        assert_eq!(find_duplicate(&same), Some(1));
    }

    #[test]
    fn find_duplicate_with_shared_prefixes() {
        // Leaves that agree on their first 8 bytes (as ground ones could) take the slow path.
        let mut leaves: Vec<[u8; 32]> = (0..50u8)
            .map(|i| {
                let mut h = [0x42; 32];
                h[31] = i;
                h
            })
            .collect();
        assert_eq!(find_duplicate(&leaves), None);
        leaves[40] = leaves[3];
        leaves[30] = leaves[45];
        assert_eq!(find_duplicate(&leaves), Some(40));
        leaves[40] = [1; 32];
        assert_eq!(find_duplicate(&leaves), Some(45));
    }

    proptest! {
        #[test]
        fn find_duplicate_matches_quadratic_scan(
            picks in proptest::collection::vec(0u8..40, 0..60)
        ) {
            let leaves: Vec<[u8; 32]> = picks.iter().map(|&p| leaf_hash(&[p])).collect();
            let expected = (0..leaves.len()).find(|&j| leaves[..j].contains(&leaves[j]));
            prop_assert_eq!(find_duplicate(&leaves), expected);
        }
    }

    #[test]
    fn every_error_message() {
        let leaves = hashes(&leaf_data(3));
        let err = proof(&leaves, 3).unwrap_err();
        assert_eq!(
            err,
            MerkleError::IndexOutOfRange {
                index: 3,
                leaf_count: 3
            }
        );
        assert_eq!(
            err.to_string(),
            "leaf index 3 is out of range for a tree of 3 leaves"
        );
        assert_eq!(
            proof(&[], 0).unwrap_err().to_string(),
            "leaf index 0 is out of range for a tree of 0 leaves"
        );
        let tree = MerkleTree::new(&leaves).unwrap();
        assert!(matches!(
            tree.proof(usize::MAX),
            Err(MerkleError::IndexOutOfRange { .. })
        ));
        assert_eq!(
            MerkleError::TooManyLeaves {
                leaf_count: 1 << 33
            }
            .to_string(),
            "a tree of 8589934592 leaves is above the limit of 4294967295"
        );
        assert_eq!(
            MerkleError::DuplicateLeaf { index: 2 }.to_string(),
            "leaf 2 duplicates an earlier leaf"
        );
        assert_eq!(
            MerkleError::ProofMismatch.to_string(),
            "the Merkle proof does not match the root and leaf"
        );
    }

    #[test]
    fn encoding_layout_and_decode_errors() {
        let leaves = hashes(&leaf_data(3));
        let p = proof(&leaves, 2).unwrap();
        let bytes = p.to_bytes();
        let mut expected = vec![1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1];
        expected.extend_from_slice(&node_hash(&leaves[0], &leaves[1]));
        assert_eq!(bytes, expected);

        let decode_err = |b: &[u8]| MerkleProof::from_bytes(b).unwrap_err().to_string();
        let mut b = bytes.clone();
        b[0] = 2;
        assert_eq!(decode_err(&b), "merkle proof: unknown format version 2");
        assert_eq!(
            decode_err(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            "merkle proof leaf count: invalid value (zero)"
        );
        assert_eq!(
            decode_err(&[1, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 0]),
            "merkle proof leaf index: invalid value (not below the leaf count)"
        );
        assert_eq!(
            decode_err(&[1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3]),
            "merkle proof siblings: length 3 is above the limit of 2"
        );
        assert_eq!(
            decode_err(&[1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2]),
            "merkle proof siblings: length 2 needs at least 64 byte(s), only 0 left"
        );
        // Index 2 of 3 has a path of one sibling, not zero.
        assert_eq!(
            decode_err(&[1, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0]),
            "merkle proof siblings: invalid value \
             (count is not the path length for the leaf index and count)"
        );
        let mut b = bytes.clone();
        b.push(0);
        assert_eq!(decode_err(&b), "1 trailing byte(s) after the value");
        assert_eq!(
            decode_err(&bytes[..bytes.len() - 1]),
            "merkle proof siblings: length 1 needs at least 32 byte(s), only 31 left"
        );
        // A single-leaf tree has an empty proof.
        let single = proof(&leaves[..1], 0).unwrap();
        assert_eq!(single.to_bytes(), [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        single
            .verify(&merkle_root(&leaves[..1]), &leaves[0])
            .unwrap();
    }

    #[test]
    fn path_lengths() {
        assert_eq!(max_path_len(1), 0);
        assert_eq!(max_path_len(2), 1);
        assert_eq!(max_path_len(3), 2);
        assert_eq!(max_path_len(4), 2);
        assert_eq!(max_path_len(5), 3);
        assert_eq!(max_path_len(u32::MAX), 32);
        assert_eq!(path_len(u32::MAX - 1, u32::MAX), 31);
        assert_eq!(path_len(1 << 31, (1 << 31) + 1), 1);
        assert_eq!(path_len(0, u32::MAX), 32);
        for n in 1..200u32 {
            for i in 0..n {
                assert!(path_len(i, n) <= max_path_len(n));
            }
            assert_eq!(path_len(0, n), max_path_len(n));
        }
    }

    /// The L/R directions of a proof (true = the node is a right child), from the leaf up,
    /// skipping levels where the node is promoted: what the root actually authenticates.
    fn directions(index: usize, count: usize) -> Vec<bool> {
        let (mut i, mut size, mut out) = (index, count, Vec::new());
        while size > 1 {
            if i % 2 == 1 {
                out.push(true);
            } else if i + 1 < size {
                out.push(false);
            }
            i /= 2;
            size = size.div_ceil(2);
        }
        out
    }

    #[test]
    fn root_does_not_commit_to_leaf_count() {
        // Documented limitation (RFC 6962 roots do not include the size): leaf 0 of 5 and leaf 0
        // of 7 have the same path shape, so a relabelled proof verifies; a verifier compares
        // leaf_count() with the header's count.
        let leaves = hashes(&leaf_data(5));
        let root = merkle_root(&leaves);
        let mut b = proof(&leaves, 0).unwrap().to_bytes();
        b[4] = 7;
        let relabelled = MerkleProof::from_bytes(&b).unwrap();
        relabelled.verify(&root, &leaves[0]).unwrap();
        assert_eq!(relabelled.leaf_count(), 7);
    }

    #[test]
    fn flipping_any_byte_fails_decode_or_verify() {
        for n in [1usize, 2, 3, 5, 6, 7, 8, 11, 16, 33] {
            let leaves = hashes(&leaf_data(n));
            let root = merkle_root(&leaves);
            for i in [0, n / 2, n - 1] {
                let p = proof(&leaves, i).unwrap();
                let bytes = p.to_bytes();
                for pos in 0..bytes.len() {
                    for bit in 0..8 {
                        let mut b = bytes.clone();
                        b[pos] ^= 1 << bit;
                        let Ok(q) = MerkleProof::from_bytes(&b) else {
                            continue;
                        };
                        if q.verify(&root, &leaves[i]).is_err() {
                            continue;
                        }
                        // The only way a tampered proof still verifies: a relabelled leaf
                        // count/index with the very same path, which the root does not commit
                        // to (the module docs say so). The count then differs from the truth.
                        assert!((1..9).contains(&pos), "n={n} i={i} pos={pos}");
                        assert_eq!(q.siblings(), p.siblings());
                        assert_eq!(directions(q.leaf_index(), q.leaf_count()), directions(i, n));
                        assert_ne!(q.leaf_count(), n);
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn tampered_proof_bytes_fail(
            n in 1usize..80,
            i_seed in any::<usize>(),
            pos_seed in any::<usize>(),
            xor in 1u8..=255,
        ) {
            let leaves = hashes(&leaf_data(n));
            let root = merkle_root(&leaves);
            let i = i_seed % n;
            let p = proof(&leaves, i).unwrap();
            let mut b = p.to_bytes();
            // Version byte and siblings: never the leaf count / index fields (bytes 1..9).
            let positions: Vec<usize> = (0..b.len()).filter(|&k| k == 0 || k >= 9).collect();
            let pos = positions[pos_seed % positions.len()];
            b[pos] ^= xor;
            let ok = MerkleProof::from_bytes(&b)
                .map(|q| q.verify(&root, &leaves[i]).is_ok())
                .unwrap_or(false);
            prop_assert!(!ok);
        }
    }

    #[test]
    fn rs_merkle_hasher_is_rfc6962() {
        use rs_merkle::Hasher;
        assert_eq!(Rfc6962Hasher::hash(b"x"), leaf_hash(b"x"));
        let (l, r) = ([1u8; 32], [2u8; 32]);
        assert_eq!(
            Rfc6962Hasher::concat_and_hash(&l, Some(&r)),
            node_hash(&l, &r)
        );
        assert_eq!(Rfc6962Hasher::concat_and_hash(&l, None), l);
        let tree = MerkleTree::new(&[l, r]).unwrap();
        assert!(format!("{tree:?}").contains("leaf_count: 2"));
    }
}
