import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Tuple, Union, overload

from . import _medchain
from ._medchain import (
    ConsentState,
    Identity,
    IndexKey,
    NetworkKey,
    PublicIdentity,
    ResearchRequest,
    SealedRecord,
)

__all__ = [
    "Block",
    "Ledger",
    "RecordEntry",
    "ResearchRelease",
    "SearchHit",
    "SearchResults",
    "SearchStats",
    "StoredRecord",
    "Transaction",
    "VerifyProgress",
    "VerifySummary",
    "DATASET_COLUMNS",
]

PathLike = Union[str, os.PathLike[str]]
PartyLike = Union[Identity, PublicIdentity, str]

DATASET_COLUMNS: Dict[str, str]

@dataclass(frozen=True)
class Transaction:
    id: str
    kind: str
    contributor: str
    timestamp_ms: int
    nonce: int
    pruned: bool
    has_index_entry: bool
    height: int
    body: Dict[str, Any]

@dataclass(frozen=True)
class Block:
    height: int
    round: int
    hash: str
    prev: str
    timestamp_ms: int
    miner: str
    contributors: int
    transactions: Tuple[Transaction, ...]

@dataclass(frozen=True)
class RecordEntry:
    record_id: str
    patient: str
    resource_type: str
    year: int
    contributor: str
    tx_id: str
    height: int
    erased: bool

@dataclass(frozen=True)
class StoredRecord:
    entry: RecordEntry
    sealed: Optional[SealedRecord]

@dataclass(frozen=True)
class SearchHit:
    height: int
    record_id: str

@dataclass(frozen=True)
class SearchStats:
    indexed_blocks: int
    blocks_skipped: int
    exhaustive_blocks: int
    prf_evaluations: int

class SearchResults(List[SearchHit]):
    stats: SearchStats
    def __init__(self, hits: List[SearchHit], stats: SearchStats) -> None: ...

@dataclass(frozen=True)
class ResearchRelease:
    study: str
    purpose: str
    topic: Optional[str]
    longitudinal: bool
    patients: int
    rows: int
    released_at_ms: int
    commitment: str
    log: bytes
    columns: Dict[str, List[Any]]
    @property
    def summary(self) -> Dict[str, Any]: ...
    def to_pandas(self) -> Any: ...
    def to_arrow(self) -> Any: ...

@dataclass(frozen=True)
class VerifyProgress:
    blocks: int
    transactions: int
    height: int

@dataclass(frozen=True)
class VerifySummary:
    blocks: int
    transactions: int
    head_proven: bool
    seconds: float
    native_seconds: float

class Ledger:
    def __init__(self, native: _medchain.NativeLedger) -> None: ...
    @classmethod
    def open(
        cls,
        location: PathLike,
        key_file: Optional[PathLike] = None,
        passphrase: Union[str, bytes, None] = None,
        *,
        network_key: Optional[NetworkKey] = None,
    ) -> Ledger: ...
    def close(self) -> None: ...
    def __enter__(self) -> Ledger: ...
    def __exit__(self, *exc: object) -> None: ...
    @property
    def height(self) -> int: ...
    @property
    def chain_name(self) -> str: ...
    @property
    def chain_id(self) -> str: ...
    def members(self) -> List[Tuple[str, PublicIdentity, bool]]: ...
    def __len__(self) -> int: ...
    def block(self, height: int) -> Block: ...
    def blocks(self, start: int = 1) -> Iterator[Block]: ...
    def __iter__(self) -> Iterator[Block]: ...
    def transactions(self, start: int = 1) -> Iterator[Transaction]: ...
    def verify(
        self, progress: Union[bool, Callable[[VerifyProgress], object], None] = None
    ) -> VerifySummary: ...
    def get_record(self, record_id: str) -> Optional[StoredRecord]: ...
    def records_of(self, patient: PartyLike) -> List[RecordEntry]: ...
    def consents_of(self, patient: PartyLike) -> List[ConsentState]: ...
    def audit_trail(
        self,
        *,
        patient: Optional[PartyLike] = None,
        record_id: Optional[str] = None,
        fhir: bool = False,
    ) -> List[Dict[str, Any]]: ...
    def search(
        self,
        keyword: Union[str, int, Tuple[str, str], None] = None,
        *,
        code: Optional[Tuple[str, str]] = None,
        resource_type: Optional[str] = None,
        year: Optional[int] = None,
        index_key: Optional[IndexKey] = None,
        patient: Optional[Identity] = None,
        writer: Optional[PartyLike] = None,
        from_height: int = 1,
    ) -> SearchResults: ...
    def research_release(self, request: ResearchRequest, *, releaser: Identity) -> ResearchRelease: ...
    @overload
    def research_dataset(
        self, request: ResearchRequest, *, releaser: Identity, as_arrow: Literal[False] = False
    ) -> Any: ...
    @overload
    def research_dataset(
        self, request: ResearchRequest, *, releaser: Identity, as_arrow: Literal[True]
    ) -> Any: ...
