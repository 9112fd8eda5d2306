"""The medchain exception hierarchy.

Every error raised by the native module is mapped (in one place, ``src/errors.rs``) to one
of these classes by name; every error answer of a node's FHIR API (an ``OperationOutcome``) is
mapped to one of them by :class:`medchain.Client` (``client.py``). Catch :class:`MedchainError`
to catch them all.

An error from a node carries the HTTP ``status``, the stable ``code`` (system
``urn:medchain:fhir-error``) and the ``operation_outcome`` it answered; a local error has
``status`` and ``code`` ``None``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Union

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
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "ServerError",
    "NetworkError",
]


class MedchainError(Exception):
    """Base class of every medchain error (also raised for unexpected internal failures).

    ``status`` (the HTTP status), ``code`` (the stable error code) and ``operation_outcome``
    (the FHIR OperationOutcome, a dict) are set when a node answered the error; ``issues`` lists
    the outcome's error and warning issues.
    """

    def __init__(
        self,
        message: str = "",
        *args: Any,
        status: Optional[int] = None,
        code: Optional[str] = None,
        operation_outcome: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message, *args)
        self._status = status
        self._code = code
        self._outcome: Optional[Dict[str, Any]] = operation_outcome

    @property
    def status(self) -> Optional[int]:
        """The HTTP status of the node's answer (``None`` for a local error or no answer)."""
        return self._status

    @property
    def code(self) -> Optional[str]:
        """The stable error code the node gave (``denied``, ``not_found``, ...), else ``None``."""
        return self._code

    @property
    def operation_outcome(self) -> Optional[Dict[str, Any]]:
        """The FHIR R4 OperationOutcome of the error (a dict), when there is one."""
        return self._outcome

    @property
    def issues(self) -> List[Dict[str, str]]:
        """The outcome's problems as ``{"severity", "code", "path", "message"}`` dicts, errors
        and warnings only (paths are FHIRPath; empty when there is no outcome)."""
        outcome = self.operation_outcome or {}
        issues = outcome.get("issue", []) if isinstance(outcome, dict) else []
        out: List[Dict[str, str]] = []
        for i in issues if isinstance(issues, list) else []:
            if not isinstance(i, dict) or i.get("severity") not in ("error", "warning"):
                continue
            expression = i.get("expression") or [""]
            details = i.get("details") if isinstance(i.get("details"), dict) else {}
            out.append(
                {
                    "severity": str(i.get("severity", "")),
                    "code": str(i.get("code", "")),
                    "path": str(expression[0]) if isinstance(expression, list) and expression else "",
                    "message": str((details or {}).get("text") or i.get("diagnostics") or ""),
                }
            )
        return out


class InvalidSignature(MedchainError):
    """A signature does not verify (a transaction, a consent, a patient signature)."""


class ConsentDenied(MedchainError):
    """The patient's consent does not permit the request (or the ledger rules refused it).

    ``rule`` names the ledger rule that refused it when one did (``"denied"`` for a consent
    denial, ``"bad_credential"``, ``"not_a_researcher"``, ``"erased"``, ...; the names of
    ``medchain_core::ledger::RuleError::name``), else ``None``. Like the message, it is generic:
    it never says which consent or provision matched.
    """

    def __init__(self, message: str, rule: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
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
    """The input is a FHIR R4 resource that fails validation: nothing was sealed or written.

    ``operation_outcome`` is the FHIR R4 OperationOutcome of the problems (a dict), and
    ``issues`` its issues as ``{"severity", "code", "path", "message"}`` dicts. Paths are FHIRPath
    (``Observation.valueQuantity.value``); no message quotes the resource.
    """

    def __init__(
        self,
        message: str,
        operation_outcome: Optional[Union[str, Dict[str, Any]]] = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(operation_outcome, str):
            outcome: Dict[str, Any] = json.loads(operation_outcome)
        elif isinstance(operation_outcome, dict):
            outcome = operation_outcome
        else:
            outcome = {"resourceType": "OperationOutcome", "issue": []}
        super().__init__(message, operation_outcome=outcome, **kwargs)

    @property
    def operation_outcome(self) -> Dict[str, Any]:
        """The problems as a FHIR R4 OperationOutcome (a dict)."""
        return self._outcome or {"resourceType": "OperationOutcome", "issue": []}


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


class Unauthorized(MedchainError):
    """A node refused who is asking (``401``): no token, an unknown or expired token, a client
    assertion the token endpoint refused."""


class Forbidden(MedchainError):
    """A node refused what the token may do (``403``): its scopes, another patient's
    compartment, a clinician the client may not act for, a patient token on a clinical read.
    Consent refusals are :class:`ConsentDenied`."""


class NotFound(MedchainError, LookupError):
    """A node has no such resource, consent or export job (``404``), or the record was erased
    (``410``, code ``erased``)."""


class Conflict(MedchainError):
    """A node refused a write that conflicts with the chain (``409``: a duplicate, ...)."""


class ServerError(MedchainError):
    """A node failed (``5xx``: internal error, the record's holder unavailable, a release not
    committed in time) or answered something that is not FHIR."""


class NetworkError(ServerError):
    """No answer from the node: the connection failed or timed out."""
