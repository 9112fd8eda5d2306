#!/usr/bin/env bash
# Keeps the workspace's `rust-version` (the MSRV) true.
#
# 1. Always: every package in the resolved dependency graph (Cargo.lock, all platforms) declares
#    a `rust-version` no newer than the workspace's. A dependency update that needs a newer
#    compiler fails here, with the packages named.
# 2. With --toolchain: `cargo +<msrv> check` of the workspace's libraries and binaries, every
#    feature, in its own target directory (target/msrv), installing the toolchain with
#    `rustup toolchain install <msrv> --profile minimal` when it is missing (unless
#    MEDCHAIN_MSRV_INSTALL=0). Without the toolchain (no rustup, or its download refused), step 1
#    alone is the check, and the script says so. The test command runs step 1 only: step 2 is a
#    second full build of the graph (about 5 minutes cold on 2 cores), and between the two the
#    stable toolchain's clippy (`clippy::incompatible_msrv`, an error under -D warnings) refuses
#    any standard-library item newer than the workspace's rust-version (docs/dependencies.md).
#
#   scripts/check-msrv.sh              (from anywhere; step 1)
#   scripts/check-msrv.sh --toolchain  (steps 1 and 2: when raising the MSRV or updating deps)
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain_check=0
for arg in "$@"; do
    case "$arg" in
        --toolchain) toolchain_check=1 ;;
        *) echo "usage: $0 [--toolchain]" >&2; exit 2 ;;
    esac
done

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

if [ "$toolchain_check" = 0 ]; then
    echo "cargo +$msrv check not run (scripts/check-msrv.sh --toolchain runs it); clippy's" \
        "incompatible_msrv lint holds the code to Rust $msrv's standard library"
    exit 0
fi
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
