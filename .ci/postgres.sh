# shellcheck shell=bash
# A throwaway PostgreSQL server on loopback for the test suite; source this file, then
# call start_postgres. It installs the distribution's server package when none is
# installed (as root), initialises a cluster in a temporary directory (owned by the
# `postgres` user when running as root: the server refuses to run as root), starts it
# on 127.0.0.1 on a free port with durability switched off (tests only), creates a
# database and exports ENSPACE_PG_DSN. The server is stopped and its files removed on
# exit (an EXIT trap).

_pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$dir" ] && command -v pg_ctl >/dev/null 2>&1; then
        dir=$(dirname "$(command -v pg_ctl)")
    fi
    printf '%s' "$dir"
}

_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stop_postgres() {
    if [ -n "${ENSPACE_PG_TMP:-}" ] && [ -d "$ENSPACE_PG_TMP" ]; then
        _pg_as_owner "$(_pg_bindir)/pg_ctl" -D "$ENSPACE_PG_TMP/data" -m immediate -w stop \
            >/dev/null 2>&1 || true
        rm -rf "$ENSPACE_PG_TMP"
    fi
}

start_postgres() {
    if [ -z "$(_pg_bindir)" ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "PostgreSQL server binaries not found; install the 'postgresql' package" >&2
            return 1
        fi
        echo "installing PostgreSQL from the distribution's packages..."
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    local bindir port
    bindir=$(_pg_bindir)
    ENSPACE_PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/enspace-pg.XXXXXX")
    export ENSPACE_PG_TMP
    trap stop_postgres EXIT
    if [ "$(id -u)" -eq 0 ]; then
        # Binaries without the package's system user (e.g. copied in): create the user.
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres: "$ENSPACE_PG_TMP"
    fi
    _pg_as_owner "$bindir/initdb" -D "$ENSPACE_PG_TMP/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C >"$ENSPACE_PG_TMP/initdb.log" 2>&1 \
        || { cat "$ENSPACE_PG_TMP/initdb.log" >&2; return 1; }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    _pg_as_owner "$bindir/pg_ctl" -D "$ENSPACE_PG_TMP/data" -l "$ENSPACE_PG_TMP/server.log" \
        -w -t 60 -o "-h 127.0.0.1 -p $port -k $ENSPACE_PG_TMP -c max_connections=300 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null \
        || { cat "$ENSPACE_PG_TMP/server.log" >&2; return 1; }
    _pg_as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres enspace_test
    export ENSPACE_PG_DSN="postgresql://postgres@127.0.0.1:$port/enspace_test"
    echo "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port"
}
