//! What both backends share: stored forms, the head check, the shell of a block.

use medchain_core::block::{Block, ChainTip, NoRules};
use medchain_core::chain::CommitProof;
use medchain_core::consent::{Consent, ConsentState};
use medchain_core::encoding::{Decode, Encode, Reader, Writer};
use medchain_core::genesis::Genesis;
use medchain_core::tx::Transaction;

use crate::error::StoreError;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

/// Format version of a stored consent state.
const CONSENT_STATE_VERSION: u8 = 1;

/// Most transactions a block may hold; a transaction's row number is `height << 20 | index`.
pub(crate) const TX_SEQ_SHIFT: u32 = 20;

/// The stored form of a consent and its revocation:
/// `version (1) | consent (canonical) | revoked_at: option u64`.
pub(crate) fn encode_consent_state(c: &ConsentState) -> Vec<u8> {
    let mut out = vec![CONSENT_STATE_VERSION];
    c.consent.encode_to(&mut out);
    out.put_option(c.revoked_at.as_ref());
    out
}

pub(crate) fn decode_consent_state(bytes: &[u8]) -> Result<ConsentState, StoreError> {
    let mut r = Reader::new(bytes);
    r.version("consent state", CONSENT_STATE_VERSION)?;
    let consent = Consent::decode_from(&mut r)?;
    let revoked_at: Option<u64> = r.option("revocation height")?;
    r.finish()?;
    let mut state = ConsentState::new(consent);
    state.revoked_at = revoked_at;
    Ok(state)
}

/// The block without its transactions (which are stored one per row), canonically encoded.
pub(crate) fn shell_of(block: &Block) -> Vec<u8> {
    Block {
        header: block.header.clone(),
        miner_signature: block.miner_signature,
        contributor_signatures: block.contributor_signatures.clone(),
        transactions: Vec::new(),
        index_filter: block.index_filter.clone(),
    }
    .to_bytes()
}

/// A block from its shell and its transactions.
pub(crate) fn assemble(
    height: u64,
    shell: &[u8],
    txs: Vec<Transaction>,
) -> Result<Block, StoreError> {
    let mut block = Block::from_bytes(shell)?;
    if !block.transactions.is_empty()
        || block.header.height != height
        || block.header.tx_count as usize != txs.len()
    {
        return Err(StoreError::Corrupt(format!(
            "block {height} has {} stored transactions, its header says {}",
            txs.len(),
            block.header.tx_count
        )));
    }
    block.transactions = txs;
    Ok(block)
}

/// Checks the stored head: its block validates against its stored parent (signatures,
/// certificate, election, Merkle root), makes exactly the stored tip, and its commit proof holds
/// against genesis.
pub(crate) fn verify_head(
    genesis: &Genesis,
    block: Block,
    parent: &ChainTip,
    stored: &ChainTip,
    proof: &CommitProof,
) -> Result<(), StoreError> {
    let checked = block
        .validate(genesis, parent, &mut NoRules)
        .map_err(|e| StoreError::HeadInvalid(format!("the head block does not validate: {e}")))?;
    if &checked.tip() != stored {
        return Err(StoreError::HeadInvalid(
            "the head block does not match the stored tip".into(),
        ));
    }
    proof
        .verify(genesis, &stored.hash, stored.round)
        .map_err(|e| StoreError::HeadInvalid(format!("the head's commit proof: {e}")))
}

pub(crate) fn u64_of(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

pub(crate) fn i64_of(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} out of range")))
}

pub(crate) fn array32(v: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}
