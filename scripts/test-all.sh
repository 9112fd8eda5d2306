#!/usr/bin/env bash
# Runs every test of medchain: formatting, lints, the Rust test suite (unit, integration,
# doctests, the fuzz-corpus replay, the consensus simulator over 1,000 seeds, the store
# conformance suite on SQLite and on a real PostgreSQL 15, crash and plaintext tests), the
# consensus simulator over a rotating window of 200 more seeds (a new window each day), the
# clinic example end to end, the FHIR fast path's generated tables checked against fhirkit's
# source, the synthetic US Core FHIR corpus (a pinned PyPI generator in its own venv; every
# Bundle and resource validated by both paths, sealed and opened), the Python package (its
# own venv: wheel, mypy stubtest, pytest),
# the mobile bindings (Kotlin tests on the JVM through Maven, a pytest smoke test of the
# generated Python bindings, the committed Swift bindings checked up to date), the dependency
# policy (cargo deny: licenses, bans, sources) and the MSRV (scripts/check-msrv.sh: declared
# rust-versions; clippy's incompatible_msrv lint; `scripts/check-msrv.sh --toolchain` adds a
# `cargo +<msrv> check`, by hand). The benchmarks are compiled and type-checked by clippy
# (`--all-targets`); they are run by hand in release (README, "Benchmarks").
#
# One build of the graph serves every step: the test profile is the dev profile (Cargo.toml), so
# clippy's build scripts and proc macros are the tests', and the clinic, the operator's CLI, the
# FHIR corpus validator, the Python wheel and the mobile library come out of the tests' build
# with the workspace's features (MEDCHAIN_PROFILE=dev below) instead of three more release
# builds. The
# release builds are the README's commands and the benchmarks'. Budget: under 40 minutes from a
# cold target directory on 2 cores (CI's limit is 90).
#
# Installs nothing by hand: cargo fetches what Cargo.lock pins; scripts/with-postgres.sh starts
# (and afterwards stops) a throw-away PostgreSQL cluster on a loopback port, installing the
# server package with apt-get only if it is missing; cargo-deny is installed at its pinned
# version (`cargo install --locked`) when that version is not already on PATH; the MSRV
# toolchain is installed with rustup when it can be (docs/dependencies.md).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }

# The cargo-deny release the policy (deny.toml) is checked with.
CARGO_DENY_VERSION=0.20.2

step "cargo fmt --check"
cargo fmt --all -- --check

step "dependency policy: cargo deny check licenses bans sources (cargo-deny $CARGO_DENY_VERSION)"
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $CARGO_DENY_VERSION" ]; then
    echo "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked)"
    # A tool run once over Cargo.lock: built without its release profile's fat LTO and single
    # codegen unit (2 min 48 s instead of 6 min 30 s on 2 cores; the check takes 4 s either way).
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION"
fi
cargo deny --locked check licenses bans sources

step "MSRV: declared rust-versions (the code itself: clippy's incompatible_msrv, next step)"
scripts/check-msrv.sh

step "cargo clippy (all targets, benches included, all features, warnings are errors)"
# The dev profile, which the test profile inherits unchanged (Cargo.toml): its build scripts and
# proc macros are the ones `cargo test` uses next.
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

step "cargo test (workspace, with PostgreSQL)"
scripts/with-postgres.sh cargo test --locked --workspace --all-features

step "consensus simulator: a rotating window of 200 seeds outside the default range"
# A new window every day (UTC), from 1,000,000 on, so each run explores seeds no default run
# covers; MEDCHAIN_SIM_WINDOW=<first seed> pins one. About 15 s of CPU (33 s wall on the
# loaded 2-core machine) in the test profile the step above already built. A failure prints
# seed=<n>: replay it with MEDCHAIN_SIM_SEED=<n>.
sim_day=$(( $(date -u +%s) / 86400 ))
sim_first=${MEDCHAIN_SIM_WINDOW:-$(( 1000000 + 200 * (sim_day % 20000) ))}
echo "seeds ${sim_first}..$(( sim_first + 199 ))"
# `--workspace --all-features` as in the step above, so the test binary it built is reused (with
# `-p medchain-tests` alone the features resolve differently and part of the graph is rebuilt).
MEDCHAIN_SIM_FIRST=$sim_first MEDCHAIN_SIM_SEEDS=200 \
    cargo test --locked --workspace --all-features --test consensus_sim \
    safety_validity_liveness_over_many_seeds -- --nocapture

# From here on the binaries, examples and libraries come from the build above (the dev profile,
# which the test profile inherits unchanged; the workspace's features; target/debug): this build
# is a no-op after `cargo test`.
export MEDCHAIN_PROFILE=dev
cargo build --locked -q --workspace --all-features --lib --bins --examples
bin="${CARGO_TARGET_DIR:-target}/debug"

step "the clinic example (the main job), end to end"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin/clinic" "$tmp/clinic-ledger.sqlite" > "$tmp/clinic.out"
tail -n 3 "$tmp/clinic.out"
MEDCHAIN_PASSPHRASE=clinic-demo "$bin/medchain" verify "$tmp/clinic-ledger.sqlite" 2>/dev/null
MEDCHAIN_PASSPHRASE=clinic-demo MEDCHAIN_RELEASER_PASSPHRASE=clinic-demo "$bin/medchain" \
    research "$tmp/clinic-ledger.sqlite" --releaser "$tmp/clinic-ledger.sqlite.st-marys.id" \
    --request "$tmp/clinic-ledger.sqlite.request" --out "$tmp/rows.ndjson" --log "$tmp/release.log"
test "$(wc -l < "$tmp/rows.ndjson")" -eq 24

step "FHIR validation: the fast path's tables match fhirkit's source (medchain-fhir/gen/fast_tables.py --check)"
python3 medchain-fhir/gen/fast_tables.py --check

step "FHIR validation in the wallet's build (fhirkit's foundation and base groups): clinical resources refused"
# What medchain-ffi links (docs/mobile.md, "Size"): a build without a resource group must fail
# closed. Its own small build of medchain-fhir (about 45 s of CPU on a warm target).
cargo test --locked -q -p medchain-fhir --no-default-features --features foundation,base \
    --lib --test fast_attacks --test fast_path --test written

step "FHIR validation: synthetic US Core corpus (carebundle, pinned) validated, sealed and opened"
scripts/fhir-corpus.sh

step "the Python package: wheel, stubtest, pytest, example figure, benchmarks (smoke size)"
MEDCHAIN_PY_BENCH_ARGS="--patients 300 --rows 20000 --repeat 1" medchain-py/scripts/test.sh

step "the mobile bindings: Kotlin on the JVM, Python smoke test, Swift bindings up to date"
medchain-ffi/scripts/test.sh

echo
echo "all checks passed"
