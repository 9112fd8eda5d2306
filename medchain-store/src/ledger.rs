//! The [`Ledger`] API for embedders: open a store, append committed blocks after validating
//! them, read records, consents and the audit trail, search, release research data, and
//! verify the whole chain.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use getrandom::SysRng;
use rand_core::UnwrapErr;

use medchain_core::block::{Block, ChainTip, CheckedBlock, TxVerifier};
use medchain_core::chain::{ChainError, ChainSummary, CommitProof, Progress};
use medchain_core::consent::{ConsentId, ConsentState, ReleaseClock};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::genesis::Genesis;
use medchain_core::hash::{RecordId, TxId};
use medchain_core::index::{
    search, search_exhaustive, BlockContext, BlockFilter, IndexEntry, IndexedRecord, Query,
    SearchableBlock,
};
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::ledger::{
    rules_over, AuditEntry, BlockEffects, LedgerState, Overlay, RecordEntry, StateError, StateView,
};
use medchain_core::protocol::{CommittedChain, DurableState};
use medchain_core::research::{ReleaseBuilder, ResearchRelease, ResearchRequest};
use medchain_core::seal::{NetworkKey, SealedRecord};
use medchain_core::store::{Head, IndexFilterRow, LedgerStore};
use medchain_core::tx::{Transaction, TxBody, TxError, TxKind, VerifiedTx};

use crate::error::{Corruption, LedgerError, StoreError};
use crate::location::LedgerLocation;
use crate::rows::StateAudit;
use crate::sqlite::SqliteStore;

mod private {
    /// Only this crate's stores implement [`super::PersistentStore`]: its checks need the
    /// store's state key.
    pub trait Sealed {}
    impl Sealed for crate::SqliteStore {}
    #[cfg(feature = "postgres")]
    impl Sealed for crate::PostgresStore {}
    impl Sealed for super::AnyStore {}
}

/// A store the [`Ledger`] can run on: a [`LedgerStore`] with [`StoreError`]s that can also
/// read one transaction by id and check its derived state against the chain (sealed: only
/// this crate's stores implement it).
pub trait PersistentStore: LedgerStore<Error = StoreError> + private::Sealed {
    /// One committed transaction.
    ///
    /// # Errors
    /// The backend's error.
    fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError>;

    /// Checks that the derived rows stored for `block` are exactly those its `effects` imply
    /// (re-derived by [`Ledger::verify`]), and advances `audit` over them.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] with [`Corruption::StateMismatch`] or [`Corruption::Row`];
    /// backend errors.
    fn check_block_state(
        &self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        audit: &mut StateAudit,
    ) -> Result<(), StoreError>;

    /// Checks that `audit`, advanced over every block, ends at the head's state commitment.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] with [`Corruption::CommitmentMismatch`]; backend errors.
    fn check_state_commitment(&self, audit: &StateAudit) -> Result<(), StoreError>;

    /// The index rows at `(height, position)`, in the order asked (`None` where there is
    /// none): what a search reads for its candidates, in one round trip where the backend has
    /// round trips.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row that does not open under its identity; backend errors.
    fn indexed_records(&self, at: &[(u64, u32)]) -> Result<Vec<Option<IndexedRecord>>, StoreError>;

    /// Whether each record is erased, in the order asked: an erasure row, opened under its
    /// identity, names it. Only the (small) erasures table is read, in one round trip where
    /// the backend has round trips.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an erasure row that does not open under its identity or
    /// names another record; backend errors.
    fn erased_records(&self, ids: &[RecordId]) -> Result<Vec<bool>, StoreError>;

    /// The node state kept beside the chain (a validator's encoded
    /// [`DurableState`](medchain_core::protocol::DurableState)), if any was saved.
    ///
    /// # Errors
    /// Backend errors.
    fn node_state(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the node state kept beside the chain; durable when it returns.
    ///
    /// # Errors
    /// Backend errors (then the previous state is kept).
    fn save_node_state(&mut self, bytes: &[u8]) -> Result<(), StoreError>;

    /// A second, read-only connection to this store, which a node reads the committed chain
    /// through while its host appends here ([`SqliteStore::reader`], `PostgresStore::reader`;
    /// the consistency argument is in `docs/storage.md`, "A node reading the ledger"). Its
    /// state key is unsealed again under `network`.
    ///
    /// # Errors
    /// [`StoreError::WrongKey`], [`StoreError::WrongGenesis`], backend errors.
    fn committed_reader(&self, network: &NetworkKey)
        -> Result<Box<dyn CommittedChain>, StoreError>;
}

macro_rules! persistent {
    ($t:ty) => {
        impl PersistentStore for $t {
            fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
                <$t>::transaction(self, id)
            }
            fn check_block_state(
                &self,
                block: &CheckedBlock,
                effects: &BlockEffects,
                audit: &mut StateAudit,
            ) -> Result<(), StoreError> {
                <$t>::check_block_state(self, block, effects, audit)
            }
            fn check_state_commitment(&self, audit: &StateAudit) -> Result<(), StoreError> {
                <$t>::check_state_commitment(self, audit)
            }
            fn indexed_records(
                &self,
                at: &[(u64, u32)],
            ) -> Result<Vec<Option<IndexedRecord>>, StoreError> {
                <$t>::indexed_records(self, at)
            }
            fn erased_records(&self, ids: &[RecordId]) -> Result<Vec<bool>, StoreError> {
                <$t>::erased_records(self, ids)
            }
            fn node_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
                <$t>::node_state(self)
            }
            fn save_node_state(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
                <$t>::save_node_state(self, bytes)
            }
            fn committed_reader(
                &self,
                network: &NetworkKey,
            ) -> Result<Box<dyn CommittedChain>, StoreError> {
                Ok(Box::new(<$t>::reader(self, network)?))
            }
        }
    };
}

persistent!(SqliteStore);
#[cfg(feature = "postgres")]
persistent!(crate::pg::PostgresStore);

/// Either backend, chosen at run time by [`Ledger::open`]'s location.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyStore {
    /// A SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL schema.
    #[cfg(feature = "postgres")]
    Postgres(crate::pg::PostgresStore),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl StateView for AnyStore {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        each!(self, s => s.contains_tx(id))
    }
    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        each!(self, s => StateView::record(s, id))
    }
    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        each!(self, s => s.consent(id))
    }
    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        each!(self, s => s.consents_of(patient))
    }
    fn height(&self) -> u64 {
        each!(self, s => s.height())
    }
}

impl LedgerStore for AnyStore {
    type Error = StoreError;
    fn genesis(&self) -> Result<Option<Genesis>, StoreError> {
        each!(self, s => s.genesis())
    }
    fn init(&mut self, genesis: &Genesis) -> Result<(), StoreError> {
        each!(self, s => s.init(genesis))
    }
    fn append(
        &mut self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: Option<&CommitProof>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.append(block, effects, proof))
    }
    fn append_chain(
        &mut self,
        blocks: &[(&CheckedBlock, &BlockEffects)],
        proof: &CommitProof,
    ) -> Result<(), StoreError> {
        each!(self, s => s.append_chain(blocks, proof))
    }
    fn head(&self) -> Result<Option<Head>, StoreError> {
        each!(self, s => s.head())
    }
    fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        each!(self, s => s.block(height))
    }
    fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, StoreError> {
        each!(self, s => s.tx_location(id))
    }
    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, StoreError> {
        each!(self, s => s.records_of(patient))
    }
    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, StoreError> {
        each!(self, s => s.audit_of_record(id))
    }
    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, StoreError> {
        each!(self, s => s.audit_of_patient(patient))
    }
    fn index_filters(&self, from: u64, limit: usize) -> Result<Vec<IndexFilterRow>, StoreError> {
        each!(self, s => s.index_filters(from, limit))
    }
    fn indexed_record(
        &self,
        height: u64,
        position: u32,
    ) -> Result<Option<IndexedRecord>, StoreError> {
        each!(self, s => s.indexed_record(height, position))
    }
}

impl PersistentStore for AnyStore {
    fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        each!(self, s => s.transaction(id))
    }
    fn check_block_state(
        &self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        audit: &mut StateAudit,
    ) -> Result<(), StoreError> {
        each!(self, s => s.check_block_state(block, effects, audit))
    }
    fn check_state_commitment(&self, audit: &StateAudit) -> Result<(), StoreError> {
        each!(self, s => s.check_state_commitment(audit))
    }
    fn indexed_records(&self, at: &[(u64, u32)]) -> Result<Vec<Option<IndexedRecord>>, StoreError> {
        each!(self, s => s.indexed_records(at))
    }
    fn erased_records(&self, ids: &[RecordId]) -> Result<Vec<bool>, StoreError> {
        each!(self, s => s.erased_records(ids))
    }
    fn node_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        each!(self, s => s.node_state())
    }
    fn save_node_state(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        each!(self, s => s.save_node_state(bytes))
    }
    fn committed_reader(
        &self,
        network: &NetworkKey,
    ) -> Result<Box<dyn CommittedChain>, StoreError> {
        each!(self, s => s.committed_reader(network))
    }
}

/// A record as the ledger holds it: its entry and, unless erased, its sealed form (which only
/// its readers can open).
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// What the ledger knows of the record.
    pub entry: RecordEntry,
    /// The sealed record; `None` once erased (its payload is pruned).
    pub sealed: Option<SealedRecord>,
}

/// One search hit: the block height and the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchHit {
    /// The block that holds the record.
    pub height: u64,
    /// The record.
    pub record_id: RecordId,
}

/// Verifies transaction signatures on a few threads, one ZIP-215 batch per thread
/// ([`Transaction::verify_batch`]: the verdicts of single verification, the [`TxVerifier`]
/// contract).
#[derive(Debug, Clone, Copy)]
pub struct ParallelVerifier {
    threads: usize,
}

impl ParallelVerifier {
    /// As many threads as the machine has cores.
    pub fn new() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    /// Exactly `threads` threads per call (at least one); small calls stay on the caller's.
    pub fn with_threads(threads: usize) -> Self {
        Self {
            threads: threads.max(1),
        }
    }
}

/// Fewer items than this are handled on the caller's thread.
const MIN_PARALLEL_TXS: usize = 64;

/// `f` over `items` cut, in order, into at most `threads` owned runs of equal length (the last
/// shorter), one thread each; the results in the runs' order, `None` for a run whose thread
/// panicked. Fewer than [`MIN_PARALLEL_TXS`] items, or one thread: one run, on the caller's
/// thread.
fn on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(Vec<T>) -> R + Sync,
) -> Vec<Option<R>> {
    if threads <= 1 || items.len() < MIN_PARALLEL_TXS {
        return vec![Some(f(items))];
    }
    let per = items.len().div_ceil(threads);
    let mut runs = Vec::with_capacity(threads);
    let mut it = items.into_iter();
    loop {
        let run: Vec<T> = it.by_ref().take(per).collect();
        if run.is_empty() {
            break;
        }
        runs.push(run);
    }
    let f = &f;
    std::thread::scope(|s| {
        let workers: Vec<_> = runs
            .into_iter()
            .map(|run| s.spawn(move || f(run)))
            .collect();
        workers.into_iter().map(|w| w.join().ok()).collect()
    })
}

impl Default for ParallelVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl TxVerifier for ParallelVerifier {
    fn verify_all(&mut self, txs: Vec<Transaction>) -> Vec<Result<VerifiedTx, TxError>> {
        let mut out = Vec::new();
        for verdicts in on_threads(txs, self.threads, Transaction::verify_batch) {
            match verdicts {
                Some(v) => out.extend(v),
                // A panicked worker yields too few verdicts: the block is rejected.
                None => break,
            }
        }
        out
    }
}

/// A persistent ledger: a store, its genesis, the network key, and the chain tip.
pub struct Ledger<S: PersistentStore = AnyStore> {
    store: S,
    genesis: Genesis,
    network: NetworkKey,
    tip: ChainTip,
    filters: Mutex<FilterCache>,
}

/// Most bytes of block filters a ledger keeps in memory by default (see
/// [`Ledger::set_filter_cache_limit`]): about 6 million records indexed under three keywords.
pub const DEFAULT_FILTER_CACHE_BYTES: usize = 256 << 20;

/// Records a research release verifies and judges together (bounded memory, both cores busy).
const RESEARCH_CHUNK: usize = 4096;

/// Block filters read from the store per call when filling the search cache or searching past
/// it.
const FILTER_PAGE: usize = 256;

/// Blocks searched together: the candidates of this many blocks are read in one call.
const BLOCKS_PER_READ: usize = 1024;

/// The block filters read so far. A committed block's filter never changes (the store is
/// append-only), so a search reads each filter once; later searches read only the filters of
/// blocks appended since.
#[derive(Debug)]
struct FilterCache {
    /// The filter rows of the blocks `1..=through` that hold indexed records, by height.
    rows: Vec<IndexFilterRow>,
    /// Every filter up to this height is in `rows`.
    through: u64,
    /// The encoded size of the filters held.
    bytes: usize,
    /// The cache grows no further than this.
    limit: usize,
}

impl FilterCache {
    fn new(limit: usize) -> Self {
        Self {
            rows: Vec::new(),
            through: 0,
            bytes: 0,
            limit,
        }
    }
}

impl<S: PersistentStore> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("chain", &self.genesis.chain_name)
            .field("height", &self.tip.height)
            .finish_non_exhaustive()
    }
}

impl Ledger<AnyStore> {
    /// Creates a ledger at `location`: a file path for SQLite, or a `postgres://` URL (schema
    /// `medchain`). As [`create_at`](Self::create_at) with [`LedgerLocation::parse`].
    ///
    /// # Errors
    /// [`LedgerError::WrongNetworkKey`], store errors, [`LedgerError::NoPostgres`].
    pub fn create(
        location: &str,
        genesis: &Genesis,
        network: NetworkKey,
    ) -> Result<Self, LedgerError> {
        Self::create_at(&LedgerLocation::parse(location), genesis, network)
    }

    /// Opens the ledger at `location` (a file path, or a `postgres://` URL with schema
    /// `medchain`), checking that it verifies at its head. As [`open_at`](Self::open_at) with
    /// [`LedgerLocation::parse`].
    ///
    /// # Errors
    /// Store errors (not a store, corrupt, head does not verify, wrong key),
    /// [`LedgerError::WrongNetworkKey`], [`LedgerError::NoPostgres`].
    pub fn open(location: &str, network: NetworkKey) -> Result<Self, LedgerError> {
        Self::open_at(&LedgerLocation::parse(location), network)
    }

    /// Creates a ledger at `location`: a SQLite file, or the schema
    /// [`LEDGER_SCHEMA`](crate::LEDGER_SCHEMA) of a PostgreSQL database.
    ///
    /// # Errors
    /// [`LedgerError::WrongNetworkKey`], store errors ([`StoreError::AlreadyExists`] if there
    /// is one), [`LedgerError::NoPostgres`].
    pub fn create_at(
        location: &LedgerLocation,
        genesis: &Genesis,
        network: NetworkKey,
    ) -> Result<Self, LedgerError> {
        check_network(genesis, &network)?;
        let store = match location {
            LedgerLocation::Sqlite(path) => AnyStore::Sqlite(SqliteStore::create(path, &network)?),
            #[cfg(feature = "postgres")]
            LedgerLocation::Postgres(url) => AnyStore::Postgres(crate::pg::PostgresStore::create(
                url,
                crate::LEDGER_SCHEMA,
                &network,
            )?),
            #[cfg(not(feature = "postgres"))]
            LedgerLocation::Postgres(_) => return Err(LedgerError::NoPostgres),
        };
        Self::with_store(store, Some(genesis), network)
    }

    /// Opens the ledger at `location`, checking that it verifies at its head.
    ///
    /// # Errors
    /// Store errors ([`StoreError::NotFound`] when there is none; not a store, corrupt, head
    /// does not verify, wrong key), [`LedgerError::WrongNetworkKey`],
    /// [`LedgerError::NoPostgres`].
    pub fn open_at(location: &LedgerLocation, network: NetworkKey) -> Result<Self, LedgerError> {
        let store = match location {
            LedgerLocation::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open(path, &network)?),
            #[cfg(feature = "postgres")]
            LedgerLocation::Postgres(url) => AnyStore::Postgres(crate::pg::PostgresStore::open(
                url,
                crate::LEDGER_SCHEMA,
                &network,
            )?),
            #[cfg(not(feature = "postgres"))]
            LedgerLocation::Postgres(_) => return Err(LedgerError::NoPostgres),
        };
        Self::with_store(store, None, network)
    }
}

impl Ledger<SqliteStore> {
    /// Creates a SQLite ledger file.
    ///
    /// # Errors
    /// As [`Ledger::create`].
    pub fn create_sqlite(
        path: impl AsRef<Path>,
        genesis: &Genesis,
        network: NetworkKey,
    ) -> Result<Self, LedgerError> {
        check_network(genesis, &network)?;
        let store = SqliteStore::create(path, &network)?;
        Self::with_store(store, Some(genesis), network)
    }

    /// Opens a SQLite ledger file.
    ///
    /// # Errors
    /// As [`Ledger::open`].
    pub fn open_sqlite(path: impl AsRef<Path>, network: NetworkKey) -> Result<Self, LedgerError> {
        let store = SqliteStore::open(path, &network)?;
        Self::with_store(store, None, network)
    }
}

fn check_network(genesis: &Genesis, network: &NetworkKey) -> Result<(), LedgerError> {
    if genesis.network_key_fingerprint == network.fingerprint() {
        Ok(())
    } else {
        Err(LedgerError::WrongNetworkKey)
    }
}

impl<S: PersistentStore> Ledger<S> {
    /// A ledger over `store`, initialising it with `genesis` if given (and checking it holds
    /// that genesis otherwise).
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`] if the store has no genesis and none is given,
    /// [`LedgerError::WrongNetworkKey`], store errors.
    pub fn with_store(
        mut store: S,
        genesis: Option<&Genesis>,
        network: NetworkKey,
    ) -> Result<Self, LedgerError> {
        if let Some(g) = genesis {
            store.init(g)?;
        }
        let genesis = store.genesis()?.ok_or(StoreError::NotInitialised)?;
        check_network(&genesis, &network)?;
        let tip = match store.head()? {
            Some(h) => h.tip,
            None => ChainTip::genesis(&genesis),
        };
        Ok(Self {
            store,
            genesis,
            network,
            tip,
            filters: Mutex::new(FilterCache::new(DEFAULT_FILTER_CACHE_BYTES)),
        })
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, giving up the ledger.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The chain tip (genesis's when no block is stored).
    pub fn tip(&self) -> &ChainTip {
        &self.tip
    }

    /// Height of the last committed block.
    pub fn height(&self) -> u64 {
        self.tip.height
    }

    /// Validates `block` as the next one — structure, signatures, certificate, election and
    /// every ledger rule over the stored state — checks `proof` shows it committed, and
    /// appends it with its effects in one atomic write. Returns the checked block. For blocks
    /// from outside (a peer's archive, a backup); a node that validated the block itself hands
    /// it over with [`append_checked`](Self::append_checked) instead, without a second
    /// validation.
    ///
    /// # Errors
    /// [`LedgerError::State`] if the state could not be read (nothing was judged; retry),
    /// [`LedgerError::InvalidBlock`], [`LedgerError::CommitProof`], or a store error (then
    /// nothing was written).
    pub fn append_committed(
        &mut self,
        block: Block,
        proof: &CommitProof,
    ) -> Result<CheckedBlock, LedgerError> {
        let mut checked = self.append_committed_chain(vec![block], proof)?;
        checked.pop().ok_or_else(|| StoreError::NoBlocks.into())
    }

    /// Validates blocks that one commit step committed (consecutive, oldest first) — each
    /// over the stored state with the effects of the ones before it laid on top — checks that
    /// `proof` shows the last one committed (the others are its ancestors), and appends them
    /// all in one atomic write. Returns the checked blocks. For a node that has no effects to
    /// hand over (it validated the blocks before a restart); see
    /// [`append_committed`](Self::append_committed).
    ///
    /// # Errors
    /// As [`append_committed`](Self::append_committed), for the first block that fails;
    /// [`StoreError::NoBlocks`] for an empty list. Nothing is written then.
    pub fn append_committed_chain(
        &mut self,
        blocks: Vec<Block>,
        proof: &CommitProof,
    ) -> Result<Vec<CheckedBlock>, LedgerError> {
        let mut checked = Vec::with_capacity(blocks.len());
        let mut effects: Vec<BlockEffects> = Vec::with_capacity(blocks.len());
        let mut tip = self.tip.clone();
        for block in blocks {
            let overlay = Overlay::new(&self.store, effects.iter().collect());
            let mut rules = rules_over(&overlay, &self.genesis, &self.network);
            let result = block.validate_with(
                &self.genesis,
                &tip,
                &mut rules,
                &mut ParallelVerifier::new(),
            );
            if let Some(e) = rules.take_state_error() {
                return Err(LedgerError::State(e));
            }
            let block = result.map_err(LedgerError::InvalidBlock)?;
            effects.push(rules.into_effects());
            tip = block.tip();
            checked.push(block);
        }
        let pairs: Vec<_> = checked.iter().zip(&effects).collect();
        self.append_checked_chain(&pairs, proof)?;
        Ok(checked)
    }

    /// Appends a block that the caller validated with the ledger rules over this ledger's
    /// state (a node's `Output::Committed`: [`rules_over`] the store, or over the store with
    /// the effects of committed ancestors laid on top), with the effects that validation
    /// produced, in one atomic write — without validating it a second time.
    ///
    /// What is checked: the block extends this ledger's tip on this chain, `effects` belong to
    /// it (same height, exactly its transactions, every record and audit entry made by one of
    /// them; [`medchain_core::store::effects_match`]), and `proof` shows it committed. What
    /// cannot be checked without validating again: that the effects were computed over this
    /// ledger's state — the caller's contract. [`Ledger::verify`] re-derives every block's
    /// effects from the chain and finds any difference.
    ///
    /// # Errors
    /// [`StoreError::OutOfOrder`] (wrapped in [`LedgerError::Store`]) if the block does not
    /// extend the tip, [`StoreError::EffectsMismatch`], [`LedgerError::CommitProof`], or a
    /// store error (then nothing was written).
    pub fn append_checked(
        &mut self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: &CommitProof,
    ) -> Result<(), LedgerError> {
        self.append_checked_chain(&[(block, effects)], proof)
    }

    /// Appends the blocks one commit step committed — consecutive, oldest first, each with
    /// the effects its validation produced (a node's run of `Output::Committed` outputs) — in
    /// one atomic write, without validating them again. `proof` is the step's: it proves the
    /// last block committed, and the others are its ancestors (each names its parent's hash).
    /// A crash leaves all of them or none.
    ///
    /// Checked for each block as [`append_checked`](Self::append_checked) checks one: it
    /// extends the previous one (the first, this ledger's tip), on this chain, with its own
    /// effects; then `proof` against the last.
    ///
    /// # Errors
    /// As [`append_checked`](Self::append_checked), for the first block that fails;
    /// [`StoreError::NoBlocks`] for an empty list. Nothing is written then.
    pub fn append_checked_chain(
        &mut self,
        blocks: &[(&CheckedBlock, &BlockEffects)],
        proof: &CommitProof,
    ) -> Result<(), LedgerError> {
        let Some(&(last, _)) = blocks.last() else {
            return Err(StoreError::NoBlocks.into());
        };
        let mut tip = self.tip.clone();
        for (block, effects) in blocks {
            let header = block.header();
            if header.prev != tip.hash || header.height != tip.height.saturating_add(1) {
                return Err(StoreError::OutOfOrder {
                    have: tip.height,
                    got: header.height,
                }
                .into());
            }
            if header.chain != self.genesis.hash() {
                return Err(StoreError::WrongGenesis.into());
            }
            if !medchain_core::store::effects_match(block, effects) {
                return Err(StoreError::EffectsMismatch.into());
            }
            tip = block.tip();
        }
        proof.verify(&self.genesis, &last.hash(), last.header().round)?;
        self.store.append_chain(blocks, proof)?;
        self.tip = tip;
        Ok(())
    }

    /// What this member's validator saved beside the chain (`None` before its first vote):
    /// its safety state and its certified, uncommitted blocks — what it needs after a restart
    /// so that it never votes twice in a round and can extend its own certificate.
    ///
    /// # Errors
    /// [`StoreError::Decode`] if the stored bytes do not decode; store errors.
    pub fn durable_state(&self) -> Result<Option<DurableState>, LedgerError> {
        let Some(bytes) = self.store.node_state()? else {
            return Ok(None);
        };
        Ok(Some(
            DurableState::from_bytes(&bytes).map_err(StoreError::Decode)?,
        ))
    }

    /// Saves the validator's durable state beside the chain, replacing the previous one;
    /// durable when it returns. Call it before sending any message produced with it
    /// (`medchain::Host` does).
    ///
    /// # Errors
    /// Store errors (then the previous state is kept: send nothing).
    pub fn save_durable_state(&mut self, state: &DurableState) -> Result<(), LedgerError> {
        Ok(self.store.save_node_state(&state.to_bytes())?)
    }

    /// What a key holder judges a release against: the stored state, genesis and the network
    /// key (pass it to `medchain_core::access::release_key`, which runs the validators' rules
    /// before it wraps any key).
    pub fn view(&self) -> medchain_core::access::LedgerView<'_> {
        medchain_core::access::LedgerView {
            state: &self.store,
            genesis: &self.genesis,
            network: &self.network,
        }
    }

    /// A research release by `releaser` (a member institution) for the researcher's signed
    /// `request`: the one implementation of the research policy
    /// ([`medchain_core::research`]), over the records `releaser` added to this ledger. The
    /// library fixes what the caller must not choose: the release time is the committed tip's
    /// time, moved to the host's clock if that is later (consents are evaluated and the
    /// 90-or-older rule applied at it), and the release's private key (row order, pseudonym
    /// salts, commitment salts, count rounding) comes from the operating system's generator.
    ///
    /// Submit [`ResearchRelease::log_body`](medchain_core::research::ResearchRelease::log_body)
    /// from the releaser's node, and hand the rows to the researcher once it is committed.
    ///
    /// # Errors
    /// [`LedgerError::Research`] (the releaser is not a member, the request or credential does
    /// not hold, no cell has 11 patients), store errors, [`LedgerError::Transaction`] for a
    /// stored transaction that does not verify.
    pub fn research_release(
        &self,
        releaser: &Identity,
        request: &ResearchRequest,
    ) -> Result<ResearchRelease, LedgerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let clock = ReleaseClock::at_tip(&self.tip).no_earlier_than(now);
        let mut rng = UnwrapErr(SysRng);
        let mut builder = ReleaseBuilder::new(releaser, request, self.view(), clock, &mut rng)?;
        let me = releaser.verify_key();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        // The releaser's records, a few thousand at a time: their signatures verified and their
        // bodies opened on every core, then judged on every core (`offer_all`).
        let mut mine: Vec<Transaction> = Vec::new();
        let offer =
            |mine: Vec<Transaction>, builder: &mut ReleaseBuilder<'_>| -> Result<(), LedgerError> {
                let sealed = self.open_records(mine, threads)?;
                builder.offer_all(&sealed, threads)?;
                Ok(())
            };
        for block in self.blocks_from(1) {
            for tx in block?.transactions {
                if tx.kind() == TxKind::RecordAdded && tx.contributor() == &me {
                    mine.push(tx);
                }
            }
            if mine.len() >= RESEARCH_CHUNK {
                offer(std::mem::take(&mut mine), &mut builder)?;
            }
        }
        offer(mine, &mut builder)?;
        Ok(builder.finish(&mut rng)?)
    }

    /// The sealed records of `txs` (record additions), in chain order: on each of `threads`
    /// threads one ZIP-215 batch verifies a share of the signatures, as [`ParallelVerifier`]
    /// does, and the same thread opens those transactions' network-sealed bodies.
    fn open_records(
        &self,
        txs: Vec<Transaction>,
        threads: usize,
    ) -> Result<Vec<SealedRecord>, LedgerError> {
        let network = &self.network;
        let open = |chunk: Vec<Transaction>| -> Result<Vec<SealedRecord>, LedgerError> {
            let mut out = Vec::with_capacity(chunk.len());
            for verified in Transaction::verify_batch(chunk) {
                if let TxBody::RecordAdded {
                    sealed: Some(record),
                    ..
                } = verified?.open_body(network)?
                {
                    out.push(record);
                }
            }
            Ok(out)
        };
        let mut sealed = Vec::new();
        for opened in on_threads(txs, threads, open) {
            sealed
                .extend(opened.ok_or_else(|| StoreError::corrupt("a body could not be opened"))??);
        }
        Ok(sealed)
    }

    /// The committed blocks from `height` up to the head, read one at a time.
    pub fn blocks_from(&self, height: u64) -> Blocks<'_, S> {
        Blocks {
            store: &self.store,
            next: height.max(1),
            end: self.tip.height,
        }
    }

    /// A record: its ledger entry and, unless erased, its sealed form.
    ///
    /// # Errors
    /// Store errors; [`LedgerError::Transaction`] if its stored transaction does not verify.
    pub fn get_record(&self, id: &RecordId) -> Result<Option<StoredRecord>, LedgerError> {
        let Some(entry) = StateView::record(&self.store, id).map_err(LedgerError::State)? else {
            return Ok(None);
        };
        let tx = self
            .store
            .transaction(&entry.tx_id)?
            .ok_or_else(|| StoreError::corrupt("a record's transaction is missing"))?;
        let body = tx.verify()?.open_body(&self.network)?;
        let sealed = match body {
            TxBody::RecordAdded { sealed, .. } => sealed,
            _ => {
                return Err(
                    StoreError::corrupt("a record's transaction is not a RecordAdded").into(),
                )
            }
        };
        if sealed.is_none() && !entry.erased {
            // Only an erasure prunes a record's payload.
            return Err(StoreError::Corrupt(Corruption::UnexplainedPruning { count: 1 }).into());
        }
        Ok(Some(StoredRecord { entry, sealed }))
    }

    /// A patient's records.
    ///
    /// # Errors
    /// Store errors.
    pub fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, LedgerError> {
        Ok(self.store.records_of(patient)?)
    }

    /// Every consent a patient granted, revoked ones included.
    ///
    /// # Errors
    /// [`LedgerError::State`].
    pub fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, LedgerError> {
        self.store.consents_of(patient).map_err(LedgerError::State)
    }

    /// The audit trail of a record, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, LedgerError> {
        Ok(self.store.audit_of_record(id)?)
    }

    /// The audit trail of a patient's records, oldest first.
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, LedgerError> {
        Ok(self.store.audit_of_patient(patient)?)
    }

    /// The audit trail of a record as FHIR R4 `AuditEvent` resources.
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_events_of_record(
        &self,
        id: &RecordId,
    ) -> Result<Vec<serde_json::Value>, LedgerError> {
        Ok(self
            .audit_of_record(id)?
            .iter()
            .map(medchain_core::access::audit_event)
            .collect())
    }

    /// The audit trail of a patient as FHIR R4 `AuditEvent` resources.
    ///
    /// # Errors
    /// Store errors.
    pub fn audit_events_of_patient(
        &self,
        patient: &VerifyKey,
    ) -> Result<Vec<serde_json::Value>, LedgerError> {
        Ok(self
            .audit_of_patient(patient)?
            .iter()
            .map(medchain_core::access::audit_event)
            .collect())
    }

    /// Verifies the whole stored chain and the state stored with it, reading one block at a
    /// time: every block's structure, signatures, certificates, election, Merkle root and
    /// index filter, and every ledger rule, re-applied from genesis over an in-memory
    /// [`LedgerState`] (payloads pruned by an erasure are accepted, as history); the head's
    /// commit proof; that the chain ends at the stored head; that the derived rows stored for
    /// each block (records, erasures, consents, revocations, audit entries, index rows) are
    /// exactly those the chain implies, and that they end at the head's state commitment; and
    /// that no payload is pruned without an erasure that explains it. `progress` is called
    /// after every block.
    ///
    /// Memory: the in-memory state grows with the ledger (transaction ids, records, consents,
    /// audit entries), not with the blocks' bytes.
    ///
    /// # Errors
    /// [`LedgerError::Verify`] naming the first failing height, [`LedgerError::HeadMismatch`],
    /// [`LedgerError::Store`] with [`StoreError::Corrupt`] ([`Corruption::StateMismatch`],
    /// [`Corruption::Row`], [`Corruption::CommitmentMismatch`],
    /// [`Corruption::UnexplainedPruning`]).
    pub fn verify(&self, mut progress: impl FnMut(Progress)) -> Result<ChainSummary, LedgerError> {
        let head = self.store.head()?;
        let end = head.as_ref().map_or(0, |h| h.tip.height);
        let mut state = LedgerState::new();
        let mut audit = StateAudit::new();
        let mut tip = ChainTip::genesis(&self.genesis);
        let mut verifier = ParallelVerifier::new();
        let mut count = Progress {
            blocks: 0,
            transactions: 0,
            height: 0,
        };
        let blocks = Blocks {
            store: &self.store,
            next: 1,
            end,
        };
        for block in blocks {
            let height = tip.height + 1;
            let block = block.map_err(|source| ChainError::Source { height, source })?;
            let mut rules = state.rules(&self.genesis, &self.network);
            let checked = block
                .validate_history(&self.genesis, &tip, &mut rules, &mut verifier)
                .map_err(|error| ChainError::InvalidBlock { height, error })?;
            let effects = rules.into_effects();
            self.store
                .check_block_state(&checked, &effects, &mut audit)?;
            state
                .commit(effects)
                .map_err(|e| StoreError::corrupt(format!("block {height}: {e}")))?;
            count.blocks += 1;
            count.transactions += checked.tx_ids().len() as u64;
            count.height = height;
            tip = checked.tip();
            progress(count);
        }
        let proof = head.as_ref().and_then(|h| h.proof.as_ref());
        if let Some(proof) = proof {
            proof
                .verify(&self.genesis, &tip.hash, tip.round)
                .map_err(ChainError::CommitProof)?;
        }
        let expected = head
            .as_ref()
            .map_or_else(|| ChainTip::genesis(&self.genesis), |h| h.tip.clone());
        if tip != expected {
            return Err(LedgerError::HeadMismatch {
                verified: tip.height,
                head: expected.height,
            });
        }
        let unexplained = state.unexplained_pruned();
        if !unexplained.is_empty() {
            return Err(StoreError::Corrupt(Corruption::UnexplainedPruning {
                count: unexplained.len(),
            })
            .into());
        }
        self.store.check_state_commitment(&audit)?;
        Ok(ChainSummary {
            tip,
            blocks: count.blocks,
            transactions: count.transactions,
            head_proven: proof.is_some(),
        })
    }

    /// Searches the secure index of the blocks from `from_height` on; the hits in block
    /// order. See [`search_report`](Self::search_report).
    ///
    /// # Errors
    /// As [`search_report`](Self::search_report).
    pub fn search(&self, query: &Query, from_height: u64) -> Result<Vec<SearchHit>, LedgerError> {
        Ok(self.search_report(query, from_height)?.hits)
    }

    /// Searches the secure index of the blocks from `from_height` on, and reports what the
    /// search did.
    ///
    /// It reads only the index the store keeps beside the blocks: the filter rows of the blocks
    /// that hold indexed records (one PRF per block and query term rules most out), then, for
    /// the candidates a filter names, their index rows (record id and entry) — never a block,
    /// a transaction or a record body. Its cost grows with the number of blocks and
    /// candidates, not with the ledger's bytes. A block assembled without a filter is searched
    /// exhaustively (every entry read; one PRF per record and keyword). Erased records are
    /// never returned (`erased_skipped` counts them).
    ///
    /// # Errors
    /// Store errors; [`StoreError::Corrupt`] if a filter names a position with no entry;
    /// [`LedgerError::State`] if a hit's record could not be read.
    pub fn search_report(
        &self,
        query: &Query,
        from_height: u64,
    ) -> Result<LedgerSearch, LedgerError> {
        let mut report = LedgerSearch::default();
        let from = from_height.max(1);
        let mut cache = self.filter_cache()?;
        self.fill_filter_cache(&mut cache)?;
        let start = cache.rows.partition_point(|r| r.height < from);
        for chunk in cache.rows[start..].chunks(BLOCKS_PER_READ) {
            self.search_blocks(query, chunk, &mut report)?;
        }
        // Past the cache's limit: the remaining filters are read page by page, every time.
        let mut next = from.max(cache.through + 1);
        drop(cache);
        while next <= self.tip.height {
            let mut page = self.store.index_filters(next, FILTER_PAGE)?;
            let end = page.len() < FILTER_PAGE;
            page.retain(|r| r.height <= self.tip.height);
            let Some(last) = page.last() else { break };
            next = last.height + 1;
            self.search_blocks(query, &page, &mut report)?;
            if end {
                break;
            }
        }
        Ok(report)
    }

    /// Reads the block filters into memory now, up to the cache's limit
    /// ([`set_filter_cache_limit`](Self::set_filter_cache_limit)), so that the first
    /// [`search_report`](Self::search_report) does not: every later search reads only the
    /// filters of blocks appended since. A node calls it when it starts (`Host` does, when it
    /// opens its ledger): about 44 KB per 1,000-record block, 0.1 s for 1,000,000 records on
    /// PostgreSQL (`docs/storage.md`). Returns the bytes of filters held.
    ///
    /// # Errors
    /// Store errors; [`StoreError::Poisoned`] if a search panicked while holding the cache.
    pub fn warm_search_cache(&self) -> Result<usize, LedgerError> {
        let mut cache = self.filter_cache()?;
        self.fill_filter_cache(&mut cache)?;
        Ok(cache.bytes)
    }

    /// The filters of blocks appended since the cache was last filled join it while it has
    /// room.
    fn fill_filter_cache(&self, cache: &mut FilterCache) -> Result<(), StoreError> {
        while cache.through < self.tip.height && cache.bytes < cache.limit {
            let page = self.store.index_filters(cache.through + 1, FILTER_PAGE)?;
            let end = page.len() < FILTER_PAGE;
            for row in page {
                if row.height > self.tip.height || cache.bytes >= cache.limit {
                    break;
                }
                cache.through = row.height;
                cache.bytes += row.filter.as_ref().map_or(0, BlockFilter::encoded_len);
                cache.rows.push(row);
            }
            if end && cache.bytes < cache.limit {
                cache.through = self.tip.height;
            }
        }
        Ok(())
    }

    /// Sets how many bytes of block filters this ledger keeps in memory for
    /// [`search_report`](Self::search_report) (default [`DEFAULT_FILTER_CACHE_BYTES`]; filters
    /// take about 2 % of a ledger of records indexed under three keywords each, 44 KB per
    /// 1,000-record block). Filters past the limit are read from the store on every search;
    /// `0` keeps none. Lowering the limit empties the cache.
    ///
    /// # Errors
    /// [`StoreError::Poisoned`] if a search panicked while holding the cache.
    pub fn set_filter_cache_limit(&self, bytes: usize) -> Result<(), StoreError> {
        let mut cache = self.filter_cache()?;
        if bytes < cache.bytes {
            *cache = FilterCache::new(bytes);
        } else {
            cache.limit = bytes;
        }
        Ok(())
    }

    fn filter_cache(&self) -> Result<MutexGuard<'_, FilterCache>, StoreError> {
        self.filters.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Searches `rows` (blocks in height order) in four steps, each one pass over the blocks:
    /// the filters name the candidates (no store read); the candidates' index rows are read
    /// in one call; the query is checked against them; the hits' records are checked for
    /// erasure in one call.
    fn search_blocks(
        &self,
        query: &Query,
        rows: &[IndexFilterRow],
        report: &mut LedgerSearch,
    ) -> Result<(), LedgerError> {
        let mut blocks = Vec::with_capacity(rows.len());
        for row in rows {
            let count = row.entry_count as usize;
            let filter = match &row.filter {
                Some(f) => Cow::Borrowed(f),
                None => {
                    Cow::Owned(BlockFilter::from_segments(count, Vec::new()).map_err(|_| {
                        StoreError::corrupt(format!("block {}: too many entries", row.height))
                    })?)
                }
            };
            blocks.push(Candidates {
                height: row.height,
                context: row.context,
                filter,
                count,
                loaded: HashMap::new(),
                asked: RefCell::new(Vec::new()),
            });
        }
        // 1. The candidates: the positions the filter names (or all, without a filter).
        let mut first = Vec::with_capacity(blocks.len());
        for (block, row) in blocks.iter().zip(rows) {
            report.indexed_blocks += 1;
            if row.filter.is_none() {
                report.exhaustive_blocks += 1;
                block.asked.borrow_mut().extend(0..block.count);
                first.push(None);
            } else {
                first.push(Some(search(query, [block])));
            }
        }
        // 2. Their index rows, in one read.
        for block in &blocks {
            let mut asked = block.asked.borrow_mut();
            asked.sort_unstable();
            asked.dedup();
        }
        let at: Vec<(u64, u32)> = blocks
            .iter()
            .flat_map(|b| {
                let asked = b.asked.borrow();
                asked
                    .iter()
                    .map(|&p| (b.height, u32::try_from(p).unwrap_or(u32::MAX)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut read = self.store.indexed_records(&at)?.into_iter();
        for block in &mut blocks {
            for p in block.asked.take() {
                let record = read.next().flatten().ok_or_else(|| {
                    StoreError::corrupt(format!(
                        "block {}: an index entry is missing",
                        block.height
                    ))
                })?;
                block.loaded.insert(p, record);
            }
        }
        // 3. The query checked against the entries read.
        let mut hits = Vec::new();
        for (block, first) in blocks.iter().zip(first) {
            let outcome = match first {
                None => search_exhaustive(query, [block]),
                Some(first) if block.loaded.is_empty() => first,
                Some(_) => search(query, [block]),
            };
            report.blocks_skipped += outcome.stats.blocks_skipped;
            report.prf_evaluations += outcome.stats.prf_evaluations;
            report.candidates_read += block.loaded.len() as u64;
            hits.extend(outcome.hits.into_iter().map(|h| SearchHit {
                height: block.height,
                record_id: h.record_id,
            }));
        }
        // 4. Erased records left out, in one read.
        let ids: Vec<RecordId> = hits.iter().map(|h| h.record_id).collect();
        let erased = self.store.erased_records(&ids)?;
        for (hit, erased) in hits.into_iter().zip(erased) {
            if erased {
                report.erased_skipped += 1;
            } else {
                report.hits.push(hit);
            }
        }
        Ok(())
    }
}

/// A block as search sees it through the store's index rows: its filter, and the entries of
/// the positions loaded so far; every other position asked for is noted (the candidates).
struct Candidates<'f> {
    height: u64,
    context: BlockContext,
    filter: Cow<'f, BlockFilter>,
    count: usize,
    loaded: HashMap<usize, IndexedRecord>,
    asked: RefCell<Vec<usize>>,
}

impl SearchableBlock for Candidates<'_> {
    fn context(&self) -> &BlockContext {
        &self.context
    }
    fn filter(&self) -> &BlockFilter {
        &self.filter
    }
    fn record_count(&self) -> usize {
        self.count
    }
    fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)> {
        match self.loaded.get(&position) {
            Some(r) => Some((r.record_id, &r.entry)),
            None => {
                self.asked.borrow_mut().push(position);
                None
            }
        }
    }
}

/// What [`Ledger::search_report`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerSearch {
    /// The hits, in block order.
    pub hits: Vec<SearchHit>,
    /// Blocks that hold indexed records (the others are passed over without a PRF).
    pub indexed_blocks: u64,
    /// Of those, blocks their filter ruled out with one PRF per query term.
    pub blocks_skipped: u64,
    /// Of those, blocks without a filter, searched record by record.
    pub exhaustive_blocks: u64,
    /// HMAC-SHA256 evaluations in all.
    pub prf_evaluations: u64,
    /// Index rows read for candidates (and for blocks without a filter, every entry).
    pub candidates_read: u64,
    /// Hits left out because their record was erased.
    pub erased_skipped: u64,
}

/// The committed blocks of a ledger, read one at a time ([`Ledger::blocks_from`]).
#[derive(Debug)]
pub struct Blocks<'a, S> {
    store: &'a S,
    next: u64,
    end: u64,
}

impl<S: PersistentStore> Iterator for Blocks<'_, S> {
    type Item = Result<Block, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.next > self.end {
            return None;
        }
        let h = self.next;
        self.next += 1;
        Some(match self.store.block(h) {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(StoreError::corrupt(format!("block {h} is missing"))),
            Err(e) => Err(e),
        })
    }
}
