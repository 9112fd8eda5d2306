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
