//! Errors of the stores and of the [`Ledger`](crate::Ledger) API.
//!
//! Messages name what failed and the numbers involved; they never contain stored bytes, record
//! contents, keys or identities. Every error that wraps another keeps it as its
//! [`source`](std::error::Error::source), down to the database library's own error (inside an
//! opaque [`BackendError`]: no SQLite or PostgreSQL type is part of this crate's API).

use medchain_core::block::InvalidBlock;
use medchain_core::chain::{ChainError, CommitProofError};
use medchain_core::encoding::DecodeError;
use medchain_core::ledger::StateError;
use medchain_core::research::ResearchError;
use medchain_core::seal::SealError;
use medchain_core::store::IndexRowsError;
use medchain_core::tx::TxError;
use thiserror::Error;

/// What a store found wrong with its own data: each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Corruption {
    /// A derived-state row does not decrypt under its identity (table, sequence number, lookup
    /// columns): it was altered, moved to another row, patient or record, or copied.
    #[error("a {table} row does not decrypt under its identity (altered, moved or copied)")]
    Row {
        /// The table.
        table: &'static str,
    },
    /// A row decrypts but does not say what its lookup columns claim.
    #[error("a {table} row does not match its lookup columns")]
    RowMismatch {
        /// The table.
        table: &'static str,
    },
    /// The head's state commitment does not verify under the state key.
    #[error("the head's state commitment does not verify")]
    Commitment,
    /// A table holds another number of rows than the head's commitment counts: rows were
    /// deleted, rolled back or added.
    #[error("table {table} holds {found} rows, the head's commitment counts {committed}")]
    RowCount {
        /// The table.
        table: &'static str,
        /// Rows the commitment counts.
        committed: u64,
        /// Rows found.
        found: u64,
    },
    /// The stored derived state differs from the state the blocks imply (`Ledger::verify`).
    #[error("the stored {table} rows of block {height} differ from what the chain implies")]
    StateMismatch {
        /// The block.
        height: u64,
        /// The table.
        table: &'static str,
    },
    /// The state the blocks imply does not end at the head's commitment (`Ledger::verify`).
    #[error("the state the chain implies does not match the head's commitment")]
    CommitmentMismatch,
    /// Payloads are pruned although no erasure explains them (`Ledger::verify`), or a
    /// transaction's pruned flag does not match its bytes.
    #[error("{count} record(s) lost payloads that no erasure explains")]
    UnexplainedPruning {
        /// How many records.
        count: usize,
    },
    /// Anything else that does not add up; the message names it (never stored bytes).
    #[error("{0}")]
    Other(String),
}

/// An error of the database library, kept as the source of a [`StoreError`] without exposing
/// its type. Its message never holds row values (PostgreSQL's DETAIL, which can quote them, is
/// left out).
#[derive(Debug)]
pub struct BackendError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BackendError {
    pub(crate) fn new(
        message: String,
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { message, source }
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A PostgreSQL connection's TLS settings were refused, or its TLS handshake failed.
/// Messages name options and files, never passwords or stored data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// `sslmode` has a value this crate does not support (`allow`, `prefer`, unknown).
    #[error("sslmode={0} is not supported (use disable, require, verify-ca or verify-full)")]
    UnsupportedMode(String),
    /// An option this crate does not support: client certificates, CRLs, `sslnegotiation`, ...
    #[error("the connection option {0} is not supported")]
    UnsupportedOption(String),
    /// An option is given more than once.
    #[error("the connection option {0} is given more than once")]
    DuplicateOption(&'static str),
    /// TLS is asked for without `sslrootcert`: the server could not be authenticated.
    #[error("sslmode={0} needs sslrootcert (a PEM file of the root certificates to trust)")]
    MissingRootCert(&'static str),
    /// `sslrootcert` is given but TLS is not asked for.
    #[error("sslrootcert is given without sslmode=require, verify-ca or verify-full")]
    RootCertWithoutTls,
    /// The root certificate file cannot be read or holds no usable certificate.
    #[error("the root certificate file {path} cannot be used: {reason}")]
    RootCert {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// An `ssl*` option in a `key=value` connection string: TLS options are read from the URL
    /// form only.
    #[error("TLS options ({0}) are read from a postgresql:// URL only")]
    NotAUrl(String),
    /// A URL option is not valid percent-encoded UTF-8.
    #[error("a connection option is not valid percent-encoded UTF-8")]
    BadEncoding,
    /// The TLS handshake failed: the server declined TLS, or its certificate is not trusted or
    /// does not name the host. Nothing was sent in plain text after the refusal.
    #[error("TLS to PostgreSQL failed: {0}")]
    Handshake(String),
}

/// A store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `create` found something already there.
    #[error("a store already exists at {0}")]
    AlreadyExists(String),
    /// `open` found nothing there.
    #[error("no store at {0}")]
    NotFound(String),
    /// The file or schema is not a medchain store; it was not modified.
    #[error("not a medchain store: {0}")]
    NotAStore(&'static str),
    /// The store was written by another version of this crate.
    #[error("unsupported store schema version {found} (this build reads version {supported})")]
    UnsupportedSchema {
        /// The version found.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// The file is shorter than its own header says: a torn or truncated write.
    #[error("the store file is truncated: {actual} bytes, its header needs {expected}")]
    Truncated {
        /// The length the header implies.
        expected: u64,
        /// The file's length.
        actual: u64,
    },
    /// The stored data are inconsistent: rows altered, moved, deleted or rolled back.
    #[error("the store is corrupt: {0}")]
    Corrupt(#[source] Corruption),
    /// The stored head does not verify.
    #[error("the stored head does not verify: {0}")]
    HeadInvalid(String),
    /// The network key does not open the store's state key.
    #[error("the network key does not open this store")]
    WrongKey,
    /// The store holds another chain.
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
    /// A committed block must come with its commit proof.
    #[error("a block is appended without its commit proof")]
    MissingCommitProof,
    /// An append of consecutive blocks names no block.
    #[error("an append names no block")]
    NoBlocks,
    /// Stored bytes do not decode.
    #[error("stored bytes do not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The effects handed to `append` are not those of the block.
    #[error("the effects do not belong to the block")]
    EffectsMismatch,
    /// The block's secure-index rows could not be derived.
    #[error(transparent)]
    Index(#[from] IndexRowsError),
    /// SQLite failed (its error is the source).
    #[error("SQLite: {0}")]
    Sqlite(#[source] BackendError),
    /// PostgreSQL failed (the message carries the server's code and message, never row data).
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] BackendError),
    /// A PostgreSQL connection's TLS settings were refused, or its TLS handshake failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// File-system I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A previous operation panicked while holding the connection.
    #[error("the store's connection is unusable after an earlier failure")]
    Poisoned,
}

impl StoreError {
    /// A corruption described in words (never stored bytes).
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt(Corruption::Other(what.into()))
    }
}

impl From<Corruption> for StoreError {
    fn from(c: Corruption) -> Self {
        Self::Corrupt(c)
    }
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        StateError::caused_by(e)
    }
}

mod sealed {
    /// An error of a database library this crate uses. Sealed and unnameable outside the
    /// crate: which libraries (and which versions) is not part of the public API, so their
    /// types appear in no public signature.
    pub trait DbError: std::error::Error + Send + Sync + 'static {
        /// The store error it becomes (the library's error kept as the source where its
        /// message is safe to show).
        fn into_store_error(self) -> super::StoreError;
    }
}

/// The conversion `?` uses inside the crate; the bound's trait is sealed, so only the
/// database libraries' own errors meet it.
impl<E: sealed::DbError> From<E> for StoreError {
    fn from(e: E) -> Self {
        e.into_store_error()
    }
}

impl sealed::DbError for rusqlite::Error {
    fn into_store_error(self) -> StoreError {
        if let rusqlite::Error::SqliteFailure(f, _) = &self {
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            ) {
                return StoreError::corrupt(format!("SQLite reports {f}"));
            }
        }
        // SQLite's messages name tables, columns and constraints, never values.
        StoreError::Sqlite(BackendError::new(self.to_string(), Some(Box::new(self))))
    }
}

#[cfg(feature = "postgres")]
impl sealed::DbError for postgres::Error {
    fn into_store_error(self) -> StoreError {
        // The server's DETAIL may quote row values: keep only the code and the message, and
        // not the error itself as the source (its Display includes the DETAIL).
        match self.as_db_error() {
            Some(db) => StoreError::Postgres(BackendError::new(
                format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
                None,
            )),
            None => StoreError::Postgres(BackendError::new(self.to_string(), Some(Box::new(self)))),
        }
    }
}

/// A [`Ledger`](crate::Ledger) operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger state could not be read while validating; the block was not judged.
    #[error("the block could not be validated: {0}")]
    State(#[source] StateError),
    /// The block is invalid.
    #[error("the block is rejected: {0}")]
    InvalidBlock(#[source] InvalidBlock),
    /// The block's commit proof does not hold.
    #[error("the block's commit proof does not hold: {0}")]
    CommitProof(#[from] CommitProofError),
    /// The network key is not the one genesis names.
    #[error("the network key is not the one this chain's genesis names")]
    WrongNetworkKey,
    /// Whole-chain verification failed.
    #[error("chain verification failed: {0}")]
    Verify(#[from] ChainError<StoreError>),
    /// The verified chain does not end at the stored head.
    #[error("the verified chain ends at height {verified}, the stored head is at height {head}")]
    HeadMismatch {
        /// Height of the verified chain.
        verified: u64,
        /// Height of the stored head.
        head: u64,
    },
    /// A stored transaction could not be opened.
    #[error("a stored transaction could not be opened: {0}")]
    Transaction(#[from] TxError),
    /// A location string names a backend this build lacks.
    #[error("this build has no PostgreSQL support (enable the `postgres` feature)")]
    NoPostgres,
    /// A research release was refused; nothing was released.
    #[error(transparent)]
    Research(#[from] ResearchError),
    /// A record could not be opened for a reader ([`Ledger::open_for`](crate::Ledger::open_for)).
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Why a record could not be opened for a reader
/// ([`Ledger::open_for`](crate::Ledger::open_for)). Nothing was decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// No such record.
    #[error("no such record")]
    UnknownRecord,
    /// The patient erased the record: its payload and released keys are pruned.
    #[error("the record was erased")]
    Erased,
    /// The record's key was never released to this reader by a committed `KeyShared` (a
    /// release to another reader does not open it).
    #[error("the record's key was not released to this reader")]
    NotShared,
    /// The released envelope does not open the record for this reader.
    #[error("the released key does not open the record for this reader: {0}")]
    Seal(#[source] SealError),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn chain<'a>(
        e: &'a (dyn std::error::Error + 'static),
    ) -> Vec<&'a (dyn std::error::Error + 'static)> {
        let mut out = vec![e];
        let mut at = e;
        while let Some(next) = at.source() {
            out.push(next);
            at = next;
        }
        out
    }

    #[test]
    fn the_database_error_stays_reachable_through_every_layer() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let db = conn.execute("SELECT * FROM no_such_table", []).unwrap_err();
        let store = StoreError::from(db);
        assert!(matches!(store, StoreError::Sqlite(_)), "{store:?}");
        assert!(store.to_string().starts_with("SQLite: no such table"));

        // A store error met while validating: LedgerError -> StateError -> StoreError ->
        // BackendError -> rusqlite::Error (-> SQLite's own code).
        let ledger = LedgerError::State(StateError::from(store));
        let links = chain(&ledger);
        assert!(links.len() >= 5, "{links:?}");
        assert!(links[1].downcast_ref::<StateError>().is_some());
        assert!(links[2].downcast_ref::<StoreError>().is_some());
        assert!(links[3].downcast_ref::<BackendError>().is_some());
        assert!(links[4].downcast_ref::<rusqlite::Error>().is_some());

        // Through `LedgerError::Store` (transparent) the backend error is the first source.
        let db = conn.execute("SELECT * FROM no_such_table", []).unwrap_err();
        let ledger = LedgerError::from(StoreError::from(db));
        let links = chain(&ledger);
        assert!(links
            .iter()
            .any(|e| e.downcast_ref::<rusqlite::Error>().is_some()));
    }

    #[test]
    fn a_corruption_is_the_source_of_its_store_error() {
        let e = StoreError::from(Corruption::Commitment);
        let source = e.source().and_then(|s| s.downcast_ref::<Corruption>());
        assert_eq!(source, Some(&Corruption::Commitment));
    }
}
