//! [`SqliteStore`]: the embedded default, one SQLite file in WAL mode.
//!
//! See `docs/storage.md` for the schema, the atomicity and crash-safety argument, and what
//! [`SqliteStore::open`] checks before it writes anything.

use std::cell::Cell;
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
use medchain_core::index::IndexedRecord;
use medchain_core::keys::VerifyKey;
use medchain_core::ledger::{AuditEntry, BlockEffects, RecordEntry, StateError, StateView};
use medchain_core::protocol::CommittedChain;
use medchain_core::seal::NetworkKey;
use medchain_core::store::{erasure_targets, Head, IndexFilterRow, LedgerStore};
use medchain_core::tx::Transaction;
use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{
    params, params_from_iter, Connection, OpenFlags, OptionalExtension, Transaction as SqlTx,
};

use crate::common::{
    array32, assemble, check_block_count, check_counts, check_next, check_version, i64_of,
    open_stored, shell_of, stored_tx, u64_of, verify_head, StoredHead, SCHEMA_VERSION,
    TX_SEQ_SHIFT,
};
use crate::crypt::{Lookup, StateKey};
use crate::error::StoreError;
use crate::rows::{
    self, advance, audit_entry, block_rows, check_block, check_commitment, consent_state, erased,
    filter_row, indexed_record, record_entry, seq_of, Counts, RawRow, Row, StateAudit, Table,
};

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
    pruned INTEGER NOT NULL DEFAULT 0 CHECK (pruned IN (0, 1)),
    bytes BLOB NOT NULL
);
CREATE INDEX transactions_pruned ON transactions(seq) WHERE pruned = 1;
CREATE TABLE records (seq INTEGER PRIMARY KEY, rkey BLOB NOT NULL UNIQUE, pkey BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE INDEX records_by_patient ON records(pkey);
CREATE TABLE erasures (seq INTEGER PRIMARY KEY, rkey BLOB NOT NULL UNIQUE, sealed BLOB NOT NULL);
CREATE TABLE consents (seq INTEGER PRIMARY KEY, ckey BLOB NOT NULL UNIQUE, pkey BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE INDEX consents_by_patient ON consents(pkey);
CREATE TABLE revocations (seq INTEGER PRIMARY KEY, ckey BLOB NOT NULL UNIQUE, sealed BLOB NOT NULL);
CREATE TABLE audit (seq INTEGER PRIMARY KEY, rkey BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE INDEX audit_by_record ON audit(rkey);
CREATE TABLE index_filters (height INTEGER PRIMARY KEY REFERENCES blocks(height), filter BLOB NOT NULL);
CREATE TABLE index_entries (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL, sealed BLOB NOT NULL);
CREATE TABLE head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    height INTEGER NOT NULL REFERENCES blocks(height),
    proof BLOB NOT NULL,
    state BLOB NOT NULL CHECK (length(state) = 32),
    counts BLOB NOT NULL,
    tag BLOB NOT NULL CHECK (length(tag) = 32)
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
    stable_plans(conn)
}

/// Query plans that do not depend on the values bound to them (SQLite's query planner stability
/// guarantee). Without it SQLite marks a statement with an `= ?` term for re-preparation whenever
/// its bindings are cleared, which the statement cache does each time a statement is returned:
/// every cached lookup was parsed and planned again (half the cost of a record read). Every
/// query here is a lookup by key or a range by row number, so no bound value could choose a
/// better plan.
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
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

/// A derived row as stored: row number, tags, clear part, sealed part.
fn raw_row(r: &rusqlite::Row<'_>, table: Table, at: usize) -> rusqlite::Result<RawRow> {
    let seq: i64 = r.get(at)?;
    rows::raw_row(table, at, seq, |i| r.get(i))
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

    fn stored_head(&self) -> Result<Option<StoredHead>, StoreError> {
        type HeadRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);
        let row: Option<HeadRow> = self
            .conn
            .prepare_cached("SELECT height, proof, state, counts, tag FROM head WHERE id = 1")?
            .query_row([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((height, proof, state, counts, tag)) = row else {
            return Ok(None);
        };
        let height = u64_of(height, "head height")?;
        let tip = self
            .tip_at(height)?
            .ok_or_else(|| StoreError::corrupt(format!("the head block {height} is missing")))?;
        StoredHead::from_parts(tip, &proof, &state, &counts, tag).map(Some)
    }

    fn head(&self) -> Result<Option<Head>, StoreError> {
        Ok(self.stored_head()?.map(|h| h.head))
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
            "SELECT pruned, bytes FROM transactions WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let mut rows = stmt.query([lo, hi])?;
        let mut txs = Vec::new();
        while let Some(row) = rows.next()? {
            let pruned: bool = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            txs.push(stored_tx(&bytes, pruned)?);
        }
        assemble(height, &shell, txs).map(Some)
    }

    fn height(&self) -> Result<u64, StoreError> {
        let h: Option<i64> = self
            .conn
            .prepare_cached("SELECT height FROM head WHERE id = 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        h.map_or(Ok(0), |h| u64_of(h, "head height"))
    }

    fn count(&self, sql: &str) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row(sql, [], |r| r.get(0))?;
        u64_of(n, "count")
    }

    /// The schema version, the state key, the genesis, the head block against its parent and
    /// its proof, the blocks are exactly 1..=head, and the head's state commitment: its tag and
    /// the row counts of every table. Returns the state key.
    fn check(&self, network: &NetworkKey) -> Result<StateKey, StoreError> {
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
        check_version(version)?;
        let sealed = self
            .meta("state_key")?
            .ok_or(StoreError::NotAStore("the state key is missing"))?;
        let key = StateKey::unseal(&sealed, network)?;
        let genesis = self.genesis()?;
        let head = self.stored_head()?;
        let (count, max): (i64, Option<i64>) =
            self.conn
                .query_row("SELECT count(*), max(height) FROM blocks", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let head_height = head.as_ref().map_or(0, |h| h.head.tip.height);
        check_block_count(
            u64_of(count, "count")?,
            u64_of(max.unwrap_or(0), "height")?,
            head_height,
        )?;
        let mut found = Counts::default();
        for table in Table::ALL {
            found.rows[table.index()] =
                self.count(&format!("SELECT count(*) FROM {}", table.name()))?;
        }
        found.pruned = self.count("SELECT count(*) FROM transactions WHERE pruned = 1")?;
        let Some(head) = head else {
            check_counts(&key, None, &found)?;
            return Ok(key);
        };
        check_counts(&key, Some(&head), &found)?;
        let genesis = genesis.ok_or(StoreError::NotInitialised)?;
        let block = self.block(head_height)?.ok_or_else(|| {
            StoreError::corrupt(format!("the head block {head_height} is missing"))
        })?;
        let parent = if head_height == 1 {
            ChainTip::genesis(&genesis)
        } else {
            self.tip_at(head_height - 1)?
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

    fn raw_rows(&self, table: Table, lo: i64, hi: i64) -> Result<Vec<RawRow>, StoreError> {
        let key = table.key_column();
        let sql = format!(
            "SELECT {} FROM {} WHERE {key} BETWEEN ?1 AND ?2 ORDER BY {key}",
            table.columns().join(", "),
            table.name()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map([lo, hi], |r| raw_row(r, table, 0))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// The query of [`StateRows::joined`].
fn joined_sql(main: Table, side: Table, column: &str) -> Result<String, StoreError> {
    let [join, other] = main.tag_columns() else {
        return Err(StoreError::corrupt("a joined table has two lookup columns"));
    };
    Ok(format!(
        "SELECT m.seq, m.{join}, m.{other}, m.sealed, s.seq, s.sealed FROM {} m
         LEFT JOIN {} s ON s.{join} = m.{join} WHERE m.{column} = ?1 ORDER BY m.seq",
        main.name(),
        side.name()
    ))
}

/// The derived-state reads under the state key, over any connection to the file (the store's
/// own, or a [`SqliteReader`]'s).
struct StateRows<'a> {
    key: &'a StateKey,
}

impl StateRows<'_> {
    fn contains_tx(&self, conn: &Connection, id: &TxId) -> Result<bool, StoreError> {
        let found: Option<i64> = conn
            .prepare_cached("SELECT 1 FROM transactions WHERE id = ?1")?
            .query_row([&id.as_byte_array()[..]], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    fn consent(
        &self,
        conn: &Connection,
        id: &ConsentId,
    ) -> Result<Option<ConsentState>, StoreError> {
        let key = self.key.lookup(Lookup::Consent, id.as_byte_array());
        Ok(self.consent_rows(conn, "ckey", &key)?.into_iter().next())
    }

    fn consents_of(
        &self,
        conn: &Connection,
        patient: &VerifyKey,
    ) -> Result<Vec<ConsentState>, StoreError> {
        let key = self
            .key
            .lookup(Lookup::ConsentPatient, patient.as_byte_array());
        self.consent_rows(conn, "pkey", &key)
    }

    fn open_raw(&self, table: Table, raw: RawRow) -> Result<Row, StoreError> {
        let (seq, tags, clear, sealed) = raw;
        open_stored(self.key, table, seq, tags, clear, sealed)
    }

    /// Rows of `main` with their optional `side` row (an erasure of a record, a revocation of a
    /// consent), joined on the first lookup column, `WHERE main.{column} = key`.
    fn joined(
        &self,
        conn: &Connection,
        main: Table,
        side: Table,
        column: &str,
        key: &[u8; 32],
    ) -> Result<Vec<(Row, Option<Row>)>, StoreError> {
        let mut stmt = conn.prepare_cached(&joined_sql(main, side, column)?)?;
        let mut rows = stmt.query([&key[..]])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let main_raw = raw_row(r, main, 0)?;
            let join_tag = main_raw.1[0];
            let side_seq: Option<i64> = r.get(4)?;
            let side_sealed: Option<Vec<u8>> = r.get(5)?;
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
        conn: &Connection,
        id: &RecordId,
    ) -> Result<Option<RecordEntry>, StoreError> {
        let key = self.key.lookup(Lookup::Record, id.as_byte_array());
        let rows = self.joined(conn, Table::Records, Table::Erasures, "rkey", &key)?;
        rows.first()
            .map(|(r, e)| record_entry(r, e.as_ref()))
            .transpose()
    }

    fn consent_rows(
        &self,
        conn: &Connection,
        column: &str,
        key: &[u8; 32],
    ) -> Result<Vec<ConsentState>, StoreError> {
        self.joined(conn, Table::Consents, Table::Revocations, column, key)?
            .iter()
            .map(|(c, r)| consent_state(c, r.as_ref()))
            .collect()
    }

    /// The audit rows of one record, with their row numbers.
    fn audit_rows(
        &self,
        conn: &Connection,
        id: &RecordId,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        let key = self.key.lookup(Lookup::AuditRecord, id.as_byte_array());
        let mut stmt = conn
            .prepare_cached("SELECT seq, rkey, sealed FROM audit WHERE rkey = ?1 ORDER BY seq")?;
        let raws = stmt
            .query_map([&key[..]], |r| raw_row(r, Table::Audit, 0))?
            .collect::<Result<Vec<_>, _>>()?;
        raws.into_iter()
            .map(|raw| {
                let seq = raw.0;
                Ok((seq, audit_entry(&self.open_raw(Table::Audit, raw)?)?))
            })
            .collect()
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
    /// supported version whose head verifies and whose tables hold exactly the rows the head's
    /// state commitment counts. A file that fails a check is not modified.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::NotAStore`], [`StoreError::Truncated`],
    /// [`StoreError::UnsupportedSchema`], [`StoreError::WrongKey`],
    /// [`StoreError::HeadInvalid`], [`StoreError::Corrupt`] (a row count or the commitment
    /// does not hold: rows deleted, added or rolled back), SQLite or I/O errors.
    pub fn open(path: impl AsRef<Path>, network: &NetworkKey) -> Result<Self, StoreError> {
        let path = path.as_ref();
        check_header(path)?;
        let key = {
            let ro = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            let reads = Reads { conn: &ro };
            ro.execute_batch("BEGIN")?;
            let key = reads.check(network)?;
            ro.execute_batch("COMMIT")?;
            key
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        let reads = Reads { conn: &conn };
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
            Err(StoreError::corrupt(format!(
                "SQLite's quick_check found {} problem(s)",
                lines.len()
            )))
        }
    }

    fn reads(&self) -> Reads<'_> {
        Reads { conn: &self.conn }
    }

    fn open_raw(&self, table: Table, raw: RawRow) -> Result<Row, StoreError> {
        self.state_rows().open_raw(table, raw)
    }

    fn state_rows(&self) -> StateRows<'_> {
        StateRows { key: &self.key }
    }

    /// Every derived row block `height` wrote, opened under its identity.
    fn stored_rows(&self, height: u64) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        for table in Table::ALL {
            let (lo, hi) = table.range(height)?;
            for raw in self.reads().raw_rows(table, lo, hi)? {
                out.push(self.open_raw(table, raw)?);
            }
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
        let reads = self.reads_on(tx);
        let head = reads.stored_head()?;
        let have = head.as_ref().map_or(0, |s| s.head.tip.height);
        check_next(self.genesis.as_ref(), head.as_ref(), block, effects)?;
        let rows = block_rows(&self.key, block, effects)?;
        let tip = block.tip();
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
        for table in Table::ALL {
            let cols = table.columns();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                table.name(),
                cols.join(", "),
                marks.join(", ")
            );
            let mut ins = tx.prepare_cached(&sql)?;
            for row in rows.iter().filter(|r| r.table == table) {
                let mut values: Vec<Value> = vec![Value::Integer(i64_of(row.seq, "row number")?)];
                values.extend(row.tags.iter().map(|t| Value::Blob(t.to_vec())));
                if table.clear_column().is_some() {
                    values.push(Value::Blob(row.clear.clone()));
                }
                if table.sealed() {
                    values.push(Value::Blob(self.key.seal_row(row)));
                }
                ins.execute(params_from_iter(values))?;
            }
        }
        let mut pruned = 0u64;
        let mut erased: Vec<&RecordId> = effects.erased().collect();
        erased.sort();
        for rid in erased {
            let rec = self
                .state_rows()
                .record_row(tx, rid)?
                .ok_or_else(|| StoreError::corrupt("an erased record is not stored"))?;
            let audit: Vec<AuditEntry> = self
                .state_rows()
                .audit_rows(tx, rid)?
                .into_iter()
                .map(|(_, a)| a)
                .collect();
            for target in erasure_targets(&rec, &audit) {
                pruned += self.prune_tx(tx, &target)?;
            }
        }
        let prev = head.map(|s| s.commitment).unwrap_or_default();
        let next = advance(&self.key, &prev, block, &rows, pruned);
        let tag = self
            .key
            .head_tag(height, &block.hash(), &next.state, &next.counts);
        debug_assert_eq!(have + 1, height);
        tx.prepare_cached(
            "INSERT INTO head (id, height, proof, state, counts, tag) VALUES (1, ?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET height = excluded.height, proof = excluded.proof,
                 state = excluded.state, counts = excluded.counts, tag = excluded.tag",
        )?
        .execute(params![
            h,
            proof.to_bytes(),
            &next.state[..],
            next.counts.to_bytes(),
            &tag[..]
        ])?;
        Ok(())
    }

    /// Prunes one transaction's payload; 1 if it was not pruned before, else 0.
    fn prune_tx(&self, tx: &SqlTx<'_>, id: &TxId) -> Result<u64, StoreError> {
        let row: Option<(bool, Vec<u8>)> = tx
            .prepare_cached("SELECT pruned, bytes FROM transactions WHERE id = ?1")?
            .query_row([&id.as_byte_array()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((pruned, bytes)) = row else {
            return Err(StoreError::corrupt("a transaction to prune is not stored"));
        };
        let mut t = stored_tx(&bytes, pruned)?;
        if !t.kind().has_payload() || pruned {
            return Ok(0);
        }
        t.prune();
        tx.prepare_cached("UPDATE transactions SET bytes = ?2, pruned = 1 WHERE id = ?1")?
            .execute(params![&id.as_byte_array()[..], t.to_bytes()])?;
        Ok(1)
    }

    fn reads_on<'a>(&self, conn: &'a Connection) -> Reads<'a> {
        Reads { conn }
    }
}

impl StateView for SqliteStore {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.state_rows().contains_tx(&self.conn, id)?)
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.state_rows().record_row(&self.conn, id)?)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.state_rows().consent(&self.conn, id)?)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        Ok(self.state_rows().consents_of(&self.conn, patient)?)
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
        let tx = SqlTx::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        // Each block checks it extends the head the previous one wrote (same transaction);
        // the head row each rewrites ends as the last block's, with the step's proof.
        for (block, effects) in blocks {
            self.write_block(&tx, block, effects, proof)?;
        }
        tx.commit()?;
        self.height = last.header().height;
        if blocks.iter().any(|(_, e)| e.erased().next().is_some()) {
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
                u32::try_from(i).map_err(|_| StoreError::corrupt("bad tx index"))?,
            ))
        })
        .transpose()
    }

    fn records_of(&self, patient: &VerifyKey) -> Result<Vec<RecordEntry>, StoreError> {
        let key = self
            .key
            .lookup(Lookup::RecordPatient, patient.as_byte_array());
        self.state_rows()
            .joined(&self.conn, Table::Records, Table::Erasures, "pkey", &key)?
            .iter()
            .map(|(r, e)| record_entry(r, e.as_ref()))
            .collect()
    }

    fn audit_of_record(&self, id: &RecordId) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self
            .state_rows()
            .audit_rows(&self.conn, id)?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    fn audit_of_patient(&self, patient: &VerifyKey) -> Result<Vec<AuditEntry>, StoreError> {
        let mut all = Vec::new();
        for r in self.records_of(patient)? {
            all.extend(self.state_rows().audit_rows(&self.conn, &r.record_id)?);
        }
        all.sort_by_key(|(seq, _)| *seq);
        Ok(all.into_iter().map(|(_, a)| a).collect())
    }

    fn index_filters(&self, from: u64, limit: usize) -> Result<Vec<IndexFilterRow>, StoreError> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT height, filter FROM index_filters WHERE height >= ?1 ORDER BY height LIMIT ?2",
        )?;
        let mut rows = stmt.query([from, limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let h: i64 = r.get(0)?;
            let clear: Vec<u8> = r.get(1)?;
            out.push(filter_row(u64_of(h, "height")?, &clear)?);
        }
        Ok(out)
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
        let raw = self
            .conn
            .prepare_cached("SELECT seq, entry, sealed FROM index_entries WHERE seq = ?1")?
            .query_row([seq], |r| raw_row(r, Table::IndexEntries, 0))
            .optional()?;
        raw.map(|raw| indexed_record(&self.open_raw(Table::IndexEntries, raw)?))
            .transpose()
    }
}

impl SqliteStore {
    /// See [`PersistentStore::indexed_records`](crate::PersistentStore::indexed_records): one
    /// prepared point read each (no round trips in SQLite).
    pub(crate) fn indexed_records(
        &self,
        at: &[(u64, u32)],
    ) -> Result<Vec<Option<IndexedRecord>>, StoreError> {
        at.iter()
            .map(|&(height, position)| self.indexed_record(height, position))
            .collect()
    }

    /// See [`PersistentStore::node_state`](crate::PersistentStore::node_state).
    pub(crate) fn node_state(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.reads().meta(crate::common::NODE_STATE_KEY)
    }

    /// See [`PersistentStore::save_node_state`](crate::PersistentStore::save_node_state): one
    /// statement, durable when it returns (`synchronous = FULL`).
    pub(crate) fn save_node_state(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![crate::common::NODE_STATE_KEY, bytes])?;
        Ok(())
    }

    /// See [`PersistentStore::erased_records`](crate::PersistentStore::erased_records).
    pub(crate) fn erased_records(&self, ids: &[RecordId]) -> Result<Vec<bool>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, sealed FROM erasures WHERE rkey = ?1")?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let key = self.key.lookup(Lookup::Record, id.as_byte_array());
            let row: Option<(i64, Vec<u8>)> = stmt
                .query_row([&key[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let erasure = row
                .map(|(seq, sealed)| {
                    self.open_raw(Table::Erasures, (seq, vec![key], Vec::new(), Some(sealed)))
                })
                .transpose()?;
            out.push(erased(id, erasure.as_ref())?);
        }
        Ok(out)
    }

    /// One committed transaction by id.
    ///
    /// # Errors
    /// SQLite errors; [`StoreError::Decode`] for bytes that do not decode.
    pub fn transaction(&self, id: &TxId) -> Result<Option<Transaction>, StoreError> {
        let row: Option<(bool, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT pruned, bytes FROM transactions WHERE id = ?1")?
            .query_row([&id.as_byte_array()[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(pruned, b)| stored_tx(&b, pruned)).transpose()
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
        let head = self.reads().stored_head()?;
        check_commitment(head.as_ref().map(|h| &h.commitment), audit)
    }
}

/// A second, read-only connection to a [`SqliteStore`]'s file ([`SqliteStore::reader`]): what a
/// node reads the committed chain through while its host appends to the store
/// ([`CommittedChain`]; `medchain::Host`).
///
/// Consistency (`docs/storage.md`): the file is in WAL mode, so every statement on this
/// connection reads one snapshot, the last transaction committed when it began — a whole
/// append or none of it, never a part. The store has one writer, and the node that reads
/// through this connection and the host that appends through the store's take turns on one
/// thread: while the node reads, nothing is written, so all its reads in one call see the same
/// head.
pub struct SqliteReader {
    conn: Connection,
    key: StateKey,
    /// The head's height when last read (kept when a read fails: the store only grows).
    height: Cell<u64>,
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader")
            .field("height", &self.height.get())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// A read-only connection to this store's file (see [`SqliteReader`]). Its state key is
    /// unsealed again under `network`.
    ///
    /// # Errors
    /// [`StoreError::WrongKey`] for another network key, [`StoreError::WrongGenesis`] if the
    /// file now holds another chain, SQLite errors.
    pub fn reader(&self, network: &NetworkKey) -> Result<SqliteReader, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        stable_plans(&conn)?;
        let reads = Reads { conn: &conn };
        let sealed = reads
            .meta("state_key")?
            .ok_or(StoreError::NotAStore("the state key is missing"))?;
        let key = StateKey::unseal(&sealed, network)?;
        let same = match (reads.genesis()?, &self.genesis) {
            (Some(a), Some(b)) => a.hash() == b.hash(),
            (a, b) => a.is_none() && b.is_none(),
        };
        if !same {
            return Err(StoreError::WrongGenesis);
        }
        let height = reads.height()?;
        Ok(SqliteReader {
            conn,
            key,
            height: Cell::new(height),
        })
    }
}

impl SqliteReader {
    fn rows(&self) -> StateRows<'_> {
        StateRows { key: &self.key }
    }

    fn reads(&self) -> Reads<'_> {
        Reads { conn: &self.conn }
    }
}

impl StateView for SqliteReader {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.rows().contains_tx(&self.conn, id)?)
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.rows().record_row(&self.conn, id)?)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.rows().consent(&self.conn, id)?)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        Ok(self.rows().consents_of(&self.conn, patient)?)
    }

    /// The head's height, read anew (the last one read if the read fails).
    fn height(&self) -> u64 {
        if let Ok(h) = self.reads().height() {
            self.height.set(h.max(self.height.get()));
        }
        self.height.get()
    }
}

impl CommittedChain for SqliteReader {
    fn block(&self, height: u64) -> Result<Option<Block>, StateError> {
        Ok(self.reads().block(height)?)
    }

    fn height_of(&self, hash: &BlockHash) -> Result<Option<u64>, StateError> {
        let h: Option<i64> = self
            .conn
            .prepare_cached("SELECT height FROM blocks WHERE hash = ?1")
            .and_then(|mut s| {
                s.query_row([&hash.as_byte_array()[..]], |r| r.get(0))
                    .optional()
            })
            .map_err(StoreError::from)?;
        Ok(h.map(|h| u64_of(h, "height")).transpose()?)
    }

    fn head(&self) -> Result<Option<Head>, StateError> {
        Ok(self.reads().head()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_core::testkit::TestNet;
    use rusqlite::StatementStatus;

    /// Without the query planner stability guarantee, SQLite 3.54 marks a statement with an
    /// `= ?` term for re-preparation whenever its bindings are cleared, which rusqlite's cache
    /// does each time a statement is returned to it: every lookup was parsed and planned again.
    #[test]
    fn cached_lookups_are_not_prepared_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = TestNet::new(7, 4, 2);
        let mut store = SqliteStore::create(dir.path().join("s.db"), &net.network).expect("create");
        store.init(&net.genesis).expect("init");
        for reader in [
            &store.conn,
            &store.reader(&net.network).expect("reader").conn,
        ] {
            for i in 0..5u8 {
                let id = RecordId::from_byte_array([i; 32]);
                assert_eq!(
                    store.state_rows().record_row(reader, &id).expect("read"),
                    None
                );
            }
            let sql = joined_sql(Table::Records, Table::Erasures, "rkey").expect("sql");
            let stmt = reader.prepare_cached(&sql).expect("cached");
            assert_eq!(
                stmt.get_status(StatementStatus::RePrepare),
                0,
                "re-prepared"
            );
        }
    }
}
