"""The medchain exception hierarchy.

Every error raised by the native module is mapped (in one place, ``src/errors.rs``) to one
of these classes by name. Catch :class:`MedchainError` to catch them all.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

__all__ = [
    "MedchainError",
    "InvalidSignature",
    "ConsentDenied",
    "TamperedLedger",
    "DecodeError",
    "WrongPassword",
    "NotFhir",
    "InvalidFhir",
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
    """The patient's consent does not permit the request (or the ledger rules refused it).

    ``rule`` names the ledger rule that refused it when one did (``"denied"`` for a consent
    denial, ``"bad_credential"``, ``"not_a_researcher"``, ``"erased"``, ...; the names of
    ``medchain_core::ledger::RuleError::name``), else ``None``. Like the message, it is generic:
    it never says which consent or provision matched.
    """

    def __init__(self, message: str, rule: Optional[str] = None) -> None:
        super().__init__(message)
        self._rule = rule

    @property
    def rule(self) -> Optional[str]:
        """The name of the ledger rule that refused the request, if one did."""
        return self._rule


class TamperedLedger(MedchainError):
    """The stored chain does not verify: blocks, transactions or the head were altered."""


class DecodeError(MedchainError, ValueError):
    """Bytes or text do not decode (a backup, an identity, an id, a ciphertext)."""


class WrongPassword(MedchainError):
    """A password or passphrase does not open a backup or key file (or the file was altered)."""


class NotFhir(MedchainError, ValueError):
    """The input is not a FHIR R4 resource (or not JSON at all)."""


class InvalidFhir(NotFhir):
    """The input is a FHIR R4 resource that fails validation: nothing was sealed.

    ``operation_outcome`` is the FHIR R4 OperationOutcome of the problems (a dict), and
    ``issues`` its issues as ``{"severity", "code", "path", "message"}`` dicts. Paths are FHIRPath
    (``Observation.valueQuantity.value``); no message quotes the resource.
    """

    def __init__(self, message: str, operation_outcome: Optional[str] = None) -> None:
        super().__init__(message)
        self._operation_outcome: Dict[str, Any] = (
            json.loads(operation_outcome)
            if operation_outcome is not None
            else {"resourceType": "OperationOutcome", "issue": []}
        )

    @property
    def operation_outcome(self) -> Dict[str, Any]:
        """The problems as a FHIR R4 OperationOutcome (a dict)."""
        return self._operation_outcome

    @property
    def issues(self) -> List[Dict[str, str]]:
        """The problems, errors first."""
        return [
            {
                "severity": i["severity"],
                "code": i["code"],
                "path": (i.get("expression") or [""])[0],
                "message": i.get("details", {}).get("text", ""),
            }
            for i in self._operation_outcome.get("issue", [])
            if i.get("severity") in ("error", "warning")
        ]


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
