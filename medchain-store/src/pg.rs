//! [`PostgresStore`]: a ledger in one PostgreSQL schema (cargo feature `postgres`).
//!
//! The same schema in spirit as [`SqliteStore`](crate::SqliteStore): `BYTEA` for blobs,
//! `BIGINT` for integers, one schema per store so several stores (and tests) share a database.

use std::sync::{Mutex, MutexGuard};

use medchain_core::block::{Block, ChainTip, CheckedBlock};
use medchain_core::chain::CommitProof;
use medchain_core::consent::{ConsentId, ConsentState};
use medchain_core::election::ElectionSeed;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::genesis::Genesis;
use medchain_core::hash::{BlockHash, RecordId, TxId};
use medchain_core::keys::VerifyKey;
use medchain_core::ledger::{AuditEntry, BlockEffects, RecordEntry, StateError, StateView};
use medchain_core::seal::NetworkKey;
use medchain_core::store::{erasure_targets, Head, LedgerStore};
use medchain_core::tx::Transaction;
use postgres::{Client, GenericClient, IsolationLevel, NoTls};

use crate::common::{
    array32, assemble, decode_consent_state, encode_consent_state, i64_of, shell_of, u64_of,
    verify_head, SCHEMA_VERSION, TX_SEQ_SHIFT,
};
use crate::crypt::{Lookup, StateKey};
use crate::error::StoreError;

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
CREATE TABLE records (
    key BYTEA PRIMARY KEY,
    patient BYTEA NOT NULL,
    height BIGINT NOT NULL REFERENCES blocks(height),
    sealed BYTEA NOT NULL
);
CREATE INDEX records_by_patient ON records(patient);
CREATE TABLE consents (
    seq BIGSERIAL PRIMARY KEY,
    key BYTEA NOT NULL UNIQUE,
    patient BYTEA NOT NULL,
    height BIGINT NOT NULL REFERENCES blocks(height),
    sealed BYTEA NOT NULL
);
CREATE INDEX consents_by_patient ON consents(patient);
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    record BYTEA NOT NULL,
    patient BYTEA NOT NULL,
    height BIGINT NOT NULL REFERENCES blocks(height),
    sealed BYTEA NOT NULL
);
CREATE INDEX audit_by_record ON audit(record);
CREATE INDEX audit_by_patient ON audit(patient);
CREATE TABLE head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    height BIGINT NOT NULL REFERENCES blocks(height),
    proof BYTEA NOT NULL
);
";

/// A ledger store in one PostgreSQL schema.
pub struct PostgresStore {
    client: Mutex<Client>,
    schema: String,
    key: StateKey,
    genesis: Option<Genesis>,
    height: u64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .field("height", &self.height)
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

fn connect(url: &str, schema: &str) -> Result<Client, StoreError> {
    check_schema_name(schema)?;
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute(&format!(
        "SET search_path TO {schema}; SET synchronous_commit TO on;"
    ))?;
    Ok(client)
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

fn head_of(c: &mut impl GenericClient) -> Result<Option<Head>, StoreError> {
    let Some(row) = c.query_opt("SELECT height, proof FROM head WHERE id = 1", &[])? else {
        return Ok(None);
    };
    let height = u64_of(row.try_get(0)?, "head height")?;
    let proof: Vec<u8> = row.try_get(1)?;
    let tip = tip_at(c, height)?
        .ok_or_else(|| StoreError::Corrupt(format!("the head block {height} is missing")))?;
    Ok(Some(Head {
        tip,
        proof: Some(CommitProof::from_bytes(&proof)?),
    }))
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
        "SELECT bytes FROM transactions WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
        &[&lo, &hi],
    )?;
    let mut txs = Vec::with_capacity(rows.len());
    for r in rows {
        let b: Vec<u8> = r.try_get(0)?;
        txs.push(Transaction::from_bytes(&b)?);
    }
    assemble(height, &shell, txs).map(Some)
}

fn check(c: &mut impl GenericClient) -> Result<(), StoreError> {
    let version: Option<i64> = c
        .query_opt("SELECT version FROM schema_version", &[])?
        .map(|r| r.try_get(0))
        .transpose()?;
    match version {
        Some(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(StoreError::UnsupportedSchema {
                found,
                supported: SCHEMA_VERSION,
            })
        }
        None => return Err(StoreError::NotAStore("the schema version is missing")),
    }
    let genesis = genesis_of(c)?;
    let head = head_of(c)?;
    let row = c.query_one("SELECT count(*), max(height) FROM blocks", &[])?;
    let count: i64 = row.try_get(0)?;
    let max: Option<i64> = row.try_get(1)?;
    let head_height = head.as_ref().map_or(0, |h| h.tip.height);
    let max = u64_of(max.unwrap_or(0), "height")?;
    if u64_of(count, "count")? != head_height || max != head_height {
        return Err(StoreError::Corrupt(format!(
            "{count} blocks up to height {max} are stored, the head is at height {head_height}"
        )));
    }
    let Some(head) = head else {
        return Ok(());
    };
    let genesis = genesis.ok_or(StoreError::NotInitialised)?;
    let block = block_of(c, head_height)?
        .ok_or_else(|| StoreError::Corrupt(format!("the head block {head_height} is missing")))?;
    let parent = if head_height == 1 {
        ChainTip::genesis(&genesis)
    } else {
        tip_at(c, head_height - 1)?
            .ok_or_else(|| StoreError::Corrupt("the block below the head is missing".into()))?
    };
    let proof = head.proof.as_ref().ok_or(StoreError::MissingCommitProof)?;
    verify_head(&genesis, block, &parent, &head.tip, proof)
}

impl PostgresStore {
    /// Creates a store in a new schema `schema` of the database at `url`; its state key is
    /// sealed under `network`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the schema exists; PostgreSQL errors.
    pub fn create(url: &str, schema: &str, network: &NetworkKey) -> Result<Self, StoreError> {
        check_schema_name(schema)?;
        let mut client = Client::connect(url, NoTls)?;
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
        let mut client = connect(url, schema)?;
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
            check(&mut tx)?;
            let sealed = meta(&mut tx, "state_key")?
                .ok_or(StoreError::NotAStore("the state key is missing"))?;
            let key = StateKey::unseal(&sealed, network)?;
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
        })
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

    fn record_row(
        &self,
        c: &mut impl GenericClient,
        id: &RecordId,
    ) -> Result<Option<RecordEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Record, id.as_byte_array());
        let row = c.query_opt("SELECT sealed FROM records WHERE key = $1", &[&&key[..]])?;
        row.map(|r| {
            let s: Vec<u8> = r.try_get(0)?;
            Ok(RecordEntry::from_bytes(
                &self.key.open("records", &key, &s)?,
            )?)
        })
        .transpose()
    }

    fn consent_row(
        &self,
        c: &mut impl GenericClient,
        id: &ConsentId,
    ) -> Result<Option<ConsentState>, StoreError> {
        let key = self.key.lookup(Lookup::Consent, id.as_byte_array());
        let row = c.query_opt("SELECT sealed FROM consents WHERE key = $1", &[&&key[..]])?;
        row.map(|r| {
            let s: Vec<u8> = r.try_get(0)?;
            decode_consent_state(&self.key.open("consents", &key, &s)?)
        })
        .transpose()
    }

    fn audit_rows(
        &self,
        c: &mut impl GenericClient,
        column: &str,
        key: &[u8; 32],
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!("SELECT record, sealed FROM audit WHERE {column} = $1 ORDER BY seq");
        let mut out = Vec::new();
        for r in c.query(&sql, &[&&key[..]])? {
            let record: Vec<u8> = r.try_get(0)?;
            let sealed: Vec<u8> = r.try_get(1)?;
            out.push(AuditEntry::from_bytes(
                &self.key.open("audit", &record, &sealed)?,
            )?);
        }
        Ok(out)
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
        let have: Option<i64> = tx
            .query_opt("SELECT height FROM head WHERE id = 1 FOR UPDATE", &[])?
            .map(|r| r.try_get(0))
            .transpose()?;
        let have = u64_of(have.unwrap_or(0), "head height")?;
        if height != have + 1 || effects.height() != height {
            return Err(StoreError::OutOfOrder { have, got: height });
        }
        let tip = block.tip();
        let parent = match have {
            0 => self
                .genesis
                .as_ref()
                .map(|g| g.hash())
                .ok_or(StoreError::NotInitialised)?,
            _ => tip_at(tx, have)?
                .map(|t| t.hash)
                .ok_or_else(|| StoreError::Corrupt("the head block is missing".into()))?,
        };
        if tip.prev != parent {
            return Err(StoreError::OutOfOrder { have, got: height });
        }
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
        let (mut keys, mut patients, mut sealed) = (Vec::new(), Vec::new(), Vec::new());
        for r in effects.records() {
            let key = self.key.lookup(Lookup::Record, r.record_id.as_byte_array());
            patients.push(
                self.key
                    .lookup(Lookup::Patient, r.patient.sign.as_byte_array())
                    .to_vec(),
            );
            sealed.push(self.key.seal("records", &key, &r.to_bytes()));
            keys.push(key.to_vec());
        }
        if !keys.is_empty() {
            tx.execute(
                "INSERT INTO records (key, patient, height, sealed)
                 SELECT k, p, $4, s FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS u(k, p, s)",
                &[&keys, &patients, &sealed, &h],
            )?;
        }
        for c in effects.consents() {
            let key = self.key.lookup(Lookup::Consent, c.id.as_byte_array());
            let patient = self
                .key
                .lookup(Lookup::Patient, c.consent.patient.sign.as_byte_array());
            let s = self.key.seal("consents", &key, &encode_consent_state(c));
            tx.execute(
                "INSERT INTO consents (key, patient, height, sealed) VALUES ($1, $2, $3, $4)",
                &[&&key[..], &&patient[..], &h, &s],
            )?;
        }
        for id in effects.revoked() {
            let mut c = self
                .consent_row(tx, id)?
                .ok_or_else(|| StoreError::Corrupt("a revoked consent is not stored".into()))?;
            c.revoked_at = Some(height);
            let key = self.key.lookup(Lookup::Consent, id.as_byte_array());
            let s = self.key.seal("consents", &key, &encode_consent_state(&c));
            tx.execute(
                "UPDATE consents SET sealed = $2 WHERE key = $1",
                &[&&key[..], &s],
            )?;
        }
        let (mut records, mut patients, mut sealed) = (Vec::new(), Vec::new(), Vec::new());
        for a in effects.audit() {
            let record = self.key.lookup(Lookup::Record, a.record_id.as_byte_array());
            patients.push(
                self.key
                    .lookup(Lookup::Patient, a.patient.as_byte_array())
                    .to_vec(),
            );
            sealed.push(self.key.seal("audit", &record, &a.to_bytes()));
            records.push(record.to_vec());
        }
        if !records.is_empty() {
            tx.execute(
                "INSERT INTO audit (record, patient, height, sealed)
                 SELECT r, p, $4, s FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) WITH ORDINALITY AS u(r, p, s, o) ORDER BY o",
                &[&records, &patients, &sealed, &h],
            )?;
        }
        for rid in effects.erased() {
            let mut rec = self
                .record_row(tx, rid)?
                .ok_or_else(|| StoreError::Corrupt("an erased record is not stored".into()))?;
            rec.erased = true;
            let key = self.key.lookup(Lookup::Record, rid.as_byte_array());
            let s = self.key.seal("records", &key, &rec.to_bytes());
            tx.execute(
                "UPDATE records SET sealed = $2 WHERE key = $1",
                &[&&key[..], &s],
            )?;
            let audit = self.audit_rows(tx, "record", &key)?;
            for target in erasure_targets(&rec, &audit) {
                let id = &target.as_byte_array()[..];
                let row = tx
                    .query_opt("SELECT bytes FROM transactions WHERE id = $1", &[&id])?
                    .ok_or_else(|| {
                        StoreError::Corrupt("a transaction to prune is not stored".into())
                    })?;
                let b: Vec<u8> = row.try_get(0)?;
                let mut t = Transaction::from_bytes(&b)?;
                t.prune();
                tx.execute(
                    "UPDATE transactions SET bytes = $2, pruned = TRUE WHERE id = $1",
                    &[&id, &t.to_bytes()],
                )?;
            }
        }
        tx.execute(
            "INSERT INTO head (id, height, proof) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET height = excluded.height, proof = excluded.proof",
            &[&h, &proof.to_bytes()],
        )?;
        Ok(())
    }
}

impl StateView for PostgresStore {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        let run = || -> Result<bool, StoreError> {
            Ok(self
                .lock()?
                .query_opt(
                    "SELECT 1 FROM transactions WHERE id = $1",
                    &[&&id.as_byte_array()[..]],
                )?
                .is_some())
        };
        Ok(run()?)
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        let run = || -> Result<_, StoreError> { self.record_row(&mut *self.lock()?, id) };
        Ok(run()?)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        let run = || -> Result<_, StoreError> { self.consent_row(&mut *self.lock()?, id) };
        Ok(run()?)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        let pk = self.key.lookup(Lookup::Patient, patient.as_byte_array());
        let run = || -> Result<Vec<ConsentState>, StoreError> {
            let rows = self.lock()?.query(
                "SELECT key, sealed FROM consents WHERE patient = $1 ORDER BY seq",
                &[&&pk[..]],
            )?;
            let mut out = Vec::new();
            for r in rows {
                let key: Vec<u8> = r.try_get(0)?;
                let sealed: Vec<u8> = r.try_get(1)?;
                out.push(decode_consent_state(
                    &self.key.open("consents", &key, &sealed)?,
                )?);
            }
            Ok(out)
        };
        Ok(run()?)
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
        if self.genesis.is_none() {
            return Err(StoreError::NotInitialised);
        }
        {
            let mut c = self.lock()?;
            let mut tx = c.transaction()?;
            self.write_block(&mut tx, block, effects, proof)?;
            tx.commit()?;
        }
        self.height = block.header().height;
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
                    .map_err(|_| StoreError::Corrupt("bad tx index".into()))?,
            ))
        })
        .transpose()
    }

    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, StoreError> {
        let pk = self.key.lookup(Lookup::Patient, patient.as_byte_array());
        let rows = self.lock()?.query(
            "SELECT key, sealed FROM records WHERE patient = $1",
            &[&&pk[..]],
        )?;
        let mut out = Vec::new();
        for r in rows {
            let key: Vec<u8> = r.try_get(0)?;
            let sealed: Vec<u8> = r.try_get(1)?;
            out.push(RecordEntry::from_bytes(
                &self.key.open("records", &key, &sealed)?,
            )?);
        }
        out.sort_by_key(|r| (r.height, r.record_id));
        Ok(out)
    }

    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Record, id.as_byte_array());
        self.audit_rows(&mut *self.lock()?, "record", &key)
    }

    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Patient, patient.as_byte_array());
        self.audit_rows(&mut *self.lock()?, "patient", &key)
    }
}
