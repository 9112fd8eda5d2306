//! Errors of the stores and of the [`Ledger`](crate::Ledger) API.
//!
//! Messages name what failed and the numbers involved; they never contain stored bytes, record
//! contents, keys or identities.

use medchain_core::block::InvalidBlock;
use medchain_core::chain::{ChainError, CommitProofError};
use medchain_core::encoding::DecodeError;
use medchain_core::ledger::StateError;
use medchain_core::tx::TxError;
use thiserror::Error;

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
    /// The stored data are inconsistent.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
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
    /// Stored bytes do not decode.
    #[error("stored bytes do not decode: {0}")]
    Decode(#[from] DecodeError),
    /// SQLite failed.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (the message carries the server's code and message, never row data).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// File-system I/O failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A previous operation panicked while holding the connection.
    #[error("the store's connection is unusable after an earlier failure")]
    Poisoned,
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        StateError(e.to_string())
    }
}

#[cfg(feature = "postgres")]
impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // The server's DETAIL may quote row values; keep only the code and the message.
        match e.as_db_error() {
            Some(db) => StoreError::Postgres(format!(
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            )),
            None => StoreError::Postgres(e.to_string()),
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
    State(StateError),
    /// The block is invalid.
    #[error("the block is rejected: {0}")]
    InvalidBlock(InvalidBlock),
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
}
