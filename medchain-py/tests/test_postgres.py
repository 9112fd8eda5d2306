"""The same API on PostgreSQL (scripts/test.sh runs pytest under scripts/with-postgres.sh)."""

from __future__ import annotations

import os

import pytest

import medchain
from medchain.testing import build_demo_network


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("MEDCHAIN_PG_URL")
    if not url:
        if os.environ.get("MEDCHAIN_REQUIRE_PG"):
            pytest.fail("MEDCHAIN_PG_URL is not set")
        pytest.skip("MEDCHAIN_PG_URL is not set (run scripts/test.sh)")
    return url


def test_postgres_ledger(pg_url: str) -> None:
    demo = build_demo_network(pg_url, patients=30, records_per_patient=2)
    with medchain.Ledger.open(pg_url, network_key=demo.network_key) as l:
        assert l.verify(progress=False).head_proven
        release = l.research_release(demo.request(), releaser=demo.holder)
        # A Patient, an HbA1c and a diagnosis each for the 15 who consent; the three
        # hypertension diagnoses (patients 4, 14, 24) are a cell below 11 and suppressed.
        assert (release.patients, release.rows) == (15, 15 * 3 - 3)
    demo.network.log_release(release.log)
    demo.network.commit()
    with medchain.Ledger.open(pg_url, network_key=demo.network_key) as l:
        assert l.block(l.height).transactions[0].kind == "ResearchReleased"
        assert l.verify(progress=False).head_proven
    with pytest.raises(medchain.WrongNetworkKey):
        medchain.Ledger.open(pg_url, network_key=medchain.NetworkKey.generate())
    with pytest.raises(medchain.StoreError):
        build_demo_network(pg_url)  # already exists: nothing is overwritten
