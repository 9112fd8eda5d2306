#!/usr/bin/env bash
# A `cargo outdated`-style check of the direct dependencies (the workspace's and fuzz/'s):
# for each, the version Cargo.lock resolves against the newest stable release on crates.io
# (`cargo info`, one registry look-up per crate). A dependency whose major.minor line is
# behind the newest fails the check, unless HELD below gives the line it is held at and why
# (docs/dependencies.md says the same).
#
# Needs the crates.io registry, so it is not part of scripts/test-all.sh (which must pass
# offline from the cargo cache); run it when upgrading (docs/dependencies.md, "Upgrading").
#
#   scripts/check-outdated.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# crate=line-held-at: reason. Empty while every direct dependency is on its newest line.
HELD=(
)

meta="$(mktemp)"
fuzzmeta="$(mktemp)"
trap 'rm -f "$meta" "$fuzzmeta"' EXIT
cargo metadata --locked --all-features --format-version 1 > "$meta"
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml > "$fuzzmeta"

# name locked-version, one line per direct registry dependency.
direct="$(python3 - "$meta" "$fuzzmeta" <<'PY'
import json
import sys

seen = {}
for path in sys.argv[1:]:
    m = json.load(open(path))
    members = set(m["workspace_members"])
    by_id = {p["id"]: p for p in m["packages"]}
    for node in m["resolve"]["nodes"]:
        if node["id"] not in members:
            continue
        for dep in node["deps"]:
            p = by_id[dep["pkg"]]
            if p["id"] in members or p.get("source") is None:
                continue
            seen.setdefault(p["name"], set()).add(p["version"])
for name in sorted(seen):
    print(name, " ".join(sorted(seen[name])))
PY
)"

line_of() { # 1.2.3 -> 1 ; 0.10.1 -> 0.10 ; 0.0.4 -> 0.0.4 (the semver-compatible line)
    local v="${1%%[-+]*}"
    IFS=. read -r ma mi pa <<< "$v"
    if [ "$ma" != 0 ]; then echo "$ma"; elif [ "$mi" != 0 ]; then echo "0.$mi"; else echo "0.0.$pa"; fi
}
minor_of() { local v="${1%%[-+]*}"; echo "${v%.*}"; }

behind=0
printf '%-18s %-22s %-10s %s\n' crate locked newest status
while read -r name versions; do
    [ -n "$name" ] || continue
    info="$(cd "${TMPDIR:-/tmp}" && cargo info --quiet "$name" 2> /dev/null || true)"
    newest="$(sed -nE 's/^version: ([^ ]+) \(latest ([^ )]+)\).*/\2/p; s/^version: ([^ ]+)$/\1/p' <<< "$info" | head -n 1)"
    if [ -z "$newest" ]; then
        echo "cargo info $name gave no version (is crates.io reachable?)" >&2
        exit 2
    fi
    status=current
    for v in $versions; do
        if [ "$(minor_of "$v")" != "$(minor_of "$newest")" ]; then
            status="behind"
            for held in "${HELD[@]}"; do
                at="${held#*=}"
                if [ "${held%%=*}" = "$name" ] && [ "$(line_of "$v")" = "$(line_of "${at%%:*}")" ]; then
                    status="held: ${held#*: }"
                fi
            done
        fi
    done
    [ "$status" = behind ] && behind=$((behind + 1))
    printf '%-18s %-22s %-10s %s\n' "$name" "$versions" "$newest" "$status"
done <<< "$direct"

if [ "$behind" -ne 0 ]; then
    echo "$behind direct dependencies are behind their newest major/minor line without a reason" >&2
    exit 1
fi
echo "every direct dependency is on its newest major/minor line, or held with a reason"
