from __future__ import annotations

import threading
import time

import pytest

import medchain
from medchain import Identity, Ledger
from medchain.ledger import DATASET_COLUMNS
from medchain.testing import DemoNetwork


def _ds(ledger: Ledger, demo: DemoNetwork, **kw):  # type: ignore[no-untyped-def]
    args = dict(topic="diabetes", holder=demo.holder, institution=demo.institution)
    args.update(kw)
    return ledger.research_dataset(demo.researcher, **args)


def test_only_consenting_patients(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo)
    n_consenting = sum(demo.consenting)
    assert df["pseudonym"].nunique() == n_consenting
    assert len(df) == n_consenting * 5
    stats = df.attrs["medchain"]
    assert stats["rows"] == len(df)
    assert stats["records"] == len(demo.record_ids)
    assert stats["denied"] == len(demo.record_ids) - len(df)
    assert stats["patients_permitted"] == n_consenting


def test_typed_columns(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo)
    assert list(df.columns) == list(DATASET_COLUMNS)
    assert str(df["value"].dtype) == "float64"
    assert str(df["effective_year"].dtype) == "Int32"
    assert str(df["birth_year"].dtype) == "Int32"
    assert str(df["resource_type"].dtype) == "category"
    obs = df[df["resource_type"] == "Observation"]
    assert (obs["code"] == "4548-4").all() and (obs["unit"] == "%").all()
    assert obs["value"].between(5, 11).all()
    assert obs["effective_year"].between(2019, 2026).all()
    pats = df[df["resource_type"] == "Patient"]
    assert pats["birth_year"].notna().all() and pats["gender"].notna().all()
    assert pats["state"].notna().all()
    meds = df[df["resource_type"] == "MedicationRequest"]
    assert (meds["code"] == "860975").all()
    cond = df[df["resource_type"] == "Condition"]
    assert cond["code"].isin(["44054006", "38341003"]).all()


def test_no_identifiers_leak(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo)
    text = df.to_csv()
    assert "Springfield" not in text and "Family" not in text and "Main St" not in text
    for p in demo.patients:
        assert p.public_text not in text
    assert "p0" not in set(df["pseudonym"])


def test_revoked_and_non_consenting_excluded(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo, study="s1")
    from medchain._medchain import evaluate

    assert not demo.consenting[1]
    # Rebuild pseudonyms for consenting patients only: counts match per patient.
    assert df.groupby("pseudonym").size().eq(5).all()
    states = ledger.consents_of(demo.patients[1])
    assert states and not states[0].active
    assert not evaluate(states, demo.researcher, action="research", purpose="HRESCH",
                        topic="diabetes", role="researcher", institution=demo.institution)


def test_other_topic_gives_nothing(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo, topic="oncology")
    assert len(df) == 0 and list(df.columns) == list(DATASET_COLUMNS)
    assert df.attrs["medchain"]["denied"] == len(demo.record_ids)


def test_arrow(ledger: Ledger, demo: DemoNetwork) -> None:
    import pyarrow as pa

    t = _ds(ledger, demo, as_arrow=True)
    assert isinstance(t, pa.Table)
    assert t.num_rows == sum(demo.consenting) * 5
    assert t.schema.field("value").type == pa.float64()
    assert t.schema.field("birth_year").type == pa.int32()
    assert b"rows" in t.schema.metadata[b"medchain"]


def test_patient_as_holder(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo, holder=demo.patients[0])
    assert len(df) == 5 and df["pseudonym"].nunique() == 1
    df3 = _ds(ledger, demo, holder=demo.patients[3])
    assert len(df3) == 0


def test_holder_that_cannot_read(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo, holder=Identity.generate())
    assert len(df) == 0
    assert df.attrs["medchain"]["not_readable"] == len(demo.record_ids)


def test_studies_are_unlinkable(ledger: Ledger, demo: DemoNetwork) -> None:
    a = set(_ds(ledger, demo, study="study-a")["pseudonym"])
    b = set(_ds(ledger, demo, study="study-b")["pseudonym"])
    assert a and b and not (a & b)
    assert a == set(_ds(ledger, demo, study="study-a")["pseudonym"])


def test_dataset_bad_input(ledger: Ledger, demo: DemoNetwork) -> None:
    with pytest.raises(medchain.WrongType):
        _ds(ledger, demo, holder=demo.holder.public)
    with pytest.raises(medchain.WrongType):
        ledger.research_dataset(42, topic="diabetes", holder=demo.holder)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        _ds(ledger, demo, topic=5)
    with pytest.raises(medchain.InvalidArgument):
        _ds(ledger, demo, study=" ")


def test_dataset_runs_without_the_gil(ledger: Ledger, demo: DemoNetwork) -> None:
    stop = threading.Event()
    ticks = [0]

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0)

    t = threading.Thread(target=spin)
    t.start()
    try:
        for _ in range(3):
            _ds(ledger, demo)
    finally:
        stop.set()
        t.join()
    assert ticks[0] > 0


def test_synthetic_columns() -> None:
    from medchain._medchain import _synthetic_dataset_columns

    cols = _synthetic_dataset_columns(8)
    assert len(cols["pseudonym"]) == 8
    assert cols["resource_type"][:4] == ["Patient", "Observation", "Condition", "MedicationRequest"]
    with pytest.raises(medchain.InvalidArgument):
        _synthetic_dataset_columns(10**9)


def test_free_text_and_old_ages_never_reach_the_dataset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """valueString is never copied (value_text holds codes only); a 95-year-old's birth year,
    an age over 89 and day-precision dates do not survive."""
    from medchain.testing import LocalNetwork, research_consent

    net = LocalNetwork(str(tmp_path / "free-text.sqlite"), seed=3, validators=4, members=1)
    patient = Identity.generate()
    records = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1931-04-02",
         "name": [{"family": "Whitfield", "given": ["Marguerite"]}]},
        {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "63512-8"}]},
         "effectiveDateTime": "2026-01-05T10:00:00+01:00",
         "valueString": "Lives with daughter Maria Whitfield at 12 Oak St"},
        {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "72166-2"}]},
         "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "449868002"}],
                                  "text": "smokes since Maria left"}},
        {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "30525-0"}]},
         "valueQuantity": {"value": 95, "unit": "Years"}},
    ]
    for r in records:
        net.add_record(r, patient, writer=0)
    net.commit()
    net.grant(research_consent(patient, "diabetes"), patient, node=1)
    net.commit()
    with Ledger.open(net.location, network_key=net.network_key) as led:
        df = led.research_dataset(Identity.generate(), topic="diabetes", holder=net.node(0),
                                  institution=net.node(4).public)
    assert len(df) == 4
    text = df.to_csv()
    for secret in ["Maria", "Whitfield", "Oak St", "daughter", "smokes", "1931", "2026-01"]:
        assert secret not in text, secret
    assert df["value_text"].dropna().tolist() == ["449868002"]
    assert df["birth_year"].isna().all()
    ages = df[df["code"] == "30525-0"]
    assert ages["value"].tolist() == [90.0] and ages["unit"].tolist() == ["a"]


def test_the_caller_cannot_choose_the_release_time(ledger: Ledger, demo: DemoNetwork) -> None:
    with pytest.raises(TypeError):
        _ds(ledger, demo, now_ms=0)
