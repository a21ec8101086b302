#!/usr/bin/env bash
# The machine side of `make test` and `make run` (and so of .ci/run).
#
#   scripts/bootstrap.sh test|run|lint
#
# Checks for the Debian packages the mode needs (the tables below); as root with apt-get it installs
# the missing ones, otherwise it stops at once with the exact apt-get line. `test` also makes sure
# PostgreSQL answers at 127.0.0.1:5432 the way the tests connect (postgres, no password, database
# `test`), starting the cluster when it is down. With everything in place it runs no apt-get and
# prints nothing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Debian package -> how to tell it is installed: a command it puts on PATH, or python3:MODULE.
declare -A CHECK=(
  [python3-venv]=python3:ensurepip
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [postgresql-client]=pg_isready
  [postgresql]=pg_lsclusters
  [nodejs]=node
  [npm]=npm
  [prometheus]=promtool
  [zsh]=zsh
  [fish]=fish
)
# What each mode needs. python3-venv only until .venv exists, the server only while the tests use
# the local PostgreSQL (CONVEYOR_TEST_POSTGRES_URL unset).
NEEDS_run=(python3-venv docker-registry skopeo)
NEEDS_lint=(python3-venv nodejs npm)
# zsh and fish: the tests check the syntax of the completion scripts conveyorctl prints for them.
NEEDS_test=(python3-venv docker-registry skopeo postgresql-client postgresql nodejs npm prometheus zsh fish)

PG_HOST=127.0.0.1
PG_PORT=5432
HERE=${BASH_SOURCE[0]%/*}
[[ $HERE == "${BASH_SOURCE[0]}" ]] && HERE=.
ROOT=$(cd "$HERE/.." && pwd)

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
  printf 'bootstrap: %s\n' "$*" >&2
  exit 1
}

is_root() { [[ $(id -u) == 0 ]]; }

installed() {
  local check=${CHECK[$1]}
  if [[ $check == python3:* ]]; then
    python3 -c "import ${check#python3:}" >/dev/null 2>&1
  else
    command -v "$check" >/dev/null
  fi
}

apt_install() {
  local line="apt-get install -y --no-install-recommends $*"
  if ! command -v apt-get >/dev/null; then
    die "missing system packages: $*. No apt-get here; install the equivalents of: sudo $line"
  fi
  is_root || die "missing system packages: $*. Install them with:
  sudo $line"
  local package out
  for package; do say "installing $package"; done
  out=$(apt-get update -qq 2>&1 && apt-get install -y -qq --no-install-recommends "$@" 2>&1) || die "$line failed:
$out"
  for package; do
    installed "$package" || die "installed $package but ${CHECK[$package]} is still not found"
  done
}

# ---------------------------------------------------------------- PostgreSQL (test mode)

pg_up() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q; }

# The cluster on PG_PORT, from `pg_lsclusters -h`: version, name, port, status, owner, data dir, log.
find_cluster() {
  local version name port _status _owner _data log
  while read -r version name port _status _owner _data log; do
    if [[ $port == "$PG_PORT" ]]; then
      CLUSTER=("$version" "$name")
      CLUSTER_LOG=$log
      return 0
    fi
  done < <(pg_lsclusters -h)
  die "no PostgreSQL cluster on port $PG_PORT (pg_lsclusters lists none); create one with: pg_createcluster --start <version> main"
}

pg_ctl() {
  local out sudo=""
  is_root || sudo="sudo "
  out=$(pg_ctlcluster --skip-systemctl-redirect "${CLUSTER[@]}" "$1" 2>&1) ||
    die "could not $1 PostgreSQL ${CLUSTER[0]}/${CLUSTER[1]} (${sudo}pg_ctlcluster --skip-systemctl-redirect ${CLUSTER[*]} $1):
$out"
}

start_postgres() {
  [[ -v CLUSTER ]] || find_cluster
  say "starting PostgreSQL ${CLUSTER[0]}/${CLUSTER[1]}"
  pg_ctl start
  local _
  for _ in {1..60}; do
    pg_up && return 0
    sleep 0.5
  done
  die "PostgreSQL ${CLUSTER[0]}/${CLUSTER[1]} did not accept connections at $PG_HOST:$PG_PORT within 30 s; see $CLUSTER_LOG"
}

# A server this script has just installed gets what the tests expect: postgres without a password on
# loopback (first matching pg_hba line wins). An existing installation's auth is never changed.
trust_loopback() {
  local hba text
  hba=$(pg_conftool -s "${CLUSTER[@]}" show hba_file)
  say "letting postgres in without a password on $PG_HOST ($hba)"
  text=$(<"$hba")
  printf 'host all postgres %s/32 trust\n%s\n' "$PG_HOST" "$text" >"$hba"
}

pg_query() { PGCONNECT_TIMEOUT=5 psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -w -d "$1" -Atqc 'select 1' 2>&1; }

ensure_test_database() {
  local out
  out=$(pg_query test) && return 0
  if pg_query postgres >/dev/null; then
    say "creating database test"
    out=$(createdb -h "$PG_HOST" -p "$PG_PORT" -U postgres -w test 2>&1) || die "createdb test failed: $out"
    return 0
  fi
  die "PostgreSQL at $PG_HOST:$PG_PORT refuses the tests' connection (postgres, no password, database test):
$out
Allow it with 'host all postgres $PG_HOST/32 trust' at the top of pg_hba.conf and a reload, or point CONVEYOR_TEST_POSTGRES_URL at another server."
}

ensure_postgres() {
  local fresh=$1
  if ((fresh)); then
    find_cluster
    trust_loopback
  fi
  if ! pg_up; then
    start_postgres
  elif ((fresh)); then
    pg_ctl reload
  fi
  ensure_test_database
}

# ---------------------------------------------------------------- main

main() {
  local mode=${1:-}
  [[ $mode == test || $mode == run || $mode == lint ]] || die "usage: scripts/bootstrap.sh test|run|lint"
  local -n needs="NEEDS_$mode"
  local package missing=() local_pg=0 fresh_pg=0
  [[ $mode == test && -z ${CONVEYOR_TEST_POSTGRES_URL:-} ]] && local_pg=1
  for package in "${needs[@]}"; do
    [[ $package == python3-venv && -x $ROOT/.venv/bin/python ]] && continue
    [[ $package == postgresql ]] && ((!local_pg)) && continue
    installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]})); then
    [[ " ${missing[*]} " == *" postgresql "* ]] && fresh_pg=1
    apt_install "${missing[@]}"
  fi
  if ((local_pg)); then
    ensure_postgres "$fresh_pg"
  fi
}

main "$@"
