//! [`PostgresStore`]: a ledger in one PostgreSQL schema (cargo feature `postgres`).
//!
//! The same schema in spirit as [`SqliteStore`](crate::SqliteStore): `BYTEA` for blobs,
//! `BIGINT` for integers, one schema per store so several stores (and tests) share a database.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use medchain_core::block::{Block, ChainTip, CheckedBlock};
use medchain_core::chain::CommitProof;
use medchain_core::consent::{ConsentId, ConsentState};
use medchain_core::election::ElectionSeed;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::genesis::Genesis;
use medchain_core::hash::{BlockHash, RecordId, TxId};
use medchain_core::index::IndexedRecord;
use medchain_core::keys::VerifyKey;
use medchain_core::ledger::{AuditEntry, BlockEffects, RecordEntry, StateError, StateView};
use medchain_core::protocol::CommittedChain;
use medchain_core::seal::NetworkKey;
use medchain_core::store::{erasure_targets, Head, IndexFilterRow, LedgerStore};
use medchain_core::tx::Transaction;
use postgres::{Client, GenericClient, IsolationLevel};

use crate::common::{
    array32, assemble, check_block_count, check_counts, check_next, check_version, i64_of,
    open_stored, shell_of, stored_tx, u64_of, verify_head, StoredHead, SCHEMA_VERSION,
    TX_SEQ_SHIFT,
};
use crate::crypt::{Lookup, StateKey};
use crate::error::StoreError;
use crate::pg_tls::{PgTarget, PgTlsMode};
use crate::rows::{
    self, advance, audit_entry, block_rows, check_block, check_commitment, consent_state, erased,
    filter_row, indexed_record, record_entry, seq_of, Counts, RawRow, Row, StateAudit, Table,
};

const SCHEMA: &str = r"
CREATE TABLE schema_version (version BIGINT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE blocks (
    height BIGINT PRIMARY KEY CHECK (height >= 1),
    hash BYTEA NOT NULL UNIQUE CHECK (length(hash) = 32),
    prev BYTEA NOT NULL CHECK (length(prev) = 32),
    round BIGINT NOT NULL,
    timestamp_ms BIGINT NOT NULL,
    seed BYTEA NOT NULL CHECK (length(seed) = 32),
    tx_count BIGINT NOT NULL,
    shell BYTEA NOT NULL
);
CREATE TABLE transactions (
    seq BIGINT PRIMARY KEY,
    id BYTEA NOT NULL UNIQUE CHECK (length(id) = 32),
    height BIGINT NOT NULL REFERENCES blocks(height),
    idx BIGINT NOT NULL,
    pruned BOOLEAN NOT NULL DEFAULT FALSE,
    bytes BYTEA NOT NULL
);
CREATE INDEX transactions_pruned ON transactions(seq) WHERE pruned;
CREATE TABLE records (seq BIGINT PRIMARY KEY, rkey BYTEA NOT NULL UNIQUE, pkey BYTEA NOT NULL, sealed BYTEA NOT NULL);
CREATE INDEX records_by_patient ON records(pkey);
CREATE TABLE erasures (seq BIGINT PRIMARY KEY, rkey BYTEA NOT NULL UNIQUE, sealed BYTEA NOT NULL);
CREATE TABLE consents (seq BIGINT PRIMARY KEY, ckey BYTEA NOT NULL UNIQUE, pkey BYTEA NOT NULL, sealed BYTEA NOT NULL);
CREATE INDEX consents_by_patient ON consents(pkey);
CREATE TABLE revocations (seq BIGINT PRIMARY KEY, ckey BYTEA NOT NULL UNIQUE, sealed BYTEA NOT NULL);
CREATE TABLE audit (seq BIGINT PRIMARY KEY, rkey BYTEA NOT NULL, sealed BYTEA NOT NULL);
CREATE INDEX audit_by_record ON audit(rkey);
CREATE TABLE index_filters (height BIGINT PRIMARY KEY REFERENCES blocks(height), filter BYTEA NOT NULL);
CREATE TABLE index_entries (seq BIGINT PRIMARY KEY, entry BYTEA NOT NULL, sealed BYTEA NOT NULL);
CREATE TABLE head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    height BIGINT NOT NULL REFERENCES blocks(height),
    proof BYTEA NOT NULL,
    state BYTEA NOT NULL CHECK (length(state) = 32),
    counts BYTEA NOT NULL,
    tag BYTEA NOT NULL CHECK (length(tag) = 32)
);
";

/// A ledger store in one PostgreSQL schema.
pub struct PostgresStore {
    client: Mutex<Client>,
    schema: String,
    key: StateKey,
    genesis: Option<Genesis>,
    height: u64,
    /// Where the store's connection goes (a [`PostgresReader`] opens a second one there).
    target: PgTarget,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("height", &self.height)
            .field("tls", &self.target.mode())
            .finish_non_exhaustive()
    }
}

fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::NotAStore(
            "a schema name is 1-63 characters of a-z, 0-9 and _, not starting with a digit",
        ))
    }
}

fn connect(url: &str, schema: &str) -> Result<(Client, PgTarget), StoreError> {
    check_schema_name(schema)?;
    let target = PgTarget::parse(url)?;
    let mut client = target.connect()?;
    client.batch_execute(&format!(
        "SET search_path TO {schema}; SET synchronous_commit TO on;"
    ))?;
    Ok((client, target))
}

fn tip_from_row(row: &postgres::Row) -> Result<ChainTip, StoreError> {
    let hash: Vec<u8> = row.try_get(1)?;
    let prev: Vec<u8> = row.try_get(2)?;
    let seed: Vec<u8> = row.try_get(5)?;
    Ok(ChainTip {
        hash: BlockHash::from_byte_array(array32(&hash, "block hash")?),
        prev: BlockHash::from_byte_array(array32(&prev, "previous hash")?),
        height: u64_of(row.try_get(0)?, "height")?,
        round: u64_of(row.try_get(3)?, "round")?,
        timestamp_ms: u64_of(row.try_get(4)?, "timestamp")?,
        seed: ElectionSeed::from_byte_array(array32(&seed, "election seed")?),
    })
}

fn meta(c: &mut impl GenericClient, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(
        c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.try_get(0))
            .transpose()?,
    )
}

fn genesis_of(c: &mut impl GenericClient) -> Result<Option<Genesis>, StoreError> {
    meta(c, "genesis")?
        .map(|b| Genesis::from_bytes(&b).map_err(StoreError::from))
        .transpose()
}

fn tip_at(c: &mut impl GenericClient, height: u64) -> Result<Option<ChainTip>, StoreError> {
    c.query_opt(
        "SELECT height, hash, prev, round, timestamp_ms, seed FROM blocks WHERE height = $1",
        &[&i64_of(height, "height")?],
    )?
    .map(|r| tip_from_row(&r))
    .transpose()
}

fn stored_head_of(c: &mut impl GenericClient) -> Result<Option<StoredHead>, StoreError> {
    let Some(row) = c.query_opt(
        "SELECT height, proof, state, counts, tag FROM head WHERE id = 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let height = u64_of(row.try_get(0)?, "head height")?;
    let proof: Vec<u8> = row.try_get(1)?;
    let state: Vec<u8> = row.try_get(2)?;
    let counts: Vec<u8> = row.try_get(3)?;
    let tag: Vec<u8> = row.try_get(4)?;
    let tip = tip_at(c, height)?
        .ok_or_else(|| StoreError::corrupt(format!("the head block {height} is missing")))?;
    StoredHead::from_parts(tip, &proof, &state, &counts, tag).map(Some)
}

fn head_of(c: &mut impl GenericClient) -> Result<Option<Head>, StoreError> {
    Ok(stored_head_of(c)?.map(|h| h.head))
}

/// A derived row as stored: row number, tags, clear part, sealed part.
fn raw_row(r: &postgres::Row, table: Table, at: usize) -> Result<RawRow, StoreError> {
    let seq: i64 = r.try_get(at)?;
    Ok(rows::raw_row(table, at, seq, |i| r.try_get(i))?)
}

fn count(c: &mut impl GenericClient, sql: &str) -> Result<u64, StoreError> {
    u64_of(c.query_one(sql, &[])?.try_get(0)?, "count")
}

fn block_of(c: &mut impl GenericClient, height: u64) -> Result<Option<Block>, StoreError> {
    let Ok(h) = i64::try_from(height) else {
        return Ok(None);
    };
    let Some(row) = c.query_opt("SELECT shell FROM blocks WHERE height = $1", &[&h])? else {
        return Ok(None);
    };
    let shell: Vec<u8> = row.try_get(0)?;
    let lo = h << TX_SEQ_SHIFT;
    let hi = lo | ((1 << TX_SEQ_SHIFT) - 1);
    let rows = c.query(
        "SELECT pruned, bytes FROM transactions WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
        &[&lo, &hi],
    )?;
    let mut txs = Vec::with_capacity(rows.len());
    for r in rows {
        let pruned: bool = r.try_get(0)?;
        let b: Vec<u8> = r.try_get(1)?;
        txs.push(stored_tx(&b, pruned)?);
    }
    assemble(height, &shell, txs).map(Some)
}

/// As `SqliteStore`'s open check: version, state key, blocks `1..=head`, the head's state
/// commitment and row counts, the head block and its proof. Returns the state key.
fn check(c: &mut impl GenericClient, network: &NetworkKey) -> Result<StateKey, StoreError> {
    let version: Option<i64> = c
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|r| r.try_get(0))
        .transpose()?;
    check_version(version)?;
    let sealed = meta(c, "state_key")?.ok_or(StoreError::NotAStore("the state key is missing"))?;
    let key = StateKey::unseal(&sealed, network)?;
    let genesis = genesis_of(c)?;
    let head = stored_head_of(c)?;
    let row = c.query_one("SELECT count(*), max(height) FROM blocks", &[])?;
    let n: i64 = row.try_get(0)?;
    let max: Option<i64> = row.try_get(1)?;
    let head_height = head.as_ref().map_or(0, |h| h.head.tip.height);
    check_block_count(
        u64_of(n, "count")?,
        u64_of(max.unwrap_or(0), "height")?,
        head_height,
    )?;
    let mut found = Counts::default();
    for table in Table::ALL {
        found.rows[table.index()] = count(c, &format!("SELECT count(*) FROM {}", table.name()))?;
    }
    found.pruned = count(c, "SELECT count(*) FROM transactions WHERE pruned")?;
    check_counts(&key, head.as_ref(), &found)?;
    let Some(head) = head else {
        return Ok(key);
    };
    let genesis = genesis.ok_or(StoreError::NotInitialised)?;
    let block = block_of(c, head_height)?
        .ok_or_else(|| StoreError::corrupt(format!("the head block {head_height} is missing")))?;
    let parent = if head_height == 1 {
        ChainTip::genesis(&genesis)
    } else {
        tip_at(c, head_height - 1)?
            .ok_or_else(|| StoreError::corrupt("the block below the head is missing"))?
    };
    let proof = head
        .head
        .proof
        .as_ref()
        .ok_or(StoreError::MissingCommitProof)?;
    verify_head(&genesis, block, &parent, &head.head.tip, proof)?;
    Ok(key)
}

/// The derived-state reads under the state key, over any connection to the schema (the
/// store's own, or a [`PostgresReader`]'s).
struct Rows<'a> {
    key: &'a StateKey,
}

impl Rows<'_> {
    fn open_raw(&self, table: Table, raw: RawRow) -> Result<Row, StoreError> {
        let (seq, tags, clear, sealed) = raw;
        open_stored(self.key, table, seq, tags, clear, sealed)
    }

    /// Rows of `main` with their optional `side` row (an erasure of a record, a revocation of a
    /// consent), joined on the first lookup column, `WHERE main.{column} = key`.
    fn joined(
        &self,
        c: &mut impl GenericClient,
        main: Table,
        side: Table,
        column: &str,
        key: &[u8; 32],
    ) -> Result<Vec<(Row, Option<Row>)>, StoreError> {
        let [join, other] = main.tag_columns() else {
            return Err(StoreError::corrupt("a joined table has two lookup columns"));
        };
        let sql = format!(
            "SELECT m.seq, m.{join}, m.{other}, m.sealed, s.seq, s.sealed FROM {} m
             LEFT JOIN {} s ON s.{join} = m.{join} WHERE m.{column} = $1 ORDER BY m.seq",
            main.name(),
            side.name()
        );
        let mut out = Vec::new();
        for r in c.query(&sql, &[&&key[..]])? {
            let main_raw = raw_row(&r, main, 0)?;
            let join_tag = main_raw.1[0];
            let side_seq: Option<i64> = r.try_get(4)?;
            let side_sealed: Option<Vec<u8>> = r.try_get(5)?;
            let m = self.open_raw(main, main_raw)?;
            let s = match (side_seq, side_sealed) {
                (Some(seq), Some(sealed)) => {
                    Some(self.open_raw(side, (seq, vec![join_tag], Vec::new(), Some(sealed)))?)
                }
                _ => None,
            };
            out.push((m, s));
        }
        Ok(out)
    }

    fn record_row(
        &self,
        c: &mut impl GenericClient,
        id: &RecordId,
    ) -> Result<Option<RecordEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Record, id.as_byte_array());
        let rows = self.joined(c, Table::Records, Table::Erasures, "rkey", &key)?;
        rows.first()
            .map(|(r, e)| record_entry(r, e.as_ref()))
            .transpose()
    }

    fn consent_rows(
        &self,
        c: &mut impl GenericClient,
        column: &str,
        key: &[u8; 32],
    ) -> Result<Vec<ConsentState>, StoreError> {
        self.joined(c, Table::Consents, Table::Revocations, column, key)?
            .iter()
            .map(|(c, r)| consent_state(c, r.as_ref()))
            .collect()
    }

    /// The audit rows of one record, with their row numbers.
    fn audit_rows(
        &self,
        c: &mut impl GenericClient,
        id: &RecordId,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let key = self.key.lookup(Lookup::AuditRecord, id.as_byte_array());
        let mut out = Vec::new();
        for r in c.query(
            "SELECT seq, rkey, sealed FROM audit WHERE rkey = $1 ORDER BY seq",
            &[&&key[..]],
        )? {
            let raw = raw_row(&r, Table::Audit, 0)?;
            let seq = raw.0;
            out.push((seq, audit_entry(&self.open_raw(Table::Audit, raw)?)?));
        }
        Ok(out)
    }

    fn contains_tx(&self, c: &mut impl GenericClient, id: &TxId) -> Result<bool, StoreError> {
        Ok(c.query_opt(
            "SELECT 1 FROM transactions WHERE id = $1",
            &[&&id.as_byte_array()[..]],
        )?
        .is_some())
    }

    fn consent(
        &self,
        c: &mut impl GenericClient,
        id: &ConsentId,
    ) -> Result<Option<ConsentState>, StoreError> {
        let key = self.key.lookup(Lookup::Consent, id.as_byte_array());
        Ok(self.consent_rows(c, "ckey", &key)?.into_iter().next())
    }

    fn consents_of(
        &self,
        c: &mut impl GenericClient,
        patient: &VerifyKey,
    ) -> Result<Vec<ConsentState>, StoreError> {
        let key = self
            .key
            .lookup(Lookup::ConsentPatient, patient.as_byte_array());
        self.consent_rows(c, "pkey", &key)
    }
}

impl PostgresStore {
    /// Creates a store in a new schema `schema` of the database at `url`; its state key is
    /// sealed under `network`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the schema exists; PostgreSQL errors.
    pub fn create(url: &str, schema: &str, network: &NetworkKey) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        let target = PgTarget::parse(url)?;
        let mut client = target.connect()?;
        client.batch_execute("SET synchronous_commit TO on")?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                &[&schema],
            )?
            .is_some();
        if exists {
            return Err(StoreError::AlreadyExists(format!("schema {schema}")));
        }
        let (key, sealed) = StateKey::generate(network);
        let mut tx = client.transaction()?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema};"
        ))?;
        tx.batch_execute(SCHEMA)?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&SCHEMA_VERSION],
        )?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('state_key', $1)",
            &[&sealed],
        )?;
        tx.commit()?;
        client.batch_execute(&format!("SET search_path TO {schema}"))?;
        Ok(Self {
            client: Mutex::new(client),
            schema: schema.to_owned(),
            key,
            genesis: None,
            height: 0,
            target,
        })
    }

    /// Opens the store in schema `schema`, after checking in a read-only transaction that it is
    /// a medchain store of a supported version whose head verifies.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::NotAStore`], [`StoreError::UnsupportedSchema`],
    /// [`StoreError::WrongKey`], [`StoreError::HeadInvalid`], [`StoreError::Corrupt`],
    /// PostgreSQL errors.
    pub fn open(url: &str, schema: &str, network: &NetworkKey) -> Result<Self, StoreError> {
        let (mut client, target) = connect(url, schema)?;
        let tables: i64 = client
            .query_one(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = $1 AND table_name IN ('schema_version', 'meta', 'blocks', 'head')",
                &[&schema],
            )?
            .try_get(0)?;
        if tables == 0 {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
                    &[&schema],
                )?
                .is_some();
            return Err(if exists {
                StoreError::NotAStore("the schema holds no medchain store")
            } else {
                StoreError::NotFound(format!("schema {schema}"))
            });
        }
        if tables != 4 {
            return Err(StoreError::NotAStore("the schema lacks medchain tables"));
        }
        let (key, genesis, height) = {
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let key = check(&mut tx, network)?;
            let genesis = genesis_of(&mut tx)?;
            let height = head_of(&mut tx)?.map_or(0, |h| h.tip.height);
            tx.commit()?;
            (key, genesis, height)
        };
        Ok(Self {
            client: Mutex::new(client),
            schema: schema.to_owned(),
            key,
            genesis,
            height,
            target,
        })
    }

    /// How this store's connection is protected: TLS with the server's chain (and name)
    /// verified, or plain TCP (see `docs/storage.md`, "TLS to PostgreSQL").
    pub fn tls_mode(&self) -> PgTlsMode {
        self.target.mode()
    }

    /// Drops the schema and everything in it (tests, decommissioning).
    ///
    /// # Errors
    /// PostgreSQL errors.
    pub fn drop_schema(self) -> Result<(), StoreError> {
        let schema = self.schema.clone();
        let mut c = self.client.into_inner().map_err(|_| StoreError::Poisoned)?;
        c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))?;
        Ok(())
    }

    /// The schema name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn lock(&self) -> Result<MutexGuard<'_, Client>, StoreError> {
        self.client.lock().map_err(|_| StoreError::Poisoned)
    }

    fn rows(&self) -> Rows<'_> {
        Rows { key: &self.key }
    }

    /// One committed transaction by id.
    ///
    /// # Errors
    /// PostgreSQL errors; [`StoreError::Decode`].
    pub fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        let row = self.lock()?.query_opt(
            "SELECT bytes FROM transactions WHERE id = $1",
            &[&&id.as_byte_array()[..]],
        )?;
        row.map(|r| {
            let b: Vec<u8> = r.try_get(0)?;
            Ok(Transaction::from_bytes(&b)?)
        })
        .transpose()
    }

    /// See [`PersistentStore::indexed_records`](crate::PersistentStore::indexed_records): one
    /// query for all of them.
    pub(crate) fn indexed_records(
        &self,
        at: &[(u64, u32)],
    ) -> Result<Vec<Option<IndexedRecord>>, StoreError> {
        let mut seqs = Vec::with_capacity(at.len());
        for &(height, position) in at {
            seqs.push(match seq_of(height, position as usize) {
                Ok(seq) => Some(i64_of(seq, "row number")?),
                Err(_) => None,
            });
        }
        let wanted: Vec<i64> = seqs.iter().flatten().copied().collect();
        let rows = self.lock()?.query(
            "SELECT seq, entry, sealed FROM index_entries WHERE seq = ANY($1)",
            &[&wanted],
        )?;
        let mut found = HashMap::with_capacity(rows.len());
        for r in &rows {
            let raw = raw_row(r, Table::IndexEntries, 0)?;
            let seq = raw.0;
            found.insert(
                seq,
                indexed_record(&self.rows().open_raw(Table::IndexEntries, raw)?)?,
            );
        }
        Ok(seqs
            .iter()
            .map(|s| s.and_then(|s| found.get(&s).cloned()))
            .collect())
    }

    /// See [`PersistentStore::node_state`](crate::PersistentStore::node_state).
    pub(crate) fn node_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        meta(&mut *self.lock()?, crate::common::NODE_STATE_KEY)
    }

    /// See [`PersistentStore::save_node_state`](crate::PersistentStore::save_node_state): one
    /// statement in its own (committed) transaction.
    pub(crate) fn save_node_state(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.lock()?.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&crate::common::NODE_STATE_KEY, &bytes],
        )?;
        Ok(())
    }

    /// See [`PersistentStore::erased_records`](crate::PersistentStore::erased_records): one
    /// query for all of them.
    pub(crate) fn erased_records(&self, ids: &[RecordId]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<[u8; 32]> = ids
            .iter()
            .map(|id| self.key.lookup(Lookup::Record, id.as_byte_array()))
            .collect();
        let params: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let rows = self.lock()?.query(
            "SELECT seq, rkey, sealed FROM erasures WHERE rkey = ANY($1)",
            &[&params],
        )?;
        let mut found = HashMap::with_capacity(rows.len());
        for r in &rows {
            let raw = raw_row(r, Table::Erasures, 0)?;
            let tag = raw.1[0];
            found.insert(tag, self.rows().open_raw(Table::Erasures, raw)?);
        }
        ids.iter()
            .zip(&keys)
            .map(|(id, k)| erased(id, found.get(k)))
            .collect()
    }

    /// Every derived row block `height` wrote, opened under its identity.
    fn stored_rows(&self, height: u64) -> Result<Vec<Row>, StoreError> {
        let mut c = self.lock()?;
        let mut out = Vec::new();
        for table in Table::ALL {
            let (lo, hi) = table.range(height)?;
            let key = table.key_column();
            let sql = format!(
                "SELECT {} FROM {} WHERE {key} BETWEEN $1 AND $2 ORDER BY {key}",
                table.columns().join(", "),
                table.name()
            );
            for r in c.query(&sql, &[&lo, &hi])? {
                out.push(self.rows().open_raw(table, raw_row(&r, table, 0)?)?);
            }
        }
        Ok(out)
    }

    pub(crate) fn check_block_state(
        &self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        audit: &mut StateAudit,
    ) -> Result<(), StoreError> {
        let stored = self.stored_rows(block.header().height)?;
        check_block(&self.key, block, effects, &stored, audit)
    }

    pub(crate) fn check_state_commitment(&self, audit: &StateAudit) -> Result<(), StoreError> {
        let head = stored_head_of(&mut *self.lock()?)?;
        check_commitment(head.as_ref().map(|h| &h.commitment), audit)
    }

    fn write_block(
        &self,
        tx: &mut postgres::Transaction<'_>,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: &CommitProof,
    ) -> Result<(), StoreError> {
        let height = block.header().height;
        let h = i64_of(height, "height")?;
        // Serialise writers on the head row.
        tx.query_opt("SELECT height FROM head WHERE id = 1 FOR UPDATE", &[])?;
        let head = stored_head_of(tx)?;
        check_next(self.genesis.as_ref(), head.as_ref(), block, effects)?;
        let rows = block_rows(&self.key, block, effects)?;
        let tip = block.tip();
        tx.execute(
            "INSERT INTO blocks (height, hash, prev, round, timestamp_ms, seed, tx_count, shell)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &h,
                &&tip.hash.as_byte_array()[..],
                &&tip.prev.as_byte_array()[..],
                &i64_of(tip.round, "round")?,
                &i64_of(tip.timestamp_ms, "timestamp")?,
                &&tip.seed.as_byte_array()[..],
                &i64::from(block.header().tx_count),
                &shell_of(block.block()),
            ],
        )?;
        // One statement per table: arrays unnested server-side.
        let n = block.tx_ids().len();
        let mut seqs = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut idxs = Vec::with_capacity(n);
        let mut bytes = Vec::with_capacity(n);
        for (i, (t, id)) in block
            .block()
            .transactions
            .iter()
            .zip(block.tx_ids())
            .enumerate()
        {
            let i = i as i64;
            seqs.push((h << TX_SEQ_SHIFT) | i);
            ids.push(id.as_byte_array().to_vec());
            idxs.push(i);
            bytes.push(t.to_bytes());
        }
        if n > 0 {
            tx.execute(
                "INSERT INTO transactions (seq, id, height, idx, bytes)
                 SELECT s, i, $5, x, b FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::bytea[]) AS u(s, i, x, b)",
                &[&seqs, &ids, &idxs, &bytes, &h],
            )?;
        }
        for table in Table::ALL {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.table == table).collect();
            if mine.is_empty() {
                continue;
            }
            let cols = table.columns();
            let mut seqs: Vec<i64> = Vec::with_capacity(mine.len());
            let mut blobs: Vec<Vec<Vec<u8>>> = vec![Vec::with_capacity(mine.len()); cols.len() - 1];
            for row in &mine {
                seqs.push(i64_of(row.seq, "row number")?);
                let mut j = 0;
                for t in &row.tags {
                    blobs[j].push(t.to_vec());
                    j += 1;
                }
                if table.clear_column().is_some() {
                    blobs[j].push(row.clear.clone());
                    j += 1;
                }
                if table.sealed() {
                    blobs[j].push(self.key.seal_row(row));
                }
            }
            let casts: Vec<String> = (1..=cols.len())
                .map(|i| format!("${i}::{}[]", if i == 1 { "bigint" } else { "bytea" }))
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) SELECT * FROM unnest({})",
                table.name(),
                cols.join(", "),
                casts.join(", ")
            );
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&seqs];
            for b in &blobs {
                params.push(b);
            }
            tx.execute(&sql, &params)?;
        }
        let mut pruned = 0u64;
        let mut erased: Vec<&RecordId> = effects.erased().collect();
        erased.sort();
        for rid in erased {
            let rec = self
                .rows()
                .record_row(tx, rid)?
                .ok_or_else(|| StoreError::corrupt("an erased record is not stored"))?;
            let audit: Vec<AuditEntry> = self
                .rows()
                .audit_rows(tx, rid)?
                .into_iter()
                .map(|(_, a)| a)
                .collect();
            for target in erasure_targets(&rec, &audit) {
                let id = &target.as_byte_array()[..];
                let row = tx
                    .query_opt(
                        "SELECT pruned, bytes FROM transactions WHERE id = $1",
                        &[&id],
                    )?
                    .ok_or_else(|| StoreError::corrupt("a transaction to prune is not stored"))?;
                let was: bool = row.try_get(0)?;
                let b: Vec<u8> = row.try_get(1)?;
                let mut t = stored_tx(&b, was)?;
                if was || !t.kind().has_payload() {
                    continue;
                }
                t.prune();
                tx.execute(
                    "UPDATE transactions SET bytes = $2, pruned = TRUE WHERE id = $1",
                    &[&id, &t.to_bytes()],
                )?;
                pruned += 1;
            }
        }
        let prev = head.map(|s| s.commitment).unwrap_or_default();
        let next = advance(&self.key, &prev, block, &rows, pruned);
        let tag = self
            .key
            .head_tag(height, &block.hash(), &next.state, &next.counts);
        tx.execute(
            "INSERT INTO head (id, height, proof, state, counts, tag) VALUES (1, $1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET height = excluded.height, proof = excluded.proof,
                 state = excluded.state, counts = excluded.counts, tag = excluded.tag",
            &[
                &h,
                &proof.to_bytes(),
                &&next.state[..],
                &next.counts.to_bytes(),
                &&tag[..],
            ],
        )?;
        Ok(())
    }
}

impl StateView for PostgresStore {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.rows().contains_tx(&mut *self.lock()?, id)?)
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.rows().record_row(&mut *self.lock()?, id)?)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.rows().consent(&mut *self.lock()?, id)?)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        Ok(self.rows().consents_of(&mut *self.lock()?, patient)?)
    }

    fn height(&self) -> u64 {
        self.height
    }
}

impl LedgerStore for PostgresStore {
    type Error = StoreError;

    fn genesis(&self) -> Result<Option<Genesis>, StoreError> {
        Ok(self.genesis.clone())
    }

    fn init(&mut self, genesis: &Genesis) -> Result<(), StoreError> {
        if let Some(g) = &self.genesis {
            return if g.hash() == genesis.hash() {
                Ok(())
            } else {
                Err(StoreError::WrongGenesis)
            };
        }
        {
            let mut c = self.lock()?;
            let mut tx = c.transaction()?;
            tx.batch_execute("LOCK TABLE meta IN EXCLUSIVE MODE")?;
            match genesis_of(&mut tx)? {
                Some(g) if g.hash() == genesis.hash() => {}
                Some(_) => return Err(StoreError::WrongGenesis),
                None => {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('genesis', $1)",
                        &[&genesis.to_bytes()],
                    )?;
                }
            }
            tx.commit()?;
        }
        self.genesis = Some(genesis.clone());
        Ok(())
    }

    fn append(
        &mut self,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: Option<&CommitProof>,
    ) -> Result<(), StoreError> {
        let proof = proof.ok_or(StoreError::MissingCommitProof)?;
        self.append_chain(&[(block, effects)], proof)
    }

    fn append_chain(
        &mut self,
        blocks: &[(&CheckedBlock, &BlockEffects)],
        proof: &CommitProof,
    ) -> Result<(), StoreError> {
        let Some(&(last, _)) = blocks.last() else {
            return Err(StoreError::NoBlocks);
        };
        if self.genesis.is_none() {
            return Err(StoreError::NotInitialised);
        }
        {
            let mut c = self.lock()?;
            let mut tx = c.transaction()?;
            // Each block checks it extends the head the previous one wrote (same
            // transaction); the head row ends as the last block's, with the step's proof.
            for (block, effects) in blocks {
                self.write_block(&mut tx, block, effects, proof)?;
            }
            tx.commit()?;
        }
        self.height = last.header().height;
        Ok(())
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        head_of(&mut *self.lock()?)
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        block_of(&mut *self.lock()?, height)
    }

    fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, StoreError> {
        let row = self.lock()?.query_opt(
            "SELECT height, idx FROM transactions WHERE id = $1",
            &[&&id.as_byte_array()[..]],
        )?;
        row.map(|r| {
            Ok((
                u64_of(r.try_get(0)?, "height")?,
                u32::try_from(r.try_get::<_, i64>(1)?)
                    .map_err(|_| StoreError::corrupt("bad tx index"))?,
            ))
        })
        .transpose()
    }

    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, StoreError> {
        let key = self
            .key
            .lookup(Lookup::RecordPatient, patient.as_byte_array());
        self.rows()
            .joined(
                &mut *self.lock()?,
                Table::Records,
                Table::Erasures,
                "pkey",
                &key,
            )?
            .iter()
            .map(|(r, e)| record_entry(r, e.as_ref()))
            .collect()
    }

    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .rows()
            .audit_rows(&mut *self.lock()?, id)?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, StoreError> {
        let mut all = Vec::new();
        for r in self.records_of(patient)? {
            all.extend(self.rows().audit_rows(&mut *self.lock()?, &r.record_id)?);
        }
        all.sort_by_key(|(seq, _)| *seq);
        Ok(all.into_iter().map(|(_, a)| a).collect())
    }

    fn index_filters(&self, from: u64, limit: usize) -> Result<Vec<IndexFilterRow>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.lock()?.query(
            "SELECT height, filter FROM index_filters WHERE height >= $1 ORDER BY height LIMIT $2",
            &[&from, &limit],
        )?;
        rows.iter()
            .map(|r| {
                let clear: Vec<u8> = r.try_get(1)?;
                filter_row(u64_of(r.try_get(0)?, "height")?, &clear)
            })
            .collect()
    }

    fn indexed_record(
        &self,
        height: u64,
        position: u32,
    ) -> Result<Option<IndexedRecord>, StoreError> {
        let Ok(seq) = seq_of(height, position as usize) else {
            return Ok(None);
        };
        let seq = i64_of(seq, "row number")?;
        let row = self.lock()?.query_opt(
            "SELECT seq, entry, sealed FROM index_entries WHERE seq = $1",
            &[&seq],
        )?;
        row.map(|r| {
            indexed_record(
                &self
                    .rows()
                    .open_raw(Table::IndexEntries, raw_row(&r, Table::IndexEntries, 0)?)?,
            )
        })
        .transpose()
    }
}

/// The height of the stored head (0: only genesis).
fn head_height(c: &mut impl GenericClient) -> Result<u64, StoreError> {
    c.query_opt("SELECT height FROM head WHERE id = 1", &[])?
        .map_or(Ok(0), |r| u64_of(r.try_get(0)?, "head height"))
}

/// A second connection to a [`PostgresStore`]'s schema, read-only ([`PostgresStore::reader`]):
/// what a node reads the committed chain through while its host appends to the store
/// ([`CommittedChain`]; `medchain::Host`).
///
/// Consistency (`docs/storage.md`, "A node reading the ledger"): the session is read-only
/// (`default_transaction_read_only`) at `READ COMMITTED`, so every statement runs in its own
/// transaction and reads one snapshot, taken when it starts: the store appends a commit step
/// in one transaction, so a statement sees the whole of it or none of it, never a part. The
/// node that reads through this connection and the host that appends through the store's take
/// turns on one thread: while the node reads, nothing is written, so all its reads in one call
/// see the same head.
pub struct PostgresReader {
    client: Mutex<Client>,
    key: StateKey,
    /// The head's height when last read (kept when a read fails: the store only grows).
    height: Cell<u64>,
}

impl std::fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReader")
            .field("height", &self.height.get())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// A second, read-only connection to this store's schema (see [`PostgresReader`]), to the
    /// same server with the same TLS settings. Its state key is unsealed again under `network`.
    ///
    /// # Errors
    /// [`StoreError::WrongKey`] for another network key, [`StoreError::WrongGenesis`] if the
    /// schema now holds another chain, [`StoreError::NotAStore`] if it holds no state key,
    /// PostgreSQL (and TLS) errors.
    pub fn reader(&self, network: &NetworkKey) -> Result<PostgresReader, StoreError> {
        let mut client = self.target.connect()?;
        client.batch_execute(&format!(
            "SET search_path TO {}; SET default_transaction_read_only TO on; \
             SET default_transaction_isolation TO 'read committed';",
            self.schema
        ))?;
        let sealed = meta(&mut client, "state_key")?
            .ok_or(StoreError::NotAStore("the state key is missing"))?;
        let key = StateKey::unseal(&sealed, network)?;
        let same = match (genesis_of(&mut client)?, &self.genesis) {
            (Some(a), Some(b)) => a.hash() == b.hash(),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            return Err(StoreError::WrongGenesis);
        }
        let height = head_height(&mut client)?;
        Ok(PostgresReader {
            client: Mutex::new(client),
            key,
            height: Cell::new(height),
        })
    }
}

impl PostgresReader {
    fn lock(&self) -> Result<MutexGuard<'_, Client>, StoreError> {
        self.client.lock().map_err(|_| StoreError::Poisoned)
    }

    fn rows(&self) -> Rows<'_> {
        Rows { key: &self.key }
    }
}

impl StateView for PostgresReader {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.rows().contains_tx(&mut *self.lock()?, id)?)
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.rows().record_row(&mut *self.lock()?, id)?)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.rows().consent(&mut *self.lock()?, id)?)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        Ok(self.rows().consents_of(&mut *self.lock()?, patient)?)
    }

    /// The head's height, read anew (the last one read if the read fails).
    fn height(&self) -> u64 {
        if let Ok(h) = self.lock().and_then(|mut c| head_height(&mut *c)) {
            self.height.set(h.max(self.height.get()));
        }
        self.height.get()
    }
}

impl CommittedChain for PostgresReader {
    fn block(&self, height: u64) -> Result<Option<Block>, StateError> {
        Ok(block_of(&mut *self.lock()?, height)?)
    }

    fn height_of(&self, hash: &BlockHash) -> Result<Option<u64>, StateError> {
        let row = self.lock()?.query_opt(
            "SELECT height FROM blocks WHERE hash = $1",
            &[&&hash.as_byte_array()[..]],
        );
        let row = row.map_err(StoreError::from)?;
        Ok(row
            .map(|r| -> Result<u64, StoreError> { u64_of(r.try_get(0)?, "height") })
            .transpose()?)
    }

    fn head(&self) -> Result<Option<Head>, StateError> {
        Ok(head_of(&mut *self.lock()?)?)
    }
}
