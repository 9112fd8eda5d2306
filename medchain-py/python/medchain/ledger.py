"""The ledger: open, iterate, verify, search, audit, and release research datasets."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

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
from .errors import InvalidArgument, StoreError, WrongType

if TYPE_CHECKING:  # pragma: no cover
    import pandas  # type: ignore[import-untyped,import-not-found,unused-ignore]
    import pyarrow  # type: ignore[import-untyped,import-not-found,unused-ignore]

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

PathLike = Union[str, "os.PathLike[str]"]
PartyLike = Union[Identity, PublicIdentity, str]

#: The research dataset's columns and their pandas dtypes.
DATASET_COLUMNS: Dict[str, str] = {
    "pseudonym": "string",
    "resource_type": "category",
    "code_system": "string",
    "code": "string",
    "value": "float64",
    "unit": "string",
    "value_text": "string",
    "effective_year": "Int32",
    "birth_year": "Int32",
    "gender": "category",
    "state": "string",
}


@dataclass(frozen=True)
class Transaction:
    """One committed transaction. ``body`` holds the fields every node may read (opened with
    the network key): record id, patient, resource type, consent id, purpose, ...; never
    record contents."""

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
    """One committed block."""

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
    """What the ledger knows of a record (not its contents)."""

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
    """A record's entry and, unless erased, its sealed form."""

    entry: RecordEntry
    sealed: Optional[SealedRecord]


@dataclass(frozen=True)
class SearchHit:
    """A secure-index search hit."""

    height: int
    record_id: str


@dataclass(frozen=True)
class SearchStats:
    """What a search did: blocks holding indexed records, how many of them their secure-index
    filters ruled out (one PRF per query term each), how many had no filter and were searched
    record by record, and the HMAC-SHA256 evaluations in all."""

    indexed_blocks: int
    blocks_skipped: int
    exhaustive_blocks: int
    prf_evaluations: int


class SearchResults(List[SearchHit]):
    """The hits of a search, in block order (a list of :class:`SearchHit`), with what the
    search did as :attr:`stats`."""

    stats: SearchStats

    def __init__(self, hits: List[SearchHit], stats: SearchStats) -> None:
        super().__init__(hits)
        self.stats = stats


@dataclass(frozen=True)
class ResearchRelease:
    """A research release (:meth:`Ledger.research_release`): de-identified rows for the
    researcher and the log for the chain.

    ``log`` is the ``ResearchReleased`` transaction body (canonical bytes) the releasing
    institution's node submits; hand the rows over once it is committed. ``patients`` and
    ``rows`` count what was released (nothing about who was left out); ``commitment`` binds
    the released records (the log carries it); ``released_at_ms`` is the time the library
    chose (consents judged and ages capped at it). Pseudonyms are this release's own unless
    the study is ``longitudinal``.
    """

    study: str
    purpose: str
    topic: Optional[str]
    longitudinal: bool
    patients: int
    rows: int
    released_at_ms: int
    commitment: str
    log: bytes = field(repr=False)
    columns: Dict[str, List[Any]] = field(repr=False)

    @property
    def summary(self) -> Dict[str, Any]:
        """What the release says of itself (``DataFrame.attrs["medchain"]``)."""
        return {
            "study": self.study,
            "purpose": self.purpose,
            "topic": self.topic,
            "longitudinal": self.longitudinal,
            "patients": self.patients,
            "rows": self.rows,
            "released_at_ms": self.released_at_ms,
            "commitment": self.commitment,
        }

    def to_pandas(self) -> "pandas.DataFrame":
        """The rows as a typed pandas DataFrame (:data:`DATASET_COLUMNS`)."""
        return _table(self.columns, self.summary, False)

    def to_arrow(self) -> "pyarrow.Table":
        """The rows as a pyarrow Table (:data:`DATASET_COLUMNS`)."""
        return _table(self.columns, self.summary, True)


@dataclass(frozen=True)
class VerifyProgress:
    """Progress of a verification (cumulative)."""

    blocks: int
    transactions: int
    height: int


@dataclass(frozen=True)
class VerifySummary:
    """The result of a successful verification."""

    blocks: int
    transactions: int
    head_proven: bool
    seconds: float
    native_seconds: float


def _block(d: Dict[str, Any]) -> Block:
    h = d["height"]
    txs = tuple(Transaction(height=h, **t) for t in d["transactions"])
    return Block(
        height=h,
        round=d["round"],
        hash=d["hash"],
        prev=d["prev"],
        timestamp_ms=d["timestamp_ms"],
        miner=d["miner"],
        contributors=d["contributors"],
        transactions=txs,
    )


def _tqdm_callback() -> Optional[Tuple[Callable[[int, int, int], None], Callable[[], None]]]:
    try:
        from tqdm import tqdm  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return None
    bar = tqdm(desc="verifying", unit="block")
    done = [0]

    def update(blocks: int, transactions: int, height: int) -> None:
        bar.update(blocks - done[0])
        done[0] = blocks
        bar.set_postfix(transactions=transactions, refresh=False)

    return update, bar.close


class Ledger:
    """A medchain ledger (SQLite file or PostgreSQL URL), read with the network key.

    Open it with the operator's key file and passphrase, or with a :class:`NetworkKey`::

        ledger = Ledger.open("clinic.sqlite", "clinic.sqlite.key", "clinic-demo")
        ledger = Ledger.open("clinic.sqlite", network_key=key)

    Long operations (verification, search, research releases) release the GIL.
    """

    __slots__ = ("_native",)

    def __init__(self, native: _medchain.NativeLedger) -> None:
        if not isinstance(native, _medchain.NativeLedger):
            raise WrongType("use Ledger.open(...) to open a ledger")
        self._native: Optional[_medchain.NativeLedger] = native

    @classmethod
    def open(
        cls,
        location: PathLike,
        key_file: Optional[PathLike] = None,
        passphrase: Union[str, bytes, None] = None,
        *,
        network_key: Optional[NetworkKey] = None,
    ) -> "Ledger":
        """Opens the ledger at ``location`` (a path or a ``postgres://`` URL).

        Give either ``key_file`` (the passphrase-protected network key; ``passphrase``
        defaults to the ``MEDCHAIN_PASSPHRASE`` environment variable) or ``network_key``.
        Raises ``WrongPassword``, ``WrongNetworkKey``, ``StoreError`` or ``TamperedLedger``
        (the head does not verify).
        """
        if not isinstance(location, (str, os.PathLike)):
            raise WrongType(f"location must be a path or a URL, not {type(location).__name__}")
        if (key_file is None) == (network_key is None):
            raise InvalidArgument("give exactly one of key_file and network_key")
        if key_file is not None:
            if not isinstance(key_file, (str, os.PathLike)):
                raise WrongType(f"key_file must be a path, not {type(key_file).__name__}")
            if passphrase is None:
                passphrase = os.environ.get("MEDCHAIN_PASSPHRASE")
                if passphrase is None:
                    raise InvalidArgument("no passphrase given and MEDCHAIN_PASSPHRASE is not set")
            try:
                data = Path(key_file).read_bytes()
            except OSError as e:
                raise StoreError(f"cannot read the key file {key_file}: {e.strerror}") from None
            network_key = NetworkKey.import_protected(data, passphrase)
        assert network_key is not None
        return cls(_medchain.NativeLedger.open(os.fspath(location), network_key))

    @property
    def _n(self) -> _medchain.NativeLedger:
        if self._native is None:
            raise StoreError("the ledger is closed")
        return self._native

    def close(self) -> None:
        """Closes the ledger (the connection is released)."""
        self._native = None

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._native is None:
            return "Ledger(closed)"
        return f"Ledger({self._native.location!r}, height={self._native.height})"

    # -- chain ---------------------------------------------------------------------------

    @property
    def height(self) -> int:
        """The committed height."""
        return self._n.height

    @property
    def chain_name(self) -> str:
        """The chain's name (from genesis)."""
        return self._n.chain_name

    @property
    def chain_id(self) -> str:
        """The chain id (hex): the genesis hash, which every signature on this network binds."""
        return self._n.chain_id

    def members(self) -> List[Tuple[str, PublicIdentity, bool]]:
        """The network's member institutions: (name, public identity, is validator)."""
        return [(n, PublicIdentity.from_text(t), v) for n, t, v in self._n.members()]

    def __len__(self) -> int:
        return self.height

    def block(self, height: int) -> Block:
        """The block at ``height`` (1-based)."""
        return _block(self._n.block(height))

    def blocks(self, start: int = 1) -> Iterator[Block]:
        """The committed blocks from ``start`` to the head, read one at a time."""
        if isinstance(start, bool) or not isinstance(start, int):
            raise WrongType(f"start must be an int, not {type(start).__name__}")
        end = self.height
        for h in range(max(start, 1), end + 1):
            yield self.block(h)

    def __iter__(self) -> Iterator[Block]:
        return self.blocks()

    def transactions(self, start: int = 1) -> Iterator[Transaction]:
        """Every committed transaction from block ``start`` on."""
        for b in self.blocks(start):
            yield from b.transactions

    def verify(
        self,
        progress: Union[bool, Callable[[VerifyProgress], object], None] = None,
    ) -> VerifySummary:
        """Verifies the whole chain from genesis (structure, signatures, certificates,
        election, Merkle roots, the head's commit proof) with the GIL released.

        ``progress``: ``None`` shows a tqdm bar when tqdm is installed and stderr is a
        terminal; ``True`` shows it whenever tqdm is installed; ``False`` shows nothing; a
        callable receives :class:`VerifyProgress` about ten times a second. Raises
        ``TamperedLedger`` naming the first failing height.
        """
        import time

        close: Optional[Callable[[], None]] = None
        cb: Optional[Callable[[int, int, int], None]] = None
        if callable(progress):
            user = progress

            def cb(blocks: int, transactions: int, height: int) -> None:
                user(VerifyProgress(blocks, transactions, height))

        elif progress is True or (progress is None and sys.stderr is not None and sys.stderr.isatty()):
            made = _tqdm_callback()
            if made is not None:
                cb, close = made
        elif progress is not None and progress is not False:
            raise WrongType("progress must be a bool, a callable or None")
        start = time.perf_counter()
        try:
            blocks, txs, proven, native = self._n.verify(cb)
        finally:
            if close is not None:
                close()
        return VerifySummary(blocks, txs, proven, time.perf_counter() - start, native)

    # -- records, consents, audit --------------------------------------------------------

    def get_record(self, record_id: str) -> Optional[StoredRecord]:
        """A record by id (hex): its entry and sealed form, or None if unknown."""
        if not isinstance(record_id, str):
            raise WrongType(f"record_id must be a str, not {type(record_id).__name__}")
        got = self._n.get_record(record_id)
        if got is None:
            return None
        entry, sealed = got
        return StoredRecord(RecordEntry(**entry), sealed)

    def records_of(self, patient: PartyLike) -> List[RecordEntry]:
        """A patient's record entries."""
        return [RecordEntry(**e) for e in self._n.records_of(patient)]

    def consents_of(self, patient: PartyLike) -> List[ConsentState]:
        """Every consent the patient granted, revoked ones included."""
        return self._n.consents_of(patient)

    def audit_trail(
        self,
        *,
        patient: Optional[PartyLike] = None,
        record_id: Optional[str] = None,
        fhir: bool = False,
    ) -> List[Dict[str, Any]]:
        """The audit trail (oldest first) of a patient's records or of one record, as dicts
        or (``fhir=True``) as FHIR R4 AuditEvent resources."""
        if (patient is None) == (record_id is None):
            raise InvalidArgument("give exactly one of patient and record_id")
        if patient is not None:
            return self._n.audit_events_of_patient(patient) if fhir else self._n.audit_of_patient(patient)
        assert record_id is not None
        if not isinstance(record_id, str):
            raise WrongType(f"record_id must be a str, not {type(record_id).__name__}")
        return self._n.audit_events_of_record(record_id) if fhir else self._n.audit_of_record(record_id)

    # -- search --------------------------------------------------------------------------

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
    ) -> SearchResults:
        """Encrypted keyword search (GIL released); the hits, with ``.stats`` (a
        :class:`SearchStats`). Keywords: ``code=(system, code)`` (or
        ``keyword="system|code"`` / a tuple), ``resource_type=`` (or a bare name) and
        ``year=`` (or an int); several keywords must all match. The key: ``index_key`` (a
        writer key) or ``patient`` (the patient's identity) with ``writer`` (the institution
        that indexed the records)."""
        if isinstance(keyword, tuple):
            code = keyword
        elif isinstance(keyword, bool):
            raise WrongType("keyword must be a str, an int or a (system, code) tuple")
        elif isinstance(keyword, int):
            year = keyword
        elif isinstance(keyword, str):
            if "|" in keyword:
                system, _, c = keyword.partition("|")
                code = (system, c)
            else:
                resource_type = keyword
        elif keyword is not None:
            raise WrongType("keyword must be a str, an int or a (system, code) tuple")
        if index_key is None:
            if patient is None or writer is None:
                raise InvalidArgument("give index_key, or patient and writer")
            index_key = IndexKey.for_patient(patient).for_writer(writer)
        elif patient is not None:
            raise InvalidArgument("give index_key or patient, not both")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 0 <= year < 65536):
            raise InvalidArgument("year must be an int between 0 and 65535")
        if code is not None and not (
            isinstance(code, tuple) and len(code) == 2 and all(isinstance(x, str) for x in code)
        ):
            raise WrongType("code must be a (system, code) tuple of str")
        hits, stats = self._n.search(
            index_key, code=code, resource_type=resource_type, year=year, from_height=from_height
        )
        return SearchResults([SearchHit(h, r) for h, r in hits], SearchStats(*stats))

    # -- research ------------------------------------------------------------------------

    def research_release(self, request: ResearchRequest, *, releaser: Identity) -> ResearchRelease:
        """A de-identified research release, by the one research policy of the core
        (``medchain_store::Ledger::research_release``); the GIL is released.

        ``releaser`` is the member institution that added the records (its ``Identity`` opens
        them; it never leaves the process); ``request`` the researcher's signed
        :class:`ResearchRequest` (study, credential). The researcher's credential must be
        issued by a member institution to the researcher who signed, for this network, and not
        expired; only records the releaser added and the study needs, whose patients' consents
        permit this research (judged with the records' codes and dates), are de-identified;
        cells (resource type and code) of fewer than 11 patients are suppressed; rows come in
        an order only the release's private key determines. The release time and key are the
        library's choice, not the caller's.

        Raises ``ConsentDenied`` (credential, releaser, too few patients), ``InvalidSignature``
        (a request not signed by its researcher for this network), ``WrongType``.
        """
        columns, summary, log = self._n.research_release(request, releaser)
        return ResearchRelease(log=log, columns=columns, **summary)

    def research_dataset(
        self, request: ResearchRequest, *, releaser: Identity, as_arrow: bool = False
    ) -> Union["pandas.DataFrame", "pyarrow.Table"]:
        """:meth:`research_release` as a pandas DataFrame (``as_arrow=True``: a pyarrow
        Table) with the columns of :data:`DATASET_COLUMNS`; ``.attrs["medchain"]`` (pandas) or
        the schema metadata (arrow) holds :attr:`ResearchRelease.summary`. The release's log
        is not kept: use :meth:`research_release` to submit it."""
        release = self.research_release(request, releaser=releaser)
        return release.to_arrow() if as_arrow else release.to_pandas()


def _table(columns: Dict[str, List[Any]], summary: Dict[str, Any], as_arrow: bool) -> Any:
    if as_arrow:
        import json

        import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

        types = {
            "float64": pa.float64(),
            "Int32": pa.int32(),
        }
        fields = []
        for name, dtype in DATASET_COLUMNS.items():
            if dtype == "category":
                fields.append(pa.field(name, pa.dictionary(pa.int32(), pa.string())))
            else:
                fields.append(pa.field(name, types.get(dtype, pa.string())))
        schema = pa.schema(fields, metadata={"medchain": json.dumps(summary)})
        arrays = []
        for f in fields:
            if pa.types.is_dictionary(f.type):
                arrays.append(pa.array(columns[f.name], pa.string()).dictionary_encode())
            else:
                arrays.append(pa.array(columns[f.name], f.type))
        return pa.Table.from_arrays(arrays, schema=schema)
    import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]

    data = {name: pd.array(columns[name], dtype=dtype) for name, dtype in DATASET_COLUMNS.items()}
    frame = pd.DataFrame(data)
    frame.attrs["medchain"] = dict(summary)
    return frame
