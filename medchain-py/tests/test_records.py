from __future__ import annotations

import json
from typing import Any, Dict

import pytest

import medchain
from medchain import Identity, seal

OBS: Dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "subject": {"reference": "Patient/alice"},
    "effectiveDateTime": "2026-10-14T09:30:00Z",
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
    "valueQuantity": {"value": 7.9, "unit": "%"},
}


def test_seal_dict_and_open_by_patient() -> None:
    patient, hospital = Identity.generate(), Identity.generate()
    rec = seal(OBS, patient, [hospital])
    assert rec.open(patient) == OBS
    assert rec.open(hospital) == OBS
    assert rec.patient == patient.public
    assert rec.reader_count == 2
    assert len(rec.record_id) == 64


def test_seal_json_text_and_public_identity() -> None:
    patient = Identity.generate()
    rec = seal(json.dumps(OBS), patient.public)
    assert rec.open(patient)["valueQuantity"]["value"] == 7.9
    rec2 = seal(json.dumps(OBS).encode(), patient.public_text)
    assert rec2.open(patient)["resourceType"] == "Observation"


def test_writer_holds_a_self_envelope() -> None:
    patient, hospital, lab = Identity.generate(), Identity.generate(), Identity.generate()
    rec = seal(OBS, patient, [lab], writer=hospital)
    assert rec.has_writer_envelope
    assert rec.reader_count == 3  # patient, lab, and the writer's own envelope
    assert rec.open(hospital) == OBS
    assert rec.open(patient) == OBS
    assert rec.open(lab) == OBS
    # The writer listed among the readers too: still one envelope for it.
    both = seal(OBS, patient, [hospital], writer=hospital)
    assert both.reader_count == 2 and both.has_writer_envelope
    assert both.open(hospital) == OBS
    # Without a writer: ordinary X25519 envelopes only.
    plain = seal(OBS, patient, [hospital], writer=None)
    assert not plain.has_writer_envelope and plain.open(hospital) == OBS


def test_self_envelope_opens_for_the_writer_only() -> None:
    patient, hospital = Identity.generate(), Identity.generate()
    rec = seal(OBS, patient, writer=hospital)
    with pytest.raises(medchain.NotAReader):
        rec.open(Identity.generate())


def test_writer_must_hold_its_secret() -> None:
    patient, hospital = Identity.generate(), Identity.generate()
    for bad in (hospital.public, hospital.public_text, 42):
        with pytest.raises(medchain.WrongType):
            seal(OBS, patient, writer=bad)  # type: ignore[arg-type]
    # An invalid resource seals nothing, writer or not.
    with pytest.raises(medchain.InvalidFhir):
        seal({"resourceType": "Observation"}, patient, writer=hospital)


def test_stranger_cannot_open() -> None:
    rec = seal(OBS, Identity.generate())
    with pytest.raises(medchain.NotAReader):
        rec.open(Identity.generate())


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        "[]",
        "42",
        '{"resourceType": 5}',
        '{"no": "type"}',
        {"resourceType": "NotAResource"},
        {"resourceType": ""},
    ],
)
def test_malformed_fhir(bad: Any) -> None:
    with pytest.raises(medchain.NotFhir):
        seal(bad, Identity.generate())


def test_unserialisable_dict() -> None:
    with pytest.raises(medchain.NotFhir):
        seal({"resourceType": "Observation", "x": {1, 2}}, Identity.generate())


@pytest.mark.parametrize("bad", [None, 42, ["a"], object()])
def test_wrong_fhir_type(bad: Any) -> None:
    with pytest.raises(medchain.WrongType):
        seal(bad, Identity.generate())


def test_wrong_patient_and_readers() -> None:
    with pytest.raises(medchain.WrongType):
        seal(OBS, 42)  # type: ignore[arg-type]
    with pytest.raises(medchain.DecodeError):
        seal(OBS, "mcid1-not-an-identity")
    with pytest.raises(medchain.WrongType):
        seal(OBS, Identity.generate(), "readers")  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        seal(OBS, Identity.generate(), [1, 2])  # type: ignore[list-item]


def test_hostile_nesting_and_size() -> None:
    deep: Dict[str, Any] = {"resourceType": "Observation", "status": "final"}
    node = deep
    for _ in range(5000):
        node["x"] = {}
        node = node["x"]
    text = '{"resourceType":"Observation","x":' + "[" * 100000 + "]" * 100000 + "}"
    for hostile in (text, {"resourceType": "Observation", "pad": "x" * (17 * 1024 * 1024)}):
        with pytest.raises(medchain.MedchainError):
            seal(hostile, Identity.generate())
    try:
        seal(deep, Identity.generate())
    except (medchain.MedchainError, RecursionError):
        pass


def test_open_wrong_type() -> None:
    rec = seal(OBS, Identity.generate())
    with pytest.raises(medchain.WrongType):
        rec.open("me")  # type: ignore[arg-type]


def test_invalid_fhir_is_refused_with_paths_and_nothing_is_sealed() -> None:
    bad = dict(OBS, valueQuantity="7.9 %", effectiveDateTime="2026-13-45")
    del bad["status"]
    with pytest.raises(medchain.InvalidFhir) as info:
        seal(bad, Identity.generate())
    err = info.value
    assert isinstance(err, medchain.NotFhir) and isinstance(err, ValueError)
    found = {(i["path"], i["code"]) for i in err.issues}
    assert ("Observation.status", "required") in found
    assert ("Observation.valueQuantity", "structure") in found
    assert ("Observation.effectiveDateTime", "value") in found
    assert all(i["severity"] == "error" for i in err.issues)
    assert err.operation_outcome["resourceType"] == "OperationOutcome"
    # Neither the message nor the outcome quotes the resource.
    assert "2026-13-45" not in str(err) and "7.9 %" not in json.dumps(err.operation_outcome)


def test_required_binding_and_unknown_element() -> None:
    with pytest.raises(medchain.InvalidFhir, match="Observation.status"):
        seal(dict(OBS, status="done"), Identity.generate())
    with pytest.raises(medchain.InvalidFhir, match="Observation.colour"):
        seal(dict(OBS, colour="red"), Identity.generate())


def test_us_core_profile_and_lenient_mode() -> None:
    patient = Identity.generate()
    # Valid base R4, but US Core asks for a category.
    assert seal(OBS, patient, profile="r4").open(patient) == OBS
    with pytest.raises(medchain.InvalidFhir) as info:
        seal(OBS, patient, profile="us-core")
    assert ("Observation.category", "required") in {(i["path"], i["code"]) for i in info.value.issues}
    with_category = dict(
        OBS,
        category=[
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
    )
    assert seal(with_category, patient, profile="us-core").open(patient) == with_category
    # Lenient mode (migration only) seals what strict mode refuses, but never non-FHIR.
    legacy = dict(OBS, colour="red")
    assert seal(legacy, patient, lenient=True).open(patient) == legacy
    with pytest.raises(medchain.NotFhir):
        seal({"resourceType": "NotAResource"}, patient, lenient=True)
    with pytest.raises(medchain.InvalidArgument):
        seal(OBS, patient, profile="R5")
