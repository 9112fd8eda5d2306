"""Research releases from Python: the one policy of the core (medchain_store::Ledger::
research_release), presented as typed columns."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import medchain
from medchain import Credential, Identity, Ledger, ResearchRequest
from medchain.ledger import DATASET_COLUMNS
from medchain.testing import HYPERTENSION, DemoNetwork, LocalNetwork, build_demo_network, research_consent

YEAR_MS = 365 * 86_400_000


def _ds(ledger: Ledger, demo: DemoNetwork, **kw):  # type: ignore[no-untyped-def]
    return ledger.research_dataset(demo.request(**kw), releaser=demo.holder)


def _expected_rows(demo: DemoNetwork) -> int:
    # Patient, two HbA1c, a diagnosis and a prescription each; the hypertension diagnoses
    # (every tenth patient from the fifth) form a cell below 11 patients and are suppressed.
    consenting = [i for i, c in enumerate(demo.consenting) if c]
    return 5 * len(consenting) - sum(1 for i in consenting if i % 10 == 4)


def test_only_consenting_patients_and_no_chain_wide_counts(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo)
    n = sum(demo.consenting)
    assert n >= 11
    assert df["pseudonym"].nunique() == n
    assert len(df) == _expected_rows(demo)
    # What the release says of itself: the study and what it released, nothing about who was
    # left out (no records, denied, not readable, erased, declined counts).
    summary = df.attrs["medchain"]
    assert set(summary) == {
        "study", "purpose", "topic", "longitudinal", "patients", "rows", "released_at_ms", "commitment",
    }
    assert summary["patients"] == n and summary["rows"] == len(df)
    assert summary["study"] == "demo-study" and summary["purpose"] == "HRESCH"


def test_small_cells_are_suppressed(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo)
    assert not (df["code"] == HYPERTENSION).any()
    assert (df[df["resource_type"] == "Condition"]["code"] == "44054006").all()


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
    assert pats["gender"].notna().all()
    # A birth year 90 or more years back is not released (Safe Harbor): those rows have none.
    years = pats["birth_year"].dropna()
    assert len(years) >= len(pats) - 2 and (years > time.gmtime().tm_year - 90).all()
    assert pats["state"].notna().all()
    meds = df[df["resource_type"] == "MedicationRequest"]
    assert (meds["code"] == "860975").all()


def test_no_identifiers_leak(ledger: Ledger, demo: DemoNetwork) -> None:
    df = _ds(ledger, demo)
    text = df.to_csv()
    assert "Springfield" not in text and "Family" not in text and "Main St" not in text
    for p in demo.patients:
        assert p.public_text not in text
    assert "p0" not in set(df["pseudonym"])


def test_rows_do_not_leave_in_chain_order(ledger: Ledger, demo: DemoNetwork) -> None:
    # Records were added patient by patient; rows come in the release key's order.
    df = _ds(ledger, demo)
    runs = (df["pseudonym"] != df["pseudonym"].shift()).sum()
    assert runs > df["pseudonym"].nunique() * 2


def test_revoked_and_non_consenting_excluded(ledger: Ledger, demo: DemoNetwork) -> None:
    from medchain._medchain import evaluate

    assert not demo.consenting[1]
    df = _ds(ledger, demo)
    assert df.groupby("pseudonym").size().isin([4, 5]).all()
    states = ledger.consents_of(demo.patients[1])
    assert states and not states[0].active
    assert not evaluate(states, demo.researcher, action="research", purpose="HRESCH",
                        topic="diabetes", role="researcher", institution=demo.institution)


def test_other_topic_releases_nothing(ledger: Ledger, demo: DemoNetwork) -> None:
    with pytest.raises(medchain.ConsentDenied, match="at least 11") as refusal:
        _ds(ledger, demo, topic="oncology")
    # The research policy refused it, not a ledger rule.
    assert refusal.value.rule is None


def test_arrow(ledger: Ledger, demo: DemoNetwork) -> None:
    import pyarrow as pa

    t = ledger.research_dataset(demo.request(), releaser=demo.holder, as_arrow=True)
    assert isinstance(t, pa.Table)
    assert t.num_rows == _expected_rows(demo)
    assert t.schema.field("value").type == pa.float64()
    assert t.schema.field("birth_year").type == pa.int32()
    assert b"commitment" in t.schema.metadata[b"medchain"]
    assert b"denied" not in t.schema.metadata[b"medchain"]


def test_only_a_member_institution_releases(ledger: Ledger, demo: DemoNetwork) -> None:
    # A patient, or someone outside the network, is not a releaser.
    for releaser in (demo.patients[0], Identity.generate()):
        with pytest.raises(medchain.ConsentDenied, match="member institution"):
            ledger.research_dataset(demo.request(), releaser=releaser)
    # A member that added none of these records has nothing to release.
    with pytest.raises(medchain.ConsentDenied, match="at least 11"):
        ledger.research_dataset(demo.request(), releaser=demo.network.node(1))


def test_releases_are_unlinkable_unless_longitudinal(ledger: Ledger, demo: DemoNetwork) -> None:
    a = set(_ds(ledger, demo)["pseudonym"])
    b = set(_ds(ledger, demo)["pseudonym"])
    assert a and b and not (a & b), "two releases of one study share no pseudonym"
    c = set(_ds(ledger, demo, longitudinal=True)["pseudonym"])
    d = set(_ds(ledger, demo, longitudinal=True)["pseudonym"])
    assert c == d and not (c & a)
    e = set(_ds(ledger, demo, study="another", longitudinal=True)["pseudonym"])
    assert not (e & c)


def test_attack_credentials_that_do_not_hold(ledger: Ledger, demo: DemoNetwork) -> None:
    chain = demo.network.chain_id
    later = int(time.time() * 1000) + YEAR_MS

    def refused(cred: Credential, match: str, rule: str = "bad_credential") -> None:
        request = ResearchRequest.sign(demo.researcher, cred, chain_id=chain, study="s", topic="diabetes",
                                       resource_types=["Observation"])
        with pytest.raises(medchain.ConsentDenied, match=match) as refusal:
            ledger.research_release(request, releaser=demo.holder)
        # The rule that refused it is named (generic, as the message is).
        assert refusal.value.rule == rule

    # Self-issued: the researcher attests its own role.
    refused(Credential.issue(demo.researcher, demo.researcher, chain_id=chain, expires_ms=later),
            "not a member institution")
    # Expired.
    refused(Credential.issue(demo.network.node(4), demo.researcher, chain_id=chain, expires_ms=1),
            "expired")
    # Issued for another network.
    refused(Credential.issue(demo.network.node(4), demo.researcher, chain_id="ab" * 32, expires_ms=later),
            "signature does not verify")
    # Another researcher's credential.
    refused(Credential.issue(demo.network.node(4), Identity.generate(), chain_id=chain, expires_ms=later),
            "another holder")
    # A clinician's role.
    refused(Credential.issue(demo.network.node(4), demo.researcher, chain_id=chain, expires_ms=later,
                             role="clinician"), "researcher credential", rule="not_a_researcher")


def test_attack_requests_that_do_not_hold(ledger: Ledger, demo: DemoNetwork) -> None:
    signed = demo.request().to_bytes()
    assert ResearchRequest.from_bytes(signed).to_bytes() == signed
    # A request signed for another network.
    other = ResearchRequest.sign(demo.researcher, demo.credential, chain_id="cd" * 32, study="s",
                                 topic="diabetes", resource_types=["Observation"])
    with pytest.raises(medchain.InvalidSignature):
        ledger.research_release(other, releaser=demo.holder)
    # The study widened after signing: the topic byte changed.
    tampered = bytearray(signed)
    at = tampered.index(b"diabetes")
    tampered[at] = ord("D")
    with pytest.raises(medchain.InvalidSignature):
        ledger.research_release(ResearchRequest.from_bytes(bytes(tampered)), releaser=demo.holder)
    with pytest.raises(medchain.DecodeError):
        ResearchRequest.from_bytes(signed[:-1])


def test_release_bad_input(ledger: Ledger, demo: DemoNetwork) -> None:
    with pytest.raises(medchain.WrongType):
        ledger.research_dataset(demo.request(), releaser=demo.holder.public)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        ledger.research_dataset(42, releaser=demo.holder)  # type: ignore[arg-type]
    with pytest.raises(medchain.InvalidArgument, match="study id"):
        demo.request(study=" ")
    with pytest.raises(medchain.InvalidArgument, match="names the data"):
        demo.request(resource_types=())
    with pytest.raises(medchain.InvalidArgument, match="research hierarchy"):
        ResearchRequest.sign(demo.researcher, demo.credential, chain_id=demo.network.chain_id,
                             study="s", topic=None, resource_types=["Patient"], purpose="TREAT")
    with pytest.raises(medchain.InvalidArgument, match="role"):
        Credential.issue(demo.holder, demo.researcher, chain_id=demo.network.chain_id, expires_ms=1,
                         role="wizard")
    with pytest.raises(medchain.WrongType):
        Credential.issue(demo.holder.public, demo.researcher, chain_id=demo.network.chain_id,  # type: ignore[arg-type]
                         expires_ms=1)


def test_the_caller_cannot_choose_the_release_time(ledger: Ledger, demo: DemoNetwork) -> None:
    before = int(time.time() * 1000)
    release = ledger.research_release(demo.request(), releaser=demo.holder)
    assert release.released_at_ms >= before
    with pytest.raises(TypeError):
        ledger.research_dataset(demo.request(), releaser=demo.holder, now_ms=0)  # type: ignore[call-arg]


def test_release_runs_without_the_gil(ledger: Ledger, demo: DemoNetwork) -> None:
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


def test_the_log_goes_on_chain_and_names_no_patient(tmp_path: Path) -> None:
    demo = build_demo_network(str(tmp_path / "log.sqlite"), patients=24, records_per_patient=1)
    with Ledger.open(demo.location, network_key=demo.network_key) as led:
        release = led.research_release(demo.request(resource_types=["Patient"]), releaser=demo.holder)
    assert release.patients == 12 and release.rows == 12
    demo.network.log_release(release.log, node=0)
    demo.network.commit()
    with Ledger.open(demo.location, network_key=demo.network_key) as led:
        last = led.block(led.height)
        (tx,) = last.transactions
        assert tx.kind == "ResearchReleased"
        body = tx.body
        assert body["study"] == "demo-study" and body["commitment"] == release.commitment
        assert body["researcher"] == demo.researcher.public_text
        assert body["patients"] % 10 == 0 and abs(body["patients"] - 12) < 10
        text = repr(body)
        for p in demo.patients:
            assert p.public_text not in text
            assert led.audit_trail(patient=p) == []
    # Only a release's log is accepted as one.
    with pytest.raises(medchain.DecodeError):
        demo.network.log_release(b"\x07")


def test_free_text_and_old_ages_never_reach_the_dataset(tmp_path: Path) -> None:
    """valueString is never copied (value_text holds codes only); a 95-year-old's birth year,
    an age over 89 and day-precision dates do not survive."""
    net = LocalNetwork(str(tmp_path / "free-text.sqlite"), seed=3, validators=4, members=1)
    patients = [Identity.generate() for _ in range(11)]
    for patient in patients:
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
    for patient in patients:
        net.grant(research_consent(patient, "diabetes"), patient, node=1)
    net.commit()
    researcher = Identity.generate()
    credential = Credential.issue(net.node(4), researcher, chain_id=net.chain_id,
                                  expires_ms=int(time.time() * 1000) + YEAR_MS)
    request = ResearchRequest.sign(researcher, credential, chain_id=net.chain_id, study="ages",
                                   topic="diabetes", resource_types=["Patient", "Observation"])
    with Ledger.open(net.location, network_key=net.network_key) as led:
        df = led.research_dataset(request, releaser=net.node(0))
    assert len(df) == 44
    # Everything but the pseudonyms (32 random hex digits, which may hold any four digits).
    text = df.drop(columns=["pseudonym"]).to_csv(index=False)
    for secret in ["Maria", "Whitfield", "Oak St", "daughter", "smokes", "1931", "2026-01"]:
        assert secret not in text, secret
    assert set(df["value_text"].dropna()) == {"449868002"}
    assert df["birth_year"].isna().all()
    ages = df[df["code"] == "30525-0"]
    assert set(ages["value"]) == {90.0} and set(ages["unit"]) == {"a"}


def test_synthetic_columns() -> None:
    from medchain._medchain import _synthetic_dataset_columns

    cols = _synthetic_dataset_columns(8)
    assert len(cols["pseudonym"]) == 8
    assert cols["resource_type"][:4] == ["Patient", "Observation", "Condition", "MedicationRequest"]
    with pytest.raises(medchain.InvalidArgument):
        _synthetic_dataset_columns(10**9)
