//! Light-client inclusion proofs: "this transaction is in a committed block of this network",
//! checkable with nothing but the network's genesis.
//!
//! A patient's wallet holds no chain and no network key. It gets from a node an
//! [`InclusionProof`] — the transaction (its payload pruned: the id and the Merkle leaf stay the
//! same), the Merkle proof of its leaf, the block header, and the block's [`CommitProof`] (a
//! certified child in the next round) — and checks everything against the genesis it pins:
//!
//! 1. the header belongs to the pinned chain (`header.chain == genesis.hash()`);
//! 2. the transaction's contributor signature verifies strictly, and its leaf
//!    `SHA-256(0x00 || tx id || signature)` is in the header's Merkle root at a position of a
//!    tree of exactly `header.tx_count` leaves;
//! 3. the header chain that follows (empty for a block committed by its own certified child)
//!    links by hash from the block to a descendant `D` of the same chain;
//! 4. the commit proof's child extends `D` (its `prev` is `D`'s hash, so any change to a header
//!    is caught here) in the next round, which commits `D` and with it every ancestor of `D`;
//! 5. the child's quorum certificate holds valid votes from a quorum of distinct validators of
//!    the genesis trusted set.
//!
//! Under the two-chain rule a block whose child is not in the next round (a timeout came in
//! between) is committed only when a later descendant is; its proof then carries the headers up
//! to the first descendant committed directly ([`commit_path`] finds them on a stored chain).
//!
//! What it proves and what it does not: the transaction with this id was committed at this
//! height, and its clear envelope (kind, contributor, timestamp) is as shown. The body is
//! encrypted under the network key, so the proof cannot show a light client *what* the
//! transaction says (which record, which consent); the client compares the id with the one it
//! expects (the id its node reported when the transaction was submitted, or the `tx_id` of an
//! audit entry). A node can also withhold transactions: a proof shows presence, never absence.
//!
//! A node makes the proof with [`InclusionProof::new`] from a committed block and its commit
//! proof (the one `protocol::Node` outputs with the block, or one read off the stored chain by
//! [`commit_proof_from_successors`]), or with [`InclusionProof::with_descendants`] and what
//! [`commit_path`] reads off the stored chain for any committed block.
//!
//! Wire format (version 2): `u8 version || transaction || merkle proof || block header ||
//! u32 n || n × descendant header || commit proof`, each in its canonical encoding
//! (`docs/encoding.md`), `n ≤` [`MAX_PROOF_DESCENDANTS`]; decoding is strict.

use thiserror::Error;

use crate::block::{tx_leaf, BlockHeader, CheckedBlock};
use crate::chain::{is_next, CommitProof, CommitProofError};
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::genesis::Genesis;
use crate::hash::{BlockHash, TxId};
use crate::keys::VerifyKey;
use crate::merkle::{self, MerkleError, MerkleProof};
use crate::tx::{Transaction, TxKind};
use crate::vote::VoteError;

/// Format version of [`InclusionProof`]. Version 2 added the descendant header chain.
pub const INCLUSION_PROOF_VERSION: u8 = 2;

/// Most descendant headers one proof carries (a chain of blocks each followed by a timeout
/// longer than this is not provable in one proof; the protocol's pacemaker makes it unlikely).
pub const MAX_PROOF_DESCENDANTS: usize = 64;

/// Smallest encoded block header: bounds the descendant list before allocation.
const MIN_HEADER_LEN: usize = 200;

/// A self-contained proof that a transaction is in a committed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The transaction, its payload pruned.
    pub tx: Transaction,
    /// The Merkle proof of the transaction's leaf.
    pub merkle: MerkleProof,
    /// The header of the block holding it.
    pub header: BlockHeader,
    /// Headers of the descendants up to the first one committed directly, in height order
    /// (empty when the block's own child is in the next round).
    pub descendants: Vec<BlockHeader>,
    /// The proof that the last of `descendants` (or the block itself) is committed.
    pub commit: CommitProof,
}

/// An inclusion proof could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MakeProofError {
    /// The block has no transaction at this index.
    #[error("the block has no transaction at index {index} (it holds {count})")]
    NoSuchTransaction {
        /// The index asked for.
        index: usize,
        /// Transactions in the block.
        count: usize,
    },
    /// The commit proof is not for this block.
    #[error("the commit proof does not prove this block: {0}")]
    CommitProof(#[from] CommitProofError),
    /// More descendant headers than one proof carries.
    #[error("more than {max} descendant headers")]
    TooManyDescendants {
        /// The limit.
        max: usize,
    },
    /// The Merkle tree could not be built.
    #[error("merkle proof: {0}")]
    Merkle(#[from] MerkleError),
}

/// An inclusion proof does not hold. Each way it can fail has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InclusionError {
    /// The header is of another chain than the pinned genesis.
    #[error("the block belongs to another network than the trusted genesis")]
    WrongChain,
    /// The transaction's contributor signature does not verify.
    #[error("the transaction's signature does not verify")]
    BadTransactionSignature,
    /// The transaction is not in this block (a proof for another block, or a tampered one).
    #[error("the transaction is not in this block (the Merkle proof does not lead to its root)")]
    NotInBlock,
    /// The commit proof certifies another block than this header (a tampered header, or the
    /// commit proof of another block).
    #[error("the block header is not the block the commit proof certifies")]
    HeaderNotCertified,
    /// The certified child is not in the round after the block's.
    #[error("the commit proof's child is not in the next round")]
    NotConsecutive,
    /// The descendant headers do not link by hash from the block, or leave its chain.
    #[error("the descendant headers do not form a chain from the block")]
    BrokenHeaderChain,
    /// A vote comes from a key outside the genesis trusted set.
    #[error("a vote comes from {0}, which is not a trusted validator")]
    UntrustedVoter(VerifyKey),
    /// A vote's signature does not verify.
    #[error("the vote signature of validator {0} does not verify")]
    BadVoteSignature(VerifyKey),
    /// Too few distinct validators voted.
    #[error("only {have} validator votes, {need} needed")]
    NoQuorum {
        /// Votes present.
        have: usize,
        /// Votes needed.
        need: usize,
    },
    /// The certificate mixes votes for different blocks or verdicts.
    #[error("the quorum certificate mixes votes for different blocks")]
    MixedVotes,
}

impl From<CommitProofError> for InclusionError {
    fn from(e: CommitProofError) -> Self {
        match e {
            CommitProofError::NotAChild => Self::HeaderNotCertified,
            CommitProofError::NotConsecutive => Self::NotConsecutive,
            CommitProofError::Certificate(v) => v.into(),
        }
    }
}

impl From<VoteError> for InclusionError {
    fn from(e: VoteError) -> Self {
        match e {
            VoteError::UntrustedVoter(k) => Self::UntrustedVoter(k),
            VoteError::BadSignature(k) => Self::BadVoteSignature(k),
            VoteError::NoQuorum { have, need } => Self::NoQuorum { have, need },
            // `MixedRounds` is for timeout certificates, which a commit proof does not hold.
            VoteError::MixedVotes | VoteError::MixedRounds => Self::MixedVotes,
        }
    }
}

/// What a verified [`InclusionProof`] establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTx {
    /// The transaction's id.
    pub tx_id: TxId,
    /// Its kind (clear on the envelope).
    pub kind: TxKind,
    /// The node that contributed it.
    pub contributor: VerifyKey,
    /// The contributor's timestamp (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// The committed block's hash.
    pub block_hash: BlockHash,
    /// The block's height.
    pub height: u64,
    /// The block's round.
    pub round: u64,
    /// The miner's timestamp of the block.
    pub block_timestamp_ms: u64,
}

impl InclusionProof {
    /// The proof for the transaction at `index` of a committed `block`, given the block's
    /// commit proof (what `protocol::Node` outputs, and what stores keep for their head).
    ///
    /// # Errors
    /// [`MakeProofError::NoSuchTransaction`], or [`MakeProofError::CommitProof`] if `commit` is
    /// not about this block.
    pub fn new(
        block: &CheckedBlock,
        index: usize,
        commit: CommitProof,
    ) -> Result<Self, MakeProofError> {
        Self::with_descendants(block, index, Vec::new(), commit)
    }

    /// The proof for the transaction at `index` of a committed `block` that was committed
    /// through a descendant: the `descendants` headers (height order, from the block's child up
    /// to the first descendant committed directly) and that descendant's commit proof, as
    /// [`commit_path`] reads them off a stored chain.
    ///
    /// # Errors
    /// [`MakeProofError::NoSuchTransaction`], [`MakeProofError::TooManyDescendants`], or
    /// [`MakeProofError::CommitProof`] if the headers do not link or `commit` does not prove
    /// the last of them.
    pub fn with_descendants(
        block: &CheckedBlock,
        index: usize,
        descendants: Vec<BlockHeader>,
        commit: CommitProof,
    ) -> Result<Self, MakeProofError> {
        if descendants.len() > MAX_PROOF_DESCENDANTS {
            return Err(MakeProofError::TooManyDescendants {
                max: MAX_PROOF_DESCENDANTS,
            });
        }
        let mut last = block.header().clone();
        for d in &descendants {
            if d.prev != last.hash() {
                return Err(CommitProofError::NotAChild.into());
            }
            last = d.clone();
        }
        let txs = &block.block().transactions;
        let mut tx = txs
            .get(index)
            .cloned()
            .ok_or(MakeProofError::NoSuchTransaction {
                index,
                count: txs.len(),
            })?;
        if commit.child.prev != last.hash() {
            return Err(CommitProofError::NotAChild.into());
        }
        if !is_next(last.round, commit.child.round) {
            return Err(CommitProofError::NotConsecutive.into());
        }
        let leaves: Vec<[u8; 32]> = txs
            .iter()
            .map(|t| tx_leaf(&t.id(), t.signature()))
            .collect();
        let merkle = merkle::proof(&leaves, index)?;
        tx.prune();
        Ok(Self {
            tx,
            merkle,
            header: block.header().clone(),
            descendants,
            commit,
        })
    }

    /// Checks the proof against the trusted `genesis` (see the module docs for the steps).
    ///
    /// # Errors
    /// An [`InclusionError`] naming the first check that fails.
    pub fn verify(&self, genesis: &Genesis) -> Result<CommittedTx, InclusionError> {
        if self.header.chain != genesis.hash() {
            return Err(InclusionError::WrongChain);
        }
        let verified = self
            .tx
            .clone()
            .verify()
            .map_err(|_| InclusionError::BadTransactionSignature)?;
        let leaf = tx_leaf(&verified.id(), self.tx.signature());
        if self.merkle.leaf_count() != self.header.tx_count as usize
            || self
                .merkle
                .verify(&self.header.merkle_root(), &leaf)
                .is_err()
        {
            return Err(InclusionError::NotInBlock);
        }
        let block_hash = self.header.hash();
        let (mut last_hash, mut last) = (block_hash, &self.header);
        for d in &self.descendants {
            if d.prev != last_hash || d.chain != last.chain || !is_next(last.height, d.height) {
                return Err(InclusionError::BrokenHeaderChain);
            }
            last_hash = d.hash();
            last = d;
        }
        self.commit.verify(genesis, &last_hash, last.round)?;
        Ok(CommittedTx {
            tx_id: verified.id(),
            kind: self.tx.kind(),
            contributor: *self.tx.contributor(),
            timestamp_ms: self.tx.timestamp_ms(),
            block_hash,
            height: self.header.height,
            round: self.header.round,
            block_timestamp_ms: self.header.timestamp_ms,
        })
    }
}

/// The commit proof of `block` read off the chain that follows it: its child (which must be in
/// the next round) and the child's quorum certificate, which the grandchild carries as its
/// `parent_qc`. This is how a node makes an [`InclusionProof`] for any stored block, not only
/// for its head (whose proof `protocol::Node` hands out with the block). The certificate is not
/// checked here; [`InclusionProof::verify`] checks it.
///
/// # Errors
/// [`CommitProofError::NotAChild`] if the headers are not consecutive blocks of one chain,
/// [`CommitProofError::NotConsecutive`] if the child is not in the next round (after a timeout
/// the block was committed only through a later descendant: use [`commit_path`], which finds
/// the header chain to it).
pub fn commit_proof_from_successors(
    block: &BlockHeader,
    child: &BlockHeader,
    grandchild: &BlockHeader,
) -> Result<CommitProof, CommitProofError> {
    let child_hash = child.hash();
    if child.prev != block.hash() || grandchild.prev != child_hash {
        return Err(CommitProofError::NotAChild);
    }
    if !is_next(block.round, child.round) {
        return Err(CommitProofError::NotConsecutive);
    }
    if grandchild.parent_qc.block() != Some(child_hash) {
        return Err(CommitProofError::NotAChild);
    }
    Ok(CommitProof {
        child: child.clone(),
        child_qc: grandchild.parent_qc.clone(),
    })
}

/// Where the commit proof of `headers[0]` lies on a stored chain: `headers` are consecutive
/// stored headers from the block on (height order), `head_proof` the commit proof of the last
/// of them when it is the store's head. Returns the descendant headers up to the first block
/// committed directly (its child in the next round, certified by the grandchild's
/// `parent_qc`, or by `head_proof` for the head) and that block's commit proof, ready for
/// [`InclusionProof::with_descendants`]. The certificates are not checked here;
/// [`InclusionProof::verify`] checks them.
///
/// # Errors
/// [`CommitProofError::NotAChild`] if the headers do not link by hash, or
/// [`CommitProofError::NotConsecutive`] if no block among them (within
/// [`MAX_PROOF_DESCENDANTS`]) is shown committed directly.
pub fn commit_path(
    headers: &[BlockHeader],
    head_proof: Option<&CommitProof>,
) -> Result<(Vec<BlockHeader>, CommitProof), CommitProofError> {
    let hashes: Vec<BlockHash> = headers.iter().map(BlockHeader::hash).collect();
    for (i, h) in headers.iter().enumerate().skip(1) {
        if h.prev != hashes[i - 1] {
            return Err(CommitProofError::NotAChild);
        }
    }
    for k in 0..headers.len().min(MAX_PROOF_DESCENDANTS + 1) {
        let descendants = || headers[1..=k].to_vec();
        if let (Some(child), Some(grandchild)) = (headers.get(k + 1), headers.get(k + 2)) {
            if is_next(headers[k].round, child.round)
                && grandchild.parent_qc.block() == Some(hashes[k + 1])
            {
                let commit = CommitProof {
                    child: child.clone(),
                    child_qc: grandchild.parent_qc.clone(),
                };
                return Ok((descendants(), commit));
            }
        } else if k + 1 == headers.len() {
            if let Some(p) = head_proof {
                if p.child.prev == hashes[k] && is_next(headers[k].round, p.child.round) {
                    return Ok((descendants(), p.clone()));
                }
            }
        }
    }
    Err(CommitProofError::NotConsecutive)
}

impl Encode for InclusionProof {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(INCLUSION_PROOF_VERSION);
        self.tx.encode_to(out);
        self.merkle.encode_to(out);
        self.header.encode_to(out);
        out.put_list(&self.descendants);
        self.commit.encode_to(out);
    }
}

impl Decode for InclusionProof {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("inclusion proof", INCLUSION_PROOF_VERSION)?;
        Ok(Self {
            tx: Transaction::decode_from(r)?,
            merkle: MerkleProof::decode_from(r)?,
            header: BlockHeader::decode_from(r)?,
            descendants: r.list("descendant headers", MAX_PROOF_DESCENDANTS, MIN_HEADER_LEN)?,
            commit: CommitProof::decode_from(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Identity;
    use crate::ledger::LedgerState;
    use crate::seal::seal_record;
    use crate::testkit::TestNet;
    use crate::tx::TxBody;
    use crate::vote::{QuorumCertificate, Vote};

    const OBS: &[u8] =
        br#"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c"}}"#;

    fn record_tx(net: &mut TestNet, patient: &Identity) -> Transaction {
        let node = net.nodes[0].public();
        let sealed = seal_record(OBS, &patient.public(), &[node], &mut net.rng).unwrap();
        let class = crate::access::record_class(
            OBS,
            &crate::consent::ConsentTagKey::for_patient(patient),
            &mut net.rng,
        )
        .unwrap();
        net.tx(0, &TxBody::record_added(sealed, class), Vec::new())
    }

    /// Two committed blocks (three and one transactions) and their commit proofs.
    fn chain() -> (TestNet, Vec<(CheckedBlock, CommitProof)>) {
        let mut net = TestNet::new(11, 4, 1);
        let mut state = LedgerState::new();
        let patient = Identity::generate(&mut net.rng);
        let mut out = Vec::new();
        for n in [3, 1] {
            let txs = (0..n).map(|_| record_tx(&mut net, &patient)).collect();
            let (block, effects, proof) = net.next_block(&state, txs).unwrap();
            state.commit(effects).unwrap();
            out.push((block, proof));
        }
        (net, out)
    }

    #[test]
    fn proofs_verify_and_round_trip() {
        let (net, blocks) = chain();
        for (block, commit) in &blocks {
            for i in 0..block.tx_ids().len() {
                let p = InclusionProof::new(block, i, commit.clone()).unwrap();
                let got = p.verify(&net.genesis).unwrap();
                assert_eq!(got.tx_id, block.tx_ids()[i]);
                assert_eq!(got.height, block.header().height);
                assert_eq!(got.kind, TxKind::RecordAdded);
                assert!(p.tx.is_pruned());
                let back = InclusionProof::from_bytes(&p.to_bytes()).unwrap();
                assert_eq!(back, p);
            }
        }
        let (b, c) = &blocks[0];
        assert!(matches!(
            InclusionProof::new(b, 3, c.clone()),
            Err(MakeProofError::NoSuchTransaction { index: 3, count: 3 })
        ));
        assert!(matches!(
            InclusionProof::new(b, 0, blocks[1].1.clone()),
            Err(MakeProofError::CommitProof(CommitProofError::NotAChild))
        ));
    }

    #[test]
    fn commit_proofs_read_off_the_stored_chain() {
        let mut net = TestNet::new(13, 4, 0);
        let mut state = LedgerState::new();
        let patient = Identity::generate(&mut net.rng);
        let mut blocks = Vec::new();
        for _ in 0..3 {
            let tx = record_tx(&mut net, &patient);
            let (block, effects, _) = net.next_block(&state, vec![tx]).unwrap();
            state.commit(effects).unwrap();
            blocks.push(block);
        }
        let h: Vec<&BlockHeader> = blocks.iter().map(CheckedBlock::header).collect();
        let commit = commit_proof_from_successors(h[0], h[1], h[2]).unwrap();
        let p = InclusionProof::new(&blocks[0], 0, commit).unwrap();
        assert_eq!(p.verify(&net.genesis).unwrap().height, 1);
        assert_eq!(
            commit_proof_from_successors(h[0], h[2], h[1]),
            Err(CommitProofError::NotAChild)
        );
        assert_eq!(
            commit_proof_from_successors(h[1], h[0], h[2]),
            Err(CommitProofError::NotAChild)
        );
        let mut late = h[1].clone();
        late.round += 1;
        let mut g = h[2].clone();
        g.prev = late.hash();
        assert_eq!(
            commit_proof_from_successors(h[0], &late, &g),
            Err(CommitProofError::NotConsecutive)
        );
    }

    #[test]
    fn every_failure_has_its_own_error() {
        let (net, blocks) = chain();
        let (b1, c1) = &blocks[0];
        let (b2, c2) = &blocks[1];
        let good = InclusionProof::new(b1, 1, c1.clone()).unwrap();

        let other = TestNet::new(12, 4, 1);
        assert_eq!(good.verify(&other.genesis), Err(InclusionError::WrongChain));

        // The transaction of block 1 with the header and commit proof of block 2.
        let mut p = good.clone();
        p.header = b2.header().clone();
        p.commit = c2.clone();
        assert_eq!(p.verify(&net.genesis), Err(InclusionError::NotInBlock));

        // A lying leaf count.
        let mut p = good.clone();
        p.header.tx_count = 4;
        assert_eq!(p.verify(&net.genesis), Err(InclusionError::NotInBlock));

        // A tampered header: the commit proof certifies another hash.
        let mut p = good.clone();
        p.header.timestamp_ms += 1;
        assert_eq!(
            p.verify(&net.genesis),
            Err(InclusionError::HeaderNotCertified)
        );

        // Votes from keys outside the trusted set: fresh keys, and the member node (index 4),
        // which is in genesis but not a validator.
        let mut p = good.clone();
        let outsiders: Vec<Identity> = (1..4u8)
            .map(|i| Identity::generate(&mut rand_chacha::ChaCha20Rng::from_seed([i; 32])))
            .collect();
        let child = p.commit.child.hash();
        let votes: Vec<Vote> = outsiders
            .iter()
            .chain(std::iter::once(&net.nodes[4]))
            .map(|n| {
                Vote::cast(
                    n,
                    &net.genesis.chain_id(),
                    p.commit.child.prev,
                    child,
                    Ok(()),
                    5,
                )
            })
            .collect();
        p.commit.child_qc = QuorumCertificate::from_votes(&votes, &child);
        assert!(matches!(
            p.verify(&net.genesis),
            Err(InclusionError::UntrustedVoter(_))
        ));

        // Too few votes.
        let mut p = good.clone();
        let one = &p.commit.child_qc.votes()[..1].to_vec();
        p.commit.child_qc = QuorumCertificate::from_votes(one, &child);
        assert_eq!(
            p.verify(&net.genesis),
            Err(InclusionError::NoQuorum { have: 1, need: 3 })
        );

        // Truncations and flips never panic and never verify.
        let bytes = good.to_bytes();
        for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(InclusionProof::from_bytes(&bytes[..cut]).is_err());
        }
        for i in (0..bytes.len()).step_by(7) {
            let mut t = bytes.clone();
            t[i] ^= 0x20;
            if let Ok(p) = InclusionProof::from_bytes(&t) {
                assert!(
                    p.verify(&net.genesis).is_err(),
                    "flip at {i} went unnoticed"
                );
            }
        }
    }

    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn commit_path_finds_the_direct_commit_and_refuses_broken_chains() {
        let (net, blocks) = chain();
        let h: Vec<BlockHeader> = blocks.iter().map(|(b, _)| b.header().clone()).collect();
        // The head: proven by its own commit proof, no descendants.
        let head_proof = &blocks[1].1;
        let (d, c) = commit_path(&h[1..], Some(head_proof)).unwrap();
        assert!(d.is_empty());
        assert_eq!(&c, head_proof);
        // Without the head proof nothing shows the last block committed.
        assert_eq!(
            commit_path(&h[1..], None).unwrap_err(),
            CommitProofError::NotConsecutive
        );
        assert_eq!(
            commit_path(&[], None).unwrap_err(),
            CommitProofError::NotConsecutive
        );
        // Headers that do not link.
        assert_eq!(
            commit_path(&[h[1].clone(), h[0].clone()], Some(head_proof)).unwrap_err(),
            CommitProofError::NotAChild
        );
        // A proof's descendant list is bounded when decoded and when made.
        let (b, c) = &blocks[0];
        let p = InclusionProof::new(b, 0, c.clone()).unwrap();
        let mut long = p.clone();
        long.descendants = vec![p.header.clone(); MAX_PROOF_DESCENDANTS + 1];
        assert!(InclusionProof::from_bytes(&long.to_bytes()).is_err());
        assert!(matches!(
            InclusionProof::with_descendants(
                b,
                0,
                vec![p.header.clone(); MAX_PROOF_DESCENDANTS + 1],
                c.clone()
            ),
            Err(MakeProofError::TooManyDescendants { .. })
        ));
        // A descendant that is not the block's child.
        assert!(matches!(
            InclusionProof::with_descendants(b, 0, vec![p.header.clone()], c.clone()),
            Err(MakeProofError::CommitProof(CommitProofError::NotAChild))
        ));
        let mut forged = p.clone();
        forged.descendants.push(forged.header.clone());
        assert_eq!(
            forged.verify(&net.genesis).unwrap_err(),
            InclusionError::BrokenHeaderChain
        );
        // Issue #12.9: attacker-chosen rounds and heights at the top of their range make
        // `round + 1` / `height + 1` overflow (a panic with overflow checks on). Refused instead.
        let mut top = p.clone();
        top.header.round = u64::MAX;
        assert!(top.verify(&net.genesis).is_err());
        let mut top = p.clone();
        top.header.height = u64::MAX;
        top.descendants.push(p.header.clone());
        assert!(top.verify(&net.genesis).is_err());
        let mut top = p;
        top.commit.child.round = u64::MAX;
        assert!(top.verify(&net.genesis).is_err());
        let c = top.commit.clone();
        assert!(c.verify(&net.genesis, &c.child.prev, u64::MAX).is_err());
    }
}
