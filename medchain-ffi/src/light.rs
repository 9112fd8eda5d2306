//! The light client: is this transaction in a committed block of the network I trust?
//!
//! The app pins the network's genesis (its canonical bytes, and ideally the genesis hash
//! shipped inside the app) and fetches, for a transaction it cares about, an inclusion proof
//! from any node: the core's `InclusionProof` (`medchain_core::light`), made by the node with
//! `InclusionProof::new(block, index, commit_proof)` or, for a block committed through a later
//! descendant, `InclusionProof::with_descendants` with what `light::commit_path` finds.
//! [`TrustedNetwork::verify_inclusion`] checks it with nothing but the genesis: the
//! transaction's signature, its Merkle path to the header's root, that the descendant headers
//! (if any) link by hash from this header, and that a quorum of the genesis validators
//! certified the last one's child in the next round (two-chain commit).
//!
//! It trusts the genesis (its validator set and quorum), and nothing a node says. It cannot see
//! inside the transaction (the body is encrypted under the network key), so the app compares
//! the returned `tx_id` with the one it expects.

use std::sync::Arc;

use medchain_core::encoding::Decode;
use medchain_core::genesis::Genesis;
use medchain_core::hash::BlockHash;
use medchain_core::light::{CommittedTx, InclusionProof};
use medchain_core::tx::TxKind;

use crate::error::{guard, ProofError};

/// Largest genesis accepted (bytes).
const MAX_GENESIS: usize = 4 * 1024 * 1024;
/// Largest inclusion proof accepted (bytes): the pruned transaction, a path and two headers
/// with their certificates.
const MAX_PROOF: usize = 4 * 1024 * 1024;

/// A transaction kind, as its clear envelope shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TransactionKind {
    /// A sealed record was added.
    RecordAdded,
    /// A consent was granted.
    ConsentGranted,
    /// A consent was revoked.
    ConsentRevoked,
    /// A record key was shared with a reader.
    KeyShared,
    /// A record was accessed.
    AccessLogged,
    /// A record was erased.
    RecordErased,
    /// A research release was logged (it names no patient).
    ResearchReleased,
    /// A request for a record's key was refused, logged by the record's holder.
    AccessDenied,
    /// A kind this version does not know.
    Other,
}

impl From<TxKind> for TransactionKind {
    fn from(k: TxKind) -> Self {
        match k {
            TxKind::RecordAdded => Self::RecordAdded,
            TxKind::ConsentGranted => Self::ConsentGranted,
            TxKind::ConsentRevoked => Self::ConsentRevoked,
            TxKind::KeyShared => Self::KeyShared,
            TxKind::AccessLogged => Self::AccessLogged,
            TxKind::RecordErased => Self::RecordErased,
            TxKind::ResearchReleased => Self::ResearchReleased,
            TxKind::AccessDenied => Self::AccessDenied,
            _ => Self::Other,
        }
    }
}

/// What a verified inclusion proof establishes.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CommittedTransaction {
    /// The transaction's id (hex).
    pub tx_id: String,
    /// Its kind.
    pub kind: TransactionKind,
    /// The contributing node's signing key (hex).
    pub contributor: String,
    /// The contributing node's name in genesis, if it is a member.
    pub contributor_name: Option<String>,
    /// The contributor's timestamp (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// The committed block's hash (hex).
    pub block_hash: String,
    /// The block's height.
    pub height: u64,
    /// The block's consensus round.
    pub round: u64,
    /// The block's timestamp.
    pub block_timestamp_ms: u64,
}

/// The trusted network, as its genesis describes it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NetworkInfo {
    /// The chain's name.
    pub chain_name: String,
    /// The genesis hash (hex): the chain id.
    pub genesis_hash: String,
    /// Member institutions, by name.
    pub members: Vec<String>,
    /// Trusted validators.
    pub validators: u32,
    /// Votes needed to certify a block.
    pub quorum: u32,
}

/// A network pinned by its genesis: the light client's only trust anchor.
#[derive(Debug, uniffi::Object)]
pub struct TrustedNetwork {
    genesis: Genesis,
}

impl TrustedNetwork {
    pub(crate) fn from_bytes(
        bytes: &[u8],
        expected_hash: Option<&str>,
    ) -> Result<Self, ProofError> {
        if bytes.len() > MAX_GENESIS {
            return Err(ProofError::Malformed {
                what: "genesis".into(),
                reason: format!("{} bytes, at most {MAX_GENESIS}", bytes.len()),
            });
        }
        let genesis = Genesis::from_bytes(bytes).map_err(|e| ProofError::Malformed {
            what: "genesis".into(),
            reason: e.to_string(),
        })?;
        if let Some(expected) = expected_hash {
            let pinned: BlockHash = expected.trim().parse().map_err(|_| ProofError::Malformed {
                what: "pinned genesis hash".into(),
                reason: "not 64 hex digits".into(),
            })?;
            if pinned != genesis.hash() {
                return Err(ProofError::GenesisMismatch {
                    expected: pinned.to_string(),
                    actual: genesis.hash().to_string(),
                });
            }
        }
        Ok(Self { genesis })
    }

    /// The chain id the network's signatures bind.
    pub(crate) fn chain_id(&self) -> medchain_core::hash::ChainId {
        self.genesis.chain_id()
    }

    pub(crate) fn verify(&self, proof: &[u8]) -> Result<CommittedTransaction, ProofError> {
        if proof.len() > MAX_PROOF {
            return Err(ProofError::Malformed {
                what: "inclusion proof".into(),
                reason: format!("{} bytes, at most {MAX_PROOF}", proof.len()),
            });
        }
        let proof = InclusionProof::from_bytes(proof).map_err(|e| ProofError::Malformed {
            what: "inclusion proof".into(),
            reason: e.to_string(),
        })?;
        let c: CommittedTx = proof.verify(&self.genesis)?;
        Ok(CommittedTransaction {
            tx_id: c.tx_id.to_string(),
            kind: c.kind.into(),
            contributor: c.contributor.to_string(),
            contributor_name: self.genesis.member(&c.contributor).map(|m| m.name.clone()),
            timestamp_ms: c.timestamp_ms,
            block_hash: c.block_hash.to_string(),
            height: c.height,
            round: c.round,
            block_timestamp_ms: c.block_timestamp_ms,
        })
    }
}

#[uniffi::export]
impl TrustedNetwork {
    /// Pins a network by its genesis bytes; with `expected_hash` (hex), refuses any other
    /// genesis.
    ///
    /// # Errors
    /// [`ProofError::Malformed`], [`ProofError::GenesisMismatch`].
    #[uniffi::constructor]
    pub fn new(genesis: Vec<u8>, expected_hash: Option<String>) -> Result<Arc<Self>, ProofError> {
        guard(|| Self::from_bytes(&genesis, expected_hash.as_deref()).map(Arc::new))
    }

    /// What the genesis says.
    pub fn info(&self) -> NetworkInfo {
        let g = &self.genesis;
        NetworkInfo {
            chain_name: g.chain_name.clone(),
            genesis_hash: g.hash().to_string(),
            members: g.members.iter().map(|m| m.name.clone()).collect(),
            validators: u32::try_from(g.validators().len()).unwrap_or(u32::MAX),
            quorum: u32::try_from(g.quorum_size()).unwrap_or(u32::MAX),
        }
    }

    /// Checks an inclusion proof (its canonical bytes) against this genesis.
    ///
    /// # Errors
    /// [`ProofError::Malformed`], and one variant per way the proof fails:
    /// [`ProofError::WrongNetwork`], [`ProofError::BadTransactionSignature`],
    /// [`ProofError::NotInBlock`], [`ProofError::HeaderNotCertified`],
    /// [`ProofError::NotConsecutive`], [`ProofError::UntrustedVoter`],
    /// [`ProofError::BadVoteSignature`], [`ProofError::NoQuorum`], [`ProofError::MixedVotes`].
    pub fn verify_inclusion(&self, proof: Vec<u8>) -> Result<CommittedTransaction, ProofError> {
        guard(|| self.verify(&proof))
    }
}
