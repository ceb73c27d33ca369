#!/bin/sh
# First start on an empty volume: initdb with the superuser's password, then the app's database.
# Later starts (restart, rebuild after `env destroy` without --with-data) find the data as it was.
set -eu
: "${POSTGRES_PASSWORD:?}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
PGDATA="${PGDATA:-/var/lib/postgresql/data}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    echo "minicloud-db: initialising a new database in $PGDATA"
    pwfile=/run/postgresql/pwfile
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres:postgres "$pwfile"
    chmod 600 "$pwfile"
    # local socket: peer (only the entrypoint uses it); TCP: scram-sha-256 from anywhere
    as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf '%s\n' "host all all 0.0.0.0/0 scram-sha-256" "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # a socket-only server for the set-up, so no client can connect before the database exists
    as_postgres pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    if [ "$POSTGRES_DB" != "postgres" ]; then
        # psql's :"db" quotes the name as an identifier: any name is safe here
        echo 'CREATE DATABASE :"db";' | as_postgres psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" \
            -d postgres -v db="$POSTGRES_DB"
    fi
    as_postgres pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- postgres -D "$PGDATA" \
    -c listen_addresses=0.0.0.0 -c port=5432
