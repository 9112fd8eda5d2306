"""medchain Python benchmarks: verification overhead and research DataFrame build time.

    python medchain-py/benchmarks/bench.py [--patients 2000] [--rows 100000] [--cli PATH]

1. Ledger verification: a synthetic ledger (``--patients`` patients, a Patient resource and
   four records each, in 500-transaction blocks) is verified from Python
   (``Ledger.verify(progress=False)``, wall time around the whole call) and the Rust figure is
   measured in the same run: the time the native code spends inside ``medchain_store::Ledger::
   verify`` (an ``Instant`` around the call, returned by the binding), and, when the ``medchain``
   CLI binary is found, the time it reports for ``medchain verify`` on the same file. Best of
   ``--repeat`` runs each. Ratio = Rust time / Python time (1.0 = no overhead).
2. Research DataFrame: ``--rows`` synthetic FHIR resources are de-identified in Rust
   (``_synthetic_dataset_columns``: HIPAA Safe Harbor + study pseudonyms + typed column
   extraction) and turned into the typed pandas DataFrame exactly as ``research_dataset``
   does. This measures de-identification, the hand-over to Python and the DataFrame build; it
   does not include decrypting records or reading the ledger, which are measured separately
   by the real ``research_dataset`` on the synthetic ledger (rows per second).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import medchain
from medchain._medchain import _synthetic_dataset_columns
from medchain.ledger import _table
from medchain.testing import build_demo_network


def find_cli(explicit: "str | None") -> "str | None":
    if explicit:
        return explicit
    here = Path(__file__).resolve().parents[2]
    target = Path(os.environ.get("CARGO_TARGET_DIR", here / "target"))
    for cand in (target / "release" / "medchain", shutil.which("medchain")):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def cli_verify_seconds(cli: str, ledger: str) -> float:
    out = subprocess.run(
        [cli, "verify", ledger],
        env=dict(os.environ, MEDCHAIN_PASSPHRASE="bench"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"verified in ([0-9.]+)(ms|s|µs|us)", out)
    if not m:
        raise RuntimeError(f"unexpected CLI output: {out!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value / {"s": 1, "ms": 1e3, "µs": 1e6, "us": 1e6}[unit]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cli", default=None, help="path of the medchain CLI binary")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.sqlite")
        t0 = time.perf_counter()
        demo = build_demo_network(path, patients=args.patients, records_per_patient=4, block_size=500)
        built = time.perf_counter() - t0
        Path(path + ".key").write_bytes(demo.network_key.export_protected("bench", fast=True))
        ledger = medchain.Ledger.open(path, network_key=demo.network_key)
        print(f"synthetic ledger: {args.patients} patients, {len(demo.record_ids)} records, "
              f"{ledger.height} blocks (built in {built:.2f} s)")

        py_times, native_times = [], []
        for _ in range(args.repeat):
            s = ledger.verify(progress=False)
            py_times.append(s.seconds)
            native_times.append(s.native_seconds)
        py, native = min(py_times), min(native_times)
        print(f"verify from Python      : {py * 1e3:8.2f} ms  ({s.transactions} transactions, "
              f"{s.transactions / py:,.0f} tx/s)")
        print(f"verify, Rust (in-call)  : {native * 1e3:8.2f} ms  ratio Rust/Python = {native / py:.3f}")
        ok &= native / py >= 0.9
        cli = find_cli(args.cli)
        if cli:
            cli_t = min(cli_verify_seconds(cli, path) for _ in range(args.repeat))
            print(f"verify, Rust CLI        : {cli_t * 1e3:8.2f} ms  ratio CLI/Python = {cli_t / py:.3f}")
        else:
            print("verify, Rust CLI        : (medchain binary not found; pass --cli)")

        t0 = time.perf_counter()
        df = ledger.research_dataset(demo.request(study="bench"), releaser=demo.holder)
        real = time.perf_counter() - t0
        records = len(demo.record_ids)
        print(f"research_dataset (real) : {real:8.3f} s   {records} records opened and "
              f"consent-checked, {len(df)} rows ({records / real:,.0f} records/s)")

    best_total, best_rust = float("inf"), 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        cols = _synthetic_dataset_columns(args.rows)
        t1 = time.perf_counter()
        frame = _table(cols, {"rows": args.rows}, False)
        t2 = time.perf_counter()
        if t2 - t0 < best_total:
            best_total, best_rust = t2 - t0, t1 - t0
    assert len(frame) == args.rows
    print(f"{args.rows:,}-row DataFrame   : {best_total:8.3f} s   (de-identify + columns in Rust "
          f"{best_rust:.3f} s, pandas build {best_total - best_rust:.3f} s; target <= 3 s)")
    ok &= best_total <= 3.0
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
