"""A real network of ``medchaind`` processes for the client tests (``test_client.py``,
``test_fhirclient.py``): one per test session, four nodes from ``medchaind local-net --start``
(the dev build: ``$MEDCHAIN_BIN_DIR/medchaind``, else ``<workspace>/target/debug/medchaind``), one
registered EHR client at every node, clinicians ``okafor`` and ``reed`` at every node. Every wait
is bounded; the one process is stopped by its pid at teardown, also when the set-up fails."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from medchain import Identity, MedchainError, PublicIdentity
from medchain.client import Client, ed25519_jwk

#: The EHR client registered at every node, and the key id of its JWK.
EHR = "ehr"
EHR_KID = "ehr-1"
CLINICIANS = ("okafor", "reed")
ST_MARYS, CITY_GENERAL, RIVERSIDE = 0, 1, 2
NODES = 4


def medchaind() -> Path:
    """The ``medchaind`` binary of the dev build."""
    env = os.environ.get("MEDCHAIN_BIN_DIR")
    if env:
        return Path(env) / "medchaind"
    root = Path(__file__).resolve().parents[2]
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    if not target.is_absolute():
        target = root / target
    return target / "debug" / "medchaind"


@dataclass
class Node:
    """One node: its API URL, its member's public identity and its directory."""

    url: str
    member: PublicIdentity
    dir: Path


@dataclass
class FhirNet:
    """The running network."""

    dir: Path
    nodes: List[Node]
    ehr_key: Identity
    chain_id: str
    process: "subprocess.Popen[bytes]"
    clients: Dict[int, Client] = field(default_factory=dict)

    def ehr(self, i: int, clinician: Optional[str] = None, purpose: str = "TREAT") -> Client:
        """The EHR's client at node ``i`` acting for ``clinician``."""
        return Client(self.nodes[i].url, identity=self.ehr_key, client_id=EHR, kid=EHR_KID, clinician=clinician, purpose=purpose)

    def patient(self, i: int, patient: Identity) -> Client:
        """``patient``'s own client at node ``i``."""
        return Client.for_patient(self.nodes[i].url, patient)

    def member_identity(self, i: int) -> Identity:
        """Node ``i``'s member identity (its backup under the node's passphrase): a test
        stands in for the member to issue a researcher credential."""
        node_dir = self.nodes[i].dir
        passphrase = (node_dir / "passphrase").read_text().splitlines()[0]
        return Identity.restore_backup((node_dir / "identity.backup").read_bytes(), passphrase)

    def logs(self) -> str:
        """The tail of every node's log (for a failing assertion)."""
        out = []
        for node in self.nodes:
            log = node.dir / "node.log"
            if log.exists():
                out.append(f"--- {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        launcher = self.dir / "local-net.log"
        if launcher.exists():
            out.append(f"--- {launcher}\n" + launcher.read_text(errors="replace")[-3000:])
        return "\n".join(out)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback only)
            return int(r.status)
    except Exception:
        return 0


def _peers(client: Client) -> int:
    try:
        return int(client.status().get("peers_connected", 0))
    except MedchainError:
        return 0


def _wait(what: str, check, limit: float, net_dir: Path) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} within {limit:g} s (logs under {net_dir})")


def stop(process: "subprocess.Popen[bytes]") -> None:
    """Stops the local-net process by its pid: SIGTERM (it stops its nodes), then SIGKILL of
    its process group after 20 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start(base: Path) -> FhirNet:
    """Writes and starts the network under ``base``; returns once every node answers /health
    and has its three peers. Stops everything it started if that fails."""
    binary = medchaind()
    if not binary.exists():
        raise RuntimeError(f"{binary} does not exist: build the workspace first (cargo build --workspace --all-features --bins)")
    ehr_key = Identity.generate()
    jwks = base / "ehr.jwks.json"
    jwks.write_text(json.dumps({"keys": [ed25519_jwk(ehr_key, EHR_KID)]}))
    net_dir = base / "net"
    args = [str(binary), "local-net", "--nodes", str(NODES), "--dir", str(net_dir), "--gather-ms", "50", "--start", "--client", f"{EHR}={jwks}"]
    for name in CLINICIANS:
        args += ["--clinician", name]
    log = open(base / "local-net.log", "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    try:
        tomls = [net_dir / f"node-{i + 1}" / "node.toml" for i in range(NODES)]
        _wait("local-net did not write its nodes", lambda: process.poll() is None and all(t.exists() for t in tomls) and (net_dir / "genesis.bin").exists(), 120, net_dir)
        nodes = []
        for t in tomls:
            api = re.search(r'^api\s*=\s*"([^"]+)"', t.read_text(), re.M)
            public = re.search(r'"(mcid1[0-9a-z]+)"', (t.parent / "identity.pub").read_text())
            assert api and public, f"unexpected files in {t.parent}"
            nodes.append(Node(f"http://{api.group(1)}", PublicIdentity.from_text(public.group(1)), t.parent))
        for node in nodes:
            _wait(f"{node.url} did not answer /health", lambda: process.poll() is None and _get(node.url + "/health") == 200, 60, net_dir)
        net = FhirNet(net_dir, nodes, ehr_key, "", process)
        for i in range(NODES):
            client = net.ehr(i)
            _wait(f"node {i + 1} did not connect to its peers", lambda: _peers(client) >= NODES - 1, 60, net_dir)
        net.chain_id = net.ehr(0).chain_id()
        return net
    except BaseException:
        stop(process)
        raise
