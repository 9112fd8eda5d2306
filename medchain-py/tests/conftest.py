"""Shared fixtures: a demo network (built once per session) and the clinic example's ledger."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

import medchain
from fhirnet import FhirNet, start, stop
from medchain.testing import DemoNetwork, build_demo_network


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoNetwork:
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite"
    return build_demo_network(str(path), patients=30, records_per_patient=4)


@pytest.fixture()
def ledger(demo: DemoNetwork) -> Iterator[medchain.Ledger]:
    with medchain.Ledger.open(demo.location, network_key=demo.network_key) as l:
        yield l


@pytest.fixture(scope="session")
def fhir_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirNet]:
    """Four real `medchaind` processes (`medchaind local-net --start`), one per session; stopped
    by pid at teardown, also after a failure (tests/fhirnet.py)."""
    net = start(tmp_path_factory.mktemp("fhirnet"))
    try:
        yield net
    finally:
        stop(net.process)


@pytest.fixture(scope="session")
def key_file(demo: DemoNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("key") / "demo.key"
    p.write_bytes(demo.network_key.export_protected("s3cret", fast=True))
    return p


@pytest.fixture(scope="session")
def clinic() -> Path:
    """The clinic example's ledger (scripts/test.sh sets MEDCHAIN_CLINIC_LEDGER)."""
    loc = os.environ.get("MEDCHAIN_CLINIC_LEDGER")
    if not loc:
        if os.environ.get("MEDCHAIN_REQUIRE_CLINIC"):
            pytest.fail("MEDCHAIN_CLINIC_LEDGER is not set")
        pytest.skip("MEDCHAIN_CLINIC_LEDGER is not set (run scripts/test.sh)")
    return Path(loc)


def tamper(path: Path, height: int) -> None:
    """Flips one byte of the first stored transaction at or above `height` (as clinic.rs)."""
    db = sqlite3.connect(str(path))
    try:
        seq, blob = db.execute(
            "SELECT seq, bytes FROM transactions WHERE height >= ? ORDER BY height, idx LIMIT 1",
            (height,),
        ).fetchone()
        b = bytearray(blob)
        b[len(b) // 2] ^= 1
        db.execute("UPDATE transactions SET bytes = ? WHERE seq = ?", (bytes(b), seq))
        db.commit()
    finally:
        db.close()


@pytest.fixture()
def tampered_copy(demo: DemoNetwork, tmp_path: Path) -> Path:
    copy = tmp_path / "tampered.sqlite"
    shutil.copy(demo.location, copy)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(demo.location + suffix):
            shutil.copy(demo.location + suffix, str(copy) + suffix)
    tamper(copy, 1)
    return copy
