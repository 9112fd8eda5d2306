from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union



from ._medchain import Consent, Identity, PublicIdentity, ResearchRequest

__all__ = [
    "Client",
    "Resources",
    "ed25519_jwk",
    "FHIR_JSON",
    "ERROR_SYSTEM",
    "SIGNED_BODY_TYPE",
    "PATIENT_SCOPES",
]

FHIR_JSON: str
ERROR_SYSTEM: str
SIGNED_BODY_TYPE: str
PATIENT_SCOPES: str

_Party = Union[Identity, PublicIdentity, str]

def ed25519_jwk(party: Union[Identity, PublicIdentity], kid: Optional[str] = None) -> Dict[str, str]: ...

class Resources(List[Dict[str, Any]]):
    withheld: Dict[str, int]
    pages: int
    def __init__(
        self, items: Iterable[Dict[str, Any]] = (), withheld: Optional[Dict[str, int]] = None, pages: int = 0
    ) -> None: ...

class Client:
    url: str
    client_id: Optional[str]
    kid: Optional[str]
    scope: str
    clinician: Optional[str]
    purpose: str
    timeout: float
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
    ) -> None: ...
    @classmethod
    def for_patient(cls, url: str, identity: Identity, *, timeout: float = 90.0) -> Client: ...
    def assertion(self) -> str: ...
    def token(self) -> Optional[str]: ...
    def metadata(self) -> Dict[str, Any]: ...
    def health(self) -> Dict[str, Any]: ...
    def status(self) -> Dict[str, Any]: ...
    def metrics(self) -> str: ...
    def chain_id(self) -> str: ...
    def enrol(self, patient: Identity, member: Union[PublicIdentity, str], chain_id: str) -> str: ...
    def create(self, resource: Mapping[str, Any]) -> str: ...
    def transaction(self, bundle: Mapping[str, Any]) -> Dict[str, Any]: ...
    def read(
        self, resource_type: str, id: str, *, clinician: Optional[str] = None, purpose: Optional[str] = None
    ) -> Dict[str, Any]: ...
    def search(
        self,
        resource_type: str,
        *,
        clinician: Optional[str] = None,
        purpose: Optional[str] = None,
        max_pages: int = 20,
        **params: Any,
    ) -> Resources: ...
    def consent(
        self,
        consent: Union[Consent, bytes, Mapping[str, Any]],
        *,
        patient: Optional[Identity] = None,
        chain_id: Optional[str] = None,
    ) -> str: ...
    def read_consent(self, consent_id: str) -> Dict[str, Any]: ...
    def consents(self, patient: _Party) -> List[Dict[str, Any]]: ...
    def revoke(
        self, consent_id: str, revocation: Union[bytes, Identity], *, chain_id: Optional[str] = None
    ) -> Dict[str, Any]: ...
    def audit(self, patient: _Party) -> List[Dict[str, Any]]: ...
    def export_ndjson(
        self, request: Union[ResearchRequest, bytes], *, timeout: float = 120.0, poll: float = 0.25
    ) -> Tuple[Dict[str, List[Dict[str, Any]]], Dict[str, Any]]: ...
    def export(
        self, request: Union[ResearchRequest, bytes], *, timeout: float = 120.0, poll: float = 0.25
    ) -> Any: ...
