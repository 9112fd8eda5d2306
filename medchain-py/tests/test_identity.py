from __future__ import annotations

import pytest

import medchain
from medchain import Identity, NetworkKey, PublicIdentity


def test_generate_is_random() -> None:
    a, b = Identity.generate(), Identity.generate()
    assert a.public != b.public
    assert a.public_text != b.public_text


def test_public_text_round_trip() -> None:
    a = Identity.generate()
    assert a.public_text.startswith("mcid1")
    p = PublicIdentity.from_text(a.public_text)
    assert p == a.public
    assert p.text == a.public_text
    assert len({p, a.public}) == 1
    assert p.id == a.id


def test_backup_round_trip() -> None:
    a = Identity.generate()
    data = a.export_backup("correct horse", fast=True)
    assert isinstance(data, bytes)
    b = Identity.restore_backup(data, "correct horse")
    assert b.public == a.public
    assert Identity.restore_backup(data, b"correct horse").public == a.public


def test_backup_wrong_password() -> None:
    data = Identity.generate().export_backup("right", fast=True)
    with pytest.raises(medchain.WrongPassword):
        Identity.restore_backup(data, "wrong")


def test_backup_altered_bytes() -> None:
    data = bytearray(Identity.generate().export_backup("pw", fast=True))
    data[-1] ^= 1
    with pytest.raises(medchain.WrongPassword):
        Identity.restore_backup(bytes(data), "pw")


@pytest.mark.parametrize("junk", [b"", b"\x00", b"garbage" * 10, bytes(range(256)) * 4])
def test_backup_garbage(junk: bytes) -> None:
    with pytest.raises(medchain.MedchainError):
        Identity.restore_backup(junk, "pw")


def test_backup_wrong_types() -> None:
    with pytest.raises(medchain.WrongType):
        Identity.restore_backup("not bytes", "pw")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Identity.generate().export_backup(12345)  # type: ignore[arg-type]


def test_empty_password_refused() -> None:
    with pytest.raises(medchain.InvalidArgument):
        Identity.generate().export_backup("", fast=True)


@pytest.mark.parametrize("text", ["", "mcid1", "mcid1zzzz", "hello", "x" * 10000])
def test_public_identity_bad_text(text: str) -> None:
    with pytest.raises(medchain.DecodeError):
        PublicIdentity.from_text(text)


def test_public_identity_wrong_type() -> None:
    with pytest.raises(medchain.WrongType):
        PublicIdentity.from_text(42)  # type: ignore[arg-type]


def test_network_key_protected_round_trip() -> None:
    k = NetworkKey.generate()
    data = k.export_protected("pass", fast=True)
    assert NetworkKey.import_protected(data, "pass").fingerprint == k.fingerprint
    with pytest.raises(medchain.WrongPassword):
        NetworkKey.import_protected(data, "nope")


def test_classes_are_frozen() -> None:
    a = Identity.generate()
    with pytest.raises(AttributeError):
        a.public_text = "x"  # type: ignore[misc]
    assert "mcid1" in repr(a)


def test_errors_hierarchy() -> None:
    for cls in (
        medchain.InvalidSignature,
        medchain.ConsentDenied,
        medchain.TamperedLedger,
        medchain.DecodeError,
        medchain.WrongPassword,
        medchain.NotFhir,
        medchain.StoreError,
        medchain.WrongType,
    ):
        assert issubclass(cls, medchain.MedchainError)
    assert issubclass(medchain.WrongType, TypeError)
    assert issubclass(medchain.NotFhir, ValueError)
