"""Enrolment: the patient seals their writer index key to a hospital, which indexes and finds
the patient's records with it without ever holding the patient's identity."""

from __future__ import annotations

import pytest

import medchain
from medchain import Identity, IndexKey, Ledger
from medchain.testing import DemoNetwork

LOINC_HBA1C = ("http://loinc.org", "4548-4")


def test_imported_key_finds_what_the_patients_writer_key_finds(ledger: Ledger, demo: DemoNetwork) -> None:
    p = demo.patients[0]
    sealed = IndexKey.export_writer_key(p, demo.holder.public, ledger.chain_id)
    assert isinstance(sealed, bytes) and len(sealed) == 449
    key = IndexKey.import_writer_key(sealed, demo.holder, p.public, ledger.chain_id)
    assert key.is_writer_key
    expected = ledger.search(code=LOINC_HBA1C, patient=p, writer=demo.holder)
    assert expected
    assert ledger.search(code=LOINC_HBA1C, index_key=key) == expected
    assert ledger.search("Patient", index_key=key) == ledger.search(
        "Patient", index_key=IndexKey.for_patient(p).for_writer(demo.holder)
    )
    # It is a writer key: it derives no further writer key.
    with pytest.raises(medchain.InvalidArgument):
        key.for_writer(demo.holder)
    # The sealed bytes are what the hospital stores; they open again (and also from text ids).
    again = IndexKey.import_writer_key(bytearray(sealed), demo.holder, p.public_text, ledger.chain_id.upper())
    assert ledger.search(code=LOINC_HBA1C, index_key=again) == expected


def test_enrolment_attacks_are_refused(ledger: Ledger, demo: DemoNetwork) -> None:
    p, mallory, other_hospital = demo.patients[0], demo.patients[1], Identity.generate()
    chain = ledger.chain_id
    sealed = IndexKey.export_writer_key(p, demo.holder, chain)
    # Sealed to another hospital.
    with pytest.raises(medchain.NotAReader, match="sealed to another writer"):
        IndexKey.import_writer_key(sealed, other_hospital, p, chain)
    # Sealed on another network.
    sibling = "ab" * 32
    with pytest.raises(medchain.InvalidArgument, match="another network"):
        IndexKey.import_writer_key(sealed, demo.holder, p, sibling)
    with pytest.raises(medchain.InvalidArgument, match="another network"):
        IndexKey.import_writer_key(IndexKey.export_writer_key(p, demo.holder, sibling), demo.holder, p, chain)
    # Another patient's enrolment offered as this patient's.
    theirs = IndexKey.export_writer_key(mallory, demo.holder, chain)
    with pytest.raises(medchain.InvalidArgument, match="another patient"):
        IndexKey.import_writer_key(theirs, demo.holder, p, chain)
    # Any altered byte is refused (bad signature, bad key or malformed); nothing opens.
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises((medchain.InvalidSignature, medchain.DecodeError, medchain.InvalidArgument, medchain.NotAReader)):
            IndexKey.import_writer_key(bytes(bad), demo.holder, p, chain)
    # A flip in the wrapped key (offset 250) breaks the patient's signature over it.
    bad = bytearray(sealed)
    bad[250] ^= 0x01
    with pytest.raises(medchain.InvalidSignature, match="patient's signature"):
        IndexKey.import_writer_key(bytes(bad), demo.holder, p, chain)
    # Truncated, extended, unknown version.
    with pytest.raises(medchain.DecodeError, match="input ended early"):
        IndexKey.import_writer_key(sealed[:-1], demo.holder, p, chain)
    with pytest.raises(medchain.DecodeError, match="trailing byte"):
        IndexKey.import_writer_key(sealed + b"\0", demo.holder, p, chain)
    with pytest.raises(medchain.DecodeError, match="unknown format version 3"):
        IndexKey.import_writer_key(b"\x03" + sealed[1:], demo.holder, p, chain)


def test_enrolment_bad_arguments(ledger: Ledger, demo: DemoNetwork) -> None:
    p = demo.patients[0]
    with pytest.raises(medchain.DecodeError, match="chain_id"):
        IndexKey.export_writer_key(p, demo.holder, "xyz")
    with pytest.raises(medchain.WrongType):
        IndexKey.export_writer_key(p, demo.holder, 7)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        IndexKey.export_writer_key(p.public, demo.holder, ledger.chain_id)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        IndexKey.import_writer_key("not bytes", demo.holder, p, ledger.chain_id)  # type: ignore[arg-type]
    with pytest.raises(medchain.WrongType):
        IndexKey.import_writer_key(b"", demo.holder.public, p, ledger.chain_id)  # type: ignore[arg-type]
    with pytest.raises(medchain.DecodeError):
        IndexKey.export_writer_key(p, "mcid1nope", ledger.chain_id)
    assert "IndexKey(writer)" == repr(
        IndexKey.import_writer_key(
            IndexKey.export_writer_key(p, demo.holder, ledger.chain_id), demo.holder, p, ledger.chain_id
        )
    )
