"""A local test network that writes a real ledger, and a synthetic population.

For tests, demos, notebooks and benchmarks: every node is a real consensus node
(``medchain::Host``) running in this process, with keys from a seed, on an in-memory wire. It
is not a production deployment; real networks run the Rust node.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._medchain import Consent, Credential, Identity, IndexKey, LocalNetwork, NetworkKey, PublicIdentity, ResearchRequest

__all__ = ["LocalNetwork", "DemoNetwork", "build_demo_network", "research_consent"]

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
#: Type 2 diabetes (most demo patients) and essential hypertension (every tenth, from the
#: fifth: a small cell that releases suppress).
DIABETES = "44054006"
HYPERTENSION = "38341003"
#: What the demo's study asks for.
DEMO_RESOURCE_TYPES = ("Patient", "Observation", "Condition", "MedicationRequest")
STATES = ["CA", "NY", "TX", "WA", "MA", "IL", "OH"]


def research_consent(patient: Identity, topic: Optional[str], *, summary: str = "") -> Consent:
    """A consent (built from FHIR R4 Consent JSON) letting any researcher use the patient's
    data for ``topic`` research (any research if ``topic`` is None)."""
    purpose: Dict[str, Any] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}
    if topic is not None:
        purpose["extension"] = [{"url": "urn:medchain:research-topic", "valueString": topic}]
    resource: Dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "extension": [{"url": "urn:medchain:summary", "valueString": summary or f"my data may be used for {topic or 'any'} research"}],
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": "urn:medchain:identity", "value": patient.public_text}},
        "dateTime": "2026-01-01T00:00:00Z",
        "provision": {
            "type": "deny",
            "provision": [
                {
                    "type": "permit",
                    "actor": [
                        {
                            "role": {"coding": [{"system": "urn:medchain:role", "code": "researcher"}]},
                            "reference": {"identifier": {"system": "urn:medchain:institution", "value": "*"}},
                        }
                    ],
                    "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "use"}]}],
                    "purpose": [purpose],
                }
            ],
        },
    }
    return Consent.from_fhir(resource)


@dataclass
class DemoNetwork:
    """A synthetic population on a local network (see :func:`build_demo_network`).

    ``holder`` (node 0) added every record and releases research data; ``researcher`` holds
    ``credential``, a researcher credential issued by node 4 (``institution``)."""

    network: LocalNetwork
    holder: Identity
    researcher: Identity
    institution: PublicIdentity
    credential: Credential
    patients: List[Identity]
    consenting: List[bool]
    record_ids: List[str] = field(default_factory=list)

    def request(
        self,
        *,
        study: str = "demo-study",
        topic: Optional[str] = "diabetes",
        resource_types: Sequence[str] = DEMO_RESOURCE_TYPES,
        codes: Sequence[Tuple[str, str]] = (),
        longitudinal: bool = False,
    ) -> ResearchRequest:
        """The researcher's signed request for a study of the demo's data."""
        return ResearchRequest.sign(
            self.researcher,
            self.credential,
            chain_id=self.network.chain_id,
            study=study,
            topic=topic,
            resource_types=list(resource_types),
            codes=list(codes),
            longitudinal=longitudinal,
        )

    @property
    def location(self) -> str:
        """The ledger's location."""
        return self.network.location

    @property
    def network_key(self) -> NetworkKey:
        """The network key (to open the ledger)."""
        return self.network.network_key


def patient_resources(i: int, rng: random.Random, records: int) -> List[Dict[str, Any]]:
    """A synthetic patient's resources: the Patient, then HbA1c observations, a condition and
    a medication request in turn (``records`` resources after the Patient)."""
    pid = f"Patient/p{i}"
    out: List[Dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": f"p{i}",
            "name": [{"family": f"Family{i}", "given": ["Given"]}],
            "gender": rng.choice(["female", "male"]),
            "birthDate": f"{rng.randint(1935, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "address": [{"line": [f"{i} Main St"], "city": "Springfield", "state": rng.choice(STATES), "postalCode": "12345"}],
        }
    ]
    for k in range(records):
        year = rng.randint(2019, 2026)
        kind = k % 3
        if kind == 0:
            out.append(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "subject": {"reference": pid},
                    "effectiveDateTime": f"{year}-{rng.randint(1, 12):02d}-10T09:30:00Z",
                    "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "Hemoglobin A1c"}]},
                    "valueQuantity": {"value": round(rng.uniform(5.0, 10.5), 1), "unit": "%"},
                }
            )
        elif kind == 1:
            out.append(
                {
                    "resourceType": "Condition",
                    "subject": {"reference": pid},
                    "recordedDate": f"{year}-03-01",
                    "code": {"coding": [{"system": SNOMED, "code": HYPERTENSION if i % 10 == 4 else DIABETES}]},
                }
            )
        else:
            out.append(
                {
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": pid},
                    "authoredOn": f"{year}-04-02",
                    "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "860975"}]},
                }
            )
    return out


def build_demo_network(
    location: str,
    *,
    patients: int = 30,
    records_per_patient: int = 4,
    consent_every: int = 2,
    topic: str = "diabetes",
    seed: int = 7,
    block_size: int = 500,
) -> DemoNetwork:
    """Creates a ledger at ``location`` with ``patients`` synthetic patients (a Patient
    resource and ``records_per_patient`` records each, sealed for the patient and node 0, the
    holder, which adds them with each patient's enrolment). Every ``consent_every``-th patient (0, k, 2k, ...) grants a ``topic`` research
    consent; with four or more patients, patient 1 grants one and revokes it. Node 4 is the
    researcher's institution (a member): it issues the researcher's credential (a year).
    Blocks are stamped with the host's clock."""
    rng = random.Random(seed)
    net = LocalNetwork(location, seed=seed, validators=4, members=1)
    holder = net.node(0)
    institution = net.node(4)
    researcher = Identity.generate()
    credential = Credential.issue(
        institution, researcher, chain_id=net.chain_id, expires_ms=int(time.time() * 1000) + 365 * 86_400_000
    )
    people = [Identity.generate() for _ in range(patients)]
    consenting = [consent_every > 0 and i % consent_every == 0 for i in range(patients)]
    ids: List[str] = []
    for i, p in enumerate(people):
        # Enrolment: the patient's wallet seals its writer index key to the holder, which then
        # indexes and classifies the patient's records without the patient's identity.
        enrolment = IndexKey.export_writer_key(p, holder.public, net.chain_id)
        for r in patient_resources(i, rng, records_per_patient):
            ids.append(net.add_record(r, p.public, writer=0, enrolment=enrolment))
    net.commit(block_size=block_size)
    revoked: Optional[str] = None
    for i, p in enumerate(people):
        if consenting[i]:
            net.grant(research_consent(p, topic), p, node=1)
        elif i == 1 and patients >= 4:
            revoked = net.grant(research_consent(p, topic, summary="changed my mind later"), p, node=1)
    net.commit(block_size=block_size)
    if revoked is not None:
        net.revoke(revoked, people[1], node=2)
        net.commit()
    return DemoNetwork(net, holder, researcher, institution.public, credential, people, consenting, ids)
