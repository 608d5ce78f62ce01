#!/usr/bin/env bash
# The browser assets etal embeds (GraphiQL, React, Chart.js: web/package-lock.json) and graphql-js
# for the schema test, from the npm registry, when missing or older than the lock file;
# api/build.rs embeds them into the binary. `make run`, `make test` and `make bench` run it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "assets: npm not found; installing the Debian package npm" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq npm >&2
  fi
  echo "assets: npm ci in web/" >&2
  (cd web && npm ci --no-audit --no-fund --ignore-scripts >&2)
fi
