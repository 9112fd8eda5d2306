import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._medchain import (
    Consent,
    Credential,
    Identity,
    LocalNetwork as LocalNetwork,
    NetworkKey,
    PublicIdentity,
    ResearchRequest,
)

__all__ = ["LocalNetwork", "DemoNetwork", "build_demo_network", "research_consent"]

LOINC: str
SNOMED: str
RXNORM: str
DIABETES: str
HYPERTENSION: str
DEMO_RESOURCE_TYPES: Tuple[str, ...]
STATES: List[str]

def research_consent(patient: Identity, topic: Optional[str], *, summary: str = "") -> Consent: ...

@dataclass
class DemoNetwork:
    network: LocalNetwork
    holder: Identity
    researcher: Identity
    institution: PublicIdentity
    credential: Credential
    patients: List[Identity]
    consenting: List[bool]
    record_ids: List[str] = ...
    def request(
        self,
        *,
        study: str = "demo-study",
        topic: Optional[str] = "diabetes",
        resource_types: Sequence[str] = ...,
        codes: Sequence[Tuple[str, str]] = (),
        longitudinal: bool = False,
    ) -> ResearchRequest: ...
    @property
    def location(self) -> str: ...
    @property
    def network_key(self) -> NetworkKey: ...

def patient_resources(i: int, rng: random.Random, records: int) -> List[Dict[str, Any]]: ...
def build_demo_network(
    location: str,
    *,
    patients: int = 30,
    records_per_patient: int = 4,
    consent_every: int = 2,
    topic: str = "diabetes",
    seed: int = 7,
    block_size: int = 500,
) -> DemoNetwork: ...
