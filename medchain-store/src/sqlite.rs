//! [`SqliteStore`]: the embedded default, one SQLite file in WAL mode.
//!
//! See `docs/storage.md` for the schema, the atomicity and crash-safety argument, and what
//! [`SqliteStore::open`] checks before it writes anything.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

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
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction as SqlTx};

use crate::common::{
    array32, assemble, decode_consent_state, encode_consent_state, i64_of, shell_of, u64_of,
    verify_head, SCHEMA_VERSION, TX_SEQ_SHIFT,
};
use crate::crypt::{Lookup, StateKey};
use crate::error::StoreError;

/// `PRAGMA application_id` of a medchain store: ASCII "MDCH".
pub const APPLICATION_ID: i32 = 0x4D44_4348;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

const SCHEMA: &str = r"
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE blocks (
    height INTEGER PRIMARY KEY CHECK (height >= 1),
    hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    prev BLOB NOT NULL CHECK (length(prev) = 32),
    round INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    seed BLOB NOT NULL CHECK (length(seed) = 32),
    tx_count INTEGER NOT NULL,
    shell BLOB NOT NULL
);
CREATE TABLE transactions (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    height INTEGER NOT NULL REFERENCES blocks(height),
    idx INTEGER NOT NULL,
    pruned INTEGER NOT NULL DEFAULT 0,
    bytes BLOB NOT NULL
);
CREATE TABLE records (
    key BLOB PRIMARY KEY,
    patient BLOB NOT NULL,
    height INTEGER NOT NULL REFERENCES blocks(height),
    sealed BLOB NOT NULL
);
CREATE INDEX records_by_patient ON records(patient);
CREATE TABLE consents (
    seq INTEGER PRIMARY KEY,
    key BLOB NOT NULL UNIQUE,
    patient BLOB NOT NULL,
    height INTEGER NOT NULL REFERENCES blocks(height),
    sealed BLOB NOT NULL
);
CREATE INDEX consents_by_patient ON consents(patient);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    record BLOB NOT NULL,
    patient BLOB NOT NULL,
    height INTEGER NOT NULL REFERENCES blocks(height),
    sealed BLOB NOT NULL
);
CREATE INDEX audit_by_record ON audit(record);
CREATE INDEX audit_by_patient ON audit(patient);
CREATE TABLE head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    height INTEGER NOT NULL REFERENCES blocks(height),
    proof BLOB NOT NULL
);
";

/// A ledger store in one SQLite file.
///
/// One writer at a time (SQLite's lock serialises writers of other processes; the cached
/// height assumes this store is the only writer).
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    key: StateKey,
    genesis: Option<Genesis>,
    height: u64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    // FULL: the WAL is fsynced at every commit, so a block reported appended survives a power
    // loss, not only a process crash (NORMAL would keep the file consistent but could lose the
    // last commits). One fsync per block costs little next to a 1,000-transaction block.
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA busy_timeout = 5000;",
    )?;
    Ok(())
}

/// The first bytes of the file say whether it is ours, before SQLite touches it.
fn check_header(path: &Path) -> Result<(), StoreError> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound(path.display().to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Err(StoreError::NotAStore("the file is empty"));
    }
    let mut header = [0u8; 100];
    let mut got = 0;
    while got < header.len() {
        let n = f.read(&mut header[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < header.len() || &header[..16] != SQLITE_MAGIC {
        return Err(StoreError::NotAStore("the file is not a SQLite database"));
    }
    let app = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    if app != APPLICATION_ID {
        return Err(StoreError::NotAStore(
            "the file is a SQLite database of another application",
        ));
    }
    if header[18] != 2 || header[19] != 2 {
        return Err(StoreError::NotAStore("the database is not in WAL mode"));
    }
    // A cleanly closed store has no WAL: then the file must hold every page its header counts.
    let wal = wal_path(path);
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if wal_len == 0 {
        let page_size = match u16::from_be_bytes([header[16], header[17]]) {
            1 => 65_536u64,
            n => u64::from(n),
        };
        let pages = u64::from(u32::from_be_bytes([
            header[28], header[29], header[30], header[31],
        ]));
        let expected = page_size * pages;
        if len < expected || len % page_size != 0 {
            return Err(StoreError::Truncated {
                expected,
                actual: len,
            });
        }
    }
    Ok(())
}

/// The WAL file of a database file.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn tip_from_row(
    height: i64,
    hash: Vec<u8>,
    prev: Vec<u8>,
    round: i64,
    ts: i64,
    seed: Vec<u8>,
) -> Result<ChainTip, StoreError> {
    Ok(ChainTip {
        hash: BlockHash::from_byte_array(array32(&hash, "block hash")?),
        prev: BlockHash::from_byte_array(array32(&prev, "previous hash")?),
        height: u64_of(height, "height")?,
        round: u64_of(round, "round")?,
        timestamp_ms: u64_of(ts, "timestamp")?,
        seed: ElectionSeed::from_byte_array(array32(&seed, "election seed")?),
    })
}

/// Reads used by both the checking (read-only) and the working connection.
struct Reads<'a> {
    conn: &'a Connection,
}

impl Reads<'_> {
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn genesis(&self) -> Result<Option<Genesis>, StoreError> {
        self.meta("genesis")?
            .map(|b| Genesis::from_bytes(&b).map_err(StoreError::from))
            .transpose()
    }

    fn tip_at(&self, height: u64) -> Result<Option<ChainTip>, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT height, hash, prev, round, timestamp_ms, seed FROM blocks WHERE height = ?1",
            )?
            .query_row([i64_of(height, "height")?], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })
            .optional()?;
        row.map(|(h, a, b, c, d, e)| tip_from_row(h, a, b, c, d, e))
            .transpose()
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT height, proof FROM head WHERE id = 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((height, proof)) = row else {
            return Ok(None);
        };
        let height = u64_of(height, "head height")?;
        let tip = self
            .tip_at(height)?
            .ok_or_else(|| StoreError::Corrupt(format!("the head block {height} is missing")))?;
        Ok(Some(Head {
            tip,
            proof: Some(CommitProof::from_bytes(&proof)?),
        }))
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        let Ok(h) = i64::try_from(height) else {
            return Ok(None);
        };
        let shell: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT shell FROM blocks WHERE height = ?1")?
            .query_row([h], |r| r.get(0))
            .optional()?;
        let Some(shell) = shell else {
            return Ok(None);
        };
        let lo = h << TX_SEQ_SHIFT;
        let hi = lo | ((1 << TX_SEQ_SHIFT) - 1);
        let mut stmt = self.conn.prepare_cached(
            "SELECT bytes FROM transactions WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query([lo, hi])?;
        let mut txs = Vec::new();
        while let Some(row) = rows.next()? {
            let bytes: Vec<u8> = row.get(0)?;
            txs.push(Transaction::from_bytes(&bytes)?);
        }
        assemble(height, &shell, txs).map(Some)
    }

    fn height(&self) -> Result<u64, StoreError> {
        let h: Option<i64> = self
            .conn
            .query_row("SELECT height FROM head WHERE id = 1", [], |r| r.get(0))
            .optional()?;
        h.map_or(Ok(0), |h| u64_of(h, "head height"))
    }

    /// The schema version, the genesis, the head block against its parent and its proof, and
    /// that the blocks are exactly 1..=head.
    fn check(&self) -> Result<(), StoreError> {
        let has_version: bool = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n == 1),
        )?;
        if !has_version {
            return Err(StoreError::NotAStore("the schema version table is missing"));
        }
        let version: Option<i64> = self
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
            .optional()?;
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
        let genesis = self.genesis()?;
        let head = self.head()?;
        let (count, max): (i64, Option<i64>) =
            self.conn
                .query_row("SELECT count(*), max(height) FROM blocks", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
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
        let block = self.block(head.tip.height)?.ok_or_else(|| {
            StoreError::Corrupt(format!("the head block {head_height} is missing"))
        })?;
        let parent = if head.tip.height == 1 {
            ChainTip::genesis(&genesis)
        } else {
            self.tip_at(head.tip.height - 1)?
                .ok_or_else(|| StoreError::Corrupt("the block below the head is missing".into()))?
        };
        let proof = head.proof.as_ref().ok_or(StoreError::MissingCommitProof)?;
        verify_head(&genesis, block, &parent, &head.tip, proof)
    }
}

impl SqliteStore {
    /// Creates a new store file at `path`; its state key is sealed under `network`.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if anything is at `path`; SQLite or I/O errors.
    pub fn create(path: impl AsRef<Path>, network: &NetworkKey) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(StoreError::AlreadyExists(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let (key, sealed) = StateKey::generate(network);
        let setup = || -> Result<(), StoreError> {
            conn.execute_batch(&format!(
                "PRAGMA page_size = 8192;
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {SCHEMA_VERSION};
                 PRAGMA journal_mode = WAL;"
            ))?;
            configure(&conn)?;
            conn.execute_batch("BEGIN IMMEDIATE")?;
            conn.execute_batch(SCHEMA)?;
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('state_key', ?1)",
                [&sealed],
            )?;
            conn.execute_batch("COMMIT")?;
            Ok(())
        };
        if let Err(e) = setup() {
            drop(conn);
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(wal_path(path));
            return Err(e);
        }
        Ok(Self {
            conn,
            path: path.to_owned(),
            key,
            genesis: None,
            height: 0,
        })
    }

    /// Opens an existing store, after checking — read-only — that it is a medchain store of a
    /// supported version whose head verifies. A file that fails a check is not modified.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::NotAStore`], [`StoreError::Truncated`],
    /// [`StoreError::UnsupportedSchema`], [`StoreError::WrongKey`],
    /// [`StoreError::HeadInvalid`], [`StoreError::Corrupt`], SQLite or I/O errors.
    pub fn open(path: impl AsRef<Path>, network: &NetworkKey) -> Result<Self, StoreError> {
        let path = path.as_ref();
        check_header(path)?;
        {
            let ro = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            let reads = Reads { conn: &ro };
            let result = (|| {
                ro.execute_batch("BEGIN")?;
                reads.check()?;
                let sealed = reads
                    .meta("state_key")?
                    .ok_or(StoreError::NotAStore("the state key is missing"))?;
                StateKey::unseal(&sealed, network)?;
                ro.execute_batch("COMMIT")?;
                Ok::<(), StoreError>(())
            })();
            result.map_err(|e| match e {
                StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                    ) =>
                {
                    StoreError::Corrupt(format!("SQLite reports {}", f))
                }
                e => e,
            })?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        let reads = Reads { conn: &conn };
        let sealed = reads
            .meta("state_key")?
            .ok_or(StoreError::NotAStore("the state key is missing"))?;
        let key = StateKey::unseal(&sealed, network)?;
        let genesis = reads.genesis()?;
        let height = reads.height()?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            key,
            genesis,
            height,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves everything in the WAL into the main file and truncates the WAL.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Runs SQLite's own page-level check of the whole file (`PRAGMA quick_check`).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming how many problems SQLite found.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare("PRAGMA quick_check")?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!(
                "SQLite's quick_check found {} problem(s)",
                lines.len()
            )))
        }
    }

    fn reads(&self) -> Reads<'_> {
        Reads { conn: &self.conn }
    }

    fn record_row(
        &self,
        conn: &Connection,
        id: &RecordId,
    ) -> Result<Option<RecordEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Record, id.as_byte_array());
        let sealed: Option<Vec<u8>> = conn
            .prepare_cached("SELECT sealed FROM records WHERE key = ?1")?
            .query_row([&key[..]], |r| r.get(0))
            .optional()?;
        sealed
            .map(|s| {
                let plain = self.key.open("records", &key, &s)?;
                Ok(RecordEntry::from_bytes(&plain)?)
            })
            .transpose()
    }

    fn consent_row(
        &self,
        conn: &Connection,
        id: &ConsentId,
    ) -> Result<Option<ConsentState>, StoreError> {
        let key = self.key.lookup(Lookup::Consent, id.as_byte_array());
        let sealed: Option<Vec<u8>> = conn
            .prepare_cached("SELECT sealed FROM consents WHERE key = ?1")?
            .query_row([&key[..]], |r| r.get(0))
            .optional()?;
        sealed
            .map(|s| decode_consent_state(&self.key.open("consents", &key, &s)?))
            .transpose()
    }

    fn audit_rows(
        &self,
        conn: &Connection,
        column: &str,
        key: &[u8; 32],
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = format!("SELECT record, sealed FROM audit WHERE {column} = ?1 ORDER BY seq");
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query([&key[..]])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let record: Vec<u8> = row.get(0)?;
            let sealed: Vec<u8> = row.get(1)?;
            let plain = self.key.open("audit", &record, &sealed)?;
            out.push(AuditEntry::from_bytes(&plain)?);
        }
        Ok(out)
    }

    fn write_block(
        &self,
        tx: &SqlTx<'_>,
        block: &CheckedBlock,
        effects: &BlockEffects,
        proof: &CommitProof,
    ) -> Result<(), StoreError> {
        let height = block.header().height;
        let h = i64_of(height, "height")?;
        let have: Option<i64> = tx
            .query_row("SELECT height FROM head WHERE id = 1", [], |r| r.get(0))
            .optional()?;
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
            _ => self
                .reads_on(tx)
                .tip_at(have)?
                .map(|t| t.hash)
                .ok_or_else(|| StoreError::Corrupt("the head block is missing".into()))?,
        };
        if tip.prev != parent {
            return Err(StoreError::OutOfOrder { have, got: height });
        }
        tx.prepare_cached(
            "INSERT INTO blocks (height, hash, prev, round, timestamp_ms, seed, tx_count, shell)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            h,
            &tip.hash.as_byte_array()[..],
            &tip.prev.as_byte_array()[..],
            i64_of(tip.round, "round")?,
            i64_of(tip.timestamp_ms, "timestamp")?,
            &tip.seed.as_byte_array()[..],
            i64::from(block.header().tx_count),
            shell_of(block.block()),
        ])?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO transactions (seq, id, height, idx, pruned, bytes)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            )?;
            let mut buf = Vec::with_capacity(4096);
            for (i, (t, id)) in block
                .block()
                .transactions
                .iter()
                .zip(block.tx_ids())
                .enumerate()
            {
                buf.clear();
                t.encode_to(&mut buf);
                let i = i as i64;
                ins.execute(params![
                    (h << TX_SEQ_SHIFT) | i,
                    &id.as_byte_array()[..],
                    h,
                    i,
                    &buf
                ])?;
            }
        }
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO records (key, patient, height, sealed) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for r in effects.records() {
                let key = self.key.lookup(Lookup::Record, r.record_id.as_byte_array());
                let patient = self
                    .key
                    .lookup(Lookup::Patient, r.patient.sign.as_byte_array());
                let sealed = self.key.seal("records", &key, &r.to_bytes());
                ins.execute(params![&key[..], &patient[..], h, sealed])?;
            }
        }
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO consents (key, patient, height, sealed) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for c in effects.consents() {
                let key = self.key.lookup(Lookup::Consent, c.id.as_byte_array());
                let patient = self
                    .key
                    .lookup(Lookup::Patient, c.consent.patient.sign.as_byte_array());
                let sealed = self.key.seal("consents", &key, &encode_consent_state(c));
                ins.execute(params![&key[..], &patient[..], h, sealed])?;
            }
        }
        for id in effects.revoked() {
            let mut c = self
                .consent_row(tx, id)?
                .ok_or_else(|| StoreError::Corrupt("a revoked consent is not stored".into()))?;
            c.revoked_at = Some(height);
            let key = self.key.lookup(Lookup::Consent, id.as_byte_array());
            let sealed = self.key.seal("consents", &key, &encode_consent_state(&c));
            tx.prepare_cached("UPDATE consents SET sealed = ?2 WHERE key = ?1")?
                .execute(params![&key[..], sealed])?;
        }
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO audit (record, patient, height, sealed) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for a in effects.audit() {
                let record = self.key.lookup(Lookup::Record, a.record_id.as_byte_array());
                let patient = self.key.lookup(Lookup::Patient, a.patient.as_byte_array());
                let sealed = self.key.seal("audit", &record, &a.to_bytes());
                ins.execute(params![&record[..], &patient[..], h, sealed])?;
            }
        }
        for rid in effects.erased() {
            let mut rec = self
                .record_row(tx, rid)?
                .ok_or_else(|| StoreError::Corrupt("an erased record is not stored".into()))?;
            rec.erased = true;
            let key = self.key.lookup(Lookup::Record, rid.as_byte_array());
            let sealed = self.key.seal("records", &key, &rec.to_bytes());
            tx.prepare_cached("UPDATE records SET sealed = ?2 WHERE key = ?1")?
                .execute(params![&key[..], sealed])?;
            let audit = self.audit_rows(tx, "record", &key)?;
            for target in erasure_targets(&rec, &audit) {
                self.prune_tx(tx, &target)?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO head (id, height, proof) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET height = excluded.height, proof = excluded.proof",
        )?
        .execute(params![h, proof.to_bytes()])?;
        Ok(())
    }

    fn prune_tx(&self, tx: &SqlTx<'_>, id: &TxId) -> Result<(), StoreError> {
        let bytes: Option<Vec<u8>> = tx
            .prepare_cached("SELECT bytes FROM transactions WHERE id = ?1")?
            .query_row([&id.as_byte_array()[..]], |r| r.get(0))
            .optional()?;
        let Some(bytes) = bytes else {
            return Err(StoreError::Corrupt(
                "a transaction to prune is not stored".into(),
            ));
        };
        let mut t = Transaction::from_bytes(&bytes)?;
        t.prune();
        tx.prepare_cached("UPDATE transactions SET bytes = ?2, pruned = 1 WHERE id = ?1")?
            .execute(params![&id.as_byte_array()[..], t.to_bytes()])?;
        Ok(())
    }

    fn reads_on<'a>(&self, conn: &'a Connection) -> Reads<'a> {
        Reads { conn }
    }
}

impl StateView for SqliteStore {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        let found: Option<i64> = self
            .conn
            .prepare_cached("SELECT 1 FROM transactions WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([&id.as_byte_array()[..]], |r| r.get(0))
                    .optional()
            })
            .map_err(StoreError::from)?;
        Ok(found.is_some())
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.record_row(&self.conn, id)?)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.consent_row(&self.conn, id)?)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        let pk = self.key.lookup(Lookup::Patient, patient.as_byte_array());
        let run = || -> Result<Vec<ConsentState>, StoreError> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT key, sealed FROM consents WHERE patient = ?1 ORDER BY seq",
            )?;
            let mut rows = stmt.query([&pk[..]])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let key: Vec<u8> = row.get(0)?;
                let sealed: Vec<u8> = row.get(1)?;
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

impl LedgerStore for SqliteStore {
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
        let tx = SqlTx::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        let stored = Reads { conn: &tx }.genesis()?;
        match stored {
            Some(g) if g.hash() == genesis.hash() => {}
            Some(_) => return Err(StoreError::WrongGenesis),
            None => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('genesis', ?1)",
                    [genesis.to_bytes()],
                )?;
            }
        }
        tx.commit()?;
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
        let tx = SqlTx::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        self.write_block(&tx, block, effects, proof)?;
        tx.commit()?;
        self.height = block.header().height;
        if effects.erased().next().is_some() {
            // Old page images of the pruned payloads may sit in the WAL: fold it in and
            // truncate it (secure_delete zeroes the freed space in the main file).
            self.checkpoint()?;
        }
        Ok(())
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        self.reads().head()
    }

    fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        self.reads().block(height)
    }

    fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, StoreError> {
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT height, idx FROM transactions WHERE id = ?1")?
            .query_row([&id.as_byte_array()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(h, i)| {
            Ok((
                u64_of(h, "height")?,
                u32::try_from(i).map_err(|_| StoreError::Corrupt("bad tx index".into()))?,
            ))
        })
        .transpose()
    }

    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, StoreError> {
        let pk = self.key.lookup(Lookup::Patient, patient.as_byte_array());
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, sealed FROM records WHERE patient = ?1")?;
        let mut rows = stmt.query([&pk[..]])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let key: Vec<u8> = row.get(0)?;
            let sealed: Vec<u8> = row.get(1)?;
            out.push(RecordEntry::from_bytes(
                &self.key.open("records", &key, &sealed)?,
            )?);
        }
        out.sort_by_key(|r| (r.height, r.record_id));
        Ok(out)
    }

    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Record, id.as_byte_array());
        self.audit_rows(&self.conn, "record", &key)
    }

    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Patient, patient.as_byte_array());
        self.audit_rows(&self.conn, "patient", &key)
    }
}

impl SqliteStore {
    /// One committed transaction by id.
    ///
    /// # Errors
    /// SQLite errors; [`StoreError::Decode`] for bytes that do not decode.
    pub fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT bytes FROM transactions WHERE id = ?1")?
            .query_row([&id.as_byte_array()[..]], |r| r.get(0))
            .optional()?;
        bytes
            .map(|b| Transaction::from_bytes(&b).map_err(StoreError::from))
            .transpose()
    }
}
