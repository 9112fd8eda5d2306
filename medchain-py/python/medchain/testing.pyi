import random
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ._medchain import Consent, Identity, LocalNetwork as LocalNetwork, NetworkKey, PublicIdentity

__all__ = ["LocalNetwork", "DemoNetwork", "build_demo_network", "research_consent"]

LOINC: str
SNOMED: str
RXNORM: str
STATES: List[str]

def research_consent(patient: Identity, topic: Optional[str], *, summary: str = "") -> Consent: ...

@dataclass
class DemoNetwork:
    network: LocalNetwork
    holder: Identity
    researcher: Identity
    institution: PublicIdentity
    patients: List[Identity]
    consenting: List[bool]
    record_ids: List[str] = ...
    @property
    def location(self) -> str: ...
    @property
    def network_key(self) -> NetworkKey: ...

def patient_resources(i: int, rng: random.Random, records: int) -> List[Dict[str, Any]]: ...
def build_demo_network(
    location: str,
    *,
    patients: int = 12,
    records_per_patient: int = 4,
    consent_every: int = 2,
    topic: str = "diabetes",
    seed: int = 7,
    block_size: int = 500,
) -> DemoNetwork: ...
