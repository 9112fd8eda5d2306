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
use crate::genesis::Genesis;
use crate::hash::{RecordId, TxId};
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
}

/// An in-memory store (tests, light nodes, the simulator).
#[derive(Debug, Default)]
pub struct MemoryStore {
    genesis: Option<Genesis>,
    blocks: Vec<Block>,
    tx_index: HashMap<TxId, (u64, u32)>,
    state: LedgerState,
    head: Option<Head>,
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
}

pub mod conformance;
