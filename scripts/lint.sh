#!/usr/bin/env bash
# The static checks (`make lint`, and the first step of `make test`):
#   ruff check, ruff format --check, lint-imports (import contracts), mypy, buf lint, buf breaking.
# Every check runs; the failed ones are named at the end and the exit status is non-zero.
# buf comes from the npm package pinned in tools/package.json, installed here when missing or stale.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
BUF=tools/node_modules/.bin/buf
# The package roots, so lint-imports finds every package whatever the editable install knows about.
PACKAGE_ROOTS=src:services/config:services/trigger:services/deployer

failed=()
check() {
  local name=$1
  shift
  printf '\n== %s\n' "$name"
  if "$@"; then
    printf 'lint: %s: ok\n' "$name"
  else
    printf 'lint: %s: FAILED\n' "$name"
    failed+=("$name")
  fi
}

ensure_buf() {
  local pinned
  pinned=$(sed -n 's/.*"@bufbuild\/buf": *"\([^"]*\)".*/\1/p' tools/package.json)
  [[ -x $BUF && $($BUF --version 2>/dev/null) == "$pinned" ]] && return 0
  command -v npm >/dev/null || {
    echo "lint: npm is missing (scripts/bootstrap.sh test installs it); buf cannot be installed"
    return 1
  }
  echo "lint: installing buf $pinned: npm ci --prefix tools --no-audit --no-fund"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error
}

check "ruff check" "$BIN/ruff" check .
check "ruff format" "$BIN/ruff" format --check .
check "import contracts" env PYTHONPATH="$PACKAGE_ROOTS" "$BIN/lint-imports"
check "mypy" "$BIN/mypy"
if ensure_buf; then
  check "buf lint" "$BIN/python" scripts/buf_check.py lint
  check "buf breaking" "$BIN/python" scripts/buf_check.py breaking
else
  failed+=("buf (not installed)")
fi

if ((${#failed[@]})); then
  printf '\nlint: FAILED: %s\n' "$(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')"
  exit 1
fi
printf '\nlint: all checks passed\n'
