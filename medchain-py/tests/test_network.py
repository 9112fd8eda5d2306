"""The local network writes through real consensus nodes: a hospital adds a patient's records
with the enrolment the patient's wallet sealed to it (never the patient's identity), and what
an enrolment does not allow is refused before anything is submitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

import medchain
from medchain import Identity, IndexKey, Ledger
from medchain.testing import LocalNetwork, research_consent

LOINC_HBA1C = ("http://loinc.org", "4548-4")


def hba1c(value: float) -> Dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": "Patient/alice"},
        "effectiveDateTime": "2026-10-14T09:30:00Z",
        "code": {"coding": [{"system": LOINC_HBA1C[0], "code": LOINC_HBA1C[1]}]},
        "valueQuantity": {"value": value, "unit": "%"},
    }


def test_a_hospital_adds_records_with_the_patients_enrolment(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "enrolled.sqlite", validators=3, members=1)
    hospital, alice = net.node(0), Identity.generate()
    # Alice's wallet seals her writer index key (and consent tag key) to the hospital.
    enrolment = IndexKey.export_writer_key(alice, hospital.public, net.chain_id)
    # The hospital holds only public things of Alice's: her public identity (or its text).
    first = net.add_record(hba1c(7.9), alice.public, writer=0, enrolment=enrolment)
    second = net.add_record(hba1c(7.1), alice.public_text, writer=0, enrolment=bytearray(enrolment))
    # The old path: the patient's identity (the enrolment is made from it).
    third = net.add_record(hba1c(6.8), alice, writer=0)
    height = net.commit()
    assert height == net.height >= 1
    with Ledger.open(net.location, network_key=net.network_key) as led:
        assert led.height == height
        assert led.verify(progress=False).head_proven
        entries = led.records_of(alice.public)
        assert sorted(e.record_id for e in entries) == sorted([first, second, third])
        # The hospital contributed them (a contributor is named by its verify key, hex: the
        # start of its identity text).
        (contributor,) = {e.contributor for e in entries}
        assert contributor in hospital.public_text
        # The key the hospital imported finds every one, as the patient's own writer key does.
        imported = IndexKey.import_writer_key(enrolment, hospital, alice.public, net.chain_id)
        found = {h.record_id for h in led.search(code=LOINC_HBA1C, index_key=imported)}
        assert found == {first, second, third}
        assert found == {h.record_id for h in led.search(code=LOINC_HBA1C, patient=alice, writer=hospital)}
        # The records are classified under Alice's tag key: her research consent covers them.
        assert all(e.resource_type == "Observation" for e in entries)


def test_enrolments_that_do_not_hold_are_refused_and_nothing_commits(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "attacks.sqlite", validators=3, members=1)
    alice, mallory = Identity.generate(), Identity.generate()
    chain = net.chain_id
    to_other_hospital = IndexKey.export_writer_key(alice, net.node(1).public, chain)
    # Sealed to another hospital: the writer cannot open it.
    with pytest.raises(medchain.NotAReader, match="sealed to another writer"):
        net.add_record(hba1c(7.9), alice.public, writer=0, enrolment=to_other_hospital)
    # Another patient's enrolment offered for this patient.
    theirs = IndexKey.export_writer_key(mallory, net.node(0).public, chain)
    with pytest.raises(medchain.InvalidArgument, match="another patient"):
        net.add_record(hba1c(7.9), alice.public, writer=0, enrolment=theirs)
    # Sealed on another network.
    elsewhere = IndexKey.export_writer_key(alice, net.node(0).public, "ab" * 32)
    with pytest.raises(medchain.InvalidArgument, match="another network"):
        net.add_record(hba1c(7.9), alice.public, writer=0, enrolment=elsewhere)
    # Altered: the patient's signature over the wrapped key breaks; truncated; not bytes.
    good = IndexKey.export_writer_key(alice, net.node(0).public, chain)
    bad = bytearray(good)
    bad[250] ^= 0x01
    with pytest.raises(medchain.InvalidSignature, match="patient's signature"):
        net.add_record(hba1c(7.9), alice.public, writer=0, enrolment=bytes(bad))
    with pytest.raises(medchain.DecodeError):
        net.add_record(hba1c(7.9), alice.public, writer=0, enrolment=good[:-1])
    with pytest.raises(medchain.WrongType):
        net.add_record(hba1c(7.9), alice.public, writer=0, enrolment="not bytes")  # type: ignore[arg-type]
    # Without an enrolment the patient's identity is needed: a public identity is not enough.
    with pytest.raises(medchain.WrongType, match="enrolment"):
        net.add_record(hba1c(7.9), alice.public, writer=0)
    # A good enrolment for another writer's node index.
    with pytest.raises(medchain.InvalidArgument, match="no node 9"):
        net.add_record(hba1c(7.9), alice.public, writer=9, enrolment=good)
    # Nothing was submitted: nothing commits.
    assert net.commit() == 0
    with Ledger.open(net.location, network_key=net.network_key) as led:
        assert led.height == 0
        assert led.records_of(alice.public) == []


def test_a_refused_transaction_is_reported_and_the_rest_commits(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "mixed.sqlite")
    alice = Identity.generate()
    enrolment = IndexKey.export_writer_key(alice, net.node(0).public, net.chain_id)
    record = net.add_record(hba1c(7.9), alice.public, enrolment=enrolment)
    consent = net.grant(research_consent(alice, "diabetes"), alice, node=1)
    # Revoking a consent nobody granted breaks a ledger rule.
    net.revoke("ab" * 32, alice, node=2)
    with pytest.raises(medchain.ConsentDenied) as refused:
        net.commit()
    assert refused.value.rule is not None
    assert net.height >= 1
    with Ledger.open(net.location, network_key=net.network_key) as led:
        assert [e.record_id for e in led.records_of(alice.public)] == [record]
        assert [c.id for c in led.consents_of(alice.public)] == [consent]
    # The refusal was reported once; the next commit has nothing left to do.
    height = net.height
    assert net.commit() == height


def test_submissions_from_every_node_commit_on_one_chain(tmp_path: Path) -> None:
    net = LocalNetwork(tmp_path / "nodes.sqlite", validators=4, members=2)
    assert net.node_count == 6
    patients = [Identity.generate() for _ in range(6)]
    for i, p in enumerate(patients):
        enrolment = IndexKey.export_writer_key(p, net.node(i).public, net.chain_id)
        net.add_record(hba1c(6.0 + i / 10), p.public, writer=i, enrolment=enrolment)
    net.commit()
    with Ledger.open(net.location, network_key=net.network_key) as led:
        for i, p in enumerate(patients):
            (entry,) = led.records_of(p.public)
            assert entry.contributor in net.node(i).public_text
        assert led.verify(progress=False).head_proven
