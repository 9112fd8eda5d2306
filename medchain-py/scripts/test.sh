#!/usr/bin/env bash
# The Python package's test command: builds the wheel in a fresh virtual environment, generates
# the clinic example's ledger, runs stubtest, pytest (>= 40 tests), the example figure and the
# benchmarks. Exits non-zero on any failure.
#
#   medchain-py/scripts/test.sh            (from anywhere; uses $CARGO_TARGET_DIR or ./target)
#
# Environment: PYTHON (default python3, >= 3.9), MEDCHAIN_PY_BENCH=0 skips the benchmarks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/medchain-py-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS
step() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - started)); }

step "virtual environment"
"$PYTHON" -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
export PATH="$tmp/venv/bin:$PATH"   # the maturin build backend runs `maturin` from PATH
"$py" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23.1"
"$py" -m pip install --quiet --disable-pip-version-check \
    "maturin==1.16.0" "pytest==9.2.0" "mypy==2.4.1" "pandas==3.1.1" "pyarrow==26.0.1" \
    "matplotlib==3.11.2" "tqdm==4.70.1"

step "build and install the wheel (pip install ./medchain-py)"
# maturin is already in the venv: no isolated build environment to download. The Rust build
# uses the workspace target dir (or $CARGO_TARGET_DIR), shared with cargo.
"$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation "$here"
"$py" -c "import medchain, sys; print('medchain', medchain.__version__, 'on Python', sys.version.split()[0])"

step "clinic example ledger"
cargo run --quiet --release --locked -p medchain-examples --bin clinic -- "$tmp/clinic.sqlite" > "$tmp/clinic.log"
test -f "$tmp/clinic.sqlite" && test -f "$tmp/clinic.sqlite.key"

step "stubtest"
(cd "$tmp" && "$py" -m mypy.stubtest medchain)

step "pytest"
set +e
# Under a throw-away PostgreSQL 15 cluster (scripts/with-postgres.sh sets MEDCHAIN_PG_URL).
(cd / && MEDCHAIN_CLINIC_LEDGER="$tmp/clinic.sqlite" MEDCHAIN_REQUIRE_CLINIC=1 MEDCHAIN_REQUIRE_PG=1 \
    "$root/scripts/with-postgres.sh" "$py" -m pytest -q -p no:cacheprovider "$here/tests" 2>&1 | tee "$tmp/pytest.log")
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
if [ "$rc" -ne 0 ]; then echo "pytest failed (exit $rc)" >&2; exit "$rc"; fi
passed="$(grep -Eo '[0-9]+ passed' "$tmp/pytest.log" | tail -1 | grep -Eo '[0-9]+' || echo 0)"
if [ "$passed" -lt 40 ]; then echo "only $passed tests passed (>= 40 required)" >&2; exit 1; fi
if grep -Eq '[0-9]+ skipped' "$tmp/pytest.log"; then echo "tests were skipped" >&2; exit 1; fi

step "example: research figure"
(cd "$tmp" && "$py" "$here/examples/research_figure.py" "$tmp/clinic.sqlite" --out "$tmp/figure.png")
test -s "$tmp/figure.png" || { echo "the example wrote no PNG" >&2; exit 1; }
"$py" -c "import sys; sys.exit(0 if open(sys.argv[1], 'rb').read(8) == b'\x89PNG\r\n\x1a\n' else 1)" "$tmp/figure.png"

if [ "${MEDCHAIN_PY_BENCH:-1}" != 0 ]; then
    step "benchmarks"
    target="${CARGO_TARGET_DIR:-$root/target}"
    cargo build --quiet --release --locked -p medchain-examples --bin medchain
    (cd "$tmp" && "$py" "$here/benchmarks/bench.py" --cli "$target/release/medchain")
fi

step "all Python checks passed ($passed tests)"
