"""Smoke test of the generated Python bindings (uniffi, library mode) of the wallet.

`medchain-ffi/scripts/test.sh` generates `medchain_ffi.py` next to `libmedchain_ffi.so`, puts
that directory on PYTHONPATH and the fixture chain's directory in MEDCHAIN_FIXTURES.
"""

import os
import pathlib

import pytest

import medchain_ffi as m

FIXTURES = pathlib.Path(os.environ["MEDCHAIN_FIXTURES"])


def data(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def text(name: str) -> str:
    return data(name).decode()


@pytest.fixture(scope="module")
def wallet() -> m.Wallet:
    w = m.Wallet.restore(m.new_in_memory_wallet_store(), data("patient.backup"), text("patient.password"))
    w.trust_network(data("genesis.bin"), text("genesis.hash"))
    return w


class DictStore(m.WalletStore):
    """The foreign trait implemented in Python."""

    def __init__(self) -> None:
        self.d: dict[str, bytes] = {}

    def get(self, key: str):
        return self.d.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.d[key] = value

    def delete(self, key: str) -> None:
        self.d.pop(key, None)

    def keys(self) -> list[str]:
        return list(self.d)


def test_create_open_and_wrong_password() -> None:
    store = DictStore()
    w = m.Wallet.create(store, "pw")
    assert set(store.d) == {"identity.backup", "identity.public"}
    assert m.Wallet.open(store, "pw").public_identity() == w.public_identity()
    with pytest.raises(m.WalletError.WrongPassword):
        m.Wallet.open(store, "nope")


def test_identity_text(wallet: m.Wallet) -> None:
    assert wallet.public_identity() == text("patient.id")
    assert m.parse_public_identity(wallet.public_identity()) == wallet.identity_info()
    with pytest.raises(m.WalletError.InvalidIdentity):
        m.parse_public_identity("mcid1nope")


def test_consent_and_erasure_are_signed(wallet: m.Wallet) -> None:
    rule = m.ConsentRule(
        effect=m.RuleEffect.PERMIT,
        grantees=[m.Grantee.PARTY(text("doctor.id"))],
        actions=[m.ConsentAction.READ],
        purposes=[m.PurposeOfUse.TREATMENT()],
        resource_types=["Observation"],
    )
    draft = m.ConsentDraft(
        summary="Dr. Ruiz may read my lab results for my treatment",
        issued_ms=1_790_000_000_000,
        rules=[rule],
    )
    signed = wallet.sign_consent(draft)
    network = m.TrustedNetwork(data("genesis.bin"), None)
    info = m.inspect_signed_request(signed.body, network)
    assert info.kind == m.RequestKind.CONSENT_GRANT
    assert info.subject_id == signed.subject_id
    erase = wallet.request_erasure(text("record-erased.id"))
    assert m.inspect_signed_request(erase.body, network).kind == m.RequestKind.RECORD_ERASURE
    # Signed for this network: another network's genesis does not verify it.
    staging = m.TrustedNetwork(data("genesis-staging.bin"), None)
    with pytest.raises(m.WalletError.BadSignature):
        m.inspect_signed_request(signed.body, staging)


def test_open_record(wallet: m.Wallet) -> None:
    rec = wallet.open_record(data("record-mine.sealed"))
    assert rec.is_mine and rec.resource_type == "Observation"
    with pytest.raises(m.WalletError.NotAddressedToMe):
        wallet.open_record(data("record-foreign.sealed"))
    with pytest.raises(m.WalletError.Malformed):
        wallet.open_record(b"\x01\x02")


def test_light_client(wallet: m.Wallet) -> None:
    tx = wallet.verify_inclusion(data("proof-record.bin"))
    assert tx.kind == m.TransactionKind.RECORD_ADDED and tx.height == 1
    with pytest.raises(m.ProofError.HeaderNotCertified):
        wallet.verify_inclusion(data("proof-tampered-header.bin"))
    with pytest.raises(m.ProofError.NotInBlock):
        wallet.verify_inclusion(data("proof-other-block.bin"))
    with pytest.raises(m.ProofError.UntrustedVoter):
        wallet.verify_inclusion(data("proof-outsider-votes.bin"))


def test_audit_trail(wallet: m.Wallet) -> None:
    trail = wallet.read_audit_trail(data("audit.bin"))
    assert [a.emergency for a in trail].count(True) == 2
    assert [a.action for a in trail[-2:]] == [m.AuditAction.ERASED, m.AuditAction.DENIED]
    assert (trail[-1].denied_by, trail[-1].consent_id) == ("denied", None)
    assert trail[-1].relayed_by is not None and len(trail[-1].relayed_by) == 64
    assert all(a.denied_by is None for a in trail[:-1])
