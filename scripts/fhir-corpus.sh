#!/usr/bin/env bash
# The synthetic US Core corpus step: generates FHIR R4 transaction Bundles with carebundle (a
# third-party generator on PyPI, US Core 6.1.0; pinned below with its dependencies) in a fresh
# virtual environment, then validates every Bundle (also re-wrapped as a collection Bundle) and
# every resource of the bulk (ndjson) export under the US Core profile level, and seals and
# opens each one: zero errors required (medchain-fhir/examples/validate_corpus.rs); then the
# FHIR fast path's soundness hunt runs on the same corpus (medchain-fhir/tests/fast_path.rs).
#
#   scripts/fhir-corpus.sh            (from anywhere; uses $CARGO_TARGET_DIR or ./target)
#
# Environment: PYTHON (default python3, >= 3.10), MEDCHAIN_FHIR_CORPUS_COUNT (patients per
# profile, default 8), MEDCHAIN_FHIR_MUTATE_PER_DOC (mutations per document in the soundness
# hunt, default 40), MEDCHAIN_PROFILE (default release; `dev` takes the validator from the
# workspace's dev-profile build, all features, as scripts/test-all.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
count="${MEDCHAIN_FHIR_CORPUS_COUNT:-8}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/medchain-fhir-corpus.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
started=$SECONDS

"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "carebundle==0.5.0" "numpy==2.4.6" "pydantic==2.14.4" "pydantic-core==2.50.5" \
    "annotated-types==0.8.0" "typing-inspection==0.4.5" "typing-extensions==4.16.0"
gen() { "$tmp/venv/bin/carebundle" generate "$@" > "$tmp/gen.log" 2>&1 || { cat "$tmp/gen.log" >&2; return 1; }; }
for profile in healthy hypertension type2_diabetes ckd_stage3 anaemia; do
    gen --profile "$profile" --count "$count" --seed 18 --sex mixed --out "$tmp/corpus/$profile"
done
gen --profile mixed --count "$((count * 2))" --seed 1812 --sex mixed --age-range 30-80 --out "$tmp/corpus/mixed"
gen --profile mixed --count "$count" --seed 7 --sex mixed --out "$tmp/corpus/bulk" --format ndjson
echo "corpus generated in $((SECONDS - started)) s: $(find "$tmp/corpus" -type f | wc -l) files, $(du -sh "$tmp/corpus" | cut -f1)"

if [ "${MEDCHAIN_PROFILE:-release}" = release ]; then
    cargo run --locked --release -q -p medchain-fhir --example validate_corpus -- --profile us-core "$tmp/corpus"
else
    # The workspace's features, so the build scripts/test-all.sh already made is reused.
    cargo build --locked -q --profile "$MEDCHAIN_PROFILE" --workspace --all-features --lib --bins --examples
    case "$MEDCHAIN_PROFILE" in dev | test) dir=debug ;; bench) dir=release ;; *) dir="$MEDCHAIN_PROFILE" ;; esac
    "${CARGO_TARGET_DIR:-target}/$dir/examples/validate_corpus" --profile us-core "$tmp/corpus"
fi

# The fast path's soundness on this corpus: every document and MEDCHAIN_FHIR_MUTATE_PER_DOC
# single mutations of each (dropped, renamed, retyped, broken values, ...), each validated by
# the fast path and by the exact path: a fast "clean" with any exact issue fails the step.
if [ "${MEDCHAIN_PROFILE:-release}" = release ]; then
    build=(--release -p medchain-fhir)
else
    # The workspace's features, so the test binary scripts/test-all.sh already built is reused.
    build=(--profile "$MEDCHAIN_PROFILE" --workspace --all-features)
fi
MEDCHAIN_FHIR_MUTATE_DIR="$tmp/corpus" MEDCHAIN_FHIR_MUTATE_PER_DOC="${MEDCHAIN_FHIR_MUTATE_PER_DOC:-40}" \
    cargo test --locked -q "${build[@]}" --test fast_path -- --ignored --exact \
    mutations_of_a_corpus_are_sound --nocapture
echo "fhir corpus step: $((SECONDS - started)) s"
