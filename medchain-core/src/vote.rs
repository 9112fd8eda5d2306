//! Votes of trusted validators, quorum certificates, round timeouts.
//!
//! A [`Vote`] has exactly the paper's fields: `node_pubkey`, `signature`, `previous_block`,
//! `voting_for_block`, `is_block_valid`, `invalid_reason`, `timestamp`. The signature covers all
//! the others under the label `medchain/v1/vote-signature`, bound to the network's chain id
//! (the genesis hash, [`crate::keys`]): a vote or a timeout signed on another network never
//! verifies here, even with the same validator keys.
//!
//! Only keys in the genesis validator set may vote ([`Vote::verify`]). A
//! [`QuorumCertificate`] gathers valid votes for one block from more than the genesis quorum
//! fraction of the validators; repeated votes by one node count once (a certificate's votes are
//! a strictly ascending set by key, so a repeat cannot even be encoded). A
//! [`TimeoutCertificate`] gathers signed round timeouts, which let the next-ranked miner take
//! over from a silent one (see `docs/protocol.md`).

use std::fmt;

use thiserror::Error;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::genesis::Genesis;
use crate::hash::{domain, BlockHash, ChainId};
use crate::keys::{verify_batch, BatchError, Identity, Signature, SignedMessage, VerifyKey};

/// Format version of [`Vote`] and [`Timeout`]. Version 2: signatures bind the chain id.
pub const VOTE_VERSION: u8 = 2;

/// Why a block is invalid. The codes are stable: they travel in votes and are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The block's bytes do not decode.
    Malformed = 1,
    /// The block belongs to another chain.
    WrongChain = 2,
    /// The height is not the parent's plus one.
    WrongHeight = 3,
    /// The previous-block hash is not the parent's.
    WrongPrevious = 4,
    /// The round is not after the parent's, or a skipped round has no timeout certificate.
    BadRound = 5,
    /// The parent's quorum certificate is missing or does not verify.
    BadParentCertificate = 6,
    /// The miner is not the one elected for this round.
    WrongMiner = 7,
    /// The miner's election ticket does not verify.
    BadMinerTicket = 8,
    /// The miner's signature does not verify.
    BadMinerSignature = 9,
    /// A transaction is malformed or its signature does not verify.
    BadTransaction = 10,
    /// A transaction appears twice in the block, or was committed before.
    DuplicateTransaction = 11,
    /// The Merkle children do not match the transactions.
    MerkleMismatch = 12,
    /// A transaction's contributor is not a member of the network.
    UnknownContributor = 13,
    /// A contributor's signature is missing or does not verify.
    BadContributorSignature = 14,
    /// A contributor's election ticket is missing or does not verify.
    BadContributorTicket = 15,
    /// The contributor list does not match the transactions' contributors.
    ContributorMismatch = 16,
    /// The timestamp is before the parent's or too far in the future, or a transaction's claimed
    /// time does not fit its block's.
    BadTimestamp = 17,
    /// A transaction breaks a ledger rule (consent, erasure, ...).
    RuleViolation = 18,
    /// The secure-index filter is malformed or does not match its digest.
    BadIndexFilter = 19,
    /// The block holds more transactions than genesis allows.
    TooManyTransactions = 20,
    /// A transaction's secure-index entry does not decode.
    BadIndexEntry = 21,
    /// A transaction lacks its payload (sealed record or wrapped key) in a new block.
    MissingPayload = 22,
}

impl InvalidReason {
    /// All reasons, in code order.
    pub const ALL: [Self; 22] = [
        Self::Malformed,
        Self::WrongChain,
        Self::WrongHeight,
        Self::WrongPrevious,
        Self::BadRound,
        Self::BadParentCertificate,
        Self::WrongMiner,
        Self::BadMinerTicket,
        Self::BadMinerSignature,
        Self::BadTransaction,
        Self::DuplicateTransaction,
        Self::MerkleMismatch,
        Self::UnknownContributor,
        Self::BadContributorSignature,
        Self::BadContributorTicket,
        Self::ContributorMismatch,
        Self::BadTimestamp,
        Self::RuleViolation,
        Self::BadIndexFilter,
        Self::TooManyTransactions,
        Self::BadIndexEntry,
        Self::MissingPayload,
    ];

    /// The stable wire code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The reason for a wire code.
    ///
    /// # Errors
    /// [`DecodeError::UnknownTag`] for an unknown code.
    pub fn from_code(code: u16) -> Result<Self, DecodeError> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.code() == code)
            .ok_or(DecodeError::UnknownTag {
                what: "invalid reason",
                tag: code.into(),
            })
    }

    /// A sentence a person can read.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Malformed => "the block is malformed",
            Self::WrongChain => "the block belongs to another chain",
            Self::WrongHeight => "the block height does not follow its parent",
            Self::WrongPrevious => "the previous-block hash is not the parent's",
            Self::BadRound => "the round does not follow the parent's, or a skipped round has no timeout certificate",
            Self::BadParentCertificate => "the parent's quorum certificate does not verify",
            Self::WrongMiner => "the miner was not elected for this round",
            Self::BadMinerTicket => "the miner's election ticket does not verify",
            Self::BadMinerSignature => "the miner's signature does not verify",
            Self::BadTransaction => "a transaction is malformed or badly signed",
            Self::DuplicateTransaction => "a transaction is duplicated or replayed",
            Self::MerkleMismatch => "the Merkle root does not match the transactions",
            Self::UnknownContributor => "a transaction comes from a node that is not a member",
            Self::BadContributorSignature => "a contributor's block signature is missing or invalid",
            Self::BadContributorTicket => "a contributor's election ticket is missing or invalid",
            Self::ContributorMismatch => "the contributor list does not match the transactions",
            Self::BadTimestamp => "the timestamp is out of range",
            Self::RuleViolation => "a transaction breaks a ledger rule",
            Self::BadIndexFilter => "the secure-index filter is malformed or does not match",
            Self::TooManyTransactions => "the block holds too many transactions",
            Self::BadIndexEntry => "a transaction's secure-index entry is malformed",
            Self::MissingPayload => "a transaction lacks its payload",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.describe(), self.code())
    }
}

impl Encode for InvalidReason {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u16(self.code());
    }
}

impl Decode for InvalidReason {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::from_code(r.u16()?)
    }
}

/// A vote or certificate failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VoteError {
    /// The voter is not in the genesis validator set.
    #[error("voter {0} is not a trusted validator")]
    UntrustedVoter(VerifyKey),
    /// The signature does not verify.
    #[error("vote signature from {0} does not verify")]
    BadSignature(VerifyKey),
    /// A certificate's votes are not all valid votes for the same block and parent.
    #[error("certificate holds a vote for another block, parent or verdict")]
    MixedVotes,
    /// A certificate has too few votes.
    #[error("certificate has {have} distinct validator votes, {need} needed")]
    NoQuorum {
        /// Votes present.
        have: usize,
        /// Votes needed.
        need: usize,
    },
    /// A timeout certificate mixes rounds.
    #[error("timeout certificate mixes rounds")]
    MixedRounds,
}

/// A validator's vote on a block, with exactly the paper's fields.
#[derive(Clone, PartialEq, Eq)]
pub struct Vote {
    /// The voter.
    pub node_pubkey: VerifyKey,
    /// The voter's signature over the other fields.
    pub signature: Signature,
    /// The parent of the block voted on.
    pub previous_block: BlockHash,
    /// The block voted on.
    pub voting_for_block: BlockHash,
    /// The verdict.
    pub is_block_valid: bool,
    /// Why the block is invalid (present exactly when `is_block_valid` is false).
    pub invalid_reason: Option<InvalidReason>,
    /// When the vote was cast (milliseconds since the Unix epoch).
    pub timestamp: u64,
}

impl fmt::Debug for Vote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vote")
            .field("node", &self.node_pubkey)
            .field("for", &self.voting_for_block)
            .field("valid", &self.is_block_valid)
            .field("reason", &self.invalid_reason)
            .finish_non_exhaustive()
    }
}

impl Vote {
    /// Casts and signs a vote: `Ok(())` for a valid block, `Err(reason)` for an invalid one.
    pub fn cast(
        voter: &Identity,
        chain: &ChainId,
        previous_block: BlockHash,
        voting_for_block: BlockHash,
        verdict: Result<(), InvalidReason>,
        timestamp: u64,
    ) -> Self {
        let mut vote = Self {
            node_pubkey: voter.verify_key(),
            signature: Signature::from_byte_array([0; 64]),
            previous_block,
            voting_for_block,
            is_block_valid: verdict.is_ok(),
            invalid_reason: verdict.err(),
            timestamp,
        };
        vote.signature = voter.sign(chain, domain::VOTE_SIG, &vote.signed_bytes());
        vote
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + 32 + 32 + 1 + 3 + 8);
        out.put_u8(VOTE_VERSION);
        self.node_pubkey.encode_to(&mut out);
        self.previous_block.encode_to(&mut out);
        self.voting_for_block.encode_to(&mut out);
        out.put_bool(self.is_block_valid);
        out.put_option(self.invalid_reason.as_ref());
        out.put_u64(self.timestamp);
        out
    }

    /// Checks that the voter is a trusted validator of `genesis` and the signature verifies.
    ///
    /// # Errors
    /// [`VoteError::UntrustedVoter`] or [`VoteError::BadSignature`].
    pub fn verify(&self, genesis: &Genesis) -> Result<(), VoteError> {
        trusted(genesis, &self.node_pubkey)?;
        self.node_pubkey
            .verify(
                &genesis.chain_id(),
                domain::VOTE_SIG,
                &self.signed_bytes(),
                &self.signature,
            )
            .map_err(|_| VoteError::BadSignature(self.node_pubkey))
    }
}

/// Encoded size of a [`Vote`] at the least.
pub const MIN_VOTE_LEN: usize = 1 + 32 + 64 + 32 + 32 + 1 + 1 + 8;

impl Encode for Vote {
    fn encode_to(&self, out: &mut Vec<u8>) {
        // The paper's field order.
        out.put_u8(VOTE_VERSION);
        self.node_pubkey.encode_to(out);
        self.signature.encode_to(out);
        self.previous_block.encode_to(out);
        self.voting_for_block.encode_to(out);
        out.put_bool(self.is_block_valid);
        out.put_option(self.invalid_reason.as_ref());
        out.put_u64(self.timestamp);
    }
}

impl Decode for Vote {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("vote", VOTE_VERSION)?;
        let vote = Self {
            node_pubkey: VerifyKey::decode_from(r)?,
            signature: Signature::decode_from(r)?,
            previous_block: BlockHash::decode_from(r)?,
            voting_for_block: BlockHash::decode_from(r)?,
            is_block_valid: r.bool("is_block_valid")?,
            invalid_reason: r.option("invalid_reason")?,
            timestamp: r.u64()?,
        };
        if vote.is_block_valid == vote.invalid_reason.is_some() {
            return Err(DecodeError::InvalidValue {
                what: "vote",
                reason: "invalid_reason must be present exactly when the block is invalid",
            });
        }
        Ok(vote)
    }
}

/// Valid votes for one block from a quorum of distinct trusted validators.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuorumCertificate {
    votes: Vec<Vote>,
}

impl QuorumCertificate {
    /// An empty certificate (the genesis block's children carry one: genesis needs no votes).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a certificate from votes: keeps one valid vote per voter for `block`, sorted.
    /// Call [`QuorumCertificate::verify`] to check it.
    pub fn from_votes<'a>(votes: impl IntoIterator<Item = &'a Vote>, block: &BlockHash) -> Self {
        let mut chosen: Vec<Vote> = votes
            .into_iter()
            .filter(|v| v.is_block_valid && &v.voting_for_block == block)
            .cloned()
            .collect();
        chosen.sort_by_key(|v| v.node_pubkey);
        chosen.dedup_by(|a, b| a.node_pubkey == b.node_pubkey);
        Self { votes: chosen }
    }

    /// The votes.
    pub fn votes(&self) -> &[Vote] {
        &self.votes
    }

    /// Whether the certificate holds no votes.
    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }

    /// The block certified (`None` for an empty certificate).
    pub fn block(&self) -> Option<BlockHash> {
        self.votes.first().map(|v| v.voting_for_block)
    }

    /// Checks that the certificate holds valid votes for `block` (whose parent is `previous`)
    /// from more than the genesis quorum of distinct trusted validators.
    ///
    /// # Errors
    /// A [`VoteError`].
    pub fn verify(
        &self,
        genesis: &Genesis,
        previous: &BlockHash,
        block: &BlockHash,
    ) -> Result<(), VoteError> {
        let need = genesis.quorum_size();
        if self.votes.len() < need {
            return Err(VoteError::NoQuorum {
                have: self.votes.len(),
                need,
            });
        }
        if self
            .votes
            .windows(2)
            .any(|w| w[0].node_pubkey >= w[1].node_pubkey)
        {
            // `from_votes` and decoding keep the set strictly ascending; anything else is forged.
            return Err(VoteError::MixedVotes);
        }
        let signed: Vec<Vec<u8>> = self.votes.iter().map(Vote::signed_bytes).collect();
        verify_in_order(
            genesis,
            domain::VOTE_SIG,
            self.votes.iter().zip(&signed).map(|(vote, bytes)| {
                let fits = vote.is_block_valid
                    && &vote.voting_for_block == block
                    && &vote.previous_block == previous;
                let check = if fits {
                    trusted(genesis, &vote.node_pubkey)
                } else {
                    Err(VoteError::MixedVotes)
                };
                (check, &vote.node_pubkey, bytes.as_slice(), &vote.signature)
            }),
        )
    }
}

/// A validator's vote or timeout counts only if genesis trusts its key.
fn trusted(genesis: &Genesis, key: &VerifyKey) -> Result<(), VoteError> {
    if genesis.is_validator(key) {
        Ok(())
    } else {
        Err(VoteError::UntrustedVoter(*key))
    }
}

/// Checks a certificate's entries with exactly the verdict of checking them one by one in order
/// (each entry's structural check, then its signature; the first failure is the error), but
/// with the signatures verified in one ZIP-215 batch ([`verify_batch`]): the signatures before
/// the first structural failure are batched, and the first bad one among them wins.
fn verify_in_order<'a>(
    genesis: &Genesis,
    label: &str,
    entries: impl Iterator<
        Item = (
            Result<(), VoteError>,
            &'a VerifyKey,
            &'a [u8],
            &'a Signature,
        ),
    >,
) -> Result<(), VoteError> {
    let chain = genesis.chain_id();
    let mut items = Vec::new();
    let mut structural = Ok(());
    for (check, key, message, signature) in entries {
        if let Err(e) = check {
            structural = Err(e);
            break;
        }
        items.push(SignedMessage {
            key,
            chain: &chain,
            label,
            message,
            signature,
        });
    }
    match verify_batch(&items) {
        Ok(()) => structural,
        Err(BatchError::Invalid { invalid, .. }) => {
            match invalid.first().and_then(|&i| items.get(i)) {
                Some(bad) => Err(VoteError::BadSignature(*bad.key)),
                // `invalid` is never empty and names positions of `items`; refuse regardless.
                None => structural.and(Err(VoteError::MixedVotes)),
            }
        }
    }
}

/// Most votes a certificate may hold (the largest validator set).
pub const MAX_CERT_VOTES: usize = 1024;

impl Encode for QuorumCertificate {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_list(&self.votes);
    }
}

impl Decode for QuorumCertificate {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let votes = r.sorted_list(
            "certificate votes",
            MAX_CERT_VOTES,
            MIN_VOTE_LEN,
            |v: &Vote| v.node_pubkey,
        )?;
        Ok(Self { votes })
    }
}

/// A validator's signed statement that round `round` timed out, with the round of the highest
/// certified block it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// The validator.
    pub node_pubkey: VerifyKey,
    /// The round that timed out.
    pub round: u64,
    /// The round of the highest block the validator holds a quorum certificate for.
    pub high_qc_round: u64,
    /// Signature over the other fields.
    pub signature: Signature,
}

impl Timeout {
    /// Signs a timeout on the network `chain`.
    pub fn sign(voter: &Identity, chain: &ChainId, round: u64, high_qc_round: u64) -> Self {
        let mut t = Self {
            node_pubkey: voter.verify_key(),
            round,
            high_qc_round,
            signature: Signature::from_byte_array([0; 64]),
        };
        t.signature = voter.sign(chain, domain::TIMEOUT_SIG, &t.signed_bytes());
        t
    }

    fn signed_bytes(&self) -> [u8; 1 + 32 + 8 + 8] {
        let mut out = [0u8; 49];
        out[0] = VOTE_VERSION;
        out[1..33].copy_from_slice(self.node_pubkey.as_byte_array());
        out[33..41].copy_from_slice(&self.round.to_be_bytes());
        out[41..49].copy_from_slice(&self.high_qc_round.to_be_bytes());
        out
    }

    /// Checks the signer is a trusted validator and the signature verifies.
    ///
    /// # Errors
    /// [`VoteError::UntrustedVoter`] or [`VoteError::BadSignature`].
    pub fn verify(&self, genesis: &Genesis) -> Result<(), VoteError> {
        trusted(genesis, &self.node_pubkey)?;
        self.node_pubkey
            .verify(
                &genesis.chain_id(),
                domain::TIMEOUT_SIG,
                &self.signed_bytes(),
                &self.signature,
            )
            .map_err(|_| VoteError::BadSignature(self.node_pubkey))
    }
}

impl Encode for Timeout {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.signed_bytes());
        self.signature.encode_to(out);
    }
}

impl Decode for Timeout {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("timeout", VOTE_VERSION)?;
        Ok(Self {
            node_pubkey: VerifyKey::decode_from(r)?,
            round: r.u64()?,
            high_qc_round: r.u64()?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// Timeouts for one round from a quorum of distinct validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutCertificate {
    timeouts: Vec<Timeout>,
}

impl TimeoutCertificate {
    /// Builds a certificate from timeouts for `round`: one per validator, sorted.
    pub fn from_timeouts<'a>(timeouts: impl IntoIterator<Item = &'a Timeout>, round: u64) -> Self {
        let mut chosen: Vec<Timeout> = timeouts
            .into_iter()
            .filter(|t| t.round == round)
            .cloned()
            .collect();
        chosen.sort_by_key(|v| v.node_pubkey);
        chosen.dedup_by(|a, b| a.node_pubkey == b.node_pubkey);
        Self { timeouts: chosen }
    }

    /// The round that timed out (`None` if empty).
    pub fn round(&self) -> Option<u64> {
        self.timeouts.first().map(|t| t.round)
    }

    /// The timeouts.
    pub fn timeouts(&self) -> &[Timeout] {
        &self.timeouts
    }

    /// The highest `high_qc_round` any signer reported: a block proposed after this certificate
    /// must extend a block certified in at least this round.
    pub fn max_high_qc_round(&self) -> u64 {
        self.timeouts
            .iter()
            .map(|t| t.high_qc_round)
            .max()
            .unwrap_or(0)
    }

    /// Checks a quorum of valid timeouts for `round`.
    ///
    /// # Errors
    /// A [`VoteError`].
    pub fn verify(&self, genesis: &Genesis, round: u64) -> Result<(), VoteError> {
        let need = genesis.quorum_size();
        if self.timeouts.len() < need {
            return Err(VoteError::NoQuorum {
                have: self.timeouts.len(),
                need,
            });
        }
        if self
            .timeouts
            .windows(2)
            .any(|w| w[0].node_pubkey >= w[1].node_pubkey)
        {
            return Err(VoteError::MixedVotes);
        }
        let signed: Vec<_> = self.timeouts.iter().map(Timeout::signed_bytes).collect();
        verify_in_order(
            genesis,
            domain::TIMEOUT_SIG,
            self.timeouts.iter().zip(&signed).map(|(t, bytes)| {
                let check = if t.round == round {
                    trusted(genesis, &t.node_pubkey)
                } else {
                    Err(VoteError::MixedRounds)
                };
                (check, &t.node_pubkey, bytes.as_slice(), &t.signature)
            }),
        )
    }
}

impl Encode for TimeoutCertificate {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_list(&self.timeouts);
    }
}

impl Decode for TimeoutCertificate {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let timeouts = r.sorted_list("timeouts", MAX_CERT_VOTES, 49 + 64, |t: &Timeout| {
            t.node_pubkey
        })?;
        Ok(Self { timeouts })
    }
}

/// Proof that a validator voted for two different blocks at the same height and round:
/// verifiable by anyone from the two votes and the two headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EquivocationEvidence {
    /// The first vote.
    pub first: Vote,
    /// The header the first vote is for.
    pub first_header: crate::block::BlockHeader,
    /// The second vote.
    pub second: Vote,
    /// The header the second vote is for.
    pub second_header: crate::block::BlockHeader,
}

/// Equivocation evidence does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The votes are by different validators.
    #[error("the votes are by different validators")]
    DifferentVoters,
    /// A vote does not verify.
    #[error("a vote does not verify: {0}")]
    Vote(#[from] VoteError),
    /// The votes are not both valid votes for different blocks.
    #[error("the votes do not conflict")]
    NoConflict,
    /// A header does not hash to the block its vote names.
    #[error("a header does not match its vote")]
    HeaderMismatch,
    /// The blocks are at different heights or rounds.
    #[error("the blocks are at different heights or rounds")]
    DifferentSlot,
}

impl EquivocationEvidence {
    /// Checks the evidence: one trusted validator, two verifying valid votes for two different
    /// blocks of the same height and round.
    ///
    /// # Errors
    /// An [`EvidenceError`] saying which part does not hold.
    pub fn verify(&self, genesis: &Genesis) -> Result<VerifyKey, EvidenceError> {
        if self.first.node_pubkey != self.second.node_pubkey {
            return Err(EvidenceError::DifferentVoters);
        }
        self.first.verify(genesis)?;
        self.second.verify(genesis)?;
        if !self.first.is_block_valid
            || !self.second.is_block_valid
            || self.first.voting_for_block == self.second.voting_for_block
        {
            return Err(EvidenceError::NoConflict);
        }
        if self.first_header.hash() != self.first.voting_for_block
            || self.second_header.hash() != self.second.voting_for_block
        {
            return Err(EvidenceError::HeaderMismatch);
        }
        if self.first_header.height != self.second_header.height
            || self.first_header.round != self.second_header.round
        {
            return Err(EvidenceError::DifferentSlot);
        }
        Ok(self.first.node_pubkey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::tests::network;

    fn h(b: u8) -> BlockHash {
        BlockHash::from_byte_array([b; 32])
    }

    #[test]
    fn vote_round_trip_and_verify() {
        let (g, ids) = network(4, 1, 7);
        let v = Vote::cast(&ids[0], &g.chain_id(), h(1), h(2), Ok(()), 99);
        let back = Vote::from_bytes(&v.to_bytes()).unwrap();
        assert_eq!(back, v);
        back.verify(&g).unwrap();
        let bad = Vote::cast(
            &ids[1],
            &g.chain_id(),
            h(1),
            h(2),
            Err(InvalidReason::WrongMiner),
            99,
        );
        assert_eq!(bad.invalid_reason, Some(InvalidReason::WrongMiner));
        assert_eq!(Vote::from_bytes(&bad.to_bytes()).unwrap(), bad);
        // A member that is not a validator may not vote.
        let outsider = Vote::cast(&ids[4], &g.chain_id(), h(1), h(2), Ok(()), 99);
        assert_eq!(
            outsider.verify(&g).unwrap_err(),
            VoteError::UntrustedVoter(ids[4].verify_key())
        );
        // Any change to a signed field breaks the signature.
        let mut forged = v.clone();
        forged.voting_for_block = h(3);
        assert!(matches!(forged.verify(&g), Err(VoteError::BadSignature(_))));
        let mut forged = v.clone();
        forged.timestamp += 1;
        assert!(forged.verify(&g).is_err());
        // Non-canonical: valid with a reason.
        let mut raw = v.to_bytes();
        let flag = 1 + 32 + 64 + 32 + 32;
        raw[flag] = 1;
        raw.splice(flag + 1..flag + 2, [1u8, 0, 7]);
        assert!(Vote::from_bytes(&raw).is_err());
    }

    #[test]
    fn invalid_reason_codes_are_stable() {
        for (i, r) in InvalidReason::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.code()), i + 1);
            assert_eq!(InvalidReason::from_code(r.code()).unwrap(), *r);
            assert!(r.to_string().ends_with(&format!("(code {})", i + 1)));
        }
        assert!(InvalidReason::from_code(0).is_err());
        assert!(InvalidReason::from_code(999).is_err());
        assert_eq!(
            InvalidReason::WrongMiner.to_string(),
            "the miner was not elected for this round (code 7)"
        );
    }

    #[test]
    fn certificates_need_a_quorum_of_distinct_trusted_valid_votes() {
        let (g, ids) = network(4, 1, 8);
        let votes: Vec<Vote> = ids[..3]
            .iter()
            .map(|id| Vote::cast(id, &g.chain_id(), h(1), h(2), Ok(()), 1))
            .collect();
        let qc = QuorumCertificate::from_votes(&votes, &h(2));
        qc.verify(&g, &h(1), &h(2)).unwrap();
        assert_eq!(QuorumCertificate::from_bytes(&qc.to_bytes()).unwrap(), qc);
        assert_eq!(
            qc.verify(&g, &h(9), &h(2)).unwrap_err(),
            VoteError::MixedVotes
        );
        // A repeated vote counts once.
        let repeated = vec![votes[0].clone(), votes[0].clone(), votes[1].clone()];
        let qc2 = QuorumCertificate::from_votes(&repeated, &h(2));
        assert_eq!(
            qc2.verify(&g, &h(1), &h(2)).unwrap_err(),
            VoteError::NoQuorum { have: 2, need: 3 }
        );
        assert_eq!(
            VoteError::NoQuorum { have: 2, need: 3 }.to_string(),
            "certificate has 2 distinct validator votes, 3 needed"
        );
        // A repeat cannot even be encoded: decoding rejects a non-ascending set.
        let mut raw = Vec::new();
        raw.put_list(&[votes[0].clone(), votes[0].clone(), votes[1].clone()]);
        assert!(QuorumCertificate::from_bytes(&raw).is_err());
        // Votes against the block do not count.
        let against: Vec<Vote> = ids[..3]
            .iter()
            .map(|id| {
                Vote::cast(
                    id,
                    &g.chain_id(),
                    h(1),
                    h(2),
                    Err(InvalidReason::BadTransaction),
                    1,
                )
            })
            .collect();
        assert!(QuorumCertificate::from_votes(&against, &h(2))
            .verify(&g, &h(1), &h(2))
            .is_err());
        // An untrusted voter spoils the certificate.
        let mixed: Vec<Vote> = [0usize, 1, 4]
            .iter()
            .map(|&i| Vote::cast(&ids[i], &g.chain_id(), h(1), h(2), Ok(()), 1))
            .collect();
        assert!(matches!(
            QuorumCertificate::from_votes(&mixed, &h(2)).verify(&g, &h(1), &h(2)),
            Err(VoteError::UntrustedVoter(_))
        ));
    }

    /// The reference for the batched certificate check: each entry in order, structure then
    /// signature, the first failure wins.
    fn one_by_one(
        qc: &QuorumCertificate,
        g: &Genesis,
        prev: &BlockHash,
        block: &BlockHash,
    ) -> Result<(), VoteError> {
        for vote in &qc.votes {
            if !vote.is_block_valid
                || &vote.voting_for_block != block
                || &vote.previous_block != prev
            {
                return Err(VoteError::MixedVotes);
            }
            vote.verify(g)?;
        }
        Ok(())
    }

    #[test]
    fn batched_certificates_fail_exactly_as_one_by_one() {
        let (g, ids) = network(7, 1, 9);
        let mut votes: Vec<Vote> = ids[..7]
            .iter()
            .map(|id| Vote::cast(id, &g.chain_id(), h(1), h(2), Ok(()), 1))
            .collect();
        votes.sort_by_key(|v| v.node_pubkey);
        let outsider = ids[7].verify_key();
        // Spoil up to two entries in every way and every position pair.
        type Spoiler = fn(&mut Vote, VerifyKey);
        let spoilers: [Spoiler; 4] = [
            |v, _| v.timestamp += 1,                                  // bad signature
            |v, _| v.voting_for_block = h(9),                         // mixed
            |v, k| v.node_pubkey = k, // untrusted (also breaks ordering rarely)
            |v, _| v.signature = Signature::from_byte_array([0; 64]), // not a signature
        ];
        let mut compared = 0;
        for a in 0..votes.len() {
            for b in a..votes.len() {
                for (sa, sb) in [(0, 1), (1, 0), (0, 3), (2, 0), (3, 1), (0, 0)] {
                    let mut spoiled = votes.clone();
                    spoilers[sa](&mut spoiled[a], outsider);
                    spoilers[sb](&mut spoiled[b], outsider);
                    let qc = QuorumCertificate { votes: spoiled };
                    if qc
                        .votes
                        .windows(2)
                        .any(|w| w[0].node_pubkey >= w[1].node_pubkey)
                    {
                        continue; // refused before any signature, by both
                    }
                    let batched = qc.verify(&g, &h(1), &h(2));
                    assert!(batched.is_err());
                    assert_eq!(
                        batched,
                        one_by_one(&qc, &g, &h(1), &h(2)),
                        "spoiled {a}/{sa}, {b}/{sb}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 100, "{compared}");
        QuorumCertificate { votes }
            .verify(&g, &h(1), &h(2))
            .unwrap();
    }

    /// The same validator keys on a second network ("staging"), founded with another name.
    fn sibling(g: &Genesis) -> Genesis {
        Genesis::new(
            "staging",
            g.created_at_ms,
            g.network_key_fingerprint,
            g.members.clone(),
            g.quorum,
            g.timing,
            g.max_block_txs,
        )
        .unwrap()
    }

    #[test]
    fn timeouts_and_votes_from_another_network_do_not_verify() {
        // Attack (issue #12.1): a quorum of timeouts signed on a sibling network with the same
        // validator keys is replayed here as a timeout certificate.
        let (g, ids) = network(4, 0, 9);
        let staging = sibling(&g);
        assert_ne!(staging.chain_id(), g.chain_id());
        let replayed: Vec<Timeout> = ids[..3]
            .iter()
            .map(|id| Timeout::sign(id, &staging.chain_id(), 5, 0))
            .collect();
        let tc = TimeoutCertificate::from_timeouts(&replayed, 5);
        tc.verify(&staging, 5).unwrap();
        assert!(matches!(tc.verify(&g, 5), Err(VoteError::BadSignature(_))));
        // Votes and quorum certificates likewise.
        let votes: Vec<Vote> = ids[..3]
            .iter()
            .map(|id| Vote::cast(id, &staging.chain_id(), h(1), h(2), Ok(()), 1))
            .collect();
        let qc = QuorumCertificate::from_votes(&votes, &h(2));
        qc.verify(&staging, &h(1), &h(2)).unwrap();
        assert!(matches!(
            qc.verify(&g, &h(1), &h(2)),
            Err(VoteError::BadSignature(_))
        ));
    }

    #[test]
    fn timeout_certificates() {
        let (g, ids) = network(4, 0, 9);
        let ts: Vec<Timeout> = ids[..3]
            .iter()
            .enumerate()
            .map(|(i, id)| Timeout::sign(id, &g.chain_id(), 5, i as u64))
            .collect();
        let tc = TimeoutCertificate::from_timeouts(&ts, 5);
        tc.verify(&g, 5).unwrap();
        assert_eq!(tc.max_high_qc_round(), 2);
        assert_eq!(tc.round(), Some(5));
        assert_eq!(TimeoutCertificate::from_bytes(&tc.to_bytes()).unwrap(), tc);
        assert_eq!(tc.verify(&g, 6).unwrap_err(), VoteError::MixedRounds);
        let mut forged = ts[0].clone();
        forged.high_qc_round = 100;
        assert!(forged.verify(&g).is_err());
        assert!(Timeout::from_bytes(&ts[0].to_bytes()).unwrap() == ts[0]);
    }
}
