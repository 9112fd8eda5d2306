"""``medchain.Client``: a typed client of a ``medchaind`` node's FHIR R4 API.

Standard library HTTP only (``http.client``); pandas only for :meth:`Client.export`. Tokens come
from the node's SMART Backend Services token endpoint: the client signs a JWT client assertion
with its medchain :class:`~medchain.Identity` (``EdDSA``), keeps the bearer token and asks for a
new one shortly before it expires (or once when the node no longer knows it). Every error the
node answers (a FHIR ``OperationOutcome``) is raised as a :class:`~medchain.MedchainError`
subclass carrying the HTTP status, the stable ``urn:medchain:fhir-error`` code and the issues;
see ``docs/fhir-api.md`` ("Python client") and ``docs/python.md``.

Nothing here logs or prints a token, a key or a record; error messages carry the node's fixed
diagnostics, never what was sent.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

from ._medchain import Consent, Identity, IndexKey, PublicIdentity, ResearchRequest
from .errors import (
    Conflict,
    ConsentDenied,
    Forbidden,
    InvalidArgument,
    InvalidConsent,
    InvalidFhir,
    MedchainError,
    NetworkError,
    NotFhir,
    NotFound,
    ServerError,
    Unauthorized,
    WrongType,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas  # type: ignore[import-untyped,import-not-found,unused-ignore]

__all__ = [
    "Client",
    "Resources",
    "ed25519_jwk",
    "FHIR_JSON",
    "ERROR_SYSTEM",
    "SIGNED_BODY_TYPE",
    "PATIENT_SCOPES",
]

#: The media type of every FHIR body.
FHIR_JSON = "application/fhir+json"
#: The code system of the node's stable error codes.
ERROR_SYSTEM = "urn:medchain:fhir-error"
#: The ``contentType`` of a Consent's ``sourceAttachment`` holding the patient-signed body.
SIGNED_BODY_TYPE = "application/vnd.medchain.signed-body"
#: The scopes a patient's own token carries.
PATIENT_SCOPES = "patient/*.rs patient/Consent.c"
_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The largest answer body read (a bulk export file can be large; anything beyond is refused).
_MAX_BODY = 256 * 1024 * 1024

_Party = Union[Identity, PublicIdentity, str]

# Codes of 403 answers that are about the token or the request, not the patient's consent.
_FORBIDDEN_CODES = frozenset(
    {"forbidden", "insufficient_scope", "other_patient", "clinician_not_allowed", "patient_token", "research", "not_operator"}
)
# Codes of 422 answers about the resource itself (its FHIRPath issues, its references).
_INVALID_RESOURCE_CODES = frozenset(
    {"invalid_fhir", "no_patient", "several_patients", "reference_cycle", "unresolved_reference", "type_mismatch"}
)
# Codes of 422 answers about a patient-signed consent or revocation body.
_CONSENT_BODY_CODES = frozenset(
    {"unsigned_consent", "not_a_consent", "not_a_revocation", "id_mismatch", "malformed_body"}
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _key_hex(party: _Party) -> str:
    """The 64 hex digits of a party's signing key (what names a patient: ``Patient/{key}``)."""
    if isinstance(party, Identity):
        return party.public.verify_key_hex
    if isinstance(party, PublicIdentity):
        return party.verify_key_hex
    if isinstance(party, str):
        text = party.strip()
        if text.startswith("Patient/"):
            text = text[len("Patient/") :]
        if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
            return text.lower()
        return PublicIdentity.from_text(text).verify_key_hex
    raise WrongType(f"expected an Identity, a PublicIdentity, a Patient reference or 64 hex digits, not {type(party).__name__}")


def ed25519_jwk(party: Union[Identity, PublicIdentity], kid: Optional[str] = None) -> Dict[str, str]:
    """The public JWK (RFC 8037, ``OKP`` ``Ed25519``) of a party's signing key, for the JWK Set
    a node registers a client with (``[[auth.clients]] jwks``)."""
    public = party.public if isinstance(party, Identity) else party
    if not isinstance(public, PublicIdentity):
        raise WrongType(f"expected an Identity or a PublicIdentity, not {type(party).__name__}")
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(public.verify_key_bytes), "alg": "EdDSA", "use": "sig"}
    if kid is not None:
        jwk["kid"] = kid
    return jwk


class Resources(List[Dict[str, Any]]):
    """The resources a search found (a list of dicts), with ``withheld``: how many matching
    records were not released, by reason (``{"denied": 2}``); ``pages``: pages fetched."""

    def __init__(self, items: Iterable[Dict[str, Any]] = (), withheld: Optional[Dict[str, int]] = None, pages: int = 0) -> None:
        super().__init__(items)
        self.withheld: Dict[str, int] = dict(withheld or {})
        self.pages = pages


class _Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ServerError(f"the node answered {self.status} with a body that is not JSON", status=self.status, code="not_json") from None


class Client:
    """A client of one node's FHIR R4 API (``{url}/fhir``), acting as one registered client.

    ``identity`` signs the SMART Backend Services client assertion (``EdDSA``) of
    ``client_id``, whose JWK Set the node holds (``kid`` names the key); ``scope`` is asked for.
    ``clinician`` and ``purpose`` are the defaults of the ``X-Medchain-Clinician`` and
    ``X-Medchain-Purpose-Of-Use`` headers of clinical reads and searches. Without ``identity``
    (or against a node without ``[auth]``) no token is sent: ``metadata()`` and ``health()``
    still work. ``timeout`` is the socket timeout of each request, in seconds.

    Thread-safe: the token is shared under a lock; each request opens its own connection.
    """

    def __init__(
        self,
        url: str,
        *,
        identity: Optional[Identity] = None,
        client_id: Optional[str] = None,
        kid: Optional[str] = None,
        scope: str = "system/*.cruds",
        clinician: Optional[str] = None,
        purpose: str = "TREAT",
        timeout: float = 90.0,
    ) -> None:
        if not isinstance(url, str):
            raise WrongType(f"url: expected a str, not {type(url).__name__}")
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise InvalidArgument("url: an http:// or https:// URL of the node's API")
        if identity is not None and not isinstance(identity, Identity):
            raise WrongType(f"identity: expected an Identity, not {type(identity).__name__}")
        if timeout <= 0:
            raise InvalidArgument("timeout: a positive number of seconds")
        self._scheme = parsed.scheme
        self._host = parsed.hostname
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        self.url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, self._prefix, "", ""))
        self._identity = identity
        self.client_id = client_id
        self.kid = kid
        self.scope = scope
        self.clinician = clinician
        self.purpose = purpose
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._token_expires = 0.0
        self._token_endpoint: Optional[str] = None
        self._auth_configured: Optional[bool] = None
        self._patient = False

    @classmethod
    def for_patient(cls, url: str, identity: Identity, *, timeout: float = 90.0) -> "Client":
        """A patient's own client (what a wallet does): the client assertion is the patient's
        self-assertion (client id ``patient:{key}``, signed with the patient's key), for the
        patient scopes: enrol, create and revoke their consents, read their consents and audit
        trail, in their own compartment only."""
        if not isinstance(identity, Identity):
            raise WrongType(f"identity: expected an Identity, not {type(identity).__name__}")
        client = cls(url, identity=identity, client_id="patient:" + identity.public.verify_key_hex, scope=PATIENT_SCOPES, timeout=timeout)
        client._patient = True
        return client

    def __repr__(self) -> str:
        return f"Client(url={self.url!r}, client_id={self.client_id!r})"

    # -----------------------------------------------------------------------------------------
    # HTTP

    def _path(self, path: str) -> str:
        return self._prefix + path

    def _same_origin(self, url: str) -> str:
        """The path and query of ``url`` (absolute, or relative to ``{url}/fhir/``), refusing
        another origin: the token is never sent elsewhere."""
        base = f"{self._scheme}://{self._host}:{self._port}{self._prefix}/fhir/"
        full = urllib.parse.urljoin(base, url)
        target = urllib.parse.urlsplit(full)
        port = target.port or (443 if target.scheme == "https" else 80)
        if (target.scheme, target.hostname, port) != (self._scheme, self._host, self._port):
            raise ServerError("the node pointed to another origin; not followed", code="foreign_link")
        return target.path + (f"?{target.query}" if target.query else "")

    def _send(self, method: str, path: str, body: Optional[bytes], headers: Mapping[str, str]) -> _Answer:
        conn: http.client.HTTPConnection
        if self._scheme == "https":
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            response = conn.getresponse()
            data = response.read(_MAX_BODY + 1)
            if len(data) > _MAX_BODY:
                raise ServerError("the node's answer is larger than the client reads", status=response.status, code="too_large")
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            return _Answer(response.status, answer_headers, data)
        except (OSError, http.client.HTTPException) as e:
            kind = "timed out" if isinstance(e, socket.timeout) else "failed"
            raise NetworkError(f"{method} {path.split('?')[0]}: the connection to the node {kind} ({type(e).__name__})", code="network") from None
        finally:
            conn.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: Optional[bytes] = None,
        content_type: str = FHIR_JSON,
        accept: str = FHIR_JSON,
        headers: Optional[Mapping[str, str]] = None,
        auth: bool = True,
        ok: Sequence[int] = (200,),
    ) -> _Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
        for attempt in (0, 1):
            h: Dict[str, str] = {"Accept": accept}
            if data is not None:
                h["Content-Type"] = content_type
            if headers:
                h.update(headers)
            token = self._bearer(force=attempt == 1) if auth else None
            if token is not None:
                h["Authorization"] = f"Bearer {token}"
            answer = self._send(method, path, data, h)
            # A token the node no longer knows (it restarted, the token expired early): once more.
            if answer.status == 401 and token is not None and attempt == 0:
                continue
            if answer.status in ok:
                return answer
            raise _error(answer)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fhir(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, self._path(path), **kwargs).json()

    def _clinical(self, clinician: Optional[str], purpose: Optional[str]) -> Dict[str, str]:
        who = clinician if clinician is not None else self.clinician
        why = purpose if purpose is not None else self.purpose
        h: Dict[str, str] = {}
        if who:
            h["X-Medchain-Clinician"] = who
        if why:
            h["X-Medchain-Purpose-Of-Use"] = why
        return h

    # -----------------------------------------------------------------------------------------
    # Tokens (SMART Backend Services)

    def _bearer(self, *, force: bool = False) -> Optional[str]:
        if self._identity is None:
            return None
        with self._lock:
            now = time.time()
            if not force and self._token is not None and now < self._token_expires:
                return self._token
            if self._auth_configured is None or self._token_endpoint is None:
                self._discover()
            if not self._auth_configured:
                return None
            self._token, lifetime = self._fetch_token()
            # Renewed before it expires: a fifth of its life early, at least 5 s, at most 60 s.
            self._token_expires = time.time() + lifetime - min(60.0, max(5.0, lifetime / 5))
            return self._token

    def _discover(self) -> None:
        answer = self._send("GET", self._path("/fhir/.well-known/smart-configuration"), None, {"Accept": "application/json"})
        if answer.status == 404:
            self._auth_configured = False  # no [auth] on this node: no token to send
            return
        if answer.status != 200:
            raise _error(answer)
        endpoint = answer.json().get("token_endpoint") if isinstance(answer.json(), dict) else None
        if not isinstance(endpoint, str) or not endpoint:
            raise ServerError("the node's SMART configuration names no token endpoint", status=200, code="no_token_endpoint")
        self._token_endpoint = endpoint
        self._auth_configured = True

    def assertion(self) -> str:
        """A fresh signed client assertion (a compact JWS, ``EdDSA``) for this node's token
        endpoint: valid for 60 s, with a random ``jti``. What :meth:`token` presents."""
        if self._identity is None:
            raise InvalidArgument("this client has no identity to sign a client assertion with")
        if not self.client_id:
            raise InvalidArgument("client_id: the id this client is registered with at the node")
        if self._token_endpoint is None:
            with self._lock:
                self._discover()
        if self._token_endpoint is None:
            raise Unauthorized("the node has no token endpoint ([auth] is not configured)", code="not_configured")
        return self._identity.client_assertion(self.client_id, self._token_endpoint, int(time.time()), self.kid or None)

    def _fetch_token(self) -> Tuple[str, float]:
        assert self._token_endpoint is not None
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": _ASSERTION_TYPE,
                "client_assertion": self.assertion(),
            }
        ).encode("ascii")
        # The token endpoint is this node's (its audience may name a public host: the request
        # goes to the configured URL, with the endpoint's path).
        path = urllib.parse.urlsplit(self._token_endpoint).path or "/fhir/auth/token"
        answer = self._send("POST", path, form, {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        if answer.status != 200:
            raise _token_error(answer)
        body = answer.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ServerError("the token endpoint answered no access token", status=answer.status, code="no_token")
        lifetime = body.get("expires_in", 300)
        return token, float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else 300.0

    def token(self) -> Optional[str]:
        """The current bearer token (fetched or renewed if needed); ``None`` without an
        identity or against a node without ``[auth]``. Never log it."""
        return self._bearer()

    # -----------------------------------------------------------------------------------------
    # Node

    def metadata(self) -> Dict[str, Any]:
        """The node's ``CapabilityStatement`` (no token needed)."""
        return self._fhir("GET", "/fhir/metadata", auth=False)  # type: ignore[no-any-return]

    def health(self) -> Dict[str, Any]:
        """``GET /health``: ``{"status": "ok", "height": …}`` (no token needed); a stopped node
        raises :class:`~medchain.ServerError`."""
        return self._request("GET", self._path("/health"), accept="application/json", auth=False).json()  # type: ignore[no-any-return]

    def status(self) -> Dict[str, Any]:
        """The node's operator status (``GET /v1/status``: member, chain, height, peers, …);
        needs an operator client's token."""
        return self._request("GET", self._path("/v1/status"), accept="application/json").json()  # type: ignore[no-any-return]

    def metrics(self) -> str:
        """The node's Prometheus metrics (``GET /metrics``, text); needs an operator client's
        token."""
        return self._request("GET", self._path("/metrics"), accept="text/plain").body.decode("utf-8", "replace")

    def chain_id(self) -> str:
        """The network's chain id (its genesis hash, 64 hex digits), from :meth:`status`."""
        genesis = self.status().get("genesis")
        if not isinstance(genesis, str):
            raise ServerError("the node's status names no genesis", code="no_genesis")
        return genesis

    # -----------------------------------------------------------------------------------------
    # Writing

    def enrol(self, patient: Identity, member: Union[PublicIdentity, str], chain_id: str) -> str:
        """Enrols ``patient`` at this node: their writer key for ``member`` (this node's member,
        its public identity) sealed and signed on the network ``chain_id``
        (``IndexKey.export_writer_key``). Returns the patient's reference, ``Patient/{key}``."""
        sealed = IndexKey.export_writer_key(patient, member, chain_id)
        parameters = {"resourceType": "Parameters", "parameter": [{"name": "enrolment", "valueBase64Binary": base64.b64encode(sealed).decode("ascii")}]}
        answer = self._fhir("POST", "/fhir/Patient/$enrol", body=parameters)
        for p in answer.get("parameter", []) if isinstance(answer, dict) else []:
            if p.get("name") == "patient":
                return str(p.get("valueReference", {}).get("reference", ""))
        return "Patient/" + _key_hex(patient)

    def create(self, resource: Mapping[str, Any]) -> str:
        """Creates one resource (it must name its patient, enrolled here): validated, sealed,
        indexed and committed by the node. Returns its id (the record id, 64 hex digits)."""
        kind = _resource_type(resource)
        answer = self._request("POST", self._path(f"/fhir/{_segment(kind)}"), body=dict(resource), ok=(200, 201, 202))
        return _id_from_location(answer, kind)

    def transaction(self, bundle: Mapping[str, Any]) -> Dict[str, Any]:
        """Posts a ``transaction`` Bundle of one patient (``urn:uuid:`` references resolved by
        the node). Returns the ``transaction-response`` Bundle; each entry's
        ``response.location`` is ``{type}/{id}/_history/1``."""
        if _resource_type(bundle) != "Bundle":
            raise InvalidArgument("transaction: a Bundle of type transaction")
        return self._fhir("POST", "/fhir", body=dict(bundle), ok=(200, 202))  # type: ignore[no-any-return]

    # -----------------------------------------------------------------------------------------
    # Reading

    def read(self, resource_type: str, id: str, *, clinician: Optional[str] = None, purpose: Optional[str] = None) -> Dict[str, Any]:
        """Reads one record as ``clinician`` for ``purpose`` (defaults: the client's): the
        holder releases it under the patient's consent, logged on chain. A denial raises
        :class:`~medchain.ConsentDenied` (``rule`` ``"denied"``)."""
        path = f"/fhir/{_segment(resource_type)}/{_segment(id)}"
        return self._fhir("GET", path, headers=self._clinical(clinician, purpose))  # type: ignore[no-any-return]

    def search(
        self,
        resource_type: str,
        *,
        clinician: Optional[str] = None,
        purpose: Optional[str] = None,
        max_pages: int = 20,
        **params: Any,
    ) -> Resources:
        """Searches ``resource_type`` (``patient=`` an Identity, PublicIdentity or key;
        ``code=`` ``"system|code"``, a ``(system, code)`` pair or a list of them; ``_count``),
        following ``next`` links for at most ``max_pages`` pages. Records not released are
        left out and counted in ``.withheld``."""
        if max_pages < 1:
            raise InvalidArgument("max_pages: at least 1")
        query = _query(params)
        path = self._path(f"/fhir/{_segment(resource_type)}") + (f"?{query}" if query else "")
        headers = self._clinical(clinician, purpose) if resource_type not in ("Consent", "AuditEvent") else {}
        out = Resources()
        while True:
            bundle = self._request("GET", path, headers=headers).json()
            out.pages += 1
            for entry in bundle.get("entry", []) if isinstance(bundle, dict) else []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict):
                    continue
                if entry.get("search", {}).get("mode") == "outcome" or resource.get("resourceType") == "OperationOutcome":
                    for issue in resource.get("issue", []):
                        for coding in issue.get("details", {}).get("coding", []):
                            if coding.get("system") == ERROR_SYSTEM:
                                n = _count_of(issue.get("diagnostics", ""))
                                out.withheld[coding.get("code", "")] = out.withheld.get(coding.get("code", ""), 0) + n
                    continue
                out.append(resource)
            nxt = next((k.get("url") for k in bundle.get("link", []) if isinstance(k, dict) and k.get("relation") == "next"), None)
            if not nxt or out.pages >= max_pages:
                return out
            path = self._same_origin(nxt)

    # -----------------------------------------------------------------------------------------
    # Consents and audit

    def consent(
        self,
        consent: Union[Consent, bytes, Mapping[str, Any]],
        *,
        patient: Optional[Identity] = None,
        chain_id: Optional[str] = None,
    ) -> str:
        """Creates a consent; returns its id (64 hex digits). ``consent`` is the patient-signed
        body (bytes, what a wallet produces), a FHIR Consent carrying it in ``sourceAttachment``,
        or a :class:`~medchain.Consent` signed here by ``patient`` on ``chain_id``."""
        if isinstance(consent, Consent):
            if patient is None or chain_id is None:
                raise InvalidArgument("a Consent object is signed here: give patient= and chain_id=")
            consent = consent.grant_body(patient, chain_id)
        if isinstance(consent, (bytes, bytearray)):
            resource: Dict[str, Any] = {
                "resourceType": "Consent",
                "status": "active",
                "sourceAttachment": {"contentType": SIGNED_BODY_TYPE, "data": base64.b64encode(bytes(consent)).decode("ascii")},
            }
        elif isinstance(consent, Mapping):
            resource = dict(consent)
        else:
            raise WrongType(f"consent: a signed body (bytes), a FHIR Consent or a Consent, not {type(consent).__name__}")
        answer = self._request("POST", self._path("/fhir/Consent"), body=resource, ok=(200, 201, 202))
        return _id_from_location(answer, "Consent")

    def read_consent(self, consent_id: str) -> Dict[str, Any]:
        """A committed consent as a FHIR Consent (``status`` ``inactive`` once revoked)."""
        return self._fhir("GET", f"/fhir/Consent/{_segment(consent_id)}")  # type: ignore[no-any-return]

    def consents(self, patient: _Party) -> List[Dict[str, Any]]:
        """The patient's consents (FHIR Consents)."""
        return list(self.search("Consent", patient=patient))

    def revoke(
        self,
        consent_id: str,
        revocation: Union[bytes, Identity],
        *,
        chain_id: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Revokes consent ``consent_id``: ``revocation`` is the patient-signed revocation body
        (bytes), or the patient's Identity to sign it here on ``chain_id``. Returns the Consent,
        now ``inactive``."""
        if isinstance(revocation, Identity):
            if chain_id is None:
                raise InvalidArgument("a revocation signed here needs chain_id=")
            revocation = Consent.revoke_body(revocation, chain_id, consent_id)
        if not isinstance(revocation, (bytes, bytearray)):
            raise WrongType(f"revocation: the signed body (bytes) or the patient's Identity, not {type(revocation).__name__}")
        parameters = {"resourceType": "Parameters", "parameter": [{"name": "revocation", "valueBase64Binary": base64.b64encode(bytes(revocation)).decode("ascii")}]}
        return self._fhir("POST", f"/fhir/Consent/{_segment(consent_id)}/$revoke", body=parameters, ok=(200, 202))  # type: ignore[no-any-return]

    def audit(self, patient: _Party) -> List[Dict[str, Any]]:
        """The patient's audit trail from the chain: FHIR AuditEvents (IHE BALP-shaped), newest
        first."""
        return list(self.search("AuditEvent", patient=patient, max_pages=1000))

    # -----------------------------------------------------------------------------------------
    # Research export (FHIR Bulk Data)

    def export_ndjson(
        self,
        request: Union[ResearchRequest, bytes],
        *,
        timeout: float = 120.0,
        poll: float = 0.25,
    ) -> Tuple[Dict[str, List[Dict[str, Any]]], Dict[str, Any]]:
        """Runs a research export: kick-off with the researcher's signed request, polls the
        status URL (at most ``timeout`` seconds) until the release log commits, downloads every
        NDJSON file and deletes the job. Returns the rows by resource type and the manifest."""
        data = request.to_bytes() if isinstance(request, ResearchRequest) else request
        if not isinstance(data, (bytes, bytearray)):
            raise WrongType(f"request: a ResearchRequest or its bytes, not {type(request).__name__}")
        parameters = {"resourceType": "Parameters", "parameter": [{"name": "researchRequest", "valueBase64Binary": base64.b64encode(bytes(data)).decode("ascii")}]}
        kickoff = self._request("POST", self._path("/fhir/$export"), body=parameters, headers={"Prefer": "respond-async"}, ok=(202,))
        location = kickoff.headers.get("content-location")
        if not location:
            raise ServerError("the export kick-off answered no Content-Location", status=202, code="no_location")
        status_path = self._same_origin(location)
        end = time.monotonic() + timeout
        while True:
            answer = self._request("GET", status_path, ok=(200, 202))
            if answer.status == 200:
                manifest = answer.json()
                break
            if time.monotonic() >= end:
                raise ServerError(f"the export did not complete within {timeout:g} s", status=202, code="export_timeout")
            retry = answer.headers.get("retry-after", "")
            wait = min(float(retry), poll * 4) if retry.isdigit() else poll
            time.sleep(max(0.05, min(wait, end - time.monotonic())))
        rows: Dict[str, List[Dict[str, Any]]] = {}
        for output in manifest.get("output", []) if isinstance(manifest, dict) else []:
            url, kind = output.get("url"), output.get("type")
            if not isinstance(url, str) or not isinstance(kind, str):
                continue
            text = self._request("GET", self._same_origin(url), accept="application/fhir+ndjson").body.decode("utf-8")
            for line in text.splitlines():
                if line.strip():
                    try:
                        rows.setdefault(kind, []).append(json.loads(line))
                    except ValueError:
                        raise ServerError("an export file has a line that is not JSON", code="bad_ndjson") from None
        try:
            self._request("DELETE", status_path, ok=(200, 202, 204, 404))
        except MedchainError:
            pass  # the files expire on the node anyway
        return rows, manifest

    def export(
        self,
        request: Union[ResearchRequest, bytes],
        *,
        timeout: float = 120.0,
        poll: float = 0.25,
    ) -> "pandas.DataFrame":
        """:meth:`export_ndjson` as one pandas DataFrame: a row per exported resource, its
        fields flattened (``pandas.json_normalize``: ``code.coding``, ``valueQuantity.value``,
        ...), ``resourceType`` first. ``.attrs["manifest"]`` is the export manifest and
        ``.attrs["release_log"]`` the id of the release's log transaction on chain. Needs
        pandas (``pip install 'medchain[data]'``)."""
        try:
            import pandas as pd  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            raise ImportError("medchain.Client.export needs pandas: pip install 'medchain[data]' (or use export_ndjson)") from None
        rows, manifest = self.export_ndjson(request, timeout=timeout, poll=poll)
        flat = [row for kind in sorted(rows) for row in rows[kind]]
        frame = pd.json_normalize(flat) if flat else pd.DataFrame({"resourceType": pd.Series([], dtype="object")})
        if "resourceType" in frame.columns:
            frame = frame[["resourceType"] + [c for c in frame.columns if c != "resourceType"]]
        frame.attrs["manifest"] = manifest
        extension = manifest.get("extension", {}) if isinstance(manifest, dict) else {}
        frame.attrs["release_log"] = extension.get("urn:medchain:release-log") if isinstance(extension, dict) else None
        return frame


# ---------------------------------------------------------------------------------------------
# Helpers


def _resource_type(resource: Any) -> str:
    if not isinstance(resource, Mapping):
        raise WrongType(f"expected a FHIR resource (a dict), not {type(resource).__name__}")
    kind = resource.get("resourceType")
    if not isinstance(kind, str) or not kind.isalpha():
        raise NotFhir("not a FHIR resource: no resourceType")
    return kind


def _segment(text: str) -> str:
    if not isinstance(text, str) or not text:
        raise InvalidArgument("a resource type or id: a non-empty str")
    return urllib.parse.quote(text, safe="")


def _query(params: Mapping[str, Any]) -> str:
    pairs: List[Tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if name in ("patient", "subject"):
            value = _key_hex(value)
        elif name == "code":
            items = value if isinstance(value, list) else [value]
            value = ",".join(f"{c[0]}|{c[1]}" if isinstance(c, tuple) else str(c) for c in items)
        pairs.append((name, str(value)))
    return urllib.parse.urlencode(pairs, safe="")


def _count_of(diagnostics: str) -> int:
    head = diagnostics.split(" ", 1)[0]
    return int(head) if head.isdigit() else 1


def _id_from_location(answer: _Answer, kind: str) -> str:
    location = answer.headers.get("location", "")
    parts = [p for p in location.split("/") if p]
    if kind in parts:
        i = parts.index(kind)
        if i + 1 < len(parts):
            return parts[i + 1]
    body = answer.json()
    if isinstance(body, dict) and isinstance(body.get("id"), str):
        return str(body["id"])
    raise ServerError("the node answered no Location for the created resource", status=answer.status, code="no_location")


def _outcome_code(outcome: Mapping[str, Any]) -> Tuple[Optional[str], str]:
    """The stable code (system ``urn:medchain:fhir-error``, else the first issue's type) and
    the first issue's diagnostics."""
    issues = outcome.get("issue") if isinstance(outcome.get("issue"), list) else []
    first = issues[0] if issues and isinstance(issues[0], dict) else {}
    code: Optional[str] = None
    for coding in (first.get("details") or {}).get("coding", []) if isinstance(first.get("details"), dict) else []:
        if isinstance(coding, dict) and coding.get("system") == ERROR_SYSTEM:
            code = str(coding.get("code"))
    if code is None and isinstance(first.get("code"), str):
        code = first["code"]
    diagnostics = first.get("diagnostics") or (first.get("details") or {}).get("text") or ""
    return code, str(diagnostics)


def _error(answer: _Answer) -> MedchainError:
    """The exception for a node's error answer."""
    status = answer.status
    outcome: Optional[Dict[str, Any]] = None
    code: Optional[str] = None
    diagnostics = ""
    try:
        body = json.loads(answer.body.decode("utf-8")) if answer.body else None
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        outcome = body
        code, diagnostics = _outcome_code(body)
    elif isinstance(body, dict) and isinstance(body.get("error"), dict):
        # The operator API's {"error": {"code", "message", "rule"}}.
        code = str(body["error"].get("code") or "") or None
        diagnostics = str(body["error"].get("message") or "")
        if body["error"].get("rule"):
            code = str(body["error"]["rule"])
    message = f"{status} {code or 'error'}" + (f": {diagnostics}" if diagnostics else "")
    kwargs: Dict[str, Any] = {"status": status, "code": code, "operation_outcome": outcome}
    cls: Type[MedchainError]
    if status == 401:
        cls = Unauthorized
    elif status == 403:
        if code in _FORBIDDEN_CODES or code is None:
            cls = Forbidden
        else:
            return ConsentDenied(message, code, **kwargs)
    elif status in (404, 410):
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status in (400, 413, 415, 422):
        if code == "invalid_fhir" or (code in _INVALID_RESOURCE_CODES and status == 422):
            return InvalidFhir(message, outcome, status=status, code=code)
        if code in _CONSENT_BODY_CODES:
            cls = InvalidConsent
        elif code in ("bad_json",):
            cls = NotFhir
        elif code == "too_few_patients":
            return ConsentDenied(message, code, **kwargs)
        else:
            cls = InvalidArgument
    elif status >= 500:
        cls = ServerError
    else:
        cls = ServerError if outcome is None else InvalidArgument
    return cls(message, **kwargs)


def _token_error(answer: _Answer) -> MedchainError:
    """The exception for a refused token request (RFC 6749 §5.2: ``{"error", "error_description"}``)."""
    try:
        body = json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = {}
    code = str(body.get("error") or "") if isinstance(body, dict) else ""
    description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
    message = f"token request refused: {answer.status} {code or 'error'}" + (f": {description}" if description else "")
    if answer.status >= 500:
        return ServerError(message, status=answer.status, code=code or None)
    if code == "invalid_scope":
        return Forbidden(message, status=answer.status, code=code)
    return Unauthorized(message, status=answer.status, code=code or None)
