//! What both backends share: stored forms, the open checks, the shell of a block.

use medchain_core::block::{BatchVerifier, Block, ChainTip, CheckedBlock, NoRules};
use medchain_core::chain::CommitProof;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::genesis::Genesis;
use medchain_core::ledger::BlockEffects;
use medchain_core::store::{effects_match, Head};
use medchain_core::tx::Transaction;

use crate::crypt::StateKey;
use crate::error::{Corruption, StoreError};
use crate::rows::{Commitment, Counts, Row, Table};

/// The schema version this build writes and reads. Version 2: append-only derived state bound
/// to its row identity, the state commitment in the head, the secure-index tables.
pub const SCHEMA_VERSION: i64 = 2;

/// The `meta` key under which a store keeps its node's durable state (`Ledger::save_durable_state`).
pub(crate) const NODE_STATE_KEY: &str = "node_safety";

/// Most transactions a block may hold; a transaction's row number is `height << 20 | index`,
/// and so is a derived row's (`height << 20 | rank`).
pub(crate) const TX_SEQ_SHIFT: u32 = 20;

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
        return Err(StoreError::corrupt(format!(
            "block {height} has {} stored transactions, its header says {}",
            txs.len(),
            block.header.tx_count
        )));
    }
    block.transactions = txs;
    Ok(block)
}

/// A stored transaction, whose payload is absent exactly when its row says it was pruned.
pub(crate) fn stored_tx(bytes: &[u8], pruned: bool) -> Result<Transaction, StoreError> {
    let t = Transaction::from_bytes(bytes)?;
    if t.is_pruned() != pruned {
        return Err(Corruption::UnexplainedPruning { count: 1 }.into());
    }
    Ok(t)
}

/// The head record: the head, its state commitment and the commitment's tag.
pub(crate) struct StoredHead {
    pub(crate) head: Head,
    pub(crate) commitment: Commitment,
    pub(crate) tag: Vec<u8>,
}

impl StoredHead {
    pub(crate) fn from_parts(
        tip: ChainTip,
        proof: &[u8],
        state: &[u8],
        counts: &[u8],
        tag: Vec<u8>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            head: Head {
                tip,
                proof: Some(CommitProof::from_bytes(proof)?),
            },
            commitment: Commitment {
                state: array32(state, "state commitment")?,
                counts: Counts::from_bytes(counts)?,
            },
            tag,
        })
    }
}

pub(crate) fn check_version(version: Option<i64>) -> Result<(), StoreError> {
    match version {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(found) => Err(StoreError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        }),
        None => Err(StoreError::NotAStore("the schema version is missing")),
    }
}

/// The blocks are exactly `1..=head`.
pub(crate) fn check_block_count(count: u64, max: u64, head: u64) -> Result<(), StoreError> {
    if count != head || max != head {
        return Err(StoreError::corrupt(format!(
            "{count} blocks up to height {max} are stored, the head is at height {head}"
        )));
    }
    Ok(())
}

/// The head's commitment verifies under the state key and counts exactly the rows `found`.
pub(crate) fn check_counts(
    key: &StateKey,
    head: Option<&StoredHead>,
    found: &Counts,
) -> Result<(), StoreError> {
    let empty = Counts::default();
    let committed = match head {
        Some(h) => {
            key.check_head_tag(
                h.head.tip.height,
                &h.head.tip.hash,
                &h.commitment.state,
                &h.commitment.counts,
                &h.tag,
            )?;
            &h.commitment.counts
        }
        None => &empty,
    };
    for table in Table::ALL {
        if committed.of(table) != found.of(table) {
            return Err(Corruption::RowCount {
                table: table.name(),
                committed: committed.of(table),
                found: found.of(table),
            }
            .into());
        }
    }
    if committed.pruned != found.pruned {
        return Err(Corruption::RowCount {
            table: "transactions (pruned)",
            committed: committed.pruned,
            found: found.pruned,
        }
        .into());
    }
    Ok(())
}

/// The block is the next one after the stored head and the effects are its own.
pub(crate) fn check_next(
    genesis: Option<&Genesis>,
    head: Option<&StoredHead>,
    block: &CheckedBlock,
    effects: &BlockEffects,
) -> Result<(), StoreError> {
    let genesis = genesis.ok_or(StoreError::NotInitialised)?;
    let (have, parent) = match head {
        Some(h) => (h.head.tip.height, h.head.tip.hash),
        None => (0, genesis.hash()),
    };
    let got = block.header().height;
    if got != have + 1 || block.header().prev != parent || effects.height() != got {
        return Err(StoreError::OutOfOrder { have, got });
    }
    if block.header().chain != genesis.hash() {
        return Err(StoreError::WrongGenesis);
    }
    if !effects_match(block, effects) {
        return Err(StoreError::EffectsMismatch);
    }
    Ok(())
}

/// A stored derived row, opened under the identity it is found with (filters are public and
/// not sealed).
pub(crate) fn open_stored(
    key: &StateKey,
    table: Table,
    seq: i64,
    tags: Vec<[u8; 32]>,
    clear: Vec<u8>,
    sealed: Option<Vec<u8>>,
) -> Result<Row, StoreError> {
    let seq = u64_of(seq, "row number")?;
    match sealed {
        Some(s) => key.open_row(table, seq, tags, clear, &s),
        None if !table.sealed() => Ok(Row {
            table,
            seq,
            tags,
            clear,
            secret: Default::default(),
        }),
        None => Err(Corruption::Row {
            table: table.name(),
        }
        .into()),
    }
}

/// Checks the stored head: its block validates against its stored parent (signatures,
/// certificate, election, Merkle root; payloads pruned by an erasure are accepted, as in any
/// re-read history), makes exactly the stored tip, and its commit proof holds against genesis.
pub(crate) fn verify_head(
    genesis: &Genesis,
    block: Block,
    parent: &ChainTip,
    stored: &ChainTip,
    proof: &CommitProof,
) -> Result<(), StoreError> {
    let checked = block
        .validate_history(genesis, parent, &mut NoRules, &mut BatchVerifier)
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
    u64::try_from(v).map_err(|_| StoreError::corrupt(format!("negative {what}")))
}

pub(crate) fn i64_of(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::corrupt(format!("{what} out of range")))
}

pub(crate) fn array32(v: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::corrupt(format!("{what} is not 32 bytes")))
}
