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
    demo = build_demo_network(pg_url, patients=6, records_per_patient=2)
    with medchain.Ledger.open(pg_url, network_key=demo.network_key) as l:
        assert l.verify(progress=False).head_proven
        df = l.research_dataset(demo.researcher, topic="diabetes", holder=demo.holder,
                                institution=demo.institution)
        assert len(df) == sum(demo.consenting) * 3
    with pytest.raises(medchain.WrongNetworkKey):
        medchain.Ledger.open(pg_url, network_key=medchain.NetworkKey.generate())
    with pytest.raises(medchain.StoreError):
        build_demo_network(pg_url)  # already exists: nothing is overwritten
