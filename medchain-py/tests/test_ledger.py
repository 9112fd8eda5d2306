from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import List

import pytest

import medchain
from medchain import Identity, IndexKey, Ledger, NetworkKey
from medchain.testing import DemoNetwork


def test_open_with_key_file(demo: DemoNetwork, key_file: Path) -> None:
    with Ledger.open(demo.location, key_file, "s3cret") as l:
        assert l.height == demo.network.height
    os.environ["MEDCHAIN_PASSPHRASE"] = "s3cret"
    try:
        assert Ledger.open(Path(demo.location), str(key_file)).height > 0
    finally:
        del os.environ["MEDCHAIN_PASSPHRASE"]


def test_open_failures(demo: DemoNetwork, key_file: Path, tmp_path: Path) -> None:
    with pytest.raises(medchain.WrongPassword):
        Ledger.open(demo.location, key_file, "wrong")
    with pytest.raises(medchain.WrongNetworkKey):
        Ledger.open(demo.location, network_key=NetworkKey.generate())
    with pytest.raises(medchain.StoreError):
        Ledger.open(tmp_path / "missing.sqlite", network_key=demo.network_key)
    with pytest.raises(medchain.StoreError):
        Ledger.open(demo.location, tmp_path / "missing.key", "x")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(medchain.MedchainError):
        Ledger.open(junk, network_key=demo.network_key)
    with pytest.raises(medchain.InvalidArgument):
        Ledger.open(demo.location)
    with pytest.raises(medchain.InvalidArgument):
        Ledger.open(demo.location, key_file, "s3cret", network_key=demo.network_key)
    with pytest.raises(medchain.WrongType):
        Ledger.open(42, network_key=demo.network_key)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        Ledger.open(demo.location, network_key="key")  # type: ignore[arg-type]


def test_closed_ledger(demo: DemoNetwork) -> None:
    l = Ledger.open(demo.location, network_key=demo.network_key)
    l.close()
    with pytest.raises(medchain.StoreError):
        l.height
    assert "closed" in repr(l)


def test_chain_facts(ledger: Ledger, demo: DemoNetwork) -> None:
    assert ledger.chain_name == "medchain-testnet"
    assert len(ledger) == ledger.height == demo.network.height
    members = ledger.members()
    assert len(members) == 5 and sum(1 for m in members if m[2]) == 4
    assert members[0][1] == demo.holder.public


def test_blocks_and_transactions(ledger: Ledger, demo: DemoNetwork) -> None:
    blocks = list(ledger)
    assert [b.height for b in blocks] == list(range(1, ledger.height + 1))
    for prev, b in zip(blocks, blocks[1:]):
        assert b.prev == prev.hash
    txs = list(ledger.transactions())
    assert sum(len(b.transactions) for b in blocks) == len(txs)
    kinds = {t.kind for t in txs}
    assert {"RecordAdded", "ConsentGranted", "ConsentRevoked"} <= kinds
    added = [t for t in txs if t.kind == "RecordAdded"]
    assert len(added) == len(demo.record_ids)
    assert {t.body["record_id"] for t in added} == set(demo.record_ids)
    assert all("valueQuantity" not in str(t.body) for t in txs)
    with pytest.raises(AttributeError):
        blocks[0].height = 9  # type: ignore[misc]


def test_block_bad_heights(ledger: Ledger) -> None:
    with pytest.raises(medchain.InvalidArgument):
        ledger.block(0)
    with pytest.raises(medchain.InvalidArgument):
        ledger.block(ledger.height + 1)
    with pytest.raises(medchain.WrongType):
        ledger.block("1")  # type: ignore[arg-type]
    with pytest.raises(medchain.InvalidArgument):
        ledger.block(-1)
    with pytest.raises(medchain.WrongType):
        list(ledger.blocks("x"))  # type: ignore[arg-type]


def test_verify_with_callback(ledger: Ledger) -> None:
    seen: List[medchain.VerifyProgress] = []
    s = ledger.verify(progress=seen.append)
    assert s.blocks == ledger.height and s.head_proven and s.transactions > 0
    assert seen and seen[-1].blocks == s.blocks
    assert s.native_seconds <= s.seconds


def test_verify_with_tqdm_and_quiet(ledger: Ledger) -> None:
    assert ledger.verify(progress=True).blocks == ledger.height
    assert ledger.verify(progress=False).head_proven
    with pytest.raises(medchain.WrongType):
        ledger.verify(progress="yes")  # type: ignore[arg-type]


def test_verify_callback_error_propagates(ledger: Ledger) -> None:
    def boom(p: medchain.VerifyProgress) -> None:
        raise KeyError("stop")

    with pytest.raises(KeyError, match="stop"):
        ledger.verify(progress=boom)


def test_tampered_ledger(tampered_copy: Path, demo: DemoNetwork) -> None:
    with pytest.raises(medchain.TamperedLedger):
        l = Ledger.open(tampered_copy, network_key=demo.network_key)
        l.verify(progress=False)


def test_get_record_and_open(ledger: Ledger, demo: DemoNetwork) -> None:
    rid = demo.record_ids[0]
    got = ledger.get_record(rid)
    assert got is not None and got.sealed is not None
    assert got.entry.record_id == rid and got.entry.resource_type == "Patient"
    assert got.sealed.open(demo.holder)["resourceType"] == "Patient"
    assert got.sealed.open(demo.patients[0])["id"] == "p0"
    with pytest.raises(medchain.NotAReader):
        got.sealed.open(demo.researcher)
    assert ledger.get_record("00" * 32) is None
    with pytest.raises(medchain.DecodeError):
        ledger.get_record("not-hex")
    with pytest.raises(medchain.WrongType):
        ledger.get_record(5)  # type: ignore[arg-type]


def test_records_of(ledger: Ledger, demo: DemoNetwork) -> None:
    entries = ledger.records_of(demo.patients[2])
    assert len(entries) == 5
    assert {e.resource_type for e in entries} >= {"Patient", "Observation"}
    assert ledger.records_of(Identity.generate()) == []
    with pytest.raises(medchain.WrongType):
        ledger.records_of(1.5)  # type: ignore[arg-type]


def test_consents_of(ledger: Ledger, demo: DemoNetwork) -> None:
    states = ledger.consents_of(demo.patients[0])
    assert len(states) == 1 and states[0].active and states[0].consent.patient == demo.patients[0].public
    assert ledger.consents_of(demo.patients[3]) == []


def test_audit_trail(ledger: Ledger, demo: DemoNetwork) -> None:
    assert ledger.audit_trail(patient=demo.patients[0]) == []
    assert ledger.audit_trail(patient=demo.patients[0], fhir=True) == []
    assert ledger.audit_trail(record_id=demo.record_ids[0]) == []
    with pytest.raises(medchain.InvalidArgument):
        ledger.audit_trail()
    with pytest.raises(medchain.DecodeError):
        ledger.audit_trail(record_id="xyz")


def test_search(ledger: Ledger, demo: DemoNetwork) -> None:
    p = demo.patients[0]
    hits = ledger.search(code=("http://loinc.org", "4548-4"), patient=p, writer=demo.holder)
    mine = {e.record_id for e in ledger.records_of(p) if e.resource_type == "Observation"}
    assert hits and {h.record_id for h in hits} == mine
    key = IndexKey.for_patient(p).for_writer(demo.holder.public)
    assert key.is_writer_key
    assert ledger.search("http://loinc.org|4548-4", index_key=key) == hits
    assert len(ledger.search("Patient", index_key=key)) == 1
    other = IndexKey.for_patient(p).for_writer(Identity.generate())
    assert ledger.search(code=("http://loinc.org", "4548-4"), index_key=other) == []


def test_search_uses_the_block_filters(ledger: Ledger, demo: DemoNetwork) -> None:
    # The local network builds each block's secure-index filter from the writers' trapdoors
    # (as the consensus node does), so no block is searched record by record.
    p = demo.patients[0]
    hits = ledger.search(code=("http://loinc.org", "4548-4"), patient=p, writer=demo.holder)
    assert isinstance(hits, medchain.SearchResults) and isinstance(hits, list)
    stats = hits.stats
    assert isinstance(stats, medchain.SearchStats)
    assert stats.indexed_blocks >= 1
    assert stats.exhaustive_blocks == 0
    assert stats.prf_evaluations >= stats.indexed_blocks
    assert 0 <= stats.blocks_skipped <= stats.indexed_blocks
    # A code no record holds: no hit, and every block it passes is either ruled out by its
    # filter or (rarely, a filter false positive) checked and found empty.
    absent = ledger.search(code=("http://loinc.org", "0000-0"), patient=p, writer=demo.holder)
    assert absent == [] and absent.stats.exhaustive_blocks == 0
    assert absent.stats.blocks_skipped >= absent.stats.indexed_blocks - 2


def test_search_bad_input(ledger: Ledger, demo: DemoNetwork) -> None:
    p = demo.patients[0]
    with pytest.raises(medchain.InvalidArgument):
        ledger.search(index_key=IndexKey.for_patient(p).for_writer(demo.holder))
    with pytest.raises(medchain.InvalidArgument):
        ledger.search("Patient", index_key=IndexKey.for_patient(p))
    with pytest.raises(medchain.InvalidArgument):
        IndexKey.for_patient(p).for_writer(demo.holder).for_writer(demo.holder)
    with pytest.raises(medchain.InvalidArgument):
        ledger.search("Patient")
    with pytest.raises(medchain.WrongType):
        ledger.search(3.5)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        ledger.search(code="4548-4", patient=p, writer=demo.holder)  # type: ignore[arg-type]
    with pytest.raises(medchain.InvalidArgument):
        ledger.search(code=("", ""), patient=p, writer=demo.holder)


def test_threads_share_a_ledger(ledger: Ledger) -> None:
    results: List[int] = []
    errors: List[BaseException] = []

    def work() -> None:
        try:
            results.append(ledger.verify(progress=False).blocks)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [ledger.height] * 4
