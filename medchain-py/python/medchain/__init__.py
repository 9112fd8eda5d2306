"""medchain: sealed FHIR records on a permissioned blockchain, from Python.

Identities and sealed records, the ledger (verify, iterate, search, audit), consents, and
de-identified research datasets as pandas DataFrames or pyarrow Tables. See ``docs/python.md``.
"""

from __future__ import annotations

from . import errors
from ._medchain import (
    Consent,
    ConsentState,
    Decision,
    Identity,
    IndexKey,
    NetworkKey,
    PublicIdentity,
    SealedRecord,
    __version__,
    evaluate,
    seal,
)
from .errors import (
    ConsentDenied,
    DecodeError,
    InvalidArgument,
    InvalidConsent,
    InvalidFhir,
    InvalidSignature,
    MedchainError,
    NotAReader,
    NotFhir,
    StoreError,
    TamperedLedger,
    WrongNetworkKey,
    WrongPassword,
    WrongType,
)
from .ledger import (
    Block,
    Ledger,
    RecordEntry,
    SearchHit,
    SearchResults,
    SearchStats,
    StoredRecord,
    Transaction,
    VerifyProgress,
    VerifySummary,
)

__all__ = [
    "Block",
    "Consent",
    "ConsentDenied",
    "ConsentState",
    "DecodeError",
    "Decision",
    "Identity",
    "IndexKey",
    "InvalidArgument",
    "InvalidConsent",
    "InvalidFhir",
    "InvalidSignature",
    "Ledger",
    "MedchainError",
    "NetworkKey",
    "NotAReader",
    "NotFhir",
    "PublicIdentity",
    "RecordEntry",
    "SealedRecord",
    "SearchHit",
    "SearchResults",
    "SearchStats",
    "StoreError",
    "StoredRecord",
    "TamperedLedger",
    "Transaction",
    "VerifyProgress",
    "VerifySummary",
    "WrongNetworkKey",
    "WrongPassword",
    "WrongType",
    "__version__",
    "errors",
    "evaluate",
    "seal",
]
