//! The errors that cross the boundary, and the one place core errors become them.
//!
//! Three `uniffi::Error` enums, one per operation family (bdk-ffi ADR 03): [`WalletError`] for
//! the wallet, [`ProofError`] for the light client, [`StoreError`] for the app's storage. Each
//! core error converts through a hand-written `From`, so every mapping is visible here. In
//! Kotlin they are `WalletException`, `ProofException` and `StoreException` (sealed classes,
//! one subclass per variant); in Swift `WalletError`, `ProofError`, `StoreError`.
//!
//! No panic crosses the boundary: every exported function runs inside `guard`, which turns a
//! panic (a bug) into the `Internal` variant. Messages never carry secrets or health data: they
//! name what was wrong with an input, never its content.

use medchain_core::chain::CommitProofError;
use medchain_core::consent::{ConsentError, ConsentFhirError};
use medchain_core::encoding::DecodeError;
use medchain_core::fhir::FhirError;
use medchain_core::index::WriterKeyError;
use medchain_core::keys::{BackupError, IdentityTextError, JwsError};
use medchain_core::light::InclusionError;
use medchain_core::seal::SealError;
use medchain_core::tx::TxError;
use medchain_fhir::InvalidResource;

/// A wallet operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The store holds no wallet: create or restore one first.
    #[error("no wallet in this store: create or restore one first")]
    NoWallet,
    /// The store already holds a wallet; creating another would overwrite its keys.
    #[error("this store already holds a wallet")]
    WalletExists,
    /// No network is pinned: every signature binds the network it is for, so pin the
    /// network's genesis (`Wallet::trust_network`) before signing.
    #[error("no trusted network: pin the network's genesis before signing")]
    NoTrustedNetwork,
    /// The password is wrong, or the backup was altered.
    #[error("wrong password, or the backup is damaged")]
    WrongPassword,
    /// The password is not acceptable (empty).
    #[error("the password must not be empty")]
    WeakPassword,
    /// The bytes are not a well-formed object of the expected kind.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read (`identity backup`, `sealed record`, `audit trail`, ...).
        what: String,
        /// Why it does not decode.
        reason: String,
    },
    /// A printable identity (`mcid1…`) does not parse.
    #[error("invalid identity: {reason}")]
    InvalidIdentity {
        /// Why.
        reason: String,
    },
    /// An argument is of the right type but not acceptable (a bad id, an empty code, a period
    /// that ends before it starts, ...).
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// Why.
        reason: String,
    },
    /// The consent cannot be signed as given.
    #[error("invalid consent: {reason}")]
    InvalidConsent {
        /// Why.
        reason: String,
    },
    /// No key envelope of the record is addressed to this wallet.
    #[error("the record is not addressed to this wallet")]
    NotAddressedToMe,
    /// The record does not decrypt or does not match its commitment: altered bytes.
    #[error("the record is damaged or was altered")]
    RecordDamaged,
    /// The payload is not a FHIR R4 resource.
    #[error("not a FHIR R4 resource: {reason}")]
    NotFhir {
        /// Why.
        reason: String,
    },
    /// FHIR R4 JSON that fails validation (structure, required bindings): nothing was signed.
    /// Each issue reads `error at Consent.provision.type: the code is not in the required
    /// value set ...`; none quotes the input.
    #[error("not valid FHIR R4: {}", .issues.first().map_or("", String::as_str))]
    InvalidFhir {
        /// The problems, errors first.
        issues: Vec<String>,
    },
    /// A signed request does not verify.
    #[error("the request's signature does not verify")]
    BadSignature,
    /// An audit entry is about another patient than this wallet's.
    #[error("the audit trail holds an entry about another patient")]
    ForeignAuditEntry,
    /// The app's store failed.
    #[error("wallet store: {reason}")]
    Store {
        /// The store's error.
        reason: String,
    },
    /// An internal failure (a bug); the operation had no effect on the keys.
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

/// A light-client check failed. Each way a proof can fail has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The bytes are not a well-formed proof or genesis.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: String,
        /// Why.
        reason: String,
    },
    /// The genesis does not have the hash the app pinned.
    #[error("the genesis hash is {actual}, not the pinned {expected}")]
    GenesisMismatch {
        /// The pinned hash (hex).
        expected: String,
        /// The genesis's hash (hex).
        actual: String,
    },
    /// The wallet trusts no network yet (`Wallet.trustNetwork`).
    #[error("no trusted network: pin a genesis first")]
    NoTrustedNetwork,
    /// The block belongs to another network than the trusted genesis.
    #[error("the block belongs to another network")]
    WrongNetwork,
    /// The transaction's signature does not verify.
    #[error("the transaction's signature does not verify")]
    BadTransactionSignature,
    /// The transaction is not in this block: a proof for another block, or a tampered one.
    #[error("the transaction is not in this block")]
    NotInBlock,
    /// The quorum certificate certifies another block than this header: a tampered header, or
    /// the commit proof of another block.
    #[error("the block header is not the block the votes certify")]
    HeaderNotCertified,
    /// The certified child is not in the round after the block's.
    #[error("the commit proof's child is not in the next round")]
    NotConsecutive,
    /// The descendant headers of a block committed through a later block do not link by hash.
    #[error("the descendant headers do not form a chain from the block")]
    BrokenHeaderChain,
    /// A vote comes from a key outside the genesis trusted set.
    #[error("vote from {voter}, which is not a trusted validator")]
    UntrustedVoter {
        /// The voter's key (hex).
        voter: String,
    },
    /// A vote's signature does not verify.
    #[error("the vote of validator {voter} does not verify")]
    BadVoteSignature {
        /// The voter's key (hex).
        voter: String,
    },
    /// Too few distinct trusted validators voted.
    #[error("only {have} validator votes, {need} needed")]
    NoQuorum {
        /// Votes present.
        have: u32,
        /// Votes needed.
        need: u32,
    },
    /// The certificate mixes votes for different blocks or verdicts.
    #[error("the certificate mixes votes for different blocks")]
    MixedVotes,
    /// The app's store failed.
    #[error("wallet store: {reason}")]
    Store {
        /// The store's error.
        reason: String,
    },
    /// An internal failure (a bug).
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

/// The app's [`crate::WalletStore`] failed. A Kotlin or Swift store throws these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing failed (disk full, keystore locked, ...).
    #[error("storage failed: {reason}")]
    Io {
        /// What failed.
        reason: String,
    },
    /// The store threw something other than a `StoreError` (a bug in the app's store).
    #[error("unexpected error from the store: {reason}")]
    Unexpected {
        /// What the foreign code threw.
        reason: String,
    },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for StoreError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Unexpected { reason: e.reason }
    }
}

/// A panic caught by [`guard`].
#[derive(Debug)]
pub(crate) struct Panicked;

impl From<Panicked> for WalletError {
    fn from(_: Panicked) -> Self {
        Self::Internal {
            reason: "a bug in medchain-ffi (caught panic)".into(),
        }
    }
}

impl From<Panicked> for ProofError {
    fn from(_: Panicked) -> Self {
        Self::Internal {
            reason: "a bug in medchain-ffi (caught panic)".into(),
        }
    }
}

/// Runs `f`, turning a panic into the error's `Internal` variant: no panic reaches Kotlin or
/// Swift as a crash.
pub(crate) fn guard<T, E: From<Panicked>>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Panicked.into()))
}

/// A decoding error about `what`.
pub(crate) fn malformed(what: &str, e: &DecodeError) -> WalletError {
    WalletError::Malformed {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

impl From<WriterKeyError> for WalletError {
    fn from(e: WriterKeyError) -> Self {
        match e {
            WriterKeyError::Decode(d) => malformed("sealed writer key", &d),
            // Sealed on another network: its signature does not verify on this one.
            WriterKeyError::BadSignature | WriterKeyError::WrongChain => Self::BadSignature,
            WriterKeyError::NonContributory => Self::InvalidIdentity {
                reason: e.to_string(),
            },
            other => Self::InvalidArgument {
                reason: other.to_string(),
            },
        }
    }
}

impl From<StoreError> for WalletError {
    fn from(e: StoreError) -> Self {
        Self::Store {
            reason: e.to_string(),
        }
    }
}

impl From<StoreError> for ProofError {
    fn from(e: StoreError) -> Self {
        Self::Store {
            reason: e.to_string(),
        }
    }
}

impl From<BackupError> for WalletError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::WrongPasswordOrDamaged => Self::WrongPassword,
            BackupError::Decode(d) => malformed("identity backup", &d),
            BackupError::UnsupportedParams => Self::Malformed {
                what: "identity backup".into(),
                reason: "unsupported key-derivation cost parameters".into(),
            },
            other => Self::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<IdentityTextError> for WalletError {
    fn from(e: IdentityTextError) -> Self {
        Self::InvalidIdentity {
            reason: e.to_string(),
        }
    }
}

impl From<JwsError> for WalletError {
    fn from(e: JwsError) -> Self {
        // Nothing was signed: the input is not `BASE64URL(header) '.' BASE64URL(payload)`.
        Self::InvalidArgument {
            reason: e.to_string(),
        }
    }
}

impl From<SealError> for WalletError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NoEnvelope => Self::NotAddressedToMe,
            SealError::Decrypt | SealError::CommitmentMismatch => Self::RecordDamaged,
            SealError::Decode(d) => malformed("sealed record", &d),
            SealError::NotFhir(f) => f.into(),
            other => Self::InvalidArgument {
                reason: other.to_string(),
            },
        }
    }
}

impl From<FhirError> for WalletError {
    fn from(e: FhirError) -> Self {
        Self::NotFhir {
            reason: e.to_string(),
        }
    }
}

impl From<InvalidResource> for WalletError {
    fn from(e: InvalidResource) -> Self {
        Self::InvalidFhir {
            issues: e.report.issues().iter().map(ToString::to_string).collect(),
        }
    }
}

impl From<ConsentError> for WalletError {
    fn from(e: ConsentError) -> Self {
        match e {
            ConsentError::Decode(d) => malformed("consent", &d),
            ConsentError::NotSignedByPatient => Self::BadSignature,
            other => Self::InvalidConsent {
                reason: other.to_string(),
            },
        }
    }
}

impl From<ConsentFhirError> for WalletError {
    fn from(e: ConsentFhirError) -> Self {
        match e {
            ConsentFhirError::Invalid(c) => c.into(),
            other => Self::InvalidConsent {
                reason: other.to_string(),
            },
        }
    }
}

impl From<TxError> for WalletError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Decode(d) => malformed("signed request", &d),
            TxError::BadSignature | TxError::BadPatientSignature => Self::BadSignature,
            other => Self::InvalidArgument {
                reason: other.to_string(),
            },
        }
    }
}

impl From<InclusionError> for ProofError {
    fn from(e: InclusionError) -> Self {
        match e {
            InclusionError::WrongChain => Self::WrongNetwork,
            InclusionError::BadTransactionSignature => Self::BadTransactionSignature,
            InclusionError::NotInBlock => Self::NotInBlock,
            InclusionError::HeaderNotCertified => Self::HeaderNotCertified,
            InclusionError::NotConsecutive => Self::NotConsecutive,
            InclusionError::BrokenHeaderChain => Self::BrokenHeaderChain,
            InclusionError::UntrustedVoter(k) => Self::UntrustedVoter {
                voter: k.to_string(),
            },
            InclusionError::BadVoteSignature(k) => Self::BadVoteSignature {
                voter: k.to_string(),
            },
            InclusionError::NoQuorum { have, need } => Self::NoQuorum {
                have: u32::try_from(have).unwrap_or(u32::MAX),
                need: u32::try_from(need).unwrap_or(u32::MAX),
            },
            InclusionError::MixedVotes => Self::MixedVotes,
            other => Self::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<CommitProofError> for ProofError {
    fn from(e: CommitProofError) -> Self {
        InclusionError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_a_panic_into_internal() {
        let r: Result<(), WalletError> = guard(|| panic!("boom with a secret"));
        let e = r.unwrap_err();
        assert!(matches!(e, WalletError::Internal { .. }));
        // The panic's message (which could hold anything) does not leak into the error.
        assert!(!e.to_string().contains("secret"));
        let r: Result<(), ProofError> = guard(|| panic!("boom"));
        assert!(matches!(r, Err(ProofError::Internal { .. })));
        assert_eq!(guard::<_, WalletError>(|| Ok(3)), Ok(3));
    }

    #[test]
    fn messages() {
        assert_eq!(
            WalletError::from(BackupError::WrongPasswordOrDamaged).to_string(),
            "wrong password, or the backup is damaged"
        );
        assert_eq!(
            WalletError::from(SealError::NoEnvelope).to_string(),
            "the record is not addressed to this wallet"
        );
        assert_eq!(
            WalletError::from(SealError::Decrypt),
            WalletError::RecordDamaged
        );
        assert_eq!(
            ProofError::from(InclusionError::NoQuorum { have: 1, need: 3 }).to_string(),
            "only 1 validator votes, 3 needed"
        );
        assert_eq!(
            ProofError::from(CommitProofError::NotAChild),
            ProofError::HeaderNotCertified
        );
        assert_eq!(
            WalletError::from(StoreError::Io {
                reason: "disk full".into()
            })
            .to_string(),
            "wallet store: storage failed: disk full"
        );
        let report = medchain_fhir::check(
            br#"{"resourceType":"Consent","status":"approved"}"#,
            &medchain_fhir::Options::default(),
        )
        .unwrap_err();
        let e = WalletError::from(report);
        let WalletError::InvalidFhir { issues } = &e else {
            panic!("{e}")
        };
        assert!(issues.contains(&"error at Consent.scope: required element missing".to_owned()));
        assert!(e
            .to_string()
            .starts_with("not valid FHIR R4: error at Consent."));
        assert!(!e.to_string().contains("approved"));
        assert_eq!(
            StoreError::from(uniffi::UnexpectedUniFFICallbackError::new("NPE")).to_string(),
            "unexpected error from the store: NPE"
        );
    }
}
