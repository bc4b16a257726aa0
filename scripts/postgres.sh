#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the catalog tests.
# Uses the machine's server if it is up, starts its cluster if it is down, and otherwise installs
# Debian's postgresql and runs a private, throw-away cluster (trust auth on loopback only).
set -euo pipefail
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
command -v pg_isready >/dev/null && ready && exit 0
if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>/dev/null || true
  for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "curata: installing PostgreSQL for the catalog tests" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DATA=${CURATA_PGDATA:-/tmp/curata-pgdata}
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd -r -m postgres
  RUNAS=(runuser -u postgres --)
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  mkdir -p "$DATA"; [ "$(id -u)" -eq 0 ] && chown postgres "$DATA"
  "${RUNAS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
fi
"${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" -o "-c listen_addresses=127.0.0.1 -p 5432 -k /tmp" -l "$DATA/server.log" -w start >/dev/null
ready || { echo "curata: PostgreSQL did not start; see $DATA/server.log" >&2; exit 1; }
