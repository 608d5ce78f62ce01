#!/usr/bin/env bash
# A private PostgreSQL cluster for etal, inside the project (.pg/, git-ignored).
#
#   scripts/pg.sh ensure          start it if needed (installing the binaries with apt-get when
#                                 missing), create the `etal` database, print its URL
#   scripts/pg.sh stop            stop it
#   scripts/pg.sh cluster DIR PORT   start a throw-away cluster in DIR on PORT (tests), print its URL
#   scripts/pg.sh sweep URL       drop the databases earlier test runs left on URL's cluster
#                                 (etal_test_*, and etal_tpl_* templates, rebuilt on demand);
#                                 one in use is skipped
#
# As root, the server runs as the `postgres` user (initdb refuses root). Environment:
# ETAL_PG_PORT (default 54329), ETAL_PG_DIR (default <project>/.pg).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${ETAL_PG_PORT:-54329}
DIR=${ETAL_PG_DIR:-$ROOT/.pg}

log() { echo "pg: $*" >&2; }

find_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

install_binaries() {
  log "PostgreSQL server binaries not found; installing the Debian postgresql package"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
}

BIN=$(find_bindir || true)
if [ -z "$BIN" ]; then
  install_binaries
  BIN=$(find_bindir)
fi

# Run a PostgreSQL binary as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The data folder must be reachable by the owner; as root with a project under a private home,
# keep the data in /var/tmp and link it from the project.
prepare_dir() {
  local dir=$1
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$(dirname "$dir")"
    if [ ! -e "$dir" ]; then
      mkdir -p "$dir"
      chown postgres:postgres "$dir" 2>/dev/null || { id postgres >/dev/null 2>&1 || useradd --system postgres; chown postgres "$dir"; }
      chmod 700 "$dir"
      if ! runuser -u postgres -- test -w "$dir"; then
        rmdir "$dir"
        local real="/var/tmp/etal-pg-$(echo -n "$dir" | sha1sum | cut -c1-12)"
        mkdir -p "$real" && chown postgres "$real" && chmod 700 "$real"
        ln -s "$real" "$dir"
      fi
    fi
  else
    mkdir -p "$dir" && chmod 700 "$dir"
  fi
}

start_cluster() {
  local dir=$1 port=$2
  prepare_dir "$dir"
  local data="$dir/data"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating a cluster in $dir"
    as_owner "$BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null 2>&1 \
      || as_owner "$BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
  fi
  if ! as_owner "$BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$port"
    as_owner "$BIN/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=400 -c shared_buffers=256MB" >/dev/null
  fi
  echo "postgres://postgres@127.0.0.1:$port"
}

case "${1:-ensure}" in
  ensure)
    base=$(start_cluster "$DIR" "$PORT")
    for _ in $(seq 1 50); do
      "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
      sleep 0.2
    done
    if ! "$BIN/psql" "$base/postgres" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'etal'" | grep -q 1; then
      "$BIN/psql" "$base/postgres" -qc "CREATE DATABASE etal" >/dev/null
    fi
    echo "$base/etal"
    ;;
  stop)
    [ -d "$DIR/data" ] && as_owner "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
    ;;
  cluster)
    start_cluster "$2" "$3"
    ;;
  bindir)
    echo "$BIN"
    ;;
  sweep)
    url=${2:?usage: $0 sweep URL}
    # One session for all the drops; a database in use makes its DROP fail, which is ignored.
    stale=$("$BIN/psql" "$url" -Atq -c "SELECT datname FROM pg_database WHERE datname ~ '^etal_(test|tpl)_[0-9a-f]+$'" 2>/dev/null || true)
    if [ -n "$stale" ]; then
      n=$(echo "$stale" | wc -l)
      log "dropping $n databases left by earlier test runs"
      echo "$stale" | while read -r d; do
        echo "ALTER DATABASE \"$d\" IS_TEMPLATE false; DROP DATABASE IF EXISTS \"$d\";"
      done | "$BIN/psql" "$url" -q -v ON_ERROR_STOP=0 >/dev/null 2>&1 || true
    fi
    ;;
  *)
    echo "usage: $0 ensure|stop|cluster DIR PORT|bindir|sweep URL" >&2
    exit 2
    ;;
esac
