"""Open the clinic example's ledger, build a research dataset, save a figure.

    cargo run --release -p medchain-examples --bin clinic -- /tmp/clinic.sqlite
    python medchain-py/examples/research_figure.py /tmp/clinic.sqlite --out figure.png

Left panel: the clinic ledger as every node sees it (verified first): its transactions by
kind, read from the chain without decrypting any record.

Right panel: a de-identified diabetes dataset, released by the one research policy
(``Ledger.research_release``). A release needs the identity of the member institution that
added the records and a researcher's signed request. With ``--releaser FILE`` (an encrypted
identity backup, password from ``--releaser-password``) and ``--request FILE`` (the clinic
example writes ``LEDGER.st-marys.id`` and ``LEDGER.request``) the dataset comes from the clinic
ledger itself; otherwise from a local demo network with a synthetic population. The printed
summary says which one was used.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import medchain  # noqa: E402
from medchain.testing import build_demo_network  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description="research figure from a medchain ledger")
    ap.add_argument("ledger", nargs="?", default="clinic-ledger.sqlite")
    ap.add_argument("--key-file", default=None, help="default: LEDGER.key")
    ap.add_argument("--passphrase", default=os.environ.get("MEDCHAIN_PASSPHRASE", "clinic-demo"))
    ap.add_argument("--releaser", default=None, help="the releasing institution's identity backup")
    ap.add_argument("--releaser-password", default=None)
    ap.add_argument("--request", default=None, help="the researcher's signed request")
    ap.add_argument("--out", default="research-figure.png")
    args = ap.parse_args()

    with medchain.Ledger.open(args.ledger, args.key_file or f"{args.ledger}.key", args.passphrase) as clinic:
        summary = clinic.verify(progress=False)
        kinds = collections.Counter(t.kind for t in clinic.transactions())
        print(f"clinic ledger {args.ledger}: {summary.blocks} blocks, {summary.transactions} "
              f"transactions, verified in {summary.seconds * 1e3:.1f} ms")
        if args.releaser and args.request:
            releaser = medchain.Identity.restore_backup(
                Path(args.releaser).read_bytes(), args.releaser_password or ""
            )
            request = medchain.ResearchRequest.from_bytes(Path(args.request).read_bytes())
            df = clinic.research_dataset(request, releaser=releaser)
            source = f"clinic ledger (released by {releaser.public_text[:16]}…)"
        else:
            df = None
            source = ""
    if df is None:
        with tempfile.TemporaryDirectory() as tmp:
            demo = build_demo_network(os.path.join(tmp, "demo.sqlite"), patients=200, records_per_patient=6)
            with medchain.Ledger.open(demo.location, network_key=demo.network_key) as led:
                df = led.research_dataset(demo.request(study="figure"), releaser=demo.holder)
        source = "local demo network, 200 synthetic patients"
    release = df.attrs["medchain"]
    print(f"dataset from {source}: {release['rows']} rows, {release['patients']} patients "
          f"(study {release['study']}, topic {release['topic']})")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = sorted(kinds)
    left.barh(names, [kinds[n] for n in names], color="#4a7fb5")
    left.set_title(f"Clinic ledger: {summary.blocks} verified blocks")
    left.set_xlabel("transactions")
    obs = df[(df["resource_type"] == "Observation") & (df["code"] == "4548-4")]
    births = df[df["resource_type"] == "Patient"].set_index("pseudonym")["birth_year"]
    obs = obs.assign(decade=(obs["pseudonym"].map(births) // 10 * 10))
    groups = [(int(d), g["value"].dropna().to_numpy()) for d, g in obs.groupby("decade") if len(g)]
    if groups:
        right.boxplot([g for _, g in groups])
        right.set_xticks(range(1, len(groups) + 1), [f"{d}s" for d, _ in groups])
    right.set_title(f"HbA1c by birth decade ({release['topic']} study, de-identified)")
    right.set_ylabel("HbA1c (%)")
    right.set_xlabel("birth decade")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"figure written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
