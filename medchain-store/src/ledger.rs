//! The [`Ledger`] API for embedders: open a store, append committed blocks after validating
//! them, read records, consents and the audit trail, search, and verify the whole chain.

use std::path::Path;

use medchain_core::block::{Block, ChainTip, CheckedBlock, NoRules, TxVerifier};
use medchain_core::chain::{verify_chain, ChainSummary, CommitProof, Progress};
use medchain_core::consent::{ConsentId, ConsentState};
use medchain_core::encoding::Decode;
use medchain_core::genesis::Genesis;
use medchain_core::hash::{RecordId, TxId};
use medchain_core::index::{
    search, search_exhaustive, BlockContext, BlockFilter, BlockIndex, IndexEntry, IndexedRecord,
    Query, SearchableBlock,
};
use medchain_core::keys::VerifyKey;
use medchain_core::ledger::{
    rules_over, AuditEntry, BlockEffects, RecordEntry, StateError, StateView,
};
use medchain_core::seal::{NetworkKey, SealedRecord};
use medchain_core::store::{Head, LedgerStore};
use medchain_core::tx::{Transaction, TxBody, TxError, VerifiedTx};

use crate::error::{LedgerError, StoreError};
use crate::sqlite::SqliteStore;

/// A store the [`Ledger`] can run on: a [`LedgerStore`] with [`StoreError`]s that can also
/// read one transaction by id.
pub trait PersistentStore: LedgerStore<Error = StoreError> {
    /// One committed transaction.
    ///
    /// # Errors
    /// The backend's error.
    fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        let Some((h, i)) = self.tx_location(id)? else {
            return Ok(None);
        };
        Ok(self
            .block(h)?
            .and_then(|b| b.transactions.into_iter().nth(i as usize)))
    }
}

impl PersistentStore for SqliteStore {
    fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        SqliteStore::transaction(self, id)
    }
}

#[cfg(feature = "postgres")]
impl PersistentStore for crate::pg::PostgresStore {
    fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        crate::pg::PostgresStore::transaction(self, id)
    }
}

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
}

impl PersistentStore for AnyStore {
    fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        each!(self, s => s.transaction(id))
    }
}

/// A block without a filter, for exhaustive search.
struct Unfiltered<'a> {
    context: BlockContext,
    filter: BlockFilter,
    records: &'a [IndexedRecord],
}

impl SearchableBlock for Unfiltered<'_> {
    fn context(&self) -> &BlockContext {
        &self.context
    }
    fn filter(&self) -> &BlockFilter {
        &self.filter
    }
    fn record_count(&self) -> usize {
        self.records.len()
    }
    fn record(&self, position: usize) -> Option<(RecordId, &IndexEntry)> {
        self.records.get(position).map(|r| (r.record_id, &r.entry))
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

/// Verifies transaction signatures on a few threads (strict ed25519, one call per transaction:
/// the [`TxVerifier`] contract).
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
}

impl Default for ParallelVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl TxVerifier for ParallelVerifier {
    fn verify_all(&mut self, txs: Vec<Transaction>) -> Vec<Result<VerifiedTx, TxError>> {
        if self.threads <= 1 || txs.len() < 64 {
            return txs.into_iter().map(Transaction::verify).collect();
        }
        let per = txs.len().div_ceil(self.threads);
        let mut chunks: Vec<Vec<Transaction>> = Vec::new();
        let mut it = txs.into_iter();
        loop {
            let c: Vec<Transaction> = it.by_ref().take(per).collect();
            if c.is_empty() {
                break;
            }
            chunks.push(c);
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|c| {
                    s.spawn(move || c.into_iter().map(Transaction::verify).collect::<Vec<_>>())
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                match h.join() {
                    Ok(v) => out.extend(v),
                    // A panicked worker yields too few verdicts: the block is rejected.
                    Err(_) => return out,
                }
            }
            out
        })
    }
}

/// A persistent ledger: a store, its genesis, the network key, and the chain tip.
pub struct Ledger<S: PersistentStore = AnyStore> {
    store: S,
    genesis: Genesis,
    network: NetworkKey,
    tip: ChainTip,
}

impl<S: PersistentStore> std::fmt::Debug for Ledger<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("chain", &self.genesis.chain_name)
            .field("height", &self.tip.height)
            .finish_non_exhaustive()
    }
}

fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

impl Ledger<AnyStore> {
    /// Creates a ledger at `location`: a file path for SQLite, or a `postgres://` URL (schema
    /// `medchain`).
    ///
    /// # Errors
    /// [`LedgerError::WrongNetworkKey`], store errors, [`LedgerError::NoPostgres`].
    pub fn create(
        location: &str,
        genesis: &Genesis,
        network: NetworkKey,
    ) -> Result<Self, LedgerError> {
        check_network(genesis, &network)?;
        let store = if is_postgres_url(location) {
            #[cfg(feature = "postgres")]
            {
                AnyStore::Postgres(crate::pg::PostgresStore::create(
                    location, "medchain", &network,
                )?)
            }
            #[cfg(not(feature = "postgres"))]
            return Err(LedgerError::NoPostgres);
        } else {
            AnyStore::Sqlite(SqliteStore::create(location, &network)?)
        };
        Self::with_store(store, Some(genesis), network)
    }

    /// Opens the ledger at `location` (a file path, or a `postgres://` URL with schema
    /// `medchain`), checking that it verifies at its head.
    ///
    /// # Errors
    /// Store errors (not a store, corrupt, head does not verify, wrong key),
    /// [`LedgerError::WrongNetworkKey`], [`LedgerError::NoPostgres`].
    pub fn open(location: &str, network: NetworkKey) -> Result<Self, LedgerError> {
        let store = if is_postgres_url(location) {
            #[cfg(feature = "postgres")]
            {
                AnyStore::Postgres(crate::pg::PostgresStore::open(
                    location, "medchain", &network,
                )?)
            }
            #[cfg(not(feature = "postgres"))]
            return Err(LedgerError::NoPostgres);
        } else {
            AnyStore::Sqlite(SqliteStore::open(location, &network)?)
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
    /// appends it with its effects in one atomic write. Returns the checked block.
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
        let mut rules = rules_over(&self.store, &self.genesis, &self.network);
        let result = block.validate_with(
            &self.genesis,
            &self.tip,
            &mut rules,
            &mut ParallelVerifier::new(),
        );
        if let Some(e) = rules.take_state_error() {
            return Err(LedgerError::State(e));
        }
        let checked = result.map_err(LedgerError::InvalidBlock)?;
        proof.verify(&self.genesis, &checked.hash(), checked.header().round)?;
        let effects = rules.into_effects();
        self.store.append(&checked, &effects, Some(proof))?;
        self.tip = checked.tip();
        Ok(checked)
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
            .ok_or_else(|| StoreError::Corrupt("a record's transaction is missing".into()))?;
        let body = tx.verify()?.open_body(&self.network)?;
        let sealed = match body {
            TxBody::RecordAdded { sealed, .. } => sealed,
            _ => {
                return Err(StoreError::Corrupt(
                    "a record's transaction is not a RecordAdded".into(),
                )
                .into())
            }
        };
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

    /// Verifies the whole stored chain from genesis — every block's structure, signatures,
    /// certificates, election and Merkle root, and the head's commit proof — reading one block
    /// at a time (constant memory), and checks it ends at the stored head. `progress` is called
    /// after every block.
    ///
    /// Ledger rules (consent, erasure) were enforced when each block was appended; this checks
    /// that the stored chain is the one the validators signed.
    ///
    /// # Errors
    /// [`LedgerError::Verify`] naming the first failing height, [`LedgerError::HeadMismatch`].
    pub fn verify(&self, progress: impl FnMut(Progress)) -> Result<ChainSummary, LedgerError> {
        let head = self.store.head()?;
        let end = head.as_ref().map_or(0, |h| h.tip.height);
        let blocks = Blocks {
            store: &self.store,
            next: 1,
            end,
        };
        let proof = head.as_ref().and_then(|h| h.proof.as_ref());
        let summary = verify_chain(&self.genesis, blocks, proof, &mut NoRules, progress)?;
        let expected = head.map_or_else(|| ChainTip::genesis(&self.genesis), |h| h.tip);
        if summary.tip != expected {
            return Err(LedgerError::HeadMismatch {
                verified: summary.tip.height,
                head: expected.height,
            });
        }
        Ok(summary)
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
    /// Each block's `index_filter` is read as a [`BlockFilter`] keyed by the block's Merkle root
    /// ([`BlockContext`]), over the block's `RecordAdded` transactions that carry an index entry,
    /// in block order (a record's position is its rank among them): about one PRF per block,
    /// plus the candidates the filter names. Blocks the consensus node assembles carry such a
    /// filter (their contributors build it, `docs/secure-index.md` §10); a block without one
    /// (assembled without index material) is searched exhaustively, one PRF per record and
    /// keyword — correct, only slower.
    ///
    /// # Errors
    /// Store errors; [`StoreError::Corrupt`] for a filter or entry that does not decode or fit;
    /// [`LedgerError::Transaction`] for a body that does not open.
    pub fn search_report(
        &self,
        query: &Query,
        from_height: u64,
    ) -> Result<LedgerSearch, LedgerError> {
        let mut report = LedgerSearch::default();
        let hits = &mut report.hits;
        for block in self.blocks_from(from_height) {
            let block = block?;
            let bad =
                |what: &str| StoreError::Corrupt(format!("block {}: {what}", block.header.height));
            let mut records = Vec::new();
            for tx in &block.transactions {
                if tx.index_entry().is_empty() {
                    continue;
                }
                let entry = IndexEntry::from_bytes(tx.index_entry())
                    .map_err(|_| bad("an index entry does not decode"))?;
                // Verified when committed; only the body is needed (no signature check per search).
                let record_id = match tx.open_body(&self.network)? {
                    TxBody::RecordAdded { record_id, .. } => record_id,
                    _ => return Err(bad("an index entry on a non-record transaction").into()),
                };
                records.push(IndexedRecord { record_id, entry });
            }
            if records.is_empty() {
                continue;
            }
            report.indexed_blocks += 1;
            let context = BlockContext::from(block.header.merkle_root());
            let found = if block.index_filter.is_empty() {
                report.exhaustive_blocks += 1;
                // A block assembled without a filter: every entry is tested (one PRF per
                // record and keyword) — correct, only slower.
                let unfiltered = Unfiltered {
                    context,
                    filter: BlockFilter::from_segments(records.len(), Vec::new())
                        .map_err(|_| bad("too many index entries"))?,
                    records: &records,
                };
                let found = search_exhaustive(query, [&unfiltered]);
                report.prf_evaluations += found.stats.prf_evaluations;
                found.hits
            } else {
                let filter = BlockFilter::from_bytes(&block.index_filter)
                    .map_err(|_| bad("the index filter does not decode"))?;
                let index = BlockIndex::from_parts(context, filter, records)
                    .map_err(|_| bad("the index filter does not fit its entries"))?;
                let found = search(query, [&index]);
                report.blocks_skipped += found.stats.blocks_skipped;
                report.prf_evaluations += found.stats.prf_evaluations;
                found.hits
            };
            for hit in found {
                hits.push(SearchHit {
                    height: block.header.height,
                    record_id: hit.record_id,
                });
            }
        }
        Ok(report)
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
            Ok(None) => Err(StoreError::Corrupt(format!("block {h} is missing"))),
            Err(e) => Err(e),
        })
    }
}
