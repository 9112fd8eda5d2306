"""Conformance: a FHIR client library no one on this project wrote, against a running medchaind.

The library is ``fhirclient`` (SMART on FHIR's Python client, PyPI, pinned to 4.4.0 by
``scripts/test.sh``; its models are generated from FHIR 4.0.1 and parse strictly: an unknown or
mistyped element raises). Everything below goes through fhirclient's own classes: its
``FHIRClient``/``FHIRServer`` for the SMART Backend Services token (fhirclient posts the
``client_credentials`` grant with the ``jwt_token`` we give it as ``client_assertion``: it does
not sign assertions itself, so the EdDSA assertion comes from ``medchain.Client.assertion()``),
its resource models for create, read, search and a transaction Bundle, and its
``OperationOutcome`` model for an error.

fhirclient is used as its documentation says, with no workaround: it reads the token endpoint
from the CapabilityStatement's SMART ``oauth-uris`` extension (absolute: the node derives its
FHIR base from the token endpoint's URL), asks for ``launch/patient`` beside the scopes (the
node ignores SMART's non-resource scopes and grants the resource ones), posts a transaction
Bundle to its base URL with the trailing slash (``POST /fhir/``, served beside ``POST /fhir``)
and follows the search Bundles' absolute ``next`` links page by page.

How the medchain headers travel: fhirclient has no per-request header hook for reads, but every
request goes through its ``requests.Session`` (``server.session``), so the clinician and the
purpose of use are set as that session's default headers; the bearer token is fhirclient's own
(``server.auth.signed_headers``).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest
import requests
from fhirclient import client as fclient
from fhirclient import server as fserver
from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.condition import Condition
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation
from fhirclient.models.operationoutcome import OperationOutcome
from fhirclient.models.patient import Patient
from fhirclient.models.quantity import Quantity

from medchain import Identity

from fhirnet import CITY_GENERAL, EHR, ST_MARYS, FhirNet

FHIRCLIENT_VERSION = "4.4.0"
LOINC = "http://loinc.org"


def smart_client(net: FhirNet, i: int, clinician: str = "okafor") -> fclient.FHIRClient:
    """fhirclient's client of node ``i``, authorised the SMART Backend Services way, as
    fhirclient's documentation sets it up: settings with the signed assertion (``jwt_token``),
    ``prepare()`` reads the CapabilityStatement (the token endpoint from its ``oauth-uris``),
    ``authorize()`` posts the ``client_credentials`` grant."""
    base = net.nodes[i].url + "/fhir/"
    settings = {"app_id": EHR, "api_base": base, "scope": "system/*.cruds", "jwt_token": net.ehr(i).assertion()}
    smart = fclient.FHIRClient(settings=settings)
    assert smart.prepare() is False  # the capabilities are read; no token yet
    assert smart.server.auth is not None and smart.server.auth.auth_type == "oauth2"
    assert smart.server.auth._token_uri == base + "auth/token"
    # fhirclient asks for "launch/patient system/*.cruds"; the node grants the resource scopes.
    assert smart.desired_scope.split() == ["launch/patient", "system/*.cruds"]
    smart.authorize()
    assert smart.ready and smart.server.auth.access_token
    smart.server.session.headers.update({"X-Medchain-Clinician": clinician, "X-Medchain-Purpose-Of-Use": "TREAT"})
    return smart


def observation(patient: str, code: str, value: float) -> Observation:
    obs = Observation()
    obs.status = "final"
    obs.code = CodeableConcept({"coding": [{"system": LOINC, "code": code}]})
    obs.subject = FHIRReference({"reference": f"Patient/{patient}"})
    obs.valueQuantity = Quantity({"value": value, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"})
    return obs


@pytest.fixture(scope="module")
def carol(fhir_net: FhirNet) -> Iterator[Dict[str, Any]]:
    """Carol, enrolled at St. Mary's and City General, with a consent for City General's
    clinicians (made with medchain's client: fhirclient has nothing to sign with)."""
    from test_client import treatment_consent

    patient = Identity.generate()
    for i in (ST_MARYS, CITY_GENERAL):
        fhir_net.patient(i, patient).enrol(patient, fhir_net.nodes[i].member, fhir_net.chain_id)
    consent = treatment_consent(patient, fhir_net.nodes[CITY_GENERAL].member, "Carol's treatment")
    fhir_net.patient(CITY_GENERAL, patient).consent(consent, patient=patient, chain_id=fhir_net.chain_id)
    yield {"identity": patient, "key": patient.public.verify_key_hex}


def test_pinned_fhirclient() -> None:
    import fhirclient

    assert fhirclient.__version__ == FHIRCLIENT_VERSION


def test_capability_statement_parses_in_fhirclients_models(fhir_net: FhirNet) -> None:
    srv = fserver.FHIRServer(None, base_uri=fhir_net.nodes[0].url + "/fhir")
    capability = CapabilityStatement.read_from("metadata", srv)
    assert capability.fhirVersion == "4.0.1" and capability.kind == "instance"
    types = {r.type for r in capability.rest[0].resource}
    assert {"Observation", "Condition", "Patient", "Consent", "AuditEvent"} <= types
    # The SMART oauth-uris extension names the token endpoint: absolute, the one SMART
    # discovery names too.
    security = capability.rest[0].security
    uris = [e for e in security.extension if e.url.endswith("/oauth-uris")]
    assert [x.url for x in uris[0].extension] == ["token"]
    discovery = requests.get(fhir_net.nodes[0].url + "/fhir/.well-known/smart-configuration", timeout=10).json()
    assert uris[0].extension[0].valueUri == discovery["token_endpoint"]
    smart = smart_client(fhir_net, ST_MARYS)
    assert smart.server.auth.auth_type == "oauth2" and smart.server.ready


def test_create_read_and_search_through_fhirclient(fhir_net: FhirNet, carol: Dict[str, Any]) -> None:
    stm, city = smart_client(fhir_net, ST_MARYS), smart_client(fhir_net, CITY_GENERAL)
    obs = observation(carol["key"], "4548-4", 6.4)
    created = obs.create(stm.server)
    assert created is not None
    record = Observation(created)  # strict parse of what the node answered
    assert record.id and len(record.id) == 64 and record.valueQuantity.value == 6.4
    read = Observation.read(record.id, city.server)  # cross-hospital, as Dr. Okafor
    assert read.id == record.id and read.code.coding[0].code == "4548-4"
    assert read.subject.reference == f"Patient/{carol['key']}"
    search = Observation.where({"patient": carol["key"], "code": f"{LOINC}|4548-4"})
    found = list(search.perform_resources_iter(city.server))
    assert [r.id for r in found] == [record.id] and isinstance(found[0], Observation)


def test_transaction_bundle_through_fhirclient(fhir_net: FhirNet, carol: Dict[str, Any]) -> None:
    stm, city = smart_client(fhir_net, ST_MARYS), smart_client(fhir_net, CITY_GENERAL)
    patient_url = "urn:uuid:3f1c2b7a-0a8e-4a61-9d35-4c3b2a190817"
    patient = Patient()
    patient.identifier = [Identifier({"system": "urn:medchain:patient-key", "value": carol["key"]})]
    patient.gender = "female"
    condition = Condition()
    condition.clinicalStatus = CodeableConcept({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]})
    condition.code = CodeableConcept({"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]})
    condition.subject = FHIRReference({"reference": patient_url})
    hba1c = observation(carol["key"], "4548-4", 7.1)
    hba1c.subject = FHIRReference({"reference": patient_url})
    entries: List[BundleEntry] = []
    for url, resource, kind in [(patient_url, patient, "Patient"), ("urn:uuid:5d0b6f2e-8c41-4f2a-b7c9-1e0d3a4b5c6d", condition, "Condition"),
                                ("urn:uuid:7e9a8b1c-2d3f-4e5a-9b6c-0d1e2f3a4b5c", hba1c, "Observation")]:
        entry = BundleEntry()
        entry.fullUrl = url
        entry.resource = resource
        entry.request = BundleEntryRequest({"method": "POST", "url": kind})
        entries.append(entry)
    bundle = Bundle()
    bundle.type = "transaction"
    bundle.entry = entries
    answer = Bundle(bundle.create(stm.server))
    assert answer.type == "transaction-response"
    locations = [e.response.location for e in answer.entry]
    assert [l.split("/")[0] for l in locations] == ["Patient", "Condition", "Observation"]
    assert all(e.response.status == "201 Created" for e in answer.entry)
    # The references were resolved: City General reads the condition, naming Carol by her key.
    read = Condition.read(locations[1].split("/")[1], city.server)
    assert read.subject.reference == f"Patient/{carol['key']}"
    # Paging: fhirclient follows the absolute `next` links page by page, each a strict Bundle.
    pages = list(Observation.where({"patient": carol["key"], "_count": "1"}).perform_iter(city.server))
    assert len(pages) >= 2 and all(len(p.entry) == 1 for p in pages)
    assert [k.relation for k in pages[0].link] == ["self", "next"]
    assert all(k.url.startswith(fhir_net.nodes[CITY_GENERAL].url + "/fhir/Observation?") for p in pages for k in p.link)
    ids = [p.entry[0].resource.id for p in pages]
    assert len(set(ids)) == len(ids)
    hba1c_id = locations[2].split("/")[1]
    assert hba1c_id in ids


def test_operation_outcome_through_fhirclient(fhir_net: FhirNet, carol: Dict[str, Any]) -> None:
    stm = smart_client(fhir_net, ST_MARYS)
    # fhirclient's models refuse to serialise a resource without its required elements, so the
    # invalid one goes as JSON through fhirclient's server class.
    invalid = observation(carol["key"], "4548-4", 5.0).as_json()
    del invalid["status"]  # required by FHIR R4
    with pytest.raises(requests.HTTPError) as e:
        stm.server.post_json("Observation", invalid)
    assert e.value.response.status_code == 422
    outcome = OperationOutcome(e.value.response.json())  # strict parse
    first = outcome.issue[0]
    assert first.severity == "error" and first.details.coding[0].system == "urn:medchain:fhir-error"
    assert first.details.coding[0].code == "invalid_fhir"
    assert any("Observation.status" in (i.expression or [""])[0] for i in outcome.issue[1:])
    # A denial is a 403 with its OperationOutcome: Riverside's clinician, no consent.
    river = smart_client(fhir_net, 2, clinician="reed")
    record = Observation(observation(carol["key"], "4548-4", 6.0).create(stm.server))
    with pytest.raises(fserver.FHIRPermissionDeniedException) as denied:
        Observation.read(record.id, river.server)
    refused = OperationOutcome(denied.value.response.json())
    assert refused.issue[0].details.coding[0].code == "denied"
    assert "6.0" not in denied.value.response.text
