"""The medchain exception hierarchy.

Every error raised by the native module is mapped (in one place, ``src/errors.rs``) to one
of these classes by name. Catch :class:`MedchainError` to catch them all.
"""

from __future__ import annotations

__all__ = [
    "MedchainError",
    "InvalidSignature",
    "ConsentDenied",
    "TamperedLedger",
    "DecodeError",
    "WrongPassword",
    "NotFhir",
    "StoreError",
    "WrongNetworkKey",
    "NotAReader",
    "InvalidConsent",
    "InvalidArgument",
    "WrongType",
]


class MedchainError(Exception):
    """Base class of every medchain error (also raised for unexpected internal failures)."""


class InvalidSignature(MedchainError):
    """A signature does not verify (a transaction, a consent, a patient signature)."""


class ConsentDenied(MedchainError):
    """The patient's consent does not permit the request (or the ledger rules refused it)."""


class TamperedLedger(MedchainError):
    """The stored chain does not verify: blocks, transactions or the head were altered."""


class DecodeError(MedchainError, ValueError):
    """Bytes or text do not decode (a backup, an identity, an id, a ciphertext)."""


class WrongPassword(MedchainError):
    """A password or passphrase does not open a backup or key file (or the file was altered)."""


class NotFhir(MedchainError, ValueError):
    """The input is not a FHIR R4 resource (or not JSON at all)."""


class StoreError(MedchainError):
    """The storage backend failed (no such file, not a ledger, SQLite/PostgreSQL errors)."""


class WrongNetworkKey(MedchainError):
    """The network key is not the one this ledger was created with."""


class NotAReader(MedchainError):
    """This identity holds no key envelope for the record: it cannot open it."""


class InvalidConsent(MedchainError, ValueError):
    """A consent document is not one medchain can enforce."""


class InvalidArgument(MedchainError, ValueError):
    """An argument has the right type but an unacceptable value."""


class WrongType(MedchainError, TypeError):
    """An argument has the wrong type."""
