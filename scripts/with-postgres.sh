#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL 15 cluster and MEDCHAIN_PG_URL pointing at it.
#
#   scripts/with-postgres.sh cargo test -p medchain-store --features postgres
#
# initdb in a fresh temporary directory owned by the `postgres` user, a free loopback port on
# 127.0.0.1, no TCP access from elsewhere (trust auth on 127.0.0.1 only), wait until ready,
# run the command, and always stop the cluster and remove the directory. Quiet on success;
# prints the server log on failure. Installs postgresql-15 (and openssl) with apt-get if
# missing.
#
# TLS: the cluster runs with ssl=on and a throw-away CA (generated with openssl in the
# temporary directory, removed with it; its key is deleted once the server certificate is
# signed) whose server certificate names localhost and 127.0.0.1. The role `medchain_tls` may
# connect over TLS only (pg_hba: hostssl trust, hostnossl reject); `postgres` over either.
# Exported for the TLS tests:
#   MEDCHAIN_PG_TLS_URL       postgresql://medchain_tls@127.0.0.1:PORT/medchain (no ssl options)
#   MEDCHAIN_PG_TLS_CA        the CA certificate (PEM) that signed the server's certificate
#   MEDCHAIN_PG_TLS_WRONG_CA  another CA's certificate (PEM, same subject), which signed nothing
# WITH_PG_TLS=0 starts the cluster without TLS and exports none of them.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

PGBIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PGBIN/initdb" ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "with-postgres: installing postgresql-15" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
    else
        echo "with-postgres: PostgreSQL 15 is not installed ($PGBIN/initdb missing)" >&2
        exit 1
    fi
fi

# PostgreSQL refuses to run as root: run the server as `postgres` when we are root.
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    fi
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

PGROOT=$(mktemp -d "${TMPDIR:-/tmp}/medchain-pg.XXXXXX")
chmod 755 "$PGROOT"
PGDATA="$PGROOT/data"
PGLOG="$PGROOT/server.log"
PGSOCK="$PGROOT/sock"
mkdir -p "$PGDATA" "$PGSOCK"
touch "$PGLOG"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$PGROOT"; fi

started=0
show_log() {
    echo "---- PostgreSQL server log ($PGLOG) ----" >&2
    cat "$PGLOG" >&2 || true
    echo "---- end of server log ----" >&2
}
cleanup() {
    local rc=$?
    if [ "$started" -eq 1 ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ "${WITH_PG_CHILD_FAILED:-0}" -eq 0 ]; then show_log; fi
    rm -rf "$PGROOT"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 - <<'PY' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 ))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

if ! as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PGROOT/initdb.log" 2>&1; then
    cat "$PGROOT/initdb.log" >&2
    exit 1
fi

# A throw-away CA and server certificate (ECDSA P-256), and an unrelated CA with the same
# subject for the tests that a certificate from another CA is refused.
TLS="${WITH_PG_TLS:-1}"
if [ "$TLS" = 1 ] && ! command -v openssl >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "with-postgres: installing openssl" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
    else
        echo "with-postgres: openssl is missing: starting without TLS" >&2
        TLS=0
    fi
fi
if [ "$TLS" = 1 ]; then
    PGTLS="$PGROOT/tls"
    mkdir -p "$PGTLS"
    # Each step checked (errexit does not apply inside an `if` condition).
    make_ca() {
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" &&
            openssl req -x509 -new -key "$1.key" -sha256 -days 2 \
                -subj "/CN=medchain throw-away test CA" \
                -addext "basicConstraints=critical,CA:TRUE" \
                -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.crt"
    }
    make_certs() {
        cd "$PGTLS" && make_ca ca && make_ca wrong-ca &&
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key &&
            openssl req -new -key server.key -subj "/CN=localhost" -out server.csr &&
            printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
                "subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext &&
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                -sha256 -days 2 -extfile server.ext -out server.crt &&
            rm -f ca.key wrong-ca.key server.csr server.ext ca.srl &&
            chmod 600 server.key
    }
    if ! (make_certs) >"$PGROOT/tls.log" 2>&1; then
        cat "$PGROOT/tls.log" >&2
        exit 1
    fi
    chmod 755 "$PGTLS"
    chmod 644 "$PGTLS/ca.crt" "$PGTLS/wrong-ca.crt"
    {
        echo "ssl = on"
        echo "ssl_cert_file = '$PGTLS/server.crt'"
        echo "ssl_key_file = '$PGTLS/server.key'"
    } >>"$PGDATA/postgresql.conf"
    # The first matching line wins: medchain_tls over TLS only, then initdb's trust lines.
    {
        echo "hostssl all medchain_tls 127.0.0.1/32 trust"
        echo "hostnossl all medchain_tls 127.0.0.1/32 reject"
        cat "$PGDATA/pg_hba.conf"
    } >"$PGROOT/pg_hba.conf"
    mv "$PGROOT/pg_hba.conf" "$PGDATA/pg_hba.conf"
    if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$PGTLS" "$PGDATA/pg_hba.conf" "$PGDATA/postgresql.conf"; fi
fi

for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    if as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGLOG" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGSOCK -c fsync=on -c max_connections=200" \
        start >/dev/null 2>&1; then
        started=1
        break
    fi
done
if [ "$started" -ne 1 ]; then
    echo "with-postgres: the server did not start" >&2
    exit 1
fi
for _ in $(seq 1 60); do
    if as_pg "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then break; fi
    sleep 0.5
done
as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -q -c "CREATE DATABASE medchain" >/dev/null

export MEDCHAIN_PG_URL="postgresql://postgres@127.0.0.1:$PORT/medchain"
if [ "$TLS" = 1 ]; then
    as_pg "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d medchain -q \
        -c "CREATE ROLE medchain_tls LOGIN" \
        -c "GRANT CREATE ON DATABASE medchain TO medchain_tls" >/dev/null
    export MEDCHAIN_PG_TLS_URL="postgresql://medchain_tls@127.0.0.1:$PORT/medchain"
    export MEDCHAIN_PG_TLS_CA="$PGTLS/ca.crt"
    export MEDCHAIN_PG_TLS_WRONG_CA="$PGTLS/wrong-ca.crt"
fi
export MEDCHAIN_PG_BIN="$PGBIN"
set +e
"$@"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
    WITH_PG_CHILD_FAILED=1
    show_log
fi
exit "$rc"
