#!/usr/bin/env bash
# Runs every test of medchain: formatting, lints, the Rust test suite (unit, integration,
# doctests, the fuzz-corpus replay, the consensus simulator over 1,000 seeds).
# Installs nothing by hand: cargo fetches what Cargo.lock pins.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR=never
step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test (workspace: unit, integration, doctests)"
cargo test --locked --workspace

step "benchmarks compile"
cargo bench --locked --workspace --no-run

echo
echo "all checks passed"
