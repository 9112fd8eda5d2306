#!/usr/bin/env bash
# The mobile bindings' test command: builds libmedchain_ffi (release), generates the Kotlin,
# Swift and Python bindings in library mode, checks the committed Swift bindings are up to date,
# writes the fixture chain, runs the Kotlin tests on the JVM (Maven: kotlin-maven-plugin, JNA,
# JUnit 5; at least 41 must run and pass, the wallet against a four-node `medchaind local-net`
# over HTTP among them) and the pytest smoke test of the Python bindings. Exits non-zero on any
# failure.
#
#   medchain-ffi/scripts/test.sh                  (from anywhere; uses $CARGO_TARGET_DIR or ./target)
#   medchain-ffi/scripts/test.sh --update-swift   (regenerate medchain-ffi/bindings/swift, then test)
#
# Needs: cargo, a JDK (17+) and Maven (3.8+) on PATH, python3. Installs nothing by hand: cargo
# fetches what Cargo.lock pins, Maven what pom.xml pins (into ~/.m2), and if python3 has no
# pytest a virtual environment in the target directory gets one.
#
# Environment: MEDCHAIN_PROFILE (default release) is the cargo profile of the library and the
# tools. `dev` (as scripts/test-all.sh runs it) takes them from the workspace's dev-profile
# build (all features), whose library also carries the fixtures code; the product library's dependency set is
# then checked with `cargo tree` (no test helpers in it) instead of being built a second time.
# Either way the Kotlin node test runs the workspace's dev-profile `medchaind` (target/debug).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

update_swift=0
for arg in "$@"; do
    case "$arg" in
        --update-swift) update_swift=1 ;;
        *) echo "usage: $0 [--update-swift]" >&2; exit 2 ;;
    esac
done

target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
out="$target/medchain-ffi-test"
profile="${MEDCHAIN_PROFILE:-release}"
case "$profile" in dev | test) profile_dir=debug ;; bench) profile_dir=release ;; *) profile_dir="$profile" ;; esac
native="$target/$profile_dir"
lib="$native/libmedchain_ffi.so"
medchaind="$target/debug/medchaind"
# The Kotlin tests need at least this many passing tests (WalletTest 34, NodeHttpTest 7).
min_kotlin_tests=41
started=$SECONDS
step() { printf '\n== %s (%ds)\n' "$1" $((SECONDS - started)); }

rm -rf "$out"
mkdir -p "$out"

if [ "$profile" = release ]; then
    step "build the tools: the bindgen CLI and the fixture writer (one build, features cli + fixtures)"
    cargo build --locked --release -q -p medchain-ffi --features cli,fixtures \
        --bin uniffi-bindgen --example make-fixtures

    step "build libmedchain_ffi (release cdylib: the product build, neither feature)"
    # After the tools, so that the library in target/release is this build, not the tools'.
    cargo build --locked --release -q -p medchain-ffi --lib

    step "build medchaind (the workspace's dev build, all features) for the Kotlin node test"
    cargo build --locked -q --workspace --all-features --bin medchaind
else
    step "the tools and the library from the workspace's $profile-profile build (all features)"
    cargo build --locked -q --profile "$profile" --workspace --all-features --lib --bins --examples
fi
bindgen="$native/uniffi-bindgen"
test -f "$lib" || { echo "no $lib after the build" >&2; exit 1; }
test -x "$medchaind" || { echo "no $medchaind after the build" >&2; exit 1; }

step "the product library links no test helper (cargo tree, neither feature)"
# What an app links: medchain-ffi without features must not turn on medchain-core's testkit.
features="$(cargo tree --locked -q -p medchain-ffi -e normal -f '{p} [{f}]' --prefix none)"
grep -q '^medchain-core ' <<< "$features" || { echo "cargo tree lists no medchain-core" >&2; exit 1; }
if grep -E '^medchain-core .*\[.*testkit.*\]' <<< "$features" > /dev/null; then
    echo "medchain-ffi's library build enables medchain-core/testkit" >&2
    exit 1
fi
echo "medchain-ffi (no features): no testkit in its dependency graph"
# And only the FHIR resource groups a Consent needs (docs/mobile.md, "Size").
fhirkit="$(grep '^fhirkit ' <<< "$features" || true)"
case "$fhirkit" in
    *"[base,foundation]") echo "medchain-ffi links fhirkit with the foundation and base groups only" ;;
    *) echo "medchain-ffi's library build links fhirkit as: ${fhirkit:-nothing}" >&2; exit 1 ;;
esac

step "generate the bindings from the library (Kotlin, Swift, Python)"
for lang in kotlin swift python; do
    # Run from the crate so library mode finds uniffi.toml through cargo metadata.
    (cd "$here" && "$bindgen" generate "$lib" --language "$lang" --no-format \
        --out-dir "$out/$lang" > "$out/bindgen-$lang.log")
done
test -f "$out/kotlin/org/medchain/wallet/medchain_ffi.kt"
test -f "$out/python/medchain_ffi.py"

step "the committed Swift bindings are up to date"
committed="$here/bindings/swift"
if [ "$update_swift" = 1 ]; then
    rm -rf "$committed"
    mkdir -p "$committed"
    cp "$out/swift/"* "$committed/"
    echo "updated $committed"
fi
if ! diff -ru "$committed" "$out/swift" > "$out/swift.diff"; then
    head -n 40 "$out/swift.diff" >&2
    echo "medchain-ffi/bindings/swift is out of date with the Rust API." >&2
    echo "Regenerate it with: medchain-ffi/scripts/test.sh --update-swift (and commit the result)" >&2
    exit 1
fi
echo "swift bindings match ($(ls "$committed" | tr '\n' ' '))"

step "fixture chain (core TestNet: real blocks, votes, sealed records)"
"$native/examples/make-fixtures" "$out/fixtures"

step "Kotlin tests on the JVM (Maven, JNA, JUnit 5)"
kotlin="$here/kotlin"
rm -rf "$kotlin/target/surefire-reports"
set +e
mvn -B -q -f "$kotlin/pom.xml" test \
    -Duniffi.generated="$out/kotlin" \
    -Dnative.dir="$native" \
    -Dfixtures.dir="$out/fixtures" \
    -Dmedchaind="$medchaind" 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' | tee "$out/maven.log"
rc=${PIPESTATUS[0]}
set -e
reports=("$kotlin"/target/surefire-reports/TEST-*.xml)
if [ ! -e "${reports[0]}" ]; then
    echo "Maven ran no test (exit $rc): see $out/maven.log" >&2
    exit 1
fi
read -r tests failures errors skipped < <(python3 - "${reports[@]}" <<'PY'
import sys
import xml.etree.ElementTree as ET
t = f = e = s = 0
for path in sys.argv[1:]:
    r = ET.parse(path).getroot()
    t += int(r.get("tests", 0)); f += int(r.get("failures", 0))
    e += int(r.get("errors", 0)); s += int(r.get("skipped", 0))
print(t, f, e, s)
PY
)
passed=$((tests - failures - errors - skipped))
echo "Kotlin: $passed passed, $((failures + errors)) failed, $skipped skipped"
if [ "$rc" -ne 0 ] || [ $((failures + errors)) -ne 0 ]; then
    echo "the Kotlin tests failed (maven exit $rc)" >&2
    exit 1
fi
if [ "$passed" -lt "$min_kotlin_tests" ]; then
    echo "only $passed Kotlin tests passed (>= $min_kotlin_tests required)" >&2
    exit 1
fi

step "pytest smoke test of the Python bindings"
cp "$lib" "$out/python/"
py=python3
if ! "$py" -c "import pytest" 2>/dev/null; then
    "$py" -m venv "$target/medchain-ffi-venv"
    py="$target/medchain-ffi-venv/bin/python"
    "$py" -m pip install --quiet --disable-pip-version-check "pytest==9.2.0"
fi
set +e
(cd "$out" && PYTHONPATH="$out/python" MEDCHAIN_FIXTURES="$out/fixtures" \
    "$py" -m pytest -q -p no:cacheprovider "$here/python/tests" 2>&1 | tee "$out/pytest.log")
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
if [ "$rc" -ne 0 ]; then echo "pytest failed (exit $rc)" >&2; exit "$rc"; fi

printf '\nmedchain-ffi: bindings generated, Swift up to date, Kotlin and Python tests passed (%ds)\n' \
    $((SECONDS - started))
