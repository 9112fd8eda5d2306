"""Against the clinic example's ledger (built by examples/src/clinic.rs)."""

from __future__ import annotations

from pathlib import Path

import pytest

import medchain
from medchain import Ledger


def _open(clinic: Path, key: "Path | None" = None) -> Ledger:
    return Ledger.open(clinic, f"{key or clinic}.key", "clinic-demo")


def test_clinic_opens_and_verifies(clinic: Path) -> None:
    with _open(clinic) as l:
        s = l.verify(progress=False)
        assert s.head_proven and s.blocks == l.height >= 5
        assert l.chain_name == "clinic-network"
        names = [m[0] for m in l.members()]
        assert "St. Mary's Hospital" in names


def test_clinic_wrong_passphrase(clinic: Path) -> None:
    with pytest.raises(medchain.WrongPassword):
        Ledger.open(clinic, f"{clinic}.key", "not-the-passphrase")


def test_clinic_audit_trail(clinic: Path) -> None:
    with _open(clinic) as l:
        logged = [t for t in l.transactions() if t.kind == "AccessLogged"]
        assert logged
        rid = logged[0].body["record_id"]
        trail = l.audit_trail(record_id=rid)
        assert trail and trail[0]["record_id"] == rid
        events = l.audit_trail(record_id=rid, fhir=True)
        assert events[0]["resourceType"] == "AuditEvent"
        kinds = {t.kind for t in l.transactions()}
        assert {"RecordAdded", "ConsentGranted", "ConsentRevoked", "KeyShared"} <= kinds
        # Research is logged once per release, never per record.
        assert all(t.body["purpose"] != "HRESCH" for t in logged)
        released = [t for t in l.transactions() if t.kind == "ResearchReleased"]
        assert len(released) == 1 and released[0].body["study"] == "northgate-dm2-2026"


def test_clinic_research_release_again(clinic: Path) -> None:
    """The clinic left St. Mary's identity backup and Dr. Chen's signed request: Python runs the
    same release policy as the example and the CLI. Alice revoked after the first release, so
    the programme's 12 patients remain."""
    releaser = medchain.Identity.restore_backup(Path(f"{clinic}.st-marys.id").read_bytes(), "clinic-demo")
    request = medchain.ResearchRequest.from_bytes(Path(f"{clinic}.request").read_bytes())
    assert request.study == "northgate-dm2-2026" and request.topic == "diabetes"
    with _open(clinic) as l:
        release = l.research_release(request, releaser=releaser)
    assert (release.patients, release.rows) == (12, 24)
    df = release.to_pandas()
    assert set(df["code"]) == {"4548-4", "44054006"}


def test_clinic_tampered_copy(clinic: Path) -> None:
    copy = Path(f"{clinic}.tampered")
    if not copy.exists():
        pytest.skip("the clinic example did not leave its tampered copy")
    with pytest.raises(medchain.TamperedLedger):
        _open(copy, clinic).verify(progress=False)
