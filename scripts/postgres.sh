#!/usr/bin/env bash
# Starts Debian's PostgreSQL cluster and gives root a superuser role,
# idempotently. Prints nothing when all is ready.
# Tests and the README's replica set-up reach it as
#   postgresql://root@%2Fvar%2Frun%2Fpostgresql/<db>
set -euo pipefail
ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
if [ -z "$ver" ]; then
  echo "postgres.sh: PostgreSQL is not installed (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$ver  *main"; then
  pg_createcluster "$ver" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
  pg_ctlcluster "$ver" main start
fi
for _ in $(seq 50); do
  su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
if [ "$(su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='root'\"")" != 1 ]; then
  su postgres -c "psql -qc 'create role root superuser login'"
fi
if [ "$(su postgres -c "psql -qAtc \"select 1 from pg_database where datname='root'\"")" != 1 ]; then
  su postgres -c "createdb -O root root"
fi
