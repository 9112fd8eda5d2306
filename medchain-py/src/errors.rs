//! The one place where Rust errors become Python exceptions.
//!
//! Every fallible native function returns [`Result`]; [`Error`] carries a [`Kind`] (one per
//! exception class of `medchain.errors`) and a readable message. The conversion into a Python
//! exception looks the class up by name in `medchain.errors`, so the hierarchy is defined in
//! Python only.

use medchain::MemoryNetworkError;
use medchain::{HostError, RecordError, SubmitTxError};
use medchain_core::access::{AccessError, ClassError};
use medchain_core::consent::{ConsentError, ConsentFhirError, DeidError};
use medchain_core::encoding::DecodeError;
use medchain_core::fhir::FhirError;
use medchain_core::index::WriterKeyError;
use medchain_core::keys::{BackupError, IdentityTextError, JwsError};
use medchain_core::ledger::RuleError;
use medchain_core::protocol::SubmitError;
use medchain_core::research::ResearchError;
use medchain_core::seal::SealError;
use medchain_core::tx::TxError;
use medchain_fhir::{InvalidResource, WriteError};
use medchain_store::{LedgerError, StoreError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// The exception class an error maps to (its name in `medchain.errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `MedchainError` itself (an unexpected internal failure).
    Internal,
    /// `InvalidSignature`.
    InvalidSignature,
    /// `ConsentDenied`.
    ConsentDenied,
    /// `TamperedLedger`.
    TamperedLedger,
    /// `DecodeError`.
    Decode,
    /// `WrongPassword`.
    WrongPassword,
    /// `NotFhir`.
    NotFhir,
    /// `StoreError`.
    Store,
    /// `WrongNetworkKey`.
    WrongNetworkKey,
    /// `NotAReader`.
    NotAReader,
    /// `InvalidConsent`.
    InvalidConsent,
    /// `InvalidArgument` (a value of the right type that is not acceptable).
    InvalidArgument,
    /// `WrongType`.
    WrongType,
    /// `InvalidFhir` (a subclass of `NotFhir`), built with the report as an OperationOutcome.
    InvalidFhir,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::Internal => "MedchainError",
            Kind::InvalidSignature => "InvalidSignature",
            Kind::ConsentDenied => "ConsentDenied",
            Kind::TamperedLedger => "TamperedLedger",
            Kind::Decode => "DecodeError",
            Kind::WrongPassword => "WrongPassword",
            Kind::NotFhir => "NotFhir",
            Kind::Store => "StoreError",
            Kind::WrongNetworkKey => "WrongNetworkKey",
            Kind::NotAReader => "NotAReader",
            Kind::InvalidConsent => "InvalidConsent",
            Kind::InvalidArgument => "InvalidArgument",
            Kind::WrongType => "WrongType",
            Kind::InvalidFhir => "InvalidFhir",
        }
    }
}

/// An error on its way to Python.
#[derive(Debug, Clone)]
pub struct Error {
    /// Which exception class.
    pub kind: Kind,
    /// The message.
    pub message: String,
    /// For [`Kind::InvalidFhir`]: the validation report as OperationOutcome JSON, the
    /// exception's second argument.
    pub outcome: Option<String>,
    /// For [`Kind::ConsentDenied`] raised by a ledger rule: the rule's name
    /// ([`RuleError::name`], generic), the exception's `rule` attribute.
    pub rule: Option<&'static str>,
}

/// The result of native functions.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            outcome: None,
            rule: None,
        }
    }

    /// A refusal by the ledger rules: `ConsentDenied` with `message` and the rule's name.
    pub fn rule(rule: &RuleError, message: impl Into<String>) -> Self {
        Self {
            rule: Some(rule.name()),
            ..Self::new(Kind::ConsentDenied, message)
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> Self {
        Python::attach(|py| {
            let class = py
                .import("medchain.errors")
                .and_then(|m| m.getattr(e.kind.class_name()));
            let instance = class.and_then(|c| match (&e.outcome, e.rule) {
                (Some(outcome), _) => c.call1((e.message.clone(), outcome.clone())),
                (None, Some(rule)) => c.call1((e.message.clone(), rule)),
                (None, None) => c.call1((e.message.clone(),)),
            });
            match instance {
                Ok(instance) => PyErr::from_value(instance),
                // Only if the Python package is missing (the native module imported alone).
                Err(_) => PyRuntimeError::new_err(e.message),
            }
        })
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::new(Kind::Internal, e.to_string())
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::new(Kind::Decode, e.to_string())
    }
}

impl From<FhirError> for Error {
    fn from(e: FhirError) -> Self {
        Error::new(Kind::NotFhir, format!("not a FHIR R4 resource: {e}"))
    }
}

impl From<ClassError> for Error {
    fn from(e: ClassError) -> Self {
        match e {
            ClassError::NotFhir(f) => f.into(),
            other => Error::new(Kind::InvalidArgument, other.to_string()),
        }
    }
}

impl From<InvalidResource> for Error {
    fn from(e: InvalidResource) -> Self {
        Self {
            outcome: Some(e.report.operation_outcome().to_string()),
            ..Self::new(Kind::InvalidFhir, e.to_string())
        }
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(i) => i.into(),
            WriteError::Seal(s) => s.into(),
            other => Error::new(Kind::Internal, other.to_string()),
        }
    }
}

impl From<DeidError> for Error {
    fn from(e: DeidError) -> Self {
        Error::new(Kind::NotFhir, e.to_string())
    }
}

impl From<IdentityTextError> for Error {
    fn from(e: IdentityTextError) -> Self {
        Error::new(Kind::Decode, format!("not a medchain identity: {e}"))
    }
}

impl From<BackupError> for Error {
    fn from(e: BackupError) -> Self {
        let kind = match e {
            BackupError::WrongPasswordOrDamaged => Kind::WrongPassword,
            BackupError::Decode(_) => Kind::Decode,
            BackupError::UnsupportedParams => Kind::InvalidArgument,
            _ => Kind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<JwsError> for Error {
    fn from(e: JwsError) -> Self {
        Error::new(Kind::InvalidArgument, e.to_string())
    }
}

impl From<SealError> for Error {
    fn from(e: SealError) -> Self {
        let kind = match e {
            SealError::NotFhir(_) => Kind::NotFhir,
            SealError::NoEnvelope => Kind::NotAReader,
            SealError::Decrypt | SealError::CommitmentMismatch => Kind::Decode,
            SealError::Decode(_) => Kind::Decode,
            SealError::NonContributory | SealError::TooManyReaders { .. } => Kind::InvalidArgument,
            _ => Kind::Internal,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<WriterKeyError> for Error {
    fn from(e: WriterKeyError) -> Self {
        let kind = match e {
            WriterKeyError::Decode(_) | WriterKeyError::Decrypt => Kind::Decode,
            WriterKeyError::BadSignature => Kind::InvalidSignature,
            WriterKeyError::WrongWriter => Kind::NotAReader,
            _ => Kind::InvalidArgument,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<RecordError> for Error {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Fhir(e) => e.into(),
            RecordError::Enrolment(e) => e.into(),
            RecordError::Class(e) => e.into(),
            RecordError::Keywords(e) => Error::new(Kind::NotFhir, e.to_string()),
            RecordError::Submit(e) => e.into(),
            e => Error::new(Kind::Internal, e.to_string()),
        }
    }
}

impl From<SubmitTxError> for Error {
    fn from(e: SubmitTxError) -> Self {
        match e {
            SubmitTxError::Build(e) => e.into(),
            SubmitTxError::Node(SubmitError::Rejected(rule)) => {
                let message = format!("the transaction breaks a ledger rule: {rule}");
                Error::rule(&rule, message)
            }
            SubmitTxError::Node(SubmitError::BadBody(e) | SubmitError::NotFresh(e)) => e.into(),
            SubmitTxError::Ledger(e) => e.into(),
            e => Error::new(Kind::Internal, e.to_string()),
        }
    }
}

impl From<HostError> for Error {
    fn from(e: HostError) -> Self {
        match e {
            HostError::Ledger(e) => e.into(),
            e => Error::new(Kind::Internal, e.to_string()),
        }
    }
}

impl From<MemoryNetworkError> for Error {
    fn from(e: MemoryNetworkError) -> Self {
        match e {
            MemoryNetworkError::Host(e) => e.into(),
            e => Error::new(Kind::Internal, e.to_string()),
        }
    }
}

impl From<TxError> for Error {
    fn from(e: TxError) -> Self {
        let kind = match e {
            TxError::BadSignature | TxError::BadPatientSignature => Kind::InvalidSignature,
            TxError::Decode(_) => Kind::Decode,
            TxError::BodyDecrypt => Kind::WrongNetworkKey,
            _ => Kind::Decode,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<ConsentError> for Error {
    fn from(e: ConsentError) -> Self {
        let kind = match e {
            ConsentError::NotSignedByPatient => Kind::InvalidSignature,
            ConsentError::Decode(_) => Kind::Decode,
            _ => Kind::InvalidConsent,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<ConsentFhirError> for Error {
    fn from(e: ConsentFhirError) -> Self {
        Error::new(Kind::InvalidConsent, e.to_string())
    }
}

impl From<AccessError> for Error {
    fn from(e: AccessError) -> Self {
        match &e {
            // Generic: the requester learns no consent, provision or code.
            AccessError::Denied(denial) => {
                Error::rule(&RuleError::Denied(denial.clone()), denial.to_string())
            }
            AccessError::Rule(rule) => Error::rule(rule, e.to_string()),
            _ => Error::new(Kind::Internal, e.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        let kind = match e {
            StoreError::WrongKey => Kind::WrongNetworkKey,
            StoreError::Corrupt(_)
            | StoreError::HeadInvalid(_)
            | StoreError::Truncated { .. }
            | StoreError::Decode(_) => Kind::TamperedLedger,
            _ => Kind::Store,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<LedgerError> for Error {
    fn from(e: LedgerError) -> Self {
        let kind = match &e {
            LedgerError::Store(s) => return Error::new(Error::from_store_kind(s), e.to_string()),
            LedgerError::WrongNetworkKey => Kind::WrongNetworkKey,
            LedgerError::Verify(_) | LedgerError::HeadMismatch { .. } => Kind::TamperedLedger,
            LedgerError::Transaction(TxError::BadSignature) => Kind::TamperedLedger,
            LedgerError::Transaction(TxError::BodyDecrypt) => Kind::WrongNetworkKey,
            LedgerError::Transaction(_) => Kind::TamperedLedger,
            LedgerError::InvalidBlock(_) | LedgerError::CommitProof(_) => Kind::InvalidArgument,
            LedgerError::NoPostgres | LedgerError::State(_) => Kind::Store,
            LedgerError::Research(ResearchError::Rule(rule)) => {
                return Error::rule(rule, e.to_string())
            }
            LedgerError::Research(r) => research_kind(r),
            _ => Kind::Store,
        };
        Error::new(kind, e.to_string())
    }
}

/// A refused research release: the researcher's signature is `InvalidSignature`; a credential
/// or a releaser that does not hold, or cells too small to release, are `ConsentDenied`.
fn research_kind(e: &ResearchError) -> Kind {
    match e {
        ResearchError::Request(_) => Kind::InvalidSignature,
        ResearchError::State(_) => Kind::Store,
        _ => Kind::ConsentDenied,
    }
}

impl Error {
    fn from_store_kind(s: &StoreError) -> Kind {
        match s {
            StoreError::WrongKey => Kind::WrongNetworkKey,
            StoreError::Corrupt(_)
            | StoreError::HeadInvalid(_)
            | StoreError::Truncated { .. }
            | StoreError::Decode(_) => Kind::TamperedLedger,
            _ => Kind::Store,
        }
    }
}

/// Runs `f`, turning a panic into an internal [`Error`]: no Rust panic reaches Python.
pub fn guard<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            Kind::Internal,
            "internal error in the native module (please report it)",
        )),
    }
}
