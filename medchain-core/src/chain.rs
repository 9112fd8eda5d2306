//! Chain-level checks: commit proofs and streaming verification of a whole chain.
//!
//! A block `B` is **committed** once a child `C` of `B` with `round(C) = round(B) + 1` is
//! certified by a quorum (the two-chain rule of `docs/protocol.md`); every ancestor of a
//! committed block is committed too. A [`CommitProof`] is that child's header and quorum
//! certificate: with it, a light client or a node catching up can accept a chain head without
//! the votes of every later block.
//!
//! [`verify_chain`] checks a stored chain block by block in constant memory (one block at a
//! time, plus the tip) and reports progress through a callback.

use thiserror::Error;

use crate::block::{
    BatchVerifier, Block, BlockHeader, ChainTip, CheckedBlock, InvalidBlock, TxRules,
};
use crate::encoding::{Decode, DecodeError, Encode, Reader};
use crate::genesis::Genesis;
use crate::hash::BlockHash;
use crate::vote::{QuorumCertificate, VoteError};

/// Proof that a block is committed: a certified child in the next round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitProof {
    /// The child's header (its `prev` is the committed block).
    pub child: BlockHeader,
    /// A quorum of valid votes for the child.
    pub child_qc: QuorumCertificate,
}

/// A commit proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CommitProofError {
    /// The child does not extend the block.
    #[error("the proof's child does not extend this block")]
    NotAChild,
    /// The child's round is not the block's round plus one.
    #[error("the proof's child is not in the next round")]
    NotConsecutive,
    /// The child's certificate does not verify.
    #[error("the child's quorum certificate does not verify: {0}")]
    Certificate(#[from] VoteError),
}

impl CommitProof {
    /// Checks that this proves the block with hash `block` and round `round` committed.
    ///
    /// # Errors
    /// A [`CommitProofError`].
    pub fn verify(
        &self,
        genesis: &Genesis,
        block: &BlockHash,
        round: u64,
    ) -> Result<(), CommitProofError> {
        if &self.child.prev != block || self.child.chain != genesis.hash() {
            return Err(CommitProofError::NotAChild);
        }
        if !is_next(round, self.child.round) {
            return Err(CommitProofError::NotConsecutive);
        }
        self.child_qc.verify(genesis, block, &self.child.hash())?;
        Ok(())
    }
}

impl Encode for CommitProof {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.child.encode_to(out);
        self.child_qc.encode_to(out);
    }
}

impl Decode for CommitProof {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            child: BlockHeader::decode_from(r)?,
            child_qc: QuorumCertificate::decode_from(r)?,
        })
    }
}

/// Whether `b` is `a + 1`, with no overflow on attacker-chosen numbers.
pub(crate) fn is_next(a: u64, b: u64) -> bool {
    a.checked_add(1) == Some(b)
}

/// Progress of a chain verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Blocks verified so far.
    pub blocks: u64,
    /// Transactions verified so far.
    pub transactions: u64,
    /// Height of the last verified block.
    pub height: u64,
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The tip after the last block.
    pub tip: ChainTip,
    /// Blocks verified.
    pub blocks: u64,
    /// Transactions verified.
    pub transactions: u64,
    /// Whether a commit proof for the head was checked.
    pub head_proven: bool,
}

/// A chain failed verification.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainError<E: std::error::Error + 'static> {
    /// The block source failed (I/O, decoding).
    #[error("could not read block at height {height}: {source}")]
    Source {
        /// The height being read.
        height: u64,
        /// The source's error.
        source: E,
    },
    /// A block is invalid.
    #[error("block at height {height} is invalid: {error}")]
    InvalidBlock {
        /// The block's height.
        height: u64,
        /// Why.
        error: InvalidBlock,
    },
    /// The head's commit proof does not hold.
    #[error("the head's commit proof does not hold: {0}")]
    CommitProof(#[from] CommitProofError),
}

/// Verifies a chain from genesis, block by block, in constant memory.
///
/// The blocks are history (re-read from a store or a peer's archive), so payloads pruned by an
/// erasure are accepted ([`Block::validate_history`]); `rules` that track state report pruned
/// payloads no erasure explains (`LedgerState::unexplained_pruned`).
///
/// `blocks` yields the blocks from height 1 upwards; `head_proof`, if given, must prove the last
/// block committed. `progress` is called after every block.
///
/// # Errors
/// A [`ChainError`] naming the first failing height.
pub fn verify_chain<E, I>(
    genesis: &Genesis,
    blocks: I,
    head_proof: Option<&CommitProof>,
    rules: &mut dyn TxRules,
    mut progress: impl FnMut(Progress),
) -> Result<ChainSummary, ChainError<E>>
where
    E: std::error::Error + 'static,
    I: IntoIterator<Item = Result<Block, E>>,
{
    let mut tip = ChainTip::genesis(genesis);
    let mut count = Progress {
        blocks: 0,
        transactions: 0,
        height: 0,
    };
    for item in blocks {
        let height = tip.height + 1;
        let block = item.map_err(|source| ChainError::Source { height, source })?;
        let checked: CheckedBlock = block
            .validate_history(genesis, &tip, rules, &mut BatchVerifier)
            .map_err(|error| ChainError::InvalidBlock { height, error })?;
        count.blocks += 1;
        count.transactions += checked.tx_ids().len() as u64;
        count.height = height;
        tip = checked.tip();
        progress(count);
    }
    if let Some(proof) = head_proof {
        proof.verify(genesis, &tip.hash, tip.round)?;
    }
    Ok(ChainSummary {
        tip,
        blocks: count.blocks,
        transactions: count.transactions,
        head_proven: head_proof.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::tests::{build, certify, log_tx, net};
    use crate::block::NoRules;

    #[test]
    fn verifies_a_chain_streaming_with_progress_and_head_proof() {
        let mut n = net();
        let mut tip = ChainTip::genesis(&n.genesis);
        let mut qc = QuorumCertificate::empty();
        let mut blocks = Vec::new();
        for r in 1..=4u64 {
            let txs = vec![log_tx(&mut n, (r % 6) as usize, r)];
            let b = build(&mut n, &tip, r, txs, qc);
            let c = b.clone().validate(&n.genesis, &tip, &mut NoRules).unwrap();
            qc = certify(&n, &c);
            tip = c.tip();
            blocks.push(b);
        }
        // The 4th block's child in round 5 proves block 4 committed.
        let child = build(&mut n, &tip, 5, vec![], qc);
        let child_checked = child.validate(&n.genesis, &tip, &mut NoRules).unwrap();
        let proof = CommitProof {
            child: child_checked.header().clone(),
            child_qc: certify(&n, &child_checked),
        };
        assert_eq!(CommitProof::from_bytes(&proof.to_bytes()).unwrap(), proof);
        let mut seen = Vec::new();
        let summary = verify_chain::<std::convert::Infallible, _>(
            &n.genesis,
            blocks.iter().cloned().map(Ok),
            Some(&proof),
            &mut NoRules,
            |p| seen.push(p.height),
        )
        .unwrap();
        assert_eq!(summary.blocks, 4);
        assert_eq!(summary.transactions, 4);
        assert!(summary.head_proven);
        assert_eq!(seen, vec![1, 2, 3, 4]);

        // The proof does not prove another block.
        assert_eq!(
            proof
                .verify(&n.genesis, &blocks[2].hash(), blocks[2].header.round)
                .unwrap_err(),
            CommitProofError::NotAChild
        );
        // A tampered block in the middle is caught at its height.
        let mut bad = blocks.clone();
        bad[2].header.timestamp_ms += 1;
        let err = verify_chain::<std::convert::Infallible, _>(
            &n.genesis,
            bad.into_iter().map(Ok),
            None,
            &mut NoRules,
            |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(err, ChainError::InvalidBlock { height: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with(
            "block at height 3 is invalid: invalid block: the miner's signature does not verify"
        ));
        // A missing block breaks the linkage.
        let mut gap = blocks.clone();
        gap.remove(1);
        let err = verify_chain::<std::convert::Infallible, _>(
            &n.genesis,
            gap.into_iter().map(Ok),
            None,
            &mut NoRules,
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(err, ChainError::InvalidBlock { height: 2, .. }));
    }
}
