#!/usr/bin/env bash
# The Python package's test command: builds the wheel in a fresh virtual environment, generates
# the clinic example's ledger, runs stubtest, pytest (>= 40 tests; the client tests start a
# 4-node `medchaind local-net` and use the pinned third-party FHIR client `fhirclient`), the
# example figure and the benchmarks. Exits non-zero on any failure.
#
#   medchain-py/scripts/test.sh            (from anywhere; uses $CARGO_TARGET_DIR or ./target)
#
# Environment: PYTHON (default python3, >= 3.9), MEDCHAIN_PY_BENCH=0 skips the benchmarks,
# MEDCHAIN_PY_BENCH_ARGS passes arguments to benchmarks/bench.py (sizes), MEDCHAIN_PROFILE
# (default release) is the cargo profile of the wheel and of the clinic and CLI binaries: `dev`
# (as scripts/test-all.sh runs it) takes the binaries from the workspace's dev-profile build (all
# features) and builds the wheel in that profile, sharing its dependencies.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/medchain-py-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS
step() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - started)); }
profile="${MEDCHAIN_PROFILE:-release}"
case "$profile" in dev | test) profile_dir=debug ;; bench) profile_dir=release ;; *) profile_dir="$profile" ;; esac
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
# The clinic and the operator's CLI, in the chosen profile.
if [ "$profile" = release ]; then
    cargo build --quiet --release --locked -p medchain-examples --bin clinic --bin medchain
    # The node the client tests start (tests/fhirnet.py).
    cargo build --quiet --release --locked -p medchain-node --bin medchaind
else
    # The workspace's features, so the build scripts/test-all.sh already made is reused.
    cargo build --quiet --profile "$profile" --locked --workspace --all-features --lib --bins --examples
fi

step "virtual environment"
"$PYTHON" -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
export PATH="$tmp/venv/bin:$PATH"   # the maturin build backend runs `maturin` from PATH
"$py" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=23.1"
"$py" -m pip install --quiet --disable-pip-version-check \
    "maturin==1.16.0" "pytest==9.2.0" "mypy==2.4.1" "pandas==3.1.1" "pyarrow==26.0.1" \
    "matplotlib==3.11.2" "tqdm==4.70.1" "fhirclient==4.4.0"

step "build and install the wheel (pip install ./medchain-py)"
# maturin is already in the venv: no isolated build environment to download. The Rust build
# uses the workspace target dir (or $CARGO_TARGET_DIR), shared with cargo.
# (`cargo rustc --profile test`, which maturin runs, would build a test harness: the test profile
# is the dev profile's settings anyway.)
maturin_profile="$profile"; [ "$profile" = test ] && maturin_profile=dev
MATURIN_PEP517_ARGS="--profile $maturin_profile" \
    "$py" -m pip install --quiet --disable-pip-version-check --no-build-isolation "$here"
"$py" -c "import medchain, sys; print('medchain', medchain.__version__, 'on Python', sys.version.split()[0])"

step "clinic example ledger"
"$target/$profile_dir/clinic" "$tmp/clinic.sqlite" > "$tmp/clinic.log"
test -f "$tmp/clinic.sqlite" && test -f "$tmp/clinic.sqlite.key"

step "stubtest"
(cd "$tmp" && "$py" -m mypy.stubtest medchain)

step "pytest"
set +e
# Under a throw-away PostgreSQL 15 cluster (scripts/with-postgres.sh sets MEDCHAIN_PG_URL).
# The client tests start `medchaind local-net` from the same build (MEDCHAIN_BIN_DIR).
(cd / && MEDCHAIN_CLINIC_LEDGER="$tmp/clinic.sqlite" MEDCHAIN_REQUIRE_CLINIC=1 MEDCHAIN_REQUIRE_PG=1 \
    MEDCHAIN_BIN_DIR="$target/$profile_dir" \
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
    # shellcheck disable=SC2086 # MEDCHAIN_PY_BENCH_ARGS is a list of arguments
    (cd "$tmp" && "$py" "$here/benchmarks/bench.py" --cli "$target/$profile_dir/medchain" ${MEDCHAIN_PY_BENCH_ARGS:-})
fi

step "all Python checks passed ($passed tests)"
