#!/usr/bin/env bash
# Make PostgreSQL answer on 127.0.0.1:5432 with trust auth and a `test`
# database: start the installed cluster, or install it from Debian's
# packages. Under CI=true a failure is fatal; elsewhere it only warns, and the
# PostgreSQL tests then skip.
set -uo pipefail

answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -h 127.0.0.1 -p 5432 -q
    else
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
    fi
}

fail() {
    echo "ensure_postgres: $*" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
    exit 0
}

start_cluster() {
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || return 1
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    for _ in $(seq 1 30); do answers && return 0; sleep 1; done
    return 1
}

trust_local() {
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | sort -V | tail -n 1)
    [ -n "$hba" ] || return 0
    if ! grep -q "remitnet: trust loopback" "$hba"; then
        sed -i '1i # remitnet: trust loopback\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        local version
        version=$(basename "$(dirname "$(dirname "$hba")")")
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
    fi
}

if answers; then exit 0; fi
echo "ensure_postgres: PostgreSQL does not answer on 127.0.0.1:5432; starting it"
if command -v pg_ctlcluster >/dev/null 2>&1 && start_cluster; then exit 0; fi

[ "$(id -u)" = "0" ] || fail "not root: cannot install PostgreSQL"
echo "ensure_postgres: installing PostgreSQL from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq postgresql >/dev/null || fail "apt-get install postgresql failed"
start_cluster || fail "the installed cluster did not start"
trust_local
for db in test root; do
    su postgres -c "psql -h /var/run/postgresql -tAc \"SELECT 1 FROM pg_database WHERE datname='$db'\"" | grep -q 1 ||
        su postgres -c "createdb -h /var/run/postgresql $db" || true
done
answers || fail "PostgreSQL still does not answer"
