"""``medchain.Client`` against four real ``medchaind`` processes (issue #16): the clinic story
from Python. Alice enrols at St. Mary's and City General with her own client; St. Mary's EHR
posts her US Core transaction Bundle; her consent (signed here, as her wallet would) lets City
General's clinicians read for treatment; Dr. Okafor's EHR at City General reads and searches her
HbA1c (St. Mary's releases it, logged on chain); Dr. Reed at Riverside is denied, then reads in
an emergency; her audit trail shows the reads; a research export lands in a DataFrame; a
revocation is followed by a denial. Hostile inputs raise typed errors and write nothing.

The network (``fhirnet.py``) is started once per session by the ``fhir_net`` fixture."""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import pytest

import medchain
from medchain import Client, Consent, Credential, Identity, ResearchRequest
from medchain.client import ed25519_jwk

from fhirnet import CITY_GENERAL, EHR, EHR_KID, RIVERSIDE, ST_MARYS, FhirNet

LOINC = "http://loinc.org"
HBA1C = (LOINC, "4548-4")


def alice_bundle(key: str) -> Dict[str, Any]:
    """A US Core-style transaction Bundle: Patient, Encounter, HbA1c, Condition, linked by
    ``urn:uuid:`` references (as ``medchain-node/tests/support/fhir.rs``)."""
    patient, encounter = "urn:uuid:6b3f4c2e-1d2a-4f5e-8a7b-9c0d1e2f3a4b", "urn:uuid:9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0b7a4ad8-7d3e-4b0e-9f59-0d7f0f3c9e01",
             "resource": {"resourceType": "Observation", "status": "final",
                          "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "Hemoglobin A1c"}]},
                          "subject": {"reference": patient}, "encounter": {"reference": encounter},
                          "effectiveDateTime": "2026-10-14T09:30:00Z",
                          "valueQuantity": {"value": 7.9, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": encounter,
             "resource": {"resourceType": "Encounter", "status": "finished",
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "subject": {"reference": patient},
                          "period": {"start": "2026-10-14T09:00:00Z", "end": "2026-10-14T10:00:00Z"}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": patient,
             "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:medchain:patient-key", "value": key}],
                          "name": [{"family": "Example", "given": ["Alice"]}], "gender": "female", "birthDate": "1970-03-02"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
             "resource": {"resourceType": "Condition",
                          "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                          "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}]},
                          "subject": {"reference": patient}, "onsetDateTime": "2019-05-01"},
             "request": {"method": "POST", "url": "Condition"}},
        ],
    }


def treatment_consent(patient: Identity, institution: medchain.PublicIdentity, summary: str = "City General's clinicians may read my records for my treatment") -> Consent:
    """``patient``'s consent letting any clinician of ``institution`` read for treatment."""
    return Consent.from_fhir({
        "resourceType": "Consent", "status": "active",
        "extension": [{"url": "urn:medchain:summary", "valueString": summary}],
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": "urn:medchain:identity", "value": patient.public_text}},
        "dateTime": "2026-01-01T00:00:00Z",
        "provision": {"type": "deny", "provision": [{
            "type": "permit",
            "actor": [{"role": {"coding": [{"system": "urn:medchain:role", "code": "clinician"}]},
                       "reference": {"identifier": {"system": "urn:medchain:institution", "value": institution.verify_key_hex}}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
        }]},
    })


def research_consent_body(patient: Identity, chain_id: str) -> bytes:
    from medchain.testing import research_consent

    return research_consent(patient, "diabetes").grant_body(patient, chain_id)


def submitted(client: Client) -> float:
    """The node's ``medchain_transactions_submitted_total`` (from /metrics)."""
    for line in client.metrics().splitlines():
        if line.startswith("medchain_transactions_submitted_total"):
            return float(line.split()[-1])
    return 0.0


class Story:
    """What the session's clinic story has done so far."""

    def __init__(self, net: FhirNet) -> None:
        self.net = net
        self.alice = Identity.generate()
        self.key = self.alice.public.verify_key_hex
        self.stm = net.ehr(ST_MARYS, clinician="okafor")
        self.city = net.ehr(CITY_GENERAL, clinician="okafor")
        self.river = net.ehr(RIVERSIDE, clinician="reed")
        self.response: Dict[str, Any] = {}
        self.hba1c = ""
        self.consent_id = ""


@pytest.fixture(scope="module")
def story(fhir_net: FhirNet) -> Story:
    """Alice enrolled at St. Mary's and City General, her bundle at St. Mary's, her consent
    for City General's clinicians."""
    s = Story(fhir_net)
    for i in (ST_MARYS, CITY_GENERAL):
        ref = fhir_net.patient(i, s.alice).enrol(s.alice, fhir_net.nodes[i].member, fhir_net.chain_id)
        assert ref == f"Patient/{s.key}"
    s.response = s.stm.transaction(alice_bundle(s.key))
    s.hba1c = s.response["entry"][0]["response"]["location"].split("/")[1]
    consent = treatment_consent(s.alice, fhir_net.nodes[CITY_GENERAL].member)
    s.consent_id = fhir_net.patient(CITY_GENERAL, s.alice).consent(consent, patient=s.alice, chain_id=fhir_net.chain_id)
    assert s.consent_id == consent.granted_id(s.alice)
    return s


# ---------------------------------------------------------------------------------------------
# The node and its tokens


def test_metadata_and_health_need_no_token(fhir_net: FhirNet) -> None:
    anonymous = Client(fhir_net.nodes[0].url)
    capability = anonymous.metadata()
    assert capability["resourceType"] == "CapabilityStatement" and capability["fhirVersion"] == "4.0.1"
    assert anonymous.health()["status"] == "ok"
    with pytest.raises(medchain.Unauthorized) as e:
        anonymous.audit(Identity.generate())
    assert e.value.status == 401 and e.value.code is not None


def test_token_is_cached_and_status_reached(fhir_net: FhirNet) -> None:
    client = fhir_net.ehr(ST_MARYS)
    token = client.token()
    assert token and client.token() == token  # cached
    status = client.status()
    assert status["peers_connected"] >= 3 and status["genesis"] == fhir_net.chain_id
    assert token not in repr(client)


def test_assertion_is_an_eddsa_jws(fhir_net: FhirNet) -> None:
    import base64

    jwt = fhir_net.ehr(ST_MARYS).assertion()
    header, claims, signature = jwt.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    h = json.loads(base64.urlsafe_b64decode(pad(header)))
    c = json.loads(base64.urlsafe_b64decode(pad(claims)))
    assert h == {"alg": "EdDSA", "typ": "JWT", "kid": EHR_KID}
    assert c["iss"] == c["sub"] == EHR and c["aud"].endswith("/fhir/auth/token") and c["exp"] - c["iat"] == 60
    assert len(base64.urlsafe_b64decode(pad(signature))) == 64


def test_client_assertion_is_built_by_the_core_and_refuses_bad_arguments() -> None:
    import base64

    me = Identity.generate()
    aud = "https://node.example/fhir/auth/token"
    jwt = me.client_assertion("city-ehr", aud, 1_790_000_000)
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    header, claims, _ = (json.loads(base64.urlsafe_b64decode(pad(p))) if i < 2 else p for i, p in enumerate(jwt.split(".")))
    assert header == {"alg": "EdDSA", "typ": "JWT"}
    assert (claims["iss"], claims["sub"], claims["aud"], claims["iat"], claims["exp"]) == ("city-ehr", "city-ehr", aud, 1_790_000_000, 1_790_000_060)
    assert me.client_assertion("city-ehr", aud, 1_790_000_000) != jwt  # a fresh jti
    for bad in [("", aud, 1), ("city ehr", aud, 1), ("c", "ftp://x", 1), ("c", "https://", 1), ("c", aud, 1_790_000_000_000)]:
        with pytest.raises(medchain.InvalidArgument):
            me.client_assertion(*bad)


def test_sign_jws_refuses_what_is_not_a_signing_input() -> None:
    me = Identity.generate()
    assert len(me.sign_jws("eyJhbGciOiJFZERTQSJ9.eyJhIjoxfQ")) == 64
    for bad in ["", "hello", "eyJ.", ".eyJ", "eyJhbGci.e30=", "\x00eyJ.abc"]:
        with pytest.raises(medchain.InvalidArgument):
            me.sign_jws(bad)
    with pytest.raises(medchain.WrongType):
        me.sign_jws(b"eyJ.abc")  # type: ignore[arg-type]
    jwk = ed25519_jwk(me, "k1")
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["kid"] == "k1" and len(jwk["x"]) == 43
    assert me.public.verify_key_bytes.hex() == me.public.verify_key_hex


def test_forged_assertion_and_bad_token_are_unauthorized(fhir_net: FhirNet) -> None:
    forger = Client(fhir_net.nodes[CITY_GENERAL].url, identity=Identity.generate(), client_id=EHR, kid=EHR_KID)
    with pytest.raises(medchain.Unauthorized) as e:
        forger.status()
    assert e.value.status == 401 and e.value.code == "invalid_client"
    unknown = Client(fhir_net.nodes[CITY_GENERAL].url, identity=Identity.generate(), client_id="nobody")
    with pytest.raises(medchain.Unauthorized):
        unknown.token()
    escalating = Client(fhir_net.nodes[CITY_GENERAL].url, identity=fhir_net.ehr_key, client_id=EHR, kid=EHR_KID, scope="patient/*.rs")
    # Scope escalation: a patient scope is never granted to a registered client; this operator
    # client gets a token with no resource scope, and the FHIR call is refused.
    with pytest.raises(medchain.Forbidden) as e:
        escalating.audit(Identity.generate())
    assert (e.value.status, e.value.code) == (403, "insufficient_scope")
    # A token the node never issued: refused, typed, nothing of it echoed.
    client = fhir_net.ehr(CITY_GENERAL, clinician="okafor")
    client._token, client._token_expires = "not-a-token", time.time() + 300  # noqa: SLF001
    client._identity = None  # noqa: SLF001 (no renewal: the bad token is what is sent)
    client._bearer = lambda force=False: "not-a-token"  # type: ignore[method-assign]  # noqa: SLF001
    with pytest.raises(medchain.Unauthorized) as e:
        client.read("Observation", "00" * 32)
    assert "not-a-token" not in str(e.value)


def test_a_client_without_a_client_id_says_so(fhir_net: FhirNet) -> None:
    with pytest.raises(medchain.InvalidArgument):
        Client(fhir_net.nodes[0].url, identity=Identity.generate()).token()
    with pytest.raises(medchain.InvalidArgument):
        Client("ftp://example")
    with pytest.raises(medchain.WrongType):
        Client(fhir_net.nodes[0].url, identity="me")  # type: ignore[arg-type]


def test_network_errors_are_typed() -> None:
    client = Client("http://127.0.0.1:9", timeout=2)
    with pytest.raises(medchain.NetworkError) as e:
        client.health()
    assert isinstance(e.value, medchain.ServerError) and e.value.status is None and e.value.code == "network"


# ---------------------------------------------------------------------------------------------
# The clinic story


def test_enrolment_and_transaction_bundle(story: Story) -> None:
    assert story.response["type"] == "transaction-response"
    locations = [e["response"]["location"] for e in story.response["entry"]]
    assert [l.split("/")[0] for l in locations] == ["Observation", "Encounter", "Patient", "Condition"]
    assert all(e["response"]["status"] == "201 Created" for e in story.response["entry"])
    assert len(story.hba1c) == 64


def test_create_returns_the_record_id(story: Story) -> None:
    glucose = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": LOINC, "code": "2345-7", "display": "Glucose"}]},
               "subject": {"reference": f"Patient/{story.key}"}, "effectiveDateTime": "2026-10-15T08:00:00Z",
               "valueQuantity": {"value": 142, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    record = story.stm.create(glucose)
    assert len(record) == 64 and record != story.hba1c
    read = story.city.read("Observation", record)
    assert read["id"] == record and read["valueQuantity"]["value"] == 142


def test_consent_is_committed_and_readable(story: Story) -> None:
    consent = story.city.read_consent(story.consent_id)
    assert consent["resourceType"] == "Consent" and consent["status"] == "active"
    mine = story.net.patient(CITY_GENERAL, story.alice).consents(story.alice)
    assert story.consent_id in [c["id"] for c in mine] or len(mine) >= 1


def test_cross_hospital_read(story: Story) -> None:
    hba1c = story.city.read("Observation", story.hba1c)
    assert hba1c["id"] == story.hba1c
    assert hba1c["code"]["coding"][0]["code"] == "4548-4" and hba1c["valueQuantity"]["value"] == 7.9
    assert hba1c["subject"]["reference"] == f"Patient/{story.key}"
    assert any(t["system"] == "urn:medchain:block-height" for t in hba1c["meta"]["tag"])


def test_cross_hospital_search(story: Story) -> None:
    found = story.city.search("Observation", patient=story.alice, code=HBA1C)
    assert [r["id"] for r in found] == [story.hba1c] and found.withheld == {} and found.pages == 1
    assert list(story.city.search("Observation", patient=story.key, code="http://loinc.org|9999-9")) == []
    conditions = story.city.search("Condition", patient=f"Patient/{story.key}")
    assert [c["code"]["coding"][0]["code"] for c in conditions] == ["44054006"]


def test_search_follows_next_links(story: Story) -> None:
    everything = story.city.search("Observation", patient=story.alice, _count=1)
    assert everything.pages >= 2 and len(everything) == everything.pages
    assert story.hba1c in [r["id"] for r in everything]
    first_only = story.city.search("Observation", patient=story.alice, _count=1, max_pages=1)
    assert len(first_only) == 1 and first_only.pages == 1


def test_denied_without_consent_is_typed_and_leaks_nothing(story: Story) -> None:
    with pytest.raises(medchain.ConsentDenied) as e:
        story.river.read("Observation", story.hba1c)
    err = e.value
    assert (err.status, err.code, err.rule) == (403, "denied", "denied")
    text = str(err) + json.dumps(err.operation_outcome)
    assert "4548-4" not in text and "7.9" not in text and story.key not in text
    # A search says how many were withheld, and why, and nothing else.
    found = story.river.search("Observation", patient=story.alice)
    assert list(found) == [] and set(found.withheld) == {"denied"} and found.withheld["denied"] >= 1
    # Matching codes needs her enrolment here, which Riverside does not have.
    with pytest.raises(medchain.InvalidArgument) as e2:
        story.river.search("Observation", patient=story.alice, code=HBA1C)
    assert (e2.value.status, e2.value.code) == (422, "not_enrolled")
    # The refusal is on chain: St. Mary's logged it, and Alice sees it at Riverside too, as a
    # failed read naming the rule (never the consent's detail).
    alice = story.net.patient(RIVERSIDE, story.alice)
    deadline = time.monotonic() + 20
    refusals: List[Dict[str, Any]] = []
    while not refusals and time.monotonic() < deadline:
        refusals = [e for e in alice.audit(story.alice) if e.get("outcome") == "4"]
        if not refusals:
            time.sleep(0.2)
    assert refusals, "the refusal reached Alice's audit trail"
    assert "refused: denied" in {e["outcomeDesc"] for e in refusals}


def test_emergency_read(story: Story) -> None:
    hba1c = story.river.read("Observation", story.hba1c, purpose="ETREAT")
    assert hba1c["valueQuantity"]["value"] == 7.9


def test_audit_trail_shows_the_reads(story: Story) -> None:
    story.city.read("Observation", story.hba1c)
    story.river.read("Observation", story.hba1c, purpose="ETREAT")
    alice = story.net.patient(CITY_GENERAL, story.alice)
    trail = alice.audit(story.alice)
    assert trail and all(e["resourceType"] == "AuditEvent" for e in trail)
    text = json.dumps(trail)
    assert "ETREAT" in text and "urn:medchain:break-glass" in text
    assert story.hba1c in text
    # The EHR sees the same trail.
    assert len(story.stm.audit(story.alice)) >= len(trail)


def test_clinical_reads_name_clinician_and_purpose(story: Story) -> None:
    with pytest.raises(medchain.Forbidden) as e:
        story.city.read("Observation", story.hba1c, clinician="hale")
    assert (e.value.status, e.value.code) == (403, "clinician_not_allowed")
    with pytest.raises(medchain.InvalidArgument) as e2:
        story.city.read("Observation", story.hba1c, purpose="")
    assert (e2.value.status, e2.value.code) == (400, "purpose_required")
    with pytest.raises(medchain.Forbidden) as e3:
        story.city.read("Observation", story.hba1c, purpose="HRESCH")
    assert e3.value.code == "research"
    with pytest.raises(medchain.Forbidden) as e4:
        story.net.patient(CITY_GENERAL, story.alice).read("Observation", story.hba1c)
    assert e4.value.code == "patient_token"


def test_a_patient_reaches_only_their_own_compartment(story: Story) -> None:
    stranger = Identity.generate()
    with pytest.raises(medchain.Forbidden) as e:
        story.net.patient(CITY_GENERAL, story.alice).audit(stranger)
    assert e.value.code == "other_patient"


def test_not_found(story: Story) -> None:
    with pytest.raises(medchain.NotFound) as e:
        story.city.read_consent("00" * 32)
    assert (e.value.status, e.value.code) == (404, "not_found")
    assert isinstance(e.value, LookupError)


def test_hostile_writes_are_typed_and_write_nothing(story: Story) -> None:
    before = submitted(story.city)
    invalid = alice_bundle(story.key)
    del invalid["entry"][0]["resource"]["status"]
    with pytest.raises(medchain.InvalidFhir) as e:
        story.city.transaction(invalid)
    assert (e.value.status, e.value.code) == (422, "invalid_fhir")
    assert "Bundle.entry[0].resource.status" in [i["path"] for i in e.value.issues]
    assert "4548-4" not in str(e.value) + json.dumps(e.value.operation_outcome)
    cycle = alice_bundle(story.key)
    cycle["entry"][1]["resource"]["partOf"] = {"reference": "urn:uuid:0b7a4ad8-7d3e-4b0e-9f59-0d7f0f3c9e01"}
    with pytest.raises(medchain.InvalidFhir) as e:
        story.city.transaction(cycle)
    assert e.value.code == "reference_cycle"
    with pytest.raises(medchain.NotFhir) as e2:
        story.city._request("POST", "/fhir/Observation", raw=b"{not json")  # noqa: SLF001
    assert (e2.value.status, e2.value.code) == (400, "bad_json")
    with pytest.raises(medchain.NotFhir):
        story.city._request("POST", "/fhir", raw=b"[" * 5000 + b"]" * 5000)  # noqa: SLF001
    with pytest.raises(medchain.InvalidArgument) as e3:
        story.city._request("POST", "/fhir", raw=b" " * (8 * 1024 * 1024 + 1))  # noqa: SLF001
    assert e3.value.status == 413
    foreign = alice_bundle(Identity.generate().public.verify_key_hex)
    with pytest.raises(medchain.InvalidArgument) as e3:
        story.city.transaction(foreign)
    assert e3.value.code == "not_enrolled"
    with pytest.raises(medchain.InvalidConsent) as e4:
        story.city.consent({"resourceType": "Consent", "status": "active"})
    assert e4.value.code == "unsigned_consent"
    forged = bytearray(treatment_consent(story.alice, story.net.nodes[CITY_GENERAL].member).grant_body(story.alice, story.net.chain_id))
    forged[-1] ^= 1
    with pytest.raises(medchain.MedchainError) as e5:
        story.city.consent(bytes(forged))
    assert e5.value.status == 422
    with pytest.raises(medchain.InvalidConsent) as e6:
        story.net.patient(CITY_GENERAL, story.alice).revoke("00" * 32, Consent.revoke_body(story.alice, story.net.chain_id, story.consent_id))
    assert e6.value.code == "id_mismatch"
    with pytest.raises(medchain.NotFhir):
        story.city.create({"status": "final"})
    assert submitted(story.city) == before, "a hostile request submitted a transaction"


def test_research_export_into_a_dataframe(story: Story) -> None:
    """Eleven consenting patients with a diabetes HbA1c at St. Mary's (a cell needs 11); Dr.
    Chen's signed request, with a researcher credential St. Mary's issued, exported
    de-identified into pandas."""
    net = story.net
    cohort: List[Identity] = [story.alice] + [Identity.generate() for _ in range(10)]

    def admit(patient: Identity) -> None:
        own = net.patient(ST_MARYS, patient)
        if patient is not story.alice:
            own.enrol(patient, net.nodes[ST_MARYS].member, net.chain_id)
            story.stm.transaction(alice_bundle(patient.public.verify_key_hex))
        own.consent(research_consent_body(patient, net.chain_id))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(admit, cohort))
    chen = Identity.generate()
    member = net.member_identity(ST_MARYS)
    credential = Credential.issue(member, chen, chain_id=net.chain_id, expires_ms=int(time.time() * 1000) + 86_400_000)
    request = ResearchRequest.sign(chen, credential, chain_id=net.chain_id, study="dm2-2026", topic="diabetes",
                                   resource_types=["Condition"], codes=[HBA1C])
    frame = story.stm.export(request, timeout=60)
    assert len(frame) == 22, frame
    assert set(frame["resourceType"]) == {"Observation", "Condition"}
    assert list(frame.columns)[0] == "resourceType"
    text = frame.to_json()
    assert story.key not in text and "Alice" not in text and "Example" not in text
    assert frame.attrs["release_log"] and story.stm.status()["height"] > 0
    # Too few patients for another study: a typed refusal.
    small = ResearchRequest.sign(chen, credential, chain_id=net.chain_id, study="tiny", topic="diabetes",
                                 resource_types=["Procedure"])
    with pytest.raises(medchain.ConsentDenied) as e:
        story.stm.export(small, timeout=30)
    assert e.value.status == 422 and e.value.code == "too_few_patients"


def test_revocation_then_denial(fhir_net: FhirNet) -> None:
    """Bob consents, Dr. Okafor reads, Bob revokes (signed here), the next read is denied."""
    bob = Identity.generate()
    key = bob.public.verify_key_hex
    stm, city = fhir_net.ehr(ST_MARYS, clinician="okafor"), fhir_net.ehr(CITY_GENERAL, clinician="okafor")
    for i in (ST_MARYS, CITY_GENERAL):
        fhir_net.patient(i, bob).enrol(bob, fhir_net.nodes[i].member, fhir_net.chain_id)
    record = stm.create({"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": LOINC, "code": "4548-4"}]},
                         "subject": {"reference": f"Patient/{key}"}, "effectiveDateTime": "2026-11-02T10:00:00Z",
                         "valueQuantity": {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}})
    bob_client = fhir_net.patient(CITY_GENERAL, bob)
    body = treatment_consent(bob, fhir_net.nodes[CITY_GENERAL].member, "Bob's treatment").grant_body(bob, fhir_net.chain_id)
    consent_id = bob_client.consent(body)
    assert city.read("Observation", record)["valueQuantity"]["value"] == 6.1
    revoked = bob_client.revoke(consent_id, bob, chain_id=fhir_net.chain_id)
    assert revoked["status"] == "inactive"
    with pytest.raises(medchain.ConsentDenied) as e:
        city.read("Observation", record)
    assert e.value.rule == "denied"
    assert city.read_consent(consent_id)["status"] == "inactive"


def test_consent_and_revoke_need_their_signatures(fhir_net: FhirNet) -> None:
    bob = Identity.generate()
    client = fhir_net.patient(CITY_GENERAL, bob)
    consent = treatment_consent(bob, fhir_net.nodes[CITY_GENERAL].member)
    with pytest.raises(medchain.InvalidArgument):
        client.consent(consent)  # a Consent object is signed here: patient and chain needed
    with pytest.raises(medchain.InvalidSignature):
        consent.grant_body(Identity.generate(), fhir_net.chain_id)
    with pytest.raises(medchain.DecodeError):
        Consent.revoke_body(bob, fhir_net.chain_id, "not hex")
    with pytest.raises(medchain.WrongType):
        client.consent(42)  # type: ignore[arg-type]


def test_export_without_pandas_says_how(fhir_net: FhirNet, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_pandas(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "pandas":
            raise ImportError("no pandas here")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="medchain\\[data\\]"):
        fhir_net.ehr(ST_MARYS).export(b"whatever")
