//! Storage: the trait every ledger store implements, an in-memory store, and the conformance
//! suite every backend runs (`medchain-store` runs it on SQLite and PostgreSQL).
//!
//! A store keeps the committed chain and the ledger state it implies. [`LedgerStore::append`]
//! writes a block together with its effects and the head's commit proof **atomically**: all of
//! it or none of it. A store that honours erasure prunes the payloads (sealed records, wrapped
//! keys) of an erased record's transactions in the same write; the chain still verifies.

use std::collections::HashMap;

use thiserror::Error;

use crate::block::{Block, ChainTip, CheckedBlock};
use crate::chain::CommitProof;
use crate::consent::{ConsentId, ConsentState};
use crate::encoding::Decode;
use crate::genesis::Genesis;
use crate::hash::{RecordId, TxId};
use crate::index::{BlockContext, BlockFilter, IndexEntry, IndexedRecord};
use crate::keys::VerifyKey;
use crate::ledger::{
    AuditEntry, AuditKind, BlockEffects, LedgerState, RecordEntry, StateError, StateView,
};

/// The head of a stored chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The tip (height, hash, round, timestamp, election seed).
    pub tip: ChainTip,
    /// The proof that the head is committed.
    pub proof: Option<CommitProof>,
}

/// One block's secure-index filter as a store keeps it beside the block (`docs/storage.md`):
/// what a search reads first, before it reads any record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFilterRow {
    /// The block's height.
    pub height: u64,
    /// The context the filter is keyed by (the block's Merkle root).
    pub context: BlockContext,
    /// The filter; `None` for a block assembled without one (its records are searched
    /// exhaustively).
    pub filter: Option<BlockFilter>,
    /// How many indexed records the block holds (positions are below this).
    pub entry_count: u32,
}

/// A block's secure index: its filter row and, per indexed record in position order, the record
/// id and its entry. Stores write it in the same atomic append as the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIndexRows {
    /// The filter row.
    pub filter: IndexFilterRow,
    /// The indexed records, by position.
    pub records: Vec<IndexedRecord>,
}

/// A block's index rows could not be derived from the block and its effects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IndexRowsError {
    /// An index entry does not decode.
    #[error("the index entry of transaction {0} does not decode")]
    BadEntry(usize),
    /// An index entry sits on a transaction that adds no record in these effects.
    #[error("transaction {0} carries an index entry but adds no record")]
    NotARecord(usize),
    /// The block's filter does not decode or does not fit its entries.
    #[error("the block's index filter does not fit its entries")]
    BadFilter,
    /// The block holds more indexed records than a filter can cover.
    #[error("the block holds too many indexed records")]
    TooMany,
}

/// The secure index of a validated block, from the block and the effects its validation
/// produced (which map each `RecordAdded` transaction to its record id): `None` when the
/// block holds no indexed record.
///
/// # Errors
/// An [`IndexRowsError`] (a block that passed validation does not produce one).
pub fn index_rows(
    block: &CheckedBlock,
    effects: &BlockEffects,
) -> Result<Option<BlockIndexRows>, IndexRowsError> {
    let by_tx: HashMap<TxId, RecordId> =
        effects.records().map(|r| (r.tx_id, r.record_id)).collect();
    let mut records = Vec::new();
    for (i, (tx, id)) in block
        .block()
        .transactions
        .iter()
        .zip(block.tx_ids())
        .enumerate()
    {
        if tx.index_entry().is_empty() {
            continue;
        }
        let entry =
            IndexEntry::from_bytes(tx.index_entry()).map_err(|_| IndexRowsError::BadEntry(i))?;
        let record_id = *by_tx.get(id).ok_or(IndexRowsError::NotARecord(i))?;
        records.push(IndexedRecord { record_id, entry });
    }
    if records.is_empty() {
        return Ok(None);
    }
    let entry_count = u32::try_from(records.len()).map_err(|_| IndexRowsError::TooMany)?;
    let raw = &block.block().index_filter;
    let filter = if raw.is_empty() {
        None
    } else {
        let f = BlockFilter::from_bytes(raw).map_err(|_| IndexRowsError::BadFilter)?;
        f.check_entries(records.iter().map(|r| &r.entry))
            .map_err(|_| IndexRowsError::BadFilter)?;
        Some(f)
    };
    Ok(Some(BlockIndexRows {
        filter: IndexFilterRow {
            height: block.header().height,
            context: BlockContext::from(block.header().merkle_root()),
            filter,
            entry_count,
        },
        records,
    }))
}

/// Whether `effects` can be the effects of validating `block`: same height, and exactly the
/// block's transactions, every record and audit entry made by one of them at that height.
/// A cheap consistency check for stores that take a block and its effects from a caller that
/// validated them (`Ledger::append_checked`); it cannot tell effects computed over another
/// state.
pub fn effects_match(block: &CheckedBlock, effects: &BlockEffects) -> bool {
    let height = block.header().height;
    if effects.height() != height {
        return false;
    }
    let ids: std::collections::HashSet<&TxId> = block.tx_ids().iter().collect();
    let mut n = 0usize;
    for id in effects.tx_ids() {
        if !ids.contains(id) {
            return false;
        }
        n += 1;
    }
    n == ids.len()
        && effects
            .records()
            .all(|r| r.height == height && ids.contains(&r.tx_id))
        && effects
            .audit()
            .iter()
            .all(|a| a.height == height && ids.contains(&a.tx_id))
        && effects.consents().iter().all(|c| c.revoked_at.is_none())
}

/// A ledger store.
pub trait LedgerStore: StateView {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The genesis this store holds, if initialised.
    ///
    /// # Errors
    /// The backend's error.
    fn genesis(&self) -> Result<Option<Genesis>, Self::Error>;

    /// Initialises an empty store with `genesis`; succeeds without change if the store already
    /// holds the same genesis, and fails if it holds another.
    ///
    /// # Errors
    /// The backend's error.
    fn init(&mut self, genesis: &Genesis) -> Result<(), Self::Error>;

    /// Appends the next block with its effects and its commit proof, atomically.
    ///
    /// # Errors
    /// The backend's error; nothing is written then.
    fn append(
        &mut self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: Option<&CommitProof>,
    ) -> Result<(), Self::Error>;

    /// Appends consecutive blocks, oldest first, each with its effects, and the commit proof
    /// of the last one, in **one** atomic write: all of them or none. One commit step of the
    /// protocol can commit several blocks at once (a block and its uncommitted ancestors); the
    /// proof then exists for the highest only, and the others are proven by being its
    /// ancestors (each block names its parent's hash). The stored head's proof is `proof`.
    ///
    /// # Errors
    /// The backend's error (a block out of order, effects of another block, an empty list);
    /// nothing is written then.
    fn append_chain(
        &mut self,
        blocks: &[(&CheckedBlock, &BlockEffects)],
        proof: &CommitProof,
    ) -> Result<(), Self::Error>;

    /// The head (`None` when only genesis is stored).
    ///
    /// # Errors
    /// The backend's error.
    fn head(&self) -> Result<Option<Head>, Self::Error>;

    /// The block at `height` (1-based).
    ///
    /// # Errors
    /// The backend's error.
    fn block(&self, height: u64) -> Result<Option<Block>, Self::Error>;

    /// Where a transaction is: block height and index.
    ///
    /// # Errors
    /// The backend's error.
    fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, Self::Error>;

    /// A patient's records.
    ///
    /// # Errors
    /// The backend's error.
    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, Self::Error>;

    /// The audit trail of a record, oldest first.
    ///
    /// # Errors
    /// The backend's error.
    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, Self::Error>;

    /// The audit trail of a patient's records, oldest first.
    ///
    /// # Errors
    /// The backend's error.
    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, Self::Error>;

    /// The secure-index filter rows of up to `limit` blocks at or above `from` that hold
    /// indexed records, in height order (blocks without indexed records have none). What a
    /// search reads first: no block, transaction or record.
    ///
    /// # Errors
    /// The backend's error.
    fn index_filters(&self, from: u64, limit: usize) -> Result<Vec<IndexFilterRow>, Self::Error>;

    /// The indexed record at `position` of block `height` (what a search reads for each
    /// candidate its filter names).
    ///
    /// # Errors
    /// The backend's error.
    fn indexed_record(
        &self,
        height: u64,
        position: u32,
    ) -> Result<Option<IndexedRecord>, Self::Error>;
}

/// The transactions whose payloads an erasure of `record` prunes: the record's own and every
/// key release of it.
pub fn erasure_targets(record: &RecordEntry, audit: &[AuditEntry]) -> Vec<TxId> {
    let mut out = vec![record.tx_id];
    out.extend(
        audit
            .iter()
            .filter(|a| a.record_id == record.record_id && a.kind == AuditKind::KeyShared)
            .map(|a| a.tx_id),
    );
    out
}

/// Errors of the in-memory store.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MemoryStoreError {
    /// The store holds another genesis.
    #[error("the store holds another chain")]
    WrongGenesis,
    /// The store has no genesis yet.
    #[error("the store is not initialised")]
    NotInitialised,
    /// The block is not the next one.
    #[error("block at height {got} does not follow the head at height {have}")]
    OutOfOrder {
        /// The head's height.
        have: u64,
        /// The block's height.
        got: u64,
    },
    /// The effects are not those of the block.
    #[error("the effects do not belong to the block")]
    EffectsMismatch,
    /// The block's index rows could not be derived.
    #[error(transparent)]
    Index(#[from] IndexRowsError),
}

/// An in-memory store (tests, light nodes, the simulator).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    genesis: Option<Genesis>,
    blocks: Vec<Block>,
    tx_index: HashMap<TxId, (u64, u32)>,
    state: LedgerState,
    head: Option<Head>,
    index: std::collections::BTreeMap<u64, BlockIndexRows>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl StateView for MemoryStore {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.tx_index.contains_key(id))
    }
    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        StateView::record(&self.state, id)
    }
    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        StateView::consent(&self.state, id)
    }
    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        StateView::consents_of(&self.state, patient)
    }
    fn height(&self) -> u64 {
        self.blocks.len() as u64
    }
}

impl LedgerStore for MemoryStore {
    type Error = MemoryStoreError;

    fn genesis(&self) -> Result<Option<Genesis>, Self::Error> {
        Ok(self.genesis.clone())
    }

    fn init(&mut self, genesis: &Genesis) -> Result<(), Self::Error> {
        match &self.genesis {
            Some(g) if g.hash() == genesis.hash() => Ok(()),
            Some(_) => Err(MemoryStoreError::WrongGenesis),
            None => {
                self.genesis = Some(genesis.clone());
                Ok(())
            }
        }
    }

    fn append(
        &mut self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: Option<&CommitProof>,
    ) -> Result<(), Self::Error> {
        if self.genesis.is_none() {
            return Err(MemoryStoreError::NotInitialised);
        }
        let height = block.header().height;
        let have = self.blocks.len() as u64;
        if height != have + 1 || effects.height() != height {
            return Err(MemoryStoreError::OutOfOrder { have, got: height });
        }
        if !effects_match(block, effects) {
            return Err(MemoryStoreError::EffectsMismatch);
        }
        let index = index_rows(block, effects)?;
        // Build everything first, then swap in: all or nothing.
        let mut state = self.state.clone();
        state
            .commit(effects.clone())
            .map_err(|_| MemoryStoreError::OutOfOrder { have, got: height })?;
        let mut blocks = self.blocks.clone();
        blocks.push(block.block().clone());
        let mut tx_index = self.tx_index.clone();
        for (i, id) in block.tx_ids().iter().enumerate() {
            tx_index.insert(*id, (height, i as u32));
        }
        for rid in effects.erased() {
            if let Some(rec) = state.record(rid).cloned() {
                for tx in erasure_targets(&rec, state.audit()) {
                    if let Some((h, i)) = tx_index.get(&tx) {
                        if let Some(t) = blocks
                            .get_mut(*h as usize - 1)
                            .and_then(|b| b.transactions.get_mut(*i as usize))
                        {
                            t.prune();
                        }
                    }
                }
            }
        }
        self.state = state;
        self.blocks = blocks;
        self.tx_index = tx_index;
        self.head = Some(Head {
            tip: block.tip(),
            proof: proof.cloned(),
        });
        if let Some(rows) = index {
            self.index.insert(height, rows);
        }
        Ok(())
    }

    fn append_chain(
        &mut self,
        blocks: &[(&CheckedBlock, &BlockEffects)],
        proof: &CommitProof,
    ) -> Result<(), Self::Error> {
        let have = self.blocks.len() as u64;
        let Some((&(last, last_effects), earlier)) = blocks.split_last() else {
            return Err(MemoryStoreError::OutOfOrder { have, got: have });
        };
        // Every block into a copy, then swap in: all or nothing.
        let mut next = self.clone();
        for (block, effects) in earlier {
            next.append(block, effects, None)?;
        }
        next.append(last, last_effects, Some(proof))?;
        *self = next;
        Ok(())
    }

    fn head(&self) -> Result<Option<Head>, Self::Error> {
        Ok(self.head.clone())
    }

    fn block(&self, height: u64) -> Result<Option<Block>, Self::Error> {
        Ok(height
            .checked_sub(1)
            .and_then(|i| self.blocks.get(i as usize))
            .cloned())
    }

    fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, Self::Error> {
        Ok(self.tx_index.get(id).copied())
    }

    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, Self::Error> {
        Ok(self
            .state
            .records_of(patient)
            .into_iter()
            .cloned()
            .collect())
    }

    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, Self::Error> {
        Ok(self
            .state
            .audit_of_record(id)
            .into_iter()
            .cloned()
            .collect())
    }

    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, Self::Error> {
        Ok(self
            .state
            .audit_of_patient(patient)
            .into_iter()
            .cloned()
            .collect())
    }

    fn index_filters(&self, from: u64, limit: usize) -> Result<Vec<IndexFilterRow>, Self::Error> {
        Ok(self
            .index
            .range(from..)
            .take(limit)
            .map(|(_, r)| r.filter.clone())
            .collect())
    }

    fn indexed_record(
        &self,
        height: u64,
        position: u32,
    ) -> Result<Option<IndexedRecord>, Self::Error> {
        Ok(self
            .index
            .get(&height)
            .and_then(|r| r.records.get(position as usize))
            .cloned())
    }
}

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
