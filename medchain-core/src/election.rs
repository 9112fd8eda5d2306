//! Miner election: who assembles the next block.
//!
//! The paper seeds the election from each contributor's "random number encrypted with the
//! node's private key". We make that number a **verifiable random function** output
//! (ECVRF-RISTRETTO255-SHA512, an RFC 9381 ciphersuite over the prime-order ristretto255 group
//! built on edwards25519, from the `vrf-r255` crate): it is unique for a key and an input, so a
//! node cannot grind it, and anyone can check it against the node's VRF public key.
//!
//! * Every block at height `h` carries an [`ElectionTicket`] from its miner and from each
//!   contributor: a VRF proof over [`ticket_input`]`(chain, h, seed(parent))`.
//! * The seed chain is `seed(genesis) = tagged_hash("medchain/v1/election-seed", genesis hash)`
//!   and `seed(b) = tagged_hash("medchain/v1/election-seed", seed(parent) || miner VRF output)`.
//!   Only the **miner's** output enters the seed: if contributors' outputs entered it too, the
//!   miner could grind the seed by choosing which contributors' transactions to include
//!   (2^k seeds for k contributors). See `docs/adr/0001-miner-election.md`.
//! * The candidates for the block after `b` are the trusted validators ordered by
//!   `tagged_hash("medchain/v1/election-rank", seed(b) || key)`; attempt `k` (the `k`-th round
//!   after the parent's round without a block) is served by candidate `k mod n`. A silent miner
//!   is thus replaced by the next-ranked one and the chain never stalls on one node.
//!
//! A node's only lever is to withhold its own block (forfeiting it to the next candidate): it can
//! never choose who is elected. Each validator is first-ranked with probability `1/n`.

use std::fmt;

use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{digest_newtype, domain, tagged_hash, tagged_hash_parts, BlockHash};
use crate::keys::{Identity, VerifyKey};

digest_newtype!(
    /// The election seed after a block (see the module docs).
    ElectionSeed
);

/// Length of a VRF proof (ristretto255: Gamma 32 + c 16 + s 32).
pub const TICKET_LEN: usize = 80;

/// An election ticket: a VRF proof by one node for one height.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ElectionTicket([u8; TICKET_LEN]);

impl ElectionTicket {
    /// Wraps proof bytes (checked when verified).
    pub const fn from_byte_array(bytes: [u8; TICKET_LEN]) -> Self {
        Self(bytes)
    }

    /// The proof bytes.
    pub const fn to_byte_array(self) -> [u8; TICKET_LEN] {
        self.0
    }
}

impl fmt::Debug for ElectionTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ElectionTicket({}…)", hex::encode(&self.0[..8]))
    }
}

impl Encode for ElectionTicket {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for ElectionTicket {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.array().map(Self)
    }
}

/// A node's VRF public key (ristretto255), checked to be a valid non-identity point.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VrfPublicKey([u8; 32]);

impl VrfPublicKey {
    /// Parses and checks 32 bytes.
    ///
    /// # Errors
    /// [`DecodeError::InvalidValue`] if the bytes are not a valid ristretto255 VRF key.
    pub fn from_byte_array(bytes: [u8; 32]) -> Result<Self, DecodeError> {
        if vrf_r255::PublicKey::from_bytes(bytes).is_some() {
            Ok(Self(bytes))
        } else {
            Err(DecodeError::InvalidValue {
                what: "VRF public key",
                reason: "not a valid ristretto255 point",
            })
        }
    }

    /// The key bytes.
    pub const fn to_byte_array(self) -> [u8; 32] {
        self.0
    }

    /// Verifies `ticket` for `input`, giving the 64-byte VRF output.
    ///
    /// # Errors
    /// [`ElectionError::BadTicket`].
    pub fn verify(&self, input: &[u8], ticket: &ElectionTicket) -> Result<[u8; 64], ElectionError> {
        let pk = vrf_r255::PublicKey::from_bytes(self.0).ok_or(ElectionError::BadTicket)?;
        let proof = vrf_r255::Proof::from_bytes(ticket.0).ok_or(ElectionError::BadTicket)?;
        Option::from(pk.verify(input, &proof)).ok_or(ElectionError::BadTicket)
    }
}

impl fmt::Debug for VrfPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VrfPublicKey({})", hex::encode(self.0))
    }
}

impl Encode for VrfPublicKey {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.0);
    }
}

impl Decode for VrfPublicKey {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::from_byte_array(r.array()?)
    }
}

/// A node's VRF secret key, derived from its identity so that it comes back with a restored
/// backup. Zeroized on drop; never printed.
pub struct VrfSecret {
    bytes: Zeroizing<[u8; 32]>,
    public: VrfPublicKey,
}

impl fmt::Debug for VrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VrfSecret")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// Election checks failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// A ticket does not verify under the node's VRF key for this input.
    #[error("election ticket does not verify")]
    BadTicket,
    /// There are no candidates.
    #[error("no trusted validators to elect from")]
    NoCandidates,
    /// The derived VRF key was degenerate (probability 2^-252; a broken identity).
    #[error("could not derive a VRF key from this identity")]
    KeyDerivation,
}

impl VrfSecret {
    /// Derives the VRF key of an identity.
    ///
    /// # Errors
    /// [`ElectionError::KeyDerivation`] only for a degenerate (zero) derived scalar.
    pub fn derive(identity: &Identity) -> Result<Self, ElectionError> {
        let mut bytes = identity.derive_secret(domain::VRF_KEY, b"");
        // Clearing the top four bits makes the scalar < 2^252 < l, hence canonical.
        bytes[31] &= 0x0f;
        let sk: Option<vrf_r255::SecretKey> = vrf_r255::SecretKey::from_bytes(*bytes).into();
        let sk = sk.ok_or(ElectionError::KeyDerivation)?;
        let public = VrfPublicKey(vrf_r255::PublicKey::from(sk).to_bytes());
        Ok(Self { bytes, public })
    }

    /// The public key (registered in genesis).
    pub fn public(&self) -> VrfPublicKey {
        self.public
    }

    /// Proves the VRF on `input`.
    pub fn prove(&self, input: &[u8]) -> ElectionTicket {
        // `derive` checked these bytes; re-parsing cannot fail.
        let sk: Option<vrf_r255::SecretKey> = vrf_r255::SecretKey::from_bytes(*self.bytes).into();
        match sk {
            Some(sk) => ElectionTicket(sk.prove(input).to_bytes()),
            None => unreachable!("VRF secret bytes were validated at derivation"),
        }
    }
}

/// The VRF input of a ticket for `height` on chain `chain`, after a parent with seed `seed`:
/// `"medchain/v1/election-ticket" || chain || height (u64 BE) || seed`.
pub fn ticket_input(chain: &BlockHash, height: u64, parent_seed: &ElectionSeed) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + 32 + 8 + 32);
    out.put_raw(domain::ELECTION_TICKET.as_bytes());
    chain.encode_to(&mut out);
    out.put_u64(height);
    parent_seed.encode_to(&mut out);
    out
}

/// The seed of the genesis block.
pub fn genesis_seed(genesis: &BlockHash) -> ElectionSeed {
    ElectionSeed::from_byte_array(tagged_hash(domain::ELECTION_SEED, genesis.as_byte_array()))
}

/// The seed after a block whose miner's VRF output is `miner_output`.
pub fn next_seed(parent_seed: &ElectionSeed, miner_output: &[u8; 64]) -> ElectionSeed {
    ElectionSeed::from_byte_array(tagged_hash_parts(
        domain::ELECTION_SEED,
        &[parent_seed.as_byte_array(), miner_output],
    ))
}

/// The candidates in election order for the block after one with seed `seed`: indices into
/// `validators`, first-ranked first.
pub fn ranking(seed: &ElectionSeed, validators: &[VerifyKey]) -> Vec<usize> {
    let mut keyed: Vec<([u8; 32], usize)> = validators
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                tagged_hash_parts(
                    domain::ELECTION_RANK,
                    &[seed.as_byte_array(), v.as_byte_array()],
                ),
                i,
            )
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// The validator (index into `validators`) elected for `attempt` (0 for the first round after
/// the parent's, 1 after one timed-out round, ...).
///
/// # Errors
/// [`ElectionError::NoCandidates`] for an empty validator set.
pub fn elected(
    seed: &ElectionSeed,
    validators: &[VerifyKey],
    attempt: u64,
) -> Result<usize, ElectionError> {
    if validators.is_empty() {
        return Err(ElectionError::NoCandidates);
    }
    let order = ranking(seed, validators);
    let k = (attempt % validators.len() as u64) as usize;
    Ok(order[k])
}

/// Whether two tickets are equal, in constant time.
pub fn tickets_equal(a: &ElectionTicket, b: &ElectionTicket) -> bool {
    a.0.ct_eq(&b.0).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn ids(n: usize, seed: u64) -> Vec<Identity> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (0..n).map(|_| Identity::generate(&mut rng)).collect()
    }

    #[test]
    fn tickets_are_unique_and_verifiable() {
        let id = &ids(1, 1)[0];
        let vrf = VrfSecret::derive(id).unwrap();
        let chain = BlockHash::from_byte_array([1; 32]);
        let seed = genesis_seed(&chain);
        let input = ticket_input(&chain, 1, &seed);
        let t1 = vrf.prove(&input);
        let t2 = vrf.prove(&input);
        assert!(tickets_equal(&t1, &t2), "a VRF proof is deterministic");
        let out = vrf.public().verify(&input, &t1).unwrap();
        // Another input, another key or a flipped byte fails.
        assert_eq!(
            vrf.public().verify(&ticket_input(&chain, 2, &seed), &t1),
            Err(ElectionError::BadTicket)
        );
        let other = VrfSecret::derive(&ids(2, 9)[1]).unwrap();
        assert_eq!(
            other.public().verify(&input, &t1),
            Err(ElectionError::BadTicket)
        );
        let mut bad = t1.to_byte_array();
        bad[40] ^= 1;
        assert!(vrf
            .public()
            .verify(&input, &ElectionTicket::from_byte_array(bad))
            .is_err());
        assert_ne!(next_seed(&seed, &out), seed);
        assert!(!format!("{vrf:?}").contains(&hex::encode(*vrf.bytes)));
        assert_eq!(
            ElectionError::BadTicket.to_string(),
            "election ticket does not verify"
        );
    }

    #[test]
    fn vrf_key_comes_back_with_the_identity() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let id = Identity::generate(&mut rng);
        let backup = id
            .export_backup(
                b"pw",
                crate::keys::BackupParams::dangerous_test_only(),
                &mut rng,
            )
            .unwrap();
        let restored = Identity::restore_backup(&backup, b"pw").unwrap();
        assert_eq!(
            VrfSecret::derive(&id).unwrap().public(),
            VrfSecret::derive(&restored).unwrap().public()
        );
    }

    #[test]
    fn election_is_uniform_over_validators() {
        // Chi-square test of first-ranked counts over 20,000 seeds, 5 validators.
        let keys: Vec<VerifyKey> = ids(5, 2).iter().map(Identity::verify_key).collect();
        let trials = 20_000u32;
        let mut counts = [0u32; 5];
        for i in 0..trials {
            let seed = ElectionSeed::from_byte_array(tagged_hash("test-seed", &i.to_be_bytes()));
            counts[elected(&seed, &keys, 0).unwrap()] += 1;
        }
        let expected = f64::from(trials) / 5.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum();
        // 4 degrees of freedom: p = 0.001 at 18.47.
        assert!(chi2 < 18.47, "chi2 {chi2} counts {counts:?}");
    }

    #[test]
    fn fallback_walks_the_ranking() {
        let keys: Vec<VerifyKey> = ids(4, 3).iter().map(Identity::verify_key).collect();
        let seed = ElectionSeed::from_byte_array([7; 32]);
        let order = ranking(&seed, &keys);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        for k in 0..8u64 {
            assert_eq!(elected(&seed, &keys, k).unwrap(), order[(k % 4) as usize]);
        }
        assert_eq!(elected(&seed, &[], 0), Err(ElectionError::NoCandidates));
    }

    #[test]
    fn withholding_or_grinding_cannot_choose_the_miner() {
        // The next seed depends only on the parent seed and the miner's unique VRF output. A
        // miner that wants a chosen successor has exactly two options: publish (seed from its
        // unique output) or withhold (the next-ranked candidate's unique output is used). It
        // cannot produce a third seed: any other ticket fails verification.
        let nodes = ids(4, 4);
        let keys: Vec<VerifyKey> = nodes.iter().map(Identity::verify_key).collect();
        let chain = BlockHash::from_byte_array([2; 32]);
        let parent_seed = genesis_seed(&chain);
        let input = ticket_input(&chain, 1, &parent_seed);
        let miner = elected(&parent_seed, &keys, 0).unwrap();
        let vrf = VrfSecret::derive(&nodes[miner]).unwrap();
        let honest = vrf.prove(&input);
        // Grinding: every alternative ticket the miner could try is rejected.
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        for _ in 0..200 {
            let mut forged = [0u8; TICKET_LEN];
            rand_core::Rng::fill_bytes(&mut rng, &mut forged);
            let forged = ElectionTicket::from_byte_array(forged);
            assert!(vrf.public().verify(&input, &forged).is_err());
        }
        // Proving over another input (e.g. a different height or a made-up seed) does not
        // verify for this block's input either.
        let other = vrf.prove(&ticket_input(
            &chain,
            1,
            &ElectionSeed::from_byte_array([9; 32]),
        ));
        assert!(vrf.public().verify(&input, &other).is_err());
        let outcomes: std::collections::BTreeSet<usize> = [honest]
            .iter()
            .map(|t| {
                let out = vrf.public().verify(&input, t).unwrap();
                elected(&next_seed(&parent_seed, &out), &keys, 0).unwrap()
            })
            .collect();
        assert_eq!(outcomes.len(), 1, "publishing yields exactly one successor");
    }
}
