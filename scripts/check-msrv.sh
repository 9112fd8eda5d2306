#!/usr/bin/env bash
# Keeps the workspace's `rust-version` (the MSRV) true.
#
# 1. Always: every package in the resolved dependency graph (Cargo.lock, all platforms) declares
#    a `rust-version` no newer than the workspace's. A dependency update that needs a newer
#    compiler fails here, with the packages named.
# 2. When the MSRV toolchain is installed (`rustup toolchain install <msrv> --profile minimal`,
#    which this script tries once unless MEDCHAIN_MSRV_INSTALL=0), `cargo +<msrv> check` of the
#    workspace's libraries and binaries, every feature, in its own target directory (target/msrv).
#    Without the toolchain (no rustup, or its download refused), step 1 alone is the check, and
#    the script says so.
#
#   scripts/check-msrv.sh          (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

meta="$(mktemp)"
trap 'rm -f "$meta"' EXIT
cargo metadata --locked --all-features --format-version 1 > "$meta"
read -r msrv offenders < <(python3 - "$meta" <<'PY'
import json
import sys


def key(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


m = json.load(open(sys.argv[1]))
members = set(m["workspace_members"])
own = {p["rust_version"] for p in m["packages"] if p["id"] in members and p.get("rust_version")}
if len(own) != 1:
    sys.exit(f"the workspace members declare {len(own)} different rust-versions: {sorted(own)}")
msrv = own.pop()
deps = [p for p in m["packages"] if p["id"] not in members and p.get("rust_version")]
over = sorted(
    f"{p['name']}@{p['version']}(needs:{p['rust_version']})"
    for p in deps
    if key(p["rust_version"]) > key(msrv)
)
top = max(deps, key=lambda p: key(p["rust_version"]))
print(
    f"workspace rust-version {msrv}; newest among dependencies: {top['rust_version']}"
    f" ({top['name']} {top['version']})",
    file=sys.stderr,
)
print(msrv, ",".join(over) or "-")
PY
)
[ -n "${msrv:-}" ] || { echo "could not read the rust-versions from cargo metadata" >&2; exit 1; }

if [ "$offenders" != "-" ]; then
    echo "dependencies need a newer Rust than the workspace's rust-version = \"$msrv\":" >&2
    tr ',' '\n' <<< "$offenders" | sed 's/^/  /' >&2
    echo "raise rust-version in Cargo.toml (and docs/dependencies.md), or hold the dependency back" >&2
    exit 1
fi
echo "every dependency builds with Rust $msrv by its declared rust-version"

toolchain="$msrv"
if ! command -v rustup > /dev/null; then
    echo "no rustup: cargo +$toolchain check skipped (the declared rust-versions were checked)"
    exit 0
fi
if ! rustup run "$toolchain" cargo --version > /dev/null 2>&1; then
    if [ "${MEDCHAIN_MSRV_INSTALL:-1}" != 0 ] &&
        timeout 900 rustup toolchain install "$toolchain" --profile minimal > /dev/null 2>&1; then
        echo "installed Rust $toolchain (minimal profile)"
    else
        echo "Rust $toolchain is not installed and could not be installed here:" \
            "cargo +$toolchain check skipped (the declared rust-versions were checked)"
        exit 0
    fi
fi
# What the MSRV promises: the libraries and binaries, every feature. Tests, benches and examples
# build with dev-dependencies (criterion, proptest) that are not part of the promise, and the
# stable toolchain checks them in clippy.
echo "cargo +$toolchain check (workspace libraries and binaries, all features; target/msrv)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/msrv" \
    cargo "+$toolchain" check --locked --quiet --workspace --lib --bins --all-features
echo "the workspace builds with Rust $toolchain"
